import type { IPubackPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { completeOutbound } from '../../session/delivery.js';

/** QoS 1 outbound delivery acknowledged: free its window slot ([MQTT-4.3.2-?]). */
export function handlePuback(conn: Connection, packet: IPubackPacket): void {
  pubackReceived(conn, packet.messageId ?? 0);
}

/** A PUBACK for packet id `id` (Connection takes plain PUBACKs here without decoding them). */
export function pubackReceived(conn: Connection, id: number): void {
  const session = conn.session;
  const entry = session?.inflight.get(id);
  if (!session || !entry || entry.qos !== 1) return; // unknown id: nothing to complete
  completeOutbound(session, id, entry);
}
