/**
 * The message log's JSON lines as Rust writes them (`Store.scanLines`, strata_core::log::lines;
 * what the admin API and `log query --json` stream) are byte for byte `JSON.stringify` of the
 * TypeScript entry (`entryJson`): UTF-8 and binary payloads, topics and client ids that need
 * escaping (quotes, backslashes, control characters, U+2028, non-ASCII), every QoS, retain,
 * properties (correlation data, user properties given once and several times, as the key or not),
 * several shards and timestamps, delivery counts (none, small, large).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { concatLines, type CountedMessage, entryJson, LineReader, LogReader } from '../../src/msglog/query.js';
import { DurableStore, packMessages, type PackedMessage } from '../../src/native.js';
import { encodeProperties } from '../../src/wire/message.js';
import { tempDir } from '../helpers.js';

test('scanLines writes what JSON.stringify(entryJson) writes, for every kind of entry', async () => {
  const tmp = tempDir('strata-lines-');
  const store = await DurableStore.open(tmp.dir, { nShards: 3, fsync: 'none' });
  try {
    const publishers = ['pub', 'p"q\\x', 'ünï\u0001', 'tab\there'];
    const topics = ['a/b', 't/"quoted"/\n', 'σ/τ/\u2028', 'x/\u007f'];
    const props = [
      null,
      encodeProperties({ userProperties: { order: 'o-7', other: 'z' } }),
      encodeProperties({ userProperties: { order: ['first', 'second'] }, correlationData: Buffer.from([1, 2, 3, 250]), contentType: 'text/plain', messageExpiryInterval: 60 }),
      encodeProperties({ payloadFormatIndicator: true, responseTopic: 'r/"t"' }),
    ];
    const msgs: PackedMessage[] = [];
    for (let i = 0; i < 200; i++) {
      const payload = i % 5 === 0 ? Buffer.from([0xff, 0xfe, i & 255]) : i % 7 === 0 ? Buffer.alloc(0) : Buffer.from(`payload ${i} "x" \\ \u2028 é \u0000`);
      msgs.push({ publisher: publishers[i % 4] as string, topic: topics[(i >> 2) % 4] as string, qos: i % 3, retain: i % 2 === 0, properties: props[(i >> 1) % 4] ?? null, payload });
    }
    for (let k = 0; k < msgs.length; k += 20) await store.appendPacked(packMessages(msgs.slice(k, k + 20)), 20);
    const start = [0, 0, 0];
    const ends = [0, 1, 2].map((s) => store.shardEnd(s));
    // Counts on some entries of each shard (every third offset), one near the u32 limit.
    const cs: number[] = [];
    const co: number[] = [];
    ends.forEach((end, s) => {
      for (let o = 0; o < end; o += 3) {
        cs.push(s);
        co.push(o);
      }
    });
    const cd = Uint32Array.from(co, (o, i) => (i === 0 ? 4_000_000_000 : o + 1));
    const ca = Uint32Array.from(co, (o) => o % 2);
    store.addCounts(Uint32Array.from(cs), Float64Array.from(co), cd, ca);
    for (const key of ['', 'order', 'other', 'missing']) {
      const entries = new LogReader(store, '#', start, ends, Number.MAX_SAFE_INTEGER, true).take(1000);
      const lines = new LineReader(store, '#', start, ends, Number.MAX_SAFE_INTEGER, key).take(1000);
      assert.equal(entries.length, 200);
      assert.equal(lines.length, 200);
      entries.forEach((e, i) => {
        const l = lines[i];
        assert.ok(l);
        assert.equal(l.offset, e.offset);
        assert.equal(l.timestamp, e.timestamp);
        assert.equal(concatLines([l]).toString('utf8'), `${JSON.stringify(entryJson(e, key))}\n`, `entry ${i}, key ${JSON.stringify(key)}`);
      });
    }
    const counted = new LogReader(store, '#', start, ends, Number.MAX_SAFE_INTEGER, true).take(1000) as CountedMessage[];
    assert.equal(counted.find((e) => e.shard === cs[0] && e.offset === 0)?.delivered, 4_000_000_000);
    assert.ok(counted.some((e) => e.delivered === 0) && counted.some((e) => e.acked === 1), 'entries with and without counts');
    const parsed = JSON.parse(new LineReader(store, '#', start, ends, 1000, 'order').take(1000).map((l) => concatLines([l]).toString()).find((l) => l.includes('first')) as string) as { key: string; properties: { correlationData: string } };
    assert.equal(parsed.key, 'first', 'a user property given twice: its first value');
    assert.equal(parsed.properties.correlationData, Buffer.from([1, 2, 3, 250]).toString('base64'));
  } finally {
    await store.close();
    tmp.remove();
  }
});
