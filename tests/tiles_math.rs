//! C2SP tlog-tiles math against brute force, the path and bundle examples of
//! specs §4.1, §6.4 and §7.3, and strict rejection of malformed input.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use veritrail::merkle::{Hash, MemoryTree, NodeId, leaf_hash, root_from_leaf_hashes};
use veritrail::tiles::{
    BundleError, TILE_WIDTH, Tile, TilePath, TilePathProblem, decode_bundle, decode_bundle_for,
    encode_bundle, encode_tile_index, entry_bundle_for, new_tiles, node_from_tile, node_location,
    parse_tile_path, partial_width, tile_for_node, tile_hashes, tiles_for_size,
};

mod common;
use common::spec_leaves;

/// Brute-force tile state, grown one leaf at a time: for each tile level, the
/// number of complete level-8L nodes counted per tile index.
#[derive(Default, Clone)]
struct BruteTiles {
    size: u64,
    levels: Vec<BTreeMap<u64, u16>>,
}

impl BruteTiles {
    fn push_leaf(&mut self) {
        self.size += 1;
        // Every node whose last leaf is the new one is now complete; those at
        // levels 8L are hashes of tile level L.
        let mut level = 0u32;
        while level < 64 && self.size.is_multiple_of(1u64 << level) {
            if level.is_multiple_of(8) {
                let l = (level / 8) as usize;
                if self.levels.len() <= l {
                    self.levels.push(BTreeMap::new());
                }
                let node_index = (self.size >> level) - 1;
                *self.levels[l].entry(node_index / 256).or_default() += 1;
            }
            level += 1;
        }
    }

    fn tiles(&self) -> Vec<Tile> {
        let mut out = Vec::new();
        for (level, tiles) in self.levels.iter().enumerate() {
            for (&index, &width) in tiles {
                out.push(Tile {
                    level: level as u8,
                    index,
                    width,
                });
            }
        }
        out
    }

    fn partial_width(&self, level: usize) -> u16 {
        self.levels
            .get(level)
            .and_then(|t| t.values().next_back())
            .map_or(0, |&w| if w == 256 { 0 } else { w })
    }
}

#[test]
fn tiles_for_every_size_up_to_70000_match_brute_force() {
    let mut brute = BruteTiles::default();
    let mut previous: Vec<Tile> = Vec::new();
    for size in 0..=70_000u64 {
        if size > 0 {
            brute.push_leaf();
        }
        let tiles = tiles_for_size(size);
        let expected = brute.tiles();
        assert_eq!(tiles, expected, "size {size}");
        for level in 0..4 {
            assert_eq!(
                partial_width(level as u8, size),
                brute.partial_width(level),
                "partial width at level {level}, size {size}"
            );
        }
        // Growing by one leaf rewrites exactly the tiles that changed.
        let old: BTreeSet<Tile> = previous.iter().copied().collect();
        let changed: Vec<Tile> = tiles.iter().copied().filter(|t| !old.contains(t)).collect();
        assert_eq!(
            new_tiles(size.saturating_sub(1), size),
            changed,
            "size {size}"
        );
        previous = tiles;
    }
    // The spec's example (specs §4.2): 70,000 leaves.
    let tiles = tiles_for_size(70_000);
    let level0: Vec<_> = tiles.iter().filter(|t| t.level == 0).collect();
    assert_eq!(level0.len(), 274);
    assert_eq!(level0.iter().filter(|t| t.is_full()).count(), 273);
    assert_eq!(partial_width(0, 70_000), 112);
    assert_eq!(partial_width(1, 70_000), 17);
    assert_eq!(partial_width(2, 70_000), 1);
    assert_eq!(partial_width(3, 70_000), 0);
    assert_eq!(
        tiles_for_size(256),
        vec![
            Tile::full(0, 0),
            Tile {
                level: 1,
                index: 0,
                width: 1
            }
        ]
    );
    assert!(tiles_for_size(0).is_empty());
}

proptest! {
    #[test]
    fn new_tiles_is_the_difference_of_tile_sets(a in 0u64..200_000, b in 0u64..200_000) {
        let (old, new) = (a.min(b), a.max(b));
        let before: BTreeSet<Tile> = tiles_for_size(old).into_iter().collect();
        let expected: Vec<Tile> =
            tiles_for_size(new).into_iter().filter(|t| !before.contains(t)).collect();
        prop_assert_eq!(new_tiles(old, new), expected);
        prop_assert!(new_tiles(new, old).is_empty() || new == old);
    }
}

#[test]
fn partial_width_of_huge_sizes() {
    assert_eq!(partial_width(7, u64::MAX), 255);
    assert_eq!(partial_width(8, u64::MAX), 0);
    assert_eq!(partial_width(255, u64::MAX), 0);
    assert_eq!(partial_width(0, u64::MAX), 255);
    // The last possible leaf completes no node above it; leaf 2^63 - 1
    // completes one hash at every tile level up to 7.
    assert_eq!(new_tiles(u64::MAX - 1, u64::MAX).len(), 1);
    let grown = new_tiles((1 << 63) - 1, 1 << 63);
    assert_eq!(grown.len(), 8);
    assert_eq!(
        grown[7],
        Tile {
            level: 7,
            index: 0,
            width: 128
        }
    );
}

/// Tile contents for a log of `size` leaves, read from an in-memory tree.
fn tile_data(tree: &MemoryTree, t: &Tile) -> Vec<u8> {
    (0..u64::from(t.width))
        .flat_map(|i| {
            let n = NodeId::new(8 * t.level, t.index * TILE_WIDTH + i);
            tree.node(n).unwrap().0
        })
        .collect()
}

#[test]
fn node_location_matches_brute_force_and_tile_contents() {
    let tree: MemoryTree = (0..70_000u64)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect();
    for size in [
        1u64, 2, 255, 256, 257, 511, 4_096, 65_535, 65_536, 65_537, 70_000,
    ] {
        // Brute force from the tiles' side: each aligned power-of-two run of
        // hashes in a tile is one node.
        let mut expected = BTreeMap::new();
        let mut data = BTreeMap::new();
        for t in tiles_for_size(size) {
            for r in 0..8u32 {
                let count = 1u64 << r;
                let mut offset = 0;
                while offset + count <= u64::from(t.width) {
                    let node =
                        NodeId::new(8 * t.level + r as u8, (t.index * TILE_WIDTH + offset) >> r);
                    let prev =
                        expected.insert(node, (t.level, t.index, offset as usize, count as usize));
                    assert!(prev.is_none(), "{node:?} in two tiles");
                    offset += count;
                }
            }
            data.insert(
                (t.level, t.index),
                tile_hashes(&t, &tile_data(&tree, &t)).unwrap(),
            );
        }
        // Every complete node of the tree, and only those, is in a tile.
        let mut complete = 0;
        for level in 0..64u8 {
            for index in 0..(size >> level) {
                let node = NodeId::new(level, index);
                let loc = node_location(node);
                assert_eq!(Some(&loc), expected.get(&node), "{node:?} at size {size}");
                let (tile, offset, count) = tile_for_node(node, size).unwrap();
                assert_eq!((tile.level, tile.index, offset, count), loc);
                let hashes = &data[&(tile.level, tile.index)];
                assert_eq!(hashes.len(), usize::from(tile.width));
                assert_eq!(
                    node_from_tile(hashes, offset, count),
                    tree.node(node),
                    "{node:?} from its tile"
                );
                complete += 1;
            }
        }
        assert_eq!(complete, expected.len(), "size {size}");
        // Nodes that are not complete have no tile.
        assert_eq!(tile_for_node(NodeId::leaf(size), size), None);
        assert_eq!(tile_for_node(NodeId::new(63, 1), size), None);
    }
}

#[test]
fn spec_path_examples_round_trip() {
    // specs §4.1 (tessera paths_test.go) and §7.3.
    let examples = [
        ("tile/0/000", TilePath::Hash(Tile::full(0, 0))),
        (
            "tile/0/000.p/255",
            TilePath::Hash(Tile {
                level: 0,
                index: 0,
                width: 255,
            }),
        ),
        ("tile/1/000", TilePath::Hash(Tile::full(1, 0))),
        ("tile/15/x455/667", TilePath::Hash(Tile::full(15, 455_667))),
        (
            "tile/15/x123/x456/789.p/41",
            TilePath::Hash(Tile {
                level: 15,
                index: 123_456_789,
                width: 41,
            }),
        ),
        (
            "tile/entries/000.p/8",
            TilePath::Entries(Tile {
                level: 0,
                index: 0,
                width: 8,
            }),
        ),
        (
            "tile/entries/255.p/253",
            TilePath::Entries(Tile {
                level: 0,
                index: 255,
                width: 253,
            }),
        ),
        (
            "tile/0/x001/x234/067.p/112",
            TilePath::Hash(Tile {
                level: 0,
                index: 1_234_067,
                width: 112,
            }),
        ),
        (
            "tile/2/000.p/1",
            TilePath::Hash(Tile {
                level: 2,
                index: 0,
                width: 1,
            }),
        ),
        ("tile/63/x001/000", TilePath::Hash(Tile::full(63, 1000))),
        (
            "tile/0/x018/x446/x744/x073/x709/x551/615",
            TilePath::Hash(Tile::full(0, u64::MAX)),
        ),
        (
            "tile/entries/x009/999",
            TilePath::Entries(Tile::full(0, 9_999)),
        ),
    ];
    for (path, want) in examples {
        let parsed = parse_tile_path(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(parsed, want, "{path}");
        assert_eq!(parsed.path(), path);
    }
    assert_eq!(encode_tile_index(455_667), "x455/667");
    // Entry bundles for a leaf (specs §4.1).
    let (t, i) = entry_bundle_for(251, 255).unwrap();
    assert_eq!(
        (t.entries_path().as_str(), i),
        ("tile/entries/000.p/255", 251)
    );
    let (t, i) = entry_bundle_for(256, 257).unwrap();
    assert_eq!((t.entries_path().as_str(), i), ("tile/entries/001.p/1", 0));
    let (t, _) = entry_bundle_for(0, 1000).unwrap();
    assert_eq!(t.entries_path(), "tile/entries/000");
    assert_eq!(entry_bundle_for(5, 5), None);
}

#[test]
fn malformed_paths_are_rejected() {
    let bad = [
        "",
        "tile",
        "tile/",
        "tile/0",
        "tile/0/",
        "/tile/0/000",
        "tile/0/000/",
        "tile/0/000.p/8/",
        "tile//000",
        "tile/0//000",
        "tile/0/x001//000",
        "TILE/0/000",
        "tiles/0/000",
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/255/000",
        "tile/99999999999999999999999/000",
        "tile/-1/000",
        "tile/+1/000",
        "tile/ 1/000",
        "tile/0/+00",
        "tile/0/-00",
        "tile/0/00",
        "tile/0/0",
        "tile/0/0000",
        "tile/0/00a",
        "tile/0/x000/001",
        "tile/0/x000/x001/000",
        "tile/0/x001",
        "tile/0/001/002",
        "tile/0/x1/000",
        "tile/0/x0001/000",
        "tile/0/X001/000",
        "tile/0/y001/000",
        "tile/0/xx01/000",
        "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x100/x000/x000/x000/x000/x000/000",
        "tile/0/x999/x999/x999/x999/x999/x999/999",
        "tile/entries/x009/x999",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/300",
        "tile/0/000.p/08",
        "tile/0/000.p/+8",
        "tile/0/000.p/-8",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.P/8",
        "tile/0/000.p/1.p/1",
        "tile/0/000.p/8x",
        "tile/0/000.p/1e2",
        "tile/0/x001.p/1/000",
        "tile/0/../000",
        "tile/../0/000",
        "tile/0/x001/../000",
        "tile/0/./000",
        "tile/./0/000",
        "tile/entries/000.p/256",
        "tile/entries/000.p/0",
        "tile/entries/x000/000",
        "tile/entries/",
        "tile/entries",
        "tile/entry/000",
        "tile/ENTRIES/000",
        "tile/data/000",
        "tile/8/0/000",
        "tile/8/data/000",
        "tile/8/0/000.p/70",
        "tile/0/000 ",
        " tile/0/000",
        "tile/0/000\n",
        "tile/0/000\0",
        "tile\\0\\000",
        "tile/0/000?x=1",
        "tile/0/000%2F",
        "tile/0/\u{661}\u{662}\u{663}",
        "tile/\u{661}/000",
    ];
    for path in bad {
        assert!(
            parse_tile_path(path).is_err(),
            "accepted malformed path {path:?}: {:?}",
            parse_tile_path(path)
        );
    }
    let problem = |p: &str| parse_tile_path(p).unwrap_err().problem;
    assert_eq!(problem("tile/64/000"), TilePathProblem::LevelTooLarge);
    assert_eq!(problem("tile/01/000"), TilePathProblem::BadLevel);
    assert_eq!(problem("tile/0/000.p/256"), TilePathProblem::BadWidth);
    assert_eq!(
        problem("tile/0/x000/001"),
        TilePathProblem::NonCanonicalIndex
    );
    assert_eq!(
        problem("tile/0/x018/x446/x744/x073/x709/x551/616"),
        TilePathProblem::IndexOverflow
    );
    assert_eq!(problem("nope"), TilePathProblem::MissingPrefix);
    assert_eq!(problem(&"tile/0/".repeat(1000)), TilePathProblem::TooLong);
    let msg = parse_tile_path("tile/0/000.p/0").unwrap_err().to_string();
    assert!(
        msg.contains("tile/0/000.p/0") && msg.contains("1 to 255"),
        "{msg}"
    );
}

proptest! {
    #[test]
    fn paths_round_trip(level in 0u8..=63, index in any::<u64>(), width in 1u16..=256, small in 0u64..5000) {
        for index in [index, small] {
            let t = Tile { level, index, width };
            prop_assert_eq!(parse_tile_path(&t.hash_path()), Ok(TilePath::Hash(t)));
            let e = Tile { level: 0, ..t };
            prop_assert_eq!(parse_tile_path(&e.entries_path()), Ok(TilePath::Entries(e)));
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics_and_accepts_only_canonical(s in "tile/[0-9a-z./+x-]{0,40}") {
        if let Ok(p) = parse_tile_path(&s) {
            prop_assert_eq!(p.path(), s);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(entries) = decode_bundle(&data) {
            prop_assert_eq!(encode_bundle(&entries).unwrap(), data);
        }
    }

    #[test]
    fn bundles_round_trip(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..=256)) {
        let data = encode_bundle(&entries).unwrap();
        prop_assert_eq!(decode_bundle(&data).unwrap(), entries);
    }
}

#[test]
fn spec_bundle_and_tile_for_eight_leaves() {
    // specs §6.4: tile/entries/000.p/8.
    let bundle = hex::decode(
        "00000001000001100002202100023031000440414243000850515253545556570010606162636465666768696a6b6c6d6e6f",
    )
    .unwrap();
    assert_eq!(bundle.len(), 50);
    let path = parse_tile_path("tile/entries/000.p/8").unwrap();
    let TilePath::Entries(tile) = path else {
        panic!("not an entry bundle: {path:?}")
    };
    let entries = decode_bundle_for(&tile, &bundle).unwrap();
    assert_eq!(entries, spec_leaves());
    assert_eq!(encode_bundle(&entries).unwrap(), bundle);

    // tile/0/000.p/8: the eight leaf hashes; hashing it as a tile gives the
    // size-8 root.
    let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let data: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)),
        "aea2f1bbb5140fd5f8eacb503fdf54c00c3d860c72588e40233addd416bc8f10"
    );
    let TilePath::Hash(tile) = parse_tile_path("tile/0/000.p/8").unwrap() else {
        panic!("not a hash tile")
    };
    let from_tile = tile_hashes(&tile, &data).unwrap();
    assert_eq!(from_tile, hashes);
    let root =
        Hash::from_hex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328").unwrap();
    assert_eq!(node_from_tile(&from_tile, 0, 8), Some(root));
    assert_eq!(root_from_leaf_hashes(&from_tile), root);
    assert!(tile_hashes(&tile, &data[..255]).is_err());
    assert!(tile_hashes(&Tile::full(0, 0), &data).is_err());
    assert_eq!(node_from_tile(&from_tile, 4, 8), None);
    assert_eq!(node_from_tile(&from_tile, 0, 3), None);
}

#[test]
fn malformed_bundles_are_rejected() {
    let good = encode_bundle(&[b"ab".as_slice(), b"".as_slice(), b"xyz".as_slice()]).unwrap();
    assert_eq!(good, b"\x00\x02ab\x00\x00\x00\x03xyz");
    // Trailing bytes: a lone byte, a length prefix with nothing after it, a
    // short body.
    for extra in [&b"\x00"[..], b"\x00\x01", b"\x00\x05abc"] {
        let mut data = good.clone();
        data.extend_from_slice(extra);
        assert!(
            matches!(
                decode_bundle(&data),
                Err(BundleError::Truncated {
                    index: 3,
                    offset: 11,
                    ..
                })
            ),
            "{extra:?}: {:?}",
            decode_bundle(&data)
        );
    }
    assert!(matches!(
        decode_bundle(&good[..good.len() - 1]),
        Err(BundleError::Truncated { index: 2, .. })
    ));
    assert_eq!(
        decode_bundle(b""),
        Err(BundleError::WrongEntryCount { count: 0 })
    );
    let many = vec![Vec::<u8>::new(); 257];
    assert_eq!(
        encode_bundle(&many),
        Err(BundleError::WrongEntryCount { count: 257 })
    );
    assert_eq!(
        decode_bundle(&vec![0u8; 2 * 257]),
        Err(BundleError::WrongEntryCount { count: 257 })
    );
    assert_eq!(decode_bundle(&vec![0u8; 2 * 256]).unwrap().len(), 256);
    let none: [&[u8]; 0] = [];
    assert_eq!(
        encode_bundle(&none),
        Err(BundleError::WrongEntryCount { count: 0 })
    );

    // Entry size limit: 65535 bytes fits, 65536 does not.
    let max = vec![7u8; 65_535];
    let data = encode_bundle(&[&max]).unwrap();
    assert_eq!(&data[..2], &[0xff, 0xff]);
    assert_eq!(decode_bundle(&data).unwrap(), vec![max]);
    let too_big = vec![7u8; 65_536];
    assert_eq!(
        encode_bundle(&[b"ok".to_vec(), too_big]),
        Err(BundleError::EntryTooLarge {
            index: 1,
            len: 65_536
        })
    );
    // Width must match the bundle's path.
    let tile = Tile {
        level: 0,
        index: 0,
        width: 4,
    };
    assert_eq!(
        decode_bundle_for(&tile, &good),
        Err(BundleError::WidthMismatch {
            expected: 4,
            got: 3
        })
    );
}
