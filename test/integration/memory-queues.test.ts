/**
 * mqtt.max_queued_in_memory: what a session kept in memory only may queue (a clean session behind
 * its window, a persistent one while no store keeps it), as Mosquitto's max_queued_messages and
 * EMQX's max_mqueue_len bound it (1,000). Before, such a queue was bounded by max_queued_messages
 * alone (1,000,000): a subscriber that stalled beside others that keep up held a million messages
 * in memory. Persistent sessions in the log are not bounded by it (their queue is the log).
 * Real clients over TCP, an in-process broker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { client, collect, persistent, RawClient, recordingClient, sleep, startBroker, type TestBroker } from '../helpers.js';

const WINDOW = 16;

/** A clean QoS 1 subscriber to `topic` over raw TCP that acknowledges nothing until told (its packets wait in the client). */
async function stalledSubscriber(tb: TestBroker, clientId: string, topic: string): Promise<RawClient> {
  const c = await RawClient.tcp(tb.port, 4);
  await c.connect(clientId);
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
  assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [1]);
  return c;
}

/** Read `n` PUBLISH packets from `c`, acknowledging each; their payloads as numbers. */
async function takeAcking(c: RawClient, n: number): Promise<number[]> {
  const got: number[] = [];
  while (got.length < n) {
    const p = (await c.next('publish', 5000)) as IPublishPacket;
    got.push(Number(p.payload.toString()));
    c.send({ cmd: 'puback', messageId: p.messageId as number });
  }
  return got;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

async function publishAll(tb: TestBroker, clientId: string, topic: string, n: number): Promise<void> {
  const pub = await client(tb, { clientId });
  await Promise.all(range(0, n).map((i) => pub.publishAsync(topic, String(i), { qos: 1 })));
  await pub.endAsync();
}

test('a clean session whose subscriber stalls queues at most 1,000 messages by default: the oldest are dropped and counted, the newest delivered in order once it acknowledges', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
  try {
    const sub = await stalledSubscriber(tb, 'mq-stalled', 'mq/t');
    const n = 1500;
    // Acknowledged in full: the stalled session holds its publisher only until a sweep finds it not keeping up.
    await publishAll(tb, 'mq-pub', 'mq/t', n);
    const session = tb.broker.sessions.get('mq-stalled');
    assert.equal(session?.queue.length, 1000, 'the queue held in memory stops at mqtt.max_queued_in_memory');
    assert.equal(tb.broker.metrics.dropReasons.queueFull, n - WINDOW - 1000, 'the rest dropped and counted (drop_oldest)');
    assert.deepEqual(await takeAcking(sub, WINDOW + 1000), [...range(0, WINDOW), ...range(n - 1000, n)], 'the window sent first, then the newest 1,000, in order');
    sub.end();
  } finally {
    await tb.close();
  }
});

test('a persistent session in the log is not bounded by it: offline, it gets every message', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_queued_in_memory': 10 } });
  try {
    const parked = await client(tb, persistent(5, 'mq-durable'));
    await parked.subscribeAsync('mq/d', { qos: 1 });
    await parked.endAsync();
    await publishAll(tb, 'mq-dpub', 'mq/d', 200);
    const { c, got } = await recordingClient(tb, persistent(5, 'mq-durable'));
    const deadline = Date.now() + 10_000;
    while (got.length < 200 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(
      got.map((m) => Number(m.payload)),
      range(0, 200),
    );
    assert.equal(tb.broker.metrics.dropReasons.queueFull, 0);
    await c.endAsync();
  } finally {
    await tb.close();
  }
});

test('without a store (durable_sessions.enable = false) an offline persistent session queues in memory: bounded by it', async () => {
  const tb = await startBroker({ config: { 'durable_sessions.enable': false, 'mqtt.max_queued_in_memory': 50 } });
  try {
    const parked = await client(tb, persistent(5, 'mq-mem'));
    await parked.subscribeAsync('mq/m', { qos: 1 });
    await parked.endAsync();
    await publishAll(tb, 'mq-mpub', 'mq/m', 200);
    assert.equal(tb.broker.metrics.dropReasons.queueFull, 150);
    const { c, got } = await recordingClient(tb, persistent(5, 'mq-mem'));
    const deadline = Date.now() + 10_000;
    while (got.length < 50 && Date.now() < deadline) await sleep(20);
    await sleep(100);
    assert.deepEqual(
      got.map((m) => Number(m.payload)),
      range(150, 200),
      'the newest 50 (drop_oldest)',
    );
    await c.endAsync();
  } finally {
    await tb.close();
  }
});

test('retained messages for a new subscription come in pages that fit a small in-memory queue: none dropped', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': 5, 'mqtt.max_queued_in_memory': 20 } });
  try {
    const pub = await client(tb, { clientId: 'mq-rpub' });
    await Promise.all(range(0, 200).map((i) => pub.publishAsync(`mq/r/${i}`, String(i), { qos: 1, retain: true })));
    await pub.endAsync();
    const sub = await client(tb, { clientId: 'mq-rsub' });
    const got = collect(sub, 200, 10_000);
    await sub.subscribeAsync('mq/r/#', { qos: 1 });
    assert.deepEqual((await got).map((m) => Number(m.payload.toString())).sort((a, b) => a - b), range(0, 200));
    assert.equal(tb.broker.metrics.dropReasons.queueFull, 0);
    await sub.endAsync();
  } finally {
    await tb.close();
  }
});

test('with a window larger than half the in-memory queue, a publisher is held before that queue overflows: nothing dropped, all in order', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': 200, 'mqtt.max_queued_in_memory': 50 } });
  try {
    const sub = await stalledSubscriber(tb, 'mq-wide', 'mq/w');
    const n = 3000;
    const taken = takeAcking(sub, n);
    const raw = await RawClient.tcp(tb.port, 4);
    await raw.connect('mq-wpub');
    // Everything at once: without holding, the broker would read it all into the 50-message queue.
    for (let i = 0; i < n; i++) raw.send({ cmd: 'publish', topic: 'mq/w', payload: Buffer.from(String(i)), qos: 1, messageId: (i % 65535) + 1, dup: false, retain: false });
    assert.deepEqual(await taken, range(0, n));
    assert.equal(tb.broker.metrics.dropReasons.queueFull, 0);
    assert.ok(tb.broker.metrics.inflowHolds > 0, 'the publisher was held');
    raw.end();
    sub.end();
  } finally {
    await tb.close();
  }
});
