// Session replay scan through the binding (store.scan): records examined/s and matching
// entries emitted/s from page cache, as JS sees them.
// node crates/strata-node/benches/store_scan.mjs [N]   (BINDING=path/to/binding.js)
//
// One shard of N records, 64-byte payloads on 30-byte topics building-07/floor-3/sensor/NNN
// (1000 sensors: 16 static streams, the rest share the learned .../sensor/+ stream), scanned
// from 0 to Done with the default limits (maxEntries 1000, 4 MiB, 65536 examined).
import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const { Store } = require(process.env.BINDING ?? '../../../native/binding.js');
const N = Number(process.argv[2] ?? 2_000_000);
const dir = fs.mkdtempSync('/tmp/strata-scan-bench-');
const store = await Store.open(dir, { nShards: 1, fsync: 'none' });
const payload = Buffer.alloc(64, 7);
let t = performance.now();
for (let i = 0; i < N; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(N, i + 1000); j++) {
    batch.push({ publisher: 'p', topic: `building-07/floor-3/sensor/${String(j % 1000).padStart(3, '0')}`, qos: 1, retain: false, payload });
  }
  await store.append(batch);
}
console.log(`built ${N} records in ${((performance.now() - t) / 1000).toFixed(1)} s`);

const sensor = (k) => `building-07/floor-3/sensor/${String(k).padStart(3, '0')}`;
const cases = [
  ['1 filter, 0.1% match', [sensor(500)]],
  ['40 filters (2 mask words), 4% match', Array.from({ length: 40 }, (_, k) => sensor(k * 25))],
  ['1 filter, 100% match', ['building-07/#']],
  ['1 filter, 100% match + JS walk of every entry', ['building-07/#'], true],
];
for (const [name, filters, walk] of cases) {
  const starts = filters.map(() => 0);
  let best = Infinity;
  let entries = 0;
  let calls = 0;
  let sum = 0;
  for (let round = 0; round < 3; round++) {
    t = performance.now();
    let from = 0;
    let e = 0;
    let c = 0;
    for (;;) {
      const r = store.scan(0, from, filters, starts, 1000);
      const n = r.offsets.length - 1;
      e += n;
      c++;
      if (walk) {
        const buf = r.buffer;
        const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        for (let i = 0; i < n; i++) {
          const at = r.offsets[i];
          const pl = dv.getUint32(at + 16, true);
          sum += buf[r.offsets[i + 1] - pl] + r.masks[i * r.words] + Number(dv.getBigUint64(at, true) & 1n);
        }
      }
      from = r.next;
      if (r.status === 1) break;
    }
    if (from !== N) throw new Error(`ended at ${from}, expected ${N}`);
    best = Math.min(best, (performance.now() - t) / 1000);
    entries = e;
    calls = c;
  }
  console.log(
    `scan ${name}: ${(N / best / 1e6).toFixed(2)}M records examined/s, ${(entries / best / 1e6).toFixed(2)}M entries/s (${entries} entries, ${calls} calls, ${best.toFixed(3)} s)`,
  );
  if (sum < 0) console.log(sum);
}
await store.close();
fs.rmSync(dir, { recursive: true, force: true });
