/**
 * Retained messages for a new subscription go out in pages as the client keeps up
 * (routing/retained-feed.ts): all of them, even to a QoS 0 subscriber that reads slowly, before
 * anything published after the subscription, and to a persistent session that leaves and comes
 * back in the middle.
 */
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { generate, parser as packetParser, type Packet } from 'mqtt-packet';
import { client, persistent, sleep, startBroker, type TestBroker, unconnected } from '../helpers.js';

/** A subscriber on a raw socket whose reading the test controls, counting what it gets. */
class SlowSubscriber {
  readonly socket: Socket;
  readonly publishes: { topic: string; payload: string; retain: boolean }[] = [];
  private readonly waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    const p = packetParser({ protocolVersion: 4 });
    p.on('packet', (pk: Packet) => {
      if (pk.cmd === 'publish') this.publishes.push({ topic: pk.topic, payload: pk.payload.toString(), retain: pk.retain });
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('data', (d) => p.parse(d));
  }

  static async open(tb: TestBroker, clientId: string): Promise<SlowSubscriber> {
    const s = tcpConnect(tb.port, '127.0.0.1');
    await new Promise<void>((r) => s.once('connect', () => r()));
    const sub = new SlowSubscriber(s);
    s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60 }));
    return sub;
  }

  subscribe(filter: string): void {
    this.socket.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }));
  }

  async until(n: number, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (this.publishes.length < n && Date.now() < end) await new Promise<void>((r) => (this.waiters.push(r), setTimeout(r, 100)));
  }
}

const N = 100_000;
const PAYLOAD = 'x'.repeat(200);

test(`a QoS 0 subscriber to # that does not read for a second still gets all ${N} retained messages`, async () => {
  const tb = await startBroker();
  try {
    for (let i = 0; i < N; i++) tb.broker.publishMessage(`feed/${i}`, PAYLOAD, { retain: true });
    await sleep(200);
    const sub = await SlowSubscriber.open(tb, 'slow-reader');
    sub.subscribe('feed/#');
    sub.socket.pause(); // the kernel's buffers fill; an unpaged broker buffered the rest or dropped it as a slow consumer
    await sleep(1000);
    sub.socket.resume();
    await sub.until(N, 20_000);
    assert.equal(sub.publishes.length, N, `${N - sub.publishes.length} retained messages missing`);
    assert.equal(new Set(sub.publishes.map((p) => p.topic)).size, N, 'each topic once');
    assert.ok(sub.publishes.every((p) => p.retain && p.payload === PAYLOAD));
    assert.equal(tb.broker.metrics.messagesDropped, 0);
    sub.socket.destroy();
  } finally {
    await tb.close();
  }
});

test('what is published after a subscription follows its retained messages, topic by topic', async () => {
  const tb = await startBroker();
  try {
    const n = 30_000;
    for (let i = 0; i < n; i++) tb.broker.publishMessage(`ord/${i}`, 'old', { retain: true });
    await sleep(100);
    const sub = await SlowSubscriber.open(tb, 'ordered');
    sub.subscribe('ord/#');
    sub.socket.pause(); // the feed waits on the socket: live messages arrive meanwhile
    const pub = await client(tb.url, { clientId: 'live-pub' });
    await sleep(50);
    for (let i = 0; i < n; i += 1000) pub.publish(`ord/${i}`, 'new-live'); // not retained
    pub.publish(`ord/${n - 1}`, 'newest', { retain: true });
    await sleep(300);
    sub.socket.resume();
    await sub.until(n + n / 1000 + 1, 20_000);
    const seen = new Map<string, string[]>();
    for (const p of sub.publishes) seen.set(p.topic, [...(seen.get(p.topic) ?? []), `${p.payload}${p.retain ? ' (retained)' : ''}`]);
    for (let i = 0; i < n; i += 1000) assert.deepEqual(seen.get(`ord/${i}`), ['old (retained)', 'new-live'], `ord/${i}`);
    // Set again while the feed ran: its page had the old message or already the new one; the live copy comes last.
    assert.ok(['old (retained),newest', 'newest (retained),newest'].includes(String(seen.get(`ord/${n - 1}`))), String(seen.get(`ord/${n - 1}`)));
    const firstLive = sub.publishes.findIndex((p) => !p.retain);
    assert.equal(firstLive, sub.publishes.filter((p) => p.retain).length, 'every retained message before the first live one');
    sub.socket.destroy();
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});

test('a persistent QoS 1 subscriber that leaves in the middle of its retained messages gets the rest when it returns', async () => {
  const tb = await startBroker();
  try {
    const n = 5_000;
    for (let i = 0; i < n; i++) tb.broker.publishMessage(`pq/${i}`, `v${i}`, { qos: 1, retain: true });
    await sleep(100);
    const opts = { ...persistent(5, 'feed-leaver'), properties: { sessionExpiryInterval: 3600, receiveMaximum: 10 } };
    const got = new Set<string>();
    const first = await client(tb.url, opts);
    first.on('message', (topic) => got.add(topic));
    await first.subscribeAsync('pq/#', { qos: 1 });
    while (got.size < 100) await sleep(5);
    first.end(true); // gone without a word, most of the feed still ahead
    await sleep(300);
    // Others are served meanwhile.
    const other = await client(tb.url, { clientId: 'bystander' });
    await other.publishAsync('x/y', 'hi');
    await other.endAsync();
    // Listening before CONNACK: the deliveries in flight when it left are sent again right after it.
    const second = unconnected(tb.url, { ...opts, clean: false });
    second.on('message', (topic) => got.add(topic));
    second.connect();
    const end = Date.now() + 20_000;
    while (got.size < n && Date.now() < end) await sleep(20);
    assert.equal(got.size, n, `${n - got.size} retained messages never arrived`);
    await second.endAsync();
  } finally {
    await tb.close();
  }
});

test('a clean subscriber that leaves during its retained messages ends its feed; the broker serves the next one in full', async () => {
  const tb = await startBroker();
  try {
    const n = 50_000;
    for (let i = 0; i < n; i++) tb.broker.publishMessage(`cl/${i}`, PAYLOAD, { retain: true });
    await sleep(100);
    for (let k = 0; k < 5; k++) {
      const quitter = await SlowSubscriber.open(tb, `quitter-${k}`);
      quitter.subscribe('cl/#');
      quitter.socket.pause();
      await sleep(20);
      quitter.socket.destroy();
    }
    const sub = await SlowSubscriber.open(tb, 'stayer');
    sub.subscribe('cl/#');
    await sub.until(n, 20_000);
    assert.equal(sub.publishes.length, n);
    sub.socket.destroy();
  } finally {
    await tb.close();
  }
});

test('v5 QoS 0 subscriber: plain retained messages come as whole pages, those with properties or an expiry in their place, each as published', async () => {
  const tb = await startBroker();
  try {
    const n = 3_000;
    const pub = await client(tb.url, { protocolVersion: 5, clientId: 'props-pub' });
    for (let i = 0; i < n; i++) {
      const properties = i % 100 === 0 ? { userProperties: { i: String(i) } } : i % 100 === 50 ? { messageExpiryInterval: 3600 } : undefined;
      pub.publish(`pp/${i}`, `v${i}`, { qos: 0, retain: true, ...(properties ? { properties } : {}) });
    }
    await pub.publishAsync('pp-barrier', 'x', { qos: 1 });
    const sub = unconnected(tb.url, { protocolVersion: 5, clientId: 'props-sub', properties: { maximumPacketSize: 64 } });
    const got = new Map<string, { payload: string; user?: Record<string, string | string[]>; expiry?: number; retain: boolean }>();
    sub.on('message', (topic, payload, packet) => got.set(topic, { payload: payload.toString(), user: packet.properties?.userProperties, expiry: packet.properties?.messageExpiryInterval, retain: packet.retain }));
    sub.connect();
    await new Promise<void>((r) => sub.once('connect', () => r()));
    // One retained message larger than the client's Maximum Packet Size: discarded for it, counted.
    await pub.publishAsync('pp/big', 'x'.repeat(100), { qos: 1, retain: true });
    await sub.subscribeAsync('pp/#', { qos: 0 });
    const end = Date.now() + 10_000;
    while (got.size < n && Date.now() < end) await sleep(20);
    assert.equal(got.size, n);
    assert.equal(got.has('pp/big'), false, 'larger than the client accepts');
    for (let i = 0; i < n; i++) {
      const m = got.get(`pp/${i}`);
      assert.equal(m?.payload, `v${i}`);
      assert.equal(m?.retain, true);
      if (i % 100 === 0) assert.deepEqual({ ...m?.user }, { i: String(i) });
      else assert.equal(m?.user, undefined);
      if (i % 100 === 50) assert.ok(m?.expiry !== undefined && m.expiry > 3500 && m.expiry <= 3600, `expiry ${m?.expiry}`);
    }
    assert.ok(tb.broker.metrics.messagesDropped >= 1);
    await sub.endAsync();
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});

test('QoS 1 subscribers (3.1.1 and 5): each retained message at the lower of the two QoS, retain set, expired ones left out, across pages', async () => {
  const tb = await startBroker();
  try {
    const n = 2_500; // pages of 1000 topics: QoS 0 messages framed by the core, QoS 1 ones sent as deliveries
    const pub = await client(tb.url, { protocolVersion: 5, clientId: 'mix-pub' });
    for (let i = 0; i < n; i++) {
      const qos = i % 3 === 1 ? 1 : 0;
      const properties = i % 250 === 7 ? { messageExpiryInterval: 1 } : i % 250 === 9 ? { contentType: 'text/plain' } : undefined;
      pub.publish(`mix/${i}`, `m${i}`, { qos, retain: true, ...(properties ? { properties } : {}) });
    }
    await pub.publishAsync('mix-barrier', 'x', { qos: 1 });
    await sleep(1500); // the messages with a 1 s expiry are gone
    const expired = (i: number): boolean => i % 250 === 7;
    for (const version of [4, 5] as const) {
      const sub = await client(tb.url, { protocolVersion: version, clientId: `mix-sub-${version}` });
      const got = new Map<string, { payload: string; qos: number; retain: boolean; contentType?: string }>();
      sub.on('message', (topic, payload, packet) => got.set(topic, { payload: payload.toString(), qos: packet.qos, retain: packet.retain, contentType: packet.properties?.contentType }));
      await sub.subscribeAsync('mix/#', { qos: 1 });
      const want = Array.from({ length: n }, (_, i) => i).filter((i) => !expired(i));
      const end = Date.now() + 10_000;
      while (got.size < want.length && Date.now() < end) await sleep(20);
      await sleep(100);
      assert.equal(got.size, want.length, `v${version}: every retained message not expired, once`);
      for (const i of want) {
        const m = got.get(`mix/${i}`);
        assert.equal(m?.payload, `m${i}`, `v${version} mix/${i}`);
        assert.equal(m?.qos, i % 3 === 1 ? 1 : 0, `v${version} mix/${i}: the lower of the message's and the subscription's QoS`);
        assert.equal(m?.retain, true);
        if (version === 5) assert.equal(m?.contentType, i % 250 === 9 ? 'text/plain' : undefined);
      }
      await sub.endAsync();
    }
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});

test('QoS 0 published while a slow subscriber\'s retained feed waits is held only up to the slow-consumer watermark; the rest is dropped and counted', async () => {
  const tb = await startBroker({ config: { 'mqtt.write_high_watermark': 1 << 20 } });
  try {
    const n = 30_000;
    for (let i = 0; i < n; i++) tb.broker.publishMessage(`held/r/${i}`, PAYLOAD, { retain: true });
    await sleep(100);
    const sub = await SlowSubscriber.open(tb, 'held-slow');
    sub.subscribe('held/#');
    sub.socket.pause(); // the feed waits on the socket
    await sleep(100);
    const pub = await client(tb.url, { clientId: 'held-pub' });
    const live = 4_000;
    const big = Buffer.alloc(1024, 1); // 4 MB of live QoS 0 against a 1 MB watermark
    for (let i = 0; i < live; i++) pub.publish(`held/live/${i}`, big, { qos: 0 });
    await pub.publishAsync('held-barrier', 'x', { qos: 1 });
    sub.socket.resume();
    await sub.until(n + 1, 20_000);
    await sleep(300);
    const retained = sub.publishes.filter((p) => p.retain).length;
    const got = sub.publishes.length - retained;
    assert.equal(retained, n, 'every retained message');
    assert.ok(got > 0 && got < live, `live held up to the watermark: ${got} of ${live}`);
    assert.ok(got * 1024 <= (1 << 20) + 1024, `no more than the watermark's worth held: ${got} KB`);
    assert.equal(sub.publishes.findIndex((p) => !p.retain), n, 'the held ones after the last retained');
    assert.equal(tb.broker.metrics.dropReasons.slowConsumer, live - got, 'each one not held counted as a slow consumer\'s drop');
    sub.socket.destroy();
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});
