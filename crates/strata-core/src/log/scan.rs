//! Session replay scan: one shard's log in offset order, keeping the records whose
//! topic matches any of a session's subscription filters (the EMQX durable-session
//! model: a session keeps, per shard, the next offset to examine and replays its
//! backlog from there).
//!
//! [`scan()`] walks the shard's segments oldest first — across segment rolls and
//! generations — from the first record at or after `from`, reading committed bytes
//! only, sequentially, in 256 KiB chunks through [`segment::scan`] and the thread's
//! scratch buffer. Each visible record gets a bit mask over the filters (bit `i` set
//! when `filters[i]` matches the topic and the record's offset is at least
//! `filters[i].start`); records with a non-zero mask are emitted in the entry layout
//! of [`crate::fetch`] (32-byte header, then publisher, topic, properties, payload),
//! their masks appended to [`ScanBatch::masks`].
//!
//! Matching costs little per record: the filters are split once per call
//! ([`FilterMatcher`]); per generation and stream, the filters that can match the
//! stream's learned structure are worked out once (for a stream whose structure has
//! no learned wildcard that *is* the answer, as the structure is the topic); topics
//! of wildcard streams are matched against the remaining candidates only, once per
//! distinct topic per call (a bounded memo). A segment none of whose
//! streams can match any filter (per its per-stream counts) is passed over without
//! reading it.
//!
//! Invariants of a scan (and of a sequence of scans, each from the previous `next`):
//! - The offset space `[from, next)` is covered exactly once: every record in it was
//!   examined, or passed over in a segment that holds no stream any filter can match,
//!   or did not exist any more (dropped by retention, quarantined: counted in
//!   `skipped`). No record at or after `next` was examined. So scanning again from
//!   `next` neither re-emits nor misses a record.
//! - Nothing at or beyond the shard's end as it was when the scan started is read
//!   (every byte read is committed, so concurrent appends are safe).
//! - Entries are in offset order; entry `j`'s mask has at least one bit set.
use super::record::RecordRef;
use super::segment::{self, ScanEnd, Segment};
use super::shard::{self, Generation, ShardShared};
use super::stream::{FilterMatcher, Level};
use super::{now_ms, with_scratch, Log};
use crate::error::CoreError;
use crate::fetch::{self, Entry, ENTRY_HEADER};
use crate::topic::parse_filter;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;

/// One subscription filter of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFilter {
    /// MQTT topic filter; `$share/{group}/{filter}` matches by its inner filter.
    pub filter: String,
    /// First offset this filter applies to: a record at an offset below it never
    /// matches this filter (the offset at which the subscription was made).
    pub start: u64,
}

/// When a scan stops (see [`scan()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Stop once this many entries were emitted.
    pub max_entries: usize,
    /// Byte budget of [`ScanBatch::buf`]: an entry that would take the buffer past it
    /// is left for the next scan, except the first, which is always emitted.
    pub max_bytes: usize,
    /// Stop once this many records were examined (read and tested), matching or not:
    /// bounds the time a scan takes when little matches.
    pub max_examined: usize,
    /// Stop before the first record at or after this offset.
    pub until: Option<u64>,
}

impl Default for ScanLimits {
    /// 1000 entries, 4 MiB, 65 536 records examined, no `until`.
    fn default() -> Self {
        ScanLimits {
            max_entries: 1000,
            max_bytes: 4 << 20,
            max_examined: 65_536,
            until: None,
        }
    }
}

/// Why a scan returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStatus {
    /// A limit was reached (entries, bytes or records examined): scan again from
    /// `next` right away.
    Next,
    /// Caught up with the shard's committed end; `next` is that end. Park with
    /// [`Log::wait`]`(shard, next)` and scan again once it passes.
    Done,
    /// The next record to examine is at or after `limits.until`.
    Until,
}

/// The result of one [`scan()`].
///
/// Invariants: `offsets.len() == entries + 1`, `offsets[0] == 0`, increasing,
/// `offsets[entries] == buf.len()` (as [`crate::fetch::FetchBatch`]);
/// `masks.len() == entries * words`, entry `j`'s words at `masks[j*words..(j+1)*words]`
/// (bit `i % 32` of word `i / 32` is filter `i`), none all zero; entries are in
/// increasing offset order, all below `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBatch {
    /// Entries, back to back, in the layout of [`crate::fetch`].
    pub buf: Vec<u8>,
    /// Start of each entry, plus the end.
    pub offsets: Vec<u32>,
    /// `words` mask words per entry.
    pub masks: Vec<u32>,
    /// Mask words per entry: `ceil(filters.len() / 32)`.
    pub words: usize,
    /// First offset not examined: pass it as `from` to continue. Never below `from`.
    pub next: u64,
    /// Why the scan returned.
    pub status: ScanStatus,
    /// Records passed over because they are gone or hidden (approximate, see
    /// [`scan()`]).
    pub skipped: u64,
}

impl ScanBatch {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// True when nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decodes entry `j`.
    pub fn entry(&self, j: usize) -> Option<Entry<'_>> {
        fetch::entry_at(&self.buf, &self.offsets, j)
    }
    /// Mask words of entry `j`.
    pub fn mask(&self, j: usize) -> Option<&[u32]> {
        self.masks.get(j * self.words..(j + 1) * self.words)
    }
}

/// Scans shard `shard` from offset `from` for records matching `filters`.
///
/// Examines records in offset order from the first at or after `from`. When `from`
/// is below the oldest record still stored (generations dropped by retention,
/// quarantined segments), the scan starts at the oldest and counts the missing
/// offsets in `skipped`. Each visible record whose mask (see [`ScanBatch`]) is not
/// zero is emitted. With no filters nothing matches.
///
/// Returns, checked before each record in this order:
/// - [`ScanStatus::Until`] when the next offset to examine is at or after
///   `limits.until`;
/// - [`ScanStatus::Done`] when it is the shard's end (as [`Log::shard_end`] reported
///   when the scan started; `next` is then that end, or `from` if that is beyond it);
/// - [`ScanStatus::Next`] when `max_entries` entries were emitted, the buffer holds
///   `max_bytes` or the next matching entry would take it past them (the first entry
///   is always emitted), or `max_examined` records were examined.
///
/// `skipped` counts offsets in `[from, next)` whose record is gone (dropped
/// generation, quarantined segment — exact), plus examined records hidden by
/// retention (per-topic retention included). It is approximate in one way: records
/// in a segment passed over unread because none of its streams can match are not
/// checked for retention, so hidden ones there are not counted.
///
/// Errors: [`CoreError::InvalidArgument`] for `shard >= n_shards`;
/// [`CoreError::InvalidTopic`] for a malformed filter; [`CoreError::Io`] for a failed
/// read; [`CoreError::Corrupt`] for a record failing verification in the active
/// segment (a sealed segment failing it is quarantined, as for [`Log::read_at`], and
/// its remaining records counted in `skipped`).
pub fn scan(
    log: &Log,
    shard: u32,
    from: u64,
    filters: &[ScanFilter],
    limits: ScanLimits,
) -> Result<ScanBatch, CoreError> {
    let n = log.n_shards();
    if shard >= n {
        return Err(CoreError::InvalidArgument(format!(
            "shard {shard} out of range: the store has {n} shards"
        )));
    }
    let set = FilterSet::compile(filters, from)?;
    let shared = &log.shards[shard as usize].shared;
    // The end first: every record below it is then in a segment of the snapshot
    // taken below and within that segment's committed bytes (the writer publishes
    // the segment, then the end).
    let end = shared.end.load(Ordering::Acquire);
    let until = limits.until.unwrap_or(u64::MAX);
    if from >= end || from >= until {
        // Caught up (the common case for a live session's other shards): nothing to read.
        return Ok(ScanBatch {
            buf: Vec::new(),
            offsets: vec![0],
            masks: Vec::new(),
            words: set.words,
            next: from,
            status: if from >= until {
                ScanStatus::Until
            } else {
                ScanStatus::Done
            },
            skipped: 0,
        });
    }
    let visible = log.visibility(now_ms());
    let mut w = Walk {
        set: &set,
        shard: shard as u16,
        until,
        max_entries: limits.max_entries,
        max_bytes: limits.max_bytes.min(u32::MAX as usize),
        max_examined: limits.max_examined,
        end,
        next: from,
        examined: 0,
        skipped: 0,
        buf: Vec::new(),
        offsets: vec![0],
        masks: Vec::new(),
        cur: vec![0; set.words],
        active: vec![0; set.words],
        memo: TopicMemo::new(set.words),
        salvaged: false,
        no_salvage: false,
    };
    let status = with_scratch(|scratch| w.run(shared, &visible, scratch))?;
    Ok(ScanBatch {
        buf: w.buf,
        offsets: w.offsets,
        masks: w.masks,
        words: set.words,
        next: w.next,
        status,
        skipped: w.skipped,
    })
}

/// The filters of one scan, split once.
struct FilterSet {
    matchers: Vec<FilterMatcher>,
    starts: Vec<u64>,
    words: usize,
    /// `(filter, start)` of the filters whose start is above the scan's `from`: the
    /// only ones whose start can clear a bit.
    late: Vec<(usize, u64)>,
    /// Largest start in `late` (0 when empty).
    max_start: u64,
}

impl FilterSet {
    fn compile(filters: &[ScanFilter], from: u64) -> Result<FilterSet, CoreError> {
        let mut matchers = Vec::with_capacity(filters.len());
        for f in filters {
            matchers.push(FilterMatcher::new(parse_filter(&f.filter)?.filter));
        }
        let late: Vec<(usize, u64)> = filters
            .iter()
            .enumerate()
            .filter(|(_, f)| f.start > from)
            .map(|(i, f)| (i, f.start))
            .collect();
        Ok(FilterSet {
            matchers,
            starts: filters.iter().map(|f| f.start).collect(),
            words: filters.len().div_ceil(32),
            max_start: late.iter().map(|(_, s)| *s).max().unwrap_or(0),
            late,
        })
    }
}

/// What the filters can do for the records of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not worked out yet.
    Unknown,
    /// No filter can match.
    None,
    /// The structure is the topic: the bits are the topic's mask.
    Exact,
    /// The bits are the filters that may match; test each topic against them.
    Candidates,
}

/// Per-stream masks of one generation, worked out on first use.
struct StreamMasks {
    words: usize,
    kind: Vec<Kind>,
    bits: Vec<u32>,
    /// Every filter: for a stream missing from the table (never expected).
    all: Vec<u32>,
}

impl StreamMasks {
    fn new(set: &FilterSet) -> Self {
        let mut all = vec![0u32; set.words];
        for i in 0..set.matchers.len() {
            all[i / 32] |= 1 << (i % 32);
        }
        StreamMasks {
            words: set.words,
            kind: Vec::new(),
            bits: Vec::new(),
            all,
        }
    }

    fn reset(&mut self) {
        self.kind.clear();
        self.bits.clear();
    }

    fn get(&mut self, g: &Generation, set: &FilterSet, stream: u32) -> (Kind, &[u32]) {
        let i = stream as usize;
        let w = self.words;
        if self.kind.get(i).is_none_or(|k| *k == Kind::Unknown) {
            let structs = g.streams.read().expect("poisoned");
            let Some(s) = structs.get(i) else {
                return (Kind::Candidates, &self.all);
            };
            if self.kind.len() < structs.len() {
                self.kind.resize(structs.len(), Kind::Unknown);
                self.bits.resize(structs.len() * w, 0);
            }
            let bits = &mut self.bits[i * w..(i + 1) * w];
            let mut any = false;
            for (k, m) in set.matchers.iter().enumerate() {
                if m.may_match(s) {
                    bits[k / 32] |= 1 << (k % 32);
                    any = true;
                }
            }
            self.kind[i] = if !any {
                Kind::None
            } else if s.iter().all(|l| matches!(l, Level::Static(_))) {
                Kind::Exact
            } else {
                Kind::Candidates
            };
        }
        (self.kind[i], &self.bits[i * w..(i + 1) * w])
    }
}

/// Most distinct topics, and topic bytes, one scan remembers the mask of.
const MEMO_TOPICS: usize = 16_384;
const MEMO_BYTES: usize = 1 << 20;
/// Streams with at most this many candidate filters match each topic directly.
const MEMO_MIN_FILTERS: u32 = 3;

/// Masks of topics already matched in this scan: one hash and one compare per
/// record instead of matching every candidate filter again. Bounded: past
/// [`MEMO_TOPICS`] topics or [`MEMO_BYTES`] bytes, new topics are matched each time.
struct TopicMemo {
    hasher: RandomState,
    /// `(topic start in bytes, topic length, mask start in masks)`.
    table: HashTable<(u32, u32, u32)>,
    bytes: Vec<u8>,
    masks: Vec<u32>,
    words: usize,
}

impl TopicMemo {
    fn new(words: usize) -> Self {
        TopicMemo {
            hasher: RandomState::default(),
            table: HashTable::new(),
            bytes: Vec::new(),
            masks: Vec::new(),
            words,
        }
    }

    fn get(&self, hash: u64, topic: &[u8]) -> Option<&[u32]> {
        let bytes = &self.bytes;
        let &(_, _, m) = self.table.find(hash, |&(s, l, _)| {
            &bytes[s as usize..s as usize + l as usize] == topic
        })?;
        Some(&self.masks[m as usize..m as usize + self.words])
    }

    fn insert(&mut self, hash: u64, topic: &[u8], mask: &[u32]) {
        if self.table.len() >= MEMO_TOPICS || self.bytes.len() + topic.len() > MEMO_BYTES {
            return;
        }
        let entry = (
            self.bytes.len() as u32,
            topic.len() as u32,
            self.masks.len() as u32,
        );
        self.bytes.extend_from_slice(topic);
        self.masks.extend_from_slice(mask);
        let (bytes, hasher) = (&self.bytes, &self.hasher);
        self.table.insert_unique(hash, entry, |&(s, l, _)| {
            hasher.hash_one(&bytes[s as usize..s as usize + l as usize])
        });
    }
}

/// State of one scan.
struct Walk<'a> {
    set: &'a FilterSet,
    shard: u16,
    until: u64,
    max_entries: usize,
    max_bytes: usize,
    max_examined: usize,
    /// The shard's end when the scan started.
    end: u64,
    /// Next offset to examine.
    next: u64,
    examined: usize,
    skipped: u64,
    buf: Vec<u8>,
    offsets: Vec<u32>,
    masks: Vec<u32>,
    /// Mask of the record at hand.
    cur: Vec<u32>,
    /// Filters whose start is below the end of the segment at hand.
    active: Vec<u32>,
    /// Masks of the topics of wildcard streams matched so far.
    memo: TopicMemo,
    /// A damaged segment was replaced during this walk: walk again.
    salvaged: bool,
    /// Salvage was retried enough: pass damaged segments over.
    no_salvage: bool,
}

/// Walks of one scan that may find (and salvage) a damaged segment before it gives up
/// salvaging and passes such segments over.
const SALVAGE_RETRIES: usize = 4;

impl Walk<'_> {
    /// Why the scan stops before examining offset `at`, if it does.
    fn stop(&self, at: u64) -> Option<ScanStatus> {
        if at >= self.until {
            Some(ScanStatus::Until)
        } else if at >= self.end {
            Some(ScanStatus::Done)
        } else if self.offsets.len() > self.max_entries
            || (!self.buf.is_empty() && self.buf.len() >= self.max_bytes)
            || self.examined >= self.max_examined
        {
            Some(ScanStatus::Next)
        } else {
            None
        }
    }

    /// Moves `next` up to `to` (never past the end or `until`) without examining.
    /// Returns how far it moved.
    fn pass_to(&mut self, to: u64) -> u64 {
        let to = to.min(self.end).min(self.until);
        let moved = to.saturating_sub(self.next);
        self.next += moved;
        moved
    }

    fn run(
        &mut self,
        shared: &ShardShared,
        visible: &dyn Fn(&RecordRef<'_>) -> bool,
        scratch: &mut Vec<u8>,
    ) -> Result<ScanStatus, CoreError> {
        // A damaged segment salvaged on the way changes the segment list: walk again from
        // `next` over the new one (a few times at most; then its rest is skipped).
        for _ in 0..SALVAGE_RETRIES {
            self.salvaged = false;
            let status = self.walk(shared, visible, scratch)?;
            if !self.salvaged {
                return Ok(status);
            }
        }
        self.no_salvage = true;
        self.walk(shared, visible, scratch)
    }

    fn walk(
        &mut self,
        shared: &ShardShared,
        visible: &dyn Fn(&RecordRef<'_>) -> bool,
        scratch: &mut Vec<u8>,
    ) -> Result<ScanStatus, CoreError> {
        let gens = shared.generations();
        let gi = gens
            .partition_point(|g| g.first_offset <= self.next)
            .saturating_sub(1);
        let mut masks = StreamMasks::new(self.set);
        let mut ids = Vec::new();
        for g in &gens[gi..] {
            if let Some(s) = self.stop(self.next) {
                return Ok(s);
            }
            masks.reset();
            let segs = g.segments.read().expect("poisoned").clone();
            let si = segs
                .partition_point(|s| s.base_offset <= self.next)
                .saturating_sub(1);
            for seg in &segs[si..] {
                // Offsets below the segment and past the previous one are gone.
                self.skipped += self.pass_to(seg.base_offset);
                if let Some(s) = self.stop(self.next) {
                    return Ok(s);
                }
                let seg_end = seg.end_offset().min(self.end);
                if self.next >= seg_end {
                    continue;
                }
                if self.nothing_can_match(g, seg, seg_end, &mut masks, &mut ids) {
                    self.pass_to(seg_end);
                    continue;
                }
                if let Some(s) = self.scan_segment(g, seg, seg_end, &mut masks, visible, scratch)? {
                    return Ok(s);
                }
                if self.salvaged {
                    return Ok(ScanStatus::Next);
                }
            }
        }
        // Offsets past the last segment and below the end are gone too.
        self.skipped += self.pass_to(self.end);
        Ok(self.stop(self.next).unwrap_or(ScanStatus::Done))
    }

    /// True when no record of `seg` below `seg_end` can match: none of its streams
    /// may match a filter whose start is below `seg_end`.
    fn nothing_can_match(
        &mut self,
        g: &Generation,
        seg: &Segment,
        seg_end: u64,
        masks: &mut StreamMasks,
        ids: &mut Vec<u32>,
    ) -> bool {
        let set = self.set;
        if set.matchers.is_empty() {
            return true;
        }
        self.active.fill(0);
        for (i, s) in set.starts.iter().enumerate() {
            if *s < seg_end {
                self.active[i / 32] |= 1 << (i % 32);
            }
        }
        seg.stream_ids(ids);
        ids.iter().all(|id| {
            let (kind, bits) = masks.get(g, set, *id);
            kind == Kind::None || bits.iter().zip(&self.active).all(|(b, a)| b & a == 0)
        })
    }

    /// Examines the records of `seg` from `next`. `Some(status)` when the scan stops
    /// here, `None` when the segment is done.
    fn scan_segment(
        &mut self,
        g: &Generation,
        seg: &std::sync::Arc<Segment>,
        seg_end: u64,
        masks: &mut StreamMasks,
        visible: &dyn Fn(&RecordRef<'_>) -> bool,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<ScanStatus>, CoreError> {
        let limit = seg.committed_len();
        let (pos, _) = seg.seek_offset(self.next);
        let mut status = None;
        let end = segment::scan(
            seg.file(),
            seg.base_offset,
            seg.base_ts,
            pos,
            limit,
            scratch,
            |_, _, r| {
                if r.offset < self.next {
                    return true; // between the index entry and `next`
                }
                if let Some(s) = self.stop(r.offset) {
                    status = Some(s);
                    return false;
                }
                if !visible(r) {
                    self.skipped += 1;
                } else if self.mask_of(g, masks, r) {
                    let size = ENTRY_HEADER
                        + r.publisher.len()
                        + r.topic.len()
                        + r.properties.len()
                        + r.payload.len();
                    if !self.buf.is_empty() && self.buf.len() + size > self.max_bytes {
                        status = Some(ScanStatus::Next);
                        return false;
                    }
                    fetch::push_entry(&mut self.buf, self.shard, r);
                    self.offsets.push(self.buf.len() as u32);
                    self.masks.extend_from_slice(&self.cur);
                }
                self.examined += 1;
                self.next = r.offset + 1;
                true
            },
        )
        .map_err(|e| CoreError::from_io(format!("read {}", seg.path.display()), &e))?;
        match end {
            ScanEnd::Limit => Ok(None),
            ScanEnd::Stopped(_) => Ok(status),
            ScanEnd::Incomplete(p) | ScanEnd::Corrupt(p) if seg.is_sealed() => {
                // As for cursor and positional reads: a sealed segment that fails
                // verification is replaced by its intact runs, read again from `next`
                // (see `run`); what it held that is gone is skipped when passed.
                if !self.no_salvage && shard::salvage_live(g, seg, p) {
                    self.salvaged = true;
                    return Ok(None);
                }
                self.skipped += self.pass_to(seg_end);
                Ok(None)
            }
            ScanEnd::Incomplete(p) | ScanEnd::Corrupt(p) => Err(CoreError::Corrupt(format!(
                "{} at byte {p}: record fails verification",
                seg.path.display()
            ))),
        }
    }

    /// Computes the mask of `r` into `cur`; true when any bit is set.
    fn mask_of(&mut self, g: &Generation, masks: &mut StreamMasks, r: &RecordRef<'_>) -> bool {
        let set = self.set;
        let (kind, bits) = masks.get(g, set, r.stream);
        match kind {
            Kind::None | Kind::Unknown => return false,
            Kind::Exact => self.cur.copy_from_slice(bits),
            Kind::Candidates => {
                // Matching a few filters costs about what a memo lookup does.
                let memo = bits.iter().map(|w| w.count_ones()).sum::<u32>() > MEMO_MIN_FILTERS;
                let hash = if memo {
                    self.memo.hasher.hash_one(r.topic)
                } else {
                    0
                };
                if let Some(m) = memo.then(|| self.memo.get(hash, r.topic)).flatten() {
                    // The mask depends on the topic alone: the candidates of any
                    // stream holding it include every filter that matches it.
                    self.cur.copy_from_slice(m);
                } else {
                    self.cur.fill(0);
                    for (w, word) in bits.iter().enumerate() {
                        let mut b = *word;
                        while b != 0 {
                            let i = b.trailing_zeros() as usize;
                            b &= b - 1;
                            if set.matchers[w * 32 + i].matches(r.topic) {
                                self.cur[w] |= 1 << i;
                            }
                        }
                    }
                    if memo {
                        self.memo.insert(hash, r.topic, &self.cur);
                    }
                }
            }
        }
        if r.offset < set.max_start {
            for &(i, start) in &set.late {
                if r.offset < start {
                    self.cur[i / 32] &= !(1 << (i % 32));
                }
            }
        }
        self.cur.iter().any(|w| *w != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{shard_of, topic_matches, FsyncPolicy, NewMessage, Options};
    use proptest::prelude::*;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn opts() -> Options {
        Options {
            n_shards: Some(1),
            fsync: FsyncPolicy::None,
            segment_bytes: 4096,
            index_interval: 128,
            retention_ms: None,
            lts_threshold: 4,
            ..Options::default()
        }
    }

    fn msg(topic: &str, i: usize) -> NewMessage {
        NewMessage {
            publisher: format!("p{}", i % 3).into_bytes(),
            topic: topic.to_string(),
            qos: (i % 3) as u8,
            retain: i.is_multiple_of(5),
            properties: if i.is_multiple_of(4) {
                vec![0x23, 0, i as u8]
            } else {
                Vec::new()
            },
            // Every 97th is larger than a scan's first read (16 KiB).
            payload: (0..if i % 97 == 50 { 40_000 } else { (i * 7) % 90 })
                .map(|k| (k + i) as u8)
                .collect(),
            inbound_id: 0,
        }
    }

    /// Appends `topics` (message `i` is `msg(topics[i], first + i)`) in one batch.
    fn append(log: &Log, topics: &[&str], first: usize) -> Vec<(u64, NewMessage)> {
        let ms: Vec<_> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| msg(t, first + i))
            .collect();
        let ps = log.append_blocking(ms.clone()).unwrap();
        ps.iter().map(|p| p.offset.0).zip(ms).collect()
    }

    fn f(filter: &str, start: u64) -> ScanFilter {
        ScanFilter {
            filter: filter.into(),
            start,
        }
    }

    fn limits(max_entries: usize, max_bytes: usize, max_examined: usize) -> ScanLimits {
        ScanLimits {
            max_entries,
            max_bytes,
            max_examined,
            until: None,
        }
    }

    /// `(offset, mask words)` the naive way: every record against every filter.
    fn model(
        records: &[(u64, NewMessage)],
        from: u64,
        filters: &[ScanFilter],
    ) -> Vec<(u64, Vec<u32>)> {
        let words = filters.len().div_ceil(32);
        records
            .iter()
            .filter(|(o, _)| *o >= from)
            .filter_map(|(o, m)| {
                let mut mask = vec![0u32; words];
                for (i, fl) in filters.iter().enumerate() {
                    let inner = parse_filter(&fl.filter).unwrap().filter;
                    if *o >= fl.start && topic_matches(inner, m.topic.as_bytes()) {
                        mask[i / 32] |= 1 << (i % 32);
                    }
                }
                mask.iter().any(|w| *w != 0).then_some((*o, mask))
            })
            .collect()
    }

    /// The entries of one batch as `(offset, mask)`, checking the batch invariants
    /// and that each entry is the record appended at its offset.
    fn entries(b: &ScanBatch, records: &[(u64, NewMessage)], shard: u32) -> Vec<(u64, Vec<u32>)> {
        assert_eq!(b.offsets[0], 0);
        assert_eq!(*b.offsets.last().unwrap() as usize, b.buf.len());
        assert_eq!(b.masks.len(), b.len() * b.words);
        (0..b.len())
            .map(|j| {
                let e = b.entry(j).unwrap();
                assert_eq!(u32::from(e.shard), shard);
                assert!(e.offset < b.next);
                let (_, m) = records.iter().find(|(o, _)| *o == e.offset).unwrap();
                assert_eq!(e.topic, m.topic.as_bytes());
                assert_eq!(e.publisher, &m.publisher[..]);
                assert_eq!(e.properties, &m.properties[..]);
                assert_eq!(e.payload, &m.payload[..]);
                assert_eq!((e.qos, e.retain), (m.qos, m.retain));
                let mask = b.mask(j).unwrap().to_vec();
                assert!(mask.iter().any(|w| *w != 0));
                (e.offset, mask)
            })
            .collect()
    }

    /// Scans shard 0 from `from` to Done with `lim`; returns the entries, the end
    /// offset and the total skipped.
    fn scan_all(
        log: &Log,
        from: u64,
        filters: &[ScanFilter],
        lim: ScanLimits,
        records: &[(u64, NewMessage)],
    ) -> (Vec<(u64, Vec<u32>)>, u64, u64) {
        let (mut out, mut next, mut skipped) = (Vec::new(), from, 0);
        for _ in 0..100_000 {
            let b = scan(log, 0, next, filters, lim).unwrap();
            assert!(b.next >= next);
            if let Some(e) = b.entry(0) {
                assert!(e.offset >= next);
            }
            out.extend(entries(&b, records, 0));
            next = b.next;
            skipped += b.skipped;
            if b.status == ScanStatus::Done {
                return (out, next, skipped);
            }
            assert_eq!(b.status, ScanStatus::Next);
        }
        panic!("no progress");
    }

    #[test]
    fn masks_follow_mqtt_matching_and_shared_and_dollar_rules() {
        let d = tempfile::tempdir().unwrap();
        let log = Log::open(
            d.path(),
            Options {
                n_shards: Some(2),
                ..opts()
            },
        )
        .unwrap();
        let topics = [
            "a/b/c",
            "a/x/c",
            "$SYS/broker/load",
            "a",
            "b/c",
            "$SYS/x",
            "a/b",
            "x/broker/y",
        ];
        // Every publisher of shard 1: the entries say shard 1.
        let p1 = (0..)
            .map(|n| format!("c{n}"))
            .find(|c| shard_of(c.as_bytes(), 2) == 1)
            .unwrap();
        let ms: Vec<_> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| NewMessage {
                publisher: p1.clone().into_bytes(),
                ..msg(t, i)
            })
            .collect();
        let ps = log.append_blocking(ms.clone()).unwrap();
        assert!(ps.iter().all(|p| p.shard == 1));
        let records: Vec<_> = ps.iter().map(|p| p.offset.0).zip(ms).collect();
        let filters = [
            f("a/+/c", 0),
            f("#", 0),
            f("$share/g/a/#", 0),
            f("$SYS/#", 0),
            f("+/broker/#", 0),
            f("+/c", 0),
        ];
        let b = scan(&log, 1, 0, &filters, ScanLimits::default()).unwrap();
        assert_eq!((b.status, b.next, b.skipped), (ScanStatus::Done, 8, 0));
        assert_eq!(b.words, 1);
        let got: Vec<(u64, u32)> = (0..b.len())
            .map(|j| {
                let e = b.entry(j).unwrap();
                assert_eq!(e.shard, 1);
                let (_, m) = &records[e.offset as usize];
                assert_eq!((e.topic, e.payload), (m.topic.as_bytes(), &m.payload[..]));
                (e.offset, b.mask(j).unwrap()[0])
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0b000111), // a/b/c: a/+/c, #, $share/g/a/#
                (1, 0b000111), // a/x/c
                (2, 0b001000), // $SYS/broker/load: only $SYS/# ([MQTT-4.7.2-1])
                (3, 0b000110), // a: # and a/# (parent level)
                (4, 0b100010), // b/c: #, +/c
                (5, 0b001000), // $SYS/x
                (6, 0b000110), // a/b
                (7, 0b010010), // x/broker/y: #, +/broker/#
            ]
        );
        // Shard 0 holds nothing: Done at once.
        let b = scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap();
        assert_eq!((b.len(), b.next, b.status), (0, 0, ScanStatus::Done));
        // No filters: nothing matches, the whole shard is passed.
        let b = scan(&log, 1, 0, &[], ScanLimits::default()).unwrap();
        assert_eq!(
            (b.len(), b.words, b.next, b.status),
            (0, 0, 8, ScanStatus::Done)
        );
    }

    #[test]
    fn more_than_32_filters_and_per_filter_start() {
        let d = tempfile::tempdir().unwrap();
        let log = Log::open(d.path(), opts()).unwrap();
        let topics: Vec<String> = (0..60).map(|k| format!("t/{}", k % 45)).collect();
        let ts: Vec<&str> = topics.iter().map(String::as_str).collect();
        let records = append(&log, &ts, 0);
        // Filter k < 39 is t/k; 39 is t/# from offset 20; 40 is t/5 from offset 50
        // (so t/5 at offset 5 has bit 5 only, at offset 50 bits 5 and 40).
        let mut filters: Vec<ScanFilter> = (0..39).map(|k| f(&format!("t/{k}"), 0)).collect();
        filters.push(f("t/#", 20));
        filters.push(f("t/5", 50));
        let b = scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap();
        assert_eq!(b.words, 2);
        assert_eq!(b.status, ScanStatus::Done);
        let got = entries(&b, &records, 0);
        assert_eq!(got, model(&records, 0, &filters));
        let at = |o: u64| got.iter().find(|(x, _)| *x == o).map(|(_, m)| m.clone());
        assert_eq!(at(5), Some(vec![1 << 5, 0]));
        assert_eq!(at(19), Some(vec![1 << 19, 0]), "before t/#'s start");
        assert_eq!(at(20), Some(vec![1 << 20, 1 << 7]), "from t/#'s start on");
        assert_eq!(at(41), Some(vec![0, 1 << 7]), "t/41: only t/# (bit 39)");
        assert_eq!(at(50), Some(vec![1 << 5, (1 << 7) | (1 << 8)]));
        // A record matched only by a filter whose start is past it is not emitted.
        let only_late = [f("t/1", 100)];
        let b = scan(&log, 0, 0, &only_late, ScanLimits::default()).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.next, 60);
    }

    #[test]
    fn limits_stop_and_next_continues_exactly() {
        let d = tempfile::tempdir().unwrap();
        let log = Log::open(d.path(), opts()).unwrap();
        let topics: Vec<String> = (0..300).map(|i| format!("s/{}/{}", i % 7, i % 5)).collect();
        let ts: Vec<&str> = topics.iter().map(String::as_str).collect();
        let records = append(&log, &ts, 0);
        let filters = [f("s/1/#", 0), f("s/+/3", 40), f("s/6/4", 0)];
        let want = model(&records, 0, &filters);
        assert!(want.len() > 60);

        // max_entries: exactly that many per call.
        let b = scan(&log, 0, 0, &filters, limits(10, usize::MAX, usize::MAX)).unwrap();
        assert_eq!((b.len(), b.status), (10, ScanStatus::Next));
        assert_eq!(b.next, want[9].0 + 1, "stops right after the 10th entry");
        // max_bytes: an entry that does not fit is left for the next call; the first
        // entry is emitted even past the budget.
        let b = scan(&log, 0, 0, &filters, limits(1000, 0, usize::MAX)).unwrap();
        assert_eq!(
            (b.len(), b.status, b.next),
            (1, ScanStatus::Next, want[0].0 + 1)
        );
        let one = b.buf.len();
        let b = scan(&log, 0, 0, &filters, limits(1000, one * 3 + 10, usize::MAX)).unwrap();
        assert!(
            b.buf.len() <= one * 3 + 10 && b.len() >= 2,
            "{}",
            b.buf.len()
        );
        assert_eq!(b.status, ScanStatus::Next);
        assert_eq!(
            b.next,
            want[b.len()].0,
            "next is the entry that did not fit"
        );
        // max_examined: counts every record, matching or not.
        let b = scan(&log, 0, 7, &filters, limits(1000, usize::MAX, 25)).unwrap();
        assert_eq!((b.next, b.status), (32, ScanStatus::Next));
        assert_eq!(
            entries(&b, &records, 0),
            model(&records[7..32], 7, &filters)
        );
        // Zero entries allowed: nothing examined.
        let b = scan(&log, 0, 3, &filters, limits(0, usize::MAX, usize::MAX)).unwrap();
        assert_eq!((b.len(), b.next, b.status), (0, 3, ScanStatus::Next));
        // until: stops before it, and takes precedence over Done.
        let u = |until| ScanLimits {
            until: Some(until),
            ..ScanLimits::default()
        };
        let b = scan(&log, 0, 0, &filters, u(100)).unwrap();
        assert_eq!((b.next, b.status), (100, ScanStatus::Until));
        assert_eq!(
            entries(&b, &records, 0),
            model(&records[..100], 0, &filters)
        );
        let b = scan(&log, 0, 150, &filters, u(100)).unwrap();
        assert_eq!((b.len(), b.next, b.status), (0, 150, ScanStatus::Until));
        let b = scan(&log, 0, 0, &filters, u(300)).unwrap();
        assert_eq!((b.next, b.status), (300, ScanStatus::Until));
        let b = scan(&log, 0, 0, &filters, u(301)).unwrap();
        assert_eq!((b.next, b.status), (300, ScanStatus::Done));
        assert_eq!(b.next, log.shard_end(0).unwrap());
        // Past the end: Done, next not moved back.
        let b = scan(&log, 0, 500, &filters, ScanLimits::default()).unwrap();
        assert_eq!((b.len(), b.next, b.status), (0, 500, ScanStatus::Done));

        // Any chunking gives the one-shot answer.
        for (e, by, ex) in [
            (1, usize::MAX, usize::MAX),
            (3, 200, 7),
            (1000, 0, 1),
            (2, 1, 3),
        ] {
            for from in [0, 1, 41, 299, 300] {
                let (got, end, skipped) =
                    scan_all(&log, from, &filters, limits(e, by, ex), &records);
                assert_eq!(
                    got,
                    model(&records, from, &filters),
                    "{e} {by} {ex} from {from}"
                );
                assert_eq!((end, skipped), (300, 0));
            }
        }
    }

    #[test]
    fn scans_across_segment_and_generation_rolls_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        let topic = |i: usize| match (i / 150) % 3 {
            // Runs of one topic family fill whole segments, so segments holding no
            // stream a filter can match are passed over unread.
            0 => format!("x/{}", i % 2),
            1 => format!("y/{}/z", i % 9),
            _ => format!("w/{}", i % 11),
        };
        let fill = |log: &Log, r: std::ops::Range<usize>, records: &mut Vec<_>| {
            for chunk in r.collect::<Vec<_>>().chunks(10) {
                let ts: Vec<String> = chunk.iter().map(|i| topic(*i)).collect();
                let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
                records.extend(append(log, &ts, chunk[0]));
            }
        };
        let filter_sets = [
            vec![f("y/#", 0)],
            vec![f("y/+/z", 0), f("w/3", 500), f("x/1", 0)],
            vec![f("nothing/here", 0)],
            vec![f("#", 0)],
        ];
        {
            let log = Log::open(d.path(), opts()).unwrap();
            fill(&log, 0..600, &mut records);
            log.roll_generations().unwrap();
            log.roll_generations().unwrap(); // an empty generation in between
            fill(&log, 600..1100, &mut records);
            let st = &log.stats().shards[0];
            assert_eq!(st.generations.len(), 3);
            assert!(st.generations[0].segments > 5, "{st:?}");
            for fs in &filter_sets {
                for (lim, from) in [(ScanLimits::default(), 0), (limits(7, 500, 40), 3)] {
                    let (got, end, skipped) = scan_all(&log, from, fs, lim, &records);
                    assert_eq!(got, model(&records, from, fs), "{fs:?}");
                    assert_eq!((end, skipped), (1100, 0));
                }
            }
        }
        // After reopen: sealed segments trusted through their index.
        let log = Log::open(d.path(), opts()).unwrap();
        fill(&log, 1100..1200, &mut records);
        for fs in &filter_sets {
            let (got, end, _) = scan_all(&log, 0, fs, limits(13, 4096, 100), &records);
            assert_eq!(got, model(&records, 0, fs));
            assert_eq!(end, 1200);
        }
    }

    const KEEP_MS: u64 = 600;

    #[test]
    fn starts_at_the_oldest_record_after_retention_drops() {
        let d = tempfile::tempdir().unwrap();
        let o = Options {
            retention_ms: Some(KEEP_MS),
            retention_check_ms: 3_600_000, // drop only on demand
            ..opts()
        };
        let log = Log::open(d.path(), o).unwrap();
        let ts: Vec<String> = (0..100).map(|i| format!("a/{}", i % 3)).collect();
        let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
        append(&log, &ts, 0);
        std::thread::sleep(Duration::from_millis(KEEP_MS + 100));
        log.roll_generations().unwrap();
        let t1 = Instant::now();
        let fresh = append(&log, &ts[..50], 100);
        let filters = [f("a/#", 0)];
        let check = |b: &ScanBatch| {
            assert_eq!((b.next, b.status), (150, ScanStatus::Done));
            assert_eq!(b.skipped, 100, "the expired records are counted");
            if t1.elapsed() < Duration::from_millis(KEEP_MS * 2 / 3) {
                assert_eq!(entries(b, &fresh, 0), model(&fresh, 0, &filters));
            }
        };
        // Expired but not dropped: examined, hidden, counted.
        check(&scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap());
        assert_eq!(log.drop_expired().unwrap(), 1);
        // Dropped: starts at the oldest stored record; the gap is counted.
        check(&scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap());
        let b = scan(&log, 0, 30, &filters, ScanLimits::default()).unwrap();
        assert_eq!(b.skipped, 70);
        // Bounded by until inside the gap.
        let b = scan(
            &log,
            0,
            10,
            &filters,
            ScanLimits {
                until: Some(60),
                ..ScanLimits::default()
            },
        )
        .unwrap();
        assert_eq!(
            (b.len(), b.next, b.skipped, b.status),
            (0, 60, 50, ScanStatus::Until)
        );
    }

    fn seg_files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for g in std::fs::read_dir(dir.join("shard-0000")).unwrap() {
            let g = g.unwrap().path();
            if g.is_dir() {
                for e in std::fs::read_dir(&g).unwrap() {
                    let p = e.unwrap().path();
                    if p.extension().is_some_and(|x| x == "seg") {
                        out.push(p);
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn quarantined_segment_is_skipped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let ts: Vec<String> = (0..400).map(|i| format!("q/{}", i % 4)).collect();
        let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
        let records = {
            let log = Log::open(d.path(), opts()).unwrap();
            let mut r = Vec::new();
            for (k, c) in ts.chunks(8).enumerate() {
                r.extend(append(&log, c, k * 8));
            }
            log.roll_generations().unwrap();
            r
        };
        let segs = seg_files(d.path());
        assert!(segs.len() > 3);
        let base = |p: &Path| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
        let (lo, hi) = (base(&segs[1]), base(&segs[2]));
        // Zeroed behind a valid index: found while scanning, quarantined on the spot.
        let mut b = std::fs::read(&segs[1]).unwrap();
        b[32..].fill(0);
        std::fs::write(&segs[1], b).unwrap();
        let log = Log::open(d.path(), opts()).unwrap();
        let filters = [f("q/1", 0), f("q/3", 0)];
        let kept: Vec<_> = records
            .iter()
            .filter(|(o, _)| !(lo..hi).contains(o))
            .cloned()
            .collect();
        let (got, end, skipped) = scan_all(&log, 0, &filters, ScanLimits::default(), &records);
        assert_eq!(got, model(&kept, 0, &filters));
        assert_eq!((end, skipped), (400, hi - lo));
        assert!(segs[1].with_extension("seg.corrupt").exists());
        // Later scans pass the gap the same way.
        let (got2, _, skipped2) = scan_all(&log, 0, &filters, limits(5, 300, 20), &records);
        assert_eq!((got2, skipped2), (got, hi - lo));
    }

    #[test]
    fn concurrent_appends_appear_once_committed() {
        let d = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(d.path(), opts()).unwrap());
        const N: usize = 1500;
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut all = Vec::new();
                for k in 0..N / 10 {
                    let ts: Vec<String> = (k * 10..k * 10 + 10)
                        .map(|i| format!("c/{}", i % 3))
                        .collect();
                    let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
                    let r = append(&log, &ts, k * 10);
                    // Once an append completed, a scan sees it.
                    let last = r.last().unwrap().0;
                    let b = scan(&log, 0, last, &[f("#", 0)], ScanLimits::default()).unwrap();
                    assert_eq!(b.entry(0).map(|e| e.offset), Some(last));
                    all.extend(r);
                }
                all
            })
        };
        let filters = [f("c/0", 0), f("c/2", 0)];
        let (mut got, mut next, mut k) = (Vec::new(), 0u64, 0usize);
        while next < N as u64 {
            k += 1;
            let lim = limits(1 + k % 17, 64 + (k * 131) % 3000, 1 + k % 53);
            let b = scan(&log, 0, next, &filters, lim).unwrap();
            assert!(b.next >= next && b.next <= log.shard_end(0).unwrap());
            for j in 0..b.len() {
                let e = b.entry(j).unwrap();
                assert_eq!(e.topic, format!("c/{}", e.offset % 3).as_bytes());
                got.push(e.offset);
            }
            next = b.next;
            if b.status == ScanStatus::Done {
                log.wait_blocking(0, next, Duration::from_millis(50))
                    .unwrap();
            }
        }
        let records = writer.join().unwrap();
        let want: Vec<u64> = model(&records, 0, &filters)
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(got, want, "every matching record exactly once, in order");
    }

    #[test]
    fn bad_arguments() {
        let d = tempfile::tempdir().unwrap();
        let log = Log::open(d.path(), opts()).unwrap();
        let e = scan(&log, 1, 0, &[], ScanLimits::default()).unwrap_err();
        assert!(matches!(e, CoreError::InvalidArgument(_)), "{e:?}");
        for bad in ["a/#/b", "", "$share/g", "a+"] {
            let e = scan(&log, 0, 0, &[f(bad, 0)], ScanLimits::default()).unwrap_err();
            assert_eq!(e.code(), "ERR_INVALID_TOPIC", "{bad}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<u8>),
        Roll,
        Restart,
    }

    const LEVELS: [&str; 5] = ["a", "b", "$SYS", "c", "d"];

    fn topic_of(k: u8) -> String {
        // 1..3 levels from a small alphabet; `$SYS` only leads.
        let n = 1 + usize::from(k % 3);
        let mut v = vec![LEVELS[usize::from(k / 3) % LEVELS.len()]];
        for j in 1..n {
            v.push(["a", "b", "x1", "x2", "x3", "x4", "x5"][(usize::from(k) >> j) % 7]);
        }
        v.join("/")
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop_oneof![
            Just("a"),
            Just("b"),
            Just("$SYS"),
            Just("x1"),
            Just("x3"),
            Just("+"),
        ];
        (
            prop::collection::vec(level, 1..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(mut ls, hash, share)| {
                if hash {
                    ls.push("#");
                }
                let f = ls.join("/");
                if share {
                    format!("$share/g/{f}")
                } else {
                    f
                }
            })
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop::collection::vec(any::<u8>(), 1..60).prop_map(Op::Append),
            1 => Just(Op::Roll),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        /// Scanning in random chunks returns exactly the naive filter over all records.
        #[test]
        fn scan_equals_filtering_every_record(
            ops in prop::collection::vec(op_strategy(), 1..12),
            filters in prop::collection::vec((filter_strategy(), 0u64..400), 0..40),
            from in 0u64..500,
            chunks in prop::collection::vec((0usize..12, 0usize..1500, 1usize..80, 0u64..600), 1..8),
        ) {
            let d = tempfile::tempdir().unwrap();
            let o = Options { lts_threshold: 3, ..opts() };
            let mut log = Log::open(d.path(), o.clone()).unwrap();
            let mut records = Vec::new();
            for op in ops {
                match op {
                    Op::Append(ks) => {
                        let ts: Vec<String> = ks.iter().map(|k| topic_of(*k)).collect();
                        let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
                        let first = records.len();
                        records.extend(append(&log, &ts, first));
                    }
                    Op::Roll => log.roll_generations().unwrap(),
                    Op::Restart => {
                        drop(log);
                        log = Log::open(d.path(), o.clone()).unwrap();
                    }
                }
            }
            let filters: Vec<ScanFilter> = filters.iter().map(|(s, st)| f(s, *st)).collect();
            let end = log.shard_end(0).unwrap();
            let (mut got, mut next, mut k) = (Vec::new(), from, 0usize);
            loop {
                let (e, by, ex, until) = chunks[k % chunks.len()];
                k += 1;
                // `until` only on odd calls, so the scan always gets to the end.
                let until = (k % 2 == 1).then_some(until);
                let lim = ScanLimits { max_entries: e.max(1), max_bytes: by, max_examined: ex, until };
                let b = scan(&log, 0, next, &filters, lim).unwrap();
                prop_assert!(b.next >= next);
                prop_assert_eq!(b.skipped, 0);
                prop_assert_eq!(b.words, filters.len().div_ceil(32));
                if let Some(u) = until {
                    prop_assert!(b.next <= u.max(next));
                    prop_assert_eq!(b.status == ScanStatus::Until, b.next >= u);
                }
                got.extend(entries(&b, &records, 0));
                next = b.next;
                if b.status == ScanStatus::Done {
                    break;
                }
                prop_assert!(k < 10_000, "no progress");
            }
            prop_assert_eq!(next, end.max(from));
            prop_assert_eq!(got, model(&records, from, &filters));
        }
    }
}
