//! Erasure tombstones of single events packed by entry bundle: one sled
//! record per bundle of 256 leaves that holds any, not one key per event.
//!
//! The contract keys an event's tombstone by its leaf index (8 bytes,
//! big-endian). Here the tombstones of one bundle live under
//! `X || bundle` as `count(u16) || (offset(u8) || len(u32) || value)*`,
//! sorted by offset, with the record checksum after it; a length of
//! `u32::MAX` repeats the value of the entry before it (a cleanup step
//! writes one tombstone for every event it deletes). A cleanup step then
//! writes a key per bundle it touches, not one per event: sled's memory
//! grows with the keys and pages it writes.
//!
//! Every other key of the space (a subject's tombstone) stays one record
//! under `x || key`, and so do the per-leaf tombstones databases wrote
//! before this packing: they are read where they are, a write of the
//! same leaf moves it into its bundle's record, and a scan merges both in
//! key order. Callers serialise writes of one bundle (the store's body
//! lock), so a read-modify-write never loses another's change.

use std::collections::BTreeMap;

use super::{ERASED, backend, checksummed, index_key, verified};
use crate::store::{Record, ScanCursor, ScanPage, StoreError};
use crate::tiles::TILE_WIDTH;

const PACKED: u8 = b'X';
const REPEAT: u32 = u32::MAX;

fn packed_key(bundle: u64) -> [u8; 9] {
    index_key(PACKED, bundle)
}

fn legacy_key(index: u64) -> [u8; 9] {
    index_key(ERASED, index)
}

/// The leaf of a contract key of the space, if it names one (8 bytes).
pub fn leaf_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// A bundle's tombstones, by offset in the bundle.
type Packed = BTreeMap<u8, Vec<u8>>;

fn encode(entries: &Packed) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    let mut previous: Option<&Vec<u8>> = None;
    for (offset, value) in entries {
        out.push(*offset);
        if previous == Some(value) {
            out.extend_from_slice(&REPEAT.to_be_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
        previous = Some(value);
    }
    out
}

fn decode(bundle: u64, bytes: &[u8]) -> Result<Packed, StoreError> {
    let corrupt =
        || StoreError::Corrupt(format!("the tombstones of bundle {bundle} are malformed"));
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if rest.len() < n {
            return Err(corrupt());
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    let count = u16::from_be_bytes(take(2)?.try_into().map_err(|_| corrupt())?);
    if count == 0 || u64::from(count) > TILE_WIDTH {
        return Err(corrupt());
    }
    let mut out = Packed::new();
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..count {
        let offset = take(1)?[0];
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
        let value = match (len, &previous) {
            (REPEAT, Some(p)) => p.clone(),
            (REPEAT, None) => return Err(corrupt()),
            (n, _) => take(n as usize)?.to_vec(),
        };
        // Strictly increasing offsets: no entry twice.
        if out.last_key_value().is_some_and(|(o, _)| *o >= offset) {
            return Err(corrupt());
        }
        previous = Some(value.clone());
        out.insert(offset, value);
    }
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok(out)
}

fn read_packed(tree: &sled::Tree, bundle: u64) -> Result<Packed, StoreError> {
    let k = packed_key(bundle);
    match tree.get(k).map_err(backend)? {
        Some(v) => decode(bundle, &verified(&k, &v)?),
        None => Ok(Packed::new()),
    }
}

/// The tombstone of leaf `index`: from its bundle's record, else from a
/// per-leaf record of an earlier database.
pub fn get(tree: &sled::Tree, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let offset = (index % TILE_WIDTH) as u8;
    if let Some(v) = read_packed(tree, index / TILE_WIDTH)?.remove(&offset) {
        return Ok(Some(v));
    }
    let k = legacy_key(index);
    tree.get(k)
        .map_err(backend)?
        .map(|v| verified(&k, &v))
        .transpose()
}

/// Adds to `batch` the puts (`Some`) and deletions (`None`) of leaves'
/// tombstones, in the order given: one record per bundle touched, and the
/// removal of per-leaf records of an earlier database for those leaves.
pub fn stage(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    changes: &[(u64, Option<&[u8]>)],
) -> Result<(), StoreError> {
    let mut bundles: BTreeMap<u64, Packed> = BTreeMap::new();
    for &(index, value) in changes {
        let bundle = index / TILE_WIDTH;
        let entries = match bundles.entry(bundle) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(read_packed(tree, bundle)?),
        };
        let offset = (index % TILE_WIDTH) as u8;
        match value {
            Some(v) => entries.insert(offset, v.to_vec()),
            None => entries.remove(&offset),
        };
        // sled skips the removal of a key it does not hold.
        batch.remove(&legacy_key(index)[..]);
    }
    for (bundle, entries) in bundles {
        let k = packed_key(bundle);
        if entries.is_empty() {
            batch.remove(&k[..]);
        } else {
            batch.insert(&k[..], checksummed(&k, &encode(&entries)));
        }
    }
    Ok(())
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
    for item in tree.range(packed_key(first)..).take_while(|item| {
        item.as_ref()
            .map_or(true, |(k, _)| k.first() == Some(&PACKED))
    }) {
        let (k, v) = item.map_err(backend)?;
        let bundle = leaf_of(&k[1..]).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "tombstone record key {} is malformed",
                hex::encode(&k)
            ))
        })?;
        match verified(&k, &v).and_then(|v| decode(bundle, &v)) {
            Ok(entries) => {
                for (offset, value) in entries {
                    let key = (bundle * TILE_WIDTH + u64::from(offset))
                        .to_be_bytes()
                        .to_vec();
                    if after.is_none_or(|a| key.as_slice() > a) {
                        packed.push(Ok((key, value)));
                    }
                }
            }
            // A damaged record is one item, at its bundle's first leaf.
            Err(e) => packed.push(Err(e)),
        }
        if packed.len() >= limit {
            break;
        }
    }
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

/// Problems in the packed tombstone records (fsck): each must verify and
/// decode.
pub fn check(tree: &sled::Tree) -> Vec<String> {
    let mut out = Vec::new();
    for item in tree.range(packed_key(0)..).take_while(|item| {
        item.as_ref()
            .map_or(true, |(k, _)| k.first() == Some(&PACKED))
    }) {
        let checked = item.map_err(backend).and_then(|(k, v)| {
            let bundle = leaf_of(&k[1..]).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "tombstone record key {} is malformed",
                    hex::encode(&k)
                ))
            })?;
            decode(bundle, &verified(&k, &v)?).map(|_| ())
        });
        if let Err(e) = checked {
            out.push(e.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_pack_by_bundle_and_round_trip_with_repeats() {
        let mut entries = Packed::new();
        entries.insert(3, b"same".to_vec());
        entries.insert(9, b"same".to_vec());
        entries.insert(200, b"other".to_vec());
        entries.insert(255, b"same".to_vec());
        let bytes = encode(&entries);
        assert_eq!(decode(7, &bytes).unwrap(), entries);
        // "same" is written out twice, not four times.
        assert_eq!(bytes.len(), 2 + 4 * 5 + 2 * 4 + 5);
        for cut in 0..bytes.len() {
            assert!(decode(7, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(7, &[bytes.as_slice(), &[0]].concat()).is_err());
    }

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
        let k = packed_key(0);
        let mut raw = tree.get(k).unwrap().unwrap().to_vec();
        raw[3] ^= 1;
        tree.insert(k, raw).unwrap();
        assert!(get(&tree, 4).is_err());
        assert_eq!(check(&tree).len(), 1);
    }
}
