/**
 * What the broker counts (Broker.metrics): plain numbers the parts increment and the admin room
 * (/metrics, $SYS) reads. One definition, below everything that writes or reads it.
 */
import type { ConsumerCounters } from './bus.js';
import type { Refusals } from './index.js';

/** Traffic counters of BrokerMetrics, kept for /metrics and $SYS. */
export interface TrafficMetrics {
  /** Bytes read from clients' streams. */
  bytesReceived: number;
  /** Bytes written to clients' streams (the native drain loop writes to the socket itself: not counted). */
  bytesSent: number;
  /** Messages accepted (messagesReceived) by QoS, index 0..2. */
  messagesReceivedByQos: number[];
  /** PUBLISH packets sent to clients through the event loop, by QoS, index 0..2. */
  readonly messagesSentByQos: number[];
  /** PUBLISH packets the native drain loop sent (QoS 0 and 1 together), counted when it hands back. */
  readonly nativeSent: number;
}

/** A backend connection pool (src/backends/): whether its server answers, and its errors. */
export interface BackendPoolCounters {
  readonly type: string;
  readonly pool: string;
  /** The last command or statement reached the server (false until one has, and while it is unreachable). */
  up: boolean;
  /** Connection-level errors (unreachable, refused credentials, lost connection). */
  errors: number;
  lastError: string;
}

/** A backend rule (`backend.<type>.hook.<event>.<n>`): events it selected, and how they ended. */
export interface BackendRuleCounters {
  readonly pool: string;
  matched: number;
  done: number;
  failed: number;
}

/** The message log's recording (src/msglog/recorder.ts). */
export interface MsglogCounters {
  /** Messages of logged topics appended (including those appended for persistent sessions anyway). */
  logged: number;
  /** Appends of logged messages that failed. */
  failed: number;
  /** Messages refused to their publisher because the log failed (sync mode, or async with ignore_errors = false). */
  refused: number;
  /** Rows the SQL sink (msglog.sql_pool) wrote to redismq_message. */
  sqlRows: number;
  /** Batches the SQL sink could not write (the server refused them); they are tried again. */
  sqlFailed: number;
}

export interface BrokerMetrics extends TrafficMetrics {
  connections: number;
  messagesReceived: number;
  messagesRouted: number;
  messagesDropped: number;
  protocolErrors: number;
  storeErrors: number;
  /** Drains of persistent sessions handed to the native loop (durable_sessions.native_drain). */
  nativeDrains: number;
  /** Deliveries drains sent on the event loop's fast path (ready-made packets from the log). */
  fastDrained: number;
  /** Publishers held to the next event-loop iteration: most deliveries of their message found full queues (mqtt.fair_inflow, session/inflow.ts). */
  inflowHolds: number;
  /** Stored records found lost (damaged or missing store files), as reported in the log. */
  recordsLost: number;
  /** Deliveries dropped by why: queue full, slow QoS 0 consumer, too large for the client (their sum is messagesDropped). */
  readonly dropReasons: { readonly queueFull: number; readonly slowConsumer: number; readonly tooLarge: number };
  /** Event listeners that threw (or rejected), per event name; see hooks/bus.ts. */
  listenerErrors: Record<string, number>;
  /** Requests refused by the ACL file or a limit, per reason. */
  refused: Refusals;
  /** Async event consumers (Broker.consume): queued, handled, failed, dropped, waiting. */
  consumers: Record<string, ConsumerCounters>;
  /** Backend pools by `<type>.<pool>`; their events' queues are in `consumers` as `backend.<type>.<pool>.<event>`. */
  backendPools: Record<string, BackendPoolCounters>;
  /** Backend rules by config key. */
  backendRules: Record<string, BackendRuleCounters>;
  /** The message log's appends (all 0 while msglog.topics is empty). */
  readonly msglog: MsglogCounters;
}
