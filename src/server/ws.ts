import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Server } from 'node:net';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Broker } from '../broker.js';
import { Connection } from '../connection.js';
import { bind } from './tcp.js';
import { readTlsFiles, type TlsFiles } from './tls.js';

/** MQTT over WebSocket (and WSS when `tls` is given) on `path`, subprotocol `mqtt`. */
export async function listenWs(
  broker: Broker,
  host: string,
  port: number,
  path: string,
  tls: TlsFiles | null,
): Promise<{ server: Server; port: number }> {
  const http = tls ? createHttpsServer(readTlsFiles(tls)) : createHttpServer();
  http.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end(`MQTT over WebSocket is served at ${path}\n`);
  });
  const wss = new WebSocketServer({
    server: http,
    path,
    maxPayload: broker.config['mqtt.max_packet_size'] + 8,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  wss.on('connection', (ws, req) => {
    (req.socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
    const stream = createWebSocketStream(ws);
    stream.on('error', () => undefined); // reported through the Connection's close
    broker.addConnection(new Connection(broker, stream, `${req.socket.remoteAddress}:${req.socket.remotePort}`));
  });
  http.on('close', () => wss.close());
  return { server: http, port: await bind(http, host, port) };
}
