//! The batch entry layout: how one record crosses the Node boundary inside a batch
//! buffer (`fetch`, `readAt`, `scan`), defined once here.
//!
//! Entry layout (little-endian), starting at `offsets[i]` of its batch:
//!
//! | bytes | field                                   |
//! |-------|-----------------------------------------|
//! | 0..8  | offset (u64)                            |
//! | 8..16 | timestamp ms (u64)                      |
//! | 16..20| payload length (u32)                    |
//! | 20..24| properties length (u32)                 |
//! | 24..26| topic length (u16)                      |
//! | 26..28| publisher length (u16)                  |
//! | 28    | flags: bits 0–1 QoS, bit 2 retain       |
//! | 29    | reserved (0)                            |
//! | 30..32| shard (u16)                             |
//! | 32..  | publisher, topic, properties, payload   |
//!
//! It sits in `log` (below both `log::scan` and `crate::fetch`) so neither imports the
//! other.
use super::RecordRef;

/// Bytes of an entry header (where the publisher's bytes start).
pub const ENTRY_HEADER: usize = 32;
/// Byte offset of the record's offset (u64).
pub const ENTRY_OFFSET: usize = 0;
/// Byte offset of the timestamp in ms (u64).
pub const ENTRY_TIMESTAMP: usize = 8;
/// Byte offset of the payload length (u32).
pub const ENTRY_PAYLOAD_LEN: usize = 16;
/// Byte offset of the properties length (u32).
pub const ENTRY_PROPERTIES_LEN: usize = 20;
/// Byte offset of the topic length (u16).
pub const ENTRY_TOPIC_LEN: usize = 24;
/// Byte offset of the publisher length (u16).
pub const ENTRY_PUBLISHER_LEN: usize = 26;
/// Byte offset of the flags byte.
pub const ENTRY_FLAGS: usize = 28;
/// Byte offset of the shard (u16).
pub const ENTRY_SHARD: usize = 30;
/// Flags: the QoS bits.
pub const ENTRY_FLAG_QOS_MASK: u8 = 0b011;
/// Flags: the retain bit.
pub const ENTRY_FLAG_RETAIN: u8 = 0b100;

/// Appends one entry (layout in the module docs) to `buf`.
pub(crate) fn push_entry(buf: &mut Vec<u8>, shard: u16, r: &RecordRef<'_>) {
    buf.reserve(
        ENTRY_HEADER + r.publisher.len() + r.topic.len() + r.properties.len() + r.payload.len(),
    );
    buf.extend_from_slice(&r.offset.to_le_bytes());
    buf.extend_from_slice(&r.timestamp.to_le_bytes());
    buf.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(r.properties.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(r.topic.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(r.publisher.len() as u16).to_le_bytes());
    buf.push(r.qos | if r.retain { ENTRY_FLAG_RETAIN } else { 0 });
    buf.push(0);
    buf.extend_from_slice(&shard.to_le_bytes());
    buf.extend_from_slice(r.publisher);
    buf.extend_from_slice(r.topic);
    buf.extend_from_slice(r.properties);
    buf.extend_from_slice(r.payload);
}

/// A decoded view of one entry (for Rust callers and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Offset in its shard.
    pub offset: u64,
    /// Timestamp ms.
    pub timestamp: u64,
    /// Shard.
    pub shard: u16,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Publisher id.
    pub publisher: &'a [u8],
    /// Topic.
    pub topic: &'a [u8],
    /// MQTT 5 properties.
    pub properties: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

/// Decodes entry `i` of a buffer + offset table in the layout of the module docs.
pub(crate) fn entry_at<'a>(buf: &'a [u8], offsets: &[u32], i: usize) -> Option<Entry<'a>> {
    let start = *offsets.get(i)? as usize;
    let end = *offsets.get(i + 1)? as usize;
    let e = buf.get(start..end)?;
    let u32_at = |p: usize| u32::from_le_bytes(e[p..p + 4].try_into().expect("4")) as usize;
    let u64_at = |p: usize| u64::from_le_bytes(e[p..p + 8].try_into().expect("8"));
    let u16_at = |p: usize| u16::from_le_bytes(e[p..p + 2].try_into().expect("2")) as usize;
    let (pl, prl, tl, publ) = (
        u32_at(ENTRY_PAYLOAD_LEN),
        u32_at(ENTRY_PROPERTIES_LEN),
        u16_at(ENTRY_TOPIC_LEN),
        u16_at(ENTRY_PUBLISHER_LEN),
    );
    let p0 = ENTRY_HEADER;
    let t0 = p0 + publ;
    let r0 = t0 + tl;
    let y0 = r0 + prl;
    Some(Entry {
        offset: u64_at(ENTRY_OFFSET),
        timestamp: u64_at(ENTRY_TIMESTAMP),
        shard: u16_at(ENTRY_SHARD) as u16,
        qos: e[ENTRY_FLAGS] & ENTRY_FLAG_QOS_MASK,
        retain: e[ENTRY_FLAGS] & ENTRY_FLAG_RETAIN != 0,
        publisher: &e[p0..t0],
        topic: &e[t0..r0],
        properties: &e[r0..y0],
        payload: &e[y0..y0 + pl],
    })
}
