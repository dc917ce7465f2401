/**
 * The shared registry suite (registry-suite.ts) on the SQL registry: a real PostgreSQL 15 or
 * MariaDB 10.11 (test/servers.ts), its tables dropped before each test so every test also runs the
 * migrations from scratch. Plus the SQL registry's own start-up faults.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { startBroker } from './helpers.js';
import { killUnderLoad, registrySuite, withDataDir } from './registry-suite.js';
import { DB_NAME, DB_PASSWORD, startMariadb, startPostgres, type TestServer } from './servers.js';

const TABLES = ['stratamq_schema', 'session', 'session_subscription', 'message', 'session_message', 'session_inbound', 'retain'];

export function sqlRegistrySuite(kind: 'pgsql' | 'mysql'): void {
  let server: TestServer;
  let drop: () => Promise<void>;
  let close: () => Promise<void>;
  const user = kind === 'pgsql' ? 'postgres' : 'strata';
  const url = (): string => `${kind === 'pgsql' ? 'postgres' : 'mysql'}://${user}:${encodeURIComponent(DB_PASSWORD)}@127.0.0.1:${server.port}/${DB_NAME}`;
  before(async () => {
    server = kind === 'pgsql' ? await startPostgres() : await startMariadb();
    if (kind === 'pgsql') {
      const c = new pg.Client({ host: '127.0.0.1', port: server.port, user, password: DB_PASSWORD, database: DB_NAME });
      await c.connect();
      drop = async () => void (await c.query(`DROP TABLE IF EXISTS ${TABLES.join(', ')}`));
      close = () => c.end();
    } else {
      const c = await mysql.createConnection({ host: '127.0.0.1', port: server.port, user, password: DB_PASSWORD, database: DB_NAME });
      drop = async () => void (await c.query(`DROP TABLE IF EXISTS ${TABLES.join(', ')}`));
      close = () => c.end();
    }
  });
  after(async () => {
    await close();
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
