use super::*;
use crate::log::{scan, Log, NewMessage, Options, ScanFilter, ScanLimits};

fn opts() -> Options {
    Options {
        n_shards: Some(1),
        retention_check_ms: 3_600_000,
        ..Options::default()
    }
}

/// A one-shard store of 300 records whose record 100 is damaged; its segment path.
fn damaged(dir: &Path) -> PathBuf {
    let log = Log::open(dir, opts()).unwrap();
    let msgs = (0..300u32)
        .map(|i| NewMessage {
            publisher: b"p".to_vec(),
            topic: "t".into(),
            payload: i.to_le_bytes().to_vec(),
            ..NewMessage::default()
        })
        .collect();
    log.append_blocking(msgs).unwrap();
    drop(log);
    let gen = fs::read_dir(dir.join("shard-0000"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let seg = gen.join(segment::seg_name(0));
    let f = File::open(&seg).unwrap();
    let len = f.metadata().unwrap().len();
    let runs = find_runs(&f, 0, segment::read_header(&f).unwrap().unwrap().1, len).unwrap();
    assert!(runs.clean());
    let r0 = runs.runs[0];
    // Record 100's frame: every record here has the same length.
    let frame = (r0.to_pos - r0.from_pos) / 300;
    let mut b = fs::read(&seg).unwrap();
    b[(HEADER_LEN + 100 * frame + 20) as usize] ^= 0xff;
    fs::write(&seg, b).unwrap();
    seg
}

fn payloads(dir: &Path) -> Vec<u32> {
    let log = Log::open(dir, opts()).unwrap();
    let b = scan(
        &log,
        0,
        0,
        &[ScanFilter {
            filter: "t".into(),
            start: 0,
        }],
        ScanLimits::default(),
    )
    .unwrap();
    (0..b.len())
        .map(|j| u32::from_le_bytes(b.entry(j).unwrap().payload.try_into().unwrap()))
        .collect()
}

/// Writes the temps of a salvage of `seg` without placing them (as a crash would leave
/// them); returns (run base, temp path) in order.
fn temps(seg: &Path) -> Vec<(u64, PathBuf)> {
    let f = File::open(seg).unwrap();
    let (base, ts) = segment::read_header(&f).unwrap().unwrap();
    let runs = find_runs(&f, base, ts, f.metadata().unwrap().len()).unwrap();
    assert_eq!(runs.runs.len(), 2);
    runs.runs
        .iter()
        .map(|r| {
            let tmp = temp_name(seg.parent().unwrap(), base, r.first);
            write_run(&tmp, &f, base, ts, r).unwrap();
            (r.first, tmp)
        })
        .collect()
}

fn want() -> Vec<u32> {
    (0..300).filter(|i| *i != 100).collect()
}

#[test]
fn interrupted_before_the_original_was_quarantined_is_undone_and_redone() {
    let d = tempfile::tempdir().unwrap();
    let seg = damaged(d.path());
    let t = temps(&seg);
    let done = finish_interrupted(seg.parent().unwrap()).unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(t.iter().all(|(_, p)| !p.exists()));
    assert_eq!(payloads(d.path()), want());
}

#[test]
fn interrupted_after_the_original_was_quarantined_is_finished() {
    for placed_first in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let seg = damaged(d.path());
        let t = temps(&seg);
        quarantine(&seg).unwrap();
        if placed_first {
            fs::rename(&t[0].1, &seg).unwrap();
        }
        finish_interrupted(seg.parent().unwrap()).unwrap();
        assert!(seg.with_extension("seg.corrupt").exists());
        assert!(seg.parent().unwrap().join(segment::seg_name(101)).exists());
        assert_eq!(payloads(d.path()), want());
    }
}
