/**
 * Real Debian `mosquitto_pub` / `mosquitto_sub` (mosquitto-clients) against the broker over
 * TCP, for MQTT 3.1.1 and 5.0 at each QoS: live delivery, retained messages, persistent
 * sessions. The mosquitto 2.0 clients cannot speak WebSocket (`mosquitto_sub --help` has no
 * `--ws`), so WebSocket is covered by crossing transports: mosquitto over TCP on one side,
 * MQTT.js over ws:// on the other.
 *
 * Every child process runs with `-W` (its own timeout) and is killed by the test if it
 * outlives that, so nothing hangs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { client, collect, sleep, startBroker, type TestBroker } from '../helpers.js';

const PUB = '/usr/bin/mosquitto_pub';
const SUB = '/usr/bin/mosquitto_sub';
const missing = !existsSync(PUB) || !existsSync(SUB);
const skip = missing ? 'mosquitto-clients is not installed (apt-get install mosquitto-clients)' : false;

type Version = 'mqttv311' | 'mqttv5';
const VERSIONS: Version[] = ['mqttv311', 'mqttv5'];
const QOS = [0, 1, 2] as const;

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a mosquitto client to completion; killed after `killAfterMs` whatever happens. */
function run(cmd: string, args: string[], killAfterMs = 10000): { done: Promise<Result> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const done = new Promise<Result>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { done };
}

let tb: TestBroker;
let wsUrl: string;

before(async () => {
  tb = await startBroker({ wsPort: 0 });
  wsUrl = `ws://127.0.0.1:${tb.wsPort as number}/mqtt`;
});
after(() => tb?.close());

function common(version: Version): string[] {
  return ['-h', '127.0.0.1', '-p', String(tb.port), '-V', version];
}

/** Wait until the broker holds `filter` for `clientId` (the SUBACK has then been sent). */
async function subscribed(clientId: string, filter: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!tb.broker.sessions.get(clientId)?.subscriptions.has(filter)) {
    if (Date.now() > deadline) throw new Error(`${clientId} did not subscribe to ${filter}`);
    await sleep(10);
  }
}

async function pub(version: Version, args: string[]): Promise<void> {
  const r = await run(PUB, [...common(version), ...args]).done;
  assert.equal(r.code, 0, `mosquitto_pub failed: ${r.stderr}`);
}

/** `-F` output: QoS, retain flag, topic, payload. */
const FORMAT = ['-F', '%q %r %t %p'];

describe('mosquitto_pub → mosquitto_sub over TCP', { skip }, () => {
  for (const version of VERSIONS) {
    for (const qos of QOS) {
      test(`${version} QoS ${qos}: delivered once, at QoS ${qos}, payload intact`, async () => {
        const id = `mos-sub-${version}-${qos}`;
        const filter = `mos/${version}/q${qos}/+`;
        const sub = run(SUB, [...common(version), '-i', id, '-q', String(qos), '-t', filter, '-C', '2', '-W', '5', ...FORMAT]);
        await subscribed(id, filter);
        await pub(version, ['-q', String(qos), '-t', `mos/${version}/q${qos}/a`, '-m', `hello ${version} ${qos}`]);
        await pub(version, ['-q', String(qos), '-t', `mos/${version}/q${qos}/b`, '-m', 'ünïcödé ✓']);
        const r = await sub.done;
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(r.stdout.trimEnd().split('\n'), [
          `${qos} 0 mos/${version}/q${qos}/a hello ${version} ${qos}`,
          `${qos} 0 mos/${version}/q${qos}/b ünïcödé ✓`,
        ]);
      });
    }
  }

  test('QoS is downgraded to the subscription QoS [MQTT-3.8.4-8], across protocol versions', async () => {
    const sub = run(SUB, [...common('mqttv5'), '-i', 'mos-down', '-q', '1', '-t', 'mos/down', '-C', '1', '-W', '5', ...FORMAT]);
    await subscribed('mos-down', 'mos/down');
    await pub('mqttv311', ['-q', '2', '-t', 'mos/down', '-m', 'x']);
    const r = await sub.done;
    assert.equal(r.stdout, '1 0 mos/down x\n');
  });

  test('100 QoS 1 messages from one mosquitto_pub -l arrive complete and in order', async () => {
    const sub = run(SUB, [...common('mqttv311'), '-i', 'mos-bulk', '-q', '1', '-t', 'mos/bulk', '-C', '100', '-W', '8', '-F', '%p']);
    await subscribed('mos-bulk', 'mos/bulk');
    const lines = Array.from({ length: 100 }, (_, i) => `line-${i}`);
    const child = spawn(PUB, [...common('mqttv5'), '-q', '1', '-t', 'mos/bulk', '-l'], { stdio: ['pipe', 'ignore', 'pipe'] });
    const killer = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.stdin.end(lines.join('\n') + '\n');
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    clearTimeout(killer);
    assert.equal(code, 0);
    const r = await sub.done;
    assert.deepEqual(r.stdout.trimEnd().split('\n'), lines);
  });
});

describe('retained messages with mosquitto clients', { skip }, () => {
  for (const version of VERSIONS) {
    test(`${version}: a retained message is delivered on subscribe with retain=1; an empty retained message clears it`, async () => {
      const topic = `mos/retained/${version}`;
      await pub(version, ['-r', '-q', '1', '-t', topic, '-m', 'kept value']);
      const first = await run(SUB, [...common(version), '-t', 'mos/retained/#', '-q', '1', '-C', '1', '-W', '5', ...FORMAT]).done;
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stdout, `1 1 ${topic} kept value\n`);

      // Replace, then read again: only the newest is retained.
      await pub(version, ['-r', '-q', '0', '-t', topic, '-m', 'newer']);
      const second = await run(SUB, [...common(version), '-t', topic, '-C', '1', '-W', '5', ...FORMAT]).done;
      assert.equal(second.stdout, `0 1 ${topic} newer\n`);

      // Clear with an empty retained message [MQTT-3.3.1-6]/[MQTT-3.3.1-7].
      await pub(version, ['-r', '-n', '-t', topic]);
      assert.equal(tb.broker.retained.get(topic), undefined);
      const id = `mos-ret-${version}`;
      const third = run(SUB, [...common(version), '-i', id, '-t', topic, '-C', '1', '-W', '5', ...FORMAT]);
      await subscribed(id, topic);
      await pub(version, ['-t', topic, '-m', 'live']);
      // The first thing it sees is the live message: nothing retained was sent.
      assert.equal((await third.done).stdout, `0 0 ${topic} live\n`);
    });
  }
});

describe('persistent sessions with mosquitto_sub -c', { skip }, () => {
  for (const version of VERSIONS) {
    test(`${version}: mosquitto_sub -c -i receives the QoS 1 messages queued while it was away`, async () => {
      const id = `mos-persist-${version}`;
      const topic = `mos/persist/${version}`;
      // Subscribe with a persistent session, then leave (-E: exit after SUBACK).
      const first = await run(SUB, [...common(version), '-c', '-i', id, '-q', '1', '-t', topic, '-E', '-W', '5']).done;
      assert.equal(first.code, 0, first.stderr);
      const session = tb.broker.sessions.get(id);
      assert.ok(session, 'the session outlives the connection');
      assert.equal(session.outlet, null);
      assert.ok(session.subscriptions.has(topic));

      for (const m of ['q-1', 'q-2', 'q-3']) await pub(version, ['-q', '1', '-t', topic, '-m', m]);

      const back = await run(SUB, [...common(version), '-c', '-i', id, '-q', '1', '-t', topic, '-C', '3', '-W', '5', ...FORMAT]).done;
      assert.equal(back.code, 0, back.stderr);
      assert.deepEqual(back.stdout.trimEnd().split('\n'), [`1 0 ${topic} q-1`, `1 0 ${topic} q-2`, `1 0 ${topic} q-3`]);
      // mosquitto_sub exits on the 3rd message; if the SUBACK of its re-subscription is still
      // unread then, its kernel resets the connection and PUBACKs it had queued are lost on the
      // way. What is unacknowledged must stay in the session and come again [MQTT-4.4.0-1].
      await sleep(300);
      const session2 = tb.broker.sessions.get(id);
      assert.equal(session2?.queue.length, 0);
      // (While the client is away the session keeps only their log positions.)
      const unacked = session2?.inflight.size ?? 0;
      assert.ok(unacked <= 3);
      if (unacked > 0) {
        const again = await run(SUB, [...common(version), '-c', '-i', id, '-q', '1', '-t', topic, '-C', String(unacked), '-W', '5', '-F', '%p']).done;
        assert.equal(again.code, 0, again.stderr);
        const lines = again.stdout.trimEnd().split('\n');
        assert.equal(lines.length, unacked);
        assert.ok(lines.every((p) => ['q-1', 'q-2', 'q-3'].includes(p)), lines.join(','));
      }
    });
  }

  test('without -c the session ends with the connection and nothing is queued', async () => {
    const id = 'mos-clean';
    const r = await run(SUB, [...common('mqttv311'), '-i', id, '-q', '1', '-t', 'mos/clean', '-E', '-W', '5']).done;
    assert.equal(r.code, 0, r.stderr);
    // mosquitto_sub exits right after sending DISCONNECT: give the broker a moment to read it.
    const deadline = Date.now() + 3000;
    while (tb.broker.sessions.get(id) && Date.now() < deadline) await sleep(10);
    assert.equal(tb.broker.sessions.get(id), undefined);
  });
});

describe('mosquitto clients across TCP and WebSocket (MQTT.js over ws://)', { skip }, () => {
  for (const version of VERSIONS) {
    for (const qos of [1, 2] as const) {
      test(`${version} QoS ${qos}: mosquitto_pub (TCP) → MQTT.js (WebSocket) and MQTT.js (WebSocket) → mosquitto_sub (TCP)`, async () => {
        const protocolVersion = version === 'mqttv5' ? 5 : 4;
        const wsClient = await client(wsUrl, { protocolVersion, clientId: `mos-ws-${version}-${qos}` });
        try {
          const topic = `mos/ws/${version}/${qos}`;
          await wsClient.subscribeAsync(`${topic}/to-ws`, { qos });
          const got = collect(wsClient, 1, 5000);
          await pub(version, ['-q', String(qos), '-t', `${topic}/to-ws`, '-m', 'from mosquitto']);
          const [m] = await got;
          assert.equal(m?.payload.toString(), 'from mosquitto');
          assert.equal(m?.packet.qos, qos);

          const id = `mos-from-ws-${version}-${qos}`;
          const sub = run(SUB, [...common(version), '-i', id, '-q', String(qos), '-t', `${topic}/from-ws`, '-C', '1', '-W', '5', ...FORMAT]);
          await subscribed(id, `${topic}/from-ws`);
          await wsClient.publishAsync(`${topic}/from-ws`, 'from websocket', { qos });
          assert.equal((await sub.done).stdout, `${qos} 0 ${topic}/from-ws from websocket\n`);
        } finally {
          await wsClient.endAsync();
        }
      });
    }
  }
});
