/**
 * What the broker stores, behind three interfaces (the embedded store implements them all,
 * persistence/embedded/; Redis and SQL registries plug in here, as smqtt's registries and
 * EMQX 4's backends do):
 * - SessionRegistry: persistent sessions — their records (expiry, will), subscriptions and
 *   inbound QoS 2 packet ids awaiting PUBREL; every one of them at start.
 * - MessageRegistry: messages persistent sessions need, stored once for all the sessions they
 *   go to (smqtt's saveSessionMessages), read back by where they are, and listed per session
 *   (getSessionMessages: what an offline session has waiting).
 * - RetainedRegistry: retained messages (saveRetainMessage; getRetainMessage by filter; all of
 *   them at start — routing reads them from memory, routing/retained.ts).
 * Every caller that stores something goes through one of these. Types here are plain data.
 *
 * Two models sit behind them (`persistence.registry`): the embedded store's log, where a message
 * is written once and each session keeps how far it has read (session/log-session.ts), and an
 * external registry's per-session queues (persistence/queue-registry.ts: Redis, SQL or a user's
 * module; session/queue-session.ts), where a message body is written once and each session it
 * goes to gets a queue entry naming it. `saveSessionMessages` is given the sessions a message goes
 * to for the second model; the log ignores them.
 */
import type { Logger } from '../log.js';
import { type DrainControl, encodeRetainedRecord, type LogPosition, type ReplayResult, type ReplayShard, type ReplaySub, type RetainedRecord, type ScanResult } from '../native.js';
import type { QoS } from '../wire/codec.js';
import { createMessage, decodeProperties, encodeProperties, type Message } from '../wire/message.js';

export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** Where a logged message is: written once, read by every persistent session that needs it. */
export interface DurableRef {
  readonly shard: number;
  readonly offset: number;
}

/**
 * The message log's delivery counts (embedded/delivery-counts.ts), as delivery reports to them:
 * by the record's log position when the delivery knows it (`ref`), else by the message.
 */
export interface DeliveryCounter {
  /** A PUBLISH was written to a subscriber (a QoS 0 one is also complete). */
  delivered(msg: Message | null, ref: DurableRef | undefined, qos: QoS): void;
  /** A delivery completed (PUBACK, PUBCOMP). */
  acked(msg: Message | null, ref: DurableRef | undefined): void;
  /** Count at a known position (the native drain loop's reports). */
  add(shard: number, offset: number, delivered: number, acked: number): void;
}

/** A delivery to a session, as its durable side records it (session/ calls it Pending). */
export interface Pending {
  /** The message, or null while only its log position is known (restored after a restart). */
  msg: Message | null;
  qos: QoS;
  retain: boolean;
  subIds: number[] | undefined;
  /** Deliveries of logged messages to persistent sessions: where the message is in the log. */
  ref?: DurableRef | undefined;
  /**
   * A delivery that replaying the log would not find again (it came through a shared
   * subscription): the session records it explicitly until it completes.
   */
  pinned?: boolean | undefined;
  /**
   * A retained message sent to a persistent session on subscribe: recorded by topic (it is not
   * in the log) until it completes; after a restart the topic's retained message is resent.
   */
  retainedTopic?: string | undefined;
}

/**
 * A persistent session's progress: how far it has read each shard of the message log, what it
 * skipped, and its deliveries queued or in flight (the embedded store's layout: embedded/progress.ts).
 */
/** Messages of one shard the session skips (its queue was full): [from, to), `to` null while open. */
export interface Gap {
  from: number;
  to: number | null;
}

export interface ProgressEntry {
  pending: Pending;
  packetId: number;
  phase: 0 | 1 | 2;
}

export interface Progress {
  next: number[];
  excess: number;
  backlog: number;
  backlogBytes: number;
  /** Per shard, oldest first. */
  gaps: Gap[][];
  entries: ProgressEntry[];
}

/** A will as stored in its session's record. */
export interface StoredWill {
  topic: string;
  payload: string; // base64
  qos: QoS;
  retain: boolean;
  props: string | null; // encodeProperties, utf8
  delay: number;
  /**
   * Being published (embedded store): written before the will is, so a restart can tell
   * whether it reached the log (SessionRegistry.findWill) and not publish it twice.
   */
  publishing?: WillMark;
}

/** Where in the log a will being published would be found: its publisher's shard, from its end then. */
export interface WillMark {
  shard: number;
  from: number;
}

/** A will, as its session's record keeps it. */
export function encodeWill(msg: Message, delay: number): StoredWill {
  const props = encodeProperties(msg.properties);
  return { topic: msg.topic, payload: msg.payload.toString('base64'), qos: msg.qos, retain: msg.retain, props: props ? props.toString('utf8') : null, delay };
}

/** The will a session's record keeps, as a message from `publisher`. */
export function decodeWill(w: StoredWill, publisher: string): Message {
  return createMessage(w.topic, Buffer.from(w.payload, 'base64'), w.qos, w.retain, decodeProperties(w.props ? Buffer.from(w.props) : null), publisher);
}

/** A retained message's record, as the native retained tree and the embedded store's `retained` table hold it (LAYOUTS.retained). */
export function retainedRecord(msg: Message): Buffer {
  return encodeRetainedRecord(msg.publisher, msg.qos, msg.receivedAt, encodeProperties(msg.properties), msg.payload);
}

/** The message a retained record holds (payload and properties are views into the record's buffer). */
export function retainedMessage(topic: string, r: RetainedRecord): Message {
  return createMessage(topic, r.payload, r.qos, true, r.properties.length > 0 ? decodeProperties(r.properties) : undefined, r.publisher, r.receivedAt);
}

/** The durable part of a session. `disconnectedAt` 0 = connected when written. */
export interface SessionRecord {
  expiry: number;
  disconnectedAt: number;
  will: StoredWill | null;
}

/** A subscription as stored: its options and, per shard, the log offset it starts at. */
export interface StoredSubscription extends SubscriptionOptions {
  start?: readonly number[];
}

/** A session as found in the store at start-up. */
export interface RecoveredSession {
  clientId: string;
  record: SessionRecord;
  subscriptions: { filter: string; opts: StoredSubscription }[];
  progress: Progress | null;
  incomingQos2: number[];
  /**
   * Inbound QoS 2 messages whose record reached the log but whose id was still pending at the
   * stop: what had to be recorded besides the log (pinned shared deliveries) may be missing. The
   * client never had PUBREC and sends the PUBLISH again; it is then routed to shared
   * subscriptions only (Broker.restoreInbound), not stored twice.
   */
  incomingHalf: { id: number; pos: LogPosition }[];
}

export interface SessionRegistry {
  /** Create or replace a session's record; resolves once durable. */
  putSession(clientId: string, record: SessionRecord): Promise<void>;
  /** Remove everything a session left; resolves once durable. */
  deleteSession(clientId: string): Promise<void>;
  putSubscription(clientId: string, filter: string, opts: StoredSubscription): Promise<void>;
  deleteSubscription(clientId: string, filter: string): Promise<void>;
  /** A persistent publisher's QoS 2 message (and what it needs besides) is stored: its id is recorded as such. */
  inboundStored(clientId: string, id: number): Promise<void>;
  /** PUBREL received: the inbound id is released (PUBCOMP waits for it). */
  releaseInbound(clientId: string, id: number): Promise<void>;
  /**
   * A registry with a log (the embedded store): where a will `clientId` is about to publish
   * would be found (its shard's end once the appends already made have completed: the
   * client's own messages are all before it; written into its record before the will is
   * published, StoredWill.publishing), and, after a
   * restart, where it was found if it reached the log (null: it did not). Registries without
   * these clear the record with the will's save (MessageRegistry.turnAtomic) or, without that,
   * once it is stored: a crash in between publishes the will again.
   */
  willMark?(clientId: string): Promise<WillMark>;
  findWill?(clientId: string, mark: WillMark): LogPosition | null;
}

/** A message waiting for a session (smqtt's SessionMessage), as its registry has it. */
export interface SessionMessage {
  msg: Message;
  /** The QoS it is delivered with (the message's, capped by the subscription's). */
  qos: QoS;
  /** Sent and not yet acknowledged; false while it waits in the queue. */
  inflight: boolean;
}

/**
 * One persistent session's delivery of a message being stored (the router's targets): a queue
 * registry writes one queue entry per recipient; the embedded log needs none of it.
 */
export interface Recipient {
  readonly session: { readonly clientId: string };
  /** The QoS it is delivered with (the message's, capped by the subscription's). */
  readonly qos: QoS;
  /** The retain flag it is delivered with (Retain As Published). */
  readonly retain: boolean;
  readonly subIds: number[] | undefined;
}

export interface MessageRegistry {
  /**
   * True when a session record written in the event-loop turn of a save is stored with it, all
   * or none (QueueRegistry.turnAtomic): the router clears a will's record in the turn it saves
   * the will. Otherwise after the save resolved (the embedded store: in the commit of the will's
   * pinned deliveries, which need the save's position).
   */
  readonly turnAtomic?: boolean;
  /**
   * Store a message once for every persistent session that needs it (smqtt's
   * saveSessionMessages, one write for all of them): `to` are those sessions and how each gets it.
   * Resolves with where it is, once durable; saves resolve in the order they were made. Per
   * shard, these promises (and appendInbound's) resolve in offset order and each is the one the
   * caller awaits, not one chained behind another, so their callers' continuations run in that
   * order too: a caught-up session takes the shard's messages in that order.
   */
  saveSessionMessages(msg: Message, to: readonly Recipient[]): Promise<LogPosition>;
  /**
   * Up to `limit` messages waiting for `clientId`, in flight first, then queued oldest first
   * (smqtt's getSessionMessages), as last stored: a connected session's own view may be a few
   * milliseconds ahead. Empty for a session the registry does not have.
   */
  getSessionMessages(clientId: string, limit: number): Promise<SessionMessage[]>;
  /**
   * Append a message only the message log keeps (no persistent session needs it): a promise
   * shared by the messages appended with it. `acknowledged` (msglog sync mode: the publisher's
   * acknowledgement waits for it): resolves once durable, promptly; else (async mode, nothing is
   * acknowledged on it) it may wait a little for more messages and resolves once written
   * (durable shortly after, see README "What is durable").
   */
  logMessage(msg: Message, acknowledged?: boolean): Promise<void>;
  /** Like append, for a persistent publisher's QoS 2 message with its packet id (crash-safe either way). */
  appendInbound(msg: Message, id: number, to: readonly Recipient[]): Promise<LogPosition>;
  /** Fill in `msg` for deliveries that hold only where their message is (null where it is gone). */
  load(entries: Pending[]): void;
  /** Where the next message of each shard will be: a new subscription starts there. */
  shardEnds(): readonly number[];
  /**
   * Each shard's end once the appends already made (their messages routed, their records not yet
   * in the log) are in: null when none is pending. A new subscription raises its start to it, or
   * a replay would give it messages published before it existed.
   */
  endsAfterPending(): Promise<readonly number[]> | null;
}

export interface RetainedRegistry {
  /**
   * Set (or, with an empty payload, clear) a topic's retained message, in publish order; resolves
   * once durable. `packed`: the write as MetaPacker lays it out (RetainedStore.set's), when the
   * caller has it (the embedded store copies it instead of packing again; others ignore it).
   */
  saveRetainMessage(msg: Message, packed?: Buffer | null): Promise<void>;
  /** Stored retained messages whose topic matches `filter` (smqtt's getRetainMessage), topic order. */
  getRetainMessage(filter: string): Promise<Message[]>;
}

/** A persistent session's progress record, written with the store's next commit (session/log-session.ts). */
export interface ProgressSource {
  readonly clientId: string;
  /** False once the session ended or has another durable side: nothing more is written for it. */
  current(): boolean;
  /** The record (embedded/progress.ts layout). */
  encode(): Buffer;
}

/**
 * The embedded store's message log, read by the sessions whose queue it is (session/log-session.ts):
 * a message is stored once and each session keeps how far it has read (EMQX 5 durable sessions).
 */
export interface MessageLog extends MessageRegistry {
  readonly nShards: number;
  readonly log: Logger;
  shardEnd(shard: number): number;
  scan(shard: number, from: number, filters: string[], starts: number[], maxEntries: number, until: number | null): ScanResult;
  replay(shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number): ReplayResult;
  replayAsync(shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number): Promise<ReplayResult>;
  drain(fd: number, shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number, window: number, inflight: Float64Array, nextId: number, report: boolean): DrainControl;
  /** Commit this session's progress record with the current batch; resolves once durable. */
  touch(session: ProgressSource): Promise<void>;
  /** Commit this session's progress record soon (within milliseconds), nobody waiting. */
  mark(session: ProgressSource): void;
}

/** The three registries of one broker. */
export interface Persistence {
  readonly sessions: SessionRegistry;
  readonly messages: MessageRegistry;
  readonly retained: RetainedRegistry;
}
