/**
 * Loading the native core (issue 19): the error when no native package fits the platform, and
 * the check that the native core is the package's version. The real loader on a platform with
 * no package is run in test/integration/packaging.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { assertCoreVersion, bindingLoadError, coreVersion, currentHost, NATIVE_PACKAGES, PACKAGE_VERSION, versionMismatch } from '../../src/native.js';

/** An error chained as native/binding.js chains its load errors: the last one outermost. */
function loaderError(...tried: string[]): Error {
  const chain = tried.reduce<Error | null>((prev, spec) => {
    const e = new Error(`Cannot find module '${spec}'\nRequire stack:\n- /x/native/binding.js`);
    e.cause = prev;
    return e;
  }, null);
  const top = new Error('Cannot find native binding. npm has a bug related to optional dependencies');
  top.cause = chain;
  return top;
}

test('no package for the platform: the error names platform and arch, what was tried in order, the packages there are, and how to build from source', () => {
  const e = bindingLoadError(loaderError('./strata.freebsd-x64.node', '@stratamq/native-freebsd-x64'), { platform: 'freebsd', arch: 'x64', libc: null }, '1.2.3');
  assert.equal((e as NodeJS.ErrnoException).code, 'ERR_NATIVE_LOAD');
  assert.match(e.message, /^StrataMQ 1\.2\.3 cannot load its native core .* on freebsd-x64\./);
  assert.match(e.message, /Tried: native\/strata\.freebsd-x64\.node, @stratamq\/native-freebsd-x64\./);
  assert.match(e.message, /No prebuilt package fits freebsd-x64; there are linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, darwin-x64, darwin-arm64, win32-x64-msvc/);
  assert.match(e.message, /git clone .* && cd stratamq\n {2}npm install .*cargo/);
  assert.doesNotMatch(e.message, /optional dependency/);
});

test('a supported platform whose package is missing: the error names the package and version that fits and says to reinstall with optional dependencies', () => {
  const e = bindingLoadError(loaderError('./strata.linux-arm64-gnu.node', '@stratamq/native-linux-arm64-gnu'), { platform: 'linux', arch: 'arm64', libc: 'glibc' }, '0.4.0');
  assert.match(e.message, /on linux-arm64 \(glibc\)\./);
  assert.match(e.message, /The prebuilt package for linux-arm64 \(glibc\) is @stratamq\/native-linux-arm64-gnu@0\.4\.0/);
  assert.match(e.message, /--omit=optional/);
  assert.match(e.message, /npm install/);
});

test('musl and glibc are told apart: a musl host is pointed at the musl package', () => {
  const e = bindingLoadError(loaderError('@stratamq/native-linux-x64-musl'), { platform: 'linux', arch: 'x64', libc: 'musl' }, '0.1.0');
  assert.match(e.message, /on linux-x64 \(musl\)/);
  assert.match(e.message, /is @stratamq\/native-linux-x64-musl@0\.1\.0/);
});

test('a package that is there but does not load: its error is in the message', () => {
  const inner = new Error("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.39' not found");
  const top = new Error('Cannot find native binding.');
  top.cause = inner;
  const e = bindingLoadError(top, { platform: 'linux', arch: 'x64', libc: 'glibc' }, '0.1.0');
  assert.match(e.message, /GLIBC_2\.39' not found/);
  assert.equal(e.cause, top);
});

test('every native package in package.json napi.targets is one the load error knows, and the other way round', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { napi: { targets: string[]; packageName: string } };
  const triples: Record<string, string> = {
    'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
    'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
    'x86_64-unknown-linux-musl': 'linux-x64-musl',
    'x86_64-apple-darwin': 'darwin-x64',
    'aarch64-apple-darwin': 'darwin-arm64',
    'x86_64-pc-windows-msvc': 'win32-x64-msvc',
  };
  const fromTargets = pkg.napi.targets.map((t) => `${pkg.napi.packageName}-${triples[t] ?? `unknown target ${t}`}`).sort();
  assert.deepEqual(NATIVE_PACKAGES.map((p) => p.name).sort(), fromTargets);
});

test('this host is told as the loader tells it', () => {
  const h = currentHost();
  assert.equal(h.platform, process.platform);
  assert.equal(h.arch, process.arch);
  if (process.platform === 'linux') assert.ok(h.libc === 'glibc' || h.libc === 'musl');
});

test('the native core and the package are the same version here, and a mismatch is refused with both versions named', () => {
  assert.equal(coreVersion, PACKAGE_VERSION);
  assert.equal(versionMismatch('0.1.0', '0.1.0'), null);
  const why = versionMismatch('0.2.0', '0.1.0', '/n/strata.linux-x64-gnu.node');
  assert.ok(why);
  assert.match(why, /native core is version 0\.1\.0 but the stratamq package is 0\.2\.0 \(core loaded from \/n\/strata\.linux-x64-gnu\.node\)/);
  assert.match(why, /npm install stratamq@0\.2\.0/);
  assert.match(why, /npm run build:native/);
  assert.doesNotThrow(() => assertCoreVersion());
  assert.throws(
    () => assertCoreVersion('9.9.9', '0.1.0'),
    (e: NodeJS.ErrnoException) => e.code === 'ERR_VERSION_MISMATCH' && /9\.9\.9/.test(e.message),
  );
});
