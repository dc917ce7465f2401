/**
 * A fair share of each event-loop iteration between publishers and the online sessions they
 * queue for.
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
 * So an online session whose window is full takes at most a window of queued messages per
 * iteration: the message that fills that share sets `hold`, and the publisher's connection holds
 * the rest of its input (unread, in order) until the next iteration, after the subscribers'
 * acknowledgements were read (Connection.holdForInflow). The publisher is held back by TCP, the
 * queues stay about a window long. A session that acknowledged nothing for a second holds no
 * one (a stalled subscriber does not slow everybody: its queue fills and overflows as
 * configured), and one that never fills its window is never counted.
 */

/** What a session keeps for it (Session's fields of these names). */
export interface InflowCounted {
  inflowQueued: number;
  /** An acknowledgement came since its last counted iteration. */
  inflowAcked: boolean;
  /** When one was last seen so (ms since epoch; 0: not counted yet). */
  inflowAckAt: number;
  inflowProgressing: boolean;
}

/** A session that acknowledged nothing for this long holds no publisher (ms). */
const STALL_MS = 1000;

export class Inflow {
  /** The message just routed filled a session's share: its publisher holds the rest of its input. */
  hold = false;
  /** Messages that filled a share (each held its publisher's input, unless it was held already): stratamq_inflow_holds_total. */
  holds = 0;
  /** Sessions counted this iteration (reset by `reset`, at its end). */
  private counted: InflowCounted[] = [];
  private resetScheduled = false;
  private readonly resetNow = (): void => this.reset();

  /** `session` (online, `window` its outbound window) queued a message instead of sending it. */
  queued(session: InflowCounted, window: number): void {
    if (session.inflowQueued++ === 0) {
      this.counted.push(session);
      if (!this.resetScheduled) {
        this.resetScheduled = true;
        setImmediate(this.resetNow);
      }
    }
    if (session.inflowQueued >= window && session.inflowProgressing && !this.hold) {
      this.hold = true;
      this.holds++;
    }
  }

  /**
   * The iteration's end: the counts start again. A session that acknowledged nothing for
   * STALL_MS (since it was first counted) stops holding publishers until it does.
   */
  private reset(): void {
    this.resetScheduled = false;
    const counted = this.counted;
    this.counted = [];
    const now = Date.now();
    for (const s of counted) {
      s.inflowQueued = 0;
      if (s.inflowAcked || s.inflowAckAt === 0) s.inflowAckAt = now;
      s.inflowAcked = false;
      s.inflowProgressing = now - s.inflowAckAt < STALL_MS;
    }
  }
}
