//! Topic trie, retained messages and topic validation as JS classes and functions.
//! Conversion only: every rule lives in `strata_core::topic`.
// napi-derive registers the exports only outside `cfg(test)`, so a test build of
// this crate sees the free functions below as unused.
#![cfg_attr(test, allow(dead_code))]
use napi::bindgen_prelude::{Buffer, Uint32Array, Uint32ArraySlice};
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

    /// Like `match`, into `out` (a caller's reusable array, so that a publish allocates no
    /// typed array): returns how many ids match; when that is more than `out` holds, only the
    /// first `out.length` were written and the caller asks again with a larger one (a shared
    /// group's round-robin has then moved on once more, which only changes which member).
    #[napi]
    pub fn match_into(
        &mut self,
        topic: String,
        mut out: Uint32ArraySlice<'_>,
    ) -> Result<u32, String> {
        guard::call("TopicTrie.matchInto", || {
            // SAFETY: the array is the caller's, written here on the JS thread during the
            // call (nothing else runs meanwhile) and not kept.
            let out = unsafe { out.as_mut() };
            self.buf.clear();
            self.inner.match_topic(&topic, &mut self.buf);
            let n = self.buf.len().min(out.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            Ok(u32::try_from(self.buf.len()).unwrap_or(u32::MAX))
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

/// Retained messages in Rust-owned memory: each topic's record (layout:
/// `layouts().retained`, `strata_core::topic::retained_record`) in the retained tree, so
/// payloads wait here and cross to JavaScript only when delivered, in batches.
#[napi]
pub struct RetainedMessages {
    pub(crate) inner: core::retained::RetainedMessages,
}

/// A batch: `buffer` with `offsets` (count + 1 boundaries). From `records`, each entry is the
/// topic length (u16 LE), the topic, then the record; from `matchTopics`, each entry a topic.
#[napi(object)]
pub struct RetainedBatch {
    pub buffer: Buffer,
    pub offsets: Uint32Array,
}

/// A page of `frames`.
#[napi(object)]
pub struct RetainedFrames {
    pub frames: Buffer,
    pub sent: u32,
    pub too_large: u32,
    pub special: Buffer,
    pub special_offsets: Uint32Array,
}

#[napi]
impl RetainedMessages {
    #[napi(constructor)]
    pub fn new() -> Result<Self, String> {
        guard::call("RetainedMessages.constructor", || {
            Ok(RetainedMessages {
                inner: core::retained::RetainedMessages::new(),
            })
        })
    }

    /// Sets `topic`'s record (copied). Throws `ERR_INVALID_TOPIC` for an invalid topic
    /// name and `ERR_INVALID_ARGUMENT` for a record not in the layout.
    #[napi]
    pub fn set(&mut self, topic: String, record: &[u8]) -> Result<(), String> {
        guard::call("RetainedMessages.set", || {
            if !core::retained_record::is_record(record) {
                return Err(to_napi_coded(CoreError::InvalidArgument(
                    "retained record not in the layout".into(),
                )));
            }
            self.inner
                .insert(&topic, record.into())
                .map(|_| ())
                .map_err(to_napi_coded)
        })
    }

    /// Applies retained-table writes packed in the metadata layout (`layouts().metaOps`): the
    /// bytes the store commits for them, one call for a batch of publishes. Returns the writes
    /// applied; throws (`ERR_INVALID_ARGUMENT`, `ERR_INVALID_TOPIC`) at the first that is not a
    /// put of a whole record or a delete on the retained table with a valid topic, the ones
    /// before it applied.
    #[napi]
    pub fn apply_packed(&mut self, ops: &[u8]) -> Result<u32, String> {
        guard::call("RetainedMessages.applyPacked", || {
            core::retained_record::apply_packed(&mut self.inner, ops)
                .map(|n| n as u32)
                .map_err(to_napi_coded)
        })
    }

    /// Forgets `topic`; `true` if it was present.
    #[napi]
    pub fn delete(&mut self, topic: String) -> Result<bool, String> {
        guard::call("RetainedMessages.delete", || {
            Ok(self.inner.take(&topic).is_some())
        })
    }

    /// `topic`'s record, or null.
    #[napi]
    pub fn get(&self, topic: String) -> Result<Option<Buffer>, String> {
        guard::call("RetainedMessages.get", || {
            Ok(self.inner.get(&topic).map(|r| Buffer::from(r.to_vec())))
        })
    }

    /// The topics matching `filter` (a `$share/…` by its inner filter), without their
    /// records: `buffer` holds them back to back, `offsets` count + 1 boundaries. For a
    /// delivery in pages (`records`). Throws `ERR_INVALID_TOPIC` for an invalid filter.
    #[napi]
    pub fn match_topics(&self, filter: String) -> Result<RetainedBatch, String> {
        guard::call("RetainedMessages.matchTopics", || {
            let (buf, offsets) =
                core::retained_record::pack_topics(&self.inner, &filter).map_err(to_napi_coded)?;
            Ok(RetainedBatch {
                buffer: buf.into(),
                offsets: offsets.into(),
            })
        })
    }

    /// The records of topics `from..to` of a `matchTopics` result, each entry the topic
    /// length (u16 LE), the topic, then the record (topics no longer retained left out). Throws `ERR_INVALID_ARGUMENT` for a
    /// range or offsets that do not fit.
    #[napi]
    pub fn records(
        &self,
        topics: &[u8],
        offsets: &[u32],
        from: u32,
        to: u32,
    ) -> Result<RetainedBatch, String> {
        guard::call("RetainedMessages.records", || {
            let (buf, offs) = core::retained_record::pack_records(
                &self.inner,
                topics,
                offsets,
                from as usize,
                to as usize,
            )
            .map_err(to_napi_coded)?;
            Ok(RetainedBatch {
                buffer: buf.into(),
                offsets: offs.into(),
            })
        })
    }

    /// The records of topics `from..to` of a `matchTopics` result as QoS 0 PUBLISH packets,
    /// RETAIN set, without properties (`strata_core::topic::retained_record::frame_records`):
    /// topics no longer retained and packets over `maxPacket` left out; those with properties
    /// or delivered at QoS 1/2 (`maxQos`) returned in `special`/`specialOffsets` as a `records`
    /// batch.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn frames(
        &self,
        topics: &[u8],
        offsets: &[u32],
        from: u32,
        to: u32,
        max_qos: u8,
        v5: bool,
        max_packet: u32,
    ) -> Result<RetainedFrames, String> {
        guard::call("RetainedMessages.frames", || {
            let p = core::retained_record::frame_records(
                &self.inner,
                topics,
                offsets,
                from as usize,
                to as usize,
                max_qos,
                v5,
                max_packet as usize,
            )
            .map_err(to_napi_coded)?;
            Ok(RetainedFrames {
                frames: p.frames.into(),
                sent: p.sent as u32,
                too_large: p.too_large as u32,
                special: p.special.into(),
                special_offsets: p.special_offsets.into(),
            })
        })
    }

    /// Number of retained topics.
    #[napi(getter)]
    pub fn size(&self) -> Result<u32, String> {
        guard::call("RetainedMessages.size", || {
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
