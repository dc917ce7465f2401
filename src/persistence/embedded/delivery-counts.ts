/**
 * The message log's status counts per entry (issue 18): `delivered` and `acked`, kept beside the
 * log records they describe (strata_core::log::counts: one file per generation, 8 bytes per
 * offset, dropped with the generation by retention).
 *
 * What they count, while the message log is on (msglog.topics not empty), for every record of
 * the store's log (the message log's entries, and messages appended for persistent sessions):
 * - delivered: PUBLISH packets of the message written to subscribers' connections — live ones,
 *   persistent sessions' (also when read back from the log later, or by the native drain loop),
 *   and re-sends with DUP after a reconnect (each is a packet written). Not counted: `$log/`
 *   re-consumers and replays (they read the log back; a replay's re-publish is a new message),
 *   retained copies sent on subscribe (the retained store keeps no log position), and
 *   deliveries dropped before a packet was written (queue full, too large, expired).
 * - acked: deliveries completed — a QoS 1 PUBACK, a QoS 2 PUBCOMP, and a QoS 0 PUBLISH when it
 *   is written (QoS 0 has no acknowledgement: written is its end). So `delivered - acked` is
 *   what is still unacknowledged plus the re-sends.
 *
 * The hot path stays cheap: no promise, closure or allocation per message. A delivery adds to
 * four typed arrays (one entry per (shard, offset), consecutive repeats merged); before a
 * message's append completes its counts wait in its batch's slots (CountSlots: two typed arrays
 * per batch, the message points at them, Message.countSlots / countIdx; before it is in a batch,
 * on the message itself) and move to their positions when the append batch resolves (`placed`).
 * A batch holds no reference to its messages, so none lives longer for being logged. The arrays
 * are written to the store in one native call when full or every FLUSH_MS.
 *
 * Durability: statistics, outside the no-loss promise. A clean stop writes everything counted
 * (DurableSessions.close); a kill -9 loses what was counted in the last FLUSH_MS and the counts
 * of messages whose append had not completed (what was written to the counts files is in the
 * page cache and survives); a power loss may lose more (the files are never synced).
 */
import type { Logger } from '../../log.js';
import type { DurableStore } from '../../native.js';
import type { QoS } from '../../wire/codec.js';
import type { CountSlots, Message } from '../../wire/message.js';
import type { DeliveryCounter, DurableRef } from '../registries.js';

/** Entries held before a flush. */
const CAP = 8192;
/** How often what was counted is written, ms. */
export const FLUSH_MS = 1000;
const ERROR_LOG_MS = 10_000;

export class DeliveryCounts implements DeliveryCounter {
  private n = 0;
  private readonly shards = new Uint32Array(CAP);
  private readonly offsets = new Float64Array(CAP);
  private readonly delivered_ = new Uint32Array(CAP);
  private readonly acked_ = new Uint32Array(CAP);
  private readonly timer: NodeJS.Timeout;
  private lastErrorLog = 0;
  private closed = false;
  /** Flushes handed to a worker thread and not ended yet. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Counts written to the store (entries per flush summed), and flushes that failed. */
  readonly stats = { flushed: 0, failed: 0 };
  /** Told, after a flush, the `shard, offset` pairs whose first completion it wrote (the SQL sink's status). */
  private readonly firstAckListeners: ((pairs: Float64Array) => void)[] = [];

  constructor(
    private readonly store: DurableStore,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  onFirstAck(fn: (pairs: Float64Array) => void): () => void {
    this.firstAckListeners.push(fn);
    return () => {
      const i = this.firstAckListeners.indexOf(fn);
      if (i >= 0) this.firstAckListeners.splice(i, 1);
    };
  }

  /** Count at a known position. */
  add(shard: number, offset: number, delivered: number, acked: number): void {
    const k = this.n - 1;
    if (k >= 0 && this.offsets[k] === offset && this.shards[k] === shard) {
      (this.delivered_[k] as number) += delivered;
      (this.acked_[k] as number) += acked;
      return;
    }
    this.shards[this.n] = shard;
    this.offsets[this.n] = offset;
    this.delivered_[this.n] = delivered;
    this.acked_[this.n] = acked;
    if (++this.n === CAP) this.flush();
  }

  private count(msg: Message | null, ref: DurableRef | undefined, delivered: number, acked: number): void {
    if (ref !== undefined) {
      this.add(ref.shard, ref.offset, delivered, acked);
      return;
    }
    if (msg === null) return;
    const slots = msg.countSlots;
    if (slots === null) {
      // Not in an append batch yet (delivered while it is routed): kept on the message (`into`).
      msg.countDelivered += delivered;
      msg.countAcked += acked;
      return;
    }
    const i = msg.countIdx;
    const pos = slots.pos;
    if (pos !== null) this.add(pos[2 * i] as number, pos[2 * i + 1] as number, delivered, acked);
    else {
      // Not appended (yet): kept in its batch's slots until the append completes (`placed`).
      (slots.delivered[i] as number) += delivered;
      (slots.acked[i] as number) += acked;
    }
  }

  /** Slots for a new append batch (room for `n` messages; `into` makes more). */
  slots(n: number): CountSlots {
    return { pos: null, delivered: new Uint32Array(n), acked: new Uint32Array(n) };
  }

  /**
   * `msg` goes into an append batch as its message `i`: the slots get room for it (the same
   * object, its arrays doubled when full: messages keep pointing at it), and what was counted
   * for it before.
   */
  into(slots: CountSlots, msg: Message, i: number): void {
    const cap = slots.delivered.length;
    if (i >= cap) {
      const d = new Uint32Array(cap * 2);
      d.set(slots.delivered);
      const a = new Uint32Array(cap * 2);
      a.set(slots.acked);
      slots.delivered = d;
      slots.acked = a;
    }
    msg.countSlots = slots;
    msg.countIdx = i;
    if (msg.countDelivered !== 0 || msg.countAcked !== 0) {
      slots.delivered[i] = msg.countDelivered;
      slots.acked[i] = msg.countAcked;
      msg.countDelivered = 0;
      msg.countAcked = 0;
    }
  }

  delivered(msg: Message | null, ref: DurableRef | undefined, qos: QoS): void {
    this.count(msg, ref, 1, qos === 0 ? 1 : 0);
  }

  acked(msg: Message | null, ref: DurableRef | undefined): void {
    this.count(msg, ref, 0, 1);
  }

  /**
   * A batch's append completed with its `n` messages at `pos` (`shard, offset` pairs): what was
   * counted before goes there, and what follows goes there at once.
   */
  placed(slots: CountSlots, pos: Float64Array, n: number): void {
    const d = slots.delivered;
    const a = slots.acked;
    for (let i = 0; i < n; i++) {
      const di = d[i] as number;
      const ai = a[i] as number;
      if (di !== 0 || ai !== 0) this.add(pos[2 * i] as number, pos[2 * i + 1] as number, di, ai);
    }
    slots.pos = pos;
  }

  /**
   * Write what was counted: the arrays are copied at once and added on a worker thread (the
   * counts files' reads and writes, and sorting the entries, off the event loop). `sync`: here
   * and now (settle).
   */
  flush(sync = false): void {
    const n = this.n;
    if (n === 0 || this.closed) return;
    this.n = 0;
    const args = [this.shards.subarray(0, n), this.offsets.subarray(0, n), this.delivered_.subarray(0, n), this.acked_.subarray(0, n)] as const;
    if (sync) {
      let first: Float64Array;
      try {
        first = this.store.addCounts(...args);
      } catch (e) {
        this.failed(e);
        return;
      }
      this.written(n, first);
      return;
    }
    let added: Promise<Float64Array>;
    try {
      added = this.store.addCountsAsync(...args);
    } catch (e) {
      this.failed(e);
      return;
    }
    const done = added.then(
      (first) => this.written(n, first),
      (e: unknown) => this.failed(e),
    );
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  private written(n: number, first: Float64Array): void {
    this.stats.flushed += n;
    if (first.length > 0) for (const fn of this.firstAckListeners) fn(first);
  }

  private failed(e: unknown): void {
    this.stats.failed++;
    const now = Date.now();
    if (now - this.lastErrorLog >= ERROR_LOG_MS) {
      this.lastErrorLog = now;
      this.log.error({ err: (e as Error).message, failed: this.stats.failed }, 'message log: delivery counts not written (statistics only: the log is not affected)');
    }
  }

  /** Everything counted so far written (a query's answer, the SQL sink's stop): the flushes under way end, the rest here. */
  async settle(): Promise<void> {
    await Promise.all([...this.inFlight]);
    this.flush(true);
  }

  /** Write what is left and stop (before the store closes). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.settle();
    this.closed = true;
  }
}
