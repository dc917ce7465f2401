/**
 * The message log's delivery counts in the store (`addCounts`, `addCountsAsync`, `readCounts`;
 * strata_core::log::counts): the worker-thread variant adds exactly what the synchronous one
 * adds, in any order and interleaved with it; a position's first completion is reported once,
 * by whichever call raised it from 0; the arrays given may be reused at once; bad arguments
 * throw at once; a closed store refuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DurableStore, NativeError, packMessages, type PackedMessage } from '../../src/native.js';
import { tempDir } from '../helpers.js';

test('addCountsAsync adds what addCounts adds; the first completion of a position is reported once', async () => {
  const tmp = tempDir('strata-counts-');
  const store = await DurableStore.open(tmp.dir, { nShards: 2, fsync: 'none' });
  try {
    const msgs: PackedMessage[] = [];
    for (let i = 0; i < 400; i++) msgs.push({ publisher: `p${i % 7}`, topic: `t/${i % 5}`, qos: 1, retain: false, properties: null, payload: Buffer.from(`m${i}`) });
    await store.appendPacked(packMessages(msgs), msgs.length);
    const ends = [0, 1].map((s) => store.shardEnd(s));
    assert.equal(ends[0]! + ends[1]!, 400);

    // A model: per (shard, offset), delivered and acked; deltas in random order, some positions
    // many times, half through each call, the async ones not awaited before the next call.
    const model = new Map<string, [number, number]>();
    const firstAcks: string[] = [];
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const shards = new Uint32Array(64);
    const offsets = new Float64Array(64);
    const delivered = new Uint32Array(64);
    const acked = new Uint32Array(64);
    const pending: Promise<void>[] = [];
    const report = (pairs: Float64Array): void => {
      for (let i = 0; i < pairs.length; i += 2) firstAcks.push(`${pairs[i]}:${pairs[i + 1]}`);
    };
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 64; i++) {
        const s = rnd(2);
        const o = rnd(ends[s]!);
        const d = rnd(3);
        const a = rnd(4) === 0 ? 1 : 0;
        shards[i] = s;
        offsets[i] = o;
        delivered[i] = d;
        acked[i] = a;
        const k = `${s}:${o}`;
        const m = model.get(k) ?? [0, 0];
        model.set(k, [m[0] + d, m[1] + a]);
      }
      if (round % 2 === 0) pending.push(store.addCountsAsync(shards, offsets, delivered, acked).then(report));
      else report(store.addCounts(shards, offsets, delivered, acked));
      // The arrays are reused for the next round at once: what the async call adds was copied.
    }
    await Promise.all(pending);

    for (const s of [0, 1]) {
      const offs = Float64Array.from({ length: ends[s]! }, (_, i) => i);
      const got = store.readCounts(s, offs);
      for (let o = 0; o < ends[s]!; o++) {
        const [d, a] = model.get(`${s}:${o}`) ?? [0, 0];
        assert.deepEqual([got[2 * o], got[2 * o + 1]], [d, a], `shard ${s} offset ${o}`);
      }
    }
    const acked0 = [...model].filter(([, [, a]]) => a > 0).map(([k]) => k);
    assert.deepEqual([...firstAcks].sort(), acked0.sort(), 'each position acked at least once is reported once, by the call that raised it from 0');

    assert.throws(
      () => store.addCountsAsync(new Uint32Array(2), new Float64Array(1), new Uint32Array(2), new Uint32Array(2)),
      (e: unknown) => e instanceof NativeError && e.code === 'ERR_INVALID_ARGUMENT' && /differ in length/.test(e.message),
    );
  } finally {
    await store.close();
    tmp.remove();
  }
  assert.throws(() => store.addCountsAsync(new Uint32Array(1), new Float64Array(1), new Uint32Array(1), new Uint32Array(1)), (e: unknown) => e instanceof NativeError);
});
