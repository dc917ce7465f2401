/**
 * The MQTT rules the checker holds the broker to, as a state machine over what the checker saw
 * (history.ts). It knows nothing of sockets or of the broker's insides, so hand-written traces
 * test it (test/unit/checker-model.test.ts).
 *
 * MUST (a violation when broken):
 * - lost: a QoS 1/2 message acknowledged to its publisher (PUBACK / PUBREC, reason < 0x80) is
 *   delivered to every session that, when the PUBLISH was first sent, had a matching
 *   subscription with a SUBACK (granted ≥ 1) and no change to it until the acknowledgement, at
 *   QoS min(granted, message) ≥ 1 — unless that session ends legally first (Clean Start, expiry
 *   0 at disconnect, expiry reached), the subscription changes, or the message could expire
 *   (v5 Message Expiry < MUST_MIN_EXPIRY_S). Through `$share/g/f`: to one member, when every
 *   possible member is such a session. Judged at a `quiet` event: the session's connection
 *   received nothing for a while after `since`, so what was owed before `since` is missing.
 *   Wills (delay 0, QoS ≥ 1) of a connection the client dropped without DISCONNECT count as
 *   acknowledged at the drop, unless the broker is killed before the check.
 * - duplicate: a QoS 2 message delivered to one session more often than it has matching
 *   subscriptions. A PUBLISH whose packet id still awaits PUBREL in that session is a resend,
 *   not a delivery (the session's inbound QoS 2 state outlives its connections).
 * - order: among the first deliveries to a session of messages with the same (publisher,
 *   topic, published QoS, delivered QoS), one the broker must have received after another
 *   arrives before it (same connection in sending order, or acknowledged before the other was
 *   sent), with the session's matching subscriptions unchanged meanwhile. Shared subscriptions,
 *   retained and will deliveries are not ordered.
 * - session-present: CONNACK session present = 1 after Clean Start; = 0 for a session the
 *   model knows exists (lost); = 1 for one it knows ended (resurrected).
 * - unexpected: a delivery the session could not have matched (no subscription of this
 *   session incarnation for its topic that was asked for before the delivery, was not removed
 *   before the message was first sent, and did not start after the message was acknowledged);
 *   a delivery at a higher QoS than published or subscribed; an unknown payload; a first
 *   delivery well after the message expired; a will after a normal DISCONNECT or after its
 *   session was resumed within the Will Delay; a retained message on subscribe that had been
 *   replaced or cleared before the SUBSCRIBE.
 * - retained-missing: a subscription made when the retained state of every topic it matches
 *   was settled (each retained set/clear acknowledged, and ordered) must get the current
 *   retained messages on that connection, checked at the next `quiet` of that connection.
 *
 * MAY (never a violation): QoS 0 and QoS 1 repeats; anything a session gets while the model
 * cannot tell whether it exists; wills other than above.
 *
 * Durability and kill -9. The broker writes session records in the background but commits its
 * metadata in order (src/session/durable.ts), and SUBACK to a persistent session waits for its
 * subscription's commit. So a change the checker has seen (at CONNACK, or the server's close
 * after DISCONNECT) is durable once a SUBACK to a persistent session arrives for a SUBSCRIBE
 * sent after it; SIGTERM makes everything durable. A kill -9 may lose changes since then: each
 * client's possible stored states (none, or an expiry) are kept, and where they disagree the
 * session's existence is unknown until its next CONNACK says. Sessions connected at a kill
 * count as disconnected from the restart, so expiry deadlines are intervals [lo, hi].
 */
import type { Event, QoS, Version, WillSpec } from './history.js';
import { isShared, matches } from './topics.js';

/** Slack around session expiry and will delay deadlines. */
export const MARGIN_MS = 1500;
/** Messages with a shorter v5 Message Expiry (seconds) only constrain what MAY arrive. */
export const MUST_MIN_EXPIRY_S = 600;
/** mqtt.session_expiry_interval (the broker's default): 3.1.1 clean_session = 0. */
export const V311_EXPIRY_S = 7200;
/** How long after the client drops a socket the broker is taken to have noticed. */
export const ABORT_NOTICE_MS = 200;
/** A delivery this long after the message's expiry (from its last sending) is too late. */
const EXPIRED_SLACK_MS = 2000;
const NEVER = 0xffffffff;

export type ViolationKind = 'lost' | 'duplicate' | 'order' | 'session-present' | 'unexpected' | 'retained-missing' | 'broker';

export interface Violation {
  kind: ViolationKind;
  t: number;
  client: string;
  msg?: string;
  text: string;
}

export interface ModelStats {
  events: number;
  deliveries: number;
  /** Messages acknowledged to their publishers. */
  acknowledged: number;
  /** (message, session) pairs the broker had to deliver. */
  obligations: number;
  /** ... of which delivered, */
  delivered: number;
  /** ... released by a legal session end, subscription change or uncertainty, */
  released: number;
  /** ... and missing at a quiet moment. */
  lost: number;
  /** Owed to a session that was offline when the message was acknowledged. */
  owedOffline: number;
  /** Delivered after a broker restart that came after the acknowledgement. */
  deliveredAfterRestart: number;
  retainedChecks: number;
  quiets: number;
}

interface SubVersion {
  sentT: number;
  qos: QoS;
  nl: boolean;
  ackT: number | null;
  granted: number | null;
}

/** A subscription to one filter in one session, from SUBSCRIBE to UNSUBACK; re-SUBSCRIBEs add versions. */
interface Interval {
  filter: string;
  firstSentT: number;
  versions: SubVersion[];
  unsubSentT: number | null;
  endT: number | null;
  /** Possibly brought back by a kill -9 (an UNSUBACK or session end not yet durable): MAY only. */
  ghost: boolean;
  /** Ended by an UNSUBACK to a persistent session: the broker sends it once the removal is durable. */
  durableEnd?: boolean;
}

/** One incarnation of a session: from the CONNACK that created it to its end. */
interface Inc {
  n: number;
  client: string;
  startT: number;
  /** Came back from an uncertain state: only MAY rules for what it had before. */
  tainted: boolean;
  ended: boolean;
  endT: number;
  intervals: Map<string, Interval[]>;
  /** Inbound QoS 2 packet ids awaiting PUBREL → the message. */
  awaitingRel: Map<number, string>;
  /** Message → number of QoS 2 deliveries (not resends). */
  q2: Map<string, number>;
  delivered: Set<string>;
  firsts: Map<string, { m: MsgInfo; t: number }[]>;
  lastQuiet: { since: number; t: number } | null;
}

interface MsgInfo {
  msg: string;
  publisher: string;
  topic: string;
  qos: QoS;
  retain: boolean;
  empty: boolean;
  expiry: number | null;
  will: boolean;
  firstSentT: number;
  firstConn: number;
  firstSeq: number;
  lastSentT: number;
  resent: boolean;
  ackT: number | null;
  refused: boolean;
  /** Unacknowledged when the broker stopped: it was processed before then or never. */
  deadAt: number | null;
}

interface ConnState {
  n: number;
  client: string;
  v: Version;
  clean: boolean;
  connectExpiry: number | null;
  connectT: number;
  status: 'connecting' | 'open' | 'refused' | 'closed';
  inc: Inc | null;
  /** The broker keeps this session in its store (Session Expiry > 0 at CONNECT). */
  durable: boolean;
  will: { m: MsgInfo; spec: WillSpec } | null;
  disconnect: { t: number; reason: number; expiry: number | null } | null;
  abortedAt: number | null;
  subReqs: Map<number, { t: number; versions: SubVersion[]; filters: string[]; stops: number }>;
  unsubReqs: Map<number, { t: number; filters: string[] }>;
  pubSeq: number;
  retainedChecks: RetainedCheck[];
}

interface RetainedCheck {
  filter: string;
  t: number;
  expected: Map<string, string>;
}

type Existence = 'yes' | 'no' | 'unknown';

interface ClientState {
  id: string;
  exists: Existence;
  /** When unknown: 'same' = the current incarnation may simply still be there. */
  resurrect: 'same' | 'tainted';
  inc: Inc | null;
  /** Incarnations ended since the last barrier: a kill -9 may bring them back. */
  endedSinceBarrier: Inc[];
  /** Session Expiry Interval that applies when the current connection closes. */
  expiry: number;
  conn: ConnState | null;
  connecting: Set<ConnState>;
  deadline: { lo: number; hi: number } | null;
  /** What the store may hold for this client (0 = no session, else its expiry) … */
  base: number[];
  /** … and the changes since the last barrier (observed at t). */
  pending: { t: number; value: number }[];
  delayedWills: { m: MsgInfo; closeT: number; delay: number; stops: number }[];
}

interface Obligation {
  m: MsgInfo;
  incs: Inc[];
  /** `${inc.n}|${filter}` the obligation rests on; a change to any of them releases it. */
  pairs: Set<string>;
  group: string | null;
  since: number;
  state: 'open' | 'done' | 'released' | 'violated';
  /** Broker stops before it was owed. */
  stops: number;
}

export class Model {
  readonly violations: Violation[] = [];
  readonly stats: ModelStats = { events: 0, deliveries: 0, acknowledged: 0, obligations: 0, delivered: 0, released: 0, lost: 0, owedOffline: 0, deliveredAfterRestart: 0, retainedChecks: 0, quiets: 0 };
  private readonly clients = new Map<string, ClientState>();
  /** Every session incarnation so far. */
  private readonly incs: Inc[] = [];
  private readonly conns = new Map<number, ConnState>();
  private readonly msgs = new Map<string, MsgInfo>();
  private readonly retainedPubs = new Map<string, MsgInfo[]>();
  private readonly clears: MsgInfo[] = [];
  /** Clears have no name: their acknowledgements are matched by connection and packet id. */
  private readonly pendingClears = new Map<string, MsgInfo>();
  private readonly obligations: Obligation[] = [];
  private readonly byMsg = new Map<string, Obligation[]>();
  private readonly byInc = new Map<Inc, Set<Obligation>>();
  /**
   * Wills that must not be published: discarded by a normal DISCONNECT, or cancelled by the
   * session's resumption within the Will Delay → when that was seen. Both live in the
   * session record, written in the background: a kill -9 before the next barrier may bring
   * the will back, so those are forgotten then.
   */
  private readonly cancelledWills = new Map<string, number>();
  private readonly discardedWills = new Map<string, number>();
  private incSeq = 0;
  private now = 0;
  /** Broker stops so far (delayed-will checks do not span one). */
  private stops = 0;
  private lastBarrierT = -Infinity;

  apply(e: Event): void {
    this.stats.events++;
    this.now = e.t;
    this.advance(e.t);
    switch (e.k) {
      case 'connect':
        return this.onConnect(e);
      case 'connack':
        return this.onConnack(e);
      case 'disconnect': {
        const c = this.conns.get(e.conn);
        if (c && c.status === 'open' && c.disconnect === null) c.disconnect = { t: e.t, reason: e.reason, expiry: e.expiry };
        return;
      }
      case 'abort': {
        const c = this.conns.get(e.conn);
        if (c && c.abortedAt === null) c.abortedAt = e.t;
        return;
      }
      case 'closed': {
        const c = this.conns.get(e.conn);
        if (c) this.closeConn(c, 'closed', e.t);
        return;
      }
      case 'server-disconnect':
        return;
      case 'publish':
        return this.onPublish(e);
      case 'acked':
        return this.onAcked(e);
      case 'completed':
        return;
      case 'subscribe':
        return this.onSubscribe(e);
      case 'suback':
        return this.onSuback(e);
      case 'unsubscribe':
        return this.onUnsubscribe(e);
      case 'unsuback':
        return this.onUnsuback(e);
      case 'deliver':
        return this.onDeliver(e);
      case 'pubrel': {
        this.conns.get(e.conn)?.inc?.awaitingRel.delete(e.id);
        return;
      }
      case 'broker-stop':
        return this.onBrokerStop(e.how, e.t);
      case 'broker-start':
        return this.onBrokerStart(e.t);
      case 'quiet':
        return this.onQuiet(e.conn, e.since, e.t);
    }
  }

  /**
   * Obligations still open for the session on `conn` (the driver waits longer while any are),
   * shared groups' included: a delivery owed to any member of a group it is in may come to it
   * late (a slow registry) — without them a drain ended at the first quiet and judged it lost
   * (`--slow-registry 25`, seed 5200000: the will arrived 70 ms after the drain stopped).
   */
  owed(conn: number): number {
    const inc = this.conns.get(conn)?.inc;
    if (!inc) return 0;
    let n = 0;
    for (const o of this.byInc.get(inc) ?? []) if (o.state === 'open') n++;
    return n;
  }

  /** What the model believes about a client's session (the driver's checkpoints ask). */
  session(client: string): { exists: Existence; expiry: number; connected: boolean } {
    const cs = this.clients.get(client);
    if (!cs) return { exists: 'no', expiry: 0, connected: false };
    return { exists: cs.exists, expiry: cs.expiry, connected: cs.conn !== null };
  }

  // ---- connections and sessions ------------------------------------------------------------

  private client(id: string): ClientState {
    let cs = this.clients.get(id);
    if (!cs) {
      cs = { id, exists: 'no', resurrect: 'same', inc: null, endedSinceBarrier: [], expiry: 0, conn: null, connecting: new Set(), deadline: null, base: [0], pending: [], delayedWills: [] };
      this.clients.set(id, cs);
    }
    return cs;
  }

  private onConnect(e: Extract<Event, { k: 'connect' }>): void {
    const cs = this.client(e.client);
    const c: ConnState = {
      n: e.conn,
      client: e.client,
      v: e.v,
      clean: e.clean,
      connectExpiry: e.expiry,
      connectT: e.t,
      status: 'connecting',
      inc: null,
      durable: false,
      will: null,
      disconnect: null,
      abortedAt: null,
      subReqs: new Map(),
      unsubReqs: new Map(),
      pubSeq: 0,
      retainedChecks: [],
    };
    if (e.will) {
      const m = this.newMsg(e.will.msg, e.client, e.will.topic, e.will.qos, false, null, e.t, e.conn, -1);
      m.will = true;
      c.will = { m, spec: e.will };
    }
    this.conns.set(e.conn, c);
    cs.connecting.add(c);
  }

  private onConnack(e: Extract<Event, { k: 'connack' }>): void {
    const c = this.conns.get(e.conn);
    if (!c || c.status !== 'connecting') return;
    const cs = this.client(c.client);
    cs.connecting.delete(c);
    if (e.rc !== 0) {
      c.status = 'refused';
      return;
    }
    // [MQTT-3.1.4-3] a live connection with this client id is closed first.
    if (cs.conn && cs.conn !== c) this.closeConn(cs.conn, 'takeover', e.t);
    const t = e.t;
    const expiry = c.v === 5 ? (c.connectExpiry ?? 0) : c.clean ? 0 : V311_EXPIRY_S;

    const mayHold = this.storedCandidates(cs).some((v) => v > 0);
    if (c.clean) {
      if (e.present) this.violate('session-present', t, cs.id, undefined, `conn ${c.n}: CONNACK session present = 1 after Clean Start [MQTT-3.2.2-2]`);
      if (cs.inc && !cs.inc.ended) this.endInc(cs, cs.inc, t);
      // The old session leaves the store, and the broker sends this CONNACK only once that is
      // durable: no kill -9 can bring back an incarnation ended by now.
      if (mayHold) {
        cs.base = [0];
        cs.pending = [];
      }
      cs.endedSinceBarrier = [];
      cs.delayedWills = []; // the old session ended: its delayed wills went out
      this.newInc(cs, t);
    } else {
      if (cs.exists === 'yes' && !e.present) {
        this.violate('session-present', t, cs.id, undefined, `conn ${c.n}: session lost: CONNACK session present = 0 for a session that exists${this.describeSession(cs)} [MQTT-3.2.2-3]`);
      } else if (cs.exists === 'no' && e.present) {
        this.violate('session-present', t, cs.id, undefined, `conn ${c.n}: session resurrected: CONNACK session present = 1 after the session ended [MQTT-3.2.2-3]`);
      }
      // Right after a restart memory is what the store held: learn which candidate it was.
      if (cs.pending.length === 0 && cs.base.length > 1) cs.base = e.present ? cs.base.filter((v) => v > 0) : [0];
      if (e.present) {
        if (cs.exists === 'yes' && cs.inc && !cs.inc.ended) {
          // resumed [MQTT-3.1.2-5]
        } else if (cs.exists === 'unknown' && cs.resurrect === 'same' && cs.inc && !cs.inc.ended && cs.endedSinceBarrier.length === 0) {
          // not expired after all: the same session
        } else {
          this.taintedInc(cs, t);
        }
        this.cancelDelayedWills(cs, t);
      } else {
        // The broker has no session (it expired, or was never there): what the store held for an
        // old one is being removed, not necessarily durably yet — and a new session's record is
        // written behind this CONNACK, not before it. So after a kill -9 the store may hold the
        // old record, none, or the new one (a barrier decides).
        if (cs.exists !== 'no') this.store(cs, t, 0);
        if (cs.inc && !cs.inc.ended) this.endInc(cs, cs.inc, t);
        cs.delayedWills = [];
        this.newInc(cs, t);
      }
    }
    // The record is (re)written with the new expiry, or a resumed session leaves the store.
    if (expiry > 0) this.store(cs, t, expiry);
    else if (!c.clean && e.present && mayHold) this.store(cs, t, 0);
    cs.exists = 'yes';
    cs.expiry = expiry;
    cs.conn = c;
    cs.deadline = null;
    c.status = 'open';
    c.durable = expiry > 0;
    c.inc = cs.inc;
  }

  private describeSession(cs: ClientState): string {
    const inc = cs.inc;
    return inc ? ` (since ${fmt(inc.startT)}, expiry ${cs.expiry} s)` : '';
  }

  private newInc(cs: ClientState, t: number): Inc {
    const inc: Inc = {
      n: ++this.incSeq,
      client: cs.id,
      startT: t,
      tainted: false,
      ended: false,
      endT: Infinity,
      intervals: new Map(),
      awaitingRel: new Map(),
      q2: new Map(),
      delivered: new Set(),
      firsts: new Map(),
      lastQuiet: null,
    };
    cs.inc = inc;
    this.incs.push(inc);
    return inc;
  }

  /** A session back from an uncertain state: everything any candidate had, as MAY only. */
  private taintedInc(cs: ClientState, t: number): void {
    const from = [...cs.endedSinceBarrier];
    if (cs.inc && !from.includes(cs.inc)) from.push(cs.inc);
    if (cs.inc && !cs.inc.ended) this.endInc(cs, cs.inc, t);
    const inc = this.newInc(cs, t);
    inc.tainted = true;
    for (const old of from) {
      for (const [filter, ivs] of old.intervals) {
        const list = inc.intervals.get(filter) ?? [];
        for (const iv of ivs) list.push({ ...iv, versions: iv.versions.map((v) => ({ ...v })), unsubSentT: null, endT: null, ghost: true });
        inc.intervals.set(filter, list);
      }
      for (const [id, msg] of old.awaitingRel) inc.awaitingRel.set(id, msg);
    }
  }

  private endInc(cs: ClientState, inc: Inc, t: number): void {
    if (inc.ended) return;
    inc.ended = true;
    inc.endT = t;
    inc.lastQuiet = null;
    this.releaseInc(inc);
    cs.endedSinceBarrier.push(inc);
  }

  private setUnknown(cs: ClientState, how: 'same' | 'tainted'): void {
    if (cs.exists === 'unknown' && cs.resurrect === 'tainted') how = 'tainted';
    cs.exists = 'unknown';
    cs.resurrect = how;
    if (cs.inc) this.releaseInc(cs.inc);
  }

  private stored(cs: ClientState): number {
    const last = cs.pending[cs.pending.length - 1];
    if (last) return last.value;
    return cs.base.length === 1 ? (cs.base[0] as number) : Math.max(...cs.base);
  }

  private store(cs: ClientState, observedT: number, value: number): void {
    cs.pending.push({ t: observedT, value });
  }

  private storedCandidates(cs: ClientState): number[] {
    return [...new Set([...cs.base, ...cs.pending.map((p) => p.value)])];
  }

  /** A SUBACK to a persistent session for a SUBSCRIBE sent at `sentT`: what was seen before it is durable. */
  private barrier(sentT: number): void {
    if (sentT <= this.lastBarrierT) return;
    this.lastBarrierT = sentT;
    for (const cs of this.clients.values()) {
      while (cs.pending.length > 0 && (cs.pending[0] as { t: number }).t < sentT) cs.base = [(cs.pending.shift() as { value: number }).value];
      cs.endedSinceBarrier = cs.endedSinceBarrier.filter((inc) => inc.endT >= sentT);
    }
  }

  /**
   * A connection ends. `how`: the socket closed ('closed'), a new connection took the session
   * over, or the broker stopped (SIGTERM: it closes every connection itself; kill: nothing
   * more is written).
   */
  private closeConn(c: ConnState, how: 'closed' | 'takeover' | 'term' | 'kill', t: number): void {
    const cs = this.client(c.client);
    if (c.status === 'connecting') {
      // CONNECT without CONNACK: the broker may have acted on it (Clean Start, expiry, takeover).
      c.status = 'closed';
      cs.connecting.delete(c);
      const expiry = c.v === 5 ? (c.connectExpiry ?? 0) : c.clean ? 0 : V311_EXPIRY_S;
      if (c.clean || expiry === 0) this.store(cs, t, 0);
      if (expiry > 0) this.store(cs, t, expiry);
      this.setUnknown(cs, 'tainted');
      return;
    }
    if (c.status !== 'open') return;
    c.status = 'closed';
    c.retainedChecks = [];
    if (c.inc) c.inc.lastQuiet = null;
    if (cs.conn !== c) return;
    cs.conn = null;

    const d = c.disconnect;
    let processed: 'yes' | 'no' | 'maybe' = 'no';
    if (d !== null) processed = how === 'closed' && c.abortedAt === null ? 'yes' : 'maybe';
    const droppedByClient = how === 'closed' && c.abortedAt !== null && d === null;
    const observedT = droppedByClient ? t + ABORT_NOTICE_MS : t;

    let expiryUncertain = false;
    if (d !== null && d.expiry !== null) {
      if (processed === 'yes') cs.expiry = d.expiry;
      else if (d.expiry !== cs.expiry) expiryUncertain = true;
    }

    if (c.will) {
      const w = c.will;
      if (processed === 'yes' && d?.reason === 0) {
        this.discardedWills.set(w.m.msg, t); // [MQTT-3.14.4-3]
      } else if (processed === 'no' || (processed === 'yes' && d?.reason === 4)) {
        const now = w.spec.delay === 0 || cs.expiry === 0;
        const byClient = droppedByClient || (processed === 'yes' && d?.reason === 4);
        if (now && byClient && w.spec.qos > 0 && how === 'closed') this.createObligations(w.m, t, t);
        if (!now) cs.delayedWills.push({ m: w.m, closeT: t, delay: w.spec.delay, stops: this.stops });
      }
    }

    if (cs.expiry === 0) {
      if (c.inc) this.endInc(cs, c.inc, t);
      if (cs.exists === 'yes') cs.exists = 'no';
      if (how !== 'kill' && this.stored(cs) > 0) this.store(cs, observedT, 0);
    } else {
      cs.deadline = cs.expiry === NEVER ? null : { lo: t + cs.expiry * 1000 - MARGIN_MS, hi: t + cs.expiry * 1000 + MARGIN_MS };
      if (how !== 'kill') this.store(cs, observedT, cs.expiry);
    }
    if (expiryUncertain) {
      this.store(cs, observedT, d?.expiry ?? 0);
      this.setUnknown(cs, d?.expiry === 0 ? 'tainted' : 'same');
      if (cs.deadline && d?.expiry !== undefined && d.expiry !== null) cs.deadline = widen(cs.deadline, t, [cs.expiry, d.expiry]);
    }
  }

  private onBrokerStop(how: 'term' | 'kill', t: number): void {
    this.stops++;
    for (const c of this.conns.values()) {
      if (c.status === 'open' || c.status === 'connecting') this.closeConn(c, how, t);
    }
    for (const m of this.msgs.values()) if (m.ackT === null && m.deadAt === null && !m.will) m.deadAt = t;
    if (how === 'term') {
      // A graceful stop commits everything first.
      this.barrier(t);
      for (const cs of this.clients.values()) {
        cs.base = cs.exists === 'unknown' ? this.storedCandidates(cs) : [this.stored(cs)];
        cs.pending = [];
        if (cs.exists !== 'unknown') cs.endedSinceBarrier = [];
      }
      return;
    }
    // kill -9: wills still to be published are not owed any more; wills discarded or cancelled
    // since the last barrier may come back.
    for (const o of this.obligations) if (o.state === 'open' && o.m.will) this.release(o);
    for (const wills of [this.discardedWills, this.cancelledWills]) {
      for (const [msg, seen] of wills) if (seen >= this.lastBarrierT) wills.delete(msg);
    }
    for (const cs of this.clients.values()) {
      const cands = this.storedCandidates(cs);
      cs.base = cands;
      cs.pending = [];
      const positive = cands.filter((v) => v > 0);
      if (positive.length === 0) {
        if (cs.exists !== 'no' && cs.inc && !cs.inc.ended) this.endInc(cs, cs.inc, t);
        cs.exists = 'no';
        cs.deadline = null;
        continue;
      }
      // Disconnected from the kill at the latest; the broker counts from its restart (hi, see onBrokerStart).
      const lo = t + Math.min(...positive) * 1000 - MARGIN_MS;
      cs.deadline = positive.includes(NEVER) && positive.length === 1 ? null : { lo: cs.deadline ? Math.min(cs.deadline.lo, lo) : lo, hi: Infinity };
      // 'same' only if no other incarnation could come back instead (Clean Start not yet durable).
      const same = cs.inc !== null && !cs.inc.ended && cs.endedSinceBarrier.length === 0;
      if (positive.length !== cands.length) this.setUnknown(cs, same ? 'same' : 'tainted');
      else if (cs.exists === 'no') this.setUnknown(cs, 'tainted');
      // Unsubscribes not yet durable may come back.
      const inc = cs.inc;
      if (inc && !inc.ended) {
        for (const [filter, ivs] of inc.intervals) {
          for (const iv of [...ivs]) {
            if (iv.endT !== null && iv.endT > this.lastBarrierT && !iv.durableEnd) ivs.push({ ...iv, unsubSentT: null, endT: null, ghost: true });
          }
          inc.intervals.set(filter, ivs);
        }
      }
    }
  }

  /** Sessions the broker had as connected, or whose disconnect it had not recorded, count from now. */
  private onBrokerStart(t: number): void {
    for (const cs of this.clients.values()) {
      if (!cs.deadline) continue;
      const positive = cs.base.filter((v) => v > 0);
      if (positive.length === 0) continue;
      cs.deadline.hi = positive.includes(NEVER) ? Infinity : Math.max(cs.deadline.hi === Infinity ? 0 : cs.deadline.hi, t + Math.max(...positive) * 1000 + MARGIN_MS);
    }
  }

  /** Session expiry deadlines that have passed. */
  private advance(t: number): void {
    for (const cs of this.clients.values()) {
      if (cs.conn !== null || cs.deadline === null || cs.exists === 'no') continue;
      if (t > cs.deadline.hi) {
        if (cs.inc && !cs.inc.ended) this.endInc(cs, cs.inc, cs.deadline.hi);
        cs.exists = 'no';
        cs.deadline = null;
        if (this.stored(cs) > 0) this.store(cs, t, 0);
      } else if (t > cs.deadline.lo && cs.exists === 'yes') {
        this.setUnknown(cs, 'same');
      }
    }
  }

  // ---- publishing ----------------------------------------------------------------------------

  private newMsg(msg: string, publisher: string, topic: string, qos: QoS, retain: boolean, expiry: number | null, t: number, conn: number, seq: number): MsgInfo {
    const m: MsgInfo = {
      msg,
      publisher,
      topic,
      qos,
      retain,
      empty: msg === '',
      expiry,
      will: false,
      firstSentT: t,
      firstConn: conn,
      firstSeq: seq,
      lastSentT: t,
      resent: false,
      ackT: null,
      refused: false,
      deadAt: null,
    };
    if (msg !== '') this.msgs.set(msg, m);
    return m;
  }

  private onPublish(e: Extract<Event, { k: 'publish' }>): void {
    const c = this.conns.get(e.conn);
    if (!c) return;
    const known = e.msg === '' ? undefined : this.msgs.get(e.msg);
    if (known) {
      known.lastSentT = e.t;
      known.resent = true;
      known.deadAt = null;
      return;
    }
    const m = this.newMsg(e.msg, c.client, e.topic, e.qos, e.retain, e.expiry, e.t, e.conn, c.pubSeq++);
    if (e.retain) {
      const list = this.retainedPubs.get(e.topic) ?? [];
      list.push(m);
      this.retainedPubs.set(e.topic, list);
    }
    if (m.empty) {
      this.clears.push(m);
      this.pendingClears.set(`${e.conn}|${e.id}`, m);
    }
  }

  private onAcked(e: Extract<Event, { k: 'acked' }>): void {
    const m = e.msg === '' ? this.pendingClears.get(`${e.conn}|${e.id}`) : this.msgs.get(e.msg);
    if (!m || m.ackT !== null) return;
    if (m.empty) this.pendingClears.delete(`${e.conn}|${e.id}`);
    m.ackT = e.t;
    if (e.rc >= 0x80) {
      m.refused = true;
      return;
    }
    this.stats.acknowledged++;
    if (m.empty || (m.expiry !== null && m.expiry < MUST_MIN_EXPIRY_S)) return;
    this.createObligations(m, e.t, m.firstSentT);
  }

  /**
   * The subscription `ivs` (one filter) guarantees `m` to its session: granted ≥ 1 by a SUBACK
   * before `from` (the PUBLISH first sent; a will's connection dropped), nothing asked of it
   * since, until now (the acknowledgement).
   */
  private stableGrant(ivs: Interval[] | undefined, m: MsgInfo, client: string, from: number): number {
    if (!ivs) return -1;
    for (const iv of ivs) {
      if (iv.ghost || iv.endT !== null || iv.unsubSentT !== null) continue;
      const last = iv.versions[iv.versions.length - 1];
      if (!last || last.sentT >= from) continue;
      if (last.ackT === null || last.ackT >= from || last.granted === null || last.granted >= 0x80) continue;
      if (last.nl && m.publisher === client) continue;
      return Math.min(last.granted, m.qos);
    }
    return -1;
  }

  /** Who must get `m`, acknowledged (or, for a will, published) at `t`; subscriptions settled before `from`. */
  private createObligations(m: MsgInfo, t: number, from: number): void {
    for (const cs of this.clients.values()) {
      const inc = cs.inc;
      if (cs.exists !== 'yes' || inc === null || inc.ended || cs.connecting.size > 0) continue;
      const pairs = new Set<string>();
      for (const [filter, ivs] of inc.intervals) {
        if (isShared(filter) || !matches(filter, m.topic)) continue;
        if (this.stableGrant(ivs, m, cs.id, from) >= 1) pairs.add(`${inc.n}|${filter}`);
      }
      if (pairs.size > 0) {
        if (cs.conn === null) this.stats.owedOffline++;
        this.addObligation({ m, incs: [inc], pairs, group: null, since: t, state: 'open', stops: this.stops });
      }
    }
    // Shared groups: every session that may have been a member while the broker routed the
    // message (also since ended, or uncertain) must be a settled one with a stable grant ≥ 1.
    const groups = new Map<string, { ok: boolean; incs: Inc[] }>();
    for (const inc of this.incs) {
      if (inc.endT <= from) continue;
      for (const [filter, ivs] of inc.intervals) {
        if (!isShared(filter) || !matches(filter, m.topic)) continue;
        if (!ivs.some((iv) => iv.firstSentT < t && (iv.endT === null || iv.endT > from))) continue;
        const g = groups.get(filter) ?? { ok: true, incs: [] };
        groups.set(filter, g);
        const cs = this.client(inc.client);
        if (cs.exists !== 'yes' || cs.inc !== inc || inc.ended || cs.connecting.size > 0 || this.stableGrant(ivs, m, cs.id, from) < 1) g.ok = false;
        else g.incs.push(inc);
      }
    }
    for (const [filter, g] of groups) {
      if (!g.ok || g.incs.length === 0) continue;
      const pairs = new Set(g.incs.map((inc) => `${inc.n}|${filter}`));
      this.addObligation({ m, incs: g.incs, pairs, group: filter, since: t, state: 'open', stops: this.stops });
    }
  }

  private addObligation(o: Obligation): void {
    this.stats.obligations++;
    if (o.incs.some((inc) => inc.delivered.has(o.m.msg))) {
      // It arrived before its acknowledgement did.
      o.state = 'done';
      this.stats.delivered++;
      return;
    }
    this.obligations.push(o);
    const list = this.byMsg.get(o.m.msg) ?? [];
    list.push(o);
    this.byMsg.set(o.m.msg, list);
    for (const inc of o.incs) {
      const set = this.byInc.get(inc) ?? new Set();
      set.add(o);
      this.byInc.set(inc, set);
    }
  }

  private release(o: Obligation): void {
    if (o.state !== 'open') return;
    o.state = 'released';
    this.stats.released++;
  }

  private releaseInc(inc: Inc): void {
    for (const o of this.byInc.get(inc) ?? []) this.release(o);
  }

  /** The session asked for a change to `filter`: what rested on it is released. */
  private releaseFilter(inc: Inc, filter: string): void {
    const key = `${inc.n}|${filter}`;
    for (const o of this.byInc.get(inc) ?? []) {
      if (o.state !== 'open' || !o.pairs.has(key)) continue;
      if (o.group !== null) {
        this.release(o);
        continue;
      }
      o.pairs.delete(key);
      if (o.pairs.size === 0) this.release(o);
    }
  }

  // ---- subscriptions ------------------------------------------------------------------------

  private onSubscribe(e: Extract<Event, { k: 'subscribe' }>): void {
    const c = this.conns.get(e.conn);
    const inc = c?.inc;
    if (!c || !inc || c.status !== 'open') return;
    const versions: SubVersion[] = [];
    for (const s of e.subs) {
      const v: SubVersion = { sentT: e.t, qos: s.qos, nl: s.nl, ackT: null, granted: null };
      versions.push(v);
      const ivs = inc.intervals.get(s.filter) ?? [];
      const live = ivs.find((iv) => iv.endT === null && iv.unsubSentT === null && !iv.ghost);
      if (live) live.versions.push(v);
      else ivs.push({ filter: s.filter, firstSentT: e.t, versions: [v], unsubSentT: null, endT: null, ghost: false });
      inc.intervals.set(s.filter, ivs);
      this.releaseFilter(inc, s.filter);
    }
    c.subReqs.set(e.id, { t: e.t, versions, filters: e.subs.map((s) => s.filter), stops: this.stops });
  }

  private onSuback(e: Extract<Event, { k: 'suback' }>): void {
    const c = this.conns.get(e.conn);
    const req = c?.subReqs.get(e.id);
    if (!c || !req) return;
    c.subReqs.delete(e.id);
    let ok = false;
    req.versions.forEach((v, i) => {
      const g = e.granted[i] ?? 0x80;
      v.granted = g;
      v.ackT = e.t;
      if (g < 0x80) ok = true;
      else {
        const filter = req.filters[i] as string;
        const iv = c.inc?.intervals.get(filter)?.find((x) => x.versions.includes(v));
        if (iv && iv.versions.every((x) => x.granted !== null && x.granted >= 0x80)) iv.endT = e.t;
      }
    });
    if (ok && c.durable && req.stops === this.stops) this.barrier(req.t);
    // Retained messages for a new subscription, when the retained state is settled.
    if (c.status !== 'open' || req.stops !== this.stops || !c.inc) return;
    req.versions.forEach((v, i) => {
      const filter = req.filters[i] as string;
      if (v.granted === null || v.granted >= 0x80 || isShared(filter) || v.nl) return;
      const expected = new Map<string, string>();
      for (const topic of this.knownTopics()) {
        if (!matches(filter, topic)) continue;
        const st = this.retainedState(topic, e.t, req.t);
        if (st === 'unknown') return;
        if (st !== null) expected.set(topic, st.msg);
      }
      this.stats.retainedChecks++;
      c.retainedChecks.push({ filter, t: e.t, expected });
    });
  }

  private knownTopics(): string[] {
    return [...this.retainedPubs.keys()];
  }

  private onUnsubscribe(e: Extract<Event, { k: 'unsubscribe' }>): void {
    const c = this.conns.get(e.conn);
    const inc = c?.inc;
    if (!c || !inc || c.status !== 'open') return;
    for (const filter of e.filters) {
      const live = inc.intervals.get(filter)?.find((iv) => iv.endT === null && iv.unsubSentT === null && !iv.ghost);
      if (live) live.unsubSentT = e.t;
      for (const iv of inc.intervals.get(filter) ?? []) if (iv.ghost && iv.endT === null && iv.unsubSentT === null) iv.unsubSentT = e.t;
      this.releaseFilter(inc, filter);
    }
    c.unsubReqs.set(e.id, { t: e.t, filters: e.filters });
  }

  private onUnsuback(e: Extract<Event, { k: 'unsuback' }>): void {
    const c = this.conns.get(e.conn);
    const req = c?.unsubReqs.get(e.id);
    if (!c || !req || !c.inc) return;
    c.unsubReqs.delete(e.id);
    for (const filter of req.filters) {
      for (const iv of c.inc.intervals.get(filter) ?? []) {
        if (iv.unsubSentT !== null && iv.endT === null && iv.unsubSentT <= req.t) {
          iv.endT = e.t;
          iv.durableEnd = c.durable;
        }
      }
    }
  }

  // ---- retained -----------------------------------------------------------------------------

  /** When the broker had surely processed `p` (acknowledged, or unacknowledged and the broker stopped). */
  private settledAt(p: MsgInfo): number | null {
    return p.ackT ?? p.deadAt;
  }

  /** The broker processed `p` before `q`. */
  private precedes(p: MsgInfo, q: MsgInfo): boolean {
    const s = this.settledAt(p);
    if (s !== null && s < q.firstSentT) return true;
    return p.firstConn === q.firstConn && p.firstSeq < q.firstSeq && !p.resent;
  }

  /**
   * The retained message of `topic` for a SUBSCRIBE sent at `before` and answered at `t`: a
   * message, null (none), or 'unknown' (a set or clear not yet settled, or not ordered).
   */
  private retainedState(topic: string, t: number, before: number): MsgInfo | null | 'unknown' {
    const pubs = (this.retainedPubs.get(topic) ?? []).filter((p) => p.firstSentT < t);
    if (pubs.length === 0) return null;
    for (const last of pubs) {
      if (last.ackT === null || last.ackT >= before || last.refused || last.expiry !== null || last.qos === 0) continue;
      if (pubs.every((p) => p === last || this.precedes(p, last))) return last.empty ? null : last;
    }
    return 'unknown';
  }

  /** `m` had been replaced or cleared (acknowledged) before `t`. */
  private superseded(m: MsgInfo, t: number): boolean {
    return (this.retainedPubs.get(m.topic) ?? []).some((p) => p !== m && !p.refused && p.ackT !== null && p.ackT < t && this.precedes(m, p));
  }

  // ---- deliveries ---------------------------------------------------------------------------

  private onDeliver(e: Extract<Event, { k: 'deliver' }>): void {
    this.stats.deliveries++;
    const c = this.conns.get(e.conn);
    const inc = c?.inc;
    if (!c || !inc) return;
    const client = c.client;
    const where = `conn ${c.n} (${client})`;

    if (e.msg === '') {
      if (e.retain) this.violate('unexpected', e.t, client, undefined, `${where}: a cleared retained message (empty payload) sent as retained on ${e.topic} [MQTT-3.3.1-10]`);
      else if (!this.clears.some((p) => p.topic === e.topic && p.firstSentT < e.t) || !this.anyInterval(inc, e.topic, e.t)) {
        this.violate('unexpected', e.t, client, undefined, `${where}: an empty message on ${e.topic} that no clear or subscription explains`);
      }
      return;
    }
    const m = this.msgs.get(e.msg);
    if (!m) {
      this.violate('unexpected', e.t, client, e.msg, `${where}: payload ${JSON.stringify(e.msg)} was never published`);
      return;
    }
    if (m.topic !== e.topic) {
      this.violate('unexpected', e.t, client, e.msg, `${where}: ${m.msg} published on ${m.topic} arrived on ${e.topic}`);
      return;
    }

    // QoS 2: a packet id still awaiting PUBREL means a resend [MQTT-4.3.3-9 for the receiver].
    let fresh = true;
    if (e.qos === 2) {
      const held = inc.awaitingRel.get(e.id);
      if (held !== undefined) {
        fresh = false;
        if (held !== e.msg && !e.retain) {
          this.violate('duplicate', e.t, client, e.msg, `${where}: QoS 2 packet id ${e.id} reused for ${e.msg} while ${held} still awaits PUBREL`);
        }
      } else inc.awaitingRel.set(e.id, e.msg);
    }
    if (!fresh) return;
    const first = !inc.delivered.has(m.msg);
    inc.delivered.add(m.msg);

    if (e.qos > m.qos) this.violate('unexpected', e.t, client, m.msg, `${where}: ${m.msg} published at QoS ${m.qos} delivered at QoS ${e.qos} [MQTT-3.8.4-8]`);
    if (first) this.checkMay(inc, m, e, where);
    if (first && !e.dup && m.expiry !== null && e.t > m.lastSentT + m.expiry * 1000 + EXPIRED_SLACK_MS) {
      this.violate('unexpected', e.t, client, m.msg, `${where}: ${m.msg} delivered ${fmt(e.t - m.lastSentT)} after it was sent with Message Expiry ${m.expiry} s [MQTT-3.3.2-5]`);
    }
    if (m.will && this.discardedWills.has(m.msg)) this.violate('unexpected', e.t, client, m.msg, `${where}: will ${m.msg} published although its connection ended with a normal DISCONNECT [MQTT-3.14.4-3]`);
    if (m.will && this.cancelledWills.has(m.msg)) this.violate('unexpected', e.t, client, m.msg, `${where}: will ${m.msg} published although its session was resumed within the Will Delay Interval [MQTT-3.1.3-9]`);

    if (e.qos === 2) {
      // Live: once per matching subscription (overlaps). Retained on subscribe: once per
      // SUBSCRIBE of a matching filter — a re-SUBSCRIBE with Retain Handling 0 sends the
      // retained message again ([MQTT-3.3.1-9], v5 §3.8.4), a new QoS 2 delivery.
      const key = e.retain ? `${m.msg} retained` : m.msg;
      const n = (inc.q2.get(key) ?? 0) + 1;
      inc.q2.set(key, n);
      const allowed = Math.max(1, e.retain ? this.matchingSubscribes(inc, m.topic, e.t) : this.matchingFilters(inc, m.topic));
      if (n > allowed) this.violate('duplicate', e.t, client, m.msg, `${where}: QoS 2 message ${m.msg} delivered ${n} times to one session (id ${e.id}, dup=${e.dup ? 1 : 0}) [MQTT-4.3.3]`);
    }
    if (first && !e.retain) this.checkOrder(inc, m, e, where);

    // Discharge what was owed.
    for (const o of this.byMsg.get(m.msg) ?? []) {
      if (o.state === 'open' && o.incs.includes(inc)) {
        o.state = 'done';
        this.stats.delivered++;
        if (this.stops > o.stops) this.stats.deliveredAfterRestart++;
      }
    }
    if (e.retain) {
      for (const rc of c.retainedChecks) if (rc.expected.get(e.topic) === m.msg) rc.expected.delete(e.topic);
    }
  }

  private anyInterval(inc: Inc, topic: string, t: number): boolean {
    for (const [filter, ivs] of inc.intervals) if (matches(filter, topic) && ivs.some((iv) => iv.versions.some((v) => v.sentT < t))) return true;
    return false;
  }

  private matchingFilters(inc: Inc, topic: string): number {
    let n = 0;
    for (const filter of inc.intervals.keys()) if (matches(filter, topic)) n++;
    return n;
  }

  /** SUBSCRIBEs of filters matching `topic` sent before `t` in this incarnation (each may bring the retained message). */
  private matchingSubscribes(inc: Inc, topic: string, t: number): number {
    let n = 0;
    for (const [filter, ivs] of inc.intervals) if (matches(filter, topic)) for (const iv of ivs) n += iv.versions.filter((v) => v.sentT < t).length;
    return n;
  }

  /** MAY: could the session have matched `m`? */
  private checkMay(inc: Inc, m: MsgInfo, e: Extract<Event, { k: 'deliver' }>, where: string): void {
    if (e.retain) {
      if (!m.retain || m.will) {
        this.violate('unexpected', e.t, inc.client, m.msg, `${where}: ${m.msg} arrived with RETAIN = 1 but was not published as retained [MQTT-3.3.1-9]`);
        return;
      }
      for (const [filter, ivs] of inc.intervals) {
        if (isShared(filter) || !matches(filter, m.topic)) continue;
        for (const iv of ivs) for (const v of iv.versions) if (v.sentT < e.t && (iv.ghost || !this.superseded(m, v.sentT)) && e.qos <= v.qos) return;
      }
      this.violate('unexpected', e.t, inc.client, m.msg, `${where}: retained ${m.msg} sent on subscribe though no SUBSCRIBE for ${m.topic} was made while it was the retained message [MQTT-3.3.1-6]`);
      return;
    }
    let qosOk = false;
    for (const [filter, ivs] of inc.intervals) {
      if (!matches(filter, m.topic)) continue;
      for (const iv of ivs) {
        if (!iv.versions.some((v) => v.sentT < e.t)) continue;
        if (iv.endT !== null && iv.endT < m.firstSentT) continue; // unsubscribed before it was sent
        // Processed before the SUBSCRIBE was sent — but a shared group's message a member took and
        // never acknowledged goes to another member when that one's session ends (MQTT 5 §4.8.2),
        // which may have joined the group since.
        if (!iv.ghost && !m.will && m.ackT !== null && m.ackT < iv.firstSentT && !isShared(filter)) continue;
        if (!m.will && iv.versions.every((v) => v.nl) && m.publisher === inc.client) continue; // [MQTT-3.8.3-3]
        if (iv.versions.some((v) => e.qos <= v.qos)) return;
        qosOk = true;
      }
    }
    const why = qosOk ? `at QoS ${e.qos}, above every matching subscription's` : 'that no subscription of this session could match';
    this.violate('unexpected', e.t, inc.client, m.msg, `${where}: ${m.msg} (topic ${m.topic}, sent ${fmt(m.firstSentT)}${m.ackT !== null ? `, acknowledged ${fmt(m.ackT)}` : ''}) delivered ${why}${inc.tainted ? ' (session came back from an uncertain state)' : ''}`);
  }

  /** MUST: first deliveries of one publisher's messages on one topic keep the broker's receiving order [MQTT-4.6.0-6]. */
  private checkOrder(inc: Inc, m: MsgInfo, e: Extract<Event, { k: 'deliver' }>, where: string): void {
    if (m.will) return;
    for (const [filter, ivs] of inc.intervals) if (isShared(filter) && matches(filter, m.topic) && ivs.length > 0) return;
    if (inc.tainted && m.firstSentT < inc.startT) return;
    const key = `${m.publisher}|${m.topic}|${m.qos}|${e.qos}`;
    const list = inc.firsts.get(key) ?? [];
    for (const prior of list) {
      if (!this.precedes(m, prior.m)) continue;
      if (this.subscriptionChanged(inc, m.topic, m.firstSentT, e.t)) continue;
      this.violate('order', e.t, inc.client, m.msg, `${where}: ${m.msg} arrived after ${prior.m.msg} (at ${fmt(prior.t)}) though the broker received it first (${m.publisher} on ${m.topic}, QoS ${m.qos} delivered at ${e.qos}) [MQTT-4.6.0-6]`);
      break;
    }
    list.push({ m, t: e.t });
    inc.firsts.set(key, list);
  }

  private subscriptionChanged(inc: Inc, topic: string, from: number, to: number): boolean {
    for (const [filter, ivs] of inc.intervals) {
      if (!matches(filter, topic)) continue;
      for (const iv of ivs) {
        if (iv.ghost) return true;
        if (iv.unsubSentT !== null && iv.unsubSentT > from && iv.unsubSentT < to) return true;
        if (iv.versions.some((v) => v.sentT > from && v.sentT < to)) return true;
      }
    }
    return false;
  }

  private cancelDelayedWills(cs: ClientState, t: number): void {
    for (const w of cs.delayedWills) {
      if (w.stops === this.stops && t < w.closeT + w.delay * 1000 - ABORT_NOTICE_MS - 300) this.cancelledWills.set(w.m.msg, t);
    }
    cs.delayedWills = [];
  }

  // ---- verdicts -----------------------------------------------------------------------------

  private onQuiet(conn: number, since: number, t: number): void {
    const c = this.conns.get(conn);
    const inc = c?.inc;
    if (!c || !inc || c.status !== 'open') return;
    this.stats.quiets++;
    inc.lastQuiet = { since, t };
    for (const o of this.byInc.get(inc) ?? []) {
      if (o.state !== 'open' || o.since >= since) continue;
      if (o.group !== null && !o.incs.every((x) => x.lastQuiet !== null && x.lastQuiet.since > o.since)) continue;
      o.state = 'violated';
      this.stats.lost++;
      const to = o.group !== null ? `any member of ${o.group} (${o.incs.map((x) => x.client).join(', ')})` : `${inc.client} (conn ${c.n})`;
      const via = o.group !== null ? '' : ` via ${[...o.pairs].map((p) => p.split('|')[1]).join(', ')}`;
      this.violate(
        'lost',
        t,
        inc.client,
        o.m.msg,
        `${o.m.will ? 'will' : 'acknowledged message'} ${o.m.msg} (${o.m.publisher} → ${o.m.topic}, QoS ${o.m.qos}, ${o.m.will ? 'connection dropped' : 'acknowledged'} at ${fmt(o.since)}) never reached ${to}${via}; quiet since ${fmt(since)}`,
      );
    }
    for (const rc of c.retainedChecks) {
      if (rc.t > since) continue;
      for (const [topic, msg] of rc.expected) {
        this.violate('retained-missing', t, inc.client, msg, `conn ${c.n} (${inc.client}): SUBSCRIBE ${rc.filter} at ${fmt(rc.t)} did not get the retained message ${msg} of ${topic} [MQTT-3.3.1-6]`);
      }
      rc.expected.clear();
    }
    c.retainedChecks = c.retainedChecks.filter((rc) => rc.expected.size > 0);
  }

  private violate(kind: ViolationKind, t: number, client: string, msg: string | undefined, text: string): void {
    this.violations.push({ kind, t, client, msg, text: `[${fmt(t)}] ${text}` });
  }

  /** The model's clock (the last event's time). */
  get time(): number {
    return this.now;
  }
}

function widen(d: { lo: number; hi: number }, t: number, expiries: number[]): { lo: number; hi: number } {
  const finite = expiries.filter((x) => x !== NEVER);
  if (finite.length === 0) return d;
  return { lo: Math.min(d.lo, t + Math.min(...finite) * 1000 - MARGIN_MS), hi: Math.max(d.hi, t + Math.max(...finite) * 1000 + MARGIN_MS) };
}

/** Milliseconds since the run started, as `12.345s`. */
export function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}
