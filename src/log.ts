import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs (SPEC F5). */
export function createLogger(level: string): Logger {
  return pino({ level, base: { name: 'stratamq' } });
}
