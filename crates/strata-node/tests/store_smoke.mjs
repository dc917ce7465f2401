// Smoke test of the Store binding: node crates/strata-node/tests/store_smoke.mjs
// (BINDING=/path/to/binding.js to test a private build).
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import fs from 'node:fs';
const require = createRequire(import.meta.url);
const { Store, layouts } = require(process.env.BINDING ?? '../../../native/binding.js');
const dir = fs.mkdtempSync('/tmp/jsstore-');
const s = await Store.open(dir, { nShards: 2, fsync: 'always' });
assert.equal(s.siteId.length, 32);
const pos = await s.append([{ publisher: 'c1', topic: 'a/b', qos: 1, retain: false, payload: Buffer.from('hello') }]);
assert.equal(pos.length, 1);
const [p2] = await s.append([{ publisher: 'c1', topic: 'a/c', qos: 2, retain: true, payload: Buffer.from('world'), properties: Buffer.from([1, 2]) }]);
assert.equal(p2.offset, pos[0].offset + 1);
const streams = s.streams('a/#');
assert.equal(streams.length, 2);
// Read back by position, decoding with the layout the binding exports.
const L = layouts().entry;
const r = s.readAt([p2.shard, pos[0].shard], [p2.offset, pos[0].offset]);
assert.equal(r.offsets.length, 3);
assert.deepEqual([...r.found], [1, 1]);
const dv = new DataView(r.buffer.buffer, r.buffer.byteOffset, r.buffer.byteLength);
const e1 = r.offsets[0];
const payloadLen = dv.getUint32(e1 + L.payloadLen, true), propsLen = dv.getUint32(e1 + L.propertiesLen, true);
const topicLen = dv.getUint16(e1 + L.topicLen, true), pubLen = dv.getUint16(e1 + L.publisherLen, true);
const t0 = e1 + L.header + pubLen;
assert.equal(r.buffer.subarray(t0, t0 + topicLen).toString(), 'a/c');
assert.equal(r.buffer.subarray(t0 + topicLen + propsLen, t0 + topicLen + propsLen + payloadLen).toString(), 'world');
assert.equal(dv.getUint8(e1 + L.flags), 2 | L.flagRetain);
// Errors carry stable codes, sync and async.
assert.throws(() => s.metaGet('nope', Buffer.from('k')), (e) => e.code === 'ERR_INVALID_ARGUMENT' && /^ERR_INVALID_ARGUMENT: /.test(e.message));
await assert.rejects(s.append([{ publisher: 'c1', topic: 'a/+', qos: 0, retain: false, payload: Buffer.alloc(1) }]), /^Error: ERR_INVALID_TOPIC: /);
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
await s.append([{ publisher: 'c1', topic: 'a/b', qos: 0, retain: false, payload: Buffer.from('x') }]);
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
