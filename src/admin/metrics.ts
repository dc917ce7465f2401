/**
 * Prometheus `/metrics` (prom-client, a Registry of the broker's own): every value is read from
 * the broker when scraped (collect callbacks over BrokerMetrics, the sessions and the store) —
 * nothing here runs on the message path. Node's default metrics (event-loop lag, heap, GC) come
 * from prom-client's collectDefaultMetrics. The store exposes sizes (records, bytes) but no
 * append-latency or group-commit batch-size figures yet, so there are no histograms of those.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { activeNativeDrains } from '../session/log-session.js';
import type { AdminView } from './view.js';

type Labels = Record<string, string>;
type Sample = [Labels, number];

export function createMetrics(view: AdminView): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const m = view.b.metrics;

  const gauge = (name: string, help: string, labelNames: string[], read: () => Sample[]): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, v] of read()) this.set(labels, v);
      },
    });
  };
  const counter = (name: string, help: string, labelNames: string[], read: () => Sample[]): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, v] of read()) this.inc(labels, Math.max(0, v));
      },
    });
  };
  const one = (v: () => number) => (): Sample[] => [[{}, v()]];
  const byQos = (a: number[]): Sample[] => a.map((v, q) => [{ qos: String(q) }, v]);

  gauge('stratamq_connections', 'Clients connected now', [], one(() => view.connected().now));
  gauge('stratamq_connections_max', 'Most clients connected at once since start (as sampled)', [], one(() => view.connected().max));
  gauge('stratamq_sessions', 'Sessions by kind (persistent: in the store; memory: expiry 0)', ['kind'], () => {
    const q = view.queues();
    return [
      [{ kind: 'persistent' }, q.persistent],
      [{ kind: 'memory' }, q.sessions - q.persistent],
    ];
  });
  counter('stratamq_messages_received_total', 'PUBLISH messages accepted (clients, wills, the application), by QoS', ['qos'], () => byQos(m.messagesReceivedByQos));
  counter('stratamq_messages_sent_total', 'PUBLISH packets sent to clients through the event loop, by QoS', ['qos'], () => byQos(m.messagesSentByQos));
  counter('stratamq_native_drain_messages_sent_total', 'PUBLISH packets the native drain loop sent (QoS 0 and 1, counted when it hands back)', [], one(() => m.nativeSent));
  counter('stratamq_messages_routed_total', 'Deliveries routed to sessions', [], one(() => m.messagesRouted));
  counter('stratamq_bytes_received_total', 'Bytes read from clients', [], one(() => m.bytesReceived));
  counter('stratamq_bytes_sent_total', 'Bytes written to clients (the native drain loop excepted)', [], one(() => m.bytesSent));
  counter('stratamq_messages_dropped_total', 'Messages dropped, by reason: delivery (session queue full, slow QoS 0 consumer, too large for the client), hook_consumer (an async event consumer queue full)', ['reason'], () => {
    let consumers = 0;
    for (const c of Object.values(m.consumers)) consumers += c.dropped;
    return [
      [{ reason: 'delivery' }, m.messagesDropped],
      [{ reason: 'hook_consumer' }, consumers],
    ];
  });
  gauge('stratamq_queue_depth_sum', 'Deliveries queued over all sessions (a persistent session away: what waits for it in the log)', [], one(() => view.queues().sum));
  gauge('stratamq_queue_depth_max', 'Deliveries queued for the session with the most', [], one(() => view.queues().max));
  gauge('stratamq_inflight', 'Deliveries in flight (sent, not acknowledged) over all sessions', [], one(() => view.queues().inflight));
  gauge('stratamq_retained_messages', 'Retained messages', [], one(() => view.retainedCount()));
  gauge('stratamq_subscriptions', 'Subscriptions over all sessions', [], one(() => view.subscriptionCount()));
  gauge('stratamq_store_bytes', 'Bytes of the embedded store\'s message log on disk', [], () => storeStat(view, 'bytes'));
  gauge('stratamq_store_records', 'Messages in the embedded store\'s log', [], () => storeStat(view, 'records'));
  gauge('stratamq_native_drain_active', 'Native drain loops running now (this process)', [], one(activeNativeDrains));
  counter('stratamq_refused_total', 'Requests refused by the ACL file or a limit, by reason (aclPublish, aclSubscribe, topicLevels, topicLength, subscriptions, connectRate, messageRate, byteRate)', ['reason'], () =>
    Object.entries(m.refused).map(([reason, n]): Sample => [{ reason }, n]),
  );
  counter('stratamq_native_drains_total', 'Drains handed to the native loop', [], one(() => m.nativeDrains));
  counter('stratamq_fast_drained_total', 'Deliveries sent by the event loop\'s drain fast path', [], one(() => m.fastDrained));
  gauge('stratamq_hook_consumer_waiting', 'Events waiting in each async hook consumer\'s queue', ['consumer'], () => Object.entries(m.consumers).map(([name, c]): Sample => [{ consumer: name }, c.waiting]));
  counter('stratamq_hook_consumer_events_total', 'Events per async hook consumer, by outcome', ['consumer', 'outcome'], () =>
    Object.entries(m.consumers).flatMap(([name, c]): Sample[] => (['queued', 'handled', 'failed', 'dropped'] as const).map((o): Sample => [{ consumer: name, outcome: o }, c[o]])),
  );
  counter('stratamq_listener_errors_total', 'Event listeners that threw or rejected, by event', ['event'], () => Object.entries(m.listenerErrors).map(([event, n]): Sample => [{ event }, n]));
  counter('stratamq_protocol_errors_total', 'Clients disconnected for breaking the protocol', [], one(() => m.protocolErrors));
  counter('stratamq_store_errors_total', 'Storage writes that failed', [], one(() => m.storeErrors));
  counter('stratamq_records_lost_total', 'Stored records found lost (damaged or missing store files)', [], one(() => m.recordsLost));
  return registry;
}

function storeStat(view: AdminView, key: 'bytes' | 'records'): Sample[] {
  const d = view.b.durable;
  if (!d) return [];
  try {
    return [[{}, d.store.stats()[key]]];
  } catch {
    return []; // closing
  }
}
