/**
 * The broker: owns the native trie and retained index, the session store, the listeners and
 * the client registry; routes messages; applies session lifecycle (takeover, clean start,
 * expiry, wills). Protocol handling lives in handlers/, delivery mechanics in session/.
 *
 * Invariants:
 * - `subs[id]` is set exactly while subscription `id` is in the native trie.
 * - a session has at most one live connection (`session.connection`), and the registry
 *   counts a connection as connected from CONNACK until onConnectionClosed.
 */
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import { type Config, type ConfigInput, loadConfig } from './config.js';
import type { Connection } from './protocol/connection.js';
import { type BrokerEvents, type ClientInfo, type Gates, type ListenAddresses, permissiveGates } from './hooks/index.js';
import { createLogger, type Logger } from './log.js';
import { createMessage, type Message } from './wire/message.js';
import { type LogPosition, type LossInfo, TopicTrie, validateTopicName } from './native.js';
import type { QoS } from './wire/codec.js';
import { RC } from './wire/reason-codes.js';
import { MemoryRetainedStore, type RetainedStore } from './routing/retained.js';
import { deliver, deliverLogged, type DeliveryLimits } from './session/delivery.js';
import { DurableSessions, decodeWill, encodeWill, type SessionRecord, type StoredSubscription } from './session/durable.js';
import type { Session, Subscription } from './session/session.js';
import { MemorySessionStore, type SessionStore } from './session/store.js';
import { listenTcp } from './transport/tcp.js';
import { listenTls } from './transport/tls.js';
import { listenWs } from './transport/ws.js';

export interface BrokerOptions {
  /** Dotted config keys (see config.ts / README), applied over file and environment. */
  config?: ConfigInput;
  /** Path of a `key = value` config file. */
  configFile?: string;
  /** Environment to read STRATA_* overrides from (the CLI passes process.env). */
  env?: NodeJS.ProcessEnv;
  /** Shorthands for listener.tcp.port / listener.tcp.host / listener.ws.port (null disables WS). */
  port?: number;
  host?: string;
  wsPort?: number | null;
  dataDir?: string;
  logger?: Logger;
  /** Authentication / authorization gates; each defaults to allow. */
  gates?: Partial<Gates>;
  sessionStore?: SessionStore;
  retainedStore?: RetainedStore;
}

const ROUTE_CACHE_MAX = 65536;

/** A persistent session's delivery of a message that goes through the log. */
interface LoggedTarget {
  session: Session;
  qos: QoS;
  retain: boolean;
  subIds: number[] | undefined;
  /** Through shared subscriptions only: recorded explicitly (Pending.pinned). */
  pinned: boolean;
}

interface SubRecord {
  session: Session;
  sub: Subscription;
  /** A `$share/{group}/{filter}` member. */
  shared: boolean;
}

export interface BrokerMetrics {
  connections: number;
  messagesReceived: number;
  messagesRouted: number;
  messagesDropped: number;
  protocolErrors: number;
  storeErrors: number;
  /** Drains of persistent sessions handed to the native loop (durable_sessions.native_drain). */
  nativeDrains: number;
  /** Stored records found lost (damaged or missing store files), as reported in the log. */
  recordsLost: number;
  /** Event listeners that threw (or rejected), per event name; see Broker.emit. */
  listenerErrors: Record<string, number>;
}

/** A failing event listener is logged at most once per this many ms per event (with the count since). */
const LISTENER_ERROR_LOG_MS = 10_000;

export class Broker extends EventEmitter<BrokerEvents> {
  readonly config: Config;
  readonly log: Logger;
  readonly gates: Gates;
  readonly sessions: SessionStore;
  readonly retained: RetainedStore;
  readonly metrics: BrokerMetrics = { connections: 0, messagesReceived: 0, messagesRouted: 0, messagesDropped: 0, protocolErrors: 0, storeErrors: 0, nativeDrains: 0, recordsLost: 0, listenerErrors: {} };
  /** Every open socket, connected or not (for shutdown). */
  readonly connections = new Set<Connection>();
  private readonly trie = new TopicTrie();
  /**
   * Route cache: topic → matching subscription ids, valid until the next subscription change
   * (cleared then). Not used while any shared subscription exists, since the trie picks a
   * group member round-robin on each match. Bounded: cleared when it reaches ROUTE_CACHE_MAX.
   */
  private readonly routes = new Map<string, Uint32Array>();
  private sharedSubs = 0;
  /** Trie ids of the members of each shared subscription (`$share/{group}/{filter}`). */
  private readonly shareGroups = new Map<string, { ids: number[]; next: number }>();
  /** Topic names already validated ([MQTT-4.7.3-1]); bounded like the route cache. */
  private readonly validTopics = new Set<string>();
  private readonly subs: (SubRecord | undefined)[] = [];
  private readonly freeIds: number[] = [];
  private readonly servers: Server[] = [];
  readonly limits: DeliveryLimits;
  /** The embedded store, once `listen()` has opened it (durable_sessions.enable). */
  durable: DurableSessions | null = null;
  private readonly drops = { dropped: 0 };
  private routeSeq = 0;
  private readonly touched: Session[] = [];
  private readonly stamp = new WeakMap<Session, { seq: number; qos: QoS; retain: boolean; subIds: number[] | undefined; shared: boolean }>();
  /** Scratch lists of one publish: persistent sessions getting it through the log / online at QoS 0. */
  private readonly logged: LoggedTarget[] = [];
  private readonly live0: LoggedTarget[] = [];
  private closing = false;
  /** publish() is routing a message; publishes from hooks meanwhile wait in `nested`. */
  private publishing = false;
  private readonly nested: { msg: Message; from: Connection | null; inboundId: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** Wills being stored (close() waits for them). */
  private readonly willWrites = new Set<Promise<void>>();
  addresses: ListenAddresses = {};
  /** Persistent sessions restored at start-up: how far each had read each shard (see reportLoss). */
  private readonly readFromAtOpen = new Map<string, number[]>();
  /** Per event: when a listener error was last logged, and how many were not logged since. */
  private readonly listenerErrorLog = new Map<string, { at: number; quiet: number }>();

  constructor(opts: BrokerOptions = {}) {
    super();
    const overrides: ConfigInput = { ...opts.config };
    if (opts.port !== undefined) overrides['listener.tcp.port'] = opts.port;
    if (opts.host !== undefined) overrides['listener.tcp.host'] = opts.host;
    if (opts.wsPort !== undefined) overrides['listener.ws.port'] = opts.wsPort === null ? -1 : opts.wsPort;
    if (opts.dataDir !== undefined) overrides['node.data_dir'] = opts.dataDir;
    this.config = loadConfig({ file: opts.configFile, env: opts.env ?? {}, overrides });
    this.log = opts.logger ?? createLogger(this.config['log.level']);
    this.gates = { ...permissiveGates, ...opts.gates };
    this.sessions = opts.sessionStore ?? new MemorySessionStore();
    this.retained = opts.retainedStore ?? new MemoryRetainedStore();
    this.limits = {
      maxQueued: this.config['mqtt.max_queued_messages'],
      maxQueuedBytes: this.config['mqtt.max_queued_bytes'],
      overflow: this.config['mqtt.queue_overflow'] as DeliveryLimits['overflow'],
      queueQos0: this.config['mqtt.queue_qos0'],
      writeHighWatermark: this.config['mqtt.write_high_watermark'],
      batchSize: this.config['durable_sessions.batch_size'],
      storeQos0: this.config['durable_sessions.qos0'],
      nativeDrain: this.config['durable_sessions.native_drain'],
    };
  }

  /**
   * Start every configured listener. Resolves with the bound ports. If one fails (port in
   * use, unreadable certificate), those already bound are closed before the error is thrown.
   */
  async listen(): Promise<ListenAddresses> {
    try {
      if (this.config['durable_sessions.enable'] && !this.durable) await this.openStore();
      await this.bindListeners();
    } catch (e) {
      await Promise.all(this.servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      this.addresses = {};
      await this.durable?.close().catch(() => undefined);
      this.durable = null;
      throw e;
    }
    this.log.info({ ...this.addresses }, 'listening');
    this.emit('listening', this.addresses);
    return this.addresses;
  }

  /**
   * `stratamq ds repair`: what the start-up does to the store — recovery, reconciling the log
   * with the sessions, recording each loss — without listeners; then the store is closed.
   * Returns what was repaired and the losses found.
   */
  async repairStore(): Promise<{ summary: string[]; losses: LossInfo[] }> {
    try {
      const found = await this.openStore();
      await this.close();
      return found;
    } catch (e) {
      await this.durable?.close().catch(() => undefined);
      this.durable = null;
      throw e;
    }
  }

  /**
   * Open the embedded store and bring back retained messages and persistent sessions. Returns
   * what recovery repaired and the losses it found (each also logged).
   */
  private async openStore(): Promise<{ summary: string[]; losses: LossInfo[] }> {
    const c = this.config;
    const fsync = c['durable_storage.fsync'];
    const durable = await DurableSessions.open(
      c['node.data_dir'],
      {
        nShards: c['durable_storage.messages.n_shards'],
        fsync,
        retentionMs: c['durable_sessions.message_retention_period'] * 1000,
        segmentBytes: c['durable_storage.segment_bytes'],
        onCorruption: c['durable_storage.on_corruption'],
      },
      this.log,
    );
    this.durable = durable;
    const t0 = Date.now();
    const retained = durable.loadRetained();
    for (const msg of retained) this.retained.set(msg);
    const sessions = durable.loadSessions();
    const losses = [...durable.takeOpenLosses(), ...durable.reconcile(sessions)];
    const now = Date.now();
    let inflight = 0;
    const restored: [Session, (typeof sessions)[number]][] = [];
    this.log.info({ sessions: sessions.length, retained: retained.length, ms: Date.now() - t0 }, 'restoring persistent sessions');
    let lastLog = Date.now();
    for (const r of sessions) {
      if (Date.now() - lastLog >= 1000) {
        lastLog = Date.now();
        this.log.info({ restored: restored.length, of: sessions.length }, 'restoring persistent sessions');
      }
      const session = this.sessions.create(r.clientId);
      session.expiryInterval = r.record.expiry;
      const ls = durable.attach(session, this.limits, this.drops);
      session.durable = ls;
      for (const { filter, opts } of r.subscriptions) this.subscribe(session, filter, opts);
      if (r.progress) {
        // Deliveries in flight come back under their packet ids (resent with DUP); pinned ones
        // queued; the rest is read from the log from where the session had got to.
        for (const { pending, packetId, phase } of ls.restore(r.progress)) {
          if (pending.retainedTopic !== undefined) {
            // A retained message sent on subscribe: the topic's retained message now, if any.
            const msg = this.retained.get(pending.retainedTopic);
            if (!msg) continue;
            pending.msg = msg;
          }
          if (phase > 0 && packetId > 0 && !session.inflight.has(packetId)) {
            session.inflight.set(packetId, { ...pending, phase: phase === 2 ? 'pubrel' : 'publish' });
            inflight++;
          } else session.enqueue(pending);
        }
      } else {
        // Never recorded progress: it reads from where its subscriptions start (attach set
        // `next` to the log's end).
        for (let s = 0; s < durable.nShards; s++) {
          for (const { opts } of r.subscriptions) ls.next[s] = Math.min(ls.next[s] as number, opts.start?.[s] ?? 0);
        }
      }
      for (const id of r.incomingQos2) session.incomingQos2.add(id);
      for (const { id, pos } of r.incomingHalf) (session.inboundHalf ??= new Map()).set(id, pos);
      restored.push([session, r]);
    }
    for (const [session, r] of restored) {
      // Sessions that were connected when the broker stopped count as disconnected now.
      const since = r.record.disconnectedAt || now;
      if (r.record.will) this.scheduleWill(session, decodeWill(r.record.will, r.clientId), r.record.will.delay - (now - since) / 1000);
      this.startExpiry(session, r.record.expiry - (now - since) / 1000);
    }
    this.log.info({ sessions: sessions.length, inflight, retained: retained.length, ms: Date.now() - t0 }, 'durable state loaded');
    // Files are damaged while the broker is stopped: a loss found later (a damaged segment found
    // as it is read) costs the sessions that had not read that far when it started.
    for (const [session] of restored) {
      const next = (session.durable as { next?: number[] } | null)?.next;
      if (next && session.subscriptions.size > 0) this.readFromAtOpen.set(session.clientId, next.slice());
    }
    for (const loss of losses) this.reportLoss(loss);
    durable.watchLosses((loss) => this.reportLoss(loss));
    return { summary: durable.store.report().summary, losses };
  }

  /**
   * Log a loss of stored data once (the store keeps it, `stratamq ds info` lists it), with the
   * persistent sessions it may cost messages: those that, when the broker started, had not read
   * the shard past it.
   */
  private reportLoss(loss: LossInfo): void {
    if (loss.shard === null) {
      this.log.error({ ...loss }, 'store loss: metadata (sessions, subscriptions, progress and retained messages it held)');
      return;
    }
    const shard = loss.shard;
    const affected: string[] = [];
    for (const [clientId, next] of this.readFromAtOpen) {
      if ((next[shard] ?? 0) < (loss.to ?? Number.POSITIVE_INFINITY)) affected.push(clientId);
    }
    this.metrics.recordsLost += loss.records ?? 0;
    this.log.error({ ...loss, sessions: affected.slice(0, 100), sessionsAffected: affected.length }, 'store loss: records gone');
  }

  private async bindListeners(): Promise<void> {
    const c = this.config;
    const host = c['listener.tcp.host'];
    const tcp = await listenTcp(this, host, c['listener.tcp.port']);
    this.servers.push(tcp.server);
    this.addresses.tcp = tcp.port;
    if (c['listener.ws.port'] >= 0) {
      const ws = await listenWs(this, host, c['listener.ws.port'], c['listener.ws.path'], null);
      this.servers.push(ws.server);
      this.addresses.ws = ws.port;
    }
    const tlsOpts = { certfile: c['listener.tls.certfile'], keyfile: c['listener.tls.keyfile'] };
    if (c['listener.tls.port'] >= 0) {
      const tls = await listenTls(this, host, c['listener.tls.port'], tlsOpts);
      this.servers.push(tls.server);
      this.addresses.tls = tls.port;
    }
    if (c['listener.wss.port'] >= 0) {
      const wss = await listenWs(this, host, c['listener.wss.port'], c['listener.ws.path'], tlsOpts);
      this.servers.push(wss.server);
      this.addresses.wss = wss.port;
    }
  }

  /**
   * Stop listening, tell v5 clients 0x8B Server shutting down, close every socket. Wills of the
   * clients disconnected this way are published (the server closed their connection,
   * [MQTT-3.1.2-8]) and stored before the store is closed; wills waiting out a delay stay in the
   * store and resume after a restart.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const conn of [...this.connections]) conn.disconnect(RC.ServerShuttingDown, 'server shutting down');
    for (const conn of [...this.connections]) conn.socket.destroy();
    await Promise.all(closed);
    await new Promise((resolve) => setImmediate(resolve)); // sockets' 'close' (wills) run first
    for (const session of this.sessions) {
      // Expiry and delayed wills resume from the store after a restart.
      if (session.expiryTimer) clearTimeout(session.expiryTimer);
      if (session.pendingWill?.timer) clearTimeout(session.pendingWill.timer);
    }
    await Promise.all([...this.willWrites]);
    for (const session of this.sessions) session.durable?.save(); // exact counts and progress
    await this.durable?.close();
    this.log.info('closed');
    this.emit('closed');
  }

  get connectedCount(): number {
    return this.metrics.connections;
  }

  // ---- connection lifecycle -------------------------------------------------------------

  /** Called by the listeners for each accepted socket. */
  addConnection(conn: Connection): void {
    if (this.closing) {
      conn.socket.destroy();
      return;
    }
    this.connections.add(conn);
    conn.socket.once('close', () => this.connections.delete(conn));
  }

  /**
   * Bind a connection to its session: take over a live connection with the same client id
   * ([MQTT-3.1.4-3]), discard the old session on Clean Start ([MQTT-3.1.2-4]) or resume it
   * ([MQTT-3.1.2-5]), and cancel a will waiting out its delay ([MQTT-3.1.3-9]). `connackAfter`:
   * CONNACK waits for it (the store writes what CONNACK tells; null: nothing to wait for).
   */
  attachSession(conn: Connection, cleanStart: boolean, expiryInterval: number): { session: Session; sessionPresent: boolean; connackAfter: Promise<unknown> | null } {
    const clientId = conn.clientId;
    let session = this.sessions.get(clientId);
    const old = session?.connection;
    if (old && old !== conn) {
      this.log.info({ clientId }, 'session taken over');
      old.disconnect(RC.SessionTakenOver, 'session taken over');
      session = this.sessions.get(clientId); // the old connection's close may have ended it
    }
    let sessionPresent = false;
    let discarded: Promise<void> | null = null;
    if (session && cleanStart) {
      discarded = this.endSession(session);
      session = undefined;
    }
    let storedExpiry: number | null = null;
    if (session) {
      sessionPresent = true;
      if (session.durable) storedExpiry = session.expiryInterval;
      if (session.expiryTimer) clearTimeout(session.expiryTimer);
      session.expiryTimer = null;
      if (session.pendingWill) {
        if (session.pendingWill.timer) clearTimeout(session.pendingWill.timer);
        session.pendingWill = null;
      }
    } else {
      session = this.sessions.create(clientId);
    }
    session.expiryInterval = expiryInterval;
    session.connection = conn;
    session.durable?.attached();
    conn.session = session;
    this.metrics.connections++;
    const recorded = this.recordSession(session, conn.will ? encodeWill(conn.will.msg, conn.will.delaySeconds) : null, 0);
    // What CONNACK tells must survive a crash from the moment the client hears it: a will must be
    // in the session record; a resumed session's new expiry too (expiry 0: it ends with this
    // connection, even if the broker dies first); and a persistent session Clean Start discarded
    // must be gone from the store (else a crash would bring it back, subscriptions and queue,
    // after CONNACK said the session is new).
    const waitRecord = recorded !== null && (conn.will !== null || (storedExpiry !== null && storedExpiry !== expiryInterval));
    const connackAfter = waitRecord && discarded ? Promise.all([recorded, discarded]) : waitRecord ? recorded : discarded;
    return { session, sessionPresent, connackAfter };
  }

  onConnected(conn: Connection, sessionPresent: boolean): void {
    this.log.debug({ clientId: conn.clientId, v: conn.protocolVersion, sessionPresent }, 'client connected');
    if (this.listenerCount('client.connected') > 0) this.emit('client.connected', conn, sessionPresent);
  }

  /** A connected client's socket closed (any reason). Applies will and session expiry. */
  onConnectionClosed(conn: Connection): void {
    const session = conn.session;
    if (!session || session.connection !== conn) return;
    session.connection = null;
    session.durable?.detached();
    this.metrics.connections--;
    const will = conn.will;
    conn.will = null;
    if (will) {
      if (will.delaySeconds === 0 || session.expiryInterval === 0) this.publishWill(will.msg, conn);
      else this.scheduleWill(session, will.msg, will.delaySeconds);
    }
    if (session.expiryInterval === 0) this.endSession(session);
    else {
      this.recordSession(session, session.pendingWill ? encodeWill(session.pendingWill.msg, will?.delaySeconds ?? 0) : null, Date.now());
      this.startExpiry(session, session.expiryInterval);
    }
    this.log.debug({ clientId: conn.clientId, reason: conn.closeReason }, 'client disconnected');
    if (this.listenerCount('client.disconnected') > 0) this.emit('client.disconnected', conn, conn.closeReason);
  }

  /**
   * Keep the durable record of a persistent session in step: created or refreshed when it
   * (re)connects or disconnects; a session whose expiry became 0 leaves the store. Resolves
   * once the record is durable (null: nothing to record); a failure is reported here.
   */
  private recordSession(session: Session, will: SessionRecord['will'], disconnectedAt: number): Promise<void> | null {
    const durable = this.durable;
    if (!durable) return null;
    if (session.expiryInterval === 0) {
      // A persistent session resumed with expiry 0 is still the session ([MQTT-3.1.2-4]): it
      // drains its queue on this connection and ends when the connection closes (endSession).
      // Its record says expiry 0, so a crash meanwhile ends it at the restart.
      if (!session.durable) return null;
      if (session.connection === null) {
        session.durable = null;
        durable.deleteSession(session.clientId);
        return null;
      }
    }
    session.durable ??= durable.attach(session, this.limits, this.drops);
    const done = durable.putSession(session.clientId, { expiry: session.expiryInterval, disconnectedAt, will });
    done.catch((e: unknown) => this.onStoreError(null, e as Error));
    return done;
  }

  /** [MQTT-3.1.3-9] a will published after its delay, or when the session ends if sooner. */
  private scheduleWill(session: Session, msg: Message, delaySeconds: number): void {
    if (delaySeconds <= 0) {
      this.publishWill(msg, null);
      return;
    }
    const pending = { msg, delaySeconds, timer: null as NodeJS.Timeout | null };
    pending.timer = setTimeout(() => {
      if (session.pendingWill === pending) {
        session.pendingWill = null;
        this.publishWill(pending.msg, null);
        if (session.connection === null) this.recordSession(session, null, Date.now());
      }
    }, delaySeconds * 1000);
    pending.timer.unref();
    session.pendingWill = pending;
  }

  /** End the session after `seconds` (0xFFFFFFFF: never). */
  private startExpiry(session: Session, seconds: number): void {
    if (session.expiryInterval === 0xffffffff) return;
    if (seconds <= 0) {
      this.endSession(session);
      return;
    }
    session.expiryTimer = setTimeout(() => this.endSession(session), seconds * 1000);
    session.expiryTimer.unref();
  }

  /** A storage write failed: logged once per failure, counted; the broker keeps serving. */
  onStoreError(conn: Connection | null, err: Error): void {
    this.metrics.storeErrors++;
    this.log.error({ clientId: conn?.clientId, err: err.message, code: (err as { code?: string }).code }, 'storage write failed');
  }

  /**
   * Remove a session: its subscriptions, its timers; a pending will goes out now. For a persistent
   * session, resolves once it is gone from the store (null: nothing stored).
   */
  endSession(session: Session): Promise<void> | null {
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = null;
    for (const sub of session.subscriptions.values()) this.removeSub(sub);
    session.subscriptions.clear();
    session.queue.clear();
    session.queueBytes = 0;
    session.inflight.clear();
    const will = session.pendingWill;
    session.pendingWill = null;
    if (will) {
      if (will.timer) clearTimeout(will.timer);
      this.publishWill(will.msg, null);
    }
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    if (session.durable && this.durable) {
      session.durable = null;
      return this.durable.deleteSession(session.clientId);
    }
    session.durable = null;
    return null;
  }

  private publishWill(msg: Message, conn: Connection | null): void {
    // Wills are published by the server: authorised like any publish from that client.
    const info: ClientInfo = conn ?? { clientId: msg.publisher, username: undefined, remoteAddress: '', protocolVersion: 4 };
    const fresh = createMessage(msg.topic, msg.payload, msg.qos, msg.retain, msg.properties, msg.publisher);
    const answer = this.gates.authorizePublish(info, fresh);
    const go = (ok: boolean | number): void => {
      if (ok !== true) return;
      const stored = this.publish(fresh, conn);
      if (!stored) return;
      // close() waits for wills being stored as the broker shuts down.
      const done = stored.catch((e: unknown) => this.onStoreError(conn, e as Error));
      this.willWrites.add(done);
      void done.finally(() => this.willWrites.delete(done));
    };
    if (answer instanceof Promise) answer.then(go, () => undefined);
    else go(answer);
  }

  /**
   * Tell the listeners of an event, each on its own: a listener that throws (or returns a
   * rejected Promise) is counted in `metrics.listenerErrors` and logged (at most once per 10 s per
   * event), and neither the other listeners nor the broker's own work — routing, the connection
   * that caused the event — are affected. Events inform; gates decide.
   */
  override emit<K extends keyof BrokerEvents>(event: K, ...args: BrokerEvents[K]): boolean {
    const listeners = this.rawListeners(event) as ((...a: unknown[]) => unknown)[];
    if (listeners.length === 0) return false;
    for (const listener of listeners) {
      try {
        const r = listener.apply(this, args);
        if (r instanceof Promise) r.catch((e: unknown) => this.onListenerError(event, e));
      } catch (e) {
        this.onListenerError(event, e);
      }
    }
    return true;
  }

  private onListenerError(event: string, err: unknown): void {
    const counts = this.metrics.listenerErrors;
    counts[event] = (counts[event] ?? 0) + 1;
    const now = Date.now();
    const last = this.listenerErrorLog.get(event);
    if (last && now - last.at < LISTENER_ERROR_LOG_MS) {
      last.quiet++;
      return;
    }
    this.listenerErrorLog.set(event, { at: now, quiet: 0 });
    this.log.error({ event, err: err instanceof Error ? err.message : String(err), notLogged: last?.quiet ?? 0, total: counts[event] }, 'event listener failed');
  }

  onClientError(conn: Connection, err: Error): void {
    this.metrics.protocolErrors++;
    this.log.warn({ clientId: conn.clientId || undefined, remote: conn.remoteAddress, err: err.message }, 'client error');
    if (this.listenerCount('client.error') > 0) this.emit('client.error', conn.state === 'awaiting-connect' ? null : conn, err);
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
    if (start === undefined && session.durable && this.durable) start = this.durable.shardEnds();
    if (writes && session.durable && this.durable) writes.push(this.durable.putSubscription(session.clientId, filter, { ...opts, start }));
    if (existing) {
      const sub: Subscription = { ...opts, filter, trieId: existing.trieId, start };
      session.subscriptions.set(filter, sub);
      this.subs[sub.trieId] = { session, sub, shared: existing.filter.startsWith('$share/') };
      return true;
    }
    const id = this.freeIds.pop() ?? this.subs.length;
    this.trie.subscribe(filter, id);
    this.routes.clear();
    const shared = filter.startsWith('$share/');
    if (shared) {
      this.sharedSubs++;
      let group = this.shareGroups.get(filter);
      if (!group) this.shareGroups.set(filter, (group = { ids: [], next: 0 }));
      group.ids.push(id);
    }
    const sub: Subscription = { ...opts, filter, trieId: id, start };
    this.subs[id] = { session, sub, shared };
    session.subscriptions.set(filter, sub);
    const conn = session.connection;
    if (conn && this.listenerCount('session.subscribed') > 0) this.emit('session.subscribed', conn, filter, opts.qos);
    return false;
  }

  /** Remove a subscription; for a persistent session the durable removal is pushed onto `writes` (UNSUBACK waits for it). */
  unsubscribe(session: Session, filter: string, writes: Promise<void>[] | null = null): boolean {
    const sub = session.subscriptions.get(filter);
    if (!sub) return false;
    session.subscriptions.delete(filter);
    this.removeSub(sub);
    if (session.durable && this.durable) {
      const removed = this.durable.deleteSubscription(session.clientId, filter);
      removed.catch((e: unknown) => this.onStoreError(null, e as Error));
      writes?.push(removed);
    }
    const conn = session.connection;
    if (conn && this.listenerCount('session.unsubscribed') > 0) this.emit('session.unsubscribed', conn, filter);
    return true;
  }

  private match(topic: string): Uint32Array {
    if (this.sharedSubs > 0) return this.trie.match(topic);
    let ids = this.routes.get(topic);
    if (ids === undefined) {
      ids = this.trie.match(topic);
      if (this.routes.size >= ROUTE_CACHE_MAX) this.routes.clear();
      this.routes.set(topic, ids);
    }
    return ids;
  }

  /** null if `topic` is a valid topic name, else why not. */
  checkTopicName(topic: string): string | null {
    if (this.validTopics.has(topic)) return null;
    const bad = validateTopicName(topic);
    if (bad === null) {
      if (this.validTopics.size >= ROUTE_CACHE_MAX) this.validTopics.clear();
      this.validTopics.add(topic);
    }
    return bad;
  }

  private removeSub(sub: Subscription): void {
    this.routes.clear();
    if (sub.filter.startsWith('$share/')) {
      this.sharedSubs--;
      const group = this.shareGroups.get(sub.filter);
      if (group) {
        const i = group.ids.indexOf(sub.trieId);
        if (i >= 0) group.ids.splice(i, 1);
        if (group.ids.length === 0) this.shareGroups.delete(sub.filter);
      }
    }
    this.trie.unsubscribe(sub.filter, sub.trieId);
    this.subs[sub.trieId] = undefined;
    this.freeIds.push(sub.trieId);
  }

  // ---- routing ----------------------------------------------------------------------------

  /**
   * Accept a message: update the retained store, then deliver to every matching session
   * once, at the highest granted QoS among its matching subscriptions (capped by the
   * message QoS), with all their subscription identifiers ([MQTT-3.3.4-2], [MQTT-3.3.4-3]).
   *
   * In-memory sessions get the message at once. When persistent sessions need it (QoS > 0,
   * or QoS 0 while they are away), it is appended to the log once; the returned Promise
   * resolves when that is durable — the publisher's PUBACK waits for it — and only then is it
   * handed to those sessions (log-session.ts). A persistent session's QoS 0 delivery goes the
   * same way when the message is logged anyway, so replay never repeats it. null when nothing
   * had to be stored.
   */
  publish(msg: Message, from: Connection | null, inboundId = 0): Promise<void> | null {
    if (this.publishing) {
      // Published from a hook while a message is being routed (e.g. in 'message.delivered'):
      // routed right after it, since routing reuses per-broker scratch state.
      return new Promise((resolve, reject) => this.nested.push({ msg, from, inboundId, resolve, reject }));
    }
    this.publishing = true;
    try {
      const stored = this.routeMessage(msg, from, inboundId);
      for (let n = this.nested.shift(); n; n = this.nested.shift()) {
        const { resolve, reject } = n;
        try {
          const p = this.routeMessage(n.msg, n.from, n.inboundId);
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
      this.logged.length = 0;
      this.live0.length = 0;
    }
  }

  /** Route one message (publish without the re-entrancy guard). */
  private routeMessage(msg: Message, from: Connection | null, inboundId: number): Promise<void> | null {
    this.metrics.messagesReceived++;
    if (msg.retain) this.retained.set(msg);
    if (this.listenerCount('message.publish') > 0) this.emit('message.publish', from, msg);
    const ids = this.match(msg.topic);
    const n = ids.length;
    const now = msg.receivedAt;
    const logged = this.logged;
    const live0 = this.live0;
    if (n === 1) {
      let rec = this.subs[ids[0] as number];
      if (rec?.shared && rec.session.connection === null) rec = this.onlineMember(rec);
      if (rec && !(rec.sub.noLocal && msg.publisher === rec.session.clientId)) {
        // [MQTT-3.8.3-3] no-local; [MQTT-3.3.1-12]/[MQTT-3.3.1-13] retain flag kept only with Retain As Published.
        const { session, sub } = rec;
        const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
        this.route(session, msg, qos, sub.retainAsPublished && msg.retain, sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined, rec.shared, now);
      }
    } else if (n > 1) {
      const seq = ++this.routeSeq;
      const touched = this.touched;
      touched.length = 0;
      for (let i = 0; i < n; i++) {
        let rec = this.subs[ids[i] as number];
        if (rec?.shared && rec.session.connection === null) rec = this.onlineMember(rec);
        if (!rec) continue;
        const { session, sub } = rec;
        if (sub.noLocal && msg.publisher === session.clientId) continue;
        const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
        const retain = sub.retainAsPublished && msg.retain;
        let st = this.stamp.get(session);
        if (!st || st.seq !== seq) {
          if (!st) {
            st = { seq, qos, retain, subIds: undefined, shared: rec.shared };
            this.stamp.set(session, st);
          }
          st.seq = seq;
          st.qos = qos;
          st.retain = retain;
          st.shared = rec.shared;
          st.subIds = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
          touched.push(session);
        } else {
          if (qos > st.qos) st.qos = qos;
          st.retain ||= retain;
          st.shared &&= rec.shared;
          if (sub.subscriptionId !== undefined) (st.subIds ??= []).push(sub.subscriptionId);
        }
      }
      for (const session of touched) {
        const st = this.stamp.get(session);
        if (st) this.route(session, msg, st.qos, st.retain, st.subIds, st.shared, now);
      }
      touched.length = 0;
    }
    let targets: LoggedTarget[] | null = null;
    if (logged.length > 0) {
      targets = logged.slice();
      for (const t of live0) targets.push(t);
    } else {
      for (const t of live0) {
        const session = t.session;
        // [MQTT-4.6.0-6] not before this session's earlier messages still on their way through the log.
        if (session.loggedPending > 0) (session.afterLogged ??= []).push(() => deliver(session, msg, t.qos, t.retain, t.subIds, this.limits, this.drops, Date.now()));
        else deliver(session, msg, t.qos, t.retain, t.subIds, this.limits, this.drops, now);
      }
    }
    logged.length = 0;
    live0.length = 0;
    this.syncDrops();
    const durable = this.durable;
    if (!durable || (targets === null && !msg.retain && inboundId === 0)) return null;
    return this.store(durable, msg, targets ?? [], inboundId);
  }

  /** A logged delivery for `session` was handed to it (or failed): what waited behind it goes. */
  private loggedDone(session: Session): void {
    if (--session.loggedPending > 0) return;
    const waiting = session.afterLogged;
    session.afterLogged = null;
    if (waiting) for (const go of waiting) go();
  }

  /**
   * One session's delivery of a message being published. Persistent sessions get it through
   * the log: QoS 1/2 always, QoS 0 while the client is away (durable_sessions.qos0), and an
   * online QoS 0 delivery only if the message is logged for someone anyway (decided by publish).
   */
  private route(session: Session, msg: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, shared: boolean, now: number): void {
    this.metrics.messagesRouted++;
    if (session.durable === null || (shared && qos === 0 && session.connection !== null)) {
      deliver(session, msg, qos, retain, subIds, this.limits, this.drops, now);
      return;
    }
    const t: LoggedTarget = { session, qos, retain, subIds, pinned: shared };
    if (qos > 0) this.logged.push(t);
    else if (session.connection !== null) this.live0.push(t);
    else if (this.limits.storeQos0) this.logged.push(t);
  }

  /**
   * A shared subscription's member whose client is connected, taken round-robin among the
   * group (else `rec`, the trie's pick, which keeps the message for it while it is away).
   */
  private onlineMember(rec: SubRecord): SubRecord {
    const group = this.shareGroups.get(rec.sub.filter);
    if (!group) return rec;
    const n = group.ids.length;
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      const r = this.subs[group.ids[i] as number];
      if (r && r.session.connection !== null) {
        group.next = (i + 1) % n;
        return r;
      }
    }
    return rec;
  }

  /**
   * Append once, then hand the message to the persistent sessions (see publish). `inboundId`: a
   * persistent publisher's QoS 2 packet id, recorded as pending and appended with the message
   * (DurableSessions.appendInbound), then recorded as stored in the same commit as the shared
   * deliveries pinned for it — or, when nothing is appended, on its own; before the PUBREC
   * either way.
   */
  private async store(durable: DurableSessions, msg: Message, targets: LoggedTarget[], inboundId: number): Promise<void> {
    const waits: Promise<void>[] = [];
    // Written as it is routed (before any await), so retained sets and clears land in the order
    // they were published, as in the in-memory retained store.
    if (msg.retain) {
      const retained = durable.write(durable.retainOps(msg));
      retained.catch(() => undefined); // awaited below, unless the append fails first
      waits.push(retained);
    }
    if (targets.length === 0) {
      if (inboundId !== 0) waits.push(durable.inboundStored(msg.publisher, inboundId));
      await Promise.all(waits);
      return;
    }
    for (const t of targets) t.session.loggedPending++;
    let pos: LogPosition;
    try {
      pos = await (inboundId !== 0 ? durable.appendInbound(msg, inboundId) : durable.append(msg));
    } catch (e) {
      for (const t of targets) this.loggedDone(t.session);
      throw e;
    }
    const now = Date.now();
    for (const t of targets) {
      const session = t.session;
      const d = session.durable;
      if (d === null || this.sessions.get(session.clientId) !== session) {
        this.loggedDone(session);
        continue; // ended meanwhile
      }
      if (t.pinned) {
        // Through a shared subscription: replay cannot find it again, so it is recorded for the
        // session before the publisher hears it is stored.
        const p = deliver(session, msg, t.qos, t.retain, t.subIds, this.limits, this.drops, now, pos);
        if (p) waits.push(d.pin(p));
      } else deliverLogged(session, msg, t.qos, t.retain, t.subIds, pos, this.limits, now);
      this.loggedDone(session);
    }
    // Same turn as the pins above, so the same commit: a restart finds the id stored only if they are.
    if (inboundId !== 0) waits.push(durable.inboundStored(msg.publisher, inboundId));
    this.syncDrops();
    if (waits.length > 0) await Promise.all(waits);
  }

  /**
   * A persistent publisher sends again a QoS 2 PUBLISH whose record reached the log before a
   * stop while its id was still pending (DurableSessions.loadSessions): it is not stored twice,
   * but what had to be recorded besides the log — its deliveries through shared subscriptions —
   * may be missing, so it is routed again to the shared subscriptions it matches now, pinned
   * at its log position, and its id recorded as stored in the same commit. Resolves before PUBREC.
   */
  restoreInbound(msg: Message, pos: LogPosition, inboundId: number): Promise<void> {
    const durable = this.durable;
    if (!durable) return Promise.resolve();
    const waits: Promise<void>[] = [];
    const now = Date.now();
    for (const id of this.trie.match(msg.topic)) {
      let rec = this.subs[id];
      if (!rec?.shared) continue;
      if (rec.session.connection === null) rec = this.onlineMember(rec);
      const { session, sub } = rec;
      if (sub.noLocal && msg.publisher === session.clientId) continue;
      const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
      const subIds = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
      const p = deliver(session, msg, qos, sub.retainAsPublished && msg.retain, subIds, this.limits, this.drops, now, session.durable ? pos : undefined);
      if (p && session.durable) waits.push(session.durable.pin(p));
    }
    waits.push(durable.inboundStored(msg.publisher, inboundId));
    this.syncDrops();
    return Promise.all(waits).then(() => undefined);
  }

  private syncDrops(): void {
    this.metrics.messagesDropped = this.drops.dropped;
  }

  /** Send the retained messages matching a new subscription, retain flag set ([MQTT-3.3.1-8]). */
  deliverRetained(session: Session, filter: string, qos: QoS, subId: number | undefined): void {
    const now = Date.now();
    const subIds = subId !== undefined ? [subId] : undefined;
    const durable = session.durable;
    for (const msg of this.retained.match(filter, now)) {
      const q = (qos < msg.qos ? qos : msg.qos) as QoS;
      // A persistent session records QoS 1/2 retained deliveries (by topic) until they complete.
      const p = deliver(session, msg, q, true, subIds, this.limits, this.drops, now, undefined, durable !== null && q > 0 ? msg.topic : undefined);
      if (p?.retainedTopic !== undefined) durable?.pin(p).catch((e: unknown) => this.onStoreError(session.connection, e as Error));
    }
    this.syncDrops();
  }

  /** Publish from the application embedding the broker (like Aedes' broker.publish). */
  publishMessage(topic: string, payload: Buffer | string, opts: { qos?: QoS; retain?: boolean } = {}): void {
    const msg = createMessage(topic, typeof payload === 'string' ? Buffer.from(payload) : payload, opts.qos ?? 0, opts.retain ?? false, undefined, '');
    this.publish(msg, null)?.catch((e: unknown) => this.onStoreError(null, e as Error));
  }
}
