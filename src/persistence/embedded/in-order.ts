/**
 * Settles promises in the order they were handed in, whatever order they complete in.
 *
 * Native completions (napi deferreds) can reach JS out of order even when the work behind
 * them completed in order (each has its own threadsafe function). The durable path depends
 * on order — deliveries per publisher, index seqs, retained writes — so it reads every
 * native completion through one of these.
 */
export class InOrder {
  private readonly pending: { settled: boolean; settle: () => void }[] = [];

  wrap<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const slot = { settled: false, settle: (): void => undefined };
      this.pending.push(slot);
      p.then(
        (v) => {
          slot.settle = () => resolve(v);
          slot.settled = true;
          this.release();
        },
        (e: unknown) => {
          slot.settle = () => reject(e);
          slot.settled = true;
          this.release();
        },
      );
    });
  }

  private release(): void {
    const q = this.pending;
    while (q.length > 0 && (q[0] as { settled: boolean }).settled) (q.shift() as { settle: () => void }).settle();
  }
}
