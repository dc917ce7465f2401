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
    assert!(r.root.children.is_empty(), "{:?}", r.root);
}

#[test]
fn remove_leaf_keeps_ancestor_topic() {
    let mut r = index(&["a", "a/b/c/d"]);
    assert!(r.remove("a/b/c/d"));
    assert!(r.root.children["a"].children.is_empty());
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
