/**
 * Replay (SPEC E2): re-publish what a query selects — to each message's own topic or under a new
 * prefix — in the log's order (per shard in offset order: each publisher's messages in the order
 * they were published), at most `rate` messages a second (never more, even to catch up after a
 * stall), a batch at a time: the next batch is read
 * only once the previous one is routed and stored where it had to be (the position only moves
 * over messages that were). `position()` says where to resume from (`--from-offset`).
 *
 * In the broker (admin API) a replay publishes through the router, as the application's own
 * messages (`Broker.publishMessage`): delivered to every matching subscription, stored for
 * persistent sessions, logged again if the target topic is logged. What the log holds is read up to
 * its end when the replay starts, so replaying a logged topic onto itself ends.
 */
import { type DurableStore, type StoredMessage, validateTopicName } from '../native.js';
import { EntryCounter, type LogPlan, LogQueryError, openReader, type LogReader } from './query.js';

/** How a replay re-publishes (the broker's router: Broker.republisher). */
export interface Republisher {
  /** Route one message; resolves once it is stored where it had to be (null: nothing to wait for). */
  publish(e: StoredMessage, topic: string): Promise<void> | null;
  /**
   * The message just published found most of its connected subscribers' queues a window past
   * full (mqtt.fair_inflow, session/inflow.ts): the replay goes on in the next event-loop
   * iteration, after their acknowledgements are read — held as a client publishing faster than
   * its subscribers take is, instead of filling their queues (in memory, to overflowing).
   */
  held(): boolean;
}

/**
 * How long a held replay waits before its next message, ms. Not just the next iteration (as a
 * held client): a client's next PUBLISH must come through TCP, a replay's is at hand, and one a
 * turn still outran a subscriber acknowledging a window per round trip (its queue overflowed).
 */
const HELD_WAIT_MS = 1;

export interface ReplayOptions {
  /** Published under this prefix (`<prefix><topic>`), else to the message's own topic. */
  toPrefix?: string | undefined;
  /** Messages per second at most; 0 = as fast as they are stored. */
  rate?: number | undefined;
}

export type ReplayState = 'running' | 'done' | 'stopped' | 'failed';

export interface ReplayProgress {
  id: string;
  state: ReplayState;
  topic: string;
  /** Messages re-published and stored. */
  sent: number;
  /** What the query selects (from the position the replay started at); null while it is being counted. */
  total: number | null;
  /** Messages a second over the last seconds. */
  rate: number;
  /** Seconds left at that rate (null while unknown). */
  etaSeconds: number | null;
  /** Where to resume (`--from-offset`): every message before it was re-published. */
  position: string;
  /** Where the selection ends (`--to-offset` of a resumed replay). */
  until: string;
  startedAt: string;
  error: string | null;
}

/** Messages per batch at full speed. */
const BATCH = 1000;

export class Replay {
  private readonly reader: LogReader;
  private state: ReplayState = 'running';
  private sent = 0;
  private error: string | null = null;
  private stopping = false;
  private readonly started = Date.now();
  /** (time, sent) samples for the rate, the last ~5 s. */
  private readonly samples: [number, number][] = [];
  /** Counts the selection a slice at a time (a large one would hold the event loop for seconds). */
  private readonly counter: EntryCounter;
  readonly done: Promise<void>;

  constructor(
    readonly id: string,
    store: DurableStore,
    private readonly plan: LogPlan,
    private readonly republisher: Republisher,
    private readonly opts: ReplayOptions = {},
  ) {
    this.counter = new EntryCounter(store, plan);
    if (!this.counter.step(5)) {
      const more = (): void => {
        if (!this.counter.step(5)) setImmediate(more);
      };
      setImmediate(more);
    }
    this.reader = openReader(store, plan);
    this.done = this.run();
  }

  /** Stop after the batch in progress (resolves once it has). */
  async stop(): Promise<ReplayProgress> {
    this.stopping = true;
    await this.done;
    return this.progress();
  }

  private async run(): Promise<void> {
    const rate = this.opts.rate ?? 0;
    const prefix = this.opts.toPrefix ?? '';
    // Batches of about 20 ms' worth at a limited rate, so the pace is even.
    const batch = rate > 0 ? Math.max(1, Math.min(BATCH, Math.ceil(rate / 50))) : BATCH;
    let due = Date.now();
    try {
      while (!this.stopping) {
        const got = this.reader.take(batch);
        if (got.length === 0) break;
        const waits: Promise<void>[] = [];
        for (const e of got) {
          const topic = prefix + e.topic;
          // Only the length can make a valid prefix and a logged topic an invalid name.
          if (prefix !== '' && validateTopicName(topic) !== null) throw new Error(`${JSON.stringify(topic)} is not a valid topic name: ${validateTopicName(topic)}`);
          const p = this.republisher.publish(e, topic);
          if (p) waits.push(p);
          if (this.republisher.held()) await new Promise((r) => setTimeout(r, HELD_WAIT_MS));
        }
        if (waits.length > 0) await Promise.all(waits);
        this.sent += got.length;
        this.sample();
        if (rate > 0) {
          // The next batch is due one batch's time after this one was (or now, when late): a
          // stall is not made up for by a burst above the rate.
          due = Math.max(due, Date.now()) + (got.length / rate) * 1000;
          const wait = due - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        } else {
          await new Promise((r) => setImmediate(r)); // the event loop serves clients between batches
        }
      }
      this.state = this.stopping && !this.reader.finished ? 'stopped' : 'done';
    } catch (e) {
      this.state = 'failed';
      this.error = (e as Error).message;
    }
  }

  private sample(): void {
    const now = Date.now();
    this.samples.push([now, this.sent]);
    while (this.samples.length > 2 && now - (this.samples[0] as [number, number])[0] > 5000) this.samples.shift();
  }

  progress(): ReplayProgress {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const rate = first && last && last[0] > first[0] ? ((last[1] - first[1]) * 1000) / (last[0] - first[0]) : 0;
    const total = this.counter.done ? this.counter.count : null;
    const left = total === null ? null : Math.max(0, total - this.sent);
    return {
      id: this.id,
      state: this.state,
      topic: this.plan.filter,
      sent: this.sent,
      total,
      rate: Math.round(rate),
      etaSeconds: this.state !== 'running' ? 0 : rate > 0 && left !== null ? Math.ceil(left / rate) : null,
      position: this.reader.position(),
      until: this.plan.until.map((o, s) => `${s}:${o}`).join(','),
      startedAt: new Date(this.started).toISOString(),
      error: this.error,
    };
  }
}

/** The replays a broker runs (admin API), by id; finished ones are kept until the next 100 start. */
/**
 * A replay's `toPrefix` must make topic names a client could publish to: no wildcard, no U+0000,
 * not a `$` topic (the broker's own, `$SYS/…`). Throws LogQueryError (the admin API's 400).
 */
export function checkPrefix(prefix: string | undefined): void {
  if (prefix === undefined || prefix === '') return;
  if (prefix.startsWith('$')) throw new LogQueryError(`invalid prefix ${JSON.stringify(prefix)}: topics starting with $ are the broker's`);
  const why = validateTopicName(`${prefix}x`);
  if (why !== null) throw new LogQueryError(`invalid prefix ${JSON.stringify(prefix)}: ${why}`);
}

export class Replays {
  private readonly byId = new Map<string, Replay>();
  private seq = 0;

  start(store: DurableStore, plan: LogPlan, republisher: Republisher, opts: ReplayOptions): Replay {
    const id = `r${++this.seq}`;
    const r = new Replay(id, store, plan, republisher, opts);
    this.byId.set(id, r);
    if (this.byId.size > 100) {
      for (const [k, old] of this.byId) {
        if (old.progress().state !== 'running') {
          this.byId.delete(k);
          break;
        }
      }
    }
    return r;
  }

  get(id: string): Replay | undefined {
    return this.byId.get(id);
  }

  list(): Replay[] {
    return [...this.byId.values()];
  }

  /** Stop them all (the broker closes). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.byId.values()].map((r) => r.stop()));
  }
}
