//! The packed append layout: many messages to append in one buffer, so a batch crosses
//! the Node boundary as one `Buffer` instead of one object per message (binding
//! `appendPacked`; TypeScript packs it in `packMessages`). Defined once here; the binding
//! exports the constants (`layouts().packed`).
//!
//! Per message, little-endian: a [`HEADER`]-byte header — `u16` publisher length
//! @[`PUBLISHER_LEN`], `u16` topic length @[`TOPIC_LEN`], `u32` properties length
//! @[`PROPERTIES_LEN`], `u32` payload length @[`PAYLOAD_LEN`], `u8` QoS @[`QOS`], `u8`
//! retain (0/1) @[`RETAIN`], `u16` the publisher's QoS 2 packet id @[`INBOUND_ID`] (0 =
//! none; see [`super::find_inbound`]) — then the publisher, topic, properties and payload
//! bytes. Messages follow each other with no padding; the buffer ends with the last one.
use super::NewMessage;
use crate::error::CoreError;

/// Bytes of a message header.
pub const HEADER: usize = 16;
/// Publisher length (u16).
pub const PUBLISHER_LEN: usize = 0;
/// Topic length (u16).
pub const TOPIC_LEN: usize = 2;
/// Properties length (u32).
pub const PROPERTIES_LEN: usize = 4;
/// Payload length (u32).
pub const PAYLOAD_LEN: usize = 8;
/// QoS (u8).
pub const QOS: usize = 12;
/// Retain flag (u8, 0 or 1).
pub const RETAIN: usize = 13;
/// The publisher's QoS 2 packet id (u16, 0 = none).
pub const INBOUND_ID: usize = 14;

/// Splits `b` into exactly `count` messages. `InvalidArgument` (`appendPacked: …`) for a
/// buffer that is cut short, has bytes after the last message, or a topic that is not
/// UTF-8. The topic and QoS themselves are checked by the append.
pub fn unpack(b: &[u8], count: usize) -> Result<Vec<NewMessage>, CoreError> {
    let bad = |what: &str| CoreError::InvalidArgument(format!("appendPacked: {what}"));
    let mut out = Vec::with_capacity(count);
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], CoreError> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| bad("truncated buffer"))?;
        let s = &b[*at..end];
        *at = end;
        Ok(s)
    };
    let u16_at = |h: &[u8], p: usize| u16::from_le_bytes([h[p], h[p + 1]]);
    let u32_at = |h: &[u8], p: usize| u32::from_le_bytes([h[p], h[p + 1], h[p + 2], h[p + 3]]);
    for _ in 0..count {
        let h = take(&mut at, HEADER)?;
        let pub_len = u16_at(h, PUBLISHER_LEN) as usize;
        let topic_len = u16_at(h, TOPIC_LEN) as usize;
        let props_len = u32_at(h, PROPERTIES_LEN) as usize;
        let payload_len = u32_at(h, PAYLOAD_LEN) as usize;
        let (qos, retain) = (h[QOS], h[RETAIN] != 0);
        let inbound_id = u16_at(h, INBOUND_ID);
        let publisher = take(&mut at, pub_len)?.to_vec();
        let topic = String::from_utf8(take(&mut at, topic_len)?.to_vec())
            .map_err(|_| bad("topic is not UTF-8"))?;
        let properties = take(&mut at, props_len)?.to_vec();
        let payload = take(&mut at, payload_len)?.to_vec();
        out.push(NewMessage {
            publisher,
            topic,
            qos,
            retain,
            properties,
            payload,
            inbound_id,
        });
    }
    if at != b.len() {
        return Err(bad("bytes left after the last message"));
    }
    Ok(out)
}

/// Packs `msgs` in the layout above (for Rust callers and tests; the broker packs in
/// TypeScript).
pub fn pack(msgs: &[NewMessage]) -> Vec<u8> {
    let mut b = Vec::new();
    for m in msgs {
        b.extend_from_slice(&(m.publisher.len() as u16).to_le_bytes());
        b.extend_from_slice(&(m.topic.len() as u16).to_le_bytes());
        b.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
        b.extend_from_slice(&(m.payload.len() as u32).to_le_bytes());
        b.push(m.qos);
        b.push(u8::from(m.retain));
        b.extend_from_slice(&m.inbound_id.to_le_bytes());
        b.extend_from_slice(&m.publisher);
        b.extend_from_slice(m.topic.as_bytes());
        b.extend_from_slice(&m.properties);
        b.extend_from_slice(&m.payload);
    }
    b
}

#[cfg(test)]
mod tests;
