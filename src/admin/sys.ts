/**
 * `$SYS/broker/...` as Mosquitto publishes them (its sys_tree.c names): every `sys.interval`
 * seconds, retained, QoS 0, published by the broker itself (publisher '') through the router's
 * volatile path — kept in memory only, never written to the store (Router.publishVolatile), so
 * the tree costs no disk write per interval. The load averages are exponentially damped
 * per-minute rates over 1, 5 and 15 minutes, as Mosquitto computes them.
 */
import { createMessage } from '../wire/message.js';
import type { AdminView } from './view.js';

const LOADS = [
  ['1min', 60],
  ['5min', 300],
  ['15min', 900],
] as const;

type Rated = 'messages/received' | 'messages/sent' | 'bytes/received' | 'bytes/sent';

export class SysPublisher {
  private timer: NodeJS.Timeout | null = null;
  private last: { at: number; values: Record<Rated, number> } | null = null;
  private readonly loads = new Map<string, number>();
  private clientsTotal = 0;

  constructor(
    private readonly view: AdminView,
    private readonly version: string,
  ) {}

  start(intervalSeconds: number): void {
    if (intervalSeconds <= 0) return;
    this.publish();
    this.timer = setInterval(() => this.publish(), intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The values of one update, by topic (without the `$SYS/broker/` prefix). */
  values(now = Date.now()): Record<string, string> {
    const v = this.view;
    const m = v.b.metrics;
    const connected = v.connected();
    const q = v.queues();
    const counts: Record<Rated, number> = {
      'messages/received': m.messagesReceived,
      'messages/sent': sum(m.messagesSentByQos) + m.nativeSent,
      'bytes/received': m.bytesReceived,
      'bytes/sent': m.bytesSent,
    };
    if (this.last) {
      const dt = (now - this.last.at) / 1000;
      if (dt > 0) {
        for (const [k, value] of Object.entries(counts) as [Rated, number][]) {
          const rate = ((value - this.last.values[k]) * 60) / dt; // per minute
          for (const [name, period] of LOADS) {
            const key = `load/${k}/${name}`;
            const prev = this.loads.get(key) ?? 0;
            this.loads.set(key, rate + Math.exp(-dt / period) * (prev - rate));
          }
        }
      }
    }
    this.last = { at: now, values: counts };
    this.clientsTotal = q.sessions;
    const out: Record<string, string> = {
      version: `stratamq version ${this.version}`,
      uptime: `${Math.floor((now - v.startedAt) / 1000)} seconds`,
      'clients/connected': String(connected.now),
      'clients/disconnected': String(Math.max(0, this.clientsTotal - connected.now)),
      'clients/total': String(this.clientsTotal),
      'clients/maximum': String(connected.max),
      'messages/stored': String(q.sum),
      'retained messages/count': String(v.retainedCount()),
      'subscriptions/count': String(v.subscriptionCount()),
      'store/messages/count': String(q.sum),
    };
    for (const [k, value] of Object.entries(counts)) out[k] = String(value);
    for (const [k, value] of this.loads) out[k] = value.toFixed(2);
    return out;
  }

  publish(): void {
    const router = this.view.b.router;
    for (const [topic, value] of Object.entries(this.values())) {
      router.publishVolatile(createMessage(`$SYS/broker/${topic}`, Buffer.from(value), 0, true, undefined, ''));
    }
  }
}

function sum(a: number[]): number {
  let n = 0;
  for (const x of a) n += x;
  return n;
}
