/**
 * The checker's topic tree and filters: few enough that random subscriptions overlap (wildcards,
 * shared groups) and random publishes hit several sessions at once.
 */

export const TOPICS = ['a/x', 'a/y', 'a/b/x', 'b/x', 'b/y'] as const;

export const FILTERS = ['a/x', 'a/+', 'a/#', '+/x', '#', 'b/+', '+/+', 'a/b/+', '$share/g/a/#', '$share/g/+/x', '$share/h/#'] as const;

/** `$share/{group}/{filter}` → its group and filter; null for a plain filter. */
export function sharedParts(filter: string): { group: string; filter: string } | null {
  if (!filter.startsWith('$share/')) return null;
  const rest = filter.slice('$share/'.length);
  const i = rest.indexOf('/');
  return i < 0 ? null : { group: rest.slice(0, i), filter: rest.slice(i + 1) };
}

export function isShared(filter: string): boolean {
  return filter.startsWith('$share/');
}

/** MQTT topic matching ([MQTT-4.7.1]); a shared filter matches as its inner filter. */
export function matches(filter: string, topic: string): boolean {
  const inner = sharedParts(filter)?.filter ?? filter;
  if (topic.startsWith('$') && (inner.startsWith('+') || inner.startsWith('#'))) return false; // [MQTT-4.7.2-1]
  const f = inner.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
