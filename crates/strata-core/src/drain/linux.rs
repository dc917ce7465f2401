//! The drain loop itself (Linux: `poll` on the socket and an `eventfd`, non-blocking
//! `send`/`read`). The module docs of [`super`] state what it does and its invariants.
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{send, SendFlags};

use super::{DrainSpec, Ended, FrameSource, Handback, InFlight, Report, Snapshot};
use crate::log::{
    now_ms, ReplayFrames, ReplayShard, META_END, META_ID_POS, META_OFFSET, META_PAYLOAD_LEN,
    META_SHARD, META_STRIDE, REPLAY_NEXT, REPLAY_SLOW,
};

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 64 * 1024;

/// With deliveries in flight, the window is refilled once this share of it (1/8) is free:
/// the client then reads, and acknowledges, in larger batches (measured on 2026-12-05 at
/// window 128: about 15% more throughput than refilling every freed slot). A client that
/// acknowledges in batches of its own is not kept waiting: what the window has room for
/// goes out anyway after [`HOLD`].
const REFILL_SHARE: usize = 8;

/// How long frames wait for the window to free its refill share.
const HOLD: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 1_000_000,
};

/// The loop's working state.
#[derive(Debug)]
struct Run {
    spec: DrainSpec,
    /// Per shard: the last scan status; `REPLAY_NEXT` = more to read.
    status: Vec<u8>,
    /// In flight, keyed by send order.
    order: BTreeMap<u64, InFlight>,
    /// Per packet id: its key in `order`, or 0.
    seq_of: Vec<u64>,
    seq: u64,
    next_id: u16,
    /// Batches read, oldest first (at most two: the one being sent, and the next, read while
    /// the window was full); `at` = the index of the next frame of the first.
    frames: VecDeque<ReplayFrames>,
    at: usize,
    /// Frames given ids, and how much of them the socket has taken.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Received bytes not consumed.
    rbuf: Vec<u8>,
    sent: u64,
    sent_payload: u64,
    acked: u64,
    /// With `spec.report`: frames written and deliveries acknowledged, not taken yet.
    reports: Vec<Report>,
}

#[derive(Debug)]
enum Phase {
    /// Not started yet.
    Ready(Box<Run>),
    Running(Box<Run>),
    Done(Box<Handback>),
    Taken,
}

/// Shared between the loop's thread and the broker's: stop, snapshot, last activity.
#[derive(Debug)]
pub struct Control {
    phase: Mutex<Phase>,
    parked: Condvar,
    stop: AtomicBool,
    wake: OwnedFd,
    last_read_ms: AtomicU64,
}

impl Run {
    fn new(spec: DrainSpec) -> Run {
        let mut run = Run {
            status: vec![REPLAY_NEXT; spec.shards.len()],
            order: BTreeMap::new(),
            seq_of: vec![0; 65536],
            seq: 0,
            next_id: spec.next_id.max(1),
            frames: VecDeque::new(),
            at: 0,
            wbuf: Vec::new(),
            wpos: 0,
            rbuf: Vec::new(),
            sent: 0,
            sent_payload: 0,
            acked: 0,
            reports: Vec::new(),
            spec,
        };
        for f in std::mem::take(&mut run.spec.inflight) {
            run.insert(f);
        }
        run
    }

    fn insert(&mut self, f: InFlight) {
        self.seq += 1;
        self.seq_of[usize::from(f.id)] = self.seq;
        self.order.insert(self.seq, f);
    }

    fn allocate_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = if id == 65535 { 1 } else { id + 1 };
            if self.seq_of[usize::from(id)] == 0 {
                return id;
            }
        }
    }

    /// Takes the plain PUBACKs at the front of `rbuf`: packet id, then (MQTT 5) a reason
    /// code and an empty property section, each optional. A reason code does not matter: any
    /// PUBACK ends the delivery, as in the broker. False: a packet of another kind is there
    /// (it and what follows stay in `rbuf`).
    fn take_acks(&mut self) -> bool {
        let mut pos = 0;
        let mut other = false;
        let b = &self.rbuf;
        while pos + 2 <= b.len() {
            let rl = usize::from(b[pos + 1]);
            if b[pos] != 0x40 || !(2..=4).contains(&rl) {
                other = true;
                break;
            }
            if pos + 2 + rl > b.len() {
                break;
            }
            if rl == 4 && b[pos + 5] != 0 {
                other = true; // properties: the broker's parser reads them
                break;
            }
            let id = u16::from_be_bytes([b[pos + 2], b[pos + 3]]);
            pos += 2 + rl;
            let seq = std::mem::take(&mut self.seq_of[usize::from(id)]);
            if seq == 0 {
                continue;
            }
            if let Some(f) = self.order.remove(&seq) {
                self.acked += 1;
                if self.spec.report {
                    self.reports.push(Report {
                        acked: true,
                        shard: f.shard,
                        offset: f.offset,
                        qos: 1,
                        retain: f.retain,
                    });
                }
            }
        }
        self.rbuf.drain(..pos);
        !other
    }

    fn room(&self) -> bool {
        self.order.len() < self.spec.window
    }

    /// Frames wait for more of the window to be free (see [`REFILL_SHARE`]).
    fn holding(&self) -> bool {
        let free = self.spec.window.saturating_sub(self.order.len());
        self.wpos == self.wbuf.len()
            && !self.frames.is_empty()
            && !self.order.is_empty()
            && free > 0
            && free < (self.spec.window / REFILL_SHARE).max(1)
    }

    /// Moves frames of the current batch into `wbuf` while the window has room. Only when
    /// `wbuf` is all written, so what is unwritten at a stop is whole frames in flight; and,
    /// unless `now`, once the window's refill share is free.
    fn fill(&mut self, now: bool) {
        if self.wpos < self.wbuf.len() || (!now && self.holding()) {
            return;
        }
        self.wbuf.clear();
        self.wpos = 0;
        while let Some(fr) = self.frames.pop_front() {
            if self.fill_from(&fr) {
                self.at = 0; // all of it given ids: on to the next batch
                continue;
            }
            self.frames.push_front(fr);
            return;
        }
    }

    /// `fill` from one batch; true when every frame of it was taken.
    fn fill_from(&mut self, fr: &ReplayFrames) -> bool {
        let count = fr.meta.len() / META_STRIDE;
        let mut start = if self.at == 0 {
            0
        } else {
            fr.meta[(self.at - 1) * META_STRIDE + META_END] as usize
        };
        while self.at < count {
            let m = &fr.meta[self.at * META_STRIDE..(self.at + 1) * META_STRIDE];
            let end = m[META_END] as usize;
            let id_pos = m[META_ID_POS];
            if id_pos >= 0.0 {
                if !self.room() {
                    break;
                }
                let id = self.allocate_id();
                let head = fr.buf[start];
                self.insert(InFlight {
                    id,
                    shard: m[META_SHARD] as u32,
                    offset: m[META_OFFSET] as u64,
                    retain: head & 1 == 1,
                });
                let p = id_pos as usize;
                self.wbuf.extend_from_slice(&fr.buf[start..p]);
                self.wbuf.extend_from_slice(&id.to_be_bytes());
                self.wbuf.extend_from_slice(&fr.buf[p + 2..end]);
            } else {
                self.wbuf.extend_from_slice(&fr.buf[start..end]);
            }
            if self.spec.report {
                let head = fr.buf[start];
                self.reports.push(Report {
                    acked: false,
                    shard: m[META_SHARD] as u32,
                    offset: m[META_OFFSET] as u64,
                    qos: (head >> 1) & 3,
                    retain: head & 1 == 1,
                });
            }
            self.sent += 1;
            self.sent_payload += m[META_PAYLOAD_LEN] as u64;
            start = end;
            self.at += 1;
        }
        self.at == count
    }

    /// Reads the next batch when a shard has more: when nothing is left to send, or (`ahead`)
    /// while the window is full and only the batch being sent is there.
    fn read_more(&mut self, log: &dyn FrameSource, ahead: bool) -> Result<bool, String> {
        if self.frames.len() > usize::from(ahead) {
            return Ok(false);
        }
        let want: Vec<usize> = (0..self.status.len())
            .filter(|&i| self.status[i] == REPLAY_NEXT)
            .collect();
        if want.is_empty() {
            return Ok(false);
        }
        let shards: Vec<ReplayShard> = want.iter().map(|&i| self.spec.shards[i].clone()).collect();
        let r = log
            .replay(&shards, &self.spec.subs, &self.spec.opts)
            .map_err(|e| e.to_string())?;
        for (k, &i) in want.iter().enumerate() {
            self.spec.shards[i].from = r.next[k];
            self.status[i] = r.status[k];
        }
        if !r.meta.is_empty() {
            if self.frames.is_empty() {
                self.at = 0;
            }
            self.frames.push_back(r);
        }
        Ok(true)
    }

    /// Nothing left to send and nothing left to read: how the loop ends, if it does.
    fn finished(&self) -> Option<Ended> {
        if !self.frames.is_empty()
            || self.wpos < self.wbuf.len()
            || self.status.contains(&REPLAY_NEXT)
        {
            return None;
        }
        Some(if self.status.contains(&REPLAY_SLOW) {
            Ended::Slow
        } else {
            Ended::CaughtUp
        })
    }

    /// Each shard's next offset, lowered to the first frame not given an id.
    fn next(&self) -> (Vec<u64>, Vec<u8>) {
        let mut next: Vec<u64> = self.spec.shards.iter().map(|s| s.from).collect();
        let mut status = self.status.clone();
        for (k, fr) in self.frames.iter().enumerate() {
            let skip = if k == 0 { self.at } else { 0 };
            for m in fr.meta.chunks_exact(META_STRIDE).skip(skip) {
                let shard = m[META_SHARD] as u32;
                let offset = m[META_OFFSET] as u64;
                if let Some(i) = self.spec.shards.iter().position(|s| s.shard == shard) {
                    if offset < next[i] {
                        next[i] = offset;
                        status[i] = REPLAY_NEXT;
                    }
                }
            }
        }
        (next, status)
    }

    fn handback(mut self, ended: Ended, error: Option<String>) -> Handback {
        let (next, status) = self.next();
        Handback {
            ended,
            error,
            next,
            status,
            inflight: std::mem::take(&mut self.order).into_values().collect(),
            next_id: self.next_id,
            rest: std::mem::take(&mut self.rbuf),
            unsent: self.wbuf.split_off(self.wpos),
            sent: self.sent,
            sent_payload: self.sent_payload,
            acked: self.acked,
            reports: std::mem::take(&mut self.reports),
        }
    }
}

/// What one turn of the loop found.
enum Turn {
    Go,
    End(Ended, Option<String>),
}

impl Control {
    /// A loop that will run `spec` once [`run`] is called with this control.
    pub fn new(spec: DrainSpec) -> std::io::Result<Control> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Control {
            phase: Mutex::new(Phase::Ready(Box::new(Run::new(spec)))),
            parked: Condvar::new(),
            stop: AtomicBool::new(false),
            wake,
            last_read_ms: AtomicU64::new(now_ms()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the loop and returns the session's state; None once it was taken. Blocks
    /// until the loop has parked (it wakes at once: an eventfd is in its poll set). A
    /// loop that has not started yet never starts.
    pub fn stop(&self) -> Option<Handback> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        let mut g = self.lock();
        loop {
            match std::mem::replace(&mut *g, Phase::Taken) {
                Phase::Ready(run) => return Some(run.handback(Ended::Stopped, None)),
                Phase::Done(h) => return Some(*h),
                Phase::Taken => return None,
                running @ Phase::Running(_) => {
                    *g = running;
                    g = self.parked.wait(g).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// What a stop now would hand back (None once taken).
    pub fn snapshot(&self) -> Option<Snapshot> {
        let g = self.lock();
        let view = |r: &Run| {
            let (next, _) = r.next();
            Snapshot {
                next,
                inflight: r.order.values().copied().collect(),
                sent: r.sent,
                sent_payload: r.sent_payload,
            }
        };
        match &*g {
            Phase::Ready(r) | Phase::Running(r) => Some(view(r)),
            Phase::Done(h) => Some(Snapshot {
                next: h.next.clone(),
                inflight: h.inflight.clone(),
                sent: h.sent,
                sent_payload: h.sent_payload,
            }),
            Phase::Taken => None,
        }
    }

    /// The reports recorded since the last call (with [`DrainSpec::report`]), oldest first;
    /// what is left when the loop ends goes to [`Handback::reports`].
    pub fn take_reports(&self) -> Vec<Report> {
        let mut g = self.lock();
        match &mut *g {
            Phase::Ready(r) | Phase::Running(r) => std::mem::take(&mut r.reports),
            Phase::Done(h) => std::mem::take(&mut h.reports),
            Phase::Taken => Vec::new(),
        }
    }

    /// When the loop last read from the client (ms since the epoch; its start before that).
    pub fn last_read_ms(&self) -> u64 {
        self.last_read_ms.load(Ordering::Relaxed)
    }

    /// The loop ends: its state becomes the hand-back `stop` takes, and a waiting `stop` wakes.
    fn park(&self, mut g: MutexGuard<'_, Phase>, ended: Ended, error: Option<String>) -> Ended {
        if let Phase::Running(run) = std::mem::replace(&mut *g, Phase::Taken) {
            *g = Phase::Done(Box::new(run.handback(ended, error)));
        }
        drop(g);
        self.parked.notify_all();
        ended
    }
}

/// Parks a loop that unwinds (a panic in it or in its frame source) as `Failed`, so the
/// state stays in `ctl` for [`Control::stop`], which would otherwise wait forever for a
/// loop that is gone. The state is the loop's as the panic left it.
struct ParkOnUnwind<'a>(&'a Control);

impl Drop for ParkOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let g = self.0.lock();
            self.0
                .park(g, Ended::Failed, Some("the drain loop panicked".into()));
        }
    }
}

/// Runs the drain loop of `ctl` on `sock` (a non-blocking stream socket the caller neither
/// reads nor writes meanwhile) until it ends; returns why. The state waits in `ctl` for
/// [`Control::stop`]. Returns at once when the loop was stopped before it started. A panic
/// in the loop parks the state as [`Ended::Failed`] before it unwinds out of `run`.
pub fn run(log: &dyn FrameSource, sock: &OwnedFd, ctl: &Control) -> Ended {
    let _park = ParkOnUnwind(ctl);
    {
        let mut g = ctl.lock();
        match std::mem::replace(&mut *g, Phase::Taken) {
            Phase::Ready(run) => *g = Phase::Running(run),
            other => {
                *g = other;
                return Ended::Stopped;
            }
        }
    }
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut readable = false;
    let mut held_out = false;
    loop {
        let mut g = ctl.lock();
        let Phase::Running(run) = &mut *g else {
            unreachable!("only the loop leaves Running")
        };
        let turn = if ctl.stop.load(Ordering::SeqCst) {
            Turn::End(Ended::Stopped, None)
        } else {
            turn(log, sock, ctl, run, &mut chunk, readable, held_out)
        };
        let want_out = run.wpos < run.wbuf.len();
        let hold = run.holding();
        if let Turn::End(ended, error) = turn {
            return ctl.park(g, ended, error);
        }
        drop(g);
        let mut flags = PollFlags::IN;
        if want_out {
            flags |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::new(sock, flags),
            PollFd::new(&ctl.wake, PollFlags::IN),
        ];
        let timeout = if hold { Some(&HOLD) } else { None };
        held_out = false;
        match poll(&mut fds, timeout) {
            Ok(0) => held_out = hold,
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return ctl.park(ctl.lock(), Ended::Failed, Some(format!("poll: {e}"))),
        }
        readable = !fds[0].revents().is_empty() && fds[0].revents() != PollFlags::OUT;
    }
}

/// One turn: take what the client sent, then send what the window allows.
fn turn(
    log: &dyn FrameSource,
    sock: &OwnedFd,
    ctl: &Control,
    run: &mut Run,
    chunk: &mut [u8],
    readable: bool,
    held_out: bool,
) -> Turn {
    if readable {
        loop {
            match rustix::io::read(sock, &mut *chunk) {
                Ok(0) => {
                    if !run.take_acks() {
                        return Turn::End(Ended::Packet, None);
                    }
                    return Turn::End(Ended::Eof, None);
                }
                Ok(n) => {
                    ctl.last_read_ms.store(now_ms(), Ordering::Relaxed);
                    run.rbuf.extend_from_slice(&chunk[..n]);
                    if !run.take_acks() {
                        return Turn::End(Ended::Packet, None);
                    }
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(e) => return Turn::End(Ended::Failed, Some(format!("read: {e}"))),
            }
        }
    }
    loop {
        run.fill(held_out);
        if run.wpos < run.wbuf.len() {
            match send(sock.as_fd(), &run.wbuf[run.wpos..], SendFlags::NOSIGNAL) {
                Ok(n) => run.wpos += n,
                Err(Errno::AGAIN) => return Turn::Go,
                Err(Errno::INTR) => continue,
                Err(e) => return Turn::End(Ended::Failed, Some(format!("write: {e}"))),
            }
            if run.wpos < run.wbuf.len() {
                return Turn::Go; // the socket's buffer is full: wait for POLLOUT
            }
            continue;
        }
        if !run.room() && !run.frames.is_empty() {
            // Waiting for PUBACKs: read the next batch meanwhile, ready when they come.
            if let Err(e) = run.read_more(log, true) {
                return Turn::End(Ended::Failed, Some(format!("log: {e}")));
            }
            return Turn::Go;
        }
        match run.read_more(log, false) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => return Turn::End(Ended::Failed, Some(format!("log: {e}"))),
        }
        return match run.finished() {
            Some(ended) => Turn::End(ended, None),
            None => Turn::Go,
        };
    }
}
