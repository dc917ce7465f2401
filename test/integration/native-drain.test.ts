/**
 * The native drain loop (durable_sessions.native_drain, crates/strata-core/src/drain): a
 * persistent session catching up over plain TCP is drained by a Rust thread that owns the
 * socket meanwhile. Whatever the client does during that time — PINGREQ, MQTT 5 PUBACK forms,
 * closing, being taken over, going silent — every queued message arrives, in order, and one
 * acknowledged is never sent again.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { generate, type IConnackPacket, type IPublishPacket } from 'mqtt-packet';
import { client, RawClient, sleep, startBroker, tempDir, type TestBroker } from '../helpers.js';

const N = 3000;

/** A persistent session `id` subscribed to `topic`, offline, with messages 0..n-1 queued. */
async function queued(tb: TestBroker, id: string, topic: string, n = N): Promise<void> {
  const sub = await client(tb, { clientId: id, clean: false });
  await sub.subscribeAsync(topic, { qos: 1 });
  await sub.endAsync();
  const pub = await client(tb, { clientId: `pub-${id}` });
  for (let i = 0; i < n; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => pub.publishAsync(topic, String(i + k), { qos: 1 })));
  }
  await pub.endAsync();
}

async function resume(tb: TestBroker, id: string, version: 4 | 5 = 4, keepalive = 60): Promise<RawClient> {
  const raw = await RawClient.tcp(tb.port, version);
  const extra = version === 5 ? { clean: false, keepalive, properties: { sessionExpiryInterval: 3600 } } : { clean: false, keepalive };
  const ack = (await raw.connect(id, extra)) as IConnackPacket;
  assert.equal(ack.sessionPresent, true);
  return raw;
}

async function nextPublish(raw: RawClient, timeoutMs = 5000): Promise<IPublishPacket> {
  const p = await raw.next('publish', timeoutMs);
  assert.ok(p, 'connection closed');
  return p as IPublishPacket;
}

/** Receive until message `last` has arrived, acknowledging each; returns the payloads. */
async function drainTo(raw: RawClient, last: number, ack: (p: IPublishPacket) => void): Promise<number[]> {
  const got: number[] = [];
  for (;;) {
    const p = await nextPublish(raw);
    ack(p);
    const v = Number(p.payload.toString());
    got.push(v);
    if (v === last) return got;
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

const brokers: TestBroker[] = [];
after(async () => {
  for (const tb of brokers) await tb.close();
});

async function broker(nativeDrain = true): Promise<TestBroker> {
  const tb = await startBroker({ config: { 'durable_sessions.native_drain': nativeDrain } });
  brokers.push(tb);
  return tb;
}

describe('native drain loop', () => {
  test('drains in order, answers a PINGREQ sent mid-drain and carries on', async () => {
    const tb = await broker();
    await queued(tb, 'nd-ping', 'nd/ping');
    const raw = await resume(tb, 'nd-ping');
    const got: number[] = [];
    for (let i = 0; i < 200; i++) {
      const p = await nextPublish(raw);
      raw.send({ cmd: 'puback', messageId: p.messageId as number });
      got.push(Number(p.payload.toString()));
    }
    raw.send({ cmd: 'pingreq' });
    let pong = false;
    for (;;) {
      const p = await raw.next(undefined, 5000);
      assert.ok(p, 'connection closed');
      if (p.cmd === 'pingresp') {
        pong = true;
        continue;
      }
      assert.equal(p.cmd, 'publish');
      const pub = p as IPublishPacket;
      raw.send({ cmd: 'puback', messageId: pub.messageId as number });
      got.push(Number(pub.payload.toString()));
      if (got.length === N) break;
    }
    assert.ok(pong, 'PINGRESP');
    assert.deepEqual(got, range(0, N));
    // Handed to the loop, taken back for the PINGREQ, handed to it again.
    assert.ok(tb.broker.metrics.nativeDrains >= 2, `native drains: ${tb.broker.metrics.nativeDrains}`);
    raw.end();
  });

  test('a client that publishes more than a turn reads (128 KB) at once while its backlog drains: every message both ways', async () => {
    // Its socket yields the event loop after 128 KB and is not handed to the loop while it does;
    // the loop, once it has the socket, reads the rest and hands it back.
    const tb = await broker();
    await queued(tb, 'nd-flood', 'nd/flood');
    const watch = await client(tb, { clientId: 'nd-flood-watch' });
    let seen = 0;
    const all = new Promise<void>((resolve) =>
      watch.on('message', () => {
        if (++seen === 1000) resolve();
      }),
    );
    await watch.subscribeAsync('nd/out', { qos: 0 });
    const raw = await resume(tb, 'nd-flood');
    const burst = Buffer.concat(Array.from({ length: 1000 }, (_, i) => generate({ cmd: 'publish', topic: 'nd/out', payload: Buffer.alloc(600, i % 256), qos: 0, dup: false, retain: false } as IPublishPacket)));
    let k = 0;
    const got = await drainTo(raw, N - 1, (p) => {
      raw.send({ cmd: 'puback', messageId: p.messageId as number });
      if (k++ === 100) raw.sendRaw(burst); // 600 KB mid-drain
    });
    assert.deepEqual(got, range(0, N));
    await all;
    assert.equal(seen, 1000);
    raw.end();
    await watch.endAsync();
  });

  test('MQTT 5 PUBACKs with a reason code, an empty or a non-empty property section all complete deliveries', async () => {
    const tb = await broker();
    const id = 'nd-v5';
    const sub = await client(tb, { protocolVersion: 5, clientId: id, clean: false, properties: { sessionExpiryInterval: 3600 } });
    await sub.subscribeAsync('nd/v5', { qos: 1 });
    await sub.endAsync();
    const pub = await client(tb, { clientId: 'pub-nd-v5' });
    await Promise.all(range(0, 1500).map((i) => pub.publishAsync('nd/v5', String(i), { qos: 1 })));
    await pub.endAsync();
    const raw = await resume(tb, id, 5);
    let k = 0;
    const got = await drainTo(raw, 1499, (p) => {
      const [hi, lo] = [(p.messageId as number) >> 8, (p.messageId as number) & 0xff];
      const form = k++ % 4;
      if (form === 0) raw.sendRaw([0x40, 2, hi, lo]);
      else if (form === 1) raw.sendRaw([0x40, 3, hi, lo, 0x10]); // No matching subscribers
      else if (form === 2) raw.sendRaw([0x40, 4, hi, lo, 0, 0]);
      else raw.send({ cmd: 'puback', messageId: p.messageId as number, reasonCode: 0, properties: { userProperties: { k: 'v' } } });
    });
    assert.deepEqual(got, range(0, 1500));
    raw.end();
  });

  for (const nativeDrain of [true, false]) {
    test(`a client that closes mid-drain gets exactly what it did not acknowledge (native_drain ${nativeDrain})`, async () => {
      const tb = await broker(nativeDrain);
      await queued(tb, 'nd-close', 'nd/close');
      const raw = await resume(tb, 'nd-close');
      // Acknowledge the first 150 as they come, not the next 50.
      for (let i = 0; i < 200; i++) {
        const p = await nextPublish(raw);
        if (i < 150) raw.send({ cmd: 'puback', messageId: p.messageId as number });
      }
      await sleep(100);
      raw.end();
      await raw.closedPromise;
      await sleep(100);
      const again = await resume(tb, 'nd-close');
      const dup: boolean[] = [];
      const got = await drainTo(again, N - 1, (p) => {
        dup.push(p.dup);
        again.send({ cmd: 'puback', messageId: p.messageId as number });
      });
      assert.deepEqual(got, range(150, N));
      // The 50 received and not acknowledged (and any sent after them) come first, as DUP.
      assert.ok(dup.slice(0, 50).every(Boolean), 'in-flight deliveries come again with DUP');
      assert.equal(tb.broker.metrics.nativeDrains > 0, nativeDrain);
      again.end();
    });
  }

  test('a graceful shutdown mid-drain takes the state back: after the restart only unacknowledged messages come', async () => {
    const data = tempDir('strata-nd-restart-');
    try {
      let tb = await startBroker({ dataDir: data.dir });
      await queued(tb, 'nd-stop', 'nd/stop');
      const raw = await resume(tb, 'nd-stop');
      for (let i = 0; i < 700; i++) {
        const p = await nextPublish(raw);
        raw.send({ cmd: 'puback', messageId: p.messageId as number });
      }
      await sleep(50); // the last PUBACKs reach the loop
      assert.ok(tb.broker.metrics.nativeDrains > 0);
      await tb.close();
      await raw.closedPromise;
      tb = await startBroker({ dataDir: data.dir });
      const again = await resume(tb, 'nd-stop');
      const got = await drainTo(again, N - 1, (p) => again.send({ cmd: 'puback', messageId: p.messageId as number }));
      assert.deepEqual(got, range(700, N));
      again.end();
      await tb.close();
    } finally {
      data.remove();
    }
  });

  test('a takeover mid-drain: the new connection gets every message the old one did not acknowledge', async () => {
    const tb = await broker();
    await queued(tb, 'nd-take', 'nd/take');
    const old = await resume(tb, 'nd-take');
    const acked = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const p = await nextPublish(old);
      old.send({ cmd: 'puback', messageId: p.messageId as number });
      acked.add(Number(p.payload.toString()));
    }
    const next = await resume(tb, 'nd-take');
    await old.closedPromise;
    const seen: IPublishPacket[] = [];
    await drainTo(next, N - 1, (p) => {
      seen.push(p);
      next.send({ cmd: 'puback', messageId: p.messageId as number });
    });
    const got = seen.map((p) => Number(p.payload.toString()));
    assert.deepEqual(new Set([...acked, ...got]), new Set(range(0, N)));
    assert.equal(new Set(got).size, got.length, 'no duplicates on the new connection');
    // Only what the old connection had in flight comes again, marked DUP.
    const again = seen.filter((p) => acked.has(Number(p.payload.toString())));
    assert.ok(again.length <= 128, `${again.length} sent again`);
    assert.ok(again.every((p) => p.dup));
    next.end();
  });

  test('a slow client that keeps acknowledging is not taken for silent: PUBACKs read by the loop count for keep-alive', async () => {
    const tb = await broker();
    await queued(tb, 'nd-slow', 'nd/slow', 600);
    const raw = await resume(tb, 'nd-slow', 4, 1);
    const t0 = Date.now();
    // One PUBACK every 5 ms or so: the drain lasts about 2.5 s, past 1.5 x the keep-alive.
    let chain = Promise.resolve();
    const got = await drainTo(raw, 599, (p) => {
      chain = chain.then(() => sleep(5)).then(() => raw.send({ cmd: 'puback', messageId: p.messageId as number }));
    });
    assert.ok(Date.now() - t0 > 1500, `the drain lasted ${Date.now() - t0} ms`);
    assert.deepEqual(got, range(0, 600));
    assert.equal(raw.closed, false);
    assert.ok(tb.broker.metrics.nativeDrains > 0);
    raw.end();
  });

  test('a client that stops acknowledging and goes silent is closed at its keep-alive, and nothing is lost', async () => {
    const tb = await broker();
    await queued(tb, 'nd-silent', 'nd/silent', 1000);
    const raw = await resume(tb, 'nd-silent', 4, 1);
    for (let i = 0; i < 20; i++) await nextPublish(raw);
    const t0 = Date.now();
    await raw.closedPromise;
    const waited = Date.now() - t0;
    assert.ok(waited < 4000, `closed after ${waited} ms`);
    const again = await resume(tb, 'nd-silent');
    const got = await drainTo(again, 999, (p) => again.send({ cmd: 'puback', messageId: p.messageId as number }));
    assert.deepEqual(got, range(0, 1000));
    again.end();
  });
});
