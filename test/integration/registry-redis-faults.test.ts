/**
 * The Redis registry under faults, with real brokers (child processes for kill -9), a real
 * redis-server and real clients: kill -9 of the broker under QoS 1 load loses no acknowledged
 * message; Redis unreachable at start stops the start (exit 1, the registry named); wrong
 * credentials likewise; Redis lost mid-run refuses publishes to persistent sessions (v5 0x80, 3.1.1
 * disconnected without an acknowledgement) while the rest is served, and recovers when it returns.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerProcess, freePort, RawClient, startBroker, tempDir } from '../helpers.js';
import { backlogAfterShortVisit, killUnderLoad, lostMidRun, qos0OrderWhileReading, sessionKeptAtStop, willOnceAcrossKill } from '../registry-suite.js';
import { type SlowReplies, slowReplies, startRedis } from '../servers.js';

test('kill -9 under QoS 1 load: every acknowledged message reaches the persistent subscriber after the restart, none lost', async (t) => {
  const redis = await startRedis();
  try {
    const { acked, lost } = await killUnderLoad({ STRATA_PERSISTENCE__REGISTRY: 'redis', STRATA_REDIS__SINGLE__ADDRESS: redis.server });
    t.diagnostic(`${acked} acknowledged, ${lost.length} lost`);
    assert.ok(acked > 500, `load ran (${acked} acknowledged)`);
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${acked} acknowledged messages lost`);
  } finally {
    await redis.destroy();
  }
});

/** A redis-server reached through a proxy that can hold its answers back (slowReplies), for `fn`. */
async function slowRedis(fn: (env: NodeJS.ProcessEnv, proxy: SlowReplies) => Promise<void>): Promise<void> {
  const redis = await startRedis();
  const proxy = await slowReplies(redis.port);
  try {
    await fn({ STRATA_PERSISTENCE__REGISTRY: 'redis', STRATA_REDIS__SINGLE__ADDRESS: proxy.server }, proxy);
  } finally {
    await proxy.close();
    await redis.destroy();
  }
}

test('a will stored as Redis answers late, kill -9: the restart does not publish it again (the record is cleared in the same script)', () =>
  slowRedis(async (env, proxy) => {
    const n = await willOnceAcrossKill(env, proxy, (payload) => [payload.toString()]);
    assert.equal(n, 1, `the will delivered ${n} times`);
  }));

test('SIGTERM as a new persistent session gets its CONNACK, Redis answering late: the stop waits for its record, the restart resumes it', () =>
  slowRedis(async (env, proxy) => {
    assert.equal(await sessionKeptAtStop(env, proxy), true, 'session present after the restart');
  }));

test('QoS 0 published as a persistent subscriber reads its backlog from a slow Redis comes after that backlog, in order', () =>
  slowRedis(async (env, proxy) => {
    assert.deepEqual(await qos0OrderWhileReading(env, proxy), Array.from({ length: 20 }, (_, i) => `m${i}`));
  }));

test('a persistent subscriber gone again before its first read of a slow Redis came back gets its message on its next visit', () =>
  slowRedis(async (env, proxy) => {
    const got = await backlogAfterShortVisit(env, proxy);
    assert.ok(got.length >= 1 && got.every((p) => p === 'waiting'), `got ${JSON.stringify(got)}`);
  }));

test('Redis stops answering (redis.timeout 0), SIGTERM: the stop waits 5 s for the registry writes, says how many were not answered, and ends cleanly', () =>
  slowRedis(async (env, proxy) => {
    const tmp = tempDir();
    const broker = new BrokerProcess(await freePort(), tmp.dir, [], { ...env, STRATA_REDIS__TIMEOUT: '0' });
    try {
      await broker.start();
      proxy.replyDelayMs = 120_000;
      const raw = await RawClient.tcp(broker.port, 5);
      await raw.connect('stuck-sub', { clean: false, properties: { sessionExpiryInterval: 3600 } }); // its record's write is not answered
      const t0 = Date.now();
      await broker.stop();
      const ms = Date.now() - t0;
      raw.end();
      // Before the CLI's own 10 s limit (which exits 1 without a word): the registry closed, 'closed' logged.
      assert.ok(ms >= 4_500 && ms < 9_500, `stopped after ${ms} ms`);
      assert.match(broker.output, /registry: \d+ write\(s\) still unanswered after 5 s at close: closing anyway/);
      assert.match(broker.output, /"msg":"closed"/);
    } finally {
      proxy.replyDelayMs = 0;
      await broker.stop();
      tmp.remove();
    }
  }));

test('Redis unreachable at start: the broker does not start, exits 1 and names the registry and the address', async () => {
  const tmp = tempDir();
  const port = await freePort(); // nothing listens there
  const broker = new BrokerProcess(await freePort(), tmp.dir, [], { STRATA_PERSISTENCE__REGISTRY: 'redis', STRATA_REDIS__SINGLE__ADDRESS: `127.0.0.1:${port}`, STRATA_REDIS__POOL__CONN__TIMEOUT: '1000' });
  try {
    await assert.rejects(broker.start(), (e: Error) => {
      assert.match(e.message, /broker exited with 1/);
      assert.match(e.message, new RegExp(`stratamq: failed to start: persistence.registry = redis: cannot connect to 127.0.0.1:${port}`));
      return true;
    });
  } finally {
    await broker.stop();
    tmp.remove();
  }
});

test('wrong Redis password: the start fails with an error naming the registry and redis.password', async () => {
  const redis = await startRedis({ password: 'right-one' });
  try {
    await assert.rejects(startBroker({ config: { 'persistence.registry': 'redis', 'redis.single.address': redis.server, 'redis.password': 'wrong-one' } }), (e: Error) => {
      assert.equal(e.name, 'RegistryError');
      assert.match(e.message, /persistence\.registry = redis: authentication refused by 127\.0\.0\.1:\d+: WRONGPASS.*\(check redis\.password \/ redis\.username\)/);
      return true;
    });
    const tb = await startBroker({ config: { 'persistence.registry': 'redis', 'redis.single.address': redis.server, 'redis.password': 'right-one' } });
    await tb.close();
  } finally {
    await redis.destroy();
  }
});

test('Redis lost mid-run: publishes for persistent sessions are refused (v5 0x80, 3.1.1 no ack), the rest is served, and it recovers', async () => {
  const redis = await startRedis();
  const tb = await startBroker({ config: { 'persistence.registry': 'redis', 'redis.single.address': redis.server, 'redis.timeout': 1000 } });
  try {
    // This redis-server keeps nothing across its restart: 'before' goes with it (its own guarantee).
    await lostMidRun(tb, redis, ['after']);
  } finally {
    await tb.close();
    await redis.destroy();
  }
});
