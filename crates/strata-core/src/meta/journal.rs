//! `meta.journal`: the second copy of the metadata, an append-only file of
//! checksummed frames.
//!
//! ```text
//! header  = magic "STRMJRNL" | version u32 (1) | crc32c of the previous 12 bytes u32
//! frame   = [len u32][crc32c u32][body: len bytes]     crc over the 4 len bytes + body
//! body    = seq u64 | kind u8 | op*
//! kind    = 0 commit | 1 snapshot part | 2 snapshot end
//! op      = tag u8 (1 put, 2 delete, 3 delete prefix) | table id u8
//!         | key len u32 | key | (put only) value len u32 | value
//! ```
//! All integers little-endian.
//!
//! Invariants:
//! - A journal starts with a complete snapshot: zero or more `snapshot part` frames and
//!   one `snapshot end` frame, all carrying the same seq `S` (the commit the snapshot
//!   was taken at; parts hold only puts). Replaying it onto an empty state gives the
//!   committed state at `S`. A journal whose snapshot is incomplete is unusable.
//! - After the snapshot come `commit` frames with seq `S+1, S+2, …` without gaps, one
//!   per group commit, holding that commit's operations in order.
//! - `len >= 9` and `len <= MAX_BODY`: a zero-filled region is never a frame.
//! - A journal is only ever replaced whole: a new one is written to `meta.journal.tmp`,
//!   fsynced, renamed over `meta.journal`, and the directory fsynced.
use super::state::State;
use super::{Op, Table};
use crate::error::CoreError;
use crate::fsutil::rest_is_zero;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the journal inside the data directory.
pub(crate) const FILE: &str = "meta.journal";
/// File name a new journal is written to before it replaces the old one.
pub(crate) const TMP_FILE: &str = "meta.journal.tmp";

const MAGIC: &[u8; 8] = b"STRMJRNL";
const VERSION: u32 = 1;
/// Bytes of the file header.
pub(crate) const HEADER_LEN: u64 = 16;
/// Bytes of a frame header (`len` + `crc`).
const FRAME_HEADER: u64 = 8;
/// Smallest body: seq and kind.
const MIN_BODY: usize = 9;
/// Largest body accepted.
pub(crate) const MAX_BODY: usize = 1 << 30;
/// A snapshot part is closed once its body reaches this size.
const SNAPSHOT_PART: usize = 1 << 20;

const KIND_COMMIT: u8 = 0;
const KIND_SNAPSHOT: u8 = 1;
const KIND_SNAPSHOT_END: u8 = 2;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_PREFIX: u8 = 3;

fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encoded size of one operation.
pub(crate) fn op_len(op: &Op) -> usize {
    match op {
        Op::Put(_, k, v) => 2 + 4 + k.len() + 4 + v.len(),
        Op::Delete(_, k) | Op::DeletePrefix(_, k) => 2 + 4 + k.len(),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Put(t, k, v) => {
            out.extend_from_slice(&[TAG_PUT, t.id()]);
            put_bytes(out, k);
            put_bytes(out, v);
        }
        Op::Delete(t, k) => {
            out.extend_from_slice(&[TAG_DELETE, t.id()]);
            put_bytes(out, k);
        }
        Op::DeletePrefix(t, p) => {
            out.extend_from_slice(&[TAG_DELETE_PREFIX, t.id()]);
            put_bytes(out, p);
        }
    }
}

/// Starts a frame in `out`: reserves the frame header and writes seq and kind.
/// Returns the frame's start, for [`end_frame`].
fn begin_frame(out: &mut Vec<u8>, seq: u64, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER as usize]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    start
}

/// Fills in the length and checksum of the frame begun at `start`.
fn end_frame(out: &mut [u8], start: usize) {
    let body_len = (out.len() - start - FRAME_HEADER as usize) as u32;
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&body_len.to_le_bytes()),
        &out[start + FRAME_HEADER as usize..],
    );
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes one commit frame holding `ops` (in order) into `out` (appended).
pub(crate) fn encode_commit<'a>(out: &mut Vec<u8>, seq: u64, ops: impl Iterator<Item = &'a Op>) {
    let start = begin_frame(out, seq, KIND_COMMIT);
    for op in ops {
        encode_op(out, op);
    }
    end_frame(out, start);
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    take(b, 4).map(|x| u32::from_le_bytes(x.try_into().expect("4 bytes")))
}

fn take_bytes(b: &mut &[u8]) -> Option<Vec<u8>> {
    let n = take_u32(b)? as usize;
    take(b, n).map(<[u8]>::to_vec)
}

/// Decodes a checked body: seq, kind and operations.
fn decode_body(body: &[u8]) -> Result<(u64, u8, Vec<Op>), String> {
    let mut b = body;
    let seq = u64::from_le_bytes(
        take(&mut b, 8)
            .ok_or("short body")?
            .try_into()
            .expect("8 bytes"),
    );
    let kind = take(&mut b, 1).ok_or("short body")?[0];
    if kind > KIND_SNAPSHOT_END {
        return Err(format!("unknown frame kind {kind}"));
    }
    let mut ops = Vec::new();
    while !b.is_empty() {
        let h = take(&mut b, 2).ok_or("truncated operation")?;
        let table = Table::from_id(h[1]).ok_or_else(|| format!("unknown table id {}", h[1]))?;
        let key = take_bytes(&mut b).ok_or("truncated key")?;
        ops.push(match h[0] {
            TAG_PUT => Op::Put(table, key, take_bytes(&mut b).ok_or("truncated value")?),
            TAG_DELETE => Op::Delete(table, key),
            TAG_DELETE_PREFIX => Op::DeletePrefix(table, key),
            t => return Err(format!("unknown operation tag {t}")),
        });
    }
    Ok((seq, kind, ops))
}

/// What follows the last valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Nothing: the file ends after a valid frame.
    Clean,
    /// What a crash in the middle of appending a frame leaves: an incomplete frame,
    /// a last frame whose bytes did not all reach the disk, or zeros.
    Torn { bytes: u64 },
    /// Bytes that no crash of the writer can produce (a bad frame followed by more
    /// data, a checksummed frame out of sequence…): frames after it may be lost.
    Damaged { bytes: u64, why: String },
}

/// A journal that could be replayed.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The state after replaying every valid frame.
    pub(crate) state: State,
    /// Seq of the last valid frame (`J`).
    pub(crate) seq: u64,
    /// Size of the journal right after its snapshot (the base of the compaction
    /// threshold).
    pub(crate) snapshot_len: u64,
    /// Bytes of header and valid frames.
    pub(crate) valid_len: u64,
    /// Offset of the first commit frame whose seq is greater than the `after` asked
    /// for, when the journal still holds every commit after it (`after >= S`).
    pub(crate) resume: Option<u64>,
    /// What follows the valid frames.
    pub(crate) tail: Tail,
}

/// What reading the journal found.
#[derive(Debug)]
pub(crate) enum Found {
    /// No journal file.
    Missing,
    /// A journal that cannot be replayed (invalid header, incomplete snapshot).
    Unusable(String),
    /// A journal whose valid frames could be replayed.
    Usable(Box<Scan>),
}

/// Replays the journal at `path`. `after`: record where the commits after this seq
/// start ([`Scan::resume`]). I/O errors other than a missing file are errors.
pub(crate) fn read(path: &Path, after: Option<u64>) -> Result<Found, CoreError> {
    let io_err = |e: io::Error| CoreError::from_io(format!("read {}", path.display()), &e);
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(io_err(e)),
    };
    let file_len = f.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(256 * 1024, f);
    if file_len < HEADER_LEN {
        return Ok(Found::Unusable(format!(
            "{file_len} bytes, shorter than the journal header"
        )));
    }
    let mut h = [0u8; HEADER_LEN as usize];
    r.read_exact(&mut h).map_err(io_err)?;
    if h != header() {
        return Ok(Found::Unusable(if h[..8] == *MAGIC {
            "unsupported version or damaged header".to_string()
        } else {
            "not a journal (bad magic)".to_string()
        }));
    }
    let mut state = State::default();
    let mut pos = HEADER_LEN;
    let mut snapshot: Option<(u64, bool)> = None; // (seq, ended)
    let mut snapshot_len = 0;
    let mut seq = 0;
    let mut resume = None;
    let mut body = Vec::new();
    let tail = loop {
        let rest = file_len - pos;
        if rest == 0 {
            break Tail::Clean;
        }
        if rest < FRAME_HEADER {
            break Tail::Torn { bytes: rest };
        }
        let mut fh = [0u8; FRAME_HEADER as usize];
        r.read_exact(&mut fh).map_err(io_err)?;
        let len = u32::from_le_bytes(fh[..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(fh[4..].try_into().expect("4"));
        if fh == [0u8; 8] {
            if rest_is_zero(&mut r, rest - FRAME_HEADER).map_err(io_err)? {
                break Tail::Torn { bytes: rest };
            }
            break Tail::Damaged {
                bytes: rest,
                why: format!("zeros followed by data at offset {pos}"),
            };
        }
        if !(MIN_BODY..=MAX_BODY).contains(&len) {
            break Tail::Damaged {
                bytes: rest,
                why: format!("invalid frame length {len} at offset {pos}"),
            };
        }
        if FRAME_HEADER + len as u64 > rest {
            break Tail::Torn { bytes: rest };
        }
        body.resize(len, 0);
        r.read_exact(&mut body).map_err(io_err)?;
        if crc32c::crc32c_append(crc32c::crc32c(&fh[..4]), &body) != crc {
            let after_frame = rest - FRAME_HEADER - len as u64;
            if after_frame == 0 {
                break Tail::Torn { bytes: rest };
            }
            break Tail::Damaged {
                bytes: rest,
                why: format!(
                    "checksum mismatch in the frame at offset {pos}, {after_frame} bytes follow it"
                ),
            };
        }
        let (fseq, kind, ops) = match decode_body(&body) {
            Ok(x) => x,
            Err(why) => {
                break Tail::Damaged {
                    bytes: rest,
                    why: format!("frame at offset {pos}: {why}"),
                }
            }
        };
        let in_order = match (snapshot, kind) {
            (None, KIND_SNAPSHOT | KIND_SNAPSHOT_END) => true,
            (Some((s, false)), KIND_SNAPSHOT | KIND_SNAPSHOT_END) => fseq == s,
            (Some((_, true)), KIND_COMMIT) => fseq == seq + 1,
            _ => false,
        };
        if !in_order || (kind != KIND_COMMIT && ops.iter().any(|o| !matches!(o, Op::Put(..)))) {
            break Tail::Damaged {
                bytes: rest,
                why: format!("frame at offset {pos} (seq {fseq}, kind {kind}) out of sequence"),
            };
        }
        if kind == KIND_COMMIT && resume.is_none() && after.is_some_and(|a| a < fseq) {
            resume = Some(pos);
        }
        for op in ops {
            state.apply(op);
        }
        pos += FRAME_HEADER + len as u64;
        seq = fseq;
        match kind {
            KIND_SNAPSHOT => snapshot = Some((fseq, false)),
            KIND_SNAPSHOT_END => {
                snapshot = Some((fseq, true));
                snapshot_len = pos;
            }
            _ => {}
        }
    };
    let snapshot_seq = match snapshot {
        Some((s, true)) => s,
        _ => {
            return Ok(Found::Unusable(format!(
                "the snapshot it starts with is incomplete ({} of {file_len} bytes readable{})",
                pos,
                match &tail {
                    Tail::Damaged { why, .. } => format!(": {why}"),
                    _ => String::new(),
                }
            )))
        }
    };
    if after.is_some_and(|a| a < snapshot_seq) {
        resume = None;
    }
    Ok(Found::Usable(Box::new(Scan {
        state,
        seq,
        snapshot_len,
        valid_len: pos,
        resume,
        tail,
    })))
}

/// Calls `f` with the operations of every commit frame from `offset` (a
/// [`Scan::resume`]) up to `end` (its `valid_len`), in order.
pub(crate) fn for_each_commit_from(
    path: &Path,
    offset: u64,
    end: u64,
    mut f: impl FnMut(u64, Vec<Op>) -> Result<(), CoreError>,
) -> Result<(), CoreError> {
    let io_err = |e: io::Error| CoreError::from_io(format!("read {}", path.display()), &e);
    let mut file = File::open(path).map_err(io_err)?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut pos = offset;
    let mut body = Vec::new();
    while pos < end {
        let mut fh = [0u8; FRAME_HEADER as usize];
        r.read_exact(&mut fh).map_err(io_err)?;
        let len = u32::from_le_bytes(fh[..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(fh[4..].try_into().expect("4"));
        if !(MIN_BODY..=MAX_BODY).contains(&len) {
            return Err(CoreError::Corrupt(format!(
                "{} changed while being read (offset {pos})",
                path.display()
            )));
        }
        body.resize(len, 0);
        r.read_exact(&mut body).map_err(io_err)?;
        if crc32c::crc32c_append(crc32c::crc32c(&fh[..4]), &body) != crc {
            return Err(CoreError::Corrupt(format!(
                "{} changed while being read (offset {pos})",
                path.display()
            )));
        }
        let (seq, _, ops) = decode_body(&body).map_err(CoreError::Corrupt)?;
        f(seq, ops)?;
        pos += FRAME_HEADER + len as u64;
    }
    Ok(())
}

/// Writes a new journal: a snapshot at `seq` of the entries [`SnapshotWriter::put`]
/// is given, to `meta.journal.tmp`; [`SnapshotWriter::install`] makes it the journal.
#[derive(Debug)]
pub(crate) struct SnapshotWriter {
    dir: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
    seq: u64,
    part: Vec<u8>,
    part_start: usize,
    len: u64,
    installed: bool,
}

impl SnapshotWriter {
    /// Creates (truncating) `meta.journal.tmp` in `dir`.
    pub(crate) fn create(dir: &Path, seq: u64) -> io::Result<Self> {
        let tmp = dir.join(TMP_FILE);
        let mut w = BufWriter::with_capacity(256 * 1024, File::create(&tmp)?);
        w.write_all(&header())?;
        let mut part = Vec::with_capacity(SNAPSHOT_PART + 4096);
        let part_start = begin_frame(&mut part, seq, KIND_SNAPSHOT);
        Ok(SnapshotWriter {
            dir: dir.to_path_buf(),
            tmp,
            w: Some(w),
            seq,
            part,
            part_start,
            len: HEADER_LEN,
            installed: false,
        })
    }

    fn flush_part(&mut self, kind: u8) -> io::Result<()> {
        self.part[self.part_start + FRAME_HEADER as usize + 8] = kind;
        end_frame(&mut self.part, self.part_start);
        self.w
            .as_mut()
            .expect("writer present until install")
            .write_all(&self.part)?;
        self.len += self.part.len() as u64;
        self.part.clear();
        self.part_start = begin_frame(&mut self.part, self.seq, KIND_SNAPSHOT);
        Ok(())
    }

    /// Adds one entry.
    pub(crate) fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> io::Result<()> {
        let body = self.part.len() - self.part_start - FRAME_HEADER as usize;
        let add = 2 + 4 + key.len() + 4 + value.len();
        if body > MIN_BODY && body + add > SNAPSHOT_PART {
            self.flush_part(KIND_SNAPSHOT)?;
        }
        self.part.extend_from_slice(&[TAG_PUT, table.id()]);
        put_bytes(&mut self.part, key);
        put_bytes(&mut self.part, value);
        Ok(())
    }

    /// Ends the snapshot and fsyncs the file, then (when `quarantine` is given)
    /// renames the current journal to that name, then renames the new one over
    /// `meta.journal` and fsyncs the directory. Returns the new journal's length.
    pub(crate) fn install(mut self, quarantine: Option<&Path>) -> io::Result<u64> {
        self.flush_part(KIND_SNAPSHOT_END)?;
        let w = self.w.take().expect("writer present until install");
        let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        drop(f);
        let path = self.dir.join(FILE);
        if let Some(q) = quarantine {
            fs::rename(&path, q)?;
        }
        fs::rename(&self.tmp, &path)?;
        self.installed = true;
        sync_dir(&self.dir)?;
        Ok(self.len)
    }
}

impl Drop for SnapshotWriter {
    /// A snapshot that was not installed leaves no temp file behind (best effort).
    fn drop(&mut self) {
        drop(self.w.take());
        if !self.installed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

pub(crate) use crate::fsutil::sync_dir;

/// The open journal, appended to by the metadata writer thread.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes of valid frames (the append position).
    len: u64,
    /// Size right after the last snapshot was written.
    base_len: u64,
}

/// The journal is compacted once it is larger than this, and than
/// `COMPACT_FACTOR` × its size right after the last compaction.
pub(crate) const COMPACT_MIN: u64 = 8 << 20;
/// See [`COMPACT_MIN`].
pub(crate) const COMPACT_FACTOR: u64 = 4;

impl Journal {
    /// Opens the journal in `dir` for appending at `len` (its valid length).
    pub(crate) fn open(dir: &Path, len: u64, base_len: u64) -> io::Result<Journal> {
        let path = dir.join(FILE);
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        if file.metadata()?.len() != len {
            return Err(io::Error::other(format!(
                "{} is not {len} bytes long",
                path.display()
            )));
        }
        file.seek(SeekFrom::Start(len))?;
        Ok(Journal {
            path,
            file,
            len,
            base_len,
        })
    }

    /// Appends one encoded frame; `sync`: fdatasync it. On failure the file is cut
    /// back to its previous length (best effort: the caller replaces a journal whose
    /// append failed anyway) and the error returned.
    pub(crate) fn append(&mut self, frame: &[u8], sync: bool) -> io::Result<()> {
        let r =
            self.file
                .write_all(frame)
                .and_then(|_| if sync { self.file.sync_data() } else { Ok(()) });
        match r {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                let _ = self.file.seek(SeekFrom::Start(self.len));
                Err(e)
            }
        }
    }

    /// fdatasyncs what was appended.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Bytes of valid frames (the whole file).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Size right after the last snapshot was written.
    pub(crate) fn base_len(&self) -> u64 {
        self.base_len
    }

    /// Whether the journal has grown enough to be compacted.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.len > COMPACT_MIN.max(COMPACT_FACTOR.saturating_mul(self.base_len))
    }

    /// Path of the journal file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
