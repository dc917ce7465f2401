/**
 * The durable progress record of a persistent session (one value per session in the store's
 * `progress` table, rewritten as the session advances; layout below, big-endian). Offsets are
 * shard-wide log offsets, below 2^53, stored as float64.
 *
 *   u8  version (2; 1 = without the backlog counts)
 *   u16 shards n, then n × f64 next offset: every logged message of the session's subscriptions
 *       below it was taken (delivered, in flight or dropped); from it on, replay reads the log
 *   u32 excess: deliveries still to drop from the head of the backlog (drop_oldest)
 *   f64 backlog, f64 backlog bytes: what the queue limits count as waiting in the log
 *   u16 gaps, each: u16 shard, f64 from, f64 to (-1 = still open): ranges dropped (drop_newest)
 *   u32 entries, each: u16 shard, f64 offset, u16 packet id, u8 qos, u8 phase
 *       (0 queued, 1 PUBLISH sent, 2 PUBREL sent), u8 flags (1 retain, 2 pinned, 4 retained
 *       message sent on subscribe: shard and offset are 0, and after the ids come u16 topic
 *       length + topic), u8 subscription ids k, k × u32
 */
import type { QoS } from '../../wire/codec.js';
import type { Gap, Pending, Progress, ProgressEntry } from '../registries.js';

export type { Gap, Progress, ProgressEntry };

const VERSION = 2;

/**
 * Writes one progress record straight into a scratch buffer, entry by entry, and copies it out
 * (`finish`): LogSession.encode runs at every commit of a draining session, over its whole
 * window, so it builds no Progress object and no per-entry one. One writer at a time (the
 * scratch buffer is shared); `finish` ends it.
 */
export class ProgressWriter {
  private buf: Buffer;
  private view: DataView;
  private o = 0;
  private count = 0;
  private readonly countAt: number;

  constructor(head: Omit<Progress, 'entries'>) {
    this.buf = scratch;
    this.view = scratchView;
    const n = head.next.length;
    let gapCount = 0;
    for (const g of head.gaps) gapCount += g.length;
    // DataView wraps what does not fit its field; the layout's limits are checked here instead.
    fits('excess', head.excess, 0xffffffff);
    fits('gap count', gapCount, 0xffff);
    this.room(1 + 2 + 8 * n + 4 + 16 + 2 + gapCount * 18 + 4);
    const v = this.view;
    let o = 0;
    v.setUint8(o, VERSION);
    v.setUint16(o + 1, n);
    o += 3;
    for (const x of head.next) {
      v.setFloat64(o, x);
      o += 8;
    }
    v.setUint32(o, head.excess);
    v.setFloat64(o + 4, head.backlog);
    v.setFloat64(o + 12, head.backlogBytes);
    v.setUint16(o + 20, gapCount);
    o += 22;
    head.gaps.forEach((gaps, shard) => {
      for (const g of gaps) {
        v.setUint16(o, shard);
        v.setFloat64(o + 2, g.from);
        v.setFloat64(o + 10, g.to ?? -1);
        o += 18;
      }
    });
    this.countAt = o;
    this.o = o + 4;
  }

  /** One delivery: queued (phase 0, packet id 0), PUBLISH sent (1) or PUBREL sent (2). */
  add(p: Pending, packetId: number, phase: 0 | 1 | 2): void {
    const topic = p.retainedTopic;
    const ids = p.subIds;
    const k = ids === undefined ? 0 : ids.length;
    if (k > 255) throw new RangeError(`progress record: ${k} subscription identifiers on one delivery (at most 255)`);
    const topicLen = topic === undefined ? 0 : Buffer.byteLength(topic, 'utf8');
    fits('retained topic length', topicLen, 0xffff);
    this.room(16 + 4 * k + (topic === undefined ? 0 : 2 + topicLen));
    const v = this.view;
    const ref = p.ref;
    let o = this.o;
    v.setUint16(o, ref === undefined ? 0 : ref.shard);
    v.setFloat64(o + 2, ref === undefined ? 0 : ref.offset);
    v.setUint16(o + 10, packetId);
    v.setUint8(o + 12, p.qos);
    v.setUint8(o + 13, phase);
    v.setUint8(o + 14, (p.retain ? 1 : 0) | (p.pinned ? 2 : 0) | (topic !== undefined ? 4 : 0));
    v.setUint8(o + 15, k);
    o += 16;
    for (let i = 0; i < k; i++, o += 4) v.setUint32(o, (ids as number[])[i] as number);
    if (topic !== undefined) {
      v.setUint16(o, topicLen);
      o += 2 + this.buf.write(topic, o + 2, 'utf8');
    }
    this.o = o;
    this.count++;
  }

  /** The record, copied out of the scratch buffer. */
  finish(): Buffer {
    this.view.setUint32(this.countAt, this.count);
    return Buffer.from(this.buf.subarray(0, this.o));
  }

  /** Make room for `n` more bytes (the scratch buffer doubles, keeping what is written). */
  private room(n: number): void {
    if (this.o + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.o + n) size *= 2;
    const bigger = Buffer.allocUnsafeSlow(size);
    this.buf.copy(bigger, 0, 0, this.o);
    scratch = this.buf = bigger;
    scratchView = this.view = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
  }
}

function fits(what: string, value: number, max: number): void {
  if (!(value >= 0 && value <= max)) throw new RangeError(`progress record: ${what} ${value} out of range (0..${max})`);
}

let scratch = Buffer.allocUnsafeSlow(64 * 1024);
let scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);

export function encodeProgress(p: Progress): Buffer {
  const w = new ProgressWriter(p);
  for (const e of p.entries) w.add(e.pending, e.packetId, e.phase);
  return w.finish();
}

/** Decode a record; throws on a value that is not one (the caller logs and starts afresh). */
export function decodeProgress(b: Buffer, shards: number): Progress {
  const version = b[0];
  if (version !== VERSION && version !== 1) throw new Error(`unknown progress record version ${version}`);
  let o = 1;
  const n = b.readUInt16BE(o);
  o += 2;
  if (n !== shards) throw new Error(`progress record for ${n} shards, the store has ${shards}`);
  const next: number[] = [];
  for (let i = 0; i < n; i++, o += 8) next.push(b.readDoubleBE(o));
  const excess = b.readUInt32BE(o);
  o += 4;
  let backlog = 0;
  let backlogBytes = 0;
  if (version === VERSION) {
    backlog = b.readDoubleBE(o);
    backlogBytes = b.readDoubleBE(o + 8);
    o += 16;
  }
  const gaps: Gap[][] = next.map(() => []);
  const gapCount = b.readUInt16BE(o);
  o += 2;
  for (let i = 0; i < gapCount; i++, o += 18) {
    const to = b.readDoubleBE(o + 10);
    gaps[b.readUInt16BE(o)]?.push({ from: b.readDoubleBE(o + 2), to: to < 0 ? null : to });
  }
  const count = b.readUInt32BE(o);
  o += 4;
  const entries: ProgressEntry[] = [];
  for (let i = 0; i < count; i++) {
    const shard = b.readUInt16BE(o);
    const offset = b.readDoubleBE(o + 2);
    const packetId = b.readUInt16BE(o + 10);
    const qos = b[o + 12] as QoS;
    const phase = b[o + 13] as 0 | 1 | 2;
    const flags = b[o + 14] as number;
    const k = b[o + 15] as number;
    o += 16;
    let subIds: number[] | undefined;
    if (k > 0) {
      subIds = [];
      for (let j = 0; j < k; j++, o += 4) subIds.push(b.readUInt32BE(o));
    }
    if ((flags & 4) !== 0) {
      const len = b.readUInt16BE(o);
      const retainedTopic = b.toString('utf8', o + 2, o + 2 + len);
      o += 2 + len;
      entries.push({ pending: { msg: null, qos, retain: (flags & 1) !== 0, subIds, retainedTopic }, packetId, phase });
      continue;
    }
    entries.push({ pending: { msg: null, qos, retain: (flags & 1) !== 0, subIds, ref: { shard, offset }, pinned: (flags & 2) !== 0 }, packetId, phase });
  }
  if (o !== b.length) throw new Error('progress record has trailing bytes');
  return { next, excess, backlog, backlogBytes, gaps, entries };
}
