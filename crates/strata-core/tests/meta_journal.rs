//! The metadata journal: a damaged, missing or stale `meta.redb` or `meta.journal` is
//! repaired from the other copy, damaged files are renamed aside (never deleted), every
//! loss is reported, and `MetaStore::check` says so beforehand without touching a byte.
mod common;

use common::{dump, Model};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use strata_core::meta::{MetaRecovery, MetaStore, Op, Table, JOURNAL_SEQ_KEY};

fn model_apply(model: &mut Model, op: &Op) {
    match op {
        Op::Put(t, k, v) => {
            model.insert((t.name(), k.clone()), v.clone());
        }
        Op::Delete(t, k) => {
            model.remove(&(t.name(), k.clone()));
        }
        Op::DeletePrefix(t, p) => model.retain(|(n, k), _| !(*n == t.name() && k.starts_with(p))),
    }
}

fn apply(m: &MetaStore, model: &mut Model, ops: Vec<Op>) {
    for op in &ops {
        model_apply(model, op);
    }
    m.apply_blocking(ops).unwrap();
}

fn value(tag: &str, i: usize, round: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}:{i}:{round}:").into_bytes();
    let mut x = (i * 31 + round * 7) as u8;
    while v.len() < len {
        v.push(b'a' + x % 26);
        x = x.wrapping_mul(13).wrapping_add(5);
    }
    v
}

/// Sessions-, subscriptions-, cursors-, acks- and retained-like content: a few
/// thousand keys written in ~40 commits, with overwrites, deletes and prefix deletes.
fn fill(m: &MetaStore, model: &mut Model) {
    apply(
        m,
        model,
        vec![Op::Put(
            Table::System,
            b"site_id".to_vec(),
            b"0123456789abcdef".to_vec(),
        )],
    );
    for round in 0..3 {
        let mut ops = Vec::new();
        for i in 0..400 {
            let c = format!("client-{i:04}");
            ops.push(Op::Put(
                Table::Sessions,
                c.clone().into_bytes(),
                value("session", i, round, 48),
            ));
            ops.push(Op::Put(
                Table::Subscriptions,
                format!("{c}\0sensors/{}/#", i % 7).into_bytes(),
                vec![(i % 3) as u8],
            ));
            ops.push(Op::Put(
                Table::InboundQos2,
                format!("{c}\0{}", i % 5).into_bytes(),
                ((i * 1000 + round) as u64).to_le_bytes().to_vec(),
            ));
            ops.push(Op::Put(
                Table::Progress,
                c.clone().into_bytes(),
                value("acks", i, round, 24),
            ));
            ops.push(Op::Put(
                Table::Retained,
                format!("building/{}/floor/{i}/temp", i % 11).into_bytes(),
                value("retained", i, round, 64 + i % 100),
            ));
        }
        for chunk in ops.chunks(250) {
            apply(m, model, chunk.to_vec());
        }
    }
    let mut ops = Vec::new();
    for i in (0..400).step_by(9) {
        ops.push(Op::Delete(
            Table::Sessions,
            format!("client-{i:04}").into_bytes(),
        ));
    }
    ops.push(Op::DeletePrefix(Table::InboundQos2, b"client-001".to_vec()));
    ops.push(Op::DeletePrefix(
        Table::Subscriptions,
        b"client-0042\0".to_vec(),
    ));
    ops.push(Op::DeletePrefix(Table::Retained, b"building/3/".to_vec()));
    ops.push(Op::Delete(Table::Progress, b"absent".to_vec()));
    ops.push(Op::Put(
        Table::Losses,
        b"2026-12-06T00:00:00Z".to_vec(),
        b"example loss report".to_vec(),
    ));
    apply(m, model, ops);
}

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn quarantined_files(dir: &Path, base: &str) -> Vec<Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with(&format!("{base}.corrupt-")))
        .map(|(_, b)| b)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Cut7,
    Zero,
    Mid4,
    Delete,
}

fn damage(path: &Path, d: Damage) {
    match d {
        Damage::Cut7 => {
            let f = fs::OpenOptions::new().write(true).open(path).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len - 7).unwrap();
        }
        Damage::Zero => {
            let len = fs::metadata(path).unwrap().len() as usize;
            fs::write(path, vec![0u8; len]).unwrap();
        }
        Damage::Mid4 => {
            let mut b = fs::read(path).unwrap();
            let m = b.len() / 2;
            b[m..m + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            fs::write(path, b).unwrap();
        }
        Damage::Delete => fs::remove_file(path).unwrap(),
    }
}

/// The parts of a report that `check` and `open` share (open's quarantine entries
/// carry the new names).
fn gist(r: &MetaRecovery) -> (Vec<String>, usize, bool, bool, Option<String>) {
    (
        r.events.clone(),
        r.quarantined.len(),
        r.rebuilt,
        r.journal_rewritten,
        r.lost.clone(),
    )
}

/// `check` (asserting it changed nothing), then `open`; returns both reports, the
/// reopened store's content, and asserts the report's claims against the directory.
fn check_then_open(dir: &Path) -> (MetaRecovery, MetaRecovery, Model, MetaStore) {
    let before = files(dir);
    let checked = MetaStore::check(dir).unwrap();
    assert_eq!(files(dir), before, "check changed the directory");
    let (m, opened) = MetaStore::open(dir, true).unwrap();
    assert_eq!(gist(&checked), gist(&opened), "check and open disagree");
    for q in &opened.quarantined {
        let (from, rest) = q.split_once(" -> ").expect("`<file> -> <new>: why`");
        let (to, _) = rest.split_once(": ").unwrap();
        assert!(to.starts_with(&format!("{from}.corrupt-")), "{q}");
        assert_eq!(
            fs::read(dir.join(to)).unwrap(),
            before[from],
            "{to} must hold {from} exactly as found"
        );
    }
    let content = dump(&m);
    (checked, opened, content, m)
}

/// Closes, reopens and expects a clean report and the same content.
fn reopen_clean(m: MetaStore, dir: &Path, want: &Model) {
    drop(m);
    assert_eq!(MetaStore::check(dir).unwrap(), MetaRecovery::default());
    let (m, rec) = MetaStore::open(dir, true).unwrap();
    assert_eq!(rec, MetaRecovery::default(), "second reopen after repair");
    assert_eq!(&dump(&m), want);
}

fn store_with_content(dir: &Path) -> Model {
    let mut model = Model::new();
    let (m, rec) = MetaStore::open(dir, true).unwrap();
    assert_eq!(rec, MetaRecovery::default());
    fill(&m, &mut model);
    assert_eq!(dump(&m), model);
    assert!(model.len() > 1500, "{} keys", model.len());
    drop(m);
    model
}

#[test]
fn fault_matrix() {
    use Damage::*;
    for file in ["meta.redb", "meta.journal"] {
        for d in [Cut7, Zero, Mid4, Delete] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let model = store_with_content(dir);
            damage(&dir.join(file), d);
            let damaged = fs::read(dir.join(file)).ok();
            let (checked, opened, content, m) = check_then_open(dir);
            let case = format!("{file} {d:?}: {opened:#?}");
            eprintln!("{file} {d:?}: {opened:#?}");
            assert_eq!(content, model, "{case}");
            assert_eq!(opened.lost, None, "{case}");
            let q = quarantined_files(dir, file);
            match (file, d) {
                // The middle of meta.redb can be a free page: harmless and invisible.
                ("meta.redb", Mid4) if opened == MetaRecovery::default() => {
                    assert!(q.is_empty(), "{case}");
                }
                (_, Delete) => {
                    assert!(opened.quarantined.is_empty() && q.is_empty(), "{case}");
                    assert!(checked.events[0].contains("missing"), "{case}");
                    if file == "meta.redb" {
                        assert!(opened.rebuilt, "{case}");
                    } else {
                        assert!(opened.journal_rewritten && !opened.rebuilt, "{case}");
                    }
                }
                _ => {
                    assert!(checked.damage_found(), "{case}");
                    assert_eq!(opened.quarantined.len(), 1, "{case}");
                    assert!(opened.quarantined[0].starts_with(file), "{case}");
                    assert_eq!(q, vec![damaged.clone().unwrap()], "{case}");
                    if file == "meta.redb" {
                        assert!(opened.rebuilt, "{case}");
                    } else {
                        assert!(opened.journal_rewritten && !opened.rebuilt, "{case}");
                    }
                }
            }
            reopen_clean(m, dir, &model);
        }
    }
}

#[test]
fn both_copies_gone_is_reported_as_lost() {
    for d in [Damage::Delete, Damage::Zero] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        store_with_content(dir);
        damage(&dir.join("meta.redb"), d);
        damage(&dir.join("meta.journal"), d);
        let (checked, opened, content, m) = check_then_open(dir);
        assert!(content.is_empty());
        assert!(
            checked.lost.is_some() && opened.lost.is_some(),
            "{opened:#?}"
        );
        assert!(opened.rebuilt);
        if d == Damage::Zero {
            assert_eq!(opened.quarantined.len(), 2, "{opened:#?}");
            assert_eq!(quarantined_files(dir, "meta.redb").len(), 1);
            assert_eq!(quarantined_files(dir, "meta.journal").len(), 1);
        }
        reopen_clean(m, dir, &Model::new());
    }
    // A directory that never held a store is just new.
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        MetaStore::check(tmp.path()).unwrap(),
        MetaRecovery::default()
    );
}

/// 4 bytes overwritten in the middle of live data (rather than the middle of the
/// file): each copy of a value's bytes in the file is damaged in turn; whichever copy
/// is the live one, the damage is found and the content comes back from the journal.
#[test]
fn damaged_live_value_in_redb_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = store_with_content(dir);
    let orig = fs::read(dir.join("meta.redb")).unwrap();
    let i = 250; // building/8/floor/250/temp: live, last written in round 2
    let needle = value("retained", i, 2, 64 + i % 100);
    let hits: Vec<usize> = orig
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty());
    let hits_n = hits.len();
    let mut found = 0;
    for at in hits {
        let case = tempfile::tempdir().unwrap();
        for (name, bytes) in files(dir) {
            fs::write(case.path().join(name), bytes).unwrap();
        }
        let mut b = orig.clone();
        let mid = at + needle.len() / 2;
        b[mid..mid + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        fs::write(case.path().join("meta.redb"), &b).unwrap();
        let (_, opened, content, m) = check_then_open(case.path());
        assert_eq!(content, model);
        eprintln!("damage at {mid}: {opened:#?}");
        if opened.rebuilt {
            found += 1;
            assert_eq!(quarantined_files(case.path(), "meta.redb"), vec![b]);
        }
        reopen_clean(m, case.path(), &model);
    }
    eprintln!(
        "damaged copies of a live value: {found} of {n} found",
        n = hits_n
    );
    assert!(found >= 1, "the live copy's damage was not found");
}

/// Offsets of the frames of a journal (after its 16-byte header).
fn frames(j: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 16;
    while pos + 8 <= j.len() {
        out.push(pos);
        let len = u32::from_le_bytes(j[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    assert_eq!(pos, j.len());
    out
}

#[test]
fn crash_between_redb_commit_and_journal_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = store_with_content(dir);
    let j = fs::read(dir.join("meta.journal")).unwrap();
    let last = *frames(&j).last().unwrap();
    // The last frame never written: redb is one commit ahead, nobody was told.
    fs::write(dir.join("meta.journal"), &j[..last]).unwrap();
    let (_, opened, content, m) = check_then_open(dir);
    assert_eq!(content, model, "redb's content is kept");
    assert!(opened.journal_rewritten && !opened.rebuilt, "{opened:#?}");
    assert!(opened.quarantined.is_empty() && opened.lost.is_none());
    assert!(
        opened.events[0].contains("1 commit(s) behind"),
        "{opened:#?}"
    );
    reopen_clean(m, dir, &model);

    // Half of the last frame written (a torn write): cut, the file kept aside.
    let j = fs::read(dir.join("meta.journal")).unwrap();
    let (m, _) = MetaStore::open(dir, true).unwrap();
    let mut model = model;
    apply(
        &m,
        &mut model,
        vec![Op::Put(Table::Progress, b"late".to_vec(), b"ack".to_vec())],
    );
    drop(m);
    let j2 = fs::read(dir.join("meta.journal")).unwrap();
    assert!(j2.len() > j.len());
    let last = *frames(&j2).last().unwrap();
    let torn = &j2[..last + (j2.len() - last) / 2];
    fs::write(dir.join("meta.journal"), torn).unwrap();
    let (_, opened, content, m) = check_then_open(dir);
    assert_eq!(content, model);
    assert!(
        opened.journal_rewritten && opened.lost.is_none(),
        "{opened:#?}"
    );
    assert!(
        opened.events.iter().any(|e| e.contains("incomplete frame")),
        "{opened:#?}"
    );
    assert_eq!(quarantined_files(dir, "meta.journal"), vec![torn.to_vec()]);
    reopen_clean(m, dir, &model);
}

/// A `meta.redb` from before the last commits (as a crash of a non-durable store leaves
/// it, or a restored backup): the journal's frames after its seq are replayed onto it.
#[test]
fn stale_redb_catches_up_from_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut model = store_with_content(dir);
    let old = fs::read(dir.join("meta.redb")).unwrap();
    let (m, _) = MetaStore::open(dir, true).unwrap();
    for i in 0..5u8 {
        apply(
            &m,
            &mut model,
            vec![
                Op::Put(Table::Sessions, vec![b'n', i], vec![i; 10]),
                Op::DeletePrefix(Table::InboundQos2, format!("client-02{i}").into_bytes()),
            ],
        );
    }
    drop(m);
    fs::write(dir.join("meta.redb"), &old).unwrap();
    let (_, opened, content, m) = check_then_open(dir);
    assert_eq!(content, model);
    assert!(!opened.damage_found(), "{opened:#?}");
    assert!(opened.events[0].contains("5 commit(s) behind meta.journal"));
    reopen_clean(m, dir, &model);

    // Once the journal was compacted past the stale seq it cannot catch up: rebuilt
    // from the journal, the stale file kept aside.
    let old = fs::read(dir.join("meta.redb")).unwrap();
    let (m, _) = MetaStore::open(dir, true).unwrap();
    apply(
        &m,
        &mut model,
        vec![Op::Put(Table::Retained, b"r".to_vec(), b"v".to_vec())],
    );
    m.compact_journal().unwrap();
    drop(m);
    fs::write(dir.join("meta.redb"), &old).unwrap();
    let (_, opened, content, m) = check_then_open(dir);
    assert_eq!(content, model);
    assert!(opened.rebuilt && opened.lost.is_none(), "{opened:#?}");
    assert_eq!(quarantined_files(dir, "meta.redb"), vec![old]);
    reopen_clean(m, dir, &model);
}

#[test]
fn compaction_keeps_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut model = Model::new();
    let (m, _) = MetaStore::open(dir, true).unwrap();
    let mut written = 0;
    for round in 0..120 {
        let ops: Vec<Op> = (0..100)
            .map(|i| {
                Op::Put(
                    Table::Retained,
                    format!("t/{i}").into_bytes(),
                    value("v", i, round, 1000),
                )
            })
            .collect();
        written += ops.len() * 1000;
        apply(&m, &mut model, ops);
    }
    let len = fs::metadata(dir.join("meta.journal")).unwrap().len();
    assert!(written > 10 << 20);
    assert!(
        len < 9 << 20,
        "the journal compacted by itself: {len} bytes after {written} written"
    );
    m.compact_journal().unwrap();
    let len = fs::metadata(dir.join("meta.journal")).unwrap().len();
    assert!(len < 200_000, "one snapshot of 100 keys: {len} bytes");
    assert_eq!(dump(&m), model);
    drop(m);
    let (m, rec) = MetaStore::open(dir, true).unwrap();
    assert_eq!(rec, MetaRecovery::default());
    assert_eq!(dump(&m), model);
    apply(
        &m,
        &mut model,
        vec![Op::DeletePrefix(Table::Retained, b"t/1".to_vec())],
    );
    drop(m);

    // Interrupted compactions leave a stray temp file (empty, partial, or complete but
    // not renamed): ignored and removed; the journal it was to replace is complete.
    let snapshot = fs::read(dir.join("meta.journal")).unwrap();
    for stray in [
        Vec::new(),
        snapshot[..snapshot.len() / 2].to_vec(),
        snapshot,
    ] {
        fs::write(dir.join("meta.journal.tmp"), &stray).unwrap();
        let (checked, opened, content, m) = check_then_open(dir);
        assert_eq!(content, model);
        assert!(!checked.damage_found() && !opened.journal_rewritten);
        assert!(opened.events[0].starts_with("meta.journal.tmp"));
        assert!(!dir.join("meta.journal.tmp").exists());
        reopen_clean(m, dir, &model);
    }
}

#[test]
fn a_store_from_before_the_journal_gets_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = store_with_content(dir);
    // What the previous version left: meta.redb without journal_seq, no journal.
    {
        let db = redb::Database::create(dir.join("meta.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("system"))
                .unwrap();
            t.remove(JOURNAL_SEQ_KEY).unwrap();
        }
        w.commit().unwrap();
    }
    fs::remove_file(dir.join("meta.journal")).unwrap();
    let (_, opened, content, m) = check_then_open(dir);
    assert_eq!(content, model);
    assert!(opened.journal_rewritten && !opened.damage_found());
    assert!(opened.events[0].contains("before the journal"));
    reopen_clean(m, dir, &model);
}

/// A process killed (abort, no unwinding, no destructors) while committing: what it was
/// told was committed is there after reopen. Non-durable stores lose nothing either on
/// a process crash: redb's unsynced commits are replayed from the journal.
#[test]
fn killed_process_loses_nothing_acknowledged() {
    const CHILD_ENV: &str = "META_JOURNAL_CHILD_DIR";
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: commit, write down what was acknowledged, abort mid-stream.
        let durable = std::env::var("META_JOURNAL_CHILD_DURABLE").unwrap() == "1";
        let (m, _) = MetaStore::open(Path::new(&dir), durable).unwrap();
        let acked = Path::new(&dir).join("acked");
        for i in 0u32.. {
            m.apply_blocking(vec![
                Op::Put(
                    Table::Progress,
                    b"counter".to_vec(),
                    i.to_le_bytes().to_vec(),
                ),
                Op::Put(Table::Sessions, format!("s{i}").into_bytes(), vec![1; 100]),
            ])
            .unwrap();
            fs::write(&acked, i.to_le_bytes()).unwrap();
            if i == 300 {
                std::process::abort();
            }
        }
    }
    for durable in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_process_loses_nothing_acknowledged",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir)
            .env(
                "META_JOURNAL_CHILD_DURABLE",
                if durable { "1" } else { "0" },
            )
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child aborts");
        let acked = u32::from_le_bytes(fs::read(dir.join("acked")).unwrap().try_into().unwrap());
        fs::remove_file(dir.join("acked")).unwrap();
        let (_, opened, _, m) = check_then_open(dir);
        let counter = m.get(Table::Progress, b"counter").unwrap().unwrap();
        let counter = u32::from_le_bytes(counter.try_into().unwrap());
        assert!(counter >= acked, "durable {durable}: {counter} < {acked}");
        for i in 0..=counter {
            assert!(m
                .get(Table::Sessions, format!("s{i}").as_bytes())
                .unwrap()
                .is_some());
        }
        assert!(!opened.damage_found(), "durable {durable}: {opened:#?}");
        if !durable {
            assert!(
                opened
                    .events
                    .iter()
                    .any(|e| e.contains("behind meta.journal")),
                "{opened:#?}"
            );
        }
        let want = dump(&m);
        reopen_clean(m, dir, &want);
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Action {
        Ops(Vec<Op>),
        Reopen,
        /// Closed; the journal's last `n` commit frames cut (at frame boundaries).
        CutJournalFrames(usize),
        /// Closed; the second half of the journal's last commit frame cut (a torn write).
        TearJournalTail,
        /// Closed; meta.redb deleted.
        DeleteRedb,
        /// Closed; meta.journal deleted.
        DeleteJournal,
        Compact,
    }

    fn table() -> impl Strategy<Value = Table> {
        prop_oneof![
            Just(Table::Sessions),
            Just(Table::InboundQos2),
            Just(Table::Retained)
        ]
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        (0u8..4, 0u8..6).prop_map(|(a, b)| vec![b'a' + a, b'0' + b])
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (table(), key(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(t, k, v)| Op::Put(t, k, v)),
            2 => (table(), key()).prop_map(|(t, k)| Op::Delete(t, k)),
            1 => (table(), key()).prop_map(|(t, k)| Op::DeletePrefix(t, k[..1].to_vec())),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            12 => proptest::collection::vec(op(), 1..6).prop_map(Action::Ops),
            2 => Just(Action::Reopen),
            2 => (0usize..4).prop_map(Action::CutJournalFrames),
            1 => Just(Action::TearJournalTail),
            1 => Just(Action::DeleteRedb),
            1 => Just(Action::DeleteJournal),
            1 => Just(Action::Compact),
        ]
    }

    /// Cuts the last `n` commit frames (frames of kind 0) off the journal.
    fn cut_frames(path: &Path, n: usize) {
        let j = fs::read(path).unwrap();
        let commits: Vec<usize> = frames(&j).into_iter().filter(|&p| j[p + 16] == 0).collect();
        let keep = commits.len().saturating_sub(n);
        if keep < commits.len() {
            fs::write(path, &j[..commits[keep]]).unwrap();
        }
    }

    /// Cuts the second half of the journal's last commit frame, if any.
    fn tear_tail(path: &Path) -> bool {
        let j = fs::read(path).unwrap();
        let Some(&last) = frames(&j).iter().rev().find(|&&p| j[p + 16] == 0) else {
            return false;
        };
        fs::write(path, &j[..last + (j.len() - last) / 2]).unwrap();
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn random_ops_reopens_and_journal_cuts_match_a_model(
            durable in any::<bool>(),
            actions in proptest::collection::vec(action(), 1..40)
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let mut model = Model::new();
            let mut m = Some(MetaStore::open(dir, durable).unwrap().0);
            for a in actions {
                match a {
                    Action::Ops(ops) => apply(m.as_ref().unwrap(), &mut model, ops),
                    Action::Compact => m.as_ref().unwrap().compact_journal().unwrap(),
                    other => {
                        drop(m.take());
                        let mut torn = false;
                        match other {
                            Action::TearJournalTail => torn = tear_tail(&dir.join("meta.journal")),
                            Action::CutJournalFrames(n) => cut_frames(&dir.join("meta.journal"), n),
                            Action::DeleteRedb => fs::remove_file(dir.join("meta.redb")).unwrap(),
                            Action::DeleteJournal => {
                                fs::remove_file(dir.join("meta.journal")).unwrap()
                            }
                            _ => {}
                        }
                        let before = files(dir);
                        let checked = MetaStore::check(dir).unwrap();
                        prop_assert_eq!(&files(dir), &before);
                        let (s, rec) = MetaStore::open(dir, durable).unwrap();
                        prop_assert_eq!(gist(&checked), gist(&rec));
                        prop_assert_eq!(rec.lost.clone(), None);
                        prop_assert_eq!(rec.quarantined.len(), usize::from(torn), "{:#?}", rec);
                        prop_assert!(!torn || rec.quarantined[0].starts_with("meta.journal ->"));
                        prop_assert_eq!(dump(&s), model.clone());
                        m = Some(s);
                    }
                }
                prop_assert_eq!(dump(m.as_ref().unwrap()), model.clone());
            }
        }
    }
}
