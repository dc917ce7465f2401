/**
 * The ACL file (auth.acl_file) with real clients over TCP: denied PUBLISH and SUBSCRIBE with
 * their reason codes for 3.1.1 and 5.0, `%c`/`%u` patterns, a deny rule inside a granted
 * filter (live, retained, and from the log to a persistent session), reload (in process and by
 * SIGHUP to a broker process) taking away a subscription it no longer allows, and meeting a
 * `$log/` re-consume reader the same way.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { IPubackPacket, ISubackPacket } from 'mqtt-packet';
import { BrokerProcess, client, collect, freePort, persistent, quiet, RawClient, sleep, startBroker, tempDir, unconnected } from '../helpers.js';

const ACL = `
# anonymous clients
topic read public/#

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic write shared/in

user bob
topic read home/alice/#
topic read shared/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
`;

function aclFile(text = ACL): { path: string; dir: { dir: string; remove(): void } } {
  const dir = tempDir('strata-acl-');
  const path = join(dir.dir, 'acl');
  writeFileSync(path, text);
  return { path, dir };
}

async function raw(port: number, version: 4 | 5, clientId: string, username?: string): Promise<RawClient> {
  const c = await RawClient.tcp(port, version);
  const ack = await c.connect(clientId, username === undefined ? {} : { username });
  assert.ok(ack);
  return c;
}

async function suback(c: RawClient, filter: string, id = 1): Promise<number> {
  c.send({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic: filter, qos: 1 }] });
  return ((await c.next('suback')) as ISubackPacket).granted[0] as number;
}

async function puback(c: RawClient, topic: string, id = 1): Promise<number> {
  c.send({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId: id, dup: false, retain: false });
  return ((await c.next('puback')) as IPubackPacket).reasonCode ?? 0;
}

test('denied SUBSCRIBE: 0x87 for 5.0, 0x80 for 3.1.1; denied PUBLISH: PUBACK 0x87 for 5.0, acknowledged and dropped for 3.1.1; each counted', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path } });
  try {
    const v5 = await raw(tb.port, 5, 'a5', 'alice');
    const v3 = await raw(tb.port, 4, 'a3', 'alice');
    assert.equal(await suback(v5, 'home/alice/#'), 1);
    assert.equal(await suback(v5, 'home/bob/#'), 0x87);
    assert.equal(await suback(v3, 'home/bob/#'), 0x80);
    assert.equal(await suback(v5, '#'), 0x87, 'a filter wider than what the rules allow');
    assert.equal(await suback(v5, 'shared/in'), 0x87, 'write access is not read access');
    assert.equal(await suback(v5, 'home/alice/secret'), 0x87, 'a deny rule covering the filter');

    const watcher = await client(tb, { username: 'bob', clientId: 'watch' });
    await watcher.subscribeAsync('home/alice/#', { qos: 1 });
    await watcher.subscribeAsync('shared/#', { qos: 1 });
    const got = collect(watcher, 2);
    assert.equal(await puback(v5, 'home/bob/x', 2), 0x87);
    assert.equal(await puback(v3, 'home/bob/x', 2), 0, '3.1.1 cannot be told: acknowledged, dropped');
    assert.equal(await puback(v5, 'home/alice/secret', 3), 0x87);
    assert.equal(await puback(v5, 'home/alice/ok', 4), 0);
    assert.equal(await puback(v3, 'shared/in', 5), 0);
    assert.deepEqual((await got).map((m) => m.topic).sort(), ['home/alice/ok', 'shared/in']);
    assert.deepEqual(await quiet(watcher, 100), []);
    assert.deepEqual({ pub: tb.broker.metrics.refused.aclPublish, sub: tb.broker.metrics.refused.aclSubscribe }, { pub: 3, sub: 5 });

    // Anonymous clients get the rules before the first `user` line.
    const anon = await raw(tb.port, 5, 'anon');
    assert.equal(await suback(anon, 'public/news'), 1);
    assert.equal(await suback(anon, 'home/#', 2), 0x87);
    assert.equal(await puback(anon, 'public/news'), 0x87);
    for (const c of [v5, v3, anon]) c.end();
    await watcher.endAsync();
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

test('%c and %u patterns apply to every client with its own id and username; wildcards in them match nothing', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path } });
  try {
    const dev = await raw(tb.port, 5, 'dev1', 'carol');
    assert.equal(await suback(dev, 'devices/dev1/#'), 1);
    assert.equal(await suback(dev, 'devices/dev2/#', 2), 0x87);
    assert.equal(await suback(dev, 'users/carol/inbox', 3), 1);
    assert.equal(await suback(dev, 'users/dave/inbox', 4), 0x87);
    assert.equal(await puback(dev, 'devices/dev1/up'), 0);
    assert.equal(await puback(dev, 'devices/dev2/up', 2), 0x87);
    // A client id holding `+` would otherwise turn the pattern into a wildcard over everyone's topics.
    const sly = await raw(tb.port, 5, '+', 'eve');
    assert.equal(await suback(sly, 'devices/+/#'), 0x87);
    assert.equal(await puback(sly, 'devices/a/up'), 0x87);
    const anon = await raw(tb.port, 5, 'anon-u');
    assert.equal(await suback(anon, 'users//inbox'), 0x87, '%u matches nothing without a username');
    for (const c of [dev, sly, anon]) c.end();
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

test('a deny rule inside a granted filter keeps its messages from the subscriber: live, retained, and from the log after it was away', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path } });
  try {
    const alice = await client(tb, { username: 'alice', clientId: 'alice-pub' });
    await alice.publishAsync('home/alice/secret', 'r-secret', { qos: 1, retain: true }).catch(() => undefined); // refused
    await alice.publishAsync('home/alice/lamp', 'r-lamp', { qos: 1, retain: true });
    // bob may read home/alice/#, alice may write home/alice/secret? No: her deny rule. So a
    // second ACL user writes it: publish through the broker's own API (no ACL for the broker).
    tb.broker.publishMessage('home/alice/secret', Buffer.from('r-secret'), { qos: 1, retain: true });
    const sub = unconnected(tb, { ...persistent(5, 'alice-sub'), username: 'alice' });
    const first = collect(sub, 1);
    sub.connect();
    await new Promise<void>((r) => sub.once('connect', () => r()));
    await sub.subscribeAsync('home/alice/#', { qos: 1 });
    assert.deepEqual((await first).map((m) => m.payload.toString()), ['r-lamp'], 'the denied retained message is not sent');
    const live = collect(sub, 1);
    tb.broker.publishMessage('home/alice/secret', Buffer.from('live-secret'), { qos: 1 });
    await alice.publishAsync('home/alice/door', 'live-door', { qos: 1 });
    assert.deepEqual((await live).map((m) => m.payload.toString()), ['live-door']);
    await sub.endAsync();
    // Away: both are logged (bob, persistent too, may read them all); only the allowed one comes back.
    const bob = await client(tb, { ...persistent(5, 'bob-all'), username: 'bob' });
    await bob.subscribeAsync('home/alice/#', { qos: 1 });
    await bob.endAsync();
    tb.broker.publishMessage('home/alice/secret', Buffer.from('away-secret'), { qos: 1 });
    await alice.publishAsync('home/alice/window', 'away-window', { qos: 1 });
    await sleep(50);
    const back = unconnected(tb, { ...persistent(5, 'alice-sub'), username: 'alice' });
    const queued = collect(back, 1);
    back.connect();
    assert.deepEqual((await queued).map((m) => m.payload.toString()), ['away-window']);
    assert.deepEqual(await quiet(back, 200), []);
    await Promise.all([back.endAsync(), alice.endAsync()]);
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

test('a deny rule inside a granted filter holds for the message log too: $log/earliest/<filter> does not replay the denied topic', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path, 'msglog.topics': 'home/#', 'msglog.mode': 'sync' } });
  try {
    // Written by the broker's own API (alice's deny rule keeps her from publishing it), logged.
    tb.broker.publishMessage('home/alice/secret', Buffer.from('logged-secret'), { qos: 1 });
    const alice = await client(tb, { username: 'alice', clientId: 'alice-log-pub' });
    await alice.publishAsync('home/alice/lamp', 'logged-lamp', { qos: 1 });
    await sleep(50);
    const sub = await client(tb, { username: 'alice', clientId: 'alice-log-sub', protocolVersion: 5 });
    const got = collect(sub, 1);
    await sub.subscribeAsync('$log/earliest/home/alice/#', { qos: 1 });
    assert.deepEqual((await got).map((m) => m.payload.toString()), ['logged-lamp']);
    const live = collect(sub, 1);
    tb.broker.publishMessage('home/alice/secret', Buffer.from('live-secret'), { qos: 1 });
    await alice.publishAsync('home/alice/door', 'live-door', { qos: 1 });
    assert.deepEqual((await live).map((m) => m.payload.toString()), ['live-door']);
    assert.deepEqual(await quiet(sub, 200), [], 'nothing of the denied topic, from the log or live');
    await Promise.all([sub.endAsync(), alice.endAsync()]);
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

test('reload: a subscription the new file forbids stops receiving at once and is gone for good; a file that does not parse changes nothing', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path } });
  try {
    const bob = await client(tb, { ...persistent(5, 'bob-sub'), username: 'bob' });
    await bob.subscribeAsync('home/alice/#', { qos: 1 });
    await bob.subscribeAsync('shared/#', { qos: 1 });
    const pub = await client(tb, { username: 'alice', clientId: 'alice-pub2' });

    writeFileSync(acl.path, 'user bob\ntopic readwrite nonsense +x/y\n');
    await tb.broker.reload(); // does not parse: logged, the rules in force stay
    const before = collect(bob, 1);
    await pub.publishAsync('home/alice/a', 'still', { qos: 1 });
    assert.equal((await before)[0]?.payload.toString(), 'still');

    writeFileSync(acl.path, ACL.replace('topic read home/alice/#\n', ''));
    await tb.broker.reload();
    const after = collect(bob, 1);
    await pub.publishAsync('home/alice/a', 'gone', { qos: 1 });
    await pub.publishAsync('shared/in', 'kept', { qos: 1 });
    assert.deepEqual((await after).map((m) => m.payload.toString()), ['kept']);
    await bob.endAsync();
    // Removed durably: a resumed session does not get it back.
    const again = await client(tb, { ...persistent(5, 'bob-sub'), username: 'bob' });
    const next = collect(again, 1);
    await pub.publishAsync('home/alice/a', 'gone too', { qos: 1 });
    await pub.publishAsync('shared/in', 'kept too', { qos: 1 });
    assert.deepEqual((await next).map((m) => m.payload.toString()), ['kept too']);
    await Promise.all([again.endAsync(), pub.endAsync()]);
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

test('reload: a $log/ re-consume reader skips a topic the new file denies inside its filter, and stops when its filter is no longer granted', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path, 'msglog.topics': 'home/#' } });
  try {
    const bob = await client(tb, { protocolVersion: 5, username: 'bob', clientId: 'bob-log' });
    const pub = await client(tb, { username: 'alice', clientId: 'alice-log' });
    await pub.publishAsync('home/alice/private', 'old', { qos: 1 });
    const first = collect(bob, 1);
    const [granted] = await bob.subscribeAsync('$log/earliest/home/alice/#', { qos: 1 });
    assert.equal(granted?.qos, 1);
    assert.deepEqual((await first).map((m) => m.payload.toString()), ['old'], 'granted: history read');

    writeFileSync(acl.path, ACL.replace('topic read home/alice/#\n', 'topic read home/alice/#\ntopic deny home/alice/private\n'));
    await tb.broker.reload();
    const next = collect(bob, 2);
    await pub.publishAsync('home/alice/private', 'hidden', { qos: 1 });
    await pub.publishAsync('home/alice/a', 'visible', { qos: 1 });
    await pub.publishAsync('home/alice/private', 'hidden too', { qos: 1 });
    await pub.publishAsync('home/alice/b', 'visible too', { qos: 1 });
    assert.deepEqual((await next).map((m) => m.payload.toString()), ['visible', 'visible too'], 'a topic denied inside the filter is skipped');
    assert.deepEqual(await quiet(bob, 200), []);

    writeFileSync(acl.path, ACL.replace('topic read home/alice/#\n', ''));
    await tb.broker.reload();
    await pub.publishAsync('home/alice/a', 'after', { qos: 1 });
    assert.deepEqual(await quiet(bob, 300), [], 'its filter is no longer granted: it stopped');
    assert.equal(tb.broker.sessions.get('bob-log')?.logReaders?.size ?? 0, 0);
    await Promise.all([bob.endAsync(), pub.endAsync()]);
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

test('SIGHUP makes a broker process read its ACL file again; a bad file at start is a config error naming the line', async () => {
  const acl = aclFile();
  const data = tempDir('strata-acl-proc-');
  const port = await freePort();
  const broker = new BrokerProcess(port, data.dir, [], { STRATA_AUTH__ACL_FILE: acl.path });
  try {
    await broker.start();
    const bob = await client(broker.url, { username: 'bob', clientId: 'hup-bob' });
    await bob.subscribeAsync('shared/#', { qos: 1 });
    const pub = await client(broker.url, { username: 'alice', clientId: 'hup-alice' });
    writeFileSync(acl.path, ACL.replace('topic read shared/#\n', ''));
    process.kill(broker.pid as number, 'SIGHUP');
    for (let i = 0; i < 50 && !broker.output.includes('ACL file reloaded'); i++) await sleep(50);
    assert.match(broker.output, /ACL file reloaded/);
    await pub.publishAsync('shared/in', 'after hup', { qos: 1 });
    assert.deepEqual(await quiet(bob, 200), []);
    await Promise.all([bob.endAsync(), pub.endAsync()]);
  } finally {
    await broker.stop();
  }
  writeFileSync(acl.path, 'user x\ntopic read a/#/b\n');
  const bad = new BrokerProcess(port, data.dir, [], { STRATA_AUTH__ACL_FILE: acl.path });
  try {
    await assert.rejects(bad.start(), /exited with 2[\s\S]*line 2/);
  } finally {
    await bad.stop();
    data.remove();
    acl.dir.remove();
  }
});

test('a 3.1.1 subscriber with mosquitto_sub gets only what the ACL lets it read', async () => {
  const acl = aclFile();
  const tb = await startBroker({ config: { 'auth.acl_file': acl.path } });
  try {
    const { spawn } = await import('node:child_process');
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(tb.port), '-u', 'bob', '-i', 'msub', '-t', 'shared/#', '-t', 'home/alice/#', '-q', '1', '-v', '-C', '2']);
    let out = '';
    sub.stdout.on('data', (b: Buffer) => (out += b.toString()));
    await sleep(300);
    const pub = await client(tb, { username: 'alice', clientId: 'ms-alice' });
    await pub.publishAsync('home/alice/a', 'one', { qos: 1 });
    await pub.publishAsync('shared/in', 'two', { qos: 1 });
    await new Promise<void>((r) => sub.once('exit', () => r()));
    assert.deepEqual(out.trim().split('\n').sort(), ['home/alice/a one', 'shared/in two']);
    await pub.endAsync();
  } finally {
    await tb.close();
    acl.dir.remove();
  }
});

