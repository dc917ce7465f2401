import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type { PrettyOptions, PrettyStream } from 'pino-pretty';

export type { Logger };

/**
 * Structured logs (SPEC F5): JSON lines, or readable lines through pino-pretty (time, level,
 * message, then the fields) — `log.format`: `pretty`, `json`, or `auto` (pretty when stdout is a
 * terminal, so a pipe or a log collector always gets JSON).
 */
export function createLogger(level: string, format: string = 'json'): Logger {
  const readable = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (!readable) return pino({ level, base: { name: 'stratamq' } });
  // In-process and synchronous (no transport thread): nothing is lost when the process exits.
  // Loaded only for readable logs (JSON needs none of it).
  const pretty = createRequire(import.meta.url)('pino-pretty') as (o: PrettyOptions) => PrettyStream;
  const stream = pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname,name', singleLine: true, sync: true });
  return pino({ level, base: { name: 'stratamq' } }, stream);
}
