/**
 * PostgreSQL (pg) and MySQL / MariaDB (mysql2) backends: a pool of `pool_size` connections,
 * EMQX 4.4's tables created at the first connection (schema.ts), EMQX's built-in functions as
 * statements on those tables, and custom statements with their placeholders bound as
 * parameters (pg's extended protocol; mysql2's `execute`, a server-side prepared statement —
 * never `query`, which would splice escaped values into the text).
 *
 * PostgreSQL's EMQX tables keep payloads as `text`: a payload is stored as UTF-8 text there
 * (bytes that are not UTF-8 are replaced); MySQL's `blob` keeps the bytes.
 */
import type { Pool as MysqlPromisePool } from 'mysql2/promise';
import type { Pool as PgDriverPool } from 'pg';
import type { Logger } from '../log.js';
import type { QoS } from '../wire/codec.js';
import { topicMatches } from '../wire/topic.js';
import type { FunctionName, PoolConfig } from './config.js';
import type { BackendHost, EventData } from './event.js';
import { type EventValues, type SqlTemplate, sqlParams } from './placeholders.js';
import { Pool } from './pool.js';
import { MYSQL_SCHEMA, PG_SCHEMA } from './schema.js';

type Row = Record<string, unknown>;

/** EMQX's statements for the built-in functions, written with `?` (PostgreSQL's `$n` are numbered in). */
const STATEMENTS = {
  pgsql: {
    connected: 'INSERT INTO mqtt_client (clientid, state, node, online_at, offline_at, created) VALUES (?, 1, ?, to_timestamp(?), NULL, now()) ON CONFLICT (clientid) DO UPDATE SET state = 1, node = EXCLUDED.node, online_at = EXCLUDED.online_at, offline_at = NULL',
    disconnected: 'UPDATE mqtt_client SET state = 0, offline_at = to_timestamp(?) WHERE clientid = ?',
    subLookup: 'SELECT topic, qos FROM mqtt_sub WHERE clientid = ?',
    publish: 'INSERT INTO mqtt_msg (msgid, sender, topic, qos, retain, payload, arrived) VALUES (?, ?, ?, ?, ?, ?, to_timestamp(?))',
    retain: 'INSERT INTO mqtt_retain (topic, msgid, sender, qos, payload, arrived) VALUES (?, ?, ?, ?, ?, to_timestamp(?)) ON CONFLICT (topic) DO UPDATE SET msgid = EXCLUDED.msgid, sender = EXCLUDED.sender, qos = EXCLUDED.qos, payload = EXCLUDED.payload, arrived = EXCLUDED.arrived',
    retainDelete: 'DELETE FROM mqtt_retain WHERE topic = ?',
    retainExact: 'SELECT topic, sender, qos, payload FROM mqtt_retain WHERE topic = ?',
    retainPrefix: "SELECT topic, sender, qos, payload FROM mqtt_retain WHERE topic LIKE ? ESCAPE '\\'",
    msgRow: 'SELECT id FROM mqtt_msg WHERE msgid = ? LIMIT 1',
    fetchExact: 'SELECT id, msgid, topic, sender, qos, payload FROM mqtt_msg WHERE topic = ? AND qos > 0 AND id > ? AND arrived >= to_timestamp(?) ORDER BY id',
    fetchPrefix: "SELECT id, msgid, topic, sender, qos, payload FROM mqtt_msg WHERE topic LIKE ? ESCAPE '\\' AND qos > 0 AND arrived >= to_timestamp(?) ORDER BY id",
    positions: 'SELECT topic, mid FROM mqtt_acked WHERE clientid = ?',
    acked: 'INSERT INTO mqtt_acked (clientid, topic, mid, created) VALUES (?, ?, ?, now()) ON CONFLICT (clientid, topic) DO UPDATE SET mid = GREATEST(mqtt_acked.mid, EXCLUDED.mid), created = EXCLUDED.created',
  },
  mysql: {
    connected: "INSERT INTO mqtt_client (clientid, state, node, online_at, offline_at, created) VALUES (?, '1', ?, FROM_UNIXTIME(?), NULL, NOW()) ON DUPLICATE KEY UPDATE state = '1', node = VALUES(node), online_at = VALUES(online_at), offline_at = NULL",
    disconnected: "UPDATE mqtt_client SET state = '0', offline_at = FROM_UNIXTIME(?) WHERE clientid = ?",
    subLookup: 'SELECT topic, qos FROM mqtt_sub WHERE clientid = ?',
    publish: 'INSERT INTO mqtt_msg (msgid, sender, node, topic, qos, retain, payload, arrived) VALUES (?, ?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?))',
    retain: 'INSERT INTO mqtt_retain (topic, msgid, sender, node, qos, payload, arrived) VALUES (?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?)) ON DUPLICATE KEY UPDATE msgid = VALUES(msgid), sender = VALUES(sender), node = VALUES(node), qos = VALUES(qos), payload = VALUES(payload), arrived = VALUES(arrived)',
    retainDelete: 'DELETE FROM mqtt_retain WHERE topic = ?',
    retainExact: 'SELECT topic, sender, qos, payload FROM mqtt_retain WHERE topic = ?',
    retainPrefix: "SELECT topic, sender, qos, payload FROM mqtt_retain WHERE topic LIKE ? ESCAPE '\\\\'",
    msgRow: 'SELECT id FROM mqtt_msg WHERE msgid = ? LIMIT 1',
    fetchExact: 'SELECT id, msgid, topic, sender, qos, payload FROM mqtt_msg WHERE topic = ? AND qos > 0 AND id > ? AND arrived >= FROM_UNIXTIME(?) ORDER BY id',
    fetchPrefix: "SELECT id, msgid, topic, sender, qos, payload FROM mqtt_msg WHERE topic LIKE ? ESCAPE '\\\\' AND qos > 0 AND arrived >= FROM_UNIXTIME(?) ORDER BY id",
    positions: 'SELECT topic, mid FROM mqtt_acked WHERE clientid = ?',
    acked: 'INSERT INTO mqtt_acked (clientid, topic, mid, created) VALUES (?, ?, ?, NOW()) ON DUPLICATE KEY UPDATE mid = IF(mid IS NULL OR VALUES(mid) > mid, VALUES(mid), mid), created = VALUES(created)',
  },
} as const;
type Statement = keyof (typeof STATEMENTS)['pgsql'];

function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** SQLSTATE classes that mean "no usable connection": connection exception, authorization, missing database, shutdown, resources. */
const PG_CONNECTION_STATES = /^(08|28|3D|57P|53)/;
/** MySQL server errors that mean the same: access denied, unknown database, too many connections, shutdown. */
const MYSQL_CONNECTION_ERRNOS = new Set([1040, 1044, 1045, 1049, 1053, 1077, 1129, 1130, 2002, 2003, 2006, 2013]);

/** How long on_message_acked waits for the acknowledged message's mqtt_msg row. */
const ACKED_WAIT_MS = 5000;

export abstract class SqlPool extends Pool {
  abstract readonly dialect: 'pgsql' | 'mysql';
  /** Topic filters of this pool's on_message_publish rules (set by the rules' owner). */
  publishFilters: string[] = [];
  private schema: Promise<void> | null = null;

  protected abstract exec(text: string, params: unknown[]): Promise<Row[]>;
  protected abstract ddl(text: string): Promise<void>;

  /** One statement (the tables made first), retried while the server is unreachable. */
  query(text: string, params: unknown[]): Promise<Row[]> {
    return this.run(async () => {
      await this.ensureSchema();
      return this.exec(text, params);
    });
  }

  private ensureSchema(): Promise<void> {
    this.schema ??= (async () => {
      for (const s of this.dialect === 'pgsql' ? PG_SCHEMA : MYSQL_SCHEMA) {
        try {
          await this.ddl(s);
        } catch (e) {
          // Two brokers creating the same table at once: PostgreSQL reports a duplicate; the table is there.
          if ((e as { code?: string }).code !== '23505' && (e as { code?: string }).code !== '42P07') throw e;
        }
      }
      this.log.info({ backend: this.cfg.type, pool: this.cfg.name }, `backend ${this.cfg.type} pool "${this.cfg.name}": tables ready`);
    })().catch((e: unknown) => {
      this.schema = null;
      throw e;
    });
    return this.schema;
  }

  private stmt(name: Statement): string {
    const s = STATEMENTS[this.dialect][name];
    return this.dialect === 'pgsql' ? numbered(s) : s;
  }

  private payload(p: Buffer): string | Buffer {
    return this.dialect === 'pgsql' ? p.toString('utf8') : p;
  }

  /** Custom statements of a rule, in order. */
  async statements(list: readonly SqlTemplate[], v: EventValues): Promise<void> {
    for (const t of list) await this.query(t.text, sqlParams(t, v, this.dialect));
  }

  /** A built-in function. */
  async fn(name: FunctionName, e: EventData, host: BackendHost): Promise<void> {
    const secs = e.at / 1000;
    const m = e.msg;
    const my = this.dialect === 'mysql';
    switch (name) {
      case 'on_client_connected':
        await this.query(this.stmt('connected'), [e.clientId, e.node, secs]);
        return;
      case 'on_client_disconnected':
        await this.query(this.stmt('disconnected'), [secs, e.clientId]);
        return;
      case 'on_subscribe_lookup': {
        for (const r of await this.query(this.stmt('subLookup'), [e.clientId])) {
          const qos = Number(r.qos);
          await host.subscribe(e.clientId, String(r.topic), (qos >= 0 && qos <= 2 ? qos : 0) as QoS);
        }
        return;
      }
      case 'on_message_publish':
        if (!m) return;
        await this.query(this.stmt('publish'), my ? [e.msgid(), m.publisher, e.node, m.topic, m.qos, m.retain ? 1 : 0, m.payload, m.receivedAt / 1000] : [e.msgid(), m.publisher, m.topic, m.qos, m.retain ? 1 : 0, this.payload(m.payload), m.receivedAt / 1000]);
        return;
      case 'on_message_retain':
        if (!m?.retain || m.payload.length === 0) return;
        await this.query(this.stmt('retain'), my ? [m.topic, e.msgid(), m.publisher, e.node, m.qos, m.payload, m.receivedAt / 1000] : [m.topic, e.msgid(), m.publisher, m.qos, this.payload(m.payload), m.receivedAt / 1000]);
        return;
      case 'on_retain_delete':
        if (!m?.retain || m.payload.length > 0) return;
        await this.query(this.stmt('retainDelete'), [m.topic]);
        return;
      case 'on_retain_lookup': {
        const filter = e.topic;
        if (filter === null || filter.startsWith('$share/')) return;
        const wild = filter.search(/[+#]/);
        const rows = wild < 0 ? await this.query(this.stmt('retainExact'), [filter]) : await this.query(this.stmt('retainPrefix'), [`${filter.slice(0, wild).replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
        for (const r of rows) {
          const topic = String(r.topic);
          if (!topicMatches(filter, topic)) continue;
          const qos = Number(r.qos);
          const payload = Buffer.isBuffer(r.payload) ? r.payload : Buffer.from(String(r.payload ?? ''));
          if (payload.length === 0) continue;
          host.deliverRetained(e.clientId, filter, { topic, payload, qos: (qos >= 0 && qos <= 2 ? qos : 0) as QoS, publisher: String(r.sender ?? ''), receivedAt: Date.now() });
        }
        return;
      }
      case 'on_message_fetch':
        await this.fetch(e, host);
        return;
      case 'on_message_fetch_for_queue':
      case 'on_message_fetch_for_pubsub':
      case 'on_message_acked_for_queue':
        return; // Redis only (backendsConfig refuses them for SQL)
      case 'on_message_acked':
      case 'on_message_acked_for_pubsub': {
        if (!m) return;
        // mqtt_acked.mid is the message's mqtt_msg.id, and only moves forward (acks may finish out
        // of order with pool_size > 1). The row's insert runs in another queue
        // (message.publish): when this pool stores the topic's messages, wait for the row a moment.
        const id = e.msgid();
        const rowId = async (): Promise<unknown> => (await this.query(this.stmt('msgRow'), [id]))[0]?.id ?? null;
        let mid = await rowId();
        // Only for a recent message: an old one's row (or id) will not turn up by waiting.
        const storing = Date.now() - m.receivedAt < ACKED_WAIT_MS && this.publishFilters.some((f) => topicMatches(f, m.topic));
        for (let wait = 20, waited = 0; mid === null && storing && waited < ACKED_WAIT_MS; waited += wait, wait = Math.min(wait * 2, 500)) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          mid = await rowId();
        }
        await this.query(this.stmt('acked'), [e.clientId, m.topic, mid]);
        return;
      }
    }
  }
  /**
   * Offline fetch at subscribe (EMQX's on_message_fetch): the mqtt_msg rows of each topic the
   * filter matches (wildcards too, unlike EMQX) with QoS > 0 after the client's read position in
   * mqtt_acked, oldest first, at most max_returned_count per topic, within time_range. Each keeps
   * its msgid, so its acknowledgement (on_message_acked) moves the position past it.
   */
  private async fetch(e: EventData, host: BackendHost): Promise<void> {
    const filter = e.topic;
    if (filter === null || filter.startsWith('$share/')) return;
    const c = this.cfg;
    const since = c.timeRangeMs > 0 ? (Date.now() - c.timeRangeMs) / 1000 : 0;
    const positions = new Map<string, number>();
    for (const r of await this.query(this.stmt('positions'), [e.clientId])) positions.set(String(r.topic), Number(r.mid ?? 0));
    const wild = filter.search(/[+#]/);
    const rows =
      wild < 0
        ? await this.query(this.stmt('fetchExact'), [filter, positions.get(filter) ?? 0, since])
        : await this.query(this.stmt('fetchPrefix'), [`${filter.slice(0, wild).replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`, since]);
    const sent = new Map<string, number>();
    for (const r of rows) {
      const topic = String(r.topic);
      if (!topicMatches(filter, topic) || Number(r.id) <= (positions.get(topic) ?? 0)) continue;
      const n = sent.get(topic) ?? 0;
      if (c.maxReturned > 0 && n >= c.maxReturned) continue;
      const payload = Buffer.isBuffer(r.payload) ? r.payload : Buffer.from(String(r.payload ?? ''));
      if (payload.length === 0) continue;
      e.ids.remember(payload, String(r.msgid));
      const qos = Number(r.qos);
      if (host.deliverStored(e.clientId, filter, { topic, payload, qos: (qos === 2 ? 2 : 1) as QoS, publisher: String(r.sender ?? ''), receivedAt: Date.now() })) sent.set(topic, n + 1);
    }
  }
}

export class PgPool extends SqlPool {
  readonly dialect = 'pgsql';
  private pool: PgDriverPool | null = null;

  async open(): Promise<void> {
    const { default: pg } = await import('pg'); // loaded only by a broker with PostgreSQL rules
    const c = this.cfg;
    const server = c.servers[0] as { host: string; port: number };
    const pool = new pg.Pool({
      host: server.host,
      port: server.port,
      user: c.username || 'postgres',
      password: c.password || undefined,
      database: c.database || 'mqtt',
      ssl: c.ssl ? {} : undefined,
      max: c.poolSize,
      connectionTimeoutMillis: c.connectTimeoutMs,
      query_timeout: c.queryTimeoutMs || undefined,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection the server dropped: the pool discards it; the next statement reconnects.
    pool.on('error', (e) => this.markDown(e));
    this.pool = pool;
    // Start connecting now, so an unreachable server or a refused login is logged at start.
    this.run(() => pool.query('SELECT 1')).catch(() => undefined);
  }

  connectionError(e: unknown): boolean {
    const err = e as { code?: string; message?: string };
    if (typeof err?.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code)) return PG_CONNECTION_STATES.test(err.code);
    return !/query read timeout/i.test(err?.message ?? '');
  }

  protected async exec(text: string, params: unknown[]): Promise<Row[]> {
    if (!this.pool) throw new Error(`backend pool ${this.cfg.id} not open`);
    return (await this.pool.query(text, params)).rows as Row[];
  }

  protected async ddl(text: string): Promise<void> {
    if (!this.pool) throw new Error(`backend pool ${this.cfg.id} not open`);
    await this.pool.query(text);
  }

  protected async end(): Promise<void> {
    await this.pool?.end();
  }
}

export class MysqlPool extends SqlPool {
  readonly dialect = 'mysql';
  private pool: MysqlPromisePool | null = null;

  async open(): Promise<void> {
    const { default: mysql } = await import('mysql2'); // loaded only by a broker with MySQL rules
    const c = this.cfg;
    const server = c.servers[0] as { host: string; port: number };
    const core = mysql.createPool({
      host: server.host,
      port: server.port,
      user: c.username || 'root',
      password: c.password || undefined,
      database: c.database || 'mqtt',
      ssl: c.ssl ? {} : undefined,
      connectionLimit: c.poolSize,
      connectTimeout: c.connectTimeoutMs,
      waitForConnections: true,
      queueLimit: 0,
      enableKeepAlive: true,
    });
    // A connection the server dropped reports here (never an uncaught 'error').
    core.on('connection', (conn) => conn.on('error', (e: unknown) => this.markDown(e)));
    this.pool = core.promise();
    this.run(() => this.exec('SELECT 1', [])).catch(() => undefined);
  }

  connectionError(e: unknown): boolean {
    const err = e as { errno?: number; code?: string; fatal?: boolean; sqlState?: string };
    if (err?.code === 'PROTOCOL_SEQUENCE_TIMEOUT') return false; // query_timeout
    if (err?.fatal) return true;
    if (typeof err?.errno === 'number' && err.sqlState !== undefined) return MYSQL_CONNECTION_ERRNOS.has(err.errno);
    return true;
  }

  protected async exec(text: string, params: unknown[]): Promise<Row[]> {
    if (!this.pool) throw new Error(`backend pool ${this.cfg.id} not open`);
    const timeout = this.cfg.queryTimeoutMs || undefined;
    const [rows] = await this.pool.execute({ sql: text, timeout }, params as never);
    return Array.isArray(rows) ? (rows as Row[]) : [];
  }

  protected async ddl(text: string): Promise<void> {
    if (!this.pool) throw new Error(`backend pool ${this.cfg.id} not open`);
    await this.pool.query(text);
  }

  protected async end(): Promise<void> {
    await this.pool?.end();
  }
}
