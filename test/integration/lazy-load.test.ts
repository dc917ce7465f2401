/**
 * What a running broker loads (issue 15, idle RSS): `stratamq start` on the embedded store with
 * no WebSocket, TLS or admin listener serves clients without loading the code of what it does not
 * use — the other CLI commands (cli-progress), the Redis and SQL registries and their drivers,
 * the backends' log sink, the WebSocket and TLS listeners, the admin API, and node's http, https,
 * tls, crypto and readline. Each module loaded stays in memory for the process's life.
 *
 * Watched from outside the broker's code: a module resolve hook (node:module register) writes
 * every module the ESM loader resolves, and node's own list of the built-in modules it loaded is
 * written at exit. A broker with a WebSocket listener is the control: the same watch sees ws and
 * node's http there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import { freePort } from '../helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'strata-lazy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Start the broker with the watch, connect a client (publish, subscribe), stop it: what it loaded. */
async function loadedBy(name: string, extra: string[]): Promise<{ modules: string[]; builtins: string[] }> {
  const resolved = join(dir, `${name}.resolved`);
  const builtins = join(dir, `${name}.builtins`);
  const hooks = join(dir, `${name}-hooks.mjs`);
  writeFileSync(hooks, `import { appendFileSync } from 'node:fs';\nexport async function resolve(spec, ctx, next) {\n  const r = await next(spec, ctx);\n  appendFileSync(${JSON.stringify(resolved)}, r.url + '\\n');\n  return r;\n}\n`);
  const preload = join(dir, `${name}-preload.mjs`);
  writeFileSync(preload, `import { register } from 'node:module';\nimport { writeFileSync } from 'node:fs';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\nprocess.on('exit', () => writeFileSync(${JSON.stringify(builtins)}, process.moduleLoadList.join('\\n')));\n`);
  writeFileSync(resolved, '');
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', pathToFileURL(preload).href, CLI, 'start', '--port', String(port), '--host', '127.0.0.1', '--admin-port', '0', '--data-dir', join(dir, `${name}-data`), '--log-level', 'info', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 15000;
    while (!out.includes('"msg":"listening"')) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`broker did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `lazy-${name}`, clean: false, reconnectPeriod: 0 });
    await c.subscribeAsync('lazy/#', { qos: 1 });
    const got = new Promise<string>((resolve) => c.once('message', (_t, p) => resolve(p.toString())));
    await c.publishAsync('lazy/x', 'hello', { qos: 1, retain: true });
    assert.equal(await got, 'hello');
    await c.endAsync();
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, out);
  return { modules: readFileSync(resolved, 'utf8').split('\n').filter(Boolean), builtins: readFileSync(builtins, 'utf8').split('\n') };
}

const UNUSED_MODULES = [/\/node_modules\/(cli-progress|ws|pg|mysql2|ioredis|fastify|@fastify\/[^/]+|prom-client|jose)\//, /\/dist\/src\/(cli\/(manage|log|passwd)|persistence\/(redis|sql)\/registry|backends\/(msglog-sink|redis|sql)|transport\/(ws|tls)|admin\/(server|metrics|log-routes))\.js$/];
const UNUSED_BUILTINS = ['http', 'https', 'tls', 'crypto', 'readline'];

test('a broker on the embedded store without WebSocket, TLS or admin listeners loads none of their code, nor the other commands\'', async () => {
  const { modules, builtins } = await loadedBy('plain', ['--ws-port', '0']);
  assert.ok(modules.some((m) => m.endsWith('/dist/src/broker.js')), 'the watch saw the broker load');
  const unused = modules.filter((m) => UNUSED_MODULES.some((re) => re.test(m)));
  assert.deepEqual(unused, []);
  const nodeUnused = UNUSED_BUILTINS.filter((b) => builtins.includes(`NativeModule ${b}`));
  assert.deepEqual(nodeUnused, []);
});

test('control: a WebSocket listener loads ws and node\'s http', async () => {
  const { modules, builtins } = await loadedBy('ws', ['--ws-port', String(await freePort())]);
  assert.ok(modules.some((m) => /\/node_modules\/ws\//.test(m)), 'ws loaded');
  assert.ok(modules.some((m) => m.endsWith('/dist/src/transport/ws.js')), 'transport/ws.js loaded');
  assert.ok(builtins.includes('NativeModule http'), 'node:http loaded');
});
