/**
 * One raw MQTT connection of the checker: a byte stream (TCP, TLS, WebSocket or secure
 * WebSocket) and an mqtt-packet parser for the connection's protocol version. It only moves
 * packets; what they mean is the driver's business (driver.ts), which sees every packet in
 * arrival order through `onPacket`.
 */
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { generate, parser as createParser, type Packet } from 'mqtt-packet';
import { createWebSocketStream, WebSocket } from 'ws';
import type { Version } from './history.js';

/** The transports a connection can use (`--transport mixed` takes them in this order). */
export const TRANSPORTS = ['tcp', 'ws', 'tls', 'wss'] as const;
export type Transport = (typeof TRANSPORTS)[number];

/** Where a connection goes: the transport and the port of the broker's listener for it. */
export interface WireTarget {
  transport: Transport;
  port: number;
}

/** The stream once connected, or null when the broker refused or the handshake failed. */
async function openStream(to: WireTarget): Promise<Duplex | null> {
  if (to.transport === 'ws' || to.transport === 'wss') {
    // A test certificate: its name and issuer are not checked (the broker's TLS is what runs).
    const ws = new WebSocket(`${to.transport}://127.0.0.1:${to.port}/mqtt`, 'mqtt', { rejectUnauthorized: false });
    const ok = await new Promise<boolean>((resolve) => {
      ws.once('open', () => resolve(true));
      ws.once('error', () => resolve(false));
    });
    if (!ok) {
      ws.terminate();
      return null;
    }
    return createWebSocketStream(ws);
  }
  const socket =
    to.transport === 'tls' ? tlsConnect({ port: to.port, host: '127.0.0.1', rejectUnauthorized: false }) : netConnect(to.port, '127.0.0.1');
  const ok = await new Promise<boolean>((resolve) => {
    socket.once(to.transport === 'tls' ? 'secureConnect' : 'connect', () => resolve(true));
    socket.once('error', () => resolve(false));
  });
  if (!ok) {
    socket.destroy();
    return null;
  }
  socket.setNoDelay(true);
  return socket;
}

export class Wire {
  closed = false;
  /** performance.now() of the last packet received (or of the connect). */
  lastRx: number;
  /** SUBSCRIBE / UNSUBSCRIBE packet ids awaiting their acknowledgement → resolve. */
  readonly control = new Map<number, () => void>();
  readonly closedPromise: Promise<void>;
  private connackWaiter: ((p: Packet | null) => void) | null = null;
  private connackSeen: Packet | null = null;

  private constructor(
    readonly n: number,
    readonly socket: Duplex,
    readonly version: Version,
    onPacket: (w: Wire, p: Packet) => void,
    onClose: (w: Wire) => void,
  ) {
    this.lastRx = performance.now();
    const parser = createParser({ protocolVersion: version });
    parser.on('packet', (p: Packet) => {
      this.lastRx = performance.now();
      if (p.cmd === 'connack') {
        this.connackSeen = p;
        this.connackWaiter?.(p);
        this.connackWaiter = null;
      }
      onPacket(this, p);
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (b: Buffer) => parser.parse(b));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.closed = true;
        this.connackWaiter?.(null);
        this.connackWaiter = null;
        for (const done of this.control.values()) done();
        this.control.clear();
        onClose(this);
        resolve();
      });
    });
  }

  /** A connected stream, or null when the broker refused the connection. */
  static async open(to: WireTarget, n: number, version: Version, onPacket: (w: Wire, p: Packet) => void, onClose: (w: Wire) => void): Promise<Wire | null> {
    const socket = await openStream(to);
    return socket ? new Wire(n, socket, version, onPacket, onClose) : null;
  }

  send(p: Packet): void {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(generate(p, { protocolVersion: this.version }));
  }

  /** The CONNACK, or null if the connection closed or `timeoutMs` passed first. */
  connack(timeoutMs: number): Promise<Packet | null> {
    if (this.connackSeen) return Promise.resolve(this.connackSeen);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.connackWaiter = null;
        resolve(null);
      }, timeoutMs);
      this.connackWaiter = (p) => {
        clearTimeout(t);
        resolve(p);
      };
    });
  }

  /** Resolves once closed or after `ms`; true if closed. */
  async waitClosed(ms: number): Promise<boolean> {
    if (this.closed) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closedPromise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
