//! Session replay as PUBLISH frames (`log::replay_frames`): the frames decode to the
//! deliveries a naive model expects (QoS, retain, no-local, subscription starts), in
//! timestamp order across shards; replaying again from `next` neither repeats nor
//! misses one; the replay stops before messages with properties, QoS 2 deliveries and
//! packets larger than the client accepts.
use proptest::prelude::*;
use strata_core::log::{
    replay_frames, shard_of, topic_matches, FsyncPolicy, Log, NewMessage, Options, ReplayOptions,
    ReplayShard, ReplaySub, META_STRIDE, REPLAY_DONE, REPLAY_NEXT, REPLAY_SLOW,
};

fn opts() -> Options {
    Options {
        n_shards: Some(2),
        fsync: FsyncPolicy::None,
        segment_bytes: 4096,
        index_interval: 128,
        retention_ms: None,
        lts_threshold: 4,
        ..Options::default()
    }
}

/// A publisher id that lands in `shard` of 2.
fn publisher(shard: u32, k: usize) -> Vec<u8> {
    (0..)
        .map(|n| format!("pub-{n}"))
        .filter(|c| shard_of(c.as_bytes(), 2) == shard)
        .nth(k)
        .unwrap()
        .into_bytes()
}

fn sub(filter: &str, qos: u8) -> ReplaySub {
    ReplaySub {
        filter: filter.into(),
        qos,
        no_local: false,
        retain_as_published: false,
    }
}

fn ropts(version: u8, max_entries: usize) -> ReplayOptions {
    ReplayOptions {
        version,
        client_id: publisher(0, 0),
        max_entries,
        max_bytes: 4 << 20,
        max_packet: usize::MAX,
    }
}

/// One decoded frame: (shard, offset, qos, retain, topic, payload).
type Got = (u32, u64, u8, bool, String, Vec<u8>);

/// Decodes every frame of a replay, checking the meta table against the bytes.
fn decode(r: &strata_core::log::ReplayFrames, version: u8) -> Vec<Got> {
    assert_eq!(r.meta.len() % META_STRIDE, 0);
    let mut out = Vec::new();
    let mut start = 0usize;
    for m in r.meta.chunks(META_STRIDE) {
        let end = m[3] as usize;
        let f = &r.buf[start..end];
        assert_eq!(f[0] >> 4, 3, "PUBLISH");
        let qos = (f[0] >> 1) & 3;
        let retain = f[0] & 1 == 1;
        let (mut len, mut mult, mut p) = (0usize, 1usize, 1usize);
        loop {
            len += (f[p] & 0x7f) as usize * mult;
            mult *= 128;
            p += 1;
            if f[p - 1] & 0x80 == 0 {
                break;
            }
        }
        assert_eq!(p + len, f.len(), "remaining length");
        let tl = u16::from_be_bytes([f[p], f[p + 1]]) as usize;
        p += 2;
        let topic = String::from_utf8(f[p..p + tl].to_vec()).unwrap();
        p += tl;
        if qos > 0 {
            assert_eq!(m[4] as usize, start + p, "id_pos");
            assert_eq!(&f[p..p + 2], &[0, 0]);
            p += 2;
        } else {
            assert_eq!(m[4], -1.0);
        }
        if version == 5 {
            assert_eq!(f[p], 0, "empty property section");
            p += 1;
        }
        assert_eq!(m[5] as usize, f.len() - p, "payload length");
        out.push((
            m[0] as u32,
            m[1] as u64,
            qos,
            retain,
            topic,
            f[p..].to_vec(),
        ));
        start = end;
    }
    assert_eq!(start, r.buf.len());
    out
}

struct Stored {
    shard: u32,
    offset: u64,
    msg: NewMessage,
}

fn store(log: &Log, msgs: Vec<NewMessage>) -> Vec<Stored> {
    let mut out = Vec::new();
    // One append per message: timestamps follow the order of the list.
    for m in msgs {
        let p = log.append_blocking(vec![m.clone()]).unwrap()[0];
        out.push(Stored {
            shard: p.shard,
            offset: p.offset.0,
            msg: m,
        });
    }
    out
}

fn msg(shard: u32, topic: &str, qos: u8, retain: bool, payload: &[u8]) -> NewMessage {
    NewMessage {
        publisher: publisher(shard, 1),
        topic: topic.into(),
        qos,
        retain,
        properties: Vec::new(),
        payload: payload.to_vec(),
        inbound_id: 0,
    }
}

fn shards(log: &Log, n_subs: usize) -> Vec<ReplayShard> {
    (0..log.n_shards())
        .map(|s| ReplayShard {
            shard: s,
            from: 0,
            until: None,
            starts: vec![0; n_subs],
        })
        .collect()
}

/// Replays to the end in batches of `n`, resuming each shard from its `next`.
fn replay_all(log: &Log, subs: &[ReplaySub], o: &ReplayOptions) -> Vec<Got> {
    let mut sh = shards(log, subs.len());
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let r = replay_frames(log, &sh, subs, o).unwrap();
        got.extend(decode(&r, o.version));
        assert!(!r.status.contains(&REPLAY_SLOW));
        for (i, s) in sh.iter_mut().enumerate() {
            assert!(r.next[i] >= s.from);
            s.from = r.next[i];
        }
        if r.status.iter().all(|&st| st == REPLAY_DONE) {
            return got;
        }
    }
    panic!("replay did not finish");
}

#[test]
fn frames_carry_the_deliveries_in_time_order_across_shards() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let mut msgs = Vec::new();
    for i in 0..300usize {
        let shard = (i % 7 % 2) as u32;
        let topic = format!("t/{}/x", i % 4);
        let payload: Vec<u8> = (0..(i * 13) % 300).map(|k| (k + i) as u8).collect();
        msgs.push(msg(shard, &topic, (i % 2) as u8 + 1, i % 5 == 0, &payload));
    }
    let stored = store(&log, msgs);
    // t/0 at QoS 0, t/1 at QoS 1 with retain as published; t/2 and t/3 not subscribed.
    let mut rap = sub("t/1/+", 1);
    rap.retain_as_published = true;
    let subs = vec![sub("t/0/x", 0), rap, sub("nothing/#", 1)];
    for version in [4u8, 5] {
        for n in [1usize, 7, 1000] {
            let got = replay_all(&log, &subs, &ropts(version, n));
            let want: Vec<Got> = stored
                .iter()
                .filter_map(|s| {
                    let t = s.msg.topic.as_str();
                    let (qos, retain) = if topic_matches("t/0/x", t.as_bytes()) {
                        (0, false)
                    } else if topic_matches("t/1/+", t.as_bytes()) {
                        (1.min(s.msg.qos), s.msg.retain)
                    } else {
                        return None;
                    };
                    Some((
                        s.shard,
                        s.offset,
                        qos,
                        retain,
                        t.to_string(),
                        s.msg.payload.clone(),
                    ))
                })
                .collect();
            assert_eq!(got.len(), want.len(), "v{version} n={n}");
            // Timestamps are per millisecond: compare per shard in offset order, and the
            // whole as a set.
            for shard in 0..2u32 {
                let g: Vec<_> = got.iter().filter(|x| x.0 == shard).collect();
                let w: Vec<_> = want.iter().filter(|x| x.0 == shard).collect();
                assert_eq!(g, w, "v{version} n={n} shard {shard}");
            }
        }
    }
}

#[test]
fn the_highest_matching_qos_wins_and_starts_hold() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let stored = store(
        &log,
        (0..10).map(|i| msg(0, "a/b", 1, false, &[i])).collect(),
    );
    let s0 = stored[0].shard as usize;
    let subs = vec![sub("a/+", 0), sub("a/b", 1)];
    let mut sh = shards(&log, 2);
    // The QoS 1 subscription was made at the 6th message.
    sh[s0].starts = vec![0, stored[5].offset];
    let r = replay_frames(&log, &sh, &subs, &ropts(4, 100)).unwrap();
    let got = decode(&r, 4);
    let qos: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(qos, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    assert!(r.status.iter().all(|&s| s == REPLAY_DONE));
}

#[test]
fn no_local_skips_the_sessions_own_messages_and_moves_past_them() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let own = publisher(0, 0);
    let mut msgs: Vec<NewMessage> = (0..6).map(|i| msg(0, "n/x", 1, false, &[i])).collect();
    for m in msgs.iter_mut().step_by(2) {
        m.publisher = own.clone();
    }
    store(&log, msgs);
    let mut nl = sub("n/#", 1);
    nl.no_local = true;
    let got = replay_all(&log, &[nl], &ropts(4, 100));
    let payloads: Vec<u8> = got.iter().map(|g| g.5[0]).collect();
    assert_eq!(payloads, vec![1, 3, 5]);
}

#[test]
fn stops_before_what_the_general_path_must_deliver() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let mut msgs: Vec<NewMessage> = (0..9).map(|i| msg(1, "s/x", 1, false, &[i; 40])).collect();
    msgs[3].properties = vec![1, 2, 3]; // properties
    msgs[5].qos = 2; // QoS 2 under a QoS 2 subscription
    let stored = store(&log, msgs);
    let s1 = stored[0].shard as usize;
    let subs = vec![sub("s/#", 2)];
    let mut sh = shards(&log, 1);
    let r = replay_frames(&log, &sh, &subs, &ropts(4, 100)).unwrap();
    assert_eq!(decode(&r, 4).len(), 3);
    assert_eq!((r.status[s1], r.next[s1]), (REPLAY_SLOW, stored[3].offset));
    // The general path took the message with properties: on from the next one.
    sh[s1].from = stored[4].offset;
    let r = replay_frames(&log, &sh, &subs, &ropts(4, 100)).unwrap();
    assert_eq!(decode(&r, 4).len(), 1);
    assert_eq!((r.status[s1], r.next[s1]), (REPLAY_SLOW, stored[5].offset));
    // A packet larger than the client accepts (40-byte payload + header > 30).
    sh[s1].from = stored[6].offset;
    let mut small = ropts(4, 100);
    small.max_packet = 30;
    let r = replay_frames(&log, &sh, &subs, &small).unwrap();
    assert!(r.buf.is_empty());
    assert_eq!((r.status[s1], r.next[s1]), (REPLAY_SLOW, stored[6].offset));
    // A limit leaves the rest for the next call.
    let r = replay_frames(&log, &sh, &subs, &ropts(4, 2)).unwrap();
    assert_eq!(decode(&r, 4).len(), 2);
    assert_eq!((r.status[s1], r.next[s1]), (REPLAY_NEXT, stored[8].offset));
}

#[test]
fn starts_must_match_the_subscriptions() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), opts()).unwrap();
    let mut sh = shards(&log, 1);
    sh[0].starts.clear();
    assert!(replay_frames(&log, &sh, &[sub("a", 1)], &ropts(4, 10)).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Any batch size: every delivery exactly once, per shard in offset order.
    #[test]
    fn batches_cover_every_delivery_once(n in 1usize..50, count in 1usize..200, seed in 0u64..1000) {
        let d = tempfile::tempdir().unwrap();
        let log = Log::open(d.path(), opts()).unwrap();
        let msgs: Vec<NewMessage> = (0..count)
            .map(|i| {
                let h = (i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed);
                msg((h % 2) as u32, &format!("p/{}", h % 3), 1, false, &[(i % 256) as u8])
            })
            .collect();
        let stored = store(&log, msgs);
        let got = replay_all(&log, &[sub("p/0", 1), sub("p/1", 0)], &ropts(4, n));
        let mut want: Vec<(u32, u64)> = stored
            .iter()
            .filter(|s| s.msg.topic != "p/2")
            .map(|s| (s.shard, s.offset))
            .collect();
        let mut have: Vec<(u32, u64)> = got.iter().map(|g| (g.0, g.1)).collect();
        for shard in 0..2u32 {
            let h: Vec<_> = have.iter().filter(|x| x.0 == shard).collect();
            prop_assert!(h.windows(2).all(|w| w[0].1 < w[1].1));
        }
        want.sort();
        have.sort();
        prop_assert_eq!(have, want);
    }
}
