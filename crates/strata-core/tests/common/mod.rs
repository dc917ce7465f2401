//! Helpers shared by the metadata store's integration tests.
use std::collections::BTreeMap;
use strata_core::meta::{MetaStore, Table, JOURNAL_SEQ_KEY};

/// `(table name, key) -> value`, everything but `system/journal_seq`.
pub type Model = BTreeMap<(&'static str, Vec<u8>), Vec<u8>>;

/// Everything `m` holds, as a [`Model`].
pub fn dump(m: &MetaStore) -> Model {
    let mut out = Model::new();
    for t in Table::ALL {
        for (k, v) in m.scan(t, b"", None, usize::MAX).unwrap() {
            if !(t == Table::System && k == JOURNAL_SEQ_KEY) {
                out.insert((t.name(), k), v);
            }
        }
    }
    out
}
