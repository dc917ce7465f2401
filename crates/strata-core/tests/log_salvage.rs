//! A damaged record costs that record, not the rest of its segment: segments damaged in
//! the middle (found at open, or while reading a sealed segment trusted through its index)
//! are replaced by their intact runs, the original is quarantined, and the records lost are
//! reported exactly. A shard whose last files are gone continues above the offsets it had
//! handed out (`raise_end`).
use std::fs;
use std::path::{Path, PathBuf};
use strata_core::log::{scan, Log, NewMessage, Options, ScanFilter, ScanLimits, ScanStatus};

fn msg(i: u32) -> NewMessage {
    NewMessage {
        publisher: b"pub".to_vec(),
        topic: format!("t/{}", i % 3),
        qos: 1,
        retain: false,
        properties: Vec::new(),
        payload: format!("{i:08}-{}", "x".repeat((i % 50) as usize)).into_bytes(),
        inbound_id: 0,
    }
}

fn opts(segment_bytes: u64) -> Options {
    Options {
        n_shards: Some(1),
        segment_bytes,
        index_interval: 512,
        retention_check_ms: 3_600_000,
        ..Options::default()
    }
}

fn fill(dir: &Path, o: Options, n: u32) {
    let log = Log::open(dir, o).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        log.append_blocking(chunk.iter().map(|i| msg(*i)).collect())
            .unwrap();
    }
}

/// Every record of shard 0 in offset order: (message numbers, records reported gone).
fn read_all(log: &Log) -> (Vec<u32>, u64) {
    let mut got = Vec::new();
    let mut skipped = 0;
    let mut from = 0;
    loop {
        let b = scan(
            log,
            0,
            from,
            &[ScanFilter {
                filter: "#".into(),
                start: 0,
            }],
            ScanLimits {
                max_entries: 97,
                ..ScanLimits::default()
            },
        )
        .unwrap();
        for j in 0..b.len() {
            let e = b.entry(j).unwrap();
            got.push(
                std::str::from_utf8(&e.payload[..8])
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
        skipped += b.skipped;
        from = b.next;
        if b.status == ScanStatus::Done {
            return (got, skipped);
        }
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Byte position of the frame of the record with offset `offset` in segment `seg`
/// (records start after the 32-byte header; frames are `[len u32][crc u32][body]`, the
/// body starting with the offset delta).
fn frame_of(seg: &Path, offset: u64) -> usize {
    let b = fs::read(seg).unwrap();
    let base = u64::from_le_bytes(b[8..16].try_into().unwrap());
    let mut p = 32;
    loop {
        let len = u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
        let od = u32::from_le_bytes(b[p + 8..p + 12].try_into().unwrap()) as u64;
        if base + od == offset {
            return p;
        }
        p += 8 + len;
    }
}

fn overwrite(path: &Path, at: usize, bytes: &[u8]) {
    let mut b = fs::read(path).unwrap();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, b).unwrap();
}

fn all_but(n: u32, lost: &[u32]) -> Vec<u32> {
    (0..n).filter(|i| !lost.contains(i)).collect()
}

#[test]
fn a_damaged_record_in_the_active_segment_costs_that_record_only() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), opts(64 << 20), 1000);
    let seg = files(d.path(), ".seg").pop().unwrap();
    // 4 bytes overwritten in the middle of record 500 (inside its payload).
    overwrite(&seg, frame_of(&seg, 500) + 30, &[0xde, 0xad, 0xbe, 0xef]);
    let log = Log::open(d.path(), opts(64 << 20)).unwrap();
    let rec = log.recovery().clone();
    assert_eq!(rec.losses.len(), 1, "{rec:?}");
    assert_eq!((rec.losses[0].from, rec.losses[0].to), (500, Some(501)));
    assert_eq!(rec.losses[0].records(), Some(1));
    assert_eq!(rec.quarantined.len(), 1, "{rec:?}");
    assert!(
        seg.with_extension("seg.corrupt").exists(),
        "quarantined, not deleted"
    );
    let (got, skipped) = read_all(&log);
    assert_eq!(got, all_but(1000, &[500]));
    assert_eq!(skipped, 1);
    // Writes go on after the last intact record; nothing is reported twice.
    log.append_blocking(vec![msg(1000)]).unwrap();
    drop(log);
    let log = Log::open(d.path(), opts(64 << 20)).unwrap();
    assert_eq!(read_all(&log).0, all_but(1001, &[500]));
    assert!(
        log.recovery().quarantined.is_empty(),
        "{:?}",
        log.recovery()
    );
    assert!(
        log.recovery()
            .losses
            .iter()
            .all(|l| (l.from, l.to) == (500, Some(501))),
        "{:?}",
        log.recovery()
    );
}

#[test]
fn a_damaged_length_and_several_damaged_places_are_each_passed() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), opts(64 << 20), 600);
    let seg = files(d.path(), ".seg").pop().unwrap();
    // A garbled length (the frame cannot be skipped by its length), a zeroed run of three
    // records, and a flipped byte in the very last record (a torn-looking tail).
    let (l, z, z_end) = (
        frame_of(&seg, 100),
        frame_of(&seg, 300),
        frame_of(&seg, 303),
    );
    overwrite(&seg, l, &[0xff, 0xff, 0x00, 0x01]);
    overwrite(&seg, z, &vec![0u8; z_end - z]);
    let last = fs::metadata(&seg).unwrap().len() as usize - 3;
    overwrite(&seg, last, &[0x55]);
    let log = Log::open(d.path(), opts(64 << 20)).unwrap();
    let (got, _) = read_all(&log);
    assert_eq!(got, all_but(600, &[100, 300, 301, 302, 599]));
    let ranges: Vec<_> = log
        .recovery()
        .losses
        .iter()
        .map(|l| (l.from, l.to))
        .collect();
    assert_eq!(
        ranges,
        vec![(100, Some(101)), (300, Some(303))],
        "{:?}",
        log.recovery()
    );
}

#[test]
fn damage_in_a_sealed_segment_found_at_open_or_while_reading() {
    for drop_index in [true, false] {
        let d = tempfile::tempdir().unwrap();
        fill(d.path(), opts(8192), 800);
        let segs = files(d.path(), ".seg");
        assert!(segs.len() > 4);
        let victim = &segs[2];
        let first = u64::from_le_bytes(fs::read(victim).unwrap()[8..16].try_into().unwrap());
        let hit = first + 3;
        overwrite(victim, frame_of(victim, hit) + 20, &[1, 2, 3, 4]);
        if drop_index {
            // Without its index the segment is verified (and salvaged) at open.
            fs::remove_file(victim.with_extension("idx")).unwrap();
        }
        let log = Log::open(d.path(), opts(8192)).unwrap();
        if drop_index {
            assert_eq!(log.recovery().losses.len(), 1, "{:?}", log.recovery());
        } else {
            // Trusted through its index at open: found by the first read.
            assert!(log.recovery().losses.is_empty(), "{:?}", log.recovery());
        }
        let (got, skipped) = read_all(&log);
        assert_eq!(got, all_but(800, &[hit as u32]));
        assert_eq!(skipped, 1);
        assert!(victim.with_extension("seg.corrupt").exists());
        if !drop_index {
            let live = log.take_losses();
            assert_eq!(live.len(), 1);
            assert_eq!((live[0].from, live[0].to), (hit, Some(hit + 1)));
            assert!(log.take_losses().is_empty(), "taken once");
        }
        // A second read finds the same, and so does a reopen.
        assert_eq!(read_all(&log).0, all_but(800, &[hit as u32]));
        drop(log);
        let log = Log::open(d.path(), opts(8192)).unwrap();
        assert_eq!(read_all(&log).0, all_but(800, &[hit as u32]));
    }
}

#[test]
fn a_sealed_segment_cut_short_zero_filled_or_with_a_bad_header() {
    for damage in ["cut", "zero", "header"] {
        let d = tempfile::tempdir().unwrap();
        fill(d.path(), opts(8192), 800);
        let segs = files(d.path(), ".seg");
        let victim = &segs[1];
        let bytes = fs::read(victim).unwrap();
        let first = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let next = u64::from_le_bytes(fs::read(&segs[2]).unwrap()[8..16].try_into().unwrap());
        let lost: Vec<u32> = match damage {
            "cut" => {
                fs::write(victim, &bytes[..bytes.len() - 7]).unwrap();
                vec![next as u32 - 1]
            }
            "zero" => {
                fs::write(victim, vec![0u8; bytes.len()]).unwrap();
                (first as u32..next as u32).collect()
            }
            _ => {
                overwrite(victim, 12, &[9, 9, 9, 9]);
                vec![]
            }
        };
        let log = Log::open(d.path(), opts(8192)).unwrap();
        let (got, skipped) = read_all(&log);
        assert_eq!(got, all_but(800, &lost), "{damage}");
        assert_eq!(skipped, lost.len() as u64, "{damage}");
        let reported: u64 = log
            .recovery()
            .losses
            .iter()
            .map(|l| l.records().unwrap())
            .sum();
        assert_eq!(
            reported,
            lost.len() as u64,
            "{damage}: {:?}",
            log.recovery()
        );
        assert!(victim.with_extension("seg.corrupt").exists(), "{damage}");
    }
}

#[test]
fn a_deleted_segment_is_a_reported_gap_and_a_lost_tail_is_raised_over() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), opts(8192), 800);
    let segs = files(d.path(), ".seg");
    let base = |p: &Path| u64::from_le_bytes(fs::read(p).unwrap()[8..16].try_into().unwrap());
    let (b1, b2) = (base(&segs[1]), base(&segs[2]));
    let last = segs.last().unwrap().clone();
    let last_base = base(&last);
    fs::remove_file(&segs[1]).unwrap();
    fs::remove_file(&last).unwrap();
    let log = Log::open(d.path(), opts(8192)).unwrap();
    let gaps: Vec<_> = log
        .recovery()
        .losses
        .iter()
        .map(|l| (l.from, l.to))
        .collect();
    assert_eq!(gaps, vec![(b1, Some(b2))], "{:?}", log.recovery());
    assert_eq!(
        log.shard_end(0).unwrap(),
        last_base,
        "the end went back with the lost file"
    );
    // The caller knows the end was 800 (a session had read that far): offsets below are
    // never handed out again.
    assert!(log.raise_end(0, 800).unwrap());
    assert!(!log.raise_end(0, 700).unwrap());
    assert_eq!(log.shard_end(0).unwrap(), 800);
    let pos = log.append_blocking(vec![msg(800)]).unwrap();
    assert_eq!(pos[0].offset.0, 800);
    let (got, skipped) = read_all(&log);
    let mut want: Vec<u32> = (0..last_base as u32)
        .filter(|i| (*i as u64) < b1 || (*i as u64) >= b2)
        .collect();
    want.push(800);
    assert_eq!(got, want);
    assert_eq!(skipped, (b2 - b1) + (800 - last_base));
    drop(log);
    // Durable: the raised end survives a reopen.
    let log = Log::open(d.path(), opts(8192)).unwrap();
    assert_eq!(log.shard_end(0).unwrap(), 801);
    assert_eq!(read_all(&log).0, want);
}

#[test]
fn a_whole_shard_directory_deleted_starts_over_above_the_floor() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), opts(64 << 20), 100);
    fs::remove_dir_all(d.path().join("shard-0000")).unwrap();
    let log = Log::open(d.path(), opts(64 << 20)).unwrap();
    assert_eq!(log.shard_end(0).unwrap(), 0);
    assert!(log.raise_end(0, 100).unwrap());
    assert_eq!(
        log.append_blocking(vec![msg(100)]).unwrap()[0].offset.0,
        100
    );
    drop(log);
    let log = Log::open(d.path(), opts(64 << 20)).unwrap();
    let (got, skipped) = read_all(&log);
    assert_eq!(got, vec![100]);
    assert_eq!(skipped, 100);
}

/// Every file under `dir` with its bytes, for "nothing changed" checks.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files(dir, "")
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn a_damaged_or_missing_store_manifest_is_written_again() {
    use strata_core::log::Manifest;
    for damage in ["cut", "zero", "overwrite", "delete", "legacy"] {
        let d = tempfile::tempdir().unwrap();
        let o = Options {
            n_shards: Some(3),
            ..opts(64 << 20)
        };
        fill(d.path(), o.clone(), 50);
        let store = d.path().join("STORE");
        let text = fs::read_to_string(&store).unwrap();
        assert!(text.contains("crc="), "{text}");
        let site = text
            .lines()
            .find_map(|l| l.strip_prefix("site_id="))
            .unwrap()
            .to_string();
        match damage {
            "cut" => fs::write(&store, &text.as_bytes()[..text.len() - 7]).unwrap(),
            "zero" => fs::write(&store, vec![0u8; text.len()]).unwrap(),
            "overwrite" => overwrite(&store, text.len() / 2, b"zzzz"),
            "delete" => fs::remove_file(&store).unwrap(),
            _ => fs::write(&store, text.split("crc=").next().unwrap()).unwrap(),
        }
        let before = snapshot(d.path());
        let checked = Log::check(d.path(), Options::default(), None).unwrap();
        assert_eq!(
            snapshot(d.path()),
            before,
            "{damage}: check changed nothing"
        );
        assert_eq!(
            checked.manifest.is_some(),
            damage != "legacy",
            "{damage}: {checked:?}"
        );
        // The metadata's copy of the identity, when there is one, is what STORE becomes.
        let known = Manifest {
            n_shards: 3,
            site_id: site.clone(),
        };
        let log = Log::open_with(d.path(), Options::default(), Some(&known)).unwrap();
        assert_eq!(log.n_shards(), 3, "{damage}");
        assert_eq!(log.site_id(), site, "{damage}");
        assert_eq!(
            log.recovery().manifest.is_some(),
            damage != "legacy",
            "{damage}"
        );
        assert_eq!(
            d.path().join("STORE.corrupt").exists(),
            ["cut", "zero", "overwrite"].contains(&damage),
            "{damage}: a damaged STORE is kept aside"
        );
        assert_eq!(log.stats().records, 50, "{damage}: the data is intact");
        drop(log);
        assert!(fs::read_to_string(&store).unwrap().contains("crc="));
        // Without the metadata's copy: the shard directories say how many shards.
        fs::remove_file(&store).unwrap();
        let log = Log::open(d.path(), Options::default()).unwrap();
        assert_eq!(log.n_shards(), 3, "{damage}");
        assert!(log
            .recovery()
            .manifest
            .as_deref()
            .unwrap()
            .contains("shard directories"));
    }
}

#[test]
fn check_reports_what_open_repairs_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), opts(8192), 800);
    let segs = files(d.path(), ".seg");
    overwrite(
        &segs[1],
        frame_of(
            &segs[1],
            u64::from_le_bytes(fs::read(&segs[1]).unwrap()[8..16].try_into().unwrap()) + 2,
        ) + 20,
        &[7, 7, 7, 7],
    );
    fs::remove_file(segs[1].with_extension("idx")).unwrap();
    fs::remove_file(&segs[3]).unwrap();
    let before = snapshot(d.path());
    let checked = Log::check(d.path(), opts(8192), None).unwrap();
    assert_eq!(snapshot(d.path()), before, "check changed nothing");
    let open_log = Log::open(d.path(), opts(8192)).unwrap();
    let opened = open_log.recovery().clone();
    let ranges = |r: &strata_core::log::Recovery| {
        r.losses.iter().map(|l| (l.from, l.to)).collect::<Vec<_>>()
    };
    assert_eq!(ranges(&checked), ranges(&opened), "{checked:?}\n{opened:?}");
    assert_eq!(checked.losses.len(), 2);
    drop(open_log);
    // A store in use cannot be checked.
    let _log = Log::open(d.path(), opts(8192)).unwrap();
    assert_eq!(
        Log::check(d.path(), opts(8192), None).unwrap_err().code(),
        "ERR_STORE_LOCKED"
    );
}
