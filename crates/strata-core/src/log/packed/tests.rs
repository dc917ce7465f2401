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
