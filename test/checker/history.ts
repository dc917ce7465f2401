/**
 * What the checker saw: the events the driver records, in the order it saw them, and the only
 * input of the model (model.ts). Times `t` are milliseconds since the run started, strictly
 * increasing, so "before" means "seen before". Messages are named by their payload: every
 * payload the checker sends is unique (`c2#17`, a will `w:5`), so a delivery says which
 * message it is. An empty payload clears a retained message and names nothing.
 */

export type QoS = 0 | 1 | 2;
export type Version = 4 | 5;

export interface WillSpec {
  topic: string;
  qos: QoS;
  /** v5 Will Delay Interval in seconds (0 for 3.1.1). */
  delay: number;
  /** The will's payload (its name). */
  msg: string;
}

export type Event =
  /** The client sent CONNECT on a new connection `conn` (a number never reused in a run). */
  | { k: 'connect'; t: number; conn: number; client: string; v: Version; clean: boolean; expiry: number | null; will: WillSpec | null }
  | { k: 'connack'; t: number; conn: number; present: boolean; rc: number }
  /** The client sent DISCONNECT (reason 0 or 0x04 with will; v5 may change the Session Expiry). */
  | { k: 'disconnect'; t: number; conn: number; reason: number; expiry: number | null }
  /** The client closed the socket without DISCONNECT (or gave up waiting). */
  | { k: 'abort'; t: number; conn: number }
  /** The socket closed (whoever closed it). */
  | { k: 'closed'; t: number; conn: number }
  /** The broker sent DISCONNECT (v5), e.g. 0x8E session taken over, 0x8B shutting down. */
  | { k: 'server-disconnect'; t: number; conn: number; rc: number }
  /** The client sent PUBLISH (dup: a resend of a message sent before). */
  | { k: 'publish'; t: number; conn: number; id: number; msg: string; topic: string; qos: QoS; retain: boolean; expiry: number | null; dup: boolean }
  /** PUBACK (QoS 1) or PUBREC (QoS 2) for the client's PUBLISH of `msg`. */
  | { k: 'acked'; t: number; conn: number; id: number; msg: string; rc: number }
  /** PUBCOMP: the QoS 2 flow of `msg` is over. */
  | { k: 'completed'; t: number; conn: number; id: number; msg: string }
  | { k: 'subscribe'; t: number; conn: number; id: number; subs: { filter: string; qos: QoS; nl: boolean }[] }
  | { k: 'suback'; t: number; conn: number; id: number; granted: number[] }
  | { k: 'unsubscribe'; t: number; conn: number; id: number; filters: string[] }
  | { k: 'unsuback'; t: number; conn: number; id: number }
  /** A PUBLISH from the broker (the client answers PUBACK / PUBREC at once). */
  | { k: 'deliver'; t: number; conn: number; id: number; msg: string; topic: string; qos: QoS; retain: boolean; dup: boolean }
  /** PUBREL from the broker (the client answers PUBCOMP): the inbound QoS 2 id is free again. */
  | { k: 'pubrel'; t: number; conn: number; id: number }
  /** The checker is about to stop the broker (SIGTERM) or kill it (SIGKILL). */
  | { k: 'broker-stop'; t: number; how: 'term' | 'kill' }
  | { k: 'broker-start'; t: number }
  /** Nothing arrived on `conn` for a while after the checker started waiting at `since`. */
  | { k: 'quiet'; t: number; conn: number; since: number };

export type EventKind = Event['k'];
