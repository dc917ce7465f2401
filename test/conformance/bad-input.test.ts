/**
 * Bad input (SPEC A7, issue 2 item 6): malformed packets, wrong order, invalid topics and
 * filters, oversized packets, invalid UTF-8, packet-id misuse. Each gets the spec's reason
 * code or a disconnect, is reported once (`client.error`), never crashes the broker, and
 * leaves other clients alone: one healthy subscriber stays connected for the whole file and
 * must still receive a fresh message after every test (afterEach) and at the end.
 *
 * Cases run over real TCP sockets and over in-memory duplex pairs wired into the broker.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { IConnackPacket, IDisconnectPacket, IPubcompPacket, IPublishPacket, IPubrelPacket, ISubackPacket, Packet } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { client, collect, quiet, RawClient, sleep, startBroker, type TestBroker } from '../helpers.js';

const MAX_PACKET = 1024;
const MAX_ALIAS = 10;

let tb: TestBroker;
let healthySub: MqttClient;
let healthyPub: MqttClient;
/** Sees everything under bad/# — nothing a misbehaving client sends may arrive here. */
let watcher: MqttClient;
const errors: Error[] = [];
let pings = 0;

before(async () => {
  tb = await startBroker({
    config: { 'mqtt.max_packet_size': MAX_PACKET, 'mqtt.connect_timeout': 1, 'mqtt.max_topic_alias': MAX_ALIAS },
  });
  tb.broker.on('client.error', (_client, err) => errors.push(err));
  healthySub = await client(tb, { clientId: 'healthy-sub', protocolVersion: 5 });
  await healthySub.subscribeAsync('healthy/#', { qos: 1 });
  healthyPub = await client(tb, { clientId: 'healthy-pub', protocolVersion: 4 });
  watcher = await client(tb, { clientId: 'watcher', protocolVersion: 4 });
  await watcher.subscribeAsync('bad/#', { qos: 0 });
});

after(async () => {
  await Promise.all([healthySub, healthyPub, watcher].map((c) => c?.endAsync().catch(() => undefined)));
  await tb?.close();
});

/** The healthy pair still works: a fresh QoS 1 message goes through with its payload. */
async function assertHealthy(): Promise<void> {
  const payload = `ping-${++pings}`;
  const got = collect(healthySub, 1, 3000);
  await healthyPub.publishAsync('healthy/ping', payload, { qos: 1 });
  const [m] = await got;
  assert.equal(m?.topic, 'healthy/ping');
  assert.equal(m?.payload.toString(), payload);
  assert.equal(healthySub.connected, true);
  assert.equal(healthyPub.connected, true);
}

afterEach(assertHealthy);

// ---- raw packet building --------------------------------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A whole packet: type/flags byte, Remaining Length, body. */
function frame(first: number, ...body: (Buffer | number[])[]): Buffer {
  const b = Buffer.concat(body.map((x) => Buffer.from(x)));
  return Buffer.concat([Buffer.from([first, ...varint(b.length)]), b]);
}

/** A length-prefixed UTF-8 string field (bytes given as is, so they may be ill-formed). */
function str(s: string | Buffer | number[]): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

interface RawPublish {
  topic: string | Buffer | number[];
  qos?: number;
  id?: number;
  payload?: Buffer | string;
  /** v5: property bytes (without their length); undefined = v3.1.1 layout. */
  props?: number[] | Buffer;
  retain?: boolean;
}

function rawPublish(p: RawPublish): Buffer {
  const qos = p.qos ?? 0;
  const parts: (Buffer | number[])[] = [str(p.topic)];
  if (qos > 0) parts.push(u16(p.id ?? 1));
  if (p.props) parts.push(varint(p.props.length), Buffer.from(p.props));
  parts.push(Buffer.from(p.payload ?? 'x'));
  return frame(0x30 | (qos << 1) | (p.retain ? 1 : 0), ...parts);
}

/** CONNECT with a given protocol name and level (everything else minimal and valid). */
function rawConnect(name: string, level: number, clientId: string | number[] = 'raw', flags = 0x02): Buffer {
  const props = level === 5 ? [0] : [];
  return frame(0x10, str(name), [level, flags, 0, 60], props, str(clientId));
}

// ---- clients and expectations ----------------------------------------------------------

type Transport = 'tcp' | 'memory';
const TRANSPORTS: Transport[] = ['tcp', 'memory'];

async function open(t: Transport, version: 3 | 4 | 5 = 4): Promise<RawClient> {
  return t === 'tcp' ? RawClient.tcp(tb.port, version) : RawClient.memory(tb.broker, version);
}

let ids = 0;
async function connected(t: Transport, version: 3 | 4 | 5, extra: Record<string, unknown> = {}): Promise<RawClient> {
  const c = await open(t, version);
  const ack = (await c.connect(`bad-${t}-${version}-${++ids}`, extra)) as IConnackPacket | null;
  assert.equal(ack?.cmd, 'connack');
  assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
  return c;
}

/**
 * The broker closes the connection; on v5 (after CONNACK) it first sends exactly one
 * DISCONNECT with `code`; otherwise it sends nothing at all. The violation is reported once.
 */
async function expectClosed(c: RawClient, code: number | null, errorsBefore: number | null = null): Promise<void> {
  const seen = await c.waitClosed(3000);
  if (code === null) {
    assert.deepEqual(
      seen.map((p) => p.cmd),
      [],
      'no packet expected before the close',
    );
  } else {
    assert.deepEqual(
      seen.map((p) => p.cmd),
      ['disconnect'],
    );
    assert.equal((seen[0] as IDisconnectPacket).reasonCode, code, `DISCONNECT reason 0x${code.toString(16)} expected`);
  }
  if (errorsBefore !== null) assert.equal(errors.length - errorsBefore, 1, 'the violation is reported exactly once');
}

/** The connection is still open and answers PINGREQ. */
async function expectAlive(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  const p = await c.next('pingresp', 2000);
  assert.equal(p?.cmd, 'pingresp');
  assert.equal(c.closed, false);
}

/** Open, connect, send `bytes`, expect the close (with DISCONNECT `code5` on v5). */
async function violation(t: Transport, version: 4 | 5, bytes: Buffer | Packet, code5: number): Promise<void> {
  const c = await connected(t, version);
  const before = errors.length;
  if (Buffer.isBuffer(bytes)) c.sendRaw(bytes);
  else c.send(bytes);
  await expectClosed(c, version === 5 ? code5 : null, before);
}

// ---- framing ------------------------------------------------------------------------------

describe('framing', () => {
  for (const t of TRANSPORTS) {
    test(`[MQTT-1.5.5-1] a Remaining Length longer than 4 bytes closes the connection (${t})`, async () => {
      const c = await open(t);
      const before = errors.length;
      c.sendRaw([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
      await expectClosed(c, null, before);
      // After CONNECT a v5 client is told 0x81 Malformed Packet.
      await violation(t, 5, Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]), 0x81);
      await violation(t, 4, Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]), 0x81);
    });

    test(`garbage bytes close the connection (${t})`, async () => {
      const garbage = [
        [0x00, 0x00], // reserved packet type 0
        [0x00, 0x05, 1, 2, 3, 4, 5],
        [0x10, 0x03, 0xde, 0xad, 0xbe], // "CONNECT" whose body is not one
        [0xf0, 0x00], // AUTH on a 3.1.1 stream
        [0x47, 0x03, 0x45, 0x54, 0x20], // "GET " + junk: PUBACK before CONNECT
      ];
      for (const g of garbage) {
        const c = await open(t);
        const before = errors.length;
        c.sendRaw(g);
        await expectClosed(c, null, before);
      }
      await violation(t, 5, Buffer.from([0x00, 0x00]), 0x81);
      await violation(t, 5, Buffer.from([0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]), 0x81);
    });

    test(`[MQTT-3.8.1-1] [MQTT-3.6.1-1] reserved fixed-header flags are malformed (${t})`, async () => {
      // SUBSCRIBE must have flags 0010; PUBREL too.
      const sub = frame(0x80, u16(1), str('bad/flags'), [0]);
      await violation(t, 4, sub, 0x81);
      const subV5 = frame(0x80, u16(1), [0], str('bad/flags'), [0]);
      await violation(t, 5, subV5, 0x81);
      await violation(t, 5, frame(0x60, u16(1)), 0x81);
    });
  }

  test('a truncated CONNECT (fields run past the packet end) is closed without CONNACK', async () => {
    for (const t of TRANSPORTS) {
      // Client id length says 9 bytes, the packet holds 3.
      const c = await open(t);
      const before = errors.length;
      c.sendRaw(frame(0x10, str('MQTT'), [4, 0x02, 0, 60], [0x00, 0x09], Buffer.from('tru')));
      await expectClosed(c, null, before);
      // Cut inside the variable header (no keep-alive, no client id).
      const c2 = await open(t);
      c2.sendRaw(frame(0x10, str('MQTT'), [4, 0x02]));
      await expectClosed(c2, null);
    }
  });

  test('a CONNECT cut off mid-packet and half-closed by the client is closed', async () => {
    const full = rawConnect('MQTT', 4, 'half-open');
    for (const t of TRANSPORTS) {
      const c = await open(t);
      c.sendRaw(full.subarray(0, full.length - 3));
      c.stream.end();
      await expectClosed(c, null);
    }
  });

  test('[MQTT-3.1.4-?] a socket that never completes CONNECT is closed after mqtt.connect_timeout', async () => {
    const started = Date.now();
    const silent = await open('tcp');
    const partial = await open('tcp');
    const full = rawConnect('MQTT', 4, 'slowpoke');
    partial.sendRaw(full.subarray(0, 5)); // bytes arrive, but never a whole CONNECT
    const mem = await open('memory');
    await Promise.all([expectClosed(silent, null), expectClosed(partial, null), expectClosed(mem, null)]);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 900, `closed after ${elapsed} ms, connect_timeout is 1 s`);
    assert.ok(elapsed < 2500, `closed after ${elapsed} ms, connect_timeout is 1 s`);
  });
});

// ---- packet order -----------------------------------------------------------------------------

describe('packet order', () => {
  for (const t of TRANSPORTS) {
    test(`[MQTT-3.1.0-1] PUBLISH before CONNECT closes the connection and is not delivered (${t})`, async () => {
      const c = await open(t);
      const before = errors.length;
      c.sendRaw(rawPublish({ topic: 'bad/early', payload: 'sneaky' }));
      await expectClosed(c, null, before);
      assert.deepEqual(await quiet(watcher, 100), []);
    });

    test(`[MQTT-3.1.0-1] SUBSCRIBE, PINGREQ, DISCONNECT before CONNECT close the connection (${t})`, async () => {
      const packets: Packet[] = [
        { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x', qos: 0 }] },
        { cmd: 'pingreq' },
        { cmd: 'disconnect' },
      ];
      for (const p of packets) {
        const c = await open(t);
        c.send(p);
        await expectClosed(c, null);
      }
    });

    test(`[MQTT-3.1.0-2] a second CONNECT is a protocol violation: v5 DISCONNECT 0x82, v3.1.1 close (${t})`, async () => {
      for (const version of [4, 5] as const) {
        const c = await connected(t, version);
        const before = errors.length;
        c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `again-${t}-${version}`, clean: true, keepalive: 60 });
        await expectClosed(c, version === 5 ? 0x82 : null, before);
      }
    });

    test(`CONNACK, SUBACK, UNSUBACK, PINGRESP sent by a client are protocol errors (${t})`, async () => {
      const serverOnly: Packet[] = [
        { cmd: 'connack', sessionPresent: false, returnCode: 0, reasonCode: 0 },
        { cmd: 'suback', messageId: 1, granted: [0] },
        { cmd: 'unsuback', messageId: 1, granted: [0] },
        { cmd: 'pingresp' },
      ];
      for (const p of serverOnly) {
        await violation(t, 5, p, 0x82);
        await violation(t, 4, p, 0x82);
      }
      // Before CONNECT they are simply closed.
      const c = await open(t);
      c.send({ cmd: 'connack', sessionPresent: false, returnCode: 0 });
      await expectClosed(c, null);
    });
  }

  test('AUTH without an authentication method is a protocol error (v5 0x82)', async () => {
    await violation('memory', 5, { cmd: 'auth', reasonCode: 0x18 }, 0x82);
  });
});

// ---- CONNECT contents --------------------------------------------------------------------------

describe('CONNECT', () => {
  for (const t of TRANSPORTS) {
    test(`[MQTT-3.1.2-2] an unsupported protocol level gets CONNACK return code 0x01, then the close (${t})`, async () => {
      for (const [name, level] of [
        ['MQTT', 6],
        ['MQTT', 0],
        ['MQTT', 2],
        ['MQIsdp', 7],
        ['MQTT', 0x86], // bridge bit set on an unknown level
      ] as const) {
        const c = await open(t, 4);
        const before = errors.length;
        c.sendRaw(rawConnect(name, level, `level-${level}`));
        const seen = await c.waitClosed(3000);
        assert.deepEqual(
          seen.map((p) => p.cmd),
          ['connack'],
          `${name} level ${level}`,
        );
        assert.equal((seen[0] as IConnackPacket).returnCode, 1, `${name} level ${level}: return code 1`);
        assert.equal((seen[0] as IConnackPacket).sessionPresent, false);
        assert.equal(errors.length - before, 1);
      }
    });
  }

  test('[MQTT-3.1.2-2] the refusal is the 4-byte 3.1.1 CONNACK 20 02 00 01', async () => {
    const c = await open('tcp', 4);
    const bytes: Buffer[] = [];
    c.stream.on('data', (b: Buffer) => bytes.push(b));
    c.sendRaw(rawConnect('MQTT', 9));
    await c.waitClosed();
    assert.deepEqual(Buffer.concat(bytes), Buffer.from([0x20, 0x02, 0x00, 0x01]));
  });

  test('[MQTT-3.1.2-1] a protocol name other than MQTT / MQIsdp is closed without CONNACK', async () => {
    for (const t of TRANSPORTS) {
      const c = await open(t);
      c.sendRaw(rawConnect('MQTX', 4));
      await expectClosed(c, null);
    }
  });

  test('[MQTT-3.1.2-3] the reserved CONNECT flag bit 0 must be zero', async () => {
    const c = await open('memory');
    c.sendRaw(rawConnect('MQTT', 4, 'reserved-bit', 0x03));
    await expectClosed(c, null);
  });

  for (const t of TRANSPORTS) {
    test(`[MQTT-3.1.3-8] 3.1.1 empty client id with CleanSession=0 gets CONNACK return code 2 (${t})`, async () => {
      const c = await open(t, 4);
      const before = errors.length;
      c.sendRaw(rawConnect('MQTT', 4, '', 0x00)); // CleanSession=0 (MQTT.js refuses to build this)
      const ack = (await c.next('connack')) as IConnackPacket;
      assert.equal(ack.cmd, 'connack');
      assert.equal(ack.returnCode, 2);
      assert.equal(ack.sessionPresent, false);
      await c.waitClosed();
      assert.equal(errors.length - before, 1);
    });
  }

  test('[MQTT-1.5.4-1] an ill-formed UTF-8 client id is closed without CONNACK', async () => {
    for (const t of TRANSPORTS) {
      const c = await open(t);
      c.sendRaw(rawConnect('MQTT', 4, [0x61, 0xc3, 0x28]));
      await expectClosed(c, null);
    }
  });

  test('[MQTT-1.5.4-2] U+0000 in a client id is closed without CONNACK', async () => {
    const c = await open('tcp');
    c.sendRaw(rawConnect('MQTT', 4, 'nul\u0000id'));
    await expectClosed(c, null);
  });

  test('a CONNECT above mqtt.max_packet_size is closed without CONNACK', async () => {
    const c = await open('tcp', 4);
    c.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: 'big-will',
      clean: true,
      keepalive: 60,
      will: { topic: 'bad/will', payload: Buffer.alloc(MAX_PACKET + 10, 1), qos: 0, retain: false },
    });
    await expectClosed(c, null);
  });
});

// ---- PUBLISH ----------------------------------------------------------------------------------

describe('PUBLISH', () => {
  for (const t of TRANSPORTS) {
    test(`[MQTT-3.3.2-2] [MQTT-4.7.0-1] wildcards in a PUBLISH topic: v5 DISCONNECT 0x90, v3.1.1 close (${t})`, async () => {
      for (const topic of ['bad/+', 'bad/#', '#', '+', 'bad/a+b', 'bad/#/x']) {
        await violation(t, 5, rawPublish({ topic, props: [] }), 0x90);
        await violation(t, 4, rawPublish({ topic }), 0x90);
        // QoS 1 goes the same way and is not acknowledged.
        await violation(t, 5, rawPublish({ topic, qos: 1, id: 7, props: [] }), 0x90);
      }
      assert.deepEqual(await quiet(watcher, 100), []);
    });
  }

  test('v5 §3.3.4: an empty topic without a Topic Alias is a protocol error (0x82); 3.1.1 closes [MQTT-4.7.3-1]', async () => {
    await violation('memory', 5, rawPublish({ topic: '', props: [] }), 0x82);
    await violation('memory', 4, rawPublish({ topic: '' }), 0x82);
  });

  for (const t of TRANSPORTS) {
    test(`[MQTT-1.5.4-1] ill-formed UTF-8 in a PUBLISH topic is Malformed (v5 0x81) (${t})`, async () => {
      const illFormed = [
        [0x62, 0x61, 0x64, 0x2f, 0xc3, 0x28], // bad/ + invalid 2-byte sequence
        [0x62, 0x61, 0x64, 0x2f, 0xed, 0xa0, 0x80], // encoded surrogate U+D800
        [0x62, 0x61, 0x64, 0x2f, 0xff], // never valid in UTF-8
        [0x62, 0x61, 0x64, 0x2f, 0xc0, 0xaf], // overlong '/'
      ];
      for (const topic of illFormed) {
        await violation(t, 5, rawPublish({ topic, props: [] }), 0x81); // fast path
        await violation(t, 5, rawPublish({ topic, props: [0x26, ...str('k'), ...str('v')] }), 0x81); // with properties
        await violation(t, 4, rawPublish({ topic, qos: 1, id: 3 }), 0x81);
      }
      assert.deepEqual(await quiet(watcher, 100), []);
    });
  }

  test('a well-formed U+FFFD in a topic is delivered, even next to a binary payload', async () => {
    const topic = 'bad/\uFFFD';
    const payload = Buffer.alloc(300, 0xff); // not UTF-8, and long enough for a 2-byte Remaining Length
    for (const version of [4, 5] as const) {
      for (const props of version === 5 ? [[], [0x26, ...str('k'), ...str('v')]] : [undefined]) {
        const c = await connected('memory', version);
        const got = collect(watcher, 1, 2000);
        c.sendRaw(rawPublish({ topic, payload, qos: 1, id: 9, props }));
        const ack = await c.next('puback');
        assert.equal(ack?.cmd, 'puback');
        const [m] = await got;
        assert.equal(m?.topic, topic);
        assert.deepEqual(m?.payload, payload);
        c.end();
      }
    }
  });

  for (const t of TRANSPORTS) {
    test(`[MQTT-1.5.4-2] U+0000 in a PUBLISH topic closes the connection (${t})`, async () => {
      await violation(t, 5, rawPublish({ topic: 'bad/nul\u0000x', props: [] }), 0x81);
      await violation(t, 5, rawPublish({ topic: 'bad/nul\u0000x', props: [0x26, ...str('k'), ...str('v')] }), 0x81);
      await violation(t, 4, rawPublish({ topic: 'bad/nul\u0000x' }), 0x81);
      assert.deepEqual(await quiet(watcher, 100), []);
    });

    test(`[MQTT-2.2.1-3] QoS 1 / QoS 2 PUBLISH with packet identifier 0: v5 DISCONNECT 0x82, v3.1.1 close (${t})`, async () => {
      for (const qos of [1, 2]) {
        await violation(t, 5, rawPublish({ topic: 'bad/id0', qos, id: 0, props: [] }), 0x82);
        await violation(t, 4, rawPublish({ topic: 'bad/id0', qos, id: 0 }), 0x82);
      }
      assert.deepEqual(await quiet(watcher, 100), []);
    });

    test(`[MQTT-3.3.1-4] a PUBLISH with QoS 3 is malformed: v5 DISCONNECT 0x81, v3.1.1 close (${t})`, async () => {
      const qos3v4 = frame(0x36, str('bad/qos3'), u16(1), Buffer.from('x'));
      const qos3v5 = frame(0x36, str('bad/qos3'), u16(1), [0], Buffer.from('x'));
      await violation(t, 4, qos3v4, 0x81);
      await violation(t, 5, qos3v5, 0x81);
      assert.deepEqual(await quiet(watcher, 100), []);
    });
  }
});

// ---- topic aliases --------------------------------------------------------------------------

describe('topic aliases (v5)', () => {
  const alias = (n: number): number[] => [0x23, ...u16(n)];

  test('[MQTT-3.3.2-8] Topic Alias 0 gets DISCONNECT 0x94', async () => {
    for (const t of TRANSPORTS) await violation(t, 5, rawPublish({ topic: 'bad/alias', props: alias(0) }), 0x94);
  });

  test('[MQTT-3.3.2-9] a Topic Alias above the advertised Topic Alias Maximum gets DISCONNECT 0x94', async () => {
    const c = RawClient.memory(tb.broker, 5);
    const ack = (await c.connect('alias-max')) as IConnackPacket;
    assert.equal(ack.properties?.topicAliasMaximum, MAX_ALIAS);
    c.end();
    for (const t of TRANSPORTS) {
      await violation(t, 5, rawPublish({ topic: 'bad/alias', props: alias(MAX_ALIAS + 1) }), 0x94);
      await violation(t, 5, rawPublish({ topic: 'bad/alias', props: alias(0xffff) }), 0x94);
    }
    assert.deepEqual(await quiet(watcher, 100), []);
  });

  test('an empty topic with a Topic Alias that was never set is a protocol error (0x82)', async () => {
    await violation('memory', 5, rawPublish({ topic: '', props: alias(4) }), 0x82);
  });

  test('a valid alias at the maximum is set and then resolved (the connection survives)', async () => {
    const c = await connected('tcp', 5);
    const got = collect(watcher, 2, 2000);
    c.sendRaw(rawPublish({ topic: 'bad/aliased', payload: 'one', props: alias(MAX_ALIAS) }));
    c.sendRaw(rawPublish({ topic: '', payload: 'two', props: alias(MAX_ALIAS) }));
    const msgs = await got;
    assert.deepEqual(
      msgs.map((m) => [m.topic, m.payload.toString()]),
      [
        ['bad/aliased', 'one'],
        ['bad/aliased', 'two'],
      ],
    );
    await expectAlive(c);
    c.end();
  });
});

// ---- oversized packets --------------------------------------------------------------------

describe('Maximum Packet Size', () => {
  /** A QoS 0 v5 PUBLISH of exactly `total` bytes on the wire. */
  function publishOfSize(total: number, v5: boolean): Buffer {
    const topic = 'bad/size';
    const fixed = 2 + topic.length + (v5 ? 1 : 0); // topic length + topic + property length
    const header = (rl: number): number => 1 + varint(rl).length;
    let payloadLen = total - fixed - 3;
    while (header(fixed + payloadLen) + fixed + payloadLen > total) payloadLen--;
    while (header(fixed + payloadLen) + fixed + payloadLen < total) payloadLen++;
    const buf = rawPublish({ topic, payload: Buffer.alloc(payloadLen, 0x61), props: v5 ? [] : undefined });
    assert.equal(buf.length, total);
    return buf;
  }

  test('v5 CONNACK advertises mqtt.max_packet_size as Maximum Packet Size', async () => {
    const c = RawClient.memory(tb.broker, 5);
    const ack = (await c.connect('max-size')) as IConnackPacket;
    assert.equal(ack.properties?.maximumPacketSize, MAX_PACKET);
    c.end();
  });

  for (const t of TRANSPORTS) {
    test(`a packet of exactly mqtt.max_packet_size is accepted; one byte more gets v5 DISCONNECT 0x95 / v3.1.1 close (${t})`, async () => {
      for (const version of [4, 5] as const) {
        const c = await connected(t, version);
        const got = collect(watcher, 1, 2000);
        c.sendRaw(publishOfSize(MAX_PACKET, version === 5));
        const [m] = await got;
        assert.equal(m?.payload.length, publishOfSize(MAX_PACKET, version === 5).length - (version === 5 ? 14 : 13));
        await expectAlive(c);
        const before = errors.length;
        c.sendRaw(publishOfSize(MAX_PACKET + 1, version === 5));
        await expectClosed(c, version === 5 ? 0x95 : null, before);
      }
    });
  }

  test('an oversized packet is refused from its header, before its body arrives', async () => {
    const c = await connected('tcp', 5);
    // Announce 1 MB but send only the header: the broker must not wait for the rest.
    c.sendRaw([0x30, ...varint(1 << 20)]);
    await expectClosed(c, 0x95);
  });
});

// ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------

describe('SUBSCRIBE', () => {
  const badFilters = ['bad/#/x', 'bad#', 'bad/a+', '+bad', '$share/g', '$share//bad', '$share/g+/bad', '$share/g/', ''];

  for (const t of TRANSPORTS) {
    for (const version of [4, 5] as const) {
      test(`[MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] invalid filters fail only their own SUBACK entry: ${version === 5 ? '0x8F' : '0x80'} (v${version}, ${t})`, async () => {
        const c = await connected(t, version);
        const subscriptions = [{ topic: 'bad/ok1', qos: 1 as const }, ...badFilters.map((f) => ({ topic: f, qos: 0 as const })), { topic: 'bad/ok2/#', qos: 2 as const }];
        c.send({ cmd: 'subscribe', messageId: 42, subscriptions });
        const ack = (await c.next('suback')) as ISubackPacket;
        assert.equal(ack.messageId, 42);
        const fail = version === 5 ? 0x8f : 0x80;
        assert.deepEqual(ack.granted, [1, ...badFilters.map(() => fail), 2]);
        // The good subscriptions work and the connection is unharmed.
        healthyPub.publish('bad/ok1', 'a', { qos: 1 });
        healthyPub.publish('bad/ok2/deep', 'b', { qos: 1 });
        const p1 = (await c.next('publish')) as IPublishPacket;
        const p2 = (await c.next('publish')) as IPublishPacket;
        assert.deepEqual(
          [p1.topic, p1.payload.toString(), p2.topic, p2.payload.toString()],
          ['bad/ok1', 'a', 'bad/ok2/deep', 'b'],
        );
        await expectAlive(c);
        c.end();
      });
    }
  }

  test('[MQTT-3.8.3-3] [MQTT-3.10.3-2] SUBSCRIBE / UNSUBSCRIBE without any filter is a protocol error (v5 0x82)', async () => {
    for (const t of TRANSPORTS) {
      await violation(t, 4, frame(0x82, u16(1)), 0x82);
      await violation(t, 5, frame(0x82, u16(1), [0]), 0x82);
      await violation(t, 4, frame(0xa2, u16(1)), 0x82);
      await violation(t, 5, frame(0xa2, u16(1), [0]), 0x82);
    }
  });

  test('[MQTT-2.2.1-3] SUBSCRIBE and UNSUBSCRIBE with packet identifier 0 are protocol errors', async () => {
    for (const t of TRANSPORTS) {
      await violation(t, 5, frame(0x82, u16(0), [0], str('bad/x'), [0]), 0x82);
      await violation(t, 4, frame(0x82, u16(0), str('bad/x'), [0]), 0x82);
      await violation(t, 5, frame(0xa2, u16(0), [0], str('bad/x')), 0x82);
      await violation(t, 4, frame(0xa2, u16(0), str('bad/x')), 0x82);
    }
  });

  test('[MQTT-1.5.4-1] ill-formed UTF-8 in a filter closes the connection (not a SUBACK failure)', async () => {
    for (const t of TRANSPORTS) {
      await violation(t, 4, frame(0x82, u16(1), str([0x62, 0x2f, 0xc3, 0x28]), [0]), 0x81);
      await violation(t, 5, frame(0x82, u16(1), [0], str([0x62, 0x2f, 0xc3, 0x28]), [0]), 0x81);
      await violation(t, 5, frame(0xa2, u16(1), [0], str([0x62, 0x2f, 0xed, 0xa0, 0x80])), 0x81);
    }
  });

  test('[MQTT-1.5.4-2] U+0000 in a filter closes the connection (not a SUBACK failure)', async () => {
    for (const t of TRANSPORTS) {
      await violation(t, 4, frame(0x82, u16(1), str('b/\u0000'), [0]), 0x81);
      await violation(t, 5, frame(0x82, u16(1), [0], str('b/\u0000'), [0]), 0x81);
    }
  });

  test('[MQTT-3.8.3-5] reserved subscription option bits are malformed', async () => {
    await violation('memory', 4, frame(0x82, u16(1), str('bad/x'), [0x04]), 0x81);
    await violation('memory', 5, frame(0x82, u16(1), [0], str('bad/x'), [0xc0]), 0x81);
  });
});

// ---- acknowledgements -----------------------------------------------------------------

describe('acknowledgements for unknown packet ids', () => {
  for (const t of TRANSPORTS) {
    test(`v5: PUBREL for an unknown packet id gets PUBCOMP 0x92 and the connection stays open (${t})`, async () => {
      const c = await connected(t, 5);
      c.send({ cmd: 'pubrel', messageId: 777 });
      const comp = (await c.next('pubcomp')) as IPubcompPacket;
      assert.equal(comp?.cmd, 'pubcomp');
      assert.equal(comp.messageId, 777);
      assert.equal(comp.reasonCode, 0x92);
      await expectAlive(c);
      c.end();
    });
  }

  test('3.1.1: PUBREL for an unknown packet id is answered with PUBCOMP and the connection stays open', async () => {
    const c = await connected('tcp', 4);
    c.send({ cmd: 'pubrel', messageId: 778 });
    const comp = await c.next('pubcomp');
    assert.equal(comp?.messageId, 778);
    await expectAlive(c);
    c.end();
  });

  test('v5: PUBREC for an unknown packet id gets PUBREL 0x92; stray PUBACK / PUBCOMP are ignored', async () => {
    const c = await connected('memory', 5);
    c.send({ cmd: 'puback', messageId: 11 });
    c.send({ cmd: 'pubcomp', messageId: 12 });
    c.send({ cmd: 'pubrec', messageId: 13 });
    const rel = (await c.next('pubrel')) as IPubrelPacket;
    assert.equal(rel?.messageId, 13);
    assert.equal(rel.reasonCode, 0x92);
    await expectAlive(c);
    c.end();
  });

  test('a QoS 2 PUBREL for a released id does not deliver again', async () => {
    const c = await connected('memory', 5);
    const got = collect(watcher, 1, 2000);
    c.sendRaw(rawPublish({ topic: 'bad/qos2-once', qos: 2, id: 5, props: [], payload: 'once' }));
    assert.equal((await c.next('pubrec'))?.messageId, 5);
    c.send({ cmd: 'pubrel', messageId: 5 });
    assert.equal(((await c.next('pubcomp')) as IPubcompPacket).reasonCode ?? 0, 0);
    c.send({ cmd: 'pubrel', messageId: 5 });
    assert.equal(((await c.next('pubcomp')) as IPubcompPacket).reasonCode, 0x92);
    assert.equal((await got)[0]?.payload.toString(), 'once');
    assert.deepEqual(await quiet(watcher, 100), []);
    c.end();
  });
});

// ---- DISCONNECT ---------------------------------------------------------------------------

describe('DISCONNECT', () => {
  test('[MQTT-3.14.2-2] v5 DISCONNECT may not raise Session Expiry from 0: DISCONNECT 0x82', async () => {
    await violation('memory', 5, { cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } }, 0x82);
  });
});

// ---- keep-alive -----------------------------------------------------------------------------

describe('keep-alive', () => {
  test('[MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (v5) silence for 1.5 x Keep Alive closes: v5 DISCONNECT 0x8D', async () => {
    const started = Date.now();
    const run = async (t: Transport, version: 4 | 5): Promise<number> => {
      const c = await connected(t, version, { keepalive: 1 });
      await expectClosed(c, version === 5 ? 0x8d : null);
      return Date.now() - started;
    };
    // A client that pings every 400 ms stays connected through the same period.
    const pinger = await connected('tcp', 5, { keepalive: 1 });
    const timer = setInterval(() => pinger.send({ cmd: 'pingreq' }), 400);
    try {
      const times = await Promise.all([run('tcp', 4), run('tcp', 5), run('memory', 4), run('memory', 5)]);
      for (const ms of times) {
        assert.ok(ms >= 1400, `closed after ${ms} ms; keep-alive 1 s allows 1.5 s`);
        assert.ok(ms < 2800, `closed after ${ms} ms; keep-alive 1 s allows 1.5 s`);
      }
      await sleep(300);
      assert.equal(pinger.closed, false, 'a client that pings is kept');
    } finally {
      clearInterval(timer);
      pinger.end();
    }
  });
});

// ---- the end: nobody else was hurt ------------------------------------------------------

test('after all of the above the broker still serves: healthy clients connected, counters consistent', async () => {
  await assertHealthy();
  // A newcomer can still connect, subscribe and receive.
  const late = await client(tb, { clientId: 'late', protocolVersion: 5 });
  await late.subscribeAsync('healthy/late', { qos: 2 });
  const got = collect(late, 1, 2000);
  await healthyPub.publishAsync('healthy/late', 'still here', { qos: 2 });
  assert.equal((await got)[0]?.payload.toString(), 'still here');
  await late.endAsync();
  assert.ok(pings >= 60, `the healthy pair was checked after every test (${pings} checks)`);
  assert.ok(tb.broker.metrics.protocolErrors > 50, `protocol errors counted: ${tb.broker.metrics.protocolErrors}`);
  // Only the three healthy clients remain connected (no session leaked a connection count).
  const deadline = Date.now() + 3000;
  while (tb.broker.connectedCount !== 3 && Date.now() < deadline) await sleep(20);
  assert.equal(tb.broker.connectedCount, 3);
});
