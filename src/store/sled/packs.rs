//! Tile packs: for each full level-1 tile, one file holding copies of its
//! 256 level-0 tiles and the upper nodes of each
//! ([`crate::tiles::upper_nodes`]), under `<db>/objects/packs/`.
//!
//! Why: an inclusion proof reads 16 hashes of one level-0 tile, and a log
//! of 10 million events has 39,000 level-0 tiles, more files than the
//! descriptors a process keeps, so most such reads paid a path walk,
//! `open`, `fstat` and `close` around a `pread`; and the first proof that
//! touched a tile after a start hashed its 256 hashes to get its upper
//! nodes. The same log has 153 packs, whose descriptors all stay open: a
//! level-0 tile, a part of one, or its upper nodes is one `pread`, and a
//! proof hashes nothing above its 16 leaves.
//!
//! Derived data: every byte is a copy of level-0 tiles that a durable tree
//! size covers, or hashed from them, so a pack is never the only copy of
//! anything, is not in backups, and can be deleted (reads then go to the
//! tiles again). The store's background thread writes the packs in order,
//! one at a time, each only once a durable commit covers its 65,536
//! leaves (a tile file beyond that may still be rewritten by the commit
//! that completes it): a temporary file, fsync, rename, fsync of the
//! directory, so a pack's name exists only for a complete file. On open
//! the packs are therefore a prefix `0..n` of the full level-1 tiles, and
//! a binary search on their names finds `n` ([`built_on_open`]); readers
//! use a pack only below `n`.
//!
//! Layout (immutable, [`LEN`] bytes): the 256 level-0 tiles, 8,192 bytes
//! each, in order; then their upper nodes, [`UPPER_NODES`] hashes of 32
//! bytes each per tile, in the same order. fsck compares every pack with
//! the tiles it copies ([`check`]).

use super::files::{Blob, Files};
use crate::merkle::Hash;
use crate::store::StoreError;
use crate::tiles::{TILE_WIDTH, UPPER_NODES, upper_nodes};

/// Bytes of one full hash tile.
const TILE_LEN: u64 = TILE_WIDTH * 32;
/// Bytes of one tile's upper nodes.
const UPPER_LEN: u64 = UPPER_NODES as u64 * 32;
/// Level-0 tiles in a pack: those of one level-1 tile.
const TILES: u64 = TILE_WIDTH;
/// Leaves one pack covers.
pub(super) const LEAVES: u64 = TILES * TILE_WIDTH;
/// Bytes of a pack.
pub(super) const LEN: u64 = TILES * (TILE_LEN + UPPER_LEN);

/// The pack holding level-0 tile `index`.
pub(super) fn pack_of(index: u64) -> u64 {
    index / TILES
}

/// Where hashes `start .. start + count` of level-0 tile `index` lie in
/// its pack: `(offset, length)`.
pub(super) fn hashes_at(index: u64, start: usize, count: usize) -> (u64, usize) {
    ((index % TILES) * TILE_LEN + start as u64 * 32, count * 32)
}

/// Where the upper nodes of level-0 tile `index` lie in its pack.
pub(super) fn upper_at(index: u64) -> (u64, usize) {
    (
        TILES * TILE_LEN + (index % TILES) * UPPER_LEN,
        UPPER_LEN as usize,
    )
}

/// The bytes of pack `n` from its 256 tiles (`tiles[i]` is level-0 tile
/// `256 n + i`), each a full tile.
pub(super) fn encode(n: u64, tiles: &[Vec<u8>]) -> Result<Vec<u8>, StoreError> {
    if tiles.len() as u64 != TILES {
        return Err(StoreError::Backend(format!(
            "tile pack {n} needs {TILES} tiles, got {}",
            tiles.len()
        )));
    }
    let mut out = Vec::with_capacity(LEN as usize);
    for (i, tile) in tiles.iter().enumerate() {
        if tile.len() as u64 != TILE_LEN {
            return Err(StoreError::Corrupt(format!(
                "hash tile 0/{} is {} bytes, not a full tile",
                n * TILES + i as u64,
                tile.len()
            )));
        }
        out.extend_from_slice(tile);
    }
    for tile in tiles {
        let hashes: Vec<Hash> = tile
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().expect("32-byte chunks")))
            .collect();
        let nodes = upper_nodes(&hashes).expect("a full tile has upper nodes");
        for node in nodes {
            out.extend_from_slice(&node.0);
        }
    }
    Ok(out)
}

/// How many packs are built (see the module comment): the first of the
/// `durable_size` tree's full level-1 tiles whose pack is missing.
pub(super) fn built_on_open(files: &Files, durable_size: u64) -> u64 {
    let (mut lo, mut hi) = (0, durable_size / LEAVES);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if files.path(Blob::Pack(mid)).exists() {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Builds pack `n` from `tile` (level-0 tile by index, full) and writes
/// it durably (see the module comment). On an error the pack may or may
/// not exist, complete either way; it is written again.
pub(super) fn write(
    files: &Files,
    n: u64,
    tile: impl Fn(u64) -> Result<Vec<u8>, StoreError>,
) -> Result<(), StoreError> {
    let tiles = (n * TILES..(n + 1) * TILES)
        .map(tile)
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = encode(n, &tiles)?;
    files.write_all(&[(Blob::Pack(n), &bytes)])
}

/// Problems in the packs a tree of `size` leaves may have (fsck): each
/// pack that exists must be [`LEN`] bytes and equal what its tiles give.
/// A missing pack is no damage (it is made again).
pub(super) fn check(
    files: &Files,
    size: u64,
    tile: impl Fn(u64) -> Result<Vec<u8>, StoreError>,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in 0..size / LEAVES {
        let blob = Blob::Pack(n);
        let path = files.path(blob);
        let found = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.push(format!("{}: {e}", blob.name()));
                continue;
            }
        };
        if found.len() as u64 != LEN {
            out.push(format!(
                "{} is torn: {} bytes, a pack has {LEN}",
                blob.name(),
                found.len()
            ));
            continue;
        }
        let tiles = match (n * TILES..(n + 1) * TILES)
            .map(&tile)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|tiles| encode(n, &tiles))
        {
            Ok(bytes) => bytes,
            Err(e) => {
                out.push(format!("{}: its tiles do not read: {e}", blob.name()));
                continue;
            }
        };
        if let Some(i) = (0..LEN as usize).find(|&i| found[i] != tiles[i]) {
            let tile = n * TILES + i as u64 / TILE_LEN;
            let what = match i as u64 >= TILES * TILE_LEN {
                true => format!(
                    "the upper nodes of hash tile 0/{}",
                    n * TILES + (i as u64 - TILES * TILE_LEN) / UPPER_LEN
                ),
                false => format!("hash tile 0/{tile}"),
            };
            out.push(format!("{} differs from {what} at byte {i}", blob.name()));
        }
    }
    out
}
