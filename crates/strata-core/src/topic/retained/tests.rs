use super::*;

fn index(topics: &[&str]) -> RetainedIndex {
    let mut r = RetainedIndex::new();
    for t in topics {
        assert!(r.set(t).unwrap(), "{t}");
    }
    r
}

fn matched(r: &RetainedIndex, filter: &str) -> Vec<String> {
    let mut v = r.match_filter(filter).unwrap();
    v.sort();
    v
}

const TOPICS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "a/x/c",
    "b/b",
    "/",
    "/a",
    "a//c",
    "$SYS/broker/uptime",
    "$SYS",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
];

#[test]
fn exact_plus_hash() {
    let r = index(TOPICS);
    assert_eq!(matched(&r, "a/b"), ["a/b"]);
    assert_eq!(matched(&r, "a/+/c"), ["a//c", "a/b/c", "a/x/c"]);
    assert_eq!(matched(&r, "+/b"), ["a/b", "b/b"]);
    assert_eq!(matched(&r, "+"), ["a"]);
    assert_eq!(matched(&r, "+/+"), ["/", "/a", "a/b", "b/b"]);
    assert_eq!(matched(&r, "/+"), ["/", "/a"]);
    assert_eq!(matched(&r, "nope/#"), Vec::<String>::new());
    assert_eq!(matched(&r, "a/b/c/d"), Vec::<String>::new());
}

#[test]
fn mqtt_4_7_1_1_hash_includes_parent() {
    let r = index(TOPICS);
    assert_eq!(
        matched(&r, "sport/tennis/player1/#"),
        ["sport/tennis/player1", "sport/tennis/player1/ranking"]
    );
    assert_eq!(matched(&r, "a/#"), ["a", "a//c", "a/b", "a/b/c", "a/x/c"]);
}

#[test]
fn mqtt_4_7_2_1_dollar_topics_and_leading_wildcards() {
    let r = index(TOPICS);
    let all = matched(&r, "#");
    assert_eq!(all.len(), TOPICS.len() - 2);
    assert!(all.iter().all(|t| !t.starts_with('$')));
    assert_eq!(matched(&r, "+"), ["a"]);
    assert_eq!(matched(&r, "+/broker/+"), Vec::<String>::new());
    assert_eq!(matched(&r, "$SYS/#"), ["$SYS", "$SYS/broker/uptime"]);
    assert_eq!(matched(&r, "$SYS/+/uptime"), ["$SYS/broker/uptime"]);
}

#[test]
fn shared_filter_uses_inner_filter() {
    let r = index(TOPICS);
    assert_eq!(matched(&r, "$share/g/a/+"), ["a/b"]);
}

#[test]
fn invalid_input() {
    let mut r = RetainedIndex::new();
    assert!(r.set("a/+").is_err());
    assert!(r.set("").is_err());
    assert!(r.match_filter("a/#/b").is_err());
    assert!(r.match_filter("").is_err());
    assert!(!r.remove("a/+"));
    assert!(r.is_empty());
}

#[test]
fn set_twice_remove_and_prune() {
    let mut r = index(TOPICS);
    assert!(!r.set("a/b").unwrap());
    assert_eq!(r.len(), TOPICS.len());
    assert!(r.contains("a/b/c"));
    // Removing an inner topic keeps its descendants.
    assert!(r.remove("a/b"));
    assert!(!r.remove("a/b"));
    assert!(!r.contains("a/b"));
    assert_eq!(matched(&r, "a/b/#"), ["a/b/c"]);
    assert!(!r.remove("a/b/c/d"));
    assert!(!r.remove("q"));
    for t in TOPICS {
        let was = r.contains(t);
        assert_eq!(r.remove(t), was, "{t}");
    }
    assert!(r.is_empty());
    assert!(r.root.children.is_none(), "{:?}", r.root);
}

#[test]
fn remove_leaf_keeps_ancestor_topic() {
    let mut r = index(&["a", "a/b/c/d"]);
    assert!(r.remove("a/b/c/d"));
    assert!(
        r.root.child("a").unwrap().children.is_none(),
        "a leaf again: no map"
    );
    assert_eq!(matched(&r, "#"), ["a"]);
}

#[test]
fn deep_topics_do_not_overflow() {
    let deep = vec!["x"; 30_000].join("/");
    let mut r = RetainedIndex::new();
    r.set(&deep).unwrap();
    r.set("x").unwrap();
    assert_eq!(r.match_filter("#").unwrap().len(), 2);
    assert_eq!(r.match_filter(&deep).unwrap(), std::slice::from_ref(&deep));
    assert!(r.remove(&deep));
    assert_eq!(matched(&r, "#"), ["x"]);
    r.set(&deep).unwrap();
    drop(r);
}

#[test]
fn many_topics_match_by_walking() {
    let mut r = RetainedIndex::new();
    for s in 0..10 {
        for d in 0..100 {
            r.set(&format!("site/{s}/dev/{d}/temp")).unwrap();
        }
    }
    assert_eq!(r.len(), 1000);
    assert_eq!(
        r.match_filter("site/3/dev/42/temp").unwrap(),
        ["site/3/dev/42/temp"]
    );
    assert_eq!(r.match_filter("site/+/dev/42/temp").unwrap().len(), 10);
    assert_eq!(r.match_filter("site/3/#").unwrap().len(), 100);
    assert_eq!(r.match_filter("#").unwrap().len(), 1000);
}

/// MQTT's matching rules, written plainly: the model the tree is checked against.
fn model_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false; // [MQTT-4.7.2-1]
    }
    for (i, level) in f.iter().enumerate() {
        match *level {
            "#" => return true, // includes the parent level itself [MQTT-4.7.1-1]
            "+" => {
                if i >= t.len() {
                    return false;
                }
            }
            lit => {
                if t.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
    }
    f.len() == t.len()
}

proptest::proptest! {
    /// Inserts, replacements and removals in any order; every filter's matches (topics
    /// rebuilt from their levels, values) are the model's, and the tree prunes to nothing.
    #[test]
    fn matches_equal_the_model(
        ops in proptest::collection::vec((proptest::collection::vec(proptest::sample::select(vec!["a", "b", "", "$s", "cc"]), 1..5), 0u8..3), 1..80),
        filters in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(vec!["a", "b", "", "$s", "cc", "+", "#"]), 1..5), 1..12),
    ) {
        let mut tree: RetainedTree<u32> = RetainedTree::new();
        let mut model: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
        for (n, (levels, op)) in ops.iter().enumerate() {
            let topic = levels.join("/");
            if topic.is_empty() {
                proptest::prop_assert!(tree.insert(&topic, 0).is_err(), "an empty topic name is refused");
                continue;
            }
            if op % 3 == 2 {
                proptest::prop_assert_eq!(tree.take(&topic), model.remove(&topic));
            } else {
                proptest::prop_assert_eq!(tree.insert(&topic, n as u32).unwrap(), model.insert(topic, n as u32));
            }
            proptest::prop_assert_eq!(tree.len(), model.len());
        }
        for levels in &filters {
            // Only valid filters: '#' last.
            let cut = levels.iter().position(|l| *l == "#").map_or(levels.len(), |p| p + 1);
            let filter = levels[..cut].join("/");
            if filter.is_empty() {
                continue;
            }
            let mut got: Vec<(String, u32)> = Vec::new();
            tree.for_each_match_value(&filter, |t, v| got.push((t.to_owned(), *v))).unwrap();
            got.sort();
            let want: Vec<(String, u32)> = model.iter().filter(|(t, _)| model_matches(&filter, t)).map(|(t, v)| (t.clone(), *v)).collect();
            proptest::prop_assert_eq!(got, want, "filter {:?}", filter);
        }
        for t in model.keys() {
            proptest::prop_assert!(tree.take(t).is_some());
        }
        proptest::prop_assert!(tree.root.children.is_none());
    }
}
