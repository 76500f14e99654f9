//! Converts a database written with a key per event (layout 1: a sealed
//! body, an idempotency entry and a leaf-hash entry per event) to packed
//! bodies and index runs (layout 2), on the first open by this version.
//!
//! The conversion streams: a bounded number of keys per atomic batch,
//! each batch fsynced, so memory stays flat and a crash at any point
//! resumes where it stopped. Each step deletes the old keys in the batch
//! that writes their new form, and sealed bodies carry a progress mark in
//! the same batch, so no entry is ever in neither form or read twice. The
//! layout mark is written last.
//!
//! Layout 3 keeps full tiles, bundles and body chunks in files (`files`).
//! Layout 4 adds the search index's segment files (`index`) and erasure
//! tombstones and body deletions packed per bundle (`erased`, `bodies`).
//! Layout 5 adds, per bundle, the union of its tombstone records' masks
//! (`erased`), which every change of the records must keep.
//! Layout 6 keeps a bundle's tombstones in one record of tombstone ids,
//! each tombstone stored once (`erased`), where layouts 4 and 5 kept a
//! record per bundle and tombstone: their records are converted on open,
//! streaming and resumable like the conversion above
//! (`erased::convert_layout_5`), until none is left.
//! A layout 2 to 5 database needs no other conversion: what it keeps in
//! sled is still read there (older index blocks move into segment files
//! in the background, `Store::tidy_index`). Opening it marks it layout 6
//! before anything is written, so an earlier version refuses it from then
//! on rather than missing what is in the new places (searches answering
//! "no match" over postings it cannot see, tombstones it cannot find).

use super::runs::FLUSH_ENTRIES;
use super::{
    DEDUPE, LAYOUT_KEY, LEAF, Open, SEALED, TREE_SIZE_KEY, backend, bodies, decode_u64, erased,
    verified,
};
use crate::store::{DedupeKey, StoreError};
use crate::tiles::TILE_WIDTH;

/// The layout this version writes.
pub(super) const LAYOUT: u64 = 6;
/// The first layout with packed bodies and index runs.
const PACKED: u64 = 2;
/// Where the conversion of sealed bodies has got to: every leaf below it
/// is in a chunk. Only present during a conversion.
const PROGRESS_KEY: &[u8] = b"Mlayout_sealed_done";
/// Bundles of sealed bodies converted per batch.
const BUNDLES_PER_BATCH: u64 = 64;

/// Brings the store to [`LAYOUT`], converting it if it is older.
pub(super) fn run(store: &Open) -> Result<(), StoreError> {
    let tree = &store.tree;
    if let Some(v) = tree.get(LAYOUT_KEY).map_err(backend)? {
        let layout = decode_u64(&v, "storage layout")?;
        if layout > LAYOUT {
            return Err(StoreError::Corrupt(format!(
                "the database has storage layout {layout}, newer than this version's {LAYOUT}; run a newer veritrail"
            )));
        }
        if layout >= PACKED {
            if layout < LAYOUT {
                tree.insert(LAYOUT_KEY, &LAYOUT.to_be_bytes()[..])
                    .map_err(backend)?;
                tree.flush().map_err(backend)?;
                tracing::info!(
                    from = layout,
                    to = LAYOUT,
                    "the database is now in storage layout {LAYOUT}; earlier versions refuse it"
                );
            }
            let converted = erased::convert_layout_5(tree, &|| store.sync_applied())?;
            if converted > 0 {
                tracing::warn!(bundles = converted, "erasure tombstones converted");
            }
            return Ok(());
        }
    }
    // A database without a layout mark and without a tree is new: its
    // first commit writes the mark.
    let is_new = tree.get(TREE_SIZE_KEY).map_err(backend)?.is_none()
        && tree.scan_prefix([SEALED]).next().is_none()
        && tree.scan_prefix([DEDUPE]).next().is_none();
    if is_new {
        return Ok(());
    }
    {
        let size = match tree.get(TREE_SIZE_KEY).map_err(backend)? {
            Some(v) => decode_u64(&v, "stored tree size")?,
            None => 0,
        };
        tracing::warn!(
            entries = size,
            "converting the database to storage layout {LAYOUT} (once; it resumes if interrupted)"
        );
        convert_sealed(store)?;
        convert_map(store, DEDUPE, &store.dedupe, |k: &[u8]| {
            let split = k.iter().position(|b| *b == 0).ok_or_else(|| {
                StoreError::Corrupt("an idempotency key has no app/id separator".into())
            })?;
            let (app, id) = (
                std::str::from_utf8(&k[..split]),
                std::str::from_utf8(&k[split + 1..]),
            );
            match (app, id) {
                (Ok(app), Ok(id)) => Ok(DedupeKey::of(app, id).0),
                _ => Err(StoreError::Corrupt(
                    "an idempotency key is not UTF-8".into(),
                )),
            }
        })?;
        convert_map(store, LEAF, &store.leaves, |k: &[u8]| {
            k.get(..16)
                .and_then(|p| p.try_into().ok())
                .filter(|_| k.len() == 32)
                .ok_or_else(|| StoreError::Corrupt("a leaf-hash key is not 32 bytes".into()))
        })?;
        tracing::warn!("the database is in storage layout {LAYOUT}");
    }
    let mut batch = sled::Batch::default();
    batch.insert(LAYOUT_KEY, &LAYOUT.to_be_bytes()[..]);
    batch.remove(PROGRESS_KEY);
    tree.apply_batch(batch).map_err(backend)?;
    store.sync_applied()
}

/// Per-event sealed records (`b || index`) into one chunk per bundle.
fn convert_sealed(store: &Open) -> Result<(), StoreError> {
    let tree = &store.tree;
    let mut done = match tree.get(PROGRESS_KEY).map_err(backend)? {
        Some(v) => decode_u64(&v, "conversion progress")?,
        None => 0,
    };
    loop {
        let mut from = [SEALED; 9];
        from[1..].copy_from_slice(&done.to_be_bytes());
        let Some(first) = tree.range(from..).next() else {
            break;
        };
        let (k, _) = first.map_err(backend)?;
        if k[0] != SEALED {
            break;
        }
        let first = decode_u64(&k[1..], "sealed body key")?;
        let start = first - first % TILE_WIDTH;
        let end = start.saturating_add(BUNDLES_PER_BATCH * TILE_WIDTH);
        let mut hi = [SEALED; 9];
        hi[1..].copy_from_slice(&end.to_be_bytes());
        let mut batch = sled::Batch::default();
        let mut changes: Vec<(u64, Vec<u8>)> = Vec::new();
        for item in tree.range(from..hi) {
            let (k, v) = item.map_err(backend)?;
            let index = decode_u64(&k[1..], "sealed body key")?;
            changes.push((index, verified(&k, &v)?));
            batch.remove(k);
        }
        let refs: Vec<(u64, Option<&[u8]>)> = changes
            .iter()
            .map(|(i, b)| (*i, Some(b.as_slice())))
            .collect();
        bodies::rewrite_fresh(&mut batch, &refs);
        batch.insert(PROGRESS_KEY, &end.to_be_bytes()[..]);
        tree.apply_batch(batch).map_err(backend)?;
        store.sync_applied()?;
        done = end;
    }
    Ok(())
}

/// Per-event keys under `prefix` (value: big-endian leaf index) into `map`.
fn convert_map(
    store: &Open,
    prefix: u8,
    map: &super::runs::RunMap,
    digest: impl Fn(&[u8]) -> Result<[u8; 16], StoreError>,
) -> Result<(), StoreError> {
    loop {
        let mut batch = sled::Batch::default();
        let mut entries = Vec::new();
        for item in store.tree.scan_prefix([prefix]).take(FLUSH_ENTRIES) {
            let (k, v) = item.map_err(backend)?;
            entries.push((digest(&k[1..])?, decode_u64(&v, "index entry")?));
            batch.remove(k);
        }
        if entries.is_empty() {
            return Ok(());
        }
        let staged = map.stage(&mut batch, entries)?;
        store.tree.apply_batch(batch).map_err(backend)?;
        store.sync_applied()?;
        map.applied(staged);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CHECKPOINT_KEY, SledStore, checksummed};
    use super::*;
    use crate::merkle::Hash;
    use crate::store::{RecordSpace, Store};

    /// The raw database, once the previous handle's threads let go of its
    /// lock (they may hold it a few milliseconds after a drop).
    fn open_raw(dir: &std::path::Path) -> sled::Db {
        for _ in 0..100 {
            if let Ok(db) = super::super::sled_config(dir).open() {
                return db;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        super::super::sled_config(dir).open().unwrap()
    }

    /// Writes `n` events' keys as layout 1 did: a checksummed sealed record
    /// per leaf, an idempotency key per leaf, a leaf-hash key per leaf.
    fn write_layout_1(dir: &std::path::Path, n: u64, erased: &[u64]) {
        let db = open_raw(dir);
        let tree = db.open_tree("log").unwrap();
        let mut tile = Vec::new();
        for i in 0..n {
            if !erased.contains(&i) {
                let mut k = vec![SEALED];
                k.extend_from_slice(&i.to_be_bytes());
                let v = checksummed(&k, format!("sealed {i}").as_bytes());
                tree.insert(k, v).unwrap();
            }
            let mut d = vec![DEDUPE];
            d.extend_from_slice(format!("app\0id-{i}").as_bytes());
            tree.insert(d, &i.to_be_bytes()[..]).unwrap();
            let h = crate::merkle::leaf_hash(&i.to_be_bytes());
            let mut l = vec![LEAF];
            l.extend_from_slice(h.as_bytes());
            tree.insert(l, &i.to_be_bytes()[..]).unwrap();
            tile.extend_from_slice(h.as_bytes());
        }
        for (t, chunk) in tile.chunks(256 * 32).enumerate() {
            let mut k = vec![b'T', 0];
            k.extend_from_slice(&(t as u64).to_be_bytes());
            tree.insert(k, chunk).unwrap();
        }
        tree.insert(TREE_SIZE_KEY, &n.to_be_bytes()[..]).unwrap();
        tree.insert(CHECKPOINT_KEY, &b"\0\0\0\0\0\0\0\x01note"[..])
            .unwrap();
        db.flush().unwrap();
    }

    fn check(store: &SledStore, n: u64, erased: &[u64]) {
        for i in 0..n {
            let body = store.record(RecordSpace::Sealed, &i.to_be_bytes()).unwrap();
            if erased.contains(&i) {
                assert_eq!(body, None, "leaf {i} stays erased");
            } else {
                assert_eq!(body, Some(format!("sealed {i}").into_bytes()), "leaf {i}");
            }
            let key = DedupeKey::of("app", &format!("id-{i}"));
            assert_eq!(store.dedupe(&key).unwrap(), Some(i));
            let h: Hash = crate::merkle::leaf_hash(&i.to_be_bytes());
            assert_eq!(store.leaf_index(&h).unwrap(), Some(i));
        }
        assert_eq!(store.tree_size().unwrap(), n);
        assert!(store.checkpoint().unwrap().is_some());
        for prefix in [DEDUPE, LEAF] {
            assert_eq!(
                store.db().unwrap().tree.scan_prefix([prefix]).count(),
                0,
                "old keys are gone"
            );
        }
        assert!(
            store.db().unwrap().tree.scan_prefix([SEALED]).count()
                <= n.div_ceil(TILE_WIDTH) as usize
        );
        assert!(store.check_index_runs().is_empty());
    }

    #[test]
    fn a_database_with_a_key_per_event_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let n = (FLUSH_ENTRIES + 1000) as u64;
        let erased = [3, 256, 700, n - 1];
        write_layout_1(dir.path(), n, &erased);
        let store = SledStore::open(dir.path()).unwrap();
        check(&store, n, &erased);
        drop(store);
        // Opening again finds layout 2 and changes nothing.
        let store = SledStore::open(dir.path()).unwrap();
        check(&store, n, &erased);
    }

    #[test]
    fn a_conversion_cut_short_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let n = 5_000u64;
        write_layout_1(dir.path(), n, &[10]);
        {
            // Convert only the sealed bodies below the progress mark, as a
            // conversion killed after its first batch leaves them.
            let db = open_raw(dir.path());
            let tree = db.open_tree("log").unwrap();
            let mut batch = sled::Batch::default();
            let mut changes = Vec::new();
            for i in 0..TILE_WIDTH * 2 {
                let mut k = vec![SEALED];
                k.extend_from_slice(&i.to_be_bytes());
                if let Some(v) = tree.get(&k).unwrap() {
                    changes.push((i, verified(&k, &v).unwrap()));
                    batch.remove(k);
                }
            }
            let refs: Vec<_> = changes
                .iter()
                .map(|(i, b)| (*i, Some(b.as_slice())))
                .collect();
            bodies::rewrite_fresh(&mut batch, &refs);
            batch.insert(PROGRESS_KEY, &(TILE_WIDTH * 2).to_be_bytes()[..]);
            tree.apply_batch(batch).unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        check(&store, n, &[10]);
        assert_eq!(store.db().unwrap().tree.get(PROGRESS_KEY).unwrap(), None);
    }

    #[test]
    fn an_open_marks_a_layout_3_database_with_this_layout_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_raw(dir.path());
            let tree = db.open_tree("log").unwrap();
            tree.insert(LAYOUT_KEY, &3u64.to_be_bytes()[..]).unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let mark = store.db().unwrap().tree.get(LAYOUT_KEY).unwrap().unwrap();
        assert_eq!(decode_u64(&mark, "layout").unwrap(), LAYOUT);
        assert_eq!(LAYOUT, 6);
    }

    #[test]
    fn an_open_converts_the_tombstone_records_of_a_layout_5_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_raw(dir.path());
            let tree = db.open_tree("log").unwrap();
            tree.insert(LAYOUT_KEY, &5u64.to_be_bytes()[..]).unwrap();
            let mut mask = [0u8; 32];
            mask[0] = 0b101;
            erased::layout_5::put(&tree, 3, &mask, b"erased: test");
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        for (leaf, erased) in [(768, true), (769, false), (770, true), (5, false)] {
            let tombstone = store
                .record(crate::store::RecordSpace::Erased, &u64::to_be_bytes(leaf))
                .unwrap();
            assert_eq!(tombstone.is_some(), erased, "leaf {leaf}");
        }
        let tree = &store.db().unwrap().tree;
        assert_eq!(tree.scan_prefix([erased::layout_5::PACKED]).count(), 0);
        assert!(store.check_packed_records().is_empty());
        let mark = tree.get(LAYOUT_KEY).unwrap().unwrap();
        assert_eq!(decode_u64(&mark, "layout").unwrap(), LAYOUT);
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_raw(dir.path());
            let tree = db.open_tree("log").unwrap();
            tree.insert(LAYOUT_KEY, &(LAYOUT + 1).to_be_bytes()[..])
                .unwrap();
            db.flush().unwrap();
        }
        let err = SledStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("newer than this version"), "{err}");
    }
}
