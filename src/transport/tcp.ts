import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Connection, SocketHandoff } from '../protocol/connection.js';
import { socketHandoff } from './socket-handoff.js';

/** What the listeners hand accepted streams to (the broker). */
export interface Acceptor {
  /** Largest MQTT packet accepted, bytes (mqtt.max_packet_size). */
  readonly maxPacketSize: number;
  /** A connection for `stream`; null when the broker is closing (the stream was destroyed). */
  accept(stream: Duplex, remoteAddress: string, handoff: SocketHandoff | null): Connection | null;
}

/** Hand one accepted stream socket to a new Connection (TCP and TLS share this). */
export function acceptSocket(acceptor: Acceptor, socket: Socket): void {
  socket.setNoDelay(true); // SPEC A1: no Nagle; writes are coalesced per turn instead.
  acceptor.accept(socket, `${socket.remoteAddress}:${socket.remotePort}`, socketHandoff(socket));
}

export function bind(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

export async function listenTcp(acceptor: Acceptor, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer({ noDelay: true }, (socket) => acceptSocket(acceptor, socket));
  return { server, port: await bind(server, host, port) };
}
