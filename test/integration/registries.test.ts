/**
 * The persistence interfaces' read side (smqtt's getSessionMessages / getRetainMessage) on the
 * embedded store, filled by real clients: what an offline session has waiting — in flight and
 * queued — and retained messages by filter.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, collect, persistent, sleep, startBroker, unconnected } from '../helpers.js';

test('getSessionMessages lists what an offline session has waiting: in flight first, queued after, its QoS capped by the subscription', async () => {
  const tb = await startBroker();
  try {
    const store = tb.broker.durable!;
    const sub = await client(tb, { ...persistent(5, 'reg-sub'), clean: true });
    await sub.subscribeAsync('reg/#', { qos: 1 });
    await sub.subscribeAsync('other/+', { qos: 0 });
    // Take one message and leave it unacknowledged: it stays in flight.
    (sub as unknown as { handleMessage: unknown }).handleMessage = (_p: unknown, _cb: () => void) => undefined; // never acks
    const pub = await client(tb);
    await pub.publishAsync('reg/a', 'first', { qos: 1 });
    await sleep(100);
    sub.stream.destroy();
    await sleep(100);
    for (let i = 0; i < 5; i++) await pub.publishAsync(`reg/${i}`, `queued ${i}`, { qos: 2 });
    await pub.publishAsync('other/x', 'capped', { qos: 1 });
    await pub.publishAsync('nobody/x', 'unmatched', { qos: 1 });
    await sleep(50); // progress records are written within milliseconds

    const all = await store.messages.getSessionMessages('reg-sub', 100);
    assert.deepEqual(
      all.map((m) => [m.msg.topic, m.msg.payload.toString(), m.qos, m.inflight]),
      [['reg/a', 'first', 1, true], ...[0, 1, 2, 3, 4].map((i) => [`reg/${i}`, `queued ${i}`, 1, false]), ['other/x', 'capped', 0, false]],
    );
    assert.equal((await store.messages.getSessionMessages('reg-sub', 3)).length, 3);
    assert.deepEqual(await store.messages.getSessionMessages('no-such-session', 10), []);

    // What it lists is what the session gets when it comes back.
    const back = unconnected(tb, { ...persistent(5, 'reg-sub'), clean: false });
    const got = collect(back, 7);
    back.connect();
    await got;
    assert.deepEqual((await got).map((m) => m.payload.toString()).sort(), all.map((m) => m.msg.payload.toString()).sort());
    await sleep(100);
    assert.deepEqual(await store.messages.getSessionMessages('reg-sub', 100), [], 'nothing waits once delivered and acknowledged');
    await Promise.all([back.endAsync(), pub.endAsync()]);
  } finally {
    await tb.close();
  }
});

test('getRetainMessage returns the stored retained messages a filter matches, and not `$` topics for a leading wildcard', async () => {
  const tb = await startBroker();
  try {
    const pub = await client(tb);
    for (const t of ['r/a', 'r/b', 'r/b/c', 's/a', '$app/r']) await pub.publishAsync(t, `v ${t}`, { qos: 1, retain: true });
    await pub.publishAsync('r/b', '', { qos: 1, retain: true }); // cleared
    const reg = tb.broker.durable!.retained;
    const topics = async (f: string): Promise<string[]> => (await reg.getRetainMessage(f)).map((m) => m.topic).sort();
    assert.deepEqual(await topics('r/+'), ['r/a']);
    assert.deepEqual(await topics('r/#'), ['r/a', 'r/b/c']);
    assert.deepEqual(await topics('#'), ['r/a', 'r/b/c', 's/a']);
    assert.deepEqual(await topics('+/a'), ['r/a', 's/a']);
    assert.deepEqual(await topics('$app/#'), ['$app/r']);
    const [m] = await reg.getRetainMessage('s/a');
    assert.equal(m?.payload.toString(), 'v s/a');
    assert.equal(m?.retain, true);
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});
