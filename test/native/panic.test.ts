/**
 * No panic may abort the process (issue 12, item 4): a Rust panic anywhere in the binding —
 * a synchronous method, an AsyncTask's compute or resolve, a completion on a core writer
 * thread, a core thread dying with the completion in hand, the drain loop — becomes an
 * `ERR_PANIC` error naming the operation (a `NativeError` through src/native.ts), and the
 * next call works. Had one aborted, this file would die with it.
 *
 * Panics are injected at named sites with `testInjectPanic` (the real guard on the real entry
 * point catches them); the first test is a real one: redb panics opening a cut-short
 * `meta.redb`. The default panic hook prints each panic to stderr: that output is expected.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { DurableStore, NativeError, packMessages, TopicTrie, testInjectPanic } from '../../src/native.js';
import { tempDir } from '../helpers.js';

const dirs: { remove(): void }[] = [];
function freshDir(): string {
  const t = tempDir('strata-panic-');
  dirs.push(t);
  return t.dir;
}
after(() => dirs.forEach((d) => d.remove()));
// A site left armed (an assertion failed before it fired) must not leak into the next test.
afterEach(() => testInjectPanic(null));

/** Arms `site`; `fired()` then checks it went off. */
function arm(site: string): void {
  assert.equal(testInjectPanic(site), null);
}
function fired(): void {
  assert.equal(testInjectPanic(null), null, 'the armed site fired');
}

/** A NativeError ERR_PANIC naming `op`, from the injection at `site` when given. */
function panicIn(op: string, site?: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof NativeError, `a NativeError, not ${String(e)}`);
    assert.equal(e.code, 'ERR_PANIC', e.message);
    assert.ok(e.message.startsWith(`panic in ${op}: `), e.message);
    if (site !== undefined) assert.ok(e.message.includes(`injected panic at ${site} `), e.message);
    return true;
  };
}

/** Refused by a writer thread that died (ERR_STORE_CLOSED), or dropped as it unwound. */
function gone(e: unknown): boolean {
  assert.ok(e instanceof NativeError, String(e));
  assert.ok(e.code === 'ERR_STORE_CLOSED' || e.code === 'ERR_PANIC', e.message);
  return true;
}

const one = (n: number): Buffer => packMessages([{ publisher: 'pub', topic: 'p/t', qos: 1, retain: false, properties: null, payload: Buffer.from([n]) }]);
const key = Buffer.from('session-1');

test('a cut-short meta.redb (redb panics on it) is caught and rebuilt from the journal: the open succeeds, nothing lost', async () => {
  const dir = freshDir();
  let store = await DurableStore.open(dir, { nShards: 1 });
  await store.appendPacked(one(1), 1);
  await store.metaApply([{ op: 'put', table: 'sessions', key, value: Buffer.from('v') }]);
  await store.close();
  fs.truncateSync(path.join(dir, 'meta.redb'), 1000);
  // redb 3.1 asserts on the file length: formerly an abort of Node, then ERR_PANIC; the
  // metadata store now catches it, quarantines the file and rebuilds it from its journal.
  store = await DurableStore.open(dir, { nShards: 1 });
  assert.deepEqual(store.metaGet('sessions', key), Buffer.from('v'));
  assert.equal(store.stats().records, 1);
  assert.ok(store.report().damaged);
  assert.ok(fs.readdirSync(dir).some((f) => f.startsWith('meta.redb.corrupt')), 'quarantined, not deleted');
  await store.close();
});

test('a synchronous method (TopicTrie.match, Store.metaGet) throws ERR_PANIC, then works', async () => {
  const trie = new TopicTrie();
  trie.subscribe('a/+', 7);
  arm('TopicTrie.matchInto');
  assert.throws(() => trie.match('a/b'), panicIn('TopicTrie.matchInto', 'TopicTrie.matchInto'));
  fired();
  assert.deepEqual([...trie.match('a/b')], [7]);

  const store = await DurableStore.open(freshDir(), { nShards: 1 });
  await store.metaApply([{ op: 'put', table: 'sessions', key, value: Buffer.from('v') }]);
  arm('Store.metaGet');
  assert.throws(() => store.metaGet('sessions', key), panicIn('Store.metaGet', 'Store.metaGet'));
  fired();
  assert.deepEqual(store.metaGet('sessions', key), Buffer.from('v'));
  await store.close();
});

test('an AsyncTask (Store.open, Store.replayAsync) rejects with ERR_PANIC from compute or resolve, then works', async () => {
  const dir = freshDir();
  for (const site of ['Store.open/thread', 'Store.open/resolve', 'Store.open']) {
    arm(site);
    await assert.rejects(DurableStore.open(dir, { nShards: 1 }), panicIn('Store.open', site));
    fired();
  }
  // Each failed open let go of the directory (its lock, its writer threads).
  const store = await DurableStore.open(dir, { nShards: 1 });
  const pos = await store.appendPacked(one(1), 1);
  const args: Parameters<DurableStore['replayAsync']> = [
    [{ shard: pos[0] as number, from: 0, starts: [0] }],
    [{ filter: 'p/#', qos: 1, noLocal: false, retainAsPublished: false }],
    4,
    'me',
    10,
    1e9,
  ];
  for (const site of ['Store.replayAsync/thread', 'Store.replayAsync/resolve']) {
    arm(site);
    await assert.rejects(store.replayAsync(...args), panicIn('Store.replayAsync', site));
    fired();
  }
  const r = await store.replayAsync(...args);
  assert.equal(r.meta.length / 6, 1, 'one delivery');
  await store.close();
});

test('a Promise settled from a core thread (appendPacked, metaApply) rejects with ERR_PANIC when its completion panics, and the writer carries on', async () => {
  const store = await DurableStore.open(freshDir(), { nShards: 1 });
  arm('Store.appendPacked/thread'); // in the completion, on the shard writer thread
  await assert.rejects(store.appendPacked(one(1), 1), panicIn('Store.appendPacked', 'Store.appendPacked/thread'));
  fired();
  arm('Store.appendPacked'); // in the synchronous part: the Promise rejects, nothing throws
  const p = store.appendPacked(one(2), 1);
  await assert.rejects(p, panicIn('Store.appendPacked', 'Store.appendPacked'));
  fired();
  const pos = await store.appendPacked(one(3), 1);
  assert.equal(pos[1], 1, 'the first append was written (its completion panicked), the second was not');

  arm('Store.metaApplyPacked/thread'); // on the metadata writer thread (DurableStore.metaApply packs its writes)
  await assert.rejects(store.metaApply([{ op: 'put', table: 'sessions', key, value: Buffer.from('x') }]), panicIn('Store.metaApplyPacked', 'Store.metaApplyPacked/thread'));
  fired();
  await store.metaApply([{ op: 'put', table: 'sessions', key, value: Buffer.from('y') }]);
  assert.deepEqual(store.metaGet('sessions', key), Buffer.from('y'));
  await store.close();
});

test('a core thread that panics with completions in hand: their Promises reject with ERR_PANIC instead of hanging', async () => {
  const dir = freshDir();
  let store = await DurableStore.open(dir, { nShards: 1 });
  // Outside the binding's guard, as a panic in core code: the metadata writer thread unwinds
  // and drops the completions of its batch unrun. Two puts, likely one batch: both reject.
  arm('Store.metaApplyPacked/unguarded');
  const puts = ['a', 'b'].map((k) => store.metaApply([{ op: 'put', table: 'sessions', key: Buffer.from(k), value: Buffer.from(k) }]));
  const results = await Promise.allSettled(puts);
  fired();
  assert.equal(results[0]?.status, 'rejected');
  panicIn('Store.metaApplyPacked', 'Store.metaApplyPacked/unguarded')((results[0] as PromiseRejectedResult).reason);
  // The second: dropped with the first's batch or queue, or refused by a writer already gone.
  assert.equal(results[1]?.status, 'rejected');
  assert.ok(gone((results[1] as PromiseRejectedResult).reason));
  // The writer is gone: later writes are refused, reads work, the store closes and reopens.
  await assert.rejects(store.metaApply([{ op: 'put', table: 'sessions', key, value: Buffer.from('z') }]), gone);
  assert.equal(store.metaGet('sessions', key), null);

  // The same on a shard writer.
  arm('Store.appendPacked/unguarded');
  await assert.rejects(store.appendPacked(one(1), 1), panicIn('Store.appendPacked', 'Store.appendPacked/unguarded'));
  fired();
  await assert.rejects(store.appendPacked(one(2), 1), gone);
  await store.close();

  store = await DurableStore.open(dir, { nShards: 1 });
  assert.equal(store.stats().records, 1, 'the append whose completion was dropped was written');
  await store.appendPacked(one(3), 1);
  await store.metaApply([{ op: 'put', table: 'sessions', key, value: Buffer.from('z') }]);
  assert.deepEqual(store.metaGet('sessions', key), Buffer.from('z'));
  await store.close();
});

test('a panic in the drain loop rejects run() with ERR_PANIC, stop() still hands the state back, the next loop runs', async () => {
  const store = await DurableStore.open(freshDir(), { nShards: 1, fsync: 'none' });
  for (let i = 0; i < 5; i++) await store.appendPacked(one(i), 1);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const received: Buffer[] = [];
  client.on('data', (b: Buffer) => received.push(b));
  const sock = await accepted;
  const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
  const drain = () =>
    store.drain(fd, [{ shard: 0, from: 0, starts: [0] }], [{ filter: 'p/#', qos: 1, noLocal: false, retainAsPublished: false }], 4, 'sub', 100, 1e9, 16, new Float64Array(), 1, false);
  try {
    const ctl = drain();
    arm('DrainControl.run/loop'); // inside the loop, from the frame source it calls
    await assert.rejects(ctl.run(), (e: Error) => e.message.startsWith('ERR_PANIC: panic in DrainControl.run: injected panic at DrainControl.run/loop '));
    fired();
    const h = ctl.stop();
    assert.ok(h, 'the loop parked its state');
    assert.equal(h.ended, 'failed');
    assert.equal(h.error, 'the drain loop panicked');
    assert.equal(h.sent, 0);

    const again = drain();
    assert.equal(await again.run(), 'caught-up');
    const h2 = again.stop();
    assert.equal(h2?.sent, 5);
    assert.equal(h2?.inflight.length, 5 * 4, 'five QoS 1 deliveries in flight');
    // Five PUBLISH packets of 10 bytes (topic p/t, packet id, one payload byte).
    while (Buffer.concat(received).length < 5 * 10) await new Promise((r) => setTimeout(r, 5));
    assert.equal(Buffer.concat(received).length, 5 * 10);
  } finally {
    client.destroy();
    sock.destroy();
    server.close();
    await store.close();
  }
});
