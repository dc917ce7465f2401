/**
 * `${name}` placeholders of custom actions (SPEC D4), bound as parameters — never spliced into
 * the text a server parses:
 * - SQL: each placeholder becomes a parameter marker (`$1`, `$2`, … for PostgreSQL, `?` for
 *   MySQL, sent as a prepared statement) and its value travels separately. A placeholder inside
 *   a quoted literal is refused at start (it would be a literal `$1`, or an injection).
 * - Redis: a command is split into arguments at whitespace first; a placeholder then fills (part
 *   of) one argument, so a value with spaces or quotes is still exactly one argument.
 */
import { ConfigError } from '../config.js';

/** What an event offers to placeholders (EMQX 4's names). */
export const PLACEHOLDERS = ['clientid', 'username', 'peerhost', 'topic', 'payload', 'qos', 'msgid', 'node', 'timestamp'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** The values of one event, by placeholder. Absent ones bind as NULL (SQL) or '' (Redis). */
export type EventValues = { [K in Placeholder]?: string | number | Buffer | undefined };

const TOKEN = /\$\{([^}]*)\}/g;

function checkName(name: string, where: string): Placeholder {
  if (!(PLACEHOLDERS as readonly string[]).includes(name)) throw new ConfigError(`${where}: unknown placeholder \${${name}} (known: ${PLACEHOLDERS.map((p) => `\${${p}}`).join(' ')})`);
  return name as Placeholder;
}

export interface SqlTemplate {
  /** The statement with parameter markers. */
  readonly text: string;
  /** The placeholder bound to each marker, in order. */
  readonly params: readonly Placeholder[];
}

/** Compile a SQL statement: placeholders → markers of the dialect; quoted literals are left alone. */
export function compileSql(sql: string, dialect: 'pgsql' | 'mysql', where: string): SqlTemplate {
  let text = '';
  const params: Placeholder[] = [];
  let quote: string | null = null;
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i] as string;
    if (quote) {
      if (ch === quote) {
        if (sql[i + 1] === quote) {
          text += ch + ch; // doubled quote inside a literal
          i++;
          continue;
        }
        quote = null;
      } else if (ch === '$' && sql[i + 1] === '{') {
        throw new ConfigError(`${where}: placeholder inside a quoted string in ${JSON.stringify(sql)}: write it without quotes — it is bound as a parameter`);
      }
      text += ch;
      continue;
    }
    if (ch === "'" || ch === '"' || ch === '`') {
      quote = ch;
      text += ch;
      continue;
    }
    if (ch === '$' && sql[i + 1] === '{') {
      const end = sql.indexOf('}', i);
      if (end < 0) throw new ConfigError(`${where}: unterminated placeholder in ${JSON.stringify(sql)}`);
      params.push(checkName(sql.slice(i + 2, end), where));
      text += dialect === 'pgsql' ? `$${params.length}` : '?';
      i = end;
      continue;
    }
    text += ch;
  }
  if (quote) throw new ConfigError(`${where}: unterminated quoted string in ${JSON.stringify(sql)}`);
  return { text, params };
}

/** One argument of a Redis command: literal parts and placeholders. */
type ArgPart = string | { name: Placeholder };
export type RedisTemplate = readonly (readonly ArgPart[])[];

/** Compile a Redis command: arguments split at whitespace, placeholders kept as parts of them. */
export function compileRedis(command: string, where: string): RedisTemplate {
  const args = command.trim().split(/\s+/).filter((a) => a !== '');
  if (args.length === 0) throw new ConfigError(`${where}: empty Redis command`);
  return args.map((arg) => {
    const parts: ArgPart[] = [];
    let last = 0;
    for (const m of arg.matchAll(TOKEN)) {
      if (m.index > last) parts.push(arg.slice(last, m.index));
      parts.push({ name: checkName(m[1] as string, where) });
      last = m.index + m[0].length;
    }
    if (last < arg.length) parts.push(arg.slice(last));
    if (arg.slice(last).includes('${')) throw new ConfigError(`${where}: unterminated placeholder in ${JSON.stringify(command)}`);
    return parts;
  });
}

/** The SQL parameter values of one event (PostgreSQL gets text for the payload: its EMQX tables hold `text`). */
export function sqlParams(t: SqlTemplate, v: EventValues, dialect: 'pgsql' | 'mysql'): unknown[] {
  return t.params.map((name) => {
    const x = v[name];
    if (x === undefined) return null;
    if (Buffer.isBuffer(x) && dialect === 'pgsql') return x.toString('utf8');
    return x;
  });
}

/** The arguments of one Redis command for an event: an argument that is one placeholder keeps its value's bytes. */
export function redisArgs(t: RedisTemplate, v: EventValues): (string | Buffer)[] {
  return t.map((parts) => {
    if (parts.length === 1) {
      const p = parts[0] as ArgPart;
      if (typeof p === 'string') return p;
      const x = v[p.name];
      return Buffer.isBuffer(x) ? x : x === undefined ? '' : String(x);
    }
    const bufs = parts.map((p) => {
      if (typeof p === 'string') return Buffer.from(p);
      const x = v[p.name];
      return Buffer.isBuffer(x) ? x : Buffer.from(x === undefined ? '' : String(x));
    });
    return Buffer.concat(bufs);
  });
}
