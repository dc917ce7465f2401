// A drain sender that does no work at all: packets pre-encoded, only packet id and sequence
// number patched, a window of W refilled as PUBACKs come back. ceiling.ts measures the drain
// client against it; the durable bench drains it once before the brokers so the client's code
// is compiled (warm) for every broker alike.
//
// The sender runs in a worker thread (its own core); the client in the calling thread, timed
// as the drain scenario times it: from connecting to the last message received.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { RawClient, SeqSet } from './durable-client.js';

export interface SenderInit {
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

/** One drain of `init.msgs` messages from the no-work sender; returns messages per second. */
export async function noWorkDrain(init: SenderInit): Promise<number> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { nowork: init } });
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


if (!isMainThread && (workerData as { nowork?: SenderInit } | null)?.nowork) sender((workerData as { nowork: SenderInit }).nowork);
