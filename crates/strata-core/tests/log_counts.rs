//! Delivery counts beside the log (`Log::add_counts` / `read_counts`): added across calls and
//! generations, the first acknowledgement reported once, kept over a reopen, holes read as
//! zeros, and gone with the generation retention drops.
use std::thread::sleep;
use std::time::Duration;
use strata_core::log::{shard_of, FsyncPolicy, Log, NewMessage, Options};

fn opts(retention_ms: Option<u64>) -> Options {
    Options {
        n_shards: Some(2),
        fsync: FsyncPolicy::None,
        segment_bytes: 4096,
        index_interval: 128,
        retention_ms,
        ..Options::default()
    }
}

fn publisher0() -> Vec<u8> {
    (0..)
        .map(|n| format!("p{n}"))
        .find(|c| shard_of(c.as_bytes(), 2) == 0)
        .unwrap()
        .into_bytes()
}

fn append(log: &Log, n: usize) -> Vec<u64> {
    let msgs = (0..n)
        .map(|i| NewMessage {
            publisher: publisher0(),
            topic: format!("t/{}", i % 3),
            qos: 1,
            retain: false,
            properties: Vec::new(),
            payload: vec![i as u8; 40],
            inbound_id: 0,
        })
        .collect();
    log.append_blocking(msgs)
        .unwrap()
        .iter()
        .map(|p| p.offset.0)
        .collect()
}

#[test]
fn counts_add_up_survive_a_reopen_and_go_with_retention() {
    let d = tempfile::tempdir().unwrap();
    let offs;
    {
        let log = Log::open(d.path(), opts(None)).unwrap();
        offs = append(&log, 10);
        let (a, b) = (offs[2], offs[7]);
        // Unordered, with repeats; the first acknowledgement of `a` is reported, `b` gets none.
        let first = log
            .add_counts(0, &mut [(b, 1, 0), (a, 1, 0), (a, 1, 1), (b, 2, 0)])
            .unwrap();
        assert_eq!(first, vec![a]);
        // A second acknowledgement is not a first one.
        assert_eq!(
            log.add_counts(0, &mut [(a, 0, 1), (b, 0, 1)]).unwrap(),
            vec![b]
        );
        assert_eq!(
            log.read_counts(0, &[offs[0], a, b]).unwrap(),
            vec![0, 0, 2, 2, 3, 1]
        );
        // A new generation: counts there go to its own file.
        log.roll_generations().unwrap();
        let more = append(&log, 3);
        log.add_counts(0, &mut [(more[1], 5, 4), (a, 1, 0)])
            .unwrap();
        assert_eq!(
            log.read_counts(0, &[a, more[0], more[1]]).unwrap(),
            vec![3, 2, 0, 0, 5, 4]
        );
        // A shard never counted reads zeros.
        assert_eq!(log.read_counts(1, &[0, 1]).unwrap(), vec![0, 0, 0, 0]);
        log.close();
    }
    // A reopen finds them.
    let log = Log::open(d.path(), opts(Some(1))).unwrap();
    assert_eq!(log.read_counts(0, &[offs[2]]).unwrap(), vec![3, 2]);
    // Retention drops the old generation, its counts with it; adding to a dropped record is ignored.
    log.roll_generations().unwrap();
    sleep(Duration::from_millis(20));
    assert!(log.drop_expired().unwrap() >= 1);
    assert_eq!(log.read_counts(0, &[offs[2]]).unwrap(), vec![0, 0]);
    assert_eq!(
        log.add_counts(0, &mut [(offs[2], 1, 1)]).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(log.read_counts(0, &[offs[2]]).unwrap(), vec![0, 0]);
}

#[test]
fn offsets_read_in_any_order_and_across_generations_give_each_its_own_counts() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts(None)).unwrap();
    let mut offs = append(&log, 20);
    log.roll_generations().unwrap();
    offs.extend(append(&log, 5));
    let mut deltas: Vec<_> = offs.iter().map(|&o| (o, o as u32 + 1, 1)).collect();
    log.add_counts(0, &mut deltas).unwrap();
    // As ids sort as text ("0:10" before "0:2"), with a repeat, a hole and both generations.
    let mut asked: Vec<u64> = offs.clone();
    asked.sort_by_key(|o| o.to_string());
    asked.push(offs[3]);
    asked.push(10_000);
    let got = log.read_counts(0, &asked).unwrap();
    let want: Vec<u32> = asked
        .iter()
        .flat_map(|&o| {
            if o == 10_000 {
                [0, 0]
            } else {
                [o as u32 + 1, 1]
            }
        })
        .collect();
    assert_eq!(got, want);
}
