/** Small helpers the bench drivers share (run.ts, durable.ts, memory.ts, interleave.ts). */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `p`, or a rejection naming `what` after `ms`. */
export function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** Median of `xs` (not empty; the mean of the middle two of an even count). */
export function median(xs: readonly number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2;
}
