/**
 * Limits with real clients over TCP, each with its reason code and counter: subscriptions per
 * client, topic levels and length (PUBLISH and SUBSCRIBE), CONNECTs per second per address,
 * per-client messages/s and bytes/s (v5 disconnected with 0x96; 3.1.1 read more slowly, nothing lost);
 * and fairness: a client flooding the broker is read a slice per turn, the others in between.
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import { generate, type IConnackPacket, type IDisconnectPacket, type IPubackPacket, type IPublishPacket, type ISubackPacket } from 'mqtt-packet';
import { client, collect, RawClient, sleep, startBroker } from '../helpers.js';

async function connected(port: number, version: 4 | 5, id: string): Promise<RawClient> {
  const c = await RawClient.tcp(port, version);
  const ack = (await c.connect(id)) as IConnackPacket;
  assert.equal((version === 5 ? ack.reasonCode : ack.returnCode) ?? 0, 0);
  return c;
}

async function subscribe(c: RawClient, filters: string[], id = 1): Promise<number[]> {
  c.send({ cmd: 'subscribe', messageId: id, subscriptions: filters.map((topic) => ({ topic, qos: 1 })) });
  return ((await c.next('suback')) as ISubackPacket).granted as number[];
}

async function publish(c: RawClient, topic: string, id: number, payload = 'x'): Promise<number> {
  c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId: id, dup: false, retain: false });
  return ((await c.next('puback')) as IPubackPacket).reasonCode ?? 0;
}

test('subscriptions per client: 0x97 for 5.0 and 0x80 for 3.1.1 beyond mqtt.max_subscriptions; replacing one is not a new one', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_subscriptions': 2 } });
  try {
    const v5 = await connected(tb.port, 5, 'sub5');
    const v3 = await connected(tb.port, 4, 'sub3');
    assert.deepEqual(await subscribe(v5, ['a', 'b', 'c']), [1, 1, 0x97]);
    assert.deepEqual(await subscribe(v5, ['a'], 2), [1], 'the same filter again replaces it');
    assert.deepEqual(await subscribe(v3, ['a', 'b', 'c']), [1, 1, 0x80]);
    v5.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['b'] });
    await v5.next('unsuback');
    assert.deepEqual(await subscribe(v5, ['c'], 4), [1]);
    assert.equal(tb.broker.metrics.refused.subscriptions, 2);
    v5.end();
    v3.end();
  } finally {
    await tb.close();
  }
});

test('topic levels and length: PUBLISH 0x90 (3.1.1 acknowledged, not delivered), SUBSCRIBE 0x8F / 0x80', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_topic_levels': 3, 'mqtt.max_topic_length': 20 } });
  try {
    const watch = await client(tb);
    await watch.subscribeAsync('#', { qos: 1 });
    const got = collect(watch, 2);
    const v5 = await connected(tb.port, 5, 'lv5');
    const v3 = await connected(tb.port, 4, 'lv3');
    assert.equal(await publish(v5, 'a/b/c', 1), 0);
    assert.equal(await publish(v5, 'a/b/c/d', 2), 0x90);
    assert.equal(await publish(v5, 'x'.repeat(21), 3), 0x90);
    assert.equal(await publish(v3, 'a/b/c/d', 1), 0);
    assert.equal(await publish(v3, 'ok/3', 2), 0);
    assert.deepEqual((await got).map((m) => m.topic), ['a/b/c', 'ok/3']);
    assert.deepEqual(await subscribe(v5, ['a/+/c', 'a/+/c/#', 'y'.repeat(21), '$share/g/a/b/c']), [1, 0x8f, 0x8f, 1]);
    assert.deepEqual(await subscribe(v3, ['a/b/c/d'], 2), [0x80]);
    assert.deepEqual(tb.broker.metrics.refused.topicLevels, 4);
    assert.deepEqual(tb.broker.metrics.refused.topicLength, 2);
    v5.end();
    v3.end();
    await watch.endAsync();
  } finally {
    await tb.close();
  }
});

test('connect rate per source address: beyond it CONNACK 0x9F for 5.0, 3 for 3.1.1', async () => {
  const tb = await startBroker({ config: { 'limits.connect_rate': 3 } });
  try {
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const v = i % 2 === 0 ? 5 : 4;
      const c = await RawClient.tcp(tb.port, v);
      const ack = (await c.connect(`cr${i}`)) as IConnackPacket;
      codes.push((v === 5 ? ack.reasonCode : ack.returnCode) ?? 0);
      c.end();
    }
    assert.deepEqual(codes, [0, 0, 0, 3, 0x9f]);
    assert.equal(tb.broker.metrics.refused.connectRate, 2);
  } finally {
    await tb.close();
  }
});

test('messages per second: a v5 client over it is disconnected with 0x96, its message not taken; a 3.1.1 client is slowed, everything delivered', async () => {
  const tb = await startBroker({ config: { 'limits.messages_rate': 20 } });
  try {
    const watch5 = await client(tb);
    await watch5.subscribeAsync('rate/5', { qos: 1 });
    let delivered = 0;
    watch5.on('message', () => void delivered++);
    const v5 = await connected(tb.port, 5, 'mr5');
    let acked = 0;
    for (let i = 1; i <= 25; i++) {
      v5.send({ cmd: 'publish', topic: 'rate/5', payload: Buffer.from(String(i)), qos: 1, messageId: i, dup: false, retain: false });
      const p = await v5.next();
      if (p?.cmd === 'puback') {
        acked++;
        continue;
      }
      assert.equal(p?.cmd, 'disconnect');
      assert.equal((p as IDisconnectPacket).reasonCode, 0x96);
      break;
    }
    assert.ok(acked >= 20 && acked < 25, `acknowledged ${acked}`);
    await sleep(300);
    assert.equal(delivered, acked, 'what was acknowledged is delivered, the refused one is not');
    assert.equal(tb.broker.metrics.refused.messageRate, 1);
    const watch = await client(tb);
    await watch.subscribeAsync('rate/3', { qos: 1 });
    const got = collect(watch, 50, 10000);
    const v3 = await client(tb, { protocolVersion: 4, clientId: 'mr3' });
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 50 }, (_, i) => v3.publishAsync('rate/3', String(i), { qos: 1 })));
    const took = Date.now() - t0;
    assert.equal((await got).length, 50, 'nothing lost');
    // 20 at once (a second's burst), then 20/s: the last 30 cannot all arrive within 1 s.
    assert.ok(took >= 1000, `50 messages at 20/s took ${took} ms`);
    await Promise.all([watch.endAsync(), watch5.endAsync(), v3.endAsync()]);
  } finally {
    await tb.close();
  }
});

test('bytes per second: a v5 client over it is disconnected with 0x96', async () => {
  const tb = await startBroker({ config: { 'limits.bytes_rate': 1000 } });
  try {
    const v5 = await connected(tb.port, 5, 'br5');
    assert.equal(await publish(v5, 'b', 1, 'x'.repeat(900)), 0);
    v5.send({ cmd: 'publish', topic: 'b', payload: Buffer.from('x'.repeat(900)), qos: 1, messageId: 2, dup: false, retain: false });
    assert.equal(((await v5.next('disconnect')) as IDisconnectPacket).reasonCode, 0x96);
    assert.equal(tb.broker.metrics.refused.byteRate, 1);
  } finally {
    await tb.close();
  }
});

/**
 * The broker's side of a socket, fed as libuv feeds a TCP stream that has plenty to read: chunk
 * after chunk in one go (libuv: up to 32 reads of 64 KB) for as long as the stream keeps reading;
 * once it stops (paused, its buffer full) the rest waits for its next read. What the broker writes
 * is dropped.
 */
class GreedySocket extends Duplex {
  private queue: Buffer[] = [];

  feed(chunks: Buffer[]): void {
    this.queue.push(...chunks);
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0) {
      if (!this.push(this.queue.shift())) return;
    }
  }

  override _read(): void {
    this.pump();
  }

  override _write(_chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    cb();
  }
}

test('a client flooding the broker does not hold the others: its socket is read 128 KB a turn, the others in between', async () => {
  const tb = await startBroker();
  try {
    const sub = RawClient.memory(tb.broker, 4);
    await sub.connect('fair-sub');
    assert.deepEqual(await subscribe(sub, ['fair/#']), [1]);
    const probe = RawClient.memory(tb.broker, 4);
    await probe.connect('fair-probe');
    const flood = new GreedySocket();
    tb.broker.accept(flood, 'memory', null);
    flood.feed([generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'fair-flood', clean: true, keepalive: 60 } as never)]);
    await sleep(50);
    // 1 MB of QoS 0 PUBLISH (1 KB each) in chunks of 64 KB, all readable at once; then the probe's one.
    const one = (i: number): Buffer => generate({ cmd: 'publish', topic: 'fair/flood', payload: Buffer.alloc(1000, i % 256), qos: 0, dup: false, retain: false } as IPublishPacket);
    const all = Buffer.concat(Array.from({ length: 1024 }, (_, i) => one(i)));
    const chunks = Array.from({ length: Math.ceil(all.length / 65536) }, (_, i) => all.subarray(i * 65536, (i + 1) * 65536));
    flood.feed(chunks);
    probe.send({ cmd: 'publish', topic: 'fair/probe', payload: Buffer.from('probe'), qos: 0, dup: false, retain: false });
    const topics: string[] = [];
    while (topics.length < 1025) {
      const p = (await sub.next('publish', 5000)) as IPublishPacket | null;
      assert.ok(p, 'the subscriber was closed');
      topics.push(p.topic);
    }
    const at = topics.indexOf('fair/probe');
    assert.equal(topics.filter((t) => t === 'fair/flood').length, 1024, 'the whole flood delivered');
    assert.ok(at >= 0 && at <= 256, `the probe's message came after ${at} of the flood's 1,024 (one slice: ~128)`);
    probe.end();
    sub.end();
  } finally {
    await tb.close();
  }
});
