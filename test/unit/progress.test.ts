/**
 * The progress record (session/progress.ts): the writer produces the documented layout byte
 * for byte (records written by earlier builds decode the same), and every field comes back,
 * including records larger than the writer's initial scratch buffer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeProgress, encodeProgress, type Progress } from '../../src/persistence/embedded/progress.js';

test('a small record has the documented layout, byte for byte', () => {
  const record = encodeProgress({
    next: [5],
    excess: 0,
    backlog: 2,
    backlogBytes: 10,
    gaps: [[{ from: 1, to: null }]],
    entries: [{ pending: { msg: null, qos: 1, retain: true, subIds: undefined, ref: { shard: 0, offset: 3 } }, packetId: 7, phase: 1 }],
  });
  const f64 = (v: number): string => {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return b.toString('hex');
  };
  const expected =
    '02' + // version
    '0001' + f64(5) + // shards, next
    '00000000' + f64(2) + f64(10) + // excess, backlog, backlog bytes
    '0001' + '0000' + f64(1) + f64(-1) + // one gap: shard 0, from 1, still open
    '00000001' + // one entry
    '0000' + f64(3) + '0007' + '01' + '01' + '01' + '00'; // shard, offset, id, qos, phase, flags (retain), no ids
  assert.equal(record.toString('hex'), expected);
});

test('every field survives a round trip, also past the initial scratch buffer, and a later small record carries nothing over', () => {
  const big: Progress = {
    next: [10, 2 ** 40, 0],
    excess: 3,
    backlog: 12345,
    backlogBytes: 2 ** 33,
    gaps: [[], [{ from: 100, to: 200 }, { from: 300, to: null }], []],
    entries: [],
  };
  for (let i = 0; i < 6000; i++) {
    big.entries.push({ pending: { msg: null, qos: 1, retain: false, subIds: undefined, ref: { shard: 1, offset: 2 ** 40 + i } }, packetId: (i % 65535) + 1, phase: 1 });
  }
  big.entries.push({ pending: { msg: null, qos: 2, retain: false, subIds: [1, 268435455], ref: { shard: 2, offset: 9 } }, packetId: 9, phase: 2 });
  big.entries.push({ pending: { msg: null, qos: 1, retain: false, subIds: undefined, ref: { shard: 0, offset: 4 }, pinned: true }, packetId: 0, phase: 0 });
  big.entries.push({ pending: { msg: null, qos: 1, retain: true, subIds: [7], retainedTopic: 'état/€/😀' }, packetId: 12, phase: 1 });
  const encoded = encodeProgress(big);
  assert.ok(encoded.length > 64 * 1024, 'larger than the initial scratch buffer');
  const back = decodeProgress(encoded, 3);
  assert.deepEqual(back.next, big.next);
  assert.equal(back.excess, 3);
  assert.equal(back.backlog, 12345);
  assert.equal(back.backlogBytes, 2 ** 33);
  assert.deepEqual(back.gaps, big.gaps);
  assert.equal(back.entries.length, big.entries.length);
  assert.deepEqual(back.entries.slice(0, 6000), big.entries.slice(0, 6000).map((e) => ({ ...e, pending: { ...e.pending, pinned: false } })));
  assert.deepEqual(back.entries[6000], { pending: { msg: null, qos: 2, retain: false, subIds: [1, 268435455], ref: { shard: 2, offset: 9 }, pinned: false }, packetId: 9, phase: 2 });
  assert.deepEqual(back.entries[6001], { pending: { msg: null, qos: 1, retain: false, subIds: undefined, ref: { shard: 0, offset: 4 }, pinned: true }, packetId: 0, phase: 0 });
  assert.deepEqual(back.entries[6002], { pending: { msg: null, qos: 1, retain: true, subIds: [7], retainedTopic: 'état/€/😀' }, packetId: 12, phase: 1 });

  const small = encodeProgress({ next: [1, 2, 3], excess: 0, backlog: 0, backlogBytes: 0, gaps: [[], [], []], entries: [] });
  assert.equal(small.length, 1 + 2 + 24 + 4 + 16 + 2 + 4);
  assert.deepEqual(decodeProgress(small, 3).entries, []);
});

test('more than 255 subscription identifiers on one delivery are refused, not wrapped', () => {
  const subIds = Array.from({ length: 256 }, (_, i) => i + 1);
  assert.throws(
    () => encodeProgress({ next: [0], excess: 0, backlog: 0, backlogBytes: 0, gaps: [[]], entries: [{ pending: { msg: null, qos: 1, retain: false, subIds, ref: { shard: 0, offset: 0 } }, packetId: 1, phase: 1 }] }),
    /256 subscription identifiers/,
  );
});

test('values beyond their field are refused, not wrapped: excess, a retained topic longer than 65535 bytes', () => {
  assert.throws(() => encodeProgress({ next: [0], excess: 2 ** 32, backlog: 0, backlogBytes: 0, gaps: [[]], entries: [] }), /excess 4294967296 out of range/);
  const retainedTopic = 'é'.repeat(40_000); // 80,000 bytes
  assert.throws(
    () => encodeProgress({ next: [0], excess: 0, backlog: 0, backlogBytes: 0, gaps: [[]], entries: [{ pending: { msg: null, qos: 1, retain: true, subIds: undefined, retainedTopic }, packetId: 1, phase: 1 }] }),
    /retained topic length 80000 out of range/,
  );
  // The refused record left nothing behind in the shared scratch buffer.
  const ok = encodeProgress({ next: [3], excess: 1, backlog: 0, backlogBytes: 0, gaps: [[]], entries: [] });
  assert.deepEqual(decodeProgress(ok, 1), { next: [3], excess: 1, backlog: 0, backlogBytes: 0, gaps: [[]], entries: [] });
});
