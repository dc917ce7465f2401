/**
 * The `msglog.*` keys (src/config.ts declares them), checked as a whole: the filters parsed and
 * validated, the retention overrides turned into the store's `retentionOverrides`. A bad filter or
 * duration is a ConfigError naming the key, raised when the broker is built.
 */
import { type Config, ConfigError, durationSeconds } from '../config.js';
import { validateTopicFilter } from '../native.js';

export interface MsglogConfig {
  /** Filters whose messages are logged (empty: the message log is off). */
  readonly filters: readonly string[];
  /** `sync`: the publisher's acknowledgement waits for the log. */
  readonly sync: boolean;
  /** async: a failed append changes nothing for the publisher (false: refused while the log fails). */
  readonly ignoreErrors: boolean;
  /** The user property an entry's key is taken from ('' = the publisher's client id). */
  readonly keyProperty: string;
  /** The user property the SQL sink's `tag` column is taken from ('' = none: the tag is ''). */
  readonly tagProperty: string;
  /** Per-filter retention, ms (the store's retentionOverrides). */
  readonly retention: readonly { filter: string; ms: number }[];
  /** The backend pool (`pgsql.<pool>` / `mysql.<pool>`) the SQL sink writes to; '' = none. */
  readonly sqlPool: string;
}

function filterList(key: string, text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(',')) {
    const f = part.trim();
    if (f === '') continue;
    const bad = validateTopicFilter(f);
    if (bad) throw new ConfigError(`${key}: "${f}" is not a valid topic filter (${bad})`);
    if (f.startsWith('$share/') || f.startsWith('$log/')) throw new ConfigError(`${key}: "${f}": a logged filter names topics, not $share/ or $log/ subscriptions`);
    out.push(f);
  }
  return out;
}

/** The message log's configuration, checked. */
export function msglogConfig(c: Config): MsglogConfig {
  const filters = filterList('msglog.topics', c['msglog.topics']);
  if (filters.length > 0 && !c['durable_sessions.enable']) throw new ConfigError('msglog.topics needs durable_sessions.enable = true: the message log lives in the embedded store');
  if (filters.length > 0 && c['persistence.registry'] !== 'embedded') throw new ConfigError(`msglog.topics needs persistence.registry = embedded (it is ${c['persistence.registry']}): the message log lives in the embedded store`);
  const retention: { filter: string; ms: number }[] = [];
  for (const part of c['msglog.retention'].split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const [filter] = filterList('msglog.retention', part.slice(0, eq));
    const secs = durationSeconds(part.slice(eq + 1));
    if (filter === undefined || secs === null) throw new ConfigError(`msglog.retention: "${part.trim()}" is not filter=duration (e.g. audit/#=30d)`);
    retention.push({ filter, ms: secs * 1000 });
  }
  const sqlPool = c['msglog.sql_pool'];
  if (sqlPool !== '' && filters.length === 0) throw new ConfigError('msglog.sql_pool: nothing is logged (msglog.topics is empty)');
  return { filters, sync: c['msglog.mode'] === 'sync', ignoreErrors: c['msglog.ignore_errors'], keyProperty: c['msglog.key'], tagProperty: c['msglog.tag'], retention, sqlPool };
}
