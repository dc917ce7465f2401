//! The retained record: one retained message as it waits in memory
//! ([`RetainedMessages`]) and as the metadata `retained` table stores it, keyed by its
//! topic — the same bytes, so a restart loads them without decoding.
//!
//! Record layout (little-endian):
//!
//! | bytes  | field                               |
//! |--------|-------------------------------------|
//! | 0      | version ([`RECORD_VERSION`])        |
//! | 1      | QoS                                 |
//! | 2..10  | received at, ms since epoch (u64)   |
//! | 10..12 | publisher length (u16)              |
//! | 12..16 | properties length (u32)             |
//! | 16..   | publisher, properties, payload      |
//!
//! A batch of matches (for delivery) is one buffer with an offset table of count + 1
//! boundaries; each entry is the topic length (u16), the topic, then the record.
//!
//! Records written before this layout (a big-endian u32 JSON header length, the header,
//! the payload: their first byte is 0) are reported as legacy by [`load`] for the caller
//! to convert.
use crate::error::CoreError;
use crate::frame::{packet_len, publish_remaining, push_var_int};
use crate::meta::packed_ops::{self, OpRef};
use crate::meta::{MetaStore, Table};
use crate::topic::retained::RetainedMessages;

/// The first byte of a record in this layout.
pub const RECORD_VERSION: u8 = 1;
/// Bytes before the publisher.
pub const RECORD_HEADER: usize = 16;
/// Byte offset of the QoS.
pub const RECORD_QOS: usize = 1;
/// Byte offset of the receive time (u64 ms).
pub const RECORD_RECEIVED_AT: usize = 2;
/// Byte offset of the publisher length (u16).
pub const RECORD_PUBLISHER_LEN: usize = 10;
/// Byte offset of the properties length (u32).
pub const RECORD_PROPERTIES_LEN: usize = 12;
/// Bytes of the topic length before each match in a batch (u16).
pub const BATCH_TOPIC_LEN: usize = 2;

/// The publisher's and the properties' lengths of a record (at least `RECORD_HEADER` bytes).
fn lengths(rec: &[u8]) -> (usize, usize) {
    let publ =
        u16::from_le_bytes([rec[RECORD_PUBLISHER_LEN], rec[RECORD_PUBLISHER_LEN + 1]]) as usize;
    let prl = u32::from_le_bytes(
        rec[RECORD_PROPERTIES_LEN..RECORD_PROPERTIES_LEN + 4]
            .try_into()
            .expect("4"),
    ) as usize;
    (publ, prl)
}

/// Whether `rec` is a whole record in this layout.
pub fn is_record(rec: &[u8]) -> bool {
    if rec.len() < RECORD_HEADER || rec[0] != RECORD_VERSION || rec[RECORD_QOS] > 2 {
        return false;
    }
    let (publ, prl) = lengths(rec);
    RECORD_HEADER + publ + prl <= rec.len()
}

/// `from..to` must lie within the `offsets.len() - 1` topics of a [`pack_topics`] result.
fn check_page(offsets: &[u32], from: usize, to: usize) -> Result<(), CoreError> {
    let count = offsets.len().saturating_sub(1);
    if from > to || to > count {
        return Err(CoreError::InvalidArgument(format!(
            "topics {from}..{to} of {count}"
        )));
    }
    Ok(())
}

/// Topic `i` of a [`pack_topics`] result.
fn page_topic<'a>(topics: &'a [u8], offsets: &[u32], i: usize) -> Result<&'a str, CoreError> {
    let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
    topics
        .get(a..b)
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| CoreError::InvalidArgument(format!("topic {i} out of the buffer")))
}

/// A batch's offsets are u32: its buffer must stay within 4 GiB.
fn fits_offsets(buf: &[u8], what: &str) -> Result<(), CoreError> {
    if buf.len() > u32::MAX as usize {
        return Err(CoreError::InvalidArgument(format!("{what} exceed 4 GiB")));
    }
    Ok(())
}

/// The topics matching `filter`, without their records: `(bytes, offsets)`, the topics
/// back to back with count + 1 boundaries. What a delivery in pages starts from: a few
/// bytes per match where the records may be gigabytes ([`pack_records`] then reads them a
/// page at a time).
pub fn pack_topics(
    tree: &RetainedMessages,
    filter: &str,
) -> Result<(Vec<u8>, Vec<u32>), CoreError> {
    let mut buf = Vec::new();
    let mut offsets = vec![0u32];
    tree.for_each_match_value(filter, |topic, _| {
        buf.extend_from_slice(topic.as_bytes());
        offsets.push(buf.len() as u32);
    })?;
    fits_offsets(&buf, "retained topics matching one filter")?;
    Ok((buf, offsets))
}

/// The records of topics `from..to` of a [`pack_topics`] result, as a batch (layout in
/// the module docs); a topic no longer retained is left out, one set meanwhile comes with
/// its record now.
pub fn pack_records(
    tree: &RetainedMessages,
    topics: &[u8],
    offsets: &[u32],
    from: usize,
    to: usize,
) -> Result<(Vec<u8>, Vec<u32>), CoreError> {
    check_page(offsets, from, to)?;
    let mut buf = Vec::new();
    let mut out = vec![0u32];
    for i in from..to {
        let topic = page_topic(topics, offsets, i)?;
        if let Some(rec) = tree.get(topic) {
            buf.extend_from_slice(&(topic.len() as u16).to_le_bytes());
            buf.extend_from_slice(topic.as_bytes());
            buf.extend_from_slice(rec);
            out.push(buf.len() as u32);
        }
    }
    fits_offsets(&buf, "retained records in one batch")?;
    Ok((buf, out))
}

/// A page of retained messages framed for a QoS 0 delivery ([`frame_records`]).
#[derive(Debug)]
pub struct RetainedFrames {
    /// PUBLISH packets back to back: QoS 0, RETAIN set ([MQTT-3.3.1-8]), no properties.
    pub frames: Vec<u8>,
    /// Packets in `frames`.
    pub sent: usize,
    /// Messages left out because their packet exceeds the client's Maximum Packet Size.
    pub too_large: usize,
    /// The messages not framed (with properties, or delivered at QoS 1/2), as a batch
    /// (layout in the module docs): `special` with `special_offsets`, count + 1 boundaries.
    pub special: Vec<u8>,
    pub special_offsets: Vec<u32>,
}

/// The records of topics `from..to` of a [`pack_topics`] result, as PUBLISH packets for a
/// delivery at QoS 0 (protocol 5 when `v5`): what a `#` subscriber on many retained topics
/// gets, without a JavaScript object per message. A topic no longer retained is left out; one
/// larger than `max_packet` is counted in `too_large` and left out ([MQTT-3.1.2-25]). Those
/// with properties (an expiry, user properties: the broker rewrites or checks those) or
/// delivered at QoS 1/2 (the subscription's `max_qos` and the message's) are returned in
/// `special` for the caller to send after the frames — retained messages of different topics
/// have no order among them.
#[allow(clippy::too_many_arguments)]
pub fn frame_records(
    tree: &RetainedMessages,
    topics: &[u8],
    offsets: &[u32],
    from: usize,
    to: usize,
    max_qos: u8,
    v5: bool,
    max_packet: usize,
) -> Result<RetainedFrames, CoreError> {
    check_page(offsets, from, to)?;
    let mut out = RetainedFrames {
        frames: Vec::new(),
        sent: 0,
        too_large: 0,
        special: Vec::new(),
        special_offsets: vec![0],
    };
    for i in from..to {
        let topic = page_topic(topics, offsets, i)?;
        let Some(rec) = tree.get(topic) else {
            continue;
        };
        let (publ, prl) = lengths(rec);
        if prl > 0 || rec[RECORD_QOS].min(max_qos) > 0 {
            let s = &mut out.special;
            s.extend_from_slice(&(topic.len() as u16).to_le_bytes());
            s.extend_from_slice(topic.as_bytes());
            s.extend_from_slice(rec);
            out.special_offsets.push(s.len() as u32);
            continue;
        }
        let payload = &rec[RECORD_HEADER + publ..];
        let remaining = publish_remaining(topic.len(), payload.len(), 0, v5);
        if packet_len(remaining) > max_packet {
            out.too_large += 1;
            continue;
        }
        let f = &mut out.frames;
        if f.is_empty() {
            f.reserve(packet_len(remaining) * (to - i));
        }
        f.push(0x31);
        push_var_int(f, remaining);
        f.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        f.extend_from_slice(topic.as_bytes());
        if v5 {
            f.push(0);
        }
        f.extend_from_slice(payload);
        out.sent += 1;
    }
    fits_offsets(&out.frames, "retained packets in one page")?;
    fits_offsets(&out.special, "retained records in one batch")?;
    Ok(out)
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct RetainedLoad {
    /// Records loaded.
    pub loaded: usize,
    /// Keys (topics) of records in the earlier layout, for the caller to convert.
    pub legacy: Vec<Vec<u8>>,
    /// Entries neither layout reads (skipped; counted).
    pub unreadable: usize,
}

/// Records read from the `retained` table, on their way to the tree: topics end to end
/// in one string.
#[derive(Default)]
struct Chunk {
    topics: String,
    ends: Vec<usize>,
    records: Vec<Box<[u8]>>,
}

/// Entries per [`Chunk`].
const CHUNK: usize = 4096;

/// Load every record of the metadata `retained` table into `into`. The table is read on
/// a thread of its own while this one builds the tree (each is about half of the time).
pub fn load(meta: &MetaStore, into: &mut RetainedMessages) -> Result<RetainedLoad, CoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(8);
    let mut out = RetainedLoad::default();
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut found = RetainedLoad::default();
            let mut c = Chunk::default();
            let read = meta.for_each(Table::Retained, |key, value| {
                if is_record(value) {
                    if let Ok(topic) = std::str::from_utf8(key) {
                        c.topics.push_str(topic);
                        c.ends.push(c.topics.len());
                        c.records.push(value.into());
                        if c.ends.len() == CHUNK {
                            let _ = tx.send(std::mem::take(&mut c));
                        }
                        return;
                    }
                } else if value.first() == Some(&0) && std::str::from_utf8(key).is_ok() {
                    found.legacy.push(key.to_vec());
                    return;
                }
                found.unreadable += 1;
            });
            if !c.ends.is_empty() {
                let _ = tx.send(c);
            }
            read.map(|()| found)
        });
        for c in rx {
            let mut start = 0;
            for (&end, record) in c.ends.iter().zip(c.records) {
                if into.insert(&c.topics[start..end], record).is_ok() {
                    out.loaded += 1;
                } else {
                    out.unreadable += 1;
                }
                start = end;
            }
        }
        reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    out.legacy = read.legacy;
    out.unreadable += read.unreadable;
    Ok(out)
}

/// Apply writes to the `retained` table, packed as [`crate::meta::packed_ops`] lays them out,
/// to `into`: a put sets its key's topic to its value (a record), a delete removes the topic.
/// The same layout the store commits, so a publisher's retained messages cross to the tree in
/// one call a batch. Returns the writes applied: one that is not a put of a whole record or a
/// delete on `retained`, or whose topic is not UTF-8 or not a valid topic name, is skipped
/// (the callers check topics first; it is counted out, not fatal to the others). A buffer
/// that does not fit the layout is an error (`InvalidArgument`), the writes before it applied.
pub fn apply_packed(into: &mut RetainedMessages, ops: &[u8]) -> Result<usize, CoreError> {
    let mut applied = 0;
    packed_ops::visit(ops, |op| {
        let done = match op {
            OpRef::Put(Table::Retained, key, value) if is_record(value) => std::str::from_utf8(key)
                .ok()
                .is_some_and(|topic| into.insert(topic, value.into()).is_ok()),
            OpRef::Delete(Table::Retained, key) => {
                if let Ok(topic) = std::str::from_utf8(key) {
                    into.take(topic);
                }
                true
            }
            _ => false,
        };
        applied += usize::from(done);
        Ok(())
    })?;
    Ok(applied)
}

#[cfg(test)]
mod tests;
