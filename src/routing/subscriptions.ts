/**
 * The subscription table: every session's subscriptions in the native trie, by trie id, with
 * shared-subscription groups and a route cache.
 *
 * Invariants:
 * - `records[id]` is set exactly while subscription `id` is in the native trie.
 * - the route cache is cleared on every change of the trie, and not used while any shared
 *   subscription exists (the trie picks a group member round-robin on each match).
 */
import { TopicTrie, validateTopicName } from '../native.js';
import type { Session, Subscription } from '../session/session.js';
import type { QoS } from '../wire/codec.js';

const ROUTE_CACHE_MAX = 65536;
/**
 * Lookups per route-cache window. A window in which fewer than 1 in 8 lookups hit (distinct
 * topics: one per device, each published once in a while) stops filling the cache for the next
 * one — entries would only be churned through, each an array kept until the next clear — and,
 * while off, only every 16th topic looks the cache up and fills it, so a workload that repeats
 * its topics again shows hits (a window is then 16 × as many topics) and turns it back on.
 */
const ROUTE_WINDOW = 4096;
/** Topic names up to this many UTF-16 units are checked in JavaScript (at most 3 bytes each in UTF-8: under the 65,535-byte limit). */
const FAST_TOPIC_CHARS = 21845;
/** What makes a topic name invalid besides its length: a wildcard or U+0000 ([MQTT-4.7.0-1], [MQTT-4.7.3-2]). */
const BAD_IN_TOPIC = /[+#\u0000]/;

/**
 * qos (bits 0-1), noLocal (2), retainAsPublished (3), retainHandling (4-5), shared (6), and
 * whether the rare fields are set (7): one small integer.
 */
const NO_LOCAL = 4;
const RAP = 8;
const RH_SHIFT = 4;
const SHARED = 64;
const RARE = 128;

/** The fields few subscriptions have — a v5 Subscription Identifier, an ACL deny rule inside the filter — kept beside them. */
interface Rare {
  subscriptionId: number | undefined;
  readDenied: ((topic: string) => boolean) | undefined;
}
const rare = new WeakMap<SubRecord, Rare>();

/**
 * One subscription of one session, as the table and the session both hold it: the session's
 * `subscriptions` map and the table's `records[trieId]` are the same object. Its options are
 * packed into one integer read through getters, and the fields few subscriptions have (a
 * Subscription Identifier, an ACL deny rule inside the filter) kept beside it, so a filter costs
 * one object of five fields (measured in-process, 100,000 filters on one client: 250 B of JS heap
 * per filter with a spread options object, a record pointing at it and an out-of-object property
 * array; 80 B for the record with seven fields, 64 with five).
 */
export class SubRecord implements Subscription {
  private bits: number;
  readonly start: readonly number[] | undefined;

  constructor(
    readonly session: Session,
    readonly filter: string,
    readonly trieId: number,
    opts: Omit<Subscription, 'filter' | 'trieId'>,
  ) {
    this.bits =
      opts.qos |
      (opts.noLocal ? NO_LOCAL : 0) |
      (opts.retainAsPublished ? RAP : 0) |
      (opts.retainHandling << RH_SHIFT) |
      (filter.startsWith('$share/') ? SHARED : 0);
    this.start = opts.start;
    if (opts.subscriptionId !== undefined || opts.readDenied !== undefined) {
      rare.set(this, { subscriptionId: opts.subscriptionId, readDenied: opts.readDenied });
      this.bits |= RARE;
    }
  }

  get subscriptionId(): number | undefined {
    return (this.bits & RARE) === 0 ? undefined : rare.get(this)?.subscriptionId;
  }

  /** Replaced when the ACL is applied again (Router.enforceAcl). */
  get readDenied(): ((topic: string) => boolean) | undefined {
    return (this.bits & RARE) === 0 ? undefined : rare.get(this)?.readDenied;
  }

  set readDenied(f: ((topic: string) => boolean) | undefined) {
    const r = (this.bits & RARE) === 0 ? undefined : rare.get(this);
    if (r) r.readDenied = f;
    else if (f !== undefined) {
      rare.set(this, { subscriptionId: undefined, readDenied: f });
      this.bits |= RARE;
    }
  }

  get qos(): QoS {
    return (this.bits & 3) as QoS;
  }

  get noLocal(): boolean {
    return (this.bits & NO_LOCAL) !== 0;
  }

  get retainAsPublished(): boolean {
    return (this.bits & RAP) !== 0;
  }

  get retainHandling(): 0 | 1 | 2 {
    return ((this.bits >> RH_SHIFT) & 3) as 0 | 1 | 2;
  }

  /** A `$share/{group}/{filter}` member. */
  get shared(): boolean {
    return (this.bits & SHARED) !== 0;
  }
}

export class SubscriptionTable {
  private readonly trie = new TopicTrie();
  /** topic → matching subscription ids, valid until the next change; bounded by ROUTE_CACHE_MAX. */
  private readonly routes = new Map<string, Uint32Array>();
  private sharedSubs = 0;
  /** Trie ids of the members of each shared subscription (`$share/{group}/{filter}`). */
  private readonly shareGroups = new Map<string, { ids: number[]; next: number }>();
  /** Route cache window: lookups and hits so far; whether misses are cached (see ROUTE_WINDOW). */
  private lookups = 0;
  private hits = 0;
  private caching = true;
  /** Topics matched without the cache while it is off (every 16th looks it up). */
  private skipped = 0;
  private readonly records: (SubRecord | undefined)[] = [];
  private readonly freeIds: number[] = [];

  /** The subscription with trie id `id`. */
  get(id: number): SubRecord | undefined {
    return this.records[id];
  }

  /** Put `filter` for `session` (replacing its subscription to the same filter, same trie id). */
  put(session: Session, filter: string, opts: Omit<Subscription, 'filter' | 'trieId'>): { sub: SubRecord; existed: boolean } {
    const existing = session.subscriptions.get(filter);
    if (existing) {
      const sub = new SubRecord(session, filter, existing.trieId, opts);
      session.addSubscription(filter, sub);
      this.records[sub.trieId] = sub;
      return { sub, existed: true };
    }
    const id = this.freeIds.pop() ?? this.records.length;
    this.trie.subscribe(filter, id);
    this.routes.clear();
    const sub = new SubRecord(session, filter, id, opts);
    if (sub.shared) {
      this.sharedSubs++;
      let group = this.shareGroups.get(filter);
      if (!group) this.shareGroups.set(filter, (group = { ids: [], next: 0 }));
      group.ids.push(id);
    }
    this.records[id] = sub;
    session.addSubscription(filter, sub);
    return { sub, existed: false };
  }

  /** Take `sub` out of the trie (the caller removes it from its session). */
  remove(sub: Subscription): void {
    this.routes.clear();
    if (sub.filter.startsWith('$share/')) {
      this.sharedSubs--;
      const group = this.shareGroups.get(sub.filter);
      if (group) {
        const i = group.ids.indexOf(sub.trieId);
        if (i >= 0) group.ids.splice(i, 1);
        if (group.ids.length === 0) this.shareGroups.delete(sub.filter);
      }
    }
    this.trie.unsubscribe(sub.filter, sub.trieId);
    this.records[sub.trieId] = undefined;
    this.freeIds.push(sub.trieId);
  }

  /**
   * Ids of the subscriptions matching `topic` (one member per shared group): valid until the
   * next match (the trie reuses the array; routing reads it before anything can match again).
   */
  match(topic: string): Uint32Array {
    if (this.sharedSubs > 0) return this.trie.match(topic);
    // While the cache is off, only every 16th topic looks it up (and fills it): the lookup of a
    // topic seen once (hashing a fresh string, a miss in a large Map) cost more than it saved.
    if (!this.caching && (++this.skipped & 15) !== 0) return this.trie.match(topic);
    let ids = this.routes.get(topic);
    if (++this.lookups === ROUTE_WINDOW) {
      this.caching = this.hits * 8 >= ROUTE_WINDOW;
      this.lookups = 0;
      this.hits = 0;
    }
    if (ids !== undefined) {
      this.hits++;
      return ids;
    }
    ids = this.trie.match(topic);
    if (this.routes.size >= ROUTE_CACHE_MAX) this.routes.clear();
    this.routes.set(topic, ids.slice()); // the trie's result is a view it reuses
    return ids;
  }

  /** null if `topic` is a valid topic name, else why not. */
  checkTopicName(topic: string): string | null {
    // The usual name (short, no wildcard, no U+0000) is valid without a call into the core,
    // which says why any other is not.
    if (topic.length > 0 && topic.length <= FAST_TOPIC_CHARS && !BAD_IN_TOPIC.test(topic)) return null;
    return validateTopicName(topic);
  }

  /**
   * A shared subscription's member whose client is connected, taken round-robin among the
   * group (else `rec`, the trie's pick, which keeps the message for it while it is away).
   */
  onlineMember(rec: SubRecord): SubRecord {
    const group = this.shareGroups.get(rec.filter);
    if (!group) return rec;
    const n = group.ids.length;
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      const r = this.records[group.ids[i] as number];
      if (r && r.session.outlet !== null) {
        group.next = (i + 1) % n;
        return r;
      }
    }
    return rec;
  }
}
