/** What the message log's API (admin/log-routes.ts) needs from a running broker (broker.ts has it all). */
import type { DurableStore } from '../native.js';
import type { MsglogConfig } from './config.js';
import type { Replays, Republisher } from './replay.js';

export interface LogSource {
  readonly msglog: MsglogConfig;
  readonly replays: Replays;
  /** The embedded store, null without one. */
  logStore(): DurableStore | null;
  /** The delivery counts, null while they are not kept (a query writes what is counted first). */
  logCounts(): { settle(): Promise<void> } | null;
  /** Re-publishes logged messages (Broker.republisher). */
  readonly republisher: Republisher;
}
