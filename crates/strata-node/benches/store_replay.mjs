// Session replay as PUBLISH packets through the binding (store.replay / store.replayAsync):
// packets framed per second, as the drain fast path gets them.
// node crates/strata-node/benches/store_replay.mjs [N]   (BINDING=path/to/binding.js)
//
// Four shards, N records (64-byte payloads, topic drain/t, QoS 1, one publisher: one shard
// holds them all), replayed from 0 to Done for one QoS 1 subscription to drain/t, with
// maxEntries 128 (one window) and 1000 (durable_sessions.batch_size), synchronously and on
// the worker thread. Best of 3 rounds.
import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const { Store } = require(process.env.BINDING ?? '../../../native/binding.js');
const N = Number(process.argv[2] ?? 1_000_000);
const dir = fs.mkdtempSync('/tmp/strata-replay-bench-');
const store = await Store.open(dir, { nShards: 4, fsync: 'none' });
const payload = Buffer.alloc(64, 7);
let t = performance.now();
for (let i = 0; i < N; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(N, i + 1000); j++) batch.push({ publisher: 'p', topic: 'drain/t', qos: 1, retain: false, payload });
  await store.append(batch);
}
console.log(`built ${N} records in ${((performance.now() - t) / 1000).toFixed(1)} s`);

const shard = [0, 1, 2, 3].find((s) => store.shardEnd(s) > 0);
const end = store.shardEnd(shard);
const subs = [{ filter: 'drain/t', qos: 1, noLocal: false, retainAsPublished: false }];
for (const n of [128, 1000]) {
  for (const mode of ['replay', 'replayAsync']) {
    let best = Infinity;
    let calls = 0;
    for (let round = 0; round < 3; round++) {
      let from = 0;
      let frames = 0;
      calls = 0;
      t = performance.now();
      while (from < end) {
        const r = await store[mode]([{ shard, from, starts: [0] }], subs, 4, 'sub', n, 268_435_455);
        from = r.next[0];
        frames += r.meta.length / 6;
        calls++;
      }
      if (frames !== N) throw new Error(`replayed ${frames} of ${N}`);
      best = Math.min(best, performance.now() - t);
    }
    console.log(
      `${mode.padEnd(11)} maxEntries ${String(n).padStart(4)}: ${(N / best / 1000).toFixed(2)}M packets/s, ${((best * 1000) / calls).toFixed(0)} us/call`,
    );
  }
}
await store.close();
fs.rmSync(dir, { recursive: true, force: true });
