/** The config loader (SPEC F2): defaults < file < environment < overrides, typed and checked. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CONFIG_KEYS, ConfigError, configReference, loadConfig, parseConfigText, REFERENCE_END, REFERENCE_START } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function file(text: string): string {
  const p = join(dir, `c${++files}.conf`);
  writeFileSync(p, text);
  return p;
}

/** Run `fn`, expect a ConfigError whose message contains every one of `parts`. */
function configError(fn: () => unknown, ...parts: string[]): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  for (const p of parts) assert.ok(caught.message.includes(p), `${JSON.stringify(caught.message)} should mention ${JSON.stringify(p)}`);
  return caught;
}

test('no file, no environment: every key has its declared default', () => {
  const cfg = loadConfig();
  for (const [key, spec] of Object.entries(CONFIG_KEYS)) {
    assert.equal(cfg[key as keyof typeof cfg], spec.default, key);
  }
  // The defaults a user relies on when starting with no file (issue 2: 1883 and 8083 /mqtt).
  assert.equal(cfg['listener.tcp.port'], 1883);
  assert.equal(cfg['listener.ws.port'], 8083);
  assert.equal(cfg['listener.ws.path'], '/mqtt');
  assert.equal(cfg['listener.tls.port'], -1);
  assert.equal(cfg['mqtt.max_packet_size'], 1048576);
  assert.equal(cfg['log.level'], 'info');
});

test('every declared default satisfies its own type and range', () => {
  for (const [key, spec] of Object.entries(CONFIG_KEYS)) {
    const s = spec as { kind: string; default: unknown; min?: number; max?: number; values?: readonly string[] };
    if (s.kind === 'int' || s.kind === 'duration') {
      assert.equal(typeof s.default, 'number', key);
      if (s.min !== undefined) assert.ok((s.default as number) >= s.min, key);
      if (s.max !== undefined) assert.ok((s.default as number) <= s.max, key);
    }
    if (s.kind === 'bool') assert.equal(typeof s.default, 'boolean', key);
    if (s.kind === 'enum') assert.ok(s.values?.includes(s.default as string), key);
    // Keys are dotted lower-case, as in the seeds.
    assert.match(key, /^[a-z0-9_]+(\.[a-z0-9_]+)+$/);
  }
});

test('parseConfigText: key = value lines, # comments, blank lines, JSON values, plain text values', () => {
  const parsed = parseConfigText(
    [
      '# a comment',
      '',
      '   # indented comment',
      'mqtt.max_packet_size = 2048',
      'mqtt.retain_available=false',
      'listener.tcp.host = "127.0.0.1"',
      'node.data_dir = /var/lib/strata data',
      'backend.rule = {"topic": "#", "pool": "pool1"}',
      'log.level = debug   ',
      'url = redis://h:1/0?x=a=b',
    ].join('\n'),
    'test.conf',
  ) as Record<string, { value: unknown; where: string }>;
  assert.deepEqual(parsed['mqtt.max_packet_size'], { value: 2048, where: 'test.conf:4' });
  assert.equal(parsed['mqtt.retain_available']?.value, false);
  assert.equal(parsed['listener.tcp.host']?.value, '127.0.0.1');
  assert.equal(parsed['node.data_dir']?.value, '/var/lib/strata data');
  assert.deepEqual(parsed['backend.rule']?.value, { topic: '#', pool: 'pool1' });
  assert.equal(parsed['log.level']?.value, 'debug');
  // Only the first '=' separates key from value.
  assert.equal(parsed['url']?.value, 'redis://h:1/0?x=a=b');
  assert.equal(Object.keys(parsed).length, 7);
});

test('parseConfigText: CRLF line endings', () => {
  const parsed = parseConfigText('mqtt.max_qos = 1\r\nlog.level = warn\r\n') as Record<string, { value: unknown }>;
  assert.equal(parsed['mqtt.max_qos']?.value, 1);
  assert.equal(parsed['log.level']?.value, 'warn');
});

test('parseConfigText: a line without "=" or with a bad key names the file and line', () => {
  configError(() => parseConfigText('# ok\nmqtt.max_qos 1\n', 'broker.conf'), 'broker.conf:2', 'key = value');
  configError(() => parseConfigText('= 5\n', 'broker.conf'), 'broker.conf:1');
  configError(() => parseConfigText('mqtt..max_qos = 1\n', 'broker.conf'), 'broker.conf:1', 'bad key');
  configError(() => parseConfigText('mqtt max = 1\n', 'broker.conf'), 'broker.conf:1', 'bad key');
});

test('a config file sets values with their declared types', () => {
  const cfg = loadConfig({
    file: file(
      [
        '# StrataMQ test config',
        'mqtt.max_packet_size = 4096',
        'mqtt.retain_available = false',
        'mqtt.queue_qos0 = on',
        'listener.tcp.host = "127.0.0.1"',
        'listener.ws.path = /ws',
        'log.level = "warn"',
        'mqtt.session_expiry_interval = 2h',
        'mqtt.connect_timeout = "15s"',
        'mqtt.max_session_expiry_interval = 30m',
      ].join('\n'),
    ),
  });
  assert.equal(cfg['mqtt.max_packet_size'], 4096);
  assert.equal(cfg['mqtt.retain_available'], false);
  assert.equal(cfg['mqtt.queue_qos0'], true);
  assert.equal(cfg['listener.tcp.host'], '127.0.0.1');
  assert.equal(cfg['listener.ws.path'], '/ws');
  assert.equal(cfg['log.level'], 'warn');
  assert.equal(cfg['mqtt.session_expiry_interval'], 7200);
  assert.equal(cfg['mqtt.connect_timeout'], 15);
  assert.equal(cfg['mqtt.max_session_expiry_interval'], 1800);
  // Untouched keys keep their defaults.
  assert.equal(cfg['mqtt.max_inflight'], CONFIG_KEYS['mqtt.max_inflight'].default);
});

test('durations: plain seconds, ms / s / m / h / d units, fractions', () => {
  const d = (v: unknown): number => loadConfig({ overrides: { 'mqtt.session_expiry_interval': v } })['mqtt.session_expiry_interval'];
  assert.equal(d(90), 90);
  assert.equal(d('90'), 90);
  assert.equal(d('15s'), 15);
  assert.equal(d('2m'), 120);
  assert.equal(d('1.5h'), 5400);
  assert.equal(d('1d'), 86400);
  assert.equal(d('2000ms'), 2);
  assert.equal(d(' 3 h '), 10800);
  configError(() => d('soon'), 'mqtt.session_expiry_interval', 'duration', '"soon"');
  configError(() => d('5 weeks'), 'mqtt.session_expiry_interval', 'duration');
  configError(() => d(true), 'mqtt.session_expiry_interval', 'duration');
  configError(() => d(-5), 'mqtt.session_expiry_interval', '>= 0');
});

test('booleans accept true/false/on/off only', () => {
  const b = (v: unknown): boolean => loadConfig({ overrides: { 'mqtt.retain_available': v } })['mqtt.retain_available'];
  assert.equal(b(true), true);
  assert.equal(b('true'), true);
  assert.equal(b('on'), true);
  assert.equal(b(false), false);
  assert.equal(b('false'), false);
  assert.equal(b('off'), false);
  configError(() => b('yes'), 'mqtt.retain_available', 'true or false', '"yes"');
  configError(() => b(1), 'mqtt.retain_available', 'true or false');
});

test('integers: numbers and numeric strings; fractions, text, empty and out-of-range values are refused', () => {
  const n = (v: unknown): number => loadConfig({ overrides: { 'mqtt.max_packet_size': v } })['mqtt.max_packet_size'];
  assert.equal(n(1024), 1024);
  assert.equal(n('2048'), 2048);
  configError(() => n(1.5), 'mqtt.max_packet_size', 'integer', '1.5');
  configError(() => n('big'), 'mqtt.max_packet_size', 'integer', '"big"');
  configError(() => n(''), 'mqtt.max_packet_size', 'integer');
  configError(() => n('  '), 'mqtt.max_packet_size', 'integer');
  configError(() => n(null), 'mqtt.max_packet_size', 'integer');
  configError(() => n(10), 'mqtt.max_packet_size', '>= 64');
  configError(() => n(268435456), 'mqtt.max_packet_size', '<= 268435455');
  // Ports: -1 disables WS, but not TCP.
  assert.equal(loadConfig({ overrides: { 'listener.ws.port': -1 } })['listener.ws.port'], -1);
  configError(() => loadConfig({ overrides: { 'listener.tcp.port': -1 } }), 'listener.tcp.port', '>= 0');
  configError(() => loadConfig({ overrides: { 'listener.tcp.port': 65536 } }), 'listener.tcp.port', '<= 65535');
});

test('mqtt.max_queued_in_memory: at least 1 (a queue in memory cannot be switched off), a clear error otherwise', () => {
  const q = (v: unknown): number => loadConfig({ overrides: { 'mqtt.max_queued_in_memory': v } })['mqtt.max_queued_in_memory'];
  assert.equal(q(1), 1);
  assert.equal(q('5000'), 5000);
  configError(() => q(0), 'mqtt.max_queued_in_memory', '>= 1');
  configError(() => q(-10), 'mqtt.max_queued_in_memory', '>= 1');
  configError(() => q('lots'), 'mqtt.max_queued_in_memory', 'integer');
  configError(() => q(100000001), 'mqtt.max_queued_in_memory', '<= 100000000');
});

test('enums list their allowed values in the error', () => {
  assert.equal(loadConfig({ overrides: { 'log.level': 'silent' } })['log.level'], 'silent');
  configError(() => loadConfig({ overrides: { 'log.level': 'loud' } }), 'log.level', 'one of', 'trace', 'silent', '"loud"');
});

test('strings accept numbers (e.g. a numeric host part) but not objects', () => {
  assert.equal(loadConfig({ overrides: { 'node.data_dir': 42 } })['node.data_dir'], '42');
  configError(() => loadConfig({ overrides: { 'node.data_dir': { a: 1 } } }), 'node.data_dir', 'string');
});

test('an unknown key in a file is an error naming the key, file and line, with a suggestion', () => {
  const f = file('# typo below\nmqtt.max_packet_size = 2048\nmqtt.max_packet_sise = 2048\n');
  configError(() => loadConfig({ file: f }), 'unknown config key', '"mqtt.max_packet_sise"', `${f}:3`);
  const g = file('listener.tcp.portt = 1\nfoo.max_inflight = 3\n');
  configError(() => loadConfig({ file: g }), '"listener.tcp.portt"', `${g}:1`);
  const h = file('foo.max_inflight = 3\n');
  configError(() => loadConfig({ file: h }), '"foo.max_inflight"', 'did you mean "mqtt.max_inflight"');
});

test('a bad value in a file names the key, file and line', () => {
  const f = file('log.level = info\nmqtt.max_qos = 3\n');
  configError(() => loadConfig({ file: f }), 'mqtt.max_qos', `${f}:2`, '<= 2', '3');
  const g = file('mqtt.max_packet_size = "abc"\n');
  configError(() => loadConfig({ file: g }), 'mqtt.max_packet_size', `${g}:1`, 'integer', '"abc"');
});

test('a missing config file is a ConfigError naming the path', () => {
  const missing = join(dir, 'nope.conf');
  configError(() => loadConfig({ file: missing }), 'cannot read config file', missing);
});

test('environment: STRATA_ prefix, "__" for ".", case-insensitive; other variables are ignored', () => {
  const cfg = loadConfig({
    env: {
      STRATA_MQTT__MAX_PACKET_SIZE: '2048',
      STRATA_LOG__LEVEL: 'error',
      STRATA_MQTT__RETAIN_AVAILABLE: 'false',
      strata_mqtt__max_qos: '1', // not the prefix (case-sensitive prefix): ignored
      PATH: '/usr/bin',
      MQTT__MAX_INFLIGHT: '5',
    },
  });
  assert.equal(cfg['mqtt.max_packet_size'], 2048);
  assert.equal(cfg['log.level'], 'error');
  assert.equal(cfg['mqtt.retain_available'], false);
  assert.equal(cfg['mqtt.max_qos'], 2);
  assert.equal(cfg['mqtt.max_inflight'], CONFIG_KEYS['mqtt.max_inflight'].default);
});

test('environment errors name the variable', () => {
  configError(() => loadConfig({ env: { STRATA_MQTT__MAX_PACKET_SIZE: 'huge' } }), 'STRATA_MQTT__MAX_PACKET_SIZE', 'mqtt.max_packet_size', 'integer');
  configError(() => loadConfig({ env: { STRATA_MQTT__NOPE: '1' } }), 'STRATA_MQTT__NOPE', 'unknown config key', 'mqtt.nope');
});

test('precedence: defaults < file < environment < overrides', () => {
  const f = file('mqtt.max_packet_size = 1000\nmqtt.max_inflight = 10\nmqtt.max_qos = 1\n');
  const env = { STRATA_MQTT__MAX_PACKET_SIZE: '2000', STRATA_MQTT__MAX_INFLIGHT: '20' };
  const cfg = loadConfig({ file: f, env, overrides: { 'mqtt.max_packet_size': 3000 } });
  assert.equal(cfg['mqtt.max_packet_size'], 3000); // override beats env and file
  assert.equal(cfg['mqtt.max_inflight'], 20); // env beats file
  assert.equal(cfg['mqtt.max_qos'], 1); // file beats default
  assert.equal(cfg['mqtt.receive_maximum'], CONFIG_KEYS['mqtt.receive_maximum'].default);
  // An undefined override leaves the lower layers alone.
  assert.equal(loadConfig({ file: f, overrides: { 'mqtt.max_qos': undefined } })['mqtt.max_qos'], 1);
});

test('overrides are checked like any other source', () => {
  configError(() => loadConfig({ overrides: { 'mqtt.nope': 1 } as never }), 'option', 'unknown config key', '"mqtt.nope"');
  configError(() => loadConfig({ overrides: { 'mqtt.max_inflight': 0 } }), 'option', 'mqtt.max_inflight', '>= 1');
});

test('loadConfig does not read process.env unless given it', () => {
  const saved = process.env.STRATA_MQTT__MAX_QOS;
  process.env.STRATA_MQTT__MAX_QOS = '0';
  try {
    assert.equal(loadConfig()['mqtt.max_qos'], 2);
    assert.equal(loadConfig({ env: process.env })['mqtt.max_qos'], 0);
  } finally {
    if (saved === undefined) delete process.env.STRATA_MQTT__MAX_QOS;
    else process.env.STRATA_MQTT__MAX_QOS = saved;
  }
});

test('the README configuration reference is the one generated from the code (stratamq config reference --update README.md)', () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf(REFERENCE_START);
  const end = readme.indexOf(REFERENCE_END);
  assert.ok(start >= 0 && end > start, 'markers present');
  const table = readme.slice(readme.indexOf('\n', start) + 1, end).trimEnd();
  assert.equal(table, configReference());
  for (const key of Object.keys(CONFIG_KEYS)) assert.ok(table.includes(`| \`${key}\` |`), key);
});

test("smqtt's camelCase pool keys are accepted for the snake-case ones (db.initialSize → db.initial_size)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-cfg-'));
  try {
    const file = join(dir, 'smqtt.conf');
    writeFileSync(file, ['db.url = jdbc:mysql://127.0.0.1:3306/smqtt?useSSL=false', 'db.initialSize = 3', 'db.maxActive = 30', 'db.maxWait = 5000', 'db.minIdle = 1', ''].join('\n'));
    const cfg = loadConfig({ file });
    assert.deepEqual([cfg['db.initial_size'], cfg['db.max_active'], cfg['db.max_wait'], cfg['db.min_idle']], [3, 30, 5000, 1]);
    writeFileSync(file, 'db.maxActive = 1\n');
    assert.throws(() => loadConfig({ file }), /smqtt\.conf:1: db\.max_active must be >= 2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
