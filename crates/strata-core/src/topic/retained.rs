//! The retained index: which retained topics a new subscription's filter matches.
//!
//! It stores topic names only; the messages themselves live elsewhere (the store),
//! keyed by the same topic.
use std::collections::HashMap;

use crate::error::CoreError;
use crate::topic::validate::{parse_filter, validate_topic_name};

/// Children by topic level. Levels come from clients, so the hasher is seeded per
/// process rather than a fixed, collision-craftable one.
type LevelMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// One topic level.
///
/// Invariants: `topic` is `Some(name)` exactly when a retained topic ends here, and
/// `name` is the full topic (so matches are reported without rebuilding strings);
/// every node except the root holds a topic or has a child.
#[derive(Debug, Default)]
struct Node {
    children: LevelMap<Node>,
    topic: Option<Box<str>>,
}

impl Drop for Node {
    /// Iterative, so that a topic thousands of levels deep cannot overflow the stack.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut n) = stack.pop() {
            stack.extend(n.children.drain().map(|(_, c)| c));
        }
    }
}

/// The set of topic names that currently hold a retained message, as a tree of
/// levels, so that a filter is answered by walking the filter's levels rather than
/// by testing every topic.
///
/// Invariants:
/// * `len` equals the number of topics set;
/// * only valid topic names are stored (checked by [`RetainedIndex::set`]);
/// * empty branches are pruned on removal;
/// * a filter whose first level is `+` or `#` never matches a topic starting with
///   `$` [MQTT-4.7.2-1].
#[derive(Debug, Default)]
pub struct RetainedIndex {
    root: Node,
    len: usize,
}

impl RetainedIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of topics in the index.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Record that `topic` holds a retained message. Returns whether it is new.
    pub fn set(&mut self, topic: &str) -> Result<bool, CoreError> {
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
        if node.topic.is_some() {
            return Ok(false);
        }
        node.topic = Some(topic.into());
        self.len += 1;
        Ok(true)
    }

    /// Whether `topic` is in the index.
    pub fn contains(&self, topic: &str) -> bool {
        let mut node = &self.root;
        for level in topic.split('/') {
            match node.children.get(level) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.topic.is_some()
    }

    /// Remove `topic`. Returns whether it was present. Any name is accepted; one
    /// that was never valid is simply not present.
    pub fn remove(&mut self, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();
        // Pass 1, read-only: present? and the deepest ancestor that stays alive.
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in levels.iter().enumerate() {
            if depth > 0 && (node.topic.is_some() || node.children.len() > 1) {
                keep_depth = depth;
            }
            match node.children.get(*level) {
                Some(n) => node = n,
                None => return false,
            }
        }
        if node.topic.is_none() {
            return false;
        }
        let leaf = node.children.is_empty();
        // Pass 2: either cut the chain that would be left empty, or clear the mark.
        let stop = if leaf { keep_depth } else { levels.len() };
        let mut at = &mut self.root;
        for level in &levels[..stop] {
            at = at.children.get_mut(*level).expect("checked in pass 1");
        }
        if leaf {
            at.children.remove(levels[keep_depth]);
            if at.children.capacity() > 64 && at.children.len() * 4 < at.children.capacity() {
                at.children.shrink_to_fit();
            }
        } else {
            at.topic = None;
        }
        self.len -= 1;
        true
    }

    /// Call `f` with every topic matching `filter`, in no particular order.
    ///
    /// `filter` may be a `$share/{group}/{filter}`: the inner filter is used. (MQTT
    /// 5 does not send retained messages to a new shared subscription; that is the
    /// caller's rule to apply, this index only answers which topics match.)
    pub fn for_each_match<F: FnMut(&str)>(&self, filter: &str, mut f: F) -> Result<(), CoreError> {
        let parsed = parse_filter(filter)?;
        let levels: Vec<&str> = parsed.filter.split('/').collect();
        // (node, index of the next filter level to apply to its children)
        let mut stack: Vec<(&Node, usize)> = vec![(&self.root, 0)];
        while let Some((node, i)) = stack.pop() {
            let Some(&level) = levels.get(i) else {
                if let Some(t) = node.topic.as_deref() {
                    f(t);
                }
                continue;
            };
            let at_root = i == 0;
            match level {
                "#" => {
                    // `a/#` matches `a` itself [MQTT-4.7.1-1] (the root holds no topic).
                    if let Some(t) = node.topic.as_deref() {
                        f(t);
                    }
                    let mut sub: Vec<&Node> = node
                        .children
                        .iter()
                        // [MQTT-4.7.2-1] no leading wildcard match for `$` topics.
                        .filter(|(k, _)| !(at_root && k.starts_with('$')))
                        .map(|(_, n)| n)
                        .collect();
                    while let Some(n) = sub.pop() {
                        if let Some(t) = n.topic.as_deref() {
                            f(t);
                        }
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

    /// Every topic matching `filter`, in no particular order.
    pub fn match_filter(&self, filter: &str) -> Result<Vec<String>, CoreError> {
        let mut out = Vec::new();
        self.for_each_match(filter, |t| out.push(t.to_owned()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
