//! One shard: its generations, its writer thread (group commit) and its readers.
//!
//! Directory layout: `shard-NNNN/gen-IIIIII-<start ms>/{streams, *.seg, *.idx}` plus
//! `shard-NNNN/dropped` (tombstones of generations removed by retention).
//!
//! Invariants of a shard:
//! - Exactly one thread (the writer) mutates files; readers use positional reads on
//!   their own handles and never look past a segment's `committed_len`.
//! - Offsets are assigned by the writer, gap-free and increasing for the shard's
//!   whole life (across generations); timestamps never decrease.
//! - Only the newest generation takes writes; all others are sealed.
//! - A caller's append completes only after its bytes reached the file and, under
//!   `FsyncPolicy::Always`, after the `fdatasync` that covers them returned.
//! - A stream's structure is on disk (synced) before any record naming it.
//!
//! Modules: [`recover`] opens a shard from its files (checks, repairs, salvages and
//! reports losses), [`writer`] is the writer thread (group commit, generations,
//! retention), [`read`] holds the readers' side (stream reads, counts, salvage of a
//! sealed segment found damaged while reading). This file holds what they share.
mod read;
mod recover;
mod writer;

pub(crate) use read::{count_before, offset_at_time, read_stream, salvage_live, StreamRead};

use super::packed::Messages;
use super::segment::Segment;
use super::stream::Structure;
use super::{Completes, Loss, Options, Recovery};
use crate::error::CoreError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Completion of an append: the first offset of the request's contiguous run.
pub type ShardDone = Box<dyn FnOnce(Result<u64, CoreError>) + Send>;

/// A waker registered by a parked reader.
pub type Waker = Box<dyn FnOnce() + Send>;

pub(crate) enum Cmd {
    Append(Messages, ShardDone, Completes),
    Flush(Box<dyn FnOnce(Result<(), CoreError>) + Send>),
    Roll(Box<dyn FnOnce(Result<(), CoreError>) + Send>),
    DropExpired(Box<dyn FnOnce(Result<usize, CoreError>) + Send>),
    RaiseEnd(u64, Box<dyn FnOnce(Result<bool, CoreError>) + Send>),
}

/// A time-ranged part of a shard's log.
#[derive(Debug)]
pub struct Generation {
    /// Generation id, increasing within the shard.
    pub id: u32,
    /// Creation time (ms); the generation covers `[start_ts, next generation's start)`.
    pub start_ts: u64,
    /// Lower bound of the offsets it holds: the shard's next offset when it was
    /// created (at open: that, or its first segment's base if lower). Non-decreasing
    /// in generation order, so a position's generation is found by binary search.
    pub first_offset: u64,
    /// Directory.
    pub dir: PathBuf,
    /// Segments ordered by base offset (gaps only where a segment was quarantined).
    pub segments: RwLock<Vec<Arc<Segment>>>,
    /// Stream structures; index = stream id.
    pub streams: RwLock<Vec<Structure>>,
    /// True once a newer generation exists (no more writes).
    pub sealed: AtomicBool,
    /// Segments taken out of service while running (path: reason).
    pub quarantined: Mutex<Vec<String>>,
    /// Shard it belongs to.
    pub shard: u32,
    /// Records found gone while running (a sealed segment damaged in place), not yet
    /// taken by [`super::Log::take_losses`].
    pub losses: Mutex<Vec<Loss>>,
    /// Held while a damaged segment of this generation is replaced by its runs.
    salvaging: Mutex<()>,
}

impl Generation {
    fn segs(&self) -> Vec<Arc<Segment>> {
        self.segments.read().expect("poisoned").clone()
    }
    /// Timestamp of the newest record (start time when empty).
    pub fn last_ts(&self) -> u64 {
        self.segs()
            .last()
            .map_or(self.start_ts, |s| s.last_ts().max(self.start_ts))
    }
    /// Offset one past the newest record, if any segment exists.
    pub fn end_offset(&self) -> Option<u64> {
        self.segs().last().map(|s| s.end_offset())
    }
}

/// Parked readers, keyed by the offset they wait to see passed.
pub(crate) struct Waiters(Vec<(u64, Waker)>);

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Waiters({})", self.0.len())
    }
}

/// State shared between a shard's writer and its readers.
#[derive(Debug)]
pub struct ShardShared {
    /// Shard number.
    pub id: u32,
    /// Shard directory.
    pub dir: PathBuf,
    /// Generations ordered by id.
    pub gens: RwLock<Vec<Arc<Generation>>>,
    /// `(generation, stream) -> records` of generations dropped by retention.
    pub dropped: Mutex<HashMap<(u32, u32), u64>>,
    /// Offset one past the newest visible record.
    pub end: AtomicU64,
    /// `fdatasync`s of record files (stats).
    pub syncs: AtomicU64,
    waiters: Mutex<Waiters>,
    wait_lock: Mutex<()>,
    wait_cv: Condvar,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Append(..) => "Append",
            Cmd::Flush(_) => "Flush",
            Cmd::Roll(_) => "Roll",
            Cmd::DropExpired(_) => "DropExpired",
            Cmd::RaiseEnd(..) => "RaiseEnd",
        })
    }
}

impl ShardShared {
    /// Registers `waker` to run once the shard's end passes `after`; runs it now if it
    /// already has.
    pub fn wait(&self, after: u64, waker: Waker) {
        let mut w = self.waiters.lock().expect("poisoned");
        if self.end.load(Ordering::Acquire) > after {
            drop(w);
            waker();
        } else {
            w.0.push((after, waker));
        }
    }

    /// Blocks up to `timeout` until the end passes `after`; returns the end.
    pub fn wait_blocking(&self, after: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut g = self.wait_lock.lock().expect("poisoned");
        loop {
            let end = self.end.load(Ordering::Acquire);
            let now = Instant::now();
            if end > after || now >= deadline {
                return end;
            }
            g = self
                .wait_cv
                .wait_timeout(g, deadline - now)
                .expect("poisoned")
                .0;
        }
    }

    fn publish_end(&self, end: u64) {
        {
            let _g = self.wait_lock.lock().expect("poisoned");
            self.end.store(end, Ordering::Release);
        }
        self.wait_cv.notify_all();
        let ready: Vec<Waker> = {
            let mut w = self.waiters.lock().expect("poisoned");
            if w.0.is_empty() {
                return;
            }
            let (ready, keep): (Vec<_>, Vec<_>) = w.0.drain(..).partition(|(a, _)| end > *a);
            w.0 = keep;
            ready.into_iter().map(|(_, f)| f).collect()
        };
        for f in ready {
            f();
        }
    }

    /// Snapshot of the generations.
    pub fn generations(&self) -> Vec<Arc<Generation>> {
        self.gens.read().expect("poisoned").clone()
    }
}

/// Handle to a running shard.
#[derive(Debug)]
pub struct Shard {
    /// Shared state.
    pub shared: Arc<ShardShared>,
    tx: Mutex<Option<Sender<Cmd>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Best effort: a failed directory sync is not a reason to fail the write it follows.
fn sync_dir(dir: &Path) {
    let _ = crate::fsutil::sync_dir(dir);
}

fn io(context: impl std::fmt::Display, e: std::io::Error) -> CoreError {
    CoreError::from_io(context, &e)
}

fn parse_gen_dir(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("gen-")?;
    let (id, ts) = rest.split_once('-')?;
    Some((id.parse().ok()?, ts.parse().ok()?))
}

fn gen_dir_name(id: u32, start_ts: u64) -> String {
    format!("gen-{id:06}-{start_ts}")
}

impl Shard {
    /// Opens (recovering) or creates the shard in `dir`, then starts its writer.
    pub(crate) fn open(
        id: u32,
        dir: PathBuf,
        opts: Arc<Options>,
        rec: &mut Recovery,
    ) -> Result<Shard, CoreError> {
        let mut found = recover::recover(id, &dir, &opts, rec)?;
        let last_ts = found.gens.last().map_or(0, |g| g.last_ts());
        let shared = Arc::new(ShardShared {
            id,
            dir,
            gens: RwLock::new(found.gens.clone()),
            dropped: Mutex::new(std::mem::take(&mut found.dropped)),
            end: AtomicU64::new(found.next_offset),
            syncs: AtomicU64::new(0),
            waiters: Mutex::new(Waiters(Vec::new())),
            wait_lock: Mutex::new(()),
            wait_cv: Condvar::new(),
        });
        let (tx, thread) = writer::start(shared.clone(), opts, found, last_ts)?;
        Ok(Shard {
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A sender to the writer (none once closed): the writer runs until every one is dropped.
    pub(crate) fn sender(&self) -> Option<Sender<Cmd>> {
        self.tx.lock().expect("poisoned").clone()
    }

    /// Stops the writer after it drained its queue (final sync included).
    pub(crate) fn close(&self) {
        self.tx.lock().expect("poisoned").take();
        if let Some(t) = self.thread.lock().expect("poisoned").take() {
            let _ = t.join();
        }
        // Parked readers are woken so nothing waits forever on a closed shard.
        let parked: Vec<Waker> = {
            let mut w = self.shared.waiters.lock().expect("poisoned");
            w.0.drain(..).map(|(_, f)| f).collect()
        };
        for f in parked {
            f();
        }
    }
}
