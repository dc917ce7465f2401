/**
 * What a broker is built from: the composition root's options, apart so broker.ts holds only
 * the wiring. What it counts is BrokerMetrics (hooks/metrics.ts).
 */
import type { ConfigInput } from './config.js';
import type { Gates } from './hooks/index.js';
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
