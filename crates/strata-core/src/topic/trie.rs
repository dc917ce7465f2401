//! The subscription trie: which subscriptions match a published topic name.
//!
//! Layout, chosen for the match hot path (see `benches/trie.rs`):
//! * nodes live in one arena (`Vec<Node>`, 64 bytes each) and refer to each other
//!   by `u32` index, so a walk touches compact, contiguous memory and dropping the
//!   trie is not recursive;
//! * a node's literal children are a short vector (linear scan, no hashing) until
//!   [`FEW_MAX`], then a hash table; child keys of up to 16 bytes are stored
//!   inline, so comparing a level is two word compares, not a pointer chase;
//! * subscriptions hang off a node behind one pointer, so nodes that only route
//!   (most of them) stay small.
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::error::CoreError;
use crate::topic::validate::{is_dollar_topic, parse_filter};

/// Literal children kept in a vector and scanned linearly up to this many.
const FEW_MAX: usize = 8;

/// Keys up to this many bytes are stored inline in the edge.
const INLINE: usize = 16;

/// Index of the root node; never a child, so `0` also means "no node" in `plus`.
const ROOT: u32 = 0;

/// Split the first level off a topic: `"a/b/c"` -> `("a", Some("b/c"))`,
/// `"a"` -> `("a", None)`, `"a/"` -> `("a", Some(""))`. No allocation.
#[inline]
pub(crate) fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.as_bytes().iter().position(|&b| b == b'/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// A topic level being looked up: its bytes and, when it is at most [`INLINE`]
/// bytes long, the same bytes packed into two zero-padded little-endian words, so
/// that it compares against an inline key with two word compares.
struct Probe<'a> {
    bytes: &'a [u8],
    words: [u64; 2],
}

#[inline]
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

#[inline]
fn le32(b: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Pack up to 16 bytes into two zero-padded little-endian words with overlapping
/// loads (no byte loop, no memcpy into a stack buffer that is then re-read).
#[inline]
fn pack(b: &[u8]) -> [u64; 2] {
    let n = b.len();
    match n {
        // 9..=16: the second word is the last 8 bytes shifted down past the overlap.
        9..=16 => [le64(&b[..8]), le64(&b[n - 8..]) >> (8 * (16 - n))],
        8 => [le64(b), 0],
        4..=7 => [
            le32(&b[..4]) | ((le32(&b[n - 4..]) >> (8 * (8 - n))) << 32),
            0,
        ],
        _ => {
            let mut w = 0u64;
            for (i, &x) in b.iter().enumerate() {
                w |= u64::from(x) << (8 * i);
            }
            [w, 0]
        }
    }
}

impl<'a> Probe<'a> {
    #[inline]
    fn new(level: &'a str) -> Self {
        let bytes = level.as_bytes();
        let words = if bytes.len() <= INLINE {
            pack(bytes)
        } else {
            [0, 0]
        };
        Probe { bytes, words }
    }

    #[inline]
    fn hash(&self, state: &LevelHasher) -> u64 {
        if self.bytes.len() <= INLINE {
            inline_hash(state, self.bytes.len(), self.words)
        } else {
            state.hash_bytes(self.bytes)
        }
    }
}

/// Hashes topic levels for one trie. Seeded per trie from the process-random
/// `RandomState`, because levels come from clients and a fixed hash would let one
/// craft colliding levels.
#[derive(Debug, Clone)]
struct LevelHasher {
    seeds: [u64; 2],
    state: RandomState,
}

impl LevelHasher {
    fn new() -> Self {
        let state = RandomState::default();
        LevelHasher {
            seeds: [state.hash_one(0x5eed_u64), state.hash_one(0xf01d_u64)],
            state,
        }
    }

    #[inline]
    fn hash_bytes(&self, b: &[u8]) -> u64 {
        self.state.hash_one(b)
    }
}

/// An inline level hashes with one folded multiply of its two words mixed with
/// the secret seeds (the construction foldhash uses for its fast path).
#[inline]
fn inline_hash(h: &LevelHasher, len: usize, words: [u64; 2]) -> u64 {
    let a = words[0] ^ h.seeds[0];
    let b = words[1] ^ h.seeds[1] ^ ((len as u64) << 56);
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A literal topic level on an edge. Invariant: `Inline` exactly when the level is
/// at most [`INLINE`] bytes (packed as by [`pack`]), so equal levels have equal keys.
#[derive(Debug)]
enum Key {
    Inline { len: u8, words: [u64; 2] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(p: &Probe<'_>) -> Self {
        if p.bytes.len() <= INLINE {
            Key::Inline {
                len: p.bytes.len() as u8,
                words: p.words,
            }
        } else {
            Key::Heap(p.bytes.into())
        }
    }

    #[inline]
    fn matches(&self, p: &Probe<'_>) -> bool {
        match self {
            Key::Inline { len, words } => usize::from(*len) == p.bytes.len() && *words == p.words,
            Key::Heap(b) => **b == *p.bytes,
        }
    }

    fn hash(&self, state: &LevelHasher) -> u64 {
        match self {
            Key::Inline { len, words } => inline_hash(state, usize::from(*len), *words),
            Key::Heap(b) => state.hash_bytes(b),
        }
    }
}

/// An edge to a literal child.
#[derive(Debug)]
struct Edge {
    key: Key,
    node: u32,
}

/// The literal children of a node. Invariant: keys are distinct; the variant
/// follows the count: none, one (inline, no allocation: the common case of a
/// routing level such as `dev` or `temp`), up to [`FEW_MAX`] in a vector scanned
/// linearly, and more in a hash table (back to a vector below half of that).
#[derive(Debug, Default)]
enum Children {
    #[default]
    None,
    One(Edge),
    Few(Vec<Edge>),
    Many(HashTable<Edge>),
}

impl Children {
    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            Children::None => 0,
            Children::One(_) => 1,
            Children::Few(v) => v.len(),
            Children::Many(t) => t.len(),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Children::None)
    }

    /// The child at level `p`. The small representations are inlined into the
    /// walk; the hash-table probe is a separate call so it does not make every
    /// lookup pay for its register spills.
    #[inline(always)]
    fn get(&self, p: &Probe<'_>, state: &LevelHasher) -> Option<u32> {
        match self {
            Children::None => None,
            Children::One(e) => e.key.matches(p).then_some(e.node),
            Children::Few(v) => v.iter().find(|e| e.key.matches(p)).map(|e| e.node),
            Children::Many(t) => Self::get_many(t, p, state),
        }
    }

    #[inline(never)]
    fn get_many(t: &HashTable<Edge>, p: &Probe<'_>, state: &LevelHasher) -> Option<u32> {
        t.find(p.hash(state), |e| e.key.matches(p)).map(|e| e.node)
    }

    /// Insert a child that is known to be absent.
    fn insert(&mut self, p: &Probe<'_>, node: u32, state: &LevelHasher) {
        let edge = Edge {
            key: Key::new(p),
            node,
        };
        match std::mem::take(self) {
            Children::None => *self = Children::One(edge),
            Children::One(first) => *self = Children::Few(vec![first, edge]),
            Children::Few(mut v) if v.len() < FEW_MAX => {
                v.push(edge);
                *self = Children::Few(v);
            }
            Children::Few(v) => {
                let mut t = HashTable::with_capacity(2 * FEW_MAX);
                for e in v.into_iter().chain(std::iter::once(edge)) {
                    t.insert_unique(e.key.hash(state), e, |e| e.key.hash(state));
                }
                *self = Children::Many(t);
            }
            Children::Many(mut t) => {
                t.insert_unique(p.hash(state), edge, |e| e.key.hash(state));
                *self = Children::Many(t);
            }
        }
    }

    fn remove(&mut self, p: &Probe<'_>, state: &LevelHasher) -> Option<u32> {
        match self {
            Children::None => None,
            Children::One(e) => {
                if !e.key.matches(p) {
                    return None;
                }
                let node = e.node;
                *self = Children::None;
                Some(node)
            }
            Children::Few(v) => {
                let i = v.iter().position(|e| e.key.matches(p))?;
                let node = v.swap_remove(i).node;
                if v.len() == 1 {
                    *self = Children::One(v.pop().expect("one edge"));
                }
                Some(node)
            }
            Children::Many(t) => {
                let (edge, _) = t
                    .find_entry(p.hash(state), |e| e.key.matches(p))
                    .ok()?
                    .remove();
                if t.len() <= FEW_MAX / 2 {
                    *self = Children::Few(t.drain().collect());
                } else if t.capacity() > 64 && t.len() * 4 < t.capacity() {
                    t.shrink_to_fit(|e| e.key.hash(state));
                }
                Some(edge.node)
            }
        }
    }

    #[cfg(test)]
    fn nodes(&self) -> Vec<u32> {
        match self {
            Children::None => Vec::new(),
            Children::One(e) => vec![e.node],
            Children::Few(v) => v.iter().map(|e| e.node).collect(),
            Children::Many(t) => t.iter().map(|e| e.node).collect(),
        }
    }
}

/// A short list of ids stored inline, spilling to the heap past [`Ids::INLINE`]:
/// most filters have a handful of subscribers, and reading them then costs no
/// extra cache miss.
#[derive(Debug)]
enum Ids {
    Inline { len: u8, ids: [u32; Ids::INLINE] },
    Heap(Vec<u32>),
}

impl Default for Ids {
    fn default() -> Self {
        Ids::Inline {
            len: 0,
            ids: [0; Ids::INLINE],
        }
    }
}

impl Ids {
    const INLINE: usize = 5;

    #[inline]
    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::Inline { len, ids } => &ids[..usize::from(*len)],
            Ids::Heap(v) => v,
        }
    }

    fn push(&mut self, id: u32) {
        match self {
            Ids::Inline { len, ids } if usize::from(*len) < Ids::INLINE => {
                ids[usize::from(*len)] = id;
                *len += 1;
            }
            Ids::Inline { ids, .. } => {
                let mut v = Vec::with_capacity(2 * Ids::INLINE);
                v.extend_from_slice(ids);
                v.push(id);
                *self = Ids::Heap(v);
            }
            Ids::Heap(v) => v.push(id),
        }
    }

    fn swap_remove(&mut self, idx: usize) {
        match self {
            Ids::Inline { len, ids } => {
                let last = usize::from(*len) - 1;
                ids[idx] = ids[last];
                *len -= 1;
            }
            Ids::Heap(v) => {
                v.swap_remove(idx);
                if v.len() <= Ids::INLINE / 2 {
                    let mut ids = [0; Ids::INLINE];
                    ids[..v.len()].copy_from_slice(v);
                    *self = Ids::Inline {
                        len: v.len() as u8,
                        ids,
                    };
                }
            }
        }
    }
}

/// A set of subscriber ids for one filter.
///
/// Invariants: `ids` holds no duplicates; when `pos` is present it maps every id in
/// `ids` to its index (it is built once the set grows past [`IdSet::INDEX_AT`] so
/// that a filter with many subscribers stays O(1) to change). Order is not kept.
#[derive(Debug, Default)]
struct IdSet {
    ids: Ids,
    // Boxed on purpose: 8 bytes instead of 32 while absent (nearly always), which
    // is what lets `Subs` fit one cache line.
    #[allow(clippy::box_collection)]
    pos: Option<Box<HashMap<u32, u32, RandomState>>>,
}

impl IdSet {
    const INDEX_AT: usize = 16;

    #[inline]
    fn as_slice(&self) -> &[u32] {
        self.ids.as_slice()
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn insert(&mut self, id: u32) -> bool {
        let n = self.len();
        match &mut self.pos {
            Some(pos) => {
                if pos.contains_key(&id) {
                    return false;
                }
                pos.insert(id, n as u32);
            }
            None => {
                if self.as_slice().contains(&id) {
                    return false;
                }
                if n >= Self::INDEX_AT {
                    let mut pos: HashMap<u32, u32, _> = HashMap::default();
                    pos.reserve(n + 1);
                    for (i, &x) in self.as_slice().iter().enumerate() {
                        pos.insert(x, i as u32);
                    }
                    pos.insert(id, n as u32);
                    self.pos = Some(Box::new(pos));
                }
            }
        }
        self.ids.push(id);
        true
    }

    fn remove(&mut self, id: u32) -> bool {
        let idx = match &mut self.pos {
            Some(pos) => match pos.remove(&id) {
                Some(i) => i as usize,
                None => return false,
            },
            None => match self.as_slice().iter().position(|&x| x == id) {
                Some(i) => i,
                None => return false,
            },
        };
        self.ids.swap_remove(idx);
        if let Some(pos) = &mut self.pos {
            if let Some(&moved) = self.ids.as_slice().get(idx) {
                pos.insert(moved, idx as u32);
            }
            if self.ids.as_slice().len() < Self::INDEX_AT / 2 {
                self.pos = None;
            }
        }
        true
    }
}

/// One `$share/{name}/{filter}` group at one filter.
///
/// Invariants: `members` is non-empty (an emptied group is removed); `next` counts
/// the messages delivered to this group, so member `next % len` is the next one.
#[derive(Debug)]
struct SharedGroup {
    name: Box<str>,
    members: IdSet,
    next: AtomicUsize,
}

/// Subscriptions that end at one point of the trie: plain ids and shared groups.
/// Invariant: never empty while attached to a node (an emptied `Subs` is dropped).
/// Not aligned to a cache line: a 64-byte-aligned box went through the
/// allocator's aligned path and took about 128 bytes of memory, the cost of every
/// filter ending in `/#` (a plain one's single id lives in its node: `solo`).
#[derive(Debug, Default)]
struct Subs {
    ids: IdSet,
    shared: Vec<SharedGroup>,
}

impl Subs {
    fn is_empty(&self) -> bool {
        self.ids.len() == 0 && self.shared.is_empty()
    }

    fn insert(&mut self, group: Option<&str>, id: u32) -> bool {
        let Some(name) = group else {
            return self.ids.insert(id);
        };
        if let Some(g) = self.shared.iter_mut().find(|g| &*g.name == name) {
            return g.members.insert(id);
        }
        let mut members = IdSet::default();
        members.insert(id);
        self.shared.push(SharedGroup {
            name: name.into(),
            members,
            next: AtomicUsize::new(0),
        });
        true
    }

    fn remove(&mut self, group: Option<&str>, id: u32) -> bool {
        let Some(name) = group else {
            return self.ids.remove(id);
        };
        let Some(i) = self.shared.iter().position(|g| &*g.name == name) else {
            return false;
        };
        let removed = self.shared[i].members.remove(id);
        if self.shared[i].members.len() == 0 {
            self.shared.swap_remove(i);
            if self.shared.is_empty() {
                self.shared = Vec::new();
            }
        }
        removed
    }

    #[inline]
    fn emit(&self, out: &mut Vec<u32>) {
        out.extend_from_slice(self.ids.as_slice());
        for g in &self.shared {
            let members = g.members.as_slice();
            // Round-robin: one member per group and message. A relaxed load and
            // store, not a locked fetch_add: the counter only spreads load, so two
            // threads matching at once may pick the same member, and that is fine.
            let turn = g.next.load(Ordering::Relaxed);
            g.next.store(turn.wrapping_add(1), Ordering::Relaxed);
            out.push(members[turn % members.len()]);
        }
    }
}

#[inline]
fn emit(subs: &Option<Box<Subs>>, out: &mut Vec<u32>) {
    if let Some(s) = subs {
        s.emit(out);
    }
}

/// A trie node: one topic level of some filters.
///
/// Invariants: a node other than the root holds a subscription or has a child;
/// `children` are literal levels (never `+` or `#`); `plus` is the `+` child or
/// [`ROOT`] for none; `here` holds filters that end at this node and `hash`
/// filters that continue with a final `/#` (at the root: the filter `#` itself).
/// `solo` is `id + 1` when the only subscription ending here is one plain `id`
/// (the common case of an exact filter), kept in the node itself so matching it
/// costs no extra cache miss; `solo` and `here` are never both set.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Node {
    children: Children,
    plus: u32,
    solo: Option<NonZeroU32>,
    here: Option<Box<Subs>>,
    hash: Option<Box<Subs>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus == ROOT
            && self.solo.is_none()
            && self.here.is_none()
            && self.hash.is_none()
    }

    /// Add a subscription that ends at this node (not a `/#` one).
    fn insert_here(&mut self, group: Option<&str>, id: u32) -> bool {
        if self.here.is_none() && group.is_none() {
            match self.solo {
                None => {
                    if let Some(solo) = id.checked_add(1).and_then(NonZeroU32::new) {
                        self.solo = Some(solo);
                        return true;
                    }
                }
                Some(solo) if solo.get() - 1 == id => return false,
                Some(_) => {}
            }
        }
        let here = self.here.get_or_insert_with(Box::default);
        if let Some(solo) = self.solo.take() {
            here.insert(None, solo.get() - 1);
        }
        here.insert(group, id)
    }

    /// Remove a subscription that ends at this node (not a `/#` one).
    fn remove_here(&mut self, group: Option<&str>, id: u32) -> bool {
        if group.is_none() && self.solo.is_some_and(|s| s.get() - 1 == id) {
            self.solo = None;
            return true;
        }
        let Some(here) = self.here.as_mut() else {
            return false;
        };
        let removed = here.remove(group, id);
        if here.is_empty() {
            self.here = None;
        }
        removed
    }

    #[inline]
    fn emit_here(&self, out: &mut Vec<u32>) {
        if let Some(solo) = self.solo {
            out.push(solo.get() - 1);
        }
        emit(&self.here, out);
    }
}

/// The trie nodes alive at one topic level during a match: a fixed array on the
/// stack, spilling to the heap only when more branches than that match at once.
struct Frontier {
    len: usize,
    inline: [u32; Frontier::INLINE],
    spill: Vec<u32>,
}

impl Frontier {
    const INLINE: usize = 8;

    #[inline]
    fn new() -> Self {
        Frontier {
            len: 0,
            inline: [0; Frontier::INLINE],
            spill: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, n: u32) {
        if self.len < Self::INLINE {
            self.inline[self.len] = n;
            self.len += 1;
        } else {
            self.spill_push(n);
        }
    }

    #[cold]
    fn spill_push(&mut self, n: u32) {
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.inline);
        }
        self.spill.push(n);
        self.len += 1;
    }

    #[inline]
    fn as_slice(&self) -> &[u32] {
        if self.len <= Self::INLINE {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }
}

/// One step from a node to a child, as written in a filter.
#[derive(Clone, Copy)]
enum Step<'a> {
    Plus,
    Level(&'a str),
}

/// Subscriptions by topic filter, matched against topic names.
///
/// Holds pairs (filter, id): plain filters and `$share/{group}/{filter}` members.
/// The caller owns the meaning of ids (typically one per client subscription) and
/// deduplicates per client; the trie only guarantees that an id appears at most
/// once per filter (and per group for shared filters).
///
/// Invariants:
/// * `len` equals the number of stored (filter, id) pairs;
/// * `nodes[0]` is the root; every other live node holds a subscription or has a
///   child (empty branches are pruned on unsubscribe, their slots go to `free`
///   and are reused; the arena itself does not shrink);
/// * `match_topic` reports every matching plain subscription once and exactly one
///   member of every matching shared group, chosen round-robin per (group, filter);
/// * filters whose first level is `+` or `#` never match a topic starting with `$`
///   [MQTT-4.7.2-1].
///
/// Matching takes `&self` (the round-robin counters are atomics), so a trie can be
/// read from several threads behind a read lock.
#[derive(Debug)]
pub struct SubscriptionTrie {
    nodes: Vec<Node>,
    free: Vec<u32>,
    len: usize,
    state: LevelHasher,
}

impl Default for SubscriptionTrie {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscriptionTrie {
    /// An empty trie.
    pub fn new() -> Self {
        SubscriptionTrie {
            nodes: vec![Node::default()],
            free: Vec::new(),
            len: 0,
            state: LevelHasher::new(),
        }
    }

    /// Number of (filter, id) subscriptions, shared members included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live trie nodes, the root included (for tests and metrics).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn alloc(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 trie nodes");
                self.nodes.push(Node::default());
                i
            }
        }
    }

    /// Add `id` to `filter` (plain or `$share/{group}/{filter}`). Returns whether it
    /// was newly added; `false` when the id was already subscribed to that filter.
    pub fn subscribe(&mut self, filter: &str, id: u32) -> Result<bool, CoreError> {
        let parsed = parse_filter(filter)?;
        let mut cur = ROOT;
        let mut hash = false;
        for level in parsed.filter.split('/') {
            match level {
                // Validation guarantees '#' is the last level.
                "#" => {
                    hash = true;
                    break;
                }
                "+" => {
                    let plus = self.nodes[cur as usize].plus;
                    cur = if plus != ROOT {
                        plus
                    } else {
                        let n = self.alloc();
                        self.nodes[cur as usize].plus = n;
                        n
                    };
                }
                _ => {
                    let p = Probe::new(level);
                    cur = match self.nodes[cur as usize].children.get(&p, &self.state) {
                        Some(n) => n,
                        None => {
                            let n = self.alloc();
                            self.nodes[cur as usize].children.insert(&p, n, &self.state);
                            n
                        }
                    };
                }
            }
        }
        let node = &mut self.nodes[cur as usize];
        let added = if hash {
            node.hash
                .get_or_insert_with(Box::default)
                .insert(parsed.group, id)
        } else {
            node.insert_here(parsed.group, id)
        };
        self.len += usize::from(added);
        Ok(added)
    }

    /// Remove `id` from `filter`. Returns whether it was subscribed. Branches left
    /// empty are pruned.
    pub fn unsubscribe(&mut self, filter: &str, id: u32) -> Result<bool, CoreError> {
        let parsed = parse_filter(filter)?;
        // The nodes from the root down, and the step taken into each of them.
        let mut path: Vec<(u32, Step<'_>)> = Vec::new();
        let mut cur = ROOT;
        let mut hash = false;
        for level in parsed.filter.split('/') {
            let node = &self.nodes[cur as usize];
            let (next, step) = match level {
                "#" => {
                    hash = true;
                    break;
                }
                "+" => (node.plus, Step::Plus),
                _ => (
                    node.children
                        .get(&Probe::new(level), &self.state)
                        .unwrap_or(ROOT),
                    Step::Level(level),
                ),
            };
            if next == ROOT {
                return Ok(false);
            }
            path.push((next, step));
            cur = next;
        }
        let node = &mut self.nodes[cur as usize];
        let removed = if hash {
            match node.hash.as_mut() {
                None => false,
                Some(subs) => {
                    let removed = subs.remove(parsed.group, id);
                    if subs.is_empty() {
                        node.hash = None;
                    }
                    removed
                }
            }
        } else {
            node.remove_here(parsed.group, id)
        };
        if !removed {
            return Ok(false);
        }
        self.len -= 1;
        // Prune from the bottom while nodes are left empty.
        while let Some(&(child, step)) = path.last() {
            if !self.nodes[child as usize].is_empty() {
                break;
            }
            path.pop();
            let parent = path.last().map_or(ROOT, |&(n, _)| n);
            let parent = &mut self.nodes[parent as usize];
            match step {
                Step::Plus => parent.plus = ROOT,
                Step::Level(l) => {
                    parent.children.remove(&Probe::new(l), &self.state);
                }
            }
            self.nodes[child as usize] = Node::default();
            self.free.push(child);
        }
        Ok(true)
    }

    /// Append to `out` the ids of every subscription matching `topic`: all plain
    /// subscriptions, and one member per matching shared group (round-robin).
    ///
    /// `topic` is expected to be a valid topic name (the caller validated the
    /// PUBLISH); it is not checked again here. Allocates nothing beyond growing
    /// `out` (which is not cleared), unless more than [`Frontier::INLINE`] trie
    /// branches match at once.
    ///
    /// The walk is breadth-first, one topic level at a time: each level is split
    /// and packed once, and the lookups of all branches alive at that level (the
    /// literal path and every `+` path) are independent of each other, so their
    /// cache misses overlap instead of queueing behind a recursion.
    pub fn match_topic(&self, topic: &str, out: &mut Vec<u32>) {
        // Two frontiers used alternately (swapping them would copy both arrays).
        let mut frontiers = [Frontier::new(), Frontier::new()];
        let (a, b) = frontiers.split_at_mut(1);
        let (mut cur, mut next) = (&mut a[0], &mut b[0]);
        let root = &self.nodes[ROOT as usize];
        let (level, mut rest) = split_level(topic);
        // [MQTT-4.7.2-1] a topic starting with '$' is not matched by a filter whose
        // first level is a wildcard.
        if !is_dollar_topic(topic) {
            emit(&root.hash, out);
            if root.plus != ROOT {
                cur.push(root.plus);
            }
        }
        if let Some(child) = root.children.get(&Probe::new(level), &self.state) {
            cur.push(child);
        }
        while let Some(r) = rest {
            if cur.is_empty() {
                return;
            }
            let (level, after) = split_level(r);
            let probe = Probe::new(level);
            next.clear();
            for &n in cur.as_slice() {
                let node = &self.nodes[n as usize];
                // `a/#` matches `a` itself and everything below it [MQTT-4.7.1-1].
                emit(&node.hash, out);
                if node.plus != ROOT {
                    next.push(node.plus);
                }
                if let Some(child) = node.children.get(&probe, &self.state) {
                    next.push(child);
                }
            }
            std::mem::swap(&mut cur, &mut next);
            rest = after;
        }
        for &n in cur.as_slice() {
            let node = &self.nodes[n as usize];
            emit(&node.hash, out);
            node.emit_here(out);
        }
    }

    /// Check the structural invariants (tests only): every live non-root node is
    /// reachable once and non-empty, and `len` matches the stored subscriptions.
    #[cfg(test)]
    fn check(&self) {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![ROOT];
        let mut count = 0;
        while let Some(i) = stack.pop() {
            assert!(!seen[i as usize], "node {i} reachable twice");
            seen[i as usize] = true;
            let n = &self.nodes[i as usize];
            assert!(i == ROOT || !n.is_empty(), "empty node {i}");
            assert!(
                n.solo.is_none() || n.here.is_none(),
                "solo and here both set"
            );
            count += usize::from(n.solo.is_some());
            for s in [&n.here, &n.hash].into_iter().flatten() {
                assert!(!s.is_empty());
                count += s.ids.len() + s.shared.iter().map(|g| g.members.len()).sum::<usize>();
            }
            if n.plus != ROOT {
                stack.push(n.plus);
            }
            stack.extend(n.children.nodes());
            assert_eq!(n.children.len(), n.children.nodes().len());
        }
        assert_eq!(count, self.len);
        let live = seen.iter().filter(|&&s| s).count();
        assert_eq!(live, self.node_count(), "leaked nodes");
    }
}

// One node per cache line: the match walk touches one line per level.
const _: () = assert!(std::mem::size_of::<Node>() == 64);
const _: () = assert!(std::mem::size_of::<Subs>() <= 64);

#[cfg(test)]
mod tests;
