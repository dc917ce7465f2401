use super::*;

fn matches(t: &SubscriptionTrie, topic: &str) -> Vec<u32> {
    let mut out = Vec::new();
    t.match_topic(topic, &mut out);
    out.sort_unstable();
    out
}

fn trie(subs: &[(&str, u32)]) -> SubscriptionTrie {
    let mut t = SubscriptionTrie::new();
    for &(f, id) in subs {
        assert!(t.subscribe(f, id).unwrap(), "{f} {id}");
    }
    t
}

#[test]
fn exact_plus_and_hash() {
    let t = trie(&[
        ("a/b/c", 1),
        ("a/+/c", 2),
        ("a/#", 3),
        ("#", 4),
        ("+/b/+", 5),
        ("a/b", 6),
        ("+", 7),
        ("a/b/c/#", 8),
    ]);
    assert_eq!(matches(&t, "a/b/c"), vec![1, 2, 3, 4, 5, 8]);
    assert_eq!(matches(&t, "a/x/c"), vec![2, 3, 4]);
    assert_eq!(matches(&t, "a/b"), vec![3, 4, 6]);
    assert_eq!(matches(&t, "a"), vec![3, 4, 7]);
    assert_eq!(matches(&t, "b"), vec![4, 7]);
    assert_eq!(matches(&t, "a/b/c/d"), vec![3, 4, 8]);
}

#[test]
fn mqtt_4_7_1_1_hash_matches_parent_level() {
    let t = trie(&[("sport/tennis/player1/#", 1)]);
    assert_eq!(matches(&t, "sport/tennis/player1"), vec![1]);
    assert_eq!(matches(&t, "sport/tennis/player1/ranking"), vec![1]);
    assert_eq!(matches(&t, "sport/tennis/player1/score/wimbledon"), vec![1]);
    assert_eq!(matches(&t, "sport/tennis/player2"), Vec::<u32>::new());
    assert_eq!(matches(&t, "sport/tennis"), Vec::<u32>::new());
}

#[test]
fn mqtt_4_7_1_2_plus_matches_exactly_one_level() {
    let t = trie(&[("sport/+", 1), ("+/+", 2), ("/+", 3), ("+", 4)]);
    assert_eq!(matches(&t, "sport"), vec![4]);
    assert_eq!(matches(&t, "sport/"), vec![1, 2]);
    assert_eq!(matches(&t, "sport/x/y"), Vec::<u32>::new());
    assert_eq!(matches(&t, "/finance"), vec![2, 3]);
}

#[test]
fn empty_levels_are_levels() {
    let t = trie(&[("a//b", 1), ("a/+/b", 2), ("/", 3), ("+/+", 4)]);
    assert_eq!(matches(&t, "a//b"), vec![1, 2]);
    assert_eq!(matches(&t, "/"), vec![3, 4]);
    assert_eq!(matches(&t, "a/b"), vec![4]);
}

#[test]
fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
    let t = trie(&[
        ("#", 1),
        ("+/monitor/Clients", 2),
        ("$SYS/#", 3),
        ("$SYS/monitor/+", 4),
        ("+/#", 5),
        ("$share/g/#", 6),
        ("$share/g/$SYS/#", 7),
    ]);
    assert_eq!(matches(&t, "$SYS/monitor/Clients"), vec![3, 4, 7]);
    assert_eq!(matches(&t, "$SYS"), vec![3, 7]);
    assert_eq!(matches(&t, "x/monitor/Clients"), vec![1, 2, 5, 6]);
    // '$' elsewhere than the first character is ordinary.
    assert_eq!(matches(&t, "a/$SYS"), vec![1, 5, 6]);
}

#[test]
fn duplicate_subscribe_and_len() {
    let mut t = SubscriptionTrie::new();
    assert!(t.subscribe("a/+", 1).unwrap());
    assert!(!t.subscribe("a/+", 1).unwrap());
    assert!(t.subscribe("a/+", 2).unwrap());
    assert!(t.subscribe("$share/g/a/+", 1).unwrap());
    assert!(!t.subscribe("$share/g/a/+", 1).unwrap());
    assert!(t.subscribe("$share/h/a/+", 1).unwrap());
    assert_eq!(t.len(), 4);
    assert!(t.unsubscribe("a/+", 1).unwrap());
    assert!(!t.unsubscribe("a/+", 1).unwrap());
    assert!(!t.unsubscribe("a/b", 2).unwrap());
    assert!(!t.unsubscribe("$share/x/a/+", 2).unwrap());
    assert_eq!(t.len(), 3);
}

#[test]
fn invalid_filters_are_rejected() {
    let mut t = SubscriptionTrie::new();
    for f in ["", "a/#/b", "a+", "$share//a", "$share/g", "a\0"] {
        assert!(
            matches!(t.subscribe(f, 1), Err(CoreError::InvalidTopic(_))),
            "{f}"
        );
        assert!(t.unsubscribe(f, 1).is_err(), "{f}");
    }
    assert!(t.is_empty());
}

#[test]
fn unsubscribe_prunes_to_empty_root() {
    let filters = [
        "a/b/c",
        "a/+/c",
        "a/#",
        "#",
        "+/+/+",
        "a/b/c/d/e",
        "$share/g/a/b/c",
        "x//y",
    ];
    let mut t = SubscriptionTrie::new();
    for (i, f) in filters.iter().enumerate() {
        t.subscribe(f, i as u32).unwrap();
        t.subscribe(f, 100 + i as u32).unwrap();
    }
    t.check();
    for (i, f) in filters.iter().enumerate().rev() {
        assert!(t.unsubscribe(f, i as u32).unwrap());
        t.check();
        assert!(t.unsubscribe(f, 100 + i as u32).unwrap());
        t.check();
    }
    assert!(t.is_empty());
    assert_eq!(t.node_count(), 1);
}

#[test]
fn unsubscribe_keeps_siblings_and_ancestors() {
    let mut t = trie(&[("a/b/c/d", 1), ("a/b", 2), ("a/b/x", 3), ("a/#", 4)]);
    // root, a, b, c, d, x
    assert_eq!(t.node_count(), 6);
    assert!(t.unsubscribe("a/b/c/d", 1).unwrap());
    t.check();
    assert_eq!(t.node_count(), 4);
    assert_eq!(matches(&t, "a/b"), vec![2, 4]);
    assert_eq!(matches(&t, "a/b/x"), vec![3, 4]);
    assert!(t.unsubscribe("a/b", 2).unwrap());
    t.check();
    assert_eq!(matches(&t, "a/b/x"), vec![3, 4]);
    assert!(t.unsubscribe("a/b/x", 3).unwrap());
    t.check();
    // `a` survives for `a/#`, but `b` is gone.
    assert_eq!(t.node_count(), 2);
    assert_eq!(matches(&t, "a/b"), vec![4]);
    assert!(t.unsubscribe("a/#", 4).unwrap());
    assert_eq!(t.node_count(), 1);
    // Freed slots are reused.
    t.subscribe("q/r", 1).unwrap();
    assert_eq!(t.nodes.len(), 6);
    t.check();
}

#[test]
fn many_ids_on_one_filter_use_the_index() {
    let mut t = SubscriptionTrie::new();
    for id in 0..1000 {
        assert!(t.subscribe("a/b", id).unwrap());
    }
    for id in 0..1000 {
        assert!(!t.subscribe("a/b", id).unwrap());
    }
    for id in (0..1000).step_by(2) {
        assert!(t.unsubscribe("a/b", id).unwrap());
    }
    let expected: Vec<u32> = (1..1000).step_by(2).collect();
    assert_eq!(matches(&t, "a/b"), expected);
    for id in (1..1000).step_by(2) {
        assert!(t.unsubscribe("a/b", id).unwrap());
    }
    assert!(t.is_empty());
    assert_eq!(t.node_count(), 1);
}

#[test]
fn mqtt_4_8_2_shared_group_gets_one_member_round_robin() {
    let t = trie(&[
        ("$share/g/a/+", 1),
        ("$share/g/a/+", 2),
        ("$share/g/a/+", 3),
        ("$share/h/a/+", 10),
        ("$share/h/a/+", 11),
        ("$share/g/a/b", 20),
        ("a/+", 30),
    ]);
    let mut counts = std::collections::HashMap::<u32, u32>::new();
    for _ in 0..600 {
        let mut out = Vec::new();
        t.match_topic("a/b", &mut out);
        // plain + one of g@a/+ + one of h@a/+ + the sole member of g@a/b
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out.contains(&30) && out.contains(&20));
        assert_eq!(out.iter().filter(|&&x| (1..=3).contains(&x)).count(), 1);
        assert_eq!(out.iter().filter(|&&x| (10..=11).contains(&x)).count(), 1);
        for id in out {
            *counts.entry(id).or_default() += 1;
        }
    }
    for id in [1, 2, 3] {
        assert_eq!(counts[&id], 200);
    }
    assert_eq!(counts[&10], 300);
    assert_eq!(counts[&11], 300);
}

#[test]
fn deep_plus_filter_and_wide_frontier() {
    let depth = 2_000;
    let filter = vec!["+"; depth].join("/");
    let topic = vec!["x"; depth].join("/");
    let mut t = SubscriptionTrie::new();
    t.subscribe(&filter, 1).unwrap();
    t.subscribe(&format!("{filter}/#"), 2).unwrap();
    t.subscribe(&topic, 3).unwrap();
    // A literal chain with a `+` at every level below it.
    let mixed: Vec<&str> = (0..depth)
        .map(|i| if i % 2 == 0 { "x" } else { "+" })
        .collect();
    t.subscribe(&mixed.join("/"), 4).unwrap();
    assert_eq!(matches(&t, &topic), vec![1, 2, 3, 4]);
    assert!(t.unsubscribe(&filter, 1).unwrap());
    assert!(t.unsubscribe(&format!("{filter}/#"), 2).unwrap());
    assert!(t.unsubscribe(&topic, 3).unwrap());
    assert_eq!(matches(&t, &topic), vec![4]);
    drop(t);

    // All 2^7 = 128 combinations of `x` and `+` over 7 levels are alive at the
    // last level at once: more than the inline frontier holds.
    let mut t = SubscriptionTrie::new();
    for bits in 0u32..128 {
        let f: Vec<&str> = (0..7)
            .map(|i| if bits & (1 << i) != 0 { "+" } else { "x" })
            .collect();
        t.subscribe(&f.join("/"), bits).unwrap();
    }
    assert_eq!(matches(&t, "x/x/x/x/x/x/x"), (0..128).collect::<Vec<u32>>());
    assert_eq!(matches(&t, "y/x/x/x/x/x/x").len(), 64);
    t.check();
}

#[test]
fn many_children_and_long_levels() {
    let mut t = SubscriptionTrie::new();
    let long = "a-level-name-longer-than-sixteen-bytes";
    for i in 0..200u32 {
        t.subscribe(&format!("d/{i}/x"), i).unwrap();
        t.subscribe(&format!("d/{long}{i}/x"), 1000 + i).unwrap();
    }
    // Exactly 16 bytes and 17 bytes, at the inline boundary.
    t.subscribe("d/0123456789abcdef/x", 5000).unwrap();
    t.subscribe("d/0123456789abcdefg/x", 5001).unwrap();
    t.check();
    for i in 0..200u32 {
        assert_eq!(matches(&t, &format!("d/{i}/x")), vec![i]);
        assert_eq!(matches(&t, &format!("d/{long}{i}/x")), vec![1000 + i]);
    }
    assert_eq!(matches(&t, "d/0123456789abcdef/x"), vec![5000]);
    assert_eq!(matches(&t, "d/0123456789abcdefg/x"), vec![5001]);
    assert_eq!(matches(&t, "d/0123456789abcde/x"), Vec::<u32>::new());
    for i in 0..200u32 {
        assert!(t.unsubscribe(&format!("d/{i}/x"), i).unwrap());
        assert!(t.unsubscribe(&format!("d/{long}{i}/x"), 1000 + i).unwrap());
        if i % 50 == 0 {
            t.check();
        }
    }
    assert_eq!(matches(&t, "d/0123456789abcdefg/x"), vec![5001]);
    t.check();
    // root, d, the two boundary levels, their two `x`
    assert_eq!(t.node_count(), 6);
}

#[test]
fn short_levels_padded_with_nothing_differ() {
    // Inline keys are zero-padded; a level that ends in U+0000 bytes cannot be
    // a valid filter, but the match path must still tell lengths apart.
    let t = trie(&[("ab", 1), ("a", 2), ("a/", 3)]);
    assert_eq!(matches(&t, "a"), vec![2]);
    assert_eq!(matches(&t, "ab"), vec![1]);
    assert_eq!(matches(&t, "a\0"), Vec::<u32>::new());
    assert_eq!(matches(&t, "a/"), vec![3]);
    assert_eq!(matches(&t, "a/\0"), Vec::<u32>::new());
}

#[test]
fn pack_matches_a_byte_loop() {
    let text = b"0123456789abcdefXYZ";
    for n in 0..=16 {
        let mut padded = [0u8; 16];
        padded[..n].copy_from_slice(&text[..n]);
        let want = [le64(&padded[..8]), le64(&padded[8..])];
        assert_eq!(pack(&text[..n]), want, "{n}");
    }
}

#[test]
fn solo_id_moves_in_and_out_of_the_node() {
    let mut t = SubscriptionTrie::new();
    assert!(t.subscribe("a/b", 7).unwrap());
    assert!(!t.subscribe("a/b", 7).unwrap());
    assert_eq!(matches(&t, "a/b"), vec![7]);
    // A second id, then a shared member, join the first one in the box.
    assert!(t.subscribe("a/b", 8).unwrap());
    assert!(t.subscribe("$share/g/a/b", 9).unwrap());
    assert!(!t.subscribe("a/b", 7).unwrap());
    t.check();
    assert_eq!(matches(&t, "a/b"), vec![7, 8, 9]);
    assert!(t.unsubscribe("a/b", 7).unwrap());
    assert!(!t.unsubscribe("a/b", 7).unwrap());
    assert_eq!(matches(&t, "a/b"), vec![8, 9]);
    assert!(t.unsubscribe("$share/g/a/b", 9).unwrap());
    assert!(t.unsubscribe("a/b", 8).unwrap());
    assert_eq!(t.node_count(), 1);
    // u32::MAX cannot be stored as id + 1: it takes the boxed path.
    assert!(t.subscribe("x", u32::MAX).unwrap());
    assert!(!t.subscribe("x", u32::MAX).unwrap());
    assert!(t.subscribe("x", 0).unwrap());
    t.check();
    assert_eq!(matches(&t, "x"), vec![0, u32::MAX]);
    assert!(t.unsubscribe("x", u32::MAX).unwrap());
    assert!(t.unsubscribe("x", 0).unwrap());
    assert!(t.is_empty());
    assert_eq!(t.node_count(), 1);
    // A lone shared member does not use the solo slot.
    assert!(t.subscribe("$share/g/y", 3).unwrap());
    assert!(t.subscribe("y", 3).unwrap());
    t.check();
    assert_eq!(matches(&t, "y"), vec![3, 3]);
}

#[test]
fn split_level_cases() {
    assert_eq!(split_level("a/b/c"), ("a", Some("b/c")));
    assert_eq!(split_level("a"), ("a", None));
    assert_eq!(split_level("a/"), ("a", Some("")));
    assert_eq!(split_level("/a"), ("", Some("a")));
    assert_eq!(split_level(""), ("", None));
}
