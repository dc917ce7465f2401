/**
 * Event listeners inform; they never decide (issue 12, item 5). A listener that throws or
 * rejects must not disconnect the client that caused the event, must not change where later
 * messages go, and is counted and logged.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { client, collect, quiet, startBroker, type TestBroker } from '../helpers.js';

let tb: TestBroker;
beforeEach(async () => {
  tb = await startBroker();
});
afterEach(async () => {
  await tb.close();
});

test('a throwing message.delivered listener changes nothing: each message goes to its own subscribers only', async () => {
  tb.broker.on('message.delivered', () => {
    throw new Error('listener bug');
  });
  // One persistent and one in-memory subscriber on a/1; a persistent one on b/2.
  const pa = await client(tb, { clientId: 'pa', clean: false });
  await pa.subscribeAsync('a/1', { qos: 1 });
  const ma = await client(tb, { clientId: 'ma' });
  await ma.subscribeAsync('a/1', { qos: 1 });
  const pb = await client(tb, { clientId: 'pb', clean: false });
  await pb.subscribeAsync('b/2', { qos: 1 });
  const pub = await client(tb, { clientId: 'pub' });
  const gotPa = collect(pa, 1);
  const gotMa = collect(ma, 1);
  const gotPb = collect(pb, 1);
  await pub.publishAsync('a/1', 'to-a', { qos: 1 });
  await pub.publishAsync('b/2', 'to-b', { qos: 1 });
  assert.equal((await gotPa)[0]?.payload.toString(), 'to-a');
  assert.equal((await gotMa)[0]?.payload.toString(), 'to-a');
  assert.equal((await gotPb)[0]?.payload.toString(), 'to-b');
  assert.deepEqual(await quiet(pa, 200), [], 'the message to b/2 is not routed to a/1 subscribers');
  assert.deepEqual(await quiet(ma, 50), []);
  assert.equal(pub.connected, true, 'the publisher is still connected');
  assert.ok((tb.broker.metrics.listenerErrors['message.delivered'] ?? 0) >= 2);
  await Promise.all([pa, ma, pb, pub].map((c) => c.endAsync()));
});

test('a throwing message.publish listener does not disconnect the publisher; other listeners still run', async () => {
  let seen = 0;
  tb.broker.on('message.publish', () => {
    throw new Error('listener bug');
  });
  tb.broker.on('message.publish', () => {
    seen++;
  });
  tb.broker.on('client.connected', () => Promise.reject(new Error('async listener bug')));
  const sub = await client(tb, { clientId: 'sub' });
  await sub.subscribeAsync('t', { qos: 1 });
  const pub = await client(tb, { clientId: 'pub' });
  const got = collect(sub, 3);
  for (const m of ['1', '2', '3']) await pub.publishAsync('t', m, { qos: 1 });
  assert.deepEqual(
    (await got).map((m) => m.payload.toString()),
    ['1', '2', '3'],
  );
  assert.equal(pub.connected, true);
  assert.equal(seen, 3);
  assert.equal(tb.broker.metrics.listenerErrors['message.publish'], 3);
  assert.equal(tb.broker.metrics.listenerErrors['client.connected'], 2);
  assert.equal(tb.broker.metrics.protocolErrors, 0);
  await Promise.all([sub.endAsync(), pub.endAsync()]);
});

test('a once listener that throws is removed like any once listener', async () => {
  let calls = 0;
  tb.broker.once('client.connected', () => {
    calls++;
    throw new Error('once');
  });
  const a = await client(tb, { clientId: 'a' });
  const b = await client(tb, { clientId: 'b' });
  assert.equal(calls, 1);
  assert.equal(tb.broker.listenerCount('client.connected'), 0);
  await Promise.all([a.endAsync(), b.endAsync()]);
});

test('events carry snapshots (plain, frozen), never the live connection; a slow async consumer holds nobody up', async () => {
  const clients: object[] = [];
  const messages: object[] = [];
  tb.broker.on('client.connected', (c) => clients.push(c));
  tb.broker.on('message.publish', (_c, m) => messages.push(m));
  // A consumer whose backend never answers: publishes go on, its queue stays bounded.
  const stuck = tb.broker.consume('message.publish', () => new Promise(() => undefined), { name: 'stuck', maxQueued: 3 });
  const sub = await client(tb, { clientId: 'snap-sub' });
  await sub.subscribeAsync('snap/#', { qos: 1 });
  const got = collect(sub, 10);
  const pub = await client(tb, { clientId: 'snap-pub' });
  for (let i = 0; i < 10; i++) await pub.publishAsync('snap/x', String(i), { qos: 1 });
  assert.equal((await got).length, 10);
  const c = clients.find((x) => (x as { clientId: string }).clientId === 'snap-pub') as Record<string, unknown>;
  assert.ok(Object.isFrozen(c));
  assert.deepEqual(Object.keys(c).sort(), ['clientId', 'protocolVersion', 'remoteAddress', 'username']);
  assert.ok(messages.every((m) => Object.isFrozen(m) && !('encoded' in m)));
  assert.deepEqual({ ...tb.broker.metrics.consumers.stuck }, { queued: 4, handled: 0, failed: 0, dropped: 6, waiting: 3 });
  stuck.close();
  await Promise.all([sub, pub].map((x) => x.endAsync()));
});
