/**
 * A slow backend never slows publishers (issue 16, SPEC D6): Redis behind a TCP proxy that
 * delays every byte towards the server by 50 ms. QoS 1 publish throughput with an
 * on_message_publish rule to it stays at least 80% of the same broker's without the rule
 * (best of five runs each, interleaved, after a warm-up); the excess events are dropped and counted.
 */
import assert from 'node:assert/strict';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { rule } from '../backends.js';
import { client, startBroker, type TestBroker } from '../helpers.js';
import { startRedis } from '../servers.js';

const DELAY_MS = 50;
const MESSAGES = 4000;

/** A TCP proxy to 127.0.0.1:`port` delaying the client → server direction by DELAY_MS (order kept). */
async function slowProxy(port: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((down) => {
    const up = netConnect(port, '127.0.0.1');
    sockets.add(down).add(up);
    down.on('data', (b) => setTimeout(() => up.write(b), DELAY_MS));
    up.on('data', (b) => down.write(b));
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Messages per second one publisher gets acknowledged (QoS 1, a window of 100 in flight). */
async function throughput(tb: TestBroker, topic: string): Promise<number> {
  const pub = await client(tb, { clientId: `slow-${topic}` });
  const start = process.hrtime.bigint();
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < MESSAGES) {
      sent++;
      await pub.publishAsync(topic, 'x'.repeat(64), { qos: 1 });
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  await pub.endAsync();
  return MESSAGES / secs;
}

test('a slow Redis (50 ms added on the way to it) leaves QoS 1 publish throughput at >= 80% of the broker without the rule; the excess is dropped and counted', async (t) => {
  const redis = await startRedis();
  const proxy = await slowProxy(redis.port);
  const plain = await startBroker();
  const withRule = await startBroker({ config: { 'backend.redis.pool1.server': `127.0.0.1:${proxy.port}`, 'backend.redis.pool1.max_inflight': 50, 'backend.redis.pool1.max_queued': 1000, 'backend.redis.hook.message.publish.1': rule({ topic: '#', function: 'on_message_publish' }) } as never });
  try {
    const base: number[] = [];
    const ruled: number[] = [];
    await throughput(plain, 'warm'); // JIT warm-up of both paths, not measured
    await throughput(withRule, 'warm');
    for (let i = 0; i < 5; i++) {
      base.push(await throughput(plain, `t${i}`));
      ruled.push(await throughput(withRule, `t${i}`));
    }
    const b = Math.max(...base);
    const r = Math.max(...ruled);
    t.diagnostic(`QoS 1 msg/s without the rule ${base.map((x) => x.toFixed(0)).join(' ')}, with it ${ruled.map((x) => x.toFixed(0)).join(' ')}`);
    const c = withRule.broker.metrics.consumers['backend.redis.pool1.message.publish'];
    assert.ok(r >= 0.8 * b, `with a slow backend ${r.toFixed(0)} msg/s, without ${b.toFixed(0)} msg/s (runs: ${ruled.map((x) => x.toFixed(0))} vs ${base.map((x) => x.toFixed(0))})`);
    assert.ok(c && c.dropped > 0 && c.queued <= 1000 + c.handled + 50, `the backend was the slow part: ${JSON.stringify(c)}`);
  } finally {
    await withRule.close();
    await plain.close();
    await proxy.close();
    await redis.destroy();
  }
});
