/**
 * `stratamq log query|replay` (SPEC E2, F1): the message log from the command line.
 *
 * - `query` streams the matching entries (JSON lines with --json, else one readable line each) from a
 *   running broker's admin API (GET /api/v1/log), or — with --offline, or --data-dir when the broker
 *   is not reachable — straight from a stopped broker's store, the same reader in this process.
 * - `replay` has a running broker re-publish them (POST /api/v1/log/replays) and shows its progress
 *   (messages, rate, ETA). Ctrl-C stops it after its current batch; `--state FILE` keeps where it got
 *   to, and the same command with the same file resumes from there. A stopped broker cannot
 *   re-publish: replay needs it running.
 *
 * Exit codes as manage.ts: 0 done, 1 refused (a bad query: 400, with the reason) or failed, 2 bad
 * usage, 3 broker not reachable, 4 token refused.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config.js';
import { msglogConfig } from '../msglog/config.js';
import { BATCHES_PER_TURN, entryJson, jsonLines, type LogEntryJson, LogQueryError, type LogQueryInput, openLineReader, openReader, planQuery, turn } from '../msglog/query.js';
import type { ReplayProgress } from '../msglog/replay.js';
import type { DurableSessions } from '../persistence/embedded/durable-sessions.js';
import { api, CliError, EXIT, intArg, readCmd, remote, type RemoteOptions, request, run } from './manage.js';

interface QueryFlags extends RemoteOptions {
  topic: string;
  from?: string;
  to?: string;
  fromOffset?: string;
  toOffset?: string;
  limit?: number;
}

function queryInput(o: QueryFlags): LogQueryInput {
  return { topic: o.topic, from: o.from, to: o.to, fromOffset: o.fromOffset, toOffset: o.toOffset, limit: o.limit };
}

function queryString(q: LogQueryInput): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  return p.toString();
}

/** One entry as a readable line: time, topic, key, QoS, retain, delivery counts, payload. */
function readable(e: LogEntryJson): string {
  const payload = e.encoding === 'utf8' ? e.payload : `base64:${e.payload}`;
  return `${e.time}  ${e.id}  ${e.topic}  key=${e.key}  qos=${e.qos}${e.retain ? '  retained' : ''}  delivered=${e.delivered} acked=${e.acked}  ${payload}`;
}

/** Write to stdout, waiting when it is full (a pipe to a slow reader). */
async function write(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

/** JSON lines from a stream, a line at a time. */
async function* lines(body: Readable): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of body) {
    rest += (chunk as Buffer).toString('utf8');
    let nl = rest.indexOf('\n');
    while (nl >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      nl = rest.indexOf('\n');
    }
  }
  if (rest !== '') yield rest;
}

async function queryOnline(o: QueryFlags): Promise<number> {
  const res = await request(o, 'GET', `/api/v1/log?${queryString(queryInput(o))}`, undefined, null);
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
  let n = 0;
  if (o.json) {
    // The lines as they come, chunk by chunk.
    for await (const chunk of body) {
      const b = chunk as Buffer;
      for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
      if (!process.stdout.write(b)) await once(process.stdout, 'drain');
    }
    return n;
  }
  for await (const line of lines(body)) {
    if (line === '') continue;
    n++;
    await write(`${readable(JSON.parse(line) as LogEntryJson)}\n`);
  }
  return n;
}

async function queryOffline(o: QueryFlags, d: DurableSessions): Promise<number> {
  const key = msglogConfig(loadConfig({ file: o.config, env: process.env })).keyProperty;
  let plan;
  try {
    plan = planQuery(d.store, queryInput(o));
  } catch (e) {
    throw e instanceof LogQueryError ? new CliError(EXIT.failed, e.message) : e;
  }
  let n = 0;
  if (o.json) {
    // The lines as Rust writes them (what the admin API streams).
    const lines = openLineReader(d.store, plan, key);
    for await (const chunk of jsonLines(lines)) {
      if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
    }
    return lines.taken;
  }
  const reader = openReader(d.store, plan, true);
  for (let got = reader.take(1000), k = 1; got.length > 0; got = reader.take(1000), k++) {
    let text = '';
    for (const e of got) text += `${readable(entryJson(e, key))}\n`;
    n += got.length;
    await write(text);
    if (k % BATCHES_PER_TURN === 0) await turn();
  }
  return n;
}

/** What `--state FILE` keeps: the replay as asked, and where it got to. */
interface ReplayStateFile {
  query: LogQueryInput;
  toPrefix: string | undefined;
  rate: number | undefined;
  position: string;
  until: string;
  sent: number;
  done: boolean;
}

function readState(file: string): ReplayStateFile | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ReplayStateFile;
  } catch (e) {
    throw new CliError(EXIT.usage, `--state ${file}: not a replay state file (${(e as Error).message})`);
  }
}

function writeState(file: string, st: ReplayStateFile): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(st, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

interface ReplayFlags extends QueryFlags {
  toPrefix?: string;
  rate?: number;
  state?: string;
  poll: number;
}

async function replay(o: ReplayFlags): Promise<void> {
  let query = queryInput(o);
  let sentBefore = 0;
  const prior = o.state ? readState(o.state) : null;
  if (prior?.done) {
    process.stderr.write(`stratamq: the replay in ${o.state} is complete (${prior.sent} messages); nothing to do\n`);
    return;
  }
  if (prior) {
    // Resume: the same selection, from where it got to, up to where it was to end.
    query = { ...prior.query, from: undefined, to: undefined, fromOffset: prior.position, toOffset: prior.until, limit: prior.query.limit !== undefined ? prior.query.limit - prior.sent : undefined };
    sentBefore = prior.sent;
    process.stderr.write(`resuming from ${prior.position} (${prior.sent} messages replayed before)\n`);
  }
  const toPrefix = prior ? prior.toPrefix : o.toPrefix;
  const rate = prior ? prior.rate : o.rate;
  let p = (await api(o, 'POST', '/api/v1/log/replays', { ...query, toPrefix, rate })) as ReplayProgress;
  const save = (done: boolean): void => {
    if (o.state) writeState(o.state, { query: prior ? prior.query : queryInput(o), toPrefix, rate, position: p.position, until: p.until, sent: sentBefore + p.sent, done });
  };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: '{bar} {value}/{total} messages | {rate} msg/s | ETA {etas}', noTTYOutput: true, notTTYSchedule: 1000, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const eta = (s: number | null): string => (s === null ? '?' : s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`);
  bar.start(p.total ?? 0, p.sent, { rate: 0, etas: '?' });
  let interrupted = false;
  const onSigint = (): void => {
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  try {
    while (p.state === 'running') {
      await new Promise((r) => setTimeout(r, o.poll));
      p = (await api(o, 'GET', `/api/v1/log/replays/${encodeURIComponent(p.id)}`)) as ReplayProgress;
      if (interrupted && p.state === 'running') p = (await api(o, 'DELETE', `/api/v1/log/replays/${encodeURIComponent(p.id)}`)) as ReplayProgress;
      if (p.total !== null) bar.setTotal(p.total);
      bar.update(p.sent, { rate: p.rate, etas: eta(p.etaSeconds) });
      save(false);
    }
  } finally {
    process.off('SIGINT', onSigint);
    bar.stop();
  }
  save(p.state === 'done');
  const summary = { ...p, sent: sentBefore + p.sent };
  if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  if (p.state === 'failed') throw new CliError(EXIT.failed, `replay failed after ${summary.sent} messages: ${p.error ?? 'unknown error'}; resume from ${p.position}`);
  if (p.state === 'stopped') {
    const how = o.state ? `the same command with --state ${o.state}` : `--from-offset ${p.position} --to-offset ${p.until}`;
    process.stderr.write(`stopped after ${summary.sent} messages; resume with ${how}\n`);
    return;
  }
  if (!o.json) process.stdout.write(`replayed ${summary.sent} messages\n`);
}

function selection(cmd: Command): Command {
  return cmd
    .requiredOption('--topic <filter>', 'topic filter')
    .option('--from <time>', 'from this time (RFC 3339, e.g. 2026-01-31T12:00:00Z, or ms since the epoch), inclusive')
    .option('--to <time>', 'up to this time, inclusive')
    .option('--from-offset <position>', 'from this offset: N (every shard) or shard:offset,… (a position a replay reported)')
    .option('--to-offset <position>', 'stop before this position')
    .option('--limit <n>', 'at most this many messages', intArg);
}

export function registerLog(program: Command): void {
  const log = program.command('log').description('the message log (msglog.topics): query and replay');
  remote(selection(log.command('query').description('logged messages of a topic filter in a time or offset range, oldest first (JSON lines with --json), from a running broker or a stopped one\'s store (--offline)')), true).action(
    run(async (o: QueryFlags) => {
      const n = await readCmd(o, () => queryOnline(o), (d) => queryOffline(o, d));
      if (!o.json) process.stderr.write(`(${n} messages)\n`);
    }),
  );
  remote(selection(log.command('replay').description('have a running broker re-publish logged messages (to their topics, or under --to-prefix), with progress; resumable with --state')), false)
    .option('--to-prefix <prefix>', 'publish to <prefix><topic> instead of the message\'s own topic')
    .option('--rate <n>', 'messages per second at most (default: as fast as they are stored)', intArg)
    .option('--state <file>', 'keep where the replay got to in this file; the same command with it resumes from there')
    .option('--poll <ms>', 'how often the progress is asked for', intArg, 250)
    .action(run(replay));
}
