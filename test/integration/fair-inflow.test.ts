/**
 * mqtt.fair_inflow (session/inflow.ts) with real clients over TCP: a QoS 1 publisher far ahead
 * of its subscriber (every PUBLISH written at once, none waiting for its PUBACK) is held while
 * the subscriber has a window's worth queued — its queue stays near a window, not the whole
 * backlog — and nothing is lost or reordered on the way: every message delivered
 * once and in order, every PUBACK in order, and what the publisher sent after its messages
 * (PINGREQ, DISCONNECT) answered after them. With the option off the same run queues the
 * backlog (the test that shows the check can fail). A subscriber that stops acknowledging, or
 * acknowledges far less than is queued for it, holds nobody back once seen (a sweep a second).
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { generate, parser as createParser, type IPublishPacket, type Packet } from 'mqtt-packet';
import WebSocket, { createWebSocketStream } from 'ws';
import { sleep, startBroker, type TestBroker } from '../helpers.js';

const WINDOW = 16;
const N = 4000;

/** A raw client over TCP (or MQTT over WebSocket to `ws`): packets parsed as they come, each one handed to `on`. */
async function rawClient(port: number, clientId: string, on: (p: Packet, s: Duplex) => void, connectExtra: Record<string, unknown> = {}, version: 4 | 5 = 4, ws?: string): Promise<Duplex> {
  let s: Duplex;
  if (ws !== undefined) {
    const sock = new WebSocket(ws, 'mqtt');
    await new Promise<void>((resolve, reject) => {
      sock.once('open', () => resolve());
      sock.once('error', reject);
    });
    s = createWebSocketStream(sock);
  } else {
    const t = netConnect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      t.once('connect', resolve);
      t.once('error', reject);
    });
    t.setNoDelay(true);
    s = t;
  }
  const p = createParser({ protocolVersion: version });
  let connack: (() => void) | null = null;
  const acked = new Promise<void>((r) => (connack = r));
  p.on('packet', (pk: Packet) => {
    if (pk.cmd === 'connack') connack?.();
    else on(pk, s);
  });
  s.on('data', (b: Buffer) => p.parse(b));
  s.on('error', () => undefined);
  s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: true, keepalive: 60, ...connectExtra } as never, { protocolVersion: version }));
  await acked;
  return s;
}

function publishes(topic: string, from: number, n: number): Buffer {
  return Buffer.concat(Array.from({ length: n }, (_, i) => generate({ cmd: 'publish', topic, payload: Buffer.from(String(from + i)), qos: 1, messageId: ((from + i) % 65535) + 1, dup: false, retain: false } as IPublishPacket)));
}

/** A subscriber to `topic` at QoS 1 acknowledging every message at once; `got`: the payloads as numbers, in arrival order. */
async function ackingSubscriber(port: number, clientId: string, topic: string): Promise<{ socket: Duplex; got: number[] }> {
  const got: number[] = [];
  const socket = await rawClient(port, clientId, (p, s) => {
    if (p.cmd !== 'publish') return;
    got.push(Number((p as IPublishPacket).payload.toString()));
    s.write(generate({ cmd: 'puback', messageId: p.messageId as number }));
  });
  socket.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] }));
  return { socket, got };
}

/** A publisher counting its PUBACKs. */
async function countingPublisher(port: number, clientId: string): Promise<{ socket: Duplex; acks: () => number }> {
  let acks = 0;
  const socket = await rawClient(port, clientId, (p) => {
    if (p.cmd === 'puback') acks++;
  });
  return { socket, acks: () => acks };
}

/** Waits (polling) until `done`, 30 s at most. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!done() && Date.now() < deadline) await sleep(20);
}

/** The subscriber's session queue, sampled once per event-loop iteration (a timer), its largest. */
function sampleQueue(tb: TestBroker, clientId: string): { max: number; stop: () => void } {
  const r = { max: 0, stop: (): void => undefined };
  let on = true;
  const tick = (): void => {
    const q = tb.broker.sessions.get(clientId)?.queue.length ?? 0;
    if (q > r.max) r.max = q;
    if (on) setTimeout(tick, 0);
  };
  tick();
  r.stop = () => (on = false);
  return r;
}

async function run(fair: boolean, overWs = false): Promise<{ maxQueue: number; holds: number }> {
  // Off, the whole backlog is queued: room for it in memory (else its queue overflows at 1,000).
  const tb = await startBroker({ wsPort: overWs ? 0 : null, config: { 'mqtt.max_inflight': WINDOW, 'mqtt.fair_inflow': fair, ...(fair ? {} : { 'mqtt.max_queued_in_memory': N }) } });
  try {
    const { socket: sub, got } = await ackingSubscriber(tb.port, 'fair-sub', 'fair/t');
    await sleep(50);
    const acks: number[] = [];
    let pingAfter = -1;
    const pub = await rawClient(
      tb.port,
      'fair-pub',
      (p) => {
        if (p.cmd === 'puback') acks.push(p.messageId as number);
        else if (p.cmd === 'pingresp') pingAfter = acks.length;
      },
      {},
      4,
      overWs ? `ws://127.0.0.1:${tb.wsPort as number}/mqtt` : undefined,
    );
    const closed = new Promise<void>((r) => {
      pub.once('close', r);
      pub.once('end', r); // a WebSocket stream ends when the broker closes it
    });
    const queue = sampleQueue(tb, 'fair-sub');
    // Everything at once: the broker reads it as fast as it likes.
    pub.write(Buffer.concat([publishes('fair/t', 0, N), generate({ cmd: 'pingreq' }), generate({ cmd: 'disconnect' })]));
    await until(() => got.length >= N && acks.length >= N);
    queue.stop();
    await closed;
    assert.equal(acks.length, N, 'every PUBLISH acknowledged');
    assert.deepEqual(acks, Array.from({ length: N }, (_, i) => (i % 65535) + 1), 'PUBACKs in the order of the PUBLISH packets');
    assert.equal(pingAfter, N, 'the PINGREQ sent after the messages answered after all of them');
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i), 'every message delivered once, in order');
    assert.equal(tb.broker.metrics.dropReasons.queueFull, 0);
    sub.destroy();
    return { maxQueue: queue.max, holds: tb.broker.metrics.inflowHolds };
  } finally {
    await tb.close();
  }
}

test('a QoS 1 publisher far ahead of its subscriber is held while the subscriber has a window\'s worth queued: its queue stays near a window, nothing lost or reordered', async () => {
  const fair = await run(true);
  assert.ok(fair.holds > 0, 'the publisher was held');
  assert.ok(fair.maxQueue <= 4 * WINDOW, `the subscriber's queue reached ${fair.maxQueue} (window ${WINDOW})`);
  const off = await run(false);
  assert.equal(off.holds, 0);
  assert.ok(off.maxQueue > 20 * WINDOW, `with mqtt.fair_inflow off the backlog is queued at once (the queue reached ${off.maxQueue})`);
});

test('the same with the publisher on MQTT over WebSocket (its stream paused while held)', async () => {
  const ws = await run(true, true);
  assert.ok(ws.holds > 0, 'the publisher was held');
  assert.ok(ws.maxQueue <= 4 * WINDOW, `the subscriber's queue reached ${ws.maxQueue} (window ${WINDOW})`);
});

test('a subscriber that stops acknowledging holds no publisher back once it has been silent for a second', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW, 'mqtt.max_queued_messages': 100 } });
  try {
    let stalled = 0;
    const stall = await rawClient(tb.port, 'stall-sub', (p) => {
      if (p.cmd === 'publish') stalled++; // never acknowledged
    });
    stall.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'stall/t', qos: 1 }] }));
    await sleep(50);
    const { socket: pub, acks } = await countingPublisher(tb.port, 'stall-pub');
    const waitAcks = async (n: number): Promise<void> => {
      await until(() => acks() >= n);
      assert.equal(acks(), n);
    };
    // Before the silence shows: the session's window is full and a window's worth queued, it holds the publisher.
    pub.write(publishes('stall/t', 0, 500));
    await waitAcks(500);
    const holdsBefore = tb.broker.metrics.inflowHolds;
    assert.ok(holdsBefore > 0, 'held while the session had not been silent for a second');
    assert.equal(stalled, WINDOW, 'the stalled subscriber got its window');
    await sleep(1200);
    pub.write(publishes('stall/t', 500, 2000));
    await waitAcks(2500);
    // One hold may come before the silence is seen (the sweep looks once a second).
    assert.ok(tb.broker.metrics.inflowHolds - holdsBefore <= 1, `held ${tb.broker.metrics.inflowHolds - holdsBefore} times after a second of silence`);
    assert.ok(tb.broker.metrics.dropReasons.queueFull > 0, "the stalled session's queue overflowed as configured");
    for (const s of [stall, pub]) s.destroy();
  } finally {
    await tb.close();
  }
});

test('a publisher both over limits.messages_rate (3.1.1: read more slowly) and held for its subscriber queue: everything acknowledged and delivered, in order', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW, 'limits.messages_rate': 400 } });
  try {
    const { socket: sub, got } = await ackingSubscriber(tb.port, 'rate-sub', 'rate/t');
    await sleep(50);
    const { socket: pub, acks } = await countingPublisher(tb.port, 'rate-pub');
    const n = 1000;
    pub.write(publishes('rate/t', 0, n));
    await until(() => got.length >= n && acks() >= n);
    assert.equal(acks(), n, 'every PUBLISH acknowledged');
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i), 'every message delivered once, in order');
    assert.ok(tb.broker.metrics.inflowHolds > 0, 'held for the queue too');
    for (const s of [sub, pub]) s.destroy();
  } finally {
    await tb.close();
  }
});

test('a slow subscriber (acknowledging far less than is queued for it) holds no publisher back once seen; the subscriber keeping up gets everything, in order', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
  try {
    const slowIds: number[] = [];
    const slow = await rawClient(tb.port, 'slow-sub', (p) => {
      if (p.cmd === 'publish') slowIds.push(p.messageId as number);
    });
    const slowAcks = setInterval(() => {
      const id = slowIds.shift();
      if (id !== undefined) slow.write(generate({ cmd: 'puback', messageId: id }));
    }, 50);
    slow.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'slow/t', qos: 1 }] }));
    const { socket: fast, got } = await ackingSubscriber(tb.port, 'fast-sub', 'slow/t');
    await sleep(50);
    const { socket: pub, acks } = await countingPublisher(tb.port, 'slow-pub');
    const n = 3000;
    pub.write(publishes('slow/t', 0, n));
    await sleep(1200);
    pub.write(publishes('slow/t', n, n));
    await until(() => got.length >= 2 * n && acks() >= 2 * n);
    clearInterval(slowAcks);
    assert.equal(acks(), 2 * n, 'every PUBLISH acknowledged');
    assert.deepEqual(got, Array.from({ length: 2 * n }, (_, i) => i), 'the subscriber keeping up got every message, in order');
    assert.equal(tb.broker.sessions.get('slow-sub')?.inflowProgressing, false, 'the slow subscriber was seen not to keep up');
    assert.equal(tb.broker.sessions.get('fast-sub')?.inflowProgressing, true);
    for (const s of [slow, fast, pub]) s.destroy();
  } finally {
    await tb.close();
  }
});

test('a QoS 1 subscription matching many retained messages (queued past the window at SUBSCRIBE) holds nobody: only publishers are held', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
  try {
    const { socket: pub, acks } = await countingPublisher(tb.port, 'ret-pub');
    const n = 300;
    pub.write(Buffer.concat(Array.from({ length: n }, (_, i) => generate({ cmd: 'publish', topic: `ret/${i}`, payload: Buffer.from(String(i)), qos: 1, messageId: i + 1, dup: false, retain: true } as IPublishPacket))));
    await until(() => acks() >= n);
    const holdsBefore = tb.broker.metrics.inflowHolds;
    const { socket: sub, got } = await ackingSubscriber(tb.port, 'ret-sub', 'ret/#');
    await until(() => got.length >= n);
    assert.equal(got.length, n, 'every retained message delivered');
    assert.equal(tb.broker.metrics.inflowHolds, holdsBefore, 'the subscriber was not held');
    for (const s of [sub, pub]) s.destroy();
  } finally {
    await tb.close();
  }
});
