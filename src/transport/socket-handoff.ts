/**
 * The only place that touches net.Socket internals: the libuv TCP handle under a plain TCP
 * socket, which the native drain loop (strata_core::drain) writes to and reads from directly
 * while a persistent session catches up. Node 20 internals: `_handle.fd`, `readStop`,
 * `readStart`, and the `reading` flag net.Socket checks before restarting a stopped handle.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { SocketHandoff } from '../protocol/connection.js';

interface TcpHandle {
  fd: number;
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

/** The socket's TCP handle, when it has a descriptor and read start/stop; else null. */
function tcpHandle(s: Duplex): TcpHandle | null {
  const h = (s as unknown as { _handle?: Partial<TcpHandle> | null })._handle;
  if (!h || typeof h.fd !== 'number' || h.fd < 0 || typeof h.readStop !== 'function' || typeof h.readStart !== 'function') return null;
  return h as TcpHandle;
}

/** How to hand a plain TCP socket to the native loop (one small object, methods on the prototype). */
class TcpHandoff implements SocketHandoff {
  constructor(private readonly socket: net.Socket) {}

  fd(): number | null {
    const handle = tcpHandle(this.socket);
    if (handle === null || this.socket.writableLength > 0 || this.socket.readableLength > 0) return null;
    return handle.fd;
  }

  stopReading(): boolean {
    const handle = tcpHandle(this.socket);
    if (handle === null) return false;
    handle.readStop();
    // net.Socket restarts a stopped handle whenever its stream wants more (even paused, to
    // fill its buffer): marked as reading, it is left alone until startReading.
    handle.reading = true;
    return true;
  }

  startReading(): number {
    const handle = tcpHandle(this.socket);
    return handle === null ? 0 : handle.readStart();
  }
}

/** How to hand `socket` to the native loop; null unless it is plain TCP (not TLS, not WebSocket). */
export function socketHandoff(socket: Duplex): SocketHandoff | null {
  if (!(socket instanceof net.Socket) || (socket as Duplex & { encrypted?: boolean }).encrypted) return null;
  return new TcpHandoff(socket);
}
