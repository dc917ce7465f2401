/**
 * A routed application message and its per-delivery wire encoding.
 *
 * Invariant: a Message is immutable once routed; deliveries differ only in QoS, retain flag,
 * DUP, packet id and subscription identifiers, so the bytes for a (version, qos, retain)
 * triple are encoded once per message and shared by every subscriber (packet id patched).
 * The exception: the `count*` fields, the message log's delivery
 * statistics (persistence/embedded/delivery-counts.ts), written as it is delivered.
 */
import { encodePublish, type ProtocolVersion, type PublishProperties, type QoS, varIntLength, writeVarInt } from './codec.js';

export interface Message {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  /** v5 properties passed through to subscribers (never topicAlias / subscriptionIdentifier). */
  readonly properties: PublishProperties | undefined;
  /** Absolute expiry in ms since epoch from Message Expiry Interval; 0 = never. */
  readonly expiresAt: number;
  /** Publishing client id ('' for messages the broker makes itself). */
  readonly publisher: string;
  /** Milliseconds since epoch when the broker accepted it. */
  readonly receivedAt: number;
  /**
   * Encoding cache (encodeDelivery), keyed by `encodingKey`: the first template in `enc` under
   * `encKey` (0: none yet), any other in `encMore` — most messages are delivered in one
   * encoding, and a Map per message was an eighth of what the broker allocated per QoS 1
   * message. `encKey` -1: no cache, for a message delivered once (read back from the log for
   * one session), which is encoded straight into its packet.
   */
  encKey: number;
  enc: Buffer | null;
  encMore: Map<number, Buffer> | null;
  /**
   * The message log's delivery counts (persistence/embedded/delivery-counts.ts): the append
   * batch it went into and its index there (null: not appended while counts are kept). The
   * batch holds what was counted before its positions were known; the message points at the
   * batch, never the other way, so a batch keeps no message alive. Counted before it went into
   * a batch (a live delivery made while it is routed, before its append): `countDelivered`,
   * `countAcked`, moved into its slots when it goes in.
   */
  countSlots: CountSlots | null;
  countIdx: number;
  countDelivered: number;
  countAcked: number;
}

/** One append batch's count slots (kept by persistence/embedded/delivery-counts.ts): positions once known, counts until then. */
export interface CountSlots {
  /** `shard, offset` pairs once the batch's append completed, else null. */
  pos: Float64Array | null;
  /** Per message of the batch: deliveries, completed deliveries counted before `pos` was known. */
  delivered: Uint32Array;
  acked: Uint32Array;
}

export function createMessage(
  topic: string,
  payload: Buffer,
  qos: QoS,
  retain: boolean,
  properties: PublishProperties | undefined,
  publisher: string,
  now = Date.now(),
): Message {
  let props = properties;
  let expiresAt = 0;
  if (props) {
    const { topicAlias: _a, subscriptionIdentifier: _s, ...rest } = props;
    props = Object.keys(rest).length > 0 ? rest : undefined;
    if (rest.messageExpiryInterval !== undefined) expiresAt = now + rest.messageExpiryInterval * 1000;
  }
  return { topic, payload, qos, retain, properties: props, expiresAt, publisher, receivedAt: now, encKey: 0, enc: null, encMore: null, countSlots: null, countIdx: 0, countDelivered: 0, countAcked: 0 };
}

/** The encoding cache's key of a delivery: 3.1 and 3.1.1 share one PUBLISH encoding, 5.0 adds a property length. */
function encodingKey(version: ProtocolVersion, qos: QoS, retain: boolean): number {
  return (version === 5 ? 40 : 32) + qos * 2 + (retain ? 1 : 0);
}

/** Seed the encoding cache with the bytes the message arrived in (QoS 0, retain 0, no properties). */
export function seedEncoding(msg: Message, version: ProtocolVersion, frame: Buffer): void {
  if (msg.encKey !== 0) return;
  msg.encKey = encodingKey(version, 0, false);
  msg.enc = frame;
}

/** Payload bytes, without materialising a log message's payload view. */
export function payloadSize(msg: Message): number {
  return msg instanceof LogMessage ? msg.payloadLength : msg.payload.length;
}

export function isExpired(msg: Message, now = Date.now()): boolean {
  return msg.expiresAt !== 0 && msg.expiresAt <= now;
}

/** Offset of the packet identifier inside an encoded PUBLISH (after fixed header and topic). */
function packetIdOffset(buf: Buffer): number {
  let pos = 1;
  while ((buf[pos++] as number) & 0x80);
  return pos + 2 + buf.readUInt16BE(pos);
}

/**
 * Wire bytes of one delivery. `subIds` (v5 subscription identifiers), a live expiry and a
 * topic alias make the encoding per-delivery; otherwise the cached template is reused and, for
 * QoS > 0, copied with the packet id patched in. `alias`: 0 none; n > 0 the client knows alias
 * n for this topic (the topic name is left out); -n: alias n is new (sent with the name).
 */
export function encodeDelivery(
  msg: Message,
  version: ProtocolVersion,
  qos: QoS,
  retain: boolean,
  dup: boolean,
  messageId: number,
  subIds: readonly number[] | undefined,
  now: number,
  alias = 0,
): Buffer {
  const v5 = version === 5;
  if (v5 && ((subIds && subIds.length > 0) || msg.expiresAt !== 0 || alias !== 0)) {
    const props: PublishProperties = { ...msg.properties };
    if (alias !== 0) props.topicAlias = alias < 0 ? -alias : alias;
    if (subIds && subIds.length > 0) props.subscriptionIdentifier = subIds.length === 1 ? (subIds[0] as number) : [...subIds];
    // [MQTT-3.3.2-6] the forwarded expiry is the time remaining.
    if (msg.expiresAt !== 0) props.messageExpiryInterval = Math.max(0, Math.ceil((msg.expiresAt - now) / 1000));
    return encodePublish(alias > 0 ? '' : msg.topic, msg.payload, qos, retain, dup, messageId, version, props);
  }
  if (msg instanceof LogMessage) return msg.frame(version, qos, retain, dup, messageId);
  if (msg.encKey < 0) return encodePublish(msg.topic, msg.payload, qos, retain, dup, messageId, version, v5 ? msg.properties : undefined);
  const key = encodingKey(version, qos, retain);
  let template = msg.encKey === key ? msg.enc : msg.encMore === null ? undefined : msg.encMore.get(key);
  if (!template) {
    template = encodePublish(msg.topic, msg.payload, qos, retain, false, 0, version, v5 ? msg.properties : undefined);
    if (msg.encKey === 0) {
      msg.encKey = key;
      msg.enc = template;
    } else (msg.encMore ??= new Map()).set(key, template);
  }
  if (qos === 0 && !dup) return template;
  const out = Buffer.allocUnsafe(template.length);
  template.copy(out);
  if (dup) out[0] = (out[0] as number) | 0x08;
  if (qos > 0) out.writeUInt16BE(messageId, packetIdOffset(out));
  return out;
}

/** v5 properties as stored with a message in the log / metadata (JSON; binary fields base64). */
export function encodeProperties(props: PublishProperties | undefined): Buffer | null {
  if (!props) return null;
  const o: Record<string, unknown> = { ...props };
  if (props.correlationData) o['correlationData'] = { b64: props.correlationData.toString('base64') };
  return Buffer.from(JSON.stringify(o));
}

export function decodeProperties(bytes: Buffer | null | undefined): PublishProperties | undefined {
  if (!bytes || bytes.length === 0) return undefined;
  const o = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  const cd = o['correlationData'] as { b64?: string } | undefined;
  if (cd && typeof cd.b64 === 'string') o['correlationData'] = Buffer.from(cd.b64, 'base64');
  return o as PublishProperties;
}

/**
 * A message read back from the log for one session, without properties: its topic, publisher
 * and payload stay bytes of the scan buffer until something asks for them, and its PUBLISH is
 * built from those bytes directly (no string decoding and re-encoding on the replay path).
 */
export class LogMessage implements Message {
  readonly properties = undefined;
  readonly expiresAt = 0;
  /** No encoding cache: built from the scan's bytes for its one delivery (`frame`). */
  encKey = -1;
  enc = null;
  encMore = null;
  /** Deliveries of a message read back from the log are counted by their log position (Pending.ref). */
  countSlots = null;
  countIdx = 0;
  countDelivered = 0;
  countAcked = 0;
  private topicStr: string | undefined;
  private publisherStr: string | undefined;
  private payloadBuf: Buffer | undefined;

  constructor(
    private readonly buf: Buffer,
    private readonly pubAt: number,
    private readonly pubLen: number,
    private readonly topicAt: number,
    private readonly topicLen: number,
    private readonly payloadAt: number,
    readonly payloadLength: number,
    readonly qos: QoS,
    readonly retain: boolean,
    readonly receivedAt: number,
  ) {}

  get topic(): string {
    return (this.topicStr ??= this.buf.toString('utf8', this.topicAt, this.topicAt + this.topicLen));
  }

  get publisher(): string {
    return (this.publisherStr ??= this.buf.toString('utf8', this.pubAt, this.pubAt + this.pubLen));
  }

  get payload(): Buffer {
    return (this.payloadBuf ??= this.buf.subarray(this.payloadAt, this.payloadAt + this.payloadLength));
  }

  /** The PUBLISH packet (v5: empty property section). */
  frame(version: ProtocolVersion, qos: QoS, retain: boolean, dup: boolean, messageId: number): Buffer {
    const remaining = 2 + this.topicLen + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + this.payloadLength;
    const out = Buffer.allocUnsafe(1 + varIntLength(remaining) + remaining);
    out[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
    let pos = writeVarInt(out, 1, remaining);
    out.writeUInt16BE(this.topicLen, pos);
    pos += 2;
    pos += this.buf.copy(out, pos, this.topicAt, this.topicAt + this.topicLen);
    if (qos > 0) {
      out.writeUInt16BE(messageId, pos);
      pos += 2;
    }
    if (version === 5) out[pos++] = 0;
    this.buf.copy(out, pos, this.payloadAt, this.payloadAt + this.payloadLength);
    return out;
  }
}
