import type { IPubrelPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { encodeAck } from '../protocol/codec.js';
import { RC } from '../protocol/reason-codes.js';

/** QoS 2 inbound, step 3: release the packet id and answer PUBCOMP ([MQTT-4.3.3-11]). */
export function handlePubrel(conn: Connection, packet: IPubrelPacket): void {
  const id = packet.messageId ?? 0;
  const known = conn.session?.incomingQos2.delete(id) ?? false;
  conn.write(encodeAck(7, id, conn.protocolVersion, known ? RC.Success : RC.PacketIdentifierNotFound));
}
