// Load generator worker. Runs in a worker_thread: opens raw TCP sockets to the
// broker, sends packets pre-encoded once with mqtt-packet (only the timestamp
// and packet-id bytes are patched per message) and parses the broker's stream
// with a minimal hand-written length scanner (PUBLISH / PUBACK / CONNACK /
// SUBACK). Every PUBLISH payload starts with the send time (process.hrtime,
// seconds + nanoseconds as two uint32), which is the same monotonic clock in
// every thread, so the receiving worker computes the end-to-end latency.
//
// Protocol with the harness (run.ts):
//   workerData: WorkerInit       -> connect + subscribe every client
//   post {type:'ready'}           or {type:'fatal', error}
//   recv {type:'go', ...times}    -> publish from startNs to endNs, count what
//                                    arrives in [warmEndNs, endNs); live totals
//                                    go to the shared counters. May come again once
//                                    a window has ended (interleave.ts): publishing
//                                    resumes, the window counts add up
//   recv {type:'finish'}          -> post {type:'result', ...}, close sockets
import net from 'node:net';
import { BENCH_PASSWORD, BENCH_USER } from './credentials.js';
import { readFixedHeader } from './frames.js';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import mqttPacket from 'mqtt-packet';
import { bucketOf, newHist } from './hist.js';

export type ClientSpec =
  | { id: string; role: 'pub'; topic: string; qos: 0 | 1; window: number }
  | { id: string; role: 'sub'; filter: string; qos: 0 | 1; /** false: persistent session (clean_session=0) */ clean?: boolean };

export interface WorkerInit {
  host: string;
  port: number;
  clients: ClientSpec[];
  payloadSize: number;
  /** QoS0: messages per socket write. */
  batch: number;
  /** Upper bound of messages per publisher (the run is also bounded by time). */
  maxPerPublisher: number;
  /** Deliveries expected per published message (for the QoS0 in-flight cap). */
  fanout: number;
  /** QoS0 end-to-end cap: publishers pause while more than this many deliveries
   *  (published × fan-out − received) are outstanding (0 = off: back-pressure only). */
  qos0Inflight: number;
  /** QoS1 publishers: at most this many messages per second each (0 = closed loop: as fast as PUBACKs come). */
  ratePerPublisher: number;
  /** Shared counters: Int32Array over this buffer, slot 2*i = sent, 2*i+1 = received. */
  counters: SharedArrayBuffer;
  /** This worker's index into counters. */
  index: number;
}

export interface GoMsg {
  type: 'go';
  startNs: number;
  warmEndNs: number;
  endNs: number;
}

/** Sent by the harness once deliveries have drained (or the drain timed out). */
export interface FinishMsg {
  type: 'finish';
}

export interface WorkerResult {
  type: 'result';
  sent: number;
  sentInWindow: number;
  acked: number;
  received: number;
  receivedInWindow: number;
  hist: Uint32Array;
  /** Event-loop utilisation of this worker during the window (0..1). */
  elu: number;
  errors: string[];
}

export type WorkerMsg =
  | { type: 'ready' }
  | { type: 'fatal'; error: string }
  | { type: 'error'; error: string }
  | WorkerResult;

/** Monotonic nanoseconds as a double (exact below 2^53 ns ≈ 104 days uptime). */
export function nowNs(): number {
  const t = process.hrtime();
  return t[0] * 1e9 + t[1];
}

const DISCONNECT = Buffer.from([0xe0, 0x00]);

interface Stats {
  counters: Int32Array;
  sentSlot: number;
  recvSlot: number;
  sent: number;
  sentInWindow: number;
  acked: number;
  received: number;
  receivedInWindow: number;
  hist: Uint32Array;
  errors: string[];
}

interface Times {
  startNs: number;
  warmEndNs: number;
  endNs: number;
}

class BenchClient {
  private readonly sock: net.Socket;
  private rest: Buffer | null = null;
  private stopped = false;
  private closing = false;
  private onConnack: ((err: Error | null) => void) | null = null;
  private onSuback: ((err: Error | null) => void) | null = null;
  // publisher state
  private template: Buffer | null = null;
  private pktLen = 0;
  private tsOff = 0;
  private pidOff = 0;
  private inflight = 0;
  private pid = 0;
  private sentHere = 0;
  /** sentHere when the window began (the fixed rate counts from there). */
  private sentAtGo = 0;
  private times: Times = { startNs: Infinity, warmEndNs: Infinity, endNs: -Infinity };
  // subscriber: PUBACK scratch buffer, grown on demand
  private ackBuf = Buffer.alloc(0);

  constructor(
    private readonly spec: ClientSpec,
    private readonly init: WorkerInit,
    private readonly stats: Stats,
  ) {
    this.sock = net.connect({ host: init.host, port: init.port });
    this.sock.setNoDelay(true);
    this.sock.on('data', (c: Buffer) => this.onData(c));
    this.sock.on('error', (e) => this.fail(`socket error: ${e.message}`));
    this.sock.on('close', () => this.fail('connection closed by broker'));
    if (spec.role === 'pub') this.buildTemplate(spec);
  }

  private fail(msg: string): void {
    if (this.closing) return;
    this.closing = true;
    this.stopped = true;
    const err = new Error(`${this.spec.id}: ${msg}`);
    this.onConnack?.(err);
    this.onSuback?.(err);
    this.stats.errors.push(err.message);
    parentPort?.postMessage({ type: 'error', error: err.message } satisfies WorkerMsg);
  }

  private buildTemplate(spec: Extract<ClientSpec, { role: 'pub' }>): void {
    const payload = Buffer.alloc(Math.max(8, this.init.payloadSize), 0x61);
    const one = mqttPacket.generate({
      cmd: 'publish',
      topic: spec.topic,
      payload,
      qos: spec.qos,
      messageId: spec.qos > 0 ? 1 : undefined,
      retain: false,
      dup: false,
    });
    this.pktLen = one.length;
    this.tsOff = one.length - payload.length; // payload is last (MQTT 3.1.1: no properties)
    this.pidOff = this.tsOff - 2;
    const copies = spec.qos > 0 ? spec.window : this.init.batch;
    this.template = Buffer.alloc(one.length * copies);
    for (let i = 0; i < copies; i++) one.copy(this.template, i * one.length);
  }

  async connect(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.onConnack = (err) => {
        this.onConnack = null;
        if (err) reject(err);
        else resolve();
      };
      this.sock.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: this.spec.role !== 'sub' || this.spec.clean !== false,
          clientId: this.spec.id,
          username: BENCH_USER,
          password: Buffer.from(BENCH_PASSWORD),
          keepalive: 60,
        }),
      );
    });
    if (this.spec.role === 'sub') {
      const spec = this.spec;
      await new Promise<void>((resolve, reject) => {
        this.onSuback = (err) => {
          this.onSuback = null;
          if (err) reject(err);
          else resolve();
        };
        this.sock.write(
          mqttPacket.generate({
            cmd: 'subscribe',
            messageId: 1,
            subscriptions: [{ topic: spec.filter, qos: spec.qos }],
          }),
        );
      });
    }
  }

  /** Arms the publisher (again, after an earlier window: interleave.ts); subscribers only need the window times. */
  go(times: Times): void {
    if (this.closing) return;
    this.times = times;
    this.stopped = false;
    this.sentAtGo = this.sentHere;
    if (this.spec.role !== 'pub') return;
    const delayMs = Math.max(0, (times.startNs - nowNs()) / 1e6);
    setTimeout(() => {
      if (this.spec.role === 'pub' && this.spec.qos === 0) this.pump0();
      else this.fill1();
    }, delayMs);
  }

  /** Copies n pre-encoded PUBLISH packets and patches timestamp (+ packet ids). */
  private makeBatch(n: number, t: number): Buffer {
    const len = n * this.pktLen;
    const out = Buffer.allocUnsafe(len);
    this.template!.copy(out, 0, 0, len);
    const s = Math.floor(t / 1e9);
    const ns = t - s * 1e9;
    const qos1 = this.spec.role === 'pub' && this.spec.qos > 0;
    for (let k = 0, off = 0; k < n; k++, off += this.pktLen) {
      out.writeUInt32BE(s, off + this.tsOff);
      out.writeUInt32BE(ns, off + this.tsOff + 4);
      if (qos1) {
        this.pid = this.pid >= 65535 ? 1 : this.pid + 1;
        out.writeUInt16BE(this.pid, off + this.pidOff);
      }
    }
    return out;
  }

  private countSent(n: number, t: number): void {
    this.sentHere += n;
    this.stats.sent += n;
    Atomics.add(this.stats.counters, this.stats.sentSlot, n);
    if (t >= this.times.warmEndNs && t < this.times.endNs) this.stats.sentInWindow += n;
  }

  /** QoS0: write batches until the socket pushes back, then wait for 'drain'. */
  private readonly pump0 = (): void => {
    const max = this.init.maxPerPublisher;
    for (let i = 0; i < 16; i++) {
      if (this.stopped) return;
      const t = nowNs();
      if (t >= this.times.endNs || this.sentHere >= max) {
        this.stopped = true;
        return;
      }
      if (this.init.qos0Inflight > 0 && this.overCap()) {
        setTimeout(this.pump0, 1);
        return;
      }
      const n = Math.min(this.init.batch, max - this.sentHere);
      const out = this.makeBatch(n, t);
      this.countSent(n, t);
      if (!this.sock.write(out)) {
        this.sock.once('drain', this.pump0);
        return;
      }
    }
    setImmediate(this.pump0); // let this worker's other sockets run
  };

  /** True while the whole run has more than qos0Inflight deliveries outstanding. */
  private overCap(): boolean {
    const c = this.stats.counters;
    let sent = 0;
    let recv = 0;
    for (let i = 0; i < c.length; i += 2) {
      sent += Atomics.load(c, i);
      recv += Atomics.load(c, i + 1);
    }
    return sent * this.init.fanout - recv > this.init.qos0Inflight;
  }

  /** Fixed rate (ratePerPublisher): fill1 again every millisecond while the run lasts. */
  private tick: NodeJS.Timeout | null = null;

  /** QoS1: keep `window` PUBLISH unacknowledged; PUBACKs free slots (and, at a fixed rate, time). */
  private fill1(): void {
    if (this.stopped || this.spec.role !== 'pub') return;
    const free = this.spec.window - this.inflight;
    if (free <= 0) return;
    const t = nowNs();
    const max = this.init.maxPerPublisher;
    if (t >= this.times.endNs || this.sentHere >= max) {
      this.stopped = true;
      if (this.tick !== null) clearInterval(this.tick);
      this.tick = null;
      return;
    }
    let n = Math.min(free, max - this.sentHere);
    const rate = this.init.ratePerPublisher;
    if (rate > 0) {
      this.tick ??= setInterval(() => this.fill1(), 1);
      n = Math.min(n, Math.floor(((t - this.times.startNs) / 1e9) * rate) - (this.sentHere - this.sentAtGo));
      if (n <= 0) return;
    }
    this.inflight += n;
    this.countSent(n, t);
    this.sock.write(this.makeBatch(n, t));
  }

  private onData(chunk: Buffer): void {
    let data = chunk;
    if (this.rest !== null) {
      data = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    const t = nowNs();
    const inWin = t >= this.times.warmEndNs && t < this.times.endNs;
    const stats = this.stats;
    const hist = stats.hist;
    const len = data.length;
    let nAcks = 0;
    let pubacks = 0;
    const received0 = stats.received;
    let pos = 0;
    while (pos + 2 <= len) {
      const b0 = data[pos]!;
      const header = readFixedHeader(data, pos);
      if (header === 'incomplete') break;
      if (header === 'malformed') {
        this.fail('malformed remaining length from broker');
        this.sock.destroy();
        return;
      }
      const { bodyStart: i, remaining: rl } = header;
      const end = i + rl;
      if (end > len) break;
      const type = b0 >> 4;
      if (type === 3) {
        // PUBLISH: topic len, topic, [packet id], payload (timestamp first)
        const qos = (b0 >> 1) & 3;
        let p = i + 2 + data.readUInt16BE(i);
        if (qos > 0) {
          if (nAcks * 4 + 4 > this.ackBuf.length) this.growAcks();
          const a = nAcks * 4;
          this.ackBuf[a] = 0x40;
          this.ackBuf[a + 1] = 0x02;
          this.ackBuf[a + 2] = data[p]!;
          this.ackBuf[a + 3] = data[p + 1]!;
          nAcks++;
          p += 2;
        }
        stats.received++;
        if (inWin) {
          stats.receivedInWindow++;
          if (end - p >= 8) {
            const sent = data.readUInt32BE(p) * 1e9 + data.readUInt32BE(p + 4);
            hist[bucketOf((t - sent) / 1000)]!++;
          }
        }
      } else if (type === 4) {
        pubacks++;
      } else if (type === 2) {
        const rc = data[i + 1];
        this.onConnack?.(rc === 0 ? null : new Error(`${this.spec.id}: CONNACK return code ${rc}`));
      } else if (type === 9) {
        let err: Error | null = null;
        for (let k = i + 2; k < end; k++) {
          if (data[k]! >= 0x80) err = new Error(`${this.spec.id}: SUBACK refused (0x${data[k]!.toString(16)})`);
        }
        this.onSuback?.(err);
      }
      pos = end;
    }
    if (stats.received !== received0) Atomics.add(stats.counters, stats.recvSlot, stats.received - received0);
    if (pos < len) this.rest = Buffer.from(data.subarray(pos));
    if (nAcks > 0 && !this.closing) this.sock.write(Buffer.from(this.ackBuf.subarray(0, nAcks * 4)));
    if (pubacks > 0) {
      this.inflight -= pubacks;
      stats.acked += pubacks;
      this.fill1();
    }
  }

  private growAcks(): void {
    const n = Buffer.alloc(Math.max(4096, this.ackBuf.length * 2));
    this.ackBuf.copy(n);
    this.ackBuf = n;
  }

  close(): void {
    this.stopped = true;
    if (this.closing) return;
    this.closing = true;
    this.sock.end(DISCONNECT);
    setTimeout(() => this.sock.destroy(), 500).unref();
  }
}

async function workerMain(init: WorkerInit): Promise<void> {
  const port = parentPort!;
  const stats: Stats = {
    counters: new Int32Array(init.counters),
    sentSlot: 2 * init.index,
    recvSlot: 2 * init.index + 1,
    sent: 0,
    sentInWindow: 0,
    acked: 0,
    received: 0,
    receivedInWindow: 0,
    hist: newHist(),
    errors: [],
  };
  const clients = init.clients.map((spec) => new BenchClient(spec, init, stats));
  try {
    await Promise.all(clients.map((c) => c.connect()));
  } catch (e) {
    port.postMessage({ type: 'fatal', error: (e as Error).message } satisfies WorkerMsg);
    for (const c of clients) c.close();
    return;
  }
  let elu = 0;
  let eluActive = 0;
  let eluIdle = 0;
  // errors before 'go' were fatal; from here on they are reported with the result
  stats.errors.length = 0;
  port.postMessage({ type: 'ready' } satisfies WorkerMsg);

  port.on('message', (msg: GoMsg | FinishMsg) => {
    if (msg.type === 'finish') {
      const result: WorkerResult = {
        type: 'result',
        sent: stats.sent,
        sentInWindow: stats.sentInWindow,
        acked: stats.acked,
        received: stats.received,
        receivedInWindow: stats.receivedInWindow,
        hist: stats.hist,
        elu,
        errors: stats.errors.slice(0, 20),
      };
      for (const c of clients) c.close();
      port.postMessage(result);
      return;
    }
    const times: Times = { startNs: msg.startNs, warmEndNs: msg.warmEndNs, endNs: msg.endNs };
    for (const c of clients) c.go(times);
    let elu0 = performance.eventLoopUtilization();
    setTimeout(() => {
      elu0 = performance.eventLoopUtilization();
    }, Math.max(0, (msg.warmEndNs - nowNs()) / 1e6));
    setTimeout(() => {
      // Over every window so far (one, but for interleave.ts).
      const w = performance.eventLoopUtilization(elu0);
      eluActive += w.active;
      eluIdle += w.idle;
      elu = eluActive / Math.max(1e-9, eluActive + eluIdle);
    }, Math.max(0, (msg.endNs - nowNs()) / 1e6));
  });
}

if (!isMainThread && parentPort !== null) {
  void workerMain(workerData as WorkerInit);
}
