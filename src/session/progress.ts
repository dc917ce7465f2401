/**
 * The durable progress record of a persistent session (one value per session in the store's
 * `acks` table, rewritten as the session advances; layout below, big-endian). Offsets are
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
import type { QoS } from '../protocol/codec.js';
import type { Pending } from './session.js';

const VERSION = 2;

/** Messages of one shard the session skips (its queue was full): [from, to), `to` null while open. */
export interface Gap {
  from: number;
  to: number | null;
}

export interface ProgressEntry {
  pending: Pending;
  packetId: number;
  phase: 0 | 1 | 2;
}

export interface Progress {
  next: number[];
  excess: number;
  backlog: number;
  backlogBytes: number;
  /** Per shard, oldest first. */
  gaps: Gap[][];
  entries: ProgressEntry[];
}

export function encodeProgress(p: Progress): Buffer {
  const n = p.next.length;
  let gapCount = 0;
  for (const g of p.gaps) gapCount += g.length;
  let size = 1 + 2 + 8 * n + 4 + 16 + 2 + gapCount * 18 + 4;
  const topics = p.entries.map((e) => (e.pending.retainedTopic === undefined ? null : Buffer.from(e.pending.retainedTopic, 'utf8')));
  p.entries.forEach((e, i) => (size += 16 + 4 * (e.pending.subIds?.length ?? 0) + (topics[i] ? 2 + (topics[i] as Buffer).length : 0)));
  const b = Buffer.allocUnsafe(size);
  let o = b.writeUInt8(VERSION, 0);
  o = b.writeUInt16BE(n, o);
  for (const v of p.next) o = b.writeDoubleBE(v, o);
  o = b.writeUInt32BE(p.excess, o);
  o = b.writeDoubleBE(p.backlog, o);
  o = b.writeDoubleBE(p.backlogBytes, o);
  o = b.writeUInt16BE(gapCount, o);
  p.gaps.forEach((gaps, shard) => {
    for (const g of gaps) {
      o = b.writeUInt16BE(shard, o);
      o = b.writeDoubleBE(g.from, o);
      o = b.writeDoubleBE(g.to ?? -1, o);
    }
  });
  o = b.writeUInt32BE(p.entries.length, o);
  p.entries.forEach((e, i) => {
    const topic = topics[i];
    const ref = e.pending.ref ?? { shard: 0, offset: 0 };
    o = b.writeUInt16BE(ref.shard, o);
    o = b.writeDoubleBE(ref.offset, o);
    o = b.writeUInt16BE(e.packetId, o);
    o = b.writeUInt8(e.pending.qos, o);
    o = b.writeUInt8(e.phase, o);
    o = b.writeUInt8((e.pending.retain ? 1 : 0) | (e.pending.pinned ? 2 : 0) | (topic ? 4 : 0), o);
    const ids = e.pending.subIds ?? [];
    o = b.writeUInt8(ids.length, o);
    for (const id of ids) o = b.writeUInt32BE(id, o);
    if (topic) {
      o = b.writeUInt16BE(topic.length, o);
      o += topic.copy(b, o);
    }
  });
  return b;
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
