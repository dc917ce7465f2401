//! The native drain loop (`strata_core::drain`) against a client on the other end of a
//! socket pair: the window is kept, every message arrives once and in order, PUBACKs free
//! slots, and every way the loop ends (caught up, slow, stop, another packet, EOF) hands
//! back a state in which each message is exactly one of: acknowledged, in flight, or at
//! or after its shard's `next`.
#![cfg(target_os = "linux")]
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use strata_core::drain::{run, Control, DrainSpec, Ended, FrameSource, Handback, InFlight, Report};
use strata_core::error::CoreError;
use strata_core::log::{
    shard_of, FsyncPolicy, Log, NewMessage, Options, ReplayFrames, ReplayOptions, ReplayShard,
    ReplaySub, REPLAY_SLOW,
};

fn log_opts() -> Options {
    Options {
        n_shards: Some(2),
        fsync: FsyncPolicy::None,
        segment_bytes: 1 << 20,
        index_interval: 128,
        retention_ms: None,
        lts_threshold: 4,
        ..Options::default()
    }
}

fn publisher(shard: u32) -> Vec<u8> {
    (0..)
        .map(|n| format!("pub-{n}"))
        .find(|c| shard_of(c.as_bytes(), 2) == shard)
        .unwrap()
        .into_bytes()
}

/// `n` QoS 1 messages on `t`, payload = their sequence number, alternating shards when
/// `both`; returns (shard, offset) per sequence number.
fn fill(log: &Log, n: u32, both: bool) -> Vec<(u32, u64)> {
    (0..n)
        .map(|i| {
            let shard = if both { i % 2 } else { 0 };
            let m = NewMessage {
                publisher: publisher(shard),
                topic: "t".into(),
                qos: 1,
                retain: false,
                properties: Vec::new(),
                payload: i.to_be_bytes().to_vec(),
                inbound_id: 0,
            };
            let p = log.append_blocking(vec![m]).unwrap()[0];
            (p.shard, p.offset.0)
        })
        .collect()
}

fn spec(log: &Log, window: usize, batch: usize) -> DrainSpec {
    DrainSpec {
        shards: (0..log.n_shards())
            .map(|s| ReplayShard {
                shard: s,
                from: 0,
                until: Some(log.shard_end(s).unwrap()),
                starts: vec![0],
            })
            .collect(),
        subs: vec![ReplaySub {
            filter: "t".into(),
            qos: 1,
            no_local: false,
            retain_as_published: false,
        }],
        opts: ReplayOptions {
            version: 4,
            client_id: b"sub".to_vec(),
            max_entries: batch,
            max_bytes: 4 << 20,
            max_packet: usize::MAX,
        },
        window,
        inflight: Vec::new(),
        next_id: 1,
        report: false,
    }
}

/// The client's side: PUBLISH frames parsed off the socket.
struct Client {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Reads until at least one whole PUBLISH is there; returns (packet id, seq) of each.
    fn read(&mut self) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        while out.is_empty() {
            let mut chunk = [0u8; 4096];
            let n = self.sock.read(&mut chunk).unwrap();
            assert!(n > 0, "loop closed the socket");
            self.buf.extend_from_slice(&chunk[..n]);
            loop {
                if self.buf.len() < 2 {
                    break;
                }
                assert_eq!(self.buf[0], 0x32, "a QoS 1 PUBLISH");
                let rl = usize::from(self.buf[1]);
                assert!(rl < 128);
                if self.buf.len() < 2 + rl {
                    break;
                }
                let tl = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                let id = u16::from_be_bytes([self.buf[4 + tl], self.buf[5 + tl]]);
                let p = 6 + tl;
                let seq = u32::from_be_bytes(self.buf[p..p + 4].try_into().unwrap());
                out.push((id, seq));
                self.buf.drain(..2 + rl);
            }
        }
        out
    }

    fn ack(&mut self, ids: &[u16]) {
        let mut b = Vec::new();
        for id in ids {
            b.extend_from_slice(&[0x40, 2]);
            b.extend_from_slice(&id.to_be_bytes());
        }
        // Once every frame is written the loop ends and closes its end of the pair (in the
        // broker it has a duplicate of the descriptor): a late PUBACK may find it gone.
        if let Err(e) = self.sock.write_all(&b) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        }
    }
}

fn pair() -> (OwnedFd, Client) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    (
        OwnedFd::from(a),
        Client {
            sock: b,
            buf: Vec::new(),
        },
    )
}

/// A loop for `spec` running on its own thread against a fresh client.
fn start(log: &Arc<Log>, spec: DrainSpec) -> (Arc<Control>, thread::JoinHandle<Ended>, Client) {
    let (fd, c) = pair();
    let ctl = Arc::new(Control::new(spec).unwrap());
    let (l2, c2) = (log.clone(), ctl.clone());
    let t = thread::spawn(move || run(&*l2, &fd, &c2));
    (ctl, t, c)
}

/// Each stored message is exactly one of: acknowledged, in flight, at or after `next`.
fn check_accounted(stored: &[(u32, u64)], acked: &[u32], h: &Handback, shards: &[u32]) {
    for (seq, &(shard, offset)) in stored.iter().enumerate() {
        let seq = seq as u32;
        let i = shards.iter().position(|&s| s == shard).unwrap();
        let in_flight = h
            .inflight
            .iter()
            .any(|f| f.shard == shard && f.offset == offset);
        let unread = offset >= h.next[i];
        let was_acked = acked.contains(&seq);
        let n = u8::from(in_flight) + u8::from(unread) + u8::from(was_acked);
        assert_eq!(
            n, 1,
            "seq {seq}: acked {was_acked}, in flight {in_flight}, unread {unread}"
        );
    }
}

#[test]
fn drains_everything_in_order_within_the_window() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let stored = fill(&log, 5000, false);
    let (ctl, t, mut c) = start(&log, spec(&log, 32, 300));
    let mut got = Vec::new();
    let mut outstanding = 0usize;
    while got.len() < stored.len() {
        let frames = c.read();
        outstanding += frames.len();
        assert!(outstanding <= 32, "window exceeded: {outstanding}");
        // Acknowledge all but the last of each read, then the rest with the next read.
        let ids: Vec<u16> = frames.iter().map(|f| f.0).collect();
        got.extend(frames.iter().map(|f| f.1));
        c.ack(&ids);
        outstanding -= ids.len();
    }
    assert_eq!(t.join().unwrap(), Ended::CaughtUp);
    let h = ctl.stop().unwrap();
    assert_eq!(h.ended, Ended::CaughtUp);
    assert_eq!(got, (0..5000).collect::<Vec<u32>>());
    assert_eq!(h.sent, 5000);
    assert_eq!(h.sent_payload, 5000 * 4);
    assert_eq!(h.next[0], log.shard_end(0).unwrap());
    assert!(h.unsent.is_empty());
    // Acks the loop had not read when it ended stay in flight: the broker takes them.
    assert!(h.inflight.len() <= 32);
    assert!(ctl.stop().is_none(), "taken once");
}

#[test]
fn reports_every_frame_written_and_every_delivery_acknowledged_in_order() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let stored = fill(&log, 2000, true);
    let mut sp = spec(&log, 32, 100);
    sp.report = true;
    let (ctl, t, mut c) = start(&log, sp);
    let mut reports: Vec<Report> = Vec::new();
    let mut got = 0;
    while got < stored.len() {
        let frames = c.read();
        got += frames.len();
        c.ack(&frames.iter().map(|f| f.0).collect::<Vec<_>>());
        reports.extend(ctl.take_reports()); // taken while it runs, as the broker does
    }
    assert_eq!(t.join().unwrap(), Ended::CaughtUp);
    let h = ctl.stop().unwrap();
    reports.extend(h.reports.iter().copied());
    let written: Vec<(u32, u64)> = reports
        .iter()
        .filter(|r| !r.acked)
        .map(|r| (r.shard, r.offset))
        .collect();
    let mut want = stored.clone();
    want.sort_by_key(|&(s, o)| (o, s));
    let mut seen = written.clone();
    seen.sort_by_key(|&(s, o)| (o, s));
    assert_eq!(seen, want, "every frame written is reported once");
    assert!(reports.iter().all(|r| r.qos == 1 && !r.retain));
    // Each acknowledgement comes after its delivery; the last ones may still be in flight.
    let acked: Vec<(u32, u64)> = reports
        .iter()
        .filter(|r| r.acked)
        .map(|r| (r.shard, r.offset))
        .collect();
    assert_eq!(acked.len() + h.inflight.len(), stored.len());
    for (k, r) in reports.iter().enumerate().filter(|(_, r)| r.acked) {
        assert!(
            reports[..k]
                .iter()
                .any(|w| !w.acked && w.shard == r.shard && w.offset == r.offset),
            "ack before its delivery"
        );
    }
    assert!(ctl.take_reports().is_empty(), "taken once");
}

#[test]
fn reports_nothing_unless_asked() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let stored = fill(&log, 200, false);
    let (ctl, t, mut c) = start(&log, spec(&log, 16, 100));
    let mut got = 0;
    while got < stored.len() {
        let frames = c.read();
        got += frames.len();
        c.ack(&frames.iter().map(|f| f.0).collect::<Vec<_>>());
    }
    t.join().unwrap();
    assert!(ctl.take_reports().is_empty());
    assert!(ctl.stop().unwrap().reports.is_empty());
}

#[test]
fn stop_mid_drain_hands_back_an_exact_account() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let stored = fill(&log, 3000, true);
    let (ctl, t, mut c) = start(&log, spec(&log, 64, 100));
    let mut acked = Vec::new();
    let mut received = Vec::new();
    while received.len() < 1000 {
        let frames = c.read();
        received.extend(frames.iter().map(|f| f.1));
        c.ack(&frames.iter().map(|f| f.0).collect::<Vec<_>>());
        acked.extend(frames.iter().map(|f| f.1));
    }
    // The window fills with deliveries never acknowledged.
    let last = c.read();
    received.extend(last.iter().map(|f| f.1));
    let snap = ctl.snapshot().unwrap();
    let h = ctl.stop().unwrap();
    assert_eq!(t.join().unwrap(), Ended::Stopped);
    assert_eq!(h.ended, Ended::Stopped);
    assert!(snap.sent <= h.sent);
    // PUBACKs written before the stop may or may not have been read by the loop.
    let acked_by_loop: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|&s| {
            let (shard, offset) = stored[s as usize];
            !h.inflight
                .iter()
                .any(|f| f.shard == shard && f.offset == offset)
        })
        .collect();
    check_accounted(&stored, &acked_by_loop, &h, &[0, 1]);
    assert!(h.inflight.len() <= 64);
    let ids: Vec<u16> = h.inflight.iter().map(|f| f.id).collect();
    let mut uniq = ids.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len(), "packet ids in flight are distinct");
}

#[test]
fn another_packet_ends_the_loop_with_its_bytes_unread() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    fill(&log, 500, false);
    let (ctl, t, mut c) = start(&log, spec(&log, 16, 100));
    let frames = c.read();
    // A PUBACK, then PINGREQ, then another PUBACK: only the first is the loop's.
    let mut b = vec![0x40, 2];
    b.extend_from_slice(&frames[0].0.to_be_bytes());
    b.extend_from_slice(&[0xC0, 0, 0x40, 2]);
    b.extend_from_slice(&frames[1 % frames.len()].0.to_be_bytes());
    c.sock.write_all(&b).unwrap();
    assert_eq!(t.join().unwrap(), Ended::Packet);
    let h = ctl.stop().unwrap();
    assert_eq!(h.ended, Ended::Packet);
    assert_eq!(&h.rest[..2], &[0xC0, 0]);
    assert_eq!(h.rest.len(), 6);
    assert_eq!(h.acked, 1);
    assert!(!h.inflight.iter().any(|f| f.id == frames[0].0));
}

#[test]
fn client_close_ends_the_loop_and_keeps_what_is_in_flight() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let stored = fill(&log, 500, false);
    let (ctl, t, mut c) = start(&log, spec(&log, 16, 100));
    c.read();
    drop(c);
    let ended = t.join().unwrap();
    // Writing to the closed peer may fail before the EOF is read.
    assert!(ended == Ended::Eof || ended == Ended::Failed, "{ended:?}");
    let h = ctl.stop().unwrap();
    assert_eq!(h.acked, 0);
    check_accounted(&stored, &[], &h, &[0, 1]);
}

#[test]
fn a_delivery_for_the_general_path_ends_the_loop_before_it() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let mut stored = fill(&log, 100, false);
    let with_props = NewMessage {
        publisher: publisher(0),
        topic: "t".into(),
        qos: 1,
        retain: false,
        properties: vec![0x02, 0, 0, 0, 60], // Message Expiry Interval
        payload: 100u32.to_be_bytes().to_vec(),
        inbound_id: 0,
    };
    let p = log.append_blocking(vec![with_props]).unwrap()[0];
    stored.push((p.shard, p.offset.0));
    let (ctl, t, mut c) = start(&log, spec(&log, 1000, 1000));
    let mut got = 0;
    while got < 100 {
        got += c.read().len();
    }
    assert_eq!(t.join().unwrap(), Ended::Slow);
    let h = ctl.stop().unwrap();
    assert_eq!(h.status[0], REPLAY_SLOW);
    assert_eq!(
        h.next[0], p.offset.0,
        "the slow one is read again by the broker"
    );
    assert_eq!(h.inflight.len(), 100);
}

#[test]
fn stopped_before_it_runs_it_never_touches_the_socket() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    fill(&log, 10, false);
    let (fd, mut c) = pair();
    let mut s = spec(&log, 16, 100);
    let held = InFlight {
        id: 7,
        shard: 0,
        offset: 3,
        retain: false,
    };
    s.inflight = vec![held];
    s.next_id = 7;
    let ctl = Control::new(s).unwrap();
    let h = ctl.stop().unwrap();
    assert_eq!(h.ended, Ended::Stopped);
    assert_eq!(h.inflight, vec![held]);
    assert_eq!(h.next, vec![0, 0]);
    assert_eq!(h.next_id, 7);
    assert_eq!(run(&*log, &fd, &ctl), Ended::Stopped);
    drop(fd);
    let mut rest = Vec::new();
    c.sock.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn handed_over_deliveries_keep_their_ids_and_new_ones_avoid_them() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    let stored = fill(&log, 50, false);
    let mut s = spec(&log, 8, 100);
    // Two deliveries already in flight (ids 1 and 2): six slots are left.
    s.inflight = vec![
        InFlight {
            id: 1,
            shard: 0,
            offset: stored[0].1,
            retain: false,
        },
        InFlight {
            id: 2,
            shard: 0,
            offset: stored[1].1,
            retain: false,
        },
    ];
    s.shards[0].from = stored[2].1;
    let (ctl, t, mut c) = start(&log, s);
    let mut first = Vec::new();
    while first.len() < 6 {
        first.extend(c.read());
    }
    assert_eq!(
        first.len(),
        6,
        "the window counts the handed-over deliveries"
    );
    assert!(first.iter().all(|f| f.0 > 2));
    assert_eq!(first[0].1, 2);
    // Their PUBACKs free slots like any other.
    c.ack(&[1, 2]);
    let more = c.read();
    assert!(!more.is_empty());
    let h = ctl.stop().unwrap();
    t.join().unwrap();
    assert!(!h.inflight.iter().any(|f| f.id == 1 || f.id == 2));
}

#[test]
fn mqtt5_puback_forms_complete_deliveries_and_one_with_properties_is_handed_back() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    fill(&log, 100, false);
    let (ctl, t, mut c) = start(&log, spec(&log, 4, 100));
    let mut frames = Vec::new();
    while frames.len() < 4 {
        frames.extend(c.read());
    }
    let id = |k: usize| frames[k].0.to_be_bytes();
    let mut b = Vec::new();
    b.extend_from_slice(&[0x40, 2]);
    b.extend_from_slice(&id(0));
    b.extend_from_slice(&[0x40, 3]); // reason code: No matching subscribers
    b.extend_from_slice(&id(1));
    b.push(0x10);
    b.extend_from_slice(&[0x40, 4]); // reason code, empty property section
    b.extend_from_slice(&id(2));
    b.extend_from_slice(&[0, 0]);
    let props = [0x40, 7, id(3)[0], id(3)[1], 0, 3, 0x1F, 0, 0]; // a Reason String property
    b.extend_from_slice(&props);
    c.sock.write_all(&b).unwrap();
    assert_eq!(t.join().unwrap(), Ended::Packet);
    let h = ctl.stop().unwrap();
    assert_eq!(h.acked, 3);
    assert_eq!(
        h.rest,
        props.to_vec(),
        "the broker's parser reads the one with properties"
    );
    assert!(h.inflight.iter().any(|f| f.id == frames[3].0));
}

#[test]
fn frames_held_for_the_refill_share_go_out_anyway_to_a_client_that_waits_for_them() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), log_opts()).unwrap());
    fill(&log, 60, false);
    // Window 16: refilled once 2 slots are free. This client acknowledges one message only
    // when 16 are unacknowledged, so it never frees 2 at once: without the hold's timeout
    // the drain would stop at the first 16.
    let (ctl, t, mut c) = start(&log, spec(&log, 16, 100));
    let mut unacked = std::collections::VecDeque::new();
    let mut got = Vec::new();
    while got.len() < 60 {
        for (id, seq) in c.read() {
            unacked.push_back(id);
            got.push(seq);
        }
        while unacked.len() >= 16 {
            let id = unacked.pop_front().unwrap();
            c.ack(&[id]);
        }
    }
    assert_eq!(got, (0..60).collect::<Vec<u32>>());
    assert_eq!(t.join().unwrap(), Ended::CaughtUp);
    let h = ctl.stop().unwrap();
    assert_eq!(h.sent, 60);
}

/// The log's frames, until call `at` of `replay` panics (a bug under the loop).
struct PanicsAt<'a> {
    log: &'a Log,
    calls: AtomicUsize,
    at: usize,
}

impl FrameSource for PanicsAt<'_> {
    fn replay(
        &self,
        shards: &[ReplayShard],
        subs: &[ReplaySub],
        opts: &ReplayOptions,
    ) -> Result<ReplayFrames, CoreError> {
        let n = 1 + self.calls.fetch_add(1, Ordering::Relaxed);
        assert!(n != self.at, "frame source bug");
        self.log.replay(shards, subs, opts)
    }
}

#[test]
fn a_panic_in_the_loop_parks_it_as_failed_and_stop_still_hands_back_an_exact_account() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), log_opts()).unwrap();
    let stored = fill(&log, 100, false);
    let (fd, mut c) = pair();
    let ctl = Control::new(spec(&log, 16, 10)).unwrap();
    let src = PanicsAt {
        log: &log,
        calls: Default::default(),
        at: 2,
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&src, &fd, &ctl)));
    assert!(r.is_err(), "the panic goes on to the caller");
    // Without the parking, stop() would wait forever for a loop that is gone.
    let h = ctl.stop().expect("the state is there");
    assert_eq!(h.ended, Ended::Failed);
    assert_eq!(h.error.as_deref(), Some("the drain loop panicked"));
    assert_eq!(h.sent, 10, "the first batch went out");
    let got = c.read();
    assert_eq!(got.len(), 10);
    check_accounted(&stored, &[], &h, &[0, 1]);
    assert!(ctl.stop().is_none(), "taken once");
}
