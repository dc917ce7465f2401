/**
 * The broker's retained store (routing/retained.ts): sets and clears are packed as they come and
 * cross to the native tree once a turn — every read still sees every write made before it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NativeRetainedStore } from '../../src/routing/retained.js';
import { createMessage } from '../../src/wire/message.js';

const msg = (topic: string, payload: string, qos: 0 | 1 | 2 = 0): ReturnType<typeof createMessage> => createMessage(topic, Buffer.from(payload), qos, true, undefined, 'pub');

test('a read in the same turn as the writes sees all of them, in order: set, clear, set again', () => {
  const s = new NativeRetainedStore();
  s.set(msg('a/1', 'one'));
  s.set(msg('a/2', 'two', 1));
  assert.equal(s.get('a/1')?.payload.toString(), 'one');
  s.set(msg('a/1', ''));
  s.set(msg('a/3', 'x'));
  s.set(msg('a/3', ''));
  s.set(msg('a/3', 'three', 2));
  assert.equal(s.get('a/1'), undefined);
  assert.deepEqual(s.topics('a/+').sort(), ['a/2', 'a/3']);
  assert.equal(s.size, 2);
  const three = s.get('a/3');
  assert.equal(three?.payload.toString(), 'three');
  assert.equal(three?.qos, 2);
  assert.equal(three?.publisher, 'pub');
});

test('a cursor reads each page as the tree is then, writes made after it was opened included', () => {
  const s = new NativeRetainedStore();
  for (let i = 0; i < 4; i++) s.set(msg(`c/${i}`, `v${i}`));
  const cur = s.cursor('c/#');
  s.set(msg('c/0', 'new'));
  s.set(msg('c/1', ''));
  const seen = new Map<string, string>();
  while (!cur.done) for (const m of cur.next(1)) seen.set(m.topic, m.payload.toString());
  assert.equal(seen.get('c/0'), 'new', 'the page read after the set has the new message');
  assert.equal(seen.has('c/1'), false, 'cleared before its page was read');
  assert.equal(seen.size, 3);
});

test('the writes of a turn reach the tree without a read, and a topic the tree refuses is counted, not fatal', async () => {
  const s = new NativeRetainedStore();
  s.set(msg('t/ok', '1'));
  s.set(msg('t/#', 'wildcard')); // the callers check topic names; the tree refuses this one
  s.set(msg('t/ok2', '2'));
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(s.refused, 1);
  assert.equal(s.native.size, 2);
  assert.deepEqual(s.topics('#').sort(), ['t/ok', 't/ok2']);
});
