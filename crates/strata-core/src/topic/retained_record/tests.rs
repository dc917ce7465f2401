use super::*;

fn record(qos: u8, publisher: &[u8], props: &[u8], payload: &[u8]) -> Box<[u8]> {
    let mut r = vec![RECORD_VERSION, qos];
    r.extend_from_slice(&1234u64.to_le_bytes());
    r.extend_from_slice(&(publisher.len() as u16).to_le_bytes());
    r.extend_from_slice(&(props.len() as u32).to_le_bytes());
    r.extend_from_slice(publisher);
    r.extend_from_slice(props);
    r.extend_from_slice(payload);
    r.into_boxed_slice()
}

#[test]
fn records_are_checked() {
    assert!(is_record(&record(1, b"pub", b"", b"x")));
    assert!(is_record(&record(2, b"", b"{}", b"")));
    let r = record(1, b"pub", b"props", b"");
    assert!(!is_record(&r[..r.len() - 1]), "properties cut short");
    let mut bad = record(1, b"p", b"", b"x").to_vec();
    bad[RECORD_QOS] = 3;
    assert!(!is_record(&bad));
    bad[0] = 0;
    assert!(!is_record(&bad), "the earlier layout starts with 0");
}

#[test]
fn matches_are_packed_with_their_topics() {
    let mut t = RetainedMessages::new();
    t.insert("a/b", record(1, b"p", b"", b"one")).unwrap();
    t.insert("a/c", record(0, b"q", b"", b"two")).unwrap();
    t.insert("b", record(0, b"q", b"", b"three")).unwrap();
    let (buf, offsets) = pack_matches(&t, "a/+").unwrap();
    assert_eq!(offsets.len(), 3);
    let mut seen = Vec::new();
    for w in offsets.windows(2) {
        let e = &buf[w[0] as usize..w[1] as usize];
        let tl = u16::from_le_bytes([e[0], e[1]]) as usize;
        let topic = std::str::from_utf8(&e[2..2 + tl]).unwrap().to_owned();
        let rec = &e[2 + tl..];
        assert!(is_record(rec));
        assert_eq!(rec, &**t.get(&topic).unwrap());
        seen.push(topic);
    }
    seen.sort();
    assert_eq!(seen, ["a/b", "a/c"]);
    // Replacing and taking return the values.
    assert!(t
        .insert("a/b", record(2, b"p", b"", b"new"))
        .unwrap()
        .is_some());
    assert_eq!(&t.take("a/b").unwrap()[RECORD_HEADER + 1..], b"new");
    assert!(t.take("a/b").is_none());
    assert_eq!(t.len(), 2);
}
