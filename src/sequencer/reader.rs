//! Reading the stored tree: subtree hashes from the hash tiles (for proofs
//! at any size up to the committed one) and single leaves from the entry
//! bundles, straight from the store every time: for start-up and history
//! checks, cosigning, the sequencer and the search's receive-time bounds.
//! The HTTP reads, a search's hits included, go through the bounded cache
//! of [`super::tile_cache`] instead.
//! Reads only; every object read here is one the sequencer committed.

use std::collections::HashMap;

use super::edge::bytes_to_hashes;
use crate::merkle::{self, Hash, NodeId, SubtreeSource};
use crate::store::{Store, StoreError};
use crate::tiles::{self, TILE_WIDTH};

/// Subtree hashes read from the stored hash tiles, for any tree size up to
/// the committed one.
pub struct TileSource<'a> {
    store: &'a dyn Store,
}

impl<'a> TileSource<'a> {
    /// A source over `store`'s tiles.
    pub fn new(store: &'a dyn Store) -> TileSource<'a> {
        TileSource { store }
    }
}

impl SubtreeSource for TileSource<'_> {
    type Error = StoreError;

    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        let mut cache: HashMap<(u8, u64), Vec<u8>> = HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (level, index, offset, count) = tiles::node_location(*node);
            if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry((level, index)) {
                let tile = self.store.tile(level, index)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("hash tile {level}/{index} is missing"))
                })?;
                slot.insert(tile);
            }
            let tile = &cache[&(level, index)];
            let bytes = tile
                .get(offset * 32..(offset + count) * 32)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "hash tile {level}/{index} is too short for node {node:?}"
                    ))
                })?;
            out.push(merkle::root_from_leaf_hashes(&bytes_to_hashes(bytes)));
        }
        Ok(out)
    }
}

/// Reads leaf `index` from the stored entry bundles.
pub fn read_entry(store: &dyn Store, index: u64) -> Result<Vec<u8>, StoreError> {
    let bundle = store
        .bundle(index >> 8)?
        .ok_or_else(|| StoreError::Corrupt(format!("entry bundle {} is missing", index >> 8)))?;
    entry_in_bundle(&bundle, index)
}

/// Leaf `index` from the bytes of its entry bundle (the stored one, or
/// the read cache's).
fn entry_in_bundle(bundle: &[u8], index: u64) -> Result<Vec<u8>, StoreError> {
    // Checked whole, but only the one entry is copied.
    let ends = tiles::bundle_entry_ends(bundle).map_err(|e| {
        StoreError::Corrupt(format!("entry bundle {} is malformed: {e}", index >> 8))
    })?;
    let offset = (index % TILE_WIDTH) as usize;
    let Some(&end) = ends.get(offset) else {
        return Err(StoreError::Corrupt(format!(
            "leaf {index} is missing from its bundle"
        )));
    };
    let start = offset.checked_sub(1).map_or(0, |i| ends[i]);
    Ok(bundle[start + 2..end].to_vec())
}
