/**
 * What a stored session's subscriptions find in the log past where it has read: the queued part
 * of getSessionMessages (durable-sessions.ts). Read-only; the session's own replay
 * (session/log-session.ts) is what delivers them.
 */
import { decodeEntries, REPLAY_STATUS_NEXT, REPLAY_STATUS_UNTIL, type ScanResult } from '../../native.js';
import type { QoS } from '../../wire/codec.js';
import { createMessage, decodeProperties } from '../../wire/message.js';
import type { Gap, Progress, SessionMessage, StoredSubscription } from '../registries.js';

export interface LogReader {
  readonly nShards: number;
  shardEnd(shard: number): number;
  scan(shard: number, from: number, filters: string[], starts: number[], maxEntries: number, until: number | null): ScanResult;
}

/**
 * Up to `limit` messages `subs` match in the log from the session's read position (its progress
 * record's `next`, or where its subscriptions start), skipping the ranges it dropped and the
 * `excess` its queue limit drops next; oldest first.
 */
export function waitingInLog(log: LogReader, clientId: string, subs: { filter: string; opts: StoredSubscription }[], progress: Progress | null, limit: number): SessionMessage[] {
  const replayed = subs.filter((s) => !s.filter.startsWith('$share/')); // shared deliveries are recorded, not replayed
  if (replayed.length === 0) return [];
  const filters = replayed.map((s) => s.filter);
  const want = limit + (progress?.excess ?? 0);
  const found: { ts: number; m: SessionMessage }[] = [];
  for (let s = 0; s < log.nShards; s++) {
    const starts = replayed.map((sub) => sub.opts.start?.[s] ?? 0);
    const gaps: Gap[] = progress?.gaps[s] ?? [];
    let from = progress?.next[s] ?? Math.min(...starts);
    const end = log.shardEnd(s);
    let taken = 0;
    while (from < end && taken < want) {
      const gap = gaps.find((g) => g.to === null || g.to > from);
      if (gap && gap.from <= from) {
        from = gap.to ?? end;
        continue;
      }
      const r = log.scan(s, from, filters, starts, want - taken, gap ? gap.from : null);
      const entries = decodeEntries(r.buffer, r.offsets);
      entries.forEach((e, j) => {
        let qos = -1;
        for (let w = 0; w < r.words; w++) {
          for (let bits = r.masks[j * r.words + w] as number; bits !== 0; bits &= bits - 1) {
            const sub = replayed[w * 32 + (31 - Math.clz32(bits & -bits))];
            if (!sub || (sub.opts.noLocal && e.publisher === clientId)) continue;
            qos = Math.max(qos, Math.min(sub.opts.qos, e.qos));
          }
        }
        if (qos < 0) return;
        const msg = createMessage(e.topic, Buffer.from(e.payload), e.qos, e.retain, decodeProperties(e.properties.length > 0 ? e.properties : null), e.publisher, e.timestamp);
        found.push({ ts: e.timestamp, m: { msg, qos: qos as QoS, inflight: false } });
        taken++;
      });
      if (r.next <= from || (r.status !== REPLAY_STATUS_NEXT && r.status !== REPLAY_STATUS_UNTIL)) break;
      from = r.next;
    }
  }
  found.sort((a, b) => a.ts - b.ts);
  return found.slice(progress?.excess ?? 0, (progress?.excess ?? 0) + limit).map((f) => f.m);
}
