/** TopicMemo: answers per topic name bounded by entries and by the characters of the names kept. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TopicMemo } from '../../src/wire/topic.js';

test('full by entries, it empties and starts again; a name set twice is counted once', () => {
  const m = new TopicMemo<number>(3, 1000);
  m.set('a', 1);
  m.set('b', 2);
  m.set('b', 3);
  assert.equal(m.size, 2);
  assert.equal(m.keptChars, 2);
  m.set('c', 4);
  assert.deepEqual([m.get('a'), m.get('b'), m.get('c')], [1, 3, 4]);
  m.set('d', 5);
  assert.deepEqual([m.size, m.get('a'), m.get('d'), m.keptChars], [1, undefined, 5, 1]);
});

test('full by characters, it empties: long distinct names never hold more than the bound', () => {
  const m = new TopicMemo<boolean>(1_000_000, 100_000);
  for (let i = 0; i < 1000; i++) {
    m.set(`${i}/${'x'.repeat(30_000)}`, true);
    assert.ok(m.keptChars <= 100_000, `${m.keptChars} characters kept after ${i + 1} names`);
  }
  assert.ok(m.size <= 3);
  // A name longer than the bound is answered each time, never kept (nor does it empty the memo).
  m.clear();
  m.set('short', true);
  m.set('y'.repeat(100_001), true);
  assert.deepEqual([m.size, m.get('short'), m.get('y'.repeat(100_001))], [1, true, undefined]);
});
