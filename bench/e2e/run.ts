// End-to-end benchmark: StrataMQ vs Aedes vs Mosquitto on this machine.
//
//   npm run bench -- [--brokers strata,aedes,mosquitto] [--scenarios fanin,pairs,fanout0,fanout1]
//                    [--duration 5] [--warmup 1] [--payload 64] [--workers 2] ...
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
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BROKERS,
  BROKER_LABEL,
  BrokerStartError,
  killAllBrokersSync,
  startBroker,
  tail,
  unavailable,
  type BrokerName,
  type BrokerOptions,
  type RunningBroker,
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
import { RssSampler, systemBusySeconds, treeCpuSeconds } from './proc.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/e2e
const repoRoot = path.resolve(here, '../../..');

// ---------------------------------------------------------------- options

const HELP = `usage: npm run bench -- [options]

  --brokers LIST        strata,aedes,mosquitto (default: all three)
  --scenarios LIST      fanin,pairs,fanout0,fanout1 (default: all four)
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
  --drain SEC           after publishing stops, wait up to SEC for deliveries to finish
                        (stops early once nothing arrives for 0.5 s; default 5)
  --strata-args "..."   extra arguments for 'stratamq start'
  --mosquitto-inflight N  mosquitto max_inflight_messages (default 100)
  --out FILE            JSON output (default bench/results/<timestamp>.json)
  -h, --help
`;

const { values: argv } = parseArgs({
  options: {
    brokers: { type: 'string', default: BROKERS.join(',') },
    scenarios: { type: 'string', default: 'fanin,pairs,fanout0,fanout1' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    payload: { type: 'string', default: '64' },
    workers: { type: 'string', default: '2' },
    batch: { type: 'string', default: '32' },
    window: { type: 'string', default: '100' },
    'max-msgs': { type: 'string', default: '50000000' },
    'qos0-inflight': { type: 'string', default: '0' },
    drain: { type: 'string', default: '5' },
    'strata-args': { type: 'string', default: '' },
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
  drainS: num('drain', argv.drain, 0),
};

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
  clients(tag: string): ClientSpec[];
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
    clients: (tag) =>
      Array.from({ length: 10 }, (_, i): ClientSpec[] => [
        { id: `${tag}-sub${i}`, role: 'sub', filter: `pairs/${i}`, qos: 1 },
        { id: `${tag}-pub${i}`, role: 'pub', topic: `pairs/${i}`, qos: 1, window: opts.window },
      ]).flat(),
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
];

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

const brokers = pickList('broker', argv.brokers, BROKERS);
const scenarios = pickList(
  'scenario',
  argv.scenarios,
  SCENARIOS.map((s) => s.name),
).map((n) => SCENARIOS.find((s) => s.name === n)!);

// ---------------------------------------------------------------- one run

interface Cell {
  broker: BrokerName;
  scenario: string;
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

const liveWorkers = new Set<Worker>();

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function at(ns: number, fn: () => void): NodeJS.Timeout {
  return setTimeout(fn, Math.max(0, (ns - nowNs()) / 1e6));
}

interface WorkerSlot {
  worker: Worker;
  ready: Promise<void>;
  result: Promise<WorkerResult>;
}

/** Starts a load worker; its promises reject if it reports a fatal error or dies. */
function startWorker(init: WorkerInit, runtimeErrors: string[]): WorkerSlot {
  const worker = new Worker(new URL('./load.js', import.meta.url), { workerData: init });
  liveWorkers.add(worker);
  let readyRes!: () => void;
  let readyRej!: (e: Error) => void;
  let resultRes!: (r: WorkerResult) => void;
  let resultRej!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    readyRes = res;
    readyRej = rej;
  });
  const result = new Promise<WorkerResult>((res, rej) => {
    resultRes = res;
    resultRej = rej;
  });
  ready.catch(() => {});
  result.catch(() => {});
  const fail = (e: Error): void => {
    readyRej(e);
    resultRej(e);
  };
  worker.on('message', (m: WorkerMsg) => {
    if (m.type === 'ready') readyRes();
    else if (m.type === 'fatal') fail(new Error(m.error));
    else if (m.type === 'error') runtimeErrors.push(m.error);
    else if (m.type === 'result') resultRes(m);
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`load worker exited (code ${code})`)));
  return { worker, ready, result };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what} timed out after ${Math.round(ms)} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function runScenario(name: BrokerName, sc: Scenario): Promise<Cell> {
  const cell: Cell = { broker: name, scenario: sc.name, status: 'error' };
  let broker: RunningBroker;
  try {
    broker = await startBroker(name, brokerOpts);
  } catch (e) {
    cell.error = `start failed: ${errMsg(e)}`;
    cell.startFailed = true;
    if (e instanceof BrokerStartError && e.logTail !== '') cell.logTail = e.logTail;
    return cell;
  }
  const sampler = new RssSampler(broker.pid);
  const slots: WorkerSlot[] = [];
  let deathPoll: NodeJS.Timeout | undefined;
  try {
    const specs = sc.clients(`b${process.pid}-${sc.name}`);
    const nWorkers = Math.max(1, Math.min(opts.workers, specs.length));
    const buckets: ClientSpec[][] = Array.from({ length: nWorkers }, () => []);
    specs.forEach((s, i) => buckets[i % nWorkers]!.push(s));

    const counters = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * 2 * nWorkers);
    const shared = new Int32Array(counters);
    const totals = (): { sent: number; recv: number } => {
      let sent = 0;
      let recv = 0;
      for (let i = 0; i < shared.length; i += 2) {
        sent += Atomics.load(shared, i);
        recv += Atomics.load(shared, i + 1);
      }
      return { sent, recv };
    };
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
        counters,
        index,
      };
      slots.push(startWorker(init, runtimeErrors));
    });

    await withTimeout(Promise.all(slots.map((s) => s.ready)), 20_000, 'connect/subscribe');

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
      bcpu0 = treeCpuSeconds(broker.pid);
      sys0 = systemBusySeconds();
    });
    await Promise.race([new Promise<void>((r) => at(endNs, r)), died, ...slots.map((s) => s.result)]);
    wallS = (nowNs() - wall0) / 1e9;
    cpu = process.cpuUsage(cpu0);
    const sys1 = systemBusySeconds();
    const b1 = treeCpuSeconds(broker.pid);
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
    const res = await withTimeout(Promise.all(slots.map((s) => s.result)), 10_000, 'collecting results');

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
  }
  return cell;
}

// ---------------------------------------------------------------- output

function fmtRate(n: number | undefined): string {
  if (n === undefined) return '-';
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}

function fmtMs(n: number | null | undefined): string {
  if (n === undefined || n === null) return '-';
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function fmtPct(n: number | null | undefined): string {
  return n === undefined || n === null ? '-' : `${n.toFixed(0)}%`;
}

function table(headers: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === undefined || a === null || b === undefined || b === null || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}x`;
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
    mosquitto: versionOf(process.env['MOSQUITTO_BIN'] ?? '/usr/sbin/mosquitto', ['-h'], /mosquitto version (\S+)/),
  };
  process.stdout.write(
    `StrataMQ e2e bench: ${env.cores} cores (${env.cpu}), node ${env.node}, aedes ${env.aedes}, mosquitto ${env.mosquitto}\n` +
      `warm-up ${opts.warmupS}s + ${opts.durationS}s per scenario, payload ${opts.payload} B, ` +
      `${opts.workers} load worker thread(s), MQTT 3.1.1, 127.0.0.1\n\n`,
  );

  const cells: Cell[] = [];
  for (const b of brokers) {
    const why = unavailable(b);
    if (why !== null) {
      process.stdout.write(`${b}: ${why}\n`);
      for (const sc of scenarios) cells.push({ broker: b, scenario: sc.name, status: 'skipped', error: why });
      continue;
    }
    let startError: string | null = null;
    for (const sc of scenarios) {
      if (startError !== null) {
        cells.push({ broker: b, scenario: sc.name, status: 'error', error: startError, startFailed: true });
        continue;
      }
      process.stdout.write(`${b.padEnd(9)} ${sc.name.padEnd(8)} ${sc.title} ... `);
      const cell = await runScenario(b, sc);
      if (cell.startFailed === true) {
        startError = cell.error ?? 'start failed';
        if (cell.logTail !== undefined) {
          const lines = cell.logTail.split('\n').slice(-8);
          process.stdout.write(`error: ${cell.error}\n${lines.map((l) => `    | ${l}`).join('\n')}\n`);
        } else {
          process.stdout.write(`error: ${cell.error}\n`);
        }
        process.stdout.write(`${b}: skipping its other scenarios\n`);
        cells.push(cell);
        continue;
      }
      cells.push(cell);
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

  // main table
  const rows: string[][] = [];
  for (const sc of scenarios) {
    for (const b of brokers) {
      const c = cells.find((x) => x.broker === b && x.scenario === sc.name)!;
      if (c.status === 'skipped') {
        rows.push([sc.name, BROKER_LABEL[b], 'not built', '', '', '', '', '', '', '', '', '']);
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
    process.stdout.write('\n' + table(hdr, rrows, hdr.map((_, i) => i > 0)) + '\n');
    process.stdout.write('(msgs/s: higher is better for StrataMQ; p99 and RSS: lower is better)\n');
  }

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = argv.out ?? path.join(repoRoot, 'bench', 'results', `${stamp}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      { date: new Date().toISOString(), env, options: { ...opts, brokers, scenarios: scenarios.map((s) => s.name), mosquittoInflight: brokerOpts.mosquittoInflight, strataArgs: brokerOpts.strataArgs }, results: cells },
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
