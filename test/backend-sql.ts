/**
 * The SQL backend tests, one suite run against PostgreSQL (backend-pgsql.test.ts) and MariaDB
 * (backend-mysql.test.ts): EMQX 4.4's tables created at start, the built-in functions' rows,
 * proxy subscriptions from mqtt_sub, retained messages from mqtt_retain, custom statements with
 * bound placeholders (the injection payload stored verbatim), and the faults.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { capturedLogger, INJECTION, rule, until } from './backends.js';
import { client, collect, quiet, startBroker } from './helpers.js';
import { DB_NAME, DB_PASSWORD, startMariadb, startPostgres, type TestServer } from './servers.js';

type Kind = 'pgsql' | 'mysql';
type Row = Record<string, unknown>;

interface Db {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  close(): Promise<void>;
}

const USER: Record<Kind, string> = { pgsql: 'postgres', mysql: 'strata' };

async function connectDb(kind: Kind, s: TestServer): Promise<Db> {
  if (kind === 'pgsql') {
    const c = new pg.Client({ host: '127.0.0.1', port: s.port, user: 'postgres', password: DB_PASSWORD, database: DB_NAME });
    await c.connect();
    c.on('error', () => undefined);
    return { query: async (sql, params) => (await c.query(sql.replace(/\?/g, ((n) => () => `$${++n}`)(0)), params)).rows as Row[], close: () => c.end() };
  }
  const c = await mysql.createConnection({ host: '127.0.0.1', port: s.port, user: 'strata', password: DB_PASSWORD, database: DB_NAME });
  c.on('error', () => undefined);
  return { query: async (sql, params) => (await c.query(sql, params))[0] as Row[], close: () => c.end() };
}

export function sqlSuite(kind: Kind): void {
  let server: TestServer;
  let db: Db;
  const start = kind === 'pgsql' ? startPostgres : startMariadb;
  const pool = (s: TestServer, name = 'pool1', extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    [`backend.${kind}.${name}.server`]: s.server,
    [`backend.${kind}.${name}.username`]: USER[kind],
    [`backend.${kind}.${name}.password`]: DB_PASSWORD,
    [`backend.${kind}.${name}.database`]: DB_NAME,
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`backend.${kind}.${name}.${k}`, v])),
  });
  const hook = (event: string, n: number, r: Parameters<typeof rule>[0]): Record<string, string> => ({ [`backend.${kind}.hook.${event}.${n}`]: rule(r) });

  before(async () => {
    server = await start();
    db = await connectDb(kind, server);
  });
  after(async () => {
    await db?.close().catch(() => undefined);
    await server?.destroy();
  });

  const builtIns = (): Record<string, unknown> => ({
    ...pool(server),
    ...hook('client.connected', 1, { function: 'on_client_connected' }),
    ...hook('client.connected', 2, { function: 'on_subscribe_lookup' }),
    ...hook('client.disconnected', 1, { function: 'on_client_disconnected' }),
    ...hook('session.subscribed', 1, { topic: '#', function: 'on_retain_lookup' }),
    ...hook('message.publish', 1, { topic: '#', function: 'on_message_publish' }),
    ...hook('message.publish', 2, { topic: '#', function: 'on_message_retain' }),
    ...hook('message.publish', 3, { topic: '#', function: 'on_retain_delete' }),
    ...hook('message.acked', 1, { topic: '#', function: 'on_message_acked' }),
  });

  test(`${kind}: EMQX 4.4's tables are created at start, with their columns and the indexes lookups need`, async () => {
    const tb = await startBroker({ config: { ...pool(server), ...hook('client.connected', 1, { function: 'on_client_connected' }) } as never });
    try {
      const c = await client(tb, { clientId: `${kind}-schema` });
      await until('mqtt_client row', async () => (await db.query('SELECT clientid FROM mqtt_client WHERE clientid = ?', [`${kind}-schema`])).length === 1);
      await c.endAsync();
      const columns = async (table: string): Promise<string[]> => {
        const rows =
          kind === 'pgsql'
            ? await db.query("SELECT column_name AS c FROM information_schema.columns WHERE table_name = ? AND table_schema = 'public' ORDER BY ordinal_position", [table])
            : await db.query('SELECT column_name AS c FROM information_schema.columns WHERE table_name = ? AND table_schema = ? ORDER BY ordinal_position', [table, DB_NAME]);
        return rows.map((r) => String(r.c ?? r.C ?? r.COLUMN_NAME));
      };
      assert.deepEqual(await columns('mqtt_client'), ['id', 'clientid', 'state', 'node', 'online_at', 'offline_at', 'created']);
      assert.deepEqual(await columns('mqtt_sub'), ['id', 'clientid', 'topic', 'qos', 'created']);
      assert.deepEqual(await columns('mqtt_msg'), kind === 'pgsql' ? ['id', 'msgid', 'sender', 'topic', 'qos', 'retain', 'payload', 'arrived'] : ['id', 'msgid', 'topic', 'sender', 'node', 'qos', 'retain', 'payload', 'arrived']);
      assert.deepEqual(await columns('mqtt_retain'), kind === 'pgsql' ? ['id', 'topic', 'msgid', 'sender', 'qos', 'payload', 'arrived'] : ['id', 'topic', 'msgid', 'sender', 'node', 'qos', 'payload', 'arrived']);
      assert.deepEqual(await columns('mqtt_acked'), ['id', 'clientid', 'topic', 'mid', 'created']);
      const indexes =
        kind === 'pgsql'
          ? (await db.query("SELECT indexname AS i FROM pg_indexes WHERE tablename = 'mqtt_msg'")).map((r) => String(r.i))
          : (await db.query('SELECT DISTINCT index_name AS i FROM information_schema.statistics WHERE table_name = ? AND table_schema = ?', [`mqtt_msg`, DB_NAME])).map((r) => String(r.i ?? r.I ?? r.INDEX_NAME));
      assert.ok(indexes.includes('mqtt_msg_topic_idx') && indexes.includes('mqtt_msg_msgid_idx'), indexes.join(','));
    } finally {
      await tb.close();
    }
    // A second start finds the tables there and changes nothing.
    const again = await startBroker({ config: { ...pool(server), ...hook('client.connected', 1, { function: 'on_client_connected' }) } as never });
    try {
      const c = await client(again, { clientId: `${kind}-schema-2` });
      await until('second row', async () => (await db.query('SELECT clientid FROM mqtt_client WHERE clientid = ?', [`${kind}-schema-2`])).length === 1);
      await c.endAsync();
    } finally {
      await again.close();
    }
  });

  test(`${kind}: built-in functions — mqtt_client online/offline, mqtt_msg with EMQX ids, mqtt_retain set and deleted, mqtt_acked`, async () => {
    const tb = await startBroker({ config: { ...builtIns(), 'node.name': 'strata@sql' } as never });
    try {
      const sub = await client(tb, { clientId: `${kind}-sub` });
      const online = await until('mqtt_client online', async () => (await db.query('SELECT state, node, online_at, offline_at FROM mqtt_client WHERE clientid = ?', [`${kind}-sub`]))[0]);
      assert.equal(Number(online.state), 1);
      assert.equal(online.node, 'strata@sql');
      assert.ok(online.online_at instanceof Date);
      assert.equal(online.offline_at, null);

      await sub.subscribeAsync('sq/#', { qos: 1 });
      const pub = await client(tb, { clientId: `${kind}-pub` });
      const got = collect(sub, 2);
      await pub.publishAsync('sq/t', 'hello', { qos: 1 });
      await pub.publishAsync('sq/t', 'world', { qos: 2 });
      await got;
      const rows = await until('two mqtt_msg rows', async () => {
        const r = await db.query('SELECT id, msgid, sender, topic, qos, retain, payload, arrived FROM mqtt_msg WHERE topic = ?', ['sq/t']);
        return r.length === 2 ? r : null;
      });
      // In msgid order (time-ordered ids, compared as bytes: MySQL's default collation ignores case);
      // the rows' own ids follow insert order, which pool_size connections may swap.
      rows.sort((x, y) => (String(x.msgid) < String(y.msgid) ? -1 : 1));
      assert.deepEqual(
        rows.map((r) => [r.sender, r.topic, Number(r.qos), Number(r.retain), Buffer.isBuffer(r.payload) ? r.payload.toString() : r.payload]),
        [
          [`${kind}-pub`, 'sq/t', 1, 0, 'hello'],
          [`${kind}-pub`, 'sq/t', 2, 0, 'world'],
        ],
      );
      for (const r of rows) assert.match(String(r.msgid), /^[0-9A-Za-z]{20,22}$/);
      assert.ok(String(rows[0]?.msgid) < String(rows[1]?.msgid));
      assert.ok(rows[0]?.arrived instanceof Date);
      // mqtt_acked: the subscriber's read position on the topic is the mqtt_msg id of the last message it acknowledged.
      const last = Math.max(Number(rows[0]?.id), Number(rows[1]?.id));
      await until('mqtt_acked', async () => Number((await db.query('SELECT mid FROM mqtt_acked WHERE clientid = ? AND topic = ?', [`${kind}-sub`, 'sq/t']))[0]?.mid) === last);

      await pub.publishAsync('sq/ret', 'kept', { qos: 1, retain: true });
      await until('mqtt_retain row', async () => (await db.query('SELECT sender FROM mqtt_retain WHERE topic = ?', ['sq/ret']))[0]?.sender === `${kind}-pub`);
      await pub.publishAsync('sq/ret', 'kept again', { qos: 0, retain: true });
      await until('mqtt_retain updated', async () => {
        const r = (await db.query('SELECT payload, qos FROM mqtt_retain WHERE topic = ?', ['sq/ret']))[0];
        return r && String(r.payload) === 'kept again' && Number(r.qos) === 0;
      });
      await pub.publishAsync('sq/ret', '', { qos: 1, retain: true });
      await until('mqtt_retain deleted', async () => (await db.query('SELECT topic FROM mqtt_retain WHERE topic = ?', ['sq/ret'])).length === 0);

      await pub.endAsync();
      sub.end(true);
      const off = await until('mqtt_client offline', async () => {
        const r = (await db.query('SELECT state, offline_at FROM mqtt_client WHERE clientid = ?', [`${kind}-sub`]))[0];
        return r && Number(r.state) === 0 ? r : null;
      });
      assert.ok(off.offline_at instanceof Date);
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: on_subscribe_lookup applies mqtt_sub at connect (ACL checked); on_retain_lookup sends mqtt_retain's messages`, async () => {
    const tb0 = await startBroker({ config: { ...pool(server), ...hook('client.connected', 1, { function: 'on_client_connected' }) } as never });
    const c0 = await client(tb0, { clientId: `${kind}-warmup` }); // the tables exist once a rule ran
    await until('tables', async () => (await db.query('SELECT clientid FROM mqtt_client WHERE clientid = ?', [`${kind}-warmup`])).length === 1);
    await c0.endAsync();
    await tb0.close();
    const cid = `${kind}-proxy`;
    for (const [topic, qos] of [['px/a', 1], ['px/+/b', 2], ['secret/x', 1]] as const) await db.query('INSERT INTO mqtt_sub (clientid, topic, qos) VALUES (?, ?, ?)', [cid, topic, qos]);
    await db.query('INSERT INTO mqtt_retain (topic, msgid, sender, qos, payload, arrived) VALUES (?, ?, ?, ?, ?, ?)', ['px/old', 'x', 'elsewhere', 1, 'from the table', new Date()]);
    const tb = await startBroker({ config: builtIns() as never, gates: { authorizeSubscribe: (_c, filter, qos) => (filter.startsWith('secret/') ? false : qos) } });
    try {
      const sub = await client(tb, { clientId: cid, protocolVersion: 5 });
      await until('proxy subscriptions', () => tb.broker.sessions.get(cid)?.subscriptions.size === 2);
      assert.deepEqual([...(tb.broker.sessions.get(cid)?.subscriptions.keys() ?? [])].sort(), ['px/+/b', 'px/a']);
      const pub = await client(tb);
      const got = collect(sub, 2);
      await pub.publishAsync('px/a', 'one', { qos: 1 });
      await pub.publishAsync('px/z/b', 'two', { qos: 2 });
      await pub.publishAsync('secret/x', 'never', { qos: 1 });
      assert.deepEqual((await got).map((m) => [m.topic, m.payload.toString(), m.packet.qos]), [['px/a', 'one', 1], ['px/z/b', 'two', 2]]);
      assert.deepEqual(await quiet(sub, 200), []);
      const ret = collect(sub, 1);
      await sub.subscribeAsync('px/#', { qos: 1 });
      const [m] = await ret;
      assert.deepEqual([m?.topic, m?.payload.toString(), m?.packet.retain], ['px/old', 'from the table', true]);
      await pub.endAsync();
      await sub.endAsync();
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: on_message_fetch gives a subscriber the stored QoS > 0 messages after its mqtt_acked position, per topic, wildcards too`, async () => {
    const tb = await startBroker({
      config: {
        ...pool(server),
        ...hook('message.publish', 1, { topic: 'f/#', function: 'on_message_publish' }),
        ...hook('session.subscribed', 1, { topic: 'f/#', function: 'on_message_fetch' }),
        ...hook('message.acked', 1, { topic: 'f/#', function: 'on_message_acked' }),
      } as never,
    });
    try {
      const texts = (ms: { topic: string; payload: Buffer }[]): string[] => ms.map((m) => `${m.topic}:${m.payload.toString()}`).sort();
      const pub = await client(tb, { clientId: `${kind}-fpub` });
      await pub.publishAsync('f/a', 'n1', { qos: 1 });
      await pub.publishAsync('f/a', 'n2', { qos: 2 });
      await pub.publishAsync('f/b', 'n3', { qos: 1 });
      await pub.publishAsync('f/a', 'qos0', { qos: 0 });
      await until('4 rows', async () => (await db.query('SELECT id FROM mqtt_msg WHERE topic LIKE ?', ['f/%'])).length === 4);
      const a = await client(tb, { clientId: `${kind}-fa` });
      let got = collect(a, 3);
      await a.subscribeAsync('f/#', { qos: 2 });
      assert.deepEqual(texts(await got), ['f/a:n1', 'f/a:n2', 'f/b:n3']);
      assert.deepEqual(await quiet(a, 150), []);
      // The position is the largest mqtt_msg id acknowledged (inserts on several connections may finish in either order).
      const n2 = (await db.query('SELECT MAX(id) AS id FROM mqtt_msg WHERE topic = ? AND qos > 0', ['f/a']))[0]?.id;
      await until('mqtt_acked position', async () => Number((await db.query('SELECT mid FROM mqtt_acked WHERE clientid = ? AND topic = ?', [`${kind}-fa`, 'f/a']))[0]?.mid) === Number(n2));
      await a.endAsync();
      await pub.publishAsync('f/a', 'n4', { qos: 1 });
      await until('5 rows', async () => (await db.query('SELECT id FROM mqtt_msg WHERE topic LIKE ?', ['f/%'])).length === 5);
      const a2 = await client(tb, { clientId: `${kind}-fa` });
      got = collect(a2, 1);
      await a2.subscribeAsync('f/a', { qos: 1 });
      assert.deepEqual(texts(await got), ['f/a:n4']);
      assert.deepEqual(await quiet(a2, 150), []);
      const b = await client(tb, { clientId: `${kind}-fb` });
      got = collect(b, 4);
      await b.subscribeAsync('f/+', { qos: 1 });
      assert.deepEqual(texts(await got), ['f/a:n1', 'f/a:n2', 'f/a:n4', 'f/b:n3']);
      for (const c of [pub, a2, b]) await c.endAsync();
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: custom statements on every event — session.subscribed / unsubscribed (EMQX's mqtt_acked clean-up), message.delivered, client.disconnected`, async () => {
    await db.query(kind === 'pgsql' ? 'CREATE TABLE IF NOT EXISTS event_log (event varchar(40), clientid varchar(64), username varchar(64), peerhost varchar(64), topic varchar(200), qos int, msgid varchar(64))' : 'CREATE TABLE IF NOT EXISTS event_log (event varchar(40), clientid varchar(64), username varchar(64), peerhost varchar(64), topic varchar(200), qos int, msgid varchar(64))');
    const log = (event: string): string => `INSERT INTO event_log (event, clientid, username, peerhost, topic, qos, msgid) VALUES ('${event}', \${clientid}, \${username}, \${peerhost}, \${topic}, \${qos}, \${msgid})`;
    const tb = await startBroker({
      config: {
        ...pool(server),
        ...hook('client.connected', 1, { sql: [log('connected')] }),
        ...hook('session.subscribed', 1, { topic: 'ev/#', sql: [log('subscribed')] }),
        ...hook('session.unsubscribed', 1, { topic: 'ev/#', sql: [log('unsubscribed'), 'DELETE FROM mqtt_acked WHERE clientid = ${clientid} AND topic = ${topic}'] }),
        ...hook('message.publish', 1, { topic: 'ev/#', function: 'on_message_publish' }),
        ...hook('message.delivered', 1, { topic: 'ev/#', sql: [log('delivered')] }),
        ...hook('message.acked', 1, { topic: 'ev/#', function: 'on_message_acked' }),
        ...hook('client.disconnected', 1, { sql: [log('disconnected')] }),
      } as never,
    });
    try {
      const c = await client(tb, { clientId: `${kind}-ev`, username: 'alice' });
      await c.subscribeAsync('ev/t', { qos: 1 });
      await c.subscribeAsync('other/t', { qos: 1 }); // not selected by the rule's topic
      const got = collect(c, 1);
      await c.publishAsync('ev/t', 'hi', { qos: 1 });
      await got;
      await until('mqtt_acked row', async () => (await db.query('SELECT mid FROM mqtt_acked WHERE clientid = ? AND topic = ?', [`${kind}-ev`, 'ev/t'])).length === 1);
      await c.unsubscribeAsync('ev/t');
      await until('mqtt_acked row deleted on unsubscribe', async () => (await db.query('SELECT mid FROM mqtt_acked WHERE clientid = ? AND topic = ?', [`${kind}-ev`, 'ev/t'])).length === 0);
      await c.endAsync();
      const rows = await until('every event logged', async () => {
        const r = await db.query('SELECT event, clientid, username, peerhost, topic, qos, msgid FROM event_log WHERE clientid = ?', [`${kind}-ev`]);
        return r.length === 5 ? r : null;
      });
      const by = (e: string): Row | undefined => rows.find((r) => r.event === e);
      assert.deepEqual([...rows.map((r) => String(r.event))].sort(), ['connected', 'delivered', 'disconnected', 'subscribed', 'unsubscribed']);
      assert.equal(by('connected')?.username, 'alice');
      assert.equal(by('connected')?.peerhost, '127.0.0.1');
      assert.equal(by('connected')?.topic, null, 'absent values bind as NULL');
      assert.deepEqual([by('subscribed')?.topic, Number(by('subscribed')?.qos)], ['ev/t', 1]);
      assert.equal(by('unsubscribed')?.topic, 'ev/t');
      const stored = (await db.query('SELECT msgid FROM mqtt_msg WHERE topic = ?', ['ev/t']))[0]?.msgid;
      assert.deepEqual([by('delivered')?.topic, Number(by('delivered')?.qos), by('delivered')?.msgid], ['ev/t', 1, stored], 'the delivered message has the id it was stored under');
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: "mode": "backpressure" — when PUBACK arrives the row is there`, async () => {
    const tb = await startBroker({ config: { ...pool(server), [`backend.${kind}.hook.message.publish.1`]: JSON.stringify({ topic: 'bp/#', action: { function: 'on_message_publish' }, pool: 'pool1', mode: 'backpressure' }) } as never });
    try {
      const pub = await client(tb, { clientId: `${kind}-bp` });
      for (let i = 0; i < 5; i++) {
        await pub.publishAsync('bp/sql', `b${i}`, { qos: 1 });
        assert.equal((await db.query('SELECT id FROM mqtt_msg WHERE topic = ?', ['bp/sql'])).length, i + 1, 'no polling: written before the PUBACK');
      }
      await pub.endAsync();
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: custom statements bind \${…} as parameters — "${INJECTION}" is stored verbatim and mqtt_msg survives`, async () => {
    await db.query(kind === 'pgsql' ? 'CREATE TABLE IF NOT EXISTS custom_log (clientid varchar(64), topic varchar(200), payload text, qos int, node varchar(64), ts bigint)' : 'CREATE TABLE IF NOT EXISTS custom_log (clientid varchar(64), topic varchar(200), payload blob, qos int, node varchar(64), ts bigint)');
    const tb = await startBroker({
      config: {
        ...pool(server),
        ...hook('message.publish', 1, { topic: 'inj/#', sql: ['INSERT INTO custom_log (clientid, topic, payload, qos, node, ts) VALUES (${clientid}, ${topic}, ${payload}, ${qos}, ${node}, ${timestamp})', 'INSERT INTO mqtt_msg (msgid, sender, topic, qos, retain, payload, arrived) VALUES (${msgid}, ${clientid}, ${topic}, ${qos}, 0, ${payload}, CURRENT_TIMESTAMP)'] }),
      } as never,
    });
    try {
      const pub = await client(tb, { clientId: "o'brien" });
      const before = Date.now();
      await pub.publishAsync("inj/'t", INJECTION, { qos: 1 });
      await pub.publishAsync('inj/2', "a'b\\c", { qos: 1 });
      const rows = await until('custom_log rows', async () => {
        const r = await db.query('SELECT clientid, topic, payload, qos, node, ts FROM custom_log');
        return r.length === 2 ? r : null;
      });
      // By topic, in code-unit order: both may carry the same millisecond (ORDER BY ts left them
      // in either order: a CI failure), and a database's collation may ignore the apostrophe.
      rows.sort((a, b) => (String(a.topic) < String(b.topic) ? -1 : 1));
      const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : String(v));
      assert.deepEqual(rows.map((r) => [r.clientid, r.topic, text(r.payload), Number(r.qos), r.node]), [
        ["o'brien", "inj/'t", INJECTION, 1, 'stratamq@127.0.0.1'],
        ["o'brien", 'inj/2', "a'b\\c", 1, 'stratamq@127.0.0.1'],
      ]);
      assert.ok(Number(rows[0]?.ts) >= before - 1000 && Number(rows[0]?.ts) <= Date.now(), 'timestamp in ms');
      const stored = await db.query('SELECT payload FROM mqtt_msg WHERE topic = ?', ["inj/'t"]);
      assert.equal(text(stored[0]?.payload), INJECTION, 'mqtt_msg is still there, holding the payload as text');
      await pub.endAsync();
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: down at start, then killed mid-run — MQTT unaffected, events wait (bounded) and are written when the server is back`, async () => {
    await server.kill();
    const log = capturedLogger();
    const tb = await startBroker({ logger: log.logger, config: { ...pool(server, 'pool1', { max_queued: 20, pool_size: 2, max_inflight: 2 }), ...hook('message.publish', 1, { topic: 'fault/#', function: 'on_message_publish' }) } as never });
    try {
      await until('unavailable logged', () => log.has(new RegExp(`backend ${kind} pool \\\\"pool1\\\\" unavailable`)));
      const sub = await client(tb);
      await sub.subscribeAsync('fault/#', { qos: 1 });
      const pub = await client(tb, { clientId: `${kind}-fault` });
      const got = collect(sub, 5);
      for (let i = 0; i < 5; i++) await pub.publishAsync('fault/start', `s${i}`, { qos: 1 });
      assert.equal((await got).length, 5);
      await server.start();
      await db.close().catch(() => undefined);
      db = await connectDb(kind, server);
      await until('the 5 written after the start', async () => (await db.query('SELECT msgid FROM mqtt_msg WHERE topic = ?', ['fault/start'])).length === 5, 20_000);
      assert.ok(log.has(new RegExp(`backend ${kind} pool \\\\"pool1\\\\" connected`)));
      await db.close().catch(() => undefined);

      await server.kill();
      const got2 = collect(sub, 60, 20_000);
      for (let i = 0; i < 60; i++) await pub.publishAsync('fault/mid', `m${i}`, { qos: 1 });
      assert.equal((await got2).length, 60, 'delivery goes on while the database is down');
      const c = tb.broker.metrics.consumers[`backend.${kind}.pool1.message.publish`] as { queued: number; dropped: number; waiting: number; handled: number; failed: number };
      assert.ok(c.waiting <= 20, JSON.stringify(c));
      assert.ok(c.dropped >= 60 - 20 - 2, JSON.stringify(c));
      const queuedDuring = c.queued - 5;
      await server.start();
      db = await connectDb(kind, server);
      await until('the queued events written after the restart', async () => (await db.query('SELECT msgid FROM mqtt_msg WHERE topic = ?', ['fault/mid'])).length === queuedDuring, 20_000);
      assert.equal(c.handled, c.queued);
      assert.equal(c.failed, 0);
      assert.equal(c.queued + c.dropped, 65);
      await pub.endAsync();
      await sub.endAsync();
    } finally {
      await tb.close();
    }
  });

  test(`${kind}: wrong credentials — a clear error naming the pool; MQTT keeps working`, async () => {
    const log = capturedLogger();
    const tb = await startBroker({ logger: log.logger, config: { ...pool(server, 'creds', { password: 'not-the-password' }), ...hook('client.connected', 1, { function: 'on_client_connected', pool: 'creds' }) } as never });
    try {
      const c = await client(tb);
      await until('the login error logged', () => log.has(new RegExp(`backend ${kind} pool \\\\"creds\\\\" unavailable: .*(password authentication failed|Access denied)`)));
      assert.equal(tb.broker.metrics.backendPools[`${kind}.creds`]?.up, false);
      await c.endAsync();
    } finally {
      await tb.close();
    }
  });
}
