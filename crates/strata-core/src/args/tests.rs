use super::*;

fn msg(r: Result<impl std::fmt::Debug, CoreError>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_ARGUMENT", "{e}");
    e.to_string()
}

#[test]
fn offsets_are_exact_integers_below_2_pow_53() {
    assert_eq!(offset(0.0, || "x".into()).unwrap(), 0);
    assert_eq!(
        offset(MAX_SAFE_INTEGER, || "x".into()).unwrap(),
        (1u64 << 53) - 1
    );
    for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY, MAX_SAFE_INTEGER + 2.0] {
        assert!(msg(offset(bad, || "scan: from".into())).contains("scan: from"));
    }
}

#[test]
fn packet_ids_fit_16_bits() {
    assert_eq!(packet_id(65535, "findInbound").unwrap(), 65535);
    assert!(msg(packet_id(65536, "findInbound")).contains("findInbound: packet id 65536"));
}

#[test]
fn store_options_take_defaults_and_refuse_negatives() {
    let c = StoreArgs::default().resolve().unwrap();
    let d = Options::default();
    assert_eq!(c.log.segment_bytes, d.segment_bytes);
    assert_eq!(c.log.fsync, d.fsync);
    assert!(c.meta_durable, "durable unless fsync none");
    let c = StoreArgs {
        fsync: Some("none".into()),
        retention_ms: Some(0),
        retention_overrides: vec![("a/#".into(), 5)],
        n_shards: Some(3),
        ..StoreArgs::default()
    }
    .resolve()
    .unwrap();
    assert!(!c.meta_durable);
    assert_eq!(c.log.retention_ms, None);
    assert_eq!(c.log.retention_overrides, vec![("a/#".to_string(), 5)]);
    assert_eq!(c.log.n_shards, Some(3));
    let c = StoreArgs {
        fsync: Some("none".into()),
        meta_durable: Some(true),
        ..StoreArgs::default()
    }
    .resolve()
    .unwrap();
    assert!(c.meta_durable);
    for bad in [
        StoreArgs {
            segment_bytes: Some(-1),
            ..StoreArgs::default()
        },
        StoreArgs {
            retention_overrides: vec![("a".into(), -5)],
            ..StoreArgs::default()
        },
        StoreArgs {
            fsync: Some("sometimes".into()),
            ..StoreArgs::default()
        },
        StoreArgs {
            on_corruption: Some("ignore".into()),
            ..StoreArgs::default()
        },
    ] {
        assert!(bad.resolve().is_err());
    }
}

#[test]
fn positions_pair_shards_with_offsets() {
    let p = positions(&[0, 1], &[3.0, 4.0]).unwrap();
    assert_eq!((p[1].shard, p[1].offset), (1, Offset(4)));
    assert!(msg(positions(&[0], &[])).contains("1 shards but 0 offsets"));
    assert!(msg(positions(&[0, 0], &[1.0, 0.5])).contains("readAt: offsets[1]"));
}

#[test]
fn scan_arguments_are_checked_and_defaulted() {
    let (from, filters, limits) =
        scan(5.0, vec!["a/#".into()], &[2.0], 10, None, Some(9.0), None).unwrap();
    assert_eq!(from, 5);
    assert_eq!(filters[0].start, 2);
    assert_eq!(
        (limits.max_entries, limits.max_bytes, limits.max_examined),
        (10, 4 << 20, 65_536)
    );
    assert_eq!(limits.until, Some(9));
    assert!(msg(scan(0.0, vec!["a".into()], &[], 1, None, None, None))
        .contains("1 filters but 0 starts"));
    assert!(
        msg(scan(0.0, vec!["a".into()], &[-1.0], 1, None, None, None)).contains("scan: starts[0]")
    );
    assert!(msg(scan(0.0, vec![], &[], 1, None, Some(0.5), None)).contains("scan: until"));
}

fn shard(starts: Vec<f64>) -> ReplayShardArgs {
    ReplayShardArgs {
        shard: 0,
        from: 0.0,
        until: None,
        starts,
    }
}

fn sub(qos: u32) -> ReplaySubArgs {
    ReplaySubArgs {
        filter: "a/#".into(),
        qos,
        no_local: false,
        retain_as_published: false,
    }
}

#[test]
fn replay_requests_are_checked() {
    let r = Replay::new(vec![shard(vec![0.0])], vec![sub(1)], 5, "c".into(), 8, -1.0).unwrap();
    assert_eq!(r.opts.max_packet, usize::MAX);
    assert_eq!(r.opts.client_id, b"c");
    assert_eq!(r.subs[0].qos, 1);
    let r = Replay::new(vec![], vec![], 4, "c".into(), 8, 1024.0).unwrap();
    assert_eq!(r.opts.max_packet, 1024);
    assert!(msg(Replay::new(vec![], vec![sub(3)], 5, "c".into(), 8, 0.0)).contains("qos 3"));
    assert!(Replay::new(vec![shard(vec![])], vec![sub(0)], 5, "c".into(), 8, 0.0).is_err());
    assert!(msg(Replay::new(
        vec![shard(vec![0.5])],
        vec![sub(0)],
        5,
        "c".into(),
        8,
        0.0
    ))
    .contains("replay: starts"));
}

#[test]
fn inflight_quads_and_the_drain_window() {
    let v = inflight(&[7.0, 1.0, 99.0, 1.0, 8.0, 0.0, 3.0, 0.0]).unwrap();
    assert_eq!(
        v[0],
        InFlight {
            id: 7,
            shard: 1,
            offset: 99,
            retain: true
        }
    );
    assert!(!v[1].retain);
    assert!(msg(inflight(&[1.0, 2.0, 3.0])).contains("not quads"));
    assert!(msg(inflight(&[0.0, 0.0, 0.0, 0.0])).contains("bad in-flight entry"));
    assert!(msg(inflight(&[1.0, 0.0, -1.0, 0.0])).contains("in-flight offset"));
    assert_eq!(drain_window(128, 65535).unwrap(), (128, 65535));
    assert!(msg(drain_window(0, 1)).contains("window 0"));
    assert!(msg(drain_window(1, 65536)).contains("next id 65536"));
}
