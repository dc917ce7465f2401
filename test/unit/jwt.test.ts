/**
 * JWT credentials (src/auth/jwt.ts): HS256 with a secret, RS256 with a PEM public key, ES256 from
 * a JWKS file; expired, not yet valid, wrong secret, wrong algorithm, `none`, issuer/audience and
 * the username / client id claims. Tokens are signed by jose with keys made here.
 */
import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { exportJWK, type JWTPayload, SignJWT, UnsecuredJWT } from 'jose';
import { JwtConfigError, type JwtConfig, JwtVerifier, looksLikeJwt } from '../../src/auth/jwt.js';
import { CONFIG_KEYS, ConfigError, loadConfig } from '../../src/config.js';
import { opensslKeyPair } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-jwt-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string): string {
  const p = join(dir, `f-${++n}`);
  writeFileSync(p, text);
  return p;
}

const SECRET = 'a-shared-secret-of-decent-length!';
const now = (): number => Math.floor(Date.now() / 1000);

function cfg(over: Partial<JwtConfig> = {}): JwtConfig {
  return { ...loadConfig(), ...over };
}

function verifier(over: Partial<JwtConfig>): JwtVerifier {
  const v = JwtVerifier.fromConfig(cfg(over));
  assert.ok(v);
  return v;
}

async function hs256(claims: JWTPayload, secret = SECRET, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(new TextEncoder().encode(secret));
}

async function reason(v: JwtVerifier, token: string): Promise<string> {
  const r = await v.verify(token);
  assert.equal(r.ok, false, `expected a refusal, got ${JSON.stringify(r)}`);
  return r.ok ? '' : r.reason;
}

test('the auth.jwt.* keys are declared, with JWT off by default', () => {
  const c = loadConfig();
  assert.equal(JwtVerifier.fromConfig(c), null);
  assert.equal(c['auth.jwt.algorithms'], 'HS256,RS256,ES256');
  assert.equal(c['auth.jwt.from'], 'password');
  assert.equal(c['auth.jwt.username_claim'], 'sub');
  for (const k of ['auth.password_file', 'auth.jwt.secret', 'auth.jwt.public_key', 'auth.jwt.jwks_file', 'auth.jwt.clientid_claim', 'auth.jwt.issuer', 'auth.jwt.audience'] as const) {
    assert.equal(CONFIG_KEYS[k].default, '', k);
  }
  assert.throws(() => loadConfig({ overrides: { 'auth.jwt.algorithms': 'HS256,none' } }), ConfigError);
  assert.throws(() => loadConfig({ overrides: { 'auth.jwt.from': 'header' } }), ConfigError);
  assert.equal(loadConfig({ overrides: { 'auth.jwt.algorithms': 'RS256, ES384,EdDSA' } })['auth.jwt.algorithms'], 'RS256, ES384,EdDSA');
  assert.equal(loadConfig({ env: { STRATA_AUTH__JWT__SECRET: 's' } })['auth.jwt.secret'], 's');
});

test('looksLikeJwt: three base64url parts (the last may be empty)', () => {
  assert.equal(looksLikeJwt('aGVsbG8.eyJ4IjoxfQ.c2ln'), true);
  assert.equal(looksLikeJwt('aGVsbG8.eyJ4IjoxfQ.'), true);
  assert.equal(looksLikeJwt('hunter2'), false);
  assert.equal(looksLikeJwt('a.b'), false);
  assert.equal(looksLikeJwt('a.b.c.d'), false);
  assert.equal(looksLikeJwt('a b.c.d'), false);
});

describe('HS256 with auth.jwt.secret', () => {
  const v = verifier({ 'auth.jwt.secret': SECRET });

  test('a valid token: username from sub, expiresAt from exp (ms)', async () => {
    const exp = now() + 600;
    const r = await v.verify(await hs256({ sub: 'alice', exp }));
    assert.deepEqual(r, { ok: true, username: 'alice', clientId: undefined, expiresAt: exp * 1000 });
    const noExp = await v.verify(await hs256({ sub: 'bob' }));
    assert.deepEqual(noExp, { ok: true, username: 'bob', clientId: undefined, expiresAt: undefined });
  });

  test('expired (exp one second ago: no clock tolerance), not yet valid (nbf)', async () => {
    assert.equal(await reason(v, await hs256({ sub: 'a', exp: now() - 1 })), 'token expired');
    assert.equal(await reason(v, await hs256({ sub: 'a', nbf: now() + 60 })), 'token not valid yet (nbf)');
  });

  test('wrong secret, tampered payload, garbage', async () => {
    assert.equal(await reason(v, await hs256({ sub: 'a' }, 'another-secret-of-decent-length!!')), 'bad token signature');
    const [h, , s] = (await hs256({ sub: 'alice' })).split('.');
    const forged = Buffer.from(JSON.stringify({ sub: 'root' })).toString('base64url');
    assert.equal(await reason(v, `${h}.${forged}.${s}`), 'bad token signature');
    assert.match(await reason(v, 'not-a.token.at-all'), /^malformed token/);
  });

  test('alg none is refused, and so is an algorithm not listed', async () => {
    const unsigned = new UnsecuredJWT({ sub: 'alice' }).encode();
    assert.equal(await reason(v, unsigned), 'unsigned token (alg none) not allowed');
    assert.equal(await reason(v, await hs256({ sub: 'a' }, SECRET, 'HS512')), 'token algorithm HS512 not allowed');
    const v512 = verifier({ 'auth.jwt.secret': SECRET, 'auth.jwt.algorithms': 'HS512' });
    assert.equal((await v512.verify(await hs256({ sub: 'a' }, SECRET, 'HS512'))).ok, true);
    assert.equal(await reason(v512, await hs256({ sub: 'a' })), 'token algorithm HS256 not allowed');
  });

  test('issuer and audience, when configured', async () => {
    const va = verifier({ 'auth.jwt.secret': SECRET, 'auth.jwt.issuer': 'https://idp', 'auth.jwt.audience': 'mqtt' });
    assert.equal((await va.verify(await hs256({ sub: 'a', iss: 'https://idp', aud: 'mqtt' }))).ok, true);
    assert.equal((await va.verify(await hs256({ sub: 'a', iss: 'https://idp', aud: ['web', 'mqtt'] }))).ok, true);
    assert.match(await reason(va, await hs256({ sub: 'a', iss: 'https://other', aud: 'mqtt' })), /^token iss claim/);
    assert.match(await reason(va, await hs256({ sub: 'a', iss: 'https://idp', aud: 'web' })), /^token aud claim/);
    assert.match(await reason(va, await hs256({ sub: 'a' })), /^token iss claim/);
  });

  test('username_claim and clientid_claim pick the claims (strings only)', async () => {
    const vc = verifier({ 'auth.jwt.secret': SECRET, 'auth.jwt.username_claim': 'preferred_username', 'auth.jwt.clientid_claim': 'cid' });
    assert.deepEqual(await vc.verify(await hs256({ sub: 'x', preferred_username: 'alice', cid: 'dev-1' })), { ok: true, username: 'alice', clientId: 'dev-1', expiresAt: undefined });
    assert.deepEqual(await vc.verify(await hs256({ preferred_username: 42, cid: ['dev-1'] })), { ok: true, username: undefined, clientId: undefined, expiresAt: undefined });
  });
});

describe('RS256 with a PEM public key', () => {
  const rsa = opensslKeyPair('rsa');
  const pem = file(rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  const v = verifier({ 'auth.jwt.public_key': pem });
  const rs256 = (claims: JWTPayload, key = rsa.privateKey): Promise<string> => new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).sign(key);

  test('a token signed with the private key verifies; another key does not', async () => {
    const exp = now() + 60;
    assert.deepEqual(await v.verify(await rs256({ sub: 'alice', exp })), { ok: true, username: 'alice', clientId: undefined, expiresAt: exp * 1000 });
    const other = opensslKeyPair('rsa');
    assert.equal(await reason(v, await rs256({ sub: 'alice' }, other.privateKey)), 'bad token signature');
    assert.equal(await reason(v, await rs256({ sub: 'alice', exp: now() - 5 })), 'token expired');
  });

  test('wrong algorithm: an HS256 token (even one keyed with the public key itself) when only a public key is configured', async () => {
    assert.match(await reason(v, await hs256({ sub: 'alice' })), /no secret configured for HS256/);
    const pemText = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    assert.match(await reason(v, await hs256({ sub: 'alice' }, pemText)), /no secret configured for HS256/);
  });

  test('an unreadable or non-PEM key file is a ConfigError naming the file', () => {
    const missing = join(dir, 'missing.pem');
    assert.throws(
      () => JwtVerifier.fromConfig(cfg({ 'auth.jwt.public_key': missing })),
      (e: Error) => e instanceof JwtConfigError && e instanceof ConfigError && e.message.startsWith(`${missing}: cannot read`),
    );
    const junk = file('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n');
    assert.throws(() => JwtVerifier.fromConfig(cfg({ 'auth.jwt.public_key': junk })), (e: Error) => e instanceof JwtConfigError && e.message.startsWith(`${junk}: not a PEM public key`));
  });
});

describe('ES256 from a JWKS file', async () => {
  const k1 = opensslKeyPair('ec');
  const k2 = opensslKeyPair('ec');
  const jwks = { keys: [{ ...(await exportJWK(k1.publicKey)), kid: 'one', alg: 'ES256', use: 'sig' }, { ...(await exportJWK(k2.publicKey)), kid: 'two', alg: 'ES256', use: 'sig' }] };
  const path = file(JSON.stringify(jwks));
  const v = verifier({ 'auth.jwt.jwks_file': path });
  const es256 = (claims: JWTPayload, key: KeyObject, kid: string | undefined): Promise<string> =>
    new SignJWT(claims).setProtectedHeader(kid === undefined ? { alg: 'ES256' } : { alg: 'ES256', kid }).sign(key);

  test('the key named by kid verifies; the other key under that kid does not; no kid with two keys is refused', async () => {
    assert.equal((await v.verify(await es256({ sub: 'a' }, k1.privateKey, 'one'))).ok, true);
    assert.equal((await v.verify(await es256({ sub: 'b' }, k2.privateKey, 'two'))).ok, true);
    assert.equal(await reason(v, await es256({ sub: 'a' }, k2.privateKey, 'one')), 'bad token signature');
    assert.equal(await reason(v, await es256({ sub: 'a' }, k1.privateKey, 'three')), 'no key in the JWKS matches the token');
    assert.match(await reason(v, await es256({ sub: 'a' }, k1.privateKey, undefined)), /several keys in the JWKS match/);
  });

  test('bad JWKS files are ConfigErrors naming the file', async () => {
    const priv = { keys: [{ ...(await exportJWK(k1.privateKey)), kid: 'p' }] };
    for (const [text, why] of [
      ['{', /not JSON/],
      ['{"keys": []}', /non-empty "keys"/],
      ['{"keys": [{"x": 1}]}', /keys\[0\] is not a JWK/],
      ['{"keys": [{"kty": "oct", "k": "AAAA"}]}', /symmetric key/],
      [JSON.stringify(priv), /private key/],
    ] as [string, RegExp][]) {
      const p = file(text);
      assert.throws(
        () => JwtVerifier.fromConfig(cfg({ 'auth.jwt.jwks_file': p })),
        (e: Error) => e instanceof JwtConfigError && e.message.startsWith(`${p}: `) && why.test(e.message),
        text,
      );
    }
  });

  test('HS256 and RS256 tokens when only ES256 keys are configured', async () => {
    assert.match(await reason(v, await hs256({ sub: 'a' })), /no secret configured/);
    const rsa = opensslKeyPair('rsa');
    assert.equal(await reason(v, await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'RS256', kid: 'one' }).sign(rsa.privateKey)), 'no key in the JWKS matches the token');
  });
});

test('unknown algorithm names in a config built by hand are refused', () => {
  assert.throws(() => JwtVerifier.fromConfig(cfg({ 'auth.jwt.secret': 's', 'auth.jwt.algorithms': 'HS256,XX1' })), /unknown algorithm "XX1"/);
});
