/**
 * Store.scan (session replay over one shard) as JS sees it: entries in the batch-fetch
 * layout (docs/storage.md), one filter mask per entry, `next`/`status` for exact
 * continuation, argument checks. Matching and stop rules are tested exhaustively in Rust
 * (crates/strata-core/src/log/scan.rs); this checks the conversions and the contract.
 *
 * Loads the generated binding directly: this is a test of the binding itself.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type * as Binding from '../../native/binding.js';

const require = createRequire(import.meta.url);
// dist/test/native/scan.test.js -> <repo>/native/binding.js
const binding = require('../../../native/binding.js') as typeof Binding;

// The layouts as the core defines them (one source: `layouts()`).
const L = binding.layouts();
const E = L.entry;
const NEXT = L.replay.statusNext;
const DONE = L.replay.statusDone;
const UNTIL = L.replay.statusUntil;

interface Entry {
  offset: number;
  timestamp: number;
  shard: number;
  qos: number;
  retain: boolean;
  publisher: string;
  topic: string;
  properties: Buffer;
  payload: Buffer;
  mask: number[];
}

/** Decodes every entry of a scan result (layout: docs/storage.md, "Batch fetch"). */
function decode(r: Binding.ScanResult): Entry[] {
  const out: Entry[] = [];
  const b = r.buffer;
  const n = r.offsets.length - 1;
  assert.equal(r.offsets[0], 0);
  assert.equal(r.offsets[n], b.length);
  assert.equal(r.masks.length, n * r.words);
  for (let j = 0; j < n; j++) {
    const e = r.offsets[j] as number;
    const end = r.offsets[j + 1] as number;
    const payloadLen = b.readUInt32LE(e + E.payloadLen);
    const propsLen = b.readUInt32LE(e + E.propertiesLen);
    const topicLen = b.readUInt16LE(e + E.topicLen);
    const pubLen = b.readUInt16LE(e + E.publisherLen);
    const flags = b.readUInt8(e + E.flags);
    let p = e + E.header;
    const publisher = b.toString('utf8', p, (p += pubLen));
    const topic = b.toString('utf8', p, (p += topicLen));
    const properties = b.subarray(p, (p += propsLen));
    const payload = b.subarray(p, (p += payloadLen));
    assert.equal(p, end, 'entry lengths add up');
    out.push({
      offset: Number(b.readBigUInt64LE(e + E.offset)),
      timestamp: Number(b.readBigUInt64LE(e + E.timestamp)),
      shard: b.readUInt16LE(e + E.shard),
      qos: flags & E.flagQosMask,
      retain: (flags & E.flagRetain) !== 0,
      publisher,
      topic,
      properties,
      payload,
      mask: [...r.masks.subarray(j * r.words, (j + 1) * r.words)],
    });
  }
  return out;
}

function thrown(f: () => unknown): Error & { code?: string } {
  try {
    f();
  } catch (e) {
    return e as Error & { code?: string };
  }
  assert.fail('expected a throw');
}

const TOPICS = ['a/b/c', 'a/x/c', '$SYS/broker/load', 'a', 'b/c', 'x/broker/y', 'a/b'];
const FILTERS = ['a/+/c', '#', '$share/g/a/#', '$SYS/#', '+/broker/#', '+/c'];
const ZEROS = FILTERS.map(() => 0);

let dir: string;
let store: Binding.Store;
let shard: number;
let first: number;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-scan-test-'));
  store = await binding.Store.open(dir, { nShards: 2, fsync: 'none', retentionMs: 0 });
  // One publisher: every message in one shard, consecutive offsets.
  const pos = await store.append(
    TOPICS.map((topic, i) => ({
      publisher: 'replayer',
      topic,
      qos: i % 3,
      retain: i === 3,
      payload: Buffer.from(`payload-${i}`),
      properties: i === 1 ? Buffer.from([0x23, 0, 7]) : undefined,
    })),
  );
  shard = pos[0]!.shard;
  first = pos[0]!.offset;
  assert.ok(pos.every((p, i) => p.shard === shard && p.offset === first + i));
});

after(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('scan: entries, masks, $share and [MQTT-4.7.2-1] $-topic rules', () => {
  const r = store.scan(shard, 0, FILTERS, ZEROS, 100);
  assert.ok(r.buffer instanceof Buffer);
  assert.ok(r.offsets instanceof Uint32Array);
  assert.ok(r.masks instanceof Uint32Array);
  assert.equal(r.words, 1);
  assert.equal(r.status, DONE);
  assert.equal(r.next, store.shardEnd(shard), 'Done: next is the shard end');
  assert.equal(r.skipped, 0);
  const es = decode(r);
  assert.deepEqual(
    es.map((e) => [e.offset - first, e.topic, e.mask[0]]),
    [
      [0, 'a/b/c', 0b000111], // a/+/c, #, $share/g/a/#
      [1, 'a/x/c', 0b000111],
      [2, '$SYS/broker/load', 0b001000], // only $SYS/#: not '#', not '+/broker/#'
      [3, 'a', 0b000110], // '#' and 'a/#' (parent level)
      [4, 'b/c', 0b100010], // '#', '+/c'
      [5, 'x/broker/y', 0b010010], // '#', '+/broker/#'
      [6, 'a/b', 0b000110],
    ],
  );
  const e1 = es[1]!;
  assert.equal(e1.shard, shard);
  assert.equal(e1.publisher, 'replayer');
  assert.equal(e1.qos, 1);
  assert.equal(e1.retain, false);
  assert.deepEqual([...e1.properties], [0x23, 0, 7]);
  assert.equal(e1.payload.toString(), 'payload-1');
  assert.equal(es[3]!.retain, true);
  assert.ok(es[0]!.timestamp > 1.6e12 && es[0]!.timestamp <= Date.now());
  // The other shard is empty; no filters match nothing.
  const other = store.scan(1 - shard, 0, FILTERS, ZEROS, 100);
  assert.equal(other.offsets.length, 1);
  assert.equal(other.status, DONE);
  const none = store.scan(shard, 0, [], [], 100);
  assert.equal(none.words, 0);
  assert.equal(none.offsets.length, 1);
  assert.equal(none.next, store.shardEnd(shard));
});

test('scan: starts[i] keeps filter i off records before it', () => {
  // '#' applies from the 5th record on; 'a' from the start.
  const r = store.scan(shard, 0, ['#', 'a'], [first + 4, 0], 100);
  assert.deepEqual(
    decode(r).map((e) => [e.offset - first, e.mask[0]]),
    [
      [3, 0b10],
      [4, 0b01],
      [5, 0b01],
      [6, 0b01],
    ],
  );
});

test('scan: more than 32 filters take 2 mask words', () => {
  const filters = Array.from({ length: 40 }, (_, i) => (i === 39 ? 'a/#' : `nope/${i}`));
  const r = store.scan(shard, first, filters, filters.map(() => 0), 100);
  assert.equal(r.words, 2);
  const es = decode(r);
  assert.deepEqual(
    es.map((e) => e.topic),
    ['a/b/c', 'a/x/c', 'a', 'a/b'],
  );
  assert.ok(es.every((e) => e.mask[0] === 0 && e.mask[1] === 1 << 7));
});

test('scan: limits stop with status Next and `next` continues exactly', () => {
  const all = decode(store.scan(shard, 0, FILTERS, ZEROS, 100)).map((e) => e.offset);
  for (const [maxEntries, maxBytes, maxExamined] of [
    [2, undefined, undefined],
    [100, 0, undefined], // byte budget 0: one entry per call, never none
    [100, undefined, 1],
    [1, 1, 1],
  ] as const) {
    const got: number[] = [];
    let from = 0;
    for (let calls = 0; ; calls++) {
      assert.ok(calls < 100, 'no progress');
      const r = store.scan(shard, from, FILTERS, ZEROS, maxEntries, maxBytes, undefined, maxExamined);
      assert.ok(r.next >= from);
      got.push(...decode(r).map((e) => e.offset));
      from = r.next;
      if (r.status === DONE) break;
      assert.equal(r.status, NEXT);
    }
    assert.deepEqual(got, all, `limits ${maxEntries}/${maxBytes}/${maxExamined}`);
    assert.equal(from, store.shardEnd(shard));
  }
  // maxBytes 0: exactly one entry.
  const one = store.scan(shard, 0, FILTERS, ZEROS, 100, 0);
  assert.equal(one.offsets.length, 2);
  assert.equal(one.status, NEXT);
  assert.equal(one.next, all[0]! + 1);
  // until: stops before it (status 2) and takes precedence over Done.
  const u = store.scan(shard, 0, FILTERS, ZEROS, 100, undefined, first + 3);
  assert.equal(u.status, UNTIL);
  assert.equal(u.next, first + 3);
  assert.deepEqual(
    decode(u).map((e) => e.offset - first),
    [0, 1, 2],
  );
  const end = store.shardEnd(shard);
  assert.equal(store.scan(shard, 0, FILTERS, ZEROS, 100, undefined, end).status, UNTIL);
  assert.equal(store.scan(shard, 0, FILTERS, ZEROS, 100, undefined, end + 1).status, DONE);
});

test('scan: records appended later are found from `next`', async () => {
  const r = store.scan(shard, 0, ['late/#'], [0], 100);
  assert.equal(r.status, DONE);
  assert.equal(r.offsets.length, 1);
  const [p] = await store.append([{ publisher: 'replayer', topic: 'late/1', qos: 0, retain: false, payload: Buffer.from('x') }]);
  assert.equal(p!.offset, r.next, 'the next record lands at `next`');
  const again = decode(store.scan(shard, r.next, ['late/#'], [0], 100));
  assert.deepEqual(
    again.map((e) => [e.offset, e.topic]),
    [[r.next, 'late/1']],
  );
});

test('scan: bad arguments throw ERR_INVALID_ARGUMENT / ERR_INVALID_TOPIC', () => {
  const bad: Array<[() => unknown, string]> = [
    [() => store.scan(shard, 0, ['a', 'b'], [0], 10), 'ERR_INVALID_ARGUMENT'],
    [() => store.scan(2, 0, ['a'], [0], 10), 'ERR_INVALID_ARGUMENT'],
    [() => store.scan(shard, -1, ['a'], [0], 10), 'ERR_INVALID_ARGUMENT'],
    [() => store.scan(shard, 1.5, ['a'], [0], 10), 'ERR_INVALID_ARGUMENT'],
    [() => store.scan(shard, 0, ['a'], [2 ** 53], 10), 'ERR_INVALID_ARGUMENT'],
    [() => store.scan(shard, 0, ['a'], [0], 10, undefined, Number.NaN), 'ERR_INVALID_ARGUMENT'],
    [() => store.scan(shard, 0, ['a/#/b'], [0], 10), 'ERR_INVALID_TOPIC'],
    [() => store.scan(shard, 0, ['$share/g'], [0], 10), 'ERR_INVALID_TOPIC'],
  ];
  for (const [f, code] of bad) {
    const e = thrown(f);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, new RegExp(`^${code}: `));
  }
});
