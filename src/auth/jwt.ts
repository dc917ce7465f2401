/**
 * JSON Web Tokens as MQTT credentials (`auth.jwt.*`). Every signature and claim check is jose's
 * (`jwtVerify`, clock tolerance 0: `exp` and `nbf` are exact); this module only picks the key:
 *
 * - HS256/384/512 → `auth.jwt.secret` (the secret is never used for any other algorithm, so a
 *   token signed with the public key as an HMAC secret cannot pass);
 * - RS*, PS*, ES*, EdDSA → `auth.jwt.jwks_file` (the key matching the token's `kid` and `alg`)
 *   when configured, else `auth.jwt.public_key` (a PEM file);
 * - only the algorithms listed in `auth.jwt.algorithms` are accepted; `none` never is.
 *
 * Key files are read when the verifier is made (`fromConfig`, again on each reload): a missing
 * or malformed file is an error that names it. A verifier is immutable.
 */
import type { KeyObject } from 'node:crypto';
import { crypto } from '../crypto.js';
import { readFileSync } from 'node:fs';
import type { createLocalJWKSet, JSONWebKeySet, JWTPayload, JWTVerifyOptions } from 'jose';

type Jose = typeof import('jose');
/** jose, imported at the first token (a broker without JWT never loads it). */
let joseModule: Promise<Jose> | null = null;
function jose(): Promise<Jose> {
  return (joseModule ??= import('jose'));
}
import { type Config, ConfigError } from '../config.js';

/** Algorithms `auth.jwt.algorithms` may name. */
export const JWT_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export type JwtResult =
  | { ok: true; username: string | undefined; clientId: string | undefined; expiresAt: number | undefined }
  | { ok: false; reason: string };

/** A key file that cannot be used; names the file. */
export class JwtConfigError extends ConfigError {
  constructor(
    message: string,
    readonly path?: string,
  ) {
    super(path === undefined ? message : `${path}: ${message}`);
    this.name = 'JwtConfigError';
  }
}

export type JwtConfig = Pick<
  Config,
  | 'auth.jwt.secret'
  | 'auth.jwt.public_key'
  | 'auth.jwt.jwks_file'
  | 'auth.jwt.algorithms'
  | 'auth.jwt.username_claim'
  | 'auth.jwt.clientid_claim'
  | 'auth.jwt.issuer'
  | 'auth.jwt.audience'
>;

/** Compact JWS: header.payload.signature, base64url (the signature may be empty: `alg: none`). */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Does `s` have the shape of a JWT (compact JWS)? Says nothing of its validity. */
export function looksLikeJwt(s: string): boolean {
  return s.length < 65536 && COMPACT.test(s);
}

function readKeyFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new JwtConfigError(`cannot read the ${what}: ${(e as Error).message}`, path);
  }
}

function loadPublicKey(path: string): KeyObject {
  const pem = readKeyFile(path, 'JWT public key (auth.jwt.public_key)');
  try {
    const key = crypto().createPublicKey(pem);
    return key;
  } catch (e) {
    throw new JwtConfigError(`not a PEM public key (auth.jwt.public_key): ${(e as Error).message}`, path);
  }
}

/** The JWKS in `path`, checked as far as it can be without jose (which takes it at the first token). */
function loadJwks(path: string): JSONWebKeySet {
  const text = readKeyFile(path, 'JWKS file (auth.jwt.jwks_file)');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new JwtConfigError(`not JSON (auth.jwt.jwks_file): ${(e as Error).message}`, path);
  }
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new JwtConfigError('a JWKS needs a non-empty "keys" array (auth.jwt.jwks_file)', path);
  keys.forEach((k: unknown, i) => {
    if (typeof k !== 'object' || k === null || typeof (k as { kty?: unknown }).kty !== 'string') throw new JwtConfigError(`keys[${i}] is not a JWK (no "kty")`, path);
    if ((k as { kty: string }).kty === 'oct') throw new JwtConfigError(`keys[${i}] is a symmetric key; use auth.jwt.secret for HMAC`, path);
    if ('d' in k) throw new JwtConfigError(`keys[${i}] holds a private key; a JWKS file here holds public keys only`, path);
  });
  return json as JSONWebKeySet;
}

function claimString(payload: JWTPayload, claim: string): string | undefined {
  if (claim === '') return undefined;
  const v = payload[claim];
  return typeof v === 'string' ? v : undefined;
}

/** Why jose refused a token, in a few words. */
function reasonOf(e: unknown, alg: string | undefined, { errors }: Jose): string {
  if (e instanceof errors.JWTExpired) return 'token expired';
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === 'nbf') return 'token not valid yet (nbf)';
    return `token ${e.claim} claim: ${e.reason === 'check_failed' ? 'does not match' : e.reason}`;
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'bad token signature';
  if (e instanceof errors.JOSEAlgNotAllowed) return `token algorithm ${alg ?? '?'} not allowed`;
  if (e instanceof errors.JWKSNoMatchingKey) return 'no key in the JWKS matches the token';
  if (e instanceof errors.JWKSMultipleMatchingKeys) return 'several keys in the JWKS match the token (give it a kid)';
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid) return `malformed token: ${e.message}`;
  if (e instanceof NoKey) return e.message;
  return `token refused: ${(e as Error).message ?? String(e)}`;
}

class NoKey extends Error {}

export class JwtVerifier {
  private readonly options: JWTVerifyOptions;
  /** jose's key set for the JWKS file, made at the first token. */
  private jwks: ReturnType<typeof createLocalJWKSet> | null = null;

  private constructor(
    private readonly algorithms: ReadonlySet<string>,
    private readonly secret: Uint8Array | null,
    private readonly publicKey: KeyObject | null,
    private readonly jwksFile: JSONWebKeySet | null,
    private readonly usernameClaim: string,
    private readonly clientIdClaim: string,
    issuer: string,
    audience: string,
  ) {
    this.options = { algorithms: [...algorithms], clockTolerance: 0 };
    if (issuer !== '') this.options.issuer = issuer;
    if (audience !== '') this.options.audience = audience;
  }

  /**
   * The verifier `cfg` asks for, or null when no key is configured (JWT off). Reads the key
   * files now; throws a JwtConfigError naming a file it cannot use.
   */
  static fromConfig(cfg: JwtConfig): JwtVerifier | null {
    const secret = cfg['auth.jwt.secret'];
    const pemPath = cfg['auth.jwt.public_key'];
    const jwksPath = cfg['auth.jwt.jwks_file'];
    if (secret === '' && pemPath === '' && jwksPath === '') return null;
    const algorithms = new Set<string>();
    for (const a of cfg['auth.jwt.algorithms'].split(',').map((s) => s.trim())) {
      if (!(JWT_ALGORITHMS as readonly string[]).includes(a)) throw new JwtConfigError(`auth.jwt.algorithms: unknown algorithm ${JSON.stringify(a)} (known: ${JWT_ALGORITHMS.join(', ')})`);
      algorithms.add(a);
    }
    return new JwtVerifier(
      algorithms,
      secret === '' ? null : new TextEncoder().encode(secret),
      pemPath === '' ? null : loadPublicKey(pemPath),
      jwksPath === '' ? null : loadJwks(jwksPath),
      cfg['auth.jwt.username_claim'],
      cfg['auth.jwt.clientid_claim'],
      cfg['auth.jwt.issuer'],
      cfg['auth.jwt.audience'],
    );
  }

  /** Check `token`'s signature, algorithm, `exp`, `nbf` (and `iss`/`aud` when configured). */
  async verify(token: string): Promise<JwtResult> {
    const j = await jose();
    if (this.jwksFile !== null && this.jwks === null) {
      try {
        this.jwks = j.createLocalJWKSet(this.jwksFile);
      } catch (e) {
        return { ok: false, reason: `JWKS file unusable: ${(e as Error).message}` };
      }
    }
    let alg: string | undefined;
    try {
      alg = j.decodeProtectedHeader(token).alg;
    } catch (e) {
      return { ok: false, reason: `malformed token: ${(e as Error).message}` };
    }
    if (alg === undefined || alg === 'none') return { ok: false, reason: 'unsigned token (alg none) not allowed' };
    if (!this.algorithms.has(alg)) return { ok: false, reason: `token algorithm ${alg} not allowed` };
    try {
      const { payload } = await j.jwtVerify(
        token,
        async (header, input) => {
          const a = header.alg;
          if (a.startsWith('HS')) {
            if (this.secret === null) throw new NoKey(`no secret configured for ${a} tokens (auth.jwt.secret)`);
            return this.secret;
          }
          if (this.jwks !== null) return this.jwks(header, input);
          if (this.publicKey !== null) return this.publicKey;
          throw new NoKey(`no public key configured for ${a} tokens (auth.jwt.public_key, auth.jwt.jwks_file)`);
        },
        this.options,
      );
      return {
        ok: true,
        username: claimString(payload, this.usernameClaim),
        clientId: claimString(payload, this.clientIdClaim),
        expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
      };
    } catch (e) {
      return { ok: false, reason: reasonOf(e, alg, j) };
    }
  }
}
