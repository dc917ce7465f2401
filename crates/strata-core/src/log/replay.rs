//! Session replay as wire-ready MQTT PUBLISH packets: the drain path of a persistent
//! session that is behind the log (SPEC B3).
//!
//! [`replay_frames()`] scans a session's shards with [`scan()`], works out each
//! matching record's delivery (QoS = the highest of `min(subscription QoS, message
//! QoS)` over the subscriptions it matches; retain kept when a matching subscription
//! has Retain As Published; no-local subscriptions ignore the session's own messages),
//! merges the shards by timestamp and encodes the deliveries as PUBLISH packets back
//! to back in one buffer, with a zero packet identifier the caller patches in
//! (`id_pos`). The caller writes the buffer to the socket as it is: no per-message
//! decoding, allocation or copy on the JavaScript side.
//!
//! Only plain deliveries are framed here. The replay stops (status [`REPLAY_SLOW`])
//! before the first record whose delivery needs the general path: a message with
//! MQTT 5 properties (expiry, user properties...), a QoS 2 delivery (its packet id is
//! made durable before it is sent), or a packet larger than the client accepts.
//!
//! Invariants (per shard, as for [`scan()`]):
//! - every record in `[from, next)` was either framed, or matched only no-local
//!   subscriptions of the session's own messages, or was not for the session at all;
//!   nothing at or after `next` was framed — so replaying again from `next` neither
//!   repeats nor misses a delivery;
//! - frames are in timestamp order across shards (ties: the lower shard first), and in
//!   offset order within a shard.
use super::scan::{scan, ScanBatch, ScanFilter, ScanLimits, ScanStatus};
use super::Log;
use crate::error::CoreError;
use crate::frame::{packet_len, publish_remaining, push_var_int};

/// The shard stopped because a limit was reached: replay again from `next`.
pub const REPLAY_NEXT: u8 = 0;
/// Caught up with the shard's end.
pub const REPLAY_DONE: u8 = 1;
/// The next record is at or after the shard's `until`.
pub const REPLAY_UNTIL: u8 = 2;
/// Stopped before a record the general delivery path must handle (see module docs).
pub const REPLAY_SLOW: u8 = 3;

/// Values per frame in [`ReplayFrames::meta`].
pub const META_STRIDE: usize = 6;
/// Frame meta: shard.
pub const META_SHARD: usize = 0;
/// Frame meta: offset.
pub const META_OFFSET: usize = 1;
/// Frame meta: timestamp ms.
pub const META_TIMESTAMP: usize = 2;
/// Frame meta: end of the frame in the buffer (it starts where the previous one ends).
pub const META_END: usize = 3;
/// Frame meta: position of the packet identifier in the buffer (-1 for QoS 0).
pub const META_ID_POS: usize = 4;
/// Frame meta: payload length.
pub const META_PAYLOAD_LEN: usize = 5;
// `replay_frames` pushes a frame's meta in this order.
const _: () = assert!(
    META_SHARD == 0
        && META_OFFSET == 1
        && META_TIMESTAMP == 2
        && META_END == 3
        && META_ID_POS == 4
        && META_PAYLOAD_LEN == 5
        && META_STRIDE == 6
);

/// One subscription of the replaying session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySub {
    /// Topic filter.
    pub filter: String,
    /// Subscription QoS (0..=2).
    pub qos: u8,
    /// No Local: the session's own messages do not match.
    pub no_local: bool,
    /// Retain As Published: keep the message's retain flag.
    pub retain_as_published: bool,
}

/// One shard to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayShard {
    /// Shard index.
    pub shard: u32,
    /// First offset to examine.
    pub from: u64,
    /// Stop before this offset (a range the session dropped).
    pub until: Option<u64>,
    /// Per subscription (same order as the subs), the first offset it applies to.
    pub starts: Vec<u64>,
}

/// How the deliveries are encoded and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// MQTT protocol level of the client: 5 adds an empty property section.
    pub version: u8,
    /// The session's client id (for no-local).
    pub client_id: Vec<u8>,
    /// At most this many frames.
    pub max_entries: usize,
    /// Scan byte budget per shard (see [`ScanLimits::max_bytes`]).
    pub max_bytes: usize,
    /// Largest packet the client accepts; a larger delivery stops the replay as slow.
    pub max_packet: usize,
}

/// The result of one [`replay_frames()`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFrames {
    /// PUBLISH packets back to back; QoS > 0 ones with packet id 0 at `id_pos`.
    pub buf: Vec<u8>,
    /// Per frame, [`META_STRIDE`] values: shard, offset, timestamp ms, end of the frame
    /// in `buf` (it starts where the previous one ends), `id_pos` (-1 for QoS 0),
    /// payload length.
    pub meta: Vec<f64>,
    /// Per requested shard (same order): the first offset not consumed.
    pub next: Vec<u64>,
    /// Per requested shard: `REPLAY_*`.
    pub status: Vec<u8>,
    /// Records passed over because they are gone (as [`ScanBatch::skipped`]).
    pub skipped: u64,
}

/// What one scanned entry becomes.
enum Delivery {
    /// Not for this session (no-local): consumed without a frame.
    None,
    /// Needs the general path.
    Slow,
    /// Frame it with this QoS and retain flag.
    Frame(u8, bool),
}

/// Each shard must have one `starts` value per subscription ([`CoreError::InvalidArgument`]
/// otherwise); [`replay_frames()`] checks it, and callers that run it later can check first.
pub fn check_starts(shards: &[ReplayShard], subs: &[ReplaySub]) -> Result<(), CoreError> {
    match shards.iter().find(|sh| sh.starts.len() != subs.len()) {
        Some(sh) => Err(CoreError::InvalidArgument(format!(
            "replay: shard {} has {} starts for {} subscriptions",
            sh.shard,
            sh.starts.len(),
            subs.len()
        ))),
        None => Ok(()),
    }
}

/// Replays `shards` of `log` for a session subscribed with `subs` (see module docs).
///
/// Errors: as [`scan()`]; [`CoreError::InvalidArgument`] when a shard's `starts` does
/// not have one value per subscription.
pub fn replay_frames(
    log: &Log,
    shards: &[ReplayShard],
    subs: &[ReplaySub],
    opts: &ReplayOptions,
) -> Result<ReplayFrames, CoreError> {
    check_starts(shards, subs)?;
    let mut batches: Vec<ScanBatch> = Vec::with_capacity(shards.len());
    for sh in shards {
        let filters: Vec<ScanFilter> = subs
            .iter()
            .zip(&sh.starts)
            .map(|(s, &start)| ScanFilter {
                filter: s.filter.clone(),
                start,
            })
            .collect();
        let limits = ScanLimits {
            max_entries: opts.max_entries,
            max_bytes: opts.max_bytes,
            until: sh.until,
            ..ScanLimits::default()
        };
        batches.push(scan(log, sh.shard, sh.from, &filters, limits)?);
    }
    let v5 = opts.version == 5;
    let mut out = ReplayFrames {
        buf: Vec::new(),
        meta: Vec::new(),
        next: batches.iter().map(|b| b.next).collect(),
        status: batches
            .iter()
            .map(|b| match b.status {
                ScanStatus::Next => REPLAY_NEXT,
                ScanStatus::Done => REPLAY_DONE,
                ScanStatus::Until => REPLAY_UNTIL,
            })
            .collect(),
        skipped: batches.iter().map(|b| b.skipped).sum(),
    };
    // Each frame is shorter than its scanned entry: one allocation holds them all.
    out.buf.reserve(batches.iter().map(|b| b.buf.len()).sum());
    out.meta
        .reserve(META_STRIDE * batches.iter().map(ScanBatch::len).sum::<usize>());
    let mut heads = vec![0usize; batches.len()];
    let mut framed = 0usize;
    while framed < opts.max_entries {
        // The earliest head across shards (ties: the lower shard).
        let mut best: Option<(usize, u64)> = None;
        for (i, b) in batches.iter().enumerate() {
            if let Some(e) = b.entry(heads[i]) {
                if best.is_none_or(|(_, ts)| e.timestamp < ts) {
                    best = Some((i, e.timestamp));
                }
            }
        }
        let Some((i, _)) = best else { break };
        let b = &batches[i];
        let j = heads[i];
        let e = b
            .entry(j)
            .ok_or_else(|| CoreError::Corrupt("replay: bad scan entry".into()))?;
        let mask = b.mask(j).unwrap_or(&[]);
        let (qos, retain) = match delivery(&e, mask, subs, opts) {
            Delivery::None => {
                heads[i] += 1;
                continue;
            }
            Delivery::Slow => {
                out.next[i] = e.offset;
                out.status[i] = REPLAY_SLOW;
                break;
            }
            Delivery::Frame(q, r) => (q, r),
        };
        let remaining = publish_remaining(e.topic.len(), e.payload.len(), qos, v5);
        if packet_len(remaining) > opts.max_packet {
            out.next[i] = e.offset;
            out.status[i] = REPLAY_SLOW;
            break;
        }
        let buf = &mut out.buf;
        buf.push(0x30 | (qos << 1) | u8::from(retain));
        push_var_int(buf, remaining);
        buf.extend_from_slice(&(e.topic.len() as u16).to_be_bytes());
        buf.extend_from_slice(e.topic);
        let id_pos = if qos > 0 {
            let at = buf.len();
            buf.extend_from_slice(&[0, 0]);
            at as f64
        } else {
            -1.0
        };
        if v5 {
            buf.push(0);
        }
        buf.extend_from_slice(e.payload);
        out.meta.extend_from_slice(&[
            f64::from(e.shard),
            e.offset as f64,
            e.timestamp as f64,
            buf.len() as f64,
            id_pos,
            e.payload.len() as f64,
        ]);
        heads[i] += 1;
        framed += 1;
    }
    // A shard whose entries were not all consumed resumes at the first one left.
    for (i, b) in batches.iter().enumerate() {
        if out.status[i] == REPLAY_SLOW {
            continue;
        }
        if let Some(e) = b.entry(heads[i]) {
            out.next[i] = e.offset;
            out.status[i] = REPLAY_NEXT;
        }
    }
    Ok(out)
}

fn delivery(
    e: &super::entry::Entry<'_>,
    mask: &[u32],
    subs: &[ReplaySub],
    opts: &ReplayOptions,
) -> Delivery {
    if !e.properties.is_empty() {
        return Delivery::Slow;
    }
    let mut qos: i16 = -1;
    let mut retain = false;
    for (w, &word) in mask.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let Some(sub) = subs.get(w * 32 + bit) else {
                continue;
            };
            if sub.no_local && e.publisher == opts.client_id.as_slice() {
                continue;
            }
            qos = qos.max(i16::from(sub.qos.min(e.qos)));
            retain |= sub.retain_as_published && e.retain;
        }
    }
    match qos {
        q if q < 0 => Delivery::None,
        2 => Delivery::Slow,
        q => Delivery::Frame(q as u8, retain),
    }
}
