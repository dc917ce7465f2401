//! The packed append layout: many messages to append in one buffer, so a batch crosses
//! the Node boundary as one `Buffer` instead of one object per message (binding
//! `appendPacked`; TypeScript packs it in `packMessages`). Defined once here; the binding
//! exports the constants (`layouts().packed`).
//!
//! Per message, little-endian: a [`HEADER`]-byte header — `u16` publisher length
//! @[`PUBLISHER_LEN`], `u16` topic length @[`TOPIC_LEN`], `u32` properties length
//! @[`PROPERTIES_LEN`], `u32` payload length @[`PAYLOAD_LEN`], `u8` QoS @[`QOS`], `u8`
//! flags @[`FLAGS`], `u16` the publisher's QoS 2 packet id @[`INBOUND_ID`] (0 = none; see
//! [`super::find_inbound`]) — then the publisher, topic, properties and payload bytes.
//! Messages follow each other with no padding; the buffer ends with the last one.
//!
//! Flags: [`FLAG_RETAIN`]; [`FLAG_SAME_PUBLISHER`] and [`FLAG_SAME_TOPIC`] — the message has
//! the previous message's publisher (topic), whose bytes are not repeated (its length field
//! is 0): a connection's messages come in runs, mostly on one topic, and the packer then
//! copies neither again. The first message of a buffer cannot have them.
use super::record::MessageRef;
use super::{shard_of, NewMessage};
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
/// Flags (u8): [`FLAG_RETAIN`], [`FLAG_SAME_PUBLISHER`], [`FLAG_SAME_TOPIC`].
pub const FLAGS: usize = 13;
/// The message is retained.
pub const FLAG_RETAIN: u8 = 1;
/// The previous message's publisher (no publisher bytes follow).
pub const FLAG_SAME_PUBLISHER: u8 = 2;
/// The previous message's topic (no topic bytes follow).
pub const FLAG_SAME_TOPIC: u8 = 4;
/// The publisher's QoS 2 packet id (u16, 0 = none).
pub const INBOUND_ID: usize = 14;

/// Splits `b` into exactly `count` messages. `InvalidArgument` (`appendPacked: …`) for a
/// buffer that is cut short, has bytes after the last message, a topic that is not UTF-8 or
/// a first message that says it repeats the previous one's publisher or topic. The topic and
/// QoS themselves are checked by the append.
pub fn unpack(b: &[u8], count: usize) -> Result<Vec<NewMessage>, CoreError> {
    let mut views = Views::new(b, count);
    let out: Vec<NewMessage> = (&mut views)
        .map(|m| NewMessage {
            publisher: m.publisher.to_vec(),
            topic: m.topic.to_owned(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.to_vec(),
            payload: m.payload.to_vec(),
            inbound_id: m.inbound_id,
        })
        .collect();
    views.finish()?;
    Ok(out)
}

/// Messages of one shard's append, their bytes kept in one buffer: one allocation for the
/// lot, not one per field (what the shard writer encodes records from).
#[derive(Debug, Default)]
pub struct Messages {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

/// Where a message's fields are in [`Messages::buf`]: publisher, topic, properties and
/// payload follow each other from `at`.
#[derive(Debug, Clone, Copy)]
struct Span {
    at: usize,
    publisher: u32,
    topic: u32,
    properties: u32,
    payload: u32,
    qos: u8,
    retain: bool,
    inbound_id: u16,
}

impl Messages {
    /// Copies `m` in.
    pub fn push(&mut self, m: MessageRef<'_>) {
        self.spans.push(Span {
            at: self.buf.len(),
            publisher: m.publisher.len() as u32,
            topic: m.topic.len() as u32,
            properties: m.properties.len() as u32,
            payload: m.payload.len() as u32,
            qos: m.qos,
            retain: m.retain,
            inbound_id: m.inbound_id,
        });
        self.buf.extend_from_slice(m.publisher);
        self.buf.extend_from_slice(m.topic.as_bytes());
        self.buf.extend_from_slice(m.properties);
        self.buf.extend_from_slice(m.payload);
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// No message.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl Iterator<Item = MessageRef<'_>> + '_ {
        self.spans.iter().map(|s| {
            let field = |from: usize, len: u32| &self.buf[from..from + len as usize];
            let topic_at = s.at + s.publisher as usize;
            let props_at = topic_at + s.topic as usize;
            MessageRef {
                publisher: field(s.at, s.publisher),
                // Copied from a `&str` (push): always UTF-8.
                topic: std::str::from_utf8(field(topic_at, s.topic)).unwrap_or_default(),
                qos: s.qos,
                retain: s.retain,
                properties: field(props_at, s.properties),
                payload: field(props_at + s.properties as usize, s.payload),
                inbound_id: s.inbound_id,
            }
        })
    }

    /// Sum of the messages' [`MessageRef::encoded_len_hint`].
    pub fn encoded_len_hint(&self) -> usize {
        self.iter().map(|m| m.encoded_len_hint()).sum()
    }
}

/// An append split by shard: per shard with messages, the shard, the messages' indexes in
/// the append (ascending) and the messages.
#[derive(Debug, Default)]
pub struct Split {
    /// Messages in the append.
    pub total: usize,
    /// `(shard, indexes, messages)`, shards ascending, none empty.
    pub groups: Vec<(u32, Vec<usize>, Messages)>,
}

impl Split {
    fn build<'a>(n_shards: u32, msgs: impl Iterator<Item = MessageRef<'a>>) -> Split {
        let mut groups: Vec<(Vec<usize>, Messages)> =
            (0..n_shards.max(1)).map(|_| Default::default()).collect();
        let mut total = 0;
        // A publisher's messages come in runs (a connection's reads): its shard is reused.
        let mut last: Option<(&[u8], u32)> = None;
        for (i, m) in msgs.enumerate() {
            let shard = match last {
                Some((p, s)) if p == m.publisher => s,
                _ => {
                    let s = shard_of(m.publisher, n_shards);
                    last = Some((m.publisher, s));
                    s
                }
            };
            let g = &mut groups[shard as usize];
            g.0.push(i);
            g.1.push(m);
            total += 1;
        }
        Split {
            total,
            groups: groups
                .into_iter()
                .enumerate()
                .filter(|(_, g)| !g.1.is_empty())
                .map(|(s, (idx, ms))| (s as u32, idx, ms))
                .collect(),
        }
    }

    /// `msgs` split over `n_shards`.
    pub fn of(msgs: &[NewMessage], n_shards: u32) -> Split {
        Split::build(n_shards, msgs.iter().map(NewMessage::view))
    }

    /// The `count` messages packed in `b` (the layout above), split over `n_shards`, with
    /// the errors of [`unpack`]; each message's bytes are copied once, into its shard's
    /// [`Messages`].
    pub fn packed(b: &[u8], count: usize, n_shards: u32) -> Result<Split, CoreError> {
        let mut views = Views::new(b, count);
        let split = Split::build(n_shards, &mut views);
        views.finish()?;
        Ok(split)
    }
}

fn bad(what: &str) -> CoreError {
    CoreError::InvalidArgument(format!("appendPacked: {what}"))
}

/// The messages of a packed buffer as views; stops at the first error (kept in `err`).
struct Views<'a> {
    b: &'a [u8],
    at: usize,
    left: usize,
    err: Option<CoreError>,
    /// The previous message's publisher and topic (what the `SAME` flags refer to).
    prev: Option<(&'a [u8], &'a str)>,
}

impl<'a> Views<'a> {
    fn new(b: &'a [u8], count: usize) -> Views<'a> {
        Views {
            b,
            at: 0,
            left: count,
            err: None,
            prev: None,
        }
    }

    /// The error that stopped the iteration, or bytes left after the last message.
    fn finish(self) -> Result<(), CoreError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        if self.at != self.b.len() {
            return Err(bad("bytes left after the last message"));
        }
        Ok(())
    }
}

fn u16_at(h: &[u8], p: usize) -> u16 {
    u16::from_le_bytes([h[p], h[p + 1]])
}

fn u32_at(h: &[u8], p: usize) -> u32 {
    u32::from_le_bytes([h[p], h[p + 1], h[p + 2], h[p + 3]])
}

impl<'a> Iterator for Views<'a> {
    type Item = MessageRef<'a>;

    fn next(&mut self) -> Option<MessageRef<'a>> {
        if self.left == 0 || self.err.is_some() {
            return None;
        }
        self.left -= 1;
        let b: &'a [u8] = self.b;
        let mut one = || -> Result<MessageRef<'a>, CoreError> {
            let mut at = self.at;
            let mut take = |n: usize| -> Result<&'a [u8], CoreError> {
                let end = at
                    .checked_add(n)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated buffer"))?;
                let s = &b[at..end];
                at = end;
                Ok(s)
            };
            let h = take(HEADER)?;
            let flags = h[FLAGS];
            let prev = self.prev;
            let repeat = |what: &str| bad(&format!("the first message repeats a previous {what}"));
            let publisher = if flags & FLAG_SAME_PUBLISHER != 0 {
                prev.ok_or_else(|| repeat("publisher"))?.0
            } else {
                take(u16_at(h, PUBLISHER_LEN) as usize)?
            };
            let topic = if flags & FLAG_SAME_TOPIC != 0 {
                prev.ok_or_else(|| repeat("topic"))?.1
            } else {
                std::str::from_utf8(take(u16_at(h, TOPIC_LEN) as usize)?)
                    .map_err(|_| bad("topic is not UTF-8"))?
            };
            let properties = take(u32_at(h, PROPERTIES_LEN) as usize)?;
            let payload = take(u32_at(h, PAYLOAD_LEN) as usize)?;
            let m = MessageRef {
                publisher,
                topic,
                qos: h[QOS],
                retain: flags & FLAG_RETAIN != 0,
                properties,
                payload,
                inbound_id: u16_at(h, INBOUND_ID),
            };
            self.at = at;
            self.prev = Some((publisher, topic));
            Ok(m)
        };
        match one() {
            Ok(m) => Some(m),
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }
}

/// Packs `msgs` in the layout above (for Rust callers and tests; the broker packs in
/// TypeScript), a publisher or topic equal to the previous message's not repeated.
pub fn pack(msgs: &[NewMessage]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut prev: Option<&NewMessage> = None;
    for m in msgs {
        let same_pub = prev.is_some_and(|p| p.publisher == m.publisher);
        let same_topic = prev.is_some_and(|p| p.topic == m.topic);
        let publisher: &[u8] = if same_pub { &[] } else { &m.publisher };
        let topic: &[u8] = if same_topic { &[] } else { m.topic.as_bytes() };
        let flags = (u8::from(m.retain) * FLAG_RETAIN)
            | (u8::from(same_pub) * FLAG_SAME_PUBLISHER)
            | (u8::from(same_topic) * FLAG_SAME_TOPIC);
        b.extend_from_slice(&(publisher.len() as u16).to_le_bytes());
        b.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        b.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
        b.extend_from_slice(&(m.payload.len() as u32).to_le_bytes());
        b.push(m.qos);
        b.push(flags);
        b.extend_from_slice(&m.inbound_id.to_le_bytes());
        b.extend_from_slice(publisher);
        b.extend_from_slice(topic);
        b.extend_from_slice(&m.properties);
        b.extend_from_slice(&m.payload);
        prev = Some(m);
    }
    b
}

#[cfg(test)]
mod tests;
