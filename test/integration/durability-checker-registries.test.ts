/**
 * The durability checker (test/checker/, as durability-checker.test.ts runs it on the embedded
 * store) on the Redis registry, the SQL registry (PostgreSQL) and on a user's module (test/fixtures/file-registry.ts): random
 * client actions with SIGTERM and kill -9 of a real broker process, judged by the model of the
 * MQTT rules. A failure names the seed; rerun it with `npm run check:durability -- --registry
 * redis|pgsql --seed N --runs 1`.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatAction } from '../checker/actions.js';
import { DEFAULT_RUN_CONFIG } from '../checker/driver.js';
import { checkSeed, DEFAULT_ACTIONS } from '../checker/runner.js';
import { type CheckerRegistry, startRegistry } from '../checker/registry.js';
import { tempDir } from '../helpers.js';

/**
 * 936 lost a session replaced by Clean Start on Redis (the old one's index removal landed after the
 * new one's); 2400038: a will published at that takeover, stored for the old session after its
 * removal, was delivered to the new one.
 */
const SEEDS = [713, 742, 750, 936, 2400038];

async function noViolation(seed: number, config: string, beforeRun?: () => Promise<void>, slowRegistryMs = 0): Promise<void> {
  const report = await checkSeed(seed, { ...DEFAULT_RUN_CONFIG, actions: DEFAULT_ACTIONS, shrinkRuns: 0, shrinkMs: 0, say: () => undefined, brokerArgs: ['--config', config], beforeRun, slowRegistryMs });
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

/** The checker's --registry servers (test/checker/registry.ts), emptied before each broker run; `slowMs`: --slow-registry. */
function onRegistry(kind: 'redis' | 'pgsql', title: string, seeds: number[], slowMs = 0): void {
  describe(`durability checker on the ${title}`, () => {
    let reg: CheckerRegistry;
    before(async () => {
      reg = await startRegistry(kind, slowMs);
    });
    after(() => reg.stop());
    for (const seed of seeds) {
      test(`${kind}${slowMs > 0 ? ` answering ${slowMs} ms late` : ''}, seed ${seed}: no violation of the MQTT rules or the durability promise`, async () => {
        await noViolation(seed, reg.config, () => reg.empty(), slowMs);
      });
    }
  });
}

onRegistry('redis', 'Redis registry', SEEDS);
/**
 * Redis answering 40 ms late (--slow-registry 40), as on a loaded machine: 750 failed once in CI
 * (2026-12-07) and fails 3 of 3 this way on the build of then — a graceful stop dropped writes
 * ioredis still held behind an unanswered batch (finding 16, also seed 5100003); 5500117: a
 * session back and gone before its queue's first read was answered never got its messages on
 * the next visit (finding 18).
 */
onRegistry('redis', 'Redis registry answering late', [750, 5100003, 5500117], 40);
/**
 * 711: a session replaced by Clean Start read the old one's queue, its deletion not committed yet.
 * 2100044: a retained QoS 2 message sent on subscribe, PUBREC received, kill -9: sent again as a
 * new message (its packet id and phase were not recorded).
 */
onRegistry('pgsql', 'SQL registry (PostgreSQL)', [711, 742, 2100044]);
/** 5200020, answers 25 ms late: QoS 0 overtook a persistent session's backlog (finding 17; about 1 run in 2 before). */
onRegistry('pgsql', 'SQL registry (PostgreSQL) answering late', [5200020], 25);

describe('durability checker on a user module', () => {
  const config = join(tmp.dir, 'module.conf');
  before(() => writeFileSync(config, `persistence.registry = ${fileURLToPath(new URL('../fixtures/file-registry.js', import.meta.url))}\n`));
  for (const seed of SEEDS.slice(0, 2)) {
    test(`user module, seed ${seed}: no violation of the MQTT rules or the durability promise`, async () => {
      await noViolation(seed, config);
    });
  }
});
