/**
 * The shared registry suite (registry-suite.ts) on the SQL registry: a real PostgreSQL 15 or
 * MariaDB 10.11 (test/servers.ts), its tables dropped before each test so every test also runs the
 * migrations from scratch. Plus the SQL registry's own start-up faults.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { client, persistent, RawClient, sleep, startBroker } from './helpers.js';
import { backlogAfterShortVisit, killUnderLoad, lostMidRun, qos0OrderWhileReading, registrySuite, sessionKeptAtStop, willOnceAcrossKill, withDataDir } from './registry-suite.js';
import { DB_NAME, DB_PASSWORD, SQL_REGISTRY_TABLES, type SlowReplies, slowReplies, sqlAdmin, sqlUser, startMariadb, startPostgres, type TestServer } from './servers.js';

export function sqlRegistrySuite(kind: 'pgsql' | 'mysql'): void {
  let server: TestServer;
  const user = sqlUser(kind);
  const url = (): string => `${kind === 'pgsql' ? 'postgres' : 'mysql'}://${user}:${encodeURIComponent(DB_PASSWORD)}@127.0.0.1:${server.port}/${DB_NAME}`;
  /** Run `sqls` on a connection of their own (a test may restart the server); the rows of the last. */
  const admin = (...sqls: string[]): Promise<Record<string, unknown>[]> => sqlAdmin(kind, server.port, ...sqls);
  /** Drop the registry's tables. */
  const drop = async (): Promise<void> => {
    await admin(`DROP TABLE IF EXISTS ${SQL_REGISTRY_TABLES.join(', ')}`);
  };
  /**
   * What is committed reaches the database's files before the test kills it: the test servers
   * run without synchronous commit (test/servers.ts), so a crash of theirs loses the last commits.
   */
  const settle = async (): Promise<void> => {
    await admin(kind === 'pgsql' ? 'CHECKPOINT' : 'FLUSH TABLES');
    if (kind === 'mysql') await sleep(1500); // InnoDB writes its log buffer out once a second at least
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

  /** The tables dropped, then `fn` with the broker's env reaching the database through a proxy that can hold its answers back (slowReplies). */
  const slowDatabase = async (fn: (env: NodeJS.ProcessEnv, proxy: SlowReplies) => Promise<void>): Promise<void> => {
    await drop();
    const proxy = await slowReplies(server.port);
    try {
      await fn({ STRATA_PERSISTENCE__REGISTRY: 'sql', STRATA_DB__URL: url().replace(`:${server.port}/`, `:${proxy.port}/`) }, proxy);
    } finally {
      await proxy.close();
    }
  };

  test(`sql ${kind}: a will stored as the database answers late, kill -9: the restart does not publish it again (the record is cleared in the same transaction)`, () =>
    slowDatabase(async (env, proxy) => {
      // PostgreSQL gets the body as bytes; mysql2 writes it into the statement in hex.
      const n = await willOnceAcrossKill(env, proxy, (payload) => [kind === 'pgsql' ? payload.toString() : payload.toString('hex'), 'COMMIT']);
      assert.equal(n, 1, `the will delivered ${n} times`);
    }));

  test(`sql ${kind}: SIGTERM as a new persistent session gets its CONNACK, the database answering late: the stop waits for its record, the restart resumes it`, () =>
    slowDatabase(async (env, proxy) => {
      assert.equal(await sessionKeptAtStop(env, proxy), true, 'session present after the restart');
    }));

  test(`sql ${kind}: QoS 0 published as a persistent subscriber reads its backlog from a slow database comes after that backlog, in order`, () =>
    slowDatabase(async (env, proxy) => {
      assert.deepEqual(await qos0OrderWhileReading(env, proxy), Array.from({ length: 20 }, (_, i) => `m${i}`));
    }));

  test(`sql ${kind}: a persistent subscriber gone again before its first read of a slow database came back gets its message on its next visit`, () =>
    slowDatabase(async (env, proxy) => {
      const got = await backlogAfterShortVisit(env, proxy);
      assert.ok(got.length >= 1 && got.every((p) => p === 'waiting'), `got ${JSON.stringify(got)}`);
    }));

  test(`sql ${kind}: 40 QoS 2 deliveries sent at once record their packet ids in one statement; after a restart the 20 PUBREC'd get PUBREL, the rest come again with DUP under their ids`, async () => {
    await drop();
    const cfg = { 'persistence.registry': 'sql', 'db.url': url() };
    let tb = await startBroker({ config: cfg });
    const ids: number[] = [];
    try {
      const sub = await client(tb, persistent(5, 'sql-q2-sub'));
      await sub.subscribeAsync('q2b/#', { qos: 2 });
      await sub.endAsync();
      const pub = await client(tb);
      for (let i = 0; i < 40; i++) await pub.publishAsync(`q2b/${i}`, `m${i}`, { qos: 2 });
      await pub.endAsync();
      const raw = await RawClient.tcp(tb.port, 5);
      await raw.connect('sql-q2-sub', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      for (let i = 0; i < 40; i++) {
        const p = (await raw.next('publish')) as { messageId: number; payload: Buffer };
        assert.equal(p.payload.toString(), `m${i}`);
        ids.push(p.messageId);
      }
      for (const id of ids.slice(0, 20)) raw.send({ cmd: 'pubrec', messageId: id });
      for (let i = 0; i < 20; i++) await raw.next('pubrel');
      await sleep(300); // the phase-2 records are written with the PUBRELs
      raw.end();
    } finally {
      await tb.close();
    }
    tb = await startBroker({ config: cfg });
    try {
      const raw = await RawClient.tcp(tb.port, 5);
      await raw.connect('sql-q2-sub', { clean: false, properties: { sessionExpiryInterval: 3600 } });
      const rels: number[] = [];
      const again: { id: number; dup: boolean; payload: string }[] = [];
      while (rels.length + again.length < 40) {
        const p = (await raw.next()) as { cmd: string; messageId: number; dup?: boolean; payload?: Buffer };
        if (p.cmd === 'pubrel') rels.push(p.messageId);
        else if (p.cmd === 'publish') again.push({ id: p.messageId, dup: p.dup === true, payload: (p.payload as Buffer).toString() });
      }
      assert.deepEqual(rels.sort((a, b) => a - b), ids.slice(0, 20).sort((a, b) => a - b));
      assert.deepEqual(
        again.map((x) => `${x.id} ${x.dup} ${x.payload}`),
        ids.slice(20).map((id, i) => `${id} true m${i + 20}`),
      );
      raw.end();
    } finally {
      await tb.close();
    }
  });

  test(`sql ${kind}: the database lost mid-run refuses publishes for persistent sessions (v5 0x80, 3.1.1 no ack), serves the rest, recovers`, async () => {
    await drop();
    const tb = await startBroker({ config: { 'persistence.registry': 'sql', 'db.url': url(), 'db.initial_size': 2, 'db.max_wait': 2000 } });
    try {
      await lostMidRun(tb, server, ['before', 'after'], settle);
    } finally {
      await tb.close();
    }
  });

  test(`sql ${kind}: a schema of an earlier version is migrated at start (its rows kept), and a migration that crashed after its DDL runs again`, async () => {
    await drop();
    const cfg = { 'persistence.registry': 'sql', 'db.url': url() };
    await (await startBroker({ config: cfg })).close();
    // Version 2: session_retained without packet_id / phase, one pin in it (a QoS 1 retained message sent on subscribe).
    await admin(
      'ALTER TABLE session_retained DROP COLUMN packet_id, DROP COLUMN phase',
      'UPDATE stratamq_schema SET version = 2',
      "INSERT INTO session_retained (client_id, topic_hash, topic, qos) VALUES ('old-pin', 'h', 'old/t', 1)",
    );
    await (await startBroker({ config: cfg })).close();
    assert.deepEqual(await admin('SELECT version FROM stratamq_schema'), [{ version: 3 }]);
    assert.deepEqual(await admin('SELECT client_id, topic, qos, packet_id, phase FROM session_retained'), [{ client_id: 'old-pin', topic: 'old/t', qos: 1, packet_id: 0, phase: 0 }], 'the pin kept, queued (no packet id)');
    // A run that crashed between migration 3's ALTER and its version update (MySQL commits DDL at once).
    await admin('UPDATE stratamq_schema SET version = 2');
    await (await startBroker({ config: cfg })).close();
    assert.deepEqual(await admin('SELECT version FROM stratamq_schema'), [{ version: 3 }]);
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
