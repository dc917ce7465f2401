/**
 * One slow subscriber among fast ones (mqtt.fair_inflow, session/inflow.ts): a QoS 1 publisher
 * keeping `--window` messages unacknowledged publishes to `--fast` subscribers that acknowledge
 * everything at once and one that acknowledges `--slow-rate` a second; the broker runs with
 * mqtt.fair_inflow on, then off. Per setting it prints what the publisher got acknowledged, what
 * each fast subscriber received, what the slow one received, the drops and holds, and the
 * process's RSS (the second run's includes what the first left). In one process (broker and raw
 * clients on one event loop, like bench:log-append): compare the two lines of one run, not with
 * the e2e table.
 *
 * `node dist/bench/e2e/slow-consumer.js [--fast 20] [--slow-rate 200] [--window 1000] [--seconds 5]`
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import { createBroker } from '../../src/index.js';

const { generate, parser } = mqttPacket;
const { values: argv } = parseArgs({
  options: {
    fast: { type: 'string', default: '20' },
    'slow-rate': { type: 'string', default: '200' },
    window: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
  },
});
const FAST = Number(argv.fast);
const SLOW_RATE = Number(argv['slow-rate']);
const WINDOW = Number(argv.window);
const SECONDS = Number(argv.seconds);

async function client(port: number, id: string, on: (p: Packet, s: Socket) => void): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.setNoDelay(true);
  const p = parser({ protocolVersion: 4 });
  let connack: () => void = () => undefined;
  const acked = new Promise<void>((r) => (connack = r));
  p.on('packet', (pk: Packet) => (pk.cmd === 'connack' ? connack() : on(pk, s)));
  s.on('data', (b: Buffer) => p.parse(b));
  s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, clean: true, keepalive: 60 }));
  await acked;
  return s;
}

async function run(fair: boolean): Promise<string> {
  const broker = createBroker({ port: 0, host: '127.0.0.1', wsPort: null, config: { 'log.level': 'silent', 'admin.port': -1, 'durable_sessions.enable': false, 'mqtt.fair_inflow': fair } });
  const port = (await broker.listen()).tcp as number;
  const sockets: Socket[] = [];
  let fastGot = 0;
  let slowGot = 0;
  for (let i = 0; i < FAST; i++) {
    const s = await client(port, `fast-${i}`, (pk, s) => {
      if (pk.cmd !== 'publish') return;
      fastGot++;
      s.write(generate({ cmd: 'puback', messageId: pk.messageId as number }));
    });
    s.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/slow', qos: 1 }] }));
    sockets.push(s);
  }
  const unacked: number[] = [];
  const slow = await client(port, 'slow', (pk) => {
    if (pk.cmd !== 'publish') return;
    slowGot++;
    unacked.push(pk.messageId as number);
  });
  slow.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/slow', qos: 1 }] }));
  sockets.push(slow);
  const perTick = Math.max(1, Math.round(SLOW_RATE / 100));
  const slowAcks = setInterval(() => {
    for (let i = 0; i < perTick && unacked.length > 0; i++) slow.write(generate({ cmd: 'puback', messageId: unacked.shift() as number }));
  }, 10);
  await new Promise((r) => setTimeout(r, 200));
  let acked = 0;
  let sent = 0;
  let id = 0;
  const payload = Buffer.alloc(64);
  const pub = await client(port, 'pub', (pk) => {
    if (pk.cmd !== 'puback') return;
    acked++;
    fill();
  });
  sockets.push(pub);
  function fill(): void {
    const out: Buffer[] = [];
    while (sent - acked < WINDOW) {
      id = (id % 65535) + 1;
      out.push(generate({ cmd: 'publish', topic: 'bench/slow', payload, qos: 1, messageId: id, dup: false, retain: false } as IPublishPacket));
      sent++;
    }
    if (out.length > 0) pub.write(Buffer.concat(out));
  }
  fill();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const s = (performance.now() - t0) / 1000;
  const line = `mqtt.fair_inflow ${fair ? 'on ' : 'off'}: publisher acknowledged ${(acked / s / 1000).toFixed(1)}k msg/s; each fast subscriber received ${(fastGot / FAST / s / 1000).toFixed(1)}k msg/s; the slow one ${(slowGot / s).toFixed(0)} msg/s; dropped ${broker.metrics.dropReasons.queueFull}; holds ${broker.metrics.inflowHolds}; RSS ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`;
  clearInterval(slowAcks);
  for (const x of sockets) x.destroy();
  await broker.close();
  return line;
}

console.log(`1 QoS 1 publisher (window ${WINDOW}) -> ${FAST} subscribers acknowledging at once + 1 acknowledging ${SLOW_RATE} msg/s, ${SECONDS} s each`);
console.log(await run(true));
console.log(await run(false));
