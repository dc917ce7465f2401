// Memory scenarios of the e2e bench (issue 15 targets), run by run.ts (`--memory`).
//
// Everything is measured from outside: the broker's VmRSS (process tree, /proc/<pid>/status,
// proc.ts). The baseline is taken after start, one warm-up connection (CONNECT, SUBSCRIBE, a
// QoS 1 PUBLISH to itself, DISCONNECT) and 12 s of quiet; "after" is sampled once the load is done
// and RSS has settled (stable within 0.5% or 256 kB over 1.25 s, at most 8 s). bytes/item =
// (after - baseline) / items. Node brokers (StrataMQ, Aedes) are measured as they are: garbage
// not yet collected counts, nothing is forced.
//
//   mretained  N (200k) retained topics mem/r/<i%100>/<i>, 100-byte payloads, QoS 0 from one
//              client (pre-encoded, written with socket back-pressure), then a QoS 1
//              PUBLISH/PUBACK on the same connection as a barrier: publish time = first byte
//              written -> PUBACK. RSS growth, bytes per message and beyond the payload.
//   mdelivery  on the same broker: a new client subscribes mem/r/# (QoS 0) and receives all N:
//              count, msgs/s (SUBSCRIBE -> last one), peak RSS during the delivery. Then the
//              broker is stopped with SIGTERM and started on the same state (StrataMQ: its data
//              dir; Mosquitto: persistence true; Aedes: in-memory persistence, n/a) and the same
//              subscriber comes again: spawn -> first retained delivery, and the whole delivery.
//   msubs      100k distinct filters (mem/s/<i>/x, mem/s/<i>/+, mem/s/<i>/# in turn) subscribed
//              by one client, 100 per SUBSCRIBE (QoS 1), 10 SUBSCRIBE unacknowledged at most.
//   mconns     15k idle MQTT 3.1.1 connections (clean session, keepalive 600), 100 CONNECTs
//              without CONNACK at most at a time.
//   msessions  100k persistent sessions (clean_session=0) that each subscribe mem/p/<i> QoS 1
//              and disconnect; RSS with all of them offline.
//   mflood     while one client publishes N retained (mem/f/...) QoS 0 as fast as the broker
//              reads them, another does QoS 1 round trips to itself on mem/rt every 10 ms:
//              p50/p99/max publish -> receive.
//   midle      RSS idle after start (the baseline: warm-up connection, 12 s quiet), and peak RSS / msgs/s of
//              the fanin scenario's load (QoS 0, 10 publishers -> 1 subscriber, run.ts).
//
// Every broker process is started through brokers.ts (killAllBrokersSync ends them on any exit);
// each row stops its broker and removes its directory.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import mqttPacket from 'mqtt-packet';
import { BENCH_PASSWORD, BENCH_USER } from './credentials.js';
import { BROKER_LABEL, makeTempDir, removeTempDir, startBroker, tail, type BrokerName, type BrokerOptions, type RunningBroker } from './brokers.js';
import { readFixedHeader } from './frames.js';
import { RssSampler, treeRssKb } from './proc.js';
import { fmtMs, fmtRate, ratio, table } from './table.js';
import { errMsg, sleep, timeout } from './util.js';

export const MEMORY_SCENARIOS = ['mretained', 'mdelivery', 'msubs', 'mconns', 'msessions', 'mflood', 'midle'] as const;
export type MemoryName = (typeof MEMORY_SCENARIOS)[number];

export interface MemoryOpts {
  /** mretained / mdelivery: retained topics (--memory-retained) */
  retained: number;
  /** msubs: filters */
  subs: number;
  /** mconns: idle connections */
  conns: number;
  /** msessions: offline persistent sessions */
  sessions: number;
  /** mflood: retained messages in the flood */
  flood: number;
}

export const RETAINED_PAYLOAD = 100;

export interface MemoryCell {
  broker: BrokerName;
  scenario: MemoryName;
  /** mdelivery: 'live' (the broker that took them) or 'restart' (started again on its state) */
  variant?: 'live' | 'restart';
  status: 'ok' | 'error' | 'skipped';
  error?: string;
  logTail?: string;
  notes?: string[];
  /** items asked for (retained messages, filters, connections, sessions) */
  n?: number;
  /** items the broker took (SUBACK granted, CONNACK 0, ...) */
  done?: number;
  baseRssMB?: number | null;
  rssMB?: number | null;
  growthMB?: number | null;
  bytesPerItem?: number | null;
  /** mretained: bytesPerItem - payload */
  beyondPayload?: number | null;
  /** time to load the items (publish, subscribe, connect), ms */
  loadMs?: number;
  /** items per second while loading */
  loadPerSec?: number;
  // mdelivery
  received?: number;
  firstMs?: number;
  deliveryMs?: number;
  deliveryPerSec?: number;
  peakRssMB?: number | null;
  /** event-loop utilisation of the harness (the receiving client) during the delivery: near 1 = client-bound */
  clientElu?: number;
  /** restart: SIGTERM -> exit, ms */
  stopMs?: number;
  /** restart: spawn -> CONNACK, spawn -> first retained PUBLISH */
  connackMs?: number;
  restartFirstMs?: number;
  // mflood
  samples?: number;
  lostProbes?: number;
  p50Ms?: number | null;
  p99Ms?: number | null;
  maxMs?: number | null;
  // midle
  idleRssMB?: number | null;
  faninPeakRssMB?: number | null;
  faninMsgsPerSec?: number;
  faninError?: string;
}

export interface FaninResult {
  peakRssMB: number | null | undefined;
  msgsPerSec: number | undefined;
  error?: string;
}

export interface MemoryCtx {
  brokerOpts: BrokerOptions;
  m: MemoryOpts;
  say(line: string): void;
  /** run.ts's fanin scenario on a fresh broker (midle's peak-RSS-under-load half). */
  fanin(b: BrokerName): Promise<FaninResult>;
}

const MB = (kb: number | null): number | null => (kb === null ? null : kb / 1024);

/** Soft limit of open files of this process (/proc/self/limits), null if unknown. */
export function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m?.[1] === undefined ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * Samples (250 ms apart) that must agree for RSS to count as settled: 8 s. A broker that
 * tidies up a few seconds after the load (a garbage collection once it goes quiet, then the young
 * generation given back once V8 sees 5 s without allocation) is measured after it, as a user
 * watching it would see it; one that holds its memory is measured the same.
 */
const SETTLE_SAMPLES = 33;
/** Quiet time after the warm-up connection before the baseline is sampled, ms. */
const BASELINE_IDLE_MS = 12_000;
/** The longest wait for RSS to settle after a load, ms. */
const SETTLE_MAX_MS = 25000;

/**
 * RSS once it has settled: sampled every 250 ms until the last SETTLE_SAMPLES samples lie
 * within max(256 kB, 0.5%), or maxMs passed; the last sample, in kB.
 */
async function settledRssKb(pid: number, maxMs = SETTLE_MAX_MS, unsettled?: () => void): Promise<number | null> {
  const t0 = performance.now();
  const win: number[] = [];
  let last: number | null = null;
  for (;;) {
    last = treeRssKb(pid);
    if (last === null) return null;
    win.push(last);
    if (win.length > SETTLE_SAMPLES) win.shift();
    if (win.length === SETTLE_SAMPLES) {
      const lo = Math.min(...win);
      const hi = Math.max(...win);
      if (hi - lo <= Math.max(256, hi * 0.005)) return last;
    }
    if (performance.now() - t0 > maxMs) {
      unsettled?.();
      return last;
    }
    await sleep(250);
  }
}

/** settledRssKb for the "after" sample of a row; notes it on the cell when RSS still moved after SETTLE_MAX_MS. */
function settledAfter(pid: number, cell: MemoryCell): Promise<number | null> {
  return settledRssKb(pid, SETTLE_MAX_MS, () => (cell.notes ??= []).push(`RSS still moving ${SETTLE_MAX_MS / 1000} s after the load (last sample used)`));
}

// ---------------------------------------------------------------- a small raw client

interface ClientOpts {
  port: number;
  clientId: string;
  clean: boolean;
  keepalive?: number;
  /** send the bench credentials (strata-secure refuses anonymous clients) */
  auth?: boolean;
}

/** Thrown when nothing listens (yet) on the port. */
class Refused extends Error {}

/**
 * MQTT 3.1.1 over one socket, packets encoded with mqtt-packet, incoming frames scanned by
 * their fixed header only: counts PUBLISH (acknowledging QoS 1), resolves SUBACK / PUBACK by
 * packet id. Light enough to hold 15k of them open.
 */
class MemClient {
  readonly sock: net.Socket;
  closed = false;
  received = 0;
  /** Called per PUBLISH with the time it was read and its payload. */
  onPublish: ((at: number, data: Buffer, payloadStart: number, end: number) => void) | null = null;
  private rest: Buffer | null = null;
  private connack: ((rc: number) => void) | null = null;
  private readonly waits = new Map<number, (codes: number[]) => void>();
  private readonly closeWaiters: (() => void)[] = [];

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => this.onData(c));
    const done = (): void => {
      if (this.closed) return;
      this.closed = true;
      this.connack?.(-1);
      for (const w of this.waits.values()) w([]);
      this.waits.clear();
      for (const w of this.closeWaiters.splice(0)) w();
    };
    sock.on('error', done);
    sock.on('close', done);
  }

  static connect(o: ClientOpts, timeoutMs = 15_000): Promise<MemClient> {
    return new Promise<MemClient>((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: o.port });
      const c = new MemClient(sock);
      let connected = false;
      const timer = setTimeout(() => {
        c.destroy();
        reject(new Error(`${o.clientId}: no CONNACK within ${timeoutMs} ms`));
      }, timeoutMs);
      c.connack = (rc) => {
        c.connack = null;
        clearTimeout(timer);
        if (rc === 0) resolve(c);
        else {
          c.destroy();
          reject(rc < 0 ? (connected ? new Error(`${o.clientId}: closed before CONNACK`) : new Refused('refused')) : new Error(`${o.clientId}: CONNACK return code ${rc}`));
        }
      };
      sock.once('connect', () => {
        connected = true;
        sock.write(
          mqttPacket.generate({
            cmd: 'connect',
            protocolId: 'MQTT',
            protocolVersion: 4,
            clean: o.clean,
            clientId: o.clientId,
            keepalive: o.keepalive ?? 600,
            ...(o.auth === true ? { username: BENCH_USER, password: Buffer.from(BENCH_PASSWORD) } : {}),
          }),
        );
      });
    });
  }

  /** connect(), retrying every 2 ms while nothing listens, until deadline (performance.now()). */
  static async connectRetry(o: ClientOpts, deadline: number): Promise<MemClient> {
    for (;;) {
      try {
        return await MemClient.connect(o);
      } catch (e) {
        if (!(e instanceof Refused) || performance.now() > deadline) throw e;
      }
      await sleep(2);
    }
  }

  private wait(id: number, what: string, timeoutMs: number): Promise<number[]> {
    return new Promise<number[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waits.delete(id);
        reject(new Error(`no ${what} (id ${id}) within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waits.set(id, (codes) => {
        clearTimeout(timer);
        this.waits.delete(id);
        if (codes.length === 0 && this.closed) reject(new Error(`connection closed before ${what}`));
        else resolve(codes);
      });
    });
  }

  /** SUBSCRIBE with packet id `id`; resolves with the SUBACK return codes. */
  subscribe(filters: string[], qos: 0 | 1, id = 1, timeoutMs = 60_000): Promise<number[]> {
    const p = this.wait(id, 'SUBACK', timeoutMs);
    this.sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: id, subscriptions: filters.map((topic) => ({ topic, qos })) }));
    return p;
  }

  /** QoS 1 PUBLISH with packet id `id`, resolves on its PUBACK. */
  publish1(topic: string, payload: Buffer, id: number, timeoutMs = 300_000): Promise<number[]> {
    const p = this.wait(id, 'PUBACK', timeoutMs);
    this.sock.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId: id, retain: false, dup: false }));
    return p;
  }

  /** Write pre-encoded chunks, waiting for 'drain' whenever the socket buffer is full. */
  async writeAll(chunks: Buffer[]): Promise<void> {
    for (const c of chunks) {
      if (this.closed) throw new Error('connection closed while publishing');
      if (!this.sock.write(c)) {
        await new Promise<void>((r) => {
          const done = (): void => {
            this.sock.off('drain', done);
            r();
          };
          this.sock.on('drain', done);
          this.closeWaiters.push(done);
        });
      }
    }
  }

  /** DISCONNECT, then wait for the broker to close the socket (destroyed after 2 s). */
  async disconnect(): Promise<void> {
    if (this.closed) return;
    const p = new Promise<void>((r) => this.closeWaiters.push(r));
    this.sock.write(Buffer.from([0xe0, 0x00]));
    const t = setTimeout(() => this.sock.destroy(), 2000);
    await p;
    clearTimeout(t);
  }

  destroy(): void {
    this.sock.destroy();
  }

  private onData(chunk: Buffer): void {
    const at = performance.now();
    let data = chunk;
    if (this.rest !== null) {
      data = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    const len = data.length;
    let acks: number[] | null = null;
    let pos = 0;
    while (pos + 2 <= len) {
      const b0 = data[pos]!;
      const h = readFixedHeader(data, pos);
      if (h === 'incomplete') break;
      if (h === 'malformed') {
        this.sock.destroy(new Error('malformed remaining length from broker'));
        return;
      }
      const i = h.bodyStart;
      const end = i + h.remaining;
      if (end > len) break;
      const type = b0 >> 4;
      if (type === 3) {
        const qos = (b0 >> 1) & 3;
        let p = i + 2 + data.readUInt16BE(i);
        if (qos > 0) {
          (acks ??= []).push(data.readUInt16BE(p));
          p += 2;
        }
        this.received++;
        this.onPublish?.(at, data, p, end);
      } else if (type === 4) {
        this.waits.get(data.readUInt16BE(i))?.([0]);
      } else if (type === 9) {
        const codes: number[] = [];
        for (let k = i + 2; k < end; k++) codes.push(data[k]!);
        this.waits.get(data.readUInt16BE(i))?.(codes);
      } else if (type === 2) {
        this.connack?.(data[i + 1]!);
      }
      pos = end;
    }
    if (pos < len) this.rest = Buffer.from(data.subarray(pos));
    if (acks !== null && !this.closed) {
      const b = Buffer.allocUnsafe(acks.length * 4);
      acks.forEach((id, k) => {
        b[k * 4] = 0x40;
        b[k * 4 + 1] = 0x02;
        b.writeUInt16BE(id, k * 4 + 2);
      });
      this.sock.write(b);
    }
  }
}

/** N retained QoS 0 PUBLISH to `<prefix>/<i%100>/<i>`, encoded once, in chunks of about 64 kB. */
function encodeRetained(prefix: string, n: number): Buffer[] {
  const payload = Buffer.alloc(RETAINED_PAYLOAD, 0x72);
  const chunks: Buffer[] = [];
  let part: Buffer[] = [];
  let size = 0;
  for (let i = 0; i < n; i++) {
    const b = mqttPacket.generate({ cmd: 'publish', topic: `${prefix}/${i % 100}/${i}`, payload, qos: 0, retain: true, dup: false });
    part.push(b);
    size += b.length;
    if (size >= 65536) {
      chunks.push(Buffer.concat(part, size));
      part = [];
      size = 0;
    }
  }
  if (part.length > 0) chunks.push(Buffer.concat(part, size));
  return chunks;
}

/** Run `fn(i)` for i in [0, n) with at most `concurrency` running at once. */
async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const lane = async (): Promise<void> => {
    while (failed === null && next < n) {
      const i = next++;
      try {
        await fn(i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane));
  if (failed !== null) throw failed;
}

// ---------------------------------------------------------------- one broker, one row

/** A broker in a temp dir of our own (so it can be restarted on its state), plus its clients. */
class MemEnv {
  readonly dir: string;
  broker: RunningBroker | null = null;
  readonly clients = new Set<MemClient>();
  private n = 0;

  constructor(
    readonly name: BrokerName,
    readonly ctx: MemoryCtx,
    readonly tag: string,
  ) {
    this.dir = makeTempDir(`${name}-${tag}`);
  }

  async start(o: { port?: number; noWait?: boolean } = {}): Promise<RunningBroker> {
    // durable start: StrataMQ keeps its data dir here, Mosquitto runs with persistence true,
    // Aedes (no redis port) stays in memory
    this.broker = await startBroker(this.name, this.ctx.brokerOpts, { dir: this.dir, port: o.port, noWait: o.noWait });
    return this.broker;
  }

  id(role: string): string {
    return `m${process.pid}-${this.tag}-${role}-${this.n++}`;
  }

  opts(clientId: string, clean: boolean): ClientOpts {
    return { port: this.broker!.port, clientId, clean, auth: this.name === 'strata-secure' };
  }

  async connect(role: string, clean = true, clientId?: string): Promise<MemClient> {
    const c = await MemClient.connect(this.opts(clientId ?? this.id(role), clean));
    this.track(c);
    return c;
  }

  track(c: MemClient): MemClient {
    this.clients.add(c);
    c.sock.once('close', () => this.clients.delete(c));
    return c;
  }

  /** One connection that subscribes, gets its own QoS 1 message back and disconnects; then the baseline RSS (kB). */
  async warmUpAndBaseline(): Promise<number | null> {
    const c = await this.connect('warm');
    const got = new Promise<void>((r) => (c.onPublish = () => r()));
    await c.subscribe(['mem/warm'], 1);
    await c.publish1('mem/warm', Buffer.from('warm-up'), 2, 10_000);
    await timeout(got, 10_000, 'warm-up message');
    await c.disconnect();
    // Idle first, then as settled as the RSS after a load (the same rule for both ends): a broker
    // that tidies up in steps after its start (StrataMQ: a collection a few seconds in, the young
    // generation given back ~5 s later) otherwise gave a baseline from before or after the last
    // step by chance — 5–7 MB apart, ±60 B per filter over 100k.
    await sleep(BASELINE_IDLE_MS);
    return settledRssKb(this.broker!.pid);
  }

  logTail(): string | undefined {
    return this.broker === null ? undefined : tail(this.broker.logFile, 10) || undefined;
  }

  async clean(): Promise<void> {
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    await this.broker?.terminate(5000).catch(() => undefined);
    removeTempDir(this.dir);
  }
}

function growth(cell: MemoryCell, baseKb: number | null, afterKb: number | null, items: number): void {
  cell.baseRssMB = MB(baseKb);
  cell.rssMB = MB(afterKb);
  if (baseKb !== null && afterKb !== null) {
    cell.growthMB = (afterKb - baseKb) / 1024;
    cell.bytesPerItem = items > 0 ? ((afterKb - baseKb) * 1024) / items : null;
  }
}

/**
 * Subscribe `filter` and count PUBLISH until `n` arrived, nothing came for 5 s, or limitMs.
 * Times from the SUBSCRIBE written; `first` / `last` are performance.now() values.
 */
async function receiveAll(c: MemClient, filter: string, n: number, limitMs: number): Promise<{ received: number; subAt: number; first: number | null; last: number | null; elu: number }> {
  let first: number | null = null;
  let last: number | null = null;
  let doneRes: () => void = () => undefined;
  const done = new Promise<void>((r) => (doneRes = r));
  c.onPublish = (at) => {
    first ??= at;
    last = at;
    if (c.received >= n) doneRes();
  };
  const subAt = performance.now();
  const elu0 = performance.eventLoopUtilization();
  const sub = c.subscribe([filter], 0, 7);
  sub.catch(() => undefined);
  for (;;) {
    const r = await Promise.race([done.then(() => 'done'), sleep(250).then(() => 'tick')]);
    if (r === 'done' || c.closed) break;
    const now = performance.now();
    if (now - (last ?? subAt) > 5000 || now - subAt > limitMs) break;
  }
  const elu = performance.eventLoopUtilization(elu0).utilization;
  await sub.catch(() => undefined);
  return { received: c.received, subAt, first, last, elu };
}

// ---------------------------------------------------------------- mretained + mdelivery

async function runRetained(name: BrokerName, ctx: MemoryCtx, rows: { retained: boolean; delivery: boolean }): Promise<MemoryCell[]> {
  const n = ctx.m.retained;
  const cells: MemoryCell[] = [];
  const rcell: MemoryCell = { broker: name, scenario: 'mretained', status: 'error', n };
  const live: MemoryCell = { broker: name, scenario: 'mdelivery', variant: 'live', status: 'error', n };
  const again: MemoryCell = { broker: name, scenario: 'mdelivery', variant: 'restart', status: 'error', n };
  if (rows.retained) cells.push(rcell);
  if (rows.delivery) cells.push(live, again);
  let current: MemoryCell = rows.retained ? rcell : live;
  const env = new MemEnv(name, ctx, 'retained');
  try {
    const chunks = encodeRetained('mem/r', n);
    const b = await env.start();
    const base = await env.warmUpAndBaseline();
    const pub = await env.connect('pub');
    const t0 = performance.now();
    await timeout(
      (async () => {
        await pub.writeAll(chunks);
        await pub.publish1('mem/barrier', Buffer.from('barrier'), 1);
      })(),
      300_000,
      `publishing ${n} retained`,
    );
    rcell.loadMs = performance.now() - t0;
    rcell.loadPerSec = (n / rcell.loadMs) * 1000;
    await pub.disconnect();
    const after = await settledAfter(b.pid, rcell);
    growth(rcell, base, after, n);
    if (rcell.bytesPerItem != null) rcell.beyondPayload = rcell.bytesPerItem - RETAINED_PAYLOAD;
    rcell.done = n;
    rcell.status = 'ok';
    if (!rows.delivery) return cells;

    // delivery to a new # subscriber
    current = live;
    live.baseRssMB = MB(after);
    const sampler = new RssSampler(b.pid, 100);
    const sub = await env.connect('sub');
    const r = await receiveAll(sub, 'mem/r/#', n, 120_000);
    live.peakRssMB = MB(sampler.stop());
    live.received = r.received;
    live.clientElu = r.elu;
    live.firstMs = r.first === null ? undefined : r.first - r.subAt;
    if (r.last !== null) {
      live.deliveryMs = r.last - r.subAt;
      live.deliveryPerSec = (r.received / live.deliveryMs) * 1000;
    }
    await sub.disconnect();
    live.status = 'ok';
    if (r.received !== n) live.notes = [`received ${r.received} of ${n}`];

    // the same after a restart on the broker's own state
    current = again;
    if (name === 'aedes') {
      again.status = 'skipped';
      again.error = 'n/a: in-memory persistence, nothing survives a restart';
      return cells;
    }
    await sleep(300);
    const port = b.port;
    const stop = await b.terminate(60_000);
    again.stopMs = stop.ms;
    if (stop.forced) (again.notes ??= []).push('SIGTERM did not end it within 60 s: SIGKILL');
    const nb = await env.start({ port, noWait: true });
    const c = env.track(await MemClient.connectRetry(env.opts(env.id('sub2'), true), performance.now() + 120_000));
    again.connackMs = performance.now() - nb.spawnedAt;
    const sampler2 = new RssSampler(nb.pid, 100);
    const r2 = await receiveAll(c, 'mem/r/#', n, 120_000);
    again.peakRssMB = MB(sampler2.stop());
    again.received = r2.received;
    again.clientElu = r2.elu;
    if (r2.first !== null) {
      again.restartFirstMs = r2.first - nb.spawnedAt;
      again.firstMs = r2.first - r2.subAt;
    }
    if (r2.last !== null) {
      again.deliveryMs = r2.last - r2.subAt;
      again.deliveryPerSec = (r2.received / again.deliveryMs) * 1000;
    }
    await c.disconnect();
    again.status = 'ok';
    if (r2.received !== n) (again.notes ??= []).push(`received ${r2.received} of ${n}`);
  } catch (e) {
    current.error = errMsg(e);
    current.logTail = env.logTail();
    for (const c of cells) if (c.status === 'error' && c.error === undefined) c.error = `not reached (${current.scenario}${current.variant ? ` ${current.variant}` : ''} failed)`;
  } finally {
    await env.clean();
  }
  return cells;
}

// ---------------------------------------------------------------- one row

/**
 * One row on a fresh broker: `measure` fills the cell, which is 'ok' once it returns; on a
 * throw the error and the broker's log tail are kept. The broker is stopped and its files
 * removed either way.
 */
async function row(name: BrokerName, ctx: MemoryCtx, scenario: MemoryName, tag: string, n: number, measure: (cell: MemoryCell, env: MemEnv) => Promise<void>): Promise<MemoryCell> {
  const cell: MemoryCell = { broker: name, scenario, status: 'error', n };
  const env = new MemEnv(name, ctx, tag);
  try {
    await measure(cell, env);
    cell.status = 'ok';
  } catch (e) {
    cell.error = errMsg(e);
    cell.logTail = env.logTail();
  } finally {
    await env.clean();
  }
  return cell;
}

// ---------------------------------------------------------------- msubs

function runSubs(name: BrokerName, ctx: MemoryCtx): Promise<MemoryCell> {
  const n = ctx.m.subs;
  return row(name, ctx, 'msubs', 'subs', n, async (cell, env) => {
    const b = await env.start();
    const base = await env.warmUpAndBaseline();
    const c = await env.connect('subs');
    const PER = 100;
    const packets = Math.ceil(n / PER);
    const filter = (i: number): string => (i % 3 === 0 ? `mem/s/${i}/x` : i % 3 === 1 ? `mem/s/${i}/+` : `mem/s/${i}/#`);
    let granted = 0;
    const t0 = performance.now();
    // 10 lanes: at most 10 SUBSCRIBE unacknowledged
    await timeout(
      pool(packets, 10, async (k) => {
        const fs: string[] = [];
        for (let i = k * PER; i < Math.min(n, (k + 1) * PER); i++) fs.push(filter(i));
        const codes = await c.subscribe(fs, 1, (k % 65000) + 1);
        granted += codes.filter((x) => x < 0x80).length;
      }),
      300_000,
      `subscribing ${n} filters`,
    );
    cell.loadMs = performance.now() - t0;
    cell.loadPerSec = (n / cell.loadMs) * 1000;
    cell.done = granted;
    if (granted < n) cell.notes = [`${n - granted} filters refused in SUBACK`];
    const after = await settledAfter(b.pid, cell);
    growth(cell, base, after, granted);
    await c.disconnect();
  });
}

// ---------------------------------------------------------------- mconns

async function runConns(name: BrokerName, ctx: MemoryCtx): Promise<MemoryCell> {
  const n = ctx.m.conns;
  const limit = openFilesLimit();
  if (limit !== null && limit < n + 256) {
    return { broker: name, scenario: 'mconns', status: 'error', n, error: `open files limit ${limit} < ${n} connections + 256: raise ulimit -n (or --memory-conns)` };
  }
  return row(name, ctx, 'mconns', 'conns', n, async (cell, env) => {
    const b = await env.start();
    const base = await env.warmUpAndBaseline();
    const t0 = performance.now();
    await timeout(
      pool(n, 100, async (i) => {
        await env.connect('c', true, `m${process.pid}-idle-${i}`);
      }),
      300_000,
      `opening ${n} connections`,
    );
    cell.loadMs = performance.now() - t0;
    cell.loadPerSec = (n / cell.loadMs) * 1000;
    cell.done = env.clients.size;
    const after = await settledAfter(b.pid, cell);
    if (env.clients.size < n) cell.notes = [`${n - env.clients.size} connections closed while idle`];
    growth(cell, base, after, n);
  });
}

// ---------------------------------------------------------------- msessions

function runSessions(name: BrokerName, ctx: MemoryCtx): Promise<MemoryCell> {
  const n = ctx.m.sessions;
  return row(name, ctx, 'msessions', 'sessions', n, async (cell, env) => {
    const b = await env.start();
    const base = await env.warmUpAndBaseline();
    let granted = 0;
    const t0 = performance.now();
    await timeout(
      pool(n, 100, async (i) => {
        const c = await env.connect('p', false, `m${process.pid}-sess-${i}`);
        const codes = await c.subscribe([`mem/p/${i}`], 1);
        if (codes[0] !== undefined && codes[0] < 0x80) granted++;
        await c.disconnect();
      }),
      400_000,
      `creating ${n} persistent sessions`,
    );
    cell.loadMs = performance.now() - t0;
    cell.loadPerSec = (n / cell.loadMs) * 1000;
    cell.done = granted;
    if (granted < n) cell.notes = [`${n - granted} subscriptions refused`];
    const after = await settledAfter(b.pid, cell);
    growth(cell, base, after, n);
  });
}

// ---------------------------------------------------------------- mflood

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function runFlood(name: BrokerName, ctx: MemoryCtx): Promise<MemoryCell> {
  const n = ctx.m.flood;
  const cell: MemoryCell = { broker: name, scenario: 'mflood', status: 'error', n };
  const env = new MemEnv(name, ctx, 'flood');
  let probe: NodeJS.Timeout | undefined;
  try {
    const chunks = encodeRetained('mem/f', n);
    const b = await env.start();
    cell.baseRssMB = MB(await env.warmUpAndBaseline());
    const rt = await env.connect('rt');
    await rt.subscribe(['mem/rt'], 1);
    const sentAt = new Map<number, number>();
    const rtts: number[] = [];
    rt.onPublish = (at, data, p, end) => {
      if (end - p < 4) return;
      const seq = data.readUInt32BE(p);
      const s = sentAt.get(seq);
      if (s === undefined) return;
      sentAt.delete(seq);
      rtts.push(at - s);
    };
    const pub = await env.connect('pub');
    const sampler = new RssSampler(b.pid, 100);
    let seq = 0;
    const payload = Buffer.alloc(8);
    const sendProbe = (): void => {
      if (rt.closed) return;
      payload.writeUInt32BE(seq, 0);
      sentAt.set(seq, performance.now());
      const pkt = mqttPacket.generate({ cmd: 'publish', topic: 'mem/rt', payload, qos: 1, messageId: (seq % 65000) + 1, retain: false, dup: false });
      rt.sock.write(pkt); // its PUBACK is not awaited: the round trip is publish -> own delivery
      seq++;
    };
    const t0 = performance.now();
    probe = setInterval(sendProbe, 10);
    sendProbe();
    await timeout(
      (async () => {
        await pub.writeAll(chunks);
        await pub.publish1('mem/barrier', Buffer.from('barrier'), 1);
      })(),
      300_000,
      `publishing ${n} retained`,
    );
    clearInterval(probe);
    probe = undefined;
    cell.loadMs = performance.now() - t0;
    cell.loadPerSec = (n / cell.loadMs) * 1000;
    // the last probes' round trips
    const waitUntil = performance.now() + 2000;
    while (sentAt.size > 0 && performance.now() < waitUntil) await sleep(20);
    cell.peakRssMB = MB(sampler.stop());
    cell.lostProbes = sentAt.size;
    // a probe that never came back counts as the slowest
    const sorted = [...rtts].sort((a, b2) => a - b2);
    cell.samples = rtts.length;
    cell.p50Ms = percentile(sorted, 50);
    cell.p99Ms = percentile(sorted, 99);
    cell.maxMs = sorted.length > 0 ? sorted[sorted.length - 1]! : null;
    if (cell.lostProbes > 0) cell.notes = [`${cell.lostProbes} of ${seq} probes not back within 2 s of the flood's end`];
    cell.done = n;
    await pub.disconnect();
    await rt.disconnect();
    cell.status = rtts.length > 0 ? 'ok' : 'error';
    if (rtts.length === 0) cell.error = 'no round trip came back';
  } catch (e) {
    cell.error = errMsg(e);
    cell.logTail = env.logTail();
  } finally {
    clearInterval(probe);
    await env.clean();
  }
  return cell;
}

// ---------------------------------------------------------------- midle

async function runIdle(name: BrokerName, ctx: MemoryCtx): Promise<MemoryCell> {
  const cell: MemoryCell = { broker: name, scenario: 'midle', status: 'error' };
  const env = new MemEnv(name, ctx, 'idle');
  try {
    await env.start();
    cell.idleRssMB = MB(await env.warmUpAndBaseline());
  } catch (e) {
    cell.error = errMsg(e);
    cell.logTail = env.logTail();
    return cell;
  } finally {
    await env.clean();
  }
  await sleep(300);
  const f = await ctx.fanin(name);
  cell.faninPeakRssMB = f.peakRssMB ?? null;
  cell.faninMsgsPerSec = f.msgsPerSec;
  if (f.error !== undefined) cell.faninError = f.error;
  cell.status = 'ok';
  return cell;
}

// ---------------------------------------------------------------- entry

/** The selected memory rows for one broker, in MEMORY_SCENARIOS order. */
export async function runMemory(name: BrokerName, which: readonly MemoryName[], ctx: MemoryCtx): Promise<MemoryCell[]> {
  const out: MemoryCell[] = [];
  const label = (s: string): string => `${name.padEnd(9)} ${s.padEnd(9)}`;
  const has = (s: MemoryName): boolean => which.includes(s);
  const report = (c: MemoryCell): void => {
    ctx.say(`${label(c.scenario)} ${c.variant ? `${c.variant}: ` : ''}${c.status === 'ok' ? summary(c) : `${c.status}: ${c.error}`}`);
    if (c.status === 'error' && c.logTail !== undefined) ctx.say(c.logTail.split('\n').slice(-6).map((l) => `    | ${l}`).join('\n'));
  };
  if (has('mretained') || has('mdelivery')) {
    ctx.say(`${label(has('mretained') ? 'mretained' : 'mdelivery')} ${ctx.m.retained} retained, ${RETAINED_PAYLOAD} B${has('mdelivery') ? ', then delivery to mem/r/# (and after a restart)' : ''} ...`);
    for (const c of await runRetained(name, ctx, { retained: has('mretained'), delivery: has('mdelivery') })) {
      out.push(c);
      report(c);
    }
    await sleep(300);
  }
  const singles: [MemoryName, (b: BrokerName, c: MemoryCtx) => Promise<MemoryCell>, string][] = [
    ['msubs', runSubs, `${ctx.m.subs} filters on one client`],
    ['mconns', runConns, `${ctx.m.conns} idle connections`],
    ['msessions', runSessions, `${ctx.m.sessions} offline persistent sessions`],
    ['mflood', runFlood, `QoS 1 round trips during a flood of ${ctx.m.flood} retained`],
    ['midle', runIdle, 'idle RSS, then peak RSS in QoS 0 fan-in'],
  ];
  for (const [s, fn, title] of singles) {
    if (!has(s)) continue;
    ctx.say(`${label(s)} ${title} ...`);
    const c = await fn(name, ctx);
    out.push(c);
    report(c);
    await sleep(300);
  }
  return out;
}

// ---------------------------------------------------------------- output

function fmtMB(n: number | null | undefined): string {
  return n === undefined || n === null ? '-' : n.toFixed(1);
}

function fmtB(n: number | null | undefined): string {
  return n === undefined || n === null ? '-' : n.toFixed(0);
}

function fmtS(ms: number | undefined): string {
  return ms === undefined ? '-' : (ms / 1000).toFixed(2);
}

function summary(c: MemoryCell): string {
  switch (c.scenario) {
    case 'mretained':
      return `+${fmtMB(c.growthMB)} MB, ${fmtB(c.bytesPerItem)} B/msg (${fmtB(c.beyondPayload)} beyond the payload), published in ${fmtS(c.loadMs)} s (${fmtRate(c.loadPerSec)} msg/s)`;
    case 'mdelivery':
      return (
        (c.variant === 'restart' ? `first retained ${fmtMs(c.restartFirstMs)} ms after spawn (CONNACK ${fmtMs(c.connackMs)} ms), ` : '') +
        `${c.received}/${c.n} in ${fmtS(c.deliveryMs)} s (${fmtRate(c.deliveryPerSec)} msg/s), peak RSS ${fmtMB(c.peakRssMB)} MB`
      );
    case 'msubs':
    case 'mconns':
    case 'msessions':
      return `+${fmtMB(c.growthMB)} MB, ${fmtB(c.bytesPerItem)} B each (${c.done}/${c.n} in ${fmtS(c.loadMs)} s, ${fmtRate(c.loadPerSec)}/s)`;
    case 'mflood':
      return `RTT p50 ${fmtMs(c.p50Ms)} / p99 ${fmtMs(c.p99Ms)} / max ${fmtMs(c.maxMs)} ms over ${c.samples} probes; flood ${fmtS(c.loadMs)} s (${fmtRate(c.loadPerSec)} msg/s)`;
    case 'midle':
      return `idle ${fmtMB(c.idleRssMB)} MB; fan-in peak ${fmtMB(c.faninPeakRssMB)} MB at ${fmtRate(c.faninMsgsPerSec)} msg/s${c.faninError ? ` (fan-in: ${c.faninError})` : ''}`;
  }
}

const ROW_TITLE: Record<string, string> = {
  mretained: 'retained: RSS growth for N retained messages (100 B payload), publish time',
  mdelivery: 'retained delivery: a new subscriber to mem/r/# gets all N',
  msubs: 'subscriptions: distinct filters on one client',
  mconns: 'idle connections (MQTT 3.1.1, clean, keepalive 600)',
  msessions: 'offline persistent sessions (clean_session=0, one subscription each)',
  mflood: 'QoS 1 round trip (publish -> own delivery, every 10 ms) during a retained flood',
  midle: 'idle RSS (after start, one connection and 12 s quiet), peak RSS in QoS 0 fan-in (10 -> 1)',
};

interface Metric {
  name: string;
  get(c: MemoryCell): number | null | undefined;
  fmt(n: number | null | undefined): string;
}

/** Per row: the metric columns of its detail table, and the ones the summary quotes. */
function metrics(s: MemoryName): Metric[] {
  const m = (name: string, get: Metric['get'], fmt: Metric['fmt']): Metric => ({ name, get, fmt });
  const rate = (n: number | null | undefined): string => (n == null ? '-' : fmtRate(n));
  const ms = (n: number | null | undefined): string => fmtMs(n);
  switch (s) {
    case 'mretained':
      return [
        m('RSS growth MB', (c) => c.growthMB, fmtMB),
        m('B/msg', (c) => c.bytesPerItem, fmtB),
        m('B/msg - payload', (c) => c.beyondPayload, fmtB),
        m('publish ms', (c) => c.loadMs, ms),
        m('publish msg/s', (c) => c.loadPerSec, rate),
      ];
    case 'mdelivery':
      return [
        m('received', (c) => c.received, (n) => (n == null ? '-' : String(n))),
        m('deliver ms', (c) => c.deliveryMs, ms),
        m('msg/s', (c) => c.deliveryPerSec, rate),
        m('first ms', (c) => c.firstMs, ms),
        m('spawn->first ms', (c) => c.restartFirstMs, ms),
        m('peak RSS MB', (c) => c.peakRssMB, fmtMB),
        m('cli ELU', (c) => c.clientElu, (n) => (n == null ? '-' : n.toFixed(2))),
      ];
    case 'msubs':
    case 'mconns':
    case 'msessions':
      return [
        m('done', (c) => c.done, (n) => (n == null ? '-' : String(n))),
        m('RSS growth MB', (c) => c.growthMB, fmtMB),
        m(s === 'msubs' ? 'B/filter' : s === 'mconns' ? 'B/conn' : 'B/session', (c) => c.bytesPerItem, fmtB),
        m('load s', (c) => (c.loadMs === undefined ? undefined : c.loadMs / 1000), (n) => (n == null ? '-' : n.toFixed(2))),
        m('per s', (c) => c.loadPerSec, rate),
      ];
    case 'mflood':
      return [
        m('base MB', (c) => c.baseRssMB, fmtMB),
        m('probes', (c) => c.samples, (n) => (n == null ? '-' : String(n))),
        m('p50 ms', (c) => c.p50Ms, ms),
        m('p99 ms', (c) => c.p99Ms, ms),
        m('max ms', (c) => c.maxMs, ms),
        m('flood msg/s', (c) => c.loadPerSec, rate),
        m('peak RSS MB', (c) => c.peakRssMB, fmtMB),
      ];
    case 'midle':
      return [
        m('idle RSS MB', (c) => c.idleRssMB, fmtMB),
        m('fan-in peak RSS MB', (c) => c.faninPeakRssMB, fmtMB),
        m('fan-in msg/s', (c) => c.faninMsgsPerSec, rate),
      ];
  }
}

/** Detail tables (one per row, brokers as lines, then StrataMQ / peer ratio lines) and a summary. */
export function printMemory(cells: MemoryCell[], brokers: readonly BrokerName[], out: (s: string) => void): void {
  const rows = MEMORY_SCENARIOS.filter((s) => cells.some((c) => c.scenario === s));
  const peers = brokers.filter((b) => b !== 'strata');
  const find = (b: BrokerName, s: MemoryName, v?: string): MemoryCell | undefined => cells.find((c) => c.broker === b && c.scenario === s && c.variant === v);
  for (const s of rows) {
    const ms = metrics(s);
    const variants: (string | undefined)[] = s === 'mdelivery' ? ['live', 'restart'] : [undefined];
    const n = cells.find((c) => c.scenario === s)?.n;
    out(`\n${s}: ${ROW_TITLE[s]}${n !== undefined ? `, N = ${n}` : ''}\n`);
    // base / settled RSS: for the rows that load items and measure their growth
    const rss = s === 'mretained' || s === 'msubs' || s === 'mconns' || s === 'msessions';
    const hdr = ['broker', ...(s === 'mdelivery' ? ['broker state'] : []), ...(rss ? ['base MB', 'RSS MB'] : []), ...ms.map((x) => x.name)];
    const lines: string[][] = [];
    for (const v of variants) {
      for (const b of brokers) {
        const c = find(b, s, v);
        const pre = [BROKER_LABEL[b], ...(s === 'mdelivery' ? [v === 'restart' ? 'after restart' : 'live'] : [])];
        if (c === undefined) continue;
        if (c.status !== 'ok') {
          lines.push([...pre, c.status === 'skipped' ? 'n/a' : 'error', ...Array<string>(ms.length + (rss ? 1 : -1)).fill('')]);
          continue;
        }
        lines.push([...pre, ...(rss ? [fmtMB(c.baseRssMB), fmtMB(c.rssMB)] : []), ...ms.map((x) => x.fmt(x.get(c)))]);
      }
      const sc = find('strata', s, v);
      for (const p of peers) {
        const pc = find(p, s, v);
        if (sc === undefined || pc === undefined) continue;
        const ok = sc.status === 'ok' && pc.status === 'ok';
        lines.push([
          `StrataMQ / ${BROKER_LABEL[p]}`,
          ...(s === 'mdelivery' ? [v === 'restart' ? 'after restart' : 'live'] : []),
          ...(rss ? ['', ok ? ratio(sc.rssMB, pc.rssMB) : 'n/a'] : []),
          ...ms.map((x) => (ok ? ratio(x.get(sc), x.get(pc)) : 'n/a')),
        ]);
      }
    }
    out(table(hdr, lines, hdr.map((_, i) => i >= (s === 'mdelivery' ? 2 : 1))) + '\n');
    for (const c of cells.filter((x) => x.scenario === s)) {
      for (const note of c.notes ?? []) out(`  ${BROKER_LABEL[c.broker]}${c.variant ? ` (${c.variant})` : ''}: ${note}\n`);
      if (c.status === 'error') out(`  ${BROKER_LABEL[c.broker]}${c.variant ? ` (${c.variant})` : ''} error: ${c.error?.split('\n')[0]}\n`);
      if (c.status === 'skipped') out(`  ${BROKER_LABEL[c.broker]}${c.variant ? ` (${c.variant})` : ''}: ${c.error}\n`);
    }
  }

  // summary: one line per row, the main value and bytes/item with the ratios
  const sum: string[][] = [];
  const line = (what: string, get: (c: MemoryCell) => number | null | undefined, fmt: (n: number | null | undefined) => string, s: MemoryName, v?: string): void => {
    const val = (b: BrokerName): number | null | undefined => {
      const c = find(b, s, v);
      return c?.status === 'ok' ? get(c) : undefined;
    };
    if (!brokers.some((b) => find(b, s, v) !== undefined)) return;
    sum.push([
      what,
      ...brokers.map((b) => fmt(val(b))),
      ...(brokers.includes('strata') ? peers.map((p) => ratio(val('strata'), val(p))) : []),
    ]);
  };
  line('retained: B/msg', (c) => c.bytesPerItem, fmtB, 'mretained');
  line('retained: B/msg beyond payload', (c) => c.beyondPayload, fmtB, 'mretained');
  line('retained: publish msg/s', (c) => c.loadPerSec, fmtRate, 'mretained');
  line('delivery: msg/s', (c) => c.deliveryPerSec, fmtRate, 'mdelivery', 'live');
  line('delivery: peak RSS MB', (c) => c.peakRssMB, fmtMB, 'mdelivery', 'live');
  line('after restart: spawn->first ms', (c) => c.restartFirstMs, fmtMs, 'mdelivery', 'restart');
  line('after restart: delivery msg/s', (c) => c.deliveryPerSec, fmtRate, 'mdelivery', 'restart');
  line('subscriptions: B/filter', (c) => c.bytesPerItem, fmtB, 'msubs');
  line('idle connections: B/conn', (c) => c.bytesPerItem, fmtB, 'mconns');
  line('offline sessions: B/session', (c) => c.bytesPerItem, fmtB, 'msessions');
  line('flood: QoS 1 RTT p99 ms', (c) => c.p99Ms, fmtMs, 'mflood');
  line('flood: QoS 1 RTT max ms', (c) => c.maxMs, fmtMs, 'mflood');
  line('idle RSS MB', (c) => c.idleRssMB, fmtMB, 'midle');
  line('fan-in peak RSS MB', (c) => c.faninPeakRssMB, fmtMB, 'midle');
  line('fan-in msg/s', (c) => c.faninMsgsPerSec, fmtRate, 'midle');
  if (sum.length > 0) {
    const hdr = ['memory', ...brokers.map((b) => BROKER_LABEL[b]), ...(brokers.includes('strata') ? peers.map((p) => `StrataMQ / ${BROKER_LABEL[p]}`) : [])];
    out('\n' + table(hdr, sum, hdr.map((_, i) => i > 0)) + '\n');
    out(
      'RSS = broker VmRSS (process tree) from /proc; base = after start and one warm-up connection; bytes per item =\n' +
        '(settled RSS after the load - base) / items. Node brokers are measured with whatever garbage they hold.\n' +
        'Ratios StrataMQ / peer: for bytes, RSS and ms lower is better; for msg/s higher is better.\n' +
        (rows.includes('mdelivery')
          ? 'mdelivery: first ms = SUBSCRIBE -> first retained PUBLISH; spawn->first = broker spawn -> first one after the restart;\n' +
            'cli ELU = event-loop use of the harness receiving them (near 1.00: the client, not the broker, set the pace).\n'
          : '') +
        (rows.includes('mflood') ? 'mflood: a probe every 10 ms while the flood lasts, so a broker that takes the flood fast has few probes.\n' : ''),
    );
  }
}

export interface MemoryTargetRow {
  target: string;
  measured: string;
  verdict: 'PASS' | 'FAIL' | 'n/a';
}

/** Issue 15's targets, from the StrataMQ cells (and Mosquitto's for the relative ones). */
export function memoryTargetRows(cells: MemoryCell[], m: MemoryOpts): MemoryTargetRow[] {
  const rows: MemoryTargetRow[] = [];
  const has = (s: MemoryName): boolean => cells.some((c) => c.scenario === s);
  const ok = (b: BrokerName, s: MemoryName, v?: string): MemoryCell | undefined => cells.find((c) => c.broker === b && c.scenario === s && c.variant === v && c.status === 'ok');
  const verdict = (pass: boolean | null): MemoryTargetRow['verdict'] => (pass === null ? 'n/a' : pass ? 'PASS' : 'FAIL');
  const abs = (target: string, v: number | null | undefined, limit: number, fmt: (n: number) => string, extra = ''): void => {
    rows.push({ target, measured: v == null ? 'not measured' : `${fmt(v)}${extra}`, verdict: verdict(v == null ? null : v <= limit) });
  };
  const rel = (target: string, a: number | undefined, b: number | undefined, min: number, unit: string, extra = ''): void => {
    const r = a !== undefined && b !== undefined && b > 0 ? a / b : null;
    rows.push({ target, measured: r === null ? 'not measured' : `${r.toFixed(2)}x (${fmtRate(a)} vs ${fmtRate(b)} ${unit})${extra}`, verdict: verdict(r === null ? null : r >= min) });
  };
  const count = (n: number): string => (n >= 1e6 && n % 1e5 === 0 ? `${n / 1e6}M` : `${Math.round(n / 1000)}k`);
  const k = count(m.retained);
  if (has('mretained')) {
    const s = ok('strata', 'mretained');
    abs('retained <= 400 B RSS per message beyond its payload', s?.beyondPayload, 400, (v) => `${v.toFixed(0)} B`, s ? ` (${fmtB(s.bytesPerItem)} B/msg incl. the 100 B payload)` : '');
    rel(`publishing ${k} retained >= 1x Mosquitto's speed`, s?.loadPerSec, ok('mosquitto', 'mretained')?.loadPerSec, 1, 'msg/s');
  }
  if (has('mdelivery')) {
    const live = ok('strata', 'mdelivery', 'live');
    const incomplete = (c: MemoryCell | undefined): string => (c !== undefined && c.received !== c.n ? `, only ${c.received}/${c.n} arrived` : '');
    const mq = ok('mosquitto', 'mdelivery', 'live');
    rel(`delivering ${k} retained (target: 100k) to a # subscriber >= 2x Mosquitto`, live?.deliveryPerSec, mq?.deliveryPerSec, 2, 'msg/s', incomplete(live) + (incomplete(mq) ? ` (Mosquitto${incomplete(mq)})` : ''));
    const r = ok('strata', 'mdelivery', 'restart');
    abs(
      `restart with ${k} retained to first delivery < 1 s`,
      r?.restartFirstMs,
      999.999,
      (v) => `${fmtMs(v)} ms`,
      m.retained < 1_000_000 ? ` (with ${k}; --memory-retained 1000000 for 1M)` : '',
    );
  }
  if (has('msubs')) abs('subscriptions <= 400 B per filter', ok('strata', 'msubs')?.bytesPerItem, 400, (v) => `${v.toFixed(0)} B`);
  if (has('mconns')) abs('idle connection <= 4 KB', ok('strata', 'mconns')?.bytesPerItem, 4096, (v) => `${v.toFixed(0)} B`);
  if (has('msessions')) abs('offline persistent session <= 1 KB', ok('strata', 'msessions')?.bytesPerItem, 1024, (v) => `${v.toFixed(0)} B`);
  if (has('mflood')) {
    const f = ok('strata', 'mflood');
    const p99 = f?.p99Ms;
    rows.push({
      target: `QoS 1 p99 during a flood of ${count(m.flood)} retained < 50 ms`,
      measured: p99 == null ? 'not measured' : `${fmtMs(p99)} ms (max ${fmtMs(f?.maxMs)} ms, ${f?.samples} probes${f?.lostProbes ? `, ${f.lostProbes} not back` : ''})`,
      verdict: verdict(p99 == null ? null : p99 < 50 && (f?.lostProbes ?? 0) === 0),
    });
  }
  if (has('midle')) {
    const i = ok('strata', 'midle');
    abs('idle RSS <= 60 MB', i?.idleRssMB, 60, (v) => `${v.toFixed(1)} MB`);
    abs('peak RSS in QoS 0 fan-in <= 90 MB', i?.faninPeakRssMB, 90, (v) => `${v.toFixed(1)} MB`, i?.faninMsgsPerSec !== undefined ? ` (at ${fmtRate(i.faninMsgsPerSec)} msg/s)` : '');
  }
  return rows;
}

export function printMemoryTargets(cells: MemoryCell[], m: MemoryOpts, out: (s: string) => void): void {
  const rows = memoryTargetRows(cells, m);
  if (rows.length === 0) return;
  out('\n' + table(['issue 15 target', 'measured', ''], rows.map((r) => [r.target, r.measured, r.verdict]), [false, false, false]) + '\n');
}
