use super::*;

fn msg(publisher: &str, topic: &str, payload: &[u8], inbound_id: u16) -> NewMessage {
    NewMessage {
        publisher: publisher.as_bytes().to_vec(),
        topic: topic.into(),
        qos: 2,
        retain: true,
        properties: vec![1, 2, 3],
        payload: payload.to_vec(),
        inbound_id,
    }
}

#[test]
fn pack_then_unpack_gives_the_messages_back() {
    let msgs = vec![msg("pub", "a/b", b"hello", 7), msg("", "c", b"", 0)];
    let b = pack(&msgs);
    assert_eq!(b.len(), 2 * HEADER + 3 + 3 + 3 + 5 + 1 + 3);
    assert_eq!(unpack(&b, 2).unwrap(), msgs);
}

#[test]
fn the_header_is_laid_out_as_documented() {
    let b = pack(&[msg("pq", "t/x", b"12345", 0x0102)]);
    assert_eq!(&b[PUBLISHER_LEN..PUBLISHER_LEN + 2], &[2, 0]);
    assert_eq!(&b[TOPIC_LEN..TOPIC_LEN + 2], &[3, 0]);
    assert_eq!(&b[PROPERTIES_LEN..PROPERTIES_LEN + 4], &[3, 0, 0, 0]);
    assert_eq!(&b[PAYLOAD_LEN..PAYLOAD_LEN + 4], &[5, 0, 0, 0]);
    assert_eq!((b[QOS], b[FLAGS]), (2, FLAG_RETAIN));
    assert_eq!(&b[INBOUND_ID..INBOUND_ID + 2], &[2, 1]);
    assert_eq!(&b[HEADER..HEADER + 2], b"pq");
}

#[test]
fn a_buffer_that_is_not_count_messages_is_refused() {
    let b = pack(&[msg("p", "a", b"x", 0)]);
    let err = |r: Result<Vec<NewMessage>, CoreError>| r.unwrap_err().to_string();
    assert!(err(unpack(&b[..b.len() - 1], 1)).contains("truncated"));
    assert!(err(unpack(&b, 2)).contains("truncated"));
    assert!(err(unpack(&b, 0)).contains("bytes left"));
    let mut bad_topic = b.clone();
    bad_topic[HEADER + 1] = 0xff;
    assert!(err(unpack(&bad_topic, 1)).contains("UTF-8"));
}

#[test]
fn split_gives_each_shard_its_messages_in_order_with_their_indexes() {
    let msgs: Vec<NewMessage> = (0..40)
        .map(|i| {
            msg(
                &format!("pub-{}", i % 7),
                &format!("t/{i}"),
                &[i as u8; 3],
                i as u16,
            )
        })
        .collect();
    let b = pack(&msgs);
    for split in [
        Split::packed(&b, msgs.len(), 4).unwrap(),
        Split::of(&msgs, 4),
    ] {
        assert_eq!(split.total, msgs.len());
        let mut seen = vec![false; msgs.len()];
        let mut last_shard = None;
        for (shard, idx, ms) in &split.groups {
            assert!(last_shard < Some(*shard), "shards ascending");
            last_shard = Some(*shard);
            assert_eq!(idx.len(), ms.len());
            assert!(idx.windows(2).all(|w| w[0] < w[1]));
            for (i, m) in idx.iter().zip(ms.iter()) {
                assert_eq!(shard_of(m.publisher, 4), *shard);
                assert_eq!(m, msgs[*i].view());
                seen[*i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}

#[test]
fn split_refuses_what_unpack_refuses() {
    let b = pack(&[msg("p", "a", b"x", 0)]);
    let err = |r: Result<Split, CoreError>| r.unwrap_err().to_string();
    assert!(err(Split::packed(&b[..b.len() - 1], 1, 4)).contains("truncated"));
    assert!(err(Split::packed(&b, 2, 4)).contains("truncated"));
    assert!(err(Split::packed(&b, 0, 4)).contains("bytes left"));
    let mut bad_topic = b.clone();
    bad_topic[HEADER + 1] = 0xff;
    assert!(err(Split::packed(&bad_topic, 1, 4)).contains("UTF-8"));
}

#[test]
fn a_repeated_publisher_or_topic_is_packed_once() {
    let msgs = vec![
        msg("pub", "a/b", b"1", 0),
        msg("pub", "a/b", b"2", 0),
        msg("pub", "c", b"3", 0),
        msg("other", "c", b"4", 0),
    ];
    let b = pack(&msgs);
    assert_eq!(
        b.len(),
        // Publishers "pub" and "other", topics "a/b" and "c", once each; four times three property
        // bytes and a one-byte payload.
        4 * HEADER + (3 + 5) + (3 + 1) + 4 * (3 + 1)
    );
    let flags: Vec<u8> = {
        let mut at = 0;
        let mut out = Vec::new();
        for m in &msgs {
            out.push(b[at + FLAGS]);
            let h = &b[at..at + HEADER];
            at += HEADER
                + u16_at(h, PUBLISHER_LEN) as usize
                + u16_at(h, TOPIC_LEN) as usize
                + m.properties.len()
                + m.payload.len();
        }
        out
    };
    let r = FLAG_RETAIN;
    assert_eq!(
        flags,
        [
            r,
            r | FLAG_SAME_PUBLISHER | FLAG_SAME_TOPIC,
            r | FLAG_SAME_PUBLISHER,
            r | FLAG_SAME_TOPIC
        ]
    );
    assert_eq!(unpack(&b, 4).unwrap(), msgs);
}

#[test]
fn a_first_message_that_repeats_a_previous_one_is_refused() {
    for flag in [FLAG_SAME_PUBLISHER, FLAG_SAME_TOPIC] {
        let mut b = pack(&[msg("", "", b"x", 0)]);
        b[FLAGS] |= flag;
        let e = unpack(&b, 1).unwrap_err().to_string();
        assert!(e.contains("repeats a previous"), "{e}");
        let e = Split::packed(&b, 1, 4).unwrap_err().to_string();
        assert!(e.contains("repeats a previous"), "{e}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Packed with repeats left out, a random sequence (publishers and topics drawn from a
    /// few, so runs and alternations both occur) comes back whole, from `unpack` and split.
    #[test]
    fn what_is_packed_comes_back(seq in proptest::collection::vec((0u8..3, 0u8..3, 0u8..4), 0..40)) {
        let msgs: Vec<NewMessage> = seq
            .iter()
            .map(|(p, t, n)| msg(["p", "", "pp"][*p as usize], ["a/b", "a", ""][*t as usize], &vec![*n; *n as usize], u16::from(*n)))
            .collect();
        let b = pack(&msgs);
        proptest::prop_assert_eq!(unpack(&b, msgs.len()).unwrap(), msgs.clone());
        let split = Split::packed(&b, msgs.len(), 3).unwrap();
        for (_, idx, ms) in &split.groups {
            for (i, m) in idx.iter().zip(ms.iter()) {
                proptest::prop_assert_eq!(m, msgs[*i].view());
            }
        }
    }
}
