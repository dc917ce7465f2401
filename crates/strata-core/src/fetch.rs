//! Batch fetch: read many cursors into one contiguous buffer plus an offset table, so
//! a batch crosses the Node boundary as one `Buffer` and one `Uint32Array` instead of
//! one JS object per message.
//!
//! Entries use the layout of [`crate::log::entry`] (defined there, once).
//!
//! Invariants: `offsets.len() == entries + 1`, `offsets[0] == 0`, `offsets` is
//! increasing and `offsets[entries] == buf.len()`; entries of one cursor are
//! contiguous and in cursor order (`per_cursor[k].delivered` of them for cursor `k`).
//!
//! [`read_at`] fills the same layout from a list of `(shard, offset)` positions
//! ([`ReadAtBatch`]): one entry per position found, in input order, and a per-position
//! found flag. The session replay scan ([`crate::log::scan()`],
//! [`crate::log::ScanBatch`]) fills it too, plus a filter mask per entry.
use crate::error::CoreError;
use crate::log::entry::{entry_at, push_entry};
use crate::log::{Cursor, Log, Position, ReadStatus};

pub use crate::log::entry::{Entry, ENTRY_HEADER};

/// What a fetch did for one cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorFetch {
    /// Entries delivered for this cursor.
    pub delivered: u32,
    /// Records lost to retention.
    pub skipped: u64,
    /// Next / Done / End (`Next` also when the fetch stopped on a total limit).
    pub status: ReadStatus,
}

/// One fetched batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchBatch {
    /// All entries, back to back.
    pub buf: Vec<u8>,
    /// Start of each entry, plus the end.
    pub offsets: Vec<u32>,
    /// Per cursor, in input order.
    pub per_cursor: Vec<CursorFetch>,
}

impl FetchBatch {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// True when no entry was fetched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// At most this many entries per cursor (`max_batch_size`).
    pub per_cursor: usize,
    /// At most this many entries overall.
    pub total: usize,
    /// Stop adding cursors once the buffer holds this many bytes (soft limit).
    pub bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            per_cursor: 1000,
            total: 10_000,
            bytes: 16 << 20,
        }
    }
}

/// Reads every cursor in turn into one batch, advancing the cursors.
pub fn fetch(
    log: &Log,
    cursors: &mut [Cursor],
    limits: FetchLimits,
) -> Result<FetchBatch, CoreError> {
    let mut out = FetchBatch {
        buf: Vec::new(),
        offsets: vec![0],
        per_cursor: Vec::with_capacity(cursors.len()),
    };
    let mut total = 0usize;
    for c in cursors.iter_mut() {
        let room = limits.total.saturating_sub(total).min(limits.per_cursor);
        if room == 0 || out.buf.len() >= limits.bytes {
            out.per_cursor.push(CursorFetch {
                delivered: 0,
                skipped: 0,
                status: ReadStatus::Next,
            });
            continue;
        }
        let shard = c.stream.shard as u16;
        let buf = &mut out.buf;
        let offsets = &mut out.offsets;
        let r = log.read(c, room, &mut |r| {
            push_entry(buf, shard, r);
            offsets.push(buf.len() as u32);
        })?;
        total += r.delivered;
        out.per_cursor.push(CursorFetch {
            delivered: r.delivered as u32,
            skipped: r.skipped,
            status: r.status,
        });
    }
    if out.buf.len() > u32::MAX as usize {
        return Err(CoreError::InvalidArgument(
            "fetch exceeded 4 GiB; lower the limits".into(),
        ));
    }
    Ok(out)
}

/// Records read by position ([`read_at`]).
///
/// Invariants: `found.len()` is the number of positions asked for; `offsets` has one
/// more value than there are `1`s in `found`; entry `j` is the `j`-th found position
/// in input order (same layout as [`FetchBatch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAtBatch {
    /// All entries, back to back.
    pub buf: Vec<u8>,
    /// Start of each entry, plus the end.
    pub offsets: Vec<u32>,
    /// Per input position: 1 = found (has an entry), 0 = missing.
    pub found: Vec<u8>,
}

impl ReadAtBatch {
    /// Number of entries (positions found).
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// True when no position was found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decodes entry `i` (the `i`-th position found, not the `i`-th asked for).
    pub fn entry(&self, i: usize) -> Option<Entry<'_>> {
        entry_at(&self.buf, &self.offsets, i)
    }
}

/// Reads the records at `positions` (see [`Log::read_at`]) into one batch: one entry
/// per position found, in input order. Missing positions are flagged, not errors.
pub fn read_at(log: &Log, positions: &[Position]) -> Result<ReadAtBatch, CoreError> {
    let mut out = ReadAtBatch {
        buf: Vec::new(),
        offsets: Vec::with_capacity(positions.len() + 1),
        found: Vec::with_capacity(positions.len()),
    };
    out.offsets.push(0);
    let mut too_big = false;
    let (buf, offsets, found) = (&mut out.buf, &mut out.offsets, &mut out.found);
    log.read_at(positions, &mut |i, r| {
        match r {
            Some(r) if !too_big => {
                push_entry(buf, positions[i].shard as u16, r);
                too_big = buf.len() > u32::MAX as usize;
                offsets.push(buf.len() as u32);
                found.push(1);
            }
            _ => found.push(0),
        };
    })?;
    if too_big {
        return Err(CoreError::InvalidArgument(
            "readAt exceeded 4 GiB; read fewer positions at a time".into(),
        ));
    }
    Ok(out)
}

impl FetchBatch {
    /// Decodes entry `i`.
    pub fn entry(&self, i: usize) -> Option<Entry<'_>> {
        entry_at(&self.buf, &self.offsets, i)
    }
}
