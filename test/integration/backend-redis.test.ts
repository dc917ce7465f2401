/**
 * Redis backend (issue 16) against a real redis-server: EMQX 4's key layout written by the
 * built-in functions, proxy subscriptions and retained messages read from Redis, custom commands
 * with placeholders bound as arguments, and the faults — server down at start, killed mid-run,
 * wrong credentials.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { capturedLogger, INJECTION, rule, until } from '../backends.js';
import { client, collect, quiet, sleep, startBroker } from '../helpers.js';
import { startRedis, type TestServer } from '../servers.js';

let redis: TestServer;
let r: Redis;

before(async () => {
  redis = await startRedis();
  r = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 1 });
});
after(async () => {
  r.disconnect();
  await redis.destroy();
});

const builtIns = (server: string): Record<string, unknown> => ({
  'backend.redis.pool1.server': server,
  'backend.redis.hook.client.connected.1': rule({ function: 'on_client_connected' }),
  'backend.redis.hook.client.connected.2': rule({ function: 'on_subscribe_lookup' }),
  'backend.redis.hook.client.disconnected.1': rule({ function: 'on_client_disconnected' }),
  'backend.redis.hook.session.subscribed.1': rule({ topic: '#', function: 'on_retain_lookup' }),
  'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }),
  'backend.redis.hook.message.publish.2': rule({ topic: '#', function: 'on_message_retain' }),
  'backend.redis.hook.message.publish.3': rule({ topic: '#', function: 'on_retain_delete' }),
  'backend.redis.hook.message.acked.1': rule({ topic: '#', function: 'on_message_acked' }),
});

test('built-in functions write EMQX 4\'s Redis layout: client state, node list, messages by id and topic, retained, acked', async () => {
  await r.flushall();
  const tb = await startBroker({ config: { ...builtIns(redis.server), 'node.name': 'strata@test', 'admin.port': 0, 'admin.token': 'tok' } as never });
  try {
    const sub = await client(tb, { clientId: 'rs-sub' });
    const st = await until('mqtt:client:rs-sub online', async () => ((await r.hget('mqtt:client:rs-sub', 'state')) === '1' ? r.hgetall('mqtt:client:rs-sub') : null));
    assert.match(st.online_at ?? '', /^\d{10}$/);
    assert.ok(Math.abs(Number(st.online_at) - Date.now() / 1000) < 30);
    assert.match((await r.hget('mqtt:node:strata@test', 'rs-sub')) ?? '', /^\d{10}$/);

    await sub.subscribeAsync('up/#', { qos: 1 });
    const pub = await client(tb, { clientId: 'rs-pub' });
    const got = collect(sub, 2);
    await pub.publishAsync('up/t', '{ "cmd": "reboot" }', { qos: 1 });
    await pub.publishAsync('up/t', Buffer.from([0, 1, 2, 255, 254]), { qos: 2 });
    await got;
    const ids = await until('two ids in mqtt:msg:up/t', async () => {
      const z = await r.zrange('mqtt:msg:up/t', 0, -1);
      return z.length === 2 ? z : null;
    });
    for (const id of ids) assert.match(id, /^[0-9A-Za-z]{20,22}$/, 'EMQX-style base62 id');
    assert.ok((ids[0] as string) < (ids[1] as string), 'ids increase in publish order');
    const first = await r.hgetall(`mqtt:msg:${ids[0]}`);
    assert.deepEqual({ ...first, ts: 'ts' }, { id: ids[0], from: 'rs-pub', qos: '1', topic: 'up/t', payload: '{ "cmd": "reboot" }', ts: 'ts', retain: 'false' });
    assert.match(first.ts ?? '', /^\d{10}$/);
    assert.deepEqual(await r.hgetBuffer(`mqtt:msg:${ids[1]}`, 'payload'), Buffer.from([0, 1, 2, 255, 254]), 'binary payloads kept byte for byte');
    assert.equal(await r.hget(`mqtt:msg:${ids[1]}`, 'qos'), '2');

    // message.acked: the subscriber acknowledged both; its read position is the last id, the same id as in mqtt:msg.
    await until('mqtt:acked:rs-sub:up/t', async () => (await r.get('mqtt:acked:rs-sub:up/t')) === ids[1]);

    // Retained: stored by on_message_retain, removed by on_retain_delete (an empty retained payload).
    await pub.publishAsync('ret/a', 'kept', { qos: 1, retain: true });
    const h = await until('mqtt:retain:ret/a', async () => {
      const x = await r.hgetall('mqtt:retain:ret/a');
      return x.payload ? x : null;
    });
    assert.equal(h.topic, 'ret/a');
    assert.equal(h.retain, 'true');
    assert.equal(h.from, 'rs-pub');
    await pub.publishAsync('ret/a', '', { qos: 1, retain: true });
    await until('mqtt:retain:ret/a deleted', async () => (await r.exists('mqtt:retain:ret/a')) === 0);

    await pub.endAsync();
    sub.end(true);
    await until('mqtt:client:rs-sub offline', async () => (await r.hget('mqtt:client:rs-sub', 'state')) === '0');
    assert.match((await r.hget('mqtt:client:rs-sub', 'offline_at')) ?? '', /^\d{10}$/);
    assert.equal(await r.hexists('mqtt:node:strata@test', 'rs-sub'), 0, 'gone from the node list');
    const c = tb.broker.metrics.backendRules['backend.redis.hook.message.publish.1'];
    assert.ok(c && c.done >= 4 && c.failed === 0, JSON.stringify(c));
    // The admin API shows the pool and each rule with its queue.
    const api = (await (await fetch(`http://127.0.0.1:${tb.broker.addresses.admin}/api/v1/backends`, { headers: { authorization: 'Bearer tok' } })).json()) as { pools: { type: string; pool: string; up: boolean }[]; rules: { rule: string; done: number; queue: { handled: number } | null }[] };
    assert.deepEqual(api.pools.map((p) => [p.type, p.pool, p.up]), [['redis', 'pool1', true]]);
    const pr = api.rules.find((x) => x.rule === 'backend.redis.hook.message.publish.1');
    assert.ok(pr && pr.done === c.done && (pr.queue?.handled ?? 0) >= 4, JSON.stringify(pr));
    assert.equal(api.rules.length, 8);
  } finally {
    await tb.close();
  }
});

test('on_message_publish in script calls of many messages: every message of a burst on several topics (UTF-8 names, empty and binary payloads) in EMQX\'s layout, scored by its publish time', async () => {
  await r.flushall();
  const tb = await startBroker({ config: { 'backend.redis.pool1.server': redis.server, 'backend.redis.hook.message.publish.1': rule({ topic: 'burst/#', function: 'on_message_publish' }) } as never });
  try {
    const N = 700; // per publisher: several full calls (250 messages) and a partial one
    const payload = (p: number, i: number): Buffer => (i % 50 === 7 ? Buffer.alloc(0) : i % 50 === 9 ? Buffer.from(Array.from({ length: 256 }, (_, b) => (b + p) & 0xff)) : Buffer.from(`m-${p}-${i}`));
    const pubs = await Promise.all([0, 1, 2].map((p) => client(tb, { clientId: p === 0 ? 'bürst-pub-0' : `burst-pub-${p}` })));
    const topic = (p: number): string => (p === 1 ? 'burst/größe/1' : `burst/t/${p}`);
    await Promise.all(pubs.map((c, p) => Promise.all(Array.from({ length: N }, (_, i) => c.publishAsync(topic(p), payload(p, i), { qos: 1 })))));
    for (let p = 0; p < 3; p++) {
      const flat = await until(`${N} ids in mqtt:msg:${topic(p)}`, async () => {
        const z = await r.zrange(`mqtt:msg:${topic(p)}`, 0, -1, 'WITHSCORES');
        return z.length === 2 * N ? z : null;
      });
      const ids = flat.filter((_, k) => k % 2 === 0);
      const scores = flat.filter((_, k) => k % 2 === 1).map(Number);
      // Scores and ids both increase in publish order (ties in score: ordered by id).
      for (let i = 1; i < N; i++) assert.ok((ids[i - 1] as string) < (ids[i] as string) && (scores[i - 1] as number) <= (scores[i] as number), `order at ${i}`);
      const hashes = await Promise.all(ids.map((id) => r.hgetallBuffer(`mqtt:msg:${id}`)));
      hashes.forEach((h, i) => {
        const text = Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'payload').map(([k, v]) => [k, v.toString()]));
        assert.deepEqual(text, { id: ids[i], from: p === 0 ? 'bürst-pub-0' : `burst-pub-${p}`, qos: '1', topic: topic(p), ts: String(Math.floor((scores[i] as number) / 1000)), retain: 'false' }, `message ${i} of ${topic(p)}`);
        assert.deepEqual(h.payload, payload(p, i), `payload ${i} of ${topic(p)} byte for byte`);
      });
    }
    assert.equal(await r.dbsize(), 3 * N + 3, 'a hash per message and a sorted set per topic, nothing else');
    const c = tb.broker.metrics.consumers['backend.redis.pool1.message.publish'];
    assert.deepEqual({ handled: c?.handled, failed: c?.failed, dropped: c?.dropped }, { handled: 3 * N, failed: 0, dropped: 0 });
    await Promise.all(pubs.map((c) => c.endAsync()));
  } finally {
    await tb.close();
  }
});

test('on_subscribe_lookup subscribes a client to mqtt:sub:<clientid> at connect, through the ACL; on_retain_lookup sends what Redis retains', async () => {
  await r.flushall();
  await r.hset('mqtt:sub:rs-proxy', 'proxy/a', '1', 'proxy/+/b', '2', 'secret/x', '1');
  // Retained messages Redis holds that the broker never saw (written by another node or tool).
  await r.hset('mqtt:retain:proxy/old', 'id', 'x', 'from', 'elsewhere', 'qos', '1', 'topic', 'proxy/old', 'payload', 'from redis', 'ts', '1542338754', 'retain', 'true');
  const tb = await startBroker({
    config: builtIns(redis.server) as never,
    gates: { authorizeSubscribe: (_c, filter, qos) => (filter.startsWith('secret/') ? false : qos) },
  });
  try {
    const sub = await client(tb, { clientId: 'rs-proxy', protocolVersion: 5 });
    await until('proxy subscriptions applied', () => tb.broker.sessions.get('rs-proxy')?.subscriptions.size === 2);
    assert.deepEqual([...(tb.broker.sessions.get('rs-proxy')?.subscriptions.keys() ?? [])].sort(), ['proxy/+/b', 'proxy/a'], 'secret/x refused by the ACL gate');
    assert.equal(tb.broker.sessions.get('rs-proxy')?.subscriptions.get('proxy/+/b')?.qos, 2);

    const pub = await client(tb, { clientId: 'rs-proxy-pub' });
    const got = collect(sub, 2);
    await pub.publishAsync('proxy/a', 'one', { qos: 1 });
    await pub.publishAsync('proxy/x/b', 'two', { qos: 2 });
    await pub.publishAsync('secret/x', 'never', { qos: 1 });
    const msgs = await got;
    assert.deepEqual(msgs.map((m) => [m.topic, m.payload.toString(), m.packet.qos]), [['proxy/a', 'one', 1], ['proxy/x/b', 'two', 2]]);
    assert.deepEqual(await quiet(sub, 200), [], 'nothing from secret/x');

    // on_retain_lookup: a SUBSCRIBE gets Redis' retained message (retain flag set).
    const ret = collect(sub, 1);
    await sub.subscribeAsync('proxy/#', { qos: 1 });
    const [m] = await ret;
    assert.equal(m?.topic, 'proxy/old');
    assert.equal(m?.payload.toString(), 'from redis');
    assert.equal(m?.packet.retain, true);
    await pub.endAsync();
    await sub.endAsync();
  } finally {
    await tb.close();
  }
});

test('custom commands bind ${…} as whole arguments: a payload with quotes, spaces and SQL is stored verbatim', async () => {
  await r.flushall();
  const tb = await startBroker({
    config: {
      'backend.redis.pool1.server': redis.server,
      'backend.redis.pool1.max_inflight': 1, // events in the order they happened (the assertions below depend on it)
      'backend.redis.hook.message.publish.1': rule({ topic: 'cmd/#', commands: ['HSET custom:${clientid} topic ${topic} payload ${payload} qos ${qos} node ${node}', 'RPUSH custom:list ${payload}', 'SET custom:key:${topic}:x ${msgid}'] }),
    } as never,
  });
  try {
    const pub = await client(tb, { clientId: 'rs-cmd' });
    const payloads = [INJECTION, 'two words "quoted" \\n', 'DEL custom:list'];
    for (const p of payloads) await pub.publishAsync('cmd/a b', p, { qos: 1 });
    await pub.publishAsync('other/topic', 'not selected', { qos: 1 });
    await until('three payloads', async () => (await r.llen('custom:list')) === 3);
    assert.deepEqual(await r.lrange('custom:list', 0, -1), payloads);
    assert.deepEqual(await r.hgetall('custom:rs-cmd'), { topic: 'cmd/a b', payload: payloads[2], qos: '1', node: 'stratamq@127.0.0.1' });
    assert.match((await r.get('custom:key:cmd/a b:x')) ?? '', /^[0-9A-Za-z]{20,22}$/, 'a placeholder inside an argument builds that one argument');
    await pub.endAsync();
  } finally {
    await tb.close();
  }
});

test('Redis down at start: the broker starts, logs the pool, serves MQTT, and writes the queued events once Redis is up', async () => {
  const late = await startRedis();
  await late.kill();
  const log = capturedLogger();
  const tb = await startBroker({ logger: log.logger, config: { 'backend.redis.pool1.server': late.server, 'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }) } as never });
  try {
    await until('the pool logged unavailable', () => log.has(/backend redis pool \\"pool1\\" unavailable/));
    const sub = await client(tb);
    await sub.subscribeAsync('late/#', { qos: 1 });
    const pub = await client(tb, { clientId: 'late-pub' });
    const got = collect(sub, 5);
    for (let i = 0; i < 5; i++) await pub.publishAsync('late/t', `m${i}`, { qos: 1 });
    assert.equal((await got).length, 5, 'delivery does not wait for Redis');
    assert.equal(tb.broker.metrics.backendPools['redis.pool1']?.up, false);
    await late.start();
    const lr = new Redis({ host: '127.0.0.1', port: late.port });
    try {
      await until('the 5 queued messages in Redis', async () => (await lr.zcard('mqtt:msg:late/t')) === 5, 15_000);
      assert.equal(tb.broker.metrics.backendPools['redis.pool1']?.up, true);
      assert.ok(log.has(/backend redis pool \\"pool1\\" connected/));
    } finally {
      lr.disconnect();
    }
    await pub.endAsync();
    await sub.endAsync();
  } finally {
    await tb.close();
    await late.destroy();
  }
});

test('Redis killed mid-run: delivery unaffected, the queue stays bounded, the excess is dropped and counted in /metrics, the rest is written when Redis returns', async () => {
  const own = await startRedis();
  const tb = await startBroker({ config: { 'admin.port': 0, 'admin.metrics_public': true, 'backend.redis.pool1.server': own.server, 'backend.redis.pool1.max_queued': 50, 'backend.redis.pool1.max_inflight': 2, 'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }) } as never });
  const or = new Redis({ host: '127.0.0.1', port: own.port });
  try {
    const counters = (): { queued: number; handled: number; failed: number; dropped: number; waiting: number } => tb.broker.metrics.consumers['backend.redis.pool1.message.publish'] as never;
    const sub = await client(tb);
    await sub.subscribeAsync('mid/#', { qos: 1 });
    const pub = await client(tb, { clientId: 'mid-pub' });
    for (let i = 0; i < 10; i++) await pub.publishAsync('mid/before', `b${i}`, { qos: 1 });
    await until('10 written', async () => (await or.zcard('mqtt:msg:mid/before')) === 10);

    await own.kill();
    const got = collect(sub, 200, 20_000);
    for (let i = 0; i < 200; i++) await pub.publishAsync('mid/during', `d${i}`, { qos: 1 });
    assert.equal((await got).length, 200, 'every message delivered while Redis is down');
    const c = counters();
    assert.ok(c.waiting <= 50, `queue bounded: ${c.waiting} waiting`);
    assert.ok(c.dropped >= 200 - 50 - 2, `excess dropped and counted: ${JSON.stringify(c)}`);
    const metrics = await (await fetch(`http://127.0.0.1:${tb.broker.addresses.admin}/metrics`)).text();
    const line = metrics.split('\n').find((l) => l.startsWith('stratamq_hook_consumer_events_total{consumer="backend.redis.pool1.message.publish",outcome="dropped"}'));
    assert.equal(Number(line?.split(' ')[1]), c.dropped, `/metrics shows the drops: ${line}`);
    assert.match(metrics, /stratamq_backend_pool_up\{type="redis",pool="pool1"\} 0/);

    await own.start(); // empty: started with --save ''
    const kept = c.queued - 10;
    await until('the queued events written after Redis returned', async () => (await or.zcard('mqtt:msg:mid/during')) === kept, 15_000).catch(async (e: unknown) => {
      throw new Error(`${String(e)}: ${await or.zcard('mqtt:msg:mid/during')} of ${kept}, ${JSON.stringify(counters())}`);
    });
    const end = counters();
    assert.equal(end.handled, end.queued, JSON.stringify(end));
    assert.equal(end.failed, 0);
    assert.equal(end.dropped + end.queued, 210);
    await sleep(100);
    assert.equal(await or.zcard('mqtt:msg:mid/during'), kept, 'nothing written twice');
    await pub.endAsync();
    await sub.endAsync();
  } finally {
    or.disconnect();
    await tb.close();
    await own.destroy();
  }
});

test('wrong Redis credentials: a clear error naming the pool; MQTT keeps working', async () => {
  const locked = await startRedis({ password: 'right-one' });
  const log = capturedLogger();
  const tb = await startBroker({ logger: log.logger, config: { 'backend.redis.auth.server': locked.server, 'backend.redis.auth.password': 'wrong-one', 'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish', pool: 'auth' }) } as never });
  try {
    const pub = await client(tb);
    await pub.publishAsync('x/y', 'z', { qos: 1 });
    await until('the credential error logged', () => log.has(/backend redis pool \\"auth\\" unavailable: .*(WRONGPASS|NOAUTH|invalid username-password)/));
    assert.equal(tb.broker.metrics.backendPools['redis.auth']?.up, false);
    await pub.endAsync();
  } finally {
    await tb.close();
    await locked.destroy();
  }
});

test('offline fetch: _for_pubsub gives each subscriber what it has not acknowledged, _for_queue gives a message out once and deletes it on ack; wildcard filters too', async () => {
  await r.flushall();
  const tb = await startBroker({
    config: {
      'backend.redis.pool1.server': redis.server,
      'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }),
      'backend.redis.hook.session.subscribed.1': rule({ topic: 'queue/#', function: 'on_message_fetch_for_queue' }),
      'backend.redis.hook.session.subscribed.2': rule({ topic: 'pubsub/#', function: 'on_message_fetch_for_pubsub' }),
      'backend.redis.hook.message.acked.1': rule({ topic: 'queue/#', function: 'on_message_acked_for_queue' }),
      'backend.redis.hook.message.acked.2': rule({ topic: 'pubsub/#', function: 'on_message_acked_for_pubsub' }),
    } as never,
  });
  try {
    const pub = await client(tb, { clientId: 'f-pub' });
    await pub.publishAsync('pubsub/a', 'm1', { qos: 1 });
    await pub.publishAsync('pubsub/a', 'm2', { qos: 2 });
    await pub.publishAsync('pubsub/b', 'm3', { qos: 1 });
    await pub.publishAsync('pubsub/a', 'qos0 is not an offline message', { qos: 0 });
    await pub.publishAsync('queue/x', 'j1', { qos: 1 });
    await pub.publishAsync('queue/x', 'j2', { qos: 1 });
    await until('stored', async () => (await r.zcard('mqtt:msg:pubsub/a')) === 3 && (await r.zcard('mqtt:msg:queue/x')) === 2);
    const texts = (ms: { topic: string; payload: Buffer }[]): string[] => ms.map((m) => `${m.topic}:${m.payload.toString()}`).sort();

    // One-to-many: a wildcard subscription fetches every topic's messages, QoS > 0 only.
    const a = await client(tb, { clientId: 'f-a' });
    let got = collect(a, 3);
    await a.subscribeAsync('pubsub/#', { qos: 2 });
    assert.deepEqual(texts(await got), ['pubsub/a:m1', 'pubsub/a:m2', 'pubsub/b:m3']);
    assert.deepEqual(await quiet(a, 150), []);
    let m2 = '';
    for (const id of await r.zrange('mqtt:msg:pubsub/a', 0, -1)) if ((await r.hget(`mqtt:msg:${id}`, 'payload')) === 'm2') m2 = id;
    assert.ok(m2);
    await until('f-a read position = m2 (its stored id)', async () => (await r.get('mqtt:acked:f-a:pubsub/a')) === m2);
    await a.endAsync();
    await pub.publishAsync('pubsub/a', 'm4', { qos: 1 });
    await until('m4 stored', async () => (await r.zcard('mqtt:msg:pubsub/a')) === 4);
    const a2 = await client(tb, { clientId: 'f-a' });
    got = collect(a2, 1);
    await a2.subscribeAsync('pubsub/a', { qos: 1 });
    assert.deepEqual(texts(await got), ['pubsub/a:m4'], 'only what f-a has not acknowledged');
    assert.deepEqual(await quiet(a2, 150), []);
    const b = await client(tb, { clientId: 'f-b' });
    got = collect(b, 4);
    await b.subscribeAsync('pubsub/+', { qos: 1 });
    assert.deepEqual(texts(await got), ['pubsub/a:m1', 'pubsub/a:m2', 'pubsub/a:m4', 'pubsub/b:m3'], 'f-b has its own position');

    // One-to-one: the first subscriber takes the queue; acknowledged messages are deleted.
    const queued = await r.zrange('mqtt:msg:queue/x', 0, -1);
    const w1 = await client(tb, { clientId: 'f-w1' });
    got = collect(w1, 2);
    await w1.subscribeAsync('queue/x', { qos: 1 });
    assert.deepEqual(texts(await got), ['queue/x:j1', 'queue/x:j2']);
    await until('acknowledged queue messages deleted', async () => (await r.zcard('mqtt:msg:queue/x')) === 0 && (await r.exists(...queued.map((id) => `mqtt:msg:${id}`))) === 0);
    assert.equal(await r.zcard('mqtt:msg:pubsub/a'), 4, 'pubsub messages stay');
    const w2 = await client(tb, { clientId: 'f-w2' });
    await w2.subscribeAsync('queue/#', { qos: 1 });
    assert.deepEqual(await quiet(w2, 200), [], 'nothing left for a second subscriber');
    for (const c of [pub, a2, b, w1, w2]) await c.endAsync();
  } finally {
    await tb.close();
  }
});

test('"mode": "backpressure": the PUBACK waits for the write — held while Redis is down, sent once it is written; a failed write fails the PUBACK (v5 0x80)', async () => {
  const own = await startRedis();
  const tb = await startBroker({
    config: {
      'backend.redis.pool1.server': own.server,
      'backend.redis.hook.message.publish.1': JSON.stringify({ topic: 'bp/#', action: { function: 'on_message_publish' }, pool: 'pool1', mode: 'backpressure' }),
      // A command Redis refuses for the topic's key (a string, not a hash): the write fails.
      'backend.redis.hook.message.publish.2': JSON.stringify({ topic: 'bad/#', action: { commands: ['HSET wrongtype:${topic} f ${payload}'] }, pool: 'pool1', mode: 'backpressure' }),
    } as never,
  });
  const or = new Redis({ host: '127.0.0.1', port: own.port, maxRetriesPerRequest: 1 });
  try {
    const pub = await client(tb, { clientId: 'bp-pub', protocolVersion: 5 });
    for (let i = 0; i < 5; i++) {
      await pub.publishAsync('bp/t', `w${i}`, { qos: 1 });
      // No polling: when PUBACK arrives the message is in Redis already.
      assert.equal(await or.zcard('mqtt:msg:bp/t'), i + 1);
    }
    await pub.publishAsync('other/t', 'not held', { qos: 1 }); // topics no rule selects are not held

    await own.kill();
    let acked = false;
    const pending = pub.publishAsync('bp/t', 'while down', { qos: 1 }).then(() => (acked = true));
    await sleep(1500);
    assert.equal(acked, false, 'PUBACK held while Redis is down');
    await own.start();
    await pending;
    assert.equal(await or.zcard('mqtt:msg:bp/t'), 1, 'written (to the restarted, empty Redis) before the PUBACK');

    await or.set('wrongtype:bad/x', 'a string');
    await assert.rejects(pub.publishAsync('bad/x', 'fails', { qos: 1 }), (e: Error & { code?: number }) => e.code === 0x80 || /Unspecified|0x80|128/i.test(e.message));
    assert.equal(tb.broker.metrics.backendRules['backend.redis.hook.message.publish.2']?.failed, 1);
    await pub.endAsync();
    // 3.1.1 cannot refuse a PUBLISH: the connection closes unacknowledged, so the client sends it again.
    await or.set('wrongtype:bad/y', 'a string');
    const v3 = await client(tb, { clientId: 'bp-v3', protocolVersion: 4 });
    const closed = new Promise<void>((resolve) => v3.once('close', () => resolve()));
    let ackedV3 = false;
    v3.publish('bad/y', 'fails too', { qos: 1 }, (err) => (ackedV3 = !err));
    await closed;
    assert.equal(ackedV3, false, 'no PUBACK');
    v3.end(true);
  } finally {
    or.disconnect();
    await tb.close();
    await own.destroy();
  }
});

test('custom commands on every event: subscribed, unsubscribed, delivered (with the stored id), disconnected', async () => {
  await r.flushall();
  const tb = await startBroker({
    config: {
      'backend.redis.pool1.server': redis.server,
      'backend.redis.hook.client.connected.1': rule({ commands: ['RPUSH ev:${clientid} connected:${username}:${peerhost}'] }),
      'backend.redis.hook.session.subscribed.1': rule({ topic: 'ev/#', commands: ['RPUSH ev:${clientid} subscribed:${topic}:${qos}', 'HSET mqtt:sub:${clientid} ${topic} ${qos}'] }),
      'backend.redis.hook.session.unsubscribed.1': rule({ topic: 'ev/#', commands: ['RPUSH ev:${clientid} unsubscribed:${topic}', 'HDEL mqtt:sub:${clientid} ${topic}'] }),
      'backend.redis.hook.message.publish.1': rule({ topic: 'ev/#', function: 'on_message_publish' }),
      'backend.redis.hook.message.delivered.1': rule({ topic: 'ev/#', commands: ['RPUSH ev:${clientid} delivered:${topic}:${qos}:${msgid}'] }),
      'backend.redis.hook.client.disconnected.1': rule({ commands: ['RPUSH ev:${clientid} disconnected'] }),
    } as never,
  });
  try {
    const c = await client(tb, { clientId: 'rs-ev', username: 'bob' });
    await c.subscribeAsync('ev/t', { qos: 1 });
    await until('mqtt:sub written by the subscribed rule', async () => (await r.hget('mqtt:sub:rs-ev', 'ev/t')) === '1');
    const got = collect(c, 1);
    await c.publishAsync('ev/t', 'hi', { qos: 1 });
    await got;
    await c.unsubscribeAsync('ev/t');
    await c.endAsync();
    const events = await until('five events', async () => {
      const l = await r.lrange('ev:rs-ev', 0, -1);
      return l.length === 5 ? l : null;
    });
    const [id] = await r.zrange('mqtt:msg:ev/t', 0, -1);
    // Each event has its own queue: their order across events is not promised, only each one's content.
    assert.deepEqual([...events].sort(), ['connected:bob:127.0.0.1', `delivered:ev/t:1:${id}`, 'disconnected', 'subscribed:ev/t:1', 'unsubscribed:ev/t']);
    assert.equal(await r.exists('mqtt:sub:rs-ev'), 0);
  } finally {
    await tb.close();
  }
});
