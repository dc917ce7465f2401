// Starting and stopping the brokers under test as child processes on free
// loopback ports. Readiness = an MQTT CONNECT on the port gets a CONNACK.
import net from 'node:net';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type BrokerName = 'strata' | 'aedes' | 'mosquitto';
export const BROKERS: readonly BrokerName[] = ['strata', 'aedes', 'mosquitto'];
export const BROKER_LABEL: Record<BrokerName, string> = {
  strata: 'StrataMQ',
  aedes: 'Aedes',
  mosquitto: 'Mosquitto',
};

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/e2e
export const STRATA_CLI = path.resolve(here, '../../src/cli/main.js');
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
      return existsSync(STRATA_CLI) ? null : `not built (${path.relative(process.cwd(), STRATA_CLI)} missing)`;
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
    const id = `bench-probe-${process.pid}`;
    const idBuf = Buffer.from(id);
    // CONNECT, MQTT 3.1.1, clean session, keepalive 10
    const varHdr = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0a]);
    const body = Buffer.concat([varHdr, Buffer.from([idBuf.length >> 8, idBuf.length & 255]), idBuf]);
    const pkt = Buffer.concat([Buffer.from([0x10, body.length]), body]);
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
  alive(): boolean;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
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

export async function startBroker(name: BrokerName, opts: BrokerOptions): Promise<RunningBroker> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), `stratamq-bench-${name}-`));
  tempDirs.add(dir);
  const logFile = path.join(dir, `${name}.log`);
  let cmd: string;
  let args: string[];
  switch (name) {
    case 'strata': {
      const dataDir = path.join(dir, 'data');
      cmd = process.execPath;
      // BENCH_STRATA_NODE_ARGS: node flags for the broker process only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
      const nodeArgs = (process.env['BENCH_STRATA_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
      args = [...nodeArgs, STRATA_CLI, 'start', '--port', String(port), '--ws-port', '0', '--data-dir', dataDir];
      if (strataHasHostFlag()) args.push('--host', '127.0.0.1');
      args.push(...opts.strataArgs);
      break;
    }
    case 'aedes':
      cmd = process.execPath;
      args = [AEDES_SERVER, String(port)];
      break;
    case 'mosquitto': {
      const conf = path.join(dir, 'mosquitto.conf');
      writeFileSync(
        conf,
        [
          `listener ${port} 127.0.0.1`,
          'allow_anonymous true',
          'persistence false',
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
  const fd = openSync(logFile, 'a');
  const cp = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(cp);
  let exited: string | null = null;
  const exitP = new Promise<void>((resolve) => {
    cp.once('exit', (code, sig) => {
      exited = `exited (code ${code}, signal ${sig})`;
      live.delete(cp);
      resolve();
    });
    cp.once('error', (e) => {
      exited = `failed to spawn: ${e.message}`;
      live.delete(cp);
      resolve();
    });
  });

  const stop = async (): Promise<void> => {
    if (exited === null && cp.pid !== undefined) {
      cp.kill('SIGTERM');
      const t = setTimeout(() => {
        if (exited === null) cp.kill('SIGKILL');
      }, 3000);
      await exitP;
      clearTimeout(t);
    }
    live.delete(cp);
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  };

  const deadline = Date.now() + opts.readyTimeoutMs;
  for (;;) {
    if (exited !== null) {
      const log = tail(logFile);
      await stop();
      throw new BrokerStartError(`${name} ${exited}`, log);
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
  return { name, pid: cp.pid!, port, logFile, alive: () => exited === null, stop };
}
