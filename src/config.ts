/**
 * The one config loader (SPEC F2). Sources, lowest to highest precedence:
 *   built-in defaults < config file (`key = value`, dotted keys, JSON values, `#` comments)
 *   < environment (`STRATA_MQTT__MAX_PACKET_SIZE=…`: prefix STRATA_, `.` written as `__`)
 *   < explicit overrides (CLI flags, `createBroker` options).
 * Every key is declared below with its type; an unknown key or a bad value is an error that
 * names the key and where it came from, so a typo never silently falls back to a default.
 */
import { readFileSync } from 'node:fs';

type Kind = 'int' | 'bool' | 'string' | 'duration' | 'enum' | 'json';
interface KeySpec {
  kind: Kind;
  default: number | boolean | string;
  min?: number;
  max?: number;
  values?: readonly string[];
  pattern?: RegExp;
  doc: string;
}

/** Declared keys. Durations are seconds (numbers) or strings like `2h`, `30m`, `15s`, `500ms`. */
export const CONFIG_KEYS = {
  'listener.tcp.host': { kind: 'string', default: '0.0.0.0', doc: 'listen address for every listener' },
  'listener.tcp.port': { kind: 'int', default: 1883, min: 0, max: 65535, doc: 'MQTT over TCP (0 = ephemeral)' },
  'listener.ws.port': { kind: 'int', default: 8083, min: -1, max: 65535, doc: 'MQTT over WebSocket; `-1` disables' },
  'listener.ws.path': { kind: 'string', default: '/mqtt', doc: 'WebSocket path (also for WSS)' },
  'listener.tls.port': { kind: 'int', default: -1, min: -1, max: 65535, doc: 'MQTT over TLS (8883 conventionally)' },
  'listener.tls.certfile': { kind: 'string', default: '', doc: 'PEM certificate for TLS and WSS' },
  'listener.tls.keyfile': { kind: 'string', default: '', doc: 'PEM private key for TLS and WSS' },
  'listener.wss.port': { kind: 'int', default: -1, min: -1, max: 65535, doc: 'MQTT over secure WebSocket' },
  'node.data_dir': { kind: 'string', default: './data', doc: 'directory of the embedded store' },
  'node.name': { kind: 'string', default: 'stratamq@127.0.0.1', doc: 'this node\'s name, as backends record it (`${node}`, `mqtt:node:<name>`, the `node` columns)' },
  'node.idle_gc': { kind: 'bool', default: true, doc: 'when traffic stops after the start, or after a burst that left > 16 MB in the JS heap: one compacting full garbage collection, then (from 2 s later, a few tries) young-generation ones until V8 gives back the room the burst grew into (it keeps it while nothing allocates); and each time traffic stops, the memory the allocator holds free is given back to the system (glibc malloc_trim)' },
  'durable_sessions.enable': { kind: 'bool', default: true, doc: 'keep persistent sessions, their queues and retained messages in the store' },
  'durable_sessions.qos0': { kind: 'bool', default: true, doc: 'store QoS 0 messages for offline persistent sessions too (delivered at QoS 0 when they return)' },
  'durable_sessions.batch_size': { kind: 'int', default: 1000, min: 1, max: 100000, doc: 'messages read from the log per scan when a persistent session catches up' },
  'durable_sessions.native_drain': { kind: 'bool', default: true, doc: 'a persistent session catching up over plain TCP is drained by a Rust thread that has the socket meanwhile; `false` drains on the event loop' },
  'durable_sessions.message_retention_period': { kind: 'duration', default: 86400, min: 0, max: 315360000, doc: 'how long the log keeps messages (0 = forever); older generations are dropped whole' },
  'persistence.registry': { kind: 'string', default: 'embedded', pattern: /^(embedded|redis|sql|.*[\\/].*|.*\.m?js)$/, doc: 'where persistent sessions, their queues and retained messages are kept: `embedded` (the built-in log store in `node.data_dir`), `redis` (the `redis.*` keys), `sql` (PostgreSQL or MySQL / MariaDB, the `db.*` keys), or the path of a module of your own implementing QueueRegistry (src/persistence/queue-registry.ts; its default export, or `createRegistry(config)`, checked at start) — see "Persistence registries"' },
  'redis.mode': { kind: 'enum', default: 'single', values: ['single', 'sentinel', 'cluster'], doc: 'Redis registry: `single` (`redis.single.address`), `sentinel` (`redis.sentinel.*`) or `cluster` (`redis.cluster.nodes`)' },
  'redis.single.address': { kind: 'string', default: '127.0.0.1:6379', doc: 'Redis registry, single mode: the server `host:port`' },
  'redis.sentinel.master': { kind: 'string', default: 'mymaster', doc: 'Redis registry, sentinel mode: the master\'s name' },
  'redis.sentinel.nodes': { kind: 'string', default: '', doc: 'Redis registry, sentinel mode: the sentinels, `host:port,host:port,…`' },
  'redis.cluster.nodes': { kind: 'string', default: '', doc: 'Redis registry, cluster mode: seed nodes, `host:port,host:port,…`' },
  'redis.cluster.scan.interval': { kind: 'int', default: 1000, min: 0, max: 3600000, doc: 'Redis registry, cluster mode: ms between refreshes of the slot map (0 = only when redirected)' },
  'redis.database': { kind: 'int', default: 0, min: 0, max: 65535, doc: 'Redis registry: database number (single and sentinel modes; a cluster has only 0)' },
  'redis.username': { kind: 'string', default: '', doc: 'Redis registry: ACL user (Redis 6+; empty: the default user)' },
  'redis.password': { kind: 'string', default: '', doc: 'Redis registry: password' },
  'redis.timeout': { kind: 'int', default: 3000, min: 0, max: 3600000, doc: 'Redis registry: ms a command may wait for its reply, then it fails (a publish it stored for is refused: v5 0x80, 3.1.1 disconnected); 0 = no limit' },
  'redis.pool.conn.timeout': { kind: 'int', default: 3000, min: 1, max: 3600000, doc: 'Redis registry: ms to wait for a connection (at start a failure stops the broker; later ioredis reconnects every 500 ms). One connection per server carries every command, pipelined per event-loop turn, so smqtt\'s pool sizes have no counterpart' },
  'db.url': { kind: 'string', default: '', doc: 'SQL registry: the database, `postgres://host:port/db`, `mysql://host:port/db` (MariaDB too), or smqtt\'s `jdbc:mysql://…` / `jdbc:postgresql://…` (its query string is ignored)' },
  'db.username': { kind: 'string', default: '', doc: 'SQL registry: user (default: the URL\'s, else `postgres` / `root`)' },
  'db.password': { kind: 'string', default: '', doc: 'SQL registry: password (default: the URL\'s)' },
  'db.initial_size': { kind: 'int', default: 10, min: 1, max: 1000, doc: 'SQL registry: connections opened at start (a wrong address or password stops the start); smqtt\'s `db.initialSize` is accepted too' },
  'db.max_active': { kind: 'int', default: 300, min: 2, max: 10000, doc: 'SQL registry: connections at most (one carries each turn\'s write transaction, the others reads); smqtt\'s `db.maxActive` is accepted too' },
  'db.max_wait': { kind: 'int', default: 60000, min: 1, max: 3600000, doc: 'SQL registry: ms to wait for a connection (PostgreSQL: from the pool; MySQL: to connect); smqtt\'s `db.maxWait` is accepted too' },
  'db.query_timeout': { kind: 'int', default: 15000, min: 0, max: 3600000, doc: 'SQL registry: ms a statement may take, then it fails (a transaction it was in rolls back: its publishers are refused) — a connection that dies silently never holds the writes behind it; 0 = no limit' },
  'db.min_idle': { kind: 'int', default: 2, min: 0, max: 10000, doc: 'SQL registry: idle connections kept open; smqtt\'s `db.minIdle` is accepted too' },
  'durable_storage.messages.n_shards': { kind: 'int', default: 4, min: 1, max: 1024, doc: 'log shards (by publisher client id), fixed at first start' },
  'durable_storage.fsync': { kind: 'string', default: 'always', pattern: /^(always|none|interval:[1-9][0-9]*)$/, doc: '`always` | `interval:<ms>` | `none` — see "What is durable"' },
  'durable_storage.on_corruption': {
    kind: 'enum',
    default: 'recover',
    values: ['recover', 'refuse'],
    doc: 'damaged store files at start: `recover` (quarantine, salvage, rebuild, report each loss once) or `refuse` to start, changing nothing',
  },
  'durable_storage.segment_bytes': { kind: 'int', default: 67108864, min: 4096, max: 4294967295, doc: 'log segment size: a segment is sealed and indexed once it holds this many bytes' },
  // The message log (src/msglog/, SPEC E1–E2): what is logged, how the publisher waits for it, how long it is kept.
  'msglog.topics': { kind: 'string', default: '', doc: 'topic filters whose messages are logged (kept in the store, queried, replayed, re-consumed through `$log/`), comma-separated, e.g. `orders/#,sensors/+/alarm`; empty = none. Needs `durable_sessions.enable`. A message persistent sessions need is in the log already: it is not written twice' },
  'msglog.mode': { kind: 'enum', default: 'async', values: ['async', 'sync'], doc: '`async`: the PUBACK / PUBREC does not wait for the log; `sync`: it goes out once the log has the message (durable per `durable_storage.fsync`), and a failed append refuses it (v5 0x80; 3.1.1: no acknowledgement, the connection is closed so the client sends it again)' },
  'msglog.ignore_errors': { kind: 'bool', default: true, doc: '`async` mode: a failed append is counted and logged and changes nothing for the publisher; `false`: while the log is failing (its last append failed), a message to a logged topic is refused as in `sync` mode — it is still delivered' },
  'msglog.key': { kind: 'string', default: '', doc: 'what an entry\'s `key` is: the publisher\'s client id (empty), or the value of this MQTT 5 user property when the message carries it' },
  'msglog.tag': { kind: 'string', default: '', doc: 'the SQL sink\'s `tag` column (redismq\'s message tag, which its consumers filter on): the value of this MQTT 5 user property when the message carries it (its first value when given several times); empty (the default) or absent: `\'\'`, redismq\'s own default' },
  'msglog.sql_pool': { kind: 'string', default: '', pattern: /^$|^(pgsql|mysql)\.[a-z0-9_]+$/, doc: 'a backend pool, `pgsql.<pool>` or `mysql.<pool>` (configured with the `backend.<type>.<pool>.*` keys), that gets every logged message as a row of redismq\'s table `redismq_message`, fed from the log in batches (a slow or unreachable database never slows publishing; rows are written once, resuming where they stopped); empty = none' },
  'msglog.retention': { kind: 'string', default: '', pattern: /^$|^[^=,]+=[^=,]+(,[^=,]+=[^=,]+)*$/, doc: 'retention per filter, `filter=duration` comma-separated (e.g. `audit/#=30d,sensors/#=2h`; first match wins); other topics keep `durable_sessions.message_retention_period`. Applies to every message of those topics in the log, persistent sessions\' included' },
  'log.level': { kind: 'enum', default: 'info', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], doc: 'trace, debug, info, warn, error, fatal, silent' },
  'mqtt.max_packet_size': { kind: 'int', default: 1048576, min: 64, max: 268435455, doc: 'larger packets are refused (v5: DISCONNECT 0x95); advertised in CONNACK' },
  'mqtt.max_clientid_len': { kind: 'int', default: 65535, min: 23, max: 65535, doc: 'longer client ids get CONNACK 0x85 / 2' },
  'mqtt.session_expiry_interval': { kind: 'duration', default: 7200, min: 0, max: 4294967295, doc: 'session lifetime for 3.x clients with clean_session = 0' },
  'mqtt.max_session_expiry_interval': { kind: 'duration', default: 4294967295, min: 0, max: 4294967295, doc: 'cap on what v5 clients ask for' },
  'mqtt.max_inflight': { kind: 'int', default: 128, min: 1, max: 65535, doc: 'outbound QoS 1/2 window per client (also capped by the client\'s Receive Maximum)' },
  'mqtt.receive_maximum': { kind: 'int', default: 1024, min: 1, max: 65535, doc: 'inbound QoS 2 window advertised to v5 clients' },
  'mqtt.max_queued_messages': { kind: 'int', default: 1000000, min: 0, max: 100000000, doc: 'per-session queue behind the window / while offline; the excess is handled per `mqtt.queue_overflow` and counted (`metrics.messagesDropped`). A persistent session\'s queue is the log itself: nothing per message in memory while it is away (its count is kept in the session\'s progress record across restarts); a session kept in memory only is bounded by `max_queued_in_memory` too' },
  'mqtt.max_queued_in_memory': { kind: 'int', default: 1000, min: 1, max: 100000000, doc: 'messages a session kept in memory only may queue (a clean session\'s queue behind its window, or any session\'s while no store or registry keeps it; as `max_queued_messages` of Mosquitto and `max_mqueue_len` of EMQX, 1,000 by default there too): beyond it, handled per `mqtt.queue_overflow`. Persistent sessions in the log or a registry are bounded by `max_queued_messages` alone' },
  'mqtt.max_queued_bytes': { kind: 'int', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, doc: 'payload bytes per session queue (0 = no limit), handled like `max_queued_messages`' },
  'mqtt.queue_overflow': {
    kind: 'enum',
    default: 'drop_oldest',
    values: ['drop_oldest', 'drop_newest', 'disconnect'],
    doc: 'what a full session queue does: `drop_oldest` (as EMQX), `drop_newest` (as Mosquitto), or `disconnect` (a connected client is disconnected with 0x97 Quota exceeded; while it is away, as `drop_newest`)',
  },
  'mqtt.queue_qos0': { kind: 'bool', default: false, doc: 'also queue QoS 0 for offline sessions' },
  'mqtt.fair_inflow': {
    kind: 'bool',
    default: true,
    doc: 'a message most of whose deliveries to connected sessions found a window\'s worth queued behind a full window holds its publisher: the rest of what the publisher sent is read the next event-loop iteration, after the acknowledgements (it is held back by TCP), so deliveries keep pace with what is accepted instead of queues growing (counted: `stratamq_inflow_holds_total`). One slow subscriber among others that take the message holds no one (its queue overflows as configured), nor does a session that completes less than half of what is queued for it over a second. A log replay is held the same way (1 ms at a time)',
  },
  'mqtt.max_topic_alias': { kind: 'int', default: 10, min: 0, max: 65535, doc: 'Topic Alias Maximum accepted from v5 clients (as Mosquitto): each alias keeps a topic name for the connection, and MQTT.js sizes a cache by it at every connect' },
  'mqtt.max_qos': { kind: 'int', default: 2, min: 0, max: 2, doc: 'highest QoS granted' },
  'mqtt.retain_available': { kind: 'bool', default: true, doc: 'accept retained messages' },
  'mqtt.wildcard_subscription': { kind: 'bool', default: true, doc: 'allow `+` and `#` in filters' },
  'mqtt.shared_subscription': { kind: 'bool', default: true, doc: 'allow shared subscriptions `$share/{group}/{filter}`' },
  'mqtt.max_outbound_topic_alias': { kind: 'int', default: 65535, min: 0, max: 65535, doc: 'topic aliases the broker uses towards a v5 client, at most the Topic Alias Maximum it sent (0 = never); its deliveries are then encoded per client (no native drain)' },
  'mqtt.max_subscriptions': { kind: 'int', default: 0, min: 0, max: 100000000, doc: 'subscriptions per client (0 = no limit); beyond it SUBACK 0x97 Quota exceeded (3.1.1: 0x80)' },
  'mqtt.max_topic_levels': { kind: 'int', default: 128, min: 1, max: 65535, doc: 'topic levels in a topic name or filter; deeper ones are refused: PUBLISH 0x90 Topic Name invalid (3.1.1: dropped), SUBSCRIBE 0x8F (3.1.1: 0x80)' },
  'mqtt.max_topic_length': { kind: 'int', default: 65535, min: 1, max: 65535, doc: 'bytes in a topic name or filter; longer ones are refused like `max_topic_levels`' },
  'limits.connect_rate': { kind: 'int', default: 0, min: 0, max: 1000000, doc: 'CONNECTs per second from one source address (0 = no limit); beyond it CONNACK 0x9F Connection rate exceeded (3.1.1: 3)' },
  'limits.messages_rate': { kind: 'int', default: 0, min: 0, max: 100000000, doc: 'PUBLISH packets per second from one client (token bucket, bursts of one second; 0 = no limit): a v5 client over it is disconnected with 0x96 Message rate too high (the message not taken); a 3.1.1 client is read more slowly (nothing refused)' },
  'limits.bytes_rate': { kind: 'int', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, doc: 'PUBLISH payload bytes per second from one client, as `limits.messages_rate`' },
  'auth.acl_file': { kind: 'string', default: '', doc: 'Mosquitto ACL file (`user`, `topic [read|write|readwrite|deny] FILTER`, `pattern` with `%c`/`%u`); what it does not allow is denied: PUBLISH 0x87 (3.1.1: acknowledged, dropped), SUBSCRIBE 0x87 (3.1.1: 0x80). Re-read on SIGHUP' },
  'mqtt.keepalive_multiplier': { kind: 'int', default: 15, min: 10, max: 100, doc: 'keep-alive grace in tenths (1.5×)' },
  'mqtt.max_keepalive': { kind: 'int', default: 65535, min: 0, max: 65535, doc: 'Server Keep Alive cap for v5 clients' },
  'mqtt.connect_timeout': { kind: 'duration', default: 10, min: 1, max: 3600, doc: 'seconds a socket may stay open without CONNECT' },
  'mqtt.max_connections': { kind: 'int', default: 1000000, min: 1, max: 100000000, doc: 'beyond it CONNACK 0x97 (v5) / 3' },
  'mqtt.allow_anonymous': { kind: 'bool', default: true, doc: 'refuse clients without a username when false' },
  'auth.password_file': { kind: 'string', default: '', doc: 'Mosquitto-format password file (`username:hash` lines; `$7$`, `$6$` and `$argon2id$` hashes, written by `stratamq passwd` or `mosquitto_passwd`); empty = none' },
  'auth.jwt.secret': { kind: 'string', default: '', doc: 'HMAC secret for HS256/HS384/HS512 tokens; with `public_key` and `jwks_file` empty = no JWT authentication' },
  'auth.jwt.public_key': { kind: 'string', default: '', doc: 'PEM public key file for RS*/PS*/ES*/EdDSA tokens' },
  'auth.jwt.jwks_file': { kind: 'string', default: '', doc: 'JWKS (JSON) file of public keys, chosen by the token\'s `kid` and `alg`; used before `public_key`' },
  'auth.jwt.algorithms': { kind: 'string', default: 'HS256,RS256,ES256', pattern: /^(?:(?:HS|RS|PS|ES)(?:256|384|512)|EdDSA)(?:\s*,\s*(?:(?:HS|RS|PS|ES)(?:256|384|512)|EdDSA))*$/, doc: 'accepted token algorithms, comma-separated (`none` never is)' },
  'auth.jwt.from': { kind: 'enum', default: 'password', values: ['password', 'username'], doc: 'where clients put the token: the CONNECT `password` or `username`' },
  'auth.jwt.username_claim': { kind: 'string', default: 'sub', doc: 'claim naming the user: required, and equal to the CONNECT username when the token comes as the password; empty = not checked' },
  'auth.jwt.clientid_claim': { kind: 'string', default: '', doc: 'claim that must equal the client id; empty = not checked' },
  'auth.jwt.issuer': { kind: 'string', default: '', doc: 'required `iss`; empty = not checked' },
  'auth.jwt.audience': { kind: 'string', default: '', doc: 'required `aud`; empty = not checked' },
  'mqtt.write_high_watermark': { kind: 'int', default: 8388608, min: 65536, max: 1073741824, doc: 'bytes buffered for a slow client above which its QoS 0 messages are dropped (counted)' },
  // Operating a running broker (src/admin/): admin HTTP API, /metrics, $SYS, log format.
  'admin.port': { kind: 'int', default: 18083, min: -1, max: 65535, doc: 'admin HTTP API, `/metrics`, `/health`, `/ready` (0 = ephemeral; `-1` disables; `stratamq start --admin-port 0` disables too)' },
  'admin.host': { kind: 'string', default: '127.0.0.1', doc: 'listen address of the admin API' },
  'admin.token': { kind: 'string', default: '', doc: 'bearer token of the admin API; empty: read from `<data_dir>/admin.token`, generated there (mode 0600) and logged once at the first start' },
  'admin.metrics_public': { kind: 'bool', default: false, doc: '`/metrics` without the token (for a Prometheus scraper on a trusted network)' },
  'sys.interval': { kind: 'duration', default: 10, min: 0, max: 86400, doc: 'seconds between `$SYS/broker/...` updates (retained, QoS 0, in memory only; 0 disables)' },
  'log.format': { kind: 'enum', default: 'auto', values: ['auto', 'pretty', 'json'], doc: '`pretty`: readable lines (pino-pretty); `json`: JSON lines; `auto`: pretty when stdout is a terminal' },
} as const satisfies Record<string, KeySpec>;

/**
 * Keys with parts the user names (a pool, a rule's number): declared as patterns, each with the
 * regular expression its keys match. Their values are checked here like CONFIG_KEYS' (type,
 * range, where they came from) and kept in `Config.patterned` by full key; the room that owns
 * them (src/backends/config.ts) reads them, applies the defaults and checks how they fit together.
 */
const POOL = String.raw`backend\.(redis|pgsql|mysql)\.(?!hook\.)[a-z0-9_]+\.`;
export const CONFIG_PATTERNS = {
  'backend.<redis|pgsql|mysql>.<pool>.server': { match: new RegExp(`^${POOL}server$`), kind: 'string', default: '', doc: 'the pool\'s server `host:port` (default: 127.0.0.1 and the database\'s port); Redis sentinel and cluster: `host:port,host:port,…`' },
  'backend.redis.<pool>.type': { match: /^backend\.redis\.(?!hook\.)[a-z0-9_]+\.type$/, kind: 'enum', default: 'single', values: ['single', 'sentinel', 'cluster'], doc: 'Redis deployment: `single`, `sentinel` (then `sentinel` names the master) or `cluster`' },
  'backend.redis.<pool>.sentinel': { match: /^backend\.redis\.(?!hook\.)[a-z0-9_]+\.sentinel$/, kind: 'string', default: '', doc: 'the master\'s name in Redis Sentinel (with `type = sentinel`)' },
  'backend.<redis|pgsql|mysql>.<pool>.pool_size': { match: new RegExp(`^${POOL}pool_size$`), kind: 'int', default: 8, min: 1, max: 1024, doc: 'connections (PostgreSQL, MySQL; Redis multiplexes one connection, or one per cluster node)' },
  'backend.<redis|pgsql|mysql>.<pool>.username': { match: new RegExp(`^${POOL}username$`), kind: 'string', default: '', doc: 'user (Redis 6 ACL user; PostgreSQL default `postgres`, MySQL default `root`)' },
  'backend.<redis|pgsql|mysql>.<pool>.password': { match: new RegExp(`^${POOL}password$`), kind: 'string', default: '', doc: 'password' },
  'backend.<redis|pgsql|mysql>.<pool>.database': { match: new RegExp(`^${POOL}database$`), kind: 'string', default: '', doc: 'Redis database number (default 0); PostgreSQL / MySQL database (default `mqtt`)' },
  'backend.<redis|pgsql|mysql>.<pool>.ssl': { match: new RegExp(`^${POOL}ssl$`), kind: 'bool', default: false, doc: 'TLS to the server (verified against the system\'s CAs)' },
  'backend.<redis|pgsql|mysql>.<pool>.connect_timeout': { match: new RegExp(`^${POOL}connect_timeout$`), kind: 'duration', default: 5, min: 1, max: 3600, doc: 'seconds to wait for a connection' },
  'backend.<redis|pgsql|mysql>.<pool>.query_timeout': { match: new RegExp(`^${POOL}query_timeout$`), kind: 'duration', default: 15, min: 0, max: 3600, doc: 'seconds a statement may take once sent, then it fails (counted); Redis: no reply for this long resets the connection and the command is retried; 0 = no limit' },
  'backend.<redis|pgsql|mysql>.<pool>.auto_reconnect': { match: new RegExp(`^${POOL}auto_reconnect$`), kind: 'duration', default: 1, min: 0, max: 3600, doc: 'seconds between reconnection attempts while the server is unreachable (an event waits, holding its place in the rule\'s queue); 0 = no retry: events fail (counted) while it is down' },
  'backend.<redis|pgsql|mysql>.<pool>.max_inflight': { match: new RegExp(`^${POOL}max_inflight$`), kind: 'int', default: 0, min: 0, max: 100000, doc: 'events written at once per event and pool; 0 = automatic: Redis 10000 (written in batches on one connection: Redis works through a batch while the next waits), PostgreSQL / MySQL `pool_size`' },
  'backend.<redis|pgsql|mysql>.<pool>.max_queued': { match: new RegExp(`^${POOL}max_queued$`), kind: 'int', default: 10000, min: 1, max: 10000000, doc: 'events waiting per event and pool; beyond it they are dropped and counted (`stratamq_hook_consumer_events_total{outcome="dropped"}`)' },
  'backend.<redis|pgsql|mysql>.<pool>.max_returned_count': { match: new RegExp(`^${POOL}max_returned_count$`), kind: 'int', default: 500, min: 0, max: 100000000, doc: 'offline fetch (on_message_fetch…): at most this many stored messages per subscription, oldest first (0 = no limit)' },
  'backend.<redis|pgsql|mysql>.<pool>.time_range': { match: new RegExp(`^${POOL}time_range$`), kind: 'duration', default: 0, min: 0, max: 315360000, doc: 'offline fetch: only messages stored within this long (e.g. `2h`; 0 = no limit)' },
  'backend.<redis|pgsql|mysql>.hook.<event>.<n>': { match: /^backend\.(redis|pgsql|mysql)\.hook\.[a-z_]+\.[a-z_]+\.[0-9]+$/, kind: 'json', default: '', doc: 'a rule, JSON: `{"topic": filter, "action": {"function": name}, "pool": name}`, or `"action": {"sql": [statements]}` (PostgreSQL, MySQL), or `"action": {"commands": [commands]}` (Redis) — see "Backends"' },
} as const satisfies Record<string, KeySpec & { match: RegExp }>;

/** A patterned key's value (checked) and where it came from. */
export interface PatternedValue {
  readonly value: number | boolean | string | object;
  readonly where: string;
}

/** A duration in seconds as the README shows it: `7200` (2h). */
function humanSeconds(v: number): string {
  for (const [unit, n] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (v >= n && v % n === 0 && v < 4294967295) return ` (${v / n}${unit})`;
  }
  return '';
}

/**
 * The configuration reference, a Markdown table generated from CONFIG_KEYS: what the README
 * shows (`stratamq config reference`; a test keeps the README equal to it).
 */
export function configReference(): string {
  const rows = ['| key | default | meaning |', '|---|---|---|'];
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as [string, KeySpec][]) {
    const d = spec.default;
    let shown = d === '' ? '—' : `\`${String(d)}\``;
    if (spec.kind === 'duration' && typeof d === 'number') shown += humanSeconds(d);
    if (key.endsWith('.port') && d === -1) shown += ' (off)';
    rows.push(`| \`${key}\` | ${shown} | ${spec.doc.replace(/\|/g, '\\|')} |`);
  }
  for (const [key, spec] of Object.entries(CONFIG_PATTERNS) as [string, KeySpec][]) {
    const d = spec.default;
    let shown = d === '' ? '—' : `\`${String(d)}\``;
    if (spec.kind === 'duration' && typeof d === 'number') shown += humanSeconds(d);
    rows.push(`| \`${key.replace(/\|/g, '\\|')}\` | ${shown} | ${spec.doc.replace(/\|/g, '\\|')} |`);
  }
  return rows.join('\n');
}

/** Where the README holds the reference (the start marker's line, then the table, then the end marker). */
export const REFERENCE_START = '<!-- config reference';
export const REFERENCE_END = '<!-- end of config reference -->';

export type ConfigKey = keyof typeof CONFIG_KEYS;
type ValueOf<K extends ConfigKey> = (typeof CONFIG_KEYS)[K]['default'] extends number
  ? number
  : (typeof CONFIG_KEYS)[K]['default'] extends boolean
    ? boolean
    : string;
export type Config = { [K in ConfigKey]: ValueOf<K> } & {
  /** Values of patterned keys (CONFIG_PATTERNS) by full key, e.g. `backend.redis.pool1.server`. */
  readonly patterned: Readonly<Record<string, PatternedValue>>;
};
export type ConfigInput = Partial<{ [K in ConfigKey]: unknown }> & { [K in `backend.${string}`]?: unknown };

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;
const UNIT: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** A duration as the config writes it (`90`, `2h`, `30m`, `15s`, `500ms`) in whole seconds; null when it is not one. */
export function durationSeconds(text: string): number | null {
  const m = DURATION.exec(text.trim());
  return m ? Math.round(Number(m[1]) * (UNIT[m[2] ?? 's'] as number)) : null;
}

/** The declaration of a key: its own, or the pattern it matches (then `patterned`). */
function specOf(key: string): { spec: KeySpec; patterned: boolean } | null {
  const own = (CONFIG_KEYS as Record<string, KeySpec>)[key];
  if (own) return { spec: own, patterned: false };
  for (const spec of Object.values(CONFIG_PATTERNS)) if (spec.match.test(key)) return { spec, patterned: true };
  return null;
}

function coerce(key: string, raw: unknown, where: string): number | boolean | string | object {
  const spec = specOf(key)?.spec;
  if (!spec) {
    if (key.startsWith('backend.')) {
      const fields = Object.keys(CONFIG_PATTERNS).filter((k) => !k.includes('.hook.')).map((k) => k.slice(k.lastIndexOf('.') + 1));
      throw new ConfigError(`${where}: unknown config key "${key}" (backend keys: backend.<redis|pgsql|mysql>.<pool>.<${[...new Set(fields)].join('|')}> and backend.<redis|pgsql|mysql>.hook.<event>.<n>)`);
    }
    const near = Object.keys(CONFIG_KEYS).find((k) => k.endsWith(key.split('.').pop() ?? '\0'));
    throw new ConfigError(`${where}: unknown config key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`);
  }
  const bad = (what: string): never => {
    throw new ConfigError(`${where}: ${key} ${what}, got ${JSON.stringify(raw)}`);
  };
  let v: number | boolean | string | object;
  switch (spec.kind) {
    case 'json': {
      // A rule from a file is parsed already; from the environment or an option it may be text.
      let parsed = raw;
      if (typeof raw === 'string') {
        try {
          parsed = JSON.parse(raw);
        } catch (e) {
          bad(`must be a JSON object (${(e as Error).message})`);
        }
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) bad('must be a JSON object');
      v = parsed as object;
      break;
    }
    case 'int': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n)) bad('must be an integer');
      v = n as number;
      break;
    }
    case 'duration': {
      const secs = typeof raw === 'number' ? raw : typeof raw === 'string' ? durationSeconds(raw) : null;
      v = secs ?? bad('must be a duration (seconds, or e.g. "2h", "30m", "15s")');
      break;
    }
    case 'bool':
      if (raw === true || raw === 'true' || raw === 'on') v = true;
      else if (raw === false || raw === 'false' || raw === 'off') v = false;
      else v = bad('must be true or false');
      break;
    case 'enum':
      if (typeof raw !== 'string' || !spec.values?.includes(raw)) v = bad(`must be one of ${spec.values?.join(', ')}`);
      else v = raw;
      break;
    case 'string':
      if (typeof raw !== 'string' && typeof raw !== 'number') v = bad('must be a string');
      else if (spec.pattern && !spec.pattern.test(String(raw))) v = bad(`must match ${spec.pattern.source}`);
      else v = String(raw);
      break;
  }
  if (typeof v === 'number') {
    if (spec.min !== undefined && v < spec.min) bad(`must be >= ${spec.min}`);
    if (spec.max !== undefined && v > spec.max) bad(`must be <= ${spec.max}`);
  }
  return v;
}

/** Keys accepted under another name: smqtt's camelCase pool keys (the house writes keys in snake case). */
export const KEY_ALIASES: Readonly<Record<string, ConfigKey>> = {
  'db.initialSize': 'db.initial_size',
  'db.maxActive': 'db.max_active',
  'db.maxWait': 'db.max_wait',
  'db.minIdle': 'db.min_idle',
};

/** Parse the seeds' `key = value` format. Values are JSON when they parse as JSON, else text. */
export function parseConfigText(text: string, file = '<config>'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const eq = t.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${file}:${i + 1}: expected "key = value", got ${JSON.stringify(t)}`);
    const key = t.slice(0, eq).trim();
    const rawValue = t.slice(eq + 1).trim();
    if (!/^[a-z0-9_]+(\.[a-z0-9_]+)*$/i.test(key)) throw new ConfigError(`${file}:${i + 1}: bad key ${JSON.stringify(key)}`);
    let value: unknown = rawValue;
    try {
      value = JSON.parse(rawValue);
    } catch {
      // plain text value
    }
    out[key] = { value, where: `${file}:${i + 1}` };
  });
  return out;
}

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigInput;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const patterned: Record<string, PatternedValue> = {};
  const cfg: Record<string, unknown> = { patterned };
  for (const [k, spec] of Object.entries(CONFIG_KEYS)) cfg[k] = spec.default;
  const set = (given: string, raw: unknown, where: string): void => {
    const k = KEY_ALIASES[given] ?? given;
    const value = coerce(k, raw, where);
    if (specOf(k)?.patterned) patterned[k] = { value, where };
    else cfg[k] = value;
  };
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(e as Error).message}`);
    }
    for (const [k, { value, where }] of Object.entries(parseConfigText(text, opts.file) as Record<string, { value: unknown; where: string }>)) {
      set(k, value, where);
    }
  }
  const env = opts.env ?? {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('STRATA_') || value === undefined) continue;
    const key = name.slice(7).toLowerCase().split('__').join('.');
    set(key, value, `environment ${name}`);
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) {
    if (v !== undefined) set(k, v, 'option');
  }
  return cfg as Config;
}
