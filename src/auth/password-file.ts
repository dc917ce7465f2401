/**
 * Mosquitto's password file: one `username:hash` per line, `#` comments, blank lines. The hash
 * forms read are the ones Mosquitto writes (its sources: `mosquitto_pw_decode` and friends):
 *
 * - `$7$<iterations>$<salt>$<hash>` (Mosquitto 2.x `mosquitto_passwd`, the default):
 *   PBKDF2-HMAC-SHA512(password, salt, iterations), 64-byte output.
 * - `$6$<salt>$<hash>` (Mosquitto ≤ 1.6, `mosquitto_passwd -H sha512`): SHA-512(password ‖ salt).
 * - `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`: a PHC string, libargon2's encoding. It is what
 *   `hashPassword` writes (m = 19 MiB, t = 2, p = 1, 16-byte salt, 32-byte hash), and what
 *   Mosquitto 2.1 built with argon2 writes (t = 1, m = 47104, 64-byte salt and hash); both verify.
 *
 * In `$6$` and `$7$`, salt and hash are standard base64; the salt is decoded before use and is 12
 * bytes (Mosquitto ≤ 2.0) or 64 (2.1); the hash decodes to exactly 64 bytes. Hashes are compared
 * in constant time. Mosquitto hashes the password up to its first NUL byte (a C string); here the
 * whole binary password is hashed, which only differs for passwords that contain NUL.
 *
 * Verification is asynchronous (PBKDF2 and argon2 run on the thread pool). An unknown user costs
 * a hash like a known one (a dummy entry of the file's first user's kind and cost), so the time
 * taken does not tell whether a user exists. A successful verification is remembered per (user,
 * stored hash) as an HMAC of the password under a key made at start, so a client reconnecting
 * with the same password costs microseconds, not an argon2 run; a loaded file is immutable and
 * a reload makes a new one, so the cache never outlives the file it was made from.
 *
 * Writing (`writeEntry`, `deleteEntry`) rewrites the file atomically — a temporary file in the
 * same directory, fsynced, mode 0600, renamed over it — and keeps every other line as it was.
 */
import { crypto } from '../crypto.js';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Algorithm, type parseOptions } from '@node-rs/argon2';
import { createRequire } from 'node:module';

/**
 * @node-rs/argon2, loaded when the first argon2id hash is met (about 10 MB of a broker's RSS
 * that uses only $7$/$6$ hashes, or no password file, would otherwise hold it for nothing).
 * Algorithm above is a const enum: inlined, it loads nothing.
 */
let argon2Module: typeof import('@node-rs/argon2') | null = null;
function argon2(): typeof import('@node-rs/argon2') {
  return (argon2Module ??= createRequire(import.meta.url)('@node-rs/argon2') as typeof import('@node-rs/argon2'));
}
import { ConfigError } from '../config.js';

function pbkdf2Async(password: Buffer, salt: Buffer, iterations: number, keylen: number, digest: string): Promise<Buffer> {
  return new Promise((resolve, reject) => crypto().pbkdf2(password, salt, iterations, keylen, digest, (e, key) => (e ? reject(e) : resolve(key))));
}

/** The argon2id parameters `hashPassword` uses (OWASP's first recommendation: 19 MiB, 2 passes). */
export const ARGON2_PARAMS = { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32 } as const;

/** A malformed password file, or a request the file cannot satisfy; names the file (and line). */
export class PasswordFileError extends ConfigError {
  constructor(
    message: string,
    readonly path: string,
    readonly line?: number,
  ) {
    super(line === undefined ? `${path}: ${message}` : `${path}:${line}: ${message}`);
    this.name = 'PasswordFileError';
  }
}

type Hash =
  | { kind: 'pbkdf2-sha512'; iterations: number; salt: Buffer; hash: Buffer }
  | { kind: 'sha512'; salt: Buffer; hash: Buffer }
  | { kind: 'argon2id'; options: ArgonOptions; salt: Buffer; hash: Buffer };

type ArgonOptions = ReturnType<typeof parseOptions>;

interface Entry {
  /** The stored hash as written in the file (the cache key's second half). */
  readonly encoded: string;
  readonly hash: Hash;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Standard base64, strictly (Buffer.from would skip bad characters silently). */
function base64(s: string, what: string): Buffer {
  if (!B64.test(s) || (s.includes('=') && s.length % 4 !== 0)) throw new Error(`${what} is not base64`);
  return Buffer.from(s, 'base64');
}

function mosquittoSalt(s: string): Buffer {
  const salt = base64(s, 'salt');
  if (salt.length !== 12 && salt.length !== 64) throw new Error(`salt is ${salt.length} bytes (Mosquitto writes 12 or 64)`);
  return salt;
}

function mosquittoHash(s: string): Buffer {
  const h = base64(s, 'hash');
  if (h.length !== 64) throw new Error(`hash is ${h.length} bytes, not 64`);
  return h;
}

/** Parse one stored hash; throws an Error saying what is wrong with it. */
export function parseHash(encoded: string): Hash {
  if (encoded.startsWith('$7$')) {
    const parts = encoded.slice(3).split('$');
    if (parts.length !== 3) throw new Error('$7$ hash: expected $7$<iterations>$<salt>$<hash>');
    const [it, salt, hash] = parts as [string, string, string];
    if (!/^[1-9][0-9]{0,9}$/.test(it) || Number(it) > 0x7fffffff) throw new Error(`$7$ hash: bad iteration count ${JSON.stringify(it)}`);
    return { kind: 'pbkdf2-sha512', iterations: Number(it), salt: mosquittoSalt(salt), hash: mosquittoHash(hash) };
  }
  if (encoded.startsWith('$6$')) {
    const parts = encoded.slice(3).split('$');
    if (parts.length !== 2) throw new Error('$6$ hash: expected $6$<salt>$<hash>');
    return { kind: 'sha512', salt: mosquittoSalt(parts[0] as string), hash: mosquittoHash(parts[1] as string) };
  }
  if (encoded.startsWith('$argon2id$')) {
    let options: ArgonOptions;
    try {
      options = argon2().parseOptions(encoded);
    } catch (e) {
      throw new Error(`argon2id hash: ${(e as Error).message}`);
    }
    if (options.algorithm !== Algorithm.Argon2id) throw new Error('argon2id hash: not argon2id');
    // The PHC string ends with $<salt>$<hash>, unpadded base64 (parseOptions has checked the rest).
    const parts = encoded.split('$');
    const salt = base64(parts[parts.length - 2] ?? '', 'argon2id salt');
    const hash = base64(parts[parts.length - 1] ?? '', 'argon2id hash');
    if (salt.length !== options.saltLen || hash.length !== options.outputLen) throw new Error('argon2id hash: salt or hash length does not match its parameters');
    return { kind: 'argon2id', options, salt, hash };
  }
  if (encoded.startsWith('$')) throw new Error(`unsupported hash type ${JSON.stringify(encoded.split('$', 2).join('$') + '$')} (expected $7$, $6$ or $argon2id$)`);
  throw new Error('not a hashed password (hash it with `stratamq passwd` or `mosquitto_passwd -U`)');
}

async function check(h: Hash, password: Buffer): Promise<boolean> {
  switch (h.kind) {
    case 'pbkdf2-sha512': {
      const got = await pbkdf2Async(password, h.salt, h.iterations, h.hash.length, 'sha512');
      return crypto().timingSafeEqual(got, h.hash);
    }
    case 'sha512': {
      const got = crypto().createHash('sha512').update(password).update(h.salt).digest();
      return crypto().timingSafeEqual(got, h.hash);
    }
    case 'argon2id': {
      // hashRaw with the stored salt and parameters, not argon2's verify(): that one takes the
      // password as UTF-8 text and refuses other bytes, and MQTT passwords are binary data.
      const o = h.options;
      const got = await argon2().hashRaw(password, { algorithm: o.algorithm, version: o.version, memoryCost: o.memoryCost, timeCost: o.timeCost, parallelism: o.parallelism, outputLen: o.outputLen, salt: h.salt });
      return crypto().timingSafeEqual(got, h.hash);
    }
  }
}

/** A stand-in with the same cost as `h`, that no password matches (for unknown users). */
function dummyOf(h: Hash | undefined): Hash {
  if (h === undefined) return { kind: 'pbkdf2-sha512', iterations: 101, salt: crypto().randomBytes(12), hash: crypto().randomBytes(64) };
  switch (h.kind) {
    case 'pbkdf2-sha512':
      return { ...h, salt: crypto().randomBytes(h.salt.length), hash: crypto().randomBytes(64) };
    case 'sha512':
      return { ...h, salt: crypto().randomBytes(h.salt.length), hash: crypto().randomBytes(64) };
    case 'argon2id':
      return { ...h, salt: crypto().randomBytes(h.salt.length), hash: crypto().randomBytes(h.hash.length) };
  }
}

/** A username as the file can hold it: not empty, no ':' or line break, not starting a comment. */
export function checkUsername(username: string): void {
  if (username === '') throw new Error('the username is empty');
  if (/[:\r\n]/.test(username)) throw new Error('a username cannot contain ":" or a line break');
  if (username.trim() !== username) throw new Error('a username cannot begin or end with blanks');
  if (username.startsWith('#')) throw new Error('a username cannot begin with "#"');
  if (Buffer.byteLength(username) > 65535) throw new Error('the username is longer than 65535 bytes');
}

/** `username` of a line that holds an entry, or undefined for a comment or blank line. */
function userOfLine(line: string): string | undefined {
  const t = line.trim();
  if (t === '' || t.startsWith('#')) return undefined;
  const colon = t.indexOf(':');
  return colon < 0 ? undefined : t.slice(0, colon).trim();
}

export class PasswordFile {
  /** HMAC key of the success cache: the process's own, so cached digests mean nothing elsewhere. */
  private static cacheKeyMade: Buffer | null = null;
  private static get cacheKey(): Buffer {
    return (PasswordFile.cacheKeyMade ??= crypto().randomBytes(32));
  }
  /** username → HMAC of the password that last verified against the entry's hash. */
  private readonly verified = new Map<string, { encoded: string; digest: Buffer }>();
  private readonly dummy: Hash;

  private constructor(
    readonly path: string,
    private readonly entries: ReadonlyMap<string, Entry>,
  ) {
    this.dummy = dummyOf(entries.values().next().value?.hash);
  }

  /** Parse a file's text; a malformed line is a PasswordFileError naming `path` and the line. */
  static parse(text: string, path: string): PasswordFile {
    const entries = new Map<string, Entry & { line: number }>();
    text.split('\n').forEach((raw, i) => {
      const n = i + 1;
      const line = raw.replace(/\r$/, '');
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      const colon = t.indexOf(':');
      if (colon < 0) throw new PasswordFileError('expected "username:hash", found no ":"', path, n);
      const username = t.slice(0, colon).trim();
      const encoded = t.slice(colon + 1).trim();
      if (username === '') throw new PasswordFileError('empty username', path, n);
      const before = entries.get(username);
      if (before) throw new PasswordFileError(`user ${JSON.stringify(username)} is also on line ${before.line}`, path, n);
      let hash: Hash;
      try {
        hash = parseHash(encoded);
      } catch (e) {
        throw new PasswordFileError(`user ${JSON.stringify(username)}: ${(e as Error).message}`, path, n);
      }
      entries.set(username, { encoded, hash, line: n });
    });
    return new PasswordFile(path, entries);
  }

  static async load(path: string): Promise<PasswordFile> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      throw new PasswordFileError(`cannot read the password file: ${(e as Error).message}`, path);
    }
    return PasswordFile.parse(text, path);
  }

  /** As `load`, for start-up paths that cannot wait (parsing is synchronous either way). */
  static loadSync(path: string): PasswordFile {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new PasswordFileError(`cannot read the password file: ${(e as Error).message}`, path);
    }
    return PasswordFile.parse(text, path);
  }

  get size(): number {
    return this.entries.size;
  }

  has(username: string): boolean {
    return this.entries.has(username);
  }

  usernames(): string[] {
    return [...this.entries.keys()];
  }

  private digest(username: string, password: Buffer): Buffer {
    return crypto().createHmac('sha256', PasswordFile.cacheKey).update(username).update('\0').update(password).digest();
  }

  /**
   * `true` when this password verified for this user before (synchronous, no hashing); undefined
   * when only `verify` can tell.
   */
  verifyCached(username: string, password: Buffer | undefined): true | undefined {
    if (password === undefined) return undefined;
    const hit = this.verified.get(username);
    const entry = this.entries.get(username);
    if (hit === undefined || entry === undefined || hit.encoded !== entry.encoded) return undefined;
    return crypto().timingSafeEqual(hit.digest, this.digest(username, password)) ? true : undefined;
  }

  /** Does `password` match `username`'s hash? Unknown user or no password: false, after as much work. */
  async verify(username: string, password: Buffer | undefined): Promise<boolean> {
    if (this.verifyCached(username, password)) return true;
    const entry = this.entries.get(username);
    const ok = await check(entry?.hash ?? this.dummy, password ?? Buffer.alloc(0));
    if (!ok || entry === undefined || password === undefined) return false;
    this.verified.set(username, { encoded: entry.encoded, digest: this.digest(username, password) });
    return true;
  }

  /** Forget cached verifications. */
  clearCache(): void {
    this.verified.clear();
  }
}

/** An argon2id PHC string for `password` (ARGON2_PARAMS, random 16-byte salt). */
export function hashPassword(password: string | Buffer): Promise<string> {
  return argon2().hash(password, ARGON2_PARAMS);
}

/** Write `text` to `path` atomically: temporary file in the same directory, fsync, mode 0600, rename. */
async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${crypto().randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.chmod(0o600); // the umask cannot widen it, but be explicit
    await fh.writeFile(text);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  const dir = await open(dirname(path), 'r').catch(() => null);
  if (dir) await dir.sync().catch(() => undefined).finally(() => dir.close());
}

async function readLines(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new PasswordFileError('no such password file (create it with -c)', path);
    throw new PasswordFileError(`cannot read the password file: ${err.message}`, path);
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export interface WriteOptions {
  /** Start a new file, replacing any file at `path` (mosquitto_passwd -c). */
  create?: boolean;
  /** The stored hash (default: `hashPassword(password)`). */
  hash?: string;
}

/**
 * Set `username`'s password in the file at `path`: the user's line is replaced where it is, or
 * appended; every other line (comments included) is kept. Without `create` the file must exist.
 */
export async function writeEntry(path: string, username: string, password: string | Buffer, opts: WriteOptions = {}): Promise<void> {
  try {
    checkUsername(username);
  } catch (e) {
    throw new PasswordFileError((e as Error).message, path);
  }
  const lines = opts.create ? [] : await readLines(path);
  const line = `${username}:${opts.hash ?? (await hashPassword(password))}`;
  let found = false;
  const out: string[] = [];
  for (const l of lines) {
    if (userOfLine(l) !== username) out.push(l);
    else if (!found) {
      out.push(line);
      found = true;
    }
  }
  if (!found) out.push(line);
  await replaceFile(path, `${out.join('\n')}\n`);
}

/** Remove `username` from the file at `path`, keeping every other line. False when the user is not there. */
export async function deleteEntry(path: string, username: string): Promise<boolean> {
  const lines = await readLines(path);
  const out = lines.filter((l) => userOfLine(l) !== username);
  if (out.length === lines.length) return false;
  await replaceFile(path, out.length > 0 ? `${out.join('\n')}\n` : '');
  return true;
}
