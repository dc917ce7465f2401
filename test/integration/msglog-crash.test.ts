/**
 * `msglog.mode = sync` across kill -9 (issue 18): publishers keep many QoS 1 messages in flight to
 * a real broker process while it is killed with SIGKILL; every message whose PUBACK arrived is in
 * the log afterwards (read with `stratamq log query --offline` from the killed broker's store, which
 * recovers it), each once, each publisher's in publish order — and, the broker started again on
 * that store, re-consumed through `$log/earliest/…` alike, then live.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { LogEntryJson } from '../../src/msglog/query.js';
import { BrokerProcess, client, collect, freePort, persistent, quiet, runCli, sleep, tempDir, unconnected } from '../helpers.js';

const tmp = tempDir('strata-logcrash-');
const data = join(tmp.dir, 'data');
after(() => tmp.remove());

test('sync mode: kill -9 under load loses no acknowledged logged message', async () => {
  const broker = new BrokerProcess(await freePort(), data, [], { STRATA_MSGLOG__TOPICS: 'k/#', STRATA_MSGLOG__MODE: 'sync', STRATA_LOG__FORMAT: 'json' });
  await broker.start();
  const ids = ['k0', 'k1', 'k2', 'k3'];
  const acked = new Map<string, number[]>(ids.map((id) => [id, []]));
  let stop = false;
  const pubs = await Promise.all(ids.map((id) => client(broker.url, { clientId: id, protocolVersion: 5 })));
  for (const p of pubs) p.on('error', () => undefined);
  const loops = pubs.map(async (p, k) => {
    const id = ids[k] as string;
    let n = 0;
    while (!stop) {
      // 50 in flight at a time.
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        const seq = n++;
        batch.push(
          p.publishAsync(`k/${id}`, String(seq), { qos: 1 }).then(
            () => void acked.get(id)?.push(seq),
            () => undefined,
          ),
        );
      }
      await Promise.race([Promise.all(batch), sleep(2000)]);
    }
  });
  await sleep(800);
  await broker.kill9();
  stop = true;
  await Promise.all(loops);
  for (const p of pubs) p.end(true);
  const total = [...acked.values()].reduce((a, v) => a + v.length, 0);
  assert.ok(total > 100, `publishers got acknowledgements before the kill (${total})`);
  const r = await runCli(['log', 'query', '--topic', 'k/#', '--json', '--offline', '--data-dir', data]);
  assert.equal(r.code, 0, r.stderr);
  const logged = new Map<string, number[]>(ids.map((id) => [id, []]));
  for (const line of r.stdout.split('\n')) {
    if (line === '') continue;
    const e = JSON.parse(line) as LogEntryJson;
    logged.get(e.publisher)?.push(Number(e.payload));
  }
  for (const id of ids) {
    const inLog = logged.get(id) as number[];
    const have = new Set(inLog);
    assert.equal(have.size, inLog.length, `${id}: each once`);
    for (let i = 1; i < inLog.length; i++) assert.ok((inLog[i] as number) > (inLog[i - 1] as number), `${id}: publish order`);
    const lost = (acked.get(id) as number[]).filter((s) => !have.has(s));
    assert.deepEqual(lost, [], `${id}: acknowledged and not in the log`);
  }
  const loggedTotal = [...logged.values()].reduce((a, v) => a + v.length, 0);
  process.stdout.write(`# ${total} acknowledged before kill -9, all in the log (${loggedTotal} logged)\n`);

  // The broker started again on the killed store: a re-consumer from the start gets the same
  // entries over MQTT, each once, each publisher's in order — then the live ones.
  await broker.start();
  try {
    const sub = await client(broker.url, { clientId: 'k-reconsume', protocolVersion: 5 });
    const got = collect(sub, loggedTotal + 1, 20000);
    await sub.subscribeAsync('$log/earliest/k/#', { qos: 1 });
    const live = await client(broker.url, { clientId: 'k-live' });
    await live.publishAsync('k/live', 'after', { qos: 1 });
    await live.endAsync();
    const msgs = await got;
    const replayed = new Map<string, number[]>(ids.map((id) => [id, []]));
    for (const m of msgs.slice(0, loggedTotal)) replayed.get(m.topic.slice(2))?.push(Number(m.payload.toString()));
    for (const id of ids) assert.deepEqual(replayed.get(id), logged.get(id), `${id}: re-consumed after the restart as logged`);
    assert.equal(msgs[loggedTotal]?.payload.toString(), 'after', 'then the live message');
    assert.deepEqual(await quiet(sub, 300), [], 'nothing more');
    await sub.endAsync();
  } finally {
    await broker.stop();
  }
});

test("async mode: a persistent subscription made while messages published before it are still on their way to the log never gets them (seed 2800050)", async () => {
  // Appends are handed to the store 300 ms after their first message: the publisher's PUBACKs (async
  // mode) come long before the records are in the log, and the SUBSCRIBE arrives in between.
  const broker = new BrokerProcess(await freePort(), join(tmp.dir, 'pending'), [], { STRATA_MSGLOG__TOPICS: 'pre/#', STRATA_MSGLOG__MODE: 'async', STRATAMQ_TEST_APPEND_DELAY_MS: '300' });
  await broker.start();
  try {
    const pub = await client(broker.url, { clientId: 'pre-pub', protocolVersion: 5 });
    for (let i = 0; i < 5; i++) await pub.publishAsync('pre/x', `before ${i}`, { qos: 1 });
    const sub = await client(broker.url, persistent(5, 'pre-sub'));
    await sub.subscribeAsync('pre/#', { qos: 1 });
    await sub.endAsync();
    await pub.publishAsync('pre/y', 'after', { qos: 1 }); // published once the subscription exists: owed
    await sleep(500);
    const back = unconnected(broker.url, persistent(5, 'pre-sub'));
    const got = collect(back, 1, 5000);
    back.connect();
    assert.deepEqual((await got).map((m) => m.payload.toString()), ['after']);
    assert.deepEqual(await quiet(back, 500), [], 'nothing published before the subscription');
    await Promise.all([back.endAsync(), pub.endAsync()]);
  } finally {
    await broker.stop();
  }
});
