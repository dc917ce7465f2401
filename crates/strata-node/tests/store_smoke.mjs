// Smoke test of the Store binding: node crates/strata-node/tests/store_smoke.mjs
// (BINDING=/path/to/binding.js to test a private build).
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const { Store } = require(process.env.BINDING ?? '../../../native/binding.js');
const dir = fs.mkdtempSync('/tmp/jsstore-');
const s = await Store.open(dir, { nShards: 2, fsync: 'always' });
assert.equal(s.siteId.length, 32);
const pos = await s.append([{ publisher: 'c1', topic: 'a/b', qos: 1, retain: false, payload: Buffer.from('hello') }]);
assert.equal(pos.length, 1);
const p2 = await s.appendOne('c1', 'a/c', 2, true, Buffer.from('world'), Buffer.from([1, 2]));
assert.equal(p2.offset, pos[0].offset + 1);
const streams = s.streams('a/#');
assert.equal(streams.length, 2);
const ids = streams.map((x) => s.openCursor(x.shard, x.generation, x.stream, 'a/#'));
const r = s.fetch(ids, 100);
assert.equal(r.offsets.length, 3);
assert.deepEqual([...r.status], [1, 1]);
const dv = new DataView(r.buffer.buffer, r.buffer.byteOffset, r.buffer.byteLength);
const e1 = r.offsets[1];
const payloadLen = dv.getUint32(e1 + 16, true), propsLen = dv.getUint32(e1 + 20, true);
const topicLen = dv.getUint16(e1 + 24, true), pubLen = dv.getUint16(e1 + 26, true);
const t0 = e1 + 32 + pubLen;
assert.equal(r.buffer.subarray(t0, t0 + topicLen).toString(), 'a/c');
assert.equal(r.buffer.subarray(t0 + topicLen + propsLen, t0 + topicLen + propsLen + payloadLen).toString(), 'world');
assert.equal(dv.getUint8(e1 + 28), 2 | 4);
const st = s.cursorState(ids[0]);
assert.equal(st.seen, 1);
// Errors carry stable codes, sync and async.
assert.throws(() => s.metaGet('nope', Buffer.from('k')), (e) => e.code === 'ERR_INVALID_ARGUMENT' && /^ERR_INVALID_ARGUMENT: /.test(e.message));
await assert.rejects(s.appendOne('c1', 'a/+', 0, false, Buffer.alloc(1)), /^Error: ERR_INVALID_TOPIC: /);
await assert.rejects(Store.open(dir, { nShards: 2 }), /ERR_STORE_LOCKED/);
assert.throws(() => Store.openSync(dir, {}), (e) => e.code === 'ERR_STORE_LOCKED');
// Meta
await s.metaApply([{ op: 'put', table: 'inbound_qos2', key: Buffer.from('s1\0a'), value: Buffer.from('x') }, { op: 'put', table: 'inbound_qos2', key: Buffer.from('s1\0b'), value: Buffer.from('y') }]);
await s.metaPut('sessions', Buffer.from('s1'), Buffer.from('{}'));
assert.equal(s.metaGet('sessions', Buffer.from('s1')).toString(), '{}');
assert.equal(s.metaScan('inbound_qos2', Buffer.from('s1\0')).length, 2);
// Park and wake
const end = s.shardEnd(pos[0].shard);
const woke = s.waitForAppend(pos[0].shard, end);
await s.appendOne('c1', 'a/b', 0, false, Buffer.from('x'));
assert.equal(await woke, end + 1);
const stats = s.stats();
assert.equal(stats.records, 3);
assert.ok(s.recovery().events.length >= 1);
await s.close();
await s.close();
assert.throws(() => s.stats(), (e) => e.code === 'ERR_STORE_CLOSED');
// Reopen: the lock was released.
const s2 = await Store.open(dir);
assert.equal(s2.stats().records, 3);
const w = assert.rejects(s2.waitForAppend(0, 1e9), /ERR_STORE_CLOSED/);
await s2.close();
await w;
console.log('smoke ok');
