//! Read by position (`Log::read_at`, `fetch::read_at`): positions across shards,
//! generations, sealed and active segments, after reopen; missing positions after a
//! retention drop, past a record's retention, in a quarantined segment and beyond a
//! shard's end; and a property test that reading random positions returns exactly
//! what cursor reads return, byte for byte.
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_core::error::CoreError;
use strata_core::fetch::{self, FetchLimits, ReadAtBatch};
use strata_core::log::{shard_of, FsyncPolicy, Log, NewMessage, Offset, Options, Position};

fn opts() -> Options {
    Options {
        n_shards: Some(3),
        fsync: FsyncPolicy::None,
        segment_bytes: 4096,
        index_interval: 128,
        retention_ms: None,
        lts_threshold: 4,
        ..Options::default()
    }
}

fn pos(shard: u32, offset: u64) -> Position {
    Position {
        shard,
        offset: Offset(offset),
    }
}

/// Publisher `k` of 9: three per shard of a 3-shard store.
fn publisher(k: usize) -> Vec<u8> {
    (0..)
        .map(|n| format!("client-{n}"))
        .filter(|c| shard_of(c.as_bytes(), 3) as usize == k % 3)
        .nth(k / 3)
        .unwrap()
        .into_bytes()
}

/// Message `i`: payload sizes vary from a few bytes to well over the index interval,
/// and every 97th is larger than the read window.
fn msg(i: usize) -> NewMessage {
    let len = if i % 97 == 13 { 20_000 } else { (i * 37) % 700 };
    NewMessage {
        publisher: publisher(i % 9),
        topic: format!("site/{}/dev{}/temp", i % 3, i % 11),
        qos: (i % 3) as u8,
        retain: i.is_multiple_of(5),
        properties: if i.is_multiple_of(4) {
            vec![0x23, 0, i as u8]
        } else {
            Vec::new()
        },
        payload: (0..len).map(|k| (k + i) as u8).collect(),
        inbound_id: 0,
    }
}

type Expected = HashMap<(u32, u64), NewMessage>;

/// Appends `range` in batches of 8 (a segment rolls between batches only).
fn append(log: &Log, range: std::ops::Range<usize>, exp: &mut Expected) -> Vec<Position> {
    let mut out = Vec::new();
    let msgs: Vec<NewMessage> = range.map(msg).collect();
    for chunk in msgs.chunks(8) {
        let ps = log.append_blocking(chunk.to_vec()).unwrap();
        for (m, p) in chunk.iter().zip(&ps) {
            exp.insert((p.shard, p.offset.0), m.clone());
        }
        out.extend(ps);
    }
    out
}

/// Asserts `b` answers `ps`: entries in input order for exactly the positions in
/// `exp`, each equal to the message appended there.
fn check(b: &ReadAtBatch, ps: &[Position], exp: &Expected) {
    assert_eq!(b.found.len(), ps.len());
    assert_eq!(
        b.offsets.len(),
        b.found.iter().filter(|f| **f == 1).count() + 1
    );
    assert_eq!(*b.offsets.last().unwrap() as usize, b.buf.len());
    let mut j = 0;
    for (i, p) in ps.iter().enumerate() {
        let want = exp.get(&(p.shard, p.offset.0));
        assert_eq!(b.found[i] == 1, want.is_some(), "position {i}: {p:?}");
        let Some(m) = want else { continue };
        let e = b.entry(j).unwrap();
        j += 1;
        assert_eq!((u32::from(e.shard), e.offset), (p.shard, p.offset.0));
        assert_eq!(e.publisher, &m.publisher[..]);
        assert_eq!(e.topic, m.topic.as_bytes());
        assert_eq!(e.properties, &m.properties[..]);
        assert_eq!(e.payload, &m.payload[..]);
        assert_eq!((e.qos, e.retain), (m.qos, m.retain));
    }
    assert_eq!(j, b.len());
}

/// Deterministic shuffle (xorshift).
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn seg_files(dir: &Path, shard: u32) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let sdir = dir.join(format!("shard-{shard:04}"));
    for g in std::fs::read_dir(sdir).unwrap() {
        let g = g.unwrap().path();
        if !g.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&g).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|x| x == "seg") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn reads_positions_across_shards_generations_and_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut exp = Expected::new();
    let mut all = Vec::new();
    {
        let log = Log::open(d.path(), opts()).unwrap();
        all.extend(append(&log, 0..300, &mut exp));
        log.roll_generations().unwrap();
        log.roll_generations().unwrap(); // an empty generation in between
        all.extend(append(&log, 300..600, &mut exp));
        log.roll_generations().unwrap();
        // The newest generation stays active: its last segment is unsealed.
        all.extend(append(&log, 600..900, &mut exp));
        let stats = log.stats();
        for s in &stats.shards {
            assert_eq!(s.generations.len(), 4);
            assert!(s.generations[0].segments > 2, "{s:?}");
            assert!(!s.generations[3].sealed);
        }

        // Input order, ascending, shuffled with duplicates, reversed.
        check(&fetch::read_at(&log, &all).unwrap(), &all, &exp);
        let mut sorted = all.clone();
        sorted.sort_by_key(|p| (p.shard, p.offset));
        check(&fetch::read_at(&log, &sorted).unwrap(), &sorted, &exp);
        let mut mixed = all.clone();
        mixed.extend_from_slice(&all[..200]);
        shuffle(&mut mixed, 42);
        check(&fetch::read_at(&log, &mixed).unwrap(), &mixed, &exp);
        mixed.reverse();
        check(&fetch::read_at(&log, &mixed).unwrap(), &mixed, &exp);
        assert!(fetch::read_at(&log, &[]).unwrap().is_empty());

        // The sink sees every position, in input order.
        let mut seen = Vec::new();
        let n = log
            .read_at(&mixed, &mut |i, r| seen.push((i, r.map(|r| r.offset))))
            .unwrap();
        assert_eq!(n, mixed.len());
        assert!(seen
            .iter()
            .enumerate()
            .all(|(k, (i, o))| k == *i && *o == Some(mixed[k].offset.0)));
    }
    // After reopen (sealed segments trusted from .idx, active one rescanned), and
    // appends after reopen are readable at once.
    let log = Log::open(d.path(), opts()).unwrap();
    all.extend(append(&log, 900..1000, &mut exp));
    let mut mixed = all.clone();
    shuffle(&mut mixed, 7);
    check(&fetch::read_at(&log, &mixed).unwrap(), &mixed, &exp);
}

#[test]
fn out_of_range_positions_are_missing_and_bad_shards_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let mut exp = Expected::new();
    // Empty store: nothing anywhere.
    let ps = [pos(0, 0), pos(1, 5), pos(2, u64::MAX)];
    check(&fetch::read_at(&log, &ps).unwrap(), &ps, &exp);

    append(&log, 0..200, &mut exp);
    let mut ps = Vec::new();
    for s in 0..3 {
        let end = log.shard_end(s).unwrap();
        assert!(end > 0);
        ps.extend([
            pos(s, end - 1),
            pos(s, end),
            pos(s, end + 1),
            pos(s, u64::MAX),
            pos(s, 0),
        ]);
    }
    let b = fetch::read_at(&log, &ps).unwrap();
    check(&b, &ps, &exp);
    assert_eq!(b.found.iter().map(|f| u32::from(*f)).sum::<u32>(), 6);

    let e = fetch::read_at(&log, &[pos(0, 0), pos(3, 0)]).unwrap_err();
    assert!(matches!(e, CoreError::InvalidArgument(_)), "{e:?}");
    assert_eq!(e.code(), "ERR_INVALID_ARGUMENT");
}

/// Retention of the two timing tests below. Assertions that need a record to be
/// still fresh are skipped when the machine was too slow to make them in time.
const KEEP_MS: u64 = 600;

fn fresh(since: Instant) -> bool {
    since.elapsed() < Duration::from_millis(KEEP_MS * 2 / 3)
}

#[test]
fn dropped_generation_positions_are_missing() {
    let d = tempfile::tempdir().unwrap();
    let o = Options {
        retention_ms: Some(KEEP_MS),
        retention_check_ms: 3_600_000, // drop only on demand
        ..opts()
    };
    let mut exp = Expected::new();
    let t0 = Instant::now();
    let mut log = Log::open(d.path(), o.clone()).unwrap();
    let old = append(&log, 0..200, &mut exp);
    if fresh(t0) {
        check(&fetch::read_at(&log, &old).unwrap(), &old, &exp);
    }
    std::thread::sleep(Duration::from_millis(KEEP_MS + 100));
    log.roll_generations().unwrap();
    let t1 = Instant::now();
    let new = append(&log, 200..300, &mut exp);
    for p in &old {
        exp.remove(&(p.shard, p.offset.0));
    }
    let both: Vec<_> = new.iter().chain(&old).copied().collect();
    let check_both = |log: &Log| {
        let b = fetch::read_at(log, &both).unwrap();
        if fresh(t1) {
            check(&b, &both, &exp);
        }
        assert!(b.found[new.len()..].iter().all(|f| *f == 0));
    };
    // Past retention but not yet dropped: hidden, as from cursor reads.
    check_both(&log);
    let shards: std::collections::HashSet<u32> = old.iter().map(|p| p.shard).collect();
    assert_eq!(log.drop_expired().unwrap(), shards.len());
    check_both(&log);
    drop(log);
    log = Log::open(d.path(), o).unwrap();
    check_both(&log);
}

#[test]
fn per_topic_retention_hides_expired_records() {
    let d = tempfile::tempdir().unwrap();
    let o = Options {
        retention_ms: None,
        retention_overrides: vec![("site/0/#".into(), KEEP_MS)],
        ..opts()
    };
    let log = Log::open(d.path(), o).unwrap();
    let mut exp = Expected::new();
    let t0 = Instant::now();
    let ps = append(&log, 0..90, &mut exp);
    if fresh(t0) {
        check(&fetch::read_at(&log, &ps).unwrap(), &ps, &exp);
    }
    std::thread::sleep(Duration::from_millis(KEEP_MS + 100));
    exp.retain(|_, m| !m.topic.starts_with("site/0/"));
    assert_eq!(exp.len(), 60);
    check(&fetch::read_at(&log, &ps).unwrap(), &ps, &exp);
}

#[test]
fn quarantined_segment_positions_are_missing() {
    let d = tempfile::tempdir().unwrap();
    let mut exp = Expected::new();
    let ps = {
        let log = Log::open(d.path(), opts()).unwrap();
        let ps = append(&log, 0..400, &mut exp);
        log.roll_generations().unwrap();
        ps
    };
    // Two sealed segments of shard 0: the 2nd is zeroed behind its valid .idx (found
    // while reading), the 4th loses its .idx and is zeroed (found at open).
    let segs = seg_files(d.path(), 0);
    assert!(segs.len() >= 5, "{segs:?}");
    let base = |p: &Path| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    let (live, live_end) = (segs[1].clone(), base(&segs[2]));
    let (at_open, at_open_end) = (segs[3].clone(), base(&segs[4]));
    let zero_body = |p: &Path| {
        let len = std::fs::metadata(p).unwrap().len();
        let mut b = std::fs::read(p).unwrap();
        b[32..].fill(0);
        assert_eq!(b.len() as u64, len);
        std::fs::write(p, b).unwrap();
    };
    zero_body(&live);
    zero_body(&at_open);
    std::fs::remove_file(at_open.with_extension("idx")).unwrap();

    let log = Log::open(d.path(), opts()).unwrap();
    assert_eq!(log.recovery().quarantined.len(), 1, "{:?}", log.recovery());
    for p in &ps {
        let o = p.offset.0;
        if p.shard == 0
            && ((base(&live)..live_end).contains(&o) || (base(&at_open)..at_open_end).contains(&o))
        {
            exp.remove(&(0, o));
        }
    }
    assert!(exp.len() < ps.len());
    let mut mixed = ps.clone();
    shuffle(&mut mixed, 3);
    check(&fetch::read_at(&log, &mixed).unwrap(), &mixed, &exp);
    assert!(live.with_extension("seg.corrupt").exists());
    assert!(at_open.with_extension("seg.corrupt").exists());
    // Still missing on later reads, and cursor reads agree (they skip, not fail).
    check(&fetch::read_at(&log, &mixed).unwrap(), &mixed, &exp);
    assert_eq!(cursor_entries(&log).len(), exp.len());
}

#[test]
fn positions_are_readable_as_soon_as_their_append_completes() {
    let d = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(Log::open(d.path(), opts()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<(Vec<Position>, usize)>();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for k in 0..100 {
                let ps = log
                    .append_blocking((k * 5..k * 5 + 5).map(msg).collect())
                    .unwrap();
                tx.send((ps, k * 5)).unwrap();
            }
        })
    };
    let mut reads = 0;
    for (ps, first) in rx {
        let b = fetch::read_at(&log, &ps).unwrap();
        assert!(b.found.iter().all(|f| *f == 1));
        for (j, p) in ps.iter().enumerate() {
            let e = b.entry(j).unwrap();
            assert_eq!(e.offset, p.offset.0);
            assert_eq!(e.payload, &msg(first + j).payload[..]);
        }
        reads += 1;
    }
    writer.join().unwrap();
    assert_eq!(reads, 100);
}

/// Every record through cursor reads (fetch), as `(shard, offset) -> entry bytes`.
fn cursor_entries(log: &Log) -> BTreeMap<(u32, u64), Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut cursors: Vec<_> = log
        .streams("#")
        .into_iter()
        .map(|s| log.cursor(s.id, None))
        .collect();
    loop {
        let b = fetch::fetch(log, &mut cursors, FetchLimits::default()).unwrap();
        if b.is_empty() {
            return out;
        }
        for i in 0..b.len() {
            let e = b.entry(i).unwrap();
            let bytes = b.buf[b.offsets[i] as usize..b.offsets[i + 1] as usize].to_vec();
            assert!(out.insert((u32::from(e.shard), e.offset), bytes).is_none());
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, u16)>),
    Roll,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((any::<u8>(), 0u16..600), 1..40).prop_map(Op::Append),
        1 => Just(Op::Roll),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// `read_at` of a random subset (unsorted, with repeats and positions that never
    /// existed) returns, for each position, exactly the entry a cursor read returns.
    #[test]
    fn read_at_equals_cursor_reads(
        ops in prop::collection::vec(op(), 1..16),
        picks in prop::collection::vec((0u32..3, any::<u16>()), 0..300),
    ) {
        let d = tempfile::tempdir().unwrap();
        let o = Options { n_shards: Some(2), ..opts() };
        let mut log = Log::open(d.path(), o.clone()).unwrap();
        for op in ops {
            match op {
                Op::Append(ms) => {
                    let ms = ms
                        .into_iter()
                        .map(|(p, len)| NewMessage {
                            publisher: format!("c{}", p % 9).into_bytes(),
                            topic: format!("t/{}/x{}", p % 2, p % 13),
                            qos: p % 3,
                            retain: p % 2 == 0,
                            properties: vec![p; usize::from(p % 4)],
                            payload: vec![p; usize::from(len)],
                            inbound_id: 0,
                        })
                        .collect();
                    log.append_blocking(ms).unwrap();
                }
                Op::Roll => log.roll_generations().unwrap(),
                Op::Restart => {
                    drop(log);
                    log = Log::open(d.path(), o.clone()).unwrap();
                }
            }
        }
        let truth = cursor_entries(&log);
        let ends = [log.shard_end(0).unwrap(), log.shard_end(1).unwrap()];
        // Shard pick 2 means "either shard, just past its end".
        let ps: Vec<Position> = picks
            .iter()
            .map(|(s, k)| match *s {
                2 => pos(u32::from(*k & 1), ends[usize::from(*k & 1)] + u64::from(*k >> 8)),
                s => pos(s, u64::from(*k) % (ends[s as usize] + 1)),
            })
            .collect();
        let b = fetch::read_at(&log, &ps).unwrap();
        prop_assert_eq!(b.found.len(), ps.len());
        let mut j = 0;
        for (i, p) in ps.iter().enumerate() {
            let want = truth.get(&(p.shard, p.offset.0));
            prop_assert_eq!(b.found[i] == 1, want.is_some(), "position {:?}", p);
            if let Some(want) = want {
                let got = &b.buf[b.offsets[j] as usize..b.offsets[j + 1] as usize];
                prop_assert_eq!(got, &want[..]);
                j += 1;
            }
        }
        prop_assert_eq!(j, b.len());
        // Every record a cursor sees is readable by position.
        let every: Vec<Position> = truth.keys().map(|(s, o)| pos(*s, *o)).collect();
        let b = fetch::read_at(&log, &every).unwrap();
        prop_assert_eq!(b.len(), every.len());
        prop_assert_eq!(&b.buf, &truth.values().flatten().copied().collect::<Vec<u8>>());
    }
}
