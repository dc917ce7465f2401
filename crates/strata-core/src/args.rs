//! Arguments as a host binding hands them over — offsets and sizes as `f64` (JavaScript
//! numbers), small integers as `u32`, options and names as strings — checked and turned
//! into core types. The binding (`strata-node`) only moves values out of JavaScript
//! objects into these primitives; every check, default and error message is here
//! (`InvalidArgument` with the argument named, e.g. `scan: starts[2] = 1.5 is not an
//! integer in 0..2^53`).
use crate::drain::InFlight;
use crate::error::CoreError;
use crate::log::{
    check_starts, FsyncPolicy, Offset, Options, Position, ReplayOptions, ReplayShard, ReplaySub,
    ScanFilter, ScanLimits,
};
use crate::store::OnCorruption;

fn invalid(what: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(what.to_string())
}

/// Largest integer a JavaScript number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// An offset given as a number: an exact integer in 0..2^53 (`what` names it in the error).
pub fn offset(o: f64, what: impl FnOnce() -> String) -> Result<u64, CoreError> {
    if !(0.0..=MAX_SAFE_INTEGER).contains(&o) || o.fract() != 0.0 {
        return Err(invalid(format_args!(
            "{} = {o} is not an integer in 0..2^53",
            what()
        )));
    }
    Ok(o as u64)
}

/// A packet identifier (0..=65535; 0 is "none" where the caller allows it).
pub fn packet_id(id: u32, what: &str) -> Result<u16, CoreError> {
    u16::try_from(id).map_err(|_| invalid(format_args!("{what}: packet id {id}")))
}

/// Options of a store as given (`Store.open`): signed sizes, strings for the policies.
/// Omitted fields take the defaults of [`Options`] and [`OnCorruption`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreArgs {
    /// Shards, fixed at first start.
    pub n_shards: Option<u32>,
    /// `always`, `interval:<ms>` or `none`.
    pub fsync: Option<String>,
    /// Segment size in bytes.
    pub segment_bytes: Option<i64>,
    /// Generation span in ms.
    pub generation_span_ms: Option<i64>,
    /// Retention in ms; 0 keeps forever.
    pub retention_ms: Option<i64>,
    /// Per-topic-filter retention overrides (filter, ms); first match wins.
    pub retention_overrides: Vec<(String, i64)>,
    /// Distinct values before a topic level becomes a stream wildcard.
    pub lts_threshold: Option<u32>,
    /// Verify every record of sealed segments on open.
    pub verify_on_open: Option<bool>,
    /// Durable metadata commits (default: durable unless `fsync` is `none`).
    pub meta_durable: Option<bool>,
    /// `recover` or `refuse`.
    pub on_corruption: Option<String>,
}

/// What [`StoreArgs::resolve`] gives: the log's options, whether metadata commits are
/// durable, what to do with damage.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Options of the log.
    pub log: Options,
    /// Metadata commits are durable.
    pub meta_durable: bool,
    /// What to do with damage beyond a crash's leftovers.
    pub on_corruption: OnCorruption,
}

impl StoreArgs {
    /// Checks the options: sizes and times ≥ 0, known policies.
    pub fn resolve(self) -> Result<StoreConfig, CoreError> {
        let mut opts = Options {
            n_shards: self.n_shards,
            ..Options::default()
        };
        if let Some(f) = &self.fsync {
            opts.fsync = f.parse()?;
        }
        let pos = |v: i64, what: &str| -> Result<u64, CoreError> {
            u64::try_from(v).map_err(|_| invalid(format_args!("{what} must be ≥ 0")))
        };
        if let Some(v) = self.segment_bytes {
            opts.segment_bytes = pos(v, "segmentBytes")?;
        }
        if let Some(v) = self.generation_span_ms {
            opts.generation_span_ms = pos(v, "generationSpanMs")?;
        }
        if let Some(v) = self.retention_ms {
            opts.retention_ms = match pos(v, "retentionMs")? {
                0 => None,
                ms => Some(ms),
            };
        }
        for (filter, ms) in self.retention_overrides {
            opts.retention_overrides
                .push((filter, pos(ms, "retention override ms")?));
        }
        if let Some(t) = self.lts_threshold {
            opts.lts_threshold = t as usize;
        }
        if let Some(v) = self.verify_on_open {
            opts.verify_on_open = v;
        }
        let on_corruption = match &self.on_corruption {
            Some(v) => v.parse()?,
            None => OnCorruption::default(),
        };
        let meta_durable = self.meta_durable.unwrap_or(opts.fsync != FsyncPolicy::None);
        Ok(StoreConfig {
            log: opts,
            meta_durable,
            on_corruption,
        })
    }
}

/// Pairs `readAt`'s arrays into positions, every offset an exact integer (shards are
/// range-checked by the read).
pub fn positions(shards: &[u32], offsets: &[f64]) -> Result<Vec<Position>, CoreError> {
    if shards.len() != offsets.len() {
        return Err(invalid(format_args!(
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
                offset: Offset(offset(o, || format!("readAt: offsets[{i}]"))?),
            })
        })
        .collect()
}

/// One `scan` call's arguments, checked: where to start, the filters with their start
/// offsets, the limits (defaults: 4 MiB, 65536 records examined).
#[allow(clippy::too_many_arguments)]
pub fn scan(
    from: f64,
    filters: Vec<String>,
    starts: &[f64],
    max_entries: u32,
    max_bytes: Option<u32>,
    until: Option<f64>,
    max_examined: Option<u32>,
) -> Result<(u64, Vec<ScanFilter>, ScanLimits), CoreError> {
    let from = offset(from, || "scan: from".into())?;
    let until = until
        .map(|u| offset(u, || "scan: until".into()))
        .transpose()?;
    if filters.len() != starts.len() {
        return Err(invalid(format_args!(
            "scan: {} filters but {} starts",
            filters.len(),
            starts.len()
        )));
    }
    let filters = filters
        .into_iter()
        .zip(starts)
        .enumerate()
        .map(|(i, (filter, &s))| {
            Ok(ScanFilter {
                filter,
                start: offset(s, || format!("scan: starts[{i}]"))?,
            })
        })
        .collect::<Result<_, CoreError>>()?;
    let limits = ScanLimits {
        max_entries: max_entries as usize,
        max_bytes: max_bytes.map_or(4 << 20, |b| b as usize),
        max_examined: max_examined.map_or(65_536, |n| n as usize),
        until,
    };
    Ok((from, filters, limits))
}

/// One shard of a `replay` call as given.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayShardArgs {
    /// Shard.
    pub shard: u32,
    /// First offset to examine.
    pub from: f64,
    /// Stop before this offset.
    pub until: Option<f64>,
    /// Per subscription, the first offset it applies to.
    pub starts: Vec<f64>,
}

/// One subscription of a `replay` call as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySubArgs {
    /// Topic filter.
    pub filter: String,
    /// QoS, 0..=2.
    pub qos: u32,
    /// No Local.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
}

/// A `replay` (or drain) request, checked: offsets exact integers, QoS ≤ 2, one start per
/// subscription in every shard. `max_packet` not finite or negative means no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Shards to read.
    pub shards: Vec<ReplayShard>,
    /// The session's subscriptions.
    pub subs: Vec<ReplaySub>,
    /// Encoding and bounds.
    pub opts: ReplayOptions,
}

impl Replay {
    /// Checks a request (scan budget per shard: 4 MiB).
    pub fn new(
        shards: Vec<ReplayShardArgs>,
        subs: Vec<ReplaySubArgs>,
        version: u32,
        client_id: String,
        max_entries: u32,
        max_packet: f64,
    ) -> Result<Replay, CoreError> {
        let shards = shards
            .into_iter()
            .map(|a| {
                Ok(ReplayShard {
                    shard: a.shard,
                    from: offset(a.from, || "replay: from".into())?,
                    until: a
                        .until
                        .map(|u| offset(u, || "replay: until".into()))
                        .transpose()?,
                    starts: a
                        .starts
                        .iter()
                        .map(|&s| offset(s, || "replay: starts".into()))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        let subs = subs
            .into_iter()
            .map(|a| {
                if a.qos > 2 {
                    return Err(invalid(format_args!("replay: qos {}", a.qos)));
                }
                Ok(ReplaySub {
                    filter: a.filter,
                    qos: a.qos as u8,
                    no_local: a.no_local,
                    retain_as_published: a.retain_as_published,
                })
            })
            .collect::<Result<Vec<_>, CoreError>>()?;
        // replay_frames checks this when it runs: an asynchronous replay or a drain
        // refuses at the call.
        check_starts(&shards, &subs)?;
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
        Ok(Replay { shards, subs, opts })
    }
}

/// Values per in-flight delivery when they cross as numbers: packet id, shard, offset,
/// retain (0/1).
pub const INFLIGHT_QUAD: usize = 4;
/// In-flight quad: packet id.
pub const INFLIGHT_ID: usize = 0;
/// In-flight quad: shard.
pub const INFLIGHT_SHARD: usize = 1;
/// In-flight quad: offset.
pub const INFLIGHT_OFFSET: usize = 2;
/// In-flight quad: retain (0/1).
pub const INFLIGHT_RETAIN: usize = 3;

/// Values per drain report (`drain::Report`) when they cross as numbers: acked (0 written,
/// 1 acknowledged), shard, offset, QoS, retain (0/1).
pub const REPORT_STRIDE: usize = 5;
/// Report: 0 the frame was written, 1 its delivery was acknowledged.
pub const REPORT_ACKED: usize = 0;
/// Report: shard.
pub const REPORT_SHARD: usize = 1;
/// Report: offset.
pub const REPORT_OFFSET: usize = 2;
/// Report: QoS it was sent with.
pub const REPORT_QOS: usize = 3;
/// Report: retain (0/1).
pub const REPORT_RETAIN: usize = 4;

/// The in-flight deliveries handed to a drain loop, as [`INFLIGHT_QUAD`] numbers each.
pub fn inflight(quads: &[f64]) -> Result<Vec<InFlight>, CoreError> {
    if !quads.len().is_multiple_of(INFLIGHT_QUAD) {
        return Err(invalid(format_args!(
            "drain: inflight has {} values, not quads",
            quads.len()
        )));
    }
    let mut held = Vec::with_capacity(quads.len() / INFLIGHT_QUAD);
    for q in quads.chunks_exact(INFLIGHT_QUAD) {
        let (id, shard) = (q[INFLIGHT_ID], q[INFLIGHT_SHARD]);
        if !(1.0..=65535.0).contains(&id)
            || id.fract() != 0.0
            || !(0.0..=f64::from(u32::MAX)).contains(&shard)
        {
            return Err(invalid(format_args!("drain: bad in-flight entry {q:?}")));
        }
        held.push(InFlight {
            id: id as u16,
            shard: shard as u32,
            offset: offset(q[INFLIGHT_OFFSET], || "drain: in-flight offset".into())?,
            retain: q[INFLIGHT_RETAIN] != 0.0,
        });
    }
    Ok(held)
}

/// A drain loop's window (> 0) and next packet id (≤ 65535).
pub fn drain_window(window: u32, next_id: u32) -> Result<(usize, u16), CoreError> {
    match u16::try_from(next_id) {
        Ok(id) if window > 0 => Ok((window as usize, id)),
        _ => Err(invalid(format_args!(
            "drain: window {window}, next id {next_id}"
        ))),
    }
}

#[cfg(test)]
mod tests;
