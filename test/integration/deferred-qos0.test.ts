/**
 * A QoS 0 message for a connected persistent session waits behind that session's earlier
 * messages still on their way through the log (Router: `afterLogged`, [MQTT-4.6.0-6]). Here the
 * client leaves and comes back before they are in: the earlier message reaches the new
 * connection, and the QoS 0 one that waited comes after it, if at all (it was meant for the
 * connection that went away: QoS 0, at most once). Passes before and after this session's
 * changes; the narrower case the tenth session's note names — the new connection still reading
 * a backlog when the appends complete — is not reached this way and stays open.
 *
 * Appends are held 300 ms (STRATAMQ_TEST_APPEND_DELAY_MS): the QoS 1 message A is routed, its
 * append pending; the QoS 0 message B on the same topic from the same publisher waits behind it;
 * the subscriber reconnects; then A's append completes.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BrokerProcess, client, freePort, persistent, sleep, tempDir } from '../helpers.js';

const tmp = tempDir('strata-deferred-');
after(() => tmp.remove());

test('QoS 0 waiting behind a persistent session\'s pending appends is not written ahead of them on the connection the client came back on', async () => {
  const broker = new BrokerProcess(await freePort(), join(tmp.dir, 'data'), [], { STRATAMQ_TEST_APPEND_DELAY_MS: '300' });
  await broker.start();
  try {
    const sub = await client(broker.url, persistent(4, 'dq-sub'));
    await sub.subscribeAsync('dq/#', { qos: 1 });
    const pub = await client(broker.url, { clientId: 'dq-pub', protocolVersion: 4 });
    const first: string[] = [];
    sub.on('message', (_t, p) => first.push(p.toString()));
    const acked = pub.publishAsync('dq/t', 'A', { qos: 1 }); // its PUBACK waits for the append (300 ms)
    await pub.publishAsync('dq/t', 'B', { qos: 0 });
    await sleep(50); // B routed: waiting behind A
    await sub.endAsync(true);
    const back = await client(broker.url, persistent(4, 'dq-sub'));
    const got: string[] = [];
    back.on('message', (_t, p) => got.push(p.toString()));
    await acked;
    await sleep(700);
    assert.deepEqual(first, [], 'nothing reached the first connection (A was not in the log yet, B waited)');
    assert.ok(got.includes('A'), `the acknowledged QoS 1 message arrives on the new connection: ${JSON.stringify(got)}`);
    const b = got.indexOf('B');
    assert.ok(b < 0 || b > got.indexOf('A'), `B after A if at all: ${JSON.stringify(got)}`);
    await back.endAsync();
    await pub.endAsync();
  } finally {
    await broker.stop();
  }
});
