/**
 * session/inflow.ts's rule, with sessions as plain records and the sweep's timer mocked: a
 * message holds its publisher when most of its deliveries to connected sessions found a window's
 * worth queued behind a full window — not when one of several did (a slow subscriber among fast
 * ones), not below the window; and a session that completes less than half of what was queued
 * for it past its window in a sweep period stops counting as full until it keeps up again.
 * (test/integration/fair-inflow.test.ts has the same with real clients.)
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { Inflow, type InflowSession } from '../../src/session/inflow.js';

const W = 16;
const session = (): InflowSession => ({ inflowWatched: false, inflowOver: 0, inflowAcks: 0, inflowProgressing: true });

/** One message routed: offered to each of `queues` (the queue length after it, per session). */
function route(inflow: Inflow, targets: [InflowSession, number][]): boolean {
  inflow.begin();
  for (const [s, queued] of targets) {
    inflow.offer(s);
    inflow.queued(s, queued, W);
  }
  return inflow.shouldHold();
}

beforeEach(() => mock.timers.enable({ apis: ['setInterval'] }));
afterEach(() => mock.timers.reset());

test('one session, its queue at a window: the publisher is held; below the window it is not', () => {
  const inflow = new Inflow();
  const s = session();
  assert.equal(route(inflow, [[s, W - 1]]), false);
  assert.equal(route(inflow, [[s, W]]), true);
  assert.equal(inflow.holds, 1);
  inflow.close();
});

test('most of a message\'s deliveries must find a full queue: one slow subscriber among fast ones holds no one, all of them full do', () => {
  const inflow = new Inflow();
  const slow = session();
  const fast = [session(), session(), session()];
  assert.equal(route(inflow, [[slow, 5 * W], ...fast.map((f): [InflowSession, number] => [f, 0])]), false);
  assert.equal(route(inflow, [[slow, 5 * W], [fast[0] as InflowSession, W], [fast[1] as InflowSession, 0]]), true, 'two of three full');
  assert.equal(route(inflow, [[slow, 5 * W], [fast[1] as InflowSession, 0]]), false, 'one of two (half) is not most');
  inflow.close();
});

test('a session completing less than half of what was queued for it past its window over a sweep stops counting as full, until it keeps up again', () => {
  const inflow = new Inflow();
  const s = session();
  for (let i = 0; i < 10; i++) assert.equal(route(inflow, [[s, W + i]]), true);
  s.inflowAcks += 4; // 4 completed of 10 queued past the window
  mock.timers.tick(1000);
  assert.equal(s.inflowProgressing, false);
  assert.equal(route(inflow, [[s, W + 10]]), false, 'not held for a session that does not keep up');
  s.inflowAcks += 1;
  mock.timers.tick(1000);
  assert.equal(s.inflowProgressing, true, '1 of 1 completed: keeping up again');
  assert.equal(route(inflow, [[s, W]]), true);
  mock.timers.tick(1000); // something was queued past its window: still watched
  assert.equal(s.inflowWatched, true);
  mock.timers.tick(1000); // nothing queued past its window for a whole period: let go
  assert.equal(s.inflowWatched, false);
  inflow.close();
});
