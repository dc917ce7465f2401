/**
 * The only importer of the generated binding (native/binding.js). Everything else in
 * src/ sees this typed facade. Errors thrown by the core carry a stable code prefix
 * ("ERR_…: message") which `wrapNativeError` turns into a `NativeError` with `.code`.
 */
import { createRequire } from 'node:module';
import type * as Binding from '../native/binding.js';

const require = createRequire(import.meta.url);

function loadBinding(): typeof Binding {
  // From dist/src/native.js and from src/native.ts alike, the binding is two levels up.
  for (const p of ['../../native/binding.js', '../native/binding.js']) {
    try {
      return require(p) as typeof Binding;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND' || !String((e as Error).message).includes('binding.js')) throw e;
    }
  }
  throw new Error('StrataMQ native addon not built: run `npm install` (or `npm run build:native`)');
}

const binding = loadBinding();

export class NativeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NativeError';
  }
}

export function wrapNativeError(e: unknown): unknown {
  if (e instanceof Error) {
    const m = /^(ERR_[A-Z_]+): ?(.*)$/s.exec(e.message);
    if (m) return new NativeError(m[1] as string, m[2] as string);
  }
  return e;
}

/** Subscription trie: filters map to numeric subscription ids kept by the broker. */
export class TopicTrie {
  private readonly inner = new binding.TopicTrie();

  /** Add `id` under `filter` (may be `$share/group/filter`). Returns false if already there. */
  subscribe(filter: string, id: number): boolean {
    try {
      return this.inner.subscribe(filter, id);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  unsubscribe(filter: string, id: number): boolean {
    try {
      return this.inner.unsubscribe(filter, id);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  /** Ids of every matching plain subscription plus one member per matching shared group. */
  match(topic: string): Uint32Array {
    return this.inner.match(topic);
  }

  get size(): number {
    return this.inner.size;
  }
}

/** Index of retained topics, walked by filter level (no full scan). */
export class RetainedIndex {
  private readonly inner = new binding.RetainedIndex();

  set(topic: string): void {
    this.inner.set(topic);
  }

  delete(topic: string): boolean {
    return this.inner.delete(topic);
  }

  match(filter: string): string[] {
    return this.inner.match(filter);
  }

  get size(): number {
    return this.inner.size;
  }
}

/** null when valid, else the reason ([MQTT-4.7.3-1], [MQTT-4.7.1-1], [MQTT-4.7.3-2]). */
export function validateTopicName(topic: string): string | null {
  return binding.validateTopicName(topic) ?? null;
}

/** null when valid, else the reason. Accepts `$share/group/filter`. */
export function validateTopicFilter(filter: string): string | null {
  return binding.validateTopicFilter(filter) ?? null;
}

export const coreVersion: string = binding.coreVersion();
