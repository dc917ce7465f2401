#!/usr/bin/env node
/** `stratamq` command line (SPEC F1). */
import { Command, InvalidArgumentError } from 'commander';
import { createBroker, type Broker } from '../index.js';
import { VERSION } from '../admin/index.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Config, ConfigError, type ConfigInput, configReference, loadConfig, REFERENCE_END, REFERENCE_START } from '../config.js';
import { coreVersion, DurableStore, type LossInfo, NATIVE_PATH, type NativeError, type StoreOpenOptions, type StoreReport, versionMismatch } from '../native.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number 0..65535');
  return n;
}

/** `stratamq --version`: the package's version, then the native core's (and where it was loaded from). */
function versionText(): string {
  const mismatch = versionMismatch(VERSION, coreVersion);
  return [`stratamq ${VERSION}`, `native core ${coreVersion}${NATIVE_PATH ? ` (${NATIVE_PATH})` : ''}`, ...(mismatch ? [`error: ${mismatch}`] : [])].join('\n');
}

const program = new Command();
program.name('stratamq').description('MQTT broker with a Rust core and durable storage').version(versionText(), '-V, --version', 'print the package and native core versions');

program
  .command('start')
  .description('run a broker')
  .option('-c, --config <file>', 'config file (key = value lines)')
  .option('-p, --port <n>', 'MQTT over TCP port (default 1883)', port)
  .option('--host <addr>', 'listen address (default 0.0.0.0)')
  .option('--ws-port <n>', 'MQTT over WebSocket port, path /mqtt (default 8083; 0 disables)', port)
  .option('--data-dir <dir>', 'directory of the embedded store (default ./data)')
  .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
  .option('--admin-port <n>', 'admin HTTP API, /metrics, /health (default 18083; 0 disables)', port)
  .action(async (opts: { config?: string; port?: number; host?: string; wsPort?: number; dataDir?: string; logLevel?: string; adminPort?: number }) => {
    const config: ConfigInput = {};
    if (opts.port !== undefined) config['listener.tcp.port'] = opts.port;
    if (opts.host !== undefined) config['listener.tcp.host'] = opts.host;
    if (opts.wsPort !== undefined) config['listener.ws.port'] = opts.wsPort === 0 ? -1 : opts.wsPort;
    if (opts.dataDir !== undefined) config['node.data_dir'] = opts.dataDir;
    if (opts.logLevel !== undefined) config['log.level'] = opts.logLevel;
    if (opts.adminPort !== undefined) config['admin.port'] = opts.adminPort === 0 ? -1 : opts.adminPort;
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
    process.on('SIGHUP', () => void running.reload());
    try {
      // As Mosquitto does: version and config first; the store's recovery, the listeners, then running.
      running.log.info({ version: VERSION, config: opts.config ?? null, dataDir: running.config['node.data_dir'] }, `stratamq ${VERSION} starting`);
      const addrs = await running.listen();
      running.log.info({ ...addrs }, `stratamq ${VERSION} running`);
    } catch (e) {
      if (!stopping) await fail(e);
    }
  });

/** The store options a broker with this config opens its store with (ds commands open it the same way). */
function storeConfig(opts: { config?: string; dataDir?: string }): { dir: string; options: StoreOpenOptions; cfg: Config } {
  const cfg = loadConfig({ file: opts.config, env: process.env, overrides: opts.dataDir ? { 'node.data_dir': opts.dataDir } : {} });
  return {
    dir: cfg['node.data_dir'],
    cfg,
    options: { nShards: cfg['durable_storage.messages.n_shards'], segmentBytes: cfg['durable_storage.segment_bytes'], fsync: cfg['durable_storage.fsync'] },
  };
}

function lossLine(l: LossInfo): string {
  const when = new Date(l.foundMs).toISOString();
  if (l.shard === null) return `metadata lost (found ${when}): ${l.reason} (${l.file})`;
  const range = l.to === null ? `from offset ${l.from}` : `offsets ${l.from}..${l.to} (${l.records} messages)`;
  return `shard ${l.shard}: ${range} lost (found ${when}): ${l.reason} (${l.file})`;
}

function dsFail(cmd: string, e: unknown, code = 1): never {
  const err = e as NativeError;
  const why = err.code === 'ERR_STORE_LOCKED' ? 'the store is in use (is a broker running on it?)' : err.message;
  process.stderr.write(`stratamq ds ${cmd}: ${why}\n`);
  process.exit(code);
}

program
  .command('config')
  .description('configuration')
  .command('reference')
  .description('print every configuration key with its default and meaning (Markdown)')
  .option('--update <file>', 'replace the reference in a Markdown file (between its config reference markers)')
  .action((opts: { update?: string }) => {
    const table = configReference();
    if (!opts.update) {
      process.stdout.write(`${table}\n`);
      return;
    }
    const text = readFileSync(opts.update, 'utf8');
    const start = text.indexOf(REFERENCE_START);
    const end = text.indexOf(REFERENCE_END);
    if (start < 0 || end < start) {
      process.stderr.write(`stratamq config reference: no config reference markers in ${opts.update}\n`);
      process.exit(2);
    }
    const at = text.indexOf('\n', start) + 1;
    writeFileSync(opts.update, `${text.slice(0, at)}${table}\n${text.slice(end)}`);
  });

const ds = program.command('ds').description('durable storage');
ds.command('check')
  .description('verify a stopped store read-only: damaged or missing files and the messages they cost (exit 0: nothing to repair, 1: damage found, 2: cannot check)')
  .option('-c, --config <file>', 'config file (for node.data_dir)')
  .option('--data-dir <dir>', 'directory of the embedded store (default ./data)')
  .option('--json', 'print JSON')
  .action(async (opts: { config?: string; dataDir?: string; json?: boolean }) => {
    let r: StoreReport;
    try {
      const { dir, options } = storeConfig(opts);
      r = await DurableStore.check(dir, options);
    } catch (e) {
      dsFail('check', e, 2);
    }
    if (opts.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else {
      const lines = r.damaged ? ['damaged: `stratamq ds repair` (or starting a broker with durable_storage.on_corruption = recover) repairs it', ...r.summary] : ['no damage found'];
      for (const e of r.events) lines.push(`note: ${e}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    process.exit(r.damaged ? 1 : 0);
  });

ds.command('repair')
  .description('repair a stopped store without starting a broker: quarantine damaged files, salvage intact records, rebuild STORE and metadata, record each loss')
  .option('-c, --config <file>', 'config file (for node.data_dir)')
  .option('--data-dir <dir>', 'directory of the embedded store (default ./data)')
  .action(async (opts: { config?: string; dataDir?: string }) => {
    try {
      const { cfg } = storeConfig(opts);
      if (!existsSync(cfg['node.data_dir'])) throw new Error(`no store in ${cfg['node.data_dir']}`);
      // The broker's own start-up path (sessions reconciled with the log), without listeners.
      const broker = createBroker({ configFile: opts.config, env: process.env, config: { 'node.data_dir': cfg['node.data_dir'], 'log.level': 'silent', 'durable_storage.on_corruption': 'recover' } });
      const lines: string[] = [];
      const report = await broker.repairStore();
      lines.push(...(report.summary.length > 0 ? report.summary : ['nothing to repair']));
      for (const l of report.losses) lines.push(lossLine(l));
      process.stdout.write(`${lines.join('\n')}\n`);
    } catch (e) {
      dsFail('repair', e);
    }
  });

ds.command('info')
  .description('site id, shards, generations, streams, message counts and disk use of the embedded store (a running broker\'s: through its admin API)')
  .option('-c, --config <file>', 'config file (for node.data_dir)')
  .option('--data-dir <dir>', 'directory of the embedded store (default ./data)')
  .option('--url <url>', 'admin API of the broker holding the store (default http://127.0.0.1:18083)')
  .option('--token <token>', 'admin token (default <data-dir>/admin.token)')
  .option('--json', 'print JSON')
  .action(async (opts: { config?: string; dataDir?: string; json?: boolean; url?: string; token?: string }) => {
    let dir = '';
    try {
      const { options, ...rest } = storeConfig(opts);
      dir = rest.dir;
      if (!existsSync(join(dir, 'STORE')) && !existsSync(join(dir, 'meta.redb'))) throw new Error(`no store in ${dir}`);
      // Opening takes the data-dir lock: a running broker holds it, so this fails cleanly then.
      const store = await DurableStore.open(dir, options);
      const stats = store.stats();
      const losses = store.losses();
      await store.close();
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...stats, losses }, null, 2)}\n`);
      else process.stdout.write(`${(await import('./manage.js')).storeInfoText(stats, losses, dir, lossLine)}\n`);
    } catch (e) {
      // In use: the broker holding it answers through its admin API, if that is reachable and serves this directory.
      const { storeInfoOnline, storeInfoText } = await import('./manage.js');
      const online = (e as NativeError).code === 'ERR_STORE_LOCKED' ? await storeInfoOnline({ ...opts, dataDir: dir }, dir) : null;
      if (!online) dsFail('info', e);
      const { dataDir: _d, losses, ...stats } = online;
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...stats, losses }, null, 2)}\n`);
      else process.stdout.write(`${storeInfoText(stats, losses, dir, lossLine)}\n`);
    }
  });

// The commands that talk to a broker or its files (their modules, cli-progress and the log's
// readers among them) are not loaded for `start`: a running broker keeps none of their code.
if (process.argv.slice(2).find((a) => !a.startsWith('-')) !== 'start') {
  const [{ registerPasswd }, { registerManage }, { registerLog }] = await Promise.all([import('./passwd.js'), import('./manage.js'), import('./log.js')]);
  registerPasswd(program);
  registerManage(program);
  registerLog(program);
}

await program.parseAsync(process.argv);
