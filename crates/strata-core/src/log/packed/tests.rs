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
    assert_eq!((b[QOS], b[RETAIN]), (2, 1));
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
