//! The witness's own state store: one record per witnessed origin, updated
//! only by compare-and-swap.
//!
//! Contract: [`WitnessStore::compare_and_swap`] replaces the record only if
//! it still holds `expected`, and when it returns `Ok(Ok(()))` the new
//! record MUST be durable (survive a process kill and, as far as the backend
//! can, a power loss). The sled backend lives in `<witness data>/db`, apart
//! from any log's database.
//!
//! After a write whose sync failed, sled still shows the new record in
//! memory while the disk may hold the old one: the sled backend then
//! refuses every read and write until it is reopened, so the witness never
//! cosigns on top of a state it may forget.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::StoreError;

/// Per-origin records with atomic, durable compare-and-swap.
pub trait WitnessStore: Send + Sync + 'static {
    /// The record of `origin`.
    fn get(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets the record of `origin` to `new` if it currently is `expected`
    /// (`None`: absent). `Ok(Err(current))` when it was something else:
    /// nothing was written. `Ok(Ok(()))`: written durably.
    #[allow(clippy::type_complexity)]
    fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError>;
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The sled backend.
pub struct SledWitnessStore {
    db: sled::Db,
    tree: sled::Tree,
    data_file: Mutex<Option<File>>,
    path: PathBuf,
    /// Set, under the `data_file` lock, when a write could not be made durable.
    unsynced: AtomicBool,
}

const UNSYNCED: &str = "an earlier write of the witness state could not be made durable (full disk or I/O error); fix the disk, then restart the witness";

impl SledWitnessStore {
    /// Opens (or creates) the database in `dir`; one process at a time.
    pub fn open(dir: &Path) -> Result<SledWitnessStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Backend(format!(
                        "the witness database in {} is in use by another process",
                        dir.display()
                    ))
                }
                other => backend(other),
            })?;
        let tree = db.open_tree("witness").map_err(backend)?;
        Ok(SledWitnessStore {
            db,
            tree,
            data_file: Mutex::new(None),
            path: dir.to_path_buf(),
            unsynced: AtomicBool::new(false),
        })
    }

    fn check_synced(&self) -> Result<(), StoreError> {
        if self.unsynced.load(Ordering::Acquire) {
            return Err(StoreError::Backend(UNSYNCED.into()));
        }
        Ok(())
    }

    /// sled's flush, then an fsync of its data file: sled 0.34's flush alone
    /// does not survive a power loss (sled issue 1452). A failure latches
    /// the store unsynced before the lock is released, so a write queued
    /// behind it cannot report success.
    fn sync(&self) -> Result<(), StoreError> {
        let flushed = self.db.flush().map(drop).map_err(backend);
        let mut guard = self
            .data_file
            .lock()
            .map_err(|_| backend("data file lock poisoned"))?;
        self.check_synced()?;
        let synced = flushed.and_then(|()| {
            if guard.is_none() {
                *guard = Some(File::open(self.path.join("db")).map_err(backend)?);
            }
            match guard.as_ref() {
                Some(f) => f.sync_data().map_err(backend),
                None => Ok(()),
            }
        });
        if synced.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        synced
    }
}

impl WitnessStore for SledWitnessStore {
    fn get(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_synced()?;
        Ok(self
            .tree
            .get(origin.as_bytes())
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
        self.check_synced()?;
        match self
            .tree
            .compare_and_swap(origin.as_bytes(), expected, Some(new))
            .map_err(backend)?
        {
            Ok(()) => {
                self.sync()?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e.current.map(|v| v.to_vec()))),
        }
    }
}

/// In-memory backend for tests, with fault injection.
#[derive(Default)]
pub struct MemoryWitnessStore {
    records: Mutex<HashMap<String, Vec<u8>>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryWitnessStore {
    /// An empty store.
    pub fn new() -> MemoryWitnessStore {
        MemoryWitnessStore::default()
    }

    /// Makes every following write fail (or succeed again).
    pub fn fail_writes(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Overwrites a record behind the witness's back (tests of the CAS).
    pub fn force(&self, origin: &str, value: &[u8]) {
        if let Ok(mut r) = self.records.lock() {
            r.insert(origin.to_string(), value.to_vec());
        }
    }
}

impl WitnessStore for MemoryWitnessStore {
    fn get(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.records.lock().map_err(|_| backend("lock poisoned"))?;
        Ok(r.get(origin).cloned())
    }

    fn compare_and_swap(
        &self,
        origin: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(backend("injected write failure"));
        }
        let mut r = self.records.lock().map_err(|_| backend("lock poisoned"))?;
        let current = r.get(origin).cloned();
        if current.as_deref() != expected {
            return Ok(Err(current));
        }
        r.insert(origin.to_string(), new.to_vec());
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(store: &dyn WitnessStore) {
        assert_eq!(store.get("a").unwrap(), None);
        assert_eq!(
            store.compare_and_swap("a", Some(b"x"), b"1").unwrap(),
            Err(None)
        );
        assert_eq!(store.compare_and_swap("a", None, b"1").unwrap(), Ok(()));
        assert_eq!(
            store.compare_and_swap("a", None, b"2").unwrap(),
            Err(Some(b"1".to_vec()))
        );
        assert_eq!(
            store.compare_and_swap("a", Some(b"1"), b"2").unwrap(),
            Ok(())
        );
        assert_eq!(store.get("a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get("b").unwrap(), None);
    }

    #[test]
    fn both_backends_keep_the_contract() {
        contract(&MemoryWitnessStore::new());
        let dir = tempfile::tempdir().unwrap();
        contract(&SledWitnessStore::open(dir.path()).unwrap());
    }

    #[test]
    fn after_a_failed_sync_the_sled_store_refuses_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledWitnessStore::open(dir.path()).unwrap();
        assert_eq!(s.compare_and_swap("o", None, b"1").unwrap(), Ok(()));
        // Reopen so the data file is opened by name at the next sync; take
        // it away for that sync only, as a disk error would fail it once.
        drop(s);
        // sled's background threads may hold its file lock a few
        // milliseconds after the drop.
        let s = (0..100)
            .find_map(|_| {
                SledWitnessStore::open(dir.path())
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("the witness store reopens once the old handle let go");
        let db = dir.path().join("db");
        let aside = dir.path().join("db.aside");
        std::fs::rename(&db, &aside).unwrap();
        assert!(s.compare_and_swap("o", Some(b"1"), b"2").is_err());
        std::fs::rename(&aside, &db).unwrap();
        // "2" may never reach the disk: nothing may build on it or show it.
        let refused = s.compare_and_swap("o", Some(b"2"), b"3").unwrap_err();
        assert!(
            refused.to_string().contains("restart the witness"),
            "{refused}"
        );
        assert!(s.get("o").is_err());
        drop(s);
        let s = SledWitnessStore::open(dir.path()).unwrap();
        let now = s.get("o").unwrap();
        assert!(
            now == Some(b"1".to_vec()) || now == Some(b"2".to_vec()),
            "{now:?}"
        );
    }

    #[test]
    fn sled_state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledWitnessStore::open(dir.path()).unwrap();
            assert_eq!(s.compare_and_swap("o", None, b"state").unwrap(), Ok(()));
        }
        let s = SledWitnessStore::open(dir.path()).unwrap();
        assert_eq!(s.get("o").unwrap(), Some(b"state".to_vec()));
    }
}
