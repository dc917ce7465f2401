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
mod tests;
