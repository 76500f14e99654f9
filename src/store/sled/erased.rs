//! Erasure tombstones of single events packed by entry bundle and value:
//! one sled record per bundle of 256 leaves and distinct tombstone, not
//! one key per event.
//!
//! The contract keys an event's tombstone by its leaf index (8 bytes,
//! big-endian). Here the leaves of one bundle that share a tombstone live
//! under `X || bundle || SHA-256(tombstone)` as `mask(32) || tombstone`,
//! a bit per leaf of the bundle, with the record checksum after it. A
//! cleanup step writes one tombstone for every event it deletes, so it
//! writes one small record per bundle it touches, whatever the bundle
//! held before (other erasures' tombstones are other records): sled's
//! memory grows with the keys and bytes it writes. A leaf is in one
//! record at most.
//!
//! Beside them, `U || bundle` holds the union of the bundle's masks, the
//! leaves that have a packed tombstone, written with every change of the
//! bundle's records. A bundle gathers one record per erasure that touched
//! it, so over years of erasures it can hold hundreds: with the union, a
//! write reads only the record of its own tombstone (one key), unless the
//! leaf already has one, and a read of a leaf that has none reads one key.
//! A bundle without a union (written before it existed) is read whole
//! once and gets one.
//!
//! Every other key of the space (a subject's tombstone) stays one record
//! under `x || key`, and so do the per-leaf tombstones databases wrote
//! before this packing: they are read where they are, a write of the
//! same leaf moves it into a packed record, and a scan merges both in
//! key order. Callers serialise writes (the store's body lock), so a
//! read-modify-write never loses another's change.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{ERASED, backend, checksummed, index_key, verified};
use crate::store::{Record, ScanCursor, ScanPage, StoreError};
use crate::tiles::TILE_WIDTH;

const PACKED: u8 = b'X';
const UNION: u8 = b'U';
const MASK_LEN: usize = (TILE_WIDTH / 8) as usize;

type Mask = [u8; MASK_LEN];
/// A bundle's records: by tombstone digest, the leaves' mask and the tombstone.
type Groups = BTreeMap<[u8; 32], (Mask, Vec<u8>)>;

fn group_key(bundle: u64, digest: &[u8; 32]) -> Vec<u8> {
    [&index_key(PACKED, bundle)[..], digest].concat()
}

fn legacy_key(index: u64) -> [u8; 9] {
    index_key(ERASED, index)
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

fn bit(mask: &Mask, offset: u64) -> bool {
    mask[(offset / 8) as usize] & (1 << (offset % 8)) != 0
}

/// The leaf of a contract key of the space, if it names one (8 bytes).
pub fn leaf_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// One packed record, checked: its bundle, digest, mask and tombstone.
fn decode(k: &[u8], v: &[u8]) -> Result<(u64, [u8; 32], Mask, Vec<u8>), StoreError> {
    let corrupt =
        || StoreError::Corrupt(format!("tombstone record {} is malformed", hex::encode(k)));
    let bundle = k.get(1..9).and_then(leaf_of).ok_or_else(corrupt)?;
    let tag: [u8; 32] = k
        .get(9..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(corrupt)?;
    let value = verified(k, v)?;
    let mask: Mask = value
        .get(..MASK_LEN)
        .and_then(|m| m.try_into().ok())
        .ok_or_else(corrupt)?;
    let tombstone = value[MASK_LEN..].to_vec();
    if mask == [0; MASK_LEN] || digest(&tombstone) != tag {
        return Err(corrupt());
    }
    Ok((bundle, tag, mask, tombstone))
}

/// The packed records from bundle `first` on, in key order, as raw pairs.
fn records_from(
    tree: &sled::Tree,
    first: u64,
) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> {
    tree.range(index_key(PACKED, first).to_vec()..vec![PACKED + 1])
}

/// The union of `bundle`'s masks, if it has one.
fn read_union(tree: &sled::Tree, bundle: u64) -> Result<Option<Mask>, StoreError> {
    let k = index_key(UNION, bundle);
    tree.get(k)
        .map_err(backend)?
        .map(|v| decode_union(&k, &v).map(|(_, union)| union))
        .transpose()
}

/// One union record, checked: its bundle and mask.
fn decode_union(k: &[u8], v: &[u8]) -> Result<(u64, Mask), StoreError> {
    let corrupt =
        || StoreError::Corrupt(format!("tombstone summary {} is malformed", hex::encode(k)));
    let bundle = k.get(1..).and_then(leaf_of).ok_or_else(corrupt)?;
    let union = verified(k, v)?
        .as_slice()
        .try_into()
        .map_err(|_| corrupt())?;
    Ok((bundle, union))
}

/// The record of `bundle` for the tombstone of digest `tag`, if any.
fn read_group(
    tree: &sled::Tree,
    bundle: u64,
    tag: &[u8; 32],
) -> Result<Option<(Mask, Vec<u8>)>, StoreError> {
    let k = group_key(bundle, tag);
    let Some(v) = tree.get(&k).map_err(backend)? else {
        return Ok(None);
    };
    let (_, _, mask, tombstone) = decode(&k, &v)?;
    Ok(Some((mask, tombstone)))
}

fn union_of(groups: &Groups) -> Mask {
    let mut union = [0; MASK_LEN];
    for (mask, _) in groups.values() {
        for (u, m) in union.iter_mut().zip(mask) {
            *u |= m;
        }
    }
    union
}

fn read_groups(tree: &sled::Tree, bundle: u64) -> Result<Groups, StoreError> {
    let mut out = Groups::new();
    for item in
        tree.range(index_key(PACKED, bundle).to_vec()..index_key(PACKED, bundle + 1).to_vec())
    {
        let (k, v) = item.map_err(backend)?;
        let (_, tag, mask, tombstone) = decode(&k, &v)?;
        out.insert(tag, (mask, tombstone));
    }
    Ok(out)
}

/// The tombstone of leaf `index`: from its bundle's records, else from a
/// per-leaf record of an earlier database.
pub fn get(tree: &sled::Tree, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let (bundle, offset) = (index / TILE_WIDTH, index % TILE_WIDTH);
    if read_union(tree, bundle)?.is_none_or(|union| bit(&union, offset)) {
        for (mask, tombstone) in read_groups(tree, bundle)?.into_values() {
            if bit(&mask, offset) {
                return Ok(Some(tombstone));
            }
        }
    }
    let k = legacy_key(index);
    tree.get(k)
        .map_err(backend)?
        .map(|v| verified(&k, &v))
        .transpose()
}

/// Adds to `batch` the puts (`Some`) and deletions (`None`) of leaves'
/// tombstones, in the order given: the records of each bundle touched that
/// changed, and the removal of per-leaf records of an earlier database for
/// those leaves.
pub fn stage(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    changes: &[(u64, Option<&[u8]>)],
) -> Result<(), StoreError> {
    let mut bundles: BTreeMap<u64, Staged> = BTreeMap::new();
    for &(index, value) in changes {
        let bundle = index / TILE_WIDTH;
        let staged = match bundles.entry(bundle) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Staged::read(tree, bundle)?),
        };
        let offset = index % TILE_WIDTH;
        let (byte, flag) = ((offset / 8) as usize, 1u8 << (offset % 8));
        if staged.union[byte] & flag != 0 {
            // The leaf has a tombstone already: find its record.
            staged.read_all(tree, bundle)?;
            for (tag, (mask, _)) in staged.groups.iter_mut() {
                if mask[byte] & flag != 0 {
                    mask[byte] &= !flag;
                    staged.changed.push(*tag);
                }
            }
            staged.union[byte] &= !flag;
        }
        if let Some(v) = value {
            let tag = digest(v);
            if !staged.complete
                && !staged.groups.contains_key(&tag)
                && let Some(group) = read_group(tree, bundle, &tag)?
            {
                staged.groups.insert(tag, group);
            }
            staged
                .groups
                .entry(tag)
                .or_insert_with(|| ([0; MASK_LEN], v.to_vec()))
                .0[byte] |= flag;
            staged.union[byte] |= flag;
            staged.changed.push(tag);
        }
        // sled skips the removal of a key it does not hold.
        batch.remove(&legacy_key(index)[..]);
    }
    for (bundle, staged) in bundles {
        let Staged {
            groups,
            changed,
            union,
            ..
        } = staged;
        let k = index_key(UNION, bundle);
        if union == [0; MASK_LEN] {
            batch.remove(&k[..]);
        } else {
            batch.insert(&k[..], checksummed(&k, &union));
        }
        for tag in changed {
            let k = group_key(bundle, &tag);
            match groups.get(&tag) {
                Some((mask, tombstone)) if *mask != [0; MASK_LEN] => {
                    let value = [&mask[..], tombstone].concat();
                    batch.insert(k.clone(), checksummed(&k, &value));
                }
                _ => batch.remove(k),
            }
        }
    }
    Ok(())
}

/// What [`stage`] knows of a bundle: the records it read (all of them
/// once `complete`), those it changed, and the union of the masks.
struct Staged {
    groups: Groups,
    complete: bool,
    changed: Vec<[u8; 32]>,
    union: Mask,
}

impl Staged {
    /// The bundle's union; its records only when it has none (then all).
    fn read(tree: &sled::Tree, bundle: u64) -> Result<Staged, StoreError> {
        let mut staged = Staged {
            groups: Groups::new(),
            complete: false,
            changed: Vec::new(),
            union: [0; MASK_LEN],
        };
        match read_union(tree, bundle)? {
            Some(union) => staged.union = union,
            None => {
                staged.read_all(tree, bundle)?;
                staged.union = union_of(&staged.groups);
            }
        }
        Ok(staged)
    }

    /// Reads every record of the bundle, keeping those already changed.
    fn read_all(&mut self, tree: &sled::Tree, bundle: u64) -> Result<(), StoreError> {
        if !self.complete {
            for (tag, group) in read_groups(tree, bundle)? {
                self.groups.entry(tag).or_insert(group);
            }
            self.complete = true;
        }
        Ok(())
    }
}

/// Up to `limit` tombstones after `cursor` in key order: the packed
/// ones, as per-leaf records, merged with the space's own records
/// (`own`, the raw scan of `x || key` after the same cursor, at least
/// `limit` of them unless it ended).
pub fn scan(
    tree: &sled::Tree,
    cursor: &ScanCursor,
    limit: usize,
    own: Vec<Result<Record, StoreError>>,
) -> Result<ScanPage<Record>, StoreError> {
    let limit = limit.max(1);
    let after = cursor.key();
    // The first bundle holding a leaf key after the cursor: an 8-byte key
    // is after `after` iff it is at or after its first 8 bytes (padded).
    let first = after.map_or(0, |a| {
        let mut k = [0u8; 8];
        let n = a.len().min(8);
        k[..n].copy_from_slice(&a[..n]);
        u64::from_be_bytes(k) / TILE_WIDTH
    });
    let mut packed: Vec<Result<Record, StoreError>> = Vec::new();
    // The leaves of the bundle being read, until the next bundle starts.
    let mut bundle_leaves: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut current = None;
    let flush = |leaves: &mut BTreeMap<u64, Vec<u8>>, packed: &mut Vec<_>| {
        for (index, value) in std::mem::take(leaves) {
            let key = index.to_be_bytes().to_vec();
            if after.is_none_or(|a| key.as_slice() > a) {
                packed.push(Ok((key, value)));
            }
        }
    };
    for item in records_from(tree, first) {
        let (k, v) = item.map_err(backend)?;
        match decode(&k, &v) {
            Ok((bundle, _, mask, tombstone)) => {
                if current != Some(bundle) {
                    flush(&mut bundle_leaves, &mut packed);
                    if packed.len() >= limit {
                        break;
                    }
                    current = Some(bundle);
                }
                for offset in (0..TILE_WIDTH).filter(|o| bit(&mask, *o)) {
                    bundle_leaves.insert(bundle * TILE_WIDTH + offset, tombstone.clone());
                }
            }
            // A damaged record is one item.
            Err(e) => packed.push(Err(e)),
        }
    }
    flush(&mut bundle_leaves, &mut packed);
    // Merge by key; a leaf in both is the packed one (written later).
    let key_of = |r: &Result<Record, StoreError>| r.as_ref().ok().map(|(k, _)| k.clone());
    let mut items = Vec::with_capacity(limit);
    let (mut a, mut b) = (packed.into_iter().peekable(), own.into_iter().peekable());
    while items.len() < limit {
        let take_packed = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => match (key_of(x), key_of(y)) {
                (Some(x), Some(y)) if x == y => {
                    b.next();
                    true
                }
                (Some(x), Some(y)) => x < y,
                (None, _) => true,
                (_, None) => false,
            },
        };
        items.extend(if take_packed { a.next() } else { b.next() });
    }
    let next = if items.len() >= limit {
        items.iter().rev().find_map(key_of).map(ScanCursor::after)
    } else {
        None
    };
    Ok(ScanPage { items, next })
}

/// Problems in the packed tombstone records (fsck): each must verify,
/// name its tombstone's digest and hold a leaf, and no leaf may be in two;
/// each bundle's union must verify and equal its records' masks.
pub fn check(tree: &sled::Tree) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: Option<(u64, Mask)> = None;
    for item in records_from(tree, 0) {
        match item.map_err(backend).and_then(|(k, v)| decode(&k, &v)) {
            Ok((bundle, _, mask, _)) => {
                let mut union = match seen {
                    Some((b, m)) if b == bundle => m,
                    _ => [0; MASK_LEN],
                };
                if union.iter().zip(&mask).any(|(u, m)| u & m != 0) {
                    out.push(format!("a leaf of bundle {bundle} has two tombstones"));
                }
                for (u, m) in union.iter_mut().zip(&mask) {
                    *u |= m;
                }
                seen = Some((bundle, union));
            }
            Err(e) => out.push(e.to_string()),
        }
    }
    for item in tree.range(vec![UNION]..vec![UNION + 1]) {
        let union = item
            .map_err(backend)
            .and_then(|(k, v)| decode_union(&k, &v));
        let (bundle, union) = match union {
            Ok(u) => u,
            Err(e) => {
                out.push(e.to_string());
                continue;
            }
        };
        // A damaged record is named above.
        if let Ok(groups) = read_groups(tree, bundle)
            && union != union_of(&groups)
        {
            out.push(format!(
                "the summary of bundle {bundle}'s tombstones does not match its records"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_and_earlier_per_leaf_tombstones_read_and_scan_as_one_space() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        // An earlier database's per-leaf records, and a subject's.
        for (i, v) in [(5u64, "old5"), (300, "old300"), (301, "old301")] {
            let k = legacy_key(i);
            tree.insert(k, checksummed(&k, v.as_bytes())).unwrap();
        }
        let subject = [&[ERASED][..], b"subject/12345678"].concat();
        tree.insert(&subject, checksummed(&subject, b"subj"))
            .unwrap();
        let mut batch = sled::Batch::default();
        stage(
            &tree,
            &mut batch,
            &[
                (4, Some(b"new")),
                (6, Some(b"new")),
                (301, Some(b"new301")),
                (600, Some(b"gone")),
                (600, None),
                (7, Some(b"first")),
                (7, None),
            ],
        )
        .unwrap();
        tree.apply_batch(batch).unwrap();
        assert!(!tree.contains_key(legacy_key(301)).unwrap(), "moved");
        assert_eq!(get(&tree, 5).unwrap().unwrap(), b"old5");
        assert_eq!(get(&tree, 301).unwrap().unwrap(), b"new301");
        assert_eq!(get(&tree, 600).unwrap(), None);
        assert_eq!(get(&tree, 7).unwrap(), None);
        let own = |cursor: &ScanCursor, limit: usize| -> Vec<Result<Record, StoreError>> {
            let from = match cursor.key() {
                Some(k) => std::ops::Bound::Excluded([&[ERASED][..], k].concat()),
                None => std::ops::Bound::Included(vec![ERASED]),
            };
            tree.range::<Vec<u8>, _>((from, std::ops::Bound::Excluded(vec![ERASED + 1])))
                .take(limit)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    Ok((k[1..].to_vec(), verified(&k, &v)?))
                })
                .collect()
        };
        for limit in 1..7 {
            let mut seen = Vec::new();
            let mut cursor = Some(ScanCursor::start());
            while let Some(c) = cursor.take() {
                let page = scan(&tree, &c, limit, own(&c, limit)).unwrap();
                assert!(page.items.len() <= limit);
                seen.extend(page.items.into_iter().map(|r| r.unwrap()));
                cursor = page.next;
            }
            let keys: Vec<Vec<u8>> = seen.iter().map(|(k, _)| k.clone()).collect();
            let mut expected: Vec<Vec<u8>> = [4u64, 5, 6, 300, 301]
                .iter()
                .map(|i| i.to_be_bytes().to_vec())
                .collect();
            expected.push(b"subject/12345678".to_vec());
            assert_eq!(keys, expected, "pages of {limit}");
        }
        assert!(check(&tree).is_empty());
        // One record per bundle and tombstone: bundle 0's "new" for leaves
        // 4 and 6, bundle 1's "new301".
        assert_eq!(records_from(&tree, 0).count(), 2);
        let k = group_key(0, &digest(b"new"));
        let mut raw = tree.get(&k).unwrap().unwrap().to_vec();
        raw[3] ^= 1;
        tree.insert(&k, raw).unwrap();
        assert!(get(&tree, 4).is_err());
        assert_eq!(check(&tree).len(), 1);
    }

    fn apply(tree: &sled::Tree, changes: &[(u64, Option<&[u8]>)]) {
        let mut batch = sled::Batch::default();
        stage(tree, &mut batch, changes).unwrap();
        tree.apply_batch(batch).unwrap();
    }

    #[test]
    fn a_bundles_union_follows_its_records_through_many_erasures_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        // 200 erasures, each touching leaves of bundle 0, a record each.
        let tombstones: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("erasure {i}").into_bytes())
            .collect();
        for (i, t) in tombstones.iter().enumerate() {
            apply(&tree, &[(i as u64, Some(t)), (256 + i as u64, Some(t))]);
        }
        assert_eq!(records_from(&tree, 0).count(), 400);
        // A leaf erased again moves to the new tombstone's record; one
        // deleted leaves its record; a leaf with none reads none.
        apply(&tree, &[(3, Some(&tombstones[150])), (4, None)]);
        assert_eq!(get(&tree, 3).unwrap().unwrap(), tombstones[150]);
        assert_eq!(get(&tree, 150).unwrap().unwrap(), tombstones[150]);
        assert_eq!(get(&tree, 4).unwrap(), None);
        assert_eq!(get(&tree, 250).unwrap(), None);
        assert_eq!(get(&tree, 5).unwrap().unwrap(), tombstones[5]);
        assert!(check(&tree).is_empty(), "{:?}", check(&tree));
        assert_eq!(
            read_union(&tree, 0).unwrap(),
            Some(union_of(&read_groups(&tree, 0).unwrap()))
        );

        // A bundle written before unions existed is read whole on its
        // first change and gets one.
        tree.remove(index_key(UNION, 1)).unwrap();
        assert_eq!(get(&tree, 256 + 7).unwrap().unwrap(), tombstones[7]);
        apply(
            &tree,
            &[(256 + 7, Some(&tombstones[9])), (256 + 220, Some(b"late"))],
        );
        assert_eq!(get(&tree, 256 + 7).unwrap().unwrap(), tombstones[9]);
        assert_eq!(get(&tree, 256 + 220).unwrap().unwrap(), b"late");
        assert!(read_union(&tree, 1).unwrap().is_some());
        assert!(check(&tree).is_empty(), "{:?}", check(&tree));

        // Removing every leaf removes the union.
        let all: Vec<(u64, Option<&[u8]>)> = (0..256).map(|i| (i, None)).collect();
        apply(&tree, &all);
        assert_eq!(read_union(&tree, 0).unwrap(), None);
        assert_eq!(
            records_from(&tree, 0)
                .take_while(|r| r.as_ref().unwrap().0[1..9] == 0u64.to_be_bytes())
                .count(),
            0
        );

        // fsck names a union that disagrees with the records, or is damaged.
        let k = index_key(UNION, 1);
        tree.insert(k, checksummed(&k, &[0xff; MASK_LEN])).unwrap();
        assert_eq!(check(&tree).len(), 1, "{:?}", check(&tree));
        let mut raw = tree.get(k).unwrap().unwrap().to_vec();
        raw[0] ^= 1;
        tree.insert(k, raw).unwrap();
        assert_eq!(check(&tree).len(), 1);
        assert!(get(&tree, 256 + 7).is_err());
    }
}
