//! Micro benchmark of the subscription trie and the retained index (SPEC H2).
//!
//! `cargo bench -p strata-core --bench trie` (add `-- --quick` for a short run).
//! No benchmark framework: a fixed workload, wall-clock timing, figures printed.
//! `bench/native/trie.bench.ts` builds the same workload through the binding.
use std::hint::black_box;
use std::time::{Duration, Instant};

use strata_core::topic::{RetainedIndex, SubscriptionTrie};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SITES: u64 = 100;
const DEVICES: u64 = 1000;

/// How many subscriptions of each shape a workload has; 100,000 in total, over
/// topics `site/{0..99}/dev/{0..999}/temp` plus unrelated `fleet/{n}/gps`.
struct Mix {
    name: &'static str,
    exact: usize,
    dev_plus: usize,
    dev_hash: usize,
    any_site: usize,
    any_dev: usize,
    site_hash: usize,
    shared: usize,
    groups: u64,
    fleet: usize,
}

/// Heavy fan-out: every topic matches ~33 subscriptions, 8 of them shared groups.
const DENSE: Mix = Mix {
    name: "dense",
    exact: 60_000,
    dev_plus: 10_000,
    dev_hash: 10_000,
    any_site: 5_000,
    any_dev: 1_000,
    site_hash: 1_000,
    shared: 3_000,
    groups: 8,
    fleet: 10_000,
};

/// Routing-style: every topic matches a few subscriptions (~4), one shared group.
const SPARSE: Mix = Mix {
    name: "sparse",
    exact: 80_000,
    dev_plus: 5_000,
    dev_hash: 5_000,
    any_site: 1_000,
    any_dev: 100,
    site_hash: 100,
    shared: 200,
    groups: 1,
    fleet: 8_600,
};

fn filters(rng: &mut Rng, m: &Mix) -> Vec<String> {
    let mut out = Vec::with_capacity(100_000);
    let mut add = |n: usize, f: &mut dyn FnMut(&mut Rng) -> String| {
        for _ in 0..n {
            out.push(f(rng));
        }
    };
    // One exact filter per device for most devices (dashboards, device twins).
    add(m.exact, &mut |r| {
        format!("site/{}/dev/{}/temp", r.below(SITES), r.below(DEVICES))
    });
    add(m.dev_plus, &mut |r| {
        format!("site/{}/dev/{}/+", r.below(SITES), r.below(DEVICES))
    });
    add(m.dev_hash, &mut |r| {
        format!("site/{}/dev/{}/#", r.below(SITES), r.below(DEVICES))
    });
    add(m.any_site, &mut |r| {
        format!("site/+/dev/{}/temp", r.below(DEVICES))
    });
    add(m.any_dev, &mut |r| {
        format!("site/{}/dev/+/temp", r.below(SITES))
    });
    add(m.site_hash, &mut |r| format!("site/{}/#", r.below(SITES)));
    add(m.shared, &mut |r| {
        format!(
            "$share/g{}/site/{}/dev/+/temp",
            r.below(m.groups),
            r.below(SITES)
        )
    });
    // Unrelated traffic that shares no prefix.
    add(m.fleet, &mut |r| format!("fleet/{}/gps", r.below(50_000)));
    assert_eq!(out.len(), 100_000);
    out
}

fn topic(rng: &mut Rng) -> String {
    format!("site/{}/dev/{}/temp", rng.below(SITES), rng.below(DEVICES))
}

/// CPU time of this thread (user + system) from `/proc/thread-self/stat`, in
/// clock ticks of 10 ms; `None` off Linux. Used to discount time the thread spent
/// preempted on a shared machine.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Calls per second of CPU time for `n` calls that took `cpu` (if measurable).
fn cpu_rate(n: usize, before: Option<Duration>) -> String {
    match (before, thread_cpu()) {
        (Some(a), Some(b)) if b > a => format!("{:.2} M/s per CPU-second", per_sec(n, b - a) / 1e6),
        _ => "cpu time n/a".to_string(),
    }
}

/// Run `n` calls of `f` in 50 timed rounds; the machine may be shared, so report
/// the best round (least disturbed), the median, and the rate per CPU-second over
/// all rounds, plus the mean output length.
fn rounds(n: usize, mut f: impl FnMut(usize, &mut Vec<u32>)) -> (f64, f64, f64, String) {
    let cpu0 = thread_cpu();
    let mut out: Vec<u32> = Vec::with_capacity(1024);
    const ROUNDS: usize = 50;
    let per = n / ROUNDS;
    let mut rates = Vec::with_capacity(ROUNDS);
    let mut ids = 0usize;
    for r in 0..ROUNDS {
        let t0 = Instant::now();
        for i in r * per..(r + 1) * per {
            out.clear();
            f(black_box(i), &mut out);
            ids += black_box(out.len());
        }
        rates.push(per_sec(per, t0.elapsed()));
    }
    rates.sort_by(f64::total_cmp);
    (
        rates[ROUNDS - 1],
        rates[ROUNDS / 2],
        ids as f64 / (per * ROUNDS) as f64,
        cpu_rate(per * ROUNDS, cpu0),
    )
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn bench_trie(mix: &Mix, quick: bool) {
    println!("trie workload '{}':", mix.name);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let filters = filters(&mut rng, mix);
    let t0 = Instant::now();
    let mut trie = SubscriptionTrie::new();
    for (id, f) in filters.iter().enumerate() {
        trie.subscribe(f, id as u32).unwrap();
    }
    let build = t0.elapsed();
    println!(
        "trie: {} subscriptions ({} filters) built in {:.1} ms ({:.2} M subscribe/s)",
        trie.len(),
        filters.len(),
        build.as_secs_f64() * 1e3,
        per_sec(filters.len(), build) / 1e6
    );

    // 4096 distinct topics, cycled, so the working set is realistic, not one line.
    let topics: Vec<String> = (0..4096).map(|_| topic(&mut rng)).collect();
    let n = if quick { 500_000 } else { 5_000_000 };
    let mut out: Vec<u32> = Vec::with_capacity(1024);
    // Warm up.
    for t in topics.iter().take(4096) {
        out.clear();
        trie.match_topic(t, &mut out);
    }
    let (best, median, ids, cpu) = rounds(n, |i, out| trie.match_topic(&topics[i & 4095], out));
    println!(
        "trie: match_topic {:.2} M matches/s best round, {:.2} M/s median, {cpu} ({:.0} ns/match best, {:.1} ids per match, {} matches)",
        best / 1e6,
        median / 1e6,
        1e9 / best,
        ids,
        n
    );

    // The same with only 64 distinct topics: the trie paths stay in cache. The gap
    // to the line above is what cache misses cost on this machine.
    let hot = &topics[..64];
    let (best, median, _, cpu) = rounds(n, |i, out| trie.match_topic(&hot[i & 63], out));
    println!(
        "trie: match_topic (64 hot topics) {:.2} M matches/s best round, {:.2} M/s median, {cpu}",
        best / 1e6,
        median / 1e6
    );

    // Topics that hit nothing below the first level.
    let misses: Vec<String> = (0..4096).map(|i| format!("other/{i}/x")).collect();
    let (best, median, _, cpu) = rounds(n, |i, out| trie.match_topic(&misses[i & 4095], out));
    println!(
        "trie: match_topic (miss) {:.2} M matches/s best round, {:.2} M/s median, {cpu}",
        best / 1e6,
        median / 1e6
    );

    let t0 = Instant::now();
    let mut removed = 0;
    for (id, f) in filters.iter().enumerate() {
        removed += usize::from(trie.unsubscribe(f, id as u32).unwrap());
    }
    let d = t0.elapsed();
    assert!(trie.is_empty());
    println!(
        "trie: {} unsubscribes in {:.1} ms ({:.2} M/s)",
        removed,
        d.as_secs_f64() * 1e3,
        per_sec(removed, d) / 1e6
    );
}

fn time_query(index: &RetainedIndex, filter: &str, reps: usize) {
    let mut count = 0usize;
    let t0 = Instant::now();
    for _ in 0..reps {
        index
            .for_each_match(black_box(filter), |t| {
                black_box(t);
                count += 1;
            })
            .unwrap();
    }
    let walk = t0.elapsed() / reps as u32;
    let t0 = Instant::now();
    let mut owned = 0usize;
    for _ in 0..reps {
        owned += index.match_filter(black_box(filter)).unwrap().len();
    }
    let alloc = t0.elapsed() / reps as u32;
    println!(
        "retained: {:<24} {:>7} topics  walk {:>10.1} us   Vec<String> {:>10.1} us",
        filter,
        count / reps,
        walk.as_secs_f64() * 1e6,
        alloc.as_secs_f64() * 1e6
    );
    black_box(owned);
}

fn bench_retained(quick: bool) {
    let mut index = RetainedIndex::new();
    let t0 = Instant::now();
    for s in 0..SITES {
        for d in 0..DEVICES {
            index.set(&format!("site/{s}/dev/{d}/temp")).unwrap();
        }
    }
    for i in 0..10_000 {
        index.set(&format!("fleet/{i}/gps")).unwrap();
    }
    index.set("$SYS/broker/uptime").unwrap();
    let d = t0.elapsed();
    println!(
        "retained: {} topics indexed in {:.1} ms",
        index.len(),
        d.as_secs_f64() * 1e3
    );
    let reps = if quick { 3 } else { 20 };
    let many = if quick { 10_000 } else { 200_000 };
    time_query(&index, "site/42/dev/517/temp", many);
    time_query(&index, "site/42/dev/+/temp", reps * 10);
    time_query(&index, "site/+/dev/517/temp", reps * 50);
    time_query(&index, "site/42/#", reps * 10);
    time_query(&index, "+/+/dev/+/temp", reps);
    time_query(&index, "#", reps);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Optional selection: `trie` or `retained` (cargo passes `--bench` too).
    let only =
        |name: &str| args.iter().all(|a| a.starts_with("--")) || args.iter().any(|a| a == name);
    if only("trie") {
        bench_trie(&DENSE, quick);
        bench_trie(&SPARSE, quick);
    }
    if only("retained") {
        bench_retained(quick);
    }
}
