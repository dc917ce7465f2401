/**
 * Recording (SPEC E1): which messages the message log keeps, and what an append's outcome means
 * for their publisher. Routing asks `selects(topic)` once per message (one native trie match over
 * the `msglog.topics` filters; nothing at all while they are empty) and appends a selected message
 * once — the same record persistent sessions read, when they need it too (routing/router.ts).
 *
 * - `sync`: the PUBACK / PUBREC waits for the append, and a failed one refuses the message.
 * - `async`: it does not; a failed append is counted and logged (at most once per 10 s). With
 *   `ignore_errors = false`, while the log is failing (its last append failed), the publisher of a
 *   logged message is refused as in `sync` mode; the message is still delivered. Each message is
 *   still tried, so the first append that succeeds ends the failing state.
 */
import type { MsglogCounters } from '../hooks/metrics.js';
import type { Logger } from '../log.js';
import { TopicTrie } from '../native.js';
import type { LogTap } from '../routing/router.js';
import { TopicMemo } from '../wire/topic.js';
import type { MsglogConfig } from './config.js';

const ERROR_LOG_MS = 10_000;
const SEEN_MAX = 10_000;
const SEEN_MAX_CHARS = 1024 * 1024;

export class LogRecorder implements LogTap {
  readonly sync: boolean;
  private readonly trie = new TopicTrie();
  private readonly ignoreErrors: boolean;
  /** The last append of a logged message failed (and none succeeded since). */
  private failing = false;
  private lastErrorLog = 0;
  /** A filter is `#`: every topic but `$` ones is logged, no match needed. */
  private readonly all: boolean;
  /** Topics matched already (a publisher's topics repeat): emptied when it holds SEEN_MAX names or SEEN_MAX_CHARS. */
  private readonly seen = new TopicMemo<boolean>(SEEN_MAX, SEEN_MAX_CHARS);
  /** The last append tracked and how many messages share it. */
  private last: Promise<unknown> | null = null;
  private lastCount: { n: number } | null = null;

  constructor(
    cfg: MsglogConfig,
    private readonly counters: MsglogCounters,
    private readonly log: Logger,
  ) {
    this.sync = cfg.sync;
    this.ignoreErrors = cfg.ignoreErrors;
    cfg.filters.forEach((f, i) => this.trie.subscribe(f, i));
    this.all = cfg.filters.includes('#');
  }

  selects(topic: string): boolean {
    if (this.all) return topic.charCodeAt(0) !== 0x24; // `#`: every topic but $ ones ([MQTT-4.7.2-1])
    let hit = this.seen.get(topic);
    if (hit === undefined) {
      hit = this.trie.match(topic).length > 0;
      this.seen.set(topic, hit);
    }
    return hit;
  }

  track(append: Promise<unknown>, waited: boolean): Promise<void> | null {
    if (append === this.last && this.lastCount !== null) this.lastCount.n++;
    else {
      // One pair of handlers per append batch (logMessage shares its promise): `c.n` messages.
      const c = { n: 1 };
      this.last = append;
      this.lastCount = c;
      append.then(
        () => {
          this.counters.logged += c.n;
          this.failing = false;
        },
        (e: unknown) => this.failed(e, c.n, waited),
      );
    }
    if (waited || !this.failing || this.ignoreErrors) return null;
    this.counters.refused++;
    return Promise.reject(new Error('message log failing (msglog.ignore_errors = false): message not acknowledged'));
  }

  private failed(e: unknown, n: number, waited: boolean): void {
    this.counters.failed += n;
    this.failing = true;
    if (waited) this.counters.refused += n;
    const now = Date.now();
    if (now - this.lastErrorLog >= ERROR_LOG_MS) {
      this.lastErrorLog = now;
      this.log.error({ err: (e as Error).message, failed: this.counters.failed }, 'message log: append failed');
    }
  }
}
