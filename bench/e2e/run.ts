// End-to-end benchmark: StrataMQ vs Aedes vs Mosquitto on this machine.
//
//   npm run bench -- [--brokers strata,aedes,mosquitto] [--scenarios fanin,pairs,fanout0,fanout1]
//                    [--duration 5] [--warmup 1] [--payload 64] [--workers 2] ...
//   npm run bench -- --durable      (dpairs, drain, kill9, restart: see durable.ts)
//   npm run bench -- --log-query    (the message log: a time-range query over 10M messages, logquery.ts)
//   npm run bench -- --log-cost     (the message log's cost: brokers with and without it taking turns, interleave.ts)
//   npm run bench -- --redis-floor  (redis-server CPU per message of EMQX's on_message_publish layout, redis-floor.ts)
//   npm run bench -- --memory       (mretained, mdelivery, msubs, mconns, msessions, mflood,
//                                    midle: broker RSS per item, see memory.ts)
//
// Each broker is started (one at a time, fresh process per scenario so its
// peak RSS is per scenario) on a free 127.0.0.1 port, loaded by worker threads
// running load.ts, then stopped. Prints a table plus ratios and writes JSON to
// bench/results/<timestamp>.json.
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BROKERS,
  BROKER_LABEL,
  BrokerStartError,
  killAllBrokersSync,
  makeTempDir,
  redisUnavailable,
  removeTempDir,
  startBroker,
  startRedis,
  usesRedis,
  DURABLE_BROKERS,
  tail,
  unavailable,
  ALL_BROKERS,
  type BrokerName,
  type BrokerOptions,
  type RunningBroker,
  type RunningRedis,
} from './brokers.js';
import { histCount, mergeInto, newHist, percentileMs } from './hist.js';
import {
  nowNs,
  type ClientSpec,
  type FinishMsg,
  type GoMsg,
  type WorkerInit,
  type WorkerMsg,
  type WorkerResult,
} from './load.js';
import { RssSampler, systemBusySeconds, treesCpuSeconds } from './proc.js';
import { fmtMs, fmtRate, ratio, table } from './table.js';
import { DURABLE_MIN_PAYLOAD } from './durable-client.js';
import { noWorkDrain } from './nowork.js';
import { RESTART_BROKERS, runDrains, runKill9, runRestart, type DurableCell, type DurableCtx, type DurableOpts } from './durable.js';
import { MEMORY_SCENARIOS, memoryTargetRows, printMemory, printMemoryTargets, runMemory, type MemoryCell, type MemoryCtx, type MemoryName, type MemoryOpts } from './memory.js';
import { errMsg, median, sleep, timeout } from './util.js';
import { at, counterTotals, dealClients, liveWorkers, startWorker, type WorkerSlot } from './workers.js';
import { runLogQuery } from './logquery.js';
import { cycleRatios, runLogCost, type LogCostOpts, type LogCostRow } from './interleave.js';
import { type FloorRow, runRedisFloor } from './redis-floor.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/e2e
const repoRoot = path.resolve(here, '../../..');

// ---------------------------------------------------------------- options

const HELP = `usage: npm run bench -- [options]

  --brokers LIST        strata,strata-secure,strata-redis,aedes,mosquitto (default: strata,aedes,
                        mosquitto; with --durable also strata-redis: StrataMQ on the Redis registry)
  --scenarios LIST      fanin,pairs,fanout0,fanout1 (default: these four), lpairs / lspairs
                        (pairs with every message in the message log, async / sync: StrataMQ
                        only, compared with its pairs), rpairs (QoS1 pairs
                        stored in Redis: StrataMQ's on_message_publish backend rule vs Aedes on
                        aedes-persistence-redis, same redis-server set-up), rbpairs (the same,
                        the rule in back-pressure mode), and the durable ones:
                        dpairs, drain, kill9, restart; the memory ones: mretained, mdelivery,
                        msubs, mconns, msessions, mflood, midle
  --log-query           only the message log's query: first result and stream rate of a
                        time-range query over --log-messages (default 10000000) logged messages
  --log-cost            only the message log's cost targets: three StrataMQ brokers (no log,
                        logging # async, sync) on the pairs load take turns, --slice seconds
                        each per cycle for --cycles cycles (default 1 s, 12); the verdict is
                        the median of the cycles' ratios (see bench/e2e/interleave.ts);
                        --log-cost-vs CLI adds another build's logging brokers to the turns
  --redis-floor         only redis-server's CPU per message for EMQX's on_message_publish layout
                        (--redis-messages, default 300000): plain pipelined HSET + ZADD, ZADD
                        per topic, and the rule's own writes (RedisPool, script calls)
  --durable             add all durable scenarios (dpairs,drain,kill9,restart); without
                        --scenarios: only those. Peers run durable: Mosquitto 'persistence true',
                        Aedes on aedes-persistence-redis with a redis-server started here
  --memory              add all memory scenarios (broker RSS per retained message, filter,
                        connection, persistent session; QoS 1 latency in a retained flood; idle
                        and fan-in RSS; see docs/benchmarks.md); without --scenarios: only those
  --duration SEC        measured seconds per scenario (default 5)
  --warmup SEC          warm-up seconds before measuring (default 1)
  --payload BYTES       PUBLISH payload size, >= 8 (default 64)
  --workers N           load-generator worker threads (default 2)
  --batch N             QoS0 messages per socket write (default 32)
  --window N            QoS1 unacknowledged PUBLISH per publisher (default 100)
  --max-msgs N          hard cap of messages per publisher (default 50000000)
  --qos0-inflight N     QoS0: pause publishers while more than N deliveries (published x
                        fan-out - received) are outstanding (default 0 = off: publishers
                        pace by socket back-pressure only, as the scenarios define it)
  --rate N              QoS1 publishers send N messages per second in all (within their
                        window), not as fast as PUBACKs come (default 0 = closed loop): the
                        broker's CPU per message is then compared at equal load (the closed
                        loop's rate moves ±30% between runs here)
  --drain SEC           after publishing stops, wait up to SEC for deliveries to finish
                        (stops early once nothing arrives for 0.5 s; default 5)
  --rounds N            run the scenarios N times, one after another in each round, and report
                        each scenario's median round, and for lpairs / pairs the median of the
                        rounds' ratios (shown, not judged: the log's cost targets are judged by
                        --log-cost) (default 1; this machine's speed drifts by ±30% between runs)
  --strata-args "..."   extra arguments for 'stratamq start'
  --mosquitto-inflight N  mosquitto max_inflight_messages (default 100)
  --out FILE            JSON output (default bench/results/<timestamp>.json)
  durable scenarios:
  --drain-msgs N        drain: messages queued for the offline subscriber (default 100000)
  --drain-timeout SEC   drain: limit for storing, and for draining (default 120)
  --drain-runs N        drain: runs per broker, each on a fresh broker; the median is
                        reported (default 5; Aedes+Redis runs once: it does not finish)
  --kill-after SEC      kill9: publish this long, then SIGKILL the broker (default 3)
  --kill9-timeout SEC   kill9: limit for the redelivery after the restart (default 300)
  --restart-msgs N      restart: messages queued for one offline session (default 1000000)
  --restart-publishers N  restart: publishers filling the queue (default 4)
  --restart-window N    restart: QoS1 window per publisher while filling (default 1000)
  --restart-timeout SEC restart: limit for filling the queue (default 900)
  --verify-timeout SEC  restart: limit for draining everything after the last restart
                        (default 300; 0 skips the check)
  --aedes-max-session-delivery N  aedes-persistence-redis maxSessionDelivery (default
                        10000000; its own default, 1000, caps what a reconnect gets)
  memory scenarios:
  --memory-retained N   mretained/mdelivery: retained topics (default 200000)
  --memory-subs N       msubs: filters on one client (default 100000)
  --memory-conns N      mconns: idle connections (default 15000; needs ulimit -n above N)
  --memory-sessions N   msessions: offline persistent sessions (default 100000)
  --memory-flood N      mflood: retained messages in the flood (default 200000)
  -h, --help
`;

const { values: argv } = parseArgs({
  options: {
    brokers: { type: 'string' },
    scenarios: { type: 'string' },
    durable: { type: 'boolean', default: false },
    memory: { type: 'boolean', default: false },
    'log-query': { type: 'boolean', default: false },
    'log-messages': { type: 'string', default: '10000000' },
    'log-cost': { type: 'boolean', default: false },
    cycles: { type: 'string', default: '12' },
    'log-cost-vs': { type: 'string' },
    slice: { type: 'string', default: '1' },
    'redis-floor': { type: 'boolean', default: false },
    'redis-messages': { type: 'string', default: '300000' },
    'memory-retained': { type: 'string', default: '200000' },
    'memory-subs': { type: 'string', default: '100000' },
    'memory-conns': { type: 'string', default: '15000' },
    'memory-sessions': { type: 'string', default: '100000' },
    'memory-flood': { type: 'string', default: '200000' },
    'drain-msgs': { type: 'string', default: '100000' },
    'drain-timeout': { type: 'string', default: '120' },
    'drain-runs': { type: 'string', default: '5' },
    'kill-after': { type: 'string', default: '3' },
    'kill9-timeout': { type: 'string', default: '300' },
    'restart-msgs': { type: 'string', default: '1000000' },
    'restart-publishers': { type: 'string', default: '4' },
    'restart-window': { type: 'string', default: '1000' },
    'restart-timeout': { type: 'string', default: '900' },
    'verify-timeout': { type: 'string', default: '300' },
    'aedes-max-session-delivery': { type: 'string', default: '10000000' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    payload: { type: 'string', default: '64' },
    workers: { type: 'string', default: '2' },
    batch: { type: 'string', default: '32' },
    window: { type: 'string', default: '100' },
    'max-msgs': { type: 'string', default: '50000000' },
    'qos0-inflight': { type: 'string', default: '0' },
    rate: { type: 'string', default: '0' },
    drain: { type: 'string', default: '5' },
    'strata-args': { type: 'string', default: '' },
    rounds: { type: 'string', default: '1' },
    'mosquitto-inflight': { type: 'string', default: '100' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (argv.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function num(name: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`bench: --${name} must be a number >= ${min}\n`);
    process.exit(2);
  }
  return n;
}

const opts = {
  durationS: num('duration', argv.duration, 0.1),
  warmupS: num('warmup', argv.warmup, 0),
  payload: Math.floor(num('payload', argv.payload, 8)),
  workers: Math.floor(num('workers', argv.workers, 1)),
  batch: Math.floor(num('batch', argv.batch, 1)),
  window: Math.min(65000, Math.floor(num('window', argv.window, 1))),
  maxMsgs: Math.floor(num('max-msgs', argv['max-msgs'], 1)),
  qos0Inflight: Math.floor(num('qos0-inflight', argv['qos0-inflight'], 0)),
  rate: num('rate', argv.rate, 0),
  drainS: num('drain', argv.drain, 0),
  rounds: Math.floor(num('rounds', argv.rounds, 1)),
};

const durableOpts: DurableOpts = {
  payload: Math.max(DURABLE_MIN_PAYLOAD, opts.payload),
  window: opts.window,
  drainMsgs: Math.floor(num('drain-msgs', argv['drain-msgs'], 1)),
  drainTimeoutS: num('drain-timeout', argv['drain-timeout'], 1),
  drainRuns: Math.floor(num('drain-runs', argv['drain-runs'], 1)),
  killAfterS: num('kill-after', argv['kill-after'], 0.1),
  kill9TimeoutS: num('kill9-timeout', argv['kill9-timeout'], 1),
  restartMsgs: Math.floor(num('restart-msgs', argv['restart-msgs'], 1)),
  restartPublishers: Math.floor(num('restart-publishers', argv['restart-publishers'], 1)),
  restartWindow: Math.min(65000, Math.floor(num('restart-window', argv['restart-window'], 1))),
  restartTimeoutS: num('restart-timeout', argv['restart-timeout'], 1),
  verifyTimeoutS: num('verify-timeout', argv['verify-timeout'], 0),
  aedesMaxSessionDelivery: Math.floor(num('aedes-max-session-delivery', argv['aedes-max-session-delivery'], 1)),
};

const memoryOpts: MemoryOpts = {
  retained: Math.floor(num('memory-retained', argv['memory-retained'], 1)),
  subs: Math.floor(num('memory-subs', argv['memory-subs'], 1)),
  conns: Math.floor(num('memory-conns', argv['memory-conns'], 1)),
  sessions: Math.floor(num('memory-sessions', argv['memory-sessions'], 1)),
  flood: Math.floor(num('memory-flood', argv['memory-flood'], 1)),
};

if (argv['redis-floor']) {
  // What the layout costs redis-server itself (redis-floor.ts): no broker, no peers.
  const n = Math.floor(num('redis-messages', argv['redis-messages'], 1000));
  process.stdout.write(`EMQX's on_message_publish layout, ${n} messages of ${opts.payload} B, each way on a fresh redis-server:\n`);
  const rows = await runRedisFloor(n, opts.payload, (line) => process.stdout.write(`  ${line}\n`));
  const stat = (r: FloorRow, cmd: string): string => {
    const c = r.usecPerCall[cmd];
    return c ? `${c.usecPerCall.toFixed(2)} (${c.calls})` : '-';
  };
  process.stdout.write(
    '\n' +
      table(
        ['way', 'redis us/msg', 'client us/msg', 'B/msg sent', 'HSET us (calls)', 'ZADD us (calls)', 'EVALSHA us (calls)', 'keys'],
        rows.map((r) => [r.way, r.redisUs.toFixed(2), r.clientUs.toFixed(2), r.bytesIn.toFixed(0), stat(r, 'hset'), stat(r, 'zadd'), stat(r, 'evalsha'), String(r.keys)]),
        [false, true, true, true, true, true, true, true],
      ) +
      '\nredis us/msg = redis-server CPU (user + system, from /proc) / messages; client = this process; HSET / ZADD inside the\nscript calls are counted by commandstats too. Other load on the machine counts: run it quiet, compare rows of one run.\n',
  );
  process.exit(0);
}

if (argv['log-query']) {
  // The message log's query targets (logquery.ts), on the store directly: no broker, no peers.
  const n = Math.floor(num('log-messages', argv['log-messages'], 1000));
  process.stdout.write(`message log query over ${n} logged messages (payload ${opts.payload} B): filling…\n`);
  const r = await runLogQuery(n, opts.payload, (line) => process.stdout.write(`${line}\n`));
  process.stdout.write(
    '\n' +
      table(
        ['what', 'measured'],
        [
          ['filled (appendPacked, fsync none)', `${r.messages} msgs in ${r.fillSeconds.toFixed(1)} s, ${r.diskMB.toFixed(0)} MB`],
          ['time range (the second half)', `${r.inRange} msgs`],
          ['first result (planQuery + first entry, median of 5)', `${r.firstResultMs.toFixed(2)} ms`],
          ['stream, entries decoded (LogReader)', `${fmtRate(r.readerMsgsPerSec)} msg/s`],
          ['stream, JSON lines (what the API and CLI write)', `${fmtRate(r.jsonMsgsPerSec)} msg/s`],
          ['process RSS before / after the JSON-lines stream', `${r.rssBeforeMB.toFixed(0)} / ${r.rssAfterMB.toFixed(0)} MB`],
        ],
        [false, true],
      ) +
      '\n',
  );
  process.stdout.write(`target: first result < 100 ms: ${r.firstResultMs < 100 ? 'PASS' : 'MISS'}; stream >= 1M msgs/s: decoded ${r.readerMsgsPerSec >= 1e6 ? 'PASS' : 'MISS'}, JSON lines ${r.jsonMsgsPerSec >= 1e6 ? 'PASS' : 'MISS'}\n`);
  process.exit(0);
}

const brokerOpts: BrokerOptions = {
  strataArgs: argv['strata-args'].split(/\s+/).filter((s) => s !== ''),
  mosquittoInflight: Math.floor(num('mosquitto-inflight', argv['mosquitto-inflight'], 1)),
  readyTimeoutMs: 20_000,
};

// ---------------------------------------------------------------- scenarios

interface Scenario {
  name: string;
  title: string;
  /** deliveries expected per published message */
  fanout: number;
  /** run the brokers on durable state (Mosquitto persistence, Aedes + Redis) */
  durable?: boolean;
  /**
   * every publish stored in a redis-server started for the run: StrataMQ through a backend
   * rule (on_message_publish, EMQX's layout), Aedes through aedes-persistence-redis; Mosquitto
   * has no Redis backend (skipped)
   */
  redis?: boolean;
  /** StrataMQ's rule mode in a redis scenario: drop (default) or backpressure (PUBACK after the write) */
  redisMode?: 'drop' | 'backpressure';
  /** StrataMQ only, started with these config lines (the message log's rows); the others are skipped */
  strataConf?: string[];
  clients(tag: string): ClientSpec[];
}

/** The pairs load (pairs, lpairs, lspairs, dpairs' shape): 10 QoS 1 publisher -> subscriber pairs. */
function pairsClients(tag: string): ClientSpec[] {
  return Array.from({ length: 10 }, (_, i): ClientSpec[] => [
    { id: `${tag}-sub${i}`, role: 'sub', filter: `pairs/${i}`, qos: 1 },
    { id: `${tag}-pub${i}`, role: 'pub', topic: `pairs/${i}`, qos: 1, window: opts.window },
  ]).flat();
}

const SCENARIOS: Scenario[] = [
  {
    name: 'fanin',
    title: 'QoS0 fan-in, 10 publishers -> 1 subscriber on bench/+/x',
    fanout: 1,
    clients: (tag) => [
      { id: `${tag}-sub`, role: 'sub', filter: 'bench/+/x', qos: 0 },
      ...Array.from({ length: 10 }, (_, i): ClientSpec => ({
        id: `${tag}-pub${i}`,
        role: 'pub',
        topic: `bench/${i}/x`,
        qos: 0,
        window: 0,
      })),
    ],
  },
  {
    name: 'pairs',
    title: `QoS1 pairs, 10 publisher->subscriber pairs, window ${opts.window}`,
    fanout: 1,
    clients: pairsClients,
  },
  {
    name: 'fanout0',
    title: 'QoS0 fan-out, 1 publisher -> 100 subscribers',
    fanout: 100,
    clients: (tag) => [
      ...Array.from({ length: 100 }, (_, i): ClientSpec => ({
        id: `${tag}-sub${i}`,
        role: 'sub',
        filter: 'fanout/t',
        qos: 0,
      })),
      { id: `${tag}-pub`, role: 'pub', topic: 'fanout/t', qos: 0, window: 0 },
    ],
  },
  {
    name: 'fanout1',
    title: `QoS1 fan-out, 1 publisher (window ${opts.window}) -> 100 subscribers`,
    fanout: 100,
    clients: (tag) => [
      ...Array.from({ length: 100 }, (_, i): ClientSpec => ({
        id: `${tag}-sub${i}`,
        role: 'sub',
        filter: 'fanout/t',
        qos: 1,
      })),
      { id: `${tag}-pub`, role: 'pub', topic: 'fanout/t', qos: 1, window: opts.window },
    ],
  },
  {
    name: 'dpairs',
    title: `QoS1 pairs, persistent subscribers (clean_session=0), window ${opts.window}`,
    fanout: 1,
    durable: true,
    clients: (tag) =>
      Array.from({ length: 10 }, (_, i): ClientSpec[] => [
        { id: `${tag}-sub${i}`, role: 'sub', filter: `dpairs/${i}`, qos: 1, clean: false },
        { id: `${tag}-pub${i}`, role: 'pub', topic: `dpairs/${i}`, qos: 1, window: opts.window },
      ]).flat(),
  },
  {
    name: 'rpairs',
    title: `QoS1 pairs stored in Redis (StrataMQ: on_message_publish rule; Aedes: aedes-persistence-redis), window ${opts.window}`,
    fanout: 1,
    redis: true,
    clients: (tag) =>
      Array.from({ length: 10 }, (_, i): ClientSpec[] => [
        { id: `${tag}-sub${i}`, role: 'sub', filter: `rpairs/${i}`, qos: 1 },
        { id: `${tag}-pub${i}`, role: 'pub', topic: `rpairs/${i}`, qos: 1, window: opts.window },
      ]).flat(),
  },
  {
    name: 'rbpairs',
    title: `QoS1 pairs as 'rpairs', StrataMQ's rule in back-pressure mode (each PUBACK after its message is in Redis), window ${opts.window}`,
    fanout: 1,
    redis: true,
    redisMode: 'backpressure',
    clients: (tag) =>
      Array.from({ length: 10 }, (_, i): ClientSpec[] => [
        { id: `${tag}-sub${i}`, role: 'sub', filter: `rpairs/${i}`, qos: 1 },
        { id: `${tag}-pub${i}`, role: 'pub', topic: `rpairs/${i}`, qos: 1, window: opts.window },
      ]).flat(),
  },
  ...(['async', 'sync'] as const).map(
    (mode): Scenario => ({
      name: mode === 'async' ? 'lpairs' : 'lspairs',
      title: `QoS1 pairs as 'pairs', every message in the message log (msglog.topics = #, ${mode}), window ${opts.window}`,
      fanout: 1,
      strataConf: ['msglog.topics = "#"', `msglog.mode = ${mode}`],
      clients: pairsClients,
    }),
  ),
];

if (argv['log-cost']) {
  // The very scenarios pairs, lpairs and lspairs: their clients and the log's configuration.
  const subjects = (['pairs', 'lpairs', 'lspairs'] as const).map((name) => {
    const sc = SCENARIOS.find((x) => x.name === name) as Scenario;
    return { name, title: sc.strataConf?.join(', ') ?? 'no message log', conf: sc.strataConf ?? null, clients: sc.clients };
  });
  const o: LogCostOpts = { subjects, cycles: Math.floor(num('cycles', argv.cycles, 1)), sliceS: num('slice', argv.slice, 0.2), warmS: 0.3, window: opts.window, payload: opts.payload, workers: opts.workers, brokerOpts, vsCli: argv['log-cost-vs'] };
  process.stdout.write(`message log cost: ${o.vsCli === undefined ? 3 : 5} StrataMQ brokers on the pairs load (window ${o.window}, payload ${o.payload} B) taking turns, ${o.cycles} cycles of ${o.sliceS} s slices\n`);
  const rows = await runLogCost(o, (line) => process.stdout.write(`${line}\n`));
  const base = rows.find((r) => r.name === 'pairs') as LogCostRow;
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const lines = rows.map((r) => {
    const q = cycleRatios(r, base);
    return [
      `${r.name} (${r.title})`,
      fmtRate(sum(r.rates) / r.rates.length),
      r === base ? '1' : `${median(q).toFixed(2)}x (${Math.min(...q).toFixed(2)}–${Math.max(...q).toFixed(2)})`,
      r.delivered > 0 ? ((1e6 * r.cpuS) / r.delivered).toFixed(2) : '-',
      String(r.errors.length),
    ];
  });
  process.stdout.write('\n' + table(['broker', 'msgs/s', 'to pairs, median of cycles (range)', 'brk CPU us/msg', 'errors'], lines, [false, true, true, true, true]) + '\n');
  for (const [name, mode, min] of [
    ['lpairs', 'async', 0.9],
    ['lspairs', 'sync', 0.75],
  ] as const) {
    for (const r of rows.filter((x) => x.name === name || x.name === `${name}@vs`)) {
      const m = median(cycleRatios(r, base));
      const which = r.name === name ? '' : ` (${r.name}: the other build)`;
      process.stdout.write(`target: logging # in ${mode} mode costs <= ${Math.round((1 - min) * 100)}% of QoS1 pairs (>= ${min}x)${which}: ${m.toFixed(2)}x, median of ${r.rates.length} cycles ${m >= min ? 'PASS' : 'MISS'}\n`);
    }
  }
  for (const r of rows.filter((x) => x.name.endsWith('@vs'))) {
    const q = cycleRatios(r, rows.find((x) => `${x.name}@vs` === r.name) as LogCostRow);
    process.stdout.write(`${r.name} / ${r.name.slice(0, -3)}: ${median(q).toFixed(3)}x, median of ${q.length} cycles (${q.map((x) => x.toFixed(2)).join(' ')})\n`);
  }
  for (const r of rows) for (const e of r.errors.slice(0, 3)) process.stdout.write(`${r.name}: ${e}\n`);
  process.exit(0);
}

/** Durable scenarios with their own drivers (durable.ts), not the load workers. */
const CUSTOM = ['drain', 'kill9', 'restart'] as const;
type CustomName = (typeof CUSTOM)[number];
const CUSTOM_TITLE: Record<CustomName, string> = {
  drain: `drain of ${durableOpts.drainMsgs} queued QoS1 messages on reconnect`,
  kill9: `acknowledged-then-lost: QoS1 to an offline session, kill -9 after ${durableOpts.killAfterS}s, restart`,
  restart: `restart with ${durableOpts.restartMsgs} messages queued for an offline session`,
};
const DEFAULT_SCENARIOS = 'fanin,pairs,fanout0,fanout1';
const DURABLE_SCENARIOS = ['dpairs', ...CUSTOM];

function pickList<T extends string>(what: string, raw: string, known: readonly T[]): T[] {
  const out: T[] = [];
  for (const s of raw.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    if (!(known as readonly string[]).includes(s)) {
      process.stderr.write(`bench: unknown ${what} '${s}' (known: ${known.join(', ')})\n`);
      process.exit(2);
    }
    if (!out.includes(s as T)) out.push(s as T);
  }
  return out;
}

const brokers = pickList('broker', argv.brokers ?? (argv.durable ? DURABLE_BROKERS : BROKERS).join(','), ALL_BROKERS);
const extraScenarios = [...(argv.durable ? DURABLE_SCENARIOS : []), ...(argv.memory ? MEMORY_SCENARIOS : [])];
const scenarioNames = pickList(
  'scenario',
  extraScenarios.length > 0 ? [argv.scenarios ?? '', ...extraScenarios].join(',') : (argv.scenarios ?? DEFAULT_SCENARIOS),
  [...SCENARIOS.map((s) => s.name), ...CUSTOM, ...MEMORY_SCENARIOS],
);
const scenarios = scenarioNames.flatMap((n) => SCENARIOS.filter((s) => s.name === n));
const customs = scenarioNames.filter((n): n is CustomName => (CUSTOM as readonly string[]).includes(n));
const memories = MEMORY_SCENARIOS.filter((n: MemoryName) => scenarioNames.includes(n));

// ---------------------------------------------------------------- one run

interface Cell {
  broker: BrokerName;
  scenario: string;
  /** Which round of --rounds (0 first). */
  round?: number;
  status: 'ok' | 'error' | 'skipped';
  error?: string;
  msgsPerSec?: number;
  sentPerSec?: number;
  /** received in window / (sent in window × fan-out), percent */
  deliveredPct?: number;
  p50Ms?: number | null;
  p99Ms?: number | null;
  p999Ms?: number | null;
  latencySamples?: number;
  peakRssMB?: number | null;
  /** broker process-tree CPU during the window, % of one core */
  brokerCpuPct?: number | null;
  /** load-generator (this whole process, all threads) CPU during the window, % of one core */
  genCpuPct?: number;
  genUserPct?: number;
  genSysPct?: number;
  /** max event-loop utilisation of any generator worker during the window (1 = saturated) */
  genEluMax?: number;
  genElu?: number[];
  /** received / (sent × fan-out) over the whole run after the drain, percent */
  deliveredTotalPct?: number;
  /** rpairs, StrataMQ: messages its backend rule wrote to Redis (the rest dropped by the rule's bounded queue) */
  storedInRedis?: number;
  /** redis scenarios: keys in the redis-server after the run (Aedes: what its persistence left there) */
  redisKeys?: number;
  /** redis scenarios: redis-server CPU seconds from the broker's start to the end of the drain */
  redisCpuS?: number;
  /** time from end of publishing until deliveries stopped, ms */
  drainMs?: number;
  /** the drain limit was hit while messages were still arriving (backlog, not loss) */
  drainTimedOut?: boolean;
  /** CPU used by everything else on the machine during the window, % of one core */
  otherCpuPct?: number | null;
  /** last lines of the broker's log when the cell failed */
  logTail?: string;
  startFailed?: boolean;
  received?: number;
  sent?: number;
}

async function runScenario(name: BrokerName, sc: Scenario): Promise<Cell> {
  const cell: Cell = { broker: name, scenario: sc.name, status: 'error' };
  let broker: RunningBroker;
  // durable: state in a directory of our own, Aedes with a redis-server
  let ddir: string | null = null;
  let redis: RunningRedis | null = null;
  /** redis scenarios: redis-server CPU seconds when the broker had started */
  let redisCpu0: number | null = null;
  const cleanDurable = async (): Promise<void> => {
    await redis?.stop().catch(() => undefined);
    if (ddir !== null) removeTempDir(ddir);
  };
  try {
    if (sc.durable === true) {
      ddir = makeTempDir(`${name}-${sc.name}`);
      if (usesRedis(name)) redis = await startRedis(ddir);
      broker = await startBroker(name, brokerOpts, { dir: ddir, redisPort: redis?.port, maxSessionDelivery: durableOpts.aedesMaxSessionDelivery });
      if (redis !== null) broker.extraPids.push(redis.pid);
    } else if (sc.redis === true) {
      // The same redis-server set-up for both: StrataMQ's rule writes EMQX's layout, Aedes its persistence.
      ddir = makeTempDir(`${name}-${sc.name}`);
      redis = await startRedis(ddir);
      const conf = path.join(ddir, 'backend.conf');
      writeFileSync(conf, [`backend.redis.pool1.server = 127.0.0.1:${redis.port}`, `backend.redis.hook.message.publish.1 = {"topic": "#", "action": {"function": "on_message_publish"}, "pool": "pool1", "mode": "${sc.redisMode ?? 'drop'}"}`, ''].join('\n'));
      broker = await startBroker(name, brokerOpts, { dir: ddir, redisPort: name === 'aedes' ? redis.port : undefined, strataConfig: conf });
      broker.extraPids.push(redis.pid);
      redisCpu0 = treesCpuSeconds([redis.pid]);
    } else if (sc.strataConf !== undefined) {
      ddir = makeTempDir(`${name}-${sc.name}`);
      const conf = path.join(ddir, 'msglog.conf');
      writeFileSync(conf, [...sc.strataConf, ''].join('\n'));
      broker = await startBroker(name, brokerOpts, { dir: ddir, strataConfig: conf });
    } else {
      broker = await startBroker(name, brokerOpts);
    }
  } catch (e) {
    cell.error = `start failed: ${errMsg(e)}`;
    cell.startFailed = true;
    if (e instanceof BrokerStartError && e.logTail !== '') cell.logTail = e.logTail;
    await cleanDurable();
    return cell;
  }
  const brokerPids = [broker.pid, ...broker.extraPids];
  const sampler = new RssSampler(broker.pid, 250, broker.extraPids);
  const slots: WorkerSlot[] = [];
  let deathPoll: NodeJS.Timeout | undefined;
  try {
    const specs = sc.clients(`b${process.pid}-${sc.name}`);
    const buckets = dealClients(specs, opts.workers);
    const counters = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * 2 * buckets.length);
    const shared = new Int32Array(counters);
    const totals = (): { sent: number; recv: number } => counterTotals(shared);
    const runtimeErrors: string[] = [];
    buckets.forEach((clients, index) => {
      const init: WorkerInit = {
        host: '127.0.0.1',
        port: broker.port,
        clients,
        payloadSize: opts.payload,
        batch: opts.batch,
        maxPerPublisher: opts.maxMsgs,
        fanout: sc.fanout,
        qos0Inflight: opts.qos0Inflight,
        ratePerPublisher: opts.rate > 0 ? opts.rate / Math.max(1, specs.filter((x) => x.role === 'pub' && x.qos > 0).length) : 0,
        counters,
        index,
      };
      slots.push(startWorker(init, runtimeErrors));
    });

    await timeout(Promise.all(slots.map((s) => s.ready)), 20_000, 'connect/subscribe');

    const startNs = nowNs() + 100e6;
    const warmEndNs = startNs + opts.warmupS * 1e9;
    const endNs = warmEndNs + opts.durationS * 1e9;
    const go: GoMsg = { type: 'go', startNs, warmEndNs, endNs };
    for (const s of slots) s.worker.postMessage(go);

    // measurement window: generator (this process, all threads) and broker CPU
    let cpu0 = process.cpuUsage();
    let cpu: NodeJS.CpuUsage = { user: 0, system: 0 };
    let bcpu0: number | null = null;
    let bcpu: number | null = null;
    let sys0: number | null = null;
    let wall0 = nowNs();
    let wallS = opts.durationS;
    const died = new Promise<never>((_, rej) => {
      deathPoll = setInterval(() => {
        if (!broker.alive()) rej(new Error('broker process died during the run'));
      }, 500);
    });
    died.catch(() => {});
    at(warmEndNs, () => {
      wall0 = nowNs();
      cpu0 = process.cpuUsage();
      bcpu0 = treesCpuSeconds(brokerPids);
      sys0 = systemBusySeconds();
    });
    await Promise.race([new Promise<void>((r) => at(endNs, r)), died, ...slots.map((s) => s.result)]);
    wallS = (nowNs() - wall0) / 1e9;
    cpu = process.cpuUsage(cpu0);
    const sys1 = systemBusySeconds();
    const b1 = treesCpuSeconds(brokerPids);
    const b0 = bcpu0 as number | null;
    bcpu = b0 !== null && b1 !== null ? b1 - b0 : null;

    // drain: wait until nothing more arrives for 0.5 s (or --drain seconds)
    const drainStart = nowNs();
    let last = totals().recv;
    let lastChange = drainStart;
    let drained = false;
    while (nowNs() - drainStart < opts.drainS * 1e9) {
      await Promise.race([sleep(100), died]);
      const { sent, recv } = totals();
      if (recv !== last) {
        last = recv;
        lastChange = nowNs();
      } else if (recv >= sent * sc.fanout || nowNs() - lastChange >= 500e6) {
        drained = true;
        break;
      }
    }
    cell.drainMs = Math.max(0, (lastChange - drainStart) / 1e6);
    cell.drainTimedOut = !drained;

    for (const s of slots) s.worker.postMessage({ type: 'finish' } satisfies FinishMsg);
    const res = await timeout(Promise.all(slots.map((s) => s.result)), 10_000, 'collecting results');

    const hist = newHist();
    let sent = 0;
    let sentInWindow = 0;
    let received = 0;
    let receivedInWindow = 0;
    const elus: number[] = [];
    const errors: string[] = [];
    for (const r of res) {
      mergeInto(hist, r.hist);
      sent += r.sent;
      sentInWindow += r.sentInWindow;
      received += r.received;
      receivedInWindow += r.receivedInWindow;
      elus.push(Math.round(r.elu * 100) / 100);
      errors.push(...r.errors);
    }
    for (const e of runtimeErrors) if (!errors.includes(e)) errors.push(e);

    const windowS = opts.durationS;
    cell.msgsPerSec = receivedInWindow / windowS;
    cell.sentPerSec = sentInWindow / windowS;
    cell.deliveredPct = sentInWindow > 0 ? (100 * receivedInWindow) / (sentInWindow * sc.fanout) : 0;
    cell.deliveredTotalPct = sent > 0 ? (100 * received) / (sent * sc.fanout) : 0;
    cell.p50Ms = percentileMs(hist, 50);
    cell.p99Ms = percentileMs(hist, 99);
    cell.p999Ms = percentileMs(hist, 99.9);
    cell.latencySamples = histCount(hist);
    cell.genUserPct = (cpu.user / 1e6 / wallS) * 100;
    cell.genSysPct = (cpu.system / 1e6 / wallS) * 100;
    cell.genCpuPct = cell.genUserPct + cell.genSysPct;
    cell.genElu = elus;
    cell.genEluMax = Math.max(...elus);
    cell.brokerCpuPct = bcpu === null ? null : (bcpu / wallS) * 100;
    const s0 = sys0 as number | null;
    cell.otherCpuPct =
      s0 !== null && sys1 !== null && bcpu !== null
        ? Math.max(0, ((sys1 - s0 - bcpu) / wallS) * 100 - cell.genCpuPct)
        : null;
    cell.received = received;
    cell.sent = sent;

    if (errors.length > 0) {
      cell.error = errors.length === 1 ? errors[0] : `${errors[0]} (+${errors.length - 1} more)`;
    } else if (receivedInWindow === 0) {
      cell.error = 'no messages delivered in the measurement window';
    } else {
      cell.status = 'ok';
    }
  } catch (e) {
    cell.error = errMsg(e);
  } finally {
    clearInterval(deathPoll);
    for (const s of slots) {
      liveWorkers.delete(s.worker);
      s.worker.removeAllListeners('exit');
      await s.worker.terminate().catch(() => 0);
    }
    const peak = sampler.stop();
    cell.peakRssMB = peak === null ? null : peak / 1024;
    if (cell.status === 'error') cell.logTail = tail(broker.logFile, 10) || undefined;
    await broker.stop();
    if (sc.redis === true && redis !== null) {
      // What redis-server did for this broker (its CPU from the broker's start until the broker
      // stopped, after its last writes) and holds: StrataMQ's rule writes one mqtt:msg:<id> hash
      // per message, plus one sorted set per topic; Aedes' persistence what it keeps.
      const cpu1 = treesCpuSeconds([redis.pid]);
      if (cpu1 !== null && redisCpu0 !== null) cell.redisCpuS = cpu1 - redisCpu0;
      const { Redis } = await import('ioredis');
      const r = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await r.connect();
        cell.redisKeys = await r.dbsize();
        if (name === 'strata') cell.storedInRedis = cell.redisKeys - 10;
      } catch {
        // not measured
      } finally {
        r.disconnect();
      }
    }
    await cleanDurable();
  }
  return cell;
}

// ---------------------------------------------------------------- output

function fmtPct(n: number | null | undefined): string {
  return n === undefined || n === null ? '-' : `${n.toFixed(0)}%`;
}

function versionOf(cmd: string, args: string[], re: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return re.exec(out)?.[1] ?? 'unknown';
  } catch (e) {
    const out = String((e as { stdout?: unknown }).stdout ?? '');
    return re.exec(out)?.[1] ?? 'unknown';
  }
}

function pkgVersion(name: string): string {
  try {
    const j = JSON.parse(readFileSync(path.join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as {
      version?: string;
    };
    return j.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------- durable output

function aedesDurableUnavailable(): string | null {
  const r = redisUnavailable();
  if (r !== null) return r;
  try {
    createRequire(import.meta.url).resolve('aedes-persistence-redis');
    return null;
  } catch {
    return 'aedes-persistence-redis not installed (npm install)';
  }
}

function fmtMB(n: number | null | undefined): string {
  return n === undefined || n === null ? '-' : n.toFixed(0);
}

function fmtInt(n: number | undefined): string {
  return n === undefined ? '-' : String(n);
}

function fmtS(ms: number | undefined): string {
  return ms === undefined ? '-' : (ms / 1000).toFixed(2);
}

function summary(c: DurableCell): string {
  switch (c.scenario) {
    case 'drain':
      return (
        `${fmtRate(c.drainMsgsPerSec)} msg/s (${c.received} in ${fmtS(c.drainMs)} s), stored at ${fmtRate(c.storeMsgsPerSec)} msg/s` +
        ((c.drainRuns?.length ?? 0) > 1 ? `; median of runs ${c.drainRuns!.map(fmtRate).join(' ')}` : '')
      );
    case 'kill9':
      return `${c.acked} acknowledged, ${c.deliveredAcked} of them delivered after the restart, lost ${c.lost}`;
    case 'restart':
      return (
        `first delivery ${fmtMs(c.firstDeliveryMs)} ms after spawn (CONNACK ${fmtMs(c.connackMs)} ms), ` +
        `RSS ${fmtMB(c.rssMB)} MB, HWM ${fmtMB(c.hwmMB)} MB` +
        (c.verifyReceived !== undefined ? `; drained ${c.verifyReceived}/${c.stored} at ${fmtRate(c.verifyMsgsPerSec)} msg/s` : '')
      );
  }
}

function printDurable(dcells: DurableCell[]): void {
  const label = (c: DurableCell): string => BROKER_LABEL[c.broker] + (c.broker === 'aedes' ? '+Redis' : '');
  const errRow = (c: DurableCell, n: number): string[] => [label(c), c.status === 'skipped' ? 'skipped' : 'error', ...Array<string>(n - 2).fill('')];
  const drain = dcells.filter((c) => c.scenario === 'drain');
  if (drain.length > 0) {
    const hdr = ['drain', 'drain/s', 'drain s', 'first ms', 'received', 'dup', 'order', 'stored', 'store/s', 'RSS MB', 'brk CPU', 'other', 'cli ELU'];
    const rows = drain.map((c) =>
      c.status !== 'ok' && c.received === undefined
        ? errRow(c, hdr.length)
        : [
            label(c),
            c.status === 'ok' ? fmtRate(c.drainMsgsPerSec) : `${fmtRate(c.drainMsgsPerSec)}!`,
            fmtS(c.drainMs),
            fmtMs(c.firstMs),
            fmtInt(c.received),
            fmtInt(c.duplicates),
            c.outOfOrder === undefined ? '-' : c.outOfOrder === 0 ? 'ok' : `${c.outOfOrder} inv`,
            fmtInt(c.stored),
            fmtRate(c.storeMsgsPerSec),
            fmtMB(c.peakRssMB),
            fmtPct(c.brokerCpuPct),
            fmtPct(c.otherCpuPct),
            c.clientElu === undefined ? '-' : c.clientElu.toFixed(2),
          ],
    );
    process.stdout.write('\n' + table(hdr, rows, hdr.map((_, i) => i > 0)) + '\n');
    for (const c of drain) for (const n of c.notes ?? []) process.stdout.write(`  ${label(c)}: ${n}\n`);
    for (const c of drain) {
      if ((c.drainRuns?.length ?? 0) > 1) process.stdout.write(`  ${label(c)}: runs ${c.drainRuns!.map(fmtRate).join(', ')} msg/s; the row is the median run\n`);
    }
    process.stdout.write(
      `drain/s = ${durableOpts.drainMsgs} QoS1 messages queued for an offline persistent session / time from its reconnect (CONNECT)\n` +
        'until all arrived (acknowledged as they came); order = per-publisher order inversions; store/s = rate the\n' +
        'publisher (window ' + durableOpts.window + ') got them acknowledged while the subscriber was offline; RSS = peak over the scenario;\n' +
        'brk CPU / other during the drain; cli ELU = event-loop utilisation of the draining client (this process;\n' +
        'the broker waits while it works: at window W the drain is a ping-pong of W messages). ! = incomplete.\n' +
        'Aedes: maxSessionDelivery ' + durableOpts.aedesMaxSessionDelivery + '.\n',
    );
  }
  const kill = dcells.filter((c) => c.scenario === 'kill9');
  if (kill.length > 0) {
    const hdr = ['kill9', 'sent', 'acked', 'acked/s', 'restart ms', 'session', 'delivered', 'LOST', 'dup', 'unacked dlv', 'redeliver s'];
    const rows = kill.map((c) =>
      c.status !== 'ok'
        ? errRow(c, hdr.length)
        : [
            label(c),
            fmtInt(c.sent),
            fmtInt(c.acked),
            fmtRate(c.storeMsgsPerSec),
            fmtMs(c.readyMs),
            c.sessionPresent === true ? 'present' : 'GONE',
            fmtInt(c.deliveredAcked),
            c.lost === undefined ? '-' : `${c.lost}${c.lostIsUpperBound ? '?' : ''}`,
            fmtInt(c.duplicates),
            fmtInt(c.deliveredUnacked),
            fmtS(c.redeliverMs),
          ],
    );
    process.stdout.write('\n' + table(hdr, rows, hdr.map((_, i) => i > 0)) + '\n');
    process.stdout.write(
      `QoS1 to an offline persistent session, SIGKILL to the broker after ${durableOpts.killAfterS} s of publishing (window ${durableOpts.window}),\n` +
        'restart on the same state (Aedes: redis-server keeps running), reconnect: LOST = acknowledged but never delivered;\n' +
        'delivered = acknowledged ones that arrived; unacked dlv = arrived without a PUBACK reaching the publisher (allowed);\n' +
        'session = session present in CONNACK after the restart; restart ms = spawn -> first CONNACK; redeliver s = reconnect\n' +
        '-> last acknowledged message back (or the last arrival); ? = the wait limit hit while messages still arrived.\n',
    );
    for (const c of kill) {
      if (c.lost !== undefined && c.lost > 0 && c.lostExamples !== undefined) {
        process.stdout.write(`  ${label(c)}: lost e.g. seq ${c.lostExamples.join(', ')}\n`);
      }
      for (const n of c.notes ?? []) process.stdout.write(`  ${label(c)}: ${n}\n`);
    }
  }
  const rs = dcells.filter((c) => c.scenario === 'restart');
  if (rs.length > 0) {
    const hdr = ['restart', 'stop', 'stored', 'store/s', 'RSS before', 'disk MB', 'stop ms', 'CONNACK ms', 'FIRST ms', 'RSS MB', 'HWM MB', 'opened@ (log) / listen@', 'drained', 'drain/s'];
    const rows = rs.map((c) =>
      c.status === 'skipped' || c.variant === undefined
        ? errRow(c, hdr.length)
        : [
            label(c),
            c.variant,
            fmtInt(c.stored),
            fmtRate(c.storeMsgsPerSec),
            fmtMB(c.liveRssMB),
            fmtMB(c.dataMB),
            c.stopMs === undefined ? '-' : `${fmtMs(c.stopMs)}${c.stopForced ? '!' : ''}`,
            c.status === 'ok' ? fmtMs(c.connackMs) : 'error',
            fmtMs(c.firstDeliveryMs),
            fmtMB(c.rssMB),
            fmtMB(c.hwmMB),
            c.storeOpenedAtMs == null ? '-' : `${c.storeOpenedAtMs.toFixed(0)} (${c.storeOpenMs ?? '?'}) / ${c.listeningMs == null ? '?' : c.listeningMs.toFixed(0)}`,
            c.verifyReceived === undefined ? '-' : `${c.verifyReceived}${c.verifyComplete ? '' : '!'}`,
            fmtRate(c.verifyMsgsPerSec),
          ],
    );
    process.stdout.write('\n' + table(hdr, rows, hdr.map((_, i) => i > 1)) + '\n');
    process.stdout.write(
      'stored QoS1 messages queued for one offline persistent session (' + durableOpts.restartPublishers + ' publishers, window ' + durableOpts.restartWindow + ' each);\n' +
        'RSS before = broker RSS holding them, before the stop; stop: kill -9, or SIGTERM (stop ms = until exit, ! = forced);\n' +
        'disk MB = the state directory after the stop (what the new process loads);\n' +
        'CONNACK / FIRST ms = from spawning the new process to the subscriber\'s CONNACK / first PUBLISH (it polls the port);\n' +
        'RSS / HWM = VmRSS at the first delivery (acknowledgements held, so the queue stays loaded) / VmHWM of the new process;\n' +
        'opened@ (log) / listen@ = StrataMQ log: ms from spawn to "store opened" (node start, modules, log recovery, metadata\n' +
        'open), of which log recovery, and to "listening" (after loading durable state); drained = after the last restart,\n' +
        'all acknowledged: how many stored messages arrived (! = not all) and how fast. Mosquitto is stopped with SIGTERM\n' +
        'only: it saves on exit (after kill -9 it has nothing; see kill9). Aedes+Redis: not measured.\n',
    );
    for (const c of rs) for (const n of c.notes ?? []) process.stdout.write(`  ${label(c)} ${c.variant ?? ''}: ${n}\n`);
  }
  const errs = dcells.filter((c) => c.status === 'error');
  if (errs.length > 0) {
    process.stdout.write('\nerrors:\n');
    for (const c of errs) process.stdout.write(`  ${label(c)} ${c.scenario}${c.variant ? ` (${c.variant})` : ''}: ${c.error?.split('\n')[0]}\n`);
  }
  // ratios
  const get = (b: BrokerName, s: string, v?: string): DurableCell | undefined =>
    dcells.find((x) => x.broker === b && x.scenario === s && (v === undefined || x.variant === v) && x.status === 'ok');
  const peers = brokers.filter((b) => b !== 'strata');
  if (brokers.includes('strata') && peers.length > 0) {
    const rrows: string[][] = [];
    if (drain.length > 0) {
      // an incomplete drain (time limit) still has a rate: marked with !
      const anyDrain = (b: BrokerName): DurableCell | undefined => dcells.find((x) => x.broker === b && x.scenario === 'drain' && x.received !== undefined);
      const s = anyDrain('strata');
      const mark = (c: DurableCell | undefined): string => (c !== undefined && c.drainComplete !== true ? '!' : '');
      rrows.push(['drain msgs/s', ...peers.map((p) => ratio(s?.drainMsgsPerSec, anyDrain(p)?.drainMsgsPerSec) + mark(s) + mark(anyDrain(p)))]);
      rrows.push(['drain RSS', ...peers.map((p) => ratio(s?.peakRssMB, anyDrain(p)?.peakRssMB))]);
    }
    if (kill.length > 0) {
      const s = get('strata', 'kill9');
      rrows.push(['kill9 lost (absolute)', ...peers.map((p) => `${s?.lost ?? '-'} vs ${get(p, 'kill9')?.lost ?? '-'}`)]);
    }
    if (rs.length > 0) {
      const s = get('strata', 'restart', 'SIGTERM');
      rrows.push(['restart first delivery (SIGTERM)', ...peers.map((p) => ratio(s?.firstDeliveryMs, get(p, 'restart', 'SIGTERM')?.firstDeliveryMs))]);
      rrows.push(['restart RSS', ...peers.map((p) => ratio(s?.rssMB, get(p, 'restart', 'SIGTERM')?.rssMB))]);
    }
    const hdr = ['StrataMQ /', ...peers.map((p) => BROKER_LABEL[p] + (p === 'aedes' ? '+Redis' : ''))];
    process.stdout.write('\n' + table(hdr, rrows, hdr.map((_, i) => i > 0)) + '\n');
    process.stdout.write('(drain msgs/s: higher is better for StrataMQ, ! = from an incomplete drain; RSS and first delivery: lower is better)\n');
  }
}

interface TargetRow {
  target: string;
  measured: string;
  verdict: 'PASS' | 'MISS' | 'n/a';
}

/**
 * Each (broker, scenario)'s cell of the median round by msgs/s (the lower middle one of an even
 * count), among the rounds that ran well; the first cell when none did.
 */
function medianCells(all: readonly Cell[]): Cell[] {
  const out: Cell[] = [];
  for (const c of all) {
    if (out.some((x) => x.broker === c.broker && x.scenario === c.scenario)) continue;
    const same = all.filter((x) => x.broker === c.broker && x.scenario === c.scenario);
    const ok = same.filter((x) => x.status === 'ok').sort((x, y) => (x.msgsPerSec ?? 0) - (y.msgsPerSec ?? 0));
    out.push(ok.length > 0 ? (ok[Math.floor((ok.length - 1) / 2)] as Cell) : c);
  }
  return out;
}

/** The median over rounds of `a`'s msgs/s over `b`'s in the same round (StrataMQ), with the rounds' ratios; null if no round has both. */
function roundRatio(all: readonly Cell[], a: string, b: string): { median: number; each: number[] } | null {
  const each: number[] = [];
  for (const x of all) {
    if (x.broker !== 'strata' || x.scenario !== a || x.status !== 'ok') continue;
    const y = all.find((c) => c.broker === 'strata' && c.scenario === b && c.round === x.round && c.status === 'ok');
    if (x.msgsPerSec !== undefined && y?.msgsPerSec !== undefined && y.msgsPerSec > 0) each.push(x.msgsPerSec / y.msgsPerSec);
  }
  if (each.length === 0) return null;
  return { median: median(each), each };
}

function targetRows(cells: Cell[], dcells: DurableCell[], allCells: readonly Cell[] = cells): TargetRow[] {
  const rows: TargetRow[] = [];
  const lc = (b: BrokerName, s: string): Cell | undefined => cells.find((x) => x.broker === b && x.scenario === s && x.status === 'ok');
  const dc = (b: BrokerName, s: string, v?: string): DurableCell | undefined =>
    dcells.find((x) => x.broker === b && x.scenario === s && (v === undefined || x.variant === v) && x.status === 'ok');
  const verdict = (ok: boolean | null): TargetRow['verdict'] => (ok === null ? 'n/a' : ok ? 'PASS' : 'MISS');
  const ratioT = (target: string, a: number | undefined, b: number | undefined, min: number): void => {
    const r = a !== undefined && b !== undefined && b > 0 ? a / b : null;
    rows.push({ target, measured: r === null ? 'not measured' : `${r.toFixed(2)}x (${fmtRate(a)} vs ${fmtRate(b)} msg/s)`, verdict: verdict(r === null ? null : r >= min) });
  };
  if (scenarioNames.includes('dpairs')) {
    const s = lc('strata', 'dpairs')?.msgsPerSec;
    ratioT('dpairs >= 1x Mosquitto (persistence true)', s, lc('mosquitto', 'dpairs')?.msgsPerSec, 1);
    ratioT('dpairs >= 3x Aedes+Redis', s, lc('aedes', 'dpairs')?.msgsPerSec, 3);
    if (brokers.includes('strata-redis')) ratioT('dpairs on the Redis registry >= 3x Aedes+Redis (issue 17)', lc('strata-redis', 'dpairs')?.msgsPerSec, lc('aedes', 'dpairs')?.msgsPerSec, 3);
  }
  for (const sc of ['rpairs', 'rbpairs'] as const) {
    if (!scenarioNames.includes(sc)) continue;
    const mode = sc === 'rpairs' ? 'on_message_publish to Redis' : 'on_message_publish to Redis, back-pressure';
    ratioT(`${sc} (${mode}) >= 2x Aedes+aedes-persistence-redis`, lc('strata', sc)?.msgsPerSec, lc('aedes', sc)?.msgsPerSec, 2);
    const c = lc('strata', sc);
    if (c?.storedInRedis !== undefined && c.sent !== undefined) {
      rows.push({ target: `${sc}: StrataMQ publishes its rule wrote to Redis (the rest dropped, counted)`, measured: `${c.storedInRedis} of ${c.sent} (${((100 * c.storedInRedis) / Math.max(1, c.sent)).toFixed(0)}%)`, verdict: 'n/a' });
      if (c.redisCpuS !== undefined && c.storedInRedis > 0) {
        rows.push({ target: `${sc}: redis-server CPU per message StrataMQ's rule wrote`, measured: `${((1e6 * c.redisCpuS) / c.storedInRedis).toFixed(1)} us (${c.redisCpuS.toFixed(2)} s)`, verdict: 'n/a' });
      }
    }
    const a = lc('aedes', sc);
    if (a?.redisKeys !== undefined && a.sent !== undefined) {
      rows.push({ target: `${sc}: Aedes' redis-server after ${a.sent} publishes`, measured: `${a.redisKeys} keys, ${a.redisCpuS?.toFixed(2) ?? '?'} s CPU`, verdict: 'n/a' });
    }
  }
  for (const [name, mode, min] of [
    ['lpairs', 'async', 0.9],
    ['lspairs', 'sync', 0.75],
  ] as const) {
    if (!scenarioNames.includes(name)) continue;
    const target = `${name}: logging # in ${mode} mode costs <= ${Math.round((1 - min) * 100)}% of QoS1 pairs (>= ${min}x pairs)`;
    // Runs a minute apart: on a machine whose speed moves within a minute this ratio is a coin
    // toss (0.55–1.44 between rounds of one build here). The verdict is --log-cost's, whose
    // brokers take turns in 1 s slices (interleave.ts): here the ratio is shown, not judged.
    const r = roundRatio(allCells, name, 'pairs');
    const a = lc('strata', name)?.msgsPerSec;
    const p = lc('strata', 'pairs')?.msgsPerSec;
    const measured =
      r !== null && r.each.length > 1
        ? `${r.median.toFixed(2)}x, median of ${r.each.length} rounds (${r.each.map((x) => x.toFixed(2)).join(', ')})`
        : a !== undefined && p !== undefined && p > 0
          ? `${(a / p).toFixed(2)}x (${fmtRate(a)} vs ${fmtRate(p)} msg/s)`
          : 'not measured';
    rows.push({ target, measured: `${measured}; the verdict: npm run bench -- --log-cost`, verdict: 'n/a' });
  }
  if (customs.includes('drain')) {
    ratioT(`drain of ${durableOpts.drainMsgs} >= 2x Mosquitto`, dc('strata', 'drain')?.drainMsgsPerSec, dc('mosquitto', 'drain')?.drainMsgsPerSec, 2);
    if (brokers.includes('strata-redis')) ratioT(`drain of ${durableOpts.drainMsgs} from the Redis registry >= 10x Aedes+Redis (issue 17)`, dc('strata-redis', 'drain')?.drainMsgsPerSec, dc('aedes', 'drain')?.drainMsgsPerSec, 10);
  }
  if (customs.includes('kill9')) {
    const k = dc('strata', 'kill9');
    rows.push({
      target: 'acknowledged-then-lost after kill -9 = 0',
      measured: k === undefined ? 'not measured' : `${k.lost} of ${k.acked}`,
      verdict: verdict(k === undefined ? null : k.lost === 0),
    });
    if (brokers.includes('strata-redis')) {
      const r = dc('strata-redis', 'kill9');
      const a = dc('aedes', 'kill9');
      rows.push({
        target: 'acknowledged-then-lost after kill -9 on the Redis registry = 0 (issue 17)',
        measured: r === undefined ? 'not measured' : `${r.lost} of ${r.acked}${a === undefined ? '' : ` (Aedes+Redis: ${a.lost} of ${a.acked})`}`,
        verdict: verdict(r === undefined ? null : r.lost === 0),
      });
    }
  }
  if (customs.includes('restart')) {
    const note = (c: DurableCell): string => (c.stored !== undefined && c.stored < 1_000_000 ? `, only ${c.stored} stored (target: 1M)` : '');
    for (const v of ['kill -9', 'SIGTERM'] as const) {
      const c = dc('strata', 'restart', v);
      rows.push({
        target: `restart to first delivery with 1M stored < 1 s (${v})`,
        measured: c?.firstDeliveryMs === undefined ? 'not measured' : `${fmtMs(c.firstDeliveryMs)} ms${note(c)}`,
        verdict: verdict(c?.firstDeliveryMs === undefined ? null : c.firstDeliveryMs < 1000),
      });
    }
    const c = dc('strata', 'restart', 'SIGTERM') ?? dc('strata', 'restart', 'kill -9');
    rows.push({
      target: 'broker RSS with 1M queued <= 300 MB (after restart, queue loaded)',
      measured: c?.rssMB == null ? 'not measured' : `${fmtMB(c.rssMB)} MB (HWM ${fmtMB(c.hwmMB)} MB)${note(c)}`,
      verdict: verdict(c?.rssMB == null ? null : c.rssMB <= 300),
    });
    rows.push({
      target: 'broker RSS with 1M queued <= 300 MB (the broker that stored them)',
      measured: c?.liveRssMB == null ? 'not measured' : `${fmtMB(c.liveRssMB)} MB${note(c)}`,
      verdict: verdict(c?.liveRssMB == null ? null : c.liveRssMB <= 300),
    });
  }
  return rows;
}

function printTargets(cells: Cell[], dcells: DurableCell[], allCells: readonly Cell[]): void {
  const rows = targetRows(cells, dcells, allCells);
  if (rows.length === 0) return;
  process.stdout.write('\n' + table(['target', 'measured', ''], rows.map((r) => [r.target, r.measured, r.verdict]), [false, false, false]) + '\n');
}

// ---------------------------------------------------------------- main

process.on('exit', () => killAllBrokersSync());
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\nbench: ${sig}, stopping brokers\n`);
    killAllBrokersSync();
    for (const w of liveWorkers) void w.terminate();
    process.exit(130);
  });
}

async function main(): Promise<void> {
  const cpuModel = cpus()[0]?.model ?? 'unknown cpu';
  const env = {
    node: process.version,
    cpu: cpuModel,
    cores: availableParallelism(),
    memGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    aedes: pkgVersion('aedes'),
    aedesPersistenceRedis: pkgVersion('aedes-persistence-redis'),
    redis: versionOf(process.env['REDIS_BIN'] ?? 'redis-server', ['--version'], /v=(\S+)/),
    mosquitto: versionOf(process.env['MOSQUITTO_BIN'] ?? '/usr/sbin/mosquitto', ['-h'], /mosquitto version (\S+)/),
  };
  process.stdout.write(
    `StrataMQ e2e bench: ${env.cores} cores (${env.cpu}), node ${env.node}, aedes ${env.aedes}, mosquitto ${env.mosquitto}\n` +
      `warm-up ${opts.warmupS}s + ${opts.durationS}s per scenario, payload ${opts.payload} B, ` +
      `${opts.workers} load worker thread(s), MQTT 3.1.1, 127.0.0.1\n\n`,
  );

  const dctx: DurableCtx = { brokerOpts, d: durableOpts, say: (l) => process.stdout.write(`${l}\n`) };
  const durableNeeded = scenarios.some((s) => s.durable === true || s.redis === true) || customs.length > 0;
  /** The targets table: durable scenarios' targets, and the message log's (lpairs, lspairs). */
  const targetsWanted = durableNeeded || scenarios.some((s) => s.strataConf !== undefined);
  /** Aedes runs durable on aedes-persistence-redis + redis-server: both must be there. */
  const aedesDurableWhy = brokers.includes('aedes') && durableNeeded ? aedesDurableUnavailable() : null;
  if (aedesDurableWhy !== null) process.stdout.write(`aedes (durable scenarios): ${aedesDurableWhy}\n`);

  if (customs.includes('drain') && durableOpts.payload + 11 <= 127) {
    // The drain client's code is compiled while it drains: warm it up once on a sender that
    // does no work, so the first broker's drains do not pay for it and later ones not gain.
    const rates: number[] = [];
    for (let i = 0; i < 3; i++) rates.push(await noWorkDrain({ msgs: durableOpts.drainMsgs, window: 128, payload: durableOpts.payload }));
    process.stdout.write(`drain client warm-up on a no-work sender: ${rates.map((r) => `${(r / 1000).toFixed(1)}k`).join(', ')} msg/s\n\n`);
  }

  /** Every round's cells (--rounds); `cells`, after the runs: each scenario's median round. */
  const allCells: Cell[] = [];
  const dcells: DurableCell[] = [];
  const mcells: MemoryCell[] = [];
  const faninScenario = SCENARIOS.find((s) => s.name === 'fanin')!;
  const mctx: MemoryCtx = {
    brokerOpts,
    m: memoryOpts,
    say: (l) => process.stdout.write(`${l}\n`),
    fanin: async (b) => {
      const c = await runScenario(b, faninScenario);
      return { peakRssMB: c.peakRssMB, msgsPerSec: c.msgsPerSec, error: c.status === 'ok' ? undefined : c.error };
    },
  };
  for (const b of brokers) {
    const why = unavailable(b);
    if (why !== null) {
      process.stdout.write(`${b}: ${why}\n`);
      for (const sc of scenarios) allCells.push({ broker: b, scenario: sc.name, status: 'skipped', error: why });
      for (const c of customs) dcells.push({ broker: b, scenario: c, status: 'skipped', error: why });
      for (const s of memories) mcells.push({ broker: b, scenario: s, status: 'skipped', error: why });
      continue;
    }
    let startError: string | null = null;
    for (let round = 0; round < opts.rounds; round++) {
    if (opts.rounds > 1) process.stdout.write(`${b}: round ${round + 1} of ${opts.rounds}\n`);
    const put = (c: Cell): void => void allCells.push({ ...c, round });
    for (const sc of scenarios) {
      if (startError !== null) {
        put({ broker: b, scenario: sc.name, status: 'error', error: startError, startFailed: true });
        continue;
      }
      if (sc.redis === true) {
        const why = b === 'mosquitto' ? 'no Redis backend' : b === 'strata-secure' ? 'runs without the backend rule' : b === 'aedes' ? aedesDurableWhy : redisUnavailable();
        if (why !== null) {
          put({ broker: b, scenario: sc.name, status: 'skipped', error: why });
          continue;
        }
      }
      if (sc.strataConf !== undefined && b !== 'strata') {
        put({ broker: b, scenario: sc.name, status: 'skipped', error: 'StrataMQ only (its message log)' });
        continue;
      }
      if (b === 'strata-redis' && sc.durable !== true) {
        put({ broker: b, scenario: sc.name, status: 'skipped', error: 'durable scenarios only' });
        continue;
      }
      if (sc.durable === true && b === 'aedes' && aedesDurableWhy !== null) {
        put({ broker: b, scenario: sc.name, status: 'skipped', error: aedesDurableWhy });
        continue;
      }
      process.stdout.write(`${b.padEnd(9)} ${sc.name.padEnd(8)} ${sc.title} ... `);
      const cell = await runScenario(b, sc);
      if (cell.startFailed === true) {
        if (sc.durable !== true) startError = cell.error ?? 'start failed';
        if (cell.logTail !== undefined) {
          const lines = cell.logTail.split('\n').slice(-8);
          process.stdout.write(`error: ${cell.error}\n${lines.map((l) => `    | ${l}`).join('\n')}\n`);
        } else {
          process.stdout.write(`error: ${cell.error}\n`);
        }
        if (startError !== null) process.stdout.write(`${b}: skipping its other scenarios\n`);
        put(cell);
        continue;
      }
      put(cell);
      if (cell.status === 'ok') {
        process.stdout.write(
          `${fmtRate(cell.msgsPerSec)} msg/s, p50 ${fmtMs(cell.p50Ms)} ms, p99 ${fmtMs(cell.p99Ms)} ms\n`,
        );
      } else {
        process.stdout.write(`error: ${cell.error}\n`);
      }
      await sleep(300);
    }
    }
    for (const c of customs) {
      if (startError !== null) {
        dcells.push({ broker: b, scenario: c, status: 'error', error: startError });
        continue;
      }
      if (b === 'aedes' && aedesDurableWhy !== null) {
        dcells.push({ broker: b, scenario: c, status: 'skipped', error: aedesDurableWhy });
        continue;
      }
      if (c === 'restart' && !RESTART_BROKERS.includes(b)) {
        dcells.push({ broker: b, scenario: c, status: 'skipped', error: 'not measured (StrataMQ and Mosquitto only)' });
        continue;
      }
      process.stdout.write(`${b.padEnd(9)} ${c.padEnd(8)} ${CUSTOM_TITLE[c]} ...${c === 'restart' ? '\n' : ' '}`);
      const drainRuns = b === 'aedes' ? 1 : durableOpts.drainRuns;
      const got = c === 'drain' ? [await runDrains(b, dctx, drainRuns)] : c === 'kill9' ? [await runKill9(b, dctx)] : await runRestart(b, dctx);
      for (const cell of got) {
        dcells.push(cell);
        if (c === 'restart') process.stdout.write(`    ${cell.variant ?? ''}: `);
        process.stdout.write(`${cell.status === 'ok' ? summary(cell) : `error: ${cell.error}`}\n`);
        if (cell.status === 'error' && cell.logTail !== undefined) {
          process.stdout.write(`${cell.logTail.split('\n').slice(-6).map((l) => `    | ${l}`).join('\n')}\n`);
        }
      }
      await sleep(300);
    }
    if (memories.length > 0) {
      if (startError !== null) {
        for (const s of memories) mcells.push({ broker: b, scenario: s, status: 'error', error: startError });
      } else {
        mcells.push(...(await runMemory(b, memories, mctx)));
      }
    }
  }

  const cells = medianCells(allCells);

  // main table
  if (scenarios.length > 0) {
    const rows: string[][] = [];
    for (const sc of scenarios) {
      for (const b of brokers) {
        const c = cells.find((x) => x.broker === b && x.scenario === sc.name)!;
        if (c.status === 'skipped') {
          rows.push([sc.name, BROKER_LABEL[b], c.error === aedesDurableWhy ? 'skipped' : 'not built', '', '', '', '', '', '', '', '', '']);
          continue;
        }
        const ok = c.status === 'ok';
        rows.push([
          sc.name,
          BROKER_LABEL[b],
          ok ? fmtRate(c.msgsPerSec) : 'error',
          fmtRate(c.sentPerSec),
          c.deliveredTotalPct === undefined ? '-' : `${fmtPct(c.deliveredTotalPct)}${c.drainTimedOut ? '~' : ''}`,
          ok ? fmtMs(c.p50Ms) : '-',
          ok ? fmtMs(c.p99Ms) : '-',
          c.peakRssMB === undefined || c.peakRssMB === null ? '-' : c.peakRssMB.toFixed(0),
          fmtPct(c.brokerCpuPct),
          fmtPct(c.genCpuPct),
          c.genEluMax === undefined ? '-' : c.genEluMax.toFixed(2),
          fmtPct(c.otherCpuPct),
        ]);
      }
    }
    process.stdout.write('\n');
    process.stdout.write(
      table(
        ['scenario', 'broker', 'msgs/s', 'sent/s', 'deliv', 'p50 ms', 'p99 ms', 'RSS MB', 'brk CPU', 'gen CPU', 'gen ELU', 'other'],
        rows,
        [false, false, true, true, true, true, true, true, true, true, true, true],
      ) + '\n',
    );
    process.stdout.write(
      'msgs/s = PUBLISH received by subscribers per second in the window; sent/s = PUBLISH written by publishers;\n' +
        'deliv = all received / (all sent x fan-out) after the drain; latency = publish -> receive; RSS = broker peak;\n' +
        'CPU in % of one core (brk = broker process tree, gen = load generator, all threads);\n' +
        'gen ELU = event-loop utilisation of the busiest generator thread (1.00 = saturated: generator-bound);\n' +
        'other = CPU used by anything else on the machine (kernel softirq included) - high values mean a noisy run.\n',
    );
    if (scenarios.some((s) => s.durable === true)) {
      process.stdout.write(
        'dpairs: subscribers are persistent sessions; Mosquitto runs with persistence true (autosave every 1800 s),\n' +
          'Aedes with aedes-persistence-redis (RSS and brk CPU include its redis-server).\n',
      );
    }
    if (cells.some((c) => c.drainTimedOut)) {
      process.stdout.write(`~ = still delivering a backlog when the ${opts.drainS}s drain limit hit (not necessarily loss).\n`);
    }
    if (opts.qos0Inflight === 0 && scenarios.some((s) => s.name === 'fanin' || s.name === 'fanout0')) {
      process.stdout.write(
        'QoS0 publishers pace by TCP back-pressure only, so QoS0 latency is mostly time queued in socket buffers;\n' +
          'run with --qos0-inflight N (e.g. 10000) for QoS0 latency at a bounded load.\n',
      );
    }
    const failed = cells.filter((c) => c.status === 'error');
    if (failed.length > 0) {
      process.stdout.write('\nerrors:\n');
      for (const c of failed) process.stdout.write(`  ${BROKER_LABEL[c.broker]} ${c.scenario}: ${c.error?.split('\n')[0]}\n`);
    }
  }

  // ratios
  const peers = brokers.filter((b) => b !== 'strata');
  if (brokers.includes('strata') && peers.length > 0) {
    const get = (b: BrokerName, s: string): Cell | undefined =>
      cells.find((x) => x.broker === b && x.scenario === s && x.status === 'ok');
    const rrows = scenarios.map((sc) => {
      const s = get('strata', sc.name);
      return [
        sc.name,
        ...peers.flatMap((p) => {
          const o = get(p, sc.name);
          return [ratio(s?.msgsPerSec, o?.msgsPerSec), ratio(s?.p99Ms, o?.p99Ms), ratio(s?.peakRssMB, o?.peakRssMB)];
        }),
      ];
    });
    const hdr = ['StrataMQ /', ...peers.flatMap((p) => [`${BROKER_LABEL[p]} msgs/s`, 'p99', 'RSS'])];
    if (scenarios.length > 0) {
      process.stdout.write('\n' + table(hdr, rrows, hdr.map((_, i) => i > 0)) + '\n');
      process.stdout.write('(msgs/s: higher is better for StrataMQ; p99 and RSS: lower is better)\n');
    }
  }

  if (dcells.length > 0) printDurable(dcells);
  if (targetsWanted && brokers.includes('strata')) printTargets(cells, dcells, allCells);
  const say = (s: string): void => void process.stdout.write(s);
  if (mcells.length > 0) printMemory(mcells, brokers, say);
  if (mcells.length > 0 && brokers.includes('strata')) printMemoryTargets(mcells, memoryOpts, say);

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = argv.out ?? path.join(repoRoot, 'bench', 'results', `${stamp}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        env,
        options: { ...opts, brokers, scenarios: scenarioNames, mosquittoInflight: brokerOpts.mosquittoInflight, strataArgs: brokerOpts.strataArgs, durable: durableOpts, memory: memoryOpts },
        results: cells,
        rounds: opts.rounds > 1 ? allCells : undefined,
        durable: dcells,
        targets: targetsWanted && brokers.includes('strata') ? targetRows(cells, dcells, allCells) : undefined,
        memory: mcells.length > 0 ? mcells : undefined,
        memoryTargets: mcells.length > 0 && brokers.includes('strata') ? memoryTargetRows(mcells, memoryOpts) : undefined,
      },
      null,
      2,
    ) + '\n',
  );
  process.stdout.write(`\nJSON: ${path.relative(process.cwd(), out) || out}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.stack : String(e)}\n`);
    killAllBrokersSync();
    process.exit(1);
  },
);
