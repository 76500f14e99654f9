//! An in-memory backend with fault injection, for tests of the sequencer's
//! failure paths. It keeps the same contract as the durable backends, minus
//! durability (it is gone with the process).
//!
//! Faults: every write can fail before it persists (nothing changes, as on
//! a full disk) or after (the change is applied, the caller hears of a
//! failure, as when an fsync error follows a write that reached the disk),
//! at once or after a given number of writes; batch commits can be held
//! back, as on a stalled disk, to see what waits behind them ([`Gate`],
//! which the key store's tests use too). Writes and the items that listings
//! return are counted, so tests see what a task wrote and read.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};

use super::{
    BatchWrite, DedupeKey, IndexBlock, LeafKey, Record, RecordBatch, RecordSpace, ScanCursor,
    ScanPage, Store, StoreError, StoredCheckpoint, StoredEvent, leaf_key,
};
use crate::merkle::Hash;

#[derive(Default)]
struct Inner {
    tree_size: u64,
    checkpoint: Option<StoredCheckpoint>,
    tiles: BTreeMap<(u8, u64), Vec<u8>>,
    bundles: BTreeMap<u64, Vec<u8>>,
    events: BTreeMap<u64, StoredEvent>,
    dedupe: BTreeMap<DedupeKey, u64>,
    leaves: BTreeMap<Hash, u64>,
    records: BTreeMap<(u8, Vec<u8>), Vec<u8>>,
    index_blocks: BTreeMap<(Vec<u8>, u64), Vec<u8>>,
    index_watermark: Option<u64>,
}

impl Inner {
    /// Applies a whole batch.
    fn apply(&mut self, b: &BatchWrite) {
        let s = self;
        for (level, index, data) in &b.tiles {
            s.tiles.insert((*level, *index), data.clone());
        }
        for (index, data) in &b.bundles {
            s.bundles.insert(*index, data.clone());
        }
        for (index, ev) in &b.events {
            s.events.insert(*index, ev.clone());
        }
        for (key, index) in &b.dedupe {
            s.dedupe.entry(*key).or_insert(*index);
        }
        for (hash, index) in &b.leaf_index {
            s.leaves.entry(*hash).or_insert(*index);
        }
        for (space, key, value) in &b.records {
            s.records
                .insert((space_byte(*space), key.clone()), value.clone());
        }
        s.put_index_blocks(&b.index_blocks, b.index_watermark);
        if let Some(cp) = &b.checkpoint {
            s.checkpoint = Some(cp.clone());
        }
        s.tree_size = b.tree_size;
    }

    fn put_index_blocks(&mut self, blocks: &[IndexBlock], watermark: Option<u64>) {
        for b in blocks {
            let k = (b.bucket.clone(), b.at);
            match &b.value {
                Some(v) => self.index_blocks.insert(k, v.clone()),
                None => self.index_blocks.remove(&k),
            };
        }
        if watermark.is_some() {
            self.index_watermark = watermark;
        }
    }
}

/// How the store's writes fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// Writes succeed.
    None = 0,
    /// Every write fails and changes nothing (a full disk).
    BeforePersisting = 1,
    /// Every write is applied, then reports a failure (the data reached the
    /// disk, the acknowledgement did not).
    AfterPersisting = 2,
}

/// In-memory store. `fail_writes(true)` makes every write fail (as a full
/// disk would) without changing anything; [`MemoryStore::inject`] chooses
/// any [`WriteFault`].
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
    fault: AtomicU8,
    /// While closed, `commit` waits before writing.
    commits: Gate,
    /// Writes attempted (each a durable write on a real backend).
    writes: AtomicUsize,
    /// The injected fault applies from this write on (counted by `writes`).
    fault_from: AtomicUsize,
    /// Items returned by `records` and the `scan_*` listings.
    listed: AtomicUsize,
}

/// A hold on writes, as a stalled disk would make (fault-injection
/// tests): while closed, every write that passes it waits.
#[derive(Default)]
pub struct Gate {
    held: Mutex<bool>,
    released: Condvar,
    /// Writes waiting at the gate.
    waiting: AtomicUsize,
}

impl Gate {
    /// Closes the gate (true) or opens it (false), letting the writes
    /// waiting at it go on.
    pub fn hold(&self, hold: bool) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = hold;
        self.released.notify_all();
    }

    /// How many writes are waiting at the gate.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Called by a write: waits while the gate is closed.
    pub fn pass(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if *held {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while *held {
                held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("memory store lock poisoned".into())
}

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes every following write fail (true) or succeed again (false).
    pub fn fail_writes(&self, fail: bool) {
        self.inject(if fail {
            WriteFault::BeforePersisting
        } else {
            WriteFault::None
        });
    }

    /// Makes every following write fail as `fault` says.
    pub fn inject(&self, fault: WriteFault) {
        self.inject_after(0, fault);
    }

    /// Lets the next `writes` writes succeed, then makes every following
    /// one fail as `fault` says.
    pub fn inject_after(&self, writes: usize, fault: WriteFault) {
        self.fault_from.store(
            self.writes.load(Ordering::SeqCst) + writes,
            Ordering::SeqCst,
        );
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// Holds every following batch commit back (true) until released
    /// (false); a held commit then goes on as any other.
    pub fn hold_commits(&self, hold: bool) {
        self.commits.hold(hold);
    }

    /// How many batch commits are waiting because of [`MemoryStore::hold_commits`].
    pub fn held_commits(&self) -> usize {
        self.commits.waiting()
    }

    /// How many writes were attempted: on a durable backend, each costs a
    /// sync, so tests count them.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// How many items `records` and the `scan_*` listings returned so far:
    /// what a task that walks the store has read of it.
    pub fn items_listed(&self) -> usize {
        self.listed.load(Ordering::SeqCst)
    }

    fn listed<T>(&self, items: Vec<T>) -> Vec<T> {
        self.listed.fetch_add(items.len(), Ordering::SeqCst);
        items
    }

    /// Applies `change` as one write, failing as the injected fault says.
    fn write(&self, change: impl FnOnce(&mut Inner)) -> Result<(), StoreError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let fault = if n >= self.fault_from.load(Ordering::SeqCst) {
            self.fault.load(Ordering::SeqCst)
        } else {
            WriteFault::None as u8
        };
        if fault == WriteFault::BeforePersisting as u8 {
            return Err(StoreError::Backend(
                "injected write failure (no space left on device)".into(),
            ));
        }
        change(&mut *self.inner.write().map_err(|_| poisoned())?);
        if fault == WriteFault::AfterPersisting as u8 {
            return Err(StoreError::Backend(
                "injected failure after the write persisted (I/O error on fsync)".into(),
            ));
        }
        Ok(())
    }
}

fn space_byte(space: RecordSpace) -> u8 {
    space.code()
}

impl Store for MemoryStore {
    fn commit(&self, b: &BatchWrite) -> Result<(), StoreError> {
        self.commits.pass();
        self.write(|s| s.apply(b))
    }

    fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.write(|s| s.checkpoint = Some(cp.clone()))
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        Ok(self.inner.read().map_err(|_| poisoned())?.tree_size)
    }

    fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .inner
            .read()
            .map_err(|_| poisoned())?
            .checkpoint
            .clone())
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .read()
            .map_err(|_| poisoned())?
            .tiles
            .get(&(level, index))
            .cloned())
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .read()
            .map_err(|_| poisoned())?
            .bundles
            .get(&index)
            .cloned())
    }

    fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .inner
            .read()
            .map_err(|_| poisoned())?
            .events
            .get(&index)
            .cloned())
    }

    fn dedupe(&self, key: &DedupeKey) -> Result<Option<u64>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        Ok(s.dedupe.get(key).copied())
    }

    fn leaf_index(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self
            .inner
            .read()
            .map_err(|_| poisoned())?
            .leaves
            .get(leaf_hash)
            .copied())
    }

    fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(|s| {
            s.records
                .insert((space_byte(space), key.to_vec()), value.to_vec());
        })
    }

    fn record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        Ok(s.records.get(&(space_byte(space), key.to_vec())).cloned())
    }

    fn records(&self, space: RecordSpace) -> Result<Vec<Record>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        let b = space_byte(space);
        Ok(self.listed(
            s.records
                .iter()
                .filter(|((sp, _), _)| *sp == b)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect(),
        ))
    }

    fn scan_events(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(u64, StoredEvent)>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        let start = match cursor.key() {
            Some(k) => Bound::Excluded(decode_cursor_index(k)?),
            None => Bound::Unbounded,
        };
        let items: Vec<(u64, StoredEvent)> = s
            .events
            .range((start, Bound::Unbounded))
            .take(limit.max(1))
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let items = self.listed(items);
        let next = page_end(&items, limit, |(i, _)| i.to_be_bytes().to_vec());
        Ok(ScanPage {
            items: items.into_iter().map(Ok).collect(),
            next,
        })
    }

    fn scan_records(
        &self,
        space: RecordSpace,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<Record>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        let b = space_byte(space);
        let start = match cursor.key() {
            Some(k) => Bound::Excluded((b, k.to_vec())),
            None => Bound::Included((b, Vec::new())),
        };
        let items: Vec<Record> = s
            .records
            .range((start, Bound::Unbounded))
            .take_while(|((sp, _), _)| *sp == b)
            .take(limit.max(1))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        let items = self.listed(items);
        let next = page_end(&items, limit, |(k, _)| k.clone());
        Ok(ScanPage {
            items: items.into_iter().map(Ok).collect(),
            next,
        })
    }

    fn scan_dedupe(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(DedupeKey, u64)>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        let start = match cursor.key() {
            Some(k) => Bound::Excluded(DedupeKey(
                k.try_into()
                    .map_err(|_| StoreError::Corrupt("bad scan cursor".into()))?,
            )),
            None => Bound::Unbounded,
        };
        let items: Vec<(DedupeKey, u64)> = s
            .dedupe
            .range((start, Bound::Unbounded))
            .take(limit.max(1))
            .map(|(k, i)| (*k, *i))
            .collect();
        let items = self.listed(items);
        let next = page_end(&items, limit, |(k, _)| k.0.to_vec());
        Ok(ScanPage {
            items: items.into_iter().map(Ok).collect(),
            next,
        })
    }

    fn scan_leaf_index(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(LeafKey, u64)>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        let start = match cursor.key() {
            Some(k) => Bound::Excluded(
                Hash::from_slice(k).map_err(|_| StoreError::Corrupt("bad scan cursor".into()))?,
            ),
            None => Bound::Unbounded,
        };
        let items: Vec<(Hash, u64)> = s
            .leaves
            .range((start, Bound::Unbounded))
            .take(limit.max(1))
            .map(|(h, i)| (*h, *i))
            .collect();
        let items = self.listed(items);
        let next = page_end(&items, limit, |(h, _)| h.as_bytes().to_vec());
        Ok(ScanPage {
            items: items
                .into_iter()
                .map(|(h, i)| Ok((leaf_key(&h), i)))
                .collect(),
            next,
        })
    }

    fn commit_records(&self, b: &RecordBatch) -> Result<(), StoreError> {
        self.write(|s| {
            for (space, key, value) in &b.put {
                s.records
                    .insert((space_byte(*space), key.clone()), value.clone());
            }
            for (space, key) in &b.delete {
                s.records.remove(&(space_byte(*space), key.clone()));
            }
            s.put_index_blocks(&b.index_blocks, b.index_watermark);
            for index in &b.delete_events {
                s.events.remove(index);
            }
        })
    }

    fn index_blocks(
        &self,
        bucket: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let s = self.inner.read().map_err(|_| poisoned())?;
        let range = (bucket.to_vec(), 0)..(bucket.to_vec(), below);
        Ok(s.index_blocks
            .range(range)
            .rev()
            .take(limit)
            .map(|((_, at), v)| (*at, v.clone()))
            .collect())
    }

    fn index_watermark(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.inner.read().map_err(|_| poisoned())?.index_watermark)
    }

    fn clear_index(&self) -> Result<(), StoreError> {
        self.write(|s| {
            s.index_blocks.clear();
            s.index_watermark = None;
        })
    }
}

fn decode_cursor_index(k: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("bad scan cursor".into()))
}

/// The cursor after a page: `None` when the page was not full.
fn page_end<T>(items: &[T], limit: usize, key: impl Fn(&T) -> Vec<u8>) -> Option<ScanCursor> {
    if items.len() < limit.max(1) {
        None
    } else {
        items.last().map(|t| ScanCursor::after(key(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_keeps_the_contract() {
        super::super::conformance::run(&MemoryStore::new());
    }

    #[test]
    fn a_failing_write_changes_nothing() {
        let store = MemoryStore::new();
        super::super::conformance::write_sample(&store);
        store.fail_writes(true);
        let batch = BatchWrite {
            tree_size: 99,
            ..BatchWrite::default()
        };
        assert!(store.commit(&batch).is_err());
        assert!(store.put_record(RecordSpace::Meta, b"x", b"y").is_err());
        store.fail_writes(false);
        super::super::conformance::check_sample(&store);
        assert_eq!(store.record(RecordSpace::Meta, b"x").unwrap(), None);
    }

    #[test]
    fn a_write_failing_after_persisting_is_applied_all_the_same() {
        let store = MemoryStore::new();
        store.inject(WriteFault::AfterPersisting);
        let batch = BatchWrite {
            tree_size: 99,
            ..BatchWrite::default()
        };
        assert!(store.commit(&batch).is_err());
        assert!(store.put_record(RecordSpace::Meta, b"x", b"y").is_err());
        store.inject(WriteFault::None);
        assert_eq!(store.tree_size().unwrap(), 99);
        assert_eq!(
            store.record(RecordSpace::Meta, b"x").unwrap(),
            Some(b"y".to_vec())
        );
    }
}
