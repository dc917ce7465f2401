/**
 * Per-connection packet codec over mqtt-packet, with a fast path for PUBLISH — the only
 * packet on the hot path. Everything else, and any v5 PUBLISH that carries properties,
 * goes through mqtt-packet's parser and generator.
 */
import { isUtf8 } from 'node:buffer';
import { generate, parser as createParser, writeToStream } from 'mqtt-packet';
import type { IPublishPacket, Packet, Parser } from 'mqtt-packet';

// mqtt-packet otherwise builds, at its first generate(), a cache of 65,536 two-byte Buffers
// for packet ids (about 6 MB of heap held for the process's life). The hot packets (PUBLISH,
// acknowledgements) are encoded here without it; CONNACK, SUBACK and the rest can afford to
// allocate their two bytes.
writeToStream.cacheNumbers = false;
import { ProtocolViolation, RC } from './reason-codes.js';

export type ProtocolVersion = 3 | 4 | 5;
export type QoS = 0 | 1 | 2;
export type PublishProperties = NonNullable<IPublishPacket['properties']>;

/**
 * A PUBLISH decoded by the fast path may carry its own wire bytes: a QoS 0, non-retained,
 * property-less PUBLISH is byte-for-byte what a subscriber of the same protocol family
 * receives, so it can be forwarded without re-encoding.
 */
export type DecodedPublish = IPublishPacket & { raw?: Buffer };

/** Thrown for bytes that do not form a valid packet ([MQTT-1.5.4-1], [MQTT-2.1.3-1] …). */
export class MalformedPacket extends ProtocolViolation {
  constructor(message: string) {
    super(RC.MalformedPacket, message);
    this.name = 'MalformedPacket';
  }
}

/**
 * A CONNECT whose Protocol Level we do not speak. The connection answers with CONNACK
 * return code 0x01 before closing ([MQTT-3.1.2-2]) instead of just dropping the socket.
 */
export class UnsupportedProtocolVersion extends ProtocolViolation {
  constructor(readonly level: number) {
    super(RC.UnsupportedProtocolVersion, `unsupported protocol level ${level}`);
    this.name = 'UnsupportedProtocolVersion';
  }
}

/** Offset of the variable header: past the type byte and the Remaining Length. */
function headerLength(frame: Buffer): number {
  let pos = 1;
  while (pos < frame.length && (frame[pos++] as number) & 0x80);
  return pos;
}

/**
 * mqtt-packet refuses a CONNECT with an unknown level as a generic parse error; look at the
 * level first so it can be answered properly. Only for the protocol names we know: anything
 * else is not MQTT and is simply closed ([MQTT-3.1.2-1]).
 */
function checkProtocolLevel(frame: Buffer): void {
  let pos = headerLength(frame);
  if (pos + 2 > frame.length) return;
  const nameLen = frame.readUInt16BE(pos);
  pos += 2;
  if (pos + nameLen >= frame.length) return;
  const name = frame.toString('latin1', pos, pos + nameLen);
  if (name !== 'MQTT' && name !== 'MQIsdp') return;
  const level = (frame[pos + nameLen] as number) & 0x7f; // 0x80 marks a bridge
  if (level !== 3 && level !== 4 && level !== 5) throw new UnsupportedProtocolVersion(level);
}

const ACK_CMDS = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const;

/**
 * One mqtt-packet parser for every connection: the Framer hands over whole packets only, so a
 * parse always ends with a packet or an error, and nothing is left in the parser between two
 * calls (it is reset when something would be). Per connection it saved a Parser, its buffer-list
 * stream and a Packet — about 1.3 KB of heap each.
 */
const shared: { parser: Parser | null; out: Packet | null; err: Error | null } = { parser: null, out: null, err: null };

function sharedParser(): Parser {
  let p = shared.parser;
  if (p === null) {
    p = shared.parser = createParser();
    p.on('packet', (packet: Packet) => {
      shared.out = packet;
    });
    p.on('error', (e: Error) => {
      shared.err = e;
    });
  }
  return p;
}

export class Decoder {
  version: ProtocolVersion = 4;

  /** Decode exactly one whole packet (as cut by the Framer). */
  decode(frame: Buffer): Packet {
    const type = (frame[0] as number) >> 4;
    if (type === 3) {
      const fast = this.decodePublish(frame);
      if (fast) return fast;
    } else if (type >= 4 && type <= 7 && (frame.length === 4 || frame.length === 5)) {
      // PUBACK / PUBREC / PUBREL / PUBCOMP without properties: the other hot packets.
      // [MQTT-3.6.1-1] PUBREL has flags 0010, the others 0000.
      if (((frame[0] as number) & 0x0f) !== (type === 6 ? 2 : 0)) throw new MalformedPacket('reserved header flags');
      const messageId = frame.readUInt16BE(2);
      const cmd = ACK_CMDS[type - 4] as 'puback' | 'pubrec' | 'pubrel' | 'pubcomp';
      if (frame.length === 4) return { cmd, messageId } as Packet;
      if (this.version === 5) return { cmd, messageId, reasonCode: frame[4] as number } as Packet;
    }
    if (type === 1) checkProtocolLevel(frame);
    const parser = sharedParser();
    // The version this connection speaks (a CONNECT sets it as it is parsed).
    (parser as unknown as { settings: { protocolVersion?: number } }).settings.protocolVersion = this.version;
    shared.out = null;
    shared.err = null;
    const left = parser.parse(frame);
    const p = shared.out as Packet | null;
    const err = shared.err as Error | null;
    shared.out = null;
    shared.err = null;
    if (err || !p || left > 0) {
      // Nothing of this frame may reach the next connection's parse.
      shared.parser = null;
      if (err) throw new MalformedPacket(err.message);
      throw new MalformedPacket(p ? 'trailing bytes after the packet' : 'incomplete packet');
    }
    if (p.cmd === 'connect' && p.protocolVersion) this.version = p.protocolVersion;
    checkStrings(p, frame);
    return p;
  }

  /** Fast PUBLISH decode; returns null to defer to mqtt-packet (v5 with properties). */
  private decodePublish(frame: Buffer): DecodedPublish | null {
    const flags = (frame[0] as number) & 0x0f;
    const qos = (flags >> 1) & 0x03;
    if (qos === 3) throw new MalformedPacket('PUBLISH with QoS 3'); // [MQTT-3.3.1-4]
    let pos = 1;
    while ((frame[pos++] as number) & 0x80);
    if (pos + 2 > frame.length) throw new MalformedPacket('PUBLISH too short');
    const tlen = frame.readUInt16BE(pos);
    pos += 2;
    if (pos + tlen > frame.length) throw new MalformedPacket('PUBLISH topic overruns packet');
    const topicAt = pos;
    pos += tlen;
    let messageId: number | undefined;
    if (qos > 0) {
      if (pos + 2 > frame.length) throw new MalformedPacket('PUBLISH without packet identifier');
      messageId = frame.readUInt16BE(pos);
      pos += 2;
    }
    if (this.version === 5) {
      if (pos >= frame.length) throw new MalformedPacket('PUBLISH without properties length');
      if (frame[pos] !== 0) return null; // has properties: use the full parser
      pos += 1;
    }
    const packet: DecodedPublish = {
      cmd: 'publish',
      qos: qos as QoS,
      dup: (flags & 0x08) !== 0,
      retain: (flags & 0x01) !== 0,
      topic: topicOf(frame, topicAt, tlen),
      payload: frame.subarray(pos),
    };
    if (messageId !== undefined) packet.messageId = messageId;
    if (flags === 0) packet.raw = frame;
    return packet;
  }
}

/** Topics up to this long are checked byte by byte (no Buffer view made for them). */
const SHORT_TOPIC = 64;

/**
 * A PUBLISH's topic name, checked: [MQTT-1.5.4-1] valid UTF-8, [MQTT-1.5.4-2] no U+0000. A
 * short ASCII topic (the common case) is checked and decoded without a Buffer view of its bytes.
 */
function topicOf(frame: Buffer, at: number, len: number): string {
  const end = at + len;
  if (len <= SHORT_TOPIC) {
    let ascii = true;
    let nul = false;
    for (let i = at; i < end; i++) {
      const c = frame[i] as number;
      if (c >= 0x80) ascii = false;
      else if (c === 0) nul = true;
    }
    if (ascii) {
      if (nul) throw new MalformedPacket('topic contains U+0000');
      return frame.toString('latin1', at, end);
    }
  }
  const bytes = frame.subarray(at, end);
  if (!isUtf8(bytes)) throw new MalformedPacket('topic is not valid UTF-8');
  if (bytes.includes(0)) throw new MalformedPacket('topic contains U+0000');
  return bytes.toString('utf8');
}

/** The UTF-8 strings of a packet that name topics and clients (the ones routing relies on). */
function stringsOf(p: Packet): string[] {
  switch (p.cmd) {
    case 'publish':
      return [p.topic];
    case 'subscribe':
      return p.subscriptions.map((s) => s.topic);
    case 'unsubscribe':
      return p.unsubscriptions;
    case 'connect': {
      const out = [p.clientId];
      if (p.username !== undefined) out.push(p.username);
      if (p.will) out.push(p.will.topic);
      return out;
    }
    default:
      return [];
  }
}

function count(haystack: string, needle: string): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + 1)) n++;
  return n;
}

function countBytes(haystack: Buffer, needle: Buffer): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + 1)) n++;
  return n;
}

const REPLACEMENT_UTF8 = Buffer.from('\uFFFD', 'utf8');

/**
 * [MQTT-1.5.4-1] ill-formed UTF-8 and [MQTT-1.5.4-2] U+0000 in a string close the connection.
 * mqtt-packet decodes ill-formed UTF-8 to U+FFFD instead of failing, so a decoded U+FFFD is
 * ill-formed input unless the frame carries as many well-formed EF BF BD sequences (a client
 * may legitimately send U+FFFD, and binary payloads are not strings).
 */
function checkStrings(p: Packet, frame: Buffer): void {
  let replacements = 0;
  for (const s of stringsOf(p)) {
    if (s.includes('\u0000')) throw new MalformedPacket('string contains U+0000'); // [MQTT-1.5.4-2]
    replacements += count(s, '\uFFFD');
  }
  if (replacements === 0) return;
  if (p.cmd === 'publish') {
    // The topic is at a known place: check its bytes exactly.
    const pos = headerLength(frame);
    const topicBytes = frame.subarray(pos + 2, pos + 2 + frame.readUInt16BE(pos));
    if (!isUtf8(topicBytes)) throw new MalformedPacket('topic is not valid UTF-8');
    return;
  }
  if (replacements > countBytes(frame, REPLACEMENT_UTF8)) throw new MalformedPacket('ill-formed UTF-8 string');
}

/** Encode any packet for a connection of the given version. */
export function encode(packet: Packet, version: ProtocolVersion): Buffer {
  return generate(packet, { protocolVersion: version });
}

export function varIntLength(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

export function writeVarInt(buf: Buffer, pos: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    buf[pos++] = b;
  } while (n > 0);
  return pos;
}

/**
 * Encode a PUBLISH. Without properties this writes the bytes directly (one allocation);
 * with v5 properties it defers to mqtt-packet.
 */
export function encodePublish(
  topic: string,
  payload: Buffer,
  qos: QoS,
  retain: boolean,
  dup: boolean,
  messageId: number,
  version: ProtocolVersion,
  properties: PublishProperties | undefined,
): Buffer {
  if (version === 5 && properties) {
    const p: IPublishPacket = { cmd: 'publish', topic, payload, qos, retain, dup, properties };
    if (qos > 0) p.messageId = messageId;
    return generate(p, { protocolVersion: 5 });
  }
  const tlen = Buffer.byteLength(topic);
  const buf = Buffer.allocUnsafe(publishSize(tlen, payload.length, qos, version));
  writePublish(buf, 0, topic, tlen, payload, qos, retain, dup, messageId, version);
  return buf;
}

/** Bytes of a PUBLISH without properties: topic of `topicBytes` (UTF-8), payload of `payloadBytes`. */
export function publishSize(topicBytes: number, payloadBytes: number, qos: QoS, version: ProtocolVersion): number {
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + payloadBytes;
  return 1 + varIntLength(remaining) + remaining;
}

/** Write a PUBLISH without properties at `at` (publishSize bytes); returns the offset after it. */
export function writePublish(buf: Buffer, at: number, topic: string, topicBytes: number, payload: Buffer, qos: QoS, retain: boolean, dup: boolean, messageId: number, version: ProtocolVersion): number {
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + payload.length;
  buf[at] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
  let pos = writeVarInt(buf, at + 1, remaining);
  buf.writeUInt16BE(topicBytes, pos);
  pos += 2;
  pos += buf.write(topic, pos, 'utf8');
  if (qos > 0) {
    buf.writeUInt16BE(messageId, pos);
    pos += 2;
  }
  if (version === 5) buf[pos++] = 0;
  return pos + payload.copy(buf, pos);
}

/** PUBACK / PUBREC / PUBREL / PUBCOMP with reason code 0 and no properties: 4 bytes (2 on v3). */
export function encodeAck(type: 4 | 5 | 6 | 7, messageId: number, version: ProtocolVersion, reasonCode = 0): Buffer {
  const first = (type << 4) | (type === 6 ? 0x02 : 0); // [MQTT-3.6.1-1] PUBREL flags 0010
  if (version === 5 && reasonCode !== 0) {
    const b = Buffer.allocUnsafe(5);
    b[0] = first;
    b[1] = 3;
    b.writeUInt16BE(messageId, 2);
    b[4] = reasonCode;
    return b;
  }
  const b = Buffer.allocUnsafe(4);
  b[0] = first;
  b[1] = 2;
  b.writeUInt16BE(messageId, 2);
  return b;
}

/**
 * Successful PUBACK / PUBREC packets in one buffer, each entry `(type << 16) | packetId` (type 4
 * or 5): the short form, which means success in every version (v5 §3.4.2.1).
 */
export function encodeAcks(acks: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * acks.length);
  let at = 0;
  for (const a of acks) {
    b[at] = (a >>> 16) << 4;
    b[at + 1] = 2;
    b[at + 2] = (a >>> 8) & 0xff;
    b[at + 3] = a & 0xff;
    at += 4;
  }
  return b;
}
