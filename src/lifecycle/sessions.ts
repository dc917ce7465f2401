/**
 * Session lifecycle (SPEC §4.1): binding a connection to its session — takeover by the same
 * client id, Clean Start, resume — wills and Will Delay, session expiry, and keeping a
 * persistent session's record in the store in step.
 *
 * Invariants:
 * - a session has at most one live connection (`session.outlet`), and `connections` counts a
 *   client as connected from CONNACK until `closed`.
 * - what CONNACK tells survives a crash from the moment the client hears it (attach).
 */
import { LongTimer } from '../timers.js';
import type { Logger } from '../log.js';
import type { HookBus } from '../hooks/bus.js';
import { type ClientInfo, clientSnapshot, type Gates } from '../hooks/index.js';
import type { AlsoStored, Router, SharedLeftover } from '../routing/router.js';
import { encodeWill, type SessionRecord, type SessionRegistry } from '../persistence/registries.js';
import type { Outlet } from '../session/outlet.js';
import type { DeliveryEnv, Session, SessionPersistence, WillState } from '../session/session.js';
import type { SessionStore } from '../session/store.js';
import { RC } from '../wire/reason-codes.js';
import { createMessage, type Message } from '../wire/message.js';
import type { LogPosition } from '../native.js';

/** A connected client as the lifecycle sees it: where its session's packets go, its will, why it closed. */
export interface Client extends Outlet {
  session: Session | null;
  /** Will to publish if the connection ends without a normal DISCONNECT. */
  will: Omit<WillState, 'timer'> | null;
  /** Why the connection closed; reported in `client.disconnected`. */
  readonly closeReason: string;
}

/** The store as the lifecycle uses it: the session registry, and a persistent session's durable side. */
export interface LifecycleStore {
  readonly sessions: SessionRegistry;
  durableSide(session: Session): SessionPersistence;
}

export interface LifecycleParts {
  sessions: SessionStore;
  router: Router;
  bus: HookBus;
  gates: Gates;
  log: Logger;
  env: DeliveryEnv;
  counters: { connections: number };
  onStoreError: (clientId: string | undefined, err: Error) => void;
}

export class SessionLifecycle {
  /** Where sessions are stored, once opened (null: in memory only). */
  store: LifecycleStore | null = null;
  /** Wills being stored (the broker's close waits for them). */
  readonly willWrites = new Set<Promise<void>>();
  private readonly p: LifecycleParts;
  /** What a session's expiry timer calls (one function for all of them). */
  private readonly expire = (session: Session): void => void this.end(session);

  constructor(parts: LifecycleParts) {
    this.p = parts;
    parts.env.expire = this.expire;
  }

  /** A new session, in the registry, with the broker's limits and delivery events. */
  create(clientId: string): Session {
    const session = this.p.sessions.create(clientId);
    session.env = this.p.env;
    return session;
  }

  /**
   * Bind a connection to its session: take over a live connection with the same client id
   * ([MQTT-3.1.4-3]), discard the old session on Clean Start ([MQTT-3.1.2-4]) or resume it
   * ([MQTT-3.1.2-5]), and cancel a will waiting out its delay ([MQTT-3.1.3-9]). `connackAfter`:
   * CONNACK waits for it (the store writes what CONNACK tells; null: nothing to wait for).
   */
  attach(conn: Client, cleanStart: boolean, expiryInterval: number): { session: Session; sessionPresent: boolean; connackAfter: Promise<unknown> | null } {
    const { sessions, log } = this.p;
    const clientId = conn.clientId;
    let session = sessions.get(clientId);
    const old = session?.outlet;
    if (old && old !== conn) {
      log.info({ clientId }, 'session taken over');
      old.disconnect(RC.SessionTakenOver, 'session taken over');
      session = sessions.get(clientId); // the old connection's close may have ended it
    }
    let sessionPresent = false;
    let discarded: Promise<void> | null = null;
    if (session && cleanStart) {
      discarded = this.end(session);
      session = undefined;
    }
    let storedExpiry: number | null = null;
    if (session) {
      sessionPresent = true;
      if (session.durable) storedExpiry = session.expiryInterval;
      session.cancelExpiry();
      if (session.pendingWill) {
        session.pendingWill.timer?.clear();
        session.pendingWill = null;
      }
    } else {
      session = this.create(clientId);
    }
    session.expiryInterval = expiryInterval;
    session.outlet = conn;
    // A resumed session's subscriptions meet the ACL as it is now, before anything is delivered.
    if (sessionPresent) this.p.router.enforceAcl(session);
    session.durable?.attached();
    conn.session = session;
    this.p.counters.connections++;
    const recorded = this.record(session, conn.will ? encodeWill(conn.will.msg, conn.will.delaySeconds) : null, 0);
    // What CONNACK tells must survive a crash from the moment the client hears it: a will must be
    // in the session record; a resumed session's new expiry too (expiry 0: it ends with this
    // connection, even if the broker dies first); and a persistent session Clean Start discarded
    // must be gone from the store (else a crash would bring it back, subscriptions and queue,
    // after CONNACK said the session is new).
    const waitRecord = recorded !== null && (conn.will !== null || (storedExpiry !== null && storedExpiry !== expiryInterval));
    const connackAfter = waitRecord && discarded ? Promise.all([recorded, discarded]) : waitRecord ? recorded : discarded;
    return { session, sessionPresent, connackAfter };
  }

  connected(conn: Client, sessionPresent: boolean): void {
    this.p.log.debug({ clientId: conn.clientId, v: conn.protocolVersion, sessionPresent }, 'client connected');
    const bus = this.p.bus;
    if (bus.listenerCount('client.connected') > 0) bus.emit('client.connected', clientSnapshot(conn), sessionPresent);
  }

  /** A connected client's socket closed (any reason). Applies will and session expiry. */
  closed(conn: Client): void {
    const session = conn.session;
    if (!session || session.outlet !== conn) return;
    session.outlet = null;
    session.durable?.detached();
    this.p.counters.connections--;
    const will = conn.will;
    conn.will = null;
    // A persistent session's will due now is published once, across a crash (publishWillOnce).
    const once = will !== null && will.delaySeconds === 0 && session.expiryInterval !== 0 && this.store !== null ? will : null;
    if (will && once === null) {
      if (will.delaySeconds === 0 || session.expiryInterval === 0) this.publishWill(will.msg, conn);
      else this.scheduleWill(session, will.msg, will.delaySeconds);
    }
    if (session.expiryInterval === 0) this.end(session);
    else {
      const now = Date.now();
      // The record keeps a will until it is stored as published (a restart before then publishes it).
      const kept = once !== null ? encodeWill(once.msg, 0) : session.pendingWill ? encodeWill(session.pendingWill.msg, will?.delaySeconds ?? 0) : null;
      this.record(session, kept, now);
      this.startExpiry(session, session.expiryInterval);
      if (once !== null) this.publishWillOnce(session, once.msg, conn, now);
    }
    this.p.log.debug({ clientId: conn.clientId, reason: conn.closeReason }, 'client disconnected');
    const bus = this.p.bus;
    if (bus.listenerCount('client.disconnected') > 0) bus.emit('client.disconnected', clientSnapshot(conn), conn.closeReason);
  }

  /**
   * Keep the durable record of a persistent session in step: created or refreshed when it
   * (re)connects or disconnects; a session whose expiry became 0 leaves the store. Resolves
   * once the record is durable (null: nothing to record); a failure is reported here.
   */
  record(session: Session, will: SessionRecord['will'], disconnectedAt: number): Promise<void> | null {
    const store = this.store;
    if (!store) return null;
    if (session.expiryInterval === 0) {
      // A persistent session resumed with expiry 0 is still the session ([MQTT-3.1.2-4]): it
      // drains its queue on this connection and ends when the connection closes (end).
      // Its record says expiry 0, so a crash meanwhile ends it at the restart.
      if (!session.durable) return null;
      if (session.outlet === null) {
        session.durable = null;
        store.sessions.deleteSession(session.clientId);
        return null;
      }
    }
    session.durable ??= store.durableSide(session);
    const done = store.sessions.putSession(session.clientId, { expiry: session.expiryInterval, disconnectedAt, will });
    done.catch((e: unknown) => this.p.onStoreError(undefined, e as Error));
    return done;
  }

  /**
   * [MQTT-3.1.3-9] a will published after its delay (at once if it is past), or when the session
   * ends if sooner. The session's record keeps the will until the will is stored as published,
   * so a restart before then publishes it, and one after does not publish it again.
   * `disconnectedAt`: when the client went away (the record keeps it; expiry counts from it).
   */
  scheduleWill(session: Session, msg: Message, delaySeconds: number, disconnectedAt = Date.now()): void {
    const publish = (): void => this.publishWillOnce(session, msg, null, disconnectedAt);
    if (delaySeconds <= 0) {
      publish();
      return;
    }
    const pending = { msg, delaySeconds, timer: null as LongTimer | null };
    pending.timer = new LongTimer(() => {
      if (session.pendingWill === pending) {
        session.pendingWill = null;
        publish();
      }
    }, delaySeconds * 1000);
    session.pendingWill = pending;
  }

  /**
   * Publish the will of a persistent session that stays (its record in the store) once, also
   * across a crash. With a log to look in (the embedded store, SessionRegistry.willMark): its
   * record first says the will is being published and where in the log it would be; then it is
   * published, and its record cleared in the commit that stores what the will needs besides the
   * log (its pinned shared deliveries: Router.publish's alsoStored). A restart finds a marked will
   * in the log — then only those are written again (resumeWill) — or publishes it. Without one,
   * the record is cleared with the will's save when the registry's writes of one turn are all or
   * none (MessageRegistry.turnAtomic: SQL, Redis), else once the will is stored: a crash in
   * between then publishes it again.
   */
  private publishWillOnce(session: Session, msg: Message, conn: ClientInfo | null, disconnectedAt: number): void {
    const clear = (): Promise<void> | null => this.clearWill(session, disconnectedAt);
    const registry = this.store?.sessions;
    if (!registry?.willMark) {
      // No log to mark in: cleared with the will's save (or after it); not stored, the record keeps it for the next start.
      this.trackWill(this.publishWill(msg, conn, clear));
      return;
    }
    const mark = registry.willMark(session.clientId).then((at) => {
      // Back (its CONNECT rewrote the record) or ended meanwhile: the will goes out unmarked.
      if (!this.stays(session)) return;
      return this.record(session, { ...encodeWill(msg, 0), publishing: at }, disconnectedAt) ?? undefined;
    });
    // The broker's close waits for it from the start (marking included), not only once publishWill runs.
    this.trackWill(
      mark.then(
        () => this.publishWill(msg, conn, clear),
        () => this.publishWill(msg, conn), // the record could not be marked (reported there): published unmarked, kept in the record
      ),
    );
  }

  /**
   * After a restart: a will recorded as being published was found in the log at `pos` (its
   * record not cleared, so what it needed besides the log was not written either): its shared
   * deliveries are routed again, pinned there, and its record cleared in the same commit.
   */
  resumeWill(session: Session, msg: Message, pos: LogPosition, disconnectedAt: number): void {
    this.p.router.restoreInbound(msg, pos, 0, () => this.clearWill(session, disconnectedAt)).catch((e: unknown) => this.p.onStoreError(session.clientId, e as Error));
  }

  /** The session is still the stored one and away: its record may be written for it. */
  private stays(session: Session): boolean {
    return session.outlet === null && this.p.sessions.get(session.clientId) === session;
  }

  /** A will is stored as published: its session's record no longer keeps it (null: nothing written, it came back or ended). */
  private clearWill(session: Session, disconnectedAt: number): Promise<void> | null {
    return this.stays(session) && session.pendingWill === null ? this.record(session, null, disconnectedAt) : null;
  }

  /** The broker's close waits for `p` (a will being stored, or its record written); its failure is reported where it failed. */
  private trackWill(p: Promise<unknown>): void {
    const done = p.then(
      () => undefined,
      () => undefined,
    );
    this.willWrites.add(done);
    void done.finally(() => this.willWrites.delete(done));
  }

  /** End the session after `seconds` (0xFFFFFFFF: never). */
  startExpiry(session: Session, seconds: number): void {
    if (session.expiryInterval === 0xffffffff) return;
    if (seconds <= 0) {
      this.end(session);
      return;
    }
    session.expireAt(Date.now() + seconds * 1000);
  }

  /** Stop the timers of every session (expiry and delayed wills resume from the store after a restart). */
  stopTimers(): void {
    for (const session of this.p.sessions) {
      session.cancelExpiry();
      session.pendingWill?.timer?.clear();
    }
  }

  /**
   * Remove a session: its subscriptions, its timers; a pending will goes out now. For a persistent
   * session, resolves once it is gone from the store (null: nothing stored).
   */
  end(session: Session): Promise<void> | null {
    session.cancelExpiry();
    const router = this.p.router;
    const left = router.sharedLeftovers(session);
    router.removeAll(session);
    session.queue.clear();
    session.queueBytes = 0;
    session.inflight.clear();
    const will = session.pendingWill;
    session.pendingWill = null;
    if (will) {
      will.timer?.clear();
      this.publishWill(will.msg, null);
    }
    const sessions = this.p.sessions;
    if (sessions.get(session.clientId) === session) sessions.delete(session.clientId);
    if (session.durable && this.store) {
      session.durable = null;
      const deleted = this.store.sessions.deleteSession(session.clientId);
      // In this turn: a persistent member's pin goes in the same commit as this removal, and
      // every member gets the messages once it is durable (Router.handOn).
      if (left !== null) this.handOn(left, session, deleted);
      return deleted;
    }
    session.durable = null;
    if (left !== null) this.handOn(left, session, null);
    return null;
  }

  private handOn(left: SharedLeftover[], session: Session, ending: Promise<void> | null): void {
    const n = this.p.router.handOn(left, session, ending);
    if (n > 0) this.p.log.debug({ clientId: session.clientId, handedOn: n }, 'session ended: the shared-subscription messages it had not acknowledged went to other members');
  }

  /**
   * Publish a will. Resolves once it is stored (at once when nothing had to be stored, or it was
   * not authorised); a storage failure is reported here and the Promise rejects.
   */
  private publishWill(msg: Message, conn: ClientInfo | null, alsoStored: AlsoStored | null = null): Promise<void> {
    // Wills are published by the server: authorised like any publish from that client.
    const info: ClientInfo = conn ?? { clientId: msg.publisher, username: undefined, remoteAddress: '', protocolVersion: 4 };
    const fresh = createMessage(msg.topic, msg.payload, msg.qos, msg.retain, msg.properties, msg.publisher);
    const answer = this.p.gates.authorizePublish(info, fresh);
    const go = (ok: boolean | number): Promise<void> => {
      if (ok !== true) return alsoStored?.() ?? Promise.resolve();
      const stored = this.p.router.publish(fresh, conn, 0, alsoStored);
      if (!stored) return Promise.resolve();
      // close() waits for wills being stored as the broker shuts down.
      this.trackWill(stored.catch((e: unknown) => this.p.onStoreError(conn?.clientId, e as Error)));
      return stored;
    };
    const published = answer instanceof Promise ? answer.then(go) : go(answer);
    published.catch(() => undefined); // callers that do not wait must not leave it unhandled
    return published;
  }
}
