//! `Completes::Written` appends under `FsyncPolicy::Always` (the message log's async mode):
//! they complete without an `fdatasync` of their own, are synced within `LAZY_SYNC_MS` (or by
//! the next durable append), keep their order with durable appends, and a clean close keeps
//! them. Durable appends still sync once per batch. Counted with the shard's `syncs` stat.
use std::sync::mpsc;
use std::time::Duration;
use strata_core::log::{
    packed::Split, Completes, FsyncPolicy, Log, NewMessage, Options, Position, LAZY_SYNC_MS,
};

fn opts(fsync: FsyncPolicy) -> Options {
    Options {
        n_shards: Some(1),
        fsync,
        retention_ms: None,
        ..Options::default()
    }
}

fn msg(i: usize) -> NewMessage {
    NewMessage {
        publisher: b"lazy".to_vec(),
        topic: format!("lazy/{}", i % 3),
        qos: 1,
        retain: false,
        properties: Vec::new(),
        payload: format!("m{i}").into_bytes(),
        inbound_id: 0,
    }
}

/// Appends one message and waits for its completion.
fn append(log: &Log, i: usize, completes: Completes) -> Position {
    let (tx, rx) = mpsc::sync_channel(1);
    log.append_split_as(
        Split::of(&[msg(i)], 1),
        completes,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap().unwrap()[0]
}

fn syncs(log: &Log) -> u64 {
    log.stats().shards[0].syncs
}

fn payloads(log: &Log, n: usize) -> Vec<String> {
    let positions: Vec<Position> = (0..n)
        .map(|o| Position {
            shard: 0,
            offset: strata_core::log::Offset(o as u64),
        })
        .collect();
    let mut out = vec![String::new(); n];
    log.read_at(&positions, &mut |i, r| {
        out[i] = r
            .map(|r| String::from_utf8_lossy(r.payload).into_owned())
            .unwrap_or_default();
    })
    .unwrap();
    out
}

#[test]
fn written_appends_sync_later_durable_ones_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(FsyncPolicy::Always)).unwrap();
    let s0 = syncs(&log);
    // Durable: one sync each (appended one at a time, each its own group commit).
    for i in 0..10 {
        append(&log, i, Completes::Durable);
    }
    assert_eq!(
        syncs(&log) - s0,
        10,
        "a durable append is synced before it completes"
    );
    // Written: complete without a sync of their own (a slow machine may see one lazy sync
    // pass during the loop, not one per append).
    let s1 = syncs(&log);
    for i in 10..60 {
        append(&log, i, Completes::Written);
    }
    let s2 = syncs(&log);
    assert!(s2 - s1 <= 2, "written appends synced {} times", s2 - s1);
    // Then synced within LAZY_SYNC_MS, once, and nothing more while nothing is written.
    std::thread::sleep(Duration::from_millis(3 * LAZY_SYNC_MS));
    let s3 = syncs(&log);
    assert!(s3 > s2 || s2 > s1, "the lazy sync came");
    std::thread::sleep(Duration::from_millis(2 * LAZY_SYNC_MS));
    assert_eq!(syncs(&log), s3, "no sync while nothing waits for one");
    // Mixed: written, then durable: offsets in order, one sync for the durable one.
    let a = append(&log, 60, Completes::Written);
    let b = append(&log, 61, Completes::Durable);
    assert_eq!((a.offset.0, b.offset.0), (60, 61));
    assert_eq!(syncs(&log) - s3, 1);
    // Written just before a clean close: kept.
    append(&log, 62, Completes::Written);
    log.close();
    drop(log);
    let log = Log::open(dir.path(), opts(FsyncPolicy::Always)).unwrap();
    let want: Vec<String> = (0..63).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads(&log, 63), want);
}

#[test]
fn other_policies_ignore_the_distinction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(FsyncPolicy::None)).unwrap();
    for i in 0..5 {
        append(&log, i, Completes::Durable);
        append(&log, 100 + i, Completes::Written);
    }
    std::thread::sleep(Duration::from_millis(2 * LAZY_SYNC_MS));
    assert_eq!(syncs(&log), 0, "fsync none never syncs records");
}
