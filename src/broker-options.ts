/**
 * What a broker is built from (BrokerOptions) and what it counts (BrokerMetrics): the
 * composition root's types, apart so broker.ts holds only the wiring.
 */
import type { TrafficMetrics } from './admin/index.js';
import type { ConfigInput } from './config.js';
import type { ConsumerCounters } from './hooks/bus.js';
import type { Gates, Refusals } from './hooks/index.js';
import type { Logger } from './log.js';
import type { RetainedStore } from './routing/retained.js';
import type { SessionStore } from './session/store.js';

export interface BrokerOptions {
  /** Dotted config keys (see config.ts / README), applied over file and environment. */
  config?: ConfigInput;
  /** Path of a `key = value` config file. */
  configFile?: string;
  /** Environment to read STRATA_* overrides from (the CLI passes process.env). */
  env?: NodeJS.ProcessEnv;
  /** Shorthands for listener.tcp.port / listener.tcp.host / listener.ws.port (null disables WS). */
  port?: number;
  host?: string;
  wsPort?: number | null;
  dataDir?: string;
  logger?: Logger;
  /** Authentication / authorization gates; each defaults to allow. */
  gates?: Partial<Gates>;
  sessionStore?: SessionStore;
  retainedStore?: RetainedStore;
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
  /** Stored records found lost (damaged or missing store files), as reported in the log. */
  recordsLost: number;
  /** Event listeners that threw (or rejected), per event name; see hooks/bus.ts. */
  listenerErrors: Record<string, number>;
  /** Requests refused by the ACL file or a limit, per reason. */
  refused: Refusals;
  /** Async event consumers (Broker.consume): queued, handled, failed, dropped, waiting. */
  consumers: Record<string, ConsumerCounters>;
}
