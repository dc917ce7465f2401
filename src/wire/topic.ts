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
