/**
 * The release check (scripts/check-install.mjs, run by .ci/run) must catch a main package that
 * carries what the runtime does not need or lacks what it does; the check's own run installs
 * the real tarballs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

interface Check {
  unwanted(path: string): string | null;
  mainFileProblems(paths: string[], sources: string[]): string[];
}
const check = (await import(new URL('../../../scripts/check-install.mjs', import.meta.url).href)) as Check;

const sources = ['src/index.ts', 'src/cli/main.ts'];
const complete = [
  'package/package.json',
  'package/README.md',
  'package/LICENSE',
  'package/native/binding.js',
  'package/native/binding.d.ts',
  'package/native/package.json',
  'package/dist/src/index.js',
  'package/dist/src/index.d.ts',
  'package/dist/src/cli/main.js',
  'package/dist/src/cli/main.d.ts',
];

test('a complete main package passes', () => {
  assert.deepEqual(check.mainFileProblems(complete, sources), []);
});

test('tests, benches, Rust sources, build output, maps, TypeScript sources and addons are refused', () => {
  for (const p of [
    'package/dist/test/unit/codec.test.js',
    'package/dist/bench/e2e/run.js',
    'package/dist/src/index.js.map',
    'package/native/strata.linux-x64-gnu.node',
    'package/crates/strata-core/src/lib.rs',
    'package/Cargo.toml',
    'package/target/release/libstrata_node.so',
    'package/src/index.ts',
    'package/dist/.tsbuildinfo',
    'package/scripts/release.mjs',
    'package/npm/linux-x64-gnu/package.json',
    'package/notes.txt',
  ]) {
    assert.ok(check.unwanted(p), `${p} should be refused`);
    assert.match(check.mainFileProblems([...complete, p], sources).join('\n'), new RegExp(`carries ${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  }
  for (const p of complete) assert.equal(check.unwanted(p), null, p);
});

test('a missing runtime file is caught: the loader’s package.json, a compiled module, its types', () => {
  for (const missing of ['package/native/package.json', 'package/native/binding.js', 'package/dist/src/cli/main.js', 'package/dist/src/index.d.ts']) {
    assert.deepEqual(
      check.mainFileProblems(
        complete.filter((p) => p !== missing),
        sources,
      ),
      [`lacks ${missing}`],
    );
  }
});
