// Store open (recovery) time through the binding: N records of 64 B from 4 publishers in a
// 4-shard store (fsync none), closed, then opened 4 times; recovery scans each shard's
// active segment record by record (docs/storage.md, Recovery), shards in parallel.
// node crates/strata-node/benches/store_recover.mjs [N]   (BINDING=path/to/binding.js)
import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const { Store } = require(process.env.BINDING ?? '../../../native/binding.js');
const N = Number(process.argv[2] ?? 1_000_000);
const dir = fs.mkdtempSync('/tmp/strata-recover-bench-');
const store = await Store.open(dir, { nShards: 4, fsync: 'none' });
const payload = Buffer.alloc(64, 7);
for (let i = 0; i < N; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(N, i + 1000); j++) batch.push({ publisher: `pub${j % 4}`, topic: 'restart/t', qos: 1, retain: false, payload });
  await store.append(batch);
}
await store.close();
for (let round = 0; round < 4; round++) {
  const t0 = performance.now();
  const s = await Store.open(dir, { nShards: 4, fsync: 'none' });
  const ms = performance.now() - t0;
  const r = s.recovery();
  console.log(
    `open ${ms.toFixed(0)} ms (recovery ${r.elapsedMs} ms): ${r.records} records, ${r.segments} segments, ${(Number(r.scannedBytes) / 1e6).toFixed(0)} MB scanned`,
  );
  await s.close();
}
fs.rmSync(dir, { recursive: true, force: true });
