/**
 * Real database servers for the backend tests (issue 16: real servers, no mocks): redis-server,
 * PostgreSQL 15 and MariaDB, each started by the test in a temp dir on an ephemeral loopback
 * port and stopped by its PID. A missing server binary FAILS the test with what to install
 * (`.ci/run` installs them) — never a silent skip.
 *
 * Every server can be killed (SIGKILL, as a crash) and started again on the same port and data
 * directory, for the fault tests.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect as netConnect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { freePort, sleep, tempDir } from './helpers.js';

/** PostgreSQL's server binaries: STRATA_TEST_PG_BIN, else Debian's 15, else the newest installed. */
const PG_BIN = ((): string => {
  if (process.env.STRATA_TEST_PG_BIN) return process.env.STRATA_TEST_PG_BIN;
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v));
  } catch {
    // not installed: findBinary reports it
  }
  const v = versions.includes('15') ? '15' : versions.sort((a, b) => Number(b) - Number(a))[0];
  return join(root, v ?? '15', 'bin');
})();

/** The password every test server's user has. */
export const DB_PASSWORD = 'Secr3t-pw';
/** The database every SQL test server has, empty. */
export const DB_NAME = 'mqtt';

/** The SQL registry's tables (src/persistence/sql/registry.ts), its schema version included. */
export const SQL_REGISTRY_TABLES = ['stratamq_schema', 'session', 'session_subscription', 'message', 'session_message', 'session_inbound', 'session_retained', 'retain'];

/** The user a test server's clients connect as. */
export function sqlUser(kind: 'pgsql' | 'mysql'): string {
  return kind === 'pgsql' ? 'postgres' : 'strata';
}

/** Run `sqls` in order on a connection of their own to a test server's database (it may have restarted); the rows of the last. */
export async function sqlAdmin(kind: 'pgsql' | 'mysql', port: number, ...sqls: string[]): Promise<Record<string, unknown>[]> {
  let rows: Record<string, unknown>[] = [];
  const opts = { host: '127.0.0.1', port, user: sqlUser(kind), password: DB_PASSWORD, database: DB_NAME };
  if (kind === 'pgsql') {
    const c = new pg.Client(opts);
    await c.connect();
    try {
      for (const q of sqls) rows = (await c.query(q)).rows as Record<string, unknown>[];
    } finally {
      await c.end();
    }
  } else {
    const c = await mysql.createConnection(opts);
    try {
      for (const q of sqls) rows = (await c.query(q))[0] as Record<string, unknown>[];
    } finally {
      await c.end();
    }
  }
  return rows;
}

function findBinary(names: string[], apt: string): string {
  for (const n of names) {
    if (n.includes('/')) {
      if (existsSync(n)) return n;
      continue;
    }
    try {
      return execFileSync('sh', ['-c', `command -v ${n}`], { encoding: 'utf8' }).trim();
    } catch {
      // next
    }
  }
  throw new Error(`none of ${names.join(', ')} found: the backend tests need a real server — install it (apt-get install -y ${apt}; .ci/run does)`);
}

/** Resolves once a TCP connect to the port succeeds (or rejects after timeoutMs). */
async function waitForPort(port: number, timeoutMs: number, what: string, proc: ServerProcess): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = netConnect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc.exited) throw new Error(`${what} exited before listening: ${proc.output.slice(-3000)}`);
    if (Date.now() > until) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms: ${proc.output.slice(-3000)}`);
    await sleep(50);
  }
}

/** One server process: spawned directly (its PID is the server's), output kept for errors. */
class ServerProcess {
  child: ChildProcess | null = null;
  output = '';
  exited = false;

  start(bin: string, args: string[], opts: { uid?: number; gid?: number; cwd?: string } = {}): void {
    this.output = '';
    this.exited = false;
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    child.stdout?.on('data', (b: Buffer) => (this.output += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (this.output += b.toString()));
    child.once('exit', () => (this.exited = true));
    this.child = child;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async signal(sig: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || this.exited) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(sig);
    await gone;
  }
}

export interface TestServer {
  readonly kind: 'redis' | 'pgsql' | 'mysql';
  readonly port: number;
  /** `127.0.0.1:<port>`, as `backend.<type>.<pool>.server` takes it. */
  readonly server: string;
  /** Start (again) on the same port and data directory; resolves when it accepts connections. */
  start(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** Stop and remove the data directory. */
  destroy(): Promise<void>;
}

/** redis-server on a loopback port, no persistence (a restart starts empty). */
export async function startRedis(opts: { password?: string } = {}): Promise<TestServer> {
  const bin = findBinary(['redis-server'], 'redis-server');
  const tmp = tempDir('strata-redis-');
  const port = await freePort();
  const proc = new ServerProcess();
  const s: TestServer = {
    kind: 'redis',
    port,
    server: `127.0.0.1:${port}`,
    async start() {
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp.dir];
      if (opts.password) args.push('--requirepass', opts.password);
      proc.start(bin, args);
      await waitForPort(port, 10_000, 'redis-server', proc);
    },
    kill: () => proc.signal('SIGKILL'),
    async destroy() {
      await proc.signal('SIGKILL');
      tmp.remove();
    },
  };
  await s.start();
  return s;
}

function userIds(name: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/**
 * PostgreSQL 15: initdb in a temp dir owned by `postgres` (PostgreSQL refuses to run as root),
 * password (scram) auth on 127.0.0.1 for user `postgres` / DB_PASSWORD, an empty database `mqtt`.
 */
export async function startPostgres(): Promise<TestServer> {
  const initdb = findBinary([join(PG_BIN, 'initdb')], 'postgresql');
  const postgres = findBinary([join(PG_BIN, 'postgres')], 'postgresql');
  const tmp = tempDir('strata-pg-');
  const ids = process.getuid?.() === 0 ? userIds('postgres') : null;
  const data = join(tmp.dir, 'data');
  const sock = join(tmp.dir, 'sock');
  mkdirSync(sock);
  writeFileSync(join(tmp.dir, 'pw'), DB_PASSWORD);
  if (ids) for (const p of [tmp.dir, sock, join(tmp.dir, 'pw')]) chownSync(p, ids.uid, ids.gid);
  const asPg = ids ? { uid: ids.uid, gid: ids.gid } : {};
  try {
    execFileSync(initdb, ['-D', data, '-U', 'postgres', `--pwfile=${join(tmp.dir, 'pw')}`, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync'], { ...asPg, cwd: tmp.dir, stdio: 'pipe' });
  } catch (e) {
    throw new Error(`initdb failed: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
  }
  const port = await freePort();
  const proc = new ServerProcess();
  const s: TestServer = {
    kind: 'pgsql',
    port,
    server: `127.0.0.1:${port}`,
    async start() {
      proc.start(postgres, ['-D', data, '-p', String(port), '-k', sock, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'], { ...asPg, cwd: tmp.dir });
      await waitForPort(port, 20_000, 'postgres', proc);
      // Accepting TCP is not accepting queries yet (startup / recovery after a kill).
      const { default: pg } = await import('pg');
      const until = Date.now() + 20_000;
      for (;;) {
        const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: DB_PASSWORD, database: 'postgres' });
        try {
          await c.connect();
          const has = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB_NAME]);
          if (has.rowCount === 0) await c.query(`CREATE DATABASE ${DB_NAME}`);
          await c.end();
          return;
        } catch (e) {
          await c.end().catch(() => undefined);
          if (Date.now() > until) throw new Error(`postgres not ready: ${(e as Error).message}: ${proc.output.slice(-2000)}`);
          await sleep(100);
        }
      }
    },
    kill: () => proc.signal('SIGKILL'),
    async destroy() {
      await proc.signal('SIGKILL');
      tmp.remove();
    },
  };
  await s.start();
  return s;
}

/**
 * MariaDB: mariadb-install-db in a temp dir, mariadbd on a loopback port and a socket; a user
 * `strata` / DB_PASSWORD with every privilege, an empty database `mqtt`.
 */
export async function startMariadb(): Promise<TestServer> {
  const install = findBinary(['mariadb-install-db', 'mysql_install_db'], 'mariadb-server');
  const mariadbd = findBinary(['mariadbd', '/usr/sbin/mariadbd', 'mysqld', '/usr/sbin/mysqld'], 'mariadb-server');
  const tmp = tempDir('strata-mariadb-');
  const data = join(tmp.dir, 'data');
  const sock = join(tmp.dir, 'mysqld.sock');
  try {
    execFileSync(install, ['--no-defaults', `--datadir=${data}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db'], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`mariadb-install-db failed: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
  }
  const port = await freePort();
  const proc = new ServerProcess();
  let prepared = false;
  const s: TestServer = {
    kind: 'mysql',
    port,
    server: `127.0.0.1:${port}`,
    async start() {
      proc.start(mariadbd, [
        '--no-defaults',
        `--datadir=${data}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--socket=${sock}`,
        `--pid-file=${join(tmp.dir, 'mysqld.pid')}`,
        '--user=root',
        '--skip-log-bin',
        '--innodb-buffer-pool-size=16M',
        '--innodb-log-file-size=8M',
        '--innodb-flush-log-at-trx-commit=0',
        '--skip-name-resolve',
      ]);
      await waitForPort(port, 30_000, 'mariadbd', proc);
      if (prepared) return;
      const { default: mysql } = await import('mysql2/promise');
      const c = await mysql.createConnection({ socketPath: sock, user: 'root' });
      try {
        await c.query(`CREATE DATABASE IF NOT EXISTS ${DB_NAME}`);
        await c.query(`CREATE USER IF NOT EXISTS 'strata'@'%' IDENTIFIED BY '${DB_PASSWORD}'`);
        await c.query(`GRANT ALL PRIVILEGES ON *.* TO 'strata'@'%'`);
      } finally {
        await c.end();
      }
      prepared = true;
    },
    kill: () => proc.signal('SIGKILL'),
    async destroy() {
      await proc.signal('SIGKILL');
      tmp.remove();
    },
  };
  await s.start();
  return s;
}

/** A Redis master with one Sentinel watching it as `mymaster`. */
export async function startRedisSentinel(): Promise<{ master: TestServer; sentinelPort: number; destroy(): Promise<void> }> {
  const bin = findBinary(['redis-server'], 'redis-server');
  const master = await startRedis();
  const tmp = tempDir('strata-sentinel-');
  const port = await freePort();
  const conf = join(tmp.dir, 'sentinel.conf');
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${tmp.dir}`, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, 'sentinel down-after-milliseconds mymaster 1000', ''].join('\n'));
  const proc = new ServerProcess();
  proc.start(bin, [conf, '--sentinel']);
  await waitForPort(port, 10_000, 'redis sentinel', proc);
  return {
    master,
    sentinelPort: port,
    async destroy() {
      await proc.signal('SIGKILL');
      await master.destroy();
      tmp.remove();
    },
  };
}

/** Three Redis masters in one cluster (16384 slots split by redis-cli --cluster create, no replicas). */
export async function startRedisCluster(): Promise<{ ports: number[]; destroy(): Promise<void> }> {
  const bin = findBinary(['redis-server'], 'redis-server');
  const cli = findBinary(['redis-cli'], 'redis-tools');
  const tmp = tempDir('strata-cluster-');
  const procs: ServerProcess[] = [];
  const ports: number[] = [];
  const destroy = async (): Promise<void> => {
    for (const p of procs) await p.signal('SIGKILL');
    tmp.remove();
  };
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const dir = join(tmp.dir, String(i));
      mkdirSync(dir);
      const proc = new ServerProcess();
      proc.start(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']);
      procs.push(proc);
      ports.push(port);
      await waitForPort(port, 10_000, 'redis cluster node', proc);
    }
    execFileSync(cli, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'pipe' });
    const until = Date.now() + 15_000;
    for (;;) {
      const ok = ports.every((p) => execFileSync(cli, ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).includes('cluster_state:ok'));
      if (ok) break;
      if (Date.now() > until) throw new Error('redis cluster did not reach cluster_state:ok');
      await sleep(100);
    }
  } catch (e) {
    await destroy();
    throw e;
  }
  return { ports, destroy };
}

/**
 * A TCP proxy in front of a server on 127.0.0.1:`port`, for tests that need a write acknowledged
 * late: what the client sends goes through at once; what the server answers is held back
 * `replyDelayMs` (in order). `sent(text)` resolves once bytes containing `text` went to the server
 * after the call (looked for across chunk boundaries).
 */
export interface SlowReplies {
  readonly port: number;
  /** `127.0.0.1:<port>`. */
  readonly server: string;
  replyDelayMs: number;
  sent(text: string): Promise<void>;
  close(): Promise<void>;
}

export async function slowReplies(port: number): Promise<SlowReplies> {
  const sockets = new Set<Socket>();
  /** Answers held back: cleared by close, so none keeps the test process alive. */
  const held = new Set<NodeJS.Timeout>();
  const watches: { text: Buffer; resolve: () => void }[] = [];
  let tail = Buffer.alloc(0);
  const server = createServer((down) => {
    const up = netConnect(port, '127.0.0.1');
    sockets.add(down);
    sockets.add(up);
    const end = (): void => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    down.on('data', (chunk: Buffer) => {
      up.write(chunk);
      if (watches.length === 0) return;
      const seen = Buffer.concat([tail, chunk]);
      tail = seen.subarray(Math.max(0, seen.length - 256));
      for (let i = watches.length - 1; i >= 0; i--) {
        const w = watches[i] as { text: Buffer; resolve: () => void };
        if (seen.includes(w.text)) {
          watches.splice(i, 1);
          w.resolve();
        }
      }
    });
    // Answers leave in the order they came, each `replyDelayMs` after it came: one queue and one
    // timer per connection. (A timer per chunk could reorder them: a delay computed as 39 ms
    // instead of 40 when the clock ticks lands in node's 39 ms list and fires first, and a
    // chunk cut mid-reply then breaks the stream — once a registry's handshake read the wrong
    // answer and its start failed.)
    const queue: { at: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | null = null;
    const pump = (): void => {
      if (timer !== null) held.delete(timer);
      timer = null;
      if (down.destroyed) return void (queue.length = 0);
      const now = Date.now();
      while (queue.length > 0 && (queue[0] as { at: number }).at <= now) down.write((queue.shift() as { chunk: Buffer }).chunk);
      if (queue.length > 0) {
        timer = setTimeout(pump, Math.max(1, (queue[0] as { at: number }).at - now));
        held.add(timer);
      }
    };
    up.on('data', (chunk: Buffer) => {
      queue.push({ at: Date.now() + proxy.replyDelayMs, chunk });
      if (timer === null) pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const own = (server.address() as AddressInfo).port;
  const proxy: SlowReplies = {
    port: own,
    server: `127.0.0.1:${own}`,
    replyDelayMs: 0,
    sent(text) {
      tail = Buffer.alloc(0);
      return new Promise((resolve) => watches.push({ text: Buffer.from(text), resolve }));
    },
    async close() {
      for (const t of held) clearTimeout(t);
      held.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
