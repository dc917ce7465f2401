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
import type { SubscriptionOptions } from '../../session/session.js';

const V3_FAILURE = 0x80;

interface Wanted {
  filter: string;
  opts: SubscriptionOptions;
  code: number; // granted QoS or failure reason, decided so far
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
    const shared = s.topic.startsWith('$share/');
    let code: number = opts.qos;
    const bad = validateTopicFilter(s.topic);
    if (bad) code = RC.TopicFilterInvalid; // [MQTT-4.7.3-?]
    else if (shared && !cfg['mqtt.shared_subscription']) code = RC.SharedSubscriptionsNotSupported;
    else if (shared && opts.noLocal) throw new ProtocolViolation(RC.ProtocolError, 'No Local on a shared subscription'); // [MQTT-3.8.3-4]
    else if (!cfg['mqtt.wildcard_subscription'] && /[+#]/.test(shared ? s.topic.split('/').slice(2).join('/') : s.topic)) code = RC.WildcardSubscriptionsNotSupported;
    else if (Buffer.byteLength(s.topic) > cfg['mqtt.max_topic_length']) {
      refused.topicLength++;
      code = RC.TopicFilterInvalid;
    } else if (topicLevels(s.topic) - (shared ? 2 : 0) > cfg['mqtt.max_topic_levels']) {
      refused.topicLevels++;
      code = RC.TopicFilterInvalid;
    }
    return { filter: s.topic, opts, code };
  });

  const answers = wanted.map((w) => (w.code < 0x80 ? broker.gates.authorizeSubscribe(conn, w.filter, w.opts.qos) : w.code));
  const anyAsync = answers.some((a) => a instanceof Promise);
  conn.gate(anyAsync ? Promise.all(answers) : (answers as (QoS | false | number)[]), (results) => {
    if (!conn.session) return;
    const retainedToSend: { filter: string; qos: QoS; rap: boolean }[] = [];
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
