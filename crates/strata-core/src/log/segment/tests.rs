use super::*;

#[test]
fn partition_near_equals_partition_point() {
    // Irregular spacing, including runs of equal gaps and big jumps.
    let mut idx = Vec::new();
    let mut o = 100u64;
    for k in 0..300u64 {
        idx.push(IndexEntry {
            offset: o,
            pos: k,
            ts: 0,
        });
        o += 1 + (k * k * 7919) % 23 + if k % 50 == 0 { 500 } else { 0 };
    }
    for n in (0..idx.len()).filter(|n| *n < 6 || n % 13 == 0) {
        let idx = &idx[..n];
        for offset in 0..o + 10 {
            assert_eq!(
                partition_near(idx, offset),
                idx.partition_point(|e| e.offset <= offset),
                "n {n} offset {offset}"
            );
        }
    }
}
