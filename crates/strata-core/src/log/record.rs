//! On-disk record frame: `[len u32][crc32c u32][body]`, little-endian.
//!
//! Body layout (all integers little-endian, `varint` = unsigned LEB128):
//!
//! | field          | encoding                                   |
//! |----------------|--------------------------------------------|
//! | offset delta   | u32, record offset − segment base offset   |
//! | ts delta       | u32, record timestamp (ms) − segment base  |
//! | flags          | u8: bits 0–1 QoS, bit 2 retain, bit 3 inbound id, rest zero |
//! | inbound id     | u16, only with flag bit 3: the publisher's QoS 2 packet id |
//! | stream         | varint                                     |
//! | publisher      | varint length + bytes                      |
//! | topic          | varint length + UTF-8 bytes                |
//! | properties     | varint length + opaque MQTT 5 property bytes |
//! | payload        | the rest of the body                       |
//!
//! Invariants:
//! - `crc` is crc32c over the 4 length bytes followed by the body, so a torn or
//!   garbled length is caught as surely as a garbled body.
//! - `len >= MIN_BODY` and `len <= MAX_BODY`: a zero-filled region (len = 0) is never a
//!   valid record, which is what makes zero-filled tails detectable.
//! - Reserved flag bits are zero; a record with them set is treated as corrupt.

/// Bytes of the frame header (`len` + `crc`).
pub const FRAME_HEADER: usize = 8;
/// Smallest possible body: two u32 deltas, flags and four one-byte varints.
pub const MIN_BODY: usize = 4 + 4 + 1 + 4;
/// Largest body accepted (MQTT's own maximum packet size is 256 MiB).
pub const MAX_BODY: usize = 256 * 1024 * 1024 + 64 * 1024;

/// A message handed to the log for appending. Owned: it moves to the shard writer thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// Publisher client id; also the shard key.
    pub publisher: Vec<u8>,
    /// Full topic name (no wildcards).
    pub topic: String,
    /// MQTT QoS, 0..=2.
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// MQTT 5 properties, opaque to the log.
    pub properties: Vec<u8>,
    /// Application payload.
    pub payload: Vec<u8>,
    /// The publisher's QoS 2 packet identifier (1..=65535), 0 for none. Kept with the
    /// record so a restart can tell whether a QoS 2 PUBLISH whose id was recorded as
    /// pending reached the log ([`super::find_inbound`]).
    pub inbound_id: u16,
}

impl NewMessage {
    /// Encoded frame size of this message (upper bound of varints included).
    pub fn encoded_len_hint(&self) -> usize {
        self.view().encoded_len_hint()
    }

    /// The message as borrowed fields.
    pub fn view(&self) -> MessageRef<'_> {
        MessageRef {
            publisher: &self.publisher,
            topic: &self.topic,
            qos: self.qos,
            retain: self.retain,
            properties: &self.properties,
            payload: &self.payload,
            inbound_id: self.inbound_id,
        }
    }
}

/// A message to append, borrowing its bytes (see [`NewMessage`] for the fields): what a
/// record is encoded from, wherever the bytes are kept (`packed::Messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// Publisher client id.
    pub publisher: &'a [u8],
    /// Full topic name.
    pub topic: &'a str,
    /// MQTT QoS.
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// MQTT 5 properties.
    pub properties: &'a [u8],
    /// Application payload.
    pub payload: &'a [u8],
    /// The publisher's QoS 2 packet identifier, 0 for none.
    pub inbound_id: u16,
}

impl MessageRef<'_> {
    /// Encoded frame size of this message (upper bound of varints included).
    pub fn encoded_len_hint(&self) -> usize {
        FRAME_HEADER
            + 11
            + 4 * 5
            + self.publisher.len()
            + self.topic.len()
            + self.properties.len()
            + self.payload.len()
    }
}

/// A decoded record borrowing from a read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Shard-wide offset (monotonic, gap-free within a shard's history).
    pub offset: u64,
    /// Milliseconds since the Unix epoch; monotonic per shard.
    pub timestamp: u64,
    /// Stream id within the record's generation.
    pub stream: u32,
    /// MQTT QoS.
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// Publisher client id.
    pub publisher: &'a [u8],
    /// Topic bytes (UTF-8 as written).
    pub topic: &'a [u8],
    /// Opaque MQTT 5 properties.
    pub properties: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
    /// The publisher's QoS 2 packet id recorded with the message, 0 for none.
    pub inbound_id: u16,
}

/// Why bytes at a position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes remain than the frame claims (or than a header): a torn tail.
    Incomplete,
    /// Length out of range, checksum mismatch or malformed body.
    Corrupt,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Appends one framed record to `out`. `offset_delta`/`ts_delta` are relative to the
/// segment's base. Returns the number of bytes appended.
pub fn encode(
    out: &mut Vec<u8>,
    offset_delta: u32,
    ts_delta: u32,
    stream: u32,
    msg: &MessageRef<'_>,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.extend_from_slice(&offset_delta.to_le_bytes());
    out.extend_from_slice(&ts_delta.to_le_bytes());
    let inbound = if msg.inbound_id != 0 { 0x8 } else { 0 };
    out.push((msg.qos & 0x3) | if msg.retain { 0x4 } else { 0 } | inbound);
    if msg.inbound_id != 0 {
        out.extend_from_slice(&msg.inbound_id.to_le_bytes());
    }
    put_varint(out, u64::from(stream));
    put_varint(out, msg.publisher.len() as u64);
    out.extend_from_slice(msg.publisher);
    put_varint(out, msg.topic.len() as u64);
    out.extend_from_slice(msg.topic.as_bytes());
    put_varint(out, msg.properties.len() as u64);
    out.extend_from_slice(msg.properties);
    out.extend_from_slice(msg.payload);
    let body_len = (out.len() - start - FRAME_HEADER) as u32;
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&body_len.to_le_bytes()),
        &out[start + FRAME_HEADER..],
    );
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Total frame length announced by the header at `buf[0..]`, validated for range only.
pub fn frame_len(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&len) {
        return Err(FrameError::Corrupt);
    }
    Ok(FRAME_HEADER + len)
}

/// Decodes and verifies the frame at the start of `buf`, returning the record and its
/// total frame length. `base_offset`/`base_ts` come from the segment header.
pub fn decode(
    buf: &[u8],
    base_offset: u64,
    base_ts: u64,
) -> Result<(RecordRef<'_>, usize), FrameError> {
    let total = frame_len(buf)?;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[FRAME_HEADER..total];
    if crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), body) != crc {
        return Err(FrameError::Corrupt);
    }
    let rec = parse_body(body, base_offset, base_ts).ok_or(FrameError::Corrupt)?;
    Ok((rec, total))
}

/// Parses a frame whose checksum [`decode`] has already verified (no second crc).
pub fn decode_verified(buf: &[u8], base_offset: u64, base_ts: u64) -> Option<RecordRef<'_>> {
    let total = frame_len(buf).ok()?;
    parse_body(buf.get(FRAME_HEADER..total)?, base_offset, base_ts)
}

fn parse_body(body: &[u8], base_offset: u64, base_ts: u64) -> Option<RecordRef<'_>> {
    let od = u32::from_le_bytes(body.get(0..4)?.try_into().ok()?);
    let td = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
    let flags = *body.get(8)?;
    if flags & !0xf != 0 || flags & 0x3 == 3 {
        return None;
    }
    let mut pos = 9;
    let mut inbound_id = 0;
    if flags & 0x8 != 0 {
        inbound_id = u16::from_le_bytes(body.get(9..11)?.try_into().ok()?);
        if inbound_id == 0 {
            return None;
        }
        pos = 11;
    }
    let stream = u32::try_from(get_varint(body, &mut pos)?).ok()?;
    let field = |pos: &mut usize| -> Option<&[u8]> {
        let n = usize::try_from(get_varint(body, pos)?).ok()?;
        let end = pos.checked_add(n)?;
        let s = body.get(*pos..end)?;
        *pos = end;
        Some(s)
    };
    let publisher = field(&mut pos)?;
    let topic = field(&mut pos)?;
    let properties = field(&mut pos)?;
    Some(RecordRef {
        offset: base_offset + u64::from(od),
        timestamp: base_ts + u64::from(td),
        stream,
        qos: flags & 0x3,
        retain: flags & 0x4 != 0,
        publisher,
        topic,
        properties,
        payload: &body[pos..],
        inbound_id,
    })
}

#[cfg(test)]
mod tests;
