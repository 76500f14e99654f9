//! C2SP tlog-tiles math (specs §4): which hash tiles and entry bundles a log of
//! a given size serves, where a tree node lives in them, their paths, and the
//! entry-bundle byte format.
//!
//! Pure: no I/O. Invariants: tiles have height 8 (256 hashes when full); a
//! full tile never changes once the tree has grown past it; paths are emitted
//! and accepted in canonical form only (`parse_tile_path(p)?.path() == p`).

use crate::merkle::{HASH_SIZE, Hash, NodeId, root_from_leaf_hashes};

/// Levels of the Merkle tree one tile spans.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile (or bundle): 2^TILE_HEIGHT.
pub const TILE_WIDTH: u64 = 256;
/// Largest tile level a path may carry (specs §4.1).
pub const MAX_TILE_LEVEL: u8 = 63;
/// Largest entry an entry bundle can hold (uint16 length prefix, specs §4.3).
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;

const FULL_WIDTH: u16 = TILE_WIDTH as u16;

/// A hash tile or entry bundle: level (ignored for bundles), index N, width
/// 1..=256 (256 = full).
///
/// Hash tile `(L, N)` holds the level-`8L` hashes `N*256 ..N*256 + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Tile level L: its hashes are tree nodes of level 8L.
    pub level: u8,
    /// Tile index N within its level.
    pub index: u64,
    /// Number of hashes (or entries), 1..=256; 256 means full.
    pub width: u16,
}

impl Tile {
    /// The full tile at `level` and `index`.
    pub const fn full(level: u8, index: u64) -> Tile {
        Tile {
            level,
            index,
            width: FULL_WIDTH,
        }
    }

    /// True for a full tile (256 hashes or entries).
    pub fn is_full(&self) -> bool {
        self.width == FULL_WIDTH
    }

    /// `"tile/<L>/<N>[.p/<W>]"` (specs §4.1). `width` must be 1..=256.
    pub fn hash_path(&self) -> String {
        format!(
            "tile/{}/{}{}",
            self.level,
            encode_tile_index(self.index),
            self.width_suffix()
        )
    }

    /// `"tile/entries/<N>[.p/<W>]"` (specs §4.1); `level` is ignored.
    pub fn entries_path(&self) -> String {
        format!(
            "tile/entries/{}{}",
            encode_tile_index(self.index),
            self.width_suffix()
        )
    }

    fn width_suffix(&self) -> String {
        if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        }
    }

    /// Byte length of the hash tile's contents: 32 bytes per hash.
    pub fn hash_data_len(&self) -> usize {
        usize::from(self.width) * HASH_SIZE
    }
}

/// A parsed tile path: a hash tile or an entry bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`.
    Hash(Tile),
    /// `tile/entries/<N>[.p/<W>]`; the tile's level is 0.
    Entries(Tile),
}

impl TilePath {
    /// The tile named.
    pub fn tile(&self) -> Tile {
        match self {
            TilePath::Hash(t) | TilePath::Entries(t) => *t,
        }
    }

    /// The canonical path, without a leading `/`.
    pub fn path(&self) -> String {
        match self {
            TilePath::Hash(t) => t.hash_path(),
            TilePath::Entries(t) => t.entries_path(),
        }
    }
}

/// What is wrong with a tile path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TilePathProblem {
    /// The path is far longer than any tile path.
    #[error("it is longer than any tile path")]
    TooLong,
    /// No `tile/` prefix.
    #[error("it must start with \"tile/\"")]
    MissingPrefix,
    /// The level is neither `entries` nor canonical decimal.
    #[error("the level must be \"entries\" or a decimal number without leading zeros")]
    BadLevel,
    /// The level is above 63.
    #[error("the level must be at most 63")]
    LevelTooLarge,
    /// The index is not `x`-prefixed three-digit groups ending in a bare group.
    #[error(
        "the tile index must be three-digit groups, all but the last prefixed with 'x' (e.g. x001/x234/067)"
    )]
    BadIndex,
    /// The index starts with a zero group (`x000/...`).
    #[error("the tile index has a leading zero group")]
    NonCanonicalIndex,
    /// The index does not fit in 64 bits.
    #[error("the tile index does not fit in 64 bits")]
    IndexOverflow,
    /// The partial width is not canonical decimal in 1..=255.
    #[error("the partial width must be a decimal number from 1 to 255 without leading zeros")]
    BadWidth,
}

/// A tile path that [`parse_tile_path`] rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tile path {path:?}: {problem}")]
pub struct TilePathError {
    /// The path (cut to its first 100 characters).
    pub path: String,
    /// What is wrong with it.
    pub problem: TilePathProblem,
}

/// Longest canonical path: "tile/entries/" or "tile/63/", seven index groups
/// (u64::MAX has 20 digits), ".p/255".
const MAX_PATH_LEN: usize = 13 + 7 * 5 + 6;
/// Most index groups a u64 needs.
const MAX_INDEX_GROUPS: usize = 7;

/// Strict parse of a path without leading '/', e.g.
/// `"tile/0/x001/x234/067.p/112"` or `"tile/entries/000.p/8"` (specs §4.1).
///
/// Only canonical paths are accepted: no leading zeros, no empty or extra
/// groups, no `+`/`-` signs, no trailing slash, L at most 63, W in 1..=255,
/// N within 64 bits.
pub fn parse_tile_path(path: &str) -> Result<TilePath, TilePathError> {
    let fail = |problem| TilePathError {
        path: path.chars().take(100).collect(),
        problem,
    };
    if path.len() > MAX_PATH_LEN {
        return Err(fail(TilePathProblem::TooLong));
    }
    let rest = path
        .strip_prefix("tile/")
        .ok_or_else(|| fail(TilePathProblem::MissingPrefix))?;
    let (level_part, rest) = rest
        .split_once('/')
        .ok_or_else(|| fail(TilePathProblem::BadLevel))?;
    let level = if level_part == "entries" {
        None
    } else {
        let l =
            parse_canonical_decimal(level_part).ok_or_else(|| fail(TilePathProblem::BadLevel))?;
        match u8::try_from(l) {
            Ok(l) if l <= MAX_TILE_LEVEL => Some(l),
            _ => return Err(fail(TilePathProblem::LevelTooLarge)),
        }
    };
    let (index_part, width) = match rest.split_once(".p/") {
        None => (rest, FULL_WIDTH),
        Some((index_part, w)) => {
            let w = parse_canonical_decimal(w).ok_or_else(|| fail(TilePathProblem::BadWidth))?;
            match u16::try_from(w) {
                Ok(w) if (1..FULL_WIDTH).contains(&w) => (index_part, w),
                _ => return Err(fail(TilePathProblem::BadWidth)),
            }
        }
    };
    let index = parse_tile_index(index_part).map_err(fail)?;
    let tile = Tile {
        level: level.unwrap_or(0),
        index,
        width,
    };
    let parsed = match level {
        Some(_) => TilePath::Hash(tile),
        None => TilePath::Entries(tile),
    };
    // Belt and braces: the grammar above admits only canonical forms.
    if parsed.path() != path {
        return Err(fail(TilePathProblem::NonCanonicalIndex));
    }
    Ok(parsed)
}

/// ASCII digits only, no leading zero unless the number is "0", at most 20
/// digits and within u64.
fn parse_canonical_decimal(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    s.parse().ok()
}

fn parse_three_digits(g: &[u8]) -> Option<u64> {
    match g {
        [a, b, c] if g.iter().all(u8::is_ascii_digit) => {
            Some(u64::from(a - b'0') * 100 + u64::from(b - b'0') * 10 + u64::from(c - b'0'))
        }
        _ => None,
    }
}

/// Parses `x001/x234/067` (specs §4.1).
fn parse_tile_index(s: &str) -> Result<u64, TilePathProblem> {
    let groups: Vec<&str> = s.split('/').collect();
    if groups.len() > MAX_INDEX_GROUPS {
        return Err(TilePathProblem::IndexOverflow);
    }
    let (last, leading) = groups.split_last().ok_or(TilePathProblem::BadIndex)?;
    let mut n: u64 = 0;
    for (i, g) in leading.iter().enumerate() {
        let digits = g.strip_prefix('x').ok_or(TilePathProblem::BadIndex)?;
        let v = parse_three_digits(digits.as_bytes()).ok_or(TilePathProblem::BadIndex)?;
        if i == 0 && v == 0 {
            return Err(TilePathProblem::NonCanonicalIndex);
        }
        n = n * 1000 + v; // at most 6 groups here: below 10^18, no overflow
    }
    let v = parse_three_digits(last.as_bytes()).ok_or(TilePathProblem::BadIndex)?;
    n.checked_mul(1000)
        .and_then(|n| n.checked_add(v))
        .ok_or(TilePathProblem::IndexOverflow)
}

/// `1234067 -> "x001/x234/067"`: zero-padded three-digit groups, most
/// significant first, all but the last prefixed with `x` (specs §4.1).
pub fn encode_tile_index(n: u64) -> String {
    let mut groups = Vec::with_capacity(MAX_INDEX_GROUPS);
    let mut n = n;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5);
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

/// Number of level-`8*level` hashes a tree of `size` leaves has complete.
fn hashes_at_tile_level(level: u8, size: u64) -> u64 {
    size.checked_shr(u32::from(TILE_HEIGHT) * u32::from(level))
        .unwrap_or(0)
}

/// Width of the rightmost tile at `level` for tree `size` (0 = none):
/// `(size >> 8*level) % 256` (specs §4.2).
pub fn partial_width(level: u8, size: u64) -> u16 {
    // The remainder is below 256.
    (hashes_at_tile_level(level, size) % TILE_WIDTH) as u16
}

/// Every hash tile (full and the partial one, per level) that a log of `size`
/// serves, level by level, in index order (specs §4.2). O(size / 256) tiles.
pub fn tiles_for_size(size: u64) -> Vec<Tile> {
    new_tiles(0, size)
}

/// The hash tiles that differ between a log of `old_size` and one of
/// `new_size` leaves: those a log writes when it grows (the tiles of
/// `tiles_for_size(new_size)` that `tiles_for_size(old_size)` lacks). Empty
/// when `new_size <= old_size`.
pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    for level in 0..=MAX_TILE_LEVEL {
        let old_n = hashes_at_tile_level(level, old_size);
        let new_n = hashes_at_tile_level(level, new_size);
        if new_n <= old_n {
            // Also covers new_n == 0: no level above can have hashes either.
            if new_n == 0 {
                break;
            }
            continue;
        }
        // The first tile not already full at the old size, through the last.
        for index in old_n / TILE_WIDTH..=(new_n - 1) / TILE_WIDTH {
            let start = index * TILE_WIDTH;
            let width = (new_n - start).min(TILE_WIDTH) as u16;
            out.push(Tile {
                level,
                index,
                width,
            });
        }
    }
    out
}

/// Where node `n` lives: the tile at level `n.level / 8`, its index, the
/// offset of the node's first level-(8L) hash within the tile, and how many
/// hashes (2^(n.level % 8)) to fold into the node (specs §4.5 step 2).
pub fn node_location(n: NodeId) -> (u8, u64, usize, usize) {
    let tile_level = n.level / TILE_HEIGHT;
    let r = u32::from(n.level % TILE_HEIGHT);
    // First level-8L hash q = n.index << r; tile = q / 256, offset = q % 256,
    // computed without forming q (which may not fit in u64).
    let tile_index = n.index >> (u32::from(TILE_HEIGHT) - r);
    let offset = ((n.index << r) % TILE_WIDTH) as usize;
    (tile_level, tile_index, offset, 1usize << r)
}

/// The tile (with its width at tree `size`) holding node `n`, the node's
/// offset in it and the count of hashes to fold; `None` when the node is not
/// complete in a tree of `size` leaves.
pub fn tile_for_node(n: NodeId, size: u64) -> Option<(Tile, usize, usize)> {
    let range = n.leaf_range()?;
    if range.end > size {
        return None;
    }
    let (level, index, offset, count) = node_location(n);
    let hashes = hashes_at_tile_level(level, size);
    let start = index.checked_mul(TILE_WIDTH)?;
    let width = hashes.checked_sub(start)?.min(TILE_WIDTH) as u16;
    Some((
        Tile {
            level,
            index,
            width,
        },
        offset,
        count,
    ))
}

/// The entry bundle (with its width at tree `size`) holding leaf `index` and
/// the leaf's position in it; `None` when `index >= size`.
pub fn entry_bundle_for(index: u64, size: u64) -> Option<(Tile, usize)> {
    if index >= size {
        return None;
    }
    let n = index / TILE_WIDTH;
    let width = (size - n * TILE_WIDTH).min(TILE_WIDTH) as u16;
    Some((
        Tile::full(0, n).with_width(width),
        (index % TILE_WIDTH) as usize,
    ))
}

impl Tile {
    const fn with_width(self, width: u16) -> Tile {
        Tile { width, ..self }
    }
}

/// Contents of a hash tile that do not match the tile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tile data is {got} bytes; a tile of width {width} is {expected} bytes")]
pub struct TileDataError {
    /// The tile's width.
    pub width: u16,
    /// `32 * width`.
    pub expected: usize,
    /// The length given.
    pub got: usize,
}

/// Splits hash tile contents into its hashes, checking the length is exactly
/// `32 * tile.width` (specs §4.2: raw hashes, no header).
pub fn tile_hashes(tile: &Tile, data: &[u8]) -> Result<Vec<Hash>, TileDataError> {
    let expected = tile.hash_data_len();
    if data.len() != expected {
        return Err(TileDataError {
            width: tile.width,
            expected,
            got: data.len(),
        });
    }
    Ok(data
        .chunks_exact(HASH_SIZE)
        .map(|c| {
            let mut h = [0u8; HASH_SIZE];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect())
}

/// The node made of `count` (a power of two) consecutive tile hashes from
/// `offset`, as located by [`node_location`]; `None` when they are not all in
/// `hashes` or `count` is not a power of two.
pub fn node_from_tile(hashes: &[Hash], offset: usize, count: usize) -> Option<Hash> {
    if !count.is_power_of_two() {
        return None;
    }
    let part = hashes.get(offset..offset.checked_add(count)?)?;
    Some(root_from_leaf_hashes(part))
}

/// The upper nodes of a full tile start at this height: its complete
/// subtrees of `2^UPPER_FROM_HEIGHT` hashes (16) and more, below the tile's
/// root. A proof keeps them per tile and folds the few hashes below them.
pub const UPPER_FROM_HEIGHT: u32 = 4;

/// How many upper nodes a full tile has: 16 + 8 + 4 + 2.
pub const UPPER_NODES: usize = (TILE_WIDTH as usize >> UPPER_FROM_HEIGHT) * 2 - 2;

/// Where the upper node over hashes `offset .. offset + count` lies among
/// a full tile's upper nodes (lowest height first, each height left to
/// right); `None` unless `count` is a power of two from
/// `2^UPPER_FROM_HEIGHT` to 128 and `offset` a multiple of it in the tile.
pub fn upper_node_position(offset: usize, count: usize) -> Option<usize> {
    let height = count.trailing_zeros();
    if !count.is_power_of_two()
        || !(UPPER_FROM_HEIGHT..u32::from(TILE_HEIGHT)).contains(&height)
        || !offset.is_multiple_of(count)
        || offset + count > TILE_WIDTH as usize
    {
        return None;
    }
    let start: usize = (UPPER_FROM_HEIGHT..height)
        .map(|h| TILE_WIDTH as usize >> h)
        .sum();
    Some(start + (offset >> height))
}

/// The upper nodes of a full tile's hashes (see [`upper_node_position`]),
/// hashed from them; `None` unless `hashes` is exactly a full tile.
pub fn upper_nodes(hashes: &[Hash]) -> Option<[Hash; UPPER_NODES]> {
    if hashes.len() != TILE_WIDTH as usize {
        return None;
    }
    let mut below: Vec<Hash> = hashes
        .chunks_exact(1 << UPPER_FROM_HEIGHT)
        .map(root_from_leaf_hashes)
        .collect();
    let mut nodes = [Hash([0; HASH_SIZE]); UPPER_NODES];
    let mut at = 0;
    while below.len() > 1 {
        nodes[at..at + below.len()].copy_from_slice(&below);
        at += below.len();
        below = below
            .chunks_exact(2)
            .map(|p| crate::merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    Some(nodes)
}

/// Why bytes are not an entry bundle, or entries cannot form one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// An entry is longer than a uint16 length can say.
    #[error("entry {index} is {len} bytes; a bundle entry is at most 65535 bytes")]
    EntryTooLarge {
        /// Position of the entry in the bundle.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// A bundle holds 1 to 256 entries.
    #[error("a bundle holds 1 to 256 entries, got {count}")]
    WrongEntryCount {
        /// How many entries were given or found (decoding stops counting at 257).
        count: usize,
    },
    /// The bytes end inside an entry or its length prefix.
    #[error(
        "bundle is truncated: entry {index} at byte {offset} needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// Position of the incomplete entry.
        index: usize,
        /// Byte offset where it starts.
        offset: usize,
        /// Bytes it needs from there (prefix and body).
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The bundle does not have the width its path says.
    #[error("bundle has {got} entries; its tile says {expected}")]
    WidthMismatch {
        /// The tile's width.
        expected: u16,
        /// Entries decoded.
        got: usize,
    },
}

/// Encodes entries as an entry bundle: each entry as a uint16 big-endian
/// length followed by its bytes (specs §4.3). 1..=256 entries of at most
/// 65535 bytes each.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, BundleError> {
    if entries.is_empty() || entries.len() > TILE_WIDTH as usize {
        return Err(BundleError::WrongEntryCount {
            count: entries.len(),
        });
    }
    let total: usize = entries.iter().map(|e| 2 + e.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for (index, e) in entries.iter().enumerate() {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| BundleError::EntryTooLarge {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle strictly: 1..=256 complete entries and not one
/// byte more (specs §4.3).
pub fn decode_bundle(data: &[u8]) -> Result<Vec<Vec<u8>>, BundleError> {
    let ends = bundle_entry_ends(data)?;
    let mut start = 0;
    Ok(ends
        .iter()
        .map(|&end| {
            let entry = data[start + 2..end].to_vec();
            start = end;
            entry
        })
        .collect())
}

/// Checks an entry bundle as strictly as [`decode_bundle`] and returns
/// where each entry (its length prefix included) ends, so that the first
/// `w` entries are `data[..ends[w - 1]]` without copying any of them.
pub fn bundle_entry_ends(data: &[u8]) -> Result<Vec<usize>, BundleError> {
    let mut ends = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let index = ends.len();
        if index == TILE_WIDTH as usize {
            return Err(BundleError::WrongEntryCount { count: index + 1 });
        }
        let offset = data.len() - rest.len();
        let truncated = |needed| BundleError::Truncated {
            index,
            offset,
            needed,
            available: rest.len(),
        };
        let (len, body) = match rest {
            [hi, lo, body @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), body),
            _ => return Err(truncated(2)),
        };
        if body.len() < len {
            return Err(truncated(2 + len));
        }
        ends.push(offset + 2 + len);
        rest = &body[len..];
    }
    if ends.is_empty() {
        return Err(BundleError::WrongEntryCount { count: 0 });
    }
    Ok(ends)
}

/// [`decode_bundle`], and checks the entry count equals the tile's width.
pub fn decode_bundle_for(tile: &Tile, data: &[u8]) -> Result<Vec<Vec<u8>>, BundleError> {
    let entries = decode_bundle(data)?;
    if entries.len() != usize::from(tile.width) {
        return Err(BundleError::WidthMismatch {
            expected: tile.width,
            got: entries.len(),
        });
    }
    Ok(entries)
}

/// The right edge of a tree's hash tiles, built leaf by leaf as a log
/// builds them: the partial tile of every level. A tile that fills up is
/// handed out and its root moves one level up.
///
/// Invariant: `levels[l]` holds the `partial_width(l, size)` hashes of the
/// partial level-`l` tile (an empty level has none), so it answers for every
/// perfect subtree the tree root needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TileBuilder {
    /// Leaves appended.
    pub size: u64,
    /// `levels[l]`: the hashes of the partial tile at tile level `l`.
    pub levels: Vec<Vec<Hash>>,
}

/// A node that does not lie in a [`TileBuilder`]'s partial tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node {0:?} is not on the right edge of the tree")]
pub struct NotOnEdge(pub NodeId);

impl TileBuilder {
    /// Appends one leaf hash; returns the tiles that became full, lowest
    /// level first, with their hashes.
    pub fn append(&mut self, leaf: Hash) -> Vec<(Tile, Vec<Hash>)> {
        let index = self.size;
        self.size += 1;
        let mut full = Vec::new();
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            if self.levels[level].len() < usize::from(FULL_WIDTH) {
                break;
            }
            let hashes = std::mem::take(&mut self.levels[level]);
            hash = root_from_leaf_hashes(&hashes);
            let tile = Tile::full(level as u8, index >> (8 * (level as u32 + 1)));
            full.push((tile, hashes));
            level += 1;
        }
        full
    }

    /// The non-empty partial tiles of the current size.
    pub fn partials(&self) -> Vec<(Tile, &[Hash])> {
        self.levels
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(l, h)| {
                let tile = Tile {
                    level: l as u8,
                    index: self.size >> (8 * (l as u32 + 1)),
                    width: h.len() as u16,
                };
                (tile, h.as_slice())
            })
            .collect()
    }
}

/// The partial tiles answer for the perfect subtrees inside them, which are
/// exactly those the root of the tree (at its current size) needs.
impl crate::merkle::SubtreeSource for TileBuilder {
    type Error = NotOnEdge;

    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, NotOnEdge> {
        nodes
            .iter()
            .map(|node| {
                let (level, index, offset, count) = node_location(*node);
                let expected = self.size >> (8 * (u32::from(level) + 1));
                self.levels
                    .get(usize::from(level))
                    .filter(|_| index == expected)
                    .and_then(|h| h.get(offset..offset + count))
                    .map(root_from_leaf_hashes)
                    .ok_or(NotOnEdge(*node))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_nodes_are_the_subtrees_of_16_hashes_and_more_in_order() {
        let hashes: Vec<Hash> = (0u64..256)
            .map(|i| crate::merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let nodes = upper_nodes(&hashes).unwrap();
        let mut seen = 0;
        for count in [16, 32, 64, 128] {
            for offset in (0..256).step_by(count) {
                let at = upper_node_position(offset, count).unwrap();
                assert_eq!(
                    at, seen,
                    "{offset}+{count}: lowest height first, left to right"
                );
                assert_eq!(nodes[at], node_from_tile(&hashes, offset, count).unwrap());
                seen += 1;
            }
        }
        assert_eq!(seen, UPPER_NODES);
        for (offset, count) in [(0, 8), (0, 256), (8, 16), (0, 24), (240, 32)] {
            assert_eq!(upper_node_position(offset, count), None, "{offset}+{count}");
        }
        assert!(
            upper_nodes(&hashes[..255]).is_none(),
            "a partial tile has none"
        );
    }

    #[test]
    fn index_encoding_matches_spec_examples() {
        assert_eq!(encode_tile_index(0), "000");
        assert_eq!(encode_tile_index(5), "005");
        assert_eq!(encode_tile_index(1000), "x001/000");
        assert_eq!(encode_tile_index(1_234_067), "x001/x234/067");
        assert_eq!(encode_tile_index(123_456_789), "x123/x456/789");
        assert_eq!(
            encode_tile_index(1 << 63),
            "x009/x223/x372/x036/x854/x775/808"
        );
        assert_eq!(
            encode_tile_index(u64::MAX),
            "x018/x446/x744/x073/x709/x551/615"
        );
    }

    #[test]
    fn longest_paths_fit_the_length_cap() {
        let t = Tile {
            level: 63,
            index: u64::MAX,
            width: 255,
        };
        assert!(t.hash_path().len() <= MAX_PATH_LEN);
        assert!(t.entries_path().len() <= MAX_PATH_LEN);
        assert_eq!(parse_tile_path(&t.hash_path()), Ok(TilePath::Hash(t)));
    }

    #[test]
    fn node_location_examples() {
        // A leaf: tile 0/N, offset index % 256, one hash.
        assert_eq!(node_location(NodeId::leaf(1000)), (0, 3, 232, 1));
        // Level 3 node 5 = level-0 hashes 40..48 of tile 0/0.
        assert_eq!(node_location(NodeId::new(3, 5)), (0, 0, 40, 8));
        // Level 8 node 300 = hash 44 of tile 1/1.
        assert_eq!(node_location(NodeId::new(8, 300)), (1, 1, 44, 1));
        // No overflow for huge indices.
        assert_eq!(
            node_location(NodeId::new(7, u64::MAX)),
            (0, u64::MAX >> 1, 128, 128)
        );
    }
}
