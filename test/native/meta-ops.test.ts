/** Metadata writes cross the binding packed (DurableStore.metaApply → Store.metaApplyPacked): bad ones are refused whole, good ones land. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DurableStore, type MetaOp } from '../../src/native.js';
import { tempDir } from '../helpers.js';

test('an unknown table refuses the whole batch with ERR_INVALID_ARGUMENT; nothing of it is written', async () => {
  const dir = tempDir('strata-meta-ops-');
  const store = await DurableStore.open(dir.dir, { nShards: 1 });
  try {
    const good: MetaOp = { op: 'put', table: 'sessions', key: Buffer.from('k'), value: Buffer.from('v') };
    const bad = { op: 'put', table: 'acks', key: Buffer.from('x'), value: Buffer.from('y') } as unknown as MetaOp;
    await assert.rejects(store.metaApply([good, bad]), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT' && /unknown metadata table "acks"/.test(e.message));
    assert.equal(store.metaGet('sessions', Buffer.from('k')), null, 'the good write of a refused batch is not applied');
    await store.metaApply([good, { op: 'delete', table: 'sessions', key: Buffer.from('none') }, { op: 'deletePrefix', table: 'progress', key: Buffer.alloc(0) }]);
    assert.deepEqual(store.metaGet('sessions', Buffer.from('k')), Buffer.from('v'));
  } finally {
    await store.close();
    dir.remove();
  }
});
