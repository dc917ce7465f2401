//! Finding a publisher's QoS 2 PUBLISH in the log by its packet id.
//!
//! A persistent publisher's inbound QoS 2 packet id is recorded as *pending* (with the
//! shard's end at that moment) before its message is appended, and the record is
//! appended with the id ([`super::NewMessage::inbound_id`]). After a crash, a pending id
//! is resolved by looking for that record: found, the message was stored (a re-sent
//! PUBLISH is a duplicate); not found, it never was (nobody was told it was, so the
//! client's re-sent PUBLISH is stored as new).
use super::segment::{self, ScanEnd};
use super::Log;
use crate::error::CoreError;
use std::sync::atomic::Ordering;

/// The offset of the first record in shard `shard` at or after `from` that `publisher`
/// appended with inbound packet id `id`, if any. Reads committed records only; a
/// segment that fails verification is passed over (what it held cannot be found).
pub fn find_inbound(
    log: &Log,
    shard: u32,
    from: u64,
    publisher: &[u8],
    id: u16,
) -> Result<Option<u64>, CoreError> {
    if id == 0 {
        return Err(CoreError::InvalidArgument("inbound packet id 0".into()));
    }
    find_from(log, shard, from, publisher, Some(id))
}

/// The offset of the first record in shard `shard` at or after `from` that `publisher`
/// appended, whatever its inbound packet id, if any: resolves a will recorded as being
/// published before a crash (its publisher was disconnected from `from` on, so a record of
/// its from there is the will). Reads as [`find_inbound`].
pub fn find_published(
    log: &Log,
    shard: u32,
    from: u64,
    publisher: &[u8],
) -> Result<Option<u64>, CoreError> {
    find_from(log, shard, from, publisher, None)
}

fn find_from(
    log: &Log,
    shard: u32,
    from: u64,
    publisher: &[u8],
    id: Option<u16>,
) -> Result<Option<u64>, CoreError> {
    let n = log.n_shards();
    if shard >= n {
        return Err(CoreError::InvalidArgument(format!(
            "shard {shard} out of range: the store has {n} shards"
        )));
    }
    let shared = &log.shards[shard as usize].shared;
    let end = shared.end.load(Ordering::Acquire);
    let gens = shared.generations();
    let gi = gens
        .partition_point(|g| g.first_offset <= from)
        .saturating_sub(1);
    let mut scratch = Vec::new();
    for g in &gens[gi..] {
        let segs = g.segments.read().unwrap_or_else(|p| p.into_inner()).clone();
        let si = segs
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        for seg in &segs[si..] {
            if seg.end_offset() <= from {
                continue;
            }
            if seg.base_offset >= end {
                return Ok(None);
            }
            let (pos, _) = seg.seek_offset(from);
            let mut found = None;
            let how = segment::scan(
                seg.file(),
                seg.base_offset,
                seg.base_ts,
                pos,
                seg.committed_len(),
                &mut scratch,
                |_, _, r| {
                    if r.offset >= end {
                        return false;
                    }
                    if r.offset >= from
                        && id.is_none_or(|id| r.inbound_id == id)
                        && r.publisher == publisher
                    {
                        found = Some(r.offset);
                        return false;
                    }
                    true
                },
            )
            .map_err(|e| CoreError::from_io(format!("read {}", seg.path.display()), &e))?;
            if found.is_some() {
                return Ok(found);
            }
            if matches!(how, ScanEnd::Stopped(_)) {
                return Ok(None); // reached the end
            }
        }
    }
    Ok(None)
}
