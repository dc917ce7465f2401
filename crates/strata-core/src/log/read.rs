//! Reading the log by stream cursor ([`Log::read`]) and by position ([`Log::read_at`]).
//! Shard-wide session replay reads are in [`super::scan()`].
use super::shard::{self, StreamRead};
use super::{
    now_ms, position, with_scratch, Cursor, Log, Offset, Position, ReadResult, ReadStatus,
    RecordRef, StreamId,
};
use crate::error::CoreError;
use std::sync::Arc;

impl Log {
    /// A cursor at the start of `stream`.
    pub fn cursor(&self, stream: StreamId, filter: Option<String>) -> Cursor {
        let offset = self
            .generation(stream)
            .ok()
            .and_then(|g| {
                g.segments
                    .read()
                    .expect("poisoned")
                    .first()
                    .map(|s| s.base_offset)
            })
            .unwrap_or(0);
        Cursor {
            stream,
            offset: Offset(offset),
            seen: 0,
            filter,
        }
    }

    pub(super) fn generation(&self, id: StreamId) -> Result<Arc<shard::Generation>, CoreError> {
        self.shard(id.shard)?
            .shared
            .generations()
            .into_iter()
            .find(|g| g.id == id.generation)
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "generation {} of shard {}",
                    id.generation, id.shard
                ))
            })
    }

    /// Moves `cur` to `offset` (clamped into its generation).
    pub fn seek(&self, cur: &mut Cursor, offset: Offset) -> Result<(), CoreError> {
        let g = self.generation(cur.stream)?;
        let seen = with_scratch(|s| shard::count_before(&g, cur.stream.stream, offset.0, s))?;
        cur.offset = offset;
        cur.seen = seen;
        Ok(())
    }

    /// Moves `cur` to the first record at or after `ts_ms`.
    pub fn seek_time(&self, cur: &mut Cursor, ts_ms: u64) -> Result<(), CoreError> {
        let g = self.generation(cur.stream)?;
        let off = with_scratch(|s| shard::offset_at_time(&g, ts_ms, s))?;
        self.seek(cur, Offset(off))
    }

    /// Reads up to `batch` records from `cur`, handing each to `sink` and advancing
    /// the cursor. Records failing the cursor's filter are passed over silently;
    /// records past their retention are counted in `skipped`.
    pub fn read(
        &self,
        cur: &mut Cursor,
        batch: usize,
        sink: &mut dyn FnMut(&RecordRef<'_>),
    ) -> Result<ReadResult, CoreError> {
        let shard = self.shard(cur.stream.shard)?;
        let Some(g) = shard
            .shared
            .generations()
            .into_iter()
            .find(|g| g.id == cur.stream.generation)
        else {
            let dropped = shard
                .shared
                .dropped
                .lock()
                .expect("poisoned")
                .get(&(cur.stream.generation, cur.stream.stream))
                .copied();
            let newest = shard.shared.generations().last().map_or(0, |g| g.id);
            if dropped.is_none() && cur.stream.generation > newest {
                return Err(CoreError::NotFound(format!(
                    "generation {} of shard {}",
                    cur.stream.generation, cur.stream.shard
                )));
            }
            let skipped = dropped.unwrap_or(0).saturating_sub(cur.seen);
            cur.seen += skipped;
            return Ok(ReadResult {
                status: ReadStatus::End,
                delivered: 0,
                skipped,
            });
        };
        let visible = self.visibility(now_ms());
        let req = StreamRead {
            batch,
            filter: cur.filter.as_deref(),
            visible: &visible,
        };
        let mut off = cur.offset.0;
        let mut seen = cur.seen;
        let raw = with_scratch(|s| {
            shard::read_stream(&g, cur.stream.stream, &mut off, &mut seen, &req, s, sink)
        })?;
        cur.offset = Offset(off);
        cur.seen = seen;
        let status = if raw.filled {
            ReadStatus::Next
        } else if raw.at_end_of_sealed {
            ReadStatus::End
        } else {
            ReadStatus::Done
        };
        Ok(ReadResult {
            status,
            delivered: raw.delivered,
            skipped: raw.skipped,
        })
    }

    /// `true` for a record still within its retention at time `now`.
    pub(super) fn visibility(&self, now: u64) -> impl Fn(&RecordRef<'_>) -> bool + '_ {
        let opts = &self.opts;
        let simple = opts.retention_overrides.is_empty();
        let global = opts.retention_ms;
        move |r: &RecordRef<'_>| {
            let keep = if simple {
                global
            } else {
                opts.retention_for(r.topic)
            };
            keep.is_none_or(|k| now.saturating_sub(r.timestamp) <= k)
        }
    }

    /// Reads records by position: calls `sink(i, record)` for every `positions[i]`, in
    /// input order, with `None` when no record is visible there — its generation was
    /// dropped by retention, its segment quarantined, it is past its own retention
    /// (hidden from cursor reads too), or the offset is at or beyond the shard's end.
    /// A missing record is not an error. Returns how many were found.
    ///
    /// Each lookup is O(log n) — generation by offset range, segment by base offset,
    /// sparse index — plus a walk of at most `index_interval` bytes; consecutive
    /// positions in the same segment reuse the bytes already read and continue from
    /// the previous record. Reads sealed segments and the committed bytes of the
    /// active one alike (an append's positions are readable once it completed).
    ///
    /// Errors: [`CoreError::InvalidArgument`] for a shard ≥ `n_shards` (checked before
    /// anything is read), [`CoreError::Io`] for a failed read, [`CoreError::Corrupt`]
    /// for an unverifiable record in the active segment (in a sealed segment it is
    /// quarantined instead and its positions reported missing).
    pub fn read_at(
        &self,
        positions: &[Position],
        sink: &mut dyn FnMut(usize, Option<&RecordRef<'_>>),
    ) -> Result<usize, CoreError> {
        let n = self.n_shards();
        if let Some(p) = positions.iter().find(|p| p.shard >= n) {
            return Err(CoreError::InvalidArgument(format!(
                "shard {} out of range: the store has {n} shards",
                p.shard
            )));
        }
        let visible = self.visibility(now_ms());
        let mut windows: Vec<position::Window> = Vec::new();
        let mut found = 0;
        for (i, p) in positions.iter().enumerate() {
            let s = p.shard as usize;
            if windows.len() <= s {
                windows.resize_with(s + 1, Default::default);
            }
            let shared = &self.shards[s].shared;
            match windows[s].lookup(shared, p.offset.0)? {
                position::Lookup::Found(r) if visible(&r) => {
                    found += 1;
                    sink(i, Some(&r));
                }
                _ => sink(i, None),
            }
        }
        Ok(found)
    }
}
