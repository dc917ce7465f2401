/**
 * EMQX 4-style backends (SPEC D, issue 16): rules in the config attach Redis, PostgreSQL and
 * MySQL pools to the hook bus's events.
 *
 * Every (pool, event) pair with rules gets one async consumer on the bus (`consume`, named
 * `backend.<type>.<pool>.<event>`): the event's snapshot is queued (at most `max_queued`; beyond
 * that dropped and counted) and its rules run off the delivery path, in config order, at most
 * `max_inflight` events at once. The events waiting are taken together (`consumeBatches`): each
 * rule runs for all of them before the next rule, so a rule that writes many events in one call
 * (Redis on_message_publish) does. Publishing and delivery never wait for a database. While a
 * server is unreachable an event waits in its place and is retried (pool.ts); the broker keeps serving.
 *
 * Start-up never waits for a server either: pools connect in the background, log when they are
 * unreachable or refuse the login (naming the pool), and log again when they connect.
 */
import { type Config, ConfigError } from '../config.js';
import type { BatchOutcome, Consumer, HookBus, PublishHold } from '../hooks/bus.js';
import type { ClientInfo, MessageInfo } from '../hooks/index.js';
import type { BrokerMetrics } from '../hooks/metrics.js';
import type { Logger } from '../log.js';
import { topicMatches } from '../wire/topic.js';
import { type BackendEvent, type BackendsConfig, backendsConfig, type RuleConfig } from './config.js';
import { type BackendHost, type EventData, eventData } from './event.js';
import { MessageIds } from './msgid.js';
import { errorText, type Pool } from './pool.js';
import type { RedisPool } from './redis.js';
import type { SqlPool } from './sql.js';
import { msglogConfig, type MsglogConfig } from '../msglog/config.js';
import type { LogSink } from './msglog-sink.js';

export type { BackendHost, StoredMessage } from './event.js';

/** How long close() lets queued events finish before the pools are closed. */
const CLOSE_GRACE_MS = 2000;

export class Backends {
  readonly config: BackendsConfig;
  private readonly pools = new Map<string, RedisPool | SqlPool>();
  private readonly consumers: Consumer[] = [];
  private readonly holds: PublishHold[] = [];
  private readonly ids: MessageIds;
  private readonly node: string;
  /** The message log and its SQL sink's pool (msglog.sql_pool, `<type>.<pool>`; '' = none). */
  private readonly msglog: MsglogConfig;
  private sink: LogSink | null = null;

  /** Reads and checks the rules and pools: a ConfigError here stops the broker before it starts. */
  constructor(
    config: Config,
    private readonly bus: HookBus,
    private readonly log: Logger,
    private readonly metrics: Pick<BrokerMetrics, 'backendPools' | 'backendRules' | 'msglog'>,
  ) {
    this.config = backendsConfig(config);
    this.msglog = msglogConfig(config);
    const sinkPool = this.msglog.sqlPool;
    if (sinkPool !== '' && !this.config.pools.some((p) => p.id === sinkPool)) {
      const [type, name] = sinkPool.split('.');
      throw new ConfigError(`msglog.sql_pool: pool "${sinkPool}" is not configured (backend.${type}.${name}.server …)`);
    }
    this.node = config['node.name'];
    this.ids = new MessageIds(this.node);
  }

  get enabled(): boolean {
    return this.config.rules.length > 0 || this.msglog.sqlPool !== '';
  }

  /**
   * Open the pools rules use and attach the rules to the bus. Never waits for a server; loads
   * only the drivers the rules need (a broker without backend rules loads none).
   */
  async start(host: BackendHost): Promise<void> {
    const types = new Set(this.config.rules.map((r) => r.type));
    const sinkCfg = this.config.pools.find((p) => p.id === this.msglog.sqlPool);
    if (sinkCfg) types.add(sinkCfg.type);
    const { RedisPool } = types.has('redis') ? await import('./redis.js') : { RedisPool: null };
    const { MysqlPool, PgPool } = types.has('pgsql') || types.has('mysql') ? await import('./sql.js') : { MysqlPool: null, PgPool: null };
    const opening: Promise<void>[] = [];
    const groups = new Map<string, { event: BackendEvent; pool: RedisPool | SqlPool; rules: RuleConfig[] }>();
    for (const rule of this.config.rules) {
      const id = `${rule.type}.${rule.pool}`;
      let pool = this.pools.get(id);
      if (!pool) {
        const cfg = this.config.pools.find((p) => p.id === id);
        if (!cfg) throw new Error(`no pool ${id}`); // backendsConfig checked it
        const made = cfg.type === 'redis' ? RedisPool && new RedisPool(cfg, this.log) : cfg.type === 'pgsql' ? PgPool && new PgPool(cfg, this.log) : MysqlPool && new MysqlPool(cfg, this.log);
        if (!made) throw new Error(`no driver for ${id}`); // loaded above for every type rules use
        pool = made;
        this.pools.set(id, pool);
        this.metrics.backendPools[id] = pool.state;
        opening.push(pool.open());
      }
      const key = `${id}.${rule.event}${rule.mode === 'backpressure' ? '.backpressure' : ''}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { event: rule.event, pool, rules: [] }));
      g.rules.push(rule);
      if ('function' in rule.action && rule.action.function === 'on_message_publish' && 'publishFilters' in pool) pool.publishFilters.push(rule.topic ?? '#');
      this.metrics.backendRules[rule.key] = { pool: id, matched: 0, done: 0, failed: 0 };
    }
    if (sinkCfg && !this.pools.has(sinkCfg.id)) {
      const made = sinkCfg.type === 'pgsql' ? PgPool && new PgPool(sinkCfg, this.log) : MysqlPool && new MysqlPool(sinkCfg, this.log);
      if (!made) throw new Error(`no driver for ${sinkCfg.id}`);
      this.pools.set(sinkCfg.id, made);
      this.metrics.backendPools[sinkCfg.id] = made.state;
      opening.push(made.open());
    }
    for (const p of this.config.pools) if (!this.pools.has(p.id)) this.log.warn({ backend: p.type, pool: p.name }, `backend ${p.type} pool "${p.name}" has no rules: not opened`);
    // One group sees each message once (message.publish only): ids need not be kept per message.
    const messageGroups = [...groups.values()].filter((g) => g.event.startsWith('message.'));
    this.ids.shared = !(messageGroups.length === 1 && messageGroups[0]?.event === 'message.publish');
    for (const [key, g] of groups) {
      const { event, pool, rules } = g;
      if (rules[0]?.mode === 'backpressure') {
        // Run where the message is routed; its PUBACK / PUBREC waits (bus.ts PublishHold). The
        // publishers' windows bound what waits; a failed write fails the acknowledgement.
        const hold = (client: ClientInfo | null, msg: MessageInfo): Promise<void> | null => (rules.some((r) => selectsTopic(r, event, msg.topic)) ? this.handle(event, pool, rules, host, [client, msg]) : null);
        this.bus.publishHolds.push(hold);
        this.holds.push(hold);
        continue;
      }
      // Only events some rule of the group selects take a place in the queue ($SYS, other topics do not).
      const accept = rules.some((r) => r.topic === null) ? undefined : (...args: unknown[]): boolean => rules.some((r) => selectsTopic(r, event, eventTopic(event, args)));
      const consumer = this.bus.consumeBatches(event, (batch: unknown[][]) => this.handleBatch(event, pool, rules, host, batch), { name: `backend.${key}`, maxQueued: pool.cfg.maxQueued, concurrency: pool.cfg.maxInflight, accept });
      this.consumers.push(consumer);
    }
    await Promise.all(opening);
    const sinkPool = sinkCfg && this.pools.get(sinkCfg.id);
    const store = host.logStore();
    // The message log's SQL sink: a reader of the log, never in the publishing path.
    if (sinkPool && 'dialect' in sinkPool && store) this.sink = new (await import('./msglog-sink.js')).LogSink(sinkPool, store, host.logCounts(), this.msglog, this.metrics.msglog, this.log);
    if (this.pools.size > 0) this.log.info({ pools: [...this.pools.keys()], rules: this.config.rules.length }, 'backends started');
  }

  /** One event through the rules of one pool, in order; a rule that fails does not stop the next. */
  private async handle(event: BackendEvent, pool: RedisPool | SqlPool, rules: readonly RuleConfig[], host: BackendHost, args: unknown[]): Promise<void> {
    const e = eventData(event, args, this.node, this.ids);
    let failed: string | null = null;
    for (const rule of rules) {
      if (!selects(rule, e)) continue;
      const c = this.metrics.backendRules[rule.key];
      if (c) c.matched++;
      try {
        await runAction(pool, rule, e, host);
        if (c) c.done++;
      } catch (err) {
        if (c) c.failed++;
        failed ??= `${rule.key}: ${errorText(err)}`;
      }
    }
    if (failed !== null) throw new Error(failed);
  }

  /**
   * Events through the rules of one pool: each rule, in order, for every event it selects (a rule
   * that fails for an event does not stop the next rule for it). Per event: the first failure.
   */
  private async handleBatch(event: BackendEvent, pool: RedisPool | SqlPool, rules: readonly RuleConfig[], host: BackendHost, batch: unknown[][]): Promise<BatchOutcome> {
    const events = batch.map((args) => eventData(event, args, this.node, this.ids));
    const n = events.length;
    const failed: (Error | undefined)[] = new Array<Error | undefined>(n);
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r] as RuleConfig;
      const at: number[] = [];
      for (let i = 0; i < n; i++) if (selects(rule, events[i] as EventData)) at.push(i);
      if (at.length === 0) continue;
      const c = this.metrics.backendRules[rule.key];
      if (c) c.matched += at.length;
      const list = at.length === n ? events.slice() : at.map((i) => events[i] as EventData);
      if (r === rules.length - 1) {
        // Not needed after the last rule has them: the collector may take what it lets go of.
        events.length = 0;
        batch.length = 0;
      }
      const outcome = await runActions(pool, rule, list, host);
      let nFailed = 0;
      for (let j = 0; j < outcome.length; j++) {
        const err = outcome[j];
        if (err === undefined) continue;
        nFailed++;
        const i = at[j] as number;
        failed[i] ??= new Error(`${rule.key}: ${errorText(err)}`);
      }
      if (c) {
        c.failed += nFailed;
        c.done += at.length - nFailed;
      }
    }
    return failed;
  }

  /** Stop taking events; let queued ones finish for a moment (CLOSE_GRACE_MS); close the pools. */
  async close(): Promise<void> {
    for (const c of this.consumers) c.close();
    for (const h of this.holds.splice(0)) this.bus.publishHolds.splice(this.bus.publishHolds.indexOf(h), 1);
    await withinGrace(Promise.all(this.consumers.map((c) => c.idle())));
    // The sink writes its batch in progress and the status updates it holds; while its server is
    // away, the pool closing after the grace ends the wait (the next start finds those updates).
    const sink = this.sink?.stop();
    if (sink) await withinGrace(sink);
    await Promise.all([...this.pools.values()].map((p: Pool) => p.close()));
    await sink;
  }
}

/** `p` settled, or CLOSE_GRACE_MS gone by, whichever comes first. */
async function withinGrace(p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
  clearTimeout(timer);
}

/** Whether a rule's topic filter selects the event (client events: always). */
function selects(rule: RuleConfig, e: EventData): boolean {
  return selectsTopic(rule, e.event, e.topic);
}

function selectsTopic(rule: RuleConfig, event: BackendEvent, topic: string | null): boolean {
  if (rule.topic === null || topic === null) return true;
  if (rule.topic === '#') return !topic.startsWith('$'); // the usual rule, without splitting [MQTT-4.7.2-1]
  let t = topic;
  if ((event === 'session.subscribed' || event === 'session.unsubscribed') && t.startsWith('$share/')) t = t.split('/').slice(2).join('/');
  return topicMatches(rule.topic, t);
}

/** The topic of an event's arguments, without building its EventData (client events: null). */
function eventTopic(event: BackendEvent, args: unknown[]): string | null {
  switch (event) {
    case 'session.subscribed':
    case 'session.unsubscribed':
      return args[1] as string;
    case 'message.publish':
    case 'message.delivered':
    case 'message.acked':
      return (args[1] as MessageInfo).topic;
    default:
      return null;
  }
}

/** One rule for several events: per event, its error or undefined. */
async function runActions(pool: RedisPool | SqlPool, rule: RuleConfig, events: readonly EventData[], host: BackendHost): Promise<BatchOutcome> {
  const a = rule.action;
  // Redis writes on_message_publish for many messages in one call.
  if ('function' in a && a.function === 'on_message_publish' && 'publishMany' in pool) return pool.publishMany(events);
  return Promise.all(events.map((e) => runAction(pool, rule, e, host).then(noError, (err: unknown) => err ?? new Error('failed'))));
}

function noError(): undefined {
  return undefined;
}

function runAction(pool: RedisPool | SqlPool, rule: RuleConfig, e: EventData, host: BackendHost): Promise<void> {
  const a = rule.action;
  if ('function' in a) return pool.fn(a.function, e, host);
  if ('sql' in a) return (pool as SqlPool).statements(a.sql, e.values());
  return (pool as RedisPool).commands(a.commands, e.values());
}
