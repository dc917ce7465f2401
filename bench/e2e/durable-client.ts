// A small raw MQTT 3.1.1 client for the durable scenarios (durable.ts), run in the
// harness's main thread: persistent (clean_session=0) subscribers that record which
// message sequence numbers arrived, and QoS 1 publishers that keep a window of
// pre-encoded PUBLISH packets in flight and record which sequence numbers the
// broker acknowledged. Payload layout: seq u32 BE, publisher index u32 BE, send
// time (process.hrtime seconds u32 + nanoseconds u32), then filler.
import net from 'node:net';
import { readFixedHeader } from './frames.js';
import { performance } from 'node:perf_hooks';
import mqttPacket from 'mqtt-packet';

export const DURABLE_MIN_PAYLOAD = 16;

/** A growable bitmap of non-negative integers. */
export class SeqSet {
  private bits = new Uint8Array(1 << 14);
  size = 0;
  add(n: number): boolean {
    const byte = n >>> 3;
    if (byte >= this.bits.length) {
      let len = this.bits.length;
      while (len <= byte) len *= 2;
      const b = new Uint8Array(len);
      b.set(this.bits);
      this.bits = b;
    }
    const m = 1 << (n & 7);
    if ((this.bits[byte]! & m) !== 0) return false;
    this.bits[byte]! |= m;
    this.size++;
    return true;
  }
  has(n: number): boolean {
    const byte = n >>> 3;
    return byte < this.bits.length && (this.bits[byte]! & (1 << (n & 7))) !== 0;
  }
  /** Members of this set that are not in `other`. */
  missingFrom(other: SeqSet): { count: number; first: number[] } {
    let count = 0;
    const first: number[] = [];
    for (let byte = 0; byte < this.bits.length; byte++) {
      const v = this.bits[byte]!;
      if (v === 0) continue;
      for (let k = 0; k < 8; k++) {
        if ((v & (1 << k)) === 0) continue;
        const n = byte * 8 + k;
        if (!other.has(n)) {
          count++;
          if (first.length < 10) first.push(n);
        }
      }
    }
    return { count, first };
  }
}

export interface ConnectOptions {
  host: string;
  port: number;
  clientId: string;
  clean: boolean;
  keepalive?: number;
}

export interface PublishOptions {
  topic: string;
  /** PUBLISH packets kept unacknowledged. */
  window: number;
  /** Messages to send (Infinity: until stopPublishing() or the connection closes). */
  count: number;
  /** Payload size in bytes (>= DURABLE_MIN_PAYLOAD). */
  payload: number;
  pubIndex: number;
  /** Sequence number of the first message (default 0). */
  firstSeq?: number;
  onAck?: (seq: number) => void;
}

export interface PublishResult {
  sent: number;
  acked: number;
  /** The connection closed before every message was acknowledged. */
  closed: boolean;
}

function nowNs(): number {
  const t = process.hrtime();
  return t[0] * 1e9 + t[1];
}

/** connect() timed out or was refused at the TCP level (the broker is not listening yet). */
export class ConnectRefused extends Error {}

export class RawClient {
  readonly sock: net.Socket;
  sessionPresent = false;
  /** Why the socket closed, once it has. */
  closeReason: string | null = null;
  readonly closedP: Promise<string>;

  // subscriber side
  /** Called for every PUBLISH received (dup = the DUP flag). */
  onMessage: ((seq: number, pub: number, dup: boolean, qos: number) => void) | null = null;
  /** When false, PUBACKs for received QoS 1 PUBLISH are held until releaseAcks(). */
  autoAck = true;
  received = 0;
  private held: number[] = [];

  // publisher side
  private pubOpts: PublishOptions | null = null;
  private template: Buffer | null = null;
  private pktLen = 0;
  private payOff = 0;
  private pidOff = 0;
  private nextPid = 0;
  private pidSeq = new Int32Array(65536).fill(-1);
  private inflight = 0;
  private seq = 0;
  private pubSent = 0;
  private pubAcked = 0;
  private stopPub = false;
  private pubDone: ((r: PublishResult) => void) | null = null;
  unexpectedAcks = 0;

  private rest: Buffer | null = null;
  private onConnack: ((rc: number, sp: boolean) => void) | null = null;
  private onSuback: ((codes: number[]) => void) | null = null;
  private ackBuf = Buffer.alloc(4096);
  private closeWaiters: (() => void)[] = [];

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => this.onData(c));
    this.closedP = new Promise<string>((resolve) => {
      const done = (why: string): void => {
        if (this.closeReason !== null) return;
        this.closeReason = why;
        this.onConnack?.(-1, false);
        this.onSuback?.([]);
        this.finishPublish(true);
        for (const w of this.closeWaiters.splice(0)) w();
        resolve(why);
      };
      sock.on('error', (e) => done(`socket error: ${e.message}`));
      sock.on('close', () => done('closed'));
    });
  }

  /**
   * TCP connect + CONNECT/CONNACK. Rejects with ConnectRefused when nothing listens.
   * `setup` runs before CONNECT is sent: set onMessage / autoAck there, since a resumed
   * session's PUBLISH packets can arrive in the same read as the CONNACK.
   */
  static async connect(o: ConnectOptions, timeoutMs = 10_000, setup?: (c: RawClient) => void): Promise<RawClient> {
    const sock = net.connect({ host: o.host, port: o.port });
    const c = new RawClient(sock);
    setup?.(c);
    const connected = await new Promise<boolean>((resolve) => {
      sock.once('connect', () => resolve(true));
      void c.closedP.then(() => resolve(false));
    });
    if (!connected) throw new ConnectRefused(`${o.clientId}: ${c.closeReason ?? 'connect failed'}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${o.clientId}: no CONNACK within ${timeoutMs} ms`)), timeoutMs);
        c.onConnack = (rc, sp) => {
          c.onConnack = null;
          if (rc === 0) {
            c.sessionPresent = sp;
            resolve();
          } else if (rc < 0) reject(new ConnectRefused(`${o.clientId}: connection closed before CONNACK (${c.closeReason})`));
          else reject(new Error(`${o.clientId}: CONNACK return code ${rc}`));
        };
        sock.write(
          mqttPacket.generate({
            cmd: 'connect',
            protocolId: 'MQTT',
            protocolVersion: 4,
            clean: o.clean,
            clientId: o.clientId,
            keepalive: o.keepalive ?? 300,
          }),
        );
      });
    } catch (e) {
      c.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return c;
  }

  /** connect(), retrying every retryMs while the port refuses connections, until deadline (performance.now() ms). */
  static async connectRetry(o: ConnectOptions, deadline: number, setup?: (c: RawClient) => void, retryMs = 2): Promise<RawClient> {
    for (;;) {
      try {
        return await RawClient.connect(o, Math.max(1000, deadline - performance.now()), setup);
      } catch (e) {
        if (!(e instanceof ConnectRefused) || performance.now() > deadline) throw e;
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  async subscribe(filter: string, qos: 0 | 1, timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no SUBACK for ${filter} within ${timeoutMs} ms`)), timeoutMs);
        this.onSuback = (codes) => {
          this.onSuback = null;
          if (codes.length === 0) reject(new Error(`connection closed before SUBACK (${this.closeReason})`));
          else if (codes.some((c) => c >= 0x80)) reject(new Error(`SUBACK refused ${filter} (0x${codes[0]!.toString(16)})`));
          else resolve();
        };
        this.sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos }] }));
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends the PUBACKs held while autoAck was false, and acknowledges from now on. */
  releaseAcks(): void {
    this.autoAck = true;
    if (this.held.length === 0 || this.closeReason !== null) return;
    const b = Buffer.allocUnsafe(this.held.length * 4);
    this.held.forEach((id, i) => {
      b[i * 4] = 0x40;
      b[i * 4 + 1] = 0x02;
      b.writeUInt16BE(id, i * 4 + 2);
    });
    this.held = [];
    this.sock.write(b);
  }

  /** DISCONNECT, then wait (up to 2 s) for the broker to close the socket. */
  async disconnect(): Promise<void> {
    if (this.closeReason === null) {
      this.sock.end(Buffer.from([0xe0, 0x00]));
      const t = setTimeout(() => this.sock.destroy(), 2000);
      await this.closedP;
      clearTimeout(t);
    }
  }

  destroy(): void {
    this.sock.destroy();
  }

  // ---------------------------------------------------------------- publisher

  /** Publish QoS 1 with a window; resolves when all are acknowledged or the connection closes. */
  publish(o: PublishOptions): Promise<PublishResult> {
    if (this.pubOpts !== null) throw new Error('already publishing');
    this.pubOpts = o;
    const payload = Buffer.alloc(Math.max(DURABLE_MIN_PAYLOAD, o.payload), 0x61);
    payload.writeUInt32BE(o.pubIndex, 4);
    const one = mqttPacket.generate({ cmd: 'publish', topic: o.topic, payload, qos: 1, messageId: 1, retain: false, dup: false });
    this.pktLen = one.length;
    this.payOff = one.length - payload.length;
    this.pidOff = this.payOff - 2;
    const copies = Math.min(o.window, 1024);
    this.template = Buffer.alloc(one.length * copies);
    for (let i = 0; i < copies; i++) one.copy(this.template, i * one.length);
    this.seq = o.firstSeq ?? 0;
    const p = new Promise<PublishResult>((resolve) => {
      this.pubDone = resolve;
    });
    if (this.closeReason !== null) this.finishPublish(true);
    else this.fill();
    return p;
  }

  /** Stop sending new PUBLISH; publish() resolves once those in flight are acknowledged. */
  stopPublishing(): void {
    this.stopPub = true;
    if (this.inflight === 0) this.finishPublish(false);
  }

  get sent(): number {
    return this.pubSent;
  }

  get acked(): number {
    return this.pubAcked;
  }

  private finishPublish(closed: boolean): void {
    const done = this.pubDone;
    if (done === null) return;
    this.pubDone = null;
    done({ sent: this.pubSent, acked: this.pubAcked, closed });
  }

  private fill(): void {
    const o = this.pubOpts;
    if (o === null || this.closeReason !== null) return;
    if (this.stopPub || this.pubSent >= o.count) {
      if (this.inflight === 0) this.finishPublish(false);
      return;
    }
    let free = Math.min(o.window - this.inflight, o.count - this.pubSent);
    const tmpl = this.template!;
    const perBuf = tmpl.length / this.pktLen;
    while (free > 0) {
      const n = Math.min(free, perBuf);
      const out = Buffer.allocUnsafe(n * this.pktLen);
      tmpl.copy(out, 0, 0, n * this.pktLen);
      const t = nowNs();
      const s = Math.floor(t / 1e9);
      const ns = t - s * 1e9;
      for (let k = 0, off = 0; k < n; k++, off += this.pktLen) {
        let pid = this.nextPid;
        do pid = pid >= 65535 ? 1 : pid + 1;
        while (this.pidSeq[pid] !== -1);
        this.nextPid = pid;
        this.pidSeq[pid] = this.seq;
        out.writeUInt16BE(pid, off + this.pidOff);
        out.writeUInt32BE(this.seq, off + this.payOff);
        out.writeUInt32BE(s, off + this.payOff + 8);
        out.writeUInt32BE(ns, off + this.payOff + 12);
        this.seq++;
      }
      this.inflight += n;
      this.pubSent += n;
      free -= n;
      this.sock.write(out);
    }
  }

  // ---------------------------------------------------------------- input

  private onData(chunk: Buffer): void {
    let data = chunk;
    if (this.rest !== null) {
      data = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    const len = data.length;
    let nAcks = 0;
    let pubacks = 0;
    let pos = 0;
    while (pos + 2 <= len) {
      const b0 = data[pos]!;
      const header = readFixedHeader(data, pos);
      if (header === 'incomplete') break;
      if (header === 'malformed') {
        this.sock.destroy(new Error('malformed remaining length from broker'));
        return;
      }
      const { bodyStart: i, remaining: rl } = header;
      const end = i + rl;
      if (end > len) break;
      const type = b0 >> 4;
      if (type === 3) {
        const qos = (b0 >> 1) & 3;
        let p = i + 2 + data.readUInt16BE(i);
        if (qos > 0) {
          const id = data.readUInt16BE(p);
          if (this.autoAck) {
            if (nAcks * 4 + 4 > this.ackBuf.length) {
              const nb = Buffer.alloc(this.ackBuf.length * 2);
              this.ackBuf.copy(nb);
              this.ackBuf = nb;
            }
            const a = nAcks * 4;
            this.ackBuf[a] = 0x40;
            this.ackBuf[a + 1] = 0x02;
            this.ackBuf.writeUInt16BE(id, a + 2);
            nAcks++;
          } else {
            this.held.push(id);
          }
          p += 2;
        }
        this.received++;
        if (this.onMessage !== null && end - p >= 8) {
          this.onMessage(data.readUInt32BE(p), data.readUInt32BE(p + 4), (b0 & 8) !== 0, qos);
        }
      } else if (type === 4) {
        const id = data.readUInt16BE(i);
        const seq = this.pidSeq[id]!;
        if (seq === -1) {
          this.unexpectedAcks++;
        } else {
          this.pidSeq[id] = -1;
          this.inflight--;
          this.pubAcked++;
          pubacks++;
          this.pubOpts?.onAck?.(seq);
        }
      } else if (type === 2) {
        this.onConnack?.(data[i + 1]!, (data[i]! & 1) === 1);
      } else if (type === 9) {
        const codes: number[] = [];
        for (let k = i + 2; k < end; k++) codes.push(data[k]!);
        this.onSuback?.(codes);
      }
      pos = end;
    }
    if (pos < len) this.rest = Buffer.from(data.subarray(pos));
    if (nAcks > 0 && this.closeReason === null) this.sock.write(Buffer.from(this.ackBuf.subarray(0, nAcks * 4)));
    if (pubacks > 0) this.fill();
  }
}
