#!/usr/bin/env node
// Installs the release as a user does, and fails if it does not work (issue 19). Run by .ci/run.
//
//   1. `npm run release:local`: build the host's addon, lay out its native package, pack both
//      (release/stratamq-<v>.tgz, release/stratamq-native-<target>-<v>.tgz);
//   2. list both tarballs (every file and its size) and fail on a file the runtime needs that is
//      missing, or one it does not need (tests, benches, Rust sources, build output, maps…);
//   3. in an empty directory, `npm install` the two tarballs with PATH stripped of cargo and
//      rustc (nothing may be built), then `npx stratamq --version`, `stratamq config check` of
//      deploy/stratamq.conf, `npx stratamq start --port 0`
//      with a message round trip through mosquitto_pub/mosquitto_sub, the admin API's /health
//      and an MQTT CONNECT over WebSocket, and `require('stratamq')` / `import('stratamq')`
//      from a small app that runs a broker.
//
// Options: --no-build (check the tarballs already in release/), --clean-cache (install with an
// empty npm cache of its own), --keep (keep the directory it installed into).
// Network: the tarballs' runtime dependencies are installed with --prefer-offline, so from
// npm's cache where it has them (the repository's `npm install` fills it with their tarballs),
// but npm still asks the registry for their metadata (a lockfile-driven install caches
// tarballs, not metadata) and for the native packages of other platforms (not published yet:
// skipped as failed optional dependencies). It needs the npm registry, not cargo.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { hostTargetDir } from './release.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const started = Date.now();
const problems = [];
const fail = (msg) => problems.push(msg);
const step = (msg) => console.log(`\n== ${msg} (${((Date.now() - started) / 1000).toFixed(1)} s)`);

/** The files of a .tgz: [{ path, size, data }] (ustar, as npm pack writes it). */
export function tarEntries(file) {
  const buf = gunzipSync(readFileSync(file));
  const out = [];
  for (let off = 0; off + 512 <= buf.length; ) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a, b) => h.subarray(a, b).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(str(124, 136).trim() || '0', 8);
    const prefix = str(345, 500);
    const name = prefix ? `${prefix}/${str(0, 100)}` : str(0, 100);
    const type = str(156, 157);
    if (type === '0' || type === '') out.push({ path: name, size, data: buf.subarray(off + 512, off + 512 + size) });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

function kb(n) {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(2)} MB` : `${(n / 1024).toFixed(1)} kB`;
}

function listTarball(file) {
  const entries = tarEntries(file);
  console.log(`${relative(ROOT, file)}: ${entries.length} files, ${kb(statSync(file).size)} packed, ${kb(entries.reduce((s, e) => s + e.size, 0))} unpacked`);
  for (const e of [...entries].sort((a, b) => a.path.localeCompare(b.path))) console.log(`  ${String(e.size).padStart(9)}  ${e.path}`);
  return entries;
}

function readTarFile(file, path) {
  return tarEntries(file).find((e) => e.path === path)?.data.toString('utf8') ?? null;
}

/** Why a file has no business in the main package (null: it may be there). */
export function unwanted(path) {
  const p = path.replace(/^package\//, '');
  if (/\.map$/.test(p)) return 'a source map (its sources are not shipped)';
  if (/\.node$/.test(p)) return 'a native addon (those go in the per-target packages)';
  if (/(^|\/)(test|tests|bench|benches)\//.test(p)) return 'tests or benches';
  if (/(^|\/)(crates|target|npm|release|node_modules|scripts|deploy|docs|\.github|\.ci)\//.test(p)) return 'not part of the runtime';
  if (/\.rs$|(^|\/)Cargo\.(toml|lock)$|(^|\/)rust-toolchain/.test(p)) return 'Rust sources or manifests';
  if (/\.tsbuildinfo$|(^|\/)tsconfig[^/]*\.json$/.test(p)) return 'build metadata';
  if (/\.ts$/.test(p) && !/\.d\.ts$/.test(p)) return 'TypeScript source';
  if (!/^(package\.json|README\.md|LICENSE|native\/(binding\.js|binding\.d\.ts|package\.json)|dist\/src\/.+\.(js|d\.ts))$/.test(p)) return 'not in the package’s list of runtime files';
  return null;
}

function srcFiles(dir = join(ROOT, 'src'), out = []) {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) srcFiles(p, out);
    else if (p.endsWith('.ts')) out.push(relative(ROOT, p));
  }
  return out;
}

/**
 * What is wrong with the main package's file list: a file it carries and should not, or one the
 * runtime needs (the compiled .js and .d.ts of every src/ file, the loader) that it lacks.
 */
export function mainFileProblems(paths, sources) {
  const out = [];
  for (const p of paths) {
    const why = unwanted(p);
    if (why) out.push(`carries ${p}: ${why}`);
  }
  const need = ['package/package.json', 'package/README.md', 'package/LICENSE', 'package/native/binding.js', 'package/native/binding.d.ts', 'package/native/package.json'];
  for (const s of sources) {
    const base = `package/dist/${s.replace(/\.ts$/, '')}`;
    need.push(`${base}.js`, `${base}.d.ts`);
  }
  const have = new Set(paths);
  for (const n of need) if (!have.has(n)) out.push(`lacks ${n}`);
  return out;
}

function checkMain(file, version, host) {
  const entries = listTarball(file);
  const paths = new Set(entries.map((e) => e.path));
  for (const p of mainFileProblems([...paths], srcFiles())) fail(`${relative(ROOT, file)} ${p}`);
  const manifest = JSON.parse(readTarFile(file, 'package/package.json') ?? '{}');
  if (manifest.version !== version) fail(`packed package.json version ${manifest.version}, expected ${version}`);
  for (const f of [manifest.main, manifest.types, ...Object.values(manifest.bin ?? {})]) if (!f || !paths.has(`package/${f.replace(/^\.\//, '')}`)) fail(`packed package.json points at ${f}, not in the tarball`);
  if (manifest.scripts?.prepare) fail('packed package.json still has a prepare script (npm lists it as an install script to allow)');
  const expected = {};
  for (const d of readdirSync(join(ROOT, 'npm'))) {
    const p = JSON.parse(readFileSync(join(ROOT, 'npm', d, 'package.json'), 'utf8'));
    expected[p.name] = version;
    if (p.version !== version) fail(`npm/${d}/package.json is version ${p.version}, expected ${version}`);
  }
  if (JSON.stringify(Object.entries(manifest.optionalDependencies ?? {}).sort()) !== JSON.stringify(Object.entries(expected).sort())) {
    fail(`packed optionalDependencies ${JSON.stringify(manifest.optionalDependencies)} are not every native package at ${version}: ${JSON.stringify(expected)}`);
  }
  if (!(readTarFile(file, 'package/native/binding.js') ?? '').includes(`expected ${version} but got`)) fail(`the packed native/binding.js was generated for another version than ${version}`);
  if (!(`@stratamq/native-${host}` in expected)) fail(`no native package for the host (${host}) in npm/`);
}

function checkNative(file, version, host) {
  const entries = listTarball(file);
  const want = JSON.parse(readFileSync(join(ROOT, 'npm', host, 'package.json'), 'utf8'));
  const manifest = JSON.parse(readTarFile(file, 'package/package.json') ?? '{}');
  const allowed = new Set(['package/package.json', 'package/README.md', `package/${want.main}`]);
  for (const e of entries) if (!allowed.has(e.path)) fail(`${relative(ROOT, file)} carries ${e.path}: only its addon belongs there`);
  for (const a of allowed) if (!entries.some((e) => e.path === a)) fail(`${relative(ROOT, file)} lacks ${a}`);
  const addon = entries.find((e) => e.path === `package/${want.main}`);
  if (addon && addon.size < 100_000) fail(`${want.main} is only ${addon.size} bytes`);
  if (manifest.name !== want.name || manifest.version !== version) fail(`packed ${manifest.name}@${manifest.version}, expected ${want.name}@${version}`);
  for (const k of ['os', 'cpu', 'libc', 'main']) if (JSON.stringify(manifest[k]) !== JSON.stringify(want[k])) fail(`packed ${k} ${JSON.stringify(manifest[k])}, npm/${host} says ${JSON.stringify(want[k])}`);
}

/** PATH without the directories holding cargo, rustc or rustup. */
function pathWithoutRust() {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d && !['cargo', 'rustc', 'rustup'].some((x) => existsSync(join(d, x)) || existsSync(join(d, `${x}.exe`))));
  if (!dirs.includes(dirname(process.execPath))) throw new Error(`node (${process.execPath}) sits next to cargo or rustc: cannot strip them from PATH`);
  return dirs.join(delimiter);
}

function run(cmd, argv, opts) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 120_000, ...opts });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, stdout: r.stdout ?? '', error: r.error };
}

/** Start `npx stratamq start` and resolve with the child and its 'listening' log line. */
function startBroker(cwd, env) {
  const child = spawn('npx', ['--no', '--', 'stratamq', 'start', '--port', '0', '--host', '127.0.0.1', '--data-dir', 'data'], {
    cwd,
    env: { ...env, STRATA_LISTENER__WS__PORT: '0', STRATA_ADMIN__PORT: '0', STRATA_LOG__FORMAT: 'json', STRATA_LOG__LEVEL: 'info' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let listening = null;
  child.stderr.on('data', (b) => (err += b));
  const exited = new Promise((r) => child.on('exit', r));
  return new Promise((resolveStart, reject) => {
    const t = setTimeout(() => reject(new Error(`no 'listening' line within 30 s; stdout: ${out}; stderr: ${err}`)), 30_000);
    void exited.then((code) => {
      clearTimeout(t);
      if (!listening) reject(new Error(`npx stratamq start exited (${code}); stdout: ${out}; stderr: ${err}`));
    });
    child.stdout.on('data', (b) => {
      out += b;
      if (listening) return;
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const l = JSON.parse(line);
          if (l.msg === 'listening') {
            clearTimeout(t);
            listening = l;
            resolveStart({ child, listening: l, exited, logs: () => out, errs: () => err });
            return;
          }
        } catch {
          // a partial line
        }
      }
    });
  });
}

async function roundTrip(port) {
  const topic = `strata/check/${process.pid}`;
  const payload = `hello ${Date.now()}`;
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-q', '1', '-C', '1', '-W', '15'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let code = null;
  sub.stdout.on('data', (b) => (out += b));
  sub.stderr.on('data', (b) => (out += b));
  const exited = new Promise((r) => sub.on('close', (c) => r((code = c))));
  // mosquitto_sub's output is block-buffered into a pipe, so its SUBACK cannot be waited for:
  // publish (QoS 1) until it has received one and exited.
  for (let i = 0; code === null && i < 50; i++) {
    const pub = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-q', '1', '-m', payload]);
    if (pub.status !== 0) throw new Error(`mosquitto_pub failed: ${pub.out}`);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 200))]);
  }
  await exited;
  if (code !== 0 || out !== `${payload}\n`) throw new Error(`mosquitto_sub did not receive "${payload}" (exit ${code}): ${out}`);
  return payload;
}

/** An MQTT 3.1.1 CONNECT over WebSocket (`ws` as installed with stratamq), expecting CONNACK 0. */
function wsConnect(dir, port) {
  const WebSocket = createRequire(join(dir, 'package.json'))('ws');
  const id = Buffer.from('ws-check');
  const body = Buffer.concat([Buffer.from([0, 4]), Buffer.from('MQTT'), Buffer.from([4, 2, 0, 30, 0, id.length]), id]);
  return new Promise((res, rej) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, 'mqtt');
    const t = setTimeout(() => rej(new Error('no CONNACK over WebSocket within 10 s')), 10_000);
    ws.on('open', () => ws.send(Buffer.concat([Buffer.from([0x10, body.length]), body])));
    ws.on('message', (d) => {
      clearTimeout(t);
      ws.close();
      const b = Buffer.from(d);
      if (b[0] === 0x20 && b[3] === 0) res();
      else rej(new Error(`unexpected answer over WebSocket: ${b.toString('hex')}`));
    });
    ws.on('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
  });
}

/** The app's body: a broker through the library API, a message from mosquitto_pub seen as an event. */
const APP = `
  const { execFile } = require('node:child_process');
  async function main(strata, kind) {
    const broker = strata.createBroker({ port: 0, host: '127.0.0.1', wsPort: null, dataDir: 'app-data-' + kind, config: { 'admin.port': -1, 'log.level': 'silent' } });
    const seen = new Promise((resolve) => broker.on('message.publish', (client, msg) => { if (msg.topic === 'app/' + kind) resolve(String(msg.payload)); }));
    const { tcp } = await broker.listen();
    // Not execFileSync: the broker runs on this process's event loop.
    await new Promise((resolve, reject) => execFile('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tcp), '-t', 'app/' + kind, '-q', '1', '-m', 'from ' + kind], (e) => (e ? reject(e) : resolve())));
    const payload = await Promise.race([seen, new Promise((_, rej) => setTimeout(() => rej(new Error('no message.publish event')), 10000))]);
    await broker.close();
    console.log(JSON.stringify({ kind, coreVersion: strata.coreVersion, payload }));
  }
`;

async function main() {
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
  const host = hostTargetDir();
  console.log(`check-install: stratamq ${version} for ${host}, Node.js ${process.version}, npm ${run('npm', ['--version']).stdout.trim()}`);
  if (!args.includes('--no-build')) {
    step('npm run release:local');
    execFileSync('npm', ['run', 'release:local'], { cwd: ROOT, stdio: 'inherit' });
  }
  const mainTgz = join(ROOT, 'release', `stratamq-${version}.tgz`);
  const nativeTgz = join(ROOT, 'release', `stratamq-native-${host}-${version}.tgz`);
  for (const f of [mainTgz, nativeTgz]) if (!existsSync(f)) throw new Error(`${f} missing: run npm run release:local`);

  step('the tarballs');
  checkMain(mainTgz, version, host);
  checkNative(nativeTgz, version, host);
  if (problems.length > 0) return;

  const dir = mkdtempSync(join(tmpdir(), 'stratamq-install-'));
  try {
    const env = { ...process.env, PATH: pathWithoutRust() };
    for (const k of Object.keys(env)) if (/^(CARGO|RUSTUP|RUSTC|STRATA_|npm_)/i.test(k)) delete env[k];
    if (args.includes('--clean-cache')) env.npm_config_cache = join(dir, '.npm-cache');
    const which = run('sh', ['-c', 'command -v cargo || command -v rustc'], { env });
    if (which.status === 0) throw new Error(`cargo or rustc still on the stripped PATH: ${which.out}`);
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'stratamq-install-check', version: '1.0.0', private: true }, null, 2)}\n`);

    step(`npm install the two tarballs in ${dir} (PATH without cargo and rustc)`);
    const inst = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', mainTgz, nativeTgz], { cwd: dir, env });
    console.log(inst.out.trim());
    if (inst.status !== 0) throw new Error('npm install failed');
    if (/EBADENGINE/.test(inst.out)) fail(`a runtime dependency does not support Node ${process.version} (EBADENGINE above)`);
    const installed = join(dir, 'node_modules', 'stratamq');
    const built = readdirSync(join(installed, 'native')).filter((f) => f.endsWith('.node'));
    if (built.length > 0) fail(`node_modules/stratamq/native holds ${built.join(', ')}: something was built at install`);
    const natives = readdirSync(join(dir, 'node_modules', '@stratamq'));
    if (JSON.stringify(natives) !== JSON.stringify([`native-${host}`])) fail(`node_modules/@stratamq holds ${natives.join(', ')}, expected native-${host} only`);

    step('npx stratamq --version');
    const v = run('npx', ['--no', '--', 'stratamq', '--version'], { cwd: dir, env });
    console.log(v.out.trim());
    const addon = join(dir, 'node_modules', '@stratamq', `native-${host}`, `strata.${host}.node`);
    if (v.status !== 0 || v.stdout !== `stratamq ${version}\nnative core ${version} (${addon})\n`) fail(`npx stratamq --version printed ${JSON.stringify(v.out)}`);

    step('npx stratamq config check deploy/stratamq.conf (the example config of deploy/stratamq.service)');
    const conf = run('npx', ['--no', '--', 'stratamq', 'config', 'check', join(ROOT, 'deploy', 'stratamq.conf')], { cwd: dir, env });
    console.log(conf.out.trim());
    if (conf.status !== 0) fail(`deploy/stratamq.conf does not pass stratamq config check: ${conf.out}`);

    step('npx stratamq start --port 0 (WebSocket and admin API on ephemeral ports too)');
    const b = await startBroker(dir, env);
    const { tcp, ws, admin } = b.listening;
    console.log(`listening: tcp ${tcp}, ws ${ws}, admin ${admin}`);
    try {
      console.log(`mosquitto_pub → mosquitto_sub (QoS 1): received "${await roundTrip(tcp)}"`);
      const health = await fetch(`http://127.0.0.1:${admin}/health`);
      console.log(`GET /health: ${health.status}`);
      if (health.status !== 200) fail(`/health answered ${health.status}`);
      await wsConnect(dir, ws);
      console.log('MQTT CONNECT over WebSocket: CONNACK 0');
    } finally {
      // SIGTERM to npx and the broker it runs (their own process group).
      process.kill(-b.child.pid, 'SIGTERM');
      await b.exited;
    }
    if (!/"msg":"shutting down"/.test(b.logs())) fail(`the broker did not log a clean shutdown on SIGTERM: ${b.logs()} ${b.errs()}`);

    step("require('stratamq') and import('stratamq') from a small app");
    writeFileSync(join(dir, 'app.cjs'), `${APP}\nmain(require('stratamq'), 'cjs').catch((e) => { console.error(e); process.exit(1); });\n`);
    writeFileSync(join(dir, 'app.mjs'), `import { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);\n${APP}\nawait main(await import('stratamq'), 'esm');\n`);
    for (const [file, kind] of [
      ['app.cjs', 'cjs'],
      ['app.mjs', 'esm'],
    ]) {
      const r = run(process.execPath, [file], { cwd: dir, env });
      console.log(`node ${file}: ${r.out.trim()}`);
      const want = JSON.stringify({ kind, coreVersion: version, payload: `from ${kind}` });
      if (r.status !== 0 || r.stdout.trim() !== want) fail(`node ${file} printed ${JSON.stringify(r.out)}, expected ${want}`);
    }
  } finally {
    if (args.includes('--keep')) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (problems.length > 0) {
    console.error(`\ncheck-install FAILED (${secs} s):`);
    for (const p of problems) console.error(`  - ${p}`);
    process.exit(1);
  }
  console.log(`\ncheck-install: OK (${secs} s)`);
}
