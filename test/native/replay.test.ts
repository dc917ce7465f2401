/**
 * Store.replay / Store.replayAsync (session replay as PUBLISH packets) as JS sees them: the
 * packets decode with mqtt-packet to the expected deliveries, `meta` points at each packet's
 * end and packet id, the worker-thread variant returns the same bytes, bad arguments throw
 * at once with a code. Merging, stop rules and exact continuation are tested in Rust
 * (crates/strata-core/tests/log_replay.rs).
 *
 * Loads the generated binding directly: this is a test of the binding itself.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parser as createParser, type IPublishPacket, type Packet } from 'mqtt-packet';
import type * as Binding from '../../native/binding.js';

const require = createRequire(import.meta.url);
// dist/test/native/replay.test.js -> <repo>/native/binding.js
const binding = require('../../../native/binding.js') as typeof Binding;

const STRIDE = 6;
const SLOW = 3;
const DONE = 1;

let dir: string;
let store: Binding.Store;
let shard: number;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-replay-test-'));
  store = await binding.Store.open(dir, { nShards: 2, fsync: 'none', retentionMs: 0 });
  const pos = await store.append(
    Array.from({ length: 6 }, (_, i) => ({
      publisher: 'replayer',
      topic: `r/${i}`,
      qos: 1,
      retain: i === 2,
      payload: Buffer.from(`payload-${i}`),
      // The fifth has properties: the general path delivers it.
      properties: i === 4 ? Buffer.from('{"userProperties":{"k":"v"}}') : undefined,
    })),
  );
  shard = pos[0]!.shard;
});

after(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function args(version: number): Parameters<Binding.Store['replay']> {
  const shards = [{ shard, from: 0, starts: [0, 0] }];
  const subs = [
    { filter: 'r/#', qos: 1, noLocal: false, retainAsPublished: true },
    { filter: 'r/0', qos: 0, noLocal: false, retainAsPublished: false },
  ];
  return [shards, subs, version, 'me', 100, Number.POSITIVE_INFINITY];
}

function packets(r: Binding.ReplayResult, version: 3 | 4 | 5): IPublishPacket[] {
  const out: Packet[] = [];
  const p = createParser({ protocolVersion: version });
  p.on('packet', (x: Packet) => out.push(x));
  let start = 0;
  for (let i = 0; i < r.meta.length / STRIDE; i++) {
    const end = r.meta[i * STRIDE + 3] as number;
    const idPos = r.meta[i * STRIDE + 4] as number;
    r.buffer.writeUInt16BE(100 + i, idPos); // patch the packet id, as the broker does
    p.parse(r.buffer.subarray(start, end));
    assert.equal(out.length, i + 1, `packet ${i} is whole`);
    start = end;
  }
  assert.equal(start, r.buffer.length);
  return out as IPublishPacket[];
}

for (const version of [4, 5] as const) {
  test(`replay packets are the deliveries, up to the one with properties (v${version})`, () => {
    const r = store.replay(...args(version));
    const got = packets(r, version);
    assert.deepEqual(
      got.map((p) => [p.topic, p.payload.toString(), p.qos, p.retain, p.messageId]),
      [0, 1, 2, 3].map((i) => [`r/${i}`, `payload-${i}`, 1, i === 2, 100 + i]),
    );
    assert.equal(r.status[0], SLOW);
    assert.equal(r.next[0], r.meta[3 * STRIDE + 1]! + 1, 'next: the message with properties');
  });
}

test('replayAsync returns what replay returns', async () => {
  const a = store.replay(...args(5));
  const b = await store.replayAsync(...args(5));
  assert.deepEqual(b.buffer, a.buffer);
  assert.deepEqual([...b.meta], [...a.meta]);
  assert.deepEqual([...b.next], [...a.next]);
  assert.deepEqual([...b.status], [...a.status]);
  // Past the message with properties the shard is read to its end.
  const [shards, ...rest] = args(4);
  const past = await store.replayAsync([{ ...shards[0]!, from: a.next[0]! + 1 }], ...rest);
  assert.equal(packets(past, 4).length, 1);
  assert.equal(past.status[0], DONE);
});

test('bad arguments throw at once, with a code', () => {
  const [shards, subs, ...rest] = args(4);
  for (const call of [
    () => store.replay([{ ...shards[0]!, starts: [0] }], subs, ...rest),
    () => store.replayAsync([{ ...shards[0]!, from: -1 }], subs, ...rest),
    () => store.replayAsync(shards, [{ ...subs[0]!, qos: 3 }, subs[1]!], ...rest),
  ]) {
    try {
      void call();
      assert.fail('expected a throw');
    } catch (e) {
      assert.equal((e as { code?: string }).code, 'ERR_INVALID_ARGUMENT', String(e));
    }
  }
});

test('Store.drain: bad arguments throw at once, with a code and what was wrong', () => {
  const [shards, subs, version, clientId, maxEntries, maxPacket] = args(4);
  const ok = { window: 16, inflight: new Float64Array(), nextId: 1, fd: 0 };
  const drain = (o: Partial<typeof ok>, sh = shards): unknown => {
    const a = { ...ok, ...o };
    return store.drain(a.fd, sh, subs, version, clientId, maxEntries, maxPacket, a.window, a.inflight, a.nextId, false);
  };
  for (const [call, says] of [
    [() => drain({ fd: -1 }), /bad descriptor -1/],
    [() => drain({ window: 0 }), /window 0/],
    [() => drain({ nextId: 65536 }), /next id 65536/],
    [() => drain({ inflight: new Float64Array([1, shard, 0]) }), /not quads/],
    [() => drain({ inflight: new Float64Array([0, shard, 0, 0]) }), /bad in-flight entry/],
    [() => drain({ inflight: new Float64Array([1, shard, -5, 0]) }), /in-flight offset/],
    [() => drain({}, [{ ...shards[0]!, starts: [0] }]), /starts/],
  ] as const) {
    assert.throws(call, (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT' && says.test(e.message), String(says));
  }
});
