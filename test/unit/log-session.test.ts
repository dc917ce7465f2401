/**
 * LogSession (session/log-session.ts) on a real store, driven directly: what its progress
 * record brings back after a restart. Broker-level behaviour is in
 * test/integration/durable-queue.test.ts; these cases need a queue in an exact state.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { createMessage } from '../../src/wire/message.js';
import { DurableSessions } from '../../src/persistence/embedded/durable-sessions.js';
import { type LogSession, logSession } from '../../src/session/log-session.js';
import { decodeProgress } from '../../src/persistence/embedded/progress.js';
import { type BacklogLimits, Session } from '../../src/session/session.js';
import { SubscriptionTable } from '../../src/routing/subscriptions.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('strata-logsession-');
let durable: DurableSessions;
before(async () => {
  durable = await DurableSessions.open(tmp.dir, { nShards: 1 }, createLogger('silent'));
});
after(async () => {
  await durable.close();
  tmp.remove();
});

const limits: BacklogLimits = { maxQueued: 3, maxQueuedBytes: 0, overflow: 'drop_newest' };

/** A persistent session subscribed to `filter` from `start` (default: the log's end now). */
function sessionOn(clientId: string, filter: string, start = durable.shardEnds()): { session: Session; ls: LogSession } {
  const session = new Session(clientId);
  const ls = logSession(durable, session, limits, { dropped: 0, dropReasons: { queueFull: 0, slowConsumer: 0, tooLarge: 0 }, nativeDrains: 0, fastDrained: 0, sent: [0, 0, 0], nativeSent: 0 });
  session.durable = ls;
  new SubscriptionTable().put(session, filter, { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined, start });
  return { session, ls };
}

const payloads = (s: Session): string[] => [...s.queue].map((p) => p.msg?.payload.toString() ?? '?');

test('a range dropped by drop_newest stays dropped after a restart, even when deliveries before it were still queued', async () => {
  const start = durable.shardEnds();
  const { session, ls } = sessionOn('gap', 'g/t', start);
  // 10 messages while the client is away: 3 fit (limit 3), 7 are dropped (one open range).
  const verdicts: string[] = [];
  for (let i = 0; i < 10; i++) {
    const pos = await durable.saveSessionMessages(createMessage('g/t', Buffer.from(String(i)), 1, false, undefined, 'pub'));
    verdicts.push(ls.arrive(pos, 1, false, false));
  }
  assert.deepEqual(verdicts, ['left', 'left', 'left', ...Array(7).fill('dropped')]);
  // The client is back and reads its backlog: all 3, then the scan jumps the dropped range.
  ls.attached();
  ls.fill(session, 2);
  ls.fill(session, 2);
  assert.deepEqual(payloads(session), ['0', '1', '2']);
  // None of them sent yet: the record resumes at the first queued one and keeps the range.
  const record = decodeProgress(ls.encode(), 1);
  assert.equal(record.next[0], 0);
  const again = sessionOn('gap', 'g/t', start); // as the stored subscription restores it
  again.ls.restore(record);
  again.ls.fill(again.session, 100);
  assert.deepEqual(payloads(again.session), ['0', '1', '2'], 'the dropped messages are not replayed');
});

test('the backlog count comes back from the record', async () => {
  const start = durable.shardEnds();
  const { session, ls } = sessionOn('counts', 'c/t', start);
  for (let i = 0; i < 2; i++) {
    const pos = await durable.saveSessionMessages(createMessage('c/t', Buffer.from(String(i)), 1, false, undefined, 'pub'));
    assert.equal(ls.arrive(pos, 10, false, false), 'left');
  }
  const record = decodeProgress(ls.encode(), 1);
  assert.equal(record.backlog, 2);
  assert.equal(record.backlogBytes, 20);
  const again = sessionOn('counts', 'c/t', start);
  again.ls.restore(record);
  assert.equal(again.ls.backlog, 2);
  again.ls.attached();
  again.ls.fill(again.session, 100);
  assert.deepEqual(payloads(again.session), ['0', '1']);
  assert.equal(again.ls.backlog, 0);
  assert.equal(session.queue.length, 0);
});

test('an unreadable progress record is refused with a clear error; the session is still loaded and replays from its subscriptions', async () => {
  const { ls } = sessionOn('damaged', 'd/t');
  const good = ls.encode();
  assert.throws(() => decodeProgress(good.subarray(0, good.length - 1), 1), RangeError);
  assert.throws(() => decodeProgress(Buffer.concat([good, Buffer.from([0])]), 1), /trailing bytes/);
  assert.throws(() => decodeProgress(Buffer.from([9, 0, 1]), 1), /unknown progress record version 9/);
  assert.throws(() => decodeProgress(good, 2), /for 1 shards, the store has 2/);
  await durable.putSession('damaged', { expiry: 3600, disconnectedAt: 0, will: null });
  await durable.putSubscription('damaged', 'd/t', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined, start: [0] });
  await durable.write([{ op: 'put', table: 'progress', key: Buffer.from('damaged'), value: Buffer.from('garbage') }]);
  const loaded = durable.loadSessions().find((r) => r.clientId === 'damaged');
  assert.ok(loaded, 'the session is loaded');
  assert.equal(loaded.progress, null);
  assert.deepEqual(
    loaded.subscriptions.map((s) => s.filter),
    ['d/t'],
  );
});

test('sessions made while the log stands still share its shard ends; one reading on leaves the others and the shared array where they were', async () => {
  const ends = durable.shardEnds();
  assert.equal(durable.shardEnds(), ends, 'the same array while no shard moved');
  assert.ok(Object.isFrozen(ends));
  const a = sessionOn('share-a', 's/t');
  const b = sessionOn('share-b', 's/t');
  assert.equal(a.ls.next, b.ls.next, 'both sessions hold the one array');
  const before = [...ends];
  const pos = await durable.saveSessionMessages(createMessage('s/t', Buffer.from('x'), 1, false, undefined, 'pub'));
  assert.notEqual(durable.shardEnds(), ends, 'a new array once the shard moved');
  a.ls.attached();
  a.ls.fill(a.session, 10);
  assert.deepEqual(payloads(a.session), ['x']);
  assert.notEqual(a.ls.next, ends, 'the session that read on has its own');
  assert.equal(a.ls.next[0], pos.offset + 1);
  assert.deepEqual([...ends], before, 'the shared array is untouched');
  assert.equal(b.ls.next, ends, 'the other still shares it');
  // The other reads the message from the log, from where it was.
  b.ls.attached();
  b.ls.fill(b.session, 10);
  assert.deepEqual(payloads(b.session), ['x']);
  assert.deepEqual([...ends], before);
});
