//! The read cache: the hash tiles and entry bundles readers ask for, kept in
//! memory as bytes ready to send, each hash tile with the hashes of the
//! complete subtrees inside it. A proof then folds a few cached hashes
//! instead of reading tiles from the store and rehashing up to 128 leaves
//! per node, and a tile is answered without a store read or a copy.
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
//! - reads only: nothing here writes the store, so a cache that is cold,
//!   or of size 0, answers exactly what the store does, only slower.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use crate::merkle::{Hash, NodeId, SubtreeSource, node_hash};
use crate::store::{Store, StoreError};
use crate::tiles::{self, TILE_HEIGHT, TILE_WIDTH};

/// The read cache's default budget: 64 MiB holds every hash tile of a log
/// of about 1.3 million entries (about 12 KiB per full level-0 tile, with
/// its kept subtree hashes), and the few upper tiles every proof uses.
pub const DEFAULT_READ_CACHE_BYTES: usize = 64 << 20;

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
}

impl Cached {
    fn width(&self) -> usize {
        match self {
            Cached::Tile(t) => t.width,
            Cached::Bundle(b) => b.ends.len(),
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
    /// Reads that went to the store.
    pub misses: u64,
    /// Bytes held now (data and bookkeeping).
    pub bytes: usize,
    /// Tiles and bundles held now.
    pub entries: usize,
}

/// Hash tiles, their inner subtree hashes and entry bundles, read through
/// from the store and kept within a byte budget. Cheap to share: every
/// method takes `&self`.
pub struct TileCache {
    store: Arc<dyn Store>,
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
    /// MTH(D[start:end]) of ranges proofs folded, by (start, end).
    ranges: Mutex<HashMap<(u64, u64), Hash, foldhash::fast::RandomState>>,
}

impl TileCache {
    /// A cache over `store` holding at most `max_bytes` (0 caches nothing).
    pub fn new(store: Arc<dyn Store>, max_bytes: usize) -> TileCache {
        TileCache {
            store,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: max_bytes / SHARDS,
            ranges: Mutex::default(),
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
        let key = Key::Bundle(index);
        // The shard's lock is released before a miss reads the store.
        let cached = self.lock(key).get(key, width);
        let bundle = match cached {
            Some(Cached::Bundle(b)) => b,
            _ => self.load_bundle(index, width)?,
        };
        match width.checked_sub(1).and_then(|last| bundle.ends.get(last)) {
            Some(&end) => Ok(bundle.bytes.slice(..end)),
            None => Err(StoreError::Corrupt(format!(
                "entry bundle {index} holds fewer than {width} entries"
            ))),
        }
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> ReadCacheStats {
        let mut s = ReadCacheStats::default();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            s.hits += shard.hits;
            s.misses += shard.misses;
            s.bytes += shard.bytes;
            s.entries += shard.map.len();
        }
        s
    }

    /// A tile holding at least its first `width` hashes.
    fn tile_covering(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Arc<CachedTile>, StoreError> {
        let key = Key::Tile { level, index };
        let cached = self.lock(key).get(key, width);
        if let Some(Cached::Tile(t)) = cached {
            return Ok(t);
        }
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
        self.lock(key)
            .insert(key, Cached::Tile(tile.clone()), weight, self.shard_budget);
        Ok(tile)
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
        self.lock(key).insert(
            key,
            Cached::Bundle(bundle.clone()),
            weight,
            self.shard_budget,
        );
        Ok(bundle)
    }

    fn lock(&self, key: Key) -> MutexGuard<'_, Shard> {
        let (kind, index) = match key {
            Key::Tile { level, index } => (u64::from(level) + 1, index),
            Key::Bundle(index) => (0, index),
        };
        // Neighbouring tiles land on different shards.
        let mixed = (index ^ kind.rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        lock(&self.shards[(mixed >> 60) as usize % SHARDS])
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
        // one reference count) once, then borrowed for every node in it.
        let mut held: Vec<((u8, u64), Arc<CachedTile>)> = Vec::with_capacity(8);
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (level, index, offset, count) = tiles::node_location(*node);
            let at = match held
                .iter()
                .position(|(at, t)| *at == (level, index) && t.width >= offset + count)
            {
                Some(at) => at,
                None => {
                    held.push((
                        (level, index),
                        self.tile_covering(level, index, offset + count)?,
                    ));
                    held.len() - 1
                }
            };
            let tile = &held[at].1;
            out.push(tile.node(offset, count).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "hash tile {level}/{index} does not cover node {node:?}"
                ))
            })?);
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
    use crate::merkle::{leaf_hash, root_from_leaf_hashes};
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

    #[test]
    fn a_partial_tile_answers_only_what_it_covers_and_is_reread_when_it_grows() {
        let store = Arc::new(MemoryStore::new());
        let cache = TileCache::new(store.clone(), 1 << 20);
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
    fn the_cache_stays_within_its_budget() {
        let store = Arc::new(MemoryStore::new());
        let tiles: Vec<_> = (0..64).map(|i| (0u8, i, tile_bytes(0, 256))).collect();
        store_tiles(&store, tiles);
        let budget = 8 * CachedTile::build(Bytes::from(tile_bytes(0, 256))).weight() * SHARDS / 4;
        let cache = TileCache::new(store.clone(), budget);
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
        let off = TileCache::new(store, 0);
        assert_eq!(off.hash_tile(0, 5, 256).unwrap().len(), 256 * 32);
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn concurrent_proofs_under_eviction_all_verify() {
        use crate::merkle::{self, NodeId};
        // Full level-0 tiles, a partial one, and a partial level-1 tile.
        let size = 256 * 40 + 77;
        let leaves: Vec<Hash> = (0..size)
            .map(|i: u64| leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut stored: Vec<(u8, u64, Vec<u8>)> = leaves
            .chunks(256)
            .enumerate()
            .map(|(i, c)| (0, i as u64, c.iter().flat_map(|h| h.0).collect()))
            .collect();
        let level1: Vec<u8> = leaves
            .chunks_exact(256)
            .flat_map(|c| root_from_leaf_hashes(c).0)
            .collect();
        stored.push((1, 0, level1));
        let store = Arc::new(MemoryStore::new());
        store_tiles(&store, stored);
        let root = root_from_leaf_hashes(&leaves);
        let firsts: Vec<(u64, Hash)> = [1u64, 255, 256, 257, 5000, 10_240, size - 1]
            .iter()
            .map(|&f| (f, root_from_leaf_hashes(&leaves[..f as usize])))
            .collect();
        // Room for one full tile and a half per shard, for 42 tiles: proofs evict.
        let weight = CachedTile::build(Bytes::from(tile_bytes(0, 256))).weight();
        let budget = SHARDS * weight * 3 / 2;
        let cache = TileCache::new(store, budget);
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
        let cache = TileCache::new(Arc::new(MemoryStore::new()), 1 << 20);
        let h = |i: u64| leaf_hash(&i.to_be_bytes());
        for i in 0..(KEPT_RANGES as u64 + 10) {
            cache.keep_range(i, i + 3, h(i));
            assert!(lock(&cache.ranges).len() <= KEPT_RANGES);
        }
        let last = KEPT_RANGES as u64 + 9;
        assert_eq!(cache.kept_range(last, last + 3), Some(h(last)));
        assert_eq!(cache.kept_range(last, last + 4), None);
        let off = TileCache::new(Arc::new(MemoryStore::new()), 0);
        off.keep_range(0, 3, h(0));
        assert_eq!(off.kept_range(0, 3), None);
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
