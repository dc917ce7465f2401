/**
 * Durable sessions on the embedded store (SPEC B1–B3, B6, B7, B9).
 *
 * A message that a persistent session needs is appended to the log ONCE; each such session
 * then holds a small index entry pointing at it (shard + offset) plus its own delivery state.
 * Everything a publisher or subscriber was told is committed before it is told:
 *
 * - PUBACK / PUBREC to a publisher go out after the log append and the index entries of every
 *   persistent subscriber are durable (group commit), so an acknowledged message is never lost.
 * - an outbound QoS 2 PUBLISH is sent only after its packet id is recorded, and PUBREL only after
 *   the PUBREL phase is recorded: a restart resends with the same id and never delivers twice.
 * - an inbound QoS 2 packet id is recorded before PUBREC, so a re-sent PUBLISH after a restart is
 *   recognised as a duplicate.
 * - SUBACK goes out after the subscription is recorded.
 * Acknowledgements from subscribers (the index entry is deleted) and session records are written
 * in the background, in order; a crash can lose at most those not yet committed, which only
 * means a QoS 1 message acknowledged in the last moment is delivered again (with DUP).
 *
 * Metadata layout (tables of the store's meta database; keys are bytes):
 *   sessions       clientId                      → JSON SessionRecord
 *   subscriptions  clientId 00 filter            → JSON SubscriptionOptions
 *   acks           clientId 00 seq(u64 BE)       → entry: shard u16, offset u64, qos u8, retain u8,
 *                                                  packetId u16, phase u8, subIds JSON
 *   cursors        clientId 00 packetId(u16 BE)  → inbound QoS 2 awaiting PUBREL (empty value)
 *   retained       topic                         → retained message (header JSON + payload)
 * Client ids and topics never contain U+0000 ([MQTT-1.5.4-2]), so the 00 separator is safe.
 */
import type { Logger } from '../log.js';
import { createMessage, decodeProperties, encodeProperties, type Message } from '../message.js';
import { type AppendMessage, DurableStore, type LogPosition, type MetaOp, type StoreOpenOptions } from '../native.js';
import type { QoS } from '../protocol/codec.js';
import { InOrder } from './in-order.js';
import { type DurableRef, type Pending, QUEUE_PAGE, type Session, type SessionPersistence, type SubscriptionOptions } from './session.js';

interface StoredWill {
  topic: string;
  payload: string; // base64
  qos: QoS;
  retain: boolean;
  props: string | null; // encodeProperties, utf8
  delay: number;
}

/** The durable part of a session. `disconnectedAt` 0 = connected when written. */
export interface SessionRecord {
  expiry: number;
  disconnectedAt: number;
  will: StoredWill | null;
}

/** A session as found in the store at start-up. */
export interface RecoveredSession {
  clientId: string;
  record: SessionRecord;
  subscriptions: { filter: string; opts: SubscriptionOptions }[];
  incomingQos2: number[];
}

const SEP = Buffer.from([0]);

const idKey = (clientId: string): Buffer => Buffer.from(clientId, 'utf8');
const subKey = (clientId: string, filter: string): Buffer => Buffer.concat([idKey(clientId), SEP, Buffer.from(filter, 'utf8')]);
function entryKey(clientId: string, seq: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(seq / 0x100000000), 0);
  b.writeUInt32BE(seq >>> 0, 4);
  return Buffer.concat([idKey(clientId), SEP, b]);
}
function q2Key(clientId: string, id: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(id);
  return Buffer.concat([idKey(clientId), SEP, b]);
}

function encodeEntry(p: Pending, ref: DurableRef, packetId: number, phase: number): Buffer {
  const sub = p.subIds && p.subIds.length > 0 ? Buffer.from(JSON.stringify(p.subIds)) : Buffer.alloc(0);
  const b = Buffer.allocUnsafe(17 + sub.length);
  b.writeUInt16BE(ref.shard, 0);
  b.writeUInt32BE(Math.floor(ref.offset / 0x100000000), 2);
  b.writeUInt32BE(ref.offset >>> 0, 6);
  b[10] = p.qos;
  b[11] = p.retain ? 1 : 0;
  b.writeUInt16BE(packetId, 12);
  b[14] = phase;
  b.writeUInt16BE(0, 15);
  sub.copy(b, 17);
  return b;
}

function decodeEntry(key: Buffer, value: Buffer, prefixLen: number): { pending: Pending; packetId: number; phase: 0 | 1 | 2 } {
  const seq = key.readUInt32BE(prefixLen) * 0x100000000 + key.readUInt32BE(prefixLen + 4);
  const ref: DurableRef = { seq, shard: value.readUInt16BE(0), offset: value.readUInt32BE(2) * 0x100000000 + value.readUInt32BE(6) };
  const subIds = value.length > 17 ? (JSON.parse(value.subarray(17).toString('utf8')) as number[]) : undefined;
  return {
    pending: { msg: null, qos: value[10] as QoS, retain: value[11] === 1, subIds, ref },
    packetId: value.readUInt16BE(12),
    phase: value[14] as 0 | 1 | 2,
  };
}

export function encodeWill(msg: Message, delay: number): StoredWill {
  const props = encodeProperties(msg.properties);
  return { topic: msg.topic, payload: msg.payload.toString('base64'), qos: msg.qos, retain: msg.retain, props: props ? props.toString('utf8') : null, delay };
}

export function decodeWill(w: StoredWill, publisher: string): Message {
  return createMessage(w.topic, Buffer.from(w.payload, 'base64'), w.qos, w.retain, decodeProperties(w.props ? Buffer.from(w.props) : null), publisher);
}

function encodeRetained(msg: Message): Buffer {
  const header = Buffer.from(JSON.stringify({ p: msg.publisher, q: msg.qos, t: msg.receivedAt, pr: encodeProperties(msg.properties)?.toString('utf8') ?? null }));
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(header.length);
  return Buffer.concat([len, header, msg.payload]);
}

function decodeRetained(topic: string, value: Buffer): Message {
  const hlen = value.readUInt32BE(0);
  const h = JSON.parse(value.subarray(4, 4 + hlen).toString('utf8')) as { p: string; q: QoS; t: number; pr: string | null };
  return createMessage(topic, Buffer.from(value.subarray(4 + hlen)), h.q, true, decodeProperties(h.pr ? Buffer.from(h.pr) : null), h.p, h.t);
}

interface Batch {
  ops: MetaOp[];
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DurableSessions {
  /**
   * Delivery seqs: microseconds since the epoch, strictly increasing in this process; across a
   * restart they keep increasing with the clock (the index is ordered by them).
   */
  private seq = Date.now() * 1000;
  private batch: Batch | null = null;
  /**
   * Metadata batches are handed to the store's writer thread in the order they were made (it
   * commits them in that order); their completions are read back in that order too.
   */
  private readonly commits = new InOrder();
  /** Appends complete in the order they were made, as far as JS can see. */
  private readonly appends = new InOrder();
  private inflightCommits = new Set<Promise<void>>();
  private appendBatch: { msgs: AppendMessage[]; waiters: { resolve: (p: LogPosition) => void; reject: (e: unknown) => void }[] } | null = null;
  private closed = false;

  private constructor(
    readonly store: DurableStore,
    private readonly log: Logger,
  ) {}

  static async open(dir: string, options: StoreOpenOptions, log: Logger): Promise<DurableSessions> {
    const store = await DurableStore.open(dir, options);
    const rec = store.recovery();
    log.info({ dir, siteId: store.siteId, shards: store.nShards, segments: rec.segments, records: rec.records, ms: rec.elapsedMs, quarantined: rec.quarantined.length }, 'store opened');
    for (const q of rec.quarantined) log.error({ segment: q }, 'corrupt segment quarantined');
    return new DurableSessions(store, log);
  }

  private nextSeq(): number {
    this.seq = Math.max(this.seq + 1, Date.now() * 1000);
    return this.seq;
  }

  /**
   * Queue metadata writes; they are committed with everything queued in the same event-loop
   * turn, after every earlier batch. The Promise resolves once they are durable.
   */
  write(ops: MetaOp[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('store closed'));
    let b = this.batch;
    if (!b) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      b = this.batch = { ops: [], done, resolve, reject };
      setImmediate(() => this.flush());
    }
    for (const op of ops) b.ops.push(op);
    return b.done;
  }

  /** Like write, for state whose loss only causes a redelivery: failures are logged. */
  private background(ops: MetaOp[]): void {
    this.write(ops).catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'durable metadata write failed'));
  }

  private flush(): void {
    const b = this.batch;
    this.batch = null;
    if (!b) return;
    const done = this.commits.wrap(this.store.metaApply(b.ops)).then(b.resolve, b.reject);
    this.inflightCommits.add(done);
    void done.finally(() => this.inflightCommits.delete(done));
  }

  // ---- messages ---------------------------------------------------------------------------

  /**
   * Append a message to the log; resolves once durable under the fsync policy. Appends made in
   * the same event-loop turn cross to the store in one call (one promise for the batch).
   */
  append(msg: Message): Promise<LogPosition> {
    let b = this.appendBatch;
    if (!b) {
      b = this.appendBatch = { msgs: [], waiters: [] };
      setImmediate(() => this.flushAppends());
    }
    const props = encodeProperties(msg.properties);
    const m: AppendMessage = { publisher: msg.publisher, topic: msg.topic, qos: msg.qos, retain: msg.retain, payload: msg.payload };
    if (props) m.properties = props;
    b.msgs.push(m);
    const waiters = b.waiters;
    return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
  }

  private flushAppends(): void {
    const b = this.appendBatch;
    this.appendBatch = null;
    if (!b) return;
    this.appends.wrap(this.store.appendMany(b.msgs)).then(
      (positions) => b.waiters.forEach((w, i) => w.resolve(positions[i] as LogPosition)),
      (e: unknown) => b.waiters.forEach((w) => w.reject(e)),
    );
  }

  /** Resolves after every append started before it has resolved (keeps retained-only writes in order). */
  afterAppends(): Promise<null> {
    this.flushAppends(); // appends still gathering this turn come first
    return this.appends.wrap(Promise.resolve(null));
  }

  /** Record deliveries of one logged message to persistent sessions; resolves when durable. */
  enqueue(pos: LogPosition, targets: { clientId: string; pending: Pending }[]): Promise<void> {
    const ops: MetaOp[] = [];
    for (const t of targets) {
      const ref: DurableRef = { seq: this.nextSeq(), shard: pos.shard, offset: pos.offset };
      t.pending.ref = ref;
      ops.push({ op: 'put', table: 'acks', key: entryKey(t.clientId, ref.seq), value: encodeEntry(t.pending, ref, 0, 0) });
    }
    return this.write(ops);
  }

  /** Forget a delivery whose session went away while it was being recorded. */
  forget(clientId: string, ref: DurableRef): void {
    this.background([{ op: 'delete', table: 'acks', key: entryKey(clientId, ref.seq) }]);
  }

  // ---- sessions ---------------------------------------------------------------------------

  /** The recorder a persistent session reports its delivery progress to. */
  recorder(session: Session): SessionPersistence {
    const clientId = session.clientId;
    const put = (p: Pending, id: number, phase: number): Promise<void> => {
      const ref = p.ref as DurableRef;
      return this.write([{ op: 'put', table: 'acks', key: entryKey(clientId, ref.seq), value: encodeEntry(p, ref, id, phase) }]);
    };
    return {
      sent: (p, id) => put(p, id, 1),
      released: (p, id) => put(p, id, 2),
      completed: (p) => {
        if (p.ref) this.background([{ op: 'delete', table: 'acks', key: entryKey(clientId, p.ref.seq) }]);
      },
      load: (entries) => this.load(entries),
      loadMore: (s) => {
        for (const e of this.loadPage(s)) s.queue.push(e.pending);
      },
      spill: (s) => {
        const last = s.queue.last();
        if (!last?.ref) return false;
        s.backlogAfter = entryKey(clientId, last.ref.seq);
        return true;
      },
    };
  }

  /** Batch-read message bodies for deliveries that hold only their log position. */
  load(entries: Pending[]): void {
    const want = entries.filter((p) => p.msg === null && p.ref);
    if (want.length === 0) return;
    const got = this.store.readAt(want.map((p) => p.ref as DurableRef));
    got.forEach((m, i) => {
      const p = want[i] as Pending;
      if (!m) return; // dropped by retention: stays null and is discarded by the caller
      p.msg = createMessage(m.topic, Buffer.from(m.payload), m.qos, m.retain, decodeProperties(m.properties), m.publisher, m.timestamp);
    });
  }

  putSession(clientId: string, record: SessionRecord): Promise<void> {
    return this.write([{ op: 'put', table: 'sessions', key: idKey(clientId), value: Buffer.from(JSON.stringify(record)) }]);
  }

  /** Remove everything a session left in the store. */
  deleteSession(clientId: string): void {
    const prefix = Buffer.concat([idKey(clientId), SEP]);
    this.background([
      { op: 'delete', table: 'sessions', key: idKey(clientId) },
      { op: 'deletePrefix', table: 'subscriptions', key: prefix },
      { op: 'deletePrefix', table: 'acks', key: prefix },
      { op: 'deletePrefix', table: 'cursors', key: prefix },
    ]);
  }

  putSubscription(clientId: string, filter: string, opts: SubscriptionOptions): Promise<void> {
    return this.write([{ op: 'put', table: 'subscriptions', key: subKey(clientId, filter), value: Buffer.from(JSON.stringify(opts)) }]);
  }

  deleteSubscription(clientId: string, filter: string): Promise<void> {
    return this.write([{ op: 'delete', table: 'subscriptions', key: subKey(clientId, filter) }]);
  }

  /** Inbound QoS 2 id seen (before PUBREC) / released (PUBREL). */
  putIncomingQos2(clientId: string, id: number): Promise<void> {
    return this.write([{ op: 'put', table: 'cursors', key: q2Key(clientId, id), value: Buffer.alloc(0) }]);
  }

  deleteIncomingQos2(clientId: string, id: number): void {
    this.background([{ op: 'delete', table: 'cursors', key: q2Key(clientId, id) }]);
  }

  // ---- retained ---------------------------------------------------------------------------

  retainOps(msg: Message): MetaOp[] {
    const key = Buffer.from(msg.topic, 'utf8');
    return msg.payload.length === 0 ? [{ op: 'delete', table: 'retained', key }] : [{ op: 'put', table: 'retained', key, value: encodeRetained(msg) }];
  }

  loadRetained(): Message[] {
    return this.store.metaScanAll('retained', Buffer.alloc(0)).map((e) => decodeRetained(e.key.toString('utf8'), e.value));
  }

  // ---- recovery ---------------------------------------------------------------------------

  /**
   * The next page of a session's stored deliveries (index order = delivery order), advancing
   * `session.backlogAfter`; it becomes null once the last page is read.
   */
  loadPage(session: Session): { pending: Pending; packetId: number; phase: 0 | 1 | 2 }[] {
    const prefix = Buffer.concat([idKey(session.clientId), SEP]);
    const rows = this.store.metaScan('acks', prefix, session.backlogAfter, QUEUE_PAGE + 1);
    const page = rows.slice(0, QUEUE_PAGE).map((e) => decodeEntry(e.key, e.value, prefix.length));
    session.backlogAfter = rows.length > QUEUE_PAGE ? (rows[QUEUE_PAGE - 1] as { key: Buffer }).key : null;
    const last = page[page.length - 1]?.pending.ref?.seq;
    if (last !== undefined && last > session.loadedSeq) session.loadedSeq = last;
    return page;
  }

  /** Every persistent session in the store, with its subscriptions and deliveries in order. */
  loadSessions(): RecoveredSession[] {
    const byId = new Map<string, RecoveredSession>();
    for (const e of this.store.metaScanAll('sessions', Buffer.alloc(0))) {
      const clientId = e.key.toString('utf8');
      byId.set(clientId, { clientId, record: JSON.parse(e.value.toString('utf8')) as SessionRecord, subscriptions: [], incomingQos2: [] });
    }
    const split = (key: Buffer): [string, number] | null => {
      const i = key.indexOf(0);
      return i < 0 ? null : [key.subarray(0, i).toString('utf8'), i];
    };
    for (const e of this.store.metaScanAll('subscriptions', Buffer.alloc(0))) {
      const s = split(e.key);
      const r = s && byId.get(s[0]);
      if (r && s) r.subscriptions.push({ filter: e.key.subarray(s[1] + 1).toString('utf8'), opts: JSON.parse(e.value.toString('utf8')) as SubscriptionOptions });
    }
    for (const e of this.store.metaScanAll('cursors', Buffer.alloc(0))) {
      const s = split(e.key);
      const r = s && byId.get(s[0]);
      if (r && s) r.incomingQos2.push(e.key.readUInt16BE(s[1] + 1));
    }
    return [...byId.values()];
  }

  /** Commit what is queued, then close the store (releases the data-dir lock). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flushAppends();
    this.flush();
    this.closed = true;
    await Promise.all([...this.inflightCommits]);
    await this.store.close();
  }
}
