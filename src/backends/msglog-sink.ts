/**
 * The message log's SQL sink (issue 18, redismq's message persistence): every logged message as a
 * row of redismq's table, written by a reader of the log — not by the publishing path, so a slow or
 * unreachable database never slows a publisher: the log holds what is not written yet.
 *
 * Table `redismq_message` (redismq's shape): id (`shard:offset`, the entry's id), queue (topic),
 * tag (''), key (the entry's key: publisher or msglog.key's user property), body (the payload:
 * UTF-8, or base64 when it is not — `header.encoding` says), virtual_queue_name (''), offset,
 * header (JSON: publisher, qos, retain, properties, encoding, shard), status (0: delivery
 * counts are not kept), create_time (publish time), update_time; indexes on queue, offset and
 * create_time. Where the sink got to is in `redismq_message_position` (shard, next), written after
 * each batch: a restart resumes there; rows of a batch written again after a crash are ignored
 * (ON CONFLICT DO NOTHING / INSERT IGNORE on the id), so each entry is one row.
 *
 * A batch the server refuses (not a lost connection: those are retried by the pool while it is
 * away) is counted, logged and tried again after a second; the position does not move past it.
 */
import type { MsglogCounters } from '../hooks/metrics.js';
import type { Logger } from '../log.js';
import { entryJson, LogReader } from '../msglog/query.js';
import type { DurableStore } from '../native.js';
import { errorText, PoolClosed } from './pool.js';
import type { SqlPool } from './sql.js';

/** Rows per INSERT. */
const BATCH = 500;
const RETRY_MS = 1000;

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

  constructor(
    private readonly pool: SqlPool,
    private readonly store: DurableStore,
    private readonly filters: readonly string[],
    private readonly keyProperty: string,
    private readonly counters: MsglogCounters,
    private readonly log: Logger,
  ) {
    this.waiting = Array.from({ length: store.nShards }, () => false);
    this.done = this.run().catch((e: unknown) => {
      if (!(e instanceof PoolClosed)) this.log.error({ err: errorText(e) }, 'message log SQL sink stopped');
    });
  }

  /** Stop after the batch in progress (the pool is closed next). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.done;
  }

  private async setUp(): Promise<LogReader> {
    for (const s of SINK_SCHEMA[this.pool.dialect]) await this.pool.query(s, []);
    const start = Array.from({ length: this.store.nShards }, () => 0);
    for (const r of await this.pool.query('SELECT shard, next FROM redismq_message_position', [])) {
      const shard = Number(r.shard);
      if (shard >= 0 && shard < start.length) start[shard] = Math.min(Number(r.next), this.store.shardEnd(shard));
    }
    this.log.info({ pool: this.pool.cfg.id, from: start.map((o, s) => `${s}:${o}`).join(',') }, 'message log SQL sink started');
    return new LogReader(this.store, this.filters, start, null);
  }

  private async run(): Promise<void> {
    const reader = await this.setUp();
    while (!this.stopped) {
      const got = reader.take(BATCH);
      if (got.length === 0) {
        await this.park(reader);
        reader.rearm();
        continue;
      }
      const now = new Date();
      const params: unknown[] = [];
      for (const e of got) {
        const j = entryJson(e, this.keyProperty);
        const header = JSON.stringify({ publisher: j.publisher, qos: j.qos, retain: j.retain, properties: j.properties, encoding: j.encoding, shard: j.shard });
        params.push(j.id, j.topic, '', j.key.slice(0, 255), j.payload, '', j.offset, header, 0, new Date(j.ts), now);
      }
      const positions = reader.offsets().flatMap((o, s) => [s, o]);
      for (;;) {
        try {
          await this.pool.query(insertRows(this.pool.dialect, got.length), params);
          await this.pool.query(upsertPositions(this.pool.dialect, positions.length / 2), positions);
          break;
        } catch (e) {
          if (e instanceof PoolClosed || this.stopped) throw e;
          this.counters.sqlFailed++;
          this.log.error({ pool: this.pool.cfg.id, err: errorText(e) }, 'message log SQL sink: batch not written, trying again');
          await new Promise((r) => setTimeout(r, RETRY_MS));
        }
      }
      this.counters.sqlRows += got.length;
    }
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
