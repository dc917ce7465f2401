/**
 * Inbound PUBLISH (spec §3.3, §4.3): topic alias, validation, authorization, routing and the
 * QoS 1 / QoS 2 acknowledgement.
 */
import { isUtf8 } from 'node:buffer';
import type { IPublishPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { createMessage, type Message, seedEncoding } from '../../wire/message.js';
import { type DecodedPublish, encodeAck } from '../../wire/codec.js';
import { ProtocolViolation, RC } from '../../wire/reason-codes.js';
import { topicLevels } from '../../wire/topic.js';

/**
 * Topic limits and the client's rates (mqtt.max_topic_*, limits.*): the reason code refusing
 * this PUBLISH, or 0. A v5 client over its rate is disconnected with 0x96; a 3.1.1 client,
 * which cannot be told, is read more slowly instead.
 */
function overLimits(conn: Connection, topic: string, bytes: number): number {
  const cfg = conn.broker.config;
  const refused = conn.broker.metrics.refused;
  if (topic.length > cfg['mqtt.max_topic_length'] / 3 && Buffer.byteLength(topic) > cfg['mqtt.max_topic_length']) {
    refused.topicLength++;
    return RC.TopicNameInvalid;
  }
  if (topicLevels(topic) > cfg['mqtt.max_topic_levels']) {
    refused.topicLevels++;
    return RC.TopicNameInvalid;
  }
  const msgs = conn.inMessages;
  const octets = conn.inBytes;
  if (msgs === null && octets === null) return 0;
  if (conn.protocolVersion === 5) {
    if (msgs !== null && !msgs.take(1)) {
      refused.messageRate++;
      return RC.MessageRateTooHigh;
    }
    if (octets !== null && !octets.take(bytes)) {
      refused.byteRate++;
      return RC.MessageRateTooHigh;
    }
    return 0;
  }
  const waitMsgs = msgs?.charge(1) ?? 0;
  const waitBytes = octets?.charge(bytes) ?? 0;
  if (waitMsgs > 0) refused.messageRate++;
  if (waitBytes > 0) refused.byteRate++;
  conn.pauseReading(Math.max(waitMsgs, waitBytes));
  return 0;
}

export function handlePublish(conn: Connection, p: IPublishPacket): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const session = conn.session;
  if (!session) return;
  const v5 = conn.protocolVersion === 5;
  let topic = p.topic;
  const props = p.properties;
  const qos = p.qos;
  const id = p.messageId ?? 0;

  if (qos > 0 && id === 0) throw new ProtocolViolation(RC.ProtocolError, 'PUBLISH QoS > 0 with packet identifier 0'); // [MQTT-2.2.1-3]

  if (props?.topicAlias !== undefined) {
    const alias = props.topicAlias;
    // [MQTT-3.3.2-8] alias 0 and aliases above our Topic Alias Maximum are errors.
    if (alias === 0 || alias > conn.topicAliasMaximum) throw new ProtocolViolation(RC.TopicAliasInvalid, `topic alias ${alias} out of range`);
    if (topic === '') {
      const known = conn.aliases?.get(alias);
      if (known === undefined) throw new ProtocolViolation(RC.ProtocolError, `unknown topic alias ${alias}`);
      topic = known;
    } else {
      (conn.aliases ??= new Map()).set(alias, topic);
    }
  }
  // v5 §3.3.4: a zero-length Topic Name without a Topic Alias is a Protocol Error (0x82).
  if (topic === '') throw new ProtocolViolation(RC.ProtocolError, 'empty topic name without a topic alias'); // [MQTT-4.7.3-1]
  const bad = broker.router.checkTopicName(topic);
  if (bad) throw new ProtocolViolation(RC.TopicNameInvalid, `invalid topic name: ${bad}`); // [MQTT-3.3.2-2]
  const over = overLimits(conn, topic, (p.payload as Buffer).length);
  if (over === RC.MessageRateTooHigh) {
    // 0x96 is a DISCONNECT reason (§3.14.2.1): the v5 client over its rate is disconnected, the message not taken.
    conn.disconnect(over, 'message rate too high');
    return;
  }
  if (over !== 0) {
    // Refused, not a protocol error: v5 is told in the acknowledgement; a 3.1.1 flow completes undelivered.
    if (qos > 0) conn.ack(encodeAck(qos === 1 ? 4 : 5, id, conn.protocolVersion, v5 ? over : 0));
    return;
  }
  if (qos > cfg['mqtt.max_qos']) throw new ProtocolViolation(RC.QoSNotSupported, `QoS ${qos} not supported`); // [MQTT-3.2.2-11]
  if (p.retain && !cfg['mqtt.retain_available']) throw new ProtocolViolation(RC.RetainNotSupported, 'retain not available'); // [MQTT-3.2.2-14]

  if (qos === 2 && session.incomingQos2.has(id)) {
    duplicateQos2(conn, session, topic, p, id);
    return;
  }
  if (qos === 2 && session.incomingQos2.size >= cfg['mqtt.receive_maximum']) {
    throw new ProtocolViolation(RC.ReceiveMaximumExceeded, 'more QoS 2 PUBLISH in flight than Receive Maximum'); // [MQTT-3.3.4-7]
  }

  const payload = p.payload as Buffer;
  if (v5 && props?.payloadFormatIndicator && !isUtf8(payload)) {
    // [MQTT-3.3.2-4]-ish: the sender said UTF-8; refuse the message, not the connection.
    if (qos === 0) throw new ProtocolViolation(RC.PayloadFormatInvalid, 'payload is not UTF-8 as its format indicator says');
    conn.ack(encodeAck(qos === 1 ? 4 : 5, id, 5, RC.PayloadFormatInvalid));
    return;
  }

  const msg = createMessage(topic, payload, qos, p.retain, props, conn.clientId);
  const raw = (p as DecodedPublish).raw;
  if (raw !== undefined) seedEncoding(msg, conn.protocolVersion, raw);
  const answer = broker.gates.authorizePublish(conn, msg);
  if (answer instanceof Promise) authorizedLater(conn, session, msg, id, answer);
  else authorized(conn, session, msg, id, answer);
}

/** An asynchronous authorization: input held until it answers (a closure here, not in handlePublish, which would allocate its context for every PUBLISH). */
function authorizedLater(conn: Connection, session: NonNullable<Connection['session']>, msg: Message, id: number, answer: Promise<boolean | number>): void {
  conn.gate(answer, (allowed) => authorized(conn, session, msg, id, allowed));
}

/** A PUBLISH its authorization answered: refused, or routed and acknowledged once stored. */
function authorized(conn: Connection, session: NonNullable<Connection['session']>, msg: Message, id: number, allowed: boolean | number): void {
  const broker = conn.broker;
  const qos = msg.qos;
  const topic = msg.topic;
  const v5 = conn.protocolVersion === 5;
  if (allowed !== true) {
    const rc = typeof allowed === 'number' ? allowed : RC.NotAuthorized;
    broker.onClientError(conn, new Error(`PUBLISH to ${topic} not authorized`));
    // v5 says no with the reason code; 3.1.1 has no way to, so the flow completes without delivery.
    if (qos > 0) conn.ack(encodeAck(qos === 1 ? 4 : 5, id, conn.protocolVersion, v5 ? rc : 0));
    return;
  }
  // A persistent publisher's QoS 2 id is recorded (with its message, when that is appended)
  // before PUBREC, so a PUBLISH re-sent after a restart is still recognised as a duplicate.
  const durable = broker.router.publish(msg, conn, qos === 2 && session.durable ? id : 0);
  if (qos === 0) {
    // Nothing to hold back; a failed store is reported. The writes of one event-loop turn share
    // their batch's promise: watched once, not once per message (a handler per message was a
    // fifth of a retained QoS 0 flood's time).
    if (durable !== null && durable !== conn.qos0Stored) {
      conn.qos0Stored = durable;
      watchQos0(conn, durable);
    }
    return;
  }
  if (qos === 2) session.addIncomingQos2(id);
  if (!durable) {
    conn.ack(encodeAck(qos === 1 ? 4 : 5, id, conn.protocolVersion));
    return;
  }
  ackWhenStored(conn, session, durable, qos, id);
}

/** A failed store of a QoS 0 turn's messages is reported (no acknowledgement to hold back). */
function watchQos0(conn: Connection, stored: Promise<void>): void {
  stored.catch((e: unknown) => conn.broker.onStoreError(conn.clientId, e as Error));
}

/** PUBACK / PUBREC only once the message is durable for every persistent subscriber (the log, sync mode). */
function ackWhenStored(conn: Connection, session: NonNullable<Connection['session']>, durable: Promise<void>, qos: 1 | 2, id: number): void {
  if (qos === 2 && session.durable) {
    const storing = (session.inboundStoring ??= new Map());
    storing.set(id, durable);
    const done = (): void => {
      if (storing.get(id) === durable) storing.delete(id);
    };
    durable.then(done, done);
  }
  conn.ackWhen(durable, qos === 1 ? 4 : 5, id, ackNotStored);
}

/** A message not stored: reported, its QoS 2 id forgotten (a re-send is a new message), and refused. */
function ackNotStored(conn: Connection, type: 4 | 5, id: number, err: unknown): Buffer | null {
  if (type === 5) conn.session?.incomingQos2.delete(id);
  conn.broker.onStoreError(conn.clientId, err as Error);
  return refuseNotStored(conn, type, id);
}

/**
 * [MQTT-4.3.3-9] a re-sent QoS 2 PUBLISH is acknowledged again but not delivered twice. (Out of
 * handlePublish: its closures would make every PUBLISH allocate their captured variables.)
 */
function duplicateQos2(conn: Connection, session: NonNullable<Connection['session']>, topic: string, p: IPublishPacket, id: number): void {
  const broker = conn.broker;
  const qos = p.qos;
  const props = p.properties;
  const half = session.inboundHalf?.get(id);
  if (half === undefined) {
    const storing = session.inboundStoring?.get(id);
    if (storing === undefined) {
      conn.ack(encodeAck(5, id, conn.protocolVersion));
      return;
    }
    // The first copy (sent before a takeover) is still being stored: PUBREC once it is, as
    // for the first; a PUBREL sooner would release the id before its "stored" mark lands.
    conn.ackWhen(storing, 5, id, refuseNotStored);
    return;
  }
  // Its record reached the log before a stop, its id still pending: what it needs besides the
  // log (shared deliveries) is recorded now, before PUBREC.
  session.inboundHalf?.delete(id);
  const send = conn.reserveAck();
  broker.router.restoreInbound(createMessage(topic, p.payload as Buffer, qos, p.retain, props, conn.clientId), half, id).then(
    () => send(encodeAck(5, id, conn.protocolVersion)),
    (err: unknown) => {
      session.inboundHalf?.set(id, half);
      broker.onStoreError(conn.clientId, err as Error);
      send(null);
      conn.close('storage failure: message not acknowledged');
    },
  );
}

/**
 * A PUBLISH whose storing failed: a v5 client is told in its PUBACK / PUBREC (0x80); 3.1.1 cannot
 * refuse a PUBLISH, so the connection closes without the acknowledgement and the client sends it again.
 */
function refuseNotStored(conn: Connection, type: 4 | 5, id: number): Buffer | null {
  if (conn.protocolVersion === 5) return encodeAck(type, id, 5, RC.UnspecifiedError);
  conn.close('storage failure: message not acknowledged');
  return null;
}
