import type { IUnsubscribePacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { RC } from '../protocol/reason-codes.js';

/** [MQTT-3.10.4-4] UNSUBACK answers every UNSUBSCRIBE, with a reason per filter on v5. */
export function handleUnsubscribe(conn: Connection, packet: IUnsubscribePacket): void {
  const session = conn.session;
  if (!session) return;
  const codes = packet.unsubscriptions.map((filter) =>
    conn.broker.unsubscribe(session, filter) ? RC.Success : RC.NoSubscriptionExisted,
  );
  if (conn.protocolVersion === 5) {
    conn.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: codes });
  } else {
    conn.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: [] });
  }
}
