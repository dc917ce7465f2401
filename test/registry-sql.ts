/**
 * The shared registry suite (registry-suite.ts) on the SQL registry: a real PostgreSQL 15 or
 * MariaDB 10.11 (test/servers.ts), its tables dropped before each test so every test also runs the
 * migrations from scratch. Plus the SQL registry's own start-up faults.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { client, collect, persistent, quiet, sleep, startBroker, unconnected } from './helpers.js';
import { killUnderLoad, registrySuite, withDataDir } from './registry-suite.js';
import { DB_NAME, DB_PASSWORD, startMariadb, startPostgres, type TestServer } from './servers.js';

const TABLES = ['stratamq_schema', 'session', 'session_subscription', 'message', 'session_message', 'session_inbound', 'retain'];

export function sqlRegistrySuite(kind: 'pgsql' | 'mysql'): void {
  let server: TestServer;
  const user = kind === 'pgsql' ? 'postgres' : 'strata';
  const url = (): string => `${kind === 'pgsql' ? 'postgres' : 'mysql'}://${user}:${encodeURIComponent(DB_PASSWORD)}@127.0.0.1:${server.port}/${DB_NAME}`;
  /** Drop the registry's tables (a connection of its own each time: a test may restart the server). */
  const drop = async (): Promise<void> => {
    const sql = `DROP TABLE IF EXISTS ${TABLES.join(', ')}`;
    if (kind === 'pgsql') {
      const c = new pg.Client({ host: '127.0.0.1', port: server.port, user, password: DB_PASSWORD, database: DB_NAME });
      await c.connect();
      await c.query(sql).finally(() => c.end());
    } else {
      const c = await mysql.createConnection({ host: '127.0.0.1', port: server.port, user, password: DB_PASSWORD, database: DB_NAME });
      await c.query(sql).finally(() => c.end());
    }
  };
  /**
   * What is committed reaches the database's files before the test kills it: the test servers
   * run without synchronous commit (test/servers.ts), so a crash of theirs loses the last commits.
   */
  const settle = async (): Promise<void> => {
    if (kind === 'pgsql') {
      const c = new pg.Client({ host: '127.0.0.1', port: server.port, user, password: DB_PASSWORD, database: DB_NAME });
      await c.connect();
      await c.query('CHECKPOINT').finally(() => c.end());
    } else {
      const c = await mysql.createConnection({ host: '127.0.0.1', port: server.port, user, password: DB_PASSWORD, database: DB_NAME });
      await c.query('FLUSH TABLES').finally(() => c.end());
      await sleep(1500); // InnoDB writes its log buffer out once a second at least
    }
  };
  before(async () => {
    server = kind === 'pgsql' ? await startPostgres() : await startMariadb();
  });
  after(async () => {
    await server.destroy();
  });

  registrySuite(`sql ${kind}`, async () => {
    await drop();
    return withDataDir({ 'persistence.registry': 'sql', 'db.url': url(), 'db.initial_size': 2, 'db.max_active': 8 });
  });

  test(`sql ${kind}: kill -9 under QoS 1 load loses no acknowledged message`, async (t) => {
    await drop();
    const { acked, lost } = await killUnderLoad({ STRATA_PERSISTENCE__REGISTRY: 'sql', STRATA_DB__URL: url() });
    t.diagnostic(`${acked} acknowledged, ${lost.length} lost`);
    assert.ok(acked > 200, `load ran (${acked} acknowledged)`);
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${acked} acknowledged messages lost`);
  });

  test(`sql ${kind}: the database lost mid-run refuses publishes for persistent sessions (v5 0x80, 3.1.1 no ack), serves the rest, recovers`, async () => {
    await drop();
    const tb = await startBroker({ config: { 'persistence.registry': 'sql', 'db.url': url(), 'db.initial_size': 2, 'db.max_wait': 2000, 'log.level': (process.env.T17_LOG ?? 'silent') } });
    try {
      const durableSub = await client(tb, persistent(5, 'sql-lost-sub'));
      await durableSub.subscribeAsync('keep/#', { qos: 1 });
      await durableSub.endAsync();
      const live = await client(tb, { protocolVersion: 5, clientId: 'sql-lost-live' });
      await live.subscribeAsync('live/#', { qos: 1 });
      const v5 = await client(tb, { protocolVersion: 5, clientId: 'sql-lost-pub5' });
      await v5.publishAsync('keep/before', 'before', { qos: 1 });
      await settle();

      await server.kill();
      await assert.rejects(v5.publishAsync('keep/during', 'during', { qos: 1 }), (e: Error & { code?: number }) => {
        assert.equal(e.code, 0x80, e.message);
        return true;
      });
      const v3 = await client(tb, { protocolVersion: 4, clientId: 'sql-lost-pub3' });
      const closed = new Promise<void>((resolve) => v3.once('close', () => resolve()));
      let v3acked = false;
      v3.publish('keep/during3', 'during3', { qos: 1 }, (err) => {
        if (!err) v3acked = true;
      });
      await closed;
      assert.equal(v3acked, false, '3.1.1 publisher disconnected without PUBACK');
      const got = collect(live, 1);
      await v5.publishAsync('live/x', 'served', { qos: 1 });
      assert.equal((await got)[0]?.payload.toString(), 'served', 'in-memory sessions keep being served');

      await server.start(); // the same data directory: what was committed is there
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        await sleep(200);
        ok = await v5.publishAsync('keep/after', 'after', { qos: 1 }).then(
          () => true,
          () => false,
        );
      }
      assert.ok(ok, 'publishes to persistent sessions are acknowledged again once the database is back');
      const back = unconnected(tb, { ...persistent(5, 'sql-lost-sub'), clean: false });
      const seen: string[] = [];
      back.on('message', (_t, p) => seen.push(p.toString()));
      back.connect();
      await sleep(1500);
      assert.deepEqual(seen, ['before', 'after'], 'what was committed before the loss and acknowledged after it; nothing refused, nothing twice');
      assert.deepEqual(await quiet(back, 300), []);
      await Promise.all([back.endAsync(), live.endAsync(), v5.endAsync()]);
    } finally {
      await tb.close();
    }
  });

  test(`sql ${kind}: the tables are created at start, versioned; a wrong password stops the start naming db.password`, async () => {
    await drop();
    const tb = await startBroker({ config: { 'persistence.registry': 'sql', 'db.url': url() } });
    await tb.close();
    const again = await startBroker({ config: { 'persistence.registry': 'sql', 'db.url': url() } }); // migrations already applied: nothing to do
    await again.close();
    await assert.rejects(startBroker({ config: { 'persistence.registry': 'sql', 'db.url': url(), 'db.password': 'wrong' } }), (e: Error) => {
      assert.equal(e.name, 'RegistryError');
      assert.match(e.message, /persistence\.registry = sql: authentication refused by .*: .*\(check db\.username \/ db\.password\)/);
      return true;
    });
  });
}
