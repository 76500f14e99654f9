//! The right edge: the open end of the tree, the only part of it the
//! sequencer holds in memory (the partial tile of every level and the
//! partial entry bundle: at most 255 hashes per level and 255 entries).
//!
//! Appending to it yields the tiles and bundles that became full, which
//! never change again; the partial versions it writes are each a prefix of
//! the next. It is loaded from the stored partial tiles in O(log n) reads,
//! never rebuilt from the leaves.

use crate::event::LeafRecord;
use crate::merkle::{self, Hash};
use crate::store::{Store, StoreError};
use crate::tiles::{self, TILE_WIDTH, TileBuilder};

/// The open end of the tree: the partial tile of every level and the partial
/// entry bundle. This is all the sequencer holds in memory: at most 255
/// hashes per level and 255 entries.
#[derive(Clone, Debug, Default)]
pub struct RightEdge {
    /// The partial hash tile of every level.
    hashes: TileBuilder,
    /// The partial entry bundle, encoded.
    pub(super) bundle: Vec<u8>,
}

/// Objects that became full while appending.
#[derive(Default)]
pub(super) struct Completed {
    pub(super) tiles: Vec<(u8, u64, Vec<u8>)>,
    pub(super) bundles: Vec<(u64, Vec<u8>)>,
}

/// Why the stored right edge could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A read failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A tile or bundle the tree size requires is missing or too short.
    #[error("{0}")]
    Missing(String),
}

fn hashes_to_bytes(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * 32);
    for h in hashes {
        out.extend_from_slice(h.as_bytes());
    }
    out
}

pub(super) fn bytes_to_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect()
}

impl RightEdge {
    /// The right edge of the empty tree.
    pub fn empty() -> RightEdge {
        RightEdge::default()
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.hashes.size
    }

    /// Loads the right edge of a stored tree of `size` entries: one partial
    /// tile per level and the partial bundle. O(log n) reads, no rebuild.
    pub fn load(store: &dyn Store, size: u64) -> Result<RightEdge, EdgeError> {
        let mut levels = Vec::new();
        for level in 0..8u8 {
            let width = usize::from(tiles::partial_width(level, size));
            let shift = 8 * (u32::from(level) + 1);
            if width == 0 {
                levels.push(Vec::new());
                if size.checked_shr(shift).unwrap_or(0) == 0 {
                    break;
                }
                continue;
            }
            let index = size >> shift;
            let tile = store.tile(level, index)?.ok_or_else(|| {
                EdgeError::Missing(format!("hash tile {level}/{index} is missing"))
            })?;
            if tile.len() < width * 32 {
                return Err(EdgeError::Missing(format!(
                    "hash tile {level}/{index} has {} hashes, the tree needs {width}",
                    tile.len() / 32
                )));
            }
            levels.push(bytes_to_hashes(&tile[..width * 32]));
        }
        let mut bundle = Vec::new();
        let width = usize::from(tiles::partial_width(0, size));
        if width > 0 {
            let index = size >> 8;
            let stored = store
                .bundle(index)?
                .ok_or_else(|| EdgeError::Missing(format!("entry bundle {index} is missing")))?;
            let entries = tiles::decode_bundle(&stored).map_err(|e| {
                EdgeError::Missing(format!("entry bundle {index} is malformed: {e}"))
            })?;
            if entries.len() < width {
                return Err(EdgeError::Missing(format!(
                    "entry bundle {index} has {} entries, the tree needs {width}",
                    entries.len()
                )));
            }
            bundle = tiles::encode_bundle(&entries[..width])
                .map_err(|e| EdgeError::Missing(format!("entry bundle {index}: {e}")))?;
        }
        Ok(RightEdge {
            hashes: TileBuilder { size, levels },
            bundle,
        })
    }

    /// Appends one entry whose leaf hash is `leaf`; tiles and bundles that
    /// become full are added to `done`.
    pub(super) fn append(
        &mut self,
        entry: &[u8],
        leaf: Hash,
        done: &mut Completed,
    ) -> Result<(), tiles::BundleError> {
        let one = tiles::encode_bundle(&[entry])?;
        self.bundle.extend_from_slice(&one);
        let index = self.hashes.size;
        if (index + 1).is_multiple_of(TILE_WIDTH) {
            done.bundles
                .push((index >> 8, std::mem::take(&mut self.bundle)));
        }
        for (tile, full) in self.hashes.append(leaf) {
            done.tiles
                .push((tile.level, tile.index, hashes_to_bytes(&full)));
        }
        Ok(())
    }

    /// The tiles whose partial version changed since the tree had `since`
    /// entries, with their current content.
    pub(super) fn partial_tiles_since(&self, since: u64) -> Vec<(u8, u64, Vec<u8>)> {
        let size = self.hashes.size;
        self.hashes
            .partials()
            .into_iter()
            .filter(|(tile, _)| {
                let shift = 8 * u32::from(tile.level);
                since.checked_shr(shift) != size.checked_shr(shift)
            })
            .map(|(tile, hashes)| (tile.level, tile.index, hashes_to_bytes(hashes)))
            .collect()
    }

    /// The root hash of the tree.
    pub fn root(&self) -> Hash {
        // The perfect subtrees of the size's decomposition all lie in the
        // partial tiles, so this never reads the store.
        match merkle::tree_root(self.hashes.size, &self.hashes) {
            Ok(h) => h,
            Err(e) => panic!("internal error: right edge cannot produce its own root: {e}"),
        }
    }

    /// The receive time of the last leaf (0 for the empty tree), so that
    /// leaves appended after a restart never go back in time.
    pub fn last_received_ms(&self, store: &dyn Store) -> Result<i64, String> {
        if self.size() == 0 {
            return Ok(0);
        }
        let entry = match tiles::decode_bundle(&self.bundle)
            .ok()
            .and_then(|mut v| v.pop())
        {
            Some(e) => e,
            None => {
                let index = (self.size() - 1) >> 8;
                let bundle = store
                    .bundle(index)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("entry bundle {index} is missing"))?;
                tiles::decode_bundle(&bundle)
                    .map_err(|e| e.to_string())?
                    .pop()
                    .ok_or_else(|| format!("entry bundle {index} is empty"))?
            }
        };
        LeafRecord::parse(&entry)
            .map(|r| r.received_ms)
            .map_err(|e| format!("last leaf is malformed: {e}"))
    }
}
