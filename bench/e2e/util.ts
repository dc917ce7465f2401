/** Small helpers the bench drivers share (run.ts, durable.ts, memory.ts). */

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
