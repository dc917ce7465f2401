// Linux /proc readers for the broker process tree: RSS (sampled and VmHWM) and
// CPU time. Everything degrades to null off Linux.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* keep 100 */
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function statusKb(pid: number, key: string): number | null {
  const txt = readText(`/proc/${pid}/status`);
  if (txt === null) return null;
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(txt);
  return m?.[1] !== undefined ? Number(m[1]) : null;
}

/** pid and all its live descendants (via /proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    const tasks = readText(`/proc/${p}/task/${p}/children`);
    if (tasks === null) continue;
    for (const c of tasks.trim().split(/\s+/)) if (c !== '') stack.push(Number(c));
  }
  return out;
}

/** Sum of VmRSS over the tree, in kB. */
export function treeRssKb(pid: number): number | null {
  let sum = 0;
  let any = false;
  for (const p of processTree(pid)) {
    const kb = statusKb(p, 'VmRSS');
    if (kb !== null) {
      sum += kb;
      any = true;
    }
  }
  return any ? sum : null;
}

/** Peak resident set of the process itself (VmHWM), in kB. */
export function hwmKb(pid: number): number | null {
  return statusKb(pid, 'VmHWM');
}

/** user+system CPU seconds summed over the live tree. */
export function treeCpuSeconds(pid: number): number | null {
  let sum = 0;
  let any = false;
  for (const p of processTree(pid)) {
    const txt = readText(`/proc/${p}/stat`);
    if (txt === null) continue;
    const fields = txt.slice(txt.lastIndexOf(')') + 2).split(' ');
    // after "pid (comm) ": state=0 ... utime=11 stime=12
    const ut = Number(fields[11]);
    const st = Number(fields[12]);
    if (Number.isFinite(ut) && Number.isFinite(st)) {
      sum += (ut + st) / clkTck;
      any = true;
    }
  }
  return any ? sum : null;
}

/** VmRSS of the process itself, in kB. */
export function rssKb(pid: number): number | null {
  return statusKb(pid, 'VmRSS');
}

/** Sum of treeRssKb over several roots (a broker and e.g. its redis-server). */
export function treesRssKb(pids: number[]): number | null {
  let sum = 0;
  let any = false;
  for (const p of pids) {
    const kb = treeRssKb(p);
    if (kb !== null) {
      sum += kb;
      any = true;
    }
  }
  return any ? sum : null;
}

/** Sum of treeCpuSeconds over several roots; null if the first (the broker) is gone. */
export function treesCpuSeconds(pids: number[]): number | null {
  let sum = 0;
  for (let i = 0; i < pids.length; i++) {
    const s = treeCpuSeconds(pids[i]!);
    if (s === null && i === 0) return null;
    sum += s ?? 0;
  }
  return sum;
}

/**
 * Samples tree RSS every intervalMs and remembers the maximum. `extra`: other processes whose
 * RSS counts with the broker's (Aedes: its redis-server); sampled together, and the final peak
 * is at least the broker's VmHWM plus the extras' RSS at the end (not their VmHWM: peaks at
 * different moments would overstate the sum).
 */
export class RssSampler {
  peakKb = 0;
  private timer: NodeJS.Timeout;
  constructor(
    private readonly pid: number,
    intervalMs = 250,
    private readonly extra: number[] = [],
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }
  sample(): void {
    const kb = this.extra.length === 0 ? treeRssKb(this.pid) : treesRssKb([this.pid, ...this.extra]);
    if (kb !== null && kb > this.peakKb) this.peakKb = kb;
  }
  /** Final peak: max of sampled tree RSS and the main process's VmHWM (+ the extras' RSS now). */
  stop(): number | null {
    clearInterval(this.timer);
    this.sample();
    let hwm = hwmKb(this.pid) ?? 0;
    if (this.extra.length > 0) hwm += treesRssKb(this.extra) ?? 0;
    const peak = Math.max(this.peakKb, hwm);
    return peak > 0 ? peak : null;
  }
}

/** Machine-wide busy CPU seconds (all cores) from /proc/stat: everything but idle and iowait. */
export function systemBusySeconds(): number | null {
  const txt = readText('/proc/stat');
  if (txt === null) return null;
  const line = txt.split('\n', 1)[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 8 || f.some((x) => !Number.isFinite(x))) return null;
  // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / clkTck;
}
