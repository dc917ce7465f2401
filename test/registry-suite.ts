/**
 * The one test suite every persistence registry runs (as aedes-persistence's abstract tests and
 * MQTT.js' abstract_store do): `registrySuite(name, open)` registers its tests for a registry
 * `open` prepares afresh for each test — the embedded store, Redis (single, sentinel, cluster), a
 * user's module. Everything goes through a real broker and real MQTT clients; a "restart" closes
 * the broker and starts another on the same registry.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConfigInput } from '../src/config.js';
import type { MqttClient } from 'mqtt';
import { BrokerProcess, client, collect, freePort, persistent, quiet, RawClient, sleep, startBroker, type TestBroker, tempDir, unconnected } from './helpers.js';
import type { SlowReplies } from './servers.js';

/** A registry ready for one test: the broker configuration that uses it, and its removal. */
export interface RegistryUnderTest {
  config: ConfigInput;
  /** The embedded store's directory (and a module's, which may keep files there). */
  dataDir: string;
  cleanup(): Promise<void>;
}

export type OpenRegistry = () => Promise<RegistryUnderTest>;

/** A fresh temp data dir and a cleanup that removes it, for registries that need only a config. */
export function withDataDir(config: ConfigInput, after: () => Promise<void> = async () => undefined): RegistryUnderTest {
  const tmp = tempDir('strata-reg-');
  return {
    config,
    dataDir: tmp.dir,
    cleanup: async () => {
      await after();
      tmp.remove();
    },
  };
}

/**
 * `topic` retained (`payload`, QoS `qos`), then a persistent v5 session `clientId` subscribing to
 * its parent's `#` at that QoS: the retained message it is sent on subscribe.
 */
async function retainedOnSubscribe(tb: TestBroker, clientId: string, topic: string, payload: string, qos: 1 | 2): Promise<{ raw: RawClient; p: { payload: Buffer; messageId: number; qos: number; retain: boolean } }> {
  const pub = await client(tb);
  await pub.publishAsync(topic, payload, { qos, retain: true });
  await pub.endAsync();
  const raw = await RawClient.tcp(tb.port, 5);
  await raw.connect(clientId, { clean: false, properties: { sessionExpiryInterval: 3600 } });
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${topic.slice(0, topic.lastIndexOf('/'))}/#`, qos }] });
  await raw.next('suback');
  const p = (await raw.next('publish')) as { payload: Buffer; messageId: number; qos: number; retain: boolean };
  assert.equal(p.payload.toString(), payload);
  assert.equal(p.qos, qos);
  assert.equal(p.retain, true);
  return { raw, p };
}

/** The topics of the stored retained messages `filter` matches (RetainedRegistry.getRetainMessage), sorted. */
async function retainedTopics(tb: TestBroker, filter: string): Promise<string[]> {
  return (await tb.broker.store!.retained.getRetainMessage(filter)).map((m) => m.topic).sort();
}

/** The persistent sessions the broker's registry holds now, read from the registry itself. */
async function storedSessions(tb: TestBroker): Promise<{ clientId: string; subscriptions: { filter: string }[] }[]> {
  const external = tb.broker.registry;
  if (external) return external.registry.loadSessions();
  return tb.broker.durable!.loadSessions();
}

export function registrySuite(name: string, open: OpenRegistry, opts: { concurrency?: boolean } = {}): void {
  const start = (r: RegistryUnderTest, extra: ConfigInput = {}): Promise<TestBroker> => startBroker({ dataDir: r.dataDir, config: { ...r.config, ...extra } });
  /** A broker on the registry for the test's length. */
  const withBroker = (title: string, fn: (tb: TestBroker) => Promise<void>, extra: ConfigInput = {}): void =>
    run(title, async (r) => {
      const tb = await start(r, extra);
      try {
        await fn(tb);
      } finally {
        await tb.close();
      }
    });
  /** `first` on a broker, then `then` on another started on the same registry (a restart). */
  const acrossRestart = <T>(title: string, first: (tb: TestBroker) => Promise<T>, then: (tb: TestBroker, got: T) => Promise<void>): void =>
    run(title, async (r) => {
      const tb = await start(r);
      let got: T;
      try {
        got = await first(tb);
      } finally {
        await tb.close();
      }
      const again = await start(r);
      try {
        await then(again, got);
      } finally {
        await again.close();
      }
    });
  const run = (title: string, fn: (r: RegistryUnderTest) => Promise<void>): void => {
    test(`${name}: ${title}`, { concurrency: opts.concurrency ?? false }, async () => {
      const r = await open();
      try {
        await fn(r);
      } finally {
        await r.cleanup();
      }
    });
  };

  withBroker('a message an away session matches by a shared and a plain subscription: acknowledged, and queued at the higher QoS', async (tb) => {
    // On the log the two are delivered apart (replay reads plain subscriptions only); a queue
    // entry keeps its QoS, so here one is queued — the same message twice for one session would
    // be a second entry under its id.
    const sub = await client(tb, persistent(5, 'suite-both'));
    await sub.subscribeAsync({ 'both/+': { qos: 0 }, '$share/g/both/#': { qos: 1 } });
    await sub.endAsync();
    const pub = await client(tb);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        pub.publishAsync('both/x', 'owed', { qos: 1 }),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the publish was not acknowledged within 10 s')), 10000))),
      ]);
    } finally {
      clearTimeout(timer);
    }
    await pub.endAsync();
    const back = unconnected(tb, persistent(5, 'suite-both'));
    const got = collect(back, 1);
    back.connect();
    assert.deepEqual((await got).map((m) => [m.payload.toString(), m.packet.qos]), [['owed', 1]]);
    assert.deepEqual(await quiet(back, 200), []);
    await back.endAsync();
  });

  acrossRestart(
    'an offline queue survives a broker restart: in order, QoS capped by the subscription, session present',
    async (tb) => {
      const sub = await client(tb, persistent(5, 'suite-q'));
      await sub.subscribeAsync('q/#', { qos: 1 });
      await sub.subscribeAsync('capped/#', { qos: 0 });
      await sub.endAsync();
      const pub = await client(tb);
      for (let i = 0; i < 20; i++) await pub.publishAsync(`q/${i}`, `m${i}`, { qos: i % 2 === 0 ? 1 : 2 });
      await pub.publishAsync('capped/x', 'capped', { qos: 1 });
      await pub.publishAsync('nobody/x', 'unmatched', { qos: 1 });
      await pub.endAsync();
    },
    async (tb) => {
      const back = unconnected(tb, { ...persistent(5, 'suite-q'), clean: false });
      const connack = new Promise<boolean>((resolve) => back.once('connect', (p) => resolve(p.sessionPresent)));
      const got = collect(back, 21);
      back.connect();
      assert.equal(await connack, true, 'session present after the restart');
      const msgs = await got;
      assert.deepEqual(
        msgs.filter((m) => m.topic.startsWith('q/')).map((m) => m.payload.toString()),
        Array.from({ length: 20 }, (_, i) => `m${i}`),
      );
      const capped = msgs.find((m) => m.topic === 'capped/x');
      assert.equal(capped?.packet.qos, 0);
      for (const m of msgs.filter((x) => x.topic.startsWith('q/'))) assert.equal(m.packet.qos, 1);
      assert.deepEqual(await quiet(back, 200), [], 'nothing more, nothing twice');
      await back.endAsync();
    },
  );

  withBroker('getSessionMessages lists what an offline session has waiting: in flight first, then queued, QoS capped', async (tb) => {
    const store = tb.broker.store!;
    const sub = await client(tb, { ...persistent(5, 'suite-list'), clean: true });
    await sub.subscribeAsync('reg/#', { qos: 1 });
    await sub.subscribeAsync('other/+', { qos: 0 });
    (sub as unknown as { handleMessage: unknown }).handleMessage = (_p: unknown, _cb: () => void) => undefined; // never acks
    const pub = await client(tb);
    await pub.publishAsync('reg/a', 'first', { qos: 1 });
    await sleep(100);
    sub.stream.destroy();
    await sleep(100);
    for (let i = 0; i < 5; i++) await pub.publishAsync(`reg/${i}`, `queued ${i}`, { qos: 2 });
    await pub.publishAsync('other/x', 'capped', { qos: 1 });
    await pub.publishAsync('nobody/x', 'unmatched', { qos: 1 });
    await sleep(50);
    const all = await store.messages.getSessionMessages('suite-list', 100);
    assert.deepEqual(
      all.map((m) => [m.msg.topic, m.msg.payload.toString(), m.qos, m.inflight]),
      [['reg/a', 'first', 1, true], ...[0, 1, 2, 3, 4].map((i) => [`reg/${i}`, `queued ${i}`, 1, false]), ['other/x', 'capped', 0, false]],
    );
    assert.equal((await store.messages.getSessionMessages('suite-list', 3)).length, 3);
    assert.deepEqual(await store.messages.getSessionMessages('no-such-session', 10), []);
    const back = unconnected(tb, { ...persistent(5, 'suite-list'), clean: false });
    const got = collect(back, 7);
    back.connect();
    assert.deepEqual((await got).map((m) => m.payload.toString()).sort(), all.map((m) => m.msg.payload.toString()).sort());
    await sleep(150);
    assert.deepEqual(await store.messages.getSessionMessages('suite-list', 100), [], 'nothing waits once delivered and acknowledged');
    await Promise.all([back.endAsync(), pub.endAsync()]);
  });

  acrossRestart(
    'retained messages: getRetainMessage by filter, cleared by an empty payload, kept across a restart',
    async (tb) => {
      const pub = await client(tb);
      for (const t of ['r/a', 'r/b', 'r/b/c', 's/a', '$app/r']) await pub.publishAsync(t, `v ${t}`, { qos: 1, retain: true });
      await pub.publishAsync('r/b', '', { qos: 1, retain: true });
      await pub.endAsync();
      assert.deepEqual(await retainedTopics(tb, 'r/+'), ['r/a']);
      assert.deepEqual(await retainedTopics(tb, '#'), ['r/a', 'r/b/c', 's/a']);
      assert.deepEqual(await retainedTopics(tb, '$app/#'), ['$app/r']);
    },
    async (tb) => {
      assert.deepEqual(await retainedTopics(tb, 'r/#'), ['r/a', 'r/b/c']);
      const [m] = await tb.broker.store!.retained.getRetainMessage('s/a');
      assert.equal(m?.payload.toString(), 'v s/a');
      const sub = await client(tb);
      const got = collect(sub, 3);
      await sub.subscribeAsync('#', { qos: 1 });
      assert.deepEqual((await got).map((x) => x.topic).sort(), ['r/a', 'r/b/c', 's/a'], 'served from memory after the restart');
      await sub.endAsync();
    },
  );

  acrossRestart(
    'QoS 2 outbound across a restart: past PUBREC only PUBREL comes again, never the message',
    async (tb) => {
      const raw = await RawClient.tcp(tb.port, 5);
      await raw.connect('suite-q2', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x2/#', qos: 2 }] });
      await raw.next('suback');
      const pub = await client(tb);
      await pub.publishAsync('x2/a', 'once', { qos: 2 });
      await pub.publishAsync('x2/b', 'twice?', { qos: 2 });
      const p1 = (await raw.next('publish')) as { messageId: number };
      const p2 = (await raw.next('publish')) as { messageId: number };
      raw.send({ cmd: 'pubrec', messageId: p1.messageId });
      assert.equal(((await raw.next('pubrel')) as { messageId: number }).messageId, p1.messageId);
      await pub.endAsync();
      raw.end();
      await sleep(100);
      return { p1, p2 };
    },
    async (tb, { p1, p2 }) => {
      const again = await RawClient.tcp(tb.port, 5);
      await again.connect('suite-q2', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      const seen: string[] = [];
      for (let i = 0; i < 2; i++) {
        const p = (await again.next()) as { cmd: string; messageId: number; payload?: Buffer; dup?: boolean };
        seen.push(p.cmd === 'publish' ? `publish ${p.payload?.toString()} ${p.messageId === p2.messageId} dup=${p.dup}` : `${p.cmd} ${p.messageId === p1.messageId}`);
      }
      assert.deepEqual(seen.sort(), ['publish twice? true dup=true', 'pubrel true'].sort());
      again.send({ cmd: 'pubcomp', messageId: p1.messageId });
      again.send({ cmd: 'pubrec', messageId: p2.messageId });
      assert.equal(((await again.next('pubrel')) as { messageId: number }).messageId, p2.messageId);
      again.send({ cmd: 'pubcomp', messageId: p2.messageId });
      assert.equal(await again.next('publish', 300).catch(() => null), null, 'nothing more');
      again.end();
    },
  );

  acrossRestart(
    'QoS 2 inbound across a restart: a PUBLISH sent again after PUBREC is not delivered twice',
    async (tb) => {
      const sub = await client(tb, persistent(5, 'suite-in2-sub'));
      await sub.subscribeAsync('in2/#', { qos: 2 });
      await sub.endAsync();
      const raw = await RawClient.tcp(tb.port, 4);
      await raw.connect('suite-in2-pub', { clean: false });
      raw.send({ cmd: 'publish', topic: 'in2/x', payload: Buffer.from('exactly once'), qos: 2, messageId: 7, retain: false, dup: false });
      assert.equal(((await raw.next('pubrec')) as { messageId: number }).messageId, 7);
      raw.end();
      await sleep(50);
    },
    async (tb) => {
      const again = await RawClient.tcp(tb.port, 4);
      await again.connect('suite-in2-pub', { clean: false });
      again.send({ cmd: 'publish', topic: 'in2/x', payload: Buffer.from('exactly once'), qos: 2, messageId: 7, retain: false, dup: true });
      assert.equal(((await again.next('pubrec')) as { messageId: number }).messageId, 7);
      again.send({ cmd: 'pubrel', messageId: 7 });
      assert.equal(((await again.next('pubcomp')) as { messageId: number }).messageId, 7);
      const back = unconnected(tb, { ...persistent(5, 'suite-in2-sub'), clean: false });
      const got = collect(back, 1);
      back.connect();
      assert.equal((await got)[0]?.payload.toString(), 'exactly once');
      assert.deepEqual(await quiet(back, 300), [], 'delivered once');
      await back.endAsync();
      again.end();
    },
  );

  acrossRestart(
    'a retained message sent on subscribe and not acknowledged is sent again after a restart',
    async (tb) => {
      const { raw } = await retainedOnSubscribe(tb, 'suite-ret', 'ret/a', 'kept', 1);
      await sleep(100); // never acknowledged
      raw.end();
      await sleep(100);
    },
    async (tb) => {
      const again = await RawClient.tcp(tb.port, 5);
      await again.connect('suite-ret', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      const p = (await again.next('publish')) as { payload: Buffer; retain: boolean; messageId: number; dup: boolean };
      assert.equal(p.payload.toString(), 'kept');
      assert.equal(p.retain, true);
      assert.equal(p.dup, true, 'resent: DUP set');
      assert.equal(p.messageId, 1, 'under the packet id it was sent with');
      again.send({ cmd: 'puback', messageId: p.messageId });
      assert.equal(await again.next('publish', 300).catch(() => null), null, 'once');
      again.end();
    },
  );

  acrossRestart(
    'a retained QoS 2 message sent on subscribe whose PUBREC arrived: after a restart only its PUBREL is sent again, never the message',
    async (tb) => {
      const { raw, p } = await retainedOnSubscribe(tb, 'suite-ret2', 'ret2/a', 'once', 2);
      raw.send({ cmd: 'pubrec', messageId: p.messageId }); // the client has it (delivered to its application)
      const rel = (await raw.next('pubrel')) as { messageId: number };
      assert.equal(rel.messageId, p.messageId);
      raw.end(); // gone before its PUBCOMP
      await sleep(100);
      return p.messageId;
    },
    async (tb, id) => {
      const again = await RawClient.tcp(tb.port, 5);
      await again.connect('suite-ret2', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      const rel = (await again.next('pubrel')) as { messageId: number };
      assert.equal(rel.messageId, id, 'the PUBREL again, under the same packet id');
      again.send({ cmd: 'pubcomp', messageId: id });
      assert.equal(await again.next('publish', 300).catch(() => null), null, 'the message is not sent again: the client has it');
      again.end();
    },
  );

  acrossRestart(
    'Clean Start and expiry remove the stored session: nothing comes back after a restart',
    async (tb) => {
      const a = await client(tb, persistent(5, 'suite-gone'));
      await a.subscribeAsync('gone/#', { qos: 1 });
      await a.endAsync();
      const b = await client(tb, persistent(5, 'suite-short', 1));
      await b.subscribeAsync('gone/#', { qos: 1 });
      await b.endAsync();
      const pub = await client(tb);
      await pub.publishAsync('gone/1', 'x', { qos: 1 });
      await pub.endAsync();
      const fresh = await client(tb, { protocolVersion: 5, clientId: 'suite-gone', clean: true }); // Clean Start, expiry 0
      await fresh.endAsync();
      await sleep(1500); // suite-short expires
      assert.deepEqual(await tb.broker.store!.messages.getSessionMessages('suite-gone', 10), []);
      assert.deepEqual(await tb.broker.store!.messages.getSessionMessages('suite-short', 10), []);
    },
    async (tb) => {
      assert.equal(tb.broker.sessions.get('suite-gone'), undefined);
      assert.equal(tb.broker.sessions.get('suite-short'), undefined);
    },
  );

  withBroker('Clean Start replacing a persistent session with another: the registry holds the new one while it is connected', async (tb) => {
    const old = await client(tb, persistent(4, 'suite-replaced'));
    await old.subscribeAsync('old/#', { qos: 1 });
    await old.endAsync();
    // Deletes the old session and puts the new one at once; it stays connected, so nothing
    // written at its disconnect can mend the registry (a kill -9 now must find the new one).
    const fresh = await client(tb, { ...persistent(5, 'suite-replaced'), clean: true });
    await fresh.subscribeAsync('new/#', { qos: 1 });
    await sleep(100);
    const stored = await storedSessions(tb);
    assert.deepEqual(stored.find((x) => x.clientId === 'suite-replaced')?.subscriptions.map((x) => x.filter), ['new/#']);
    await fresh.endAsync();
  });

  withBroker('a will published as a Clean Start takes the session over reaches the old session only: never the new one it is replaced by', async (tb) => {
    // The old connection's will matches its own session's subscription: stored for it in the
    // turn that also deletes that session; the new session, under the same client id, must not
    // find it in its queue.
    const old = await RawClient.tcp(tb.port, 4);
    await old.connect('suite-tk', { clean: false, will: { topic: 'tk/x', payload: Buffer.from('will'), qos: 2, retain: false } });
    old.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'tk/+', qos: 2 }] });
    await old.next('suback');
    const fresh = await RawClient.tcp(tb.port, 5);
    const ack = (await fresh.connect('suite-tk', { clean: true, properties: { sessionExpiryInterval: 3600 } })) as { sessionPresent: boolean };
    assert.equal(ack.sessionPresent, false);
    await old.closedPromise; // taken over: its will is published
    fresh.end();
    await sleep(200);
    const again = await RawClient.tcp(tb.port, 5);
    const back = (await again.connect('suite-tk', { clean: false, properties: { sessionExpiryInterval: 3600 } })) as { sessionPresent: boolean };
    assert.equal(back.sessionPresent, true);
    assert.equal(await again.next('publish', 400).catch(() => null), null, 'the new session subscribed to nothing: nothing is delivered to it');
    again.end();
  });

  const limits = { 'mqtt.max_queued_messages': 3, 'mqtt.queue_overflow': 'drop_newest' };
  withBroker('queue limits: drop_newest keeps the first max_queued_messages of an offline session', async (tb) => {
    const sub = await client(tb, persistent(5, 'suite-limit'));
    await sub.subscribeAsync('lim/#', { qos: 1 });
    await sub.endAsync();
    const pub = await client(tb);
    for (let i = 0; i < 6; i++) await pub.publishAsync(`lim/${i}`, `l${i}`, { qos: 1 });
    await pub.endAsync();
    const back = unconnected(tb, { ...persistent(5, 'suite-limit'), clean: false });
    const got = collect(back, 3);
    back.connect();
    assert.deepEqual((await got).map((m) => m.payload.toString()), ['l0', 'l1', 'l2']);
    assert.deepEqual(await quiet(back, 300), []);
    assert.equal(tb.broker.metrics.dropReasons.queueFull, 3);
    await back.endAsync();
  }, limits);

  withBroker(
    'queue limits: drop_oldest keeps the newest max_queued_messages of an offline session, and frees what it dropped',
    async (tb) => {
      const sub = await client(tb, persistent(5, 'suite-oldest'));
      await sub.subscribeAsync('old/#', { qos: 1 });
      await sub.endAsync();
      const pub = await client(tb);
      for (let i = 0; i < 6; i++) await pub.publishAsync(`old/${i}`, `o${i}`, { qos: 1 });
      await pub.endAsync();
      const back = unconnected(tb, { ...persistent(5, 'suite-oldest'), clean: false });
      const got = collect(back, 3);
      back.connect();
      assert.deepEqual((await got).map((m) => m.payload.toString()), ['o3', 'o4', 'o5']);
      assert.deepEqual(await quiet(back, 300), []);
      assert.equal(tb.broker.metrics.dropReasons.queueFull, 3);
      await sleep(100);
      assert.deepEqual(await tb.broker.store!.messages.getSessionMessages('suite-oldest', 10), [], 'nothing left waiting');
      await back.endAsync();
    },
    { 'mqtt.max_queued_messages': 3, 'mqtt.queue_overflow': 'drop_oldest' },
  );

  withBroker(
    'queue limits: overflow disconnect closes a connected v5 client with 0x97 once its queue is full',
    async (tb) => {
      const raw = await RawClient.tcp(tb.port, 5);
      await raw.connect('suite-quota', { clean: false, properties: { sessionExpiryInterval: 3600, receiveMaximum: 1 } });
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'quota/#', qos: 1 }] });
      await raw.next('suback');
      const pub = await client(tb);
      for (let i = 0; i < 5; i++) await pub.publishAsync(`quota/${i}`, `q${i}`, { qos: 1 }); // never acknowledged by the subscriber
      const seen: { cmd: string }[] = [];
      for (let p = await raw.next(undefined, 3000); p !== null; p = await raw.next(undefined, 3000)) seen.push(p); // up to the close
      const d = seen.find((x) => x.cmd === 'disconnect') as { reasonCode?: number } | undefined;
      assert.equal(d?.reasonCode, 0x97, `DISCONNECT Quota exceeded (got ${seen.map((x) => x.cmd).join(',')})`);
      await pub.endAsync();
    },
    { 'mqtt.max_queued_messages': 2, 'mqtt.queue_overflow': 'disconnect' },
  );

  acrossRestart(
    'a will waiting out its delay is kept across a restart and published once',
    async (tb) => {
      const sub = await client(tb, persistent(5, 'suite-will-sub'));
      await sub.subscribeAsync('will/#', { qos: 1 });
      await sub.endAsync();
      const w = await client(tb, { ...persistent(5, 'suite-will'), will: { topic: 'will/x', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 1 } } });
      w.stream.destroy();
      await sleep(100);
    },
    async (tb) => {
      const back = unconnected(tb, { ...persistent(5, 'suite-will-sub'), clean: false });
      const got = collect(back, 1, 5000);
      back.connect();
      assert.equal((await got)[0]?.payload.toString(), 'gone');
      assert.deepEqual(await quiet(back, 300), []);
      await back.endAsync();
    },
  );

  withBroker('shared subscriptions: each message to exactly one persistent member', async (tb) => {
    const m1 = await client(tb, persistent(5, 'suite-sh1'));
    await m1.subscribeAsync('$share/g/sh/#', { qos: 1 });
    const m2 = await client(tb, persistent(5, 'suite-sh2'));
    await m2.subscribeAsync('$share/g/sh/#', { qos: 1 });
    const got: string[] = [];
    m1.on('message', (_t, p) => got.push(p.toString()));
    m2.on('message', (_t, p) => got.push(p.toString()));
    const pub = await client(tb);
    for (let i = 0; i < 10; i++) await pub.publishAsync(`sh/${i}`, `s${i}`, { qos: 1 });
    await sleep(200);
    assert.deepEqual(got.sort(), Array.from({ length: 10 }, (_, i) => `s${i}`).sort());
    await Promise.all([m1.endAsync(), m2.endAsync(), pub.endAsync()]);
  });
}

/**
 * A broker process on the registry `env` configures, four publishers each keeping 50 QoS 1
 * messages in flight to a persistent session's topics, kill -9 after 1.5 s, a restart on the same
 * registry: the acknowledged messages the subscriber then does not get are `lost`.
 */
export async function killUnderLoad(env: NodeJS.ProcessEnv): Promise<{ acked: number; lost: string[] }> {
  const tmp = tempDir();
  const broker = new BrokerProcess(await freePort(), tmp.dir, [], env);
  const pubs: MqttClient[] = [];
  try {
    await broker.start();
    const sub = await client(broker.url, persistent(5, 'k9-sub'));
    await sub.subscribeAsync('k9/#', { qos: 1 });
    await sub.endAsync();
    const acked = new Set<string>();
    let stop = false;
    const load = async (p: number): Promise<void> => {
      const pub = await client(broker.url, { protocolVersion: 5, clientId: `k9-pub-${p}` });
      pubs.push(pub);
      pub.on('error', () => undefined);
      let i = 0;
      const one = async (): Promise<void> => {
        while (!stop) {
          const payload = `${p}-${i++}`;
          try {
            await pub.publishAsync(`k9/${p}`, payload, { qos: 1 });
            acked.add(payload);
          } catch {
            return; // the broker died with it unacknowledged: it may or may not be stored
          }
        }
      };
      await Promise.all(Array.from({ length: 50 }, one));
    };
    const loads = [0, 1, 2, 3].map(load);
    await sleep(1500);
    await broker.kill9();
    stop = true;
    for (const p of pubs) p.end(true);
    await Promise.allSettled(loads);

    await broker.start();
    const back = unconnected(broker.url, { ...persistent(5, 'k9-sub'), clean: false });
    const got = new Set<string>();
    back.on('message', (_t, payload) => got.add(payload.toString()));
    back.connect();
    for (let last = -1; got.size !== last; ) {
      last = got.size;
      await sleep(1000);
    }
    await back.endAsync();
    return { acked: acked.size, lost: [...acked].filter((m) => !got.has(m)) };
  } finally {
    for (const p of pubs) p.end(true);
    await broker.stop();
    tmp.remove();
  }
}

/**
 * A persistent subscriber with one message waiting comes back and leaves again at once, before
 * the first read of its queue (from the registry behind `proxy`, answering 40 ms late)
 * is back; then it comes back once more. The message must reach it on one of the two visits.
 * Before, the read's answer woke only the connection it was made for, and the next one waited
 * for it for ever (found by the durability checker, seed 5500117). Returns the payloads the
 * two visits got.
 */
export async function backlogAfterShortVisit(env: NodeJS.ProcessEnv, proxy: SlowReplies): Promise<string[]> {
  return onBrokerProcess(env, async (broker) => {
  const sub = await client(broker.url, persistent(4, 'sv-sub'));
  await sub.subscribeAsync('sv/#', { qos: 1 });
  await sub.endAsync();
  const pub = await client(broker.url, { protocolVersion: 5, clientId: 'sv-pub' });
  await pub.publishAsync('sv/x', 'waiting', { qos: 1 });
  await pub.endAsync();
  proxy.replyDelayMs = 40;
  const got: string[] = [];
  const visit = async (then: (c: MqttClient) => Promise<void>): Promise<void> => {
    const c = unconnected(broker.url, persistent(4, 'sv-sub'));
    c.on('message', (_t, p) => got.push(p.toString()));
    await new Promise<void>((resolve) => {
      c.once('connect', () => resolve());
      c.connect();
    });
    await then(c);
    await c.endAsync();
  };
  await visit(async () => undefined);
  await visit(async () => {
    for (let waited = 0; got.length === 0 && waited < 3000; waited += 50) await sleep(50);
  });
  proxy.replyDelayMs = 0;
  return got;
  });
}

/**
 * A persistent QoS 0 subscriber comes back to 10 messages stored while it was away and reads
 * them from the registry (behind `proxy`, answering 300 ms late); 10 more published right after
 * its CONNACK must come after them ([MQTT-4.6.0-6], same topic and QoS). Before, they were
 * written to it at once and overtook its backlog (found by the durability checker on a slow SQL
 * registry, seed 5200020). Returns the payloads in the order received.
 */
export async function qos0OrderWhileReading(env: NodeJS.ProcessEnv, proxy: SlowReplies): Promise<string[]> {
  return onBrokerProcess(env, async (broker) => {
  const sub = await client(broker.url, persistent(5, 'ord-sub'));
  await sub.subscribeAsync('ord/x', { qos: 0 });
  await sub.endAsync();
  const pub = await client(broker.url, { protocolVersion: 5, clientId: 'ord-pub' });
  for (let i = 0; i < 10; i++) await pub.publishAsync('ord/x', `m${i}`, { qos: 1 });
  proxy.replyDelayMs = 300;
  const back = unconnected(broker.url, { ...persistent(5, 'ord-sub'), clean: false });
  const got: string[] = [];
  back.on('message', (_t, p) => got.push(p.toString()));
  const connected = new Promise<void>((resolve) => back.once('connect', () => resolve()));
  back.connect();
  await connected;
  for (let i = 10; i < 20; i++) pub.publish('ord/x', `m${i}`, { qos: 0 });
  for (let waited = 0; got.length < 20 && waited < 8000; waited += 100) await sleep(100);
  proxy.replyDelayMs = 0;
  await back.endAsync();
  await pub.endAsync();
  return got;
  });
}

/** A broker process on `env` (its own temp data directory), started for `fn` and stopped after it. */
async function onBrokerProcess<T>(env: NodeJS.ProcessEnv, fn: (broker: BrokerProcess) => Promise<T>): Promise<T> {
  const tmp = tempDir();
  const broker = new BrokerProcess(await freePort(), tmp.dir, [], env);
  try {
    await broker.start();
    return await fn(broker);
  } finally {
    await broker.stop();
    tmp.remove();
  }
}

/**
 * A graceful stop (SIGTERM) right as a new persistent session got its CONNACK, the registry
 * (behind `proxy`) answering 40 ms late: the stop must wait for the session's record (and the
 * one its disconnect writes), so the restart resumes it. Found by the durability checker with
 * `--slow-registry 40` (seed 5100003): ioredis sends the next auto-pipelined batch only once the
 * previous one is answered, and the QUIT of the stop went before it — the session was gone.
 * Returns whether the restart's CONNACK said session present.
 */
export async function sessionKeptAtStop(env: NodeJS.ProcessEnv, proxy: SlowReplies): Promise<boolean> {
  return onBrokerProcess(env, async (broker) => {
  proxy.replyDelayMs = 40;
  const parked = await client(broker.url, { ...persistent(4, 'ks-parked'), clean: false });
  await parked.subscribeAsync('ks/+', { qos: 2 });
  await parked.endAsync();
  const raw = await RawClient.tcp(broker.port, 5);
  await raw.connect('ks-new', { clean: false, properties: { sessionExpiryInterval: 30 } });
  await broker.stop();
  raw.end();
  proxy.replyDelayMs = 0;
  await broker.start();
  const back = await RawClient.tcp(broker.port, 5);
  const ack = (await back.connect('ks-new', { clean: false, properties: { sessionExpiryInterval: 30 } })) as { sessionPresent: boolean } | null;
  back.end();
  return ack?.sessionPresent === true;
  });
}

/**
 * A persistent client's QoS 2 will, stored for an offline persistent subscriber, then kill -9:
 * the registry (behind `proxy`) answers the will's write late, and the broker is killed 150 ms
 * after the last of `marks` went to it (the will's body; for SQL then the COMMIT after it) — the
 * will stored, its answer not back. The restart must not publish the will again: before the
 * record was cleared with the will's save (QueueRegistry.turnAtomic), it was cleared only once
 * that answer came, and the subscriber got the will twice. Returns how many times it got it.
 */
export async function willOnceAcrossKill(env: NodeJS.ProcessEnv, proxy: SlowReplies, marks: (payload: Buffer) => string[]): Promise<number> {
  const payload = Buffer.from('will-body-3f9c2e');
  return onBrokerProcess(env, async (broker) => {
  const sub = await client(broker.url, persistent(5, 'wk-sub'));
  await sub.subscribeAsync('wk/#', { qos: 2 });
  await sub.endAsync();
  const dying = await client(broker.url, { ...persistent(5, 'wk-dying'), will: { topic: 'wk/x', payload, qos: 2, retain: false } });
  await sleep(300);
  proxy.replyDelayMs = 400;
  const [first, ...rest] = marks(payload);
  let sent = proxy.sent(first as string);
  (dying as unknown as { stream: { destroy(): void } }).stream.destroy(); // no DISCONNECT: the will is due
  await sent;
  for (const m of rest) {
    sent = proxy.sent(m);
    await sent;
  }
  await sleep(150);
  await broker.kill9();
  dying.end(true);
  proxy.replyDelayMs = 0;
  await broker.start();
  const back = unconnected(broker.url, { ...persistent(5, 'wk-sub'), clean: false });
  const got: string[] = [];
  back.on('message', (topic, p) => got.push(`${topic} ${p.toString()}`));
  back.connect();
  await quiet(back, 1500);
  await back.endAsync();
  for (const g of got) assert.equal(g, `wk/x ${payload.toString()}`);
  return got.length;
  });
}

/**
 * The registry's server is lost while a broker runs on it (`server.kill`), then comes back
 * (`server.start`): a v5 publish for a persistent session gets PUBACK 0x80, a 3.1.1 one is closed
 * without PUBACK, an in-memory session keeps being served, and once the server is back publishes
 * are acknowledged again and the persistent session gets `expected` ('before' when the server
 * kept what it had — `settle` makes it write that out first — then 'after'), nothing refused, nothing twice.
 */
export async function lostMidRun(tb: TestBroker, server: { kill(): Promise<void>; start(): Promise<void> }, expected: string[], settle: () => Promise<void> = async () => undefined): Promise<void> {
  const durableSub = await client(tb, persistent(5, 'lost-sub'));
  await durableSub.subscribeAsync('keep/#', { qos: 1 });
  await durableSub.endAsync();
  const live = await client(tb, { protocolVersion: 5, clientId: 'lost-live' }); // in memory only
  await live.subscribeAsync('live/#', { qos: 1 });
  const v5 = await client(tb, { protocolVersion: 5, clientId: 'lost-pub5' });
  await v5.publishAsync('keep/before', 'before', { qos: 1 });
  await settle();

  await server.kill();
  await sleep(200);
  await assert.rejects(v5.publishAsync('keep/during', 'during', { qos: 1 }), (e: Error & { code?: number }) => {
    assert.equal(e.code, 0x80, e.message);
    return true;
  });
  const v3 = await client(tb, { protocolVersion: 4, clientId: 'lost-pub3' });
  const closed = new Promise<void>((resolve) => v3.once('close', () => resolve()));
  let v3acked = false;
  v3.publish('keep/during3', 'during3', { qos: 1 }, (err) => {
    if (!err) v3acked = true;
  });
  await closed;
  assert.equal(v3acked, false, '3.1.1 publisher disconnected without PUBACK');
  const got = collect(live, 1);
  await v5.publishAsync('live/x', 'served', { qos: 1 });
  assert.equal((await got)[0]?.payload.toString(), 'served', 'in-memory sessions keep being served');
  assert.ok(tb.broker.metrics.storeErrors >= 2);

  await server.start();
  let ok = false;
  for (let i = 0; i < 50 && !ok; i++) {
    await sleep(200);
    ok = await v5.publishAsync('keep/after', 'after', { qos: 1 }).then(
      () => true,
      () => false,
    );
  }
  assert.ok(ok, 'publishes to persistent sessions are acknowledged again once the server is back');
  const back = unconnected(tb, { ...persistent(5, 'lost-sub'), clean: false });
  const seen: string[] = [];
  back.on('message', (_t, p) => seen.push(p.toString()));
  back.connect();
  await sleep(1500);
  assert.deepEqual(seen, expected, 'nothing refused, nothing twice');
  await Promise.all([back.endAsync(), live.endAsync(), v5.endAsync()]);
}
