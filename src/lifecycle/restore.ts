/**
 * Restore at start: open the embedded store (or take the external registry persistence/open.ts
 * opened) and bring back retained messages and persistent sessions — subscriptions, deliveries
 * in flight, inbound QoS 2 ids, wills and expiry — and report every loss of stored data the
 * embedded store's opening found (or finds later) once.
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { LossInfo, StoreOpenOptions } from '../native.js';
import { NativeRetainedStore, type RetainedStore } from '../routing/retained.js';
import type { Router } from '../routing/router.js';
import { msglogConfig } from '../msglog/config.js';
import { DurableSessions } from '../persistence/embedded/durable-sessions.js';
import { messageOf, type QueueStore } from '../persistence/queue-registry.js';
import { decodeWill, type SessionRecord } from '../persistence/registries.js';
import { logSession } from '../session/log-session.js';
import { QueueSession } from '../session/queue-session.js';
import type { Pending, Session } from '../session/session.js';
import type { SessionLifecycle } from './sessions.js';

export interface RestoreParts {
  /** node.data_dir and the durable_storage / durable_sessions keys. */
  config: Config;
  log: Logger;
  retained: RetainedStore;
  router: Router;
  lifecycle: SessionLifecycle;
  /** The store is open: wire it (before sessions are restored through the router and lifecycle). */
  opened: (durable: DurableSessions) => void;
  /** Stored records found lost, counted (BrokerMetrics.recordsLost). */
  counters: { recordsLost: number };
}

export interface Restored {
  durable: DurableSessions;
  /** What recovery repaired, and the losses it found (each also logged). */
  summary: string[];
  losses: LossInfo[];
}

/**
 * Open the embedded store and restore from it.
 */
export async function restore(p: RestoreParts): Promise<Restored> {
  const { log, router, lifecycle } = p;
  const durable = await DurableSessions.open(p.config['node.data_dir'], storeOptions(p.config), log);
  p.opened(durable);
  const t0 = Date.now();
  // Retained records go from the store to the native tree without crossing to JavaScript.
  let retainedCount: number;
  if (p.retained instanceof NativeRetainedStore) {
    const got = durable.loadRetainedInto(p.retained.native);
    retainedCount = got.loaded + got.converted;
    if (got.converted > 0) log.info({ converted: got.converted }, 'retained messages converted to the record layout');
    if (got.unreadable > 0) log.error({ unreadable: got.unreadable }, 'unreadable retained entries skipped');
  } else {
    const msgs = durable.loadRetained();
    for (const msg of msgs) p.retained.set(msg);
    retainedCount = msgs.length;
  }
  const sessions = durable.loadSessions();
  const losses = [...durable.takeOpenLosses(), ...durable.reconcile(sessions)];
  const now = Date.now();
  let inflight = 0;
  const restored: [Session, (typeof sessions)[number]][] = [];
  log.info({ sessions: sessions.length, retained: retainedCount, ms: Date.now() - t0 }, 'restoring persistent sessions');
  let lastLog = Date.now();
  for (const r of sessions) {
    if (Date.now() - lastLog >= 1000) {
      lastLog = Date.now();
      log.info({ restored: restored.length, of: sessions.length }, 'restoring persistent sessions');
    }
    const session = lifecycle.create(r.clientId);
    session.expiryInterval = r.record.expiry;
    const ls = logSession(durable, session);
    session.durable = ls;
    for (const { filter, opts } of r.subscriptions) router.subscribe(session, filter, opts);
    if (r.progress) {
      // Deliveries in flight come back under their packet ids (resent with DUP); pinned ones
      // queued; the rest is read from the log from where the session had got to.
      for (const { pending, packetId, phase } of ls.restore(r.progress)) {
        if (pending.retainedTopic !== undefined) {
          // A retained message sent on subscribe: the topic's retained message now, if any.
          const msg = p.retained.get(pending.retainedTopic);
          if (!msg) continue;
          pending.msg = msg;
        }
        if (resumeDelivery(session, pending, packetId, phase)) inflight++;
      }
    } else {
      // Never recorded progress: it reads from where its subscriptions start (attach set
      // `next` to the log's end).
      for (let s = 0; s < durable.nShards; s++) {
        for (const { opts } of r.subscriptions) ls.setNext(s, Math.min(ls.next[s] as number, opts.start?.[s] ?? 0));
      }
    }
    for (const id of r.incomingQos2) session.addIncomingQos2(id);
    for (const { id, pos } of r.incomingHalf) (session.inboundHalf ??= new Map()).set(id, pos);
    restored.push([session, r]);
  }
  resumeTimers(lifecycle, restored, now, log);
  log.info({ sessions: sessions.length, inflight, retained: retainedCount, ms: Date.now() - t0 }, 'durable state loaded');
  // Files are damaged while the broker is stopped: a loss found later (a damaged segment found
  // as it is read) costs the sessions that had not read that far when it started.
  const readFromAtOpen = new Map<string, number[]>();
  for (const [session] of restored) {
    const next = (session.durable as { next?: number[] } | null)?.next;
    if (next && session.subscriptions.size > 0) readFromAtOpen.set(session.clientId, next.slice());
  }
  const report = (loss: LossInfo): void => reportLoss(loss, readFromAtOpen, log, p.counters);
  for (const loss of losses) report(loss);
  durable.watchLosses(report);
  return { durable, summary: durable.store.report().summary, losses };
}

/**
 * A restored delivery: in flight again under `packetId` when it was (phase 1: the PUBLISH resent
 * with DUP; 2: only its PUBREL) and that id is free, else queued. True when in flight.
 */
function resumeDelivery(session: Session, pending: Pending, packetId: number, phase: number): boolean {
  if (phase > 0 && packetId > 0 && !session.inflight.has(packetId)) {
    session.addInflight(packetId, { ...pending, phase: phase === 2 ? 'pubrel' : 'publish' });
    return true;
  }
  session.enqueue(pending);
  return false;
}

/** Wills and expiry of restored sessions, counted from when each went away. */
function resumeTimers(lifecycle: SessionLifecycle, restored: [Session, { clientId: string; record: SessionRecord }][], now: number, log: Logger): void {
  for (const [session, r] of restored) {
    // Sessions that were connected when the broker stopped count as disconnected now.
    const since = r.record.disconnectedAt || now;
    const will = r.record.will;
    if (will) {
      // Being published at the stop (publishWillOnce): not again if it reached the log.
      const mark = will.publishing;
      const found = mark !== undefined ? (lifecycle.store?.sessions.findWill?.(r.clientId, mark) ?? null) : null;
      if (found !== null) {
        log.info({ clientId: r.clientId, shard: found.shard, offset: found.offset }, 'a will being published at the stop is in the log: not published again');
        lifecycle.resumeWill(session, decodeWill(will, r.clientId), found, since);
      } else lifecycle.scheduleWill(session, decodeWill(will, r.clientId), will.delay - (now - since) / 1000, since);
    }
    lifecycle.startExpiry(session, r.record.expiry - (now - since) / 1000);
  }
}

/**
 * Restore from an external registry (opened by persistence/open.ts): retained messages, then
 * each persistent session with its subscriptions, its deliveries in flight under their packet ids
 * (resent with DUP when the client returns), retained messages sent on subscribe and not
 * completed (the topic's retained message in flight again under its packet id, or queued), the count of what waits in its queue
 * (read back when it returns), its inbound QoS 2 ids, will and expiry.
 */
export async function restoreRegistry(p: Omit<RestoreParts, 'opened' | 'counters' | 'config'>, store: QueueStore): Promise<void> {
  const { log, router, lifecycle } = p;
  const t0 = Date.now();
  const retained = await store.registry.loadRetained();
  for (const m of retained) p.retained.set(messageOf({ ...m, retain: true }));
  const sessions = await store.registry.loadSessions();
  const now = Date.now();
  let inflight = 0;
  const restored: [Session, (typeof sessions)[number]][] = [];
  for (const r of sessions) {
    const session = lifecycle.create(r.clientId);
    session.expiryInterval = r.record.expiry;
    const qs = new QueueSession(store, session);
    session.durable = qs;
    for (const { filter, opts } of r.subscriptions) router.subscribe(session, filter, opts);
    for (const e of r.inflight) {
      if (!e.message || session.inflight.has(e.packetId)) {
        store.complete(r.clientId, e.msgId); // its body is gone, or its packet id taken twice: nothing to resend
        continue;
      }
      qs.taken.add(e.msgId);
      session.addInflight(e.packetId, { msg: messageOf(e.message), qos: e.qos, retain: e.retain, subIds: e.subIds ?? undefined, ref: { shard: 0, offset: e.msgId }, phase: e.phase === 2 ? 'pubrel' : 'publish' });
      inflight++;
    }
    for (const pin of r.retainedPins) {
      // A retained message sent on subscribe, not completed: the topic's retained message now, if
      // any — in flight again under its packet id (resent with DUP, or only its PUBREL), else queued.
      const msg = p.retained.get(pin.topic);
      if (!msg) {
        store.unpinRetained(r.clientId, pin.topic);
        continue;
      }
      if (resumeDelivery(session, { msg, qos: pin.qos, retain: true, subIds: undefined, retainedTopic: pin.topic }, pin.packetId, pin.phase)) inflight++;
    }
    qs.backlog = r.queued;
    store.raiseIds(r.lastMsgId);
    for (const id of r.incomingQos2) session.addIncomingQos2(id);
    restored.push([session, r]);
  }
  resumeTimers(lifecycle, restored, now, log);
  log.info({ registry: store.name, sessions: sessions.length, inflight, retained: retained.length, ms: Date.now() - t0 }, 'durable state loaded');
}

/** The embedded store's options from the configuration. */
export function storeOptions(c: Config): StoreOpenOptions {
  return {
    nShards: c['durable_storage.messages.n_shards'],
    fsync: c['durable_storage.fsync'],
    retentionMs: c['durable_sessions.message_retention_period'] * 1000,
    segmentBytes: c['durable_storage.segment_bytes'],
    onCorruption: c['durable_storage.on_corruption'],
    // The message log's per-filter retention (msglog.retention); other topics keep retentionMs.
    retentionOverrides: msglogConfig(c).retention.map((r) => ({ filter: r.filter, ms: r.ms })),
  };
}

/**
 * Log a loss of stored data once (the store keeps it, `stratamq ds info` lists it), with the
 * persistent sessions it may cost messages: those that, when the broker started, had not read
 * the shard past it.
 */
function reportLoss(loss: LossInfo, readFromAtOpen: Map<string, number[]>, log: Logger, counters: { recordsLost: number }): void {
  if (loss.shard === null) {
    log.error({ ...loss }, 'store loss: metadata (sessions, subscriptions, progress and retained messages it held)');
    return;
  }
  const shard = loss.shard;
  const affected: string[] = [];
  for (const [clientId, next] of readFromAtOpen) {
    if ((next[shard] ?? 0) < (loss.to ?? Number.POSITIVE_INFINITY)) affected.push(clientId);
  }
  counters.recordsLost += loss.records ?? 0;
  log.error({ ...loss, sessions: affected.slice(0, 100), sessionsAffected: affected.length }, 'store loss: records gone');
}
