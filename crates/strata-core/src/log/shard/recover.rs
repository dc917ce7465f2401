//! Opening a shard from its files: generations, stream tables and segments are read,
//! checked and, where a crash or damage requires, repaired (torn tails truncated, damaged
//! segments salvaged into runs of intact records or quarantined); losses are reported in
//! the [`Recovery`]. A check ([`Recovery::check`]) reports the same and changes nothing.
use super::super::salvage;
use super::super::segment::{self, ScanEnd, Segment, HEADER_LEN};
use super::super::stream::{self, Learner, Level, Structure};
use super::{io, parse_gen_dir, Generation, Loss, Options, Recovery};
use crate::error::CoreError;
use crate::fsutil::rest_is_zero;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

/// What [`recover`] found: the shard's state for its writer and readers.
pub(super) struct Recovered {
    /// Generations, oldest first.
    pub(super) gens: Vec<Arc<Generation>>,
    /// `(generation, stream) -> records` of generations dropped by retention.
    pub(super) dropped: HashMap<(u32, u32), u64>,
    /// The shard's next offset.
    pub(super) next_offset: u64,
    /// The newest generation's structures, replayed into a learner.
    pub(super) learner: Learner,
    pub(super) structures: Vec<Structure>,
    /// The newest generation's last segment (appends continue there).
    pub(super) last_segment: Option<Arc<Segment>>,
    /// A stream table lost structures: rewrite it whole before adding a stream.
    pub(super) lost_structures: bool,
}

/// Reads the valid prefix of a streams file; returns structures and the valid length.
fn read_streams(path: &Path) -> std::io::Result<(Vec<Structure>, u64, u64)> {
    let mut b = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut b)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, 0)),
        Err(e) => return Err(e),
    }
    let mut out: Vec<Structure> = Vec::new();
    let mut p = 0usize;
    while p + 12 <= b.len() {
        let len = u32::from_le_bytes(b[p..p + 4].try_into().expect("4")) as usize;
        if len < 4 || p + 8 + len > b.len() {
            break;
        }
        let crc = u32::from_le_bytes(b[p + 4..p + 8].try_into().expect("4"));
        let body = &b[p + 8..p + 8 + len];
        if crc32c::crc32c_append(crc32c::crc32c(&b[p..p + 4]), body) != crc {
            break;
        }
        let id = u32::from_le_bytes(body[..4].try_into().expect("4")) as usize;
        let Ok(text) = std::str::from_utf8(&body[4..]) else {
            break;
        };
        if id != out.len() {
            break;
        }
        out.push(stream::structure_from_string(text));
        p += 8 + len;
    }
    Ok((out, p as u64, b.len() as u64))
}

pub(super) fn quarantine(path: &Path, rec: &mut Recovery, why: &str) {
    if rec.check {
        rec.quarantined
            .push(format!("{}: {why} (would be quarantined)", path.display()));
        return;
    }
    let to = salvage::quarantine(path)
        .map_or_else(|e| format!("not renamed: {e}"), |p| p.display().to_string());
    rec.quarantined
        .push(format!("{}: {why} (now {to})", path.display()));
}

/// Offsets from the shard's first (0, or where retention left off) to its last segment
/// that no segment holds — files missing from the directory — as losses, unless this
/// recovery already accounted for them.
fn find_holes(shard: u32, first: u64, gens: &[Arc<Generation>], rec: &mut Recovery) {
    let mut expect = first;
    for g in gens {
        for seg in g.segs() {
            let accounted =
                |l: &Loss| l.shard == shard && l.from >= expect && l.from < seg.base_offset;
            if seg.base_offset > expect && !rec.losses.iter().any(accounted) {
                rec.losses.push(Loss {
                    shard,
                    from: expect,
                    to: Some(seg.base_offset),
                    file: g.dir.display().to_string(),
                    reason: "no segment holds these offsets (files missing or dropped)".into(),
                });
            }
            expect = expect.max(seg.end_offset());
        }
    }
}

/// The base offset a segment file's name gives (`<base:020>.seg`).
pub(super) fn base_of_name(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Replaces a damaged segment by its runs of valid records (see [`salvage`]), recording
/// the losses: the gaps between runs, and after the last run up to `known_end` (its
/// sealed end or the next segment's base) when that is beyond it. Returns the new segment
/// paths.
#[allow(clippy::too_many_arguments)]
pub(super) fn salvage_segment(
    path: &Path,
    f: &File,
    base: u64,
    base_ts: u64,
    runs: &salvage::Runs,
    known_end: Option<u64>,
    shard: u32,
    rec: &mut Recovery,
) -> Result<Vec<PathBuf>, CoreError> {
    let file = path.display().to_string();
    let mut lost = 0u64;
    let mut at = base;
    for r in &runs.runs {
        if r.first > at {
            lost += r.first - at;
            rec.losses.push(Loss {
                shard,
                from: at,
                to: Some(r.first),
                file: file.clone(),
                reason: "damaged records".into(),
            });
        }
        at = r.end;
    }
    if let Some(end) = known_end.filter(|e| *e > at) {
        lost += end - at;
        rec.losses.push(Loss {
            shard,
            from: at,
            to: Some(end),
            file: file.clone(),
            reason: "damaged end of segment".into(),
        });
    }
    if rec.check {
        rec.quarantined.push(format!(
            "{file}: damaged, {lost} record(s) lost; would be salvaged into {} run(s)",
            runs.runs.iter().filter(|r| r.end > r.first).count()
        ));
        return Ok(Vec::new());
    }
    let placed = salvage::replace_with_runs(path, f, base, base_ts, &runs.runs)
        .map_err(|e| io(format!("salvage {}", path.display()), e))?;
    rec.quarantined.push(format!(
        "{file}: damaged, {lost} record(s) lost; {} run(s) of intact records kept as new segments",
        placed.len()
    ));
    Ok(placed)
}

/// Reads (recovering) the shard in `dir`. For a check, reports and returns `Closed`.
pub(super) fn recover(
    id: u32,
    dir: &Path,
    opts: &Options,
    rec: &mut Recovery,
) -> Result<Recovered, CoreError> {
    let check = rec.check;
    if check && !dir.exists() {
        return Err(CoreError::NotFound(format!("{} is missing", dir.display())));
    }
    fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
    let mut gen_dirs = Vec::new();
    for ent in fs::read_dir(dir).map_err(|e| io(format!("list {}", dir.display()), e))? {
        let ent = ent.map_err(|e| io("list shard", e))?;
        if let Some((gid, ts)) = ent.file_name().to_str().and_then(parse_gen_dir) {
            gen_dirs.push((gid, ts, ent.path()));
        }
    }
    gen_dirs.sort();
    let dropped = read_dropped(&dir.join("dropped"));
    let mut next_offset = dropped.1;
    let mut gens = Vec::new();
    let mut learner = Learner::new(opts.lts_threshold);
    let mut structures = Vec::new();
    let n_gens = gen_dirs.len();
    let mut scratch_last = None;
    let mut lost_structures = false;
    for (gi, (gid, start_ts, gdir)) in gen_dirs.into_iter().enumerate() {
        let newest = gi + 1 == n_gens;
        let spath = gdir.join("streams");
        let (mut structs, valid, total) =
            read_streams(&spath).map_err(|e| io(format!("read {}", spath.display()), e))?;
        if valid < total && check {
            rec.events.push(format!(
                "{}: would truncate {} bytes of torn stream table",
                spath.display(),
                total - valid
            ));
        } else if valid < total {
            rec.events.push(format!(
                "{}: truncated {} bytes of torn stream table",
                spath.display(),
                total - valid
            ));
            let f = OpenOptions::new()
                .write(true)
                .open(&spath)
                .map_err(|e| io("open streams", e))?;
            f.set_len(valid).map_err(|e| io("truncate streams", e))?;
            f.sync_all().map_err(|e| io("sync streams", e))?;
        }
        // A salvage a crash interrupted is finished (or undone) before anything is read.
        if !check {
            let finished = salvage::finish_interrupted(&gdir)
                .map_err(|e| io(format!("finish salvage in {}", gdir.display()), e))?;
            rec.events.extend(finished);
        }
        let mut seg_paths = Vec::new();
        for ent in fs::read_dir(&gdir).map_err(|e| io(format!("list {}", gdir.display()), e))? {
            let p = ent.map_err(|e| io("list generation", e))?.path();
            if p.extension().is_some_and(|x| x == "seg") {
                seg_paths.push(p);
            }
        }
        seg_paths.sort();
        // A segment whose creation was cut short (the process died between creating the
        // file and writing its header) holds no record: it goes, and the one before it is
        // the generation's last again (its tail is checked as such).
        while let Some(path) = seg_paths.last() {
            let f = File::open(path).map_err(|e| io(format!("open {}", path.display()), e))?;
            let flen = f.metadata().map_err(|e| io("stat segment", e))?.len();
            let valid = segment::read_header(&f).map_err(|e| io("read segment header", e))?;
            if flen > segment::HEADER_LEN || valid.is_some() {
                break;
            }
            if !check {
                fs::remove_file(path).map_err(|e| io(format!("remove {}", path.display()), e))?;
            }
            rec.events.push(format!(
                "{}: removed an empty segment left by an interrupted creation ({flen} bytes)",
                path.display()
            ));
            seg_paths.pop();
        }
        let mut segs: Vec<Arc<Segment>> = Vec::new();
        let mut first_offset = next_offset;
        // Segments still to open, in offset order; a salvaged segment's runs go first.
        let mut queue: std::collections::VecDeque<PathBuf> = seg_paths.into();
        while let Some(path) = queue.pop_front() {
            let last_in_gen = queue.is_empty();
            let active = newest && last_in_gen;
            let f = File::open(&path).map_err(|e| io(format!("open {}", path.display()), e))?;
            let flen = f.metadata().map_err(|e| io("stat segment", e))?.len();
            let named = base_of_name(&path);
            // The index as written when the segment was sealed (its end, its base time),
            // read only where the data itself cannot say.
            let index = || named.and_then(|b| segment::read_index_any(&path, b));
            let header = segment::read_header(&f).map_err(|e| io("read segment header", e))?;
            let header_bad = header.is_none();
            let Some((base, base_ts)) =
                header.or_else(|| index().map(|(ts, _)| (named.unwrap_or(0), ts)))
            else {
                let index = index();
                let to = index
                    .as_ref()
                    .map(|(_, s)| s.end_offset)
                    .or_else(|| queue.front().and_then(|p| base_of_name(p)));
                let why = "invalid header (zero-filled or foreign file)";
                quarantine(&path, rec, why);
                if let Some(from) = named {
                    rec.losses.push(Loss {
                        shard: id,
                        from,
                        to,
                        file: path.display().to_string(),
                        reason: why.into(),
                    });
                }
                continue;
            };
            if let Some(prev) = segs.last() {
                if base < prev.end_offset() {
                    quarantine(&path, rec, "overlaps the previous segment");
                    continue;
                }
            }
            let indexed = if active || header_bad {
                None
            } else {
                segment::read_index(&path, base, base_ts)
                    .filter(|s| s.data_len == flen && !opts.verify_on_open)
            };
            let (summary, sealed) = match indexed {
                Some(s) => (s, true),
                None => {
                    let (s, end) =
                        segment::rebuild_summary(&f, base, base_ts, flen, opts.index_interval)
                            .map_err(|e| io(format!("scan {}", path.display()), e))?;
                    rec.scanned_bytes += s.data_len;
                    let mut clean = end == ScanEnd::Limit;
                    if !clean || header_bad {
                        let runs = salvage::find_runs(&f, base, base_ts, flen)
                            .map_err(|e| io(format!("scan {}", path.display()), e))?;
                        // Records after the damage, a damaged end that is not a torn write
                        // (a sealed segment's recorded end), or a rebuilt header: the
                        // segment is rewritten around the damage.
                        let known_end = index().map(|(_, s)| s.end_offset);
                        let tail_lost = known_end.filter(|e| *e > s.end_offset);
                        if header_bad
                            || runs.runs.len() > 1
                            || (!last_in_gen && runs.runs[0].end > base)
                            || tail_lost.is_some()
                        {
                            let placed = salvage_segment(
                                &path,
                                &f,
                                base,
                                base_ts,
                                &runs,
                                known_end.or_else(|| queue.front().and_then(|p| base_of_name(p))),
                                id,
                                rec,
                            )?;
                            for p in placed.into_iter().rev() {
                                queue.push_front(p);
                            }
                            continue;
                        }
                        if !last_in_gen {
                            quarantine(
                                &path,
                                rec,
                                &format!("sealed segment fails verification at {end:?}"),
                            );
                            rec.losses.push(Loss {
                                shard: id,
                                from: base,
                                to: queue.front().and_then(|p| base_of_name(p)),
                                file: path.display().to_string(),
                                reason: format!("no readable record ({end:?})"),
                            });
                            continue;
                        }
                        // The last segment of a generation may end in a torn write
                        // (the generation rolled, or the process died, mid-batch).
                        let zero_tail = (&f)
                            .seek(SeekFrom::Start(s.data_len))
                            .and_then(|_| rest_is_zero(&mut &f, flen - s.data_len))
                            .unwrap_or(false);
                        if !check {
                            let w = OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .map_err(|e| io("open for truncate", e))?;
                            w.set_len(s.data_len).map_err(|e| io("truncate tail", e))?;
                            w.sync_all().map_err(|e| io("sync truncated tail", e))?;
                        }
                        rec.truncated_bytes += flen - s.data_len;
                        rec.events.push(if zero_tail {
                            // What a stop without a clean close leaves: the zeros the
                            // writer writes ahead of its records (writer::zero_ahead).
                            format!(
                                "{}: cut {} bytes of zeros after the last record",
                                path.display(),
                                flen - s.data_len
                            )
                        } else {
                            format!(
                                "{}: truncated {} bytes of torn/corrupt tail ({:?})",
                                path.display(),
                                flen - s.data_len,
                                end
                            )
                        });
                        clean = true;
                    }
                    let mut s = s;
                    s.data_len = s.data_len.max(HEADER_LEN);
                    if active {
                        (s, false)
                    } else {
                        debug_assert!(clean);
                        if !check {
                            segment::write_index(&path, base, base_ts, &s)
                                .map_err(|e| io("write index", e))?;
                        }
                        rec.events
                            .push(format!("{}: rebuilt index", path.display()));
                        rec.rebuilt_indexes += 1;
                        (s, true)
                    }
                }
            };
            rec.segments += 1;
            for (sid, _) in summary.streams.iter() {
                while structs.len() <= *sid as usize {
                    // Lost structure (a damaged stream table): match anything. The
                    // table is rewritten whole before the next stream is added.
                    structs.push(vec![Level::Rest]);
                    lost_structures |= newest;
                }
            }
            rec.records += summary.records;
            if segs.is_empty() {
                first_offset = first_offset.min(base);
            }
            next_offset = next_offset.max(summary.end_offset);
            segs.push(Arc::new(Segment::new(
                path, f, base, base_ts, summary, sealed,
            )));
        }
        if newest {
            for (i, s) in structs.iter().enumerate() {
                learner.replay(i as u32, s);
            }
            structures = structs.clone();
            scratch_last = segs.last().cloned();
        }
        gens.push(Arc::new(Generation {
            id: gid,
            start_ts,
            first_offset,
            dir: gdir,
            segments: RwLock::new(segs),
            streams: RwLock::new(structs),
            sealed: AtomicBool::new(!newest),
            quarantined: Mutex::new(Vec::new()),
            shard: id,
            losses: Mutex::new(Vec::new()),
            salvaging: Mutex::new(()),
        }));
    }
    find_holes(id, dropped.1, &gens, rec);
    rec.shard_ends.push((id, next_offset));
    if check {
        return Err(CoreError::Closed("opened for a check only".into()));
    }
    Ok(Recovered {
        gens,
        dropped: dropped.0,
        next_offset,
        learner,
        structures,
        last_segment: scratch_last,
        lost_structures,
    })
}

fn read_dropped(path: &Path) -> (HashMap<(u32, u32), u64>, u64) {
    let mut m = HashMap::new();
    let mut end = 0;
    if let Ok(text) = fs::read_to_string(path) {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(g), Some(e)) = (it.next(), it.next()) else {
                continue;
            };
            let (Ok(g), Ok(e)) = (g.parse::<u32>(), e.parse::<u64>()) else {
                continue;
            };
            end = end.max(e);
            for kv in it {
                if let Some((s, n)) = kv.split_once(':') {
                    if let (Ok(s), Ok(n)) = (s.parse(), n.parse()) {
                        m.insert((g, s), n);
                    }
                }
            }
        }
    }
    (m, end)
}
