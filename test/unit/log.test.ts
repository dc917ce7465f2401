/** log.format: JSON lines by default, readable lines with `pretty` (pino-pretty, loaded only then). */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const logModule = fileURLToPath(new URL('../../src/log.js', import.meta.url));

function run(format: string): string {
  const script = `const { createLogger } = await import(${JSON.stringify(logModule)}); createLogger('info', '${format}').info({ client: 'c1' }, 'hello there'); console.log('pretty loaded:', Object.keys((await import('node:module')).createRequire(import.meta.url).cache).some((k) => k.includes('pino-pretty')));`;
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
}

test('json: one JSON object per line, pino-pretty not loaded', () => {
  const out = run('json');
  // pino's JSON stream writes asynchronously: the line may come after the probe's.
  const line = JSON.parse(out.split('\n').find((l) => l.includes('hello there')) as string) as { msg: string; client: string; level: number };
  assert.equal(line.msg, 'hello there');
  assert.equal(line.client, 'c1');
  assert.match(out, /pretty loaded: false/);
});

test('pretty: a readable line with level, message and fields', () => {
  const out = run('pretty');
  const line = out.split('\n').find((l) => l.includes('hello there')) as string;
  assert.match(line, /INFO/);
  assert.match(line, /hello there/);
  assert.match(line, /client.*c1/);
  assert.throws(() => JSON.parse(line));
  assert.match(out, /pretty loaded: true/);
});
