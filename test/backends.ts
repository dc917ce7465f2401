/** Helpers of the backend tests (test/integration/backend-*.test.ts): captured logs, polling, rules. */
import { pino, type Logger } from 'pino';
import { sleep } from './helpers.js';

/** A logger whose JSON lines are kept (and searchable) instead of printed. */
export function capturedLogger(): { logger: Logger; lines: string[]; has(re: RegExp): boolean } {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
  return { logger, lines, has: (re) => lines.some((l) => re.test(l)) };
}

/** Poll `fn` until it returns a truthy value (that value), or fail after `timeoutMs` with `what`. */
export async function until<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(25);
  }
}

/** A rule's JSON, as a config value. */
export function rule(r: { topic?: string; function?: string; sql?: string[]; commands?: string[]; pool?: string }): string {
  const action = r.function ? { function: r.function } : r.sql ? { sql: r.sql } : { commands: r.commands };
  return JSON.stringify({ ...(r.topic ? { topic: r.topic } : {}), action, pool: r.pool ?? 'pool1' });
}

/** The payload of the injection tests: stored verbatim when placeholders are bound, not spliced. */
export const INJECTION = "'); DROP TABLE mqtt_msg;--";
