//! `DrainControl`: the native drain loop (`strata_core::drain`) over a socket the broker
//! hands over. Conversion only. Linux only (`lib.rs` gates the module, as
//! `strata_core::drain` gates the loop); `nativeDrainSupported()` tells JavaScript.
//!
//! In-flight deliveries cross as a Float64Array of quads: packet id, shard, offset,
//! retain (0/1), in the order they were sent.
use crate::error::to_napi_coded;
use crate::guard::{self, lock};
use crate::store::{Inner, ReplayShardArg, ReplaySubArg, ReplayTask, Store};
use napi::bindgen_prelude::{Buffer, Float64Array, Object, Uint32Array};
use napi::{Env, Result};
use napi_derive::napi;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};
use strata_core::args::{
    self, INFLIGHT_QUAD as QUAD, REPORT_ACKED, REPORT_OFFSET, REPORT_QOS, REPORT_RETAIN,
    REPORT_SHARD, REPORT_STRIDE,
};
use strata_core::drain::{self, Control, DrainSpec, FrameSource, Handback, InFlight, Report};
use strata_core::error::CoreError;
use strata_core::log::{ReplayFrames, ReplayOptions, ReplayShard, ReplaySub};

/// What the loop hands back (`strata_core::drain::Handback`).
#[napi(object)]
pub struct DrainHandback {
    /// caught-up, slow, stopped, packet, eof or failed.
    pub ended: String,
    pub error: Option<String>,
    /// Per requested shard: the next offset to read.
    pub next: Float64Array,
    /// Per requested shard: the last replay status (0 Next, 1 Done, 2 Until, 3 Slow).
    pub status: Uint32Array,
    /// In flight, quads (id, shard, offset, retain), in the order sent.
    pub inflight: Float64Array,
    pub next_id: u32,
    /// Received, not consumed: from the first packet that is not a plain PUBACK.
    pub rest: Buffer,
    /// Frames in flight not yet taken by the socket: write them first.
    pub unsent: Buffer,
    pub sent: f64,
    pub sent_payload: f64,
    pub acked: f64,
    /// Reports not taken yet (`report`), as `takeReports` gives them.
    pub reports: Float64Array,
}

/// A running loop's state, as a stop now would hand it back.
#[napi(object)]
pub struct DrainSnapshot {
    pub next: Float64Array,
    pub inflight: Float64Array,
    pub sent: f64,
    pub sent_payload: f64,
}

/// One drain loop: `run()` starts it on a worker thread, `stop()` takes the state back.
#[napi]
pub struct DrainControl {
    ctl: Arc<Control>,
    /// Weak: a loop must not keep a closed store (and its directory lock) alive.
    inner: Weak<Inner>,
    sock: Arc<Mutex<Option<OwnedFd>>>,
}

fn reports(v: &[Report]) -> Float64Array {
    let mut out = vec![0.0; v.len() * REPORT_STRIDE];
    for (r, o) in v.iter().zip(out.chunks_exact_mut(REPORT_STRIDE)) {
        o[REPORT_ACKED] = f64::from(u8::from(r.acked));
        o[REPORT_SHARD] = f64::from(r.shard);
        o[REPORT_OFFSET] = r.offset as f64;
        o[REPORT_QOS] = f64::from(r.qos);
        o[REPORT_RETAIN] = f64::from(u8::from(r.retain));
    }
    Float64Array::new(out)
}

fn quads(v: &[InFlight]) -> Float64Array {
    let mut out = Vec::with_capacity(v.len() * QUAD);
    for f in v {
        out.extend_from_slice(&[
            f64::from(f.id),
            f64::from(f.shard),
            f.offset as f64,
            f64::from(u8::from(f.retain)),
        ]);
    }
    Float64Array::new(out)
}

fn handback(h: Handback) -> DrainHandback {
    DrainHandback {
        ended: h.ended.as_str().into(),
        error: h.error,
        next: Float64Array::new(h.next.iter().map(|&n| n as f64).collect()),
        status: Uint32Array::new(h.status.iter().map(|&s| u32::from(s)).collect()),
        inflight: quads(&h.inflight),
        next_id: u32::from(h.next_id),
        rest: h.rest.into(),
        unsent: h.unsent.into(),
        sent: h.sent as f64,
        sent_payload: h.sent_payload as f64,
        acked: h.acked as f64,
        reports: reports(&h.reports),
    }
}

/// The store's log while it is open.
struct StoreFrames(Weak<Inner>);

impl FrameSource for StoreFrames {
    fn replay(
        &self,
        shards: &[ReplayShard],
        subs: &[ReplaySub],
        opts: &ReplayOptions,
    ) -> std::result::Result<ReplayFrames, CoreError> {
        guard::inject("DrainControl.run", "/loop");
        let inner = self
            .0
            .upgrade()
            .ok_or_else(|| CoreError::Closed("store closed".into()))?;
        inner.log.replay(shards, subs, opts)
    }
}

/// Duplicates the socket descriptor `fd`, so a close on the JavaScript side cannot hand
/// the number to another file while the loop uses it.
#[allow(unsafe_code)]
fn dup_socket(fd: i32) -> std::result::Result<OwnedFd, CoreError> {
    if fd < 0 {
        return Err(CoreError::InvalidArgument(format!(
            "drain: bad descriptor {fd}"
        )));
    }
    // SAFETY: `fd` is the descriptor of a socket the caller holds open for the duration of
    // this call (a libuv TCP handle); it is only borrowed to be duplicated.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map_err(|e| CoreError::Io(format!("drain: dup {fd}: {e}")))
}

#[napi]
impl Store {
    /// A native drain loop for the session replay `shards`/`subs` (as `replay`) over the
    /// TCP socket with descriptor `fd` (duplicated here; the caller must neither read nor
    /// write the socket until it has the state back). `window`: in-flight QoS 1 limit;
    /// `inflight`: quads already in flight; `nextId`: the next packet id to try.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn drain(
        &self,
        fd: i32,
        shards: Vec<ReplayShardArg>,
        subs: Vec<ReplaySubArg>,
        version: u32,
        client_id: String,
        max_entries: u32,
        max_packet: f64,
        window: u32,
        inflight: Float64Array,
        next_id: u32,
        report: bool,
    ) -> Result<DrainControl, String> {
        guard::call("Store.drain", || {
            let t = ReplayTask::new(
                self,
                shards,
                subs,
                version,
                client_id,
                max_entries,
                max_packet,
            )
            .map_err(to_napi_coded)?;
            let held = args::inflight(&inflight).map_err(to_napi_coded)?;
            let (window, next_id) = args::drain_window(window, next_id).map_err(to_napi_coded)?;
            let spec = DrainSpec {
                shards: t.req.shards,
                subs: t.req.subs,
                opts: t.req.opts,
                window,
                inflight: held,
                next_id,
                report,
            };
            let sock = dup_socket(fd).map_err(to_napi_coded)?;
            let ctl = Control::new(spec)
                .map_err(|e| to_napi_coded(CoreError::Io(format!("drain: eventfd: {e}"))))?;
            Ok(DrainControl {
                ctl: Arc::new(ctl),
                inner: Arc::downgrade(&t.inner),
                sock: Arc::new(Mutex::new(Some(sock))),
            })
        })
    }
}

#[napi]
impl DrainControl {
    /// Runs the loop on a thread of its own (not libuv's pool: a loop lasts as long as the
    /// drain, and must start at once); resolves with why it ended (its state waits for
    /// `stop()`). Once only.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn run<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        guard::promise(env, "DrainControl.run", |p| {
            let (ctl, inner, sock) = (self.ctl.clone(), self.inner.clone(), self.sock.clone());
            guard::spawn("strata-drain", p, move || {
                let sock = lock(&sock).take();
                // The duplicate descriptor is closed when the loop ends (`sock` drops here).
                // A panic in the loop parks its state as `failed` for `stop()` (see
                // `strata_core::drain::run`) and rejects this Promise with ERR_PANIC.
                let ended = match sock {
                    Some(s) => drain::run(&StoreFrames(inner), &s, &ctl).as_str(),
                    None => "stopped",
                };
                Ok(ended.to_string())
            });
        })
    }

    /// Stops the loop (at once; it wakes from its poll) and returns the session's state;
    /// null once taken. A loop not started yet never starts.
    #[napi]
    pub fn stop(&self) -> Result<Option<DrainHandback>, String> {
        guard::call("DrainControl.stop", || {
            let h = self.ctl.stop().map(handback);
            // Not started: nothing will run to close the duplicate.
            drop(lock(&self.sock).take());
            Ok(h)
        })
    }

    /// What `stop()` would return now, without stopping; null once taken.
    #[napi]
    pub fn snapshot(&self) -> Result<Option<DrainSnapshot>, String> {
        guard::call("DrainControl.snapshot", || {
            Ok(self.ctl.snapshot().map(|s| DrainSnapshot {
                next: Float64Array::new(s.next.iter().map(|&n| n as f64).collect()),
                inflight: quads(&s.inflight),
                sent: s.sent as f64,
                sent_payload: s.sent_payload as f64,
            }))
        })
    }

    /// What the loop wrote and what was acknowledged since the last call (when started with
    /// `report`), oldest first: REPORT_STRIDE numbers each (`layouts().report`).
    #[napi]
    pub fn take_reports(&self) -> Result<Float64Array, String> {
        guard::call("DrainControl.takeReports", || {
            Ok(reports(&self.ctl.take_reports()))
        })
    }

    /// When the loop last read from the client, ms since the epoch.
    #[napi]
    pub fn last_read_ms(&self) -> Result<f64, String> {
        guard::call("DrainControl.lastReadMs", || {
            Ok(self.ctl.last_read_ms() as f64)
        })
    }
}
