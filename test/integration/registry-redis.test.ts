/**
 * The shared registry suite (test/registry-suite.ts) on the Redis registry: a real redis-server on
 * loopback (test/servers.ts), emptied before each test.
 */
import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { startRedis, type TestServer } from '../servers.js';
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
