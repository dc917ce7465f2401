/**
 * The durability checker (test/checker/, as durability-checker.test.ts runs it on the embedded
 * store) on the Redis registry, the SQL registry (PostgreSQL) and on a user's module (test/fixtures/file-registry.ts): random
 * client actions with SIGTERM and kill -9 of a real broker process, judged by the model of the
 * MQTT rules. A failure names the seed; rerun it with the same `--config`.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { formatAction } from '../checker/actions.js';
import { DEFAULT_RUN_CONFIG } from '../checker/driver.js';
import { checkSeed, DEFAULT_ACTIONS } from '../checker/runner.js';
import { tempDir } from '../helpers.js';
import pg from 'pg';
import { DB_NAME, DB_PASSWORD, startPostgres, startRedis, type TestServer } from '../servers.js';

/**
 * 936 lost a session replaced by Clean Start on Redis (the old one's index removal landed after the
 * new one's); 2400038: a will published at that takeover, stored for the old session after its
 * removal, was delivered to the new one.
 */
const SEEDS = [713, 742, 750, 936, 2400038];

async function noViolation(seed: number, config: string): Promise<void> {
  const report = await checkSeed(seed, { ...DEFAULT_RUN_CONFIG, actions: DEFAULT_ACTIONS, shrinkRuns: 0, shrinkMs: 0, say: () => undefined, brokerArgs: ['--config', config] });
  assert.equal(report.error, null, 'the checker itself failed');
  const run = report.original;
  assert.ok(run, 'the run produced no result');
  assert.deepEqual(
    run.violations.map((v) => `${v.kind}: ${v.text}`),
    [],
    `seed ${seed}: ${run.violations.length} violation(s); trace:\n${run.actions.map((x, i) => `  ${i + 1}. ${formatAction(x)}`).join('\n')}`,
  );
}

const tmp = tempDir('strata-chk-reg-');
after(() => tmp.remove());

describe('durability checker on the Redis registry', () => {
  let redis: TestServer;
  let admin: Redis;
  const config = join(tmp.dir, 'redis.conf');
  before(async () => {
    redis = await startRedis();
    admin = new Redis({ port: redis.port, host: '127.0.0.1' });
    writeFileSync(config, `persistence.registry = redis\nredis.single.address = ${redis.server}\n`);
  });
  after(async () => {
    admin.disconnect();
    await redis.destroy();
  });
  for (const seed of SEEDS) {
    test(`redis, seed ${seed}: no violation of the MQTT rules or the durability promise`, async () => {
      await admin.flushall();
      await noViolation(seed, config);
    });
  }
});

describe('durability checker on the SQL registry (PostgreSQL)', () => {
  let server: TestServer;
  const config = join(tmp.dir, 'sql.conf');
  const TABLES = 'stratamq_schema, session, session_subscription, message, session_message, session_inbound, session_retained, retain';
  before(async () => {
    server = await startPostgres();
    writeFileSync(config, `persistence.registry = sql\ndb.url = postgres://postgres:${encodeURIComponent(DB_PASSWORD)}@127.0.0.1:${server.port}/${DB_NAME}\n`);
  });
  after(() => server.destroy());
  /**
   * 711: a session replaced by Clean Start read the old one's queue, its deletion not committed yet.
   * 2100044: a retained QoS 2 message sent on subscribe, PUBREC received, kill -9: sent again as a
   * new message (its packet id and phase were not recorded).
   */
  for (const seed of [711, 742, 2100044]) {
    test(`pgsql, seed ${seed}: no violation of the MQTT rules or the durability promise`, async () => {
      const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'postgres', password: DB_PASSWORD, database: DB_NAME });
      await c.connect();
      await c.query(`DROP TABLE IF EXISTS ${TABLES}`).finally(() => c.end());
      await noViolation(seed, config);
    });
  }
});

describe('durability checker on a user module', () => {
  const config = join(tmp.dir, 'module.conf');
  before(() => writeFileSync(config, `persistence.registry = ${fileURLToPath(new URL('../fixtures/file-registry.js', import.meta.url))}\n`));
  for (const seed of SEEDS.slice(0, 2)) {
    test(`user module, seed ${seed}: no violation of the MQTT rules or the durability promise`, async () => {
      await noViolation(seed, config);
    });
  }
});
