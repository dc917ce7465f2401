// Aedes 1.x on a loopback TCP port, as the Aedes README shows it (no persistence,
// default options). Started by the bench harness as a child process:
//   node dist/bench/e2e/aedes-server.js <port> [--redis <port>] [--max-session-delivery N]
// --redis: persistence on aedes-persistence-redis (a redis-server on 127.0.0.1:<port>,
// started by the harness), everything else at its defaults except maxSessionDelivery when
// given (its default, 1000, caps how many queued messages one reconnect delivers).
import net from 'node:net';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { Aedes, type AedesOptions } from 'aedes';

const { values, positionals } = parseArgs({
  options: {
    redis: { type: 'string' },
    'max-session-delivery': { type: 'string' },
  },
  allowPositionals: true,
});

const port = Number(positionals[0] ?? process.env['PORT'] ?? 1883);
const options: AedesOptions = {};
if (values.redis !== undefined) {
  // CommonJS, no type declarations
  const require = createRequire(import.meta.url);
  const persistenceRedis = require('aedes-persistence-redis') as (opts: Record<string, unknown>) => unknown;
  const redisOpts: Record<string, unknown> = { host: '127.0.0.1', port: Number(values.redis), family: 4 };
  if (values['max-session-delivery'] !== undefined) redisOpts['maxSessionDelivery'] = Number(values['max-session-delivery']);
  options.persistence = persistenceRedis(redisOpts);
}
const broker = await Aedes.createBroker(options);
const server = net.createServer((socket) => {
  broker.handle(socket);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`aedes listening on 127.0.0.1:${port}${values.redis !== undefined ? ` (redis 127.0.0.1:${values.redis})` : ''}\n`);
});

function shutdown(): void {
  setTimeout(() => process.exit(0), 1000).unref();
  server.close();
  broker.close(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
