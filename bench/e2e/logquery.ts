// The message log's query (issue 18 targets): a time-range query over N logged messages (default
// 10M) returns its first result in < 100 ms and streams >= 1M msgs/s.
//
//   npm run bench -- --log-query [--log-messages 10000000] [--payload 64]
//
// The log is filled through the store's own append path (DurableStore.appendPacked, batches of
// 10 000, fsync none — filling is not what is measured), from 8 publishers (so every shard of the
// 4 holds some), over topics sensors/<0..999>/t, with a time mark at the middle. Then, on the open
// store as a broker holds it: the query `sensors/#` from the mark to the end — planQuery (seek by
// time per shard) + the first entry; then the rest read through LogReader (entries decoded), and the
// same range again as JSON lines (what the admin API and the CLI write). First-result times are the
// median of 5 runs; the page cache is warm (the log was just written), as for a recent range.
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DurableStore, packMessages, type PackedMessage } from '../../src/native.js';
import { BATCHES_PER_TURN, jsonLines, openLineReader, openReader, planQuery, turn } from '../../src/msglog/query.js';

export interface LogQueryResult {
  messages: number;
  fillSeconds: number;
  inRange: number;
  firstResultMs: number;
  readerMsgsPerSec: number;
  jsonMsgsPerSec: number;
  diskMB: number;
  /** The process's RSS after the JSON-lines stream, MB (it must not grow with the range). */
  rssAfterMB: number;
  rssBeforeMB: number;
}

export async function runLogQuery(messages: number, payloadBytes: number, log: (s: string) => void): Promise<LogQueryResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strata-logq-bench-'));
  try {
    const store = await DurableStore.open(dir, { nShards: 4, fsync: 'none', retentionMs: 0 });
    const payload = Buffer.alloc(payloadBytes, 0x61);
    const pubs = Array.from({ length: 8 }, (_v, i) => `pub-${i}`);
    const t0 = Date.now();
    let mark = 0;
    const BATCH = 10_000;
    for (let done = 0; done < messages; done += BATCH) {
      if (mark === 0 && done >= messages / 2) {
        await new Promise((r) => setTimeout(r, 5));
        mark = Date.now();
        await new Promise((r) => setTimeout(r, 5));
      }
      const msgs: PackedMessage[] = [];
      for (let i = done; i < Math.min(messages, done + BATCH); i++) msgs.push({ publisher: pubs[i % 8] as string, topic: `sensors/${i % 1000}/t`, qos: 1, retain: false, properties: null, payload });
      await store.appendPacked(packMessages(msgs), msgs.length);
      if (done % 1_000_000 === 0 && done > 0) log(`  filled ${done / 1e6}M`);
    }
    await store.flush();
    const fillSeconds = (Date.now() - t0) / 1000;
    const firsts: number[] = [];
    for (let k = 0; k < 5; k++) {
      const a = performance.now();
      const reader = openReader(store, planQuery(store, { topic: 'sensors/#', from: String(mark) }));
      const first = reader.take(1);
      firsts.push(performance.now() - a);
      if (first.length !== 1) throw new Error('no first result');
    }
    firsts.sort((x, y) => x - y);
    let a = performance.now();
    const reader = openReader(store, planQuery(store, { topic: 'sensors/#', from: String(mark) }));
    let inRange = 0;
    for (let got = reader.take(4096), k = 1; got.length > 0; got = reader.take(4096), k++) {
      inRange += got.length;
      if (k % BATCHES_PER_TURN === 0) await turn(); // as the broker and the CLI do: Node frees the scans' buffers then
    }
    const readerSecs = (performance.now() - a) / 1000;
    const rssBeforeMB = process.memoryUsage().rss / 1048576;
    a = performance.now();
    let lines = 0;
    for await (const chunk of jsonLines(openLineReader(store, planQuery(store, { topic: 'sensors/#', from: String(mark) }), ''))) {
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
    }
    const jsonSecs = (performance.now() - a) / 1000;
    const rssAfterMB = process.memoryUsage().rss / 1048576;
    if (lines !== inRange) throw new Error(`JSON lines ${lines} != entries ${inRange}`);
    const diskMB = store.stats().bytes / 1048576;
    await store.close();
    return { messages, fillSeconds, inRange, firstResultMs: firsts[2] as number, readerMsgsPerSec: inRange / readerSecs, jsonMsgsPerSec: inRange / jsonSecs, diskMB, rssBeforeMB, rssAfterMB };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
