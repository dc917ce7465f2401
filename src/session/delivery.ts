/**
 * Outbound delivery to one session: QoS downgrade is done by the caller; here the inflight
 * window (Receive Maximum), the queue behind it, redelivery on resume, and the per-client
 * limits (Maximum Packet Size, slow-consumer watermark, queue length). Deliveries of a
 * persistent session carry a `ref` to their durable index entry; the session's
 * `durable` recorder is told when they are sent, released and completed.
 */
import type { Connection } from '../connection.js';
import { encodeAck, type QoS } from '../protocol/codec.js';
import { encodeDelivery, isExpired, type Message } from '../message.js';
import { type DurableRef, type Inflight, type Pending, QUEUE_PAGE, type Session } from './session.js';

export interface DeliveryLimits {
  maxQueued: number;
  /** A full queue drops its oldest entry for the new one, or the new one. */
  dropOldest: boolean;
  queueQos0: boolean;
  writeHighWatermark: number;
  /** Deliveries loaded from the store per batch when a queue holds only log positions. */
  batchSize: number;
  /** QoS 0 messages for offline persistent sessions go through the store (durable_sessions.qos0). */
  storeQos0: boolean;
}

export interface DropCounter {
  dropped: number;
}

/**
 * Write one PUBLISH. Returns false when the client's Maximum Packet Size forbids it: the
 * message is then discarded for this client as if delivered ([MQTT-3.1.2-25]).
 */
function writePublish(conn: Connection, p: Pending, msg: Message, dup: boolean, id: number, now: number): boolean {
  const buf = encodeDelivery(msg, conn.protocolVersion, p.qos, p.retain, dup, id, conn.protocolVersion === 5 ? p.subIds : undefined, now);
  if (buf.length > conn.clientMaxPacketSize) return false;
  conn.write(buf);
  const broker = conn.broker;
  if (broker.listenerCount('message.delivered') > 0) broker.emit('message.delivered', conn.clientId, msg, p.qos);
  return true;
}

/** A delivery that will not be sent (dropped, expired, too large, record gone). */
function discard(session: Session, p: Pending): void {
  if (p.ref) session.durable?.completed(p);
}

/**
 * Start one QoS > 0 delivery in a free window slot. A QoS 2 delivery of a persistent session
 * is sent only once its packet id is durable, so a restart resends it under the same id.
 */
function sendInflight(conn: Connection, session: Session, p: Pending, msg: Message, now: number): void {
  const id = session.allocateId();
  const entry = p as Inflight;
  entry.phase = 'publish';
  session.inflight.set(id, entry);
  const recorded = p.ref ? session.durable?.sent(p, id) : undefined;
  if (recorded && p.qos === 1) {
    // QoS 1: the id is recorded in the background, only so a restart can mark the resend DUP.
    recorded.catch(() => undefined);
  } else if (recorded) {
    recorded.then(
      () => {
        if (session.connection === conn && conn.connected && session.inflight.get(id) === entry) sendOrDrop(conn, session, id, entry, msg, Date.now());
      },
      () => undefined, // stays in flight: resent when the client resumes
    );
    return;
  }
  sendOrDrop(conn, session, id, entry, msg, now);
}

function sendOrDrop(conn: Connection, session: Session, id: number, entry: Inflight, msg: Message, now: number): void {
  if (writePublish(conn, entry, msg, false, id, now)) return;
  session.inflight.delete(id);
  session.dropped++;
  discard(session, entry);
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
  ref?: DurableRef,
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
    if (!writePublish(conn, { msg, qos, retain, subIds }, msg, false, 0, now)) session.dropped++;
    return;
  }
  if (ref && session.durable && (session.backlogAfter !== null || ref.seq <= session.loadedSeq)) {
    // Already indexed in the store and behind deliveries not yet loaded (or loaded with the last
    // page): it is queued there, in order; make sure a connected client keeps draining.
    if (conn !== null && session.queue.length === 0) pump(conn, session, limits);
    return;
  }
  const pending: Pending = { msg, qos, retain, subIds, ref };
  if (isExpired(msg, now)) {
    discard(session, pending); // [MQTT-3.3.2-5]
    return;
  }
  if (conn !== null && session.queue.length === 0 && session.inflight.size < conn.window) {
    sendInflight(conn, session, pending, msg, now);
    return;
  }
  if (conn === null && qos === 0 && !limits.queueQos0 && !ref) return;
  if (session.queue.length >= limits.maxQueued) {
    session.dropped++;
    drops.dropped++;
    if (!limits.dropOldest || limits.maxQueued === 0) {
      discard(session, pending);
      return;
    }
    discard(session, session.queue.shift() as Pending);
  }
  // An offline persistent session keeps only log positions, and at most a page of them: the
  // rest stays in the store's index and is read back in order as the queue drains.
  if (conn === null && ref && session.durable) {
    pending.msg = null;
    if (session.queue.length >= QUEUE_PAGE && session.durable.spill(session)) return;
  }
  session.queue.push(pending);
}

/** Move queued deliveries into free window slots. */
export function pump(conn: Connection, session: Session, limits: DeliveryLimits): void {
  const now = Date.now();
  for (;;) {
    if (session.queue.length === 0 && session.backlogAfter !== null) session.durable?.loadMore(session);
    if (session.queue.length === 0 || session.inflight.size >= conn.window || !conn.connected) break;
    const head = session.queue.peek() as Pending;
    if (head.msg === null) loadBatch(session, limits.batchSize);
    const p = session.queue.shift() as Pending;
    const msg = p.msg;
    if (msg === null || isExpired(msg, now)) {
      discard(session, p);
      continue;
    }
    if (p.qos === 0) {
      writePublish(conn, p, msg, false, 0, now);
      discard(session, p); // QoS 0 is done once written
      continue;
    }
    sendInflight(conn, session, p, msg, now);
  }
}

/** Batch-fetch the bodies of the next queued deliveries that hold only a log position. */
function loadBatch(session: Session, batchSize: number): void {
  const batch: Pending[] = [];
  for (const p of session.queue) {
    if (batch.length >= batchSize) break;
    if (p.msg === null) batch.push(p);
  }
  session.durable?.load(batch);
}

/** A QoS 1 PUBACK or QoS 2 PUBCOMP (or a refusing PUBREC) ended this delivery. */
export function completeOutbound(conn: Connection, session: Session, id: number, entry: Inflight): void {
  session.inflight.delete(id);
  if (entry.ref) session.durable?.completed(entry);
  const broker = conn.broker;
  if (entry.msg && broker.listenerCount('message.acked') > 0) broker.emit('message.acked', conn.clientId, entry.msg);
  if (session.queue.length > 0 || session.backlogAfter !== null) pump(conn, session, broker.limits);
}

/**
 * After CONNACK on a resumed session: resend every unacknowledged PUBLISH with DUP=1 and
 * its original packet id, and PUBREL for those past PUBREC ([MQTT-4.4.0-1], [MQTT-3.3.1-1]),
 * in the original order; then fill the window from the queue.
 */
export function resumeSession(conn: Connection, session: Session): void {
  const now = Date.now();
  const unloaded = [...session.inflight.values()].filter((e) => e.msg === null && e.phase === 'publish');
  if (unloaded.length > 0) session.durable?.load(unloaded);
  for (const [id, entry] of session.inflight) {
    if (entry.phase === 'pubrel') {
      conn.write(encodeAck(6, id, conn.protocolVersion));
      continue;
    }
    if (entry.msg === null || !writePublish(conn, entry, entry.msg, true, id, now)) {
      session.inflight.delete(id);
      discard(session, entry);
    }
  }
  pump(conn, session, conn.broker.limits);
}
