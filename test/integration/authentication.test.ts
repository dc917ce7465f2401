/**
 * Authentication with real clients over TCP: anonymous refused, a password file written by
 * `mosquitto_passwd` (and by `stratamq passwd`) accepted with the right password and refused
 * with a wrong one, JWTs expired / wrongly signed refused, a JWT expiring while connected ends
 * the connection (v5: DISCONNECT 0xA0), the embedding app's gate after the file, SIGHUP-style
 * reload of the password file, and the ACL applied to the user a token names.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import type { IConnackPacket, IDisconnectPacket } from 'mqtt-packet';
import { RawClient, sleep, startBroker, tempDir } from '../helpers.js';
import { writeEntry } from '../../src/auth/password-file.js';

const HAS_MOSQUITTO_PASSWD = existsSync('/usr/bin/mosquitto_passwd');

async function connack(port: number, version: 4 | 5, clientId: string, username?: string, password?: string): Promise<{ code: number; c: RawClient }> {
  const c = await RawClient.tcp(port, version);
  const extra: Record<string, unknown> = {};
  if (username !== undefined) extra.username = username;
  if (password !== undefined) extra.password = Buffer.from(password);
  const ack = (await c.connect(clientId, extra)) as IConnackPacket;
  return { code: (version === 5 ? ack.reasonCode : ack.returnCode) ?? 0, c };
}

test('password file: mosquitto_passwd entries and stratamq passwd entries accepted, wrong password and unknown user refused (0x86 / 4), anonymous refused (0x87 / 5), reload picks up a new user', { skip: !HAS_MOSQUITTO_PASSWD && 'mosquitto_passwd not installed' }, async () => {
  const dir = tempDir('strata-auth-');
  const file = join(dir.dir, 'passwd');
  execFileSync('mosquitto_passwd', ['-c', '-b', file, 'mosq', 'mosq-secret']);
  await writeEntry(file, 'argon', 'argon-secret', {});
  const tb = await startBroker({ config: { 'auth.password_file': file, 'mqtt.allow_anonymous': false } });
  try {
    for (const v of [4, 5] as const) {
      assert.equal((await connack(tb.port, v, `m${v}`, 'mosq', 'mosq-secret')).code, 0, 'a $7$ entry from mosquitto_passwd');
      assert.equal((await connack(tb.port, v, `a${v}`, 'argon', 'argon-secret')).code, 0, 'an argon2id entry');
      assert.equal((await connack(tb.port, v, `w${v}`, 'mosq', 'wrong')).code, v === 5 ? 0x86 : 4);
      assert.equal((await connack(tb.port, v, `u${v}`, 'nobody', 'x')).code, v === 5 ? 0x86 : 4);
      assert.equal((await connack(tb.port, v, `n${v}`)).code, v === 5 ? 0x87 : 5);
    }
    execFileSync('mosquitto_passwd', ['-b', file, 'later', 'later-secret']);
    assert.equal((await connack(tb.port, 5, 'l1', 'later', 'later-secret')).code, 0x86, 'not before the reload');
    await tb.broker.reload();
    assert.equal((await connack(tb.port, 5, 'l2', 'later', 'later-secret')).code, 0);
  } finally {
    await tb.close();
    dir.remove();
  }
});

test("the embedding app's authenticate gate runs after the file, only for clients the file accepted", async () => {
  const dir = tempDir('strata-auth-');
  const file = join(dir.dir, 'passwd');
  await writeEntry(file, 'u', 'p', { create: true });
  const asked: string[] = [];
  const tb = await startBroker({
    config: { 'auth.password_file': file },
    gates: {
      authenticate: (c) => {
        asked.push(c.clientId);
        return c.clientId !== 'banned' || 0x8a;
      },
    },
  });
  try {
    assert.equal((await connack(tb.port, 5, 'fine', 'u', 'p')).code, 0);
    assert.equal((await connack(tb.port, 5, 'banned', 'u', 'p')).code, 0x8a);
    assert.equal((await connack(tb.port, 5, 'wrongpw', 'u', 'nope')).code, 0x86);
    assert.deepEqual(asked, ['fine', 'banned']);
  } finally {
    await tb.close();
    dir.remove();
  }
});

const SECRET = 'a-test-secret-of-sufficient-length-0123456789';
const sign = (claims: Record<string, unknown>, secret = SECRET): Promise<string> => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
const now = (): number => Math.floor(Date.now() / 1000);

test('JWT: a valid token is accepted; expired, wrongly signed and other-user tokens are refused; at `exp` a v5 client gets DISCONNECT 0xA0 and a 3.1.1 client is closed', async () => {
  const tb = await startBroker({ config: { 'auth.jwt.secret': SECRET, 'mqtt.allow_anonymous': false } });
  try {
    assert.equal((await connack(tb.port, 5, 'j1', 'ann', await sign({ sub: 'ann', exp: now() + 60 }))).code, 0);
    assert.equal((await connack(tb.port, 5, 'j2', 'ann', await sign({ sub: 'ann', exp: now() - 5 }))).code, 0x86, 'expired');
    assert.equal((await connack(tb.port, 5, 'j3', 'ann', await sign({ sub: 'ann', exp: now() + 60 }, 'another-secret-of-sufficient-length-0000'))).code, 0x86, 'wrong signature');
    assert.equal((await connack(tb.port, 4, 'j4', 'bob', await sign({ sub: 'ann', exp: now() + 60 }))).code, 4, 'a token for someone else');

    const v5 = await connack(tb.port, 5, 'j5', 'ann', await sign({ sub: 'ann', exp: now() + 2 }));
    const v3 = await connack(tb.port, 4, 'j6', 'ann', await sign({ sub: 'ann', exp: now() + 2 }));
    assert.equal(v5.code, 0);
    assert.equal(v3.code, 0);
    const d = (await v5.c.next('disconnect', 5000)) as IDisconnectPacket;
    assert.equal(d.reasonCode, 0xa0);
    await v3.c.closedPromise;
    assert.ok(v3.c.closed);
  } finally {
    await tb.close();
  }
});

test('with the token in the username field, the ACL applies to the user the token names', async () => {
  const dir = tempDir('strata-auth-');
  const acl = join(dir.dir, 'acl');
  writeFileSync(acl, 'user ann\ntopic readwrite ann/#\n');
  const tb = await startBroker({ config: { 'auth.jwt.secret': SECRET, 'auth.jwt.from': 'username', 'auth.acl_file': acl } });
  try {
    const { code, c } = await connack(tb.port, 5, 'tok', await sign({ sub: 'ann', exp: now() + 60 }));
    assert.equal(code, 0);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ann/x', qos: 1 }, { topic: 'bob/x', qos: 1 }] });
    const sub = (await c.next('suback')) as { granted: number[] };
    assert.deepEqual(sub.granted, [1, 0x87]);
    c.end();
    await sleep(10);
  } finally {
    await tb.close();
    dir.remove();
  }
});
