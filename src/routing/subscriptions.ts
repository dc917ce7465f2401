/**
 * The subscription table: every session's subscriptions in the native trie, by trie id, with
 * shared-subscription groups and a route cache.
 *
 * Invariants:
 * - `owners[id]` is set exactly while subscription `id` is in the native trie; its session's
 *   `subscriptions` holds the filter with that id.
 * - the route cache is cleared on every change of the trie, and not used while any shared
 *   subscription exists (the trie picks a group member round-robin on each match).
 */
import { TopicTrie, validateTopicName } from '../native.js';
import { TopicMemo } from '../wire/topic.js';
import type { Session, Subscription, SubscriptionViews } from '../session/session.js';
import type { QoS } from '../wire/codec.js';

const ROUTE_CACHE_MAX = 65536;
/** Characters of the topic names the route cache keeps, at most (names may be 65,535 bytes long). */
const ROUTE_CACHE_CHARS = 8 * 1024 * 1024;
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
 * A subscription's options by trie id, one byte: qos (bits 0-1), noLocal (2), retainAsPublished
 * (3), retainHandling (4-5), shared (6), and whether the rare fields are set (7).
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

/** The members of a shared subscription (`$share/{group}/{filter}`) and the next to try. */
interface ShareGroup {
  ids: number[];
  next: number;
}

/**
 * A subscription as the paths that are not routing read it (SUBSCRIBE replacing one, the ACL
 * applied again, the admin API, a persistent session's replay): made on demand and read at once
 * — it reads the table's arrays by trie id, which a later subscription may take over.
 */
class SubscriptionView implements Subscription {
  constructor(
    private readonly table: SubscriptionTable,
    readonly filter: string,
    readonly trieId: number,
  ) {}

  get qos(): QoS {
    return this.table.qos(this.trieId);
  }

  get noLocal(): boolean {
    return this.table.noLocal(this.trieId);
  }

  get retainAsPublished(): boolean {
    return this.table.retainAsPublished(this.trieId);
  }

  get retainHandling(): 0 | 1 | 2 {
    return this.table.retainHandling(this.trieId);
  }

  get subscriptionId(): number | undefined {
    return this.table.subscriptionId(this.trieId);
  }

  get start(): readonly number[] | undefined {
    return this.table.start(this.trieId);
  }

  /** Set when the ACL is applied again (Router.enforceAcl). */
  get readDenied(): ((topic: string) => boolean) | undefined {
    return this.table.readDenied(this.trieId);
  }

  set readDenied(f: ((topic: string) => boolean) | undefined) {
    this.table.setReadDenied(this.trieId, f);
  }
}

/**
 * Every session's subscriptions: the filters in the native trie, and per trie id the session
 * holding it and its options in arrays (issue 15: no object per subscription — 100,000 filters
 * cost 64 B of JS heap each as records; a session keeps only filter → trie id).
 */
export class SubscriptionTable implements SubscriptionViews {
  private readonly trie = new TopicTrie();
  /** topic → matching subscription ids, valid until the next change; bounded by ROUTE_CACHE_MAX names and ROUTE_CACHE_CHARS. */
  private readonly routes = new TopicMemo<Uint32Array>(ROUTE_CACHE_MAX, ROUTE_CACHE_CHARS);
  /** Trie ids of the members of each shared subscription (`$share/{group}/{filter}`). */
  private readonly shareGroups = new Map<string, ShareGroup>();
  /** The group of each shared subscription's trie id (its size: how many shared subscriptions there are). */
  private readonly groupOf = new Map<number, ShareGroup>();
  /** Route cache window: lookups and hits so far; whether misses are cached (see ROUTE_WINDOW). */
  private lookups = 0;
  private hits = 0;
  private caching = true;
  /** Topics matched without the cache while it is off (every 16th looks it up). */
  private skipped = 0;
  /** By trie id: the session holding the subscription; undefined for a free id. */
  private readonly owners: (Session | undefined)[] = [];
  /** By trie id: the options' byte (see NO_LOCAL …). */
  private flags = new Uint8Array(1024);
  /** By trie id: a persistent session's start (Subscription.start, shared arrays), else undefined. */
  private readonly starts: (readonly number[] | undefined)[] = [];
  private readonly rare = new Map<number, Rare>();
  private readonly freeIds: number[] = [];

  /** The session holding subscription `id` (undefined: no such subscription). */
  session(id: number): Session | undefined {
    return this.owners[id];
  }

  qos(id: number): QoS {
    return ((this.flags[id] as number) & 3) as QoS;
  }

  noLocal(id: number): boolean {
    return ((this.flags[id] as number) & NO_LOCAL) !== 0;
  }

  retainAsPublished(id: number): boolean {
    return ((this.flags[id] as number) & RAP) !== 0;
  }

  retainHandling(id: number): 0 | 1 | 2 {
    return (((this.flags[id] as number) >> RH_SHIFT) & 3) as 0 | 1 | 2;
  }

  /** A `$share/{group}/{filter}` member. */
  shared(id: number): boolean {
    return ((this.flags[id] as number) & SHARED) !== 0;
  }

  subscriptionId(id: number): number | undefined {
    return ((this.flags[id] as number) & RARE) === 0 ? undefined : this.rare.get(id)?.subscriptionId;
  }

  readDenied(id: number): ((topic: string) => boolean) | undefined {
    return ((this.flags[id] as number) & RARE) === 0 ? undefined : this.rare.get(id)?.readDenied;
  }

  setReadDenied(id: number, f: ((topic: string) => boolean) | undefined): void {
    const r = ((this.flags[id] as number) & RARE) === 0 ? undefined : this.rare.get(id);
    if (r) r.readDenied = f;
    else if (f !== undefined) {
      this.rare.set(id, { subscriptionId: undefined, readDenied: f });
      this.flags[id] = (this.flags[id] as number) | RARE;
    }
  }

  start(id: number): readonly number[] | undefined {
    return this.starts[id];
  }

  view(filter: string, id: number): Subscription {
    return new SubscriptionView(this, filter, id);
  }

  /** Put `filter` for `session` (replacing its subscription to the same filter, same trie id). */
  put(session: Session, filter: string, opts: Omit<Subscription, 'filter' | 'trieId'>): { id: number; existed: boolean } {
    const existing = session.subscriptions.id(filter);
    const id = existing ?? this.freeIds.pop() ?? this.owners.length;
    if (existing === undefined) {
      this.trie.subscribe(filter, id);
      this.routes.clear();
    }
    this.owners[id] = session;
    if (id >= this.flags.length) {
      const grown = new Uint8Array(Math.max(id + 1, this.flags.length * 2));
      grown.set(this.flags);
      this.flags = grown;
    }
    let bits = opts.qos | (opts.noLocal ? NO_LOCAL : 0) | (opts.retainAsPublished ? RAP : 0) | (opts.retainHandling << RH_SHIFT) | (filter.startsWith('$share/') ? SHARED : 0);
    this.rare.delete(id);
    if (opts.subscriptionId !== undefined || opts.readDenied !== undefined) {
      this.rare.set(id, { subscriptionId: opts.subscriptionId, readDenied: opts.readDenied });
      bits |= RARE;
    }
    this.flags[id] = bits;
    this.starts[id] = opts.start;
    if (existing === undefined && (bits & SHARED) !== 0) {
      let group = this.shareGroups.get(filter);
      if (!group) this.shareGroups.set(filter, (group = { ids: [], next: 0 }));
      group.ids.push(id);
      this.groupOf.set(id, group);
    }
    session.addSubscription(filter, id, this);
    return { id, existed: existing !== undefined };
  }

  /** Take subscription `id` to `filter` out of the trie (the caller removes it from its session). */
  remove(filter: string, id: number): void {
    this.routes.clear();
    const group = this.groupOf.get(id);
    if (group !== undefined) {
      const i = group.ids.indexOf(id);
      if (i >= 0) group.ids.splice(i, 1);
      if (group.ids.length === 0) this.shareGroups.delete(filter);
      this.groupOf.delete(id);
    }
    this.trie.unsubscribe(filter, id);
    this.owners[id] = undefined;
    this.starts[id] = undefined;
    this.flags[id] = 0;
    this.rare.delete(id);
    this.freeIds.push(id);
  }

  /**
   * Ids of the subscriptions matching `topic` (one member per shared group): valid until the
   * next match (the trie reuses the array; routing reads it before anything can match again).
   */
  match(topic: string): Uint32Array {
    if (this.groupOf.size > 0) return this.trie.match(topic);
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
   * The subscription a match of `id` delivers to: `id` itself, unless it is a shared one whose
   * client is away — then a member of its group whose client is connected (onlineMember).
   */
  deliversTo(id: number): number {
    if (((this.flags[id] as number) & SHARED) === 0 || this.owners[id]?.outlet !== null) return id;
    return this.onlineMember(id);
  }

  /**
   * A shared subscription's member whose client is connected, taken round-robin among the
   * group (else `id`, the trie's pick, which keeps the message for it while it is away).
   */
  onlineMember(id: number): number {
    const group = this.groupOf.get(id);
    return group === undefined ? id : (this.nextOnline(group) ?? id);
  }

  /** A member of the shared subscription `filter` (`$share/{group}/{filter}`) whose client is connected and whose session `accept`s, round-robin; undefined: none. */
  memberOf(filter: string, accept: (s: Session) => boolean): number | undefined {
    const group = this.shareGroups.get(filter);
    return group === undefined ? undefined : this.nextOnline(group, accept);
  }

  private nextOnline(group: ShareGroup, accept?: (s: Session) => boolean): number | undefined {
    const n = group.ids.length;
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      const other = group.ids[i] as number;
      const s = this.owners[other];
      if (s !== undefined && s.outlet !== null && (accept === undefined || accept(s))) {
        group.next = (i + 1) % n;
        return other;
      }
    }
    return undefined;
  }
}
