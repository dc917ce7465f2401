/**
 * One client connection: bytes in → whole packets → handlers; packets out → coalesced
 * writes. Owns keep-alive, the inbound topic-alias map and the connection-level limits.
 *
 * State machine: 'awaiting-connect' → ('authenticating' →) 'connected' → 'closed'.
 * - The first packet must be CONNECT [MQTT-3.1.0-1]; anything else closes the socket.
 * - Packets that arrive while an asynchronous authenticate gate runs are held, in order.
 * - Once 'closed' nothing is read or written again, and the broker is told exactly once.
 *
 * Writes are gathered for the rest of the event-loop turn (until setImmediate, so every socket
 * read of one poll phase is answered together) and handed to the socket as one Buffer (SPEC
 * A1): with TCP_NODELAY set this gives one segment per batch, without Nagle's 40 ms stalls.
 */
import { LongTimer, wheel, type WheelEntry } from '../timers.js';
import type { TokenBucket } from './rate.js';
import type { OutboundAliases } from '../session/topic-aliases.js';
import type { Duplex } from 'node:stream';
import type { Packet } from 'mqtt-packet';
import { encode, encodeAcks, Decoder, UnsupportedProtocolVersion, type ProtocolVersion } from '../wire/codec.js';
import { Framer, type FrameSink } from '../wire/framer.js';
import { ProtocolViolation, RC, V3_CONNACK } from '../wire/reason-codes.js';
import type { Client } from '../lifecycle/sessions.js';
import type { Session, WillState } from '../session/session.js';
import type { ProtocolContext } from './context.js';

/** CONNACK, Session Present 0, return code 0x01 (3.1.1 form). */
/** Pending output past this many bytes is handed to the socket at once. */
const OUT_FLUSH_BYTES = 256 * 1024;
/**
 * Bytes a connection reads before it lets the others have the event loop: libuv reads a ready
 * socket up to 32 times 64 KB in one go, so one client flooding (200k retained messages at once)
 * held everybody else's packets for ~50 ms a turn. After this many bytes the socket stops being read
 * until the next turn (Connection.yieldReading).
 */
const READ_TURN_BYTES = 128 * 1024;
const CONNACK_UNSUPPORTED_VERSION = Buffer.from([0x20, 0x02, 0x00, V3_CONNACK.UnacceptableProtocolVersion]);

/**
 * How the native drain loop takes a plain TCP socket (transport/socket-handoff.ts; null for TLS
 * and WebSocket connections).
 */
export interface SocketHandoff {
  /** The descriptor, when nothing is buffered in the socket either way; else null. */
  fd(): number | null;
  /** Stop libuv reading the socket (the native loop reads it, or the connection yields a turn); false: no handle (closed). */
  stopReading(): boolean;
  /** Read it again; non-zero: the libuv error. */
  startReading(): number;
}

/** The packet handlers (handlers/index.ts), given to each connection by protocol/accept.ts. */
export interface PacketHandlers {
  /** Any packet, decoded. */
  packet(conn: Connection, packet: Packet): void;
  /** A plain PUBACK, from its packet id alone (the packet a drain gets most of). */
  puback(conn: Connection, id: number): void;
}

/** A place in the acknowledgement queue (ackQueue); `gate` and `acks`: an ackWhen group. */
interface AckSlot {
  buf: Buffer | null;
  ready: boolean;
  gate: Promise<void> | null;
  /** `(type << 16) | packet id` per acknowledgement of the group, in the order reserved. */
  acks: number[] | null;
}

/** What to send for acknowledgement `type` of packet `id` whose gate rejected with `err` (null: nothing). */
export type AckFailed = (conn: Connection, type: 4 | 5, id: number, err: unknown) => Buffer | null;

/** A write waiting its turn: bytes, or a send to run once its gate settled (`ready`). */
interface Gated {
  ready: boolean;
  run: (() => void) | null;
  buf: Buffer | null;
}

export type ConnectionState = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed';

/** The connection a socket feeds (set once, read by the shared listeners below). */
const CONN = Symbol('connection');
type Fed = Duplex & { [CONN]: Connection };

// One set of socket listeners for every connection (no closures per connection): the socket
// they are called on carries its connection.
function onSocketData(this: Fed, chunk: Buffer): void {
  this[CONN].onData(chunk);
}
function onSocketError(this: Fed, err: Error): void {
  const c = this[CONN];
  if (!c.closeReason) c.closeReason = `socket error: ${err.message}`;
}
function onSocketEnd(this: Fed): void {
  this[CONN].close('connection closed by client');
}
function onSocketClose(this: Fed): void {
  this[CONN].onClosed();
}
function flushConnection(c: Connection): void {
  c.flushOut();
}

export class Connection implements Client, FrameSink, WheelEntry {
  state: ConnectionState = 'awaiting-connect';
  clientId = '';
  username: string | undefined = undefined;
  protocolVersion: ProtocolVersion = 4;
  session: Session | null = null;
  /** Will to publish if the connection ends without a normal DISCONNECT. */
  will: Omit<WillState, 'timer'> | null = null;
  /** Outbound window: min(client Receive Maximum, mqtt.max_inflight). */
  window = 65535;
  /** Largest packet the client accepts (v5 Maximum Packet Size), bytes. */
  clientMaxPacketSize = Number.POSITIVE_INFINITY;
  /** Outbound topic aliases (v5 clients that sent a Topic Alias Maximum); null otherwise. */
  outAliases: OutboundAliases | null = null;
  /** limits.messages_rate / limits.bytes_rate for this client; null when off. */
  inMessages: TokenBucket | null = null;
  inBytes: TokenBucket | null = null;
  private paused = false;
  /** Input held until the next iteration (holdForInflow). */
  private inflowHeld = false;
  /** Bytes read since the last yield (READ_TURN_BYTES); -1 while yielding (not read until the next turn). */
  private readSinceYield = 0;
  private expiry: LongTimer | null = null;
  /** Inbound topic aliases (v5): alias → topic name; null until the first one. */
  aliases: Map<number, string> | null = null;
  topicAliasMaximum = 0;
  keepaliveSeconds = 0;
  lastSeen = Date.now();
  /** Keep-alive grace (1.5 x Keep Alive), ms; 0: none. */
  private keepaliveGraceMs = 0;
  /** Until CONNECT: when mqtt.connect_timeout closes the socket (ms since epoch). */
  private connectDue: number;
  wheelAt = 0;
  wheelIdx = 0;
  /** Why the connection closed; reported in `client.disconnected`. */
  closeReason = '';
  /** The last store promise a QoS 0 PUBLISH of this client gave (handlers/publish.ts): watched once. */
  qos0Stored: Promise<void> | null = null;

  /**
   * PUBACK / PUBREC waiting behind an earlier one whose message is not durable yet: they leave
   * in the order the PUBLISH packets came in ([MQTT-4.6.0-2], [MQTT-4.6.0-3]).
   */
  private ackQueue: AckSlot[] | null = null;
  private readonly framer: Framer;
  private readonly decoder = new Decoder();
  private held: Packet[] | null = null;
  private holds = 0;
  /**
   * Bytes written this event-loop turn, handed to the socket as one Buffer at its end: one
   * stream write and one syscall for however many packets (the per-chunk cost of a corked
   * Writable dominated delivery-heavy profiles).
   */
  private out: Buffer[] = [];
  private outBytes = 0;
  /** Writes waiting behind a `writeAfter` gate, in order; null when none waits. */
  private gated: Gated[] | null = null;
  private gatedBytes = 0;
  private releasing = false;
  /** `onDrain` callers waiting for this connection's own buffers (out, gated) to reach the socket. */
  private drainWaiters: (() => void)[] | null = null;
  /**
   * While the native drain loop has the socket (handOff): takes it back at once (close),
   * tells when the loop last read from the client (keep-alive), and the window to restore.
   */
  private native: { stop: () => void; lastRead: () => number; window: number } | null = null;

  constructor(
    readonly broker: ProtocolContext,
    readonly socket: Duplex,
    readonly remoteAddress: string,
    private readonly handlers: PacketHandlers,
    private readonly handoff: SocketHandoff | null = null,
  ) {
    this.framer = new Framer(broker.config['mqtt.max_packet_size']);
    (socket as Fed)[CONN] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    // [MQTT-3.1.4-?] a socket that never sends CONNECT is dropped after connect_timeout.
    this.connectDue = Date.now() + broker.config['mqtt.connect_timeout'] * 1000;
    wheel.schedule(this, this.connectDue);
  }

  /**
   * The timer wheel's visit (timers.ts): before CONNECT, the connect timeout; once connected,
   * the keep-alive check, [MQTT-3.1.2-22] close after 1.5 x Keep Alive without any packet.
   */
  onWheel(now: number): void {
    if (this.state === 'awaiting-connect') {
      if (now >= this.connectDue) this.close('no CONNECT within connect_timeout');
      else wheel.schedule(this, this.connectDue);
      return;
    }
    if (this.state !== 'connected' || this.keepaliveGraceMs === 0) return;
    const seen = this.native === null ? this.lastSeen : Math.max(this.lastSeen, this.native.lastRead());
    if (now - seen >= this.keepaliveGraceMs) this.disconnect(RC.KeepAliveTimeout, 'keep-alive timeout');
    else wheel.schedule(this, seen + this.keepaliveGraceMs);
  }

  /** Hand this turn's writes to the socket as one Buffer. */
  flushOut(): void {
    const out = this.out;
    if (out.length === 0 || this.native !== null) return;
    const buf = out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.broker.metrics.bytesSent += buf.length;
    this.socket.write(buf);
    if (this.drainWaiters !== null) this.armDrain();
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** Bytes from the socket (or, after a native drain, what it read and left). */
  onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastSeen = Date.now();
    this.broker.metrics.bytesReceived += chunk.length;
    if (this.readSinceYield >= 0 && (this.readSinceYield += chunk.length) >= READ_TURN_BYTES) this.yieldReading();
    const result = this.framer.push(chunk, this);
    if (!result) return;
    if (result.kind === 'too-large') {
      // [MQTT-3.1.2-24]-style limit on our side: v5 gets 0x95 Packet too large.
      this.protocolError(new ProtocolViolation(RC.PacketTooLarge, `packet of ${result.size} bytes exceeds mqtt.max_packet_size`));
    } else {
      this.protocolError(new ProtocolViolation(RC.MalformedPacket, 'malformed Remaining Length'));
    }
  }

  /**
   * A plain PUBACK (any version: no reason code, no properties), the packet a drain gets most
   * of: handled from its id alone. Undefined: not now (before CONNECT, input held), take the
   * general path.
   */
  puback(id: number): boolean | undefined {
    if (this.state !== 'connected' || this.held !== null) return undefined;
    this.handlers.puback(this, id);
    return (this.state as ConnectionState) !== 'closed';
  }

  /** One whole packet from the framer; false: stop (closed). */
  frame(frame: Buffer): boolean {
    if (this.state === 'closed') return false;
    let packet: Packet;
    try {
      packet = this.decoder.decode(frame);
    } catch (e) {
      this.protocolError(e as Error);
      return false;
    }
    if (this.held) {
      this.held.push(packet);
      return true;
    }
    this.dispatch(packet);
    return (this.state as ConnectionState) !== 'closed';
  }

  private dispatch(packet: Packet): void {
    const inflow = this.broker.inflow;
    inflow?.begin();
    try {
      this.handlers.packet(this, packet);
    } catch (e) {
      this.protocolError(e as Error);
    }
    // Publishers only: a SUBSCRIBE queueing its retained messages for the client itself holds no one.
    if (inflow !== null && packet.cmd === 'publish' && !this.inflowHeld && this.native === null && this.state !== 'closed' && inflow.shouldHold()) this.holdForInflow();
  }

  /**
   * Most deliveries of a message of this client found a window's worth queued already
   * (session/inflow.ts): what it sent after it is held, in order, and its socket not read, until the next iteration
   * (two setImmediate turns: after the next poll phase has read the subscribers'
   * acknowledgements). Then it is read again and what was held goes on, until it is held again.
   */
  private holdForInflow(): void {
    this.inflowHeld = true;
    this.holdInput();
    const handle = this.stopReading();
    setImmediate(() =>
      setImmediate(() => {
        this.inflowHeld = false;
        if (this.state === 'closed') return;
        if (handle && !this.startHandle()) return;
        // Also after a rate limit's pause that ended meanwhile (pauseReading leaves the resume to this).
        if (!this.paused) this.socket.resume();
        this.releaseInput();
      }),
    );
  }

  /** Hold inbound packets while an asynchronous gate runs. */
  private holdInput(): void {
    this.holds++;
    this.held ??= [];
  }

  /**
   * End one hold; when none is left, replay the held packets in arrival order. Holds nest: a
   * gate that starts inside another gate's continuation keeps input held until both end.
   */
  private releaseInput(): void {
    if (this.holds > 0) this.holds--;
    if (this.holds > 0) return;
    const held = this.held;
    this.held = null;
    while (held && held.length > 0 && this.state !== 'closed') {
      this.dispatch(held.shift() as Packet);
      if (this.held) {
        // Another asynchronous gate started: keep the rest behind it, in order.
        (this.held as Packet[]).push(...held);
        return;
      }
    }
  }

  /**
   * Run `then` with a gate's answer: at once when the answer is synchronous, else after the
   * Promise settles, holding later packets meanwhile so their order is kept.
   */
  gate<T>(answer: T | Promise<T>, then: (value: T) => void): void {
    if (!(answer instanceof Promise)) {
      then(answer);
      return;
    }
    this.holdInput();
    answer.then(
      (v) => {
        if (this.state === 'closed') return;
        try {
          then(v);
        } catch (e) {
          this.protocolError(e as Error);
          return;
        }
        this.releaseInput();
      },
      (e: unknown) => this.protocolError(new Error(`hook failed: ${(e as Error)?.message ?? String(e)}`)),
    );
  }

  /** Called by the CONNECT handler once the session is attached. */
  startKeepalive(seconds: number): void {
    this.keepaliveSeconds = seconds;
    wheel.cancel(this);
    if (seconds === 0) return;
    // [MQTT-3.1.2-22] close after 1.5 x Keep Alive without any packet.
    this.keepaliveGraceMs = (seconds * 1000 * this.broker.config['mqtt.keepalive_multiplier']) / 10;
    wheel.schedule(this, Date.now() + this.keepaliveGraceMs);
  }

  /**
   * Queue bytes for this turn's single flush; behind a `writeAfter` whose gate has not settled
   * they wait their turn.
   */
  write(buf: Buffer): void {
    if (this.state === 'closed') return;
    if (this.gated !== null && !this.releasing) {
      this.gated.push({ ready: true, run: null, buf });
      this.gatedBytes += buf.length;
      return;
    }
    if (this.out.length === 0 && this.native === null) setImmediate(flushConnection, this);
    this.out.push(buf);
    this.outBytes += buf.length;
    if (this.outBytes >= OUT_FLUSH_BYTES) this.flushOut();
  }

  /**
   * Run `send` (which writes) once `gate` settles, and keep every write made after this call
   * behind it: a QoS 2 delivery of a persistent session goes out only once its packet id is
   * durable, and what follows it must not overtake it (ordered topics, [MQTT-4.6.0-6]). A
   * rejected gate runs nothing.
   */
  writeAfter(gate: Promise<unknown>, send: () => void): void {
    const slot: Gated = { ready: false, run: send, buf: null };
    (this.gated ??= []).push(slot);
    const settle = (ok: boolean): void => {
      if (!ok) slot.run = null;
      slot.ready = true;
      this.releaseGated();
    };
    gate.then(
      () => settle(true),
      () => settle(false),
    );
  }

  private releaseGated(): void {
    const q = this.gated;
    if (q === null) return;
    this.releasing = true;
    try {
      while (q.length > 0 && (q[0] as Gated).ready) {
        const slot = q.shift() as Gated;
        if (slot.buf) {
          this.gatedBytes -= slot.buf.length;
          this.write(slot.buf);
        } else slot.run?.();
      }
    } finally {
      this.releasing = false;
    }
    if (q.length === 0 && this.gated === q) {
      this.gated = null;
      if (this.drainWaiters !== null) this.armDrain();
    }
  }

  /** Send an acknowledgement now, or after those reserved before it. */
  ack(buf: Buffer): void {
    if (this.ackQueue === null) this.write(buf);
    else this.ackQueue.push({ buf, ready: true, gate: null, acks: null });
  }

  /** Reserve the next acknowledgement slot; call the result with the bytes (null: send nothing). */
  reserveAck(): (buf: Buffer | null) => void {
    const slot: AckSlot = { buf: null, ready: false, gate: null, acks: null };
    (this.ackQueue ??= []).push(slot);
    return (buf) => {
      slot.buf = buf;
      slot.ready = true;
      this.releaseAcks();
    };
  }

  /**
   * Acknowledge packet `id` with a `type` packet (PUBACK 4, PUBREC 5) once `gate` resolves, in
   * the order reserved; if it rejects, `failed` says what to send instead (null: nothing).
   * Acknowledgements reserved one after another on the same gate (the logged messages of one
   * event-loop turn share their append batch's promise) share one slot, one pair of handlers and
   * one buffer: a sync-mode message log's PUBACKs cost no closure, promise or Buffer each.
   */
  ackWhen(gate: Promise<void>, type: 4 | 5, id: number, failed: AckFailed): void {
    const q = (this.ackQueue ??= []);
    const last = q[q.length - 1];
    if (last !== undefined && last.gate === gate && !last.ready) {
      (last.acks as number[]).push((type << 16) | id);
      return;
    }
    const slot: AckSlot = { buf: null, ready: false, gate, acks: [(type << 16) | id] };
    q.push(slot);
    gate.then(
      () => {
        slot.buf = encodeAcks(slot.acks as number[]);
        slot.ready = true;
        this.releaseAcks();
      },
      (err: unknown) => {
        const out: Buffer[] = [];
        for (const a of slot.acks as number[]) {
          const b = failed(this, (a >>> 16) as 4 | 5, a & 0xffff, err);
          if (b !== null) out.push(b);
        }
        slot.buf = out.length === 0 ? null : Buffer.concat(out);
        slot.ready = true;
        this.releaseAcks();
      },
    );
  }

  /** Write the acknowledgements at the head of the queue that are ready. */
  private releaseAcks(): void {
    const q = this.ackQueue;
    if (q === null) return;
    while (q.length > 0 && (q[0] as AckSlot).ready) {
      const head = q.shift() as AckSlot;
      if (head.buf) this.write(head.buf);
    }
    if (q.length === 0) this.ackQueue = null;
  }

  /**
   * Call `fn` once what was written has been taken by the kernel. Bytes still in this
   * connection's own buffers (this turn's writes, writes behind a gate) are waited for until
   * they reach the socket: the socket emits 'drain' only after a write it could not take at
   * once, and one it took whole emits nothing.
   */
  onDrain(fn: () => void): void {
    (this.drainWaiters ??= []).push(fn);
    this.armDrain();
  }

  /** Hand the drain waiters to the socket's 'drain', or call them now the socket has taken everything. */
  private armDrain(): void {
    if (this.outBytes > 0 || this.gated !== null) return; // flushOut comes back here
    const waiters = this.drainWaiters as (() => void)[];
    this.drainWaiters = null;
    if (this.socket.writableNeedDrain) for (const fn of waiters) this.socket.once('drain', fn);
    else
      setImmediate(() => {
        for (const fn of waiters) fn();
      });
  }

  send(packet: Packet): void {
    this.write(encode(packet, this.protocolVersion));
  }

  /** Bytes written but not yet handed to the kernel. */
  get backlog(): number {
    return this.socket.writableLength + this.outBytes + this.gatedBytes;
  }

  /**
   * Refuse what the client did: v5 clients get DISCONNECT with `code` ([MQTT-4.13.1-1]);
   * earlier versions are simply closed. Logged once; the broker carries on.
   */
  protocolError(err: Error): void {
    if (this.state === 'closed') return;
    const code = err instanceof ProtocolViolation ? err.code : RC.UnspecifiedError;
    this.broker.onClientError(this, err);
    if (err instanceof UnsupportedProtocolVersion && this.state === 'awaiting-connect') {
      // [MQTT-3.1.2-2] answer CONNACK 0x01 "unacceptable protocol level", then close. The
      // client's level is one we cannot encode for, so the 3.1.1 form (what 3.1 and 3.1.1
      // clients read; a v5 client reads it as a failed CONNACK too) is the one to send.
      this.write(CONNACK_UNSUPPORTED_VERSION);
      this.close(err.message);
      return;
    }
    this.disconnect(code, err.message);
  }

  /** Server-initiated disconnect with a reason code (sent only to connected v5 clients). */
  disconnect(code: number, reason: string): void {
    if (this.state === 'closed') return;
    if (this.state === 'connected' && this.protocolVersion === 5) {
      this.send({ cmd: 'disconnect', reasonCode: code, properties: code >= 0x80 ? { reasonString: reason.slice(0, 200) } : {} });
    }
    this.close(reason);
  }

  /**
   * The socket's descriptor, when the native drain loop may take the socket now: a plain TCP
   * connection (not TLS, not WebSocket) with nothing buffered either way (what this turn
   * wrote is flushed first). Null otherwise.
   */
  nativeFd(): number | null {
    const h = this.handoff;
    // Not while it yields: its next turn would start reading a socket the loop then owns.
    if (h === null || this.state !== 'connected' || this.native !== null || this.held !== null || this.gated !== null || this.ackQueue !== null || this.readSinceYield < 0) return null;
    this.flushOut();
    if (this.framer.buffered > 0) return null;
    return h.fd();
  }

  /**
   * Hand the socket to the native drain loop: stop libuv reading it, hold every write, and give the session no window (nothing else is sent meanwhile).
   * `stop` must take it back synchronously; close() calls it.
   */
  handOff(stop: () => void, lastRead: () => number): void {
    (this.handoff as SocketHandoff).stopReading(); // nativeFd found it
    this.native = { stop, lastRead, window: this.window };
    this.window = 0;
  }

  /**
   * The native loop is done with the socket: write `unsent` (frames it had sent but the socket
   * had not taken), then what was held; then, unless closing, read `rest` (received, not
   * consumed) and the socket again.
   */
  takeBack(unsent: Buffer, rest: Buffer, closing: boolean): void {
    const n = this.native;
    if (n === null) return;
    this.native = null;
    this.window = n.window;
    this.lastSeen = Math.max(this.lastSeen, n.lastRead());
    if (unsent.length > 0) {
      this.broker.metrics.bytesSent += unsent.length;
      this.socket.write(unsent);
    }
    this.flushOut();
    if (closing || this.state !== 'connected') return;
    if (rest.length > 0) this.onData(rest);
    if (this.state !== 'connected') return;
    const err = (this.handoff as SocketHandoff).startReading();
    if (err !== 0) this.socket.destroy(new Error(`read start failed (${err})`));
  }

  /**
   * The credential this client connected with expires at `at` (ms since epoch; a JWT's `exp`):
   * then a v5 client gets DISCONNECT 0xA0 Maximum connect time and a 3.1.1 client is closed.
   */
  expireAt(at: number): void {
    this.expiry = new LongTimer(() => this.disconnect(RC.MaximumConnectTime, 'credential expired'), Math.max(0, at - Date.now()));
  }

  /**
   * Take nothing more from this client for `ms` (a 3.1.1 client over its rate cannot be told,
   * only slowed): packets already read wait, in order, with the input held as for a gate, and
   * the socket is not read, so the client is held back by TCP.
   */
  pauseReading(ms: number): void {
    if (this.paused || ms <= 0) return;
    this.paused = true;
    this.holdInput();
    this.socket.pause();
    setTimeout(() => {
      this.paused = false;
      if (this.state === 'closed') return;
      // While the native drain loop has the socket it reads it; takeBack starts reading again.
      if (this.native === null && !this.inflowHeld) this.socket.resume();
      this.releaseInput();
    }, ms).unref();
  }

  /**
   * Stop reading this socket until the next turn of the event loop, so the other connections'
   * packets are read too (READ_TURN_BYTES). What the socket already gave is handled now.
   */
  private yieldReading(): void {
    if (this.native !== null) {
      this.readSinceYield = 0; // the native loop reads the socket: nothing to pause
      return;
    }
    this.readSinceYield = -1;
    const handle = this.stopReading();
    setImmediate(() => {
      this.readSinceYield = 0;
      // The native loop cannot have taken it meanwhile (nativeFd refuses while it yields); held
      // for a session's queue (holdForInflow), it is read again when that hold ends.
      if (this.state === 'closed' || this.inflowHeld) return;
      // Reading again even under a rate limit's pause (pauseReading): the stream, paused, stops
      // the handle itself once its buffer is full, and its resume restarts it.
      if (handle) this.startHandle();
      else if (!this.paused) this.socket.resume(); // a rate limit's pause resumes it itself
    });
  }

  /**
   * Stop reading the socket until startHandle / resume: a TCP socket's handle stops reading
   * (true; the stream stays flowing, nothing is buffered in it: pausing the stream held every
   * publisher's last chunk in it for a turn and cost the QoS 0 fan-in ~30 MB of peak RSS);
   * other transports' streams pause (false).
   */
  private stopReading(): boolean {
    const h = this.handoff;
    const handle = h !== null && h.stopReading();
    if (!handle) this.socket.pause();
    return handle;
  }

  /** The TCP handle stopReading stopped reads again; false: it could not, the socket is destroyed. */
  private startHandle(): boolean {
    const err = (this.handoff as SocketHandoff).startReading();
    if (err === 0) return true;
    this.socket.destroy(new Error(`read start failed (${err})`));
    return false;
  }

  /** Flush what is queued and close. The broker is told through onClosed. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    this.native?.stop(); // the session's state comes back first
    if (!this.closeReason) this.closeReason = reason;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.held = null;
    wheel.cancel(this);
    this.flushOut();
    this.socket.end();
    // Don't wait on a peer that stops reading: destroy shortly after the FIN.
    const t = setTimeout(() => this.socket.destroy(), 2000);
    t.unref();
    if (!wasConnected) this.onClosed();
    else this.broker.lifecycle.closed(this);
  }

  /** The socket closed (for whatever reason). */
  onClosed(): void {
    this.expiry?.clear();
    wheel.cancel(this);
    if (this.state !== 'closed') {
      const wasConnected = this.state === 'connected';
      this.state = 'closed';
      if (!this.closeReason) this.closeReason = 'connection closed by client';
      if (wasConnected) this.broker.lifecycle.closed(this);
    }
  }
}
