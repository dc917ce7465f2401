/**
 * The hook bus (src/hooks/bus.ts): async consumers take events through a bounded queue, off the
 * path that fires them, and count what they queued, handled, failed and dropped.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HookBus } from '../../src/hooks/bus.js';
import { messageSnapshot } from '../../src/hooks/index.js';
import { createMessage } from '../../src/wire/message.js';

const msg = (topic: string): ReturnType<typeof messageSnapshot> => messageSnapshot(createMessage(topic, Buffer.from(topic), 1, false, undefined, 'p'));

test('a blocked consumer never blocks the emitter: its queue fills to maxQueued, the rest is dropped and counted', async () => {
  const bus = new HookBus();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const seen: string[] = [];
  const c = bus.consume(
    'message.publish',
    async (_client, m) => {
      await gate;
      seen.push(m.topic);
    },
    { maxQueued: 5 },
  );
  for (let i = 0; i < 12; i++) bus.emit('message.publish', null, msg(`t/${i}`)); // returns at once every time
  await new Promise((r) => setImmediate(r));
  // All twelve fired before the consumer ran: five were queued, seven dropped; one of the five
  // is running now (taken off the queue), four wait.
  assert.deepEqual({ ...c.counters }, { queued: 5, handled: 0, failed: 0, dropped: 7, waiting: 4 });
  release();
  await c.idle();
  assert.deepEqual(seen, ['t/0', 't/1', 't/2', 't/3', 't/4'], 'in the order they fired');
  assert.deepEqual(bus.consumers['message.publish'], { queued: 5, handled: 5, failed: 0, dropped: 7, waiting: 0 });
});

test('a failing consumer is counted and goes on; closing it stops new events but finishes the queued ones', async () => {
  const bus = new HookBus();
  const handled: string[] = [];
  const c = bus.consume(
    'message.acked',
    (clientId) => {
      if (clientId === 'bad') throw new Error('backend down');
      handled.push(clientId);
    },
    { name: 'rules', concurrency: 2 },
  );
  bus.emit('message.acked', 'a', msg('x'));
  bus.emit('message.acked', 'bad', msg('x'));
  bus.emit('message.acked', 'b', msg('x'));
  c.close();
  bus.emit('message.acked', 'after-close', msg('x'));
  await c.idle();
  assert.deepEqual(handled.sort(), ['a', 'b']);
  assert.deepEqual(bus.consumers.rules, { queued: 3, handled: 2, failed: 1, dropped: 0, waiting: 0 });
  assert.equal(bus.listenerErrors['message.acked (consumer rules)'], 1);
  assert.equal(bus.listenerCount('message.acked'), 0, 'closed: detached from the bus');
});

test('a second consumer of the same event gets its own name and counters', () => {
  const bus = new HookBus();
  const a = bus.consume('client.connected', () => undefined);
  const b = bus.consume('client.connected', () => undefined);
  assert.equal(a.name, 'client.connected');
  assert.equal(b.name, 'client.connected#2');
  assert.deepEqual(Object.keys(bus.consumers), ['client.connected', 'client.connected#2']);
});

test('a message snapshot is plain, frozen data without the wire-encoding cache', () => {
  const m = createMessage('s/t', Buffer.from('x'), 2, true, { contentType: 'text/plain' }, 'pub');
  m.encKey = 44;
  m.enc = Buffer.from('cached');
  m.encMore = new Map([[40, Buffer.from('cached')]]);
  const s = messageSnapshot(m);
  assert.ok(Object.isFrozen(s));
  for (const k of ['encKey', 'enc', 'encMore']) assert.equal(k in s, false);
  assert.deepEqual(Object.keys(s).sort(), ['expiresAt', 'payload', 'properties', 'publisher', 'qos', 'receivedAt', 'retain', 'topic']);
  assert.equal(s.topic, 's/t');
});

test('the delivery taps are set exactly while someone listens (listener, once, consumer)', () => {
  const bus = new HookBus();
  const taps: Parameters<HookBus['tapInto']>[0] = { delivered: null, acked: null };
  bus.tapInto(taps);
  assert.equal(taps.delivered, null);
  const seen: string[] = [];
  const l = (clientId: string): void => void seen.push(clientId);
  bus.on('message.delivered', l);
  assert.notEqual(taps.delivered, null);
  assert.equal(taps.acked, null);
  const tell = taps.delivered as unknown as NonNullable<(typeof taps)['delivered']>;
  tell('c1', createMessage('t', Buffer.from('x'), 1, false, undefined, 'p'), 1);
  assert.deepEqual(seen, ['c1']);
  bus.off('message.delivered', l);
  assert.equal(taps.delivered, null);
  bus.once('message.acked', () => undefined);
  assert.notEqual(taps.acked, null);
  bus.emit('message.acked', 'c', msg('t'));
  assert.equal(taps.acked, null, 'a once listener gone after its call');
  const c = bus.consume('message.acked', () => undefined);
  assert.notEqual(taps.acked, null);
  c.close();
  assert.equal(taps.acked, null);
});

test('a consumer\'s accept() is asked where the event fires: refused events take no queue place and are not counted', async () => {
  const bus = new HookBus();
  const seen: string[] = [];
  const c = bus.consume('message.publish', (_client, m) => void seen.push(m.topic), { maxQueued: 2, accept: (_client, m) => (m as { topic: string }).topic.startsWith('keep/') });
  for (const t of ['$SYS/x', 'keep/1', 'other', 'keep/2', 'other/2']) bus.emit('message.publish', null, msg(t));
  await c.idle();
  assert.deepEqual(seen, ['keep/1', 'keep/2']);
  assert.deepEqual({ ...c.counters }, { queued: 2, handled: 2, failed: 0, dropped: 0, waiting: 0 });
});

test('a batch consumer gets every event waiting in one call, never more running than its concurrency; each event counted by its own outcome', async () => {
  const bus = new HookBus();
  const calls: string[][] = [];
  const gates: (() => void)[] = [];
  let running = 0;
  let most = 0;
  const c = bus.consumeBatches(
    'message.publish',
    async (batch) => {
      calls.push(batch.map(([, m]) => m.topic));
      running += batch.length;
      most = Math.max(most, running);
      await new Promise<void>((r) => gates.push(r));
      running -= batch.length;
      return batch.map(([, m]) => (m.topic.endsWith('bad') ? new Error(`cannot write ${m.topic}`) : undefined));
    },
    { name: 'batches', concurrency: 4, maxQueued: 6 },
  );
  for (const t of ['a', 'b', 'c-bad', 'd', 'e', 'f']) bus.emit('message.publish', null, msg(t)); // one turn: one call of four
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls, [['a', 'b', 'c-bad', 'd']]);
  assert.deepEqual({ ...c.counters }, { queued: 6, handled: 0, failed: 0, dropped: 0, waiting: 2 });
  for (const t of ['g', 'h', 'i-bad', 'j', 'k']) bus.emit('message.publish', null, msg(t)); // 2 + 5 waiting: one dropped
  assert.equal(c.counters.dropped, 1);
  gates.shift()?.();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls[1], ['e', 'f', 'g', 'h'], 'the next call takes what waits, up to the four places freed');
  for (let i = 0; i < 10 && (gates.length > 0 || c.counters.waiting > 0); i++) {
    gates.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  await c.idle();
  assert.deepEqual(calls.flat(), ['a', 'b', 'c-bad', 'd', 'e', 'f', 'g', 'h', 'i-bad', 'j'], 'in the order they fired');
  assert.ok(most <= 4, `at most 4 events running at once (${most})`);
  assert.deepEqual({ ...c.counters }, { queued: 10, handled: 8, failed: 2, dropped: 1, waiting: 0 });
  assert.equal(bus.listenerErrors['message.publish (consumer batches)'], 2);

  // A handler that rejects fails its whole batch.
  const d = bus.consumeBatches('message.acked', () => Promise.reject(new Error('down')), { name: 'down', concurrency: 10 });
  for (const id of ['x', 'y', 'z']) bus.emit('message.acked', id, msg('t'));
  await d.idle();
  assert.deepEqual({ ...d.counters }, { queued: 3, handled: 0, failed: 3, dropped: 0, waiting: 0 });
});
