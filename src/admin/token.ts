/**
 * The admin API's bearer token: `admin.token`, else `<data_dir>/admin.token`, generated at the
 * first start (32 random bytes, base64url; the file is mode 0600) and logged that once. The
 * token is compared in constant time (sha-256 of both sides, timingSafeEqual).
 */
import { crypto } from '../crypto.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

export const TOKEN_FILE = 'admin.token';

/** The token file of a data directory. */
export function tokenPath(dataDir: string): string {
  return join(dataDir, TOKEN_FILE);
}

export function adminToken(config: Config, log: Logger): string {
  const configured = config['admin.token'];
  if (configured !== '') return configured;
  const dir = config['node.data_dir'];
  const file = tokenPath(dir);
  try {
    const t = readFileSync(file, 'utf8').trim();
    if (t !== '') return t;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = crypto().randomBytes(32).toString('base64url');
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  log.warn({ file, token }, 'admin token generated (shown this once; kept in the file)');
  return token;
}

const digest = (s: string): Buffer => crypto().createHash('sha256').update(s).digest();

/** Whether an Authorization header carries `token` as its Bearer token (constant time in the token). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !/^Bearer /i.test(header)) return false;
  return crypto().timingSafeEqual(digest(header.slice(7).trim()), digest(token));
}
