/**
 * A topic filter against a topic name, one pair at a time ([MQTT-4.7]): for the few places that
 * test single pairs (a registry's filtered read, an ACL rule). Routing goes through the native
 * trie (routing/subscriptions.ts), never through this. And the levels of a topic (limits).
 */

/** Levels of a topic name or filter (`a/b` 2, `a/` 2). */
export function topicLevels(topic: string): number {
  let n = 1;
  for (let i = topic.indexOf('/'); i >= 0; i = topic.indexOf('/', i + 1)) n++;
  return n;
}

/** Whether `filter` (without a `$share/` prefix) matches `topic`. */
export function topicMatches(filter: string, topic: string): boolean {
  // Wildcards at the first level do not match topics starting with `$` [MQTT-4.7.2-1].
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // also matches the parent level [MQTT-4.7.1-2]
    if (i >= t.length || (level !== '+' && level !== t[i])) return false;
  }
  return f.length === t.length;
}

/**
 * Answers kept per topic name (routes, ACL verdicts, the message log's selection), bounded by
 * entries and by the characters of the names kept: a topic name may be 65,535 bytes long, so
 * a count alone would let a client that publishes long distinct names make one memo hold
 * gigabytes. Full, it is emptied and starts again: the topics a workload repeats come back at
 * once, and a stream of distinct ones never holds more than the bound.
 */
export class TopicMemo<V> {
  private readonly map = new Map<string, V>();
  private chars = 0;

  constructor(
    /** Entries at most. */
    readonly maxEntries: number,
    /** UTF-16 units of the names kept, at most (a name longer than this is not kept). */
    readonly maxChars: number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** UTF-16 units of the names kept. */
  get keptChars(): number {
    return this.chars;
  }

  get(topic: string): V | undefined {
    return this.map.get(topic);
  }

  set(topic: string, value: V): void {
    if (topic.length > this.maxChars) return;
    if (this.map.size >= this.maxEntries || this.chars + topic.length > this.maxChars) this.clear();
    const before = this.map.size;
    this.map.set(topic, value);
    if (this.map.size !== before) this.chars += topic.length;
  }

  clear(): void {
    this.map.clear();
    this.chars = 0;
  }
}
