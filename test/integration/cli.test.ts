/**
 * The `stratamq start` command (SPEC F1/F2/F5, issue 2 item 3) as a user runs it: a child
 * process serving mosquitto and MQTT.js clients, pino JSON logs on stdout, a clean stop on
 * SIGTERM/SIGINT, the `key = value` config file, flags over file, environment overrides, and
 * exit codes with clear messages for bad configuration (2) and a port in use (1).
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import type { IConnackPacket } from 'mqtt-packet';
import mqtt from 'mqtt';
import { client, collect, freePort, RawClient } from '../helpers.js';

/** dist/test/integration/cli.test.js → dist/src/cli/main.js */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const hasMosquitto = existsSync('/usr/bin/mosquitto_pub') && existsSync('/usr/bin/mosquitto_sub');

const dir = mkdtempSync(join(tmpdir(), 'strata-cli-'));
const children = new Set<ChildProcessWithoutNullStreams>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Run `fn` with a port another server holds (all addresses), closed afterwards. */
async function withPortInUse(fn: (port: number) => Promise<void>): Promise<void> {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '0.0.0.0', resolve));
  try {
    await fn((blocker.address() as { port: number }).port);
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
}

let files = 0;
function configFile(text: string): string {
  const p = join(dir, `broker-${++files}.conf`);
  writeFileSync(p, text);
  return p;
}

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface Cli {
  child: ChildProcessWithoutNullStreams;
  logs: LogLine[];
  stdout(): string;
  stderr(): string;
  /** Resolves with the first log line matching, or rejects after timeoutMs. */
  waitLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn `node dist/src/cli/main.js <args>`; SIGKILLed after `killAfterMs` at the latest. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, killAfterMs = 30000): Cli {
  const cleanEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('STRATA_')) cleanEnv[k] = v;
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...cleanEnv, STRATA_ADMIN__PORT: '-1', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  let partial = '';
  const logs: LogLine[] = [];
  const waiters: (() => void)[] = [];
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
    partial += b.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: -1, msg: `<not JSON> ${line}` });
      }
    }
    for (const w of waiters.slice()) w();
  });
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      children.delete(child);
      for (const w of waiters.slice()) w();
      resolve({ code, signal });
    });
  });
  const waitLog = (pred: (l: LogLine) => boolean, timeoutMs = 20000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = logs.find(pred);
        if (hit) {
          done();
          resolve(hit);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`stratamq exited (${child.exitCode ?? child.signalCode}) before the expected log line; stderr: ${err}; stdout: ${out}`));
        }
      };
      const t = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for a log line; stdout: ${out}; stderr: ${err}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        const i = waiters.indexOf(check);
        if (i >= 0) waiters.splice(i, 1);
      };
      waiters.push(check);
      check();
    });
  return { child, logs, stdout: () => out, stderr: () => err, waitLog, exited };
}

/** Start and wait for the 'listening' log line. */
let stores = 0;
async function started(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ c: Cli; listening: LogLine }> {
  // Each broker gets its own store: a data directory is locked by the broker that has it open.
  const c = cli(['start', '--data-dir', join(dir, `data-${++stores}`), ...args], env);
  const listening = await c.waitLog((l) => l.msg === 'listening');
  return { c, listening };
}

async function stop(c: Cli, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  c.child.kill(signal);
  const { code } = await c.exited;
  return { code, ms: Date.now() - t0 };
}

/** Run a process to completion (bounded). */
function run(cmd: string, args: string[], timeoutMs = 8000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const k = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(k);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The v5 CONNACK a fresh client gets (its properties carry the server limits). */
async function connackV5(port: number): Promise<IConnackPacket> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    return await new Promise<IConnackPacket>((resolve, reject) => {
      c.once('connect', (ack) => resolve(ack as IConnackPacket));
      c.once('error', reject);
    });
  } finally {
    await c.endAsync();
  }
}

// Each test runs its own stratamq process on its own ports, so they can overlap.
describe('stratamq start', { concurrency: 3 }, () => {
  test('stratamq start serves MQTT (mosquitto and MQTT.js) and logs pino JSON with "listening" on stdout', async () => {
    const port = await freePort();
    const { c, listening } = await started(['--port', String(port), '--ws-port', '0', '--log-level', 'info']);
    try {
      assert.equal(listening.level, 30, 'info level');
      assert.equal(listening.name, 'stratamq');
      assert.equal(listening.tcp, port);
      assert.equal(listening.ws, undefined, '--ws-port 0 disables WebSocket');
      assert.equal(typeof listening.time, 'number');
      assert.ok(
        c.logs.every((l) => l.level >= 0),
        'every stdout line is JSON',
      );

      if (hasMosquitto) {
        // Retained first (no subscribe race), then a live roundtrip after SUBACK.
        const base = ['-h', '127.0.0.1', '-p', String(port)];
        assert.equal((await run('/usr/bin/mosquitto_pub', [...base, '-V', 'mqttv5', '-r', '-q', '1', '-t', 'cli/kept', '-m', 'retained'])).code, 0);
        const kept = await run('/usr/bin/mosquitto_sub', [...base, '-t', 'cli/kept', '-C', '1', '-W', '5']);
        assert.equal(kept.stdout, 'retained\n');

        const sub = await client(`mqtt://127.0.0.1:${port}`, { clientId: 'cli-mqttjs' });
        await sub.subscribeAsync('cli/live', { qos: 1 });
        const got = collect(sub, 1);
        assert.equal((await run('/usr/bin/mosquitto_pub', [...base, '-q', '1', '-t', 'cli/live', '-m', 'from mosquitto'])).code, 0);
        assert.equal((await got)[0]?.payload.toString(), 'from mosquitto');
        await sub.endAsync();
      } else {
        const a = await client(`mqtt://127.0.0.1:${port}`, { clientId: 'cli-a' });
        await a.subscribeAsync('cli/live', { qos: 1 });
        const got = collect(a, 1);
        await a.publishAsync('cli/live', 'self', { qos: 1 });
        assert.equal((await got)[0]?.payload.toString(), 'self');
        await a.endAsync();
      }
    } finally {
      const { code } = await stop(c);
      assert.equal(code, 0);
    }
  });

  test('--ws-port serves MQTT over WebSocket on /mqtt', async () => {
    const [port, wsPort] = [await freePort(), await freePort()];
    const { c, listening } = await started(['--port', String(port), '--ws-port', String(wsPort)]);
    try {
      assert.equal(listening.ws, wsPort);
      const ws = await client(`ws://127.0.0.1:${wsPort}/mqtt`, { protocolVersion: 5, clientId: 'cli-ws' });
      await ws.subscribeAsync('cli/ws', { qos: 2 });
      const got = collect(ws, 1);
      await ws.publishAsync('cli/ws', 'over ws', { qos: 2 });
      assert.equal((await got)[0]?.payload.toString(), 'over ws');
      await ws.endAsync();
    } finally {
      await stop(c);
    }
  });

  test('SIGTERM: v5 clients get DISCONNECT 0x8B Server shutting down, the process exits 0 within a few seconds', async () => {
    const port = await freePort();
    const { c } = await started(['--port', String(port), '--ws-port', '0', '--log-level', 'info']);
    const v5 = await client(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: 'cli-v5' });
    const v4 = await client(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clientId: 'cli-v4' });
    const disconnect = new Promise<number | undefined>((resolve) => v5.once('disconnect', (p) => resolve(p.reasonCode)));
    const v4closed = new Promise<void>((resolve) => v4.once('close', () => resolve()));
    const { code, ms } = await stop(c, 'SIGTERM');
    assert.equal(code, 0);
    assert.ok(ms < 5000, `stopped in ${ms} ms`);
    assert.equal(await disconnect, 0x8b);
    await v4closed; // 3.1.1 has no DISCONNECT from the server: the connection just closes
    assert.ok(c.logs.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'));
    assert.ok(c.logs.some((l) => l.msg === 'closed'));
    v5.end(true);
    v4.end(true);
    // The port is free again.
    const again = createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(port, '0.0.0.0', resolve);
    });
    await new Promise<void>((resolve) => again.close(() => resolve()));
  });

  test('SIGINT stops it cleanly too (exit 0)', async () => {
    const port = await freePort();
    const { c } = await started(['--port', String(port), '--ws-port', '0']);
    const { code, ms } = await stop(c, 'SIGINT');
    assert.equal(code, 0);
    assert.ok(ms < 5000, `stopped in ${ms} ms`);
  });

  test('a config file (key = value, # comments, JSON values) is honoured and CLI flags override it', async () => {
    const [filePort, flagPort] = [await freePort(), await freePort()];
    const file = configFile(
      [
        '# StrataMQ test configuration',
        '',
        `listener.tcp.port = ${filePort}`,
        'listener.ws.port = -1',
        'mqtt.max_packet_size = 1024',
        '   # an indented comment',
        'mqtt.retain_available = true',
        'mqtt.session_expiry_interval = "1h"',
        'log.level = "warn"',
      ].join('\n'),
    );
    // --port and --log-level override the file's port and level.
    const { c, listening } = await started(['-c', file, '--port', String(flagPort), '--log-level', 'info']);
    try {
      assert.equal(listening.tcp, flagPort, 'the flag beats the file');
      assert.equal(listening.ws, undefined, 'listener.ws.port = -1 from the file');
      assert.equal(listening.level, 30, 'an info line was logged although the file says warn');
      const ack = await connackV5(flagPort);
      assert.equal(ack.properties?.maximumPacketSize, 1024);
      // And it is enforced: a 2000-byte PUBLISH closes a 3.1.1 connection.
      const raw = await RawClient.tcp(flagPort, 4);
      assert.equal(((await raw.connect('cli-big')) as IConnackPacket).returnCode, 0);
      raw.send({ cmd: 'publish', topic: 'cli/big', payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false });
      assert.deepEqual(await raw.waitClosed(), []);
    } finally {
      await stop(c);
    }
    // Without the flag, the file's port is used.
    const second = await started(['-c', file, '--log-level', 'info']);
    try {
      assert.equal(second.listening.tcp, filePort);
    } finally {
      await stop(second.c);
    }
  });

  test('STRATA_MQTT__MAX_PACKET_SIZE overrides the default and the file; flags still win over it', async () => {
    const port = await freePort();
    const file = configFile('mqtt.max_packet_size = 1024\n');
    const { c } = await started(['-c', file, '--port', String(port), '--ws-port', '0'], { STRATA_MQTT__MAX_PACKET_SIZE: '2048', STRATA_LOG__LEVEL: 'info' });
    try {
      assert.equal((await connackV5(port)).properties?.maximumPacketSize, 2048);
    } finally {
      await stop(c);
    }
    const port2 = await freePort();
    const env = { STRATA_LISTENER__TCP__PORT: String(await freePort()) };
    const second = await started(['--port', String(port2), '--ws-port', '0'], env);
    try {
      assert.equal(second.listening.tcp, port2, '--port beats STRATA_LISTENER__TCP__PORT');
    } finally {
      await stop(second.c);
    }
  });

  test('a bad config key or value exits with code 2 and a message naming the key', async () => {
    const cases: { args: string[]; env?: NodeJS.ProcessEnv; mentions: string[] }[] = [
      { args: ['-c', configFile('# typo\nmqtt.max_packet_sise = 1024\n')], mentions: ['mqtt.max_packet_sise', 'unknown config key'] },
      { args: ['-c', configFile('mqtt.max_packet_size = "big"\n')], mentions: ['mqtt.max_packet_size', 'integer'] },
      { args: ['-c', configFile('mqtt.max_qos = 3\n')], mentions: ['mqtt.max_qos', '<= 2'] },
      { args: ['-c', configFile('this is not a config line\n')], mentions: [':1', 'key = value'] },
      { args: ['-c', join(dir, 'does-not-exist.conf')], mentions: ['does-not-exist.conf'] },
      { args: [], env: { STRATA_MQTT__MAX_INFLIGHT: 'lots' }, mentions: ['STRATA_MQTT__MAX_INFLIGHT', 'mqtt.max_inflight'] },
      { args: ['--log-level', 'chatty'], mentions: ['log.level'] },
    ];
    await Promise.all(
      cases.map(async ({ args, env, mentions }) => {
        const c = cli(['start', '--port', '0', '--ws-port', '0', '--data-dir', join(dir, `data-${++stores}`), ...args], env);
        const { code } = await c.exited;
        assert.equal(code, 2, `exit code for ${args.join(' ')}; stderr: ${c.stderr()}`);
        assert.match(c.stderr(), /config error/);
        for (const m of mentions) assert.ok(c.stderr().includes(m), `stderr ${JSON.stringify(c.stderr())} should mention ${m}`);
        assert.equal(
          c.logs.filter((l) => l.msg === 'listening').length,
          0,
          'never listened',
        );
      }),
    );
  });

  test('a port in use exits with code 1 and says so', async () => {
    await withPortInUse(async (port) => {
      const c = cli(['start', '--port', String(port), '--ws-port', '0', '--data-dir', join(dir, `data-${++stores}`)]);
      const { code } = await c.exited;
      assert.equal(code, 1);
      assert.match(c.stderr(), /port in use/);
      assert.ok(c.stderr().includes(String(port)), `stderr names the port: ${c.stderr()}`);
    });
  });

  test('the WebSocket port in use also exits 1 with the same clear message, not a crash', async () => {
    await withPortInUse(async (wsPort) => {
      const port = await freePort();
      const c = cli(['start', '--port', String(port), '--ws-port', String(wsPort), '--data-dir', join(dir, `data-${++stores}`)]);
      const { code } = await c.exited;
      assert.equal(code, 1);
      assert.match(c.stderr(), /^stratamq: port in use: .*EADDRINUSE.*:\d+\n$/);
      assert.doesNotMatch(c.stderr(), /Unhandled/);
    });
  });

  test('the admin port in use exits 1 with the same clear message (the port is bound at start, its routes loaded later)', async () => {
    await withPortInUse(async (adminPort) => {
      const port = await freePort();
      const c = cli(['start', '--port', String(port), '--ws-port', '0', '--admin-port', String(adminPort), '--data-dir', join(dir, `data-${++stores}`)]);
      const { code } = await c.exited;
      assert.equal(code, 1);
      assert.match(c.stderr(), /^stratamq: port in use: .*EADDRINUSE.*:\d+\n$/);
      assert.ok(c.stderr().includes(String(adminPort)), `stderr names the port: ${c.stderr()}`);
    });
  });

  test('an invalid --port is refused before starting', async () => {
    const c = cli(['start', '--port', '70000']);
    const { code } = await c.exited;
    assert.notEqual(code, 0);
    assert.match(c.stderr(), /port/);
  });
});

describe('stratamq ds info', () => {
  test('reports shards, generations and message counts of a stopped broker’s store; refuses while a broker holds it', async () => {
    const port = await freePort();
    const data = join(dir, `data-${++stores}`);
    const c = cli(['start', '--port', String(port), '--ws-port', '0', '--data-dir', data]);
    await c.waitLog((l) => l.msg === 'listening');
    const sub = await client(`mqtt://127.0.0.1:${port}`, { clientId: 'ds-sub', clean: false });
    await sub.subscribeAsync('ds/x', { qos: 1 });
    await sub.endAsync();
    const pub = await client(`mqtt://127.0.0.1:${port}`, {});
    for (let i = 0; i < 3; i++) await pub.publishAsync('ds/x', `m${i}`, { qos: 1 });
    await pub.endAsync();

    const busy = cli(['ds', 'info', '--data-dir', data]);
    assert.equal((await busy.exited).code, 1);
    assert.match(busy.stderr(), /in use/);

    await stop(c);
    const info = cli(['ds', 'info', '--data-dir', data, '--json']);
    assert.equal((await info.exited).code, 0, info.stderr());
    const stats = JSON.parse(info.stdout()) as { siteId: string; records: number; shards: { generations: unknown[] }[] };
    assert.match(stats.siteId, /^[0-9a-f]{32}$/);
    assert.equal(stats.records, 3);
    assert.ok(stats.shards.length >= 1 && stats.shards.some((s) => s.generations.length > 0));
    const text = cli(['ds', 'info', '--data-dir', data]);
    assert.equal((await text.exited).code, 0);
    assert.match(text.stdout(), /messages 3/);
  });
});
