//! Session replay as PUBLISH packets (`replay`, `replayAsync`; the drain loop starts
//! from the same checked request). Frame meta layout: `layouts().replay`.
use super::{dto, Inner, ReplayResult, ReplayShardArg, ReplaySubArg, Store};
use crate::error::{to_napi, to_napi_coded};
use crate::guard::{self, RESOLVE, THREAD};
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Result, Task};
use napi_derive::napi;
use std::sync::Arc;
use strata_core::args::Replay;
use strata_core::error::CoreError;
use strata_core::log::{self as core_log, ReplayFrames};

/// One `replay` / `replayAsync` / `drain` call, its arguments checked.
pub struct ReplayTask {
    pub(crate) inner: Arc<Inner>,
    pub(crate) req: Replay,
}

impl ReplayTask {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: &Store,
        shards: Vec<ReplayShardArg>,
        subs: Vec<ReplaySubArg>,
        version: u32,
        client_id: String,
        max_entries: u32,
        max_packet: f64,
    ) -> std::result::Result<ReplayTask, CoreError> {
        let inner = store.get()?;
        let req = Replay::new(
            dto::replay_shards(shards),
            dto::replay_subs(subs),
            version,
            client_id,
            max_entries,
            max_packet,
        )?;
        Ok(ReplayTask { inner, req })
    }

    fn run(&self) -> std::result::Result<ReplayFrames, CoreError> {
        let r = &self.req;
        core_log::replay_frames(&self.inner.log, &r.shards, &r.subs, &r.opts)
    }
}

impl Task for ReplayTask {
    type Output = ReplayFrames;
    type JsValue = ReplayResult;
    fn compute(&mut self) -> napi::Result<ReplayFrames> {
        guard::call_at("Store.replayAsync", THREAD, || self.run().map_err(to_napi))
    }
    fn resolve(&mut self, _env: Env, r: ReplayFrames) -> napi::Result<ReplayResult> {
        guard::call_at("Store.replayAsync", RESOLVE, || Ok(dto::replay_result(r)))
    }
}

#[napi]
impl Store {
    /// Session replay as wire-ready PUBLISH packets (`strata_core::log::replay_frames`):
    /// scans `shards` for the records matching `subs` (each from its shard's `starts`),
    /// works out each delivery's QoS and retain flag, merges the shards by timestamp and
    /// encodes up to `maxEntries` PUBLISH packets for protocol level `version` (5 adds an
    /// empty property section). No-local subscriptions skip `clientId`'s own messages.
    /// Stops (status 3) before a delivery the general path must make. Synchronous, like
    /// `scan`.
    ///
    /// Throws `ERR_INVALID_ARGUMENT` for a shard's `starts` not matching `subs`, a bad
    /// offset or QoS; otherwise as `scan`.
    #[napi]
    pub fn replay(
        &self,
        shards: Vec<ReplayShardArg>,
        subs: Vec<ReplaySubArg>,
        version: u32,
        client_id: String,
        max_entries: u32,
        max_packet: f64,
    ) -> Result<ReplayResult, String> {
        guard::call("Store.replay", || {
            let task = ReplayTask::new(
                self,
                shards,
                subs,
                version,
                client_id,
                max_entries,
                max_packet,
            )
            .map_err(to_napi_coded)?;
            let r = task.run().map_err(to_napi_coded)?;
            Ok(dto::replay_result(r))
        })
    }

    /// `replay` on a libuv worker thread: the arguments are checked at once (throwing as
    /// `replay` does), the read runs off the event loop and the Promise rejects as `replay`
    /// would throw.
    #[napi(ts_return_type = "Promise<ReplayResult>")]
    pub fn replay_async(
        &self,
        shards: Vec<ReplayShardArg>,
        subs: Vec<ReplaySubArg>,
        version: u32,
        client_id: String,
        max_entries: u32,
        max_packet: f64,
    ) -> Result<AsyncTask<ReplayTask>, String> {
        guard::call("Store.replayAsync", || {
            let task = ReplayTask::new(
                self,
                shards,
                subs,
                version,
                client_id,
                max_entries,
                max_packet,
            )
            .map_err(to_napi_coded)?;
            Ok(AsyncTask::new(task))
        })
    }
}
