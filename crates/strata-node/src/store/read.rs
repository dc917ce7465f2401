//! Reads: by position (`readAt`), session replay scans (`scan`), shard ends and the wait
//! for appends, the shard of a publisher, inbound QoS 2 ids, the streams of a filter.
//! Entries use the batch entry layout (`strata_core::log::entry`, `layouts().entry`).
use super::{Inner, ReadAtResult, ScanLinesResult, ScanResult, Store, StreamInfo};
use crate::error::{to_napi, to_napi_coded};
use crate::guard::{self, lock, Pending, RESOLVE, THREAD};
use napi::bindgen_prelude::{AsyncTask, Either, Float64Array, Object, Uint32Array, Uint8Array};
use napi::{Env, Result, Task};
use napi_derive::napi;
use std::sync::{Arc, Mutex};
use strata_core::args;
use strata_core::error::CoreError;
use strata_core::fetch;
use strata_core::log::{self as core_log, ScanStatus};

fn check_counts(
    shards: &[u32],
    offsets: &[f64],
    delivered: &[u32],
    acked: &[u32],
) -> std::result::Result<(), CoreError> {
    let n = shards.len();
    if offsets.len() != n || delivered.len() != n || acked.len() != n {
        return Err(CoreError::InvalidArgument(
            "addCounts: shards, offsets, delivered and acked differ in length".into(),
        ));
    }
    Ok(())
}

/// Entries grouped by shard, each shard's added in one call (`Log::add_counts` sorts them);
/// the `shard, offset` pairs whose `acked` rose from 0.
fn add_counts(
    inner: &Inner,
    shards: &[u32],
    offsets: &[f64],
    delivered: &[u32],
    acked: &[u32],
) -> std::result::Result<Vec<f64>, CoreError> {
    let mut per: Vec<Vec<core_log::CountDelta>> = Vec::new();
    for i in 0..shards.len() {
        let s = shards[i] as usize;
        if per.len() <= s {
            per.resize_with(s + 1, Vec::new);
        }
        per[s].push((offsets[i] as u64, delivered[i], acked[i]));
    }
    let mut out = Vec::new();
    for (s, mut deltas) in per.into_iter().enumerate() {
        if deltas.is_empty() {
            continue;
        }
        for o in inner.log.add_counts(s as u32, &mut deltas)? {
            out.push(s as f64);
            out.push(o as f64);
        }
    }
    Ok(out)
}

/// `Store.addCountsAsync`: the copied arrays, added on a libuv worker thread.
pub struct AddCountsTask {
    inner: Arc<Inner>,
    shards: Vec<u32>,
    offsets: Vec<f64>,
    delivered: Vec<u32>,
    acked: Vec<u32>,
}

impl Task for AddCountsTask {
    type Output = Vec<f64>;
    type JsValue = Float64Array;
    fn compute(&mut self) -> napi::Result<Vec<f64>> {
        guard::call_at("Store.addCountsAsync", THREAD, || {
            add_counts(
                &self.inner,
                &self.shards,
                &self.offsets,
                &self.delivered,
                &self.acked,
            )
            .map_err(to_napi)
        })
    }
    fn resolve(&mut self, _env: Env, out: Vec<f64>) -> napi::Result<Float64Array> {
        guard::call_at("Store.addCountsAsync", RESOLVE, || {
            Ok(Float64Array::new(out))
        })
    }
}

/// A scan's status as the binding reports it (layouts: REPLAY_STATUS_NEXT / DONE / UNTIL).
fn status_code(s: ScanStatus) -> u32 {
    match s {
        ScanStatus::Next => 0,
        ScanStatus::Done => 1,
        ScanStatus::Until => 2,
    }
}

#[napi]
impl Store {
    /// Streams that can hold messages matching `filter`, oldest generation first.
    #[napi]
    pub fn streams(&self, filter: String) -> Result<Vec<StreamInfo>, String> {
        guard::call("Store.streams", || {
            let inner = self.get().map_err(to_napi_coded)?;
            Ok(inner
                .log
                .streams(&filter)
                .into_iter()
                .map(|s| StreamInfo {
                    shard: s.id.shard,
                    generation: s.id.generation,
                    stream: s.id.stream,
                    structure: s.structure,
                    records: s.records as f64,
                    sealed: s.sealed,
                    generation_start: s.generation_start as f64,
                })
                .collect())
        })
    }

    /// Next offset of a shard (what `waitForAppend` compares against).
    #[napi]
    pub fn shard_end(&self, shard: u32) -> Result<f64, String> {
        guard::call("Store.shardEnd", || {
            let inner = self.get().map_err(to_napi_coded)?;
            Ok(inner.log.shard_end(shard).map_err(to_napi_coded)? as f64)
        })
    }

    /// Resolves with the shard's new end once it passes `after` (park a caught-up
    /// reader instead of polling).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn wait_for_append<'env>(
        &self,
        env: &'env Env,
        shard: u32,
        after: f64,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.waitForAppend", |p: Pending<f64>| {
            let inner = match self.get() {
                Ok(i) => i,
                Err(e) => return p.reject(e),
            };
            let p = Arc::new(Mutex::new(Some(p)));
            let p2 = p.clone();
            let i2 = Arc::downgrade(&inner);
            let r = inner.log.wait(
                shard,
                after.max(0.0) as u64,
                Box::new(move || {
                    let p = lock(&p2).take();
                    if let Some(p) = p {
                        p.run(|| {
                            let i = i2
                                .upgrade()
                                .ok_or_else(|| CoreError::Closed("store closed".into()))?;
                            if i.log.is_closed() {
                                return Err(CoreError::Closed("store closed while waiting".into()));
                            }
                            Ok(i.log.shard_end(shard)? as f64)
                        });
                    }
                }),
            );
            if let Err(e) = r {
                let p = lock(&p).take();
                if let Some(p) = p {
                    p.reject(e);
                }
            }
        })
    }

    /// The first offset of shard `shard` whose record has a timestamp ≥ `tsMs` (the
    /// shard's end when none is that recent): where a read from a time starts
    /// (`strata_core::log::Log::offset_at_time`). Throws `ERR_INVALID_ARGUMENT` for a
    /// time that is not an integer in 0..2^53, `ERR_NOT_FOUND` for a shard ≥ `nShards`.
    #[napi]
    pub fn offset_at_time(&self, shard: u32, ts_ms: f64) -> Result<f64, String> {
        guard::call("Store.offsetAtTime", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let ts = args::offset(ts_ms, || "offsetAtTime: tsMs".into()).map_err(to_napi_coded)?;
            Ok(inner.log.offset_at_time(shard, ts).map_err(to_napi_coded)? as f64)
        })
    }

    /// `scan` with one filter per record (every filter from offset 0), the matching entries
    /// written as the message log's JSON lines (`strata_core::log::lines`: byte for byte what
    /// `src/msglog/query.ts` writes; `keyProperty`: the user property an entry's key is taken
    /// from, `""` for the publisher). Errors and limits as `scan`.
    #[napi(
        ts_args_type = "shard: number, from: number, filters: string[], maxEntries: number, keyProperty: string, until?: number"
    )]
    pub fn scan_lines(
        &self,
        shard: u32,
        from: f64,
        filters: Vec<String>,
        max_entries: u32,
        key_property: String,
        until: Option<f64>,
    ) -> Result<ScanLinesResult, String> {
        guard::call("Store.scanLines", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let starts = vec![0.0; filters.len()];
            let (from, filters, limits) =
                args::scan(from, filters, &starts, max_entries, None, until, None)
                    .map_err(to_napi_coded)?;
            let b =
                core_log::scan(&inner.log, shard, from, &filters, limits).map_err(to_napi_coded)?;
            let offsets: Vec<u64> = (0..b.len())
                .filter_map(|j| b.entry(j).map(|e| e.offset))
                .collect();
            let counts = inner
                .log
                .read_counts(shard, &offsets)
                .map_err(to_napi_coded)?;
            let l = core_log::lines::scan_lines(&b, &key_property, &counts);
            Ok(ScanLinesResult {
                offsets: Uint32Array::new(l.offsets),
                meta: Float64Array::new(l.meta.into_iter().map(|v| v as f64).collect()),
                next: b.next as f64,
                status: status_code(b.status),
                skipped: b.skipped as f64,
                buffer: l.buf.into(),
            })
        })
    }

    /// Add delivery counts (the message log's `delivered` / `acked`): entry `i` adds
    /// `delivered[i]`, `acked[i]` to the record at `offsets[i]` of shard `shards[i]`. Returns
    /// the positions (`shard, offset` pairs) whose `acked` this call raised from 0.
    /// Synchronous (page-cache reads and writes of the counts files, never synced).
    #[napi]
    pub fn add_counts(
        &self,
        shards: Uint32Array,
        offsets: Float64Array,
        delivered: Uint32Array,
        acked: Uint32Array,
    ) -> Result<Float64Array, String> {
        guard::call("Store.addCounts", || {
            let inner = self.get().map_err(to_napi_coded)?;
            check_counts(&shards, &offsets, &delivered, &acked).map_err(to_napi_coded)?;
            let out =
                add_counts(&inner, &shards, &offsets, &delivered, &acked).map_err(to_napi_coded)?;
            Ok(Float64Array::new(out))
        })
    }

    /// `addCounts` on a libuv worker thread: the arrays are copied and checked at once
    /// (throwing as `addCounts` does); sorting them and the counts files' reads and writes run
    /// off the event loop.
    #[napi(ts_return_type = "Promise<Float64Array>")]
    pub fn add_counts_async(
        &self,
        shards: Uint32Array,
        offsets: Float64Array,
        delivered: Uint32Array,
        acked: Uint32Array,
    ) -> Result<AsyncTask<AddCountsTask>, String> {
        guard::call("Store.addCountsAsync", || {
            let inner = self.get().map_err(to_napi_coded)?;
            check_counts(&shards, &offsets, &delivered, &acked).map_err(to_napi_coded)?;
            Ok(AsyncTask::new(AddCountsTask {
                inner,
                shards: shards.to_vec(),
                offsets: offsets.to_vec(),
                delivered: delivered.to_vec(),
                acked: acked.to_vec(),
            }))
        })
    }

    /// `delivered, acked` of each of `offsets` (ascending) of shard `shard`, back to back
    /// (zeros where nothing was counted).
    #[napi]
    pub fn read_counts(&self, shard: u32, offsets: Float64Array) -> Result<Uint32Array, String> {
        guard::call("Store.readCounts", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let offs: Vec<u64> = offsets.iter().map(|&o| o as u64).collect();
            Ok(Uint32Array::new(
                inner.log.read_counts(shard, &offs).map_err(to_napi_coded)?,
            ))
        })
    }

    /// The shard a publisher's messages go to (`crc32c(publisher) % nShards`).
    #[napi]
    pub fn shard_of(&self, publisher: String) -> Result<u32, String> {
        guard::call("Store.shardOf", || {
            let inner = self.get().map_err(to_napi_coded)?;
            Ok(core_log::shard_of(
                publisher.as_bytes(),
                inner.log.n_shards(),
            ))
        })
    }

    /// The offset of the first record of shard `shard` at or after `from` that
    /// `publisher` appended with QoS 2 packet id `id` (`appendPacked`), or null. Resolves
    /// an inbound QoS 2 id recorded as pending before a crash: found, its message was
    /// stored. Synchronous: it reads the shard from `from` (meant for start-up).
    #[napi]
    pub fn find_inbound(
        &self,
        shard: u32,
        from: f64,
        publisher: String,
        id: u32,
    ) -> Result<Option<f64>, String> {
        guard::call("Store.findInbound", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let from = args::offset(from, || "findInbound: from".into()).map_err(to_napi_coded)?;
            let id = args::packet_id(id, "findInbound").map_err(to_napi_coded)?;
            let found = core_log::find_inbound(&inner.log, shard, from, publisher.as_bytes(), id)
                .map_err(to_napi_coded)?;
            Ok(found.map(|o| o as f64))
        })
    }

    /// The offset of the first record at or after `from` in shard `shard` that `publisher`
    /// appended (any inbound packet id), or null: resolves a will recorded as being published
    /// before a crash. Synchronous, as `findInbound`.
    #[napi]
    pub fn find_published(
        &self,
        shard: u32,
        from: f64,
        publisher: String,
    ) -> Result<Option<f64>, String> {
        guard::call("Store.findPublished", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let from =
                args::offset(from, || "findPublished: from".into()).map_err(to_napi_coded)?;
            let found = core_log::find_published(&inner.log, shard, from, publisher.as_bytes())
                .map_err(to_napi_coded)?;
            Ok(found.map(|o| o as f64))
        })
    }

    /// Reads the records at `(shards[i], offsets[i])` — positions returned by
    /// `append` — into one buffer plus an offset table (entry layout `layouts().entry`). A position
    /// whose record no longer exists (its generation dropped by retention, past its
    /// own retention, in a quarantined segment, or at/after the shard's end) is
    /// reported with `found[i] = 0`, not an error. Throws `ERR_INVALID_ARGUMENT` for
    /// arrays of different lengths, a shard ≥ `nShards` or an offset that is not an
    /// integer in 0..2^53.
    ///
    /// Synchronous: each position is a binary search plus one read of
    /// about 2 KiB from the page cache; ascending positions in the same segment share
    /// reads. Measured from page cache: ~2.6 µs per random position, 0.7–1 µs per
    /// position in ascending order. A read that misses the page cache goes to disk on
    /// the calling thread, so keep batches to a few thousand positions.
    #[napi(ts_args_type = "shards: Uint32Array | number[], offsets: number[]")]
    pub fn read_at(
        &self,
        shards: Either<&[u32], Vec<u32>>,
        offsets: Vec<f64>,
    ) -> Result<ReadAtResult, String> {
        guard::call("Store.readAt", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let shards: &[u32] = match &shards {
                Either::A(s) => s,
                Either::B(v) => v,
            };
            let positions = args::positions(shards, &offsets).map_err(to_napi_coded)?;
            let b = fetch::read_at(&inner.log, &positions).map_err(to_napi_coded)?;
            Ok(ReadAtResult {
                offsets: Uint32Array::new(b.offsets),
                found: Uint8Array::new(b.found),
                buffer: b.buf.into(),
            })
        })
    }

    /// Session replay: scans shard `shard` from offset `from`, in offset order, for the
    /// records whose topic matches any of `filters` (MQTT matching; `$share/{group}/f`
    /// matches by `f`; a leading `+`/`#` never matches a `$` topic). Filter `i` only
    /// applies to records at offsets ≥ `starts[i]` (when the subscription was made).
    /// Matching records come back in the batch entry layout (`layouts().entry`) with one filter mask each
    /// (see `ScanResult`); `from` below the oldest stored record starts at the oldest,
    /// counting the missing records in `skipped`.
    ///
    /// Stops before the next record when its offset is ≥ `until` (status 2), when it
    /// reaches the shard's committed end (status 1, `next` = `shardEnd(shard)` at the
    /// time), or (status 0) once `maxEntries` entries were emitted, the next matching
    /// entry would take `buffer` past `maxBytes` (default 4 MiB; the first entry is
    /// always emitted), or `maxExamined` records were read (default 65536: bounds the
    /// call's time when little matches). Continue with `from = next`.
    ///
    /// Synchronous: a sequential read of committed bytes from the page
    /// cache (safe while appends run). Segments holding no stream any filter can match
    /// are passed over unread. Measured from page cache (64-byte payloads, 2-core VM):
    /// 5–10M records examined/s when little matches, 2.6–4.2M matching entries/s
    /// (docs/storage.md, "Session replay scan").
    ///
    /// Throws `ERR_INVALID_ARGUMENT` for `filters.length !== starts.length`, a shard ≥
    /// `nShards`, or `from`/`starts[i]`/`until` not an integer in 0..2^53;
    /// `ERR_INVALID_TOPIC` for a malformed filter; `ERR_STORE_IO` / `ERR_STORE_CORRUPT`
    /// for a failed read or a corrupt record in the active segment.
    #[napi(
        ts_args_type = "shard: number, from: number, filters: string[], starts: number[], maxEntries: number, maxBytes?: number, until?: number, maxExamined?: number"
    )]
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &self,
        shard: u32,
        from: f64,
        filters: Vec<String>,
        starts: Vec<f64>,
        max_entries: u32,
        max_bytes: Option<u32>,
        until: Option<f64>,
        max_examined: Option<u32>,
    ) -> Result<ScanResult, String> {
        guard::call("Store.scan", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let (from, filters, limits) = args::scan(
                from,
                filters,
                &starts,
                max_entries,
                max_bytes,
                until,
                max_examined,
            )
            .map_err(to_napi_coded)?;
            let b =
                core_log::scan(&inner.log, shard, from, &filters, limits).map_err(to_napi_coded)?;
            Ok(ScanResult {
                offsets: Uint32Array::new(b.offsets),
                masks: Uint32Array::new(b.masks),
                words: b.words as u32,
                next: b.next as f64,
                status: status_code(b.status),
                skipped: b.skipped as f64,
                buffer: b.buf.into(),
            })
        })
    }
}
