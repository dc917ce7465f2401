//! The plain objects that cross the binding (`#[napi(object)]`) and their conversions to
//! and from `strata-core` types. No checks here: arguments go to `strata_core::args`.
use napi::bindgen_prelude::{Buffer, Float64Array, Uint32Array, Uint8Array};
use napi_derive::napi;
use strata_core::args::{ReplayShardArgs, ReplaySubArgs, StoreArgs};
use strata_core::log::{self as core_log, Position, Recovery, Stats};
use strata_core::store::{LossRecord, OpenReport};

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

pub(crate) fn report_info(r: &OpenReport) -> StoreReportInfo {
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

/// Records read by position (`readAt`): one entry per position found, in input
/// order, entry `j` spanning `offsets[j]..offsets[j+1]` of `buffer` (the batch entry
/// layout: `layouts().entry`, docs/storage.md); `found[i]` is 1 when input position `i` has an entry,
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
/// layout `layouts().entry`, docs/storage.md). Entry `j`'s filter mask is
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

/// The result of `scanLines`: the message log's JSON lines of a scan.
#[napi(object)]
pub struct ScanLinesResult {
    /// The lines, back to back, each ending in a newline.
    pub buffer: Buffer,
    /// Line boundaries (`lines + 1` values).
    pub offsets: Uint32Array,
    /// `timestamp, offset` of each line.
    pub meta: Float64Array,
    /// As `ScanResult.next`.
    pub next: f64,
    /// As `ScanResult.status`.
    pub status: u32,
    /// As `ScanResult.skipped`.
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
    /// `fdatasync`s of its record files since the store opened.
    pub syncs: f64,
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

/// The options as `strata_core::args` takes them.
pub(crate) fn store_args(o: Option<StoreOptions>) -> StoreArgs {
    let o = o.unwrap_or_default();
    StoreArgs {
        n_shards: o.n_shards,
        fsync: o.fsync,
        segment_bytes: o.segment_bytes,
        generation_span_ms: o.generation_span_ms,
        retention_ms: o.retention_ms,
        retention_overrides: o
            .retention_overrides
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.filter, r.ms))
            .collect(),
        lts_threshold: o.lts_threshold,
        verify_on_open: o.verify_on_open,
        meta_durable: o.meta_durable,
        on_corruption: o.on_corruption,
    }
}

pub(crate) fn replay_shards(v: Vec<ReplayShardArg>) -> Vec<ReplayShardArgs> {
    v.into_iter()
        .map(|a| ReplayShardArgs {
            shard: a.shard,
            from: a.from,
            until: a.until,
            starts: a.starts,
        })
        .collect()
}

pub(crate) fn replay_subs(v: Vec<ReplaySubArg>) -> Vec<ReplaySubArgs> {
    v.into_iter()
        .map(|a| ReplaySubArgs {
            filter: a.filter,
            qos: a.qos,
            no_local: a.no_local,
            retain_as_published: a.retain_as_published,
        })
        .collect()
}

pub(crate) fn append_position(p: &Position) -> AppendPosition {
    AppendPosition {
        shard: p.shard,
        offset: p.offset.0 as f64,
    }
}

pub(crate) fn store_stats(s: Stats) -> StoreStats {
    StoreStats {
        site_id: s.site_id,
        records: s.records as f64,
        bytes: s.bytes as f64,
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
                syncs: sh.syncs as f64,
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
    }
}

pub(crate) fn recovery_info(r: &Recovery) -> RecoveryInfo {
    RecoveryInfo {
        segments: r.segments as f64,
        records: r.records as f64,
        scanned_bytes: r.scanned_bytes as f64,
        truncated_bytes: r.truncated_bytes as f64,
        rebuilt_indexes: r.rebuilt_indexes as f64,
        quarantined: r.quarantined.clone(),
        events: r.events.clone(),
        elapsed_ms: r.elapsed_ms as f64,
    }
}

pub(crate) fn replay_result(r: core_log::ReplayFrames) -> ReplayResult {
    ReplayResult {
        meta: Float64Array::new(r.meta),
        next: Float64Array::new(r.next.into_iter().map(|n| n as f64).collect()),
        status: Uint32Array::new(r.status.into_iter().map(u32::from).collect()),
        skipped: r.skipped as f64,
        buffer: r.buf.into(),
    }
}
