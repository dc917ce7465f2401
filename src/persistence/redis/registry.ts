/**
 * The Redis registry (`persistence.registry = redis`, SPEC C3): persistent sessions, their queues
 * and retained messages in Redis through ioredis — single server, Sentinel or Cluster
 * (`redis.mode`). It implements QueueRegistry (persistence/queue-registry.ts).
 *
 * Keys (`<c>` is the client id — or `~` and its base64url when it holds `{` or `}` — in a hash tag,
 * so one session's keys share a cluster slot and a Lua script may change them together):
 *   smq:sessions        set     client ids of persistent sessions
 *   smq:{<c>}:rec       string  JSON SessionRecord (expiry, disconnectedAt, will)
 *   smq:{<c>}:sub       hash    filter → JSON StoredSubscription
 *   smq:{<c>}:q         zset    queue: score msgId, member `msgId:qos retain:subIds`
 *   smq:{<c>}:inf       hash    msgId → `packetId:phase` (in flight)
 *   smq:{<c>}:in2       set     inbound QoS 2 packet ids awaiting PUBREL
 *   smq:{<c>}:rt        hash    topic → `qos:packetId:phase` (an earlier build wrote `qos` alone): retained messages sent on subscribe, not completed
 *   smq:m:<msgId>       hash    b: the message body (packBody), n: how many queues name it
 *   smq:retain          hash    topic → body of the retained message
 *
 * A save is one HSET of the body and one ZADD per session (and the publisher's SADD of its QoS 2
 * id). On a single server and Sentinel one event-loop turn's saves are one Lua script call (and
 * its in-flight records one HSET per session); in a cluster they are separate commands, which
 * ioredis auto-pipelining sends per node in one write. A save resolves once Redis acknowledged
 * every command carrying it. A
 * session's changes that must go together (a completion: queue entry and in-flight state; a
 * deletion) are Lua scripts on its own keys (single server and Sentinel: the completion
 * unreferences the bodies in the same script). A body is unreferenced only for queue entries a
 * script actually removed, so a completion racing a deletion never frees a body twice.
 *
 * While Redis is unreachable commands fail at once (no offline queue): the publisher of a message
 * a persistent session needs is refused (v5 0x80; 3.1.1 disconnected unacknowledged) and
 * everything else goes on; ioredis reconnects in the background.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Logger } from '../../log.js';
import type { QoS } from '../../wire/codec.js';
import { topicMatches } from '../../wire/topic.js';
import { packBody, type QueuedMessage, type QueueEntry, type QueueRegistry, RegistryError, type RetainedPin, type StoredMessage, type StoredSession, unpackBody } from '../queue-registry.js';
import type { SessionRecord, StoredSubscription } from '../registries.js';

/** The `redis.*` keys, read by persistence/open.ts. */
export interface RedisRegistryOptions {
  mode: 'single' | 'sentinel' | 'cluster';
  /** host:port of the server (single), the sentinels, or the cluster's seed nodes. */
  nodes: { host: string; port: number }[];
  /** Sentinel: the master's name. */
  master: string;
  database: number;
  username: string;
  password: string;
  /** ms a command may wait for its reply (0 = no limit). */
  timeoutMs: number;
  /** ms to wait for a connection. */
  connectTimeoutMs: number;
  /** Cluster: ms between refreshes of the slot map (0 = only when redirected). */
  scanIntervalMs: number;
}

/** `host:port,host:port` as nodes; a bad entry is an error naming the key. */
export function parseNodes(value: string, key: string, defaultPort = 6379): { host: string; port: number }[] {
  const out: { host: string; port: number }[] = [];
  for (const part of value.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(part);
    const port = m?.[2] === undefined ? defaultPort : Number(m[2]);
    if (!m || port < 1 || port > 65535) throw new RegistryError(`${key}: "${part}" is not host:port`);
    out.push({ host: (m[1] as string).replace(/^\[|\]$/g, ''), port });
  }
  if (out.length === 0) throw new RegistryError(`${key}: no host:port given`);
  return out;
}

/** The hash-tagged part of a session's keys. */
function tag(clientId: string): string {
  return /[{}]/.test(clientId) ? `~${Buffer.from(clientId, 'utf8').toString('base64url')}` : clientId;
}

const keys = (clientId: string): { rec: string; sub: string; q: string; inf: string; in2: string; rt: string } => {
  const t = `smq:{${tag(clientId)}}`;
  return { rec: `${t}:rec`, sub: `${t}:sub`, q: `${t}:q`, inf: `${t}:inf`, in2: `${t}:in2`, rt: `${t}:rt` };
};
const SESSIONS = 'smq:sessions';
const RETAIN = 'smq:retain';
const bodyKey = (id: number): string => `smq:m:${id}`;

function member(e: QueueEntry): string {
  return `${e.msgId}:${e.qos}${e.retain ? 1 : 0}:${e.subIds ? e.subIds.join(',') : ''}`;
}

function parseMember(m: string): { msgId: number; qos: QoS; retain: boolean; subIds: number[] | null } {
  const [id, flags, subs] = m.split(':') as [string, string, string];
  return { msgId: Number(id), qos: Number(flags[0]) as QoS, retain: flags[1] === '1', subIds: subs ? subs.split(',').map(Number) : null };
}

/** A retained pin's hash field (`qos:packetId:phase`; `qos` alone as written before packet ids were kept: queued). */
function retainedPin(topic: string, v: string): RetainedPin {
  const [qos, packetId, phase] = v.split(':').map(Number);
  const ph = phase === 1 || phase === 2 ? phase : 0;
  return { topic, qos: (qos ?? 0) as QoS, packetId: ph > 0 ? (packetId ?? 0) : 0, phase: ph };
}

/** Lua: remove entries (by msgId) from a session's queue and in-flight hash; returns the ids removed. */
const COMPLETE = `
local out = {}
for i, id in ipairs(ARGV) do
  if redis.call('ZREMRANGEBYSCORE', KEYS[1], id, id) > 0 then out[#out + 1] = id end
  redis.call('HDEL', KEYS[2], id)
end
return out`;

/** Lua: a body is named by one queue fewer; deleted when none names it. */
const UNREF = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'n', -1)
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n`;

/** Lua: every key of a session deleted; returns the msgIds its queue held. */
const DROP = `
local ids = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local out = {}
for i = 2, #ids, 2 do out[#out + 1] = ids[i] end
return out`;

/**
 * Lua, single server and Sentinel (no slots to respect): COMPLETE, then each removed entry's body
 * unreferenced (KEYS[3..]: the bodies, in ARGV's order) — one command per session and turn.
 */
const COMPLETE_UNREF = `
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('ZREMRANGEBYSCORE', KEYS[1], id, id) > 0 and redis.call('EXISTS', KEYS[i + 2]) == 1 then
    if redis.call('HINCRBY', KEYS[i + 2], 'n', -1) <= 0 then redis.call('DEL', KEYS[i + 2]) end
    n = n + 1
  end
  redis.call('HDEL', KEYS[2], id)
end
return n`;

/**
 * Lua, single server and Sentinel: one event-loop turn's saves in one command. KEYS: the bodies,
 * then the queues, then the inbound sets, then the session records (and the sessions' index when
 * there are any). ARGV: nBodies, nEntries, nInbound, nRecords, then per body (body, refs), per
 * entry (key index, score, member), per inbound id (key index, id), per record (key index, JSON,
 * client id).
 */
const SAVE = `
local nb, ne, ni, nr = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local a = 5
for i = 1, nb do
  redis.call('HSET', KEYS[i], 'b', ARGV[a], 'n', ARGV[a + 1])
  a = a + 2
end
for i = 1, ne do
  redis.call('ZADD', KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
for i = 1, ni do
  redis.call('SADD', KEYS[tonumber(ARGV[a])], ARGV[a + 1])
  a = a + 2
end
for i = 1, nr do
  redis.call('SET', KEYS[tonumber(ARGV[a])], ARGV[a + 1])
  redis.call('SADD', KEYS[#KEYS], ARGV[a + 2])
  a = a + 3
end
return nb`;

interface Scripts {
  smqComplete(q: string, inf: string, ...ids: string[]): Promise<string[]>;
  smqUnref(key: string): Promise<number>;
  smqDrop(rec: string, sub: string, q: string, inf: string, in2: string, rt: string): Promise<string[]>;
  smqCompleteUnref(numKeys: number, ...args: string[]): Promise<number>;
  smqSave(numKeys: number, ...args: (string | Buffer | number)[]): Promise<number>;
}

type Client = (Redis | Cluster) & Scripts;

/** One event-loop turn's writes (single server and Sentinel). */
interface Turn {
  saves: { msg: StoredMessage; to: QueueEntry[]; in2: { clientId: string; id: number } | null }[];
  /** Session records written after this turn's saves, in the same script (putSession). */
  records: { clientId: string; json: string }[];
  /** Per session: field, value, field, value… of its in-flight hash. */
  inflight: Map<string, string[]>;
  waiters: { resolve: () => void; reject: (e: unknown) => void }[];
}

export class RedisRegistry implements QueueRegistry {
  private client: Client | null = null;
  private up = false;

  /** Single server and Sentinel: a turn's saves and the records written with them are one script. */
  get turnAtomic(): boolean {
    return this.o.mode !== 'cluster';
  }

  constructor(
    private readonly o: RedisRegistryOptions,
    private readonly log: Logger,
  ) {}

  private where(): string {
    const nodes = this.o.nodes.map((n) => `${n.host}:${n.port}`).join(',');
    return this.o.mode === 'sentinel' ? `sentinel ${nodes} master ${this.o.master}` : this.o.mode === 'cluster' ? `cluster ${nodes}` : nodes;
  }

  async open(): Promise<void> {
    const { Redis, Cluster } = await import('ioredis'); // loaded only when this registry is chosen
    const o = this.o;
    const opts: RedisOptions = {
      username: o.username || undefined,
      password: o.password || undefined,
      db: o.database,
      connectTimeout: o.connectTimeoutMs,
      // redis.timeout: a server that stops answering for this long while commands wait has its
      // connection reset, and what waited fails (publishers refused). Per connection, not per
      // command: a timer per command would cost more than the command.
      socketTimeout: o.timeoutMs || undefined,
      // A command while Redis is away fails at once: its publisher is refused, nobody waits.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: () => 500,
      lazyConnect: true,
      enableAutoPipelining: true,
    };
    let client: Redis | Cluster;
    if (o.mode === 'cluster') {
      client = new Cluster(o.nodes, {
        redisOptions: opts,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        lazyConnect: true,
        slotsRefreshInterval: o.scanIntervalMs || undefined,
        clusterRetryStrategy: () => 500,
      });
    } else if (o.mode === 'sentinel') {
      client = new Redis({ ...opts, sentinels: o.nodes, name: o.master });
    } else {
      client = new Redis({ ...opts, host: o.nodes[0]?.host, port: o.nodes[0]?.port });
    }
    client.defineCommand('smqComplete', { numberOfKeys: 2, lua: COMPLETE });
    client.defineCommand('smqUnref', { numberOfKeys: 1, lua: UNREF });
    client.defineCommand('smqDrop', { numberOfKeys: 6, lua: DROP });
    client.defineCommand('smqCompleteUnref', { lua: COMPLETE_UNREF }); // number of keys given per call
    client.defineCommand('smqSave', { lua: SAVE });
    let lastError = '';
    client.on('error', (e: Error) => {
      if (e.message !== lastError) this.log.error({ registry: 'redis', server: this.where(), err: e.message }, `redis registry: ${e.message}`);
      lastError = e.message;
    });
    client.on('ready', () => {
      if (!this.up) this.log.info({ registry: 'redis', server: this.where() }, 'redis registry: connected');
      this.up = true;
      lastError = '';
    });
    client.on('close', () => {
      if (this.up) this.log.error({ registry: 'redis', server: this.where() }, 'redis registry: connection lost (publishes to persistent sessions are refused until it is back)');
      this.up = false;
    });
    try {
      await client.connect();
      if (o.mode === 'cluster') await client.ping();
    } catch (e) {
      client.disconnect();
      // A refused AUTH comes as an 'error' event; connect() then only says the connection closed.
      const msg = /WRONGPASS|NOAUTH/.test(lastError) ? lastError : (e as Error).message;
      const auth = /WRONGPASS|NOAUTH|invalid password|invalid username/i.test(msg);
      throw new RegistryError(`persistence.registry = redis: ${auth ? 'authentication refused by' : 'cannot connect to'} ${this.where()}: ${msg}${auth ? ' (check redis.password / redis.username)' : ''}`);
    }
    this.client = client as Client;
    await this.reportDurability();
  }

  /** Log what an acknowledged write survives (appendonly / appendfsync), when the server tells. */
  private async reportDurability(): Promise<void> {
    const c = this.must();
    try {
      const [, aof] = (await c.config('GET', 'appendonly')) as [string, string];
      const [, fsync] = (await c.config('GET', 'appendfsync')) as [string, string];
      const note =
        aof !== 'yes'
          ? 'appendonly no: a Redis crash or restart loses what it held since its last snapshot'
          : fsync === 'always'
            ? 'appendfsync always: an acknowledged write survives a Redis crash'
            : `appendfsync ${fsync}: a Redis crash may lose up to about a second of acknowledged writes`;
      this.log.info({ registry: 'redis', appendonly: aof, appendfsync: fsync }, `redis registry: ${note}`);
    } catch {
      // CONFIG may be disabled (managed Redis): nothing to report.
    }
  }

  private must(): Client {
    const c = this.client;
    if (!c) throw new RegistryError('redis registry is not open');
    return c;
  }

  async close(): Promise<void> {
    this.flush(); // this turn's writes go out before QUIT (which Redis answers after them)
    const c = this.client;
    this.client = null;
    this.up = false;
    if (c) await c.quit().catch(() => c.disconnect());
  }

  async loadSessions(): Promise<StoredSession[]> {
    const c = this.must();
    const ids = await c.smembers(SESSIONS);
    const out = await Promise.all(ids.map((id) => this.loadSession(c, id)));
    return out.filter((s): s is StoredSession => s !== null);
  }

  private async loadSession(c: Client, clientId: string): Promise<StoredSession | null> {
    const k = keys(clientId);
    const [rec, subs, in2, inf, queued, last, rt] = await Promise.all([c.get(k.rec), c.hgetall(k.sub), c.smembers(k.in2), c.hgetall(k.inf), c.zcard(k.q), c.zrange(k.q, -1, -1, 'WITHSCORES'), c.hgetall(k.rt)]);
    if (rec === null) {
      await c.srem(SESSIONS, clientId); // a deletion interrupted half way
      return null;
    }
    const inflight: QueuedMessage[] = [];
    await Promise.all(
      Object.entries(inf).map(async ([id, v]) => {
        const [packetId, phase] = v.split(':').map(Number) as [number, number];
        const [m] = await c.zrangebyscore(k.q, id, id);
        if (m === undefined) return;
        inflight.push({ ...parseMember(m), message: await this.body(c, Number(id)), packetId, phase: phase as 1 | 2 });
      }),
    );
    inflight.sort((a, b) => a.msgId - b.msgId);
    return {
      clientId,
      record: JSON.parse(rec) as SessionRecord,
      subscriptions: Object.entries(subs).map(([filter, v]) => ({ filter, opts: JSON.parse(v) as StoredSubscription })),
      incomingQos2: in2.map(Number),
      inflight,
      queued: queued - inflight.length,
      lastMsgId: last.length >= 2 ? Number(last[1]) : 0,
      retainedPins: Object.entries(rt).map(([topic, v]) => retainedPin(topic, v)),
    };
  }

  private async body(c: Client, id: number): Promise<StoredMessage | null> {
    const b = await c.hgetBuffer(bodyKey(id), 'b');
    return b ? unpackBody(id, b) : null;
  }

  /**
   * A record written in a turn that has saves (a will's record cleared as the will is stored,
   * QueueRegistry.turnAtomic) goes into their script, and the turn is written out at once:
   * both or neither, and in call order before anything written later.
   */
  async putSession(clientId: string, record: SessionRecord): Promise<void> {
    const c = this.must();
    const json = JSON.stringify(record);
    const t = this.turn;
    if (t !== null && t.saves.length > 0) {
      t.records.push({ clientId, json });
      const written = this.wait(t);
      this.flush();
      return written;
    }
    await Promise.all([c.set(keys(clientId).rec, json), c.sadd(SESSIONS, clientId)]);
  }

  async deleteSession(clientId: string): Promise<void> {
    const c = this.must();
    const k = keys(clientId);
    // This turn's saves and in-flight records go out first, in call order: one for this client id
    // (a will published at a Clean Start's takeover, stored for the session it replaces) written
    // after the drop would land in the queue of the session that takes the id next.
    this.flush();
    // Both issued now, before any later write of the same client id (a Clean Start puts the new
    // session right after deleting the old one): a SREM sent once the script answered would land
    // after the new session's SADD and drop it from the index (found by the durability checker).
    const [ids] = await Promise.all([c.smqDrop(k.rec, k.sub, k.q, k.inf, k.in2, k.rt), c.srem(SESSIONS, clientId)]);
    await Promise.all(ids.map((id) => c.smqUnref(bodyKey(Number(id)))));
  }

  async putSubscription(clientId: string, filter: string, opts: StoredSubscription): Promise<void> {
    const { start: _start, ...rest } = opts; // no log here: a subscription starts where it is made
    await this.must().hset(keys(clientId).sub, filter, JSON.stringify(rest));
  }

  async deleteSubscription(clientId: string, filter: string): Promise<void> {
    await this.must().hdel(keys(clientId).sub, filter);
  }

  /** This turn's saves and in-flight records (single server and Sentinel), written by `flush`. */
  private turn: Turn | null = null;

  private current(): Turn {
    let t = this.turn;
    if (t === null) {
      t = this.turn = { saves: [], records: [], inflight: new Map(), waiters: [] };
      setImmediate(() => this.flush());
    }
    return t;
  }

  /**
   * One turn's writes: its saves in one script call, then one HSET per session for what it sent
   * (in that order on the one connection, before any later completion). Each caller resolves
   * once the command carrying its write is acknowledged.
   */
  private flush(): void {
    const t = this.turn;
    this.turn = null;
    if (t === null) return;
    const c = this.client;
    if (c === null) {
      for (const w of t.waiters) w.reject(new RegistryError('redis registry is closed'));
      return;
    }
    const done: Promise<unknown>[] = [];
    if (t.saves.length > 0) {
      const bodies: (string | Buffer | number)[] = [];
      const entries: (string | number)[] = [];
      const inbound: (string | number)[] = [];
      const bodyKeys: string[] = [];
      const queueKeys: string[] = [];
      const queueIndex = new Map<string, number>();
      const in2Keys: string[] = [];
      for (const { msg, to, in2 } of t.saves) {
        bodyKeys.push(bodyKey(msg.id));
        bodies.push(packBody(msg), to.length);
        for (const e of to) {
          const k = keys(e.clientId).q;
          let at = queueIndex.get(k);
          if (at === undefined) {
            at = queueKeys.push(k) - 1;
            queueIndex.set(k, at);
          }
          entries.push(at, msg.id, member(e));
        }
        if (in2) {
          in2Keys.push(keys(in2.clientId).in2);
          inbound.push(in2Keys.length - 1, in2.id);
        }
      }
      const nb = bodyKeys.length;
      const nq = queueKeys.length;
      const ni = in2Keys.length;
      // Key indexes as Lua sees them (1-based, after the bodies / queues / inbound sets).
      for (let i = 0; i < entries.length; i += 3) entries[i] = (entries[i] as number) + nb + 1;
      for (let i = 0; i < inbound.length; i += 2) inbound[i] = (inbound[i] as number) + nb + nq + 1;
      const recordKeys: string[] = [];
      const records: (string | number)[] = [];
      for (const r of t.records) records.push(nb + nq + ni + recordKeys.push(keys(r.clientId).rec), r.json, r.clientId);
      if (recordKeys.length > 0) recordKeys.push(SESSIONS);
      const nk = nb + nq + ni + recordKeys.length;
      done.push(c.smqSave(nk, ...bodyKeys, ...queueKeys, ...in2Keys, ...recordKeys, nb, entries.length / 3, inbound.length / 2, t.records.length, ...bodies, ...entries, ...inbound, ...records));
    }
    for (const [clientId, fields] of t.inflight) done.push(c.hset(keys(clientId).inf, ...fields));
    Promise.all(done).then(
      () => t.waiters.forEach((w) => w.resolve()),
      (e: unknown) => t.waiters.forEach((w) => w.reject(e)),
    );
  }

  private wait(t: Turn): Promise<void> {
    return new Promise((resolve, reject) => t.waiters.push({ resolve, reject }));
  }

  async saveSessionMessages(msg: StoredMessage, to: QueueEntry[], inbound: { clientId: string; id: number } | null): Promise<void> {
    const c = this.must();
    if (this.o.mode !== 'cluster') {
      const t = this.current();
      if (to.length > 0 || inbound) t.saves.push({ msg, to, in2: inbound });
      return this.wait(t);
    }
    // A cluster: bodies and queues in their own slots, command by command (auto-pipelined per node).
    const writes: Promise<unknown>[] = [];
    if (to.length > 0) writes.push(c.hset(bodyKey(msg.id), 'b', packBody(msg), 'n', to.length));
    for (const e of to) writes.push(c.zadd(keys(e.clientId).q, msg.id, member(e)));
    if (inbound) writes.push(c.sadd(keys(inbound.clientId).in2, inbound.id));
    await Promise.all(writes);
  }

  async getSessionMessages(clientId: string, after: number, limit: number): Promise<QueuedMessage[]> {
    const c = this.must();
    const k = keys(clientId);
    const members = await c.zrangebyscore(k.q, `(${after}`, '+inf', 'LIMIT', 0, limit);
    if (members.length === 0) return [];
    const entries = members.map(parseMember);
    const [states, bodies] = await Promise.all([c.hmget(k.inf, ...entries.map((e) => String(e.msgId))), Promise.all(entries.map((e) => this.body(c, e.msgId)))]);
    return entries.map((e, i) => {
      const st = states[i];
      const [packetId, phase] = st ? (st.split(':').map(Number) as [number, number]) : [0, 0];
      return { ...e, message: bodies[i] ?? null, packetId, phase: phase as 0 | 1 | 2 };
    });
  }

  async setInflight(clientId: string, msgId: number, packetId: number, phase: 1 | 2): Promise<void> {
    // Issued before the entry's completion on the same connection, so never left behind by it
    // (and loadSession ignores an in-flight field whose entry is gone).
    const c = this.must();
    if (this.o.mode === 'cluster') {
      await c.hset(keys(clientId).inf, String(msgId), `${packetId}:${phase}`);
      return;
    }
    const t = this.current();
    const fields = t.inflight.get(clientId);
    if (fields) fields.push(String(msgId), `${packetId}:${phase}`);
    else t.inflight.set(clientId, [String(msgId), `${packetId}:${phase}`]);
    return this.wait(t);
  }

  async complete(clientId: string, msgIds: number[]): Promise<void> {
    const c = this.must();
    const k = keys(clientId);
    const ids = msgIds.map(String);
    if (this.o.mode !== 'cluster') {
      await c.smqCompleteUnref(2 + ids.length, k.q, k.inf, ...msgIds.map(bodyKey), ...ids);
      return;
    }
    // A cluster: the bodies live in other slots, unreferenced one by one for what was removed.
    const removed = await c.smqComplete(k.q, k.inf, ...ids);
    await Promise.all(removed.map((id) => c.smqUnref(bodyKey(Number(id)))));
  }

  async pinRetained(clientId: string, topic: string, qos: QoS, packetId: number, phase: 0 | 1 | 2): Promise<void> {
    await this.must().hset(keys(clientId).rt, topic, `${qos}:${packetId}:${phase}`);
  }

  async unpinRetained(clientId: string, topic: string): Promise<void> {
    await this.must().hdel(keys(clientId).rt, topic);
  }

  async addInbound(clientId: string, id: number): Promise<void> {
    await this.must().sadd(keys(clientId).in2, id);
  }

  async releaseInbound(clientId: string, id: number): Promise<void> {
    await this.must().srem(keys(clientId).in2, id);
  }

  async saveRetainMessage(msg: StoredMessage): Promise<void> {
    const c = this.must();
    if (msg.payload.length === 0) await c.hdel(RETAIN, msg.topic);
    else await c.hset(RETAIN, msg.topic, packBody(msg));
  }

  async getRetainMessage(filter: string): Promise<StoredMessage[]> {
    const c = this.must();
    if (!/[+#]/.test(filter)) {
      const b = await c.hgetBuffer(RETAIN, filter);
      return b ? [unpackBody(0, b)] : [];
    }
    return (await this.loadRetained()).filter((m) => topicMatches(filter, m.topic));
  }

  async loadRetained(): Promise<StoredMessage[]> {
    const all = await this.must().hgetallBuffer(RETAIN);
    return Object.values(all).map((b) => unpackBody(0, b));
  }
}
