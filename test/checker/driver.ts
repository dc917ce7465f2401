/**
 * Runs actions (actions.ts) with real clients against a real broker process: `stratamq start`
 * on a fresh data directory (durable_storage.fsync = always, the default), SIGTERMed or killed
 * with SIGKILL and started again on the same store. Every packet sent and received is recorded
 * (history.ts) and fed to the model (model.ts) as it happens.
 *
 * The clients are what a correct MQTT client does, nothing more:
 * - packet ids start at 1 on every connection and are reused as soon as their flow is over
 *   (as mosquitto_pub does), but never while the session still holds them: QoS 1/2 flows of a
 *   session that is resumed (CONNACK session present = 1) are resent (PUBLISH with DUP, or
 *   PUBREL) before anything new, and dropped when it is not;
 * - every QoS 1 delivery gets PUBACK, every QoS 2 one PUBREC, every PUBREL a PUBCOMP; whether a
 *   QoS 2 PUBLISH is new or a resend is decided by the session's inbound state, which the model
 *   keeps per session across its connections.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Packet } from 'mqtt-packet';
import { BrokerProcess, freePort, sleep, testCertificate } from '../helpers.js';
import { type Action, NEVER_EXPIRES } from './actions.js';
import type { Event, QoS, WillSpec } from './history.js';
import { Model, type ModelStats, type Violation, V311_EXPIRY_S } from './model.js';
import { FILTERS, isShared, TOPICS } from './topics.js';
import { type Transport, TRANSPORTS, Wire, type WireTarget } from './wire.js';

export interface RunConfig {
  /** Client ids in the pool (3–6). */
  clients: number;
  /**
   * Steer clear of the broker's known bugs (issue 12): Clean Start 0 on v5 always carries a
   * Session Expiry, and persistent QoS 2 publishers never reuse a packet id within a run.
   */
  avoidKnown: boolean;
  /** Silence (ms) after which a connection counts as drained. */
  quietMs: number;
  /** Extra `stratamq start` arguments. */
  brokerArgs: string[];
  /** Keep the data directory (it is printed) instead of removing it. */
  keepData: boolean;
  /**
   * How the clients connect: every connection over one transport, or `mixed`: connection n over
   * tcp, ws, tls, wss in turn (n counts a run's connections, so a trace replays alike). TLS and
   * WSS listeners get a self-signed certificate made once per process.
   */
  transport: Transport | 'mixed';
  /** Called before each broker run starts (an external registry emptied: each run starts from nothing). */
  beforeRun?: () => Promise<void>;
  /**
   * The registry's answers come this many ms late (--slow-registry): a drain waits longer for what
   * is owed (a backlog's QoS 2 deliveries each wait for their in-flight record, one statement each).
   */
  slowRegistryMs?: number;
  /**
   * The message log on every topic (`msglog.topics = #`) in this mode (--msglog): what persistent
   * sessions need is then written once for both, an online persistent session's QoS 0 goes
   * through the log, and in `sync` mode every acknowledgement waits for an append.
   */
  msglog?: 'async' | 'sync';
}

export const DEFAULT_RUN_CONFIG: RunConfig = { clients: 4, avoidKnown: false, quietMs: 400, brokerArgs: [], keepData: false, transport: 'tcp' };


let certificate: { certfile: string; keyfile: string } | null = null;

/** The broker's environment for `transport`: TLS and WSS listeners on ephemeral ports when it uses them. */
function listenerEnv(transport: Transport | 'mixed'): NodeJS.ProcessEnv {
  if (transport === 'tcp') return {};
  if (transport === 'ws') return { STRATA_LISTENER__WS__PORT: '0' };
  if (!certificate) {
    const dir = mkdtempSync(join(tmpdir(), 'strata-checker-tls-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    certificate = testCertificate(dir);
  }
  return {
    STRATA_LISTENER__WS__PORT: '0',
    STRATA_LISTENER__TLS__PORT: '0',
    STRATA_LISTENER__WSS__PORT: '0',
    STRATA_LISTENER__TLS__CERTFILE: certificate.certfile,
    STRATA_LISTENER__TLS__KEYFILE: certificate.keyfile,
  };
}

export interface RunCounts {
  actions: number;
  sigterm: number;
  kill9: number;
  connects: number;
  publishes: number;
  drainTimeouts: number;
}

export interface RunResult {
  actions: Action[];
  violations: Violation[];
  stats: ModelStats;
  counts: RunCounts;
  history: Event[];
  dataDir: string;
  brokerLog: string;
  /** How long the run took (broker start to the final checkpoint). */
  ms: number;
}

interface Flow {
  id: number;
  msg: string;
  topic: string;
  qos: QoS;
  retain: boolean;
  expiry: number | null;
  phase: 'publish' | 'pubrel';
  wire: Wire;
  done: () => void;
}

/** The client's side of its session: QoS 1/2 publishes in flight. */
class OutSession {
  readonly flows = new Map<number, Flow>();
}

interface Slot {
  id: string;
  wire: Wire | null;
  session: OutSession;
  /** Session Expiry in force for the current connection (DISCONNECT may not raise it from 0). */
  expiry: number;
  /** avoidKnown: the next QoS 2 packet id of a persistent publisher. */
  nextQos2Id: number;
  /** The last CONNECT this client sent (an automatic reconnect repeats it). */
  lastConnect: Extract<Action, { a: 'connect' }> | null;
}

const ACK_WAIT_MS = 3000;
/** A slow connection's delay before PUBACK / PUBREC (action connect.slow). */
const SLOW_ACK_MS = 300;
const CONNACK_WAIT_MS = 5000;
const DRAIN_MAX_MS = 8000;
const DRAIN_MORE_QUIET_MS = 1500;
const DRAIN_MORE_MAX_MS = 6000;

export class Run {
  readonly model = new Model();
  readonly history: Event[] = [];
  readonly actions: Action[] = [];
  readonly counts: RunCounts = { actions: 0, sigterm: 0, kill9: 0, connects: 0, publishes: 0, drainTimeouts: 0 };
  private readonly extra: Violation[] = [];
  private readonly slots: Slot[];
  private readonly t0 = performance.now();
  private lastT = 0;
  private connSeq = 0;
  private msgSeq = 0;
  private readonly wires = new Set<Wire>();
  private readonly slowWires = new WeakSet<Wire>();

  private constructor(
    readonly cfg: RunConfig,
    readonly broker: BrokerProcess,
    readonly dataDir: string,
  ) {
    this.slots = Array.from({ length: cfg.clients }, (_, i) => ({ id: `c${i}`, wire: null, session: new OutSession(), expiry: 0, nextQos2Id: 1, lastConnect: null }));
  }

  static async start(cfg: RunConfig): Promise<Run> {
    await cfg.beforeRun?.();
    const dataDir = mkdtempSync(join(tmpdir(), 'strata-checker-'));
    const env = { ...listenerEnv(cfg.transport), ...(cfg.msglog ? { STRATA_MSGLOG__TOPICS: '#', STRATA_MSGLOG__MODE: cfg.msglog } : {}) };
    const broker = new BrokerProcess(await freePort(), dataDir, ['--log-level', 'info', ...cfg.brokerArgs], env);
    await broker.start();
    return new Run(cfg, broker, dataDir);
  }

  get violations(): Violation[] {
    return [...this.model.violations, ...this.extra];
  }

  get failed(): boolean {
    return this.model.violations.length > 0 || this.extra.length > 0;
  }

  private clock(): number {
    const t = Math.max(performance.now() - this.t0, this.lastT + 0.001);
    this.lastT = t;
    return t;
  }

  private record(e: Event): void {
    this.history.push(e);
    this.model.apply(e);
  }

  private slotOf(c: number): Slot {
    return this.slots[c % this.slots.length] as Slot;
  }

  private live(s: Slot): Wire | null {
    return s.wire !== null && !s.wire.closed ? s.wire : null;
  }

  /** Client `c` if connected, else the next connected client, else null. */
  private resolve(c: number): number | null {
    for (let k = 0; k < this.slots.length; k++) {
      const i = (c + k) % this.slots.length;
      if (this.live(this.slots[i] as Slot)) return i;
    }
    return null;
  }

  /** Whether `x` means anything now (fast-check skips it otherwise, and leaves it out of traces). */
  applicable(x: Action): boolean {
    if (this.failed) return false;
    switch (x.a) {
      case 'connect':
      case 'park':
      case 'restart':
      case 'pause':
      case 'checkpoint':
        return true;
      default:
        return this.resolve(x.c) !== null;
    }
  }

  async exec(action: Action): Promise<void> {
    let x = action;
    if (x.a !== 'connect' && x.a !== 'park' && x.a !== 'restart' && x.a !== 'pause' && x.a !== 'checkpoint') {
      const c = this.resolve(x.c);
      if (c === null) return;
      x = { ...x, c };
    }
    x = this.normalize(x);
    this.actions.push(x);
    this.counts.actions++;
    switch (x.a) {
      case 'connect':
        await this.connect(x);
        break;
      case 'disconnect':
        await this.disconnect(x);
        break;
      case 'publish':
        await this.publish(x);
        break;
      case 'subscribe':
        await this.subscribe(x);
        break;
      case 'unsubscribe':
        await this.unsubscribe(x);
        break;
      case 'park': {
        const w = await this.connect({ a: 'connect', c: x.c, v: x.v, clean: false, expiry: x.v === 5 ? x.expiry : null, will: null, drain: false, slow: false });
        if (!w) break;
        await this.subscribe({ a: 'subscribe', c: x.c, subs: x.subs });
        await this.disconnect({ a: 'disconnect', c: x.c, how: 'normal', expiry: null });
        break;
      }
      case 'drain': {
        const w = this.live(this.slotOf(x.c));
        if (w) await this.drain(w);
        break;
      }
      case 'restart':
        await this.restart(x.how, x.settle, x.reconnect);
        break;
      case 'pause':
        await sleep(x.ms);
        break;
      case 'checkpoint':
        await this.checkpoint();
        break;
    }
    this.checkBrokerAlive();
  }

  /**
   * The action as it will be sent: what the protocol version or the rules forbid is left out
   * (No Local on v3.1.1 and on shared subscriptions, v5 properties on v3.1.1, DISCONNECT raising
   * the Session Expiry from 0), and `avoidKnown` changes are applied, so traces show what ran.
   */
  private normalize(x: Action): Action {
    const slot = (c: number): Slot => this.slotOf(c);
    // One entry per filter (the last one, as the driver sends them); No Local where it is allowed.
    const nl = (v5: boolean, subs: { f: number; qos: QoS; nl: boolean }[]): { f: number; qos: QoS; nl: boolean }[] =>
      [...new Map(subs.map((s) => [s.f, s])).values()].map((s) => ({ ...s, nl: v5 && s.nl && !isShared(FILTERS[s.f] as string) }));
    switch (x.a) {
      case 'connect': {
        let expiry = x.v === 5 ? x.expiry : null;
        if (this.cfg.avoidKnown && x.v === 5 && !x.clean && (expiry === null || expiry === 0)) expiry = 3600; // known bug 2
        return { ...x, expiry, will: x.will && x.v === 4 ? { ...x.will, delay: 0 } : x.will };
      }
      case 'park':
        return { ...x, subs: nl(x.v === 5, x.subs) };
      case 'subscribe':
        return { ...x, subs: nl(this.live(slot(x.c))?.version === 5, x.subs) };
      case 'unsubscribe':
        return { ...x, fs: [...new Set(x.fs)] };
      case 'publish':
        return this.live(slot(x.c))?.version === 5 ? x : { ...x, expiry: null };
      case 'disconnect': {
        if (x.how === 'abrupt') return { ...x, expiry: null };
        const s = slot(x.c);
        if (this.live(s)?.version !== 5) return { ...x, how: 'normal', expiry: null };
        return x.expiry !== null && s.expiry === 0 && x.expiry !== 0 ? { ...x, expiry: null } : x; // [MQTT-3.14.2-2]
      }
      default:
        return x;
    }
  }

  private checkBrokerAlive(): void {
    const pid = this.broker.pid;
    let alive = pid !== undefined;
    if (pid !== undefined) {
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
    }
    if (!alive && !this.extra.some((v) => v.kind === 'broker')) {
      this.extra.push({ kind: 'broker', t: this.clock(), client: '', text: `the broker process died: ${this.broker.output.slice(-1500)}` });
    }
  }

  // ---- packets from the broker ---------------------------------------------------------------

  private onPacket(slot: Slot, w: Wire, p: Packet): void {
    const t = this.clock();
    switch (p.cmd) {
      case 'connack':
        this.record({ k: 'connack', t, conn: w.n, present: p.sessionPresent, rc: (w.version === 5 ? p.reasonCode : p.returnCode) ?? 0 });
        return;
      case 'publish': {
        const id = p.messageId ?? 0;
        const payload = typeof p.payload === 'string' ? p.payload : p.payload.toString('utf8');
        this.record({ k: 'deliver', t, conn: w.n, id, msg: payload, topic: p.topic, qos: p.qos, retain: p.retain, dup: p.dup });
        if (p.qos === 0) return;
        const answer = (): void => w.send(p.qos === 1 ? { cmd: 'puback', messageId: id } : { cmd: 'pubrec', messageId: id });
        if (this.slowWires.has(w)) setTimeout(answer, SLOW_ACK_MS).unref();
        else answer();
        return;
      }
      case 'pubrel':
        this.record({ k: 'pubrel', t, conn: w.n, id: p.messageId ?? 0 });
        w.send({ cmd: 'pubcomp', messageId: p.messageId ?? 0 });
        return;
      case 'puback':
      case 'pubrec': {
        const id = p.messageId ?? 0;
        const f = slot.session.flows.get(id);
        if (!f || f.wire !== w || f.phase !== 'publish' || f.qos !== (p.cmd === 'puback' ? 1 : 2)) return;
        const rc = p.reasonCode ?? 0;
        this.record({ k: 'acked', t, conn: w.n, id, msg: f.msg, rc });
        if (p.cmd === 'pubrec' && rc < 0x80) {
          f.phase = 'pubrel';
          w.send({ cmd: 'pubrel', messageId: id });
        } else {
          slot.session.flows.delete(id);
          f.done();
        }
        return;
      }
      case 'pubcomp': {
        const id = p.messageId ?? 0;
        const f = slot.session.flows.get(id);
        if (!f || f.wire !== w || f.phase !== 'pubrel') return;
        this.record({ k: 'completed', t, conn: w.n, id, msg: f.msg });
        slot.session.flows.delete(id);
        f.done();
        return;
      }
      case 'suback':
        this.record({ k: 'suback', t, conn: w.n, id: p.messageId ?? 0, granted: p.granted.map((g) => (typeof g === 'number' ? g : (g as { qos: number }).qos)) });
        this.settleControl(w, p.messageId ?? 0);
        return;
      case 'unsuback':
        this.record({ k: 'unsuback', t, conn: w.n, id: p.messageId ?? 0 });
        this.settleControl(w, p.messageId ?? 0);
        return;
      case 'disconnect':
        this.record({ k: 'server-disconnect', t, conn: w.n, rc: p.reasonCode ?? 0 });
        return;
      default:
        return;
    }
  }

  private settleControl(w: Wire, id: number): void {
    const done = w.control.get(id);
    w.control.delete(id);
    done?.();
  }

  private onClose(slot: Slot, w: Wire): void {
    this.wires.delete(w);
    this.record({ k: 'closed', t: this.clock(), conn: w.n });
    if (slot.wire === w) slot.wire = null;
  }

  /** Connection `n`'s transport and the port its listener has in this broker run. */
  private target(n: number): WireTarget {
    const transport = this.cfg.transport === 'mixed' ? (TRANSPORTS[n % TRANSPORTS.length] as Transport) : this.cfg.transport;
    const port = this.broker.listeners()[transport];
    if (port === undefined) throw new Error(`the broker has no ${transport} listener`);
    return { transport, port };
  }

  /** The lowest packet id free in the session and on the connection. */
  private allocId(slot: Slot, w: Wire): number {
    for (let id = 1; id <= 65535; id++) if (!slot.session.flows.has(id) && !w.control.has(id)) return id;
    throw new Error('no packet id free');
  }

  // ---- actions ------------------------------------------------------------------------------

  private async connect(x: Extract<Action, { a: 'connect' }>, drainAfter = x.drain): Promise<Wire | null> {
    const slot = this.slotOf(x.c);
    const expiry = x.v === 5 ? x.expiry : null;
    const n = ++this.connSeq;
    const w = await Wire.open(
      this.target(n),
      n,
      x.v,
      (wire, p) => this.onPacket(slot, wire, p),
      (wire) => this.onClose(slot, wire),
    );
    if (!w) return null;
    this.wires.add(w);
    if (x.slow) this.slowWires.add(w);
    slot.lastConnect = { ...x, drain: false };
    this.counts.connects++;
    let will: WillSpec | null = null;
    if (x.will) will = { topic: TOPICS[x.will.topic] as string, qos: x.will.qos, delay: x.v === 5 ? x.will.delay : 0, msg: `w:${n}` };
    this.record({ k: 'connect', t: this.clock(), conn: n, client: slot.id, v: x.v, clean: x.clean, expiry, will });
    w.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: x.v,
      clientId: slot.id,
      clean: x.clean,
      keepalive: 0,
      ...(x.v === 5 && expiry !== null ? { properties: { sessionExpiryInterval: expiry } } : {}),
      ...(will
        ? { will: { topic: will.topic, payload: Buffer.from(will.msg), qos: will.qos, retain: false, ...(x.v === 5 && will.delay > 0 ? { properties: { willDelayInterval: will.delay } } : {}) } }
        : {}),
    });
    const ack = await w.connack(CONNACK_WAIT_MS);
    if (ack === null || ack.cmd !== 'connack') {
      if (!w.closed) {
        this.record({ k: 'abort', t: this.clock(), conn: n });
        w.destroy();
      }
      await w.waitClosed(1000);
      return null;
    }
    const rc = (x.v === 5 ? ack.reasonCode : ack.returnCode) ?? 0;
    if (rc !== 0) {
      await w.waitClosed(1000);
      return null;
    }
    // A takeover: the old connection is closed by the broker before this CONNACK; read its last packets first.
    const old = slot.wire;
    if (old && old !== w && !(await old.waitClosed(2000))) {
      this.record({ k: 'abort', t: this.clock(), conn: old.n });
      old.destroy();
      await old.waitClosed(1000);
    }
    slot.wire = w;
    slot.expiry = x.v === 5 ? (expiry ?? 0) : x.clean ? 0 : V311_EXPIRY_S;
    if (ack.sessionPresent) {
      // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (DUP) and PUBREL in their original order.
      for (const f of slot.session.flows.values()) {
        f.wire = w;
        if (f.phase === 'pubrel') {
          w.send({ cmd: 'pubrel', messageId: f.id });
          continue;
        }
        const expiryProp = w.version === 5 && f.expiry !== null ? f.expiry : null;
        this.record({ k: 'publish', t: this.clock(), conn: n, id: f.id, msg: f.msg, topic: f.topic, qos: f.qos, retain: f.retain, expiry: expiryProp, dup: true });
        w.send({ cmd: 'publish', topic: f.topic, payload: Buffer.from(f.msg), qos: f.qos, retain: f.retain, dup: true, messageId: f.id, ...(expiryProp !== null ? { properties: { messageExpiryInterval: expiryProp } } : {}) });
      }
    } else {
      for (const f of slot.session.flows.values()) f.done();
      slot.session = new OutSession();
    }
    if (drainAfter) await this.drain(w);
    return w;
  }

  private async disconnect(x: Extract<Action, { a: 'disconnect' }>): Promise<void> {
    const slot = this.slotOf(x.c);
    const w = this.live(slot);
    if (!w) return;
    if (x.how === 'abrupt') {
      this.record({ k: 'abort', t: this.clock(), conn: w.n });
      w.destroy();
      await w.waitClosed(1000);
      return;
    }
    const v5 = w.version === 5;
    const reason = v5 && x.how === 'will' ? 4 : 0;
    const expiry = v5 ? x.expiry : null;
    this.record({ k: 'disconnect', t: this.clock(), conn: w.n, reason, expiry });
    w.send({ cmd: 'disconnect', ...(v5 ? { reasonCode: reason, ...(expiry !== null ? { properties: { sessionExpiryInterval: expiry } } : {}) } : {}) });
    if (!(await w.waitClosed(2000))) {
      this.record({ k: 'abort', t: this.clock(), conn: w.n });
      w.destroy();
      await w.waitClosed(1000);
    }
  }

  private async publish(x: Extract<Action, { a: 'publish' }>): Promise<void> {
    const slot = this.slotOf(x.c);
    const w = this.live(slot);
    if (!w) return;
    const topic = TOPICS[x.topic] as string;
    const expiry = w.version === 5 ? x.expiry : null;
    const waits: Promise<void>[] = [];
    for (let i = 0; i < x.n; i++) {
      const name = `${slot.id}#${++this.msgSeq}`;
      const msg = x.retain && x.clear ? '' : name;
      let id = 0;
      if (x.qos > 0) {
        id = x.qos === 2 && this.cfg.avoidKnown && slot.expiry > 0 ? this.freshQos2Id(slot) : this.allocId(slot, w);
        let done!: () => void;
        waits.push(new Promise<void>((resolve) => (done = resolve)));
        slot.session.flows.set(id, { id, msg, topic, qos: x.qos, retain: x.retain, expiry, phase: 'publish', wire: w, done });
      }
      this.counts.publishes++;
      this.record({ k: 'publish', t: this.clock(), conn: w.n, id, msg, topic, qos: x.qos, retain: x.retain, expiry, dup: false });
      w.send({ cmd: 'publish', topic, payload: Buffer.from(msg), qos: x.qos, retain: x.retain, dup: false, ...(x.qos > 0 ? { messageId: id } : {}), ...(expiry !== null ? { properties: { messageExpiryInterval: expiry } } : {}) });
    }
    if (x.wait && waits.length > 0) await Promise.race([Promise.all(waits), sleep(ACK_WAIT_MS)]);
  }

  /** avoidKnown (bug 1): a persistent publisher's QoS 2 ids are not reused within the run. */
  private freshQos2Id(slot: Slot): number {
    for (;;) {
      const id = slot.nextQos2Id;
      slot.nextQos2Id = id === 65535 ? 1 : id + 1;
      if (!slot.session.flows.has(id) && !slot.wire?.control.has(id)) return id;
    }
  }

  private async subscribe(x: Extract<Action, { a: 'subscribe' }>): Promise<void> {
    const slot = this.slotOf(x.c);
    const w = this.live(slot);
    if (!w) return;
    const v5 = w.version === 5;
    const byFilter = new Map<string, { filter: string; qos: QoS; nl: boolean }>();
    for (const s of x.subs) {
      const filter = FILTERS[s.f] as string;
      byFilter.set(filter, { filter, qos: s.qos, nl: v5 && s.nl && !isShared(filter) });
    }
    const subs = [...byFilter.values()];
    const id = this.allocId(slot, w);
    const acked = new Promise<void>((resolve) => w.control.set(id, resolve));
    this.record({ k: 'subscribe', t: this.clock(), conn: w.n, id, subs });
    w.send({ cmd: 'subscribe', messageId: id, subscriptions: subs.map((s) => (v5 ? { topic: s.filter, qos: s.qos, nl: s.nl, rap: false, rh: 0 } : { topic: s.filter, qos: s.qos })) });
    await Promise.race([acked, sleep(ACK_WAIT_MS)]);
  }

  private async unsubscribe(x: Extract<Action, { a: 'unsubscribe' }>): Promise<void> {
    const slot = this.slotOf(x.c);
    const w = this.live(slot);
    if (!w) return;
    const filters = [...new Set(x.fs.map((f) => FILTERS[f] as string))];
    const id = this.allocId(slot, w);
    const acked = new Promise<void>((resolve) => w.control.set(id, resolve));
    this.record({ k: 'unsubscribe', t: this.clock(), conn: w.n, id, filters });
    w.send({ cmd: 'unsubscribe', messageId: id, unsubscriptions: filters });
    await Promise.race([acked, sleep(ACK_WAIT_MS)]);
  }

  /** Wait until nothing arrives on `w` for quietMs (longer if the model still waits for something), then let the model judge. */
  private async drain(w: Wire): Promise<void> {
    const since = this.clock();
    if (!(await this.waitQuiet(w, this.cfg.quietMs, DRAIN_MAX_MS))) return;
    const slow = this.cfg.slowRegistryMs ?? 0;
    if (this.model.owed(w.n) > 0 && !(await this.waitQuiet(w, DRAIN_MORE_QUIET_MS + 100 * slow, DRAIN_MORE_MAX_MS + 300 * slow))) return;
    if (w.closed) return;
    this.record({ k: 'quiet', t: this.clock(), conn: w.n, since });
  }

  private async waitQuiet(w: Wire, quietMs: number, maxMs: number): Promise<boolean> {
    const start = performance.now();
    for (;;) {
      if (w.closed) return false;
      const now = performance.now();
      const idle = now - Math.max(w.lastRx, start);
      if (idle >= quietMs) return true;
      if (now - start > maxMs) {
        this.counts.drainTimeouts++;
        return false;
      }
      await sleep(Math.min(quietMs - idle, 50) + 1);
    }
  }

  /** Wait (bounded) until no publish of any client awaits its acknowledgement. */
  private async settle(ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      if (this.slots.every((s) => [...s.session.flows.values()].every((f) => f.wire.closed))) return;
      await sleep(20);
    }
  }

  private async restart(how: 'term' | 'kill', settle: boolean, reconnect: boolean): Promise<void> {
    if (settle) await this.settle(1000);
    const connected = this.slots.map((s, i) => (this.live(s) && s.lastConnect ? i : -1)).filter((i) => i >= 0);
    this.record({ k: 'broker-stop', t: this.clock(), how });
    if (how === 'kill') {
      this.counts.kill9++;
      await this.broker.kill9();
    } else {
      this.counts.sigterm++;
      await this.broker.stop();
    }
    try {
      await this.broker.start();
    } catch (e) {
      this.extra.push({ kind: 'broker', t: this.clock(), client: '', text: `the broker did not start again on its store after ${how === 'kill' ? 'kill -9' : 'SIGTERM'}: ${(e as Error).message.slice(0, 1500)}` });
      return;
    }
    this.record({ k: 'broker-start', t: this.clock() });
    if (!reconnect) return;
    for (const i of connected) {
      const last = (this.slots[i] as Slot).lastConnect;
      if (last) await this.connect({ ...last, drain: false });
    }
  }

  /** Reconnect every session the model says exists, drain every connection, judge. */
  private async checkpoint(): Promise<void> {
    await this.settle(1500);
    const wires: Wire[] = [];
    for (let c = 0; c < this.slots.length; c++) {
      const slot = this.slotOf(c);
      const w = this.live(slot);
      if (w) {
        wires.push(w);
        continue;
      }
      const s = this.model.session(slot.id);
      if (s.exists !== 'yes' || s.expiry === 0) continue;
      const back = await this.connect({ a: 'connect', c, v: 5, clean: false, expiry: s.expiry === NEVER_EXPIRES ? NEVER_EXPIRES : s.expiry, will: null, drain: false, slow: false }, false);
      if (back) wires.push(back);
    }
    await Promise.all(wires.map((w) => this.drain(w)));
  }

  /** The final checkpoint (unless a violation already ended the run), then stop everything. */
  async finish(): Promise<RunResult> {
    try {
      if (!this.failed) {
        await this.checkpoint();
        this.checkBrokerAlive();
      }
    } finally {
      for (const w of this.wires) w.destroy();
      await this.broker.stop().catch(() => undefined);
      if (!this.cfg.keepData) rmSync(this.dataDir, { recursive: true, force: true });
    }
    return {
      actions: this.actions,
      violations: this.violations,
      stats: this.model.stats,
      counts: this.counts,
      history: this.history,
      dataDir: this.dataDir,
      brokerLog: this.broker.output,
      ms: performance.now() - this.t0,
    };
  }

  /** Stop without judging (an error in the checker itself). */
  async abandon(): Promise<void> {
    for (const w of this.wires) w.destroy();
    await this.broker.stop().catch(() => undefined);
    if (!this.cfg.keepData) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
