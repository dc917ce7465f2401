/**
 * Splits a byte stream into whole MQTT control packets before they are parsed.
 *
 * Why not hand the stream straight to mqtt-packet: the Remaining Length is known after at
 * most 5 bytes, so an oversized packet is refused there, before its body is buffered
 * ([MQTT-3.2.2-15]: the server may refuse packets above its Maximum Packet Size), and the
 * parser then sees exactly one packet per call.
 *
 * Invariant: `pending` holds the bytes of at most one incomplete packet plus nothing else.
 */
export type FrameResult = { kind: 'frame'; frame: Buffer } | { kind: 'too-large'; size: number } | { kind: 'malformed' };

/** Where a Framer hands what it cut. */
export interface FrameSink {
  /** One whole packet; false: stop (the rest of the chunk is dropped). */
  frame(frame: Buffer): boolean;
  /**
   * A plain PUBACK (remaining length 2), by packet id, without a frame Buffer: true/false as
   * `frame`; undefined: not taken, hand it to `frame` as any packet.
   */
  puback?(id: number): boolean | undefined;
}

export class Framer {
  private pending: Buffer | null = null;

  constructor(private readonly maxPacketSize: number) {}

  /**
   * Feed bytes; hands `sink` each whole packet (a plain PUBACK to `sink.puback` when it has
   * one). Returns an error outcome or null.
   */
  push(chunk: Buffer, sink: FrameSink): FrameResult | null {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let pos = 0;
    while (pos < buf.length) {
      // Fixed header: 1 byte type/flags + 1..4 bytes Variable Byte Integer.
      let len = 0;
      let mult = 1;
      let i = pos + 1;
      let complete = false;
      for (let n = 0; n < 4; n++, i++) {
        if (i >= buf.length) break;
        const b = buf[i] as number;
        len += (b & 0x7f) * mult;
        mult *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
        if (n === 3) return { kind: 'malformed' }; // [MQTT-1.5.5-1] at most 4 bytes
      }
      if (!complete) break;
      const total = i - pos + len;
      if (total > this.maxPacketSize) return { kind: 'too-large', size: total };
      if (pos + total > buf.length) break;
      if (total === 4 && buf[pos] === 0x40 && sink.puback) {
        const go = sink.puback(buf.readUInt16BE(pos + 2));
        if (go !== undefined) {
          pos += 4;
          if (!go) return null;
          continue;
        }
      }
      const frame = buf.subarray(pos, pos + total);
      pos += total;
      if (!sink.frame(frame)) return null;
    }
    if (pos < buf.length) {
      // Copy so the (possibly huge) socket chunk is not retained by a small tail.
      this.pending = Buffer.from(buf.subarray(pos));
    }
    return null;
  }

  /** Bytes buffered for the next (incomplete) packet. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }
}
