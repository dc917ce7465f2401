/**
 * The shared registry suite (test/registry-suite.ts) on the Redis registry through Sentinel and
 * on a three-master Redis Cluster (real servers from test/servers.ts, emptied before each test):
 * one session's keys share a slot (hash tags), bodies live wherever their id hashes.
 */
import { after, before, describe } from 'node:test';
import { Redis } from 'ioredis';
import { startRedisCluster, startRedisSentinel } from '../servers.js';
import { registrySuite, withDataDir } from '../registry-suite.js';

describe('sentinel', () => {
  let sentinel: Awaited<ReturnType<typeof startRedisSentinel>>;
  let admin: Redis;
  before(async () => {
    sentinel = await startRedisSentinel();
    admin = new Redis({ port: sentinel.master.port, host: '127.0.0.1' });
  });
  after(async () => {
    admin.disconnect();
    await sentinel.destroy();
  });
  registrySuite('redis sentinel', async () => {
    await admin.flushall();
    return withDataDir({ 'persistence.registry': 'redis', 'redis.mode': 'sentinel', 'redis.sentinel.nodes': `127.0.0.1:${sentinel.sentinelPort}`, 'redis.sentinel.master': 'mymaster' });
  });
});

describe('cluster', () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let nodes: Redis[];
  before(async () => {
    cluster = await startRedisCluster();
    nodes = cluster.ports.map((port) => new Redis({ port, host: '127.0.0.1' }));
  });
  after(async () => {
    for (const n of nodes) n.disconnect();
    await cluster.destroy();
  });
  registrySuite('redis cluster', async () => {
    await Promise.all(nodes.map((n) => n.flushall()));
    return withDataDir({ 'persistence.registry': 'redis', 'redis.mode': 'cluster', 'redis.cluster.nodes': cluster.ports.map((p) => `127.0.0.1:${p}`).join(',') });
  });
});
