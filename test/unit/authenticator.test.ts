/**
 * The authentication chain (src/auth/authenticator.ts): anonymous with and without
 * `mqtt.allow_anonymous`, JWT in the password or the username, the password file, both
 * together, neither, synchronous answers where nothing needs hashing, and reload keeping the
 * old state when a file is bad.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type JWTPayload, SignJWT } from 'jose';
import { type AuthConfig, type AuthResult, createAuthenticator } from '../../src/auth/authenticator.js';
import { PasswordFileError, writeEntry } from '../../src/auth/password-file.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { opensslKeyPair } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-authn-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `f-${++n}`);

const log = createLogger('silent');
const SECRET = 'a-shared-secret-of-decent-length!';
const client = (clientId = 'c1', username?: string): { clientId: string; username: string | undefined; remoteAddress: string } => ({ clientId, username, remoteAddress: '127.0.0.1' });
const pw = (s: string): Buffer => Buffer.from(s);
const now = (): number => Math.floor(Date.now() / 1000);

function cfg(over: Partial<AuthConfig>): AuthConfig {
  return { ...loadConfig(), ...over };
}

function token(claims: JWTPayload): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));
}

async function passwordFile(users: Record<string, string>): Promise<string> {
  const p = fresh();
  let create = true;
  for (const [u, p2] of Object.entries(users)) {
    await writeEntry(p, u, p2, { create });
    create = false;
  }
  return p;
}

function refused(r: AuthResult, code: number, why?: RegExp): void {
  assert.equal(r.ok, false, `expected a refusal, got ${JSON.stringify(r)}`);
  if (!r.ok) {
    assert.equal(r.reasonCode, code, r.reason);
    if (why) assert.match(r.reason, why);
  }
}

describe('nothing configured', () => {
  test('everyone is accepted, synchronously; anonymous only with mqtt.allow_anonymous', () => {
    const a = createAuthenticator(cfg({}), log);
    assert.equal(a.passwordFile, null);
    assert.equal(a.jwt, null);
    const r = a.authenticate(client(), 'alice', pw('whatever'));
    assert.ok(!(r instanceof Promise), 'no hashing, no await');
    assert.deepEqual(r, { ok: true });
    assert.deepEqual(a.authenticate(client(), undefined, undefined), { ok: true });
    const closed = createAuthenticator(cfg({ 'mqtt.allow_anonymous': false }), log);
    const anon = closed.authenticate(client(), undefined, undefined);
    assert.ok(!(anon instanceof Promise));
    refused(anon, 0x87, /anonymous/);
    assert.deepEqual(closed.authenticate(client(), 'alice', undefined), { ok: true });
  });
});

describe('password file', async () => {
  const path = await passwordFile({ alice: 'a-pass', bob: 'b-pass' });

  test('right password ok; wrong password, unknown user, no password → 0x86 with one reason', async () => {
    const a = createAuthenticator(cfg({ 'auth.password_file': path }), log);
    assert.equal(a.passwordFile?.size, 2);
    assert.deepEqual(await a.authenticate(client(), 'alice', pw('a-pass')), { ok: true });
    const wrong = await a.authenticate(client(), 'alice', pw('b-pass'));
    const unknown = await a.authenticate(client(), 'mallory', pw('a-pass'));
    refused(wrong, 0x86);
    refused(unknown, 0x86);
    assert.deepEqual(wrong, unknown, 'a client cannot tell an unknown user from a wrong password');
    refused(await a.authenticate(client(), 'bob', undefined), 0x86);
  });

  test('a password verified once is answered synchronously after', async () => {
    const a = createAuthenticator(cfg({ 'auth.password_file': path }), log);
    const first = a.authenticate(client(), 'bob', pw('b-pass'));
    assert.ok(first instanceof Promise);
    assert.deepEqual(await first, { ok: true });
    const again = a.authenticate(client(), 'bob', pw('b-pass'));
    assert.deepEqual(again, { ok: true });
    assert.ok(!(again instanceof Promise));
    assert.ok(a.authenticate(client(), 'bob', pw('nope')) instanceof Promise);
  });

  test('anonymous: 0x87 without allow_anonymous, accepted with it (the file is for users who name themselves)', async () => {
    refused(await createAuthenticator(cfg({ 'auth.password_file': path, 'mqtt.allow_anonymous': false }), log).authenticate(client(), undefined, undefined), 0x87);
    assert.deepEqual(await createAuthenticator(cfg({ 'auth.password_file': path }), log).authenticate(client(), undefined, undefined), { ok: true });
  });

  test('a bad file at creation is a ConfigError naming file and line', () => {
    const bad = fresh();
    writeFileSync(bad, '# ok\nalice\n');
    assert.throws(
      () => createAuthenticator(cfg({ 'auth.password_file': bad }), log),
      (e: Error) => e instanceof PasswordFileError && e instanceof ConfigError && e.message.startsWith(`${bad}:2: `),
    );
    assert.throws(() => createAuthenticator(cfg({ 'auth.password_file': join(dir, 'none') }), log), /cannot read the password file/);
  });

  test('reload picks up changes; a bad file keeps the old state and the error names it', async () => {
    const p = await passwordFile({ carol: 'c1' });
    const a = createAuthenticator(cfg({ 'auth.password_file': p }), log);
    assert.deepEqual(await a.authenticate(client(), 'carol', pw('c1')), { ok: true });
    await writeEntry(p, 'carol', 'c2');
    await writeEntry(p, 'dan', 'd1');
    // Not re-read until reload: the cached verification still answers for the old file.
    assert.deepEqual(await a.authenticate(client(), 'carol', pw('c1')), { ok: true });
    await a.reload();
    refused(await a.authenticate(client(), 'carol', pw('c1')), 0x86);
    assert.deepEqual(await a.authenticate(client(), 'carol', pw('c2')), { ok: true });
    assert.deepEqual(await a.authenticate(client(), 'dan', pw('d1')), { ok: true });
    writeFileSync(p, 'carol:$6$broken\n');
    await assert.rejects(a.reload(), (e: Error) => e instanceof PasswordFileError && e.message.startsWith(`${p}:1: `));
    assert.deepEqual(await a.authenticate(client(), 'dan', pw('d1')), { ok: true }, 'the old file still answers');
  });
});

describe('JWT', () => {
  test('token as the password: valid → ok with expiresAt; sub must be the username; invalid → 0x86', async () => {
    const a = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET }), log);
    const exp = now() + 300;
    assert.deepEqual(await a.authenticate(client(), 'alice', pw(await token({ sub: 'alice', exp }))), { ok: true, expiresAt: exp * 1000, username: 'alice' });
    refused(await a.authenticate(client(), 'bob', pw(await token({ sub: 'alice', exp }))), 0x86, /not the username/);
    refused(await a.authenticate(client(), 'alice', pw(await token({ exp }))), 0x86, /no "sub" claim/);
    refused(await a.authenticate(client(), 'alice', pw(await token({ sub: 'alice', exp: now() - 1 }))), 0x86, /expired/);
    const other = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('another-secret-of-decent-length!!'));
    refused(await a.authenticate(client(), 'alice', pw(other)), 0x86, /signature/);
  });

  test('JWT only: a username without a token is refused (0x86); anonymous follows allow_anonymous', async () => {
    const a = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET }), log);
    refused(await a.authenticate(client(), 'alice', pw('not a token')), 0x86, /no token/);
    refused(await a.authenticate(client(), 'alice', undefined), 0x86, /no token/);
    assert.deepEqual(await a.authenticate(client(), undefined, undefined), { ok: true });
    const closed = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET, 'mqtt.allow_anonymous': false }), log);
    refused(await closed.authenticate(client(), undefined, pw(await token({ sub: 'alice' }))), 0x87);
  });

  test('anonymous (allowed) with a token in the password (MQTT 5 permits it): the token decides and names the user', async () => {
    const a = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET }), log);
    assert.deepEqual(await a.authenticate(client(), undefined, pw(await token({ sub: 'alice' }))), { ok: true, username: 'alice' });
    refused(await a.authenticate(client(), undefined, pw(`${await token({ sub: 'alice' })}x`)), 0x86, /signature/);
  });

  test('token as the username (auth.jwt.from = username): the claim names the user', async () => {
    const a = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET, 'auth.jwt.from': 'username' }), log);
    const t = await token({ sub: 'alice' });
    assert.deepEqual(await a.authenticate(client('c1', t), t, undefined), { ok: true, username: 'alice' });
    assert.deepEqual(await a.authenticate(client('c1', t), t, pw('ignored')), { ok: true, username: 'alice' });
    refused(await a.authenticate(client(), 'alice', pw(t)), 0x86, /no token/);
  });

  test('auth.jwt.clientid_claim: the claim must equal the client id', async () => {
    const a = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET, 'auth.jwt.clientid_claim': 'client_id' }), log);
    const t = await token({ sub: 'alice', client_id: 'dev-1' });
    assert.deepEqual(await a.authenticate(client('dev-1'), 'alice', pw(t)), { ok: true, username: 'alice' });
    refused(await a.authenticate(client('dev-2'), 'alice', pw(t)), 0x86, /client id/);
    refused(await a.authenticate(client('dev-1'), 'alice', pw(await token({ sub: 'alice' }))), 0x86, /client id/);
  });

  test('a bad key file at creation or reload names it; reload keeps the old keys', async () => {
    const jwks = fresh();
    writeFileSync(jwks, '{"keys": []}');
    assert.throws(() => createAuthenticator(cfg({ 'auth.jwt.jwks_file': jwks }), log), (e: Error) => e instanceof ConfigError && e.message.startsWith(`${jwks}: `));
    const pem = fresh();
    const k = opensslKeyPair('ec');
    writeFileSync(pem, k.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const a = createAuthenticator(cfg({ 'auth.jwt.public_key': pem }), log);
    const t = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256' }).sign(k.privateKey);
    assert.deepEqual(await a.authenticate(client(), 'alice', pw(t)), { ok: true, username: 'alice' });
    writeFileSync(pem, 'garbage');
    await assert.rejects(a.reload(), (e: Error) => e.message.startsWith(`${pem}: not a PEM public key`));
    assert.deepEqual(await a.authenticate(client(), 'alice', pw(t)), { ok: true, username: 'alice' }, 'the old key still answers');
  });
});

describe('JWT and a password file together', async () => {
  const path = await passwordFile({ alice: 'a-pass' });
  const a = createAuthenticator(cfg({ 'auth.jwt.secret': SECRET, 'auth.password_file': path }), log);

  test('a token decides when there is one; otherwise the password file', async () => {
    assert.deepEqual(await a.authenticate(client(), 'alice', pw('a-pass')), { ok: true });
    assert.deepEqual(await a.authenticate(client(), 'zoe', pw(await token({ sub: 'zoe' }))), { ok: true, username: 'zoe' });
    refused(await a.authenticate(client(), 'zoe', pw('a-pass')), 0x86, /bad username or password/);
    // A bad token is not retried against the file.
    refused(await a.authenticate(client(), 'alice', pw(await token({ sub: 'alice', exp: now() - 10 }))), 0x86, /expired/);
  });
});
