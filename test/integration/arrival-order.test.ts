/**
 * A caught-up persistent session takes each logged message as its append completes, and takes it
 * only if it is past what the session read (LogSession.arrive: below `next` means "read already").
 * That holds only if, per shard, the appends' completions reach the sessions in offset order.
 *
 * Found by the durability checker (seed 800288): a persistent publisher's QoS 2 message goes
 * through one more step before its append (its packet id recorded as pending), and its
 * completion reached the sessions a few microtask hops behind those of QoS 0/1 messages appended
 * after it in the same batch; the subscriber, which had taken those, counted it as read — an
 * acknowledged message never delivered, with no restart anywhere.
 *
 * Here: one log shard; a persistent subscriber; a QoS 1 flood from one client while a persistent
 * QoS 2 publisher sends a few; metadata commits slowed (STRATAMQ_TEST_METADATA_DELAY_MS) so the
 * QoS 2 appends land in batches with the flood's. Every acknowledged message must arrive.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BrokerProcess, client, freePort, persistent, sleep, tempDir } from '../helpers.js';

const tmp = tempDir('strata-order-');
let broker: BrokerProcess;
before(async () => {
  broker = new BrokerProcess(await freePort(), tmp.dir, [], { STRATAMQ_TEST_METADATA_DELAY_MS: '3', STRATA_DURABLE_STORAGE__MESSAGES__N_SHARDS: '1' });
  await broker.start();
});
after(async () => {
  await broker.stop();
  tmp.remove();
});

test('every acknowledged message reaches a caught-up persistent subscriber, QoS 2 from a persistent publisher among a QoS 1 flood on its shard', async () => {
  const sub = await client(broker.url, persistent(5, 'order-sub'));
  await sub.subscribeAsync('order/#', { qos: 1 });
  const got = new Set<string>();
  sub.on('message', (_t, payload) => got.add(payload.toString()));
  const flood = await client(broker.url, { protocolVersion: 5, clientId: 'order-flood' });
  const q2 = await client(broker.url, persistent(5, 'order-q2'));
  const sent: string[] = [];
  try {
    for (let round = 0; round < 8; round++) {
      const acks: Promise<unknown>[] = [];
      for (let i = 0; i < 300; i++) {
        const m = `f-${round}-${i}`;
        sent.push(m);
        acks.push(flood.publishAsync('order/f', m, { qos: 1 }));
        if (i % 30 === 0) {
          const q = `q2-${round}-${i}`;
          sent.push(q);
          acks.push(q2.publishAsync('order/q', q, { qos: 2 }));
        }
        if (i % 20 === 0) await sleep(1); // the flood spans many event-loop turns and commits
      }
      await Promise.all(acks);
    }
    const deadline = Date.now() + 10000;
    while (got.size < sent.length && Date.now() < deadline) await sleep(50);
    const missing = sent.filter((m) => !got.has(m));
    assert.deepEqual(missing, [], `${missing.length} of ${sent.length} acknowledged messages never arrived`);
  } finally {
    await Promise.all([sub.endAsync(), flood.endAsync(), q2.endAsync()]);
  }
});
