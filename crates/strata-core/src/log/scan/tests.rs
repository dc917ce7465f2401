use super::*;
use crate::log::{shard_of, topic_matches, FsyncPolicy, NewMessage, Options};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn opts() -> Options {
    Options {
        n_shards: Some(1),
        fsync: FsyncPolicy::None,
        segment_bytes: 4096,
        index_interval: 128,
        retention_ms: None,
        lts_threshold: 4,
        ..Options::default()
    }
}

fn msg(topic: &str, i: usize) -> NewMessage {
    NewMessage {
        publisher: format!("p{}", i % 3).into_bytes(),
        topic: topic.to_string(),
        qos: (i % 3) as u8,
        retain: i.is_multiple_of(5),
        properties: if i.is_multiple_of(4) {
            vec![0x23, 0, i as u8]
        } else {
            Vec::new()
        },
        // Every 97th is larger than a scan's first read (16 KiB).
        payload: (0..if i % 97 == 50 { 40_000 } else { (i * 7) % 90 })
            .map(|k| (k + i) as u8)
            .collect(),
        inbound_id: 0,
    }
}

/// Appends `topics` (message `i` is `msg(topics[i], first + i)`) in one batch.
fn append(log: &Log, topics: &[&str], first: usize) -> Vec<(u64, NewMessage)> {
    let ms: Vec<_> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| msg(t, first + i))
        .collect();
    let ps = log.append_blocking(ms.clone()).unwrap();
    ps.iter().map(|p| p.offset.0).zip(ms).collect()
}

fn f(filter: &str, start: u64) -> ScanFilter {
    ScanFilter {
        filter: filter.into(),
        start,
    }
}

fn limits(max_entries: usize, max_bytes: usize, max_examined: usize) -> ScanLimits {
    ScanLimits {
        max_entries,
        max_bytes,
        max_examined,
        until: None,
    }
}

/// `(offset, mask words)` the naive way: every record against every filter.
fn model(records: &[(u64, NewMessage)], from: u64, filters: &[ScanFilter]) -> Vec<(u64, Vec<u32>)> {
    let words = filters.len().div_ceil(32);
    records
        .iter()
        .filter(|(o, _)| *o >= from)
        .filter_map(|(o, m)| {
            let mut mask = vec![0u32; words];
            for (i, fl) in filters.iter().enumerate() {
                let inner = parse_filter(&fl.filter).unwrap().filter;
                if *o >= fl.start && topic_matches(inner, m.topic.as_bytes()) {
                    mask[i / 32] |= 1 << (i % 32);
                }
            }
            mask.iter().any(|w| *w != 0).then_some((*o, mask))
        })
        .collect()
}

/// The entries of one batch as `(offset, mask)`, checking the batch invariants
/// and that each entry is the record appended at its offset.
fn entries(b: &ScanBatch, records: &[(u64, NewMessage)], shard: u32) -> Vec<(u64, Vec<u32>)> {
    assert_eq!(b.offsets[0], 0);
    assert_eq!(*b.offsets.last().unwrap() as usize, b.buf.len());
    assert_eq!(b.masks.len(), b.len() * b.words);
    (0..b.len())
        .map(|j| {
            let e = b.entry(j).unwrap();
            assert_eq!(u32::from(e.shard), shard);
            assert!(e.offset < b.next);
            let (_, m) = records.iter().find(|(o, _)| *o == e.offset).unwrap();
            assert_eq!(e.topic, m.topic.as_bytes());
            assert_eq!(e.publisher, &m.publisher[..]);
            assert_eq!(e.properties, &m.properties[..]);
            assert_eq!(e.payload, &m.payload[..]);
            assert_eq!((e.qos, e.retain), (m.qos, m.retain));
            let mask = b.mask(j).unwrap().to_vec();
            assert!(mask.iter().any(|w| *w != 0));
            (e.offset, mask)
        })
        .collect()
}

/// Scans shard 0 from `from` to Done with `lim`; returns the entries, the end
/// offset and the total skipped.
fn scan_all(
    log: &Log,
    from: u64,
    filters: &[ScanFilter],
    lim: ScanLimits,
    records: &[(u64, NewMessage)],
) -> (Vec<(u64, Vec<u32>)>, u64, u64) {
    let (mut out, mut next, mut skipped) = (Vec::new(), from, 0);
    for _ in 0..100_000 {
        let b = scan(log, 0, next, filters, lim).unwrap();
        assert!(b.next >= next);
        if let Some(e) = b.entry(0) {
            assert!(e.offset >= next);
        }
        out.extend(entries(&b, records, 0));
        next = b.next;
        skipped += b.skipped;
        if b.status == ScanStatus::Done {
            return (out, next, skipped);
        }
        assert_eq!(b.status, ScanStatus::Next);
    }
    panic!("no progress");
}

#[test]
fn masks_follow_mqtt_matching_and_shared_and_dollar_rules() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(
        d.path(),
        Options {
            n_shards: Some(2),
            ..opts()
        },
    )
    .unwrap();
    let topics = [
        "a/b/c",
        "a/x/c",
        "$SYS/broker/load",
        "a",
        "b/c",
        "$SYS/x",
        "a/b",
        "x/broker/y",
    ];
    // Every publisher of shard 1: the entries say shard 1.
    let p1 = (0..)
        .map(|n| format!("c{n}"))
        .find(|c| shard_of(c.as_bytes(), 2) == 1)
        .unwrap();
    let ms: Vec<_> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| NewMessage {
            publisher: p1.clone().into_bytes(),
            ..msg(t, i)
        })
        .collect();
    let ps = log.append_blocking(ms.clone()).unwrap();
    assert!(ps.iter().all(|p| p.shard == 1));
    let records: Vec<_> = ps.iter().map(|p| p.offset.0).zip(ms).collect();
    let filters = [
        f("a/+/c", 0),
        f("#", 0),
        f("$share/g/a/#", 0),
        f("$SYS/#", 0),
        f("+/broker/#", 0),
        f("+/c", 0),
    ];
    let b = scan(&log, 1, 0, &filters, ScanLimits::default()).unwrap();
    assert_eq!((b.status, b.next, b.skipped), (ScanStatus::Done, 8, 0));
    assert_eq!(b.words, 1);
    let got: Vec<(u64, u32)> = (0..b.len())
        .map(|j| {
            let e = b.entry(j).unwrap();
            assert_eq!(e.shard, 1);
            let (_, m) = &records[e.offset as usize];
            assert_eq!((e.topic, e.payload), (m.topic.as_bytes(), &m.payload[..]));
            (e.offset, b.mask(j).unwrap()[0])
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0b000111), // a/b/c: a/+/c, #, $share/g/a/#
            (1, 0b000111), // a/x/c
            (2, 0b001000), // $SYS/broker/load: only $SYS/# ([MQTT-4.7.2-1])
            (3, 0b000110), // a: # and a/# (parent level)
            (4, 0b100010), // b/c: #, +/c
            (5, 0b001000), // $SYS/x
            (6, 0b000110), // a/b
            (7, 0b010010), // x/broker/y: #, +/broker/#
        ]
    );
    // Shard 0 holds nothing: Done at once.
    let b = scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap();
    assert_eq!((b.len(), b.next, b.status), (0, 0, ScanStatus::Done));
    // No filters: nothing matches, the whole shard is passed.
    let b = scan(&log, 1, 0, &[], ScanLimits::default()).unwrap();
    assert_eq!(
        (b.len(), b.words, b.next, b.status),
        (0, 0, 8, ScanStatus::Done)
    );
}

#[test]
fn more_than_32_filters_and_per_filter_start() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let topics: Vec<String> = (0..60).map(|k| format!("t/{}", k % 45)).collect();
    let ts: Vec<&str> = topics.iter().map(String::as_str).collect();
    let records = append(&log, &ts, 0);
    // Filter k < 39 is t/k; 39 is t/# from offset 20; 40 is t/5 from offset 50
    // (so t/5 at offset 5 has bit 5 only, at offset 50 bits 5 and 40).
    let mut filters: Vec<ScanFilter> = (0..39).map(|k| f(&format!("t/{k}"), 0)).collect();
    filters.push(f("t/#", 20));
    filters.push(f("t/5", 50));
    let b = scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap();
    assert_eq!(b.words, 2);
    assert_eq!(b.status, ScanStatus::Done);
    let got = entries(&b, &records, 0);
    assert_eq!(got, model(&records, 0, &filters));
    let at = |o: u64| got.iter().find(|(x, _)| *x == o).map(|(_, m)| m.clone());
    assert_eq!(at(5), Some(vec![1 << 5, 0]));
    assert_eq!(at(19), Some(vec![1 << 19, 0]), "before t/#'s start");
    assert_eq!(at(20), Some(vec![1 << 20, 1 << 7]), "from t/#'s start on");
    assert_eq!(at(41), Some(vec![0, 1 << 7]), "t/41: only t/# (bit 39)");
    assert_eq!(at(50), Some(vec![1 << 5, (1 << 7) | (1 << 8)]));
    // A record matched only by a filter whose start is past it is not emitted.
    let only_late = [f("t/1", 100)];
    let b = scan(&log, 0, 0, &only_late, ScanLimits::default()).unwrap();
    assert!(b.is_empty());
    assert_eq!(b.next, 60);
}

#[test]
fn limits_stop_and_next_continues_exactly() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let topics: Vec<String> = (0..300).map(|i| format!("s/{}/{}", i % 7, i % 5)).collect();
    let ts: Vec<&str> = topics.iter().map(String::as_str).collect();
    let records = append(&log, &ts, 0);
    let filters = [f("s/1/#", 0), f("s/+/3", 40), f("s/6/4", 0)];
    let want = model(&records, 0, &filters);
    assert!(want.len() > 60);

    // max_entries: exactly that many per call.
    let b = scan(&log, 0, 0, &filters, limits(10, usize::MAX, usize::MAX)).unwrap();
    assert_eq!((b.len(), b.status), (10, ScanStatus::Next));
    assert_eq!(b.next, want[9].0 + 1, "stops right after the 10th entry");
    // max_bytes: an entry that does not fit is left for the next call; the first
    // entry is emitted even past the budget.
    let b = scan(&log, 0, 0, &filters, limits(1000, 0, usize::MAX)).unwrap();
    assert_eq!(
        (b.len(), b.status, b.next),
        (1, ScanStatus::Next, want[0].0 + 1)
    );
    let one = b.buf.len();
    let b = scan(&log, 0, 0, &filters, limits(1000, one * 3 + 10, usize::MAX)).unwrap();
    assert!(
        b.buf.len() <= one * 3 + 10 && b.len() >= 2,
        "{}",
        b.buf.len()
    );
    assert_eq!(b.status, ScanStatus::Next);
    assert_eq!(
        b.next,
        want[b.len()].0,
        "next is the entry that did not fit"
    );
    // max_examined: counts every record, matching or not.
    let b = scan(&log, 0, 7, &filters, limits(1000, usize::MAX, 25)).unwrap();
    assert_eq!((b.next, b.status), (32, ScanStatus::Next));
    assert_eq!(
        entries(&b, &records, 0),
        model(&records[7..32], 7, &filters)
    );
    // Zero entries allowed: nothing examined.
    let b = scan(&log, 0, 3, &filters, limits(0, usize::MAX, usize::MAX)).unwrap();
    assert_eq!((b.len(), b.next, b.status), (0, 3, ScanStatus::Next));
    // until: stops before it, and takes precedence over Done.
    let u = |until| ScanLimits {
        until: Some(until),
        ..ScanLimits::default()
    };
    let b = scan(&log, 0, 0, &filters, u(100)).unwrap();
    assert_eq!((b.next, b.status), (100, ScanStatus::Until));
    assert_eq!(
        entries(&b, &records, 0),
        model(&records[..100], 0, &filters)
    );
    let b = scan(&log, 0, 150, &filters, u(100)).unwrap();
    assert_eq!((b.len(), b.next, b.status), (0, 150, ScanStatus::Until));
    let b = scan(&log, 0, 0, &filters, u(300)).unwrap();
    assert_eq!((b.next, b.status), (300, ScanStatus::Until));
    let b = scan(&log, 0, 0, &filters, u(301)).unwrap();
    assert_eq!((b.next, b.status), (300, ScanStatus::Done));
    assert_eq!(b.next, log.shard_end(0).unwrap());
    // Past the end: Done, next not moved back.
    let b = scan(&log, 0, 500, &filters, ScanLimits::default()).unwrap();
    assert_eq!((b.len(), b.next, b.status), (0, 500, ScanStatus::Done));

    // Any chunking gives the one-shot answer.
    for (e, by, ex) in [
        (1, usize::MAX, usize::MAX),
        (3, 200, 7),
        (1000, 0, 1),
        (2, 1, 3),
    ] {
        for from in [0, 1, 41, 299, 300] {
            let (got, end, skipped) = scan_all(&log, from, &filters, limits(e, by, ex), &records);
            assert_eq!(
                got,
                model(&records, from, &filters),
                "{e} {by} {ex} from {from}"
            );
            assert_eq!((end, skipped), (300, 0));
        }
    }
}

#[test]
fn scans_across_segment_and_generation_rolls_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    let topic = |i: usize| match (i / 150) % 3 {
        // Runs of one topic family fill whole segments, so segments holding no
        // stream a filter can match are passed over unread.
        0 => format!("x/{}", i % 2),
        1 => format!("y/{}/z", i % 9),
        _ => format!("w/{}", i % 11),
    };
    let fill = |log: &Log, r: std::ops::Range<usize>, records: &mut Vec<_>| {
        for chunk in r.collect::<Vec<_>>().chunks(10) {
            let ts: Vec<String> = chunk.iter().map(|i| topic(*i)).collect();
            let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
            records.extend(append(log, &ts, chunk[0]));
        }
    };
    let filter_sets = [
        vec![f("y/#", 0)],
        vec![f("y/+/z", 0), f("w/3", 500), f("x/1", 0)],
        vec![f("nothing/here", 0)],
        vec![f("#", 0)],
    ];
    {
        let log = Log::open(d.path(), opts()).unwrap();
        fill(&log, 0..600, &mut records);
        log.roll_generations().unwrap();
        log.roll_generations().unwrap(); // an empty generation in between
        fill(&log, 600..1100, &mut records);
        let st = &log.stats().shards[0];
        assert_eq!(st.generations.len(), 3);
        assert!(st.generations[0].segments > 5, "{st:?}");
        for fs in &filter_sets {
            for (lim, from) in [(ScanLimits::default(), 0), (limits(7, 500, 40), 3)] {
                let (got, end, skipped) = scan_all(&log, from, fs, lim, &records);
                assert_eq!(got, model(&records, from, fs), "{fs:?}");
                assert_eq!((end, skipped), (1100, 0));
            }
        }
    }
    // After reopen: sealed segments trusted through their index.
    let log = Log::open(d.path(), opts()).unwrap();
    fill(&log, 1100..1200, &mut records);
    for fs in &filter_sets {
        let (got, end, _) = scan_all(&log, 0, fs, limits(13, 4096, 100), &records);
        assert_eq!(got, model(&records, 0, fs));
        assert_eq!(end, 1200);
    }
}

const KEEP_MS: u64 = 600;

#[test]
fn starts_at_the_oldest_record_after_retention_drops() {
    let d = tempfile::tempdir().unwrap();
    let o = Options {
        retention_ms: Some(KEEP_MS),
        retention_check_ms: 3_600_000, // drop only on demand
        ..opts()
    };
    let log = Log::open(d.path(), o).unwrap();
    let ts: Vec<String> = (0..100).map(|i| format!("a/{}", i % 3)).collect();
    let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
    append(&log, &ts, 0);
    std::thread::sleep(Duration::from_millis(KEEP_MS + 100));
    log.roll_generations().unwrap();
    let t1 = Instant::now();
    let fresh = append(&log, &ts[..50], 100);
    let filters = [f("a/#", 0)];
    let check = |b: &ScanBatch| {
        assert_eq!((b.next, b.status), (150, ScanStatus::Done));
        assert_eq!(b.skipped, 100, "the expired records are counted");
        if t1.elapsed() < Duration::from_millis(KEEP_MS * 2 / 3) {
            assert_eq!(entries(b, &fresh, 0), model(&fresh, 0, &filters));
        }
    };
    // Expired but not dropped: examined, hidden, counted.
    check(&scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap());
    assert_eq!(log.drop_expired().unwrap(), 1);
    // Dropped: starts at the oldest stored record; the gap is counted.
    check(&scan(&log, 0, 0, &filters, ScanLimits::default()).unwrap());
    let b = scan(&log, 0, 30, &filters, ScanLimits::default()).unwrap();
    assert_eq!(b.skipped, 70);
    // Bounded by until inside the gap.
    let b = scan(
        &log,
        0,
        10,
        &filters,
        ScanLimits {
            until: Some(60),
            ..ScanLimits::default()
        },
    )
    .unwrap();
    assert_eq!(
        (b.len(), b.next, b.skipped, b.status),
        (0, 60, 50, ScanStatus::Until)
    );
}

fn seg_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for g in std::fs::read_dir(dir.join("shard-0000")).unwrap() {
        let g = g.unwrap().path();
        if g.is_dir() {
            for e in std::fs::read_dir(&g).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "seg") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn quarantined_segment_is_skipped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let ts: Vec<String> = (0..400).map(|i| format!("q/{}", i % 4)).collect();
    let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
    let records = {
        let log = Log::open(d.path(), opts()).unwrap();
        let mut r = Vec::new();
        for (k, c) in ts.chunks(8).enumerate() {
            r.extend(append(&log, c, k * 8));
        }
        log.roll_generations().unwrap();
        r
    };
    let segs = seg_files(d.path());
    assert!(segs.len() > 3);
    let base = |p: &Path| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    let (lo, hi) = (base(&segs[1]), base(&segs[2]));
    // Zeroed behind a valid index: found while scanning, quarantined on the spot.
    let mut b = std::fs::read(&segs[1]).unwrap();
    b[32..].fill(0);
    std::fs::write(&segs[1], b).unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let filters = [f("q/1", 0), f("q/3", 0)];
    let kept: Vec<_> = records
        .iter()
        .filter(|(o, _)| !(lo..hi).contains(o))
        .cloned()
        .collect();
    let (got, end, skipped) = scan_all(&log, 0, &filters, ScanLimits::default(), &records);
    assert_eq!(got, model(&kept, 0, &filters));
    assert_eq!((end, skipped), (400, hi - lo));
    assert!(segs[1].with_extension("seg.corrupt").exists());
    // Later scans pass the gap the same way.
    let (got2, _, skipped2) = scan_all(&log, 0, &filters, limits(5, 300, 20), &records);
    assert_eq!((got2, skipped2), (got, hi - lo));
}

#[test]
fn concurrent_appends_appear_once_committed() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(d.path(), opts()).unwrap());
    const N: usize = 1500;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            for k in 0..N / 10 {
                let ts: Vec<String> = (k * 10..k * 10 + 10)
                    .map(|i| format!("c/{}", i % 3))
                    .collect();
                let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
                let r = append(&log, &ts, k * 10);
                // Once an append completed, a scan sees it.
                let last = r.last().unwrap().0;
                let b = scan(&log, 0, last, &[f("#", 0)], ScanLimits::default()).unwrap();
                assert_eq!(b.entry(0).map(|e| e.offset), Some(last));
                all.extend(r);
            }
            all
        })
    };
    let filters = [f("c/0", 0), f("c/2", 0)];
    let (mut got, mut next, mut k) = (Vec::new(), 0u64, 0usize);
    while next < N as u64 {
        k += 1;
        let lim = limits(1 + k % 17, 64 + (k * 131) % 3000, 1 + k % 53);
        let b = scan(&log, 0, next, &filters, lim).unwrap();
        assert!(b.next >= next && b.next <= log.shard_end(0).unwrap());
        for j in 0..b.len() {
            let e = b.entry(j).unwrap();
            assert_eq!(e.topic, format!("c/{}", e.offset % 3).as_bytes());
            got.push(e.offset);
        }
        next = b.next;
        if b.status == ScanStatus::Done {
            log.wait_blocking(0, next, Duration::from_millis(50))
                .unwrap();
        }
    }
    let records = writer.join().unwrap();
    let want: Vec<u64> = model(&records, 0, &filters)
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(got, want, "every matching record exactly once, in order");
}

#[test]
fn bad_arguments() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let e = scan(&log, 1, 0, &[], ScanLimits::default()).unwrap_err();
    assert!(matches!(e, CoreError::InvalidArgument(_)), "{e:?}");
    for bad in ["a/#/b", "", "$share/g", "a+"] {
        let e = scan(&log, 0, 0, &[f(bad, 0)], ScanLimits::default()).unwrap_err();
        assert_eq!(e.code(), "ERR_INVALID_TOPIC", "{bad}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Roll,
    Restart,
}

const LEVELS: [&str; 5] = ["a", "b", "$SYS", "c", "d"];

fn topic_of(k: u8) -> String {
    // 1..3 levels from a small alphabet; `$SYS` only leads.
    let n = 1 + usize::from(k % 3);
    let mut v = vec![LEVELS[usize::from(k / 3) % LEVELS.len()]];
    for j in 1..n {
        v.push(["a", "b", "x1", "x2", "x3", "x4", "x5"][(usize::from(k) >> j) % 7]);
    }
    v.join("/")
}

fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just("a"),
        Just("b"),
        Just("$SYS"),
        Just("x1"),
        Just("x3"),
        Just("+"),
    ];
    (
        prop::collection::vec(level, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut ls, hash, share)| {
            if hash {
                ls.push("#");
            }
            let f = ls.join("/");
            if share {
                format!("$share/g/{f}")
            } else {
                f
            }
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 1..60).prop_map(Op::Append),
        1 => Just(Op::Roll),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    /// Scanning in random chunks returns exactly the naive filter over all records.
    #[test]
    fn scan_equals_filtering_every_record(
        ops in prop::collection::vec(op_strategy(), 1..12),
        filters in prop::collection::vec((filter_strategy(), 0u64..400), 0..40),
        from in 0u64..500,
        chunks in prop::collection::vec((0usize..12, 0usize..1500, 1usize..80, 0u64..600), 1..8),
    ) {
        let d = tempfile::tempdir().unwrap();
        let o = Options { lts_threshold: 3, ..opts() };
        let mut log = Log::open(d.path(), o.clone()).unwrap();
        let mut records = Vec::new();
        for op in ops {
            match op {
                Op::Append(ks) => {
                    let ts: Vec<String> = ks.iter().map(|k| topic_of(*k)).collect();
                    let ts: Vec<&str> = ts.iter().map(String::as_str).collect();
                    let first = records.len();
                    records.extend(append(&log, &ts, first));
                }
                Op::Roll => log.roll_generations().unwrap(),
                Op::Restart => {
                    drop(log);
                    log = Log::open(d.path(), o.clone()).unwrap();
                }
            }
        }
        let filters: Vec<ScanFilter> = filters.iter().map(|(s, st)| f(s, *st)).collect();
        let end = log.shard_end(0).unwrap();
        let (mut got, mut next, mut k) = (Vec::new(), from, 0usize);
        loop {
            let (e, by, ex, until) = chunks[k % chunks.len()];
            k += 1;
            // `until` only on odd calls, so the scan always gets to the end.
            let until = (k % 2 == 1).then_some(until);
            let lim = ScanLimits { max_entries: e.max(1), max_bytes: by, max_examined: ex, until };
            let b = scan(&log, 0, next, &filters, lim).unwrap();
            prop_assert!(b.next >= next);
            prop_assert_eq!(b.skipped, 0);
            prop_assert_eq!(b.words, filters.len().div_ceil(32));
            if let Some(u) = until {
                prop_assert!(b.next <= u.max(next));
                prop_assert_eq!(b.status == ScanStatus::Until, b.next >= u);
            }
            got.extend(entries(&b, &records, 0));
            next = b.next;
            if b.status == ScanStatus::Done {
                break;
            }
            prop_assert!(k < 10_000, "no progress");
        }
        prop_assert_eq!(next, end.max(from));
        prop_assert_eq!(got, model(&records, from, &filters));
    }
}
