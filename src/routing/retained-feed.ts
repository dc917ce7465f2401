/**
 * Retained messages for new subscriptions ([MQTT-3.3.1-9]), sent a page at a time.
 *
 * A subscription to `#` on a broker with a million retained topics matches a million messages:
 * built at once they were gigabytes of JavaScript objects, and QoS 0 ones beyond the client's
 * socket buffer were dropped as a slow consumer. A feed reads them in pages (RetainedCursor:
 * the matching topics are taken at subscribe, each page's messages when it is sent) and sends
 * the next page only while the client keeps up: its socket holds less than FEED_BACKLOG bytes
 * and its session queue less than a page.
 *
 * Order: the retained messages of a subscription go out before anything published after it
 * ([MQTT-4.6.0-6] for the topics they share): while a session's feed runs, live deliveries to
 * it are held, in order, and follow its last page; a persistent session leaves new logged
 * messages in the log and reads them once the feed ends. Several subscriptions' feeds of one
 * session run one after the other.
 */
import { halfLimit, type Hold, type LiveHold, queueLimit, type Session } from '../session/session.js';
import type { QoS } from '../wire/codec.js';
import type { RetainedCursor } from './retained.js';

/** Messages per page (and the queue length a QoS 1/2 feed waits below). */
export const FEED_PAGE = 1000;
/** Bytes waiting in the client's socket above which the next page waits. */
const FEED_BACKLOG = 1 << 20;
/** How soon a waiting feed looks again, ms. */
const FEED_WAIT_MS = 2;

/** One subscription's retained messages to send. */
export interface FeedRequest {
  filter: string;
  qos: QoS;
  subId: number | undefined;
}

/** What a feed needs from the router. */
export interface FeedHost {
  /** The session is still the one registered for its client id (not ended, not replaced). */
  alive(session: Session): boolean;
  cursor(filter: string): RetainedCursor;
  /**
   * Send (or queue) the next page, at most `max` topics, of `cursor` (retained messages of `req`)
   * to `session`, in order; returns how many topics it went through.
   */
  send(session: Session, cursor: RetainedCursor, req: FeedRequest, max: number, now: number): number;
  /** The feed ended (`completed`: everything sent or queued): run what it held, resume the session. */
  ended(session: Session, completed: boolean): void;
}

export class RetainedFeed implements LiveHold {
  private readonly requests: FeedRequest[] = [];
  private current: FeedRequest | null = null;
  private cursor: RetainedCursor | null = null;
  /** Live deliveries held while the feed runs, in arrival order. */
  private held: (() => void)[] = [];
  private scheduled = false;

  constructor(
    private readonly host: FeedHost,
    readonly session: Session,
  ) {}

  add(req: FeedRequest): void {
    this.requests.push(req);
  }

  /** Payload bytes of the held deliveries. */
  private heldBytes = 0;

  hold(deliver: () => void, qos: QoS, bytes: number): Hold {
    const limits = this.session.env.limits;
    // QoS 0 waits as a backed-up socket would hold it: beyond the slow-consumer watermark it is
    // dropped, as deliver drops it; QoS 1/2 as many as the session's queue takes.
    if (qos === 0 && this.heldBytes + bytes > limits.writeHighWatermark) return 'slow';
    const limit = queueLimit(this.session);
    if (qos > 0 && ((limit > 0 && this.held.length >= limit) || (limits.maxQueuedBytes > 0 && this.heldBytes + bytes > limits.maxQueuedBytes))) return 'full';
    this.held.push(deliver);
    this.heldBytes += bytes;
    return 'held';
  }

  /** Take the held deliveries (in order) and forget them. */
  takeHeld(): (() => void)[] {
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    return held;
  }

  /** Send what the client has room for now; schedule the rest. */
  run(): void {
    this.scheduled = false;
    const s = this.session;
    if (!this.host.alive(s)) {
      this.host.ended(s, false); // the session ended: nothing more to send it
      return;
    }
    // While the client is away (a persistent session), pages go to its queue as its limits allow.
    const now = Date.now();
    const page = halfLimit(s, FEED_PAGE);
    let sent = 0;
    for (;;) {
      const conn = s.outlet;
      if (conn !== null && (conn.backlog > FEED_BACKLOG || s.queue.length >= page)) {
        this.later(FEED_WAIT_MS);
        return;
      }
      if (this.cursor === null || this.cursor.done) {
        const next = this.requests.shift();
        if (next === undefined) {
          this.host.ended(s, true);
          return;
        }
        this.current = next;
        this.cursor = this.host.cursor(next.filter);
        continue;
      }
      if (sent >= page) {
        this.later(0);
        return;
      }
      sent += this.host.send(s, this.cursor, this.current as FeedRequest, page - sent, now);
    }
  }

  private later(ms: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (ms === 0) setImmediate(() => this.run());
    else setTimeout(() => this.run(), ms);
  }
}
