/** The one dispatch switch: one module per packet type (Aedes lib/handlers, Mosquitto handle_*.c). */
import type { Packet } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { ProtocolViolation, RC } from '../../wire/reason-codes.js';
import { handleConnect } from './connect.js';
import { handleDisconnect } from './disconnect.js';
import { handlePingreq } from './pingreq.js';
import { handlePuback } from './puback.js';
import { handlePubcomp } from './pubcomp.js';
import { handlePublish } from './publish.js';
import { handlePubrec } from './pubrec.js';
import { handlePubrel } from './pubrel.js';
import { handleSubscribe } from './subscribe.js';
import { handleUnsubscribe } from './unsubscribe.js';

export function handlePacket(conn: Connection, packet: Packet): void {
  if (conn.state === 'awaiting-connect') {
    // [MQTT-3.1.0-1] the first packet from the client MUST be CONNECT.
    if (packet.cmd !== 'connect') throw new ProtocolViolation(RC.ProtocolError, `${packet.cmd} before CONNECT`);
    handleConnect(conn, packet);
    return;
  }
  switch (packet.cmd) {
    case 'publish':
      return handlePublish(conn, packet);
    case 'puback':
      return handlePuback(conn, packet);
    case 'pubrec':
      return handlePubrec(conn, packet);
    case 'pubrel':
      return handlePubrel(conn, packet);
    case 'pubcomp':
      return handlePubcomp(conn, packet);
    case 'subscribe':
      return handleSubscribe(conn, packet);
    case 'unsubscribe':
      return handleUnsubscribe(conn, packet);
    case 'pingreq':
      return handlePingreq(conn);
    case 'disconnect':
      return handleDisconnect(conn, packet);
    case 'connect':
      // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
      throw new ProtocolViolation(RC.ProtocolError, 'second CONNECT');
    case 'auth':
      // No enhanced authentication method was accepted, so AUTH is out of place ([MQTT-3.15.0-?]).
      throw new ProtocolViolation(RC.ProtocolError, 'AUTH without an authentication method');
    default:
      // CONNACK, SUBACK, UNSUBACK, PINGRESP only travel server → client.
      throw new ProtocolViolation(RC.ProtocolError, `${packet.cmd} is not sent by clients`);
  }
}
