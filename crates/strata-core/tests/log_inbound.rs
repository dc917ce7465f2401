//! `find_inbound`: a publisher's QoS 2 PUBLISH found again by its packet id, across segments,
//! generations and a reopen; the id travels with the record through every reader.
use strata_core::log::{
    find_inbound, find_published, scan, Log, NewMessage, Options, ScanFilter, ScanLimits,
};

fn msg(publisher: &str, i: u32, inbound_id: u16) -> NewMessage {
    NewMessage {
        publisher: publisher.as_bytes().to_vec(),
        topic: format!("t/{}", i % 5),
        qos: if inbound_id == 0 { 1 } else { 2 },
        retain: false,
        properties: Vec::new(),
        payload: i.to_le_bytes().to_vec(),
        inbound_id,
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

#[test]
fn finds_the_record_of_a_pending_inbound_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    // Packet ids are reused as real clients reuse them: id 1 again and again, two publishers.
    let mut batch = Vec::new();
    for i in 0..400u32 {
        let publisher = if i % 2 == 0 { "a" } else { "b" };
        let id = if i % 10 == 3 {
            1
        } else if i % 10 == 8 {
            7
        } else {
            0
        };
        batch.push(msg(publisher, i, id));
    }
    let pos = log.append_blocking(batch).unwrap();
    log.roll_generations().unwrap();
    let late = log.append_blocking(vec![msg("a", 1000, 9)]).unwrap()[0]
        .offset
        .0;

    // i = 3, 13, 23, … are publisher "b" with id 1; i = 8, 18, … publisher "a" with id 7.
    let off = |i: usize| pos[i].offset.0;
    assert_eq!(find_inbound(&log, 0, 0, b"b", 1).unwrap(), Some(off(3)));
    assert_eq!(
        find_inbound(&log, 0, off(3) + 1, b"b", 1).unwrap(),
        Some(off(13))
    );
    assert_eq!(
        find_inbound(&log, 0, off(393), b"b", 1).unwrap(),
        Some(off(393))
    );
    assert_eq!(find_inbound(&log, 0, off(393) + 1, b"b", 1).unwrap(), None);
    assert_eq!(
        find_inbound(&log, 0, 0, b"a", 1).unwrap(),
        None,
        "another publisher's id"
    );
    assert_eq!(
        find_inbound(&log, 0, off(200), b"a", 7).unwrap(),
        Some(off(208))
    );
    assert_eq!(
        find_inbound(&log, 0, 0, b"a", 9).unwrap(),
        Some(late),
        "in a later generation"
    );
    assert!(find_inbound(&log, 0, 0, b"a", 0).is_err());
    assert!(find_inbound(&log, 1, 0, b"a", 1).is_err());
    drop(log);

    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(
        find_inbound(&log, 0, off(100), b"b", 1).unwrap(),
        Some(off(103))
    );
    assert_eq!(find_inbound(&log, 0, late + 1, b"a", 9).unwrap(), None);
    // Readers see the same message: the id is not part of what is delivered.
    let b = scan(
        &log,
        0,
        off(3),
        &[ScanFilter {
            filter: "t/3".into(),
            start: 0,
        }],
        ScanLimits {
            max_entries: 1,
            ..ScanLimits::default()
        },
    )
    .unwrap();
    assert_eq!(b.len(), 1);
    let e = b.entry(0).unwrap();
    assert_eq!(e.offset, off(3));
    assert_eq!(e.payload, 3u32.to_le_bytes());
}

#[test]
fn find_published_finds_a_publishers_first_record_from_an_offset_whatever_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let batch: Vec<NewMessage> = (0..300u32)
        .map(|i| msg(if i < 200 { "other" } else { "will-client" }, i, 0))
        .collect();
    let pos = log.append_blocking(batch).unwrap();
    // A will (id 0) published from offset 100 on: its record, not an earlier one of others.
    assert_eq!(
        find_published(&log, 0, 100, b"will-client").unwrap(),
        Some(pos[200].offset.0)
    );
    assert_eq!(
        find_published(&log, 0, pos[250].offset.0, b"will-client").unwrap(),
        Some(pos[250].offset.0)
    );
    // From past the end, or for a publisher with no record there: none.
    assert_eq!(find_published(&log, 0, 300, b"will-client").unwrap(), None);
    assert_eq!(find_published(&log, 0, 0, b"nobody").unwrap(), None);
    // A record with a packet id counts too; a shard out of range is an error.
    let q2 = log.append_blocking(vec![msg("q2-client", 1, 5)]).unwrap()[0];
    assert_eq!(
        find_published(&log, 0, 0, b"q2-client").unwrap(),
        Some(q2.offset.0)
    );
    assert!(find_published(&log, 3, 0, b"q2-client").is_err());
}
