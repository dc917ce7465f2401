/**
 * Outbound topic aliases: a v5 client that sends a Topic Alias Maximum gets each topic's name
 * once with an alias, then the alias alone, never above its maximum; MQTT.js resolves them back
 * (live, and draining a persistent session's queue from the log); clients that send no maximum
 * and 3.1.1 clients get plain topics.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IConnackPacket, IDisconnectPacket, IPublishPacket } from 'mqtt-packet';
import { client, collect, persistent, RawClient, sleep, startBroker, unconnected } from '../helpers.js';

test('a v5 client with Topic Alias Maximum 2: name + alias first, alias alone after, the third topic by name', async () => {
  const tb = await startBroker();
  try {
    const raw = await RawClient.tcp(tb.port, 5);
    await raw.connect('alias-raw', { properties: { topicAliasMaximum: 2 } });
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 't/#', qos: 0 }] });
    await raw.next('suback');
    const pub = await client(tb);
    for (const t of ['t/1', 't/1', 't/2', 't/3', 't/2', 't/3']) await pub.publishAsync(t, `to ${t}`, { qos: 1 });
    const seen: [string, number | undefined, string][] = [];
    for (let i = 0; i < 6; i++) {
      const p = (await raw.next('publish')) as IPublishPacket;
      seen.push([p.topic, p.properties?.topicAlias, p.payload.toString()]);
    }
    assert.deepEqual(seen, [
      ['t/1', 1, 'to t/1'],
      ['', 1, 'to t/1'],
      ['t/2', 2, 'to t/2'],
      ['t/3', undefined, 'to t/3'],
      ['', 2, 'to t/2'],
      ['t/3', undefined, 'to t/3'],
    ]);
    const plain = await RawClient.tcp(tb.port, 5);
    await plain.connect('alias-none');
    plain.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 't/#', qos: 0 }] });
    await plain.next('suback');
    await pub.publishAsync('t/1', 'x', { qos: 1 });
    const p = (await plain.next('publish')) as IPublishPacket;
    assert.equal(p.topic, 't/1');
    assert.equal(p.properties?.topicAlias, undefined);
    raw.end();
    plain.end();
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});

test('MQTT.js with topicAliasMaximum gets the right topics live and from a persistent queue drained from the log; none when the broker is told not to', async () => {
  for (const max of [65535, 0]) {
    const tb = await startBroker({ config: { 'mqtt.max_outbound_topic_alias': max } });
    try {
      const opts = { ...persistent(5, 'alias-js'), properties: { sessionExpiryInterval: 3600, topicAliasMaximum: 10 } };
      const sub = await client(tb, opts);
      await sub.subscribeAsync('q/#', { qos: 1 });
      const pub = await client(tb);
      const live = collect(sub, 4);
      for (const t of ['q/a', 'q/b', 'q/a', 'q/b']) await pub.publishAsync(t, t, { qos: 1 });
      assert.deepEqual((await live).map((m) => m.topic), ['q/a', 'q/b', 'q/a', 'q/b']);
      const aliased = (await live).filter((m) => m.packet.properties?.topicAlias !== undefined).length;
      assert.equal(aliased, max > 0 ? 4 : 0);
      await sub.endAsync();
      for (let i = 0; i < 200; i++) await pub.publishAsync(`q/${i % 3}`, String(i), { qos: 1 });
      await sleep(20);
      const back = unconnected(tb, { ...opts, clean: false });
      const queued = collect(back, 200);
      back.connect();
      const got = await queued;
      assert.deepEqual(got.map((m) => `${m.topic} ${m.payload.toString()}`), Array.from({ length: 200 }, (_, i) => `q/${i % 3} ${i}`));
      await Promise.all([back.endAsync(), pub.endAsync()]);
    } finally {
      await tb.close();
    }
  }
});

test('the broker accepts 10 topic aliases by default (as Mosquitto): the 11th is refused with 0x94', async () => {
  const tb = await startBroker();
  try {
    const raw = await RawClient.tcp(tb.port, 5);
    const ack = (await raw.connect('alias-default')) as IConnackPacket;
    assert.equal(ack.properties?.topicAliasMaximum, 10);
    raw.send({ cmd: 'publish', topic: 'a/10', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { topicAlias: 10 } });
    raw.send({ cmd: 'publish', topic: 'a/11', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { topicAlias: 11 } });
    const d = (await raw.next('disconnect')) as IDisconnectPacket;
    assert.equal(d.reasonCode, 0x94);
    raw.end();
  } finally {
    await tb.close();
  }
});

test('outbound aliases stop at 64K characters of topic names: long names go out by name after, short ones still get aliases', async () => {
  const tb = await startBroker();
  try {
    const raw = await RawClient.tcp(tb.port, 5);
    await raw.connect('alias-long', { properties: { topicAliasMaximum: 65535 } });
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'l/#', qos: 0 }] });
    await raw.next('suback');
    const pub = await client(tb);
    const long = (i: number): string => `l/${i}/${'x'.repeat(30_000)}`;
    const topics = [long(1), long(2), long(3), 'l/short', long(1), long(3)];
    for (const t of topics) await pub.publishAsync(t, 'p', { qos: 1 });
    const seen: [number, number | undefined][] = [];
    for (let i = 0; i < topics.length; i++) {
      const p = (await raw.next('publish')) as IPublishPacket;
      seen.push([p.topic.length, p.properties?.topicAlias]);
    }
    const L = long(1).length;
    assert.deepEqual(seen, [
      [L, 1],
      [L, 2],
      [L, undefined], // 90,000 characters would be kept: by name
      [7, 3],
      [0, 1],
      [L, undefined],
    ]);
    raw.end();
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});
