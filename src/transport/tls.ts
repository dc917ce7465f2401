import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { ConfigError } from '../config.js';
import { type Acceptor, acceptSocket, bind } from './tcp.js';

export interface TlsFiles {
  certfile: string;
  keyfile: string;
}

export function readTlsFiles(files: TlsFiles): { cert: Buffer; key: Buffer } {
  if (!files.certfile || !files.keyfile) {
    throw new ConfigError('TLS listener needs listener.tls.certfile and listener.tls.keyfile');
  }
  try {
    return { cert: readFileSync(files.certfile), key: readFileSync(files.keyfile) };
  } catch (e) {
    throw new ConfigError(`cannot read TLS certificate/key: ${(e as Error).message}`);
  }
}

export async function listenTls(acceptor: Acceptor, host: string, port: number, files: TlsFiles): Promise<{ server: Server; port: number }> {
  const { createServer } = await import('node:tls'); // loaded by the broker that has a TLS listener
  const server = createServer(readTlsFiles(files), (socket) => acceptSocket(acceptor, socket));
  return { server, port: await bind(server, host, port) };
}
