/**
 * Routing: subscribe and unsubscribe (with their durable records), and publish → targets.
 *
 * A message goes to every matching session once, at the highest granted QoS among its matching
 * subscriptions (capped by the message QoS), with all their subscription identifiers
 * ([MQTT-3.3.4-2], [MQTT-3.3.4-3]). In-memory sessions get it at once. When persistent sessions
 * need it (QoS > 0, or QoS 0 while they are away) it is appended to the log once; `publish`
 * resolves when that is durable — the publisher's PUBACK waits for it — and only then is it
 * handed to those sessions (session/log-session.ts). A persistent session's QoS 0 delivery goes
 * the same way when the message is logged anyway, so replay never repeats it.
 *
 * The message log (msglog.topics, LogTap) keeps the messages of chosen topics in the same log:
 * a selected message is appended once — with the persistent sessions' deliveries when they need
 * it, else on its own — and its publisher's acknowledgement waits for that append in sync mode
 * (or when persistent sessions need it), not in async mode.
 */
import type { ClientAcl } from '../auth/acl.js';
import { type ClientInfo, clientSnapshot, messageSnapshot } from '../hooks/index.js';
import type { HookBus } from '../hooks/bus.js';
import type { LogPosition } from '../native.js';
import { deliver, deliverLogged, pump, writeRetainedFrames } from '../session/delivery.js';
import type { Persistence, StoredSubscription } from '../persistence/registries.js';
import type { DeliveryStats, DurableRef, Pending, Session } from '../session/session.js';
import type { SessionStore } from '../session/store.js';
import type { QoS } from '../wire/codec.js';
import type { Message } from '../wire/message.js';
import { topicMatches } from '../wire/topic.js';
import type { RetainedStore } from './retained.js';
import { type FeedHost, type FeedRequest, RetainedFeed } from './retained-feed.js';
import type { SubscriptionTable } from './subscriptions.js';

/**
 * What one message brings one session (Router.routeMessage, several matches): its plain and its
 * shared subscriptions' part apart, each with the highest QoS, the retain flag if any keeps it,
 * and the subscription ids. Reused message after message (seq).
 */
interface Stamp {
  seq: number;
  /** The plain subscriptions' part. */
  p: StampPart;
  /** The shared subscriptions' part. */
  s: StampPart;
}

interface StampPart {
  /** Highest QoS; -1: no subscription of this kind matched. */
  q: number;
  retain: boolean;
  subIds: number[] | undefined;
}

/** A persistent session's delivery of a message that goes through the log. */
interface LoggedTarget {
  session: Session;
  qos: QoS;
  retain: boolean;
  subIds: number[] | undefined;
  /** Through shared subscriptions only: recorded explicitly (Pending.pinned). */
  pinned: boolean;
  /** Its place among the session's logged deliveries (Session.loggedOpen), given by persist. */
  ticket: number;
}

/** A message an ending session took through shared subscription `share` and did not acknowledge (Router.sharedLeftovers). */
export interface SharedLeftover {
  share: string;
  msg: Message;
  /** Its log position (a persistent session's delivery). */
  ref: DurableRef | undefined;
}

/**
 * The message log's recording side (msglog/recorder.ts), as routing asks it: whether a message is
 * logged, and what its append's outcome means for the publisher.
 */
export interface LogTap {
  /** Messages to `topic` are logged (msglog.topics). */
  selects(topic: string): boolean;
  /** The publisher's acknowledgement waits for the append (msglog.mode = sync). */
  readonly sync: boolean;
  /**
   * An append of a logged message started (`waited`: the acknowledgement waits for it anyway):
   * its outcome is counted (`append` may be shared by the messages of one batch: each call counts
   * one message). A rejected promise when the publisher is to be refused now although
   * nothing waits for the append (async, ignore_errors = false, the log failing); else null.
   */
  track(append: Promise<unknown>, waited: boolean): Promise<void> | null;
}

/** The counters routing keeps (a part of BrokerMetrics). */
export interface RoutingCounters {
  messagesReceived: number;
  /** messagesReceived by QoS (index 0..2). */
  messagesReceivedByQos: number[];
  messagesRouted: number;
  messagesDropped: number;
}

export interface RouterParts {
  table: SubscriptionTable;
  retained: RetainedStore;
  sessions: SessionStore;
  bus: HookBus;
  counters: RoutingCounters;
  stats: DeliveryStats;
  /** QoS 0 messages for offline persistent sessions go through the store (durable_sessions.qos0). */
  storeQos0: boolean;
  /** A storage write failed (logged and counted by the caller). */
  onStoreError: (clientId: string | undefined, err: Error) => void;
  /** The ACL file's rules per client (auth.acl_file), or null when there is none. */
  access: { forClient(client: ClientInfo): ClientAcl } | null;
  /** The message log's recorder (msglog.topics), null when nothing is logged. */
  logTap: LogTap | null;
}

/**
 * Written with what a published message needs besides the log, in the same metadata commit —
 * or, on a registry whose writes of one turn are all or none (MessageRegistry.turnAtomic), in
 * the turn of the message's save (SessionLifecycle: a will's record cleared once the will is
 * stored); called once, null: nothing.
 */
export type AlsoStored = () => Promise<void> | null;

/** `alsoStored` written now (null: nothing to write), what it returns added to `waits`. */
function writeAlso(alsoStored: AlsoStored | null, waits: Promise<void>[]): void {
  const also = alsoStored?.() ?? null;
  if (also !== null) waits.push(also);
}

export class Router {
  /** Where broker state is stored, once opened (null: in memory only). */
  store: Persistence | null = null;
  private readonly table: SubscriptionTable;
  private readonly retained: RetainedStore;
  private readonly sessions: SessionStore;
  private readonly bus: HookBus;
  private readonly counters: RoutingCounters;
  private readonly stats: DeliveryStats;
  private readonly storeQos0: boolean;
  private readonly onStoreError: RouterParts['onStoreError'];
  private readonly access: RouterParts['access'];
  private readonly logTap: LogTap | null;
  private routeSeq = 0;
  private readonly touched: Session[] = [];
  private readonly stamp = new WeakMap<Session, Stamp>();
  /** Scratch lists of one publish: persistent sessions getting it through the log / online at QoS 0. */
  private readonly logged: LoggedTarget[] = [];
  private readonly live0: LoggedTarget[] = [];
  /** publish() is routing a message; publishes from hooks meanwhile wait in `nested`. */
  private publishing = false;
  private readonly nested: { msg: Message; from: ClientInfo | null; inboundId: number; alsoStored: AlsoStored | null; resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** The broker's own message publishVolatile is routing (null otherwise). */
  private volatileMsg: Message | null = null;

  constructor(parts: RouterParts) {
    this.table = parts.table;
    this.retained = parts.retained;
    this.sessions = parts.sessions;
    this.bus = parts.bus;
    this.counters = parts.counters;
    this.stats = parts.stats;
    this.storeQos0 = parts.storeQos0;
    this.onStoreError = parts.onStoreError;
    this.access = parts.access;
    this.logTap = parts.logTap;
  }

  // ---- subscriptions --------------------------------------------------------------------

  /**
   * Add or replace a subscription ([MQTT-3.8.4-3]). Returns true if it already existed. For a
   * persistent session the durable write is pushed onto `writes` (SUBACK waits for it).
   */
  subscribe(session: Session, filter: string, opts: StoredSubscription, writes: Promise<void>[] | null = null): boolean {
    const existing = session.subscriptions.get(filter);
    // A persistent session's subscription starts at the log's current end: replay never
    // delivers what was logged before it (kept when a subscription is replaced).
    let start = opts.start ?? existing?.start;
    const store = this.store;
    let raised: Promise<void> | null = null;
    if (start === undefined && session.durable && store) {
      start = store.messages.shardEnds(); // shared while no shard moves (memory per filter)
      // Messages routed before this subscription whose records are not in the log yet (the
      // message log's async appends: their publishers were answered already) land above these
      // ends: once they are in, the start goes past them, and is recorded again.
      const after = store.messages.endsAfterPending();
      if (after) {
        const ends = start.slice();
        start = ends;
        raised = after.then((done) => {
          for (let s = 0; s < ends.length; s++) if ((done[s] ?? 0) > (ends[s] as number)) ends[s] = done[s] as number;
          if (session.subscriptions.get(filter)?.start !== ends || session.durable === null) return;
          return store.sessions.putSubscription(session.clientId, filter, { ...opts, start: ends });
        });
      }
    }
    if (writes && session.durable && store) {
      writes.push(store.sessions.putSubscription(session.clientId, filter, { ...opts, start }));
      if (raised) writes.push(raised);
    } else raised?.catch((e: unknown) => this.onStoreError(session.clientId, e as Error));
    const out = session.outlet;
    const readDenied = out && this.access ? this.access.forClient(out).readDenied(filter) : undefined;
    const { existed } = this.table.put(session, filter, { ...opts, start, readDenied });
    if (!existed && out && this.bus.listenerCount('session.subscribed') > 0) this.bus.emit('session.subscribed', clientSnapshot(out), filter, opts.qos);
    return existed;
  }

  /**
   * The topics inside `filter` the ACL keeps from `client` (its deny rules within a granted
   * filter), undefined when none can be: for readers that are not subscriptions of the table
   * (a `$log/` re-consume, msglog/reconsume.ts), which must skip them as a subscription does.
   */
  readDenied(client: ClientInfo, filter: string): ((topic: string) => boolean) | undefined {
    return this.access ? this.access.forClient(client).readDenied(filter) : undefined;
  }

  /** Remove a subscription; for a persistent session the durable removal is pushed onto `writes` (UNSUBACK waits for it). */
  unsubscribe(session: Session, filter: string, writes: Promise<void>[] | null = null): boolean {
    const id = session.subscriptions.id(filter);
    if (id === undefined) return false;
    session.subscriptions.delete(filter);
    this.table.remove(filter, id);
    if (session.durable && this.store) {
      const removed = this.store.sessions.deleteSubscription(session.clientId, filter);
      removed.catch((e: unknown) => this.onStoreError(undefined, e as Error));
      writes?.push(removed);
    }
    const out = session.outlet;
    if (out && this.bus.listenerCount('session.unsubscribed') > 0) this.bus.emit('session.unsubscribed', clientSnapshot(out), filter);
    return true;
  }

  /**
   * The ACL as it stands now, applied to a connected session's subscriptions (at connect, and
   * after the ACL file is reloaded): those it no longer allows are removed, durably, and stop
   * receiving at once; deny rules inside the others are set. Its `$log/` re-consume readers
   * (msglog/reconsume.ts) meet it the same way, by the filter they read: one no longer allowed
   * stops (the client is not told, as for a subscription; its SUBSCRIBE would be refused now),
   * the others skip the topics denied inside it from their next page on. Returns the filters removed.
   */
  enforceAcl(session: Session): string[] {
    const out = session.outlet;
    if (!out || !this.access) return [];
    const acl = this.access.forClient(out);
    const removed: string[] = [];
    for (const sub of [...session.subscriptions.values()]) {
      if (!acl.canSubscribe(sub.filter)) {
        this.unsubscribe(session, sub.filter);
        removed.push(sub.filter);
      } else {
        sub.readDenied = acl.readDenied(sub.filter);
      }
    }
    const readers = session.logReaders;
    if (readers !== null) {
      for (const [filter, reader] of [...readers]) {
        if (!acl.canSubscribe(reader.inner)) {
          reader.stop();
          removed.push(filter);
        } else {
          reader.readDenied = acl.readDenied(reader.inner);
        }
      }
    }
    return removed;
  }

  /**
   * MQTT 5 §4.8.2: "If the Client's Session terminates before the Client reconnects, the Server
   * SHOULD send the Application Message to another Client that is subscribed to the same Shared
   * Subscription." What an ending session took through a shared subscription at QoS 1/2 and did
   * not acknowledge — queued, or sent with no PUBACK / PUBREC back: a session kept in memory, any
   * delivery matching one of its shared filters; a persistent one, its pinned deliveries (read
   * back from the log) — to be handed on by `handOn` once the session's end is settled. Call
   * before removeAll. Before, they ended with the session, acknowledged to their publishers and
   * delivered to no one.
   */
  sharedLeftovers(session: Session): SharedLeftover[] | null {
    const table = this.table;
    let shares: { share: string; filter: string }[] | null = null;
    for (const [share, id] of session.subscriptions.ids()) {
      // `$share/{group}/{filter}`: the filter after the group's name.
      if (table.shared(id)) (shares ??= []).push({ share, filter: share.slice(share.indexOf('/', 7) + 1) });
    }
    if (shares === null) return null;
    const d = session.durable;
    const pending: Pending[] = [];
    for (const e of session.inflight.values()) if (e.phase === 'publish') pending.push(e);
    for (const p of session.queue) pending.push(p);
    const taken = pending.filter((p) => p.qos > 0 && p.retainedTopic === undefined && (d === null || p.pinned === true));
    if (taken.length === 0) return null;
    // A persistent session's deliveries may hold only their log position (it was away, or restarted).
    if (d !== null && taken.some((p) => p.msg === null)) d.load(taken);
    const left: SharedLeftover[] = [];
    for (const p of taken) {
      const msg = p.msg;
      if (msg === null) continue; // gone from the log (retention)
      for (const s of shares) if (topicMatches(s.filter, msg.topic)) left.push({ share: s.share, msg, ref: p.ref });
    }
    return left.length > 0 ? left : null;
  }

  /**
   * Hand what `ended` left (sharedLeftovers) to other members of the groups: to the next member of
   * each whose client is connected (the group's round-robin). One kept in memory gets it live; a
   * persistent one gets it pinned at its log position (as a shared delivery is), which only a
   * message in the log has — one that is not goes to members kept in memory only. With no member
   * to take it, it ends. Returns how many were handed on.
   *
   * `ending`: the persistent ended session's removal from the store, written in this turn (null:
   * nothing stored). Call in that same turn: a persistent member that can (SessionPersistence.adopt)
   * records its pin in the same commit as that removal, and gets the message once it is durable —
   * a crash finds either the ended session holding it or the member, never neither, and never
   * both. Any other member gets it once the removal is durable.
   */
  handOn(left: SharedLeftover[], ended: Session, ending: Promise<void> | null): number {
    const table = this.table;
    let n = 0;
    for (const l of left) {
      const msg = l.msg;
      const other = table.memberOf(l.share, (s) => s !== ended && (l.ref !== undefined || s.durable === null) && this.sessions.get(s.clientId) === s);
      const target = other === undefined ? undefined : table.session(other);
      if (other === undefined || target === undefined || table.readDenied(other)?.(msg.topic) === true) continue;
      const sq = table.qos(other);
      const qos = (sq < msg.qos ? sq : msg.qos) as QoS;
      const retain = table.retainAsPublished(other) && msg.retain;
      const subId = table.subscriptionId(other);
      const subIds = subId !== undefined ? [subId] : undefined;
      const d = target.durable;
      // `recorded`: its pin is durable already (adopt) — a delivery not taken (expired, or
      // dropped as the queue is full) leaves it with the member's next record.
      const give = (recorded: boolean): void => {
        if (this.sessions.get(target.clientId) !== target || target.durable !== d) return; // ended or replaced meanwhile
        if (d === null) this.live(target, msg, qos, retain, subIds, Date.now());
        else {
          const p = deliver(target, msg, qos, retain, subIds, Date.now(), l.ref);
          if (!recorded) {
            if (p) d.pin(p).catch((e: unknown) => this.onStoreError(target.clientId, e as Error));
          } else if (p) p.pinned = true;
          else d.save();
        }
        this.syncDrops();
      };
      if (d?.adopt !== undefined) {
        d.adopt({ msg, qos, retain, subIds, ref: l.ref }).then(
          () => give(true),
          (e: unknown) => this.onStoreError(target.clientId, e as Error),
        );
      } else if (ending === null) give(false);
      else ending.then(() => give(false), () => undefined);
      n++;
    }
    return n;
  }

  /** Every subscription of an ending session out of the table (its durable records go with the session). */
  removeAll(session: Session): void {
    for (const [filter, id] of session.subscriptions.ids()) this.table.remove(filter, id);
    session.subscriptions.clear();
  }

  /** null if `topic` is a valid topic name, else why not. */
  checkTopicName(topic: string): string | null {
    return this.table.checkTopicName(topic);
  }

  // ---- publish --------------------------------------------------------------------------

  /**
   * Accept a message: update the retained store, then deliver it (see the module comment).
   * `inboundId`: a persistent publisher's QoS 2 packet id, stored with the message. Resolves
   * when what had to be stored is durable; null when nothing had to be stored.
   */
  publish(msg: Message, from: ClientInfo | null, inboundId = 0, alsoStored: AlsoStored | null = null): Promise<void> | null {
    if (this.publishing) {
      // Published from a hook while a message is being routed (e.g. in 'message.delivered'):
      // routed right after it, since routing reuses per-router scratch state.
      return new Promise((resolve, reject) => this.nested.push({ msg, from, inboundId, alsoStored, resolve, reject }));
    }
    this.publishing = true;
    try {
      const stored = this.routeMessage(msg, from, inboundId, alsoStored);
      for (let n = this.nested.shift(); n; n = this.nested.shift()) {
        const { resolve, reject } = n;
        try {
          const p = this.routeMessage(n.msg, n.from, n.inboundId, n.alsoStored);
          if (p) p.then(resolve, reject);
          else resolve();
        } catch (e) {
          reject(e);
        }
      }
      return stored;
    } finally {
      this.publishing = false;
      // Scratch state of routing is never carried into the next message, whatever was thrown.
      // Emptied only when not empty: setting an array's length is a call into the runtime.
      if (this.logged.length !== 0) this.logged.length = 0;
      if (this.live0.length !== 0) this.live0.length = 0;
    }
  }

  /**
   * Route a message of the broker's own that is never stored ($SYS, admin/sys.ts): retained in
   * memory only, never appended to the log; persistent sessions get it only while connected.
   */
  publishVolatile(msg: Message): void {
    if (this.publishing) {
      queueMicrotask(() => this.publishVolatile(msg)); // not from inside routing: the flag must cover it alone
      return;
    }
    this.volatileMsg = msg;
    try {
      void this.publish(msg, null);
    } finally {
      this.volatileMsg = null;
    }
    // Not a message received: the counters (and $SYS/broker/messages/received) count clients' and the application's.
    this.counters.messagesReceived--;
    (this.counters.messagesReceivedByQos[msg.qos] as number)--;
  }

  /** Route one message (publish without the re-entrancy guard). */
  private routeMessage(msg: Message, from: ClientInfo | null, inboundId: number, alsoStored: AlsoStored | null): Promise<void> | null {
    this.counters.messagesReceived++;
    (this.counters.messagesReceivedByQos[msg.qos] as number)++;
    // The retained write as packed (a view valid until the next set): the embedded store takes its bytes.
    const packed = msg.retain ? this.retained.set(msg) : null;
    if (this.bus.listenerCount('message.publish') > 0) this.bus.emit('message.publish', from && clientSnapshot(from), messageSnapshot(msg));
    const table = this.table;
    const ids = table.match(msg.topic);
    const n = ids.length;
    const now = msg.receivedAt;
    const logged = this.logged;
    const live0 = this.live0;
    if (n === 1) {
      const id = table.deliversTo(ids[0] as number);
      const session = table.session(id);
      const shared = table.shared(id);
      if (session !== undefined && !(table.noLocal(id) && msg.publisher === session.clientId) && !table.readDenied(id)?.(msg.topic)) {
        // [MQTT-3.8.3-3] no-local; [MQTT-3.3.1-12]/[MQTT-3.3.1-13] retain flag kept only with Retain As Published.
        const sq = table.qos(id);
        const subId = table.subscriptionId(id);
        this.route(session, msg, (sq < msg.qos ? sq : msg.qos) as QoS, table.retainAsPublished(id) && msg.retain, subId !== undefined ? [subId] : undefined, shared, now);
      }
    } else if (n > 1) {
      const seq = ++this.routeSeq;
      const touched = this.touched;
      touched.length = 0;
      for (let i = 0; i < n; i++) {
        const id = table.deliversTo(ids[i] as number);
        const session = table.session(id);
        if (session === undefined) continue;
        const shared = table.shared(id);
        if (table.noLocal(id) && msg.publisher === session.clientId) continue;
        if (table.readDenied(id)?.(msg.topic)) continue; // an ACL deny rule inside the filter
        const sq = table.qos(id);
        const qos = (sq < msg.qos ? sq : msg.qos) as QoS;
        const retain = table.retainAsPublished(id) && msg.retain;
        const subId = table.subscriptionId(id);
        let st = this.stamp.get(session);
        if (!st) {
          st = { seq: 0, p: { q: -1, retain: false, subIds: undefined }, s: { q: -1, retain: false, subIds: undefined } };
          this.stamp.set(session, st);
        }
        if (st.seq !== seq) {
          st.seq = seq;
          st.p.q = -1;
          st.s.q = -1;
          touched.push(session);
        }
        // The shared and the plain subscriptions a session matches are kept apart: on the log a
        // shared delivery is pinned, which replay (plain subscriptions only) could not find again;
        // merged, it would be left to replay at the plain subscriptions' QoS.
        const part = shared ? st.s : st.p;
        if (part.q < 0) {
          part.q = qos;
          part.retain = retain;
          part.subIds = subId !== undefined ? [subId] : undefined;
        } else {
          if (qos > part.q) part.q = qos;
          part.retain ||= retain;
          if (subId !== undefined) (part.subIds ??= []).push(subId);
        }
      }
      for (const session of touched) {
        const st = this.stamp.get(session);
        if (!st) continue;
        const { p, s } = st;
        if (p.q >= 0 && s.q >= 0 && session.durable?.sharedApart === true) {
          // Both kinds, on the log: a copy through each (MQTT 5 §4.8.2: a shared subscription's
          // copy may come besides the plain one's) — the shared one pinned, the plain one through
          // the log, whose replay reads the plain subscriptions only.
          this.route(session, msg, p.q as QoS, p.retain, p.subIds, false, now);
          this.route(session, msg, s.q as QoS, s.retain, s.subIds, true, now);
        } else if (s.q < 0) this.route(session, msg, p.q as QoS, p.retain, p.subIds, false, now);
        else if (p.q < 0) this.route(session, msg, s.q as QoS, s.retain, s.subIds, true, now);
        else {
          // Both kinds, in memory or on a registry's queue: one copy at the higher QoS.
          const subIds = p.subIds === undefined ? s.subIds : s.subIds === undefined ? p.subIds : [...p.subIds, ...s.subIds];
          this.route(session, msg, (p.q > s.q ? p.q : s.q) as QoS, p.retain || s.retain, subIds, false, now);
        }
      }
      touched.length = 0;
    }
    const store = this.store;
    const tap = this.logTap;
    // Kept by the message log (msglog.topics): appended once, with the deliveries below if
    // persistent sessions need it too.
    const logIt = tap !== null && store !== null && msg !== this.volatileMsg && tap.selects(msg.topic);
    let targets: LoggedTarget[] | null = null;
    // A message logged anyway reaches online persistent sessions at QoS 0 through the log too,
    // or a later replay from their progress would find it there again (no repeat).
    if (logged.length > 0 || (logIt && live0.length > 0)) {
      targets = logged.slice();
      for (const t of live0) targets.push(t);
    } else {
      for (const t of live0) {
        const session = t.session;
        // [MQTT-4.6.0-6] not before this session's earlier messages still on their way through the log.
        if (session.loggedOpen !== null && session.loggedOpen.length > 0) (session.afterLogged ??= []).push({ after: session.loggedIssued, go: () => this.liveAfterLogged(session, msg, t.qos, t.retain, t.subIds) });
        else this.live(session, msg, t.qos, t.retain, t.subIds, now);
      }
    }
    if (logged.length !== 0) logged.length = 0;
    if (live0.length !== 0) live0.length = 0;
    this.syncDrops();
    // Back-pressure backends (hooks/bus.ts PublishHold): the acknowledgement waits for them too.
    const held = this.bus.publishHolds.length > 0 && msg !== this.volatileMsg ? this.bus.hold(from, msg) : null;
    let stored: Promise<void> | null = null;
    if (tap !== null && logIt && (targets !== null || tap.sync)) {
      // Appended by persist (for persistent sessions, or in sync mode alone), the acknowledgement
      // waiting for it; in sync mode alone and with nothing else to write, sharing its batch's promise.
      if (targets === null && !msg.retain && inboundId === 0 && alsoStored === null) stored = store.messages.logMessage(msg, true);
      else {
        stored = this.persist(store, msg, targets ?? [], inboundId, packed, true, alsoStored);
        alsoStored = null;
      }
      tap.track(stored, true);
    } else {
      if (store && msg !== this.volatileMsg && !(targets === null && !msg.retain && inboundId === 0)) {
        // Retained for no persistent session (a device's state topic): one metadata write, nothing to wait for around it.
        if (targets === null && inboundId === 0) stored = store.retained.saveRetainMessage(msg, packed);
        else {
          stored = this.persist(store, msg, targets ?? [], inboundId, packed, false, alsoStored);
          alsoStored = null;
        }
      }
      if (tap !== null && logIt) {
        // async: appended in the background, the acknowledgement not waiting (unless the log is failing and errors are not ignored).
        const refused = tap.track(store.messages.logMessage(msg), false);
        if (refused !== null) stored = stored === null ? refused : Promise.all([stored, refused]).then(() => undefined);
      }
    }
    if (alsoStored !== null) {
      // Not appended: nothing to wait for before it (persist calls it in the commit of its pins).
      const also = alsoStored();
      if (also !== null) stored = stored === null ? also : Promise.all([stored, also]).then(() => undefined);
    }
    if (held === null) return stored;
    return stored === null ? held : Promise.all([stored, held]).then(() => undefined);
  }

  /**
   * A live QoS 0 delivery that waited behind the session's logged ones (publish). If one of
   * those was left in the log meanwhile (the session fell behind and reads a backlog now), it
   * goes through the store too, behind them: written at once it would overtake them
   * ([MQTT-4.6.0-6]; the narrow case carried in the notes since the tenth session).
   */
  private liveAfterLogged(session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | undefined): void {
    const store = this.store;
    if (store !== null && session.durable?.replaying === true && session.outlet !== null && this.sessions.get(session.clientId) === session) {
      this.persist(store, msg, [{ session, qos, retain, subIds, pinned: false, ticket: 0 }], 0, null, false).catch((e: unknown) => this.onStoreError(session.clientId, e as Error));
      return;
    }
    this.live(session, msg, qos, retain, subIds, Date.now());
  }

  /**
   * A logged delivery for `session` (its `ticket`) was handed to it (or failed): what waited
   * behind it and the ones before it goes — not behind logged deliveries routed later (a live
   * QoS 0 message waited for every pending one and came after a later message: seed 9300012).
   */
  private loggedDone(session: Session, ticket: number): void {
    const open = session.loggedOpen;
    if (open !== null) {
      const i = open.indexOf(ticket);
      if (i >= 0) open.splice(i, 1);
    }
    const waiting = session.afterLogged;
    if (waiting === null) return;
    // Tickets are issued in increasing order and only taken out: the first open one is the least.
    const first = open !== null && open.length > 0 ? (open[0] as number) : Infinity;
    let n = 0;
    while (n < waiting.length && (waiting[n] as { after: number }).after < first) n++;
    if (n === 0) return;
    const ready = waiting.splice(0, n);
    if (waiting.length === 0) session.afterLogged = null;
    for (const w of ready) w.go();
  }

  /**
   * One session's delivery of a message being published. Persistent sessions get it through
   * the log: QoS 1/2 always, QoS 0 while the client is away (durable_sessions.qos0), and an
   * online QoS 0 delivery only if the message is logged for someone anyway (decided by publish).
   */
  private route(session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, shared: boolean, now: number): void {
    this.counters.messagesRouted++;
    if (session.durable === null || (shared && qos === 0 && session.outlet !== null)) {
      this.live(session, msg, qos, retain, subIds, now);
      return;
    }
    if (msg === this.volatileMsg) {
      if (session.outlet !== null) this.live(session, msg, qos, retain, subIds, now);
      return;
    }
    const t: LoggedTarget = { session, qos, retain, subIds, pinned: shared, ticket: 0 };
    if (qos > 0) this.logged.push(t);
    else if (session.outlet !== null && !session.durable.replaying) this.live0.push(t);
    // Connected but still reading its backlog (offline QoS 0 among it): through the store, behind
    // it — written at once it would overtake it ([MQTT-4.6.0-6], found by the durability checker
    // on a slow SQL registry, seed 5200020).
    else if (this.storeQos0 || session.outlet !== null) this.logged.push(t);
  }

  /**
   * Append once, then hand the message to the persistent sessions (see publish). `inboundId`: a
   * persistent publisher's QoS 2 packet id, recorded as pending and appended with the message
   * (DurableSessions.appendInbound), then recorded as stored in the same commit as the shared
   * deliveries pinned for it — or, when nothing is appended, on its own; before the PUBREC
   * either way. `logged`: the message log keeps it, so it is appended even without targets.
   */
  private async persist(store: Persistence, msg: Message, targets: LoggedTarget[], inboundId: number, packed: Buffer | null, logged: boolean, alsoStored: AlsoStored | null = null): Promise<void> {
    const waits: Promise<void>[] = [];
    // Written as it is routed (before any await), so retained sets and clears land in the order
    // they were published, as in the in-memory retained store.
    if (msg.retain) {
      const retained = store.retained.saveRetainMessage(msg, packed);
      retained.catch(() => undefined); // awaited below, unless the append fails first
      waits.push(retained);
    }
    if (targets.length === 0 && !logged) {
      if (inboundId !== 0) waits.push(store.sessions.inboundStored(msg.publisher, inboundId));
      writeAlso(alsoStored, waits);
      await Promise.all(waits);
      return;
    }
    for (const t of targets) {
      const s = t.session;
      t.ticket = ++s.loggedIssued;
      (s.loggedOpen ??= []).push(t.ticket);
    }
    let pos: LogPosition;
    try {
      const saved = inboundId !== 0 ? store.messages.appendInbound(msg, inboundId, targets) : store.messages.saveSessionMessages(msg, targets);
      if (alsoStored !== null && store.messages.turnAtomic === true) {
        // A registry whose writes of one turn are all or none: written with the save (a queue
        // registry has no pins to wait for: its queue entries are the save).
        writeAlso(alsoStored, waits);
        alsoStored = null;
      }
      pos = await saved;
    } catch (e) {
      for (const t of targets) this.loggedDone(t.session, t.ticket);
      throw e;
    }
    const now = Date.now();
    for (const t of targets) {
      const session = t.session;
      const d = session.durable;
      if (d === null || this.sessions.get(session.clientId) !== session) {
        this.loggedDone(session, t.ticket);
        continue; // ended meanwhile
      }
      if (t.pinned) {
        // Through a shared subscription: replay cannot find it again, so it is recorded for the
        // session before the publisher hears it is stored.
        const p = deliver(session, msg, t.qos, t.retain, t.subIds, now, pos);
        if (p) waits.push(d.pin(p));
      } else deliverLogged(session, msg, t.qos, t.retain, t.subIds, pos, now);
      this.loggedDone(session, t.ticket);
    }
    // Same turn as the pins above, so the same commit: a restart finds the id stored (or the
    // will's record cleared, alsoStored) only if they are.
    if (inboundId !== 0) waits.push(store.sessions.inboundStored(msg.publisher, inboundId));
    writeAlso(alsoStored, waits);
    this.syncDrops();
    if (waits.length > 0) await Promise.all(waits);
  }

  /**
   * A persistent publisher sends again a QoS 2 PUBLISH whose record reached the log before a
   * stop while its id was still pending (DurableSessions.loadSessions): it is not stored twice,
   * but what had to be recorded besides the log — its deliveries through shared subscriptions —
   * may be missing, so it is routed again to the shared subscriptions it matches now, pinned
   * at its log position, and its id recorded as stored in the same commit. Resolves before PUBREC.
   * The same for a will found in the log after a restart (SessionLifecycle.resumeWill), with
   * `inboundId` 0 and `alsoStored` clearing its session's record in that commit.
   */
  restoreInbound(msg: Message, pos: LogPosition, inboundId: number, alsoStored: AlsoStored | null = null): Promise<void> {
    const store = this.store;
    if (!store) return Promise.resolve();
    const waits: Promise<void>[] = [];
    const now = Date.now();
    // A copy: a delivery's hooks may publish, and match again, while it is read.
    const table = this.table;
    for (const matched of table.match(msg.topic).slice()) {
      if (!table.shared(matched)) continue;
      const id = table.deliversTo(matched);
      const session = table.session(id);
      if (session === undefined) continue;
      if (table.noLocal(id) && msg.publisher === session.clientId) continue;
      const sq = table.qos(id);
      const qos = (sq < msg.qos ? sq : msg.qos) as QoS;
      const subId = table.subscriptionId(id);
      const subIds = subId !== undefined ? [subId] : undefined;
      const p = deliver(session, msg, qos, table.retainAsPublished(id) && msg.retain, subIds, now, session.durable ? pos : undefined);
      if (p && session.durable) waits.push(session.durable.pin(p));
    }
    if (inboundId !== 0) waits.push(store.sessions.inboundStored(msg.publisher, inboundId));
    writeAlso(alsoStored, waits);
    this.syncDrops();
    return Promise.all(waits).then(() => undefined);
  }

  /** A delivery of a message as it is published: now, or behind the session's retained feed. */
  private live(session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, now: number): void {
    const feed = session.feed;
    if (feed === null) {
      deliver(session, msg, qos, retain, subIds, now);
      return;
    }
    const held = feed.hold(() => deliver(session, msg, qos, retain, subIds, Date.now()), qos, msg.payload.length);
    if (held === 'held') return;
    // Beyond what a slow consumer's socket or a session queue may hold: dropped as those are.
    session.dropped++;
    session.env.stats.dropped++;
    if (held === 'slow') session.env.stats.dropReasons.slowConsumer++;
    else session.env.stats.dropReasons.queueFull++;
  }

  /**
   * Send the retained messages matching a new subscription, retain flag set ([MQTT-3.3.1-8]):
   * in pages, as the client keeps up, before anything published after it (retained-feed.ts).
   */
  deliverRetained(session: Session, filter: string, qos: QoS, subId: number | undefined): void {
    const req: FeedRequest = { filter, qos, subId };
    if (session.feed instanceof RetainedFeed) {
      session.feed.add(req); // after the subscriptions already feeding
      return;
    }
    const feed = new RetainedFeed(this.feedHost, session);
    feed.add(req);
    session.feed = feed;
    feed.run();
  }

  private readonly feedHost: FeedHost = {
    alive: (session) => this.sessions.get(session.clientId) === session,
    cursor: (filter) => this.retained.cursor(filter),
    send: (session, cursor, req, max, now) => {
      const denied = session.subscriptions.get(req.filter)?.readDenied;
      const subIds = req.subId !== undefined ? [req.subId] : undefined;
      const one = (msg: Message): void => {
        if (!denied?.(msg.topic)) this.sendRetained(session, msg, (req.qos < msg.qos ? req.qos : msg.qos) as QoS, subIds, now);
      };
      const conn = session.outlet;
      // A plain connected client: the page's QoS 0 deliveries framed by the core, as one buffer.
      if (conn !== null && req.subId === undefined && denied === undefined && conn.outAliases === null && session.env.delivered === null) {
        const page = cursor.frames(max, req.qos, conn.protocolVersion, conn.clientMaxPacketSize, now);
        writeRetainedFrames(session, conn, page, one);
        return page.taken;
      }
      const msgs = cursor.next(max, now);
      for (const msg of msgs) one(msg);
      return msgs.length;
    },
    ended: (session, completed) => {
      const feed = session.feed as RetainedFeed | null;
      session.feed = null;
      if (feed !== null) {
        const held = feed.takeHeld();
        if (completed) for (const go of held) go();
      }
      this.syncDrops();
      const conn = session.outlet;
      // A persistent session left what was logged meanwhile in the log: it reads it now.
      if (completed && conn !== null && session.durable !== null) pump(conn, session);
    },
  };

  /**
   * One message from outside the broker's stores (a backend: on_retain_lookup, offline fetch) to
   * a session's subscription `filter`. Retained: delivered as deliverRetained delivers the
   * store's (a persistent session pins it by topic). Not retained: a plain delivery the session
   * does not record (the backend keeps the message until it is acknowledged there); behind the
   * session's retained feed, if one runs, as a live delivery waits.
   */
  deliverExternal(session: Session, filter: string, msg: Message, retain: boolean): boolean {
    const sub = session.subscriptions.get(filter);
    if (!sub || sub.readDenied?.(msg.topic)) return false;
    const q = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
    const subIds = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
    // Behind a feed a delivery may be refused (too many waiting): then it is not sent.
    const behindFeed = !retain && session.feed !== null;
    const before = session.dropped;
    if (retain) this.sendRetained(session, msg, q, subIds, Date.now());
    else this.live(session, msg, q, false, subIds, Date.now());
    this.syncDrops();
    return !behindFeed || session.dropped === before;
  }

  /** A retained message to `session` (retain set): a persistent session records a QoS 1/2 one by topic until it completes. */
  private sendRetained(session: Session, msg: Message, qos: QoS, subIds: number[] | undefined, now: number): void {
    const durable = session.durable;
    const p = deliver(session, msg, qos, true, subIds, now, undefined, durable !== null && qos > 0 ? msg.topic : undefined);
    if (p?.retainedTopic !== undefined) durable?.pin(p).catch((e: unknown) => this.onStoreError(session.clientId, e as Error));
  }

  private syncDrops(): void {
    this.counters.messagesDropped = this.stats.dropped;
  }
}
