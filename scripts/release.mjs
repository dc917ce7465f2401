#!/usr/bin/env node
// Packs a release into release/: the `stratamq` package (TypeScript compiled afresh, the
// generated loader, optionalDependencies on every native package at the one version) and one
// `@stratamq/native-<target>` package per native addon found.
//
//   node scripts/release.mjs --host             the host's addon, native/strata.<target>.node
//                                               (npm run release:local builds it first)
//   node scripts/release.mjs --artifacts DIR    every target's addon, found under DIR (release.yml);
//                                               fails unless all of package.json napi.targets are there
//
// Writes release/stratamq-<version>.tgz and release/stratamq-native-<target>-<version>.tgz (npm
// pack's names). What ends up in them is package.json `files` (main) and npm/<target>/package.json
// `files` (native); scripts/check-install.mjs checks both, installed as a user installs them.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'release');
const STAGE = join(OUT, '.stage');

/** napi-rs' directory name for a target triple (npm/<dir>, strata.<dir>.node). */
export const TARGET_DIRS = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
};

/** The host's target directory name, as napi build --platform names its output. */
export function hostTargetDir() {
  if (process.platform === 'linux') {
    const glibc = process.report.getReport().header.glibcVersionRuntime;
    return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  if (process.platform === 'win32') return `win32-${process.arch}-msvc`;
  return `${process.platform}-${process.arch}`;
}

function readJson(p) {
  return JSON.parse(readFileSync(p, 'utf8'));
}

/** `npm pack` of a staged directory into release/; returns the tarball's path. */
function pack(dir) {
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', OUT], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], shell: process.platform === 'win32' });
  const [info] = JSON.parse(out);
  return join(OUT, info.filename);
}

function main() {
  const args = process.argv.slice(2);
  const host = args.includes('--host');
  const ai = args.indexOf('--artifacts');
  const artifacts = ai >= 0 ? resolve(args[ai + 1] ?? '') : null;
  if (host === (artifacts !== null)) {
    console.error('usage: release.mjs --host | --artifacts DIR');
    process.exit(2);
  }

  const pkg = readJson(join(ROOT, 'package.json'));
  const { version } = pkg;
  const targets = pkg.napi.targets.map((t) => {
    const dir = TARGET_DIRS[t];
    if (!dir) throw new Error(`release.mjs: no directory name known for target ${t} (TARGET_DIRS)`);
    const npmPkg = readJson(join(ROOT, 'npm', dir, 'package.json'));
    if (npmPkg.version !== version) throw new Error(`npm/${dir}/package.json is ${npmPkg.version}, package.json ${version}: run npm run version:set -- ${version}`);
    return { triple: t, dir, name: npmPkg.name, file: `${pkg.napi.binaryName}.${dir}.node` };
  });
  const loader = readFileSync(join(ROOT, 'native', 'binding.js'), 'utf8');
  if (!loader.includes(`expected ${version} but got`)) throw new Error(`native/binding.js was generated for another version than ${version}: run npm run build:native`);

  // Which addons go out: the host's, or every target's from the CI artifacts.
  const found = new Map();
  if (host) {
    const dir = hostTargetDir();
    const t = targets.find((x) => x.dir === dir);
    if (!t) throw new Error(`the host (${dir}) is not one of package.json napi.targets`);
    const p = join(ROOT, 'native', t.file);
    if (!existsSync(p)) throw new Error(`${p} missing: run npm run build:native`);
    found.set(t.dir, p);
  } else {
    const walk = (d) => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        if (statSync(p).isDirectory()) walk(p);
        else {
          const t = targets.find((x) => x.file === n);
          if (t) found.set(t.dir, p);
        }
      }
    };
    walk(artifacts);
    const missing = targets.filter((t) => !found.has(t.dir)).map((t) => t.triple);
    if (missing.length > 0) throw new Error(`no addon in ${artifacts} for ${missing.join(', ')}`);
  }

  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(STAGE, { recursive: true });

  // The main package: package.json (+ optionalDependencies), README, LICENSE, the generated
  // loader, and the TypeScript of src/ compiled afresh (no stale outputs, no source maps).
  const main = join(STAGE, 'stratamq');
  mkdirSync(join(main, 'native'), { recursive: true });
  // `prepare` builds from source in a clone; npm does not run it for a tarball or registry
  // install, but lists it as an install script the user has to allow: it goes.
  const optionalDependencies = Object.fromEntries(targets.map((t) => [t.name, version]));
  const { prepare: _prepare, ...scripts } = pkg.scripts;
  writeFileSync(join(main, 'package.json'), `${JSON.stringify({ ...pkg, scripts, optionalDependencies }, null, 2)}\n`);
  for (const f of ['README.md', 'LICENSE']) copyFileSync(join(ROOT, f), join(main, f));
  for (const f of readdirSync(join(ROOT, 'native'))) if (!f.endsWith('.node')) cpSync(join(ROOT, 'native', f), join(main, 'native', f));
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.release.json'), '--outDir', join(main, 'dist')], { cwd: ROOT, stdio: 'inherit' });
  const written = [pack(main)];

  // One package per addon: npm/<target>/ (as napi create-npm-dirs generates it) + the addon.
  for (const t of targets) {
    const src = found.get(t.dir);
    if (!src) continue;
    const d = join(STAGE, t.dir);
    cpSync(join(ROOT, 'npm', t.dir), d, { recursive: true, filter: (p) => !p.endsWith('.node') });
    copyFileSync(src, join(d, t.file));
    written.push(pack(d));
  }
  rmSync(STAGE, { recursive: true, force: true });
  for (const w of written) console.log(`${w} (${statSync(w).size} bytes)`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (e) {
    console.error(`release: ${e.message}`);
    process.exit(1);
  }
}
