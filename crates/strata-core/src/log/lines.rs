//! The message log's JSON lines, written from entries in the batch layout (`super::entry`):
//! what `GET /api/v1/log` and `stratamq log query --json` stream, one line per entry,
//!
//! ```text
//! {"id":"S:O","shard":S,"offset":O,"time":"<RFC 3339, ms, Z>","ts":T,"topic":…,"key":…,
//!  "publisher":…,"qos":Q,"retain":…,"properties":null|{…},"encoding":"utf8"|"base64","payload":…,
//!  "delivered":D,"acked":A}
//! ```
//!
//! byte for byte what the TypeScript writer (`src/msglog/query.ts`, `entryJson` through
//! `JSON.stringify`) writes for the same entry: strings escaped as `JSON.stringify` escapes them,
//! the payload as UTF-8 text when it is valid UTF-8, else base64 (standard alphabet, padded);
//! the properties as stored (the JSON the broker wrote, `encodeProperties`) with
//! `correlationData` (stored as `{"b64":"…"}`) written as its base64 string; the key is the
//! publisher, or the first value of the user property `key_property` names when the entry has it.
use super::entry::Entry;
use super::scan::ScanBatch;

/// Lines of a scan batch: `buf` holds them back to back (each ending in `\n`); `offsets` the
/// start of each plus the end; `meta` the `(timestamp, offset)` of each, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinesBatch {
    /// The lines.
    pub buf: Vec<u8>,
    /// Start of each line, plus the end.
    pub offsets: Vec<u32>,
    /// `timestamp, offset` per line.
    pub meta: Vec<u64>,
}

/// The JSON lines of every entry of `batch`; `counts`: `delivered, acked` per entry, in order
/// (`Log::read_counts` of the batch's offsets; missing ones are 0).
pub fn scan_lines(batch: &ScanBatch, key_property: &str, counts: &[u32]) -> LinesBatch {
    let n = batch.len();
    let mut out = LinesBatch {
        buf: Vec::with_capacity(batch.buf.len() * 2 + n * 160),
        offsets: Vec::with_capacity(n + 1),
        meta: Vec::with_capacity(n * 2),
    };
    let key = json_string(key_property.as_bytes());
    out.offsets.push(0);
    for j in 0..n {
        let Some(e) = batch.entry(j) else { break };
        let c = (
            counts.get(2 * j).copied().unwrap_or(0),
            counts.get(2 * j + 1).copied().unwrap_or(0),
        );
        write_line(&e, &key, c, &mut out.buf);
        out.offsets.push(out.buf.len() as u32);
        out.meta.push(e.timestamp);
        out.meta.push(e.offset);
    }
    out
}

/// A string as a JSON string token (quotes included), escaped as `JSON.stringify` does.
fn json_string(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    push_json_str(&String::from_utf8_lossy(s), &mut v);
    v
}

/// Writes one entry's line (with its newline). `key_token`: the key property's name as a JSON
/// string token (`""` for none); `counts`: its `delivered, acked`.
pub fn write_line(e: &Entry<'_>, key_token: &[u8], counts: (u32, u32), out: &mut Vec<u8>) {
    let publisher = String::from_utf8_lossy(e.publisher);
    let mut pub_token = Vec::with_capacity(publisher.len() + 2);
    push_json_str(&publisher, &mut pub_token);
    let props = if e.properties.is_empty() {
        None
    } else {
        properties(e.properties, key_token)
    };
    out.extend_from_slice(b"{\"id\":\"");
    push_u64(e.shard as u64, out);
    out.push(b':');
    push_u64(e.offset, out);
    out.extend_from_slice(b"\",\"shard\":");
    push_u64(e.shard as u64, out);
    out.extend_from_slice(b",\"offset\":");
    push_u64(e.offset, out);
    out.extend_from_slice(b",\"time\":\"");
    push_time(e.timestamp, out);
    out.extend_from_slice(b"\",\"ts\":");
    push_u64(e.timestamp, out);
    out.extend_from_slice(b",\"topic\":");
    push_json_str(&String::from_utf8_lossy(e.topic), out);
    out.extend_from_slice(b",\"key\":");
    match props.as_ref().and_then(|p| p.key.as_ref()) {
        Some(k) => out.extend_from_slice(k),
        None => out.extend_from_slice(&pub_token),
    }
    out.extend_from_slice(b",\"publisher\":");
    out.extend_from_slice(&pub_token);
    out.extend_from_slice(b",\"qos\":");
    push_u64(e.qos as u64, out);
    out.extend_from_slice(if e.retain {
        b",\"retain\":true"
    } else {
        b",\"retain\":false"
    });
    out.extend_from_slice(b",\"properties\":");
    match &props {
        Some(p) => out.extend_from_slice(&p.json),
        None => out.extend_from_slice(b"null"),
    }
    match std::str::from_utf8(e.payload) {
        Ok(text) => {
            out.extend_from_slice(b",\"encoding\":\"utf8\",\"payload\":");
            push_json_str(text, out);
        }
        Err(_) => {
            out.extend_from_slice(b",\"encoding\":\"base64\",\"payload\":\"");
            push_base64(e.payload, out);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b",\"delivered\":");
    push_u64(u64::from(counts.0), out);
    out.extend_from_slice(b",\"acked\":");
    push_u64(u64::from(counts.1), out);
    out.extend_from_slice(b"}\n");
}

/// The properties as written, and the key found in them.
struct Props {
    json: Vec<u8>,
    key: Option<Vec<u8>>,
}

/// The stored properties JSON with `correlationData` as its base64 string, and the value of the
/// user property named by `key_token` (a JSON string token; `""`: none). None when the stored
/// bytes are not a JSON object (never, for what the broker wrote).
fn properties(stored: &[u8], key_token: &[u8]) -> Option<Props> {
    let members = object_members(stored, 0)?;
    let mut json = Vec::with_capacity(stored.len());
    let mut key = None;
    json.push(b'{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        let name_tok = &stored[name.0..name.1];
        json.extend_from_slice(name_tok);
        json.push(b':');
        let v = &stored[value.0..value.1];
        if name_tok == b"\"correlationData\"" {
            if let Some(b64) = object_members(stored, value.0).and_then(|m| {
                m.into_iter()
                    .find(|(n, _)| &stored[n.0..n.1] == b"\"b64\"")
                    .map(|(_, v)| &stored[v.0..v.1])
            }) {
                json.extend_from_slice(b64);
                continue;
            }
        }
        if name_tok == b"\"userProperties\"" && key_token != b"\"\"" {
            if let Some(found) = object_members(stored, value.0).and_then(|m| {
                m.into_iter()
                    .find(|(n, _)| &stored[n.0..n.1] == key_token)
                    .map(|(_, v)| v)
            }) {
                let tok = &stored[found.0..found.1];
                key = match tok.first() {
                    Some(b'"') => Some(tok.to_vec()),
                    // A property given several times: its first value.
                    Some(b'[') => array_first(stored, found.0).map(|f| stored[f.0..f.1].to_vec()),
                    _ => None,
                };
            }
        }
        json.extend_from_slice(v);
    }
    json.push(b'}');
    Some(Props { json, key })
}

type Span = (usize, usize);

/// The members of the object starting at `at`: (name token, value) spans.
fn object_members(s: &[u8], at: usize) -> Option<Vec<(Span, Span)>> {
    let mut p = skip_ws(s, at);
    if s.get(p) != Some(&b'{') {
        return None;
    }
    p = skip_ws(s, p + 1);
    let mut out = Vec::new();
    if s.get(p) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let name_end = skip_value(s, p, 0)?;
        if s.get(p) != Some(&b'"') {
            return None;
        }
        let colon = skip_ws(s, name_end);
        if s.get(colon) != Some(&b':') {
            return None;
        }
        let v0 = skip_ws(s, colon + 1);
        let v1 = skip_value(s, v0, 0)?;
        out.push(((p, name_end), (v0, v1)));
        p = skip_ws(s, v1);
        match s.get(p) {
            Some(b',') => p = skip_ws(s, p + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The first element of the array starting at `at`, if it is a string.
fn array_first(s: &[u8], at: usize) -> Option<Span> {
    let p = skip_ws(s, at + 1);
    if s.get(p) != Some(&b'"') {
        return None;
    }
    Some((p, skip_value(s, p, 0)?))
}

fn skip_ws(s: &[u8], mut p: usize) -> usize {
    while matches!(s.get(p), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        p += 1;
    }
    p
}

/// The end of the JSON value starting at `p`.
fn skip_value(s: &[u8], mut p: usize, depth: usize) -> Option<usize> {
    if depth > 64 {
        return None;
    }
    match *s.get(p)? {
        b'"' => {
            p += 1;
            loop {
                match *s.get(p)? {
                    b'\\' => p += 2,
                    b'"' => return Some(p + 1),
                    _ => p += 1,
                }
            }
        }
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            p = skip_ws(s, p + 1);
            if *s.get(p)? == close {
                return Some(p + 1);
            }
            loop {
                p = skip_ws(s, skip_value(s, p, depth + 1)?);
                if open == b'{' {
                    if *s.get(p)? != b':' {
                        return None;
                    }
                    p = skip_ws(s, skip_value(s, skip_ws(s, p + 1), depth + 1)?);
                }
                match *s.get(p)? {
                    b',' => p = skip_ws(s, p + 1),
                    c if c == close => return Some(p + 1),
                    _ => return None,
                }
            }
        }
        _ => {
            let start = p;
            while let Some(c) = s.get(p) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':') {
                    break;
                }
                p += 1;
            }
            (p > start).then_some(p)
        }
    }
}

/// `s` as a JSON string token, escaped as `JSON.stringify` escapes it.
fn push_json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

fn push_u64(v: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_2(v: u64, out: &mut Vec<u8>) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `ms` since the epoch as `Date.prototype.toISOString` writes it: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn push_time(ms: u64, out: &mut Vec<u8>) {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let sod = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = (yoe as i64 + era * 400 + i64::from(m <= 2)) as u64;
    push_2(y / 100, out);
    push_2(y % 100, out);
    out.push(b'-');
    push_2(m, out);
    out.push(b'-');
    push_2(d, out);
    out.push(b'T');
    push_2(sod / 3600, out);
    out.push(b':');
    push_2(sod / 60 % 60, out);
    out.push(b':');
    push_2(sod % 60, out);
    out.push(b'.');
    let milli = ms % 1000;
    out.push(b'0' + (milli / 100) as u8);
    push_2(milli % 100, out);
    out.push(b'Z');
}

/// Standard base64 with padding (what `Buffer.toString('base64')` writes).
pub fn push_base64(data: &[u8], out: &mut Vec<u8>) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            A[(n >> 18) as usize & 63],
            A[(n >> 12) as usize & 63],
            A[(n >> 6) as usize & 63],
            A[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                A[(n >> 18) as usize & 63],
                A[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                A[(n >> 18) as usize & 63],
                A[(n >> 12) as usize & 63],
                A[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn time_as_to_iso_string() {
        assert_eq!(s(|o| push_time(0, o)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            s(|o| push_time(951_782_400_007, o)),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            s(|o| push_time(1_765_000_000_123, o)),
            "2025-12-06T05:46:40.123Z"
        );
        assert_eq!(
            s(|o| push_time(4_102_444_799_999, o)),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(
            s(|o| push_time(1_709_251_199_050, o)),
            "2024-02-29T23:59:59.050Z"
        );
    }

    #[test]
    fn base64_padded() {
        for (data, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0xff, 0xfe, 0x00][..], "//4A"),
        ] {
            assert_eq!(s(|o| push_base64(data, o)), want);
        }
    }

    #[test]
    fn strings_escaped_as_json_stringify() {
        assert_eq!(
            s(|o| push_json_str("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}\u{2028}é", o)),
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn properties_correlation_data_and_key() {
        let stored = br#"{"userProperties":{"order":["o-1","o-2"],"x":"y"},"correlationData":{"b64":"AQID"},"contentType":"text/plain"}"#;
        let p = properties(stored, b"\"order\"").unwrap();
        assert_eq!(
            String::from_utf8(p.json).unwrap(),
            r#"{"userProperties":{"order":["o-1","o-2"],"x":"y"},"correlationData":"AQID","contentType":"text/plain"}"#
        );
        assert_eq!(p.key.as_deref(), Some(&b"\"o-1\""[..]));
        let q = properties(stored, b"\"x\"").unwrap();
        assert_eq!(q.key.as_deref(), Some(&b"\"y\""[..]));
        assert_eq!(properties(stored, b"\"\"").unwrap().key, None);
        assert!(properties(b"not json", b"\"\"").is_none());
        assert!(properties(br#"{"a":"#, b"\"\"").is_none());
    }
}
