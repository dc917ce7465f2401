//! Metadata writes packed into one buffer: what a caller across a binding hands over for a
//! group commit instead of one object per write (a few hundred thousand retained-message
//! writes a second would otherwise be converted field by field).
//!
//! Per operation, little-endian, back to back:
//! `[kind u8][table u8][key_len u32][key][value_len u32][value]` — the value part only for
//! [`KIND_PUT`]. `table` is the index in [`Table::ALL`].
use super::{Op, Table};
use crate::error::CoreError;

/// Insert or replace `key` with `value`.
pub const KIND_PUT: u8 = 0;
/// Remove `key`.
pub const KIND_DELETE: u8 = 1;
/// Remove every key starting with `key`.
pub const KIND_DELETE_PREFIX: u8 = 2;
/// Bytes before the key: kind, table, key length.
pub const HEADER: usize = 6;
/// Bytes of a value's length.
pub const VALUE_LEN: usize = 4;

fn bad(why: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(format!("packed metadata operations: {why}"))
}

fn take<'a>(buf: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8], CoreError> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| {
            bad(format_args!(
                "{what} at byte {at} runs past the end ({} bytes)",
                buf.len()
            ))
        })?;
    let s = &buf[*at..end];
    *at = end;
    Ok(s)
}

fn len(buf: &[u8], at: &mut usize, what: &str) -> Result<usize, CoreError> {
    let b = take(buf, at, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// One operation of a packed buffer, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRef<'a> {
    /// [`KIND_PUT`]: table, key, value.
    Put(Table, &'a [u8], &'a [u8]),
    /// [`KIND_DELETE`]: table, key.
    Delete(Table, &'a [u8]),
    /// [`KIND_DELETE_PREFIX`]: table, key prefix.
    DeletePrefix(Table, &'a [u8]),
}

/// Call `f` with each operation in `buf`, in order, without copying. Stops at the first
/// byte that does not fit the layout (`InvalidArgument` naming it: an unknown kind or table,
/// a length past the end) or at the first error `f` returns; the operations before it were
/// handed to `f`.
pub fn visit<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(OpRef<'a>) -> Result<(), CoreError>,
) -> Result<(), CoreError> {
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let head = take(buf, &mut at, 2, "operation header")?;
        let (kind, t) = (head[0], head[1]);
        let table = *Table::ALL
            .get(usize::from(t))
            .ok_or_else(|| bad(format_args!("unknown table {t} at byte {start}")))?;
        let n = len(buf, &mut at, "key length")?;
        let key = take(buf, &mut at, n, "key")?;
        f(match kind {
            KIND_PUT => {
                let n = len(buf, &mut at, "value length")?;
                OpRef::Put(table, key, take(buf, &mut at, n, "value")?)
            }
            KIND_DELETE => OpRef::Delete(table, key),
            KIND_DELETE_PREFIX => OpRef::DeletePrefix(table, key),
            other => return Err(bad(format_args!("unknown kind {other} at byte {start}"))),
        })?;
    }
    Ok(())
}

/// The operations in `buf`, in order. Errors (`InvalidArgument`) name the first byte that
/// does not fit the layout: an unknown kind or table, a length past the end.
pub fn unpack(buf: &[u8]) -> Result<Vec<Op>, CoreError> {
    let mut ops = Vec::new();
    visit(buf, |op| {
        ops.push(match op {
            OpRef::Put(t, k, v) => Op::Put(t, k.to_vec(), v.to_vec()),
            OpRef::Delete(t, k) => Op::Delete(t, k.to_vec()),
            OpRef::DeletePrefix(t, k) => Op::DeletePrefix(t, k.to_vec()),
        });
        Ok(())
    })?;
    Ok(ops)
}

/// `ops` packed as [`unpack`] reads them (for tests and Rust callers).
pub fn pack(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        let (kind, table, key, value) = match op {
            Op::Put(t, k, v) => (KIND_PUT, t, k, Some(v)),
            Op::Delete(t, k) => (KIND_DELETE, t, k, None),
            Op::DeletePrefix(t, k) => (KIND_DELETE_PREFIX, t, k, None),
        };
        let ti = Table::ALL.iter().position(|x| x == table).unwrap_or(0) as u8;
        out.push(kind);
        out.push(ti);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(v) = value {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_kind_and_table() {
        let mut ops = Vec::new();
        for (i, t) in Table::ALL.iter().enumerate() {
            ops.push(Op::Put(*t, vec![i as u8; i], vec![7; 300 * i]));
            ops.push(Op::Delete(*t, b"k".to_vec()));
            ops.push(Op::DeletePrefix(*t, Vec::new()));
        }
        let buf = pack(&ops);
        assert_eq!(unpack(&buf).unwrap(), ops);
        assert_eq!(unpack(&[]).unwrap(), Vec::<Op>::new());
    }

    #[test]
    fn every_truncation_and_bad_byte_is_an_error_not_a_panic() {
        let buf = pack(&[
            Op::Put(Table::Retained, b"a/b".to_vec(), b"value".to_vec()),
            Op::Delete(Table::Sessions, b"c".to_vec()),
        ]);
        for cut in 1..buf.len() {
            // Cuts at an operation boundary read fewer operations; any other cut is an error.
            if let Ok(ops) = unpack(&buf[..cut]) {
                assert_eq!(ops.len(), 1, "cut {cut}");
            }
        }
        let mut bad_kind = buf.clone();
        bad_kind[0] = 9;
        assert!(unpack(&bad_kind)
            .unwrap_err()
            .to_string()
            .contains("unknown kind 9"));
        let mut bad_table = buf.clone();
        bad_table[1] = 200;
        assert!(unpack(&bad_table)
            .unwrap_err()
            .to_string()
            .contains("unknown table 200"));
        let mut huge = buf;
        huge[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&huge).is_err());
    }
}
