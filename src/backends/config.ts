/**
 * The backends' configuration (SPEC D2), read from the patterned keys config.ts checked
 * (`backend.<type>.<pool>.<field>`, `backend.<type>.hook.<event>.<n>`): pools with their
 * defaults, and rules checked against each other — the event exists, the action fits the event
 * and the database, the pool is configured, the topic is a valid filter, every placeholder is
 * known. Anything wrong is a ConfigError naming the key and where it came from, at start.
 */
import { type Config, CONFIG_PATTERNS, ConfigError, type PatternedValue } from '../config.js';
import type { BrokerEvents } from '../hooks/index.js';
import { validateTopicFilter } from '../native.js';
import { compileRedis, compileSql, type RedisTemplate, type SqlTemplate } from './placeholders.js';

export type BackendType = 'redis' | 'pgsql' | 'mysql';

/** The events rules attach to (SPEC D1). */
export const BACKEND_EVENTS = ['client.connected', 'client.disconnected', 'session.subscribed', 'session.unsubscribed', 'message.publish', 'message.delivered', 'message.acked'] as const satisfies readonly (keyof BrokerEvents)[];
export type BackendEvent = (typeof BACKEND_EVENTS)[number];

/** Built-in functions and the event each one runs on (EMQX 4's table). */
export const FUNCTIONS = {
  on_client_connected: 'client.connected',
  on_subscribe_lookup: 'client.connected',
  on_client_disconnected: 'client.disconnected',
  on_message_publish: 'message.publish',
  on_message_retain: 'message.publish',
  on_retain_delete: 'message.publish',
  on_retain_lookup: 'session.subscribed',
  on_message_fetch: 'session.subscribed',
  on_message_fetch_for_queue: 'session.subscribed',
  on_message_fetch_for_pubsub: 'session.subscribed',
  on_message_acked: 'message.acked',
  on_message_acked_for_queue: 'message.acked',
  on_message_acked_for_pubsub: 'message.acked',
} as const satisfies Record<string, BackendEvent>;
export type FunctionName = keyof typeof FUNCTIONS;
/** Functions only one kind of database has (EMQX's split: Redis fetches per queue or pubsub, SQL per read position). */
const ONLY: Partial<Record<FunctionName, BackendType[]>> = {
  on_message_fetch: ['pgsql', 'mysql'],
  on_message_fetch_for_queue: ['redis'],
  on_message_fetch_for_pubsub: ['redis'],
  on_message_acked_for_queue: ['redis'],
};

const DEFAULT_PORT: Record<BackendType, number> = { redis: 6379, pgsql: 5432, mysql: 3306 };

export interface PoolConfig {
  readonly type: BackendType;
  readonly name: string;
  /** `<type>.<name>`, as logs and metrics name the pool. */
  readonly id: string;
  readonly servers: readonly { host: string; port: number }[];
  readonly mode: 'single' | 'sentinel' | 'cluster';
  readonly sentinel: string;
  readonly poolSize: number;
  readonly username: string;
  readonly password: string;
  readonly database: string;
  readonly ssl: boolean;
  readonly connectTimeoutMs: number;
  readonly queryTimeoutMs: number;
  /** 0: no waiting for the server — events fail while it is down. */
  readonly reconnectMs: number;
  readonly maxQueued: number;
  /** Events handled at once per (pool, event) queue. */
  readonly maxInflight: number;
  /** Offline fetch: at most this many messages per subscription (0: no limit). */
  readonly maxReturned: number;
  /** Offline fetch: only messages stored within this many ms (0: no limit). */
  readonly timeRangeMs: number;
}

export type RuleAction = { readonly function: FunctionName } | { readonly sql: readonly SqlTemplate[] } | { readonly commands: readonly RedisTemplate[] };

export interface RuleConfig {
  /** The config key, e.g. `backend.redis.hook.message.publish.1`. */
  readonly key: string;
  readonly where: string;
  readonly type: BackendType;
  readonly event: BackendEvent;
  readonly n: number;
  /** Topic filter selecting messages (and subscribed topics); null: every one. */
  readonly topic: string | null;
  readonly action: RuleAction;
  readonly pool: string;
  /**
   * `drop` (default): queued off the delivery path, the excess dropped and counted.
   * `backpressure` (message.publish only): the publisher's PUBACK / PUBREC waits for the write.
   */
  readonly mode: 'drop' | 'backpressure';
}

export interface BackendsConfig {
  readonly pools: readonly PoolConfig[];
  /** By event, then type, then number: the order they run in. */
  readonly rules: readonly RuleConfig[];
}

type PoolField = 'server' | 'type' | 'sentinel' | 'pool_size' | 'username' | 'password' | 'database' | 'ssl' | 'connect_timeout' | 'query_timeout' | 'auto_reconnect' | 'max_queued' | 'max_inflight' | 'max_returned_count' | 'time_range';

function fieldDefault(type: BackendType, field: PoolField): number | boolean | string {
  // Redis-only fields (type, sentinel) have their Redis default for the others too (unused there).
  void type;
  for (const [k, spec] of Object.entries(CONFIG_PATTERNS)) if (k.endsWith(`.${field}`)) return spec.default;
  throw new Error(`no declared default for ${field}`);
}

function parseServers(type: BackendType, raw: string, where: string, key: string): { host: string; port: number }[] {
  if (raw.trim() === '') return [{ host: '127.0.0.1', port: DEFAULT_PORT[type] }];
  return raw.split(',').map((part) => {
    const s = part.trim();
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(s);
    const port = m?.[2] === undefined ? DEFAULT_PORT[type] : Number(m[2]);
    if (!m || port < 1 || port > 65535) throw new ConfigError(`${where}: ${key} must be host:port (or a comma-separated list), got ${JSON.stringify(raw)}`);
    return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
  });
}

/** The pools and rules of the config; throws ConfigError on anything that does not fit. */
export function backendsConfig(config: Config): BackendsConfig {
  const byPool = new Map<string, Map<PoolField, PatternedValue & { key: string }>>();
  const ruleEntries: [string, PatternedValue][] = [];
  for (const [key, v] of Object.entries(config.patterned)) {
    if (!key.startsWith('backend.')) continue;
    const parts = key.split('.');
    if (parts[2] === 'hook') {
      ruleEntries.push([key, v]);
      continue;
    }
    const id = `${parts[1]}.${parts[2]}`;
    let fields = byPool.get(id);
    if (!fields) byPool.set(id, (fields = new Map()));
    fields.set(parts[3] as PoolField, { ...v, key });
  }

  const pools: PoolConfig[] = [];
  for (const [id, fields] of byPool) {
    const [type, name] = id.split('.') as [BackendType, string];
    const get = <T extends number | boolean | string>(f: PoolField): T => (fields.get(f)?.value ?? fieldDefault(type, f)) as T;
    const serverEntry = fields.get('server');
    const servers = parseServers(type, get<string>('server'), serverEntry?.where ?? 'default', serverEntry?.key ?? `backend.${id}.server`);
    const mode = type === 'redis' ? get<'single' | 'sentinel' | 'cluster'>('type') : 'single';
    const first = [...fields.values()][0] as PatternedValue & { key: string };
    if (mode === 'sentinel' && get<string>('sentinel') === '') throw new ConfigError(`${first.where}: backend.${id}.type = sentinel needs backend.${id}.sentinel (the master's name)`);
    if (mode === 'single' && servers.length > 1) throw new ConfigError(`${serverEntry?.where ?? first.where}: backend.${id}.server lists ${servers.length} servers; one for a single server (Redis: set backend.${id}.type to sentinel or cluster)`);
    const database = get<string>('database');
    if (type === 'redis' && database !== '' && !/^\d+$/.test(database)) throw new ConfigError(`${fields.get('database')?.where}: backend.${id}.database must be a Redis database number, got ${JSON.stringify(database)}`);
    pools.push({
      type,
      name,
      id,
      servers,
      mode,
      sentinel: get<string>('sentinel'),
      poolSize: get<number>('pool_size'),
      username: get<string>('username'),
      password: get<string>('password'),
      database,
      ssl: get<boolean>('ssl'),
      connectTimeoutMs: get<number>('connect_timeout') * 1000,
      queryTimeoutMs: get<number>('query_timeout') * 1000,
      reconnectMs: get<number>('auto_reconnect') * 1000,
      maxQueued: get<number>('max_queued'),
      maxInflight: get<number>('max_inflight') || (type === 'redis' ? 10_000 : get<number>('pool_size')),
      maxReturned: get<number>('max_returned_count'),
      timeRangeMs: get<number>('time_range') * 1000,
    });
  }

  const rules: RuleConfig[] = [];
  for (const [key, { value, where }] of ruleEntries) {
    const parts = key.split('.');
    const type = parts[1] as BackendType;
    const event = parts.slice(3, -1).join('.');
    const n = Number(parts[parts.length - 1]);
    const bad = (why: string): never => {
      throw new ConfigError(`${where}: ${key}: ${why}`);
    };
    if (!(BACKEND_EVENTS as readonly string[]).includes(event)) bad(`unknown event "${event}" (events: ${BACKEND_EVENTS.join(', ')})`);
    const rule = value as Record<string, unknown>;
    for (const k of Object.keys(rule)) if (!['topic', 'action', 'pool', 'mode'].includes(k)) bad(`unknown field "${k}" (a rule has topic, action, pool, mode)`);
    const mode = rule.mode ?? 'drop';
    if (mode !== 'drop' && mode !== 'backpressure') bad(`"mode" must be "drop" or "backpressure", got ${JSON.stringify(rule.mode)}`);
    if (mode === 'backpressure' && event !== 'message.publish') bad('"mode": "backpressure" is for message.publish rules (it holds the publisher\'s acknowledgement)');
    const pool = rule.pool;
    if (typeof pool !== 'string' || pool === '') bad('"pool" must name a pool, e.g. "pool1"');
    if (!byPool.has(`${type}.${pool as string}`)) bad(`pool "${pool as string}" is not configured (set backend.${type}.${pool as string}.server)`);
    let topic: string | null = null;
    if (rule.topic !== undefined) {
      if (typeof rule.topic !== 'string') bad('"topic" must be a topic filter');
      const why = validateTopicFilter(rule.topic as string);
      if (why) bad(`"topic" ${JSON.stringify(rule.topic)} is not a valid filter: ${why}`);
      topic = rule.topic as string;
    }
    const a = rule.action as Record<string, unknown> | undefined;
    if (typeof a !== 'object' || a === null || Array.isArray(a) || Object.keys(a).length !== 1) bad('"action" must be {"function": name}, {"sql": [statements]} or {"commands": [commands]}');
    const act = a as Record<string, unknown>;
    let action: RuleAction;
    if ('function' in act) {
      const f = act.function;
      if (typeof f !== 'string') return bad('"function" must be a name');
      if (!(f in FUNCTIONS)) bad(`unknown function "${f}" (functions: ${Object.keys(FUNCTIONS).join(', ')})`);
      const on = FUNCTIONS[f as FunctionName];
      if (on !== event) bad(`function ${f} runs on ${on}, not ${event}`);
      const only = ONLY[f as FunctionName];
      if (only && !only.includes(type)) bad(`function ${f} is for ${only.join(' and ')} backends (${type === 'redis' ? 'Redis: on_message_fetch_for_queue or on_message_fetch_for_pubsub' : 'SQL: on_message_fetch'})`);
      action = { function: f as FunctionName };
    } else if ('sql' in act) {
      if (type === 'redis') bad('Redis rules take "commands", not "sql"');
      const list = typeof act.sql === 'string' ? [act.sql] : act.sql;
      if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string' && s.trim() !== '')) bad('"sql" must be a list of statements');
      action = { sql: (list as string[]).map((s) => compileSql(s, type as 'pgsql' | 'mysql', `${where}: ${key}`)) };
    } else if ('commands' in act) {
      if (type !== 'redis') bad('SQL rules take "sql", not "commands"');
      const list = typeof act.commands === 'string' ? [act.commands] : act.commands;
      if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string')) bad('"commands" must be a list of Redis commands');
      action = { commands: (list as string[]).map((c) => compileRedis(c, `${where}: ${key}`)) };
    } else {
      action = bad('"action" must be {"function": name}, {"sql": [statements]} or {"commands": [commands]}');
    }
    rules.push({ key, where, type, event: event as BackendEvent, n, topic, action, pool: pool as string, mode: mode as 'drop' | 'backpressure' });
  }
  const order = (r: RuleConfig): string => `${BACKEND_EVENTS.indexOf(r.event)}.${r.type}.${String(r.n).padStart(10, '0')}`;
  rules.sort((x, y) => (order(x) < order(y) ? -1 : order(x) > order(y) ? 1 : 0));
  return { pools, rules };
}
