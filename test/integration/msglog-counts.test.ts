/**
 * The message log's status counts per entry (issue 18: `delivered`, `acked`) with a real broker
 * and clients: two QoS 1 subscribers that acknowledge, one QoS 0 subscriber (a QoS 0 delivery
 * is complete once written), one that never acknowledges and disconnects, a persistent session
 * that was away (its deliveries read back from the log, counted by position) and one that
 * acknowledges only the re-send with DUP after a reconnect (two packets written, one completed);
 * the catch-up read by the native drain loop (its reports) and by the event loop (ready-made packets).
 * The counts are read as the query streams them (Rust's JSON lines), survive a clean restart of
 * the broker, and a `$log/` re-consumer does not add to them. A broker process killed with
 * SIGKILL keeps every logged message and the counts older than a second; a damaged or deleted
 * counts file costs counts, nothing else.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { IPublishPacket } from 'mqtt-packet';
import { type LogEntryJson, openLineReader, planQuery } from '../../src/msglog/query.js';
import { BrokerProcess, client, collect, freePort, persistent, RawClient, recordingClient, runCli, sleep, startBroker, tempDir, type TestBroker } from '../helpers.js';

const tmp = tempDir('strata-counts-');
let tb: TestBroker | null = null;
after(async () => {
  await tb?.close().catch(() => undefined);
  tmp.remove();
});

interface Line {
  id: string;
  topic: string;
  payload: string;
  qos: number;
  delivered: number;
  acked: number;
}

/** The entries of `topic` as the query streams them (what was counted so far written first). */
function lines(t: TestBroker, topic: string): Line[] {
  t.broker.logCounts()?.flush();
  const store = t.broker.durable?.store;
  assert.ok(store);
  const r = openLineReader(store, planQuery(store, { topic }), '');
  const out: Line[] = [];
  for (let got = r.take(1000); got.length > 0; got = r.take(1000)) for (const l of got) out.push(JSON.parse(l.buffer.toString('utf8', l.start, l.end)) as Line);
  return out;
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const counts = (ls: Line[]): string[] => ls.map((l) => `${l.payload}:${l.delivered}/${l.acked}`);

for (const nativeDrain of [true, false]) {
  test(`delivered and acked per entry: QoS 1 acknowledged, QoS 0, never acknowledged, read back from the log (native drain ${nativeDrain ? 'on' : 'off'}), re-sent with DUP; kept over a clean restart`, async () => {
    await tb?.close(); // one a failed run left
    const dataDir = `${tmp.dir}/data-${nativeDrain}`;
    const config = { 'msglog.topics': 'cnt/#', 'durable_sessions.native_drain': nativeDrain };
    tb = await startBroker({ dataDir, config });
    const t = tb;

    // Two QoS 1 subscribers that acknowledge, one at QoS 0.
    const a = await client(t, { clientId: 'sub-a' });
    const b = await client(t, { clientId: 'sub-b', protocolVersion: 5 });
    const c = await client(t, { clientId: 'sub-c' });
    await a.subscribeAsync('cnt/#', { qos: 1 });
    await b.subscribeAsync('cnt/#', { qos: 1 });
    await c.subscribeAsync('cnt/#', { qos: 0 });
    // One that takes its QoS 1 deliveries and never acknowledges them, then goes (clean session).
    const d = await RawClient.tcp(t.port, 4);
    await d.connect('sub-d');
    d.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'cnt/#', qos: 1 }] });
    assert.ok(await d.next('suback'));
    // A persistent session that will be away while they are published (it reads them from the log later).
    const p = await client(t, persistent(5, 'sub-p'));
    await p.subscribeAsync('cnt/#', { qos: 1 });
    await p.endAsync();

    const gotA = collect(a, 6);
    const gotB = collect(b, 6);
    const gotC = collect(c, 6);
    const pub = await client(t, { clientId: 'pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('cnt/x', `m${i}`, { qos: 1 });
    await pub.publishAsync('cnt/x', 'q0', { qos: 0 });
    await Promise.all([gotA, gotB, gotC]);
    const toD: IPublishPacket[] = [];
    while (toD.length < 6) toD.push((await d.next('publish')) as IPublishPacket);
    assert.equal(toD.filter((x) => x.qos === 1).length, 5, 'sub-d got its QoS 1 deliveries (and acknowledges none)');
    d.end();
    await d.closedPromise;

    // m*: a, b (acknowledged), c (QoS 0: complete once written), d (never acknowledged) → 4 / 3.
    // q0: all four at QoS 0 → 4 / 4. The persistent session was away: nothing yet.
    const want1 = ['m0:4/3', 'm1:4/3', 'm2:4/3', 'm3:4/3', 'm4:4/3', 'q0:4/4'];
    await until('the first counts', () => counts(lines(t, 'cnt/#')).join() === want1.join());

    // The persistent session comes back: its deliveries are read from the log (counted by position)
    // and acknowledged (the QoS 0 one is in the log anyway: it gets it too, complete once written).
    const { c: back, got: gotP } = await recordingClient(t, persistent(5, 'sub-p'));
    await until('sub-p caught up', () => gotP.length >= 6);
    if (nativeDrain) assert.ok(t.broker.metrics.nativeDrains > 0, 'read back by the native drain loop (its reports counted)');
    else assert.ok(t.broker.metrics.fastDrained > 0, 'read back as ready-made packets on the event loop');
    assert.deepEqual(gotP.map((m) => m.payload), ['m0', 'm1', 'm2', 'm3', 'm4', 'q0']);
    const want2 = ['m0:5/4', 'm1:5/4', 'm2:5/4', 'm3:5/4', 'm4:5/4', 'q0:5/5'];
    await until('the persistent session counted', () => counts(lines(t, 'cnt/#')).join() === want2.join());
    await back.endAsync();

    // A persistent subscriber that does not acknowledge its first delivery, reconnects, and
    // acknowledges the re-send with DUP: two packets written, one delivery completed.
    const e = await RawClient.tcp(t.port, 4);
    await e.connect('sub-e', { clean: false });
    e.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'cnt/dup', qos: 1 }] });
    assert.ok(await e.next('suback'));
    await pub.publishAsync('cnt/dup', 'd0', { qos: 1 });
    const first = (await e.next('publish')) as IPublishPacket;
    assert.equal(first.dup, false);
    e.end();
    await e.closedPromise;
    const e2 = await RawClient.tcp(t.port, 4);
    await e2.connect('sub-e', { clean: false });
    const again = (await e2.next('publish')) as IPublishPacket;
    assert.equal(again.dup, true, 're-sent with DUP');
    e2.send({ cmd: 'puback', messageId: again.messageId as number });
    // d0 also went to a and b (acknowledged) and c (QoS 0): 1/1 each; sub-e 2/1. sub-p is away:
    // d0 waits in the log for it (not delivered, not counted).
    await until('the re-send counted', () => lines(t, 'cnt/dup')[0]?.delivered === 5 && lines(t, 'cnt/dup')[0]?.acked === 4);
    e2.end();

    // A `$log/` re-consumer reads them all again: not counted.
    const r = await client(t, { clientId: 'relog' });
    const reread = collect(r, 7);
    await r.subscribeAsync('$log/earliest/cnt/#', { qos: 1 });
    assert.equal((await reread).length, 7);
    await sleep(100);
    const before = counts(lines(t, 'cnt/#'));
    assert.deepEqual(before, [...want2, 'd0:5/4']);

    // A clean restart keeps them, and what was counted just before it (written by the close,
    // not by the once-a-second flush).
    const last = [collect(a, 1), collect(b, 1), collect(c, 1)];
    await pub.publishAsync('cnt/x', 'last', { qos: 0 });
    await Promise.all(last);
    await t.close();
    await Promise.all([a.endAsync(true), b.endAsync(true), c.endAsync(true), pub.endAsync(true), r.endAsync(true)]);
    tb = await startBroker({ dataDir, config });
    assert.deepEqual(counts(lines(tb, 'cnt/#')), [...before, 'last:3/3'], 'the same counts after a clean restart');
    await tb.close();
    tb = null;
  });
}

/** Every `counts-*` file under `dir`. */
function countsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...countsFiles(p));
    else if (name.startsWith('counts-')) out.push(p);
  }
  return out;
}

/** `log query --offline --json` of a stopped broker's store. */
async function offline(data: string, topic: string): Promise<LogEntryJson[]> {
  const r = await runCli(['log', 'query', '--topic', topic, '--json', '--offline', '--data-dir', data]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogEntryJson);
}

test('kill -9 loses at most the counts of the last second, never a logged message; a damaged or deleted counts file costs counts only', async () => {
  const data = join(tmp.dir, 'kill');
  // sync: every acknowledged message is in the log (async may lose the last milliseconds' appends, README).
  const broker = new BrokerProcess(await freePort(), data, [], { STRATA_MSGLOG__TOPICS: 'kc/#', STRATA_MSGLOG__MODE: 'sync' });
  await broker.start();
  try {
    const sub = await client(broker.url, { clientId: 'kc-sub' });
    sub.on('error', () => undefined);
    await sub.subscribeAsync('kc/#', { qos: 1 });
    const pub = await client(broker.url, { clientId: 'kc-pub' });
    pub.on('error', () => undefined);
    const first = collect(sub, 20);
    for (let i = 0; i < 20; i++) await pub.publishAsync('kc/a', `a${i}`, { qos: 1 });
    await first;
    await sleep(1600); // past a flush (every second)
    const second = collect(sub, 20);
    for (let i = 0; i < 20; i++) await pub.publishAsync('kc/b', `b${i}`, { qos: 1 });
    await second;
    await broker.kill9();
    sub.end(true);
    pub.end(true);

    const after9 = await offline(data, 'kc/#');
    assert.equal(after9.length, 40, 'every logged message is there: the counts are not the log');
    assert.deepEqual(
      after9.filter((e) => e.topic === 'kc/a').map((e) => `${e.delivered}/${e.acked}`),
      Array<string>(20).fill('1/1'),
      'counted more than a second before the kill: kept (written to the counts file, in the page cache)',
    );
    const b = after9.filter((e) => e.topic === 'kc/b');
    for (const e of b) assert.ok(e.delivered <= 1 && e.acked <= e.delivered, `${e.payload}: ${e.delivered}/${e.acked}`);
    process.stdout.write(`# counts of the last second before kill -9 kept for ${b.filter((e) => e.delivered === 1).length} of 20 messages\n`);

    // Damaged: garbage in the middle and cut mid-entry. The query still answers, every entry there.
    const files = countsFiles(data);
    assert.ok(files.length > 0, 'a counts file beside the log');
    for (const f of files) {
      const bytes = readFileSync(f);
      bytes.fill(0xff, 8, 24);
      writeFileSync(f, bytes.subarray(0, Math.max(13, bytes.length - 5)));
    }
    const damaged = await offline(data, 'kc/#');
    assert.equal(damaged.length, 40);
    assert.ok(damaged.some((e) => e.delivered === 0xffffffff), 'garbage reads as garbage counts, nothing worse');
    // Deleted: zeros, and a broker started on it counts again (a new file).
    for (const f of files) rmSync(f);
    assert.deepEqual([...new Set((await offline(data, 'kc/#')).map((e) => `${e.delivered}/${e.acked}`))], ['0/0']);
    await broker.start();
    const sub2 = await client(broker.url, { clientId: 'kc-sub' });
    await sub2.subscribeAsync('kc/#', { qos: 1 });
    const third = collect(sub2, 5);
    const pub2 = await client(broker.url, { clientId: 'kc-pub' });
    for (let i = 0; i < 5; i++) await pub2.publishAsync('kc/c', `c${i}`, { qos: 1 });
    await third;
    await sleep(100); // the acknowledgements reach the broker
    await Promise.all([sub2.endAsync(), pub2.endAsync()]);
    await broker.stop(); // a clean stop writes what was counted
    assert.deepEqual(
      (await offline(data, 'kc/c')).map((e) => `${e.delivered}/${e.acked}`),
      Array<string>(5).fill('1/1'),
    );
  } finally {
    await broker.stop();
  }
});
