/**
 * Querying the message log (issue 18, SPEC E2) with the CLI against a real broker process (admin
 * API) and against its stopped store (--offline): a topic filter with a time range (RFC 3339 or
 * ms), an offset range, a limit; JSON lines in time order, each publisher's messages in publish
 * order; and the bad queries — an invalid filter, a reversed range, an unknown offset, a time in
 * the future — refused with a clear error by the CLI (exit 1) and the admin API (400).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BrokerProcess, client, freePort, runCli, sleep, tempDir } from '../helpers.js';
import type { LogEntryJson } from '../../src/msglog/query.js';

const tmp = tempDir('strata-logq-');
const data = join(tmp.dir, 'data');
let broker: BrokerProcess;
let url: string;
let token: string;
const marks: number[] = [];

const run = (args: string[]): ReturnType<typeof runCli> => runCli(args, 30000);
const query = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => run(['log', 'query', ...args, '--url', url, '--data-dir', data]);

function entries(stdout: string): LogEntryJson[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogEntryJson);
}

/** Three phases of 60 messages (3 publishers × 20), a mark between phases. */
before(async () => {
  broker = new BrokerProcess(await freePort(), data, [], { STRATA_ADMIN__PORT: '0', STRATA_LOG__FORMAT: 'json', STRATA_MSGLOG__TOPICS: 'q/#' });
  await broker.start();
  url = broker.adminUrl;
  token = broker.adminToken();
  const pubs = await Promise.all(['pa', 'pb', 'pc'].map((id) => client(broker.url, { clientId: id, protocolVersion: 5 })));
  for (let phase = 0; phase < 3; phase++) {
    await sleep(20);
    marks.push(Date.now());
    await sleep(20);
    for (let i = 0; i < 20; i++) {
      await Promise.all(pubs.map((p, k) => p.publishAsync(`q/${k}/${phase}`, `${p.options.clientId}-${phase}-${i}`, { qos: 1 })));
      await pubs[0]?.publishAsync('other/x', 'not logged', { qos: 1 });
    }
  }
  await sleep(50); // async mode: the last appends land
  marks.push(Date.now());
  await Promise.all(pubs.map((p) => p.endAsync()));
});
after(async () => {
  await broker.stop();
  tmp.remove();
});

test('everything of a filter, in time order; each publisher\'s messages in publish order', async () => {
  const r = await query('--topic', 'q/#', '--json');
  assert.equal(r.code, 0, r.stderr);
  const all = entries(r.stdout);
  assert.equal(all.length, 180);
  for (let i = 1; i < all.length; i++) assert.ok((all[i] as LogEntryJson).ts >= (all[i - 1] as LogEntryJson).ts, 'time order');
  for (const id of ['pa', 'pb', 'pc']) {
    const mine = all.filter((e) => e.publisher === id).map((e) => e.payload);
    const want = [0, 1, 2].flatMap((phase) => Array.from({ length: 20 }, (_v, i) => `${id}-${phase}-${i}`));
    assert.deepEqual(mine, want);
  }
  assert.ok(all.every((e) => e.key === e.publisher && e.qos === 1 && e.topic.startsWith('q/')));
  // A narrower filter; readable lines without --json.
  const one = await query('--topic', 'q/1/+', '--json');
  assert.equal(entries(one.stdout).length, 60);
  const text = await query('--topic', 'q/2/0', '--limit', '2');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^\d{4}-\d\d-\d\dT\S+Z {2}\d+:\d+ {2}q\/2\/0 {2}key=pc {2}qos=1 {2}delivered=0 acked=0 {2}pc-0-0$/m);
  assert.equal(text.stdout.trim().split('\n').length, 2);
  assert.match(text.stderr, /\(2 messages\)/);
});

test('a time range (RFC 3339 or ms, inclusive) and a limit', async () => {
  const [m0, m1, m2, m3] = marks as [number, number, number, number];
  const phase1 = await query('--topic', 'q/#', '--from', new Date(m1).toISOString(), '--to', String(m2), '--json');
  assert.equal(phase1.code, 0, phase1.stderr);
  const got = entries(phase1.stdout);
  assert.equal(got.length, 60);
  assert.ok(got.every((e) => e.topic.endsWith('/1')));
  const tail = entries((await query('--topic', 'q/#', '--from', String(m2), '--json')).stdout);
  assert.equal(tail.length, 60);
  const limited = entries((await query('--topic', 'q/#', '--from', String(m0), '--to', String(m3), '--limit', '7', '--json')).stdout);
  const all = entries((await query('--topic', 'q/#', '--json')).stdout);
  assert.deepEqual(limited, all.slice(0, 7));
});

test('an offset range: from a position (N, or shard:offset,…) and up to another', async () => {
  const all = entries((await query('--topic', 'q/#', '--json')).stdout);
  const pick = all[100] as LogEntryJson;
  const fromHere = entries((await query('--topic', 'q/#', '--from-offset', `${pick.shard}:${pick.offset}`, '--json')).stdout);
  assert.deepEqual(
    fromHere.map((e) => e.id),
    all.filter((e) => e.shard !== pick.shard || e.offset >= pick.offset).map((e) => e.id),
  );
  const upTo = entries((await query('--topic', 'q/#', '--from-offset', '0', '--to-offset', `${pick.shard}:${pick.offset}`, '--json')).stdout);
  assert.deepEqual(
    upTo.map((e) => e.id),
    all.filter((e) => e.shard !== pick.shard || e.offset < pick.offset).map((e) => e.id),
  );
});

test('bad queries get clear errors: CLI exit 1, admin API 400', async () => {
  const cases: [string[], RegExp][] = [
    [['--topic', 'q/#/x'], /invalid topic filter "q\/#\/x"/],
    [['--topic', 'q/#', '--from', String(marks[2]), '--to', String(marks[1])], /reversed range: --to .* is before --from/],
    [['--topic', 'q/#', '--from-offset', '0:99999999'], /unknown offset 0:99999999: shard 0 ends at \d+/],
    [['--topic', 'q/#', '--from-offset', '9:1'], /unknown offset 9:1: the log has 4 shards/],
    [['--topic', 'q/#', '--from', new Date(Date.now() + 3600_000).toISOString()], /is in the future/],
    [['--topic', 'q/#', '--from', 'yesterday'], /"yesterday" is not a time/],
    [['--topic', 'q/#', '--from', '1', '--from-offset', '0'], /not both/],
  ];
  for (const [args, want] of cases) {
    const r = await query(...args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.equal(r.stdout, '');
  }
  const res = await fetch(`${url}/api/v1/log?topic=${encodeURIComponent('a/#/b')}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 400);
  assert.match(((await res.json()) as { message: string }).message, /invalid topic filter/);
  const ok = await fetch(`${url}/api/v1/log?topic=${encodeURIComponent('q/0/0')}&limit=3`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('content-type') ?? '', /application\/x-ndjson/);
  assert.equal((await ok.text()).trim().split('\n').length, 3);
});

test('--offline: the same answers from the stopped broker\'s store', async () => {
  const online = (await query('--topic', 'q/#', '--json')).stdout;
  await broker.stop();
  try {
    const r = await run(['log', 'query', '--topic', 'q/#', '--json', '--offline', '--data-dir', data]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, online);
    const bad = await run(['log', 'query', '--topic', 'q/#', '--from-offset', '1:99999999', '--offline', '--data-dir', data]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown offset/);
  } finally {
    await broker.start();
  }
});
