use super::*;

fn reason(r: Result<(), CoreError>) -> String {
    match r {
        Err(CoreError::InvalidTopic(why)) => why,
        other => panic!("expected InvalidTopic, got {other:?}"),
    }
}

#[test]
fn valid_topic_names() {
    for t in [
        "a",
        "a/b/c",
        "/",
        "//",
        "/a",
        "a/",
        "$SYS/broker",
        "sport/tennis/player1",
        "ü/ñ/€",
        " ",
        "$share/g/x",
    ] {
        assert_eq!(validate_topic_name(t), Ok(()), "{t}");
    }
}

#[test]
fn mqtt_4_7_3_1_empty_names_and_filters_are_invalid() {
    assert!(reason(validate_topic_name("")).contains("empty"));
    assert!(reason(validate_topic_filter("")).contains("empty"));
}

#[test]
fn mqtt_3_3_2_2_wildcards_in_topic_names_are_invalid() {
    for t in ["+", "#", "a/+", "a/#", "a+b", "a#"] {
        assert!(reason(validate_topic_name(t)).contains("wildcard"), "{t}");
    }
}

#[test]
fn mqtt_4_7_3_2_nul_is_invalid() {
    assert!(reason(validate_topic_name("a\0b")).contains("U+0000"));
    assert!(reason(validate_topic_filter("a/\0")).contains("U+0000"));
    assert!(reason(validate_topic_filter("$share/g/\0")).contains("U+0000"));
}

#[test]
fn mqtt_4_7_3_3_length_limit() {
    let ok = "a".repeat(MAX_TOPIC_BYTES);
    assert_eq!(validate_topic_name(&ok), Ok(()));
    assert_eq!(validate_topic_filter(&ok), Ok(()));
    let long = "a".repeat(MAX_TOPIC_BYTES + 1);
    assert!(reason(validate_topic_name(&long)).contains("65535"));
    assert!(reason(validate_topic_filter(&long)).contains("65535"));
    // Multi-byte characters count in bytes, not chars.
    let wide = "€".repeat(MAX_TOPIC_BYTES / 3 + 1);
    assert!(validate_topic_name(&wide).is_err());
}

#[test]
fn valid_filters() {
    for f in [
        "#",
        "+",
        "+/+",
        "a/#",
        "a/+/c",
        "/#",
        "+/",
        "/+",
        "a//b",
        "$SYS/#",
        "+/#",
        "a/b",
        "$share",
        "$sharex/a",
    ] {
        assert_eq!(validate_topic_filter(f), Ok(()), "{f}");
    }
}

#[test]
fn mqtt_4_7_1_1_hash_must_be_last_and_whole_level() {
    for f in ["a/#/b", "#/a", "a#", "a/b#", "#a", "##", "a/#/"] {
        assert!(validate_topic_filter(f).is_err(), "{f}");
    }
}

#[test]
fn mqtt_4_7_1_2_plus_must_be_whole_level() {
    for f in ["a+", "a/+b", "++", "+a/b", "a/b+/c"] {
        assert!(reason(validate_topic_filter(f)).contains("'+'"), "{f}");
    }
}

#[test]
fn mqtt_4_8_2_1_shared_filters_parse() {
    assert_eq!(
        parse_filter("$share/g1/a/+/c"),
        Ok(ParsedFilter {
            group: Some("g1"),
            filter: "a/+/c"
        })
    );
    assert_eq!(
        parse_filter("$share/g/#"),
        Ok(ParsedFilter {
            group: Some("g"),
            filter: "#"
        })
    );
    // A shared filter of a $-topic filter is fine.
    assert_eq!(
        parse_filter("$share/g/$SYS/x"),
        Ok(ParsedFilter {
            group: Some("g"),
            filter: "$SYS/x"
        })
    );
    assert_eq!(
        parse_filter("a/b"),
        Ok(ParsedFilter {
            group: None,
            filter: "a/b"
        })
    );
    // Without the slash it is an ordinary filter.
    assert_eq!(parse_filter("$share").map(|p| p.group), Ok(None));
}

#[test]
fn mqtt_4_8_2_1_share_name_must_not_be_empty() {
    assert!(reason(validate_topic_filter("$share//a")).contains("group"));
    assert!(validate_topic_filter("$share/").is_err());
}

#[test]
fn mqtt_4_8_2_2_share_name_chars_and_filter() {
    assert!(reason(validate_topic_filter("$share/g+/a")).contains("group"));
    assert!(reason(validate_topic_filter("$share/#/a")).contains("group"));
    assert!(reason(validate_topic_filter("$share/g")).contains("$share/{group}/{filter}"));
    assert!(reason(validate_topic_filter("$share/g/")).contains("empty"));
    assert!(validate_topic_filter("$share/g/a/#/b").is_err());
    assert!(validate_topic_filter("$share/g/a+").is_err());
}

#[test]
fn dollar_topics() {
    assert!(is_dollar_topic("$SYS/x"));
    assert!(is_dollar_topic("$"));
    assert!(!is_dollar_topic("a/$SYS"));
    assert!(!is_dollar_topic(""));
}
