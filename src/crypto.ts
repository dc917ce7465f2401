/**
 * node:crypto, loaded at its first use: a broker that hashes nothing, assigns no client id and
 * serves no admin token keeps none of it (OpenSSL's bindings and their JavaScript, ~1 MB).
 */
import { createRequire } from 'node:module';

type Crypto = typeof import('node:crypto');
let loaded: Crypto | undefined;

export function crypto(): Crypto {
  return (loaded ??= createRequire(import.meta.url)('node:crypto') as Crypto);
}
