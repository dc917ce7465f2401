/**
 * How the embedded store's group commits go, for /metrics: appends per store call (the batch
 * one event-loop turn gathers) and the time from handing a batch to the store until it is
 * durable (write + fsync under `durable_storage.fsync`), and the same time for metadata
 * commits. Fixed buckets, observed once per batch: nothing per message.
 */
export class Histogram {
  /** Observations per bucket (not cumulative); the last counts those above every bound. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > (this.bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += v;
    this.count++;
  }
}

export interface CommitStats {
  /** Messages per append batch handed to the store. */
  readonly appendBatch: Histogram;
  /** Seconds from an append batch handed to the store until it is durable. */
  readonly appendSeconds: Histogram;
  /** Seconds from a metadata batch handed to the store until it is committed. */
  readonly metaCommitSeconds: Histogram;
}

const SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export function commitStats(): CommitStats {
  return {
    appendBatch: new Histogram([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]),
    appendSeconds: new Histogram(SECONDS),
    metaCommitSeconds: new Histogram(SECONDS),
  };
}
