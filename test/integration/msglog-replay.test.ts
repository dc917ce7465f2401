/**
 * Replaying the message log (issue 18, SPEC E2) with the CLI against a real broker process and a
 * real MQTT.js subscriber: 100 000 logged messages re-published under a new prefix arrive complete
 * and in order; a rate-limited replay shows its progress, stops on Ctrl-C (SIGINT) after its batch
 * in progress and resumes from its --state file with nothing lost or repeated; the admin API runs,
 * lists and stops replays.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { BrokerProcess, cliEnv, client, freePort, runCli, sleep, tempDir } from '../helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const tmp = tempDir('strata-replay-');
const data = join(tmp.dir, 'data');
let broker: BrokerProcess;
let url: string;
let token: string;
const N = 100_000;
/** QoS 1 messages on q1/x. */
const Q1 = 10_000;

const run = (args: string[]): ReturnType<typeof runCli> => runCli([...args, '--url', url, '--data-dir', data], 120000);

async function logged(): Promise<number> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  const m = /^stratamq_msglog_logged_total (\d+)/m.exec(await res.text());
  return Number(m?.[1] ?? 0);
}

/** Payloads a subscriber receives, in arrival order. */
function recorder(c: MqttClient): string[] {
  const got: string[] = [];
  c.on('message', (_t, p) => got.push(p.toString()));
  return got;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

before(async () => {
  broker = new BrokerProcess(await freePort(), data, [], { STRATA_ADMIN__PORT: '0', STRATA_LOG__FORMAT: 'json', STRATA_MSGLOG__TOPICS: 'src/#,small/#,q1/#' });
  await broker.start();
  url = broker.adminUrl;
  token = broker.adminToken();
  // 100 000 messages from one publisher (one shard: one total order), QoS 0 in a burst, then 10 000 on small/.
  const pub = await client(broker.url, { clientId: 'replay-src' });
  for (let i = 0; i < N; i++) pub.publish(`src/${i % 7}`, String(i), { qos: 0 });
  for (let i = 0; i < 10_000; i++) pub.publish('small/x', String(i), { qos: 0 });
  await pub.publishAsync('small/x', 'flush', { qos: 1 }); // everything before it was read
  await Promise.all(Array.from({ length: Q1 }, (_, i) => pub.publishAsync('q1/x', String(i), { qos: 1 })));
  await until(async () => (await logged()) === N + 10_001 + Q1, 'the log to hold everything');
  await pub.endAsync();
});
after(async () => {
  await broker.stop();
  tmp.remove();
});

test('a replay of 100 000 messages under a new prefix arrives complete and in order', async () => {
  const sub = await client(broker.url, { clientId: 'replay-sub' });
  await sub.subscribeAsync('again/#', { qos: 1 });
  const got = recorder(sub);
  const t0 = Date.now();
  const r = await run(['log', 'replay', '--topic', 'src/#', '--to-prefix', 'again/', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { state: string; sent: number; total: number };
  assert.equal(summary.state, 'done');
  assert.equal(summary.sent, N);
  assert.equal(summary.total, N);
  await until(() => got.length >= N, `${N} messages (have ${got.length})`);
  const ms = Date.now() - t0;
  assert.equal(got.length, N);
  for (let i = 0; i < N; i++) if (got[i] !== String(i)) assert.fail(`message ${i} is ${got[i]}`);
  await sleep(200);
  assert.equal(got.length, N, 'nothing more');
  process.stdout.write(`# replayed ${N} messages in ${ms} ms (${Math.round((N * 1000) / ms)} msg/s)\n`);
  await sub.endAsync();
});

test('a QoS 1 replay at full speed keeps pace with a clean subscriber: held like a fast publisher, nothing dropped from its in-memory queue', async () => {
  const dropped = async (): Promise<number> => {
    const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    return Number(/^stratamq_messages_dropped_total\{reason="queue_full"\} (\d+)/m.exec(await res.text())?.[1] ?? NaN);
  };
  const before = await dropped();
  // A clean session: its queue is held in memory, bounded by mqtt.max_queued_in_memory (1,000);
  // the replay reads 1,000 messages a batch, far faster than a window (128) a round trip.
  const sub = await client(broker.url, { clientId: 'q1-sub' });
  await sub.subscribeAsync('q1again/#', { qos: 1 });
  const got = recorder(sub);
  const r = await run(['log', 'replay', '--topic', 'q1/#', '--to-prefix', 'q1again/', '--json']);
  assert.equal(r.code, 0, r.stderr);
  await until(() => got.length >= Q1, `${Q1} messages (have ${got.length})`, 30000).catch(() => undefined);
  assert.equal(await dropped(), before, 'nothing dropped from the subscriber\'s queue');
  assert.deepEqual(
    got,
    Array.from({ length: Q1 }, (_, i) => String(i)),
  );
  await sub.endAsync();
});

test('rate-limited, with progress; Ctrl-C stops it and --state resumes it: nothing lost, nothing twice', async () => {
  const sub = await client(broker.url, { clientId: 'resume-sub' });
  await sub.subscribeAsync('resumed/#', { qos: 1 });
  const got = recorder(sub);
  const state = join(tmp.dir, 'replay.state');
  const args = ['log', 'replay', '--topic', 'small/#', '--to-prefix', 'resumed/', '--rate', '4000', '--state', state, '--url', url, '--data-dir', data];
  const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await until(() => got.length >= 3000, 'some of the replay');
  const t = Date.now();
  child.kill('SIGINT');
  assert.equal(await exited, 0, stderr);
  assert.ok(Date.now() - t < 3000);
  assert.match(stderr, /messages \| \d+ msg\/s \| ETA/, 'progress: messages, rate, ETA');
  assert.match(stderr, /stopped after \d+ messages; resume with the same command with --state/);
  const saved = JSON.parse(readFileSync(state, 'utf8')) as { sent: number; done: boolean; position: string };
  assert.equal(saved.done, false);
  assert.ok(saved.sent >= 3000 && saved.sent < 10_001, String(saved.sent));
  await sleep(200);
  assert.equal(got.length, saved.sent, 'what was replayed before the stop is what the state file says');
  // The rate: 4000/s at most (a little slack for timer granularity).
  const rateSeen = /(\d+) msg\/s/g;
  for (let m = rateSeen.exec(stderr); m; m = rateSeen.exec(stderr)) assert.ok(Number(m[1]) <= 4800, `rate ${m[1]}`);
  const again = await run(args.slice(0, -4));
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /resuming from \d+:\d+/);
  await until(() => got.length >= 10_001, 'the rest');
  await sleep(200);
  assert.equal(got.length, 10_001);
  assert.deepEqual(got, [...Array.from({ length: 10_000 }, (_v, i) => String(i)), 'flush']);
  assert.equal((JSON.parse(readFileSync(state, 'utf8')) as { done: boolean; sent: number }).done, true);
  const done = await run(args.slice(0, -4));
  assert.match(done.stderr, /is complete \(10001 messages\); nothing to do/);
  await sub.endAsync();
});

test('admin API: start, list, progress and stop a replay; a bad one is a 400', async () => {
  const auth = { authorization: `Bearer ${token}` };
  const h = { ...auth, 'content-type': 'application/json' };
  const bad = await fetch(`${url}/api/v1/log/replays`, { method: 'POST', headers: h, body: JSON.stringify({ topic: 'small/#', fromOffset: '0:999999999' }) });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { message: string }).message, /unknown offset/);
  // A prefix that would make topic names no client may publish to: wildcards, U+0000, a `$` topic.
  for (const toPrefix of ['x/#/', 'x/+/', 'x\u0000', '$SYS/']) {
    const refused = await fetch(`${url}/api/v1/log/replays`, { method: 'POST', headers: h, body: JSON.stringify({ topic: 'small/#', toPrefix }) });
    assert.equal(refused.status, 400, JSON.stringify(toPrefix));
    assert.match(((await refused.json()) as { message: string }).message, /prefix/);
  }
  const res = await fetch(`${url}/api/v1/log/replays`, { method: 'POST', headers: h, body: JSON.stringify({ topic: 'small/#', toPrefix: 'api/', rate: 1000 }) });
  assert.equal(res.status, 201);
  const p = (await res.json()) as { id: string; state: string; total: number | null };
  assert.equal(p.state, 'running');
  assert.ok(p.total === null || p.total === 10_001, 'counted, or still being counted');
  await sleep(300);
  const progress = (await (await fetch(`${url}/api/v1/log/replays/${p.id}`, { headers: auth })).json()) as { total: number | null; sent: number; etaSeconds: number | null };
  assert.equal(progress.total, 10_001, 'the total, counted a slice at a time');
  assert.ok(progress.sent > 0 && progress.etaSeconds !== null && progress.etaSeconds > 0);
  const list = (await (await fetch(`${url}/api/v1/log/replays`, { headers: auth })).json()) as { id: string }[];
  assert.ok(list.some((x) => x.id === p.id));
  const stopped = (await (await fetch(`${url}/api/v1/log/replays/${p.id}`, { method: 'DELETE', headers: auth })).json()) as { state: string; sent: number; position: string };
  assert.equal(stopped.state, 'stopped');
  assert.ok(stopped.sent > 0 && stopped.sent < 10_001);
  assert.match(stopped.position, /^0:\d+,1:\d+,2:\d+,3:\d+$/);
  const missing = await fetch(`${url}/api/v1/log/replays/nope`, { headers: auth });
  assert.equal(missing.status, 404);
});
