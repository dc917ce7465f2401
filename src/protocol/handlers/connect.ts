/**
 * CONNECT → CONNACK (spec §3.1, §3.2). Checks run in the spec's order: protocol version
 * (done by the decoder), client identifier, will, limits, authentication; then the session
 * is attached (taking over any live connection with the same id) and CONNACK goes out
 * before anything the resumed session has queued.
 */
import { crypto } from '../../crypto.js';
import type { IConnackPacket, IConnectPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import type { GateAnswer } from '../../hooks/index.js';
import type { AuthResult } from '../../auth/authenticator.js';
import { createMessage } from '../../wire/message.js';
import type { QoS } from '../../wire/codec.js';
import { connackCodeV3, RC } from '../../wire/reason-codes.js';
import { validateTopicName } from '../../native.js';
import { resumeSession } from '../../session/delivery.js';
import { TokenBucket } from '../rate.js';
import { OutboundAliases } from '../../session/topic-aliases.js';

export function refuseConnect(conn: Connection, rc: number, reason: string): void {
  const connack: IConnackPacket =
    conn.protocolVersion === 5
      ? { cmd: 'connack', sessionPresent: false, reasonCode: rc, properties: { reasonString: reason.slice(0, 200) } }
      : { cmd: 'connack', sessionPresent: false, returnCode: connackCodeV3(rc) };
  conn.send(connack);
  conn.broker.onClientError(conn, new Error(`CONNECT refused (0x${rc.toString(16)}): ${reason}`));
  conn.close(`CONNECT refused: ${reason}`);
}

export function handleConnect(conn: Connection, p: IConnectPacket): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const version = p.protocolVersion ?? 4;
  conn.protocolVersion = version;
  conn.username = p.username;

  if (p.properties?.authenticationMethod !== undefined) {
    // Enhanced authentication is not offered ([MQTT-4.12.0-1]: 0x8C Bad authentication method).
    return refuseConnect(conn, 0x8c, 'enhanced authentication is not supported');
  }

  let clientId = p.clientId;
  let assigned: string | undefined;
  if (clientId === '') {
    // [MQTT-3.1.3-7]/[MQTT-3.1.3-8]: 3.1.1 allows an empty id only with CleanSession=1; 3.1 never.
    if (version === 3 || (version === 4 && !p.clean)) {
      return refuseConnect(conn, RC.ClientIdentifierNotValid, 'empty client id requires clean session');
    }
    clientId = `strata-${crypto().randomBytes(8).toString('hex')}`; // [MQTT-3.1.3-6]
    if (version === 5) assigned = clientId;
  }
  if (Buffer.byteLength(clientId) > cfg['mqtt.max_clientid_len']) {
    return refuseConnect(conn, RC.ClientIdentifierNotValid, 'client id too long');
  }
  conn.clientId = clientId;

  if (p.will) {
    const bad = validateTopicName(p.will.topic);
    if (bad) return refuseConnect(conn, RC.TopicNameInvalid, `will topic: ${bad}`);
    const wq = (p.will.qos ?? 0) as QoS;
    if (wq > cfg['mqtt.max_qos']) return refuseConnect(conn, RC.QoSNotSupported, 'will QoS not supported'); // [MQTT-3.2.2-12]
    if (p.will.retain && !cfg['mqtt.retain_available']) return refuseConnect(conn, RC.RetainNotSupported, 'retain not available'); // [MQTT-3.2.2-13]
    const payload = typeof p.will.payload === 'string' ? Buffer.from(p.will.payload) : p.will.payload;
    const { willDelayInterval, ...props } = p.will.properties ?? {};
    conn.will = {
      msg: createMessage(p.will.topic, payload, wq, p.will.retain ?? false, Object.keys(props).length ? props : undefined, clientId),
      delaySeconds: version === 5 ? (willDelayInterval ?? 0) : 0,
    };
  }

  if (broker.connectedCount >= cfg['mqtt.max_connections']) {
    return refuseConnect(conn, RC.QuotaExceeded, 'connection limit reached');
  }
  if (broker.connectRate !== null && !broker.connectRate.allow(conn.remoteAddress)) {
    broker.metrics.refused.connectRate++;
    return refuseConnect(conn, RC.ConnectionRateExceeded, `more than ${cfg['limits.connect_rate']} connections per second from ${conn.remoteAddress}`);
  }
  conn.state = 'authenticating';
  let answer: AuthAnswer | Promise<AuthAnswer>;
  try {
    answer = authenticate(conn, p);
  } catch (e) {
    answer = { ok: false, rc: RC.UnspecifiedError, reason: `authenticate hook failed: ${(e as Error).message}` };
  }
  const settled = answer instanceof Promise ? answer.catch((e: unknown): AuthAnswer => ({ ok: false, rc: RC.UnspecifiedError, reason: `authenticate hook failed: ${String(e)}` })) : answer;
  conn.gate(settled, (a) => {
    if (!a.ok) return refuseConnect(conn, a.rc, a.reason);
    acceptConnect(conn, p, assigned);
    if (a.expiresAt !== undefined && conn.state === 'connected') conn.expireAt(a.expiresAt);
  });
}

type AuthAnswer = { ok: true; expiresAt?: number | undefined } | { ok: false; rc: number; reason: string };

/**
 * The authentication chain: the password file / JWT checks (auth/authenticator.ts), then the
 * embedding application's `authenticate` gate. Synchronous when both answer at once.
 */
function authenticate(conn: Connection, p: IConnectPacket): AuthAnswer | Promise<AuthAnswer> {
  const broker = conn.broker;
  const then = (r: AuthResult): AuthAnswer | Promise<AuthAnswer> => {
    if (!r.ok) return { ok: false, rc: r.reasonCode, reason: r.reason };
    if (r.username !== undefined) conn.username = r.username; // the user a token names (ACLs apply to it)
    const gate = broker.gates.authenticate(conn, p.username, p.password);
    const judge = (ok: GateAnswer): AuthAnswer =>
      ok === true ? { ok: true, expiresAt: r.expiresAt } : { ok: false, rc: typeof ok === 'number' ? ok : p.username === undefined ? RC.NotAuthorized : RC.BadUserNameOrPassword, reason: 'authentication failed' };
    return gate instanceof Promise ? gate.then(judge) : judge(gate);
  };
  const first = broker.authenticator.authenticate(conn, p.username, p.password);
  return first instanceof Promise ? first.then(then) : then(first);
}

function acceptConnect(conn: Connection, p: IConnectPacket, assigned: string | undefined): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const v5 = conn.protocolVersion === 5;
  const props = p.properties ?? {};

  let expiry: number;
  if (v5) expiry = Math.min(props.sessionExpiryInterval ?? 0, cfg['mqtt.max_session_expiry_interval']);
  else expiry = p.clean ? 0 : cfg['mqtt.session_expiry_interval'];

  conn.window = Math.min(props.receiveMaximum ?? 65535, cfg['mqtt.max_inflight']);
  if (props.maximumPacketSize !== undefined) conn.clientMaxPacketSize = props.maximumPacketSize;
  conn.topicAliasMaximum = v5 ? cfg['mqtt.max_topic_alias'] : 0;
  // Outbound aliases up to what the client accepts (mqtt.max_outbound_topic_alias caps it; 0 = never).
  const outMax = v5 ? Math.min(props.topicAliasMaximum ?? 0, cfg['mqtt.max_outbound_topic_alias']) : 0;
  if (outMax > 0) conn.outAliases = new OutboundAliases(outMax);
  if (cfg['limits.messages_rate'] > 0) conn.inMessages = new TokenBucket(cfg['limits.messages_rate']);
  if (cfg['limits.bytes_rate'] > 0) conn.inBytes = new TokenBucket(cfg['limits.bytes_rate']);

  const { session, sessionPresent, connackAfter } = broker.lifecycle.attach(conn, p.clean !== false, expiry);
  conn.state = 'connected';

  let keepalive = p.keepalive ?? 0;
  const maxKeepalive = cfg['mqtt.max_keepalive'];
  let serverKeepAlive: number | undefined;
  if (v5 && maxKeepalive > 0 && (keepalive === 0 || keepalive > maxKeepalive)) {
    keepalive = maxKeepalive; // [MQTT-3.2.2-21] the client must use the Server Keep Alive
    serverKeepAlive = keepalive;
  }

  const connack: IConnackPacket = { cmd: 'connack', sessionPresent };
  if (v5) {
    connack.reasonCode = RC.Success;
    connack.properties = {
      receiveMaximum: cfg['mqtt.receive_maximum'],
      maximumPacketSize: cfg['mqtt.max_packet_size'],
      topicAliasMaximum: cfg['mqtt.max_topic_alias'],
      retainAvailable: cfg['mqtt.retain_available'],
      wildcardSubscriptionAvailable: cfg['mqtt.wildcard_subscription'],
      sharedSubscriptionAvailable: cfg['mqtt.shared_subscription'],
      subscriptionIdentifiersAvailable: true,
    };
    if (cfg['mqtt.max_qos'] < 2) connack.properties.maximumQoS = cfg['mqtt.max_qos'];
    if (expiry !== (props.sessionExpiryInterval ?? 0)) connack.properties.sessionExpiryInterval = expiry;
    if (assigned !== undefined) connack.properties.assignedClientIdentifier = assigned;
    if (serverKeepAlive !== undefined) connack.properties.serverKeepAlive = serverKeepAlive;
  } else {
    connack.returnCode = 0;
  }
  // CONNACK (and all written after it) waits for what it tells to be durable (Broker.attachSession);
  // should that write fail, the client is closed without CONNACK (the store error is logged).
  if (connackAfter !== null) {
    conn.writeAfter(connackAfter, () => conn.send(connack));
    connackAfter.catch(() => conn.close('session record failed'));
  } else conn.send(connack);
  conn.startKeepalive(keepalive);
  broker.lifecycle.connected(conn, sessionPresent);
  // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (DUP) and PUBREL, then queued messages.
  resumeSession(conn, session);
}
