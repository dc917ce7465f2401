//! The seal: what a clean close leaves so that the next open can skip comparing the
//! two copies entry by entry.
//!
//! At a clean close — the writer ended with both copies at the same seq, the journal
//! synced, and redb closed (its allocator state and clean header written) — `meta.seal`
//! records each file's length and CRC-32C, the seq and the journal's snapshot length.
//! The next open reads the seal and removes it whatever it says; when both files are
//! byte for byte what the seal describes, they are what the close left, which was
//! consistent, and open keeps `meta.redb` as it is (no probe, no integrity check, no
//! replay of the journal). Any difference — a byte damaged since, a crash after a later
//! open, a file copied from elsewhere, a damaged seal — and open examines both files in
//! full as it does without a seal ([`super::recovery::examine`]).
//!
//! Format (little endian): `MAGIC`, seq u64, redb length u64, redb CRC u32, journal
//! length u64, journal snapshot length u64, journal CRC u32, then the CRC-32C of all of
//! that (u32).
use super::journal;
use super::recovery::REDB_FILE;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

/// File name of the seal inside the data directory.
pub(crate) const FILE: &str = "meta.seal";
const MAGIC: &[u8; 16] = b"stratamq-seal-01";
const LEN: usize = MAGIC.len() + 8 + 8 + 4 + 8 + 8 + 4 + 4;

/// What the writer knew when it ended cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Seq of the last commit (both copies).
    pub(crate) seq: u64,
    /// The journal's valid length (the whole file).
    pub(crate) journal_len: u64,
    /// The journal's length right after its snapshot.
    pub(crate) snapshot_len: u64,
}

/// A file's length and CRC-32C.
fn digest(path: &Path) -> io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let (mut len, mut crc) = (0u64, 0u32);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((len, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
}

/// Writes the seal for `dir`, whose files `end` describes (call once both are closed).
pub(crate) fn write(dir: &Path, end: &Ended) -> io::Result<()> {
    let (redb_len, redb_crc) = digest(&dir.join(REDB_FILE))?;
    let (journal_len, journal_crc) = digest(&dir.join(journal::FILE))?;
    if journal_len != end.journal_len {
        return Err(io::Error::other(format!(
            "{} is {journal_len} bytes, the writer ended at {}",
            journal::FILE,
            end.journal_len
        )));
    }
    let mut b = Vec::with_capacity(LEN);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&end.seq.to_le_bytes());
    b.extend_from_slice(&redb_len.to_le_bytes());
    b.extend_from_slice(&redb_crc.to_le_bytes());
    b.extend_from_slice(&journal_len.to_le_bytes());
    b.extend_from_slice(&end.snapshot_len.to_le_bytes());
    b.extend_from_slice(&journal_crc.to_le_bytes());
    b.extend_from_slice(&crc32c::crc32c(&b).to_le_bytes());
    let mut f = File::create(dir.join(FILE))?;
    f.write_all(&b)?;
    f.sync_all()?;
    crate::fsutil::sync_dir(dir)
}

/// Removes `dir`'s seal, if any (open does, before anything changes the files).
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads `dir`'s seal. `Some` only when the seal is whole and both files are exactly as
/// it describes.
pub(crate) fn verify(dir: &Path) -> io::Result<Option<Ended>> {
    let b = match fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if b.len() != LEN || &b[..MAGIC.len()] != MAGIC {
        return Ok(None);
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&b[..LEN - 4]) != u32_at(LEN - 4) {
        return Ok(None);
    }
    let m = MAGIC.len();
    let end = Ended {
        seq: u64_at(m),
        journal_len: u64_at(m + 20),
        snapshot_len: u64_at(m + 28),
    };
    let redb = (u64_at(m + 8), u32_at(m + 16));
    let journal = (end.journal_len, u32_at(m + 36));
    // Lengths first: a file that grew or shrank is not read through.
    let len_of = |f: &str| fs::metadata(dir.join(f)).map(|m| m.len());
    match (len_of(REDB_FILE), len_of(journal::FILE)) {
        (Ok(r), Ok(j)) if r == redb.0 && j == journal.0 => {}
        _ => return Ok(None),
    }
    let same = |f: &str, want: (u64, u32)| match digest(&dir.join(f)) {
        Ok(d) => Ok(d == want),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    };
    Ok((same(REDB_FILE, redb)? && same(journal::FILE, journal)?).then_some(end))
}
