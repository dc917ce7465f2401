/**
 * The shared registry suite (test/registry-suite.ts) on the Redis registry through Sentinel and
 * on a three-master Redis Cluster (real servers from test/servers.ts, emptied before each test):
 * one session's keys share a slot (hash tags), bodies live wherever their id hashes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedisCluster, startRedisSentinel } from '../servers.js';
import { killUnderLoad, registrySuite, withDataDir } from '../registry-suite.js';

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
  test('redis cluster: kill -9 under QoS 1 load loses no acknowledged message', async (t) => {
    await Promise.all(nodes.map((n) => n.flushall()));
    const { acked, lost } = await killUnderLoad({ STRATA_PERSISTENCE__REGISTRY: 'redis', STRATA_REDIS__MODE: 'cluster', STRATA_REDIS__CLUSTER__NODES: cluster.ports.map((p) => `127.0.0.1:${p}`).join(',') });
    t.diagnostic(`${acked} acknowledged, ${lost.length} lost`);
    assert.ok(acked > 200, `load ran (${acked} acknowledged)`);
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${acked} acknowledged messages lost`);
  });
});
