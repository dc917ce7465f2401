//! The progress record of a persistent session: one value per session in
//! [`Table::Progress`](super::Table::Progress), rewritten as the session advances. The
//! broker (TypeScript) writes and reads it; this module is where its layout is defined —
//! the binding exports the constants below (`layouts().progress`) — and [`encode`] /
//! [`decode`] state it as code, tested here.
//!
//! Layout, big-endian. Offsets are shard-wide log offsets below 2^53, stored as `f64`.
//!
//! | field | bytes |
//! |-------|-------|
//! | version ([`VERSION`]; [`VERSION_NO_BACKLOG`] = without the backlog counts) | u8 |
//! | shards `n` | u16 |
//! | `n` × next offset: every logged message of the session's subscriptions below it was taken (delivered, in flight or dropped); from it on, replay reads the log | f64 each |
//! | excess: deliveries still to drop from the head of the backlog (drop_oldest) | u32 |
//! | backlog, backlog bytes: what the queue limits count as waiting in the log (version 2 only) | f64, f64 |
//! | gap count | u16 |
//! | gaps ([`GAP_BYTES`] each): shard u16 @[`GAP_SHARD`], from f64 @[`GAP_FROM`], to f64 @[`GAP_TO`] ([`GAP_OPEN`] = still open): ranges dropped (drop_newest) | 18 each |
//! | entry count | u32 |
//! | entries: [`ENTRY_BYTES`] fixed bytes — shard u16 @[`ENTRY_SHARD`], offset f64 @[`ENTRY_OFFSET`], packet id u16 @[`ENTRY_PACKET_ID`], QoS u8 @[`ENTRY_QOS`], phase u8 @[`ENTRY_PHASE`] ([`PHASE_QUEUED`], [`PHASE_PUBLISH_SENT`], [`PHASE_PUBREL_SENT`]), flags u8 @[`ENTRY_FLAGS`] ([`FLAG_RETAIN`], [`FLAG_PINNED`], [`FLAG_RETAINED_MESSAGE`]: a retained message sent on subscribe, shard and offset 0), subscription id count `k` u8 @[`ENTRY_SUB_ID_COUNT`] — then `k` × u32 subscription ids, then, with [`FLAG_RETAINED_MESSAGE`], u16 topic length + topic | |
//!
//! A record ends exactly after its last entry.
use crate::error::CoreError;

/// Current version.
pub const VERSION: u8 = 2;
/// Version 1: no backlog counts.
pub const VERSION_NO_BACKLOG: u8 = 1;
/// Byte offset of the shard count (u16).
pub const SHARD_COUNT: usize = 1;
/// Byte offset of the first next offset (f64 each).
pub const NEXT: usize = 3;
/// Bytes of each next offset.
pub const NEXT_BYTES: usize = 8;
/// After the next offsets: excess (u32) at +0, backlog (f64) at +4, backlog bytes (f64) at
/// +12, gap count (u16) at +20 (version 2); [`HEAD_TAIL_BYTES`] in all.
pub const EXCESS: usize = 0;
/// Backlog, relative to the end of the next offsets (version 2).
pub const BACKLOG: usize = 4;
/// Backlog bytes, relative to the end of the next offsets (version 2).
pub const BACKLOG_BYTES: usize = 12;
/// Gap count, relative to the end of the next offsets (version 2; at +4 in version 1).
pub const GAP_COUNT: usize = 20;
/// Bytes from the end of the next offsets to the first gap (version 2).
pub const HEAD_TAIL_BYTES: usize = 22;
/// Bytes of one gap.
pub const GAP_BYTES: usize = 18;
/// Gap: shard (u16).
pub const GAP_SHARD: usize = 0;
/// Gap: first offset dropped (f64).
pub const GAP_FROM: usize = 2;
/// Gap: end of the range (f64), or [`GAP_OPEN`].
pub const GAP_TO: usize = 10;
/// A gap's `to` while it is still open.
pub const GAP_OPEN: f64 = -1.0;
/// Bytes of the entry count (u32) after the gaps.
pub const ENTRY_COUNT_BYTES: usize = 4;
/// Fixed bytes of one entry.
pub const ENTRY_BYTES: usize = 16;
/// Entry: shard (u16).
pub const ENTRY_SHARD: usize = 0;
/// Entry: offset (f64).
pub const ENTRY_OFFSET: usize = 2;
/// Entry: packet id (u16; 0 while queued).
pub const ENTRY_PACKET_ID: usize = 10;
/// Entry: QoS (u8).
pub const ENTRY_QOS: usize = 12;
/// Entry: phase (u8).
pub const ENTRY_PHASE: usize = 13;
/// Entry: flags (u8).
pub const ENTRY_FLAGS: usize = 14;
/// Entry: subscription id count (u8).
pub const ENTRY_SUB_ID_COUNT: usize = 15;
/// Bytes of one subscription id (u32).
pub const SUB_ID_BYTES: usize = 4;
/// Bytes of a retained topic's length (u16).
pub const TOPIC_LEN_BYTES: usize = 2;
/// Flag: the delivery's RETAIN flag.
pub const FLAG_RETAIN: u8 = 1;
/// Flag: pinned to its shared-subscription member.
pub const FLAG_PINNED: u8 = 2;
/// Flag: a retained message sent on subscribe (topic follows; shard and offset are 0).
pub const FLAG_RETAINED_MESSAGE: u8 = 4;
/// Phase: queued, not sent.
pub const PHASE_QUEUED: u8 = 0;
/// Phase: PUBLISH sent.
pub const PHASE_PUBLISH_SENT: u8 = 1;
/// Phase: PUBREL sent (QoS 2).
pub const PHASE_PUBREL_SENT: u8 = 2;

/// A range of one shard the session dropped (`to` None while open).
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// Shard.
    pub shard: u16,
    /// First offset dropped.
    pub from: f64,
    /// End of the range, None while open.
    pub to: Option<f64>,
}

/// One delivery queued or in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Shard (0 for a retained message).
    pub shard: u16,
    /// Offset (0 for a retained message).
    pub offset: f64,
    /// Packet id (0 while queued).
    pub packet_id: u16,
    /// QoS.
    pub qos: u8,
    /// `PHASE_*`.
    pub phase: u8,
    /// `FLAG_RETAIN` | `FLAG_PINNED` (`FLAG_RETAINED_MESSAGE` follows from `retained_topic`).
    pub flags: u8,
    /// Subscription identifiers (at most 255).
    pub sub_ids: Vec<u32>,
    /// Topic of a retained message sent on subscribe.
    pub retained_topic: Option<String>,
}

/// A decoded progress record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    /// Per shard: the next offset.
    pub next: Vec<f64>,
    /// Deliveries still to drop from the head of the backlog.
    pub excess: u32,
    /// Deliveries waiting in the log.
    pub backlog: f64,
    /// Their bytes.
    pub backlog_bytes: f64,
    /// Dropped ranges, in record order.
    pub gaps: Vec<Gap>,
    /// Deliveries, in record order.
    pub entries: Vec<Entry>,
}

fn bad(what: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(format!("progress record: {what}"))
}

/// Encodes `p` (version [`VERSION`]).
pub fn encode(p: &Progress) -> Result<Vec<u8>, CoreError> {
    let n = u16::try_from(p.next.len()).map_err(|_| bad("too many shards"))?;
    let gaps = u16::try_from(p.gaps.len()).map_err(|_| bad("too many gaps"))?;
    let count = u32::try_from(p.entries.len()).map_err(|_| bad("too many entries"))?;
    let mut b = Vec::with_capacity(NEXT + NEXT_BYTES * p.next.len() + HEAD_TAIL_BYTES);
    b.push(VERSION);
    b.extend_from_slice(&n.to_be_bytes());
    for x in &p.next {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b.extend_from_slice(&p.excess.to_be_bytes());
    b.extend_from_slice(&p.backlog.to_be_bytes());
    b.extend_from_slice(&p.backlog_bytes.to_be_bytes());
    b.extend_from_slice(&gaps.to_be_bytes());
    for g in &p.gaps {
        b.extend_from_slice(&g.shard.to_be_bytes());
        b.extend_from_slice(&g.from.to_be_bytes());
        b.extend_from_slice(&g.to.unwrap_or(GAP_OPEN).to_be_bytes());
    }
    b.extend_from_slice(&count.to_be_bytes());
    for e in &p.entries {
        let k = u8::try_from(e.sub_ids.len()).map_err(|_| bad("over 255 subscription ids"))?;
        let retained = if e.retained_topic.is_some() {
            FLAG_RETAINED_MESSAGE
        } else {
            0
        };
        b.extend_from_slice(&e.shard.to_be_bytes());
        b.extend_from_slice(&e.offset.to_be_bytes());
        b.extend_from_slice(&e.packet_id.to_be_bytes());
        b.extend_from_slice(&[e.qos, e.phase, e.flags | retained, k]);
        for id in &e.sub_ids {
            b.extend_from_slice(&id.to_be_bytes());
        }
        if let Some(t) = &e.retained_topic {
            let len = u16::try_from(t.len()).map_err(|_| bad("retained topic too long"))?;
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
    }
    Ok(b)
}

/// Reads a record; `InvalidArgument` for bytes that are not one (unknown version,
/// truncated, trailing bytes).
pub fn decode(b: &[u8]) -> Result<Progress, CoreError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], CoreError> {
        let s = b.get(at..at + n).ok_or_else(|| bad("truncated"))?;
        at += n;
        Ok(s)
    };
    let version = take(1)?[0];
    if version != VERSION && version != VERSION_NO_BACKLOG {
        return Err(bad(format_args!("unknown version {version}")));
    }
    let u16_of = |s: &[u8]| u16::from_be_bytes([s[0], s[1]]);
    let u32_of = |s: &[u8]| u32::from_be_bytes(s[..4].try_into().expect("4"));
    let f64_of = |s: &[u8]| f64::from_be_bytes(s[..8].try_into().expect("8"));
    let n = u16_of(take(2)?);
    let mut p = Progress::default();
    for _ in 0..n {
        p.next.push(f64_of(take(NEXT_BYTES)?));
    }
    p.excess = u32_of(take(4)?);
    if version == VERSION {
        p.backlog = f64_of(take(8)?);
        p.backlog_bytes = f64_of(take(8)?);
    }
    let gaps = u16_of(take(2)?);
    for _ in 0..gaps {
        let g = take(GAP_BYTES)?;
        let to = f64_of(&g[GAP_TO..]);
        p.gaps.push(Gap {
            shard: u16_of(&g[GAP_SHARD..]),
            from: f64_of(&g[GAP_FROM..]),
            to: (to >= 0.0).then_some(to),
        });
    }
    let count = u32_of(take(ENTRY_COUNT_BYTES)?);
    for _ in 0..count {
        let e = take(ENTRY_BYTES)?;
        let flags = e[ENTRY_FLAGS];
        let mut entry = Entry {
            shard: u16_of(&e[ENTRY_SHARD..]),
            offset: f64_of(&e[ENTRY_OFFSET..]),
            packet_id: u16_of(&e[ENTRY_PACKET_ID..]),
            qos: e[ENTRY_QOS],
            phase: e[ENTRY_PHASE],
            flags: flags & !FLAG_RETAINED_MESSAGE,
            sub_ids: Vec::new(),
            retained_topic: None,
        };
        for _ in 0..e[ENTRY_SUB_ID_COUNT] {
            entry.sub_ids.push(u32_of(take(SUB_ID_BYTES)?));
        }
        if flags & FLAG_RETAINED_MESSAGE != 0 {
            let len = u16_of(take(TOPIC_LEN_BYTES)?) as usize;
            let t = take(len)?;
            entry.retained_topic =
                Some(String::from_utf8(t.to_vec()).map_err(|_| bad("topic is not UTF-8"))?);
        }
        p.entries.push(entry);
    }
    if at != b.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests;
