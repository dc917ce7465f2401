/**
 * Where a session's packets go while its client is connected: the one thing session/ knows of
 * a connection. protocol/connection.ts implements it; nothing under session/ sees a socket, a
 * Connection or the broker.
 */
import type { ClientInfo } from '../hooks/index.js';
import type { OutboundAliases } from './topic-aliases.js';

/** The client it goes to (as hooks see it), and how to write to it. */
export interface Outlet extends ClientInfo {
  /** Largest packet the client accepts (v5 Maximum Packet Size), bytes. */
  readonly clientMaxPacketSize: number;
  /** Outbound window: deliveries in flight at most (min(client Receive Maximum, mqtt.max_inflight)). */
  readonly window: number;
  /** Topic aliases for this connection's PUBLISHes (v5, the client's Topic Alias Maximum > 0); null when none. */
  readonly outAliases: OutboundAliases | null;
  /** Bytes written but not yet taken by the kernel. */
  readonly backlog: number;
  /** False once the connection is closing or closed: nothing more is written. */
  readonly connected: boolean;
  /** Queue bytes for this event-loop turn's single write. */
  write(buf: Buffer): void;
  /** Run `send` once `gate` resolves, keeping every later write behind it (a rejected gate runs nothing). */
  writeAfter(gate: Promise<unknown>, send: () => void): void;
  /** Call `fn` once, when what was written has been taken by the kernel. */
  onDrain(fn: () => void): void;
  /** Server-initiated disconnect with a reason code (v5), e.g. QuotaExceeded when a queue overflows. */
  disconnect(code: number, reason: string): void;
  /**
   * The descriptor the native drain loop may take now (plain TCP, nothing buffered either way),
   * else null. Then `handOff` hands it over and `takeBack` returns it.
   */
  nativeFd(): number | null;
  /** Stop reading and writing the socket while the native loop has it; `stop` takes it back synchronously. */
  handOff(stop: () => void, lastRead: () => number): void;
  /** The native loop is done: write `unsent`, then what was held; unless closing, read `rest` and the socket again. */
  takeBack(unsent: Buffer, rest: Buffer, closing: boolean): void;
}
