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

/** What a reader merges: something at a timestamp and an offset of its shard. */
interface Positioned {
  readonly timestamp: number;
  readonly offset: number;
}

interface ShardHead<T> {
  items: T[];
  i: number;
  /** Where the next scan of this shard starts. */
  scanNext: number;
  /** The shard has nothing more below `until` (or, tailing, below its end for now). */
  done: boolean;
}

/** Entries per scan of a shard. */
const SCAN_BATCH = 1000;

/**
 * Reads per shard with `fetch` (one scan batch per shard at a time) and gives out in time order
 * across shards (per shard in offset order: a publisher's messages in the order they were published).
 */
abstract class MergedReader<T extends Positioned> {
  private readonly heads: ShardHead<T>[];
  /** Items given out so far. */
  taken = 0;

  constructor(
    start: readonly number[],
    /** Per shard, the offset to stop before; null: no end (a tail, `$log/`). */
    private readonly until: readonly number[] | null,
    private readonly limit: number,
  ) {
    this.heads = start.map((o) => ({ items: [], i: 0, scanNext: o, done: false }));
  }

  /** One scan of `shard` from `from`, stopping before `until`. */
  protected abstract fetch(shard: number, from: number, until: number | null): { items: T[]; next: number; status: number };

  /** Where each shard continues: the next item not given out yet. */
  offsets(): number[] {
    return this.heads.map((h) => (h.i < h.items.length ? (h.items[h.i] as T).offset : h.scanNext));
  }

  /** `offsets()` as a position string (resume from it with `--from-offset`). */
  position(): string {
    return formatPosition(this.offsets());
  }

  /** True once the limit is reached or every shard is read to its end. */
  get finished(): boolean {
    if (this.taken >= this.limit) return true;
    return this.heads.every((h) => h.i >= h.items.length && h.done);
  }

  /** Tailing: shards read to their end are read again (something was appended). */
  rearm(): void {
    for (const h of this.heads) if (h.i >= h.items.length) h.done = false;
  }

  /** Refill a shard's batch; false when it has nothing more (for now). */
  private fill(s: number, h: ShardHead<T>): boolean {
    while (!h.done && h.i >= h.items.length) {
      const until = this.until ? (this.until[s] as number) : null;
      if (until !== null && h.scanNext >= until) {
        h.done = true;
        break;
      }
      const r = this.fetch(s, h.scanNext, until);
      h.items = r.items;
      h.i = 0;
      h.scanNext = r.next;
      if (r.status !== 0 && r.items.length === 0) h.done = true;
    }
    return h.i < h.items.length;
  }

  /** Up to `max` items, the oldest first; fewer (or none) when the end (or the limit) is reached. */
  take(max: number): T[] {
    const out: T[] = [];
    const n = Math.min(max, this.limit - this.taken);
    while (out.length < n) {
      let best = -1;
      let bestTs = Infinity;
      for (let s = 0; s < this.heads.length; s++) {
        const h = this.heads[s] as ShardHead<T>;
        if (!this.fill(s, h)) continue;
        const ts = (h.items[h.i] as T).timestamp;
        if (ts < bestTs) {
          bestTs = ts;
          best = s;
        }
      }
      if (best < 0) break;
      const h = this.heads[best] as ShardHead<T>;
      out.push(h.items[h.i++] as T);
    }
    this.taken += out.length;
    return out;
  }
}

/** An entry with its delivery counts (persistence/embedded/delivery-counts.ts says what they count). */
export interface CountedMessage extends StoredMessage {
  delivered: number;
  acked: number;
}

/** The entries of a range (or a tail), decoded; with `withCounts`, each with its delivery counts. */
export class LogReader extends MergedReader<StoredMessage> {
  private readonly filters: string[];
  private readonly starts: number[];

  constructor(
    private readonly store: DurableStore,
    /** A topic filter, or several (a record matching any of them). */
    filter: string | readonly string[],
    start: readonly number[],
    until: readonly number[] | null,
    limit = Number.MAX_SAFE_INTEGER,
    private readonly withCounts = false,
  ) {
    super(start, until, limit);
    this.filters = typeof filter === 'string' ? [filter] : [...filter];
    this.starts = this.filters.map(() => 0);
  }

  protected fetch(shard: number, from: number, until: number | null): { items: StoredMessage[]; next: number; status: number } {
    const r = this.store.scan(shard, from, this.filters, this.starts, SCAN_BATCH, until);
    const items = decodeEntries(r.buffer, r.offsets);
    if (this.withCounts && items.length > 0) {
      const c = this.store.readCounts(shard, Float64Array.from(items, (e) => e.offset));
      items.forEach((e, i) => Object.assign(e, { delivered: c[2 * i] as number, acked: c[2 * i + 1] as number }));
    }
    return { items, next: r.next, status: r.status };
  }
}

/** One entry's JSON line, as Rust wrote it: bytes [start, end) of its scan's buffer. */
export interface JsonLine extends Positioned {
  readonly buffer: Buffer;
  readonly start: number;
  readonly end: number;
}

/** Lines back to back in one buffer (one copy each; no view per line). */
export function concatLines(lines: readonly JsonLine[]): Buffer {
  let size = 0;
  for (const l of lines) size += l.end - l.start;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const l of lines) at += l.buffer.copy(out, at, l.start, l.end);
  return out;
}

/** The JSON lines of a range, written in Rust (`Store.scanLines`): no entry decoded in JavaScript. */
export class LineReader extends MergedReader<JsonLine> {
  constructor(
    private readonly store: DurableStore,
    private readonly filter: string,
    start: readonly number[],
    until: readonly number[] | null,
    limit: number,
    private readonly keyProperty: string,
  ) {
    super(start, until, limit);
  }

  protected fetch(shard: number, from: number, until: number | null): { items: JsonLine[]; next: number; status: number } {
    const r = this.store.scanLines(shard, from, [this.filter], SCAN_BATCH, this.keyProperty, until);
    const items: JsonLine[] = [];
    const { buffer, offsets, meta } = r;
    for (let i = 0; i + 1 < offsets.length; i++) items.push({ timestamp: meta[2 * i] as number, offset: meta[2 * i + 1] as number, buffer, start: offsets[i] as number, end: offsets[i + 1] as number });
    return { items, next: r.next, status: r.status };
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

/** Start a reader on a checked plan (`withCounts`: entries with their delivery counts). */
export function openReader(store: DurableStore, plan: LogPlan, withCounts = false): LogReader {
  return new LogReader(store, plan.filter, plan.start, plan.until, plan.limit, withCounts);
}

/** Start a reader of JSON lines on a checked plan. */
export function openLineReader(store: DurableStore, plan: LogPlan, keyProperty: string): LineReader {
  return new LineReader(store, plan.filter, plan.start, plan.until, plan.limit, keyProperty);
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
  /** PUBLISH packets written to subscribers (persistence/embedded/delivery-counts.ts). */
  delivered: number;
  /** Deliveries completed: PUBACK, PUBCOMP, or a QoS 0 PUBLISH written. */
  acked: number;
}

/**
 * An entry as the query outputs it (`keyProperty`: the user property the key is taken from, '' =
 * the publisher's client id). The stream itself is written by Rust (LineReader,
 * strata_core::log::lines), byte for byte `JSON.stringify` of this (test/unit/msglog-lines.test.ts).
 */
export function entryJson(e: StoredMessage & Partial<Pick<CountedMessage, 'delivered' | 'acked'>>, keyProperty: string): LogEntryJson {
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
    delivered: e.delivered ?? 0,
    acked: e.acked ?? 0,
  };
}

/**
 * Let the event loop turn: the scans' buffers come from Rust, and Node frees them (napi
 * finalizers) only when it does — a loop of scans that never lets it grows by every byte read.
 */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Batches read between two turns of the event loop (see `turn`). */
export const BATCHES_PER_TURN = 16;

/**
 * The query's answer as JSON lines, a batch at a time (for an HTTP response or stdout): each
 * batch is read when the consumer wants more, so nothing but one batch (and what the event loop
 * has not freed yet: see `turn`) is in memory.
 */
export async function* jsonLines(reader: LineReader, batch = 1000): AsyncGenerator<Buffer> {
  for (let n = 1; ; n++) {
    const got = reader.take(batch);
    if (got.length === 0) return;
    yield concatLines(got);
    if (n % BATCHES_PER_TURN === 0) await turn();
  }
}
