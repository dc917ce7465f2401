/**
 * The event side of the hook bus: the broker's EventEmitter, with each listener isolated. A
 * listener that throws (or returns a rejected Promise) is counted per event and logged at most
 * once per 10 s per event; neither the other listeners nor the broker's own work — routing, the
 * connection that caused the event — are affected. Events inform; gates decide.
 *
 * Two ways to listen:
 * - `on(event, listener)`: synchronous, on the hot path. An event nobody listens to costs one
 *   `listenerCount` lookup where it would fire; a listened-to one builds its snapshot arguments
 *   (one small frozen object per client or message) and calls each listener in turn, so a slow
 *   listener slows the broker by exactly its own time.
 * - `consume(event, handler, { maxQueued, concurrency })`: asynchronous, off the hot path. The
 *   event's arguments are queued (bounded) and the handler runs on them later, at most
 *   `concurrency` at a time; a full queue drops the event. Each consumer counts what it queued,
 *   handled, failed and dropped (`consumers`), so a slow backend shows instead of stalling
 *   publishers or growing without bound.
 * - `consumeBatches(event, handler, opts)`: the same queue and counters, but the handler is given
 *   every event waiting (up to `concurrency` events running at once) in one call, and answers
 *   per event: for a consumer whose cost per call is larger than per event (a database write).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { QoS } from '../wire/codec.js';
import type { Message } from '../wire/message.js';
import { type BrokerEvents, type ClientInfo, clientSnapshot, type MessageInfo, messageSnapshot } from './index.js';

/**
 * Who to tell of each delivery and acknowledgement: set while someone listens (tapInto keeps
 * them in step), null otherwise — then the delivery hot path only checks for null.
 */
export interface DeliveryTaps {
  delivered: ((clientId: string, msg: Message, qos: QoS) => void) | null;
  acked: ((clientId: string, msg: Message) => void) | null;
}

/** A failing event listener is logged at most once per this many ms per event (with the count since). */
const LISTENER_ERROR_LOG_MS = 10_000;

export interface ConsumerOptions {
  /** Name in `consumers` and the logs (default: the event name, numbered if taken). */
  name?: string;
  /** Events waiting beyond this are dropped (counted). Default 10,000. */
  maxQueued?: number;
  /** Handler calls running at once. Default 1 (events handled in the order they fired). */
  concurrency?: number;
  /**
   * Asked synchronously where the event fires: an event it refuses is neither queued nor
   * counted (e.g. a backend rule's topic filter), so it takes no place in the queue.
   */
  accept?: (...args: unknown[]) => boolean;
}

/** What an async consumer did: every event it was told is queued or dropped; queued ones end handled or failed. */
export interface ConsumerCounters {
  queued: number;
  handled: number;
  failed: number;
  dropped: number;
  /** Waiting now (not counting those running). */
  waiting: number;
}

type Args = unknown[];

/**
 * A batch handler's answer: per event of the batch, in order, the error it failed with or
 * undefined (handled); events past the end of a shorter answer were handled (`[]`: all of them).
 */
export type BatchOutcome = readonly unknown[];

/** What a taken event's place in the queue holds until the queue is compacted. */
const TAKEN: Args = [];

/** An async consumer of one event: a bounded queue and the handler calls draining it. */
export class Consumer {
  readonly counters: ConsumerCounters = { queued: 0, handled: 0, failed: 0, dropped: 0, waiting: 0 };
  private readonly queue: Args[] = [];
  private head = 0;
  private running = 0;
  private closed = false;
  /** A pump is queued (one microtask drains what every push of this turn queued). */
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    /** One event per call, or (batches) every event waiting, within `concurrency` running. */
    private readonly handler: { one: (...args: Args) => unknown } | { batch: (batch: Args[]) => Promise<BatchOutcome> },
    private readonly maxQueued: number,
    private readonly concurrency: number,
    private readonly onError: (err: unknown) => void,
    private readonly detach: () => void,
  ) {}

  /** Called by the bus for each event (synchronously, where it fires). */
  push(args: Args): void {
    if (this.closed) return;
    if (this.queue.length - this.head >= this.maxQueued) {
      this.counters.dropped++;
      return;
    }
    this.queue.push(args);
    this.counters.queued++;
    this.counters.waiting = this.queue.length - this.head;
    if (this.running < this.concurrency && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.pump();
      });
    }
  }

  private pump(): void {
    if ('batch' in this.handler) {
      this.pumpBatch(this.handler.batch);
      return;
    }
    const one = this.handler.one;
    while (this.running < this.concurrency && this.head < this.queue.length) {
      const args = this.take();
      this.running++;
      let done: Promise<unknown>;
      try {
        done = Promise.resolve(one(...args));
      } catch (e) {
        done = Promise.reject(e);
      }
      done.then(
        () => this.settle(1, []),
        (e: unknown) => this.settle(1, [e]),
      );
    }
  }

  /** Every event waiting, up to `concurrency` running, in one handler call. */
  private pumpBatch(handler: (batch: Args[]) => Promise<BatchOutcome>): void {
    const n = Math.min(this.concurrency - this.running, this.queue.length - this.head);
    if (n <= 0) return;
    const batch: Args[] = new Array<Args>(n);
    for (let i = 0; i < n; i++) batch[i] = this.take();
    this.running += n;
    let done: Promise<BatchOutcome>;
    try {
      done = handler(batch);
    } catch (e) {
      done = Promise.reject(e);
    }
    done.then(
      (outcome) => this.settle(n, outcome.filter((e) => e !== undefined)),
      (e: unknown) => this.settle(n, new Array<unknown>(n).fill(e)),
    );
  }

  /** The next event off the queue (the queue's head compacted now and then). */
  private take(): Args {
    const args = this.queue[this.head] as Args;
    this.queue[this.head++] = TAKEN;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.counters.waiting = this.queue.length - this.head;
    return args;
  }

  /** `n` events done, `errors` of them failed (each reported). */
  private settle(n: number, errors: readonly unknown[]): void {
    this.running -= n;
    this.counters.handled += n - errors.length;
    this.counters.failed += errors.length;
    for (const e of errors) this.onError(e);
    this.pump();
    if (this.running === 0 && this.head >= this.queue.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves once everything queued so far has been handled (or failed). */
  idle(): Promise<void> {
    if (this.running === 0 && this.head >= this.queue.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stop taking events; what is queued is still handled. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.detach();
  }
}

/**
 * A publish hold: asked for each message routed (after `message.publish` is told); a Promise it
 * returns is awaited before the publisher's PUBACK / PUBREC, and a rejection is a failed
 * acknowledgement (v5: reason code 0x80; 3.1.1: the connection closes unacknowledged, so the
 * client sends it again). null: nothing to wait for. For backends in back-pressure mode.
 */
export type PublishHold = (client: ClientInfo | null, msg: MessageInfo) => Promise<void> | null;

export class HookBus extends EventEmitter<BrokerEvents> {
  /** Publish holds (see PublishHold); routing checks the length once per message. */
  readonly publishHolds: PublishHold[] = [];
  /** Event listeners that threw (or rejected), per event name. */
  readonly listenerErrors: Record<string, number> = {};
  /** Async consumers (consume), by name: what each queued, handled, failed and dropped. */
  readonly consumers: Record<string, ConsumerCounters> = {};
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

  /**
   * Handle `event` asynchronously, off the hot path, through a bounded queue (see the module
   * comment). The handler's failures are counted and logged like a listener's.
   */
  consume<K extends keyof BrokerEvents>(event: K, handler: (...args: BrokerEvents[K]) => unknown, opts: ConsumerOptions = {}): Consumer {
    return this.consumer(event, { one: handler as (...args: Args) => unknown }, opts);
  }

  /**
   * As `consume`, but the handler takes every event waiting (at most `concurrency` running at
   * once) in one call and answers per event (BatchOutcome); a rejection fails the whole batch.
   */
  consumeBatches<K extends keyof BrokerEvents>(event: K, handler: (batch: BrokerEvents[K][]) => Promise<BatchOutcome>, opts: ConsumerOptions = {}): Consumer {
    return this.consumer(event, { batch: handler as (batch: Args[]) => Promise<BatchOutcome> }, opts);
  }

  private consumer<K extends keyof BrokerEvents>(event: K, handler: ConstructorParameters<typeof Consumer>[1], opts: ConsumerOptions): Consumer {
    let name = opts.name ?? event;
    for (let i = 2; this.consumers[name] !== undefined; i++) name = `${opts.name ?? event}#${i}`;
    const maxQueued = Math.max(1, opts.maxQueued ?? 10_000);
    const concurrency = Math.max(1, opts.concurrency ?? 1);
    const accept = opts.accept;
    const listener = accept ? (...args: BrokerEvents[K]): void => void (accept(...args) && consumer.push(args)) : (...args: BrokerEvents[K]): void => consumer.push(args);
    const consumer: Consumer = new Consumer(
      name,
      handler,
      maxQueued,
      concurrency,
      (e) => this.onListenerError(`${event} (consumer ${name})`, e),
      () => {
        this.off(event, listener as never);
      },
    );
    this.consumers[name] = consumer.counters;
    this.on(event, listener as never);
    return consumer;
  }

  /** What the publish holds want waited for before a message's acknowledgement (null: nothing). */
  hold(from: ClientInfo | null, msg: Message): Promise<void> | null {
    const client = from && clientSnapshot(from);
    const info = messageSnapshot(msg);
    let waits: Promise<void>[] | null = null;
    for (const h of this.publishHolds) {
      const w = h(client, info);
      if (w) (waits ??= []).push(w);
    }
    if (waits === null) return null;
    return waits.length === 1 ? (waits[0] as Promise<void>) : Promise.all(waits).then(() => undefined);
  }

  /**
   * Keep `taps.delivered` / `taps.acked` set exactly while someone listens to
   * `message.delivered` / `message.acked` (listeners and consumers alike), so the delivery hot
   * path pays one null check when nobody does.
   */
  tapInto(taps: DeliveryTaps): void {
    const delivered = (clientId: string, msg: Message, qos: QoS): void => {
      this.emit('message.delivered', clientId, messageSnapshot(msg), qos);
    };
    const acked = (clientId: string, msg: Message): void => {
      this.emit('message.acked', clientId, messageSnapshot(msg));
    };
    const sync = (event: string | symbol, adding: boolean): void => {
      // 'newListener' fires before the listener is added, 'removeListener' after it is gone.
      const on = adding || this.listenerCount(event as keyof BrokerEvents) > 0;
      if (event === 'message.delivered') taps.delivered = on ? delivered : null;
      else if (event === 'message.acked') taps.acked = on ? acked : null;
    };
    sync('message.delivered', false);
    sync('message.acked', false);
    const raw = this as EventEmitter;
    raw.on('newListener', (event: string | symbol) => sync(event, true));
    raw.on('removeListener', (event: string | symbol) => sync(event, false));
  }

  protected onListenerError(event: string, err: unknown): void {
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
