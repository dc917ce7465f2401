/**
 * Protocol flows over in-memory duplex pairs wired straight into the broker (no ports),
 * checked packet by packet. Test names carry the normative statement they check.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IConnackPacket, IPublishPacket, ISubackPacket, IUnsubackPacket, Packet } from 'mqtt-packet';
import { createBroker, type Broker } from '../../src/index.js';
import { RawClient } from '../helpers.js';

let broker: Broker;
before(() => {
  broker = createBroker({ config: { 'log.level': 'silent' } });
});
after(() => broker.close());

async function connected(id: string, version: 3 | 4 | 5 = 4, extra: Record<string, unknown> = {}): Promise<RawClient> {
  const c = RawClient.memory(broker, version);
  const ack = (await c.connect(id, extra)) as IConnackPacket;
  assert.equal(ack.cmd, 'connack');
  assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
  return c;
}

async function subscribe(c: RawClient, topic: string, qos: 0 | 1 | 2, messageId = 1): Promise<ISubackPacket> {
  c.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
  return (await c.next('suback')) as ISubackPacket;
}

describe('CONNECT / CONNACK', () => {
  test('[MQTT-3.2.2-2] v3.1.1 CONNACK for a new session has sessionPresent 0 and return code 0', async () => {
    const c = RawClient.memory(broker, 4);
    const ack = (await c.connect('cc-1')) as IConnackPacket;
    assert.equal(ack.sessionPresent, false);
    assert.equal(ack.returnCode, 0);
    c.end();
  });

  test('MQTT 3.1 (MQIsdp) clients are accepted', async () => {
    const c = await connected('v31-client', 3);
    c.end();
  });

  test('[MQTT-3.1.3-8] MQTT 3.1 with an empty client id is refused with return code 2', async () => {
    const c = RawClient.memory(broker, 3);
    // mqtt-packet will not encode this CONNECT, so write it by hand: "MQIsdp", level 3, clean, keepalive 60, id "".
    c.sendRaw([0x10, 14, 0, 6, ...Buffer.from('MQIsdp'), 3, 0x02, 0, 60, 0, 0]);
    const ack = (await c.next('connack')) as IConnackPacket;
    assert.equal(ack.returnCode, 2);
    await c.waitClosed();
  });

  test('v5 CONNACK advertises the server limits', async () => {
    const c = RawClient.memory(broker, 5);
    const ack = (await c.connect('limits')) as IConnackPacket;
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.properties?.maximumPacketSize, broker.config['mqtt.max_packet_size']);
    assert.equal(ack.properties?.receiveMaximum, broker.config['mqtt.receive_maximum']);
    assert.equal(ack.properties?.topicAliasMaximum, broker.config['mqtt.max_topic_alias']);
    assert.equal(ack.properties?.subscriptionIdentifiersAvailable, true);
    c.end();
  });

  test('[MQTT-4.12.0-1] an unsupported authentication method is refused with 0x8C', async () => {
    const c = RawClient.memory(broker, 5);
    const ack = (await c.connect('auth-m', { properties: { authenticationMethod: 'SCRAM-SHA-1' } })) as IConnackPacket;
    assert.equal(ack.reasonCode, 0x8c);
    await c.waitClosed();
  });
});

describe('QoS flows', () => {
  test('[MQTT-4.3.2-2] QoS 1 inbound is acknowledged with PUBACK carrying the packet id', async () => {
    const c = await connected('q1-in');
    c.send({ cmd: 'publish', topic: 'q1/in', payload: Buffer.from('x'), qos: 1, dup: false, retain: false, messageId: 42 });
    const ack = await c.next('puback');
    assert.equal(ack?.messageId, 42);
    c.end();
  });

  test('[MQTT-4.3.3-9] QoS 2 inbound: PUBREC, a duplicate PUBLISH is not delivered twice, PUBREL → PUBCOMP', async () => {
    const sub = await connected('q2-sub');
    await subscribe(sub, 'q2/x', 2);
    const pub = await connected('q2-pub');
    const publish: Packet = { cmd: 'publish', topic: 'q2/x', payload: Buffer.from('once'), qos: 2, dup: false, retain: false, messageId: 7 };
    pub.send(publish);
    assert.equal((await pub.next('pubrec'))?.messageId, 7);
    pub.send({ ...publish, dup: true });
    assert.equal((await pub.next('pubrec'))?.messageId, 7);
    pub.send({ cmd: 'pubrel', messageId: 7 });
    assert.equal((await pub.next('pubcomp'))?.messageId, 7);

    // Outbound QoS 2 to the subscriber: exactly one PUBLISH, then PUBREL after our PUBREC.
    const m = (await sub.next('publish')) as IPublishPacket;
    assert.equal(m.payload.toString(), 'once');
    assert.equal(m.qos, 2);
    sub.send({ cmd: 'pubrec', messageId: m.messageId as number });
    assert.equal((await sub.next('pubrel'))?.messageId, m.messageId);
    sub.send({ cmd: 'pubcomp', messageId: m.messageId as number });
    sub.send({ cmd: 'pingreq' });
    // Nothing else (no second copy) arrives before the PINGRESP.
    assert.equal((await sub.next())?.cmd, 'pingresp');
    sub.end();
    pub.end();
  });

  test('[MQTT-2.2.1-3] outbound packet ids are non-zero and distinct while in flight', async () => {
    const sub = await connected('ids-sub');
    await subscribe(sub, 'ids/#', 1);
    const pub = await connected('ids-pub');
    for (let i = 0; i < 10; i++) pub.send({ cmd: 'publish', topic: `ids/${i}`, payload: Buffer.from(String(i)), qos: 1, dup: false, retain: false, messageId: i + 1 });
    const ids = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const m = (await sub.next('publish')) as IPublishPacket;
      assert.ok((m.messageId ?? 0) > 0);
      ids.add(m.messageId as number);
    }
    assert.equal(ids.size, 10);
    sub.end();
    pub.end();
  });

  test('[MQTT-4.4.0-1] on resume, unacknowledged PUBLISH is resent with DUP=1 and the same packet id, then PUBREL', async () => {
    const props = { clean: false };
    const s1 = await connected('redeliver', 4, props);
    await subscribe(s1, 'rd/#', 2);
    const pub = await connected('rd-pub');
    pub.send({ cmd: 'publish', topic: 'rd/1', payload: Buffer.from('a'), qos: 1, dup: false, retain: false, messageId: 1 });
    pub.send({ cmd: 'publish', topic: 'rd/2', payload: Buffer.from('b'), qos: 2, dup: false, retain: false, messageId: 2 });
    const m1 = (await s1.next('publish')) as IPublishPacket;
    const m2 = (await s1.next('publish')) as IPublishPacket;
    s1.send({ cmd: 'pubrec', messageId: m2.messageId as number }); // m2 moves to the PUBREL phase
    await s1.next('pubrel');
    s1.end(); // drop without acking m1 or completing m2
    await new Promise((r) => setTimeout(r, 50));

    const s2 = RawClient.memory(broker, 4);
    const ack = (await s2.connect('redeliver', props)) as IConnackPacket;
    assert.equal(ack.sessionPresent, true);
    const again = (await s2.next('publish')) as IPublishPacket;
    assert.equal(again.dup, true);
    assert.equal(again.messageId, m1.messageId);
    assert.equal(again.payload.toString(), 'a');
    const rel = await s2.next('pubrel');
    assert.equal(rel?.messageId, m2.messageId);
    s2.send({ cmd: 'puback', messageId: m1.messageId as number });
    s2.send({ cmd: 'pubcomp', messageId: m2.messageId as number });
    s2.send({ cmd: 'disconnect' });
    pub.end();
  });
});

describe('routing', () => {
  test('a subscription made after a topic was routed receives it; after unsubscribe it does not (route cache invalidation)', async () => {
    const pub = await connected('rc-pub');
    const early = await connected('rc-early');
    await subscribe(early, 'rc/+', 0);
    pub.send({ cmd: 'publish', topic: 'rc/x', payload: Buffer.from('1'), qos: 0, dup: false, retain: false });
    assert.equal(((await early.next('publish')) as IPublishPacket).payload.toString(), '1');
    const late = await connected('rc-late');
    await subscribe(late, 'rc/x', 0);
    pub.send({ cmd: 'publish', topic: 'rc/x', payload: Buffer.from('2'), qos: 0, dup: false, retain: false });
    assert.equal(((await late.next('publish')) as IPublishPacket).payload.toString(), '2');
    assert.equal(((await early.next('publish')) as IPublishPacket).payload.toString(), '2');
    late.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['rc/x'] });
    await late.next('unsuback');
    pub.send({ cmd: 'publish', topic: 'rc/x', payload: Buffer.from('3'), qos: 0, dup: false, retain: false });
    assert.equal(((await early.next('publish')) as IPublishPacket).payload.toString(), '3');
    await assert.rejects(late.next('publish', 150), /timed out/);
    // A shared group added later still takes turns between its members (the cache is bypassed).
    const m1 = await connected('rc-m1');
    const m2 = await connected('rc-m2');
    await subscribe(m1, '$share/g/rc/x', 0);
    await subscribe(m2, '$share/g/rc/x', 0);
    for (let i = 0; i < 4; i++) pub.send({ cmd: 'publish', topic: 'rc/x', payload: Buffer.from(`s${i}`), qos: 0, dup: false, retain: false });
    const a = [(await m1.next('publish')) as IPublishPacket, (await m1.next('publish')) as IPublishPacket];
    const b = [(await m2.next('publish')) as IPublishPacket, (await m2.next('publish')) as IPublishPacket];
    assert.deepEqual([...a, ...b].map((m) => m.payload.toString()).sort(), ['s0', 's1', 's2', 's3']);
    for (const c of [pub, early, late, m1, m2]) c.end();
  });
});

describe('offline queue limit', () => {
  for (const policy of ['drop_oldest', 'drop_newest'] as const) {
    test(`mqtt.queue_overflow = ${policy}: a full queue drops and counts`, async () => {
      const b = createBroker({ config: { 'log.level': 'silent', 'mqtt.max_queued_messages': 3, 'mqtt.queue_overflow': policy } });
      const s1 = RawClient.memory(b, 4);
      await s1.connect('q-sub', { clean: false });
      s1.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q/#', qos: 1 }] });
      await s1.next('suback');
      s1.send({ cmd: 'disconnect' });
      await s1.waitClosed();
      const pub = RawClient.memory(b, 4);
      await pub.connect('q-pub');
      for (let i = 0; i < 5; i++) {
        pub.send({ cmd: 'publish', topic: `q/${i}`, payload: Buffer.from(String(i)), qos: 1, dup: false, retain: false, messageId: i + 1 });
        await pub.next('puback');
      }
      assert.equal(b.metrics.messagesDropped, 2);
      const s2 = RawClient.memory(b, 4);
      await s2.connect('q-sub', { clean: false });
      const got = [];
      for (let i = 0; i < 3; i++) got.push(((await s2.next('publish')) as IPublishPacket).payload.toString());
      assert.deepEqual(got, policy === 'drop_oldest' ? ['2', '3', '4'] : ['0', '1', '2']);
      s2.end();
      pub.end();
      await b.close();
    });
  }
});

describe('Receive Maximum', () => {
  test('[MQTT-3.3.4-9] no more unacknowledged QoS 1/2 PUBLISH than the client Receive Maximum; acks free slots', async () => {
    const sub = RawClient.memory(broker, 5);
    await sub.connect('rm-sub', { properties: { receiveMaximum: 2 } });
    await subscribe(sub, 'rm/#', 1);
    const pub = await connected('rm-pub');
    for (let i = 1; i <= 5; i++) pub.send({ cmd: 'publish', topic: `rm/${i}`, payload: Buffer.from(String(i)), qos: 1, dup: false, retain: false, messageId: i });
    const first = [(await sub.next('publish')) as IPublishPacket, (await sub.next('publish')) as IPublishPacket];
    await assert.rejects(sub.next('publish', 150), /timed out/);
    for (const m of first) sub.send({ cmd: 'puback', messageId: m.messageId as number });
    const more = [(await sub.next('publish')) as IPublishPacket, (await sub.next('publish')) as IPublishPacket];
    assert.deepEqual([...first, ...more].map((m) => m.payload.toString()), ['1', '2', '3', '4']);
    await assert.rejects(sub.next('publish', 150), /timed out/);
    sub.end();
    pub.end();
  });
});

describe('SUBSCRIBE / UNSUBSCRIBE', () => {
  test('[MQTT-3.9.3-1] SUBACK has one code per filter, in order; a bad filter fails only its entry', async () => {
    const c = await connected('suback-order');
    c.send({ cmd: 'subscribe', messageId: 5, subscriptions: [{ topic: 'a/+', qos: 2 }, { topic: 'a/#/b', qos: 1 }, { topic: 'c', qos: 0 }] });
    const ack = (await c.next('suback')) as ISubackPacket;
    assert.equal(ack.messageId, 5);
    assert.deepEqual(ack.granted, [2, 0x80, 0]);
    c.end();
  });

  test('[MQTT-3.11.3-1] v5 UNSUBACK: 0x00 for a removed subscription, 0x11 when none existed', async () => {
    const c = await connected('unsuback', 5);
    await subscribe(c, 'u/x', 0);
    c.send({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['u/x', 'u/y'] });
    const ack = (await c.next('unsuback')) as IUnsubackPacket;
    assert.equal(ack.messageId, 9);
    assert.deepEqual(ack.granted, [0x00, 0x11]);
    c.end();
  });

  test('[MQTT-3.8.3-4] No Local on a shared subscription is a protocol error', async () => {
    const c = await connected('share-nl', 5);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/x', qos: 0, nl: true }] });
    const seen = await c.waitClosed();
    const d = seen.find((p) => p.cmd === 'disconnect');
    assert.equal(d?.cmd === 'disconnect' ? d.reasonCode : undefined, 0x82);
  });

  test('[MQTT-3.8.4-3] a repeated SUBSCRIBE replaces the subscription (new QoS applies)', async () => {
    const c = await connected('resub');
    await subscribe(c, 'rs/x', 0);
    const again = await subscribe(c, 'rs/x', 1, 2);
    assert.deepEqual(again.granted, [1]);
    const pub = await connected('rs-pub');
    pub.send({ cmd: 'publish', topic: 'rs/x', payload: Buffer.from('x'), qos: 1, dup: false, retain: false, messageId: 3 });
    const m = (await c.next('publish')) as IPublishPacket;
    assert.equal(m.qos, 1);
    c.end();
    pub.end();
  });
});

describe('hooks', () => {
  test('authenticate gate refuses with the right code: v5 0x86, v3.1.1 return code 4', async () => {
    const b = createBroker({ config: { 'log.level': 'silent' }, gates: { authenticate: async (_c, user, pw) => user === 'u' && pw?.toString() === 'p' } });
    const good = RawClient.memory(b, 5);
    assert.equal(((await good.connect('g', { username: 'u', password: Buffer.from('p') })) as IConnackPacket).reasonCode, 0);
    const bad5 = RawClient.memory(b, 5);
    assert.equal(((await bad5.connect('b5', { username: 'u', password: Buffer.from('x') })) as IConnackPacket).reasonCode, 0x86);
    const bad4 = RawClient.memory(b, 4);
    assert.equal(((await bad4.connect('b4', { username: 'u', password: Buffer.from('x') })) as IConnackPacket).returnCode, 4);
    good.end();
    await b.close();
  });

  test('packets sent while an async authenticate runs are processed after it, in order', async () => {
    const b = createBroker({ config: { 'log.level': 'silent' }, gates: { authenticate: () => new Promise((r) => setTimeout(() => r(true), 50)) } });
    const c = RawClient.memory(b, 4);
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'slow-auth', clean: true, keepalive: 0 });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'sa/x', qos: 1 }] });
    c.send({ cmd: 'publish', topic: 'sa/x', payload: Buffer.from('self'), qos: 1, dup: false, retain: false, messageId: 2 });
    assert.equal((await c.next())?.cmd, 'connack');
    assert.equal((await c.next())?.cmd, 'suback');
    const rest = [(await c.next())?.cmd, (await c.next())?.cmd].sort();
    assert.deepEqual(rest, ['puback', 'publish']);
    c.end();
    await b.close();
  });

  test('authorizePublish refusal: v5 PUBACK 0x87 and no delivery', async () => {
    const b = createBroker({ config: { 'log.level': 'silent' }, gates: { authorizePublish: (_c, m) => !m.topic.startsWith('secret/') } });
    const sub = RawClient.memory(b, 5);
    await sub.connect('sub');
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 1 }] });
    await sub.next('suback');
    const pub = RawClient.memory(b, 5);
    await pub.connect('pub');
    pub.send({ cmd: 'publish', topic: 'secret/x', payload: Buffer.from('x'), qos: 1, dup: false, retain: false, messageId: 1 });
    const ack = await pub.next('puback');
    assert.equal(ack?.cmd === 'puback' ? ack.reasonCode : undefined, 0x87);
    pub.send({ cmd: 'publish', topic: 'open/x', payload: Buffer.from('y'), qos: 1, dup: false, retain: false, messageId: 2 });
    const m = (await sub.next('publish')) as IPublishPacket;
    assert.equal(m.topic, 'open/x');
    sub.end();
    pub.end();
    await b.close();
  });

  test('a message published from a message.delivered hook reaches every subscriber, after the one being delivered', async () => {
    const b = createBroker({ config: { 'log.level': 'silent' } });
    b.on('message.delivered', (_id, m) => {
      if (m.topic === 'nest/a') b.publishMessage('nest/b', 'from-hook', { qos: 1 });
    });
    const subs = [RawClient.memory(b, 4), RawClient.memory(b, 4), RawClient.memory(b, 4)];
    for (const [i, s] of subs.entries()) {
      await s.connect(`nest-${i}`);
      s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'nest/#', qos: 1 }] });
      await s.next('suback');
    }
    const pub = RawClient.memory(b, 4);
    await pub.connect('nest-pub');
    pub.send({ cmd: 'publish', topic: 'nest/a', payload: Buffer.from('x'), qos: 1, dup: false, retain: false, messageId: 1 });
    for (const s of subs) {
      const got: string[] = [];
      for (let k = 0; k < 4; k++) {
        const m = (await s.next('publish')) as IPublishPacket;
        got.push(m.topic);
        s.send({ cmd: 'puback', messageId: m.messageId as number });
      }
      // nest/a first, then one nest/b per delivery of nest/a (three subscribers).
      assert.deepEqual(got, ['nest/a', 'nest/b', 'nest/b', 'nest/b']);
    }
    for (const s of [...subs, pub]) s.end();
    await b.close();
  });

  test('events: client.connected, session.subscribed, message.publish, message.acked, client.disconnected', async () => {
    const b = createBroker({ config: { 'log.level': 'silent' } });
    const seen: string[] = [];
    b.on('client.connected', (c) => seen.push(`connected:${c.clientId}`));
    b.on('session.subscribed', (c, f) => seen.push(`subscribed:${c.clientId}:${f}`));
    b.on('message.publish', (_c, m) => seen.push(`publish:${m.topic}`));
    b.on('message.acked', (id, m) => seen.push(`acked:${id}:${m.topic}`));
    b.on('client.disconnected', (c) => seen.push(`disconnected:${c.clientId}`));
    const c = RawClient.memory(b, 4);
    await c.connect('ev');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ev/x', qos: 1 }] });
    await c.next('suback');
    c.send({ cmd: 'publish', topic: 'ev/x', payload: Buffer.from('x'), qos: 1, dup: false, retain: false, messageId: 2 });
    const m = (await c.next('publish')) as IPublishPacket;
    c.send({ cmd: 'puback', messageId: m.messageId as number });
    c.send({ cmd: 'disconnect' });
    await c.waitClosed();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, ['connected:ev', 'subscribed:ev:ev/x', 'publish:ev/x', 'acked:ev:ev/x', 'disconnected:ev']);
    await b.close();
  });
});
