/**
 * DeliveryCounts.settle (what the admin API's log query and the SQL sink's stop wait for): it
 * resolves only once a flush already handed to a worker thread has ended — then writes what was
 * counted since, so everything counted before the call is in the store. A flush that fails in
 * flight is counted as failed and does not keep settle from writing the rest. On a real store;
 * the store's addCountsAsync is observed: its real call is made only when the test lets it.
 */
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { DurableStore, packMessages, type PackedMessage } from '../../src/native.js';
import { DeliveryCounts } from '../../src/persistence/embedded/delivery-counts.js';
import { tempDir } from '../helpers.js';

interface Held {
  release: () => void;
  fail: () => void;
}

/** addCountsAsync of `store`, each call held (its arrays copied, as the real call copies them) until released. */
function holdFlushes(store: DurableStore): Held[] {
  const held: Held[] = [];
  const real = store.addCountsAsync.bind(store);
  store.addCountsAsync = (shards, offsets, delivered, acked) => {
    const args = [shards.slice(), offsets.slice(), delivered.slice(), acked.slice()] as const;
    return new Promise<Float64Array>((resolve, reject) => {
      held.push({
        release: () => void real(...args).then(resolve, reject),
        fail: () => reject(new Error('injected: counts not written')),
      });
    });
  };
  return held;
}

async function withStore(fn: (store: DurableStore, counts: DeliveryCounts) => Promise<void>): Promise<void> {
  const tmp = tempDir('strata-counts-settle-');
  const store = await DurableStore.open(tmp.dir, { nShards: 1, fsync: 'none' });
  const msgs: PackedMessage[] = Array.from({ length: 4 }, (_, i) => ({ publisher: 'p', topic: 't', qos: 1, retain: false, properties: null, payload: Buffer.from(`m${i}`) }));
  await store.appendPacked(packMessages(msgs), msgs.length);
  const counts = new DeliveryCounts(store, createLogger('silent'));
  try {
    await fn(store, counts);
  } finally {
    await counts.close();
    await store.close();
    tmp.remove();
  }
}

const read = (store: DurableStore): number[] => Array.from(store.readCounts(0, Float64Array.from([0, 1, 2, 3])));

test('settle waits for the flush in flight, then writes what was counted since', async () => {
  await withStore(async (store, counts) => {
    const held = holdFlushes(store);
    counts.add(0, 0, 1, 0);
    counts.add(0, 1, 2, 0);
    counts.flush(); // handed over, held
    assert.equal(held.length, 1);
    counts.add(0, 0, 0, 1);
    counts.add(0, 3, 1, 1);
    let settled = false;
    const settling = counts.settle().then(() => (settled = true));
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(settled, false, 'settle resolved while a flush was in flight');
    assert.deepEqual(read(store), [0, 0, 0, 0, 0, 0, 0, 0], 'nothing written yet');
    held[0]!.release();
    await settling;
    assert.deepEqual(read(store), [1, 1, 2, 0, 0, 0, 1, 1], 'both flushes in the store once settled');
    assert.equal(counts.stats.flushed, 4);
    assert.equal(counts.stats.failed, 0);
  });
});

test('a flush failing in flight is counted; settle still writes what was counted since', async () => {
  await withStore(async (store, counts) => {
    const held = holdFlushes(store);
    counts.add(0, 2, 5, 0);
    counts.flush();
    counts.add(0, 1, 1, 1);
    const settling = counts.settle();
    await turn();
    held[0]!.fail();
    await settling;
    assert.equal(counts.stats.failed, 1);
    assert.deepEqual(read(store), [0, 0, 1, 1, 0, 0, 0, 0], 'the failed flush lost its counts (statistics only), the later one is written');
  });
});
