/**
 * Re-consume through `$log/<from>/<filter>` (issue 18, SPEC E2) with MQTT.js against a real broker:
 * from an RFC 3339 time, from `earliest`, from an offset (N, or shard:offset), the logged messages
 * in order, then the live ones, each once — all read from the log, nothing appended for it; a bad
 * `$log/` filter is refused in the SUBACK (v5 0x8F, 3.1.1 0x80); UNSUBSCRIBE stops it.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { client, persistent, quiet, recordingClient, sleep, startBroker, type TestBroker } from '../helpers.js';

let tb: TestBroker | null = null;
afterEach(async () => {
  await tb?.close();
  tb = null;
});

/** Payloads a client receives, in order. */
function recorder(c: MqttClient): { topic: string; payload: string }[] {
  const got: { topic: string; payload: string }[] = [];
  c.on('message', (topic, p) => got.push({ topic, payload: p.toString() }));
  return got;
}

async function until(cond: () => boolean, what: string, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function publish(pub: MqttClient, prefix: string, n: number, topic = 'r/a'): Promise<void> {
  for (let i = 0; i < n; i++) await pub.publishAsync(topic, `${prefix}${i}`, { qos: 1 });
}

const seq = (prefix: string, n: number): string[] => Array.from({ length: n }, (_v, i) => `${prefix}${i}`);

test('$log/<RFC 3339 time>/filter: the logged messages from then, in order, then the live ones, each once', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'r/#', 'msglog.mode': 'sync' } });
  const pub = await client(tb, { protocolVersion: 5, clientId: 'rc-pub' });
  await publish(pub, 'A', 10);
  await sleep(15);
  const t = new Date().toISOString();
  await sleep(15);
  await publish(pub, 'B', 10);
  await pub.publishAsync('other/x', 'not logged', { qos: 1 });
  const sub = await client(tb, { protocolVersion: 5 });
  const got = recorder(sub);
  const granted = await sub.subscribeAsync(`$log/${t}/r/#`, { qos: 1 });
  assert.equal(granted[0]?.qos, 1);
  await until(() => got.length >= 10, 'the history');
  assert.deepEqual(got.map((g) => g.payload), seq('B', 10));
  assert.ok(got.every((g) => g.topic === 'r/a'), 'under their own topics');
  await publish(pub, 'C', 10); // live
  await until(() => got.length >= 20, 'the live ones');
  assert.deepEqual(await quiet(sub, 200), []);
  assert.deepEqual(got.map((g) => g.payload), [...seq('B', 10), ...seq('C', 10)]);
  assert.equal(tb.broker.durable?.store.stats().records, 30, 'nothing appended for the reader: no second copy');
  await Promise.all([sub.endAsync(), pub.endAsync()]);
});

test('$log/earliest and $log/<offset>: from the start, from an offset (every shard, or shard:offset); then live', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'r/#' } });
  const pub = await client(tb, { protocolVersion: 5, clientId: 'rc-pub2' });
  await publish(pub, 'A', 2000);
  await until(() => tb?.broker.metrics.msglog.logged === 2000, 'the appends');
  const store = tb.broker.durable?.store;
  assert.ok(store);
  const shard = store.shardOf('rc-pub2');
  const early = await client(tb, { protocolVersion: 4 });
  const got = recorder(early);
  await early.subscribeAsync('$log/earliest/r/#', { qos: 1 });
  const byOffset = await client(tb, { protocolVersion: 5 });
  const got2 = recorder(byOffset);
  await byOffset.subscribeAsync(`$log/${shard}:1500/r/+`, { qos: 0 });
  const every = await client(tb, { protocolVersion: 5 });
  const got3 = recorder(every);
  await every.subscribeAsync('$log/1990/r/a', { qos: 1 });
  await until(() => got.length >= 2000 && got2.length >= 500 && got3.length >= 10, 'the history');
  assert.deepEqual(got.map((g) => g.payload), seq('A', 2000), 'a page at a time, in order');
  assert.deepEqual(got2.map((g) => g.payload), seq('A', 2000).slice(1500));
  assert.deepEqual(got3.map((g) => g.payload), seq('A', 2000).slice(1990));
  await publish(pub, 'L', 3);
  await until(() => got.length >= 2003 && got2.length >= 503 && got3.length >= 13, 'the live ones');
  await sleep(100);
  assert.deepEqual(got.slice(2000).map((g) => g.payload), seq('L', 3));
  assert.deepEqual(got2.slice(500).map((g) => g.payload), seq('L', 3));
  assert.equal(got3.length, 13);
  await Promise.all([early.endAsync(), byOffset.endAsync(), every.endAsync(), pub.endAsync()]);
});

test('a bad $log/ filter is refused in the SUBACK (v5 0x8F, 3.1.1 0x80); UNSUBSCRIBE stops the reader', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'r/#' } });
  const pub = await client(tb, { protocolVersion: 5 });
  await publish(pub, 'A', 3);
  const v5 = await client(tb, { protocolVersion: 5 });
  const future = new Date(Date.now() + 3600_000).toISOString();
  const refusal = (c: MqttClient, f: string): Promise<number | undefined> =>
    c.subscribeAsync(f, { qos: 1 }).then(
      (g) => g[0]?.qos,
      (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0],
    );
  for (const f of [`$log/${future}/r/#`, '$log/99999999/r/#', '$log/9:0/r/#', '$log/0:99/r/#', '$log/yesterday/r/#', '$log/earliest', '$log/latest/r/#']) {
    assert.equal(await refusal(v5, f), 0x8f, f);
  }
  const v3 = await client(tb, { protocolVersion: 4 });
  assert.equal(await refusal(v3, '$log/99999999/r/#'), 0x80);
  const got = recorder(v5);
  await v5.subscribeAsync('$log/earliest/r/#', { qos: 1 });
  await until(() => got.length >= 3, 'the history');
  await v5.unsubscribeAsync('$log/earliest/r/#');
  await publish(pub, 'B', 3);
  assert.deepEqual(await quiet(v5, 200), [], 'stopped');
  await Promise.all([v5.endAsync(), v3.endAsync(), pub.endAsync()]);
});

test('a persistent session re-consumes too, next to its stored subscriptions; the $log/ reader is not stored', async () => {
  tb = await startBroker({ config: { 'msglog.topics': 'r/#' } });
  const pub = await client(tb, { protocolVersion: 5, clientId: 'rc-pub3' });
  await publish(pub, 'A', 500);
  await until(() => tb?.broker.metrics.msglog.logged === 500, 'the appends');
  const s = await client(tb, persistent(5, 'rc-durable'));
  const got = recorder(s);
  await s.subscribeAsync('r/live', { qos: 1 });
  await s.subscribeAsync('$log/earliest/r/a', { qos: 1 });
  await until(() => got.length >= 500, 'the history');
  await pub.publishAsync('r/live', 'stored', { qos: 1 });
  await publish(pub, 'B', 3);
  await until(() => got.length >= 504, 'live ones of both');
  assert.deepEqual(got.filter((g) => g.topic === 'r/a').map((g) => g.payload), [...seq('A', 500), ...seq('B', 3)]);
  await s.endAsync();
  await publish(pub, 'C', 2);
  await pub.publishAsync('r/live', 'while away', { qos: 1 });
  const { c: back, got: again } = await recordingClient(tb, persistent(5, 'rc-durable'));
  await until(() => again.length >= 1, 'the stored subscription\'s message');
  await sleep(200);
  assert.deepEqual(again.map((g) => g.payload), ['while away'], 'the $log/ reader lasted as long as its connection');
  await Promise.all([back.endAsync(), pub.endAsync()]);
});
