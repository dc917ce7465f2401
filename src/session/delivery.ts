/**
 * Outbound delivery to one session: QoS downgrade is done by the caller; here the inflight
 * window (Receive Maximum), the queue behind it, redelivery on resume, and the per-client
 * limits (Maximum Packet Size, slow-consumer watermark, queue length).
 */
import type { Connection } from '../connection.js';
import { encodeAck, type QoS } from '../protocol/codec.js';
import { encodeDelivery, isExpired, type Message } from '../message.js';
import type { Inflight, Pending, Session } from './session.js';

export interface DeliveryLimits {
  maxQueued: number;
  queueQos0: boolean;
  writeHighWatermark: number;
}

export interface DropCounter {
  dropped: number;
}

/**
 * Write one PUBLISH. Returns false when the client's Maximum Packet Size forbids it: the
 * message is then discarded for this client as if delivered ([MQTT-3.1.2-25]).
 */
function writePublish(conn: Connection, p: Pending, dup: boolean, id: number, now: number): boolean {
  const buf = encodeDelivery(p.msg, conn.protocolVersion, p.qos, p.retain, dup, id, conn.protocolVersion === 5 ? p.subIds : undefined, now);
  if (buf.length > conn.clientMaxPacketSize) return false;
  conn.write(buf);
  const broker = conn.broker;
  if (broker.listenerCount('message.delivered') > 0) broker.emit('message.delivered', conn.clientId, p.msg, p.qos);
  return true;
}

/** Start one QoS > 0 delivery in a free window slot. */
function sendInflight(conn: Connection, session: Session, p: Pending, now: number): void {
  const id = session.allocateId();
  const entry = p as Inflight;
  entry.phase = 'publish';
  if (writePublish(conn, entry, false, id, now)) session.inflight.set(id, entry);
  else session.dropped++;
}

export function deliver(
  session: Session,
  msg: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | undefined,
  limits: DeliveryLimits,
  drops: DropCounter,
  now: number,
): void {
  const conn = session.connection;
  if (conn !== null && qos === 0) {
    if (conn.backlog > limits.writeHighWatermark) {
      // Slow consumer: QoS 0 is dropped (and counted) rather than buffered without bound.
      session.dropped++;
      drops.dropped++;
      return;
    }
    if (isExpired(msg, now)) return;
    if (!writePublish(conn, { msg, qos, retain, subIds }, false, 0, now)) session.dropped++;
    return;
  }
  if (isExpired(msg, now)) return; // [MQTT-3.3.2-5]
  const pending: Pending = { msg, qos, retain, subIds };
  if (conn !== null && session.queue.length === 0 && session.inflight.size < conn.window) {
    sendInflight(conn, session, pending, now);
    return;
  }
  if (conn === null && qos === 0 && !limits.queueQos0) return;
  if (session.queue.length >= limits.maxQueued) {
    session.dropped++;
    drops.dropped++;
    return;
  }
  session.queue.push(pending);
}

/** Move queued deliveries into free window slots. */
export function pump(conn: Connection, session: Session): void {
  const now = Date.now();
  while (session.queue.length > 0 && session.inflight.size < conn.window && conn.connected) {
    const p = session.queue.shift() as Pending;
    if (isExpired(p.msg, now)) continue;
    if (p.qos === 0) {
      writePublish(conn, p, false, 0, now);
      continue;
    }
    sendInflight(conn, session, p, now);
  }
}

/** A QoS 1 PUBACK or QoS 2 PUBCOMP (or a refusing PUBREC) ended this delivery. */
export function completeOutbound(conn: Connection, session: Session, id: number, entry: Inflight): void {
  session.inflight.delete(id);
  const broker = conn.broker;
  if (broker.listenerCount('message.acked') > 0) broker.emit('message.acked', conn.clientId, entry.msg);
  if (session.queue.length > 0) pump(conn, session);
}

/**
 * After CONNACK on a resumed session: resend every unacknowledged PUBLISH with DUP=1 and
 * its original packet id, and PUBREL for those past PUBREC ([MQTT-4.4.0-1], [MQTT-3.3.1-1]),
 * in the original order; then fill the window from the queue.
 */
export function resumeSession(conn: Connection, session: Session): void {
  const now = Date.now();
  for (const [id, entry] of session.inflight) {
    if (entry.phase === 'pubrel') conn.write(encodeAck(6, id, conn.protocolVersion));
    else if (!writePublish(conn, entry, true, id, now)) session.inflight.delete(id);
  }
  pump(conn, session);
}
