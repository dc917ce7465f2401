//! Property tests: the subscription trie and the retained index against a naive
//! matcher over random filters, topics and subscribe/unsubscribe sequences.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use strata_core::topic::{parse_filter, RetainedIndex, SubscriptionTrie};

/// The MQTT matching rules written as plainly as possible.
fn naive_match(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    // [MQTT-4.7.2-1]
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    let mut i = 0;
    loop {
        match (f.get(i), t.get(i)) {
            // '#' matches the parent level and any number of levels below.
            (Some(&"#"), _) => return true,
            (Some(&"+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

/// Levels that collide often, plus a wider set so that some nodes get more than
/// eight children (the trie's hash-table representation) and some levels are
/// longer than the 16 bytes stored inline.
const NARROW: &[&str] = &["a", "b", "", "$s", "c"];
const WIDE: &[&str] = &[
    "n0",
    "n1",
    "n2",
    "n3",
    "n4",
    "n5",
    "n6",
    "n7",
    "n8",
    "n9",
    "n10",
    "n11",
    "a-level-longer-than-16-bytes",
    "0123456789abcdef",
    "0123456789abcdefg",
];

fn level() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => prop::sample::select(NARROW), 2 => prop::sample::select(WIDE)]
}

fn topic() -> impl Strategy<Value = String> {
    // A lone empty level would be the empty topic name, which is invalid.
    prop::collection::vec(level(), 1..5)
        .prop_map(|v| v.join("/"))
        .prop_filter("empty topic", |t| !t.is_empty())
}

fn plain_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => level(), 2 => Just("+")], 0..4),
        any::<bool>(),
    )
        .prop_filter_map("empty filter", |(levels, hash)| {
            let mut levels = levels;
            if hash {
                levels.push("#");
            }
            let f = levels.join("/");
            (!f.is_empty()).then_some(f)
        })
}

fn filter() -> impl Strategy<Value = String> {
    (
        plain_filter(),
        prop_oneof![3 => Just(None), 1 => Just(Some("g")), 1 => Just(Some("h"))],
    )
        .prop_map(|(f, g)| match g {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Sub(String, u32),
    Unsub(String, u32),
    Match(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (filter(), 0u32..6).prop_map(|(f, id)| Op::Sub(f, id)),
        2 => (filter(), 0u32..6).prop_map(|(f, id)| Op::Unsub(f, id)),
        3 => topic().prop_map(Op::Match),
    ]
}

/// Kuhn's augmenting paths: can every leftover id be assigned to a distinct group
/// that contains it, covering all groups?
fn perfect_assignment(leftover: &[u32], groups: &[&BTreeSet<u32>]) -> bool {
    if leftover.len() != groups.len() {
        return false;
    }
    fn try_assign(
        g: usize,
        leftover: &[u32],
        groups: &[&BTreeSet<u32>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (i, id) in leftover.iter().enumerate() {
            if groups[g].contains(id) && !seen[i] {
                seen[i] = true;
                let free = match owner[i] {
                    None => true,
                    Some(other) => try_assign(other, leftover, groups, seen, owner),
                };
                if free {
                    owner[i] = Some(g);
                    return true;
                }
            }
        }
        false
    }
    let mut owner = vec![None; leftover.len()];
    (0..groups.len()).all(|g| {
        let mut seen = vec![false; leftover.len()];
        try_assign(g, leftover, groups, &mut seen, &mut owner)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn trie_matches_naive_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut trie = SubscriptionTrie::new();
        // (full filter string) -> ids; the full string keeps groups apart.
        let mut model: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Sub(f, id) => {
                    let added = trie.subscribe(&f, id).unwrap();
                    prop_assert_eq!(added, model.entry(f).or_default().insert(id));
                }
                Op::Unsub(f, id) => {
                    let removed = trie.unsubscribe(&f, id).unwrap();
                    let was = model.get_mut(&f).is_some_and(|s| s.remove(&id));
                    prop_assert_eq!(removed, was);
                }
                Op::Match(t) => {
                    let mut out = Vec::new();
                    trie.match_topic(&t, &mut out);
                    let mut plain: Vec<u32> = Vec::new();
                    let mut groups: Vec<&BTreeSet<u32>> = Vec::new();
                    for (f, ids) in &model {
                        let p = parse_filter(f).unwrap();
                        if ids.is_empty() || !naive_match(p.filter, &t) {
                            continue;
                        }
                        match p.group {
                            None => plain.extend(ids),
                            Some(_) => groups.push(ids),
                        }
                    }
                    // Every plain match exactly once, plus exactly one member per group.
                    let mut leftover: HashMap<u32, usize> = HashMap::new();
                    for id in &out {
                        *leftover.entry(*id).or_default() += 1;
                    }
                    for id in &plain {
                        let n = leftover.get_mut(id);
                        prop_assert!(n.as_ref().is_some_and(|n| **n > 0), "missing plain {} for {}: {:?}", id, t, out);
                        *n.unwrap() -= 1;
                    }
                    let leftover: Vec<u32> = leftover
                        .into_iter()
                        .flat_map(|(id, n)| std::iter::repeat_n(id, n))
                        .collect();
                    prop_assert!(
                        perfect_assignment(&leftover, &groups),
                        "topic {} out {:?} plain {:?} groups {:?}", t, out, plain, groups
                    );
                }
            }
            let total: usize = model.values().map(BTreeSet::len).sum();
            prop_assert_eq!(trie.len(), total);
        }
        // Unsubscribing everything leaves an empty trie that matches nothing.
        for (f, ids) in &model {
            for id in ids {
                prop_assert!(trie.unsubscribe(f, *id).unwrap());
            }
        }
        prop_assert!(trie.is_empty());
        let mut out = Vec::new();
        for t in ["a", "a/b", "$s/a", "", "/"] {
            trie.match_topic(t, &mut out);
        }
        prop_assert!(out.is_empty());
    }

    #[test]
    fn shared_group_round_robin_is_fair(
        members in prop::collection::btree_set(0u32..50, 1..8),
        churn in prop::collection::vec((0u32..50, any::<bool>()), 0..20),
        rounds in 1usize..5,
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut current = members.clone();
        for id in &members {
            trie.subscribe("$share/g/s/+/t", *id).unwrap();
        }
        // Membership changes, and messages in between, must not break fairness.
        for (id, join) in churn {
            if join {
                trie.subscribe("$share/g/s/+/t", id).unwrap();
                current.insert(id);
            } else if current.len() > 1 {
                trie.unsubscribe("$share/g/s/+/t", id).unwrap();
                current.remove(&id);
            }
            let mut out = Vec::new();
            trie.match_topic("s/x/t", &mut out);
            prop_assert_eq!(out.len(), 1);
            prop_assert!(current.contains(&out[0]));
        }
        // Over len * rounds consecutive messages each member gets exactly `rounds`.
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for _ in 0..current.len() * rounds {
            let mut out = Vec::new();
            trie.match_topic("s/1/t", &mut out);
            prop_assert_eq!(out.len(), 1, "each message goes to exactly one member");
            *counts.entry(out[0]).or_default() += 1;
        }
        prop_assert_eq!(counts.len(), current.len());
        prop_assert!(counts.values().all(|&n| n == rounds), "{:?}", counts);
    }

    #[test]
    fn retained_matches_naive_model(
        ops in prop::collection::vec((topic(), any::<bool>()), 0..60),
        filters in prop::collection::vec(filter(), 1..20),
    ) {
        let mut index = RetainedIndex::new();
        let mut model: BTreeSet<String> = BTreeSet::new();
        for (t, set) in ops {
            if set {
                prop_assert_eq!(index.set(&t).unwrap(), model.insert(t));
            } else {
                prop_assert_eq!(index.remove(&t), model.remove(&t));
            }
            prop_assert_eq!(index.len(), model.len());
        }
        for f in filters {
            let inner = parse_filter(&f).unwrap().filter;
            let mut got = index.match_filter(&f).unwrap();
            got.sort();
            let want: Vec<String> = model.iter().filter(|t| naive_match(inner, t)).cloned().collect();
            prop_assert_eq!(got, want, "filter {}", f);
        }
        for t in &model {
            prop_assert!(index.remove(t));
        }
        prop_assert!(index.is_empty());
        prop_assert!(index.match_filter("#").unwrap().is_empty());
    }
}

#[test]
fn naive_matcher_sanity() {
    assert!(naive_match("a/#", "a"));
    assert!(naive_match("#", "a/b"));
    assert!(!naive_match("#", "$a"));
    assert!(!naive_match("+/b", "$a/b"));
    assert!(naive_match("$a/+", "$a/b"));
    assert!(naive_match("+", ""));
    assert!(!naive_match("+", "/"));
    assert!(naive_match("+/+", "/"));
    assert!(!naive_match("a/b", "a"));
}
