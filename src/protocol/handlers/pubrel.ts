import type { IPubrelPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { encodeAck } from '../../wire/codec.js';
import { RC } from '../../wire/reason-codes.js';

/**
 * QoS 2 inbound, step 3: release the packet id and answer PUBCOMP ([MQTT-4.3.3-11]). A persistent
 * session's id is released in the store first: the client may reuse it as soon as it has PUBCOMP,
 * and an id still recorded after a restart would make that new message look like a duplicate.
 */
export function handlePubrel(conn: Connection, packet: IPubrelPacket): void {
  const id = packet.messageId ?? 0;
  const session = conn.session;
  const known = session?.incomingQos2.delete(id) ?? false;
  session?.inboundHalf?.delete(id);
  const pubcomp = encodeAck(7, id, conn.protocolVersion, known ? RC.Success : RC.PacketIdentifierNotFound);
  const registry = conn.broker.store?.sessions;
  if (!known || !session?.durable || !registry) {
    conn.ack(pubcomp);
    return;
  }
  const send = conn.reserveAck();
  // Released only once the PUBLISH it answers is stored (a client that does not wait for PUBREC):
  // else the store's "stored" mark for the id could land after the release and outlive it.
  const storing = session.inboundStoring?.get(id);
  const release = (): Promise<void> => registry.releaseInbound(session.clientId, id);
  (storing === undefined ? release() : storing.then(release, release)).then(
    () => send(pubcomp),
    (err: unknown) => {
      // Not released: no PUBCOMP, the client sends PUBREL again when it reconnects.
      session.addIncomingQos2(id);
      conn.broker.onStoreError(conn.clientId, err as Error);
      send(null);
      conn.close('storage failure: PUBREL not completed');
    },
  );
}
