import type { IPubackPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { completeOutbound } from '../session/delivery.js';

/** QoS 1 outbound delivery acknowledged: free its window slot ([MQTT-4.3.2-?]). */
export function handlePuback(conn: Connection, packet: IPubackPacket): void {
  const session = conn.session;
  const id = packet.messageId ?? 0;
  const entry = session?.inflight.get(id);
  if (!session || !entry || entry.qos !== 1) return; // unknown id: nothing to complete
  completeOutbound(conn, session, id, entry);
}
