/**
 * The installed package as a user meets it (issue 19): what the CLI says when no native package
 * fits the platform, and a native core of another version refused at start. The install from
 * the release tarballs themselves is checked by scripts/check-install.mjs (run by .ci/run).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';

/** dist/test/integration/packaging.test.js → the repository root. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');

const dir = mkdtempSync(join(tmpdir(), 'strata-packaging-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Run the CLI in a process whose `process[key]` reads `value`, as on another platform. */
function cliOn(key: 'platform' | 'arch', value: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const script = `Object.defineProperty(process, ${JSON.stringify(key)}, { value: ${JSON.stringify(value)} }); process.argv.splice(1, 0, ${JSON.stringify(CLI)}); await import(${JSON.stringify(`file://${CLI}`)});`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { encoding: 'utf8', timeout: 30000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('on a platform no native package fits, `stratamq` fails with the platform, what it tried and how to build from source', () => {
  const r = cliOn('platform', 'freebsd', ['--version']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /cannot load its native core \(a Rust addon\) on freebsd-x64/);
  assert.match(r.stderr, /Tried: native\/strata\.freebsd-x64\.node, @stratamq\/native-freebsd-x64/);
  assert.match(r.stderr, /No prebuilt package fits freebsd-x64/);
  assert.match(r.stderr, /git clone .*\n.*npm install/);
});

test('on a supported platform whose package was not installed, `stratamq` names the package to reinstall', { skip: process.platform !== 'linux' && 'Linux x64 and arm64 only' }, () => {
  // The other Linux arch with a package: nothing for it is built or installed here.
  const other = process.arch === 'arm64' ? 'x64' : 'arm64';
  const r = cliOn('arch', other, ['--version']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`on linux-${other} \\((glibc|musl)\\)`));
  assert.match(r.stderr, new RegExp(`The prebuilt package for linux-${other} .* is @stratamq/native-linux-${other}-(gnu|musl)@\\d+\\.\\d+\\.\\d+`));
});

test('`stratamq --version` prints the package version and the native core version', () => {
  const r = spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^stratamq \d+\.\d+\.\d+\S*\nnative core \d+\.\d+\.\d+\S* \(.*\.node\)\n$/);
});

test('a native core of another version than the package: --version says so and `stratamq start` refuses with exit 1 naming both versions', () => {
  // A copy of the package whose package.json says 9.9.9, over the native core built here.
  const pkg = join(dir, 'pkg');
  mkdirSync(join(pkg, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'dist/src'), join(pkg, 'dist/src'), { recursive: true });
  symlinkSync(join(ROOT, 'native'), join(pkg, 'native'));
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'stratamq', version: '9.9.9', type: 'module' }));
  const cli = join(pkg, 'dist/src/cli/main.js');

  const v = spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8', timeout: 30000 });
  assert.match(v.stdout, /^stratamq 9\.9\.9\nnative core (\d+\.\d+\.\d+)/);
  assert.match(v.stdout, /error: the native core is version \S+ but the stratamq package is 9\.9\.9/);

  const s = spawnSync(process.execPath, [cli, 'start', '--port', '0', '--ws-port', '0', '--admin-port', '0', '--data-dir', join(dir, 'data')], { encoding: 'utf8', timeout: 30000 });
  assert.equal(s.status, 1);
  assert.match(s.stderr, /^stratamq: failed to start: the native core is version \S+ but the stratamq package is 9\.9\.9 .*npm install stratamq@9\.9\.9/);
  assert.doesNotMatch(s.stdout, /listening/);
});
