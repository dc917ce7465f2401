//! The seal of a clean close (`meta.seal`): the next open keeps both copies without
//! comparing them only when both files are byte for byte what the seal describes; a
//! damaged file, a damaged or stale seal, or a crash after an open, and open examines
//! both files in full as before — nothing acknowledged is lost either way.
mod common;

use common::{dump, Model};
use std::fs;
use std::path::Path;
use strata_core::meta::{MetaRecovery, MetaStore, Op, Table};

/// A few hundred entries over several commits, some overwritten or deleted.
fn fill(m: &MetaStore, round: u8) {
    for c in 0..20u8 {
        let mut ops = Vec::new();
        for i in 0..30u8 {
            let k = vec![b'k', c, i];
            ops.push(Op::Put(
                Table::Retained,
                k.clone(),
                vec![round, c, i, 7, 7, 7, 7, 7],
            ));
            ops.push(Op::Put(Table::Sessions, k, vec![round; 40]));
        }
        ops.push(Op::Delete(Table::Sessions, vec![b'k', c, 3]));
        m.apply_blocking(ops).unwrap();
    }
}

fn opened(dir: &Path) -> (MetaStore, bool) {
    let (m, rec) = MetaStore::open(dir, true).unwrap();
    assert!(rec.lost.is_none(), "{rec:#?}");
    let sealed = m.opened_sealed();
    (m, sealed)
}

/// A store closed cleanly once, with its content.
fn sealed_store(dir: &Path) -> Model {
    let (m, sealed) = opened(dir);
    assert!(!sealed, "a new store has no seal");
    fill(&m, 1);
    let want = dump(&m);
    m.close();
    assert!(dir.join("meta.seal").exists(), "a clean close seals");
    drop(m);
    want
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut b = fs::read(path).unwrap();
    let i = at(b.len());
    b[i] ^= 0x5a;
    fs::write(path, b).unwrap();
}

#[test]
fn a_clean_close_is_trusted_once_and_the_seal_is_gone_while_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let want = sealed_store(dir);
    assert_eq!(MetaStore::check(dir).unwrap(), Default::default());
    let (m, sealed) = opened(dir);
    assert!(sealed, "both files as the close left them");
    assert!(
        !dir.join("meta.seal").exists(),
        "removed at open, before any write"
    );
    assert_eq!(dump(&m), want);
    fill(&m, 2);
    let want = dump(&m);
    drop(m); // Drop closes (and seals) too
    let (m, sealed) = opened(dir);
    assert!(sealed);
    assert_eq!(dump(&m), want);
}

#[test]
fn a_store_killed_while_open_has_no_seal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sealed_store(dir);
    let (m, _) = opened(dir);
    fill(&m, 2);
    let want = dump(&m);
    // What a kill -9 leaves: the files as they are, nothing closed.
    std::mem::forget(m);
    let copy = tempfile::tempdir().unwrap();
    for f in ["meta.redb", "meta.journal", "meta.lock"] {
        fs::copy(dir.join(f), copy.path().join(f)).unwrap();
    }
    assert!(!copy.path().join("meta.seal").exists());
    let (m, sealed) = opened(copy.path());
    assert!(!sealed);
    assert_eq!(dump(&m), want);
}

#[test]
fn a_byte_changed_in_either_file_after_a_clean_close_is_examined_in_full() {
    for file in ["meta.redb", "meta.journal"] {
        for (name, at) in [
            (
                "first byte",
                Box::new(|_: usize| 0usize) as Box<dyn Fn(usize) -> usize>,
            ),
            ("middle", Box::new(|n| n / 2)),
            ("last byte", Box::new(|n| n - 1)),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let want = sealed_store(dir);
            flip(&dir.join(file), at);
            let checked = MetaStore::check(dir).unwrap();
            let (m, rec) = MetaStore::open(dir, true).unwrap();
            assert!(!m.opened_sealed(), "{file} {name}");
            // Check says what open does (a quarantined file's new name aside).
            let gist = |r: &MetaRecovery| {
                (
                    r.events.clone(),
                    r.quarantined.len(),
                    r.rebuilt,
                    r.journal_rewritten,
                    r.lost.clone(),
                )
            };
            assert_eq!(gist(&checked), gist(&rec), "{file} {name}");
            assert!(rec.lost.is_none(), "{file} {name}: {rec:#?}");
            assert_eq!(dump(&m), want, "{file} {name}");
        }
    }
}

#[test]
fn a_damaged_or_stale_seal_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let want = sealed_store(dir);
    flip(&dir.join("meta.seal"), |n| n / 2);
    let (m, sealed) = opened(dir);
    assert!(!sealed, "a damaged seal");
    assert_eq!(dump(&m), want);
    drop(m);

    // A seal from an earlier close: the files moved on since.
    let old = fs::read(dir.join("meta.seal")).unwrap();
    let (m, _) = opened(dir);
    fill(&m, 3);
    let want = dump(&m);
    drop(m);
    fs::write(dir.join("meta.seal"), old).unwrap();
    let (m, sealed) = opened(dir);
    assert!(!sealed, "a stale seal");
    assert_eq!(dump(&m), want);
}

#[test]
fn a_file_cut_short_or_grown_after_a_clean_close_is_examined_in_full() {
    for file in ["meta.redb", "meta.journal"] {
        for grow in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let want = sealed_store(dir);
            let p = dir.join(file);
            let len = fs::metadata(&p).unwrap().len();
            let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(if grow { len + 4096 } else { len - 100 })
                .unwrap();
            drop(f);
            let (m, rec) = MetaStore::open(dir, true).unwrap();
            assert!(!m.opened_sealed(), "{file} grow {grow}");
            assert!(rec.lost.is_none(), "{file} grow {grow}: {rec:#?}");
            assert_eq!(dump(&m), want, "{file} grow {grow}");
        }
    }
}
