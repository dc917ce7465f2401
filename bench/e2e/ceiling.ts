// The drain scenario's ceiling: how fast the harness's drain client (durable-client.ts)
// takes QoS 1 PUBLISH packets when the sender does no work at all — packets pre-encoded,
// only packet id and sequence number patched, a window of W refilled as PUBACKs come back.
// No broker can show a higher drain rate with this client at this window on this machine,
// so a drain target above it measures the client, not the broker.
//
// The sender runs in a worker thread (its own core); the client in the main thread, as in
// the drain scenario, timed the same way: from connecting to the last message received.
//
//   npm run build && node dist/bench/e2e/ceiling.js [--windows 128,1024] [--msgs 100000] [--runs 5]
import net from 'node:net';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { RawClient, SeqSet } from './durable-client.js';

interface SenderInit {
  msgs: number;
  window: number;
  payload: number;
}

const TOPIC = Buffer.from('drain/t');

/** Serve one connection: CONNACK, then `msgs` QoS 1 PUBLISH packets, `window` unacknowledged. */
function sender({ msgs, window, payload }: SenderInit): void {
  const remaining = 2 + TOPIC.length + 2 + payload;
  if (remaining > 127) throw new Error('payload too large for a one-byte remaining length');
  const size = 2 + remaining;
  const idAt = 4 + TOPIC.length;
  const ring = 65535; // one pre-encoded packet per packet id
  const packets = Buffer.alloc(size * ring);
  for (let k = 0; k < ring; k++) {
    const o = k * size;
    packets[o] = 0x32; // PUBLISH, QoS 1
    packets[o + 1] = remaining;
    packets.writeUInt16BE(TOPIC.length, o + 2);
    TOPIC.copy(packets, o + 4);
    packets.writeUInt16BE(k + 1, o + idAt);
  }
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    let sent = 0;
    let inflight = 0;
    let connected = false;
    const fill = (): void => {
      let n = Math.min(window - inflight, msgs - sent);
      const out: Buffer[] = [];
      while (n > 0) {
        const at = sent % ring;
        const k = Math.min(n, ring - at);
        for (let j = 0; j < k; j++) packets.writeUInt32BE(sent + j, (at + j) * size + idAt + 2);
        out.push(Buffer.from(packets.subarray(at * size, (at + k) * size)));
        sent += k;
        inflight += k;
        n -= k;
      }
      if (out.length > 0) s.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
    };
    s.on('data', (chunk: Buffer) => {
      if (!connected) {
        connected = true; // the CONNECT
        s.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
        fill();
        return;
      }
      inflight -= chunk.length >> 2; // PUBACKs, 4 bytes each
      fill();
    });
    s.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1', () => parentPort?.postMessage((server.address() as net.AddressInfo).port));
}

async function measure(init: SenderInit): Promise<number> {
  const worker = new Worker(new URL(import.meta.url), { workerData: init });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const seen = new SeqSet();
    let done: () => void = () => undefined;
    const all = new Promise<void>((r) => (done = r));
    const t0 = performance.now();
    const c = await RawClient.connect({ host: '127.0.0.1', port, clientId: 'ceiling', clean: false }, 10_000, (cl) => {
      cl.onMessage = (seq) => {
        if (seen.add(seq) && seen.size >= init.msgs) done();
      };
    });
    await all;
    const ms = performance.now() - t0;
    c.destroy();
    return (init.msgs / ms) * 1000;
  } finally {
    await worker.terminate();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      windows: { type: 'string', default: '128,1024' },
      msgs: { type: 'string', default: '100000' },
      runs: { type: 'string', default: '5' },
      payload: { type: 'string', default: '64' },
    },
  });
  const msgs = Number(values.msgs);
  const runs = Number(values.runs);
  const payload = Math.max(16, Number(values.payload));
  console.log(`drain client ceiling: ${msgs} QoS 1 messages of ${payload} B from a sender that does no work, ${runs} runs`);
  for (const window of values.windows.split(',').map(Number)) {
    const rates: number[] = [];
    for (let i = 0; i < runs; i++) rates.push(await measure({ msgs, window, payload }));
    rates.sort((a, b) => a - b);
    const k = (r: number): string => `${(r / 1000).toFixed(1)}k`;
    console.log(`window ${String(window).padStart(5)}: median ${k(rates[Math.floor(rates.length / 2)] as number)} msg/s (runs: ${rates.map(k).join(' ')})`);
  }
}

if (isMainThread) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
} else {
  sender(workerData as SenderInit);
}
