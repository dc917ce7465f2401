/**
 * Rate limits on what clients send (limits.*): token buckets that hold one second of the rate
 * and refill continuously.
 */

export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(readonly rate: number) {
    this.tokens = rate;
    this.at = Date.now();
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
  }

  /** Take `n` if there are that many; false (nothing taken) if not. */
  take(n = 1, now = Date.now()): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Take `n` even into debt; returns how many ms until the bucket is out of debt (0: it is not in debt). */
  charge(n: number, now = Date.now()): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }

  /** Full again: nothing to remember about it. */
  full(now = Date.now()): boolean {
    this.refill(now);
    return this.tokens >= this.rate;
  }
}

/** CONNECTs per second per source address (limits.connect_rate); idle addresses are forgotten. */
export class ConnectRate {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly sweep: NodeJS.Timeout;

  constructor(readonly rate: number) {
    this.sweep = setInterval(() => {
      for (const [addr, b] of this.buckets) if (b.full()) this.buckets.delete(addr);
    }, 10_000);
    this.sweep.unref();
  }

  /** `address` as connections name it (`host:port`): counted per host. */
  allow(address: string): boolean {
    const colon = address.lastIndexOf(':');
    const host = colon > 0 ? address.slice(0, colon) : address;
    let b = this.buckets.get(host);
    if (!b) this.buckets.set(host, (b = new TokenBucket(this.rate)));
    return b.take();
  }

  close(): void {
    clearInterval(this.sweep);
  }
}
