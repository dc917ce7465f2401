/**
 * The hook bus. Two kinds of hooks, each with a permissive default and a fixed place in the
 * pipeline (STYLE habit 13):
 * - gates, asked before the broker acts: authenticate (CONNECT), authorizePublish (every
 *   inbound PUBLISH and will), authorizeSubscribe (each SUBSCRIBE filter). A gate may
 *   answer synchronously or with a Promise; the fast path never awaits a sync answer.
 * - events, told after the fact (SPEC D1 names), emitted on the broker: `client.connected`,
 *   `client.disconnected`, `session.subscribed`, `session.unsubscribed`, `message.publish`,
 *   `message.delivered`, `message.acked`. Backends (Redis/SQL rules) attach here.
 */
import type { QoS } from '../wire/codec.js';
import type { Message } from '../wire/message.js';

export interface ClientInfo {
  readonly clientId: string;
  readonly username: string | undefined;
  readonly remoteAddress: string;
  readonly protocolVersion: 3 | 4 | 5;
}

/** `true`/`false`, or a v5 reason code (>= 0x80) to refuse with. */
export type GateAnswer = boolean | number;
type MaybePromise<T> = T | Promise<T>;

export interface Gates {
  authenticate(client: ClientInfo, username: string | undefined, password: Buffer | undefined): MaybePromise<GateAnswer>;
  authorizePublish(client: ClientInfo, msg: Message): MaybePromise<GateAnswer>;
  /** Return the QoS to grant (<= requested), false, or a reason code to refuse. */
  authorizeSubscribe(client: ClientInfo, filter: string, qos: QoS): MaybePromise<QoS | false | number>;
}

export const permissiveGates: Gates = {
  authenticate: () => true,
  authorizePublish: () => true,
  authorizeSubscribe: (_c, _f, qos) => qos,
};

export interface BrokerEvents {
  'client.connected': [client: ClientInfo, sessionPresent: boolean];
  'client.disconnected': [client: ClientInfo, reason: string];
  'session.subscribed': [client: ClientInfo, filter: string, qos: QoS];
  'session.unsubscribed': [client: ClientInfo, filter: string];
  'message.publish': [client: ClientInfo | null, msg: Message];
  'message.delivered': [clientId: string, msg: Message, qos: QoS];
  'message.acked': [clientId: string, msg: Message];
  /** A client broke the protocol or sent bad bytes; it was disconnected. */
  'client.error': [client: ClientInfo | null, error: Error];
  'listening': [addresses: ListenAddresses];
  'closed': [];
}

export interface ListenAddresses {
  tcp?: number;
  ws?: number;
  tls?: number;
  wss?: number;
}
