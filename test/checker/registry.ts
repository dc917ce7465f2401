/**
 * `--registry redis|pgsql|mysql`: the durability checker against a broker whose persistent
 * sessions live in an external registry. A server of its own is started as the tests start theirs
 * (test/servers.ts: loopback port, temp directory), the broker's config names it, and it is emptied
 * before every broker run (each run, shrinking candidates included, starts from nothing, as a fresh
 * data directory does for the embedded store).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { DB_NAME, DB_PASSWORD, SQL_REGISTRY_TABLES, slowReplies, sqlAdmin, sqlUser, startMariadb, startPostgres, startRedis } from '../servers.js';

export interface CheckerRegistry {
  /** The broker's config file (persistence.registry and the server's address). */
  config: string;
  /** The server, for the output. */
  where: string;
  empty(): Promise<void>;
  stop(): Promise<void>;
}

/** `slowMs` > 0: the broker reaches the server through a proxy holding its answers back that long (slowReplies). */
export async function startRegistry(kind: string, slowMs = 0): Promise<CheckerRegistry> {
  if (kind !== 'redis' && kind !== 'pgsql' && kind !== 'mysql') throw new Error(`--registry: redis, pgsql or mysql, not "${kind}"`);
  const dir = mkdtempSync(join(tmpdir(), 'strata-checker-registry-'));
  const config = join(dir, 'broker.conf');
  const server = kind === 'redis' ? await startRedis() : kind === 'pgsql' ? await startPostgres() : await startMariadb();
  const proxy = slowMs > 0 ? await slowReplies(server.port) : null;
  if (proxy) proxy.replyDelayMs = slowMs;
  const port = proxy?.port ?? server.port;
  const slow = proxy ? `, its answers ${slowMs} ms late through a proxy on 127.0.0.1:${port}` : '';
  let where: string;
  let empty: () => Promise<void>;
  let close = (): void => undefined;
  if (kind === 'redis') {
    const admin = new Redis({ host: '127.0.0.1', port: server.port });
    writeFileSync(config, `persistence.registry = redis\nredis.single.address = 127.0.0.1:${port}\n`);
    where = `redis-server on ${server.server}${slow}`;
    empty = async () => {
      await admin.flushall();
    };
    close = () => admin.disconnect();
  } else {
    const url = `${kind === 'pgsql' ? 'postgres' : 'mysql'}://${sqlUser(kind)}:${encodeURIComponent(DB_PASSWORD)}@127.0.0.1:${port}/${DB_NAME}`;
    writeFileSync(config, `persistence.registry = sql\ndb.url = ${url}\ndb.initial_size = 2\ndb.max_active = 8\n`);
    where = `${kind === 'pgsql' ? 'PostgreSQL' : 'MariaDB'} on 127.0.0.1:${server.port}${slow}`;
    empty = async () => {
      await sqlAdmin(kind, server.port, `DROP TABLE IF EXISTS ${SQL_REGISTRY_TABLES.join(', ')}`);
    };
  }
  return {
    config,
    where,
    empty,
    stop: async () => {
      close();
      await proxy?.close();
      await server.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
