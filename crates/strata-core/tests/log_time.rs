//! Seek by time across a shard (`Log::offset_at_time`): the first offset whose record is
//! at or after a time, across segment rolls and generations, after a reopen; the end
//! for a time after every record, the oldest stored record for a time before them all,
//! an empty shard, and an unknown shard.
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;
use strata_core::error::CoreError;
use strata_core::log::{now_ms, shard_of, FsyncPolicy, Log, NewMessage, Options};

fn opts() -> Options {
    Options {
        n_shards: Some(2),
        fsync: FsyncPolicy::None,
        segment_bytes: 4096,
        index_interval: 128,
        retention_ms: None,
        ..Options::default()
    }
}

/// A publisher whose messages go to shard 0 of a 2-shard store.
fn publisher0() -> Vec<u8> {
    (0..)
        .map(|n| format!("p{n}"))
        .find(|c| shard_of(c.as_bytes(), 2) == 0)
        .unwrap()
        .into_bytes()
}

fn msg(i: usize) -> NewMessage {
    NewMessage {
        publisher: publisher0(),
        topic: format!("t/{}", i % 5),
        qos: 1,
        retain: false,
        properties: Vec::new(),
        payload: vec![i as u8; 60 + i % 90],
        inbound_id: 0,
    }
}

/// Appends `n` messages starting at `from`, one at a time; returns the first offset.
fn append(log: &Log, from: usize, n: usize) -> u64 {
    let mut first = None;
    for i in from..from + n {
        let p = log.append_blocking(vec![msg(i)]).unwrap();
        first.get_or_insert(p[0].offset.0);
    }
    first.unwrap()
}

/// Waits until the clock has moved past every timestamp written so far; returns now.
fn tick() -> u64 {
    sleep(Duration::from_millis(15));
    let t = now_ms();
    sleep(Duration::from_millis(15));
    t
}

fn check(dir: &Path) {
    let log = Log::open(dir, opts()).unwrap();
    let t0 = tick();
    assert_eq!(
        log.offset_at_time(0, t0).unwrap(),
        0,
        "empty shard: its end"
    );
    let a = append(&log, 0, 300); // many segments
    let t1 = tick();
    log.roll_generations().unwrap();
    let b = append(&log, 300, 200);
    let t2 = tick();
    let c = append(&log, 500, 50);
    let t3 = tick();
    assert_eq!(a, 0);
    assert_eq!(
        log.offset_at_time(0, 0).unwrap(),
        0,
        "before everything: the oldest"
    );
    assert_eq!(log.offset_at_time(0, t0).unwrap(), a);
    assert_eq!(
        log.offset_at_time(0, t1).unwrap(),
        b,
        "the first record of the second generation"
    );
    assert_eq!(log.offset_at_time(0, t2).unwrap(), c, "inside a generation");
    assert_eq!(
        log.offset_at_time(0, t3).unwrap(),
        550,
        "after everything: the end"
    );
    assert_eq!(log.offset_at_time(0, u64::MAX >> 12).unwrap(), 550);
    assert_eq!(
        log.offset_at_time(1, t1).unwrap(),
        0,
        "the other shard is empty"
    );
    assert!(matches!(
        log.offset_at_time(2, t1),
        Err(CoreError::NotFound(_))
    ));
    // Every time between two records lands on the later one.
    let mut last = 0;
    for off in [a, b, c] {
        assert!(off >= last);
        last = off;
    }
    log.close();
    drop(log);
    // The same answers after a reopen (sealed segments read through their .idx).
    let log = Log::open(dir, opts()).unwrap();
    assert_eq!(log.offset_at_time(0, t1).unwrap(), b);
    assert_eq!(log.offset_at_time(0, t2).unwrap(), c);
    assert_eq!(log.offset_at_time(0, t3).unwrap(), 550);
}

#[test]
fn offset_at_time_across_segments_generations_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    check(dir.path());
}

/// Every record's own timestamp: offset_at_time(ts of record k) is the first record
/// with that timestamp, so never after k, and the record before it is older.
#[test]
fn offset_at_time_matches_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut stamps = Vec::new();
    for i in 0..400 {
        log.append_blocking(vec![msg(i)]).unwrap();
        if i % 40 == 0 {
            sleep(Duration::from_millis(2));
        }
        if i == 200 {
            log.roll_generations().unwrap();
        }
    }
    let b = strata_core::fetch::read_at(
        &log,
        &(0..400)
            .map(|o| strata_core::log::Position {
                shard: 0,
                offset: strata_core::log::Offset(o),
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for k in 0..400 {
        let e = b.entry(k).unwrap();
        stamps.push(e.timestamp);
    }
    for (k, ts) in stamps.iter().enumerate() {
        let at = log.offset_at_time(0, *ts).unwrap() as usize;
        assert!(at <= k, "record {k}: {at}");
        assert_eq!(stamps[at], *ts);
        if at > 0 {
            assert!(stamps[at - 1] < *ts);
        }
    }
}
