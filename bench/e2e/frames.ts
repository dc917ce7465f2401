/** Fixed-header scanning shared by the load generator's socket readers. */

/**
 * Read the MQTT fixed header at `pos`: where the body starts and how long it is, or
 * 'incomplete' (need more bytes) / 'malformed' (a Remaining Length of more than 4 bytes).
 */
export function readFixedHeader(data: Buffer, pos: number): { bodyStart: number; remaining: number } | 'incomplete' | 'malformed' {
  let remaining = 0;
  let mul = 1;
  let i = pos + 1;
  for (let k = 0; k < 4 && i < data.length; k++) {
    const b = data[i++] as number;
    remaining += (b & 127) * mul;
    mul *= 128;
    if ((b & 128) === 0) return { bodyStart: i, remaining };
  }
  return i - pos >= 5 ? 'malformed' : 'incomplete';
}
