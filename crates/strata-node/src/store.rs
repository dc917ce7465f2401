//! `Store`: the durable log + metadata store, as a JS class. Conversion only: every
//! decision lives in `strata-core`.
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
use crate::error::{to_napi, to_napi_coded};
use crate::guard::{self, lock, Pending, RESOLVE, THREAD};
use napi::bindgen_prelude::{Buffer, Either, Float64Array, Object, Uint32Array, Uint8Array};
use napi::{Env, Result, Task};
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use strata_core::error::CoreError;
use strata_core::fetch::{self, FetchLimits};
use strata_core::log::{
    self as core_log, Cursor, FsyncPolicy, Log, NewMessage, Offset, Options, Position, ReadStatus,
    ReplayOptions, ReplayShard, ReplaySub, ScanFilter, ScanLimits, ScanStatus, StreamId,
};
use strata_core::meta::{MetaStore, Op, Table};
use strata_core::store::{LossRecord, OnCorruption, OpenReport, Store as CoreStore};

/// Options of `Store.open`. Omitted fields take the documented defaults.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Shards, fixed at first start (default 4).
    pub n_shards: Option<u32>,
    /// `always` (default), `interval:<ms>` or `none`.
    pub fsync: Option<String>,
    /// Segment size in bytes (default 64 MiB).
    pub segment_bytes: Option<i64>,
    /// Generation span in ms (default 1 h).
    pub generation_span_ms: Option<i64>,
    /// `message_retention_period` in ms; 0 keeps forever (default 1 day).
    pub retention_ms: Option<i64>,
    /// Per-topic-filter retention overrides; first match wins.
    pub retention_overrides: Option<Vec<RetentionOverride>>,
    /// Distinct values before a topic level becomes a stream wildcard (default 16).
    pub lts_threshold: Option<u32>,
    /// Verify every record of sealed segments on open (default false).
    pub verify_on_open: Option<bool>,
    /// `fsync` policy of the metadata store: true = durable commits (default: follows
    /// `fsync`, durable unless `none`).
    pub meta_durable: Option<bool>,
    /// `recover` (default): repair damaged files and report each loss once; `refuse`:
    /// fail with `ERR_STORE_CORRUPT`, changing nothing, when there is damage beyond a
    /// crash's leftovers.
    pub on_corruption: Option<String>,
}

/// What opening (or checking) a store found (`openReport`, `Store.check`).
#[napi(object)]
pub struct StoreReportInfo {
    /// Damage beyond a crash's leftovers was found (and, for an open, repaired).
    pub damaged: bool,
    /// One line per finding: files quarantined or salvaged, STORE or metadata rebuilt,
    /// losses.
    pub summary: Vec<String>,
    /// Everything recovery did, including a crash's ordinary repairs.
    pub events: Vec<String>,
    /// Losses as JSON (`{shard, from, to, records, file, reason, foundMs}`): those this open
    /// reported first, or every loss a check finds.
    pub losses: Vec<String>,
}

fn report_info(r: &OpenReport) -> StoreReportInfo {
    StoreReportInfo {
        damaged: r.damaged(),
        summary: r.summary(),
        events: r
            .log
            .events
            .iter()
            .chain(r.meta.events.iter())
            .cloned()
            .collect(),
        losses: r.losses.iter().map(LossRecord::to_json).collect(),
    }
}

/// A per-topic retention override.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct RetentionOverride {
    /// MQTT topic filter.
    pub filter: String,
    /// Retention in ms.
    pub ms: i64,
}

/// A message to append.
#[napi(object)]
pub struct AppendMessage {
    /// Publisher client id (shard key).
    pub publisher: String,
    /// Topic name.
    pub topic: String,
    /// QoS 0..2.
    pub qos: u32,
    /// Retain flag.
    pub retain: bool,
    /// Payload.
    pub payload: Buffer,
    /// MQTT 5 properties, opaque.
    pub properties: Option<Buffer>,
}

/// Where an appended message landed.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct AppendPosition {
    /// Shard.
    pub shard: u32,
    /// Offset in the shard (exact below 2^53).
    pub offset: f64,
}

/// A stream that can hold messages of a filter.
#[napi(object)]
pub struct StreamInfo {
    /// Shard.
    pub shard: u32,
    /// Generation.
    pub generation: u32,
    /// Stream.
    pub stream: u32,
    /// Learned structure (`+` = learned wildcard level).
    pub structure: String,
    /// Records currently visible.
    pub records: f64,
    /// The generation takes no more writes.
    pub sealed: bool,
    /// Generation start (ms).
    pub generation_start: f64,
}

/// A cursor as a plain value, to persist in the metadata store.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct CursorState {
    /// Shard.
    pub shard: u32,
    /// Generation.
    pub generation: u32,
    /// Stream.
    pub stream: u32,
    /// Next offset to examine.
    pub offset: f64,
    /// Records of the stream already passed.
    pub seen: f64,
    /// Topic filter applied to records.
    pub filter: Option<String>,
}

/// One fetched batch: entries back to back in `buffer`, entry `i` spanning
/// `offsets[i]..offsets[i+1]` (layout in docs/storage.md). Per input cursor:
/// `delivered[k]` entries (contiguous, in cursor order), `skipped[k]` lost to
/// retention, `status[k]` 0 = Next, 1 = Done (caught up), 2 = End (stream finished).
#[napi(object)]
pub struct FetchResult {
    /// Entries.
    pub buffer: Buffer,
    /// Entry boundaries (`count + 1` values).
    pub offsets: Uint32Array,
    /// Entries per cursor.
    pub delivered: Uint32Array,
    /// Records lost to retention per cursor.
    pub skipped: Vec<f64>,
    /// 0 Next, 1 Done, 2 End per cursor.
    pub status: Uint32Array,
}

/// Records read by position (`readAt`): one entry per position found, in input
/// order, entry `j` spanning `offsets[j]..offsets[j+1]` of `buffer` (same layout as
/// `fetch`, docs/storage.md); `found[i]` is 1 when input position `i` has an entry,
/// 0 when its record no longer exists (or never did).
#[napi(object)]
pub struct ReadAtResult {
    /// Entries of the positions found, back to back.
    pub buffer: Buffer,
    /// Entry boundaries (`found count + 1` values).
    pub offsets: Uint32Array,
    /// Per input position: 1 found, 0 missing.
    pub found: Uint8Array,
}

/// One session-replay scan of a shard (`scan`). Entries are the records that matched,
/// in offset order, back to back in `buffer` (entry `j` spans `offsets[j]..offsets[j+1]`,
/// layout as `fetch`, docs/storage.md). Entry `j`'s filter mask is
/// `masks[j*words .. (j+1)*words]`: bit `i % 32` of word `i / 32` is set when
/// `filters[i]` matched the record's topic at an offset ≥ `starts[i]`.
#[napi(object)]
pub struct ScanResult {
    /// Matching entries, back to back.
    pub buffer: Buffer,
    /// Entry boundaries (`entries + 1` values).
    pub offsets: Uint32Array,
    /// `words` mask words per entry.
    pub masks: Uint32Array,
    /// Mask words per entry: `ceil(filters.length / 32)`.
    pub words: u32,
    /// First offset not examined: pass it as `from` to continue exactly (nothing
    /// re-emitted, nothing missed). Never below `from`.
    pub next: f64,
    /// Why the scan returned: 0 Next (a limit was reached; scan again from `next`),
    /// 1 Done (caught up with the shard's end; `next` is that end — park with
    /// `waitForAppend(shard, next)`), 2 Until (the next offset is ≥ `until`).
    pub status: u32,
    /// Records passed over because they are gone (dropped by retention, quarantined)
    /// or hidden by retention. Approximate: see docs/storage.md.
    pub skipped: f64,
}

/// One shard of a `replay` call.
#[napi(object)]
pub struct ReplayShardArg {
    pub shard: u32,
    /// First offset to examine.
    pub from: f64,
    /// Stop before this offset (a range the session dropped).
    pub until: Option<f64>,
    /// Per subscription (order of `subs`), the first offset it applies to.
    pub starts: Vec<f64>,
}

/// One subscription of the session a `replay` call is for.
#[napi(object)]
pub struct ReplaySubArg {
    pub filter: String,
    pub qos: u32,
    pub no_local: bool,
    pub retain_as_published: bool,
}

/// Deliveries of a `replay` call as PUBLISH packets back to back in `buffer`.
/// `meta` holds 6 values per packet: shard, offset, timestamp ms, end of the packet
/// in `buffer` (it starts where the previous one ends), position of its packet
/// identifier (0 in the buffer, to patch; -1 for QoS 0), payload length.
#[napi(object)]
pub struct ReplayResult {
    pub buffer: Buffer,
    pub meta: Float64Array,
    /// Per requested shard: the first offset not consumed.
    pub next: Float64Array,
    /// Per requested shard: 0 Next (a limit was reached), 1 Done (caught up), 2 Until,
    /// 3 Slow (stopped before a delivery the general path must make: a message with
    /// properties, a QoS 2 delivery, a packet over `maxPacket`).
    pub status: Uint32Array,
    /// Records passed over because they are gone.
    pub skipped: f64,
}

/// One metadata write.
#[napi(object)]
pub struct MetaOp {
    /// `put`, `delete` or `deletePrefix`.
    pub op: String,
    /// Table: sessions, subscriptions, inbound_qos2, progress, retained, system, losses.
    pub table: String,
    /// Key (or prefix).
    pub key: Buffer,
    /// Value (for `put`).
    pub value: Option<Buffer>,
}

/// A metadata entry.
#[napi(object)]
pub struct MetaEntry {
    /// Key.
    pub key: Buffer,
    /// Value.
    pub value: Buffer,
}

/// Per-generation statistics.
#[napi(object)]
pub struct GenerationStats {
    /// Generation id.
    pub id: u32,
    /// Start (ms).
    pub start_ts: f64,
    /// Newest record (ms).
    pub last_ts: f64,
    /// Streams.
    pub streams: u32,
    /// Segments.
    pub segments: u32,
    /// Records.
    pub records: f64,
    /// Bytes on disk.
    pub bytes: f64,
    /// Sealed.
    pub sealed: bool,
}

/// Per-shard statistics.
#[napi(object)]
pub struct ShardStats {
    /// Shard.
    pub shard: u32,
    /// Generations, oldest first.
    pub generations: Vec<GenerationStats>,
    /// Records.
    pub records: f64,
    /// Bytes on disk.
    pub bytes: f64,
    /// Oldest record time (ms).
    pub oldest_ts: Option<f64>,
    /// Newest record time (ms).
    pub newest_ts: Option<f64>,
    /// Next offset.
    pub end_offset: f64,
}

/// `ds info`.
#[napi(object)]
pub struct StoreStats {
    /// Site id.
    pub site_id: String,
    /// Shards.
    pub shards: Vec<ShardStats>,
    /// Records.
    pub records: f64,
    /// Bytes on disk.
    pub bytes: f64,
    /// Open cursors held by this handle.
    pub open_cursors: u32,
}

/// What recovery did at open.
#[napi(object)]
pub struct RecoveryInfo {
    /// Segments opened.
    pub segments: f64,
    /// Records found.
    pub records: f64,
    /// Bytes verified record by record.
    pub scanned_bytes: f64,
    /// Bytes cut from torn tails.
    pub truncated_bytes: f64,
    /// Indexes rebuilt.
    pub rebuilt_indexes: f64,
    /// Quarantined segments with reasons.
    pub quarantined: Vec<String>,
    /// Progress / repair log.
    pub events: Vec<String>,
    /// Open time (ms).
    pub elapsed_ms: f64,
}

/// The open log and metadata store behind a `Store` (`log` and `meta` are the core
/// store's own).
pub struct Inner {
    core: CoreStore,
    pub(crate) log: Arc<Log>,
    meta: Arc<MetaStore>,
    cursors: Mutex<HashMap<u32, Cursor>>,
    next_cursor: AtomicU32,
}

/// The durable store of one data directory.
#[napi]
pub struct Store {
    inner: Mutex<Option<Arc<Inner>>>,
}

/// Store options: the log's, whether metadata commits are durable, what to do with damage.
type Parsed = (Options, Option<bool>, OnCorruption);

fn parse_options(o: Option<StoreOptions>) -> std::result::Result<Parsed, CoreError> {
    let o = o.unwrap_or_default();
    let mut opts = Options {
        n_shards: o.n_shards,
        ..Options::default()
    };
    if let Some(f) = &o.fsync {
        opts.fsync = f.parse()?;
    }
    let pos = |v: i64, what: &str| -> std::result::Result<u64, CoreError> {
        u64::try_from(v).map_err(|_| CoreError::InvalidArgument(format!("{what} must be ≥ 0")))
    };
    if let Some(v) = o.segment_bytes {
        opts.segment_bytes = pos(v, "segmentBytes")?;
    }
    if let Some(v) = o.generation_span_ms {
        opts.generation_span_ms = pos(v, "generationSpanMs")?;
    }
    if let Some(v) = o.retention_ms {
        opts.retention_ms = match pos(v, "retentionMs")? {
            0 => None,
            ms => Some(ms),
        };
    }
    if let Some(list) = o.retention_overrides {
        for r in list {
            opts.retention_overrides
                .push((r.filter, pos(r.ms, "retention override ms")?));
        }
    }
    if let Some(t) = o.lts_threshold {
        opts.lts_threshold = t as usize;
    }
    if let Some(v) = o.verify_on_open {
        opts.verify_on_open = v;
    }
    let on_corruption = match &o.on_corruption {
        Some(v) => v.parse()?,
        None => OnCorruption::default(),
    };
    Ok((opts, o.meta_durable, on_corruption))
}

fn open_inner(dir: &str, o: Option<StoreOptions>) -> std::result::Result<Inner, CoreError> {
    let (opts, meta_durable, on_corruption) = parse_options(o)?;
    let durable = meta_durable.unwrap_or(opts.fsync != FsyncPolicy::None);
    let core = CoreStore::open(dir, opts, durable, on_corruption)?;
    Ok(Inner {
        log: core.log.clone(),
        meta: core.meta.clone(),
        core,
        cursors: Mutex::new(HashMap::new()),
        next_cursor: AtomicU32::new(1),
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
            let (opts, _, _) = parse_options(self.options.take()).map_err(to_napi)?;
            CoreStore::check(&self.dir, opts).map_err(to_napi)
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

/// One `replay` / `replayAsync` call, its arguments checked.
pub struct ReplayTask {
    pub(crate) inner: Arc<Inner>,
    pub(crate) shards: Vec<ReplayShard>,
    pub(crate) subs: Vec<ReplaySub>,
    pub(crate) opts: ReplayOptions,
}

impl ReplayTask {
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
        let shards = shards
            .into_iter()
            .map(|a| {
                Ok(ReplayShard {
                    shard: a.shard,
                    from: offset_arg(a.from, || "replay: from".into())?,
                    until: a
                        .until
                        .map(|u| offset_arg(u, || "replay: until".into()))
                        .transpose()?,
                    starts: a
                        .starts
                        .iter()
                        .map(|&s| offset_arg(s, || "replay: starts".into()))
                        .collect::<std::result::Result<_, _>>()?,
                })
            })
            .collect::<std::result::Result<Vec<_>, CoreError>>()?;
        let subs = subs
            .into_iter()
            .map(|a| {
                if a.qos > 2 {
                    return Err(CoreError::InvalidArgument(format!("replay: qos {}", a.qos)));
                }
                Ok(ReplaySub {
                    filter: a.filter,
                    qos: a.qos as u8,
                    no_local: a.no_local,
                    retain_as_published: a.retain_as_published,
                })
            })
            .collect::<std::result::Result<Vec<_>, CoreError>>()?;
        // replay_frames checks this when it runs: replayAsync and drain refuse at the call.
        core_log::check_starts(&shards, &subs)?;
        let opts = ReplayOptions {
            version: version as u8,
            client_id: client_id.into_bytes(),
            max_entries: max_entries as usize,
            max_bytes: 4 << 20,
            max_packet: if max_packet.is_finite() && max_packet >= 0.0 {
                max_packet as usize
            } else {
                usize::MAX
            },
        };
        Ok(ReplayTask {
            inner,
            shards,
            subs,
            opts,
        })
    }

    fn run(&mut self) -> std::result::Result<core_log::ReplayFrames, CoreError> {
        core_log::replay_frames(&self.inner.log, &self.shards, &self.subs, &self.opts)
    }
}

impl Task for ReplayTask {
    type Output = core_log::ReplayFrames;
    type JsValue = ReplayResult;
    fn compute(&mut self) -> napi::Result<core_log::ReplayFrames> {
        guard::call_at("Store.replayAsync", THREAD, || self.run().map_err(to_napi))
    }
    fn resolve(&mut self, _env: Env, r: core_log::ReplayFrames) -> napi::Result<ReplayResult> {
        guard::call_at("Store.replayAsync", RESOLVE, || Ok(replay_result(r)))
    }
}

fn replay_result(r: core_log::ReplayFrames) -> ReplayResult {
    ReplayResult {
        meta: Float64Array::new(r.meta),
        next: Float64Array::new(r.next.into_iter().map(|n| n as f64).collect()),
        status: Uint32Array::new(r.status.into_iter().map(u32::from).collect()),
        skipped: r.skipped as f64,
        buffer: r.buf.into(),
    }
}

/// Splits `appendPacked`'s buffer (layout in its doc) into messages.
fn unpack_messages(b: &[u8], count: usize) -> std::result::Result<Vec<NewMessage>, CoreError> {
    let bad = |what: &str| CoreError::InvalidArgument(format!("appendPacked: {what}"));
    let mut out = Vec::with_capacity(count);
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], CoreError> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| bad("truncated buffer"))?;
        let s = &b[*at..end];
        *at = end;
        Ok(s)
    };
    for _ in 0..count {
        let h = take(&mut at, 16)?;
        let pub_len = u16::from_le_bytes([h[0], h[1]]) as usize;
        let topic_len = u16::from_le_bytes([h[2], h[3]]) as usize;
        let props_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let payload_len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let (qos, retain) = (h[12], h[13] != 0);
        let inbound_id = u16::from_le_bytes([h[14], h[15]]);
        let publisher = take(&mut at, pub_len)?.to_vec();
        let topic = String::from_utf8(take(&mut at, topic_len)?.to_vec())
            .map_err(|_| bad("topic is not UTF-8"))?;
        let properties = take(&mut at, props_len)?.to_vec();
        let payload = take(&mut at, payload_len)?.to_vec();
        out.push(NewMessage {
            publisher,
            topic,
            qos,
            retain,
            properties,
            payload,
            inbound_id,
        });
    }
    if at != b.len() {
        return Err(bad("bytes left after the last message"));
    }
    Ok(out)
}

/// Pairs `readAt`'s arrays into positions, checking every offset is an exact
/// integer (shards are range-checked by the core).
fn positions(shards: &[u32], offsets: &[f64]) -> std::result::Result<Vec<Position>, CoreError> {
    if shards.len() != offsets.len() {
        return Err(CoreError::InvalidArgument(format!(
            "readAt: {} shards but {} offsets",
            shards.len(),
            offsets.len()
        )));
    }
    shards
        .iter()
        .zip(offsets)
        .enumerate()
        .map(|(i, (&shard, &o))| {
            Ok(Position {
                shard,
                offset: Offset(offset_arg(o, || format!("readAt: offsets[{i}]"))?),
            })
        })
        .collect()
}

/// An offset from JS: an exact integer in 0..2^53 (`what` names it in the error).
pub(crate) fn offset_arg(
    o: f64,
    what: impl FnOnce() -> String,
) -> std::result::Result<u64, CoreError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0; // Number.MAX_SAFE_INTEGER
    if !(0.0..=MAX_SAFE).contains(&o) || o.fract() != 0.0 {
        return Err(CoreError::InvalidArgument(format!(
            "{} = {o} is not an integer in 0..2^53",
            what()
        )));
    }
    Ok(o as u64)
}

/// Pairs `scan`'s filters with their start offsets.
fn scan_filters(
    filters: Vec<String>,
    starts: &[f64],
) -> std::result::Result<Vec<ScanFilter>, CoreError> {
    if filters.len() != starts.len() {
        return Err(CoreError::InvalidArgument(format!(
            "scan: {} filters but {} starts",
            filters.len(),
            starts.len()
        )));
    }
    filters
        .into_iter()
        .zip(starts)
        .enumerate()
        .map(|(i, (filter, &s))| {
            Ok(ScanFilter {
                filter,
                start: offset_arg(s, || format!("scan: starts[{i}]"))?,
            })
        })
        .collect()
}

fn table(name: &str) -> std::result::Result<Table, CoreError> {
    name.parse()
}

fn status_code(s: ReadStatus) -> u32 {
    match s {
        ReadStatus::Next => 0,
        ReadStatus::Done => 1,
        ReadStatus::End => 2,
    }
}

#[napi]
impl Store {
    /// Opens (recovering) or creates the store in `dir`, off the event loop.
    #[napi(ts_return_type = "Promise<Store>")]
    pub fn open(
        dir: String,
        options: Option<StoreOptions>,
    ) -> Result<napi::bindgen_prelude::AsyncTask<OpenTask>, String> {
        guard::call("Store.open", || {
            Ok(napi::bindgen_prelude::AsyncTask::new(OpenTask {
                dir,
                options,
            }))
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

    fn new(inner: Inner) -> Store {
        Store {
            inner: Mutex::new(Some(Arc::new(inner))),
        }
    }

    fn get(&self) -> std::result::Result<Arc<Inner>, CoreError> {
        lock(&self.inner)
            .clone()
            .ok_or_else(|| CoreError::Closed("store closed".into()))
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

    /// Appends messages; resolves with their positions once durable per the fsync
    /// policy (group commit), rejects with `ERR_STORE_DISK_FULL` etc.
    #[napi(ts_return_type = "Promise<Array<AppendPosition>>")]
    pub fn append<'env>(
        &self,
        env: &'env Env,
        messages: Vec<AppendMessage>,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.append", |p: Pending<Vec<AppendPosition>>| {
            let inner = match self.get() {
                Ok(i) => i,
                Err(e) => return p.reject(e),
            };
            let msgs = messages
                .into_iter()
                .map(|m| NewMessage {
                    publisher: m.publisher.into_bytes(),
                    topic: m.topic,
                    qos: m.qos.min(255) as u8,
                    retain: m.retain,
                    properties: m.properties.map(|b| b.to_vec()).unwrap_or_default(),
                    payload: m.payload.to_vec(),
                    inbound_id: 0,
                })
                .collect();
            inner.log.append(
                msgs,
                p.completion(|v: Vec<Position>| {
                    v.into_iter()
                        .map(|p| AppendPosition {
                            shard: p.shard,
                            offset: p.offset.0 as f64,
                        })
                        .collect()
                }),
            );
        })
    }

    /// Appends messages packed in one buffer — per message, little-endian: `u16`
    /// publisher length, `u16` topic length, `u32` properties length, `u32` payload
    /// length, `u8` QoS, `u8` retain, `u16` the publisher's QoS 2 packet id (0 = none, see
    /// `findInbound`), then the publisher, topic, properties and payload bytes — without a
    /// JS object per message. Resolves like `append`, with the
    /// positions as one `Float64Array` of `[shard, offset]` pairs in input order.
    /// Rejects with `ERR_INVALID_ARGUMENT` for a buffer that does not hold exactly
    /// `count` well-formed messages (or a topic that is not UTF-8).
    #[napi(ts_return_type = "Promise<Float64Array>")]
    pub fn append_packed<'env>(
        &self,
        env: &'env Env,
        packed: &[u8],
        count: u32,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.appendPacked", |p: Pending<Float64Array>| {
            let inner = match self.get() {
                Ok(i) => i,
                Err(e) => return p.reject(e),
            };
            let msgs = match unpack_messages(packed, count as usize) {
                Ok(m) => m,
                Err(e) => return p.reject(e),
            };
            inner.log.append(
                msgs,
                p.completion(|v: Vec<Position>| {
                    let mut out = Vec::with_capacity(v.len() * 2);
                    for p in v {
                        out.push(p.shard as f64);
                        out.push(p.offset.0 as f64);
                    }
                    Float64Array::new(out)
                }),
            );
        })
    }

    /// Appends one message without building an object per message.
    #[napi(ts_return_type = "Promise<AppendPosition>")]
    #[allow(clippy::too_many_arguments)]
    pub fn append_one<'env>(
        &self,
        env: &'env Env,
        publisher: String,
        topic: String,
        qos: u32,
        retain: bool,
        payload: &[u8],
        properties: Option<&[u8]>,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.appendOne", |p: Pending<AppendPosition>| {
            let inner = match self.get() {
                Ok(i) => i,
                Err(e) => return p.reject(e),
            };
            let m = NewMessage {
                publisher: publisher.into_bytes(),
                topic,
                qos: qos.min(255) as u8,
                retain,
                properties: properties.map(<[u8]>::to_vec).unwrap_or_default(),
                payload: payload.to_vec(),
                inbound_id: 0,
            };
            inner.log.append(
                vec![m],
                p.completion(|v: Vec<Position>| AppendPosition {
                    shard: v[0].shard,
                    offset: v[0].offset.0 as f64,
                }),
            );
        })
    }

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

    fn put_cursor(inner: &Inner, c: Cursor) -> u32 {
        let id = inner.next_cursor.fetch_add(1, Ordering::Relaxed);
        lock(&inner.cursors).insert(id, c);
        id
    }

    /// Opens a cursor at the start of a stream; returns its id.
    #[napi]
    pub fn open_cursor(
        &self,
        shard: u32,
        generation: u32,
        stream: u32,
        filter: Option<String>,
    ) -> Result<u32, String> {
        guard::call("Store.openCursor", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let c = inner.log.cursor(
                StreamId {
                    shard,
                    generation,
                    stream,
                },
                filter,
            );
            Ok(Self::put_cursor(&inner, c))
        })
    }

    /// Re-opens a cursor from a persisted state; returns its id.
    #[napi]
    pub fn restore_cursor(&self, state: CursorState) -> Result<u32, String> {
        guard::call("Store.restoreCursor", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let c = Cursor {
                stream: StreamId {
                    shard: state.shard,
                    generation: state.generation,
                    stream: state.stream,
                },
                offset: Offset(state.offset.max(0.0) as u64),
                seen: state.seen.max(0.0) as u64,
                filter: state.filter,
            };
            Ok(Self::put_cursor(&inner, c))
        })
    }

    fn with_cursor<T>(
        &self,
        id: u32,
        f: impl FnOnce(&Log, &mut Cursor) -> std::result::Result<T, CoreError>,
    ) -> Result<T, String> {
        let inner = self.get().map_err(to_napi_coded)?;
        let mut map = lock(&inner.cursors);
        let mut c = map
            .get(&id)
            .cloned()
            .ok_or_else(|| to_napi_coded(CoreError::NotFound(format!("cursor {id}"))))?;
        // On a copy, kept as `f` leaves it (error or not): a panic in `f` leaves the map as
        // it was (see crate::guard on poisoned locks).
        let r = f(&inner.log, &mut c);
        map.insert(id, c);
        r.map_err(to_napi_coded)
    }

    /// The cursor's state, to persist.
    #[napi]
    pub fn cursor_state(&self, id: u32) -> Result<CursorState, String> {
        guard::call("Store.cursorState", || {
            self.with_cursor(id, |_, c| {
                Ok(CursorState {
                    shard: c.stream.shard,
                    generation: c.stream.generation,
                    stream: c.stream.stream,
                    offset: c.offset.0 as f64,
                    seen: c.seen as f64,
                    filter: c.filter.clone(),
                })
            })
        })
    }

    /// Moves a cursor to an offset.
    #[napi]
    pub fn seek(&self, id: u32, offset: f64) -> Result<(), String> {
        guard::call("Store.seek", || {
            self.with_cursor(id, |log, c| log.seek(c, Offset(offset.max(0.0) as u64)))
        })
    }

    /// Moves a cursor to the first record at or after a time (ms).
    #[napi]
    pub fn seek_time(&self, id: u32, ts_ms: f64) -> Result<(), String> {
        guard::call("Store.seekTime", || {
            self.with_cursor(id, |log, c| log.seek_time(c, ts_ms.max(0.0) as u64))
        })
    }

    /// Closes a cursor (no error if unknown).
    #[napi]
    pub fn close_cursor(&self, id: u32) -> Result<(), String> {
        guard::call("Store.closeCursor", || {
            let inner = self.get().map_err(to_napi_coded)?;
            lock(&inner.cursors).remove(&id);
            Ok(())
        })
    }

    /// Reads up to `perCursor` records from each cursor (at most `total` overall) into
    /// one buffer plus an offset table, advancing the cursors. Synchronous: it reads
    /// the page cache and takes well under a millisecond per thousand records.
    #[napi]
    pub fn fetch(
        &self,
        cursor_ids: Vec<u32>,
        per_cursor: u32,
        total: Option<u32>,
        max_bytes: Option<u32>,
    ) -> Result<FetchResult, String> {
        guard::call("Store.fetch", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let mut map = lock(&inner.cursors);
            let mut cs = Vec::with_capacity(cursor_ids.len());
            for id in &cursor_ids {
                let c = map
                    .get(id)
                    .ok_or_else(|| to_napi_coded(CoreError::NotFound(format!("cursor {id}"))))?;
                cs.push(c.clone());
            }
            let limits = FetchLimits {
                per_cursor: per_cursor as usize,
                total: total.map_or(usize::MAX, |t| t as usize),
                bytes: max_bytes.map_or(64 << 20, |b| b as usize),
            };
            let b = fetch::fetch(&inner.log, &mut cs, limits).map_err(to_napi_coded)?;
            for (id, c) in cursor_ids.iter().zip(cs) {
                map.insert(*id, c);
            }
            Ok(FetchResult {
                delivered: Uint32Array::new(b.per_cursor.iter().map(|c| c.delivered).collect()),
                skipped: b.per_cursor.iter().map(|c| c.skipped as f64).collect(),
                status: Uint32Array::new(
                    b.per_cursor.iter().map(|c| status_code(c.status)).collect(),
                ),
                offsets: Uint32Array::new(b.offsets),
                buffer: b.buf.into(),
            })
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
            let from = offset_arg(from, || "findInbound: from".into()).map_err(to_napi_coded)?;
            let id = u16::try_from(id)
                .map_err(|_| CoreError::InvalidArgument(format!("findInbound: packet id {id}")))
                .map_err(to_napi_coded)?;
            let found = core_log::find_inbound(&inner.log, shard, from, publisher.as_bytes(), id)
                .map_err(to_napi_coded)?;
            Ok(found.map(|o| o as f64))
        })
    }

    /// Reads the records at `(shards[i], offsets[i])` — positions returned by
    /// `append` — into one buffer plus an offset table (layout as `fetch`). A position
    /// whose record no longer exists (its generation dropped by retention, past its
    /// own retention, in a quarantined segment, or at/after the shard's end) is
    /// reported with `found[i] = 0`, not an error. Throws `ERR_INVALID_ARGUMENT` for
    /// arrays of different lengths, a shard ≥ `nShards` or an offset that is not an
    /// integer in 0..2^53.
    ///
    /// Synchronous, like `fetch`: each position is a binary search plus one read of
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
            let positions = positions(shards, &offsets).map_err(to_napi_coded)?;
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
    /// Matching records come back in the `fetch` entry layout with one filter mask each
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
    /// Synchronous, like `fetch`: a sequential read of committed bytes from the page
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
            let args = || -> std::result::Result<_, CoreError> {
                let from = offset_arg(from, || "scan: from".into())?;
                let until = until
                    .map(|u| offset_arg(u, || "scan: until".into()))
                    .transpose()?;
                Ok((from, until, scan_filters(filters, &starts)?))
            };
            let (from, until, filters) = args().map_err(to_napi_coded)?;
            let limits = ScanLimits {
                max_entries: max_entries as usize,
                max_bytes: max_bytes.map_or(4 << 20, |b| b as usize),
                max_examined: max_examined.map_or(65_536, |n| n as usize),
                until,
            };
            let b =
                core_log::scan(&inner.log, shard, from, &filters, limits).map_err(to_napi_coded)?;
            Ok(ScanResult {
                offsets: Uint32Array::new(b.offsets),
                masks: Uint32Array::new(b.masks),
                words: b.words as u32,
                next: b.next as f64,
                status: match b.status {
                    ScanStatus::Next => 0,
                    ScanStatus::Done => 1,
                    ScanStatus::Until => 2,
                },
                skipped: b.skipped as f64,
                buffer: b.buf.into(),
            })
        })
    }

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
            let mut task = ReplayTask::new(
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
            Ok(replay_result(r))
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
    ) -> Result<napi::bindgen_prelude::AsyncTask<ReplayTask>, String> {
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
            Ok(napi::bindgen_prelude::AsyncTask::new(task))
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

    /// Applies metadata writes atomically; resolves once committed (group commit).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn meta_apply<'env>(&self, env: &'env Env, ops: Vec<MetaOp>) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.metaApply", |p| self.apply_ops(p, ops))
    }

    /// `metaApply([{op:'put', ...}])`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn meta_put<'env>(
        &self,
        env: &'env Env,
        table_name: String,
        key: Buffer,
        value: Buffer,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.metaPut", |p| {
            let op = MetaOp {
                op: "put".into(),
                table: table_name,
                key,
                value: Some(value),
            };
            self.apply_ops(p, vec![op]);
        })
    }

    /// Checks `ops` and hands them to the metadata writer; `p` settles once committed.
    fn apply_ops(&self, p: Pending<()>, ops: Vec<MetaOp>) {
        let parsed: std::result::Result<Vec<Op>, CoreError> = ops
            .into_iter()
            .map(|o| {
                let t = table(&o.table)?;
                let key = o.key.to_vec();
                match o.op.as_str() {
                    "put" => Ok(Op::Put(
                        t,
                        key,
                        o.value.map(|v| v.to_vec()).ok_or_else(|| {
                            CoreError::InvalidArgument("put needs a value".into())
                        })?,
                    )),
                    "delete" => Ok(Op::Delete(t, key)),
                    "deletePrefix" => Ok(Op::DeletePrefix(t, key)),
                    other => Err(CoreError::InvalidArgument(format!("unknown op {other:?}"))),
                }
            })
            .collect();
        match (self.get(), parsed) {
            (Ok(inner), Ok(ops)) => inner.meta.apply(ops, p.completion(|()| ())),
            (Err(e), _) | (_, Err(e)) => p.reject(e),
        }
    }

    /// Statistics for `ds info`.
    #[napi]
    pub fn stats(&self) -> Result<StoreStats, String> {
        guard::call("Store.stats", || {
            let inner = self.get().map_err(to_napi_coded)?;
            let s = inner.log.stats();
            let open_cursors = lock(&inner.cursors).len() as u32;
            Ok(StoreStats {
                site_id: s.site_id,
                records: s.records as f64,
                bytes: s.bytes as f64,
                open_cursors,
                shards: s
                    .shards
                    .into_iter()
                    .map(|sh| ShardStats {
                        shard: sh.shard,
                        records: sh.records as f64,
                        bytes: sh.bytes as f64,
                        oldest_ts: sh.oldest_ts.map(|v| v as f64),
                        newest_ts: sh.newest_ts.map(|v| v as f64),
                        end_offset: sh.end_offset as f64,
                        generations: sh
                            .generations
                            .into_iter()
                            .map(|g| GenerationStats {
                                id: g.id,
                                start_ts: g.start_ts as f64,
                                last_ts: g.last_ts as f64,
                                streams: g.streams,
                                segments: g.segments,
                                records: g.records as f64,
                                bytes: g.bytes as f64,
                                sealed: g.sealed,
                            })
                            .collect(),
                    })
                    .collect(),
            })
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
    ) -> Result<napi::bindgen_prelude::AsyncTask<CheckTask>, String> {
        guard::call("Store.check", || {
            Ok(napi::bindgen_prelude::AsyncTask::new(CheckTask {
                dir,
                options,
            }))
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
            let floor = offset_arg(floor, || "raiseEnd: floor".into()).map_err(to_napi_coded)?;
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
            let r = inner.log.recovery();
            Ok(RecoveryInfo {
                segments: r.segments as f64,
                records: r.records as f64,
                scanned_bytes: r.scanned_bytes as f64,
                truncated_bytes: r.truncated_bytes as f64,
                rebuilt_indexes: r.rebuilt_indexes as f64,
                quarantined: r.quarantined.clone(),
                events: r.events.clone(),
                elapsed_ms: r.elapsed_ms as f64,
            })
        })
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
