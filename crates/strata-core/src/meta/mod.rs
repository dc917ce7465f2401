//! Durable metadata for persistent sessions: session records, subscriptions, progress
//! records, inbound QoS 2 packet ids, retained messages, loss reports and store-wide
//! values, kept twice so that either copy can rebuild the other.
//!
//! Files in the data directory:
//! - `meta.redb`: `redb` (a copy-on-write B-tree with atomically committed
//!   transactions), the copy reads are served from;
//! - `meta.journal`: an append-only file of checksummed frames ([`journal`] has the
//!   format), the second copy: replaying it onto an empty state gives the committed
//!   state;
//! - `meta.lock`: locked (flock) while a store is open; once a store has been created
//!   it holds a line of text, so losing both copies is reported, not taken for a new
//!   store;
//! - `meta.seal`: left by a clean close, removed at open ([`seal`]): when both files
//!   are still byte for byte what it describes, open keeps them without comparing them.
//!
//! Writes go through one writer thread that **group-commits**: all operations queued
//! while a commit is running go into the next one. A group commit is, in this order:
//! one redb transaction (`Durability::Immediate` when durable) that also sets
//! `system/journal_seq` to the commit's seq; one journal frame holding the same
//! operations, appended and (when durable) fdatasync'ed; then the callers' completions.
//!
//! Invariants of [`MetaStore`]:
//! - A completed [`MetaStore::apply`] is in both copies, durably when the store was
//!   opened with `durable = true`; its operations are applied atomically, in order,
//!   after every operation completed before it.
//! - Commits have consecutive seqs. `meta.redb` is at seq `R` (`system/journal_seq`),
//!   the journal at `J`; while open `R == J`. A crash can leave `R == J + 1` (redb
//!   committed, journal frame not written, nobody told), never `R < J` when durable
//!   (non-durable: a process crash loses redb's unsynced commits, not the journal's,
//!   so `R < J` and open replays the difference).
//! - Replaying the journal gives exactly redb's content at the same seq, every table,
//!   key and value (but `system/journal_seq` itself, which only the store writes).
//! - The journal is compacted — rewritten from redb's current state — once larger than
//!   max(8 MiB, 4 × its size after the last compaction); it is replaced whole (temp
//!   file, fsync, rename, fsync of the directory), so a crash leaves the old or the new
//!   one, both complete.
//! - [`MetaStore::open`] never deletes a damaged file: it renames it aside
//!   (`<file>.corrupt-<unix ms>`) and reports it; what it lost, if anything, it says
//!   in [`MetaRecovery::lost`]. [`MetaStore::check`] reports the same without changing
//!   anything in the directory.
//! - Keys and values are opaque bytes; each [`Table`] is an ordered map, so prefix
//!   scans return keys in byte order.
//!
//! The store does not interpret what it holds: the caller records and compares its own
//! identity (`system/site_id`, `system/n_shards`) and writes loss reports to
//! [`Table::Losses`].
use crate::error::CoreError;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod journal;
pub mod packed_ops;
pub mod progress;
mod recovery;
mod seal;
mod state;

/// Key of `system/journal_seq`: the seq of redb's last commit. Written by the store
/// only; [`MetaStore::apply`] refuses to put it.
pub const JOURNAL_SEQ_KEY: &[u8] = b"journal_seq";
/// Lock file of the metadata store, inside the data directory.
pub const LOCK_FILE: &str = "meta.lock";

/// The metadata tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Session records by client id.
    Sessions,
    /// Subscriptions, keyed e.g. `client id \0 filter`.
    Subscriptions,
    /// Inbound QoS 2 packet ids a publisher's PUBREL has not released yet (pending or
    /// stored), keyed by client id and packet id. Named `cursors` before 0.1 stores were
    /// migrated (see [`Table::legacy_name`]).
    InboundQos2,
    /// Per-session progress records (how far each shard was read, deliveries in flight;
    /// layout in [`progress`]), keyed by client id. Named `acks` before.
    Progress,
    /// Retained messages by topic.
    Retained,
    /// Store-wide values (`site_id`, `n_shards`, written by the caller; `journal_seq`,
    /// written by the store).
    System,
    /// Loss reports, written by the caller (e.g. what a recovery reported lost).
    Losses,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 7] = [
        Table::Sessions,
        Table::Subscriptions,
        Table::InboundQos2,
        Table::Progress,
        Table::Retained,
        Table::System,
        Table::Losses,
    ];

    /// Stable name (also the redb table name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Subscriptions => "subscriptions",
            Table::InboundQos2 => "inbound_qos2",
            Table::Progress => "progress",
            Table::Retained => "retained",
            Table::System => "system",
            Table::Losses => "losses",
        }
    }

    /// The redb name the table had in stores written before it was renamed: `open`
    /// renames such a table (see `recovery::migrate_names`); reads of a store not yet
    /// migrated (`check`) fall back to it. Not accepted by `from_str`.
    pub fn legacy_name(self) -> Option<&'static str> {
        match self {
            Table::InboundQos2 => Some("cursors"),
            Table::Progress => Some("acks"),
            _ => None,
        }
    }

    /// Stable id in the journal's frames (unchanged by renames).
    fn id(self) -> u8 {
        match self {
            Table::Sessions => 1,
            Table::Subscriptions => 2,
            Table::InboundQos2 => 3,
            Table::Progress => 4,
            Table::Retained => 5,
            Table::System => 6,
            Table::Losses => 7,
        }
    }

    fn from_id(id: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Position in [`Table::ALL`].
    fn index(self) -> usize {
        Table::ALL
            .iter()
            .position(|&t| t == self)
            .expect("every table is in ALL")
    }

    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

impl std::str::FromStr for Table {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| CoreError::InvalidArgument(format!("unknown metadata table {s:?}")))
    }
}

/// One write operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove one key (no error when absent).
    Delete(Table, Vec<u8>),
    /// Remove every key starting with the prefix (e.g. all of a session's inbound ids).
    DeletePrefix(Table, Vec<u8>),
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A table's entries, in key order.
pub type TableEntries = Vec<KeyValue>;

/// Completion of [`MetaStore::apply`].
pub type MetaDone = Box<dyn FnOnce(Result<(), CoreError>) + Send>;

/// What [`MetaStore::open`] found and did (or, from [`MetaStore::check`], would do).
///
/// Empty after a clean shutdown and for a new store. `rebuilt`, `quarantined` and
/// `lost` mean damage was found ([`MetaRecovery::damage_found`]); `journal_rewritten`
/// alone is also what a crash between a commit and its journal write leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaRecovery {
    /// What was found and done, one line each.
    pub events: Vec<String>,
    /// Files renamed aside: `<file> -> <new name>: <why>` (from `check`:
    /// `<file>: <why> (open renames it aside)`).
    pub quarantined: Vec<String>,
    /// `meta.redb` was (would be) created anew from the journal, or empty.
    pub rebuilt: bool,
    /// `meta.journal` was (would be) written anew from `meta.redb`.
    pub journal_rewritten: bool,
    /// Set when acknowledged metadata is (or may be) gone, saying what and why.
    pub lost: Option<String>,
}

impl MetaRecovery {
    /// Whether a file was damaged or missing: something was or would be rebuilt,
    /// quarantined or lost.
    pub fn damage_found(&self) -> bool {
        self.rebuilt || !self.quarantined.is_empty() || self.lost.is_some()
    }
}

enum Req {
    Ops(Vec<Op>, MetaDone),
    /// Operations still packed ([`packed_ops`]): unpacked and checked on the writer thread.
    Packed(Vec<u8>, MetaDone),
    Compact(MetaDone),
}

fn meta_err(e: impl Into<redb::Error>) -> CoreError {
    match e.into() {
        redb::Error::Io(io) => CoreError::from_io("metadata store", &io),
        redb::Error::DatabaseAlreadyOpen => {
            CoreError::StoreLocked("metadata store is open elsewhere".into())
        }
        other => CoreError::Meta(other.to_string()),
    }
}

/// The metadata store. Cheap to share behind an `Arc`.
pub struct MetaStore {
    /// None once closed (redb closed, the seal written).
    db: RwLock<Option<Arc<Database>>>,
    dir: PathBuf,
    tx: Mutex<Option<Sender<Req>>>,
    /// The writer; it returns where it ended when it ended cleanly.
    thread: Mutex<Option<JoinHandle<Option<seal::Ended>>>>,
    /// Opened from a seal ([`seal`]): both copies as the last clean close left them.
    sealed: bool,
    _lock: File,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore").field("dir", &self.dir).finish()
    }
}

fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// How long `open` retries a busy `meta.lock` (a process that forks briefly holds a
/// copy of every descriptor, so a store closed a moment ago can still look held).
const LOCK_WAIT: Duration = Duration::from_millis(1000);

/// Takes `lock` (shared or exclusive), retrying for [`LOCK_WAIT`].
#[allow(clippy::incompatible_msrv)] // File locking is stable since 1.89; the toolchain is 1.95.
fn take_lock(f: &File, path: &Path, shared: bool) -> Result<(), CoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let r = if shared {
            f.try_lock_shared()
        } else {
            f.try_lock()
        };
        match r {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(CoreError::StoreLocked(format!(
                    "{} is held by another metadata store",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(CoreError::from_io(format!("lock {}", path.display()), &e))
            }
        }
    }
}

/// Largest encoded size of one `apply` (it must fit one journal frame).
const MAX_APPLY_BYTES: usize = journal::MAX_BODY - 9;
/// A group commit stops taking more callers once its operations encode to this.
const BATCH_BYTES: usize = 64 << 20;
/// ... or once it has this many callers.
const BATCH_CALLERS: usize = 4096;

fn ops_len(ops: &[Op]) -> usize {
    ops.iter().map(journal::op_len).sum()
}

impl MetaStore {
    /// Opens the metadata store in `dir` (creating the directory and the store if
    /// needed), after checking both copies against each other and repairing what it
    /// can: see [`MetaRecovery`] and docs/storage.md ("Metadata journal") for what it
    /// does in each case. `durable` selects `Durability::Immediate` commits and an
    /// fdatasync of every journal frame (else neither is synced).
    ///
    /// Errors: I/O errors (`Io`, `DiskFull`, `PermissionDenied`), `StoreLocked` when
    /// another store holds `dir`. Damaged files are not errors.
    pub fn open(dir: &Path, durable: bool) -> Result<(MetaStore, MetaRecovery), CoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CoreError::from_io(format!("create {}", dir.display()), &e))?;
        let lock_path = dir.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CoreError::from_io(format!("open {}", lock_path.display()), &e))?;
        take_lock(&lock, &lock_path, false)?;
        let (plan, sealed) = match recovery::sealed(dir)? {
            Some(plan) => (plan, true),
            None => (recovery::examine(dir)?, false),
        };
        // The seal describes the files as they are now: gone before anything changes them.
        seal::remove(dir).map_err(|e| CoreError::from_io(format!("remove {}", seal::FILE), &e))?;
        let opened = recovery::execute(plan, durable)?;
        let io = |e: std::io::Error| CoreError::from_io(format!("write {LOCK_FILE}"), &e);
        if lock.metadata().map_err(io)?.len() == 0 {
            lock.write_all(b"stratamq metadata store\n").map_err(io)?;
            lock.sync_all().map_err(io)?;
            journal::sync_dir(dir).map_err(io)?;
        }
        let db = Arc::new(opened.db);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            dir: dir.to_path_buf(),
            journal: Some(opened.journal),
            durable,
            seq: opened.seq,
            frame: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("strata-meta".into())
            .spawn(move || {
                crate::sched::background_thread();
                writer.run(rx)
            })
            .map_err(|e| CoreError::from_io("spawn metadata writer", &e))?;
        Ok((
            MetaStore {
                db: RwLock::new(Some(db)),
                dir: dir.to_path_buf(),
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                sealed,
                _lock: lock,
            },
            opened.recovery,
        ))
    }

    /// Reports what [`MetaStore::open`] would find and do in `dir`, changing nothing
    /// in it (`meta.redb` is examined through an in-memory copy-on-write view, so not
    /// even redb's crash repair writes to it). `StoreLocked` while a store is open in
    /// `dir`.
    pub fn check(dir: &Path) -> Result<MetaRecovery, CoreError> {
        Self::check_contents(dir, &[]).map(|(r, _)| r)
    }

    /// [`MetaStore::check`], plus the entries of `tables` as the journal holds them (None
    /// without a usable journal). Changes nothing.
    pub fn check_contents(
        dir: &Path,
        tables: &[Table],
    ) -> Result<(MetaRecovery, Option<Vec<TableEntries>>), CoreError> {
        let lock_path = dir.join(LOCK_FILE);
        let _lock = match File::open(&lock_path) {
            Ok(f) => {
                take_lock(&f, &lock_path, true)?;
                Some(f)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(CoreError::from_io(
                    format!("open {}", lock_path.display()),
                    &e,
                ))
            }
        };
        let plan = recovery::examine(dir)?;
        let contents = tables
            .iter()
            .map(|t| plan.journal_table(*t))
            .collect::<Option<Vec<_>>>();
        // What open does: with a matching seal it keeps both files as they are.
        let report = match recovery::sealed(dir)? {
            Some(sealed) => sealed.report(),
            None => plan.report(),
        };
        Ok((report, contents))
    }

    /// Queues `ops` for the next group commit; `done` runs once they are committed
    /// (in both copies). `InvalidArgument` for a put of `system/journal_seq` or ops
    /// larger than 1 GiB encoded.
    pub fn apply(&self, ops: Vec<Op>, done: MetaDone) {
        match check_ops(&ops) {
            Ok(()) => self.send(Req::Ops(ops, done)),
            Err(e) => done(Err(e)),
        }
    }

    /// [`MetaStore::apply`] of operations packed as [`packed_ops`] lays them out: unpacked
    /// and checked on the writer thread (not the caller's), the same rules; a buffer that
    /// does not fit the layout fails `done` with `InvalidArgument`.
    pub fn apply_packed(&self, packed: Vec<u8>, done: MetaDone) {
        self.send(Req::Packed(packed, done));
    }

    fn send(&self, req: Req) {
        let closed = || Err(CoreError::Closed("metadata store closed".into()));
        let g = self.tx.lock().expect("poisoned");
        let unsent = match g.as_ref() {
            Some(tx) => match tx.send(req) {
                Ok(()) => return,
                Err(mpsc::SendError(r)) => r,
            },
            None => req,
        };
        match unsent {
            Req::Ops(_, d) | Req::Packed(_, d) | Req::Compact(d) => d(closed()),
        }
    }

    /// [`MetaStore::apply`] and wait.
    pub fn apply_blocking(&self, ops: Vec<Op>) -> Result<(), CoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.apply(
            ops,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv()
            .unwrap_or_else(|_| Err(CoreError::Closed("metadata store closed".into())))
    }

    /// Rewrites the journal from the current state now (the writer does it by itself
    /// once the journal has grown enough) and waits for it.
    pub fn compact_journal(&self) -> Result<(), CoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Req::Compact(Box::new(move |r| {
            let _ = tx.send(r);
        })));
        rx.recv()
            .unwrap_or_else(|_| Err(CoreError::Closed("metadata store closed".into())))
    }

    /// Reads one value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, CoreError> {
        let r = self.db()?.begin_read().map_err(meta_err)?;
        let t = r.open_table(table.def()).map_err(meta_err)?;
        Ok(t.get(key).map_err(meta_err)?.map(|v| v.value().to_vec()))
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order, starting
    /// after `after` when given (for paging).
    pub fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, CoreError> {
        let r = self.db()?.begin_read().map_err(meta_err)?;
        let t = r.open_table(table.def()).map_err(meta_err)?;
        let end = prefix_end(prefix);
        let start = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let iter = match &end {
            Some(e) => t.range::<&[u8]>(start..e.as_slice()),
            None => t.range::<&[u8]>(start..),
        }
        .map_err(meta_err)?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(meta_err)?;
            let k = k.value();
            if after.is_some_and(|a| k <= a) {
                continue;
            }
            out.push((k.to_vec(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Calls `f` with every entry of `table`, in key order, as one read transaction sees
    /// them (no copy of a key or value is made for the call).
    pub fn for_each(&self, table: Table, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), CoreError> {
        let r = self.db()?.begin_read().map_err(meta_err)?;
        let t = r.open_table(table.def()).map_err(meta_err)?;
        for item in t.iter().map_err(meta_err)? {
            let (k, v) = item.map_err(meta_err)?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    /// Whether this open found the seal of a clean close matching both files (so they
    /// were not compared entry by entry).
    pub fn opened_sealed(&self) -> bool {
        self.sealed
    }

    fn db(&self) -> Result<Arc<Database>, CoreError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| CoreError::Closed("metadata store closed".into()))
    }

    /// Stops the writer after draining queued operations, closes redb and, when the
    /// writer ended cleanly, seals the two copies for the next open ([`seal`]).
    pub fn close(&self) {
        self.tx.lock().expect("poisoned").take();
        let Some(t) = self.thread.lock().expect("poisoned").take() else {
            return;
        };
        let ended = t.join().ok().flatten();
        let db = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        // redb writes its allocator state and a clean header when its last handle goes.
        let closed = db.is_some_and(|db| Arc::try_unwrap(db).is_ok());
        if let (true, Some(end)) = (closed, ended) {
            // Without a seal the next open compares the copies in full: nothing to report.
            let _ = seal::write(&self.dir, &end);
        }
    }
}

impl Drop for MetaStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Applies `ops` in a write transaction.
pub(crate) fn apply_to_txn<'a>(
    w: &WriteTransaction,
    ops: impl IntoIterator<Item = &'a Op>,
) -> Result<(), redb::Error> {
    // Each table opened once for all the operations: opening one and letting it go per
    // operation (which writes its root back to the table of tables each time) was most of
    // a retained message's commit.
    let mut open: [Option<redb::Table<'_, &'static [u8], &'static [u8]>>; Table::ALL.len()] =
        Default::default();
    for op in ops {
        let (Op::Put(t, ..) | Op::Delete(t, _) | Op::DeletePrefix(t, _)) = op;
        let slot = &mut open[t.index()];
        let tab = match slot {
            Some(tab) => tab,
            None => slot.insert(w.open_table(t.def())?),
        };
        match op {
            Op::Put(_, k, v) => {
                tab.insert(k.as_slice(), v.as_slice())?;
            }
            Op::Delete(_, k) => {
                tab.remove(k.as_slice())?;
            }
            Op::DeletePrefix(_, p) => {
                match prefix_end(p) {
                    Some(e) => tab.retain_in::<&[u8], _>(p.as_slice()..e.as_slice(), |_, _| false),
                    None => tab.retain_in::<&[u8], _>(p.as_slice().., |_, _| false),
                }?;
            }
        }
    }
    Ok(())
}

/// What [`MetaStore::apply`] refuses: a write of the store's own `system/journal_seq`, or
/// more than [`MAX_APPLY_BYTES`] at once.
fn check_ops(ops: &[Op]) -> Result<(), CoreError> {
    if ops
        .iter()
        .any(|op| matches!(op, Op::Put(t, k, _) if state::is_reserved(*t, k)))
    {
        return Err(CoreError::InvalidArgument(
            "system/journal_seq is written by the metadata store only".into(),
        ));
    }
    if ops_len(ops) > MAX_APPLY_BYTES {
        return Err(CoreError::InvalidArgument(format!(
            "metadata operations larger than {MAX_APPLY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Sets `system/journal_seq`.
pub(crate) fn put_seq(w: &WriteTransaction, seq: u64) -> Result<(), redb::Error> {
    w.open_table(Table::System.def())?
        .insert(JOURNAL_SEQ_KEY, &seq.to_le_bytes()[..])?;
    Ok(())
}

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    dir: PathBuf,
    /// `None` after a failed append or compaction: redb may hold a commit the journal
    /// lacks, so the journal is rewritten before the next commit.
    journal: Option<journal::Journal>,
    durable: bool,
    /// Seq of the last commit.
    seq: u64,
    /// Reused frame buffer.
    frame: Vec<u8>,
}

impl Writer {
    /// Commits until the channel closes; returns where it ended when both copies are at
    /// the same seq and synced (the seal's content), None otherwise.
    fn run(mut self, rx: Receiver<Req>) -> Option<seal::Ended> {
        let mut pending = None;
        loop {
            let Some(first) = pending.take().or_else(|| rx.recv().ok()) else {
                break;
            };
            let mut batch: Vec<(Vec<Op>, MetaDone)> = Vec::new();
            let mut compacts: Vec<MetaDone> = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(req) = next.take() {
                let req = match req {
                    Req::Packed(b, d) => match packed_ops::unpack(&b).and_then(|ops| {
                        check_ops(&ops)?;
                        Ok(ops)
                    }) {
                        Ok(ops) => Req::Ops(ops, d),
                        Err(e) => {
                            d(Err(e));
                            next = rx.try_recv().ok();
                            continue;
                        }
                    },
                    r => r,
                };
                match req {
                    Req::Compact(d) => compacts.push(d),
                    Req::Packed(..) => unreachable!("unpacked above"),
                    Req::Ops(ops, d) => {
                        let n = ops_len(&ops);
                        if !batch.is_empty() && bytes + n > BATCH_BYTES {
                            pending = Some(Req::Ops(ops, d));
                            break;
                        }
                        bytes += n;
                        batch.push((ops, d));
                    }
                }
                if batch.len() < BATCH_CALLERS {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                let r = self.commit(&batch);
                for (_, done) in batch {
                    done(r.clone());
                }
            }
            let wants = self
                .journal
                .as_ref()
                .is_some_and(journal::Journal::wants_compaction);
            if wants || !compacts.is_empty() {
                let r = self.compact();
                for done in compacts {
                    done(r.clone());
                }
            }
        }
        let synced = self.journal.as_ref().is_some_and(|j| j.sync().is_ok());
        let committed = self.durable || self.db.begin_write().is_ok_and(|w| w.commit().is_ok());
        let j = self.journal.as_ref()?;
        (synced && committed).then(|| seal::Ended {
            seq: self.seq,
            journal_len: j.len(),
            snapshot_len: j.base_len(),
        })
    }

    /// One group commit: redb, then the journal.
    fn commit(&mut self, batch: &[(Vec<Op>, MetaDone)]) -> Result<(), CoreError> {
        if self.journal.is_none() {
            self.compact()?;
        }
        let seq = self.seq + 1;
        self.frame.clear();
        journal::encode_commit(
            &mut self.frame,
            seq,
            batch.iter().flat_map(|(ops, _)| ops.iter()),
        );
        let mut w = self.db.begin_write().map_err(meta_err)?;
        w.set_durability(if self.durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| CoreError::Meta(e.to_string()))?;
        apply_to_txn(&w, batch.iter().flat_map(|(ops, _)| ops.iter())).map_err(meta_err)?;
        put_seq(&w, seq).map_err(meta_err)?;
        w.commit().map_err(meta_err)?;
        self.seq = seq;
        let j = self.journal.as_mut().expect("rewritten above");
        if let Err(e) = j.append(&self.frame, self.durable) {
            // redb holds the commit and the journal does not: replace the journal
            // from redb; if that works, the commit is in both copies after all.
            let err = CoreError::from_io(format!("append to {}", j.path().display()), &e);
            self.journal = None;
            return self.compact().map_err(|_| err);
        }
        Ok(())
    }

    /// Rewrites the journal from redb's current state.
    fn compact(&mut self) -> Result<(), CoreError> {
        let r = recovery::journal_from_db(&self.db, &self.dir, None).and_then(|len| {
            journal::Journal::open(&self.dir, len, len).map_err(|e| {
                CoreError::from_io(
                    format!("open {}", self.dir.join("meta.journal").display()),
                    &e,
                )
            })
        });
        match r {
            Ok(j) => {
                self.journal = Some(j);
                Ok(())
            }
            Err(e) => {
                // Whether or not the new file replaced the old one, the handle may no
                // longer be the journal: rewrite before the next commit.
                self.journal = None;
                Err(e)
            }
        }
    }
}
