#!/usr/bin/env node
/** `stratamq` command line (SPEC F1). */
import { Command, InvalidArgumentError } from 'commander';
import { createBroker, type Broker } from '../index.js';
import { ConfigError, type ConfigInput } from '../config.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number 0..65535');
  return n;
}

const program = new Command();
program.name('stratamq').description('MQTT broker with a Rust core and durable storage').version('0.1.0');

program
  .command('start')
  .description('run a broker')
  .option('-c, --config <file>', 'config file (key = value lines)')
  .option('-p, --port <n>', 'MQTT over TCP port (default 1883)', port)
  .option('--host <addr>', 'listen address (default 0.0.0.0)')
  .option('--ws-port <n>', 'MQTT over WebSocket port, path /mqtt (default 8083; 0 disables)', port)
  .option('--data-dir <dir>', 'directory of the embedded store (default ./data)')
  .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
  .action(async (opts: { config?: string; port?: number; host?: string; wsPort?: number; dataDir?: string; logLevel?: string }) => {
    const config: ConfigInput = {};
    if (opts.port !== undefined) config['listener.tcp.port'] = opts.port;
    if (opts.host !== undefined) config['listener.tcp.host'] = opts.host;
    if (opts.wsPort !== undefined) config['listener.ws.port'] = opts.wsPort === 0 ? -1 : opts.wsPort;
    if (opts.dataDir !== undefined) config['node.data_dir'] = opts.dataDir;
    if (opts.logLevel !== undefined) config['log.level'] = opts.logLevel;
    let broker: Broker | undefined;
    const fail = async (e: unknown): Promise<never> => {
      const err = e as NodeJS.ErrnoException;
      const what = e instanceof ConfigError ? 'config error' : err.code === 'EADDRINUSE' ? 'port in use' : 'failed to start';
      process.stderr.write(`stratamq: ${what}: ${err.message}\n`);
      if (broker) await broker.close().catch(() => undefined);
      process.exit(e instanceof ConfigError ? 2 : 1);
    };
    try {
      broker = createBroker({ configFile: opts.config, env: process.env, config });
    } catch (e) {
      return fail(e);
    }
    const running = broker;
    // Signal handlers go in before listen(): a SIGTERM sent as soon as 'listening' is logged
    // must stop the broker cleanly, not kill the process with the default action.
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      running.log.info({ signal }, 'shutting down');
      const force = setTimeout(() => process.exit(1), 10000);
      force.unref();
      running.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    try {
      await running.listen();
    } catch (e) {
      if (!stopping) await fail(e);
    }
  });

await program.parseAsync(process.argv);
