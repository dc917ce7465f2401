/**
 * The SQL registry (`persistence.registry = sql`, SPEC C2): persistent sessions, their queues and
 * retained messages in PostgreSQL (pg) or MySQL / MariaDB (mysql2), chosen by `db.url`. It
 * implements QueueRegistry (persistence/queue-registry.ts).
 *
 * Tables (created at start by versioned migrations, `stratamq_schema` holding the version):
 *   session               client_id PK, record (JSON SessionRecord)
 *   session_subscription  (client_id, filter_hash = sha256(filter)) PK, filter, opts (JSON)
 *   message               id PK, body (packBody), refs (queue entries naming it)
 *   session_message       (client_id, msg_id) PK, qos, retain_flag, sub_ids, packet_id, phase: the queues
 *   session_inbound       (client_id, packet_id) PK: inbound QoS 2 ids awaiting PUBREL
 *   retain                topic_hash = sha256(topic) PK, topic, body
 *   session_retained      (client_id, topic_hash) PK, topic, qos, packet_id, phase: retained messages sent on
 *                         subscribe, not completed (migration 2; packet_id and phase: 3)
 *
 * Writes are group-committed: every write of one event-loop turn — saves, completions, session
 * and subscription changes, retained messages — runs in call order in ONE transaction on one
 * connection, and each resolves after its COMMIT; the next turn's transaction starts once that
 * one ended (writes stay in call order, as the contract asks). Reads use the other connections
 * of the pool, once the writes called before them are committed. A failed transaction fails every write in it (the publishers of what it held are
 * refused), nothing of it applied.
 */
import { createHash } from 'node:crypto';
import type { Pool as MysqlPool, PoolConnection as MysqlConnection } from 'mysql2/promise';
import type { Pool as PgPool, PoolClient as PgClient } from 'pg';
import type { Logger } from '../../log.js';
import type { QoS } from '../../wire/codec.js';
import { topicMatches } from '../../wire/topic.js';
import { packBody, type QueuedMessage, type QueueEntry, type QueueRegistry, RegistryError, type StoredMessage, type StoredSession, unpackBody } from '../queue-registry.js';
import type { SessionRecord, StoredSubscription } from '../registries.js';

/** The `db.*` keys (smqtt's names), read by persistence/open.ts. */
export interface SqlRegistryOptions {
  dialect: 'pgsql' | 'mysql';
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Connections opened at start. */
  initialSize: number;
  /** Connections at most. */
  maxActive: number;
  /** ms to wait for a connection. */
  maxWait: number;
  /** Idle connections kept. */
  minIdle: number;
  /** ms a statement may take (0 = no limit). */
  queryTimeout: number;
}

/** `db.url` (`postgres://…`, `mysql://…`, or smqtt's `jdbc:mysql://…` / `jdbc:postgresql://…`) and the other `db.*` keys. */
export function sqlOptions(url: string, user: string, password: string, pool: { initialSize: number; maxActive: number; maxWait: number; minIdle: number; queryTimeout: number }): SqlRegistryOptions {
  let u: URL;
  try {
    u = new URL(url.replace(/^jdbc:/, ''));
  } catch {
    throw new RegistryError(`db.url: "${url}" is not a URL (postgres://host:port/db, mysql://host:port/db, jdbc:mysql://…)`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  const dialect = scheme === 'postgres' || scheme === 'postgresql' ? 'pgsql' : scheme === 'mysql' || scheme === 'mariadb' ? 'mysql' : null;
  if (!dialect) throw new RegistryError(`db.url: unknown database "${scheme}" (postgres, postgresql, mysql, mariadb)`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new RegistryError(`db.url: no database named in "${url}"`);
  return {
    dialect,
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : dialect === 'pgsql' ? 5432 : 3306,
    user: user || decodeURIComponent(u.username) || (dialect === 'pgsql' ? 'postgres' : 'root'),
    password: password || decodeURIComponent(u.password),
    database,
    ...pool,
  };
}

/**
 * Migrations, in order: [pgsql, mysql] statements each. Version n is the first n applied. Each is
 * re-runnable (IF NOT EXISTS): MySQL commits DDL as it goes, so a crash inside one leaves part of it.
 */
const MYSQL_TABLE = ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';
const MIGRATIONS: { pgsql: string[]; mysql: string[] }[] = [
  {
    pgsql: [
      'CREATE TABLE IF NOT EXISTS session (client_id VARCHAR(255) PRIMARY KEY, record TEXT NOT NULL)',
      'CREATE TABLE IF NOT EXISTS session_subscription (client_id VARCHAR(255) NOT NULL, filter_hash CHAR(64) NOT NULL, filter TEXT NOT NULL, opts TEXT NOT NULL, PRIMARY KEY (client_id, filter_hash))',
      'CREATE TABLE IF NOT EXISTS message (id BIGINT PRIMARY KEY, body BYTEA NOT NULL, refs INTEGER NOT NULL)',
      'CREATE TABLE IF NOT EXISTS session_message (client_id VARCHAR(255) NOT NULL, msg_id BIGINT NOT NULL, qos SMALLINT NOT NULL, retain_flag SMALLINT NOT NULL, sub_ids TEXT, packet_id INTEGER NOT NULL DEFAULT 0, phase SMALLINT NOT NULL DEFAULT 0, PRIMARY KEY (client_id, msg_id))',
      'CREATE TABLE IF NOT EXISTS session_inbound (client_id VARCHAR(255) NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id))',
      'CREATE TABLE IF NOT EXISTS retain (topic_hash CHAR(64) PRIMARY KEY, topic TEXT NOT NULL, body BYTEA NOT NULL)',
    ],
    mysql: [
      `CREATE TABLE IF NOT EXISTS session (client_id VARCHAR(255) PRIMARY KEY, record TEXT NOT NULL)${MYSQL_TABLE}`,
      `CREATE TABLE IF NOT EXISTS session_subscription (client_id VARCHAR(255) NOT NULL, filter_hash CHAR(64) NOT NULL, filter TEXT NOT NULL, opts TEXT NOT NULL, PRIMARY KEY (client_id, filter_hash))${MYSQL_TABLE}`,
      `CREATE TABLE IF NOT EXISTS message (id BIGINT PRIMARY KEY, body LONGBLOB NOT NULL, refs INTEGER NOT NULL)${MYSQL_TABLE}`,
      `CREATE TABLE IF NOT EXISTS session_message (client_id VARCHAR(255) NOT NULL, msg_id BIGINT NOT NULL, qos SMALLINT NOT NULL, retain_flag SMALLINT NOT NULL, sub_ids TEXT, packet_id INTEGER NOT NULL DEFAULT 0, phase SMALLINT NOT NULL DEFAULT 0, PRIMARY KEY (client_id, msg_id))${MYSQL_TABLE}`,
      `CREATE TABLE IF NOT EXISTS session_inbound (client_id VARCHAR(255) NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id))${MYSQL_TABLE}`,
      `CREATE TABLE IF NOT EXISTS retain (topic_hash CHAR(64) PRIMARY KEY, topic TEXT NOT NULL, body LONGBLOB NOT NULL)${MYSQL_TABLE}`,
    ],
  },
  {
    // 2: retained messages sent to a session on subscribe, not completed (resent after a restart).
    pgsql: ['CREATE TABLE IF NOT EXISTS session_retained (client_id VARCHAR(255) NOT NULL, topic_hash CHAR(64) NOT NULL, topic TEXT NOT NULL, qos SMALLINT NOT NULL, PRIMARY KEY (client_id, topic_hash))'],
    mysql: [`CREATE TABLE IF NOT EXISTS session_retained (client_id VARCHAR(255) NOT NULL, topic_hash CHAR(64) NOT NULL, topic TEXT NOT NULL, qos SMALLINT NOT NULL, PRIMARY KEY (client_id, topic_hash))${MYSQL_TABLE}`],
  },
  {
    // 3: their packet id and phase once in flight (resent with DUP, or only the PUBREL, after a restart).
    // One ALTER for both columns (atomic on either server); MySQL has no ADD COLUMN IF NOT EXISTS,
    // so a re-run after a crash past the ALTER meets "duplicate column" (DUP_COLUMN_OK, below).
    pgsql: ['ALTER TABLE session_retained ADD COLUMN IF NOT EXISTS packet_id INTEGER NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS phase SMALLINT NOT NULL DEFAULT 0'],
    mysql: ['ALTER TABLE session_retained ADD COLUMN packet_id INTEGER NOT NULL DEFAULT 0, ADD COLUMN phase SMALLINT NOT NULL DEFAULT 0'],
  },
];

/** MySQL's ER_DUP_FIELDNAME: a migration's column added already (by a run that crashed before recording its version). */
const DUP_COLUMN_OK = 1060;

/** Rows per multi-row INSERT (well under either server's parameter limit). */
const CHUNK = 500;
/** A delivery's packet id and phase (QueueRegistry.setInflight); runs of them are merged in a transaction (SqlRegistry.merged). */
const SET_INFLIGHT = 'UPDATE session_message SET packet_id = ?, phase = ? WHERE client_id = ? AND msg_id = ?';
const MAX_CLIENT_ID = 255;

type Row = Record<string, unknown>;
type Stmt = [sql: string, params: unknown[]];

/** A connection of either driver, with `?` placeholders. */
interface Conn {
  run(sql: string, params?: unknown[]): Promise<Row[]>;
  release(): void;
}

interface Write {
  stmts: Stmt[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

const sha = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

export class SqlRegistry implements QueueRegistry {
  /** Every write of one turn is one transaction. */
  readonly turnAtomic = true;
  private pg: PgPool | null = null;
  private my: MysqlPool | null = null;
  private turn: Write[] | null = null;
  /** The transaction under way (the next one starts after it). */
  private committing: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: SqlRegistryOptions,
    private readonly log: Logger,
  ) {}

  private where(): string {
    return `${this.o.dialect === 'pgsql' ? 'postgresql' : 'mysql'}://${this.o.host}:${this.o.port}/${this.o.database}`;
  }

  async open(): Promise<void> {
    const o = this.o;
    if (o.dialect === 'pgsql') {
      const pg = (await import('pg')).default; // loaded only when this registry is chosen
      this.pg = new pg.Pool({ host: o.host, port: o.port, user: o.user, password: o.password, database: o.database, max: o.maxActive, min: o.minIdle, connectionTimeoutMillis: o.maxWait, query_timeout: o.queryTimeout || undefined });
      this.pg.on('error', (e) => this.log.error({ registry: 'sql', err: e.message }, `sql registry: ${e.message}`));
    } else {
      const mysql = (await import('mysql2/promise')).default;
      this.my = mysql.createPool({ host: o.host, port: o.port, user: o.user, password: o.password, database: o.database, connectionLimit: o.maxActive, maxIdle: Math.max(1, o.minIdle), connectTimeout: o.maxWait, charset: 'utf8mb4_bin' });
    }
    try {
      // Open db.initial_size connections now: a wrong address or password stops the start here.
      const conns = await Promise.all(Array.from({ length: Math.max(1, Math.min(o.initialSize, o.maxActive)) }, () => this.conn()));
      for (const c of conns) c.release();
      await this.migrate();
    } catch (e) {
      await this.close().catch(() => undefined);
      if (e instanceof RegistryError) throw e;
      const msg = (e as Error).message;
      const auth = /password|authentication|Access denied/i.test(msg);
      throw new RegistryError(`persistence.registry = sql: ${auth ? 'authentication refused by' : 'cannot use'} ${this.where()}: ${msg}${auth ? ' (check db.username / db.password)' : ''}`);
    }
  }

  private async conn(): Promise<Conn> {
    if (this.pg) {
      const c: PgClient = await this.pg.connect();
      return { run: async (sql, params = []) => (await c.query(numbered(sql), params)).rows as Row[], release: () => c.release() };
    }
    if (this.my) {
      const c: MysqlConnection = await this.my.getConnection();
      const timeout = this.o.queryTimeout || undefined;
      return { run: async (sql, params = []) => (await c.query({ sql, values: params, timeout }))[0] as Row[], release: () => c.release() };
    }
    throw new RegistryError('sql registry is not open');
  }

  /**
   * A read sees every write called before it (the contract's order: a session replaced by Clean
   * Start must not read the old one's queue, deleted in a transaction not committed yet — found
   * by the durability checker): it waits for this turn's transaction and those before it.
   */
  private async read(sql: string, params: unknown[] = []): Promise<Row[]> {
    if (this.turn !== null) await new Promise((resolve) => setImmediate(resolve)); // this turn's writes join the chain
    await this.committing.catch(() => undefined);
    const c = await this.conn();
    try {
      return await c.run(sql, params);
    } finally {
      c.release();
    }
  }

  /** Apply the migrations past the stored version, each in its own transaction (DDL commits on MySQL anyway). */
  private async migrate(): Promise<void> {
    const c = await this.conn();
    try {
      await c.run('CREATE TABLE IF NOT EXISTS stratamq_schema (version INTEGER NOT NULL)');
      const rows = await c.run('SELECT version FROM stratamq_schema');
      let version = rows.length > 0 ? Number(rows[0]?.version) : 0;
      if (rows.length === 0) await c.run('INSERT INTO stratamq_schema (version) VALUES (0)');
      if (version > MIGRATIONS.length) throw new RegistryError(`persistence.registry = sql: ${this.where()} has schema version ${version}, newer than this broker's ${MIGRATIONS.length}`);
      for (; version < MIGRATIONS.length; version++) {
        const m = MIGRATIONS[version] as (typeof MIGRATIONS)[number];
        await c.run('BEGIN');
        try {
          for (const sql of m[this.o.dialect]) {
            await c.run(sql).catch((e: unknown) => {
              if ((e as { errno?: number }).errno !== DUP_COLUMN_OK) throw e;
            });
          }
          await c.run('UPDATE stratamq_schema SET version = ?', [version + 1]);
          await c.run('COMMIT');
        } catch (e) {
          await c.run('ROLLBACK').catch(() => undefined);
          throw e;
        }
        this.log.info({ registry: 'sql', version: version + 1 }, 'sql registry: schema migrated');
      }
    } finally {
      c.release();
    }
  }

  async close(): Promise<void> {
    this.flush(); // this turn's writes go out before the pool ends
    await this.committing.catch(() => undefined);
    const pg = this.pg;
    const my = this.my;
    this.pg = null;
    this.my = null;
    await pg?.end();
    await my?.end();
  }

  // ---- writes: one transaction per event-loop turn ----------------------------------------

  /**
   * Add `stmts` to this turn's transaction. `clientIds`: the sessions they write, checked first, so
   * one that cannot be stored fails its own write, never the transaction it would have joined.
   */
  private write(stmts: Stmt[], ...clientIds: string[]): Promise<void> {
    for (const id of clientIds) {
      if (Buffer.byteLength(id) > MAX_CLIENT_ID) return Promise.reject(new RegistryError(`sql registry: client id longer than ${MAX_CLIENT_ID} bytes cannot be stored`));
    }
    let t = this.turn;
    if (t === null) {
      t = this.turn = [];
      setImmediate(() => this.flush());
    }
    const batch = t;
    return new Promise((resolve, reject) => batch.push({ stmts, resolve, reject }));
  }

  private flush(): void {
    const batch = this.turn;
    this.turn = null;
    if (batch === null || batch.length === 0) return;
    this.committing = this.committing.then(() => this.commit(batch));
  }

  private async commit(batch: Write[]): Promise<void> {
    let c: Conn | null = null;
    try {
      c = await this.conn();
      await c.run('BEGIN');
      for (const [sql, params] of this.merged(batch)) await c.run(sql, params);
      await c.run('COMMIT');
      for (const w of batch) w.resolve();
    } catch (e) {
      await c?.run('ROLLBACK').catch(() => undefined);
      for (const w of batch) w.reject(e);
    } finally {
      c?.release();
    }
  }

  private upsert(table: string, cols: string[], keys: string[]): string {
    const marks = cols.map(() => '?').join(', ');
    const rest = cols.filter((x) => !keys.includes(x));
    return this.o.dialect === 'pgsql'
      ? `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${marks}) ON CONFLICT (${keys.join(', ')}) DO UPDATE SET ${rest.map((x) => `${x} = EXCLUDED.${x}`).join(', ')}`
      : `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${marks}) ON DUPLICATE KEY UPDATE ${rest.map((x) => `${x} = VALUES(${x})`).join(', ')}`;
  }

  private insertIgnore(table: string, cols: string[]): string {
    const marks = cols.map(() => '?').join(', ');
    return this.o.dialect === 'pgsql' ? `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${marks}) ON CONFLICT DO NOTHING` : `INSERT IGNORE INTO ${table} (${cols.join(', ')}) VALUES (${marks})`;
  }

  putSession(clientId: string, record: SessionRecord): Promise<void> {
    return this.write([[this.upsert('session', ['client_id', 'record'], ['client_id']), [clientId, JSON.stringify(record)]]], clientId);
  }

  deleteSession(clientId: string): Promise<void> {
    const sub = 'SELECT msg_id FROM session_message WHERE client_id = ?';
    return this.write([
      [`UPDATE message SET refs = refs - 1 WHERE id IN (${sub})`, [clientId]],
      [`DELETE FROM message WHERE refs <= 0 AND id IN (${sub})`, [clientId]],
      ['DELETE FROM session_message WHERE client_id = ?', [clientId]],
      ['DELETE FROM session_subscription WHERE client_id = ?', [clientId]],
      ['DELETE FROM session_inbound WHERE client_id = ?', [clientId]],
      ['DELETE FROM session_retained WHERE client_id = ?', [clientId]],
      ['DELETE FROM session WHERE client_id = ?', [clientId]],
    ], clientId);
  }

  putSubscription(clientId: string, filter: string, opts: StoredSubscription): Promise<void> {
    const { start: _start, ...rest } = opts;
    return this.write([[this.upsert('session_subscription', ['client_id', 'filter_hash', 'filter', 'opts'], ['client_id', 'filter_hash']), [clientId, sha(filter), filter, JSON.stringify(rest)]]], clientId);
  }

  deleteSubscription(clientId: string, filter: string): Promise<void> {
    return this.write([['DELETE FROM session_subscription WHERE client_id = ? AND filter_hash = ?', [clientId, sha(filter)]]], clientId);
  }

  saveSessionMessages(msg: StoredMessage, to: QueueEntry[], inbound: { clientId: string; id: number } | null): Promise<void> {
    const stmts: Stmt[] = [];
    if (to.length > 0) stmts.push(['INSERT INTO message (id, body, refs) VALUES (?, ?, ?)', [msg.id, packBody(msg), to.length]]);
    for (let i = 0; i < to.length; i += CHUNK) {
      const part = to.slice(i, i + CHUNK);
      const params: unknown[] = [];
      for (const e of part) params.push(e.clientId, e.msgId, e.qos, e.retain ? 1 : 0, e.subIds ? e.subIds.join(',') : null);
      stmts.push([`INSERT INTO session_message (client_id, msg_id, qos, retain_flag, sub_ids) VALUES ${part.map(() => '(?, ?, ?, ?, ?)').join(', ')}`, params]);
    }
    if (inbound) stmts.push([this.insertIgnore('session_inbound', ['client_id', 'packet_id']), [inbound.clientId, inbound.id]]);
    return this.write(stmts, ...to.map((e) => e.clientId), ...(inbound ? [inbound.clientId] : []));
  }

  async getSessionMessages(clientId: string, after: number, limit: number): Promise<QueuedMessage[]> {
    const rows = await this.read(
      'SELECT s.msg_id, s.qos, s.retain_flag, s.sub_ids, s.packet_id, s.phase, m.body FROM session_message s LEFT JOIN message m ON m.id = s.msg_id WHERE s.client_id = ? AND s.msg_id > ? ORDER BY s.msg_id LIMIT ?',
      [clientId, after, limit],
    );
    return rows.map(queued);
  }

  setInflight(clientId: string, msgId: number, packetId: number, phase: 1 | 2): Promise<void> {
    return this.write([[SET_INFLIGHT, [packetId, phase, clientId, msgId]]], clientId);
  }

  /**
   * The statements of one transaction, with each run of consecutive SET_INFLIGHT updates merged
   * into one statement per CHUNK rows (a row updated twice in a run keeps its last values): a
   * backlog sent at once records its packet ids in one round trip, not one per delivery (each
   * statement of a transaction waits for the one before; with the database 25 ms away, 62
   * QoS 2 deliveries waited 1.6 s for their records — durability checker, seed 5800016).
   */
  private merged(batch: Write[]): Stmt[] {
    const out: Stmt[] = [];
    let run = new Map<string, unknown[]>();
    const flushRun = (): void => {
      const rows = [...run.values()];
      run = new Map();
      for (let i = 0; i < rows.length; i += CHUNK) {
        const part = rows.slice(i, i + CHUNK);
        if (part.length === 1) out.push([SET_INFLIGHT, part[0] as unknown[]]);
        else out.push([this.setInflightRows(part.length), part.flat()]);
      }
    };
    for (const w of batch) {
      for (const st of w.stmts) {
        if (st[0] === SET_INFLIGHT) {
          const [, , clientId, msgId] = st[1];
          const key = `${clientId as string}\u0000${msgId as number}`;
          run.delete(key); // re-inserted at the end: the row's last update, in its last place
          run.set(key, st[1]);
          continue;
        }
        if (run.size > 0) flushRun();
        out.push(st);
      }
    }
    if (run.size > 0) flushRun();
    return out;
  }

  /** One UPDATE of `n` rows' packet_id and phase, parameters (packetId, phase, clientId, msgId) per row. */
  private setInflightRows(n: number): string {
    if (this.o.dialect === 'pgsql') {
      const rows = Array.from({ length: n }, (_, i) => (i === 0 ? '(?::integer, ?::smallint, ?::varchar, ?::bigint)' : '(?, ?, ?, ?)')).join(', ');
      return `UPDATE session_message AS s SET packet_id = v.p, phase = v.h FROM (VALUES ${rows}) AS v (p, h, c, m) WHERE s.client_id = v.c AND s.msg_id = v.m`;
    }
    const rows = Array.from({ length: n }, (_, i) => (i === 0 ? 'SELECT ? AS p, ? AS h, ? AS c, ? AS m' : 'SELECT ?, ?, ?, ?')).join(' UNION ALL ');
    return `UPDATE session_message AS s JOIN (${rows}) AS v ON s.client_id = v.c AND s.msg_id = v.m SET s.packet_id = v.p, s.phase = v.h`;
  }

  complete(clientId: string, msgIds: number[]): Promise<void> {
    const ids = msgIds.map(() => '?').join(', ');
    const sub = `SELECT msg_id FROM session_message WHERE client_id = ? AND msg_id IN (${ids})`;
    return this.write([
      // Only bodies named by entries still there lose a reference (a completion racing a deletion frees nothing twice).
      [`UPDATE message SET refs = refs - 1 WHERE id IN (${sub})`, [clientId, ...msgIds]],
      [`DELETE FROM session_message WHERE client_id = ? AND msg_id IN (${ids})`, [clientId, ...msgIds]],
      [`DELETE FROM message WHERE refs <= 0 AND id IN (${ids})`, msgIds],
    ], clientId);
  }

  pinRetained(clientId: string, topic: string, qos: QoS, packetId: number, phase: 0 | 1 | 2): Promise<void> {
    return this.write([[this.upsert('session_retained', ['client_id', 'topic_hash', 'topic', 'qos', 'packet_id', 'phase'], ['client_id', 'topic_hash']), [clientId, sha(topic), topic, qos, packetId, phase]]], clientId);
  }

  unpinRetained(clientId: string, topic: string): Promise<void> {
    return this.write([['DELETE FROM session_retained WHERE client_id = ? AND topic_hash = ?', [clientId, sha(topic)]]], clientId);
  }

  addInbound(clientId: string, id: number): Promise<void> {
    return this.write([[this.insertIgnore('session_inbound', ['client_id', 'packet_id']), [clientId, id]]], clientId);
  }

  releaseInbound(clientId: string, id: number): Promise<void> {
    return this.write([['DELETE FROM session_inbound WHERE client_id = ? AND packet_id = ?', [clientId, id]]], clientId);
  }

  saveRetainMessage(msg: StoredMessage): Promise<void> {
    if (msg.payload.length === 0) return this.write([['DELETE FROM retain WHERE topic_hash = ?', [sha(msg.topic)]]]);
    return this.write([[this.upsert('retain', ['topic_hash', 'topic', 'body'], ['topic_hash']), [sha(msg.topic), msg.topic, packBody(msg)]]]);
  }

  async getRetainMessage(filter: string): Promise<StoredMessage[]> {
    if (!/[+#]/.test(filter)) return (await this.read('SELECT body FROM retain WHERE topic_hash = ?', [sha(filter)])).map((r) => unpackBody(0, r.body as Buffer));
    return (await this.loadRetained()).filter((m) => topicMatches(filter, m.topic));
  }

  async loadRetained(): Promise<StoredMessage[]> {
    return (await this.read('SELECT body FROM retain')).map((r) => unpackBody(0, r.body as Buffer));
  }

  async loadSessions(): Promise<StoredSession[]> {
    const [sessions, subs, inbound, inflight, counts, pins] = await Promise.all([
      this.read('SELECT client_id, record FROM session'),
      this.read('SELECT client_id, filter, opts FROM session_subscription'),
      this.read('SELECT client_id, packet_id FROM session_inbound'),
      this.read('SELECT s.client_id, s.msg_id, s.qos, s.retain_flag, s.sub_ids, s.packet_id, s.phase, m.body FROM session_message s LEFT JOIN message m ON m.id = s.msg_id WHERE s.packet_id > 0 ORDER BY s.msg_id'),
      this.read('SELECT client_id, COUNT(*) AS n, MAX(msg_id) AS last FROM session_message WHERE packet_id = 0 GROUP BY client_id'),
      this.read('SELECT client_id, topic, qos, packet_id, phase FROM session_retained'),
    ]);
    const by = new Map<string, StoredSession>();
    for (const r of sessions) {
      const clientId = String(r.client_id);
      by.set(clientId, { clientId, record: JSON.parse(String(r.record)) as SessionRecord, subscriptions: [], incomingQos2: [], inflight: [], queued: 0, lastMsgId: 0, retainedPins: [] });
    }
    for (const r of subs) by.get(String(r.client_id))?.subscriptions.push({ filter: String(r.filter), opts: JSON.parse(String(r.opts)) as StoredSubscription });
    for (const r of inbound) by.get(String(r.client_id))?.incomingQos2.push(Number(r.packet_id));
    for (const r of pins) by.get(String(r.client_id))?.retainedPins.push({ topic: String(r.topic), qos: Number(r.qos) as QoS, packetId: Number(r.packet_id), phase: Number(r.phase) as 0 | 1 | 2 });
    for (const r of inflight) {
      const s = by.get(String(r.client_id));
      if (!s) continue;
      const q = queued(r);
      s.inflight.push(q);
      if (q.msgId > s.lastMsgId) s.lastMsgId = q.msgId;
    }
    for (const r of counts) {
      const s = by.get(String(r.client_id));
      if (!s) continue;
      s.queued = Number(r.n);
      s.lastMsgId = Math.max(s.lastMsgId, Number(r.last));
    }
    return [...by.values()];
  }
}

function queued(r: Row): QueuedMessage {
  const msgId = Number(r.msg_id);
  const subIds = r.sub_ids === null || r.sub_ids === undefined || r.sub_ids === '' ? null : String(r.sub_ids).split(',').map(Number);
  return {
    msgId,
    qos: Number(r.qos) as QoS,
    retain: Number(r.retain_flag) === 1,
    subIds,
    message: r.body ? unpackBody(msgId, r.body as Buffer) : null,
    packetId: Number(r.packet_id),
    phase: Number(r.phase) as 0 | 1 | 2,
  };
}
