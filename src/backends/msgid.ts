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
import { crypto } from '../crypto.js';
import type { MessageInfo } from '../hooks/index.js';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Base 62 of a big-endian number in 32-bit limbs (the array is consumed). Same digits as base62(). */
function base62Limbs(l: number[]): string {
  let s = '';
  for (;;) {
    let rem = 0;
    let nonzero = false;
    for (let i = 0; i < l.length; i++) {
      const cur = rem * 0x100000000 + (l[i] as number); // < 62 * 2^32: exact in a double
      const q = Math.floor(cur / 62);
      rem = cur - q * 62;
      l[i] = q;
      if (q !== 0) nonzero = true;
    }
    s = (ALPHABET[rem] as string) + s;
    if (!nonzero) return s;
  }
}

/** 62^4: four base-62 digits. */
const D4 = 62 ** 4;
/** The 62^2 two-digit strings, by value. */
const PAIRS: readonly string[] = Array.from({ length: 62 * 62 }, (_, i) => (ALPHABET[Math.floor(i / 62)] as string) + (ALPHABET[i % 62] as string));

/** Four base-62 digits of n < 62^4 (leading zeros kept). */
function quad(n: number): string {
  return (PAIRS[Math.floor(n / 3844)] as string) + (PAIRS[n % 3844] as string);
}

/** The value of base-62 digits. */
function digitsValue(s: string): number {
  let v = 0;
  for (const c of s) v = v * 62 + ALPHABET.indexOf(c);
  return v;
}

/** Base 62 of a bigint (reference for base62Limbs; tests compare them). */
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
  /** The node (32 bits of a hash of its name, made at the first id: -1 until then) and the process id (16 bits). */
  private node = -1;
  private readonly pid: number;
  /** Microseconds (exact in a double until the year 2255). */
  private lastUs = 0;
  private seq = 0;
  private readonly byPayload = new WeakMap<Buffer, string>();
  /**
   * Whether a message's id must be found again in a later event (rules of several pools, or on
   * message.delivered / message.acked): then ids are kept by payload. Not needed when one group
   * of rules sees each message once (message.publish only): a WeakMap entry per message is a
   * large part of such a rule's cost (docs/benchmarks.md, issue 16).
   */
  shared = true;
  private readonly limbs = [0, 0, 0, 0];
  /** The id of (lastUs, sequence 0) but its last four digits, and the value of those four. */
  private baseUs = -1;
  private prefix = '';
  private low = 0;

  constructor(
    private readonly nodeName: string,
    pid = process.pid,
  ) {
    this.pid = pid & 0xffff;
  }

  /** A new id for a message accepted at `atMs`. */
  next(atMs: number): string {
    let us = Math.floor(atMs) * 1000;
    if (us <= this.lastUs) {
      us = this.lastUs;
      if (++this.seq > 0xffff) {
        us++;
        this.seq = 0;
      }
    } else this.seq = 0;
    this.lastUs = us;
    // Within one microsecond only the sequence changes: the digits of sequence 0, plus it in the
    // last four digits (62^4 > 2^16 + their value unless a carry goes further: then in full).
    if (us !== this.baseUs) {
      const base = this.full(us, 0);
      this.baseUs = us;
      this.prefix = base.slice(0, -4);
      this.low = digitsValue(base.slice(-4));
    }
    const low = this.low + this.seq;
    if (low < D4) return this.prefix + quad(low);
    return this.full(us, this.seq);
  }

  /** The id of (us, seq), every digit computed. */
  private full(us: number, seq: number): string {
    // 128 bits as four 32-bit limbs, most significant first: us (64) | node (32) | pid (16) seq (16).
    const l = this.limbs;
    const hi = Math.floor(us / 0x100000000);
    l[0] = hi;
    l[1] = us - hi * 0x100000000;
    if (this.node < 0) this.node = crypto().createHash('sha1').update(this.nodeName).digest().readUInt32BE(0);
    l[2] = this.node;
    l[3] = this.pid * 0x10000 + seq;
    return base62Limbs(l);
  }

  /** A message fetched from a backend keeps its stored id: its acknowledgement names that one. */
  remember(payload: Buffer, id: string): void {
    if (payload.length > 0) this.byPayload.set(payload, id);
  }

  /** The id of a message: the one it was given in an earlier event, or a new one. */
  of(msg: MessageInfo): string {
    const p = msg.payload;
    if (p.length === 0 || !this.shared) return this.next(msg.receivedAt); // empty payloads may share one buffer
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
