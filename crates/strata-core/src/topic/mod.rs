//! Topic filters, the subscription trie and the retained index.
//!
//! * [`validate`]: topic name / filter rules and `$share/{group}/{filter}` parsing;
//! * [`SubscriptionTrie`]: filter -> ids, matched per published topic;
//! * [`RetainedIndex`]: retained topic names, matched per new subscription.
pub mod retained;
pub mod retained_record;
pub mod trie;
pub mod validate;

pub use retained::RetainedIndex;
pub use trie::SubscriptionTrie;
pub use validate::{
    is_dollar_topic, parse_filter, validate_plain_filter, validate_topic_filter,
    validate_topic_name, ParsedFilter, MAX_TOPIC_BYTES, SHARE_PREFIX,
};
