/**
 * The packed append path the broker uses (DurableStore.appendPacked + packMessages): messages
 * come back by position exactly as written, positions are in input order, and a malformed
 * buffer is refused with ERR_INVALID_ARGUMENT without writing anything.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DurableStore, LAYOUTS, Packer, packMessages, type PackedMessage } from '../../src/native.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('strata-packed-');
let store: DurableStore;
before(async () => {
  store = await DurableStore.open(tmp.dir, { nShards: 2 });
});
after(async () => {
  await store.close();
  tmp.remove();
});

test('packed messages are stored as given and come back by position, in input order', async () => {
  const msgs: PackedMessage[] = [
    { publisher: 'p-a', topic: 'a/b', qos: 1, retain: false, properties: null, payload: Buffer.from('one') },
    { publisher: 'p-b', topic: 'ü/ñ', qos: 2, retain: true, properties: Buffer.from('{"contentType":"x"}'), payload: Buffer.alloc(0) },
    { publisher: '', topic: 'c', qos: 0, retain: false, properties: null, payload: Buffer.alloc(70000, 7) },
    // ASCII up to the last character (written byte by byte, then again as UTF-8), a surrogate
    // pair, and strings past the byte-by-byte writer's length.
    { publisher: 'device-42-é', topic: 'plant/line/4/temp°', qos: 1, retain: false, properties: null, payload: Buffer.from('x') },
    { publisher: 'p-😀', topic: 'a/😀/b', qos: 1, retain: false, properties: null, payload: Buffer.from('y') },
    { publisher: 'q'.repeat(300), topic: `${'t/'.repeat(200)}z`, qos: 0, retain: true, properties: null, payload: Buffer.from('z') },
    { publisher: `${'r'.repeat(200)}ñ`, topic: `${'ü'.repeat(129)}`, qos: 2, retain: false, properties: null, payload: Buffer.alloc(0) },
  ];
  const pos = await store.appendPacked(packMessages(msgs), msgs.length);
  assert.equal(pos.length, 2 * msgs.length);
  const positions = msgs.map((_m, i) => ({ shard: pos[2 * i] as number, offset: pos[2 * i + 1] as number }));
  const back = store.readAt(positions);
  back.forEach((m, i) => {
    const want = msgs[i] as PackedMessage;
    assert.ok(m, `message ${i} found`);
    assert.equal(m.publisher, want.publisher);
    assert.equal(m.topic, want.topic);
    assert.equal(m.qos, want.qos);
    assert.equal(m.retain, want.retain);
    assert.deepEqual(Buffer.from(m.properties), want.properties ?? Buffer.alloc(0));
    assert.deepEqual(Buffer.from(m.payload), want.payload);
  });
});

test('a publisher or topic repeated from the previous message is packed once and read back whole, batch after batch', async () => {
  // Runs, alternations, an equal string that is another object, a repeat across the retain
  // flag: each message read back as given. One Packer for two batches: the second batch's
  // first message repeats the first batch's last, and must be packed whole (a repeat flag on a
  // buffer's first message is refused).
  const same = ['dev', '-1'].join('');
  const msgs: PackedMessage[] = [
    { publisher: 'dev-1', topic: 'a/b', qos: 1, retain: false, properties: null, payload: Buffer.from('1') },
    { publisher: 'dev-1', topic: 'a/b', qos: 1, retain: true, properties: null, payload: Buffer.from('2') },
    { publisher: same, topic: 'a/c', qos: 0, retain: false, properties: null, payload: Buffer.from('3') },
    { publisher: 'dev-2', topic: 'a/c', qos: 2, retain: false, properties: Buffer.from([1]), payload: Buffer.from('4') },
    { publisher: 'dev-1', topic: 'a/b', qos: 1, retain: false, properties: null, payload: Buffer.from('5') },
    { publisher: 'dev-1', topic: 'a/b', qos: 1, retain: false, properties: null, payload: Buffer.from('6') },
  ];
  const p = new Packer(64);
  const batches = [msgs.slice(0, 4), msgs.slice(4)];
  const back: PackedMessage[] = [];
  for (const batch of batches) {
    for (const m of batch) p.add(m.publisher, m.topic, m.qos, m.retain, m.properties, m.payload, 0);
    const bytes = Buffer.from(p.bytes());
    p.reset();
    const L = LAYOUTS.packed;
    const repeated = L.flagSamePublisher | L.flagSameTopic;
    assert.equal((bytes[L.flags] as number) & repeated, 0, "a buffer's first message is packed whole");
    const pos = await store.appendPacked(bytes, batch.length);
    const read = store.readAt(batch.map((_m, i) => ({ shard: pos[2 * i] as number, offset: pos[2 * i + 1] as number })));
    for (const m of read) {
      assert.ok(m);
      back.push({ publisher: m.publisher, topic: m.topic, qos: m.qos, retain: m.retain, properties: m.properties.length > 0 ? Buffer.from(m.properties) : null, payload: Buffer.from(m.payload) });
    }
  }
  assert.deepEqual(back, msgs);
  // A repeat leaves the publisher's and topic's bytes out: a header and the payload.
  assert.equal(packMessages(msgs.slice(4, 6)).length - packMessages(msgs.slice(4, 5)).length, LAYOUTS.packed.header + 1);
});

test('a malformed packed buffer is refused with ERR_INVALID_ARGUMENT and writes nothing', async () => {
  const before = store.stats().records;
  const good = packMessages([{ publisher: 'p', topic: 't', qos: 1, retain: false, properties: null, payload: Buffer.from('x') }]);
  const bad = Buffer.from(good);
  bad.writeUInt32LE(1_000_000, 8); // payload length past the end
  const notUtf8 = Buffer.from(good);
  notUtf8[16 + 1] = 0xff; // the topic byte
  // A first message claiming the previous one's publisher or topic: there is none.
  const repeats = [LAYOUTS.packed.flagSamePublisher, LAYOUTS.packed.flagSameTopic].map((flag) => {
    const b = Buffer.from(good);
    b[LAYOUTS.packed.flags] = (b[LAYOUTS.packed.flags] as number) | flag;
    return b;
  });
  for (const [buf, count] of [
    [good.subarray(0, good.length - 1), 1],
    [bad, 1],
    [good, 2],
    [Buffer.concat([good, Buffer.from([0])]), 1],
    [notUtf8, 1],
    [repeats[0] as Buffer, 1],
    [repeats[1] as Buffer, 1],
  ] as const) {
    await assert.rejects(store.appendPacked(buf, count), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_INVALID_ARGUMENT', e.message);
      return true;
    });
  }
  assert.equal(store.stats().records, before);
});

test('a QoS 2 packet id appended with a message is found again by findInbound, in its shard only', async () => {
  const shard = store.shardOf('pub-q2');
  assert.equal(shard, store.shardOf('pub-q2'));
  const from = store.shardEnd(shard);
  const msgs: PackedMessage[] = [
    { publisher: 'pub-q2', topic: 'q2/a', qos: 2, retain: false, properties: null, payload: Buffer.from('one'), inboundId: 1 },
    { publisher: 'pub-q2', topic: 'q2/a', qos: 1, retain: false, properties: null, payload: Buffer.from('two') },
    { publisher: 'pub-q2', topic: 'q2/a', qos: 2, retain: false, properties: null, payload: Buffer.from('three'), inboundId: 65535 },
  ];
  const pos = await store.appendPacked(packMessages(msgs), msgs.length);
  assert.equal(store.findInbound(shard, from, 'pub-q2', 1), pos[1]);
  assert.equal(store.findInbound(shard, from, 'pub-q2', 65535), pos[5]);
  assert.equal(store.findInbound(shard, (pos[1] as number) + 1, 'pub-q2', 1), null, 'not before from');
  assert.equal(store.findInbound(shard, from, 'pub-q2', 2), null, 'another id');
  assert.equal(store.findInbound(shard, from, 'other', 1), null, 'another publisher');
  // The id is the log's own: readers see the message as it was published.
  const [back] = store.readAt([{ shard, offset: pos[1] as number }]);
  assert.equal(back?.qos, 2);
  assert.deepEqual(Buffer.from(back?.payload ?? []), Buffer.from('one'));
  assert.throws(() => store.findInbound(shard, from, 'pub-q2', 0), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT');
});
