/**
 * Redis backend modes (issue 16) against real servers: a Sentinel set-up (one master watched as
 * `mymaster`) and a 3-master cluster on loopback ports — the same EMQX layout written through
 * each, and on_retain_lookup finding retained messages on every master of the cluster.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { rule, until } from '../backends.js';
import { client, collect, startBroker } from '../helpers.js';
import { startRedisCluster, startRedisSentinel } from '../servers.js';

test('type = sentinel: the pool finds the master through Sentinel and writes the layout there', async () => {
  const s = await startRedisSentinel();
  const tb = await startBroker({
    config: {
      'backend.redis.pool1.server': `127.0.0.1:${s.sentinelPort}`,
      'backend.redis.pool1.type': 'sentinel',
      'backend.redis.pool1.sentinel': 'mymaster',
      'backend.redis.hook.client.connected.1': rule({ function: 'on_client_connected' }),
      'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }),
    } as never,
  });
  const r = new Redis({ host: '127.0.0.1', port: s.master.port });
  try {
    const c = await client(tb, { clientId: 'sentinel-client' });
    await c.publishAsync('sent/a', 'via sentinel', { qos: 1 });
    await until('written to the master', async () => (await r.hget('mqtt:client:sentinel-client', 'state')) === '1' && (await r.zcard('mqtt:msg:sent/a')) === 1);
    const [id] = await r.zrange('mqtt:msg:sent/a', 0, -1);
    assert.equal(await r.hget(`mqtt:msg:${id}`, 'payload'), 'via sentinel');
    await c.endAsync();
  } finally {
    r.disconnect();
    await tb.close();
    await s.destroy();
  }
});

test('type = cluster: keys spread over 3 masters; on_retain_lookup scans every master', async () => {
  const cl = await startRedisCluster();
  const tb = await startBroker({
    config: {
      'backend.redis.pool1.server': cl.ports.map((p) => `127.0.0.1:${p}`).join(','),
      'backend.redis.pool1.type': 'cluster',
      'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }),
      'backend.redis.hook.message.publish.2': rule({ topic: '#', function: 'on_message_retain' }),
      'backend.redis.hook.session.subscribed.1': rule({ topic: '#', function: 'on_retain_lookup' }),
    } as never,
  });
  const r = new Cluster(cl.ports.map((port) => ({ host: '127.0.0.1', port })));
  try {
    const pub = await client(tb, { clientId: 'cluster-pub' });
    const topics = Array.from({ length: 12 }, (_, i) => `cl/${i}`);
    for (const t of topics) await pub.publishAsync(t, `p-${t}`, { qos: 1, retain: true });
    await until('every message and retained hash written', async () => {
      for (const t of topics) if ((await r.zcard(`mqtt:msg:${t}`)) !== 1 || (await r.hget(`mqtt:retain:${t}`, 'payload')) !== `p-${t}`) return false;
      return true;
    });
    // The keys really are on several masters.
    const perNode = await Promise.all(r.nodes('master').map(async (n) => (await n.keys('mqtt:retain:*')).length));
    assert.equal(perNode.reduce((a, b) => a + b, 0), 12);
    assert.ok(perNode.filter((n) => n > 0).length >= 2, `spread: ${perNode.join(',')}`);
    // Retained messages only Redis has (the broker's own store is cleared by another broker).
    await r.hset('mqtt:retain:db/x', 'topic', 'db/x', 'payload', 'only in redis', 'qos', '1', 'from', 'o', 'ts', '1');
    await r.hset('mqtt:retain:db/y/z', 'topic', 'db/y/z', 'payload', 'also', 'qos', '0', 'from', 'o', 'ts', '1');
    const sub = await client(tb, { clientId: 'cluster-sub' });
    const got = collect(sub, 2);
    await sub.subscribeAsync('db/#', { qos: 1 });
    assert.deepEqual((await got).map((m) => [m.topic, m.payload.toString(), m.packet.retain]).sort(), [
      ['db/x', 'only in redis', true],
      ['db/y/z', 'also', true],
    ]);
    await pub.endAsync();
    await sub.endAsync();
  } finally {
    r.disconnect();
    await tb.close();
    await cl.destroy();
  }
});
