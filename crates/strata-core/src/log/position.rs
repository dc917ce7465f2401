//! Read by position: the record at a given `(shard, offset)`.
//!
//! Lookup of one position is O(log n): the generation by offset range
//! ([`Generation::first_offset`]), the segment by base offset, the last sparse index
//! entry at or before the offset, then a walk of at most `index_interval` bytes plus
//! one record. The walk follows frame lengths and checks offset continuity; only the
//! record returned is crc-verified (a record passed over is never delivered, so it
//! need not be).
//!
//! A [`Window`] per shard keeps the bytes last read from one segment and where the
//! record after the last one found starts, so consecutive positions in the same
//! segment (a session's index is mostly ascending) cost no seek and usually no read.
//!
//! Invariants: a window only holds bytes below the segment's `committed_len` at the
//! time they were read, and committed bytes never change, so a window stays valid for
//! as long as it names the same segment (`Arc` identity).
use super::record::{self, RecordRef, FRAME_HEADER};
use super::segment::{self, Segment};
use super::shard::{self, Generation, ShardShared};
use crate::error::CoreError;
use std::sync::Arc;

/// Bytes read per refill when nothing bounds the record (past the last index entry).
const RANDOM_WINDOW: u64 = 8 << 10;
/// Bytes read per refill when continuing from the previous record found.
const SEQUENTIAL_WINDOW: u64 = 64 << 10;
/// Extra bytes read past the estimated end of a record, to absorb size variation.
const SLACK: u64 = 512;
/// Largest window worth keeping for reuse (a huge record is read, then released).
const KEEP_WINDOW: usize = 1 << 20;

/// Bytes of one segment, reused across lookups in the same shard.
#[derive(Debug, Default)]
pub(crate) struct Window {
    seg: Option<Arc<Segment>>,
    /// File position of `buf[0]`.
    start: u64,
    /// Storage; only `buf[..len]` holds data (the rest is not re-zeroed per read).
    buf: Vec<u8>,
    len: usize,
    /// `(file position, offset)` of the record after the last one found.
    next: Option<(u64, u64)>,
}

/// Outcome of a lookup.
pub(crate) enum Lookup<'a> {
    /// The record at the position.
    Found(RecordRef<'a>),
    /// No record there: never written, dropped by retention, or quarantined.
    Missing,
}

/// The generation and segment that can hold `offset`, if any.
fn locate(shared: &ShardShared, offset: u64) -> Option<(Arc<Generation>, Arc<Segment>)> {
    let gens = shared.gens.read().expect("poisoned");
    let gi = gens.partition_point(|g| g.first_offset <= offset);
    let g = gens.get(gi.checked_sub(1)?)?;
    let segs = g.segments.read().expect("poisoned");
    let si = segs.partition_point(|s| s.base_offset <= offset);
    let s = segs.get(si.checked_sub(1)?)?;
    if offset >= s.end_offset() {
        return None;
    }
    Some((g.clone(), s.clone()))
}

impl Window {
    /// Makes `[pos, pos + n)` available in the window, reading up to `read_to` if
    /// that is further (never past `limit`). `Ok(false)` when the committed data ends
    /// first.
    fn ensure(
        &mut self,
        seg: &Segment,
        pos: u64,
        n: usize,
        read_to: u64,
        limit: u64,
    ) -> std::io::Result<bool> {
        let end = pos + n as u64;
        if pos >= self.start && end <= self.start + self.len as u64 {
            return Ok(true);
        }
        if end > limit {
            return Ok(false);
        }
        let len = (end.max(read_to).min(limit) - pos) as usize;
        if self.buf.len() > KEEP_WINDOW && len <= KEEP_WINDOW {
            self.buf = Vec::new();
        }
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        self.start = pos;
        self.len = 0;
        while self.len < len {
            let r = segment::read_at(
                seg.file(),
                &mut self.buf[self.len..len],
                pos + self.len as u64,
            )?;
            if r == 0 {
                break;
            }
            self.len += r;
        }
        Ok(self.len >= n)
    }

    /// Finds the frame of `offset` in `seg` and verifies it: `Ok(Some((pos, len)))`,
    /// `Ok(None)` when the committed data ends first, `Err(Corrupt(pos))` when the
    /// bytes at `pos` are not the record expected there.
    fn find(
        &mut self,
        seg: &Arc<Segment>,
        offset: u64,
    ) -> Result<Option<(u64, usize)>, LookupError> {
        if !self.seg.as_ref().is_some_and(|s| Arc::ptr_eq(s, seg)) {
            self.seg = Some(seg.clone());
            self.len = 0;
            self.next = None;
        }
        let limit = seg.committed_len();
        let ((mut pos, mut at), bound) = seg.seek_offset_bounded(offset);
        // Read as little as likely needed: up to the estimated end of the record
        // (offsets between two index entries are spread over their bytes), then up
        // to the next index entry, before which the record ends. Continuing from the
        // previous record found, read ahead for the positions that likely follow.
        let estimate = bound.map(|(p2, o2)| {
            let per = p2.saturating_sub(pos) / (o2 - at).max(1);
            (pos + (offset - at + 2) * per + SLACK).min(p2)
        });
        let sequential = matches!(self.next, Some((_, no)) if no <= offset && no >= at);
        if let (true, Some(next)) = (sequential, self.next) {
            (pos, at) = next;
        }
        let mut first = true;
        loop {
            let read_to = match (sequential, bound, estimate) {
                (true, _, _) => pos + SEQUENTIAL_WINDOW,
                (false, Some(_), Some(est)) if first => est,
                (false, Some((p2, _)), _) => p2,
                (false, None, _) => pos + RANDOM_WINDOW,
            };
            first = false;
            if !self.ensure(seg, pos, FRAME_HEADER + 4, read_to, limit)? {
                return if pos >= limit {
                    Ok(None)
                } else {
                    Err(LookupError::Corrupt(pos))
                };
            }
            let b = &self.buf[(pos - self.start) as usize..self.len];
            let n = record::frame_len(b).map_err(|_| LookupError::Corrupt(pos))?;
            let delta = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
            if seg.base_offset + u64::from(delta) != at {
                return Err(LookupError::Corrupt(pos));
            }
            if at == offset {
                if !self.ensure(seg, pos, n, read_to, limit)? {
                    return Err(LookupError::Corrupt(pos));
                }
                let i = (pos - self.start) as usize;
                match record::decode(&self.buf[i..i + n], seg.base_offset, seg.base_ts) {
                    Ok((r, _)) if r.offset == offset => {}
                    _ => return Err(LookupError::Corrupt(pos)),
                }
                self.next = Some((pos + n as u64, at + 1));
                return Ok(Some((pos, n)));
            }
            pos += n as u64;
            at += 1;
        }
    }

    /// The record at `offset` of `shared`'s shard.
    pub(crate) fn lookup(
        &mut self,
        shared: &ShardShared,
        offset: u64,
    ) -> Result<Lookup<'_>, CoreError> {
        self.lookup_once(shared, offset, true)
    }

    fn lookup_once(
        &mut self,
        shared: &ShardShared,
        offset: u64,
        may_retry: bool,
    ) -> Result<Lookup<'_>, CoreError> {
        let Some((gen, seg)) = locate(shared, offset) else {
            return Ok(Lookup::Missing);
        };
        let bad = match self.find(&seg, offset) {
            Ok(Some((pos, n))) => {
                let i = (pos - self.start) as usize;
                let r = record::decode_verified(&self.buf[i..i + n], seg.base_offset, seg.base_ts)
                    .expect("verified by find");
                return Ok(Lookup::Found(r));
            }
            Ok(None) => return Ok(Lookup::Missing),
            Err(LookupError::Io(e)) => {
                return Err(CoreError::from_io(
                    format!("read {}", seg.path.display()),
                    &e,
                ))
            }
            Err(LookupError::Corrupt(pos)) => pos,
        };
        self.next = None;
        if seg.is_sealed() {
            // A sealed segment failing verification is replaced by its intact runs: the
            // position is looked up again among them (once), else it is gone.
            self.seg = None;
            if shard::salvage_live(&gen, &seg, bad) && may_retry {
                return self.lookup_once(shared, offset, false);
            }
            Ok(Lookup::Missing)
        } else {
            Err(CoreError::Corrupt(format!(
                "{} at byte {bad}: record fails verification",
                seg.path.display()
            )))
        }
    }
}

pub(crate) enum LookupError {
    Io(std::io::Error),
    Corrupt(u64),
}

impl From<std::io::Error> for LookupError {
    fn from(e: std::io::Error) -> Self {
        LookupError::Io(e)
    }
}
