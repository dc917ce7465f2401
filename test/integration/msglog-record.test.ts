/**
 * The message log's recording (issue 18, SPEC E1) with a real broker and MQTT.js clients:
 * what `msglog.topics` selects is appended once (a message persistent sessions need is not
 * written twice), entries carry what the issue lists, and what an append's failure means for
 * the publisher in `async` (counted), `async` with `ignore_errors = false` (refused while the
 * log fails) and `sync` mode (PUBACK only once the log has it; a failed append: v5 0x80).
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { createBroker, loadConfig } from '../../src/index.js';
import { storeOptions } from '../../src/lifecycle/restore.js';
import { testInjectPanic, type DurableStore } from '../../src/native.js';
import { entryJson, openReader, planQuery } from '../../src/msglog/query.js';
import { generate, type IPubackPacket, type Packet } from 'mqtt-packet';
import { client, collect, persistent, RawClient, recordingClient, sleep, startBroker, type TestBroker } from '../helpers.js';

let tb: TestBroker | null = null;
afterEach(async () => {
  testInjectPanic(null);
  await tb?.close();
  tb = null;
});

function storeOf(t: TestBroker): DurableStore {
  const d = t.broker.durable;
  assert.ok(d);
  return d.store;
}

function query(t: TestBroker, topic: string): ReturnType<typeof entryJson>[] {
  const store = storeOf(t);
  return openReader(store, planQuery(store, { topic }))
    .take(1_000_000)
    .map((e) => entryJson(e, t.broker.msglog.keyProperty));
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('async: the selected topics are logged, once each, with id, topic, key, payload, properties, qos, retain, offset and time', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'orders/#, audit/+/x', 'msglog.key': 'tenant' } });
  const t0 = Date.now();
  // A persistent session away needs orders/a (it goes to the log for it anyway).
  const away = await client(tb, persistent(5, 'away'));
  await away.subscribeAsync('orders/a', { qos: 1 });
  await away.endAsync();
  const live = await client(tb, { protocolVersion: 5 });
  await live.subscribeAsync('#', { qos: 1 });
  const got = collect(live, 31);
  const pub = await client(tb, { protocolVersion: 5, clientId: 'pub-1' });
  for (let i = 0; i < 10; i++) await pub.publishAsync('orders/a', `a${i}`, { qos: 1, properties: { userProperties: { tenant: 't7' } } });
  for (let i = 0; i < 10; i++) await pub.publishAsync('orders/b', Buffer.from([0xff, i]), { qos: 0 });
  for (let i = 0; i < 10; i++) await pub.publishAsync('other/x', `o${i}`, { qos: 1 });
  await pub.publishAsync('audit/1/x', 'retained', { qos: 1, retain: true });
  assert.equal((await got).length, 31, 'every message delivered');
  const m = tb.broker.metrics.msglog;
  await until(() => m.logged === 21, 'the appends');
  assert.equal(m.failed, 0);
  // 21 records: orders/a once (not once for the session and once for the log), nothing of other/x.
  assert.equal(storeOf(tb).stats().records, 21);
  const entries = query(tb, '#');
  assert.equal(entries.length, 21);
  assert.deepEqual(
    entries.filter((e) => e.topic === 'orders/a').map((e) => e.payload),
    Array.from({ length: 10 }, (_v, i) => `a${i}`),
    'in publish order',
  );
  const a = entries.find((e) => e.topic === 'orders/a');
  assert.ok(a);
  assert.equal(a.key, 't7', 'the key: the user property msglog.key names');
  assert.equal(a.publisher, 'pub-1');
  assert.equal(a.qos, 1);
  assert.equal(a.encoding, 'utf8');
  assert.deepEqual(a.properties?.['userProperties'], { tenant: 't7' });
  assert.equal(a.id, `${a.shard}:${a.offset}`);
  assert.ok(a.ts >= t0 - 5 && a.ts <= Date.now(), 'publish time');
  assert.equal(Date.parse(a.time), a.ts);
  const b = entries.find((e) => e.topic === 'orders/b');
  assert.equal(b?.key, 'pub-1', 'without the property: the publisher');
  assert.equal(b?.encoding, 'base64');
  assert.equal(b?.qos, 0);
  const r = entries.find((e) => e.topic === 'audit/1/x');
  assert.equal(r?.retain, true);
  // The persistent session gets its messages once, from the same record.
  const { c: back, got: mine } = await recordingClient(tb, persistent(5, 'away'));
  await until(() => mine.length >= 10, 'the session\'s messages');
  await sleep(100);
  assert.deepEqual(
    mine.map((x) => x.payload),
    Array.from({ length: 10 }, (_v, i) => `a${i}`),
  );
  await Promise.all([back.endAsync(), live.endAsync(), pub.endAsync()]);
});

test('a persistent session online at QoS 0 gets a logged message through the log, so its replay never repeats it', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'q0/#' } });
  const s = await client(tb, persistent(5, 'q0-sub'));
  await s.subscribeAsync('q0/#', { qos: 0 });
  const pub = await client(tb, { protocolVersion: 5 });
  const got = collect(s, 5);
  for (let i = 0; i < 5; i++) await pub.publishAsync('q0/t', `m${i}`, { qos: 1 });
  assert.equal((await got).length, 5);
  await s.endAsync();
  const { c: again, got: extra } = await recordingClient(tb, persistent(5, 'q0-sub'));
  await sleep(300);
  assert.deepEqual(extra, [], 'nothing delivered twice after the session comes back');
  assert.equal(storeOf(tb).stats().records, 5);
  await Promise.all([again.endAsync(), pub.endAsync()]);
});

test('async (ignore_errors, the default): a failed append is counted and the publisher is acknowledged; the message is delivered', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'f/#' } });
  const sub = await client(tb, { protocolVersion: 5 });
  await sub.subscribeAsync('f/#', { qos: 1 });
  const got = collect(sub, 2);
  const pub = await client(tb, { protocolVersion: 5 });
  testInjectPanic('Store.appendPacked');
  await pub.publishAsync('f/1', 'lost to the log', { qos: 1 });
  await until(() => tb?.broker.metrics.msglog.failed === 1, 'the failure');
  await pub.publishAsync('f/2', 'logged', { qos: 1 });
  assert.deepEqual((await got).map((x) => x.payload.toString()), ['lost to the log', 'logged']);
  await until(() => tb?.broker.metrics.msglog.logged === 1, 'the append');
  assert.deepEqual(tb.broker.metrics.msglog, { logged: 1, failed: 1, refused: 0, sqlRows: 0, sqlFailed: 0 });
  assert.deepEqual(query(tb, 'f/#').map((e) => e.payload), ['logged']);
  await Promise.all([sub.endAsync(), pub.endAsync()]);
});

test('async with ignore_errors = false: while the log fails, a logged message is refused (v5 0x80) but still delivered; the next good append ends it', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'f/#', 'msglog.ignore_errors': false } });
  const sub = await client(tb, { protocolVersion: 5 });
  await sub.subscribeAsync('#', { qos: 1 });
  const got = collect(sub, 4);
  const pub = await client(tb, { protocolVersion: 5 });
  testInjectPanic('Store.appendPacked');
  await pub.publishAsync('f/1', 'one', { qos: 1 }); // not known to fail yet: acknowledged
  await until(() => tb?.broker.metrics.msglog.failed === 1, 'the failure');
  await assert.rejects(pub.publishAsync('f/2', 'two', { qos: 1 }), (e: { code?: number }) => e.code === 0x80);
  await pub.publishAsync('other', 'not logged', { qos: 1 }); // other topics are not concerned
  await until(() => tb?.broker.metrics.msglog.logged === 1, 'the append of f/2');
  await pub.publishAsync('f/3', 'three', { qos: 1 });
  assert.deepEqual((await got).map((x) => x.payload.toString()), ['one', 'two', 'not logged', 'three']);
  assert.equal(tb.broker.metrics.msglog.refused, 1);
  await Promise.all([sub.endAsync(), pub.endAsync()]);
});

test('sync: the PUBACK comes once the log has the message; a failed append refuses it (v5 0x80; 3.1.1: no PUBACK, closed)', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 's/#', 'msglog.mode': 'sync' } });
  const store = storeOf(tb);
  const pub = await client(tb, { protocolVersion: 5 });
  for (let i = 0; i < 20; i++) {
    await pub.publishAsync('s/x', `m${i}`, { qos: 1 });
    // Acknowledged means in the log: readable at once.
    assert.equal(query(tb, 's/#').length, i + 1);
  }
  testInjectPanic('Store.appendPacked');
  await assert.rejects(pub.publishAsync('s/x', 'refused', { qos: 1 }), (e: { code?: number }) => e.code === 0x80);
  await pub.publishAsync('s/x', 'after', { qos: 1 });
  assert.deepEqual(query(tb, 's/#').slice(-1).map((e) => e.payload), ['after']);
  assert.equal(tb.broker.metrics.msglog.refused, 1);
  // 3.1.1: not acknowledged, the connection closed so the client sends it again.
  const v3 = await client(tb, { protocolVersion: 4, clientId: 'v3-pub' });
  testInjectPanic('Store.appendPacked');
  const closed = new Promise<void>((resolve) => v3.once('close', () => resolve()));
  let acked = false;
  v3.publish('s/x', 'v3', { qos: 1 }, (err) => {
    if (!err) acked = true;
  });
  await closed;
  assert.equal(acked, false);
  v3.end(true);
  assert.ok(store.shardEnd(0) + store.shardEnd(1) >= 21);
  await pub.endAsync();
});

test('sync: PUBACKs leave in the order the PUBLISHes came when logged and unlogged ones share a turn; a failed batch refuses each of its messages', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 's/#', 'msglog.mode': 'sync' } });
  const raw = await RawClient.tcp(tb.port, 5);
  assert.equal(((await raw.connect('order-pub')) as { reasonCode?: number }).reasonCode, 0);
  // One write: one read, one turn, one append batch. The logged ones wait for it, the others do
  // not — their PUBACKs must still not overtake the earlier ones' ([MQTT-4.6.0-2]).
  const burst = (ids: number[], logged: (id: number) => boolean): void =>
    raw.sendRaw(Buffer.concat(ids.map((id) => generate({ cmd: 'publish', topic: logged(id) ? 's/x' : 'other', payload: Buffer.from(`m${id}`), qos: 1, messageId: id, retain: false, dup: false } as Packet, { protocolVersion: 5 }))));
  const acks = async (n: number): Promise<[number, number][]> => {
    const out: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      const a = (await raw.next('puback')) as IPubackPacket | null;
      assert.ok(a, 'a PUBACK');
      out.push([a.messageId as number, a.reasonCode ?? 0]);
    }
    return out;
  };
  burst([1, 2, 3, 4, 5, 6], (id) => id % 2 === 1);
  assert.deepEqual(await acks(6), [1, 2, 3, 4, 5, 6].map((id) => [id, 0]));
  assert.deepEqual(query(tb, 's/#').map((e) => e.payload), ['m1', 'm3', 'm5']);
  testInjectPanic('Store.appendPacked');
  burst([7, 8, 9, 10], (id) => id !== 9);
  assert.deepEqual(await acks(4), [
    [7, 0x80],
    [8, 0x80],
    [9, 0],
    [10, 0x80],
  ]);
  assert.equal(tb.broker.metrics.msglog.refused, 3);
  raw.end();
});

test('config: a bad filter in msglog.topics or msglog.retention, or the log without the store, stop the broker being built', () => {
  assert.throws(() => createBroker({ config: { 'msglog.topics': 'a/#/b' } }), /msglog\.topics: "a\/#\/b" is not a valid topic filter/);
  assert.throws(() => createBroker({ config: { 'msglog.topics': '$share/g/a' } }), /msglog\.topics/);
  assert.throws(() => createBroker({ config: { 'msglog.topics': 'a/#', 'durable_sessions.enable': false } }), /needs durable_sessions\.enable/);
  assert.throws(() => createBroker({ config: { 'msglog.topics': 'a/#', 'persistence.registry': 'redis' } }), /msglog\.topics needs persistence\.registry = embedded \(it is redis\)/);
  assert.throws(() => createBroker({ config: { 'msglog.retention': 'a/#=soon' } }), /msglog\.retention/);
  assert.throws(() => createBroker({ config: { 'msglog.topics': 'a/#', 'msglog.sql_pool': 'pgsql.nope' } }), /msglog\.sql_pool: pool "pgsql\.nope" is not configured/);
  assert.throws(() => createBroker({ config: { 'msglog.sql_pool': 'pgsql.db', 'backend.pgsql.db.server': '127.0.0.1:5432' } }), /msglog\.sql_pool: nothing is logged/);
  // Per-filter retention becomes the store's retention overrides.
  const opts = storeOptions(loadConfig({ overrides: { 'msglog.retention': 'audit/#=30d, sensors/+/t=90m' } }));
  assert.deepEqual(opts.retentionOverrides, [
    { filter: 'audit/#', ms: 30 * 86400_000 },
    { filter: 'sensors/+/t', ms: 90 * 60_000 },
  ]);
});
