/**
 * Operating a running broker (src/admin/): the admin API with no token, a wrong one and the
 * right one; every route against real MQTT.js clients and persistent sessions away with queued
 * messages; kick (v5 DISCONNECT 0x98), discard (sessionPresent false after), retained delete
 * (gone after a restart too); the OpenAPI document; /metrics parsed as Prometheus text; the
 * $SYS tree received by a subscriber and never written to the store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IConnackPacket, IDisconnectPacket } from 'mqtt-packet';
import parsePrometheus from 'parse-prometheus-text-format';
import { client, collect, persistent, quiet, sleep, startBroker, type TestBroker, tempDir, unconnected } from '../helpers.js';

let tb: TestBroker;
let base: string;
const store = tempDir('strata-admin-');
const TOKEN = 'test-token-123';
const auth = { authorization: `Bearer ${TOKEN}` };

async function get(path: string, headers: Record<string, string> = auth): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, { headers });
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
}

async function del(path: string): Promise<number> {
  return (await fetch(`${base}${path}`, { method: 'DELETE', headers: auth })).status;
}

async function brokerOn(dir: string): Promise<TestBroker> {
  const b = await startBroker({ dataDir: dir, config: { 'admin.port': 0, 'admin.token': TOKEN, 'sys.interval': 1 } });
  base = `http://127.0.0.1:${b.broker.addresses.admin}`;
  return b;
}

before(async () => {
  tb = await brokerOn(store.dir);
});
after(async () => {
  await tb.close();
  store.remove();
});

describe('admin API', () => {
  test('the token: none → 401, wrong → 401, right → 200; /health and /ready need none; admin port in listen()', async () => {
    assert.equal(typeof tb.broker.addresses.admin, 'number');
    const none = await get('/api/v1/clients', {});
    assert.equal(none.status, 401);
    assert.match(none.body.message, /bearer token is required/);
    assert.equal((await get('/api/v1/clients', { authorization: 'Bearer nope' })).status, 401);
    assert.equal((await get('/metrics', {})).status, 401);
    assert.equal((await get('/api/v1/clients')).status, 200);
    assert.deepEqual((await get('/health', {})).body, { status: 'ok' });
    const ready = await get('/ready', {});
    assert.equal(ready.status, 200);
    assert.equal(ready.body.store, 'open');
    assert.equal(ready.body.listeners.tcp, tb.port);
  });

  test('clients, sessions, subscriptions against real clients and a persistent session away with queued messages', async () => {
    const away = await client(tb, { ...persistent(5, 'adm-away'), clientId: 'adm-away' });
    await away.subscribeAsync('adm/q/#', { qos: 1 });
    await away.endAsync();
    const live = await client(tb, { protocolVersion: 5, clientId: 'adm-live', username: 'alice' });
    await live.subscribeAsync('adm/live', { qos: 0 });
    for (let i = 0; i < 3; i++) await live.publishAsync(`adm/q/${i}`, `m${i}`, { qos: 1 });

    const all = (await get('/api/v1/clients?clientid=adm-')).body;
    assert.deepEqual(
      all.items.map((c: any) => [c.clientId, c.connected]),
      [
        ['adm-away', false],
        ['adm-live', true],
      ],
    );
    assert.deepEqual((await get('/api/v1/clients?username=alice')).body.items.map((c: any) => c.clientId), ['adm-live']);
    assert.deepEqual((await get('/api/v1/clients?clientid=adm-&connected=false')).body.items.map((c: any) => c.clientId), ['adm-away']);
    const paged = (await get('/api/v1/clients?clientid=adm-&limit=1&page=2')).body;
    assert.equal(paged.total, 2);
    assert.deepEqual(paged.items.map((c: any) => c.clientId), ['adm-live']);
    const one = (await get('/api/v1/clients/adm-live')).body;
    assert.equal(one.username, 'alice');
    assert.equal(one.protocolVersion, 5);
    const missing = await get('/api/v1/clients/nobody');
    assert.equal(missing.status, 404);
    assert.match(missing.body.message, /nobody/);
    assert.equal((await get('/api/v1/clients?connected=maybe')).status, 400);
    assert.equal((await get('/api/v1/clients?limit=0')).status, 400);
    assert.equal((await get('/api/v1/clients?bogus=1')).status, 400);

    const s = (await get('/api/v1/sessions/adm-away')).body;
    assert.equal(s.persistent, true);
    assert.equal(s.connected, false);
    assert.equal(s.queued, 3);
    assert.equal(s.inflight, 0);
    assert.deepEqual(
      s.messages.map((m: any) => [m.topic, m.payload, m.qos, m.inflight]),
      [0, 1, 2].map((i) => [`adm/q/${i}`, `m${i}`, 1, false]),
    );
    assert.deepEqual(s.subscriptionList.map((x: any) => [x.filter, x.qos]), [['adm/q/#', 1]]);
    assert.ok((await get('/api/v1/sessions')).body.items.some((x: any) => x.clientId === 'adm-away'));
    const subs = (await get('/api/v1/subscriptions?clientid=adm-live')).body;
    assert.deepEqual(subs.items.map((x: any) => [x.clientId, x.filter, x.qos]), [['adm-live', 'adm/live', 0]]);
    assert.ok((await get('/api/v1/subscriptions')).body.total >= 2);
    assert.equal((await get('/api/v1/subscriptions?clientid=nobody')).status, 404);
    await live.endAsync();
  });

  test('kick disconnects a v5 client with 0x98 Administrative action; the session stays', async () => {
    const c = await client(tb, { ...persistent(5, 'adm-kick'), clientId: 'adm-kick' });
    const gone = new Promise<IDisconnectPacket>((resolve) => c.once('disconnect', resolve));
    assert.equal(await del('/api/v1/clients/adm-kick'), 204);
    assert.equal((await gone).reasonCode, 0x98);
    await sleep(50);
    const after = (await get('/api/v1/sessions/adm-kick')).body;
    assert.equal(after.connected, false);
    assert.equal(await del('/api/v1/clients/adm-kick'), 404); // not connected now
    c.end(true);
  });

  test('discard removes a session (connected or not): a reconnect gets sessionPresent false', async () => {
    const c = await client(tb, { ...persistent(5, 'adm-disc'), clientId: 'adm-disc' });
    await c.subscribeAsync('adm/disc', { qos: 1 });
    await c.endAsync();
    const again = await client(tb, { ...persistent(5, 'adm-disc'), clientId: 'adm-disc' });
    assert.equal(again.connected, true);
    const gone = new Promise<IDisconnectPacket>((resolve) => again.once('disconnect', resolve));
    assert.equal(await del('/api/v1/sessions/adm-disc'), 204);
    assert.equal((await gone).reasonCode, 0x98);
    assert.equal((await get('/api/v1/sessions/adm-disc')).status, 404);
    assert.deepEqual(await tb.broker.store?.messages.getSessionMessages('adm-disc', 10), []);
    again.end(true);
    const fresh = unconnected(tb, { ...persistent(5, 'adm-disc'), clientId: 'adm-disc' });
    const connack = new Promise<IConnackPacket>((resolve) => fresh.once('connect', resolve));
    fresh.connect();
    assert.equal((await connack).sessionPresent, false);
    await fresh.endAsync();
  });

  test('retained: list by filter, delete a topic (subscribers get no retained message after, nor after a restart)', async () => {
    const p = await client(tb, { clientId: 'adm-ret' });
    await p.publishAsync('adm/r/a', 'A', { qos: 1, retain: true });
    await p.publishAsync('adm/r/b', 'B', { qos: 1, retain: true });
    await p.endAsync();
    const list = (await get(`/api/v1/retained?filter=${encodeURIComponent('adm/r/+')}`)).body;
    assert.deepEqual(list.items.map((m: any) => [m.topic, m.payload, m.publisher]), [
      ['adm/r/a', 'A', 'adm-ret'],
      ['adm/r/b', 'B', 'adm-ret'],
    ]);
    assert.equal((await get(`/api/v1/retained?filter=${encodeURIComponent('a/#/b')}`)).status, 400);
    // Pages by topic: the topics are listed whole, each page's messages read alone.
    const q = await client(tb, { clientId: 'adm-pages' });
    for (let i = 0; i < 25; i++) await q.publishAsync(`adm/p/${String(i).padStart(2, '0')}`, `m${i}`, { qos: 1, retain: true });
    await q.endAsync();
    const p2 = (await get(`/api/v1/retained?filter=${encodeURIComponent('adm/p/#')}&page=2&limit=10`)).body;
    assert.equal(p2.total, 25);
    assert.deepEqual(p2.items.map((m: any) => [m.topic, m.payload]), Array.from({ length: 10 }, (_, k) => [`adm/p/${10 + k}`, `m${10 + k}`]));
    assert.equal((await get(`/api/v1/retained?filter=${encodeURIComponent('adm/p/#')}&page=3&limit=10`)).body.items.length, 5);
    assert.equal(await del('/api/v1/retained/adm/r/a'), 204);
    assert.equal(await del('/api/v1/retained/adm/r/a'), 404);
    assert.deepEqual((await get(`/api/v1/retained?filter=${encodeURIComponent('adm/r/#')}`)).body.items.map((m: any) => m.topic), ['adm/r/b']);
    await tb.close();
    tb = await brokerOn(store.dir);
    const s = await client(tb, { clientId: 'adm-ret-sub' });
    const got = collect(s, 1);
    await s.subscribeAsync('adm/r/#', { qos: 1 });
    assert.deepEqual((await got).map((m) => m.topic), ['adm/r/b']);
    assert.deepEqual(await quiet(s, 100), []);
    await s.endAsync();
  });

  test('storage (as ds info) and the OpenAPI document listing the routes', async () => {
    const st = (await get('/api/v1/storage')).body;
    assert.match(st.siteId, /^[0-9a-f]{32}$/);
    assert.equal(st.shards.length, 2);
    assert.ok(Array.isArray(st.losses));
    const doc = (await get('/api/v1/openapi.json')).body;
    assert.equal(doc.openapi, '3.0.3');
    for (const path of ['/api/v1/clients', '/api/v1/clients/{clientid}', '/api/v1/sessions', '/api/v1/sessions/{clientid}', '/api/v1/subscriptions', '/api/v1/retained', '/api/v1/storage', '/metrics', '/health', '/ready']) {
      assert.ok(doc.paths[path], `OpenAPI lists ${path}`);
    }
    assert.ok(doc.paths['/api/v1/clients/{clientid}'].delete);
    assert.ok(doc.components.securitySchemes.bearer);
  });

  test('/metrics: Prometheus text that parses, values move when messages flow', async () => {
    const scrape = async (): Promise<Map<string, number>> => {
      const res = await get('/metrics');
      assert.equal(res.status, 200);
      const out = new Map<string, number>();
      for (const f of parsePrometheus(res.body as string)) {
        for (const m of f.metrics) {
          const labels = Object.entries(m.labels ?? {})
            .map(([k, v]) => `${k}=${v}`)
            .join(',');
          if (m.value !== undefined) out.set(labels ? `${f.name}{${labels}}` : f.name, Number(m.value));
          const h = m as { buckets?: Record<string, string>; count?: string; sum?: string };
          if (h.buckets) {
            out.set(`${f.name}_count`, Number(h.count));
            out.set(`${f.name}_sum`, Number(h.sum));
            for (const [le, n] of Object.entries(h.buckets)) out.set(`${f.name}_bucket{le=${le}}`, Number(n));
          }
        }
      }
      return out;
    };
    const before = await scrape();
    assert.ok(before.has('nodejs_eventloop_lag_seconds'), 'default metrics: event-loop lag');
    const sub = await client(tb, { clientId: 'adm-m-sub' });
    await sub.subscribeAsync('adm/m', { qos: 1 });
    const small = await client(tb, { clientId: 'adm-m-small', protocolVersion: 5, properties: { maximumPacketSize: 64 } });
    await small.subscribeAsync('adm/m', { qos: 1 });
    const pub = await client(tb, { clientId: 'adm-m-pub' });
    const got = collect(sub, 5);
    for (let i = 0; i < 5; i++) await pub.publishAsync('adm/m', 'x'.repeat(100), { qos: 1 });
    await got;
    // A refusal by a limit shows, by its reason.
    await pub.publishAsync(Array.from({ length: 200 }, () => 'l').join('/'), 'deep', { qos: 1 }); // 3.1.1: acknowledged, dropped
    await pub.publishAsync('adm/m/retained', 'r', { qos: 1, retain: true }); // a metadata commit before the PUBACK
    const now = await scrape();
    const moved = (k: string): number => (now.get(k) ?? 0) - (before.get(k) ?? 0);
    assert.equal(moved('stratamq_messages_received_total{qos=1}'), 6, 'five, and the retained one');
    assert.equal(moved('stratamq_messages_sent_total{qos=1}'), 5);
    assert.equal(moved('stratamq_refused_total{reason=topicLevels}'), 1);
    assert.ok(now.has('stratamq_refused_total{reason=aclPublish}'));
    assert.ok(moved('stratamq_store_meta_commit_seconds_count') >= 1);
    assert.equal(now.get('stratamq_store_meta_commit_seconds_bucket{le=+Inf}'), now.get('stratamq_store_meta_commit_seconds_count'));
    assert.ok(now.has('stratamq_store_append_batch_size_bucket{le=1}'));
    assert.ok(moved('stratamq_bytes_received_total') >= 500);
    assert.ok(moved('stratamq_bytes_sent_total') >= 500);
    assert.equal(now.get('stratamq_connections'), (before.get('stratamq_connections') ?? 0) + 3);
    assert.ok((now.get('stratamq_store_bytes') ?? -1) >= 0);
    for (const k of ['stratamq_queue_depth_sum', 'stratamq_queue_depth_max', 'stratamq_inflight', 'stratamq_retained_messages', 'stratamq_native_drain_active', 'stratamq_messages_dropped_total{reason=queue_full}', 'stratamq_messages_dropped_total{reason=slow_consumer}']) assert.ok(now.has(k), k);
    assert.equal(moved('stratamq_messages_dropped_total{reason=too_large}'), 5, 'five too large for the small client');
    await Promise.all([sub.endAsync(), pub.endAsync(), small.endAsync()]);
  });

  test('$SYS/broker/... every sys.interval, retained, received by a subscriber; never written to the store', async () => {
    const s = await client(tb, { clientId: 'adm-sys' });
    const seen = new Map<string, string>();
    s.on('message', (topic, payload) => seen.set(topic, payload.toString()));
    await s.subscribeAsync('$SYS/broker/#', { qos: 1 });
    await sleep(1300); // retained ones at once, then one more interval
    for (const t of ['version', 'uptime', 'clients/connected', 'clients/total', 'clients/maximum', 'messages/received', 'messages/sent', 'bytes/received', 'bytes/sent', 'load/messages/received/1min', 'load/messages/received/5min', 'load/messages/received/15min', 'retained messages/count', 'subscriptions/count']) {
      assert.ok(seen.has(`$SYS/broker/${t}`), `$SYS/broker/${t}`);
    }
    assert.match(seen.get('$SYS/broker/version') as string, /^stratamq version /);
    assert.match(seen.get('$SYS/broker/uptime') as string, /^\d+ seconds$/);
    assert.ok(Number(seen.get('$SYS/broker/clients/connected')) >= 1);
    assert.deepEqual(await tb.broker.durable?.getRetainMessage('$SYS/#'), [], 'no $SYS retained message in the store');
    // A '#' subscriber does not get $SYS topics ([MQTT-4.7.2-1]).
    const all = await client(tb, { clientId: 'adm-all' });
    await all.subscribeAsync('#', { qos: 0 });
    assert.ok((await quiet(all, 1100)).every((t) => !t.startsWith('$SYS')));
    await all.endAsync();
    await s.endAsync();
  });
});
