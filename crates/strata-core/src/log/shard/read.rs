//! The readers' side of a shard: reads of a stream from a position, counts and time
//! lookups for cursors, and the salvage of a sealed segment found damaged while reading.
use super::super::record::RecordRef;
use super::super::salvage;
use super::super::segment::{self, ScanEnd, Segment, HEADER_LEN};
use super::super::stream;
use super::recover::{base_of_name, quarantine, salvage_segment};
use super::{io, Generation, Loss, Recovery};
use crate::error::CoreError;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Reads one stream of a generation from a cursor position.
pub struct StreamRead<'a> {
    /// Records to deliver at most.
    pub batch: usize,
    /// Topic filter applied to each record (None: all records of the stream).
    pub filter: Option<&'a str>,
    /// Per-topic retention check: `true` when a record is still visible.
    pub visible: &'a dyn Fn(&RecordRef<'_>) -> bool,
}

impl std::fmt::Debug for StreamRead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRead")
            .field("batch", &self.batch)
            .field("filter", &self.filter)
            .finish()
    }
}

/// Raw outcome of [`read_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawRead {
    pub delivered: usize,
    pub skipped: u64,
    pub filled: bool,
    pub at_end_of_sealed: bool,
}

/// Reads records of `stream` in `gen` from `*offset`, advancing `*offset` past every
/// scanned record and `*seen` by every record of the stream passed.
pub(crate) fn read_stream(
    gen: &Generation,
    stream: u32,
    offset: &mut u64,
    seen: &mut u64,
    req: &StreamRead<'_>,
    scratch: &mut Vec<u8>,
    sink: &mut dyn FnMut(&RecordRef<'_>),
) -> Result<RawRead, CoreError> {
    let sealed = gen.sealed.load(Ordering::Acquire);
    let segs = gen.segs();
    let mut out = RawRead {
        delivered: 0,
        skipped: 0,
        filled: false,
        at_end_of_sealed: false,
    };
    let start = segs
        .partition_point(|s| s.base_offset <= *offset)
        .saturating_sub(1);
    let mut seen_before_seg: u64 = segs[..start].iter().map(|s| s.stream_count(stream)).sum();
    for seg in &segs[start..] {
        let seg_count = seg.stream_count(stream);
        let seen_after_seg = seen_before_seg + seg_count;
        seen_before_seg = seen_after_seg;
        if out.delivered >= req.batch {
            out.filled = true;
            return Ok(out);
        }
        let end = seg.end_offset();
        if *offset >= end && seg.is_sealed() {
            continue;
        }
        if *offset < seg.base_offset {
            *offset = seg.base_offset; // gap left by a quarantined segment
        }
        if seg.stream_count(stream) == 0 {
            *offset = (*offset).max(end);
            continue;
        }
        let limit = seg.committed_len();
        let (pos, _) = seg.seek_offset(*offset);
        let mut err = None;
        let end = segment::scan(
            seg.file(),
            seg.base_offset,
            seg.base_ts,
            pos,
            limit,
            scratch,
            |_, _, r| {
                if r.offset < *offset {
                    return true;
                }
                if out.delivered >= req.batch {
                    return false;
                }
                *offset = r.offset + 1;
                if r.stream != stream {
                    return true;
                }
                *seen += 1;
                if !(req.visible)(r) {
                    out.skipped += 1;
                    return true;
                }
                if req.filter.is_none_or(|f| stream::topic_matches(f, r.topic)) {
                    sink(r);
                    out.delivered += 1;
                }
                true
            },
        )
        .map_err(|e| io(format!("read {}", seg.path.display()), e))?;
        match end {
            ScanEnd::Limit => {}
            ScanEnd::Stopped(_) => {
                out.filled = true;
                return Ok(out);
            }
            ScanEnd::Incomplete(p) | ScanEnd::Corrupt(p) if seg.is_sealed() => {
                // A sealed segment that fails verification is salvaged (the intact records
                // stay readable for later reads), and the records it held for this stream
                // past here are reported as skipped by this read.
                salvage_live(gen, seg, p);
                out.skipped += seen_after_seg.saturating_sub(*seen);
                *seen = (*seen).max(seen_after_seg);
                *offset = (*offset).max(seg.end_offset());
            }
            ScanEnd::Incomplete(p) | ScanEnd::Corrupt(p) => {
                err = Some(CoreError::Corrupt(format!(
                    "{} at byte {p}: record fails verification",
                    seg.path.display()
                )));
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
    }
    if out.delivered >= req.batch {
        out.filled = true;
    }
    let last_end = segs.last().map_or(*offset, |s| s.end_offset());
    out.at_end_of_sealed = sealed && *offset >= last_end;
    Ok(out)
}

/// A sealed segment found damaged while reading (its index was trusted at open): it is
/// replaced by its runs of intact records (see [`salvage`]), so the damage costs only the
/// damaged records; they are recorded in `gen.losses`. True when the segment list changed
/// (the caller reads again from where it was); false when nothing could be kept and the
/// segment is simply out of service.
pub(crate) fn salvage_live(gen: &Generation, seg: &Arc<Segment>, at: u64) -> bool {
    let _one_at_a_time = gen.salvaging.lock().unwrap_or_else(|p| p.into_inner());
    let in_service = gen
        .segments
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|s| Arc::ptr_eq(s, seg));
    if !in_service {
        return true; // another reader replaced it meanwhile
    }
    let mut rec = Recovery::default();
    let replaced = (|| -> Result<Vec<Arc<Segment>>, CoreError> {
        let runs = salvage::find_runs(
            seg.file(),
            seg.base_offset,
            seg.base_ts,
            seg.committed_len(),
        )
        .map_err(|e| io(format!("scan {}", seg.path.display()), e))?;
        let placed = salvage_segment(
            &seg.path,
            seg.file(),
            seg.base_offset,
            seg.base_ts,
            &runs,
            Some(seg.end_offset()),
            gen.shard,
            &mut rec,
        )?;
        let mut out = Vec::new();
        for path in placed {
            let f = File::open(&path).map_err(|e| io(format!("open {}", path.display()), e))?;
            let len = f.metadata().map_err(|e| io("stat segment", e))?.len();
            let base = base_of_name(&path).unwrap_or(seg.base_offset);
            let interval = super::Options::default().index_interval;
            let (s, _) = segment::rebuild_summary(&f, base, seg.base_ts, len, interval)
                .map_err(|e| io(format!("scan {}", path.display()), e))?;
            segment::write_index(&path, base, seg.base_ts, &s).map_err(|e| io("write index", e))?;
            out.push(Arc::new(Segment::new(path, f, base, seg.base_ts, s, true)));
        }
        Ok(out)
    })();
    let mut segs = gen.segments.write().unwrap_or_else(|p| p.into_inner());
    let Some(i) = segs.iter().position(|s| Arc::ptr_eq(s, seg)) else {
        return true;
    };
    let changed = match replaced {
        Ok(runs) => {
            segs.splice(i..=i, runs);
            true
        }
        Err(e) => {
            // Nothing could be rewritten: the segment is taken out of service whole.
            segs.remove(i);
            drop(segs);
            quarantine(
                &seg.path,
                &mut rec,
                &format!("record at byte {at} fails verification; salvage failed: {e}"),
            );
            rec.losses.push(Loss {
                shard: gen.shard,
                from: seg.base_offset,
                to: Some(seg.end_offset()),
                file: seg.path.display().to_string(),
                reason: format!("damaged, could not be salvaged: {e}"),
            });
            false
        }
    };
    gen.quarantined
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(rec.quarantined);
    gen.losses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(rec.losses);
    changed
}

/// Number of records of `stream` in `gen` with offset below `offset`.
pub(crate) fn count_before(
    gen: &Generation,
    stream: u32,
    offset: u64,
    scratch: &mut Vec<u8>,
) -> Result<u64, CoreError> {
    let mut n = 0;
    for seg in gen.segs() {
        if seg.end_offset() <= offset {
            n += seg.stream_count(stream);
            continue;
        }
        if seg.base_offset >= offset {
            break;
        }
        segment::scan(
            seg.file(),
            seg.base_offset,
            seg.base_ts,
            HEADER_LEN,
            seg.committed_len(),
            scratch,
            |_, _, r| {
                if r.offset >= offset {
                    return false;
                }
                if r.stream == stream {
                    n += 1;
                }
                true
            },
        )
        .map_err(|e| io("scan", e))?;
        break;
    }
    Ok(n)
}

/// First offset in `gen` whose record has timestamp ≥ `ts` (the end when none).
pub(crate) fn offset_at_time(
    gen: &Generation,
    ts: u64,
    scratch: &mut Vec<u8>,
) -> Result<u64, CoreError> {
    let segs = gen.segs();
    let Some(first) = segs.first() else {
        return Ok(0);
    };
    let mut found = None;
    for seg in &segs {
        if seg.last_ts() < ts {
            continue;
        }
        let (pos, _) = seg.seek_time(ts);
        segment::scan(
            seg.file(),
            seg.base_offset,
            seg.base_ts,
            pos,
            seg.committed_len(),
            scratch,
            |_, _, r| {
                if r.timestamp >= ts {
                    found = Some(r.offset);
                    return false;
                }
                true
            },
        )
        .map_err(|e| io("scan", e))?;
        if found.is_some() {
            break;
        }
    }
    let _ = first;
    Ok(found.unwrap_or_else(|| segs.last().map_or(0, |s| s.end_offset())))
}
