import type { IDisconnectPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { ProtocolViolation, RC } from '../../wire/reason-codes.js';

/**
 * Client DISCONNECT. Reason 0x00 discards the will [MQTT-3.14.4-3]; 0x04 keeps it. A v5
 * client may change its Session Expiry Interval here, but not from 0 [MQTT-3.14.2-2].
 */
export function handleDisconnect(conn: Connection, packet: IDisconnectPacket): void {
  const session = conn.session;
  const expiry = packet.properties?.sessionExpiryInterval;
  if (session && expiry !== undefined) {
    if (session.expiryInterval === 0 && expiry !== 0) {
      throw new ProtocolViolation(RC.ProtocolError, 'DISCONNECT may not set a Session Expiry Interval when CONNECT had 0');
    }
    session.expiryInterval = Math.min(expiry, conn.broker.config['mqtt.max_session_expiry_interval']);
  }
  if ((packet.reasonCode ?? 0) !== RC.DisconnectWithWill) conn.will = null;
  conn.close('client disconnected');
}
