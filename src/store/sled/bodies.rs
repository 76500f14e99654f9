//! Sealed event bodies packed by entry bundle: one sled key per bundle of
//! 256 leaves once the bundle is full, not one per event.
//!
//! A chunk holds the bodies of consecutive leaves of one bundle under
//! `b || first leaf index` as `count(u32) || (len(u32) || body)*`, with
//! the record checksum after it; a length of `u32::MAX` marks a body that
//! was deleted (erased). Each commit writes its bodies as one chunk per
//! bundle it touches; the commit that completes a bundle folds that
//! bundle's chunks into one, in the same atomic batch. So a bundle has at
//! most one chunk per batch that wrote to it while it was open, and one
//! once it is full. The chunks of a bundle never overlap.
//!
//! Reads find the chunk with the largest first index at or below the
//! leaf. Rewrites of single bodies (erasure re-sealing under a new key,
//! deletion, restore) change the chunk that holds the leaf, or extend the
//! chunk that ends right before it. Every read-modify-write holds one
//! lock, so a commit's fold never undoes an erasure.

use std::collections::BTreeMap;

use super::{backend, checksummed, verified};
use crate::store::{ScanCursor, ScanPage, StoreError};
use crate::tiles::TILE_WIDTH;

const SEALED: u8 = b'b';
const ABSENT: u32 = u32::MAX;

fn chunk_key(first: u64) -> [u8; 9] {
    let mut k = [SEALED; 9];
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}

/// A decoded chunk: its first leaf and each leaf's body, `None` if deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    pub first: u64,
    pub bodies: Vec<Option<Vec<u8>>>,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.first + self.bodies.len() as u64
    }

    fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .bodies
            .iter()
            .map(|b| 4 + b.as_ref().map_or(0, Vec::len))
            .sum();
        let mut out = Vec::with_capacity(4 + size);
        out.extend_from_slice(&(self.bodies.len() as u32).to_be_bytes());
        for b in &self.bodies {
            match b {
                Some(b) => {
                    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&ABSENT.to_be_bytes()),
            }
        }
        out
    }

    fn decode(first: u64, bytes: &[u8]) -> Result<Chunk, StoreError> {
        let corrupt =
            || StoreError::Corrupt(format!("sealed body chunk at leaf {first} is malformed"));
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], StoreError> {
            if rest.len() < n {
                return Err(corrupt());
            }
            let (a, b) = rest.split_at(n);
            rest = b;
            Ok(a)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
        if u64::from(count) > TILE_WIDTH || count == 0 {
            return Err(corrupt());
        }
        let mut bodies = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
            if len == ABSENT {
                bodies.push(None);
            } else {
                bodies.push(Some(take(len as usize)?.to_vec()));
            }
        }
        if !rest.is_empty() || (first % TILE_WIDTH) + u64::from(count) > TILE_WIDTH {
            return Err(corrupt());
        }
        Ok(Chunk { first, bodies })
    }
}

fn first_of(key: &[u8]) -> Result<u64, StoreError> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .filter(|_| key.len() == 9)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "sealed body chunk key {} is malformed",
                hex::encode(key)
            ))
        })
}

fn put_chunk(batch: &mut sled::Batch, chunk: &Chunk) {
    let k = chunk_key(chunk.first);
    batch.insert(&k[..], checksummed(&k, &chunk.encode()));
}

/// The chunk that holds or ends right before `index`, within its bundle.
fn chunk_at_or_before(tree: &sled::Tree, index: u64) -> Result<Option<Chunk>, StoreError> {
    let bundle_start = index - index % TILE_WIDTH;
    let Some(item) = tree
        .range(chunk_key(bundle_start)..=chunk_key(index))
        .next_back()
    else {
        return Ok(None);
    };
    let (k, v) = item.map_err(backend)?;
    let first = first_of(&k)?;
    Chunk::decode(first, &verified(&k, &v)?).map(Some)
}

/// The sealed body of leaf `index`.
pub fn get(tree: &sled::Tree, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(chunk_at_or_before(tree, index)?
        .filter(|c| index < c.end())
        .and_then(|mut c| c.bodies.swap_remove((index - c.first) as usize)))
}

/// Adds a commit's bodies (`(index, body)`, any order) to `batch`: a chunk
/// per bundle, folded into one when the commit completes the bundle.
pub fn stage_commit(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    bodies: &[(u64, &[u8])],
) -> Result<(), StoreError> {
    let mut by_bundle: BTreeMap<u64, BTreeMap<u64, &[u8]>> = BTreeMap::new();
    for (index, body) in bodies {
        by_bundle
            .entry(index / TILE_WIDTH)
            .or_default()
            .insert(*index, body);
    }
    for (bundle, group) in by_bundle {
        let start = bundle * TILE_WIDTH;
        let (&lo, _) = group.first_key_value().unwrap_or((&start, &&[][..]));
        let (&hi, _) = group.last_key_value().unwrap_or((&start, &&[][..]));
        let contiguous = hi - lo + 1 == group.len() as u64;
        // Earlier chunks of this bundle, when this commit completes it.
        let mut chunk = Chunk {
            first: lo,
            bodies: Vec::new(),
        };
        if contiguous && hi == start + TILE_WIDTH - 1 && lo > start {
            let mut earlier = Vec::new();
            for item in tree.range(chunk_key(start)..chunk_key(lo)) {
                let (k, v) = item.map_err(backend)?;
                earlier.push(Chunk::decode(first_of(&k)?, &verified(&k, &v)?)?);
            }
            let joined = earlier.first().map(|c| c.first) == Some(start)
                && earlier.windows(2).all(|w| w[0].end() == w[1].first)
                && earlier.last().map(Chunk::end) == Some(lo);
            if joined {
                for c in &earlier[1..] {
                    batch.remove(&chunk_key(c.first)[..]);
                }
                chunk.first = start;
                chunk.bodies = earlier.into_iter().flat_map(|c| c.bodies).collect();
            }
        }
        if contiguous {
            chunk
                .bodies
                .extend(group.values().map(|b| Some(b.to_vec())));
            put_chunk(batch, &chunk);
        } else {
            // Not one run of leaves (a restore or a repair): one at a time.
            let changes: Vec<_> = group.iter().map(|(i, b)| (*i, Some(*b))).collect();
            rewrite(tree, batch, &changes)?;
        }
    }
    Ok(())
}

/// Replaces or deletes (`None`) the bodies of leaves in `batch`, in the
/// order given. A leaf past every chunk extends the chunk that ends right
/// before it, or starts its own. Callers serialise these with commits.
pub fn rewrite(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    changes: &[(u64, Option<&[u8]>)],
) -> Result<(), StoreError> {
    // Chunks read or made so far, by first leaf: later changes see earlier ones.
    let mut chunks: BTreeMap<u64, Chunk> = BTreeMap::new();
    for &(index, body) in changes {
        let bundle_start = index - index % TILE_WIDTH;
        let cached = chunks
            .range(bundle_start..=index)
            .next_back()
            .map(|(f, _)| *f);
        let stored = chunk_at_or_before(tree, index)?;
        let mut chunk = match (cached, stored) {
            (Some(f), Some(s)) if s.first > f => s,
            (Some(f), _) => chunks.remove(&f).unwrap_or(Chunk {
                first: f,
                bodies: Vec::new(),
            }),
            (None, Some(s)) => s,
            (None, None) => Chunk {
                first: index,
                bodies: Vec::new(),
            },
        };
        if index > chunk.end() {
            chunks.insert(chunk.first, chunk);
            chunk = Chunk {
                first: index,
                bodies: Vec::new(),
            };
        }
        let at = (index - chunk.first) as usize;
        if at == chunk.bodies.len() {
            if body.is_some() {
                chunk.bodies.push(body.map(<[u8]>::to_vec));
            }
        } else {
            chunk.bodies[at] = body.map(<[u8]>::to_vec);
        }
        chunks.insert(chunk.first, chunk);
    }
    for chunk in chunks.values().filter(|c| !c.bodies.is_empty()) {
        put_chunk(batch, chunk);
    }
    Ok(())
}

/// Writes bodies of leaves that have no chunk yet, grouped into chunks of
/// consecutive leaves per bundle (deleted leaves in a gap are absent).
pub fn rewrite_fresh(batch: &mut sled::Batch, bodies: &[(u64, Option<&[u8]>)]) {
    let mut by_bundle: BTreeMap<u64, BTreeMap<u64, Option<&[u8]>>> = BTreeMap::new();
    for (index, body) in bodies {
        by_bundle
            .entry(index / TILE_WIDTH)
            .or_default()
            .insert(*index, *body);
    }
    for group in by_bundle.values() {
        let (Some((&lo, _)), Some((&hi, _))) = (group.first_key_value(), group.last_key_value())
        else {
            continue;
        };
        let chunk = Chunk {
            first: lo,
            bodies: (lo..=hi)
                .map(|i| group.get(&i).copied().flatten().map(<[u8]>::to_vec))
                .collect(),
        };
        put_chunk(batch, &chunk);
    }
}

/// Up to `limit` bodies after `cursor`, in leaf order; deleted ones are
/// skipped. A chunk that does not decode is one `Err` item.
pub fn scan(
    tree: &sled::Tree,
    cursor: &ScanCursor,
    limit: usize,
) -> Result<ScanPage<(u64, Vec<u8>)>, StoreError> {
    let after = match cursor.key() {
        Some(k) => k
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("bad scan cursor".into()))?,
        None => 0,
    };
    let started = cursor.key().is_some();
    let mut items = Vec::new();
    let from = chunk_key(after - after % TILE_WIDTH);
    for item in tree.range(from.to_vec()..vec![SEALED + 1]) {
        let (k, v) = item.map_err(backend)?;
        let first = first_of(&k)?;
        match verified(&k, &v).and_then(|v| Chunk::decode(first, &v)) {
            Err(e) => {
                if started && first <= after {
                    continue;
                }
                items.push(Err(e));
                if items.len() >= limit {
                    return Ok(ScanPage {
                        items,
                        next: Some(ScanCursor::after(first.to_be_bytes().to_vec())),
                    });
                }
            }
            Ok(c) => {
                for (n, body) in c.bodies.into_iter().enumerate() {
                    let index = first + n as u64;
                    if started && index <= after {
                        continue;
                    }
                    if let Some(body) = body {
                        items.push(Ok((index, body)));
                        if items.len() >= limit {
                            return Ok(ScanPage {
                                items,
                                next: Some(ScanCursor::after(index.to_be_bytes().to_vec())),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(ScanPage { items, next: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: u64) -> Vec<u8> {
        format!("sealed body {i}").into_bytes()
    }

    #[test]
    fn commits_fold_a_bundle_into_one_chunk_and_rewrites_stay_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut next = 0u64;
        for size in [3u64, 100, 1, 200, 300, 5] {
            let bodies: Vec<_> = (next..next + size).map(|i| (i, body(i))).collect();
            let refs: Vec<_> = bodies.iter().map(|(i, b)| (*i, b.as_slice())).collect();
            let mut batch = sled::Batch::default();
            stage_commit(&tree, &mut batch, &refs).unwrap();
            tree.apply_batch(batch).unwrap();
            next += size;
        }
        for i in 0..next {
            assert_eq!(get(&tree, i).unwrap(), Some(body(i)), "leaf {i}");
        }
        assert_eq!(get(&tree, next).unwrap(), None);
        // Full bundles 0 and 1 are one chunk each; bundle 2 is still open.
        let firsts: Vec<u64> = tree
            .scan_prefix([SEALED])
            .keys()
            .map(|k| first_of(&k.unwrap()).unwrap())
            .collect();
        assert_eq!(&firsts[..2], &[0, 256]);
        // Delete and rewrite single bodies.
        let mut batch = sled::Batch::default();
        rewrite(
            &tree,
            &mut batch,
            &[(300, None), (5, Some(b"first")), (5, Some(b"resealed"))],
        )
        .unwrap();
        tree.apply_batch(batch).unwrap();
        assert_eq!(get(&tree, 300).unwrap(), None);
        assert_eq!(get(&tree, 5).unwrap(), Some(b"resealed".to_vec()));
        assert_eq!(get(&tree, 301).unwrap(), Some(body(301)));
        // A scan yields every body left, once, in order, across pages.
        let mut seen = Vec::new();
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = scan(&tree, &c, 7).unwrap();
            seen.extend(page.items.into_iter().map(|r| r.unwrap().0));
            cursor = page.next;
        }
        let expected: Vec<u64> = (0..next).filter(|i| *i != 300).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn bodies_written_one_at_a_time_join_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for i in 0..300u64 {
            let mut batch = sled::Batch::default();
            rewrite(&tree, &mut batch, &[(i, Some(&body(i)))]).unwrap();
            tree.apply_batch(batch).unwrap();
        }
        // Several new bodies in one change join too.
        let many: Vec<Vec<u8>> = (300..310).map(body).collect();
        let changes: Vec<_> = (300..310u64)
            .zip(&many)
            .map(|(i, b)| (i, Some(b.as_slice())))
            .collect();
        let mut batch = sled::Batch::default();
        rewrite(&tree, &mut batch, &changes).unwrap();
        tree.apply_batch(batch).unwrap();
        assert_eq!(get(&tree, 309).unwrap(), Some(body(309)));
        assert_eq!(
            tree.scan_prefix([SEALED]).count(),
            2,
            "one chunk per bundle"
        );
        for i in 0..310 {
            assert_eq!(get(&tree, i).unwrap(), Some(body(i)));
        }
    }
}
