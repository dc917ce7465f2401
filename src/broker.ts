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
import type { Connection } from './connection.js';
import { type BrokerEvents, type ClientInfo, type Gates, type ListenAddresses, permissiveGates } from './hooks/index.js';
import { createLogger, type Logger } from './log.js';
import { createMessage, type Message } from './message.js';
import { TopicTrie } from './native.js';
import type { QoS } from './protocol/codec.js';
import { RC } from './protocol/reason-codes.js';
import { MemoryRetainedStore, type RetainedStore } from './retained.js';
import { deliver, type DeliveryLimits } from './session/delivery.js';
import type { Session, Subscription, SubscriptionOptions } from './session/session.js';
import { MemorySessionStore, type SessionStore } from './session/store.js';
import { listenTcp } from './server/tcp.js';
import { listenTls } from './server/tls.js';
import { listenWs } from './server/ws.js';

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

interface SubRecord {
  session: Session;
  sub: Subscription;
}

export interface BrokerMetrics {
  connections: number;
  messagesReceived: number;
  messagesRouted: number;
  messagesDropped: number;
  protocolErrors: number;
}

export class Broker extends EventEmitter<BrokerEvents> {
  readonly config: Config;
  readonly log: Logger;
  readonly gates: Gates;
  readonly sessions: SessionStore;
  readonly retained: RetainedStore;
  readonly metrics: BrokerMetrics = { connections: 0, messagesReceived: 0, messagesRouted: 0, messagesDropped: 0, protocolErrors: 0 };
  /** Every open socket, connected or not (for shutdown). */
  readonly connections = new Set<Connection>();
  private readonly trie = new TopicTrie();
  private readonly subs: (SubRecord | undefined)[] = [];
  private readonly freeIds: number[] = [];
  private readonly servers: Server[] = [];
  private readonly limits: DeliveryLimits;
  private readonly drops = { dropped: 0 };
  private routeSeq = 0;
  private readonly touched: Session[] = [];
  private readonly stamp = new WeakMap<Session, { seq: number; qos: QoS; retain: boolean; subIds: number[] | undefined }>();
  private closing = false;
  addresses: ListenAddresses = {};

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
      queueQos0: this.config['mqtt.queue_qos0'],
      writeHighWatermark: this.config['mqtt.write_high_watermark'],
    };
  }

  /**
   * Start every configured listener. Resolves with the bound ports. If one fails (port in
   * use, unreadable certificate), those already bound are closed before the error is thrown.
   */
  async listen(): Promise<ListenAddresses> {
    try {
      await this.bindListeners();
    } catch (e) {
      await Promise.all(this.servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      this.addresses = {};
      throw e;
    }
    this.log.info({ ...this.addresses }, 'listening');
    this.emit('listening', this.addresses);
    return this.addresses;
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

  /** Stop listening, tell v5 clients 0x8B Server shutting down, close every socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const conn of [...this.connections]) conn.disconnect(RC.ServerShuttingDown, 'server shutting down');
    for (const session of this.sessions) {
      if (session.expiryTimer) clearTimeout(session.expiryTimer);
      if (session.pendingWill?.timer) clearTimeout(session.pendingWill.timer);
    }
    for (const conn of [...this.connections]) conn.socket.destroy();
    await Promise.all(closed);
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
   * ([MQTT-3.1.2-5]), and cancel a will waiting out its delay ([MQTT-3.1.3-9]).
   */
  attachSession(conn: Connection, cleanStart: boolean, expiryInterval: number): { session: Session; sessionPresent: boolean } {
    const clientId = conn.clientId;
    let session = this.sessions.get(clientId);
    const old = session?.connection;
    if (old && old !== conn) {
      this.log.info({ clientId }, 'session taken over');
      old.disconnect(RC.SessionTakenOver, 'session taken over');
      session = this.sessions.get(clientId); // the old connection's close may have ended it
    }
    let sessionPresent = false;
    if (session && cleanStart) {
      this.endSession(session);
      session = undefined;
    }
    if (session) {
      sessionPresent = true;
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
    conn.session = session;
    this.metrics.connections++;
    return { session, sessionPresent };
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
    this.metrics.connections--;
    const will = conn.will;
    conn.will = null;
    if (will) {
      if (will.delaySeconds === 0 || session.expiryInterval === 0) this.publishWill(will.msg, conn);
      else {
        // [MQTT-3.1.3-9] published after the delay, or when the session ends if sooner.
        const pending = { ...will, timer: null as NodeJS.Timeout | null };
        pending.timer = setTimeout(() => {
          if (session.pendingWill === pending) {
            session.pendingWill = null;
            this.publishWill(pending.msg, null);
          }
        }, will.delaySeconds * 1000);
        pending.timer.unref();
        session.pendingWill = pending;
      }
    }
    if (session.expiryInterval === 0) this.endSession(session);
    else if (session.expiryInterval !== 0xffffffff) {
      session.expiryTimer = setTimeout(() => this.endSession(session), session.expiryInterval * 1000);
      session.expiryTimer.unref();
    }
    this.log.debug({ clientId: conn.clientId, reason: conn.closeReason }, 'client disconnected');
    if (this.listenerCount('client.disconnected') > 0) this.emit('client.disconnected', conn, conn.closeReason);
  }

  /** Remove a session: its subscriptions, its timers; a pending will goes out now. */
  endSession(session: Session): void {
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = null;
    for (const sub of session.subscriptions.values()) this.removeSub(sub);
    session.subscriptions.clear();
    session.queue.clear();
    session.inflight.clear();
    const will = session.pendingWill;
    session.pendingWill = null;
    if (will) {
      if (will.timer) clearTimeout(will.timer);
      this.publishWill(will.msg, null);
    }
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
  }

  private publishWill(msg: Message, conn: Connection | null): void {
    if (this.closing) return;
    // Wills pass the same publish gate as any message.
    const info: ClientInfo = conn ?? { clientId: msg.publisher, username: undefined, remoteAddress: '', protocolVersion: 4 };
    const fresh = createMessage(msg.topic, msg.payload, msg.qos, msg.retain, msg.properties, msg.publisher);
    const answer = this.gates.authorizePublish(info, fresh);
    const go = (ok: boolean | number): void => {
      if (ok === true) this.publish(fresh, conn);
    };
    if (answer instanceof Promise) answer.then(go, () => undefined);
    else go(answer);
  }

  onClientError(conn: Connection, err: Error): void {
    this.metrics.protocolErrors++;
    this.log.warn({ clientId: conn.clientId || undefined, remote: conn.remoteAddress, err: err.message }, 'client error');
    if (this.listenerCount('client.error') > 0) this.emit('client.error', conn.state === 'awaiting-connect' ? null : conn, err);
  }

  // ---- subscriptions --------------------------------------------------------------------

  /** Add or replace a subscription ([MQTT-3.8.4-3]). Returns true if it already existed. */
  subscribe(session: Session, filter: string, opts: SubscriptionOptions): boolean {
    const existing = session.subscriptions.get(filter);
    if (existing) {
      const sub: Subscription = { ...opts, filter, trieId: existing.trieId };
      session.subscriptions.set(filter, sub);
      this.subs[sub.trieId] = { session, sub };
      return true;
    }
    const id = this.freeIds.pop() ?? this.subs.length;
    this.trie.subscribe(filter, id);
    const sub: Subscription = { ...opts, filter, trieId: id };
    this.subs[id] = { session, sub };
    session.subscriptions.set(filter, sub);
    const conn = session.connection;
    if (conn && this.listenerCount('session.subscribed') > 0) this.emit('session.subscribed', conn, filter, opts.qos);
    return false;
  }

  unsubscribe(session: Session, filter: string): boolean {
    const sub = session.subscriptions.get(filter);
    if (!sub) return false;
    session.subscriptions.delete(filter);
    this.removeSub(sub);
    const conn = session.connection;
    if (conn && this.listenerCount('session.unsubscribed') > 0) this.emit('session.unsubscribed', conn, filter);
    return true;
  }

  private removeSub(sub: Subscription): void {
    this.trie.unsubscribe(sub.filter, sub.trieId);
    this.subs[sub.trieId] = undefined;
    this.freeIds.push(sub.trieId);
  }

  // ---- routing ----------------------------------------------------------------------------

  /**
   * Accept a message: update the retained store, then deliver to every matching session
   * once, at the highest granted QoS among its matching subscriptions (capped by the
   * message QoS), with all their subscription identifiers ([MQTT-3.3.4-2], [MQTT-3.3.4-3]).
   */
  publish(msg: Message, from: Connection | null): void {
    this.metrics.messagesReceived++;
    if (msg.retain) this.retained.set(msg);
    if (this.listenerCount('message.publish') > 0) this.emit('message.publish', from, msg);
    const ids = this.trie.match(msg.topic);
    const n = ids.length;
    if (n === 0) return;
    const now = msg.receivedAt;
    if (n === 1) {
      const rec = this.subs[ids[0] as number];
      if (!rec) return;
      const { session, sub } = rec;
      if (sub.noLocal && msg.publisher === session.clientId) return; // [MQTT-3.8.3-3]
      const subIds = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
      // [MQTT-3.3.1-12]/[MQTT-3.3.1-13]: retain flag kept only with Retain As Published.
      this.metrics.messagesRouted++;
      deliver(session, msg, (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS, sub.retainAsPublished && msg.retain, subIds, this.limits, this.drops, now);
      this.syncDrops();
      return;
    }
    const seq = ++this.routeSeq;
    const touched = this.touched;
    touched.length = 0;
    for (let i = 0; i < n; i++) {
      const rec = this.subs[ids[i] as number];
      if (!rec) continue;
      const { session, sub } = rec;
      if (sub.noLocal && msg.publisher === session.clientId) continue;
      const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS;
      const retain = sub.retainAsPublished && msg.retain;
      let st = this.stamp.get(session);
      if (!st || st.seq !== seq) {
        if (!st) {
          st = { seq, qos, retain, subIds: undefined };
          this.stamp.set(session, st);
        }
        st.seq = seq;
        st.qos = qos;
        st.retain = retain;
        st.subIds = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
        touched.push(session);
      } else {
        if (qos > st.qos) st.qos = qos;
        st.retain ||= retain;
        if (sub.subscriptionId !== undefined) (st.subIds ??= []).push(sub.subscriptionId);
      }
    }
    for (const session of touched) {
      const st = this.stamp.get(session);
      if (!st) continue;
      this.metrics.messagesRouted++;
      deliver(session, msg, st.qos, st.retain, st.subIds, this.limits, this.drops, now);
    }
    touched.length = 0;
    this.syncDrops();
  }

  private syncDrops(): void {
    this.metrics.messagesDropped = this.drops.dropped;
  }

  /** Send the retained messages matching a new subscription, retain flag set ([MQTT-3.3.1-8]). */
  deliverRetained(session: Session, filter: string, qos: QoS, subId: number | undefined): void {
    const now = Date.now();
    const subIds = subId !== undefined ? [subId] : undefined;
    for (const msg of this.retained.match(filter, now)) {
      deliver(session, msg, (qos < msg.qos ? qos : msg.qos) as QoS, true, subIds, this.limits, this.drops, now);
    }
    this.syncDrops();
  }

  /** Publish from the application embedding the broker (like Aedes' broker.publish). */
  publishMessage(topic: string, payload: Buffer | string, opts: { qos?: QoS; retain?: boolean } = {}): void {
    const msg = createMessage(topic, typeof payload === 'string' ? Buffer.from(payload) : payload, opts.qos ?? 0, opts.retain ?? false, undefined, '');
    this.publish(msg, null);
  }
}
