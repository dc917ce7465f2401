//! The shard writer writes zeros ahead of its records (`writer::zero_ahead`), so that a
//! durable append overwrites blocks its file has already instead of growing it. What a crash
//! leaves of those zeros is cut off by recovery, as a crash's leftover, not damage; a clean
//! stop and a sealed segment keep none.
use std::fs;
use std::path::{Path, PathBuf};
use strata_core::log::{Log, NewMessage, Options, ReadStatus};

fn msg(payload: &[u8]) -> NewMessage {
    NewMessage {
        publisher: b"c1".to_vec(),
        topic: "t/a".into(),
        qos: 1,
        retain: false,
        properties: Vec::new(),
        payload: payload.to_vec(),
        inbound_id: 0,
    }
}

fn one_shard() -> Options {
    Options {
        n_shards: Some(1),
        ..Options::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(segments(&p));
        } else if p.extension().is_some_and(|x| x == "seg") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            fs::copy(&p, &dest).unwrap();
        }
    }
}

fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in log.streams("#") {
        let mut c = log.cursor(s.id, None);
        loop {
            let r = log
                .read(&mut c, 100, &mut |r| out.push(r.payload.to_vec()))
                .unwrap();
            if r.status != ReadStatus::Next {
                break;
            }
        }
    }
    out
}

/// Payloads with no zero byte: a file whose last byte is 0 ends in zeros written ahead.
fn payload(i: usize) -> Vec<u8> {
    format!("payload-{i:06}-{}", "x".repeat(60)).into_bytes()
}

#[test]
fn a_crash_leaves_zeros_after_the_records_and_recovery_cuts_them() {
    let d = tempfile::tempdir().unwrap();
    let live = d.path().join("live");
    let log = Log::open(&live, one_shard()).unwrap();
    let mut want = Vec::new();
    for i in 0..50 {
        log.append_blocking(vec![msg(&payload(i))]).unwrap();
        want.push(payload(i));
    }
    let seg = segments(&live).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    assert!(len >= 1 << 20, "zeros written ahead: {len} bytes");
    // What the files hold at this moment is what a kill -9 leaves behind.
    let crashed = d.path().join("crashed");
    copy_dir(&live, &crashed);
    {
        let log = Log::open(&crashed, one_shard()).unwrap();
        let rec = log.recovery().clone();
        assert!(rec.quarantined.is_empty(), "{rec:?}");
        assert!(
            rec.truncated_bytes > 0 && rec.truncated_bytes < len,
            "{rec:?}"
        );
        assert!(
            rec.events
                .iter()
                .any(|e| e.contains("bytes of zeros after the last record")),
            "{:?}",
            rec.events
        );
        assert!(
            !rec.events.iter().any(|e| e.contains("torn/corrupt")),
            "{:?}",
            rec.events
        );
        assert_eq!(read_all(&log), want);
        let seg = segments(&crashed).pop().unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), len - rec.truncated_bytes);
        // Appends go on after the cut, and a clean stop leaves no zeros.
        for i in 50..60 {
            log.append_blocking(vec![msg(&payload(i))]).unwrap();
            want.push(payload(i));
        }
        assert_eq!(read_all(&log), want);
    }
    let log = Log::open(&crashed, one_shard()).unwrap();
    assert_eq!(log.recovery().truncated_bytes, 0, "{:?}", log.recovery());
    assert_eq!(read_all(&log), want);
    drop(log);
}

#[test]
fn a_clean_stop_and_sealed_segments_keep_no_zeros() {
    let d = tempfile::tempdir().unwrap();
    let small = Options {
        segment_bytes: 8192,
        index_interval: 512,
        ..one_shard()
    };
    let mut want = Vec::new();
    {
        let log = Log::open(d.path(), small.clone()).unwrap();
        for i in 0..400 {
            log.append_blocking(vec![msg(&payload(i))]).unwrap();
            want.push(payload(i));
        }
        let segs = segments(d.path());
        assert!(segs.len() > 3, "{} segments", segs.len());
        // Sealed ones: cut at their last record, so their index (which says where they end)
        // matches the file and is used as is.
        for s in &segs[..segs.len() - 1] {
            let b = fs::read(s).unwrap();
            assert_ne!(b.last(), Some(&0), "{} ends in zeros", s.display());
        }
    }
    for s in segments(d.path()) {
        let b = fs::read(&s).unwrap();
        assert_ne!(
            b.last(),
            Some(&0),
            "{} ends in zeros after a clean stop",
            s.display()
        );
    }
    let log = Log::open(d.path(), small).unwrap();
    let rec = log.recovery();
    assert_eq!(rec.truncated_bytes, 0, "{rec:?}");
    assert!(
        !rec.events.iter().any(|e| e.contains("rebuilt index")),
        "{:?}",
        rec.events
    );
    assert_eq!(read_all(&log), want);
}

#[test]
fn appends_nothing_waits_to_sync_write_no_zeros() {
    // `Completes::Written` (the message log's async entries): no fdatasync of their own, so
    // nothing to make faster; the file holds their records only.
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), one_shard()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let msgs: Vec<NewMessage> = (0..50).map(|i| msg(&payload(i))).collect();
    let split = strata_core::log::packed::Split::of(&msgs, 1);
    log.append_split_as(
        split,
        strata_core::log::Completes::Written,
        Box::new(move |r| tx.send(r.map(|p| p.len())).unwrap()),
    );
    assert_eq!(rx.recv().unwrap().unwrap(), 50);
    let seg = segments(d.path()).pop().unwrap();
    let b = fs::read(&seg).unwrap();
    assert_ne!(b.last(), Some(&0), "{} bytes, ending in zeros", b.len());
    assert!(b.len() < 64 * 1024, "{} bytes", b.len());
    // A durable one writes them.
    log.append_blocking(vec![msg(&payload(50))]).unwrap();
    assert!(fs::metadata(&seg).unwrap().len() >= 1 << 20);
}
