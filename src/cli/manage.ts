/**
 * `stratamq clients|sessions|retained …`, `ds info` against a running broker, `config check`:
 * the admin API (src/admin/server.ts) from the command line. A running broker is asked over HTTP
 * (`--url`, default http://127.0.0.1:18083; the token from `--token`, else
 * `<data-dir>/admin.token`); `--offline` reads a stopped broker's store (`--data-dir`) instead,
 * read-only, for sessions, retained messages and `ds info` — and so does a read command when
 * the broker is not reachable and `--data-dir` was given (a note on stderr says so).
 *
 * Exit codes: 0 done; 1 the broker refused or found nothing (404, 400, …) or the store failed;
 * 2 bad usage or config; 3 the broker is not reachable; 4 no token or a wrong one (401).
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { backendsConfig } from '../backends/config.js';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import type { LossInfo, StoreStats } from '../native.js';
import { DurableSessions } from '../persistence/embedded/durable-sessions.js';
import { storeOptions } from '../lifecycle/restore.js';
import { tokenPath } from '../admin/token.js';
import { page } from '../admin/view.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, unauthorized: 4 } as const;

export interface RemoteOptions {
  url?: string;
  token?: string;
  dataDir?: string;
  config?: string;
  json?: boolean;
  offline?: boolean;
}

/** A failure with its exit code and message. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

const DEFAULT_URL = 'http://127.0.0.1:18083';

function dataDirOf(o: RemoteOptions): string {
  if (o.dataDir) return o.dataDir;
  return loadConfig({ file: o.config, env: process.env })['node.data_dir'];
}

/** The token: --token, else admin.token of the config, else <data-dir>/admin.token (null when none). */
function tokenOf(o: RemoteOptions): string | null {
  if (o.token) return o.token;
  const configured = loadConfig({ file: o.config, env: process.env })['admin.token'];
  if (configured) return configured;
  try {
    return readFileSync(tokenPath(dataDirOf(o)), 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/**
 * Call the admin API (`body`: sent as JSON); resolves with the response once its status is a
 * success, its body unread (a streamed answer is read as it comes). `timeoutMs` bounds the whole
 * exchange (null: a stream that may run long).
 */
export async function request(o: RemoteOptions, method: string, path: string, body?: unknown, timeoutMs: number | null = 10000): Promise<Response> {
  const base = (o.url ?? process.env.STRATA_ADMIN_URL ?? DEFAULT_URL).replace(/\/+$/, '');
  const token = tokenOf(o);
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: timeoutMs === null ? null : AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(EXIT.unreachable, `broker not reachable at ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  if (res.status === 401) {
    throw new CliError(EXIT.unauthorized, token ? `the broker at ${base} refused the token (wrong token)` : `no admin token: pass --token, or --data-dir of the broker (its admin.token file)`);
  }
  if (!res.ok) {
    const text = await res.text();
    let message = `HTTP ${res.status}`;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      if (text) message = text;
    }
    throw new CliError(EXIT.failed, message);
  }
  return res;
}

/** Call the admin API; resolves with the JSON body (null for 204). */
export async function api(o: RemoteOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const text = await (await request(o, method, path, body)).text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

// ---- output -------------------------------------------------------------------------------

function table(rows: Record<string, unknown>[], cols: string[]): string {
  if (rows.length === 0) return '(none)';
  const cell = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(cols), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
}

function out(o: RemoteOptions, data: unknown, text: () => string): void {
  process.stdout.write(`${o.json ? JSON.stringify(data, null, 2) : text()}\n`);
}

interface PageOf<T> {
  total: number;
  items: T[];
}

const CLIENT_COLS = ['clientId', 'connected', 'username', 'remoteAddress', 'protocolVersion', 'persistent', 'subscriptions', 'inflight', 'queued'];

function detail(obj: Record<string, unknown>, skip: string[]): string {
  return Object.entries(obj)
    .filter(([k]) => !skip.includes(k))
    .map(([k, v]) => `${k}: ${v === null ? '-' : String(v)}`)
    .join('\n');
}

/** `ds info`'s text: site, shards, generations, totals, losses. */
export function storeInfoText(stats: StoreStats, losses: LossInfo[], dir: string, lossLine: (l: LossInfo) => string): string {
  const mb = (b: number): string => `${(b / 1048576).toFixed(1)} MB`;
  const when = (t?: number): string => (t ? new Date(t).toISOString() : '-');
  const lines = [`site ${stats.siteId}`, `data dir ${dir}`, `shards ${stats.shards.length}, messages ${stats.records}, disk ${mb(stats.bytes)}`];
  for (const sh of stats.shards) {
    lines.push(`shard ${sh.shard}: ${sh.records} messages, ${mb(sh.bytes)}, offsets end ${sh.endOffset}, oldest ${when(sh.oldestTs)}, newest ${when(sh.newestTs)}`);
    for (const g of sh.generations) {
      lines.push(`  generation ${g.id}${g.sealed ? ' (sealed)' : ''}: from ${when(g.startTs)}, ${g.streams} streams, ${g.segments} segments, ${g.records} messages, ${mb(g.bytes)}`);
    }
  }
  if (losses.length > 0) lines.push(`losses recorded: ${losses.length}`, ...losses.map((l) => `  ${lossLine(l)}`));
  return lines.join('\n');
}

/**
 * `ds info` while a broker holds the store: asked of that broker's admin API — only if the API
 * answers for this very data directory. Null when it cannot be asked (the caller reports the
 * store in use).
 */
export async function storeInfoOnline(o: RemoteOptions, dir: string): Promise<(StoreStats & { losses: LossInfo[]; dataDir: string }) | null> {
  try {
    const info = (await api(o, 'GET', '/api/v1/storage')) as StoreStats & { losses: LossInfo[]; dataDir: string };
    return sameDir(info.dataDir, dir) ? info : null;
  } catch {
    return null;
  }
}

function sameDir(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  return real(a) === real(b);
}

// ---- offline (a stopped broker's store) ---------------------------------------------------

export async function withStore<T>(o: RemoteOptions, fn: (d: DurableSessions) => Promise<T> | T): Promise<T> {
  const cfg = loadConfig({ file: o.config, env: process.env, overrides: o.dataDir ? { 'node.data_dir': o.dataDir } : {} });
  const dir = cfg['node.data_dir'];
  if (!existsSync(resolve(dir, 'STORE')) && !existsSync(resolve(dir, 'meta.redb'))) throw new CliError(EXIT.failed, `no store in ${dir}`);
  let d: DurableSessions;
  try {
    d = await DurableSessions.open(dir, storeOptions(cfg), createLogger('silent'));
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new CliError(EXIT.failed, code === 'ERR_STORE_LOCKED' ? `the store in ${dir} is in use (a broker is running on it): ask the broker, without --offline` : (e as Error).message);
  }
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

/** Run `online`; with --offline, or when the broker is not reachable and --data-dir was given, run `offline`. */
export async function readCmd<T>(o: RemoteOptions, online: () => Promise<T>, offline: ((d: DurableSessions) => Promise<T> | T) | null): Promise<T> {
  if (o.offline) {
    if (!offline) throw new CliError(EXIT.usage, 'this command needs a running broker (no --offline)');
    return withStore(o, offline);
  }
  try {
    return await online();
  } catch (e) {
    if (!(e instanceof CliError) || e.exitCode !== EXIT.unreachable || !offline || !o.dataDir) throw e;
    process.stderr.write(`stratamq: ${e.message}; reading the store in ${o.dataDir} instead\n`);
    return withStore(o, offline);
  }
}

function offlineSessions(d: DurableSessions): Record<string, unknown>[] {
  return d
    .loadSessions()
    .map((s) => ({
      clientId: s.clientId,
      connected: false,
      username: null,
      remoteAddress: null,
      protocolVersion: null,
      persistent: true,
      expiryInterval: s.record.expiry,
      subscriptions: s.subscriptions.length,
      inflight: s.progress?.entries.filter((e) => e.phase !== 0).length ?? 0,
      queued: s.progress?.backlog ?? 0,
    }))
    .sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
}

// ---- commands -----------------------------------------------------------------------------

export function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
}

export function remote(cmd: Command, offline: boolean): Command {
  cmd
    .option('--url <url>', `admin API of the running broker (default ${DEFAULT_URL}, or STRATA_ADMIN_URL)`)
    .option('--token <token>', 'admin token (default: admin.token of the config, else <data-dir>/admin.token)')
    .option('--data-dir <dir>', 'the broker\'s data directory (its admin.token file; the store for --offline)')
    .option('-c, --config <file>', 'config file (node.data_dir, admin.token)')
    .option('--json', 'print JSON');
  if (offline) cmd.option('--offline', 'read a stopped broker\'s store (--data-dir) instead of asking a running broker');
  return cmd;
}

/** Run a command's body: print its error and exit with its code. */
export function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      const code = e instanceof CliError ? e.exitCode : e instanceof ConfigError ? EXIT.usage : EXIT.failed;
      process.stderr.write(`stratamq: ${(e as Error).message}\n`);
      process.exit(code);
    }
  };
}

const enc = encodeURIComponent;

export function registerManage(program: Command): void {
  const clients = program.command('clients').description('clients of a running broker (admin API)');
  remote(clients.command('list').description('list clients (connected, and persistent sessions away)'), false)
    .option('--username <name>', 'only this username')
    .option('--clientid <prefix>', 'client ids starting with this')
    .option('--connected', 'only connected clients')
    .option('--disconnected', 'only clients away')
    .option('--page <n>', 'page (from 1)', intArg, 1)
    .option('--limit <n>', 'per page', intArg, 100)
    .action(
      run(async (o: RemoteOptions & { username?: string; clientid?: string; connected?: boolean; disconnected?: boolean; page: number; limit: number }) => {
        const q = new URLSearchParams({ page: String(o.page), limit: String(o.limit) });
        if (o.username) q.set('username', o.username);
        if (o.clientid) q.set('clientid', o.clientid);
        if (o.connected || o.disconnected) q.set('connected', String(Boolean(o.connected)));
        const r = (await api(o, 'GET', `/api/v1/clients?${q}`)) as PageOf<Record<string, unknown>>;
        out(o, r, () => `${table(r.items, CLIENT_COLS)}\n(${r.items.length} of ${r.total})`);
      }),
    );
  remote(clients.command('show').description('one client').argument('<clientid>'), false).action(
    run(async (id: string, o: RemoteOptions) => {
      const r = (await api(o, 'GET', `/api/v1/clients/${enc(id)}`)) as Record<string, unknown>;
      out(o, r, () => detail(r, []));
    }),
  );
  remote(clients.command('kick').description('disconnect a client (MQTT 5: DISCONNECT 0x98 Administrative action); its session stays').argument('<clientid>'), false).action(
    run(async (id: string, o: RemoteOptions) => {
      await api(o, 'DELETE', `/api/v1/clients/${enc(id)}`);
      out(o, { kicked: id }, () => `kicked ${id}`);
    }),
  );

  const sessions = program.command('sessions').description('sessions of a running broker (admin API), or of a stopped one\'s store (--offline)');
  remote(sessions.command('list').description('list sessions'), true)
    .option('--page <n>', 'page (from 1)', intArg, 1)
    .option('--limit <n>', 'per page', intArg, 100)
    .action(
      run(async (o: RemoteOptions & { page: number; limit: number }) => {
        const r = await readCmd(
          o,
          async () => (await api(o, 'GET', `/api/v1/sessions?page=${o.page}&limit=${o.limit}`)) as PageOf<Record<string, unknown>>,
          (d) => {
            return page(offlineSessions(d), o.page, o.limit);
          },
        );
        out(o, r, () => `${table(r.items, CLIENT_COLS)}\n(${r.items.length} of ${r.total})`);
      }),
    );
  remote(sessions.command('show').description('one session: subscriptions, queue depth, in flight, waiting messages').argument('<clientid>'), true)
    .option('--limit <n>', 'waiting messages shown at most', intArg, 20)
    .action(
      run(async (id: string, o: RemoteOptions & { limit: number }) => {
        const r = await readCmd(
          o,
          async () => (await api(o, 'GET', `/api/v1/sessions/${enc(id)}?limit=${o.limit}`)) as Record<string, unknown>,
          async (d) => {
            const s = offlineSessions(d).find((x) => x.clientId === id);
            if (!s) throw new CliError(EXIT.failed, `no session for client id ${JSON.stringify(id)}`);
            const stored = d.loadSessions().find((x) => x.clientId === id);
            const messages = (await d.getSessionMessages(id, o.limit)).map((m) => ({ topic: m.msg.topic, qos: m.qos, inflight: m.inflight, payloadBytes: m.msg.payload.length, receivedAt: m.msg.receivedAt }));
            const subscriptionList = (stored?.subscriptions ?? []).map((x) => ({ clientId: id, filter: x.filter, qos: x.opts.qos }));
            return { ...s, subscriptionList, messages };
          },
        );
        out(o, r, () => {
          const subs = (r.subscriptionList as Record<string, unknown>[]) ?? [];
          const msgs = (r.messages as Record<string, unknown>[]) ?? [];
          return `${detail(r, ['subscriptionList', 'messages'])}\n\nsubscriptions:\n${table(subs, ['filter', 'qos'])}\n\nwaiting messages (first ${o.limit}):\n${table(msgs, ['topic', 'qos', 'inflight', 'payloadBytes'])}`;
        });
      }),
    );
  remote(sessions.command('discard').description('end a session (disconnecting its client) and delete its durable state').argument('<clientid>'), false).action(
    run(async (id: string, o: RemoteOptions) => {
      await api(o, 'DELETE', `/api/v1/sessions/${enc(id)}`);
      out(o, { discarded: id }, () => `discarded ${id}`);
    }),
  );

  const retained = program.command('retained').description('retained messages of a running broker (admin API), or of a stopped one\'s store (--offline)');
  remote(retained.command('list').description('list retained messages whose topic matches a filter'), true)
    .option('--filter <filter>', 'topic filter', '#')
    .option('--page <n>', 'page (from 1)', intArg, 1)
    .option('--limit <n>', 'per page', intArg, 100)
    .action(
      run(async (o: RemoteOptions & { filter: string; page: number; limit: number }) => {
        const r = await readCmd(
          o,
          async () => (await api(o, 'GET', `/api/v1/retained?filter=${enc(o.filter)}&page=${o.page}&limit=${o.limit}`)) as PageOf<Record<string, unknown>>,
          async (d) => {
            const all = (await d.getRetainMessage(o.filter)).map((m) => ({ topic: m.topic, qos: m.qos, retain: true, publisher: m.publisher, receivedAt: m.receivedAt, payloadBytes: m.payload.length }));
            return page(all, o.page, o.limit);
          },
        );
        out(o, r, () => `${table(r.items, ['topic', 'qos', 'payloadBytes', 'publisher', 'payload'])}\n(${r.items.length} of ${r.total})`);
      }),
    );
  remote(retained.command('delete').description('clear a retained topic (durably, as an empty retained publish)').argument('<topic>'), false).action(
    run(async (topic: string, o: RemoteOptions) => {
      await api(o, 'DELETE', `/api/v1/retained/${topic.split('/').map(enc).join('/')}`);
      out(o, { deleted: topic }, () => `cleared ${topic}`);
    }),
  );

  const config = program.commands.find((c) => c.name() === 'config') ?? program.command('config').description('configuration');
  config
    .command('check')
    .description('load a config file as the broker would (file, then STRATA_* environment; backend pools and rules checked together): print OK, or the error (exit 2)')
    .argument('<file>')
    .action((file: string) => {
      try {
        backendsConfig(loadConfig({ file, env: process.env }));
        process.stdout.write(`OK ${file}\n`);
      } catch (e) {
        process.stderr.write(`stratamq config check: ${(e as Error).message}\n`);
        process.exit(EXIT.usage);
      }
    });
}
