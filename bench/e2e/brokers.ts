// Starting and stopping the brokers under test as child processes on free
// loopback ports. Readiness = an MQTT CONNECT on the port gets a CONNACK.
// Durable mode (DurableStart): StrataMQ keeps its store, Mosquitto runs with
// `persistence true`, Aedes uses aedes-persistence-redis on a redis-server the
// harness starts (startRedis); the caller owns the directory, so a broker can be
// killed and started again on the same state.
import mqttPacket from 'mqtt-packet';
import { BENCH_PASSWORD, BENCH_USER } from './credentials.js';
import net from 'node:net';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

export type BrokerName = 'strata' | 'strata-secure' | 'strata-redis' | 'aedes' | 'mosquitto';
/** The default line-up; `strata-secure` (password file + a 1,000-line ACL) is asked for by name. */
export const BROKERS: readonly BrokerName[] = ['strata', 'aedes', 'mosquitto'];
export const ALL_BROKERS: readonly BrokerName[] = ['strata', 'strata-secure', 'strata-redis', 'aedes', 'mosquitto'];
/** The line-up with --durable: StrataMQ on the Redis registry too, beside Aedes + aedes-persistence-redis. */
export const DURABLE_BROKERS: readonly BrokerName[] = ['strata', 'strata-redis', 'aedes', 'mosquitto'];
/** Brokers whose durable state is in a redis-server the bench starts for them (`DurableStart.redisPort`). */
export function usesRedis(name: BrokerName): boolean {
  return name === 'aedes' || name === 'strata-redis';
}
export const BROKER_LABEL: Record<BrokerName, string> = {
  strata: 'StrataMQ',
  'strata-secure': 'StrataMQ+auth',
  'strata-redis': 'StrataMQ+Redis',
  aedes: 'Aedes',
  mosquitto: 'Mosquitto',
};

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/e2e
// BENCH_STRATA_CLI: run another build of StrataMQ (e.g. an experiment in a copy of dist/).
export const STRATA_CLI = process.env['BENCH_STRATA_CLI'] ?? path.resolve(here, '../../src/cli/main.js');
const AEDES_SERVER = path.resolve(here, 'aedes-server.js');
const MOSQUITTO_BIN = process.env['MOSQUITTO_BIN'] ?? '/usr/sbin/mosquitto';

export interface BrokerOptions {
  /** Extra CLI arguments for StrataMQ (whitespace-separated). */
  strataArgs: string[];
  /** Mosquitto max_inflight_messages (its default is 20). */
  mosquittoInflight: number;
  readyTimeoutMs: number;
}

/** null when the broker can be started, otherwise why not. */
export function unavailable(name: BrokerName): string | null {
  switch (name) {
    case 'strata':
    case 'strata-secure':
      return existsSync(STRATA_CLI) ? null : `not built (${path.relative(process.cwd(), STRATA_CLI)} missing)`;
    case 'strata-redis':
      return existsSync(STRATA_CLI) ? redisUnavailable() : `not built (${path.relative(process.cwd(), STRATA_CLI)} missing)`;
    case 'aedes':
      return existsSync(AEDES_SERVER) ? null : 'not built (aedes-server.js missing)';
    case 'mosquitto':
      return existsSync(MOSQUITTO_BIN) ? null : `not installed (${MOSQUITTO_BIN} missing; apt install mosquitto)`;
  }
}

let hostFlag: boolean | null = null;
/** Whether `stratamq start --help` lists a --host option (then we bind it to loopback). */
function strataHasHostFlag(): boolean {
  if (hostFlag === null) {
    try {
      const help = execFileSync(process.execPath, [STRATA_CLI, 'start', '--help'], {
        encoding: 'utf8',
        timeout: 10_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      hostFlag = /--host\b/.test(help);
    } catch {
      hostFlag = false;
    }
  }
  return hostFlag;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One MQTT CONNECT → CONNACK round trip; true when the broker accepted it. */
export function mqttProbe(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    // CONNECT, MQTT 3.1.1, clean session, keepalive 10, with the bench credentials (strata-secure checks them)
    const pkt = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `bench-probe-${process.pid}`, keepalive: 10, username: BENCH_USER, password: Buffer.from(BENCH_PASSWORD) });
    const sock = net.connect({ host, port });
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ok) sock.end(Buffer.from([0xe0, 0x00]));
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('connect', () => sock.write(pkt));
    sock.on('data', (d: Buffer) => finish(d[0] === 0x20 && d.length >= 4 && d[3] === 0));
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
  });
}

/** A broker that would not start; logTail holds the end of its output. */
export class BrokerStartError extends Error {
  constructor(
    message: string,
    readonly logTail: string,
  ) {
    super(message);
  }
}

export interface RunningBroker {
  name: BrokerName;
  pid: number;
  port: number;
  logFile: string;
  /** Other processes that hold this broker's state (Aedes: redis-server), for RSS / CPU. */
  extraPids: number[];
  /** performance.now() just before spawn(). */
  spawnedAt: number;
  alive(): boolean;
  /** SIGTERM (SIGKILL after 3 s); removes the temp dir unless the caller owns it. */
  stop(): Promise<void>;
  /** SIGKILL now and wait for the exit; keeps the directory. */
  kill(): Promise<void>;
  /** SIGTERM, SIGKILL after graceMs; keeps the directory. ms = until the process exited. */
  terminate(graceMs: number): Promise<{ ms: number; forced: boolean }>;
}

/** Start a broker on durable state in a directory the caller owns and removes. */
export interface DurableStart {
  dir: string;
  /** StrataMQ: this build's CLI instead of STRATA_CLI (interleave.ts compares two builds). */
  strataCli?: string;
  /** Listen on this port (a restart keeps the port); default a free one. */
  port?: number;
  /** Aedes: the redis-server holding its persistence. */
  redisPort?: number;
  /** Aedes: aedes-persistence-redis maxSessionDelivery (its default, 1000, caps what one reconnect gets). */
  maxSessionDelivery?: number;
  /** Return as soon as the process is spawned (the caller polls readiness itself). */
  noWait?: boolean;
  /** StrataMQ: a config file (`--config`), e.g. backend rules. */
  strataConfig?: string;
}

const live = new Set<ChildProcess>();

/**
 * Spawn with stdout/stderr appended to `logFile`, tracked in `live` until it exits.
 * `state.exited` is null while it runs, then says how it ended.
 */
function spawnLogged(cmd: string, args: string[], logFile: string): { cp: ChildProcess; exitP: Promise<void>; state: { exited: string | null } } {
  const fd = openSync(logFile, 'a');
  const cp = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(cp);
  const state: { exited: string | null } = { exited: null };
  const exitP = new Promise<void>((resolve) => {
    cp.once('exit', (code, sig) => {
      state.exited = `exited (code ${code}, signal ${sig})`;
      live.delete(cp);
      resolve();
    });
    cp.once('error', (e) => {
      state.exited = `failed to spawn: ${e.message}`;
      live.delete(cp);
      resolve();
    });
  });
  return { cp, exitP, state };
}
const tempDirs = new Set<string>();

/** SIGKILL every broker still running (for exit/SIGINT paths). */
export function killAllBrokersSync(): void {
  for (const cp of live) {
    try {
      if (cp.pid !== undefined) process.kill(cp.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * `strata-secure`: a password file (argon2id, the bench user among 300 others) and a 1,000-line
 * ACL — 330 users with their rules, patterns that apply to every client, the bench user's rules
 * last — with anonymous clients refused: what checking every CONNECT, SUBSCRIBE and PUBLISH costs.
 */
async function secureConfig(dir: string): Promise<string> {
  const { hashPassword } = await import('../../src/auth/password-file.js');
  const users = Array.from({ length: 300 }, (_, i) => `user${i}`);
  const hash = await hashPassword('not-the-bench-password');
  const passwd = path.join(dir, 'passwd');
  writeFileSync(passwd, [...users.map((u) => `${u}:${hash}`), `${BENCH_USER}:${await hashPassword(BENCH_PASSWORD)}`, ''].join('\n'));
  const acl: string[] = ['# generated by bench/e2e/brokers.ts', 'topic read $SYS/#'];
  for (const p of ['devices/%c/#', 'users/%u/inbox', 'clients/%c/cmd', 'tenants/%u/+/state', 'audit/%c']) acl.push(`pattern readwrite ${p}`);
  for (let i = 0; acl.length < 993; i++) acl.push(`user user${i}`, `topic readwrite site${i}/#`, `topic deny site${i}/admin/#`);
  acl.push(`user ${BENCH_USER}`, 'topic deny secret/#', ...['bench', 'pairs', 'fanout', 'dpairs', 'drain', 'restart', 'kill9', 'mem'].map((t) => `topic readwrite ${t}/#`));
  const aclFile = path.join(dir, 'acl');
  writeFileSync(aclFile, `${acl.join('\n')}\n`);
  const conf = path.join(dir, 'strata-secure.conf');
  writeFileSync(conf, [`auth.password_file = ${JSON.stringify(passwd)}`, `auth.acl_file = ${JSON.stringify(aclFile)}`, 'mqtt.allow_anonymous = false', ''].join('\n'));
  return conf;
}

/** A fresh temp directory, removed by killAllBrokersSync unless released earlier with removeTempDir. */
export function makeTempDir(tag: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `stratamq-bench-${tag}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** The node flags of package.json's `start` script (`node <flags> dist/src/cli/main.js start`): the broker runs as users start it. */
export function npmStartNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(path.resolve(here, '../../../package.json'), 'utf8')) as { scripts?: Record<string, string> };
  const words = (pkg.scripts?.['start'] ?? '').split(/\s+/);
  if (words[0] !== 'node') return [];
  return words.slice(1).filter((w, i, all) => w.startsWith('--') && all.slice(0, i).every((x) => x.startsWith('--')));
}

export async function startBroker(name: BrokerName, opts: BrokerOptions, durable?: DurableStart): Promise<RunningBroker> {
  const port = durable?.port ?? (await freePort());
  const ownsDir = durable === undefined;
  const dir = durable?.dir ?? makeTempDir(name);
  const logFile = path.join(dir, `${name}.log`);
  let cmd: string;
  let args: string[];
  switch (name) {
    case 'strata':
    case 'strata-secure':
    case 'strata-redis': {
      const dataDir = path.join(dir, 'data');
      cmd = process.execPath;
      // The node flags `npm start` runs the broker with, then BENCH_STRATA_NODE_ARGS: flags for
      // the broker process only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"; a later flag wins).
      const nodeArgs = [...npmStartNodeFlags(), ...(process.env['BENCH_STRATA_NODE_ARGS'] ?? '').split(' ').filter(Boolean)];
      args = [...nodeArgs, durable?.strataCli ?? STRATA_CLI, 'start', '--port', String(port), '--ws-port', '0', '--data-dir', dataDir, '--admin-port', '0'];
      if (strataHasHostFlag()) args.push('--host', '127.0.0.1');
      args.push(...opts.strataArgs);
      if (name === 'strata-secure') args.push('--config', await secureConfig(dir));
      else if (name === 'strata-redis') {
        // The Redis registry on the redis-server started for it (the same set-up as Aedes').
        if (durable?.redisPort === undefined) throw new Error('strata-redis runs on a redis-server: durable scenarios only');
        const conf = path.join(dir, 'registry.conf');
        writeFileSync(conf, ['persistence.registry = redis', `redis.single.address = 127.0.0.1:${durable.redisPort}`, ''].join('\n'));
        args.push('--config', conf);
      }
      else if (durable?.strataConfig !== undefined) args.push('--config', durable.strataConfig);
      break;
    }
    case 'aedes':
      cmd = process.execPath;
      args = [AEDES_SERVER, String(port)];
      if (durable?.redisPort !== undefined) {
        args.push('--redis', String(durable.redisPort));
        if (durable.maxSessionDelivery !== undefined) args.push('--max-session-delivery', String(durable.maxSessionDelivery));
      }
      break;
    case 'mosquitto': {
      const conf = path.join(dir, 'mosquitto.conf');
      // durable: persistence on, autosave_interval left at its default (1800 s). Started as
      // root, mosquitto drops to user 'mosquitto': its database directory must be writable.
      let persistence = ['persistence false'];
      if (durable) {
        const db = path.join(dir, 'mosquitto-db');
        mkdirSync(db, { recursive: true });
        chmodSync(dir, 0o755);
        chmodSync(db, 0o777);
        persistence = ['persistence true', `persistence_location ${db}/`];
      }
      writeFileSync(
        conf,
        [
          `listener ${port} 127.0.0.1`,
          'allow_anonymous true',
          ...persistence,
          'max_queued_messages 1000000',
          `max_inflight_messages ${opts.mosquittoInflight}`,
          'log_dest stderr',
          'log_type error',
          'log_type warning',
          '',
        ].join('\n'),
        { mode: 0o644 },
      );
      cmd = MOSQUITTO_BIN;
      args = ['-c', conf];
      break;
    }
  }
  const spawnedAt = performance.now();
  const { cp, exitP, state } = spawnLogged(cmd, args, logFile);

  const stop = async (): Promise<void> => {
    if (state.exited === null && cp.pid !== undefined) {
      cp.kill('SIGTERM');
      const t = setTimeout(() => {
        if (state.exited === null) cp.kill('SIGKILL');
      }, 3000);
      await exitP;
      clearTimeout(t);
    }
    live.delete(cp);
    if (ownsDir) removeTempDir(dir);
  };

  const kill = async (): Promise<void> => {
    if (state.exited === null && cp.pid !== undefined) {
      cp.kill('SIGKILL');
      await exitP;
    }
    live.delete(cp);
  };

  const terminate = async (graceMs: number): Promise<{ ms: number; forced: boolean }> => {
    const t0 = performance.now();
    let forced = false;
    if (state.exited === null && cp.pid !== undefined) {
      cp.kill('SIGTERM');
      const t = setTimeout(() => {
        if (state.exited === null) {
          forced = true;
          cp.kill('SIGKILL');
        }
      }, graceMs);
      await exitP;
      clearTimeout(t);
    }
    live.delete(cp);
    return { ms: performance.now() - t0, forced };
  };

  const extraPids: number[] = [];
  const done = (): RunningBroker => ({
    name,
    pid: cp.pid!,
    port,
    logFile,
    extraPids,
    spawnedAt,
    alive: () => state.exited === null,
    stop,
    kill,
    terminate,
  });
  if (durable?.noWait === true) {
    if (cp.pid === undefined) {
      await exitP;
      throw new BrokerStartError(`${name} ${state.exited ?? 'failed to spawn'}`, tail(logFile));
    }
    return done();
  }

  const deadline = Date.now() + opts.readyTimeoutMs;
  for (;;) {
    if (state.exited !== null) {
      const log = tail(logFile);
      await stop();
      throw new BrokerStartError(`${name} ${state.exited}`, log);
    }
    if (await mqttProbe('127.0.0.1', port, 500)) break;
    if (Date.now() > deadline) {
      const log = tail(logFile);
      await stop();
      throw new BrokerStartError(
        `${name} did not accept an MQTT CONNECT on 127.0.0.1:${port} within ${opts.readyTimeoutMs} ms`,
        log,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return done();
}

// ---------------------------------------------------------------- redis-server (Aedes persistence)

const REDIS_BIN = process.env['REDIS_BIN'] ?? 'redis-server';

export interface RunningRedis {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

export function redisUnavailable(): string | null {
  try {
    execFileSync(REDIS_BIN, ['--version'], { stdio: 'ignore', timeout: 5000 });
    return null;
  } catch {
    return `redis-server not found (apt-get install -y redis-server, or set REDIS_BIN)`;
  }
}

/** One RESP PING; true on +PONG. */
function redisPing(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => finish(d.toString('latin1').startsWith('+PONG')));
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
  });
}

/**
 * redis-server on a free loopback port with its files in `dir` (redis defaults otherwise:
 * RDB snapshots, no AOF). Killed by killAllBrokersSync on every exit path.
 */
export async function startRedis(dir: string, timeoutMs = 10_000): Promise<RunningRedis> {
  const port = await freePort();
  const logFile = path.join(dir, 'redis.log');
  const { cp, exitP, state } = spawnLogged(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no'], logFile);
  const stop = async (): Promise<void> => {
    if (state.exited === null) {
      cp.kill('SIGKILL'); // bench state only: no need for a final snapshot
      await exitP;
    }
    live.delete(cp);
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (state.exited !== null) throw new BrokerStartError(`redis-server ${state.exited}`, tail(logFile));
    if (await redisPing(port)) break;
    if (Date.now() > deadline) {
      const log = tail(logFile);
      await stop();
      throw new BrokerStartError(`redis-server did not answer PING on 127.0.0.1:${port}`, log);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: cp.pid!, port, stop };
}
