/**
 * MQTT 5 §4.8.2: "If the Client's Session terminates before the Client reconnects, the Server
 * SHOULD send the Application Message to another Client that is subscribed to the same Shared
 * Subscription." A worker of a `$share/` pool (a clean session) that goes away with QoS 1/2
 * messages it took and did not acknowledge: they go to another member of the group, as EMQX does.
 * Before, they ended with its session — acknowledged to their publisher, delivered to no one.
 * Real clients over TCP, an in-process broker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import type { IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { BrokerProcess, client, freePort, persistent, RawClient, recordingClient, sleep, startBroker, tempDir, type TestBroker } from '../helpers.js';

const WINDOW = 16;

/** A member of `$share/g/job` over raw TCP at `qos` (clean, or persistent for `expiry` s): it acknowledges nothing (its packets wait in the client). */
async function silentMember(tb: { port: number }, clientId: string, qos: 1 | 2, expiry = 0): Promise<RawClient> {
  const c = await RawClient.tcp(tb.port, 5);
  await c.connect(clientId, expiry > 0 ? { clean: false, properties: { sessionExpiryInterval: expiry } } : {});
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/job', qos }] });
  assert.deepEqual(((await c.next('suback')) as ISubackPacket).granted, [qos]);
  return c;
}

/** A member of `$share/g/job` with MQTT.js, acknowledging at once; `got`: the payloads it received. */
async function member(tb: TestBroker, opts: IClientOptions, qos: 1 | 2): Promise<{ b: MqttClient; got: string[] }> {
  const b = await client(tb, opts);
  const got: string[] = [];
  b.on('message', (_t, p) => got.push(p.toString()));
  await b.subscribeAsync('$share/g/job', { qos });
  return { b, got };
}

async function publishAll(tb: TestBroker, n: number, qos: 1 | 2): Promise<void> {
  const pub = await client(tb, { clientId: 'sh-pub', protocolVersion: 5 });
  await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('job', String(i), { qos })));
  await pub.endAsync();
}

async function until(done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await sleep(20);
}

for (const qos of [1, 2] as const) {
  test(`QoS ${qos}: a member that goes away with messages it took and did not acknowledge — queued or in flight — leaves them to another member`, async () => {
    const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
    try {
      const a = await silentMember(tb, 'sh-a', qos);
      const { b, got } = await member(tb, { clientId: 'sh-b', protocolVersion: 5 }, qos);
      const n = 100;
      await publishAll(tb, n, qos);
      await until(() => got.length >= n / 2);
      const taken = tb.broker.sessions.get('sh-a');
      assert.equal((taken?.inflight.size ?? 0) + (taken?.queue.length ?? 0), n / 2, 'the silent member took half (round-robin)');
      a.stream.destroy();
      await until(() => got.length >= n);
      await sleep(100);
      assert.deepEqual(
        got.map(Number).sort((x, y) => x - y),
        Array.from({ length: n }, (_, i) => i),
        'every message reached the group once',
      );
      await b.endAsync();
    } finally {
      await tb.close();
    }
  });
}

test('QoS 2: what the member had received (PUBREC sent) stays with it; only what it never received goes to another member', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
  try {
    const a = await silentMember(tb, 'sh-a2', 2);
    const { b, got } = await member(tb, { clientId: 'sh-b2', protocolVersion: 5 }, 2);
    await publishAll(tb, 40, 2);
    // The silent member's first five: received (PUBREC), and so its application's.
    const received: string[] = [];
    for (let i = 0; i < 5; i++) {
      const p = (await a.next('publish')) as IPublishPacket;
      received.push(p.payload.toString());
      a.send({ cmd: 'pubrec', messageId: p.messageId as number });
    }
    await a.next('pubrel');
    a.stream.destroy();
    await until(() => got.length >= 35);
    await sleep(200);
    assert.equal(got.length, 35);
    assert.deepEqual([...got, ...received].map(Number).sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i), 'each message once across the group');
    await b.endAsync();
  } finally {
    await tb.close();
  }
});

test('with no other member connected they end with the session: a member joining later does not get them', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
  try {
    const a = await silentMember(tb, 'sh-alone', 1);
    await publishAll(tb, 20, 1);
    a.stream.destroy();
    await sleep(200);
    const { b, got } = await member(tb, { clientId: 'sh-late', protocolVersion: 5 }, 1);
    await sleep(300);
    assert.deepEqual(got, []);
    await b.endAsync();
  } finally {
    await tb.close();
  }
});

test('a persistent member whose session expires with pinned messages it never acknowledged: they go to a connected member — kept in memory, or persistent (pinned there, once)', async () => {
  const tb = await startBroker({ config: { 'mqtt.max_inflight': WINDOW } });
  try {
    for (const [round, bPersistent] of [[1, false], [2, true]] as const) {
      const a = await silentMember(tb, `sh-pa${round}`, 1, 1);
      const opts = bPersistent ? persistent(5, `sh-pb${round}`) : { clientId: `sh-pb${round}`, protocolVersion: 5 as const };
      const { b, got } = await member(tb, opts, 1);
      const n = 60;
      await publishAll(tb, n, 1);
      await until(() => got.length >= n / 2);
      a.stream.destroy(); // its session stays for 1 s, holding what it took
      await sleep(300);
      assert.equal(got.length, n / 2, 'kept for the persistent member while its session lasts');
      await until(() => got.length >= n, 5000);
      await sleep(100);
      assert.deepEqual(
        got.map(Number).sort((x, y) => x - y),
        Array.from({ length: n }, (_, i) => i),
        `round ${round}: every message reached the group once`,
      );
      if (bPersistent) {
        // Pinned in b's session and acknowledged: not again when it comes back.
        await b.endAsync();
        const again = await recordingClient(tb, persistent(5, `sh-pb${round}`));
        await sleep(300);
        assert.deepEqual(again.got, []);
        await again.c.endAsync();
      } else await b.endAsync();
    }
  } finally {
    await tb.close();
  }
});

test('kill -9 right after a persistent member got what an expired member left: it gets them again after the restart (its pin went in the same commit as the removal)', async () => {
  // Metadata commits land 600 ms after their turn: the window between the expired member's
  // removal and the other member's pin was that wide when the pin was a later commit.
  const dir = tempDir('strata-shared-kill-');
  const b = new BrokerProcess(await freePort(), dir.dir, [], { STRATAMQ_TEST_METADATA_DELAY_MS: '600', STRATA_MQTT__MAX_INFLIGHT: '100' });
  await b.start();
  try {
    const a = await silentMember(b, 'shk-a', 1, 1);
    const m = await silentMember(b, 'shk-b', 1, 3600);
    const n = 40;
    const pub = await client(b.url, { clientId: 'shk-pub', protocolVersion: 5 });
    await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('job', String(i), { qos: 1 })));
    await pub.endAsync();
    // b acknowledges its half; a keeps the other half and goes (its session lasts 1 s).
    const mine = new Set<string>();
    for (let i = 0; i < n / 2; i++) {
      const p = (await m.next('publish')) as IPublishPacket;
      mine.add(p.payload.toString());
      m.send({ cmd: 'puback', messageId: p.messageId });
    }
    await sleep(700); // b's acknowledgements recorded
    a.stream.destroy();
    const handed: string[] = [];
    for (let i = 0; i < n / 2; i++) handed.push(((await m.next('publish', 10_000)) as IPublishPacket).payload.toString());
    await b.kill9(); // b has not acknowledged them
    const rest = Array.from({ length: n }, (_, i) => String(i)).filter((x) => !mine.has(x));
    assert.deepEqual([...handed].sort(), [...rest].sort(), 'a\'s half reached b');
    await b.start();
    const again = await RawClient.tcp(b.port, 5);
    await again.connect('shk-b', { clean: false, properties: { sessionExpiryInterval: 3600 } });
    const back: string[] = [];
    for (let i = 0; i < n / 2; i++) {
      const p = (await again.next('publish', 10_000)) as IPublishPacket;
      back.push(p.payload.toString());
      again.send({ cmd: 'puback', messageId: p.messageId });
    }
    assert.deepEqual(back.sort(), [...rest].sort(), 'after the restart b still holds what a left');
    again.end();
    m.end();
  } finally {
    await b.stop();
    dir.remove();
  }
});
