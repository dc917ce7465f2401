//! The retained tree: which retained topics a new subscription's filter matches, and,
//! for [`RetainedMessages`], the retained messages themselves (their records, in the
//! layout of [`crate::topic::retained_record`]) so that they wait in Rust-owned memory and
//! cross to JavaScript only when delivered.
use compact_str::CompactString;
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use crate::error::CoreError;
use crate::topic::validate::{parse_filter, validate_topic_name};

/// Children by topic level. Levels come from clients, so the hasher is seeded per
/// process rather than a fixed, collision-craftable one. A level of up to 24 bytes (most:
/// a device id, a number) is held inside its key, without an allocation of its own.
type LevelMap<V> = HashMap<CompactString, Node<V>, foldhash::fast::RandomState>;

/// One topic level.
///
/// Invariants: `value` is set exactly when a retained topic ends here (the topic is the
/// path of levels to it, rebuilt when a match reports it); `children` is `None` rather
/// than an empty map (most nodes are leaves: one pointer instead of a map each); every
/// node except the root holds a topic or has a child.
#[derive(Debug)]
struct Node<V> {
    children: Option<Box<LevelMap<V>>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: None,
            value: None,
        }
    }
}

impl<V> Node<V> {
    fn child(&self, level: &str) -> Option<&Node<V>> {
        self.children.as_ref()?.get(level)
    }

    fn child_count(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.len())
    }

    fn children(&self) -> impl Iterator<Item = (&CompactString, &Node<V>)> {
        self.children.iter().flat_map(|c| c.iter())
    }
}

impl<V> Drop for Node<V> {
    /// Iterative, so that a topic thousands of levels deep cannot overflow the stack.
    fn drop(&mut self) {
        let Some(children) = self.children.take() else {
            return;
        };
        let mut stack: Vec<Box<LevelMap<V>>> = vec![children];
        while let Some(mut map) = stack.pop() {
            for (_, mut n) in map.drain() {
                if let Some(c) = n.children.take() {
                    stack.push(c);
                }
            }
        }
    }
}

/// Retained topics (each with a value `V`) as a tree of levels, so that a filter is
/// answered by walking the filter's levels rather than by testing every topic.
///
/// Invariants:
/// * `len` equals the number of topics set;
/// * only valid topic names are stored (checked by [`RetainedTree::insert`]);
/// * empty branches are pruned on removal;
/// * a filter whose first level is `+` or `#` never matches a topic starting with
///   `$` [MQTT-4.7.2-1].
#[derive(Debug)]
pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        RetainedTree {
            root: Node::default(),
            len: 0,
        }
    }
}

/// Topic names that hold a retained message (their messages live elsewhere).
pub type RetainedIndex = RetainedTree<()>;

/// Retained messages: each topic's record (layout: [`crate::topic::retained_record`]).
pub type RetainedMessages = RetainedTree<Box<[u8]>>;

/// `parent`'s topic with `level` appended (the root's children: `level` alone).
fn join(parent: &str, level: &str, top: bool) -> String {
    if top {
        return level.to_owned();
    }
    let mut t = String::with_capacity(parent.len() + 1 + level.len());
    t.push_str(parent);
    t.push('/');
    t.push_str(level);
    t
}

/// A node to visit in a match: where its topic ends in the path buffer once its level is
/// appended to its parent's (`parent_len`, and whether the parent is the root).
struct Visit<'a, V> {
    node: &'a Node<V>,
    level: &'a str,
    parent_len: usize,
    top: bool,
}

impl<'a, V> Visit<'a, V> {
    /// Make `path` this node's topic (it holds the parent's, maybe followed by others').
    fn enter(&self, path: &mut String) {
        path.truncate(self.parent_len);
        if !self.top {
            path.push('/');
        }
        path.push_str(self.level);
    }
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of topics in the tree.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Set `topic`'s value; returns the one it replaces, if any.
    pub fn insert(&mut self, topic: &str, value: V) -> Result<Option<V>, CoreError> {
        validate_topic_name(topic)?;
        let mut node = &mut self.root;
        for level in topic.split('/') {
            let map = node.children.get_or_insert_with(Default::default);
            // One lookup; the level's key is allocated only when the child is new.
            node = match map.entry_ref(level) {
                EntryRef::Occupied(o) => o.into_mut(),
                EntryRef::Vacant(v) => v.insert_with_key(level.into(), Node::default()),
            };
        }
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        Ok(old)
    }

    /// `topic`'s value.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.child(level)?;
        }
        node.value.as_ref()
    }

    /// Remove `topic`, returning its value. Any name is accepted; one that was never
    /// valid is simply not present.
    pub fn take(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        // Pass 1, read-only: present? and the deepest ancestor that stays alive.
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in levels.iter().enumerate() {
            if depth > 0 && (node.value.is_some() || node.child_count() > 1) {
                keep_depth = depth;
            }
            node = node.child(level)?;
        }
        node.value.as_ref()?;
        let leaf = node.child_count() == 0;
        // Pass 2: either cut the chain that would be left empty, or clear the value.
        let stop = if leaf { keep_depth } else { levels.len() };
        let mut at = &mut self.root;
        for level in &levels[..stop] {
            at = at
                .children
                .as_mut()
                .and_then(|c| c.get_mut(*level))
                .expect("checked in pass 1");
        }
        let value = if leaf {
            let map = at.children.as_mut().expect("checked in pass 1");
            let mut cut = map.remove(levels[keep_depth]).expect("checked in pass 1");
            if map.is_empty() {
                at.children = None;
            } else if map.capacity() > 64 && map.len() * 4 < map.capacity() {
                map.shrink_to_fit();
            }
            // The removed chain ends in the topic's node.
            let mut n = &mut cut;
            for level in &levels[keep_depth + 1..] {
                n = n
                    .children
                    .as_mut()
                    .and_then(|c| c.get_mut(*level))
                    .expect("checked in pass 1");
            }
            n.value.take()
        } else {
            at.value.take()
        };
        self.len -= 1;
        value
    }

    /// Call `f` with every topic matching `filter` and its value, in no particular order.
    ///
    /// `filter` may be a `$share/{group}/{filter}`: the inner filter is used. (MQTT
    /// 5 does not send retained messages to a new shared subscription; that is the
    /// caller's rule to apply, this tree only answers which topics match.)
    pub fn for_each_match_value<F: FnMut(&str, &V)>(
        &self,
        filter: &str,
        mut f: F,
    ) -> Result<(), CoreError> {
        let parsed = parse_filter(filter)?;
        let levels: Vec<&str> = parsed.filter.split('/').collect();
        // Nodes reached by the filter's levels so far: (node, its topic, index of the next
        // filter level to apply to its children). The root's topic is empty.
        let mut stack: Vec<(&Node<V>, String, usize)> = vec![(&self.root, String::new(), 0)];
        // The topic being built while a `#` subtree is walked.
        let mut path = String::new();
        while let Some((node, topic, i)) = stack.pop() {
            let top = i == 0;
            let Some(&level) = levels.get(i) else {
                if let Some(v) = &node.value {
                    f(&topic, v);
                }
                continue;
            };
            match level {
                "#" => {
                    // `a/#` matches `a` itself [MQTT-4.7.1-1] (the root holds no topic).
                    if let Some(v) = &node.value {
                        f(&topic, v);
                    }
                    path.clear();
                    path.push_str(&topic);
                    let mut sub: Vec<Visit<'_, V>> = node
                        .children()
                        // [MQTT-4.7.2-1] no leading wildcard match for `$` topics.
                        .filter(|(k, _)| !(top && k.starts_with('$')))
                        .map(|(k, n)| Visit {
                            node: n,
                            level: k,
                            parent_len: topic.len(),
                            top,
                        })
                        .collect();
                    while let Some(v) = sub.pop() {
                        v.enter(&mut path);
                        if let Some(val) = &v.node.value {
                            f(&path, val);
                        }
                        let here = path.len();
                        sub.extend(v.node.children().map(|(k, n)| Visit {
                            node: n,
                            level: k,
                            parent_len: here,
                            top: false,
                        }));
                    }
                }
                "+" => {
                    for (k, child) in node.children() {
                        // [MQTT-4.7.2-1]
                        if top && k.starts_with('$') {
                            continue;
                        }
                        stack.push((child, join(&topic, k, top), i + 1));
                    }
                }
                literal => {
                    if let Some(child) = node.child(literal) {
                        stack.push((child, join(&topic, literal, top), i + 1));
                    }
                }
            }
        }
        Ok(())
    }

    /// Call `f` with every topic matching `filter`, in no particular order.
    pub fn for_each_match<F: FnMut(&str)>(&self, filter: &str, mut f: F) -> Result<(), CoreError> {
        self.for_each_match_value(filter, |t, _| f(t))
    }

    /// Every topic matching `filter`, in no particular order.
    pub fn match_filter(&self, filter: &str) -> Result<Vec<String>, CoreError> {
        let mut out = Vec::new();
        self.for_each_match(filter, |t| out.push(t.to_owned()))?;
        Ok(out)
    }

    /// Whether `topic` is in the tree.
    pub fn contains(&self, topic: &str) -> bool {
        self.get(topic).is_some()
    }
}

impl RetainedTree<()> {
    /// Record that `topic` holds a retained message. Returns whether it is new.
    pub fn set(&mut self, topic: &str) -> Result<bool, CoreError> {
        Ok(self.insert(topic, ())?.is_none())
    }

    /// Remove `topic`. Returns whether it was present.
    pub fn remove(&mut self, topic: &str) -> bool {
        self.take(topic).is_some()
    }
}

#[cfg(test)]
mod tests;
