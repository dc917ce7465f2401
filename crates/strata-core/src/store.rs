//! The embedded store of one data directory: the log and its metadata, opened together.
//!
//! Opening recovers both and reconciles them:
//! - the metadata opens first (rebuilt from its journal when `meta.redb` is damaged or
//!   gone, see [`crate::meta`]); its copy of the store's identity (`system/site_id`,
//!   `system/n_shards`) is what a missing or damaged `STORE` is written again from;
//! - the log opens (salvaging damaged segments, see [`crate::log`]);
//! - each shard's end is checked against the end last recorded in the metadata
//!   (`system/shard_ends`, recorded every second while it moves and at close): an end
//!   below it means records were lost with their files, and the shard is raised over them
//!   ([`Log::raise_end`]) so offsets handed out are never handed out again;
//! - every loss found — records of a shard, or metadata that could not be recovered — is
//!   kept in the metadata's `losses` table and reported by this open only if it is new:
//!   each loss is reported once.
//!
//! With [`OnCorruption::Refuse`], an open that would have to repair anything beyond the
//! leftovers of a crash (a torn tail, a missing index) refuses with
//! [`CoreError::Corrupt`] and changes nothing; [`Store::check`] is that inspection alone.
use crate::error::CoreError;
use crate::log::{Log, Loss, Manifest, Options, Recovery};
use crate::meta::{MetaRecovery, MetaStore, Op, Table};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What an open does with damage beyond a crash's leftovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorruption {
    /// Quarantine, salvage, rebuild, report (default).
    #[default]
    Recover,
    /// Refuse to open, changing nothing.
    Refuse,
}

impl std::str::FromStr for OnCorruption {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "recover" => Ok(OnCorruption::Recover),
            "refuse" => Ok(OnCorruption::Refuse),
            _ => Err(CoreError::InvalidArgument(format!(
                "on_corruption {s:?}: expected recover or refuse"
            ))),
        }
    }
}

/// A loss as kept in the `losses` table: records of a shard (`shard` Some), or metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossRecord {
    /// Shard whose records are gone; None: metadata (sessions, subscriptions, retained…).
    pub shard: Option<u32>,
    /// First offset gone (0 for metadata).
    pub from: u64,
    /// One past the last offset gone, when known.
    pub to: Option<u64>,
    /// The file or directory concerned.
    pub file: String,
    /// What happened.
    pub reason: String,
    /// When it was found (ms since the epoch).
    pub found_ms: u64,
}

impl LossRecord {
    fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(10);
        k.extend_from_slice(&self.shard.map_or(u16::MAX, |s| s as u16).to_be_bytes());
        k.extend_from_slice(&self.from.to_be_bytes());
        k
    }

    /// The table's value: one JSON object.
    pub fn to_json(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        format!(
            "{{\"shard\":{},\"from\":{},\"to\":{},\"records\":{},\"file\":{},\"reason\":{},\"foundMs\":{}}}",
            opt(self.shard.map(u64::from)),
            self.from,
            opt(self.to),
            opt(self.to.map(|t| t.saturating_sub(self.from))),
            json_str(&self.file),
            json_str(&self.reason),
            self.found_ms
        )
    }

    fn of(l: &Loss, now: u64) -> LossRecord {
        LossRecord {
            shard: Some(l.shard),
            from: l.from,
            to: l.to,
            file: l.file.clone(),
            reason: l.reason.clone(),
            found_ms: now,
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What opening (or checking) found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// The log's recovery.
    pub log: Recovery,
    /// The metadata's recovery.
    pub meta: MetaRecovery,
    /// Losses found by this open that no earlier open reported (also in the `losses`
    /// table). For a check: every loss it finds.
    pub losses: Vec<LossRecord>,
}

impl OpenReport {
    /// True when there is damage beyond a crash's leftovers (losses recorded by an earlier
    /// open are not: they were repaired and reported then).
    pub fn damaged(&self) -> bool {
        !self.log.quarantined.is_empty()
            || self.log.manifest.is_some()
            || !self.losses.is_empty()
            || self.meta.rebuilt
            || self.meta.lost.is_some()
            || !self.meta.quarantined.is_empty()
    }

    /// One line per thing found, for an error or a report.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.log.manifest.iter().cloned());
        out.extend(self.meta.lost.iter().map(|l| format!("metadata lost: {l}")));
        out.extend(self.meta.quarantined.iter().cloned());
        out.extend(self.log.quarantined.iter().cloned());
        for l in &self.losses {
            out.push(match (l.shard, l.to) {
                (Some(s), Some(t)) => format!(
                    "shard {s}: offsets {}..{t} lost ({} records): {} ({})",
                    l.from,
                    t - l.from,
                    l.reason,
                    l.file
                ),
                (Some(s), None) => format!(
                    "shard {s}: records from offset {} lost: {} ({})",
                    l.from, l.reason, l.file
                ),
                (None, _) => format!("metadata: {} ({})", l.reason, l.file),
            });
        }
        out
    }
}

const SITE_ID: &[u8] = b"site_id";
const N_SHARDS: &[u8] = b"n_shards";
const SHARD_ENDS: &[u8] = b"shard_ends";
/// How often moving shard ends are recorded.
const ENDS_EVERY: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    crate::log::now_ms()
}

/// The embedded store: log + metadata, reconciled (see the module doc).
pub struct Store {
    /// The message log.
    pub log: Arc<Log>,
    /// The metadata.
    pub meta: Arc<MetaStore>,
    report: OpenReport,
    ends: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.log.dir())
            .finish()
    }
}

fn identity(site: Option<Vec<u8>>, n: Option<Vec<u8>>) -> Option<Manifest> {
    match (site, n) {
        (Some(site), Some(n)) if n.len() == 4 => Some(Manifest {
            n_shards: u32::from_be_bytes(n[..4].try_into().expect("4 bytes")),
            site_id: String::from_utf8_lossy(&site).into_owned(),
        }),
        _ => None,
    }
}

fn known_identity(meta: &MetaStore) -> Result<Option<Manifest>, CoreError> {
    Ok(identity(
        meta.get(Table::System, SITE_ID)?,
        meta.get(Table::System, N_SHARDS)?,
    ))
}

fn decode_ends(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn recorded_ends(meta: &MetaStore) -> Result<Vec<u64>, CoreError> {
    Ok(meta
        .get(Table::System, SHARD_ENDS)?
        .map(|b| decode_ends(&b))
        .unwrap_or_default())
}

fn ends_value(log: &Log) -> Vec<u8> {
    let mut v = Vec::with_capacity(log.n_shards() as usize * 8);
    for s in 0..log.n_shards() {
        v.extend_from_slice(&log.shard_end(s).unwrap_or(0).to_be_bytes());
    }
    v
}

/// Losses from the log's recovery, each open end completed with the recorded end.
fn shard_losses(rec: &Recovery, recorded: &[u64], now: u64) -> Vec<LossRecord> {
    rec.losses
        .iter()
        .map(|l| {
            let mut r = LossRecord::of(l, now);
            if r.to.is_none() {
                r.to = recorded
                    .get(l.shard as usize)
                    .copied()
                    .filter(|e| *e > l.from);
            }
            r
        })
        .collect()
}

/// Records `end..floor` of shard `s`: below where its end had been recorded.
fn tail_loss(dir: &Path, s: u32, end: u64, floor: u64, now: u64) -> LossRecord {
    LossRecord {
        shard: Some(s),
        from: end,
        to: Some(floor),
        file: dir.join(format!("shard-{s:04}")).display().to_string(),
        reason: "the shard ends below where its end had been recorded: its last records (files) are gone".into(),
        found_ms: now,
    }
}

/// True when a loss of shard `s` already reaches `floor`.
fn covered(found: &[LossRecord], s: u32, floor: u64) -> bool {
    found
        .iter()
        .any(|l| l.shard == Some(s) && l.to.is_some_and(|t| t >= floor))
}

fn meta_loss(m: &MetaRecovery, dir: &Path, now: u64) -> Option<LossRecord> {
    m.lost.as_ref().map(|why| LossRecord {
        shard: None,
        from: now,
        to: None,
        file: dir.join("meta.redb").display().to_string(),
        reason: why.clone(),
        found_ms: now,
    })
}

impl Store {
    /// Opens (recovering, reconciling) or creates the store in `dir`. `meta_durable`:
    /// durable metadata commits.
    pub fn open(
        dir: impl AsRef<Path>,
        opts: Options,
        meta_durable: bool,
        on_corruption: OnCorruption,
    ) -> Result<Store, CoreError> {
        let dir = dir.as_ref().to_path_buf();
        if on_corruption == OnCorruption::Refuse && dir.is_dir() {
            let report = Self::check(&dir, opts.clone())?;
            if report.damaged() {
                return Err(CoreError::Corrupt(format!(
                    "{} needs repair (durable_storage.on_corruption = refuse; see `stratamq ds check`): {}",
                    dir.display(),
                    report.summary().join("; ")
                )));
            }
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| CoreError::from_io(format!("create data dir {}", dir.display()), &e))?;
        let (meta, meta_rec) = MetaStore::open(&dir, meta_durable)?;
        let known = known_identity(&meta)?;
        let log = Log::open_with(&dir, opts, known.as_ref())?;
        match &known {
            Some(k) if k.site_id != log.site_id() => {
                return Err(CoreError::ConfigMismatch(format!(
                    "metadata belongs to site {}, the log to {}",
                    k.site_id,
                    log.site_id()
                )))
            }
            Some(_) => {}
            None => meta.apply_blocking(vec![
                Op::Put(
                    Table::System,
                    SITE_ID.to_vec(),
                    log.site_id().as_bytes().to_vec(),
                ),
                Op::Put(
                    Table::System,
                    N_SHARDS.to_vec(),
                    log.n_shards().to_be_bytes().to_vec(),
                ),
            ])?,
        }
        let now = now_ms();
        let recorded = recorded_ends(&meta)?;
        let mut found = shard_losses(log.recovery(), &recorded, now);
        for (s, floor) in recorded.iter().enumerate().take(log.n_shards() as usize) {
            let end = log.shard_end(s as u32)?;
            if end < *floor && log.raise_end(s as u32, *floor)? {
                let s = s as u32;
                if !covered(&found, s, *floor) {
                    found.push(tail_loss(&dir, s, end, *floor, now));
                }
            }
        }
        found.extend(meta_loss(&meta_rec, &dir, now));
        let meta = Arc::new(meta);
        let losses = record_new(&meta, found)?;
        let log = Arc::new(log);
        let store = Store {
            report: OpenReport {
                log: log.recovery().clone(),
                meta: meta_rec,
                losses,
            },
            ends: Mutex::new(Some(spawn_ends(log.clone(), meta.clone())?)),
            log,
            meta,
        };
        Ok(store)
    }

    /// What opening the store in `dir` would find and repair, changing nothing (see
    /// [`Log::check`] and [`MetaStore::check`]). `losses` holds every loss found.
    pub fn check(dir: impl AsRef<Path>, opts: Options) -> Result<OpenReport, CoreError> {
        let dir = dir.as_ref();
        let (meta, contents) = MetaStore::check_contents(dir, &[Table::System, Table::Losses])?;
        let (system, reported) = match contents {
            Some(mut c) => (c.remove(0), c.remove(0)),
            None => (Vec::new(), Vec::new()),
        };
        let value = |k: &[u8]| {
            system
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let known = identity(value(SITE_ID), value(N_SHARDS));
        let recorded = value(SHARD_ENDS)
            .as_deref()
            .map(decode_ends)
            .unwrap_or_default();
        // Every record of every segment is verified: sealed segments too, which an open
        // trusts through their index (and verifies as they are read).
        let opts = Options {
            verify_on_open: true,
            ..opts
        };
        let log = Log::check(dir, opts, known.as_ref())?;
        let now = now_ms();
        let mut losses = shard_losses(&log, &recorded, now);
        for &(s, end) in &log.shard_ends {
            if let Some(floor) = recorded.get(s as usize).copied().filter(|f| *f > end) {
                if !covered(&losses, s, floor) {
                    losses.push(tail_loss(dir, s, end, floor, now));
                }
            }
        }
        losses.extend(meta_loss(&meta, dir, now));
        // Losses an earlier open recorded (and reported) are not damage still to repair.
        losses.retain(|l| !reported.iter().any(|(k, _)| *k == l.key()));
        Ok(OpenReport { log, meta, losses })
    }

    /// What this open found.
    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    /// Losses found while running (damaged sealed segments salvaged when read) not
    /// reported before; recorded in the `losses` table.
    pub fn take_losses(&self) -> Result<Vec<LossRecord>, CoreError> {
        let now = now_ms();
        let found = self
            .log
            .take_losses()
            .iter()
            .map(|l| LossRecord::of(l, now))
            .collect();
        record_new(&self.meta, found)
    }

    /// [`Log::raise_end`] for a floor known from elsewhere (the offsets persistent sessions
    /// name): the offsets skipped are recorded as lost, with `reason`. The new loss, if the
    /// end moved and the loss was not recorded before.
    pub fn raise_end(
        &self,
        shard: u32,
        floor: u64,
        reason: &str,
    ) -> Result<Option<LossRecord>, CoreError> {
        let end = self.log.shard_end(shard)?;
        if !self.log.raise_end(shard, floor)? {
            return Ok(None);
        }
        let loss = LossRecord {
            shard: Some(shard),
            from: end,
            to: Some(floor),
            file: self
                .log
                .dir()
                .join(format!("shard-{shard:04}"))
                .display()
                .to_string(),
            reason: reason.to_string(),
            found_ms: now_ms(),
        };
        Ok(record_new(&self.meta, vec![loss])?.pop())
    }

    /// Every loss recorded in this store (the `losses` table's JSON values), by shard and
    /// offset, metadata last.
    pub fn losses(&self) -> Result<Vec<String>, CoreError> {
        Ok(self
            .meta
            .scan(Table::Losses, &[], None, usize::MAX)?
            .into_iter()
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect())
    }

    /// Stops the end recorder, closes the log, records the final ends, closes the metadata.
    pub fn close(&self) {
        if let Some((tx, t)) = self.ends.lock().unwrap_or_else(|p| p.into_inner()).take() {
            drop(tx);
            let _ = t.join();
        }
        let was_open = !self.log.is_closed();
        let ends = ends_value(&self.log);
        self.log.close();
        if was_open {
            let _ =
                self.meta
                    .apply_blocking(vec![Op::Put(Table::System, SHARD_ENDS.to_vec(), ends)]);
        }
        self.meta.close();
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.log.dir().to_path_buf()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Keeps the losses not already in the `losses` table, and records them there.
fn record_new(meta: &MetaStore, found: Vec<LossRecord>) -> Result<Vec<LossRecord>, CoreError> {
    let mut new = Vec::new();
    let mut ops = Vec::new();
    for l in found {
        let key = l.key();
        if meta.get(Table::Losses, &key)?.is_some()
            || ops
                .iter()
                .any(|o| matches!(o, Op::Put(_, k, _) if *k == key))
        {
            continue;
        }
        ops.push(Op::Put(Table::Losses, key, l.to_json().into_bytes()));
        new.push(l);
    }
    if !ops.is_empty() {
        meta.apply_blocking(ops)?;
    }
    Ok(new)
}

/// A thread recording each shard's end in the metadata every second while it moves.
fn spawn_ends(
    log: Arc<Log>,
    meta: Arc<MetaStore>,
) -> Result<(Sender<()>, JoinHandle<()>), CoreError> {
    let (tx, rx) = mpsc::channel::<()>();
    let t = std::thread::Builder::new()
        .name("strata-ends".into())
        .spawn(move || {
            crate::sched::background_thread();
            let mut last = Vec::new();
            loop {
                match rx.recv_timeout(ENDS_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if log.is_closed() {
                    return;
                }
                let ends = ends_value(&log);
                if ends != last {
                    last = ends.clone();
                    meta.apply(
                        vec![Op::Put(Table::System, SHARD_ENDS.to_vec(), ends)],
                        Box::new(|_| {}),
                    );
                }
            }
        })
        .map_err(|e| CoreError::from_io("spawn shard end recorder", &e))?;
    Ok((tx, t))
}
