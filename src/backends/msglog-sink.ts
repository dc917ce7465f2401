/**
 * The message log's SQL sink (issue 18, redismq's message persistence): every logged message as a
 * row of redismq's table, written by a reader of the log — not by the publishing path, so a slow or
 * unreachable database never slows a publisher: the log holds what is not written yet.
 *
 * Table `redismq_message` (redismq's shape): id (`shard:offset`, the entry's id), queue (topic),
 * tag (the user property msglog.tag names, else '' — redismq's default; MQTT has no tag of its
 * own), key (the entry's key: publisher or msglog.key's user property), body (the payload:
 * UTF-8, or base64 when it is not — `header.encoding` says), virtual_queue_name ('': MQTT has no
 * virtual queues), offset, header (JSON: publisher, qos, retain, properties, encoding, shard),
 * status, create_time (publish time), update_time (when the row was written or its status last
 * changed); indexes on queue, offset and create_time. Where the sink got to is in
 * `redismq_message_position` (shard, next), written after each batch: a restart resumes there;
 * rows of a batch written again after a crash are ignored (ON CONFLICT DO NOTHING / INSERT IGNORE
 * on the id), so each entry is one row.
 *
 * status, in redismq's codes (its MessageStatus: CREATE 0, SUCCESS 1, FAIL 2), from the entry's
 * delivery counts (persistence/embedded/delivery-counts.ts): 0 (CREATE) while no delivery of it
 * has completed, 1 (SUCCESS) once one has (`acked` ≥ 1: a PUBACK, a PUBCOMP, or a QoS 0 PUBLISH
 * written). redismq sets SUCCESS when the message reached its queue and FAIL when the send
 * failed; here a message whose store failed is refused and never in the log, so 2 is not
 * used. A row is written with the status its counts have then; a later first completion is
 * written as an UPDATE (status 1, update_time), in the sink's loop after its inserts. What
 * the broker counted but had not written to the counts files when it stopped (kill -9: up to a
 * second) never reaches the table; a clean stop writes it first.
 *
 * Updates held when the sink ends without writing them (a kill -9, the database away at a
 * stop, more than MAX_ACKS held) are found again at the next start: a row of the position
 * table (shard -1) says whether the last run ended with every update written (next = 1; 0 while
 * running). When it did not, the sink goes through the rows still CREATE (by id, a page per turn
 * of its loop, between its inserts) and updates those whose entry the counts files show
 * completed.
 *
 * A batch the server refuses (not a lost connection: those are retried by the pool while it is
 * away) is counted, logged and tried again after a second; the position does not move past it.
 */
import type { MsglogCounters } from '../hooks/metrics.js';
import type { Logger } from '../log.js';
import { entryJson, LogReader } from '../msglog/query.js';
import type { DurableStore } from '../native.js';
import type { MsglogConfig } from '../msglog/config.js';
import type { DeliveryCounts } from '../persistence/embedded/delivery-counts.js';
import { errorText, PoolClosed } from './pool.js';
import type { SqlPool } from './sql.js';

/** Rows per INSERT. */
const BATCH = 500;
const RETRY_MS = 1000;
/** Status updates held at most (first completions of rows written); beyond, they are not written (counted). */
const MAX_ACKS = 1_000_000;
/** Rows per page of the status repair after a run that did not end cleanly. */
const REPAIR_PAGE = 1000;
/** The position table's row saying whether the last run ended with every status update written. */
const CLEAN_SHARD = -1;
/** redismq's MessageStatus codes. */
const CREATE = 0;
const SUCCESS = 1;

const COLUMNS = ['id', 'queue', 'tag', 'key', 'body', 'virtual_queue_name', 'offset', 'header', 'status', 'create_time', 'update_time'];

export const SINK_SCHEMA = {
  pgsql: [
    `CREATE TABLE IF NOT EXISTS redismq_message (id varchar(50) NOT NULL PRIMARY KEY, queue varchar(255) NOT NULL DEFAULT '', tag varchar(255) NOT NULL DEFAULT '', "key" varchar(255) NOT NULL DEFAULT '', body text NOT NULL DEFAULT '', virtual_queue_name varchar(255) NOT NULL DEFAULT '', "offset" bigint NOT NULL DEFAULT 0, header text NOT NULL DEFAULT '', status smallint NOT NULL DEFAULT 0, create_time timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, update_time timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
    'CREATE INDEX IF NOT EXISTS idx_redismq_message_queue ON redismq_message (queue)',
    'CREATE INDEX IF NOT EXISTS idx_redismq_message_offset ON redismq_message ("offset")',
    'CREATE INDEX IF NOT EXISTS idx_redismq_message_create_time ON redismq_message (create_time)',
    'CREATE TABLE IF NOT EXISTS redismq_message_position (shard integer NOT NULL PRIMARY KEY, next bigint NOT NULL)',
  ],
  mysql: [
    "CREATE TABLE IF NOT EXISTS redismq_message (`id` varchar(50) NOT NULL DEFAULT '', `queue` varchar(255) NOT NULL DEFAULT '', `tag` varchar(255) NOT NULL DEFAULT '', `key` varchar(255) NOT NULL DEFAULT '', `body` mediumtext NOT NULL, `virtual_queue_name` varchar(255) NOT NULL DEFAULT '', `offset` bigint NOT NULL DEFAULT 0, `header` text NOT NULL, `status` tinyint NOT NULL DEFAULT 0, `create_time` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), `update_time` datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3), PRIMARY KEY (`id`), INDEX idx_queue (`queue`), INDEX idx_offset (`offset`), INDEX idx_create_time (`create_time`)) DEFAULT CHARSET = utf8mb4",
    'CREATE TABLE IF NOT EXISTS redismq_message_position (`shard` int NOT NULL PRIMARY KEY, `next` bigint NOT NULL)',
  ],
} as const;

function insertRows(dialect: 'pgsql' | 'mysql', rows: number): string {
  if (dialect === 'mysql') {
    const one = `(${COLUMNS.map(() => '?').join(', ')})`;
    return `INSERT IGNORE INTO redismq_message (${COLUMNS.map((c) => `\`${c}\``).join(', ')}) VALUES ${Array<string>(rows).fill(one).join(', ')}`;
  }
  let n = 0;
  const values = Array.from({ length: rows }, () => `(${COLUMNS.map(() => `$${++n}`).join(', ')})`);
  return `INSERT INTO redismq_message (${COLUMNS.map((c) => `"${c}"`).join(', ')}) VALUES ${values.join(', ')} ON CONFLICT (id) DO NOTHING`;
}

function updateStatus(dialect: 'pgsql' | 'mysql', rows: number): string {
  if (dialect === 'mysql') return `UPDATE redismq_message SET \`status\` = ${SUCCESS}, \`update_time\` = ? WHERE \`status\` = ${CREATE} AND \`id\` IN (${Array<string>(rows).fill('?').join(', ')})`;
  return `UPDATE redismq_message SET status = ${SUCCESS}, update_time = $1 WHERE status = ${CREATE} AND id IN (${Array.from({ length: rows }, (_v, i) => `$${i + 2}`).join(', ')})`;
}

/** A page of the rows still CREATE after id `$1` (paged by the primary key). */
function createdAfter(dialect: 'pgsql' | 'mysql'): string {
  const p = dialect === 'mysql' ? '?' : '$1';
  return `SELECT id FROM redismq_message WHERE status = ${CREATE} AND id > ${p} ORDER BY id LIMIT ${REPAIR_PAGE}`;
}

/** The first value of the user property `name`, or ''. */
function userProperty(properties: Record<string, unknown> | null, name: string): string {
  if (name === '' || properties === null) return '';
  const v = (properties['userProperties'] as Record<string, string | string[]> | undefined)?.[name];
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

function upsertPositions(dialect: 'pgsql' | 'mysql', shards: number): string {
  if (dialect === 'mysql') return `INSERT INTO redismq_message_position (\`shard\`, \`next\`) VALUES ${Array<string>(shards).fill('(?, ?)').join(', ')} ON DUPLICATE KEY UPDATE \`next\` = VALUES(\`next\`)`;
  const values = Array.from({ length: shards }, (_v, i) => `($${2 * i + 1}, $${2 * i + 2})`);
  return `INSERT INTO redismq_message_position (shard, next) VALUES ${values.join(', ')} ON CONFLICT (shard) DO UPDATE SET next = EXCLUDED.next`;
}

export class LogSink {
  private stopped = false;
  private readonly waiting: boolean[];
  private wake: (() => void) | null = null;
  readonly done: Promise<void>;
  /** Ids of rows written whose first delivery completed since (their status goes to SUCCESS). */
  private acks: string[] = [];
  /** Status updates not held (MAX_ACKS reached). */
  statusDropped = 0;
  private reader: LogReader | null = null;
  private readonly unlisten: (() => void) | null;
  /** The status repair's position (the last id looked at); null when there is none to do. */
  private repairAfter: string | null = null;
  /** Rows the status repair updated. */
  repaired = 0;

  constructor(
    private readonly pool: SqlPool,
    private readonly store: DurableStore,
    private readonly counts: DeliveryCounts | null,
    private readonly cfg: Pick<MsglogConfig, 'filters' | 'keyProperty' | 'tagProperty'>,
    private readonly counters: MsglogCounters,
    private readonly log: Logger,
  ) {
    this.waiting = Array.from({ length: store.nShards }, () => false);
    this.unlisten = counts?.onFirstAck((pairs) => this.firstAcks(pairs)) ?? null;
    this.done = this.run().catch((e: unknown) => {
      if (!(e instanceof PoolClosed)) this.log.error({ err: errorText(e) }, 'message log SQL sink stopped');
    });
  }

  /** Stop after the batch in progress and the status updates counted so far (the pool is closed next). */
  async stop(): Promise<void> {
    await this.counts?.settle(); // what was counted so far: its first completions are written before the sink stops
    this.stopped = true;
    this.wake?.();
    await this.done;
    this.unlisten?.();
  }

  /** First completions the counts wrote: those of rows already written are updated (others are written with their status). */
  private firstAcks(pairs: Float64Array): void {
    const at = this.reader?.offsets();
    if (!at) return;
    let added = false;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const shard = pairs[i] as number;
      const offset = pairs[i + 1] as number;
      if (offset >= (at[shard] ?? 0)) continue; // not taken yet: its row gets its status when written
      if (this.acks.length >= MAX_ACKS) {
        this.statusDropped++;
        continue;
      }
      this.acks.push(`${shard}:${offset}`);
      added = true;
    }
    if (added) this.wake?.();
  }

  /** The status updates held, in batches; a refused batch is retried as inserts are. */
  private async writeStatus(): Promise<void> {
    while (this.acks.length > 0) {
      const ids = this.acks.splice(0, BATCH);
      await this.untilWritten('status update', async () => {
        await this.pool.query(updateStatus(this.pool.dialect, ids.length), [new Date(), ...ids]);
      });
    }
  }

  /** Run `write` until it succeeds (each failure counted and logged, RETRY_MS apart); a closed pool or a stop ends it. */
  private async untilWritten(what: string, write: () => Promise<void>): Promise<void> {
    for (;;) {
      try {
        await write();
        return;
      } catch (e) {
        if (e instanceof PoolClosed || this.stopped) throw e;
        this.counters.sqlFailed++;
        this.log.error({ pool: this.pool.cfg.id, err: errorText(e) }, `message log SQL sink: ${what} not written, trying again`);
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  private async setUp(): Promise<LogReader> {
    for (const s of SINK_SCHEMA[this.pool.dialect]) await this.pool.query(s, []);
    const start = Array.from({ length: this.store.nShards }, () => 0);
    const rows = await this.pool.query('SELECT shard, next FROM redismq_message_position', []);
    for (const r of rows) {
      const shard = Number(r.shard);
      if (shard >= 0 && shard < start.length) start[shard] = Math.min(Number(r.next), this.store.shardEnd(shard));
    }
    // A run before this one that wrote rows and did not end cleanly: look for the updates it held.
    const clean = rows.some((r) => Number(r.shard) === CLEAN_SHARD && Number(r.next) === 1);
    if (rows.length > 0 && !clean) this.repairAfter = '';
    await this.pool.query(upsertPositions(this.pool.dialect, 1), [CLEAN_SHARD, 0]);
    this.log.info({ pool: this.pool.cfg.id, from: start.map((o, s) => `${s}:${o}`).join(',') }, 'message log SQL sink started');
    return new LogReader(this.store, this.cfg.filters, start, null, Number.MAX_SAFE_INTEGER, true);
  }

  private async run(): Promise<void> {
    const reader = await this.setUp();
    this.reader = reader;
    while (!this.stopped) {
      await this.writeStatus();
      if (this.repairAfter !== null) await this.repairPage();
      const got = reader.take(BATCH);
      if (got.length === 0) {
        if (this.acks.length > 0 || this.repairAfter !== null) continue;
        await this.park(reader);
        reader.rearm();
        continue;
      }
      const now = new Date();
      const params: unknown[] = [];
      for (const e of got) {
        const j = entryJson(e, this.cfg.keyProperty);
        const header = JSON.stringify({ publisher: j.publisher, qos: j.qos, retain: j.retain, properties: j.properties, encoding: j.encoding, shard: j.shard });
        const tag = userProperty(j.properties, this.cfg.tagProperty).slice(0, 255);
        params.push(j.id, j.topic, tag, j.key.slice(0, 255), j.payload, '', j.offset, header, j.acked > 0 ? SUCCESS : CREATE, new Date(j.ts), now);
      }
      const positions = reader.offsets().flatMap((o, s) => [s, o]);
      await this.untilWritten('batch', async () => {
        await this.pool.query(insertRows(this.pool.dialect, got.length), params);
        await this.pool.query(upsertPositions(this.pool.dialect, positions.length / 2), positions);
      });
      this.counters.sqlRows += got.length;
    }
    await this.writeStatus(); // a clean stop: the first completions counted so far
    // Every update written (none dropped, no repair left): the next start need not look.
    if (this.statusDropped === 0 && this.repairAfter === null) await this.pool.query(upsertPositions(this.pool.dialect, 1), [CLEAN_SHARD, 1]);
  }

  /** One page of the status repair: rows still CREATE whose entry has a completed delivery are queued for their update. */
  private async repairPage(): Promise<void> {
    const after = this.repairAfter as string;
    let rows: { id?: unknown }[] = [];
    await this.untilWritten('status repair', async () => {
      rows = await this.pool.query(createdAfter(this.pool.dialect), [after]);
    });
    const byShard = new Map<number, { ids: string[]; offsets: number[] }>();
    for (const r of rows) {
      const id = String(r.id);
      const [shard, offset] = id.split(':').map(Number) as [number, number];
      if (!(shard >= 0 && shard < this.store.nShards && Number.isSafeInteger(offset))) continue; // not a row of ours
      const g = byShard.get(shard) ?? { ids: [], offsets: [] };
      g.ids.push(id);
      g.offsets.push(offset);
      byShard.set(shard, g);
    }
    for (const [shard, g] of byShard) {
      const c = this.store.readCounts(shard, Float64Array.from(g.offsets));
      g.ids.forEach((id, i) => {
        if ((c[2 * i + 1] as number) > 0) {
          this.acks.push(id);
          this.repaired++;
        }
      });
    }
    this.repairAfter = rows.length < REPAIR_PAGE ? null : String(rows[rows.length - 1]?.id);
    if (this.repairAfter === null && this.repaired > 0) this.log.info({ pool: this.pool.cfg.id, rows: this.repaired }, 'message log SQL sink: status updates the last run did not write, written');
  }

  /** Caught up: wait until a shard moves past where the reader is (or the sink stops). */
  private park(reader: LogReader): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      reader.offsets().forEach((after, s) => {
        if (this.waiting[s]) return;
        this.waiting[s] = true;
        this.store.waitForAppend(s, after).then(
          () => {
            this.waiting[s] = false;
            this.wake?.();
          },
          () => {
            this.waiting[s] = false;
          },
        );
      });
    }).finally(() => {
      this.wake = null;
    });
  }
}
