use super::*;

fn msg() -> NewMessage {
    NewMessage {
        publisher: b"client-1".to_vec(),
        topic: "a/b/c".into(),
        qos: 1,
        retain: true,
        properties: vec![1, 2, 3],
        payload: vec![7; 64],
        inbound_id: 0,
    }
}

#[test]
fn inbound_id_roundtrips_and_is_checked() {
    let m = NewMessage {
        inbound_id: 0xbeef,
        ..msg()
    };
    let mut buf = Vec::new();
    encode(&mut buf, 0, 0, 7, &m.view());
    let (r, _) = decode(&buf, 0, 0).unwrap();
    assert_eq!(r.inbound_id, 0xbeef);
    assert_eq!(r.stream, 7);
    assert_eq!(r.payload, &[7; 64][..]);
    let mut plain = Vec::new();
    encode(&mut plain, 0, 0, 7, &msg().view());
    assert_eq!(decode(&plain, 0, 0).unwrap().0.inbound_id, 0);
    assert_eq!(buf.len(), plain.len() + 2);
}

#[test]
fn roundtrip() {
    let mut buf = Vec::new();
    let n = encode(&mut buf, 5, 9, 300, &msg().view());
    assert_eq!(n, buf.len());
    let (r, len) = decode(&buf, 100, 1000).unwrap();
    assert_eq!(len, n);
    assert_eq!(r.offset, 105);
    assert_eq!(r.timestamp, 1009);
    assert_eq!(r.stream, 300);
    assert_eq!(r.qos, 1);
    assert!(r.retain);
    assert_eq!(r.publisher, b"client-1");
    assert_eq!(r.topic, b"a/b/c");
    assert_eq!(r.properties, &[1, 2, 3]);
    assert_eq!(r.payload, &[7; 64][..]);
}

#[test]
fn every_flipped_byte_is_detected() {
    let mut buf = Vec::new();
    encode(&mut buf, 0, 0, 0, &msg().view());
    for i in 0..buf.len() {
        let mut b = buf.clone();
        b[i] ^= 0x10;
        assert!(decode(&b, 0, 0).is_err(), "flip at {i} undetected");
    }
}

#[test]
fn truncation_is_incomplete_and_zeros_are_corrupt() {
    let mut buf = Vec::new();
    encode(&mut buf, 0, 0, 0, &msg().view());
    for cut in 0..buf.len() {
        assert_eq!(
            decode(&buf[..cut], 0, 0).unwrap_err(),
            FrameError::Incomplete
        );
    }
    assert_eq!(decode(&[0u8; 64], 0, 0).unwrap_err(), FrameError::Corrupt);
}
