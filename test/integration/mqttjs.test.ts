/** End-to-end behaviour with MQTT.js clients over real loopback sockets, 3.1.1 and 5.0. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { client, collect, quiet, sleep, startBroker, type TestBroker, unconnected } from '../helpers.js';

for (const protocolVersion of [4, 5] as const) {
  const v = protocolVersion === 5 ? 'v5' : 'v3.1.1';
  describe(`MQTT.js ${v}`, () => {
    let tb: TestBroker;
    before(async () => {
      tb = await startBroker();
    });
    after(() => tb.close());

    for (const qos of [0, 1, 2] as const) {
      test(`publish/subscribe QoS ${qos} with wildcard filters`, async () => {
        const sub = await client(tb, { protocolVersion, clientId: `sub-q${qos}-${v}` });
        const pub = await client(tb, { protocolVersion, clientId: `pub-q${qos}-${v}` });
        await sub.subscribeAsync([`q${qos}/+/temp`, `q${qos}x/#`], { qos });
        const got = collect(sub, 3);
        await pub.publishAsync(`q${qos}/a/temp`, 'one', { qos });
        await pub.publishAsync(`q${qos}x/b/c`, 'two', { qos });
        await pub.publishAsync(`q${qos}x`, 'three', { qos }); // [MQTT-4.7.1-2] parent matches '#'
        await pub.publishAsync(`q${qos}/a/b/temp`, 'no', { qos });
        const msgs = await got;
        assert.deepEqual(msgs.map((m) => m.payload.toString()), ['one', 'two', 'three']);
        for (const m of msgs) assert.equal(m.packet.qos, qos);
        assert.deepEqual(await quiet(sub, 100), []);
        await Promise.all([sub.endAsync(), pub.endAsync()]);
      });
    }

    test('QoS is downgraded to the subscription QoS [MQTT-3.8.4-8]', async () => {
      const sub = await client(tb, { protocolVersion });
      await sub.subscribeAsync('down/q', { qos: 1 });
      const pub = await client(tb, { protocolVersion });
      const got = collect(sub, 1);
      await pub.publishAsync('down/q', 'x', { qos: 2 });
      assert.equal((await got)[0]?.packet.qos, 1);
      await Promise.all([sub.endAsync(), pub.endAsync()]);
    });

    test('[MQTT-3.3.1-9] live messages are forwarded with retain=0; retained ones on subscribe with retain=1 [MQTT-3.3.1-8]', async () => {
      const pub = await client(tb, { protocolVersion });
      const live = await client(tb, { protocolVersion });
      await live.subscribeAsync('ret/+', { qos: 1 });
      const liveGot = collect(live, 1);
      await pub.publishAsync('ret/a', 'kept', { qos: 1, retain: true });
      assert.equal((await liveGot)[0]?.packet.retain, false);
      const late = await client(tb, { protocolVersion });
      const lateGot = collect(late, 1);
      await late.subscribeAsync('ret/#', { qos: 1 });
      const [m] = await lateGot;
      assert.equal(m?.payload.toString(), 'kept');
      assert.equal(m?.packet.retain, true);
      // [MQTT-3.3.1-6] an empty retained payload clears the topic.
      await pub.publishAsync('ret/a', '', { qos: 1, retain: true });
      const later = await client(tb, { protocolVersion });
      await later.subscribeAsync('ret/#');
      assert.deepEqual(await quiet(later, 150), []);
      await Promise.all([pub.endAsync(), live.endAsync(), late.endAsync(), later.endAsync()]);
    });

    test('will message is published when the connection drops [MQTT-3.1.2-8]', async () => {
      const watcher = await client(tb, { protocolVersion });
      await watcher.subscribeAsync('will/+', { qos: 1 });
      const dying = await client(tb, { protocolVersion, will: { topic: 'will/x', payload: Buffer.from('gone'), qos: 1, retain: false } });
      const got = collect(watcher, 1);
      dying.stream.destroy();
      assert.equal((await got)[0]?.payload.toString(), 'gone');
      // A normal DISCONNECT discards the will [MQTT-3.14.4-3].
      const polite = await client(tb, { protocolVersion, will: { topic: 'will/y', payload: Buffer.from('no'), qos: 0, retain: false } });
      await polite.endAsync();
      assert.deepEqual(await quiet(watcher, 150), []);
      await watcher.endAsync();
    });

    test('[MQTT-3.1.4-3] session takeover closes the old connection', async () => {
      const first = await client(tb, { protocolVersion, clientId: `dup-${v}` });
      const closed = new Promise<number | undefined>((resolve) => {
        first.on('disconnect', (p) => resolve(p.reasonCode));
        first.on('close', () => resolve(undefined));
      });
      const second = await client(tb, { protocolVersion, clientId: `dup-${v}` });
      const rc = await closed;
      if (protocolVersion === 5) assert.equal(rc, 0x8e);
      assert.equal(second.connected, true);
      await second.endAsync();
      first.end(true);
    });

    test('persistent session resumes subscriptions and queued QoS 1/2 messages [MQTT-3.1.2-5]', async () => {
      const id = `persist-${v}`;
      const opts = protocolVersion === 5 ? { protocolVersion, clientId: id, clean: false, properties: { sessionExpiryInterval: 60 } } : { protocolVersion, clientId: id, clean: false };
      const s1 = await client(tb, opts);
      await s1.subscribeAsync('pers/#', { qos: 2 });
      await s1.endAsync();
      const pub = await client(tb, { protocolVersion });
      await pub.publishAsync('pers/1', 'a', { qos: 1 });
      await pub.publishAsync('pers/2', 'b', { qos: 2 });
      await pub.publishAsync('pers/3', 'c', { qos: 0 }); // stored for the offline session too (durable_sessions.qos0)
      const s2 = unconnected(tb, { ...opts });
      const got = collect(s2, 3);
      const connack = new Promise<boolean>((resolve) => s2.once('connect', (p) => resolve(p.sessionPresent)));
      s2.connect();
      assert.equal(await connack, true);
      // Order is kept per topic and QoS ([MQTT-4.6.0-6]); these are three topics, so compare as a set.
      const msgs = await got;
      assert.deepEqual(msgs.map((m) => `${m.payload}:${m.packet.qos}`).sort(), ['a:1', 'b:2', 'c:0']);
      await Promise.all([s2.endAsync(), pub.endAsync()]);
    });

    test('clean start discards the previous session [MQTT-3.1.2-4]', async () => {
      const id = `clean-${v}`;
      const opts = protocolVersion === 5 ? { protocolVersion, clientId: id, clean: false, properties: { sessionExpiryInterval: 60 } } : { protocolVersion, clientId: id, clean: false };
      const s1 = await client(tb, opts);
      await s1.subscribeAsync('clean/#', { qos: 1 });
      await s1.endAsync();
      const s2 = await client(tb, { protocolVersion, clientId: id, clean: true });
      const pub = await client(tb, { protocolVersion });
      await pub.publishAsync('clean/x', 'x', { qos: 1 });
      assert.deepEqual(await quiet(s2, 150), []);
      await Promise.all([s2.endAsync(), pub.endAsync()]);
    });

    test('$-topics are not matched by leading wildcards [MQTT-4.7.2-1]', async () => {
      const all = await client(tb, { protocolVersion });
      await all.subscribeAsync(['#', '+/status']);
      const sys = await client(tb, { protocolVersion });
      await sys.subscribeAsync('$SYS/#');
      const pub = await client(tb, { protocolVersion });
      const sysGot = collect(sys, 1);
      await pub.publishAsync('$SYS/status', 'x', { qos: 1 });
      assert.equal((await sysGot)[0]?.topic, '$SYS/status');
      assert.deepEqual(await quiet(all, 150), []);
      await Promise.all([all.endAsync(), sys.endAsync(), pub.endAsync()]);
    });

    test('shared subscription: each message goes to one member of the group', async () => {
      const a = await client(tb, { protocolVersion });
      const b = await client(tb, { protocolVersion });
      await a.subscribeAsync('$share/g1/shared/+', { qos: 1 });
      await b.subscribeAsync('$share/g1/shared/+', { qos: 1 });
      const counts = { a: 0, b: 0 };
      a.on('message', () => counts.a++);
      b.on('message', () => counts.b++);
      const pub = await client(tb, { protocolVersion });
      for (let i = 0; i < 20; i++) await pub.publishAsync(`shared/${i}`, 'x', { qos: 1 });
      await sleep(200);
      assert.equal(counts.a + counts.b, 20);
      assert.ok(counts.a > 0 && counts.b > 0, `both members served: ${JSON.stringify(counts)}`);
      await Promise.all([a.endAsync(), b.endAsync(), pub.endAsync()]);
    });

    test('overlapping subscriptions deliver one copy at the highest QoS', async () => {
      const sub = await client(tb, { protocolVersion });
      await sub.subscribeAsync({ 'ovl/#': { qos: 0 }, 'ovl/a': { qos: 1 } });
      const pub = await client(tb, { protocolVersion });
      const got = collect(sub, 1);
      await pub.publishAsync('ovl/a', 'x', { qos: 1 });
      assert.equal((await got)[0]?.packet.qos, 1);
      assert.deepEqual(await quiet(sub, 150), []);
      await Promise.all([sub.endAsync(), pub.endAsync()]);
    });

    test('unsubscribe stops delivery', async () => {
      const sub = await client(tb, { protocolVersion });
      await sub.subscribeAsync('unsub/x');
      await sub.unsubscribeAsync('unsub/x');
      const pub = await client(tb, { protocolVersion });
      await pub.publishAsync('unsub/x', 'x', { qos: 1 });
      assert.deepEqual(await quiet(sub, 150), []);
      await Promise.all([sub.endAsync(), pub.endAsync()]);
    });
  });
}

describe('MQTT.js v5 only', () => {
  let tb: TestBroker;
  before(async () => {
    tb = await startBroker();
  });
  after(() => tb.close());
  const protocolVersion = 5 as const;

  test('[MQTT-3.8.3-3] no-local: own messages are not delivered back', async () => {
    const c = await client(tb, { protocolVersion });
    await c.subscribeAsync('nl/x', { qos: 1, nl: true });
    await c.publishAsync('nl/x', 'mine', { qos: 1 });
    assert.deepEqual(await quiet(c, 150), []);
    await c.endAsync();
  });

  test('[MQTT-3.3.1-12] retain-as-published keeps the retain flag on live messages', async () => {
    const sub = await client(tb, { protocolVersion });
    await sub.subscribeAsync('rap/x', { qos: 1, rap: true, rh: 2 });
    const pub = await client(tb, { protocolVersion });
    const got = collect(sub, 1);
    await pub.publishAsync('rap/x', 'r', { qos: 1, retain: true });
    assert.equal((await got)[0]?.packet.retain, true);
    await pub.publishAsync('rap/x', '', { qos: 1, retain: true });
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('[MQTT-3.3.1-10] retain handling 1 sends retained only for a new subscription, 2 never', async () => {
    const pub = await client(tb, { protocolVersion });
    await pub.publishAsync('rh/x', 'r', { qos: 1, retain: true });
    const sub = await client(tb, { protocolVersion });
    const first = collect(sub, 1);
    await sub.subscribeAsync('rh/x', { qos: 1, rh: 1 });
    await first;
    await sub.subscribeAsync('rh/x', { qos: 1, rh: 1 });
    assert.deepEqual(await quiet(sub, 150), []);
    const never = await client(tb, { protocolVersion });
    await never.subscribeAsync('rh/x', { qos: 1, rh: 2 });
    assert.deepEqual(await quiet(never, 150), []);
    await pub.publishAsync('rh/x', '', { qos: 1, retain: true });
    await Promise.all([sub.endAsync(), pub.endAsync(), never.endAsync()]);
  });

  test('[MQTT-3.3.4-3] subscription identifiers are returned with matching messages', async () => {
    const sub = await client(tb, { protocolVersion });
    await sub.subscribeAsync('sid/+', { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await sub.subscribeAsync('sid/#', { qos: 1, properties: { subscriptionIdentifier: 9 } });
    const pub = await client(tb, { protocolVersion });
    const got = collect(sub, 1);
    await pub.publishAsync('sid/a', 'x', { qos: 1 });
    const ids = (await got)[0]?.packet.properties?.subscriptionIdentifier;
    assert.deepEqual([ids].flat().sort(), [7, 9]);
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('user properties, response topic, correlation data and content type pass through', async () => {
    const sub = await client(tb, { protocolVersion });
    await sub.subscribeAsync('props/x', { qos: 1 });
    const pub = await client(tb, { protocolVersion });
    const got = collect(sub, 1);
    await pub.publishAsync('props/x', 'x', {
      qos: 1,
      properties: { userProperties: { a: '1', b: ['2', '3'] }, responseTopic: 'reply/here', correlationData: Buffer.from('corr'), contentType: 'text/plain', payloadFormatIndicator: true },
    });
    const p = (await got)[0]?.packet.properties;
    assert.deepEqual({ ...p?.userProperties }, { a: '1', b: ['2', '3'] });
    assert.equal(p?.responseTopic, 'reply/here');
    assert.equal(p?.correlationData?.toString(), 'corr');
    assert.equal(p?.contentType, 'text/plain');
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('[MQTT-3.3.2-5] an expired message is not delivered; [MQTT-3.3.2-6] the remaining expiry is forwarded', async () => {
    const id = 'expiry-sub';
    const s1 = await client(tb, { protocolVersion, clientId: id, clean: false, properties: { sessionExpiryInterval: 60 } });
    await s1.subscribeAsync('exp/#', { qos: 1 });
    await s1.endAsync();
    const pub = await client(tb, { protocolVersion });
    await pub.publishAsync('exp/short', 'gone', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync('exp/long', 'kept', { qos: 1, properties: { messageExpiryInterval: 100 } });
    await sleep(1200);
    const s2 = unconnected(tb, { protocolVersion, clientId: id, clean: false, properties: { sessionExpiryInterval: 60 } });
    const got = collect(s2, 1);
    s2.connect();
    const [m] = await got;
    assert.equal(m?.payload.toString(), 'kept');
    const left = m?.packet.properties?.messageExpiryInterval ?? 0;
    assert.ok(left > 0 && left < 100, `remaining expiry ${left}`);
    assert.deepEqual(await quiet(s2, 150), []);
    await Promise.all([s2.endAsync(), pub.endAsync()]);
  });

  test('[MQTT-3.1.3-6] server-assigned client identifier', async () => {
    const c = unconnected(tb, { protocolVersion, clientId: '' });
    const connack = new Promise<string | undefined>((resolve) => c.once('connect', (p) => resolve(p.properties?.assignedClientIdentifier)));
    c.connect();
    const assigned = await connack;
    assert.match(assigned ?? '', /^strata-[0-9a-f]{16}$/);
    await c.endAsync();
  });

  test('inbound topic aliases are resolved', async () => {
    const sub = await client(tb, { protocolVersion });
    await sub.subscribeAsync('alias/topic', { qos: 1 });
    const pub = await client(tb, { protocolVersion, properties: { topicAliasMaximum: 10 } });
    const got = collect(sub, 2);
    await pub.publishAsync('alias/topic', 'first', { qos: 1, properties: { topicAlias: 3 } });
    await pub.publishAsync('', 'second', { qos: 1, properties: { topicAlias: 3 } });
    assert.deepEqual((await got).map((m) => `${m.topic}:${m.payload}`), ['alias/topic:first', 'alias/topic:second']);
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('will delay: not sent if the client reconnects in time, sent after the delay otherwise', async () => {
    const watcher = await client(tb, { protocolVersion });
    await watcher.subscribeAsync('wd/#', { qos: 1 });
    const will = { topic: 'wd/a', payload: Buffer.from('late'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } };
    const opts = { protocolVersion, clientId: 'wd-client', clean: false, properties: { sessionExpiryInterval: 30 }, will };
    const c1 = await client(tb, opts);
    c1.stream.destroy();
    await sleep(300);
    const c2 = await client(tb, opts); // back within the delay: no will [MQTT-3.1.3-9]
    await sleep(1000);
    assert.deepEqual(await quiet(watcher, 50), []);
    const got = collect(watcher, 1, 3000);
    c2.stream.destroy();
    assert.equal((await got)[0]?.payload.toString(), 'late');
    await watcher.endAsync();
  });

  test('session expiry ends the session after the interval', async () => {
    const opts = { protocolVersion, clientId: 'short-lived', clean: false, properties: { sessionExpiryInterval: 1 } };
    const c1 = await client(tb, opts);
    await c1.subscribeAsync('sx/#', { qos: 1 });
    await c1.endAsync();
    await sleep(1300);
    const c2 = unconnected(tb, { ...opts });
    const present = new Promise<boolean>((resolve) => c2.once('connect', (p) => resolve(p.sessionPresent)));
    c2.connect();
    assert.equal(await present, false);
    await c2.endAsync();
  });

  test('Maximum Packet Size of the client: larger messages are not sent to it [MQTT-3.1.2-25]', async () => {
    const small = await client(tb, { protocolVersion, properties: { maximumPacketSize: 100 } });
    await small.subscribeAsync('mps/#', { qos: 1 });
    const pub = await client(tb, { protocolVersion });
    const got = collect(small, 1);
    await pub.publishAsync('mps/big', Buffer.alloc(200, 1), { qos: 1 });
    await pub.publishAsync('mps/small', 'ok', { qos: 1 });
    assert.equal((await got)[0]?.topic, 'mps/small');
    await Promise.all([small.endAsync(), pub.endAsync()]);
  });
});
