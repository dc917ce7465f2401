// Log-scale latency histogram: ~1% resolution from 1 µs to ~1000 s, mergeable
// across worker threads (a plain Uint32Array is structured-cloneable).

export const HIST_BUCKETS = 2200;
const SCALE = 100; // buckets per e-fold => ~1% relative width

export function newHist(): Uint32Array {
  return new Uint32Array(HIST_BUCKETS);
}

/** Bucket index for a latency in microseconds. */
export function bucketOf(us: number): number {
  if (!(us >= 1)) return 0;
  const b = Math.floor(Math.log(us) * SCALE) + 1;
  return b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
}

/** Representative value (µs) of a bucket: its geometric middle. */
function bucketValue(b: number): number {
  return b === 0 ? 0.5 : Math.exp((b - 0.5) / SCALE);
}

export function mergeInto(dst: Uint32Array, src: Uint32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = (dst[i] ?? 0) + (src[i] ?? 0);
}

export function histCount(h: Uint32Array): number {
  let n = 0;
  for (let i = 0; i < h.length; i++) n += h[i] ?? 0;
  return n;
}

/** Percentile in milliseconds (p in 0..100), or null when the histogram is empty. */
export function percentileMs(h: Uint32Array, p: number): number | null {
  const total = histCount(h);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i] ?? 0;
    if (seen >= rank) return bucketValue(i) / 1000;
  }
  return bucketValue(h.length - 1) / 1000;
}
