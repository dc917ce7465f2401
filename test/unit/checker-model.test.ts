/**
 * The durability checker's model (test/checker/model.ts) on hand-written traces, no broker:
 * it must flag what breaks the MQTT rules and accept what they allow.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Event, QoS, WillSpec } from '../checker/history.js';
import { Model, type ViolationKind } from '../checker/model.js';

type Body<E> = E extends Event ? Omit<E, 't'> : never;

/** A trace written event by event; each event 1 ms after the previous one unless `at` moves the clock. */
class Trace {
  readonly model = new Model();
  private t = 0;

  at(ms: number): this {
    this.t = Math.max(this.t, ms);
    return this;
  }

  ev(e: Body<Event>): this {
    this.t += 1;
    this.model.apply({ ...e, t: this.t } as Event);
    return this;
  }

  get now(): number {
    return this.t;
  }

  connect(conn: number, client: string, o: { v?: 4 | 5; clean?: boolean; expiry?: number | null; will?: WillSpec; present?: boolean } = {}): this {
    const v = o.v ?? 5;
    this.ev({ k: 'connect', conn, client, v, clean: o.clean ?? false, expiry: v === 5 ? (o.expiry === undefined ? 3600 : o.expiry) : null, will: o.will ?? null });
    return this.ev({ k: 'connack', conn, present: o.present ?? false, rc: 0 });
  }

  subscribe(conn: number, id: number, filter: string, qos: QoS = 1, nl = false): this {
    this.ev({ k: 'subscribe', conn, id, subs: [{ filter, qos, nl }] });
    return this.ev({ k: 'suback', conn, id, granted: [qos] });
  }

  unsubscribe(conn: number, id: number, filter: string): this {
    this.ev({ k: 'unsubscribe', conn, id, filters: [filter] });
    return this.ev({ k: 'unsuback', conn, id });
  }

  /** PUBLISH and its acknowledgement. */
  publish(conn: number, id: number, msg: string, topic: string, qos: QoS = 1, o: { retain?: boolean; expiry?: number } = {}): this {
    this.send(conn, id, msg, topic, qos, o);
    return qos > 0 ? this.ev({ k: 'acked', conn, id, msg, rc: 0 }) : this;
  }

  send(conn: number, id: number, msg: string, topic: string, qos: QoS = 1, o: { retain?: boolean; expiry?: number; dup?: boolean } = {}): this {
    return this.ev({ k: 'publish', conn, id, msg, topic, qos, retain: o.retain ?? false, expiry: o.expiry ?? null, dup: o.dup ?? false });
  }

  deliver(conn: number, id: number, msg: string, topic: string, qos: QoS = 1, o: { dup?: boolean; retain?: boolean } = {}): this {
    return this.ev({ k: 'deliver', conn, id, msg, topic, qos, retain: o.retain ?? false, dup: o.dup ?? false });
  }

  /** DISCONNECT and the server's close. */
  disconnect(conn: number, o: { reason?: number; expiry?: number | null } = {}): this {
    this.ev({ k: 'disconnect', conn, reason: o.reason ?? 0, expiry: o.expiry ?? null });
    return this.ev({ k: 'closed', conn });
  }

  abort(conn: number): this {
    this.ev({ k: 'abort', conn });
    return this.ev({ k: 'closed', conn });
  }

  /** The connection stayed quiet since `since` (default: right after the last event). */
  quiet(conn: number, since = this.t + 0.5): this {
    this.t += 500;
    return this.ev({ k: 'quiet', conn, since });
  }

  restart(how: 'term' | 'kill'): this {
    this.ev({ k: 'broker-stop', how });
    return this.ev({ k: 'broker-start' });
  }

  kinds(): ViolationKind[] {
    return this.model.violations.map((v) => v.kind);
  }

  assertClean(): void {
    assert.deepEqual(
      this.model.violations.map((v) => v.text),
      [],
    );
  }
}

/** A persistent subscriber `sub` on a/x (QoS 1) that went away, and a publisher on conn 2. */
function offlineSubscriber(v: 4 | 5 = 5, qos: QoS = 1): Trace {
  return new Trace()
    .connect(1, 'sub', { v, clean: false, expiry: 3600 })
    .subscribe(1, 1, 'a/x', qos)
    .disconnect(1)
    .connect(2, 'pub', { clean: true, expiry: 0 });
}

describe('checker model: what MUST be delivered', () => {
  test('an acknowledged QoS 1 message never delivered to an offline persistent session is lost', () => {
    const t = offlineSubscriber().publish(2, 1, 'pub#1', 'a/x').connect(3, 'sub', { present: true }).quiet(3);
    assert.deepEqual(t.kinds(), ['lost']);
    assert.match(t.model.violations[0]?.text ?? '', /pub#1/);
  });

  test('delivered after reconnecting: no violation; a QoS 1 redelivery with DUP is allowed', () => {
    const t = offlineSubscriber()
      .publish(2, 1, 'pub#1', 'a/x')
      .connect(3, 'sub', { present: true })
      .deliver(3, 1, 'pub#1', 'a/x')
      .abort(3)
      .connect(4, 'sub', { present: true })
      .deliver(4, 1, 'pub#1', 'a/x', 1, { dup: true })
      .quiet(4);
    t.assertClean();
    assert.equal(t.model.stats.delivered, 1);
  });

  test('3.1.1 clean_session = 0 is persistent too, and survives kill -9', () => {
    const t = offlineSubscriber(4).publish(2, 1, 'pub#1', 'a/x').restart('kill').connect(3, 'sub', { v: 4, present: true }).quiet(3);
    assert.deepEqual(t.kinds(), ['lost']);
  });

  test('a delivery that arrives before the publisher hears PUBACK counts', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'a/#').connect(2, 'pub').send(2, 1, 'pub#1', 'a/x').deliver(1, 1, 'pub#1', 'a/x').ev({ k: 'acked', conn: 2, id: 1, msg: 'pub#1', rc: 0 }).quiet(1);
    t.assertClean();
  });

  test('Clean Start 0 without Session Expiry resumes the session: its queue is owed during that connection [MQTT-3.1.2-4]', () => {
    const t = offlineSubscriber().publish(2, 1, 'pub#1', 'a/x').connect(3, 'sub', { v: 5, clean: false, expiry: null, present: true }).quiet(3);
    assert.deepEqual(t.kinds(), ['lost']);
  });

  test('nothing is owed when the session ends legally first: Clean Start, expiry 0 at DISCONNECT, expiry reached', () => {
    offlineSubscriber().publish(2, 1, 'pub#1', 'a/x').connect(3, 'sub', { clean: true }).quiet(3).assertClean();
    new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x').connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x').disconnect(1, { expiry: 0 }).connect(3, 'sub', { present: false }).quiet(3).assertClean();
    const t = new Trace().connect(1, 'sub', { expiry: 2 }).subscribe(1, 1, 'a/x').disconnect(1).connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x');
    t.at(t.now + 4000).connect(3, 'sub', { present: false }).quiet(3).assertClean();
  });

  test('nothing is owed for a subscription made after the PUBLISH was sent, or removed before it was acknowledged', () => {
    new Trace().connect(1, 'sub').connect(2, 'pub').send(2, 1, 'pub#1', 'a/x').subscribe(1, 1, 'a/x').ev({ k: 'acked', conn: 2, id: 1, msg: 'pub#1', rc: 0 }).quiet(1).assertClean();
    new Trace()
      .connect(1, 'sub')
      .subscribe(1, 1, 'a/x')
      .connect(2, 'pub')
      .send(2, 1, 'pub#1', 'a/x')
      .ev({ k: 'unsubscribe', conn: 1, id: 2, filters: ['a/x'] })
      .ev({ k: 'acked', conn: 2, id: 1, msg: 'pub#1', rc: 0 })
      .quiet(1)
      .assertClean();
  });

  test('QoS 0 subscriptions and short Message Expiry give no MUST', () => {
    offlineSubscriber(5, 0).publish(2, 1, 'pub#1', 'a/x').connect(3, 'sub', { present: true }).quiet(3).assertClean();
    offlineSubscriber().publish(2, 1, 'pub#1', 'a/x', 1, { expiry: 2 }).connect(3, 'sub', { present: true }).quiet(3).assertClean();
  });

  test('a shared subscription: one member getting it is enough; none getting it is a loss', () => {
    const group = (): Trace =>
      new Trace().connect(1, 'm1').subscribe(1, 1, '$share/g/a/#').connect(2, 'm2').subscribe(2, 1, '$share/g/a/#').connect(3, 'pub').publish(3, 1, 'pub#1', 'a/x');
    group().deliver(2, 1, 'pub#1', 'a/x').quiet(1).quiet(2).assertClean();
    assert.deepEqual(group().quiet(1).quiet(2).kinds(), ['lost']);
  });

  test('a will (delay 0, QoS 1) of a connection the client dropped is owed like an acknowledged message', () => {
    const will: WillSpec = { topic: 'a/x', qos: 1, delay: 0, msg: 'w:2' };
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x').connect(2, 'dies', { will }).abort(2).quiet(1);
    assert.deepEqual(t.kinds(), ['lost']);
    new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x').connect(2, 'dies', { will }).abort(2).deliver(1, 1, 'w:2', 'a/x').quiet(1).assertClean();
  });

  test('the retained message of a settled topic must come with a new subscription', () => {
    const base = (): Trace => new Trace().connect(1, 'pub').publish(1, 1, 'pub#1', 'a/x', 1, { retain: true }).restart('kill').connect(2, 'sub').subscribe(2, 1, 'a/+');
    assert.deepEqual(base().quiet(2).kinds(), ['retained-missing']);
    base().deliver(2, 1, 'pub#1', 'a/x', 1, { retain: true }).quiet(2).assertClean();
  });
});

describe('checker model: QoS 2 exactly once', () => {
  test('a retained QoS 2 message comes once per SUBSCRIBE of a matching filter: a re-SUBSCRIBE may bring it again, a third copy for two SUBSCRIBEs may not', () => {
    // Seed 600046's shape: `#` and `a/#`, then `a/#` subscribed again (Retain Handling 0): three copies allowed.
    const base = (): Trace => {
      const t = new Trace().connect(1, 'pub').publish(1, 1, 'pub#1', 'a/b/x', 2, { retain: true }).connect(2, 'sub', { v: 5 });
      t.ev({ k: 'subscribe', conn: 2, id: 1, subs: [{ filter: '#', qos: 2, nl: false }, { filter: 'a/#', qos: 2, nl: false }] }).ev({ k: 'suback', conn: 2, id: 1, granted: [2, 2] });
      t.deliver(2, 1, 'pub#1', 'a/b/x', 2, { retain: true }).ev({ k: 'pubrel', conn: 2, id: 1 });
      return t.deliver(2, 2, 'pub#1', 'a/b/x', 2, { retain: true }).ev({ k: 'pubrel', conn: 2, id: 2 });
    };
    const again = base().subscribe(2, 2, 'a/#', 2);
    again.deliver(2, 3, 'pub#1', 'a/b/x', 2, { retain: true }).ev({ k: 'pubrel', conn: 2, id: 3 });
    assert.deepEqual(again.kinds(), []);
    const extra = base().deliver(2, 3, 'pub#1', 'a/b/x', 2, { retain: true });
    assert.deepEqual(extra.kinds(), ['duplicate'], 'no SUBSCRIBE since: a third copy is a duplicate');
  });

  test('a second delivery after PUBREL (PUBCOMP sent) is a duplicate', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x', 2).connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x', 2);
    t.deliver(1, 1, 'pub#1', 'a/x', 2).ev({ k: 'pubrel', conn: 1, id: 1 }).deliver(1, 2, 'pub#1', 'a/x', 2, { dup: true });
    assert.deepEqual(t.kinds(), ['duplicate']);
  });

  test('a PUBLISH resent with an id still awaiting PUBREL, even on the next connection, is not a new delivery', () => {
    new Trace()
      .connect(1, 'sub')
      .subscribe(1, 1, 'a/x', 2)
      .connect(2, 'pub')
      .publish(2, 1, 'pub#1', 'a/x', 2)
      .deliver(1, 7, 'pub#1', 'a/x', 2)
      .abort(1)
      .restart('kill')
      .connect(3, 'sub', { present: true })
      .deliver(3, 7, 'pub#1', 'a/x', 2, { dup: true })
      .ev({ k: 'pubrel', conn: 3, id: 7 })
      .quiet(3)
      .assertClean();
  });

  test('overlapping subscriptions may each deliver a copy (3.1.1 [MQTT-3.3.5-1])', () => {
    new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x', 2).subscribe(1, 2, 'a/+', 2).connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x', 2).deliver(1, 1, 'pub#1', 'a/x', 2).deliver(1, 2, 'pub#1', 'a/x', 2).assertClean();
  });
});

describe('checker model: order', () => {
  test('two messages sent in order on one connection arriving reversed break the order', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x').connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x').publish(2, 2, 'pub#2', 'a/x');
    t.deliver(1, 1, 'pub#2', 'a/x').deliver(1, 2, 'pub#1', 'a/x');
    assert.deepEqual(t.kinds(), ['order']);
  });

  test('different publishers, topics or QoS are not ordered; a DUP redelivery of an earlier one is not a first delivery', () => {
    new Trace()
      .connect(1, 'sub')
      .subscribe(1, 1, 'a/+')
      .connect(2, 'p1')
      .connect(3, 'p2')
      .publish(2, 1, 'p1#1', 'a/x')
      .publish(3, 1, 'p2#1', 'a/x')
      .publish(2, 2, 'p1#2', 'a/y')
      .publish(2, 3, 'p1#3', 'a/x', 2)
      .deliver(1, 1, 'p1#3', 'a/x', 1)
      .deliver(1, 2, 'p1#2', 'a/y')
      .deliver(1, 3, 'p2#1', 'a/x')
      .deliver(1, 4, 'p1#1', 'a/x')
      .deliver(1, 5, 'p1#1', 'a/x', 1, { dup: true })
      .assertClean();
  });
});

describe('checker model: session present', () => {
  test('present = 0 for a session that exists is a lost session', () => {
    assert.deepEqual(offlineSubscriber().connect(3, 'sub', { present: false }).kinds(), ['session-present']);
  });

  test('present = 1 after the session ended is a resurrected session; present = 1 on Clean Start is wrong too', () => {
    assert.deepEqual(new Trace().connect(1, 'c', { expiry: 0 }).disconnect(1).connect(2, 'c', { present: true }).kinds(), ['session-present']);
    assert.deepEqual(new Trace().connect(1, 'c', { clean: true, present: true }).kinds(), ['session-present']);
  });

  test('a takeover of a session with expiry 0 ends it; with expiry > 0 it is resumed', () => {
    new Trace().connect(1, 'c', { expiry: 0 }).connect(2, 'c', { present: false }).assertClean();
    new Trace().connect(1, 'c', { expiry: 60 }).connect(2, 'c', { present: true }).assertClean();
  });

  test('an end not yet durable at a kill -9 may be undone: either answer is accepted', () => {
    for (const present of [true, false]) {
      new Trace().connect(1, 'c', { expiry: 3600 }).subscribe(1, 1, 'a/x').disconnect(1, { expiry: 0 }).restart('kill').connect(2, 'c', { present }).assertClean();
    }
    // After a barrier (a persistent session's SUBACK for a SUBSCRIBE sent later), the end is durable.
    assert.deepEqual(
      new Trace().connect(1, 'c', { expiry: 3600 }).disconnect(1, { expiry: 0 }).connect(3, 'other').subscribe(3, 1, 'b/x').restart('kill').connect(2, 'c', { present: true }).kinds(),
      ['session-present'],
    );
  });

  test('a Clean Start is durable once its CONNACK is out: a kill -9 right after it cannot bring the old session back', () => {
    const t = new Trace().connect(1, 'c', { expiry: 3600 }).subscribe(1, 1, 'a/#', 0).disconnect(1).connect(2, 'c', { clean: true, expiry: 30 }).restart('kill');
    t.connect(3, 'c', { present: true }).connect(4, 'pub').publish(4, 1, 'pub#1', 'a/x').deliver(3, 1, 'pub#1', 'a/x', 0);
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test('an UNSUBACK to a persistent session is durable: a kill -9 right after it cannot bring the subscription back', () => {
    const t = new Trace().connect(1, 'c', { expiry: 3600 }).subscribe(1, 1, 'a/#', 0).unsubscribe(1, 2, 'a/#').restart('kill');
    t.connect(3, 'c', { present: true }).connect(4, 'pub').publish(4, 1, 'pub#1', 'a/x').deliver(3, 1, 'pub#1', 'a/x', 0);
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test("a session that may have expired, answered present = 0, then a new one and a kill -9 at once: the store may hold neither (seed 2100072)", () => {
    // The old session's expiry (2 s) is around the reconnect: the broker may call it gone. The new
    // session's record is written behind its CONNACK, the old one's removal in the background.
    // SIGTERM: the old record (expiry 5 s) is all the store holds; the restart counts it from then.
    const t = new Trace().connect(1, 'c', { expiry: 5 }).disconnect(1).restart('term');
    t.at(t.now + 5000).connect(2, 'c', { expiry: 3600, present: false }).restart('kill');
    t.connect(3, 'c', { present: false }).assertClean();
    // After a barrier the new record is durable: then it must be there.
    const u = new Trace().connect(1, 'c', { expiry: 5 }).disconnect(1).restart('term');
    u.at(u.now + 5000).connect(2, 'c', { expiry: 3600, present: false }).subscribe(2, 1, 'a/x').restart('kill');
    assert.deepEqual(u.connect(3, 'c', { present: false }).kinds(), ['session-present']);
  });

  test('a session past its expiry deadline is gone, one just around it may go either way', () => {
    const t = new Trace().connect(1, 'c', { expiry: 2 }).disconnect(1);
    t.at(t.now + 5000).connect(2, 'c', { present: true });
    assert.deepEqual(t.kinds(), ['session-present']);
    const u = new Trace().connect(1, 'c', { expiry: 2 }).disconnect(1);
    u.at(u.now + 2000).connect(2, 'c', { present: true }).assertClean();
  });
});

describe('checker model: what MAY be delivered', () => {
  test('a message no subscription of the session matches is unexpected', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'b/#').connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x').deliver(1, 1, 'pub#1', 'a/x');
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test('the old session queue delivered after Clean Start is unexpected', () => {
    const t = offlineSubscriber().publish(2, 1, 'pub#1', 'a/x').connect(3, 'sub', { clean: true }).subscribe(3, 1, 'a/x').deliver(3, 1, 'pub#1', 'a/x');
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test('queued before UNSUBSCRIBE may still come after it; published after UNSUBACK may not', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'a/x').connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x').unsubscribe(1, 2, 'a/x').deliver(1, 1, 'pub#1', 'a/x');
    t.assertClean();
    t.publish(2, 2, 'pub#2', 'a/x').deliver(1, 2, 'pub#2', 'a/x');
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test('higher QoS than published, an unknown payload, a will after a normal DISCONNECT', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, '#', 2).connect(2, 'pub').publish(2, 1, 'pub#1', 'a/x', 1).deliver(1, 1, 'pub#1', 'a/x', 2);
    t.deliver(1, 2, 'nobody#9', 'a/x', 1);
    t.connect(3, 'w', { will: { topic: 'a/y', qos: 1, delay: 0, msg: 'w:3' } }).disconnect(3).deliver(1, 3, 'w:3', 'a/y', 1);
    assert.deepEqual(t.kinds(), ['unexpected', 'unexpected', 'unexpected']);
  });

  test('a will discarded or cancelled just before a kill -9 may come back (the session record is written in the background)', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, '#').connect(2, 'w', { will: { topic: 'a/y', qos: 1, delay: 0, msg: 'w:2' } }).disconnect(2).restart('kill').connect(3, 'sub', { present: true });
    t.deliver(3, 1, 'w:2', 'a/y').assertClean();
  });

  test('no local: own messages are not delivered through a No Local subscription [MQTT-3.8.3-3]', () => {
    const t = new Trace().connect(1, 'c').subscribe(1, 1, 'a/x', 1, true).publish(1, 2, 'c#1', 'a/x').deliver(1, 1, 'c#1', 'a/x');
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test('a retained message replaced before the SUBSCRIBE must not come on subscribe', () => {
    const t = new Trace().connect(1, 'pub').publish(1, 1, 'pub#1', 'a/x', 1, { retain: true }).publish(1, 2, 'pub#2', 'a/x', 1, { retain: true }).connect(2, 'sub').subscribe(2, 1, 'a/x');
    t.deliver(2, 1, 'pub#1', 'a/x', 1, { retain: true });
    assert.deepEqual(t.kinds(), ['unexpected']);
  });

  test('a delayed will must not be published when its session is resumed within the delay [MQTT-3.1.3-9]', () => {
    const t = new Trace().connect(1, 'sub').subscribe(1, 1, 'a/#').connect(2, 'w', { expiry: 60, will: { topic: 'a/y', qos: 1, delay: 30, msg: 'w:2' } }).abort(2).connect(3, 'w', { present: true });
    t.deliver(1, 1, 'w:2', 'a/y');
    assert.deepEqual(t.kinds(), ['unexpected']);
  });
});
