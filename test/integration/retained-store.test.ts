/**
 * Retained messages in the native core: what a subscriber gets is what was published
 * (properties, QoS, publisher's no-local irrelevant), expiry still applies, a store written in
 * the layout before the record (JSON header) is converted at start and served, and the
 * records survive a restart without passing through JavaScript objects.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DurableStore } from '../../src/native.js';
import { BrokerProcess, client, collect, freePort, sleep, tempDir, unconnected } from '../helpers.js';

/** A retained value as versions before the record layout stored it. */
function legacyValue(publisher: string, qos: number, t: number, payload: string, props: object | null): Buffer {
  const header = Buffer.from(JSON.stringify({ p: publisher, q: qos, t, pr: props ? JSON.stringify(props) : null }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  return Buffer.concat([len, header, Buffer.from(payload)]);
}

test('a store with retained messages in the earlier layout is converted at start: served, then stored as records; an unreadable entry is skipped and reported', async () => {
  const data = tempDir('strata-retained-legacy-');
  try {
    const store = await DurableStore.open(data.dir, { nShards: 4 });
    await store.metaApply([
      { op: 'put', table: 'retained', key: Buffer.from('old/a'), value: legacyValue('pub-a', 1, Date.now(), 'from before', { userProperties: { k: 'v' } }) },
      { op: 'put', table: 'retained', key: Buffer.from('old/b'), value: legacyValue('pub-b', 0, Date.now(), 'second', null) },
      // Neither layout: skipped and reported, the others served.
      { op: 'put', table: 'retained', key: Buffer.from('old/damaged'), value: Buffer.from([7, 7, 7]) },
    ]);
    await store.close();
    const port = await freePort();
    const broker = new BrokerProcess(port, data.dir);
    await broker.start();
    assert.match(broker.output, /converted to the record layout/);
    assert.match(broker.output, /"unreadable":1,"msg":"unreadable retained entries skipped"/);
    const sub = unconnected(broker.url, { protocolVersion: 5 });
    const got = collect(sub, 2);
    sub.connect();
    await new Promise<void>((r) => sub.once('connect', () => r()));
    await sub.subscribeAsync('old/#', { qos: 1 });
    const msgs = (await got).sort((x, y) => x.topic.localeCompare(y.topic));
    assert.deepEqual(msgs.map((m) => [m.topic, m.payload.toString(), m.packet.qos, m.packet.retain]), [
      ['old/a', 'from before', 1, true],
      ['old/b', 'second', 0, true],
    ]);
    assert.deepEqual({ ...msgs[0]?.packet.properties?.userProperties }, { k: 'v' });
    await sub.endAsync();
    await broker.stop();
    // Rewritten as records: the next start converts nothing and serves the same.
    const again = await DurableStore.open(data.dir, { nShards: 4 });
    const v = again.metaGet('retained', Buffer.from('old/a'));
    assert.equal(v?.[0], 1, 'the record layout version');
    await again.close();
    await broker.start();
    assert.doesNotMatch(broker.output, /converted to the record layout/);
    const sub2 = await client(broker.url);
    const got2 = collect(sub2, 2);
    await sub2.subscribeAsync('old/#', { qos: 1 });
    assert.equal((await got2).length, 2);
    await sub2.endAsync();
    await broker.stop();
  } finally {
    data.remove();
  }
});

test('retained messages keep their properties and expire; 20,000 survive a kill -9 and come back in one subscribe', async () => {
  const data = tempDir('strata-retained-many-');
  const port = await freePort();
  const broker = new BrokerProcess(port, data.dir);
  try {
    await broker.start();
    const pub = await client(broker.url, { protocolVersion: 5 });
    await pub.publishAsync('exp/short', 'soon gone', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync('exp/long', 'stays', { qos: 1, retain: true, properties: { messageExpiryInterval: 3600, contentType: 'text/plain' } });
    const N = 20_000;
    for (let i = 0; i < N; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, j) => pub.publishAsync(`many/${(i + j) % 50}/${i + j}`, `v${i + j}`, { qos: 1, retain: true })));
    // Multi-byte topics and publishers' ids: stored under their UTF-8 bytes, the same after the restart.
    const wide = ['ünï/çødé/😀', 'ünï/日本語/トピック', 'ünï/x\u00a0y'];
    for (const t of wide) await pub.publishAsync(t, `w:${t}`, { qos: 1, retain: true });
    await pub.publishAsync(wide[0] as string, `w2:${wide[0]}`, { qos: 0, retain: true }); // replaced, QoS 0
    await pub.endAsync();
    await sleep(1100);
    await broker.kill9();
    await broker.start();
    const sub = unconnected(broker.url, { protocolVersion: 5 });
    const exp = collect(sub, 1);
    sub.connect();
    await new Promise<void>((r) => sub.once('connect', () => r()));
    await sub.subscribeAsync('exp/#', { qos: 1 });
    const [m] = await exp;
    assert.equal(m?.topic, 'exp/long', 'the expired one is not sent');
    assert.equal(m?.packet.properties?.contentType, 'text/plain');
    assert.ok((m?.packet.properties?.messageExpiryInterval ?? 0) <= 3600);
    const many = collect(sub, N, 20000);
    await sub.subscribeAsync('many/#', { qos: 0 });
    const got = await many;
    assert.equal(new Set(got.map((x) => x.topic)).size, N);
    assert.equal(got.find((x) => x.topic === 'many/7/12357')?.payload.toString(), 'v12357');
    const wideGot = collect(sub, wide.length, 5000);
    await sub.subscribeAsync('ünï/#', { qos: 1 });
    const byTopic = new Map((await wideGot).map((x) => [x.topic, x.payload.toString()]));
    assert.deepEqual(byTopic, new Map([[wide[0], `w2:${wide[0]}`], [wide[1], `w:${wide[1]}`], [wide[2], `w:${wide[2]}`]]));
    await sub.endAsync();
  } finally {
    await broker.stop();
    data.remove();
  }
});
