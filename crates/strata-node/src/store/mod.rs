//! `Store`: the durable log + metadata store, as a JS class. Conversion only: every
//! check and decision lives in `strata-core` (`strata_core::args` for the arguments).
//!
//! Modules, by concern: `dto` (the plain objects that cross, and their conversions),
//! `append` (appends), `read` (reads by position, session replay scans, waits), `replay`
//! (replay as PUBLISH packets), `meta` (the metadata tables); this file opens, checks,
//! reports on and closes the store.
//!
//! Errors go through the shared mapping in `crate::error`: every message is
//! `"<CODE>: <text>"` (e.g. `ERR_STORE_DISK_FULL: disk full: …`), so synchronous throws
//! ([`to_napi_coded`], which also sets `error.code` to the stable code) and Promise
//! rejections ([`to_napi`]; `error.code` is napi's `GenericFailure` there) carry the
//! same stable code in the message prefix.
//!
//! Threads: appends, metadata writes, waits, flush and close complete on Rust threads
//! and settle their Promise through a napi deferred (a threadsafe function) — nothing
//! here blocks the event loop or calls into JS from another thread.
//!
//! Panics: every entry point runs its body through `crate::guard` (`call`, `promise`,
//! `call_at` in the tasks), and every Promise settled from another thread through a
//! `guard::Pending`, so a panic becomes `ERR_PANIC` instead of aborting Node.
mod append;
mod dto;
mod meta;
mod read;
mod replay;

pub use dto::*;
/// The drain (Linux only) starts from a checked replay request.
#[cfg(target_os = "linux")]
pub(crate) use replay::ReplayTask;

use crate::error::{to_napi, to_napi_coded};
use crate::guard::{self, lock, RESOLVE, THREAD};
use napi::bindgen_prelude::{AsyncTask, Object};
use napi::{Env, Result, Task};
use napi_derive::napi;
use std::sync::{Arc, Mutex};
use strata_core::args;
use strata_core::error::CoreError;
use strata_core::log::Log;
use strata_core::meta::MetaStore;
use strata_core::store::{LossRecord, OpenReport, Store as CoreStore};

/// The open log and metadata store behind a `Store` (`log` and `meta` are the core
/// store's own).
pub struct Inner {
    core: CoreStore,
    pub(crate) log: Arc<Log>,
    meta: Arc<MetaStore>,
}

/// The durable store of one data directory.
#[napi]
pub struct Store {
    inner: Mutex<Option<Arc<Inner>>>,
}

fn open_inner(dir: &str, o: Option<StoreOptions>) -> std::result::Result<Inner, CoreError> {
    let c = dto::store_args(o).resolve()?;
    let core = CoreStore::open(dir, c.log, c.meta_durable, c.on_corruption)?;
    Ok(Inner {
        log: core.log.clone(),
        meta: core.meta.clone(),
        core,
    })
}

/// Checks a store on the libuv pool (it scans what recovery would).
pub struct CheckTask {
    dir: String,
    options: Option<StoreOptions>,
}

impl Task for CheckTask {
    type Output = OpenReport;
    type JsValue = StoreReportInfo;
    fn compute(&mut self) -> napi::Result<OpenReport> {
        guard::call_at("Store.check", THREAD, || {
            let c = dto::store_args(self.options.take())
                .resolve()
                .map_err(to_napi)?;
            CoreStore::check(&self.dir, c.log).map_err(to_napi)
        })
    }
    fn resolve(&mut self, _env: Env, r: OpenReport) -> napi::Result<StoreReportInfo> {
        guard::call_at("Store.check", RESOLVE, || Ok(report_info(&r)))
    }
}

/// Opens a store on the libuv pool (recovery can take a while).
pub struct OpenTask {
    dir: String,
    options: Option<StoreOptions>,
}

impl Task for OpenTask {
    type Output = Inner;
    type JsValue = Store;
    fn compute(&mut self) -> napi::Result<Inner> {
        // A cut-short `meta.redb` makes redb panic here: `ERR_PANIC`, not an abort.
        guard::call_at("Store.open", THREAD, || {
            open_inner(&self.dir, self.options.take()).map_err(to_napi)
        })
    }
    fn resolve(&mut self, _env: Env, inner: Inner) -> napi::Result<Store> {
        guard::call_at("Store.open", RESOLVE, || Ok(Store::new(inner)))
    }
}

impl Store {
    fn new(inner: Inner) -> Store {
        Store {
            inner: Mutex::new(Some(Arc::new(inner))),
        }
    }

    pub(crate) fn get(&self) -> std::result::Result<Arc<Inner>, CoreError> {
        lock(&self.inner)
            .clone()
            .ok_or_else(|| CoreError::Closed("store closed".into()))
    }

    /// Operation `op`: `f` on a thread of its own with the open store.
    fn background<'env, T: napi::bindgen_prelude::ToNapiValue + Send + 'static>(
        &self,
        env: &'env Env,
        op: &'static str,
        f: impl FnOnce(Arc<Inner>) -> std::result::Result<T, CoreError> + Send + 'static,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, op, |p| match self.get() {
            Ok(inner) => guard::spawn("strata-store-bg", p, move || f(inner)),
            Err(e) => p.reject(e),
        })
    }
}

#[napi]
impl Store {
    /// Opens (recovering) or creates the store in `dir`, off the event loop.
    #[napi(ts_return_type = "Promise<Store>")]
    pub fn open(dir: String, options: Option<StoreOptions>) -> Result<AsyncTask<OpenTask>, String> {
        guard::call("Store.open", || {
            Ok(AsyncTask::new(OpenTask { dir, options }))
        })
    }

    /// Opens synchronously (blocks the caller for the recovery time).
    #[napi]
    pub fn open_sync(dir: String, options: Option<StoreOptions>) -> Result<Store, String> {
        guard::call("Store.openSync", || {
            let inner = open_inner(&dir, options).map_err(to_napi_coded)?;
            Ok(Store::new(inner))
        })
    }

    /// The site id (random at first start, then fixed).
    #[napi(getter)]
    pub fn site_id(&self) -> Result<String, String> {
        guard::call("Store.siteId", || {
            Ok(self.get().map_err(to_napi_coded)?.log.site_id().to_string())
        })
    }

    /// Shard count.
    #[napi(getter)]
    pub fn n_shards(&self) -> Result<u32, String> {
        guard::call("Store.nShards", || {
            Ok(self.get().map_err(to_napi_coded)?.log.n_shards())
        })
    }

    /// Statistics for `ds info`.
    #[napi]
    pub fn stats(&self) -> Result<StoreStats, String> {
        guard::call("Store.stats", || {
            let inner = self.get().map_err(to_napi_coded)?;
            Ok(dto::store_stats(inner.log.stats()))
        })
    }

    /// What this open found and repaired — log, metadata, STORE — and the losses it was
    /// the first to report (each loss is reported by one open only; `losses` lists all).
    #[napi]
    pub fn open_report(&self) -> Result<StoreReportInfo, String> {
        guard::call("Store.openReport", || {
            let inner = self.get().map_err(to_napi_coded)?;
            Ok(report_info(inner.core.report()))
        })
    }

    /// What opening the store in `dir` would find and repair, changing nothing; refused
    /// (`ERR_STORE_LOCKED`) while it is open.
    #[napi(ts_return_type = "Promise<StoreReportInfo>")]
    pub fn check(
        dir: String,
        options: Option<StoreOptions>,
    ) -> Result<AsyncTask<CheckTask>, String> {
        guard::call("Store.check", || {
            Ok(AsyncTask::new(CheckTask { dir, options }))
        })
    }

    /// Losses found while running (damaged sealed segments salvaged as read) not reported
    /// before, as JSON; recorded in the store.
    #[napi]
    pub fn take_losses(&self) -> Result<Vec<String>, String> {
        guard::call("Store.takeLosses", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let found = inner.core.take_losses().map_err(to_napi_coded)?;
            Ok(found.iter().map(LossRecord::to_json).collect())
        })
    }

    /// Makes shard `shard` continue at `floor` at least, recording the offsets skipped as
    /// lost with `reason`; the new loss as JSON, or null.
    #[napi]
    pub fn raise_end(
        &self,
        shard: u32,
        floor: f64,
        reason: String,
    ) -> Result<Option<String>, String> {
        guard::call("Store.raiseEnd", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let floor = args::offset(floor, || "raiseEnd: floor".into()).map_err(to_napi_coded)?;
            let loss = inner
                .core
                .raise_end(shard, floor, &reason)
                .map_err(to_napi_coded)?;
            Ok(loss.as_ref().map(LossRecord::to_json))
        })
    }

    /// Every loss recorded in this store, as JSON.
    #[napi]
    pub fn losses(&self) -> Result<Vec<String>, String> {
        guard::call("Store.losses", || {
            let inner = self.get().map_err(to_napi_coded)?;
            inner.core.losses().map_err(to_napi_coded)
        })
    }

    /// What recovery found and repaired at open.
    #[napi]
    pub fn recovery(&self) -> Result<RecoveryInfo, String> {
        guard::call("Store.recovery", || {
            let inner = self.get().map_err(to_napi_coded)?;
            Ok(dto::recovery_info(inner.log.recovery()))
        })
    }

    /// Forces written data to disk (useful with `interval`/`none`).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        self.background(env, "Store.flush", |i| i.log.flush())
    }

    /// Seals every shard's generation and starts a new one.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn roll_generations<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        self.background(env, "Store.rollGenerations", |i| i.log.roll_generations())
    }

    /// Drops generations past retention now; resolves with how many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn drop_expired<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        self.background(env, "Store.dropExpired", |i| {
            i.log.drop_expired().map(|n| n as u32)
        })
    }

    /// Drains writers, syncs and releases the data directory lock. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.close", |p| {
            let taken = lock(&self.inner).take();
            match taken {
                Some(inner) => guard::spawn("strata-store-bg", p, move || {
                    inner.core.close();
                    // Drop the last reference here so the lock is released before resolving.
                    drop(inner);
                    Ok(())
                }),
                None => p.resolve(()),
            }
        })
    }
}
