// Batch fetch through the binding: msgs/s from page cache, as JS sees it.
// node crates/strata-node/benches/store_fetch.mjs [N]   (BINDING=path/to/binding.js)
import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const { Store } = require(process.env.BINDING ?? '../../../native/binding.js');
const N = Number(process.argv[2] ?? 2_000_000);
const dir = fs.mkdtempSync('/tmp/strata-fetch-bench-');
const store = await Store.open(dir, { nShards: 2, fsync: 'none' });
const topic = 'building-07/floor-3/sensor/tmp';
const payload = Buffer.alloc(64, 7);
let t = performance.now();
const B = 1000;
const PER = Number(process.env.PER ?? 1000);
for (let i = 0; i < N; i += B) {
  const batch = [];
  for (let j = 0; j < B; j++) batch.push({ publisher: `client-${j % 8}`, topic, qos: 1, retain: false, payload });
  await store.append(batch);
}
const appendS = (performance.now() - t) / 1000;
console.log(`append (fsync=none, arrays of ${B}): ${(N / appendS).toFixed(0)} msgs/s`);

for (const decode of [false, true]) {
  const ids = store.streams('#').map((s) => store.openCursor(s.shard, s.generation, s.stream));
  let total = 0;
  let sum = 0;
  t = performance.now();
  for (;;) {
    const r = store.fetch(ids, PER, PER * ids.length);
    const n = r.offsets.length - 1;
    if (n === 0) break;
    total += n;
    if (decode) {
      // Walk every entry: read offset, payload length and first payload byte.
      const buf = r.buffer;
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      for (let i = 0; i < n; i++) {
        const e = r.offsets[i];
        const pl = dv.getUint32(e + 16, true);
        const start = r.offsets[i + 1] - pl;
        sum += buf[start] + Number(dv.getBigUint64(e, true) & 1n);
      }
    }
  }
  const s = (performance.now() - t) / 1000;
  console.log(`fetch through binding (batch ${PER}/cursor)${decode ? ' + JS walk of every entry' : ''}: ${(total / s).toFixed(0)} msgs/s (${total} msgs, ${s.toFixed(2)} s)`);
  for (const id of ids) store.closeCursor(id);
  if (sum < 0) console.log(sum);
}
await store.close();
fs.rmSync(dir, { recursive: true, force: true });
