/** The subscription table's fast paths answer what the core would: topic names checked in JS, the route cache in every mode. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateTopicName } from '../../src/native.js';
import { SubscriptionTable } from '../../src/routing/subscriptions.js';
import { Session } from '../../src/session/session.js';

const opts = { qos: 1 as const, noLocal: false, retainAsPublished: false, retainHandling: 0 as const, subscriptionId: undefined };

test('checkTopicName agrees with the core on names valid and invalid, short and long', () => {
  const t = new SubscriptionTable();
  const names = ['a', 'a/b', '/', '//', '$SYS/x', 'ünï/€/😀', '', 'a/+', '#', 'a/#/b', 'x\u0000y', 'a+b', 'x'.repeat(21845), 'x'.repeat(21846), '€'.repeat(21845), '€'.repeat(21846), 'x'.repeat(65535), 'x'.repeat(65536)];
  for (const n of names) assert.equal(t.checkTopicName(n), validateTopicName(n), `${JSON.stringify(n.slice(0, 20))} (${n.length} chars)`);
});

test('the route cache answers right while distinct topics turn its filling off and repeated ones turn it on', () => {
  const t = new SubscriptionTable();
  const s = new Session('c');
  const { sub } = t.put(s, 'dev/+/state', opts);
  // Distinct topics: several windows of misses (filling stops).
  for (let i = 0; i < 20_000; i++) assert.deepEqual([...t.match(`dev/${i}/state`)], [sub.trieId]);
  for (let i = 0; i < 5_000; i++) assert.equal(t.match(`other/${i}`).length, 0);
  // A change of the trie is seen at once, whatever the mode.
  const { sub: all } = t.put(s, 'other/#', opts);
  assert.deepEqual([...t.match('other/7')], [all.trieId]);
  // Repeated topics: answers stay right as filling comes back.
  for (let round = 0; round < 50; round++) for (let i = 0; i < 200; i++) assert.deepEqual([...t.match(`dev/${i}/state`)], [sub.trieId]);
  t.remove(sub);
  s.subscriptions.delete('dev/+/state');
  for (let i = 0; i < 200; i++) assert.equal(t.match(`dev/${i}/state`).length, 0, 'removed: not answered from the cache');
});
