//! The embedded default backend: one sled database in `<data>/db`.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that a
//! whole batch is one `apply_batch` and therefore atomic. Values are tiles
//! (up to 8 KiB) and bundles rather than single hashes: sled's memory use
//! explodes with many tiny values.
//!
//! Durability: sled 0.34's `flush` makes writes survive a process crash, but
//! it uses `sync_file_range`, which does not survive a power loss (sled issue
//! 1452). After every flush this backend therefore also `fsync`s sled's data
//! file, which pushes the pages and the device cache out.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{
    BatchWrite, Record, RecordBatch, RecordSpace, Store, StoreError, StoredCheckpoint, StoredEvent,
};
use crate::merkle::Hash;

const TILE: u8 = b'T';
const BUNDLE: u8 = b'E';
const EVENT: u8 = b'V';
const DEDUPE: u8 = b'D';
const LEAF: u8 = b'H';
const META: u8 = b'M';
const API_KEY: u8 = b'K';
const DATA_KEY: u8 = b'k';
const SEALED: u8 = b'b';
const ERASED: u8 = b'x';
const GOVERNANCE: u8 = b'g';
const INDEX: u8 = b'i';

const TREE_SIZE_KEY: &[u8] = b"Mtree_size";
const CHECKPOINT_KEY: &[u8] = b"Mcheckpoint";

/// The sled backend.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's data file, fsynced after each flush; the mutex serialises syncs.
    data_file: Mutex<Option<File>>,
    path: PathBuf,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn index_key(prefix: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn tile_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = TILE;
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn dedupe_key(app: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + app.len() + id.len());
    k.push(DEDUPE);
    k.extend_from_slice(app.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn leaf_key(hash: &Hash) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = LEAF;
    k[1..].copy_from_slice(hash.as_bytes());
    k
}

fn space_prefix(space: RecordSpace) -> u8 {
    match space {
        RecordSpace::Meta => META,
        RecordSpace::ApiKey => API_KEY,
        RecordSpace::DataKey => DATA_KEY,
        RecordSpace::Sealed => SEALED,
        RecordSpace::Erased => ERASED,
        RecordSpace::Governance => GOVERNANCE,
    }
}

fn record_key(space: RecordSpace, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(space_prefix(space));
    k.extend_from_slice(key);
    k
}

fn index_entry_key(entry: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + entry.len());
    k.push(INDEX);
    k.extend_from_slice(entry);
    k
}

fn decode_u64(v: &[u8], what: &str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not an 8-byte integer")))
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Only one process may open a
    /// directory at a time; sled enforces it with a file lock.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 << 20)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Backend(format!(
                        "the database in {} is in use by another process",
                        dir.display()
                    ))
                }
                other => backend(other),
            })?;
        let tree = db.open_tree("log").map_err(backend)?;
        Ok(SledStore {
            db,
            tree,
            data_file: Mutex::new(None),
            path: dir.to_path_buf(),
        })
    }

    /// Makes everything written so far durable: sled's flush, then an fsync
    /// of its data file (see the module comment).
    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        let mut guard = self
            .data_file
            .lock()
            .map_err(|_| backend("data file lock poisoned"))?;
        if guard.is_none() {
            *guard = Some(File::open(self.path.join("db")).map_err(backend)?);
        }
        if let Some(f) = guard.as_ref() {
            f.sync_data().map_err(backend)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    /// Approximate size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Store for SledStore {
    fn commit(&self, b: &BatchWrite) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (level, index, data) in &b.tiles {
            batch.insert(&tile_key(*level, *index)[..], data.as_slice());
        }
        for (index, data) in &b.bundles {
            batch.insert(&index_key(BUNDLE, *index)[..], data.as_slice());
        }
        for (index, ev) in &b.events {
            batch.insert(&index_key(EVENT, *index)[..], ev.encode());
        }
        for (app, id, index) in &b.dedupe {
            batch.insert(dedupe_key(app, id), &index.to_be_bytes()[..]);
        }
        for (hash, index) in &b.leaf_index {
            batch.insert(&leaf_key(hash)[..], &index.to_be_bytes()[..]);
        }
        for (space, key, value) in &b.records {
            batch.insert(record_key(*space, key), value.as_slice());
        }
        for entry in &b.index_entries {
            batch.insert(index_entry_key(entry), &[][..]);
        }
        if let Some(cp) = &b.checkpoint {
            batch.insert(CHECKPOINT_KEY, cp.encode());
        }
        batch.insert(TREE_SIZE_KEY, &b.tree_size.to_be_bytes()[..]);
        self.tree.apply_batch(batch).map_err(backend)?;
        self.sync()
    }

    fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.tree
            .insert(CHECKPOINT_KEY, cp.encode())
            .map_err(backend)?;
        self.sync()
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        match self.get(TREE_SIZE_KEY)? {
            Some(v) => decode_u64(&v, "stored tree size"),
            None => Ok(0),
        }
    }

    fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.get(CHECKPOINT_KEY)?
            .map(|v| StoredCheckpoint::decode(&v))
            .transpose()
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&tile_key(level, index))
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&index_key(BUNDLE, index))
    }

    fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        self.get(&index_key(EVENT, index))?
            .map(|v| StoredEvent::decode(&v))
            .transpose()
    }

    fn dedupe(&self, app: &str, id: &str) -> Result<Option<u64>, StoreError> {
        self.get(&dedupe_key(app, id))?
            .map(|v| decode_u64(&v, "idempotency index"))
            .transpose()
    }

    fn leaf_index(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.get(&leaf_key(leaf_hash))?
            .map(|v| decode_u64(&v, "leaf index"))
            .transpose()
    }

    fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree
            .insert(record_key(space, key), value)
            .map_err(backend)?;
        self.sync()
    }

    fn record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&record_key(space, key))
    }

    fn records(&self, space: RecordSpace) -> Result<Vec<Record>, StoreError> {
        self.tree
            .scan_prefix([space_prefix(space)])
            .map(|r| {
                r.map(|(k, v)| (k[1..].to_vec(), v.to_vec()))
                    .map_err(backend)
            })
            .collect()
    }

    fn commit_records(&self, b: &RecordBatch) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (space, key, value) in &b.put {
            batch.insert(record_key(*space, key), value.as_slice());
        }
        for (space, key) in &b.delete {
            batch.remove(record_key(*space, key));
        }
        for entry in &b.delete_index {
            batch.remove(index_entry_key(entry));
        }
        for index in &b.delete_events {
            batch.remove(&index_key(EVENT, *index)[..]);
        }
        self.tree.apply_batch(batch).map_err(backend)?;
        self.sync()
    }

    fn index_scan(&self, prefix: &[u8], below: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let start = index_entry_key(&super::index_entry(prefix, 0));
        let end = index_entry_key(&super::index_entry(prefix, below));
        let mut out = Vec::new();
        for item in self.tree.range(start..end).rev().take(limit) {
            let (k, _) = item.map_err(backend)?;
            let tail = k
                .get(k.len().saturating_sub(8)..)
                .filter(|_| k.len() == 1 + prefix.len() + 8)
                .ok_or_else(|| StoreError::Corrupt("index entry of the wrong length".into()))?;
            out.push(decode_u64(tail, "index entry")?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::run(&store);
    }

    #[test]
    fn committed_batches_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            super::super::conformance::write_sample(&store);
        }
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::check_sample(&store);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        // sled locks the directory per process; within one process the
        // second open also fails because the lock is held.
        assert!(SledStore::open(dir.path()).is_err());
    }
}
