use super::*;

fn sample() -> Progress {
    Progress {
        next: vec![5.0, 7.0],
        excess: 1,
        backlog: 3.0,
        backlog_bytes: 300.0,
        gaps: vec![
            Gap {
                shard: 1,
                from: 10.0,
                to: None,
            },
            Gap {
                shard: 0,
                from: 2.0,
                to: Some(4.0),
            },
        ],
        entries: vec![
            Entry {
                shard: 1,
                offset: 4.0,
                packet_id: 9,
                qos: 1,
                phase: PHASE_PUBLISH_SENT,
                flags: FLAG_RETAIN | FLAG_PINNED,
                sub_ids: vec![42, 7],
                retained_topic: None,
            },
            Entry {
                shard: 0,
                offset: 0.0,
                packet_id: 0,
                qos: 2,
                phase: PHASE_QUEUED,
                flags: 0,
                sub_ids: Vec::new(),
                retained_topic: Some("a/b".into()),
            },
        ],
    }
}

/// The record as src/session/progress.ts writes it, field by field with literal offsets.
fn written_as_typescript_does(p: &Progress) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let mut o = 0;
    b[o] = 2;
    b[o + 1..o + 3].copy_from_slice(&(p.next.len() as u16).to_be_bytes());
    o += 3;
    for x in &p.next {
        b[o..o + 8].copy_from_slice(&x.to_be_bytes());
        o += 8;
    }
    b[o..o + 4].copy_from_slice(&p.excess.to_be_bytes());
    b[o + 4..o + 12].copy_from_slice(&p.backlog.to_be_bytes());
    b[o + 12..o + 20].copy_from_slice(&p.backlog_bytes.to_be_bytes());
    b[o + 20..o + 22].copy_from_slice(&(p.gaps.len() as u16).to_be_bytes());
    o += 22;
    for g in &p.gaps {
        b[o..o + 2].copy_from_slice(&g.shard.to_be_bytes());
        b[o + 2..o + 10].copy_from_slice(&g.from.to_be_bytes());
        b[o + 10..o + 18].copy_from_slice(&g.to.unwrap_or(-1.0).to_be_bytes());
        o += 18;
    }
    b[o..o + 4].copy_from_slice(&(p.entries.len() as u32).to_be_bytes());
    o += 4;
    for e in &p.entries {
        b[o..o + 2].copy_from_slice(&e.shard.to_be_bytes());
        b[o + 2..o + 10].copy_from_slice(&e.offset.to_be_bytes());
        b[o + 10..o + 12].copy_from_slice(&e.packet_id.to_be_bytes());
        b[o + 12] = e.qos;
        b[o + 13] = e.phase;
        b[o + 14] = e.flags | if e.retained_topic.is_some() { 4 } else { 0 };
        b[o + 15] = e.sub_ids.len() as u8;
        o += 16;
        for id in &e.sub_ids {
            b[o..o + 4].copy_from_slice(&id.to_be_bytes());
            o += 4;
        }
        if let Some(t) = &e.retained_topic {
            b[o..o + 2].copy_from_slice(&(t.len() as u16).to_be_bytes());
            b[o + 2..o + 2 + t.len()].copy_from_slice(t.as_bytes());
            o += 2 + t.len();
        }
    }
    b.truncate(o);
    b
}

#[test]
fn encode_matches_the_typescript_writer_and_decodes_back() {
    let p = sample();
    let b = encode(&p).unwrap();
    assert_eq!(b, written_as_typescript_does(&p));
    assert_eq!(decode(&b).unwrap(), p);
}

#[test]
fn constants_name_the_offsets_the_writer_uses() {
    assert_eq!((VERSION, VERSION_NO_BACKLOG), (2, 1));
    assert_eq!((SHARD_COUNT, NEXT, NEXT_BYTES), (1, 3, 8));
    assert_eq!(
        (EXCESS, BACKLOG, BACKLOG_BYTES, GAP_COUNT, HEAD_TAIL_BYTES),
        (0, 4, 12, 20, 22)
    );
    assert_eq!((GAP_BYTES, GAP_SHARD, GAP_FROM, GAP_TO), (18, 0, 2, 10));
    assert_eq!(GAP_OPEN, -1.0);
    assert_eq!(
        (
            ENTRY_BYTES,
            ENTRY_SHARD,
            ENTRY_OFFSET,
            ENTRY_PACKET_ID,
            ENTRY_QOS,
            ENTRY_PHASE,
            ENTRY_FLAGS,
            ENTRY_SUB_ID_COUNT
        ),
        (16, 0, 2, 10, 12, 13, 14, 15)
    );
    assert_eq!(
        (SUB_ID_BYTES, TOPIC_LEN_BYTES, ENTRY_COUNT_BYTES),
        (4, 2, 4)
    );
    assert_eq!((FLAG_RETAIN, FLAG_PINNED, FLAG_RETAINED_MESSAGE), (1, 2, 4));
    assert_eq!(
        (PHASE_QUEUED, PHASE_PUBLISH_SENT, PHASE_PUBREL_SENT),
        (0, 1, 2)
    );
}

#[test]
fn version_1_has_no_backlog_counts() {
    let mut b = vec![1, 0, 1];
    b.extend_from_slice(&9.0f64.to_be_bytes());
    b.extend_from_slice(&3u32.to_be_bytes()); // excess
    b.extend_from_slice(&0u16.to_be_bytes()); // gaps
    b.extend_from_slice(&0u32.to_be_bytes()); // entries
    let p = decode(&b).unwrap();
    assert_eq!(p.next, vec![9.0]);
    assert_eq!((p.excess, p.backlog, p.backlog_bytes), (3, 0.0, 0.0));
}

#[test]
fn what_is_not_a_record_is_refused() {
    let b = encode(&sample()).unwrap();
    assert!(decode(&b[..b.len() - 1]).is_err(), "truncated");
    let mut longer = b.clone();
    longer.push(0);
    assert!(decode(&longer).is_err(), "trailing bytes");
    let mut v3 = b;
    v3[0] = 3;
    assert!(decode(&v3).is_err(), "unknown version");
    assert!(decode(&[]).is_err());
}
