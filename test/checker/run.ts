// The durability checker's command line (issue 12): model-based random runs against a real
// `stratamq start` process with SIGTERM and kill -9 in between, judged by test/checker/model.ts.
//
//   npm run check:durability -- --seed N --minutes M       successive seeds N, N+1, … until M minutes are up
//   npm run check:durability -- --seed N --runs K          exactly K seeds from N (reproduction)
//   npm run check:durability -- --replay FILE              run a saved trace once, no shrinking
//
// Options: --actions A (most actions per run, 40), --clients C (3–6, 4), --shrink-runs S (broker
// runs spent shrinking one failure, 20), --shrink-minutes X (4), --shrink-failures F (failing
// seeds that get shrunk, 3; later ones are reported as generated), --avoid-known (steer clear of
// the broker's known bugs 1 and 2, to look for others), --quiet-ms Q (400), --out DIR (failure
// files), --keep-data, --broker-args "...", --verbose (print every run's trace), --registry
// redis|pgsql|mysql (the broker on that registry, persistence.registry: a server of its own started
// here as the tests start theirs, emptied before every broker run; the broker's --config is then
// the checker's), --slow-registry MS (with --registry: the registry's answers reach the broker
// MS ms late, through a proxy — every window where the broker waits on the registry is wider for
// the kill -9s to land in), --transport tcp|ws|tls|wss|mixed (how the clients connect; mixed: connection
// after connection over each in turn; TLS and WSS with a self-signed certificate made by openssl),
// --msglog async|sync (the message log on every topic, `msglog.topics = #`, in that mode).
//
// Prints one line per seed, every violation with the shrunk trace, and totals. Writes each
// failure (trace, violations, full event history) as JSON. Exit status 1 on any violation,
// 2 if the checker itself failed.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Action, formatAction } from './actions.js';
import { DEFAULT_RUN_CONFIG, type RunResult } from './driver.js';
import { addRun, type CheckOptions, checkSeed, DEFAULT_ACTIONS, emptyTotals, runActions, runLine, type Totals } from './runner.js';
import { type CheckerRegistry, startRegistry } from './registry.js';
import { TRANSPORTS } from './wire.js';

const { values: argv } = parseArgs({
  options: {
    seed: { type: 'string' },
    minutes: { type: 'string' },
    runs: { type: 'string' },
    actions: { type: 'string', default: String(DEFAULT_ACTIONS) },
    clients: { type: 'string', default: '4' },
    'shrink-runs': { type: 'string', default: '20' },
    'shrink-minutes': { type: 'string', default: '4' },
    'shrink-failures': { type: 'string', default: '3' },
    'avoid-known': { type: 'boolean', default: false },
    'quiet-ms': { type: 'string', default: String(DEFAULT_RUN_CONFIG.quietMs) },
    replay: { type: 'string' },
    out: { type: 'string', default: join(tmpdir(), 'stratamq-checker') },
    'keep-data': { type: 'boolean', default: false },
    'broker-args': { type: 'string', default: '' },
    verbose: { type: 'boolean', default: false },
    registry: { type: 'string' },
    'slow-registry': { type: 'string', default: '0' },
    transport: { type: 'string', default: 'tcp' },
    msglog: { type: 'string' },
  },
});

function num(name: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) {
    process.stderr.write(`--${name} must be a number in ${min}..${max}\n`);
    process.exit(2);
  }
  return n;
}

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

const TRANSPORT_CHOICES = [...TRANSPORTS, 'mixed'] as const;
const transport = TRANSPORT_CHOICES.find((t) => t === argv.transport);
if (!transport) {
  process.stderr.write(`--transport must be one of ${TRANSPORT_CHOICES.join(', ')}\n`);
  process.exit(2);
}

if (argv.msglog !== undefined && argv.msglog !== 'async' && argv.msglog !== 'sync') {
  process.stderr.write('--msglog must be async or sync\n');
  process.exit(2);
}
const opts: CheckOptions = {
  ...(argv.msglog !== undefined ? { msglog: argv.msglog as 'async' | 'sync' } : {}),
  ...DEFAULT_RUN_CONFIG,
  transport,
  clients: num('clients', argv.clients, 3, 6),
  avoidKnown: argv['avoid-known'],
  quietMs: num('quiet-ms', argv['quiet-ms'], 50),
  brokerArgs: argv['broker-args'].split(/\s+/).filter((s) => s !== ''),
  keepData: argv['keep-data'],
  actions: num('actions', argv.actions, 1, 500),
  shrinkRuns: num('shrink-runs', argv['shrink-runs'], 0),
  shrinkMs: num('shrink-minutes', argv['shrink-minutes'], 0) * 60_000,
  say,
};
const shrinkFailures = num('shrink-failures', argv['shrink-failures'], 0);
const outDir = argv.out;

function printFailure(title: string, r: RunResult): void {
  say(`  ${title}: ${r.violations.length} violation(s)`);
  for (const v of r.violations) say(`    ${v.kind}: ${v.text}`);
  say(`  trace (${r.actions.length} actions):`);
  r.actions.forEach((x, i) => say(`    ${String(i + 1).padStart(2)}. ${formatAction(x)}`));
}

function save(name: string, data: unknown): string {
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, name);
  writeFileSync(file, JSON.stringify(data, null, 1));
  return file;
}

async function replay(file: string): Promise<number> {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { actions: Action[] };
  say(`replaying ${saved.actions.length} actions from ${file}`);
  const r = await runActions(saved.actions, opts);
  say(runLine(-1, r));
  if (r.violations.length > 0) {
    printFailure('replay', r);
    say(`  history: ${save(`replay-${Date.now()}.json`, { actions: r.actions, violations: r.violations, history: r.history })}`);
  }
  return r.violations.length > 0 ? 1 : 0;
}

function summary(t: Totals, firstSeed: number, lastSeed: number, ms: number): void {
  say('');
  say(`seeds ${firstSeed}..${lastSeed}: ${t.runs} runs in ${(ms / 60000).toFixed(1)} min, ${t.actions} actions, ${t.sigterm + t.kill9} restarts (${t.sigterm} SIGTERM, ${t.kill9} kill -9), ${t.connects} connections, ${t.publishes} publishes`);
  say(`  ${t.acknowledged} messages acknowledged; ${t.obligations} (message, session) deliveries owed (${t.owedOffline} to offline sessions): ${t.delivered} delivered (${t.deliveredAfterRestart} after a restart), ${t.released} released (legal end / subscription change / uncertainty), ${t.lost} lost`);
  say(`  ${t.retainedChecks} retained-on-subscribe checks; ${t.deliveries} deliveries seen; ${t.quiets} quiet checks (${t.drainTimeouts} drains timed out)`);
  say(`  violations: ${t.violations} in ${t.failedRuns} run(s); ${t.shrinkRuns} extra broker runs spent shrinking${t.errors ? `; ${t.errors} checker error(s)` : ''}`);
}

async function main(): Promise<number> {
  let registry: CheckerRegistry | null = null;
  if (argv.registry !== undefined) {
    if (opts.brokerArgs.includes('--config') || opts.brokerArgs.includes('-c')) {
      process.stderr.write('--registry writes the broker\'s config itself: no --config in --broker-args\n');
      return 2;
    }
    opts.slowRegistryMs = num('slow-registry', argv['slow-registry'], 0, 5000);
    registry = await startRegistry(argv.registry, opts.slowRegistryMs);
    opts.brokerArgs.push('--config', registry.config);
    opts.beforeRun = () => registry!.empty();
    say(`registry: ${argv.registry} (${registry.where}), emptied before each broker run`);
  }
  try {
    return await check();
  } finally {
    await registry?.stop();
  }
}

async function check(): Promise<number> {
  if (argv.replay) return replay(argv.replay);
  const firstSeed = argv.seed !== undefined ? num('seed', argv.seed, 0, 2 ** 31 - 1) : Date.now() % 2 ** 31;
  const runs = argv.runs !== undefined ? num('runs', argv.runs, 1) : argv.minutes === undefined ? 1 : Infinity;
  const deadline = argv.minutes !== undefined ? Date.now() + num('minutes', argv.minutes, 0.01) * 60_000 : Infinity;
  say(`durability checker: seed ${firstSeed}, ${runs === Infinity ? `${argv.minutes} min` : `${runs} run(s)`}, ≤ ${opts.actions} actions per run, ${opts.clients} clients${opts.avoidKnown ? ', avoiding known bugs 1 and 2' : ''}${opts.msglog ? `, message log on every topic (${opts.msglog})` : ''}; failures in ${outDir}`);
  const totals = emptyTotals();
  const t0 = Date.now();
  let seed = firstSeed;
  let shrunk = 0;
  for (let i = 0; i < runs && Date.now() < deadline; i++, seed++) {
    const left = deadline - Date.now();
    const report = await checkSeed(seed, {
      ...opts,
      shrinkRuns: shrunk < shrinkFailures ? opts.shrinkRuns : 0,
      shrinkMs: Math.max(0, Math.min(opts.shrinkMs, left)),
    });
    totals.shrinkRuns += report.shrinkRuns;
    if (report.original === null || report.error !== null) {
      totals.errors++;
      say(`seed ${seed}: CHECKER ERROR ${report.error ?? ''}`);
      continue;
    }
    addRun(totals, report.original);
    say(runLine(seed, report.original));
    if (argv.verbose) report.original.actions.forEach((x, i) => say(`    ${String(i + 1).padStart(2)}. ${formatAction(x)}`));
    if (report.original.violations.length === 0) continue;
    if (report.shrinkRuns > 0) shrunk++;
    const min = report.minimal ?? report.original;
    if (min !== report.original) printFailure(`seed ${seed} as generated`, { ...report.original, actions: report.original.actions });
    const note = report.shrinkRuns === 0 ? 'not shrunk' : `shrunk in ${report.shrinkRuns} broker run(s)${report.shrinkCapped ? ', cap reached' : ''}`;
    printFailure(`seed ${seed}, smallest failing trace (${note})`, min);
    const file = save(`seed-${seed}.json`, { seed, path: report.path, note, actions: min.actions, violations: min.violations, original: report.original.actions, history: min.history });
    say(`  saved: ${file} (replay: npm run check:durability -- --replay ${file}; regenerate: --seed ${seed} --runs 1)`);
  }
  summary(totals, firstSeed, seed - 1, Date.now() - t0);
  if (totals.errors > 0) return 2;
  return totals.violations > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(2);
  },
);
