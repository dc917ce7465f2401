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
import { RetainedMessages } from '../native.js';
import { retainedMessage, retainedRecord } from '../persistence/registries.js';
import { isExpired, type Message } from '../wire/message.js';

export interface RetainedStore {
  /** Store `msg` (or clear its topic when the payload is empty); returns the record stored (null: cleared). */
  set(msg: Message): Buffer | null;
  /** Live retained messages whose topic matches `filter`. */
  match(filter: string, now?: number): Message[];
  get(topic: string): Message | undefined;
  readonly size: number;
}

export class NativeRetainedStore implements RetainedStore {
  /** The native tree (the store loads records into it at start). */
  readonly native = new RetainedMessages();

  set(msg: Message): Buffer | null {
    if (msg.payload.length === 0) {
      this.native.delete(msg.topic);
      return null;
    }
    const record = retainedRecord(msg);
    this.native.set(msg.topic, record);
    return record;
  }

  get(topic: string): Message | undefined {
    const r = this.native.get(topic);
    return r ? retainedMessage(topic, r) : undefined;
  }

  match(filter: string, now = Date.now()): Message[] {
    const out: Message[] = [];
    for (const { topic, record } of this.native.match(filter)) {
      const m = retainedMessage(topic, record);
      if (isExpired(m, now)) {
        this.native.delete(topic);
        continue;
      }
      out.push(m);
    }
    return out;
  }

  get size(): number {
    return this.native.size;
  }
}

