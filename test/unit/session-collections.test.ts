/** Sessions start with shared empty collections (no hash tables per idle session); the first entry gives a session its own. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Session, type Inflight, type Subscription } from '../../src/session/session.js';

test('a session that adds gets its own map; others stay empty; adding to the shared one throws', () => {
  const a = new Session('a');
  const b = new Session('b');
  assert.equal(a.inflight, b.inflight, 'idle sessions share the empty map');
  const entry = { msg: null, qos: 1, phase: 'publish' } as unknown as Inflight;
  a.addInflight(7, entry);
  a.addIncomingQos2(9);
  a.addSubscription('x/#', { filter: 'x/#', trieId: 1, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined } as Subscription);
  assert.equal(a.inflight.get(7), entry);
  assert.ok(a.incomingQos2.has(9));
  assert.equal(a.subscriptions.size, 1);
  for (const s of [b, new Session('c')]) {
    assert.equal(s.inflight.size, 0);
    assert.equal(s.incomingQos2.size, 0);
    assert.equal(s.subscriptions.size, 0);
    assert.throws(() => s.inflight.set(1, entry), /shared empty/);
    assert.throws(() => s.incomingQos2.add(1), /shared empty/);
    assert.throws(() => s.subscriptions.set('y', {} as Subscription), /shared empty/);
    s.inflight.clear(); // harmless
    s.inflight.delete(1);
  }
  assert.equal(b.inflight.size, 0);
});
