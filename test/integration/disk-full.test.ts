/**
 * Disk full under a running broker (SPEC B8, issue 4): the store's device fills up. Publishers
 * whose messages cannot be stored are told so (v5: PUBACK 0x80) instead of being acknowledged,
 * the broker keeps serving, and every message acknowledged before is still delivered.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { client, collect, startBroker, tempDir, type TestBroker, unconnected } from '../helpers.js';

const tmp = tempDir('strata-full-');
const mnt = `${tmp.dir}/mnt`;
let mounted = false;
let tb: TestBroker | null = null;

before(() => {
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
  } catch {
    mounted = false;
  }
});

after(async () => {
  await tb?.close().catch(() => undefined);
  if (mounted) execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
  tmp.remove();
});

test('ENOSPC: v5 PUBACK 0x80 for what cannot be stored, the broker keeps serving, nothing acknowledged is lost', async (t) => {
  if (!mounted) {
    t.skip('needs root to mount a small tmpfs');
    return;
  }
  tb = await startBroker({ dataDir: `${mnt}/data`, config: { 'durable_storage.messages.n_shards': 1 } });
  const sub = await client(tb, { protocolVersion: 5, clientId: 'full-sub', clean: false, properties: { sessionExpiryInterval: 600 } });
  await sub.subscribeAsync('full/#', { qos: 1 });
  await sub.endAsync();

  const pub = await client(tb, { protocolVersion: 5, clientId: 'full-pub' });
  const payload = Buffer.alloc(64 * 1024, 7);
  let acked = 0;
  let refused: number | undefined;
  for (let i = 0; i < 200 && refused === undefined; i++) {
    const packet = await pub.publishAsync(`full/${i}`, payload, { qos: 1 }).then(
      () => null,
      (e: { code?: number }) => e,
    );
    if (packet === null) acked++;
    else refused = packet.code;
  }
  assert.equal(refused, 0x80, 'a PUBACK with reason 0x80 once the disk is full');
  assert.ok(acked > 0, 'some messages were stored before the disk filled');

  // QoS 0 retained messages whose metadata cannot be written: each failed write reported (counted
  // and logged), once per write batch rather than once per message, and the broker goes on.
  const errorsBefore = tb.broker.metrics.storeErrors;
  const flood = await client(tb, { protocolVersion: 5, clientId: 'full-flood' });
  for (let i = 0; i < 1000; i++) flood.publish(`full-retained/${i}`, Buffer.alloc(2048, 1), { qos: 0, retain: true });
  await flood.publishAsync('live/barrier', 'b', { qos: 1 }).catch(() => undefined);
  const deadline = Date.now() + 5000;
  while (tb.broker.metrics.storeErrors === errorsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const reported = tb.broker.metrics.storeErrors - errorsBefore;
  assert.ok(reported >= 1, 'failed QoS 0 stores are reported');
  assert.ok(reported < 1000, `reported per write batch, not per message (${reported})`);
  await flood.endAsync();

  // The broker still serves: a non-durable exchange works.
  const a = await client(tb, { protocolVersion: 5 });
  await a.subscribeAsync('live/x', { qos: 1 });
  const got = collect(a, 1);
  await pub.publishAsync('live/x', 'still here', { qos: 1 });
  assert.equal((await got)[0]?.payload.toString(), 'still here');

  // Everything acknowledged before is delivered to the persistent subscriber.
  const back = unconnected(tb, { protocolVersion: 5, clientId: 'full-sub', clean: false, properties: { sessionExpiryInterval: 600 } });
  const pending = collect(back, acked, 10000);
  back.connect();
  const queued = await pending;
  assert.deepEqual(
    queued.map((m) => m.topic),
    Array.from({ length: acked }, (_, i) => `full/${i}`),
  );
  await Promise.all([a.endAsync(), pub.endAsync(), back.endAsync()]);
});
