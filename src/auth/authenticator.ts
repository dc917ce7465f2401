/**
 * The authentication chain the broker runs on CONNECT, before the embedding application's own
 * `authenticate` gate (which the broker asks only when this chain says yes):
 *
 * 1. No username (anonymous): refused with 0x87 Not authorized unless `mqtt.allow_anonymous`.
 * 2. JWT configured (`auth.jwt.secret`, `public_key` or `jwks_file`) and a token where
 *    `auth.jwt.from` says (the password, or the username) — a value shaped like a compact JWS,
 *    `header.payload.signature` — → the token decides: valid → accepted (with its `exp`, as
 *    `expiresAt`, and the user its `auth.jwt.username_claim` names); invalid (signature,
 *    algorithm, expired, not yet valid, issuer, audience, missing username claim, a username
 *    claim other than the CONNECT username when the token is the password, a client id claim
 *    other than the client id when `auth.jwt.clientid_claim` is set) → 0x86 Bad user name or
 *    password.
 * 3. Anonymous (and allowed) → accepted.
 * 4. A password file (`auth.password_file`) → the file decides: unknown user or wrong password
 *    → 0x86 (one reason for both, so a client cannot tell which).
 * 5. JWT configured but no token and no password file → 0x86 (a username alone is no credential).
 * 6. Nothing configured → accepted.
 *
 * Answers are synchronous when nothing needs hashing or a signature check (nothing configured,
 * anonymous, a password verified before — see PasswordFile.verifyCached), a Promise otherwise;
 * the broker's gates take either. `reload()` re-reads the password file and the JWT key files
 * and swaps them in only when all of them load: on a bad file the old state stays and the error
 * names the file.
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { RC } from '../wire/reason-codes.js';
import { JwtVerifier, looksLikeJwt } from './jwt.js';
import { PasswordFile } from './password-file.js';

export type AuthResult =
  | {
      ok: true;
      /** When the credential stops being valid (ms since epoch): a JWT's `exp`. */
      expiresAt?: number;
      /** The user the credential names (a JWT's username claim), when it names one. */
      username?: string;
    }
  | {
      ok: false;
      /** MQTT 5 CONNACK reason code: 0x86 Bad user name or password, 0x87 Not authorized. */
      reasonCode: number;
      reason: string;
    };

/** The connecting client, as far as authentication needs it. */
export interface AuthClient {
  readonly clientId: string;
  readonly username: string | undefined;
  readonly remoteAddress: string;
}

export interface Authenticator {
  authenticate(client: AuthClient, username: string | undefined, password: Buffer | undefined): AuthResult | Promise<AuthResult>;
  /** Re-read the password file and JWT key files; on error keep the old state and throw (naming the file). */
  reload(): Promise<void>;
  /** The loaded password file (null when none is configured). */
  readonly passwordFile: PasswordFile | null;
  /** The JWT verifier (null when JWT is off). */
  readonly jwt: JwtVerifier | null;
}

export type AuthConfig = Pick<
  Config,
  | 'mqtt.allow_anonymous'
  | 'auth.password_file'
  | 'auth.jwt.secret'
  | 'auth.jwt.public_key'
  | 'auth.jwt.jwks_file'
  | 'auth.jwt.algorithms'
  | 'auth.jwt.from'
  | 'auth.jwt.username_claim'
  | 'auth.jwt.clientid_claim'
  | 'auth.jwt.issuer'
  | 'auth.jwt.audience'
>;

const OK: AuthResult = Object.freeze({ ok: true });
const ANONYMOUS_REFUSED: AuthResult = Object.freeze({ ok: false, reasonCode: RC.NotAuthorized, reason: 'anonymous clients are not allowed' });
const BAD_PASSWORD: AuthResult = Object.freeze({ ok: false, reasonCode: RC.BadUserNameOrPassword, reason: 'bad username or password' });
const NO_TOKEN: AuthResult = Object.freeze({ ok: false, reasonCode: RC.BadUserNameOrPassword, reason: 'no token' });

function badToken(reason: string): AuthResult {
  return { ok: false, reasonCode: RC.BadUserNameOrPassword, reason };
}

class Chain implements Authenticator {
  private readonly allowAnonymous: boolean;
  private readonly tokenInPassword: boolean;
  private readonly usernameClaim: string;
  private readonly clientIdClaim: string;

  constructor(
    private readonly cfg: AuthConfig,
    private readonly log: Logger,
    public passwordFile: PasswordFile | null,
    public jwt: JwtVerifier | null,
  ) {
    this.allowAnonymous = cfg['mqtt.allow_anonymous'];
    this.tokenInPassword = cfg['auth.jwt.from'] === 'password';
    this.usernameClaim = cfg['auth.jwt.username_claim'];
    this.clientIdClaim = cfg['auth.jwt.clientid_claim'];
  }

  authenticate(client: AuthClient, username: string | undefined, password: Buffer | undefined): AuthResult | Promise<AuthResult> {
    if (username === undefined && !this.allowAnonymous) return ANONYMOUS_REFUSED;
    const jwt = this.jwt;
    if (jwt !== null) {
      const token = this.tokenInPassword ? (password !== undefined && password.length < 65536 ? password.toString('utf8') : undefined) : username;
      if (token !== undefined && looksLikeJwt(token)) return this.byToken(jwt, client, username, token);
    }
    if (username === undefined) return OK;
    const file = this.passwordFile;
    if (file !== null) {
      if (file.verifyCached(username, password)) return OK;
      return file.verify(username, password).then((ok) => (ok ? OK : BAD_PASSWORD));
    }
    return jwt !== null ? NO_TOKEN : OK;
  }

  private async byToken(jwt: JwtVerifier, client: AuthClient, username: string | undefined, token: string): Promise<AuthResult> {
    const r = await jwt.verify(token);
    if (!r.ok) return badToken(r.reason);
    if (this.usernameClaim !== '') {
      if (r.username === undefined) return badToken(`token has no "${this.usernameClaim}" claim`);
      if (this.tokenInPassword && username !== undefined && username !== r.username) return badToken(`token "${this.usernameClaim}" is not the username`);
    }
    if (this.clientIdClaim !== '' && r.clientId !== client.clientId) return badToken(`token "${this.clientIdClaim}" is not the client id`);
    const ok: { ok: true; expiresAt?: number; username?: string } = { ok: true };
    if (r.expiresAt !== undefined) ok.expiresAt = r.expiresAt;
    if (r.username !== undefined) ok.username = r.username;
    return ok;
  }

  async reload(): Promise<void> {
    const path = this.cfg['auth.password_file'];
    const file = path === '' ? null : await PasswordFile.load(path);
    const jwt = JwtVerifier.fromConfig(this.cfg);
    this.passwordFile = file;
    this.jwt = jwt;
    this.log.info(describe(file, jwt), 'authentication reloaded');
  }
}

function describe(file: PasswordFile | null, jwt: JwtVerifier | null): Record<string, unknown> {
  return { passwordFile: file?.path, users: file?.size, jwt: jwt !== null };
}

/**
 * The chain for `cfg`. Reads the password file and JWT key files now (synchronously, so a broker
 * can be built without waiting); a missing or malformed file throws an error that names it (a
 * ConfigError: PasswordFileError or JwtConfigError).
 */
export function createAuthenticator(cfg: AuthConfig, log: Logger): Authenticator {
  const path = cfg['auth.password_file'];
  const file = path === '' ? null : PasswordFile.loadSync(path);
  const jwt = JwtVerifier.fromConfig(cfg);
  if (file !== null || jwt !== null) log.info(describe(file, jwt), 'authentication');
  return new Chain(cfg, log, file, jwt);
}
