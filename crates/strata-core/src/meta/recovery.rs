//! Opening the metadata store: examine `meta.redb` and `meta.journal`, decide what
//! to keep, rebuild or quarantine ([`examine`]), then do it ([`execute`]).
//!
//! Examining never writes to the directory: `meta.redb` is opened through
//! [`Overlay`], a redb storage backend that reads the file and keeps every write redb
//! makes (crash repair, the integrity check, replayed journal frames) in memory. So
//! [`super::MetaStore::check`] reports exactly what `open` would do, and a file that
//! gets quarantined is renamed exactly as it was found.
use super::journal::{self, Found, Scan, SnapshotWriter, Tail};
use super::state::{is_reserved, State};
use super::{MetaRecovery, Table, JOURNAL_SEQ_KEY};
use crate::error::CoreError;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition,
    TableError,
};
use std::collections::hash_map::{Entry, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// File name of the redb database inside the data directory.
pub(crate) const REDB_FILE: &str = "meta.redb";
/// File name a rebuilt database is written to before it becomes `meta.redb`.
pub(crate) const REDB_TMP: &str = "meta.redb.tmp";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Opens table `t` for reading, under its legacy name in a store not migrated yet (see
/// [`Table::legacy_name`]); None when neither exists.
fn open_read(r: &redb::ReadTransaction, t: Table) -> Result<Option<ReadTable>, TableError> {
    match r.open_table(def(t)) {
        Ok(x) => return Ok(Some(x)),
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e),
    }
    let Some(old) = t.legacy_name() else {
        return Ok(None);
    };
    match r.open_table(TableDefinition::<&[u8], &[u8]>::new(old)) {
        Ok(x) => Ok(Some(x)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Renames the tables of a store written before they were renamed (`acks` → `progress`,
/// `cursors` → `inbound_qos2`), in `w`. When both names exist (a store opened by an older
/// version after it was migrated), the legacy table's entries are copied over the new one's.
/// The journal names tables by id, so it needs no change.
fn migrate_names(w: &redb::WriteTransaction) -> Result<(), redb::Error> {
    for t in Table::ALL {
        let Some(old) = t.legacy_name() else {
            continue;
        };
        let old_def = TableDefinition::<&[u8], &[u8]>::new(old);
        let exists = w.list_tables()?.any(|h| redb::TableHandle::name(&h) == old);
        if !exists {
            continue;
        }
        let new_exists = w
            .list_tables()?
            .any(|h| redb::TableHandle::name(&h) == t.name());
        if !new_exists {
            w.rename_table(old_def, def(t))?;
            continue;
        }
        {
            let from = w.open_table(old_def)?;
            let mut to = w.open_table(def(t))?;
            for item in from.iter()? {
                let (k, v) = item?;
                to.insert(k.value(), v.value())?;
            }
        }
        w.delete_table(old_def)?;
    }
    Ok(())
}

/// Why an operation on `meta.redb` failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The file is damaged (redb reported corruption, invalid data, or panicked).
    Damaged(String),
    /// Anything else (I/O error, lock held): an error of `open`, not a reason to
    /// quarantine the file.
    Fail(CoreError),
}

/// Sorts a redb error into damage and other failures.
pub(crate) fn classify(e: impl Into<redb::Error>) -> Fault {
    match e.into() {
        redb::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            Fault::Damaged(io.to_string())
        }
        redb::Error::Io(io) => Fault::Fail(CoreError::from_io(REDB_FILE, &io)),
        redb::Error::DatabaseAlreadyOpen => Fault::Fail(CoreError::StoreLocked(
            "metadata store is open elsewhere".into(),
        )),
        e @ (redb::Error::PreviousIo | redb::Error::DatabaseClosed) => {
            Fault::Fail(CoreError::Meta(e.to_string()))
        }
        other => Fault::Damaged(other.to_string()),
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`, turning a panic (redb panics on some damaged files) into damage.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, Fault>) -> Result<T, Fault> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Fault::Damaged(format!(
            "{what}: redb panicked: {}",
            panic_text(&*p)
        ))),
    }
}

/// Drops a database that may be damaged, catching a panic of its `Drop`.
fn drop_guarded(db: Database) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
}

const OVERLAY_PAGE: u64 = 4096;

/// A copy-on-write view of a file for redb: reads come from the file unless the
/// page was written, writes stay in memory. The file is opened read-only.
#[derive(Debug)]
struct Overlay {
    file: Mutex<File>,
    state: RwLock<OverlayState>,
}

#[derive(Debug)]
struct OverlayState {
    /// Current length as redb sees it.
    len: u64,
    /// Bytes of the file still visible (shrinking hides the rest for good).
    file_visible: u64,
    /// Pages written, by page number.
    pages: HashMap<u64, Box<[u8]>>,
}

impl Overlay {
    fn new(file: File) -> io::Result<Overlay> {
        let len = file.metadata()?.len();
        Ok(Overlay {
            file: Mutex::new(file),
            state: RwLock::new(OverlayState {
                len,
                file_visible: len,
                pages: HashMap::new(),
            }),
        })
    }

    /// Reads `out.len()` bytes at `pos` from the file, zeros past `visible`.
    fn read_file(&self, visible: u64, pos: u64, out: &mut [u8]) -> io::Result<()> {
        let n = visible.saturating_sub(pos).min(out.len() as u64) as usize;
        if n > 0 {
            let mut f = self.file.lock().map_err(|_| io::Error::other("poisoned"))?;
            f.seek(SeekFrom::Start(pos))?;
            f.read_exact(&mut out[..n])?;
        }
        out[n..].fill(0);
        Ok(())
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self
            .state
            .read()
            .map_err(|_| io::Error::other("poisoned"))?
            .len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let st = self
            .state
            .read()
            .map_err(|_| io::Error::other("poisoned"))?;
        if offset.saturating_add(out.len() as u64) > st.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {} bytes at {offset} past the end", out.len()),
            ));
        }
        let mut done = 0usize;
        while done < out.len() {
            let pos = offset + done as u64;
            let page = pos / OVERLAY_PAGE;
            let in_page = (pos % OVERLAY_PAGE) as usize;
            let n = (OVERLAY_PAGE as usize - in_page).min(out.len() - done);
            match st.pages.get(&page) {
                Some(p) => out[done..done + n].copy_from_slice(&p[in_page..in_page + n]),
                None => self.read_file(st.file_visible, pos, &mut out[done..done + n])?,
            }
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self
            .state
            .write()
            .map_err(|_| io::Error::other("poisoned"))?;
        if len < st.len {
            st.file_visible = st.file_visible.min(len);
            st.pages.retain(|&p, _| p * OVERLAY_PAGE < len);
            let cut = (len % OVERLAY_PAGE) as usize;
            if let Some(p) = st.pages.get_mut(&(len / OVERLAY_PAGE)) {
                p[cut..].fill(0);
            }
        }
        st.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self
            .state
            .write()
            .map_err(|_| io::Error::other("poisoned"))?;
        if offset.saturating_add(data.len() as u64) > st.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end",
            ));
        }
        let visible = st.file_visible;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let page = pos / OVERLAY_PAGE;
            let in_page = (pos % OVERLAY_PAGE) as usize;
            let n = (OVERLAY_PAGE as usize - in_page).min(data.len() - done);
            let p = match st.pages.entry(page) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let mut buf = vec![0u8; OVERLAY_PAGE as usize].into_boxed_slice();
                    self.read_file(visible, page * OVERLAY_PAGE, &mut buf)?;
                    e.insert(buf)
                }
            };
            p[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

/// Page cache of the open `meta.redb`. redb's default (1 GiB, 90% for reads) keeps every
/// page a start-up scan or a write touched resident for the life of the process: with a
/// million retained messages that is the whole table again beside the broker's own copy.
/// Lookups re-touch the interior pages, which this holds many times over; the tables are
/// otherwise read once at start and written in batches.
const CACHE_BYTES: usize = 16 << 20;

/// Opens `path` through an [`Overlay`]: the file is never written.
fn open_probe(path: &Path) -> Result<Database, Fault> {
    let file = File::open(path).map_err(|e| Fault::Fail(CoreError::from_io(REDB_FILE, &e)))?;
    let overlay = Overlay::new(file).map_err(|e| Fault::Fail(CoreError::from_io(REDB_FILE, &e)))?;
    guard("open", || {
        Database::builder()
            .set_cache_size(16 << 20)
            .create_with_backend(overlay)
            .map_err(classify)
    })
}

/// Reads `system/journal_seq` (`R`); `None` when the key is absent (a store written
/// before the journal existed, or a new file).
pub(crate) fn read_seq(db: &Database) -> Result<Option<u64>, Fault> {
    guard("read journal_seq", || {
        let r = db.begin_read().map_err(classify)?;
        let t = match r.open_table(def(Table::System)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(classify(e)),
        };
        let v = t.get(JOURNAL_SEQ_KEY).map_err(classify)?;
        match v {
            None => Ok(None),
            Some(v) => match <[u8; 8]>::try_from(v.value()) {
                Ok(b) => Ok(Some(u64::from_le_bytes(b))),
                Err(_) => Err(Fault::Damaged(format!(
                    "system/journal_seq holds {} bytes, not 8",
                    v.value().len()
                ))),
            },
        }
    })
}

/// How the content of `meta.redb` compares with the journal's state.
#[derive(Debug, Default)]
struct Diff {
    missing: u64,
    extra: u64,
    changed: u64,
    first: Option<String>,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.missing + self.extra + self.changed == 0
    }
    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(what());
        }
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} keys missing, {} extra, {} with another value (first: {})",
            self.missing,
            self.extra,
            self.changed,
            self.first.as_deref().unwrap_or("-")
        )
    }
}

fn show_key(t: Table, k: &[u8]) -> String {
    format!("{}/{}", t.name(), String::from_utf8_lossy(k).escape_debug())
}

/// Compares every table of `db` (but `system/journal_seq`) with `state`.
fn compare(db: &Database, state: &State) -> Result<Diff, Fault> {
    guard("compare with the journal", || {
        let r = db.begin_read().map_err(classify)?;
        let mut diff = Diff::default();
        for t in Table::ALL {
            let want = state.table(t);
            let mut want_it = want.iter().peekable();
            let table = open_read(&r, t).map_err(classify)?;
            if let Some(table) = table {
                for item in table.iter().map_err(classify)? {
                    let (k, v) = item.map_err(classify)?;
                    let (k, v) = (k.value(), v.value());
                    if is_reserved(t, k) {
                        continue;
                    }
                    while let Some((wk, _)) = want_it.next_if(|(wk, _)| wk.as_slice() < k) {
                        diff.missing += 1;
                        diff.note(|| format!("{} missing", show_key(t, wk)));
                    }
                    match want_it.next_if(|(wk, _)| wk.as_slice() == k) {
                        Some((_, wv)) if wv.as_slice() == v => {}
                        Some(_) => {
                            diff.changed += 1;
                            diff.note(|| format!("{} differs", show_key(t, k)));
                        }
                        None => {
                            diff.extra += 1;
                            diff.note(|| format!("{} not in the journal", show_key(t, k)));
                        }
                    }
                }
            }
            for (wk, _) in want_it {
                diff.missing += 1;
                diff.note(|| format!("{} missing", show_key(t, wk)));
            }
        }
        Ok(diff)
    })
}

/// Applies the journal's commit frames from `offset` to `end` onto `db` in one
/// transaction (`durable`: `Durability::Immediate`), ending at `system/journal_seq`
/// = the last frame's seq. Returns how many frames were applied.
fn catch_up(
    db: &Database,
    journal_path: &Path,
    offset: u64,
    end: u64,
    durable: bool,
) -> Result<u64, Fault> {
    guard("replay journal frames", || {
        let mut w = db.begin_write().map_err(classify)?;
        w.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| Fault::Fail(CoreError::Meta(e.to_string())))?;
        let mut n = 0;
        let mut last = None;
        let mut failed = None;
        journal::for_each_commit_from(journal_path, offset, end, |seq, ops| {
            if let Err(e) = super::apply_to_txn(&w, &ops) {
                failed = Some(e);
                return Err(CoreError::Meta("redb".into()));
            }
            n += 1;
            last = Some(seq);
            Ok(())
        })
        .map_err(|e| failed.take().map_or(Fault::Fail(e), classify))?;
        if let Some(seq) = last {
            super::put_seq(&w, seq).map_err(classify)?;
        }
        w.commit().map_err(classify)?;
        Ok(n)
    })
}

/// redb's own integrity check: verifies the checksums of every reachable page, falls
/// back to the previous commit if the last one is damaged, and rebuilds the allocator
/// state from the reachable pages, in place. `Ok(true)` when nothing needed repair.
///
/// `Ok(false)` is not always damage: after some sequences of `Durability::None`
/// commits redb leaves pages allocated that nothing references, which the check
/// reclaims.
fn integrity(db: &mut Database) -> Result<bool, Fault> {
    guard("integrity check", || db.check_integrity().map_err(classify))
}

/// Opens `path` through a probe, reads `R` and runs the integrity check.
fn probe_redb(path: &Path) -> Result<(Redb, Option<Database>), CoreError> {
    let mut db = match open_probe(path) {
        Ok(db) => db,
        Err(Fault::Fail(e)) => return Err(e),
        Err(Fault::Damaged(why)) => return Ok((Redb::Damaged(why), None)),
    };
    let checked = read_seq(&db).and_then(|before| {
        let clean = integrity(&mut db)?;
        let after = read_seq(&db)?;
        if before != after {
            return Err(Fault::Damaged(format!(
                "its last commit is damaged: redb's integrity check had to fall back from \
                 seq {} to seq {}",
                before.unwrap_or(0),
                after.unwrap_or(0)
            )));
        }
        Ok((after, clean))
    });
    match checked {
        Ok((seq, clean)) => Ok((
            Redb::Ok {
                seq: seq.unwrap_or(0),
                had_seq: seq.is_some(),
                repaired: !clean,
                verdict: Verdict::NoJournal,
            },
            Some(db),
        )),
        Err(f) => {
            drop_guarded(db);
            match f {
                Fault::Fail(e) => Err(e),
                Fault::Damaged(why) => Ok((Redb::Damaged(why), None)),
            }
        }
    }
}

/// What `meta.redb` turned out to be.
#[derive(Debug)]
enum Redb {
    Missing,
    Damaged(String),
    /// Readable and consistent; `seq` = `R` (0 when absent); `repaired`: redb's
    /// integrity check changed something, but not the last commit.
    Ok {
        seq: u64,
        had_seq: bool,
        repaired: bool,
        verdict: Verdict,
    },
}

/// `meta.redb` against a usable journal.
#[derive(Debug)]
enum Verdict {
    /// No usable journal to compare with.
    NoJournal,
    /// `R == J` and the same content.
    Matches,
    /// `R > J`: the journal lacks commits redb has.
    Ahead,
    /// `R < J`, and replaying the journal's frames after `R` gives its state.
    CatchUp { offset: u64, frames: u64 },
    /// `R < J` and the journal no longer holds the frames after `R` one by one.
    Behind,
    /// Same seq (or caught up) but another content.
    Differs(String),
}

/// Where the store's content comes from after open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Keep `meta.redb` (after replaying `catch_up` frames).
    Redb,
    /// A new `meta.redb` from the journal's state.
    Journal,
    /// A new, empty `meta.redb`.
    Empty,
}

/// What open does. Built by [`examine`], carried out by [`execute`].
#[derive(Debug)]
pub(crate) struct Plan {
    dir: PathBuf,
    stray: Vec<&'static str>,
    source: Source,
    catch_up: Option<(u64, u64)>,
    /// Run redb's integrity check on the kept `meta.redb` (the probe's needed one).
    repair_redb: bool,
    quarantine_redb: Option<String>,
    quarantine_journal: Option<String>,
    rewrite_journal: bool,
    fresh: bool,
    lost: Option<String>,
    events: Vec<String>,
    journal: Option<Box<Scan>>,
}

/// Whether `meta.lock` says a store was created in `dir` before.
fn initialized(dir: &Path) -> Result<bool, CoreError> {
    match fs::metadata(dir.join(super::LOCK_FILE)) {
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CoreError::from_io(super::LOCK_FILE, &e)),
    }
}

fn exists(p: &Path) -> Result<bool, CoreError> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CoreError::from_io(format!("stat {}", p.display()), &e)),
    }
}

/// Looks at `dir` without changing anything in it and decides what open does.
pub(crate) fn examine(dir: &Path) -> Result<Plan, CoreError> {
    let redb_path = dir.join(REDB_FILE);
    let journal_path = dir.join(journal::FILE);
    let mut plan = Plan::keep(dir, None);
    for name in [journal::TMP_FILE, REDB_TMP] {
        if exists(&dir.join(name))? {
            plan.stray.push(name);
            plan.events.push(format!(
                "{name}: left by an interrupted rewrite (the file it was to replace is \
                 complete); removed at open"
            ));
        }
    }

    // 1. meta.redb, through a probe that never writes to the file: opened (redb
    //    repairs after a crash), integrity-checked (repairs too), R read.
    let (mut redb, mut probe) = if exists(&redb_path)? {
        probe_redb(&redb_path)?
    } else {
        (Redb::Missing, None)
    };

    // 2. The journal.
    let after = match &redb {
        Redb::Ok { seq, .. } => Some(*seq),
        _ => None,
    };
    let found = journal::read(&journal_path, after)?;

    // 3. meta.redb's content (as redb's repairs left it) against the journal's.
    if let (
        Some(db),
        Redb::Ok {
            seq: r, verdict, ..
        },
    ) = (probe.as_mut(), &mut redb)
    {
        let checked = match &found {
            Found::Usable(scan) if *r == scan.seq => compare(db, &scan.state).map(|d| {
                if d.is_empty() {
                    Verdict::Matches
                } else {
                    Verdict::Differs(d.to_string())
                }
            }),
            Found::Usable(scan) if *r > scan.seq => Ok(Verdict::Ahead),
            Found::Usable(scan) => match scan.resume {
                None => Ok(Verdict::Behind),
                Some(offset) => {
                    catch_up(db, &journal_path, offset, scan.valid_len, true).and_then(|frames| {
                        compare(db, &scan.state).map(|d| {
                            if d.is_empty() {
                                Verdict::CatchUp { offset, frames }
                            } else {
                                Verdict::Differs(format!(
                                    "after replaying the journal's last {frames} commits: {d}"
                                ))
                            }
                        })
                    })
                }
            },
            _ => Ok(Verdict::NoJournal),
        };
        match checked {
            Ok(v) => *verdict = v,
            Err(Fault::Fail(e)) => {
                if let Some(db) = probe.take() {
                    drop_guarded(db);
                }
                return Err(e);
            }
            Err(Fault::Damaged(why)) => redb = Redb::Damaged(why),
        }
    }
    if let Some(db) = probe.take() {
        drop_guarded(db);
    }

    decide(&mut plan, redb, found, initialized(dir)?);
    Ok(plan)
}

/// The plan for a directory whose last clean close sealed it ([`super::seal`]) and whose
/// files match the seal: keep both as they are. None when the seal is missing or does
/// not match, or an interrupted rewrite left a file behind: then [`examine`].
pub(crate) fn sealed(dir: &Path) -> Result<Option<Plan>, CoreError> {
    for name in [journal::TMP_FILE, REDB_TMP] {
        if exists(&dir.join(name))? {
            return Ok(None);
        }
    }
    let io = |e: &io::Error| CoreError::from_io(format!("read {}", super::seal::FILE), e);
    let Some(end) = super::seal::verify(dir).map_err(|e| io(&e))? else {
        return Ok(None);
    };
    // Where the journal ends and its snapshot's size; its state is not read.
    let journal = Scan {
        state: State::default(),
        seq: end.seq,
        snapshot_len: end.snapshot_len,
        valid_len: end.journal_len,
        resume: None,
        tail: Tail::Clean,
    };
    Ok(Some(Plan::keep(dir, Some(Box::new(journal)))))
}

fn decide(plan: &mut Plan, redb: Redb, found: Found, initialized: bool) {
    let ev = &mut plan.events;
    // The journal's bytes past its valid frames, and how a kept journal ends.
    let tail = match &found {
        Found::Usable(scan) => scan.tail.clone(),
        _ => Tail::Clean,
    };
    match (&redb, &found) {
        (Redb::Missing, Found::Missing) => {
            plan.source = Source::Empty;
            plan.rewrite_journal = true;
            if initialized {
                plan.lost = Some(
                    "meta.redb and meta.journal are both missing from a directory that held a \
                     metadata store (meta.lock says so): every session, subscription and \
                     retained message is gone; starting empty"
                        .into(),
                );
            } else {
                plan.fresh = true;
            }
        }
        (Redb::Missing, Found::Unusable(j)) => {
            plan.source = Source::Empty;
            plan.quarantine_journal = Some(j.clone());
            plan.rewrite_journal = true;
            plan.lost = Some(format!(
                "meta.redb is missing and meta.journal is unusable ({j}): starting empty"
            ));
        }
        (Redb::Damaged(w), Found::Missing) => {
            plan.source = Source::Empty;
            plan.quarantine_redb = Some(w.clone());
            plan.rewrite_journal = true;
            plan.lost = Some(format!(
                "meta.redb is damaged ({w}) and there is no meta.journal: starting empty"
            ));
        }
        (Redb::Damaged(w), Found::Unusable(j)) => {
            plan.source = Source::Empty;
            plan.quarantine_redb = Some(w.clone());
            plan.quarantine_journal = Some(j.clone());
            plan.rewrite_journal = true;
            plan.lost = Some(format!(
                "meta.redb is damaged ({w}) and meta.journal is unusable ({j}): starting empty"
            ));
        }
        (Redb::Missing | Redb::Damaged(_), Found::Usable(scan)) => {
            plan.source = Source::Journal;
            match &redb {
                Redb::Damaged(w) => {
                    plan.quarantine_redb = Some(w.clone());
                    ev.push(format!(
                        "meta.redb is damaged ({w}): rebuilt from meta.journal (seq {}, {} keys)",
                        scan.seq,
                        scan.state.len()
                    ));
                }
                _ => ev.push(format!(
                    "meta.redb is missing: rebuilt from meta.journal (seq {}, {} keys)",
                    scan.seq,
                    scan.state.len()
                )),
            }
            if let Tail::Damaged { why, .. } = &tail {
                plan.lost = Some(format!(
                    "meta.journal is damaged after seq {} ({why}) and meta.redb cannot vouch \
                     for what followed: commits after seq {}, if there were any, are lost",
                    scan.seq, scan.seq
                ));
            }
        }
        (
            Redb::Ok {
                seq: r, had_seq, ..
            },
            Found::Missing,
        ) => {
            plan.rewrite_journal = true;
            ev.push(if *had_seq {
                format!("meta.journal is missing: written anew from meta.redb (seq {r})")
            } else {
                "meta.journal is missing (a store from before the journal): written from meta.redb"
                    .to_string()
            });
        }
        (Redb::Ok { seq: r, .. }, Found::Unusable(j)) => {
            plan.rewrite_journal = true;
            plan.quarantine_journal = Some(j.clone());
            ev.push(format!(
                "meta.journal is unusable ({j}): written anew from meta.redb (seq {r})"
            ));
        }
        (
            Redb::Ok {
                seq: r, verdict, ..
            },
            Found::Usable(scan),
        ) => match verdict {
            Verdict::Matches => {}
            Verdict::NoJournal => unreachable!("a usable journal was compared"),
            Verdict::Ahead => {
                plan.rewrite_journal = true;
                ev.push(if tail == Tail::Clean {
                    format!(
                        "meta.journal is {} commit(s) behind meta.redb (seq {} < {r}: the \
                         process stopped between a metadata commit and its journal write, \
                         before anyone was told of it): written anew from meta.redb",
                        r - scan.seq,
                        scan.seq
                    )
                } else {
                    format!(
                        "meta.journal's valid frames end at seq {}, meta.redb is at seq {r}: \
                         written anew from meta.redb",
                        scan.seq
                    )
                });
            }
            Verdict::CatchUp { offset, frames } => {
                plan.catch_up = Some((*offset, scan.valid_len));
                ev.push(format!(
                    "meta.redb is {frames} commit(s) behind meta.journal (seq {r} < {}: commits \
                     not yet made durable when the process stopped): replayed them from the \
                     journal",
                    scan.seq
                ));
            }
            Verdict::Behind => {
                plan.source = Source::Journal;
                let why = format!(
                    "{} commit(s) behind meta.journal (seq {r} < {}), which no longer holds \
                     them one by one",
                    scan.seq - r,
                    scan.seq
                );
                ev.push(format!(
                    "meta.redb is {why}: rebuilt from meta.journal ({} keys)",
                    scan.state.len()
                ));
                plan.quarantine_redb = Some(why);
            }
            Verdict::Differs(d) => {
                plan.source = Source::Journal;
                let why = format!("content differs from meta.journal at seq {}: {d}", scan.seq);
                ev.push(format!(
                    "meta.redb's {why}; rebuilt from meta.journal ({} keys)",
                    scan.state.len()
                ));
                plan.quarantine_redb = Some(why);
            }
        },
    }
    if let Redb::Ok { repaired: true, .. } = redb {
        if plan.source == Source::Redb {
            plan.repair_redb = true;
            plan.events.push(
                "meta.redb: redb's integrity check reclaims pages nothing references (left by \
                 non-durable commits) or rebuilds its allocator state; no commit is lost"
                    .into(),
            );
        }
    }
    // A journal with bytes past its valid frames is kept aside and replaced.
    match &tail {
        Tail::Clean => {}
        Tail::Torn { bytes } => {
            let why = format!(
                "ends in {bytes} bytes of an incomplete frame (what a crash while appending \
                 leaves)"
            );
            plan.events.push(format!("meta.journal {why}: cut"));
            plan.quarantine_journal = Some(why);
            plan.rewrite_journal = true;
        }
        Tail::Damaged { bytes, why } => {
            let why = format!("{bytes} damaged bytes after its last valid frame: {why}");
            plan.events.push(format!("meta.journal has {why}"));
            plan.quarantine_journal = Some(why);
            plan.rewrite_journal = true;
        }
    }
    plan.journal = match found {
        Found::Usable(scan) => Some(scan),
        _ => None,
    };
}

impl Plan {
    /// Keep `meta.redb` (and `journal`, when given) as they are, nothing else: what
    /// [`examine`] starts from and what a matching seal gives.
    fn keep(dir: &Path, journal: Option<Box<Scan>>) -> Plan {
        Plan {
            dir: dir.to_path_buf(),
            stray: Vec::new(),
            source: Source::Redb,
            catch_up: None,
            repair_redb: false,
            quarantine_redb: None,
            quarantine_journal: None,
            rewrite_journal: false,
            fresh: false,
            lost: None,
            events: Vec::new(),
            journal,
        }
    }

    /// A table's entries as the journal holds them (None without a usable journal).
    pub(crate) fn journal_table(&self, table: Table) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        self.journal.as_ref().map(|j| {
            j.state
                .table(table)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// The report of what open would do (for [`super::MetaStore::check`]).
    pub(crate) fn report(&self) -> MetaRecovery {
        let mut quarantined = Vec::new();
        if let Some(w) = &self.quarantine_redb {
            quarantined.push(format!("{REDB_FILE}: {w} (open renames it aside)"));
        }
        if let Some(w) = &self.quarantine_journal {
            quarantined.push(format!("{}: {w} (open renames it aside)", journal::FILE));
        }
        self.recovery(quarantined)
    }

    fn recovery(&self, quarantined: Vec<String>) -> MetaRecovery {
        MetaRecovery {
            events: self.events.clone(),
            quarantined,
            rebuilt: self.source != Source::Redb && !self.fresh,
            journal_rewritten: self.rewrite_journal && !self.fresh,
            lost: self.lost.clone(),
        }
    }
}

/// A name `file.corrupt-<unix ms>` (with `.N` appended if taken) in `dir`.
fn quarantine_name(dir: &Path, file: &str) -> PathBuf {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let base = format!("{file}.corrupt-{ms}");
    let mut p = dir.join(&base);
    let mut n = 1;
    while p.exists() {
        p = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    p
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Creates `meta.redb.tmp` holding every table, `state` and `journal_seq = seq`
/// in one durable transaction, then renames it to `meta.redb`.
fn build_redb(dir: &Path, state: &State, seq: u64) -> Result<(), CoreError> {
    let tmp = dir.join(REDB_TMP);
    let io = |what: &str, e: &io::Error| CoreError::from_io(format!("{what} {}", tmp.display()), e);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io("remove", &e)),
        _ => {}
    }
    let fail = |f: Fault| match f {
        Fault::Fail(e) => e,
        Fault::Damaged(why) => CoreError::Meta(format!("building {}: {why}", tmp.display())),
    };
    let db = Database::create(&tmp).map_err(|e| fail(classify(e)))?;
    {
        let w = db.begin_write().map_err(|e| fail(classify(e)))?;
        for t in Table::ALL {
            let mut tab = w.open_table(def(t)).map_err(|e| fail(classify(e)))?;
            for (k, v) in state.table(t) {
                tab.insert(k.as_slice(), v.as_slice())
                    .map_err(|e| fail(classify(e)))?;
            }
        }
        super::put_seq(&w, seq).map_err(|e| fail(classify(e)))?;
        w.commit().map_err(|e| fail(classify(e)))?;
    }
    drop(db);
    fs::rename(&tmp, dir.join(REDB_FILE)).map_err(|e| io("rename", &e))?;
    journal::sync_dir(dir).map_err(|e| io("sync directory of", &e))
}

/// Writes a new journal from `db`'s current state (a snapshot at its
/// `system/journal_seq`), renaming the old journal to `quarantine` first when given.
/// Returns the new journal's length.
pub(crate) fn journal_from_db(
    db: &Database,
    dir: &Path,
    quarantine: Option<&Path>,
) -> Result<u64, CoreError> {
    let fail = |f: Fault| match f {
        Fault::Fail(e) => e,
        Fault::Damaged(why) => CoreError::Meta(format!("reading meta.redb: {why}")),
    };
    let io = |e: io::Error| CoreError::from_io(format!("write {}", journal::TMP_FILE), &e);
    let seq = read_seq(db).map_err(fail)?.unwrap_or(0);
    let r = db.begin_read().map_err(|e| fail(classify(e)))?;
    let mut w = SnapshotWriter::create(dir, seq).map_err(io)?;
    for t in Table::ALL {
        let tab = match open_read(&r, t) {
            Ok(Some(x)) => x,
            Ok(None) => continue,
            Err(e) => return Err(fail(classify(e))),
        };
        for item in tab.iter().map_err(|e| fail(classify(e)))? {
            let (k, v) = item.map_err(|e| fail(classify(e)))?;
            if !is_reserved(t, k.value()) {
                w.put(t, k.value(), v.value()).map_err(io)?;
            }
        }
    }
    w.install(quarantine).map_err(io)
}

/// What [`execute`] leaves open.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) db: Database,
    pub(crate) journal: journal::Journal,
    pub(crate) seq: u64,
    pub(crate) recovery: MetaRecovery,
}

/// Carries out `plan`.
pub(crate) fn execute(plan: Plan, durable: bool) -> Result<Opened, CoreError> {
    let dir = plan.dir.clone();
    let io = |what: String, e: &io::Error| CoreError::from_io(what, e);
    for name in &plan.stray {
        match fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io(format!("remove {name}"), &e))
            }
            _ => {}
        }
    }
    let mut quarantined = Vec::new();
    if let Some(why) = &plan.quarantine_redb {
        let q = quarantine_name(&dir, REDB_FILE);
        fs::rename(dir.join(REDB_FILE), &q).map_err(|e| io(format!("rename {REDB_FILE}"), &e))?;
        journal::sync_dir(&dir).map_err(|e| io("sync directory".into(), &e))?;
        quarantined.push(format!("{REDB_FILE} -> {}: {why}", file_name(&q)));
    }
    match plan.source {
        Source::Redb => {}
        Source::Journal => {
            let scan = plan.journal.as_ref().expect("a usable journal");
            build_redb(&dir, &scan.state, scan.seq)?;
        }
        Source::Empty => build_redb(&dir, &State::default(), 0)?,
    }
    let changed = |f: Fault| match f {
        Fault::Fail(e) => e,
        Fault::Damaged(why) => CoreError::Corrupt(format!(
            "{REDB_FILE} passed the check at open but then failed: {why}"
        )),
    };
    let mut db = guard("open", || {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join(REDB_FILE))
            .map_err(classify)
    })
    .map_err(changed)?;
    if plan.repair_redb {
        if let Err(f) = integrity(&mut db) {
            drop_guarded(db);
            return Err(changed(f));
        }
    }
    let ensured = guard("create tables", || {
        let w = db.begin_write().map_err(classify)?;
        migrate_names(&w).map_err(classify)?;
        for t in Table::ALL {
            w.open_table(def(t)).map_err(classify)?;
        }
        w.commit().map_err(classify)
    });
    let caught_up = match (ensured, plan.catch_up) {
        (Err(f), _) => Err(f),
        (Ok(()), Some((offset, end))) => {
            catch_up(&db, &dir.join(journal::FILE), offset, end, durable).map(|_| ())
        }
        (Ok(()), None) => Ok(()),
    };
    if let Err(f) = caught_up {
        drop_guarded(db);
        return Err(changed(f));
    }
    let journal = if plan.rewrite_journal {
        let q = plan
            .quarantine_journal
            .as_ref()
            .filter(|_| dir.join(journal::FILE).exists())
            .map(|why| (quarantine_name(&dir, journal::FILE), why));
        let len = journal_from_db(&db, &dir, q.as_ref().map(|(p, _)| p.as_path()))?;
        if let Some((p, why)) = &q {
            quarantined.push(format!("{} -> {}: {why}", journal::FILE, file_name(p)));
        }
        journal::Journal::open(&dir, len, len)
    } else {
        let scan = plan.journal.as_ref().expect("a kept journal is usable");
        journal::Journal::open(&dir, scan.valid_len, scan.snapshot_len)
    }
    .map_err(|e| io(format!("open {}", journal::FILE), &e))?;
    let seq = read_seq(&db).map_err(changed)?.unwrap_or(0);
    let recovery = plan.recovery(quarantined);
    Ok(Opened {
        db,
        journal,
        seq,
        recovery,
    })
}
