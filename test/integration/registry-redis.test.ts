/**
 * The shared registry suite (test/registry-suite.ts) on the Redis registry: a real redis-server on
 * loopback (test/servers.ts), emptied before each test.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedis, type TestServer } from '../servers.js';
import { client, collect, persistent, sleep, startBroker, unconnected } from '../helpers.js';
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
