/**
 * Giving memory back when the broker goes quiet after traffic (`node.idle_gc`).
 *
 * V8 collects when allocation fills its heap; a burst (a flood of retained messages, a storm of
 * connects or subscriptions) leaves behind the garbage it made and the room it grew into, because
 * once traffic stops nothing allocates any more. V8's memory reducer gets to it only much later
 * (about 10 s after the last collection it noticed, if at all). Measured in-process, 100,000
 * filters subscribed by one client: 27.6 MB live in an old generation of 69.4 MB after V8's own
 * full collection, and a young generation grown to 16.8 MB (`--max-semi-space-size=8`).
 *
 * So, every `everyMs`, if the activity count moved in the last interval and not in this one:
 * 1. once the heap holds more than `slackBytes` it does not use, or has taken that much more since
 *    the last such collection (garbage counts as used until something collects it), one *compacting* full collection
 *    (V8's `--compact-on-every-full-gc` set for that one collection only: a plain one leaves live
 *    objects scattered over half-empty pages and keeps the pages; measured above, the old
 *    generation went to 28.5 MB, against 38–69 MB after one or two plain ones);
 * 2. from `shrinkAfterMs` later, on each quiet tick while the young generation holds more than it
 *    needs (at most 4 times), a young-generation collection (a scavenge of a nearly empty space:
 *    under a millisecond): V8 shrinks that generation only at a collection that sees a low
 *    allocation rate over the last 5 s, which one right after the burst does not (measured:
 *    16.8 MB → 1.0 MB, 4–6 s after the full collection).
 * 3. at that first quiet tick, after the collection (which frees the off-heap memory of the buffers
 *    it collected), the allocator's free memory is given back to the system (`release`: the broker
 *    passes native.ts releaseFreeMemory, glibc's `malloc_trim`): glibc keeps what was freed in its
 *    arenas, one per thread that allocated (the event loop's, each store writer's), and returns
 *    only a free top above a threshold. Measured after 200,000 retained messages published (100 B
 *    payloads): 322 → 278 B of anonymous memory per message; an idle broker 17.4 → 15.2 MB of it.
 * A quiet broker is never collected twice for one burst; a busy one is left to V8. The start is a
 * burst too, whatever it left (loading modules, opening the store: a full collection of a heap that
 * small takes a few ms): measured, an idle broker's RSS went from 65 MB to 60 MB about 8 s after
 * the start, where V8's own memory reducer got there about 10 s after it, if nothing moved.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** What a collection does: a compacting full one, or a young-generation one. */
export type CollectionKind = 'compact' | 'young';

export interface IdleGcOptions {
  /** How often the activity count is looked at, ms (default 2000). */
  everyMs?: number;
  /** Unused (or newly taken) heap below which a full collection is not worth its pause (default 16 MiB). */
  slackBytes?: number;
  /** Quiet time after the full collection before the young one is first tried (default 2000 ms). */
  shrinkAfterMs?: number;
  /** Young generation (committed) below which it is not shrunk (default 2 MiB; V8 shrinks it to 1 MiB). */
  youngBytes?: number;
  /** The collections (default: V8's). */
  gc?: (kind: CollectionKind) => void;
  /** Gives the allocator's free memory back, at each first quiet tick (the broker: native.ts releaseFreeMemory; default none). */
  release?: () => void;
  /** The clock (default Date.now) and what calls `tick` every `everyMs` (default an unref'd setInterval; returns its stop): a test drives both. */
  now?: () => number;
  ticker?: (tick: () => void, everyMs: number) => () => void;
}

function intervalTicker(tick: () => void, everyMs: number): () => void {
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** V8's `gc`: no argument, a full collection; `{ type: 'minor' }` a young-generation one (V8 11, Node 20, reads no other option). */
type GcFunction = (opts?: { type: 'minor' }) => void;

function gcFunction(): GcFunction {
  const g = (globalThis as { gc?: GcFunction }).gc;
  if (typeof g === 'function') return g;
  // --expose-gc set now only affects contexts made after it: a new one hands out `gc`.
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as GcFunction;
}

/** V8's collections: a compacting full one (the flag set around it only), or a young-generation one. */
export function v8Collect(): (kind: CollectionKind) => void {
  const gc = gcFunction();
  return (kind) => {
    if (kind === 'young') {
      gc({ type: 'minor' });
      return;
    }
    setFlagsFromString('--compact-on-every-full-gc');
    try {
      gc();
    } finally {
      setFlagsFromString('--no-compact-on-every-full-gc');
    }
  };
}

/** Young-generation collections tried after a full one before giving up until the next burst. */
const SHRINK_TRIES = 4;

/** Committed bytes of V8's young generation. */
function youngCommitted(): number {
  let n = 0;
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space' || s.space_name === 'new_large_object_space') n += s.physical_space_size;
  return n;
}

/** Start watching `activity` (a count that moves with traffic, e.g. bytes in + out); returns stop. */
export function startIdleGc(activity: () => number, opts: IdleGcOptions = {}): () => void {
  const everyMs = opts.everyMs ?? 2000;
  const slack = opts.slackBytes ?? 16 << 20;
  const shrinkAfter = opts.shrinkAfterMs ?? 2000;
  const young = opts.youngBytes ?? 2 << 20;
  const collect = opts.gc ?? v8Collect();
  const release = opts.release ?? ((): void => undefined);
  const clock = opts.now ?? Date.now;
  let last = activity();
  let busy = true;
  /** When the young generation is to be looked at (0: not pending), and how often it was tried. */
  let shrinkAt = 0;
  let tries = 0;
  /** heapUsed after the last full collection (what the heap held then, garbage aside); -1 before the first. */
  let usedAfter = -1;
  return (opts.ticker ?? intervalTicker)(() => {
    const now = activity();
    const moved = now !== last;
    last = now;
    if (moved) {
      busy = true;
      shrinkAt = 0;
      return;
    }
    if (busy) {
      busy = false;
      // heapUsed counts garbage until something collects it: what the burst added, live or not.
      const { heapTotal, heapUsed } = process.memoryUsage();
      if (usedAfter < 0 || heapTotal - heapUsed > slack || heapUsed - usedAfter > slack) {
        collect('compact');
        usedAfter = process.memoryUsage().heapUsed;
      }
      // Whether or not the heap was collected: most of a burst's memory is native (retained
      // messages, subscriptions, the store's writes), freed where V8 cannot see it.
      release();
      shrinkAt = clock() + shrinkAfter;
      tries = 0;
      return;
    }
    if (shrinkAt !== 0 && clock() >= shrinkAt) {
      // Tried on each quiet tick until the young generation is small (V8 decides by the rate it
      // saw over the last 5 s, so the first try may come too early), at most SHRINK_TRIES times.
      if (youngCommitted() > young) collect('young');
      if (youngCommitted() <= young || ++tries >= SHRINK_TRIES) shrinkAt = 0;
    }
  }, everyMs);
}
