/** Shared test helpers: a broker on ephemeral loopback ports, MQTT.js clients, raw packet clients. */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { generate, parser as createParser, type IConnectPacket, type Packet } from 'mqtt-packet';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { createBroker, type Broker, type BrokerOptions } from '../src/index.js';

export interface TestBroker {
  broker: Broker;
  port: number;
  wsPort: number | undefined;
  url: string;
  close(): Promise<void>;
}

/** A temporary directory, removed by the returned function. */
export function tempDir(prefix = 'strata-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A broker on ephemeral loopback ports with its embedded store in a fresh temp dir. */
export async function startBroker(opts: BrokerOptions = {}): Promise<TestBroker> {
  const tmp = opts.dataDir === undefined ? tempDir() : null;
  const broker = createBroker({
    port: 0,
    host: '127.0.0.1',
    wsPort: null,
    dataDir: tmp?.dir,
    ...opts,
    config: { 'log.level': 'silent', 'durable_storage.messages.n_shards': 2, 'admin.port': -1, ...opts.config },
  });
  const addr = await broker.listen();
  const port = addr.tcp as number;
  return {
    broker,
    port,
    wsPort: addr.ws,
    url: `mqtt://127.0.0.1:${port}`,
    close: async () => {
      await broker.close();
      tmp?.remove();
    },
  };
}

/** The openssl binary, or undefined when it is not installed. */
export const OPENSSL = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => existsSync(p));

/** A self-signed certificate for CN=localhost made by openssl in `dir`: its PEM files' paths. */
export function testCertificate(dir: string): { certfile: string; keyfile: string } {
  if (!OPENSSL) throw new Error('openssl is not installed: cannot make a test certificate');
  const certfile = join(dir, 'c.pem');
  const keyfile = join(dir, 'k.pem');
  execFileSync(OPENSSL, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', keyfile, '-out', certfile], {
    stdio: 'ignore',
    timeout: 20000,
  });
  return { certfile, keyfile };
}

/**
 * A key pair (RSA 2048 or EC P-256) made by the openssl binary and read with createPrivateKey.
 * Not node's generateKeyPair(Sync) or WebCrypto's generateKey: on node 20 a key-generation job
 * left for the collector can deadlock the process — exporting the key as a JWK (jose does, to
 * sign) holds the key's mutex while allocating, the allocation runs a GC, and the job's finalizer
 * takes the same mutex (seen in gdb: ~KeyGenJob under ExportJWKRsaKey; a CI run hung 120 s).
 * A broker never generates keys; its tests must not either.
 */
export function opensslKeyPair(kind: 'rsa' | 'ec'): { privateKey: KeyObject; publicKey: KeyObject } {
  if (!OPENSSL) throw new Error('openssl is not installed: cannot make a test key');
  const opt = kind === 'rsa' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  const pem = execFileSync(OPENSSL, ['genpkey', ...opt], { encoding: 'utf8', timeout: 20000 });
  const privateKey = createPrivateKey(pem);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** A port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Environment for a CLI child process: this one's without STRATA_* (the broker's settings stay with the broker). */
export function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('STRATA_')) env[k] = v;
  return env;
}

/** Run `stratamq <args>` to its end: exit code, stdout, stderr. */
export function runCli(args: string[], timeoutMs = 60000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: cliEnv(), timeout: timeoutMs, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * `stratamq start` in a child process on a fixed port and data dir, so it can be killed
 * with SIGKILL and started again on the same store.
 */
export class BrokerProcess {
  private child: ChildProcess | null = null;
  output = '';

  constructor(
    readonly port: number,
    readonly dataDir: string,
    readonly extraArgs: string[] = [],
    /** Environment added to this process's for the broker (fault injection, config). */
    readonly env: NodeJS.ProcessEnv = {},
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The admin API's URL, as this run's 'listening' line names its port (start it with STRATA_ADMIN__PORT). */
  get adminUrl(): string {
    const m = /"admin":(\d+)/.exec(this.output);
    if (!m) throw new Error('the broker has no admin API (start it with STRATA_ADMIN__PORT=0)');
    return `http://127.0.0.1:${m[1]}`;
  }

  /** The ports this run's 'listening' line names (a listener on port 0 gets a new one at each start). */
  listeners(): { tcp?: number; ws?: number; tls?: number; wss?: number } {
    const line = this.output.split('\n').reverse().find((l) => l.includes('"msg":"listening"'));
    if (!line) throw new Error('the broker has not logged listening');
    const rec = JSON.parse(line) as Record<string, unknown>;
    const port = (k: string): number | undefined => (typeof rec[k] === 'number' ? (rec[k] as number) : undefined);
    return { tcp: port('tcp'), ws: port('ws'), tls: port('tls'), wss: port('wss') };
  }

  /** The admin token its data directory holds. */
  adminToken(): string {
    return readFileSync(join(this.dataDir, 'admin.token'), 'utf8').trim();
  }

  /** Start and resolve once the broker logs 'listening'. */
  async start(timeoutMs = 20000): Promise<void> {
    // No WebSocket listener (--ws-port 0) unless the environment given sets one.
    const ws = this.env.STRATA_LISTENER__WS__PORT === undefined ? ['--ws-port', '0'] : [];
    const child = spawn(process.execPath, [CLI, 'start', '--host', '127.0.0.1', '--port', String(this.port), ...ws, '--data-dir', this.dataDir, ...this.extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STRATA_ADMIN__PORT: '-1', ...this.env }, // no admin API unless a test asks (else every broker wants 18083)
    });
    this.child = child;
    this.output = ''; // readiness is read from this run's output only
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`broker did not start: ${this.output.slice(-2000)}`)), timeoutMs);
      const onData = (b: Buffer): void => {
        this.output += b.toString();
        if (this.output.includes('"msg":"listening"')) {
          clearTimeout(t);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (b: Buffer) => (this.output += b.toString()));
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`broker exited with ${code}: ${this.output.slice(-2000)}`));
      });
    });
  }

  /** SIGKILL: no shutdown code runs. Resolves when the process is gone. */
  async kill9(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM: graceful stop. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(sig);
    await gone;
  }
}

/** Options of a persistent session: v5 with a Session Expiry Interval, or 3.1.1 clean_session 0. */
export function persistent(protocolVersion: 4 | 5, clientId: string, expiry = 3600): IClientOptions {
  return protocolVersion === 5
    ? { protocolVersion, clientId, clean: false, properties: { sessionExpiryInterval: expiry } }
    : { protocolVersion, clientId, clean: false };
}

/** MQTT.js client, connected (rejects on CONNACK failure). No auto-reconnect. */
export async function client(tb: TestBroker | string, opts: IClientOptions = {}): Promise<MqttClient> {
  const url = typeof tb === 'string' ? tb : tb.url;
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
}

/**
 * MQTT.js client, connected, recording what it receives from before CONNACK on (a persistent
 * session's waiting messages can come in the same read as the CONNACK: a listener added after
 * `client()` resolves may miss them).
 */
export async function recordingClient(tb: TestBroker | string, opts: IClientOptions = {}): Promise<{ c: MqttClient; got: { topic: string; payload: string }[] }> {
  const c = unconnected(tb, opts);
  const got: { topic: string; payload: string }[] = [];
  c.on('message', (topic, p) => got.push({ topic, payload: p.toString() }));
  const connected = new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  c.connect();
  await connected;
  return { c, got };
}

/** MQTT.js client created but not connected: call `.connect()` (e.g. to observe CONNACK). */
export function unconnected(tb: TestBroker | string, opts: IClientOptions = {}): MqttClient {
  const url = typeof tb === 'string' ? tb : tb.url;
  return mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts, manualConnect: true });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Collect `n` messages from a client (rejects after timeoutMs). */
export function collect(c: MqttClient, n: number, timeoutMs = 5000): Promise<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }[]> {
  return new Promise((resolve, reject) => {
    const got: { topic: string; payload: Buffer; packet: mqtt.IPublishPacket }[] = [];
    const t = setTimeout(() => {
      c.off('message', on);
      reject(new Error(`timed out with ${got.length}/${n} messages`));
    }, timeoutMs);
    const on = (topic: string, payload: Buffer, packet: mqtt.IPublishPacket): void => {
      got.push({ topic, payload, packet });
      if (got.length >= n) {
        clearTimeout(t);
        c.off('message', on);
        resolve(got);
      }
    };
    c.on('message', on);
  });
}

/** Assert that no message arrives within `ms`. Resolves to what did arrive. */
export async function quiet(c: MqttClient, ms = 200): Promise<string[]> {
  const got: string[] = [];
  const on = (topic: string): void => {
    got.push(topic);
  };
  c.on('message', on);
  await sleep(ms);
  c.off('message', on);
  return got;
}

/**
 * A raw MQTT client speaking packets (mqtt-packet) over any duplex: a real socket or an
 * in-memory pair wired straight into the broker (protocol tests without ports).
 */
export class RawClient {
  private readonly packets: Packet[] = [];
  private waiters: ((p: Packet | null) => void)[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  private readonly parser: ReturnType<typeof createParser>;

  constructor(
    readonly stream: Duplex | Socket,
    public version: 3 | 4 | 5 = 4,
  ) {
    // The parser must know the version: v5 reason codes and properties are parsed only then.
    this.parser = createParser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => {
      const w = this.waiters.shift();
      if (w) w(p);
      else this.packets.push(p);
    });
    this.parser.on('error', () => undefined);
    stream.on('data', (b: Buffer) => this.parser.parse(b));
    stream.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) => {
      const done = (): void => {
        this.closed = true;
        for (const w of this.waiters.splice(0)) w(null);
        resolve();
      };
      stream.once('close', done);
      stream.once('end', done);
    });
  }

  static async tcp(port: number, version: 3 | 4 | 5 = 4): Promise<RawClient> {
    const s = netConnect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    s.setNoDelay(true);
    return new RawClient(s, version);
  }

  /** An in-memory duplex pair: one end is a broker Connection, the other this client. */
  static memory(broker: Broker, version: 3 | 4 | 5 = 4): RawClient {
    const [a, b] = duplexPair();
    broker.accept(a, 'memory', null);
    return new RawClient(b, version);
  }

  send(p: Packet): void {
    this.stream.write(generate(p, { protocolVersion: this.version }));
  }

  sendRaw(bytes: Buffer | number[]): void {
    this.stream.write(Buffer.from(bytes));
  }

  /** Next packet (of `cmd` if given; others before it are dropped). null if the connection closed. */
  async next(cmd?: Packet['cmd'], timeoutMs = 3000): Promise<Packet | null> {
    for (;;) {
      let p: Packet | null | undefined = this.packets.shift();
      if (p === undefined) {
        if (this.closed) return null;
        p = await new Promise<Packet | null>((resolve, reject) => {
          const t = setTimeout(() => {
            this.waiters = this.waiters.filter((w) => w !== done);
            reject(new Error(`timed out waiting for ${cmd ?? 'a packet'}`));
          }, timeoutMs);
          const done = (x: Packet | null): void => {
            clearTimeout(t);
            resolve(x);
          };
          this.waiters.push(done);
        });
      }
      if (p === null) return null;
      if (!cmd || p.cmd === cmd) return p;
    }
  }

  async connect(clientId: string, extra: Partial<IConnectPacket> = {}): Promise<Packet | null> {
    this.send({ cmd: 'connect', protocolId: this.version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: this.version, clientId, clean: true, keepalive: 60, ...extra } as Packet);
    return this.next('connack');
  }

  /** Wait until the broker closes the connection; returns the packets it sent before. */
  async waitClosed(timeoutMs = 3000): Promise<Packet[]> {
    const seen: Packet[] = [];
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('connection was not closed');
      try {
        const p = await this.next(undefined, left);
        if (p) seen.push(p);
      } catch {
        throw new Error(`connection was not closed (got ${seen.map((p) => p.cmd).join(',')})`);
      }
    }
    return seen;
  }

  end(): void {
    this.stream.destroy();
  }
}

/** Two connected in-memory Duplex streams. */
export function duplexPair(): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
  const mk = (other: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        other().push(chunk);
        cb();
      },
      final(cb) {
        other().push(null);
        cb();
      },
      destroy(err, cb) {
        const o = other();
        if (!o.destroyed) o.push(null);
        cb(err);
      },
    });
  a = mk(() => b);
  b = mk(() => a);
  return [a, b];
}
