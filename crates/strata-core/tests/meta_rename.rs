//! Stores written before the metadata tables were renamed (`acks` → `progress`,
//! `cursors` → `inbound_qos2`) keep their data: open renames the tables in `meta.redb`
//! (the journal names tables by id and needs nothing), reports no damage, and a check of a
//! store not yet migrated finds nothing wrong.
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle};
use strata_core::meta::{MetaStore, Op, Table};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn tables(path: &std::path::Path) -> Vec<String> {
    let db = Database::open(path.join("meta.redb")).unwrap();
    let r = db.begin_read().unwrap();
    let mut names: Vec<String> = r
        .list_tables()
        .unwrap()
        .map(|h| h.name().to_string())
        .collect();
    names.sort();
    names
}

/// Renames `from` to `to` in `meta.redb` directly, as the store was before the rename.
fn rename_back(path: &std::path::Path, pairs: &[(&'static str, &'static str)]) {
    let db = Database::open(path.join("meta.redb")).unwrap();
    let w = db.begin_write().unwrap();
    for (from, to) in pairs {
        w.rename_table(Def::new(from), Def::new(to)).unwrap();
    }
    w.commit().unwrap();
}

fn write_sample(path: &std::path::Path) {
    let (m, _) = MetaStore::open(path, true).unwrap();
    m.apply_blocking(vec![
        Op::Put(
            Table::Progress,
            b"client-a".to_vec(),
            b"progress-a".to_vec(),
        ),
        Op::Put(
            Table::Progress,
            b"client-b".to_vec(),
            b"progress-b".to_vec(),
        ),
        Op::Put(
            Table::InboundQos2,
            b"client-a\0\x00\x07".to_vec(),
            b"pending".to_vec(),
        ),
        Op::Put(Table::Sessions, b"client-a".to_vec(), b"session".to_vec()),
    ])
    .unwrap();
    m.close();
}

fn assert_sample(m: &MetaStore) {
    for (k, v) in [("client-a", "progress-a"), ("client-b", "progress-b")] {
        assert_eq!(
            m.get(Table::Progress, k.as_bytes()).unwrap(),
            Some(v.as_bytes().to_vec())
        );
    }
    assert_eq!(
        m.get(Table::InboundQos2, b"client-a\0\x00\x07").unwrap(),
        Some(b"pending".to_vec())
    );
    assert_eq!(
        m.get(Table::Sessions, b"client-a").unwrap(),
        Some(b"session".to_vec())
    );
}

#[test]
fn a_store_with_the_old_table_names_opens_with_its_data() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path();
    write_sample(path);
    rename_back(path, &[("progress", "acks"), ("inbound_qos2", "cursors")]);
    let old = tables(path);
    assert!(old.contains(&"acks".to_string()) && old.contains(&"cursors".to_string()));
    assert!(!old.contains(&"progress".to_string()));

    // A check of the old store reads the old tables: nothing missing, nothing damaged.
    let checked = MetaStore::check(path).unwrap();
    assert!(!checked.damage_found(), "{checked:?}");

    let (m, rec) = MetaStore::open(path, true).unwrap();
    assert!(!rec.damage_found(), "{rec:?}");
    assert!(!rec.journal_rewritten, "{rec:?}");
    assert_sample(&m);
    // Writes after the migration land in the new tables and survive a reopen.
    m.apply_blocking(vec![Op::Put(
        Table::Progress,
        b"client-c".to_vec(),
        b"c".to_vec(),
    )])
    .unwrap();
    m.close();
    drop(m);

    let now = tables(path);
    assert!(!now.contains(&"acks".to_string()), "{now:?}");
    assert!(!now.contains(&"cursors".to_string()), "{now:?}");
    assert!(now.contains(&"progress".to_string()) && now.contains(&"inbound_qos2".to_string()));
    let (m, rec) = MetaStore::open(path, true).unwrap();
    assert!(!rec.damage_found(), "{rec:?}");
    assert_sample(&m);
    assert_eq!(
        m.get(Table::Progress, b"client-c").unwrap(),
        Some(b"c".to_vec())
    );
}

#[test]
fn old_entries_written_after_a_migration_are_merged_into_the_new_table() {
    // An older version opened a migrated store: it recreated `acks` next to `progress`.
    let d = tempfile::tempdir().unwrap();
    let path = d.path();
    write_sample(path);
    {
        let db = Database::open(path.join("meta.redb")).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut old = w.open_table(Def::new("acks")).unwrap();
            old.insert(b"client-b".as_slice(), b"progress-b".as_slice())
                .unwrap();
        }
        w.commit().unwrap();
        let r = db.begin_read().unwrap();
        assert_eq!(r.open_table(Def::new("acks")).unwrap().len().unwrap(), 1);
    }
    let (m, _) = MetaStore::open(path, true).unwrap();
    assert_sample(&m);
    m.close();
    drop(m);
    assert!(!tables(path).contains(&"acks".to_string()));
}
