//! Segment files (`<base offset:020>.seg`) and their sparse index (`.idx`).
//!
//! A segment starts with a 32-byte header — magic `STRSEG01`, base offset (u64), base
//! timestamp ms (u64), reserved (u32), crc32c of the preceding 28 bytes (u32) — and is
//! followed by framed records (see [`super::record`]).
//!
//! Invariants of [`Segment`]:
//! - Records are contiguous: the record at byte `p` has offset `end_offset` of the
//!   prefix before it; offsets are gap-free and timestamps non-decreasing.
//! - `committed_len` only grows, and every byte below it is a complete record that
//!   the fsync policy has made as durable as it promises; readers never look past it.
//! - The sparse index holds `(offset, position, timestamp)` for the first record at or
//!   after every `index_interval` bytes, sorted by all three keys; it is advisory and
//!   rebuilt from the data when missing or invalid.
//! - A sealed segment never changes again; its `.idx` file records its exact length.
use super::record::{self, FrameError, RecordRef};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Length of the segment file header.
pub const HEADER_LEN: u64 = 32;
const MAGIC: &[u8; 8] = b"STRSEG01";
const IDX_MAGIC: &[u8; 8] = b"STRIDX01";
/// Largest read of a sequential scan.
const CHUNK: usize = 256 * 1024;
/// First read of a scan; each refill doubles it up to [`CHUNK`], so a short read
/// (a small batch from a cursor or a replay scan) does not copy 256 KiB.
const FIRST_CHUNK: usize = 16 * 1024;

/// One sparse index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Record offset.
    pub offset: u64,
    /// Byte position of the record's frame in the segment file.
    pub pos: u64,
    /// Record timestamp.
    pub ts: u64,
}

/// Summary of a segment's content, as recorded in `.idx` or rebuilt by a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of valid data including the header.
    pub data_len: u64,
    /// Offset one past the last record (== base offset when empty).
    pub end_offset: u64,
    /// Number of records.
    pub records: u64,
    /// Timestamp of the last record (base ts when empty).
    pub last_ts: u64,
    /// Sparse index.
    pub index: Vec<IndexEntry>,
    /// Records per stream.
    pub streams: HashMap<u32, u64>,
}

/// A segment as seen by readers, shared with the shard writer.
#[derive(Debug)]
pub struct Segment {
    /// Data file path.
    pub path: PathBuf,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Timestamp base for record deltas (ms).
    pub base_ts: u64,
    read: File,
    committed_len: AtomicU64,
    end_offset: AtomicU64,
    last_ts: AtomicU64,
    sealed: AtomicBool,
    index: RwLock<Vec<IndexEntry>>,
    streams: Mutex<HashMap<u32, u64>>,
}

/// Cross-platform positional read.
pub fn read_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(f, buf, off)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(f, buf, off)
    }
}

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Consumed exactly up to the limit.
    Limit,
    /// The callback asked to stop before the record at this position.
    Stopped(u64),
    /// An incomplete record starts at this position (torn tail).
    Incomplete(u64),
    /// An invalid record starts at this position.
    Corrupt(u64),
}

/// Scans records in `file` from byte `from` up to byte `limit`, calling `f(pos, frame
/// len, record)` for each valid one until it returns false. `scratch` is reused as is
/// (its contents are overwritten; it is only grown, never shrunk or re-zeroed).
pub fn scan(
    file: &File,
    base_offset: u64,
    base_ts: u64,
    from: u64,
    limit: u64,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(u64, usize, &RecordRef<'_>) -> bool,
) -> io::Result<ScanEnd> {
    let mut pos = from;
    // `scratch[..valid]` holds the file bytes `[buf_start, buf_start + valid)`.
    let mut buf_start = from;
    let mut valid = 0usize;
    let mut chunk = FIRST_CHUNK;
    loop {
        let off = (pos - buf_start) as usize;
        let avail = &scratch[off..valid];
        let need = match record::frame_len(avail) {
            Ok(n) if avail.len() >= n => {
                match record::decode(&avail[..n], base_offset, base_ts) {
                    Ok((rec, _)) => {
                        if !f(pos, n, &rec) {
                            return Ok(ScanEnd::Stopped(pos));
                        }
                    }
                    Err(_) => return Ok(ScanEnd::Corrupt(pos)),
                }
                pos += n as u64;
                continue;
            }
            Ok(n) => n,
            Err(FrameError::Corrupt) => return Ok(ScanEnd::Corrupt(pos)),
            Err(FrameError::Incomplete) => record::FRAME_HEADER,
        };
        // Refill: keep the unconsumed tail, read more.
        let file_end = buf_start + valid as u64;
        if file_end >= limit {
            return Ok(if pos >= limit {
                ScanEnd::Limit
            } else {
                ScanEnd::Incomplete(pos)
            });
        }
        scratch.copy_within(off..valid, 0);
        valid -= off;
        buf_start = pos;
        let want = need.max(chunk).min((limit - buf_start) as usize);
        chunk = (chunk * 2).min(CHUNK);
        if want > valid {
            if scratch.len() < want {
                scratch.resize(want, 0);
            }
            let mut filled = valid;
            while filled < want {
                let n = read_at(file, &mut scratch[filled..want], buf_start + filled as u64)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == valid {
                return Ok(ScanEnd::Incomplete(pos));
            }
            valid = filled;
        }
    }
}

/// Encodes a segment header.
pub fn header_bytes(base_offset: u64, base_ts: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&base_offset.to_le_bytes());
    h[16..24].copy_from_slice(&base_ts.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Reads and validates a segment header: `(base_offset, base_ts)`.
pub fn read_header(file: &File) -> io::Result<Option<(u64, u64)>> {
    let mut h = [0u8; HEADER_LEN as usize];
    let mut filled = 0;
    while filled < h.len() {
        let n = read_at(file, &mut h[filled..], filled as u64)?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if &h[..8] != MAGIC || crc32c::crc32c(&h[..28]) != crc {
        return Ok(None);
    }
    let base = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let ts = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    Ok(Some((base, ts)))
}

/// File name of the segment with this base offset.
pub fn seg_name(base_offset: u64) -> String {
    format!("{base_offset:020}.seg")
}

/// Path of the index file that goes with a segment path.
pub fn idx_path(seg: &Path) -> PathBuf {
    seg.with_extension("idx")
}

/// Scans a whole segment file, verifying every record, and returns its summary and
/// how the scan ended. Offsets must be contiguous from the header's base offset.
pub fn rebuild_summary(
    file: &File,
    base_offset: u64,
    base_ts: u64,
    file_len: u64,
    index_interval: u64,
) -> io::Result<(Summary, ScanEnd)> {
    let mut s = Summary {
        data_len: HEADER_LEN,
        end_offset: base_offset,
        last_ts: base_ts,
        ..Summary::default()
    };
    let mut next_index_pos = HEADER_LEN;
    let mut scratch = Vec::new();
    // Records per stream, counted in runs: consecutive records mostly share a stream, and a
    // map update per record was a tenth of a recovery scan.
    let mut run: Option<(u32, u64)> = None;
    let end = scan(
        file,
        base_offset,
        base_ts,
        HEADER_LEN,
        file_len,
        &mut scratch,
        |pos, n, r| {
            if r.offset != s.end_offset || r.timestamp < s.last_ts {
                return false;
            }
            if pos >= next_index_pos {
                s.index.push(IndexEntry {
                    offset: r.offset,
                    pos,
                    ts: r.timestamp,
                });
                next_index_pos = pos + index_interval;
            }
            match &mut run {
                Some((stream, n)) if *stream == r.stream => *n += 1,
                _ => {
                    if let Some((stream, n)) = run.replace((r.stream, 1)) {
                        *s.streams.entry(stream).or_insert(0) += n;
                    }
                }
            }
            s.records += 1;
            s.end_offset = r.offset + 1;
            s.last_ts = r.timestamp;
            s.data_len = pos + n as u64;
            true
        },
    )?;
    if let Some((stream, n)) = run {
        *s.streams.entry(stream).or_insert(0) += n;
    }
    // A record out of sequence is corruption, not a reason to stop quietly.
    let end = match end {
        ScanEnd::Stopped(p) => ScanEnd::Corrupt(p),
        e => e,
    };
    Ok((s, end))
}

/// Writes the `.idx` file for a sealed segment (write to temp, then rename).
pub fn write_index(seg_path: &Path, base_offset: u64, base_ts: u64, s: &Summary) -> io::Result<()> {
    let mut b = Vec::with_capacity(64 + s.index.len() * 24 + s.streams.len() * 12);
    b.extend_from_slice(IDX_MAGIC);
    for v in [
        base_offset,
        base_ts,
        s.data_len,
        s.end_offset,
        s.records,
        s.last_ts,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(s.index.len() as u32).to_le_bytes());
    b.extend_from_slice(&(s.streams.len() as u32).to_le_bytes());
    for e in &s.index {
        b.extend_from_slice(&e.offset.to_le_bytes());
        b.extend_from_slice(&e.pos.to_le_bytes());
        b.extend_from_slice(&e.ts.to_le_bytes());
    }
    let mut streams: Vec<_> = s.streams.iter().collect();
    streams.sort();
    for (id, n) in streams {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let path = idx_path(seg_path);
    let tmp = path.with_extension("idx.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
    }
    fs::rename(&tmp, &path)
}

/// Reads a `.idx` file; `None` when missing, malformed or not matching the segment.
pub fn read_index(seg_path: &Path, base_offset: u64, base_ts: u64) -> Option<Summary> {
    read_index_any(seg_path, base_offset)
        .filter(|(ts, _)| *ts == base_ts)
        .map(|(_, s)| s)
}

/// Reads a `.idx` file written for a segment based at `base_offset`, whatever its base
/// time: `(base_ts, summary)`. What recovery uses when a segment's own header is damaged.
pub fn read_index_any(seg_path: &Path, base_offset: u64) -> Option<(u64, Summary)> {
    let b = fs::read(idx_path(seg_path)).ok()?;
    if b.len() < 8 + 48 + 8 + 4 || &b[..8] != IDX_MAGIC {
        return None;
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let u64_at = |p: usize| u64::from_le_bytes(body[p..p + 8].try_into().expect("8"));
    let u32_at = |p: usize| u32::from_le_bytes(body[p..p + 4].try_into().expect("4"));
    if u64_at(8) != base_offset {
        return None;
    }
    let base_ts = u64_at(16);
    let n_index = u32_at(56) as usize;
    let n_streams = u32_at(60) as usize;
    if body.len() != 64 + n_index * 24 + n_streams * 12 {
        return None;
    }
    let mut s = Summary {
        data_len: u64_at(24),
        end_offset: u64_at(32),
        records: u64_at(40),
        last_ts: u64_at(48),
        ..Summary::default()
    };
    let mut p = 64;
    for _ in 0..n_index {
        s.index.push(IndexEntry {
            offset: u64_at(p),
            pos: u64_at(p + 8),
            ts: u64_at(p + 16),
        });
        p += 24;
    }
    for _ in 0..n_streams {
        s.streams.insert(u32_at(p), u64_at(p + 4));
        p += 12;
    }
    Some((base_ts, s))
}

impl Segment {
    /// Wraps an opened segment with its (verified or rebuilt) summary.
    pub fn new(
        path: PathBuf,
        read: File,
        base_offset: u64,
        base_ts: u64,
        s: Summary,
        sealed: bool,
    ) -> Self {
        Segment {
            path,
            base_offset,
            base_ts,
            read,
            committed_len: AtomicU64::new(s.data_len),
            end_offset: AtomicU64::new(s.end_offset),
            last_ts: AtomicU64::new(s.last_ts),
            sealed: AtomicBool::new(sealed),
            index: RwLock::new(s.index),
            streams: Mutex::new(s.streams),
        }
    }

    /// Bytes readers may read.
    pub fn committed_len(&self) -> u64 {
        self.committed_len.load(Ordering::Acquire)
    }
    /// Offset one past the last visible record.
    pub fn end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }
    /// Timestamp of the last visible record.
    pub fn last_ts(&self) -> u64 {
        self.last_ts.load(Ordering::Acquire)
    }
    /// Whether the segment is sealed (immutable).
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }
    /// Number of visible records.
    pub fn records(&self) -> u64 {
        self.end_offset() - self.base_offset
    }
    /// Visible records of one stream.
    pub fn stream_count(&self, stream: u32) -> u64 {
        self.streams
            .lock()
            .expect("poisoned")
            .get(&stream)
            .copied()
            .unwrap_or(0)
    }
    /// Replaces `out` with the streams that have visible records here (no allocation
    /// once `out` has grown).
    pub fn stream_ids(&self, out: &mut Vec<u32>) {
        out.clear();
        let m = self.streams.lock().expect("poisoned");
        out.extend(m.iter().filter(|(_, n)| **n > 0).map(|(k, _)| *k));
    }
    /// Visible record counts per stream.
    pub fn stream_counts(&self) -> HashMap<u32, u64> {
        self.streams.lock().expect("poisoned").clone()
    }
    /// The read handle.
    pub fn file(&self) -> &File {
        &self.read
    }

    /// Publishes a durable batch to readers (called by the writer only); `streams`: its
    /// records per stream id (index).
    pub fn publish(
        &self,
        new_len: u64,
        end_offset: u64,
        last_ts: u64,
        entries: &[IndexEntry],
        streams: &[u64],
    ) {
        if !entries.is_empty() {
            self.index
                .write()
                .expect("poisoned")
                .extend_from_slice(entries);
        }
        {
            let mut m = self.streams.lock().expect("poisoned");
            for (k, v) in streams.iter().enumerate().filter(|(_, v)| **v > 0) {
                *m.entry(k as u32).or_insert(0) += v;
            }
        }
        self.last_ts.store(last_ts, Ordering::Release);
        self.end_offset.store(end_offset, Ordering::Release);
        self.committed_len.store(new_len, Ordering::Release);
    }

    /// Marks sealed and writes the index file.
    pub fn seal(&self) -> io::Result<()> {
        self.sealed.store(true, Ordering::Release);
        write_index(&self.path, self.base_offset, self.base_ts, &self.summary())
    }

    /// Current summary.
    pub fn summary(&self) -> Summary {
        Summary {
            data_len: self.committed_len(),
            end_offset: self.end_offset(),
            records: self.records(),
            last_ts: self.last_ts(),
            index: self.index.read().expect("poisoned").clone(),
            streams: self.stream_counts(),
        }
    }

    /// Position of the last sparse index entry, if any.
    pub fn summary_last_index_pos(&self) -> Option<u64> {
        self.index.read().expect("poisoned").last().map(|e| e.pos)
    }

    /// Best starting point to find `offset`: the last index entry at or before it.
    pub fn seek_offset(&self, offset: u64) -> (u64, u64) {
        let idx = self.index.read().expect("poisoned");
        let i = idx.partition_point(|e| e.offset <= offset);
        match i {
            0 => (HEADER_LEN, self.base_offset),
            _ => (idx[i - 1].pos, idx[i - 1].offset),
        }
    }

    /// Like [`Segment::seek_offset`], plus the next index entry `(position, offset)`
    /// when there is one: the record of `offset` then lies wholly before that
    /// position. Interpolates a first guess (index offsets grow almost linearly) and
    /// gallops from it, so a lookup touches O(log distance) entries, O(log n) at worst.
    pub fn seek_offset_bounded(&self, offset: u64) -> ((u64, u64), Option<(u64, u64)>) {
        let idx = self.index.read().expect("poisoned");
        let i = partition_near(&idx, offset);
        let before = match i {
            0 => (HEADER_LEN, self.base_offset),
            _ => (idx[i - 1].pos, idx[i - 1].offset),
        };
        (before, idx.get(i).map(|e| (e.pos, e.offset)))
    }

    /// Best starting point to find the first record with timestamp ≥ `ts`.
    pub fn seek_time(&self, ts: u64) -> (u64, u64) {
        let idx = self.index.read().expect("poisoned");
        let i = idx.partition_point(|e| e.ts < ts);
        match i {
            0 => (HEADER_LEN, self.base_offset),
            _ => (idx[i - 1].pos, idx[i - 1].offset),
        }
    }
}

/// `idx.partition_point(|e| e.offset <= offset)`, by interpolation then galloping.
fn partition_near(idx: &[IndexEntry], offset: u64) -> usize {
    let n = idx.len();
    let (Some(first), Some(last)) = (idx.first(), idx.last()) else {
        return 0;
    };
    if offset < first.offset {
        return 0;
    }
    if offset >= last.offset {
        return n;
    }
    // Here n ≥ 2 and first.offset ≤ offset < last.offset, so the guess is in 0..n-1.
    let span = u128::from(last.offset - first.offset);
    let guess = (u128::from(offset - first.offset) * (n as u128 - 1) / span) as usize;
    let tail = |a: usize, b: usize| a + 1 + idx[a + 1..b].partition_point(|e| e.offset <= offset);
    let mut step = 1;
    if idx[guess].offset <= offset {
        // Invariant: idx[a].offset ≤ offset; the answer is in (a, n].
        let mut a = guess;
        loop {
            let b = (a + step).min(n);
            if b == n || idx[b].offset > offset {
                return tail(a, b);
            }
            a = b;
            step *= 2;
        }
    } else {
        // Invariant: idx[b].offset > offset; the answer is in (0, b] (idx[0] ≤ offset).
        let mut b = guess;
        loop {
            let a = b.saturating_sub(step);
            if idx[a].offset <= offset {
                return tail(a, b);
            }
            b = a;
            step *= 2;
        }
    }
}

/// Creates a new segment file with its header, synced, and returns (append handle, read
/// handle).
pub fn create(path: &Path, base_offset: u64, base_ts: u64, sync: bool) -> io::Result<(File, File)> {
    // Not O_APPEND: the writer writes records at their position, over zeros written ahead.
    let mut w = OpenOptions::new()
        .create_new(true)
        .write(true)
        .read(true)
        .open(path)?;
    w.write_all(&header_bytes(base_offset, base_ts))?;
    if sync {
        w.sync_all()?;
    }
    let r = File::open(path)?;
    Ok((w, r))
}

#[cfg(test)]
mod tests;
