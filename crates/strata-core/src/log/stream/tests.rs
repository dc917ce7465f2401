use super::*;
use proptest::prelude::*;

fn levels(wild: bool) -> impl Strategy<Value = String> {
    let level = if wild {
        prop_oneof![
            Just("a"),
            Just(""),
            Just("$S"),
            Just("ab"),
            Just("+"),
            Just("#")
        ]
        .boxed()
    } else {
        prop_oneof![Just("a"), Just(""), Just("$S"), Just("ab"), Just("b")].boxed()
    };
    prop::collection::vec(level, 1..5).prop_map(|v| v.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    /// The allocation-free matcher agrees with the reference functions, including
    /// on filters with `#` in the middle (invalid, but they must not diverge).
    #[test]
    fn filter_matcher_agrees(f in levels(true), t in levels(false), s in levels(true)) {
        let m = FilterMatcher::new(&f);
        prop_assert_eq!(m.matches(t.as_bytes()), topic_matches(&f, t.as_bytes()));
        let s = structure_from_string(&s);
        prop_assert_eq!(m.may_match(&s), structure_may_match(&f, &s));
    }
}

#[test]
fn learns_wildcard_after_threshold() {
    let mut l = Learner::new(3);
    let ids: Vec<u32> = (0..10)
        .map(|i| l.learn(&format!("dev/{i}/temp")).0)
        .collect();
    assert_eq!(&ids[..3], &[0, 1, 2]);
    assert!(ids[3..].iter().all(|&i| i == 3));
    let (_, s) = Learner::new(3).learn("x");
    assert_eq!(s.unwrap(), vec![Level::Static("x".into())]);
    // Known values stay on their static stream.
    assert_eq!(l.learn("dev/1/temp").0, 1);
    assert_eq!(l.learn("dev/99/hum").0, 4);
    // Known streams, static or through the wildcard, create nothing.
    assert_eq!(l.learn("dev/1/temp"), (1, None));
    assert_eq!(l.learn("dev/12345/temp"), (3, None));
    assert_eq!(l.learn("dev/7/hum"), (4, None));
    assert_eq!(l.stream_count(), 5);
}

#[test]
fn replay_reproduces_decisions() {
    let mut a = Learner::new(2);
    let mut made = Vec::new();
    for t in ["a/1", "a/2", "a/3", "b/x", "a/4", "c"] {
        if let (id, Some(s)) = a.learn(t) {
            made.push((id, s));
        }
    }
    let mut b = Learner::new(2);
    for (id, s) in &made {
        b.replay(*id, s);
    }
    for t in ["a/1", "a/9", "b/x", "b/y", "b/z", "c", "d"] {
        assert_eq!(a.clone().learn(t), b.clone().learn(t), "{t}");
    }
}

#[test]
fn filter_structure_and_topic_matching() {
    let s = structure_from_string("dev/+/temp");
    assert!(structure_may_match("dev/7/temp", &s));
    assert!(structure_may_match("dev/#", &s));
    assert!(structure_may_match("+/+/+", &s));
    assert!(!structure_may_match("dev/7", &s));
    assert!(!structure_may_match("dev/7/hum", &s));
    assert!(!structure_may_match("#", &structure_from_string("$SYS/x")));
    assert!(topic_matches("a/+/c", b"a/b/c"));
    assert!(topic_matches("a/#", b"a"));
    assert!(topic_matches("#", b"a/b"));
    assert!(!topic_matches("#", b"$SYS/b"));
    assert!(!topic_matches("+/b", b"$x/b"));
    assert!(topic_matches("$x/b", b"$x/b"));
    assert!(!topic_matches("a/b", b"a/b/c"));
}

#[test]
fn filter_matcher_equals_topic_matches_and_structure_may_match() {
    let filters = [
        "#", "+", "+/+", "a", "a/#", "a/+", "a/+/c", "a/b/c", "+/b/#", "$SYS/#", "$SYS/+", "+/x",
        "a//c", "/#", "/+", "a/b/c/#", "a/b/c/d", "$x", "$x/#", "+/+/+", "a/+/+/#", "+/#", "",
        "ab", "a/bc", "/", "a/",
    ];
    let topics = [
        "a", "a/b", "a/b/c", "a/b/c/d", "a//c", "/", "/a", "$SYS", "$SYS/x", "$SYS/x/y", "$x", "x",
        "b/x", "a/x/c", "", "a/b/", "ab", "a/bc", "a/b/c/", "//", "a/",
    ];
    let structures = [
        "a/b/c", "a/+/c", "+", "+/+", "$SYS/+", "a", "#", "a/#", "+/b/#", "$x", "/+",
    ];
    for f in filters {
        let m = FilterMatcher::new(f);
        assert_eq!(m.filter(), f);
        for t in topics {
            assert_eq!(
                m.matches(t.as_bytes()),
                topic_matches(f, t.as_bytes()),
                "{f} ~ {t}"
            );
        }
        for s in structures {
            let s = structure_from_string(s);
            assert_eq!(m.may_match(&s), structure_may_match(f, &s), "{f} ~ {s:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// The memo of whole topics answers as the trie does: for a random sequence of topics
    /// (repeats included, a low threshold so wildcards are learned along the way), every
    /// answer equals the walk's (`walk`, no memo) on a learner that saw the same sequence.
    #[test]
    fn memo_answers_as_the_walk(topics in prop::collection::vec(levels(false), 1..60), threshold in 1usize..4) {
        let mut memo = Learner::new(threshold);
        let mut walk = Learner::new(threshold);
        for t in &topics {
            prop_assert_eq!(memo.learn(t), walk.walk(t), "topic {}", t);
        }
        // And afterwards, for every topic seen.
        for t in &topics {
            prop_assert_eq!(memo.learn(t), walk.walk(t), "topic {} again", t);
        }
    }
}

#[test]
fn memo_is_bounded() {
    let mut l = Learner::new(1_000_000);
    for i in 0..(MEMO_MAX + 10) {
        let t = format!("m/{i}");
        assert_eq!(l.learn(&t).0, i as u32);
    }
    assert!(l.memo.len() <= MEMO_MAX);
    // A topic remembered and one past the bound (walked) still map to their streams.
    assert_eq!(l.learn("m/0"), (0, None));
    let past = MEMO_MAX + 5;
    assert_eq!(l.learn(&format!("m/{past}")), (past as u32, None));
}
