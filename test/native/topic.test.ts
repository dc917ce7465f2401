/**
 * The topic binding as JS sees it: TopicTrie, RetainedMessages and the validators.
 * Matching rules themselves are tested exhaustively in Rust (crates/strata-core);
 * this checks the conversions, the error codes and the JS-visible contract.
 *
 * Loads the generated binding directly: this is a test of the binding itself (and of the
 * wrapper's reused match array, the last test).
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import type * as Binding from '../../native/binding.js';
import { decodeRetainedRecord, encodeRetainedRecord, RetainedMessages, TopicTrie } from '../../src/native.js';

const require = createRequire(import.meta.url);
// dist/test/native/topic.test.js -> <repo>/native/binding.js
const binding = require('../../../native/binding.js') as typeof Binding;

const sorted = (a: Iterable<number>): number[] => [...a].sort((x, y) => x - y);

function thrown(f: () => unknown): Error & { code?: string } {
  try {
    f();
  } catch (e) {
    return e as Error & { code?: string };
  }
  assert.fail('expected a throw');
}

test('TopicTrie: subscribe, match, unsubscribe, size', () => {
  const t = new binding.TopicTrie();
  assert.equal(t.subscribe('a/b/c', 1), true);
  assert.equal(t.subscribe('a/b/c', 1), false, 'same id, same filter: not added twice');
  assert.equal(t.subscribe('a/+/c', 2), true);
  assert.equal(t.subscribe('a/#', 3), true);
  assert.equal(t.subscribe('#', 4), true);
  assert.equal(t.size, 4);
  const m = t.match('a/b/c');
  assert.ok(m instanceof Uint32Array);
  assert.deepEqual(sorted(m), [1, 2, 3, 4]);
  assert.deepEqual(sorted(t.match('a')), [3, 4], "[MQTT-4.7.1-1] 'a/#' matches 'a'");
  assert.deepEqual(sorted(t.match('x')), [4]);
  assert.equal(t.unsubscribe('a/+/c', 2), true);
  assert.equal(t.unsubscribe('a/+/c', 2), false);
  assert.deepEqual(sorted(t.match('a/b/c')), [1, 3, 4]);
  assert.equal(t.size, 3);
  // Results are fresh arrays, not views of a reused buffer.
  const first = t.match('a/b/c');
  t.match('x');
  assert.deepEqual(sorted(first), [1, 3, 4]);
});

test('TopicTrie: [MQTT-4.7.2-1] $-topics are not matched by leading wildcards', () => {
  const t = new binding.TopicTrie();
  t.subscribe('#', 1);
  t.subscribe('+/broker', 2);
  t.subscribe('$SYS/#', 3);
  assert.deepEqual(sorted(t.match('$SYS/broker')), [3]);
  assert.deepEqual(sorted(t.match('x/broker')), [1, 2]);
});

test('TopicTrie: [MQTT-4.8.2] a shared group gets each message once, round-robin', () => {
  const t = new binding.TopicTrie();
  for (const id of [10, 11, 12]) t.subscribe('$share/g/s/+', id);
  t.subscribe('s/+', 1);
  const counts = new Map<number, number>();
  for (let i = 0; i < 300; i++) {
    const m = t.match('s/x');
    assert.equal(m.length, 2);
    assert.ok(m.includes(1));
    for (const id of m) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  assert.deepEqual([counts.get(10), counts.get(11), counts.get(12)], [100, 100, 100]);
});

test('TopicTrie: invalid filters throw ERR_INVALID_TOPIC', () => {
  const t = new binding.TopicTrie();
  for (const f of ['', 'a/#/b', 'a+', '$share//a', '$share/g', 'a\0b']) {
    const e = thrown(() => t.subscribe(f, 1));
    assert.equal(e.code, 'ERR_INVALID_TOPIC', f);
    assert.match(e.message, /^ERR_INVALID_TOPIC: /, f);
  }
  assert.equal(thrown(() => t.unsubscribe('#/a', 1)).code, 'ERR_INVALID_TOPIC');
  assert.equal(t.size, 0);
});

/** A record in layouts().retained: version, QoS, time, publisher, no properties, payload. */
function record(qos: number, publisher: string, payload: string): Buffer {
  const R = binding.layouts().retained;
  const pub = Buffer.from(publisher);
  const out = Buffer.alloc(R.header + pub.length + payload.length);
  out[0] = R.version;
  out[R.qos] = qos;
  out.writeBigUInt64LE(1234n, R.receivedAt);
  out.writeUInt16LE(pub.length, R.publisherLen);
  pub.copy(out, R.header);
  out.write(payload, R.header + pub.length);
  return out;
}

function topicsOf(batch: { buffer: Buffer; offsets: Uint32Array }): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < batch.offsets.length; i++) {
    const at = batch.offsets[i] as number;
    const tl = batch.buffer.readUInt16LE(at);
    out.push(batch.buffer.toString('utf8', at + 2, at + 2 + tl));
  }
  return out.sort();
}

/** Every record matching `filter`, as one batch: the topics first, then their records. */
function matched(r: InstanceType<typeof binding.RetainedMessages>, filter: string): { buffer: Buffer; offsets: Uint32Array } {
  const t = r.matchTopics(filter);
  return r.records(t.buffer, t.offsets, 0, t.offsets.length - 1);
}

test('RetainedMessages: set, get, delete, match by filter (topics, then their records)', () => {
  const r = new binding.RetainedMessages();
  for (const topic of ['a', 'a/b', 'a/b/c', 'b/b', '$SYS/x']) r.set(topic, record(1, 'p', topic));
  r.set('a/b', record(2, 'q', 'again'));
  assert.equal(r.size, 5);
  assert.deepEqual(r.get('a/b'), record(2, 'q', 'again'));
  assert.equal(r.get('nope'), null);
  assert.deepEqual(topicsOf(matched(r, 'a/#')), ['a', 'a/b', 'a/b/c']);
  assert.deepEqual(topicsOf(matched(r, '+/b')), ['a/b', 'b/b']);
  assert.deepEqual(topicsOf(matched(r, '#')), ['a', 'a/b', 'a/b/c', 'b/b'], '[MQTT-4.7.2-1]');
  assert.deepEqual(topicsOf(matched(r, '$SYS/#')), ['$SYS/x']);
  assert.deepEqual(topicsOf(matched(r, 'nothing/here')), []);
  const one = matched(r, 'a/b/c');
  assert.deepEqual(one.buffer.subarray(2 + 5), record(1, 'p', 'a/b/c'), 'topic length, topic, then the record');
  assert.equal(r.delete('a/b'), true);
  assert.equal(r.delete('a/b'), false);
  assert.deepEqual(topicsOf(matched(r, 'a/#')), ['a', 'a/b/c']);
  assert.equal(r.size, 4);
});

test('RetainedMessages: invalid names, filters and records throw', () => {
  const r = new binding.RetainedMessages();
  assert.equal(thrown(() => r.set('a/+', record(0, '', 'x'))).code, 'ERR_INVALID_TOPIC');
  assert.equal(thrown(() => r.set('', record(0, '', 'x'))).code, 'ERR_INVALID_TOPIC');
  assert.equal(thrown(() => r.matchTopics('a/#/b')).code, 'ERR_INVALID_TOPIC');
  assert.equal(thrown(() => r.set('a', Buffer.from([1, 0, 0]))).code, 'ERR_INVALID_ARGUMENT');
  assert.equal(thrown(() => r.set('a', Buffer.alloc(20))).code, 'ERR_INVALID_ARGUMENT', 'version 0: the earlier layout');
  assert.equal(r.size, 0);
});

test('validateTopicName / validateTopicFilter return null or the reason', () => {
  assert.equal(binding.validateTopicName('a/b'), null);
  assert.match(binding.validateTopicName('a/+') ?? '', /wildcard/);
  assert.match(binding.validateTopicName('') ?? '', /empty/);
  assert.match(binding.validateTopicName('x'.repeat(65536)) ?? '', /65535/);
  assert.equal(binding.validateTopicFilter('a/+/#'), null);
  assert.equal(binding.validateTopicFilter('$share/g/a/#'), null);
  assert.match(binding.validateTopicFilter('$share//a') ?? '', /group/);
  assert.match(binding.validateTopicFilter('a/#/b') ?? '', /'#'/);
  assert.equal(typeof binding.coreVersion(), 'string');
});

test('TopicTrie.match (src/native.ts) reads into a reused array: more ids than it holds, then fewer, each exact', () => {
  const t = new TopicTrie();
  for (let id = 0; id < 300; id++) t.subscribe(id % 2 === 0 ? 'w/+' : 'w/#', id);
  t.subscribe('w/one', 1000);
  const all = [...t.match('w/one')].sort((a, b) => a - b);
  assert.deepEqual(all, [...Array.from({ length: 300 }, (_, i) => i), 1000], 'grown past its first 64 slots');
  assert.deepEqual([...t.match('w/other')].length, 300);
  assert.deepEqual([...t.match('w')], Array.from({ length: 150 }, (_, i) => 2 * i + 1), "only the 'w/#' ones");
  assert.equal(t.match('nothing').length, 0);
});

test('a retained record written in place reads back whole: multi-byte publisher, times past 2^32 ms, properties or none', () => {
  const tree = new RetainedMessages();
  const cases: [string, number, Buffer | null, Buffer][] = [
    ['pub', 1_796_567_107_176, null, Buffer.from('x')],
    ['é€😀', 2 ** 40 + 5, Buffer.from('{"contentType":"a"}'), Buffer.alloc(0)],
    ['', 0, null, Buffer.alloc(300, 7)],
    ['p', Number.MAX_SAFE_INTEGER, null, Buffer.from([0, 1, 2])],
  ];
  cases.forEach(([publisher, receivedAt, properties, payload], i) => {
    const rec = encodeRetainedRecord(publisher, 2, receivedAt, properties, payload);
    const d = decodeRetainedRecord(rec, 0, rec.length);
    assert.deepEqual({ ...d, properties: [...d.properties], payload: [...d.payload] }, { publisher, qos: 2, receivedAt, properties: [...(properties ?? [])], payload: [...payload] });
    tree.set(`r/${i}`, rec); // the core checks the layout
    assert.deepEqual(tree.get(`r/${i}`)?.receivedAt, receivedAt);
  });
});
