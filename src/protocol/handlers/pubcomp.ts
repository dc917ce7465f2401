import type { IPubcompPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { completeOutbound } from '../../session/delivery.js';

/** QoS 2 outbound, step 4: the flow is complete; free the window slot. */
export function handlePubcomp(conn: Connection, packet: IPubcompPacket): void {
  const session = conn.session;
  const id = packet.messageId ?? 0;
  const entry = session?.inflight.get(id);
  if (!session || !entry || entry.phase !== 'pubrel') return;
  completeOutbound(session, id, entry);
}
