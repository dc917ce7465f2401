/**
 * The operator's command line against a running broker (a spawned `stratamq start`, admin API on
 * an ephemeral port): clients list/show/kick, sessions list/show/discard, retained list/delete,
 * ds info through the API, `--json`, a wrong token (exit 4), a broker not reachable (exit 3),
 * --offline on the stopped broker's store, and `config check` of a good and a bad file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { IDisconnectPacket } from 'mqtt-packet';
import { BrokerProcess, client, freePort, persistent, tempDir } from '../helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const tmp = tempDir('strata-manage-');
const data = join(tmp.dir, 'data');
let broker: BrokerProcess;
let url: string;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('STRATA_')) env[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 20000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A command against the running broker, its token read from the data dir. */
const remote = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => run([...args, '--url', url, '--data-dir', data]);

before(async () => {
  broker = new BrokerProcess(await freePort(), data, [], { STRATA_ADMIN__PORT: '0', STRATA_LOG__FORMAT: 'json' });
  await broker.start();
  const m = /"admin":(\d+)/.exec(broker.output);
  assert.ok(m, 'the listening line names the admin port');
  url = `http://127.0.0.1:${m[1]}`;
  const away = await client(broker.url, { ...persistent(5, 'cli-away'), clientId: 'cli-away' });
  await away.subscribeAsync('cli/q/#', { qos: 1 });
  await away.endAsync();
  const pub = await client(broker.url, { clientId: 'cli-pub' });
  for (let i = 0; i < 2; i++) await pub.publishAsync(`cli/q/${i}`, `m${i}`, { qos: 1 });
  await pub.publishAsync('cli/r/keep', 'kept', { qos: 1, retain: true });
  await pub.publishAsync('cli/r/drop', 'dropped', { qos: 1, retain: true });
  await pub.endAsync();
});
after(async () => {
  await broker.stop();
  tmp.remove();
});

describe('stratamq clients / sessions / retained / ds info against a running broker', () => {
  test('clients list (table and --json), show, kick (0x98); wrong token exits 4; broker not reachable exits 3', async () => {
    const live = await client(broker.url, { protocolVersion: 5, clientId: 'cli-live', username: 'bob' });
    const gone = new Promise<IDisconnectPacket>((resolve) => live.once('disconnect', resolve));
    const [table, json, show, wrong, missing, unreachable] = await Promise.all([
      remote('clients', 'list'),
      remote('clients', 'list', '--connected', '--json'),
      remote('clients', 'show', 'cli-live', '--json'),
      run(['clients', 'list', '--url', url, '--token', 'wrong']),
      remote('clients', 'show', 'nobody'),
      run(['clients', 'list', '--url', `http://127.0.0.1:${await freePort()}`, '--token', 'x']),
    ]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^clientId\s+connected\s+username/m);
    assert.match(table.stdout, /^cli-away\s+false/m);
    assert.match(table.stdout, /^cli-live\s+true\s+bob/m);
    assert.deepEqual(
      JSON.parse(json.stdout).items.map((c: { clientId: string }) => c.clientId),
      ['cli-live'],
    );
    assert.equal(JSON.parse(show.stdout).username, 'bob');
    assert.equal(wrong.code, 4);
    assert.match(wrong.stderr, /wrong token/);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no client "nobody"/);
    assert.equal(unreachable.code, 3);
    assert.match(unreachable.stderr, /not reachable/);
    const kick = await remote('clients', 'kick', 'cli-live');
    assert.equal(kick.code, 0, kick.stderr);
    assert.equal((await gone).reasonCode, 0x98);
    live.end(true);
  });

  test('sessions list / show (queued messages of a session away) / discard; retained list / delete; ds info through the API', async () => {
    const [list, show, retained, info] = await Promise.all([
      remote('sessions', 'list', '--json'),
      remote('sessions', 'show', 'cli-away'),
      remote('retained', 'list', '--filter', 'cli/r/#', '--json'),
      remote('ds', 'info', '--json'),
    ]);
    assert.ok(JSON.parse(list.stdout).items.some((s: { clientId: string; queued: number }) => s.clientId === 'cli-away' && s.queued === 2));
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /queued: 2/);
    assert.match(show.stdout, /^cli\/q\/0\s+1\s+false/m);
    assert.deepEqual(JSON.parse(retained.stdout).items.map((m: { topic: string }) => m.topic), ['cli/r/drop', 'cli/r/keep']);
    assert.equal(info.code, 0, info.stderr);
    assert.equal(JSON.parse(info.stdout).records, 2);

    assert.equal((await remote('retained', 'delete', 'cli/r/drop')).code, 0);
    assert.equal((await remote('retained', 'delete', 'cli/r/drop')).code, 1);
    assert.equal((await remote('sessions', 'discard', 'cli-away')).code, 0);
    const [after, left] = await Promise.all([remote('sessions', 'show', 'cli-away'), remote('retained', 'list', '--filter', 'cli/r/#')]);
    assert.equal(after.code, 1);
    assert.match(left.stdout, /cli\/r\/keep/);
    assert.doesNotMatch(left.stdout, /cli\/r\/drop/);
  });

  test('--offline reads the stopped broker\'s store; config check of a good and a bad file', async () => {
    const c = await client(broker.url, { ...persistent(4, 'cli-off'), clientId: 'cli-off' });
    await c.subscribeAsync('cli/off', { qos: 1 });
    await c.endAsync();
    await broker.stop();
    const good = join(tmp.dir, 'good.conf');
    const bad = join(tmp.dir, 'bad.conf');
    writeFileSync(good, 'listener.tcp.port = 1884\nadmin.port = -1\n');
    writeFileSync(bad, 'admin.port = "many"\n');
    const badRule = join(tmp.dir, 'bad-rule.conf');
    writeFileSync(badRule, 'backend.redis.pool1.server = 127.0.0.1:6379\nbackend.redis.hook.message.publish.1 = {"topic": "#", "action": {"function": "on_message_publish"}, "pool": "pool2"}\n');
    const koRule = await run(['config', 'check', badRule]);
    assert.equal(koRule.code, 2);
    assert.match(koRule.stderr, /bad-rule\.conf:2: backend\.redis\.hook\.message\.publish\.1: pool "pool2" is not configured/);
    const [sessions, retained, fallback, ok, ko] = await Promise.all([
      run(['sessions', 'list', '--offline', '--data-dir', data, '--json']),
      run(['retained', 'list', '--offline', '--data-dir', data]),
      remote('sessions', 'show', 'cli-off'), // broker gone: reads the store, says so
      run(['config', 'check', good]),
      run(['config', 'check', bad]),
    ]);
    // Parallel readers of one store: one may find it locked by another; retry those one by one.
    const again = async (r: { code: number; stdout: string; stderr: string }, args: string[]) => (r.code === 1 && /in use/.test(r.stderr) ? run(args) : r);
    const s = await again(sessions, ['sessions', 'list', '--offline', '--data-dir', data, '--json']);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(JSON.parse(s.stdout).items.map((x: { clientId: string }) => x.clientId), ['cli-off']);
    const r = await again(retained, ['retained', 'list', '--offline', '--data-dir', data]);
    assert.match(r.stdout, /cli\/r\/keep/);
    const f = await again(fallback, ['sessions', 'show', 'cli-off', '--url', url, '--data-dir', data]);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stderr, /not reachable.*reading the store/);
    assert.match(f.stdout, /cli\/off/);
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /^OK /);
    assert.equal(ko.code, 2);
    assert.match(ko.stderr, /admin\.port must be an integer/);
  });
});
