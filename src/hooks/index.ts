/**
 * The hook bus. Two kinds of hooks, each with a permissive default and a fixed place in the
 * pipeline (STYLE habit 13):
 * - gates, asked before the broker acts: authenticate (CONNECT), authorizePublish (every
 *   inbound PUBLISH and will), authorizeSubscribe (each SUBSCRIBE filter). A gate may
 *   answer synchronously or with a Promise; the fast path never awaits a sync answer.
 * - events, told after the fact (SPEC D1 names), emitted on the broker: `client.connected`,
 *   `client.disconnected`, `session.subscribed`, `session.unsubscribed`, `message.publish`,
 *   `message.delivered`, `message.acked`. Backends (Redis/SQL rules) attach here. Events carry
 *   snapshots — plain data, frozen, never the live connection or the broker's message with its
 *   wire-encoding cache — so a listener (or an async consumer that reads them later, bus.ts)
 *   sees what was true when the event fired and cannot reach into the broker.
 */
import type { PublishProperties, QoS } from '../wire/codec.js';
import type { Message } from '../wire/message.js';

export interface ClientInfo {
  readonly clientId: string;
  readonly username: string | undefined;
  readonly remoteAddress: string;
  readonly protocolVersion: 3 | 4 | 5;
}

/** A message as events carry it: plain data. */
export interface MessageInfo {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  readonly properties: PublishProperties | undefined;
  /** Publishing client id ('' for messages the broker makes itself). */
  readonly publisher: string;
  /** Milliseconds since epoch when the broker accepted it. */
  readonly receivedAt: number;
  /** Absolute expiry (ms since epoch); 0 = never. */
  readonly expiresAt: number;
}

/** The client as it is now, as plain data. */
export function clientSnapshot(c: ClientInfo): ClientInfo {
  return Object.freeze({ clientId: c.clientId, username: c.username, remoteAddress: c.remoteAddress, protocolVersion: c.protocolVersion });
}

/** The message as plain data (its payload is shared: the broker never changes a payload). */
export function messageSnapshot(m: Message | MessageInfo): MessageInfo {
  return Object.freeze({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties, publisher: m.publisher, receivedAt: m.receivedAt, expiresAt: m.expiresAt });
}

/** `true`/`false`, or a v5 reason code (>= 0x80) to refuse with. */
/** Requests refused by the ACL or a limit, per reason (Broker.metrics.refused). */
export interface Refusals {
  aclPublish: number;
  aclSubscribe: number;
  topicLevels: number;
  topicLength: number;
  subscriptions: number;
  connectRate: number;
  messageRate: number;
  byteRate: number;
}

export function noRefusals(): Refusals {
  return { aclPublish: 0, aclSubscribe: 0, topicLevels: 0, topicLength: 0, subscriptions: 0, connectRate: 0, messageRate: 0, byteRate: 0 };
}

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
  'message.publish': [client: ClientInfo | null, msg: MessageInfo];
  'message.delivered': [clientId: string, msg: MessageInfo, qos: QoS];
  'message.acked': [clientId: string, msg: MessageInfo];
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
  /** The admin HTTP API (admin.port). */
  admin?: number;
}
