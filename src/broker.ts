/**
 * The composition root: builds the parts of the house and wires them — configuration, the hook
 * bus (the broker is the bus), the subscription table and router, the session lifecycle, the
 * embedded store (restored at start), and the listeners. It holds no protocol, routing or
 * lifecycle logic of its own; see docs/architecture.md for the house and its arrows.
 */
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { AccessControl } from './auth/access.js';
import type { BrokerOptions } from './broker-options.js';
import type { BrokerMetrics } from './hooks/metrics.js';
import { type Authenticator, createAuthenticator } from './auth/authenticator.js';
import { type Admin, startAdmin } from './admin/index.js';
import { type BackendHost, Backends } from './backends/index.js';
import { type Config, type ConfigInput, loadConfig } from './config.js';
import { type ConsumerCounters, HookBus } from './hooks/bus.js';
import { clientSnapshot, type Gates, type ListenAddresses, noRefusals, permissiveGates, type Refusals } from './hooks/index.js';
import { reloadSecurity } from './lifecycle/reload.js';
import { restore, restoreRegistry } from './lifecycle/restore.js';
import { SessionLifecycle } from './lifecycle/sessions.js';
import { createLogger, type Logger } from './log.js';
import { msglogConfig, type MsglogConfig } from './msglog/config.js';
import { LogRecorder } from './msglog/recorder.js';
import { Replays, type Republisher } from './msglog/replay.js';
import { assertCoreVersion, type DurableStore, type LossInfo, releaseFreeMemory } from './native.js';
import { createConnection } from './protocol/accept.js';
import { ConnectRate } from './protocol/rate.js';
import { Connection, type SocketHandoff } from './protocol/connection.js';
import { proxySubscribe } from './protocol/handlers/subscribe.js';
import type { ProtocolContext } from './protocol/context.js';
import { NativeRetainedStore, type RetainedStore } from './routing/retained.js';
import { Router } from './routing/router.js';
import { SubscriptionTable } from './routing/subscriptions.js';
import type { DeliveryCounts } from './persistence/embedded/delivery-counts.js';
import type { DurableSessions } from './persistence/embedded/durable-sessions.js';
import { openRegistry } from './persistence/open.js';
import type { QueueStore } from './persistence/queue-registry.js';
import type { Persistence } from './persistence/registries.js';
import { Inflow } from './session/inflow.js';
import { logSession } from './session/log-session.js';
import { QueueSession } from './session/queue-session.js';
import { type DeliveryEnv, type DeliveryLimits, deliveryLimits, type DeliveryStats } from './session/session.js';
import { MemorySessionStore, type SessionStore } from './session/store.js';
import { listenTcp } from './transport/tcp.js';
import { startIdleGc } from './idle-gc.js';
import type { QoS } from './wire/codec.js';
import { createMessage, decodeProperties } from './wire/message.js';
import { RC } from './wire/reason-codes.js';

export class Broker extends HookBus implements ProtocolContext {
  readonly config: Config;
  readonly inflow: Inflow | null;
  readonly log: Logger;
  readonly gates: Gates;
  readonly authenticator: Authenticator;
  /** The ACL file's rules (auth.acl_file), null without one. */
  readonly access: AccessControl | null;
  readonly sessions: SessionStore;
  readonly retained: RetainedStore;
  readonly metrics: BrokerMetrics;
  readonly limits: DeliveryLimits;
  /** What every session's deliveries report to (limits, listeners, the message log's counts). */
  private readonly env: DeliveryEnv;
  readonly router: Router;
  readonly lifecycle: SessionLifecycle;
  /** Every open socket, connected or not (for shutdown). */
  readonly connections = new Set<Connection>();
  addresses: ListenAddresses = {};
  /** The embedded store, once `listen()` has opened it (durable_sessions.enable, persistence.registry = embedded). */
  durable: DurableSessions | null = null;
  /** An external registry (persistence.registry = redis or a module), once `listen()` has opened it. */
  registry: QueueStore | null = null;
  readonly connectRate: ConnectRate | null;
  /** The message log's configuration (msglog.*). */
  readonly msglog: MsglogConfig;
  /** Replays of the message log started through the admin API. */
  readonly replays = new Replays();
  /** Backend rules and pools (`backend.*`: Redis, PostgreSQL, MySQL), started by listen(). */
  readonly backends: Backends;
  private readonly stats: DeliveryStats = { dropped: 0, dropReasons: { queueFull: 0, slowConsumer: 0, tooLarge: 0 }, nativeDrains: 0, fastDrained: 0, sent: [0, 0, 0], nativeSent: 0 };
  private admin: Admin | null = null;
  /** Stops the idle collection (node.idle_gc); null when off. */
  private stopIdleGc: (() => void) | null = null;
  private readonly servers: Server[] = [];
  private closing = false;

  constructor(opts: BrokerOptions = {}) {
    super();
    // A native core of another version may lay out what crosses the binding differently.
    assertCoreVersion();
    const overrides: ConfigInput = { ...opts.config };
    if (opts.port !== undefined) overrides['listener.tcp.port'] = opts.port;
    if (opts.host !== undefined) overrides['listener.tcp.host'] = opts.host;
    if (opts.wsPort !== undefined) overrides['listener.ws.port'] = opts.wsPort === null ? -1 : opts.wsPort;
    if (opts.dataDir !== undefined) overrides['node.data_dir'] = opts.dataDir;
    const c = (this.config = loadConfig({ file: opts.configFile, env: opts.env ?? {}, overrides }));
    this.log = this.busLog = opts.logger ?? createLogger(c['log.level'], c['log.format']);
    this.authenticator = createAuthenticator(c, this.log);
    const refused = noRefusals();
    this.access = c['auth.acl_file'] ? new AccessControl(c['auth.acl_file'], refused) : null;
    const appGates = { ...permissiveGates, ...opts.gates };
    this.gates = this.access ? this.access.gates(appGates) : appGates;
    this.sessions = opts.sessionStore ?? new MemorySessionStore();
    this.retained = opts.retainedStore ?? new NativeRetainedStore();
    const stats = this.stats;
    const inflow = (this.inflow = c['mqtt.fair_inflow'] ? new Inflow() : null);
    // Getters in the literal (not defineProperty after): the object keeps its fast shape, and
    // routing increments its counters once per delivery.
    this.metrics = { connections: 0, messagesReceived: 0, messagesRouted: 0, messagesDropped: 0, protocolErrors: 0, storeErrors: 0, get nativeDrains() { return stats.nativeDrains; }, get fastDrained() { return stats.fastDrained; }, get inflowHolds() { return inflow?.holds ?? 0; }, recordsLost: 0, dropReasons: stats.dropReasons, refused, bytesReceived: 0, bytesSent: 0, messagesReceivedByQos: [0, 0, 0], get messagesSentByQos() { return stats.sent; }, get nativeSent() { return stats.nativeSent; }, listenerErrors: this.listenerErrors, consumers: this.consumers, backendPools: {}, backendRules: {}, msglog: { logged: 0, failed: 0, refused: 0, sqlRows: 0, sqlFailed: 0 } };
    this.limits = deliveryLimits(c);
    this.connectRate = c['limits.connect_rate'] > 0 ? new ConnectRate(c['limits.connect_rate']) : null;
    const env: DeliveryEnv = (this.env = { limits: this.limits, stats, expire: null, delivered: null, acked: null, counts: null, inflow: this.inflow });
    this.tapInto(env);
    const onStoreError = (clientId: string | undefined, err: Error): void => this.onStoreError(clientId, err);
    const table = new SubscriptionTable();
    this.msglog = msglogConfig(c); // checks the msglog.* keys: a bad filter stops here
    const logTap = this.msglog.filters.length > 0 ? new LogRecorder(this.msglog, this.metrics.msglog, this.log) : null;
    this.router = new Router({ table, retained: this.retained, sessions: this.sessions, bus: this, counters: this.metrics, stats, storeQos0: this.limits.storeQos0, onStoreError, access: this.access, logTap });
    this.lifecycle = new SessionLifecycle({ sessions: this.sessions, router: this.router, bus: this, gates: this.gates, log: this.log, env, counters: this.metrics, onStoreError });
    this.backends = new Backends(c, this, this.log, this.metrics); // checks the backend.* keys: a bad rule stops here
  }

  /** What backend rules ask of the broker: proxy subscriptions, retained messages found in a database. */
  private backendHost(): BackendHost {
    return {
      subscribe: (clientId, filter, qos) => {
        const conn = this.sessions.get(clientId)?.outlet;
        return conn instanceof Connection ? proxySubscribe(conn, filter, qos) : Promise.resolve(-1);
      },
      deliverRetained: (clientId, filter, m) => {
        const session = this.sessions.get(clientId);
        if (!session?.outlet || this.retained.get(m.topic)) return false;
        return this.router.deliverExternal(session, filter, createMessage(m.topic, m.payload, m.qos, true, undefined, m.publisher, m.receivedAt), true);
      },
      logStore: () => this.logStore(),
      logCounts: () => this.logCounts(),
      deliverStored: (clientId, filter, m) => {
        const session = this.sessions.get(clientId);
        if (!session?.outlet) return false;
        return this.router.deliverExternal(session, filter, createMessage(m.topic, m.payload, m.qos, false, undefined, m.publisher, m.receivedAt), false);
      },
    };
  }

  /** SIGHUP: credentials and the ACL file read again (lifecycle/reload.ts). */
  reload(): Promise<void> {
    return reloadSecurity(this);
  }

  /** Where broker state is stored (the embedded store's or an external registry's), null while in memory only. */
  get store(): Persistence | null {
    return this.router.store;
  }

  get connectedCount(): number {
    return this.metrics.connections;
  }

  get maxPacketSize(): number {
    return this.config['mqtt.max_packet_size'];
  }

  /**
   * Start every configured listener. Resolves with the bound ports. If one fails (port in
   * use, unreadable certificate), those already bound are closed before the error is thrown.
   */
  async listen(): Promise<ListenAddresses> {
    try {
      if (this.config['durable_sessions.enable'] && !this.durable && !this.registry) await this.openStore();
      if (this.backends.enabled) await this.backends.start(this.backendHost()); // loads the drivers; never waits for a database
      await this.bindListeners();
      this.admin = await startAdmin(this); // admin API (its port in addresses.admin), $SYS
      if (this.config['node.idle_gc']) this.stopIdleGc ??= startIdleGc(() => this.metrics.bytesReceived + this.metrics.bytesSent, { release: releaseFreeMemory });
    } catch (e) {
      await Promise.all(this.servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      this.addresses = {};
      await this.dropStore();
      await this.backends.close();
      throw e;
    }
    this.log.info({ ...this.addresses }, 'listening');
    this.emit('listening', this.addresses);
    return this.addresses;
  }

  /**
   * `stratamq ds repair`: what the start-up does to the store — recovery, reconciling the log
   * with the sessions, recording each loss — without listeners; then the store is closed.
   */
  async repairStore(): Promise<{ summary: string[]; losses: LossInfo[] }> {
    try {
      const found = await this.openStore();
      await this.close();
      return found;
    } catch (e) {
      await this.dropStore();
      throw e;
    }
  }

  private async openStore(): Promise<{ summary: string[]; losses: LossInfo[] }> {
    const external = await openRegistry(this.config, this.log);
    if (external) {
      this.useRegistry(external);
      await restoreRegistry({ log: this.log, retained: this.retained, router: this.router, lifecycle: this.lifecycle }, external);
      return { summary: [], losses: [] };
    }
    const opened = (d: DurableSessions): void => this.useStore(d);
    const { summary, losses } = await restore({ config: this.config, log: this.log, retained: this.retained, router: this.router, lifecycle: this.lifecycle, opened, counters: this.metrics });
    return { summary, losses };
  }

  private useStore(d: DurableSessions | null): void {
    this.durable = d;
    // The message log's status counts per entry: kept while something is logged.
    this.env.counts = d !== null && this.msglog.filters.length > 0 ? d.enableCounts() : null;
    this.router.store = d;
    this.lifecycle.store = d && { sessions: d.sessions, durableSide: (s) => logSession(d, s) };
  }

  private useRegistry(r: QueueStore | null): void {
    this.registry = r;
    this.router.store = r;
    this.lifecycle.store = r && { sessions: r.sessions, durableSide: (s) => new QueueSession(r, s) };
  }

  private async dropStore(): Promise<void> {
    await this.durable?.close().catch(() => undefined);
    await this.registry?.close().catch(() => undefined);
    this.useStore(null);
    this.useRegistry(null);
  }

  private async bindListeners(): Promise<void> {
    const c = this.config;
    const host = c['listener.tcp.host'];
    const bound = (name: keyof ListenAddresses, l: { server: Server; port: number }): void => {
      this.servers.push(l.server);
      this.addresses[name] = l.port;
    };
    bound('tcp', await listenTcp(this, host, c['listener.tcp.port']));
    // The WebSocket and TLS listeners' modules (and node's http, https, tls) are loaded when configured.
    const ws = c['listener.ws.port'] >= 0 || c['listener.wss.port'] >= 0 ? await import('./transport/ws.js') : null;
    if (ws && c['listener.ws.port'] >= 0) bound('ws', await ws.listenWs(this, host, c['listener.ws.port'], c['listener.ws.path'], null));
    const tlsOpts = { certfile: c['listener.tls.certfile'], keyfile: c['listener.tls.keyfile'] };
    if (c['listener.tls.port'] >= 0) bound('tls', await (await import('./transport/tls.js')).listenTls(this, host, c['listener.tls.port'], tlsOpts));
    if (ws && c['listener.wss.port'] >= 0) bound('wss', await ws.listenWs(this, host, c['listener.wss.port'], c['listener.ws.path'], tlsOpts));
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
    this.stopIdleGc?.();
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const conn of [...this.connections]) conn.disconnect(RC.ServerShuttingDown, 'server shutting down');
    for (const conn of [...this.connections]) conn.socket.destroy();
    await this.admin?.close();
    await this.replays.stopAll(); // each after its batch in progress, before the store closes
    await Promise.all(closed);
    await new Promise((resolve) => setImmediate(resolve)); // sockets' 'close' (wills) run first
    this.lifecycle.stopTimers();
    this.connectRate?.close();
    this.inflow?.close();
    await Promise.all([...this.lifecycle.willWrites]);
    await this.backends.close(); // what is queued gets a moment to reach its databases
    for (const session of this.sessions) session.durable?.save(); // exact counts and progress
    await this.durable?.close();
    await this.registry?.close();
    this.log.info('closed');
    this.emit('closed');
  }

  /** A connection for an accepted stream (the listeners call this; tests with in-memory streams too). */
  accept(stream: Duplex, remoteAddress: string, handoff: SocketHandoff | null): Connection | null {
    if (this.closing) {
      stream.destroy();
      return null;
    }
    const conn = createConnection(this, stream, remoteAddress, handoff);
    this.connections.add(conn);
    stream.once('close', () => this.connections.delete(conn));
    return conn;
  }

  onClientError(conn: Connection, err: Error): void {
    this.metrics.protocolErrors++;
    this.log.warn({ clientId: conn.clientId || undefined, remote: conn.remoteAddress, err: err.message }, 'client error');
    if (this.listenerCount('client.error') > 0) this.emit('client.error', conn.state === 'awaiting-connect' ? null : clientSnapshot(conn), err);
  }

  /** A storage write failed: logged once per failure, counted; the broker keeps serving. */
  onStoreError(clientId: string | undefined, err: Error): void {
    this.metrics.storeErrors++;
    this.log.error({ clientId, err: err.message, code: (err as { code?: string }).code }, 'storage write failed');
  }

  /** The store the message log is read from (admin API), null without one. */
  logStore(): DurableStore | null {
    return this.durable?.store ?? null;
  }

  /** The message log's delivery counts, null while they are not kept. */
  logCounts(): DeliveryCounts | null {
    return this.durable?.counts ?? null;
  }

  /**
   * A logged message re-published (a replay, admin API): routed as the application's own messages
   * are, under its original publisher's id and properties; resolves once stored where it had to be.
   */
  readonly republisher: Republisher = {
    publish: (e, topic) => {
      const msg = createMessage(topic, Buffer.from(e.payload), e.qos, e.retain, e.properties.length > 0 ? decodeProperties(e.properties) : undefined, e.publisher);
      // Its deliveries counted afresh, as a client's PUBLISH's are (Connection.dispatch).
      this.inflow?.begin();
      return this.router.publish(msg, null);
    },
    held: () => this.inflow !== null && this.inflow.shouldHold(),
  };

  /** Publish from the application embedding the broker (like Aedes' broker.publish). */
  publishMessage(topic: string, payload: Buffer | string, opts: { qos?: QoS; retain?: boolean } = {}): void {
    const msg = createMessage(topic, typeof payload === 'string' ? Buffer.from(payload) : payload, opts.qos ?? 0, opts.retain ?? false, undefined, '');
    this.router.publish(msg, null)?.catch((e: unknown) => this.onStoreError(undefined, e as Error));
  }
}
