/**
 * What every backend pool shares: its state for /metrics, the log of its ups and downs (one line
 * per change, not per failed event), and `run` — a command or statement retried while the server
 * is unreachable (backoff from 100 ms doubling up to `auto_reconnect`), so an event waits in its
 * place and is written when the server returns. Errors the server gives for the statement itself
 * (syntax, constraint) are not retried: the event fails and is counted.
 */
import type { BackendPoolCounters } from '../hooks/metrics.js';
import type { Logger } from '../log.js';
import type { PoolConfig } from './config.js';

/** Thrown by `run` once the pool is closed (an event still waiting for the server is given up). */
export class PoolClosed extends Error {
  constructor(id: string) {
    super(`backend pool ${id} closed`);
    this.name = 'PoolClosed';
  }
}

export abstract class Pool {
  readonly state: BackendPoolCounters;
  protected closed = false;
  private readonly sleepers = new Set<() => void>();

  constructor(
    readonly cfg: PoolConfig,
    protected readonly log: Logger,
  ) {
    this.state = { type: cfg.type, pool: cfg.name, up: false, errors: 0, lastError: '' };
  }

  /** Whether an error means the server could not be reached or refused the connection (then retried). */
  abstract connectionError(e: unknown): boolean;

  /** Load the driver and open connections in the background (start never waits for a server). */
  abstract open(): Promise<void>;

  protected abstract end(): Promise<void>;

  async run<T>(fn: () => Promise<T>): Promise<T> {
    for (let delay = 100; ; delay = Math.min(delay * 2, Math.max(this.cfg.reconnectMs, 100))) {
      if (this.closed) throw new PoolClosed(this.cfg.id);
      try {
        const r = await fn();
        this.markUp();
        return r;
      } catch (e) {
        if (this.closed) throw new PoolClosed(this.cfg.id);
        if (!this.connectionError(e)) throw e;
        this.markDown(e);
        if (this.cfg.reconnectMs === 0) throw e;
        await this.sleep(delay);
      }
    }
  }

  markUp(): void {
    if (this.state.up) return;
    this.state.up = true;
    this.log.info({ backend: this.cfg.type, pool: this.cfg.name, server: this.serverText() }, `backend ${this.cfg.type} pool "${this.cfg.name}" connected`);
  }

  markDown(e: unknown): void {
    const msg = errorText(e);
    this.state.errors++;
    const changed = this.state.up || this.state.lastError !== msg;
    this.state.up = false;
    this.state.lastError = msg;
    // One line per change of state or reason, not one per failed attempt.
    if (changed) this.log.error({ backend: this.cfg.type, pool: this.cfg.name, server: this.serverText(), err: msg }, `backend ${this.cfg.type} pool "${this.cfg.name}" unavailable: ${msg} (events wait and are retried${this.cfg.reconnectMs === 0 ? ' — no: auto_reconnect = 0, they fail' : ''})`);
  }

  serverText(): string {
    return this.cfg.servers.map((s) => `${s.host}:${s.port}`).join(',');
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.sleepers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of [...this.sleepers]) wake();
    await this.end().catch(() => undefined);
  }
}

export function errorText(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length > 0) return errorText(e.errors[0]);
  const err = e as { message?: string; code?: string };
  const m = err?.message || err?.code || String(e);
  return m;
}
