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
//! of [`super::entry`] (32-byte header, then publisher, topic, properties, payload),
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
use super::entry::{self, Entry, ENTRY_HEADER};
use super::record::RecordRef;
use super::segment::{self, ScanEnd, Segment};
use super::shard::{self, Generation, ShardShared};
use super::stream::{FilterMatcher, Level};
use super::{now_ms, with_scratch, Log};
use crate::error::CoreError;
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
/// `offsets[entries] == buf.len()` (as [`crate::fetch::FetchBatch`]; layout in [`super::entry`]);
/// `masks.len() == entries * words`, entry `j`'s words at `masks[j*words..(j+1)*words]`
/// (bit `i % 32` of word `i / 32` is filter `i`), none all zero; entries are in
/// increasing offset order, all below `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBatch {
    /// Entries, back to back, in the layout of [`super::entry`].
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
        entry::entry_at(&self.buf, &self.offsets, j)
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
                    entry::push_entry(&mut self.buf, self.shard, r);
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
mod tests;
