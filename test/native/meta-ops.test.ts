/** Metadata writes cross the binding packed (DurableStore.metaApply → Store.metaApplyPacked): bad ones are refused whole, good ones land. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DurableStore, encodeRetainedRecord, MetaPacker, type MetaOp, packMetaOps } from '../../src/native.js';
import { pino } from 'pino';
import { DurableSessions } from '../../src/persistence/embedded/durable-sessions.js';
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

test('packed writes are checked on the writer thread: bytes that do not fit the layout, or the store\'s own journal_seq, are refused whole; the writer carries on', async () => {
  const dir = tempDir('strata-meta-ops-');
  const store = await DurableStore.open(dir.dir, { nShards: 1 });
  try {
    const packed = packMetaOps([{ op: 'put', table: 'sessions', key: Buffer.from('k'), value: Buffer.from('v') }]);
    const invalid = (e: Error & { code?: string }): boolean => e.code === 'ERR_INVALID_ARGUMENT';
    await assert.rejects(store.metaApplyPacked(packed.subarray(0, packed.length - 1)), (e: Error & { code?: string }) => invalid(e) && /runs past the end/.test(e.message));
    await assert.rejects(store.metaApplyPacked(Buffer.from([7, 0, 0, 0, 0, 0])), (e: Error & { code?: string }) => invalid(e) && /unknown kind 7/.test(e.message));
    const reserved = packMetaOps([
      { op: 'put', table: 'sessions', key: Buffer.from('k'), value: Buffer.from('v') },
      { op: 'put', table: 'system', key: Buffer.from('journal_seq'), value: Buffer.alloc(8) },
    ]);
    await assert.rejects(store.metaApplyPacked(reserved), (e: Error & { code?: string }) => invalid(e) && /journal_seq/.test(e.message));
    assert.equal(store.metaGet('sessions', Buffer.from('k')), null, 'nothing of a refused batch is applied');
    await store.metaApplyPacked(packed);
    assert.deepEqual(store.metaGet('sessions', Buffer.from('k')), Buffer.from('v'));
  } finally {
    await store.close();
    dir.remove();
  }
});

test('MetaPacker: a retained message packed from its fields is the record encodeRetainedRecord makes; a copied write (addPacked) is the same bytes', () => {
  const p = new MetaPacker(16);
  const props = Buffer.from([0x01, 0x01]);
  const payload = Buffer.alloc(300, 7); // grows the buffer
  p.setRetained('a/ü/1', 'pub-é', 1, 1_700_000_000_123, props, payload);
  p.setRetained('a/b', 'pub-é', 0, 1_700_000_000_123, null, Buffer.alloc(0)); // an empty payload clears
  const expected = packMetaOps([
    { op: 'put', table: 'retained', key: 'a/ü/1', value: encodeRetainedRecord('pub-é', 1, 1_700_000_000_123, props, payload) },
    { op: 'delete', table: 'retained', key: 'a/b' },
  ]);
  assert.deepEqual(p.bytes(), expected);
  const q = new MetaPacker(16);
  q.addPacked(p.last());
  assert.deepEqual(q.bytes(), expected.subarray(expected.length - p.last().length));
  assert.equal(p.count, 2);
  assert.equal(q.count, 1);
});

test('DurableSessions.write: ops with an unknown table are refused together, the turn\'s other writes still commit', async () => {
  const dir = tempDir('strata-meta-ops-');
  const ds = await DurableSessions.open(dir.dir, {}, pino({ level: 'silent' }));
  try {
    const good = ds.write({ op: 'put', table: 'sessions', key: Buffer.from('a'), value: Buffer.from('1') });
    const bad = ds.write([
      { op: 'put', table: 'sessions', key: Buffer.from('b'), value: Buffer.from('2') },
      { op: 'put', table: 'acks', key: Buffer.from('x'), value: Buffer.from('y') } as unknown as MetaOp,
    ]);
    const after = ds.write({ op: 'put', table: 'sessions', key: Buffer.from('c'), value: Buffer.from('3') });
    await assert.rejects(bad, /unknown metadata table "acks"/);
    await Promise.all([good, after]);
    const store = ds.store;
    assert.deepEqual(store.metaGet('sessions', Buffer.from('a')), Buffer.from('1'));
    assert.equal(store.metaGet('sessions', Buffer.from('b')), null, 'the refused write\'s first op is not committed');
    assert.deepEqual(store.metaGet('sessions', Buffer.from('c')), Buffer.from('3'));
  } finally {
    await ds.close();
    dir.remove();
  }
});
