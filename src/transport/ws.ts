import type { Server } from 'node:net';
import { ProtocolViolation, RC } from '../wire/reason-codes.js';
import { type Acceptor, bind } from './tcp.js';
import { readTlsFiles, type TlsFiles } from './tls.js';

/** MQTT over WebSocket (and WSS when `tls` is given) on `path`, subprotocol `mqtt`. */
export async function listenWs(
  acceptor: Acceptor,
  host: string,
  port: number,
  path: string,
  tls: TlsFiles | null,
): Promise<{ server: Server; port: number }> {
  // ws is loaded when a WebSocket listener is configured, not by every broker.
  const { createWebSocketStream, WebSocketServer } = await import('ws');
  const http = tls ? (await import('node:https')).createServer(readTlsFiles(tls)) : (await import('node:http')).createServer();
  http.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end(`MQTT over WebSocket is served at ${path}\n`);
  });
  const wss = new WebSocketServer({
    server: http,
    path,
    maxPayload: acceptor.maxPacketSize + 8,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  // ws re-emits the HTTP server's errors (EADDRINUSE…); bind() below reports them, so only
  // make sure an unheard 'error' does not crash the process.
  wss.on('error', () => undefined);
  wss.on('connection', (ws, req) => {
    (req.socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
    const stream = createWebSocketStream(ws);
    stream.on('error', () => undefined); // reported through the Connection's close
    const conn = acceptor.accept(stream, `${req.socket.remoteAddress}:${req.socket.remotePort}`, null);
    if (conn === null) return;
    // [MQTT-6.0.0-1] MQTT travels in binary frames only: any other data frame closes the
    // connection. Runs before the stream sees the frame, so its bytes are never parsed.
    ws.prependListener('message', (_data, isBinary) => {
      if (!isBinary) conn.protocolError(new ProtocolViolation(RC.MalformedPacket, 'WebSocket text frame'));
    });
  });
  http.on('close', () => wss.close());
  return { server: http, port: await bind(http, host, port) };
}
