/**
 * The shared registry suite (test/registry-suite.ts) on the Redis registry: a real redis-server on
 * loopback (test/servers.ts), emptied before each test.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedis, type TestServer } from '../servers.js';
import { client, collect, persistent, RawClient, sleep, startBroker, unconnected } from '../helpers.js';
import { registrySuite, withDataDir } from '../registry-suite.js';

let redis: TestServer;
let admin: Redis;
before(async () => {
  redis = await startRedis();
  admin = new Redis({ port: redis.port, host: '127.0.0.1' });
});
after(async () => {
  admin.disconnect();
  await redis.destroy();
});

registrySuite('redis single', async () => {
  await admin.flushall();
  return withDataDir({ 'persistence.registry': 'redis', 'redis.single.address': redis.server });
});

test('message bodies are stored once and deleted when no queue names them any more', async () => {
  await admin.flushall();
  const tb = await startBroker({ config: { 'persistence.registry': 'redis', 'redis.single.address': redis.server } });
  try {
    for (const id of ['body-a', 'body-b']) {
      const s = await client(tb, persistent(5, id));
      await s.subscribeAsync('body/#', { qos: 1 });
      await s.endAsync();
    }
    const pub = await client(tb);
    for (let i = 0; i < 10; i++) await pub.publishAsync(`body/${i}`, `b${i}`, { qos: 1 });
    await pub.endAsync();
    assert.equal((await admin.keys('smq:m:*')).length, 10, 'one body per message, whatever the number of sessions');
    assert.equal(await admin.hget((await admin.keys('smq:m:*'))[0] as string, 'n'), '2');
    const a = unconnected(tb, { ...persistent(5, 'body-a'), clean: false });
    const got = collect(a, 10);
    a.connect();
    await got;
    await sleep(200);
    assert.equal((await admin.keys('smq:m:*')).length, 10, 'still named by body-b');
    await a.endAsync();
    const b = await client(tb, { protocolVersion: 5, clientId: 'body-b', clean: true }); // Clean Start: body-b's queue goes
    await b.endAsync();
    await sleep(200);
    assert.deepEqual(await admin.keys('smq:m:*'), [], 'no body left');
    assert.deepEqual((await admin.keys('smq:*')).sort(), ['smq:sessions', 'smq:{body-a}:rec', 'smq:{body-a}:sub']);
  } finally {
    await tb.close();
  }
});

test('a retained pin written by an earlier build (the QoS alone, no packet id) reads as queued: the message is sent again, nothing else breaks', async () => {
  await admin.flushall();
  const config = { 'persistence.registry': 'redis', 'redis.single.address': redis.server };
  const tb = await startBroker({ config });
  try {
    const pub = await client(tb);
    await pub.publishAsync('oldpin/a', 'kept', { qos: 1, retain: true });
    await pub.endAsync();
    const raw = await RawClient.tcp(tb.port, 5);
    await raw.connect('suite-oldpin', { clean: false, properties: { sessionExpiryInterval: 3600 } });
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'oldpin/#', qos: 1 }] });
    await raw.next('suback');
    await raw.next('publish'); // never acknowledged
    await sleep(100);
    raw.end();
    await sleep(100);
  } finally {
    await tb.close();
  }
  assert.equal(await admin.hget('smq:{suite-oldpin}:rt', 'oldpin/a'), '1:1:1', 'QoS 1, packet id 1, PUBLISH sent');
  await admin.hset('smq:{suite-oldpin}:rt', 'oldpin/a', '1'); // the earlier format
  const again = await startBroker({ config });
  try {
    const back = await RawClient.tcp(again.port, 5);
    await back.connect('suite-oldpin', { clean: false, properties: { sessionExpiryInterval: 3600 } });
    const p = (await back.next('publish')) as { payload: Buffer; dup: boolean; qos: number; retain: boolean; messageId: number };
    assert.equal(p.payload.toString(), 'kept');
    assert.equal(p.qos, 1);
    assert.equal(p.retain, true);
    assert.equal(p.dup, false, 'queued anew: no packet id was known');
    back.send({ cmd: 'puback', messageId: p.messageId });
    assert.equal(await back.next('publish', 300).catch(() => null), null, 'once');
    await sleep(100);
    assert.equal(await admin.hget('smq:{suite-oldpin}:rt', 'oldpin/a'), null, 'completed: the pin is gone');
    back.end();
  } finally {
    await again.close();
  }
});
