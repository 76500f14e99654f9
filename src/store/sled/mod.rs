//! The embedded default backend: one sled database in `<data>/db`, and the
//! immutable blobs in files beside it (`<data>/db/objects`, see `files`;
//! the index runs in `<data>/db/runs`, see `runs`; the search index's
//! segments in `<data>/db/index`, see `index`).
//!
//! Full hash tiles, full entry bundles and the sealed-body chunk of each
//! full bundle never change, so they are files, written once and fsynced
//! before the sled commit that moves the tree size past them; readers
//! read a file only below the committed size, so the files of a batch that
//! crashed before its commit are never seen, and are replaced by the
//! commit that completes them. A database from before blob files keeps
//! its full blobs in sled, where reads find them when there is no file.
//! Everything else (the open right edge, checkpoint, indexes, records)
//! lives in one sled tree under one-byte key prefixes, so that a whole
//! batch is one `apply_batch` and therefore atomic. Values are tiles and
//! bundles rather than single hashes: sled's memory use explodes with
//! many tiny values.
//!
//! Durability: sled 0.34's `flush` makes writes survive a process crash, but
//! it uses `sync_file_range`, which does not survive a power loss (sled issue
//! 1452). After every flush this backend therefore also `fsync`s sled's data
//! file, which pushes the pages and the device cache out.
//!
//! A write that sled applied but could not make durable (a full disk, an
//! I/O error) stays visible in sled's memory, and sled refuses every later
//! write until the database is reopened. Such a store no longer answers for
//! what is on disk, so it is marked unsynced: every later write and the
//! tree size fail with an error that says to restart, which stops the
//! sequencer instead of letting it build on entries that were never stored.
//!
//! sled writes any log item larger than a quarter segment to a file of its
//! own under `blobs/`, and never fsyncs those. With sled's default 512 KiB
//! segments a tree node of 17 entry bundles (up to 50 KiB each) is such an
//! item; new databases therefore use 8 MiB segments, which keep every node
//! this log writes inline in the data file (and cost less CPU per batch).
//! Blobs that appear anyway (a database created with small segments) are
//! fsynced, with their directory, before the data file.
//!
//! Start-up time: sled 0.34 writes a snapshot of its page table only when
//! a database is opened (its `snapshot_after_ops` setting does nothing),
//! and opening replays every log segment written since the newest
//! snapshot. A server that ran for a long time would replay gigabytes on
//! its next start (11 s at 10 million events). So the background thread
//! closes and reopens the database, between two merges of index runs, once
//! sled has written [`SNAPSHOT_AFTER_BYTES`] since it was opened: a start,
//! after a clean stop or a crash, replays at most that much plus one merge.
//! With the blobs in files sled writes a fraction of what it did per event
//! and holds far fewer pages (a log of 300,000 benchmark events of about
//! 400 bytes: 0.58 KB per event in sled's file and 0.59 KB in blob files,
//! where sled alone held over 2 KB per event before), so a reopen is
//! cheaper and the threshold is a quarter of the 512 MiB it was: reopens
//! come about as often per event, and a start replays a quarter as much.
//! Every operation waits during a reopen; one that fails leaves a store
//! that refuses everything until restarted, as after a failed fsync.
//!
//! Per-event data never costs a key per event: sealed bodies are packed by
//! entry bundle (`bodies`, a file per full bundle, with one deletion mask
//! per bundle for erasures over it), so are single events' erasure
//! tombstones (`erased`), and the idempotency
//! and leaf-hash indexes are sorted runs of 4 KiB blocks merged in the
//! background (`runs`), each run a file under `<data>/db/runs`, written
//! once and fsynced before the sled batch that names it in the index's
//! manifest: sled's resident memory grows with what it writes and reads,
//! whatever its cache setting, so sled holds only the pending entries and
//! the manifests, not the runs' blocks nor the merges' rewrites of them. A data
//! directory written with a key per event is converted on open
//! (`migrate`). The resident memory of a store is then sled's plus a few
//! bytes per thousand events. sled's is not bounded by its cache setting:
//! it grows with what sled writes until the next reopen releases it (at
//! 10 M events, about 600 MiB over the 128 MiB an erasure cleanup wrote),
//! and with the pages a scan reads (a backup's read of the idempotency
//! runs: about 220 MiB at 10 M, the same with a cache of 16 MiB).
//!
//! Beside the tiles, the same thread writes a tile pack per full level-1
//! tile (`packs`): derived copies of its level-0 tiles with their upper
//! subtree hashes, so that proofs read a few files kept open.

mod bodies;
mod erased;
mod files;
mod index;
mod migrate;
mod packs;
pub(crate) mod runs;

pub use files::raise_descriptor_limit;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use self::bodies::{BodyMaps, InFiles};
use self::files::{Blob, Files};
use self::index::{
    INDEX_AT, INDEX_BLOCK, INDEX_OVERRIDE, INDEX_WATERMARK_KEY, LEGACY_INDEX, Segments,
};
use self::runs::RunMap;
use super::{
    BatchWrite, DedupeKey, LeafKey, Record, RecordBatch, RecordSpace, ScanCursor, ScanPage, Store,
    StoreError, StoredCheckpoint, StoredEvent, leaf_key,
};
use crate::merkle::Hash;
use crate::tiles::TILE_WIDTH;

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
const ALERT_STATE: u8 = b'a';
const TREE_SIZE_KEY: &[u8] = b"Mtree_size";
const CHECKPOINT_KEY: &[u8] = b"Mcheckpoint";
/// The storage layout of the database (see `migrate`); not a record.
const LAYOUT_KEY: &[u8] = b"Mlayout";

/// Map tags of the two digest maps (see `runs`).
const DEDUPE_MAP: u8 = b'd';
const LEAF_MAP: u8 = b'h';

/// The sled backend.
pub struct SledStore {
    shared: Arc<Shared>,
    compactor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// What the store shares with its background thread.
struct Shared {
    path: PathBuf,
    /// The open database. Only the background thread takes the write lock,
    /// to reopen it (see [`Shared::reopen`]); `None` once a reopen failed.
    open: RwLock<Option<Open>>,
    /// Serialises every read-modify-write of sealed body chunks.
    bodies: Mutex<()>,
    /// Bytes sled may write between two of its snapshots (see the module
    /// comment); `u64::MAX` never reopens.
    snapshot_after: AtomicU64,
    /// Reopens done, for tests and logs.
    reopens: AtomicU64,
    /// The immutable blobs, in files beside the database (see `files`).
    files: Files,
    /// Where the bodies lie in the body files read last (see `bodies`).
    body_maps: BodyMaps,
    /// The tree size that readers of blob files trust: the committed
    /// one, or during a commit the one it moves to once its files are
    /// durable (see [`SledStore::commit`]).
    committed: AtomicU64,
    /// The tree size of the last commit known durable (its sync returned):
    /// tile packs are made only below it (see `packs`).
    durable: AtomicU64,
    /// The tile packs built: packs `0..packs` exist (see `packs`).
    packs: AtomicU64,
    /// Fault injection: the next commit stops after writing its files, as
    /// a crash before the sled commit would.
    #[cfg(test)]
    crash_before_apply: AtomicBool,
}

/// One opening of the database: sled's handle, what makes its writes
/// durable, the two indexes loaded from it, and where the search index's
/// blocks are.
pub(super) struct Open {
    tree: sled::Tree,
    disk: Disk,
    /// The idempotency index and the leaf-hash index.
    dedupe: RunMap,
    leaves: RunMap,
    /// The search index's segment files and sled keys (see `index`).
    search: Segments,
}

/// The database and what makes its writes durable.
struct Disk {
    db: sled::Db,
    /// sled's data file and the blobs already fsynced; the mutex serialises syncs.
    synced: Mutex<Synced>,
    path: PathBuf,
    /// Set when a write was applied in memory but not made durable.
    unsynced: AtomicBool,
    /// Bytes sled's flushes wrote since this opening.
    flushed: AtomicU64,
    /// Fault injection: the next sync fails.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
}

#[derive(Default)]
struct Synced {
    data_file: Option<File>,
    blobs: HashSet<OsString>,
}

const UNSYNCED: &str = "an earlier write could not be made durable (full disk or I/O error); free space or fix the disk, then restart the server";

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

/// The leaf index of a key of the `Sealed` space (8 bytes, big-endian).
fn sealed_index(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            StoreError::Corrupt(format!(
                "a sealed body key must be 8 bytes, not {}",
                key.len()
            ))
        })
}

fn space_prefix(space: RecordSpace) -> u8 {
    match space {
        RecordSpace::Meta => META,
        RecordSpace::ApiKey => API_KEY,
        RecordSpace::DataKey => DATA_KEY,
        RecordSpace::Sealed => SEALED,
        RecordSpace::Erased => ERASED,
        RecordSpace::Governance => GOVERNANCE,
        RecordSpace::AlertState => ALERT_STATE,
    }
}

fn record_key(space: RecordSpace, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(space_prefix(space));
    k.extend_from_slice(key);
    k
}

/// Bytes of the checksum after every record value.
pub(super) const RECORD_CHECKSUM_LEN: usize = 4;

/// A record value as stored: `value || CRC-32C(full key || value)`, so a
/// changed byte in the value, or a value moved under another key, is found
/// on read (and by fsck) instead of being trusted.
fn checksummed(full_key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + RECORD_CHECKSUM_LEN);
    out.extend_from_slice(value);
    out.extend_from_slice(&checksum(full_key, value));
    out
}

/// The checksum [`checksummed`] appends to `value`.
fn checksum(full_key: &[u8], value: &[u8]) -> [u8; RECORD_CHECKSUM_LEN] {
    let mut h = crc32fast::Hasher::new();
    h.update(full_key);
    h.update(value);
    h.finalize().to_be_bytes()
}

/// A record's key for messages: `<prefix>/<key>`, the key in hex unless it
/// is printable ASCII.
fn key_name(full_key: &[u8]) -> String {
    let (prefix, rest) = full_key.split_first().unwrap_or((&b'?', &[]));
    if !rest.is_empty() && rest.iter().all(u8::is_ascii_graphic) {
        format!("{}/{}", char::from(*prefix), String::from_utf8_lossy(rest))
    } else {
        let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}/{hex}", char::from(*prefix))
    }
}

/// The value of a stored record, once its checksum holds.
fn verified(full_key: &[u8], stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    verified_ref(full_key, stored).map(<[u8]>::to_vec)
}

/// [`verified`] without the copy: the value inside `stored`.
fn verified_ref<'a>(full_key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("record {}: {why}", key_name(full_key)));
    let split = stored
        .len()
        .checked_sub(RECORD_CHECKSUM_LEN)
        .ok_or_else(|| corrupt("shorter than its checksum"))?;
    let (value, sum) = stored.split_at(split);
    if checksum(full_key, value) != *sum {
        return Err(corrupt("checksum mismatch (the value was altered)"));
    }
    Ok(value)
}

fn decode_u64(v: &[u8], what: &str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not an 8-byte integer")))
}

/// Segment size of new databases (see the module comment).
const SEGMENT_SIZE: usize = 8 << 20;

/// The segment size an existing database in `dir` was created with: sled
/// refuses to open a database with another one. It is recorded in sled's
/// `conf` file as a `segment_size: N` line (followed by a binary checksum).
fn existing_segment_size(dir: &Path) -> Option<usize> {
    let conf = std::fs::read(dir.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size:"))
        .and_then(|v| v.trim().parse().ok())
}

/// What sled may cache unless `serve` is told otherwise (`store_cache_mb`).
/// What grows with the log lives in files, not in sled, so sled's cache
/// holds small mutable state; a larger cache filled up during an erasure's
/// cleanup (one record per touched bundle, spread over the whole log) and
/// held the server near 600 MiB at 10 M events, with no gain in ingest.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

static CACHE_BYTES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_CACHE_BYTES);

/// Sets what databases opened from now on may cache (the process's one
/// setting: `serve` calls it once, before opening the log).
pub fn set_cache_capacity(bytes: u64) {
    CACHE_BYTES.store(bytes, Ordering::Relaxed);
}

/// The sled configuration of the log's database in `dir`: no background
/// flushing (every commit flushes explicitly), large segments, and the
/// cache capacity set for the process. `veritrail bench sled` measures the
/// same configuration.
pub fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES.load(Ordering::Relaxed))
        .segment_size(existing_segment_size(dir).unwrap_or(SEGMENT_SIZE))
        .flush_every_ms(None)
}

/// sled's data file in `dir`, which every commit fsyncs after the flush.
pub fn data_file(dir: &Path) -> PathBuf {
    dir.join("db")
}

/// Bytes sled may write before the store reopens the database, which makes
/// sled write a snapshot of its page table (see the module comment): the
/// most a start-up replays.
pub const SNAPSHOT_AFTER_BYTES: u64 = 128 << 20;

/// Opens sled on `dir`, retrying for up to `patience` while a handle this
/// process just dropped still holds sled's lock (its background threads
/// wind down).
fn open_sled(dir: &Path, patience: Duration) -> Result<sled::Db, StoreError> {
    let give_up = std::time::Instant::now() + patience;
    loop {
        match sled_config(dir).open() {
            Ok(db) => return Ok(db),
            // sled reports its file lock as an `Other` I/O error.
            Err(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock") =>
            {
                if std::time::Instant::now() >= give_up {
                    return Err(StoreError::Backend(format!(
                        "the database in {} is in use by another process (a running server?)",
                        dir.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(other) => return Err(backend(other)),
        }
    }
}

impl Open {
    /// Opens the database in `dir` and loads both indexes (see
    /// [`open_sled`] for `patience`).
    fn load(dir: &Path, patience: Duration) -> Result<Open, StoreError> {
        let db = open_sled(dir, patience)?;
        let tree = db.open_tree("log").map_err(backend)?;
        let disk = Disk {
            db,
            synced: Mutex::new(Synced::default()),
            path: dir.to_path_buf(),
            unsynced: AtomicBool::new(false),
            flushed: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
        };
        let runs = dir.join(runs::DIR);
        let dedupe = RunMap::open(&tree, &runs, DEDUPE_MAP, "idempotency index", true)?;
        let leaves = RunMap::open(&tree, &runs, LEAF_MAP, "leaf-hash index", false)?;
        let search = Segments::open(&tree, dir)?;
        Ok(Open {
            tree,
            disk,
            dedupe,
            leaves,
            search,
        })
    }

    /// What did not load from either index, as one error: entries missing
    /// from an index would let a retried event in twice, so only an
    /// offline check opens a damaged one.
    fn refuse_damage(&self) -> Result<(), StoreError> {
        let damage: Vec<&String> = self
            .dedupe
            .damage()
            .iter()
            .chain(self.leaves.damage())
            .collect();
        match damage.first() {
            None => Ok(()),
            Some(first) => Err(StoreError::Corrupt(format!(
                "{first}{}; run `veritrail fsck` on the data directory",
                if damage.len() > 1 {
                    format!(" (and {} more)", damage.len() - 1)
                } else {
                    String::new()
                }
            ))),
        }
    }

    fn sync_applied(&self) -> Result<(), StoreError> {
        self.disk.sync_applied()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    /// Up to `limit` raw pairs under `prefix` after `cursor` (keys without
    /// the prefix byte), and where the next page starts.
    #[allow(clippy::type_complexity)]
    fn scan_raw(
        &self,
        prefix: u8,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, sled::IVec)>, Option<ScanCursor>), StoreError> {
        use std::ops::Bound;
        let start = match cursor.key() {
            Some(k) => {
                let mut full = vec![prefix];
                full.extend_from_slice(k);
                Bound::Excluded(full)
            }
            None => Bound::Included(vec![prefix]),
        };
        let end = Bound::Excluded(vec![prefix + 1]);
        let mut out = Vec::new();
        for item in self
            .tree
            .range::<Vec<u8>, _>((start, end))
            .take(limit.max(1))
        {
            let (k, v) = item.map_err(backend)?;
            out.push((k[1..].to_vec(), v));
        }
        let next = if out.len() < limit.max(1) {
            None
        } else {
            out.last().map(|(k, _)| ScanCursor::after(k.clone()))
        };
        Ok((out, next))
    }
}

/// How long an open waits for sled's lock (see [`open_sled`]).
const OPEN_PATIENCE: Duration = Duration::from_secs(1);
const REOPEN_PATIENCE: Duration = Duration::from_secs(10);

const REOPEN_FAILED: &str = "the database could not be reopened (see the log); restart the server";

/// The open database, read-locked for one operation.
struct OpenGuard<'a>(RwLockReadGuard<'a, Option<Open>>);

impl std::ops::Deref for OpenGuard<'_> {
    type Target = Open;
    fn deref(&self) -> &Open {
        self.0
            .as_ref()
            .expect("SledStore::db checks that it is open")
    }
}

impl Shared {
    /// The open database. Never call it while holding one already: a
    /// waiting reopen would deadlock the two.
    fn db(&self) -> Result<OpenGuard<'_>, StoreError> {
        let guard = self
            .open
            .read()
            .map_err(|_| backend("database lock poisoned"))?;
        if guard.is_none() {
            return Err(StoreError::Backend(REOPEN_FAILED.into()));
        }
        Ok(OpenGuard(guard))
    }

    /// Closes and reopens the database, so that sled writes a snapshot of
    /// its page table and the next start replays only what follows it.
    /// Every operation waits meanwhile. A store whose last write was not
    /// made durable is left as it is (it refuses everything until a
    /// restart); a reopen that fails leaves the store refusing everything
    /// too, with an error that says to restart.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut open = self
            .open
            .write()
            .map_err(|_| backend("database lock poisoned"))?;
        match open.as_ref() {
            Some(o) => o.disk.check_synced()?,
            None => return Err(StoreError::Backend(REOPEN_FAILED.into())),
        }
        let started = std::time::Instant::now();
        drop(open.take());
        // Under load sled's threads can take a while to let go of the
        // lock: more patience than a start, which may meet another process.
        let fresh =
            Open::load(&self.path, REOPEN_PATIENCE).and_then(|o| o.refuse_damage().map(|()| o))?;
        *open = Some(fresh);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "reopened the database so that sled snapshots its page table"
        );
        Ok(())
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Only one process may open a
    /// directory at a time; sled enforces it with a file lock.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let mut store = SledStore::open_without_compaction(dir)?;
        store.db()?.refuse_damage()?;
        store.compactor = Some(start_compactor(store.shared.clone()));
        Ok(store)
    }

    /// As [`SledStore::open`], without the background merging of index
    /// runs and without reopening: for offline checks, whose scans then see
    /// every entry once.
    pub fn open_without_compaction(dir: &Path) -> Result<SledStore, StoreError> {
        let open = Open::load(dir, OPEN_PATIENCE)?;
        migrate::run(&open)?;
        // A damaged tree size reads as 0 here (no file is trusted) and is
        // reported by `tree_size`.
        let committed = match open.get(TREE_SIZE_KEY)? {
            Some(v) => decode_u64(&v, "stored tree size").unwrap_or(0),
            None => 0,
        };
        let files = Files::new(dir);
        Ok(SledStore {
            shared: Arc::new(Shared {
                path: dir.to_path_buf(),
                open: RwLock::new(Some(open)),
                bodies: Mutex::new(()),
                snapshot_after: AtomicU64::new(SNAPSHOT_AFTER_BYTES),
                reopens: AtomicU64::new(0),
                body_maps: BodyMaps::default(),
                committed: AtomicU64::new(committed),
                durable: AtomicU64::new(committed),
                packs: AtomicU64::new(packs::built_on_open(&files, committed)),
                files,
                #[cfg(test)]
                crash_before_apply: AtomicBool::new(false),
            }),
            compactor: None,
        })
    }

    fn db(&self) -> Result<OpenGuard<'_>, StoreError> {
        self.shared.db()
    }

    /// Sets how many bytes sled may write between two reopens (see
    /// [`SNAPSHOT_AFTER_BYTES`]).
    pub fn set_snapshot_after(&self, bytes: u64) {
        self.shared.snapshot_after.store(bytes, Ordering::Relaxed);
        if let Some((_, handle)) = &self.compactor {
            handle.thread().unpark();
        }
    }

    /// How many times the database was reopened since this store opened.
    pub fn reopens(&self) -> u64 {
        self.shared.reopens.load(Ordering::Relaxed)
    }

    /// Approximate size of the database on disk, in bytes, its blob and
    /// run files included (for benchmarks: it walks every file).
    pub fn size_on_disk(&self) -> u64 {
        let sled = self
            .db()
            .map(|db| db.disk.db.size_on_disk().unwrap_or(0))
            .unwrap_or(0);
        let runs: u64 = std::fs::read_dir(self.shared.path.join(runs::DIR))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        sled + self.shared.files.size_on_disk() + runs
    }

    /// Problems found in the stored runs of both indexes (fsck).
    pub fn check_index_runs(&self) -> Vec<String> {
        match self.db() {
            Ok(db) => {
                let mut out = db.dedupe.check();
                out.extend(db.leaves.check());
                out
            }
            Err(e) => vec![e.to_string()],
        }
    }

    /// Fault injection: the next segment file the search index writes
    /// fails at its fsync (1) or its directory's fsync (2).
    #[cfg(test)]
    pub(crate) fn fail_next_index_segment(&self, point: u8) {
        if let Ok(db) = self.db() {
            db.search.fail_next_file.store(point, Ordering::SeqCst);
        }
    }

    /// Problems found in the search index's segment files (fsck).
    pub fn check_index_segments(&self) -> Vec<String> {
        match self.db() {
            Ok(db) => db.search.check(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// Full bundles whose sealed-body file is missing (fsck): a bundle
    /// with neither a file nor a sled chunk nor plain events lost its
    /// bodies. Torn or altered files are found where the bodies are read.
    pub fn check_body_files(&self) -> Vec<String> {
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return vec![e.to_string()],
        };
        let committed = self.shared.committed.load(Ordering::Acquire);
        let mut out = Vec::new();
        for bundle in 0..committed / TILE_WIDTH {
            let blob = Blob::Bodies(bundle);
            if self.shared.files.path(blob).exists() {
                continue;
            }
            let start = bundle * TILE_WIDTH;
            let end = start + TILE_WIDTH;
            let in_sled =
                |lo: &[u8], hi: &[u8]| db.tree.range(lo.to_vec()..hi.to_vec()).next().is_some();
            if in_sled(&index_key(SEALED, start), &index_key(SEALED, end))
                || in_sled(&index_key(EVENT, start), &index_key(EVENT, end))
            {
                continue;
            }
            out.push(format!("{} is missing", blob.name()));
        }
        out
    }

    /// Problems in the packed records of erasure tombstones and body
    /// deletions (fsck): each must verify and decode, wherever it lies.
    pub fn check_packed_records(&self) -> Vec<String> {
        match self.db() {
            Ok(db) => {
                let mut out = erased::check(&db.tree);
                out.extend(bodies::check_masks(&db.tree));
                out
            }
            Err(e) => vec![e.to_string()],
        }
    }

    /// Merges index runs until none is due (tests and `migrate`).
    pub fn compact_now(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        let sync = || db.disk.sync_applied();
        for map in [&db.dedupe, &db.leaves] {
            while map.compact_once(&sync)? {}
        }
        Ok(())
    }

    /// The body files readers may trust now.
    fn in_files(&self) -> InFiles<'_> {
        InFiles {
            files: &self.shared.files,
            committed: self.shared.committed.load(Ordering::Acquire),
            maps: &self.shared.body_maps,
        }
    }

    fn blob(&self, blob: Blob, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.blob(&*self.db()?, blob, key)
    }

    /// Hashes `start .. start + count` of full level-0 tile `index` from
    /// its tile pack, `None` while it has none (see `packs`).
    fn packed(
        &self,
        index: u64,
        start: usize,
        count: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_pack(index, packs::hashes_at(index, start, count))
    }

    /// Bytes `(at, len)` of the tile pack holding level-0 tile `index`,
    /// when that pack is written.
    fn read_pack(
        &self,
        index: u64,
        (at, len): (u64, usize),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let n = packs::pack_of(index);
        if n >= self.shared.packs.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.shared
            .files
            .read_part(Blob::Pack(n), packs::LEN, at, len)
    }

    /// How many tile packs are written (see `packs`): those of the
    /// first so many full level-1 tiles.
    pub fn tile_packs_built(&self) -> u64 {
        self.shared.packs.load(Ordering::Acquire)
    }

    /// Problems in the tile packs (fsck; see `packs::check`).
    pub fn check_tile_packs(&self) -> Vec<String> {
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return vec![e.to_string()],
        };
        let size = self.shared.committed.load(Ordering::Acquire);
        packs::check(&self.shared.files, size, |i| self.shared.full_tile(&db, i))
    }

    fn lock_bodies(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.shared
            .bodies
            .lock()
            .map_err(|_| backend("sealed body lock poisoned"))
    }
}

impl Shared {
    /// A full hash tile or entry bundle: its file once the committed tree
    /// covers it, else (or in a database from before blob files) its sled
    /// entry. A committed blob in neither place is damage, named.
    fn blob(&self, db: &Open, blob: Blob, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !blob.committed_at(self.committed.load(Ordering::Acquire)) {
            return db.get(key);
        }
        if let Some(bytes) = self.files.read(blob)? {
            if let Blob::Tile(..) = blob
                && bytes.len() as u64 != TILE_WIDTH * 32
            {
                return Err(StoreError::Corrupt(format!(
                    "{} is torn: {} bytes, a full tile has {}",
                    blob.name(),
                    bytes.len(),
                    TILE_WIDTH * 32
                )));
            }
            return Ok(Some(bytes));
        }
        match db.get(key)? {
            Some(v) => Ok(Some(v)),
            None => Err(StoreError::Corrupt(format!("{} is missing", blob.name()))),
        }
    }

    /// Full level-0 tile `index`, committed.
    fn full_tile(&self, db: &Open, index: u64) -> Result<Vec<u8>, StoreError> {
        self.blob(db, Blob::Tile(0, index), &tile_key(0, index))?
            .ok_or_else(|| StoreError::Corrupt(format!("hash tile 0/{index} is missing")))
    }

    /// Writes the next tile pack if a durable commit covers its leaves;
    /// whether it wrote one (see `packs`).
    fn pack_next(&self, db: &Open) -> Result<bool, StoreError> {
        let n = self.packs.load(Ordering::Acquire);
        if (n + 1) * packs::LEAVES > self.durable.load(Ordering::Acquire) {
            return Ok(false);
        }
        packs::write(&self.files, n, |i| self.full_tile(db, i))?;
        self.packs.store(n + 1, Ordering::Release);
        Ok(true)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.compactor.take() {
            stop.store(true, Ordering::Release);
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

/// How long the compactor sleeps when nothing is due.
const COMPACTOR_IDLE: Duration = Duration::from_millis(500);

/// The background thread that merges index runs, deletes garbage runs,
/// writes the tile packs a durable commit covers (`packs`), and reopens
/// the database once sled has written `snapshot_after` bytes since it was
/// opened (between two merges, never during one). An error is logged and
/// retried later; the runs it had not finished stay garbage that a later
/// pass deletes, and a pack not written is written again.
fn start_compactor(shared: Arc<Shared>) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("index-compactor".into())
        .spawn(move || {
            while !flag.load(Ordering::Acquire) {
                let (worked, reopen) = match shared.db() {
                    Ok(db) if db.disk.check_synced().is_ok() => {
                        let sync = || db.disk.sync_applied();
                        let mut worked = false;
                        for map in [&db.dedupe, &db.leaves] {
                            if flag.load(Ordering::Acquire) {
                                return;
                            }
                            match map.compact_once(&sync) {
                                Ok(w) => worked |= w,
                                Err(e) => {
                                    tracing::error!(error = %e, "couldn't merge index runs; will retry");
                                    std::thread::park_timeout(COMPACTOR_IDLE * 10);
                                }
                            }
                        }
                        match shared.pack_next(&db) {
                            Ok(w) => worked |= w,
                            Err(e) => {
                                tracing::error!(error = %e, "couldn't write a tile pack; will retry");
                                std::thread::park_timeout(COMPACTOR_IDLE * 10);
                            }
                        }
                        let due = db.disk.flushed.load(Ordering::Relaxed)
                            >= shared.snapshot_after.load(Ordering::Relaxed);
                        (worked, due)
                    }
                    _ => (false, false),
                };
                if reopen && let Err(e) = shared.reopen() {
                    tracing::error!(error = %e, "couldn't reopen the database");
                }
                if !worked && !reopen {
                    std::thread::park_timeout(COMPACTOR_IDLE);
                }
            }
        })
        .expect("spawning the index compactor");
    (stop, handle)
}

impl Disk {
    /// Makes everything written so far durable: sled's flush, then an fsync
    /// of new blobs and of the data file (see the module comment). A
    /// failure marks the store unsynced before the sync lock is released,
    /// and a sync that finds it marked fails too: a writer queued behind a
    /// failed fsync never reports success.
    fn sync(&self) -> Result<(), StoreError> {
        let flushed = self.db.flush().map_err(backend).map(|written| {
            self.flushed.fetch_add(written as u64, Ordering::Relaxed);
        });
        let mut synced = self
            .synced
            .lock()
            .map_err(|_| backend("sync state lock poisoned"))?;
        self.check_synced()?;
        let done = flushed.and_then(|()| self.sync_files(&mut synced));
        if done.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        done
    }

    fn sync_files(&self, synced: &mut Synced) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.fail_next_sync.swap(false, Ordering::AcqRel) {
            return Err(backend("injected fsync failure"));
        }
        self.sync_new_blobs(&mut synced.blobs)?;
        if synced.data_file.is_none() {
            synced.data_file = Some(File::open(data_file(&self.path)).map_err(backend)?);
        }
        if let Some(f) = synced.data_file.as_ref() {
            f.sync_data().map_err(backend)?;
        }
        Ok(())
    }

    /// fsyncs every blob not synced before, then the blob directory so
    /// their names are durable too. Forgets blobs sled has removed.
    fn sync_new_blobs(&self, synced: &mut HashSet<OsString>) -> Result<(), StoreError> {
        let dir = self.path.join("blobs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(backend(e)),
        };
        let names = entries
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        sync_listed_blobs(&dir, names, synced)
    }

    /// Fails once a write could not be made durable (see the module comment).
    fn check_synced(&self) -> Result<(), StoreError> {
        if self.unsynced.load(Ordering::Acquire) {
            return Err(StoreError::Backend(UNSYNCED.into()));
        }
        Ok(())
    }

    /// Makes an applied write durable, or marks the store unsynced.
    fn sync_applied(&self) -> Result<(), StoreError> {
        self.sync()
    }
}

/// fsyncs each listed blob not synced before, then `dir`. sled deletes a
/// blob once a newer write replaced the item it holds (that write is synced
/// with the data file), so a listed blob that is gone by the time it is
/// opened is simply no longer there, not an error.
fn sync_listed_blobs(
    dir: &Path,
    names: Vec<OsString>,
    synced: &mut HashSet<OsString>,
) -> Result<(), StoreError> {
    let mut present = HashSet::new();
    let mut fresh = false;
    for name in names {
        if !synced.contains(&name) {
            match File::open(dir.join(&name)) {
                Ok(f) => f.sync_data().map_err(backend)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(backend(e)),
            }
            fresh = true;
        }
        present.insert(name);
    }
    if fresh {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(backend)?;
    }
    *synced = present;
    Ok(())
}

impl Store for SledStore {
    fn commit(&self, b: &BatchWrite) -> Result<(), StoreError> {
        let db = self.db()?;
        db.disk.check_synced()?;
        let mut batch = sled::Batch::default();
        // Full tiles and bundles go to files, and their partial versions
        // leave sled in the same batch.
        let mut blobs: Vec<(Blob, &[u8])> = Vec::new();
        for (level, index, data) in &b.tiles {
            let key = tile_key(*level, *index);
            let blob = Blob::Tile(*level, *index);
            if data.len() as u64 == TILE_WIDTH * 32 && blob.committed_at(b.tree_size) {
                blobs.push((blob, data));
                batch.remove(&key[..]);
            } else {
                batch.insert(&key[..], data.as_slice());
            }
        }
        for (index, data) in &b.bundles {
            let key = index_key(BUNDLE, *index);
            let blob = Blob::Bundle(*index);
            if blob.committed_at(b.tree_size) {
                blobs.push((blob, data));
                batch.remove(&key[..]);
            } else {
                batch.insert(&key[..], data.as_slice());
            }
        }
        for (index, ev) in &b.events {
            batch.insert(&index_key(EVENT, *index)[..], ev.encode());
        }
        let _bodies = self.lock_bodies()?;
        let mut sealed = Vec::new();
        let mut tombstones = Vec::new();
        for (space, key, value) in &b.records {
            if *space == RecordSpace::Sealed {
                sealed.push((sealed_index(key)?, value.as_slice()));
                continue;
            }
            if let (RecordSpace::Erased, Some(index)) = (*space, erased::leaf_of(key)) {
                tombstones.push((index, Some(value.as_slice())));
                continue;
            }
            let k = record_key(*space, key);
            let v = checksummed(&k, value);
            batch.insert(k, v);
        }
        if !tombstones.is_empty() {
            erased::stage(&db.tree, &mut batch, &tombstones)?;
        }
        let body_files =
            bodies::stage_commit(&db.tree, &mut batch, &sealed, &self.in_files(), b.tree_size)?;
        blobs.extend(body_files.iter().map(|(blob, v)| (*blob, v.as_slice())));
        let dedupe = db.dedupe.stage(
            &mut batch,
            b.dedupe.iter().map(|(k, i)| (k.0, *i)).collect(),
        )?;
        let leaves = db.leaves.stage(
            &mut batch,
            b.leaf_index
                .iter()
                .map(|(h, i)| (leaf_key(h), *i))
                .collect(),
        )?;
        let search = db
            .search
            .stage(&mut batch, &b.index_blocks, false, b.index_watermark)?;
        if let Some(cp) = &b.checkpoint {
            batch.insert(CHECKPOINT_KEY, cp.encode());
        }
        batch.insert(TREE_SIZE_KEY, &b.tree_size.to_be_bytes()[..]);
        batch.insert(LAYOUT_KEY, &migrate::LAYOUT.to_be_bytes()[..]);
        // The files first, durably: the sled commit names them. A failed
        // write leaves the outcome of the files unknown, so the store
        // stops as after a failed sync; whatever was written lies beyond
        // the committed size, unread, until a commit rewrites it.
        let written = self.shared.files.write_all(&blobs);
        self.shared.body_maps.forget(&blobs);
        if let Err(e) = written {
            db.disk.unsynced.store(true, Ordering::Release);
            return Err(e);
        }
        #[cfg(test)]
        if self.shared.crash_before_apply.swap(false, Ordering::AcqRel) {
            return Err(backend("injected crash before the sled commit"));
        }
        // Readers may trust the files from now on; sled's batch below
        // removes the partial versions they replace.
        let before = self
            .shared
            .committed
            .fetch_max(b.tree_size, Ordering::AcqRel);
        if let Err(e) = db.tree.apply_batch(batch) {
            // sled's memory may hold part of what it could not write: stop
            // as after a failed sync.
            self.shared.committed.store(before, Ordering::Release);
            db.disk.unsynced.store(true, Ordering::Release);
            return Err(backend(e));
        }
        db.sync_applied()?;
        self.shared.durable.fetch_max(b.tree_size, Ordering::AcqRel);
        db.dedupe.applied(dedupe);
        db.leaves.applied(leaves);
        db.search.applied(search);
        Ok(())
    }

    fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        let db = self.db()?;
        db.disk.check_synced()?;
        db.tree
            .insert(CHECKPOINT_KEY, cp.encode())
            .map_err(backend)?;
        db.sync_applied()
    }

    fn latched(&self) -> bool {
        self.db()
            .map(|db| db.disk.unsynced.load(Ordering::Acquire))
            .unwrap_or(true)
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        db.disk.check_synced()?;
        match db.get(TREE_SIZE_KEY)? {
            Some(v) => decode_u64(&v, "stored tree size"),
            None => Ok(0),
        }
    }

    fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let db = self.db()?;
        db.get(CHECKPOINT_KEY)?
            .map(|v| StoredCheckpoint::decode(&v))
            .transpose()
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if level == 0
            && let Some(tile) = self.packed(index, 0, TILE_WIDTH as usize)?
        {
            return Ok(Some(tile));
        }
        self.blob(Blob::Tile(level, index), &tile_key(level, index))
    }

    fn tile_upper_nodes(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_pack(index, packs::upper_at(index))
    }

    fn tile_hashes(
        &self,
        level: u8,
        index: u64,
        start: usize,
        count: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if level == 0
            && let Some(part) = self.packed(index, start, count)?
        {
            return Ok(Some(part));
        }
        let blob = Blob::Tile(level, index);
        // A tile from before blob files, or not yet committed, is in sled.
        let part = if blob.committed_at(self.shared.committed.load(Ordering::Acquire)) {
            let full_len = TILE_WIDTH * 32;
            self.shared
                .files
                .read_part(blob, full_len, start as u64 * 32, count * 32)?
        } else {
            None
        };
        match part {
            Some(part) => Ok(Some(part)),
            None => crate::store::tile_part(level, index, self.tile(level, index)?, start, count),
        }
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.blob(Blob::Bundle(index), &index_key(BUNDLE, index))
    }

    fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        let db = self.db()?;
        db.get(&index_key(EVENT, index))?
            .map(|v| StoredEvent::decode(&v))
            .transpose()
    }

    fn dedupe(&self, key: &DedupeKey) -> Result<Option<u64>, StoreError> {
        let db = self.db()?;
        db.dedupe.get(&key.0)
    }

    fn leaf_index(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        // The index keeps 16 bytes of the hash: confirm the whole hash
        // against the level-0 tile.
        let Some(index) = self.db()?.leaves.get(&leaf_key(leaf_hash))? else {
            return Ok(None);
        };
        let at = (index % 256) as usize * 32;
        let tile = self.tile(0, index / 256)?;
        let whole = tile.as_ref().and_then(|t| t.get(at..at + 32));
        Ok((whole == Some(leaf_hash.as_bytes().as_slice())).then_some(index))
    }

    fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.commit_records(&RecordBatch {
            put: vec![(space, key.to_vec(), value.to_vec())],
            ..RecordBatch::default()
        })
    }

    fn record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        if space == RecordSpace::Sealed {
            return bodies::get(&db.tree, &self.in_files(), sealed_index(key)?);
        }
        if let (RecordSpace::Erased, Some(index)) = (space, erased::leaf_of(key)) {
            return erased::get(&db.tree, index);
        }
        let k = record_key(space, key);
        db.get(&k)?.map(|v| verified(&k, &v)).transpose()
    }

    fn records(&self, space: RecordSpace) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = self.scan_records(space, &c, 4096)?;
            for item in page.items {
                out.push(item?);
            }
            cursor = page.next;
        }
        Ok(out)
    }

    fn scan_records(
        &self,
        space: RecordSpace,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<Record>, StoreError> {
        let db = self.db()?;
        if space == RecordSpace::Sealed {
            let page = bodies::scan(&db.tree, &self.in_files(), cursor, limit)?;
            let items = page
                .items
                .into_iter()
                .map(|r| r.map(|(i, v)| (i.to_be_bytes().to_vec(), v)))
                .collect();
            return Ok(ScanPage {
                items,
                next: page.next,
            });
        }
        let prefix = space_prefix(space);
        let (raw, next) = db.scan_raw(prefix, cursor, limit)?;
        if space == RecordSpace::Erased {
            let own = raw
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), verified(&record_key(space, &k), &v)?)))
                .collect();
            return erased::scan(&db.tree, cursor, limit, own);
        }
        // The tree size, checkpoint and layout share the metadata prefix
        // but are not records: leave them out, so a copy of the records
        // never carries a stale tree size or checkpoint.
        let items = raw
            .into_iter()
            .filter(|(k, _)| {
                let mut full = vec![prefix];
                full.extend_from_slice(k);
                ![TREE_SIZE_KEY, CHECKPOINT_KEY, LAYOUT_KEY].contains(&full.as_slice())
            })
            .map(|(k, v)| {
                let mut full = vec![prefix];
                full.extend_from_slice(&k);
                Ok((k, verified(&full, &v)?))
            })
            .collect();
        Ok(ScanPage { items, next })
    }

    fn scan_events(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(u64, StoredEvent)>, StoreError> {
        let db = self.db()?;
        let (raw, next) = db.scan_raw(EVENT, cursor, limit)?;
        let items = raw
            .into_iter()
            .map(|(k, v)| {
                let index = decode_u64(&k, "event key")?;
                let event = StoredEvent::decode(&v)
                    .map_err(|e| StoreError::Corrupt(format!("stored event {index}: {e}")))?;
                Ok((index, event))
            })
            .collect();
        Ok(ScanPage { items, next })
    }

    fn scan_dedupe(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(DedupeKey, u64)>, StoreError> {
        let db = self.db()?;
        let page = db.dedupe.scan(cursor, limit)?;
        Ok(ScanPage {
            items: page
                .items
                .into_iter()
                .map(|r| r.map(|(d, i)| (DedupeKey(d), i)))
                .collect(),
            next: page.next,
        })
    }

    fn scan_leaf_index(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(LeafKey, u64)>, StoreError> {
        let db = self.db()?;
        db.leaves.scan(cursor, limit)
    }

    fn commit_records(&self, b: &RecordBatch) -> Result<(), StoreError> {
        let db = self.db()?;
        db.disk.check_synced()?;
        let mut batch = sled::Batch::default();
        let bodies_lock = self.lock_bodies()?;
        // Sealed bodies last: a chunk rewritten twice in one change must
        // see its first rewrite, so those go one by one.
        let mut sealed = Vec::new();
        let mut tombstones = Vec::new();
        for (space, key, value) in &b.put {
            if *space == RecordSpace::Sealed {
                sealed.push((sealed_index(key)?, Some(value.as_slice())));
                continue;
            }
            if let (RecordSpace::Erased, Some(index)) = (*space, erased::leaf_of(key)) {
                tombstones.push((index, Some(value.as_slice())));
                continue;
            }
            let k = record_key(*space, key);
            let v = checksummed(&k, value);
            batch.insert(k, v);
        }
        for (space, key) in &b.delete {
            if *space == RecordSpace::Sealed {
                sealed.push((sealed_index(key)?, None));
                continue;
            }
            if let (RecordSpace::Erased, Some(index)) = (*space, erased::leaf_of(key)) {
                tombstones.push((index, None));
                continue;
            }
            batch.remove(record_key(*space, key));
        }
        if !sealed.is_empty() {
            bodies::rewrite(&db.tree, &mut batch, &sealed, &self.in_files())?;
        }
        if !tombstones.is_empty() {
            erased::stage(&db.tree, &mut batch, &tombstones)?;
        }
        // A flush's segment file is durable before the batch that names it.
        let search = db.search.stage(
            &mut batch,
            &b.index_blocks,
            b.index_flush,
            b.index_watermark,
        )?;
        for index in &b.delete_events {
            batch.remove(&index_key(EVENT, *index)[..]);
        }
        db.tree.apply_batch(batch).map_err(backend)?;
        // The next read-modify-write of a chunk, mask or tombstone record
        // sees this batch once sled applied it: a commit need not wait for
        // its fsync (a failed one stops the store, see `Disk::sync`).
        drop(bodies_lock);
        db.sync_applied()?;
        db.search.applied(search);
        Ok(())
    }

    fn index_blocks(
        &self,
        bucket: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.db()?.search.blocks(bucket, below, limit)
    }

    fn index_watermark(&self) -> Result<Option<u64>, StoreError> {
        let db = self.db()?;
        db.get(INDEX_WATERMARK_KEY)?
            .map(|v| {
                let v = verified(INDEX_WATERMARK_KEY, &v)?;
                decode_u64(&v, "search index watermark")
            })
            .transpose()
    }

    fn tidy_index(&self) -> Result<bool, StoreError> {
        let db = self.db()?;
        db.disk.check_synced()?;
        let Some(watermark) = self.index_watermark()? else {
            return Ok(false);
        };
        let mut batch = sled::Batch::default();
        // The segment file is durable before the batch that names it; a
        // crash before the batch leaves the `j` keys, and the file unnamed
        // (deleted on open).
        let Some(tidied) = db.search.stage_tidy(&mut batch, watermark)? else {
            // Nothing left in sled: a segment with many overrides, if any,
            // is rewritten with them. Its new file is durable before the
            // batch that names it; the old one goes once that is durable.
            let Some(refolded) = db.search.stage_refold(&mut batch)? else {
                return Ok(false);
            };
            db.search.refolding(&refolded);
            if let Err(e) = db.tree.apply_batch(batch) {
                db.search.unrefolded(&refolded);
                return Err(backend(e));
            }
            db.sync_applied()?;
            db.search.refolded(&refolded);
            return Ok(true);
        };
        db.search.tidying(&tidied);
        if let Err(e) = db.tree.apply_batch(batch) {
            db.search.untidied(&tidied);
            return Err(backend(e));
        }
        // A failed sync latches the store; sled's view and the memory
        // already agree on the segment.
        db.sync_applied()?;
        Ok(true)
    }

    fn clear_index(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        db.disk.check_synced()?;
        // The watermark goes first: a crash part way leaves an index
        // without one, which is cleared again on the next start.
        db.tree.remove(INDEX_WATERMARK_KEY).map_err(backend)?;
        db.sync_applied()?;
        db.search.forget_all();
        for prefix in [LEGACY_INDEX, INDEX_BLOCK, INDEX_OVERRIDE, INDEX_AT] {
            loop {
                let keys: Vec<sled::IVec> = db
                    .tree
                    .scan_prefix([prefix])
                    .keys()
                    .take(65_536)
                    .collect::<Result<_, _>>()
                    .map_err(backend)?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = sled::Batch::default();
                for k in keys {
                    batch.remove(k);
                }
                db.tree.apply_batch(batch).map_err(backend)?;
                db.sync_applied()?;
            }
        }
        // No durable key names a segment any more.
        db.search.delete_files()
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
    fn a_record_altered_on_disk_or_moved_to_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // Sealed bodies are packed by bundle (see `bodies`); their chunks
        // carry the same checksum.
        let spaces = [
            RecordSpace::Meta,
            RecordSpace::ApiKey,
            RecordSpace::DataKey,
            RecordSpace::Erased,
            RecordSpace::Governance,
            RecordSpace::AlertState,
        ];
        for space in spaces {
            store.put_record(space, b"a", b"value of a").unwrap();
            store.put_record(space, b"b", b"value of b").unwrap();
            assert_eq!(store.record(space, b"a").unwrap().unwrap(), b"value of a");
            for at in [0, 9, 11] {
                let k = record_key(space, b"a");
                let mut raw = store.db().unwrap().tree.get(&k).unwrap().unwrap().to_vec();
                raw[at] ^= 1;
                store.db().unwrap().tree.insert(&k, raw.clone()).unwrap();
                assert!(
                    matches!(store.record(space, b"a"), Err(StoreError::Corrupt(_))),
                    "{space:?}, byte {at}"
                );
                assert!(store.records(space).is_err());
                raw[at] ^= 1;
                store.db().unwrap().tree.insert(&k, raw).unwrap();
            }
            // b's bytes, checksum and all, under a's key.
            let moved = store
                .db()
                .unwrap()
                .tree
                .get(record_key(space, b"b"))
                .unwrap()
                .unwrap();
            store
                .db()
                .unwrap()
                .tree
                .insert(record_key(space, b"a"), moved)
                .unwrap();
            assert!(matches!(
                store.record(space, b"a"),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn clearing_the_index_removes_entries_of_the_first_index_format_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::write_sample(&store);
        // One key per leaf and term, with an empty value.
        let mut legacy = vec![LEGACY_INDEX];
        legacy.extend_from_slice(&[7u8; 33]);
        legacy.extend_from_slice(&5u64.to_be_bytes());
        store.db().unwrap().tree.insert(&legacy, &[][..]).unwrap();
        store.clear_index().unwrap();
        assert_eq!(
            store.db().unwrap().tree.scan_prefix([LEGACY_INDEX]).count(),
            0
        );
        assert_eq!(
            store.db().unwrap().tree.scan_prefix([INDEX_BLOCK]).count(),
            0
        );
        assert_eq!(store.db().unwrap().tree.scan_prefix([INDEX_AT]).count(), 0);
        assert_eq!(store.index_watermark().unwrap(), None);
        assert_eq!(store.tree_size().unwrap(), 3, "nothing else is touched");
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
    fn a_write_that_cannot_be_made_durable_stops_all_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // sled keeps its data file open; the fsync that follows its flush
        // opens it by name, which now fails like a broken disk would.
        std::fs::remove_file(dir.path().join("db")).unwrap();
        let batch = BatchWrite {
            tree_size: 1,
            ..BatchWrite::default()
        };
        assert!(store.commit(&batch).is_err());
        for err in [
            store.tree_size().err(),
            store.commit(&batch).err(),
            store.put_record(RecordSpace::Meta, b"k", b"v").err(),
        ] {
            let err = err.expect("an unsynced store refuses").to_string();
            assert!(err.contains("restart the server"), "{err}");
        }
    }

    #[test]
    fn a_writer_queued_behind_a_failed_fsync_does_not_acknowledge() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let cp = StoredCheckpoint {
            published_at_ms: 1,
            note: b"note".to_vec(),
        };
        let db = store.db().unwrap();
        // Hold the sync lock, so both writers apply their change in sled and
        // then queue for the sync; the first sync to run fails.
        let sync_lock = db.disk.synced.lock().unwrap();
        db.disk.fail_next_sync.store(true, Ordering::SeqCst);
        let applied =
            |key: &[u8], value: &[u8]| db.tree.get(key).unwrap().is_some_and(|v| v == value);
        std::thread::scope(|s| {
            let batch = s.spawn(|| {
                store.commit(&BatchWrite {
                    tree_size: 7,
                    ..BatchWrite::default()
                })
            });
            while !applied(TREE_SIZE_KEY, &7u64.to_be_bytes()) {
                std::thread::yield_now();
            }
            let checkpoint = s.spawn(|| store.put_checkpoint(&cp));
            while !applied(CHECKPOINT_KEY, &cp.encode()) {
                std::thread::yield_now();
            }
            drop(sync_lock);
            let (a, b) = (batch.join().unwrap(), checkpoint.join().unwrap());
            // Whichever synced second synced on top of a failed fsync.
            assert!(a.is_err() && b.is_err(), "batch: {a:?}, checkpoint: {b:?}");
        });
        drop(db);
        assert!(store.tree_size().is_err(), "the store stays unsynced");
    }

    #[test]
    fn a_blob_sled_removed_after_the_listing_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1"), b"blob").unwrap();
        let mut synced = HashSet::new();
        // "2" was listed, then unlinked by sled before it could be opened.
        let names = vec![OsString::from("1"), OsString::from("2")];
        sync_listed_blobs(dir.path(), names, &mut synced).unwrap();
        assert_eq!(synced, HashSet::from([OsString::from("1")]));
    }

    #[test]
    fn a_database_keeps_the_segment_size_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(existing_segment_size(dir.path()), None);
        // A database made with sled's default segments still opens.
        drop(sled::Config::new().path(dir.path()).open().unwrap());
        assert_eq!(existing_segment_size(dir.path()), Some(512 * 1024));
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::write_sample(&store);
        drop(store);
        let fresh = tempfile::tempdir().unwrap();
        drop(SledStore::open(fresh.path()).unwrap());
        assert_eq!(existing_segment_size(fresh.path()), Some(SEGMENT_SIZE));
    }

    #[test]
    fn full_entry_bundles_stay_inline_in_the_data_file() {
        // 40 full bundles of maximal leaves: several tree nodes of ~17
        // bundles, each far above sled's default blob threshold.
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let bundle = vec![7u8; 256 * 200];
        for chunk in 0..4u64 {
            // A tree size that leaves every bundle open: full ones are files.
            let batch = BatchWrite {
                tree_size: 1,
                bundles: (chunk * 10..(chunk + 1) * 10)
                    .map(|i| (i, bundle.clone()))
                    .collect(),
                ..BatchWrite::default()
            };
            store.commit(&batch).unwrap();
        }
        let blobs = std::fs::read_dir(dir.path().join("blobs"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(blobs, 0, "no node went to a separate blob file");
        assert_eq!(store.bundle(39).unwrap().unwrap(), bundle);
    }

    #[test]
    fn every_blob_is_synced_before_the_commit_returns() {
        let dir = tempfile::tempdir().unwrap();
        // Small segments, as in databases created before 8 MiB: big values
        // become blobs.
        drop(sled::Config::new().path(dir.path()).open().unwrap());
        let store = SledStore::open(dir.path()).unwrap();
        let bundle = vec![7u8; 256 * 200];
        for i in 0..40u64 {
            // Open bundles stay in sled (full ones are files).
            let batch = BatchWrite {
                tree_size: 1,
                bundles: vec![(i, bundle.clone())],
                ..BatchWrite::default()
            };
            store.commit(&batch).unwrap();
        }
        let on_disk: HashSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!on_disk.is_empty(), "this layout makes sled write blobs");
        let db = store.db().unwrap();
        let synced = db.disk.synced.lock().unwrap();
        assert_eq!(synced.blobs, on_disk, "every blob on disk was synced");
    }

    /// The newest page-table snapshot sled wrote in `dir` (its name holds
    /// the log position it covers).
    fn newest_snapshot(dir: &Path) -> Option<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap.") && !n.ends_with(".generating"))
            .max()
    }

    /// Waits (at most 20 s) until `done` holds.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < give_up, "{what} never happened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_database_is_reopened_once_sled_wrote_enough_and_keeps_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let first = newest_snapshot(dir.path());
        super::super::conformance::write_sample(&store);
        store.set_snapshot_after(1);
        eventually("a reopen", || store.reopens() >= 1);
        store.set_snapshot_after(u64::MAX);
        assert!(
            newest_snapshot(dir.path()) > first,
            "the reopen made sled snapshot its page table past the writes"
        );
        super::super::conformance::check_sample(&store);
        // The reopened database takes writes, and they survive a restart.
        store
            .put_record(RecordSpace::Governance, b"after", b"reopen")
            .unwrap();
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::check_sample(&store);
        assert_eq!(
            store
                .record(RecordSpace::Governance, b"after")
                .unwrap()
                .unwrap(),
            b"reopen"
        );
    }

    #[test]
    fn a_reopen_that_fails_leaves_a_store_that_refuses_everything_until_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::write_sample(&store);
        // sled checks its configuration file on open: a damaged one makes
        // the reopen fail, as a failing disk would.
        let conf = dir.path().join("conf");
        let good = std::fs::read(&conf).unwrap();
        std::fs::write(&conf, b"this is not sled's configuration").unwrap();
        store.set_snapshot_after(1);
        eventually("a refusal", || store.tree_size().is_err());
        for err in [
            store.tree_size().err(),
            store.tile(0, 0).err(),
            store.commit(&BatchWrite::default()).err(),
            store.put_record(RecordSpace::Meta, b"k", b"v").err(),
        ] {
            let err = err
                .expect("a store that could not reopen refuses")
                .to_string();
            assert!(err.contains("restart the server"), "{err}");
        }
        assert_eq!(store.reopens(), 0);
        drop(store);
        // Nothing was lost: a restart with the disk repaired has it all.
        std::fs::write(&conf, good).unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        super::super::conformance::check_sample(&store);
    }

    /// A batch growing the tree from `from` to `to` leaves (within bundle
    /// 0 and tile 0/0), with `tag` in every hash, entry and body, so that
    /// two versions of the same leaves differ.
    fn edge_batch(from: u64, to: u64, tag: u8) -> BatchWrite {
        let width = to as usize;
        BatchWrite {
            tree_size: to,
            tiles: vec![(0, 0, vec![tag; width * 32])],
            bundles: vec![(0, vec![tag; width * 3])],
            records: (from..to)
                .map(|i| {
                    let body = format!("body {i} version {tag}").into_bytes();
                    (RecordSpace::Sealed, i.to_be_bytes().to_vec(), body)
                })
                .collect(),
            ..BatchWrite::default()
        }
    }

    fn body(store: &SledStore, i: u64) -> Option<Vec<u8>> {
        store.record(RecordSpace::Sealed, &i.to_be_bytes()).unwrap()
    }

    fn objects(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.join(files::DIR)];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().to_path_buf());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_cleanup_write_whose_fsync_fails_is_all_or_nothing_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let tombstone = b"erased: bench".to_vec();
        // A step's write: bodies deleted over the files of full bundles 0
        // and 1 and in open bundle 2, each with its tombstone.
        let gone = [3u64, 4, 200, 300, 511, 520];
        let step = RecordBatch {
            delete: gone
                .iter()
                .map(|i| (RecordSpace::Sealed, i.to_be_bytes().to_vec()))
                .collect(),
            put: gone
                .iter()
                .map(|i| {
                    (
                        RecordSpace::Erased,
                        i.to_be_bytes().to_vec(),
                        tombstone.clone(),
                    )
                })
                .collect(),
            ..RecordBatch::default()
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut batch = edge_batch(0, 600, 1);
            batch.tiles.clear();
            batch.bundles.clear();
            store.commit(&batch).unwrap();
            fail_next_sync(&store);
            assert!(store.commit_records(&step).is_err());
            assert!(store.commit_records(&step).is_err(), "latched");
        }
        let store = SledStore::open(dir.path()).unwrap();
        // Before or after, for every leaf of the step at once; nothing
        // else is touched.
        let after = body(&store, 3).is_none();
        for i in 0..600u64 {
            let erased = gone.contains(&i) && after;
            assert_eq!(body(&store, i).is_none(), erased, "body {i}");
            let own = store.record(RecordSpace::Erased, &i.to_be_bytes()).unwrap();
            assert_eq!(own.is_some(), erased, "tombstone {i}");
        }
        // The step is written again (the job resumes) and lands.
        store.commit_records(&step).unwrap();
        for i in 0..600u64 {
            assert_eq!(body(&store, i).is_none(), gone.contains(&i), "body {i}");
        }
        let tombstones = store.records(RecordSpace::Erased).unwrap();
        let keys: Vec<Vec<u8>> = tombstones.iter().map(|(k, _)| k.clone()).collect();
        let expected: Vec<Vec<u8>> = gone.iter().map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, expected);
        assert!(tombstones.iter().all(|(_, v)| *v == tombstone));
        assert!(store.check_packed_records().is_empty());
        // Three bundles, three tombstone records and the tombstone once:
        // not a record per event.
        let db = store.db().unwrap();
        assert_eq!(db.tree.scan_prefix([b'Z']).count(), 3);
        assert_eq!(db.tree.scan_prefix([b'W']).count(), 1);
    }

    #[test]
    fn full_blobs_are_files_and_sled_keeps_only_the_open_edge() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&edge_batch(0, 100, 1)).unwrap();
        assert!(objects(dir.path()).is_empty(), "nothing is full yet");
        store.commit(&edge_batch(100, 256, 1)).unwrap();
        assert_eq!(
            objects(dir.path()),
            [
                "objects/bodies/000",
                "objects/entries/000",
                "objects/tile/0/000"
            ]
            .map(PathBuf::from)
        );
        {
            let db = store.db().unwrap();
            for prefix in [TILE, BUNDLE, SEALED] {
                assert_eq!(
                    db.tree.scan_prefix([prefix]).count(),
                    0,
                    "{}",
                    prefix as char
                );
            }
        }
        // A deletion in a full bundle (erasure) is a bit of the bundle's
        // deletion mask in sled.
        store
            .commit_records(&RecordBatch {
                delete: vec![(RecordSpace::Sealed, 7u64.to_be_bytes().to_vec())],
                ..RecordBatch::default()
            })
            .unwrap();
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.tile(0, 0).unwrap().unwrap(), vec![1; 256 * 32]);
        assert_eq!(store.bundle(0).unwrap().unwrap(), vec![1; 256 * 3]);
        assert_eq!(body(&store, 255).unwrap(), b"body 255 version 1");
        assert_eq!(body(&store, 7), None);
        assert_eq!(body(&store, 6).unwrap(), b"body 6 version 1");
        let leaf = Hash::from_slice(&[1; 32]).unwrap();
        let mut with_leaf = edge_batch(256, 257, 1);
        with_leaf.tiles.clear();
        with_leaf.bundles.clear();
        with_leaf.leaf_index.push((leaf, 3));
        store.commit(&with_leaf).unwrap();
        assert_eq!(
            store.leaf_index(&leaf).unwrap(),
            Some(3),
            "checked against the tile file"
        );
    }

    #[test]
    fn a_full_blob_from_before_blob_files_is_read_from_sled() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&edge_batch(0, 256, 2)).unwrap();
        // Move the files' contents into sled, as a layout 2 database has them.
        for (blob, key) in [
            (Blob::Tile(0, 0), tile_key(0, 0).to_vec()),
            (Blob::Bundle(0), index_key(BUNDLE, 0).to_vec()),
        ] {
            let bytes = store.shared.files.read(blob).unwrap().unwrap();
            store.db().unwrap().tree.insert(key, bytes).unwrap();
            std::fs::remove_file(store.shared.files.path(blob)).unwrap();
        }
        assert_eq!(store.tile(0, 0).unwrap().unwrap(), vec![2; 256 * 32]);
        assert_eq!(store.bundle(0).unwrap().unwrap(), vec![2; 256 * 3]);
        // Neither a file nor a sled entry: damage, named.
        store.db().unwrap().tree.remove(tile_key(0, 0)).unwrap();
        let err = store.tile(0, 0).unwrap_err().to_string();
        assert!(
            err.contains("tile file objects/tile/0/000 is missing"),
            "{err}"
        );
    }

    /// Level-0 tile `i` as [`packed_batch`] stores it: `width` hashes
    /// that differ from tile to tile.
    fn numbered_tile(i: u64, width: usize) -> Vec<u8> {
        (0..width as u64)
            .flat_map(|j| crate::merkle::leaf_hash(&[i.to_be_bytes(), j.to_be_bytes()].concat()).0)
            .collect()
    }

    /// The tiles of a tree of `size` leaves (hashes made up, not a real
    /// tree: the store does not check them), up to level 1.
    fn packed_batch(size: u64) -> BatchWrite {
        let mut tiles: Vec<(u8, u64, Vec<u8>)> = (0..size.div_ceil(256))
            .map(|i| (0, i, numbered_tile(i, (size - i * 256).min(256) as usize)))
            .collect();
        for i in 0..(size / 256).div_ceil(256) {
            let width = (size / 256 - i * 256).min(256) as usize;
            tiles.push((1, i, numbered_tile(1 << 40 | i, width)));
        }
        BatchWrite {
            tree_size: size,
            tiles,
            ..BatchWrite::default()
        }
    }

    /// Fault injection: the store's next sync fails.
    pub(super) fn fail_next_sync(store: &SledStore) {
        let db = store.db().unwrap();
        db.disk.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// Writes every tile pack a durable commit covers, as the background
    /// thread does.
    fn write_packs(store: &SledStore) -> u64 {
        let db = store.db().unwrap();
        while store.shared.pack_next(&db).unwrap() {}
        store.shared.packs.load(Ordering::Acquire)
    }

    fn upper_bytes(tile: &[u8]) -> Vec<u8> {
        let hashes: Vec<Hash> = tile
            .chunks(32)
            .map(|c| Hash::from_slice(c).unwrap())
            .collect();
        crate::tiles::upper_nodes(&hashes)
            .unwrap()
            .iter()
            .flat_map(|h| h.0)
            .collect()
    }

    #[test]
    fn tile_packs_copy_the_tiles_a_durable_commit_covers_and_answer_as_they_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_without_compaction(dir.path()).unwrap();
        // One leaf short of the first pack: nothing to write.
        store.commit(&packed_batch(packs::LEAVES - 1)).unwrap();
        assert_eq!(write_packs(&store), 0);
        let size = 2 * packs::LEAVES + 300;
        store.commit(&packed_batch(size)).unwrap();
        assert_eq!(write_packs(&store), 2, "two full level-1 tiles");
        for i in [0, 1, 255, 256, 300, 511] {
            let tile = numbered_tile(i, 256);
            assert_eq!(store.tile(0, i).unwrap().unwrap(), tile, "tile {i}");
            assert_eq!(
                store.tile_hashes(0, i, 16, 16).unwrap().unwrap(),
                tile[16 * 32..32 * 32],
                "part of tile {i}"
            );
            assert_eq!(
                store.tile_upper_nodes(i).unwrap().unwrap(),
                upper_bytes(&tile),
                "upper nodes of tile {i}"
            );
        }
        // Past the packs: the tile files, and no upper nodes.
        assert_eq!(
            store.tile(0, 512).unwrap().unwrap(),
            numbered_tile(512, 256)
        );
        assert_eq!(store.tile_upper_nodes(512).unwrap(), None);
        assert!(store.check_tile_packs().is_empty());
        // A reopen finds both; the tile files could go, the packs answer.
        drop(store);
        let store = SledStore::open_without_compaction(dir.path()).unwrap();
        assert_eq!(store.shared.packs.load(Ordering::Acquire), 2);
        std::fs::remove_file(store.shared.files.path(Blob::Tile(0, 300))).unwrap();
        assert_eq!(
            store.tile(0, 300).unwrap().unwrap(),
            numbered_tile(300, 256)
        );
        // fsck names a pack that differs from its tiles, and a torn one.
        let pack = |n| store.shared.files.path(Blob::Pack(n));
        let mut bytes = std::fs::read(pack(0)).unwrap();
        bytes[5 * 8192 + 7] ^= 1;
        std::fs::write(pack(0), &bytes).unwrap();
        std::fs::write(pack(1), &bytes[..100]).unwrap();
        let found = store.check_tile_packs();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains(
                "tile pack file objects/packs/000 differs from hash tile 0/5 at byte 40967"
            ),
            "{found:?}"
        );
        assert!(
            found[1].contains("tile pack file objects/packs/001 is torn: 100 bytes"),
            "{found:?}"
        );
    }

    #[test]
    fn a_failed_tile_pack_write_leaves_the_tiles_answering_and_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_without_compaction(dir.path()).unwrap();
        store.commit(&packed_batch(packs::LEAVES + 5)).unwrap();
        store
            .shared
            .files
            .fail_next_write
            .store(true, Ordering::SeqCst);
        let db = store.db().unwrap();
        let err = store.shared.pack_next(&db).unwrap_err().to_string();
        assert!(err.contains("injected failure"), "{err}");
        drop(db);
        assert_eq!(store.shared.packs.load(Ordering::Acquire), 0);
        assert!(!store.shared.files.path(Blob::Pack(0)).exists());
        assert_eq!(store.tile(0, 9).unwrap().unwrap(), numbered_tile(9, 256));
        assert_eq!(store.tile_upper_nodes(9).unwrap(), None);
        // The next pass writes it; the store's own thread does too.
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while store.shared.packs.load(Ordering::Acquire) == 0 {
            assert!(std::time::Instant::now() < give_up, "no pack written");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            store.tile_upper_nodes(9).unwrap().unwrap(),
            upper_bytes(&numbered_tile(9, 256))
        );
        assert!(store.check_tile_packs().is_empty());
    }

    #[test]
    fn no_tile_pack_is_written_from_a_commit_whose_sync_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_without_compaction(dir.path()).unwrap();
        store.commit(&packed_batch(100)).unwrap();
        // The tiles of the next commit are written, then its sync fails:
        // its outcome is unknown, and a later commit may write other tiles.
        fail_next_sync(&store);
        assert!(store.commit(&packed_batch(packs::LEAVES + 5)).is_err());
        let db = store.db().unwrap();
        assert!(!store.shared.pack_next(&db).unwrap());
        assert!(!store.shared.files.path(Blob::Pack(0)).exists());
    }

    #[test]
    fn part_of_a_full_tile_is_read_from_its_file_or_sled_and_a_torn_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&edge_batch(0, 100, 4)).unwrap();
        // Partial: from sled, as the whole tile is.
        assert_eq!(
            store.tile_hashes(0, 0, 16, 16).unwrap().unwrap(),
            vec![4; 16 * 32]
        );
        assert!(
            store.tile_hashes(0, 0, 96, 16).is_err(),
            "past the committed hashes"
        );
        store.commit(&edge_batch(100, 256, 4)).unwrap();
        let path = store.shared.files.path(Blob::Tile(0, 0));
        let mut whole = std::fs::read(&path).unwrap();
        whole[240 * 32] = 9;
        std::fs::write(&path, &whole).unwrap();
        assert_eq!(
            store.tile_hashes(0, 0, 240, 16).unwrap().unwrap(),
            whole[240 * 32..].to_vec(),
            "read from the file"
        );
        // A torn file is damage, as when the whole tile is read.
        std::fs::write(&path, &whole[..200 * 32]).unwrap();
        let err = store.tile_hashes(0, 0, 0, 16).unwrap_err().to_string();
        assert!(err.contains("objects/tile/0/000 is torn"), "{err}");
        assert!(store.tile(0, 0).is_err());
        // No file (a database from before blob files): from sled.
        std::fs::remove_file(&path).unwrap();
        store
            .db()
            .unwrap()
            .tree
            .insert(tile_key(0, 0), whole.clone())
            .unwrap();
        assert_eq!(
            store.tile_hashes(0, 0, 0, 16).unwrap().unwrap(),
            whole[..16 * 32].to_vec()
        );
    }

    #[test]
    fn a_failed_blob_write_is_not_acknowledged_stops_the_store_and_a_restart_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&edge_batch(0, 100, 3)).unwrap();
        store
            .shared
            .files
            .fail_next_write
            .store(true, Ordering::SeqCst);
        assert!(store.commit(&edge_batch(100, 256, 3)).is_err());
        for err in [
            store.tree_size().err(),
            store.commit(&edge_batch(100, 256, 3)).err(),
            store.put_record(RecordSpace::Meta, b"k", b"v").err(),
        ] {
            let err = err
                .expect("a store whose blob write failed refuses")
                .to_string();
            assert!(err.contains("restart the server"), "{err}");
        }
        // What was durable before is all still there.
        assert_eq!(store.tile(0, 0).unwrap().unwrap(), vec![3; 100 * 32]);
        assert_eq!(body(&store, 99).unwrap(), b"body 99 version 3");
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.tree_size().unwrap(), 100);
        assert_eq!(store.bundle(0).unwrap().unwrap(), vec![3; 100 * 3]);
        assert_eq!(body(&store, 100), None);
        store.commit(&edge_batch(100, 256, 3)).unwrap();
        assert_eq!(store.tile(0, 0).unwrap().unwrap(), vec![3; 256 * 32]);
        assert_eq!(body(&store, 200).unwrap(), b"body 200 version 3");
    }

    #[test]
    fn files_of_a_batch_that_never_committed_are_not_read_and_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&edge_batch(0, 100, 4)).unwrap();
        // The crash: every file of the batch is durable, sled never commits.
        store
            .shared
            .crash_before_apply
            .store(true, Ordering::SeqCst);
        assert!(store.commit(&edge_batch(100, 256, 5)).is_err());
        assert_eq!(objects(dir.path()).len(), 3, "the files were written");
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.tree_size().unwrap(), 100);
        assert_eq!(store.tile(0, 0).unwrap().unwrap(), vec![4; 100 * 32]);
        assert_eq!(store.bundle(0).unwrap().unwrap(), vec![4; 100 * 3]);
        assert_eq!(body(&store, 150), None);
        assert_eq!(body(&store, 0).unwrap(), b"body 0 version 4");
        // The retried batch differs (new bodies, new hashes): it wins.
        store.commit(&edge_batch(100, 256, 6)).unwrap();
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.tile(0, 0).unwrap().unwrap(), vec![6; 256 * 32]);
        assert_eq!(store.bundle(0).unwrap().unwrap(), vec![6; 256 * 3]);
        assert_eq!(body(&store, 0).unwrap(), b"body 0 version 4");
        assert_eq!(body(&store, 150).unwrap(), b"body 150 version 6");
        let mut all = Vec::new();
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = store.scan_records(RecordSpace::Sealed, &c, 100).unwrap();
            all.extend(page.items.into_iter().map(|r| r.unwrap().0));
            cursor = page.next;
        }
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        // sled locks the directory per process; within one process the
        // second open also fails because the lock is held.
        let err = SledStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("in use by another process"), "{err}");
    }
}
