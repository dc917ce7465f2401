//! The native drain loop: a persistent session's backlog written to its socket without
//! the JavaScript event loop doing any per-message work (SPEC B3, issue 4's drain).
//!
//! The broker hands a plain TCP connection over while its session drains the log on the
//! fast path (`replay_frames`): [`run`] reads the session's shards in batches, gives each
//! QoS 1 frame a free packet id, keeps the in-flight window, writes the frames to the
//! socket and takes plain PUBACKs off it, on its own thread, until
//! - every shard is read up to the bounds it was given ([`Ended::CaughtUp`]), or up to a
//!   delivery the general path must make ([`Ended::Slow`]);
//! - the client sends anything but a plain PUBACK ([`Ended::Packet`]: the bytes from that
//!   packet on are handed back unread), closes ([`Ended::Eof`]) or fails
//!   ([`Ended::Failed`]);
//! - the broker asks for it back ([`Control::stop`], synchronous: it returns once the
//!   loop has parked, so the caller has the session's state at once — a takeover, a close
//!   or a kick never waits for a callback).
//!
//! What comes back ([`Handback`]) is everything the JavaScript side needs to carry on as
//! if it had sent the frames itself: the in-flight deliveries in the order they were sent
//! (packet id and log position), each shard's next offset and scan status, the packet id
//! counter, bytes received and not consumed, and bytes of frames already given packet ids
//! but not yet accepted by the socket (to be written first).
//!
//! Invariants:
//! - a frame is either in the in-flight table (its bytes written or in `unsent`), or at
//!   or after the `next` handed back for its shard: nothing is skipped or sent twice;
//! - while the loop runs, nothing else reads or writes the socket (the caller stops
//!   reading and holds its writes), so frames and packets are never interleaved;
//! - [`Control::snapshot`] sees the same state a stop at that moment would hand back
//!   (the session's progress is committed from it while the loop runs).
//!
//! Platforms: the loop ([`Control`], [`run`]) polls the socket and an `eventfd`, so it is
//! built on Linux only (`cfg(target_os = "linux")`); [`SUPPORTED`] says whether this build
//! has it. Elsewhere the types below still exist and the broker drains on the event loop.
use crate::error::CoreError;
use crate::log::{replay_frames, Log, ReplayFrames, ReplayOptions, ReplayShard, ReplaySub};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{run, Control};

/// Whether this build has the native drain loop ([`Control`], [`run`]): Linux only.
pub const SUPPORTED: bool = cfg!(target_os = "linux");

/// Where the loop reads its frames: the log, or (in the binding) a handle that does not keep
/// a closed store open.
pub trait FrameSource {
    /// As [`replay_frames`].
    fn replay(
        &self,
        shards: &[ReplayShard],
        subs: &[ReplaySub],
        opts: &ReplayOptions,
    ) -> Result<ReplayFrames, CoreError>;
}

impl FrameSource for Log {
    fn replay(
        &self,
        shards: &[ReplayShard],
        subs: &[ReplaySub],
        opts: &ReplayOptions,
    ) -> Result<ReplayFrames, CoreError> {
        replay_frames(self, shards, subs, opts)
    }
}

/// One delivery in flight: sent, its PUBACK not yet received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Packet identifier.
    pub id: u16,
    /// Log position of the message.
    pub shard: u32,
    /// Log position of the message.
    pub offset: u64,
    /// The RETAIN flag it was sent with.
    pub retain: bool,
}

/// What the loop is given.
#[derive(Debug, Clone)]
pub struct DrainSpec {
    /// The shards to read, each from `from` to its `until` (give a bound: what arrives while
    /// the loop runs is the caller's to decide about).
    pub shards: Vec<ReplayShard>,
    /// The session's subscriptions, as for `replay_frames`.
    pub subs: Vec<ReplaySub>,
    /// Encoding and batch size, as for `replay_frames`.
    pub opts: ReplayOptions,
    /// At most this many QoS 1 deliveries in flight.
    pub window: usize,
    /// Deliveries already in flight (handed over by the caller), in the order sent.
    pub inflight: Vec<InFlight>,
    /// The next packet id to try.
    pub next_id: u16,
    /// Record every frame written and every delivery acknowledged ([`Report`]), for the
    /// broker's event listeners: taken with `Control::take_reports` while the loop runs, the
    /// rest in [`Handback::reports`].
    pub report: bool,
}

/// A delivery written, or acknowledged, by the loop (when [`DrainSpec::report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// False: the frame was written (or is in `unsent`); true: its PUBACK came.
    pub acked: bool,
    /// Log position of the message.
    pub shard: u32,
    /// Log position of the message.
    pub offset: u64,
    /// The QoS it was sent with (0 or 1).
    pub qos: u8,
    /// The RETAIN flag it was sent with.
    pub retain: bool,
}

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every shard was read to its bound and every frame written to the socket.
    CaughtUp,
    /// A shard stopped before a delivery the general path must make; all before it were sent.
    Slow,
    /// [`Control::stop`] asked for it.
    Stopped,
    /// The client sent a packet other than a plain PUBACK (its bytes are in `rest`).
    Packet,
    /// The client closed the connection.
    Eof,
    /// A socket or log error, or a panic in the loop (in `error`).
    Failed,
}

impl Ended {
    /// A name for logs and the binding.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::CaughtUp => "caught-up",
            Ended::Slow => "slow",
            Ended::Stopped => "stopped",
            Ended::Packet => "packet",
            Ended::Eof => "eof",
            Ended::Failed => "failed",
        }
    }
}

/// The session's state, handed back when the loop ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handback {
    /// Why the loop ended.
    pub ended: Ended,
    /// The error, for [`Ended::Failed`].
    pub error: Option<String>,
    /// Per shard of the spec (same order): the next offset to read.
    pub next: Vec<u64>,
    /// Per shard: the last scan status (`REPLAY_*`); `REPLAY_NEXT` when frames were unsent.
    pub status: Vec<u8>,
    /// Deliveries in flight, in the order sent.
    pub inflight: Vec<InFlight>,
    /// The next packet id to try.
    pub next_id: u16,
    /// Bytes received and not consumed (from the first packet that is not a plain PUBACK).
    pub rest: Vec<u8>,
    /// Bytes of frames in flight the socket has not taken yet: write them before anything.
    pub unsent: Vec<u8>,
    /// Frames written (or in `unsent`) by this loop.
    pub sent: u64,
    /// Their payload bytes.
    pub sent_payload: u64,
    /// PUBACKs that completed a delivery.
    pub acked: u64,
    /// Reports not taken yet (with [`DrainSpec::report`]), in the order they happened.
    pub reports: Vec<Report>,
}

/// A consistent view of a running loop: what a stop now would hand back, without stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// As [`Handback::next`].
    pub next: Vec<u64>,
    /// As [`Handback::inflight`].
    pub inflight: Vec<InFlight>,
    /// Frames sent so far.
    pub sent: u64,
    /// Their payload bytes.
    pub sent_payload: u64,
}
