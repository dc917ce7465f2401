import type { IUnsubscribePacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { ProtocolViolation, RC } from '../../wire/reason-codes.js';

/** [MQTT-3.10.4-4] UNSUBACK answers every UNSUBSCRIBE, with a reason per filter on v5. */
export function handleUnsubscribe(conn: Connection, packet: IUnsubscribePacket): void {
  const session = conn.session;
  if (!session) return;
  // [MQTT-2.2.1-3] UNSUBSCRIBE carries a non-zero Packet Identifier.
  if (!packet.messageId) throw new ProtocolViolation(RC.ProtocolError, 'UNSUBSCRIBE with packet identifier 0');
  // [MQTT-3.10.3-2] at least one filter.
  if (packet.unsubscriptions.length === 0) throw new ProtocolViolation(RC.ProtocolError, 'UNSUBSCRIBE without topic filters');
  const writes: Promise<void>[] = [];
  const codes = packet.unsubscriptions.map((filter) => {
    // A `$log/` subscription (msglog/reconsume.ts): its reader stops.
    const reader = session.logReaders?.get(filter);
    if (reader) {
      reader.stop();
      return RC.Success;
    }
    return conn.broker.router.unsubscribe(session, filter, writes) ? RC.Success : RC.NoSubscriptionExisted;
  });
  const unsuback = (): void => conn.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: conn.protocolVersion === 5 ? codes : [] });
  if (writes.length === 0) {
    unsuback();
    return;
  }
  // A persistent session's UNSUBACK waits until the subscriptions are gone from the store, so a
  // crash after it cannot bring them back; later packets wait too. Not removed (a store error,
  // logged): no UNSUBACK, the connection closes and the client unsubscribes again.
  conn.gate(
    Promise.all(writes).then(
      () => true,
      () => false,
    ),
    (ok) => {
      if (ok) unsuback();
      else conn.close('storage failure: UNSUBSCRIBE not recorded');
    },
  );
}
