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
 * One connection multiplexes every command (max_inflight bounds the events in flight).
 * on_message_publish, the rule that sees every message, is written in script calls of up to
 * PUBLISH_BATCH messages packed into one argument (PublishPack, PUBLISH_LUA): Redis CPU per
 * message and the broker's are in docs/benchmarks.md (issue 16). While the server is unreachable
 * commands wait in ioredis' offline queue (reconnecting every `auto_reconnect` seconds) and are
 * sent when it returns; what waits is bounded by the rule queues in front (max_inflight in
 * flight, max_queued waiting).
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

  /** on_message_publish writes being packed for one script call (PublishPack), and whether the turn's flush is queued. */
  private pack: PublishPack | null = null;
  private flushQueued = false;
  private readonly utf8 = new Utf8Cache();

  /**
   * on_message_publish for several events (the hook bus's batch): written with this turn's other
   * messages in script calls (a cluster: two commands each). Per event, its error or undefined;
   * the messages of one call succeed or fail together (written again when retried: same values).
   */
  publishMany(events: readonly EventData[]): Promise<readonly unknown[]> {
    if (this.isCluster(this.client)) return Promise.all(events.map((e) => this.publishOne(e).then(noError, (err: unknown) => err ?? new Error('failed'))));
    // Packed now: the events are not kept while their calls are written (retried from the packed bytes).
    const calls = new Set<Promise<void>>();
    for (const e of events) if (e.msg) calls.add(this.publishBatched(e.msgid(), e.msg));
    const n = events.length;
    return Promise.all(calls).then(
      () => NO_FAILURES,
      (err: unknown) => new Array<unknown>(n).fill(err ?? new Error('failed')),
    );
  }

  /** on_message_publish for one event. */
  private async publishOne(e: EventData): Promise<void> {
    const m = e.msg;
    if (!m) return;
    const id = e.msgid();
    if (this.isCluster(this.client)) {
      // The two keys are in different slots: two commands.
      await Promise.all([this.call(['HSET', `mqtt:msg:${id}`, ...messageFields(id, e)]), this.call(['ZADD', `mqtt:msg:${m.topic}`, String(m.receivedAt), id])]);
      return;
    }
    // The messages of one event-loop turn go in one server-side script call (both writes each).
    await this.publishBatched(id, m);
  }

  /**
   * Pack one message's writes into the script call being filled; that call's promise. A full call
   * (PUBLISH_BATCH messages) is sent at once, so Redis works on it while the broker goes on; the
   * rest at the end of the event-loop turn.
   */
  private publishBatched(id: string, m: StoredMessageInfo): Promise<void> {
    let pack = this.pack;
    if (pack === null) {
      pack = this.pack = new PublishPack();
      if (!this.flushQueued) {
        this.flushQueued = true;
        setImmediate(() => {
          this.flushQueued = false;
          this.sendPack();
        });
      }
    }
    pack.add(id, m, this.utf8);
    if (pack.count >= PUBLISH_BATCH) this.sendPack();
    return pack.done;
  }

  /**
   * Send the call being filled. Retried (pool.run) with the same bytes while the server is
   * unreachable: a message written twice is written with the same values.
   */
  private sendPack(): void {
    const pack = this.pack;
    if (pack === null) return;
    this.pack = null;
    const bytes = pack.bytes();
    this.run(() => this.evalPublish(bytes)).then(pack.resolve, pack.reject);
  }

  /** PUBLISH_LUA by its SHA1, loaded (EVAL) when the server does not have it (a restart forgets scripts). */
  private async evalPublish(bytes: Buffer): Promise<unknown> {
    const client = this.client;
    if (!client) throw new Error(`backend pool ${this.cfg.id} not open`);
    try {
      return await client.callBuffer('EVALSHA', [PUBLISH_SCRIPT.sha, '0', bytes]);
    } catch (e) {
      if (!/^NOSCRIPT/.test((e as Error).message ?? '')) throw e;
      return client.callBuffer('EVAL', [PUBLISH_SCRIPT.lua, '0', bytes]);
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
      case 'on_message_publish':
        await this.publishOne(e);
        return;
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

/** What on_message_publish stores of a message (the hook bus's MessageInfo has these and more). */
type StoredMessageInfo = Pick<StoredMessage, 'topic' | 'payload' | 'qos' | 'publisher' | 'receivedAt'> & { readonly retain: boolean };

/**
 * Messages for one PUBLISH_LUA call, packed as they come into one buffer: per message 8 values
 * (its score in ms, then id, from, qos, topic, payload, ts, retain), each as u32 (little-endian)
 * length then its bytes. One argument per call: the client frames one buffer instead of 8 values
 * per message, and the script reads a message's values with one struct.unpack.
 */
class PublishPack {
  count = 0;
  /** Settled by the script call (resolve / reject). */
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (e: unknown) => void;
  private buf = Buffer.allocUnsafe(PACK_START);
  private at = 0;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = () => resolve();
      this.reject = reject;
    });
    this.done.catch(() => undefined); // a failure is seen by the callers awaiting it, not unhandled
  }

  add(id: string, m: StoredMessageInfo, utf8: Utf8Cache): void {
    const from = utf8.get(m.publisher);
    const topic = utf8.get(m.topic);
    const ms = String(m.receivedAt);
    const ts = String(Math.floor(m.receivedAt / 1000));
    const retain = m.retain ? 'true' : 'false';
    this.room(6 * 4 + ms.length + id.length + from.length + 1 + topic.length + m.payload.length + ts.length + retain.length);
    this.ascii(ms);
    this.ascii(id);
    this.buf.set(from, this.at); // its length and its bytes
    this.at += from.length;
    this.ascii(String(m.qos));
    this.buf.set(topic, this.at);
    this.at += topic.length;
    this.u32(m.payload.length);
    this.buf.set(m.payload, this.at);
    this.at += m.payload.length;
    this.ascii(ts);
    this.ascii(retain);
    this.count++;
  }

  /** The packed messages (the buffer is not written to again). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.at);
  }

  /** A value known to be ASCII (digits, a base-62 id, true / false), written here without a call into the runtime. */
  private ascii(v: string): void {
    this.u32(v.length);
    const b = this.buf;
    let at = this.at;
    for (let i = 0; i < v.length; i++) b[at++] = v.charCodeAt(i);
    this.at = at;
  }

  private u32(n: number): void {
    const b = this.buf;
    const at = this.at;
    b[at] = n & 0xff;
    b[at + 1] = (n >>> 8) & 0xff;
    b[at + 2] = (n >>> 16) & 0xff;
    b[at + 3] = n >>> 24;
    this.at = at + 4;
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }
}

/**
 * Topics and client ids as PublishPack writes them (u32 length, UTF-8 bytes), kept while they
 * recur: a pairs load publishes on few topics from few clients. At most UTF8_CACHE entries (then
 * it starts again).
 */
class Utf8Cache {
  private readonly map = new Map<string, Buffer>();

  get(s: string): Buffer {
    let b = this.map.get(s);
    if (b === undefined) {
      const n = Buffer.byteLength(s);
      b = Buffer.allocUnsafeSlow(4 + n);
      b.writeUInt32LE(n, 0);
      b.write(s, 4, 'utf8');
      if (this.map.size >= UTF8_CACHE) this.map.clear();
      this.map.set(s, b);
    }
    return b;
  }
}

const UTF8_CACHE = 4096;

/** A pack's first buffer: about 100 messages of 64 bytes. */
const PACK_START = 32 * 1024;

/**
 * on_message_publish for the messages of one PublishPack: HSET mqtt:msg:<id> with the 7 fields,
 * then per topic one ZADD mqtt:msg:<topic> of all its ids (score: the publish time in ms). The
 * keys are made by the script from the id and topic, not passed in KEYS: it runs on a single
 * server or a Sentinel's master only (a cluster spreads the keys over slots: plain commands there).
 * Redis CPU per message (docs/benchmarks.md, issue 16; `npm run bench -- --redis-floor`): 4.1–4.5 µs
 * standalone, where the first script (a struct.unpack and a string.sub per value, two KEYS and a
 * ZADD per message) took 7.1–8.0 µs and plain pipelined HSET + ZADD take 3.6–4.8 µs.
 */
const PUBLISH_LUA = [
  'local blob = ARGV[1]',
  'local pos, last, n = 1, #blob, 0',
  'local ids = {}',
  'while pos <= last do',
  "  local ms, id, from, qos, topic, payload, ts, retain, nxt = struct.unpack('<I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0', blob, pos)",
  "  redis.call('HSET', 'mqtt:msg:' .. id, 'id', id, 'from', from, 'qos', qos, 'topic', topic, 'payload', payload, 'ts', ts, 'retain', retain)",
  '  local z = ids[topic]',
  '  if z == nil then',
  '    z = {}',
  '    ids[topic] = z',
  '  end',
  '  z[#z + 1] = ms',
  '  z[#z + 1] = id',
  '  pos = nxt',
  '  n = n + 1',
  'end',
  "for topic, z in pairs(ids) do redis.call('ZADD', 'mqtt:msg:' .. topic, unpack(z)) end",
  'return n',
].join('\n');
/**
 * Messages per script call (at most ~4000: unpack takes ~8000 values, 2 per message of one topic).
 * Redis CPU per message is about the same from 250 up; smaller calls start sooner and hold the
 * server for less time (~1 ms each).
 */
const PUBLISH_BATCH = 250;
const PUBLISH_SCRIPT = { lua: PUBLISH_LUA, sha: createHash('sha1').update(PUBLISH_LUA).digest('hex') };

const NO_FAILURES: readonly unknown[] = [];

function noError(): undefined {
  return undefined;
}

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

