/**
 * Choosing the registry (`persistence.registry`): the embedded store is opened by
 * lifecycle/restore.ts; an external one — Redis, SQL, or a user's module loaded from its path and
 * checked against QueueRegistry — is built and opened here, behind a QueueStore.
 *
 * A registry that cannot be reached or refuses the broker's credentials at start stops the start
 * with a RegistryError naming it (the CLI exits 1): a broker that promises to keep what it
 * acknowledged does not take persistent sessions it could not store, and a supervisor restarts it.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { checkRegistry, QueueStore, type QueueRegistry, RegistryError } from './queue-registry.js';
import type { RedisRegistry, RedisRegistryOptions } from './redis/registry.js';
import type { SqlRegistry } from './sql/registry.js';

// The Redis and SQL registries are loaded only by the broker that uses one (an embedded one
// keeps none of their code).

/** The Redis registry the `redis.*` keys describe. */
async function redisRegistry(c: Config, log: Logger): Promise<RedisRegistry> {
  const { parseNodes, RedisRegistry } = await import('./redis/registry.js');
  const mode = c['redis.mode'] as RedisRegistryOptions['mode'];
  const nodes =
    mode === 'cluster'
      ? parseNodes(c['redis.cluster.nodes'], 'redis.cluster.nodes')
      : mode === 'sentinel'
        ? parseNodes(c['redis.sentinel.nodes'], 'redis.sentinel.nodes', 26379)
        : parseNodes(c['redis.single.address'], 'redis.single.address');
  const opts: RedisRegistryOptions = {
    mode,
    nodes,
    master: c['redis.sentinel.master'],
    database: c['redis.database'],
    username: c['redis.username'],
    password: c['redis.password'],
    timeoutMs: c['redis.timeout'],
    connectTimeoutMs: c['redis.pool.conn.timeout'],
    scanIntervalMs: c['redis.cluster.scan.interval'],
  };
  return new RedisRegistry(opts, log);
}

/** The SQL registry the `db.*` keys describe. */
async function sqlRegistry(c: Config, log: Logger): Promise<SqlRegistry> {
  if (!c['db.url']) throw new RegistryError('persistence.registry = sql: db.url is not set (postgres://host:port/db or mysql://host:port/db)');
  const { SqlRegistry, sqlOptions } = await import('./sql/registry.js');
  return new SqlRegistry(sqlOptions(c['db.url'], c['db.username'], c['db.password'], { initialSize: c['db.initial_size'], maxActive: c['db.max_active'], maxWait: c['db.max_wait'], minIdle: c['db.min_idle'], queryTimeout: c['db.query_timeout'] }), log);
}

/** A user's registry module: its `createRegistry(config, log)`, else its default export (an object, or a factory). */
async function loadModule(path: string, c: Config, log: Logger): Promise<QueueRegistry> {
  const file = isAbsolute(path) ? path : resolve(path);
  const what = `persistence.registry = ${path}`;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    throw new RegistryError(`${what}: cannot load ${file}: ${(e as Error).message}`);
  }
  const make = mod.createRegistry ?? mod.default;
  if (make === undefined) throw new RegistryError(`${what}: ${file} exports neither createRegistry nor a default export`);
  const made = typeof make === 'function' ? await (make as (c: Config, log: Logger) => unknown)(c, log) : make;
  return checkRegistry(made, what);
}

/** The external registry `persistence.registry` names, opened; null for the embedded store. */
export async function openRegistry(c: Config, log: Logger): Promise<QueueStore | null> {
  const which = c['persistence.registry'];
  if (which === 'embedded') return null;
  const registry = which === 'redis' ? await redisRegistry(c, log) : which === 'sql' ? await sqlRegistry(c, log) : await loadModule(which, c, log);
  const name = which;
  try {
    await registry.open();
  } catch (e) {
    if (e instanceof RegistryError) throw e;
    throw new RegistryError(`persistence.registry = ${name}: cannot open: ${(e as Error).message}`);
  }
  return new QueueStore(registry, name, log);
}
