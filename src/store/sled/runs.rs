//! A digest-to-leaf-index map that costs sled a key per thousands of
//! entries, not one per entry: the idempotency index and the leaf-hash
//! index of the sled backend.
//!
//! sled 0.34 spends about a kilobyte of resident memory per small key
//! written in batches, and the log writes one entry per event into each of
//! these maps. So entries are kept as in a log-structured merge tree:
//!
//! - **pending**: each commit writes its new entries as one record
//!   `p || map || seq`, in the commit's own atomic batch; in memory they
//!   are a hash map. On open, the pending records are read back.
//! - **runs**: once [`FLUSH_ENTRIES`] entries are pending, the commit that
//!   passes the mark writes them, sorted, as a run of 4 KiB blocks
//!   (`r || map || run || 0 || block`) with the run's fences (first digest
//!   of every block) and, for the idempotency map, a blocked Bloom filter,
//!   and deletes the pending records, in the same batch. The manifest
//!   (`R || map`) names the runs.
//! - **compaction**: a background thread merges [`MERGE_WIDTH`] runs of
//!   one level into one run of the next, so a map of n entries has
//!   O(log n) runs. The merged run is written unnamed, then one batch
//!   names it and drops its inputs from the manifest, then the inputs'
//!   blocks are deleted. A crash at any point leaves every entry reachable
//!   through the manifest; blocks of runs it does not name are garbage,
//!   which the manifest lists so that the next start deletes them.
//!
//! Lookups read the pending map, then the runs newest first: a Bloom
//! filter (if kept) rules a run out in one cache line; otherwise the
//! fences name the one block that can hold the digest. Memory per entry
//! is the pending map's (bounded by `FLUSH_ENTRIES`) plus 10 bits of
//! filter and 16 bytes of fence per block of 170 entries.
//!
//! Digests are 16 bytes: the idempotency key's SHA-256 prefix, or the leaf
//! hash's prefix (the caller confirms a leaf-hash hit against the tile).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::{backend, checksummed, verified};
use crate::store::fields::Fields;
use crate::store::{ScanCursor, ScanPage, StoreError};

/// A 16-byte key of the map.
pub type Digest = [u8; 16];

/// Entries pending before a commit writes them out as a run.
pub const FLUSH_ENTRIES: usize = 32_768;
/// Runs of one level merged into one of the next.
pub const MERGE_WIDTH: usize = 4;
/// Bytes of one entry: digest and big-endian leaf index.
const ENTRY: usize = 24;
/// Entries per block (4,080 bytes plus the checksum).
const BLOCK_ENTRIES: usize = 170;
/// Blocks written per sled batch while merging.
const MERGE_BATCH_BLOCKS: usize = 256;

const PENDING: u8 = b'p';
const RUN: u8 = b'r';
const MANIFEST: u8 = b'R';
const KIND_BLOCK: u8 = 0;
const KIND_FENCES: u8 = 1;
const KIND_BLOOM: u8 = 2;

fn pending_key(map: u8, seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = PENDING;
    k[1] = map;
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn run_key(map: u8, run: u64, kind: u8, block: u32) -> [u8; 15] {
    let mut k = [0u8; 15];
    k[0] = RUN;
    k[1] = map;
    k[2..10].copy_from_slice(&run.to_be_bytes());
    k[10] = kind;
    k[11..].copy_from_slice(&block.to_be_bytes());
    k
}

fn run_prefix(map: u8, run: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..10].copy_from_slice(&run_key(map, run, 0, 0)[..10]);
    k
}

fn encode_entries<'a>(entries: impl IntoIterator<Item = &'a (Digest, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (d, i) in entries {
        out.extend_from_slice(d);
        out.extend_from_slice(&i.to_be_bytes());
    }
    out
}

fn decode_entries(
    bytes: &[u8],
    what: &dyn Fn() -> String,
) -> Result<Vec<(Digest, u64)>, StoreError> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(StoreError::Corrupt(format!(
            "{}: not a whole number of entries",
            what()
        )));
    }
    Ok(bytes
        .chunks_exact(ENTRY)
        .map(|c| {
            let mut d = [0u8; 16];
            d.copy_from_slice(&c[..16]);
            let mut i = [0u8; 8];
            i.copy_from_slice(&c[16..]);
            (d, u64::from_be_bytes(i))
        })
        .collect())
}

/// The entry of `digest` in a block's raw entries (sorted), by binary search.
fn search_block(bytes: &[u8], digest: &Digest) -> Option<u64> {
    let n = bytes.len() / ENTRY;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let at = &bytes[mid * ENTRY..mid * ENTRY + 16];
        match at.cmp(digest.as_slice()) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let mut i = [0u8; 8];
                i.copy_from_slice(&bytes[mid * ENTRY + 16..mid * ENTRY + ENTRY]);
                return Some(u64::from_be_bytes(i));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Bloom filter: one 512-bit block per digest, 8 bits set in it.

/// Bits of filter per entry.
const BLOOM_BITS_PER_ENTRY: usize = 10;

#[derive(Clone)]
struct Bloom {
    blocks: Vec<[u64; 8]>,
}

impl Bloom {
    fn new(entries: usize) -> Bloom {
        let blocks = (entries * BLOOM_BITS_PER_ENTRY).div_ceil(512).max(1);
        Bloom {
            blocks: vec![[0u64; 8]; blocks],
        }
    }

    /// The block and the 8 bit positions of `d` (a digest is uniformly
    /// random already, so its bytes are the hash).
    fn probes(&self, d: &Digest) -> (usize, [u16; 8]) {
        let block = u64::from_be_bytes(d[..8].try_into().unwrap_or_default());
        let bits = u64::from_be_bytes(d[8..].try_into().unwrap_or_default());
        let mut out = [0u16; 8];
        for (k, o) in out.iter_mut().enumerate() {
            *o = ((bits >> (k * 8)) as u16 ^ ((bits >> (k * 8 + 3)) as u16) << 1) & 511;
        }
        ((block % self.blocks.len() as u64) as usize, out)
    }

    fn insert(&mut self, d: &Digest) {
        let (b, bits) = self.probes(d);
        for bit in bits {
            self.blocks[b][usize::from(bit / 64)] |= 1 << (bit % 64);
        }
    }

    fn contains(&self, d: &Digest) -> bool {
        let (b, bits) = self.probes(d);
        bits.iter()
            .all(|bit| self.blocks[b][usize::from(bit / 64)] & (1 << (bit % 64)) != 0)
    }

    fn encode(&self) -> Vec<u8> {
        self.blocks
            .iter()
            .flat_map(|b| b.iter().flat_map(|w| w.to_be_bytes()))
            .collect()
    }

    fn decode(bytes: &[u8]) -> Option<Bloom> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(64) {
            return None;
        }
        Some(Bloom {
            blocks: bytes
                .chunks_exact(64)
                .map(|c| {
                    let mut b = [0u64; 8];
                    for (w, chunk) in b.iter_mut().zip(c.chunks_exact(8)) {
                        *w = u64::from_be_bytes(chunk.try_into().unwrap_or_default());
                    }
                    b
                })
                .collect(),
        })
    }
}

// ---------------------------------------------------------------------------
// The manifest and the runs it names.

/// What the manifest says of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunMeta {
    id: u64,
    level: u8,
    entries: u64,
    blocks: u32,
}

/// The map's durable description: its runs, newest last, and garbage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Manifest {
    next_run: u64,
    runs: Vec<RunMeta>,
    /// Runs whose blocks may exist but are not named: a merge that did not
    /// finish, or inputs of a finished merge. Deleted by the compactor.
    garbage: Vec<u64>,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.next_run.to_be_bytes().to_vec();
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.id.to_be_bytes());
            out.push(r.level);
            out.extend_from_slice(&r.entries.to_be_bytes());
            out.extend_from_slice(&r.blocks.to_be_bytes());
        }
        out.extend_from_slice(&(self.garbage.len() as u32).to_be_bytes());
        for g in &self.garbage {
            out.extend_from_slice(&g.to_be_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Manifest> {
        let mut r = Fields(b);
        let next_run = r.u64()?;
        let mut runs = Vec::new();
        for _ in 0..r.u32()? {
            runs.push(RunMeta {
                id: r.u64()?,
                level: r.u8()?,
                entries: r.u64()?,
                blocks: r.u32()?,
            });
        }
        let mut garbage = Vec::new();
        for _ in 0..r.u32()? {
            garbage.push(r.u64()?);
        }
        r.is_empty().then_some(Manifest {
            next_run,
            runs,
            garbage,
        })
    }
}

/// A run as lookups use it.
struct Run {
    meta: RunMeta,
    fences: Vec<Digest>,
    bloom: Option<Bloom>,
}

/// The entries not yet in a run.
#[derive(Default)]
struct Pending {
    entries: HashMap<Digest, u64>,
    /// Keys of the pending records holding them.
    keys: Vec<[u8; 10]>,
    next_seq: u64,
}

/// One digest map (see the module comment).
pub struct RunMap {
    tree: sled::Tree,
    map: u8,
    name: &'static str,
    bloom: bool,
    pending: RwLock<Pending>,
    runs: RwLock<Arc<Vec<Arc<Run>>>>,
    manifest: Mutex<Manifest>,
    /// What did not load on open (a damaged pending record or run): the
    /// map then lacks those entries, so only an offline check opens it.
    damage: Vec<String>,
}

/// What a commit adds to the map, staged into its sled batch; apply it
/// with [`RunMap::applied`] once the batch is durable.
pub struct Staged<'a> {
    entries: Vec<(Digest, u64)>,
    flushed: Option<(MutexGuard<'a, Manifest>, Manifest, Arc<Run>)>,
    key: Option<[u8; 10]>,
}

fn manifest_key(map: u8) -> [u8; 2] {
    [MANIFEST, map]
}

impl RunMap {
    /// Opens map `map` (one byte, distinct per map) of `tree`: reads the
    /// manifest, every run's fences and filter, and the pending records.
    pub fn open(
        tree: &sled::Tree,
        map: u8,
        name: &'static str,
        bloom: bool,
    ) -> Result<RunMap, StoreError> {
        let mkey = manifest_key(map);
        let manifest = match tree.get(mkey).map_err(backend)? {
            Some(v) => Manifest::decode(&verified(&mkey, &v)?)
                .ok_or_else(|| StoreError::Corrupt(format!("the {name} manifest is malformed")))?,
            None => Manifest::default(),
        };
        let mut runs = Vec::new();
        let mut damage = Vec::new();
        for meta in &manifest.runs {
            match load_run(tree, map, name, *meta, bloom) {
                Ok(run) => runs.push(Arc::new(run)),
                Err(StoreError::Corrupt(why)) => damage.push(why),
                Err(e) => return Err(e),
            }
        }
        let mut pending = Pending::default();
        for item in tree.scan_prefix([PENDING, map]) {
            let (k, v) = item.map_err(backend)?;
            let Ok(key) = <[u8; 10]>::try_from(k.as_ref()) else {
                damage.push(format!(
                    "{name}: pending key {} is malformed",
                    hex::encode(&k)
                ));
                continue;
            };
            let seq = u64::from_be_bytes(key[2..].try_into().unwrap_or_default());
            let what = || format!("{name} pending record {seq}");
            pending.keys.push(key);
            pending.next_seq = seq + 1;
            match verified(&key, &v).and_then(|v| decode_entries(&v, &what)) {
                Ok(entries) => {
                    for (d, i) in entries {
                        pending.entries.entry(d).or_insert(i);
                    }
                }
                Err(e) => damage.push(format!("{}: {e}", what())),
            }
        }
        runs.reverse();
        Ok(RunMap {
            tree: tree.clone(),
            map,
            name,
            bloom,
            pending: RwLock::new(pending),
            runs: RwLock::new(Arc::new(runs)),
            manifest: Mutex::new(manifest),
            damage,
        })
    }

    /// What did not load on open (see the field); empty for a sound map.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Run>>> {
        self.runs.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The leaf index `digest` maps to, if any.
    pub fn get(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        if let Some(i) = self
            .pending
            .read()
            .ok()
            .and_then(|p| p.entries.get(digest).copied())
        {
            return Ok(Some(i));
        }
        // A merge may delete the blocks of runs in an older snapshot: a
        // block found missing means "look again in the current one".
        'retry: for _ in 0..8 {
            for run in self.snapshot().iter() {
                if let Some(b) = &run.bloom
                    && !b.contains(digest)
                {
                    continue;
                }
                let at = run.fences.partition_point(|f| f <= digest);
                if at == 0 {
                    continue;
                }
                let key = run_key(self.map, run.meta.id, KIND_BLOCK, (at - 1) as u32);
                let Some(v) = self.tree.get(key).map_err(backend)? else {
                    continue 'retry;
                };
                let block = verified(&key, &v)?;
                if let Some(i) = search_block(&block, digest) {
                    return Ok(Some(i));
                }
            }
            return Ok(None);
        }
        Err(StoreError::Backend(format!(
            "{}: the runs kept changing during a lookup",
            self.name
        )))
    }

    /// Stages `entries` into `batch`: as a pending record, or, once enough
    /// are pending, as a new run with every pending entry.
    pub fn stage(
        &self,
        batch: &mut sled::Batch,
        entries: Vec<(Digest, u64)>,
    ) -> Result<Staged<'_>, StoreError> {
        if entries.is_empty() {
            return Ok(Staged {
                entries,
                flushed: None,
                key: None,
            });
        }
        let pending = self
            .pending
            .read()
            .map_err(|_| backend("pending lock poisoned"))?;
        if pending.entries.len() + entries.len() < FLUSH_ENTRIES {
            let key = pending_key(self.map, pending.next_seq);
            batch.insert(&key[..], checksummed(&key, &encode_entries(&entries)));
            return Ok(Staged {
                entries,
                flushed: None,
                key: Some(key),
            });
        }
        let mut all: Vec<(Digest, u64)> = pending.entries.iter().map(|(d, i)| (*d, *i)).collect();
        all.extend(entries.iter().copied());
        for k in &pending.keys {
            batch.remove(&k[..]);
        }
        drop(pending);
        let guard = self
            .manifest
            .lock()
            .map_err(|_| backend("manifest lock poisoned"))?;
        let mut next = guard.clone();
        let id = next.next_run;
        next.next_run += 1;
        let run = self.write_run(batch, id, 0, sorted_unique(all))?;
        next.runs.push(run.meta);
        put_manifest(batch, self.map, &next);
        Ok(Staged {
            entries,
            flushed: Some((guard, next, Arc::new(run))),
            key: None,
        })
    }

    /// Writes `entries` (sorted, unique) as run `id` into `batch`.
    fn write_run(
        &self,
        batch: &mut sled::Batch,
        id: u64,
        level: u8,
        entries: Vec<(Digest, u64)>,
    ) -> Result<Run, StoreError> {
        let mut writer = RunWriter::new(self.map, id, level, self.bloom, entries.len());
        for e in entries {
            writer.push(e, batch);
        }
        Ok(writer.finish(batch))
    }

    /// The staged batch is durable: its entries become visible.
    pub fn applied(&self, staged: Staged<'_>) {
        let Staged {
            entries,
            flushed,
            key,
        } = staged;
        let Ok(mut pending) = self.pending.write() else {
            return;
        };
        match flushed {
            None => {
                if let Some(key) = key {
                    for (d, i) in entries {
                        pending.entries.entry(d).or_insert(i);
                    }
                    pending.keys.push(key);
                    pending.next_seq += 1;
                }
            }
            Some((mut guard, next, run)) => {
                let mut runs: Vec<Arc<Run>> = vec![run];
                runs.extend(self.snapshot().iter().cloned());
                if let Ok(mut r) = self.runs.write() {
                    *r = Arc::new(runs);
                }
                *guard = next;
                let next_seq = pending.next_seq;
                *pending = Pending {
                    next_seq,
                    ..Pending::default()
                };
            }
        }
    }

    /// Runs named by the manifest, newest first: `(id, level, entries)`.
    #[cfg(test)]
    fn runs(&self) -> Vec<(u64, u8, u64)> {
        self.snapshot()
            .iter()
            .map(|r| (r.meta.id, r.meta.level, r.meta.entries))
            .collect()
    }

    /// Up to `limit` entries after `cursor`: the pending records, then
    /// every named run's blocks, in key order. An entry may be yielded
    /// twice when a merge runs during the scan, never missed.
    pub fn scan(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(Digest, u64)>, StoreError> {
        use std::ops::Bound;
        let (start, skip) = match cursor.key() {
            Some(c) if c.len() > 4 => {
                let (k, off) = c.split_at(c.len() - 4);
                (
                    k.to_vec(),
                    u32::from_be_bytes(off.try_into().unwrap_or_default()) as usize,
                )
            }
            _ => (vec![PENDING, self.map], 0),
        };
        let named: Vec<u64> = self.snapshot().iter().map(|r| r.meta.id).collect();
        let mut items = Vec::new();
        let ranges = [
            (vec![PENDING, self.map], vec![PENDING, self.map + 1]),
            (vec![RUN, self.map], vec![RUN, self.map + 1]),
        ];
        for (lo, hi) in ranges {
            let from = if start >= lo {
                start.clone()
            } else {
                lo.clone()
            };
            if from >= hi {
                continue;
            }
            for item in self
                .tree
                .range::<Vec<u8>, _>((Bound::Included(from), Bound::Excluded(hi)))
            {
                let (k, v) = item.map_err(backend)?;
                if k[0] == RUN
                    && (k.len() != 15
                        || k[10] != KIND_BLOCK
                        || !named
                            .contains(&u64::from_be_bytes(k[2..10].try_into().unwrap_or_default())))
                {
                    continue;
                }
                let what = || format!("{} record {}", self.name, hex::encode(&k));
                let decoded = verified(&k, &v).and_then(|v| decode_entries(&v, &what));
                let first = if k.as_ref() == start.as_slice() {
                    skip
                } else {
                    0
                };
                match decoded {
                    Err(e) => {
                        items.push(Err(e));
                        if items.len() >= limit {
                            let mut c = k.to_vec();
                            c.extend_from_slice(&u32::MAX.to_be_bytes());
                            return Ok(ScanPage {
                                items,
                                next: Some(ScanCursor::after(c)),
                            });
                        }
                    }
                    Ok(entries) => {
                        for (n, e) in entries.iter().enumerate().skip(first) {
                            items.push(Ok(*e));
                            if items.len() >= limit {
                                let mut c = k.to_vec();
                                c.extend_from_slice(&((n + 1) as u32).to_be_bytes());
                                return Ok(ScanPage {
                                    items,
                                    next: Some(ScanCursor::after(c)),
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(ScanPage { items, next: None })
    }

    // -----------------------------------------------------------------------
    // Compaction (background; see the module comment).

    /// Does one unit of background work: deletes the blocks of one
    /// garbage run, or merges one level that has [`MERGE_WIDTH`] runs.
    /// Returns whether there was work. `sync` makes written batches durable.
    pub fn compact_once(
        &self,
        sync: &dyn Fn() -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let manifest = self
            .manifest
            .lock()
            .map_err(|_| backend("manifest lock poisoned"))?
            .clone();
        if let Some(&g) = manifest.garbage.first() {
            self.delete_run_blocks(g, sync)?;
            self.update_manifest(sync, |m| m.garbage.retain(|x| *x != g))?;
            return Ok(true);
        }
        let Some(level) = (0..=u8::MAX)
            .find(|l| manifest.runs.iter().filter(|r| r.level == *l).count() >= MERGE_WIDTH)
        else {
            return Ok(false);
        };
        let inputs: Vec<RunMeta> = manifest
            .runs
            .iter()
            .filter(|r| r.level == level)
            .take(MERGE_WIDTH)
            .copied()
            .collect();
        // Name the output as garbage first: a crash while it is written
        // leaves blocks the next start deletes.
        let id = self.update_manifest(sync, |m| {
            let id = m.next_run;
            m.next_run += 1;
            m.garbage.push(id);
            id
        })?;
        let total: u64 = inputs.iter().map(|r| r.entries).sum();
        let mut writer = RunWriter::new(self.map, id, level + 1, self.bloom, total as usize);
        let mut sources: Vec<RunReader> = inputs.iter().map(|m| RunReader::new(self, *m)).collect();
        let mut heads: Vec<Option<(Digest, u64)>> = Vec::with_capacity(sources.len());
        for s in &mut sources {
            heads.push(s.next()?);
        }
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        let mut last: Option<Digest> = None;
        loop {
            // Smallest digest; on a tie the older run (its first index) wins.
            let mut best: Option<usize> = None;
            for (n, h) in heads.iter().enumerate() {
                if let Some((d, i)) = h
                    && best.is_none_or(|b| {
                        let (bd, bi) = heads[b].unwrap_or_default();
                        (*d, *i) < (bd, bi)
                    })
                {
                    best = Some(n);
                }
            }
            let Some(b) = best else { break };
            let e = heads[b].take().unwrap_or_default();
            heads[b] = sources[b].next()?;
            if last == Some(e.0) {
                continue;
            }
            last = Some(e.0);
            if writer.push(e, &mut batch) {
                in_batch += 1;
                if in_batch >= MERGE_BATCH_BLOCKS {
                    self.tree
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(backend)?;
                    in_batch = 0;
                }
            }
        }
        let run = writer.finish(&mut batch);
        self.tree.apply_batch(batch).map_err(backend)?;
        sync()?;
        // One batch names the output and drops the inputs. Lookups switch
        // under the manifest lock, which a commit adding a run also holds,
        // so neither switch undoes the other; the inputs' blocks go only
        // in a later pass.
        let run = Arc::new(run);
        self.update_manifest(sync, |m| {
            m.runs.retain(|r| !inputs.iter().any(|i| i.id == r.id));
            let pos = m
                .runs
                .iter()
                .position(|r| r.id > id)
                .unwrap_or(m.runs.len());
            m.runs.insert(pos, run.meta);
            m.garbage.retain(|g| *g != id);
            m.garbage.extend(inputs.iter().map(|i| i.id));
            let mut runs: Vec<Arc<Run>> = self
                .snapshot()
                .iter()
                .filter(|r| !inputs.iter().any(|i| i.id == r.meta.id))
                .cloned()
                .collect();
            runs.push(run.clone());
            runs.sort_by_key(|r| std::cmp::Reverse(r.meta.id));
            if let Ok(mut r) = self.runs.write() {
                *r = Arc::new(runs);
            }
        })?;
        Ok(true)
    }

    /// Changes the manifest durably: `change` edits a copy, one batch
    /// writes it, `sync` makes it durable, and only then does it replace
    /// the manifest in memory.
    fn update_manifest<T>(
        &self,
        sync: &dyn Fn() -> Result<(), StoreError>,
        change: impl FnOnce(&mut Manifest) -> T,
    ) -> Result<T, StoreError> {
        let mut guard = self
            .manifest
            .lock()
            .map_err(|_| backend("manifest lock poisoned"))?;
        let mut next = guard.clone();
        let out = change(&mut next);
        let mut batch = sled::Batch::default();
        put_manifest(&mut batch, self.map, &next);
        self.tree.apply_batch(batch).map_err(backend)?;
        sync()?;
        *guard = next;
        Ok(out)
    }

    fn delete_run_blocks(
        &self,
        run: u64,
        sync: &dyn Fn() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = run_prefix(self.map, run);
        loop {
            let keys: Vec<sled::IVec> = self
                .tree
                .scan_prefix(prefix)
                .keys()
                .take(4096)
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            if keys.is_empty() {
                return sync();
            }
            let mut batch = sled::Batch::default();
            for k in keys {
                batch.remove(k);
            }
            self.tree.apply_batch(batch).map_err(backend)?;
        }
    }

    /// Every named run's blocks in order, checked: sorted digests, block
    /// count and entries as the manifest says, fences matching. For fsck.
    pub fn check(&self) -> Vec<String> {
        let mut problems = self.damage.clone();
        for run in self.snapshot().iter() {
            let mut reader = RunReader::new(self, run.meta);
            let mut count = 0u64;
            let mut last: Option<Digest> = None;
            loop {
                match reader.next() {
                    Ok(Some((d, _))) => {
                        if last.is_some_and(|l| l >= d) {
                            problems.push(format!(
                                "{} run {}: digests out of order",
                                self.name, run.meta.id
                            ));
                            break;
                        }
                        if let Some(b) = &run.bloom
                            && !b.contains(&d)
                        {
                            problems.push(format!(
                                "{} run {}: its filter misses an entry",
                                self.name, run.meta.id
                            ));
                            break;
                        }
                        last = Some(d);
                        count += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        problems.push(format!("{} run {}: {e}", self.name, run.meta.id));
                        break;
                    }
                }
            }
            if count != run.meta.entries && problems.is_empty() {
                problems.push(format!(
                    "{} run {}: {count} entries, the manifest says {}",
                    self.name, run.meta.id, run.meta.entries
                ));
            }
        }
        problems
    }
}

fn put_manifest(batch: &mut sled::Batch, map: u8, m: &Manifest) {
    let k = manifest_key(map);
    batch.insert(&k[..], checksummed(&k, &m.encode()));
}

fn load_run(
    tree: &sled::Tree,
    map: u8,
    name: &str,
    meta: RunMeta,
    bloom: bool,
) -> Result<Run, StoreError> {
    let fk = run_key(map, meta.id, KIND_FENCES, 0);
    let fences = tree.get(fk).map_err(backend)?.ok_or_else(|| {
        StoreError::Corrupt(format!("{name} run {}: its fences are missing", meta.id))
    })?;
    let fences = verified(&fk, &fences)?;
    if fences.len() != meta.blocks as usize * 16 {
        return Err(StoreError::Corrupt(format!(
            "{name} run {}: fences do not match its blocks",
            meta.id
        )));
    }
    let fences = fences
        .chunks_exact(16)
        .map(|c| c.try_into().unwrap_or_default())
        .collect();
    let bloom = if bloom {
        let bk = run_key(map, meta.id, KIND_BLOOM, 0);
        let raw = tree.get(bk).map_err(backend)?.ok_or_else(|| {
            StoreError::Corrupt(format!("{name} run {}: its filter is missing", meta.id))
        })?;
        Some(Bloom::decode(&verified(&bk, &raw)?).ok_or_else(|| {
            StoreError::Corrupt(format!("{name} run {}: its filter is malformed", meta.id))
        })?)
    } else {
        None
    };
    Ok(Run {
        meta,
        fences,
        bloom,
    })
}

/// Sorted by digest, the first index of a repeated digest kept.
fn sorted_unique(mut all: Vec<(Digest, u64)>) -> Vec<(Digest, u64)> {
    all.sort_unstable();
    all.dedup_by_key(|e| e.0);
    all
}

/// Writes one run block by block.
struct RunWriter {
    map: u8,
    meta: RunMeta,
    block: Vec<(Digest, u64)>,
    fences: Vec<Digest>,
    bloom: Option<Bloom>,
}

impl RunWriter {
    fn new(map: u8, id: u64, level: u8, bloom: bool, expected: usize) -> RunWriter {
        RunWriter {
            map,
            meta: RunMeta {
                id,
                level,
                entries: 0,
                blocks: 0,
            },
            block: Vec::with_capacity(BLOCK_ENTRIES),
            fences: Vec::new(),
            bloom: bloom.then(|| Bloom::new(expected)),
        }
    }

    /// Adds the next entry (digests ascending); true when a block was written.
    fn push(&mut self, e: (Digest, u64), batch: &mut sled::Batch) -> bool {
        if let Some(b) = &mut self.bloom {
            b.insert(&e.0);
        }
        self.block.push(e);
        self.meta.entries += 1;
        if self.block.len() == BLOCK_ENTRIES {
            self.write_block(batch);
            return true;
        }
        false
    }

    fn write_block(&mut self, batch: &mut sled::Batch) {
        let key = run_key(self.map, self.meta.id, KIND_BLOCK, self.meta.blocks);
        self.fences.push(self.block[0].0);
        batch.insert(&key[..], checksummed(&key, &encode_entries(&self.block)));
        self.block.clear();
        self.meta.blocks += 1;
    }

    fn finish(mut self, batch: &mut sled::Batch) -> Run {
        if !self.block.is_empty() {
            self.write_block(batch);
        }
        let fk = run_key(self.map, self.meta.id, KIND_FENCES, 0);
        batch.insert(&fk[..], checksummed(&fk, &self.fences.concat()));
        if let Some(b) = &self.bloom {
            let bk = run_key(self.map, self.meta.id, KIND_BLOOM, 0);
            batch.insert(&bk[..], checksummed(&bk, &b.encode()));
        }
        Run {
            meta: self.meta,
            fences: self.fences,
            bloom: self.bloom,
        }
    }
}

/// Reads one run's entries in order, a block at a time.
struct RunReader<'a> {
    map: &'a RunMap,
    meta: RunMeta,
    block: u32,
    entries: std::vec::IntoIter<(Digest, u64)>,
}

impl<'a> RunReader<'a> {
    fn new(map: &'a RunMap, meta: RunMeta) -> RunReader<'a> {
        RunReader {
            map,
            meta,
            block: 0,
            entries: Vec::new().into_iter(),
        }
    }

    fn next(&mut self) -> Result<Option<(Digest, u64)>, StoreError> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            if self.block >= self.meta.blocks {
                return Ok(None);
            }
            let key = run_key(self.map.map, self.meta.id, KIND_BLOCK, self.block);
            let v = self.map.tree.get(key).map_err(backend)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{} run {}: block {} is missing",
                    self.map.name, self.meta.id, self.block
                ))
            })?;
            let what = || {
                format!(
                    "{} run {} block {}",
                    self.map.name, self.meta.id, self.block
                )
            };
            self.entries = decode_entries(&verified(&key, &v)?, &what)?.into_iter();
            self.block += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u64) -> Digest {
        let h = crate::merkle::leaf_hash(&n.to_be_bytes());
        h.as_bytes()[..16].try_into().unwrap()
    }

    fn commit(map: &RunMap, tree: &sled::Tree, entries: Vec<(Digest, u64)>) {
        let mut batch = sled::Batch::default();
        let staged = map.stage(&mut batch, entries).unwrap();
        tree.apply_batch(batch).unwrap();
        map.applied(staged);
    }

    #[test]
    fn entries_are_found_through_pending_runs_merges_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let map = RunMap::open(&tree, b'd', "test map", true).unwrap();
        let total = (FLUSH_ENTRIES * (MERGE_WIDTH + 1) + 1000) as u64;
        let mut n = 0;
        while n < total {
            let batch: Vec<_> = (n..(n + 3000).min(total)).map(|i| (digest(i), i)).collect();
            n += batch.len() as u64;
            commit(&map, &tree, batch);
        }
        assert!(map.runs().len() > MERGE_WIDTH, "{:?}", map.runs());
        let sync = || Ok(());
        while map.compact_once(&sync).unwrap() {}
        let runs = map.runs();
        assert!(runs.iter().any(|r| r.1 == 1), "a level-1 run: {runs:?}");
        assert!(runs.len() < MERGE_WIDTH + 1, "{runs:?}");
        assert!(map.check().is_empty(), "{:?}", map.check());
        for i in (0..total).step_by(97) {
            assert_eq!(map.get(&digest(i)).unwrap(), Some(i), "entry {i}");
        }
        assert_eq!(map.get(&digest(total + 5)).unwrap(), None);
        // A repeated digest keeps its first index.
        commit(&map, &tree, vec![(digest(7), 999_999)]);
        drop(map);
        let map = RunMap::open(&tree, b'd', "test map", true).unwrap();
        for i in (0..total).step_by(101) {
            assert_eq!(
                map.get(&digest(i)).unwrap(),
                Some(i),
                "entry {i} after reopening"
            );
        }
        // Every entry is scanned at least once, nothing else.
        let mut seen = std::collections::HashSet::new();
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = map.scan(&c, 1000).unwrap();
            for item in page.items {
                seen.insert(item.unwrap().1);
            }
            cursor = page.next;
        }
        assert_eq!(seen.len() as u64, total + 1);
        assert!(
            seen.contains(&999_999),
            "the repeated entry stays pending (first wins on lookup)"
        );
    }

    #[test]
    fn a_merge_cut_short_leaves_every_entry_reachable_and_its_output_is_collected() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let map = RunMap::open(&tree, b'h', "test map", false).unwrap();
        let total = (FLUSH_ENTRIES * MERGE_WIDTH) as u64;
        for start in (0..total).step_by(4096) {
            commit(
                &map,
                &tree,
                (start..start + 4096).map(|i| (digest(i), i)).collect(),
            );
        }
        // The second sync (after writing the merged run, before naming it) fails.
        let calls = std::cell::Cell::new(0);
        let failing = || {
            calls.set(calls.get() + 1);
            if calls.get() == 2 {
                Err(StoreError::Backend("injected".into()))
            } else {
                Ok(())
            }
        };
        assert!(map.compact_once(&failing).is_err());
        drop(map);
        let map = RunMap::open(&tree, b'h', "test map", false).unwrap();
        assert_eq!(map.runs().len(), MERGE_WIDTH, "the inputs are still named");
        for i in (0..total).step_by(89) {
            assert_eq!(map.get(&digest(i)).unwrap(), Some(i));
        }
        let ok = || Ok(());
        while map.compact_once(&ok).unwrap() {}
        assert_eq!(map.runs().len(), 1);
        // Only the one named run's keys are left.
        let id = map.runs()[0].0;
        for item in tree.scan_prefix([RUN, b'h']) {
            let (k, _) = item.unwrap();
            assert_eq!(
                u64::from_be_bytes(k[2..10].try_into().unwrap()),
                id,
                "garbage left"
            );
        }
        for i in (0..total).step_by(89) {
            assert_eq!(map.get(&digest(i)).unwrap(), Some(i));
        }
    }

    #[test]
    fn damage_to_a_run_or_a_pending_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let map = RunMap::open(&tree, b'd', "test map", true).unwrap();
        let total = (FLUSH_ENTRIES + 10) as u64;
        commit(
            &map,
            &tree,
            (0..total - 5).map(|i| (digest(i), i)).collect(),
        );
        commit(
            &map,
            &tree,
            (total - 5..total).map(|i| (digest(i), i)).collect(),
        );
        assert!(map.check().is_empty());
        let flip = |key: &[u8]| {
            let mut v = tree.get(key).unwrap().unwrap().to_vec();
            v[3] ^= 1;
            tree.insert(key, v).unwrap();
        };
        flip(&run_key(b'd', 0, KIND_BLOCK, 7));
        let problems = map.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("run 0") && p.contains("checksum")),
            "{problems:?}"
        );
        flip(&pending_key(b'd', 0));
        let reopened = RunMap::open(&tree, b'd', "test map", true).unwrap();
        assert!(
            reopened
                .damage()
                .iter()
                .any(|p| p.contains("pending record 0")),
            "{:?}",
            reopened.damage()
        );
        assert!(reopened.check().len() >= 2);
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let mut b = Bloom::new(10_000);
        for i in 0..10_000 {
            b.insert(&digest(i));
        }
        assert!((0..10_000).all(|i| b.contains(&digest(i))));
        let false_positives = (10_000..110_000)
            .filter(|i| b.contains(&digest(*i)))
            .count();
        assert!(false_positives < 5_000, "{false_positives} of 100,000");
        assert_eq!(Bloom::decode(&b.encode()).unwrap().blocks, b.blocks);
    }
}
