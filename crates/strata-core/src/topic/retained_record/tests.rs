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
    let (topics, topic_offsets) = pack_topics(&t, "a/+").unwrap();
    let (buf, offsets) =
        pack_records(&t, &topics, &topic_offsets, 0, topic_offsets.len() - 1).unwrap();
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

#[test]
fn topics_then_records_page_by_page_and_see_changes_made_meanwhile() {
    let mut t = RetainedMessages::new();
    for i in 0..10 {
        t.insert(
            &format!("d/{i}"),
            record(0, b"p", b"", format!("v{i}").as_bytes()),
        )
        .unwrap();
    }
    t.insert("other", record(0, b"p", b"", b"x")).unwrap();
    let (topics, offsets) = pack_topics(&t, "d/#").unwrap();
    assert_eq!(offsets.len(), 11);
    let names: Vec<String> = offsets
        .windows(2)
        .map(|w| String::from_utf8(topics[w[0] as usize..w[1] as usize].to_vec()).unwrap())
        .collect();
    // Between pages: one topic cleared, one set again.
    let gone = names[7].clone();
    t.take(&gone);
    let changed = names[8].clone();
    t.insert(&changed, record(1, b"p", b"", b"new")).unwrap();
    let mut seen = Vec::new();
    for (from, to) in [(0, 4), (4, 8), (8, 10), (10, 10)] {
        let (buf, offs) = pack_records(&t, &topics, &offsets, from, to).unwrap();
        for w in offs.windows(2) {
            let e = &buf[w[0] as usize..w[1] as usize];
            let tl = u16::from_le_bytes([e[0], e[1]]) as usize;
            let topic = std::str::from_utf8(&e[2..2 + tl]).unwrap().to_owned();
            assert!(is_record(&e[2 + tl..]));
            if topic == changed {
                assert!(e.ends_with(b"new"), "the record as it is now");
            }
            seen.push(topic);
        }
    }
    let mut want: Vec<String> = names.iter().filter(|n| **n != gone).cloned().collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    assert!(pack_records(&t, &topics, &offsets, 5, 11).is_err());
    assert!(pack_records(&t, &topics, &offsets, 6, 5).is_err());
    let bad = [0u32, 3, 999];
    assert!(
        pack_records(&t, &topics, &bad, 0, 2).is_err(),
        "an offset past the buffer"
    );
}
