import type { IPubrecPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { encodeAck } from '../../wire/codec.js';
import { RC } from '../../wire/reason-codes.js';
import { completeOutbound } from '../../session/delivery.js';
import { isRecorded } from '../../session/session.js';

/** QoS 2 outbound, step 2: the client has the message; answer PUBREL ([MQTT-4.3.3-4]). */
export function handlePubrec(conn: Connection, packet: IPubrecPacket): void {
  const session = conn.session;
  const id = packet.messageId ?? 0;
  const entry = session?.inflight.get(id);
  if (!session || !entry || entry.qos !== 2) {
    // [MQTT-4.3.3-?] v5: PUBREL with 0x92 Packet Identifier not found.
    conn.write(encodeAck(6, id, conn.protocolVersion, RC.PacketIdentifierNotFound));
    return;
  }
  if ((packet.reasonCode ?? 0) >= 0x80) {
    // The receiver refused the message: the flow ends here and the slot is free.
    completeOutbound(session, id, entry);
    return;
  }
  entry.phase = 'pubrel';
  // A persistent session records the PUBREL phase first: after a restart it resends PUBREL,
  // never the PUBLISH the client already has.
  const recorded = isRecorded(entry) ? session.durable?.released(entry, id) : undefined;
  if (!recorded) {
    conn.write(encodeAck(6, id, conn.protocolVersion));
    return;
  }
  recorded.then(
    () => {
      if (session.outlet === conn && session.inflight.get(id) === entry) conn.write(encodeAck(6, id, conn.protocolVersion));
    },
    () => undefined,
  );
}
