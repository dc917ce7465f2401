/**
 * Re-consume (SPEC E2): a client subscribing to `$log/<from>/<filter>` receives the logged messages
 * of `<filter>` from `<from>` — an RFC 3339 time, `earliest`, or a position (`N`: every shard from
 * offset N; or `shard:offset,…`, shards not named from their start) — then the live ones, all read from the log itself: no second copy of the
 * data, no gap and no repeat where history turns into live (it is one reader over one log).
 *
 * A `LogFeed` reads the log with a `LogReader` (time order across shards, each publisher's order
 * kept) and hands each message to the session's delivery (its window, its queue), a page at a time,
 * only while the client keeps up: its session queue below a page and its socket below 1 MiB (as
 * routing/retained-feed.ts). Caught up, it parks on the shards' appends (`waitForAppend`, one
 * waiter per shard at most) and reads on when one moves.
 *
 * A `$log/` subscription is not a subscription of the trie and is not stored: it lasts as long as
 * the connection that made it (a client that comes back subscribes again, from the position its
 * last message came from, say). UNSUBSCRIBE stops it. Deliveries go at min(granted QoS, the
 * message's QoS), with the retain flag clear, under the message's own topic.
 */
import { deliver } from '../session/delivery.js';
import type { Outlet } from '../session/outlet.js';
import { halfLimit, type LogReaderRef, type Session } from '../session/session.js';
import type { DurableStore } from '../native.js';
import type { QoS } from '../wire/codec.js';
import { createMessage, decodeProperties } from '../wire/message.js';
import { LogQueryError, LogReader, planQuery } from './query.js';

export const LOG_PREFIX = '$log/';
/** Messages per page, and the session queue length the next page waits below. */
const PAGE = 1000;
/** Bytes waiting in the client's socket above which the next page waits. */
const BACKLOG = 1 << 20;
/** How soon a feed waiting for the client looks again, ms. */
const WAIT_MS = 2;

/** `$log/<from>/<filter>` split: where to start and the topic filter; null when `filter` is not one. */
export function parseLogFilter(filter: string): { from: string; inner: string } | null {
  if (!filter.startsWith(LOG_PREFIX)) return null;
  const rest = filter.slice(LOG_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return { from: slash <= 0 ? rest : rest.slice(0, slash), inner: '' };
  return { from: rest.slice(0, slash), inner: rest.slice(slash + 1) };
}

/**
 * Where a `$log/` subscription starts, per shard; throws LogQueryError (the SUBACK refuses it) for
 * a bad filter, an unknown offset or a time in the future.
 */
export function logStart(store: DurableStore, from: string, inner: string): number[] {
  if (inner === '') throw new LogQueryError('$log/<from>/<filter>: no topic filter');
  if (from === 'earliest') return planQuery(store, { topic: inner }).start;
  if (/^\d+(:\d+)?(,\d+:\d+)*$/.test(from)) return planQuery(store, { topic: inner, fromOffset: from }).start;
  return planQuery(store, { topic: inner, from }).start;
}

export class LogFeed implements LogReaderRef {
  private readonly reader: LogReader;
  private stopped = false;
  private scheduled = false;
  /** Shards with a waitForAppend outstanding. */
  private readonly waiting: boolean[];

  constructor(
    private readonly store: DurableStore,
    private readonly session: Session,
    private readonly conn: Outlet,
    private readonly filter: string,
    readonly inner: string,
    start: number[],
    private readonly qos: QoS,
    private readonly subIds: number[] | undefined,
    /**
     * The ACL's deny rules inside the filter (Router.readDenied): those topics are skipped, as a
     * subscription skips them. Set again when the ACL is reloaded (Router.enforceAcl).
     */
    public readDenied: ((topic: string) => boolean) | undefined,
  ) {
    this.reader = new LogReader(store, inner, start, null);
    this.waiting = start.map(() => false);
  }

  /** Start reading (after the SUBACK). */
  start(): void {
    (this.session.logReaders ??= new Map()).get(this.filter)?.stop(); // a second SUBSCRIBE to the same $log/ filter starts over
    this.session.logReaders.set(this.filter, this);
    this.run();
  }

  stop(): void {
    this.stopped = true;
    const readers = this.session.logReaders;
    if (readers?.get(this.filter) === this) readers.delete(this.filter);
  }

  private alive(): boolean {
    if (!this.stopped && this.session.outlet === this.conn && this.conn.connected) return true;
    this.stop();
    return false;
  }

  private later(ms: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      this.run();
    }, ms);
  }

  private run(): void {
    if (!this.alive()) return;
    const page = halfLimit(this.session, PAGE);
    if (this.session.queue.length >= page || this.conn.backlog > BACKLOG) {
      this.later(WAIT_MS);
      return;
    }
    let got;
    try {
      got = this.reader.take(page);
    } catch (e) {
      this.conn.disconnect(0x80, `$log/ read failed: ${(e as Error).message}`);
      this.stop();
      return;
    }
    if (got.length === 0) {
      this.park();
      return;
    }
    const now = Date.now();
    const denied = this.readDenied;
    for (const e of got) {
      if (denied !== undefined && denied(e.topic)) continue;
      const msg = createMessage(e.topic, Buffer.from(e.payload), e.qos, false, e.properties.length > 0 ? decodeProperties(e.properties) : undefined, e.publisher, now);
      deliver(this.session, msg, (this.qos < e.qos ? this.qos : e.qos) as QoS, false, this.subIds, now);
    }
    this.later(0);
  }

  /** Caught up: read on once a shard moves past where this reader is. */
  private park(): void {
    const at = this.reader.offsets();
    at.forEach((after, s) => {
      if (this.waiting[s]) return;
      this.waiting[s] = true;
      // Resolves once the shard's end passes `after` (the reader's next offset there).
      this.store.waitForAppend(s, after).then(
        () => {
          this.waiting[s] = false;
          this.reader.rearm();
          this.run();
        },
        () => {
          this.waiting[s] = false; // the store closed: the broker is stopping
        },
      );
    });
  }
}

