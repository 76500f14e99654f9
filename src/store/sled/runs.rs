//! A digest-to-leaf-index map that costs sled a key per thousands of
//! entries, not one per entry: the idempotency index and the leaf-hash
//! index of the sled backend.
//!
//! sled 0.34 spends about a kilobyte of resident memory per small key
//! written in batches, and the log writes one entry per event into each of
//! these maps; its memory also grows with every page it writes or reads,
//! whatever its cache setting. So entries are kept as in a log-structured
//! merge tree whose bulk is outside sled:
//!
//! - **pending**: each commit writes its new entries as one record
//!   `p || map || seq`, in the commit's own atomic batch; in memory they
//!   are a hash map. On open, the pending records are read back.
//! - **runs**: once [`FLUSH_ENTRIES`] entries are pending, the commit that
//!   passes the mark writes them, sorted, as a run file
//!   `<db>/runs/<map>-<run>.run`: 4 KiB blocks, the run's fences (first
//!   digest of every block), for the idempotency map a blocked Bloom
//!   filter, and a footer. The file is fsynced and renamed into place and
//!   its directory fsynced before the commit's batch, which deletes the
//!   pending records and names the run in the manifest (`R || map`). A
//!   run file is written once and never changed.
//! - **compaction**: a background thread merges [`MERGE_WIDTH`] runs of
//!   one level into one run file of the next, so a map of n entries has
//!   O(log n) runs. The output is first listed as garbage, then written
//!   and made durable, then one batch names it and drops its inputs from
//!   the manifest, which lists them as garbage; a later pass deletes
//!   garbage files and only then drops them from the list.
//!
//! Invariant: a run file is deleted only once the durable manifest no
//! longer names it, and a manifest names only run files that are durable.
//! A crash at any point leaves every entry reachable through the manifest;
//! what it leaves beyond that are files nobody names (an unfinished
//! write, a run whose commit never landed), which an open deletes.
//!
//! A database from before run files keeps its runs' blocks in sled
//! (`r || map || run || kind || block`); the manifest marks which runs
//! are files, old manifests decode as "none", and such runs stay readable
//! from sled until a merge rewrites them into a file and deletes their keys.
//!
//! Lookups read the pending map, then the runs newest first: a Bloom
//! filter (if kept) rules a run out in one cache line; otherwise the
//! fences name the one block that can hold the digest, read with one
//! positioned read. Memory per entry is the pending map's (bounded by
//! `FLUSH_ENTRIES`) plus 10 bits of filter and 16 bytes of fence per
//! block of 170 entries; an open run file costs one descriptor.
//!
//! Digests are 16 bytes: the idempotency key's SHA-256 prefix, or the leaf
//! hash's prefix (the caller confirms a leaf-hash hit against the tile).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::{RECORD_CHECKSUM_LEN, backend, checksummed, verified};
use crate::durable::{self, PendingFile, Secrecy};
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
/// The directory of the run files, inside the database's.
pub(super) const DIR: &str = "runs";

/// Record and sled key prefixes; `RUN` keys hold the blocks of runs
/// written before run files.
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
    /// Its blocks are a run file; false for a run written into sled before
    /// run files (see the module comment).
    in_file: bool,
}

/// The map's durable description: its runs, newest last, and garbage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Manifest {
    next_run: u64,
    runs: Vec<RunMeta>,
    /// Runs whose file or blocks may exist but are not named: a merge that
    /// did not finish, or inputs of a finished merge. Deleted by the
    /// compactor.
    garbage: Vec<u64>,
}

impl Manifest {
    /// The encoding before run files, followed, when some run is a file,
    /// by the ids of the runs that are: an old manifest is a new one whose
    /// runs all live in sled.
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
        let in_files: Vec<u64> = self
            .runs
            .iter()
            .filter(|r| r.in_file)
            .map(|r| r.id)
            .collect();
        if !in_files.is_empty() {
            out.extend_from_slice(&(in_files.len() as u32).to_be_bytes());
            for id in in_files {
                out.extend_from_slice(&id.to_be_bytes());
            }
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
                in_file: false,
            });
        }
        let mut garbage = Vec::new();
        for _ in 0..r.u32()? {
            garbage.push(r.u64()?);
        }
        if !r.is_empty() {
            for _ in 0..r.u32()? {
                let id = r.u64()?;
                runs.iter_mut().find(|m| m.id == id)?.in_file = true;
            }
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
    /// The open run file and the bytes of its blocks; `None` for a run
    /// whose blocks are in sled. An open handle keeps reading a file that
    /// a merge has since deleted.
    file: Option<(File, u64)>,
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
    /// The directory of the run files.
    dir: PathBuf,
    map: u8,
    name: &'static str,
    bloom: bool,
    pending: RwLock<Pending>,
    runs: RwLock<Arc<Vec<Arc<Run>>>>,
    manifest: Mutex<Manifest>,
    /// What did not load on open (a damaged pending record or run): the
    /// map then lacks those entries, so only an offline check opens it.
    damage: Vec<String>,
    /// Fault injection: the next run file write fails before (1) or after
    /// (2) its rename.
    #[cfg(test)]
    fail_next_file: std::sync::atomic::AtomicU8,
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

/// The file name of run `id` of map `map`.
fn run_file_name(map: u8, id: u64) -> String {
    format!("{}-{id}.run", char::from(map))
}

/// Fault injection shared with the search index's segments: fails, as
/// `what` on `path` would, if `fault` is set to `point` (and clears it).
#[cfg(test)]
pub(super) fn injected_fault(
    fault: &std::sync::atomic::AtomicU8,
    point: u8,
    what: &str,
    path: &Path,
) -> Result<(), StoreError> {
    use std::sync::atomic::Ordering;
    if fault
        .compare_exchange(point, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        return Err(io_error(
            what,
            path,
            std::io::Error::other("injected failure"),
        ));
    }
    Ok(())
}

pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("couldn't {what} {}: {e}", path.display()))
}

impl RunMap {
    /// Opens map `map` (one byte, distinct per map) of `tree`, its run
    /// files in `dir`: reads the manifest, every run's fences and filter,
    /// and the pending records, and deletes the run files the manifest
    /// does not name (see the module comment). Nothing may write the map
    /// meanwhile.
    pub fn open(
        tree: &sled::Tree,
        dir: &Path,
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
        delete_unnamed_files(dir, map, &manifest);
        let mut runs = Vec::new();
        let mut damage = Vec::new();
        for meta in &manifest.runs {
            match load_run(tree, dir, map, name, *meta, bloom) {
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
            dir: dir.to_path_buf(),
            map,
            name,
            bloom,
            pending: RwLock::new(pending),
            runs: RwLock::new(Arc::new(runs)),
            manifest: Mutex::new(manifest),
            damage,
            #[cfg(test)]
            fail_next_file: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// What did not load on open (see the field); empty for a sound map.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    /// Fault injection: fails if the next run file write is to fail at
    /// `point` (see the field).
    fn injected_fault(&self, point: u8, what: &str, path: &Path) -> Result<(), StoreError> {
        #[cfg(test)]
        injected_fault(&self.fail_next_file, point, what, path)?;
        let _ = (point, what, path);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Run>>> {
        self.runs.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The verified entries of block `block` of `run`; `None` when the
    /// block is a sled run's that a merge has deleted since.
    fn read_block(&self, run: &Run, block: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let key = run_key(self.map, run.meta.id, KIND_BLOCK, block);
        let Some((file, blocks_len)) = &run.file else {
            return match self.tree.get(key).map_err(backend)? {
                Some(v) => verified(&key, &v).map(Some),
                None => Ok(None),
            };
        };
        let at = u64::from(block) * BLOCK_BYTES as u64;
        let len = blocks_len.saturating_sub(at).min(BLOCK_BYTES as u64) as usize;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, at).map_err(|e| {
            StoreError::Backend(format!(
                "{} run {}: couldn't read block {block}: {e}",
                self.name, run.meta.id
            ))
        })?;
        verified(&key, &buf).map(Some)
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
        // A merge may delete the sled blocks of runs in an older snapshot:
        // a block found missing means "look again in the current one".
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
                let Some(block) = self.read_block(run, (at - 1) as u32)? else {
                    continue 'retry;
                };
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
    /// are pending, as a new run file with every pending entry, durable
    /// before this returns (the batch names it).
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
        let keys = pending.keys.clone();
        drop(pending);
        let guard = self
            .manifest
            .lock()
            .map_err(|_| backend("manifest lock poisoned"))?;
        let mut next = guard.clone();
        let id = next.next_run;
        next.next_run += 1;
        // A failure here leaves a file nobody names, under an id the next
        // flush reuses (its rename replaces the file) and an open deletes.
        let all = sorted_unique(all);
        let mut writer = RunWriter::new(self, id, 0, all.len())?;
        for e in all {
            writer.push(e)?;
        }
        let run = writer.finish(self)?;
        for k in &keys {
            batch.remove(&k[..]);
        }
        next.runs.push(run.meta);
        put_manifest(batch, self.map, &next);
        Ok(Staged {
            entries,
            flushed: Some((guard, next, Arc::new(run))),
            key: None,
        })
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
    /// every named run's blocks, runs in id order. A position is the sled
    /// key the block has or would have (`r || map || run || 0 || block`)
    /// and an offset in it. An entry may be yielded twice when a merge
    /// runs during the scan, never missed: a merge's output and a new run
    /// have larger ids than what they replace.
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
        let mut items = Vec::new();
        let first_of = |k: &[u8]| if k == start.as_slice() { skip } else { 0 };
        let (lo, hi) = (vec![PENDING, self.map], vec![PENDING, self.map + 1]);
        if start < hi {
            let from = if start >= lo { start.clone() } else { lo };
            for item in self
                .tree
                .range::<Vec<u8>, _>((Bound::Included(from), Bound::Excluded(hi)))
            {
                let (k, v) = item.map_err(backend)?;
                let what = || format!("{} record {}", self.name, hex::encode(&k));
                let decoded = verified(&k, &v).and_then(|v| decode_entries(&v, &what));
                if let Some(next) = take_record(&mut items, &k, decoded, first_of(&k), limit) {
                    return Ok(ScanPage {
                        items,
                        next: Some(next),
                    });
                }
            }
        }
        let mut runs: Vec<Arc<Run>> = self.snapshot().iter().cloned().collect();
        runs.sort_by_key(|r| r.meta.id);
        for run in runs {
            for block in 0..run.meta.blocks {
                let k = run_key(self.map, run.meta.id, KIND_BLOCK, block);
                if k.as_slice() < start.as_slice() {
                    continue;
                }
                let what = || format!("{} run {} block {block}", self.name, run.meta.id);
                let decoded = match self.read_block(&run, block) {
                    // Merged away since the snapshot: the output has it.
                    Ok(None) => continue,
                    Ok(Some(v)) => decode_entries(&v, &what),
                    Err(e) => Err(e),
                };
                if let Some(next) = take_record(&mut items, &k, decoded, first_of(&k), limit) {
                    return Ok(ScanPage {
                        items,
                        next: Some(next),
                    });
                }
            }
        }
        Ok(ScanPage { items, next: None })
    }

    // -----------------------------------------------------------------------
    // Compaction (background; see the module comment).

    /// Does one unit of background work: deletes the file or blocks of one
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
            self.delete_run(g, sync)?;
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
        let snapshot = self.snapshot();
        let mut sources = Vec::new();
        for meta in &inputs {
            let run = snapshot
                .iter()
                .find(|r| r.meta.id == meta.id)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("{} run {} did not load", self.name, meta.id))
                })?;
            sources.push(RunReader::new(self, run.clone()));
        }
        // Name the output as garbage first: a crash while it is written
        // leaves a file the next start deletes.
        let id = self.update_manifest(sync, |m| {
            let id = m.next_run;
            m.next_run += 1;
            m.garbage.push(id);
            id
        })?;
        let total: u64 = inputs.iter().map(|r| r.entries).sum();
        let mut writer = RunWriter::new(self, id, level + 1, total as usize)?;
        let mut heads: Vec<Option<(Digest, u64)>> = Vec::with_capacity(sources.len());
        for s in &mut sources {
            heads.push(s.next()?);
        }
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
            writer.push(e)?;
        }
        let run = Arc::new(writer.finish(self)?);
        // One batch names the output and drops the inputs. Lookups switch
        // under the manifest lock, which a commit adding a run also holds,
        // so neither switch undoes the other; the inputs' files go only
        // in a later pass.
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

    /// Deletes garbage run `run`, unnamed by the durable manifest: its
    /// file if any (then its directory entry's removal is made durable),
    /// and its sled blocks if any (a run from before run files).
    fn delete_run(
        &self,
        run: u64,
        sync: &dyn Fn() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let path = self.dir.join(run_file_name(self.map, run));
        match std::fs::remove_file(&path) {
            Ok(()) => durable::sync_dir(&self.dir)
                .map_err(|e| io_error("fsync directory", &self.dir, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("delete", &path, e)),
        }
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
            let mut reader = RunReader::new(self, run.clone());
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

/// Appends the entries of one record (a pending record or a block) at key
/// `k` from its `first` on, or its error; the cursor after the last one
/// taken once `items` holds `limit`.
fn take_record(
    items: &mut Vec<Result<(Digest, u64), StoreError>>,
    k: &[u8],
    decoded: Result<Vec<(Digest, u64)>, StoreError>,
    first: usize,
    limit: usize,
) -> Option<ScanCursor> {
    let cursor = |n: u32| {
        let mut c = k.to_vec();
        c.extend_from_slice(&n.to_be_bytes());
        ScanCursor::after(c)
    };
    match decoded {
        Err(e) => {
            items.push(Err(e));
            (items.len() >= limit).then(|| cursor(u32::MAX))
        }
        Ok(entries) => {
            for (n, e) in entries.iter().enumerate().skip(first) {
                items.push(Ok(*e));
                if items.len() >= limit {
                    return Some(cursor((n + 1) as u32));
                }
            }
            None
        }
    }
}

fn put_manifest(batch: &mut sled::Batch, map: u8, m: &Manifest) {
    let k = manifest_key(map);
    batch.insert(&k[..], checksummed(&k, &m.encode()));
}

/// Deletes the files of map `map` in `dir` that `manifest` does not name
/// as run files: leftovers of writes that never became part of it. A
/// failure is logged; the file stays unread and a later open retries.
fn delete_unnamed_files(dir: &Path, map: u8, manifest: &Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{}-", char::from(map));
    let temporary = format!(".{prefix}");
    let mut deleted = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let named = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".run"))
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|id| manifest.runs.iter().any(|r| r.in_file && r.id == id));
        if named || !(name.starts_with(&prefix) || name.starts_with(&temporary)) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => deleted = true,
            Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                "couldn't delete an unnamed index run file"),
        }
    }
    if deleted && let Err(e) = durable::sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "couldn't fsync the run directory");
    }
}

/// Bytes of a whole block in a run file: its entries and checksum. Block
/// `b` starts at `b * BLOCK_BYTES`; only the last may be shorter.
const BLOCK_BYTES: usize = BLOCK_ENTRIES * ENTRY + RECORD_CHECKSUM_LEN;
/// The footer of a run file: the lengths of its fences and filter.
const FOOTER: usize = 16;

fn load_run(
    tree: &sled::Tree,
    dir: &Path,
    map: u8,
    name: &str,
    meta: RunMeta,
    bloom: bool,
) -> Result<Run, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("{name} run {}: {why}", meta.id));
    let fk = run_key(map, meta.id, KIND_FENCES, 0);
    let bk = run_key(map, meta.id, KIND_BLOOM, 0);
    let (fences, filter, file) = if meta.in_file {
        let path = dir.join(run_file_name(map, meta.id));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("its file is missing"));
            }
            Err(e) => return Err(io_error("open", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| io_error("read", &path, e))?
            .len();
        let read = |at: u64, n: u64| -> Result<Vec<u8>, StoreError> {
            let mut buf = vec![0u8; usize::try_from(n).map_err(|_| corrupt("too large"))?];
            file.read_exact_at(&mut buf, at)
                .map_err(|e| io_error("read", &path, e))?;
            Ok(buf)
        };
        let footer_at = len
            .checked_sub(FOOTER as u64)
            .ok_or_else(|| corrupt("its file is shorter than its footer"))?;
        let footer = read(footer_at, FOOTER as u64)?;
        let fences_len = u64::from_be_bytes(footer[..8].try_into().unwrap_or_default());
        let bloom_len = u64::from_be_bytes(footer[8..].try_into().unwrap_or_default());
        let blocks_len = footer_at
            .checked_sub(fences_len)
            .and_then(|x| x.checked_sub(bloom_len))
            .ok_or_else(|| corrupt("its footer does not fit its file"))?;
        let fences = read(blocks_len, fences_len)?;
        let filter = (bloom_len > 0)
            .then(|| read(blocks_len + fences_len, bloom_len))
            .transpose()?;
        (fences, filter, Some((file, blocks_len)))
    } else {
        let fences = tree
            .get(fk)
            .map_err(backend)?
            .ok_or_else(|| corrupt("its fences are missing"))?;
        let filter = if bloom {
            tree.get(bk).map_err(backend)?.map(|v| v.to_vec())
        } else {
            None
        };
        (fences.to_vec(), filter, None)
    };
    let fences = verified(&fk, &fences)?;
    if fences.len() != meta.blocks as usize * 16 {
        return Err(corrupt("fences do not match its blocks"));
    }
    let fences = fences
        .chunks_exact(16)
        .map(|c| c.try_into().unwrap_or_default())
        .collect();
    let bloom = if bloom {
        let raw = filter.ok_or_else(|| corrupt("its filter is missing"))?;
        Some(
            Bloom::decode(&verified(&bk, &raw)?)
                .ok_or_else(|| corrupt("its filter is malformed"))?,
        )
    } else {
        None
    };
    Ok(Run {
        meta,
        fences,
        bloom,
        file,
    })
}

/// Sorted by digest, the first index of a repeated digest kept.
fn sorted_unique(mut all: Vec<(Digest, u64)>) -> Vec<(Digest, u64)> {
    all.sort_unstable();
    all.dedup_by_key(|e| e.0);
    all
}

/// Writes one run file block by block (see the module comment).
struct RunWriter {
    map: u8,
    meta: RunMeta,
    path: PathBuf,
    out: BufWriter<PendingFile>,
    /// Bytes of blocks written.
    written: u64,
    block: Vec<(Digest, u64)>,
    fences: Vec<Digest>,
    bloom: Option<Bloom>,
}

impl RunWriter {
    /// Starts run `id` of `map`, creating the run directory (durably) if
    /// it is missing.
    fn new(map: &RunMap, id: u64, level: u8, expected: usize) -> Result<RunWriter, StoreError> {
        if !map.dir.exists() {
            std::fs::create_dir_all(&map.dir).map_err(|e| io_error("create", &map.dir, e))?;
            let parent = map.dir.parent().unwrap_or(&map.dir);
            durable::sync_dir(parent).map_err(|e| io_error("fsync directory", parent, e))?;
        }
        let path = map.dir.join(run_file_name(map.map, id));
        let file = PendingFile::create(&path, Secrecy::Public)
            .map_err(|e| io_error("create", &path, e))?;
        Ok(RunWriter {
            map: map.map,
            meta: RunMeta {
                id,
                level,
                entries: 0,
                blocks: 0,
                in_file: true,
            },
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            written: 0,
            block: Vec::with_capacity(BLOCK_ENTRIES),
            fences: Vec::new(),
            bloom: map.bloom.then(|| Bloom::new(expected)),
        })
    }

    /// Adds the next entry (digests ascending).
    fn push(&mut self, e: (Digest, u64)) -> Result<(), StoreError> {
        if let Some(b) = &mut self.bloom {
            b.insert(&e.0);
        }
        self.block.push(e);
        self.meta.entries += 1;
        if self.block.len() == BLOCK_ENTRIES {
            self.write_block()?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(|e| io_error("write", &self.path, e))
    }

    fn write_block(&mut self) -> Result<(), StoreError> {
        let key = run_key(self.map, self.meta.id, KIND_BLOCK, self.meta.blocks);
        self.fences.push(self.block[0].0);
        let bytes = checksummed(&key, &encode_entries(&self.block));
        self.write(&bytes)?;
        self.written += bytes.len() as u64;
        self.block.clear();
        self.meta.blocks += 1;
        Ok(())
    }

    /// Writes the fences, the filter and the footer, then makes the file
    /// durable under its name (fsync, rename, fsync of the directory) and
    /// opens it for reading.
    fn finish(mut self, map: &RunMap) -> Result<Run, StoreError> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        let fk = run_key(self.map, self.meta.id, KIND_FENCES, 0);
        let fences = checksummed(&fk, &self.fences.concat());
        self.write(&fences)?;
        let bloom = match &self.bloom {
            Some(b) => {
                let bk = run_key(self.map, self.meta.id, KIND_BLOOM, 0);
                checksummed(&bk, &b.encode())
            }
            None => Vec::new(),
        };
        self.write(&bloom)?;
        self.write(&(fences.len() as u64).to_be_bytes())?;
        self.write(&(bloom.len() as u64).to_be_bytes())?;
        let path = self.path.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error("write", &path, e.into_error()))?;
        map.injected_fault(1, "fsync", &path)?;
        file.commit().map_err(|e| io_error("write", &path, e))?;
        map.injected_fault(2, "fsync directory", &map.dir)?;
        let read = File::open(&path).map_err(|e| io_error("open", &path, e))?;
        Ok(Run {
            meta: self.meta,
            fences: self.fences,
            bloom: self.bloom,
            file: Some((read, self.written)),
        })
    }
}

/// Reads one run's entries in order, a block at a time.
struct RunReader<'a> {
    map: &'a RunMap,
    run: Arc<Run>,
    block: u32,
    entries: std::vec::IntoIter<(Digest, u64)>,
}

impl<'a> RunReader<'a> {
    fn new(map: &'a RunMap, run: Arc<Run>) -> RunReader<'a> {
        RunReader {
            map,
            run,
            block: 0,
            entries: Vec::new().into_iter(),
        }
    }

    fn next(&mut self) -> Result<Option<(Digest, u64)>, StoreError> {
        loop {
            if let Some(e) = self.entries.next() {
                return Ok(Some(e));
            }
            if self.block >= self.run.meta.blocks {
                return Ok(None);
            }
            let (name, id, block) = (self.map.name, self.run.meta.id, self.block);
            let bytes = self.map.read_block(&self.run, block)?.ok_or_else(|| {
                StoreError::Corrupt(format!("{name} run {id}: block {block} is missing"))
            })?;
            let what = || format!("{name} run {id} block {block}");
            self.entries = decode_entries(&bytes, &what)?.into_iter();
            self.block += 1;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

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

    /// A sled tree and the run directory beside it.
    fn database() -> (tempfile::TempDir, sled::Tree, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let runs = dir.path().join(DIR);
        (dir, tree, runs)
    }

    /// The names in a directory of files written once (runs, segments),
    /// sorted; none when it does not exist.
    pub(in crate::store::sled) fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The indexes of every entry a scan in pages of `page` yields.
    fn scan_all(map: &RunMap, page: usize) -> std::collections::HashSet<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = map.scan(&c, page).unwrap();
            for item in page.items {
                seen.insert(item.unwrap().1);
            }
            cursor = page.next;
        }
        seen
    }

    fn sled_blocks(tree: &sled::Tree, map: u8) -> usize {
        tree.scan_prefix([RUN, map]).count()
    }

    #[test]
    fn entries_are_found_through_pending_runs_merges_and_reopening() {
        let (_dir, tree, runs) = database();
        let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
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
        let named = map.runs();
        assert!(named.iter().any(|r| r.1 == 1), "a level-1 run: {named:?}");
        assert!(named.len() < MERGE_WIDTH + 1, "{named:?}");
        // Each named run is a file, and nothing else is; sled has no blocks.
        let mut expected: Vec<String> = named.iter().map(|r| run_file_name(b'd', r.0)).collect();
        expected.sort();
        assert_eq!(files(&runs), expected);
        assert_eq!(sled_blocks(&tree, b'd'), 0);
        assert!(map.check().is_empty(), "{:?}", map.check());
        for i in (0..total).step_by(97) {
            assert_eq!(map.get(&digest(i)).unwrap(), Some(i), "entry {i}");
        }
        assert_eq!(map.get(&digest(total + 5)).unwrap(), None);
        // A repeated digest keeps its first index.
        commit(&map, &tree, vec![(digest(7), 999_999)]);
        drop(map);
        let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
        for i in (0..total).step_by(101) {
            assert_eq!(
                map.get(&digest(i)).unwrap(),
                Some(i),
                "entry {i} after reopening"
            );
        }
        // Every entry is scanned at least once, nothing else.
        let seen = scan_all(&map, 1000);
        assert_eq!(seen.len() as u64, total + 1);
        assert!(
            seen.contains(&999_999),
            "the repeated entry stays pending (first wins on lookup)"
        );
    }

    #[test]
    fn a_merge_cut_short_leaves_every_entry_reachable_and_its_output_is_collected() {
        // The merged run's file fails before its rename, then after it
        // (its directory fsync): either way it is named nowhere.
        for fault in [1, 2] {
            let (_dir, tree, runs) = database();
            let map = RunMap::open(&tree, &runs, b'h', "test map", false).unwrap();
            let total = (FLUSH_ENTRIES * MERGE_WIDTH) as u64;
            for start in (0..total).step_by(4096) {
                commit(
                    &map,
                    &tree,
                    (start..start + 4096).map(|i| (digest(i), i)).collect(),
                );
            }
            let ok = || Ok(());
            map.fail_next_file.store(fault, Ordering::SeqCst);
            assert!(map.compact_once(&ok).is_err(), "fault {fault}");
            drop(map);
            let map = RunMap::open(&tree, &runs, b'h', "test map", false).unwrap();
            assert_eq!(map.runs().len(), MERGE_WIDTH, "the inputs are still named");
            assert_eq!(files(&runs).len(), MERGE_WIDTH, "the output is deleted");
            for i in (0..total).step_by(89) {
                assert_eq!(map.get(&digest(i)).unwrap(), Some(i));
            }
            while map.compact_once(&ok).unwrap() {}
            assert_eq!(map.runs().len(), 1);
            // Only the one named run's file is left.
            assert_eq!(files(&runs), vec![run_file_name(b'h', map.runs()[0].0)]);
            for i in (0..total).step_by(89) {
                assert_eq!(map.get(&digest(i)).unwrap(), Some(i));
            }
            assert!(map.check().is_empty(), "{:?}", map.check());
        }
    }

    #[test]
    fn a_failed_run_file_write_fails_the_commit_and_loses_no_pending_entry() {
        for fault in [1, 2] {
            let (_dir, tree, runs) = database();
            let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
            let first = (FLUSH_ENTRIES - 10) as u64;
            commit(&map, &tree, (0..first).map(|i| (digest(i), i)).collect());
            // The commit that passes the mark fails writing its run file:
            // its batch is never applied, as the store's commit returns.
            map.fail_next_file.store(fault, Ordering::SeqCst);
            let mut batch = sled::Batch::default();
            let more: Vec<_> = (first..first + 20).map(|i| (digest(i), i)).collect();
            assert!(
                map.stage(&mut batch, more.clone()).is_err(),
                "fault {fault}"
            );
            drop(batch);
            drop(map);
            let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
            assert!(files(&runs).is_empty(), "{:?}", files(&runs));
            assert!(map.runs().is_empty());
            for i in (0..first).step_by(7) {
                assert_eq!(map.get(&digest(i)).unwrap(), Some(i), "entry {i}");
            }
            assert_eq!(map.get(&digest(first)).unwrap(), None);
            // The retried commit writes the run under the same id.
            commit(&map, &tree, more);
            assert_eq!(map.runs().len(), 1);
            assert_eq!(files(&runs), vec![run_file_name(b'd', 0)]);
            drop(map);
            let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
            for i in (0..first + 20).step_by(7) {
                assert_eq!(map.get(&digest(i)).unwrap(), Some(i), "entry {i}");
            }
            assert!(map.check().is_empty(), "{:?}", map.check());
        }
    }

    /// Writes `entries` (sorted, unique) into sled as run `id`, the way
    /// runs were stored before run files, and names it in the manifest.
    fn write_sled_run(tree: &sled::Tree, map: u8, id: u64, entries: &[(Digest, u64)], bloom: bool) {
        let mut batch = sled::Batch::default();
        let mut fences = Vec::new();
        let mut filter = bloom.then(|| Bloom::new(entries.len()));
        for (b, block) in entries.chunks(BLOCK_ENTRIES).enumerate() {
            let key = run_key(map, id, KIND_BLOCK, b as u32);
            fences.extend_from_slice(&block[0].0);
            batch.insert(&key[..], checksummed(&key, &encode_entries(block)));
            for (d, _) in block {
                if let Some(f) = &mut filter {
                    f.insert(d);
                }
            }
        }
        let fk = run_key(map, id, KIND_FENCES, 0);
        batch.insert(&fk[..], checksummed(&fk, &fences));
        if let Some(f) = &filter {
            let bk = run_key(map, id, KIND_BLOOM, 0);
            batch.insert(&bk[..], checksummed(&bk, &f.encode()));
        }
        let mkey = manifest_key(map);
        let mut manifest = tree
            .get(mkey)
            .unwrap()
            .map(|v| Manifest::decode(&verified(&mkey, &v).unwrap()).unwrap())
            .unwrap_or_default();
        manifest.runs.push(RunMeta {
            id,
            level: 0,
            entries: entries.len() as u64,
            blocks: entries.len().div_ceil(BLOCK_ENTRIES) as u32,
            in_file: false,
        });
        manifest.next_run = id + 1;
        put_manifest(&mut batch, map, &manifest);
        tree.apply_batch(batch).unwrap();
    }

    #[test]
    fn runs_stored_in_sled_stay_readable_and_move_to_a_file_when_merged() {
        let (_dir, tree, runs) = database();
        let per_run = 5_000u64;
        for id in 0..MERGE_WIDTH as u64 {
            let entries = sorted_unique(
                (id * per_run..(id + 1) * per_run)
                    .map(|i| (digest(i), i))
                    .collect(),
            );
            write_sled_run(&tree, b'd', id, &entries, true);
        }
        // A manifest naming only sled runs is encoded as before run files:
        // its runs, then its garbage, and nothing after.
        let mkey = manifest_key(b'd');
        let raw = verified(&mkey, &tree.get(mkey).unwrap().unwrap()).unwrap();
        assert_eq!(raw.len(), 8 + 4 + MERGE_WIDTH * 21 + 4);
        let total = MERGE_WIDTH as u64 * per_run;
        let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
        assert!(map.damage().is_empty(), "{:?}", map.damage());
        commit(&map, &tree, vec![(digest(total), total)]);
        for i in (0..=total).step_by(37) {
            assert_eq!(map.get(&digest(i)).unwrap(), Some(i), "entry {i}");
        }
        assert!(map.check().is_empty(), "{:?}", map.check());
        let seen = scan_all(&map, 777);
        assert_eq!(seen.len() as u64, total + 1);
        // The merge writes one run file and deletes the sled blocks.
        let ok = || Ok(());
        while map.compact_once(&ok).unwrap() {}
        assert_eq!(map.runs().len(), 1);
        assert_eq!(files(&runs), vec![run_file_name(b'd', MERGE_WIDTH as u64)]);
        assert_eq!(sled_blocks(&tree, b'd'), 0);
        drop(map);
        let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
        for i in (0..=total).step_by(31) {
            assert_eq!(map.get(&digest(i)).unwrap(), Some(i), "entry {i}");
        }
        assert!(map.check().is_empty(), "{:?}", map.check());
    }

    #[test]
    fn damage_to_a_run_file_or_a_pending_record_is_named() {
        let (_dir, tree, runs) = database();
        let map = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
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
        let path = runs.join(run_file_name(b'd', 0));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[7 * BLOCK_BYTES + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let problems = map.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("run 0") && p.contains("checksum")),
            "{problems:?}"
        );
        let key = pending_key(b'd', 0);
        let mut v = tree.get(key).unwrap().unwrap().to_vec();
        v[3] ^= 1;
        tree.insert(key, v).unwrap();
        let reopened = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
        assert!(
            reopened
                .damage()
                .iter()
                .any(|p| p.contains("pending record 0")),
            "{:?}",
            reopened.damage()
        );
        assert!(reopened.check().len() >= 2);
        // A run file cut short is named as damage on open.
        std::fs::write(&path, &bytes[..100]).unwrap();
        let reopened = RunMap::open(&tree, &runs, b'd', "test map", true).unwrap();
        assert!(
            reopened.damage().iter().any(|p| p.contains("run 0")),
            "{:?}",
            reopened.damage()
        );
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
