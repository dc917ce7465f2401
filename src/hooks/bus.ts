/**
 * The event side of the hook bus: the broker's EventEmitter, with each listener isolated. A
 * listener that throws (or returns a rejected Promise) is counted per event and logged at most
 * once per 10 s per event; neither the other listeners nor the broker's own work — routing, the
 * connection that caused the event — are affected. Events inform; gates decide.
 *
 * Cost on the hot path: an event nobody listens to costs one `listenerCount` lookup where it
 * would fire; a listened-to event builds its arguments and calls each listener synchronously.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { QoS } from '../wire/codec.js';
import type { Message } from '../wire/message.js';
import type { BrokerEvents } from './index.js';

/** A failing event listener is logged at most once per this many ms per event (with the count since). */
const LISTENER_ERROR_LOG_MS = 10_000;

export class HookBus extends EventEmitter<BrokerEvents> {
  /** Event listeners that threw (or rejected), per event name. */
  readonly listenerErrors: Record<string, number> = {};
  /** Where listener failures are logged (set by the broker once its logger exists). */
  protected busLog: Logger | null = null;
  /** Per event: when a listener error was last logged, and how many were not logged since. */
  private readonly listenerErrorLog = new Map<string, { at: number; quiet: number }>();

  override emit<K extends keyof BrokerEvents>(event: K, ...args: BrokerEvents[K]): boolean {
    const listeners = this.rawListeners(event) as ((...a: unknown[]) => unknown)[];
    if (listeners.length === 0) return false;
    for (const listener of listeners) {
      try {
        const r = listener.apply(this, args);
        if (r instanceof Promise) r.catch((e: unknown) => this.onListenerError(event, e));
      } catch (e) {
        this.onListenerError(event, e);
      }
    }
    return true;
  }

  /** True when a delivery or acknowledgement listener is attached (the drain then builds Message objects). */
  observesDeliveries(): boolean {
    return this.listenerCount('message.delivered') > 0 || this.listenerCount('message.acked') > 0;
  }

  delivered(clientId: string, msg: Message, qos: QoS): void {
    if (this.listenerCount('message.delivered') > 0) this.emit('message.delivered', clientId, msg, qos);
  }

  acked(clientId: string, msg: Message): void {
    if (this.listenerCount('message.acked') > 0) this.emit('message.acked', clientId, msg);
  }

  private onListenerError(event: string, err: unknown): void {
    const counts = this.listenerErrors;
    counts[event] = (counts[event] ?? 0) + 1;
    const now = Date.now();
    const last = this.listenerErrorLog.get(event);
    if (last && now - last.at < LISTENER_ERROR_LOG_MS) {
      last.quiet++;
      return;
    }
    this.listenerErrorLog.set(event, { at: now, quiet: 0 });
    this.busLog?.error({ event, err: err instanceof Error ? err.message : String(err), notLogged: last?.quiet ?? 0, total: counts[event] }, 'event listener failed');
  }
}
