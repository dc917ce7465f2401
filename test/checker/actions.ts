/**
 * The client actions and broker faults a run is made of, as plain data (a trace can be saved
 * as JSON and replayed), and their fast-check generators. All of it is legal MQTT; odd but
 * legal on purpose: takeovers, Clean Start 0 without Session Expiry on an existing session,
 * packet ids reused right after their flow, publishes left in flight across a kill -9.
 */
import fc from 'fast-check';
import type { QoS, Version } from './history.js';
import { FILTERS, TOPICS } from './topics.js';

export const NEVER_EXPIRES = 0xffffffff;

/**
 * `c` names a client of the pool; an action for a client that is not connected goes to the
 * next connected one (the driver records the client it used, so a saved trace replays as run).
 */
export type Action =
  /**
   * Connect client `c` (a takeover when it is connected). `expiry`: v5 Session Expiry Interval,
   * null = absent. `drain`: afterwards, wait until nothing more arrives (and judge what was owed).
   * `slow`: this connection answers deliveries (PUBACK, PUBREC) only after SLOW_ACK_MS, so some
   * are in flight whenever the broker dies.
   */
  | { a: 'connect'; c: number; v: Version; clean: boolean; expiry: number | null; will: { topic: number; qos: QoS; delay: number } | null; drain: boolean; slow: boolean }
  /** normal: DISCONNECT 0x00; will: DISCONNECT 0x04 (v5); abrupt: close the socket. v5 may change the Session Expiry. */
  | { a: 'disconnect'; c: number; how: 'normal' | 'will' | 'abrupt'; expiry: number | null }
  /** `n` publishes at once; `wait`: for their acknowledgements (else they stay in flight). */
  | { a: 'publish'; c: number; topic: number; qos: QoS; n: number; retain: boolean; clear: boolean; expiry: number | null; wait: boolean }
  | { a: 'subscribe'; c: number; subs: { f: number; qos: QoS; nl: boolean }[] }
  /**
   * A persistent subscriber that goes away (as `mosquitto_sub -c -E`): connect with Clean
   * Start 0 and a Session Expiry > 0 (3.1.1: clean_session 0), subscribe, DISCONNECT.
   */
  | { a: 'park'; c: number; v: Version; expiry: number; subs: { f: number; qos: QoS; nl: boolean }[] }
  | { a: 'unsubscribe'; c: number; fs: number[] }
  /** Wait until client `c`'s connection is quiet, then judge what its session was owed. */
  | { a: 'drain'; c: number }
  /**
   * SIGTERM or kill -9, then start again on the same store. `settle`: first wait for the
   * acknowledgements in flight. `reconnect`: then the clients that were connected connect again
   * with the same CONNECT (as a client library's automatic reconnect does).
   */
  | { a: 'restart'; how: 'term' | 'kill'; settle: boolean; reconnect: boolean }
  | { a: 'pause'; ms: number }
  /** Reconnect every session the model says exists, drain all, judge. */
  | { a: 'checkpoint' };

export function formatAction(x: Action): string {
  switch (x.a) {
    case 'connect': {
      const parts = [`c${x.c}`, x.v === 5 ? 'v5' : 'v3.1.1', x.clean ? 'clean' : 'resume'];
      if (x.v === 5) parts.push(x.expiry === null ? 'expiry=absent' : `expiry=${x.expiry === NEVER_EXPIRES ? 'never' : x.expiry}`);
      if (x.will) parts.push(`will=${TOPICS[x.will.topic]}:q${x.will.qos}${x.will.delay ? `:delay${x.will.delay}` : ''}`);
      if (x.slow) parts.push('slow-acks');
      if (x.drain) parts.push('drain');
      return `connect(${parts.join(' ')})`;
    }
    case 'disconnect':
      return `disconnect(c${x.c} ${x.how}${x.expiry !== null ? ` expiry=${x.expiry}` : ''})`;
    case 'publish': {
      const parts = [`c${x.c}`, TOPICS[x.topic] as string, `q${x.qos}`];
      if (x.n > 1) parts.push(`x${x.n}`);
      if (x.retain) parts.push(x.clear ? 'retain-clear' : 'retain');
      if (x.expiry !== null) parts.push(`msg-expiry=${x.expiry}`);
      parts.push(x.wait ? 'wait' : 'no-wait');
      return `publish(${parts.join(' ')})`;
    }
    case 'subscribe':
      return `subscribe(c${x.c} ${x.subs.map((s) => `${FILTERS[s.f]}:q${s.qos}${s.nl ? ':nl' : ''}`).join(' ')})`;
    case 'park':
      return `park(c${x.c} ${x.v === 5 ? `v5 expiry=${x.expiry === NEVER_EXPIRES ? 'never' : x.expiry}` : 'v3.1.1'} ${x.subs.map((s) => `${FILTERS[s.f]}:q${s.qos}${s.nl ? ':nl' : ''}`).join(' ')})`;
    case 'unsubscribe':
      return `unsubscribe(c${x.c} ${x.fs.map((f) => FILTERS[f]).join(' ')})`;
    case 'drain':
      return `drain(c${x.c})`;
    case 'restart':
      return `restart(${x.how === 'kill' ? 'kill -9' : 'SIGTERM'}${x.settle ? ' settled' : ''}${x.reconnect ? ' reconnect' : ''})`;
    case 'pause':
      return `pause(${x.ms}ms)`;
    case 'checkpoint':
      return 'checkpoint()';
  }
}

const qos = fc.constantFrom<QoS>(0, 1, 2);
const qosPub = fc.oneof({ arbitrary: fc.constant<QoS>(0), weight: 1 }, { arbitrary: fc.constant<QoS>(1), weight: 2 }, { arbitrary: fc.constant<QoS>(2), weight: 2 });

/** Session Expiry values: absent/0, small (they run out within a run), large, never. */
const sessionExpiry = fc.oneof(
  { arbitrary: fc.constant(null), weight: 2 },
  { arbitrary: fc.constant(0), weight: 1 },
  { arbitrary: fc.constantFrom(2, 4), weight: 1 },
  { arbitrary: fc.constantFrom(30, 3600), weight: 4 },
  { arbitrary: fc.constant(NEVER_EXPIRES), weight: 1 },
);

/** `arb` with weight `yes` against null with weight `no`. */
function sometimes<T>(arb: fc.Arbitrary<T>, yes: number, no: number): fc.Arbitrary<T | null> {
  return fc.oneof({ arbitrary: fc.constant(null), weight: no }, { arbitrary: arb, weight: yes });
}

/** One arbitrary per kind of action (fc.commands takes them as a list, and so shrinks well). */
export function actionArbitraries(clients: number): fc.Arbitrary<Action>[] {
  const c = fc.integer({ min: 0, max: clients - 1 });
  const topic = fc.integer({ min: 0, max: TOPICS.length - 1 });
  const filter = fc.integer({ min: 0, max: FILTERS.length - 1 });
  const connect: fc.Arbitrary<Action> = fc.record({
    a: fc.constant('connect' as const),
    c,
    v: fc.constantFrom<Version>(4, 5),
    clean: fc.integer({ min: 0, max: 9 }).map((i) => i < 3),
    expiry: sessionExpiry,
    will: sometimes(fc.record({ topic, qos, delay: fc.constantFrom(0, 0, 1, 3) }), 1, 3),
    drain: fc.boolean(),
    slow: fc.integer({ min: 0, max: 4 }).map((i) => i === 0),
  });
  const disconnect: fc.Arbitrary<Action> = fc.record({
    a: fc.constant('disconnect' as const),
    c,
    how: fc.constantFrom('normal' as const, 'normal' as const, 'abrupt' as const, 'abrupt' as const, 'will' as const),
    expiry: sometimes(fc.constantFrom(0, 5, 3600), 1, 2),
  });
  // Mostly a few publishes at once, sometimes a burst (a backlog to drain, many in flight at a kill).
  const burst = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 4 }), weight: 6 }, { arbitrary: fc.integer({ min: 10, max: 60 }), weight: 1 });
  // Retained on 3 in 20 publishes, a clear (empty payload) on 1 in 20.
  const retained = fc.integer({ min: 0, max: 19 });
  const publish: fc.Arbitrary<Action> = fc
    .record({ c, topic, qos: qosPub, n: burst, r: retained, expiry: sometimes(fc.constantFrom(2, 3600), 1, 5), wait: fc.boolean() })
    .map(({ c, topic, qos, n, r, expiry, wait }) => ({ a: 'publish' as const, c, topic, qos, n, retain: r < 3, clear: r === 0, expiry, wait }));
  const subs = fc.array(fc.record({ f: filter, qos, nl: fc.integer({ min: 0, max: 4 }).map((i) => i === 0) }), { minLength: 1, maxLength: 3 });
  const subscribe: fc.Arbitrary<Action> = fc.record({ a: fc.constant('subscribe' as const), c, subs });
  const park: fc.Arbitrary<Action> = fc.record({ a: fc.constant('park' as const), c, v: fc.constantFrom<Version>(4, 5), expiry: fc.constantFrom(30, 3600, NEVER_EXPIRES), subs });
  const unsubscribe: fc.Arbitrary<Action> = fc.record({ a: fc.constant('unsubscribe' as const), c, fs: fc.array(filter, { minLength: 1, maxLength: 2 }) });
  const drain: fc.Arbitrary<Action> = fc.record({ a: fc.constant('drain' as const), c });
  const restart: fc.Arbitrary<Action> = fc.record({
    a: fc.constant('restart' as const),
    how: fc.constantFrom('term' as const, 'kill' as const, 'kill' as const),
    settle: fc.boolean(),
    reconnect: fc.boolean(),
  });
  const pause: fc.Arbitrary<Action> = fc.record({ a: fc.constant('pause' as const), ms: fc.integer({ min: 50, max: 3000 }) });
  const checkpoint: fc.Arbitrary<Action> = fc.constant({ a: 'checkpoint' as const });
  // Weights by repetition (fc.commands picks uniformly among the arbitraries).
  return [
    ...[connect, connect, connect, connect],
    ...[disconnect, disconnect, disconnect],
    ...[publish, publish, publish, publish, publish, publish, publish],
    ...[subscribe, subscribe, subscribe],
    ...[park, park],
    unsubscribe,
    ...[drain, drain],
    ...[restart, restart, restart],
    pause,
    checkpoint,
  ];
}
