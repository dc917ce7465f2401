// Durable-session scenarios of the e2e bench (issue 4 targets), run by run.ts:
//
//   drain    a persistent subscriber (clean_session=0) subscribes and goes offline; one
//            publisher sends N QoS 1 messages (all acknowledged); the subscriber comes back
//            and the time until it holds all N (acknowledging as they come) is measured.
//   kill9    the subscriber is offline; a publisher sends QoS 1 at full speed, recording
//            every PUBACKed sequence number; after ~3 s the broker gets SIGKILL mid-stream,
//            is started again on the same state, the subscriber reconnects: acknowledged
//            messages that never arrive = acknowledged-then-lost.
//   restart  N (1M) QoS 1 messages queued for one offline persistent session; the broker is
//            stopped (StrataMQ: SIGKILL, then again with SIGTERM; Mosquitto: SIGTERM - after
//            SIGKILL it would have nothing to load) and started again: spawn -> CONNACK and
//            spawn -> first delivery, broker VmRSS with the queue loaded (subscriber connected,
//            acknowledgements held so nothing drains) and VmHWM; finally everything is drained
//            to check that all N survived.
//
// Peers run in their durable configuration: Mosquitto `persistence true` (autosave_interval
// left at its default), Aedes with aedes-persistence-redis on a redis-server started here
// (redis defaults: RDB snapshots, no AOF; kill9 kills Aedes only, redis keeps running).
// Every process is started through brokers.ts, so killAllBrokersSync() ends them on any exit.
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import {
  BROKER_LABEL,
  makeTempDir,
  removeTempDir,
  startBroker,
  startRedis,
  tail,
  usesRedis,
  type BrokerName,
  type BrokerOptions,
  type RunningBroker,
  type RunningRedis,
} from './brokers.js';
import { RawClient, SeqSet, type ConnectOptions, type PublishResult } from './durable-client.js';
import { hwmKb, RssSampler, rssKb, systemBusySeconds, treeRssKb, treesCpuSeconds } from './proc.js';
import { errMsg, sleep, timeout } from './util.js';

export interface DurableOpts {
  payload: number;
  /** QoS 1 window of the drain / kill9 publisher. */
  window: number;
  drainMsgs: number;
  /** Upper bound for storing, and for draining, in the drain scenario. */
  drainTimeoutS: number;
  /** Drains per broker, each on a fresh broker; the median one is reported (runDrains). */
  drainRuns: number;
  killAfterS: number;
  /** kill9: upper bound for redelivery after the restart. */
  kill9TimeoutS: number;
  restartMsgs: number;
  restartPublishers: number;
  restartWindow: number;
  /** Upper bound for storing restartMsgs. */
  restartTimeoutS: number;
  /** Upper bound for draining everything after the last restart (0 = skip the check). */
  verifyTimeoutS: number;
  /** aedes-persistence-redis maxSessionDelivery (its default 1000 caps one reconnect's delivery). */
  aedesMaxSessionDelivery: number;
}

export interface DurableCell {
  broker: BrokerName;
  scenario: 'drain' | 'kill9' | 'restart';
  /** restart: how the broker was stopped */
  variant?: 'kill -9' | 'SIGTERM';
  status: 'ok' | 'error' | 'skipped';
  error?: string;
  logTail?: string;
  notes?: string[];
  // drain
  stored?: number;
  storeMsgsPerSec?: number;
  drainMsgsPerSec?: number;
  drainMs?: number;
  drainComplete?: boolean;
  /** drain: the rate of every run, in run order (the cell is the median run). */
  drainRuns?: number[];
  firstMs?: number;
  received?: number;
  duplicates?: number;
  outOfOrder?: number;
  peakRssMB?: number | null;
  brokerCpuPct?: number | null;
  otherCpuPct?: number | null;
  /** drain: event-loop utilisation of the bench process (the draining client) during the drain. */
  clientElu?: number;
  // kill9
  sent?: number;
  acked?: number;
  killedAfterMs?: number;
  readyMs?: number;
  sessionPresent?: boolean;
  deliveredAcked?: number;
  lost?: number;
  /** the wait for redelivery hit its limit: some of `lost` may still have been on the way */
  lostIsUpperBound?: boolean;
  /** kill9: ms from reconnect until the last acknowledged message arrived */
  redeliverMs?: number;
  lostExamples?: number[];
  deliveredUnacked?: number;
  // restart
  liveRssMB?: number | null;
  dataMB?: number | null;
  stopMs?: number;
  stopForced?: boolean;
  connackMs?: number;
  firstDeliveryMs?: number;
  rssMB?: number | null;
  hwmMB?: number | null;
  /** StrataMQ's own log: log recovery / durable state load times (ms) */
  storeOpenMs?: number | null;
  stateLoadMs?: number | null;
  /** spawn -> 'store opened' logged (node start, module loading, log recovery, metadata open) */
  storeOpenedAtMs?: number | null;
  /** spawn -> 'listening' logged */
  listeningMs?: number | null;
  verifyReceived?: number;
  verifyMs?: number;
  verifyMsgsPerSec?: number;
  verifyComplete?: boolean;
}

export interface DurableCtx {
  brokerOpts: BrokerOptions;
  d: DurableOpts;
  /** progress lines (stdout) */
  say(line: string): void;
}

/** du -sk of a directory, in MB (null if du fails). */
function dirMB(dir: string): number | null {
  try {
    const out = execFileSync('du', ['-sk', dir], { encoding: 'utf8', timeout: 30_000 });
    return Number(out.split(/\s/)[0]) / 1024;
  } catch {
    return null;
  }
}

/** The last pino line with msg === `msg` in the log file, parsed. */
function lastLogLine(file: string, msg: string): Record<string, unknown> | null {
  const lines = tail(file, 400).split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i]!;
    if (!l.includes(`"msg":"${msg}"`)) continue;
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return null;
    }
  }
  return null;
}

const numField = (o: Record<string, unknown> | null, k: string): number | null => (typeof o?.[k] === 'number' ? (o[k] as number) : null);

/**
 * A broker on durable state in one temp directory (plus a redis-server for Aedes), which can be
 * killed and started again on that state; clean() stops everything and removes the directory.
 */
class DurableEnv {
  readonly dir: string;
  redis: RunningRedis | null = null;
  broker: RunningBroker | null = null;
  private readonly clients = new Set<RawClient>();

  constructor(
    readonly name: BrokerName,
    readonly ctx: DurableCtx,
    readonly tag: string,
  ) {
    this.dir = makeTempDir(`${name}-${tag}`);
  }

  async start(o: { port?: number; noWait?: boolean } = {}): Promise<RunningBroker> {
    if (usesRedis(this.name) && this.redis === null) this.redis = await startRedis(this.dir);
    const b = await startBroker(this.name, this.ctx.brokerOpts, {
      dir: this.dir,
      port: o.port,
      noWait: o.noWait,
      redisPort: this.redis?.port,
      maxSessionDelivery: this.ctx.d.aedesMaxSessionDelivery,
    });
    if (this.redis !== null) b.extraPids.push(this.redis.pid);
    this.broker = b;
    return b;
  }

  opts(clientId: string, clean: boolean): ConnectOptions {
    return { host: '127.0.0.1', port: this.broker!.port, clientId, clean };
  }

  id(role: string): string {
    return `b${process.pid}-${this.tag}-${role}`;
  }

  async connect(clientId: string, clean: boolean, setup?: (c: RawClient) => void): Promise<RawClient> {
    const c = await RawClient.connect(this.opts(clientId, clean), 10_000, setup);
    this.track(c);
    return c;
  }

  track(c: RawClient): RawClient {
    this.clients.add(c);
    void c.closedP.then(() => this.clients.delete(c));
    return c;
  }

  /** A persistent session subscribed to `filter` at QoS 1, then offline. */
  async offlineSubscriber(clientId: string, filter: string): Promise<void> {
    const sub = await this.connect(clientId, false);
    await sub.subscribe(filter, 1);
    await sub.disconnect();
    await sleep(200); // let the broker finish the disconnect before messages arrive
  }

  pids(): number[] {
    return this.broker === null ? [] : [this.broker.pid, ...this.broker.extraPids];
  }

  logTail(): string | undefined {
    return this.broker === null ? undefined : tail(this.broker.logFile, 10) || undefined;
  }

  async clean(): Promise<void> {
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    await this.broker?.terminate(5000).catch(() => undefined);
    await this.redis?.stop().catch(() => undefined);
    removeTempDir(this.dir);
  }
}

// ---------------------------------------------------------------- drain

/**
 * `runDrain` `runs` times, a fresh broker and state each time; returns the run with the median
 * drain rate (the lower middle one for an even count), carrying every run's rate. The drain
 * lasts well under a second, so one run is at the mercy of the machine's scheduling: runs of
 * the same build spread by ±25% on the 2-core development machine. A run that fails ends it.
 */
export async function runDrains(name: BrokerName, ctx: DurableCtx, runs: number): Promise<DurableCell> {
  const done: DurableCell[] = [];
  for (let i = 0; i < runs; i++) {
    const cell = await runDrain(name, ctx);
    done.push(cell);
    if (cell.status !== 'ok') return { ...cell, drainRuns: done.map((c) => c.drainMsgsPerSec ?? 0) };
  }
  const byRate = [...done].sort((a, b) => (a.drainMsgsPerSec ?? 0) - (b.drainMsgsPerSec ?? 0));
  const median = byRate[Math.floor((byRate.length - 1) / 2)] as DurableCell;
  return { ...median, drainRuns: done.map((c) => c.drainMsgsPerSec ?? 0) };
}

export async function runDrain(name: BrokerName, ctx: DurableCtx): Promise<DurableCell> {
  const { d } = ctx;
  const cell: DurableCell = { broker: name, scenario: 'drain', status: 'error' };
  const env = new DurableEnv(name, ctx, 'drain');
  let sampler: RssSampler | null = null;
  try {
    const b = await env.start();
    sampler = new RssSampler(b.pid, 250, b.extraPids);
    const subId = env.id('sub');
    await env.offlineSubscriber(subId, 'drain/t');

    // store N for the offline session
    const pub = await env.connect(env.id('pub'), true);
    const t0 = performance.now();
    const res: PublishResult = await timeout(
      pub.publish({ topic: 'drain/t', window: d.window, count: d.drainMsgs, payload: d.payload, pubIndex: 0 }),
      d.drainTimeoutS * 1000,
      `storing ${d.drainMsgs} messages`,
    );
    const storeMs = performance.now() - t0;
    cell.stored = res.acked;
    cell.storeMsgsPerSec = (res.acked / storeMs) * 1000;
    if (res.acked < d.drainMsgs) throw new Error(`publisher: only ${res.acked}/${d.drainMsgs} acknowledged (connection ${pub.closeReason ?? 'open'})`);
    await pub.disconnect();
    await sleep(300);

    // drain
    const seen = new SeqSet();
    let dups = 0;
    let ooo = 0;
    const oooExamples: string[] = [];
    let last = -1;
    let firstAt: number | null = null;
    let doneAt: number | null = null;
    let signal: () => void = () => undefined;
    const complete = new Promise<void>((r) => (signal = r));
    const cpu0 = treesCpuSeconds(env.pids());
    const sys0 = systemBusySeconds();
    const gen0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const onMessage = (seq: number): void => {
      const now = performance.now();
      firstAt ??= now;
      if (!seen.add(seq)) {
        dups++;
        return;
      }
      if (seq < last) {
        ooo++;
        if (oooExamples.length < 5) oooExamples.push(`${seq} after ${last} (#${seen.size})`);
      }
      last = seq;
      if (seen.size >= d.drainMsgs && doneAt === null) {
        doneAt = now;
        signal();
      }
    };
    const tc = performance.now();
    const sub = await env.connect(subId, false, (c) => (c.onMessage = onMessage));
    const ended = await Promise.race([
      complete.then(() => 'complete'),
      sub.closedP.then((why) => `subscriber connection ${why}`),
      sleep(d.drainTimeoutS * 1000).then(() => 'timeout'),
    ]);
    const tEnd = doneAt ?? performance.now();
    const wallS = (tEnd - tc) / 1000;
    const cpu1 = treesCpuSeconds(env.pids());
    const sys1 = systemBusySeconds();
    const gen = process.cpuUsage(gen0);
    cell.clientElu = performance.eventLoopUtilization(elu0).utilization;
    cell.brokerCpuPct = cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) / wallS) * 100 : null;
    cell.otherCpuPct =
      cpu0 !== null && cpu1 !== null && sys0 !== null && sys1 !== null
        ? Math.max(0, ((sys1 - sys0 - (cpu1 - cpu0) - (gen.user + gen.system) / 1e6) / wallS) * 100)
        : null;
    cell.received = seen.size;
    cell.duplicates = dups;
    cell.outOfOrder = ooo;
    if (ooo > 0) cell.notes = [`order inversions, e.g. seq ${oooExamples.join('; ')}`];
    cell.firstMs = firstAt === null ? undefined : firstAt - tc;
    cell.drainMs = tEnd - tc;
    cell.drainMsgsPerSec = (seen.size / (tEnd - tc)) * 1000;
    cell.drainComplete = ended === 'complete';
    await sub.disconnect();
    if (ended === 'complete') cell.status = 'ok';
    else cell.error = `drain incomplete (${ended}): ${seen.size}/${d.drainMsgs} received`;
  } catch (e) {
    cell.error = errMsg(e);
  } finally {
    if (sampler !== null) {
      const peak = sampler.stop();
      cell.peakRssMB = peak === null ? null : peak / 1024;
    }
    if (cell.status === 'error') cell.logTail = env.logTail();
    await env.clean();
  }
  return cell;
}

// ---------------------------------------------------------------- kill9

export async function runKill9(name: BrokerName, ctx: DurableCtx): Promise<DurableCell> {
  const { d } = ctx;
  const cell: DurableCell = { broker: name, scenario: 'kill9', status: 'error', notes: [] };
  const env = new DurableEnv(name, ctx, 'kill9');
  try {
    const b = await env.start();
    const subId = env.id('sub');
    await env.offlineSubscriber(subId, 'kill9/t');

    const acked = new SeqSet();
    const pub = await env.connect(env.id('pub'), true);
    const t0 = performance.now();
    const pubP = pub.publish({
      topic: 'kill9/t',
      window: d.window,
      count: Infinity,
      payload: d.payload,
      pubIndex: 0,
      onAck: (seq) => acked.add(seq),
    });
    await Promise.race([sleep(d.killAfterS * 1000), pub.closedP]);
    if (pub.closeReason !== null) throw new Error(`publisher connection ${pub.closeReason} before the kill`);
    await b.kill();
    cell.killedAfterMs = performance.now() - t0;
    const res = await timeout(pubP, 10_000, 'publisher noticing the kill');
    cell.sent = res.sent;
    cell.acked = acked.size;
    cell.storeMsgsPerSec = (acked.size / cell.killedAfterMs) * 1000;
    if (pub.unexpectedAcks > 0) cell.notes!.push(`${pub.unexpectedAcks} PUBACKs for unknown packet ids`);

    // same state, same port
    const b2 = await env.start({ port: b.port });
    cell.readyMs = performance.now() - b2.spawnedAt;
    const seen = new SeqSet();
    let dups = 0;
    let ackedSeen = 0;
    let lastAt = performance.now();
    let allAt: number | null = null;
    const onMessage = (seq: number): void => {
      lastAt = performance.now();
      if (!seen.add(seq)) {
        dups++;
        return;
      }
      if (acked.has(seq) && ++ackedSeen === acked.size) allAt = lastAt;
    };
    const sub = await env.connect(subId, false, (c) => (c.onMessage = onMessage));
    cell.sessionPresent = sub.sessionPresent;
    // until every acknowledged message is back (+0.5 s for stragglers), or 3 s without
    // anything arriving, or the drain limit
    const tStart = performance.now();
    for (;;) {
      await sleep(50);
      const now = performance.now();
      if (allAt !== null && now - allAt > 500) break;
      if (now - lastAt > 3000) break;
      if (now - tStart > d.kill9TimeoutS * 1000) {
        cell.notes!.push(`stopped waiting after ${d.kill9TimeoutS} s while messages were still arriving: LOST is an upper bound`);
        cell.lostIsUpperBound = true;
        break;
      }
      if (sub.closeReason !== null) throw new Error(`subscriber connection ${sub.closeReason} after the restart`);
    }
    if (seen.size > 0) cell.redeliverMs = (allAt ?? lastAt) - tStart;
    await sub.disconnect();
    const missing = acked.missingFrom(seen);
    cell.received = seen.size;
    cell.duplicates = dups;
    cell.deliveredAcked = ackedSeen;
    cell.deliveredUnacked = seen.size - ackedSeen;
    cell.lost = missing.count;
    cell.lostExamples = missing.first;
    cell.status = 'ok';
  } catch (e) {
    cell.error = errMsg(e);
  } finally {
    if (cell.status === 'error') cell.logTail = env.logTail();
    await env.clean();
  }
  return cell;
}

// ---------------------------------------------------------------- restart

/** The restart scenario runs on these brokers (Aedes+Redis: not measured). */
export const RESTART_BROKERS: readonly BrokerName[] = ['strata', 'mosquitto'];

export async function runRestart(name: BrokerName, ctx: DurableCtx): Promise<DurableCell[]> {
  const { d } = ctx;
  const cells: DurableCell[] = [];
  const variants: ('kill -9' | 'SIGTERM')[] = name === 'strata' ? ['kill -9', 'SIGTERM'] : ['SIGTERM'];
  const env = new DurableEnv(name, ctx, 'restart');
  let stored = 0;
  let storeMsgsPerSec = 0;
  let liveRssMB: number | null = null;
  const label = BROKER_LABEL[name];
  let current: DurableCell | null = null;
  try {
    const b = await env.start();
    const subId = env.id('sub');
    await env.offlineSubscriber(subId, 'restart/+');

    // store
    const P = Math.max(1, Math.min(d.restartPublishers, d.restartMsgs));
    const perPub = Math.ceil(d.restartMsgs / P);
    const pubs: RawClient[] = [];
    for (let i = 0; i < P; i++) pubs.push(await env.connect(env.id(`pub${i}`), true));
    const t0 = performance.now();
    const acked = (): number => pubs.reduce((s, p) => s + p.acked, 0);
    let lastN = 0;
    let lastT = t0;
    const progress = setInterval(() => {
      const n = acked();
      const t = performance.now();
      ctx.say(`    ${label}: ${n}/${d.restartMsgs} stored, ${Math.round(((n - lastN) / (t - lastT)) * 1000)} msg/s (RSS ${((rssKb(b.pid) ?? 0) / 1024).toFixed(0)} MB)`);
      lastN = n;
      lastT = t;
    }, 5000);
    try {
      const all = Promise.all(
        pubs.map((p, i) =>
          p.publish({
            topic: `restart/${i}`,
            window: d.restartWindow,
            count: Math.max(0, Math.min(perPub, d.restartMsgs - i * perPub)),
            payload: d.payload,
            pubIndex: i,
          }),
        ),
      );
      const r = await Promise.race([all, sleep(d.restartTimeoutS * 1000).then(() => null)]);
      if (r === null) {
        for (const p of pubs) p.stopPublishing();
        await timeout(all, 30_000, 'in-flight acknowledgements after the store time limit');
      } else if (r.some((x) => x.closed)) {
        throw new Error(`a publisher's connection closed while storing (${acked()} acknowledged)`);
      }
    } finally {
      clearInterval(progress);
    }
    stored = acked();
    storeMsgsPerSec = (stored / (performance.now() - t0)) * 1000;
    for (const p of pubs) await p.disconnect();
    if (stored < d.restartMsgs) ctx.say(`    ${label}: store time limit (${d.restartTimeoutS} s) hit, continuing with ${stored} stored`);
    await sleep(1000); // background metadata commits
    liveRssMB = (treeRssKb(b.pid) ?? 0) / 1024;

    for (let v = 0; v < variants.length; v++) {
      const variant = variants[v]!;
      const cell: DurableCell = { broker: name, scenario: 'restart', variant, status: 'error', stored, storeMsgsPerSec, liveRssMB, notes: [] };
      current = cell;
      cells.push(cell);
      const prev = env.broker!;
      if (variant === 'kill -9') {
        await prev.kill();
      } else {
        const t = await prev.terminate(60_000);
        cell.stopMs = t.ms;
        cell.stopForced = t.forced;
      }
      cell.dataMB = dirMB(env.dir); // what the new process starts from
      let firstAt: number | null = null;
      const seen = new SeqSet();
      let dups = 0;
      let lastAt = performance.now();
      let allAt: number | null = null;
      let gotFirst: () => void = () => undefined;
      const first = new Promise<void>((r) => (gotFirst = r));
      const onMessage = (seq: number, pub: number): void => {
        lastAt = performance.now();
        if (firstAt === null) {
          firstAt = lastAt;
          gotFirst();
        }
        if (!seen.add(pub * perPub + seq)) dups++;
        else if (seen.size === stored) allAt = lastAt;
      };
      const nb = await env.start({ port: prev.port, noWait: true });
      const deadline = performance.now() + 120_000;
      const sub = env.track(
        await RawClient.connectRetry(env.opts(subId, false), deadline, (c) => {
          c.onMessage = onMessage;
          c.autoAck = false; // hold acknowledgements: the queue stays loaded, only the window is sent
        }),
      );
      const tConnack = performance.now();
      cell.connackMs = tConnack - nb.spawnedAt;
      cell.sessionPresent = sub.sessionPresent;
      await Promise.race([first, sleep(30_000), sub.closedP]);
      if (firstAt === null) throw new Error(`no delivery within 30 s of CONNACK after the restart (session present ${sub.sessionPresent}, subscriber ${sub.closeReason ?? 'connected'})`);
      cell.firstDeliveryMs = (firstAt as number) - nb.spawnedAt;
      const r1 = rssKb(nb.pid);
      cell.rssMB = r1 === null ? null : r1 / 1024;
      const h1 = hwmKb(nb.pid);
      cell.hwmMB = h1 === null ? null : h1 / 1024;
      if (name === 'strata') {
        // pino times are epoch ms: offsets from the spawn
        const spawnEpoch = performance.timeOrigin + nb.spawnedAt;
        const opened = lastLogLine(nb.logFile, 'store opened');
        const loaded = lastLogLine(nb.logFile, 'durable state loaded');
        const listening = lastLogLine(nb.logFile, 'listening');
        cell.storeOpenMs = numField(opened, 'ms');
        cell.stateLoadMs = numField(loaded, 'ms');
        const at = (o: Record<string, unknown> | null): number | null => (numField(o, 'time') === null ? null : (o!['time'] as number) - spawnEpoch);
        cell.storeOpenedAtMs = at(opened);
        cell.listeningMs = at(listening);
      }
      if (v < variants.length - 1 || d.verifyTimeoutS <= 0) {
        await sub.disconnect(); // held acks are never sent: those stay in flight for the next start
        cell.status = 'ok';
        continue;
      }
      // verify: acknowledge and drain everything that was stored
      const tv = performance.now();
      sub.releaseAcks();
      for (;;) {
        await sleep(50);
        const now = performance.now();
        if (allAt !== null) break;
        if (now - lastAt > 5000) break;
        if (now - tv > d.verifyTimeoutS * 1000) {
          cell.notes!.push(`drain check stopped after ${d.verifyTimeoutS} s`);
          break;
        }
        if (sub.closeReason !== null) break;
      }
      const tEnd = allAt ?? performance.now();
      cell.verifyReceived = seen.size;
      cell.verifyMs = tEnd - tv;
      cell.verifyMsgsPerSec = (seen.size / (tEnd - tv)) * 1000;
      cell.verifyComplete = seen.size === stored;
      cell.duplicates = dups;
      await sub.disconnect();
      cell.status = 'ok';
    }
  } catch (e) {
    const msg = errMsg(e);
    if (current !== null && current.status === 'error') current.error = msg;
    else cells.push({ broker: name, scenario: 'restart', status: 'error', error: msg, stored, storeMsgsPerSec, liveRssMB });
    const c = cells[cells.length - 1]!;
    c.logTail = env.logTail();
  } finally {
    await env.clean();
  }
  return cells;
}
