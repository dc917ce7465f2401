/**
 * Retained messages (spec §3.3.1.3, SPEC A4): one per topic, an empty payload clears it
 * [MQTT-3.3.1-6]/[MQTT-3.3.1-7], expired ones are dropped when met.
 *
 * They live in the native core (RetainedMessages: the retained tree with each topic's record
 * in Rust-owned memory): a wildcard filter is answered by walking topic levels, and a payload
 * becomes a JavaScript object only when it is delivered. Durability (B7) is write-through: the
 * router records each set/clear in the store, which holds the same record and loads it back
 * into this tree at start without crossing to JavaScript (lifecycle/restore.ts).
 */
import { MetaPacker, RetainedMessages, type RetainedRecord, type RetainedTopics } from '../native.js';
import { retainedMessage } from '../persistence/registries.js';
import type { QoS } from '../wire/codec.js';
import { encodeProperties, isExpired, type Message } from '../wire/message.js';

export interface RetainedStore {
  /**
   * Store `msg` (or clear its topic when the payload is empty); its topic a valid topic name (the
   * caller's check). Returns the write as the metadata layout packs it (MetaPacker: what the
   * embedded store commits, so it need not pack it again), a view valid until the next `set`; or
   * null.
   */
  set(msg: Message): Buffer | null;
  get(topic: string): Message | undefined;
  /** The live retained messages matching `filter`, read a page at a time (see RetainedCursor). */
  cursor(filter: string): RetainedCursor;
  /** The topics with a retained message matching `filter` (any order; an expired one not yet met included). */
  topics(filter: string): string[];
  readonly size: number;
}

/**
 * Retained messages matching a filter, read in pages: the matching topics are taken when it is
 * made (a few bytes each), each page's messages when it is read — as they are then: a topic
 * cleared meanwhile is left out, one set again comes with its new message.
 */
export interface RetainedCursor {
  /** Up to `max` further messages (expired ones dropped); empty once `done`. */
  next(max: number, now?: number): Message[];
  /**
   * The next at most `max` topics' messages as PUBLISH packets with RETAIN set, at QoS 0, for a
   * subscription of `qos` by a client of `version` taking packets up to `maxPacket` bytes (see
   * FramedPage).
   */
  frames(max: number, qos: QoS, version: number, maxPacket: number, now?: number): FramedPage;
  readonly done: boolean;
}

/** Retained messages framed for a QoS 0 delivery, without a JavaScript object each. */
export interface FramedPage {
  /** PUBLISH packets (no properties), back to back; sent in this order. */
  frames: Buffer;
  /** Packets in `frames`. */
  sent: number;
  /** Messages left out as larger than the client accepts ([MQTT-3.1.2-25]). */
  tooLarge: number;
  /**
   * Messages not framed — with properties (an expiry, user properties…) or delivered at QoS 1/2
   * — to send after `frames` (retained messages of different topics have no order among them);
   * expired ones left out.
   */
  special: Message[];
  /** Topics this page went through (the cursor moved on by as many). */
  taken: number;
}

class NativeRetainedCursor implements RetainedCursor {
  private at = 0;

  constructor(
    private readonly store: NativeRetainedStore,
    private readonly topics: RetainedTopics,
  ) {}

  /** The tree with every set and clear made so far in it (pages are read as they are then). */
  private get tree(): RetainedMessages {
    return this.store.native;
  }

  get done(): boolean {
    return this.at >= this.topics.count;
  }

  next(max: number, now = Date.now()): Message[] {
    const out: Message[] = [];
    while (out.length === 0 && !this.done) {
      const to = Math.min(this.topics.count, this.at + max);
      const page = this.tree.records(this.topics, this.at, to);
      this.at = to;
      this.live(page, now, out);
    }
    return out;
  }

  /** The messages of `entries` into `out`; expired ones are dropped from the tree instead. */
  private live(entries: readonly { topic: string; record: RetainedRecord }[], now: number, out: Message[]): void {
    for (const { topic, record } of entries) {
      const m = retainedMessage(topic, record);
      if (isExpired(m, now)) this.tree.delete(topic);
      else out.push(m);
    }
  }

  frames(max: number, qos: QoS, version: number, maxPacket: number, now = Date.now()): FramedPage {
    const from = this.at;
    const to = Math.min(this.topics.count, from + max);
    const p = this.tree.frames(this.topics, from, to, qos, version, maxPacket);
    this.at = to;
    const special: Message[] = [];
    this.live(p.special, now, special);
    return { frames: p.frames, sent: p.sent, tooLarge: p.tooLarge, special, taken: to - from };
  }
}

/**
 * The retained messages of a broker in the native tree. Sets and clears are packed as they come
 * (the metadata layout, from the message's fields: no record or buffer per message) and cross
 * to the tree in one call at the end of the event-loop turn — or before anything reads the
 * tree, so a read always sees every set and clear made before it.
 */
export class NativeRetainedStore implements RetainedStore {
  private readonly tree = new RetainedMessages();
  private readonly pending = new MetaPacker(16 * 1024);
  private flushQueued = false;
  /** Sets and clears the tree refused (a topic that is not a valid name: the callers check first). */
  refused = 0;

  /** The native tree, every set and clear made so far in it (the store loads records into it at start). */
  get native(): RetainedMessages {
    this.flush();
    return this.tree;
  }

  set(msg: Message): Buffer {
    this.pending.setRetained(msg.topic, msg.publisher, msg.qos, msg.receivedAt, encodeProperties(msg.properties), msg.payload);
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => this.flush());
    }
    return this.pending.last();
  }

  /** The pending sets and clears into the tree. */
  flush(): void {
    this.flushQueued = false;
    const n = this.pending.count;
    if (n === 0) return;
    try {
      this.refused += n - this.tree.applyPacked(this.pending.bytes());
    } finally {
      this.pending.reset();
    }
  }

  get(topic: string): Message | undefined {
    const r = this.native.get(topic);
    return r ? retainedMessage(topic, r) : undefined;
  }

  cursor(filter: string): RetainedCursor {
    return new NativeRetainedCursor(this, this.native.matchTopics(filter));
  }

  topics(filter: string): string[] {
    const { buffer, offsets, count } = this.native.matchTopics(filter);
    const out = new Array<string>(count);
    for (let i = 0; i < count; i++) out[i] = buffer.toString('utf8', offsets[i] as number, offsets[i + 1] as number);
    return out;
  }

  get size(): number {
    return this.native.size;
  }
}
