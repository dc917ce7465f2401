/** The framer and the PUBLISH fast path agree with mqtt-packet byte for byte. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generate, type IPublishPacket } from 'mqtt-packet';
import { Decoder, encodeAck, encodePublish, MalformedPacket } from '../../src/wire/codec.js';
import { Framer } from '../../src/wire/framer.js';

function frames(framer: Framer, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) {
    const r = framer.push(c, {
      frame: (f) => {
        out.push(Buffer.from(f));
        return true;
      },
    });
    assert.equal(r, null);
  }
  return out;
}

test('framer reassembles packets split at every byte boundary', () => {
  const a = generate({ cmd: 'publish', topic: 'a/b', payload: Buffer.alloc(300, 7), qos: 1, messageId: 5, dup: false, retain: false });
  const b = generate({ cmd: 'pingreq' });
  const all = Buffer.concat([a, b, a]);
  for (let cut = 1; cut < all.length; cut += 13) {
    const got = frames(new Framer(1 << 20), [all.subarray(0, cut), all.subarray(cut)]);
    assert.deepEqual(got, [a, b, a]);
  }
  const byteByByte = frames(new Framer(1 << 20), [...all].map((x) => Buffer.from([x])));
  assert.deepEqual(byteByByte, [a, b, a]);
});

test('framer hands plain PUBACKs over by packet id, split anywhere, and the rest as frames', () => {
  const ack = (id: number): Buffer => generate({ cmd: 'puback', messageId: id });
  const pub = generate({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 1, messageId: 3, dup: false, retain: false });
  const v5ack = Buffer.from([0x40, 0x03, 0x00, 0x07, 0x10]); // with a reason code: a frame
  const all = Buffer.concat([ack(1), pub, ack(258), v5ack, ack(65535)]);
  for (let cut = 1; cut < all.length; cut++) {
    const f = new Framer(1 << 20);
    const ids: number[] = [];
    const got: Buffer[] = [];
    for (const c of [all.subarray(0, cut), all.subarray(cut)]) {
      const r = f.push(c, {
        frame: (fr) => {
          got.push(Buffer.from(fr));
          return true;
        },
        puback: (id) => {
          ids.push(id);
          return true;
        },
      });
      assert.equal(r, null);
    }
    assert.deepEqual(ids, [1, 258, 65535], `cut ${cut}`);
    assert.deepEqual(got, [pub, v5ack], `cut ${cut}`);
  }
  // Declined (undefined): the PUBACK comes as a frame; false: stop reading.
  const got: Buffer[] = [];
  new Framer(1 << 20).push(all, {
    frame: (fr) => {
      got.push(Buffer.from(fr));
      return true;
    },
    puback: () => undefined,
  });
  assert.equal(got.length, 5);
  let calls = 0;
  new Framer(1 << 20).push(all, { frame: () => assert.fail('no frame after a stop'), puback: () => (calls++, false) });
  assert.equal(calls, 1);
});

test('[MQTT-3.2.2-15] framer refuses a packet above the limit from its fixed header alone', () => {
  const f = new Framer(100);
  // Header announcing 1 MB; no body sent.
  const r = f.push(Buffer.from([0x30, 0x80, 0x80, 0x40]), { frame: () => true });
  assert.deepEqual(r, { kind: 'too-large', size: 1 + 3 + 1048576 });
});

test('[MQTT-1.5.5-1] framer rejects a Remaining Length longer than 4 bytes', () => {
  const r = new Framer(1 << 28).push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), { frame: () => true });
  assert.deepEqual(r, { kind: 'malformed' });
});

for (const version of [4, 5] as const) {
  test(`encodePublish matches mqtt-packet (v${version})`, () => {
    for (const qos of [0, 1, 2] as const) {
      for (const payload of [Buffer.alloc(0), Buffer.from('héllo'), Buffer.alloc(20000, 1)]) {
        const p: IPublishPacket = { cmd: 'publish', topic: 'tøpic/x', payload, qos, dup: qos > 0, retain: true };
        if (qos > 0) p.messageId = 513;
        assert.deepEqual(encodePublish(p.topic, payload, qos, true, qos > 0, 513, version, undefined), generate(p, { protocolVersion: version }));
      }
    }
  });

  test(`Decoder PUBLISH fast path matches mqtt-packet (v${version})`, () => {
    const d = new Decoder();
    d.version = version;
    const p: IPublishPacket = { cmd: 'publish', topic: 'a/b/c', payload: Buffer.from('xyz'), qos: 1, messageId: 9, dup: true, retain: false };
    const got = d.decode(generate(p, { protocolVersion: version }));
    assert.equal(got.cmd, 'publish');
    if (got.cmd !== 'publish') return;
    assert.equal(got.topic, 'a/b/c');
    assert.equal(got.messageId, 9);
    assert.equal(got.dup, true);
    assert.equal(got.qos, 1);
    assert.equal(Buffer.from(got.payload).toString(), 'xyz');
  });
}

test('[MQTT-1.5.4-1] Decoder rejects ill-formed UTF-8 in a PUBLISH topic', () => {
  const d = new Decoder();
  const frame = Buffer.from([0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x61]);
  assert.throws(() => d.decode(frame), MalformedPacket);
});

test('[MQTT-1.5.4-1] [MQTT-1.5.4-2] Decoder checks PUBLISH topics short and long, ASCII or not', () => {
  /** A QoS 0 PUBLISH (3.1.1) of `topic` as raw bytes. */
  const frame = (topic: Buffer): Buffer => Buffer.concat([Buffer.from([0x30, 2 + topic.length + 1, topic.length >> 8, topic.length & 0xff]), topic, Buffer.from('p')]);
  const topicOf = (t: Buffer): string => {
    const got = new Decoder().decode(frame(t));
    assert.equal(got.cmd, 'publish');
    return got.cmd === 'publish' ? got.topic : '';
  };
  const long = 'x/'.repeat(40); // past the byte-by-byte check's 64
  for (const t of ['a/b', 'ü/ñ/t', `${long}ü`, long, 'a'.repeat(64), `${'a'.repeat(63)}é`, '😀/x']) assert.equal(topicOf(Buffer.from(t)), t, t);
  for (const bad of [
    Buffer.from([0x61, 0x00, 0x62]), // U+0000, short
    Buffer.from([0x61, 0xc3, 0x00]), // non-ASCII and U+0000, short
    Buffer.from([0x61, 0xff, 0x62]), // not UTF-8, short
    Buffer.concat([Buffer.from(long), Buffer.from([0x00])]), // U+0000, long
    Buffer.concat([Buffer.from(long), Buffer.from([0xc3, 0x28])]), // not UTF-8, long
  ]) {
    assert.throws(() => new Decoder().decode(frame(bad)), MalformedPacket, bad.toString('hex'));
  }
});

test('[MQTT-3.3.1-4] Decoder rejects QoS 3', () => {
  const d = new Decoder();
  assert.throws(() => d.decode(Buffer.from([0x36, 0x03, 0x00, 0x01, 0x61])), MalformedPacket);
});

test('[MQTT-3.6.1-1] PUBREL is encoded with flags 0010', () => {
  assert.deepEqual([...encodeAck(6, 258, 4)], [0x62, 0x02, 0x01, 0x02]);
  assert.deepEqual([...encodeAck(4, 1, 5, 0x87)], [0x40, 0x03, 0x00, 0x01, 0x87]);
});
