/**
 * Message ids in EMQX's style (emqx_guid): 128 bits — a 64-bit timestamp in microseconds, 48 bits
 * naming the node and process, a 16-bit sequence — written in base 62 (`0-9A-Za-z`), e.g.
 * `2VFsyhDm0cPIQvnY9osj`. Unique per node and increasing in the order they are made: a
 * timestamp not after the last one takes the last one and the next sequence number.
 *
 * The same message gets the same id in every event that carries it (message.publish,
 * message.delivered, message.acked): ids are kept by the message's payload buffer, which the
 * broker shares between the snapshots of one message (hooks/index.ts).
 */
import { createHash } from 'node:crypto';
import type { MessageInfo } from '../hooks/index.js';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

export function base62(n: bigint): string {
  if (n === 0n) return '0';
  let s = '';
  while (n > 0n) {
    s = (ALPHABET[Number(n % 62n)] as string) + s;
    n /= 62n;
  }
  return s;
}

export class MessageIds {
  private readonly npid: bigint;
  private lastUs = 0n;
  private seq = 0;
  private readonly byPayload = new WeakMap<Buffer, string>();

  constructor(node: string, pid = process.pid) {
    const h = createHash('sha1').update(node).digest();
    this.npid = (BigInt(h.readUInt32BE(0)) << 16n) | BigInt(pid & 0xffff);
  }

  /** A new id for a message accepted at `atMs`. */
  next(atMs: number): string {
    let us = BigInt(Math.floor(atMs)) * 1000n;
    if (us <= this.lastUs) {
      us = this.lastUs;
      if (++this.seq > 0xffff) {
        us++;
        this.seq = 0;
      }
    } else this.seq = 0;
    this.lastUs = us;
    return base62((us << 64n) | (this.npid << 16n) | BigInt(this.seq));
  }

  /** A message fetched from a backend keeps its stored id: its acknowledgement names that one. */
  remember(payload: Buffer, id: string): void {
    if (payload.length > 0) this.byPayload.set(payload, id);
  }

  /** The id of a message: the one it was given in an earlier event, or a new one. */
  of(msg: MessageInfo): string {
    const p = msg.payload;
    if (p.length === 0) return this.next(msg.receivedAt); // empty payloads may share one buffer
    let id = this.byPayload.get(p);
    if (id === undefined) {
      id = this.next(msg.receivedAt);
      this.byPayload.set(p, id);
    }
    return id;
  }
}

/** Whether id `a` was made after id `b` (ids of one length compare as text; a longer one is later). */
export function idAfter(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}
