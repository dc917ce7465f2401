//! Topic trie, retained index and topic validation as JS classes and functions.
//! Conversion only: every rule lives in `strata_core::topic`.
// napi-derive registers the exports only outside `cfg(test)`, so a test build of
// this crate sees the free functions below as unused.
#![cfg_attr(test, allow(dead_code))]
use napi::bindgen_prelude::Uint32ArraySlice;
use napi::{Env, Result};
use napi_derive::napi;
use strata_core::error::CoreError;
use strata_core::topic::{self as core, SubscriptionTrie};

use crate::error::to_napi_coded;
use crate::guard;

fn reason(e: CoreError) -> String {
    match e {
        CoreError::InvalidTopic(why) => why,
        other => other.to_string(),
    }
}

/// Subscriptions by topic filter (plain or `$share/{group}/{filter}`), each with a
/// caller-chosen numeric id.
#[napi]
pub struct TopicTrie {
    inner: SubscriptionTrie,
    /// Reused by every `match` so that matching allocates nothing on the Rust side.
    buf: Vec<u32>,
}

#[napi]
impl TopicTrie {
    #[napi(constructor)]
    pub fn new() -> Result<Self, String> {
        guard::call("TopicTrie.constructor", || {
            Ok(TopicTrie {
                inner: SubscriptionTrie::new(),
                buf: Vec::with_capacity(64),
            })
        })
    }

    /// Adds `id` to `filter`; `true` if it was not already subscribed to it.
    /// Throws `ERR_INVALID_TOPIC` for an invalid filter.
    #[napi]
    pub fn subscribe(&mut self, filter: String, id: u32) -> Result<bool, String> {
        guard::call("TopicTrie.subscribe", || {
            self.inner.subscribe(&filter, id).map_err(to_napi_coded)
        })
    }

    /// Removes `id` from `filter`; `true` if it was subscribed.
    /// Throws `ERR_INVALID_TOPIC` for an invalid filter.
    #[napi]
    pub fn unsubscribe(&mut self, filter: String, id: u32) -> Result<bool, String> {
        guard::call("TopicTrie.unsubscribe", || {
            self.inner.unsubscribe(&filter, id).map_err(to_napi_coded)
        })
    }

    /// Ids of every subscription matching the topic name: each plain subscription
    /// once, and one member (round-robin) of each matching shared group. The topic
    /// is assumed valid (validate PUBLISH topics with `validateTopicName`).
    #[napi(js_name = "match")]
    pub fn match_topic<'env>(
        &mut self,
        env: &'env Env,
        topic: String,
    ) -> Result<Uint32ArraySlice<'env>, String> {
        guard::call("TopicTrie.match", || {
            self.buf.clear();
            self.inner.match_topic(&topic, &mut self.buf);
            Uint32ArraySlice::copy_from(env, &self.buf)
                .map_err(|e| napi::Error::new(e.status.as_ref().to_string(), e.reason))
        })
    }

    /// Number of (filter, id) subscriptions, shared members included.
    #[napi(getter)]
    pub fn size(&self) -> Result<u32, String> {
        guard::call("TopicTrie.size", || {
            Ok(u32::try_from(self.inner.len()).unwrap_or(u32::MAX))
        })
    }
}

/// Topic names that hold a retained message, answered per subscription filter.
#[napi]
pub struct RetainedIndex {
    inner: core::RetainedIndex,
}

#[napi]
impl RetainedIndex {
    #[napi(constructor)]
    pub fn new() -> Result<Self, String> {
        guard::call("RetainedIndex.constructor", || {
            Ok(RetainedIndex {
                inner: core::RetainedIndex::new(),
            })
        })
    }

    /// Records that `topic` holds a retained message. Throws `ERR_INVALID_TOPIC`
    /// for an invalid topic name.
    #[napi]
    pub fn set(&mut self, topic: String) -> Result<(), String> {
        guard::call("RetainedIndex.set", || {
            self.inner.set(&topic).map(|_| ()).map_err(to_napi_coded)
        })
    }

    /// Forgets `topic`; `true` if it was present.
    #[napi]
    pub fn delete(&mut self, topic: String) -> Result<bool, String> {
        guard::call("RetainedIndex.delete", || Ok(self.inner.remove(&topic)))
    }

    /// Every retained topic matching `filter`, in no particular order. A
    /// `$share/{group}/{filter}` is matched by its inner filter. Throws
    /// `ERR_INVALID_TOPIC` for an invalid filter.
    #[napi(js_name = "match")]
    pub fn match_filter(&self, filter: String) -> Result<Vec<String>, String> {
        guard::call("RetainedIndex.match", || {
            self.inner.match_filter(&filter).map_err(to_napi_coded)
        })
    }

    /// Same as `match`, as one string with the topics separated by U+0000 (which no
    /// topic name contains) — `matchJoined(f).split('\0')` — or `''` when nothing
    /// matches. One JS string instead of one per topic: several times faster for
    /// large answers such as `#`.
    #[napi]
    pub fn match_joined(&self, filter: String) -> Result<String, String> {
        guard::call("RetainedIndex.matchJoined", || {
            let mut out = String::new();
            self.inner
                .for_each_match(&filter, |t| {
                    if !out.is_empty() {
                        out.push('\0');
                    }
                    out.push_str(t);
                })
                .map_err(to_napi_coded)?;
            Ok(out)
        })
    }

    /// Number of retained topics.
    #[napi(getter)]
    pub fn size(&self) -> Result<u32, String> {
        guard::call("RetainedIndex.size", || {
            Ok(u32::try_from(self.inner.len()).unwrap_or(u32::MAX))
        })
    }
}

/// `null` when `topic` is a valid topic name (PUBLISH, Will), else the reason.
#[napi]
pub fn validate_topic_name(topic: String) -> Result<Option<String>, String> {
    guard::call("validateTopicName", || {
        Ok(core::validate_topic_name(&topic).err().map(reason))
    })
}

/// `null` when `filter` is a valid subscription filter (`$share/{group}/{filter}`
/// included), else the reason.
#[napi]
pub fn validate_topic_filter(filter: String) -> Result<Option<String>, String> {
    guard::call("validateTopicFilter", || {
        Ok(core::validate_topic_filter(&filter).err().map(reason))
    })
}
