/**
 * Broker-side MQTT session state (spec §4.1): subscriptions, outbound inflight window,
 * the queue behind it, inbound QoS 2 ids awaiting PUBREL, and the packet-id allocator.
 *
 * Invariants:
 * - `inflight.size <= window` except right after a reconnect lowers the window; new sends wait.
 * - a packet id is in `inflight` at most once; `allocateId` never returns one in use.
 * - `queue` only holds QoS > 0 deliveries (and QoS 0 when `queue_qos0` is on and offline).
 */
import { type LongTimer, wheel, type WheelEntry, wheelSteps, wheelTime } from '../timers.js';
import type { QoS } from '../wire/codec.js';
import { type Message, payloadSize } from '../wire/message.js';
import { type Config, loadConfig } from '../config.js';
import type { DeliveryTaps } from '../hooks/bus.js';
import { NATIVE_DRAIN_SUPPORTED } from '../native.js';
import type { DeliveryCounter, DurableRef, Pending, SubscriptionOptions } from '../persistence/registries.js';
import type { Inflow } from './inflow.js';
import type { Outlet } from './outlet.js';
import { Queue } from './queue.js';

export type { DurableRef, Pending, SubscriptionOptions };

export interface Subscription extends SubscriptionOptions {
  readonly filter: string;
  /** Id of this subscription in the native trie. */
  readonly trieId: number;
  /**
   * Persistent sessions: per log shard, the shard's end when the subscription was made. A
   * logged message before it predates the subscription and is not replayed for it.
   */
  start?: readonly number[] | undefined;
  /**
   * Topics inside this subscription the ACL keeps from the client (a deny rule within a granted
   * filter): not delivered. Undefined when none can be (the usual case: one property read).
   */
  readDenied?: ((topic: string) => boolean) | undefined;
}

/**
 * The most deliveries a persistent session holds in memory behind its window: beyond that
 * (and always while the client is away) the log itself is the queue, read back in batches.
 */
export const QUEUE_PAGE = 1000;

/** A delivery the session's durable side keeps track of (logged, or retained on subscribe). */
export function isRecorded(p: Pending): boolean {
  return p.ref !== undefined || p.retainedTopic !== undefined;
}

/**
 * What a persistent session does with a logged message that reached it as it was stored:
 * - take: deliver (or queue) it now, the session is caught up with the log;
 * - duplicate: already taken (the session read it from the log first);
 * - left: left in the log, the session is behind or away and reads it from there in order;
 * - dropped: dropped for this session, its queue is full (drop_newest), counted;
 * - disconnect: queue full with overflow policy `disconnect`, the client is disconnected.
 */
export type Arrival = 'take' | 'duplicate' | 'left' | 'dropped' | 'disconnect';

/**
 * A persistent session's durable side (implemented for the embedded store by
 * session/log-session.ts; in-memory sessions have none). Its progress — how far it has read
 * each log shard, and the deliveries in flight — is committed in the background, batched per
 * event-loop turn, except where a caller waits for it (QoS 2 steps, shared deliveries).
 */
export interface SessionPersistence {
  /** True while the session is behind the log (or away): new logged messages are left there. */
  readonly replaying: boolean;
  /**
   * A message the session matches by a shared and a plain subscription is routed to it as two
   * deliveries, the shared one pinned: true where replay reads the plain subscriptions only (the
   * log), so a merged delivery left to it would come back at the plain subscriptions' QoS.
   * False: one delivery at the higher QoS (a registry's queue entry keeps its own QoS).
   */
  readonly sharedApart: boolean;
  /** A logged message for this session was stored (`canTake`: it has room to take it now). */
  arrive(ref: DurableRef, bytes: number, canTake: boolean, connected: boolean): Arrival;
  /** A delivery the log cannot replay (see Pending.pinned): resolves once it is recorded. */
  pin(p: Pending): Promise<void>;
  /**
   * A shared delivery another member's ended session left (Router.handOn): recorded as a pin
   * with the next metadata commit — the one removing that session, when called in the same turn —
   * and not in the session's queue until then: resolves once durable, and the caller delivers it
   * (pinned) in that same turn. Absent: the model cannot record it so (a registry's queue).
   */
  adopt?(p: Pending): Promise<void>;
  /** A delivery is about to be sent with packet id `id`; QoS 2 sends once this resolves. */
  sent(p: Pending, id: number): Promise<void> | null;
  /** PUBREC received: the delivery enters its PUBREL phase; send PUBREL once this resolves. */
  released(p: Pending, id: number): Promise<void>;
  /** The delivery ended (acknowledged, refused, expired or dropped). */
  completed(p: Pending): void;
  /** Fill in `msg` for entries that hold only a log position; those whose record is gone stay null. */
  load(entries: Pending[]): void;
  /** Read up to `n` further deliveries from the log into the session's queue (while replaying). */
  fill(session: Session, n: number): void;
  /**
   * The drain fast path (while replaying, with nothing queued in memory): read deliveries
   * from the log as ready-made PUBLISH packets and send them while the window has room,
   * reading up to `n` ahead; QoS 0 ones while the socket holds less than `maxBacklog` bytes.
   * `plain`: no delivery listeners; otherwise what is sent is read back as messages (one
   * batch read per send) and reported to them, and so are its acknowledgements. `native`: a
   * plain drain may be handed to the native loop (durable_sessions.native_drain), which does not
   * report deliveries yet. See StreamOutcome.
   */
  stream?(out: Outlet, n: number, native: boolean, plain: boolean, maxBacklog: number, wake: () => void): StreamOutcome;
  /** The client came back: it drains what it missed from the log. */
  attached(): void;
  /** The client went away: everything new is left in the log. */
  detached(): void;
  /** Record the current progress with the next commit (graceful shutdown). */
  save(): void;
}

/**
 * What `SessionPersistence.stream` did:
 * - sent: sent what the window had room for (or the socket's buffer is full);
 * - caught-up: nothing is left in the log, the session takes new messages as they come;
 * - slow: the next delivery needs the general path (`fill`): properties, QoS 2, too large
 *   for the client, subscription identifiers;
 * - more: read as far as one call may without finding a delivery; call again soon;
 * - waiting: the next deliveries are being read on a worker thread; `wake` is called then;
 * - native: the connection was handed to the native drain loop; `wake` is called when it is
 *   back.
 */
export type StreamOutcome = 'sent' | 'caught-up' | 'slow' | 'more' | 'waiting' | 'native';

/**
 * Something sending a session's earlier deliveries in pages (routing/retained-feed.ts: the
 * retained messages of a new subscription): while it is set, live deliveries wait behind it.
 */
export interface LiveHold {
  /**
   * Run `deliver` (of a `qos` message with `bytes` of payload) once the earlier deliveries are
   * out: 'held'; or not held, to be dropped: 'slow' (QoS 0 beyond the slow-consumer watermark),
   * 'full' (QoS 1/2 beyond the queue limits).
   */
  hold(deliver: () => void, qos: QoS, bytes: number): Hold;
}

/** What LiveHold.hold did with a delivery. */
export type Hold = 'held' | 'slow' | 'full';

/** An outbound QoS 1/2 delivery not yet completed by the client. */
export interface Inflight extends Pending {
  /** 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREL sent, waiting for PUBCOMP. */
  phase: 'publish' | 'pubrel';
}

export interface WillState {
  msg: Message;
  delaySeconds: number;
  timer: LongTimer | null;
}

/**
 * What delivery needs from outside a session: the limits it applies and who to tell of
 * deliveries and acknowledgements (the hook bus, wired by the broker).
 */
export interface DeliveryEnv extends DeliveryTaps {
  readonly limits: DeliveryLimits;
  /** Ends a session whose expiry came (set by the session lifecycle; null: nothing ends them). */
  expire: ((session: Session) => void) | null;
  /** The message log's delivery counts (msglog.topics not empty), null otherwise. */
  counts: DeliveryCounter | null;
  /** Deliveries dropped (queue full, too large, slow consumer) and native drains started, for the metrics. */
  readonly stats: DeliveryStats;
  /** Publishers held to the pace of the sessions they queue for (mqtt.fair_inflow; null: off). */
  readonly inflow: Inflow | null;
}

/** A `$log/` re-consume reader (msglog/reconsume.ts LogFeed), as the ACL's enforcement sees it. */
export interface LogReaderRef {
  /** The topic filter it reads (`<filter>` of `$log/<from>/<filter>`). */
  readonly inner: string;
  /** The ACL's deny rules inside `inner`: those topics are skipped (Router.readDenied). */
  readDenied: ((topic: string) => boolean) | undefined;
  stop(): void;
}

/** Deliveries dropped, by why (their sum is DeliveryStats.dropped). */
export interface DropReasons {
  /** A session queue at mqtt.max_queued_messages / max_queued_bytes. */
  queueFull: number;
  /** A QoS 0 message for a client whose socket buffer is past mqtt.write_high_watermark. */
  slowConsumer: number;
  /** Larger than the client's Maximum Packet Size ([MQTT-3.1.2-25]). */
  tooLarge: number;
}

export interface DeliveryStats {
  dropped: number;
  readonly dropReasons: DropReasons;
  nativeDrains: number;
  /** Deliveries persistent sessions' drains sent as ready-made packets on the event loop (the fast path). */
  fastDrained: number;
  /** PUBLISH packets sent to clients through the event loop, by QoS (index 0..2). */
  sent: number[];
  /** PUBLISH packets the native drain loop sent (QoS 0 and 1, not told apart), counted when it hands back. */
  nativeSent: number;
}

/** Queue limits of persistent sessions (a part of DeliveryLimits). */
export interface BacklogLimits {
  maxQueued: number;
  /** 0 = no byte limit. */
  maxQueuedBytes: number;
  overflow: 'drop_oldest' | 'drop_newest' | 'disconnect';
}

export interface DeliveryLimits extends BacklogLimits {
  /** The queue of a session kept in memory only (mqtt.max_queued_in_memory; see queueLimit). */
  maxQueuedInMemory: number;
  queueQos0: boolean;
  writeHighWatermark: number;
  /** Deliveries read from the log per batch when a persistent session catches up. */
  batchSize: number;
  /** QoS 0 messages for offline persistent sessions go through the store (durable_sessions.qos0). */
  storeQos0: boolean;
  /** Persistent sessions catching up over plain TCP may be drained by the native loop. */
  nativeDrain: boolean;
}

/** The delivery limits the configuration sets. */
export function deliveryLimits(c: Config): DeliveryLimits {
  return {
    maxQueued: c['mqtt.max_queued_messages'],
    maxQueuedBytes: c['mqtt.max_queued_bytes'],
    maxQueuedInMemory: c['mqtt.max_queued_in_memory'],
    overflow: c['mqtt.queue_overflow'] as DeliveryLimits['overflow'],
    queueQos0: c['mqtt.queue_qos0'],
    writeHighWatermark: c['mqtt.write_high_watermark'],
    batchSize: c['durable_sessions.batch_size'],
    storeQos0: c['durable_sessions.qos0'],
    // The native loop exists on Linux builds only; elsewhere sessions drain on the event loop.
    nativeDrain: c['durable_sessions.native_drain'] && NATIVE_DRAIN_SUPPORTED,
  };
}

/**
 * How many messages `session`'s queue may hold: a session kept in memory only (no log or registry
 * behind it) at most `mqtt.max_queued_in_memory` too — its queue is held in memory, message by
 * message, for as long as its subscriber is slow (with the other limit alone, a million).
 */
export function queueLimit(session: Session): number {
  const l = session.env.limits;
  return session.durable === null && l.maxQueuedInMemory < l.maxQueued ? l.maxQueuedInMemory : l.maxQueued;
}

/**
 * `n`, or half `session`'s queue limit when that is less (at least 1): a count that must fit in the
 * queue twice over — the page a reader filling it a page at a time (a retained feed, a `$log/`
 * re-consumer) puts in at once and waits below, the queue length at which an inflow hold starts.
 */
export function halfLimit(session: Session, n: number): number {
  const half = queueLimit(session) >> 1;
  return half < n ? half || 1 : n;
}

/** Until a session is given its environment: no limits beyond the defaults, nobody told. */
const NO_ENV: DeliveryEnv = {
  limits: deliveryLimits(loadConfig()),
  expire: null,
  delivered: null,
  acked: null,
  counts: null,
  inflow: null,
  stats: { dropped: 0, dropReasons: { queueFull: 0, slowConsumer: 0, tooLarge: 0 }, nativeDrains: 0, fastDrained: 0, sent: [0, 0, 0], nativeSent: 0 },
};

/**
 * The shared empty collections a session starts with (an empty Map or Set still costs ~150 B
 * of hash table; most sessions never hold an inbound QoS 2 id, idle ones nothing in flight):
 * the first entry replaces them with a session's own (Session.addInflight …). Adding to them
 * directly is a bug and throws.
 */
class NoEntries<K, V> extends Map<K, V> {
  override set(): this {
    throw new Error('a session added to its shared empty map: use its add method');
  }
}
class NoIds extends Set<number> {
  override add(): this {
    throw new Error('a session added to its shared empty set: use its add method');
  }
}

/**
 * Where a session's subscriptions live (routing/subscriptions.ts SubscriptionTable): their
 * options by trie id, in arrays of its own, not in an object per subscription. `view` makes a
 * Subscription to read (or to set readDenied through) at once, on the paths that are not routing.
 */
export interface SubscriptionViews {
  view(filter: string, trieId: number): Subscription;
}

/**
 * A session's subscriptions by filter, as the broker reads and removes them (add with
 * Session.addSubscription): the session keeps each filter's trie id only; `get` and `values`
 * give views made from the table.
 */
export interface SessionSubscriptions extends Iterable<[string, Subscription]> {
  readonly size: number;
  get(filter: string): Subscription | undefined;
  /** The trie id of `filter`'s subscription. */
  id(filter: string): number | undefined;
  has(filter: string): boolean;
  values(): IterableIterator<Subscription>;
  keys(): IterableIterator<string>;
  /** Filter and trie id of each subscription. */
  ids(): IterableIterator<[string, number]>;
  delete(filter: string): boolean;
  clear(): void;
}

/** No subscription (shared by every session without one). */
class NoSubscriptions implements SessionSubscriptions {
  readonly size = 0;
  get(): undefined {
    return undefined;
  }
  id(): undefined {
    return undefined;
  }
  has(): boolean {
    return false;
  }
  *values(): IterableIterator<Subscription> {}
  *keys(): IterableIterator<string> {}
  *ids(): IterableIterator<[string, number]> {}
  delete(): boolean {
    return false;
  }
  clear(): void {}
  *[Symbol.iterator](): IterableIterator<[string, Subscription]> {}
}
const NO_SUBSCRIPTIONS: SessionSubscriptions = new NoSubscriptions();

/**
 * The subscriptions of a session that has at most one (most devices: one command topic): its
 * filter and trie id in fields instead of a Map and its hash table (~180 B). A second filter
 * moves them into a Map.
 */
class OneSubscription implements SessionSubscriptions {
  constructor(
    public filter: string | null,
    public trieId: number,
    readonly views: SubscriptionViews,
  ) {}

  get size(): number {
    return this.filter === null ? 0 : 1;
  }

  get(filter: string): Subscription | undefined {
    return filter === this.filter ? this.views.view(filter, this.trieId) : undefined;
  }

  id(filter: string): number | undefined {
    return filter === this.filter ? this.trieId : undefined;
  }

  has(filter: string): boolean {
    return this.filter !== null && filter === this.filter;
  }

  *values(): IterableIterator<Subscription> {
    if (this.filter !== null) yield this.views.view(this.filter, this.trieId);
  }

  *keys(): IterableIterator<string> {
    if (this.filter !== null) yield this.filter;
  }

  *ids(): IterableIterator<[string, number]> {
    if (this.filter !== null) yield [this.filter, this.trieId];
  }

  delete(filter: string): boolean {
    if (this.filter === null || filter !== this.filter) return false;
    this.clear();
    return true;
  }

  clear(): void {
    this.filter = null;
  }

  *[Symbol.iterator](): IterableIterator<[string, Subscription]> {
    if (this.filter !== null) yield [this.filter, this.views.view(this.filter, this.trieId)];
  }
}

/** Two subscriptions or more: filter → trie id. */
class ManySubscriptions implements SessionSubscriptions {
  readonly byFilter = new Map<string, number>();

  constructor(readonly views: SubscriptionViews) {}

  get size(): number {
    return this.byFilter.size;
  }

  get(filter: string): Subscription | undefined {
    const id = this.byFilter.get(filter);
    return id === undefined ? undefined : this.views.view(filter, id);
  }

  id(filter: string): number | undefined {
    return this.byFilter.get(filter);
  }

  has(filter: string): boolean {
    return this.byFilter.has(filter);
  }

  *values(): IterableIterator<Subscription> {
    for (const [f, id] of this.byFilter) yield this.views.view(f, id);
  }

  keys(): IterableIterator<string> {
    return this.byFilter.keys();
  }

  ids(): IterableIterator<[string, number]> {
    return this.byFilter.entries();
  }

  delete(filter: string): boolean {
    return this.byFilter.delete(filter);
  }

  clear(): void {
    this.byFilter.clear();
  }

  *[Symbol.iterator](): IterableIterator<[string, Subscription]> {
    for (const [f, id] of this.byFilter) yield [f, this.views.view(f, id)];
  }
}
const NO_INFLIGHT: Map<number, Inflight> = new NoEntries();
const NO_IDS: Set<number> = new NoIds();
class NoQueue extends Queue<Pending> {
  override push(): void {
    throw new Error('a session queued to its shared empty queue: use enqueue');
  }
}
const NO_QUEUE: Queue<Pending> = new NoQueue();

export class Session implements WheelEntry {
  /** By filter. Add with addSubscription. */
  subscriptions: SessionSubscriptions = NO_SUBSCRIPTIONS;
  /** By packet id. Add with addInflight. */
  inflight = NO_INFLIGHT;
  /** Deliveries behind the window. Add with enqueue (a session's first replaces the shared empty one). */
  queue = NO_QUEUE;
  /** Inbound QoS 2 packet ids for which PUBREC was sent and PUBREL not yet received (add with addIncomingQos2). */
  incomingQos2 = NO_IDS;
  /**
   * Of those, the ids a restart found half stored — the message in the log (at this position),
   * the id still pending — whose re-sent PUBLISH must be routed to shared subscriptions again
   * before PUBREC (Broker.restoreInbound). Null when none.
   */
  inboundHalf: Map<number, DurableRef> | null = null;
  /**
   * Inbound QoS 2 messages of a persistent session still being stored (their id recorded with
   * them), by packet id: a copy re-sent meanwhile (after a takeover) is acknowledged only once the
   * first is stored, and PUBREL releases the id only after that, so the release is never
   * overwritten by the first copy's "stored" mark. Null when none.
   */
  inboundStoring: Map<number, Promise<void>> | null = null;
  /** Where packets go while the client is connected; null while it is away. */
  outlet: Outlet | null = null;
  /** Limits and delivery events, set by whoever creates the session (lifecycle/). */
  env: DeliveryEnv = NO_ENV;
  /**
   * expiryInterval, "never" as -1: a small integer kept in the object itself — one 0xFFFFFFFF (or
   * one integer held as a double) in any session made V8 box this field, 16 bytes, in every one.
   */
  private expiry = 0;
  /**
   * When the session expires, in the timer wheel's steps (wheelSteps; 0: not waiting): the session
   * waits on the wheel itself (WheelEntry), where a timer object each cost 64 bytes per offline
   * session. Set with expireAt, cleared with cancelExpiry.
   */
  private expiresAt = 0;
  wheelAt = 0;
  wheelIdx = 0;
  /** A will waiting out its Will Delay Interval after the connection closed. */
  pendingWill: WillState | null = null;
  /** Payload bytes of the messages in `queue` (mqtt.max_queued_bytes). */
  queueBytes = 0;
  /** Durable record keeping; null for sessions that live in memory only. */
  durable: SessionPersistence | null = null;
  /** Messages dropped for this session (queue full, slow consumer, too large for the client). */
  dropped = 0;
  /** The next packet id `allocateId` tries (the native drain loop carries it on). */
  nextId = 1;
  /** What session/inflow.ts keeps for it (InflowSession): whether it may hold publishers. */
  inflowWatched = false;
  inflowOver = 0;
  inflowAcks = 0;
  inflowProgressing = true;
  /**
   * Logged deliveries of messages routed to this session and still being stored (Broker.store),
   * and the QoS 0 deliveries that do not go through the log waiting for them, so that none
   * overtakes an earlier message of the same topic ([MQTT-4.6.0-6]). Each logged delivery has a
   * ticket (`loggedIssued` counts them; `loggedOpen`: those not done, in increasing order); a
   * waiting delivery goes once every ticket up to its `after` is done — not behind logged ones
   * routed after it.
   */
  loggedIssued = 0;
  loggedOpen: number[] | null = null;
  afterLogged: { after: number; go: () => void }[] | null = null;
  /** Earlier deliveries still being sent (a retained feed): live ones wait behind it. Null when none. */
  feed: LiveHold | null = null;
  /** `$log/` subscriptions (msglog/reconsume.ts): their readers of the message log, by filter. Null when none. */
  logReaders: Map<string, LogReaderRef> | null = null;

  constructor(readonly clientId: string) {}

  /** Seconds the session outlives its connection; 0xFFFFFFFF = never expires. */
  get expiryInterval(): number {
    return this.expiry === -1 ? 0xffffffff : this.expiry;
  }

  set expiryInterval(seconds: number) {
    // `| 0`: an integer that came as a double (config, a decoder) stored as one would box the field too.
    this.expiry = seconds === 0xffffffff ? -1 : seconds <= 0x3fffffff ? seconds | 0 : seconds;
  }

  /** Hold `filter`'s subscription, trie id `trieId` in `views` (replacing the filter's id if it had one). */
  addSubscription(filter: string, trieId: number, views: SubscriptionViews): void {
    const subs = this.subscriptions;
    if (subs === NO_SUBSCRIPTIONS) {
      this.subscriptions = new OneSubscription(filter, trieId, views);
    } else if (subs instanceof OneSubscription) {
      if (subs.filter === null || subs.filter === filter) {
        subs.filter = filter;
        subs.trieId = trieId;
      } else {
        const many = new ManySubscriptions(views);
        many.byFilter.set(subs.filter, subs.trieId);
        many.byFilter.set(filter, trieId);
        this.subscriptions = many;
      }
    } else {
      (subs as ManySubscriptions).byFilter.set(filter, trieId);
    }
  }

  /** End the session (env.expire) at or after `due` (ms since epoch), up to a wheel step late. */
  expireAt(due: number): void {
    this.expiresAt = Math.max(1, wheelSteps(due));
    wheel.schedule(this, due);
  }

  cancelExpiry(): void {
    this.expiresAt = 0;
    wheel.cancel(this);
  }

  /** WheelEntry: its expiry's slot came. */
  onWheel(now: number): void {
    if (this.expiresAt === 0) return;
    const due = wheelTime(this.expiresAt);
    if (now < due) wheel.schedule(this, due);
    else {
      this.expiresAt = 0;
      this.env.expire?.(this);
    }
  }

  addInflight(id: number, entry: Inflight): void {
    if (this.inflight === NO_INFLIGHT) this.inflight = new Map();
    this.inflight.set(id, entry);
  }

  addIncomingQos2(id: number): void {
    if (this.incomingQos2 === NO_IDS) this.incomingQos2 = new Set();
    this.incomingQos2.add(id);
  }

  /** Queue a delivery behind the window; its payload counts in queueBytes while its body is held. */
  enqueue(p: Pending): void {
    if (this.queue === NO_QUEUE) this.queue = new Queue();
    this.queue.push(p);
    if (p.msg) this.queueBytes += payloadSize(p.msg);
  }

  /** The next queued delivery, out of the queue (and out of queueBytes). */
  dequeue(): Pending | undefined {
    const p = this.queue.shift();
    if (p?.msg) this.queueBytes -= payloadSize(p.msg);
    return p;
  }

  /** Next free packet id in 1..65535 ([MQTT-2.2.1-3] non-zero, unused). */
  allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }
}
