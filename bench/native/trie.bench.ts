/**
 * Micro benchmark of the native topic trie and retained index through the napi
 * binding (SPEC H2). `npm run bench:native` after `npm run build:native` and
 * `npx tsc -p tsconfig.json`.
 *
 * The workload has the same shape as `crates/strata-core/benches/trie.rs` (run that
 * with `cargo bench -p strata-core --bench trie` for the Rust-direct figures):
 * 100,000 subscriptions over topics `site/{0..99}/dev/{0..999}/temp` mixing exact
 * filters, `+`, `#` and `$share` groups, and 110,001 retained topics.
 *
 * The binding is loaded directly (not through src/native.ts) so that this bench
 * measures the raw boundary cost and does not depend on the broker's facade.
 */
import { createRequire } from 'node:module';
import Benchmark from 'benchmark';
import type * as Binding from '../../native/binding.js';

const require = createRequire(import.meta.url);
// dist/bench/native/trie.bench.js -> <repo>/native/binding.js
const binding = require('../../../native/binding.js') as typeof Binding;

const SITES = 100;
const DEVICES = 1000;

/** mulberry32: small, deterministic, good enough to spread a workload. */
function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n) >>> 0;
  };
}

/** Subscriptions of each shape; 100,000 in total (see the Rust bench). */
interface Mix {
  name: string;
  exact: number;
  devPlus: number;
  devHash: number;
  anySite: number;
  anyDev: number;
  siteHash: number;
  shared: number;
  groups: number;
  fleet: number;
}

/** Heavy fan-out: every topic matches ~33 subscriptions, 8 of them shared groups. */
const DENSE: Mix = {
  name: 'dense',
  exact: 60_000,
  devPlus: 10_000,
  devHash: 10_000,
  anySite: 5_000,
  anyDev: 1_000,
  siteHash: 1_000,
  shared: 3_000,
  groups: 8,
  fleet: 10_000,
};

/** Routing-style: every topic matches a few subscriptions, one shared group. */
const SPARSE: Mix = {
  name: 'sparse',
  exact: 80_000,
  devPlus: 5_000,
  devHash: 5_000,
  anySite: 1_000,
  anyDev: 100,
  siteHash: 100,
  shared: 200,
  groups: 1,
  fleet: 8_600,
};

function filters(below: (n: number) => number, m: Mix): string[] {
  const out: string[] = [];
  const add = (n: number, f: () => string): void => {
    for (let i = 0; i < n; i++) out.push(f());
  };
  add(m.exact, () => `site/${below(SITES)}/dev/${below(DEVICES)}/temp`);
  add(m.devPlus, () => `site/${below(SITES)}/dev/${below(DEVICES)}/+`);
  add(m.devHash, () => `site/${below(SITES)}/dev/${below(DEVICES)}/#`);
  add(m.anySite, () => `site/+/dev/${below(DEVICES)}/temp`);
  add(m.anyDev, () => `site/${below(SITES)}/dev/+/temp`);
  add(m.siteHash, () => `site/${below(SITES)}/#`);
  add(m.shared, () => `$share/g${below(m.groups)}/site/${below(SITES)}/dev/+/temp`);
  add(m.fleet, () => `fleet/${below(50_000)}/gps`);
  return out;
}

function ms(t0: bigint): string {
  return (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1);
}

const below = rng(0x5eed1234);

function buildTrie(m: Mix): InstanceType<typeof binding.TopicTrie> {
  const subs = filters(below, m);
  const t0 = process.hrtime.bigint();
  const trie = new binding.TopicTrie();
  subs.forEach((f, id) => trie.subscribe(f, id));
  console.log(`trie '${m.name}': ${trie.size} subscriptions built in ${ms(t0)} ms`);
  return trie;
}

const dense = buildTrie(DENSE);
const sparse = buildTrie(SPARSE);

const topics: string[] = [];
for (let i = 0; i < 4096; i++) topics.push(`site/${below(SITES)}/dev/${below(DEVICES)}/temp`);
const misses: string[] = [];
for (let i = 0; i < 4096; i++) misses.push(`other/${i}/x`);
for (const [name, trie] of [
  ['dense', dense],
  ['sparse', sparse],
] as const) {
  let ids = 0;
  for (const t of topics) ids += trie.match(t).length;
  console.log(`trie '${name}': ${(ids / topics.length).toFixed(1)} ids per match on average`);
}

const t0 = process.hrtime.bigint();
const retained = new binding.RetainedMessages();
// A record (layouts().retained): version 1, QoS 0, time, no publisher or properties, a 16-byte payload.
const record = Buffer.alloc(binding.layouts().retained.header + 16);
record[0] = binding.layouts().retained.version;
for (let s = 0; s < SITES; s++) for (let d = 0; d < DEVICES; d++) retained.set(`site/${s}/dev/${d}/temp`, record);
for (let i = 0; i < 10_000; i++) retained.set(`fleet/${i}/gps`, record);
retained.set('$SYS/broker/uptime', record);
console.log(`retained: ${retained.size} records in ${ms(t0)} ms`);

// Results flow into `sink` so the calls cannot be optimised away.
let sink = 0;
let i = 0;
let j = 0;

/** What a subscribe's retained feed does first (routing/retained-feed.ts): the matching topics, then a page of 1,000 records. */
function firstPage(filter: string): number {
  const t = retained.matchTopics(filter);
  return retained.records(t.buffer, t.offsets, 0, Math.min(1000, t.offsets.length - 1)).offsets.length;
}

const suite = new Benchmark.Suite('native topic trie');
suite
  .add('TopicTrie.match, 100k subs dense, hit', () => {
    sink ^= dense.match(topics[i++ & 4095] as string).length;
  })
  .add('TopicTrie.match, 100k subs sparse, hit', () => {
    sink ^= sparse.match(topics[i++ & 4095] as string).length;
  })
  .add('TopicTrie.match, 100k subs, miss', () => {
    sink ^= dense.match(misses[j++ & 4095] as string).length;
  })
  .add('validateTopicName', () => {
    sink ^= binding.validateTopicName(topics[i++ & 4095] as string) === null ? 1 : 0;
  })
  .add('RetainedMessages.matchTopics + first page of records: site/42/dev/517/temp (1 of 110k)', () => {
    sink ^= firstPage('site/42/dev/517/temp');
  })
  .add('RetainedMessages.matchTopics + first page of records: site/+/dev/517/temp (100)', () => {
    sink ^= firstPage('site/+/dev/517/temp');
  })
  .add('RetainedMessages.matchTopics + first page of records: site/42/# (1000)', () => {
    sink ^= firstPage('site/42/#');
  })
  .add('RetainedMessages.matchTopics + first page of records: # (110k topics, 1000 records)', () => {
    sink ^= firstPage('#');
  })
  .on('cycle', (event: Benchmark.Event) => {
    const b = event.target;
    const hz = b.hz ?? 0;
    const rme = b.stats?.rme ?? 0;
    const per = hz > 0 ? 1e6 / hz : 0;
    console.log(
      `${String(b.name).padEnd(55)} ${hz.toLocaleString('en-US', { maximumFractionDigits: 0 }).padStart(12)} ops/s ±${rme.toFixed(1)}%  (${per < 1 ? `${(per * 1000).toFixed(0)} ns` : `${per.toFixed(1)} us`}/op)`,
    );
  })
  .on('complete', () => {
    console.log(`(sink ${sink})`);
  })
  .run({ async: false });
