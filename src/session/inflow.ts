/**
 * Publishers held to the pace of the connected sessions they queue for (mqtt.fair_inflow).
 *
 * One event loop reads the publishers and writes the subscribers. A subscriber takes at most its
 * window (Receive Maximum / mqtt.max_inflight) of new deliveries per round trip, and its
 * acknowledgements are read once per iteration; a publisher's socket gives up to READ_TURN_BYTES
 * (Connection) of PUBLISH packets per iteration. With publishers faster than their subscribers
 * (a QoS 1 publisher with 1,000 unacknowledged messages against a subscriber's 128), each
 * iteration read thousands of messages into session queues, grew longer for it, and delivered
 * only the windows: acknowledged 377k msg/s, delivered 44k, queues and RSS growing toward
 * mqtt.max_queued_messages (to ~1 GB, latency in seconds).
 *
 * So when most of a message's deliveries to connected sessions found a window's worth queued
 * behind a full window, the publisher's connection holds the rest of its input (unread, in
 * order) until the next iteration, after the subscribers' acknowledgements were read
 * (Connection.dispatch → holdForInflow): the publisher is held back by TCP, the queues stay about
 * a window long. Most, not any: one slow subscriber among others that take the message at once
 * holds no one (its queue fills and overflows as configured, as without this) — held to it, a
 * publisher's 20 other subscribers got what one acknowledging 1,000 msg/s took (1.8k msg/s each
 * against 3.7k without holding). And a session that completes less than half of what is queued
 * for it past its window's worth, over a sweep period (SWEEP_MS), is not counted (neither as full
 * nor among the deliveries) until it does: a stalled subscriber, alone on its topic, does not hold
 * its publishers either, and beside one that keeps up, that one alone decides (before, the stalled
 * one counted as a delivery that was not full, and a publisher filled the other's queue).
 */

/** What a session keeps for it (Session's fields of these names). */
export interface InflowSession {
  /** In `watched`. */
  inflowWatched: boolean;
  /** Messages queued for it past its window's worth since the last sweep. */
  inflowOver: number;
  /** Deliveries it completed since then (counted by completeOutbound). */
  inflowAcks: number;
  /** It kept up in the last sweep period it was watched in (true until seen otherwise): it may hold publishers. */
  inflowProgressing: boolean;
}

/** How often the sessions that held publishers are looked at (ms). */
const SWEEP_MS = 1000;

export class Inflow {
  /** Since `begin`: deliveries to connected sessions keeping up, and those of them that found a full queue. */
  private offered = 0;
  private full = 0;
  /** Messages that held their publisher's input: stratamq_inflow_holds_total. */
  holds = 0;
  /** Sessions that held a publisher lately (their progress is looked at every SWEEP_MS). */
  private readonly watched = new Set<InflowSession>();
  private sweeper: NodeJS.Timeout | null = null;

  /** A packet is handled from here (Connection.dispatch): what it routes is counted afresh. */
  begin(): void {
    this.offered = 0;
    this.full = 0;
  }

  /** Whether what was routed since `begin` holds its publisher: most of its deliveries to connected sessions found a full queue. */
  shouldHold(): boolean {
    if (this.full === 0 || this.full * 2 <= this.offered) return false;
    this.holds++;
    return true;
  }

  /** A delivery to `session`, connected: counted among the message's deliveries unless the session is not keeping up (it counts neither way: the others decide). */
  offer(session: InflowSession): void {
    if (session.inflowProgressing) this.offered++;
  }

  /** `session`, connected with an outbound window of `window`, queued a message: `queued` wait behind the window now. */
  queued(session: InflowSession, queued: number, window: number): void {
    if (queued < window) return;
    session.inflowOver++;
    if (!session.inflowWatched) {
      session.inflowWatched = true;
      session.inflowAcks = 0;
      this.watched.add(session);
      if (this.sweeper === null) {
        this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
        this.sweeper.unref();
      }
    }
    if (session.inflowProgressing) this.full++;
  }

  /**
   * A session queued for over the period keeps up if it completed at least half as many
   * deliveries as were queued for it past its window's worth. One nothing was queued for so is
   * let go, its verdict kept for when it is queued for again.
   */
  private sweep(): void {
    for (const s of this.watched) {
      if (s.inflowOver === 0) {
        s.inflowWatched = false;
        this.watched.delete(s);
        continue;
      }
      s.inflowProgressing = s.inflowAcks * 2 >= s.inflowOver;
      s.inflowOver = 0;
      s.inflowAcks = 0;
    }
    if (this.watched.size === 0) this.close();
  }

  /** No more sweeps (the broker stops; or nobody is watched): the sessions are let go. */
  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const s of this.watched) s.inflowWatched = false;
    this.watched.clear();
  }
}
