//! Delivery counts per record (the message log's `delivered` / `acked`): statistics kept
//! beside the log, not part of it.
//!
//! Layout: one file per generation, `gen-…/counts-<base:020>`, holding 8 bytes per offset
//! from `base` (the generation's first offset when the file was made): `delivered` (u32 LE)
//! then `acked` (u32 LE) of the record at offset `base + i`. Offsets never counted are holes
//! (read as zeros). The file goes with its generation when retention drops it.
//!
//! Invariants and what they cost:
//! - Counts are added, never set: [`Counts::add`] reads, adds and writes back under one lock,
//!   so the callers (the broker's event loop, one call per flush) never lose each other's
//!   additions. Values saturate at `u32::MAX`.
//! - Not synced: a process crash loses nothing written (the page cache has it), a power loss
//!   may lose what the OS had not written back. Counts are statistics, outside the log's
//!   no-loss promise; a damaged counts file gives wrong numbers, never a failed read of the log.
//! - A count for a record whose generation is gone (retention) is dropped silently.
use super::shard::Generation;
use crate::error::CoreError;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes per offset in a counts file.
const STRIDE: u64 = 8;
/// Largest run of offsets read and written back in one piece (else one by one).
const MAX_SPAN: u64 = 64 * 1024;

/// One count to add: `(offset, delivered, acked)`.
pub type CountDelta = (u64, u32, u32);

/// The counts files of one log, opened as they are first needed.
#[derive(Debug, Default)]
pub struct Counts {
    /// `(shard, generation) -> (base, file)`.
    files: Mutex<HashMap<(u32, u32), (u64, File)>>,
}

fn file_name(base: u64) -> String {
    format!("counts-{base:020}")
}

/// The counts file a generation directory holds already, and its base.
fn existing(dir: &Path) -> Option<(u64, PathBuf)> {
    for ent in std::fs::read_dir(dir).ok()?.flatten() {
        let name = ent.file_name();
        if let Some(base) = name
            .to_str()
            .and_then(|n| n.strip_prefix("counts-"))
            .and_then(|b| b.parse::<u64>().ok())
        {
            return Some((base, ent.path()));
        }
    }
    None
}

fn read_full(f: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = super::segment::read_at(f, &mut buf[done..], at + done as u64)?;
        if n == 0 {
            buf[done..].fill(0); // past the end: never counted
            break;
        }
        done += n;
    }
    Ok(())
}

fn write_full(f: &File, buf: &[u8], at: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(buf, at)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            done += f.seek_write(&buf[done..], at + done as u64)?;
        }
        Ok(())
    }
}

fn get(buf: &[u8], i: usize) -> (u32, u32) {
    let d = u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    let a = u32::from_le_bytes(buf[i + 4..i + 8].try_into().expect("4 bytes"));
    (d, a)
}

fn put(buf: &mut [u8], i: usize, d: u32, a: u32) {
    buf[i..i + 4].copy_from_slice(&d.to_le_bytes());
    buf[i + 4..i + 8].copy_from_slice(&a.to_le_bytes());
}

/// The generation holding `offset` (the last whose first offset is at or below it).
fn gen_of(gens: &[Arc<Generation>], offset: u64) -> Option<&Arc<Generation>> {
    let i = gens.partition_point(|g| g.first_offset <= offset);
    i.checked_sub(1).and_then(|i| gens.get(i))
}

/// The end of the run from `i` of `len` ascending offsets (`at(k)`) that lie in generation `g`
/// (the one `at(i)` is in) and within one read of its counts file (`MAX_SPAN` offsets).
fn run_end(
    gens: &[Arc<Generation>],
    g: &Generation,
    i: usize,
    len: usize,
    at: impl Fn(usize) -> u64,
) -> usize {
    let next_first = gens
        .iter()
        .find(|x| x.first_offset > g.first_offset)
        .map_or(u64::MAX, |x| x.first_offset);
    let lo = at(i);
    let mut j = i;
    while j < len && at(j) < next_first && at(j) - lo < MAX_SPAN {
        j += 1;
    }
    j
}

impl Counts {
    /// Forget the files of generations no longer in `live` (dropped by retention).
    fn prune(files: &mut HashMap<(u32, u32), (u64, File)>, shard: u32, live: &[Arc<Generation>]) {
        files.retain(|(s, g), _| *s != shard || live.iter().any(|x| x.id == *g));
    }

    /// The file of generation `g`, made when `create` (else None when there is none).
    fn file<'a>(
        files: &'a mut HashMap<(u32, u32), (u64, File)>,
        shard: u32,
        g: &Generation,
        create: bool,
    ) -> io::Result<Option<&'a (u64, File)>> {
        use std::collections::hash_map::Entry;
        let slot = match files.entry((shard, g.id)) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let (base, path) = match existing(&g.dir) {
                    Some(f) => f,
                    None if create => (g.first_offset, g.dir.join(file_name(g.first_offset))),
                    None => return Ok(None),
                };
                // Never creates the generation's directory: one retention removed has no counts.
                let f = match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(create)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    // A reader of a store it may not write (a read-only copy): read only.
                    Err(e)
                        if !create
                            && matches!(
                                e.kind(),
                                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                            ) =>
                    {
                        File::open(&path)?
                    }
                    Err(e) => return Err(e),
                };
                v.insert((base, f))
            }
        };
        Ok(Some(&*slot))
    }

    /// Add `deltas` (any order, repeats allowed) to shard `shard`'s counts. Returns the
    /// offsets whose `acked` went from 0 to more by this call, in offset order.
    pub fn add(
        &self,
        shard: u32,
        gens: &[Arc<Generation>],
        deltas: &mut [CountDelta],
    ) -> Result<Vec<u64>, CoreError> {
        deltas.sort_unstable_by_key(|d| d.0);
        let mut first_acked = Vec::new();
        let mut files = self.files.lock().expect("poisoned");
        Self::prune(&mut files, shard, gens);
        let mut i = 0;
        while i < deltas.len() {
            let Some(g) = gen_of(gens, deltas[i].0) else {
                i += 1;
                continue; // below the log's start: gone
            };
            // The run of deltas in this generation that fits one read.
            let j = run_end(gens, g, i, deltas.len(), |k| deltas[k].0);
            let run = &deltas[i..j];
            i = j;
            let ctx =
                |e: io::Error| CoreError::from_io(format!("counts of {}", g.dir.display()), &e);
            let Some((base, f)) = Self::file(&mut files, shard, g, true).map_err(ctx)? else {
                continue;
            };
            let base = *base;
            let run: Vec<CountDelta> = run.iter().copied().filter(|d| d.0 >= base).collect();
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                continue;
            };
            let at = (first.0 - base) * STRIDE;
            let mut buf = vec![0u8; ((last.0 - first.0 + 1) * STRIDE) as usize];
            read_full(f, &mut buf, at).map_err(ctx)?;
            for &(off, d, a) in &run {
                let k = ((off - first.0) * STRIDE) as usize;
                let (od, oa) = get(&buf, k);
                if oa == 0 && a > 0 {
                    first_acked.push(off);
                }
                put(&mut buf, k, od.saturating_add(d), oa.saturating_add(a));
            }
            write_full(f, &buf, at).map_err(ctx)?;
        }
        first_acked.dedup();
        Ok(first_acked)
    }

    /// `delivered, acked` of each of `offsets` (any order, repeats allowed) of shard
    /// `shard`, back to back (zeros where nothing was counted).
    pub fn read(
        &self,
        shard: u32,
        gens: &[Arc<Generation>],
        offsets: &[u64],
    ) -> Result<Vec<u32>, CoreError> {
        if offsets.is_sorted() {
            return self.read_sorted(shard, gens, offsets);
        }
        let mut order: Vec<usize> = (0..offsets.len()).collect();
        order.sort_unstable_by_key(|&i| offsets[i]);
        let sorted: Vec<u64> = order.iter().map(|&i| offsets[i]).collect();
        let got = self.read_sorted(shard, gens, &sorted)?;
        let mut out = vec![0u32; offsets.len() * 2];
        for (k, &i) in order.iter().enumerate() {
            out[2 * i] = got[2 * k];
            out[2 * i + 1] = got[2 * k + 1];
        }
        Ok(out)
    }

    /// [`Counts::read`] of ascending `offsets`.
    fn read_sorted(
        &self,
        shard: u32,
        gens: &[Arc<Generation>],
        offsets: &[u64],
    ) -> Result<Vec<u32>, CoreError> {
        let mut out = vec![0u32; offsets.len() * 2];
        let mut files = self.files.lock().expect("poisoned");
        Self::prune(&mut files, shard, gens);
        let mut i = 0;
        while i < offsets.len() {
            let Some(g) = gen_of(gens, offsets[i]) else {
                i += 1;
                continue;
            };
            let lo = offsets[i];
            let j = run_end(gens, g, i, offsets.len(), |k| offsets[k]);
            let (a, b) = (i, j);
            i = j;
            let ctx =
                |e: io::Error| CoreError::from_io(format!("counts of {}", g.dir.display()), &e);
            let Some((base, f)) = Self::file(&mut files, shard, g, false).map_err(ctx)? else {
                continue;
            };
            let base = *base;
            let hi = offsets[b - 1];
            if hi < base {
                continue;
            }
            let first = lo.max(base);
            let mut buf = vec![0u8; ((hi - first + 1) * STRIDE) as usize];
            read_full(f, &mut buf, (first - base) * STRIDE).map_err(ctx)?;
            for (k, &o) in offsets.iter().enumerate().take(b).skip(a) {
                if o < first {
                    continue;
                }
                let (d, ak) = get(&buf, ((o - first) * STRIDE) as usize);
                out[2 * k] = d;
                out[2 * k + 1] = ak;
            }
        }
        Ok(out)
    }
}
