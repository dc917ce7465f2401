import { createServer, type Server, type Socket } from 'node:net';
import type { Broker } from '../broker.js';
import { Connection } from '../protocol/connection.js';

/** Hand one accepted stream socket to a new Connection (TCP and TLS share this). */
export function acceptSocket(broker: Broker, socket: Socket): void {
  socket.setNoDelay(true); // SPEC A1: no Nagle; writes are coalesced per turn instead.
  broker.addConnection(new Connection(broker, socket, `${socket.remoteAddress}:${socket.remotePort}`));
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

export async function listenTcp(broker: Broker, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer({ noDelay: true }, (socket) => acceptSocket(broker, socket));
  return { server, port: await bind(server, host, port) };
}
