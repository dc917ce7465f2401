/**
 * Mosquitto's ACL file (`auth.acl_file`), read as Mosquitto 2 reads it:
 *
 *   # comment
 *   topic read $SYS/#              ← before any `user` line: clients without a username
 *   user alice                     ← from here: the client whose username is alice
 *   topic readwrite home/alice/#
 *   topic deny home/alice/secret
 *   pattern write devices/%c/up    ← any client, wherever the line is; %c client id, %u username
 *
 * `topic|pattern [read|write|readwrite|deny] TOPIC` (access defaults to readwrite; TOPIC is the
 * rest of the line and may hold spaces). With a file configured, what no line allows is denied.
 *
 * - PUBLISH to a topic: allowed when a write/readwrite rule matches it and no deny rule does.
 * - SUBSCRIBE to a filter: allowed when a read/readwrite rule covers it (every topic the filter
 *   matches, the rule matches too) and no deny rule covers it. A deny rule inside a granted
 *   filter (`topic read a/#` + `topic deny a/secret`, subscription `a/#`) does not refuse the
 *   subscription: the messages it denies are not delivered (`readDenied`).
 * - A pattern whose %c or %u would put a wildcard into a filter (a client id or username with
 *   `+` or `#`), or %u for a client without a username, matches nothing.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import { validateTopicFilter } from '../native.js';
import { TopicMemo, topicMatches } from '../wire/topic.js';

export type Access = 'read' | 'write' | 'readwrite' | 'deny';

interface Rule {
  access: Access;
  filter: string;
  line: number;
}

/** A file that does not read or parse: a configuration error (the broker does not start). */
export class AclFileError extends ConfigError {}

/** Topics per client whose PUBLISH answer is kept (the rules cannot change under it: a reload builds a new ClientAcl), and their characters. */
const PUBLISH_MEMORY = 256;
const PUBLISH_MEMORY_CHARS = 64 * 1024;

const ACCESS = new Set<Access>(['read', 'write', 'readwrite', 'deny']);

/** What the file says for one client: built once per connection (and again after a reload). */
export interface ClientAcl {
  canPublish(topic: string): boolean;
  canSubscribe(filter: string): boolean;
  /** For a granted subscription: a test of the topics a deny rule keeps from it, or undefined when none can. */
  readDenied(filter: string): ((topic: string) => boolean) | undefined;
}

export class AclFile {
  private constructor(
    readonly path: string,
    private readonly anonymous: Rule[],
    private readonly users: Map<string, Rule[]>,
    private readonly patterns: Rule[],
    readonly lines: number,
  ) {}

  /** Read and parse `path`; a line it cannot read is an error naming the file and line. */
  static load(path: string): AclFile {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new AclFileError(`ACL file ${path}: ${(e as Error).message}`);
    }
    return AclFile.parse(text, path);
  }

  static parse(text: string, path = '<acl>'): AclFile {
    const anonymous: Rule[] = [];
    const users = new Map<string, Rule[]>();
    const patterns: Rule[] = [];
    let current = anonymous;
    const lines = text.split(/\r?\n/);
    lines.forEach((raw, i) => {
      const line = i + 1;
      const s = raw.trim();
      if (s === '' || s.startsWith('#')) return;
      const bad = (why: string): never => {
        throw new AclFileError(`ACL file ${path} line ${line}: ${why}: ${JSON.stringify(raw)}`);
      };
      const m = /^(\S+)\s*(.*)$/.exec(s) as RegExpExecArray;
      const keyword = m[1] as string;
      const rest = m[2] as string;
      if (keyword === 'user') {
        if (rest === '') bad('user without a name');
        let rules = users.get(rest);
        if (!rules) users.set(rest, (rules = []));
        current = rules;
        return;
      }
      if (keyword !== 'topic' && keyword !== 'pattern') bad(`unknown keyword "${keyword}" (topic, pattern, user)`);
      let access: Access = 'readwrite';
      let filter = rest;
      const a = /^(\S+)\s+(.+)$/.exec(rest);
      if (a && ACCESS.has(a[1] as Access)) {
        access = a[1] as Access;
        filter = a[2] as string;
      } else if (ACCESS.has(rest as Access)) {
        bad(`${keyword} without a topic`);
      }
      if (filter === '') bad(`${keyword} without a topic`);
      const invalid = validateTopicFilter(filter);
      if (invalid !== null) bad(`not a valid topic filter (${invalid})`);
      (keyword === 'pattern' ? patterns : current).push({ access, filter, line });
    });
    return new AclFile(path, anonymous, users, patterns, lines.length);
  }

  /** The rules that apply to this client, patterns filled in. */
  forClient(clientId: string, username: string | undefined): ClientAcl {
    const own = username === undefined ? this.anonymous : (this.users.get(username) ?? []);
    const rules: Rule[] = own.slice();
    for (const p of this.patterns) {
      const filter = substitute(p.filter, clientId, username);
      if (filter !== null) rules.push({ access: p.access, filter, line: p.line });
    }
    return new RulesAcl(rules);
  }
}

class RulesAcl implements ClientAcl {
  private readonly deny: string[] = [];
  private readonly read: string[] = [];
  private readonly write: string[] = [];

  constructor(rules: Rule[]) {
    for (const r of rules) {
      if (r.access === 'deny') this.deny.push(r.filter);
      if (r.access === 'read' || r.access === 'readwrite') this.read.push(r.filter);
      if (r.access === 'write' || r.access === 'readwrite') this.write.push(r.filter);
    }
  }

  /** Answers for the topics this client published to lately: most publish to a few, again and again. */
  private readonly published = new TopicMemo<boolean>(PUBLISH_MEMORY, PUBLISH_MEMORY_CHARS);

  canPublish(topic: string): boolean {
    const known = this.published.get(topic);
    if (known !== undefined) return known;
    const ok = this.judgePublish(topic);
    this.published.set(topic, ok);
    return ok;
  }

  private judgePublish(topic: string): boolean {
    for (const f of this.deny) if (topicMatches(f, topic)) return false;
    for (const f of this.write) if (topicMatches(f, topic)) return true;
    return false;
  }

  canSubscribe(filter: string): boolean {
    const inner = unshared(filter);
    for (const f of this.deny) if (covers(f, inner)) return false;
    for (const f of this.read) if (covers(f, inner)) return true;
    return false;
  }

  readDenied(filter: string): ((topic: string) => boolean) | undefined {
    const inner = unshared(filter);
    const inside = this.deny.filter((f) => intersects(f, inner));
    if (inside.length === 0) return undefined;
    return (topic) => inside.some((f) => topicMatches(f, topic));
  }
}

function unshared(filter: string): string {
  if (!filter.startsWith('$share/')) return filter;
  const i = filter.indexOf('/', '$share/'.length);
  return i < 0 ? filter : filter.slice(i + 1);
}

/** %c / %u filled in; null where the rule cannot apply (no username, or a wildcard in the value). */
function substitute(filter: string, clientId: string, username: string | undefined): string | null {
  let out = filter;
  if (out.includes('%c')) {
    if (/[+#]/.test(clientId)) return null;
    out = out.split('%c').join(clientId);
  }
  if (out.includes('%u')) {
    if (username === undefined || /[+#]/.test(username)) return null;
    out = out.split('%u').join(username);
  }
  return out;
}

/** Whether every topic `sub` matches, `acl` matches too. */
export function covers(acl: string, sub: string): boolean {
  if (sub.startsWith('$') !== acl.startsWith('$') && (acl.startsWith('+') || acl.startsWith('#'))) return false;
  const a = acl.split('/');
  const s = sub.split('/');
  for (let i = 0; i < a.length; i++) {
    const al = a[i];
    if (al === '#') return true;
    const sl = s[i];
    if (sl === undefined || sl === '#') return false;
    if (al !== '+' && (sl === '+' || al !== sl)) return false;
  }
  return a.length === s.length;
}

/** Whether some topic matches both filters. */
export function intersects(f1: string, f2: string): boolean {
  const a = f1.split('/');
  const b = f2.split('/');
  for (let i = 0; ; i++) {
    const x = a[i];
    const y = b[i];
    if (x === '#' || y === '#') return !(i === 0 && dollarClash(f1, f2));
    if (x === undefined || y === undefined) return x === y;
    if (x !== '+' && y !== '+' && x !== y) return false;
    if (i === 0 && dollarClash(f1, f2)) return false;
  }
}

/** A leading wildcard never matches `$` topics: `+/x` and `$SYS/x` share none. */
function dollarClash(f1: string, f2: string): boolean {
  const wild = (f: string): boolean => f.startsWith('+') || f.startsWith('#');
  return (f1.startsWith('$') && wild(f2)) || (f2.startsWith('$') && wild(f1));
}
