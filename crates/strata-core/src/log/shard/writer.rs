//! The shard's writer thread: the only one that mutates its files. Appends are
//! group-committed (one write and, under `FsyncPolicy::Always`, one `fdatasync` per
//! batch); it also rolls segments and generations, drops generations past retention and
//! raises the shard's end.
use super::super::packed::Messages;
use super::super::record::{self, MessageRef};
use super::super::segment::{self, IndexEntry, Segment, Summary, HEADER_LEN};
use super::super::stream::{self, Learner, Structure};
use super::super::{Completes, FsyncPolicy, LAZY_SYNC_MS};
use super::recover::Recovered;
use super::{gen_dir_name, io, now_ms, sync_dir, Cmd, Generation, Options, ShardDone, ShardShared};
use crate::error::CoreError;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// `fdatasync` of a record file, counted in the shard's stats (`ShardStats::syncs`).
fn sync_records(f: &File, syncs: &AtomicU64) -> std::io::Result<()> {
    syncs.fetch_add(1, Ordering::Relaxed);
    f.sync_data()
}

/// Zeros written ahead of the active segment's records, at most, in one go.
const ZERO_AHEAD: u64 = 1 << 20;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Writes zeros from `zeroed` (the file's length) up to `need + ZERO_AHEAD`, `cap` at most
/// (unless `need` is past it); returns the file's length after. Records are then written
/// over blocks the file has already: on ext4 an `fdatasync` of a write that grows the file
/// also commits the journal for its new size and blocks — 150-270 us here against 95-100 us
/// for one that overwrites (docs/storage.md, "Zeros written ahead"). The price: the zeros
/// are written to disk too, by the first `fdatasync` after them. Best effort: a failed write
/// of zeros (a full disk) stops there, and the records are written as before. A crash
/// leaves zeros after the last record: recovery finds the end at the first zero length, as
/// it finds a torn tail, and cuts them off.
fn zero_ahead(f: &File, zeroed: u64, need: u64, cap: u64) -> u64 {
    let target = (need + ZERO_AHEAD).min(cap.max(need));
    let mut at = zeroed;
    while at < target {
        let n = (target - at).min(ZEROS.len() as u64) as usize;
        match f.write_at(&ZEROS[..n], at) {
            Ok(k) if k > 0 => at += k as u64,
            _ => break,
        }
    }
    at
}

/// What the writer thread owns.
struct Writer {
    shared: Arc<ShardShared>,
    opts: Arc<Options>,
    rx: Receiver<Cmd>,
    gen: Option<Arc<Generation>>,
    seg: Option<(Arc<Segment>, File, u64)>,
    /// The active segment file's length: its records, then zeros written ahead (`zero_ahead`).
    zeroed: u64,
    learner: Learner,
    structures: Vec<Structure>,
    streams_file: Option<File>,
    streams_need_rewrite: bool,
    next_offset: u64,
    last_ts: u64,
    last_sync: Instant,
    dirty: bool,
    /// Under `FsyncPolicy::Always`: since when records written as `Completes::Written` wait
    /// for a sync (`dirty` is set too).
    lazy_since: Option<Instant>,
    poisoned: Option<CoreError>,
    last_retention_check: Instant,
    buf: Vec<u8>,
}

/// Starts the writer thread of a shard `recover` found.
pub(super) fn start(
    shared: Arc<ShardShared>,
    opts: Arc<Options>,
    found: Recovered,
    last_ts: u64,
) -> Result<(Sender<Cmd>, JoinHandle<()>), CoreError> {
    let id = shared.id;
    let Recovered {
        gens,
        next_offset,
        learner,
        structures,
        last_segment,
        lost_structures,
        ..
    } = found;
    let gen = gens.last().cloned();
    // Not O_APPEND: records are written at their position (`write_all_at`), over zeros.
    let seg = match last_segment {
        Some(s) => {
            let w = OpenOptions::new()
                .write(true)
                .open(&s.path)
                .map_err(|e| io(format!("open {} for append", s.path.display()), e))?;
            let len = s.committed_len();
            Some((s, w, len))
        }
        None => None,
    };
    let zeroed = match &seg {
        Some((_, w, len)) => w.metadata().map_or(*len, |m| m.len().max(*len)),
        None => 0,
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
        zeroed,
        learner,
        structures,
        streams_file,
        streams_need_rewrite: lost_structures,
        next_offset,
        last_ts,
        last_sync: Instant::now(),
        dirty: false,
        lazy_since: None,
        poisoned: None,
        last_retention_check: Instant::now(),
        buf: Vec::with_capacity(1 << 20),
    };
    let thread = std::thread::Builder::new()
        .name(format!("strata-shard-{id}"))
        .spawn(move || {
            crate::sched::background_thread();
            writer.run()
        })
        .map_err(|e| io("spawn shard writer", e))?;
    Ok((tx, thread))
}

/// Work prepared for one write: which requests, where their records start.
struct Batch {
    reqs: Vec<(usize, ShardDone)>,
    new_streams: Vec<u8>,
    entries: Vec<IndexEntry>,
    /// Records per stream id (the index), for the segment's stream counts.
    streams: Vec<u64>,
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
            let mut durable = false;
            let mut others = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            while let Some(c) = next.take() {
                match c {
                    Cmd::Append(m, d, completes) => {
                        bytes += m.encoded_len_hint();
                        durable |= completes == Completes::Durable;
                        appends.push((m, d));
                    }
                    o => others.push(o),
                }
                if bytes < self.opts.max_batch_bytes && others.is_empty() {
                    next = self.rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.write_batch(appends, durable);
            }
            for c in others {
                self.handle(c);
            }
        }
        // Clean shutdown: the zeros written ahead cut off, everything made durable.
        let _ = self.cut_zeros();
        if let Some((_, f, _)) = &self.seg {
            if self.dirty || self.opts.fsync != FsyncPolicy::Always {
                let _ = f.sync_data();
            }
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        let mut d = Duration::from_millis(self.opts.retention_check_ms.max(10));
        if let Some(t) = self.lazy_since {
            let due = t + Duration::from_millis(LAZY_SYNC_MS);
            d = d.min(due.saturating_duration_since(Instant::now()));
        }
        if self.dirty {
            if let FsyncPolicy::Interval(ms) = self.opts.fsync {
                let due = self.last_sync + Duration::from_millis(ms);
                d = d.min(due.saturating_duration_since(Instant::now()));
            }
        }
        Some(d)
    }

    fn tick(&mut self) {
        if let Some(t) = self.lazy_since {
            if t.elapsed() >= Duration::from_millis(LAZY_SYNC_MS) {
                self.sync_lazy();
            }
        }
        if self.dirty {
            if let FsyncPolicy::Interval(ms) = self.opts.fsync {
                if self.last_sync.elapsed() >= Duration::from_millis(ms) {
                    if let Some((_, f, _)) = &self.seg {
                        let _ = sync_records(f, &self.shared.syncs);
                    }
                    self.synced();
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

    /// Everything written is synced: nothing waits for a sync.
    fn synced(&mut self) {
        self.dirty = false;
        self.lazy_since = None;
        self.last_sync = Instant::now();
    }

    /// Syncs what `Completes::Written` appends left unsynced (under `FsyncPolicy::Always`).
    /// A failed sync is retried at the next deadline; the appends completed already.
    fn sync_lazy(&mut self) {
        let ok = match &self.seg {
            Some((_, f, _)) => sync_records(f, &self.shared.syncs).is_ok(),
            None => true,
        };
        if ok {
            self.synced();
        } else {
            self.lazy_since = Some(Instant::now());
        }
    }

    fn handle(&mut self, c: Cmd) {
        match c {
            Cmd::Append(..) => unreachable!("appends are batched"),
            Cmd::Flush(done) => {
                let r = match &self.seg {
                    Some((_, f, _)) => {
                        sync_records(f, &self.shared.syncs).map_err(|e| io("fsync", e))
                    }
                    None => Ok(()),
                };
                if r.is_ok() {
                    self.synced();
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
        self.seal_segment()?;
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
        self.seal_segment()?;
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
        self.zeroed = HEADER_LEN;
        Ok(())
    }

    /// Cuts the zeros written ahead of the active segment's records (`dirty`: the new length
    /// is synced with what is left to sync).
    fn cut_zeros(&mut self) -> Result<(), CoreError> {
        if let Some((_, f, len)) = &self.seg {
            if self.zeroed > *len {
                f.set_len(*len)
                    .map_err(|e| io("cut the zeros after the last record", e))?;
                self.zeroed = *len;
                self.dirty = true;
            }
        }
        Ok(())
    }

    /// Seals the active segment, if any: the zeros written ahead of its records cut off
    /// (synced before its index says where it ends), then its index written.
    fn seal_segment(&mut self) -> Result<(), CoreError> {
        // Failing, the segment stays the active one (the roll is tried again).
        self.cut_zeros()?;
        if let Some((s, f, _)) = self.seg.take() {
            if self.dirty {
                let _ = f.sync_data();
                self.dirty = false;
            }
            self.zeroed = 0;
            s.seal().map_err(|e| io("write index", e))?;
        }
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

    fn fail_all(reqs: Vec<(Messages, ShardDone)>, e: &CoreError) {
        for (_, d) in reqs {
            d(Err(e.clone()));
        }
    }

    /// Writes `reqs` as one batch; `durable`: one of them completes once durable (the sync,
    /// under `FsyncPolicy::Always`, also covers whatever earlier `Written` ones left).
    fn write_batch(&mut self, reqs: Vec<(Messages, ShardDone)>, durable: bool) {
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
            streams: Vec::new(),
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut next_index = seg
            .summary_last_index_pos()
            .map_or(HEADER_LEN, |p| p + self.opts.index_interval);
        let ts_delta = (now - seg.base_ts) as u32;
        for (msgs, done) in reqs {
            if let Some(e) = msgs.iter().find_map(|m| validate(&m)) {
                done(Err(e));
                continue;
            }
            let first = self.next_offset;
            for m in msgs.iter() {
                let (sid, new) = self.learner.learn(m.topic);
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
                    &m,
                );
                let k = sid as usize;
                if k >= batch.streams.len() {
                    batch.streams.resize(k + 1, 0);
                }
                batch.streams[k] += 1;
                self.next_offset += 1;
            }
            batch.reqs.push((first as usize, done));
        }
        let result = self.persist(&buf, &batch, start_len, durable);
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

    /// Writes stream entries then records, syncing per policy (under `Always`, only when
    /// `durable`; else later, see `Completes::Written`). On failure the segment is truncated
    /// back to `start_len` so no partial batch survives.
    fn persist(
        &mut self,
        buf: &[u8],
        batch: &Batch,
        start_len: u64,
        durable: bool,
    ) -> Result<u64, CoreError> {
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
        let syncs = &self.shared.syncs;
        let (_, f, _) = self.seg.as_mut().expect("segment exists");
        let end = start_len + buf.len() as u64;
        // For a batch synced now only (`Always`, `durable`): elsewhere nothing waits for
        // the fdatasync, and the zeros would cost their writes for nothing.
        if end > self.zeroed && policy == FsyncPolicy::Always && durable {
            self.zeroed = zero_ahead(f, self.zeroed, end, self.opts.segment_bytes);
        }
        let w = f
            .write_all_at(buf, start_len)
            .map_err(|e| io("append records", e));
        if w.is_ok() {
            self.zeroed = self.zeroed.max(end);
        }
        let w = w.and_then(|_| match policy {
            FsyncPolicy::Always if durable => {
                sync_records(f, syncs).map_err(|e| io("fsync records", e))
            }
            _ => Ok(()),
        });
        if let Err(e) = w {
            // Roll back the partial batch so the next one starts on a record boundary.
            let undo = f.set_len(start_len).and_then(|_| f.sync_data());
            self.zeroed = start_len;
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
            FsyncPolicy::Always if durable => self.synced(),
            FsyncPolicy::Always => {
                self.dirty = true;
                self.lazy_since.get_or_insert_with(Instant::now);
            }
            FsyncPolicy::Interval(ms) => {
                self.dirty = true;
                if self.last_sync.elapsed() >= Duration::from_millis(ms) {
                    if let Err(e) = sync_records(f, syncs) {
                        return Err(io("fsync records", e));
                    }
                    self.synced();
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

fn validate(m: &MessageRef<'_>) -> Option<CoreError> {
    if m.topic.is_empty() || m.topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0)) {
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
