//! Storage engine benchmarks (`cargo bench -p strata-core --bench log`).
//!
//! 1. append, fsync `always`, 64-byte payloads on 30-byte topics, 8 producers each
//!    keeping a window of appends in flight (every append completes individually,
//!    after the group-commit fsync that covers it); also a closed loop with one
//!    append in flight per producer, for contrast;
//! 2. fetch from page cache into one buffer (Rust side of the binding's `fetch`);
//! 3. open/recover a large store to ready;
//! 4. bytes on disk per message;
//! 5. session replay scan (`log::scan`) from page cache: records examined/s when
//!    little matches, entries emitted/s when everything matches.
//!
//! Environment: `BENCH_DIR` (default: a temp dir under /tmp), `BENCH_APPEND_N`
//! (default 2M), `BENCH_RECOVER_N` (default 10M), `BENCH_SHARDS` (default 2),
//! `BENCH_WINDOW` (per-producer appends in flight, default 4096), `BENCH_SCAN_N`
//! (default 4M), `BENCH_ONLY=scan` (run section 5 only).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use strata_core::fetch::{fetch, FetchLimits};
use strata_core::log::{
    scan, FsyncPolicy, Log, NewMessage, Options, ScanFilter, ScanLimits, ScanStatus,
};

const TOPIC: &str = "building-07/floor-3/sensor/tmp"; // 30 bytes

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn msg(p: usize, i: u64) -> NewMessage {
    let mut payload = vec![0u8; 64];
    payload[..8].copy_from_slice(&i.to_le_bytes());
    NewMessage {
        publisher: format!("producer-{p}").into_bytes(),
        topic: TOPIC.to_string(),
        qos: 1,
        retain: false,
        properties: Vec::new(),
        payload,
        inbound_id: 0,
    }
}

struct Window {
    outstanding: Mutex<u64>,
    cv: Condvar,
}

/// `producers` threads append `per_producer` messages each, keeping up to `window`
/// in flight. Returns messages per second.
fn run_append(log: &Arc<Log>, producers: usize, per_producer: u64, window: u64) -> f64 {
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let log = log.clone();
            let errors = errors.clone();
            std::thread::spawn(move || {
                let w = Arc::new(Window {
                    outstanding: Mutex::new(0),
                    cv: Condvar::new(),
                });
                for i in 0..per_producer {
                    {
                        let mut o = w.outstanding.lock().unwrap();
                        while *o >= window {
                            o = w.cv.wait(o).unwrap();
                        }
                        *o += 1;
                    }
                    let w2 = w.clone();
                    let e2 = errors.clone();
                    log.append(
                        vec![msg(p, i)],
                        Box::new(move |r| {
                            if r.is_err() {
                                e2.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut o = w2.outstanding.lock().unwrap();
                            *o -= 1;
                            if *o + 1 >= window || *o == 0 {
                                w2.cv.notify_one();
                            }
                        }),
                    );
                }
                let mut o = w.outstanding.lock().unwrap();
                while *o > 0 {
                    o = w.cv.wait(o).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let el = t0.elapsed();
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    (producers as u64 * per_producer) as f64 / el.as_secs_f64()
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            n += dir_bytes(&e.path());
        } else {
            n += m.len();
        }
    }
    n
}

/// Section 5, session replay scan: one shard of `n` records, 64-byte payloads on 30-byte
/// topics `building-07/floor-3/sensor/NNN` (1000 sensors: 16 static streams, the rest
/// share the learned `building-07/floor-3/sensor/+` stream), scanned from 0 to Done
/// with the binding's default limits.
fn bench_scan(base: &str, n: u64) {
    let d = tempfile::tempdir_in(base).unwrap();
    let log = Log::open(
        d.path(),
        Options {
            n_shards: Some(1),
            fsync: FsyncPolicy::None,
            ..Options::default()
        },
    )
    .unwrap();
    let t0 = Instant::now();
    let mut i = 0u64;
    while i < n {
        let batch: Vec<NewMessage> = (i..(i + 10_000).min(n))
            .map(|k| NewMessage {
                topic: format!("building-07/floor-3/sensor/{:03}", k % 1000),
                ..msg(0, k)
            })
            .collect();
        i += batch.len() as u64;
        log.append_blocking(batch).unwrap();
    }
    log.flush().unwrap();
    println!("scan: built a {n}-record shard in {:?}", t0.elapsed());
    let f = |filter: &str| ScanFilter {
        filter: filter.into(),
        start: 0,
    };
    let cases: Vec<(&str, Vec<ScanFilter>)> = vec![
        (
            "1 filter, 0.1% match (learned-wildcard stream)",
            vec![f("building-07/floor-3/sensor/500")],
        ),
        (
            "1 filter, 0.1% match (static stream)",
            vec![f("building-07/floor-3/sensor/007")],
        ),
        (
            "40 filters (2 mask words), 4% match",
            (0..40)
                .map(|k| f(&format!("building-07/floor-3/sensor/{:03}", k * 25)))
                .collect(),
        ),
        (
            "1 filter, 100% match (building-07/#)",
            vec![f("building-07/#")],
        ),
        (
            "3 filters, 100% match ($share/g/+/+/sensor/+, #, building-07/floor-3/#)",
            vec![
                f("$share/g/+/+/sensor/+"),
                f("#"),
                f("building-07/floor-3/#"),
            ],
        ),
        ("1 filter no stream can match (other/#)", vec![f("other/#")]),
    ];
    let lim = ScanLimits {
        max_entries: 1000,
        max_bytes: 4 << 20,
        max_examined: 65_536,
        until: None,
    };
    for (name, filters) in &cases {
        // Best of 3 (page cache warm after the first).
        let mut best = Duration::MAX;
        let (mut entries, mut calls) = (0u64, 0u64);
        for _ in 0..3 {
            let t0 = Instant::now();
            let (mut next, mut e, mut c) = (0u64, 0u64, 0u64);
            loop {
                let b = scan(&log, 0, next, filters, lim).unwrap();
                e += b.len() as u64;
                c += 1;
                next = b.next;
                if b.status == ScanStatus::Done {
                    break;
                }
            }
            assert_eq!(next, n);
            best = best.min(t0.elapsed());
            (entries, calls) = (e, c);
        }
        let s = best.as_secs_f64();
        println!(
            "scan {name}: {:.2}M records examined/s, {:.2}M entries/s ({entries} entries, {calls} calls, {best:?})",
            n as f64 / s / 1e6,
            entries as f64 / s / 1e6,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us with no such
    // flag: then do a tiny smoke run only.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into());
    let n_scan = if smoke {
        20_000
    } else {
        env("BENCH_SCAN_N", 4_000_000)
    };
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "scan") {
        bench_scan(&base, n_scan);
        return;
    }
    let shards = env("BENCH_SHARDS", 2) as u32;
    let window = env("BENCH_WINDOW", 4096);
    let n_append = if smoke {
        8_000
    } else {
        env("BENCH_APPEND_N", 2_000_000)
    };
    let n_recover = if smoke {
        20_000
    } else {
        env("BENCH_RECOVER_N", 10_000_000)
    };

    // 1. Append, fsync always.
    let d = tempfile::tempdir_in(&base).unwrap();
    let log = Arc::new(
        Log::open(
            d.path(),
            Options {
                n_shards: Some(shards),
                fsync: FsyncPolicy::Always,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let rate = run_append(&log, 8, n_append / 8, window);
    println!(
        "append fsync=always 64B payload 30B topic, 8 producers x {window} in flight, {shards} shards: {:.0} msgs/s ({n_append} msgs)",
        rate
    );
    let closed_n = if smoke { 200 } else { 4_000 };
    let rate1 = run_append(&log, 8, closed_n, 1);
    println!(
        "append fsync=always, 8 producers x 1 in flight (closed loop): {:.0} msgs/s",
        rate1
    );

    // 4. Bytes per message (data files only, and whole directory).
    let st = log.stats();
    let per_msg = st.bytes as f64 / st.records as f64;
    println!(
        "bytes on disk per message: {:.1} data ({:.1} incl. index/meta files); payload+topic = 94, ratio {:.2}",
        per_msg,
        dir_bytes(d.path()) as f64 / st.records as f64,
        per_msg / 94.0
    );

    // 2. Fetch from page cache.
    let streams = log.streams("#");
    let mut total = 0usize;
    let t0 = Instant::now();
    let mut cursors: Vec<_> = streams.iter().map(|s| log.cursor(s.id, None)).collect();
    loop {
        let b = fetch(
            &log,
            &mut cursors,
            FetchLimits {
                per_cursor: 1000,
                total: 10_000,
                bytes: 16 << 20,
            },
        )
        .unwrap();
        if b.is_empty() {
            break;
        }
        total += b.len();
    }
    let el = t0.elapsed();
    assert_eq!(total as u64, st.records);
    println!(
        "fetch (batch 1000, one buffer + offset table): {:.0} msgs/s ({total} msgs in {el:?})",
        total as f64 / el.as_secs_f64()
    );
    drop(log);
    drop(d);

    // 3. Open/recover a large store.
    let d = tempfile::tempdir_in(&base).unwrap();
    let opts = Options {
        n_shards: Some(4),
        fsync: FsyncPolicy::None,
        ..Options::default()
    };
    {
        let log = Arc::new(Log::open(d.path(), opts.clone()).unwrap());
        let t0 = Instant::now();
        run_append(&log, 8, n_recover / 8, 65536);
        log.flush().unwrap();
        println!(
            "built a {n_recover}-message store (fsync=none) in {:?}: {} bytes",
            t0.elapsed(),
            log.stats().bytes
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    for round in ["warm cache", "again"] {
        let t0 = Instant::now();
        let log = Log::open(d.path(), opts.clone()).unwrap();
        let el = t0.elapsed();
        let r = log.recovery();
        println!(
            "open/recover {} msgs to ready ({round}): {el:?} ({} segments, {} bytes scanned)",
            r.records, r.segments, r.scanned_bytes
        );
        assert_eq!(r.records, n_recover / 8 * 8);
    }
    drop(d);

    // 5. Session replay scan.
    bench_scan(&base, n_scan);
}
