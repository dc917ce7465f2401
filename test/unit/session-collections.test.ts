/** Sessions start with shared empty collections (no hash tables per idle session); the first entry gives a session its own. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SubscriptionTable } from '../../src/routing/subscriptions.js';
import { Session, type Inflight } from '../../src/session/session.js';

test('a session that adds gets its own map; others stay empty; adding to the shared one throws', () => {
  const a = new Session('a');
  const b = new Session('b');
  assert.equal(a.inflight, b.inflight, 'idle sessions share the empty map');
  const entry = { msg: null, qos: 1, phase: 'publish' } as unknown as Inflight;
  a.addInflight(7, entry);
  a.addIncomingQos2(9);
  new SubscriptionTable().put(a, 'x/#', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
  assert.equal(a.inflight.get(7), entry);
  assert.ok(a.incomingQos2.has(9));
  assert.equal(a.subscriptions.size, 1);
  for (const s of [b, new Session('c')]) {
    assert.equal(s.inflight.size, 0);
    assert.equal(s.incomingQos2.size, 0);
    assert.equal(s.subscriptions.size, 0);
    assert.throws(() => s.inflight.set(1, entry), /shared empty/);
    assert.throws(() => s.incomingQos2.add(1), /shared empty/);
    assert.equal(s.queue, a.queue, 'idle sessions share the empty queue');
    assert.throws(() => s.queue.push({} as never), /shared empty/);
    s.queue.clear(); // harmless
    s.inflight.clear(); // harmless
    s.inflight.delete(1);
  }
  assert.equal(b.inflight.size, 0);
  a.enqueue({ msg: null, qos: 1 } as unknown as Parameters<Session['enqueue']>[0]);
  assert.equal(a.queue.length, 1, 'its first enqueue gives a session its own queue');
  assert.equal(b.queue.length, 0);
  assert.notEqual(a.queue, b.queue);
});

test('a session with one subscription holds it without a Map; a second filter moves both into one; removing works either way', () => {
  const table = new SubscriptionTable();
  const s = new Session('one');
  const sub = (filter: string, qos: 0 | 1 | 2 = 1): void => void table.put(s, filter, { qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined });
  sub('a/+');
  assert.ok(!('byFilter' in s.subscriptions), 'one subscription: no Map');
  assert.equal(s.subscriptions.size, 1);
  assert.equal(s.subscriptions.get('a/+')?.qos, 1);
  assert.equal(s.subscriptions.get('b'), undefined);
  assert.ok(s.subscriptions.has('a/+') && !s.subscriptions.has('b'));
  sub('a/+', 2); // the same filter again: replaced
  assert.equal(s.subscriptions.size, 1);
  assert.equal(s.subscriptions.get('a/+')?.qos, 2);
  assert.deepEqual([...s.subscriptions].map(([f, x]) => [f, x.qos]), [['a/+', 2]]);
  assert.deepEqual([...s.subscriptions.keys()], ['a/+']);
  assert.deepEqual([...s.subscriptions.values()].map((x) => x.filter), ['a/+']);
  assert.equal(s.subscriptions.delete('b'), false);
  assert.equal(s.subscriptions.delete('a/+'), true);
  assert.equal(s.subscriptions.size, 0);
  assert.deepEqual([...s.subscriptions], []);
  table.remove('a/+', 0);
  sub('c'); // after a removal: holds one again
  assert.equal(s.subscriptions.get('c')?.filter, 'c');
  sub('d/#', 0); // a second filter: both in a Map
  assert.ok('byFilter' in s.subscriptions);
  assert.deepEqual([...s.subscriptions.keys()].sort(), ['c', 'd/#']);
  assert.equal(s.subscriptions.get('d/#')?.qos, 0);
  s.subscriptions.clear();
  assert.equal(s.subscriptions.size, 0);
});
