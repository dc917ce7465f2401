//! Cost of a durable metadata commit (run by hand, ignored by default):
//!
//! ```text
//! cargo test -p strata-core --release --test meta_bench -- --ignored --nocapture
//! ```
//!
//! 8 threads each commit 100 single-key ack updates one after the other
//! (`apply_blocking`, `Durability::Immediate`): 800 commits, group-committed by the
//! writer thread. Repeated `META_BENCH_RUNS` times (default 7) on a fresh store each
//! time; prints every run, the median and the best. `BENCH_DIR` picks the disk
//! (default: the system temp dir).
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_core::meta::{MetaStore, Op, Table};

fn run_once(dir: &std::path::Path) -> Duration {
    let m = Arc::new(MetaStore::open(dir, true).unwrap().0);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    let key = format!("session-{t}").into_bytes();
                    m.apply_blocking(vec![Op::Put(
                        Table::Progress,
                        key,
                        i.to_le_bytes().to_vec(),
                    )])
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let el = t0.elapsed();
    m.close();
    el
}

#[test]
#[ignore]
fn durable_group_commit_800_from_8_threads() {
    let runs = std::env::var("META_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7usize);
    let base = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let mut times = Vec::new();
    for _ in 0..runs {
        let d = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let el = run_once(d.path());
        eprintln!("800 durable commits from 8 threads: {el:?}");
        times.push(el);
    }
    times.sort();
    eprintln!(
        "median {:?}, best {:?} ({:.0} commits/s at the median)",
        times[times.len() / 2],
        times[0],
        800.0 / times[times.len() / 2].as_secs_f64()
    );
}

/// Time to open a store holding `META_BENCH_KEYS` (default 100 000) keys of ~100-byte
/// values after a clean close: probe, integrity check, journal replay and whole-content
/// comparison included. Also prints the sizes of both files and what `check` costs.
#[test]
#[ignore]
fn open_cost_with_100k_keys() {
    let keys = std::env::var("META_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000usize);
    let d = match std::env::var_os("BENCH_DIR") {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    {
        let (m, _) = MetaStore::open(d.path(), true).unwrap();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(5000) {
            let ops = chunk
                .iter()
                .map(|i| {
                    Op::Put(
                        Table::Sessions,
                        format!("client-{i:08}").into_bytes(),
                        vec![(i % 251) as u8; 100],
                    )
                })
                .collect();
            m.apply_blocking(ops).unwrap();
        }
    }
    let size = |n: &str| std::fs::metadata(d.path().join(n)).map_or(0, |m| m.len());
    eprintln!(
        "{keys} keys: meta.redb {} bytes, meta.journal {} bytes",
        size("meta.redb"),
        size("meta.journal")
    );
    let mut opens = Vec::new();
    let mut checks = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = MetaStore::check(d.path()).unwrap();
        checks.push(t0.elapsed());
        assert!(r.events.is_empty(), "{r:?}");
        let t0 = Instant::now();
        let (m, r) = MetaStore::open(d.path(), true).unwrap();
        opens.push(t0.elapsed());
        assert!(r.events.is_empty(), "{r:?}");
        drop(m);
    }
    opens.sort();
    checks.sort();
    eprintln!(
        "open: median {:?} (best {:?}); check: median {:?}",
        opens[2], opens[0], checks[2]
    );
}
