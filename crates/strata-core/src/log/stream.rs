//! Streams: LTS-style learning of topic structure, and filter/structure matching.
//!
//! A *structure* is a topic with some levels replaced by a wildcard. Inside one
//! shard+generation every message goes to the stream of its topic's structure.
//!
//! Learning rule ([`Learner`]): walk the topic's levels through a trie. At each node a
//! level value already known stays static; an unknown value becomes a new static child
//! while the node has fewer than `threshold` static children; past that, the node grows
//! one wildcard child and every further unknown value at that level goes through it.
//!
//! Invariants:
//! - The trie is a pure function of the ordered list of structures it produced, so it
//!   is rebuilt on open from the persisted stream table ([`Learner::replay`]).
//! - A topic always maps to the same stream for the life of a generation.
//! - Every topic matching a filter lies in a stream for which
//!   [`structure_may_match`] is true (streams are a superset, never a subset).
use std::collections::HashMap;

/// One level of a structure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Level {
    /// A literal level value.
    Static(String),
    /// A learned wildcard level (any single value).
    Any,
    /// Matches anything (used for streams whose structure was lost; never learned).
    Rest,
}

/// A learned topic structure.
pub type Structure = Vec<Level>;

/// Renders a structure as text: static levels verbatim, `+` for learned wildcards,
/// `#` for [`Level::Rest`]. Static levels equal to `+`/`#` cannot occur (topic names
/// may not contain them).
pub fn structure_to_string(s: &Structure) -> String {
    let parts: Vec<&str> = s
        .iter()
        .map(|l| match l {
            Level::Static(v) => v.as_str(),
            Level::Any => "+",
            Level::Rest => "#",
        })
        .collect();
    parts.join("/")
}

/// Parses the text produced by [`structure_to_string`].
pub fn structure_from_string(s: &str) -> Structure {
    s.split('/')
        .map(|p| match p {
            "+" => Level::Any,
            "#" => Level::Rest,
            v => Level::Static(v.to_string()),
        })
        .collect()
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Topics whose stream a learner remembers whole ([`Learner::learn`]'s first look), at most.
const MEMO_MAX: usize = 16_384;

#[derive(Debug, Clone, Default)]
struct Node {
    statics: Map<String, Node>,
    any: Option<Box<Node>>,
    /// Stream whose structure ends at this node, if any.
    stream: Option<u32>,
}

/// The LTS structure learner of one shard+generation.
#[derive(Debug, Clone)]
pub struct Learner {
    threshold: usize,
    root: Node,
    next_id: u32,
    /// Topics already mapped, and their stream: a topic keeps its stream for the life of the
    /// generation, so one lookup replaces the walk (a level split and a lookup per level) for
    /// the topics that repeat. The first [`MEMO_MAX`] topics of the generation; later ones are
    /// walked each time (not remembered in their place: with more topics than that, each
    /// seen once, emptying it and filling it again cost twice the walk).
    memo: Map<Box<str>, u32>,
}

impl Learner {
    /// A learner that turns a level into a wildcard after `threshold` distinct values.
    pub fn new(threshold: usize) -> Self {
        Learner {
            threshold: threshold.max(1),
            root: Node::default(),
            next_id: 0,
            memo: Map::default(),
        }
    }

    /// Number of streams created so far (ids are `0..count`).
    pub fn stream_count(&self) -> u32 {
        self.next_id
    }

    /// Maps `topic` to its stream. Returns `(id, Some(structure))` when a new stream was
    /// created (the caller persists it before any record refers to it).
    pub fn learn(&mut self, topic: &str) -> (u32, Option<Structure>) {
        if let Some(&id) = self.memo.get(topic) {
            return (id, None);
        }
        let (id, new) = self.walk(topic);
        if self.memo.len() < MEMO_MAX {
            self.memo.insert(topic.into(), id);
        }
        (id, new)
    }

    /// `learn` without the memo: the walk through the trie.
    fn walk(&mut self, topic: &str) -> (u32, Option<Structure>) {
        // Nearly every topic maps to a stream already learned: find it without building the
        // structure (one String per level) or changing the trie.
        if let Some(id) = self.known(topic) {
            return (id, None);
        }
        let threshold = self.threshold;
        let mut node = &mut self.root;
        let mut structure = Vec::new();
        for level in topic.split('/') {
            if node.statics.contains_key(level) {
                structure.push(Level::Static(level.to_string()));
                node = node.statics.get_mut(level).expect("checked");
            } else if node.any.is_some() || node.statics.len() >= threshold {
                structure.push(Level::Any);
                node = node.any.get_or_insert_with(Box::default);
            } else {
                structure.push(Level::Static(level.to_string()));
                node = node.statics.entry(level.to_string()).or_default();
            }
        }
        match node.stream {
            Some(id) => (id, None),
            None => {
                let id = self.next_id;
                self.next_id += 1;
                node.stream = Some(id);
                (id, Some(structure))
            }
        }
    }

    /// The stream `learn` maps `topic` to, when that creates nothing: the same walk, read-only.
    fn known(&self, topic: &str) -> Option<u32> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = match node.statics.get(level) {
                Some(n) => n,
                // learn goes through the wildcard child here (creating it if missing).
                None if node.any.is_some() || node.statics.len() >= self.threshold => {
                    node.any.as_deref()?
                }
                None => return None,
            };
        }
        node.stream
    }

    /// Rebuilds the trie from a persisted structure with id `id` (ids replayed in order).
    pub fn replay(&mut self, id: u32, structure: &Structure) {
        let mut node = &mut self.root;
        for level in structure {
            node = match level {
                Level::Static(v) => node.statics.entry(v.clone()).or_default(),
                Level::Any | Level::Rest => node.any.get_or_insert_with(Box::default),
            };
        }
        if !structure.contains(&Level::Rest) {
            node.stream = Some(id);
        }
        self.next_id = self.next_id.max(id + 1);
    }
}

/// True when some topic matching MQTT `filter` can have structure `s`.
pub fn structure_may_match(filter: &str, s: &Structure) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    // [MQTT-4.7.2-1] leading wildcards do not match `$` topics.
    if let (Some(first), Some(Level::Static(v))) = (f.first(), s.first()) {
        if (*first == "+" || *first == "#") && v.starts_with('$') {
            return false;
        }
    }
    may_match(&f, s)
}

fn may_match(f: &[&str], s: &[Level]) -> bool {
    match (f.first(), s.first()) {
        (Some(&"#"), _) => true,
        (_, Some(Level::Rest)) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(fl), Some(sl)) => {
            let ok = match sl {
                Level::Static(v) => *fl == "+" || fl == v,
                Level::Any | Level::Rest => true,
            };
            ok && may_match(&f[1..], &s[1..])
        }
    }
}

/// MQTT topic matching of a concrete topic name against a filter.
pub fn topic_matches(filter: &str, topic: &[u8]) -> bool {
    let Ok(topic) = std::str::from_utf8(topic) else {
        return false;
    };
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    let mut first = true;
    loop {
        match (f.next(), t.next()) {
            (Some("#"), tl) => return !(first && tl.is_some_and(|l| l.starts_with('$'))),
            (Some("+"), Some(tl)) => {
                if first && tl.starts_with('$') {
                    return false;
                }
            }
            (Some(fl), Some(tl)) => {
                if fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// A topic filter split into levels once, then matched against many topics without
/// allocating: the scan's per-record matcher ([`super::scan`]).
///
/// Matching is exactly [`topic_matches`] (MQTT rules, [MQTT-4.7.2-1] included: a
/// leading `+` or `#` never matches a `$`-topic), and [`FilterMatcher::may_match`] is
/// exactly [`structure_may_match`]; the unit tests and the scan property test check both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterMatcher {
    text: String,
    levels: Vec<FilterLevel>,
    /// No wildcard: a topic matches when it equals the filter.
    literal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterLevel {
    /// A literal level: `text[start..end]`.
    Literal(usize, usize),
    /// `+`
    Plus,
    /// `#` (always the last level of a valid filter)
    Hash,
}

impl FilterMatcher {
    /// Splits a plain filter (no `$share/` prefix: the caller resolves shared
    /// subscriptions to their inner filter first). Not validated here.
    pub fn new(filter: &str) -> Self {
        let mut levels = Vec::new();
        let mut start = 0;
        for level in filter.split('/') {
            let end = start + level.len();
            levels.push(match level {
                "+" => FilterLevel::Plus,
                "#" => FilterLevel::Hash,
                _ => FilterLevel::Literal(start, end),
            });
            start = end + 1;
        }
        FilterMatcher {
            text: filter.to_string(),
            literal: levels.iter().all(|l| matches!(l, FilterLevel::Literal(..))),
            levels,
        }
    }

    /// The filter text.
    pub fn filter(&self) -> &str {
        &self.text
    }

    /// Whether the concrete topic name `topic` matches (same answer as
    /// [`topic_matches`], without allocating).
    pub fn matches(&self, topic: &[u8]) -> bool {
        let text = self.text.as_bytes();
        if self.literal {
            return topic == text;
        }
        let n = topic.len();
        let dollar = topic.first() == Some(&b'$');
        // Start of the topic level at hand; n + 1 once every level is consumed.
        let mut pos = 0;
        for (i, l) in self.levels.iter().enumerate() {
            if pos > n {
                // Out of topic levels: only `#` matches (`a/#` matches `a`).
                return *l == FilterLevel::Hash;
            }
            match *l {
                // [MQTT-4.7.2-1] leading wildcards do not match `$` topics.
                FilterLevel::Hash => return !(i == 0 && dollar),
                FilterLevel::Plus => {
                    if i == 0 && dollar {
                        return false;
                    }
                    pos += topic[pos..]
                        .iter()
                        .position(|b| *b == b'/')
                        .unwrap_or(n - pos)
                        + 1;
                }
                FilterLevel::Literal(a, b) => {
                    let end = pos + (b - a);
                    // Length and separator first: most mismatches never compare bytes.
                    if end > n || (end < n && topic[end] != b'/') || topic[pos..end] != text[a..b] {
                        return false;
                    }
                    pos = end + 1;
                }
            }
        }
        pos > n
    }

    /// Whether some topic matching the filter can have structure `s` (same answer as
    /// [`structure_may_match`], without allocating). For a structure of static levels
    /// only — the topic itself — this is exactly [`FilterMatcher::matches`].
    pub fn may_match(&self, s: &[Level]) -> bool {
        // [MQTT-4.7.2-1] leading wildcards do not match `$` topics.
        if let (Some(FilterLevel::Plus | FilterLevel::Hash), Some(Level::Static(v))) =
            (self.levels.first(), s.first())
        {
            if v.starts_with('$') {
                return false;
            }
        }
        for (i, l) in self.levels.iter().enumerate() {
            match (*l, s.get(i)) {
                (FilterLevel::Hash, _) | (_, Some(Level::Rest)) => return true,
                (_, None) => return false,
                (FilterLevel::Plus, Some(_)) | (_, Some(Level::Any)) => {}
                (FilterLevel::Literal(a, b), Some(Level::Static(v))) => {
                    if v.as_bytes() != &self.text.as_bytes()[a..b] {
                        return false;
                    }
                }
            }
        }
        match s.get(self.levels.len()) {
            None => true,
            Some(l) => *l == Level::Rest,
        }
    }
}

#[cfg(test)]
mod tests;
