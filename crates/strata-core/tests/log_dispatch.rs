//! `Log::append_packed`: packed bytes handed over whole and split by shard on the log's
//! dispatch thread. Positions come back in input order across shards, as `append` gives them;
//! a malformed buffer fails through the completion and writes nothing; every command keeps the
//! order it was given in (a flush after appends completes after them); appends queued when
//! the log closes are written before it stops, and a closed log refuses.
use std::sync::mpsc;
use strata_core::error::CoreError;
use strata_core::log::{packed, Completes, FsyncPolicy, Log, NewMessage, Options, Position};

fn opts() -> Options {
    Options {
        n_shards: Some(3),
        fsync: FsyncPolicy::None,
        retention_ms: None,
        ..Options::default()
    }
}

fn msgs(from: usize, n: usize) -> Vec<NewMessage> {
    (from..from + n)
        .map(|i| NewMessage {
            publisher: format!("client-{}", i % 7).into_bytes(),
            topic: format!("d/{}", i % 4),
            qos: (i % 3) as u8,
            retain: false,
            properties: Vec::new(),
            payload: format!("m{i}").into_bytes(),
            inbound_id: 0,
        })
        .collect()
}

type Done = mpsc::Receiver<Result<Vec<Position>, CoreError>>;

fn append_packed(log: &Log, m: &[NewMessage], count: usize) -> Done {
    let (tx, rx) = mpsc::sync_channel(1);
    log.append_packed(
        packed::pack(m),
        count,
        Completes::Durable,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx
}

fn payload_at(log: &Log, p: Position) -> String {
    let mut out = String::new();
    log.read_at(&[p], &mut |_, r| {
        out = r
            .map(|r| String::from_utf8_lossy(r.payload).into_owned())
            .unwrap_or_default();
    })
    .unwrap();
    out
}

#[test]
fn positions_in_input_order_across_shards_and_each_holds_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let batch = msgs(0, 200);
    let got = append_packed(&log, &batch, 200).recv().unwrap().unwrap();
    assert_eq!(got.len(), 200);
    let shards: std::collections::HashSet<u32> = got.iter().map(|p| p.shard).collect();
    assert!(shards.len() > 1, "the batch spans shards");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.shard, strata_core::log::shard_of(&batch[i].publisher, 3));
        assert_eq!(payload_at(&log, *p), format!("m{i}"));
    }
    // The same messages through `append` land after, one shard's offsets continuing.
    let again = log.append_blocking(msgs(0, 200)).unwrap();
    for (a, b) in got.iter().zip(&again) {
        assert_eq!(a.shard, b.shard);
        assert!(b.offset.0 > a.offset.0);
    }
}

#[test]
fn a_malformed_buffer_fails_through_the_completion_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let batch = msgs(0, 5);
    let mut bytes = packed::pack(&batch);
    bytes.pop(); // cut short
    let (tx, rx) = mpsc::sync_channel(1);
    log.append_packed(
        bytes,
        5,
        Completes::Durable,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    match rx.recv().unwrap() {
        Err(CoreError::InvalidArgument(m)) => assert!(m.contains("appendPacked"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    // One message too many announced: refused too.
    let r = append_packed(&log, &batch, 6).recv().unwrap();
    assert!(matches!(r, Err(CoreError::InvalidArgument(_))), "{r:?}");
    for s in 0..3 {
        assert_eq!(log.shard_end(s).unwrap(), 0, "shard {s} holds nothing");
    }
    // The log goes on.
    assert_eq!(
        append_packed(&log, &batch, 5)
            .recv()
            .unwrap()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn a_flush_after_appends_completes_after_them_and_close_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        let mut waits = Vec::new();
        for k in 0..20 {
            let o = order.clone();
            let (tx, rx) = mpsc::sync_channel(1);
            log.append_packed(
                packed::pack(&msgs(k * 10, 10)),
                10,
                Completes::Written,
                Box::new(move |r| {
                    o.lock().unwrap().push(format!("append {k}"));
                    let _ = tx.send(r);
                }),
            );
            waits.push(rx);
        }
        log.flush().unwrap();
        order.lock().unwrap().push("flushed".into());
        {
            let o = order.lock().unwrap();
            assert_eq!(o.last().map(String::as_str), Some("flushed"));
            assert_eq!(
                o.len(),
                21,
                "every append completed before the flush returned: {o:?}"
            );
        }
        for w in waits {
            assert_eq!(w.recv().unwrap().unwrap().len(), 10);
        }
        // Queued, then closed at once: written all the same.
        let rxs: Vec<Done> = (0..10)
            .map(|k| append_packed(&log, &msgs(1000 + k * 10, 10), 10))
            .collect();
        log.close();
        for rx in rxs {
            assert_eq!(rx.recv().unwrap().unwrap().len(), 10);
        }
        let r = append_packed(&log, &msgs(0, 1), 1).recv().unwrap();
        assert!(matches!(r, Err(CoreError::Closed(_))), "{r:?}");
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    let total: u64 = (0..3).map(|s| log.shard_end(s).unwrap()).sum();
    assert_eq!(total, 300);
}
