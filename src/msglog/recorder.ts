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
import type { MsglogConfig } from './config.js';

const ERROR_LOG_MS = 10_000;

export class LogRecorder implements LogTap {
  readonly sync: boolean;
  private readonly trie = new TopicTrie();
  private readonly ignoreErrors: boolean;
  /** The last append of a logged message failed (and none succeeded since). */
  private failing = false;
  private lastErrorLog = 0;

  constructor(
    cfg: MsglogConfig,
    private readonly counters: MsglogCounters,
    private readonly log: Logger,
  ) {
    this.sync = cfg.sync;
    this.ignoreErrors = cfg.ignoreErrors;
    cfg.filters.forEach((f, i) => this.trie.subscribe(f, i));
  }

  selects(topic: string): boolean {
    return this.trie.match(topic).length > 0;
  }

  track(append: Promise<unknown>, waited: boolean): Promise<void> | null {
    append.then(
      () => {
        this.counters.logged++;
        this.failing = false;
      },
      (e: unknown) => {
        this.counters.failed++;
        this.failing = true;
        if (waited) this.counters.refused++;
        const now = Date.now();
        if (now - this.lastErrorLog >= ERROR_LOG_MS) {
          this.lastErrorLog = now;
          this.log.error({ err: (e as Error).message, failed: this.counters.failed }, 'message log: append failed');
        }
      },
    );
    if (waited || !this.failing || this.ignoreErrors) return null;
    this.counters.refused++;
    return Promise.reject(new Error('message log failing (msglog.ignore_errors = false): message not acknowledged'));
  }
}
