//! Property test: random append / read / roll / restart sequences agree with an
//! in-memory model of what was acknowledged.
use proptest::prelude::*;
use std::collections::BTreeMap;
use strata_core::log::{FsyncPolicy, Log, NewMessage, Options, ReadStatus};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, u8, Vec<u8>)>),
    Read(usize),
    Roll,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(
            (0u8..5, 0u8..8, prop::collection::vec(any::<u8>(), 0..200)),
            1..6
        )
        .prop_map(Op::Append),
        2 => (1usize..50).prop_map(Op::Read),
        1 => Just(Op::Roll),
        1 => Just(Op::Restart),
    ]
}

fn topic(t: u8) -> String {
    // Several levels so LTS learns a wildcard (threshold 2 below).
    format!(
        "site/{}/dev{}/{}",
        t % 2,
        t,
        if t.is_multiple_of(3) { "temp" } else { "hum" }
    )
}

fn options() -> Options {
    Options {
        n_shards: Some(2),
        fsync: FsyncPolicy::None,
        segment_bytes: 4096,
        index_interval: 128,
        lts_threshold: 2,
        retention_ms: None,
        ..Options::default()
    }
}

type Model = BTreeMap<(u32, u64), (Vec<u8>, String, Vec<u8>)>;

/// Reads everything with batch size `batch` and checks it equals the model.
fn check(log: &Log, model: &Model, batch: usize) {
    let mut got: Model = BTreeMap::new();
    for s in log.streams("#") {
        let mut c = log.cursor(s.id, Some("#".into()));
        let mut last = None;
        loop {
            let r = log
                .read(&mut c, batch, &mut |r| {
                    assert!(
                        last < Some(r.offset),
                        "offsets must increase within a stream"
                    );
                    last = Some(r.offset);
                    let k = (s.id.shard, r.offset);
                    let v = (
                        r.publisher.to_vec(),
                        String::from_utf8(r.topic.to_vec()).unwrap(),
                        r.payload.to_vec(),
                    );
                    assert!(got.insert(k, v).is_none(), "record delivered twice");
                })
                .unwrap();
            assert!(r.delivered <= batch);
            assert_eq!(r.skipped, 0);
            if r.status != ReadStatus::Next {
                break;
            }
        }
    }
    assert_eq!(&got, model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn log_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), options()).unwrap();
        let mut model: Model = BTreeMap::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(msgs) => {
                    let msgs: Vec<NewMessage> = msgs
                        .into_iter()
                        .map(|(p, t, payload)| NewMessage {
                            publisher: format!("client-{p}").into_bytes(),
                            topic: topic(t),
                            qos: p % 3,
                            retain: false,
                            properties: Vec::new(),
                            payload,
                            inbound_id: 0,
                        })
                        .collect();
                    let pos = log.append_blocking(msgs.clone()).unwrap();
                    for (m, p) in msgs.into_iter().zip(pos) {
                        let n = next.entry(p.shard).or_insert(0);
                        prop_assert_eq!(p.offset.0, *n, "offsets are gap-free per shard");
                        *n += 1;
                        model.insert((p.shard, p.offset.0), (m.publisher, m.topic, m.payload));
                    }
                }
                Op::Read(batch) => check(&log, &model, batch),
                Op::Roll => log.roll_generations().unwrap(),
                Op::Restart => {
                    drop(log);
                    log = Log::open(d.path(), options()).unwrap();
                    prop_assert_eq!(log.recovery().truncated_bytes, 0);
                    prop_assert!(log.recovery().quarantined.is_empty());
                }
            }
        }
        check(&log, &model, 7);
        let stats = log.stats();
        prop_assert_eq!(stats.records, model.len() as u64);
    }
}
