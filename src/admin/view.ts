/**
 * The broker as the admin API, /metrics and $SYS see it: read-only queries over its parts
 * (sessions, connections, subscriptions, retained messages, the store) and the few actions an
 * operator takes (kick a client, discard a session, clear a retained topic). It reads the
 * broker's parts through `AdminSource` (which broker.ts satisfies as it is) rather than adding
 * query methods to the composition root. Plain data in and out: the HTTP layer (server.ts) and
 * the CLI (cli/manage.ts, through HTTP) format it.
 */
import type { ConsumerCounters } from '../hooks/bus.js';
import type { LogSource } from '../msglog/source.js';
import type { BrokerMetrics } from '../hooks/metrics.js';
import { resolve } from 'node:path';
import type { Config } from '../config.js';
import type { ListenAddresses } from '../hooks/index.js';
import type { SessionLifecycle } from '../lifecycle/sessions.js';
import type { Logger } from '../log.js';
import type { LossInfo, StoreStats } from '../native.js';
import type { DurableSessions } from '../persistence/embedded/durable-sessions.js';
import type { Persistence } from '../persistence/registries.js';
import type { RetainedStore } from '../routing/retained.js';
import type { Router } from '../routing/router.js';
import { LogSession } from '../session/log-session.js';
import { QueueSession } from '../session/queue-session.js';
import type { Session } from '../session/session.js';
import type { SessionStore } from '../session/store.js';
import type { QoS } from '../wire/codec.js';
import { createMessage, isExpired, type Message } from '../wire/message.js';
import { RC } from '../wire/reason-codes.js';

/** What the admin room reads from the broker (the Broker class has all of it). */
export interface AdminSource extends LogSource {
  readonly config: Config;
  readonly log: Logger;
  readonly sessions: SessionStore;
  readonly retained: RetainedStore;
  readonly router: Router;
  readonly lifecycle: SessionLifecycle;
  readonly durable: DurableSessions | null;
  /** Where broker state is stored (embedded or an external registry), null in memory only. */
  readonly store: Persistence | null;
  readonly addresses: ListenAddresses;
  readonly metrics: BrokerMetrics;
}

export interface ClientSummary {
  clientId: string;
  connected: boolean;
  username: string | null;
  remoteAddress: string | null;
  protocolVersion: number | null;
  persistent: boolean;
  expiryInterval: number;
  subscriptions: number;
  inflight: number;
  queued: number;
}

export interface SubscriptionInfo {
  clientId: string;
  filter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: number;
  subscriptionId: number | null;
}

export interface MessageSummary {
  topic: string;
  qos: QoS;
  retain: boolean;
  publisher: string;
  receivedAt: number;
  payloadBytes: number;
  /** The payload as UTF-8 when it is valid text of at most 1 KiB, else null. */
  payload: string | null;
  payloadBase64: string | null;
}

export interface SessionDetail extends ClientSummary {
  subscriptionList: SubscriptionInfo[];
  /** Waiting messages (in flight first), as the store has them for a persistent session, up to the limit. */
  messages: (MessageSummary & { inflight: boolean })[];
  dropped: number;
}

export interface Page<T> {
  total: number;
  page: number;
  limit: number;
  items: T[];
}

export interface StorageInfo extends StoreStats {
  dataDir: string;
  losses: LossInfo[];
}

/** An admin action asked for something that is not there (404). */
export class NotFound extends Error {}

export function page<T>(all: T[], pageNo: number, limit: number): Page<T> {
  const from = (pageNo - 1) * limit;
  return { total: all.length, page: pageNo, limit, items: all.slice(from, from + limit) };
}

function messageSummary(m: Message): MessageSummary {
  const text = m.payload.length <= 1024 ? m.payload.toString('utf8') : null;
  const isText = text !== null && Buffer.byteLength(text) === m.payload.length && !text.includes('\uFFFD');
  return {
    topic: m.topic,
    qos: m.qos,
    retain: m.retain,
    publisher: m.publisher,
    receivedAt: m.receivedAt,
    payloadBytes: m.payload.length,
    payload: isText ? text : null,
    payloadBase64: isText || m.payload.length > 1024 ? null : m.payload.toString('base64'),
  };
}

export class AdminView {
  readonly startedAt = Date.now();
  /** The most clients connected at once since start (sampled when asked, and by $SYS / metrics). */
  private maxConnected = 0;

  constructor(readonly b: AdminSource) {}

  /** A session's queue: in memory behind the window, plus, for a persistent one, what it has left in the log. */
  queued(s: Session): number {
    return s.queue.length + (s.durable instanceof LogSession || s.durable instanceof QueueSession ? s.durable.backlog : 0);
  }

  summary(s: Session): ClientSummary {
    const o = s.outlet;
    return {
      clientId: s.clientId,
      connected: o !== null,
      username: o?.username ?? null,
      remoteAddress: o?.remoteAddress ?? null,
      protocolVersion: o?.protocolVersion ?? null,
      persistent: s.durable !== null,
      expiryInterval: s.expiryInterval,
      subscriptions: s.subscriptions.size,
      inflight: s.inflight.size,
      queued: this.queued(s),
    };
  }

  /** Clients (every session: connected ones, and persistent ones away), filtered, by client id. */
  clients(f: { username?: string | undefined; clientid?: string | undefined; connected?: boolean | undefined }): ClientSummary[] {
    const out: ClientSummary[] = [];
    for (const s of this.b.sessions) {
      if (f.clientid !== undefined && !s.clientId.startsWith(f.clientid)) continue;
      if (f.connected !== undefined && (s.outlet !== null) !== f.connected) continue;
      if (f.username !== undefined && s.outlet?.username !== f.username) continue;
      out.push(this.summary(s));
    }
    return out.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
  }

  private session(clientId: string): Session {
    const s = this.b.sessions.get(clientId);
    if (!s) throw new NotFound(`no session for client id ${JSON.stringify(clientId)}`);
    return s;
  }

  subscriptionsOf(s: Session): SubscriptionInfo[] {
    return [...s.subscriptions.values()].map((sub) => ({
      clientId: s.clientId,
      filter: sub.filter,
      qos: sub.qos,
      noLocal: sub.noLocal,
      retainAsPublished: sub.retainAsPublished,
      retainHandling: sub.retainHandling,
      subscriptionId: sub.subscriptionId ?? null,
    }));
  }

  /**
   * One session in detail. Its waiting messages: a persistent session's as the store has them
   * (MessageRegistry.getSessionMessages: in flight, then queued in the log), an in-memory
   * session's from its window and queue.
   */
  async sessionDetail(clientId: string, limit: number): Promise<SessionDetail> {
    const s = this.session(clientId);
    let messages: SessionDetail['messages'] = [];
    const store = this.b.store;
    if (s.durable !== null && store) {
      messages = (await store.messages.getSessionMessages(clientId, limit)).map((m) => ({ ...messageSummary(m.msg), qos: m.qos, inflight: m.inflight }));
    } else {
      for (const e of s.inflight.values()) if (e.msg && messages.length < limit) messages.push({ ...messageSummary(e.msg), qos: e.qos, inflight: true });
      for (const p of s.queue) if (p.msg && messages.length < limit) messages.push({ ...messageSummary(p.msg), qos: p.qos, inflight: false });
    }
    return { ...this.summary(s), subscriptionList: this.subscriptionsOf(s), messages, dropped: s.dropped };
  }

  /** Disconnect a connected client (v5: DISCONNECT 0x98 Administrative action). Its session stays, as after any disconnect. */
  kick(clientId: string): void {
    const o = this.b.sessions.get(clientId)?.outlet;
    if (!o) throw new NotFound(`no connected client ${JSON.stringify(clientId)}`);
    this.b.log.info({ clientId }, 'client kicked (admin)');
    o.disconnect(RC.AdministrativeAction, 'administrative action');
  }

  /**
   * End a session and delete its durable state (subscriptions, queue position, progress): a
   * connected client is disconnected first (0x98). Resolves once the deletion is durable.
   */
  async discard(clientId: string): Promise<void> {
    const s = this.session(clientId);
    // The close runs the lifecycle synchronously (will, record), so the end below comes after it.
    s.outlet?.disconnect(RC.AdministrativeAction, 'session discarded by administrative action');
    const current = this.b.sessions.get(clientId);
    this.b.log.info({ clientId }, 'session discarded (admin)');
    if (current) await this.b.lifecycle.end(current);
  }

  subscriptions(clientId: string | undefined): SubscriptionInfo[] {
    if (clientId !== undefined) return this.subscriptionsOf(this.session(clientId));
    const out: SubscriptionInfo[] = [];
    for (const s of this.b.sessions) out.push(...this.subscriptionsOf(s));
    return out;
  }

  subscriptionCount(): number {
    let n = 0;
    for (const s of this.b.sessions) n += s.subscriptions.size;
    return n;
  }

  /**
   * A page of the retained messages matching `filter`, by topic, from the broker's retained tree:
   * it holds every stored one (written through to the store) and the broker's own ($SYS, memory
   * only). Only the topics are listed whole (a few bytes each); the page's messages are read
   * alone, so a million matches cost their topic strings, not a million messages. `total`
   * counts an expired message not yet met (it is dropped when read, and left out of the page).
   */
  retained(filter: string, pageNo: number, limit: number): Page<MessageSummary> {
    const topics = this.b.retained.topics(filter).sort();
    const from = (pageNo - 1) * limit;
    const now = Date.now();
    const items: MessageSummary[] = [];
    for (const topic of topics.slice(from, from + limit)) {
      const m = this.b.retained.get(topic);
      if (m !== undefined && !isExpired(m, now)) items.push(messageSummary(m));
    }
    return { total: topics.length, page: pageNo, limit, items };
  }

  /** Clear a retained topic as an empty retained publish would (durably; subscribers get the empty message). */
  async deleteRetained(topic: string): Promise<void> {
    if (!this.b.retained.get(topic)) throw new NotFound(`no retained message on ${JSON.stringify(topic)}`);
    this.b.log.info({ topic }, 'retained message cleared (admin)');
    await this.b.router.publish(createMessage(topic, Buffer.alloc(0), 0, true, undefined, ''), null);
  }

  /** Backend pools and rules (src/backends/): whether each pool's server answers; what each rule did; its queue. */
  backends(): { pools: { type: string; pool: string; up: boolean; errors: number; lastError: string }[]; rules: { rule: string; pool: string; matched: number; done: number; failed: number; queue: ConsumerCounters | null }[] } {
    const m = this.b.metrics;
    return {
      pools: Object.values(m.backendPools).map((p) => ({ type: p.type, pool: p.pool, up: p.up, errors: p.errors, lastError: p.lastError })),
      rules: Object.entries(m.backendRules).map(([rule, c]) => {
        const event = rule.split('.').slice(3, -1).join('.');
        return { rule, pool: c.pool, matched: c.matched, done: c.done, failed: c.failed, queue: m.consumers[`backend.${c.pool}.${event}`] ?? null };
      }),
    };
  }

  storage(): StorageInfo | null {
    const d = this.b.durable;
    if (!d) return null;
    return { ...d.store.stats(), dataDir: resolve(this.b.config['node.data_dir']), losses: d.store.losses() };
  }

  /** Clients connected now, and the most at once since start. */
  connected(): { now: number; max: number } {
    const now = this.b.metrics.connections;
    if (now > this.maxConnected) this.maxConnected = now;
    return { now, max: this.maxConnected };
  }

  /** Queue depth over sessions (sum and largest) and deliveries in flight. */
  queues(): { sum: number; max: number; inflight: number; sessions: number; persistent: number } {
    let sum = 0;
    let max = 0;
    let inflight = 0;
    let persistent = 0;
    let sessions = 0;
    for (const s of this.b.sessions) {
      const q = this.queued(s);
      sum += q;
      if (q > max) max = q;
      inflight += s.inflight.size;
      sessions++;
      if (s.durable !== null) persistent++;
    }
    return { sum, max, inflight, sessions, persistent };
  }

  /** Retained messages in memory (the broker serves them from there; the store has the same, $SYS aside). */
  retainedCount(): number {
    return this.b.retained.size;
  }
}
