//! Erasure tombstones of single events: one sled record per entry bundle
//! that has any, whatever the number of erasures that touched it, and each
//! distinct tombstone stored once.
//!
//! The contract keys an event's tombstone by its leaf index (8 bytes,
//! big-endian). Here:
//!
//! - `W || id` (a 32-bit id, big-endian) holds a tombstone's bytes, and
//!   `w || SHA-256(tombstone)` its id: a subject's erasure writes the same
//!   tombstone for every event it deletes, so it is stored once, under the
//!   next id after the largest in use.
//! - `Z || bundle` holds the bundle's tombstoned leaves as entries
//!   `offset (1 byte) || id (4 bytes)`, in offset order: at most 256
//!   entries, 1,280 bytes.
//!
//! A cleanup step that deletes events of many bundles so rewrites one
//! small record per bundle, and a bundle's record does not grow with the
//! erasures that touched it. The layout before (storage layouts 4 and 5)
//! kept a record per bundle *and tombstone*, with the tombstone's bytes in
//! each: at 10.8 M events, 70 erasures of subjects spread over the log
//! left 984,499 such records (162 MB) in sled, whose memory, file, start
//! and periodic reopen grow with the keys it holds. Those records are
//! converted on open ([`convert_layout_5`]).
//!
//! Every other key of the space (a subject's tombstone) stays one record
//! under `x || key`, and so do the per-leaf tombstones databases wrote
//! before packing: they are read where they are, a write of the same leaf
//! moves it into its bundle's record, and a scan merges both in key order.
//! Callers serialise writes (the store's body lock), so a read-modify-write
//! never loses another's change, and an id is never given twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::{ERASED, backend, checksummed, index_key, verified};
use crate::store::{Record, ScanCursor, ScanPage, StoreError};
use crate::tiles::TILE_WIDTH;

const BUNDLE: u8 = b'Z';
const TOMBSTONE: u8 = b'W';
const TOMBSTONE_ID: u8 = b'w';
/// Bytes of one entry of a bundle's record: offset and tombstone id.
const ENTRY: usize = 5;

/// A bundle's tombstoned leaves: offset in the bundle to tombstone id.
type Entries = BTreeMap<u8, u32>;

fn bundle_key(bundle: u64) -> [u8; 9] {
    index_key(BUNDLE, bundle)
}

fn tombstone_key(id: u32) -> [u8; 5] {
    let mut k = [TOMBSTONE; 5];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn id_key(digest: &[u8; 32]) -> Vec<u8> {
    [&[TOMBSTONE_ID][..], digest].concat()
}

fn legacy_key(index: u64) -> [u8; 9] {
    index_key(ERASED, index)
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// The leaf of a contract key of the space, if it names one (8 bytes).
pub fn leaf_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

fn split(index: u64) -> (u64, u8) {
    (index / TILE_WIDTH, (index % TILE_WIDTH) as u8)
}

fn encode(entries: &Entries) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY);
    for (offset, id) in entries {
        out.push(*offset);
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

/// One bundle's record, checked: its bundle and entries.
fn decode(k: &[u8], v: &[u8]) -> Result<(u64, Entries), StoreError> {
    let corrupt =
        || StoreError::Corrupt(format!("tombstone record {} is malformed", hex::encode(k)));
    let bundle = k.get(1..).and_then(leaf_of).ok_or_else(corrupt)?;
    let value = verified(k, v)?;
    if value.is_empty() || !value.len().is_multiple_of(ENTRY) {
        return Err(corrupt());
    }
    let mut entries = Entries::new();
    for e in value.chunks_exact(ENTRY) {
        let id = u32::from_be_bytes([e[1], e[2], e[3], e[4]]);
        // In offset order, each offset once.
        if entries.last_key_value().is_some_and(|(o, _)| *o >= e[0]) {
            return Err(corrupt());
        }
        entries.insert(e[0], id);
    }
    Ok((bundle, entries))
}

fn read_entries(tree: &sled::Tree, bundle: u64) -> Result<Entries, StoreError> {
    let k = bundle_key(bundle);
    match tree.get(k).map_err(backend)? {
        Some(v) => decode(&k, &v).map(|(_, entries)| entries),
        None => Ok(Entries::new()),
    }
}

/// The tombstone of id `id`, which a bundle's record names.
fn tombstone(tree: &sled::Tree, id: u32) -> Result<Vec<u8>, StoreError> {
    let k = tombstone_key(id);
    match tree.get(k).map_err(backend)? {
        Some(v) => verified(&k, &v),
        None => Err(StoreError::Corrupt(format!(
            "tombstone {id}, named by a bundle's tombstone record, is missing"
        ))),
    }
}

/// The tombstone of leaf `index`: from its bundle's record, else from a
/// per-leaf record of an earlier database.
pub fn get(tree: &sled::Tree, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let (bundle, offset) = split(index);
    if let Some(id) = read_entries(tree, bundle)?.get(&offset) {
        return tombstone(tree, *id).map(Some);
    }
    let k = legacy_key(index);
    tree.get(k)
        .map_err(backend)?
        .map(|v| verified(&k, &v))
        .transpose()
}

/// The ids of tombstones: those stored, found by digest, and new ones,
/// given the next id after the largest in use and written into the
/// caller's batch. One dictionary serves one writer's batches, applied in
/// the order they were staged.
#[derive(Default)]
pub(super) struct Dictionary {
    known: HashMap<[u8; 32], u32>,
    next: Option<u32>,
}

impl Dictionary {
    fn id(
        &mut self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
        value: &[u8],
    ) -> Result<u32, StoreError> {
        let d = digest(value);
        if let Some(id) = self.known.get(&d) {
            return Ok(*id);
        }
        let k = id_key(&d);
        let id = match tree.get(&k).map_err(backend)? {
            Some(v) => {
                let raw = verified(&k, &v)?;
                u32::from_be_bytes(raw.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("tombstone id {} is malformed", hex::encode(&k)))
                })?)
            }
            None => {
                let id = match self.next {
                    Some(id) => id,
                    None => next_free_id(tree)?,
                };
                self.next = Some(
                    id.checked_add(1)
                        .ok_or_else(|| StoreError::Backend("no tombstone id is left".into()))?,
                );
                let t = tombstone_key(id);
                batch.insert(&t[..], checksummed(&t, value));
                batch.insert(k.clone(), checksummed(&k, &id.to_be_bytes()));
                id
            }
        };
        self.known.insert(d, id);
        Ok(id)
    }
}

/// The id after the largest stored.
fn next_free_id(tree: &sled::Tree) -> Result<u32, StoreError> {
    let last = tree
        .range(vec![TOMBSTONE]..vec![TOMBSTONE + 1])
        .next_back()
        .transpose()
        .map_err(backend)?;
    Ok(match last {
        Some((k, _)) => {
            let id = k
                .get(1..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("tombstone key {} is malformed", hex::encode(&k)))
                })?;
            id.checked_add(1)
                .ok_or_else(|| StoreError::Backend("no tombstone id is left".into()))?
        }
        None => 0,
    })
}

/// Adds to `batch` the puts (`Some`) and deletions (`None`) of leaves'
/// tombstones, in the order given: the record of each bundle touched, the
/// tombstones not stored yet, and the removal of per-leaf records of an
/// earlier database for those leaves.
pub fn stage(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    changes: &[(u64, Option<&[u8]>)],
) -> Result<(), StoreError> {
    let mut ids = Dictionary::default();
    let mut bundles: BTreeMap<u64, Entries> = BTreeMap::new();
    for &(index, value) in changes {
        let (bundle, offset) = split(index);
        let entries = match bundles.entry(bundle) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(read_entries(tree, bundle)?),
        };
        match value {
            Some(v) => entries.insert(offset, ids.id(tree, batch, v)?),
            None => entries.remove(&offset),
        };
        // sled skips the removal of a key it does not hold.
        batch.remove(&legacy_key(index)[..]);
    }
    for (bundle, entries) in bundles {
        put_entries(batch, bundle, &entries);
    }
    Ok(())
}

fn put_entries(batch: &mut sled::Batch, bundle: u64, entries: &Entries) {
    let k = bundle_key(bundle);
    if entries.is_empty() {
        batch.remove(&k[..]);
    } else {
        batch.insert(&k[..], checksummed(&k, &encode(entries)));
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
    let mut values: HashMap<u32, Vec<u8>> = HashMap::new();
    for item in tree.range(bundle_key(first).to_vec()..vec![BUNDLE + 1]) {
        if packed.len() >= limit {
            break;
        }
        let (k, v) = item.map_err(backend)?;
        let (bundle, entries) = match decode(&k, &v) {
            Ok(d) => d,
            // A damaged record is one item.
            Err(e) => {
                packed.push(Err(e));
                continue;
            }
        };
        for (offset, id) in entries {
            let key = (bundle * TILE_WIDTH + u64::from(offset))
                .to_be_bytes()
                .to_vec();
            if after.is_some_and(|a| key.as_slice() <= a) {
                continue;
            }
            let value = match values.get(&id) {
                Some(v) => Ok(v.clone()),
                None => tombstone(tree, id).inspect(|v| {
                    values.insert(id, v.clone());
                }),
            };
            packed.push(value.map(|v| (key, v)));
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

/// Problems in the packed tombstone records (fsck): each bundle's record
/// must verify and name stored tombstones; each tombstone must verify and
/// be found by its digest; no record of the layout before may be left.
pub fn check(tree: &sled::Tree) -> Vec<String> {
    let mut out = Vec::new();
    let mut named = HashSet::new();
    for item in tree.range(vec![BUNDLE]..vec![BUNDLE + 1]) {
        match item.map_err(backend).and_then(|(k, v)| decode(&k, &v)) {
            Ok((bundle, entries)) => {
                for id in entries.into_values() {
                    if named.insert(id) && !tree.contains_key(tombstone_key(id)).unwrap_or(false) {
                        out.push(format!(
                            "bundle {bundle}'s tombstone record names tombstone {id}, which is missing"
                        ));
                    }
                }
            }
            Err(e) => out.push(e.to_string()),
        }
    }
    for item in tree.range(vec![TOMBSTONE]..vec![TOMBSTONE + 1]) {
        let (k, v) = match item.map_err(backend) {
            Ok(kv) => kv,
            Err(e) => {
                out.push(e.to_string());
                continue;
            }
        };
        let found = verified(&k, &v).and_then(|value| {
            let ik = id_key(&digest(&value));
            let stored = tree.get(&ik).map_err(backend)?;
            Ok(stored.is_some_and(|s| verified(&ik, &s).ok() == Some(k[1..].to_vec())))
        });
        match found {
            Ok(true) => {}
            Ok(false) => out.push(format!(
                "tombstone {} is not found by its digest",
                hex::encode(&k[1..])
            )),
            Err(e) => out.push(e.to_string()),
        }
    }
    for (prefix, what) in layout_5::PREFIXES {
        let left = tree.scan_prefix([prefix]).count();
        if left > 0 {
            out.push(format!(
                "{left} {what} of storage layout 5 were not converted"
            ));
        }
    }
    out
}

/// Bundles converted per atomic batch by [`convert_layout_5`].
const BUNDLES_PER_BATCH: usize = 256;

/// Converts the tombstone records of storage layouts 4 and 5 into bundle
/// records, streaming: [`BUNDLES_PER_BATCH`] bundles per atomic batch,
/// each made durable by `sync` before the next, which writes each
/// bundle's record and deletes its earlier records (and union) together,
/// so a bundle is in one form or the other and an interrupted conversion
/// resumes on the next open. A record that does not verify is left where
/// it is (fsck names it). Returns the bundles converted.
pub(super) fn convert_layout_5(
    tree: &sled::Tree,
    sync: &dyn Fn() -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let left = |prefix: u8| tree.scan_prefix([prefix]).next().is_some();
    if !left(layout_5::PACKED) && !left(layout_5::UNION) {
        return Ok(0);
    }
    tracing::warn!(
        "converting erasure tombstones to storage layout 6 (once; it resumes if interrupted)"
    );
    let mut ids = Dictionary::default();
    let mut converted = 0;
    let mut from = 0u64;
    loop {
        let mut batch = sled::Batch::default();
        let mut bundles: BTreeMap<u64, Entries> = BTreeMap::new();
        for item in layout_5::records_from(tree, from) {
            let (k, v) = item.map_err(backend)?;
            let Some(bundle) = k.get(1..9).and_then(leaf_of) else {
                tracing::error!(key = %hex::encode(&k), "a tombstone record of storage layout 5 is malformed; left in place");
                continue;
            };
            if !bundles.contains_key(&bundle) {
                if bundles.len() == BUNDLES_PER_BATCH {
                    break;
                }
                bundles.insert(bundle, read_entries(tree, bundle)?);
            }
            from = bundle + 1;
            let (mask, value) = match layout_5::decode(&k, &v) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "left in place");
                    continue;
                }
            };
            let id = ids.id(tree, &mut batch, &value)?;
            let entries = bundles.entry(bundle).or_default();
            for offset in 0..=u8::MAX {
                if mask[usize::from(offset / 8)] & (1 << (offset % 8)) != 0 {
                    entries.insert(offset, id);
                }
            }
            batch.remove(k);
        }
        if bundles.is_empty() {
            break;
        }
        for (bundle, entries) in &bundles {
            put_entries(&mut batch, *bundle, entries);
            batch.remove(&index_key(layout_5::UNION, *bundle)[..]);
        }
        tree.apply_batch(batch).map_err(backend)?;
        sync()?;
        converted += bundles.len() as u64;
    }
    // Unions without records (none are written, but a crash of an earlier
    // version between its writes could leave one).
    let mut batch = sled::Batch::default();
    for item in tree.scan_prefix([layout_5::UNION]) {
        batch.remove(item.map_err(backend)?.0);
    }
    tree.apply_batch(batch).map_err(backend)?;
    sync()?;
    Ok(converted)
}

/// The tombstone records of storage layouts 4 and 5, read only to convert
/// them: `X || bundle || SHA-256(tombstone)` holding `mask(32) ||
/// tombstone` (a bit per leaf of the bundle), one per bundle and
/// tombstone, and `U || bundle`, the union of a bundle's masks (layout 5).
pub(super) mod layout_5 {
    use super::{StoreError, digest, index_key, verified};

    pub const PACKED: u8 = b'X';
    pub const UNION: u8 = b'U';
    pub const PREFIXES: [(u8, &str); 2] = [
        (PACKED, "tombstone records"),
        (UNION, "tombstone summaries"),
    ];
    pub type Mask = [u8; 32];

    pub fn records_from(
        tree: &sled::Tree,
        first: u64,
    ) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> {
        tree.range(index_key(PACKED, first).to_vec()..vec![PACKED + 1])
    }

    /// One record, checked: its mask and tombstone.
    pub fn decode(k: &[u8], v: &[u8]) -> Result<(Mask, Vec<u8>), StoreError> {
        let corrupt =
            || StoreError::Corrupt(format!("tombstone record {} is malformed", hex::encode(k)));
        let value = verified(k, v)?;
        let mask: Mask = value
            .get(..32)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(corrupt)?;
        let tombstone = value[32..].to_vec();
        if mask == [0; 32] || k.get(9..) != Some(&digest(&tombstone)[..]) {
            return Err(corrupt());
        }
        Ok((mask, tombstone))
    }

    /// Writes one record as layout 5 did (for the conversion's tests).
    #[cfg(test)]
    pub fn put(tree: &sled::Tree, bundle: u64, mask: &Mask, tombstone: &[u8]) {
        let k = [&index_key(PACKED, bundle)[..], &digest(tombstone)].concat();
        let v = super::checksummed(&k, &[&mask[..], tombstone].concat());
        tree.insert(k, v).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        (dir, tree)
    }

    fn apply(tree: &sled::Tree, changes: &[(u64, Option<&[u8]>)]) {
        let mut batch = sled::Batch::default();
        stage(tree, &mut batch, changes).unwrap();
        tree.apply_batch(batch).unwrap();
    }

    fn count(tree: &sled::Tree, prefix: u8) -> usize {
        tree.scan_prefix([prefix]).count()
    }

    #[test]
    fn packed_and_earlier_per_leaf_tombstones_read_and_scan_as_one_space() {
        let (_dir, tree) = tree();
        // An earlier database's per-leaf records, and a subject's.
        for (i, v) in [(5u64, "old5"), (300, "old300"), (301, "old301")] {
            let k = legacy_key(i);
            tree.insert(k, checksummed(&k, v.as_bytes())).unwrap();
        }
        let subject = [&[ERASED][..], b"subject/12345678"].concat();
        tree.insert(&subject, checksummed(&subject, b"subj"))
            .unwrap();
        apply(
            &tree,
            &[
                (4, Some(b"new")),
                (6, Some(b"new")),
                (301, Some(b"new301")),
                (600, Some(b"gone")),
                (600, None),
                (7, Some(b"first")),
                (7, None),
            ],
        );
        assert!(!tree.contains_key(legacy_key(301)).unwrap(), "moved");
        assert_eq!(get(&tree, 5).unwrap().unwrap(), b"old5");
        assert_eq!(get(&tree, 4).unwrap().unwrap(), b"new");
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
            let mut expected: Vec<Record> = [
                (4u64, "new"),
                (5, "old5"),
                (6, "new"),
                (300, "old300"),
                (301, "new301"),
            ]
            .iter()
            .map(|(i, v)| (i.to_be_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
            expected.push((b"subject/12345678".to_vec(), b"subj".to_vec()));
            assert_eq!(seen, expected, "pages of {limit}");
        }
        assert!(check(&tree).is_empty(), "{:?}", check(&tree));
        // One record per bundle: bundle 0's leaves 4 and 6, bundle 1's 301.
        assert_eq!(count(&tree, BUNDLE), 2);
        let k = bundle_key(0);
        let mut raw = tree.get(k).unwrap().unwrap().to_vec();
        raw[3] ^= 1;
        tree.insert(k, raw).unwrap();
        assert!(get(&tree, 4).is_err());
        assert_eq!(check(&tree).len(), 1);
    }

    #[test]
    fn a_bundle_keeps_one_record_of_bounded_size_through_many_erasures() {
        let (_dir, tree) = tree();
        // 200 erasures, each touching a leaf of bundle 0 and one of bundle 1.
        let tombstones: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("erasure {i}: {}", "x".repeat(100)).into_bytes())
            .collect();
        for (i, t) in tombstones.iter().enumerate() {
            apply(&tree, &[(i as u64, Some(t)), (256 + i as u64, Some(t))]);
        }
        // Two bundle records of 5 bytes per leaf, and each tombstone once.
        assert_eq!(count(&tree, BUNDLE), 2);
        assert_eq!(count(&tree, TOMBSTONE), 200);
        assert_eq!(count(&tree, TOMBSTONE_ID), 200);
        let record = tree.get(bundle_key(0)).unwrap().unwrap();
        assert_eq!(
            record.len(),
            200 * ENTRY + super::super::RECORD_CHECKSUM_LEN
        );
        // A leaf erased again takes the new tombstone; one deleted leaves
        // its record; a leaf with none reads none.
        apply(&tree, &[(3, Some(&tombstones[150])), (4, None)]);
        assert_eq!(get(&tree, 3).unwrap().unwrap(), tombstones[150]);
        assert_eq!(get(&tree, 150).unwrap().unwrap(), tombstones[150]);
        assert_eq!(get(&tree, 4).unwrap(), None);
        assert_eq!(get(&tree, 250).unwrap(), None);
        assert_eq!(get(&tree, 256 + 5).unwrap().unwrap(), tombstones[5]);
        assert_eq!(count(&tree, TOMBSTONE), 200, "no tombstone stored twice");
        // A new tombstone gets the next id, once.
        apply(&tree, &[(255, Some(b"late")), (511, Some(b"late"))]);
        assert_eq!(get(&tree, 511).unwrap().unwrap(), b"late");
        assert_eq!(
            tree.get(id_key(&digest(b"late")))
                .unwrap()
                .map(|v| verified(&id_key(&digest(b"late")), &v).unwrap()),
            Some(200u32.to_be_bytes().to_vec())
        );
        assert!(check(&tree).is_empty(), "{:?}", check(&tree));

        // Removing every leaf of a bundle removes its record.
        let all: Vec<(u64, Option<&[u8]>)> = (0..256).map(|i| (i, None)).collect();
        apply(&tree, &all);
        assert!(!tree.contains_key(bundle_key(0)).unwrap());
        assert_eq!(get(&tree, 3).unwrap(), None);

        // fsck names a tombstone a record names that is missing, and one
        // its digest does not find.
        tree.remove(tombstone_key(7)).unwrap();
        assert!(get(&tree, 256 + 7).is_err());
        let found = check(&tree);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("tombstone 7"), "{found:?}");
        tree.remove(id_key(&digest(&tombstones[9]))).unwrap();
        assert_eq!(check(&tree).len(), 2, "{:?}", check(&tree));
    }

    #[test]
    fn tombstone_records_of_layout_5_convert_in_batches_and_resume_after_a_failed_sync() {
        let (_dir, tree) = tree();
        // 600 bundles of layout 5 records: leaf 0 of each under "a", leaf
        // 1 under "b" (several records per bundle), a union per bundle,
        // and one damaged record.
        let mut expected = BTreeMap::new();
        for bundle in 0..600u64 {
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            a[0] = 0b01;
            b[0] = 0b10;
            layout_5::put(&tree, bundle, &a, b"a");
            layout_5::put(&tree, bundle, &b, b"b");
            let u = index_key(layout_5::UNION, bundle);
            tree.insert(u, checksummed(&u, &[0b11; 32])).unwrap();
            expected.insert(bundle * TILE_WIDTH, b"a".to_vec());
            expected.insert(bundle * TILE_WIDTH + 1, b"b".to_vec());
        }
        let damaged = [&index_key(layout_5::PACKED, 700)[..], &digest(b"c")].concat();
        tree.insert(&damaged, b"not a record".to_vec()).unwrap();
        // A per-leaf record of an earlier database stays where it is.
        let k = legacy_key(5);
        tree.insert(k, checksummed(&k, b"old")).unwrap();
        expected.insert(5, b"old".to_vec());

        // The second batch's sync fails: the conversion stops there.
        let syncs = std::cell::Cell::new(0);
        let failing = || {
            syncs.set(syncs.get() + 1);
            match syncs.get() {
                2 => Err(StoreError::Backend("injected sync failure".into())),
                _ => Ok(()),
            }
        };
        assert!(convert_layout_5(&tree, &failing).is_err());
        // Every bundle reads in one form or the other meanwhile.
        for (leaf, value) in &expected {
            let read = get(&tree, *leaf).unwrap();
            let layout5 = layout_5::records_from(&tree, leaf / TILE_WIDTH)
                .next()
                .and_then(|r| r.ok())
                .is_some_and(|(k, _)| k[1..9] == (leaf / TILE_WIDTH).to_be_bytes());
            assert!(read.as_ref() == Some(value) || layout5, "leaf {leaf}");
        }
        // The next open resumes.
        let converted = convert_layout_5(&tree, &|| Ok(())).unwrap();
        assert_eq!(converted, 600 - 2 * BUNDLES_PER_BATCH as u64 + 1);
        for (leaf, value) in &expected {
            assert_eq!(
                get(&tree, *leaf).unwrap().as_ref(),
                Some(value),
                "leaf {leaf}"
            );
        }
        assert_eq!(count(&tree, layout_5::UNION), 0);
        assert_eq!(count(&tree, TOMBSTONE), 2, "each tombstone once");
        // Only the damaged record is left, and fsck names it.
        assert_eq!(count(&tree, layout_5::PACKED), 1);
        let found = check(&tree);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("not converted"), "{found:?}");
        assert_eq!(
            convert_layout_5(&tree, &|| Ok(())).unwrap(),
            1,
            "the damaged one's bundle, again"
        );
    }
}
