import type { IUnsubscribePacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { ProtocolViolation, RC } from '../protocol/reason-codes.js';

/** [MQTT-3.10.4-4] UNSUBACK answers every UNSUBSCRIBE, with a reason per filter on v5. */
export function handleUnsubscribe(conn: Connection, packet: IUnsubscribePacket): void {
  const session = conn.session;
  if (!session) return;
  // [MQTT-2.2.1-3] UNSUBSCRIBE carries a non-zero Packet Identifier.
  if (!packet.messageId) throw new ProtocolViolation(RC.ProtocolError, 'UNSUBSCRIBE with packet identifier 0');
  // [MQTT-3.10.3-2] at least one filter.
  if (packet.unsubscriptions.length === 0) throw new ProtocolViolation(RC.ProtocolError, 'UNSUBSCRIBE without topic filters');
  const codes = packet.unsubscriptions.map((filter) =>
    conn.broker.unsubscribe(session, filter) ? RC.Success : RC.NoSubscriptionExisted,
  );
  if (conn.protocolVersion === 5) {
    conn.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: codes });
  } else {
    conn.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: [] });
  }
}
