//! Durable log: basic reads, restart, and every fault listed in issue 3.
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_core::error::CoreError;
use strata_core::log::{Cursor, Log, NewMessage, Options, ReadStatus};

fn msg(publisher: &str, topic: &str, payload: &[u8]) -> NewMessage {
    NewMessage {
        publisher: publisher.as_bytes().to_vec(),
        topic: topic.to_string(),
        qos: 1,
        retain: false,
        properties: Vec::new(),
        payload: payload.to_vec(),
        inbound_id: 0,
    }
}

fn opts(n: u32) -> Options {
    Options {
        n_shards: Some(n),
        ..Options::default()
    }
}

fn small_segments(n: u32) -> Options {
    Options {
        segment_bytes: 4096,
        index_interval: 256,
        ..opts(n)
    }
}

/// All payloads of every stream matching `filter`, read with `batch`.
fn read_all(log: &Log, filter: &str, batch: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in log.streams(filter) {
        let mut c = log.cursor(s.id, Some(filter.to_string()));
        loop {
            let r = log
                .read(&mut c, batch, &mut |r| out.push(r.payload.to_vec()))
                .unwrap();
            assert!(r.delivered <= batch);
            if r.status != ReadStatus::Next {
                break;
            }
        }
    }
    out
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_with_ext(&p, ext));
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn fill(log: &Log, n: usize) -> Vec<Vec<u8>> {
    let mut want = Vec::new();
    for i in 0..n {
        let p = format!("payload-{i:06}-{:064}", 0).into_bytes();
        log.append_blocking(vec![msg("c1", "t/a", &p)]).unwrap();
        want.push(p);
    }
    want
}

#[test]
fn append_read_batches_next_done() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts(2)).unwrap();
    let pos = log
        .append_blocking((0..10).map(|i| msg("pub", "a/b", &[i])).collect())
        .unwrap();
    assert_eq!(pos.len(), 10);
    assert!(pos.windows(2).all(|w| w[1].offset.0 == w[0].offset.0 + 1));
    let streams = log.streams("a/#");
    assert_eq!(streams.len(), 1);
    let mut c = log.cursor(streams[0].id, None);
    let mut got = Vec::new();
    let r = log
        .read(&mut c, 4, &mut |r| got.push(r.payload[0]))
        .unwrap();
    assert_eq!((r.status, r.delivered), (ReadStatus::Next, 4));
    let r = log
        .read(&mut c, 4, &mut |r| got.push(r.payload[0]))
        .unwrap();
    assert_eq!((r.status, r.delivered), (ReadStatus::Next, 4));
    let r = log
        .read(&mut c, 4, &mut |r| got.push(r.payload[0]))
        .unwrap();
    assert_eq!((r.status, r.delivered), (ReadStatus::Done, 2));
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    // Caught up: Done with nothing; a new append makes it readable.
    let r = log.read(&mut c, 4, &mut |_| {}).unwrap();
    assert_eq!((r.status, r.delivered), (ReadStatus::Done, 0));
    log.append_blocking(vec![msg("pub", "a/b", &[42])]).unwrap();
    let r = log
        .read(&mut c, 4, &mut |r| got.push(r.payload[0]))
        .unwrap();
    assert_eq!((r.status, r.delivered), (ReadStatus::Done, 1));
    // Bad input is refused without harming the store.
    let e = log
        .append_blocking(vec![msg("pub", "a/+", b"x")])
        .unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_TOPIC");
    assert_eq!(read_all(&log, "#", 3).len(), 11);
}

#[test]
fn restart_keeps_data_site_id_and_shard_count() {
    let d = tempfile::tempdir().unwrap();
    let (site, want) = {
        let log = Log::open(d.path(), small_segments(3)).unwrap();
        (log.site_id().to_string(), fill(&log, 300))
    };
    assert_eq!(site.len(), 32);
    let log = Log::open(d.path(), Options::default()).unwrap();
    assert_eq!(log.site_id(), site);
    assert_eq!(log.n_shards(), 3);
    assert!(log.recovery().segments > 3, "{:?}", log.recovery());
    assert_eq!(read_all(&log, "t/a", 7), want);
    drop(log);
    let e = Log::open(d.path(), opts(8)).unwrap_err();
    assert_eq!(e.code(), "ERR_STORE_CONFIG_MISMATCH", "{e}");
}

#[test]
fn second_opener_is_refused_with_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts(1)).unwrap();
    let e = Log::open(d.path(), opts(1)).unwrap_err();
    assert!(matches!(e, CoreError::StoreLocked(_)), "{e}");
    assert_eq!(e.code(), "ERR_STORE_LOCKED");
    // Another process is refused too (flock is per open file description).
    if Path::new("/usr/bin/flock").exists() {
        let st = Command::new("/usr/bin/flock")
            .args(["-n", d.path().join("LOCK").to_str().unwrap(), "true"])
            .status()
            .unwrap();
        assert!(!st.success(), "another process could take the lock");
    }
    drop(log);
    Log::open(d.path(), opts(1)).unwrap();
}

#[test]
fn truncated_record_is_cut_and_earlier_records_survive() {
    let d = tempfile::tempdir().unwrap();
    let want = {
        let log = Log::open(d.path(), opts(1)).unwrap();
        fill(&log, 50)
    };
    let seg = files_with_ext(d.path(), ".seg").pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = Log::open(d.path(), opts(1)).unwrap();
    assert!(log.recovery().truncated_bytes > 0);
    assert_eq!(read_all(&log, "#", 100), want[..49]);
    // Writes continue at the right offset.
    log.append_blocking(vec![msg("c1", "t/a", b"after")])
        .unwrap();
    drop(log);
    let log = Log::open(d.path(), opts(1)).unwrap();
    let got = read_all(&log, "#", 100);
    assert_eq!(got.len(), 50);
    assert_eq!(got[49], b"after");
}

#[test]
fn flipped_bytes_in_tail_are_truncated() {
    let d = tempfile::tempdir().unwrap();
    let want = {
        let log = Log::open(d.path(), opts(1)).unwrap();
        fill(&log, 40)
    };
    let seg = files_with_ext(d.path(), ".seg").pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff; // inside the last record's payload
    fs::write(&seg, &bytes).unwrap();
    let log = Log::open(d.path(), opts(1)).unwrap();
    assert!(log.recovery().truncated_bytes > 0);
    assert_eq!(read_all(&log, "#", 100), want[..39]);
}

#[test]
fn zero_filled_tail_and_zero_filled_file() {
    let d = tempfile::tempdir().unwrap();
    let want = {
        let log = Log::open(d.path(), opts(1)).unwrap();
        fill(&log, 20)
    };
    // What a power loss can leave: the file grew but the data never made it.
    let seg = files_with_ext(d.path(), ".seg").pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 8192]).unwrap();
    drop(f);
    {
        let log = Log::open(d.path(), opts(1)).unwrap();
        assert_eq!(log.recovery().truncated_bytes, 8192);
        assert_eq!(read_all(&log, "#", 100), want);
    }
    // A whole segment of zeros (header included) is quarantined, not fatal.
    let gen_dir = seg.parent().unwrap();
    let bogus = gen_dir.join(format!("{:020}.seg", 1_000_000));
    fs::write(&bogus, vec![0u8; 4096]).unwrap();
    let log = Log::open(d.path(), opts(1)).unwrap();
    assert_eq!(log.recovery().quarantined.len(), 1, "{:?}", log.recovery());
    assert!(gen_dir
        .join(format!("{:020}.seg.corrupt", 1_000_000))
        .exists());
    assert_eq!(read_all(&log, "#", 100), want);
}

#[test]
fn missing_index_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let want = {
        let log = Log::open(d.path(), small_segments(1)).unwrap();
        fill(&log, 200)
    };
    let idx = files_with_ext(d.path(), ".idx");
    assert!(idx.len() >= 3);
    fs::remove_file(&idx[0]).unwrap();
    fs::write(&idx[1], b"garbage").unwrap();
    let log = Log::open(d.path(), small_segments(1)).unwrap();
    assert_eq!(log.recovery().rebuilt_indexes, 2, "{:?}", log.recovery());
    assert!(idx[0].exists());
    assert_eq!(read_all(&log, "#", 13), want);
    // Seeking uses the rebuilt index.
    let s = log.streams("#")[0].id;
    let mut c = log.cursor(s, None);
    log.seek(&mut c, strata_core::log::Offset(150)).unwrap();
    assert_eq!(c.seen, 150);
    let mut got = Vec::new();
    log.read(&mut c, 1, &mut |r| got.push(r.payload.to_vec()))
        .unwrap();
    assert_eq!(got[0], want[150]);
}

#[test]
fn corrupt_sealed_segment_is_quarantined_and_reported() {
    for verify_on_open in [true, false] {
        let d = tempfile::tempdir().unwrap();
        let want = {
            let log = Log::open(d.path(), small_segments(1)).unwrap();
            fill(&log, 200)
        };
        let segs = files_with_ext(d.path(), ".seg");
        let victim = &segs[1];
        let mut b = fs::read(victim).unwrap();
        b[100] ^= 0x01;
        fs::write(victim, &b).unwrap();
        let o = Options {
            verify_on_open,
            ..small_segments(1)
        };
        let log = Log::open(d.path(), o).unwrap();
        let s = log.streams("#")[0].id;
        let mut c: Cursor = log.cursor(s, None);
        let mut got = Vec::new();
        let mut skipped = 0;
        loop {
            let r = log
                .read(&mut c, 1000, &mut |r| got.push(r.payload.to_vec()))
                .unwrap();
            skipped += r.skipped;
            if r.status != ReadStatus::Next {
                break;
            }
        }
        if verify_on_open {
            assert_eq!(log.recovery().quarantined.len(), 1);
        }
        assert!(victim.with_extension("seg.corrupt").exists());
        assert!(got.len() < want.len() && got.len() > 100);
        if !verify_on_open {
            assert_eq!(got.len() as u64 + skipped, want.len() as u64);
        }
        assert!(got.iter().all(|p| want.contains(p)));
        // And the store still takes writes.
        log.append_blocking(vec![msg("c1", "t/a", b"more")])
            .unwrap();
    }
}

#[test]
fn unwritable_data_dir_fails_clearly() {
    let d = tempfile::tempdir().unwrap();
    // A path under a regular file can never be created.
    let f = d.path().join("file");
    fs::write(&f, b"x").unwrap();
    let e = Log::open(f.join("store"), opts(1)).unwrap_err();
    assert!(e.code().starts_with("ERR_STORE_"), "{e}");
    // A read-only directory (a read-only mount, since root ignores modes).
    let ro = d.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "ro,size=1m",
            "tmpfs",
            ro.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        if fs::write(ro.join("probe"), b"x").is_ok() {
            eprintln!("skipping read-only check: running as root without mount");
            return;
        }
    }
    let e = Log::open(&ro, opts(1)).unwrap_err();
    if mounted {
        let _ = Command::new("umount").arg(&ro).status();
    }
    assert_eq!(e.code(), "ERR_STORE_PERMISSION", "{e}");
}

#[test]
fn disk_full_fails_append_keeps_data_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=256k",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping ENOSPC test: cannot mount a small tmpfs here");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let dir = mnt.join("store");
        let log = Log::open(&dir, opts(1)).unwrap();
        let mut acked = Vec::new();
        let mut err = None;
        for i in 0..10_000 {
            let p = vec![(i % 251) as u8; 1000];
            match log.append_blocking(vec![msg("c", "t", &p)]) {
                Ok(_) => acked.push(p),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let e = err.expect("tmpfs never filled");
        assert_eq!(e.code(), "ERR_STORE_DISK_FULL", "{e}");
        // Still full: fails again, cleanly.
        assert!(log
            .append_blocking(vec![msg("c", "t", &[1; 1000])])
            .is_err());
        assert_eq!(read_all(&log, "#", 64), acked);
        // Space returns (the tmpfs grows) while the store stays open: writes resume.
        let st = Command::new("mount")
            .args(["-o", "remount,size=2m", mnt.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
        log.append_blocking(vec![msg("c", "t", b"resumed-live")])
            .unwrap();
        drop(log);
        let log = Log::open(&dir, opts(1)).unwrap();
        let all = read_all(&log, "#", 64);
        assert_eq!(all[..acked.len()], acked[..]);
        assert_eq!(all[acked.len()..], [b"resumed-live".to_vec()]);
        eprintln!("ENOSPC after {} acked appends: {e}", acked.len());
    });
    let _ = Command::new("umount").arg(&mnt).status();
    result.unwrap();
}

#[test]
fn shards_recover_in_parallel_reported_in_shard_order_and_one_bad_shard_fails_the_open() {
    let d = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    {
        let log = Log::open(d.path(), opts(4)).unwrap();
        for i in 0..400 {
            let p = format!("payload-{i:04}").into_bytes();
            log.append_blocking(vec![msg(&format!("pub-{}", i % 16), "t/a", &p)])
                .unwrap();
            want.push(p);
        }
    }
    // Every shard that holds records loses the last 5 bytes of its active segment.
    let segs = files_with_ext(d.path(), ".seg");
    let mut torn = Vec::new();
    for shard in 0..4 {
        let dir = format!("shard-{shard:04}");
        if let Some(seg) = segs.iter().rfind(|p| p.to_string_lossy().contains(&dir)) {
            let len = fs::metadata(seg).unwrap().len();
            OpenOptions::new()
                .write(true)
                .open(seg)
                .unwrap()
                .set_len(len - 5)
                .unwrap();
            torn.push(dir);
        }
    }
    assert!(
        torn.len() >= 2,
        "records spread over several shards: {torn:?}"
    );
    {
        let log = Log::open(d.path(), opts(4)).unwrap();
        let r = log.recovery();
        assert_eq!(
            r.records,
            400 - torn.len() as u64,
            "one torn record per shard"
        );
        let tails: Vec<&String> = r
            .events
            .iter()
            .filter(|e| e.contains("torn/corrupt tail"))
            .collect();
        assert_eq!(tails.len(), torn.len());
        for (event, dir) in tails.iter().zip(&torn) {
            assert!(
                event.contains(dir.as_str()),
                "events in shard order: {event} for {dir}"
            );
        }
        assert!(r.events.last().unwrap().starts_with("opened 4 shards"));
        let mut got = read_all(&log, "#", 1000);
        got.sort();
        assert_eq!(got.len(), 400 - torn.len());
        assert!(got.iter().all(|p| want.contains(p)));
    }
    // A shard that cannot be opened (its directory is a file) fails the whole open with
    // an error naming it; once it is fixed, the store opens again (the lock was released).
    let bad = d.path().join("shard-0002");
    let moved = d.path().join("shard-0002.aside");
    fs::rename(&bad, &moved).unwrap();
    fs::write(&bad, b"not a directory").unwrap();
    let err = Log::open(d.path(), opts(4)).expect_err("open fails");
    assert!(err.to_string().contains("shard-0002"), "{err}");
    fs::remove_file(&bad).unwrap();
    fs::rename(&moved, &bad).unwrap();
    let log = Log::open(d.path(), opts(4)).unwrap();
    assert_eq!(log.recovery().records, 400 - torn.len() as u64);
}

#[test]
fn a_segment_cut_short_at_creation_is_removed_not_quarantined() {
    let d = tempfile::tempdir().unwrap();
    let mut want = {
        let log = Log::open(d.path(), opts(1)).unwrap();
        fill(&log, 20)
    };
    let seg = files_with_ext(d.path(), ".seg").pop().unwrap();
    let gen_dir = seg.parent().unwrap().to_path_buf();
    // What a kill between creating the next segment and writing its header leaves: an empty
    // file, or part of a header. It holds no record.
    for len in [0usize, 17] {
        let cut = gen_dir.join(format!("{:020}.seg", 1_000_000));
        fs::write(&cut, vec![0u8; len]).unwrap();
        let log = Log::open(d.path(), opts(1)).unwrap();
        let rec = log.recovery().clone();
        assert!(rec.quarantined.is_empty(), "{rec:?}");
        assert!(
            rec.events
                .iter()
                .any(|e| e.contains("interrupted creation")),
            "{rec:?}"
        );
        assert!(!cut.exists());
        assert_eq!(read_all(&log, "#", 100), want);
        // Appends go on, and survive the next open.
        log.append_blocking(vec![msg("p", "t/x", b"after")])
            .unwrap();
        want.push(b"after".to_vec());
        drop(log);
        let log = Log::open(d.path(), opts(1)).unwrap();
        assert!(log.recovery().quarantined.is_empty());
        assert_eq!(read_all(&log, "#", 100), want);
    }
}
