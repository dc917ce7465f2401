/**
 * A persistent session whose queue is kept in an external registry (persistence/queue-registry.ts:
 * Redis, SQL or a user's module): the second SessionPersistence model beside the embedded log's
 * (log-session.ts).
 *
 * A message this session needs is in its registry queue before the publisher is acknowledged
 * (the router's save names this session). Then:
 * - live (caught up, connected): the arrival is taken at once — delivered or queued in memory;
 * - replaying (behind, or away): it is left in the registry and read back in id order, a page
 *   at a time, on the event loop's terms (`stream` starts the read, `fill` hands what came back
 *   to the session's queue).
 * The session records in the registry what it sends under which packet id (QoS 2 before the
 * PUBLISH goes out, QoS 1 in the background), the PUBREL phase before PUBREL, and removes a
 * delivery once it completed (batched per turn).
 *
 * Invariants:
 * - entries with msgId <= `after` were taken (in memory, in flight or completed); `taken` holds
 *   those above `after` taken out of order (shared deliveries, in flight at a restart), completed
 *   or not, until a read or a live arrival passes them: an arrival or a read of any of them is a
 *   duplicate (a completion's removal from the registry may land after the next read);
 * - arrivals come in id order (QueueStore resolves saves in order), so in live mode every
 *   arrival is above `after`;
 * - replay ends only after a read that returned less than a page while no arrival was left in
 *   the registry meanwhile: an entry written after the read began is then taken on arrival.
 */
import type { QueuedMessage, QueueSource } from '../persistence/queue-registry.js';
import { messageOf } from '../persistence/queue-registry.js';
import type { Outlet } from './outlet.js';
import type { Arrival, BacklogLimits, DeliveryStats, DurableRef, Inflight, Pending, Session, SessionPersistence, StreamOutcome } from './session.js';

/** How long a failed read waits before the session tries again (the registry is away). */
const RETRY_MS = 500;

export class QueueSession implements SessionPersistence {
  replaying = true;
  /** Queue entries keep their QoS: one delivery at the higher QoS (SessionPersistence). */
  readonly sharedApart = false;
  /** Every entry with a msgId at or below it was taken. */
  after = 0;
  /** Entries above `after` taken out of order (see the module comment). */
  readonly taken = new Set<number>();
  /** Entries left in the registry for this session (what the queue limits count with the memory queue). */
  backlog = 0;
  private backlogBytes = 0;
  /** drop_oldest: entries still to discard from the head of the backlog (already counted). */
  private excess = 0;
  /** Read from the registry, not yet handed to the session's queue. */
  private buffered: Pending[] = [];
  private reading = false;
  /** Bumped when a read under way is given up (the connection it was for went away): its result is dropped. */
  private gen = 0;
  /** The last read found the end of the queue. */
  private caught = false;
  /** Arrivals left in the registry so far (a read that saw none begin and end may end replay). */
  private arrivals = 0;
  private readonly clientId: string;

  constructor(
    private readonly src: QueueSource,
    readonly session: Session,
    private readonly limits: BacklogLimits = session.env.limits,
    private readonly drops: DeliveryStats = session.env.stats,
  ) {
    this.clientId = session.clientId;
  }

  arrive(ref: DurableRef, bytes: number, canTake: boolean, connected: boolean): Arrival {
    const id = ref.offset;
    if (id <= this.after || this.taken.has(id)) return 'duplicate';
    const session = this.session;
    const lim = this.limits;
    const full = this.backlog + session.queue.length >= lim.maxQueued || (lim.maxQueuedBytes > 0 && this.backlogBytes + session.queueBytes + bytes > lim.maxQueuedBytes);
    if (connected && !this.replaying && canTake && !full) {
      this.after = id;
      if (this.taken.size > 0) for (const t of this.taken) if (t <= id) this.taken.delete(t); // passed: `after` covers them
      return 'take';
    }
    this.replaying = true;
    this.caught = false;
    if (full) {
      if (lim.overflow === 'disconnect' && connected) {
        this.left(bytes);
        return 'disconnect';
      }
      if (lim.overflow === 'drop_oldest' && lim.maxQueued > 0) {
        // Keep the new entry; the oldest waiting one goes: from memory, else when read.
        const oldest = session.dequeue();
        if (oldest) this.completed(oldest);
        else this.excess++;
        this.left(bytes);
        this.dropped();
        return 'left';
      }
      this.src.complete(this.clientId, id); // drop_newest: out of the registry queue again
      this.taken.add(id);
      return this.dropped();
    }
    this.left(bytes);
    return 'left';
  }

  private left(bytes: number): void {
    this.arrivals++;
    this.backlog++;
    this.backlogBytes += bytes;
  }

  private dropped(): Arrival {
    this.session.dropped++;
    this.drops.dropped++;
    this.drops.dropReasons.queueFull++;
    return 'dropped';
  }

  /** A shared delivery is in this session's registry queue already (the save named it): taken out of order. */
  pin(p: Pending): Promise<void> {
    if (p.ref) this.taken.add(p.ref.offset);
    // A retained message sent on subscribe is not in the queue: recorded by topic until it
    // completes. One sent at once was recorded already, with its packet id (`sent`, called first).
    if (p.retainedTopic !== undefined && (p as Partial<Inflight>).phase === undefined) return this.src.pinRetained(this.clientId, p.retainedTopic, p.qos, 0, 0);
    return Promise.resolve();
  }

  sent(p: Pending, id: number): Promise<void> | null {
    if (p.retainedTopic !== undefined) {
      // Its packet id recorded, so a restart resends it under that id with DUP, not as a new delivery.
      const pinned = this.src.pinRetained(this.clientId, p.retainedTopic, p.qos, id, 1);
      if (p.qos === 2) return pinned; // the PUBLISH goes out once its packet id is durable
      pinned.catch(() => undefined);
      return null;
    }
    if (!p.ref) return null;
    const recorded = this.src.inflight(this.clientId, p.ref.offset, id, 1);
    if (p.qos === 2) return recorded; // the PUBLISH goes out once its packet id is durable
    recorded.catch(() => undefined); // QoS 1: a restart before it lands sends it again as a new delivery
    return null;
  }

  released(p: Pending, id: number): Promise<void> {
    if (p.retainedTopic !== undefined) return this.src.pinRetained(this.clientId, p.retainedTopic, p.qos, id, 2);
    if (!p.ref) return Promise.resolve();
    return this.src.inflight(this.clientId, p.ref.offset, id, 2);
  }

  completed(p: Pending): void {
    if (p.retainedTopic !== undefined) this.src.unpinRetained(this.clientId, p.retainedTopic);
    const ref = p.ref;
    if (!ref) return;
    // It stays in `taken` until a read passes it: the removal from the registry may not have
    // landed when the next read runs, which must not take it again.
    this.src.complete(this.clientId, ref.offset);
  }

  /** Deliveries read from a registry carry their message. */
  load(): void {}

  /** Hand what the last read brought to the session's queue (up to `n`); replay ends when it found the end. */
  fill(session: Session, n: number): void {
    if (!this.replaying) return;
    let moved = 0;
    while (moved < n && this.buffered.length > 0) {
      const p = this.buffered.shift() as Pending;
      if (this.backlog > 0) {
        this.backlog--;
        this.backlogBytes = Math.max(0, this.backlogBytes - (p.msg?.payload.length ?? 0));
      }
      if (this.excess > 0) {
        this.excess--; // dropped (and counted) when a newer message overflowed the queue
        this.completed(p);
        continue;
      }
      session.enqueue(p);
      moved++;
    }
    if (this.buffered.length === 0 && this.caught) this.caughtUp();
  }

  /**
   * Reading happens here (SessionPersistence.stream): what a read brought is handed over by
   * `fill` ('slow'); otherwise a read of the next page starts and `wake` is called when it is
   * back ('waiting').
   */
  stream(_out: Outlet, n: number, _native: boolean, _plain: boolean, _maxBacklog: number, wake: () => void): StreamOutcome {
    if (this.buffered.length > 0) return 'slow';
    if (this.reading) return 'waiting';
    if (this.caught) {
      this.caughtUp();
      return 'caught-up';
    }
    this.readPage(n, wake);
    return 'waiting';
  }

  private readPage(n: number, wake: () => void): void {
    this.reading = true;
    const arrivals = this.arrivals;
    const gen = this.gen;
    this.src.read(this.clientId, this.after, n).then(
      (rows) => {
        if (gen !== this.gen) return; // given up (dropRead): `after` was not moved for it
        this.reading = false;
        this.took(rows);
        // Less than a page and nothing left in the registry meanwhile: the end of the queue.
        if (rows.length < n && this.arrivals === arrivals) this.caught = true;
        wake();
      },
      (e: unknown) => {
        if (gen !== this.gen) return;
        this.reading = false;
        this.src.log.warn({ clientId: this.clientId, err: (e as Error).message }, 'registry: queue read failed, retrying');
        setTimeout(wake, RETRY_MS).unref();
      },
    );
  }

  private took(rows: QueuedMessage[]): void {
    for (const r of rows) {
      const id = r.msgId;
      if (id <= this.after) continue;
      this.after = id;
      if (this.taken.delete(id)) continue; // in memory already (shared delivery, or in flight at a restart)
      if (r.message === null) {
        this.src.complete(this.clientId, id); // its body is gone: nothing to deliver
        continue;
      }
      this.buffered.push({ msg: messageOf(r.message), qos: r.qos, retain: r.retain, subIds: r.subIds ?? undefined, ref: { shard: 0, offset: id } });
    }
  }

  private caughtUp(): void {
    this.replaying = false;
    this.caught = false;
    this.backlog = 0;
    this.backlogBytes = 0;
  }

  attached(): void {
    this.replaying = true;
    this.caught = false;
    this.dropRead();
  }

  detached(): void {
    this.replaying = true;
    this.caught = false;
    this.dropRead();
  }

  /**
   * A read under way was started for the connection that went away, and only its pump is woken
   * when it is back: the next connection would wait for it for ever (found by the durability
   * checker with the registry's answers 40 ms late, seed 5500117: a session back, subscribing,
   * gone again before its first read came back never got its message). Its result is dropped;
   * the next connection reads again from `after` (as the log's sessions do, unreadAhead).
   */
  private dropRead(): void {
    if (!this.reading) return;
    this.reading = false;
    this.gen++;
  }

  /** Everything is written as it happens. */
  save(): void {}
}
