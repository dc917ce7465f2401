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
  const { id: sub } = t.put(s, 'dev/+/state', opts);
  // Distinct topics: several windows of misses (filling stops).
  for (let i = 0; i < 20_000; i++) assert.deepEqual([...t.match(`dev/${i}/state`)], [sub]);
  for (let i = 0; i < 5_000; i++) assert.equal(t.match(`other/${i}`).length, 0);
  // A change of the trie is seen at once, whatever the mode.
  const { id: all } = t.put(s, 'other/#', opts);
  assert.deepEqual([...t.match('other/7')], [all]);
  // Repeated topics: answers stay right as filling comes back.
  for (let round = 0; round < 50; round++) for (let i = 0; i < 200; i++) assert.deepEqual([...t.match(`dev/${i}/state`)], [sub]);
  t.remove('dev/+/state', sub);
  s.subscriptions.delete('dev/+/state');
  for (let i = 0; i < 200; i++) assert.equal(t.match(`dev/${i}/state`).length, 0, 'removed: not answered from the cache');
});

test('options live by trie id: replacing a filter keeps its id and takes the new options; a freed id taken again carries none of the old ones', () => {
  const t = new SubscriptionTable();
  const a = new Session('a');
  const b = new Session('b');
  const denied = (topic: string): boolean => topic === 'x/secret';
  const { id } = t.put(a, 'x/+', { qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7, readDenied: denied });
  assert.deepEqual([t.session(id), t.qos(id), t.noLocal(id), t.retainAsPublished(id), t.retainHandling(id), t.subscriptionId(id), t.readDenied(id), t.shared(id)], [a, 2, true, true, 2, 7, denied, false]);
  const view = a.subscriptions.get('x/+');
  assert.deepEqual([view?.filter, view?.trieId, view?.qos, view?.subscriptionId], ['x/+', id, 2, 7]);
  const again = t.put(a, 'x/+', { qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
  assert.deepEqual([again.id, again.existed, t.qos(id), t.noLocal(id), t.subscriptionId(id), t.readDenied(id)], [id, true, 0, false, undefined, undefined]);
  // The ACL applied again through a view sets the rule in the table.
  const v = a.subscriptions.get('x/+');
  if (v) v.readDenied = denied;
  assert.equal(t.readDenied(id), denied);
  t.remove('x/+', id);
  a.subscriptions.delete('x/+');
  assert.equal(t.session(id), undefined);
  const reused = t.put(b, 'y/#', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
  assert.equal(reused.id, id, 'the freed id is taken again');
  assert.deepEqual([t.session(id), t.qos(id), t.noLocal(id), t.subscriptionId(id), t.readDenied(id), t.start(id)], [b, 1, false, undefined, undefined, undefined]);
  assert.deepEqual([...t.match('y/1')], [id]);
  assert.equal(t.match('x/1').length, 0);
});

test('a shared subscription\'s online member is found by trie id, round-robin among the connected', () => {
  const t = new SubscriptionTable();
  const members = ['m0', 'm1', 'm2'].map((c) => new Session(c));
  const ids = members.map((s) => t.put(s, '$share/g/t/#', opts).id);
  assert.ok(ids.every((id) => t.shared(id)));
  // None connected: the trie's pick keeps it.
  assert.equal(t.onlineMember(ids[0] as number), ids[0]);
  (members[1] as { outlet: unknown }).outlet = {};
  (members[2] as { outlet: unknown }).outlet = {};
  const picked = [0, 1, 2, 3].map(() => t.onlineMember(ids[0] as number));
  assert.deepEqual(picked, [ids[1], ids[2], ids[1], ids[2]]);
  t.remove('$share/g/t/#', ids[1] as number);
  assert.deepEqual([0, 1].map(() => t.onlineMember(ids[0] as number)), [ids[2], ids[2]]);
  // What a match delivers to: an away member's group picks a connected one; a connected member, or a plain subscription, itself.
  assert.equal(t.deliversTo(ids[0] as number), ids[2]);
  assert.equal(t.deliversTo(ids[2] as number), ids[2]);
  const plain = t.put(members[0] as Session, 't/#', opts).id;
  assert.equal(t.deliversTo(plain), plain, 'not shared: itself, its client away or not');
});
