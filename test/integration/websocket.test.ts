/**
 * MQTT over WebSocket (SPEC A1: path /mqtt, subprotocol `mqtt`) with MQTT.js for 3.1.1 and
 * 5.0, raw `ws` clients for the framing rules of spec §6, and TLS + WSS with a self-signed
 * certificate made at test time by `openssl`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate, parser as createParser, type IConnackPacket, type Packet } from 'mqtt-packet';
import mqtt from 'mqtt';
import WebSocket, { createWebSocketStream } from 'ws';
import { createBroker } from '../../src/index.js';
import { client, collect, OPENSSL, RawClient, startBroker, testCertificate, type TestBroker } from '../helpers.js';

const QOS = [0, 1, 2] as const;

/**
 * How an MQTT.js connection attempt ends: 'connect', 'error' or 'close'. (connectAsync does
 * not settle when the transport closes without an error, e.g. a refused WebSocket upgrade.)
 */
function outcome(url: string): Promise<string> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 1500 });
    const done = (what: string): void => {
      resolve(what);
      c.end(true);
    };
    c.once('connect', () => done('connect'));
    c.once('error', () => done('error'));
    c.once('close', () => done('close'));
  });
}
const VERSIONS = [4, 5] as const;

describe('MQTT.js over ws://', () => {
  let tb: TestBroker;
  let url: string;
  before(async () => {
    tb = await startBroker({ wsPort: 0 });
    url = `ws://127.0.0.1:${tb.wsPort as number}/mqtt`;
  });
  after(() => tb?.close());

  for (const protocolVersion of VERSIONS) {
    for (const qos of QOS) {
      test(`v${protocolVersion === 5 ? '5' : '3.1.1'} QoS ${qos}: publish and subscribe over WebSocket`, async () => {
        const sub = await client(url, { protocolVersion, clientId: `ws-sub-${protocolVersion}-${qos}` });
        const pub = await client(url, { protocolVersion, clientId: `ws-pub-${protocolVersion}-${qos}` });
        try {
          const filter = `ws/${protocolVersion}/${qos}/#`;
          const granted = await sub.subscribeAsync(filter, { qos });
          assert.equal(granted[0]?.qos, qos);
          const got = collect(sub, 3, 5000);
          const big = Buffer.alloc(200_000, 0x5a); // spans many WebSocket frames and TCP segments
          await pub.publishAsync(`ws/${protocolVersion}/${qos}/a`, 'first', { qos });
          await pub.publishAsync(`ws/${protocolVersion}/${qos}/b`, big, { qos });
          await pub.publishAsync(`ws/${protocolVersion}/${qos}/c`, Buffer.alloc(0), { qos });
          const msgs = await got;
          assert.deepEqual(
            msgs.map((m) => m.topic),
            [`ws/${protocolVersion}/${qos}/a`, `ws/${protocolVersion}/${qos}/b`, `ws/${protocolVersion}/${qos}/c`],
          );
          assert.equal(msgs[0]?.payload.toString(), 'first');
          assert.ok(msgs[1]?.payload.equals(big), 'the 200 kB payload arrives intact');
          assert.equal(msgs[2]?.payload.length, 0);
          for (const m of msgs) assert.equal(m.packet.qos, qos);
        } finally {
          await Promise.all([sub.endAsync(), pub.endAsync()]);
        }
      });
    }
  }

  test('WebSocket and TCP clients share one broker: messages cross transports both ways', async () => {
    const overWs = await client(url, { protocolVersion: 5, clientId: 'cross-ws' });
    const overTcp = await client(tb, { protocolVersion: 4, clientId: 'cross-tcp' });
    try {
      await overWs.subscribeAsync('cross/to-ws', { qos: 1 });
      await overTcp.subscribeAsync('cross/to-tcp', { qos: 1 });
      const toWs = collect(overWs, 1);
      const toTcp = collect(overTcp, 1);
      await overTcp.publishAsync('cross/to-ws', 'tcp→ws', { qos: 1 });
      await overWs.publishAsync('cross/to-tcp', 'ws→tcp', { qos: 1 });
      assert.equal((await toWs)[0]?.payload.toString(), 'tcp→ws');
      assert.equal((await toTcp)[0]?.payload.toString(), 'ws→tcp');
    } finally {
      await Promise.all([overWs.endAsync(), overTcp.endAsync()]);
    }
  });

  test('a WebSocket path other than /mqtt is rejected', async () => {
    const bad = `ws://127.0.0.1:${tb.wsPort as number}/other`;
    assert.notEqual(await outcome(bad), 'connect');
    // The upgrade itself is refused (ws answers 400 for an unknown path).
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(bad, 'mqtt');
      ws.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on('open', () => reject(new Error('upgrade on /other was accepted')));
      ws.on('error', () => undefined);
    });
    assert.equal(status, 400);
    // A plain HTTP request is told where MQTT is served.
    const res = await fetch(`http://127.0.0.1:${tb.wsPort as number}/mqtt`);
    assert.equal(res.status, 426);
    assert.match(await res.text(), /\/mqtt/);
    assert.equal(tb.broker.connections.size, 0);
  });

  /** Open a raw WebSocket on /mqtt; packets parsed as `version`. */
  async function rawWs(version: 4 | 5): Promise<{ ws: WebSocket; packets: Packet[]; closed: Promise<number> }> {
    const ws = new WebSocket(url, 'mqtt');
    const packets: Packet[] = [];
    const parser = createParser({ protocolVersion: version });
    parser.on('packet', (p: Packet) => packets.push(p));
    ws.on('message', (data: Buffer) => parser.parse(data));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return { ws, packets, closed };
  }

  async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  test('[MQTT-6.0.0-4] the server selects the "mqtt" subprotocol', async () => {
    const { ws, closed } = await rawWs(4);
    assert.equal(ws.protocol, 'mqtt');
    ws.close();
    await closed;
  });

  test('[MQTT-6.0.0-2] packets are not assumed to align with WebSocket frames', async () => {
    const { ws, packets, closed } = await rawWs(5);
    const connect = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'ws-split', clean: true, keepalive: 30 }, { protocolVersion: 5 });
    // CONNECT in three frames, then SUBSCRIBE + PINGREQ together in one frame.
    ws.send(connect.subarray(0, 3));
    ws.send(connect.subarray(3, 9));
    ws.send(connect.subarray(9));
    ws.send(
      Buffer.concat([
        generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'split/t', qos: 1 }] }, { protocolVersion: 5 }),
        generate({ cmd: 'pingreq' }, { protocolVersion: 5 }),
      ]),
    );
    await until(() => packets.length >= 3, 'CONNACK, SUBACK, PINGRESP');
    assert.deepEqual(
      packets.map((p) => p.cmd),
      ['connack', 'suback', 'pingresp'],
    );
    assert.equal((packets[0] as IConnackPacket).reasonCode, 0);
    ws.close();
    await closed;
  });

  test('[MQTT-6.0.0-1] a text (non-binary) frame closes the connection', async () => {
    const { ws, packets, closed } = await rawWs(4);
    const connect = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'ws-text', clean: true, keepalive: 30 });
    ws.send(connect.toString('latin1'), { binary: false });
    const timeout = new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('not closed')), 3000));
    await Promise.race([closed, timeout]);
    assert.deepEqual(
      packets.map((p) => p.cmd),
      [],
      'no CONNACK for a text frame',
    );
  });
});

describe('TLS and WSS', () => {
  const skip = OPENSSL ? false : 'openssl is not installed: cannot make a test certificate';
  let dir = '';
  let tb: TestBroker;
  let cert: Buffer;

  before(async () => {
    if (!OPENSSL) return;
    dir = mkdtempSync(join(tmpdir(), 'strata-tls-'));
    testCertificate(dir);
    cert = readFileSync(join(dir, 'c.pem'));
    tb = await startBroker({
      wsPort: 0,
      config: {
        'listener.tls.port': 0,
        'listener.tls.certfile': join(dir, 'c.pem'),
        'listener.tls.keyfile': join(dir, 'k.pem'),
        'listener.wss.port': 0,
      },
    });
  });
  after(async () => {
    await tb?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('TLS and WSS listeners are bound on their own ports', { skip }, () => {
    const a = tb.broker.addresses;
    assert.ok(a.tls && a.tls > 0, 'tls port');
    assert.ok(a.wss && a.wss > 0, 'wss port');
    assert.equal(new Set([a.tcp, a.ws, a.tls, a.wss]).size, 4);
  });

  for (const protocolVersion of VERSIONS) {
    test(`v${protocolVersion === 5 ? '5' : '3.1.1'}: mqtts:// → wss:// and wss:// → mqtts:// at QoS 0/1/2`, { skip }, async () => {
      const a = tb.broker.addresses;
      const tlsClient = await client(`mqtts://127.0.0.1:${a.tls as number}`, { protocolVersion, rejectUnauthorized: false, clientId: `tls-${protocolVersion}` });
      const wssClient = await client(`wss://127.0.0.1:${a.wss as number}/mqtt`, { protocolVersion, rejectUnauthorized: false, clientId: `wss-${protocolVersion}` });
      try {
        await tlsClient.subscribeAsync(`secure/${protocolVersion}/to-tls`, { qos: 2 });
        await wssClient.subscribeAsync(`secure/${protocolVersion}/to-wss`, { qos: 2 });
        const toTls = collect(tlsClient, 3);
        const toWss = collect(wssClient, 3);
        for (const qos of QOS) {
          await wssClient.publishAsync(`secure/${protocolVersion}/to-tls`, `wss q${qos}`, { qos });
          await tlsClient.publishAsync(`secure/${protocolVersion}/to-wss`, `tls q${qos}`, { qos });
        }
        const gotTls = await toTls;
        const gotWss = await toWss;
        assert.deepEqual(
          gotTls.map((m) => [m.payload.toString(), m.packet.qos]),
          QOS.map((q) => [`wss q${q}`, q]),
        );
        assert.deepEqual(
          gotWss.map((m) => [m.payload.toString(), m.packet.qos]),
          QOS.map((q) => [`tls q${q}`, q]),
        );
      } finally {
        await Promise.all([tlsClient.endAsync(), wssClient.endAsync()]);
      }
    });
  }

  test('the configured certificate is the one served: it verifies as CA for CN=localhost over TLS and WSS', { skip }, async () => {
    const a = tb.broker.addresses;
    // We dial 127.0.0.1; the certificate names localhost, so SNI / name check use that.
    const sock = tlsConnect({ host: '127.0.0.1', port: a.tls as number, ca: cert, servername: 'localhost', rejectUnauthorized: true });
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', () => resolve());
      sock.once('error', reject);
    });
    assert.equal(sock.authorized, true);
    const overTls = new RawClient(sock, 4);
    assert.equal(((await overTls.connect('tls-verified')) as IConnackPacket).returnCode, 0);
    overTls.end();

    const wssOptions: WebSocket.ClientOptions & { servername: string } = { ca: cert, servername: 'localhost', rejectUnauthorized: true };
    const ws = new WebSocket(`wss://127.0.0.1:${a.wss as number}/mqtt`, 'mqtt', wssOptions);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const overWss = new RawClient(createWebSocketStream(ws), 5);
    assert.equal(((await overWss.connect('wss-verified')) as IConnackPacket).reasonCode, 0);
    overWss.end();
  });

  test('plain MQTT on the TLS port does not get a CONNACK', { skip }, async () => {
    const a = tb.broker.addresses;
    assert.notEqual(await outcome(`mqtt://127.0.0.1:${a.tls as number}`), 'connect');
  });

  test('mosquitto_sub / mosquitto_pub over TLS', { skip: skip || (!existsSync('/usr/bin/mosquitto_sub') && 'mosquitto-clients is not installed') }, async () => {
    const a = tb.broker.addresses;
    const tlsArgs = ['-h', '127.0.0.1', '-p', String(a.tls), '--cafile', join(dir, 'c.pem'), '--insecure', '-V', 'mqttv5'];
    const sub = spawn('/usr/bin/mosquitto_sub', [...tlsArgs, '-i', 'mos-tls', '-t', 'secure/mos', '-q', '1', '-C', '1', '-W', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    sub.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const killer = setTimeout(() => sub.kill('SIGKILL'), 8000);
    const exited = new Promise<number | null>((resolve) => sub.once('close', resolve));
    const deadline = Date.now() + 5000;
    while (!tb.broker.sessions.get('mos-tls')?.subscriptions.has('secure/mos')) {
      if (Date.now() > deadline) throw new Error('mosquitto_sub did not subscribe over TLS');
      await new Promise((r) => setTimeout(r, 10));
    }
    const pubCode = await new Promise<number | null>((resolve) => {
      const p = spawn('/usr/bin/mosquitto_pub', [...tlsArgs, '-t', 'secure/mos', '-q', '1', '-m', 'over tls'], { stdio: 'ignore' });
      const k = setTimeout(() => p.kill('SIGKILL'), 8000);
      p.once('close', (code) => {
        clearTimeout(k);
        resolve(code);
      });
    });
    assert.equal(pubCode, 0);
    assert.equal(await exited, 0);
    clearTimeout(killer);
    assert.equal(out, 'over tls\n');
  });
});

test('a TLS listener without certificate files refuses to start with a clear error', async () => {
  const b = createBroker({ port: 0, host: '127.0.0.1', wsPort: null, config: { 'log.level': 'silent', 'listener.tls.port': 0, 'durable_sessions.enable': false, 'admin.port': -1 } });
  try {
    await assert.rejects(b.listen(), (e: Error) => e.name === 'ConfigError' && /certfile/.test(e.message));
  } finally {
    await b.close(); // listen() had already bound TCP before TLS failed
  }
});
