// The message log's cost (issue 18 targets), measured so that the machine's own ups and downs
// fall on both sides of the ratio:
//
//   npm run bench -- --log-cost [--cycles 12] [--slice 1] [--window 100] [--payload 64]
//                               [--log-cost-vs OTHER/dist/src/cli/main.js]
//
// Three StrataMQ brokers run at once on the 'pairs' load (10 QoS 1 publisher/subscriber pairs,
// window --window): one without the message log, one logging `#` in async mode, one in sync
// mode. They take turns: in each cycle every broker gets the load alone for a short warm-up
// (0.3 s) and a measured slice (--slice seconds), then its deliveries drain, then the next; the
// order rotates from cycle to cycle. The brokers not loaded sit idle, so each ratio compares
// slices taken seconds apart, where sequential runs (`--rounds`) compare runs a minute apart —
// on a shared VM whose speed moves by ±30% from one run to the next (steal), the runs' ratios
// spread from 0.55 to 1.4 and their median is a coin toss.
//
// Reported: each broker's deliveries per second over all its slices, the per-cycle ratios to the
// broker without the log and their median (the verdict), and each broker's CPU per message.
// --log-cost-vs adds the two logging brokers of another build (an experiment's copy of dist/),
// taking turns with the rest: a change to the log's cost, A/B within the same cycles.
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { makeTempDir, removeTempDir, startBroker, type BrokerOptions, type RunningBroker } from './brokers.js';
import { nowNs, type ClientSpec, type FinishMsg, type GoMsg, type WorkerInit } from './load.js';
import { treesCpuSeconds } from './proc.js';
import { sleep, timeout } from './util.js';
import { at, counterTotals, dealClients, liveWorkers, startWorker, type WorkerSlot } from './workers.js';

/** One broker of the comparison: run.ts's scenario of that name (its clients, its configuration). */
export interface LogCostSubject {
  name: string;
  title: string;
  /** Configuration lines (null: none, the defaults). */
  conf: readonly string[] | null;
  clients: (tag: string) => ClientSpec[];
}

export interface LogCostOpts {
  /** pairs, lpairs, lspairs: the first is what the others are compared with. */
  subjects: LogCostSubject[];
  cycles: number;
  sliceS: number;
  warmS: number;
  window: number;
  payload: number;
  workers: number;
  brokerOpts: BrokerOptions;
  /** Another build's CLI: its logging brokers join the turns (rows `lpairs@vs`, `lspairs@vs`). */
  vsCli?: string;
}

/** One broker of the comparison and what its slices measured. */
export interface LogCostRow {
  /** pairs, lpairs, lspairs; `@vs`: on the other build. */
  name: string;
  title: string;
  /** Deliveries per second, per cycle. */
  rates: number[];
  /** Broker CPU seconds and deliveries over all slices. */
  cpuS: number;
  delivered: number;
  errors: string[];
}

interface Subject {
  row: LogCostRow;
  broker: RunningBroker;
  dir: string | null;
  slots: WorkerSlot[];
  shared: Int32Array;
}

async function start(c: LogCostSubject & { cli?: string }, o: LogCostOpts): Promise<Subject> {
  let dir: string | null = null;
  let broker: RunningBroker;
  if (c.conf === null) broker = await startBroker('strata', o.brokerOpts);
  else {
    dir = makeTempDir(`strata-${c.name}`);
    const conf = path.join(dir, 'msglog.conf');
    writeFileSync(conf, [...c.conf, ''].join('\n'));
    broker = await startBroker('strata', o.brokerOpts, { dir, strataConfig: conf, strataCli: c.cli });
  }
  const tag = `i${process.pid}-${c.name.replace('@', '-')}`;
  const buckets = dealClients(c.clients(tag), o.workers);
  const counters = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * 2 * buckets.length);
  const row: LogCostRow = { name: c.name, title: c.title, rates: [], cpuS: 0, delivered: 0, errors: [] };
  const slots = buckets.map((clients, index) => {
    const init: WorkerInit = { host: '127.0.0.1', port: broker.port, clients, payloadSize: o.payload, batch: 32, maxPerPublisher: 2 ** 31 - 1, fanout: 1, qos0Inflight: 0, ratePerPublisher: 0, counters, index };
    return startWorker(init, row.errors);
  });
  await timeout(Promise.all(slots.map((s) => s.ready)), 20_000, `${c.name}: connect/subscribe`);
  return { row, broker, dir, slots, shared: new Int32Array(counters) };
}

/** One slice of `s`: the load for warmS + sliceS, what was delivered in the slice counted, then drained. */
async function slice(s: Subject, o: LogCostOpts): Promise<void> {
  const startNs = nowNs() + 20e6;
  const warmEndNs = startNs + o.warmS * 1e9;
  const endNs = warmEndNs + o.sliceS * 1e9;
  const go: GoMsg = { type: 'go', startNs, warmEndNs, endNs };
  for (const w of s.slots) w.worker.postMessage(go);
  let r0 = 0;
  let c0: number | null = null;
  at(warmEndNs, () => {
    r0 = counterTotals(s.shared).recv;
    c0 = treesCpuSeconds([s.broker.pid]);
  });
  await new Promise<void>((r) => at(endNs, r));
  const r1 = counterTotals(s.shared).recv;
  const c1 = treesCpuSeconds([s.broker.pid]);
  s.row.rates.push((r1 - r0) / o.sliceS);
  s.row.delivered += r1 - r0;
  if (c0 !== null && c1 !== null) s.row.cpuS += c1 - c0;
  if (!s.broker.alive()) throw new Error(`${s.row.name}: broker process died`);
  // Everything sent delivered before the next broker's turn (2 s at most).
  const until = nowNs() + 2e9;
  while (nowNs() < until) {
    const t = counterTotals(s.shared);
    if (t.recv >= t.sent) break;
    await sleep(10);
  }
}

export async function runLogCost(o: LogCostOpts, say: (line: string) => void): Promise<LogCostRow[]> {
  const subjects: Subject[] = [];
  try {
    const configs: (LogCostSubject & { cli?: string })[] = [...o.subjects];
    if (o.vsCli !== undefined) for (const c of o.subjects) if (c.conf !== null) configs.push({ ...c, name: `${c.name}@vs`, title: `${c.title}, ${o.vsCli}`, cli: o.vsCli });
    for (const c of configs) subjects.push(await start(c, o));
    // One unmeasured slice each first: the brokers' code is compiled, the log's files exist.
    for (const s of subjects) await slice(s, o);
    for (const s of subjects) {
      s.row.rates.length = 0;
      s.row.delivered = 0;
      s.row.cpuS = 0;
    }
    for (let cycle = 0; cycle < o.cycles; cycle++) {
      for (let k = 0; k < subjects.length; k++) await slice(subjects[(cycle + k) % subjects.length]!, o);
      const last = subjects.map((s) => `${s.row.name} ${((s.row.rates[cycle] ?? 0) / 1000).toFixed(0)}k`).join(', ');
      say(`  cycle ${cycle + 1} of ${o.cycles}: ${last}`);
    }
    return subjects.map((s) => s.row);
  } finally {
    for (const s of subjects) {
      for (const w of s.slots) w.worker.postMessage({ type: 'finish' } satisfies FinishMsg);
      await Promise.race([Promise.all(s.slots.map((w) => w.result)), sleep(3000)]).catch(() => undefined);
      for (const w of s.slots) {
        void w.worker.terminate();
        liveWorkers.delete(w.worker);
      }
      await s.broker.stop().catch(() => undefined);
      if (s.dir !== null) removeTempDir(s.dir);
    }
  }
}

/** Per-cycle ratios of `row` to `base` (slices of one cycle, seconds apart). */
export function cycleRatios(row: LogCostRow, base: LogCostRow): number[] {
  return row.rates.map((r, i) => r / Math.max(1, base.rates[i] ?? 0));
}
