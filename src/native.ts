/**
 * The only importer of the generated binding (native/binding.js). Everything else in
 * src/ sees this typed facade. Errors thrown by the core carry a stable code prefix
 * ("ERR_…: message") which `wrapNativeError` turns into a `NativeError` with `.code`.
 * That includes `ERR_PANIC`: a Rust panic the binding caught ("panic in <Operation>: …",
 * a bug) — that call failed, the process and every other call carry on.
 */
import { createRequire } from 'node:module';
import type * as Binding from '../native/binding.js';

const require = createRequire(import.meta.url);

/** The package's version (package.json at the package root, two levels above dist/src/native.js). */
export const PACKAGE_VERSION: string = (() => {
  try {
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

/**
 * The prebuilt native packages, one per target (package.json `napi.targets`; `npm/<dir>/`):
 * what the generated loader looks for on each platform, arch and libc.
 */
export const NATIVE_PACKAGES: readonly { platform: string; arch: string; libc: 'glibc' | 'musl' | null; name: string }[] = [
  { platform: 'linux', arch: 'x64', libc: 'glibc', name: '@stratamq/native-linux-x64-gnu' },
  { platform: 'linux', arch: 'arm64', libc: 'glibc', name: '@stratamq/native-linux-arm64-gnu' },
  { platform: 'linux', arch: 'x64', libc: 'musl', name: '@stratamq/native-linux-x64-musl' },
  { platform: 'darwin', arch: 'x64', libc: null, name: '@stratamq/native-darwin-x64' },
  { platform: 'darwin', arch: 'arm64', libc: null, name: '@stratamq/native-darwin-arm64' },
  { platform: 'win32', arch: 'x64', libc: null, name: '@stratamq/native-win32-x64-msvc' },
];

/** Where this process runs, as the loader tells the native packages apart. */
export interface Host {
  platform: string;
  arch: string;
  /** Linux only: glibc or musl (null elsewhere, or when it cannot be told). */
  libc: 'glibc' | 'musl' | null;
}

export function currentHost(): Host {
  let libc: Host['libc'] = null;
  if (process.platform === 'linux') {
    try {
      const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
      libc = header?.glibcVersionRuntime ? 'glibc' : 'musl';
    } catch {
      libc = null;
    }
  }
  return { platform: process.platform, arch: process.arch, libc };
}

/** The messages of an error and its `cause` chain (first line of each: no require stacks). */
function errorChain(e: unknown): string[] {
  const out: string[] = [];
  for (let cur: unknown = e, n = 0; cur !== null && cur !== undefined && n < 32; n++) {
    const msg = cur instanceof Error ? cur.message : String(cur);
    out.push(msg.split('\n')[0] as string);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return out;
}

/**
 * The error a failed load of the native core becomes: it names the platform, arch and libc,
 * what the generated loader tried (from the errors it chained as `cause`), the package that
 * fits (or that none does) and how to build from source. `loaderError` is what
 * native/binding.js threw.
 */
export function bindingLoadError(loaderError: unknown, host: Host, version: string): Error {
  // The loader chains its errors last first: in the order it tried, they are the chain reversed.
  const chain = errorChain(loaderError).slice(1).reverse();
  const tried: string[] = [];
  for (const m of chain) {
    const hit = /Cannot find module '([^']+)'/.exec(m);
    const what = hit ? (hit[1] as string).replace(/^\.\//, 'native/') : null;
    if (what && !tried.includes(what)) tried.push(what);
  }
  const where = `${host.platform}-${host.arch}${host.libc ? ` (${host.libc})` : ''}`;
  const fits = NATIVE_PACKAGES.find((p) => p.platform === host.platform && p.arch === host.arch && (p.libc === null || host.libc === null || p.libc === host.libc));
  const lines = [`StrataMQ ${version} cannot load its native core (a Rust addon) on ${where}.`];
  lines.push(tried.length > 0 ? `Tried: ${tried.join(', ')}.` : 'Tried: nothing (no native package is built for this platform and architecture).');
  if (fits) {
    lines.push(
      `The prebuilt package for ${where} is ${fits.name}@${version}, an optional dependency of stratamq: it is missing or did not load.`,
      'Reinstall without --omit=optional / --no-optional (if it still is missing, remove node_modules and package-lock.json first: npm bug https://github.com/npm/cli/issues/4828).',
    );
  } else {
    lines.push(`No prebuilt package fits ${where}; there are ${NATIVE_PACKAGES.map((p) => `${p.name.slice('@stratamq/native-'.length)}`).join(', ')}.`);
  }
  lines.push(
    'Or build from source (needs Node.js and a Rust toolchain with cargo, https://rustup.rs):',
    '  git clone <the StrataMQ repository> stratamq && cd stratamq',
    '  npm install        # its `prepare` script builds the addon with cargo, then the TypeScript',
    '  npx stratamq start',
  );
  const detail = chain.filter((m) => m.length > 0 && !m.startsWith('Cannot find module'));
  lines.push(`Loader: ${errorChain(loaderError)[0] ?? ''}${detail.length > 0 ? ` (${detail.join(' | ')})` : ''}`);
  const err = new Error(lines.join('\n'), { cause: loaderError });
  (err as NodeJS.ErrnoException).code = 'ERR_NATIVE_LOAD';
  return err;
}

function loadBinding(): typeof Binding {
  // From dist/src/native.js and from src/native.ts alike, the binding is two levels up.
  for (const p of ['../../native/binding.js', '../native/binding.js']) {
    try {
      return require(p) as typeof Binding;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String((e as Error).message).includes('binding.js')) continue;
      throw bindingLoadError(e, currentHost(), PACKAGE_VERSION);
    }
  }
  throw new Error('StrataMQ native loader (native/binding.js) not found: the package is incomplete; reinstall it');
}

const binding = loadBinding();

/** The file the native core was loaded from (a prebuilt package's, or native/ in a build from source). */
export const NATIVE_PATH: string | null = Object.values(require.cache).find((m) => m?.exports === binding && m.filename.endsWith('.node'))?.filename ?? null;

/**
 * The data layouts the core defines (`layouts()` of the binding: docs/storage.md): the
 * batch-fetch entry, the progress record, the packed append buffer, replay results and the
 * drain loop's in-flight arrays, the retained record. TypeScript reads them from here; nothing restates them.
 */
export const LAYOUTS: Binding.Layouts = binding.layouts();


/** An error of the native core; `code` is its stable code (ERR_STORE_IO, …, ERR_PANIC). */
export class NativeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NativeError';
  }
}

export function wrapNativeError(e: unknown): unknown {
  if (e instanceof Error) {
    const m = /^(ERR_[A-Z_]+): ?(.*)$/s.exec(e.message);
    if (m) return new NativeError(m[1] as string, m[2] as string);
  }
  return e;
}

/** What TopicTrie.match returns for a topic nobody subscribes to. */
const NO_IDS = new Uint32Array(0);

/** Subscription trie: filters map to numeric subscription ids kept by the broker. */
export class TopicTrie {
  private readonly inner = wrapSync(() => new binding.TopicTrie());

  /** Add `id` under `filter` (may be `$share/group/filter`). Returns false if already there. */
  subscribe(filter: string, id: number): boolean {
    try {
      return this.inner.subscribe(filter, id);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  unsubscribe(filter: string, id: number): boolean {
    try {
      return this.inner.unsubscribe(filter, id);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  /** Where match writes its ids (grown when a topic matches more). */
  private scratch = new Uint32Array(64);

  /**
   * Ids of every matching plain subscription plus one member per matching shared group: a view
   * of this trie's scratch array, valid until its next match (copy it to keep it).
   */
  match(topic: string): Uint32Array {
    try {
      let n = this.inner.matchInto(topic, this.scratch);
      if (n > this.scratch.length) {
        this.scratch = new Uint32Array(Math.max(n, this.scratch.length * 2));
        n = this.inner.matchInto(topic, this.scratch);
      }
      // No match (a topic nobody subscribes to): one shared empty array, not a view per call.
      return n === 0 ? NO_IDS : this.scratch.subarray(0, n);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  get size(): number {
    return wrapSync(() => this.inner.size);
  }
}

/** A retained message as its record holds it (the topic is its key). */
export interface RetainedRecord {
  publisher: string;
  qos: 0 | 1 | 2;
  receivedAt: number;
  /** encodeProperties bytes (empty: none). */
  properties: Buffer;
  payload: Buffer;
}

/**
 * Retained messages in Rust-owned memory (the retained tree with each topic's record, layout
 * LAYOUTS.retained): payloads wait there and cross to JavaScript only when matched, in one
 * batch per filter.
 */
export class RetainedMessages {
  /** The binding object (for DurableStore.loadRetained). */
  readonly inner = wrapSync(() => new binding.RetainedMessages());

  set(topic: string, record: Buffer): void {
    wrapSync(() => this.inner.set(topic, record));
  }

  /**
   * Retained-table writes packed in the metadata layout (MetaPacker) into the tree, one call for
   * a batch; returns those applied (a put whose topic is not a valid name is refused, skipped).
   */
  applyPacked(ops: Buffer): number {
    return wrapSync(() => this.inner.applyPacked(ops));
  }

  delete(topic: string): boolean {
    return wrapSync(() => this.inner.delete(topic));
  }

  get(topic: string): RetainedRecord | null {
    const rec = wrapSync(() => this.inner.get(topic));
    return rec ? decodeRetainedRecord(rec, 0, rec.length) : null;
  }

  /** The topics matching `filter`, without their records (for a delivery in pages: `records`). */
  matchTopics(filter: string): RetainedTopics {
    const { buffer, offsets } = wrapSync(() => this.inner.matchTopics(filter));
    return { buffer, offsets, count: offsets.length - 1 };
  }

  /** The records of topics `from..to` of `topics` as they are now (those cleared meanwhile left out). */
  records(topics: RetainedTopics, from: number, to: number): { topic: string; record: RetainedRecord }[] {
    return unbatch(wrapSync(() => this.inner.records(topics.buffer, topics.offsets, from, to)));
  }

  /**
   * The records of topics `from..to` of `topics` as QoS 0 PUBLISH packets with RETAIN set, for a
   * subscription of `maxQos` by a client of `version` accepting packets up to `maxPacket` bytes
   * (see RetainedFrames).
   */
  frames(topics: RetainedTopics, from: number, to: number, maxQos: number, version: number, maxPacket: number): RetainedFrames {
    const p = wrapSync(() => this.inner.frames(topics.buffer, topics.offsets, from, to, maxQos, version === 5, Math.min(maxPacket, 0xffffffff)));
    return { frames: p.frames, sent: p.sent, tooLarge: p.tooLarge, special: p.specialOffsets.length > 1 ? unbatch({ buffer: p.special, offsets: p.specialOffsets }) : [] };
  }

  get size(): number {
    return wrapSync(() => this.inner.size);
  }
}

/** A page of retained messages framed for a QoS 0 delivery (RetainedMessages.frames). */
export interface RetainedFrames {
  /** PUBLISH packets (QoS 0, RETAIN set, no properties), back to back. */
  frames: Buffer;
  /** Packets in `frames`. */
  sent: number;
  /** Messages left out as larger than the client's Maximum Packet Size. */
  tooLarge: number;
  /** Messages not framed (with properties, or delivered at QoS 1/2): for the caller to send after `frames`. */
  special: { topic: string; record: RetainedRecord }[];
}

const RETAINED = LAYOUTS.retained;

/** Topics matching a filter (RetainedMessages.matchTopics): back to back in `buffer`, `count` + 1 boundaries. */
export interface RetainedTopics {
  readonly buffer: Buffer;
  readonly offsets: Uint32Array;
  readonly count: number;
}

/** A batch of matches (LAYOUTS.retained: topic length, topic, record per entry) as topics and records (views into it). */
function unbatch({ buffer, offsets }: { buffer: Buffer; offsets: Uint32Array }): { topic: string; record: RetainedRecord }[] {
  const out: { topic: string; record: RetainedRecord }[] = [];
  for (let i = 0; i + 1 < offsets.length; i++) out.push(batchEntry(buffer, offsets[i] as number, offsets[i + 1] as number));
  return out;
}

/** One batch entry in `buffer[at, end)`: the topic length (u16 LE), the topic, the record. */
function batchEntry(buffer: Buffer, at: number, end: number): { topic: string; record: RetainedRecord } {
  const tl = buffer.readUInt16LE(at);
  const t0 = at + RETAINED.batchTopicLen;
  return { topic: buffer.toString('utf8', t0, t0 + tl), record: decodeRetainedRecord(buffer, t0 + tl, end) };
}

/** A retained message's record (LAYOUTS.retained): what RetainedMessages and the store's `retained` table hold. */
export function encodeRetainedRecord(publisher: string, qos: 0 | 1 | 2, receivedAt: number, properties: Buffer | null, payload: Buffer): Buffer {
  const room = Buffer.allocUnsafe(RETAINED.header + 3 * publisher.length + (properties?.length ?? 0) + payload.length);
  return room.subarray(0, writeRetainedRecord(room, 0, publisher, qos, receivedAt, properties, payload));
}

/**
 * A retained record written into `b` at `at` (room enough for 3 bytes per UTF-16 unit of the
 * publisher: the caller's); returns its length. In place: no buffer for the publisher, no
 * BigInt for the time.
 */
function writeRetainedRecord(b: Buffer, at: number, publisher: string, qos: 0 | 1 | 2, receivedAt: number, properties: Buffer | null, payload: Buffer): number {
  const R = RETAINED;
  b[at] = R.version;
  b[at + R.qos] = qos;
  b.writeUInt32LE(receivedAt % 0x100000000, at + R.receivedAt); // u64 LE: ms since the epoch < 2^53
  b.writeUInt32LE(Math.floor(receivedAt / 0x100000000), at + R.receivedAt + 4);
  let o = at + R.header;
  const pubLen = writeString(b, publisher, o);
  o += pubLen;
  const propsLen = properties === null ? 0 : properties.copy(b, o);
  o += propsLen;
  o += payload.copy(b, o);
  b.writeUInt16LE(pubLen, at + R.publisherLen);
  b.writeUInt32LE(propsLen, at + R.propertiesLen);
  return o - at;
}

/** The record in `buf[at, end)`; payload and properties are views into `buf`. */
export function decodeRetainedRecord(buf: Buffer, at: number, end: number): RetainedRecord {
  const R = RETAINED;
  const publ = buf.readUInt16LE(at + R.publisherLen);
  const prl = buf.readUInt32LE(at + R.propertiesLen);
  const p0 = at + R.header;
  return {
    publisher: buf.toString('utf8', p0, p0 + publ),
    qos: buf[at + R.qos] as 0 | 1 | 2,
    receivedAt: Number(buf.readBigUInt64LE(at + R.receivedAt)),
    properties: buf.subarray(p0 + publ, p0 + publ + prl),
    payload: buf.subarray(p0 + publ + prl, end),
  };
}

/** null when valid, else the reason ([MQTT-4.7.3-1], [MQTT-4.7.1-1], [MQTT-4.7.3-2]). */
export function validateTopicName(topic: string): string | null {
  try {
    return binding.validateTopicName(topic) ?? null;
  } catch (e) {
    throw wrapNativeError(e);
  }
}

/** null when valid, else the reason. Accepts `$share/group/filter`. */
export function validateTopicFilter(filter: string): string | null {
  try {
    return binding.validateTopicFilter(filter) ?? null;
  } catch (e) {
    throw wrapNativeError(e);
  }
}

/** The native core's version (its crate's, compiled in). */
export const coreVersion: string = binding.coreVersion();

/**
 * null when the native core and the package are the same version, else what is wrong and how
 * to fix it. A core from another version may lay out its records and buffers differently from
 * what this TypeScript reads, so the broker refuses to start with one.
 */
export function versionMismatch(packageVersion: string, core: string, nativePath: string | null = NATIVE_PATH): string | null {
  if (packageVersion === core) return null;
  return (
    `the native core is version ${core} but the stratamq package is ${packageVersion}` +
    `${nativePath ? ` (core loaded from ${nativePath})` : ''}: ` +
    `reinstall stratamq so that its native package is the same version (npm install stratamq@${packageVersion}), ` +
    'or, in a clone, rebuild the addon (npm run build:native)'
  );
}

/** Throws (code ERR_VERSION_MISMATCH) when the native core is not the package's version. */
export function assertCoreVersion(packageVersion: string = PACKAGE_VERSION, core: string = coreVersion): void {
  const why = versionMismatch(packageVersion, core);
  if (why) {
    const err = new Error(why);
    (err as NodeJS.ErrnoException).code = 'ERR_VERSION_MISMATCH';
    throw err;
  }
}

/**
 * Test only (fault injection): the native site `site` panics the next time it runs, once, so
 * the binding's guard turns it into an ERR_PANIC error; null disarms. Sites are listed in
 * docs/storage.md, "Errors". Returns the site still armed (it has not fired), or null.
 */
export function testInjectPanic(site: string | null): string | null {
  return binding.testInjectPanic(site);
}

// ---- durable store ----------------------------------------------------------------------

export type StoreOpenOptions = Binding.StoreOptions;
export type StoreStats = Binding.StoreStats;
export type RecoveryInfo = Binding.RecoveryInfo;

/**
 * Records gone from the store (docs/storage.md, "Losses"): offsets `from..to` of a shard, or
 * metadata (`shard` null). Kept in the store's `losses` table so each is reported once.
 */
export interface LossInfo {
  shard: number | null;
  from: number;
  to: number | null;
  records: number | null;
  file: string;
  reason: string;
  foundMs: number;
}

/** What opening (or checking) a store found: `damaged` beyond a crash's leftovers, one line per finding. */
export interface StoreReport {
  damaged: boolean;
  summary: string[];
  events: string[];
  /** New losses (an open) or every loss found (a check). */
  losses: LossInfo[];
}

function parseLosses(json: string[]): LossInfo[] {
  return json.map((j) => JSON.parse(j) as LossInfo);
}

function report(r: Binding.StoreReportInfo): StoreReport {
  return { damaged: r.damaged, summary: r.summary, events: r.events, losses: parseLosses(r.losses) };
}
/** One shard of a `replay` call: where to start, where to stop, each subscription's start offset. */
export type ReplayShard = Binding.ReplayShardArg;
export type ReplaySub = Binding.ReplaySubArg;
/**
 * Deliveries of a `replay` call as PUBLISH packets back to back in `buffer`; per packet
 * REPLAY_STRIDE values in `meta` (REPLAY_* indexes); per shard requested `next` and `status`
 * (the REPLAY_STATUS_* values).
 */
export type ReplayResult = Binding.ReplayResult;
export type DrainControl = Binding.DrainControl;
export type DrainHandback = Binding.DrainHandback;
/** Values per in-flight delivery in the drain loop's arrays: packet id, shard, offset, retain (LAYOUTS.inflight). */
export const DRAIN_QUAD = LAYOUTS.inflight.quad;
export const REPLAY_STRIDE = LAYOUTS.replay.stride;
export const REPLAY_SHARD = LAYOUTS.replay.shard;
export const REPLAY_OFFSET = LAYOUTS.replay.offset;
export const REPLAY_TS = LAYOUTS.replay.timestamp;
export const REPLAY_END = LAYOUTS.replay.end;
export const REPLAY_ID_POS = LAYOUTS.replay.idPos;
export const REPLAY_PAYLOAD = LAYOUTS.replay.payloadLen;
export const REPLAY_STATUS_NEXT = LAYOUTS.replay.statusNext;
export const REPLAY_STATUS_DONE = LAYOUTS.replay.statusDone;
export const REPLAY_STATUS_UNTIL = LAYOUTS.replay.statusUntil;
export const REPLAY_STATUS_SLOW = LAYOUTS.replay.statusSlow;
/**
 * Give the allocator's free memory back to the system (glibc's `malloc_trim(0)`: the free pages
 * of every malloc arena, the store's writer threads' included); true when some was released.
 * Elsewhere nothing (false).
 */
export function releaseFreeMemory(): boolean {
  return binding.releaseFreeMemory();
}
/** Whether this build has the native drain loop (Linux); elsewhere sessions drain on the event loop. */
export const NATIVE_DRAIN_SUPPORTED: boolean = binding.nativeDrainSupported();
export type MetaTable = 'sessions' | 'subscriptions' | 'inbound_qos2' | 'progress' | 'retained' | 'system' | 'losses';
/** A metadata write; a string key is its UTF-8 bytes (written straight into the packed batch). */
export type MetaOp =
  | { op: 'put'; table: MetaTable; key: Buffer | string; value: Buffer }
  | { op: 'delete' | 'deletePrefix'; table: MetaTable; key: Buffer | string };

const META_OPS = LAYOUTS.metaOps;
const META_TABLE_INDEX = new Map<string, number>(META_OPS.tables.map((t, i) => [t, i]));
const META_KIND = { put: META_OPS.put, delete: META_OPS.delete, deletePrefix: META_OPS.deletePrefix } as const;

const RETAINED_TABLE = META_TABLE_INDEX.get('retained') as number;

/**
 * A buffer that records are packed into as they come, grown as needed and reused batch after
 * batch (Packer, MetaPacker): no object per record, no buffer per batch.
 */
abstract class PackBuffer {
  protected buf: Buffer;
  /** Bytes packed. */
  length = 0;
  /** Records packed. */
  count = 0;

  constructor(private readonly initial: number) {
    this.buf = Buffer.allocUnsafeSlow(initial);
  }

  /** The packed bytes: a view, valid until the next write or `reset`. */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  /** Empty again (a buffer grown past 16 times its first size is let go). */
  reset(): void {
    this.length = 0;
    this.count = 0;
    if (this.buf.length > 16 * this.initial) this.buf = Buffer.allocUnsafeSlow(this.initial);
  }

  /** Back to `length` bytes and `count` records (a `length` and `count` read before): what came after dropped. */
  truncate(length: number, count: number): void {
    this.length = length;
    this.count = count;
  }

  /** Room for `need` bytes in all. */
  protected room(need: number): void {
    if (need <= this.buf.length) return;
    const b = Buffer.allocUnsafeSlow(Math.max(need, 2 * this.buf.length));
    this.buf.copy(b, 0, 0, this.length);
    this.buf = b;
  }
}

/**
 * Metadata writes packed in the `metaApplyPacked` layout (LAYOUTS.metaOps) as they come, into
 * one growing buffer reused batch after batch (as Packer): no object per write, and a retained
 * message written straight from its fields (its record never a Buffer of its own). The store
 * and the retained tree (RetainedMessages.applyPacked) both read this layout and copy what they
 * keep before they return, so the bytes of `bytes()` may be overwritten by the next write after.
 */
export class MetaPacker extends PackBuffer {
  private lastStart = 0;

  constructor(initial = 64 * 1024) {
    super(initial);
  }

  add(o: MetaOp): void {
    const table = META_TABLE_INDEX.get(o.table);
    if (table === undefined) throw new NativeError('ERR_INVALID_ARGUMENT', `unknown metadata table ${JSON.stringify(o.table)}`);
    const keyRoom = typeof o.key === 'string' ? 3 * o.key.length : o.key.length;
    const at = this.start(keyRoom + (o.op === 'put' ? META_OPS.valueLen + o.value.length : 0), META_KIND[o.op], table, o.key);
    if (o.op === 'put') this.end(at + META_OPS.valueLen + o.value.copy(this.buf, at + META_OPS.valueLen), at);
    else this.end(at, -1);
  }

  /**
   * `topic`'s retained message set from its fields: a put of its record, or, for an empty
   * payload, a delete ([MQTT-3.3.1-6]: an empty retained message clears the topic).
   */
  setRetained(topic: string, publisher: string, qos: 0 | 1 | 2, receivedAt: number, properties: Buffer | null, payload: Buffer): void {
    if (payload.length === 0) {
      this.deleteRetained(topic);
      return;
    }
    const room = 3 * topic.length + META_OPS.valueLen + RETAINED.header + 3 * publisher.length + (properties?.length ?? 0) + payload.length;
    const at = this.start(room, META_OPS.put, RETAINED_TABLE, topic);
    this.end(at + META_OPS.valueLen + writeRetainedRecord(this.buf, at + META_OPS.valueLen, publisher, qos, receivedAt, properties, payload), at);
  }

  /** A delete of `topic`'s retained record. */
  private deleteRetained(topic: string): void {
    this.end(this.start(3 * topic.length, META_OPS.delete, RETAINED_TABLE, topic), -1);
  }

  /** One write packed by another MetaPacker (its `last()`), copied. */
  addPacked(write: Buffer): void {
    this.room(this.length + write.length);
    this.length += write.copy(this.buf, this.length);
    this.count++;
  }

  /** The last write packed: a view, valid until the next write or `reset`. */
  last(): Buffer {
    return this.buf.subarray(this.lastStart, this.length);
  }

  override reset(): void {
    super.reset();
    this.lastStart = 0;
  }

  /** The header and key of a write with `room` bytes at most after the header; returns where the key ends. */
  private start(room: number, kind: number, table: number, key: Buffer | string): number {
    this.room(this.length + META_OPS.header + room);
    const b = this.buf;
    const o = this.length;
    this.lastStart = o;
    b[o] = kind;
    b[o + 1] = table;
    const keyAt = o + META_OPS.header;
    const keyLen = typeof key === 'string' ? writeString(b, key, keyAt) : key.copy(b, keyAt);
    b.writeUInt32LE(keyLen, o + 2);
    return keyAt + keyLen;
  }

  /** The write ends at `end`; `valueAt`: where its value length goes (-1: none). */
  private end(end: number, valueAt: number): void {
    if (valueAt >= 0) this.buf.writeUInt32LE(end - valueAt - META_OPS.valueLen, valueAt);
    this.length = end;
    this.count++;
  }
}

/** `ops` in one buffer of its own (LAYOUTS.metaOps), as Store.metaApplyPacked takes them. */
export function packMetaOps(ops: readonly MetaOp[]): Buffer {
  const p = new MetaPacker(1024);
  for (const o of ops) p.add(o);
  return p.bytes();
}

/** Where a message lives in the log: stored once, referenced by every session that needs it. */
export interface LogPosition {
  shard: number;
  offset: number;
}

/** One record read back from the log. */
export interface StoredMessage extends LogPosition {
  timestamp: number;
  publisher: string;
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  properties: Buffer;
  payload: Buffer;
}

/** A message to append, as `packMessages` takes it. */
export interface PackedMessage {
  publisher: string;
  topic: string;
  qos: number;
  retain: boolean;
  properties: Buffer | null;
  payload: Buffer;
  /** The publisher's QoS 2 packet id, kept with the record (0 or absent: none; see findInbound). */
  inboundId?: number;
}

/**
 * Messages packed in the `appendPacked` layout (LAYOUTS.packed, see the binding's doc: a
 * 16-byte header, then the bytes) as they come, into one growing buffer that is reused batch
 * after batch: no object per message, no buffer per batch. `appendPacked` copies what it needs
 * before it returns, so the bytes of `bytes()` may be overwritten by the next `add` after it.
 */
export class Packer extends PackBuffer {
  /** The previous message's publisher and topic in this buffer (null: none yet). */
  private prevPublisher: string | null = null;
  private prevTopic: string | null = null;

  constructor(initial = 64 * 1024) {
    super(initial);
  }

  override reset(): void {
    super.reset();
    this.prevPublisher = this.prevTopic = null;
  }

  override truncate(length: number, count: number): void {
    super.truncate(length, count);
    this.prevPublisher = this.prevTopic = null;
  }

  /**
   * `publisher` or `topic` equal to the previous message's are not written again (flagged:
   * a connection's messages come in runs, mostly on one topic; encoding a 20-character
   * client id costs ~35 ns, comparing it with the previous one a few).
   */
  add(publisher: string, topic: string, qos: number, retain: boolean, properties: Buffer | null, payload: Buffer, inboundId: number): void {
    const L = LAYOUTS.packed;
    const props = properties?.length ?? 0;
    const n = payload.length;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit (a surrogate pair: 4 for 2).
    this.room(this.length + L.header + 3 * (publisher.length + topic.length) + props + n);
    const b = this.buf;
    const o = this.length;
    let at = o + L.header;
    // Byte stores and TypedArray.set, not Buffer's write/copy/writeUInt*LE: this runs once per
    // logged message, and their argument checks and calls into C++ cost more than the copying.
    let flags = retain ? L.flagRetain : 0;
    let p = 0;
    if (publisher === this.prevPublisher) flags |= L.flagSamePublisher;
    else {
      p = writeString(b, publisher, at);
      at += p;
      this.prevPublisher = publisher;
    }
    let t = 0;
    if (topic === this.prevTopic) flags |= L.flagSameTopic;
    else {
      t = writeString(b, topic, at);
      at += t;
      this.prevTopic = topic;
    }
    if (properties) {
      b.set(properties, at);
      at += props;
    }
    b.set(payload, at);
    at += n;
    put16(b, o + L.publisherLen, p);
    put16(b, o + L.topicLen, t);
    put32(b, o + L.propertiesLen, props);
    put32(b, o + L.payloadLen, n);
    b[o + L.qos] = qos;
    b[o + L.flags] = flags;
    put16(b, o + L.inboundId, inboundId);
    this.length = at;
    this.count++;
  }
}

/** Longest string writeString stores byte by byte: longer ones go to Buffer.write at once. */
const ASCII_MAX = 128;

/**
 * `s` written at `at` as UTF-8 (room enough: the caller's); returns its length in bytes. A short
 * ASCII string is stored byte by byte, which costs less than Buffer.write's call into C++; any
 * other (or one found not to be ASCII part way) goes through Buffer.write, over what was stored.
 */
function writeString(b: Buffer, s: string, at: number): number {
  const n = s.length;
  if (n <= ASCII_MAX) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      b[at + i] = c;
    }
    if (i === n) return n;
  }
  return b.write(s, at, 'utf8');
}

function put16(b: Buffer, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
}

function put32(b: Buffer, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

/** The `appendPacked` layout of `msgs` (see Packer), in a buffer of its own. */
export function packMessages(msgs: readonly PackedMessage[]): Buffer {
  const p = new Packer(1024);
  for (const m of msgs) p.add(m.publisher, m.topic, m.qos, m.retain, m.properties, m.payload, m.inboundId ?? 0);
  return p.bytes();
}

/**
 * One replay scan of a shard (`DurableStore.scan`): matching records in the batch-fetch entry
 * layout, `words` u32 mask words per entry (bit i: filter i matched), where to continue, and
 * why it stopped (0 more may follow, 1 caught up with the shard, 2 reached `until`).
 */
export interface ScanResult {
  buffer: Buffer;
  offsets: Uint32Array;
  masks: Uint32Array;
  words: number;
  next: number;
  status: number;
  skipped: number;
}

/**
 * Decode the batch-fetch entry layout (docs/storage.md): one Buffer, an offset table with
 * count + 1 boundaries. Payload and properties are views into the batch buffer.
 */
export function decodeEntries(buffer: Buffer, offsets: Uint32Array): StoredMessage[] {
  const E = LAYOUTS.entry;
  const out: StoredMessage[] = [];
  for (let i = 0; i + 1 < offsets.length; i++) {
    const at = offsets[i] as number;
    const payloadLen = buffer.readUInt32LE(at + E.payloadLen);
    const propsLen = buffer.readUInt32LE(at + E.propertiesLen);
    const topicLen = buffer.readUInt16LE(at + E.topicLen);
    const pubLen = buffer.readUInt16LE(at + E.publisherLen);
    const flags = buffer[at + E.flags] as number;
    let p = at + E.header;
    const publisher = buffer.toString('utf8', p, p + pubLen);
    p += pubLen;
    const topic = buffer.toString('utf8', p, p + topicLen);
    p += topicLen;
    const properties = buffer.subarray(p, p + propsLen);
    p += propsLen;
    out.push({
      offset: Number(buffer.readBigUInt64LE(at + E.offset)),
      timestamp: Number(buffer.readBigUInt64LE(at + E.timestamp)),
      shard: buffer.readUInt16LE(at + E.shard),
      publisher,
      topic,
      qos: (flags & E.flagQosMask) as 0 | 1 | 2,
      retain: (flags & E.flagRetain) !== 0,
      properties,
      payload: buffer.subarray(p, p + payloadLen),
    });
  }
  return out;
}

async function wrapAsync<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw wrapNativeError(e);
  }
}

function wrapSync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw wrapNativeError(e);
  }
}

/**
 * The embedded durable store (crates/strata-core log + meta): sharded append-only log with
 * group commit, and a transactional metadata store. Errors are `NativeError` with a stable
 * `code` (ERR_STORE_DISK_FULL, ERR_STORE_LOCKED, …).
 */
export class DurableStore {
  private constructor(private readonly inner: Binding.Store) {}

  /** Open (recovering) or create the store in `dir`, off the event loop. */
  static async open(dir: string, options: StoreOpenOptions = {}): Promise<DurableStore> {
    return new DurableStore(await wrapAsync(wrapSync(() => binding.Store.open(dir, options))));
  }

  get siteId(): string {
    return wrapSync(() => this.inner.siteId);
  }

  get nShards(): number {
    return wrapSync(() => this.inner.nShards);
  }

  /**
   * Append `count` messages packed by `packMessages` in one call (no object per message
   * crosses the binding); resolves with `[shard, offset]` pairs once durable — or, with
   * `durable` false, once written: under fsync `always` they are synced with the shard's next
   * durable append or 50 ms later at the latest (for appends nothing is acknowledged on).
   */
  appendPacked(packed: Buffer, count: number, durable = true): Promise<Float64Array> {
    return wrapAsync(this.inner.appendPacked(packed, count, durable));
  }

  /** Read messages back by position, in input order; null where retention dropped one. */
  readAt(positions: readonly LogPosition[]): (StoredMessage | null)[] {
    if (positions.length === 0) return [];
    const shards = positions.map((p) => p.shard);
    const offsets = positions.map((p) => p.offset);
    const r = wrapSync(() => this.inner.readAt(shards, offsets));
    const found = decodeEntries(r.buffer, r.offsets);
    let k = 0;
    return positions.map((_p, i) => (r.found[i] ? (found[k++] ?? null) : null));
  }

  /**
   * Scan a shard from offset `from` for records matching any of `filters` (filter i only at
   * offsets >= starts[i]), up to `maxEntries`, stopping before offset `until`. Synchronous.
   */
  scan(shard: number, from: number, filters: string[], starts: number[], maxEntries: number, until: number | null): ScanResult {
    return wrapSync(() => this.inner.scan(shard, from, filters, starts, maxEntries, undefined, until ?? undefined));
  }

  /**
   * `scan` (every filter from offset 0) with the matching entries written as the message log's
   * JSON lines (Rust: strata_core::log::lines, byte for byte what msglog/query.ts's entryLine
   * writes): the lines back to back, their boundaries, `timestamp, offset` per line. Synchronous.
   */
  scanLines(shard: number, from: number, filters: string[], maxEntries: number, keyProperty: string, until: number | null): Binding.ScanLinesResult {
    return wrapSync(() => this.inner.scanLines(shard, from, filters, maxEntries, keyProperty, until ?? undefined));
  }

  /**
   * Session replay as wire-ready PUBLISH packets (packet ids 0, to patch at their `meta`
   * position): the matching records of `shards`, merged by time, up to `maxEntries`, stopping
   * before a delivery the general path must make (status REPLAY_STATUS_SLOW). Synchronous.
   */
  replay(shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number): ReplayResult {
    return wrapSync(() => this.inner.replay(shards, subs, version, clientId, maxEntries, maxPacket));
  }

  /** `replay` on a worker thread (bad arguments throw at once; read errors reject). */
  replayAsync(shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number): Promise<ReplayResult> {
    return wrapAsync(wrapSync(() => this.inner.replayAsync(shards, subs, version, clientId, maxEntries, maxPacket)));
  }

  /**
   * A native drain loop (strata_core::drain) for the session replay `shards`/`subs` over the
   * TCP socket with descriptor `fd`: start it with `run()`, take the state back with `stop()`.
   * `inflight`: DRAIN_QUAD values per delivery already in flight. `report`: record what it
   * writes and what is acknowledged (`DrainControl.takeReports`, LAYOUTS.report) for the
   * delivery listeners. Throws on bad arguments.
   */
  drain(fd: number, shards: ReplayShard[], subs: ReplaySub[], version: number, clientId: string, maxEntries: number, maxPacket: number, window: number, inflight: Float64Array, nextId: number, report: boolean): DrainControl {
    if (!NATIVE_DRAIN_SUPPORTED) throw new NativeError('ERR_UNSUPPORTED', 'this build has no native drain loop (Linux only)');
    return wrapSync(() => this.inner.drain(fd, shards, subs, version, clientId, maxEntries, maxPacket, window, inflight, nextId, report));
  }

  /**
   * Add delivery counts (the message log's `delivered` / `acked`, files beside the log, never
   * synced): entry i adds `delivered[i]`, `acked[i]` to the record at `offsets[i]` of shard
   * `shards[i]`. Returns `shard, offset` pairs whose `acked` this call raised from 0. Synchronous.
   */
  addCounts(shards: Uint32Array, offsets: Float64Array, delivered: Uint32Array, acked: Uint32Array): Float64Array {
    return wrapSync(() => this.inner.addCounts(shards, offsets, delivered, acked));
  }

  /** `addCounts` on a libuv worker thread: the arrays are copied at once (reuse them at will). */
  addCountsAsync(shards: Uint32Array, offsets: Float64Array, delivered: Uint32Array, acked: Uint32Array): Promise<Float64Array> {
    return wrapAsync(wrapSync(() => this.inner.addCountsAsync(shards, offsets, delivered, acked)));
  }

  /** `delivered, acked` of each of `offsets` (ascending) of `shard`, back to back; zeros where nothing was counted. */
  readCounts(shard: number, offsets: Float64Array): Uint32Array {
    return wrapSync(() => this.inner.readCounts(shard, offsets));
  }

  /** The offset the next record of a shard will get. */
  shardEnd(shard: number): number {
    return wrapSync(() => this.inner.shardEnd(shard));
  }

  /** Resolves with the shard's end once it passes `after` (a caught-up reader parks on it instead of polling). */
  waitForAppend(shard: number, after: number): Promise<number> {
    return wrapAsync(wrapSync(() => this.inner.waitForAppend(shard, after)));
  }

  /** The first offset of `shard` whose record is at or after `tsMs` (the shard's end when none is). */
  offsetAtTime(shard: number, tsMs: number): number {
    return wrapSync(() => this.inner.offsetAtTime(shard, tsMs));
  }

  /** The shard a publisher's messages are appended to. */
  shardOf(publisher: string): number {
    return wrapSync(() => this.inner.shardOf(publisher));
  }

  /**
   * The offset of the record `publisher` appended with QoS 2 packet id `id`, at or after
   * `from` in `shard`, or null: resolves an inbound id left pending by a crash (start-up only,
   * it reads the shard from `from`).
   */
  findInbound(shard: number, from: number, publisher: string, id: number): number | null {
    return wrapSync(() => this.inner.findInbound(shard, from, publisher, id));
  }

  /** The offset of the first record `publisher` appended at or after `from` in `shard` (any packet id), or null (start-up only). */
  findPublished(shard: number, from: number, publisher: string): number | null {
    return wrapSync(() => this.inner.findPublished(shard, from, publisher));
  }

  /** Every retained record of the store into `into`, in Rust; topics of records in the earlier layout are returned. */
  loadRetained(into: RetainedMessages): { loaded: number; legacy: Buffer[]; unreadable: number } {
    return wrapSync(() => this.inner.loadRetained(into.inner));
  }

  metaGet(table: MetaTable, key: Buffer): Buffer | null {
    return wrapSync(() => this.inner.metaGet(table, key));
  }

  /** Up to `limit` entries whose key starts with `prefix`, after key `after`. */
  metaScan(table: MetaTable, prefix: Buffer, after: Buffer | null, limit: number): { key: Buffer; value: Buffer }[] {
    return wrapSync(() => this.inner.metaScan(table, prefix, after, limit));
  }

  /** Every entry whose key starts with `prefix`, paging through the binding's scan. */
  metaScanAll(table: MetaTable, prefix: Buffer): { key: Buffer; value: Buffer }[] {
    const out: { key: Buffer; value: Buffer }[] = [];
    let after: Buffer | null = null;
    for (;;) {
      const page: Binding.MetaEntry[] = wrapSync(() => this.inner.metaScan(table, prefix, after, 10000));
      out.push(...page);
      if (page.length < 10000) return out;
      after = (page[page.length - 1] as Binding.MetaEntry).key;
    }
  }

  /** Apply `ops` atomically (one group commit with whatever else is queued); resolves once durable. */
  metaApply(ops: MetaOp[]): Promise<void> {
    let packed: Buffer;
    try {
      packed = packMetaOps(ops);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.metaApplyPacked(packed);
  }

  /**
   * Apply writes packed in one buffer (MetaPacker: one argument to convert, however many writes
   * — a retained-message flood makes thousands per event-loop turn) atomically; the bytes are
   * copied before it returns. Resolves once durable.
   */
  metaApplyPacked(packed: Buffer): Promise<void> {
    let applied: Promise<void>;
    try {
      applied = wrapSync(() => this.inner.metaApplyPacked(packed));
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return wrapAsync(applied);
  }

  stats(): StoreStats {
    return wrapSync(() => this.inner.stats());
  }

  recovery(): RecoveryInfo {
    return wrapSync(() => this.inner.recovery());
  }

  /**
   * What this open found and repaired (log, metadata, STORE), and the losses it reported for
   * the first time (each loss is reported by one open only).
   */
  report(): StoreReport {
    return report(wrapSync(() => this.inner.openReport()));
  }

  /**
   * What opening the store in `dir` would find and repair, changing nothing (`stratamq ds
   * check`); refused while the store is in use (ERR_STORE_LOCKED).
   */
  static async check(dir: string, options: StoreOpenOptions = {}): Promise<StoreReport> {
    return report(await wrapAsync(wrapSync(() => binding.Store.check(dir, options))));
  }

  /** Losses found while running (damaged sealed segments salvaged as they were read), not reported before. */
  takeLosses(): LossInfo[] {
    return parseLosses(wrapSync(() => this.inner.takeLosses()));
  }

  /**
   * Make shard `shard` continue at `floor` at least (a session had read that far, so records
   * below it existed): the offsets between its end and `floor` are recorded as lost. The new
   * loss, or null when the end was not below.
   */
  raiseEnd(shard: number, floor: number, reason: string): LossInfo | null {
    const j = wrapSync(() => this.inner.raiseEnd(shard, floor, reason));
    return j === null ? null : (JSON.parse(j) as LossInfo);
  }

  /** Every loss recorded in this store. */
  losses(): LossInfo[] {
    return parseLosses(wrapSync(() => this.inner.losses()));
  }

  flush(): Promise<void> {
    return wrapAsync(this.inner.flush());
  }

  close(): Promise<void> {
    return wrapAsync(this.inner.close());
  }
}
