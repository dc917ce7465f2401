// The drain scenario's ceiling: how fast the harness's drain client (durable-client.ts)
// takes QoS 1 PUBLISH packets when the sender does no work at all — packets pre-encoded,
// only packet id and sequence number patched, a window of W refilled as PUBACKs come back.
// The sender is JavaScript: its own event loop turn is part of each round trip, so this is
// the ceiling of a Node sender, not of the client. A native sender does better: a C sender
// doing the same (poll, one write per batch of PUBACKs) took this client to 1.0–1.5M msg/s
// at window 100–128 on 2026-12-05, above this tool's 0.6M (see the README).
//
//   npm run build && node dist/bench/e2e/ceiling.js [--windows 128,1024] [--msgs 100000] [--runs 5]
import { parseArgs } from 'node:util';
import { noWorkDrain } from './nowork.js';

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
    for (let i = 0; i < runs; i++) rates.push(await noWorkDrain({ msgs, window, payload }));
    rates.sort((a, b) => a - b);
    const k = (r: number): string => `${(r / 1000).toFixed(1)}k`;
    console.log(`window ${String(window).padStart(5)}: median ${k(rates[Math.floor(rates.length / 2)] as number)} msg/s (runs: ${rates.map(k).join(' ')})`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
