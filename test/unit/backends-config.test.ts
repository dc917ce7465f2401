/**
 * The backends' configuration (src/backends/config.ts) and its parts: pools with defaults, rules
 * checked at start with errors naming the key and where it came from, placeholders compiled to
 * parameters (never spliced), and EMQX-style message ids.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { backendsConfig } from '../../src/backends/config.js';
import { base62, MessageIds } from '../../src/backends/msgid.js';
import { compileRedis, compileSql, redisArgs, sqlParams } from '../../src/backends/placeholders.js';
import { ConfigError, configReference, type ConfigInput, loadConfig } from '../../src/config.js';
import { createBroker } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-backends-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const load = (overrides: Record<string, unknown>) => backendsConfig(loadConfig({ overrides: overrides as ConfigInput }));

function configError(fn: () => unknown, ...parts: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  for (const p of parts) assert.ok(caught.message.includes(p), `${JSON.stringify(caught.message)} should mention ${JSON.stringify(p)}`);
}

const r = (o: object): string => JSON.stringify(o);

test('a config file in the seeds\' form: pools with their defaults, rules in event then number order', () => {
  const f = join(dir, 'emqx.conf');
  writeFileSync(
    f,
    [
      'backend.pgsql.pool1.server = 10.0.0.5',
      'backend.pgsql.pool1.pool_size = 4',
      'backend.pgsql.pool1.username = root',
      'backend.pgsql.pool1.password = public',
      'backend.pgsql.pool1.database = mqtt',
      'backend.pgsql.pool1.ssl = false',
      'backend.redis.pool1.server = 127.0.0.1:6380',
      'backend.redis.pool1.database = 2',
      'backend.pgsql.hook.message.publish.2     = {"topic": "#", "action": {"function": "on_message_retain"}, "pool": "pool1"}',
      'backend.pgsql.hook.message.publish.1     = {"topic": "#", "action": {"function": "on_message_publish"}, "pool": "pool1"}',
      'backend.pgsql.hook.client.connected.1    = {"action": {"function": "on_client_connected"}, "pool": "pool1"}',
      'backend.pgsql.hook.session.unsubscribed.1= {"topic": "#", "action": {"sql": ["delete from mqtt_acked where clientid = ${clientid} and topic = ${topic}"]}, "pool": "pool1"}',
      'backend.redis.hook.message.publish.1 = {"topic": "a/+", "action": {"commands": ["HSET k:${clientid} t ${topic}"]}, "pool": "pool1"}',
    ].join('\n'),
  );
  const b = backendsConfig(loadConfig({ file: f }));
  const pg = b.pools.find((p) => p.id === 'pgsql.pool1');
  assert.deepEqual(pg?.servers, [{ host: '10.0.0.5', port: 5432 }]);
  assert.equal(pg?.poolSize, 4);
  assert.equal(pg?.username, 'root');
  assert.equal(pg?.reconnectMs, 1000);
  assert.equal(pg?.maxQueued, 10000);
  const rd = b.pools.find((p) => p.id === 'redis.pool1');
  assert.deepEqual(rd?.servers, [{ host: '127.0.0.1', port: 6380 }]);
  assert.equal(rd?.database, '2');
  assert.equal(rd?.mode, 'single');
  assert.deepEqual(
    b.rules.map((x) => x.key),
    ['backend.pgsql.hook.client.connected.1', 'backend.pgsql.hook.session.unsubscribed.1', 'backend.pgsql.hook.message.publish.1', 'backend.pgsql.hook.message.publish.2', 'backend.redis.hook.message.publish.1'],
  );
  const unsub = b.rules[1];
  assert.deepEqual(unsub && 'sql' in unsub.action ? unsub.action.sql[0] : null, { text: 'delete from mqtt_acked where clientid = $1 and topic = $2', params: ['clientid', 'topic'] });
  assert.equal(b.rules[0]?.where, `${f}:11`);
});

test('rules from the environment are JSON text; Redis sentinel and cluster take server lists', () => {
  const cfg = loadConfig({
    env: {
      STRATA_BACKEND__REDIS__S1__SERVER: '10.0.0.1:26379,10.0.0.2:26379',
      STRATA_BACKEND__REDIS__S1__TYPE: 'sentinel',
      STRATA_BACKEND__REDIS__S1__SENTINEL: 'mymaster',
      STRATA_BACKEND__REDIS__C1__SERVER: '10.0.0.1:7000,10.0.0.2:7001,10.0.0.3',
      STRATA_BACKEND__REDIS__C1__TYPE: 'cluster',
      STRATA_BACKEND__REDIS__HOOK__CLIENT__CONNECTED__1: r({ action: { function: 'on_client_connected' }, pool: 's1' }),
    },
  });
  const b = backendsConfig(cfg);
  assert.equal(b.pools.find((p) => p.name === 's1')?.mode, 'sentinel');
  assert.deepEqual(b.pools.find((p) => p.name === 'c1')?.servers, [
    { host: '10.0.0.1', port: 7000 },
    { host: '10.0.0.2', port: 7001 },
    { host: '10.0.0.3', port: 6379 },
  ]);
  assert.equal(b.rules[0]?.where, 'environment STRATA_BACKEND__REDIS__HOOK__CLIENT__CONNECTED__1');
});

test('bad backend config is a ConfigError at start naming the key and what is wrong', () => {
  const pool = { 'backend.redis.pool1.server': '127.0.0.1:6379' };
  const pg = { 'backend.pgsql.pool1.server': '127.0.0.1' };
  configError(() => load({ ...pool, 'backend.redis.hook.message.publsh.1': r({ action: { function: 'on_message_publish' }, pool: 'pool1' }) }), 'backend.redis.hook.message.publsh.1', 'unknown event "message.publsh"');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ action: { function: 'on_message_publsh' }, pool: 'pool1' }) }), 'unknown function "on_message_publsh"');
  configError(() => load({ ...pool, 'backend.redis.hook.client.connected.1': r({ action: { function: 'on_message_publish' }, pool: 'pool1' }) }), 'on_message_publish runs on message.publish, not client.connected');
  configError(() => load({ ...pool, 'backend.redis.hook.session.subscribed.1': r({ action: { function: 'on_message_fetch' }, pool: 'pool1' }) }), 'on_message_fetch is for pgsql and mysql', 'on_message_fetch_for_queue');
  configError(() => load({ ...pg, 'backend.pgsql.hook.message.acked.1': r({ action: { function: 'on_message_acked_for_queue' }, pool: 'pool1' }) }), 'on_message_acked_for_queue is for redis');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ action: { function: 'on_message_publish' }, pool: 'pool2' }) }), 'pool "pool2" is not configured', 'backend.redis.pool2.server');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ action: { sql: ['select 1'] }, pool: 'pool1' }) }), 'Redis rules take "commands"');
  configError(() => load({ ...pg, 'backend.pgsql.hook.message.publish.1': r({ action: { commands: ['SET a b'] }, pool: 'pool1' }) }), 'SQL rules take "sql"');
  configError(() => load({ ...pg, 'backend.pgsql.hook.message.publish.1': r({ action: { sql: ['insert into t values (${clientd})'] }, pool: 'pool1' }) }), 'unknown placeholder ${clientd}');
  configError(() => load({ ...pg, 'backend.pgsql.hook.message.publish.1': r({ action: { sql: ["insert into t values ('${payload}')"] }, pool: 'pool1' }) }), 'placeholder inside a quoted string');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ topic: 'a/#/b', action: { function: 'on_message_publish' }, pool: 'pool1' }) }), '"topic" "a/#/b" is not a valid filter');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': '{"topic": "#", "action": ' }), 'backend.redis.hook.message.publish.1', 'must be a JSON object');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ action: { function: 'on_message_publish' } }) }), '"pool" must name a pool');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ action: { function: 'on_message_publish' }, pool: 'pool1', extra: 1 }) }), 'unknown field "extra"');
  configError(() => load({ ...pool, 'backend.redis.hook.client.connected.1': r({ action: { function: 'on_client_connected' }, pool: 'pool1', mode: 'backpressure' }) }), '"mode": "backpressure" is for message.publish rules');
  configError(() => load({ ...pool, 'backend.redis.hook.message.publish.1': r({ action: { function: 'on_message_publish' }, pool: 'pool1', mode: 'block' }) }), '"mode" must be "drop" or "backpressure"');
  configError(() => load({ 'backend.redis.pool1.sever': 'x' }), 'unknown config key "backend.redis.pool1.sever"', 'server|');
  configError(() => load({ 'backend.pgsql.pool1.type': 'cluster' }), 'unknown config key "backend.pgsql.pool1.type"');
  configError(() => load({ 'backend.redis.pool1.pool_size': 0 }), 'backend.redis.pool1.pool_size', '>= 1');
  configError(() => load({ 'backend.redis.pool1.type': 'sentinel' }), 'needs backend.redis.pool1.sentinel');
  configError(() => load({ 'backend.redis.pool1.server': 'a:1,b:2' }), 'lists 2 servers');
  configError(() => load({ 'backend.mysql.pool1.server': 'host:99999' }), 'must be host:port');
  configError(() => load({ 'backend.redis.pool1.database': 'mqtt' }), 'Redis database number');
  // The broker refuses to start on it.
  configError(() => createBroker({ config: { ...pool, 'backend.redis.hook.message.publish.1': r({ action: { function: 'nope' }, pool: 'pool1' }) } as ConfigInput }), 'unknown function "nope"');
});

test('the config reference lists the backend keys', () => {
  const ref = configReference();
  for (const k of ['backend.<redis\\|pgsql\\|mysql>.<pool>.server', 'backend.redis.<pool>.type', 'backend.<redis\\|pgsql\\|mysql>.hook.<event>.<n>', 'node.name']) assert.ok(ref.includes(k), k);
});

test('placeholders become parameters: SQL markers per dialect (quoted literals left alone), Redis arguments whole', () => {
  const sql = "INSERT INTO t (a, b, c) VALUES (${clientid}, 'lit''s ${', ${payload}) -- ${topic}";
  configError(() => compileSql(sql, 'pgsql', 'x'), 'placeholder inside a quoted string');
  const ok = "INSERT INTO t (a, b, c, d) VALUES (${clientid}, 'it''s $1', ${payload}, ${clientid})";
  assert.deepEqual(compileSql(ok, 'pgsql', 'x'), { text: "INSERT INTO t (a, b, c, d) VALUES ($1, 'it''s $1', $2, $3)", params: ['clientid', 'payload', 'clientid'] });
  const my = compileSql(ok, 'mysql', 'x');
  assert.equal(my.text, "INSERT INTO t (a, b, c, d) VALUES (?, 'it''s $1', ?, ?)");
  const payload = Buffer.from("'); DROP TABLE mqtt_msg;--");
  assert.deepEqual(sqlParams(my, { clientid: 'c', payload }, 'mysql'), ['c', payload, 'c']);
  assert.deepEqual(sqlParams(my, { clientid: 'c', payload }, 'pgsql'), ['c', "'); DROP TABLE mqtt_msg;--", 'c']);
  assert.deepEqual(sqlParams(compileSql('select ${username}', 'pgsql', 'x'), {}, 'pgsql'), [null], 'absent values bind as NULL');

  const t = compileRedis('HSET  key:${clientid}:x  field ${payload}  q${qos}', 'x');
  assert.deepEqual(redisArgs(t, { clientid: 'a b', payload: Buffer.from('x y\r\n*3'), qos: 1 }), ['HSET', Buffer.from('key:a b:x'), 'field', Buffer.from('x y\r\n*3'), Buffer.from('q1')]);
  configError(() => compileRedis('SET ${nope} 1', 'x'), 'unknown placeholder ${nope}');
});

test('message ids: EMQX-style base62, unique and increasing even within one millisecond; one id per message across events', () => {
  const ids = new MessageIds('strata@test');
  const now = Date.now();
  const seen: string[] = [];
  for (let i = 0; i < 70_000; i++) seen.push(ids.next(now)); // past the 16-bit sequence
  seen.push(ids.next(now - 5000)); // a clock step back still increases
  assert.equal(new Set(seen).size, seen.length);
  for (let i = 1; i < seen.length; i++) assert.ok((seen[i - 1] as string).length === (seen[i] as string).length && (seen[i - 1] as string) < (seen[i] as string), `${seen[i - 1]} < ${seen[i]}`);
  assert.match(seen[0] as string, /^[0-9A-Za-z]{20,22}$/);
  // The digits are those of the 128-bit number us << 64 | node << 16 | seq (checked with BigInt).
  const one = new MessageIds('strata@test', 4242);
  const id = one.next(1_765_000_000_123);
  const h = createHash('sha1').update('strata@test').digest();
  assert.equal(id, base62((1_765_000_000_123_000n << 64n) | (BigInt(h.readUInt32BE(0)) << 32n) | (4242n << 16n)));
  const m = { topic: 't', payload: Buffer.from('p'), qos: 1 as const, retain: false, properties: undefined, publisher: 'c', receivedAt: now, expiresAt: 0 };
  assert.equal(ids.of(m), ids.of({ ...m }), 'the snapshots of one message share its payload buffer, hence its id');
  assert.notEqual(ids.of(m), ids.of({ ...m, payload: Buffer.from('p') }));
});

test('message ids: every id is the base62 of its 128-bit number, also where adding the sequence carries past the last four digits', () => {
  const node = createHash('sha1').update('strata@carry').digest().readUInt32BE(0);
  const pid = 777;
  const expected = (ms: number, seq: number): string => base62((BigInt(ms * 1000) << 64n) | (BigInt(node) << 32n) | (BigInt(pid) << 16n) | BigInt(seq));
  // A millisecond whose id at sequence 0 ends in four digits worth more than 62^4 - 2^16: its
  // sequence numbers carry into the fifth digit from last (ids are made there in full).
  const d4 = 62 ** 4;
  const value = (s: string): number => [...s].reduce((v, c) => v * 62 + '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'.indexOf(c), 0);
  let ms = 1_765_000_000_000;
  while (value(expected(ms, 0).slice(-4)) <= d4 - 0x10000) ms++;
  const carryAt = d4 - value(expected(ms, 0).slice(-4));
  const ids = new MessageIds('strata@carry', pid);
  for (let seq = 0; seq <= 0xffff; seq++) {
    const id = ids.next(ms);
    if (seq < 3 || Math.abs(seq - carryAt) < 3 || seq % 997 === 0 || seq > 0xfffd) assert.equal(id, expected(ms, seq), `ms ${ms} seq ${seq} (carry from ${carryAt})`);
  }
  assert.equal(ids.next(ms), base62((BigInt(ms * 1000 + 1) << 64n) | (BigInt(node) << 32n) | (BigInt(pid) << 16n)), 'past the sequence: the next microsecond');
  for (let i = 0; i < 200; i++) {
    const t = ms + 1 + i * 7919;
    assert.equal(ids.next(t), expected(t, 0));
    assert.equal(ids.next(t), expected(t, 1));
  }
});

test('drivers load only when rules need them: a broker without backend rules loads none of ioredis, pg, mysql2', () => {
  const index = fileURLToPath(new URL('../../src/index.js', import.meta.url));
  const loaded = (config: Record<string, unknown>): string => {
    const script = [
      `const { createBroker } = await import(${JSON.stringify(index)});`,
      `const b = createBroker({ port: 0, host: '127.0.0.1', wsPort: null, dataDir: ${JSON.stringify(join(dir, `idle-${Object.keys(config).length}`))}, config: { 'log.level': 'silent', 'admin.port': -1, ...${JSON.stringify(config)} } });`,
      'await b.listen();',
      "const cache = Object.keys((await import('node:module')).createRequire(import.meta.url).cache);",
      "console.log(['ioredis', 'pg', 'mysql2'].filter((m) => cache.some((k) => k.includes(`/node_modules/${m}/`))).join(',') || 'none');",
      'await b.close();',
    ].join('\n');
    return execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim();
  };
  assert.equal(loaded({}), 'none');
  assert.equal(loaded({ 'backend.redis.pool1.server': '127.0.0.1:1', 'backend.redis.pool1.auto_reconnect': 0, 'backend.redis.hook.message.publish.1': r({ action: { function: 'on_message_publish' }, pool: 'pool1' }) }), 'ioredis');
});
