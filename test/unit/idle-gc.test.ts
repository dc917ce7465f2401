/** node.idle_gc: one collection when traffic stops after moving, none while it moves or stays quiet, none without slack; the allocator's free memory given back each time. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { getHeapSpaceStatistics } from 'node:v8';
import { startIdleGc, v8Collect } from '../../src/idle-gc.js';
import { releaseFreeMemory } from '../../src/native.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('the start and each burst: one compacting collection when traffic stops, then young ones (at most 4); never while busy or already quiet', () => {
  // Ticks and time driven here (every 20 ms of a clock of the test's own): the sequence does not
  // depend on how busy the machine is (with real timers a late tick merged two steps under load).
  let count = 0;
  let now = 0;
  let tick = (): void => undefined;
  const calls: string[] = [];
  // youngBytes 0: the young generation is never small enough, so every try is made.
  const stop = startIdleGc(() => count, {
    everyMs: 20,
    slackBytes: 0,
    shrinkAfterMs: 60,
    youngBytes: 0,
    gc: (kind) => calls.push(kind),
    release: () => calls.push('release'),
    now: () => now,
    ticker: (t) => {
      tick = t;
      return () => (tick = () => assert.fail('a tick after stop'));
    },
  });
  const quiet = (ms: number): void => {
    for (let end = now + ms; now < end; ) {
      now += 20;
      tick();
    }
  };
  const young4 = ['young', 'young', 'young', 'young'];
  quiet(20); // the start is a burst (modules loaded, store opened)
  assert.deepEqual(calls, ['compact', 'release']);
  quiet(260);
  assert.deepEqual(calls, ['compact', 'release', ...young4], 'young ones once the quiet lasted, on each tick, four at most');
  quiet(100);
  assert.equal(calls.length, 6, 'not again while it stays quiet');
  for (let i = 0; i < 8; i++) {
    count++;
    now += 20;
    tick();
  }
  assert.equal(calls.length, 6, 'not while traffic moves');
  quiet(20);
  assert.deepEqual(calls, ['compact', 'release', ...young4, 'compact', 'release'], 'once when it stops');
  count++; // traffic again before the young ones are due: they wait for the next quiet
  quiet(40);
  assert.deepEqual(calls, ['compact', 'release', ...young4, 'compact', 'release', 'compact', 'release']);
  quiet(260);
  assert.deepEqual(calls, ['compact', 'release', ...young4, 'compact', 'release', 'compact', 'release', ...young4]);
  stop();
});

test('the young tries stop once the young generation is small', async () => {
  const calls: string[] = [];
  const stop = startIdleGc(() => 0, { everyMs: 20, slackBytes: 0, shrinkAfterMs: 0, youngBytes: Number.MAX_SAFE_INTEGER - 1, gc: (kind) => calls.push(kind) });
  await sleep(200);
  stop();
  assert.deepEqual(calls, ['compact'], 'a young generation already small is left alone');
});

test('after the start, no collection when a burst left less than the slack, nor a young one when that generation is small', async () => {
  const calls: string[] = [];
  let n = 0;
  const stop = startIdleGc(() => n, { everyMs: 20, slackBytes: Number.MAX_SAFE_INTEGER, shrinkAfterMs: 0, youngBytes: Number.MAX_SAFE_INTEGER, gc: (kind) => calls.push(kind), release: () => calls.push('release') });
  await sleep(100);
  assert.deepEqual(calls, ['compact', 'release'], 'the start is collected whatever it left');
  n++;
  await sleep(100);
  stop();
  assert.deepEqual(calls, ['compact', 'release', 'release'], "the allocator's free memory is given back all the same (most of a burst's is native)");
});

test("releaseFreeMemory gives freed native memory back: what the allocator kept after the buffers' collection", async () => {
  const anonKb = (): number => Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  const collect = v8Collect();
  releaseFreeMemory();
  // 120 MB in 1 KB buffers, each its own malloc (below the mmap threshold: in the arena's heap);
  // the last one kept, so what is freed below it is not a free top that free() itself returns.
  let bufs: Buffer[] = Array.from({ length: 120_000 }, () => Buffer.allocUnsafeSlow(1000).fill(1));
  const last = bufs[bufs.length - 1];
  const full = anonKb();
  bufs = [];
  for (let i = 0; i < 3; i++) {
    collect('compact');
    await sleep(100); // backing stores are freed by V8's sweeper, off the main thread
  }
  const freed = anonKb();
  const released = releaseFreeMemory();
  const after = anonKb();
  assert.ok(last && last.length === 1000);
  assert.ok(full - freed < 60_000, `the allocator keeps what was freed: ${full} kB -> ${freed} kB after the collections`);
  assert.ok(released, 'malloc_trim released something');
  assert.ok(freed - after > 60_000, `released: ${freed} kB -> ${after} kB`);
});

test("the real collections: the full one frees a burst's garbage, the young one gives back the young generation the burst grew", async () => {
  const young = (): number => getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')?.physical_space_size ?? 0;
  // A burst whose objects live a little while: V8 grows the young generation to hold them.
  let keep: object[][] = [];
  for (let r = 0; r < 40; r++) {
    keep.push(Array.from({ length: 50_000 }, (_, i) => ({ r, i, s: `k${r}/${i}` })));
    if (keep.length > 8) keep.shift();
  }
  keep = [];
  const grown = young();
  const usedBefore = process.memoryUsage().heapUsed;
  let n = 0;
  const kinds: string[] = [];
  const collect = v8Collect();
  const stop = startIdleGc(() => n, {
    everyMs: 1000,
    slackBytes: 0,
    shrinkAfterMs: 2000, // tried from then on each tick: V8 shrinks it at a collection that sees 5 s of low allocation
    youngBytes: 0,
    gc: (k) => {
      kinds.push(k);
      collect(k);
    },
  });
  try {
    await sleep(1100);
    assert.deepEqual(kinds, ['compact']);
    assert.equal(keep.length, 0);
    assert.ok(process.memoryUsage().heapUsed < usedBefore - 20e6, `heap used ${usedBefore} -> ${process.memoryUsage().heapUsed}`);
    await sleep(6000);
    assert.ok(kinds.length >= 2 && kinds.every((k, i) => (i === 0 ? k === 'compact' : k === 'young')), kinds.join());
    assert.ok(grown >= 8 << 20, `the burst grew the young generation to ${grown}`);
    assert.ok(young() <= grown / 4, `young generation ${grown} -> ${young()}`);
  } finally {
    stop();
  }
});
