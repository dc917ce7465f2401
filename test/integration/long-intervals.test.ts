/**
 * Intervals longer than a Node timer can hold (2^31 - 1 ms, about 24.8 days): a Session Expiry
 * set in CONNECT or in DISCONNECT (Paho's test_publication_expiry uses 999,999,999 s) and a Will
 * Delay of that length must not end the session or publish the will at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IConnackPacket } from 'mqtt-packet';
import { client, collect, quiet, RawClient, sleep, startBroker } from '../helpers.js';

const LONG = 999_999_999; // seconds, about 31.7 years

test('a session expiry of 999,999,999 s given at DISCONNECT or CONNECT keeps the session and its queue', async () => {
  const tb = await startBroker();
  try {
    for (const where of ['disconnect', 'connect'] as const) {
      const id = `long-${where}`;
      const raw = await RawClient.tcp(tb.port, 5);
      await raw.connect(id, { clean: true, properties: { sessionExpiryInterval: where === 'connect' ? LONG : 99999 } });
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `long/${where}`, qos: 1 }] });
      await raw.next('suback');
      raw.send(where === 'disconnect' ? { cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: LONG } } : { cmd: 'disconnect', reasonCode: 0 });
      await raw.closedPromise;
      await sleep(100); // a timer that fires at once would have ended it by now
      const pub = await client(tb);
      await pub.publishAsync(`long/${where}`, 'kept', { qos: 1 });
      const back = await RawClient.tcp(tb.port, 5);
      const ack = (await back.connect(id, { clean: false, properties: { sessionExpiryInterval: 60 } })) as IConnackPacket;
      assert.equal(ack.sessionPresent, true, where);
      const p = await back.next('publish');
      assert.equal((p as { payload: Buffer }).payload.toString(), 'kept');
      back.end();
      await pub.endAsync();
    }
  } finally {
    await tb.close();
  }
});

test('a will delay of 999,999,999 s does not publish the will at once', async () => {
  const tb = await startBroker();
  try {
    const watch = await client(tb);
    await watch.subscribeAsync('long/will', { qos: 1 });
    const raw = await RawClient.tcp(tb.port, 5);
    await raw.connect('long-will', {
      clean: true,
      properties: { sessionExpiryInterval: LONG },
      will: { topic: 'long/will', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: LONG } },
    } as never);
    raw.end(); // no DISCONNECT: the will is due after its delay
    assert.deepEqual(await quiet(watch, 300), []);
    // Taken over before the delay: no will at all.
    const again = await client(tb, { protocolVersion: 5, clientId: 'long-will', clean: false, properties: { sessionExpiryInterval: 60 } });
    const none = collect(watch, 1, 300).catch(() => []);
    assert.deepEqual(await none, []);
    await Promise.all([again.endAsync(), watch.endAsync()]);
  } finally {
    await tb.close();
  }
});
