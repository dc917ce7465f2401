/**
 * Persistent sessions reading the log (session/log-session.ts): queue limits and overflow
 * policies on the log-backed queue (SPEC B9), subscriptions that start where the log was when
 * they were made, QoS 0 never repeated by replay, and shared subscriptions with persistent
 * members (delivered to a connected member first, recorded for an offline one).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IClientOptions } from 'mqtt';
import type { IDisconnectPacket } from 'mqtt-packet';
import { client, collect, quiet, RawClient, sleep, startBroker, tempDir, unconnected } from '../helpers.js';

function persistent(clientId: string, extra: IClientOptions = {}): IClientOptions {
  return { protocolVersion: 5, clientId, clean: false, properties: { sessionExpiryInterval: 3600 }, ...extra };
}

async function offlineSubscriber(url: string, id: string, filter: string, qos: 0 | 1 | 2 = 1): Promise<void> {
  const sub = await client(url, persistent(id));
  await sub.subscribeAsync(filter, { qos });
  await sub.endAsync();
}

async function publishN(url: string, topic: string, n: number, qos: 0 | 1, from = 0, payloadSize = 0): Promise<void> {
  const pub = await client(url, { clientId: `pub-${topic}-${from}` });
  await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync(topic, String(from + i).padEnd(payloadSize, '.'), { qos })));
  await pub.endAsync();
}

/** An offline persistent session `id` (QoS 0 on `topic`) with 3,000 QoS 0 messages of 4 KB (12 MB) waiting. */
async function qos0Backlog(url: string, id: string, topic: string): Promise<void> {
  await offlineSubscriber(url, id, topic, 0);
  const pub = await client(url, { clientId: `${id}-pub` });
  const payload = Buffer.alloc(4096, 7);
  for (let i = 0; i < 3000; i++) pub.publish(topic, payload, { qos: 0 });
  await pub.endAsync();
  await sleep(200);
}

const nums = (msgs: { payload: Buffer }[]): number[] => msgs.map((m) => Number.parseInt(m.payload.toString(), 10));
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('queue limits of persistent sessions', () => {
  test('drop_newest: an offline session keeps the first max_queued_messages and counts the rest as dropped', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_queued_messages': 50, 'mqtt.queue_overflow': 'drop_newest' } });
    try {
      await offlineSubscriber(tb.url, 'dn', 'lim/dn');
      await publishN(tb.url, 'lim/dn', 80, 1);
      assert.equal(tb.broker.metrics.messagesDropped, 30);
      const back = unconnected(tb.url, persistent('dn'));
      const got = collect(back, 50, 10000);
      back.connect();
      assert.deepEqual(nums(await got), range(0, 50));
      assert.deepEqual(await quiet(back, 300), []);
      // Once it has room again, new messages are queued as before.
      await publishN(tb.url, 'lim/dn', 5, 1, 1000);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('the queue count survives a restart: the limit still holds for messages stored before it', async () => {
    const data = tempDir('strata-limit-');
    const config = { 'mqtt.max_queued_messages': 50, 'mqtt.queue_overflow': 'drop_newest' };
    try {
      let tb = await startBroker({ dataDir: data.dir, config });
      await offlineSubscriber(tb.url, 'count', 'lim/count');
      await publishN(tb.url, 'lim/count', 30, 1);
      await tb.close();
      tb = await startBroker({ dataDir: data.dir, config });
      await publishN(tb.url, 'lim/count', 40, 1, 30);
      assert.equal(tb.broker.metrics.messagesDropped, 20);
      const back = unconnected(tb.url, persistent('count'));
      const got = collect(back, 50, 10000);
      back.connect();
      assert.deepEqual(nums(await got), range(0, 50));
      assert.deepEqual(await quiet(back, 300), []);
      await back.endAsync();
      await tb.close();
    } finally {
      data.remove();
    }
  });

  test('drop_oldest: an offline session keeps the newest max_queued_messages', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_queued_messages': 50, 'mqtt.queue_overflow': 'drop_oldest' } });
    try {
      await offlineSubscriber(tb.url, 'do', 'lim/do');
      await publishN(tb.url, 'lim/do', 80, 1);
      assert.equal(tb.broker.metrics.messagesDropped, 30);
      const back = unconnected(tb.url, persistent('do'));
      const got = collect(back, 50, 10000);
      back.connect();
      assert.deepEqual(nums(await got), range(30, 50));
      assert.deepEqual(await quiet(back, 300), []);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('max_queued_bytes bounds the queued payload bytes', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_queued_bytes': 1000, 'mqtt.queue_overflow': 'drop_newest' } });
    try {
      await offlineSubscriber(tb.url, 'bytes', 'lim/bytes');
      await publishN(tb.url, 'lim/bytes', 30, 1, 0, 100); // 100-byte payloads: 10 fit
      const back = unconnected(tb.url, persistent('bytes'));
      const got = collect(back, 10, 10000);
      back.connect();
      assert.deepEqual(nums(await got), range(0, 10));
      assert.deepEqual(await quiet(back, 300), []);
      assert.equal(tb.broker.metrics.messagesDropped, 20);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('disconnect: a connected client that falls behind by more than the limit is disconnected with 0x97', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_queued_messages': 20, 'mqtt.queue_overflow': 'disconnect', 'mqtt.max_inflight': 5 } });
    try {
      const raw = await RawClient.tcp(tb.port, 5);
      await raw.connect('slow', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'lim/slow', qos: 1 }] });
      await raw.next('suback');
      // Never acknowledges: 5 in flight, then 20 queued, then the limit.
      await publishN(tb.url, 'lim/slow', 40, 1);
      const d = (await raw.next('disconnect')) as IDisconnectPacket;
      assert.equal(d.reasonCode, 0x97);
      raw.end();
      // The session stays; what it had not acknowledged comes when it resumes, in order and once.
      await sleep(100);
      const back = unconnected(tb.url, persistent('slow'));
      const got: number[] = [];
      back.on('message', (_t, p) => got.push(Number(p.toString())));
      back.connect();
      await quiet(back, 500);
      assert.ok(got.length >= 25, `${got.length} received`);
      assert.deepEqual(got, range(0, got.length));
      assert.equal(tb.broker.metrics.messagesDropped, 40 - got.length);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });
});

describe('replay from the log', () => {
  test('a new subscription does not replay what was logged before it was made', async () => {
    const tb = await startBroker();
    try {
      // "other" makes rs/# messages durable while "late" is subscribed elsewhere only.
      await offlineSubscriber(tb.url, 'rs-other', 'rs/#');
      await offlineSubscriber(tb.url, 'rs-late', 'rs-unrelated');
      await publishN(tb.url, 'rs/a', 20, 1);
      const late = await client(tb.url, persistent('rs-late'));
      await late.subscribeAsync('rs/#', { qos: 1 });
      await late.endAsync();
      await publishN(tb.url, 'rs/a', 5, 1, 100);
      const back = unconnected(tb.url, persistent('rs-late'));
      const got = collect(back, 5, 10000);
      back.connect();
      assert.deepEqual(nums(await got), range(100, 5));
      assert.deepEqual(await quiet(back, 300), []);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('QoS 0 delivered live to a persistent session is not repeated when another session logs it', async () => {
    const tb = await startBroker();
    try {
      await offlineSubscriber(tb.url, 'q0-offline', 'q0/t', 1); // makes q0/t durable
      const live = await client(tb.url, persistent('q0-live'));
      await live.subscribeAsync('q0/t', { qos: 0 });
      const got = collect(live, 30, 10000);
      await publishN(tb.url, 'q0/t', 30, 0);
      assert.deepEqual(nums(await got), range(0, 30));
      // Falling behind and coming back replays from the log: nothing delivered twice.
      await live.endAsync();
      await publishN(tb.url, 'q0/t', 3, 0, 100);
      const back = unconnected(tb.url, persistent('q0-live'));
      const more = collect(back, 3, 10000);
      back.connect();
      assert.deepEqual(nums(await more), range(100, 3));
      assert.deepEqual(await quiet(back, 300), []);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('replayed messages keep their v5 properties, subscription identifiers and expiry', async () => {
    const tb = await startBroker();
    try {
      const sub = await client(tb.url, persistent('props-sub'));
      await sub.subscribeAsync('pr/#', { qos: 1, properties: { subscriptionIdentifier: 7 } });
      await sub.endAsync();
      const pub = await client(tb.url, { protocolVersion: 5, clientId: 'props-pub' });
      await pub.publishAsync('pr/a', 'with-props', { qos: 1, properties: { userProperties: { k: 'v' }, contentType: 'text/plain', messageExpiryInterval: 3600 } });
      await pub.publishAsync('pr/b', 'short-lived', { qos: 1, properties: { messageExpiryInterval: 1 } });
      await pub.publishAsync('pr/c', 'plain', { qos: 1 });
      await pub.endAsync();
      await sleep(1100); // pr/b expires while the subscriber is away [MQTT-3.3.2-5]
      const back = unconnected(tb.url, persistent('props-sub'));
      const got = collect(back, 2, 10000);
      back.connect();
      const [a, c] = await got;
      assert.equal(a?.topic, 'pr/a');
      assert.equal(a?.payload.toString(), 'with-props');
      assert.deepEqual({ ...a?.packet.properties?.userProperties }, { k: 'v' });
      assert.equal(a?.packet.properties?.contentType, 'text/plain');
      assert.ok((a?.packet.properties?.messageExpiryInterval ?? 0) <= 3600);
      assert.deepEqual(a?.packet.properties?.subscriptionIdentifier, 7);
      assert.equal(c?.topic, 'pr/c');
      assert.equal(c?.payload.toString(), 'plain');
      assert.deepEqual(c?.packet.properties?.subscriptionIdentifier, 7);
      assert.deepEqual(await quiet(back, 300), []);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('a backlog mixing plain messages, properties and QoS 2 drains in order, each once, as the fast and general paths take turns', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_inflight': 16 } });
    try {
      await offlineSubscriber(tb.url, 'mix-sub', 'mix/#', 2);
      const pub = await client(tb.url, { protocolVersion: 5, clientId: 'mix-pub' });
      const kind = (i: number): 'props' | 'qos2' | 'plain' => (i % 7 === 3 ? 'props' : i % 11 === 5 ? 'qos2' : 'plain');
      await Promise.all(
        range(0, 400).map((i) =>
          pub.publishAsync(`mix/${i % 3}`, String(i), {
            qos: kind(i) === 'qos2' ? 2 : 1,
            ...(kind(i) === 'props' ? { properties: { userProperties: { i: String(i) } } } : {}),
          }),
        ),
      );
      await pub.endAsync();
      // A raw client sees the wire order (MQTT.js reports a QoS 2 message only at PUBREL).
      const raw = await RawClient.tcp(tb.port, 5);
      assert.equal((await raw.connect('mix-sub', { clean: false, properties: { sessionExpiryInterval: 3600 } }))?.cmd, 'connack');
      const seen: number[] = [];
      while (seen.length < 400) {
        const p = await raw.next(undefined, 10000);
        if (p === null) throw new Error('connection closed');
        if (p.cmd === 'pubrel') raw.send({ cmd: 'pubcomp', messageId: p.messageId });
        if (p.cmd !== 'publish') continue;
        const i = Number.parseInt(p.payload.toString(), 10);
        seen.push(i);
        assert.equal(p.qos, kind(i) === 'qos2' ? 2 : 1, `message ${i}`);
        assert.equal(p.topic, `mix/${i % 3}`);
        assert.deepEqual({ ...p.properties?.userProperties }, kind(i) === 'props' ? { i: String(i) } : {}, `message ${i}`);
        raw.send({ cmd: p.qos === 2 ? 'pubrec' : 'puback', messageId: p.messageId });
      }
      assert.deepEqual(seen, range(0, 400));
      await assert.rejects(raw.next('publish', 300));
      raw.end();
    } finally {
      await tb.close();
    }
  });

  test('a client that leaves mid-drain gets the rest when it returns: only unacknowledged ones again, with DUP', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_inflight': 8 } });
    try {
      await offlineSubscriber(tb.url, 'leaver', 'lv/t');
      await publishN(tb.url, 'lv/t', 600, 1);
      const first = unconnected(tb.url, persistent('leaver'));
      const part: number[] = [];
      const gone = new Promise<void>((resolve) => first.once('close', () => resolve()));
      first.on('message', (_t, payload) => {
        part.push(Number.parseInt(payload.toString(), 10));
        if (part.length === 50) first.end(true); // gone at once: what is in flight stays unacknowledged
      });
      first.connect();
      await gone;
      assert.ok(part.length >= 50 && part.length < 600, `first connection got ${part.length}`);
      const back = unconnected(tb.url, persistent('leaver'));
      const seen = new Set(part);
      const again: { n: number; dup: boolean }[] = [];
      back.on('message', (_t, payload, packet) => {
        const n = Number.parseInt(payload.toString(), 10);
        if (seen.has(n)) again.push({ n, dup: packet.dup });
        seen.add(n);
      });
      back.connect();
      for (let i = 0; i < 100 && seen.size < 600; i++) await sleep(50);
      assert.deepEqual([...seen].sort((a, b) => a - b), range(0, 600));
      assert.ok(again.length <= 8, `at most the window again, got ${again.length}`);
      for (const a of again) assert.ok(a.dup, `message ${a.n} again without DUP`);
      await back.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('a QoS 0 backlog drains to a client that does not read only up to the write high watermark', async () => {
    const tb = await startBroker({ config: { 'mqtt.write_high_watermark': 65536 } });
    try {
      await qos0Backlog(tb.url, 'q0-slow', 'q0s/t');
      const raw = await RawClient.tcp(tb.port, 4);
      (raw.stream as import('node:net').Socket).pause(); // reads nothing for now
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'q0-slow', clean: false, keepalive: 60 } as never);
      await sleep(500);
      const conn = [...tb.broker.connections].find((c) => c.clientId === 'q0-slow');
      assert.ok(conn, 'connected');
      // 12 MB are waiting; the broker holds about the watermark plus one read of the log.
      assert.ok(conn.backlog < 6 * 1024 * 1024, `backlog ${conn.backlog}`);
      (raw.stream as import('node:net').Socket).resume();
      let n = 0;
      while (n < 3000) {
        const p = await raw.next('publish', 5000);
        if (p === null) break;
        n++;
      }
      assert.equal(n, 3000);
      raw.end();
    } finally {
      await tb.close();
    }
  });

  test('a QoS 0 backlog drains whole to a client whose transport takes every write at once (no drain event ever comes)', async () => {
    // Above the watermark the drain waits for the socket; the first pages go out behind the
    // CONNACK's gate, and a transport that takes a write whole never emits 'drain' for it.
    const tb = await startBroker({ config: { 'mqtt.write_high_watermark': 65536 } });
    try {
      await qos0Backlog(tb.url, 'q0-sync', 'q0y/t');
      const raw = RawClient.memory(tb.broker, 4);
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'q0-sync', clean: false, keepalive: 60 } as never);
      let n = 0;
      while (n < 3000 && (await raw.next('publish', 5000)) !== null) n++;
      assert.equal(n, 3000);
      raw.end();
    } finally {
      await tb.close();
    }
  });

  for (const native of [true, false]) {
    test(`with message.delivered / message.acked listeners the drain keeps its fast path (${native ? 'the native loop' : 'on the event loop'}) and reports every delivery and acknowledgement`, async () => {
      const tb = await startBroker({ config: { 'durable_sessions.native_drain': native } });
      try {
        await offlineSubscriber(tb.url, 'hooked', 'hk/t');
        await publishN(tb.url, 'hk/t', 300, 1);
        const delivered: string[] = [];
        const acked: string[] = [];
        tb.broker.on('message.delivered', (clientId, msg) => delivered.push(`${clientId}:${msg.payload.toString()}`));
        tb.broker.on('message.acked', (clientId, msg) => acked.push(`${clientId}:${msg.payload.toString()}`));
        const back = unconnected(tb.url, persistent('hooked'));
        const got = collect(back, 300, 10000);
        back.connect();
        assert.deepEqual(nums(await got), range(0, 300));
        await sleep(100);
        const want = range(0, 300).map((i) => `hooked:${i}`);
        assert.deepEqual(delivered, want);
        assert.deepEqual(acked, want);
        if (native) assert.ok(tb.broker.metrics.nativeDrains > 0, 'drained by the native loop');
        else assert.ok(tb.broker.metrics.fastDrained > 0, 'drained on the event loop fast path');
        await back.endAsync();
      } finally {
        await tb.close();
      }
    });
  }

  test('a persistent subscriber that stays connected but slow gets everything in order', async () => {
    const tb = await startBroker({ config: { 'mqtt.max_inflight': 4 } });
    try {
      const sub = await client(tb.url, persistent('slowpoke'));
      await sub.subscribeAsync('sp/#', { qos: 1 });
      const got = collect(sub, 3000, 30000);
      await Promise.all([publishN(tb.url, 'sp/a', 1500, 1), publishN(tb.url, 'sp/b', 1500, 1, 10000)]);
      const msgs = await got;
      const a = msgs.filter((m) => m.topic === 'sp/a');
      const b = msgs.filter((m) => m.topic === 'sp/b');
      assert.deepEqual(nums(a), range(0, 1500));
      assert.deepEqual(nums(b), range(10000, 1500));
      assert.deepEqual(await quiet(sub, 300), []);
      await sub.endAsync();
    } finally {
      await tb.close();
    }
  });
});

describe('shared subscriptions with persistent members', () => {
  test('a connected member gets the messages while the other member is offline', async () => {
    const tb = await startBroker();
    try {
      await offlineSubscriber(tb.url, 'sh-away', '$share/g/sh/t');
      const on = await client(tb.url, persistent('sh-on'));
      await on.subscribeAsync('$share/g/sh/t', { qos: 1 });
      const got = collect(on, 40, 10000);
      await publishN(tb.url, 'sh/t', 40, 1);
      assert.deepEqual(nums(await got), range(0, 40));
      await on.endAsync();
      const away = unconnected(tb.url, persistent('sh-away'));
      away.connect();
      assert.deepEqual(await quiet(away, 400), [], 'the offline member got none of them');
      await away.endAsync();
    } finally {
      await tb.close();
    }
  });

  test('connected members take turns while another member is offline', async () => {
    const tb = await startBroker();
    try {
      await offlineSubscriber(tb.url, 'rr-away', '$share/rr/rr/t');
      const a = await client(tb.url, persistent('rr-a'));
      const b = await client(tb.url, persistent('rr-b'));
      for (const c of [a, b]) await c.subscribeAsync('$share/rr/rr/t', { qos: 1 });
      const got: Record<string, number[]> = { a: [], b: [] };
      a.on('message', (_t, p) => got['a']?.push(Number(p.toString())));
      b.on('message', (_t, p) => got['b']?.push(Number(p.toString())));
      await publishN(tb.url, 'rr/t', 40, 1);
      for (let i = 0; i < 100 && (got['a']?.length ?? 0) + (got['b']?.length ?? 0) < 40; i++) await sleep(20);
      assert.deepEqual([...(got['a'] ?? []), ...(got['b'] ?? [])].sort((x, y) => x - y), range(0, 40));
      // The offline member's turns go round-robin to the connected ones: an even split.
      assert.ok(Math.abs((got['a']?.length ?? 0) - (got['b']?.length ?? 0)) <= 6, `split ${got['a']?.length}/${got['b']?.length}`);
      await Promise.all([a.endAsync(), b.endAsync()]);
    } finally {
      await tb.close();
    }
  });

  test('with every member offline, their shares survive a restart of the broker', async () => {
    const data = tempDir('strata-share-');
    try {
      let tb = await startBroker({ dataDir: data.dir });
      await offlineSubscriber(tb.url, 'sh1', '$share/g2/sh2/t');
      await offlineSubscriber(tb.url, 'sh2', '$share/g2/sh2/t');
      await publishN(tb.url, 'sh2/t', 60, 1);
      await tb.close();
      tb = await startBroker({ dataDir: data.dir });
      const a = unconnected(tb.url, persistent('sh1'));
      const b = unconnected(tb.url, persistent('sh2'));
      const seen: number[] = [];
      for (const c of [a, b]) c.on('message', (_t, p) => seen.push(Number(p.toString())));
      a.connect();
      b.connect();
      for (let i = 0; i < 100 && seen.length < 60; i++) await sleep(50);
      await sleep(200);
      assert.deepEqual(
        seen.sort((x, y) => x - y),
        range(0, 60),
      );
      await Promise.all([a.endAsync(), b.endAsync()]);
      await tb.close();
    } finally {
      data.remove();
    }
  });
});

describe('graceful shutdown', () => {
  for (const clean of [true, false]) {
    test(`wills of the clients a shutdown disconnects reach persistent subscribers after the restart, once (${clean ? 'clean' : 'persistent'} client)`, async () => {
      const data = tempDir('strata-willstop-');
      try {
        let tb = await startBroker({ dataDir: data.dir });
        await offlineSubscriber(tb.url, 'will-watcher', 'wills/#');
        const dying = await client(tb.url, { clientId: 'dying', clean, will: { topic: 'wills/dying', payload: Buffer.from('gone'), qos: 1, retain: true } });
        dying.on('error', () => undefined);
        await tb.close();
        dying.end(true);
        tb = await startBroker({ dataDir: data.dir });
        const w = unconnected(tb.url, persistent('will-watcher'));
        const got = collect(w, 1, 5000);
        w.connect();
        const [m] = await got;
        assert.equal(m?.topic, 'wills/dying');
        assert.equal(m?.payload.toString(), 'gone');
        assert.deepEqual(await quiet(w, 500), [], 'once');
        // Retained too, like any will with the retain flag.
        const late = await client(tb.url, { clientId: 'late-reader' });
        const retained = collect(late, 1, 5000);
        await late.subscribeAsync('wills/#', { qos: 1 });
        assert.equal((await retained)[0]?.payload.toString(), 'gone');
        await Promise.all([w.endAsync(), late.endAsync()]);
        await tb.close();
      } finally {
        data.remove();
      }
    });
  }
});
