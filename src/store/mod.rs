//! Storage: the contract every backend keeps, and the embedded sled backend.
//!
//! The store holds the log's C2SP objects exactly as they are served (hash
//! tiles and entry bundles), the stored event bodies and salts, the latest
//! signed checkpoint, the idempotency and leaf-hash indexes, and small
//! records (metadata, API keys). The tree itself is never held in memory;
//! the sequencer keeps only the right edge, which it reloads from the stored
//! partial tiles.
//!
//! Invariants every backend keeps:
//! - a full tile or full bundle, once committed, never changes;
//! - a partial tile or bundle only ever grows, and each version is a prefix
//!   of the next, so any width up to what exists can be served from it;
//! - a [`BatchWrite`] is applied all or nothing, also across a crash.

pub(crate) mod fields;
pub mod memory;
pub mod postgres;
pub mod sled;

use crate::merkle::Hash;

/// The error of a storage backend. Carries the backend's own message; the
/// caller decides whether to retry (see each method).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O error, full disk, corruption reported by the engine).
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A stored value does not have the shape this version writes.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A small record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Namespaces for small records (metadata, API keys, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordSpace {
    /// Log metadata: origin, format version.
    Meta,
    /// API key records, keyed by key id.
    ApiKey,
    /// Wrapped data keys, keyed by key id (see `vault`).
    DataKey,
    /// Sealed (encrypted) event bodies and salts, keyed by big-endian leaf
    /// index (8 bytes). Backends may pack them by entry bundle: keys of
    /// any other length are refused.
    Sealed,
    /// Erasure tombstones (when, why), keyed by big-endian leaf index (8
    /// bytes), or by other keys for what is not one event (a subject's).
    /// Backends may pack the 8-byte ones by entry bundle; a scan still
    /// yields each under its own key, in key order.
    Erased,
    /// Retention policies and legal holds, keyed by their id.
    Governance,
    /// The checkpoint of the alert rules' windows, sealed (see
    /// `alerts/state.rs`): a few records per rule, keyed by the rule.
    AlertState,
}

impl RecordSpace {
    /// The space's number, as backends and backup snapshots store it:
    /// part of both formats, so a number never changes meaning.
    pub fn code(self) -> u8 {
        match self {
            RecordSpace::Meta => 0,
            RecordSpace::ApiKey => 1,
            RecordSpace::DataKey => 2,
            RecordSpace::Sealed => 3,
            RecordSpace::Erased => 4,
            RecordSpace::Governance => 5,
            RecordSpace::AlertState => 6,
        }
    }
}

/// An event body as stored beside its leaf: the app that wrote it, the
/// canonical (RFC 8785) event bytes, and the salt of its commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// App id of the writer key that submitted it.
    pub app: String,
    /// The 32-byte random salt of the commitment.
    pub salt: [u8; 32],
    /// The canonical event bytes.
    pub event: Vec<u8>,
}

impl StoredEvent {
    /// Encodes as `salt(32) || u16 BE app length || app || event`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34 + self.app.len() + self.event.len());
        out.extend_from_slice(&self.salt);
        let app_len = u16::try_from(self.app.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&app_len.to_be_bytes());
        out.extend_from_slice(&self.app.as_bytes()[..usize::from(app_len)]);
        out.extend_from_slice(&self.event);
        out
    }

    /// Decodes what [`StoredEvent::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<StoredEvent, StoreError> {
        let corrupt = || StoreError::Corrupt("stored event record is truncated".into());
        let salt: [u8; 32] = bytes
            .get(..32)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?;
        let len_bytes = bytes.get(32..34).ok_or_else(corrupt)?;
        let app_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let app = bytes.get(34..34 + app_len).ok_or_else(corrupt)?;
        let app = String::from_utf8(app.to_vec())
            .map_err(|_| StoreError::Corrupt("stored event app is not UTF-8".into()))?;
        Ok(StoredEvent {
            app,
            salt,
            event: bytes[34 + app_len..].to_vec(),
        })
    }
}

/// Everything one sequenced batch changes, written atomically.
#[derive(Clone, Debug, Default)]
pub struct BatchWrite {
    /// Tree size after the batch.
    pub tree_size: u64,
    /// The new content of every hash tile the batch touched: `(level, index, hashes)`.
    /// A tile with 256 hashes is full and final.
    pub tiles: Vec<(u8, u64, Vec<u8>)>,
    /// The new content of every entry bundle the batch touched: `(index, bundle)`.
    pub bundles: Vec<(u64, Vec<u8>)>,
    /// Plaintext event bodies by leaf index (logs from before encryption
    /// at rest; the sequencer writes sealed bodies as `records`).
    pub events: Vec<(u64, StoredEvent)>,
    /// Idempotency keys and the leaf index they were first appended at.
    pub dedupe: Vec<(DedupeKey, u64)>,
    /// Leaf hash to leaf index.
    pub leaf_index: Vec<(Hash, u64)>,
    /// A newly signed checkpoint covering `tree_size`, if the batch publishes one.
    pub checkpoint: Option<StoredCheckpoint>,
    /// Small records written with the batch (sealed bodies, data keys, ...).
    pub records: Vec<(RecordSpace, Vec<u8>, Vec<u8>)>,
    /// Search index blocks to write or delete with the batch (see
    /// [`Store::index_blocks`]).
    pub index_blocks: Vec<IndexBlock>,
    /// The new search index watermark, if the batch moves it (see
    /// [`Store::index_watermark`]).
    pub index_watermark: Option<u64>,
}

/// One block of the search index, as the store keeps it: an opaque value
/// under `(bucket, at)`. The vault decides what a bucket is and encodes the
/// value; the store only orders blocks by `at` within a bucket. Every
/// bucket has the same length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexBlock {
    /// Which bucket of the index.
    pub bucket: Vec<u8>,
    /// The first leaf index the block can hold.
    pub at: u64,
    /// The new value, or `None` to delete the block.
    pub value: Option<Vec<u8>>,
}

/// An atomic change of small records and index entries, outside the
/// sequencer's batches (erasure, retention, key management).
#[derive(Clone, Debug, Default)]
pub struct RecordBatch {
    /// Records to write.
    pub put: Vec<(RecordSpace, Vec<u8>, Vec<u8>)>,
    /// Records to delete.
    pub delete: Vec<(RecordSpace, Vec<u8>)>,
    /// Search index blocks to write or delete.
    pub index_blocks: Vec<IndexBlock>,
    /// Whether `index_blocks` are a flush: every block of one new `at`,
    /// above every `at` stored, all with values. A backend may keep a
    /// flush's blocks together, written once (the sled backend's segment
    /// files); later writes of those blocks come as ordinary changes and
    /// MUST read back as any block's do.
    pub index_flush: bool,
    /// The new search index watermark, if the change moves it.
    pub index_watermark: Option<u64>,
    /// Plaintext event bodies (written before encryption at rest) to delete.
    pub delete_events: Vec<u64>,
}

/// The key of an app's event id in the idempotency index: the first 16
/// bytes of SHA-256 over a domain tag, the app, a zero byte and the id.
/// Collisions are as likely as guessing a 128-bit secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DedupeKey(pub [u8; 16]);

impl DedupeKey {
    /// The key of `app`'s event id `id`.
    pub fn of(app: &str, id: &str) -> DedupeKey {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"veritrail/idempotency\0");
        h.update(app.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        DedupeKey(out)
    }
}

/// The first 16 bytes of a leaf hash: what the leaf-hash index keeps.
pub type LeafKey = [u8; 16];

/// The [`LeafKey`] of `hash`.
pub fn leaf_key(hash: &Hash) -> LeafKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash.as_bytes()[..16]);
    k
}

/// The latest signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// When it was signed (Unix milliseconds).
    pub published_at_ms: i64,
    /// The signed note, verbatim.
    pub note: Vec<u8>,
}

impl StoredCheckpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.published_at_ms.to_be_bytes().to_vec();
        out.extend_from_slice(&self.note);
        out
    }

    fn decode(bytes: &[u8]) -> Result<StoredCheckpoint, StoreError> {
        let ts = bytes
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(|| StoreError::Corrupt("stored checkpoint is truncated".into()))?;
        Ok(StoredCheckpoint {
            published_at_ms: i64::from_be_bytes(ts),
            note: bytes[8..].to_vec(),
        })
    }
}

/// Where a scan continues: after this backend-specific key. Opaque to
/// callers; `ScanCursor::start()` begins at the first item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanCursor(Option<Vec<u8>>);

impl ScanCursor {
    /// Before the first item.
    pub fn start() -> ScanCursor {
        ScanCursor(None)
    }

    /// After the item stored under `key` (backends only).
    pub(crate) fn after(key: Vec<u8>) -> ScanCursor {
        ScanCursor(Some(key))
    }

    /// The key to continue after, if any (backends only).
    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }
}

/// One page of a scan, in key order. An item whose stored bytes do not
/// decode is an `Err` naming it, so an offline check can report it and go
/// on; `next` is `None` once the scan is complete.
#[derive(Debug)]
pub struct ScanPage<T> {
    /// The items of this page.
    pub items: Vec<Result<T, StoreError>>,
    /// Where the next page starts, or `None` after the last item.
    pub next: Option<ScanCursor>,
}

/// Hashes `start .. start + count` of `tile`, the stored hash tile
/// `(level, index)` (see [`Store::tile_hashes`]).
pub(crate) fn tile_part(
    level: u8,
    index: u64,
    tile: Option<Vec<u8>>,
    start: usize,
    count: usize,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(tile) = tile else {
        return Ok(None);
    };
    match tile.get(start * 32..(start + count) * 32) {
        Some(part) => Ok(Some(part.to_vec())),
        None => Err(StoreError::Corrupt(format!(
            "hash tile {level}/{index} holds {} hashes, not hashes {start} to {}",
            tile.len() / 32,
            start + count
        ))),
    }
}

/// The storage contract. Implementations are used from many threads at once:
/// readers (HTTP handlers) concurrently with the single sequencer thread,
/// which is the only caller of [`Store::commit`] and [`Store::put_checkpoint`].
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` atomically. When it returns `Ok`, everything in it
    /// MUST be durable (survive a process kill and, as far as the backend
    /// can, a power loss). When it returns `Err`, the store MUST be as if
    /// the batch had never been applied; the caller fails the batch's
    /// submitters and may retry with a rebuilt batch.
    fn commit(&self, batch: &BatchWrite) -> Result<(), StoreError>;

    /// Stores a new latest checkpoint on its own, durably, as in `commit`.
    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;

    /// The tree size of the last committed batch (0 for a new log).
    fn tree_size(&self) -> Result<u64, StoreError>;

    /// Whether the store refuses everything until it is reopened, because
    /// a write it could not make durable left its state unknown (see the
    /// sled backend). A failed commit on such a store is not retried: the
    /// log stops until it is restarted. Backends whose failed writes leave
    /// nothing behind (a transaction) never latch.
    fn latched(&self) -> bool {
        false
    }

    /// The latest stored checkpoint.
    fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// The stored hash tile `(level, index)`: full (256 hashes) or the current
    /// partial version. MAY be called concurrently with `commit`; a reader
    /// sees either the old or the new version, never a mix.
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Hashes `start .. start + count` (bytes `32 * start ..`) of the FULL
    /// hash tile `(level, index)`, which the caller knows is committed:
    /// exactly those bytes of what [`Store::tile`] returns, `None` where it
    /// returns `None`, and an error where it errs or holds fewer hashes.
    /// A backend that can read part of a blob (a file) overrides it; the
    /// default reads the whole tile.
    fn tile_hashes(
        &self,
        level: u8,
        index: u64,
        start: usize,
        count: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        tile_part(level, index, self.tile(level, index)?, start, count)
    }

    /// The upper nodes of the FULL level-0 hash tile `index`, which the
    /// caller knows is committed: the [`crate::tiles::UPPER_NODES`] hashes
    /// of [`crate::tiles::upper_nodes`] of that tile, 32 bytes each, when
    /// the backend keeps them (derived data, kept beside the tiles so that
    /// a proof's first read of a tile hashes nothing); `None` when it does
    /// not keep them for this tile, and the caller hashes the tile itself.
    /// What it returns MUST equal what the tile's hashes give.
    fn tile_upper_nodes(&self, _index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// The stored entry bundle `index`, full or the current partial version.
    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// The stored event body of leaf `index`.
    fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError>;

    /// The leaf index an app's event id was first appended at.
    fn dedupe(&self, key: &DedupeKey) -> Result<Option<u64>, StoreError>;

    /// [`Store::dedupe`] of each of `keys`, in their order, in one request
    /// where the backend can (the sequencer asks once per batch). The
    /// default asks for one key at a time.
    fn dedupe_many(&self, keys: &[DedupeKey]) -> Result<Vec<Option<u64>>, StoreError> {
        keys.iter().map(|k| self.dedupe(k)).collect()
    }

    /// The leaf index of a leaf hash.
    fn leaf_index(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError>;

    /// Writes a small record durably.
    fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Reads a small record.
    fn record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// [`Store::record`] of each of `keys` in one space, in their order, in
    /// one request where the backend can (the vault asks once per batch for
    /// the subjects it has not cached). The default asks for one at a time.
    fn records_many(
        &self,
        space: RecordSpace,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.record(space, k)).collect()
    }

    /// Every record of a space, in key order. For the small spaces; use
    /// [`Store::scan_records`] for `Sealed`, which grows with the log.
    fn records(&self, space: RecordSpace) -> Result<Vec<Record>, StoreError>;

    /// Up to `limit` records of a space after `cursor`, in key order; as
    /// `scan_events`.
    fn scan_records(
        &self,
        space: RecordSpace,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<Record>, StoreError>;

    /// Up to `limit` stored event bodies after `cursor`, in leaf index
    /// order. For offline checks and backups: MAY run concurrently with
    /// `commit`, and then sees each event either absent or whole.
    fn scan_events(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(u64, StoredEvent)>, StoreError>;

    /// Up to `limit` idempotency entries after `cursor`, each at least
    /// once, in an order of the backend's; as `scan_events`.
    fn scan_dedupe(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(DedupeKey, u64)>, StoreError>;

    /// Up to `limit` leaf-hash index entries after `cursor`, each at least
    /// once, in an order of the backend's; as `scan_events`. An entry is
    /// the first 16 bytes of the leaf hash ([`LeafKey`]) and its index:
    /// the whole hash is in the level-0 tile.
    fn scan_leaf_index(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(LeafKey, u64)>, StoreError>;

    /// Applies `batch` atomically and durably, as in `commit`. Called by
    /// any thread; it never touches the tree, tiles, bundles or checkpoints.
    fn commit_records(&self, batch: &RecordBatch) -> Result<(), StoreError>;

    /// The search index blocks of `bucket` with `at < below`, largest `at`
    /// first, at most `limit` of them: `(at, value)`. MAY run concurrently
    /// with commits; it sees each batch whole or not at all.
    fn index_blocks(
        &self,
        bucket: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The search index watermark: the blocks hold the postings of every
    /// leaf below it. `None` when the index was never written (a new or
    /// restored store, or one from before this index format).
    fn index_watermark(&self) -> Result<Option<u64>, StoreError>;

    /// Deletes the whole search index (every block, the watermark, and
    /// entries of earlier index formats), durably, so it can be rebuilt.
    fn clear_index(&self) -> Result<(), StoreError>;

    /// One step of upkeep of the search index's blocks: moves a bounded
    /// part of them (one earlier write's) into the layout the backend now
    /// writes, or folds a bounded part of the later writes of blocks
    /// (removals) into the place of the blocks they replace, so that what
    /// the backend keeps for removals does not grow with their number.
    /// Returns whether it did work; `false` means none is left until more
    /// blocks are written, and callers look again later. Each step MUST keep
    /// every block readable, with its value, by concurrent
    /// [`Store::index_blocks`] at every instant, and a failure or crash at
    /// any point MUST leave each block in its old place or its new one,
    /// never neither; a failed step MAY be retried. It MUST NOT run
    /// concurrently with a write of index blocks or [`Store::clear_index`]:
    /// the caller serialises them. It MUST NOT touch blocks at or above
    /// the watermark (the next flush writes there). Backends with one
    /// layout do nothing.
    fn tidy_index(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

#[cfg(test)]
pub(crate) mod conformance;
