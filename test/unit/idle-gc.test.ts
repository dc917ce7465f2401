/** node.idle_gc: one collection when traffic stops after moving, none while it moves or stays quiet, none without slack. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startIdleGc } from '../../src/idle-gc.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('collects once after a burst ends, never while busy or already quiet', async () => {
  let count = 0;
  let calls = 0;
  const stop = startIdleGc(() => count, { everyMs: 20, slackBytes: 0, gc: () => calls++ });
  try {
    await sleep(100); // quiet from the start: nothing to collect
    assert.equal(calls, 0);
    const busy = setInterval(() => count++, 5);
    await sleep(150);
    assert.equal(calls, 0, 'not while traffic moves');
    clearInterval(busy);
    await sleep(150);
    assert.equal(calls, 1, 'once when it stops');
    await sleep(100);
    assert.equal(calls, 1, 'not again while it stays quiet');
    count++;
    await sleep(100);
    assert.equal(calls, 2, 'after the next burst');
  } finally {
    stop();
  }
});

test('no collection when the heap has less unused room than the slack; the real one frees garbage', async () => {
  let count = 0;
  let calls = 0;
  const stop = startIdleGc(() => count, { everyMs: 20, slackBytes: Number.MAX_SAFE_INTEGER, gc: () => calls++ });
  count++;
  await sleep(80);
  stop();
  assert.equal(calls, 0);
  // The default collection (V8's, exposed at run time) frees what a burst left.
  let garbage: object[] | null = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `x${i}` }));
  garbage = null;
  const before = process.memoryUsage().heapUsed;
  let n = 0;
  const stopReal = startIdleGc(() => n, { everyMs: 20, slackBytes: 0 });
  n++;
  await sleep(100);
  stopReal();
  assert.equal(garbage, null);
  assert.ok(process.memoryUsage().heapUsed < before - 5e6, `heap ${before} -> ${process.memoryUsage().heapUsed}`);
});
