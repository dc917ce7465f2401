//! Durable metadata for persistent sessions: session records, subscriptions, per-stream
//! cursors, per-session ack state, retained messages and the site id.
//!
//! Backed by `redb` (a copy-on-write B-tree with checksummed, atomically committed
//! transactions) in `<data dir>/meta.redb`. Writes go through one writer thread that
//! **group-commits**: all operations queued while a commit is running are applied in
//! the next single transaction, so committing ack state per ack batch costs one shared
//! fsync, not one per caller.
//!
//! Invariants of [`MetaStore`]:
//! - A completed [`MetaStore::apply`] is durable (`Durability::Immediate`) when the
//!   store was opened with `durable = true`; its operations are applied atomically, in
//!   order, after every operation completed before it.
//! - Keys and values are opaque bytes; each [`Table`] is an ordered map, so prefix
//!   scans return keys in byte order.
//! - `system/site_id` always holds the log's site id.
use crate::error::CoreError;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The metadata tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Session records by client id.
    Sessions,
    /// Subscriptions, keyed e.g. `client id \0 filter`.
    Subscriptions,
    /// Per-stream cursors, keyed e.g. `client id \0 stream id`.
    Cursors,
    /// Per-session ack state (unacked packet ids, QoS 2 state).
    Acks,
    /// Retained messages by topic.
    Retained,
    /// Store-wide values (`site_id`).
    System,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 6] = [
        Table::Sessions,
        Table::Subscriptions,
        Table::Cursors,
        Table::Acks,
        Table::Retained,
        Table::System,
    ];

    /// Stable name (also the redb table name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Subscriptions => "subscriptions",
            Table::Cursors => "cursors",
            Table::Acks => "acks",
            Table::Retained => "retained",
            Table::System => "system",
        }
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
    /// Remove every key starting with the prefix (e.g. all of a session's cursors).
    DeletePrefix(Table, Vec<u8>),
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Completion of [`MetaStore::apply`].
pub type MetaDone = Box<dyn FnOnce(Result<(), CoreError>) + Send>;

struct Req(Vec<Op>, MetaDone);

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
    db: Arc<Database>,
    tx: Mutex<Option<Sender<Req>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    site_id: String,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("site_id", &self.site_id)
            .finish()
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

impl MetaStore {
    /// Opens or creates `path`, recording `site_id` on first open. `durable` selects
    /// `Durability::Immediate` commits (else commits are not synced).
    pub fn open(path: impl AsRef<Path>, site_id: &str, durable: bool) -> Result<Self, CoreError> {
        let db = Arc::new(Database::create(path.as_ref()).map_err(meta_err)?);
        {
            let w = db.begin_write().map_err(meta_err)?;
            for t in Table::ALL {
                w.open_table(t.def()).map_err(meta_err)?;
            }
            {
                let mut sys = w.open_table(Table::System.def()).map_err(meta_err)?;
                let existing = sys
                    .get(&b"site_id"[..])
                    .map_err(meta_err)?
                    .map(|v| v.value().to_vec());
                match existing {
                    Some(v) if v != site_id.as_bytes() => {
                        return Err(CoreError::ConfigMismatch(format!(
                            "metadata belongs to site {}, the log to {site_id}",
                            String::from_utf8_lossy(&v)
                        )))
                    }
                    Some(_) => {}
                    None => {
                        sys.insert(&b"site_id"[..], site_id.as_bytes())
                            .map_err(meta_err)?;
                    }
                }
            }
            w.commit().map_err(meta_err)?;
        }
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        let thread = std::thread::Builder::new()
            .name("strata-meta".into())
            .spawn(move || writer(wdb, rx, durable))
            .map_err(|e| CoreError::from_io("spawn metadata writer", &e))?;
        Ok(MetaStore {
            db,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            site_id: site_id.to_string(),
        })
    }

    /// The site id.
    pub fn site_id(&self) -> &str {
        &self.site_id
    }

    /// Queues `ops` for the next group commit; `done` runs once they are committed.
    pub fn apply(&self, ops: Vec<Op>, done: MetaDone) {
        let g = self.tx.lock().expect("poisoned");
        match g.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(Req(_, d))) = tx.send(Req(ops, done)) {
                    d(Err(CoreError::Closed("metadata store closed".into())));
                }
            }
            None => done(Err(CoreError::Closed("metadata store closed".into()))),
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

    /// Reads one value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, CoreError> {
        let r = self.db.begin_read().map_err(meta_err)?;
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
        let r = self.db.begin_read().map_err(meta_err)?;
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

    /// Stops the writer after draining queued operations.
    pub fn close(&self) {
        self.tx.lock().expect("poisoned").take();
        if let Some(t) = self.thread.lock().expect("poisoned").take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetaStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn apply_ops(db: &Database, reqs: &[Req], durable: bool) -> Result<(), CoreError> {
    let mut w = db.begin_write().map_err(meta_err)?;
    w.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })
    .map_err(|e| CoreError::Meta(e.to_string()))?;
    for Req(ops, _) in reqs {
        for op in ops {
            match op {
                Op::Put(t, k, v) => {
                    w.open_table(t.def())
                        .map_err(meta_err)?
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(meta_err)?;
                }
                Op::Delete(t, k) => {
                    w.open_table(t.def())
                        .map_err(meta_err)?
                        .remove(k.as_slice())
                        .map_err(meta_err)?;
                }
                Op::DeletePrefix(t, p) => {
                    let mut tab = w.open_table(t.def()).map_err(meta_err)?;
                    let end = prefix_end(p);
                    match end {
                        Some(e) => {
                            tab.retain_in::<&[u8], _>(p.as_slice()..e.as_slice(), |_, _| false)
                        }
                        None => tab.retain_in::<&[u8], _>(p.as_slice().., |_, _| false),
                    }
                    .map_err(meta_err)?;
                }
            }
        }
    }
    w.commit().map_err(meta_err)
}

fn writer(db: Arc<Database>, rx: Receiver<Req>, durable: bool) {
    while let Ok(first) = rx.recv() {
        let mut reqs = vec![first];
        while reqs.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => reqs.push(r),
                Err(_) => break,
            }
        }
        let r = apply_ops(&db, &reqs, durable);
        for Req(_, done) in reqs {
            done(r.clone());
        }
    }
}
