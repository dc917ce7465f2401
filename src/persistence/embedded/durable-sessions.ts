/**
 * The embedded store behind the three registries (persistence/registries.ts): durable
 * sessions, messages and retained messages on the sharded log + metadata store (SPEC B1–B3,
 * B6, B7, B9).
 *
 * A message that persistent sessions need is appended to the log ONCE; each session keeps
 * only its progress through the log (session/log-session.ts, EMQX 5 style). Everything a
 * publisher or subscriber was told is committed before it is told:
 *
 * - PUBACK / PUBREC to a publisher go out after the log append is durable (group commit):
 *   every persistent session whose subscriptions match finds the message in the log (a
 *   delivery through a shared subscription is recorded in the session's progress record
 *   first, since replay cannot tell which member had it);
 * - an outbound QoS 2 PUBLISH is sent only after its packet id is recorded, and PUBREL only
 *   after the PUBREL phase is recorded: a restart resends with the same id and never delivers
 *   twice;
 * - an inbound QoS 2 packet id is recorded before PUBREC, so a re-sent PUBLISH after a restart
 *   is recognised as a duplicate; when the message is appended, the id is recorded as pending
 *   first and travels with the record, so a crash between the two can neither lose the message
 *   (id recorded, message not stored) nor store it twice (message stored, id unknown): a
 *   pending id is resolved at start-up by looking for its record (findInbound). PUBCOMP goes
 *   out once the id is released in the store, so a client reusing it at once is never taken
 *   for a duplicate after a restart;
 * - SUBACK goes out after the subscription (with the log position it starts at) is recorded.
 * Progress records and session records are otherwise written in the background, batched per
 * event-loop turn; a crash loses at most the progress of that moment, which only means QoS 1
 * messages in flight are delivered again (with DUP).
 *
 * Metadata layout (tables of the store's meta database; keys are bytes):
 *   sessions       clientId                      → JSON SessionRecord
 *   subscriptions  clientId 00 filter            → JSON SubscriptionOptions + start offsets
 *   progress       clientId                      → progress record (embedded/progress.ts)
 *   inbound_qos2   clientId 00 packetId(u16 BE)  → inbound QoS 2 awaiting PUBREL: empty value =
 *                                                  stored; 01 shard(u16 BE) from(f64 BE) = pending
 *                                                  (appended with the id at or after `from`?)
 *   retained       topic                         → retained record (LAYOUTS.retained, the bytes the
 *                                                  native retained tree holds)
 * Client ids and topics never contain U+0000 ([MQTT-1.5.4-2]), so the 00 separator is safe.
 */
import type { Logger } from '../../log.js';
import { type CountSlots, createMessage, decodeProperties, encodeProperties, type Message } from '../../wire/message.js';
import {
  DurableStore,
  type LogPosition,
  type LossInfo,
  type MetaOp,
  MetaPacker,
  Packer,
  type DrainControl,
  type ReplayResult,
  type ReplayShard,
  type ReplaySub,
  type ScanResult,
  type StoreOpenOptions,
  decodeRetainedRecord,
  LAYOUTS,
  type RetainedMessages,
} from '../../native.js';
import type { QoS } from '../../wire/codec.js';
import { topicMatches } from '../../wire/topic.js';
import { type CommitStats, commitStats } from './commit-stats.js';
import { DeliveryCounts } from './delivery-counts.js';
import { InOrder } from './in-order.js';
import { decodeProgress, type Progress } from './progress.js';
import { waitingInLog } from './waiting.js';
import { retainedMessage, retainedRecord, type MessageLog, type Pending, type Persistence, type ProgressSource, type RecoveredSession, type SessionMessage, type SessionRecord, type SessionRegistry, type StoredSubscription, type RetainedRegistry, type WillMark } from '../registries.js';

const SEP = Buffer.from([0]);

const idKey = (clientId: string): Buffer => Buffer.from(clientId, 'utf8');
const subKey = (clientId: string, filter: string): Buffer => Buffer.concat([idKey(clientId), SEP, Buffer.from(filter, 'utf8')]);
function q2Key(clientId: string, id: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(id);
  return Buffer.concat([idKey(clientId), SEP, b]);
}

const Q2_STORED = Buffer.alloc(0);
const Q2_PENDING = 1;

function q2Pending(shard: number, from: number): Buffer {
  const b = Buffer.allocUnsafe(11);
  b[0] = Q2_PENDING;
  b.writeUInt16BE(shard, 1);
  b.writeDoubleBE(from, 3);
  return b;
}

/** A retained value in the layout before the native record (a u32 BE JSON header length, the header, the payload). */
function decodeLegacyRetained(topic: string, value: Buffer): Message {
  const hlen = value.readUInt32BE(0);
  const h = JSON.parse(value.subarray(4, 4 + hlen).toString('utf8')) as { p: string; q: QoS; t: number; pr: string | null };
  return createMessage(topic, Buffer.from(value.subarray(4 + hlen)), h.q, true, decodeProperties(h.pr ? Buffer.from(h.pr) : null), h.p, h.t);
}

/** A stored retained value as a message (the record layout, or the one before it). */
function decodeRetained(topic: string, value: Buffer): Message {
  return value[0] === LAYOUTS.retained.version ? retainedMessage(topic, decodeRetainedRecord(value, 0, value.length)) : decodeLegacyRetained(topic, value);
}

/**
 * How long a session's progress may wait to be committed when nothing waits for it (QoS 1
 * sends and acknowledgements, reads from the log): a crash redelivers at most this much more.
 */
const PROGRESS_INTERVAL_MS = 10;

/** Who waits for one message of an append batch. */
interface AppendWaiter {
  resolve: (p: LogPosition) => void;
  reject: (e: unknown) => void;
  /** Its message's index in the batch. */
  at: number;
}

/**
 * Fault injection for tests (a slow metadata disk): every metadata commit starts this many ms
 * late, in order, so what waits for one — and what does not — shows under a kill -9.
 * `STRATAMQ_TEST_METADATA_DELAY_MS`; 0 (unset) in production.
 */
const METADATA_DELAY_MS = Number(process.env.STRATAMQ_TEST_METADATA_DELAY_MS ?? 0) || 0;
/** The same for the log's appends: a batch is handed to the store this long after its first message (`STRATAMQ_TEST_APPEND_DELAY_MS`). */
const APPEND_DELAY_MS = Number(process.env.STRATAMQ_TEST_APPEND_DELAY_MS ?? 0) || 0;

/**
 * A batch of appends only the message log waits for (msglog async mode: nothing is acknowledged
 * or delivered after them) is handed to the store up to this long after its first message, or
 * once it holds LOG_BATCH_MAX messages, not at the end of its event-loop turn: each append wakes
 * the shard writers (a futex wake-up and a context switch per shard, on the event loop's core
 * too), and under a steady flow of small turns those wake-ups cost more than the appends. A
 * message someone waits for (a persistent session's, a sync-mode log's) hands the batch over at
 * the end of its turn, as before.
 */
const LOG_LINGER_MS = 2;
const LOG_BATCH_MAX = 1024;
/** Count slots a new append batch starts with (doubled as it fills). */
const SLOTS_FIRST = 128;

/** How often losses found while running (damaged segments found as they are read) are reported. */
const LOSS_CHECK_MS = 1000;

/** This turn's metadata commit (its writes packed in DurableSessions.metaPacker as they come). */
interface Batch {
  /** Sessions whose progress record is written with this batch. */
  progress: Set<ProgressSource>;
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** The appends of one event-loop turn: one appendPacked call. */
interface AppendBatch {
  /** Messages in the batch (packed in DurableSessions.packer as they come). */
  count: number;
  /** Who waits for a message's position, in message order (none for what only the message log keeps, see logMessage). */
  waiters: AppendWaiter[];
  /** The whole batch (logMessage), created with the first such message; its settle functions. */
  all: Promise<void> | null;
  settle: { resolve: () => void; reject: (e: unknown) => void } | null;
  /** Delivery counts of its messages until their positions are known (null: counts are off). */
  slots: CountSlots | null;
  /** Its number: batches are made, handed to the store and completed in this order. */
  seq: number;
  /** Someone waits for one of its messages (not only the message log): it completes once durable. */
  durable: boolean;
}

/** Someone waiting for every append batch up to `seq` to have completed (endsAfterPending). */
interface EndsWaiter {
  seq: number;
  resolve: (ends: readonly number[]) => void;
}

export class DurableSessions implements SessionRegistry, MessageLog, RetainedRegistry, Persistence {
  private batch: Batch | null = null;
  /**
   * Metadata batches are handed to the store's writer thread in the order they were made (it
   * commits them in that order); their completions are read back in that order too.
   */
  private readonly commits = new InOrder();
  /** Appends complete in the order they were made, as far as JS can see. */
  private readonly appends = new InOrder();
  private inflightCommits = new Set<Promise<void>>();
  private appendBatch: AppendBatch | null = null;
  /** appendBatch's hand-over: at the end of this turn, or when its linger time is up (LOG_LINGER_MS). */
  private appendSoon: NodeJS.Immediate | null = null;
  private appendLinger: NodeJS.Timeout | null = null;
  /** The last append batch handed to the store (close waits for it). */
  private lastAppend: Promise<unknown> | null = null;
  /** The message log's delivery counts (enableCounts), null while it is off. */
  counts: DeliveryCounts | null = null;
  /** The bytes of appendBatch's messages. */
  private readonly packer = new Packer();
  /** The bytes of batch's metadata writes. */
  private readonly metaPacker = new MetaPacker();
  /** Append batches made, and completed (in order; a failed one counts as completed). */
  private batchesMade = 0;
  private batchesDone = 0;
  /** Each shard's end after the completed batches (what their records' positions say). */
  private doneEnds: number[] = [];
  private endsWaiters: EndsWaiter[] = [];
  private closed = false;
  readonly nShards: number;
  /** Sessions whose progress changed in ways that need no prompt commit (see mark). */
  private readonly lazy = new Set<ProgressSource>();
  private lazyTimer: NodeJS.Timeout | null = null;

  private lossTimer: NodeJS.Timeout | null = null;
  /** shardEnds' last answer. */
  private lastEnds: readonly number[] | null = null;
  /** Group commits: batch sizes and how long they take to be durable (for /metrics). */
  readonly commitStats: CommitStats = commitStats();
  /** Persistence: the embedded store is all three registries. */
  readonly sessions: SessionRegistry = this;
  readonly messages: MessageLog = this;
  readonly retained: RetainedRegistry = this;

  private constructor(
    readonly store: DurableStore,
    readonly log: Logger,
    private readonly openLosses: LossInfo[],
  ) {
    this.nShards = store.nShards;
  }

  static async open(dir: string, options: StoreOpenOptions, log: Logger): Promise<DurableSessions> {
    log.info({ dir }, 'opening store (recovering what was written before the last stop)');
    const store = await DurableStore.open(dir, options);
    const rec = store.recovery();
    const report = store.report();
    const events = report.events.slice(0, 50);
    for (const ev of events) log.info({ event: ev }, 'store recovery');
    if (report.events.length > events.length) log.info({ more: report.events.length - events.length }, 'store recovery: further events not shown');
    log.info({ dir, siteId: store.siteId, shards: store.nShards, segments: rec.segments, records: rec.records, ms: rec.elapsedMs, quarantined: rec.quarantined.length }, 'store opened');
    // Damage found and repaired (quarantined files, salvaged segments, rebuilt STORE or
    // metadata); the records it cost are reported by the broker, with the sessions concerned.
    for (const line of report.summary) log.error({ repair: line }, 'damaged store file repaired');
    return new DurableSessions(store, log, report.losses);
  }

  /** Losses this open found that no earlier open reported. */
  takeOpenLosses(): LossInfo[] {
    return this.openLosses.splice(0);
  }

  /**
   * The log must not end below where persistent sessions had got to: their progress, their
   * subscriptions' start offsets and their deliveries in flight name offsets the log had handed
   * out, so a shard that ends below them lost its last records (files) — and offsets must never
   * be handed out twice, or those sessions would skip new messages. Such shards are raised over
   * the gap; the losses are returned.
   */
  reconcile(sessions: RecoveredSession[]): LossInfo[] {
    const floors = new Array<number>(this.nShards).fill(0);
    const up = (s: number, v: number): void => {
      if (s < floors.length && v > (floors[s] as number)) floors[s] = v;
    };
    for (const r of sessions) {
      r.subscriptions.forEach((sub) => sub.opts.start?.forEach((v, s) => up(s, v)));
      const p = r.progress;
      if (!p) continue;
      p.next.forEach((v, s) => up(s, v));
      p.gaps.forEach((gaps, s) => gaps.forEach((g) => up(s, g.to ?? g.from)));
      for (const e of p.entries) if (e.pending.ref) up(e.pending.ref.shard, e.pending.ref.offset + 1);
    }
    const out: LossInfo[] = [];
    floors.forEach((floor, s) => {
      if (floor <= this.store.shardEnd(s)) return;
      const loss = this.store.raiseEnd(s, floor, `persistent sessions had read the shard up to offset ${floor}; its records from the present end on are gone`);
      if (loss) out.push(loss);
    });
    return out;
  }

  /** Report, every few seconds, losses found while running (damaged sealed segments found as read). */
  watchLosses(report: (loss: LossInfo) => void): void {
    this.lossTimer = setInterval(() => {
      let found: LossInfo[] = [];
      try {
        found = this.store.takeLosses();
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'store loss check failed');
      }
      for (const l of found) report(l);
    }, LOSS_CHECK_MS);
    this.lossTimer.unref();
  }

  private open(): Batch {
    let b = this.batch;
    if (!b) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      b = this.batch = { progress: new Set(), done, resolve, reject };
      setImmediate(() => this.flush());
    }
    return b;
  }

  /**
   * Queue metadata writes; they are committed with everything queued in the same event-loop
   * turn, after every earlier batch. The Promise resolves once they are durable. One op may be
   * given as it is (a retained message per publish: no array for it).
   */
  write(ops: MetaOp | readonly MetaOp[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store closed'));
    const b = this.open();
    const packer = this.metaPacker;
    const { length, count } = packer;
    try {
      if (Array.isArray(ops)) for (const op of ops as readonly MetaOp[]) packer.add(op);
      else packer.add(ops as MetaOp);
    } catch (e) {
      packer.truncate(length, count); // an unknown table: none of these ops is committed, the others' are
      return Promise.reject(e as Error);
    }
    return b.done;
  }

  /** Like write, for state whose loss only causes a redelivery: failures are logged. */
  private background(ops: MetaOp[]): void {
    this.write(ops).catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'durable metadata write failed'));
  }

  touch(session: ProgressSource): Promise<void> {
    if (this.closed) {
      const refused = Promise.reject(new Error('store closed'));
      refused.catch(() => undefined); // callers that do not wait must not leave it unhandled
      return refused;
    }
    const b = this.open();
    if (!b.progress.has(session)) {
      b.progress.add(session);
      if (b.progress.size === 1) b.done.catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'session progress write failed'));
    }
    return b.done;
  }

  mark(session: ProgressSource): void {
    if (this.closed) return;
    this.lazy.add(session);
    if (this.lazyTimer === null) {
      this.lazyTimer = setTimeout(() => {
        this.lazyTimer = null;
        for (const ls of this.lazy) void this.touch(ls);
        this.lazy.clear();
      }, PROGRESS_INTERVAL_MS);
    }
  }

  private flush(): void {
    const b = this.batch;
    this.batch = null;
    if (!b) return;
    const packer = this.metaPacker;
    for (const ls of b.progress) {
      // A session that ended (its records deleted in this batch or before) writes nothing more.
      if (ls.current()) packer.add({ op: 'put', table: 'progress', key: idKey(ls.clientId), value: ls.encode() });
    }
    const t0 = performance.now();
    const meta = this.commitStats.metaCommitSeconds;
    let applying: Promise<void>;
    if (METADATA_DELAY_MS > 0) {
      const later = Buffer.from(packer.bytes()); // the packer is reused before the delay is over
      applying = new Promise<void>((r) => setTimeout(r, METADATA_DELAY_MS)).then(() => this.store.metaApplyPacked(later));
    } else {
      applying = this.store.metaApplyPacked(packer.bytes()); // copied before it returns
    }
    packer.reset();
    const applied = applying.then(() => meta.observe((performance.now() - t0) / 1000));
    const done = this.commits.wrap(applied).then(b.resolve, b.reject);
    this.inflightCommits.add(done);
    void done.finally(() => this.inflightCommits.delete(done));
  }

  // ---- messages ---------------------------------------------------------------------------

  /**
   * Append a message to the log; resolves once durable under the fsync policy. Appends made in
   * the same event-loop turn cross to the store in one call (one promise for the batch).
   */
  saveSessionMessages(msg: Message): Promise<LogPosition> {
    return new Promise((resolve, reject) => this.waitFor(msg, 0, resolve, reject));
  }

  /**
   * Append a message only the message log keeps: no promise of its own, the one of its batch is
   * returned. `acknowledged` (sync mode): its publisher's acknowledgement waits for it, the batch
   * is handed over at the end of this turn and resolves once durable. Else (async mode) nothing
   * waits for it but the log's counters: its batch may linger for more messages (LOG_LINGER_MS)
   * and resolves once written.
   */
  logMessage(msg: Message, acknowledged = false): Promise<void> {
    const b = this.batchFor(msg, 0, acknowledged);
    return (b.all ??= new Promise<void>((resolve, reject) => {
      b.settle = { resolve, reject };
    }));
  }

  /** `msg` appended, its position to `resolve` (or the batch's failure to `reject`) with its batch. */
  private waitFor(msg: Message, inboundId: number, resolve: (p: LogPosition) => void, reject: (e: unknown) => void): void {
    const b = this.batchFor(msg, inboundId, true);
    b.waiters.push({ resolve, reject, at: b.count - 1 });
  }

  /**
   * The append batch being filled, with `msg` added (its index: `count - 1`); a caller waiting
   * for its position adds a waiter (waitFor; a message only the log keeps has none). A waiter
   * is resolved with the batch, in offset order, and is the very promise its caller awaits
   * (never one chained behind another): the callers' continuations run in offset order, and a
   * caught-up session takes a shard's messages in that order (LogSession.arrive counts anything
   * below its `next` as read). `prompt`: someone waits for this message, the
   * batch is handed over at the end of this turn (else it may linger, LOG_LINGER_MS).
   */
  private batchFor(msg: Message, inboundId: number, prompt: boolean): AppendBatch {
    let b = this.appendBatch;
    if (!b) {
      b = this.appendBatch = { count: 0, waiters: [], all: null, settle: null, slots: this.counts?.slots(SLOTS_FIRST) ?? null, seq: ++this.batchesMade, durable: false };
      if (APPEND_DELAY_MS > 0) this.appendLinger = setTimeout(() => this.flushAppends(), APPEND_DELAY_MS);
    }
    this.packer.add(msg.publisher, msg.topic, msg.qos, msg.retain, encodeProperties(msg.properties), msg.payload, inboundId);
    if (b.slots !== null) (this.counts as DeliveryCounts).into(b.slots, msg, b.count);
    b.count++;
    if (prompt) b.durable = true;
    if (APPEND_DELAY_MS > 0 || this.appendSoon !== null) return b;
    if (prompt || b.count >= LOG_BATCH_MAX) {
      this.appendSoon = setImmediate(() => this.flushAppends());
      if (this.appendLinger !== null) clearTimeout(this.appendLinger);
      this.appendLinger = null;
    } else if (this.appendLinger === null) this.appendLinger = setTimeout(() => this.flushAppends(), LOG_LINGER_MS);
    return b;
  }

  private flushAppends(): void {
    if (this.appendSoon !== null) clearImmediate(this.appendSoon);
    if (this.appendLinger !== null) clearTimeout(this.appendLinger);
    this.appendSoon = null;
    this.appendLinger = null;
    const b = this.appendBatch;
    this.appendBatch = null;
    if (!b) return;
    const t0 = performance.now();
    const stats = this.commitStats;
    let appended: Promise<Float64Array>;
    try {
      // appendPacked has copied the bytes when it returns: the packer starts the next batch.
      appended = this.store.appendPacked(this.packer.bytes(), b.count, b.durable);
    } catch (e) {
      // Refused at once (the store closed): the batch fails as one that the store failed.
      appended = Promise.reject(e);
    } finally {
      this.packer.reset();
    }
    this.lastAppend = this.appends.wrap(appended).then(
      (pos) => {
        const counts = this.counts;
        // Before the waiters: what they deliver next is counted at the position at once.
        if (counts !== null && b.slots !== null) counts.placed(b.slots, pos, b.count);
        stats.appendBatch.observe(b.count);
        stats.appendSeconds.observe((performance.now() - t0) / 1000);
        this.batchDone(b.seq, pos);
        for (const w of b.waiters) w.resolve({ shard: pos[2 * w.at] as number, offset: pos[2 * w.at + 1] as number });
        b.settle?.resolve();
      },
      (e: unknown) => {
        this.batchDone(b.seq, null);
        for (const w of b.waiters) w.reject(e);
        b.settle?.reject(e);
      },
    );
  }

  /** Batch `seq` completed (in order) with its records at `pos` (null: it failed, nothing written). */
  private batchDone(seq: number, pos: Float64Array | null): void {
    const ends = this.doneEnds;
    if (pos !== null) {
      for (let i = 0; i + 1 < pos.length; i += 2) {
        const s = pos[i] as number;
        const next = (pos[i + 1] as number) + 1;
        if (next > (ends[s] ?? 0)) ends[s] = next;
      }
    }
    this.batchesDone = seq;
    if (this.endsWaiters.length === 0) return;
    const ready = this.endsWaiters.filter((w) => w.seq <= seq);
    if (ready.length === 0) return;
    this.endsWaiters = this.endsWaiters.filter((w) => w.seq > seq);
    const snapshot = ends.slice();
    for (const w of ready) w.resolve(snapshot);
  }

  endsAfterPending(): Promise<readonly number[]> | null {
    const seq = this.batchesMade;
    if (this.batchesDone >= seq) return null;
    return new Promise((resolve) => this.endsWaiters.push({ seq, resolve }));
  }

  /**
   * Append a persistent publisher's QoS 2 message with its packet id `id`: the id is recorded as
   * pending (with its shard's end) and durable before the append starts, and recorded as stored
   * once the append is. Whatever a crash interrupts, the start-up finds out exactly whether the
   * message was stored (loadSessions): a re-sent PUBLISH is then a duplicate, or stored anew.
   */
  appendInbound(msg: Message, id: number): Promise<LogPosition> {
    const key = q2Key(msg.publisher, id);
    const shard = this.store.shardOf(msg.publisher);
    // Not `await write; return saveSessionMessages(…)`: the promise returned would resolve some
    // microtask hops after the batch's other waiters, behind messages appended after this one.
    return new Promise((resolve, reject) => {
      this.write([{ op: 'put', table: 'inbound_qos2', key, value: q2Pending(shard, this.store.shardEnd(shard)) }]).then(() => this.waitFor(msg, id, resolve, reject), reject);
    });
  }

  /** SessionRegistry.willMark: the publisher's shard, and its end once the appends already made have completed. */
  async willMark(clientId: string): Promise<WillMark> {
    const shard = this.store.shardOf(clientId);
    // Its own messages, appended before it went away, are all below the end once those complete.
    await this.endsAfterPending();
    return { shard, from: this.store.shardEnd(shard) };
  }

  /** SessionRegistry.findWill: the first record of `clientId` from the mark on (start-up only: it reads the shard). */
  findWill(clientId: string, mark: WillMark): LogPosition | null {
    if (!Number.isInteger(mark.shard) || mark.shard < 0 || mark.shard >= this.nShards) return null;
    try {
      const offset = this.store.findPublished(mark.shard, mark.from, clientId);
      return offset === null ? null : { shard: mark.shard, offset };
    } catch (e) {
      // A mark it cannot read (or a read error): the will is published again rather than lost,
      // and the start goes on.
      this.log.warn({ clientId, mark, err: (e as Error).message }, 'a will being published at the stop could not be looked for in the log: published again');
      return null;
    }
  }

  /**
   * A persistent publisher's QoS 2 message and all it needs recorded besides the log (its
   * deliveries through shared subscriptions, pinned in the same turn, hence the same commit) are
   * stored: its id is recorded as such. Until then a restart finds the id pending (see loadSessions).
   */
  inboundStored(clientId: string, id: number): Promise<void> {
    return this.write([{ op: 'put', table: 'inbound_qos2', key: q2Key(clientId, id), value: Q2_STORED }]);
  }

  shardEnd(shard: number): number {
    return this.store.shardEnd(shard);
  }

  /**
   * Every shard's end: where a new subscription starts. Frozen, and the same array as the last
   * call's while no shard has moved: the sessions and subscriptions made meanwhile (each holds
   * one) share it; a session copies it once it reads on (LogSession.setNext).
   */
  shardEnds(): readonly number[] {
    const last = this.lastEnds;
    if (last !== null && last.every((end, s) => end === this.store.shardEnd(s))) return last;
    // Sized up front: an array grown by push from [] keeps room for 17.
    const out = new Array<number>(this.nShards);
    for (let s = 0; s < this.nShards; s++) out[s] = this.store.shardEnd(s);
    return (this.lastEnds = Object.freeze(out));
  }

  scan(shard: number, from: number, filters: string[], starts: number[], maxEntries: number, until: number | null): ScanResult {
    return this.store.scan(shard, from, filters, starts, maxEntries, until);
  }

  replay(shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number): ReplayResult {
    return this.store.replay(shards, subs, version, clientId, maxEntries, maxPacket);
  }

  replayAsync(shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number): Promise<ReplayResult> {
    return this.store.replayAsync(shards, subs, version, clientId, maxEntries, maxPacket);
  }

  drain(fd: number, shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number, window: number, inflight: Float64Array, nextId: number, report: boolean): DrainControl {
    return this.store.drain(fd, shards, subs, version, clientId, maxEntries, maxPacket, window, inflight, nextId, report);
  }

  // ---- sessions ---------------------------------------------------------------------------

  /** Batch-read message bodies for deliveries that hold only their log position. */
  load(entries: Pending[]): void {
    const want = entries.filter((p) => p.msg === null && p.ref);
    if (want.length === 0) return;
    const got = this.store.readAt(want.map((p) => p.ref as LogPosition));
    got.forEach((m, i) => {
      const p = want[i] as Pending;
      if (!m) return; // dropped by retention: stays null and is discarded by the caller
      p.msg = createMessage(m.topic, Buffer.from(m.payload), m.qos, m.retain, decodeProperties(m.properties), m.publisher, m.timestamp);
    });
  }

  /**
   * What a stored session has waiting: its deliveries in flight or queued by its progress
   * record, then what its subscriptions find in the log past where it has read.
   */
  getSessionMessages(clientId: string, limit: number): Promise<SessionMessage[]> {
    const out: SessionMessage[] = [];
    if (limit <= 0 || this.store.metaGet('sessions', idKey(clientId)) === null) return Promise.resolve(out);
    const subs: { filter: string; opts: StoredSubscription }[] = [];
    for (const e of this.store.metaScanAll('subscriptions', Buffer.concat([idKey(clientId), SEP]))) {
      subs.push({ filter: e.key.subarray(e.key.indexOf(0) + 1).toString('utf8'), opts: JSON.parse(e.value.toString('utf8')) as StoredSubscription });
    }
    const raw = this.store.metaGet('progress', idKey(clientId));
    let progress: Progress | null = null;
    try {
      progress = raw ? decodeProgress(raw, this.nShards) : null;
    } catch {
      progress = null; // unreadable: the session replays from its subscriptions (as loadSessions says)
    }
    const entries = progress ? progress.entries.slice(0, limit) : [];
    this.load(entries.map((e) => e.pending));
    for (const e of entries) {
      const p = e.pending;
      const msg = p.msg ?? (p.retainedTopic !== undefined ? this.retainedAt(p.retainedTopic) : null);
      if (msg) out.push({ msg, qos: p.qos, inflight: e.phase !== 0 });
    }
    if (out.length < limit) out.push(...waitingInLog(this, clientId, subs, progress, limit - out.length));
    return Promise.resolve(out);
  }

  private retainedAt(topic: string): Message | null {
    const v = this.store.metaGet('retained', Buffer.from(topic, 'utf8'));
    return v ? decodeRetained(topic, v) : null;
  }

  putSession(clientId: string, record: SessionRecord): Promise<void> {
    return this.write([{ op: 'put', table: 'sessions', key: idKey(clientId), value: Buffer.from(JSON.stringify(record)) }]);
  }

  /** Remove everything a session left in the store; resolves once that is durable (failures are logged). */
  deleteSession(clientId: string): Promise<void> {
    const prefix = Buffer.concat([idKey(clientId), SEP]);
    const done = this.write([
      { op: 'delete', table: 'sessions', key: idKey(clientId) },
      { op: 'deletePrefix', table: 'subscriptions', key: prefix },
      { op: 'delete', table: 'progress', key: idKey(clientId) },
      { op: 'deletePrefix', table: 'inbound_qos2', key: prefix },
    ]);
    done.catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'durable metadata write failed'));
    return done;
  }

  putSubscription(clientId: string, filter: string, opts: StoredSubscription): Promise<void> {
    return this.write([{ op: 'put', table: 'subscriptions', key: subKey(clientId, filter), value: Buffer.from(JSON.stringify(opts)) }]);
  }

  deleteSubscription(clientId: string, filter: string): Promise<void> {
    return this.write([{ op: 'delete', table: 'subscriptions', key: subKey(clientId, filter) }]);
  }

  /** Inbound QoS 2 id released (PUBREL): PUBCOMP waits for it. */
  releaseInbound(clientId: string, id: number): Promise<void> {
    return this.write([{ op: 'delete', table: 'inbound_qos2', key: q2Key(clientId, id) }]);
  }

  // ---- retained ---------------------------------------------------------------------------

  /** Queued with this turn's commit as it is called, so sets and clears land in the order they were published. */
  saveRetainMessage(msg: Message, packed?: Buffer | null): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store closed'));
    const b = this.open();
    // The caller's packed write copied, or packed from the message's fields: no object, record
    // or buffer per message.
    if (packed) this.metaPacker.addPacked(packed);
    else this.metaPacker.setRetained(msg.topic, msg.publisher, msg.qos, msg.receivedAt, encodeProperties(msg.properties), msg.payload);
    return b.done;
  }

  getRetainMessage(filter: string): Promise<Message[]> {
    const out: Message[] = [];
    for (const e of this.store.metaScanAll('retained', Buffer.alloc(0))) {
      const topic = e.key.toString('utf8');
      if (topicMatches(filter, topic)) out.push(decodeRetained(topic, e.value));
    }
    return Promise.resolve(out);
  }

  /**
   * Every stored retained record into the native tree `into`, without crossing to JavaScript;
   * records in the earlier layout are converted (and rewritten in the new one).
   */
  loadRetainedInto(into: RetainedMessages): { loaded: number; converted: number; unreadable: number } {
    const got = this.store.loadRetained(into);
    const rewrite: MetaOp[] = [];
    for (const key of got.legacy) {
      const value = this.store.metaGet('retained', key);
      if (!value) continue;
      const record = retainedRecord(decodeLegacyRetained(key.toString('utf8'), value));
      into.set(key.toString('utf8'), record);
      rewrite.push({ op: 'put', table: 'retained', key, value: record });
    }
    if (rewrite.length > 0) this.background(rewrite);
    return { loaded: got.loaded, converted: rewrite.length, unreadable: got.unreadable };
  }

  loadRetained(): Message[] {
    return this.store.metaScanAll('retained', Buffer.alloc(0)).map((e) => decodeRetained(e.key.toString('utf8'), e.value));
  }

  // ---- recovery ---------------------------------------------------------------------------

  /** Every persistent session in the store, with its subscriptions and progress. */
  loadSessions(): RecoveredSession[] {
    const byId = new Map<string, RecoveredSession>();
    for (const e of this.store.metaScanAll('sessions', Buffer.alloc(0))) {
      const clientId = e.key.toString('utf8');
      byId.set(clientId, { clientId, record: JSON.parse(e.value.toString('utf8')) as SessionRecord, subscriptions: [], progress: null, incomingQos2: [], incomingHalf: [] });
    }
    const split = (key: Buffer): [string, number] | null => {
      const i = key.indexOf(0);
      return i < 0 ? null : [key.subarray(0, i).toString('utf8'), i];
    };
    for (const e of this.store.metaScanAll('subscriptions', Buffer.alloc(0))) {
      const s = split(e.key);
      const r = s && byId.get(s[0]);
      if (r && s) r.subscriptions.push({ filter: e.key.subarray(s[1] + 1).toString('utf8'), opts: JSON.parse(e.value.toString('utf8')) as StoredSubscription });
    }
    for (const e of this.store.metaScanAll('progress', Buffer.alloc(0))) {
      const r = byId.get(e.key.toString('utf8'));
      if (!r) continue;
      try {
        r.progress = decodeProgress(e.value, this.nShards);
      } catch (err) {
        this.log.error({ clientId: r.clientId, err: (err as Error).message }, 'unreadable session progress record: the session replays from its subscriptions');
      }
    }
    const settle: MetaOp[] = [];
    for (const e of this.store.metaScanAll('inbound_qos2', Buffer.alloc(0))) {
      const s = split(e.key);
      const r = s && byId.get(s[0]);
      if (!r || !s) continue;
      const id = e.key.readUInt16BE(s[1] + 1);
      if (e.value.length > 0 && e.value[0] === Q2_PENDING) {
        // Recorded before its message was appended; did the append happen before the stop?
        const shard = e.value.readUInt16BE(1);
        const found = this.store.findInbound(shard, e.value.readDoubleBE(3), r.clientId, id);
        if (found === null) {
          // Never stored, and never acknowledged: the client's re-sent PUBLISH is a new one.
          settle.push({ op: 'delete', table: 'inbound_qos2', key: e.key });
          continue;
        }
        r.incomingHalf.push({ id, pos: { shard, offset: found } });
      }
      r.incomingQos2.push(id);
    }
    if (settle.length > 0) {
      this.log.info({ ids: settle.length }, 'inbound QoS 2 ids left pending by the last stop resolved');
      this.background(settle);
    }
    return [...byId.values()];
  }

  /**
   * Keep the message log's delivery counts (msglog.topics not empty): every message appended
   * from now on learns its log position, for the deliveries counted before it.
   */
  enableCounts(): DeliveryCounts {
    return (this.counts ??= new DeliveryCounts(this.store, this.log));
  }

  /** Commit what is queued, then close the store (releases the data-dir lock). */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.lossTimer !== null) clearInterval(this.lossTimer);
    if (this.lazyTimer !== null) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    for (const ls of this.lazy) void this.touch(ls);
    this.lazy.clear();
    this.flushAppends();
    this.flush();
    this.closed = true;
    await Promise.all([...this.inflightCommits]);
    if (this.counts !== null) {
      // The last appends place their messages' counts; then everything counted is written.
      await this.lastAppend?.catch(() => undefined);
      await this.counts.close();
    }
    await this.store.close();
  }
}
