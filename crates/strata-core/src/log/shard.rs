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
use super::record::{self, NewMessage, RecordRef};
use super::salvage;
use super::segment::{self, IndexEntry, ScanEnd, Segment, Summary, HEADER_LEN};
use super::stream::{self, Learner, Level, Structure};
use super::{FsyncPolicy, Loss, Options, Recovery};
use crate::error::CoreError;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
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
    Append(Vec<NewMessage>, ShardDone),
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

// ---- streams file: [len u32][crc u32][id u32][structure utf8] ----

fn stream_entry(id: u32, s: &Structure) -> Vec<u8> {
    let text = stream::structure_to_string(s);
    let len = (4 + text.len()) as u32;
    let mut b = Vec::with_capacity(12 + text.len());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(text.as_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..4]), &b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Reads the valid prefix of a streams file; returns structures and the valid length.
fn read_streams(path: &Path) -> std::io::Result<(Vec<Structure>, u64, u64)> {
    let mut b = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut b)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, 0)),
        Err(e) => return Err(e),
    }
    let mut out: Vec<Structure> = Vec::new();
    let mut p = 0usize;
    while p + 12 <= b.len() {
        let len = u32::from_le_bytes(b[p..p + 4].try_into().expect("4")) as usize;
        if len < 4 || p + 8 + len > b.len() {
            break;
        }
        let crc = u32::from_le_bytes(b[p + 4..p + 8].try_into().expect("4"));
        let body = &b[p + 8..p + 8 + len];
        if crc32c::crc32c_append(crc32c::crc32c(&b[p..p + 4]), body) != crc {
            break;
        }
        let id = u32::from_le_bytes(body[..4].try_into().expect("4")) as usize;
        let Ok(text) = std::str::from_utf8(&body[4..]) else {
            break;
        };
        if id != out.len() {
            break;
        }
        out.push(stream::structure_from_string(text));
        p += 8 + len;
    }
    Ok((out, p as u64, b.len() as u64))
}

fn parse_gen_dir(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("gen-")?;
    let (id, ts) = rest.split_once('-')?;
    Some((id.parse().ok()?, ts.parse().ok()?))
}

fn gen_dir_name(id: u32, start_ts: u64) -> String {
    format!("gen-{id:06}-{start_ts}")
}

fn quarantine(path: &Path, rec: &mut Recovery, why: &str) {
    if rec.check {
        rec.quarantined
            .push(format!("{}: {why} (would be quarantined)", path.display()));
        return;
    }
    let to = salvage::quarantine(path)
        .map_or_else(|e| format!("not renamed: {e}"), |p| p.display().to_string());
    rec.quarantined
        .push(format!("{}: {why} (now {to})", path.display()));
}

/// Offsets from the shard's first (0, or where retention left off) to its last segment
/// that no segment holds — files missing from the directory — as losses, unless this
/// recovery already accounted for them.
fn find_holes(shard: u32, first: u64, gens: &[Arc<Generation>], rec: &mut Recovery) {
    let mut expect = first;
    for g in gens {
        for seg in g.segs() {
            let accounted =
                |l: &Loss| l.shard == shard && l.from >= expect && l.from < seg.base_offset;
            if seg.base_offset > expect && !rec.losses.iter().any(accounted) {
                rec.losses.push(Loss {
                    shard,
                    from: expect,
                    to: Some(seg.base_offset),
                    file: g.dir.display().to_string(),
                    reason: "no segment holds these offsets (files missing or dropped)".into(),
                });
            }
            expect = expect.max(seg.end_offset());
        }
    }
}

/// The base offset a segment file's name gives (`<base:020>.seg`).
fn base_of_name(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Replaces a damaged segment by its runs of valid records (see [`salvage`]), recording
/// the losses: the gaps between runs, and after the last run up to `known_end` (its
/// sealed end or the next segment's base) when that is beyond it. Returns the new segment
/// paths.
#[allow(clippy::too_many_arguments)]
fn salvage_segment(
    path: &Path,
    f: &File,
    base: u64,
    base_ts: u64,
    runs: &salvage::Runs,
    known_end: Option<u64>,
    shard: u32,
    rec: &mut Recovery,
) -> Result<Vec<PathBuf>, CoreError> {
    let file = path.display().to_string();
    let mut lost = 0u64;
    let mut at = base;
    for r in &runs.runs {
        if r.first > at {
            lost += r.first - at;
            rec.losses.push(Loss {
                shard,
                from: at,
                to: Some(r.first),
                file: file.clone(),
                reason: "damaged records".into(),
            });
        }
        at = r.end;
    }
    if let Some(end) = known_end.filter(|e| *e > at) {
        lost += end - at;
        rec.losses.push(Loss {
            shard,
            from: at,
            to: Some(end),
            file: file.clone(),
            reason: "damaged end of segment".into(),
        });
    }
    if rec.check {
        rec.quarantined.push(format!(
            "{file}: damaged, {lost} record(s) lost; would be salvaged into {} run(s)",
            runs.runs.iter().filter(|r| r.end > r.first).count()
        ));
        return Ok(Vec::new());
    }
    let placed = salvage::replace_with_runs(path, f, base, base_ts, &runs.runs)
        .map_err(|e| io(format!("salvage {}", path.display()), e))?;
    rec.quarantined.push(format!(
        "{file}: damaged, {lost} record(s) lost; {} run(s) of intact records kept as new segments",
        placed.len()
    ));
    Ok(placed)
}

/// What the writer thread owns.
struct Writer {
    shared: Arc<ShardShared>,
    opts: Arc<Options>,
    rx: Receiver<Cmd>,
    gen: Option<Arc<Generation>>,
    seg: Option<(Arc<Segment>, File, u64)>,
    learner: Learner,
    structures: Vec<Structure>,
    streams_file: Option<File>,
    streams_need_rewrite: bool,
    next_offset: u64,
    last_ts: u64,
    last_sync: Instant,
    dirty: bool,
    poisoned: Option<CoreError>,
    last_retention_check: Instant,
    buf: Vec<u8>,
}

impl Shard {
    /// Opens (recovering) or creates the shard in `dir`.
    pub(crate) fn open(
        id: u32,
        dir: PathBuf,
        opts: Arc<Options>,
        rec: &mut Recovery,
    ) -> Result<Shard, CoreError> {
        let check = rec.check;
        if check && !dir.exists() {
            return Err(CoreError::NotFound(format!("{} is missing", dir.display())));
        }
        fs::create_dir_all(&dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        let mut gen_dirs = Vec::new();
        for ent in fs::read_dir(&dir).map_err(|e| io(format!("list {}", dir.display()), e))? {
            let ent = ent.map_err(|e| io("list shard", e))?;
            if let Some((gid, ts)) = ent.file_name().to_str().and_then(parse_gen_dir) {
                gen_dirs.push((gid, ts, ent.path()));
            }
        }
        gen_dirs.sort();
        let dropped = read_dropped(&dir.join("dropped"));
        let mut next_offset = dropped.1;
        let mut gens = Vec::new();
        let mut learner = Learner::new(opts.lts_threshold);
        let mut structures = Vec::new();
        let n_gens = gen_dirs.len();
        let mut scratch_last = None;
        let mut lost_structures = false;
        for (gi, (gid, start_ts, gdir)) in gen_dirs.into_iter().enumerate() {
            let newest = gi + 1 == n_gens;
            let spath = gdir.join("streams");
            let (mut structs, valid, total) =
                read_streams(&spath).map_err(|e| io(format!("read {}", spath.display()), e))?;
            if valid < total && check {
                rec.events.push(format!(
                    "{}: would truncate {} bytes of torn stream table",
                    spath.display(),
                    total - valid
                ));
            } else if valid < total {
                rec.events.push(format!(
                    "{}: truncated {} bytes of torn stream table",
                    spath.display(),
                    total - valid
                ));
                let f = OpenOptions::new()
                    .write(true)
                    .open(&spath)
                    .map_err(|e| io("open streams", e))?;
                f.set_len(valid).map_err(|e| io("truncate streams", e))?;
                f.sync_all().map_err(|e| io("sync streams", e))?;
            }
            // A salvage a crash interrupted is finished (or undone) before anything is read.
            if !check {
                let finished = salvage::finish_interrupted(&gdir)
                    .map_err(|e| io(format!("finish salvage in {}", gdir.display()), e))?;
                rec.events.extend(finished);
            }
            let mut seg_paths = Vec::new();
            for ent in fs::read_dir(&gdir).map_err(|e| io(format!("list {}", gdir.display()), e))? {
                let p = ent.map_err(|e| io("list generation", e))?.path();
                if p.extension().is_some_and(|x| x == "seg") {
                    seg_paths.push(p);
                }
            }
            seg_paths.sort();
            // A segment whose creation was cut short (the process died between creating the
            // file and writing its header) holds no record: it goes, and the one before it is
            // the generation's last again (its tail is checked as such).
            while let Some(path) = seg_paths.last() {
                let f = File::open(path).map_err(|e| io(format!("open {}", path.display()), e))?;
                let flen = f.metadata().map_err(|e| io("stat segment", e))?.len();
                let valid = segment::read_header(&f).map_err(|e| io("read segment header", e))?;
                if flen > segment::HEADER_LEN || valid.is_some() {
                    break;
                }
                if !check {
                    fs::remove_file(path)
                        .map_err(|e| io(format!("remove {}", path.display()), e))?;
                }
                rec.events.push(format!(
                    "{}: removed an empty segment left by an interrupted creation ({flen} bytes)",
                    path.display()
                ));
                seg_paths.pop();
            }
            let mut segs: Vec<Arc<Segment>> = Vec::new();
            let mut first_offset = next_offset;
            // Segments still to open, in offset order; a salvaged segment's runs go first.
            let mut queue: std::collections::VecDeque<PathBuf> = seg_paths.into();
            while let Some(path) = queue.pop_front() {
                let last_in_gen = queue.is_empty();
                let active = newest && last_in_gen;
                let f = File::open(&path).map_err(|e| io(format!("open {}", path.display()), e))?;
                let flen = f.metadata().map_err(|e| io("stat segment", e))?.len();
                let named = base_of_name(&path);
                // The index as written when the segment was sealed (its end, its base time),
                // read only where the data itself cannot say.
                let index = || named.and_then(|b| segment::read_index_any(&path, b));
                let header = segment::read_header(&f).map_err(|e| io("read segment header", e))?;
                let header_bad = header.is_none();
                let Some((base, base_ts)) =
                    header.or_else(|| index().map(|(ts, _)| (named.unwrap_or(0), ts)))
                else {
                    let index = index();
                    let to = index
                        .as_ref()
                        .map(|(_, s)| s.end_offset)
                        .or_else(|| queue.front().and_then(|p| base_of_name(p)));
                    let why = "invalid header (zero-filled or foreign file)";
                    quarantine(&path, rec, why);
                    if let Some(from) = named {
                        rec.losses.push(Loss {
                            shard: id,
                            from,
                            to,
                            file: path.display().to_string(),
                            reason: why.into(),
                        });
                    }
                    continue;
                };
                if let Some(prev) = segs.last() {
                    if base < prev.end_offset() {
                        quarantine(&path, rec, "overlaps the previous segment");
                        continue;
                    }
                }
                let indexed = if active || header_bad {
                    None
                } else {
                    segment::read_index(&path, base, base_ts)
                        .filter(|s| s.data_len == flen && !opts.verify_on_open)
                };
                let (summary, sealed) = match indexed {
                    Some(s) => (s, true),
                    None => {
                        let (s, end) =
                            segment::rebuild_summary(&f, base, base_ts, flen, opts.index_interval)
                                .map_err(|e| io(format!("scan {}", path.display()), e))?;
                        rec.scanned_bytes += s.data_len;
                        let mut clean = end == ScanEnd::Limit;
                        if !clean || header_bad {
                            let runs = salvage::find_runs(&f, base, base_ts, flen)
                                .map_err(|e| io(format!("scan {}", path.display()), e))?;
                            // Records after the damage, a damaged end that is not a torn write
                            // (a sealed segment's recorded end), or a rebuilt header: the
                            // segment is rewritten around the damage.
                            let known_end = index().map(|(_, s)| s.end_offset);
                            let tail_lost = known_end.filter(|e| *e > s.end_offset);
                            if header_bad
                                || runs.runs.len() > 1
                                || (!last_in_gen && runs.runs[0].end > base)
                                || tail_lost.is_some()
                            {
                                let placed = salvage_segment(
                                    &path,
                                    &f,
                                    base,
                                    base_ts,
                                    &runs,
                                    known_end
                                        .or_else(|| queue.front().and_then(|p| base_of_name(p))),
                                    id,
                                    rec,
                                )?;
                                for p in placed.into_iter().rev() {
                                    queue.push_front(p);
                                }
                                continue;
                            }
                            if !last_in_gen {
                                quarantine(
                                    &path,
                                    rec,
                                    &format!("sealed segment fails verification at {end:?}"),
                                );
                                rec.losses.push(Loss {
                                    shard: id,
                                    from: base,
                                    to: queue.front().and_then(|p| base_of_name(p)),
                                    file: path.display().to_string(),
                                    reason: format!("no readable record ({end:?})"),
                                });
                                continue;
                            }
                            // The last segment of a generation may end in a torn write
                            // (the generation rolled, or the process died, mid-batch).
                            if !check {
                                let w = OpenOptions::new()
                                    .write(true)
                                    .open(&path)
                                    .map_err(|e| io("open for truncate", e))?;
                                w.set_len(s.data_len).map_err(|e| io("truncate tail", e))?;
                                w.sync_all().map_err(|e| io("sync truncated tail", e))?;
                            }
                            rec.truncated_bytes += flen - s.data_len;
                            rec.events.push(format!(
                                "{}: truncated {} bytes of torn/corrupt tail ({:?})",
                                path.display(),
                                flen - s.data_len,
                                end
                            ));
                            clean = true;
                        }
                        let mut s = s;
                        s.data_len = s.data_len.max(HEADER_LEN);
                        if active {
                            (s, false)
                        } else {
                            debug_assert!(clean);
                            if !check {
                                segment::write_index(&path, base, base_ts, &s)
                                    .map_err(|e| io("write index", e))?;
                            }
                            rec.events
                                .push(format!("{}: rebuilt index", path.display()));
                            rec.rebuilt_indexes += 1;
                            (s, true)
                        }
                    }
                };
                rec.segments += 1;
                for (sid, _) in summary.streams.iter() {
                    while structs.len() <= *sid as usize {
                        // Lost structure (a damaged stream table): match anything. The
                        // table is rewritten whole before the next stream is added.
                        structs.push(vec![Level::Rest]);
                        lost_structures |= newest;
                    }
                }
                rec.records += summary.records;
                if segs.is_empty() {
                    first_offset = first_offset.min(base);
                }
                next_offset = next_offset.max(summary.end_offset);
                segs.push(Arc::new(Segment::new(
                    path, f, base, base_ts, summary, sealed,
                )));
            }
            if newest {
                for (i, s) in structs.iter().enumerate() {
                    learner.replay(i as u32, s);
                }
                structures = structs.clone();
                scratch_last = segs.last().cloned();
            }
            gens.push(Arc::new(Generation {
                id: gid,
                start_ts,
                first_offset,
                dir: gdir,
                segments: RwLock::new(segs),
                streams: RwLock::new(structs),
                sealed: AtomicBool::new(!newest),
                quarantined: Mutex::new(Vec::new()),
                shard: id,
                losses: Mutex::new(Vec::new()),
                salvaging: Mutex::new(()),
            }));
        }
        find_holes(id, dropped.1, &gens, rec);
        rec.shard_ends.push((id, next_offset));
        if check {
            return Err(CoreError::Closed("opened for a check only".into()));
        }
        let last_ts = gens.last().map_or(0, |g| g.last_ts());
        let shared = Arc::new(ShardShared {
            id,
            dir,
            gens: RwLock::new(gens.clone()),
            dropped: Mutex::new(dropped.0),
            end: AtomicU64::new(next_offset),
            waiters: Mutex::new(Waiters(Vec::new())),
            wait_lock: Mutex::new(()),
            wait_cv: Condvar::new(),
        });
        let gen = gens.last().cloned();
        let seg = match scratch_last {
            Some(s) => {
                let w = OpenOptions::new()
                    .append(true)
                    .open(&s.path)
                    .map_err(|e| io(format!("open {} for append", s.path.display()), e))?;
                let len = s.committed_len();
                Some((s, w, len))
            }
            None => None,
        };
        let streams_file = match &gen {
            Some(g) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(g.dir.join("streams"))
                    .map_err(|e| io("open streams", e))?,
            ),
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            opts,
            rx,
            gen,
            seg,
            learner,
            structures,
            streams_file,
            streams_need_rewrite: lost_structures,
            next_offset,
            last_ts,
            last_sync: Instant::now(),
            dirty: false,
            poisoned: None,
            last_retention_check: Instant::now(),
            buf: Vec::with_capacity(1 << 20),
        };
        let thread = std::thread::Builder::new()
            .name(format!("strata-shard-{id}"))
            .spawn(move || writer.run())
            .map_err(|e| io("spawn shard writer", e))?;
        Ok(Shard {
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn send(&self, cmd: Cmd) -> Result<(), Cmd> {
        let g = self.tx.lock().expect("poisoned");
        match g.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|e| e.0),
            None => Err(cmd),
        }
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

fn read_dropped(path: &Path) -> (HashMap<(u32, u32), u64>, u64) {
    let mut m = HashMap::new();
    let mut end = 0;
    if let Ok(text) = fs::read_to_string(path) {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(g), Some(e)) = (it.next(), it.next()) else {
                continue;
            };
            let (Ok(g), Ok(e)) = (g.parse::<u32>(), e.parse::<u64>()) else {
                continue;
            };
            end = end.max(e);
            for kv in it {
                if let Some((s, n)) = kv.split_once(':') {
                    if let (Ok(s), Ok(n)) = (s.parse(), n.parse()) {
                        m.insert((g, s), n);
                    }
                }
            }
        }
    }
    (m, end)
}

/// Work prepared for one write: which requests, where their records start.
struct Batch {
    reqs: Vec<(usize, ShardDone)>,
    new_streams: Vec<u8>,
    entries: Vec<IndexEntry>,
    streams: HashMap<u32, u64>,
}

impl Writer {
    fn run(mut self) {
        loop {
            let wait = self.next_deadline();
            let first = match wait {
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                },
            };
            self.tick();
            let Some(first) = first else { continue };
            let mut appends = Vec::new();
            let mut others = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            while let Some(c) = next.take() {
                match c {
                    Cmd::Append(m, d) => {
                        bytes += m.iter().map(|m| m.encoded_len_hint()).sum::<usize>();
                        appends.push((m, d));
                    }
                    o => others.push(o),
                }
                if bytes < self.opts.max_batch_bytes && others.is_empty() {
                    next = self.rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.write_batch(appends);
            }
            for c in others {
                self.handle(c);
            }
        }
        // Clean shutdown: make everything durable.
        if self.dirty || self.opts.fsync != FsyncPolicy::Always {
            if let Some((_, f, _)) = &self.seg {
                let _ = f.sync_data();
            }
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        let mut d = Duration::from_millis(self.opts.retention_check_ms.max(10));
        if self.dirty {
            if let FsyncPolicy::Interval(ms) = self.opts.fsync {
                let due = self.last_sync + Duration::from_millis(ms);
                d = d.min(due.saturating_duration_since(Instant::now()));
            }
        }
        Some(d)
    }

    fn tick(&mut self) {
        if self.dirty {
            if let FsyncPolicy::Interval(ms) = self.opts.fsync {
                if self.last_sync.elapsed() >= Duration::from_millis(ms) {
                    if let Some((_, f, _)) = &self.seg {
                        let _ = f.sync_data();
                    }
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
            }
        }
        if self.last_retention_check.elapsed()
            >= Duration::from_millis(self.opts.retention_check_ms)
        {
            self.last_retention_check = Instant::now();
            let _ = self.drop_expired();
        }
    }

    fn handle(&mut self, c: Cmd) {
        match c {
            Cmd::Append(..) => unreachable!("appends are batched"),
            Cmd::Flush(done) => {
                let r = match &self.seg {
                    Some((_, f, _)) => f.sync_data().map_err(|e| io("fsync", e)),
                    None => Ok(()),
                };
                if r.is_ok() {
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
                done(r)
            }
            Cmd::Roll(done) => {
                let r = self.roll_generation(now_ms().max(self.last_ts));
                done(r)
            }
            Cmd::DropExpired(done) => done(self.drop_expired()),
            Cmd::RaiseEnd(floor, done) => done(self.raise_end(floor)),
        }
    }

    /// See [`super::Log::raise_end`]: a new segment based at `floor` makes it durable.
    fn raise_end(&mut self, floor: u64) -> Result<bool, CoreError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if floor <= self.next_offset {
            return Ok(false);
        }
        let now = now_ms().max(self.last_ts);
        let before = self.next_offset;
        self.next_offset = floor;
        let r = (|| {
            if self.gen.is_none() {
                self.roll_generation(now)?;
            }
            self.roll_segment(now)
        })();
        if let Err(e) = r {
            self.next_offset = before;
            return Err(e);
        }
        self.shared.publish_end(floor);
        Ok(true)
    }

    fn sync_meta(&self) -> bool {
        self.opts.fsync != FsyncPolicy::None
    }

    fn shard_dir(&self) -> PathBuf {
        self.shared.dir.clone()
    }

    /// Seals the current generation and starts a new one at `ts`.
    fn roll_generation(&mut self, ts: u64) -> Result<(), CoreError> {
        let id = match &self.gen {
            Some(g) => g.id + 1,
            None => 1,
        };
        let dir = self.shard_dir().join(gen_dir_name(id, ts));
        fs::create_dir_all(&dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        let sf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("streams"))
            .map_err(|e| io("create streams", e))?;
        if self.sync_meta() {
            sync_dir(&dir);
            sync_dir(&self.shard_dir());
        }
        if let Some((s, f, _)) = self.seg.take() {
            if self.dirty {
                let _ = f.sync_data();
                self.dirty = false;
            }
            s.seal().map_err(|e| io("write index", e))?;
        }
        let g = Arc::new(Generation {
            id,
            start_ts: ts,
            first_offset: self.next_offset,
            dir,
            segments: RwLock::new(Vec::new()),
            streams: RwLock::new(Vec::new()),
            sealed: AtomicBool::new(false),
            quarantined: Mutex::new(Vec::new()),
            shard: self.shared.id,
            losses: Mutex::new(Vec::new()),
            salvaging: Mutex::new(()),
        });
        {
            let mut gens = self.shared.gens.write().expect("poisoned");
            if let Some(old) = gens.last() {
                old.sealed.store(true, Ordering::Release);
            }
            gens.push(g.clone());
        }
        self.gen = Some(g);
        self.learner = Learner::new(self.opts.lts_threshold);
        self.structures.clear();
        self.streams_file = Some(sf);
        self.streams_need_rewrite = false;
        Ok(())
    }

    fn roll_segment(&mut self, ts: u64) -> Result<(), CoreError> {
        let gen = self.gen.clone().expect("generation exists");
        if let Some((s, f, _)) = self.seg.take() {
            if self.dirty {
                let _ = f.sync_data();
                self.dirty = false;
            }
            s.seal().map_err(|e| io("write index", e))?;
        }
        let path = gen.dir.join(segment::seg_name(self.next_offset));
        let (w, r) = segment::create(&path, self.next_offset, ts, self.sync_meta())
            .map_err(|e| io(format!("create {}", path.display()), e))?;
        if self.sync_meta() {
            sync_dir(&gen.dir);
        }
        let s = Arc::new(Segment::new(
            path,
            r,
            self.next_offset,
            ts,
            Summary {
                data_len: HEADER_LEN,
                end_offset: self.next_offset,
                last_ts: ts,
                ..Summary::default()
            },
            false,
        ));
        gen.segments.write().expect("poisoned").push(s.clone());
        self.seg = Some((s, w, HEADER_LEN));
        Ok(())
    }

    fn prepare(&mut self, now: u64) -> Result<(), CoreError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let span = self.opts.generation_span_ms;
        let need_gen = match &self.gen {
            None => true,
            Some(g) => {
                now.saturating_sub(g.start_ts) >= span
                    && self.seg.as_ref().is_some_and(|s| s.0.records() > 0)
            }
        };
        if need_gen {
            self.roll_generation(now)?;
        }
        let need_seg = match &self.seg {
            None => true,
            Some((s, _, len)) => {
                *len >= self.opts.segment_bytes
                    || now.saturating_sub(s.base_ts) > u64::from(u32::MAX / 2)
                    || self.next_offset - s.base_offset > u64::from(u32::MAX / 2)
            }
        };
        if need_seg {
            self.roll_segment(now)?;
        }
        if self.streams_need_rewrite {
            self.rewrite_streams()?;
        }
        Ok(())
    }

    fn rewrite_streams(&mut self) -> Result<(), CoreError> {
        let gen = self.gen.clone().expect("generation exists");
        let mut b = Vec::new();
        for (i, s) in self.structures.iter().enumerate() {
            b.extend_from_slice(&stream_entry(i as u32, s));
        }
        let path = gen.dir.join("streams");
        let tmp = gen.dir.join("streams.tmp");
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&b)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&gen.dir);
            OpenOptions::new().append(true).open(&path)
        })();
        let f = r.map_err(|e| io("rewrite stream table", e))?;
        self.streams_file = Some(f);
        self.streams_need_rewrite = false;
        *gen.streams.write().expect("poisoned") = self.structures.clone();
        Ok(())
    }

    fn fail_all(reqs: Vec<(Vec<NewMessage>, ShardDone)>, e: &CoreError) {
        for (_, d) in reqs {
            d(Err(e.clone()));
        }
    }

    fn write_batch(&mut self, reqs: Vec<(Vec<NewMessage>, ShardDone)>) {
        let now = now_ms().max(self.last_ts);
        if let Err(e) = self.prepare(now) {
            return Self::fail_all(reqs, &e);
        }
        let (seg, start_len) = {
            let (s, _, len) = self.seg.as_ref().expect("segment exists");
            (s.clone(), *len)
        };
        let start_offset = self.next_offset;
        let n_structs = self.structures.len();
        let mut batch = Batch {
            reqs: Vec::with_capacity(reqs.len()),
            new_streams: Vec::new(),
            entries: Vec::new(),
            streams: HashMap::new(),
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut next_index = seg
            .summary_last_index_pos()
            .map_or(HEADER_LEN, |p| p + self.opts.index_interval);
        let ts_delta = (now - seg.base_ts) as u32;
        for (msgs, done) in reqs {
            if let Some(e) = msgs.iter().find_map(validate) {
                done(Err(e));
                continue;
            }
            let first = self.next_offset;
            for m in &msgs {
                let (sid, new) = self.learner.learn(&m.topic);
                if let Some(s) = new {
                    batch.new_streams.extend_from_slice(&stream_entry(sid, &s));
                    self.structures.push(s);
                }
                let pos = start_len + buf.len() as u64;
                if pos >= next_index {
                    batch.entries.push(IndexEntry {
                        offset: self.next_offset,
                        pos,
                        ts: now,
                    });
                    next_index = pos + self.opts.index_interval;
                }
                record::encode(
                    &mut buf,
                    (self.next_offset - seg.base_offset) as u32,
                    ts_delta,
                    sid,
                    m,
                );
                *batch.streams.entry(sid).or_insert(0) += 1;
                self.next_offset += 1;
            }
            batch.reqs.push((first as usize, done));
        }
        let result = self.persist(&buf, &batch, start_len);
        self.buf = buf;
        match result {
            Ok(new_len) => {
                if self.structures.len() > n_structs {
                    let gen = self.gen.as_ref().expect("generation exists");
                    *gen.streams.write().expect("poisoned") = self.structures.clone();
                }
                self.last_ts = now;
                seg.publish(
                    new_len,
                    self.next_offset,
                    now,
                    &batch.entries,
                    &batch.streams,
                );
                if let Some(s) = self.seg.as_mut() {
                    s.2 = new_len;
                }
                // The end first: once an append completes, `shard_end` covers it.
                self.shared.publish_end(self.next_offset);
                for (first, d) in batch.reqs {
                    d(Ok(first as u64));
                }
            }
            Err(e) => {
                self.next_offset = start_offset;
                for (_, d) in batch.reqs {
                    d(Err(e.clone()));
                }
            }
        }
    }

    /// Writes stream entries then records, syncing per policy. On failure the segment
    /// is truncated back to `start_len` so no partial batch survives.
    fn persist(&mut self, buf: &[u8], batch: &Batch, start_len: u64) -> Result<u64, CoreError> {
        if !batch.new_streams.is_empty() {
            let r = match self.streams_file.as_mut() {
                Some(f) => f.write_all(&batch.new_streams).and_then(|_| f.sync_data()),
                None => Err(std::io::Error::other("no stream table open")),
            };
            if let Err(e) = r {
                self.streams_need_rewrite = true;
                return Err(io("append stream table", e));
            }
        }
        if buf.is_empty() {
            return Ok(start_len);
        }
        let policy = self.opts.fsync;
        let (_, f, _) = self.seg.as_mut().expect("segment exists");
        let w = f.write_all(buf).map_err(|e| io("append records", e));
        let w = w.and_then(|_| match policy {
            FsyncPolicy::Always => f.sync_data().map_err(|e| io("fsync records", e)),
            _ => Ok(()),
        });
        if let Err(e) = w {
            // Roll back the partial batch so the next one starts on a record boundary.
            let undo = f.set_len(start_len).and_then(|_| f.sync_data());
            if let Err(u) = undo {
                let p = CoreError::Closed(format!(
                    "shard {} stopped: could not roll back a failed write ({u}); reopen the store",
                    self.shared.id
                ));
                self.poisoned = Some(p);
            }
            return Err(e);
        }
        match policy {
            FsyncPolicy::Always => {
                self.last_sync = Instant::now();
            }
            FsyncPolicy::Interval(ms) => {
                self.dirty = true;
                if self.last_sync.elapsed() >= Duration::from_millis(ms) {
                    if let Err(e) = f.sync_data() {
                        return Err(io("fsync records", e));
                    }
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
            }
            FsyncPolicy::None => {}
        }
        Ok(start_len + buf.len() as u64)
    }

    fn drop_expired(&mut self) -> Result<usize, CoreError> {
        let Some(keep_ms) = self.opts.max_retention_ms() else {
            return Ok(0);
        };
        let now = now_ms();
        let gens = self.shared.generations();
        let mut dropped = 0;
        for g in gens.iter().take(gens.len().saturating_sub(1)) {
            if now.saturating_sub(g.last_ts()) <= keep_ms {
                break;
            }
            // Tombstone first, so a crash mid-delete still reports skipped counts.
            let mut counts: HashMap<u32, u64> = HashMap::new();
            let segs = g.segs();
            for s in &segs {
                for (k, v) in s.stream_counts() {
                    *counts.entry(k).or_insert(0) += v;
                }
            }
            let end = g.end_offset().unwrap_or(0);
            let mut line = format!("{} {}", g.id, end);
            for (k, v) in &counts {
                line.push_str(&format!(" {k}:{v}"));
            }
            line.push('\n');
            let path = self.shared.dir.join("dropped");
            (|| {
                let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
                f.write_all(line.as_bytes())?;
                f.sync_data()
            })()
            .map_err(|e| io("write tombstone", e))?;
            {
                let mut d = self.shared.dropped.lock().expect("poisoned");
                for (k, v) in counts {
                    d.insert((g.id, k), v);
                }
            }
            self.shared
                .gens
                .write()
                .expect("poisoned")
                .retain(|x| x.id != g.id);
            fs::remove_dir_all(&g.dir).map_err(|e| io(format!("remove {}", g.dir.display()), e))?;
            dropped += 1;
        }
        if dropped > 0 {
            sync_dir(&self.shared.dir);
        }
        Ok(dropped)
    }
}

fn validate(m: &NewMessage) -> Option<CoreError> {
    if m.topic.is_empty() || m.topic.contains(['+', '#', '\0']) {
        return Some(CoreError::InvalidTopic(format!(
            "topic name {:?} is empty or contains a wildcard or NUL",
            m.topic
        )));
    }
    if m.qos > 2 {
        return Some(CoreError::InvalidArgument(format!("qos {} > 2", m.qos)));
    }
    if m.encoded_len_hint() > record::MAX_BODY {
        return Some(CoreError::InvalidArgument("message too large".into()));
    }
    None
}

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
