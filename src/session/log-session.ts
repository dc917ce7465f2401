/**
 * A persistent session reading the log (SPEC B3, EMQX 5 durable sessions): the log is its
 * queue. A logged message is written once; each session keeps only how far it has read each
 * shard (`next`) and its deliveries in flight, in one progress record (session/progress.ts)
 * committed in the background, batched per event-loop turn.
 *
 * Two modes:
 * - live: caught up with the log; a logged message for the session is taken as it is stored
 *   (Arrival 'take': delivered or queued, `next` moves past it);
 * - replaying: behind (window and memory queue full) or away; new logged messages are left in
 *   the log (Arrival 'left') and the session reads them back with `fill`, which scans each
 *   shard from `next` for messages matching its subscriptions. Once every shard reports
 *   caught up in one `fill`, it is live again.
 *
 * Invariants:
 * - per shard, messages are taken in offset order (appends complete in order; scans read in
 *   order), so every delivery sent or in flight has a lower offset than every one still
 *   queued; the record's `next` is lowered to the first queued one, so a restart neither
 *   loses a queued delivery nor repeats a completed one;
 * - a logged message at an offset below `next` is never taken again (Arrival 'duplicate');
 * - deliveries through shared subscriptions cannot be found again by a scan (another member
 *   may have had them): they are `pinned`, recorded one by one in the progress record.
 */
import { createMessage, decodeProperties, LogMessage, type Message, payloadSize } from '../wire/message.js';
import {
  DRAIN_QUAD,
  LAYOUTS,
  type DrainControl,
  REPLAY_END,
  REPLAY_ID_POS,
  REPLAY_OFFSET,
  REPLAY_PAYLOAD,
  REPLAY_SHARD,
  REPLAY_STATUS_DONE,
  REPLAY_STATUS_NEXT,
  REPLAY_STATUS_SLOW,
  REPLAY_STATUS_UNTIL,
  REPLAY_STRIDE,
  type ReplayResult,
  type ReplayShard,
  type ReplaySub,
  type ScanResult,
} from '../native.js';
import type { QoS } from '../wire/codec.js';
import type { Outlet } from './outlet.js';
import { ProgressWriter } from '../persistence/embedded/progress.js';
import type { Gap, MessageLog, Progress, ProgressEntry, ProgressSource } from '../persistence/registries.js';
import {
  type Arrival,
  type BacklogLimits,
  type DeliveryStats,
  type DurableRef,
  type Inflight,
  isRecorded,
  type Pending,
  type Session,
  type SessionPersistence,
  type StreamOutcome,
  type Subscription,
} from './session.js';

/** What a LogSession needs from the store: its message log (implemented by the embedded store). */
export type LogSource = MessageLog;

/** A delivery read from one shard, waiting to be merged by time with the other shards'. */
interface Candidate {
  ts: number;
  p: Pending;
}

/** PUBLISH packets `stream` read from the log and has not sent yet: from packet `at` (byte `pos`) on. */
interface Ahead {
  r: ReplayResult;
  count: number;
  at: number;
  pos: number;
}

/** An offline session's record is rewritten for its backlog count every this many messages. */
const COUNT_STEP = 64;

/**
 * Native drain loops running at once, each on a thread of its own; beyond that, sessions drain
 * on the event loop (`stream`). On a machine with few cores more loops would only take turns.
 */
const MAX_NATIVE_DRAINS = 16;
let nativeDrains = 0;

/** Native drain loops running now (all brokers of this process): the admin metrics' gauge. */
export function activeNativeDrains(): number {
  return nativeDrains;
}

/** How often a session drained by the native loop has its progress committed (as `mark`). */
const NATIVE_PROGRESS_MS = 10;

/** A connection handed to the native drain loop (startNative), and the shards it reads. */
interface Native {
  ctl: DrainControl;
  conn: Outlet;
  want: ReplayShard[];
  /** Pump again (once the loop ended by itself). */
  wake: () => void;
  /** Commits the session's progress (from the loop's snapshot) while the loop runs, and reports. */
  timer: NodeJS.Timeout;
  /** The loop records what it writes and what is acknowledged, for the delivery listeners. */
  report: boolean;
}

const SCAN_NEXT = REPLAY_STATUS_NEXT;
const SCAN_DONE = REPLAY_STATUS_DONE;
const SCAN_UNTIL = REPLAY_STATUS_UNTIL;
/** The batch-fetch entry layout and the drain loop's in-flight quads, as the core defines them. */
const ENTRY = LAYOUTS.entry;
const INFLIGHT = LAYOUTS.inflight;

/** The gaps of a shard without any (shared, frozen: a session's first gap replaces it). */
const NO_GAPS = Object.freeze([]) as unknown as Gap[];
/** Per shard count, every shard without gaps (shared, frozen: copied on a session's first gap). */
const NO_GAPS_BY_SHARDS: Gap[][][] = [];
function noGaps(shards: number): Gap[][] {
  return (NO_GAPS_BY_SHARDS[shards] ??= Object.freeze(new Array<Gap[]>(shards).fill(NO_GAPS)) as Gap[][]);
}
/** Nothing read ahead (shared, frozen: a read replaces it). */
const NO_AHEAD = Object.freeze([]) as unknown as Ahead[];

export class LogSession implements SessionPersistence, ProgressSource {
  replaying = true;
  /** Replay reads the plain subscriptions only: a shared delivery is routed apart (SessionPersistence). */
  readonly sharedApart = true;
  /**
   * Per shard: every logged message for this session below it was taken (or dropped). Shared
   * and frozen (the shard ends sessions made meanwhile share) until this session moves on: set
   * with setNext.
   */
  next: readonly number[];
  /**
   * Per shard: ranges dropped because the queue was full (drop_newest), oldest first (NO_GAPS:
   * none yet; the whole array shared and frozen while no shard has any: set with setGaps).
   */
  gaps: Gap[][];
  /** drop_oldest: deliveries still to discard from the head of the backlog (already counted). */
  excess = 0;
  /**
   * Messages (and payload bytes) left in the log for this session: what the queue limits
   * count. Kept in the progress record (see COUNT_STEP).
   */
  backlog = 0;
  backlogBytes = 0;
  readonly clientId: string;
  /** Read ahead by `stream`, not sent yet, oldest first; their shards' `next` is past them. */
  private ahead: Ahead[] = NO_AHEAD;
  /** A `stream` read stopped before a delivery only `fill` makes. */
  private slow = false;
  /** A worker-thread read is under way (`readBehind`); `gen` tells a given-up one. */
  private reading = false;
  private gen = 0;
  /** The native drain loop has the connection. */
  private native: Native | null = null;
  /** Shared deliveries handed to this session (`adopt`), recorded as pins, not delivered until that record is durable. */
  private adopted: Pending[] | null = null;

  constructor(
    private readonly src: LogSource,
    readonly session: Session,
    private readonly limits: BacklogLimits,
    private readonly drops: DeliveryStats,
    next: readonly number[],
  ) {
    this.clientId = session.clientId;
    this.next = next;
    this.gaps = noGaps(next.length);
  }

  /** Shard `s` is read up to `v`: `next`, copied first while shared. */
  setNext(s: number, v: number): void {
    if (this.next[s] === v) return;
    if (Object.isFrozen(this.next)) this.next = this.next.slice();
    (this.next as number[])[s] = v;
  }

  /** Apply a progress record read at start-up; returns the deliveries it holds. */
  restore(p: Progress): ProgressEntry[] {
    p.next.forEach((v, i) => this.setNext(i, v));
    p.gaps.forEach((g, i) => {
      if (g.length > 0 && i < this.gaps.length) this.setGaps(i, [...(this.gaps[i] as Gap[]), ...g]);
    });
    this.excess = p.excess;
    this.backlog = p.backlog;
    this.backlogBytes = p.backlogBytes;
    return p.entries;
  }

  attached(): void {
    this.replaying = true;
  }

  detached(): void {
    this.replaying = true;
    this.unreadAhead();
    // Nothing read from the log stays in memory while the client is away (a scan buffer a
    // message points into can be megabytes): bodies are read again by position when it
    // returns (resumeSession, pump).
    const session = this.session;
    for (const e of session.inflight.values()) if (e.ref) e.msg = null;
    let bytes = 0;
    for (const p of session.queue) {
      if (p.ref) p.msg = null;
      else if (p.msg) bytes += payloadSize(p.msg);
    }
    session.queueBytes = bytes;
  }

  arrive(ref: DurableRef, bytes: number, canTake: boolean, connected: boolean): Arrival {
    const s = ref.shard;
    if (ref.offset < (this.next[s] as number)) return 'duplicate';
    const session = this.session;
    const lim = this.limits;
    // The limits count what waits in memory and what waits in the log alike.
    const full =
      this.backlog + session.queue.length >= lim.maxQueued ||
      (lim.maxQueuedBytes > 0 && this.backlogBytes + session.queueBytes + bytes > lim.maxQueuedBytes);
    if (connected && !this.replaying && canTake && !full) {
      this.setNext(s, ref.offset + 1);
      this.src.mark(this);
      return 'take';
    }
    this.replaying = true;
    const gaps = this.gaps[s] as Gap[];
    const open = gaps[gaps.length - 1];
    if (open && open.to === null) {
      if (full) return this.dropped();
      open.to = ref.offset; // room again: the gap ends before this message
      this.src.mark(this);
    } else if (full) {
      if (lim.overflow === 'disconnect' && connected) {
        this.backlog++;
        this.backlogBytes += bytes;
        return 'disconnect';
      }
      if (lim.overflow === 'drop_oldest' && lim.maxQueued > 0) {
        // Keep the new message; the oldest waiting one goes: from memory, else when read.
        const oldest = session.dequeue();
        if (oldest) {
          this.backlog++;
          this.backlogBytes += bytes;
        } else {
          this.excess++;
          // The native loop does not skip deliveries: the event loop takes the drain back.
          if (this.native !== null) setImmediate(() => this.endNative(false));
        }
        this.dropped();
        this.src.mark(this);
        return 'left';
      }
      if (gaps === NO_GAPS) this.setGaps(s, [{ from: ref.offset, to: null }]);
      else gaps.push({ from: ref.offset, to: null });
      this.src.mark(this);
      return this.dropped();
    }
    this.backlog++;
    this.backlogBytes += bytes;
    // The counts survive a restart, give or take the last COUNT_STEP: a busy offline session
    // does not rewrite its record for every message.
    if (this.backlog % COUNT_STEP === 0) this.src.mark(this);
    return 'left';
  }

  /** Shard `s`'s gaps (the per-shard array copied first while it is the shared one). */
  private setGaps(s: number, g: Gap[]): void {
    if (Object.isFrozen(this.gaps)) this.gaps = [...this.gaps];
    this.gaps[s] = g;
  }

  private dropped(): Arrival {
    this.session.dropped++;
    this.drops.dropped++;
    this.drops.dropReasons.queueFull++;
    return 'dropped';
  }

  save(): void {
    this.src.mark(this);
  }

  pin(p: Pending): Promise<void> {
    p.pinned = true;
    return this.src.touch(this);
  }

  adopt(p: Pending): Promise<void> {
    p.pinned = true;
    (this.adopted ??= []).push(p);
    const recorded = this.src.touch(this);
    const drop = (): void => {
      const a = this.adopted;
      if (a === null) return;
      const i = a.indexOf(p);
      if (i >= 0) a.splice(i, 1);
      if (a.length === 0) this.adopted = null;
    };
    // Out of the list when settled; the caller then delivers it, pinned, in the same turn.
    return recorded.then(drop, (e: unknown) => {
      drop();
      throw e;
    });
  }

  sent(p: Pending, _id: number): Promise<void> | null {
    if (p.qos === 2) return this.src.touch(this);
    this.src.mark(this);
    return null;
  }

  released(_p: Pending, _id: number): Promise<void> {
    return this.src.touch(this);
  }

  completed(_p: Pending): void {
    this.src.mark(this);
  }

  load(entries: Pending[]): void {
    this.src.load(entries);
  }

  /**
   * Read up to `n` deliveries from the log into the session's queue. Each shard is scanned
   * from `next` and the shards' entries are merged by time, so messages from different
   * publishers come back in about the order they were published (one publisher's are always in
   * order: it has one shard). A shard whose entries were not all taken resumes at the first
   * one left. Ends replay once every shard is caught up.
   */
  fill(session: Session, n: number): void {
    if (!this.replaying) return;
    this.unreadAhead();
    const subs = this.replayedSubs();
    const filters = subs.map((sub) => sub.filter);
    const shards = this.next.length;
    const found: Candidate[][] = [];
    const results: (ScanResult | null)[] = [];
    for (let s = 0; s < shards; s++) {
      const at = subs.length === 0 ? null : this.readFrom(s);
      if (!at) {
        results.push(null);
        found.push([]);
        continue;
      }
      const r = this.src.scan(s, at.from, filters, this.starts(subs, s), n, at.until);
      results.push(r);
      found.push(this.decode(s, r, subs));
    }
    // Merge by time; per shard the entries are in offset order already.
    const heads = new Array<number>(shards).fill(0);
    for (let taken = 0; taken < n; taken++) {
      let best = -1;
      for (let s = 0; s < shards; s++) {
        const c = (found[s] as Candidate[])[heads[s] as number];
        if (c && (best < 0 || c.ts < ((found[best] as Candidate[])[heads[best] as number] as Candidate).ts)) best = s;
      }
      if (best < 0) break;
      const c = (found[best] as Candidate[])[heads[best] as number] as Candidate;
      heads[best] = (heads[best] as number) + 1;
      if (this.backlog > 0) {
        this.backlog--;
        this.backlogBytes = Math.max(0, this.backlogBytes - payloadSize(c.p.msg as Message));
      }
      if (this.excess > 0) {
        this.excess--; // dropped (and counted) when a newer message overflowed the queue
        continue;
      }
      session.enqueue(c.p);
    }
    let caughtUp = 0;
    for (let s = 0; s < shards; s++) {
      const r = results[s];
      if (!r) {
        if (subs.length === 0) this.setNext(s, this.src.shardEnd(s));
        caughtUp++;
        continue;
      }
      const left = (found[s] as Candidate[])[heads[s] as number];
      if (left) {
        this.setNext(s, left.p.ref!.offset); // read again next time
        continue;
      }
      if (this.advance(s, r.next, r.status)) caughtUp++;
    }
    if (caughtUp === shards) this.caughtUp();
    this.src.mark(this);
  }

  /**
   * The drain fast path (SessionPersistence.stream): the Rust replay frames the deliveries
   * as PUBLISH packets in one buffer, merged across shards by time as `fill` does; here they
   * get their packet ids and go to the socket as slices of that buffer. In flight they hold
   * only their log position (`msg` null), as after a restart.
   *
   * Reading is double-buffered: while one buffer is being sent, the next is read on a worker
   * thread (`replayAsync`), so the event loop only patches ids and writes. A read is made on
   * the event loop only when nothing is ahead (the first, or one the worker did not finish in
   * time); `wake` is called when a worker read completes.
   */
  stream(conn: Outlet, n: number, native: boolean, plain: boolean, maxBacklog: number, wake: () => void): StreamOutcome {
    const session = this.session;
    if (this.native !== null) return 'native';
    const subs = this.replayedSubs();
    // Subscription ids, topic aliases and ACL deny rules inside a filter are applied per delivery (`fill`).
    if (conn.outAliases !== null || subs.some((sub) => sub.readDenied !== undefined || (conn.protocolVersion === 5 && sub.subscriptionId !== undefined))) {
      this.unreadAhead();
      return 'slow';
    }
    if (native && this.ahead.length === 0 && !this.reading && !this.slow && this.startNative(conn, subs, n, wake, !plain)) return 'native';
    for (let reads = 0; ; ) {
      for (let a = this.ahead[0]; a; a = this.ahead[0]) {
        this.sendAhead(conn, a, maxBacklog, !plain);
        if (a.at < a.count) {
          this.readBehind(conn, subs, n, wake);
          return 'sent'; // the window is full, or the socket's buffer
        }
        this.ahead.shift();
      }
      if (this.reading) return 'waiting';
      if (session.inflight.size >= conn.window) {
        this.readBehind(conn, subs, n, wake);
        return 'sent';
      }
      if (this.slow) {
        this.slow = false;
        return 'slow';
      }
      if (reads++ === 2) return 'more';
      this.readAhead(conn, subs, n);
      if (!this.replaying) return 'caught-up';
    }
  }

  /**
   * Hand the connection to the native drain loop (strata_core::drain) for the log as it is
   * now: it sends, keeps the window and takes the PUBACKs on its own thread, and hands back
   * (endNative) when it has read that far, before a delivery only `fill` makes, when the
   * client sends another packet or closes, or when the connection is closed here. False:
   * not now (not plain TCP, something buffered, a delivery in flight it cannot carry, all
   * loops busy), `stream` goes on as usual.
   */
  private startNative(conn: Outlet, subs: Subscription[], n: number, wake: () => void, report: boolean): boolean {
    const session = this.session;
    if (nativeDrains >= MAX_NATIVE_DRAINS || this.excess > 0 || session.queue.length > 0) return false;
    const quads = new Float64Array(session.inflight.size * DRAIN_QUAD);
    let q = 0;
    for (const [id, e] of session.inflight) {
      // What the loop carries: QoS 1 deliveries of logged messages the log finds again.
      if (e.qos !== 1 || e.phase !== 'publish' || !e.ref || e.pinned || e.retainedTopic !== undefined || e.subIds !== undefined) return false;
      quads[q + INFLIGHT.id] = id;
      quads[q + INFLIGHT.shard] = e.ref.shard;
      quads[q + INFLIGHT.offset] = e.ref.offset;
      quads[q + INFLIGHT.retain] = e.retain ? 1 : 0;
      q += DRAIN_QUAD;
    }
    const fd = conn.nativeFd();
    if (fd === null) return false;
    const want = this.replayShards(subs, true);
    if (want.length === 0) return false;
    const ctl = this.src.drain(fd, want, this.replaySubs(subs), conn.protocolVersion, this.clientId, n, conn.clientMaxPacketSize, conn.window, quads, session.nextId, report);
    session.inflight.clear();
    const timer = setInterval(() => {
      this.src.mark(this);
      if (report) this.reported(ctl.takeReports());
    }, NATIVE_PROGRESS_MS);
    timer.unref();
    this.native = { ctl, conn, want, wake, timer, report };
    nativeDrains++;
    session.env.stats.nativeDrains++;
    conn.handOff(
      () => this.endNative(true),
      () => ctl.lastReadMs(),
    );
    ctl.run().then(
      () => this.endNative(false),
      () => this.endNative(false),
    );
    return true;
  }

  /**
   * Take the session's state back from the native loop: its deliveries in flight (in the
   * order sent, as after a restart: log position only), packet ids, each shard's next offset;
   * then the connection (unsent frames, held writes, unread bytes). `closing`: the connection
   * is being closed (nothing more is read from it); else the session is pumped again.
   */
  private endNative(closing: boolean): void {
    const nat = this.native;
    if (nat === null) return;
    this.native = null;
    nativeDrains--;
    clearInterval(nat.timer);
    const h = nat.ctl.stop();
    if (h === null) return;
    const session = this.session;
    forEachQuad(h.inflight, (id, e) => session.addInflight(id, e));
    session.nextId = h.nextId;
    this.drops.nativeSent += h.sent;
    this.backlog = Math.max(0, this.backlog - h.sent);
    this.backlogBytes = Math.max(0, this.backlogBytes - h.sentPayload);
    this.advanceRead(nat.want, h.next, h.status);
    this.src.mark(this);
    if (nat.report) this.reported(h.reports);
    nat.conn.takeBack(h.unsent, h.rest, closing);
    if (h.error) this.src.log.debug({ clientId: this.clientId, err: h.error }, 'native drain ended');
    if (!closing) nat.wake();
  }

  /**
   * Tell the delivery listeners what the native loop wrote and what was acknowledged
   * (LAYOUTS.report values each, in the order it happened): the messages are read back from the
   * log in one batch.
   */
  private reported(r: Float64Array): void {
    const R = LAYOUTS.report;
    const n = r.length / R.stride;
    if (n === 0) return;
    const env = this.session.env;
    const counts = env.counts;
    if (counts !== null) {
      for (let i = 0; i < r.length; i += R.stride) {
        const acked = r[i + R.acked] === 1;
        counts.add(r[i + R.shard] as number, r[i + R.offset] as number, acked ? 0 : 1, acked || r[i + R.qos] === 0 ? 1 : 0);
      }
    }
    if (env.delivered === null && env.acked === null) return;
    const items: Pending[] = [];
    for (let i = 0; i < r.length; i += R.stride) {
      const ref = { shard: r[i + R.shard] as number, offset: r[i + R.offset] as number };
      items.push({ msg: null, qos: r[i + R.qos] as QoS, retain: r[i + R.retain] === 1, subIds: undefined, ref });
    }
    this.src.load(items);
    items.forEach((p, k) => {
      if (p.msg === null) return; // gone from the log meanwhile (retention)
      if (r[k * R.stride + R.acked] === 1) env.acked?.(this.clientId, p.msg);
      else env.delivered?.(this.clientId, p.msg, p.qos);
    });
  }

  /** Each shard not caught up, as a replay request; `bounded`: read nothing appended after now. */
  private replayShards(subs: Subscription[], bounded: boolean): ReplayShard[] {
    const want: ReplayShard[] = [];
    for (let s = 0; s < this.next.length; s++) {
      const at = subs.length === 0 ? null : this.readFrom(s);
      if (!at) {
        if (subs.length === 0) this.setNext(s, this.src.shardEnd(s));
        continue;
      }
      // A worker read must not take what arrives meanwhile: such a message may be dropped
      // for this session on arrival (its queue full) or read by the next request anyway.
      const end = bounded ? this.src.shardEnd(s) : Number.POSITIVE_INFINITY;
      const until = Math.min(at.until ?? Number.POSITIVE_INFINITY, end);
      want.push({ shard: s, from: at.from, until: Number.isFinite(until) ? until : undefined, starts: this.starts(subs, s) });
    }
    return want;
  }

  private replaySubs(subs: Subscription[]): ReplaySub[] {
    return subs.map((sub) => ({ filter: sub.filter, qos: sub.qos, noLocal: sub.noLocal, retainAsPublished: sub.retainAsPublished }));
  }

  /** A replay result for `want`: shards move on, its packets go behind those already ahead. */
  private took(want: ReplayShard[], r: ReplayResult): void {
    this.advanceRead(want, r.next, r.status);
    const count = r.meta.length / REPLAY_STRIDE;
    if (count > 0) {
      if (this.ahead === NO_AHEAD) this.ahead = [];
      this.ahead.push({ r, count, at: 0, pos: 0 });
    }
    this.src.mark(this);
  }

  /** The shards of a replay request were read to `next` (with their `status`, per request). */
  private advanceRead(want: ReplayShard[], next: Float64Array, status: Uint32Array): void {
    want.forEach((w, i) => {
      const st = status[i] as number;
      this.advance(w.shard, next[i] as number, st);
      if (st === REPLAY_STATUS_SLOW) this.slow = true;
    });
  }

  /** One `replay` on the event loop, into `ahead`; ends replay when every shard is caught up. */
  private readAhead(conn: Outlet, subs: Subscription[], n: number): void {
    const want = this.replayShards(subs, false);
    if (want.length === 0) {
      this.caughtUp();
      this.src.mark(this);
      return;
    }
    this.took(want, this.src.replay(want, this.replaySubs(subs), conn.protocolVersion, this.clientId, n, conn.clientMaxPacketSize));
  }

  /** Start reading the next buffer on a worker thread while this one is sent (one read at a time). */
  private readBehind(conn: Outlet, subs: Subscription[], n: number, wake: () => void): void {
    if (this.reading || this.slow || this.ahead.length > 1) return;
    const want = this.replayShards(subs, true);
    if (want.length === 0) return; // caught up: decided on the event loop once all is sent
    const gen = this.gen;
    this.reading = true;
    this.src.replayAsync(want, this.replaySubs(subs), conn.protocolVersion, this.clientId, n, conn.clientMaxPacketSize).then(
      (r) => {
        if (gen !== this.gen) return; // given up (unreadAhead): `next` was not moved for it
        this.reading = false;
        this.took(want, r);
        wake();
      },
      () => {
        if (gen !== this.gen) return;
        this.reading = false; // read again on the event loop, where an error is reported
        wake();
      },
    );
  }

  /**
   * Send read-ahead packets while the window has room (QoS 0 ones: while the socket's buffer
   * is below `maxBacklog`, the write high watermark): contiguous runs
   * of the buffer, packet ids patched in. A delivery still to drop under drop_oldest is cut
   * out of the run.
   */
  private sendAhead(conn: Outlet, a: Ahead, maxBacklog: number, observed: boolean): void {
    const session = this.session;
    // Observed (delivery listeners, delivery counts): what is sent is counted by position and,
    // for listeners, read back as messages (one batch read) and reported; in-flight entries
    // keep theirs, so their acknowledgements are reported too.
    const sent: Pending[] | null = observed ? [] : null;
    const meta = a.r.meta;
    const buf = a.r.buffer;
    let run = a.pos;
    let pos = a.pos;
    let i = a.at;
    for (; i < a.count; i++) {
      const m = i * REPLAY_STRIDE;
      const idPos = meta[m + REPLAY_ID_POS] as number;
      if (idPos >= 0 ? session.inflight.size >= conn.window : conn.backlog > maxBacklog) break;
      const end = meta[m + REPLAY_END] as number;
      if (this.backlog > 0) {
        this.backlog--;
        this.backlogBytes = Math.max(0, this.backlogBytes - (meta[m + REPLAY_PAYLOAD] as number));
      }
      if (this.excess > 0) {
        this.excess--; // dropped (and counted) when a newer message overflowed the queue
        if (pos > run) conn.write(buf.subarray(run, pos));
        run = end;
      } else if (idPos >= 0) {
        const id = session.allocateId();
        buf[idPos] = id >> 8;
        buf[idPos + 1] = id & 0xff;
        const head = buf[pos] as number;
        const ref = { shard: meta[m + REPLAY_SHARD] as number, offset: meta[m + REPLAY_OFFSET] as number };
        const entry: Inflight = { msg: null, qos: ((head >> 1) & 3) as QoS, retain: (head & 1) === 1, subIds: undefined, ref, phase: 'publish' };
        session.addInflight(id, entry);
        sent?.push(entry);
        (this.drops.sent[entry.qos] as number)++;
      } else if (sent === null) (this.drops.sent[0] as number)++;
      else {
        (this.drops.sent[0] as number)++;
        const head = buf[pos] as number;
        sent.push({ msg: null, qos: 0, retain: (head & 1) === 1, subIds: undefined, ref: { shard: meta[m + REPLAY_SHARD] as number, offset: meta[m + REPLAY_OFFSET] as number } });
      }
      pos = end;
    }
    if (pos > run) conn.write(buf.subarray(run, pos));
    this.drops.fastDrained += i - a.at;
    a.at = i;
    a.pos = pos;
    this.src.mark(this);
    if (sent !== null && sent.length > 0) {
      const env = session.env;
      const counts = env.counts;
      if (counts !== null) for (const p of sent) counts.delivered(null, p.ref, p.qos);
      if (env.delivered !== null) {
        this.src.load(sent);
        for (const p of sent) if (p.msg) env.delivered(this.clientId, p.msg, p.qos);
      }
    }
  }

  /** Put the read-ahead packets not sent back in the log: `next` goes back to the first of each shard. */
  private unreadAhead(): void {
    if (this.ahead.length > 0) {
      const next = this.next.slice();
      for (const a of this.ahead) lowerToAhead(a, next);
      this.next = next;
    }
    this.ahead = NO_AHEAD;
    this.slow = false;
    if (this.reading) {
      this.reading = false;
      this.gen++; // its result is dropped when it comes
    }
  }

  /** The subscriptions replay reads for: shared deliveries are pinned, not replayed. */
  private replayedSubs(): Subscription[] {
    const subs: Subscription[] = [];
    for (const sub of this.session.subscriptions.values()) if (!sub.filter.startsWith('$share/')) subs.push(sub);
    return subs;
  }

  private starts(subs: Subscription[], s: number): number[] {
    return subs.map((sub) => sub.start?.[s] ?? 0);
  }

  /** Where to read shard `s` from (past a dropped range it is in) and until; null when caught up. */
  private readFrom(s: number): { from: number; until: number | null } | null {
    let from = this.next[s] as number;
    let gap = this.gapAhead(s, from);
    if (gap && gap.from <= from) {
      // Inside a dropped range (a restart resumed before it): skip the rest of it.
      from = gap.to ?? (gap.to = this.src.shardEnd(s));
      this.setNext(s, from);
      gap = this.gapAhead(s, from);
    }
    // Caught up with this shard: nothing to read (cheaper than a scan call).
    if (from >= this.src.shardEnd(s)) return null;
    return { from, until: gap ? gap.from : null };
  }

  /** Shard `s` was read up to `next` (scan status): jump a dropped range it stopped at. True when caught up. */
  private advance(s: number, next: number, status: number): boolean {
    this.setNext(s, next);
    const gap = this.gapAhead(s, next);
    if (status === SCAN_UNTIL && gap && gap.from <= next) {
      // Jump the dropped range; it is forgotten once the recorded `next` is past it (encode).
      this.setNext(s, gap.to ?? (gap.to = this.src.shardEnd(s)));
      return false;
    }
    if (status === SCAN_DONE) return true;
    // Until without a gap there: a worker read bounded by the end when it was asked for.
    if (status !== SCAN_NEXT && status !== SCAN_UNTIL && status !== REPLAY_STATUS_SLOW) throw new Error(`scan status ${status}`);
    return false;
  }

  private caughtUp(): void {
    this.replaying = false;
    this.backlog = 0;
    this.backlogBytes = 0;
  }

  /** The first dropped range of shard `s` not entirely below `offset`. */
  private gapAhead(s: number, offset: number): Gap | undefined {
    return (this.gaps[s] as Gap[]).find((g) => g.to === null || g.to > offset);
  }

  /** The deliveries in scanned entries of shard `s` (entry layout: docs/storage.md, fetch). */
  private decode(s: number, r: ScanResult, subs: Subscription[]): Candidate[] {
    const E = ENTRY;
    const buf = r.buffer;
    const offs = r.offsets;
    const words = r.words;
    const masks = r.masks;
    const out: Candidate[] = [];
    for (let j = 0; j + 1 < offs.length; j++) {
      const at = offs[j] as number;
      const flags = buf[at + E.flags] as number;
      const msgQos = (flags & E.flagQosMask) as QoS;
      const msgRetain = (flags & E.flagRetain) !== 0;
      const pubLen = buf.readUInt16LE(at + E.publisherLen);
      let publisher: string | undefined; // decoded only for a no-local check
      let qos = -1;
      let retain = false;
      let subIds: number[] | undefined;
      for (let w = 0; w < words; w++) {
        let bits = masks[j * words + w] as number;
        while (bits !== 0) {
          const bit = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          const sub = subs[w * 32 + bit];
          if (!sub) continue;
          if (sub.noLocal && (publisher ??= buf.toString('utf8', at + E.header, at + E.header + pubLen)) === this.clientId) continue;
          if (sub.readDenied !== undefined && sub.readDenied(buf.toString('utf8', at + E.header + pubLen, at + E.header + pubLen + buf.readUInt16LE(at + E.topicLen)))) continue;
          const q = sub.qos < msgQos ? sub.qos : msgQos;
          if (q > qos) qos = q;
          if (sub.retainAsPublished && msgRetain) retain = true;
          if (sub.subscriptionId !== undefined) (subIds ??= []).push(sub.subscriptionId);
        }
      }
      if (qos < 0) continue; // only its own messages under no-local
      const offset = buf.readUInt32LE(at + E.offset) + buf.readUInt32LE(at + E.offset + 4) * 0x100000000;
      const ts = buf.readUInt32LE(at + E.timestamp) + buf.readUInt32LE(at + E.timestamp + 4) * 0x100000000;
      const payloadLen = buf.readUInt32LE(at + E.payloadLen);
      const propsLen = buf.readUInt32LE(at + E.propertiesLen);
      const topicLen = buf.readUInt16LE(at + E.topicLen);
      const topicAt = at + E.header + pubLen;
      const payloadAt = topicAt + topicLen + propsLen;
      let msg: Message;
      if (propsLen === 0) {
        msg = new LogMessage(buf, at + E.header, pubLen, topicAt, topicLen, payloadAt, payloadLen, msgQos, msgRetain, ts);
      } else {
        const topic = buf.toString('utf8', topicAt, topicAt + topicLen);
        const props = decodeProperties(buf.subarray(topicAt + topicLen, payloadAt));
        publisher ??= buf.toString('utf8', at + E.header, at + E.header + pubLen);
        msg = createMessage(topic, buf.subarray(payloadAt, payloadAt + payloadLen), msgQos, msgRetain, props, publisher, ts);
        msg.encKey = -1; // delivered to this session only: no encoding cache
      }
      out.push({ ts, p: { msg, qos: qos as QoS, retain, subIds, ref: { shard: s, offset } } });
    }
    return out;
  }

  /** Whether this is still its session's durable side (an ended session writes nothing more). */
  current(): boolean {
    return this.session.durable === this;
  }

  /** The progress record: `next` lowered to the first delivery still queued in each shard. */
  encode(): Buffer {
    const session = this.session;
    const next = this.next.slice();
    // While the native loop drains, its state is the session's: where each shard is read to,
    // what is in flight.
    const snap = this.native?.ctl.snapshot() ?? null;
    if (snap !== null) (this.native as Native).want.forEach((w, i) => (next[w.shard] = snap.next[i] as number));
    // Queued deliveries a replay would not find again are recorded one by one.
    let queued: Pending[] | null = null;
    for (const p of session.queue) {
      const ref = p.ref;
      if (p.retainedTopic !== undefined) (queued ??= []).push(p);
      if (!ref) continue;
      if (p.pinned) (queued ??= []).push(p);
      else if (ref.offset < (next[ref.shard] as number)) next[ref.shard] = ref.offset;
    }
    if (this.adopted !== null) for (const p of this.adopted) (queued ??= []).push(p);
    for (const a of this.ahead) lowerToAhead(a, next);
    // Ranges wholly below the recorded `next` can never be read again: forget them.
    this.gaps.forEach((gaps, s) => {
      const keep = gaps.filter((g) => g.to === null || g.to > (next[s] as number));
      if (keep.length !== gaps.length) gaps.splice(0, gaps.length, ...keep);
    });
    const backlog = snap === null ? this.backlog : Math.max(0, this.backlog - snap.sent);
    const backlogBytes = snap === null ? this.backlogBytes : Math.max(0, this.backlogBytes - snap.sentPayload);
    const w = new ProgressWriter({ next, excess: this.excess, backlog, backlogBytes, gaps: this.gaps });
    for (const [id, e] of session.inflight) if (isRecorded(e)) w.add(e, id, e.phase === 'pubrel' ? 2 : 1);
    if (snap !== null) forEachQuad(snap.inflight, (id, e) => w.add(e, id, 1));
    if (queued !== null) for (const p of queued) w.add(p, 0, 0);
    return w.finish();
  }
}

/**
 * The native loop's deliveries in flight (DRAIN_QUAD values each: packet id, shard, offset,
 * retain) as the session holds them after a restart: QoS 1, PUBLISH sent, log position only.
 */
function forEachQuad(q: Float64Array, fn: (id: number, e: Inflight) => void): void {
  for (let i = 0; i + DRAIN_QUAD <= q.length; i += DRAIN_QUAD) {
    const ref = { shard: q[i + INFLIGHT.shard] as number, offset: q[i + INFLIGHT.offset] as number };
    fn(q[i + INFLIGHT.id] as number, { msg: null, qos: 1, retain: q[i + INFLIGHT.retain] === 1, subIds: undefined, ref, phase: 'publish' });
  }
}

/** Lower `next` to the first read-ahead packet not sent of each shard. */
function lowerToAhead(a: Ahead, next: number[]): void {
  const meta = a.r.meta;
  for (let i = a.at; i < a.count; i++) {
    const m = i * REPLAY_STRIDE;
    const s = meta[m + REPLAY_SHARD] as number;
    const offset = meta[m + REPLAY_OFFSET] as number;
    if (offset < (next[s] as number)) next[s] = offset;
  }
}

/** The durable side of a persistent session on the embedded store, reading the log from its current end. */
export function logSession(src: LogSource, session: Session, limits: BacklogLimits = session.env.limits, stats: DeliveryStats = session.env.stats): LogSession {
  return new LogSession(src, session, limits, stats, src.shardEnds());
}
