/**
 * Outbound delivery to one session: QoS downgrade is done by the caller; here the inflight
 * window (Receive Maximum), the queue behind it, redelivery on resume, and the per-client
 * limits (Maximum Packet Size, slow-consumer watermark, queue length and bytes). Deliveries of
 * logged messages to persistent sessions carry a `ref` to the message's log position; the
 * session's `durable` side decides whether it takes them now or reads them from the log later
 * (session/log-session.ts), and is told when they are sent, released and completed.
 */
import { encodeAck, type QoS } from '../wire/codec.js';
import { RC } from '../wire/reason-codes.js';
import { encodeDelivery, isExpired, type Message, payloadSize } from '../wire/message.js';
import type { Outlet } from './outlet.js';
import { type DeliveryLimits, type DurableRef, type Inflight, isRecorded, type Pending, halfLimit, QUEUE_PAGE, queueLimit, type Session } from './session.js';

/**
 * Write one PUBLISH. Returns false when the client's Maximum Packet Size forbids it: the
 * message is then discarded for this client as if delivered ([MQTT-3.1.2-25]).
 */
function writePublish(session: Session, out: Outlet, p: Pending, msg: Message, dup: boolean, id: number, now: number): boolean {
  const aliases = out.outAliases;
  const alias = aliases === null ? 0 : aliases.lookup(msg.topic);
  const buf = encodeDelivery(msg, out.protocolVersion, p.qos, p.retain, dup, id, out.protocolVersion === 5 ? p.subIds : undefined, now, alias);
  if (buf.length > out.clientMaxPacketSize) return false;
  if (alias < 0) aliases?.remember(msg.topic, -alias); // the client learns it from this packet
  out.write(buf);
  (session.env.stats.sent[p.qos] as number)++;
  const counts = session.env.counts;
  if (counts !== null) counts.delivered(msg, p.ref, p.qos);
  const told = session.env.delivered;
  if (told !== null) told(session.clientId, msg, p.qos);
  return true;
}

/**
 * A page of retained messages framed at QoS 0 (retain set, [MQTT-3.3.1-8]) for a connected
 * client, written as one buffer: what a `#` subscriber on many retained topics gets most of. For
 * sessions nobody listens to deliveries of, without outbound topic aliases or subscription
 * identifiers (the caller checks). Those larger than the client accepts are counted as deliver
 * does; those not framed (with properties, or at QoS 1/2) go to `general` after the rest.
 */
export function writeRetainedFrames(session: Session, conn: Outlet, page: { frames: Buffer; sent: number; tooLarge: number; special: readonly Message[] }, general: (msg: Message) => void): void {
  if (page.sent > 0) {
    conn.write(page.frames);
    (session.env.stats.sent[0] as number) += page.sent;
  }
  for (let i = 0; i < page.tooLarge; i++) tooLarge(session);
  for (const m of page.special) general(m);
}

/** A delivery larger than the client accepts: discarded for it as if delivered, counted. */
function tooLarge(session: Session): void {
  session.dropped++;
  session.env.stats.dropped++;
  session.env.stats.dropReasons.tooLarge++;
}

/** A delivery that will not be sent (dropped, expired, too large, record gone) or is done (QoS 0 written). */
function discard(session: Session, p: Pending): void {
  if (isRecorded(p)) session.durable?.completed(p);
}

/**
 * Start one QoS > 0 delivery in a free window slot. A QoS 2 delivery of a persistent session
 * is sent only once its packet id is durable, so a restart resends it under the same id.
 */
function sendInflight(conn: Outlet, session: Session, p: Pending, msg: Message, now: number): void {
  const id = session.allocateId();
  const entry = p as Inflight;
  entry.phase = 'publish';
  session.addInflight(id, entry);
  // QoS 1: the id is recorded in the background (null here), so a restart resends with DUP.
  const recorded = isRecorded(p) ? session.durable?.sent(p, id) : null;
  if (recorded) {
    // What is sent after it waits behind it (Outlet.writeAfter). Should the record fail,
    // the delivery stays in flight and is resent when the client resumes.
    conn.writeAfter(recorded, () => {
      if (session.outlet === conn && conn.connected && session.inflight.get(id) === entry) sendOrDrop(conn, session, id, entry, msg, Date.now());
    });
    return;
  }
  sendOrDrop(conn, session, id, entry, msg, now);
}

function sendOrDrop(conn: Outlet, session: Session, id: number, entry: Inflight, msg: Message, now: number): void {
  if (writePublish(session, conn, entry, msg, false, id, now)) return;
  session.inflight.delete(id);
  tooLarge(session);
  discard(session, entry);
}

export function deliver(
  session: Session,
  msg: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | undefined,
  now: number,
  ref?: DurableRef,
  retainedTopic?: string,
): Pending | null {
  const conn = session.outlet;
  const limits = session.env.limits;
  if (conn !== null) session.env.inflow?.offer(session);
  if (conn !== null && qos === 0 && !ref) {
    if (conn.backlog > limits.writeHighWatermark) {
      // Slow consumer: QoS 0 is dropped (and counted) rather than buffered without bound.
      session.dropped++;
      session.env.stats.dropped++;
      session.env.stats.dropReasons.slowConsumer++;
      return null;
    }
    if (isExpired(msg, now)) return null;
    if (!writePublish(session, conn, { msg, qos, retain, subIds }, msg, false, 0, now)) tooLarge(session);
    return null;
  }
  const pending: Pending = { msg, qos, retain, subIds, ref, retainedTopic };
  if (isExpired(msg, now)) return null; // [MQTT-3.3.2-5]
  if (conn !== null && session.queue.length === 0 && session.inflight.size < conn.window) {
    if (qos === 0) writePublish(session, conn, pending, msg, false, 0, now);
    else sendInflight(conn, session, pending, msg, now);
    return pending;
  }
  if (conn === null && qos === 0 && !limits.queueQos0 && !ref) return null;
  const limit = queueLimit(session);
  if (session.queue.length >= limit || queueBytesFull(session, limits, msg)) {
    session.dropped++;
    session.env.stats.dropped++;
    session.env.stats.dropReasons.queueFull++;
    if (limits.overflow === 'disconnect' && conn !== null) {
      conn.disconnect(RC.QuotaExceeded, 'session queue full');
      return null;
    }
    if (limits.overflow !== 'drop_oldest' || limit === 0) return null;
    discard(session, session.dequeue() as Pending);
  }
  session.enqueue(pending);
  // Held before the queue overflows when its limit is below two windows (max_inflight raised past max_queued_in_memory).
  if (conn !== null) session.env.inflow?.queued(session, session.queue.length, halfLimit(session, conn.window));
  return pending;
}

function queueBytesFull(session: Session, limits: DeliveryLimits, msg: Message): boolean {
  return limits.maxQueuedBytes > 0 && session.queueBytes + msg.payload.length > limits.maxQueuedBytes;
}

/**
 * A logged message reached a persistent session as it was stored: delivered now if the
 * session is caught up with the log, else left there for it to read back in order.
 */
export function deliverLogged(
  session: Session,
  msg: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | undefined,
  ref: DurableRef,
  now: number,
): void {
  const d = session.durable;
  if (d === null) return;
  const conn = session.outlet;
  switch (d.arrive(ref, msg.payload.length, session.queue.length < QUEUE_PAGE && session.feed === null, conn !== null)) {
    case 'take': {
      const p: Pending = { msg, qos, retain, subIds, ref };
      if (isExpired(msg, now)) return discard(session, p);
      if (conn !== null && session.queue.length === 0) {
        if (qos === 0) {
          writePublish(session, conn, p, msg, false, 0, now);
          return discard(session, p);
        }
        if (session.inflight.size < conn.window) return sendInflight(conn, session, p, msg, now);
      }
      session.enqueue(p);
      return;
    }
    case 'left':
      if (conn !== null && session.queue.length === 0 && session.inflight.size < conn.window) pump(conn, session);
      return;
    case 'disconnect':
      conn?.disconnect(RC.QuotaExceeded, 'session queue full');
      return;
    case 'duplicate':
    case 'dropped':
      return;
  }
}

/** Outlets whose pump waits for the socket to drain. */
const waitingDrain = new WeakSet<Outlet>();
/** Outlets whose pump runs again at setImmediate (a replay read found nothing yet). */
const pumpSoon = new WeakSet<Outlet>();
/** Sessions whose pump runs once the current batch of acknowledgements is handled. */
const pumpAfterAcks = new WeakSet<Session>();

function waitDrain(conn: Outlet, session: Session): void {
  if (waitingDrain.has(conn)) return;
  waitingDrain.add(conn);
  conn.onDrain(() => {
    waitingDrain.delete(conn);
    pump(conn, session);
  });
}

/** Pump again on the next turn: a read of the log that may take a while found nothing yet. */
function pumpLater(conn: Outlet, session: Session): void {
  if (pumpSoon.has(conn)) return;
  pumpSoon.add(conn);
  setImmediate(() => {
    pumpSoon.delete(conn);
    pump(conn, session);
  });
}

/** Move queued deliveries into free window slots; a persistent session reads its backlog from the log. */
export function pump(conn: Outlet, session: Session): void {
  const limits = session.env.limits;
  const now = Date.now();
  const durable = session.durable;
  for (;;) {
    if (!conn.connected || session.inflight.size >= conn.window) break;
    if (session.queue.length === 0) {
      // Behind a retained feed, the log waits: what was published after the subscription follows its retained messages.
      if (durable === null || !durable.replaying || session.feed !== null) break;
      if (durable.stream) {
        if (conn.backlog > limits.writeHighWatermark) {
          // QoS 0 packets take no window slot: go on once the socket drains.
          waitDrain(conn, session);
          break;
        }
        const plain = session.env.delivered === null && session.env.acked === null && session.env.counts === null;
        const outcome = durable.stream(conn, limits.batchSize, limits.nativeDrain, plain, limits.writeHighWatermark, () => {
          if (session.outlet === conn) pump(conn, session);
        });
        if (outcome === 'more') pumpLater(conn, session);
        if (outcome !== 'slow') {
          if (conn.backlog > limits.writeHighWatermark) waitDrain(conn, session);
          break;
        }
      }
      durable.fill(session, limits.batchSize);
      if (session.queue.length === 0) {
        // Nothing found within one read's bounds, the log goes on: read on next turn.
        if (durable.replaying) pumpLater(conn, session);
        break;
      }
    }
    const head = session.queue.peek() as Pending;
    if (head.msg === null) loadBatch(session, limits.batchSize);
    const p = session.dequeue() as Pending;
    const msg = p.msg;
    if (msg === null || isExpired(msg, now)) {
      discard(session, p);
      continue;
    }
    if (p.qos === 0) {
      writePublish(session, conn, p, msg, false, 0, now);
      discard(session, p); // QoS 0 is done once written
      if (conn.backlog > limits.writeHighWatermark) {
        // QoS 0 takes no window slot: stop at the socket's high watermark, go on once it drains.
        waitDrain(conn, session);
        break;
      }
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
  for (const p of batch) if (p.msg) session.queueBytes += payloadSize(p.msg); // bodies held again count again
}

/** A QoS 1 PUBACK or QoS 2 PUBCOMP (or a refusing PUBREC) ended this delivery. */
export function completeOutbound(session: Session, id: number, entry: Inflight): void {
  session.inflight.delete(id);
  session.inflowAcks++;
  if (isRecorded(entry)) session.durable?.completed(entry);
  const counts = session.env.counts;
  if (counts !== null) counts.acked(entry.msg, entry.ref);
  const told = session.env.acked;
  if (told !== null) {
    if (entry.msg === null && entry.ref) session.durable?.load([entry]); // held by log position only (after a restart, or the native loop)
    if (entry.msg) told(session.clientId, entry.msg);
  }
  const conn = session.outlet;
  if ((session.queue.length > 0 || session.durable?.replaying) && !pumpAfterAcks.has(session)) {
    // Once per batch of acknowledgements (a socket read holds many), not once per ack.
    pumpAfterAcks.add(session);
    queueMicrotask(() => {
      pumpAfterAcks.delete(session);
      if (conn !== null && session.outlet === conn) pump(conn, session);
    });
  }
}

/**
 * After CONNACK on a resumed session: resend every unacknowledged PUBLISH with DUP=1 and
 * its original packet id, and PUBREL for those past PUBREC ([MQTT-4.4.0-1], [MQTT-3.3.1-1]),
 * in the original order; then fill the window from the queue.
 */
export function resumeSession(conn: Outlet, session: Session): void {
  const now = Date.now();
  const unloaded = [...session.inflight.values()].filter((e) => e.msg === null && e.phase === 'publish');
  if (unloaded.length > 0) session.durable?.load(unloaded);
  for (const [id, entry] of session.inflight) {
    if (entry.phase === 'pubrel') {
      conn.write(encodeAck(6, id, conn.protocolVersion));
      continue;
    }
    if (entry.msg === null || !writePublish(session, conn, entry, entry.msg, true, id, now)) {
      session.inflight.delete(id);
      discard(session, entry);
    }
  }
  pump(conn, session);
}
