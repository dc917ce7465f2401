/**
 * Timers that may be longer than Node's: `setTimeout` fires at once for delays above 2^31 - 1 ms
 * (about 24.8 days) — MQTT allows Session Expiry and Will Delay Intervals up to 136 years, and
 * tokens that last months. A LongTimer waits in steps; unref'd, like the timers it replaces.
 */
const STEP = 0x7fffffff;

export class LongTimer {
  private t: NodeJS.Timeout | null;

  constructor(fn: () => void, ms: number) {
    const due = Date.now() + ms;
    const arm = (): void => {
      const left = due - Date.now();
      this.t = setTimeout(left > STEP ? arm : fn, Math.max(0, Math.min(left, STEP)));
      this.t.unref();
    };
    this.t = null;
    arm();
  }

  clear(): void {
    if (this.t !== null) clearTimeout(this.t);
    this.t = null;
  }
}
