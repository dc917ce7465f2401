/**
 * The second persistence model (`persistence.registry = redis | sql | <module path>`): persistent
 * sessions' queues kept in an external registry, as smqtt's MessageRegistry and Aedes'
 * persistences keep them. A message persistent sessions need is stored ONCE (its body, under an
 * id the broker gives it); each session it goes to gets a queue entry naming it (with the QoS,
 * retain flag and subscription identifiers of that delivery). A session reads its queue back in
 * id order (getSessionMessages, smqtt's name), records what it has in flight under which packet
 * id (setInflight), and removes what completed (complete); a body no queue names any more is
 * deleted.
 *
 * `QueueRegistry` is the whole contract a registry implements — the Redis one
 * (persistence/redis/), the SQL one (persistence/sql/), or a user's module, loaded from its path
 * and checked here (`checkRegistry`). Everything in it is plain data: no broker type crosses.
 *
 * `QueueStore` adapts a QueueRegistry to the broker's three registries (registries.ts) and is
 * the `QueueSource` persistent sessions read through (session/queue-session.ts):
 * - message ids: increasing in publish order, from the clock (ms × 1024) and above any id the
 *   registry held at start, so a restart never reuses one;
 * - saves resolve in the order they were made, whatever order the registry answers in (a cluster
 *   answers per node), so a session meets arrivals in id order;
 * - a persistent publisher's QoS 2 id is written with its message (one save), never apart;
 * - completions of one event-loop turn go out per session in one call.
 *
 * The guarantee: a save resolves — and the publisher's PUBACK / PUBREC goes out — only once the
 * registry says every part of it is written (Redis: the commands acknowledged; SQL: COMMIT).
 */
import type { Logger } from '../log.js';
import type { LogPosition } from '../native.js';
import type { QoS } from '../wire/codec.js';
import { createMessage, decodeProperties, encodeProperties, type Message } from '../wire/message.js';
import type { MessageRegistry, Persistence, Recipient, RetainedRegistry, SessionMessage, SessionRecord, SessionRegistry, StoredSubscription } from './registries.js';

/** The one pseudo-shard a queue registry has, its end always 0 (shared: never written to). */
const ONE_SHARD: readonly number[] = Object.freeze([0]);

/** A message as a registry stores it: once, for every session it goes to. */
export interface StoredMessage {
  /** Unique and increasing in publish order (given by the broker); 0 for a retained message. */
  id: number;
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  publisher: string;
  /** ms since the epoch. */
  receivedAt: number;
  /** v5 properties (opaque bytes, stored as they are), null when none. */
  properties: Buffer | null;
}

/** A session's delivery of a stored message: one entry of its queue. */
export interface QueueEntry {
  clientId: string;
  msgId: number;
  qos: QoS;
  retain: boolean;
  /** Subscription identifiers (v5), null when none. */
  subIds: number[] | null;
}

/** A queue entry read back, with its message (null when the body is gone) and its state. */
export interface QueuedMessage {
  msgId: number;
  qos: QoS;
  retain: boolean;
  subIds: number[] | null;
  message: StoredMessage | null;
  /** 0 while queued; the packet id it was sent with while in flight. */
  packetId: number;
  /** 0 queued, 1 PUBLISH sent, 2 PUBREL sent (QoS 2, PUBREC received). */
  phase: 0 | 1 | 2;
}

/** A persistent session as the registry holds it at start. */
export interface StoredSession {
  clientId: string;
  record: SessionRecord;
  subscriptions: { filter: string; opts: StoredSubscription }[];
  /** Inbound QoS 2 packet ids awaiting PUBREL. */
  incomingQos2: number[];
  /** Entries in flight (packetId > 0), with their messages. */
  inflight: QueuedMessage[];
  /** Entries queued (not in flight). */
  queued: number;
  /** The highest message id in its queue (0 when empty). */
  lastMsgId: number;
  /** Retained messages sent on subscribe and not completed, by topic (resent after a restart). */
  retainedPins: RetainedPin[];
}

/**
 * A retained message sent to a session on subscribe (QoS 1/2), not completed: by topic, with its
 * packet id once it is in flight. Phase as QueuedMessage's: 0 queued (not sent yet), 1 PUBLISH
 * sent, 2 PUBREL sent (QoS 2, PUBREC received: after a restart only the PUBREL is sent again).
 */
export interface RetainedPin {
  topic: string;
  qos: QoS;
  packetId: number;
  phase: 0 | 1 | 2;
}

/**
 * What an external registry implements. Every method resolves once what it wrote is durable in
 * the registry's own terms (and rejects when it is not: the broker then refuses what depended
 * on it). Calls are made in the order things happened; a registry must apply the writes of one
 * session in the order they were called.
 */
export interface QueueRegistry {
  /**
   * Optional: true when the writes made in one event-loop turn are applied all or none (the SQL
   * registry's one transaction per turn; Redis single server and Sentinel: a record written in
   * a turn with saves goes into their script). The broker then clears a will from its session's
   * record in the turn it saves the will, so a crash can never leave the will stored and still
   * in the record (a restart would publish it again). Without it the record is written once the
   * save resolved: a crash in between publishes the will a second time.
   */
  readonly turnAtomic?: boolean;
  /** Connect and check (tables, scripts); rejects with a clear error when the registry is unusable. */
  open(): Promise<void>;
  close(): Promise<void>;
  /** Every persistent session stored. */
  loadSessions(): Promise<StoredSession[]>;
  putSession(clientId: string, record: SessionRecord): Promise<void>;
  /** Remove everything of a session: record, subscriptions, queue (unreferencing bodies), inbound ids. */
  deleteSession(clientId: string): Promise<void>;
  putSubscription(clientId: string, filter: string, opts: StoredSubscription): Promise<void>;
  deleteSubscription(clientId: string, filter: string): Promise<void>;
  /**
   * Store `msg` once and append an entry to each session's queue in `to` (smqtt's
   * saveSessionMessages); `inbound`: the publisher's QoS 2 packet id, recorded with it.
   */
  saveSessionMessages(msg: StoredMessage, to: QueueEntry[], inbound: { clientId: string; id: number } | null): Promise<void>;
  /** Up to `limit` entries of `clientId`'s queue with msgId > `after`, oldest first (smqtt's getSessionMessages). */
  getSessionMessages(clientId: string, after: number, limit: number): Promise<QueuedMessage[]>;
  /** An entry was sent with `packetId` (phase 1) or its PUBREL was (phase 2). */
  setInflight(clientId: string, msgId: number, packetId: number, phase: 1 | 2): Promise<void>;
  /** Entries ended (acknowledged, dropped, expired): out of the queue; a body no queue names is deleted. */
  complete(clientId: string, msgIds: number[]): Promise<void>;
  /**
   * A retained message was sent to the session on subscribe (QoS 1/2): recorded by topic until it
   * completes (unpinRetained), and again (the same record replaced) once it is in flight with
   * `packetId` (phase 1) and when its PUBREL is (phase 2). After a restart the topic's retained
   * message is sent again: queued (phase 0), resent with DUP under its packet id (1), or only its
   * PUBREL (2).
   */
  pinRetained(clientId: string, topic: string, qos: QoS, packetId: number, phase: 0 | 1 | 2): Promise<void>;
  unpinRetained(clientId: string, topic: string): Promise<void>;
  /** An inbound QoS 2 id stored on its own (its message needed storing for nobody). */
  addInbound(clientId: string, id: number): Promise<void>;
  releaseInbound(clientId: string, id: number): Promise<void>;
  /** Set a topic's retained message, or clear it (empty payload); in call order (smqtt's saveRetainMessage). */
  saveRetainMessage(msg: StoredMessage): Promise<void>;
  /** Retained messages whose topic matches `filter` (smqtt's getRetainMessage). */
  getRetainMessage(filter: string): Promise<StoredMessage[]>;
  /** Every retained message (at start). */
  loadRetained(): Promise<StoredMessage[]>;
}

const METHODS = [
  'open',
  'close',
  'loadSessions',
  'putSession',
  'deleteSession',
  'putSubscription',
  'deleteSubscription',
  'saveSessionMessages',
  'getSessionMessages',
  'setInflight',
  'complete',
  'pinRetained',
  'unpinRetained',
  'addInbound',
  'releaseInbound',
  'saveRetainMessage',
  'getRetainMessage',
  'loadRetained',
] as const satisfies readonly (keyof QueueRegistry)[];

/** A registry that cannot be used: unreachable, refused, or a module that does not implement the contract. */
export class RegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** `value` as a QueueRegistry, or a RegistryError naming every method it lacks. */
export function checkRegistry(value: unknown, what: string): QueueRegistry {
  if (value === null || typeof value !== 'object') throw new RegistryError(`${what}: expected an object implementing QueueRegistry, got ${value === null ? 'null' : typeof value}`);
  const missing = METHODS.filter((m) => typeof (value as Record<string, unknown>)[m] !== 'function');
  if (missing.length > 0) throw new RegistryError(`${what}: not a QueueRegistry, missing method${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
  return value as QueueRegistry;
}

/** A message as a registry stores it. */
export function storedMessage(msg: Message, id: number): StoredMessage {
  return { id, topic: msg.topic, payload: msg.payload, qos: msg.qos, retain: msg.retain, publisher: msg.publisher, receivedAt: msg.receivedAt, properties: encodeProperties(msg.properties) };
}

/** The message a registry stored (its expiry counted from when it was received). */
export function messageOf(m: StoredMessage): Message {
  return createMessage(m.topic, m.payload, m.qos, m.retain, m.properties && m.properties.length > 0 ? decodeProperties(m.properties) : undefined, m.publisher, m.receivedAt);
}

const BODY_VERSION = 1;

/** A message body as stored: version, flags (qos, retain), receivedAt, topic, publisher, properties, payload. */
export function packBody(m: StoredMessage): Buffer {
  const topic = Buffer.from(m.topic, 'utf8');
  const pub = Buffer.from(m.publisher, 'utf8');
  const props = m.properties ?? Buffer.alloc(0);
  const b = Buffer.allocUnsafe(1 + 1 + 8 + 2 + topic.length + 2 + pub.length + 4 + props.length + m.payload.length);
  let at = b.writeUInt8(BODY_VERSION, 0);
  at = b.writeUInt8(m.qos | (m.retain ? 4 : 0), at);
  at = b.writeDoubleLE(m.receivedAt, at);
  at = b.writeUInt16LE(topic.length, at);
  at += topic.copy(b, at);
  at = b.writeUInt16LE(pub.length, at);
  at += pub.copy(b, at);
  at = b.writeUInt32LE(props.length, at);
  at += props.copy(b, at);
  m.payload.copy(b, at);
  return b;
}

export function unpackBody(id: number, b: Buffer): StoredMessage {
  if (b[0] !== BODY_VERSION) throw new RegistryError(`registry: message ${id}: unknown body layout ${b[0]}`);
  const flags = b[1] as number;
  const receivedAt = b.readDoubleLE(2);
  let at = 10;
  const tl = b.readUInt16LE(at);
  at += 2;
  const topic = b.toString('utf8', at, at + tl);
  at += tl;
  const pl = b.readUInt16LE(at);
  at += 2;
  const publisher = b.toString('utf8', at, at + pl);
  at += pl;
  const prl = b.readUInt32LE(at);
  at += 4;
  const properties = prl > 0 ? b.subarray(at, at + prl) : null;
  at += prl;
  return { id, topic, payload: b.subarray(at), qos: (flags & 3) as QoS, retain: (flags & 4) !== 0, publisher, receivedAt, properties };
}

/** What a persistent session on a queue registry reads and writes (session/queue-session.ts). */
export interface QueueSource {
  /** Entries of the session's queue after `after`, oldest first. */
  read(clientId: string, after: number, limit: number): Promise<QueuedMessage[]>;
  /** Record an entry in flight; resolves once durable. */
  inflight(clientId: string, msgId: number, packetId: number, phase: 1 | 2): Promise<void>;
  /** An entry ended: removed within milliseconds (batched per turn), nobody waiting. */
  complete(clientId: string, msgId: number): void;
  /** A retained message sent on subscribe, recorded by topic (with its packet id and phase once in flight); resolves once durable. */
  pinRetained(clientId: string, topic: string, qos: QoS, packetId: number, phase: 0 | 1 | 2): Promise<void>;
  /** It completed: the record goes (nobody waiting). */
  unpinRetained(clientId: string, topic: string): void;
  readonly log: Logger;
}

/**
 * How long close waits for the registry to answer the writes made (a registry that stopped
 * answering): well inside the CLI's 10 s before it forces the exit, so the stop says what it left.
 */
const CLOSE_WAIT_MS = 5_000;

/** The broker's registries over a QueueRegistry (see the module comment). */
export class QueueStore implements Persistence, SessionRegistry, MessageRegistry, RetainedRegistry, QueueSource {
  readonly sessions: SessionRegistry = this;
  readonly messages: MessageRegistry = this;
  readonly retained: RetainedRegistry = this;
  private lastId = 0;
  /** The last save: the next one resolves after it. */
  private order: Promise<unknown> = Promise.resolve();
  /** Inbound QoS 2 ids written with their message (clientId 00 id): inboundStored has nothing to write. */
  private readonly withMessage = new Set<string>();
  /** Completions of this turn, per session. */
  private completions: Map<string, number[]> | null = null;
  /** Writes made and not yet answered; close waits for them (`idle`). */
  private writes = 0;
  private readonly idle: (() => void)[] = [];
  private readonly settled = (): void => {
    if (--this.writes === 0 && this.idle.length > 0) for (const go of this.idle.splice(0)) go();
  };
  /** MessageRegistry.turnAtomic: the registry's (QueueRegistry.turnAtomic). */
  readonly turnAtomic: boolean;

  constructor(
    readonly registry: QueueRegistry,
    /** How the registry is named in errors and logs (`redis`, `sql`, the module's path). */
    readonly name: string,
    readonly log: Logger,
  ) {
    this.turnAtomic = registry.turnAtomic === true;
  }

  /** Message ids go above `id` (the highest a registry held at start). */
  raiseIds(id: number): void {
    if (id > this.lastId) this.lastId = id;
  }

  private nextId(): number {
    const t = Date.now() * 1024;
    this.lastId = t > this.lastId ? t : this.lastId + 1;
    return this.lastId;
  }

  // ---- SessionRegistry -----------------------------------------------------------------

  putSession(clientId: string, record: SessionRecord): Promise<void> {
    return this.track(this.registry.putSession(clientId, record));
  }

  deleteSession(clientId: string): Promise<void> {
    return this.track(this.registry.deleteSession(clientId));
  }

  putSubscription(clientId: string, filter: string, opts: StoredSubscription): Promise<void> {
    return this.track(this.registry.putSubscription(clientId, filter, opts));
  }

  deleteSubscription(clientId: string, filter: string): Promise<void> {
    return this.track(this.registry.deleteSubscription(clientId, filter));
  }

  inboundStored(clientId: string, id: number): Promise<void> {
    if (this.withMessage.delete(`${clientId}\u0000${id}`)) return Promise.resolve();
    return this.track(this.registry.addInbound(clientId, id));
  }

  releaseInbound(clientId: string, id: number): Promise<void> {
    return this.track(this.registry.releaseInbound(clientId, id));
  }

  // ---- MessageRegistry -----------------------------------------------------------------

  saveSessionMessages(msg: Message, to: readonly Recipient[]): Promise<LogPosition> {
    return this.save(msg, to, null);
  }

  appendInbound(msg: Message, id: number, to: readonly Recipient[]): Promise<LogPosition> {
    const key = `${msg.publisher}\u0000${id}`;
    this.withMessage.add(key);
    const saved = this.save(msg, to, { clientId: msg.publisher, id });
    saved.catch(() => this.withMessage.delete(key));
    return saved;
  }

  private save(msg: Message, to: readonly Recipient[], inbound: { clientId: string; id: number } | null): Promise<LogPosition> {
    const id = this.nextId();
    const entries: QueueEntry[] = [];
    for (const r of to) entries.push({ clientId: r.session.clientId, msgId: id, qos: r.qos, retain: r.retain, subIds: r.subIds ?? null });
    const written = this.track(this.registry.saveSessionMessages(storedMessage(msg, id), entries, inbound));
    const before = this.order;
    const inOrder = written.then(
      () => before.then(() => ({ shard: 0, offset: id })),
      (e: unknown) => before.then(() => Promise.reject(e as Error)),
    );
    this.order = inOrder.catch(() => undefined);
    return inOrder;
  }

  /** The message log lives in the embedded store (msglog.topics is refused with another registry at start). */
  logMessage(_msg: Message, _acknowledged?: boolean): Promise<void> {
    return Promise.reject(new Error('the message log needs persistence.registry = embedded'));
  }

  async getSessionMessages(clientId: string, limit: number): Promise<SessionMessage[]> {
    const rows = await this.registry.getSessionMessages(clientId, 0, limit);
    const out: SessionMessage[] = [];
    for (const r of rows) if (r.message) out.push({ msg: messageOf(r.message), qos: r.qos, inflight: r.packetId > 0 });
    // In flight first, then queued; each oldest first (the registry returns id order).
    return [...out.filter((m) => m.inflight), ...out.filter((m) => !m.inflight)];
  }

  /** Deliveries from a registry always carry their message: nothing to fill in. */
  load(): void {}

  /** A queue registry has no log: subscriptions start where they are made (one pseudo-shard). */
  shardEnds(): readonly number[] {
    return ONE_SHARD;
  }

  /** Queue entries name their sessions when saved: a new subscription never meets an earlier message. */
  endsAfterPending(): null {
    return null;
  }

  // ---- RetainedRegistry ----------------------------------------------------------------

  saveRetainMessage(msg: Message): Promise<void> {
    return this.track(this.registry.saveRetainMessage(storedMessage(msg, 0)));
  }

  async getRetainMessage(filter: string): Promise<Message[]> {
    return (await this.registry.getRetainMessage(filter)).map(messageOf).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  }

  // ---- QueueSource ---------------------------------------------------------------------

  pinRetained(clientId: string, topic: string, qos: QoS, packetId: number, phase: 0 | 1 | 2): Promise<void> {
    return this.track(this.registry.pinRetained(clientId, topic, qos, packetId, phase));
  }

  unpinRetained(clientId: string, topic: string): void {
    void this.track(this.registry.unpinRetained(clientId, topic)).catch((e: unknown) => this.log.warn({ clientId, registry: this.name, err: (e as Error).message }, 'registry: completed retained delivery not unrecorded yet'));
  }

  read(clientId: string, after: number, limit: number): Promise<QueuedMessage[]> {
    return this.registry.getSessionMessages(clientId, after, limit);
  }

  inflight(clientId: string, msgId: number, packetId: number, phase: 1 | 2): Promise<void> {
    return this.track(this.registry.setInflight(clientId, msgId, packetId, phase));
  }

  complete(clientId: string, msgId: number): void {
    let c = this.completions;
    if (c === null) {
      c = this.completions = new Map();
      setImmediate(() => this.flushCompletions());
    }
    const ids = c.get(clientId);
    if (ids) ids.push(msgId);
    else c.set(clientId, [msgId]);
  }

  private flushCompletions(): void {
    const c = this.completions;
    this.completions = null;
    if (c === null) return;
    for (const [clientId, ids] of c) {
      // Not written (the registry is away): the entries stay and come again after a restart
      // (QoS 1 delivered again; QoS 2 past PUBREC gets its PUBREL again, not the message).
      void this.track(this.registry.complete(clientId, ids)).catch((e: unknown) => this.log.warn({ clientId, registry: this.name, err: (e as Error).message }, 'registry: completed deliveries not removed yet'));
    }
  }

  /** Every write goes through here: close waits until each is answered. */
  private track<T>(p: Promise<T>): Promise<T> {
    this.writes++;
    void p.then(this.settled, this.settled);
    return p;
  }

  /**
   * Write what is batched, wait until every write made is answered, close the registry. A
   * registry's own queue may hold writes behind others still unanswered (ioredis sends the next
   * auto-pipelined batch only once the previous one is answered): closing it before would drop
   * them — a session whose CONNACK went out lost at a graceful stop (found by the durability
   * checker with the registry's answers 40 ms late, seed 5100003).
   */
  async close(): Promise<void> {
    this.flushCompletions();
    if (this.writes > 0) {
      let timer: NodeJS.Timeout | undefined;
      const answered = await Promise.race([
        new Promise<boolean>((resolve) => this.idle.push(() => resolve(true))),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_WAIT_MS))),
      ]);
      clearTimeout(timer);
      if (!answered) this.log.error({ registry: this.name, unanswered: this.writes }, `registry: ${this.writes} write(s) still unanswered after ${CLOSE_WAIT_MS / 1000} s at close: closing anyway`);
    }
    await this.registry.close();
  }
}
