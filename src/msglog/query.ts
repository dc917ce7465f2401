/**
 * Reading the message log (SPEC E2): a topic filter plus a time range or an offset range, read
 * shard by shard with the native scan (Rust filters each record by topic; a segment holding no
 * stream the filter can match is passed over unread) and merged across shards in time order.
 * Nothing is held but one scan batch per shard: callers take entries a batch at a time and write
 * them out (JSON lines) as they go.
 *
 * Positions: offsets are per shard. A position is written `shard:offset,shard:offset,…` (every
 * shard, what `LogReader.position()` gives: where to resume) or a bare `N` (every shard from N).
 * (`N` for every shard: a shard that ends before N starts at its end.)
 * A time starts each shard at its first record at or after it (`DurableStore.offsetAtTime`,
 * a binary search over segments and their sparse index).
 */
import { isUtf8 } from 'node:buffer';
import { decodeEntries, type DurableStore, type StoredMessage, validateTopicFilter } from '../native.js';
import { decodeProperties } from '../wire/message.js';

/** A query refused before anything is read: a bad filter, range, offset or time. */
export class LogQueryError extends Error {
  readonly code = 'ERR_LOG_QUERY';
}

/** A query as given (CLI flags, admin API query string): text, checked by `planQuery`. */
export interface LogQueryInput {
  topic: string;
  /** RFC 3339 time or ms since the epoch; inclusive. */
  from?: string | undefined;
  /** RFC 3339 time or ms since the epoch; inclusive. */
  to?: string | undefined;
  /** A position (see the module comment): where to start, instead of `from`. */
  fromOffset?: string | undefined;
  /** A position to stop before. */
  toOffset?: string | undefined;
  limit?: number | undefined;
}

/** A checked query: per shard, the offsets to read [start, until). */
export interface LogPlan {
  filter: string;
  start: number[];
  until: number[];
  limit: number;
  /** The time bounds (ms), for the record; entries outside them are not read. */
  fromMs: number | null;
  toMs: number | null;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/;

/** A time as RFC 3339 or ms since the epoch. */
export function parseTime(text: string, what: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  if (!RFC3339.test(t) || Number.isNaN(Date.parse(t))) throw new LogQueryError(`${what}: "${text}" is not a time (RFC 3339 such as 2026-01-31T12:00:00Z, or ms since the epoch)`);
  return Date.parse(t);
}

/** A position (`N`, or `shard:offset,…`) as one offset per shard; shards not named start at `dflt`. */
export function parsePosition(text: string, nShards: number, what: string, dflt: (shard: number) => number): number[] {
  const t = text.trim();
  if (/^\d+$/.test(t)) return new Array<number>(nShards).fill(Number(t));
  const out = Array.from({ length: nShards }, (_v, s) => dflt(s));
  for (const part of t.split(',')) {
    const m = /^(\d+):(\d+)$/.exec(part.trim());
    if (!m) throw new LogQueryError(`${what}: "${text}" is not an offset (N, or shard:offset,shard:offset,…)`);
    const shard = Number(m[1]);
    if (shard >= nShards) throw new LogQueryError(`${what}: unknown offset ${part.trim()}: the log has ${nShards} shards (0..${nShards - 1})`);
    out[shard] = Number(m[2]);
  }
  return out;
}

/** A position as `parsePosition` reads it back. */
export function formatPosition(offsets: readonly number[]): string {
  return offsets.map((o, s) => `${s}:${o}`).join(',');
}

/**
 * Check a query against the log as it is now and turn it into offset ranges. The range ends at
 * the log's end as it is now: what is appended meanwhile is not part of the answer.
 */
export function planQuery(store: DurableStore, q: LogQueryInput, now = Date.now()): LogPlan {
  const filter = q.topic;
  const bad = filter === '' ? 'empty' : validateTopicFilter(filter);
  if (bad) throw new LogQueryError(`invalid topic filter "${filter}": ${bad}`);
  if (filter.startsWith('$share/') || filter.startsWith('$log/')) throw new LogQueryError(`invalid topic filter "${filter}": the log is queried by topic filter, not by $share/ or $log/ subscription`);
  if (q.from !== undefined && q.fromOffset !== undefined) throw new LogQueryError('give --from (a time) or --from-offset, not both');
  const limit = q.limit ?? Number.MAX_SAFE_INTEGER;
  if (!Number.isInteger(limit) || limit < 1) throw new LogQueryError(`limit: ${String(q.limit)} is not a positive integer`);
  const n = store.nShards;
  const ends = Array.from({ length: n }, (_v, s) => store.shardEnd(s));
  const fromMs = q.from !== undefined ? parseTime(q.from, '--from') : null;
  const toMs = q.to !== undefined ? parseTime(q.to, '--to') : null;
  if (fromMs !== null && fromMs > now) throw new LogQueryError(`--from ${new Date(fromMs).toISOString()} is in the future (now ${new Date(now).toISOString()})`);
  if (fromMs !== null && toMs !== null && toMs < fromMs) throw new LogQueryError(`reversed range: --to ${new Date(toMs).toISOString()} is before --from ${new Date(fromMs).toISOString()}`);
  let start: number[];
  if (q.fromOffset !== undefined) {
    start = parsePosition(q.fromOffset, n, '--from-offset', () => 0);
    if (/^\d+$/.test(q.fromOffset.trim())) {
      // N for every shard: a shard that ends before N starts at its end (it holds nothing from N).
      const o = start[0] as number;
      const top = Math.max(...ends);
      if (o > top) throw new LogQueryError(`--from-offset: unknown offset ${o}: every shard ends before it (the longest at ${top})`);
      start = start.map((x, s) => Math.min(x, ends[s] as number));
    }
    start.forEach((o, s) => {
      if (o > (ends[s] as number)) throw new LogQueryError(`--from-offset: unknown offset ${s}:${o}: shard ${s} ends at ${ends[s] as number} (its next message gets that offset)`);
    });
  } else if (fromMs !== null) {
    start = ends.map((_e, s) => store.offsetAtTime(s, fromMs));
  } else {
    start = ends.map(() => 0);
  }
  let until = ends.slice();
  if (q.toOffset !== undefined) {
    const to = parsePosition(q.toOffset, n, '--to-offset', (s) => ends[s] as number);
    to.forEach((o, s) => {
      if (o < (start[s] as number)) throw new LogQueryError(`reversed range: --to-offset ${s}:${o} is before the start ${s}:${start[s] as number}`);
    });
    until = until.map((e, s) => Math.min(e, to[s] as number));
  }
  // --to is inclusive: stop before the first record after it.
  if (toMs !== null) until = until.map((e, s) => Math.min(e, store.offsetAtTime(s, toMs + 1)));
  return { filter, start, until, limit, fromMs, toMs };
}

interface ShardHead {
  entries: StoredMessage[];
  i: number;
  /** Where the next scan of this shard starts. */
  scanNext: number;
  /** The shard has nothing more below `until` (or, tailing, below its end for now). */
  done: boolean;
}

/** Entries per scan of a shard. */
const SCAN_BATCH = 1000;

/**
 * Reads a plan's entries in time order across shards (per shard in offset order: a publisher's
 * messages in the order they were published), one scan batch per shard at a time.
 */
export class LogReader {
  private readonly heads: ShardHead[];
  /** Entries given out so far. */
  taken = 0;

  private readonly filters: string[];
  private readonly starts: number[];

  constructor(
    private readonly store: DurableStore,
    /** A topic filter, or several (a record matching any of them). */
    filter: string | readonly string[],
    start: readonly number[],
    /** Per shard, the offset to stop before; null: no end (a tail, `$log/`). */
    private readonly until: readonly number[] | null,
    private readonly limit = Number.MAX_SAFE_INTEGER,
  ) {
    this.filters = typeof filter === 'string' ? [filter] : [...filter];
    this.starts = this.filters.map(() => 0);
    this.heads = start.map((o) => ({ entries: [], i: 0, scanNext: o, done: false }));
  }

  /** Where each shard continues: the next entry not given out yet. */
  offsets(): number[] {
    return this.heads.map((h) => (h.i < h.entries.length ? (h.entries[h.i] as StoredMessage).offset : h.scanNext));
  }

  /** `offsets()` as a position string (resume from it with `--from-offset`). */
  position(): string {
    return formatPosition(this.offsets());
  }

  /** True once the limit is reached or every shard is read to its end. */
  get finished(): boolean {
    if (this.taken >= this.limit) return true;
    return this.heads.every((h) => h.i >= h.entries.length && h.done);
  }

  /** Tailing: shards read to their end are read again (something was appended). */
  rearm(): void {
    for (const h of this.heads) if (h.i >= h.entries.length) h.done = false;
  }

  /** Refill a shard's batch; false when it has nothing more (for now). */
  private fill(s: number, h: ShardHead): boolean {
    while (!h.done && h.i >= h.entries.length) {
      const until = this.until ? (this.until[s] as number) : null;
      if (until !== null && h.scanNext >= until) {
        h.done = true;
        break;
      }
      const r = this.store.scan(s, h.scanNext, this.filters, this.starts, SCAN_BATCH, until);
      h.entries = decodeEntries(r.buffer, r.offsets);
      h.i = 0;
      h.scanNext = r.next;
      if (r.status !== 0 && h.entries.length === 0) h.done = true;
    }
    return h.i < h.entries.length;
  }

  /** Up to `max` entries, the oldest first; fewer (or none) when the end (or the limit) is reached. */
  take(max: number): StoredMessage[] {
    const out: StoredMessage[] = [];
    const n = Math.min(max, this.limit - this.taken);
    while (out.length < n) {
      let best = -1;
      let bestTs = Infinity;
      for (let s = 0; s < this.heads.length; s++) {
        const h = this.heads[s] as ShardHead;
        if (!this.fill(s, h)) continue;
        const ts = (h.entries[h.i] as StoredMessage).timestamp;
        if (ts < bestTs) {
          bestTs = ts;
          best = s;
        }
      }
      if (best < 0) break;
      const h = this.heads[best] as ShardHead;
      out.push(h.entries[h.i++] as StoredMessage);
    }
    this.taken += out.length;
    return out;
  }
}

/**
 * How many entries a plan selects (up to its limit): the same scans, counted, nothing decoded (the
 * total a replay's progress and ETA are measured against). `step` counts for at most `budgetMs`
 * and says whether it is done, so a large range is counted a slice at a time between other work.
 */
export class EntryCounter {
  count = 0;
  private shard = 0;
  private next: number;

  constructor(
    private readonly store: DurableStore,
    private readonly plan: LogPlan,
  ) {
    this.next = plan.start[0] ?? 0;
  }

  get done(): boolean {
    return this.shard >= this.plan.start.length || this.count >= this.plan.limit;
  }

  step(budgetMs: number): boolean {
    const end = performance.now() + budgetMs;
    while (!this.done && performance.now() < end) {
      const until = this.plan.until[this.shard] as number;
      const r = this.next < until ? this.store.scan(this.shard, this.next, [this.plan.filter], [0], 65536, until) : null;
      if (r) {
        this.count += r.offsets.length - 1;
        this.next = r.next;
      }
      if (r === null || r.status !== 0) {
        this.shard++;
        this.next = this.plan.start[this.shard] ?? 0;
      }
    }
    if (this.count > this.plan.limit) this.count = this.plan.limit;
    return this.done;
  }
}

/** Start a reader on a checked plan. */
export function openReader(store: DurableStore, plan: LogPlan): LogReader {
  return new LogReader(store, plan.filter, plan.start, plan.until, plan.limit);
}

/** An entry as the query outputs it (one JSON line). */
export interface LogEntryJson {
  id: string;
  shard: number;
  offset: number;
  time: string;
  ts: number;
  topic: string;
  key: string;
  publisher: string;
  qos: number;
  retain: boolean;
  properties: Record<string, unknown> | null;
  encoding: 'utf8' | 'base64';
  payload: string;
}

/** `keyProperty`: the user property the key is taken from ('' = the publisher's client id). */
export function entryJson(e: StoredMessage, keyProperty: string): LogEntryJson {
  let properties: Record<string, unknown> | null = null;
  let key = e.publisher;
  if (e.properties.length > 0) {
    properties = decodeProperties(e.properties) as Record<string, unknown>;
    const user = properties['userProperties'] as Record<string, string | string[]> | undefined;
    const v = keyProperty !== '' ? user?.[keyProperty] : undefined;
    if (v !== undefined) key = Array.isArray(v) ? (v[0] ?? key) : v;
    if (Buffer.isBuffer(properties['correlationData'])) properties['correlationData'] = (properties['correlationData'] as Buffer).toString('base64');
  }
  const utf8 = isUtf8(e.payload);
  return {
    id: `${e.shard}:${e.offset}`,
    shard: e.shard,
    offset: e.offset,
    time: new Date(e.timestamp).toISOString(),
    ts: e.timestamp,
    topic: e.topic,
    key,
    publisher: e.publisher,
    qos: e.qos,
    retain: e.retain,
    properties,
    encoding: utf8 ? 'utf8' : 'base64',
    payload: e.payload.toString(utf8 ? 'utf8' : 'base64'),
  };
}

/** The RFC 3339 time of the last timestamp formatted (entries of one millisecond are many). */
let lastTs = -1;
let lastIso = '';

/**
 * One entry as its JSON line: `JSON.stringify(entryJson(e, keyProperty))` and a newline, written
 * without the intermediate object (and the time formatted once per millisecond), since the
 * query's stream rate is this function's.
 */
export function entryLine(e: StoredMessage, keyProperty: string): string {
  if (e.properties.length > 0) return `${JSON.stringify(entryJson(e, keyProperty))}\n`; // rare: the general path
  if (e.timestamp !== lastTs) {
    lastTs = e.timestamp;
    lastIso = new Date(e.timestamp).toISOString();
  }
  const utf8 = isUtf8(e.payload);
  const pub = JSON.stringify(e.publisher);
  return `{"id":"${e.shard}:${e.offset}","shard":${e.shard},"offset":${e.offset},"time":"${lastIso}","ts":${e.timestamp},"topic":${JSON.stringify(e.topic)},"key":${pub},"publisher":${pub},"qos":${e.qos},"retain":${e.retain},"properties":null,"encoding":"${utf8 ? 'utf8' : 'base64'}","payload":${JSON.stringify(e.payload.toString(utf8 ? 'utf8' : 'base64'))}}\n`;
}

/**
 * The query's answer as JSON lines, a batch at a time (for an HTTP response or stdout): each
 * batch is read when the consumer wants more, so nothing but one batch is in memory.
 */
export async function* jsonLines(reader: LogReader, keyProperty: string, batch = 1000): AsyncGenerator<string> {
  for (;;) {
    const got = reader.take(batch);
    if (got.length === 0) return;
    let text = '';
    for (const e of got) text += entryLine(e, keyProperty);
    yield text;
  }
}
