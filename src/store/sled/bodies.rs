//! Sealed event bodies packed by entry bundle: one chunk per bundle of
//! 256 leaves once the bundle is full, not one key per event.
//!
//! A chunk holds the bodies of consecutive leaves of one bundle as
//! `count(u32) || (len(u32) || body)*`, with the record checksum after it;
//! a length of `u32::MAX` marks a body that was deleted (erased). Chunks of
//! open bundles live in sled under `b || first leaf index`. Each commit
//! writes its bodies as one chunk per bundle it touches; the commit that
//! completes a bundle folds that bundle's chunks into one and writes it as
//! the bundle's body file (see `files`), deleting the sled chunks in the
//! same atomic batch. The chunks of a bundle never overlap.
//!
//! Reads find the sled chunk with the largest first index at or below the
//! leaf; when it does not hold the leaf and the committed tree size covers
//! the bundle, the bundle's file does. So sled chunks of a full bundle are
//! an overlay over its file: rewrites of single bodies (deletion, restore)
//! of a bundle whose chunk is a file go to sled, never into the file,
//! which is written once. A deletion in such a bundle where no sled chunk
//! holds the leaf is a bit in the bundle's deletion mask instead
//! (`B || bundle`: 32 bytes, a bit per leaf, the record checksum after
//! it), so an erasure cleanup writes one small record per bundle it
//! touches, not a chunk per event: a read takes a sled chunk that holds
//! the leaf first, then the mask, then the file. Databases from before
//! body files keep full bundles as one sled chunk, read as before. Every
//! read-modify-write holds one lock, so a commit's fold never undoes a
//! deletion.
//!
//! A body file's chunk has no table of where each body lies, and its
//! checksum covers the whole file, so the first read of one body reads
//! and checks all of it (about 100 KB). What that read learnt, where each
//! body lies and a checksum of each, is kept for the files read last
//! ([`BodyMaps`], about 3 KiB a bundle): a later read of any body of the
//! bundle is one `pread` of that body's bytes, checked against its own
//! checksum. A search page opens one body in each of up to 100 bundles,
//! and the same queries come back (the pages of one query, an auditor
//! returning to a subject).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::files::{Blob, Files};
use super::{RECORD_CHECKSUM_LEN, backend, checksummed, index_key, verified, verified_ref};
use crate::fifo_cache::FifoCache;
use crate::store::{ScanCursor, ScanPage, StoreError};
use crate::tiles::TILE_WIDTH;

const SEALED: u8 = b'b';
const MASK: u8 = b'B';
const ABSENT: u32 = u32::MAX;

fn chunk_key(first: u64) -> [u8; 9] {
    index_key(SEALED, first)
}

fn mask_key(bundle: u64) -> [u8; 9] {
    index_key(MASK, bundle)
}

/// A full bundle's deletion mask: bit `i % 8` of byte `i / 8` set when
/// leaf `i` of the bundle was deleted over its file.
type Mask = [u8; (TILE_WIDTH / 8) as usize];

fn read_mask(tree: &sled::Tree, bundle: u64) -> Result<Option<Mask>, StoreError> {
    let k = mask_key(bundle);
    let Some(v) = tree.get(k).map_err(backend)? else {
        return Ok(None);
    };
    verified_ref(&k, &v)?.try_into().map(Some).map_err(|_| {
        StoreError::Corrupt(format!("the deletion mask of bundle {bundle} is malformed"))
    })
}

fn masked(mask: &Mask, offset: u64) -> bool {
    mask[(offset / 8) as usize] & (1 << (offset % 8)) != 0
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
        let mut bodies = Vec::new();
        Chunk::walk(first, bytes, |_, body| {
            bodies.push(body.map(<[u8]>::to_vec))
        })?;
        Ok(Chunk { first, bodies })
    }

    /// Checks the encoded chunk at `first` and hands each of its bodies to
    /// `each` in order, with its position in the chunk.
    fn walk(
        first: u64,
        bytes: &[u8],
        mut each: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), StoreError> {
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
        for i in 0..count as usize {
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?);
            if len == ABSENT {
                each(i, None);
            } else {
                each(i, Some(take(len as usize)?));
            }
        }
        if !rest.is_empty() || (first % TILE_WIDTH) + u64::from(count) > TILE_WIDTH {
            return Err(corrupt());
        }
        Ok(())
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

/// The body files of full bundles, read only where the committed tree
/// size covers them.
pub struct InFiles<'a> {
    pub files: &'a Files,
    pub committed: u64,
    /// The maps of the files read last.
    pub maps: &'a BodyMaps,
}

impl InFiles<'_> {
    /// The chunk of full bundle `bundle` from its file, if the committed
    /// tree covers it and the file exists.
    fn chunk(&self, bundle: u64) -> Result<Option<Chunk>, StoreError> {
        self.checked(bundle, Chunk::decode)
    }

    /// The body of leaf `index` from its full bundle's file, if the
    /// committed tree covers it and the file exists: with the file's map
    /// kept, that body's bytes alone, checked against their checksum;
    /// otherwise the whole file, checked, and its map kept.
    fn body(&self, index: u64) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let bundle = index / TILE_WIDTH;
        let blob = Blob::Bodies(bundle);
        if !blob.committed_at(self.committed) {
            return Ok(None);
        }
        let offset = (index % TILE_WIDTH) as usize;
        if let Some(map) = self.maps.get(bundle) {
            let span = map.spans[offset];
            if span.len == ABSENT {
                return Ok(Some(None));
            }
            let Some(bytes) =
                self.files
                    .read_part(blob, map.file_len, span.at.into(), span.len as usize)?
            else {
                return Ok(None);
            };
            if crc32fast::hash(&bytes) != span.crc {
                return Err(StoreError::Corrupt(format!(
                    "{} is torn or altered: the body of leaf {index} changed since the file was checked",
                    blob.name()
                )));
            }
            return Ok(Some(Some(bytes)));
        }
        let generation = self.maps.generation();
        let read = self.checked(bundle, |first, value| {
            let map = BodyMap::of(first, value)?;
            let body = map.body_in(value, offset);
            Ok((map, body))
        })?;
        let Some((map, body)) = read else {
            return Ok(None);
        };
        self.maps.keep(bundle, Arc::new(map), generation);
        Ok(Some(body))
    }

    /// `read` applied to the checked chunk of full bundle `bundle`'s file
    /// (its first leaf and encoded value), if the committed tree covers it
    /// and the file exists.
    fn checked<T>(
        &self,
        bundle: u64,
        read: impl FnOnce(u64, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let blob = Blob::Bodies(bundle);
        if !blob.committed_at(self.committed) {
            return Ok(None);
        }
        let Some(bytes) = self.files.read(blob)? else {
            return Ok(None);
        };
        let start = bundle * TILE_WIDTH;
        let damaged =
            |why: String| StoreError::Corrupt(format!("{} is torn or altered: {why}", blob.name()));
        let value = verified_ref(&chunk_key(start), &bytes).map_err(|e| damaged(e.to_string()))?;
        // A full bundle's file holds every one of its leaves' bodies.
        let mut count = [0u8; 4];
        count.copy_from_slice(value.get(..4).unwrap_or(&[0; 4]));
        if u64::from(u32::from_be_bytes(count)) != TILE_WIDTH {
            return Err(damaged(format!("{} bodies", u32::from_be_bytes(count))));
        }
        read(start, value)
            .map(Some)
            .map_err(|e| damaged(e.to_string()))
    }

    /// Whether full bundle `bundle`'s bodies are a committed file.
    fn has_file(&self, bundle: u64) -> bool {
        let blob = Blob::Bodies(bundle);
        blob.committed_at(self.committed) && self.files.path(blob).exists()
    }
}

/// Where each body of a full bundle's file lies, and its checksum.
pub struct BodyMap {
    /// The file's length, checksum included: a file of another length is
    /// torn.
    file_len: u64,
    /// The leaves' bodies in order.
    spans: Box<[Span]>,
}

/// Where one body lies in its file: `len` is [`ABSENT`] for a deleted one.
#[derive(Clone, Copy, Debug)]
struct Span {
    at: u32,
    len: u32,
    /// CRC-32 of the body's bytes.
    crc: u32,
}

impl BodyMap {
    /// The map of the checked chunk `value` of the full bundle at `first`.
    fn of(first: u64, value: &[u8]) -> Result<BodyMap, StoreError> {
        let mut spans = Vec::with_capacity(TILE_WIDTH as usize);
        let base = value.as_ptr() as usize;
        Chunk::walk(first, value, |_, body| {
            spans.push(match body {
                Some(b) => Span {
                    // A chunk is far below 4 GiB: a bundle of 256 events.
                    at: (b.as_ptr() as usize - base) as u32,
                    len: b.len() as u32,
                    crc: crc32fast::hash(b),
                },
                None => Span {
                    at: 0,
                    len: ABSENT,
                    crc: 0,
                },
            })
        })?;
        Ok(BodyMap {
            file_len: (value.len() + RECORD_CHECKSUM_LEN) as u64,
            spans: spans.into_boxed_slice(),
        })
    }

    /// The body at `offset` of `value`, the chunk the map was made from
    /// (`None` if deleted).
    fn body_in(&self, value: &[u8], offset: usize) -> Option<Vec<u8>> {
        let span = self.spans.get(offset)?;
        (span.len != ABSENT).then(|| value[span.at as usize..][..span.len as usize].to_vec())
    }

    /// Bytes the map holds, for the budget.
    fn cost(&self) -> usize {
        std::mem::size_of::<BodyMap>() + std::mem::size_of_val(&*self.spans)
    }
}

/// Maps of body files kept at most, by their bytes: 8 MiB, a few
/// thousand bundles, about 40 pages of 100 hits in distinct bundles.
pub const BODY_MAPS_BYTES: usize = 8 << 20;

/// The maps of the body files read last, within [`BODY_MAPS_BYTES`], the
/// oldest dropped first. A map is of a committed file, which no commit
/// rewrites; a write of a body file drops its map all the same
/// ([`BodyMaps::forget`]), and a read that began before the write keeps
/// none, so no map outlives the file it describes.
pub struct BodyMaps {
    inner: Mutex<FifoCache<u64, Arc<BodyMap>>>,
}

impl Default for BodyMaps {
    fn default() -> Self {
        BodyMaps {
            inner: Mutex::new(FifoCache::new(BODY_MAPS_BYTES, |map| map.cost())),
        }
    }
}

impl BodyMaps {
    /// The maps; no update leaves them inconsistent halfway, so a panic
    /// elsewhere while one was held does not make them unusable.
    fn lock(&self) -> MutexGuard<'_, FifoCache<u64, Arc<BodyMap>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, bundle: u64) -> Option<Arc<BodyMap>> {
        self.lock().get(&bundle).cloned()
    }

    /// The generation a read starts in: its map is kept only if no body
    /// file was written meanwhile.
    fn generation(&self) -> u64 {
        self.lock().generation()
    }

    fn keep(&self, bundle: u64, map: Arc<BodyMap>, generation: u64) {
        self.lock().insert_if(generation, bundle, map);
    }

    /// Drops the maps of the body files in `written`, just written.
    pub fn forget(&self, written: &[(Blob, &[u8])]) {
        let mut kept = self.lock();
        for (blob, _) in written {
            if let Blob::Bodies(bundle) = *blob {
                kept.remove(&bundle);
            }
        }
    }
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

/// The sealed body of leaf `index`: from a sled chunk that holds it, else
/// from its bundle's file.
pub fn get(tree: &sled::Tree, files: &InFiles, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    if let Some(mut c) = chunk_at_or_before(tree, index)?.filter(|c| index < c.end()) {
        return Ok(c.bodies.swap_remove((index - c.first) as usize));
    }
    if Blob::Bodies(index / TILE_WIDTH).committed_at(files.committed)
        && read_mask(tree, index / TILE_WIDTH)?.is_some_and(|m| masked(&m, index % TILE_WIDTH))
    {
        return Ok(None);
    }
    Ok(files.body(index)?.flatten())
}

/// Adds a commit's bodies (`(index, body)`, any order) to `batch`: a chunk
/// per bundle, folded into one when the commit completes the bundle. The
/// chunks of completed bundles that the commit's tree `size` covers are
/// returned as the files to write before `batch` is applied (a restore may
/// hold bodies past its size: those stay in sled).
pub fn stage_commit(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    bodies: &[(u64, &[u8])],
    files: &InFiles,
    size: u64,
) -> Result<Vec<(Blob, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
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
        // Bodies past everything stored for the bundle are appended (and
        // may complete it); others replace stored ones (a restore or a
        // repair), in sled, over a file if the bundle has one.
        let appends = !files.has_file(bundle)
            && match tree
                .range(chunk_key(start)..chunk_key(start + TILE_WIDTH))
                .next_back()
            {
                None => true,
                Some(item) => {
                    let (k, v) = item.map_err(backend)?;
                    Chunk::decode(first_of(&k)?, &verified(&k, &v)?)?.end() <= lo
                }
            };
        if !appends {
            let changes: Vec<_> = group.iter().map(|(i, b)| (*i, Some(*b))).collect();
            rewrite(tree, batch, &changes, files)?;
            continue;
        }
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
                for c in &earlier {
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
            if chunk.first == start
                && chunk.bodies.len() as u64 == TILE_WIDTH
                && Blob::Bodies(bundle).committed_at(size)
            {
                let k = chunk_key(start);
                batch.remove(&k[..]);
                out.push((Blob::Bodies(bundle), checksummed(&k, &chunk.encode())));
            } else {
                put_chunk(batch, &chunk);
            }
        } else {
            // Not one run of leaves (a restore or a repair): one at a time.
            let changes: Vec<_> = group.iter().map(|(i, b)| (*i, Some(*b))).collect();
            rewrite(tree, batch, &changes, files)?;
        }
    }
    Ok(out)
}

/// Replaces or deletes (`None`) the bodies of leaves in `batch`, in the
/// order given. A leaf past every chunk extends the chunk that ends right
/// before it, or starts its own; in a bundle whose bodies are a file, such
/// chunks are the overlay that holds the change, deletions included.
/// Callers serialise these with commits.
pub fn rewrite(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    changes: &[(u64, Option<&[u8]>)],
    files: &InFiles,
) -> Result<(), StoreError> {
    // Chunks read or made so far, by first leaf: later changes see earlier ones.
    let mut chunks: BTreeMap<u64, Chunk> = BTreeMap::new();
    // Deletion masks read or changed so far, by bundle.
    let mut masks: BTreeMap<u64, Mask> = BTreeMap::new();
    for &(index, body) in changes {
        let bundle_start = index - index % TILE_WIDTH;
        let cached = chunks
            .range(bundle_start..=index)
            .next_back()
            .map(|(f, _)| *f);
        let stored = chunk_at_or_before(tree, index)?;
        let bundle = index / TILE_WIDTH;
        let in_chunk = cached.is_some_and(|f| chunks.get(&f).is_some_and(|c| index < c.end()))
            || stored.as_ref().is_some_and(|c| index < c.end());
        if body.is_none() && !in_chunk && files.has_file(bundle) {
            let mask = match masks.entry(bundle) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(read_mask(tree, bundle)?.unwrap_or_default())
                }
            };
            let offset = index % TILE_WIDTH;
            mask[(offset / 8) as usize] |= 1 << (offset % 8);
            continue;
        }
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
            if body.is_some() || files.has_file(index / TILE_WIDTH) {
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
    for (bundle, mask) in masks {
        let k = mask_key(bundle);
        batch.insert(&k[..], checksummed(&k, &mask));
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
/// skipped. A chunk that does not decode is one `Err` item; in a full
/// bundle whose file is damaged, the bundle is.
pub fn scan(
    tree: &sled::Tree,
    files: &InFiles,
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
    let skip_to = started.then_some(after);
    let limit = limit.max(1);
    let mut items = Vec::new();
    let page = |items, at: u64| ScanPage {
        items,
        next: Some(ScanCursor::after(at.to_be_bytes().to_vec())),
    };
    // Full bundles: the file (if any) with sled's chunks over it.
    let full = files.committed / TILE_WIDTH;
    let mut bundle = if started { after / TILE_WIDTH } else { 0 };
    while bundle < full {
        let start = bundle * TILE_WIDTH;
        let last = start + TILE_WIDTH - 1;
        let mut leaves: Vec<Option<Vec<u8>>> = vec![None; TILE_WIDTH as usize];
        let mut damage = files.chunk(bundle).map(|c| {
            if let Some(c) = c {
                leaves = c.bodies;
            }
        });
        match read_mask(tree, bundle) {
            Ok(Some(mask)) => {
                for (offset, leaf) in leaves.iter_mut().enumerate() {
                    if masked(&mask, offset as u64) {
                        *leaf = None;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => damage = damage.and(Err(e)),
        }
        for item in tree.range(chunk_key(start)..=chunk_key(last)) {
            let (k, v) = item.map_err(backend)?;
            let first = first_of(&k)?;
            match verified(&k, &v).and_then(|v| Chunk::decode(first, &v)) {
                Ok(c) => {
                    for (n, body) in c.bodies.into_iter().enumerate() {
                        leaves[(first - start) as usize + n] = body;
                    }
                }
                Err(e) => damage = damage.and(Err(e)),
            }
        }
        bundle += 1;
        if let Err(e) = damage {
            if !(started && last <= after) {
                items.push(Err(e));
                if items.len() >= limit {
                    return Ok(page(items, last));
                }
            }
            continue;
        }
        if let Some(at) = take_bodies(&mut items, start, leaves, skip_to, limit) {
            return Ok(page(items, at));
        }
    }
    // Open bundles: sled's chunks only.
    let from = if started && after >= full * TILE_WIDTH {
        after - after % TILE_WIDTH
    } else {
        full * TILE_WIDTH
    };
    for item in tree.range(chunk_key(from).to_vec()..vec![SEALED + 1]) {
        let (k, v) = item.map_err(backend)?;
        let first = first_of(&k)?;
        match verified(&k, &v).and_then(|v| Chunk::decode(first, &v)) {
            Err(e) => {
                if started && first <= after {
                    continue;
                }
                items.push(Err(e));
                if items.len() >= limit {
                    return Ok(page(items, first));
                }
            }
            Ok(c) => {
                if let Some(at) = take_bodies(&mut items, first, c.bodies, skip_to, limit) {
                    return Ok(page(items, at));
                }
            }
        }
    }
    Ok(ScanPage { items, next: None })
}

/// Adds the bodies of leaves `first..` after `skip_to` to `items`, deleted
/// ones skipped; once `items` holds `limit`, the leaf it stopped at.
fn take_bodies(
    items: &mut Vec<Result<(u64, Vec<u8>), StoreError>>,
    first: u64,
    bodies: Vec<Option<Vec<u8>>>,
    skip_to: Option<u64>,
    limit: usize,
) -> Option<u64> {
    for (n, body) in bodies.into_iter().enumerate() {
        let index = first + n as u64;
        if skip_to.is_some_and(|after| index <= after) {
            continue;
        }
        if let Some(body) = body {
            items.push(Ok((index, body)));
            if items.len() >= limit {
                return Some(index);
            }
        }
    }
    None
}

/// Problems in the deletion masks (fsck): each must verify and hold 32 bytes.
pub fn check_masks(tree: &sled::Tree) -> Vec<String> {
    let mut out = Vec::new();
    for item in tree.range(mask_key(0)..).keys() {
        let checked = item.map_err(backend).and_then(|k| {
            if k.first() != Some(&MASK) {
                return Ok(false);
            }
            let bundle = first_of(&k)?;
            read_mask(tree, bundle).map(|_| true)
        });
        match checked {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => out.push(e.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: u64) -> Vec<u8> {
        format!("sealed body {i}").into_bytes()
    }

    /// A database in `dir`: its tree of bodies and its blob files.
    fn store_in(dir: &std::path::Path) -> (sled::Db, sled::Tree, Files) {
        let db = sled::Config::new().path(dir).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        (db, tree, Files::new(dir))
    }

    /// What the store's commit does with bodies: stage them, write the
    /// files of completed bundles, apply, and move the committed size.
    fn commit(tree: &sled::Tree, files: &Files, committed: &mut u64, bodies: &[(u64, Vec<u8>)]) {
        let refs: Vec<_> = bodies.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let mut batch = sled::Batch::default();
        let in_files = InFiles {
            files,
            committed: *committed,
            maps: &BodyMaps::default(),
        };
        let size = bodies.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
        let blobs = stage_commit(tree, &mut batch, &refs, &in_files, size).unwrap();
        let blobs: Vec<_> = blobs.iter().map(|(b, v)| (*b, v.as_slice())).collect();
        files.write_all(&blobs).unwrap();
        tree.apply_batch(batch).unwrap();
        *committed = bodies
            .iter()
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(0)
            .max(*committed);
    }

    #[test]
    fn one_body_is_read_as_the_whole_chunk_reads_it_and_damage_is_refused() {
        let chunk = Chunk {
            first: 260,
            bodies: (260..270).map(|i| (i != 263).then(|| body(i))).collect(),
        };
        let bytes = chunk.encode();
        let map = BodyMap::of(260, &bytes).unwrap();
        for i in 260..270u64 {
            let whole = Chunk::decode(260, &bytes).unwrap();
            assert_eq!(
                map.body_in(&bytes, (i - 260) as usize),
                whole.bodies[(i - 260) as usize],
                "leaf {i}"
            );
        }
        assert_eq!(map.body_in(&bytes, 10), None);
        assert!(BodyMap::of(260, &bytes[..bytes.len() - 1]).is_err());
        assert!(BodyMap::of(260, &[bytes.as_slice(), &[0]].concat()).is_err());
    }

    #[test]
    fn commits_fold_a_bundle_into_one_chunk_and_rewrites_stay_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, tree, files) = store_in(dir.path());
        let mut committed = 0;
        let mut next = 0u64;
        for size in [3u64, 100, 1, 200, 300, 5] {
            let bodies: Vec<_> = (next..next + size).map(|i| (i, body(i))).collect();
            commit(&tree, &files, &mut committed, &bodies);
            next += size;
        }
        let in_files = InFiles {
            files: &files,
            committed,
            maps: &BodyMaps::default(),
        };
        for i in 0..next {
            assert_eq!(get(&tree, &in_files, i).unwrap(), Some(body(i)), "leaf {i}");
        }
        assert_eq!(get(&tree, &in_files, next).unwrap(), None);
        // Full bundles 0 and 1 are files; only open bundle 2 is in sled.
        let firsts: Vec<u64> = tree
            .scan_prefix([SEALED])
            .keys()
            .map(|k| first_of(&k.unwrap()).unwrap())
            .collect();
        assert!(firsts.iter().all(|f| *f >= 512), "{firsts:?}");
        assert!(files.path(Blob::Bodies(0)).exists() && files.path(Blob::Bodies(1)).exists());
        // Delete and rewrite single bodies, in a file's bundle and an open one.
        let mut batch = sled::Batch::default();
        rewrite(
            &tree,
            &mut batch,
            &[
                (300, None),
                (5, Some(b"first")),
                (5, Some(b"resealed")),
                (6, None),
                (600, None),
            ],
            &in_files,
        )
        .unwrap();
        tree.apply_batch(batch).unwrap();
        assert_eq!(get(&tree, &in_files, 300).unwrap(), None);
        assert_eq!(
            get(&tree, &in_files, 5).unwrap(),
            Some(b"resealed".to_vec())
        );
        assert_eq!(get(&tree, &in_files, 6).unwrap(), None);
        assert_eq!(get(&tree, &in_files, 600).unwrap(), None);
        assert_eq!(get(&tree, &in_files, 7).unwrap(), Some(body(7)));
        assert_eq!(get(&tree, &in_files, 301).unwrap(), Some(body(301)));
        let file = std::fs::read(files.path(Blob::Bodies(0))).unwrap();
        assert!(
            file.windows(b"sealed body 6".len())
                .any(|w| w == b"sealed body 6"),
            "the file is never rewritten: the deletion is an overlay"
        );
        // A scan yields every body left, once, in order, across pages.
        let mut seen = Vec::new();
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = scan(&tree, &in_files, &c, 7).unwrap();
            seen.extend(page.items.into_iter().map(|r| r.unwrap().0));
            cursor = page.next;
        }
        let expected: Vec<u64> = (0..next).filter(|i| ![6, 300, 600].contains(i)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn deletions_over_a_file_are_one_mask_per_bundle_not_a_chunk_per_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, tree, files) = store_in(dir.path());
        let mut committed = 0;
        let bodies: Vec<_> = (0..600).map(|i| (i, body(i))).collect();
        commit(&tree, &files, &mut committed, &bodies);
        let in_files = InFiles {
            files: &files,
            committed,
            maps: &BodyMaps::default(),
        };
        let keys = |prefix: u8| tree.scan_prefix([prefix]).count();
        let chunks_before = keys(SEALED);
        // Every third leaf of both full bundles, newest first, in two
        // changes as two cleanup steps would.
        let gone: Vec<u64> = (0..512).rev().filter(|i| i % 3 == 0).collect();
        for part in gone.chunks(100) {
            let changes: Vec<_> = part.iter().map(|i| (*i, None)).collect();
            let mut batch = sled::Batch::default();
            rewrite(&tree, &mut batch, &changes, &in_files).unwrap();
            tree.apply_batch(batch).unwrap();
        }
        assert_eq!(keys(SEALED), chunks_before, "no chunk per deleted leaf");
        assert_eq!(keys(MASK), 2, "one mask per bundle");
        for i in 0..600 {
            let expected = (!gone.contains(&i)).then(|| body(i));
            assert_eq!(get(&tree, &in_files, i).unwrap(), expected, "leaf {i}");
        }
        // A body written again over the mask (a restore) reads back.
        let mut batch = sled::Batch::default();
        rewrite(&tree, &mut batch, &[(3, Some(b"restored"))], &in_files).unwrap();
        tree.apply_batch(batch).unwrap();
        assert_eq!(
            get(&tree, &in_files, 3).unwrap(),
            Some(b"restored".to_vec())
        );
        let page = scan(&tree, &in_files, &ScanCursor::start(), 1000).unwrap();
        let seen: Vec<u64> = page.items.into_iter().map(|r| r.unwrap().0).collect();
        let expected: Vec<u64> = (0..600).filter(|i| *i == 3 || !gone.contains(i)).collect();
        assert_eq!(seen, expected);
        assert!(check_masks(&tree).is_empty());
        // A damaged mask is refused, not read as "nothing deleted".
        let k = mask_key(1);
        let mut raw = tree.get(k).unwrap().unwrap().to_vec();
        raw[0] ^= 0xff;
        tree.insert(k, raw).unwrap();
        assert!(get(&tree, &in_files, 300).is_err());
        assert_eq!(check_masks(&tree).len(), 1);
    }

    #[test]
    fn a_body_read_through_its_files_map_answers_as_the_whole_file_and_finds_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, tree, files) = store_in(dir.path());
        let mut committed = 0;
        // Leaf 50 is deleted before its bundle is folded into a file.
        let first: Vec<_> = (0..100).map(|i| (i, body(i))).collect();
        commit(&tree, &files, &mut committed, &first);
        let mut batch = sled::Batch::default();
        let no_maps = BodyMaps::default();
        let open = InFiles {
            files: &files,
            committed,
            maps: &no_maps,
        };
        rewrite(&tree, &mut batch, &[(50, None)], &open).unwrap();
        tree.apply_batch(batch).unwrap();
        let rest: Vec<_> = (100..600).map(|i| (i, body(i))).collect();
        commit(&tree, &files, &mut committed, &rest);
        let maps = BodyMaps::default();
        let in_files = InFiles {
            files: &files,
            committed,
            maps: &maps,
        };
        let expected = |i: u64| (i != 50).then(|| body(i));
        // The first read of each bundle reads its file whole and keeps its
        // map; the others read one body through it.
        for i in (0..600).chain(0..600) {
            assert_eq!(get(&tree, &in_files, i).unwrap(), expected(i), "leaf {i}");
        }
        assert!(maps.get(0).is_some() && maps.get(1).is_some() && maps.get(2).is_none());
        // A byte of leaf 7's body flipped on disk: the body's own checksum
        // finds it; its neighbours still read.
        let path = files.path(Blob::Bodies(0));
        let mut raw = std::fs::read(&path).unwrap();
        let at = raw
            .windows(b"sealed body 7".len())
            .position(|w| w == b"sealed body 7")
            .unwrap();
        raw[at] ^= 0x20;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &raw[at..=at], at as u64))
            .unwrap();
        let err = get(&tree, &in_files, 7).unwrap_err();
        assert!(err.to_string().contains("torn or altered"), "{err}");
        assert_eq!(get(&tree, &in_files, 8).unwrap(), Some(body(8)));
        // Without a map, the whole file's checksum finds it.
        let fresh = BodyMaps::default();
        let unmapped = InFiles {
            maps: &fresh,
            ..in_files
        };
        assert!(get(&tree, &unmapped, 8).is_err());
        // A file cut short is torn for a read through the map as well.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(raw.len() as u64 - 1))
            .unwrap();
        assert!(get(&tree, &in_files, 8).is_err());
        // A write of the file drops its map, and a read that began before
        // the write keeps none.
        let started = maps.generation();
        maps.forget(&[(Blob::Bodies(0), b"".as_slice())]);
        assert!(maps.get(0).is_none());
        let map = maps.get(1).unwrap();
        maps.keep(0, map, started);
        assert!(maps.get(0).is_none());
    }

    #[test]
    fn the_body_maps_stay_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, tree, files) = store_in(dir.path());
        let mut committed = 0;
        let bodies: Vec<_> = (0..256).map(|i| (i, body(i))).collect();
        commit(&tree, &files, &mut committed, &bodies);
        let maps = BodyMaps::default();
        let in_files = InFiles {
            files: &files,
            committed,
            maps: &maps,
        };
        get(&tree, &in_files, 0).unwrap();
        let map = maps.get(0).unwrap();
        let fits = BODY_MAPS_BYTES / map.cost();
        assert!(fits > 2_000, "{fits} bundles");
        for bundle in 1..fits as u64 + 10 {
            maps.keep(bundle, map.clone(), maps.generation());
            assert!(maps.lock().bytes() <= BODY_MAPS_BYTES);
        }
        let kept = maps.lock();
        assert_eq!(kept.len(), fits);
        assert_eq!(kept.order_len(), fits);
        // The oldest went first.
        assert!(kept.get(&0).is_none() && kept.get(&(fits as u64 + 9)).is_some());
    }

    #[test]
    fn a_body_file_beyond_the_committed_size_is_not_read_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, tree, files) = store_in(dir.path());
        let mut committed = 0;
        commit(&tree, &files, &mut committed, &[(0, body(0))]);
        // A batch that completed bundle 0 wrote its file and never committed.
        files
            .write_all(&[(Blob::Bodies(0), b"left over".as_slice())])
            .unwrap();
        let in_files = InFiles {
            files: &files,
            committed,
            maps: &BodyMaps::default(),
        };
        assert_eq!(get(&tree, &in_files, 0).unwrap(), Some(body(0)));
        assert_eq!(get(&tree, &in_files, 1).unwrap(), None);
        let rest: Vec<_> = (1..256).map(|i| (i, body(i + 1000))).collect();
        commit(&tree, &files, &mut committed, &rest);
        let in_files = InFiles {
            files: &files,
            committed,
            maps: &BodyMaps::default(),
        };
        assert_eq!(get(&tree, &in_files, 0).unwrap(), Some(body(0)));
        assert_eq!(get(&tree, &in_files, 255).unwrap(), Some(body(1255)));
    }

    #[test]
    fn bodies_written_one_at_a_time_join_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, tree, files) = store_in(dir.path());
        let in_files = InFiles {
            files: &files,
            committed: 0,
            maps: &BodyMaps::default(),
        };
        for i in 0..300u64 {
            let mut batch = sled::Batch::default();
            rewrite(&tree, &mut batch, &[(i, Some(&body(i)))], &in_files).unwrap();
            tree.apply_batch(batch).unwrap();
        }
        // Several new bodies in one change join too.
        let many: Vec<Vec<u8>> = (300..310).map(body).collect();
        let changes: Vec<_> = (300..310u64)
            .zip(&many)
            .map(|(i, b)| (i, Some(b.as_slice())))
            .collect();
        let mut batch = sled::Batch::default();
        rewrite(&tree, &mut batch, &changes, &in_files).unwrap();
        tree.apply_batch(batch).unwrap();
        assert_eq!(get(&tree, &in_files, 309).unwrap(), Some(body(309)));
        assert_eq!(
            tree.scan_prefix([SEALED]).count(),
            2,
            "one chunk per bundle"
        );
        for i in 0..310 {
            assert_eq!(get(&tree, &in_files, i).unwrap(), Some(body(i)));
        }
    }
}
