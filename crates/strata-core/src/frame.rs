//! MQTT PUBLISH framing shared by the paths that write packets for the broker (log replay
//! and the native drain, retained delivery): the Remaining Length's variable byte integer
//! (MQTT 5 §1.5.5, 3.1.1 §2.2.3) and a PUBLISH without properties.

/// Bytes of `n` as a variable byte integer.
pub fn var_int_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Append `n` as a variable byte integer.
pub fn push_var_int(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

/// The Remaining Length of a PUBLISH without properties (v5: their length byte, 0).
pub fn publish_remaining(topic: usize, payload: usize, qos: u8, v5: bool) -> usize {
    2 + topic + if qos > 0 { 2 } else { 0 } + usize::from(v5) + payload
}

/// Bytes of a whole PUBLISH whose Remaining Length is `remaining`.
pub fn packet_len(remaining: usize) -> usize {
    1 + var_int_len(remaining) + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_int_boundaries() {
        for (n, len, bytes) in [
            (0usize, 1usize, vec![0u8]),
            (127, 1, vec![0x7f]),
            (128, 2, vec![0x80, 0x01]),
            (16_383, 2, vec![0xff, 0x7f]),
            (16_384, 3, vec![0x80, 0x80, 0x01]),
            (2_097_151, 3, vec![0xff, 0xff, 0x7f]),
            (2_097_152, 4, vec![0x80, 0x80, 0x80, 0x01]),
            (268_435_455, 4, vec![0xff, 0xff, 0xff, 0x7f]),
        ] {
            let mut b = Vec::new();
            push_var_int(&mut b, n);
            assert_eq!(b, bytes, "{n}");
            assert_eq!(var_int_len(n), len, "{n}");
        }
    }

    #[test]
    fn publish_sizes() {
        // topic "a/b", 5 payload bytes, QoS 0: 2 + 3 + 5
        assert_eq!(publish_remaining(3, 5, 0, false), 10);
        assert_eq!(publish_remaining(3, 5, 1, true), 13);
        assert_eq!(packet_len(10), 12);
        assert_eq!(packet_len(200), 203);
    }
}
