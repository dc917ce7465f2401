/**
 * The fault matrix (issue 12, item 3): every kind of file the embedded store writes, damaged
 * while the broker is stopped in each of four ways — cut short by 7 bytes, zero-filled,
 * 4 bytes overwritten in the middle, deleted — plus a missing directory. 1,000 QoS 1
 * messages wait for an offline persistent v3.1.1 session; after the damage:
 * - `stratamq ds check` reports the damage (exit 1) without changing a byte;
 * - the broker starts and serves (a fresh publish/subscribe round trip works);
 * - the session gets back every message whose record is intact — exactly those: a damaged
 *   record costs that record, not the rest of its segment;
 * - each loss is reported once in the log with the shard, offsets and record count (a second
 *   restart reports nothing new), and `stratamq ds info` lists it;
 * - damaged files are quarantined (`*.corrupt`), never deleted.
 * The data dir is built once (small segments, so there are sealed segments with indexes) and
 * copied for each case.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { IClientOptions } from 'mqtt';
import { BrokerProcess, client, collect, freePort, quiet, sleep, tempDir, unconnected } from '../helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const N = 1000;
const SUB: IClientOptions = { protocolVersion: 4, clientId: 'fm-sub', clean: false };

const tmp = tempDir('strata-faults-');
const golden = join(tmp.dir, 'golden');
const conf = join(tmp.dir, 'broker.conf');
/** The publisher's shard directory in the golden store. */
let shardDir = '';

after(() => tmp.remove());

/** Every file under `dir` with its bytes (for "check changed nothing"). */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(p, readFileSync(p).toString('base64'));
    }
  };
  walk(dir);
  return out;
}

function files(dir: string, suffix: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(suffix)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** A segment's records: [offset, frame start, frame end] (header 32 bytes, frames [len][crc][body]). */
function frames(seg: string): [number, number, number][] {
  const b = readFileSync(seg);
  const base = Number(b.readBigUInt64LE(8));
  const out: [number, number, number][] = [];
  for (let p = 32; p + 8 <= b.length; ) {
    const len = b.readUInt32LE(p);
    out.push([base + b.readUInt32LE(p + 8), p, p + 8 + len]);
    p += 8 + len;
  }
  return out;
}

function cli(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

type Damage = 'cut' | 'zero' | 'overwrite' | 'delete';
const DAMAGES: Damage[] = ['cut', 'zero', 'overwrite', 'delete'];

/** Damage `path`; returns the byte range hit (for records lost). */
function damage(path: string, how: Damage): [number, number] {
  const b = readFileSync(path);
  const mid = Math.floor(b.length / 2);
  switch (how) {
    case 'cut':
      writeFileSync(path, b.subarray(0, Math.max(0, b.length - 7)));
      return [Math.max(0, b.length - 7), b.length];
    case 'zero':
      writeFileSync(path, Buffer.alloc(b.length));
      return [0, b.length];
    case 'overwrite': {
      // A file shorter than 4 bytes (an empty lock file) gets 4 bytes of garbage.
      const at = b.length < 4 ? 0 : Math.min(mid, b.length - 4);
      const out = b.length < 4 ? Buffer.alloc(4) : b;
      out.writeUInt32LE(0xdeadbeef, at);
      writeFileSync(path, out);
      return [at, at + 4];
    }
    case 'delete':
      rmSync(path);
      return [0, b.length];
  }
}

/** Message numbers (= offsets in the publisher's shard) whose record a damage to segment `seg` costs. */
function lostIn(seg: string, hit: [number, number], how: Damage): number[] {
  const fr = frames(seg);
  if (how === 'delete' || how === 'zero') return fr.map(([o]) => o);
  // A damaged header costs nothing when the index has the segment's base time.
  return fr.filter(([, s, e]) => s < hit[1] && e > hit[0]).map(([o]) => o);
}

interface Case {
  name: string;
  /** The path to damage in a copy of the golden store (relative to the store). */
  target: (dir: string) => string;
  how: Damage | 'rmdir';
  /** Message numbers lost, computed on the golden store before the damage. */
  lost: (dir: string, hit: [number, number]) => number[];
  /** `ds check` finds damage (exit 1); false: only a crash's leftovers or nothing; null: either. */
  checkFinds: boolean | null;
}

const rel = (dir: string, p: string): string => p.slice(dir.length + 1);

function cases(): Case[] {
  const out: Case[] = [];
  const segs = files(shardDir, '.seg').map((p) => rel(golden, p));
  assert.ok(segs.length >= 3, `small segments: ${segs.length}`);
  const active = segs[segs.length - 1] as string;
  const sealed = segs[1] as string;
  const idx = files(shardDir, '.idx').map((p) => rel(golden, p))[1] as string;
  const streams = files(shardDir, 'streams').map((p) => rel(golden, p))[0] as string;
  const segLost = (seg: string, how: Damage) => (dir: string, hit: [number, number]) => lostIn(join(dir, seg), hit, how);
  const none = (): number[] => [];
  assert.ok(existsSync(join(golden, 'meta.seal')), 'a clean stop seals the metadata');
  for (const how of DAMAGES) {
    // A damaged or missing seal only means the next open compares both copies in full.
    out.push({ name: `meta.seal ${how}`, target: (d) => join(d, 'meta.seal'), how, lost: none, checkFinds: false });
    out.push({ name: `LOCK ${how}`, target: (d) => join(d, 'LOCK'), how, lost: none, checkFinds: false });
    out.push({ name: `meta.lock ${how}`, target: (d) => join(d, 'meta.lock'), how, lost: none, checkFinds: false });
    out.push({ name: `STORE ${how}`, target: (d) => join(d, 'STORE'), how, lost: none, checkFinds: true });
    // 4 bytes in the middle of meta.redb may land in a free page: harmless, nothing to find.
    out.push({ name: `meta.redb ${how}`, target: (d) => join(d, 'meta.redb'), how, lost: none, checkFinds: how === 'overwrite' ? null : true });
    // A missing journal is what a store from before the journal looks like: rewritten, no damage.
    out.push({ name: `meta.journal ${how}`, target: (d) => join(d, 'meta.journal'), how, lost: none, checkFinds: how !== 'delete' });
    out.push({ name: `stream table ${how}`, target: (d) => join(d, streams), how, lost: none, checkFinds: false });
    out.push({ name: `index ${how}`, target: (d) => join(d, idx), how, lost: none, checkFinds: false });
    out.push({ name: `sealed segment ${how}`, target: (d) => join(d, sealed), how, lost: segLost(sealed, how), checkFinds: true });
    out.push({
      name: `active segment ${how}`,
      target: (d) => join(d, active),
      how,
      // Cut short, the active segment's last record looks like a torn write: it is lost
      // and reported against the end recorded at the clean stop.
      lost: segLost(active, how),
      checkFinds: true,
    });
  }
  const shard = rel(golden, shardDir);
  out.push({ name: 'shard directory missing', target: (d) => join(d, shard), how: 'rmdir', lost: () => Array.from({ length: N }, (_, i) => i), checkFinds: true });
  const gen = rel(golden, join(shardDir, readdirSync(shardDir).find((n) => n.startsWith('gen-')) as string));
  out.push({ name: 'generation directory missing', target: (d) => join(d, gen), how: 'rmdir', lost: () => Array.from({ length: N }, (_, i) => i), checkFinds: true });
  return out;
}

async function brokerOn(dir: string): Promise<BrokerProcess> {
  const b = new BrokerProcess(await freePort(), dir, ['-c', conf]);
  await b.start();
  return b;
}

/** `store loss` log lines of a broker run. */
function lossLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.includes('"store loss'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

before(async () => {
  writeFileSync(conf, 'durable_storage.messages.n_shards = 2\ndurable_storage.segment_bytes = 8192\n');
  const b = await brokerOn(golden);
  const sub = await client(b.url, SUB);
  await sub.subscribeAsync('fm/#', { qos: 1 });
  await sub.endAsync();
  const pub = await client(b.url, { clientId: 'fm-pub' });
  for (let i = 0; i < N; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, k) => pub.publishAsync(`fm/${(i + k) % 7}`, `${i + k} ${'x'.repeat(60)}`, { qos: 1 })));
  }
  await pub.endAsync();
  await b.stop();
  const shards = readdirSync(golden).filter((n) => n.startsWith('shard-'));
  shardDir = join(golden, shards.find((s) => files(join(golden, s), '.seg').length > 0) as string);
});

describe('fault matrix: each kind of store file damaged while stopped', () => {
  // Built in `before`; the list of cases needs the golden store, so one test walks them.
  test('every case starts, serves, recovers every intact message and reports each loss once', async () => {
    const failures: string[] = [];
    for (const c of cases()) {
      const dir = join(tmp.dir, c.name.replace(/ /g, '-'));
      cpSync(golden, dir, { recursive: true });
      const target = c.target(dir);
      const lostSet =
        c.how === 'rmdir'
          ? c.lost(dir, [0, 0])
          : (() => {
              // What the damage costs is computed on the intact copy, then it is damaged.
              const bytes = readFileSync(target);
              const mid = Math.floor(bytes.length / 2);
              const at = Math.min(mid, Math.max(0, bytes.length - 4));
              const hit: [number, number] = c.how === 'cut' ? [bytes.length - 7, bytes.length] : c.how === 'overwrite' ? [at, at + 4] : [0, bytes.length];
              const lost = c.lost(dir, hit);
              damage(target, c.how);
              return lost;
            })();
      if (c.how === 'rmdir') rmSync(target, { recursive: true });
      try {
        await runCase(c, dir, new Set(lostSet));
      } catch (e) {
        failures.push(`${c.name}: ${(e as Error).message}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    assert.deepEqual(failures, []);
  });
});

async function runCase(c: Case, dir: string, lost: Set<number>): Promise<void> {
  // A stopped store is checked read-only.
  const before = snapshot(dir);
  const check = cli(['ds', 'check', '--data-dir', dir, '-c', conf]);
  assert.deepEqual(snapshot(dir), before, 'ds check changed nothing');
  if (c.checkFinds !== null) assert.equal(check.code, c.checkFinds ? 1 : 0, `ds check exit ${check.code}: ${check.out}`);
  else assert.ok(check.code === 0 || check.code === 1, `ds check exit ${check.code}: ${check.out}`);

  const b = await brokerOn(dir);
  try {
    // Serves: a fresh round trip.
    const probe = await client(b.url, { clientId: 'fm-probe' });
    await probe.subscribeAsync('probe/t', { qos: 1 });
    const echo = collect(probe, 1);
    await probe.publishAsync('probe/t', 'ping', { qos: 1 });
    assert.equal((await echo)[0]?.payload.toString(), 'ping');
    await probe.endAsync();
    // Recovers every intact message for the offline session, exactly those.
    const want = N - lost.size;
    const back = unconnected(b.url, SUB);
    const got = want > 0 ? collect(back, want, 20000) : Promise.resolve([]);
    back.connect();
    const msgs = await got;
    const extra = await quiet(back, 300);
    await back.endAsync();
    const seen = new Set(msgs.map((m) => Number(m.payload.toString().split(' ')[0])));
    assert.equal(extra.length, 0, `more than the ${want} intact messages arrived`);
    for (let i = 0; i < N; i++) {
      if (lost.has(i)) assert.ok(!seen.has(i), `message ${i} was lost, yet delivered`);
      else assert.ok(seen.has(i), `message ${i} is intact but was not delivered`);
    }
    // Each loss reported, with what was lost (damage found by a read is reported within a second).
    const total = (): number => lossLines(b.output).reduce((n, l) => n + ((l.records as number | null) ?? 0), 0);
    for (let t = 0; t < 30 && lost.size > 0 && total() < lost.size; t++) await sleep(100);
    const reported = lossLines(b.output);
    const records = reported.reduce((n, l) => n + ((l.records as number | null) ?? 0), 0);
    if (lost.size > 0) {
      assert.ok(reported.length > 0, 'the loss is reported');
      assert.equal(records, lost.size, `records reported lost: ${JSON.stringify(reported)}`);
      for (const l of reported) {
        assert.equal(typeof l.shard, 'number');
        assert.ok(Array.isArray(l.sessions) && (l.sessions as string[]).includes('fm-sub'), JSON.stringify(l));
      }
    } else {
      assert.equal(records, 0, `nothing lost, yet reported: ${JSON.stringify(reported)}`);
    }
  } finally {
    await b.stop();
  }
  // Reported once: a second start reports nothing new.
  const again = await brokerOn(dir);
  await sleep(100);
  await again.stop();
  assert.deepEqual(lossLines(again.output), [], 'a loss is reported once');
  if (lost.size > 0) {
    const info = cli(['ds', 'info', '--data-dir', dir, '-c', conf]);
    assert.equal(info.code, 0, info.out);
    assert.match(info.out, /lost/, info.out);
  }
  // Quarantined, never deleted.
  if (c.checkFinds && c.how !== 'delete' && c.how !== 'rmdir' && !existsSync(c.target(dir))) {
    assert.ok(existsSync(`${c.target(dir)}.corrupt`), `${c.target(dir)} kept aside`);
  }
}

describe('durable_storage.on_corruption and ds repair', () => {
  /** A copy of the golden store whose sealed segment is damaged in the middle. */
  function damaged(name: string): string {
    const dir = join(tmp.dir, name);
    cpSync(golden, dir, { recursive: true });
    const sealed = files(join(dir, shardDir.slice(golden.length + 1)), '.seg')[1] as string;
    damage(sealed, 'overwrite');
    rmSync(sealed.replace(/\.seg$/, '.idx'));
    return dir;
  }

  test('refuse: the broker does not start on a damaged store, names the damage, and changes nothing', async () => {
    const dir = damaged('refuse');
    const refuse = join(tmp.dir, 'refuse.conf');
    writeFileSync(refuse, `${readFileSync(conf, 'utf8')}durable_storage.on_corruption = refuse\n`);
    const before = snapshot(dir);
    const b = new BrokerProcess(await freePort(), dir, ['-c', refuse]);
    await assert.rejects(b.start(), (e: Error) => {
      assert.match(e.message, /exited with 1/);
      assert.match(e.message, /needs repair \(durable_storage.on_corruption = refuse/);
      assert.match(e.message, /record\(s\) lost/);
      return true;
    });
    assert.deepEqual(snapshot(dir), before, 'nothing changed');
    rmSync(dir, { recursive: true });
  });

  test('ds repair repairs a stopped store without starting a broker; the broker then starts clean', async () => {
    const dir = damaged('repair');
    const r = cli(['ds', 'repair', '--data-dir', dir, '-c', conf]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /shard \d+: offsets \d+\.\.\d+ \(1 messages\) lost/, r.out);
    assert.equal(cli(['ds', 'check', '--data-dir', dir, '-c', conf]).code, 0, 'repaired');
    const b = await brokerOn(dir);
    const back = unconnected(b.url, SUB);
    const got = collect(back, N - 1, 20000);
    back.connect();
    assert.equal((await got).length, N - 1);
    await back.endAsync();
    await b.stop();
    assert.deepEqual(lossLines(b.output), [], 'reported by the repair, not again');
    rmSync(dir, { recursive: true });
  });

  test('ds check refuses a store in use and a directory without a store (exit 2)', async () => {
    const dir = join(tmp.dir, 'inuse');
    cpSync(golden, dir, { recursive: true });
    const b = await brokerOn(dir);
    const inUse = cli(['ds', 'check', '--data-dir', dir, '-c', conf]);
    await b.stop();
    assert.equal(inUse.code, 2, inUse.out);
    assert.match(inUse.out, /in use/);
    const none = cli(['ds', 'check', '--data-dir', join(tmp.dir, 'nothing-here'), '-c', conf]);
    assert.equal(none.code, 2, none.out);
    rmSync(dir, { recursive: true });
  });
});
