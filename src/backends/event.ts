/**
 * One event as rules see it: who, which topic, which message, and the placeholder values
 * (EMQX 4's names) — built once per event and pool from the hook bus's snapshots. And the host:
 * what the broker does for a rule that reads from a backend (proxy subscriptions, retained
 * messages found there), implemented by the composition root.
 */
import type { ClientInfo, MessageInfo } from '../hooks/index.js';
import type { DurableStore } from '../native.js';
import type { DeliveryCounts } from '../persistence/embedded/delivery-counts.js';
import type { QoS } from '../wire/codec.js';
import type { BackendEvent } from './config.js';
import type { MessageIds } from './msgid.js';
import type { EventValues } from './placeholders.js';

export interface EventData {
  readonly event: BackendEvent;
  /** The client the event is about (the publisher for message.publish; the receiver for delivered/acked). */
  readonly clientId: string;
  readonly client: ClientInfo | null;
  /** The message's topic, or the filter subscribed / unsubscribed; null for client events. */
  readonly topic: string | null;
  readonly msg: MessageInfo | null;
  readonly qos: QoS | null;
  /** When the event happened (ms since epoch): the message's acceptance, else now. */
  readonly at: number;
  readonly node: string;
  /** The message's EMQX-style id (made on first use; the same in each event of one message). */
  msgid(): string;
  /** The node's message ids (a fetched message is given back its stored id). */
  readonly ids: MessageIds;
  values(): EventValues;
}

/** A message a backend holds, to be delivered (retained, or fetched for an offline subscriber). */
export interface StoredMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly publisher: string;
  readonly receivedAt: number;
}

/** What rules ask the broker to do (broker.ts implements it). */
export interface BackendHost {
  /**
   * Subscribe a connected client to `filter` as if it had sent SUBSCRIBE (the checks SUBACK
   * makes: filter, ACL, limits), retained messages included. Resolves with the granted QoS, a
   * reason code >= 0x80 when refused, or -1 when the client is no longer connected.
   */
  subscribe(clientId: string, filter: string, qos: QoS): Promise<number>;
  /**
   * Deliver a retained message a backend holds to a connected client subscribed with `filter`,
   * unless the broker's own retained store has that topic (it sent that one already). Returns
   * whether it was delivered.
   */
  deliverRetained(clientId: string, filter: string, msg: StoredMessage): boolean;
  /**
   * Deliver a message a backend stored (offline fetch) to a connected client's subscription
   * `filter`, as a normal (not retained) PUBLISH. Returns whether it was delivered.
   */
  deliverStored(clientId: string, filter: string, msg: StoredMessage): boolean;
  /** The embedded store the message log is in (its SQL sink reads it); null without one. */
  logStore(): DurableStore | null;
  /** The message log's delivery counts (the SQL sink's status), null while they are not kept. */
  logCounts(): DeliveryCounts | null;
}

export function eventData(event: BackendEvent, args: unknown[], node: string, ids: MessageIds): EventData {
  let client: ClientInfo | null = null;
  let clientId = '';
  let topic: string | null = null;
  let msg: MessageInfo | null = null;
  let qos: QoS | null = null;
  switch (event) {
    case 'client.connected':
    case 'client.disconnected':
      client = args[0] as ClientInfo;
      clientId = client.clientId;
      break;
    case 'session.subscribed':
      client = args[0] as ClientInfo;
      clientId = client.clientId;
      topic = args[1] as string;
      qos = args[2] as QoS;
      break;
    case 'session.unsubscribed':
      client = args[0] as ClientInfo;
      clientId = client.clientId;
      topic = args[1] as string;
      break;
    case 'message.publish':
      client = args[0] as ClientInfo | null;
      msg = args[1] as MessageInfo;
      clientId = msg.publisher;
      break;
    case 'message.delivered':
      clientId = args[0] as string;
      msg = args[1] as MessageInfo;
      qos = args[2] as QoS;
      break;
    case 'message.acked':
      clientId = args[0] as string;
      msg = args[1] as MessageInfo;
      break;
  }
  if (msg) {
    topic = msg.topic;
    qos ??= msg.qos;
  }
  const at = msg ? msg.receivedAt : Date.now();
  let id: string | undefined;
  const m = msg;
  const msgid = (): string => (id ??= m ? ids.of(m) : '');
  return {
    event,
    clientId,
    client,
    topic,
    msg,
    qos,
    at,
    node,
    msgid,
    ids,
    values: () => ({
      clientid: clientId,
      username: client?.username,
      peerhost: client ? hostOf(client.remoteAddress) : undefined,
      topic: topic ?? undefined,
      payload: msg?.payload,
      qos: qos ?? undefined,
      msgid: msg ? msgid() : undefined,
      node,
      timestamp: at,
    }),
  };
}

/** The address without its port (`127.0.0.1:5312` → `127.0.0.1`, `::1:5312` → `::1`). */
function hostOf(remote: string): string {
  const i = remote.lastIndexOf(':');
  return i > 0 && /^\d+$/.test(remote.slice(i + 1)) ? remote.slice(0, i) : remote;
}
