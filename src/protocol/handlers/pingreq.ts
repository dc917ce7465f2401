import type { Connection } from '../connection.js';

const PINGRESP = Buffer.from([0xd0, 0x00]);

/** [MQTT-3.12.4-1] the server MUST send PINGRESP in response to PINGREQ. */
export function handlePingreq(conn: Connection): void {
  conn.write(PINGRESP);
}
