/** Shared test helpers: a broker on ephemeral loopback ports, MQTT.js clients, raw packet clients. */
import { Duplex } from 'node:stream';
import { connect as netConnect, type Socket } from 'node:net';
import { generate, parser as createParser, type IConnectPacket, type Packet } from 'mqtt-packet';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { createBroker, type Broker, type BrokerOptions } from '../src/index.js';
import { Connection } from '../src/connection.js';

export interface TestBroker {
  broker: Broker;
  port: number;
  wsPort: number | undefined;
  url: string;
  close(): Promise<void>;
}

export async function startBroker(opts: BrokerOptions = {}): Promise<TestBroker> {
  const broker = createBroker({
    port: 0,
    host: '127.0.0.1',
    wsPort: null,
    ...opts,
    config: { 'log.level': 'silent', ...opts.config },
  });
  const addr = await broker.listen();
  const port = addr.tcp as number;
  return { broker, port, wsPort: addr.ws, url: `mqtt://127.0.0.1:${port}`, close: () => broker.close() };
}

/** MQTT.js client, connected (rejects on CONNACK failure). No auto-reconnect. */
export async function client(tb: TestBroker | string, opts: IClientOptions = {}): Promise<MqttClient> {
  const url = typeof tb === 'string' ? tb : tb.url;
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
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
    broker.addConnection(new Connection(broker, a, 'memory'));
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
