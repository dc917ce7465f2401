/**
 * The message log's SQL sink (issue 18, msglog.sql_pool) against real PostgreSQL and MariaDB
 * servers: every logged message becomes one row of redismq's `redismq_message` (its columns and
 * indexes), ids equal to the log's; `tag` from the user property msglog.tag names; `status` in
 * redismq's codes from the entry's delivery counts (0 CREATE until a delivery completes, then 1
 * SUCCESS): written with the row, or updated later (with update_time) when a persistent session
 * that was away acknowledges it; the database going away (SIGKILL) does not slow the publishers
 * and the rows arrive once it is back; a broker restart resumes where the sink got to, with no
 * row written twice.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { client, persistent, sleep, startBroker, tempDir, type TestBroker, unconnected } from '../helpers.js';
import { DB_NAME, DB_PASSWORD, startMariadb, startPostgres, type TestServer } from '../servers.js';
import { until } from '../backends.js';
import { openReader, planQuery, entryJson } from '../../src/msglog/query.js';

type Kind = 'pgsql' | 'mysql';
type Row = Record<string, unknown>;

async function connectDb(kind: Kind, s: TestServer): Promise<{ query(sql: string): Promise<Row[]>; close(): Promise<void> }> {
  if (kind === 'pgsql') {
    const c = new pg.Client({ host: '127.0.0.1', port: s.port, user: 'postgres', password: DB_PASSWORD, database: DB_NAME });
    await c.connect();
    c.on('error', () => undefined);
    return { query: async (sql) => (await c.query(sql)).rows as Row[], close: () => c.end() };
  }
  const c = await mysql.createConnection({ host: '127.0.0.1', port: s.port, user: 'strata', password: DB_PASSWORD, database: DB_NAME });
  c.on('error', () => undefined);
  return { query: async (sql) => (await c.query(sql))[0] as Row[], close: () => c.end() };
}

/** A broker config logging to `s` through the SQL sink (pool `logdb`), with `msglog` keys of its own. */
function sinkConfig(kind: Kind, s: TestServer, msglog: Record<string, string>): Record<string, string> {
  return {
    ...msglog,
    'msglog.sql_pool': `${kind}.logdb`,
    [`backend.${kind}.logdb.server`]: s.server,
    [`backend.${kind}.logdb.username`]: kind === 'pgsql' ? 'postgres' : 'strata',
    [`backend.${kind}.logdb.password`]: DB_PASSWORD,
    [`backend.${kind}.logdb.database`]: DB_NAME,
  };
}

for (const kind of ['pgsql', 'mysql'] as const) {
  describe(`message log SQL sink: ${kind === 'pgsql' ? 'PostgreSQL' : 'MariaDB'}`, () => {
    const tmp = tempDir('strata-logsql-');
    let server: TestServer | null = null;
    let tb: TestBroker | null = null;
    after(async () => {
      await tb?.close().catch(() => undefined);
      await server?.destroy();
      tmp.remove();
    });

    test('rows in redismq\'s shape, once each; a database away never slows publishing; a restart resumes', async () => {
      server = await (kind === 'pgsql' ? startPostgres() : startMariadb());
      const s = server;
      const config = sinkConfig(kind, s, { 'msglog.topics': 'sq/#', 'msglog.key': 'order', 'msglog.tag': 'tag' });
      const dataDir = `${tmp.dir}/data`;
      tb = await startBroker({ dataDir, config });
      // sq/a has a subscriber that acknowledges; sq/bin and sq/late none now (sq/late: a persistent session away).
      const sub = await client(tb, { clientId: 'sql-sub' });
      await sub.subscribeAsync('sq/a', { qos: 1 });
      const away = await client(tb, persistent(5, 'sql-away'));
      await away.subscribeAsync('sq/late', { qos: 1 });
      await away.endAsync();
      const pub = await client(tb, { protocolVersion: 5, clientId: 'sql-pub' });
      for (let i = 0; i < 50; i++) await pub.publishAsync('sq/a', `m${i}`, { qos: 1, properties: i === 0 ? { userProperties: { order: 'o-1', tag: 'TagA' } } : {} });
      await pub.publishAsync('sq/bin', Buffer.from([0xff, 0x00]), { qos: 0 });
      await pub.publishAsync('sq/late', 'late', { qos: 1 });
      await pub.publishAsync('other/x', 'not logged', { qos: 1 });
      let db = await connectDb(kind, s);
      const count = async (): Promise<number> => Number((await db.query('SELECT COUNT(*) AS n FROM redismq_message'))[0]?.n ?? -1);
      await until('52 rows', async () => (await count().catch(() => 0)) === 52, 20000);
      const cols = (kind === 'pgsql' ? await db.query("SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'redismq_message' AND table_schema = 'public' ORDER BY ordinal_position") : await db.query(`SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'redismq_message' AND table_schema = '${DB_NAME}' ORDER BY ordinal_position`)).map((r) => String(r.c ?? r.C ?? r.COLUMN_NAME));
      assert.deepEqual(cols, ['id', 'queue', 'tag', 'key', 'body', 'virtual_queue_name', 'offset', 'header', 'status', 'create_time', 'update_time']);
      const idx = (kind === 'pgsql' ? await db.query("SELECT indexname AS i FROM pg_indexes WHERE tablename = 'redismq_message'") : await db.query(`SELECT DISTINCT index_name AS i FROM information_schema.statistics WHERE table_name = 'redismq_message' AND table_schema = '${DB_NAME}'`)).map((r) => String(r.i ?? r.I ?? r.INDEX_NAME));
      for (const want of ['queue', 'offset', 'create_time']) assert.ok(idx.some((i) => i.endsWith(want)), `an index on ${want}: ${idx.join(', ')}`);
      const q = kind === 'pgsql' ? 'SELECT id, queue, tag, "key" AS k, body, "offset" AS o, header, status, create_time, update_time FROM redismq_message ORDER BY "offset"' : 'SELECT id, queue, tag, `key` AS k, body, `offset` AS o, header, status, create_time, update_time FROM redismq_message ORDER BY `offset`';
      // Every sq/a row reaches SUCCESS (its subscriber acknowledged: written so, or updated).
      await until('sq/a rows SUCCESS', async () => (await db.query(q)).filter((r) => r.queue === 'sq/a' && Number(r.status) === 1).length === 50, 20000);
      const rows = await db.query(q);
      const store = tb.broker.durable?.store;
      assert.ok(store);
      const log = openReader(store, planQuery(store, { topic: 'sq/#' })).take(1000).map((e) => entryJson(e, 'order'));
      assert.deepEqual(rows.map((r) => String(r.id)), log.map((e) => e.id), 'one row per entry, the same ids');
      const first = rows[0] as Row;
      assert.equal(first.queue, 'sq/a');
      assert.equal(first.k, 'o-1', 'key: the user property msglog.key names');
      assert.equal(first.body, 'm0');
      assert.equal(first.tag, 'TagA', 'tag: the user property msglog.tag names');
      assert.equal((rows[1] as Row).tag, '', "no such property: redismq's default ''");
      assert.equal(Number(first.status), 1, 'SUCCESS: a delivery of it completed');
      assert.equal(Math.abs(new Date(first.create_time as string).getTime() - (log[0]?.ts ?? 0)) < 1000, true);
      assert.equal((rows[1] as Row).k, 'sql-pub');
      const bin = rows.find((r) => r.queue === 'sq/bin') as Row;
      assert.equal(bin.body, Buffer.from([0xff, 0x00]).toString('base64'));
      assert.equal(Number(bin.status), 0, 'CREATE: nobody got it');
      const late = rows.find((r) => r.queue === 'sq/late') as Row;
      assert.equal(Number(late.status), 0, 'CREATE: its only subscriber is away');

      // The persistent session comes back and acknowledges it: the row written before is updated.
      await sleep(50);
      const back = await client(tb, persistent(5, 'sql-away'));
      const lateRow = async (): Promise<Row | undefined> => (await db.query(q)).find((r) => r.queue === 'sq/late');
      await until('sq/late SUCCESS', async () => Number((await lateRow())?.status) === 1, 20000);
      const updated = (await lateRow()) as Row;
      assert.ok(new Date(updated.update_time as string).getTime() > new Date(late.update_time as string).getTime(), 'update_time moved with the status');
      await back.endAsync();
      assert.equal((JSON.parse(String(bin.header)) as { encoding: string }).encoding, 'base64');

      // The database goes away: publishing is not slowed; the rows come once it is back. (The test
      // servers run with synchronous_commit = off / no flush per commit: the kill waits until what
      // they acknowledged is on disk, or they would lose it themselves.)
      await db.close();
      await new Promise((r) => setTimeout(r, 1500));
      await s.kill();
      const t0 = Date.now();
      for (let i = 50; i < 150; i++) await pub.publishAsync('sq/a', `m${i}`, { qos: 1 });
      const took = Date.now() - t0;
      assert.ok(took < 3000, `100 QoS 1 publishes took ${took} ms with the database away`);
      await s.start();
      db = await connectDb(kind, s);
      await until('152 rows', async () => (await count().catch(() => 0)) === 152, 30000);

      // A restart resumes where the sink got to: nothing written twice.
      await pub.endAsync();
      await sub.endAsync();
      await tb.close();
      tb = await startBroker({ dataDir, config });
      const pub2 = await client(tb, { protocolVersion: 5, clientId: 'sql-pub' });
      for (let i = 150; i < 160; i++) await pub2.publishAsync('sq/a', `m${i}`, { qos: 1 });
      await until('162 rows', async () => (await count().catch(() => 0)) === 162, 20000);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await count(), 162);
      assert.equal(tb.broker.metrics.msglog.sqlRows, 10, 'the restarted sink wrote only the new ones');
      await pub2.endAsync();
      await db.close();
      await tb.close();
      tb = null;
    });

    test('status updates a run could not write (the database away when it stopped) are written by the next run', async () => {
      server ??= await (kind === 'pgsql' ? startPostgres() : startMariadb());
      const s = server;
      let db = await connectDb(kind, s);
      await db.query('DROP TABLE IF EXISTS redismq_message');
      await db.query('DROP TABLE IF EXISTS redismq_message_position');
      const config = sinkConfig(kind, s, { 'msglog.topics': 'rp/#' });
      const dataDir = `${tmp.dir}/repair`;
      tb = await startBroker({ dataDir, config });
      const away = await client(tb, persistent(5, 'rp-away'));
      await away.subscribeAsync('rp/t', { qos: 1 });
      await away.endAsync();
      const pub = await client(tb, { clientId: 'rp-pub' });
      for (let i = 0; i < 20; i++) await pub.publishAsync('rp/t', `r${i}`, { qos: 1 });
      await pub.endAsync();
      const statuses = async (queue = 'rp/t'): Promise<number[]> => (await db.query(`SELECT status FROM redismq_message WHERE queue = '${queue}' ORDER BY id`)).map((r) => Number(r.status));
      await until('20 rows', async () => (await statuses().catch(() => [])).length === 20, 20000);
      assert.deepEqual(await statuses(), Array<number>(20).fill(0), 'CREATE: the subscriber is away');

      // The database goes away; the subscriber comes back and acknowledges all 20; the broker stops
      // before the database is back: the 20 updates are not written.
      await db.close();
      await new Promise((r) => setTimeout(r, 1500));
      await s.kill();
      const back = unconnected(tb.url, persistent(5, 'rp-away'));
      let got = 0;
      back.on('message', () => got++); // before CONNACK: the queue follows it at once
      back.connect();
      await until('20 delivered', () => got === 20, 10000);
      await new Promise((r) => setTimeout(r, 1500)); // the counts files have the acknowledgements
      await back.endAsync();
      await tb.close();
      tb = null;
      await s.start();
      db = await connectDb(kind, s);
      assert.deepEqual(await statuses(), Array<number>(20).fill(0), 'the stopped run wrote none of them');
      // Rows another writer put in the table, with ids that are not the log's: left as they are.
      await db.query("INSERT INTO redismq_message (id, queue, body, header) VALUES ('x:1', 'other', '', ''), ('9:5', 'other', '', ''), ('1:zz', 'other', '', '')");

      // The next run finds them from the counts files.
      tb = await startBroker({ dataDir, config });
      await until('20 rows SUCCESS', async () => (await statuses()).every((x) => x === 1), 20000);
      assert.deepEqual(await statuses('other'), [0, 0, 0], 'rows not of the log untouched');
      await tb.close();
      tb = null;
      const mark = await db.query('SELECT next FROM redismq_message_position WHERE shard = -1');
      assert.equal(Number(mark[0]?.next), 1, 'a clean stop with every update written says so');
      await db.close();
    });
  });
}
