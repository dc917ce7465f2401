//! The retained tree: which retained topics a new subscription's filter matches, and,
//! for [`RetainedMessages`], the retained messages themselves (their records, in the
//! layout of [`crate::topic::retained_record`]) so that they wait in Rust-owned memory and
//! cross to JavaScript only when delivered.
use std::collections::HashMap;

use crate::error::CoreError;
use crate::topic::validate::{parse_filter, validate_topic_name};

/// Children by topic level. Levels come from clients, so the hasher is seeded per
/// process rather than a fixed, collision-craftable one.
type LevelMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// One topic level.
///
/// Invariants: `slot` is `Some((name, value))` exactly when a retained topic ends here,
/// and `name` is the full topic (so matches are reported without rebuilding strings);
/// every node except the root holds a topic or has a child.
#[derive(Debug)]
struct Node<V> {
    children: LevelMap<Node<V>>,
    slot: Option<(Box<str>, V)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: LevelMap::default(),
            slot: None,
        }
    }
}

impl<V> Drop for Node<V> {
    /// Iterative, so that a topic thousands of levels deep cannot overflow the stack.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node<V>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut n) = stack.pop() {
            stack.extend(n.children.drain().map(|(_, c)| c));
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
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::default());
            }
            node = node
                .children
                .get_mut(level)
                .expect("child inserted just above");
        }
        match &mut node.slot {
            Some((_, v)) => Ok(Some(std::mem::replace(v, value))),
            slot @ None => {
                *slot = Some((topic.into(), value));
                self.len += 1;
                Ok(None)
            }
        }
    }

    /// `topic`'s value.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.slot.as_ref().map(|(_, v)| v)
    }

    /// Remove `topic`, returning its value. Any name is accepted; one that was never
    /// valid is simply not present.
    pub fn take(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = topic.split('/').collect();
        // Pass 1, read-only: present? and the deepest ancestor that stays alive.
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in levels.iter().enumerate() {
            if depth > 0 && (node.slot.is_some() || node.children.len() > 1) {
                keep_depth = depth;
            }
            node = node.children.get(*level)?;
        }
        node.slot.as_ref()?;
        let leaf = node.children.is_empty();
        // Pass 2: either cut the chain that would be left empty, or clear the slot.
        let stop = if leaf { keep_depth } else { levels.len() };
        let mut at = &mut self.root;
        for level in &levels[..stop] {
            at = at.children.get_mut(*level).expect("checked in pass 1");
        }
        let value = if leaf {
            let mut cut = at
                .children
                .remove(levels[keep_depth])
                .expect("checked in pass 1");
            if at.children.capacity() > 64 && at.children.len() * 4 < at.children.capacity() {
                at.children.shrink_to_fit();
            }
            // The removed chain ends in the topic's node.
            let mut n = &mut cut;
            for level in &levels[keep_depth + 1..] {
                n = n.children.get_mut(*level).expect("checked in pass 1");
            }
            n.slot.take().map(|(_, v)| v)
        } else {
            at.slot.take().map(|(_, v)| v)
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
        let mut emit = |n: &Node<V>| {
            if let Some((t, v)) = &n.slot {
                f(t, v);
            }
        };
        // (node, index of the next filter level to apply to its children)
        let mut stack: Vec<(&Node<V>, usize)> = vec![(&self.root, 0)];
        while let Some((node, i)) = stack.pop() {
            let Some(&level) = levels.get(i) else {
                emit(node);
                continue;
            };
            let at_root = i == 0;
            match level {
                "#" => {
                    // `a/#` matches `a` itself [MQTT-4.7.1-1] (the root holds no topic).
                    emit(node);
                    let mut sub: Vec<&Node<V>> = node
                        .children
                        .iter()
                        // [MQTT-4.7.2-1] no leading wildcard match for `$` topics.
                        .filter(|(k, _)| !(at_root && k.starts_with('$')))
                        .map(|(_, n)| n)
                        .collect();
                    while let Some(n) = sub.pop() {
                        emit(n);
                        sub.extend(n.children.values());
                    }
                }
                "+" => {
                    for (k, child) in &node.children {
                        // [MQTT-4.7.2-1]
                        if at_root && k.starts_with('$') {
                            continue;
                        }
                        stack.push((child, i + 1));
                    }
                }
                literal => {
                    if let Some(child) = node.children.get(literal) {
                        stack.push((child, i + 1));
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
