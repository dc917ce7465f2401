/**
 * Redis backend (ioredis): single server, Sentinel or Cluster, and EMQX 4's Redis layout.
 *
 *   mqtt:client:<clientid>   hash   state 1|0, online_at, offline_at (seconds)
 *   mqtt:node:<node>         hash   clientid → connected at (seconds), while connected
 *   mqtt:sub:<clientid>      hash   topic → qos: subscriptions applied at connect (on_subscribe_lookup)
 *   mqtt:msg:<msgid>         hash   id, from, qos, topic, payload, ts (seconds), retain (true|false)
 *   mqtt:msg:<topic>         zset   msgid scored by the publish time (ms)
 *   mqtt:retain:<topic>      hash   the retained message, the same fields as mqtt:msg:<msgid>
 *   mqtt:acked:<clientid>:<topic>  string  the last msgid the client acknowledged on the topic
 *
 * Offline fetch at subscribe (on_message_fetch_for_queue / _for_pubsub) reads mqtt:msg:<topic>;
 * on_message_acked_for_queue deletes an acknowledged message, on_message_acked(_for_pubsub)
 * moves the read position.
 *
 * One connection multiplexes every command (pool_size bounds the events in flight). While the
 * server is unreachable commands wait in ioredis' offline queue (reconnecting every
 * `auto_reconnect` seconds) and are sent when it returns; what waits is bounded by the rule
 * queues in front (pool_size in flight, max_queued waiting).
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';
import type { QoS } from '../wire/codec.js';
import { topicMatches } from '../wire/topic.js';
import type { FunctionName, PoolConfig } from './config.js';
import type { BackendHost, EventData, StoredMessage } from './event.js';
import { idAfter } from './msgid.js';
import { type EventValues, type RedisTemplate, redisArgs } from './placeholders.js';
import { Pool } from './pool.js';

/** Reply errors that mean the connection is not usable (yet): retried like an unreachable server. */
const CONNECTION_REPLIES = /^(WRONGPASS|NOAUTH|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY)/;

export class RedisPool extends Pool {
  client: Redis | Cluster | null = null;

  constructor(cfg: PoolConfig, log: Logger) {
    super(cfg, log);
  }

  /** ioredis' Cluster class, once loaded (instanceof checks). */
  private ClusterClass: typeof Cluster | null = null;

  async open(): Promise<void> {
    const { Cluster, Redis } = await import('ioredis'); // loaded only by a broker with Redis rules
    this.ClusterClass = Cluster;
    const c = this.cfg;
    const opts: RedisOptions = {
      username: c.username || undefined,
      password: c.password || undefined,
      db: c.database === '' ? 0 : Number(c.database),
      tls: c.ssl ? {} : undefined,
      connectTimeout: c.connectTimeoutMs,
      // query_timeout: a server that stops answering has its connection reset and the command is
      // retried (a commandTimeout would also expire commands waiting for the server to return).
      socketTimeout: c.queryTimeoutMs || undefined,
      // Commands wait while the server is away (bounded by the rule queues), unless auto_reconnect = 0.
      maxRetriesPerRequest: c.reconnectMs === 0 ? 0 : null,
      enableOfflineQueue: c.reconnectMs !== 0,
      retryStrategy: () => Math.max(c.reconnectMs, 1000),
      lazyConnect: false,
    };
    let client: Redis | Cluster;
    if (c.mode === 'cluster') client = new Cluster([...c.servers], { redisOptions: opts, clusterRetryStrategy: () => Math.max(c.reconnectMs, 1000), enableOfflineQueue: opts.enableOfflineQueue ?? true });
    else if (c.mode === 'sentinel') client = new Redis({ ...opts, sentinels: [...c.servers], name: c.sentinel, sentinelPassword: c.password || undefined });
    else client = new Redis({ ...opts, host: c.servers[0]?.host, port: c.servers[0]?.port });
    client.on('ready', () => this.markUp());
    client.on('error', (e: unknown) => this.markDown(e));
    client.on('close', () => {
      if (!this.closed && this.state.up) this.markDown(new Error('connection closed'));
    });
    this.client = client;
  }

  private isCluster(c: Redis | Cluster | null): c is Cluster {
    return this.ClusterClass !== null && c instanceof this.ClusterClass;
  }

  connectionError(e: unknown): boolean {
    const err = e as { name?: string; message?: string };
    if (err?.name === 'ReplyError') return CONNECTION_REPLIES.test(err.message ?? '');
    return !/timed out/i.test(err?.message ?? '');
  }

  protected async end(): Promise<void> {
    this.client?.disconnect();
  }

  /** One command; its reply. Commands of one event-loop turn go out as one pipeline (one write). */
  call(args: (string | Buffer)[]): Promise<unknown> {
    return this.run(() => this.send(args));
  }

  private pending: { args: (string | Buffer)[]; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];

  private send(args: (string | Buffer)[]): Promise<unknown> {
    const client = this.client;
    if (!client) return Promise.reject(new Error(`backend pool ${this.cfg.id} not open`));
    // A cluster pipeline must stay within one hash slot: commands go one by one there.
    if (this.isCluster(client)) return client.callBuffer(String(args[0]), args.slice(1)) as Promise<unknown>;
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush(client));
      this.pending.push({ args, resolve, reject });
    });
  }

  private flush(client: Redis): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 1) {
      const b = batch[0] as (typeof batch)[number];
      (client.callBuffer(String(b.args[0]), b.args.slice(1)) as Promise<unknown>).then(b.resolve, b.reject);
      return;
    }
    const p = client.pipeline();
    for (const { args } of batch) p.callBuffer(String(args[0]), args.slice(1));
    p.exec().then(
      (results) =>
        batch.forEach((b, i) => {
          const [err, reply] = results?.[i] ?? [new Error('no reply'), null];
          if (err) b.reject(err);
          else b.resolve(reply);
        }),
      (e: unknown) => {
        for (const b of batch) b.reject(e);
      },
    );
  }

  private publishes: { keys: string[]; args: (string | Buffer)[]; resolve: () => void; reject: (e: unknown) => void }[] = [];

  /** Queue one message's writes for this turn's script call (at most PUBLISH_BATCH per call). */
  private publishBatched(keys: string[], args: (string | Buffer)[]): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.publishes.length === 0) setImmediate(() => this.flushPublishes());
      this.publishes.push({ keys, args, resolve, reject });
    });
  }

  private flushPublishes(): void {
    const all = this.publishes;
    this.publishes = [];
    for (let i = 0; i < all.length; i += PUBLISH_BATCH) {
      const batch = all.slice(i, i + PUBLISH_BATCH);
      const keys = batch.flatMap((b) => b.keys);
      // The values in one argument (PUBLISH_LUA unpacks it): one buffer to send instead of 15
      // per message, each converted and framed by the client (most of the rule's CPU and garbage).
      const args = [packValues(batch.map((b) => b.args))];
      this.script(PUBLISH_SCRIPT, keys, args, true).then(
        () => {
          for (const b of batch) b.resolve();
        },
        (e: unknown) => {
          for (const b of batch) b.reject(e);
        },
      );
    }
  }

  /** Run a Lua script by its SHA1, loading it (EVAL) when the server does not have it (a restart forgets them). */
  private async script(sc: { lua: string; sha: string }, keys: string[], args: (string | Buffer)[], once = false): Promise<unknown> {
    // `once`: the caller retries (pool.run) — the command is sent once here, not retried twice over.
    const send = (a: (string | Buffer)[]): Promise<unknown> => (once ? this.send(a) : this.call(a));
    try {
      return await send(['EVALSHA', sc.sha, String(keys.length), ...keys, ...args]);
    } catch (e) {
      if (!/^NOSCRIPT/.test((e as Error).message ?? '')) throw e;
      return send(['EVAL', sc.lua, String(keys.length), ...keys, ...args]);
    }
  }

  /** Custom commands of a rule, in order. */
  async commands(list: readonly RedisTemplate[], v: EventValues): Promise<void> {
    for (const t of list) await this.call(redisArgs(t, v));
  }

  /** A built-in function. */
  async fn(name: FunctionName, e: EventData, host: BackendHost): Promise<void> {
    const secs = String(Math.floor(e.at / 1000));
    switch (name) {
      case 'on_client_connected':
        await Promise.all([this.call(['HSET', `mqtt:client:${e.clientId}`, 'state', '1', 'online_at', secs]), this.call(['HSET', `mqtt:node:${e.node}`, e.clientId, secs])]);
        return;
      case 'on_client_disconnected':
        await Promise.all([this.call(['HSET', `mqtt:client:${e.clientId}`, 'state', '0', 'offline_at', secs]), this.call(['HDEL', `mqtt:node:${e.node}`, e.clientId])]);
        return;
      case 'on_subscribe_lookup': {
        const flat = (await this.call(['HGETALL', `mqtt:sub:${e.clientId}`])) as Buffer[];
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const topic = String(flat[i]);
          const qos = Number(String(flat[i + 1]));
          await host.subscribe(e.clientId, topic, (qos >= 0 && qos <= 2 ? qos : 0) as QoS);
        }
        return;
      }
      case 'on_message_publish': {
        const m = e.msg;
        if (!m) return;
        const id = e.msgid();
        if (this.isCluster(this.client)) {
          // The two keys are in different slots: two commands.
          await Promise.all([this.call(['HSET', `mqtt:msg:${id}`, ...messageFields(id, e)]), this.call(['ZADD', `mqtt:msg:${m.topic}`, String(m.receivedAt), id])]);
          return;
        }
        // The messages of one event-loop turn go in one server-side script call (both writes each).
        await this.run(() => this.publishBatched([`mqtt:msg:${id}`, `mqtt:msg:${m.topic}`], [String(m.receivedAt), ...messageFields(id, e)]));
        return;
      }
      case 'on_message_retain': {
        const m = e.msg;
        if (!m?.retain || m.payload.length === 0) return;
        await this.call(['HSET', `mqtt:retain:${m.topic}`, ...messageFields(e.msgid(), e)]);
        return;
      }
      case 'on_retain_delete': {
        const m = e.msg;
        if (!m?.retain || m.payload.length > 0) return;
        await this.call(['DEL', `mqtt:retain:${m.topic}`]);
        return;
      }
      case 'on_retain_lookup': {
        const filter = e.topic;
        if (filter === null || filter.startsWith('$share/')) return;
        for (const key of await this.retainedKeys(filter)) {
          const h = hashOf((await this.call(['HGETALL', key])) as Buffer[]);
          const topic = h.get('topic')?.toString();
          const payload = h.get('payload');
          if (topic === undefined || !payload || !topicMatches(filter, topic)) continue;
          const qos = Number(h.get('qos')?.toString() ?? '0');
          const msg: StoredMessage = { topic, payload, qos: (qos >= 0 && qos <= 2 ? qos : 0) as QoS, publisher: h.get('from')?.toString() ?? '', receivedAt: Number(h.get('ts')?.toString() ?? '0') * 1000 };
          host.deliverRetained(e.clientId, filter, msg);
        }
        return;
      }
      case 'on_message_acked':
      case 'on_message_acked_for_pubsub': {
        const m = e.msg;
        if (!m) return;
        await this.call(['SET', `mqtt:acked:${e.clientId}:${m.topic}`, e.msgid()]);
        return;
      }
      case 'on_message_acked_for_queue': {
        // One-to-one: a message one subscriber acknowledged is gone for everyone.
        const m = e.msg;
        if (!m) return;
        const id = e.msgid();
        await Promise.all([this.call(['ZREM', `mqtt:msg:${m.topic}`, id]), this.call(['DEL', `mqtt:msg:${id}`])]);
        return;
      }
      case 'on_message_fetch_for_queue':
      case 'on_message_fetch_for_pubsub':
        await this.fetch(e, host, name === 'on_message_fetch_for_pubsub');
        return;
      case 'on_message_fetch':
        return; // SQL only (backendsConfig refuses it for Redis)
    }
  }

  /**
   * Offline fetch at subscribe: the messages on_message_publish stored under `mqtt:msg:<topic>`
   * for each topic the filter matches (wildcards too, unlike EMQX), QoS > 0, oldest first, at most
   * max_returned_count per topic, within time_range. Pubsub: only those after the client's read
   * position `mqtt:acked:<clientid>:<topic>`. Each keeps its stored id, so its acknowledgement
   * moves that position (pubsub) or removes it (queue).
   */
  private async fetch(e: EventData, host: BackendHost, pubsub: boolean): Promise<void> {
    const filter = e.topic;
    if (filter === null || filter.startsWith('$share/')) return;
    const topics = /[+#]/.test(filter) ? (await this.scanKeys('mqtt:msg:', filter, 'zset')).filter((t) => topicMatches(filter, t)) : [filter];
    const c = this.cfg;
    const min = c.timeRangeMs > 0 ? String(Date.now() - c.timeRangeMs) : '-inf';
    for (const topic of topics) {
      let ids = ((await this.call(['ZRANGEBYSCORE', `mqtt:msg:${topic}`, min, '+inf'])) as Buffer[]).map(String);
      if (pubsub) {
        const pos = await this.call(['GET', `mqtt:acked:${e.clientId}:${topic}`]);
        if (pos !== null && pos !== undefined) ids = ids.filter((id) => idAfter(id, String(pos)));
      }
      let sent = 0;
      for (const id of ids) {
        if (c.maxReturned > 0 && sent >= c.maxReturned) break;
        const h = hashOf((await this.call(['HGETALL', `mqtt:msg:${id}`])) as Buffer[]);
        const payload = h.get('payload');
        const qos = Number(h.get('qos')?.toString() ?? '0');
        if (!payload || !(qos === 1 || qos === 2)) continue;
        e.ids.remember(payload, id);
        if (host.deliverStored(e.clientId, filter, { topic, payload, qos: qos as QoS, publisher: h.get('from')?.toString() ?? '', receivedAt: Number(h.get('ts')?.toString() ?? '0') * 1000 })) sent++;
      }
    }
  }

  /** `mqtt:retain:*` keys a filter may match: the exact key, or a SCAN over the filter's literal prefix. */
  private async retainedKeys(filter: string): Promise<string[]> {
    if (!/[+#]/.test(filter)) return [`mqtt:retain:${filter}`];
    return (await this.scanKeys('mqtt:retain:', filter, null)).map((t) => `mqtt:retain:${t}`);
  }

  /**
   * The topics of `<prefix><topic>` keys whose topic starts with the filter's literal part (the
   * caller matches the rest), of one Redis type when given. A cluster's keys are spread over its
   * masters: each one is scanned.
   */
  private async scanKeys(prefix: string, filter: string, type: string | null): Promise<string[]> {
    const literal = filter.slice(0, filter.search(/[+#]/)).replace(/[*?[\]\\]/g, (c) => `\\${c}`);
    const topics: string[] = [];
    const client = this.client;
    const nodes: (Redis | Cluster | null)[] = this.isCluster(client) ? client.nodes('master') : [client];
    for (const node of nodes) {
      if (!node) continue;
      let cursor = '0';
      do {
        const args = [cursor, 'MATCH', `${prefix}${literal}*`, 'COUNT', '1000', ...(type ? ['TYPE', type] : [])];
        const [next, batch] = await this.run(() => node.callBuffer('SCAN', args) as Promise<[Buffer, Buffer[]]>);
        cursor = String(next);
        for (const k of batch) topics.push(String(k).slice(prefix.length));
      } while (cursor !== '0');
    }
    return topics;
  }
}

/** Values per message in the packed argument of PUBLISH_LUA: <ms> and the 14 hash fields. */
const PUBLISH_VALUES = 15;

/**
 * Lists of values as one buffer: each value as u32 (little-endian) length then its bytes, the
 * lists back to back (every list PUBLISH_VALUES long). PUBLISH_LUA reads it with `struct`.
 */
function packValues(lists: readonly (readonly (string | Buffer)[])[]): Buffer {
  let size = 0;
  for (const l of lists) for (const v of l) size += 4 + (typeof v === 'string' ? Buffer.byteLength(v) : v.length);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const l of lists) {
    for (const v of l) {
      const n = typeof v === 'string' ? out.write(v, at + 4, 'utf8') : v.copy(out, at + 4);
      out.writeUInt32LE(n, at);
      at += 4 + n;
    }
  }
  return out;
}

/**
 * on_message_publish for several messages in one command: per message, KEYS mqtt:msg:<id>,
 * mqtt:msg:<topic>; ARGV[1] their values packed (packValues): <ms> then the 14 hash fields
 * (messageFields) — HSET mqtt:msg:<id> <fields…>; ZADD mqtt:msg:<topic> <ms> <id>.
 */
const PUBLISH_LUA = [
  'local blob = ARGV[1]',
  'local pos = 1',
  'local n = #KEYS / 2',
  'for i = 0, n - 1 do',
  '  local v = {}',
  `  for j = 1, ${PUBLISH_VALUES} do`,
  "    local len, at = struct.unpack('<I4', blob, pos)",
  '    v[j] = string.sub(blob, at, at + len - 1)',
  '    pos = at + len',
  '  end',
  "  redis.call('HSET', KEYS[i * 2 + 1], unpack(v, 2, 15))",
  "  redis.call('ZADD', KEYS[i * 2 + 2], v[1], v[3])",
  'end',
  'return n',
].join('\n');
/** Messages per script call. */
const PUBLISH_BATCH = 200;
const PUBLISH_SCRIPT = { lua: PUBLISH_LUA, sha: createHash('sha1').update(PUBLISH_LUA).digest('hex') };

/** The hash fields EMQX writes for a message. */
function messageFields(id: string, e: EventData): (string | Buffer)[] {
  const m = e.msg;
  if (!m) return [];
  return ['id', id, 'from', m.publisher, 'qos', String(m.qos), 'topic', m.topic, 'payload', m.payload, 'ts', String(Math.floor(m.receivedAt / 1000)), 'retain', String(m.retain)];
}

function hashOf(flat: Buffer[]): Map<string, Buffer> {
  const h = new Map<string, Buffer>();
  for (let i = 0; i + 1 < flat.length; i += 2) h.set(String(flat[i]), flat[i + 1] as Buffer);
  return h;
}

