//! Generations, retention, streams (LTS learning), batch fetch and parked readers.
use std::sync::mpsc;
use std::time::Duration;
use strata_core::fetch::{fetch, FetchLimits, ENTRY_HEADER};
use strata_core::log::{Log, NewMessage, Options, ReadStatus};

fn msg(publisher: &str, topic: &str, payload: &[u8]) -> NewMessage {
    NewMessage {
        publisher: publisher.as_bytes().to_vec(),
        topic: topic.to_string(),
        qos: 2,
        retain: true,
        properties: vec![0x23, 0, 5],
        payload: payload.to_vec(),
        inbound_id: 0,
    }
}

fn opts() -> Options {
    Options {
        n_shards: Some(1),
        retention_check_ms: 3_600_000,
        ..Options::default()
    }
}

fn drain(log: &Log, filter: &str) -> (Vec<Vec<u8>>, u64) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for s in log.streams(filter) {
        let mut c = log.cursor(s.id, Some(filter.to_string()));
        loop {
            let r = log
                .read(&mut c, 5, &mut |r| out.push(r.payload.to_vec()))
                .unwrap();
            skipped += r.skipped;
            if r.status != ReadStatus::Next {
                break;
            }
        }
    }
    (out, skipped)
}

#[test]
fn generations_roll_by_time_and_only_newest_takes_writes() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(
        d.path(),
        Options {
            generation_span_ms: 1,
            ..opts()
        },
    )
    .unwrap();
    for i in 0..3u8 {
        log.append_blocking(vec![msg("p", "a/b", &[i])]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = log.stats();
    let gens = &st.shards[0].generations;
    assert_eq!(gens.len(), 3, "{gens:?}");
    assert!(gens[..2].iter().all(|g| g.sealed) && !gens[2].sealed);
    assert!(gens.windows(2).all(|w| w[0].start_ts <= w[1].start_ts));
    assert_eq!(st.records, 3);
    // A sealed generation's stream ends with End, the newest with Done.
    let streams = log.streams("a/b");
    assert_eq!(streams.len(), 3);
    let mut c = log.cursor(streams[0].id, None);
    assert_eq!(
        log.read(&mut c, 10, &mut |_| {}).unwrap().status,
        ReadStatus::End
    );
    let mut c = log.cursor(streams[2].id, None);
    assert_eq!(
        log.read(&mut c, 10, &mut |_| {}).unwrap().status,
        ReadStatus::Done
    );
    drop(log);
    let log = Log::open(d.path(), opts()).unwrap();
    assert_eq!(drain(&log, "#").0, vec![vec![0], vec![1], vec![2]]);
}

#[test]
fn retention_drops_whole_generations_and_reports_skipped() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(
        d.path(),
        Options {
            retention_ms: Some(40),
            ..opts()
        },
    )
    .unwrap();
    log.append_blocking((0..10u8).map(|i| msg("p", "a/b", &[i])).collect())
        .unwrap();
    let sid = log.streams("#")[0].id;
    let mut c = log.cursor(sid, None);
    let r = log.read(&mut c, 3, &mut |_| {}).unwrap();
    assert_eq!((r.delivered, r.status), (3, ReadStatus::Next));
    log.roll_generations().unwrap();
    let old_dir_count = std::fs::read_dir(d.path().join("shard-0000"))
        .unwrap()
        .count();
    std::thread::sleep(Duration::from_millis(80));
    log.append_blocking(vec![msg("p", "a/b", b"new")]).unwrap();
    assert_eq!(log.drop_expired().unwrap(), 1);
    assert_eq!(log.stats().shards[0].generations.len(), 1);
    // The generation's directory is gone (tombstone file added).
    let after = std::fs::read_dir(d.path().join("shard-0000"))
        .unwrap()
        .count();
    assert_eq!(after, old_dir_count - 1 + 1);
    let r = log.read(&mut c, 100, &mut |_| {}).unwrap();
    assert_eq!((r.status, r.delivered, r.skipped), (ReadStatus::End, 0, 7));
    // Skipped count survives a restart (tombstones are on disk).
    let mut c2 = log.cursor(sid, None);
    drop(log);
    let log = Log::open(d.path(), opts()).unwrap();
    c2.seen = 1;
    let r = log.read(&mut c2, 100, &mut |_| {}).unwrap();
    assert_eq!((r.status, r.skipped), (ReadStatus::End, 9));
    // Offsets keep increasing after all data went away.
    let p = log.append_blocking(vec![msg("p", "a/b", b"x")]).unwrap();
    assert_eq!(p[0].offset.0, 11);
}

#[test]
fn per_topic_retention_override() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(
        d.path(),
        Options {
            retention_ms: Some(30),
            retention_overrides: vec![("keep/#".into(), 3_600_000)],
            ..opts()
        },
    )
    .unwrap();
    log.append_blocking(vec![msg("p", "keep/a", b"k"), msg("p", "drop/a", b"d")])
        .unwrap();
    log.roll_generations().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    // Physical retention is the longest override: nothing dropped...
    assert_eq!(log.drop_expired().unwrap(), 0);
    // ...but the short-lived topic is no longer visible.
    assert_eq!(drain(&log, "keep/#").0, vec![b"k".to_vec()]);
    let (got, skipped) = drain(&log, "drop/#");
    assert!(got.is_empty());
    assert_eq!(skipped, 1);
}

#[test]
fn streams_learn_wildcards_and_filters_resolve_to_streams() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(
        d.path(),
        Options {
            lts_threshold: 4,
            ..opts()
        },
    )
    .unwrap();
    for i in 0..20 {
        log.append_blocking(vec![msg("p", &format!("dev/{i}/temp"), &[i as u8])])
            .unwrap();
    }
    log.append_blocking(vec![msg("p", "other", b"o")]).unwrap();
    let all = log.streams("#");
    let structures: Vec<&str> = all.iter().map(|s| s.structure.as_str()).collect();
    assert_eq!(
        structures,
        [
            "dev/0/temp",
            "dev/1/temp",
            "dev/2/temp",
            "dev/3/temp",
            "dev/+/temp",
            "other"
        ]
    );
    assert_eq!(all[4].records, 16);
    // dev/7 can only be in the wildcard stream; dev/2 in its own and the wildcard one.
    assert_eq!(log.streams("dev/7/temp").len(), 1);
    assert_eq!(log.streams("dev/2/temp").len(), 2);
    assert_eq!(log.streams("dev/+/hum").len(), 0);
    assert_eq!(drain(&log, "dev/7/temp").0, vec![vec![7]]);
    assert_eq!(drain(&log, "dev/2/temp").0, vec![vec![2]]);
    assert_eq!(drain(&log, "dev/+/temp").0.len(), 20);
    // The learned mapping survives a restart: dev/99 still goes to the wildcard stream.
    drop(log);
    let log = Log::open(
        d.path(),
        Options {
            lts_threshold: 4,
            ..opts()
        },
    )
    .unwrap();
    log.append_blocking(vec![msg("p", "dev/99/temp", b"z")])
        .unwrap();
    let all = log.streams("#");
    assert_eq!(all.len(), 6);
    assert_eq!(all[4].records, 17);
}

#[test]
fn batch_fetch_fills_one_buffer_with_an_offset_table() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(
        d.path(),
        Options {
            n_shards: Some(4),
            ..opts()
        },
    )
    .unwrap();
    for i in 0..50u8 {
        log.append_blocking(vec![msg(
            &format!("client-{}", i % 5),
            &format!("t/{}", i % 2),
            &[i; 3],
        )])
        .unwrap();
    }
    let streams = log.streams("t/#");
    let mut cursors: Vec<_> = streams.iter().map(|s| log.cursor(s.id, None)).collect();
    let mut got = 0usize;
    loop {
        let b = fetch(
            &log,
            &mut cursors,
            FetchLimits {
                per_cursor: 7,
                total: 20,
                bytes: 1 << 20,
            },
        )
        .unwrap();
        assert_eq!(b.offsets[0], 0);
        assert_eq!(*b.offsets.last().unwrap() as usize, b.buf.len());
        assert!(b
            .offsets
            .windows(2)
            .all(|w| w[1] as usize > w[0] as usize + ENTRY_HEADER));
        assert_eq!(b.per_cursor.len(), cursors.len());
        assert_eq!(
            b.per_cursor
                .iter()
                .map(|c| c.delivered as usize)
                .sum::<usize>(),
            b.len()
        );
        assert!(b.len() <= 20);
        for i in 0..b.len() {
            let e = b.entry(i).unwrap();
            assert_eq!(e.payload.len(), 3);
            assert_eq!((e.qos, e.retain), (2, true));
            assert_eq!(e.properties, &[0x23, 0, 5]);
            assert!(e.publisher.starts_with(b"client-"));
            assert!(e.topic.starts_with(b"t/"));
        }
        got += b.len();
        if b.per_cursor.iter().all(|c| c.status != ReadStatus::Next) {
            break;
        }
    }
    assert_eq!(got, 50);
}

#[test]
fn parked_reader_is_woken_on_append() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let end = log.shard_end(0).unwrap();
    let (tx, rx) = mpsc::channel();
    log.wait(0, end, Box::new(move || tx.send(()).unwrap()))
        .unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    log.append_blocking(vec![msg("p", "a", b"x")]).unwrap();
    rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(
        log.wait_blocking(0, end, Duration::from_millis(1)).unwrap(),
        end + 1
    );
}
