// Aedes 1.x on a loopback TCP port, as the Aedes README shows it (no persistence,
// default options). Started by the bench harness as a child process:
//   node dist/bench/e2e/aedes-server.js <port>
import net from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? process.env['PORT'] ?? 1883);
const broker = await Aedes.createBroker();
const server = net.createServer((socket) => {
  broker.handle(socket);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`aedes listening on 127.0.0.1:${port}\n`);
});

function shutdown(): void {
  setTimeout(() => process.exit(0), 1000).unref();
  server.close();
  broker.close(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
