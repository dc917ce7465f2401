//! The durable message log: shards → generations → streams, read by cursors.
//!
//! See `docs/storage.md` for the on-disk format, fsync policies and recovery.
//!
//! Reading: by stream cursor ([`Log::read`]), by position ([`Log::read_at`]), and
//! shard-wide for session replay ([`scan()`]: every record from an offset, filtered by
//! a session's subscriptions).
//!
//! Invariants of [`Log`]:
//! - One `Log` per data directory: the `LOCK` file is held (advisory OS lock) for the
//!   life of the value, so a second opener — in this or another process — gets
//!   [`CoreError::StoreLocked`].
//! - `n_shards` and the site id are written to `STORE` at first start and never change.
//! - A message is stored once, in shard `crc32c(publisher) % n_shards`.
//! - Each append's completion runs exactly once, after the policy's durability point.
mod counts;
mod dispatch;
pub mod entry;
mod inbound;
pub mod lines;
mod manifest;
mod open;
pub mod packed;
mod position;
mod read;
mod record;
mod replay;
mod salvage;
mod scan;
mod segment;
mod shard;
mod stream;

pub use counts::CountDelta;
pub use inbound::{find_inbound, find_published};
pub use manifest::Manifest;
pub use record::{NewMessage, RecordRef};
pub use replay::{
    check_starts, replay_frames, ReplayFrames, ReplayOptions, ReplayShard, ReplaySub, META_END,
    META_ID_POS, META_OFFSET, META_PAYLOAD_LEN, META_SHARD, META_STRIDE, META_TIMESTAMP,
    REPLAY_DONE, REPLAY_NEXT, REPLAY_SLOW, REPLAY_UNTIL,
};
pub use scan::{scan, ScanBatch, ScanFilter, ScanLimits, ScanStatus};
pub use shard::{now_ms, Waker};
pub use stream::{structure_may_match, topic_matches, FilterMatcher, Learner, Level, Structure};

use crate::error::CoreError;
use shard::{Cmd, Shard};
use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// When appended bytes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Group commit: each batch is `fdatasync`ed before any of its appends completes.
    /// Loss window: none for completed appends.
    Always,
    /// Appends complete once written to the OS; a sync runs at most every N ms.
    /// Loss window on power failure / kernel crash: up to N ms of completed appends
    /// (a process crash alone loses nothing: the data is in the page cache).
    Interval(u64),
    /// Never sync explicitly (the OS writes back when it likes, typically ≤ 30 s).
    /// Loss window on power failure: unbounded by us; process crash: nothing.
    None,
}

/// When an append completes under [`FsyncPolicy::Always`] (the other policies never wait for
/// a sync, whatever is asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completes {
    /// Once durable: written and `fdatasync`ed with its group commit.
    Durable,
    /// Once written (in the page cache: a process crash keeps it, a power loss may not). Synced
    /// with the shard's next `Durable` append, or [`LAZY_SYNC_MS`] after it at the latest: for
    /// appends nobody acknowledges anything on (the message log's async mode), which would
    /// otherwise cost an `fdatasync` per batch.
    Written,
}

/// How long a [`Completes::Written`] append may stay unsynced under [`FsyncPolicy::Always`].
pub const LAZY_SYNC_MS: u64 = 50;

impl std::str::FromStr for FsyncPolicy {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "none" => Ok(FsyncPolicy::None),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(FsyncPolicy::Interval)
                .ok_or_else(|| {
                    CoreError::InvalidArgument(format!(
                        "fsync policy {s:?}: expected always, none or interval:<ms>"
                    ))
                }),
        }
    }
}

/// Store options. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shard count; only used at first start (None: keep the recorded value, or 4).
    pub n_shards: Option<u32>,
    /// Fsync policy.
    pub fsync: FsyncPolicy,
    /// Roll a segment after this many bytes (default 64 MiB).
    pub segment_bytes: u64,
    /// Sparse index granularity in bytes (default 4 KiB).
    pub index_interval: u64,
    /// Roll a generation after this many ms (default 1 h).
    pub generation_span_ms: u64,
    /// `message_retention_period` in ms (None: keep forever). Default 1 day.
    pub retention_ms: Option<u64>,
    /// Per-topic-filter retention overrides `(filter, ms)`; first match wins.
    pub retention_overrides: Vec<(String, u64)>,
    /// How often the writer checks for expired generations (default 1000 ms).
    pub retention_check_ms: u64,
    /// Distinct values after which a topic level becomes a stream wildcard (default 16).
    pub lts_threshold: usize,
    /// Upper bound of one group-commit batch in bytes (default 4 MiB).
    pub max_batch_bytes: usize,
    /// Verify every record of sealed segments on open (default false: sealed
    /// segments are trusted by their index and verified on read instead).
    pub verify_on_open: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            n_shards: None,
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
            index_interval: 4096,
            generation_span_ms: 3_600_000,
            retention_ms: Some(86_400_000),
            retention_overrides: Vec::new(),
            retention_check_ms: 1000,
            lts_threshold: 16,
            max_batch_bytes: 4 << 20,
            verify_on_open: false,
        }
    }
}

impl Options {
    /// Physical retention: the longest of the global value and every override.
    pub fn max_retention_ms(&self) -> Option<u64> {
        let g = self.retention_ms?;
        Some(
            self.retention_overrides
                .iter()
                .map(|(_, ms)| *ms)
                .fold(g, u64::max),
        )
    }

    /// Retention that applies to `topic` (None: forever).
    pub fn retention_for(&self, topic: &[u8]) -> Option<u64> {
        self.retention_overrides
            .iter()
            .find(|(f, _)| topic_matches(f, topic))
            .map(|(_, ms)| *ms)
            .or(self.retention_ms)
    }
}

/// Shard-wide record offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

/// Where an appended message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Shard.
    pub shard: u32,
    /// Offset in the shard.
    pub offset: Offset,
}

/// Identity of a stream: shard + generation + stream number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// Shard.
    pub shard: u32,
    /// Generation within the shard.
    pub generation: u32,
    /// Stream within the generation.
    pub stream: u32,
}

/// A reader's position in one stream. A plain value: persist it (e.g. in the metadata
/// store) and hand it back after a restart.
///
/// Invariants: `offset` is the next shard offset to examine; every record of the
/// stream below it has been passed, and `seen` counts them (delivered, filtered or
/// expired alike) — that is what makes the skipped count exact when retention drops
/// the generation under the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The stream read.
    pub stream: StreamId,
    /// Next offset to examine.
    pub offset: Offset,
    /// Records of the stream already passed.
    pub seen: u64,
    /// Topic filter applied to records (None: every record of the stream).
    pub filter: Option<String>,
}

/// Outcome of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// The batch filled; more records may follow right away.
    Next,
    /// Caught up with the stream's durable end; more may be appended later
    /// (park with [`Log::wait`]).
    Done,
    /// The stream's generation is sealed and fully read, or was dropped: no record
    /// will ever follow. Move to the streams of newer generations.
    End,
}

/// What a read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadResult {
    /// Next / Done / End.
    pub status: ReadStatus,
    /// Records handed to the sink.
    pub delivered: usize,
    /// Records this cursor lost to retention (expired, dropped, quarantined).
    pub skipped: u64,
}

/// A stream and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Identity.
    pub id: StreamId,
    /// Learned structure (`+` = learned wildcard level).
    pub structure: String,
    /// Records currently visible.
    pub records: u64,
    /// True once its generation takes no more writes.
    pub sealed: bool,
    /// Generation start time (ms).
    pub generation_start: u64,
}

/// Per-generation statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationStats {
    /// Generation id.
    pub id: u32,
    /// Start (ms).
    pub start_ts: u64,
    /// Newest record (ms).
    pub last_ts: u64,
    /// Stream count.
    pub streams: u32,
    /// Segment count.
    pub segments: u32,
    /// Records.
    pub records: u64,
    /// Bytes on disk (data files).
    pub bytes: u64,
    /// Sealed.
    pub sealed: bool,
}

/// Per-shard statistics (`ds info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStats {
    /// Shard.
    pub shard: u32,
    /// Generations, oldest first.
    pub generations: Vec<GenerationStats>,
    /// Records.
    pub records: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Oldest record time (ms), if any.
    pub oldest_ts: Option<u64>,
    /// Newest record time (ms), if any.
    pub newest_ts: Option<u64>,
    /// Next offset to be assigned.
    pub end_offset: u64,
    /// `fdatasync`s of its record files since the store opened.
    pub syncs: u64,
}

/// Whole-store statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Site id (hex).
    pub site_id: String,
    /// Shards.
    pub shards: Vec<ShardStats>,
    /// Records.
    pub records: u64,
    /// Bytes on disk (data files).
    pub bytes: u64,
}

/// What recovery found and did while opening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments opened.
    pub segments: u64,
    /// Records found.
    pub records: u64,
    /// Bytes verified record by record (segments without a valid index).
    pub scanned_bytes: u64,
    /// Bytes cut from torn or corrupt tails.
    pub truncated_bytes: u64,
    /// Indexes rebuilt.
    pub rebuilt_indexes: u64,
    /// Segments renamed to `*.corrupt`, with the reason.
    pub quarantined: Vec<String>,
    /// Offset ranges whose records are gone: damaged and salvaged around, in a file that
    /// could not be read, or missing from the directory. Reported once per open that finds
    /// them; a caller keeps them (the metadata `losses` table) to report each only once.
    pub losses: Vec<Loss>,
    /// Human-readable progress and repair log.
    pub events: Vec<String>,
    /// Time taken to open.
    pub elapsed_ms: u64,
    /// `STORE` was missing or damaged and written again: why.
    pub manifest: Option<String>,
    /// Each shard's end after recovery (`(shard, end)`, in shard order).
    pub shard_ends: Vec<(u32, u64)>,
    /// A check ([`Log::check`]): report what recovery would do, change nothing.
    pub(crate) check: bool,
}

/// Records of one shard found gone: offsets `from..to` (`to` None: up to an end the log
/// cannot know, e.g. the tail of a damaged last segment; the caller may know it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// Shard.
    pub shard: u32,
    /// First offset gone.
    pub from: u64,
    /// One past the last offset gone, when known.
    pub to: Option<u64>,
    /// The file (or directory) concerned.
    pub file: String,
    /// What happened.
    pub reason: String,
}

impl Loss {
    /// Records gone, when known.
    pub fn records(&self) -> Option<u64> {
        self.to.map(|t| t.saturating_sub(self.from))
    }
}

impl Recovery {
    /// Adds what one shard's recovery found (its events after those already here).
    fn absorb(&mut self, other: Recovery) {
        self.segments += other.segments;
        self.records += other.records;
        self.scanned_bytes += other.scanned_bytes;
        self.truncated_bytes += other.truncated_bytes;
        self.rebuilt_indexes += other.rebuilt_indexes;
        self.quarantined.extend(other.quarantined);
        self.losses.extend(other.losses);
        self.shard_ends.extend(other.shard_ends);
        self.events.extend(other.events);
    }
}

/// Completion of [`Log::append`]: one position per message, in input order.
pub type AppendDone = Box<dyn FnOnce(Result<Vec<Position>, CoreError>) + Send>;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut v = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = f(&mut v);
    SCRATCH.with(|s| *s.borrow_mut() = v);
    r
}

/// The durable log of one data directory.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    opts: Arc<Options>,
    shards: Vec<Shard>,
    site_id: String,
    recovery: Recovery,
    closed: AtomicBool,
    /// Delivery counts per record (the message log's statistics, see [`counts`]).
    counts: counts::Counts,
    /// The thread every shard command goes through ([`dispatch`]).
    dispatcher: dispatch::Dispatcher,
    _lock: File,
}

/// Shard of a publisher.
pub fn shard_of(publisher: &[u8], n_shards: u32) -> u32 {
    crc32c::crc32c(publisher) % n_shards.max(1)
}

impl Log {
    /// Data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Site id: random at first start, then fixed.
    pub fn site_id(&self) -> &str {
        &self.site_id
    }
    /// Shard count.
    pub fn n_shards(&self) -> u32 {
        self.shards.len() as u32
    }
    /// What recovery did while opening.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }
    /// Options in force.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn closed_err() -> CoreError {
        CoreError::Closed("the log is closed".into())
    }

    /// Appends messages; `done` runs (on a writer thread) once they are durable per the
    /// fsync policy, with one position per message in input order. Never blocks on I/O.
    pub fn append(&self, msgs: Vec<NewMessage>, done: AppendDone) {
        self.append_split(packed::Split::of(&msgs, self.n_shards()), done)
    }

    /// [`Log::append`] of messages already split by shard ([`packed::Split`], e.g. straight
    /// from a packed buffer: [`packed::Split::packed`]).
    pub fn append_split(&self, split: packed::Split, done: AppendDone) {
        self.append_split_as(split, Completes::Durable, done)
    }

    /// [`Log::append_split`], completing when `completes` says (under [`FsyncPolicy::Always`]).
    pub fn append_split_as(&self, split: packed::Split, completes: Completes, done: AppendDone) {
        if self.closed.load(Ordering::Acquire) {
            return done(Err(Self::closed_err()));
        }
        dispatch::route(split, completes, done, &|s, c| self.send(s, c));
    }

    /// Appends the `count` messages packed in `bytes` (the [`packed`] layout), completing when
    /// `completes` says. The bytes are split by shard on the log's dispatch thread (errors as
    /// [`packed::Split::packed`], through `done`): the caller only hands them over.
    pub fn append_packed(
        &self,
        bytes: Vec<u8>,
        count: usize,
        completes: Completes,
        done: AppendDone,
    ) {
        if self.closed.load(Ordering::Acquire) {
            return done(Err(Self::closed_err()));
        }
        if let Err(job) = self
            .dispatcher
            .send(dispatch::Job::Packed(bytes, count, completes, done))
        {
            dispatch::fail_job(job, Self::closed_err());
        }
    }

    /// Every command for a shard goes through the dispatch thread: in the order given.
    fn send(&self, shard: u32, cmd: Cmd) {
        if let Err(job) = self.dispatcher.send(dispatch::Job::Cmd(shard, cmd)) {
            dispatch::fail_job(job, Self::closed_err());
        }
    }

    /// Appends and blocks until durable. For tests and tools; the broker uses
    /// [`Log::append`].
    pub fn append_blocking(&self, msgs: Vec<NewMessage>) -> Result<Vec<Position>, CoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.append(
            msgs,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or_else(|_| Err(Self::closed_err()))
    }

    fn each_shard<T: Send + 'static>(
        &self,
        mk: impl Fn(Box<dyn FnOnce(Result<T, CoreError>) + Send>) -> Cmd,
    ) -> Result<Vec<T>, CoreError> {
        let mut rxs = Vec::new();
        for s in 0..self.n_shards() {
            let (tx, rx) = mpsc::sync_channel(1);
            self.send(
                s,
                mk(Box::new(move |r| {
                    let _ = tx.send(r);
                })),
            );
            rxs.push(rx);
        }
        rxs.into_iter()
            .map(|rx| rx.recv().unwrap_or_else(|_| Err(Self::closed_err())))
            .collect()
    }

    /// Forces every shard's written data to stable storage.
    pub fn flush(&self) -> Result<(), CoreError> {
        self.each_shard(Cmd::Flush).map(|_| ())
    }

    /// Seals every shard's current generation and starts a new one.
    pub fn roll_generations(&self) -> Result<(), CoreError> {
        self.each_shard(Cmd::Roll).map(|_| ())
    }

    /// Drops generations past retention now (the writers also do it periodically).
    /// Returns how many were dropped.
    pub fn drop_expired(&self) -> Result<usize, CoreError> {
        self.each_shard(Cmd::DropExpired)
            .map(|v| v.into_iter().sum())
    }

    /// Makes shard `shard` continue at offset `floor` at least: when its end is below
    /// (its last files were lost), the offsets in between are never used — readers count
    /// them as records gone — and the next append gets `floor`. A session that had read
    /// up to `floor` then misses nothing appended later. Durable on return (a segment based
    /// at `floor` exists). True when the end moved.
    pub fn raise_end(&self, shard: u32, floor: u64) -> Result<bool, CoreError> {
        self.shard(shard)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(
            shard,
            Cmd::RaiseEnd(
                floor,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            ),
        );
        rx.recv().unwrap_or_else(|_| Err(Self::closed_err()))
    }

    /// Records found gone while running (sealed segments damaged in place, salvaged when
    /// read) since the last call. Recovery at open reports its own in [`Log::recovery`].
    pub fn take_losses(&self) -> Vec<Loss> {
        let mut out = Vec::new();
        for s in &self.shards {
            for g in s.shared.generations() {
                out.append(&mut g.losses.lock().unwrap_or_else(|p| p.into_inner()));
            }
        }
        out
    }

    fn shard(&self, id: u32) -> Result<&Shard, CoreError> {
        self.shards
            .get(id as usize)
            .ok_or_else(|| CoreError::NotFound(format!("shard {id}")))
    }

    /// Offset one past the newest visible record of a shard.
    pub fn shard_end(&self, shard: u32) -> Result<u64, CoreError> {
        Ok(self.shard(shard)?.shared.end.load(Ordering::Acquire))
    }

    /// The first offset of shard `shard` whose record has a timestamp ≥ `ts_ms`: where a
    /// read "from time `ts_ms`" starts (the message log's queries, `$log/<time>/…`).
    ///
    /// Timestamps are monotonic per shard, so every record at or after the answer is at
    /// or after `ts_ms` and every committed record before it is older. The shard's end
    /// when no stored record is that recent (a read from there sees only what comes
    /// next); at most the shard's committed end. Generations whose newest record is
    /// older are passed over without reading them; in the first that is not, a binary
    /// search over its segments and their sparse index, then a scan of at most one
    /// index interval. Records hidden by retention count like any other (the scan that
    /// follows skips them).
    ///
    /// Errors: [`CoreError::NotFound`] for a shard ≥ `n_shards`; [`CoreError::Io`] for
    /// a failed read.
    pub fn offset_at_time(&self, shard: u32, ts_ms: u64) -> Result<u64, CoreError> {
        let s = self.shard(shard)?;
        // The end first: every record below it is committed in the generations read below.
        let end = s.shared.end.load(Ordering::Acquire);
        for g in s.shared.generations() {
            if g.end_offset().is_none() || g.last_ts() < ts_ms {
                continue;
            }
            let off = with_scratch(|sc| shard::offset_at_time(&g, ts_ms, sc))?;
            if off < g.end_offset().unwrap_or(0) {
                return Ok(off.min(end));
            }
        }
        Ok(end)
    }

    /// Adds delivery counts (`(offset, delivered, acked)`, any order) to records of shard
    /// `shard`; returns the offsets whose `acked` this call raised from 0, ascending. Counts
    /// are statistics beside the log, not synced (see the `counts` module); those of records
    /// retention dropped are ignored.
    pub fn add_counts(&self, shard: u32, deltas: &mut [CountDelta]) -> Result<Vec<u64>, CoreError> {
        let s = self.shard(shard)?;
        self.counts.add(shard, &s.shared.generations(), deltas)
    }

    /// `delivered, acked` of each of `offsets` (ascending) of shard `shard`, back to back.
    pub fn read_counts(&self, shard: u32, offsets: &[u64]) -> Result<Vec<u32>, CoreError> {
        let s = self.shard(shard)?;
        self.counts.read(shard, &s.shared.generations(), offsets)
    }

    /// Parks a caught-up reader: `waker` runs (on a writer thread, or now) once the
    /// shard's end passes `after`.
    pub fn wait(&self, shard: u32, after: u64, waker: Waker) -> Result<(), CoreError> {
        self.shard(shard)?.shared.wait(after, waker);
        Ok(())
    }

    /// Blocks up to `timeout` for the shard's end to pass `after`; returns the end.
    pub fn wait_blocking(
        &self,
        shard: u32,
        after: u64,
        timeout: Duration,
    ) -> Result<u64, CoreError> {
        Ok(self.shard(shard)?.shared.wait_blocking(after, timeout))
    }

    /// Streams that can hold messages matching `filter`, oldest generation first.
    pub fn streams(&self, filter: &str) -> Vec<StreamInfo> {
        let mut out = Vec::new();
        for s in &self.shards {
            for g in s.shared.generations() {
                let segs = g.segments.read().expect("poisoned").clone();
                let structs = g.streams.read().expect("poisoned").clone();
                for (i, st) in structs.iter().enumerate() {
                    if !structure_may_match(filter, st) {
                        continue;
                    }
                    let records = segs.iter().map(|x| x.stream_count(i as u32)).sum();
                    out.push(StreamInfo {
                        id: StreamId {
                            shard: s.shared.id,
                            generation: g.id,
                            stream: i as u32,
                        },
                        structure: stream::structure_to_string(st),
                        records,
                        sealed: g.sealed.load(Ordering::Acquire),
                        generation_start: g.start_ts,
                    });
                }
            }
        }
        out
    }

    /// Statistics for `ds info`.
    pub fn stats(&self) -> Stats {
        let mut shards = Vec::new();
        for s in &self.shards {
            let mut gens = Vec::new();
            for g in s.shared.generations() {
                let segs = g.segments.read().expect("poisoned").clone();
                let records = segs.iter().map(|x| x.records()).sum();
                let bytes = segs.iter().map(|x| x.committed_len()).sum();
                gens.push(GenerationStats {
                    id: g.id,
                    start_ts: g.start_ts,
                    last_ts: g.last_ts(),
                    streams: g.streams.read().expect("poisoned").len() as u32,
                    segments: segs.len() as u32,
                    records,
                    bytes,
                    sealed: g.sealed.load(Ordering::Acquire),
                });
            }
            let nonempty: Vec<_> = gens.iter().filter(|g| g.records > 0).collect();
            shards.push(ShardStats {
                shard: s.shared.id,
                records: gens.iter().map(|g| g.records).sum(),
                bytes: gens.iter().map(|g| g.bytes).sum(),
                oldest_ts: nonempty.first().map(|g| g.start_ts),
                newest_ts: nonempty.last().map(|g| g.last_ts),
                end_offset: s.shared.end.load(Ordering::Acquire),
                syncs: s.shared.syncs.load(Ordering::Relaxed),
                generations: gens,
            });
        }
        Stats {
            site_id: self.site_id.clone(),
            records: shards.iter().map(|s| s.records).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        }
    }

    /// True once [`Log::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops the writers after draining their queues. Idempotent; later appends fail
    /// with [`CoreError::Closed`].
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            // What was queued before reaches the writers, which then drain their queues.
            self.dispatcher.close();
            for s in &self.shards {
                s.close();
            }
        }
    }
}

impl Options {
    fn fsync_interval_zero(&self) -> Option<CoreError> {
        if self.segment_bytes < 4096 || self.index_interval == 0 || self.generation_span_ms == 0 {
            return Some(CoreError::InvalidArgument(
                "segment_bytes ≥ 4096, index_interval > 0 and generation_span_ms > 0 required"
                    .into(),
            ));
        }
        None
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}
