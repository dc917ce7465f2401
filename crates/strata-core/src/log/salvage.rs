//! Salvage of a segment whose records are damaged in the middle: a damaged record costs
//! that record, not the rest of the segment.
//!
//! A segment is read as *runs* of valid, contiguous records separated by damaged bytes.
//! After a damaged region the next valid record is found again by its frame: a length in
//! range, an offset delta that fits what the damaged bytes can have held, a timestamp not
//! before the last good one, and a matching crc32c. The offsets in between are the records
//! lost — exact, since offsets are gap-free.
//!
//! When there is damage with valid records after it, the segment is replaced by one
//! segment per run — the first keeps the segment's base offset, each later one is based at
//! its first offset (records re-based: offset delta and crc patched, nothing else changes)
//! — and the original file is quarantined (`*.seg.corrupt`, never deleted). The gaps
//! between the runs are then ordinary gaps between segments, which every reader already
//! counts as records gone.
//!
//! Crash safety of the replacement: every run is written to `<base>.salvage-<run base>`
//! and synced, then the original is renamed to `.corrupt`, then the runs are renamed to
//! `<run base>.seg`. [`finish_interrupted`] completes or undoes an interrupted replacement
//! at open: temps whose original still exists are removed (it is salvaged again), temps
//! whose original is gone are put in place.
use super::record::{self, FRAME_HEADER, MAX_BODY, MIN_BODY};
use super::segment::{self, ScanEnd, HEADER_LEN};
use crate::fsutil::sync_dir;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Valid, contiguous records of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Offset of the first record.
    pub first: u64,
    /// Offset one past the last record.
    pub end: u64,
    /// Byte position of the first record's frame.
    pub from_pos: u64,
    /// Byte position one past the last record's frame.
    pub to_pos: u64,
    /// Timestamp of the last record.
    pub last_ts: u64,
}

/// How a segment file reads: its runs, and where its last run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Runs {
    /// At least one (possibly empty: `first == end`), in file order.
    pub runs: Vec<Run>,
    /// Byte position of damage after the last run with no valid record after it (a torn
    /// or garbled tail), if any.
    pub tail: Option<u64>,
}

impl Runs {
    /// True when the file reads cleanly to its end.
    pub fn clean(&self) -> bool {
        self.runs.len() == 1 && self.tail.is_none()
    }
}

/// Reads `file` (segment header already validated: `base`, `base_ts`) up to byte `limit`
/// as runs of valid records.
pub(crate) fn find_runs(file: &File, base: u64, base_ts: u64, limit: u64) -> io::Result<Runs> {
    let mut scratch = Vec::new();
    let mut runs = Vec::new();
    let mut from = HEADER_LEN;
    let mut expect = base;
    let mut last_ts = base_ts;
    loop {
        let mut run = Run {
            first: expect,
            end: expect,
            from_pos: from,
            to_pos: from,
            last_ts,
        };
        let end = segment::scan(
            file,
            base,
            base_ts,
            from,
            limit,
            &mut scratch,
            |pos, n, r| {
                if r.offset != run.end || r.timestamp < run.last_ts {
                    return false;
                }
                run.end = r.offset + 1;
                run.to_pos = pos + n as u64;
                run.last_ts = r.timestamp;
                true
            },
        )?;
        runs.push(run);
        expect = run.end;
        last_ts = run.last_ts;
        let bad = match end {
            ScanEnd::Limit => return Ok(Runs { runs, tail: None }),
            ScanEnd::Stopped(p) | ScanEnd::Corrupt(p) | ScanEnd::Incomplete(p) => p,
        };
        match resync(file, base, base_ts, bad, limit, expect, last_ts)? {
            Some((pos, offset)) => {
                from = pos;
                expect = offset;
            }
            None => {
                return Ok(Runs {
                    runs,
                    tail: Some(bad),
                })
            }
        }
    }
}

/// Bytes read at a time while looking for the next valid record.
const WINDOW: usize = 1 << 20;

/// The first valid record after damaged bytes starting at `bad`: `(position, offset)`.
fn resync(
    file: &File,
    base: u64,
    base_ts: u64,
    bad: u64,
    limit: u64,
    expect: u64,
    last_ts: u64,
) -> io::Result<Option<(u64, u64)>> {
    let min_frame = (FRAME_HEADER + MIN_BODY) as u64;
    let mut buf = vec![0u8; WINDOW + 16];
    let mut frame = Vec::new();
    let mut start = bad + 1;
    while start + min_frame <= limit {
        let want = ((limit - start) as usize).min(buf.len());
        let got = read_full(file, &mut buf[..want], start)?;
        if got < 16.min(want) {
            return Ok(None);
        }
        // Candidates whose 16-byte head lies in this window; the next window starts where
        // the last whole head ended.
        let heads = got.saturating_sub(15).max(1);
        for i in 0..heads {
            let q = start + i as u64;
            if q + min_frame > limit {
                return Ok(None);
            }
            let h = &buf[i..];
            if h.len() < 16 {
                break;
            }
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if !(MIN_BODY..=MAX_BODY).contains(&len) || q + (FRAME_HEADER + len) as u64 > limit {
                continue;
            }
            let od = u64::from(u32::from_le_bytes([h[8], h[9], h[10], h[11]]));
            let td = u64::from(u32::from_le_bytes([h[12], h[13], h[14], h[15]]));
            // The damaged bytes [bad, q) held at most one record per smallest frame.
            let most = expect + (q - bad) / min_frame + 1;
            let offset = base + od;
            if offset < expect || offset > most || base_ts + td < last_ts {
                continue;
            }
            frame.resize(FRAME_HEADER + len, 0);
            if read_full(file, &mut frame, q)? < frame.len() {
                continue;
            }
            if let Ok((r, _)) = record::decode(&frame, base, base_ts) {
                if r.offset == offset {
                    return Ok(Some((q, offset)));
                }
            }
        }
        start += heads as u64;
    }
    Ok(None)
}

fn read_full(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = segment::read_at(file, &mut buf[filled..], at + filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn temp_name(dir: &Path, orig_base: u64, run_base: u64) -> PathBuf {
    dir.join(format!("{orig_base:020}.salvage-{run_base:020}"))
}

/// Writes each non-empty run of `path` as a segment of its own and quarantines `path`
/// (see the module doc for the order). Returns the new segment paths in offset order.
pub(crate) fn replace_with_runs(
    path: &Path,
    file: &File,
    base: u64,
    base_ts: u64,
    runs: &[Run],
) -> io::Result<Vec<PathBuf>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut placed = Vec::new();
    for run in runs.iter().filter(|r| r.end > r.first) {
        let tmp = temp_name(dir, base, run.first);
        write_run(&tmp, file, base, base_ts, run)?;
        placed.push((tmp, dir.join(segment::seg_name(run.first))));
    }
    sync_dir(dir)?;
    quarantine(path)?;
    sync_dir(dir)?;
    for (tmp, seg) in &placed {
        fs::rename(tmp, seg)?;
    }
    sync_dir(dir)?;
    Ok(placed.into_iter().map(|(_, seg)| seg).collect())
}

/// Copies one run into a new segment file at `to`, based at the run's first offset.
fn write_run(to: &Path, file: &File, base: u64, base_ts: u64, run: &Run) -> io::Result<()> {
    let mut data = vec![0u8; (run.to_pos - run.from_pos) as usize];
    if read_full(file, &mut data, run.from_pos)? < data.len() {
        return Err(io::Error::other("segment shrank while being salvaged"));
    }
    if run.first != base {
        // Re-base: each record's offset delta is relative to its segment's base.
        let shift = (run.first - base) as u32;
        let mut p = 0usize;
        while p < data.len() {
            let len = u32::from_le_bytes(data[p..p + 4].try_into().expect("4")) as usize;
            let body = p + FRAME_HEADER;
            let od = u32::from_le_bytes(data[body..body + 4].try_into().expect("4")) - shift;
            data[body..body + 4].copy_from_slice(&od.to_le_bytes());
            let crc =
                crc32c::crc32c_append(crc32c::crc32c(&data[p..p + 4]), &data[body..body + len]);
            data[p + 4..p + 8].copy_from_slice(&crc.to_le_bytes());
            p = body + len;
        }
    }
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(to)?;
    f.write_all(&segment::header_bytes(run.first, base_ts))?;
    f.write_all(&data)?;
    f.sync_all()
}

/// Renames a damaged file aside, never over an earlier one: `<name>.corrupt`, else
/// `<name>.corrupt.1`, `.2`, … Returns the new path.
pub(crate) fn aside(path: &Path) -> io::Result<PathBuf> {
    let mut q = path.as_os_str().to_owned();
    q.push(".corrupt");
    let mut to = PathBuf::from(&q);
    let mut n = 0;
    while to.exists() {
        n += 1;
        to = PathBuf::from(format!("{}.{n}", q.to_string_lossy()));
    }
    fs::rename(path, &to)?;
    Ok(to)
}

/// Renames a damaged segment (and its index) aside: `*.seg.corrupt`, `*.idx.corrupt`.
pub(crate) fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let to = aside(path)?;
    let idx = segment::idx_path(path);
    if idx.exists() {
        aside(&idx)?;
    }
    Ok(to)
}

/// Completes or undoes salvages a crash interrupted in generation directory `dir`.
/// Returns what was done, for the recovery log.
///
/// Runs are put in place in offset order, the first (named like the original) first. So
/// when `<orig>.seg` is there and reads cleanly to its end with temps left, it is the
/// first run already in place: the rest follows. When it is there and damaged, the
/// original was never quarantined: the temps go and the segment is salvaged again.
pub(crate) fn finish_interrupted(dir: &Path) -> io::Result<Vec<String>> {
    let mut groups: std::collections::BTreeMap<u64, Vec<(u64, PathBuf)>> = Default::default();
    for ent in fs::read_dir(dir)? {
        let p = ent?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some((orig, run)) = name.split_once(".salvage-") {
            if let (Ok(orig), Ok(run)) = (orig.parse::<u64>(), run.parse::<u64>()) {
                groups.entry(orig).or_default().push((run, p));
            }
        }
    }
    let mut events = Vec::new();
    for (orig, mut temps) in groups {
        temps.sort();
        let original = dir.join(segment::seg_name(orig));
        let forward = match File::open(&original) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
            Ok(f) => {
                let first_pending = temps.first().is_some_and(|(run, _)| *run == orig);
                !first_pending && reads_cleanly(&f)?
            }
        };
        for (run, tmp) in temps {
            if forward {
                let seg = dir.join(segment::seg_name(run));
                fs::rename(&tmp, &seg)?;
                events.push(format!(
                    "{}: finished an interrupted salvage",
                    seg.display()
                ));
            } else {
                fs::remove_file(&tmp)?;
                events.push(format!(
                    "{}: removed an unfinished salvage copy",
                    tmp.display()
                ));
            }
        }
    }
    sync_dir(dir)?;
    Ok(events)
}

fn reads_cleanly(f: &File) -> io::Result<bool> {
    let Some((base, base_ts)) = segment::read_header(f)? else {
        return Ok(false);
    };
    let len = f.metadata()?.len();
    Ok(find_runs(f, base, base_ts, len)?.clean())
}

#[cfg(test)]
mod tests;
