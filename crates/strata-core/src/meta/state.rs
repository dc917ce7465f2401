//! The metadata as an in-memory map: what replaying the journal produces, and what
//! recovery compares `meta.redb` with.
use super::{prefix_end, Op, Table, JOURNAL_SEQ_KEY};
use std::collections::BTreeMap;

/// Every table's keys and values, in key order.
///
/// Invariant: never holds `system/journal_seq` (the store's own bookkeeping, kept
/// outside the content that is journaled and compared).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct State {
    tables: [BTreeMap<Vec<u8>, Vec<u8>>; Table::ALL.len()],
}

impl State {
    /// Applies one operation, as a redb transaction would.
    pub(crate) fn apply(&mut self, op: Op) {
        match op {
            Op::Put(t, k, v) => {
                if !is_reserved(t, &k) {
                    self.tables[t.index()].insert(k, v);
                }
            }
            Op::Delete(t, k) => {
                self.tables[t.index()].remove(k.as_slice());
            }
            Op::DeletePrefix(t, p) => {
                let map = &mut self.tables[t.index()];
                let keys: Vec<Vec<u8>> = match prefix_end(&p) {
                    Some(end) => map
                        .range::<[u8], _>((
                            std::ops::Bound::Included(p.as_slice()),
                            std::ops::Bound::Excluded(end.as_slice()),
                        ))
                        .map(|(k, _)| k.clone())
                        .collect(),
                    None => map
                        .range::<[u8], _>((
                            std::ops::Bound::Included(p.as_slice()),
                            std::ops::Bound::Unbounded,
                        ))
                        .map(|(k, _)| k.clone())
                        .collect(),
                };
                for k in keys {
                    map.remove(&k);
                }
            }
        }
    }

    /// One table's entries, in key order.
    pub(crate) fn table(&self, t: Table) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.tables[t.index()]
    }

    /// Number of keys over all tables.
    pub(crate) fn len(&self) -> usize {
        self.tables.iter().map(BTreeMap::len).sum()
    }
}

/// Whether `(table, key)` is the store's own `system/journal_seq`.
pub(crate) fn is_reserved(t: Table, key: &[u8]) -> bool {
    t == Table::System && key == JOURNAL_SEQ_KEY
}
