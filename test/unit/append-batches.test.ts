/**
 * DurableSessions' append batches on a real store (fsync always): a message only the message
 * log keeps (logMessage, msglog async mode) may wait for more in its batch and completes
 * without an fdatasync of its own; a message someone waits for (saveSessionMessages: a
 * persistent session's, a sync-mode log's) hands its batch — with whatever log-only messages
 * wait in it — to the store at the end of its turn and completes once synced. Order is kept
 * across both.
 */
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { createMessage } from '../../src/wire/message.js';
import { DurableSessions } from '../../src/persistence/embedded/durable-sessions.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('strata-append-batches-');
let durable: DurableSessions;
before(async () => {
  durable = await DurableSessions.open(tmp.dir, { nShards: 1, fsync: 'always' }, createLogger('silent'));
});
after(async () => {
  await durable.close();
  tmp.remove();
});

const msg = (i: number) => createMessage('b/t', Buffer.from(`m${i}`), 1, false, undefined, 'pub');
const syncs = (): number => durable.store.stats().shards.reduce((n, s) => n + s.syncs, 0);
const records = (): number => durable.store.stats().records;

test('log-only appends complete without a sync of their own, in batches across turns', async () => {
  const r0 = records();
  const s0 = syncs();
  const done: Promise<void>[] = [];
  // 200 messages over 20 turns: fewer batches than turns, no sync per batch.
  for (let t = 0; t < 20; t++) {
    for (let i = 0; i < 10; i++) done.push(durable.messages.logMessage(msg(t * 10 + i)));
    await turn();
  }
  const batches = new Set(done).size;
  await Promise.all(done);
  assert.equal(records() - r0, 200);
  assert.ok(batches < 20, `${batches} batches for 20 turns`);
  assert.ok(syncs() - s0 <= 2, `${syncs() - s0} syncs for ${batches} log-only batches`);
});

test('a message someone waits for takes the waiting log-only ones with it, in order, and is synced', async () => {
  const r0 = records();
  const logged = [durable.messages.logMessage(msg(1000)), durable.messages.logMessage(msg(1001))];
  const s0 = syncs();
  const t0 = performance.now();
  const pos = await durable.saveSessionMessages(msg(1002));
  assert.ok(performance.now() - t0 < 1000);
  assert.ok(syncs() > s0, 'synced before it completed');
  await Promise.all(logged);
  assert.equal(records() - r0, 3);
  const back = durable.store.readAt([0, 1, 2].map((k) => ({ shard: pos.shard, offset: pos.offset - 2 + k })));
  assert.deepEqual(
    back.map((m) => m?.payload.toString()),
    ['m1000', 'm1001', 'm1002'],
  );
});

test('a full log-only batch goes at the end of its turn, not after its linger time', async () => {
  const r0 = records();
  const full: Promise<void>[] = [];
  for (let i = 0; i < 1100; i++) full.push(durable.messages.logMessage(msg(i)));
  assert.equal(new Set(full).size, 1, 'one batch while it fills');
  await turn();
  // Handed over at the end of that turn: a message of the next one starts a new batch (a
  // batch under its maximum would have taken it: see the first test).
  const next = durable.messages.logMessage(msg(1100));
  assert.notEqual(next, full[0]);
  await Promise.all([...full, next]);
  assert.equal(records() - r0, 1101);
});

test('findWill: a will mark it cannot read is "not in the log" (published again), never a failed start', async () => {
  const pos = await durable.saveSessionMessages(createMessage('w/t', Buffer.from('will'), 1, false, undefined, 'will-client'));
  const shard = durable.store.shardOf('will-client');
  assert.deepEqual(durable.findWill('will-client', { shard, from: pos.offset }), pos);
  assert.equal(durable.findWill('will-client', { shard, from: pos.offset + 1 }), null);
  for (const mark of [
    { shard: 99, from: 0 },
    { shard: -1, from: 0 },
    { shard: 0.5, from: 0 },
    { shard, from: -1 },
    { shard, from: Number.NaN },
  ]) {
    assert.equal(durable.findWill('will-client', mark), null, JSON.stringify(mark));
  }
});
