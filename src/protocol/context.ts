/**
 * The broker as protocol/ sees it: what a connection and its packet handlers use. broker.ts
 * builds it; nothing here imports broker.ts.
 */
import type { Config } from '../config.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { ClientInfo, Gates, Refusals } from '../hooks/index.js';
import type { ConnectRate } from './rate.js';
import type { SessionLifecycle } from '../lifecycle/sessions.js';
import type { Router } from '../routing/router.js';
import type { Persistence } from '../persistence/registries.js';
import type { MsglogConfig } from '../msglog/config.js';
import type { DurableStore } from '../native.js';
import type { Inflow } from '../session/inflow.js';

export interface ProtocolContext {
  readonly config: Config;
  /** Publishers held to the pace of the sessions they queue for (mqtt.fair_inflow; session/inflow.ts); null when off. */
  readonly inflow: Inflow | null;
  readonly gates: Gates;
  /** The password file / JWT checks, before the gates' authenticate (auth/authenticator.ts). */
  readonly authenticator: Authenticator;
  readonly router: Router;
  readonly lifecycle: SessionLifecycle;
  /** Where broker state is stored, when persistence is on. */
  readonly store: Persistence | null;
  /** The message log's configuration; its store (`$log/` subscriptions read it), null without one. */
  readonly msglog: MsglogConfig;
  logStore(): DurableStore | null;
  /** Requests refused by the ACL or a limit, per reason; bytes read from and written to clients' streams (the native drain loop's writes excepted). */
  readonly metrics: { readonly refused: Refusals; bytesReceived: number; bytesSent: number };
  /** limits.connect_rate per source address; null when off. */
  readonly connectRate: ConnectRate | null;
  /** Clients connected now (from CONNACK until their connection closed). */
  readonly connectedCount: number;
  /** A client broke the protocol or sent bad bytes: counted, logged, told to `client.error` listeners. */
  onClientError(client: ClientInfo & { readonly state: string }, err: Error): void;
  /** A storage write failed: logged once per failure, counted; the broker keeps serving. */
  onStoreError(clientId: string | undefined, err: Error): void;
}
