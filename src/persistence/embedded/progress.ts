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
import { LAYOUTS } from '../../native.js';
import type { QoS } from '../../wire/codec.js';
import type { Gap, Pending, Progress, ProgressEntry } from '../registries.js';

export type { Gap, Progress, ProgressEntry };

/** The layout, as the core defines it (strata_core::meta::progress; `layouts().progress`). */
const P = LAYOUTS.progress;
const VERSION = P.version;

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
    this.room(P.next + P.nextBytes * n + P.headTailBytes + gapCount * P.gapBytes + P.entryCountBytes);
    const v = this.view;
    v.setUint8(0, VERSION);
    v.setUint16(P.shardCount, n);
    let o = P.next;
    for (const x of head.next) {
      v.setFloat64(o, x);
      o += P.nextBytes;
    }
    v.setUint32(o + P.excess, head.excess);
    v.setFloat64(o + P.backlog, head.backlog);
    v.setFloat64(o + P.backlogBytes, head.backlogBytes);
    v.setUint16(o + P.gapCount, gapCount);
    o += P.headTailBytes;
    head.gaps.forEach((gaps, shard) => {
      for (const g of gaps) {
        v.setUint16(o + P.gapShard, shard);
        v.setFloat64(o + P.gapFrom, g.from);
        v.setFloat64(o + P.gapTo, g.to ?? P.gapOpen);
        o += P.gapBytes;
      }
    });
    this.countAt = o;
    this.o = o + P.entryCountBytes;
  }

  /** One delivery: queued (phase 0, packet id 0), PUBLISH sent (1) or PUBREL sent (2). */
  add(p: Pending, packetId: number, phase: 0 | 1 | 2): void {
    const topic = p.retainedTopic;
    const ids = p.subIds;
    const k = ids === undefined ? 0 : ids.length;
    if (k > 255) throw new RangeError(`progress record: ${k} subscription identifiers on one delivery (at most 255)`);
    const topicLen = topic === undefined ? 0 : Buffer.byteLength(topic, 'utf8');
    fits('retained topic length', topicLen, 0xffff);
    this.room(P.entryBytes + P.subIdBytes * k + (topic === undefined ? 0 : P.topicLenBytes + topicLen));
    const v = this.view;
    const ref = p.ref;
    let o = this.o;
    v.setUint16(o + P.entryShard, ref === undefined ? 0 : ref.shard);
    v.setFloat64(o + P.entryOffset, ref === undefined ? 0 : ref.offset);
    v.setUint16(o + P.entryPacketId, packetId);
    v.setUint8(o + P.entryQos, p.qos);
    v.setUint8(o + P.entryPhase, phase);
    v.setUint8(o + P.entryFlags, (p.retain ? P.flagRetain : 0) | (p.pinned ? P.flagPinned : 0) | (topic !== undefined ? P.flagRetainedMessage : 0));
    v.setUint8(o + P.entrySubIdCount, k);
    o += P.entryBytes;
    for (let i = 0; i < k; i++, o += P.subIdBytes) v.setUint32(o, (ids as number[])[i] as number);
    if (topic !== undefined) {
      v.setUint16(o, topicLen);
      o += P.topicLenBytes + this.buf.write(topic, o + P.topicLenBytes, 'utf8');
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
  if (version !== VERSION && version !== P.versionNoBacklog) throw new Error(`unknown progress record version ${version}`);
  const n = b.readUInt16BE(P.shardCount);
  if (n !== shards) throw new Error(`progress record for ${n} shards, the store has ${shards}`);
  let o = P.next;
  const next: number[] = [];
  for (let i = 0; i < n; i++, o += P.nextBytes) next.push(b.readDoubleBE(o));
  const excess = b.readUInt32BE(o + P.excess);
  let backlog = 0;
  let backlogBytes = 0;
  let gapCount: number;
  if (version === VERSION) {
    backlog = b.readDoubleBE(o + P.backlog);
    backlogBytes = b.readDoubleBE(o + P.backlogBytes);
    gapCount = b.readUInt16BE(o + P.gapCount);
    o += P.headTailBytes;
  } else {
    // Version 1: no backlog counts; the u16 gap count right after the u32 `excess`.
    gapCount = b.readUInt16BE(o + P.excess + 4);
    o += P.excess + 4 + 2;
  }
  const gaps: Gap[][] = next.map(() => []);
  for (let i = 0; i < gapCount; i++, o += P.gapBytes) {
    const to = b.readDoubleBE(o + P.gapTo);
    gaps[b.readUInt16BE(o + P.gapShard)]?.push({ from: b.readDoubleBE(o + P.gapFrom), to: to < 0 ? null : to });
  }
  const count = b.readUInt32BE(o);
  o += P.entryCountBytes;
  const entries: ProgressEntry[] = [];
  for (let i = 0; i < count; i++) {
    const shard = b.readUInt16BE(o + P.entryShard);
    const offset = b.readDoubleBE(o + P.entryOffset);
    const packetId = b.readUInt16BE(o + P.entryPacketId);
    const qos = b[o + P.entryQos] as QoS;
    const phase = b[o + P.entryPhase] as 0 | 1 | 2;
    const flags = b[o + P.entryFlags] as number;
    const k = b[o + P.entrySubIdCount] as number;
    o += P.entryBytes;
    let subIds: number[] | undefined;
    if (k > 0) {
      subIds = [];
      for (let j = 0; j < k; j++, o += P.subIdBytes) subIds.push(b.readUInt32BE(o));
    }
    const retain = (flags & P.flagRetain) !== 0;
    if ((flags & P.flagRetainedMessage) !== 0) {
      const len = b.readUInt16BE(o);
      const retainedTopic = b.toString('utf8', o + P.topicLenBytes, o + P.topicLenBytes + len);
      o += P.topicLenBytes + len;
      entries.push({ pending: { msg: null, qos, retain, subIds, retainedTopic }, packetId, phase });
      continue;
    }
    entries.push({ pending: { msg: null, qos, retain, subIds, ref: { shard, offset }, pinned: (flags & P.flagPinned) !== 0 }, packetId, phase });
  }
  if (o !== b.length) throw new Error('progress record has trailing bytes');
  return { next, excess, backlog, backlogBytes, gaps, entries };
}
