//! Topic name and topic filter validation, and `$share/{group}/{filter}` parsing.
//!
//! Every check names the MQTT 5.0 normative statement it enforces. Rust `&str` is
//! already well-formed UTF-8, so [MQTT-1.5.4-1] needs no check here; the codec
//! rejects ill-formed strings before they reach the core.
use crate::error::CoreError;

/// Longest topic name or filter MQTT can carry: a UTF-8 string with a 16-bit length.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Prefix that marks a shared subscription filter [MQTT-4.8.2-1].
pub const SHARE_PREFIX: &str = "$share/";

/// A topic filter after parsing: either plain or a member of a shared group.
///
/// Invariant: `filter` is a valid plain topic filter (never itself `$share/...`
/// parsed again) and `group`, when present, is non-empty and contains none of
/// `/`, `+`, `#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    /// The share name of a `$share/{group}/{filter}` subscription, `None` otherwise.
    pub group: Option<&'a str>,
    /// The filter that is matched against topic names.
    pub filter: &'a str,
}

fn invalid(why: impl Into<String>) -> CoreError {
    CoreError::InvalidTopic(why.into())
}

/// Checks that apply to names and filters alike.
fn check_common(s: &str, what: &str) -> Result<(), CoreError> {
    // [MQTT-4.7.3-1] at least one character long.
    if s.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    // [MQTT-4.7.3-3] must not encode to more than 65,535 bytes.
    if s.len() > MAX_TOPIC_BYTES {
        return Err(invalid(format!(
            "{what} is {} bytes, more than {MAX_TOPIC_BYTES}",
            s.len()
        )));
    }
    // [MQTT-4.7.3-2] must not include the null character U+0000.
    if s.as_bytes().contains(&0) {
        return Err(invalid(format!("{what} must not contain U+0000")));
    }
    Ok(())
}

/// Validates a topic name, as carried by PUBLISH or a Will.
pub fn validate_topic_name(topic: &str) -> Result<(), CoreError> {
    check_common(topic, "topic name")?;
    // [MQTT-4.7.0-1] / [MQTT-3.3.2-2] wildcards must not be used within a topic name.
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(invalid(
            "topic name must not contain the wildcards '+' or '#'",
        ));
    }
    Ok(())
}

/// Validates a plain (non-shared) topic filter. `$share/...` is *not* interpreted
/// here; use [`parse_filter`] for subscription filters.
pub fn validate_plain_filter(filter: &str) -> Result<(), CoreError> {
    check_common(filter, "topic filter")?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            // [MQTT-4.7.1-1] '#' on its own level, and the last character of the filter.
            if level != "#" {
                return Err(invalid("'#' must occupy a whole topic level"));
            }
            if levels.peek().is_some() {
                return Err(invalid("'#' must be the last level of a topic filter"));
            }
        } else if level.contains('+') && level != "+" {
            // [MQTT-4.7.1-2] '+' must occupy an entire level of the filter.
            return Err(invalid("'+' must occupy a whole topic level"));
        }
    }
    Ok(())
}

/// Parses and validates a subscription filter, recognising `$share/{group}/{filter}`.
pub fn parse_filter(filter: &str) -> Result<ParsedFilter<'_>, CoreError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        validate_plain_filter(filter)?;
        return Ok(ParsedFilter {
            group: None,
            filter,
        });
    };
    // The whole string, prefix included, is what the client sent.
    check_common(filter, "topic filter")?;
    // [MQTT-4.8.2-2] the ShareName must be followed by '/' and a topic filter.
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(invalid("shared subscription needs $share/{group}/{filter}"));
    };
    // [MQTT-4.8.2-1] ShareName at least one character long.
    if group.is_empty() {
        return Err(invalid("shared subscription group must not be empty"));
    }
    // [MQTT-4.8.2-2] ShareName must not contain '/', '+' or '#' ('/' is excluded by the split).
    if group.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(invalid(
            "shared subscription group must not contain '+', '#' or '/'",
        ));
    }
    // [MQTT-4.8.2-2] ... followed by a valid, non-empty Topic Filter.
    if inner.is_empty() {
        return Err(invalid("shared subscription filter must not be empty"));
    }
    validate_plain_filter(inner)?;
    Ok(ParsedFilter {
        group: Some(group),
        filter: inner,
    })
}

/// Validates any subscription filter, shared or not.
pub fn validate_topic_filter(filter: &str) -> Result<(), CoreError> {
    parse_filter(filter).map(|_| ())
}

/// Whether a topic name is a `$`-topic, which leading wildcards never match
/// [MQTT-4.7.2-1].
#[inline]
pub fn is_dollar_topic(topic: &str) -> bool {
    topic.as_bytes().first() == Some(&b'$')
}

#[cfg(test)]
mod tests {
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
}
