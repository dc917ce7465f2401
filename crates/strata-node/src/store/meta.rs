//! The metadata tables (`strata_core::meta`): reads, scans and atomic group-committed
//! writes. Table names: sessions, subscriptions, inbound_qos2, progress, retained, system,
//! losses (progress record layout: `layouts().progress`).
use super::{MetaEntry, Store};
use crate::error::to_napi_coded;
use crate::guard;
use crate::topic::RetainedMessages;
use napi::bindgen_prelude::{Buffer, Object};
use napi::{Env, Result};
use napi_derive::napi;
use strata_core::error::CoreError;
use strata_core::meta::Table;

fn table(name: &str) -> std::result::Result<Table, CoreError> {
    name.parse()
}

#[napi]
impl Store {
    /// Reads one metadata value.
    #[napi]
    pub fn meta_get(&self, table_name: String, key: &[u8]) -> Result<Option<Buffer>, String> {
        guard::call("Store.metaGet", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let t = table(&table_name).map_err(to_napi_coded)?;
            Ok(inner
                .meta
                .get(t, key)
                .map_err(to_napi_coded)?
                .map(Buffer::from))
        })
    }

    /// Loads every record of the `retained` table into `into` (in Rust: nothing crosses to
    /// JavaScript). Records in the earlier layout are not loaded: their keys are returned
    /// for the caller to convert.
    #[napi]
    pub fn load_retained(&self, into: &mut RetainedMessages) -> Result<RetainedLoadInfo, String> {
        guard::call("Store.loadRetained", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let got = strata_core::topic::retained_record::load(&inner.meta, &mut into.inner)
                .map_err(to_napi_coded)?;
            Ok(RetainedLoadInfo {
                loaded: got.loaded as f64,
                legacy: got.legacy.into_iter().map(Buffer::from).collect(),
                unreadable: got.unreadable as f64,
            })
        })
    }

    /// Up to `limit` (default 1000) entries whose key starts with `prefix`, after `after`.
    #[napi]
    pub fn meta_scan(
        &self,
        table_name: String,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: Option<u32>,
    ) -> Result<Vec<MetaEntry>, String> {
        guard::call("Store.metaScan", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let t = table(&table_name).map_err(to_napi_coded)?;
            let rows = inner
                .meta
                .scan(t, prefix, after, limit.map_or(1000, |l| l as usize))
                .map_err(to_napi_coded)?;
            Ok(rows
                .into_iter()
                .map(|(k, v)| MetaEntry {
                    key: k.into(),
                    value: v.into(),
                })
                .collect())
        })
    }

    /// Applies metadata writes atomically, packed in one buffer (`layouts().metaOps`: one
    /// argument to convert however many writes it carries); resolves once committed (group
    /// commit).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn meta_apply_packed<'env>(
        &self,
        env: &'env Env,
        ops: &[u8],
    ) -> napi::Result<Object<'env>> {
        // Copied as it is (one copy, on this thread); unpacked on the metadata writer's.
        guard::promise(env, "Store.metaApplyPacked", |p| match self.get() {
            Ok(inner) => inner.meta.apply_packed(ops.to_vec(), p.completion(|()| ())),
            Err(e) => p.reject(e),
        })
    }
}

/// What `loadRetained` found.
#[napi(object)]
pub struct RetainedLoadInfo {
    /// Records loaded.
    pub loaded: f64,
    /// Topics whose record is in the earlier layout (not loaded).
    pub legacy: Vec<Buffer>,
    /// Entries neither layout reads (skipped).
    pub unreadable: f64,
}
