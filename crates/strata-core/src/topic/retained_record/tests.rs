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

/// Parse `frames` as QoS 0 PUBLISH packets: (first byte, topic, payload) each.
fn parse_frames(mut f: &[u8], v5: bool) -> Vec<(u8, String, Vec<u8>)> {
    let mut out = Vec::new();
    while !f.is_empty() {
        let first = f[0];
        let (mut len, mut mul, mut i) = (0usize, 1usize, 1usize);
        loop {
            let b = f[i];
            len += usize::from(b & 0x7f) * mul;
            mul *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let body = &f[i..i + len];
        let tl = u16::from_be_bytes([body[0], body[1]]) as usize;
        let topic = String::from_utf8(body[2..2 + tl].to_vec()).unwrap();
        let mut at = 2 + tl;
        if v5 {
            assert_eq!(body[at], 0, "no properties");
            at += 1;
        }
        out.push((first, topic, body[at..].to_vec()));
        f = &f[i + len..];
    }
    out
}

#[test]
fn records_framed_as_qos0_publish_with_retain_set() {
    let mut t = RetainedMessages::new();
    t.insert("a/1", record(1, b"p", b"", b"one")).unwrap();
    t.insert("a/2", record(2, b"p", b"", &[7u8; 300])).unwrap();
    t.insert("a/3", record(0, b"p", b"", b"")).unwrap();
    let (topics, offs) = pack_topics(&t, "a/#").unwrap();
    for v5 in [false, true] {
        let p = frame_records(&t, &topics, &offs, 0, 3, 0, v5, usize::MAX).unwrap();
        assert_eq!((p.sent, p.too_large, p.special_offsets.len()), (3, 0, 1));
        let mut got = parse_frames(&p.frames, v5);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(got[0], (0x31, "a/1".into(), b"one".to_vec()));
        assert_eq!(
            got[1],
            (0x31, "a/2".into(), vec![7u8; 300]),
            "a 2-byte Remaining Length"
        );
        assert_eq!(got[2], (0x31, "a/3".into(), vec![]));
    }
}

#[test]
fn framing_leaves_out_too_large_and_cleared_and_returns_the_others() {
    let mut t = RetainedMessages::new();
    for i in 0..6 {
        let props: &[u8] = if i == 3 { b"\x02\x00\x00\x00\x0a" } else { b"" };
        let payload = if i == 1 { vec![1u8; 100] } else { vec![b'x'] };
        let qos = if i == 4 { 1 } else { 0 };
        t.insert(&format!("k/{i}"), record(qos, b"p", props, &payload))
            .unwrap();
    }
    t.take("k/5"); // cleared after the topics were taken: left out
    let (topics, offs) = pack_topics(&t, "k/+").unwrap();
    t.insert("k/6", record(0, b"p", b"", b"late")).unwrap();
    let (topics6, offs6) = pack_topics(&t, "k/+").unwrap();
    t.take("k/6");
    assert_eq!(offs.len(), 6);
    let specials = |p: &RetainedFrames| -> Vec<String> {
        let mut v: Vec<String> = p
            .special_offsets
            .windows(2)
            .map(|w| {
                let e = &p.special[w[0] as usize..w[1] as usize];
                let tl = u16::from_le_bytes([e[0], e[1]]) as usize;
                assert!(is_record(&e[2 + tl..]));
                String::from_utf8(e[2..2 + tl].to_vec()).unwrap()
            })
            .collect();
        v.sort();
        v
    };
    let names = |p: &RetainedFrames| -> Vec<String> {
        let mut v: Vec<String> = parse_frames(&p.frames, false)
            .into_iter()
            .map(|f| f.1)
            .collect();
        v.sort();
        v
    };
    // Subscribed at QoS 0: only the one with properties is not framed; k/1 is too large.
    let p = frame_records(&t, &topics, &offs, 0, 5, 0, false, 50).unwrap();
    assert_eq!(specials(&p), ["k/3"]);
    assert_eq!((p.sent, p.too_large), (3, 1));
    assert_eq!(names(&p), ["k/0", "k/2", "k/4"]);
    // At QoS 1: the QoS 1 message is delivered at QoS 1, by the caller.
    let p = frame_records(&t, &topics, &offs, 0, 5, 1, false, 50).unwrap();
    assert_eq!(specials(&p), ["k/3", "k/4"]);
    assert_eq!(names(&p), ["k/0", "k/2"]);
    // A page at a time covers the same.
    let mut all = Vec::new();
    for at in 0..5 {
        all.extend(names(
            &frame_records(&t, &topics, &offs, at, at + 1, 0, false, 50).unwrap(),
        ));
    }
    all.sort();
    assert_eq!(all, ["k/0", "k/2", "k/4"]);
    // A topic taken then cleared: nothing.
    let p = frame_records(&t, &topics6, &offs6, 0, 6, 0, false, usize::MAX).unwrap();
    assert_eq!(p.sent, 4);
    assert!(
        frame_records(&t, &topics, &offs, 4, 6, 0, false, 50).is_err(),
        "a range past the topics"
    );
}

#[test]
fn packed_retained_writes_are_applied_in_order_and_bad_ones_skipped() {
    use crate::meta::packed_ops::pack;
    use crate::meta::Op;
    let put = |t: &str, payload: &[u8]| {
        Op::Put(
            Table::Retained,
            t.as_bytes().to_vec(),
            record(1, b"p", b"", payload).into_vec(),
        )
    };
    let del = |t: &str| Op::Delete(Table::Retained, t.as_bytes().to_vec());
    let mut t = RetainedMessages::new();
    // A set, a clear and a set again of one topic in one batch: the last wins.
    let ops = pack(&[
        put("a/1", b"x"),
        put("a/2", b"y"),
        del("a/1"),
        put("a/3", b"z"),
        del("a/3"),
        put("a/3", b"w"),
        del("never/set"),
    ]);
    assert_eq!(apply_packed(&mut t, &ops).unwrap(), 7);
    assert_eq!(t.len(), 2);
    assert!(t.get("a/1").is_none());
    assert_eq!(
        t.get("a/3").map(|r| r.to_vec()),
        Some(record(1, b"p", b"", b"w").into_vec())
    );
    // Not a record, another table, a wildcard or non-UTF-8 topic: skipped, the others applied.
    let mixed = pack(&[
        put("b/1", b"1"),
        Op::Put(Table::Retained, b"b/2".to_vec(), vec![9, 9]),
        Op::Put(Table::Sessions, b"b/3".to_vec(), vec![]),
        put("b/+", b"1"),
        Op::Put(
            Table::Retained,
            vec![0xff, 0xfe],
            record(0, b"", b"", b"1").into_vec(),
        ),
        put("b/4", b"4"),
    ]);
    assert_eq!(apply_packed(&mut t, &mixed).unwrap(), 2);
    assert!(t.get("b/1").is_some() && t.get("b/4").is_some());
    assert!(t.get("b/2").is_none() && t.get("b/3").is_none());
    // Bytes that do not fit the layout: an error, what came before applied.
    let mut cut = pack(&[put("c/1", b"1")]);
    cut.extend_from_slice(&[0, 4, 9]);
    assert!(apply_packed(&mut t, &cut).is_err(), "cut short");
    assert!(t.get("c/1").is_some());
    assert_eq!(apply_packed(&mut t, &[]).unwrap(), 0);
}
