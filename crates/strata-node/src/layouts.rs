//! `layouts()`: the byte and array layouts that cross the binding, exported from their one
//! definition in `strata-core` so TypeScript reads them instead of restating them.
//! Conversion only (every value is a `strata-core` constant).

// napi-derive registers the exports only outside `cfg(test)` (see topic.rs).
#![cfg_attr(test, allow(dead_code))]
use crate::guard;
use napi_derive::napi;
use strata_core::args as core_args;
use strata_core::log::{self as core_log, entry, packed};
use strata_core::meta::{packed_ops, progress, Table};
use strata_core::topic::retained_record;

/// The batch entry (`readAt`, `scan`; `strata_core::log::entry`): byte offsets of the
/// fields of one entry, little-endian; the publisher, topic, properties and payload bytes
/// follow the header in that order.
#[napi(object)]
pub struct EntryLayout {
    /// Header bytes (32): where the publisher's bytes start.
    pub header: u32,
    /// Offset in the shard, u64 (0).
    pub offset: u32,
    /// Timestamp ms, u64 (8).
    pub timestamp: u32,
    /// Payload length, u32 (16).
    pub payload_len: u32,
    /// Properties length, u32 (20).
    pub properties_len: u32,
    /// Topic length, u16 (24).
    pub topic_len: u32,
    /// Publisher length, u16 (26).
    pub publisher_len: u32,
    /// Flags, u8 (28).
    pub flags: u32,
    /// Shard, u16 (30).
    pub shard: u32,
    /// Flags: QoS bits (3).
    pub flag_qos_mask: u32,
    /// Flags: retain bit (4).
    pub flag_retain: u32,
}

/// The session progress record (`strata_core::meta::progress`, table `progress`),
/// big-endian; see that module for the whole layout.
#[napi(object)]
pub struct ProgressLayout {
    /// Current version (2).
    pub version: u32,
    /// Version without the backlog counts (1).
    pub version_no_backlog: u32,
    /// Byte offset of the shard count, u16 (1).
    pub shard_count: u32,
    /// Byte offset of the first next offset (3).
    pub next: u32,
    /// Bytes per next offset, f64 (8).
    pub next_bytes: u32,
    /// After the next offsets: excess, u32 (+0).
    pub excess: u32,
    /// After the next offsets: backlog, f64 (+4).
    pub backlog: u32,
    /// After the next offsets: backlog bytes, f64 (+12).
    pub backlog_bytes: u32,
    /// After the next offsets: gap count, u16 (+20).
    pub gap_count: u32,
    /// Bytes from the end of the next offsets to the first gap (22).
    pub head_tail_bytes: u32,
    /// Bytes per gap (18).
    pub gap_bytes: u32,
    /// Gap: shard, u16 (0).
    pub gap_shard: u32,
    /// Gap: from, f64 (2).
    pub gap_from: u32,
    /// Gap: to, f64 (10).
    pub gap_to: u32,
    /// Gap `to` while open (-1).
    pub gap_open: f64,
    /// Bytes of the entry count, u32 (4).
    pub entry_count_bytes: u32,
    /// Fixed bytes per entry (16).
    pub entry_bytes: u32,
    /// Entry: shard, u16 (0).
    pub entry_shard: u32,
    /// Entry: offset, f64 (2).
    pub entry_offset: u32,
    /// Entry: packet id, u16 (10).
    pub entry_packet_id: u32,
    /// Entry: QoS, u8 (12).
    pub entry_qos: u32,
    /// Entry: phase, u8 (13).
    pub entry_phase: u32,
    /// Entry: flags, u8 (14).
    pub entry_flags: u32,
    /// Entry: subscription id count, u8 (15).
    pub entry_sub_id_count: u32,
    /// Bytes per subscription id, u32 (4).
    pub sub_id_bytes: u32,
    /// Bytes of a retained topic's length, u16 (2).
    pub topic_len_bytes: u32,
    /// Flag: retain (1).
    pub flag_retain: u32,
    /// Flag: pinned (2).
    pub flag_pinned: u32,
    /// Flag: retained message sent on subscribe, topic follows (4).
    pub flag_retained_message: u32,
    /// Phase: queued (0).
    pub phase_queued: u32,
    /// Phase: PUBLISH sent (1).
    pub phase_publish_sent: u32,
    /// Phase: PUBREL sent (2).
    pub phase_pubrel_sent: u32,
}

/// The packed append buffer (`appendPacked`; `strata_core::log::packed`): byte offsets in
/// each message's header, little-endian; publisher, topic, properties and payload follow.
#[napi(object)]
pub struct PackedLayout {
    /// Header bytes (16).
    pub header: u32,
    /// Publisher length, u16 (0).
    pub publisher_len: u32,
    /// Topic length, u16 (2).
    pub topic_len: u32,
    /// Properties length, u32 (4).
    pub properties_len: u32,
    /// Payload length, u32 (8).
    pub payload_len: u32,
    /// QoS, u8 (12).
    pub qos: u32,
    /// Flags, u8 (13): `flagRetain`, `flagSamePublisher`, `flagSameTopic`.
    pub flags: u32,
    /// The message is retained (1).
    pub flag_retain: u32,
    /// The previous message's publisher, its bytes not repeated (2).
    pub flag_same_publisher: u32,
    /// The previous message's topic, its bytes not repeated (4).
    pub flag_same_topic: u32,
    /// The publisher's QoS 2 packet id, u16, 0 = none (14).
    pub inbound_id: u32,
}

/// The retained record (`RetainedMessages`, the `retained` table) and its match batches.
#[napi(object)]
pub struct RetainedLayout {
    /// First byte of a record (1).
    pub version: u32,
    /// Bytes before the publisher (16).
    pub header: u32,
    /// QoS (1).
    pub qos: u32,
    /// Receive time, u64 ms (2).
    pub received_at: u32,
    /// Publisher length, u16 (10).
    pub publisher_len: u32,
    /// Properties length, u32 (12).
    pub properties_len: u32,
    /// Bytes of the topic length before each match in a batch, u16 (2).
    pub batch_topic_len: u32,
}

/// `ReplayResult.meta` (`replay`, `replayAsync`): values per frame and their positions;
/// the per-shard status codes.
#[napi(object)]
pub struct ReplayLayout {
    /// Values per frame (6).
    pub stride: u32,
    /// Shard (0).
    pub shard: u32,
    /// Offset (1).
    pub offset: u32,
    /// Timestamp ms (2).
    pub timestamp: u32,
    /// End of the frame in the buffer (3).
    pub end: u32,
    /// Position of the packet id, -1 for QoS 0 (4).
    pub id_pos: u32,
    /// Payload length (5).
    pub payload_len: u32,
    /// Status: a limit was reached (0).
    pub status_next: u32,
    /// Status: caught up (1).
    pub status_done: u32,
    /// Status: reached `until` (2).
    pub status_until: u32,
    /// Status: stopped before a delivery the general path must make (3).
    pub status_slow: u32,
}

/// In-flight deliveries as numbers (`Store.drain`'s `inflight`, `DrainHandback.inflight`,
/// `DrainSnapshot.inflight`).
#[napi(object)]
pub struct InflightLayout {
    /// Values per delivery (4).
    pub quad: u32,
    /// Packet id (0).
    pub id: u32,
    /// Shard (1).
    pub shard: u32,
    /// Offset (2).
    pub offset: u32,
    /// Retain, 0/1 (3).
    pub retain: u32,
}

/// Drain reports as numbers (`DrainControl.takeReports`, `DrainHandback.reports`).
#[napi(object)]
pub struct ReportLayout {
    /// Values per report (5).
    pub stride: u32,
    /// 0: the frame was written; 1: its delivery was acknowledged (0).
    pub acked: u32,
    /// Shard (1).
    pub shard: u32,
    /// Offset (2).
    pub offset: u32,
    /// QoS it was sent with (3).
    pub qos: u32,
    /// Retain, 0/1 (4).
    pub retain: u32,
}

/// Metadata writes packed in one buffer (`Store.metaApplyPacked`;
/// `strata_core::meta::packed_ops`): per operation `[kind u8][table u8][key_len u32][key]`
/// then, for a put, `[value_len u32][value]`; little-endian.
#[napi(object)]
pub struct MetaOpsLayout {
    /// Kind codes.
    pub put: u32,
    pub delete: u32,
    pub delete_prefix: u32,
    /// Bytes before the key (kind, table, key length).
    pub header: u32,
    /// Bytes of a value's length.
    pub value_len: u32,
    /// Table names by their index in the `table` byte.
    pub tables: Vec<String>,
}

/// Every layout `layouts()` exports.
#[napi(object)]
pub struct Layouts {
    pub entry: EntryLayout,
    pub retained: RetainedLayout,
    pub progress: ProgressLayout,
    pub packed: PackedLayout,
    pub replay: ReplayLayout,
    pub inflight: InflightLayout,
    pub report: ReportLayout,
    pub meta_ops: MetaOpsLayout,
}

fn n(v: usize) -> u32 {
    v as u32
}

/// The layouts that cross the binding, from their one definition in `strata-core`:
/// `entry` (the batch entries of `readAt` and `scan`), `progress` (the session progress
/// record kept in the `progress` table), `packed` (`appendPacked`'s buffer), `replay`
/// (`ReplayResult.meta` and status codes), `inflight` (the drain loop's in-flight quads),
/// `report` (the drain loop's reports of deliveries written and acknowledged).
/// Byte offsets and sizes, flag bits and codes; values in each field's doc. Read once at
/// start-up.
#[napi]
pub fn layouts() -> napi::Result<Layouts, String> {
    guard::call("layouts", || {
        Ok(Layouts {
            retained: RetainedLayout {
                version: u32::from(retained_record::RECORD_VERSION),
                header: n(retained_record::RECORD_HEADER),
                qos: n(retained_record::RECORD_QOS),
                received_at: n(retained_record::RECORD_RECEIVED_AT),
                publisher_len: n(retained_record::RECORD_PUBLISHER_LEN),
                properties_len: n(retained_record::RECORD_PROPERTIES_LEN),
                batch_topic_len: n(retained_record::BATCH_TOPIC_LEN),
            },
            entry: EntryLayout {
                header: n(entry::ENTRY_HEADER),
                offset: n(entry::ENTRY_OFFSET),
                timestamp: n(entry::ENTRY_TIMESTAMP),
                payload_len: n(entry::ENTRY_PAYLOAD_LEN),
                properties_len: n(entry::ENTRY_PROPERTIES_LEN),
                topic_len: n(entry::ENTRY_TOPIC_LEN),
                publisher_len: n(entry::ENTRY_PUBLISHER_LEN),
                flags: n(entry::ENTRY_FLAGS),
                shard: n(entry::ENTRY_SHARD),
                flag_qos_mask: u32::from(entry::ENTRY_FLAG_QOS_MASK),
                flag_retain: u32::from(entry::ENTRY_FLAG_RETAIN),
            },
            progress: ProgressLayout {
                version: u32::from(progress::VERSION),
                version_no_backlog: u32::from(progress::VERSION_NO_BACKLOG),
                shard_count: n(progress::SHARD_COUNT),
                next: n(progress::NEXT),
                next_bytes: n(progress::NEXT_BYTES),
                excess: n(progress::EXCESS),
                backlog: n(progress::BACKLOG),
                backlog_bytes: n(progress::BACKLOG_BYTES),
                gap_count: n(progress::GAP_COUNT),
                head_tail_bytes: n(progress::HEAD_TAIL_BYTES),
                gap_bytes: n(progress::GAP_BYTES),
                gap_shard: n(progress::GAP_SHARD),
                gap_from: n(progress::GAP_FROM),
                gap_to: n(progress::GAP_TO),
                gap_open: progress::GAP_OPEN,
                entry_count_bytes: n(progress::ENTRY_COUNT_BYTES),
                entry_bytes: n(progress::ENTRY_BYTES),
                entry_shard: n(progress::ENTRY_SHARD),
                entry_offset: n(progress::ENTRY_OFFSET),
                entry_packet_id: n(progress::ENTRY_PACKET_ID),
                entry_qos: n(progress::ENTRY_QOS),
                entry_phase: n(progress::ENTRY_PHASE),
                entry_flags: n(progress::ENTRY_FLAGS),
                entry_sub_id_count: n(progress::ENTRY_SUB_ID_COUNT),
                sub_id_bytes: n(progress::SUB_ID_BYTES),
                topic_len_bytes: n(progress::TOPIC_LEN_BYTES),
                flag_retain: u32::from(progress::FLAG_RETAIN),
                flag_pinned: u32::from(progress::FLAG_PINNED),
                flag_retained_message: u32::from(progress::FLAG_RETAINED_MESSAGE),
                phase_queued: u32::from(progress::PHASE_QUEUED),
                phase_publish_sent: u32::from(progress::PHASE_PUBLISH_SENT),
                phase_pubrel_sent: u32::from(progress::PHASE_PUBREL_SENT),
            },
            packed: PackedLayout {
                header: n(packed::HEADER),
                publisher_len: n(packed::PUBLISHER_LEN),
                topic_len: n(packed::TOPIC_LEN),
                properties_len: n(packed::PROPERTIES_LEN),
                payload_len: n(packed::PAYLOAD_LEN),
                qos: n(packed::QOS),
                flags: n(packed::FLAGS),
                flag_retain: u32::from(packed::FLAG_RETAIN),
                flag_same_publisher: u32::from(packed::FLAG_SAME_PUBLISHER),
                flag_same_topic: u32::from(packed::FLAG_SAME_TOPIC),
                inbound_id: n(packed::INBOUND_ID),
            },
            replay: ReplayLayout {
                stride: n(core_log::META_STRIDE),
                shard: n(core_log::META_SHARD),
                offset: n(core_log::META_OFFSET),
                timestamp: n(core_log::META_TIMESTAMP),
                end: n(core_log::META_END),
                id_pos: n(core_log::META_ID_POS),
                payload_len: n(core_log::META_PAYLOAD_LEN),
                status_next: u32::from(core_log::REPLAY_NEXT),
                status_done: u32::from(core_log::REPLAY_DONE),
                status_until: u32::from(core_log::REPLAY_UNTIL),
                status_slow: u32::from(core_log::REPLAY_SLOW),
            },
            inflight: InflightLayout {
                quad: n(core_args::INFLIGHT_QUAD),
                id: n(core_args::INFLIGHT_ID),
                shard: n(core_args::INFLIGHT_SHARD),
                offset: n(core_args::INFLIGHT_OFFSET),
                retain: n(core_args::INFLIGHT_RETAIN),
            },
            report: ReportLayout {
                stride: n(core_args::REPORT_STRIDE),
                acked: n(core_args::REPORT_ACKED),
                shard: n(core_args::REPORT_SHARD),
                offset: n(core_args::REPORT_OFFSET),
                qos: n(core_args::REPORT_QOS),
                retain: n(core_args::REPORT_RETAIN),
            },
            meta_ops: MetaOpsLayout {
                put: u32::from(packed_ops::KIND_PUT),
                delete: u32::from(packed_ops::KIND_DELETE),
                delete_prefix: u32::from(packed_ops::KIND_DELETE_PREFIX),
                header: n(packed_ops::HEADER),
                value_len: n(packed_ops::VALUE_LEN),
                tables: Table::ALL.iter().map(|t| t.name().to_string()).collect(),
            },
        })
    })
}
