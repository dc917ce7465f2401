/**
 * Broker-side MQTT session state (spec §4.1): subscriptions, outbound inflight window,
 * the queue behind it, inbound QoS 2 ids awaiting PUBREL, and the packet-id allocator.
 *
 * Invariants:
 * - `inflight.size <= window` except right after a reconnect lowers the window; new sends wait.
 * - a packet id is in `inflight` at most once; `allocateId` never returns one in use.
 * - `queue` only holds QoS > 0 deliveries (and QoS 0 when `queue_qos0` is on and offline).
 */
import type { QoS } from '../protocol/codec.js';
import type { Connection } from '../connection.js';
import type { Message } from '../message.js';
import { Queue } from './queue.js';

export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

export interface Subscription extends SubscriptionOptions {
  readonly filter: string;
  /** Id of this subscription in the native trie. */
  readonly trieId: number;
}

/** A delivery waiting for a window slot (or for the client to come back). */
/**
 * Deliveries of a store-backed queue read per page, which is also how many an offline
 * persistent session keeps in memory before it leaves the rest in the store.
 */
export const QUEUE_PAGE = 1000;

/** Where a persistent session's delivery is recorded in the durable store. */
export interface DurableRef {
  /** Orders a session's deliveries; part of the index key. */
  readonly seq: number;
  readonly shard: number;
  readonly offset: number;
}

export interface Pending {
  /** The message, or null while only its log position is held (offline persistent session). */
  msg: Message | null;
  qos: QoS;
  retain: boolean;
  subIds: number[] | undefined;
  /** Set for deliveries to persistent sessions: the message is in the log, this is its index entry. */
  ref?: DurableRef | undefined;
}

/**
 * What a persistent session records as its deliveries progress (implemented by the durable
 * store; in-memory sessions have none). Each call is cheap: writes are batched and
 * group-committed in the background, ordered per session.
 */
export interface SessionPersistence {
  /** A QoS 2 delivery is about to be sent with packet id `id`; send once this resolves. */
  sent(p: Pending, id: number): Promise<void>;
  /** PUBREC received: the delivery enters its PUBREL phase; send PUBREL once this resolves. */
  released(p: Pending, id: number): Promise<void>;
  /** The delivery ended (acknowledged, refused, expired or dropped): forget it. */
  completed(p: Pending): void;
  /** Fill in `msg` for entries that hold only a log position; those whose record is gone stay null. */
  load(entries: Pending[]): void;
  /** Move the next page of store-resident deliveries into the queue (see Session.backlogAfter). */
  loadMore(session: Session): void;
  /**
   * Leave further deliveries in the store (they are indexed already): sets backlogAfter to the
   * last queued delivery. False if that delivery is not in the store.
   */
  spill(session: Session): boolean;
}

/** An outbound QoS 1/2 delivery not yet completed by the client. */
export interface Inflight extends Pending {
  /** 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREL sent, waiting for PUBCOMP. */
  phase: 'publish' | 'pubrel';
}

export interface WillState {
  msg: Message;
  delaySeconds: number;
  timer: NodeJS.Timeout | null;
}

export class Session {
  readonly subscriptions = new Map<string, Subscription>();
  readonly inflight = new Map<number, Inflight>();
  readonly queue = new Queue<Pending>();
  /** Inbound QoS 2 packet ids for which PUBREC was sent and PUBREL not yet received. */
  readonly incomingQos2 = new Set<number>();
  /** The live connection, or null while the client is away. */
  connection: Connection | null = null;
  /** Seconds the session outlives its connection; 0xFFFFFFFF = never expires. */
  expiryInterval = 0;
  expiryTimer: NodeJS.Timeout | null = null;
  /** A will waiting out its Will Delay Interval after the connection closed. */
  pendingWill: WillState | null = null;
  /**
   * Store-backed queue: when not null, deliveries after this index key are in the store but not
   * yet in `queue`; new deliveries stay in the store too (they are already indexed) until the
   * pages before them are loaded. Keeps a large offline queue out of memory.
   */
  backlogAfter: Buffer | null = null;
  /** Highest delivery seq loaded from the store: later live deliveries at or below it are already queued. */
  loadedSeq = 0;
  /** Durable record keeping; null for sessions that live in memory only. */
  durable: SessionPersistence | null = null;
  /** Messages dropped for this session (queue full, slow consumer, too large for the client). */
  dropped = 0;
  private nextId = 1;

  constructor(readonly clientId: string) {}

  /** Next free packet id in 1..65535 ([MQTT-2.2.1-3] non-zero, unused). */
  allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }
}
