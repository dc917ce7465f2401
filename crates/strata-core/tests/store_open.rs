//! The store opened whole (`strata_core::store`): log and metadata reconciled, each loss
//! reported once, STORE written again from the metadata's copy, `Refuse` changing nothing.
use std::fs;
use std::path::{Path, PathBuf};
use strata_core::log::{NewMessage, Options};
use strata_core::store::{OnCorruption, Store};

fn msg(i: u32) -> NewMessage {
    NewMessage {
        publisher: b"p".to_vec(),
        topic: "t".into(),
        qos: 1,
        payload: i.to_le_bytes().to_vec(),
        ..NewMessage::default()
    }
}

fn opts() -> Options {
    Options {
        n_shards: Some(1),
        segment_bytes: 4096,
        retention_check_ms: 3_600_000,
        ..Options::default()
    }
}

fn open(dir: &Path, on: OnCorruption) -> Result<Store, strata_core::error::CoreError> {
    Store::open(dir, opts(), true, on)
}

fn segs(dir: &Path) -> Vec<PathBuf> {
    let shard = dir.join("shard-0000");
    let gen = fs::read_dir(&shard)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut v: Vec<_> = fs::read_dir(gen)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let b = fs::read(&p).unwrap();
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_lost_tail_is_raised_over_and_reported_once() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = open(d.path(), OnCorruption::Recover).unwrap();
        for i in 0..300 {
            s.log.append_blocking(vec![msg(i)]).unwrap();
        }
        assert!(!s.report().damaged(), "{:?}", s.report());
        s.close();
    }
    let last = segs(d.path()).pop().unwrap();
    let base = u64::from_le_bytes(fs::read(&last).unwrap()[8..16].try_into().unwrap());
    fs::remove_file(&last).unwrap();
    let before = snapshot(d.path());
    let checked = Store::check(d.path(), opts()).unwrap();
    assert_eq!(snapshot(d.path()), before, "check changes nothing");
    assert!(checked.damaged());
    assert_eq!(checked.losses.len(), 1, "{checked:?}");
    assert_eq!(
        (checked.losses[0].from, checked.losses[0].to),
        (base, Some(300))
    );
    // Refuse: an error naming it, nothing changed.
    let e = open(d.path(), OnCorruption::Refuse).unwrap_err();
    assert_eq!(e.code(), "ERR_STORE_CORRUPT", "{e}");
    assert!(
        e.to_string().contains(&format!("offsets {base}..300 lost")),
        "{e}"
    );
    assert_eq!(snapshot(d.path()), before);
    {
        let s = open(d.path(), OnCorruption::Recover).unwrap();
        let r = s.report();
        assert_eq!(r.losses.len(), 1);
        assert_eq!((r.losses[0].from, r.losses[0].to), (base, Some(300)));
        assert_eq!(
            s.log.shard_end(0).unwrap(),
            300,
            "raised over the lost tail"
        );
        assert_eq!(
            s.log.append_blocking(vec![msg(300)]).unwrap()[0].offset.0,
            300
        );
        assert_eq!(s.losses().unwrap().len(), 1);
        assert!(
            s.losses().unwrap()[0].contains("\"records\":"),
            "{:?}",
            s.losses()
        );
        s.close();
    }
    // Reported once; repaired: a check finds nothing, refuse opens.
    assert!(!Store::check(d.path(), opts()).unwrap().damaged());
    let s = open(d.path(), OnCorruption::Refuse).unwrap();
    assert!(s.report().losses.is_empty(), "{:?}", s.report());
    assert_eq!(s.log.shard_end(0).unwrap(), 301);
}

#[test]
fn store_written_again_from_the_metadata_keeps_the_site_id() {
    let d = tempfile::tempdir().unwrap();
    let site = {
        let s = open(d.path(), OnCorruption::Recover).unwrap();
        s.log.append_blocking((0..10).map(msg).collect()).unwrap();
        s.log.site_id().to_string()
    };
    fs::write(d.path().join("STORE"), b"garbage").unwrap();
    let s = open(d.path(), OnCorruption::Recover).unwrap();
    assert_eq!(s.log.site_id(), site);
    assert!(s.report().damaged());
    assert!(
        s.report()
            .summary()
            .iter()
            .any(|l| l.contains("the metadata's copy")),
        "{:?}",
        s.report().summary()
    );
    assert!(d.path().join("STORE.corrupt").exists());
    assert_eq!(s.log.stats().records, 10);
}

#[test]
fn lost_metadata_is_reported_as_a_loss() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = open(d.path(), OnCorruption::Recover).unwrap();
        s.meta
            .apply_blocking(vec![strata_core::meta::Op::Put(
                strata_core::meta::Table::Sessions,
                b"c1".to_vec(),
                b"{}".to_vec(),
            )])
            .unwrap();
    }
    fs::remove_file(d.path().join("meta.redb")).unwrap();
    fs::remove_file(d.path().join("meta.journal")).unwrap();
    let s = open(d.path(), OnCorruption::Recover).unwrap();
    let r = s.report();
    assert!(r.meta.lost.is_some());
    assert_eq!(r.losses.len(), 1);
    assert_eq!(r.losses[0].shard, None);
    assert!(r.losses[0].to_json().contains("\"shard\":null"));
    drop(s);
    let s = open(d.path(), OnCorruption::Recover).unwrap();
    assert!(s.report().losses.is_empty(), "reported once");
}
