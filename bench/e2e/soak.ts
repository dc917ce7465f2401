// Long kill -9 soak of StrataMQ's durable sessions (issue 4): round after round, a QoS 1
// publisher streams to an offline persistent session, the broker is SIGKILLed at a random
// moment, restarted on the same data directory, and the subscriber must get back every message
// the broker acknowledged (durable.ts runKill9 does one round).
//
//   npm run soak -- [--minutes 60] [--min-kill 0.2] [--max-kill 5] [--payload 64] [--window 100]
//                   [--strata-args "..."] [--out FILE]
//
// Prints one line per round and a summary; writes JSON to bench/results/soak-<timestamp>.json.
// Exit status 1 if any acknowledged message was lost (or a round failed).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAllBrokersSync } from './brokers.js';
import { DURABLE_MIN_PAYLOAD } from './durable-client.js';
import { runKill9, type DurableCell, type DurableCtx } from './durable.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/e2e
const repoRoot = path.resolve(here, '../../..');

const { values: argv } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    'min-kill': { type: 'string', default: '0.2' },
    'max-kill': { type: 'string', default: '5' },
    payload: { type: 'string', default: '64' },
    window: { type: 'string', default: '100' },
    'strata-args': { type: 'string', default: '' },
    out: { type: 'string' },
  },
});

function num(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`--${name} must be a number >= ${min}\n`);
    process.exit(2);
  }
  return n;
}

const minutes = num('minutes', argv.minutes, 0.05);
const minKill = num('min-kill', argv['min-kill'], 0.05);
const maxKill = Math.max(minKill, num('max-kill', argv['max-kill'], 0.05));
const baseCtx: Omit<DurableCtx, 'd'> = {
  brokerOpts: { strataArgs: argv['strata-args'].split(/\s+/).filter((s) => s !== ''), mosquittoInflight: 100, readyTimeoutMs: 20_000 },
  say: (l) => process.stdout.write(`${l}\n`),
};

process.on('exit', () => killAllBrokersSync());
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllBrokersSync();
    process.exit(130);
  });
}

interface Totals {
  rounds: number;
  failed: number;
  sent: number;
  acked: number;
  lost: number;
  duplicates: number;
}

async function main(): Promise<void> {
  const endAt = Date.now() + minutes * 60_000;
  const totals: Totals = { rounds: 0, failed: 0, sent: 0, acked: 0, lost: 0, duplicates: 0 };
  const rounds: DurableCell[] = [];
  process.stdout.write(`soak: kill -9 rounds for ${minutes} min, kill after ${minKill}-${maxKill} s of load\n`);
  while (Date.now() < endAt) {
    const killAfterS = minKill + Math.random() * (maxKill - minKill);
    const ctx: DurableCtx = {
      ...baseCtx,
      d: {
        payload: Math.max(DURABLE_MIN_PAYLOAD, num('payload', argv.payload, 8)),
        window: num('window', argv.window, 1),
        drainMsgs: 0,
        drainTimeoutS: 60,
        drainRuns: 1,
        killAfterS,
        kill9TimeoutS: 120,
        restartMsgs: 0,
        restartPublishers: 1,
        restartWindow: 1,
        restartTimeoutS: 60,
        verifyTimeoutS: 0,
        aedesMaxSessionDelivery: 1,
      },
    };
    const cell = await runKill9('strata', ctx);
    rounds.push(cell);
    totals.rounds++;
    if (cell.status !== 'ok') {
      totals.failed++;
      process.stdout.write(`round ${totals.rounds}: FAILED ${cell.error ?? ''}\n${cell.logTail ?? ''}\n`);
      continue;
    }
    totals.sent += cell.sent ?? 0;
    totals.acked += cell.acked ?? 0;
    totals.lost += cell.lost ?? 0;
    totals.duplicates += cell.duplicates ?? 0;
    process.stdout.write(
      `round ${totals.rounds}: killed after ${(killAfterS * 1000).toFixed(0)} ms, acked ${cell.acked}, lost ${cell.lost}` +
        `${cell.lost ? ` (e.g. ${cell.lostExamples?.join(', ')})` : ''}, dup ${cell.duplicates}, restart ${cell.readyMs?.toFixed(0)} ms\n`,
    );
  }
  process.stdout.write(
    `\nsoak: ${totals.rounds} rounds (${totals.failed} failed), ${totals.acked} acknowledged, LOST ${totals.lost}, duplicates ${totals.duplicates}\n`,
  );
  const out = argv.out ?? path.join(repoRoot, 'bench/results', `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ minutes, minKill, maxKill, totals, rounds }, null, 2)}\n`);
  process.stdout.write(`results: ${out}\n`);
  process.exitCode = totals.lost > 0 || totals.failed > 0 ? 1 : 0;
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
