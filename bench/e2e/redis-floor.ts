// What EMQX's on_message_publish layout costs redis-server itself, per message (issue 16's rpairs):
// the same messages written three ways, each on a fresh redis-server started as the bench starts
// it (redis defaults: RDB snapshots, no AOF), nothing else talking to it.
//
//   npm run bench -- --redis-floor [--redis-messages 300000] [--payload 64]
//
//   plain     HSET mqtt:msg:<id> (7 fields) + ZADD mqtt:msg:<topic> per message, pipelined by
//             ioredis (1000 messages per exec): the layout with no script — the floor a client
//             sending commands can reach
//   grouped   the same HSETs, one ZADD per topic per 250 messages: the fewest commands the
//             layout allows
//   rule      what the broker sends: RedisPool.publishMany (the on_message_publish rule's code),
//             1000 events per call — script calls of 250 messages (PUBLISH_LUA); the events are
//             made before the clock starts (client CPU: packing, ids, sending)
//
// Messages as in rpairs: 10 topics rpairs/<i>, publishers b-pub<i>, the payload size of the run,
// EMQX-style ids. Reported: redis-server CPU (user + system, all its threads, from /proc) per
// message, the client's CPU per message (this process), and INFO commandstats.
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config.js';
import { backendsConfig } from '../../src/backends/config.js';
import { type EventData, eventData } from '../../src/backends/event.js';
import { MessageIds } from '../../src/backends/msgid.js';
import { RedisPool } from '../../src/backends/redis.js';
import { clientSnapshot, messageSnapshot } from '../../src/hooks/index.js';
import { createMessage } from '../../src/wire/message.js';
import { makeTempDir, removeTempDir, startRedis } from './brokers.js';
import { treesCpuSeconds } from './proc.js';

export type FloorWay = 'plain' | 'grouped' | 'rule';

export interface FloorRow {
  way: FloorWay;
  messages: number;
  /** redis-server CPU per message, µs */
  redisUs: number;
  /** this process's CPU per message, µs (the client side of the writes) */
  clientUs: number;
  wallS: number;
  /** bytes redis-server read per message (INFO stats total_net_input_bytes) */
  bytesIn: number;
  keys: number;
  /** INFO commandstats: command → µs per call */
  usecPerCall: Record<string, { calls: number; usecPerCall: number }>;
}

interface Msg {
  id: string;
  topic: string;
  publisher: string;
  receivedAt: number;
  payload: Buffer;
}

function messages(n: number, payloadBytes: number): Msg[] {
  const ids = new MessageIds('bench@127.0.0.1');
  const now = Date.now();
  return Array.from({ length: n }, (_v, i) => {
    const receivedAt = now + Math.floor(i / 100);
    return { id: ids.next(receivedAt), topic: `rpairs/${i % 10}`, publisher: `b-pub${i % 10}`, receivedAt, payload: Buffer.alloc(payloadBytes, 0x61 + (i % 26)) };
  });
}

function fields(m: Msg): (string | Buffer)[] {
  return ['id', m.id, 'from', m.publisher, 'qos', '1', 'topic', m.topic, 'payload', m.payload, 'ts', String(Math.floor(m.receivedAt / 1000)), 'retain', 'false'];
}

/** The rule's events for the messages (as the hook bus hands them to it). */
function events(msgs: readonly Msg[]): EventData[] {
  const ids = new MessageIds('bench@127.0.0.1');
  ids.shared = false;
  return msgs.map((m) => {
    const msg = { ...messageSnapshot(createMessage(m.topic, m.payload, 1, false, undefined, m.publisher)), receivedAt: m.receivedAt };
    const client = clientSnapshot({ clientId: m.publisher, username: undefined, remoteAddress: '127.0.0.1:1', protocolVersion: 4 });
    return eventData('message.publish', [client, msg], 'bench@127.0.0.1', ids);
  });
}

async function writeWay(way: FloorWay, port: number, msgs: readonly Msg[], ruleEvents: readonly EventData[]): Promise<void> {
  if (way === 'rule') {
    const cfg = backendsConfig(loadConfig({ overrides: { 'backend.redis.floor.server': `127.0.0.1:${port}`, 'backend.redis.hook.message.publish.1': '{"topic": "#", "action": {"function": "on_message_publish"}, "pool": "floor"}' } as never })).pools[0];
    if (!cfg) throw new Error('no pool');
    const pool = new RedisPool(cfg, pino({ level: 'silent' }));
    await pool.open();
    try {
      for (let i = 0; i < ruleEvents.length; i += 1000) {
        const failed = (await pool.publishMany(ruleEvents.slice(i, i + 1000))).filter((e) => e !== undefined);
        if (failed.length > 0) throw failed[0];
      }
    } finally {
      await pool.close();
    }
    return;
  }
  const r = new Redis({ host: '127.0.0.1', port });
  try {
    for (let i = 0; i < msgs.length; i += 1000) {
      const p = r.pipeline();
      const byTopic = new Map<string, (string | Buffer)[]>();
      const group = (): void => {
        for (const [topic, z] of byTopic) p.callBuffer('ZADD', [`mqtt:msg:${topic}`, ...z]);
        byTopic.clear();
      };
      for (let j = i; j < Math.min(msgs.length, i + 1000); j++) {
        const m = msgs[j] as Msg;
        p.callBuffer('HSET', [`mqtt:msg:${m.id}`, ...fields(m)]);
        if (way === 'plain') p.callBuffer('ZADD', [`mqtt:msg:${m.topic}`, String(m.receivedAt), m.id]);
        else {
          let z = byTopic.get(m.topic);
          if (!z) byTopic.set(m.topic, (z = []));
          z.push(String(m.receivedAt), m.id);
          if ((j - i) % 250 === 249) group();
        }
      }
      group();
      const res = await p.exec();
      const err = res?.find(([e]) => e !== null)?.[0];
      if (err) throw err;
    }
  } finally {
    r.disconnect();
  }
}

function commandStats(text: string): FloorRow['usecPerCall'] {
  const out: FloorRow['usecPerCall'] = {};
  for (const line of text.split('\n')) {
    const m = /^cmdstat_(\w+):calls=(\d+),usec=\d+,usec_per_call=([\d.]+)/.exec(line.trim());
    if (m && ['hset', 'zadd', 'evalsha', 'eval'].includes(m[1] as string)) out[m[1] as string] = { calls: Number(m[2]), usecPerCall: Number(m[3]) };
  }
  return out;
}

export async function runRedisFloor(n: number, payloadBytes: number, log: (s: string) => void): Promise<FloorRow[]> {
  const msgs = messages(n, payloadBytes);
  const rows: FloorRow[] = [];
  for (const way of ['plain', 'grouped', 'rule'] as const) {
    const dir = makeTempDir(`redis-floor-${way}`);
    const redis = await startRedis(dir);
    try {
      const admin = new Redis({ host: '127.0.0.1', port: redis.port });
      // The rule's events as the hook bus hands them over, made before the clock starts.
      const ruleEvents = way === 'rule' ? events(msgs) : [];
      await admin.config('RESETSTAT');
      const netIn = async (): Promise<number> => Number(/total_net_input_bytes:(\d+)/.exec(await admin.info('stats'))?.[1] ?? 0);
      const in0 = await netIn();
      const cpu0 = treesCpuSeconds([redis.pid]) ?? 0;
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await writeWay(way, redis.port, msgs, ruleEvents);
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      const c = process.cpuUsage(c0);
      const cpu = (treesCpuSeconds([redis.pid]) ?? 0) - cpu0;
      const bytesIn = ((await netIn()) - in0) / n;
      const row: FloorRow = { way, messages: n, redisUs: (1e6 * cpu) / n, clientUs: (c.user + c.system) / n, wallS, bytesIn, keys: await admin.dbsize(), usecPerCall: commandStats(await admin.info('commandstats')) };
      admin.disconnect();
      rows.push(row);
      log(`${way}: redis-server ${row.redisUs.toFixed(2)} us/msg, client ${row.clientUs.toFixed(2)} us/msg, ${bytesIn.toFixed(0)} B/msg sent, ${row.keys} keys, ${wallS.toFixed(1)} s`);
    } finally {
      await redis.stop();
      removeTempDir(dir);
    }
  }
  return rows;
}
