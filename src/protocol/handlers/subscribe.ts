/**
 * SUBSCRIBE → SUBACK (spec §3.8, §3.9), then retained messages per Retain Handling.
 * Each filter is validated, authorized and granted on its own; one bad filter fails only
 * its own entry ([MQTT-3.9.3-1]: one reason code per filter, in order).
 */
import type { ISubscribePacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import type { QoS } from '../../wire/codec.js';
import { ProtocolViolation, RC } from '../../wire/reason-codes.js';
import { topicLevels } from '../../wire/topic.js';
import { validateTopicFilter } from '../../native.js';
import { LogFeed, logStart, parseLogFilter } from '../../msglog/reconsume.js';
import type { SubscriptionOptions } from '../../session/session.js';

const V3_FAILURE = 0x80;

interface Wanted {
  filter: string;
  opts: SubscriptionOptions;
  code: number; // granted QoS or failure reason, decided so far
}

/** The checks of one filter before the gates: its granted QoS so far, or the reason code refusing it. */
function checkFilter(broker: Connection['broker'], filter: string, qos: QoS): number {
  const cfg = broker.config;
  const refused = broker.metrics.refused;
  const shared = filter.startsWith('$share/');
  if (validateTopicFilter(filter)) return RC.TopicFilterInvalid; // [MQTT-4.7.3-?]
  if (shared && !cfg['mqtt.shared_subscription']) return RC.SharedSubscriptionsNotSupported;
  if (!cfg['mqtt.wildcard_subscription'] && /[+#]/.test(shared ? filter.split('/').slice(2).join('/') : filter)) return RC.WildcardSubscriptionsNotSupported;
  if (Buffer.byteLength(filter) > cfg['mqtt.max_topic_length']) {
    refused.topicLength++;
    return RC.TopicFilterInvalid;
  }
  if (topicLevels(filter) - (shared ? 2 : 0) > cfg['mqtt.max_topic_levels']) {
    refused.topicLevels++;
    return RC.TopicFilterInvalid;
  }
  return qos;
}

/**
 * A subscription made for a connected client by the broker (a backend's on_subscribe_lookup,
 * EMQX's proxy subscription): the checks SUBSCRIBE gets — the filter, `authorizeSubscribe` (ACL),
 * `mqtt.max_subscriptions` — then the subscription, recorded durably for a persistent session,
 * and the retained messages it matches. No SUBACK: the client did not ask. Resolves with the
 * granted QoS or the v5 reason code refusing it.
 */
export async function proxySubscribe(conn: Connection, filter: string, wantQos: QoS): Promise<number> {
  const broker = conn.broker;
  const cfg = broker.config;
  const opts: SubscriptionOptions = { qos: Math.min(wantQos, cfg['mqtt.max_qos']) as QoS, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined };
  const code = checkFilter(broker, filter, opts.qos);
  if (code >= 0x80) return code;
  const a = await broker.gates.authorizeSubscribe(conn, filter, opts.qos);
  const session = conn.session;
  if (!session || conn.state === 'closed') return -1;
  if (a === false || (typeof a === 'number' && a >= 0x80)) return a === false ? RC.NotAuthorized : a;
  const max = cfg['mqtt.max_subscriptions'];
  if (max > 0 && session.subscriptions.size >= max && !session.subscriptions.has(filter)) {
    broker.metrics.refused.subscriptions++;
    return RC.QuotaExceeded;
  }
  const qos = Math.min(opts.qos, typeof a === 'number' ? a : opts.qos) as QoS;
  const writes: Promise<void>[] = [];
  broker.router.subscribe(session, filter, { ...opts, qos }, writes);
  try {
    await Promise.all(writes);
  } catch (e) {
    broker.onStoreError(conn.clientId, e as Error);
    if (session.subscriptions.has(filter)) broker.router.unsubscribe(session, filter);
    return RC.UnspecifiedError;
  }
  if (!filter.startsWith('$share/') && conn.session === session) broker.router.deliverRetained(session, filter, qos, undefined);
  return qos;
}

export function handleSubscribe(conn: Connection, p: ISubscribePacket): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const session = conn.session;
  if (!session) return;
  const v5 = conn.protocolVersion === 5;
  // [MQTT-2.2.1-3] SUBSCRIBE carries a non-zero Packet Identifier.
  if (!p.messageId) throw new ProtocolViolation(RC.ProtocolError, 'SUBSCRIBE with packet identifier 0');
  // [MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (v5) at least one filter; mqtt-packet lets an empty one through.
  if (p.subscriptions.length === 0) throw new ProtocolViolation(RC.ProtocolError, 'SUBSCRIBE without topic filters');
  const subId = p.properties?.subscriptionIdentifier;
  if (subId === 0) throw new ProtocolViolation(RC.ProtocolError, 'Subscription Identifier 0'); // [MQTT-3.8.2-?] 1..268435455

  const refused = broker.metrics.refused;
  const wanted: Wanted[] = p.subscriptions.map((s) => {
    const opts: SubscriptionOptions = {
      qos: Math.min(s.qos, cfg['mqtt.max_qos']) as QoS,
      noLocal: s.nl ?? false,
      retainAsPublished: s.rap ?? false,
      retainHandling: (s.rh ?? 0) as 0 | 1 | 2,
      subscriptionId: subId,
    };
    if (s.topic.startsWith('$share/') && opts.noLocal && !validateTopicFilter(s.topic) && cfg['mqtt.shared_subscription']) throw new ProtocolViolation(RC.ProtocolError, 'No Local on a shared subscription'); // [MQTT-3.8.3-4]
    return { filter: s.topic, opts, code: checkFilter(broker, s.topic, opts.qos) };
  });

  // A `$log/<from>/<filter>` subscription (msglog/reconsume.ts) reads <filter>'s topics: the gates are asked for those.
  const answers = wanted.map((w) => (w.code < 0x80 ? broker.gates.authorizeSubscribe(conn, parseLogFilter(w.filter)?.inner || w.filter, w.opts.qos) : w.code));
  const anyAsync = answers.some((a) => a instanceof Promise);
  conn.gate(anyAsync ? Promise.all(answers) : (answers as (QoS | false | number)[]), (results) => {
    if (!conn.session) return;
    const retainedToSend: { filter: string; qos: QoS; rap: boolean }[] = [];
    const logFeeds: LogFeed[] = [];
    const writes: Promise<void>[] = [];
    const granted = wanted.map((w, i) => {
      if (w.code >= 0x80) return v5 ? w.code : V3_FAILURE;
      const a = results[i];
      if (a === false || (typeof a === 'number' && a >= 0x80)) return v5 ? (a === false ? RC.NotAuthorized : a) : V3_FAILURE;
      const max = cfg['mqtt.max_subscriptions'];
      if (max > 0 && session.subscriptions.size >= max && !session.subscriptions.has(w.filter)) {
        refused.subscriptions++;
        return v5 ? RC.QuotaExceeded : V3_FAILURE;
      }
      const qos = Math.min(w.opts.qos, typeof a === 'number' ? a : w.opts.qos) as QoS;
      const log = parseLogFilter(w.filter);
      if (log) {
        // Re-consume: a reader of the message log from <from>, started after the SUBACK; not a subscription of the trie.
        const store = broker.logStore();
        if (!store) return v5 ? RC.ImplementationSpecificError : V3_FAILURE;
        let start: number[];
        try {
          start = logStart(store, log.from, log.inner);
        } catch (e) {
          broker.onClientError(conn, new Error(`SUBSCRIBE ${w.filter}: ${(e as Error).message}`));
          return v5 ? RC.TopicFilterInvalid : V3_FAILURE;
        }
        logFeeds.push(new LogFeed(store, session, conn, w.filter, log.inner, start, qos, subId !== undefined ? [subId] : undefined, broker.router.readDenied(conn, log.inner)));
        return qos;
      }
      const opts = { ...w.opts, qos };
      const existed = broker.router.subscribe(session, w.filter, opts, writes);
      const shared = w.filter.startsWith('$share/');
      // [MQTT-3.3.1-10]/[MQTT-3.3.1-11]: retained per Retain Handling; none for shared subscriptions.
      if (!shared && (opts.retainHandling === 0 || (opts.retainHandling === 1 && !existed))) {
        retainedToSend.push({ filter: w.filter, qos, rap: opts.retainAsPublished });
      }
      return qos;
    });
    const suback = (): void => {
      conn.send({ cmd: 'suback', messageId: p.messageId ?? 0, granted });
      for (const r of retainedToSend) broker.router.deliverRetained(session, r.filter, r.qos, subId);
      for (const f of logFeeds) f.start();
    };
    if (writes.length === 0) {
      suback();
      return;
    }
    // A persistent session's SUBACK waits until its subscriptions are durable; later packets wait too.
    conn.gate(
      Promise.all(writes).then(
        () => true,
        (e: unknown) => {
          broker.onStoreError(conn.clientId, e as Error);
          return false;
        },
      ),
      (ok) => {
        if (ok) {
          suback();
          return;
        }
        // Not recorded: refuse every filter of this SUBSCRIBE and forget them again.
        for (const w of wanted) if (session.subscriptions.has(w.filter)) broker.router.unsubscribe(session, w.filter);
        conn.send({ cmd: 'suback', messageId: p.messageId ?? 0, granted: granted.map(() => (v5 ? RC.UnspecifiedError : V3_FAILURE)) });
      },
    );
  });
}
