/**
 * Retained messages (spec §3.3.1.3, SPEC A4): one per topic, an empty payload clears it
 * [MQTT-3.3.1-6]/[MQTT-3.3.1-7], expired ones are dropped when met. The native index answers
 * a wildcard filter by walking topic levels, not by scanning every retained topic.
 *
 * Lookups are served from here; durability (B7) is write-through: the broker records each
 * set/clear in the embedded store and loads them back into this store at start.
 */
import { isExpired, type Message } from '../wire/message.js';
import { RetainedIndex } from '../native.js';

export interface RetainedStore {
  /** Store `msg` (or clear its topic when the payload is empty). */
  set(msg: Message): void;
  /** Live retained messages whose topic matches `filter`. */
  match(filter: string, now?: number): Message[];
  get(topic: string): Message | undefined;
  readonly size: number;
}

export class MemoryRetainedStore implements RetainedStore {
  private readonly messages = new Map<string, Message>();
  private readonly index = new RetainedIndex();

  set(msg: Message): void {
    if (msg.payload.length === 0) {
      if (this.messages.delete(msg.topic)) this.index.delete(msg.topic);
      return;
    }
    if (!this.messages.has(msg.topic)) this.index.set(msg.topic);
    this.messages.set(msg.topic, msg);
  }

  get(topic: string): Message | undefined {
    return this.messages.get(topic);
  }

  match(filter: string, now = Date.now()): Message[] {
    const out: Message[] = [];
    for (const topic of this.index.match(filter)) {
      const m = this.messages.get(topic);
      if (!m) continue;
      if (isExpired(m, now)) {
        this.messages.delete(topic);
        this.index.delete(topic);
        continue;
      }
      out.push(m);
    }
    return out;
  }

  get size(): number {
    return this.messages.size;
  }
}
