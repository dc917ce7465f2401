/**
 * Prometheus `/metrics` (prom-client, a Registry of the broker's own): every value is read from
 * the broker when scraped (collect callbacks over BrokerMetrics, the sessions and the store) —
 * nothing here runs on the message path. Node's default metrics (event-loop lag, heap, GC) come
 * from prom-client's collectDefaultMetrics. Group-commit batch sizes and append / metadata
 * commit latencies are histograms the store keeps per batch (persistence/embedded/commit-stats.ts).
 */
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';
import type { Histogram } from '../persistence/embedded/commit-stats.js';
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
  counter('stratamq_messages_dropped_total', 'Messages dropped, by reason: queue_full (a session queue at its limit), slow_consumer (QoS 0 past the write high watermark), too_large (over the client\'s Maximum Packet Size), hook_consumer (an async event consumer queue full)', ['reason'], () => {
    let consumers = 0;
    for (const c of Object.values(m.consumers)) consumers += c.dropped;
    const d = m.dropReasons;
    return [
      [{ reason: 'queue_full' }, d.queueFull],
      [{ reason: 'slow_consumer' }, d.slowConsumer],
      [{ reason: 'too_large' }, d.tooLarge],
      [{ reason: 'hook_consumer' }, consumers],
    ];
  });
  counter('stratamq_inflow_holds_total', 'Messages whose publisher (a client, to the next event-loop iteration; a log replay, 1 ms) was held because most of their deliveries found a window\'s worth queued behind a full window (mqtt.fair_inflow)', [], one(() => m.inflowHolds));
  gauge('stratamq_queue_depth_sum', 'Deliveries queued over all sessions (a persistent session away: what waits for it in the log)', [], one(() => view.queues().sum));
  gauge('stratamq_queue_depth_max', 'Deliveries queued for the session with the most', [], one(() => view.queues().max));
  gauge('stratamq_inflight', 'Deliveries in flight (sent, not acknowledged) over all sessions', [], one(() => view.queues().inflight));
  gauge('stratamq_retained_messages', 'Retained messages', [], one(() => view.retainedCount()));
  gauge('stratamq_subscriptions', 'Subscriptions over all sessions', [], one(() => view.subscriptionCount()));
  gauge('stratamq_store_bytes', 'Bytes of the embedded store\'s message log on disk', [], () => storeStat(view, 'bytes'));
  gauge('stratamq_store_records', 'Messages in the embedded store\'s log', [], () => storeStat(view, 'records'));
  gauge('stratamq_native_drain_active', 'Native drain loops running now (this process)', [], one(activeNativeDrains));
  // The store's group commits, as fixed-bucket histograms kept by the store (observed per batch).
  const histogram = (name: string, help: string, read: () => Histogram | undefined): void => {
    registry.registerMetric({
      name,
      help,
      type: 'histogram',
      get: () => {
        const h = read();
        const values: { metricName: string; labels: Labels; value: number }[] = [];
        let below = 0;
        (h?.bounds ?? []).forEach((le, i) => {
          below += h?.counts[i] ?? 0;
          values.push({ metricName: `${name}_bucket`, labels: { le: String(le) }, value: below });
        });
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h?.count ?? 0 });
        values.push({ metricName: `${name}_sum`, labels: {}, value: h?.sum ?? 0 }, { metricName: `${name}_count`, labels: {}, value: h?.count ?? 0 });
        return { name, help, type: 'histogram', values, aggregator: 'sum' };
      },
    } as unknown as Metric);
  };
  histogram('stratamq_store_append_batch_size', 'Messages per append batch handed to the store (one group commit)', () => view.b.durable?.commitStats.appendBatch);
  histogram('stratamq_store_append_seconds', 'Time from an append batch handed to the store until it is durable (write + fsync under durable_storage.fsync)', () => view.b.durable?.commitStats.appendSeconds);
  histogram('stratamq_store_meta_commit_seconds', 'Time from a metadata batch handed to the store until it is committed', () => view.b.durable?.commitStats.metaCommitSeconds);
  counter('stratamq_refused_total', 'Requests refused by the ACL file or a limit, by reason (aclPublish, aclSubscribe, topicLevels, topicLength, subscriptions, connectRate, messageRate, byteRate)', ['reason'], () =>
    Object.entries(m.refused).map(([reason, n]): Sample => [{ reason }, n]),
  );
  counter('stratamq_native_drains_total', 'Drains handed to the native loop', [], one(() => m.nativeDrains));
  counter('stratamq_fast_drained_total', 'Deliveries sent by the event loop\'s drain fast path', [], one(() => m.fastDrained));
  gauge('stratamq_hook_consumer_waiting', 'Events waiting in each async hook consumer\'s queue', ['consumer'], () => Object.entries(m.consumers).map(([name, c]): Sample => [{ consumer: name }, c.waiting]));
  counter('stratamq_hook_consumer_events_total', 'Events per async hook consumer, by outcome', ['consumer', 'outcome'], () =>
    Object.entries(m.consumers).flatMap(([name, c]): Sample[] => (['queued', 'handled', 'failed', 'dropped'] as const).map((o): Sample => [{ consumer: name, outcome: o }, c[o]])),
  );
  gauge('stratamq_backend_pool_up', 'Backend pools (backend.<type>.<pool>): 1 while the server answers, 0 while it is unreachable or refuses the login', ['type', 'pool'], () =>
    Object.values(m.backendPools).map((p): Sample => [{ type: p.type, pool: p.pool }, p.up ? 1 : 0]),
  );
  counter('stratamq_backend_pool_errors_total', 'Connection-level errors per backend pool (unreachable, refused login, connection lost)', ['type', 'pool'], () =>
    Object.values(m.backendPools).map((p): Sample => [{ type: p.type, pool: p.pool }, p.errors]),
  );
  counter('stratamq_backend_rule_events_total', 'Events each backend rule selected, by outcome (done, failed); its queue is stratamq_hook_consumer_* backend.<type>.<pool>.<event>', ['rule', 'outcome'], () =>
    Object.entries(m.backendRules).flatMap(([rule, c]): Sample[] => [
      [{ rule, outcome: 'done' }, c.done],
      [{ rule, outcome: 'failed' }, c.failed],
    ]),
  );
  counter('stratamq_listener_errors_total', 'Event listeners that threw or rejected, by event', ['event'], () => Object.entries(m.listenerErrors).map(([event, n]): Sample => [{ event }, n]));
  counter('stratamq_protocol_errors_total', 'Clients disconnected for breaking the protocol', [], one(() => m.protocolErrors));
  counter('stratamq_store_errors_total', 'Storage writes that failed', [], one(() => m.storeErrors));
  counter('stratamq_msglog_logged_total', 'Messages of logged topics (msglog.topics) appended to the message log', [], one(() => m.msglog.logged));
  counter('stratamq_msglog_failed_total', 'Appends of logged messages that failed', [], one(() => m.msglog.failed));
  counter('stratamq_msglog_refused_total', 'Messages refused to their publisher because the message log failed', [], one(() => m.msglog.refused));
  counter('stratamq_msglog_sql_rows_total', 'Rows the message log\'s SQL sink wrote (msglog.sql_pool)', [], one(() => m.msglog.sqlRows));
  counter('stratamq_msglog_sql_failed_total', 'Batches the message log\'s SQL sink could not write (tried again)', [], one(() => m.msglog.sqlFailed));
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
