/**
 * The per-message encoding cache (wire/message.ts encodeDelivery): one template inline, others
 * in a Map, none for a message delivered once. Every delivery's bytes must equal a fresh
 * encoding of it, whatever order the (version, QoS, retain) keys come in, packet ids patched
 * into copies (never into a cached template), and a seeded inbound frame used for QoS 0.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodePublish, type ProtocolVersion, type QoS } from '../../src/wire/codec.js';
import { createMessage, encodeDelivery, seedEncoding } from '../../src/wire/message.js';

type Delivery = [ProtocolVersion, QoS, boolean, number];
const fresh = (topic: string, payload: Buffer, [v, q, r, id]: Delivery, dup = false): Buffer => encodePublish(topic, payload, q, r, dup, id, v, undefined);

test('every delivery equals a fresh encoding, in any order of keys, packet ids only in copies', () => {
  const orders: Delivery[][] = [
    [[4, 1, false, 7], [4, 1, false, 8], [5, 1, false, 9], [4, 0, false, 0], [3, 0, false, 0], [4, 1, true, 10], [5, 2, true, 11], [4, 1, false, 12]],
    [[5, 0, false, 0], [3, 1, false, 1], [4, 1, false, 2], [5, 0, false, 0], [5, 1, false, 3], [3, 2, false, 4]],
  ];
  for (const order of orders) {
    const payload = Buffer.from('payload');
    const msg = createMessage('a/b', payload, 2, false, undefined, 'pub');
    for (const d of order) assert.deepEqual(encodeDelivery(msg, d[0], d[1], d[2], false, d[3], undefined, Date.now()), fresh('a/b', payload, d), `delivery ${d.join(',')}`);
    // DUP set on a copy only.
    const dupped = encodeDelivery(msg, 4, 1, false, true, 5, undefined, Date.now());
    assert.deepEqual(dupped, fresh('a/b', payload, [4, 1, false, 5], true));
    assert.deepEqual(encodeDelivery(msg, 4, 1, false, false, 6, undefined, Date.now()), fresh('a/b', payload, [4, 1, false, 6]));
  }
});

test('a seeded frame is what QoS 0 deliveries of its version family get; 3.1 and 3.1.1 share it', () => {
  const payload = Buffer.from('x');
  for (const [seedVersion, others] of [
    [4, [3, 4]],
    [3, [3, 4]],
    [5, [5]],
  ] as const) {
    const msg = createMessage('s/t', payload, 0, false, undefined, 'pub');
    const frame = fresh('s/t', payload, [seedVersion, 0, false, 0]);
    seedEncoding(msg, seedVersion, frame);
    for (const v of others) assert.equal(encodeDelivery(msg, v, 0, false, false, 0, undefined, Date.now()), frame, `v${v} QoS 0 uses the seed`);
    assert.deepEqual(encodeDelivery(msg, seedVersion, 1, false, false, 3, undefined, Date.now()), fresh('s/t', payload, [seedVersion, 1, false, 3]));
    const other = seedVersion === 5 ? 4 : 5;
    assert.deepEqual(encodeDelivery(msg, other, 0, false, false, 0, undefined, Date.now()), fresh('s/t', payload, [other, 0, false, 0]));
  }
});

test('a message marked for one delivery is encoded each time and caches nothing', () => {
  const msg = createMessage('o/t', Buffer.from('y'), 1, false, undefined, 'pub');
  msg.encKey = -1;
  const a = encodeDelivery(msg, 4, 1, false, false, 1, undefined, Date.now());
  assert.deepEqual(a, fresh('o/t', msg.payload, [4, 1, false, 1]));
  assert.equal(msg.enc, null);
  assert.equal(msg.encMore, null);
});
