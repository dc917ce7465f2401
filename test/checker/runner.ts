/**
 * One seed of the checker: fast-check generates an action sequence from the seed
 * (fc.commands), the driver runs it on a fresh broker and the model judges; on a violation,
 * fast-check shrinks the sequence, each candidate again on a fresh broker. A real broker per
 * candidate makes shrinking slow (seconds each) and not fully reproducible (timing), so it is
 * capped by `shrinkRuns` and `shrinkMs`: the trace reported is the smallest that still failed
 * within the cap.
 */
import fc from 'fast-check';
import { type Action, actionArbitraries, formatAction } from './actions.js';
import { Run, type RunConfig, type RunCounts, type RunResult } from './driver.js';
import type { ModelStats, Violation } from './model.js';

/** Most actions per run (fc.commands' maxCommands): a seed's trace depends on it, so the CLI and tests share it. */
export const DEFAULT_ACTIONS = 40;

export interface CheckOptions extends RunConfig {
  /** Most actions per run. */
  actions: number;
  /** Most broker runs spent shrinking one failure (0: no shrinking). */
  shrinkRuns: number;
  shrinkMs: number;
  say: (line: string) => void;
}

export interface SeedReport {
  seed: number;
  /** The run the seed generated (null if the checker itself failed). */
  original: RunResult | null;
  /** The smallest failing run found while shrinking (the original if none smaller failed). */
  minimal: RunResult | null;
  shrinkRuns: number;
  shrinkCapped: boolean;
  /** fast-check's replay path of the minimal counterexample (with `seed`, for fc.check). */
  path: string | null;
  error: string | null;
}

interface Holder {
  run: Run;
}

class ActionCommand implements fc.AsyncCommand<Holder, Holder> {
  constructor(readonly x: Action) {}
  check(m: Readonly<Holder>): boolean {
    return m.run.applicable(this.x);
  }
  async run(_m: Holder, r: Holder): Promise<void> {
    await r.run.exec(this.x);
  }
  toString(): string {
    return formatAction(this.x);
  }
}

export function actionCommands(clients: number, maxCommands: number): fc.Arbitrary<Iterable<fc.AsyncCommand<Holder, Holder>>> {
  return fc.commands(
    actionArbitraries(clients).map((arb) => arb.map((x) => new ActionCommand(x))),
    { maxCommands, size: 'max' },
  );
}

/** Run `actions` once on a fresh broker (a replay of a saved trace). */
export async function runActions(actions: Action[], cfg: RunConfig): Promise<RunResult> {
  const run = await Run.start(cfg);
  try {
    for (const x of actions) if (run.applicable(x)) await run.exec(x);
  } catch (e) {
    await run.abandon();
    throw e;
  }
  return run.finish();
}

export async function checkSeed(seed: number, opts: CheckOptions): Promise<SeedReport> {
  const report: SeedReport = { seed, original: null, minimal: null, shrinkRuns: 0, shrinkCapped: false, path: null, error: null };
  let shrinkStart = 0;
  const prop = fc.asyncProperty(actionCommands(opts.clients, opts.actions), async (cmds) => {
    // The checker itself failed on an earlier candidate: no shrinking of that (a smaller candidate
    // that then passed would stand as this seed's run, an "ok" for a run that never happened).
    if (report.error !== null) return true;
    if (report.original !== null) {
      if (report.shrinkRuns >= opts.shrinkRuns || Date.now() - shrinkStart > opts.shrinkMs) {
        report.shrinkCapped = true;
        return true; // budget spent: every further candidate "passes", so shrinking stops here
      }
      report.shrinkRuns++;
    }
    let run: Run;
    try {
      run = await Run.start(opts);
    } catch (e) {
      // The broker or a registry did not come up: reported with its reason, never as a bare error.
      report.error ??= `starting the run: ${(e as Error).stack ?? String(e)}`;
      throw e;
    }
    let result: RunResult;
    try {
      await fc.asyncModelRun(() => ({ model: { run }, real: { run } }), cmds);
      result = await run.finish();
    } catch (e) {
      await run.abandon();
      report.error ??= (e as Error).stack ?? String(e);
      throw e;
    }
    if (report.original === null) {
      report.original = result;
      if (result.violations.length > 0) {
        shrinkStart = Date.now();
        report.minimal = result;
        if (opts.shrinkRuns > 0) opts.say(`  seed ${seed}: ${result.violations.length} violation(s) in ${result.actions.length} actions; shrinking (at most ${opts.shrinkRuns} runs / ${Math.round(opts.shrinkMs / 1000)} s)`);
      }
    } else if (result.violations.length > 0) {
      report.minimal = result;
      opts.say(`    shrink run ${report.shrinkRuns}: still failing with ${result.actions.length} actions`);
    }
    return result.violations.length === 0;
  });
  const details = await fc.check(prop, { seed, numRuns: 1, endOnFailure: opts.shrinkRuns === 0 });
  if (details.failed) report.path = details.counterexamplePath;
  return report;
}

/** Totals over runs. */
export interface Totals {
  runs: number;
  actions: number;
  sigterm: number;
  kill9: number;
  connects: number;
  publishes: number;
  acknowledged: number;
  obligations: number;
  delivered: number;
  released: number;
  lost: number;
  owedOffline: number;
  deliveredAfterRestart: number;
  retainedChecks: number;
  deliveries: number;
  quiets: number;
  drainTimeouts: number;
  violations: number;
  failedRuns: number;
  shrinkRuns: number;
  errors: number;
}

export function emptyTotals(): Totals {
  return { runs: 0, actions: 0, sigterm: 0, kill9: 0, connects: 0, publishes: 0, acknowledged: 0, obligations: 0, delivered: 0, released: 0, lost: 0, owedOffline: 0, deliveredAfterRestart: 0, retainedChecks: 0, deliveries: 0, quiets: 0, drainTimeouts: 0, violations: 0, failedRuns: 0, shrinkRuns: 0, errors: 0 };
}

export function addRun(t: Totals, r: { counts: RunCounts; stats: ModelStats; violations: Violation[] }): void {
  t.runs++;
  t.actions += r.counts.actions;
  t.sigterm += r.counts.sigterm;
  t.kill9 += r.counts.kill9;
  t.connects += r.counts.connects;
  t.publishes += r.counts.publishes;
  t.drainTimeouts += r.counts.drainTimeouts;
  t.acknowledged += r.stats.acknowledged;
  t.obligations += r.stats.obligations;
  t.delivered += r.stats.delivered;
  t.released += r.stats.released;
  t.lost += r.stats.lost;
  t.owedOffline += r.stats.owedOffline;
  t.deliveredAfterRestart += r.stats.deliveredAfterRestart;
  t.retainedChecks += r.stats.retainedChecks;
  t.deliveries += r.stats.deliveries;
  t.quiets += r.stats.quiets;
  t.violations += r.violations.length;
  if (r.violations.length > 0) t.failedRuns++;
}

export function runLine(seed: number, r: RunResult): string {
  const s = r.stats;
  const c = r.counts;
  const verdict = r.violations.length === 0 ? 'ok' : `${r.violations.length} VIOLATION(S)`;
  return `seed ${seed}: ${c.actions} actions, ${c.sigterm} SIGTERM + ${c.kill9} kill -9, ${s.acknowledged} acknowledged, ${s.obligations} owed (${s.owedOffline} offline; ${s.delivered} delivered, ${s.deliveredAfterRestart} of them after a restart; ${s.released} released, ${s.lost} lost), ${s.retainedChecks} retained checks, ${s.deliveries} deliveries, ${(r.ms / 1000).toFixed(1)} s — ${verdict}`;
}
