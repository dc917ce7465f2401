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

/** What a TimerWheel holds: its slot and place there (kept by the wheel), and what to do then. */
export interface WheelEntry {
  /**
   * The slot it waits in, counted from the wheel's creation (a small integer, which V8 keeps in
   * the entry itself where a time in ms since the epoch takes a 16-byte heap number); 0 when not
   * scheduled. Set by the wheel only.
   */
  wheelAt: number;
  /** Index in that slot. Set by the wheel only. */
  wheelIdx: number;
  /** Its slot came (at or after the time it was scheduled for): act, or schedule again. */
  onWheel(now: number): void;
}

/**
 * Many coarse timers on one: entries wait in slots of `resolutionMs` (a ring spanning
 * `resolutionMs * size`); one unref'd interval visits the slots that are due and runs only
 * while something waits. An entry fires at or after its time, up to one slot late; one due
 * beyond the ring's span waits in its farthest slot and is scheduled again from there (its
 * onWheel sees it is early). Costs per entry two numbers on the entry and one array slot —
 * where a Timeout is ~200 B with its closure — so keep-alive checks of every connection and the
 * expiry of every offline session can wait here. Cancel is O(1) (swap-remove).
 */
export class TimerWheel {
  private readonly slots: WheelEntry[][];
  /** The slot before the first (ms since epoch / resolution): slots are numbered from it. */
  private readonly base: number;
  /** The next slot to visit. */
  private cursor = 0;
  private count = 0;
  private ticking = false;
  private interval: NodeJS.Timeout | null = null;

  constructor(
    private readonly resolutionMs: number,
    size: number,
  ) {
    this.slots = Array.from({ length: size }, () => []);
    this.base = Math.floor(Date.now() / resolutionMs) - 1;
  }

  /** Entries waiting. */
  get size(): number {
    return this.count;
  }

  /** Run `e.onWheel` at or after `at` (ms since epoch); an earlier schedule of `e` is replaced. */
  schedule(e: WheelEntry, at: number): void {
    const res = this.resolutionMs;
    if (this.interval === null) {
      this.cursor = (Math.floor(Date.now() / res) - this.base) | 0;
      this.interval = setInterval(() => this.tick(), res);
      this.interval.unref();
    }
    // `| 0`: a slot number within 2^31, kept as a small integer (see wheelAt).
    let slot = (Math.ceil(at / res) - this.base) | 0;
    const last = this.cursor + this.slots.length - 1;
    if (slot > last) slot = last;
    const first = this.ticking ? this.cursor + 1 : this.cursor;
    if (slot < first) slot = first;
    if (e.wheelAt === slot) return;
    if (e.wheelAt !== 0) this.cancel(e);
    const list = this.slots[slot % this.slots.length] as WheelEntry[];
    e.wheelAt = slot;
    e.wheelIdx = list.length;
    list.push(e);
    this.count++;
  }

  cancel(e: WheelEntry): void {
    if (e.wheelAt === 0) return;
    const list = this.slots[e.wheelAt % this.slots.length] as WheelEntry[];
    const moved = list.pop() as WheelEntry;
    if (moved !== e) {
      list[e.wheelIdx] = moved;
      moved.wheelIdx = e.wheelIdx;
    }
    e.wheelAt = 0;
    this.count--;
    if (this.count === 0 && !this.ticking) this.stop();
  }

  private tick(): void {
    const now = Date.now();
    this.ticking = true;
    try {
      const upTo = (Math.floor(now / this.resolutionMs) - this.base) | 0;
      while (this.cursor <= upTo) {
        const list = this.slots[this.cursor % this.slots.length] as WheelEntry[];
        while (list.length > 0) {
          const e = list.pop() as WheelEntry;
          e.wheelAt = 0;
          this.count--;
          e.onWheel(now);
        }
        this.cursor = (this.cursor + 1) | 0;
      }
    } finally {
      this.ticking = false;
    }
    if (this.count === 0) this.stop();
  }

  private stop(): void {
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
  }
}

/**
 * The process's wheel for coarse timers (keep-alive, connect timeout, session expiry): 100 ms
 * slots (a timer fires up to ~200 ms late: one slot, and the interval's phase), a ring of about
 * 14 minutes. Ten visits a second while anything waits.
 */
export const wheel = new TimerWheel(100, 8192);

/** The process's start, about: wheelSteps counts from it. */
const TIMER_BASE = Date.now();

/**
 * A time (ms since epoch) in the wheel's 100 ms steps after TIMER_BASE, rounded up: a small
 * integer for the next 3.4 years, which V8 keeps in the object holding it (see wheelAt).
 */
export function wheelSteps(due: number): number {
  const at = Math.ceil((due - TIMER_BASE) / 100);
  return at <= 0x3fffffff && at >= 0 ? at | 0 : at;
}

/** The time (ms since epoch) of `steps` (wheelSteps). */
export function wheelTime(steps: number): number {
  return steps * 100 + TIMER_BASE;
}
