/**
 * The message log's JSON lines (msglog/query.ts): `entryLine`, the fast writer the query streams
 * with, says exactly what `JSON.stringify(entryJson(…))` says — for UTF-8 and binary payloads,
 * topics and client ids that need escaping, every QoS and retain flag, with and without properties
 * (user property as key, correlation data) and for timestamps repeated and not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { entryJson, entryLine } from '../../src/msglog/query.js';
import type { StoredMessage } from '../../src/native.js';
import { encodeProperties } from '../../src/wire/message.js';

function entry(i: number, over: Partial<StoredMessage> = {}): StoredMessage {
  return {
    shard: i % 3,
    offset: 1000 + i,
    timestamp: 1_765_000_000_000 + Math.floor(i / 3),
    publisher: ['pub', 'p"q\\\\x', 'ünï\u0001'][i % 3] as string,
    topic: ['a/b', 't/"quoted"/\n', 'σ/τ'][i % 3] as string,
    qos: (i % 3) as 0 | 1 | 2,
    retain: i % 2 === 0,
    properties: Buffer.alloc(0),
    payload: i % 4 === 0 ? Buffer.from([0xff, 0xfe, i]) : Buffer.from(`payload ${i} "x" \\ \u2028`),
    ...over,
  };
}

test('entryLine is JSON.stringify(entryJson) plus a newline', () => {
  for (let i = 0; i < 60; i++) {
    for (const key of ['', 'order']) {
      const e = entry(i);
      assert.equal(entryLine(e, key), `${JSON.stringify(entryJson(e, key))}\n`, `entry ${i}`);
    }
  }
  const props = encodeProperties({ userProperties: { order: 'o-7' }, correlationData: Buffer.from([1, 2, 3]), contentType: 'text/plain' }) as Buffer;
  const e = entry(5, { properties: props });
  const line = entryLine(e, 'order');
  assert.equal(line, `${JSON.stringify(entryJson(e, 'order'))}\n`);
  const parsed = JSON.parse(line) as { key: string; properties: { correlationData: string; contentType: string } };
  assert.equal(parsed.key, 'o-7');
  assert.equal(parsed.properties.correlationData, Buffer.from([1, 2, 3]).toString('base64'));
  assert.equal(JSON.parse(entryLine(entry(4), '')).encoding, 'base64');
});
