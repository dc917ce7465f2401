//! Opening the log: the data directory's lock, `STORE`, and every shard's recovery
//! (in parallel); [`Log::check`] reports what an open would repair, changing nothing.
use super::dispatch::Dispatcher;
use super::shard::Shard;
use super::{manifest, Log, Loss, Manifest, Options, Recovery};
use crate::error::CoreError;
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One shard opened (or not), with what its recovery did.
type ShardOpened = (Result<Shard, CoreError>, Recovery);

/// Opens (recovering) shards `0..n` on up to one thread per core: recovery scans each
/// shard's active segment record by record, and shards are independent. Results come back
/// in shard order, each with what its recovery did.
fn open_shards(dir: &Path, n: u32, opts: &Arc<Options>) -> Vec<ShardOpened> {
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(n as usize)
        .max(1);
    let next = AtomicU32::new(0);
    let slots: Vec<Mutex<Option<ShardOpened>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let mut rec = Recovery::default();
                let opened =
                    Shard::open(i, dir.join(format!("shard-{i:04}")), opts.clone(), &mut rec);
                *slots[i as usize].lock().unwrap_or_else(|p| p.into_inner()) = Some((opened, rec));
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every shard was opened")
        })
        .collect()
}

/// Takes the data directory's lock (`LOCK`, an advisory OS lock held for the life of the
/// returned file).
fn lock_dir(dir: &Path) -> Result<File, CoreError> {
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| CoreError::from_io(format!("open {}", lock_path.display()), &e))?;
    // `File::try_lock` is stable since 1.89; the toolchain is pinned to 1.95 in
    // rust-toolchain.toml, the workspace's rust-version (1.88) predates it.
    // A lock that is busy is retried for up to LOCK_WAIT: a process that forks
    // (any `Command` in this or another thread) briefly holds a copy of every open
    // descriptor until its `exec`, so a store closed a moment ago can still look
    // held. A real second opener still gets `StoreLocked` after the wait.
    let deadline = Instant::now() + LOCK_WAIT;
    #[allow(clippy::incompatible_msrv)]
    let locked = loop {
        match lock.try_lock() {
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(CoreError::StoreLocked(format!(
                "{} is in use by another process or handle",
                dir.display()
            )))
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(CoreError::from_io(
                format!("lock {}", lock_path.display()),
                &e,
            ))
        }
    }
    Ok(lock)
}

/// How long `Log::open` retries a busy data-directory lock before `StoreLocked`.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

impl Log {
    /// Opens (recovering) or creates the log in `dir`.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log, CoreError> {
        Self::open_with(dir, opts, None)
    }

    /// [`Log::open`], where `known` is the store's identity as recorded elsewhere (the
    /// metadata): what `STORE` is written from again when it is missing or damaged.
    pub fn open_with(
        dir: impl AsRef<Path>,
        opts: Options,
        known: Option<&Manifest>,
    ) -> Result<Log, CoreError> {
        let t0 = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| CoreError::from_io(format!("create data dir {}", dir.display()), &e))?;
        let lock = lock_dir(&dir)?;
        let (manifest, rebuilt) = manifest::resolve(&dir, opts.n_shards, known, false)?;
        let Manifest { n_shards, site_id } = manifest;
        if let Some(b) = opts.fsync_interval_zero() {
            return Err(b);
        }
        let opts = Arc::new(opts);
        let mut recovery = Recovery {
            manifest: rebuilt,
            ..Recovery::default()
        };
        let mut shards = Vec::with_capacity(n_shards as usize);
        let mut failed = None;
        for (opened, rec) in open_shards(&dir, n_shards, &opts) {
            recovery.absorb(rec);
            match opened {
                Ok(s) => shards.push(s),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        // One sender per shard, in shard order: a shard just opened has its writer.
        let started = match failed {
            Some(e) => Err(e),
            None => Dispatcher::start(
                shards
                    .iter()
                    .map(|s| s.sender().expect("a shard just opened has its writer"))
                    .collect(),
            ),
        };
        let dispatcher = match started {
            Ok(d) => d,
            Err(e) => {
                for s in &shards {
                    s.close();
                }
                return Err(e);
            }
        };
        recovery.elapsed_ms = t0.elapsed().as_millis() as u64;
        recovery.events.push(format!(
            "opened {} shards, {} segments, {} records in {} ms",
            n_shards, recovery.segments, recovery.records, recovery.elapsed_ms
        ));
        Ok(Log {
            dir,
            opts,
            shards,
            site_id,
            recovery,
            closed: AtomicBool::new(false),
            counts: super::counts::Counts::default(),
            dispatcher,
            _lock: lock,
        })
    }

    /// What opening the log in `dir` would find and repair — damaged or missing files,
    /// the records lost with them, a damaged `STORE` — changing nothing. The leftovers of
    /// a crash that recovery repairs silently (a torn tail, a missing index) are events.
    /// Takes the data directory's lock when there is one, so a store in use is refused
    /// ([`CoreError::StoreLocked`]).
    pub fn check(
        dir: impl AsRef<Path>,
        opts: Options,
        known: Option<&Manifest>,
    ) -> Result<Recovery, CoreError> {
        let t0 = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(CoreError::NotFound(format!(
                "no store in {}",
                dir.display()
            )));
        }
        let _lock = if dir.join("LOCK").exists() {
            Some(lock_dir(&dir)?)
        } else {
            None
        };
        let (m, rebuilt) = manifest::resolve(&dir, opts.n_shards, known, true)?;
        let opts = Arc::new(opts);
        let mut recovery = Recovery {
            manifest: rebuilt,
            check: true,
            ..Recovery::default()
        };
        for i in 0..m.n_shards {
            let shard_dir = dir.join(format!("shard-{i:04}"));
            let mut rec = Recovery {
                check: true,
                ..Recovery::default()
            };
            match Shard::open(i, shard_dir.clone(), opts.clone(), &mut rec) {
                Err(CoreError::Closed(_)) => {} // a check returns before starting the shard
                Err(CoreError::NotFound(_)) => rec.losses.push(Loss {
                    shard: i,
                    from: 0,
                    to: None,
                    file: shard_dir.display().to_string(),
                    reason: "shard directory missing".into(),
                }),
                Err(e) => return Err(e),
                Ok(s) => s.close(),
            }
            recovery.absorb(rec);
        }
        recovery.elapsed_ms = t0.elapsed().as_millis() as u64;
        Ok(recovery)
    }
}
