/**
 * The async message log's append path in one process, as lpairs drives it (issue 18): per
 * event-loop turn `T` messages are logged (DurableSessions.logMessage + LogRecorder.track), each
 * counted delivered, and acknowledged a turn later (the status counts), on a real store. Per
 * logged message it reports the event loop's busy time and the CPU of everything else in the
 * process (the log's dispatch and writer threads, the counts' worker, V8's helpers), so a change
 * to either side can be compared without the end-to-end run's noise — alternate builds, compare
 * means: the machine's speed drifts between runs.
 *
 * `node dist/bench/native/log-append.bench.js [--per-turn 300] [--turns 4000] [--rounds 4]
 * [--shards 4] [--no-counts] [--no-log]` (`--no-log`: the loop without the log, its floor).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { DurableSessions } from '../../src/persistence/embedded/durable-sessions.js';
import { LogRecorder } from '../../src/msglog/recorder.js';
import { createMessage, type Message } from '../../src/wire/message.js';

const { values: argv } = parseArgs({
  options: {
    'per-turn': { type: 'string', default: '300' },
    turns: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '4' },
    shards: { type: 'string', default: '4' },
    'no-counts': { type: 'boolean', default: false },
    'no-log': { type: 'boolean', default: false },
  },
});
const T = Number(argv['per-turn']);
const TURNS = Number(argv.turns);
const ROUNDS = Number(argv.rounds);

const dir = mkdtempSync(join(tmpdir(), 'stratamq-log-append-'));
const log = pino({ level: 'silent' });
const ds = await DurableSessions.open(dir, { nShards: Number(argv.shards), fsync: 'always' }, log);
const counts = argv['no-counts'] ? null : ds.enableCounts();
const rec = new LogRecorder({ sync: false, ignoreErrors: true, filters: ['#'], keyProperty: '', tagProperty: '', retention: [], sqlPool: '' }, { logged: 0, failed: 0, refused: 0, sqlRows: 0, sqlFailed: 0 }, log);
const payload = Buffer.alloc(64, 1);
const publishers = Array.from({ length: 10 }, (_, i) => `bench-publisher-${i}`);
const topics = Array.from({ length: 10 }, (_, i) => `pairs/${i}`);
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

try {
  for (let round = 0; round < ROUNDS; round++) {
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    let prev: Message[] = [];
    for (let k = 0; k < TURNS; k++) {
      if (counts) for (const m of prev) counts.acked(m, undefined);
      const cur: Message[] = [];
      for (let i = 0; i < T; i++) {
        const m = createMessage(topics[i % 10] as string, payload, 1, false, undefined, publishers[i % 10] as string);
        if (!argv['no-log']) rec.track(ds.messages.logMessage(m), false);
        counts?.delivered(m, undefined, 1);
        cur.push(m);
      }
      prev = cur;
      await turn();
    }
    await ds.endsAfterPending();
    const n = T * TURNS;
    const elu = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const loop = (elu.active * 1e6) / n;
    const all = ((cpu.user + cpu.system) * 1e3) / n;
    console.log(`round ${round}: event loop ${loop.toFixed(0)} ns/msg busy, rest of the process ${Math.max(0, all - loop).toFixed(0)} ns/msg CPU${round === 0 ? ' (warm-up)' : ''}`);
  }
} finally {
  await ds.close();
  rmSync(dir, { recursive: true, force: true });
}
