//! The read cache: the hash tiles and entry bundles readers ask for, kept in
//! memory as bytes ready to send, each hash tile with the hashes of the
//! complete subtrees inside it. A proof then folds a few cached hashes
//! instead of reading tiles from the store and rehashing up to 128 leaves
//! per node, and a tile is answered without a store read or a copy.
//!
//! Beside it, a second tier with its own budget keeps, per full level-0
//! tile, only the hashes of its complete subtrees of [`PROOF_FROM_HEIGHT`]
//! and up (30 hashes, about 1 KiB per 256 leaves instead of 12): a proof
//! whose level-0 tile is not in the first tier takes its upper nodes from
//! there and reads just the 16 leaf hashes it needs below them from the
//! store ([`Store::tile_hashes`], one ranged read of a file), instead of
//! the whole tile and 255 hashes. A log of 10 million events fits in 45 MB
//! of this tier, where its level-0 tiles take 470 MB of the first. A tile
//! not in either tier takes its upper nodes from the store when the store
//! keeps them ([`Store::tile_upper_nodes`]: the sled backend's tile packs),
//! so that a proof's first read of a tile hashes nothing there either.
//!
//! Invariants:
//! - a cached tile or bundle is a prefix of what the store holds and will
//!   ever hold (the right edge only grows, and a full tile never changes),
//!   so it answers exactly the widths and nodes it covers; asking for more
//!   reads the store again and replaces it with the wider one;
//! - the cache never holds more than its byte budget, whatever the log's
//!   size; the least recently useful entries go first (second chance);
//!   besides it, at most [`KEPT_RANGES`] hashes of right-edge ranges that
//!   proofs folded (the same few for every proof of one tree size: a range
//!   of committed leaves never changes);
//! - the proof tier holds only nodes hashed from tiles of 256 hashes as
//!   the store returned them, or the store's own upper nodes of such a
//!   tile (full tiles never change, partial ones are never kept there),
//!   and never more than its own budget;
//! - reads only: nothing here writes the store, so a cache that is cold,
//!   or of size 0, answers exactly what the store does, only slower.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use crate::merkle::{Hash, NodeId, SubtreeSource, node_hash, root_from_leaf_hashes};
use crate::store::{Store, StoreError};
use crate::tiles::{self, TILE_HEIGHT, TILE_WIDTH, UPPER_NODES};

/// The read cache's default budget: 64 MiB holds every hash tile of a log
/// of about 1.3 million entries (about 12 KiB per full level-0 tile, with
/// its kept subtree hashes), and the few upper tiles every proof uses.
pub const DEFAULT_READ_CACHE_BYTES: usize = 64 << 20;

/// The proof tier's default budget: 64 MiB holds the upper nodes of every
/// full level-0 tile of a log of about 15 million entries (1,088 bytes per
/// 256 leaves, bookkeeping included).
pub const DEFAULT_PROOF_CACHE_BYTES: usize = 64 << 20;

/// The proof tier keeps the complete subtrees of this height and up (of
/// 16 leaves and more) of each full level-0 tile; below it, a proof reads
/// the aligned group of `2^PROOF_FROM_HEIGHT` leaf hashes its nodes lie in.
pub const PROOF_FROM_HEIGHT: u32 = tiles::UPPER_FROM_HEIGHT;

/// Leaf hashes read from the store for the low nodes of a proof.
const PROOF_GROUP: usize = 1 << PROOF_FROM_HEIGHT;

/// Independent locks, so that concurrent readers rarely wait on each other.
const SHARDS: usize = 16;

/// Right-edge range hashes kept for proofs (about 64 bytes each); the
/// memo is emptied when full, so the sizes read most fill it again.
pub const KEPT_RANGES: usize = 4096;

/// Bytes of bookkeeping counted per entry besides its data.
const ENTRY_OVERHEAD: usize = 128;

/// What one entry caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// The hash tile at tile level `level` and index `index`.
    Tile { level: u8, index: u64 },
    /// The entry bundle `index`.
    Bundle(u64),
    /// The upper nodes of full level-0 tile `index` (the proof tier).
    Upper(u64),
}

/// Subtrees of fewer than `2^KEPT_FROM_HEIGHT` hashes are folded from the
/// tile's hashes when asked (one SHA-256 block); larger ones are kept, so a
/// full tile costs about 12 KiB instead of 16.
const KEPT_FROM_HEIGHT: u32 = 2;

/// The first `width` hashes of a hash tile and the hashes of its complete
/// subtrees of heights `KEPT_FROM_HEIGHT` to 7, hashed when a proof first
/// asks for one: a tile read from the store to be served is not hashed.
struct CachedTile {
    /// The hashes as served: `width` × 32 bytes.
    bytes: Bytes,
    width: usize,
    /// The complete nodes of heights `KEPT_FROM_HEIGHT` to 7 inside the
    /// tile, the lowest height first, each height left to right.
    inner: OnceLock<Box<[Hash]>>,
}

impl CachedTile {
    /// A tile of `bytes` (whole 32-byte hashes), its inner nodes not yet hashed.
    fn build(bytes: Bytes) -> CachedTile {
        CachedTile {
            width: bytes.len() / 32,
            bytes,
            inner: OnceLock::new(),
        }
    }

    /// Hashes the inner subtrees (once).
    fn inner(&self) -> &[Hash] {
        self.inner.get_or_init(|| {
            let mut below: Vec<Hash> = (0..self.width).map(|i| leaf_at(&self.bytes, i)).collect();
            let mut inner = Vec::with_capacity(self.width >> (KEPT_FROM_HEIGHT - 1));
            for height in 1..u32::from(TILE_HEIGHT) {
                let level: Vec<Hash> = below
                    .chunks_exact(2)
                    .map(|p| node_hash(&p[0], &p[1]))
                    .collect();
                if height >= KEPT_FROM_HEIGHT {
                    inner.extend_from_slice(&level);
                }
                below = level;
            }
            inner.into_boxed_slice()
        })
    }

    /// The hash of the subtree over hashes `offset .. offset + count`
    /// (`count` a power of two up to 128, `offset` a multiple of it), or
    /// `None` when this prefix does not cover it.
    fn node(&self, offset: usize, count: usize) -> Option<Hash> {
        if offset + count > self.width || !count.is_power_of_two() {
            return None;
        }
        let height = count.trailing_zeros();
        if height < KEPT_FROM_HEIGHT {
            return Some(self.fold(offset, count));
        }
        let start: usize = (KEPT_FROM_HEIGHT..height).map(|h| self.width >> h).sum();
        self.inner().get(start + (offset >> height)).copied()
    }

    /// MTH of hashes `offset .. offset + count`, all within `width`.
    fn fold(&self, offset: usize, count: usize) -> Hash {
        if count == 1 {
            return leaf_at(&self.bytes, offset);
        }
        let half = count / 2;
        node_hash(&self.fold(offset, half), &self.fold(offset + half, half))
    }

    /// What it holds once its inner nodes are hashed: counted from the
    /// start, so hashing them never takes the cache over its budget.
    fn weight(&self) -> usize {
        let inner: usize = (KEPT_FROM_HEIGHT..u32::from(TILE_HEIGHT))
            .map(|h| self.width >> h)
            .sum();
        self.bytes.len() + inner * 32 + ENTRY_OVERHEAD
    }
}

/// The complete subtrees of heights [`PROOF_FROM_HEIGHT`] to 7 of one full
/// level-0 tile, in the order of [`tiles::upper_node_position`].
struct UpperNodes([Hash; UPPER_NODES]);

impl UpperNodes {
    /// The upper nodes of `tile`, if it is full (256 hashes).
    fn of(tile: &CachedTile) -> Option<UpperNodes> {
        if tile.width != TILE_WIDTH as usize {
            return None;
        }
        let mut nodes = [Hash([0; 32]); UPPER_NODES];
        for height in PROOF_FROM_HEIGHT..u32::from(TILE_HEIGHT) {
            let count = 1usize << height;
            for offset in (0..tile.width).step_by(count) {
                nodes[tiles::upper_node_position(offset, count)?] = tile.node(offset, count)?;
            }
        }
        Some(UpperNodes(nodes))
    }

    /// The upper nodes of level-0 tile `index` as the store keeps them
    /// ([`Store::tile_upper_nodes`]: `UPPER_NODES` hashes, 32 bytes each).
    fn decode(index: u64, bytes: &[u8]) -> Result<UpperNodes, StoreError> {
        if bytes.len() != UPPER_NODES * 32 {
            return Err(StoreError::Corrupt(format!(
                "the upper nodes of hash tile 0/{index} are {} bytes, not {}",
                bytes.len(),
                UPPER_NODES * 32
            )));
        }
        Ok(UpperNodes(std::array::from_fn(|i| leaf_at(bytes, i))))
    }

    /// The subtree over hashes `offset .. offset + count` (`count` a power
    /// of two from `2^PROOF_FROM_HEIGHT` to 128, `offset` a multiple of it).
    fn node(&self, offset: usize, count: usize) -> Option<Hash> {
        self.0
            .get(tiles::upper_node_position(offset, count)?)
            .copied()
    }

    fn weight() -> usize {
        UPPER_NODES * 32 + ENTRY_OVERHEAD
    }
}

/// Hash `i` of a tile's bytes; `i` is below its width.
fn leaf_at(bytes: &[u8], i: usize) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&bytes[i * 32..i * 32 + 32]);
    Hash(h)
}

/// The first entries of an entry bundle, encoded as served.
struct CachedBundle {
    bytes: Bytes,
    /// Where each entry ends in `bytes` (`bundle_entry_ends`).
    ends: Box<[usize]>,
}

impl CachedBundle {
    fn weight(&self) -> usize {
        self.bytes.len() + self.ends.len() * std::mem::size_of::<usize>() + ENTRY_OVERHEAD
    }
}

#[derive(Clone)]
enum Cached {
    Tile(Arc<CachedTile>),
    Bundle(Arc<CachedBundle>),
    Upper(Arc<UpperNodes>),
}

impl Cached {
    fn width(&self) -> usize {
        match self {
            Cached::Tile(t) => t.width,
            Cached::Bundle(b) => b.ends.len(),
            Cached::Upper(_) => TILE_WIDTH as usize,
        }
    }
}

struct Slot {
    value: Cached,
    weight: usize,
    /// Read since the clock hand last passed: spared once.
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Key, Slot, foldhash::fast::RandomState>,
    /// The clock: every key in `map` once, oldest first.
    ring: VecDeque<Key>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl Shard {
    /// The entry at `key` if it covers `width`; counts a hit or a miss.
    fn get(&mut self, key: Key, width: usize) -> Option<Cached> {
        match self.map.get_mut(&key) {
            Some(slot) if slot.value.width() >= width => {
                slot.referenced = true;
                self.hits += 1;
                Some(slot.value.clone())
            }
            _ => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps `value` unless a wider one is already there, then evicts
    /// until the shard fits `budget`.
    fn insert(&mut self, key: Key, value: Cached, weight: usize, budget: usize) {
        if weight > budget {
            return;
        }
        match self.map.get_mut(&key) {
            Some(slot) if slot.value.width() >= value.width() => return,
            Some(slot) => {
                self.bytes = self.bytes - slot.weight + weight;
                slot.value = value;
                slot.weight = weight;
            }
            None => {
                self.map.insert(
                    key,
                    Slot {
                        value,
                        weight,
                        referenced: false,
                    },
                );
                self.ring.push_back(key);
                self.bytes += weight;
            }
        }
        while self.bytes > budget {
            let Some(oldest) = self.ring.pop_front() else {
                break;
            };
            let Some(slot) = self.map.get_mut(&oldest) else {
                continue;
            };
            if slot.referenced && oldest != key {
                slot.referenced = false;
                self.ring.push_back(oldest);
            } else if let Some(gone) = self.map.remove(&oldest) {
                self.bytes -= gone.weight;
            }
        }
    }
}

/// How the cache has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads this tier could not answer (a proof may then be answered by
    /// the proof tier).
    pub misses: u64,
    /// Bytes held now (data and bookkeeping).
    pub bytes: usize,
    /// Tiles and bundles held now.
    pub entries: usize,
    /// The proof tier: level-0 tiles whose upper nodes it had when a
    /// proof missed the first tier.
    pub proof_hits: u64,
    /// The proof tier: level-0 tiles it did not have (a partial tile, or
    /// a full one then read whole and kept).
    pub proof_misses: u64,
    /// The proof tier: bytes held now.
    pub proof_bytes: usize,
    /// The proof tier: tiles whose upper nodes it holds now.
    pub proof_entries: usize,
    /// The proof tier's misses answered by the store's own upper nodes
    /// ([`Store::tile_upper_nodes`]), not by reading the tile whole.
    pub proof_from_store: u64,
}

/// Hash tiles, their inner subtree hashes and entry bundles, read through
/// from the store and kept within a byte budget. Cheap to share: every
/// method takes `&self`.
pub struct TileCache {
    store: Arc<dyn Store>,
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
    /// The proof tier: [`Key::Upper`] entries only, within their own budget.
    proof_shards: Box<[Mutex<Shard>]>,
    proof_shard_budget: usize,
    /// MTH(D[start:end]) of ranges proofs folded, by (start, end).
    ranges: Mutex<HashMap<(u64, u64), Hash, foldhash::fast::RandomState>>,
    /// See [`ReadCacheStats::proof_from_store`].
    proof_from_store: AtomicU64,
}

impl TileCache {
    /// A cache over `store` holding at most `max_bytes` of tiles and
    /// bundles and `proof_bytes` in its proof tier (0 caches nothing there).
    pub fn new(store: Arc<dyn Store>, max_bytes: usize, proof_bytes: usize) -> TileCache {
        TileCache {
            store,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: max_bytes / SHARDS,
            proof_shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            proof_shard_budget: proof_bytes / SHARDS,
            ranges: Mutex::default(),
            proof_from_store: AtomicU64::new(0),
        }
    }

    /// The first `width` hashes of hash tile `level`/`index`, as served.
    /// The caller checked that they are committed.
    pub fn hash_tile(&self, level: u8, index: u64, width: u16) -> Result<Bytes, StoreError> {
        let width = usize::from(width);
        let tile = self.tile_covering(level, index, width)?;
        Ok(tile.bytes.slice(..width * 32))
    }

    /// The first `width` entries of entry bundle `index`, encoded as
    /// served. The caller checked that they are committed.
    pub fn bundle(&self, index: u64, width: u16) -> Result<Bytes, StoreError> {
        let width = usize::from(width);
        let bundle = self.bundle_covering(index, width)?;
        match width.checked_sub(1).and_then(|last| bundle.ends.get(last)) {
            Some(&end) => Ok(bundle.bytes.slice(..end)),
            None => Err(StoreError::Corrupt(format!(
                "entry bundle {index} holds fewer than {width} entries"
            ))),
        }
    }

    /// The entry of leaf `leaf` (its bytes, without the length prefix),
    /// from its bundle's first `width` entries. The caller checked that
    /// they are committed. Where each entry ends was found once, when the
    /// bundle was loaded: a search's hit copies its entry, nothing more.
    pub fn entry(&self, leaf: u64, width: u16) -> Result<Vec<u8>, StoreError> {
        let offset = (leaf % TILE_WIDTH) as usize;
        let bundle = self.bundle_covering(leaf / TILE_WIDTH, usize::from(width))?;
        let (Some(&end), true) = (bundle.ends.get(offset), offset < usize::from(width)) else {
            return Err(StoreError::Corrupt(format!(
                "leaf {leaf} is missing from its bundle"
            )));
        };
        let start = offset.checked_sub(1).map_or(0, |i| bundle.ends[i]);
        Ok(bundle.bytes[start + 2..end].to_vec())
    }

    /// Entry bundle `index` with at least `width` entries, from the cache
    /// or loaded into it.
    fn bundle_covering(&self, index: u64, width: usize) -> Result<Arc<CachedBundle>, StoreError> {
        let key = Key::Bundle(index);
        // The shard's lock is released before a miss reads the store.
        let cached = self.lock(&self.shards, key).get(key, width);
        match cached {
            Some(Cached::Bundle(b)) => Ok(b),
            _ => self.load_bundle(index, width),
        }
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> ReadCacheStats {
        let sum = |shards: &[Mutex<Shard>]| {
            shards.iter().fold((0, 0, 0, 0), |(h, m, b, e), shard| {
                let shard = lock(shard);
                (
                    h + shard.hits,
                    m + shard.misses,
                    b + shard.bytes,
                    e + shard.map.len(),
                )
            })
        };
        let (hits, misses, bytes, entries) = sum(&self.shards);
        let (proof_hits, proof_misses, proof_bytes, proof_entries) = sum(&self.proof_shards);
        ReadCacheStats {
            hits,
            misses,
            bytes,
            entries,
            proof_hits,
            proof_misses,
            proof_bytes,
            proof_entries,
            proof_from_store: self.proof_from_store.load(Ordering::Relaxed),
        }
    }

    /// A tile holding at least its first `width` hashes.
    fn tile_covering(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Arc<CachedTile>, StoreError> {
        match self.cached_tile(level, index, width) {
            Some(t) => Ok(t),
            None => self.load_tile(level, index, width),
        }
    }

    /// The cached tile holding at least its first `width` hashes, if any.
    fn cached_tile(&self, level: u8, index: u64, width: usize) -> Option<Arc<CachedTile>> {
        let key = Key::Tile { level, index };
        match self.lock(&self.shards, key).get(key, width) {
            Some(Cached::Tile(t)) => Some(t),
            _ => None,
        }
    }

    /// Reads hash tile `level`/`index` from the store (it holds at least
    /// `width` hashes) and caches it.
    fn load_tile(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Arc<CachedTile>, StoreError> {
        let key = Key::Tile { level, index };
        let stored = self
            .store
            .tile(level, index)?
            .ok_or_else(|| StoreError::Corrupt(format!("hash tile {level}/{index} is missing")))?;
        if stored.len() % 32 != 0 || stored.len() > TILE_WIDTH as usize * 32 {
            return Err(StoreError::Corrupt(format!(
                "hash tile {level}/{index} is {} bytes, not whole hashes of one tile",
                stored.len()
            )));
        }
        if stored.len() / 32 < width {
            return Err(StoreError::Corrupt(format!(
                "hash tile {level}/{index} holds {} hashes, fewer than the {width} committed",
                stored.len() / 32
            )));
        }
        let tile = Arc::new(CachedTile::build(Bytes::from(stored)));
        let weight = tile.weight();
        self.lock(&self.shards, key).insert(
            key,
            Cached::Tile(tile.clone()),
            weight,
            self.shard_budget,
        );
        Ok(tile)
    }

    /// The proof tier's upper nodes of level-0 tile `index`, if it has them.
    fn cached_upper(&self, index: u64) -> Option<Arc<UpperNodes>> {
        if self.proof_shard_budget == 0 {
            return None;
        }
        let key = Key::Upper(index);
        match self.lock(&self.proof_shards, key).get(key, 0) {
            Some(Cached::Upper(u)) => Some(u),
            _ => None,
        }
    }

    /// The upper nodes of level-0 tile `index`: from the proof tier, or
    /// else from the store if it keeps them (then kept in the tier).
    /// `None` when neither has them, or the tier has no budget.
    fn upper(&self, index: u64) -> Result<Option<Arc<UpperNodes>>, StoreError> {
        if let Some(upper) = self.cached_upper(index) {
            return Ok(Some(upper));
        }
        if self.proof_shard_budget == 0 {
            return Ok(None);
        }
        let Some(bytes) = self.store.tile_upper_nodes(index)? else {
            return Ok(None);
        };
        let upper = Arc::new(UpperNodes::decode(index, &bytes)?);
        self.proof_from_store.fetch_add(1, Ordering::Relaxed);
        self.keep(index, upper.clone());
        Ok(Some(upper))
    }

    /// Puts the upper nodes of level-0 tile `index` in the proof tier.
    fn keep(&self, index: u64, upper: Arc<UpperNodes>) {
        let key = Key::Upper(index);
        self.lock(&self.proof_shards, key).insert(
            key,
            Cached::Upper(upper),
            UpperNodes::weight(),
            self.proof_shard_budget,
        );
    }

    /// Keeps the upper nodes of level-0 tile `index`, just read whole, in
    /// the proof tier if the tile is full.
    fn keep_upper(&self, index: u64, tile: &CachedTile) {
        if self.proof_shard_budget == 0 {
            return;
        }
        if let Some(upper) = UpperNodes::of(tile) {
            self.keep(index, Arc::new(upper));
        }
    }

    /// The aligned group of [`PROOF_GROUP`] leaf hashes of full level-0
    /// tile `index` that starts at `start`, read from the store.
    fn leaf_group(&self, index: u64, start: usize) -> Result<[Hash; PROOF_GROUP], StoreError> {
        let bytes = self
            .store
            .tile_hashes(0, index, start, PROOF_GROUP)?
            .ok_or_else(|| StoreError::Corrupt(format!("hash tile 0/{index} is missing")))?;
        if bytes.len() != PROOF_GROUP * 32 {
            return Err(StoreError::Corrupt(format!(
                "hash tile 0/{index} gave {} bytes for {PROOF_GROUP} hashes",
                bytes.len()
            )));
        }
        Ok(std::array::from_fn(|i| leaf_at(&bytes, i)))
    }

    fn load_bundle(&self, index: u64, width: usize) -> Result<Arc<CachedBundle>, StoreError> {
        let key = Key::Bundle(index);
        let stored = self
            .store
            .bundle(index)?
            .ok_or_else(|| StoreError::Corrupt(format!("entry bundle {index} is missing")))?;
        let ends = tiles::bundle_entry_ends(&stored)
            .map_err(|e| StoreError::Corrupt(format!("entry bundle {index} is malformed: {e}")))?;
        if ends.len() < width {
            return Err(StoreError::Corrupt(format!(
                "entry bundle {index} holds {} entries, fewer than the {width} committed",
                ends.len()
            )));
        }
        let bundle = Arc::new(CachedBundle {
            bytes: Bytes::from(stored),
            ends: ends.into_boxed_slice(),
        });
        let weight = bundle.weight();
        self.lock(&self.shards, key).insert(
            key,
            Cached::Bundle(bundle.clone()),
            weight,
            self.shard_budget,
        );
        Ok(bundle)
    }

    /// The shard of `key` among `shards` (the first tier's or the proof tier's).
    fn lock<'a>(&self, shards: &'a [Mutex<Shard>], key: Key) -> MutexGuard<'a, Shard> {
        let (kind, index) = match key {
            Key::Tile { level, index } => (u64::from(level) + 1, index),
            Key::Bundle(index) | Key::Upper(index) => (0, index),
        };
        // Neighbouring tiles land on different shards.
        let mixed = (index ^ kind.rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        lock(&shards[(mixed >> 60) as usize % SHARDS])
    }
}

/// A shard's (or the range memo's) lock; a panic while it was held left a
/// consistent map (every change is made before the counters move), so it
/// is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Subtree hashes for proofs from the cached tiles: each node is one
/// lookup, whatever its height inside its tile.
impl SubtreeSource for TileCache {
    type Error = StoreError;

    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        // The few tiles this proof touches, each looked up (one shard lock,
        // one reference count) once, then borrowed for every node in it:
        // whole tiles of the first tier, or upper nodes of the proof tier
        // with the leaf groups read below them.
        let mut held: Vec<((u8, u64), Arc<CachedTile>)> = Vec::with_capacity(8);
        let mut uppers: Vec<(u64, Arc<UpperNodes>)> = Vec::new();
        let mut groups: Vec<((u64, usize), [Hash; PROOF_GROUP])> = Vec::new();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (level, index, offset, count) = tiles::node_location(*node);
            let width = offset + count;
            let corrupt = || {
                StoreError::Corrupt(format!(
                    "hash tile {level}/{index} does not cover node {node:?}"
                ))
            };
            if let Some((_, tile)) = held
                .iter()
                .find(|(at, t)| *at == (level, index) && t.width >= width)
            {
                out.push(tile.node(offset, count).ok_or_else(corrupt)?);
                continue;
            }
            let upper = match uppers.iter().find(|(at, _)| *at == index) {
                Some((_, upper)) if level == 0 => Some(upper.clone()),
                _ => None,
            };
            let upper = match upper {
                Some(upper) => Some(upper),
                None => match self.cached_tile(level, index, width) {
                    Some(tile) => {
                        out.push(tile.node(offset, count).ok_or_else(corrupt)?);
                        held.push(((level, index), tile));
                        continue;
                    }
                    None if level == 0 => self.upper(index)?.inspect(|u| {
                        uppers.push((index, u.clone()));
                    }),
                    None => None,
                },
            };
            let Some(upper) = upper else {
                let tile = self.load_tile(level, index, width)?;
                if level == 0 {
                    self.keep_upper(index, &tile);
                }
                out.push(tile.node(offset, count).ok_or_else(corrupt)?);
                held.push(((level, index), tile));
                continue;
            };
            if count >= PROOF_GROUP {
                out.push(upper.node(offset, count).ok_or_else(corrupt)?);
                continue;
            }
            let start = offset - offset % PROOF_GROUP;
            let group = match groups.iter().find(|(at, _)| *at == (index, start)) {
                Some((_, group)) => group,
                None => {
                    groups.push(((index, start), self.leaf_group(index, start)?));
                    &groups[groups.len() - 1].1
                }
            };
            let at = offset - start;
            out.push(root_from_leaf_hashes(&group[at..at + count]));
        }
        Ok(out)
    }

    fn kept_range(&self, start: u64, end: u64) -> Option<Hash> {
        lock(&self.ranges).get(&(start, end)).copied()
    }

    fn keep_range(&self, start: u64, end: u64, hash: Hash) {
        if self.shard_budget == 0 {
            return;
        }
        let mut ranges = lock(&self.ranges);
        if ranges.len() >= KEPT_RANGES {
            ranges.clear();
        }
        ranges.insert((start, end), hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, leaf_hash};
    use crate::store::BatchWrite;
    use crate::store::memory::MemoryStore;

    fn tile_bytes(level: u8, width: usize) -> Vec<u8> {
        (0..width as u64)
            .flat_map(|i| leaf_hash(&[&[level][..], &i.to_be_bytes()].concat()).0)
            .collect()
    }

    fn store_tiles(store: &MemoryStore, tiles: Vec<(u8, u64, Vec<u8>)>) {
        store
            .commit(&BatchWrite {
                tiles,
                ..BatchWrite::default()
            })
            .unwrap();
    }

    /// A store holding the level-0 tiles of `leaves` (the last one partial
    /// unless they fill it) and a level-1 tile of their full tiles' roots
    /// (partial: fewer than 65,536 leaves).
    fn store_leaves(leaves: &[Hash]) -> Arc<MemoryStore> {
        let mut stored: Vec<(u8, u64, Vec<u8>)> = leaves
            .chunks(256)
            .enumerate()
            .map(|(i, c)| (0, i as u64, c.iter().flat_map(|h| h.0).collect()))
            .collect();
        let level1 = leaves
            .chunks_exact(256)
            .flat_map(|c| root_from_leaf_hashes(c).0)
            .collect();
        stored.push((1, 0, level1));
        let store = Arc::new(MemoryStore::new());
        store_tiles(&store, stored);
        store
    }

    #[test]
    fn a_partial_tile_answers_only_what_it_covers_and_is_reread_when_it_grows() {
        let store = Arc::new(MemoryStore::new());
        let cache = TileCache::new(store.clone(), 1 << 20, 0);
        let full = tile_bytes(0, 256);
        store_tiles(&store, vec![(0, 0, full[..10 * 32].to_vec())]);
        assert_eq!(cache.hash_tile(0, 0, 10).unwrap(), full[..10 * 32]);
        assert_eq!(cache.hash_tile(0, 0, 3).unwrap(), full[..3 * 32]);
        // The tile grows: a wider read must not be answered by the cached prefix.
        store_tiles(&store, vec![(0, 0, full[..200 * 32].to_vec())]);
        assert_eq!(cache.hash_tile(0, 0, 200).unwrap(), full[..200 * 32]);
        assert_eq!(cache.hash_tile(0, 0, 10).unwrap(), full[..10 * 32]);
        let hits_before = cache.stats().hits;
        assert_eq!(cache.hash_tile(0, 0, 150).unwrap(), full[..150 * 32]);
        assert_eq!(cache.stats().hits, hits_before + 1);
        // A store that does not hold what was committed is an error, not a short answer.
        assert!(matches!(
            cache.hash_tile(0, 0, 256),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn an_entry_is_read_out_of_its_cached_bundle_as_the_store_holds_it() {
        let store = Arc::new(MemoryStore::new());
        let entries: Vec<Vec<u8>> = (0..300u64)
            .map(|i| format!("entry {i}").repeat(1 + i as usize % 5).into_bytes())
            .collect();
        let bundle = |n: usize, range: std::ops::Range<usize>| {
            (n as u64, tiles::encode_bundle(&entries[range]).unwrap())
        };
        // A full bundle and a partial one of 20 entries.
        store
            .commit(&BatchWrite {
                bundles: vec![bundle(0, 0..256), bundle(1, 256..276)],
                ..BatchWrite::default()
            })
            .unwrap();
        let cache = TileCache::new(store.clone(), 1 << 20, 0);
        for leaf in (0..276u64).chain([0, 255, 256, 275]) {
            let width = if leaf < 256 { 256 } else { 20 };
            assert_eq!(
                cache.entry(leaf, width).unwrap(),
                entries[leaf as usize],
                "leaf {leaf}"
            );
            assert_eq!(
                cache.entry(leaf, width).unwrap(),
                crate::sequencer::read_entry(store.as_ref(), leaf).unwrap()
            );
        }
        // A leaf past the width asked for, or past what the store holds,
        // is not answered from a wider cached bundle.
        assert!(cache.entry(260, 4).is_err());
        assert!(cache.entry(280, 30).is_err());
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let store = Arc::new(MemoryStore::new());
        let tiles: Vec<_> = (0..64).map(|i| (0u8, i, tile_bytes(0, 256))).collect();
        store_tiles(&store, tiles);
        let budget = 8 * CachedTile::build(Bytes::from(tile_bytes(0, 256))).weight() * SHARDS / 4;
        let cache = TileCache::new(store.clone(), budget, 0);
        for round in 0..3 {
            for i in 0..64 {
                assert_eq!(
                    cache.hash_tile(0, i, 256).unwrap().len(),
                    256 * 32,
                    "{round}"
                );
            }
        }
        let stats = cache.stats();
        assert!(stats.bytes <= budget, "{stats:?} over {budget}");
        assert!(stats.entries > 0 && stats.entries < 64, "{stats:?}");
        let off = TileCache::new(store, 0, 0);
        assert_eq!(off.hash_tile(0, 5, 256).unwrap().len(), 256 * 32);
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn concurrent_proofs_under_eviction_all_verify() {
        use crate::merkle::NodeId;
        // Full level-0 tiles, a partial one, and a partial level-1 tile.
        let size = 256 * 40 + 77;
        let leaves: Vec<Hash> = (0..size)
            .map(|i: u64| leaf_hash(&i.to_be_bytes()))
            .collect();
        let store = store_leaves(&leaves);
        let root = root_from_leaf_hashes(&leaves);
        let firsts: Vec<(u64, Hash)> = [1u64, 255, 256, 257, 5000, 10_240, size - 1]
            .iter()
            .map(|&f| (f, root_from_leaf_hashes(&leaves[..f as usize])))
            .collect();
        // Room for one full tile and a half per shard, for 42 tiles: proofs evict.
        let weight = CachedTile::build(Bytes::from(tile_bytes(0, 256))).weight();
        let budget = SHARDS * weight * 3 / 2;
        let cache = TileCache::new(store, budget, 0);
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let (cache, leaves, firsts) = (&cache, &leaves, &firsts);
                scope.spawn(move || {
                    for n in 0..150u64 {
                        let index = (n * 7919 + t * 104_729) % size;
                        let (leaf, path) =
                            merkle::inclusion_proof_with_leaf(index, size, cache).unwrap();
                        assert_eq!(leaf, leaves[index as usize]);
                        merkle::verify_inclusion(index, size, &leaf, &path, &root).unwrap();
                        let (first, first_root) = firsts[((n + t) % 7) as usize];
                        let proof = merkle::consistency_proof(first, size, cache).unwrap();
                        merkle::verify_consistency(first, size, &first_root, &root, &proof)
                            .unwrap();
                        // A node past the stored widths is refused, never guessed.
                        assert!(cache.subtree_hashes(&[NodeId::leaf(size)]).is_err());
                    }
                });
            }
        });
        let stats = cache.stats();
        assert!(stats.bytes <= budget, "{stats:?}");
        assert!(stats.misses > 40, "{stats:?}");
    }

    #[test]
    fn kept_ranges_stay_bounded_and_a_cache_of_size_0_keeps_none() {
        let cache = TileCache::new(Arc::new(MemoryStore::new()), 1 << 20, 0);
        let h = |i: u64| leaf_hash(&i.to_be_bytes());
        for i in 0..(KEPT_RANGES as u64 + 10) {
            cache.keep_range(i, i + 3, h(i));
            assert!(lock(&cache.ranges).len() <= KEPT_RANGES);
        }
        let last = KEPT_RANGES as u64 + 9;
        assert_eq!(cache.kept_range(last, last + 3), Some(h(last)));
        assert_eq!(cache.kept_range(last, last + 4), None);
        let off = TileCache::new(Arc::new(MemoryStore::new()), 0, 0);
        off.keep_range(0, 3, h(0));
        assert_eq!(off.kept_range(0, 3), None);
    }

    /// A log of `full` full level-0 tiles and 77 leaves more, as a store
    /// holds it, and the same leaves in memory: the independent reference.
    fn stored_log(full: u64) -> (Arc<MemoryStore>, merkle::MemoryTree) {
        let size = 256 * full + 77;
        let tree: merkle::MemoryTree = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        (store_leaves(tree.leaves()), tree)
    }

    /// Every inclusion proof at `size` for the leaves in `indices`, and the
    /// consistency proofs from `firsts`, from `cache` and from the
    /// reference, equal and verifying.
    fn check_proofs(
        cache: &TileCache,
        tree: &merkle::MemoryTree,
        size: u64,
        indices: impl Iterator<Item = u64>,
        firsts: &[u64],
    ) {
        let leaves = &tree.leaves()[..size as usize];
        let root = root_from_leaf_hashes(leaves);
        for index in indices {
            let (leaf, path) = merkle::inclusion_proof_with_leaf(index, size, cache).unwrap();
            assert_eq!(leaf, leaves[index as usize], "leaf {index} at {size}");
            assert_eq!(
                path,
                merkle::inclusion_proof(index, size, tree).unwrap(),
                "{index} at {size}"
            );
            merkle::verify_inclusion(index, size, &leaf, &path, &root).unwrap();
        }
        for &first in firsts.iter().filter(|&&f| f <= size) {
            let proof = merkle::consistency_proof(first, size, cache).unwrap();
            assert_eq!(
                proof,
                merkle::consistency_proof(first, size, tree).unwrap(),
                "{first}..{size}"
            );
            let first_root = root_from_leaf_hashes(&leaves[..first as usize]);
            merkle::verify_consistency(first, size, &first_root, &root, &proof).unwrap();
        }
    }

    /// Sizes on and beside tile boundaries, 16-leaf groups and the right edge.
    const FIRSTS: [u64; 12] = [1, 15, 16, 17, 255, 256, 257, 512, 1000, 2048, 3072, 3148];

    #[test]
    fn the_proof_tier_answers_what_the_store_does_cold_warm_and_evicted() {
        let upper = UpperNodes::weight();
        // Only the proof tier: a cold one, one that holds every tile, and
        // one with room for one tile per shard, so proofs of 40 tiles evict.
        for (full, proof_bytes, label) in [
            (12, 1 << 20, "roomy"),
            (40, SHARDS * upper * 3 / 2, "evicting"),
        ] {
            let (store, tree) = stored_log(full);
            let size = tree.len();
            let cache = TileCache::new(store.clone(), 0, proof_bytes);
            // Cold: the first proof in each full tile reads it whole.
            check_proofs(&cache, &tree, size, (0..size).step_by(256), &[]);
            let cold = cache.stats();
            assert_eq!(cold.proof_hits, 0, "{label}: {cold:?}");
            assert!(
                cold.proof_misses >= full && cold.entries == 0,
                "{label}: {cold:?}"
            );
            // Warm (or evicting): every leaf, and consistency across tiles.
            for _ in 0..2 {
                check_proofs(&cache, &tree, size, 0..size, &FIRSTS);
            }
            let warm = cache.stats();
            assert!(warm.proof_hits > 0, "{label}: {warm:?}");
            assert!(warm.proof_bytes <= proof_bytes, "{label}: {warm:?}");
            if label == "roomy" {
                assert_eq!(
                    warm.proof_entries, 12,
                    "the partial tile is not kept: {warm:?}"
                );
                // Warm, a proof in full tiles reads no tile whole.
                let (_, path) = merkle::inclusion_proof_with_leaf(1000, 3072, &cache).unwrap();
                assert_eq!(path, merkle::inclusion_proof(1000, 3072, &tree).unwrap());
                let after = cache.stats();
                assert_eq!(after.proof_misses, warm.proof_misses, "{after:?}");
                assert_eq!(after.proof_hits, warm.proof_hits + 1, "{after:?}");
            } else {
                assert!(warm.proof_entries <= SHARDS, "{label}: {warm:?}");
            }
            // Older sizes, whose right edge falls inside a kept tile.
            for old in [300, 2047, 2049, 3072] {
                check_proofs(&cache, &tree, old, (0..old).step_by(7), &FIRSTS);
            }
        }
        // Both tiers, the first one small; and a cache of size 0.
        let (store, tree) = stored_log(12);
        let size = tree.len();
        for (bytes, proof_bytes) in [(SHARDS * 16 * 1024, 1 << 20), (0, 0)] {
            let cache = TileCache::new(store.clone(), bytes, proof_bytes);
            for _ in 0..2 {
                check_proofs(&cache, &tree, size, 0..size, &FIRSTS);
            }
            if proof_bytes == 0 {
                let stats = cache.stats();
                assert_eq!((stats.proof_entries, stats.proof_hits), (0, 0), "{stats:?}");
                assert_eq!(stats.entries, 0, "{stats:?}");
            }
        }
    }

    /// Every tile of a tree over `leaves`, each level's full tiles' roots
    /// making the level above, as a log stores them.
    fn tiles_of(leaves: &[Hash]) -> Vec<(u8, u64, Vec<u8>)> {
        let mut out = Vec::new();
        let (mut level, mut hashes) = (0u8, leaves.to_vec());
        while !hashes.is_empty() {
            for (i, c) in hashes.chunks(256).enumerate() {
                out.push((level, i as u64, c.iter().flat_map(|h| h.0).collect()));
            }
            hashes = hashes
                .chunks_exact(256)
                .map(root_from_leaf_hashes)
                .collect();
            level += 1;
        }
        out
    }

    #[test]
    fn a_store_keeping_upper_nodes_answers_a_first_proof_in_a_tile_without_hashing_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::sled::SledStore::open(dir.path()).unwrap());
        let size: u64 = 65_536 + 700;
        let tree: merkle::MemoryTree = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        store
            .commit(&BatchWrite {
                tree_size: size,
                tiles: tiles_of(tree.leaves()),
                ..BatchWrite::default()
            })
            .unwrap();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.tile_packs_built() == 0 {
            assert!(std::time::Instant::now() < give_up, "no tile pack written");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // No first tier: every level-0 node comes from the proof tier.
        let cache = TileCache::new(store.clone(), 0, 1 << 20);
        // One proof in each of the packed tiles, then in the two full
        // tiles past the pack, then everything again, warm.
        check_proofs(&cache, &tree, size, (0..65_536).step_by(256), &[]);
        let packed = cache.stats();
        assert_eq!(packed.proof_from_store, 256, "{packed:?}");
        assert_eq!(packed.proof_entries, 256, "{packed:?}");
        check_proofs(&cache, &tree, size, [65_536, 65_792].into_iter(), &[]);
        let past = cache.stats();
        assert_eq!(
            past.proof_from_store, 256,
            "hashed from the tiles: {past:?}"
        );
        assert_eq!(past.proof_entries, 258, "{past:?}");
        check_proofs(&cache, &tree, size, (0..size).step_by(61), &FIRSTS);
        check_proofs(&cache, &tree, 65_536, (0..65_536).step_by(255), &FIRSTS);
    }

    #[test]
    fn upper_nodes_match_the_hashes_they_cover_and_a_partial_tile_has_none() {
        let leaves: Vec<Hash> = (0..256u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let bytes: Vec<u8> = leaves.iter().flat_map(|h| h.0).collect();
        let upper = UpperNodes::of(&CachedTile::build(Bytes::from(bytes.clone()))).unwrap();
        for height in 0..TILE_HEIGHT {
            let count = 1usize << height;
            for offset in (0..256).step_by(count) {
                let want = (count >= PROOF_GROUP)
                    .then(|| root_from_leaf_hashes(&leaves[offset..offset + count]));
                assert_eq!(upper.node(offset, count), want, "o={offset} c={count}");
            }
        }
        assert_eq!(upper.node(8, 16), None, "misaligned");
        let partial = CachedTile::build(Bytes::from(bytes[..255 * 32].to_vec()));
        assert!(UpperNodes::of(&partial).is_none());
    }

    #[test]
    fn inner_nodes_match_the_hashes_they_cover() {
        for width in [1usize, 2, 3, 7, 128, 129, 255, 256] {
            let leaves: Vec<Hash> = (0..width as u64)
                .map(|i| leaf_hash(&i.to_be_bytes()))
                .collect();
            let bytes: Vec<u8> = leaves.iter().flat_map(|h| h.0).collect();
            let tile = CachedTile::build(Bytes::from(bytes));
            for height in 0..TILE_HEIGHT {
                let count = 1usize << height;
                for offset in (0..256).step_by(count) {
                    let want = (offset + count <= width)
                        .then(|| root_from_leaf_hashes(&leaves[offset..offset + count]));
                    assert_eq!(
                        tile.node(offset, count),
                        want,
                        "w={width} o={offset} c={count}"
                    );
                }
            }
        }
    }
}
