/** The timer wheel behind keep-alive, connect timeouts and session expiry: on time, never early, cancel exact. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TimerWheel, type WheelEntry } from '../../src/timers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Probe implements WheelEntry {
  wheelAt = 0;
  wheelIdx = 0;
  fired: number[] = [];
  constructor(
    readonly w: TimerWheel,
    public due: number,
  ) {}
  onWheel(now: number): void {
    if (now < this.due) {
      this.w.schedule(this, this.due);
      return;
    }
    this.fired.push(now);
  }
}

test('entries fire at or after their time, at most about one slot late; cancelled ones never', async () => {
  const w = new TimerWheel(10, 8); // a ring of 80 ms
  const t0 = Date.now();
  const probes = Array.from({ length: 200 }, (_, i) => new Probe(w, t0 + 5 + ((i * 7) % 60)));
  for (const p of probes) w.schedule(p, p.due);
  // Cancel every third one: swap-remove must keep the others where they are.
  probes.forEach((p, i) => i % 3 === 0 && w.cancel(p));
  assert.equal(w.size, probes.length - Math.ceil(probes.length / 3));
  await sleep(150);
  probes.forEach((p, i) => {
    if (i % 3 === 0) assert.deepEqual(p.fired, [], `cancelled probe ${i} fired`);
    else {
      assert.equal(p.fired.length, 1, `probe ${i} fired ${p.fired.length} times`);
      assert.ok((p.fired[0] as number) >= p.due, `probe ${i} early by ${p.due - (p.fired[0] as number)} ms`);
      assert.ok((p.fired[0] as number) - p.due < 60, `probe ${i} late by ${(p.fired[0] as number) - p.due} ms`);
    }
  });
  assert.equal(w.size, 0);
});

test('a time beyond the ring waits in its last slot and is scheduled again from there', async () => {
  const w = new TimerWheel(10, 4); // a ring of 40 ms
  const p = new Probe(w, Date.now() + 120);
  w.schedule(p, p.due);
  await sleep(60);
  assert.equal(p.fired.length, 0);
  assert.equal(w.size, 1, 'rescheduled, not dropped');
  await sleep(120);
  assert.equal(p.fired.length, 1);
  assert.ok((p.fired.at(0) ?? 0) >= p.due);
});

test('scheduling again moves an entry (earlier or later); one entry is never in two slots', async () => {
  const w = new TimerWheel(10, 16);
  const t0 = Date.now();
  const a = new Probe(w, t0 + 100);
  const b = new Probe(w, t0 + 20);
  w.schedule(a, a.due);
  w.schedule(b, b.due);
  a.due = t0 + 30;
  w.schedule(a, a.due); // earlier
  b.due = t0 + 90;
  w.schedule(b, b.due); // later
  assert.equal(w.size, 2);
  await sleep(60);
  assert.equal(a.fired.length, 1);
  assert.equal(b.fired.length, 0);
  await sleep(80);
  assert.equal(b.fired.length, 1);
  assert.equal(a.fired.length, 1);
});

test('an entry that schedules itself (or others) while the wheel visits lands in a later slot', async () => {
  const w = new TimerWheel(10, 8);
  let visits = 0;
  const e: WheelEntry = {
    wheelAt: 0,
    wheelIdx: 0,
    onWheel(now) {
      visits++;
      if (visits < 5) w.schedule(e, now); // "now" again: must not spin in the same slot
    },
  };
  w.schedule(e, Date.now());
  await sleep(150);
  assert.equal(visits, 5);
  assert.equal(w.size, 0);
});
