#!/usr/bin/env node
/** `stratamq` command line (SPEC F1). */
import { Command, InvalidArgumentError } from 'commander';
import { createBroker, type Broker } from '../index.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type ConfigInput, loadConfig } from '../config.js';
import { DurableStore, type NativeError } from '../native.js';

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

const ds = program.command('ds').description('durable storage');
ds.command('info')
  .description('site id, shards, generations, streams, message counts and disk use of the embedded store')
  .option('-c, --config <file>', 'config file (for node.data_dir)')
  .option('--data-dir <dir>', 'directory of the embedded store (default ./data)')
  .option('--json', 'print JSON')
  .action(async (opts: { config?: string; dataDir?: string; json?: boolean }) => {
    try {
      const cfg = loadConfig({ file: opts.config, env: process.env, overrides: opts.dataDir ? { 'node.data_dir': opts.dataDir } : {} });
      const dir = cfg['node.data_dir'];
      if (!existsSync(join(dir, 'STORE'))) throw new Error(`no store in ${dir}`);
      // Opening takes the data-dir lock: a running broker holds it, so this fails cleanly then.
      const store = await DurableStore.open(dir, { nShards: cfg['durable_storage.messages.n_shards'] });
      const stats = store.stats();
      await store.close();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
        return;
      }
      const mb = (b: number): string => `${(b / 1048576).toFixed(1)} MB`;
      const when = (t?: number): string => (t ? new Date(t).toISOString() : '-');
      const lines = [`site ${stats.siteId}`, `data dir ${dir}`, `shards ${stats.shards.length}, messages ${stats.records}, disk ${mb(stats.bytes)}`];
      for (const sh of stats.shards) {
        lines.push(`shard ${sh.shard}: ${sh.records} messages, ${mb(sh.bytes)}, offsets end ${sh.endOffset}, oldest ${when(sh.oldestTs)}, newest ${when(sh.newestTs)}`);
        for (const g of sh.generations) {
          lines.push(`  generation ${g.id}${g.sealed ? ' (sealed)' : ''}: from ${when(g.startTs)}, ${g.streams} streams, ${g.segments} segments, ${g.records} messages, ${mb(g.bytes)}`);
        }
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    } catch (e) {
      const err = e as NativeError;
      const why = err.code === 'ERR_STORE_LOCKED' ? 'the store is in use (is a broker running on it?)' : err.message;
      process.stderr.write(`stratamq ds info: ${why}\n`);
      process.exit(1);
    }
  });

await program.parseAsync(process.argv);
