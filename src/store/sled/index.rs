//! The search index's blocks in the sled backend: each flush's blocks as
//! one segment file `<db>/index/<at>.seg`, written once, and later changes
//! to them (and the blocks of databases from before segments) as sled keys.
//!
//! Why files: a rare term has a block in nearly every flush, so a search
//! reads one block per flush; in sled each was a random lookup that also
//! grew sled's resident memory with every page it read. A segment is read
//! with positioned reads: one for a window of its bucket directory, one
//! for the block, and the page cache, not sled, holds what was read.
//!
//! A segment file: a header (magic, `at`, bucket length, directory size,
//! block count, checksum), then the bucket directory, an open-addressing
//! table of `2^bits + PROBES - 1` slots (bucket, offset, length, checksum)
//! where a bucket sits within [`PROBES`] slots of its hash, so a lookup
//! reads one window of slots; then the blocks, each followed by the
//! CRC-32 of `at || bucket || value`. Every slot, empty ones too, carries
//! a CRC-32 of its position and content, so a flipped byte, a slot that
//! points at another block or a torn file is named, never read as "no
//! match". Nothing of a segment is kept in memory but its `at`
//! and its shape (a few bytes, from the sled key that names it).
//!
//! sled keys: `J || at` names every `at` that has blocks: empty for blocks
//! kept in sled (`j || at || bucket`, the layout before segments, and
//! blocks written outside a flush), or the checksummed shape of its
//! segment. A later write of a segment's block (a removal rewriting or
//! deleting it) is `O || at || bucket`: a value, or a tombstone that hides
//! the segment's block. Their `(at, bucket)` set is loaded on open (it
//! grows with removals, not with the log), so a read of an untouched block
//! asks sled nothing.
//!
//! Tidying ([`Segments::stage_tidy`], one step of `Store::tidy_index`)
//! moves the blocks an `at` keeps in sled into its segment file, the
//! oldest `at` below the watermark first: the file is written durably,
//! named in memory (reads turn to it; it holds the same blocks), and one
//! batch names it in `J || at` and deletes its `j` keys. A crash before
//! the batch leaves the `j` keys and an unnamed file.
//!
//! Refolding (also a step of `Store::tidy_index`): a segment with
//! [`REFOLD_OVERRIDES`] `O` keys is rewritten with them applied, as the
//! file of its next generation (`<at>.<generation>.seg`), written durably;
//! memory turns to it, one batch names it in `J || at` and deletes the
//! `O` keys, and the earlier file is deleted once that batch is durable.
//! Removals (an erasure's cleanup) write an `O` key per flush that held
//! the erased postings, so without it sled would keep a key per erasure
//! and flush for good; with it a log keeps fewer than
//! [`REFOLD_OVERRIDES`] per flush.
//!
//! Invariant: a segment file is durable (fsync, rename, fsync of the
//! directory) before the sled batch that names it, and is deleted only
//! once no durable key names it ([`Segments::clear`]); a file no key names
//! (a flush that failed or crashed before its batch) is deleted on open.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, RwLock};

use super::files::OpenFiles;
use super::runs::io_error;
use super::{backend, checksummed, decode_u64, verified};
use crate::durable::{self, PendingFile, Secrecy};
use crate::store::{IndexBlock, StoreError};

/// Search index blocks kept in sled: `j || at || bucket`. All blocks of
/// one write share `at` and so lie side by side.
pub(super) const INDEX_BLOCK: u8 = b'j';
/// `J || at` for every `at` that has blocks (see the module comment).
pub(super) const INDEX_AT: u8 = b'J';
/// A later write of a segment's block: `O || at || bucket`.
pub(super) const INDEX_OVERRIDE: u8 = b'O';
/// Search index entries of the first index format (one key per leaf and
/// term, empty values): only ever deleted, by `clear_index`.
pub(super) const LEGACY_INDEX: u8 = b'i';

pub(super) const INDEX_WATERMARK_KEY: &[u8] = b"Iwatermark";

/// The directory of the segment files, inside the database's.
pub(super) const DIR: &str = "index";
/// Segment files kept open for reads at most (beside the blob files' and
/// the runs'): a rare term's search reads one block of every segment, so
/// up to this many (about 33 M events) are read without opening a file.
const MAX_OPEN_SEGMENTS: usize = 1_024;

/// Segment descriptors kept: a quarter of what the blob files keep (see
/// [`super::files::kept_descriptors`]), from 64 to [`MAX_OPEN_SEGMENTS`].
fn open_segments() -> usize {
    (super::files::kept_descriptors(super::files::descriptor_limit()) / 4)
        .clamp(64, MAX_OPEN_SEGMENTS)
}
/// Slots a bucket may sit past its hash: one read of this many slots
/// (304 bytes for the search index's 3-byte buckets).
const PROBES: usize = 16;
const MAGIC: &[u8; 8] = b"VTIXSEG1";
/// Magic, `at`, bucket length (u16), directory bits (u8), a zero byte,
/// block count (u32), CRC-32 of those 24 bytes.
const HEADER: usize = 28;
/// A slot after its bucket: offset (u64), length (u32), CRC-32 of
/// `at || slot number || bucket || offset || length`.
const SLOT_TAIL: usize = 16;
/// The CRC-32 after each block.
const BLOCK_SUM: usize = 4;
/// The first byte of a `J` value that names a segment (an empty one names
/// blocks in sled).
const IN_SEGMENT: u8 = 1;
/// The first byte of an `O` value: a block, or a tombstone.
const REPLACED: u8 = 1;
const TOMBSTONE: u8 = 0;

pub(super) fn block_key(bucket: &[u8], at: u64) -> Vec<u8> {
    prefixed(INDEX_BLOCK, at, bucket)
}

fn override_key(bucket: &[u8], at: u64) -> Vec<u8> {
    prefixed(INDEX_OVERRIDE, at, bucket)
}

fn prefixed(prefix: u8, at: u64, bucket: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 + bucket.len());
    k.push(prefix);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(bucket);
    k
}

pub(super) fn at_key(at: u64) -> [u8; 9] {
    let mut k = [INDEX_AT; 9];
    k[1..].copy_from_slice(&at.to_be_bytes());
    k
}

/// What a `J` key says of a segment: enough to read it, nothing per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    /// The directory has `2^bits + PROBES - 1` slots.
    bits: u8,
    bucket_len: u16,
    /// The file's length: a shorter file is torn.
    len: u64,
    /// How many times the segment was rewritten with the blocks that
    /// replaced its own ([`Segments::stage_refold`]); it names the file.
    generation: u32,
}

impl Shape {
    fn encode(self) -> Vec<u8> {
        let mut v = vec![IN_SEGMENT, self.bits];
        v.extend_from_slice(&self.bucket_len.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        if self.generation > 0 {
            v.extend_from_slice(&self.generation.to_be_bytes());
        }
        v
    }

    fn decode(v: &[u8]) -> Option<Shape> {
        match v {
            [IN_SEGMENT, bits, l0, l1, rest @ ..] if rest.len() == 8 || rest.len() == 12 => {
                let (len, generation) = rest.split_at(8);
                Some(Shape {
                    bits: *bits,
                    bucket_len: u16::from_be_bytes([*l0, *l1]),
                    len: u64::from_be_bytes(len.try_into().ok()?),
                    generation: match generation {
                        [] => 0,
                        g => u32::from_be_bytes(g.try_into().ok()?),
                    },
                })
            }
            _ => None,
        }
    }

    fn slots(self) -> usize {
        (1usize << self.bits) + PROBES - 1
    }

    fn slot_len(self) -> usize {
        usize::from(self.bucket_len) + SLOT_TAIL
    }

    fn blocks_start(self) -> u64 {
        (HEADER + self.slots() * self.slot_len()) as u64
    }
}

fn crc(parts: &[&[u8]]) -> [u8; 4] {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_be_bytes()
}

/// The first slot a bucket may sit in: the top `bits` bits of its CRC-32
/// times the golden ratio (the CRC alone is linear, and buckets that differ
/// in a few bits would crowd together).
fn home(bucket: &[u8], bits: u8) -> usize {
    let mixed = u64::from(crc32fast::hash(bucket)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - u32::from(bits))) as usize
}

fn slot_sum(at: u64, slot: usize, body: &[u8]) -> [u8; 4] {
    crc(&[&at.to_be_bytes(), &(slot as u64).to_be_bytes(), body])
}

fn block_sum(at: u64, bucket: &[u8], value: &[u8]) -> [u8; 4] {
    crc(&[&at.to_be_bytes(), bucket, value])
}

/// The bytes of the segment at `at` holding `blocks` (bucket, value), all
/// buckets of one length.
fn encode_segment(at: u64, blocks: &[(&[u8], &[u8])]) -> Result<(Shape, Vec<u8>), StoreError> {
    let bucket_len = blocks.first().map_or(0, |(b, _)| b.len());
    if blocks.iter().any(|(b, _)| b.len() != bucket_len) {
        return Err(backend(
            "index blocks of one flush have buckets of different lengths",
        ));
    }
    let bucket_len = u16::try_from(bucket_len).map_err(backend)?;
    // The smallest table, at most half full, in which every bucket sits
    // within PROBES slots of its home.
    let mut bits = (blocks.len() * 2)
        .next_power_of_two()
        .trailing_zeros()
        .max(4) as u8;
    let table = loop {
        let mut table: Vec<Option<usize>> = vec![None; (1usize << bits) + PROBES - 1];
        let placed = blocks.iter().enumerate().all(|(i, (b, _))| {
            let h = home(b, bits);
            match (h..h + PROBES).find(|s| table[*s].is_none()) {
                Some(s) => {
                    table[s] = Some(i);
                    true
                }
                None => false,
            }
        });
        if placed {
            break table;
        }
        bits += 1;
    };
    let mut shape = Shape {
        bits,
        bucket_len,
        len: 0,
        generation: 0,
    };
    let mut offsets = Vec::with_capacity(blocks.len());
    let mut end = shape.blocks_start();
    for (_, v) in blocks {
        offsets.push(end);
        end += (v.len() + BLOCK_SUM) as u64;
    }
    shape.len = end;
    let mut out = Vec::with_capacity(end as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(&bucket_len.to_be_bytes());
    out.extend_from_slice(&[bits, 0]);
    out.extend_from_slice(&(blocks.len() as u32).to_be_bytes());
    let sum = crc(&[&out]);
    out.extend_from_slice(&sum);
    let empty = vec![0u8; usize::from(bucket_len)];
    for (n, slot) in table.iter().enumerate() {
        let start = out.len();
        match slot {
            Some(i) => {
                out.extend_from_slice(blocks[*i].0);
                out.extend_from_slice(&offsets[*i].to_be_bytes());
                let len = u32::try_from(blocks[*i].1.len()).map_err(backend)?;
                out.extend_from_slice(&len.to_be_bytes());
            }
            None => {
                out.extend_from_slice(&empty);
                out.extend_from_slice(&[0u8; 12]);
            }
        }
        let sum = slot_sum(at, n, &out[start..]);
        out.extend_from_slice(&sum);
    }
    for (b, v) in blocks {
        out.extend_from_slice(v);
        out.extend_from_slice(&block_sum(at, b, v));
    }
    Ok((shape, out))
}

/// Where the blocks of each `at` are, and which blocks of segments a later
/// write replaced.
#[derive(Default)]
struct Placed {
    /// Every `at` with blocks: `Some` for a segment, `None` for sled keys.
    ats: BTreeMap<u64, Option<Shape>>,
    /// `(at, bucket)` of every segment block an `O` key replaces or hides.
    overrides: HashSet<(u64, Vec<u8>)>,
    /// How many overrides each segment has, and the segments with at
    /// least [`REFOLD_OVERRIDES`], so a refolding step finds one without
    /// looking at every override.
    per_segment: HashMap<u64, usize>,
    ripe: BTreeSet<u64>,
    /// What did not load on open (a damaged `J` key): every read fails
    /// with it until the index is cleared, rather than miss its blocks.
    damage: Vec<String>,
}

impl Placed {
    fn add_override(&mut self, at: u64, bucket: Vec<u8>) {
        if self.overrides.insert((at, bucket)) {
            let n = self.per_segment.entry(at).or_default();
            *n += 1;
            if *n >= REFOLD_OVERRIDES {
                self.ripe.insert(at);
            }
        }
    }

    fn remove_override(&mut self, at: u64, bucket: Vec<u8>) {
        if self.overrides.remove(&(at, bucket))
            && let Some(n) = self.per_segment.get_mut(&at)
        {
            *n -= 1;
            if *n < REFOLD_OVERRIDES {
                self.ripe.remove(&at);
            }
            if *n == 0 {
                self.per_segment.remove(&at);
            }
        }
    }
}

/// The segments of one database and where every `at`'s blocks are.
pub(super) struct Segments {
    tree: sled::Tree,
    dir: PathBuf,
    placed: RwLock<Placed>,
    open: Mutex<OpenFiles<(u64, u32)>>,
    /// Fault injection: the next segment write fails at its fsync (1) or
    /// at its directory's fsync (2), after the rename.
    #[cfg(test)]
    pub(super) fail_next_file: AtomicU8,
}

/// What a write changes in [`Segments`]' memory once its batch is durable
/// ([`Segments::applied`]).
#[derive(Default)]
pub(super) struct Staged {
    ats: Vec<(u64, Option<Shape>)>,
    overrides: Vec<(u64, Vec<u8>)>,
}

/// An `at` whose blocks a tidying step moves out of sled: into the
/// segment of `shape`, or (`None`) nowhere, none being left.
pub(super) struct Tidied {
    at: u64,
    shape: Option<Shape>,
}

/// Overrides of one segment after which [`Segments::stage_refold`]
/// rewrites it with them: a log keeps fewer than this many `O` keys per
/// flush of the index, however many removals (erasures, retention) it
/// has seen, and a rewrite (a flush's segment, about 4.5 MB at 10 M
/// events) comes once per this many.
#[cfg(not(test))]
pub(super) const REFOLD_OVERRIDES: usize = 128;
#[cfg(test)]
pub(super) const REFOLD_OVERRIDES: usize = 8;

/// A segment a refolding step rewrites: its `at`, the shape of its new
/// file and of the file before, and the buckets whose overrides it folds.
pub(super) struct Refolded {
    at: u64,
    shape: Shape,
    before: Shape,
    folded: Vec<Vec<u8>>,
}

/// A segment's name in messages.
fn name(at: u64) -> String {
    format!("search index segment file {DIR}/{at}.seg")
}

/// Generation 0 is `<at>.seg`, a later one `<at>.<generation>.seg`.
fn file_name(at: u64, generation: u32) -> String {
    match generation {
        0 => format!("{at}.seg"),
        g => format!("{at}.{g}.seg"),
    }
}

/// The `at` and generation a file name names, if it is a segment's.
fn parse_file_name(file: &str) -> Option<(u64, u32)> {
    let stem = file.strip_suffix(".seg")?;
    match stem.split_once('.') {
        None => Some((stem.parse().ok()?, 0)),
        Some((at, g)) => Some((at.parse().ok()?, g.parse().ok().filter(|g| *g > 0)?)),
    }
}

impl Segments {
    /// Loads where the blocks are from `tree` (the `J` and `O` keys) and
    /// deletes the segment files no key names.
    pub(super) fn open(tree: &sled::Tree, db_dir: &Path) -> Result<Segments, StoreError> {
        let mut placed = Placed::default();
        for item in tree.scan_prefix([INDEX_AT]) {
            let (k, v) = item.map_err(backend)?;
            let at = decode_u64(&k[1..], "search index block position")?;
            if v.is_empty() {
                placed.ats.insert(at, None);
                continue;
            }
            match verified(&k, &v).map(|v| Shape::decode(&v)) {
                Ok(Some(shape)) => {
                    placed.ats.insert(at, Some(shape));
                }
                Ok(None) => placed
                    .damage
                    .push(format!("{}: its name in sled is malformed", name(at))),
                Err(e) => placed.damage.push(format!("{}: {e}", name(at))),
            }
        }
        for item in tree.scan_prefix([INDEX_OVERRIDE]).keys() {
            let k = item.map_err(backend)?;
            let at = decode_u64(
                k.get(1..9).unwrap_or_default(),
                "search index block position",
            )?;
            placed.add_override(at, k[9..].to_vec());
        }
        let segments = Segments {
            tree: tree.clone(),
            dir: db_dir.join(DIR),
            placed: RwLock::new(placed),
            open: Mutex::new(OpenFiles::with_limit(open_segments())),
            #[cfg(test)]
            fail_next_file: AtomicU8::new(0),
        };
        segments.delete_unnamed_files();
        Ok(segments)
    }

    fn placed(&self) -> std::sync::RwLockReadGuard<'_, Placed> {
        self.placed.read().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, at: u64, generation: u32) -> PathBuf {
        self.dir.join(file_name(at, generation))
    }

    /// Deletes the files of the directory that no `J` key names: flushes
    /// whose batch never landed, and their temporary files. A failure is
    /// logged; the file stays unread and a later open retries.
    fn delete_unnamed_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let placed = self.placed();
        let mut deleted = false;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let named = parse_file_name(&file).is_some_and(|(at, generation)| {
                matches!(placed.ats.get(&at), Some(Some(s)) if s.generation == generation)
            });
            if named {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => deleted = true,
                Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                    "couldn't delete an unnamed search index segment file"),
            }
        }
        if deleted && let Err(e) = durable::sync_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "couldn't fsync the index directory");
        }
    }

    /// Stages `blocks` into `batch`. With `flush`, they are every block of
    /// one new `at` (see [`crate::store::RecordBatch::index_flush`]): they
    /// go into a segment file, written durably now, which the batch names.
    /// Otherwise each goes where its `at` keeps its blocks: an `O` key for
    /// a segment's, a `j` key (and `J` key) for the rest.
    pub(super) fn stage(
        &self,
        batch: &mut sled::Batch,
        blocks: &[IndexBlock],
        flush: bool,
        watermark: Option<u64>,
    ) -> Result<Staged, StoreError> {
        let mut staged = Staged::default();
        let flushed_at = match (flush, blocks.first()) {
            (true, Some(first)) => Some(first.at),
            _ => None,
        };
        if let Some(at) = flushed_at {
            staged
                .ats
                .push((at, Some(self.write_segment(batch, at, blocks)?)));
        } else {
            let placed = self.placed();
            for block in blocks {
                let in_segment = matches!(placed.ats.get(&block.at), Some(Some(_)));
                if in_segment {
                    let k = override_key(&block.bucket, block.at);
                    let mut v = vec![];
                    match &block.value {
                        Some(value) => {
                            v.push(REPLACED);
                            v.extend_from_slice(value);
                        }
                        None => v.push(TOMBSTONE),
                    }
                    batch.insert(k.clone(), checksummed(&k, &v));
                    staged.overrides.push((block.at, block.bucket.clone()));
                    continue;
                }
                let k = block_key(&block.bucket, block.at);
                match &block.value {
                    Some(v) => {
                        batch.insert(k.clone(), checksummed(&k, v));
                        batch.insert(&at_key(block.at)[..], &[][..]);
                        staged.ats.push((block.at, None));
                    }
                    None => batch.remove(k),
                }
            }
        }
        if let Some(w) = watermark {
            batch.insert(
                INDEX_WATERMARK_KEY,
                checksummed(INDEX_WATERMARK_KEY, &w.to_be_bytes()),
            );
        }
        Ok(staged)
    }

    /// Writes the segment of `blocks` at `at` durably and stages the keys
    /// that name it. Blocks already in sled at `at` (the format marker,
    /// written at leaf 0 before the first flush) move into it.
    fn write_segment(
        &self,
        batch: &mut sled::Batch,
        at: u64,
        blocks: &[IndexBlock],
    ) -> Result<Shape, StoreError> {
        if blocks.iter().any(|b| b.at != at || b.value.is_none()) {
            return Err(backend(
                "a flush of the search index writes blocks of one position",
            ));
        }
        if matches!(self.placed().ats.get(&at), Some(Some(_))) {
            return Err(backend(format!("{} exists already", name(at))));
        }
        let mut earlier = Vec::new();
        let lo = block_key(&[], at);
        let hi = block_key(&[], at + 1);
        for item in self.tree.range(lo..hi) {
            let (k, v) = item.map_err(backend)?;
            let bucket = k[9..].to_vec();
            if !blocks.iter().any(|b| b.bucket == bucket) {
                earlier.push((bucket, verified(&k, &v)?));
            }
            batch.remove(k);
        }
        let mut all: Vec<(&[u8], &[u8])> = blocks
            .iter()
            .filter_map(|b| Some((b.bucket.as_slice(), b.value.as_deref()?)))
            .chain(earlier.iter().map(|(b, v)| (b.as_slice(), v.as_slice())))
            .collect();
        all.sort_unstable();
        let (shape, bytes) = encode_segment(at, &all)?;
        self.write_file(at, 0, &bytes)?;
        let k = at_key(at);
        batch.insert(&k[..], checksummed(&k, &shape.encode()));
        Ok(shape)
    }

    /// Stages the move of the blocks of the oldest `at` kept in sled below
    /// `watermark` into a segment file: the file is written durably now,
    /// and `batch` names it and deletes the `j` keys it holds. An `at`
    /// whose blocks were all deleted loses its `J` key instead. `None`
    /// when every such `at` is in a segment. Only below the watermark: a
    /// flush writes at the watermark and takes the blocks there (the
    /// format marker) into its own segment. Holds one flush's blocks.
    pub(super) fn stage_tidy(
        &self,
        batch: &mut sled::Batch,
        watermark: u64,
    ) -> Result<Option<Tidied>, StoreError> {
        let oldest = self
            .placed()
            .ats
            .range(..watermark)
            .find_map(|(at, shape)| shape.is_none().then_some(*at));
        let Some(at) = oldest else {
            return Ok(None);
        };
        let lo = block_key(&[], at);
        let hi = block_key(&[], at + 1);
        if self.tree.range(lo..hi).next().is_none() {
            batch.remove(&at_key(at)[..]);
            return Ok(Some(Tidied { at, shape: None }));
        }
        let shape = self.write_segment(batch, at, &[])?;
        Ok(Some(Tidied {
            at,
            shape: Some(shape),
        }))
    }

    /// Names in memory what a tidying batch is about to make durable, so
    /// reads turn to the (durable) segment before the batch deletes the
    /// `j` keys: its blocks are readable at every instant.
    pub(super) fn tidying(&self, t: &Tidied) {
        let mut placed = self.placed.write().unwrap_or_else(|e| e.into_inner());
        match t.shape {
            Some(shape) => placed.ats.insert(t.at, Some(shape)),
            None => placed.ats.remove(&t.at),
        };
    }

    /// Undoes [`Segments::tidying`] when the batch was not applied: reads
    /// go back to the `j` keys, and the unnamed file is deleted on open
    /// or overwritten by the retry.
    pub(super) fn untidied(&self, t: &Tidied) {
        let mut placed = self.placed.write().unwrap_or_else(|e| e.into_inner());
        placed.ats.insert(t.at, None);
    }

    /// Stages the rewrite of the oldest segment with [`REFOLD_OVERRIDES`]
    /// overrides or more: its blocks with the overrides applied,
    /// as the file of its next generation, written durably now; `batch`
    /// names that file and deletes the overrides. `None` when no segment
    /// has that many. Callers hold what every removal holds (the search
    /// index's write lock), so no override is written meanwhile.
    pub(super) fn stage_refold(
        &self,
        batch: &mut sled::Batch,
    ) -> Result<Option<Refolded>, StoreError> {
        let (at, before) = {
            let placed = self.placed();
            let ripe = placed.ripe.first().copied();
            match ripe.and_then(|at| Some((at, (*placed.ats.get(&at)?)?))) {
                Some(found) => found,
                None => return Ok(None),
            }
        };
        let path = self.path(at, before.generation);
        let bytes = std::fs::read(&path).map_err(|e| io_error("read", &path, e))?;
        let mut blocks: BTreeMap<Vec<u8>, Vec<u8>> = segment_blocks(at, before, &bytes)
            .map_err(StoreError::Corrupt)?
            .into_iter()
            .map(|(b, v)| (b.to_vec(), v.to_vec()))
            .collect();
        let mut folded = Vec::new();
        for item in self.tree.scan_prefix(override_key(&[], at)) {
            let (k, v) = item.map_err(backend)?;
            let bucket = k[9..].to_vec();
            match verified(&k, &v)?.split_first() {
                Some((&REPLACED, value)) => blocks.insert(bucket.clone(), value.to_vec()),
                Some((&TOMBSTONE, [])) => blocks.remove(&bucket),
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "the replacement of a block of {} is malformed",
                        name(at)
                    )));
                }
            };
            batch.remove(k);
            folded.push(bucket);
        }
        let all: Vec<(&[u8], &[u8])> = blocks
            .iter()
            .map(|(b, v)| (b.as_slice(), v.as_slice()))
            .collect();
        let (mut shape, out) = encode_segment(at, &all)?;
        shape.generation = before
            .generation
            .checked_add(1)
            .ok_or_else(|| backend(format!("{} was rewritten too often", name(at))))?;
        self.write_file(at, shape.generation, &out)?;
        let k = at_key(at);
        batch.insert(&k[..], checksummed(&k, &shape.encode()));
        Ok(Some(Refolded {
            at,
            shape,
            before,
            folded,
        }))
    }

    /// Names in memory the file a refolding batch is about to make
    /// durable, and forgets the overrides it folded in: the file is
    /// durable and holds them, so reads turn to it before the batch
    /// deletes the `O` keys. Readers hold the read lock for a whole read,
    /// so none reads the old file with the new shape or the reverse.
    pub(super) fn refolding(&self, r: &Refolded) {
        let mut placed = self.placed.write().unwrap_or_else(|e| e.into_inner());
        placed.ats.insert(r.at, Some(r.shape));
        for bucket in &r.folded {
            placed.remove_override(r.at, bucket.clone());
        }
    }

    /// Undoes [`Segments::refolding`] when the batch was not applied:
    /// the new file is unnamed (deleted on open, or replaced by the retry).
    pub(super) fn unrefolded(&self, r: &Refolded) {
        let mut placed = self.placed.write().unwrap_or_else(|e| e.into_inner());
        placed.ats.insert(r.at, Some(r.before));
        for bucket in &r.folded {
            placed.add_override(r.at, bucket.clone());
        }
    }

    /// Once the refolding batch is durable: deletes the segment's earlier
    /// file, which no key names any more (an open deletes it if this
    /// fails or a crash comes first).
    pub(super) fn refolded(&self, r: &Refolded) {
        self.open_files().forget((r.at, r.before.generation));
        let path = self.path(r.at, r.before.generation);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %e, "couldn't delete a rewritten search index segment file; the next start deletes it");
        }
    }

    /// The file of segment `at`, durably under its name.
    fn write_file(&self, at: u64, generation: u32, bytes: &[u8]) -> Result<(), StoreError> {
        if !self.dir.exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| io_error("create", &self.dir, e))?;
            let parent = self.dir.parent().unwrap_or(&self.dir);
            durable::sync_dir(parent).map_err(|e| io_error("fsync directory", parent, e))?;
        }
        let path = self.path(at, generation);
        let mut file = PendingFile::create(&path, Secrecy::Public)
            .map_err(|e| io_error("create", &path, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("write", &path, e))?;
        self.injected_fault(1, "fsync", &path)?;
        let renamed = file.commit_without_dir_sync();
        self.open_files().forget((at, generation));
        renamed.map_err(|e| io_error("write", &path, e))?;
        self.injected_fault(2, "fsync directory", &self.dir)?;
        durable::sync_dir(&self.dir).map_err(|e| io_error("fsync directory", &self.dir, e))
    }

    fn injected_fault(&self, point: u8, what: &str, path: &Path) -> Result<(), StoreError> {
        #[cfg(test)]
        super::runs::injected_fault(&self.fail_next_file, point, what, path)?;
        let _ = (point, what, path);
        Ok(())
    }

    /// Takes in what a durable batch staged with [`Segments::stage`] changed.
    pub(super) fn applied(&self, staged: Staged) {
        let mut placed = self.placed.write().unwrap_or_else(|e| e.into_inner());
        for (at, shape) in staged.ats {
            // A sled block never turns a segment's `at` back into sled's.
            let slot = placed.ats.entry(at).or_insert(shape);
            if shape.is_some() {
                *slot = shape;
            }
        }
        for (at, bucket) in staged.overrides {
            placed.add_override(at, bucket);
        }
    }

    /// The blocks of `bucket` with `at < below`, largest `at` first, at
    /// most `limit`: an `O` key where one replaced a segment's block,
    /// else the segment's block, or the `j` key of an `at` kept in sled.
    pub(super) fn blocks(
        &self,
        bucket: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let placed = self.placed();
        if let Some(first) = placed.damage.first() {
            return Err(StoreError::Corrupt(first.clone()));
        }
        let mut out = Vec::new();
        for (&at, shape) in placed.ats.range(..below).rev() {
            if out.len() >= limit {
                break;
            }
            let found = match shape {
                Some(_) if placed.overrides.contains(&(at, bucket.to_vec())) => {
                    self.replaced(bucket, at)?
                }
                Some(shape) => self.read_block(at, *shape, bucket)?,
                None => {
                    let key = block_key(bucket, at);
                    match self.tree.get(&key).map_err(backend)? {
                        Some(v) => Some(verified(&key, &v)?),
                        None => None,
                    }
                }
            };
            if let Some(v) = found {
                out.push((at, v));
            }
        }
        Ok(out)
    }

    /// The value an `O` key gives a segment's block (`None`: deleted).
    fn replaced(&self, bucket: &[u8], at: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let key = override_key(bucket, at);
        let Some(v) = self.tree.get(&key).map_err(backend)? else {
            return Err(StoreError::Corrupt(format!(
                "the replacement of a block of {} vanished",
                name(at)
            )));
        };
        let v = verified(&key, &v)?;
        match v.split_first() {
            Some((&REPLACED, value)) => Ok(Some(value.to_vec())),
            Some((&TOMBSTONE, [])) => Ok(None),
            _ => Err(StoreError::Corrupt(format!(
                "the replacement of a block of {} is malformed",
                name(at)
            ))),
        }
    }

    /// `bucket`'s block in segment `at`: one read of its directory window,
    /// one of the block.
    fn read_block(
        &self,
        at: u64,
        shape: Shape,
        bucket: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if bucket.len() != usize::from(shape.bucket_len) {
            return Ok(None);
        }
        let file = self.file(at, shape.generation)?;
        let first = home(bucket, shape.bits);
        let slot_len = shape.slot_len();
        let window = self.read_at(
            &file,
            at,
            shape,
            (HEADER + first * slot_len) as u64,
            PROBES * slot_len,
        )?;
        for (i, slot) in window.chunks_exact(slot_len).enumerate() {
            let (offset, len) = parse_slot(at, first + i, slot, shape)?;
            if offset == 0 {
                return Ok(None);
            }
            if &slot[..bucket.len()] != bucket {
                continue;
            }
            let mut bytes = self.read_at(&file, at, shape, offset, len + BLOCK_SUM)?;
            let sum = bytes.split_off(len);
            if block_sum(at, bucket, &bytes) != *sum {
                return Err(StoreError::Corrupt(format!(
                    "{}: the block of bucket {} fails its checksum",
                    name(at),
                    hex::encode(bucket)
                )));
            }
            return Ok(Some(bytes));
        }
        Ok(None)
    }

    fn read_at(
        &self,
        file: &File,
        at: u64,
        shape: Shape,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        if offset + len as u64 > shape.len {
            return Err(StoreError::Corrupt(format!(
                "{}: a slot points past its end",
                name(at)
            )));
        }
        let mut bytes = vec![0u8; len];
        match file.read_exact_at(&mut bytes, offset) {
            Ok(()) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StoreError::Corrupt(
                format!("{} is torn: shorter than {} bytes", name(at), shape.len),
            )),
            Err(e) => Err(io_error("read", &self.path(at, shape.generation), e)),
        }
    }

    /// Segment `at`'s file: a kept descriptor or a new one.
    fn file(&self, at: u64, generation: u32) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.open_files().get((at, generation)) {
            return Ok(f);
        }
        let path = self.path(at, generation);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Corrupt(format!("{} is missing", name(at))));
            }
            Err(e) => return Err(io_error("open", &path, e)),
        };
        self.open_files().keep((at, generation), file.clone());
        Ok(file)
    }

    fn open_files(&self) -> std::sync::MutexGuard<'_, OpenFiles<(u64, u32)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets every segment and override, before `clear_index` deletes
    /// their keys: reads see an empty index meanwhile.
    pub(super) fn forget_all(&self) {
        *self.placed.write().unwrap_or_else(|e| e.into_inner()) = Placed::default();
        *self.open_files() = OpenFiles::with_limit(open_segments());
    }

    /// Deletes every segment file; call once no durable key names any.
    pub(super) fn delete_files(&self) -> Result<(), StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("list", &self.dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| io_error("list", &self.dir, e))?.path();
            std::fs::remove_file(&path).map_err(|e| io_error("delete", &path, e))?;
        }
        durable::sync_dir(&self.dir).map_err(|e| io_error("fsync directory", &self.dir, e))
    }

    /// Problems found in the segment files (fsck): each file read whole,
    /// one at a time, against its header, directory and checksums.
    pub(super) fn check(&self) -> Vec<String> {
        let (mut out, segments): (Vec<String>, Vec<(u64, Shape)>) = {
            let placed = self.placed();
            let segments = placed
                .ats
                .iter()
                .filter_map(|(at, s)| Some((*at, (*s)?)))
                .collect();
            (placed.damage.clone(), segments)
        };
        for (at, shape) in segments {
            match std::fs::read(self.path(at, shape.generation)) {
                Ok(bytes) => {
                    if let Err(e) = check_segment(at, shape, &bytes) {
                        out.push(e);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    out.push(format!("{} is missing", name(at)));
                }
                Err(e) => out.push(format!("{}: couldn't read it: {e}", name(at))),
            }
        }
        out
    }
}

/// A slot's offset and length, once its checksum holds; offset 0 is an
/// empty slot.
fn parse_slot(at: u64, n: usize, slot: &[u8], shape: Shape) -> Result<(u64, usize), StoreError> {
    let b = usize::from(shape.bucket_len);
    let (body, sum) = slot.split_at(slot.len() - 4);
    if slot_sum(at, n, body) != *sum {
        return Err(StoreError::Corrupt(format!(
            "{}: directory slot {n} fails its checksum",
            name(at)
        )));
    }
    let offset = u64::from_be_bytes(body[b..b + 8].try_into().unwrap_or_default());
    let len = u32::from_be_bytes(body[b + 8..b + 12].try_into().unwrap_or_default());
    Ok((offset, len as usize))
}

/// Checks a whole segment file; the first problem, named.
fn check_segment(at: u64, shape: Shape, bytes: &[u8]) -> Result<(), String> {
    segment_blocks(at, shape, bytes).map(|_| ())
}

/// A block of a segment file: its bucket and value.
type SegmentBlock<'a> = (&'a [u8], &'a [u8]);

/// Every block of a whole segment file in directory order, once the file
/// checks against its header, directory and checksums; else the first
/// problem, named.
fn segment_blocks(at: u64, shape: Shape, bytes: &[u8]) -> Result<Vec<SegmentBlock<'_>>, String> {
    let bad = |why: String| format!("{}: {why}", name(at));
    if bytes.len() as u64 != shape.len {
        return Err(format!(
            "{} is torn: {} bytes, {} expected",
            name(at),
            bytes.len(),
            shape.len
        ));
    }
    let header = &bytes[..HEADER.min(bytes.len())];
    let mut expected = Vec::from(&MAGIC[..]);
    expected.extend_from_slice(&at.to_be_bytes());
    expected.extend_from_slice(&shape.bucket_len.to_be_bytes());
    expected.extend_from_slice(&[shape.bits, 0]);
    if header.len() < HEADER
        || header[..20] != expected[..]
        || crc(&[&header[..24]]) != header[24..28]
    {
        return Err(bad("its header is damaged or names another segment".into()));
    }
    let slot_len = shape.slot_len();
    let b = usize::from(shape.bucket_len);
    let mut blocks = Vec::new();
    for n in 0..shape.slots() {
        let slot = &bytes[HEADER + n * slot_len..HEADER + (n + 1) * slot_len];
        let (offset, len) = parse_slot(at, n, slot, shape).map_err(|e| e.to_string())?;
        if offset == 0 {
            continue;
        }
        let end = offset as usize + len + BLOCK_SUM;
        let Some(block) = bytes.get(offset as usize..end) else {
            return Err(bad(format!("directory slot {n} points past its end")));
        };
        let (value, sum) = block.split_at(len);
        if block_sum(at, &slot[..b], value) != *sum {
            return Err(bad(format!(
                "the block of bucket {} fails its checksum",
                hex::encode(&slot[..b])
            )));
        }
        blocks.push((&slot[..b], value));
    }
    if header[20..24] != (blocks.len() as u32).to_be_bytes() {
        return Err(bad("its directory lost blocks".into()));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledStore;
    use crate::store::{RecordBatch, Store};

    fn block(bucket: &[u8], at: u64, value: Option<&[u8]>) -> IndexBlock {
        IndexBlock {
            bucket: bucket.to_vec(),
            at,
            value: value.map(<[u8]>::to_vec),
        }
    }

    /// A flush at `at` of `buckets`, each block naming its bucket and `at`.
    fn flush(store: &SledStore, at: u64, buckets: &[&[u8]], to: u64) -> Result<(), StoreError> {
        store.commit_records(&RecordBatch {
            index_blocks: buckets
                .iter()
                .map(|b| block(b, at, Some(format!("{}@{at}", hex::encode(b)).as_bytes())))
                .collect(),
            index_flush: true,
            index_watermark: Some(to),
            ..RecordBatch::default()
        })
    }

    fn value(bucket: &[u8], at: u64) -> (u64, Vec<u8>) {
        (at, format!("{}@{at}", hex::encode(bucket)).into_bytes())
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        super::super::runs::tests::files(&dir.join(DIR))
    }

    /// Many buckets of the search index's shape: a field tag and 10 bits.
    fn buckets(n: u16) -> Vec<[u8; 3]> {
        (0..n)
            .map(|i| [b'a' + (i >> 10) as u8, (i >> 2) as u8, ((i & 3) << 6) as u8])
            .collect()
    }

    #[test]
    fn a_flush_is_one_segment_file_that_later_writes_override() {
        let dir = tempfile::tempdir().unwrap();
        let all = buckets(700);
        let refs: Vec<&[u8]> = all.iter().map(|b| &b[..]).collect();
        {
            let store = SledStore::open(dir.path()).unwrap();
            // The format marker, written in sled before the first flush.
            store
                .commit_records(&RecordBatch {
                    index_blocks: vec![block(&[0, 0, 0], 0, Some(b"marker"))],
                    index_watermark: Some(0),
                    ..RecordBatch::default()
                })
                .unwrap();
            flush(&store, 0, &refs, 100).unwrap();
            flush(&store, 100, &refs[..5], 200).unwrap();
            assert_eq!(segment_files(dir.path()), ["0.seg", "100.seg"]);
            let db = store.db().unwrap();
            assert_eq!(
                db.tree.scan_prefix([INDEX_BLOCK]).count(),
                0,
                "the marker moved into the first segment"
            );
            drop(db);
            // A removal rewrites one block and deletes another.
            store
                .commit_records(&RecordBatch {
                    index_blocks: vec![
                        block(refs[1], 100, Some(b"rewritten")),
                        block(refs[2], 0, None),
                    ],
                    ..RecordBatch::default()
                })
                .unwrap();
        }
        // Reopened: the overrides load from sled, the segments from files.
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.index_watermark().unwrap(), Some(200));
        assert_eq!(
            store.index_blocks(&[0, 0, 0], 1, 1).unwrap(),
            vec![(0, b"marker".to_vec())]
        );
        assert_eq!(
            store.index_blocks(refs[1], u64::MAX, 10).unwrap(),
            vec![(100, b"rewritten".to_vec()), value(refs[1], 0)]
        );
        assert_eq!(
            store.index_blocks(refs[2], u64::MAX, 10).unwrap(),
            vec![value(refs[2], 100)],
            "a tombstone hides the segment's block"
        );
        assert_eq!(
            store.index_blocks(refs[2], 100, 10).unwrap(),
            Vec::<(u64, Vec<u8>)>::new()
        );
        for (i, b) in refs.iter().enumerate().skip(3) {
            let mut expected = vec![value(b, 0)];
            if i < 5 {
                expected.insert(0, value(b, 100));
            }
            assert_eq!(store.index_blocks(b, u64::MAX, 10).unwrap(), expected);
            assert_eq!(store.index_blocks(b, u64::MAX, 1).unwrap(), expected[..1]);
        }
        assert!(store.index_blocks(b"tzz", u64::MAX, 10).unwrap().is_empty());
        assert!(
            store
                .index_blocks(b"long bucket", u64::MAX, 10)
                .unwrap()
                .is_empty()
        );
        assert!(store.check_index_segments().is_empty());
        store.clear_index().unwrap();
        assert!(segment_files(dir.path()).is_empty());
        assert!(
            store
                .index_blocks(refs[3], u64::MAX, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .db()
                .unwrap()
                .tree
                .scan_prefix([INDEX_OVERRIDE])
                .count(),
            0
        );
        // A rebuild flushes at 0 again, into a new file.
        flush(&store, 0, &refs[..2], 50).unwrap();
        assert_eq!(
            store.index_blocks(refs[1], u64::MAX, 10).unwrap(),
            vec![value(refs[1], 0)]
        );
    }

    #[test]
    fn blocks_kept_in_sled_before_segments_stay_readable_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // The layout before segments: every flush's blocks as sled keys.
        for at in [0, 10] {
            store
                .commit_records(&RecordBatch {
                    index_blocks: vec![block(
                        b"bka",
                        at,
                        Some(format!("{}@{at}", hex::encode(b"bka")).as_bytes()),
                    )],
                    index_watermark: Some(at + 10),
                    ..RecordBatch::default()
                })
                .unwrap();
        }
        flush(&store, 20, &[b"bka", b"bkb"], 30).unwrap();
        let expected = vec![value(b"bka", 20), value(b"bka", 10), value(b"bka", 0)];
        assert_eq!(store.index_blocks(b"bka", u64::MAX, 10).unwrap(), expected);
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.index_blocks(b"bka", u64::MAX, 10).unwrap(), expected);
        assert_eq!(store.index_blocks(b"bka", 20, 1).unwrap(), expected[1..2]);
    }

    #[test]
    fn a_failed_segment_write_changes_nothing_and_its_file_is_deleted_on_open() {
        for fault in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = SledStore::open(dir.path()).unwrap();
                flush(&store, 0, &[b"bka"], 10).unwrap();
                store.fail_next_index_segment(fault);
                assert!(
                    flush(&store, 10, &[b"bka", b"bkb"], 20).is_err(),
                    "fault {fault}"
                );
                assert!(!store.latched(), "nothing reached sled");
                assert_eq!(store.index_watermark().unwrap(), Some(10));
                assert_eq!(
                    store.index_blocks(b"bka", u64::MAX, 10).unwrap(),
                    vec![value(b"bka", 0)]
                );
                assert!(store.index_blocks(b"bkb", u64::MAX, 10).unwrap().is_empty());
                if fault == 2 {
                    // Renamed, but the batch naming it never came.
                    assert_eq!(segment_files(dir.path()), ["0.seg", "10.seg"]);
                }
            }
            let store = SledStore::open(dir.path()).unwrap();
            assert_eq!(segment_files(dir.path()), ["0.seg"], "fault {fault}");
            // The flush is retried.
            flush(&store, 10, &[b"bka", b"bkb"], 20).unwrap();
            assert_eq!(
                store.index_blocks(b"bka", u64::MAX, 10).unwrap(),
                vec![value(b"bka", 10), value(b"bka", 0)]
            );
        }
    }

    #[test]
    fn a_segment_with_many_overrides_is_rewritten_with_them_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let all = buckets(40);
        let refs: Vec<&[u8]> = all.iter().map(|b| &b[..]).collect();
        let store = SledStore::open(dir.path()).unwrap();
        flush(&store, 0, &refs, 100).unwrap();
        flush(&store, 100, &refs, 200).unwrap();
        // Removals rewriting every other block and deleting the rest.
        let removal = |store: &SledStore, at: u64, range: std::ops::Range<usize>| {
            let index_blocks = range
                .map(|i| IndexBlock {
                    bucket: refs[i].to_vec(),
                    at,
                    value: (i % 2 == 0).then(|| format!("removed {i}@{at}").into_bytes()),
                })
                .collect();
            store
                .commit_records(&RecordBatch {
                    index_blocks,
                    ..RecordBatch::default()
                })
                .unwrap();
        };
        let overrides = |store: &SledStore| keys(store, INDEX_OVERRIDE).len();
        removal(&store, 100, 0..REFOLD_OVERRIDES - 1);
        removal(&store, 0, 0..REFOLD_OVERRIDES + 2);
        let before = answers(&store, &refs);
        assert_eq!(overrides(&store), 2 * REFOLD_OVERRIDES + 1);
        // One step rewrites segment 0, the one at the threshold; the next
        // finds nothing to do.
        assert!(store.tidy_index().unwrap());
        assert!(!store.tidy_index().unwrap());
        assert_eq!(segment_files(dir.path()), ["0.1.seg", "100.seg"]);
        assert_eq!(overrides(&store), REFOLD_OVERRIDES - 1);
        assert_eq!(answers(&store, &refs), before);
        assert!(store.check_index_segments().is_empty());

        // A failed write of the next generation changes nothing.
        removal(&store, 0, 20..20 + REFOLD_OVERRIDES);
        let before = answers(&store, &refs);
        for fault in [1, 2] {
            store.fail_next_index_segment(fault);
            assert!(store.tidy_index().is_err(), "fault {fault}");
            assert!(!store.latched(), "nothing reached sled");
            assert_eq!(answers(&store, &refs), before, "fault {fault}");
            assert_eq!(overrides(&store), 2 * REFOLD_OVERRIDES - 1);
        }
        // A failed sync of the batch that names it: the store stops, and
        // once reopened reads as before, from whichever file it names.
        super::super::tests::fail_next_sync(&store);
        assert!(store.tidy_index().is_err());
        assert!(store.latched());
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(answers(&store, &refs), before);
        while store.tidy_index().unwrap() {}
        assert_eq!(answers(&store, &refs), before);
        assert_eq!(segment_files(dir.path()), ["0.2.seg", "100.seg"]);
        assert_eq!(overrides(&store), REFOLD_OVERRIDES - 1);
        assert!(store.check_index_segments().is_empty());
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(answers(&store, &refs), before);
        assert_eq!(segment_files(dir.path()), ["0.2.seg", "100.seg"]);
    }

    /// Writes `buckets`' blocks at `at` the way databases from before
    /// segments hold them: `j` keys, and an empty `J` key.
    fn write_in_sled(store: &SledStore, at: u64, buckets: &[&[u8]], to: u64) {
        store
            .commit_records(&RecordBatch {
                index_blocks: buckets
                    .iter()
                    .map(|b| block(b, at, Some(format!("{}@{at}", hex::encode(b)).as_bytes())))
                    .collect(),
                index_watermark: Some(to),
                ..RecordBatch::default()
            })
            .unwrap();
    }

    /// Every answer `index_blocks` gives for `buckets` (and one bucket
    /// without blocks): all blocks, and the first two below 250.
    type Answers = Vec<Vec<(u64, Vec<u8>)>>;
    fn answers(store: &SledStore, buckets: &[&[u8]]) -> Answers {
        let mut out = Vec::new();
        for b in buckets.iter().chain([&&b"tzz"[..]]) {
            out.push(store.index_blocks(b, u64::MAX, 100).unwrap());
            out.push(store.index_blocks(b, 250, 2).unwrap());
        }
        out
    }

    fn keys(store: &SledStore, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = store.db().unwrap();
        db.tree
            .scan_prefix([prefix])
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    #[test]
    fn tidying_moves_blocks_kept_in_sled_into_segments_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let all = buckets(300);
        let refs: Vec<&[u8]> = all.iter().map(|b| &b[..]).collect();
        let store = SledStore::open(dir.path()).unwrap();
        // Four writes the old way, then one flush into a segment.
        for (at, n) in [(0, 300), (100, 40), (200, 7), (300, 2)] {
            write_in_sled(&store, at, &refs[..n], at + 100);
        }
        flush(&store, 400, &refs[..20], 500).unwrap();
        // Removals before the move: a block of 100 rewritten, one
        // deleted; every block of 300 deleted (its `J` key stays).
        store
            .commit_records(&RecordBatch {
                index_blocks: vec![
                    block(refs[1], 100, Some(b"rewritten")),
                    block(refs[2], 100, None),
                    block(refs[0], 300, None),
                    block(refs[1], 300, None),
                ],
                ..RecordBatch::default()
            })
            .unwrap();
        assert_eq!(keys(&store, INDEX_AT).len(), 5);
        let mut expected = answers(&store, &refs);
        assert_eq!(
            expected[2],
            vec![
                value(refs[1], 400),
                value(refs[1], 200),
                (100, b"rewritten".to_vec()),
                value(refs[1], 0)
            ]
        );
        assert_eq!(
            expected[4],
            vec![value(refs[2], 400), value(refs[2], 200), value(refs[2], 0)]
        );

        let mut steps = 0;
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // A reader meanwhile sees every block at every instant.
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for (i, b) in refs.iter().enumerate().step_by(37) {
                        let found = store.index_blocks(b, 400, 100).unwrap();
                        assert!(
                            found.iter().any(|(at, _)| *at == 0),
                            "bucket {i}: {found:?}"
                        );
                        reads += 1;
                    }
                }
                reads
            });
            while store.tidy_index().unwrap() {
                steps += 1;
                assert_eq!(answers(&store, &refs), expected, "after step {steps}");
                if steps == 1 {
                    // A removal between steps: 0 is a segment now, 200 not.
                    store
                        .commit_records(&RecordBatch {
                            index_blocks: vec![
                                block(refs[3], 0, Some(b"erased at 0")),
                                block(refs[3], 200, Some(b"erased at 200")),
                            ],
                            ..RecordBatch::default()
                        })
                        .unwrap();
                    expected = answers(&store, &refs);
                    assert_eq!(
                        expected[6],
                        vec![
                            value(refs[3], 400),
                            (200, b"erased at 200".to_vec()),
                            value(refs[3], 100),
                            (0, b"erased at 0".to_vec()),
                        ]
                    );
                }
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(steps, 4, "0, 100, 200, and 300 without blocks");
        assert!(keys(&store, INDEX_BLOCK).is_empty());
        let named = keys(&store, INDEX_AT);
        assert_eq!(named.len(), 4, "300 is gone");
        assert!(named.iter().all(|(_, v)| !v.is_empty()), "all segments");
        assert_eq!(
            segment_files(dir.path()),
            ["0.seg", "100.seg", "200.seg", "400.seg"]
        );
        assert!(!store.tidy_index().unwrap());
        assert!(store.check_index_segments().is_empty());
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(answers(&store, &refs), expected);
        assert!(!store.tidy_index().unwrap());
    }

    #[test]
    fn tidying_leaves_blocks_at_the_watermark_to_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // A new index: the format marker at 0, the watermark 0.
        write_in_sled(&store, 0, &[&[0, 0, 0]], 0);
        assert!(!store.tidy_index().unwrap());
        flush(&store, 0, &[b"bka"], 10).unwrap();
        assert_eq!(segment_files(dir.path()), ["0.seg"]);
        assert_eq!(
            store.index_blocks(&[0, 0, 0], 1, 1).unwrap(),
            vec![value(&[0, 0, 0], 0)]
        );
        assert!(!store.tidy_index().unwrap());
    }

    #[test]
    fn a_failed_or_interrupted_tidying_step_keeps_the_blocks_in_sled_and_is_retried() {
        let all = buckets(64);
        let refs: Vec<&[u8]> = all.iter().map(|b| &b[..]).collect();
        for fault in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let expected;
            {
                let store = SledStore::open(dir.path()).unwrap();
                write_in_sled(&store, 0, &refs, 10);
                write_in_sled(&store, 10, &refs[..9], 20);
                expected = answers(&store, &refs);
                store.fail_next_index_segment(fault);
                assert!(store.tidy_index().is_err(), "fault {fault}");
                assert!(!store.latched(), "nothing reached sled");
                assert_eq!(answers(&store, &refs), expected, "fault {fault}");
                assert_eq!(keys(&store, INDEX_BLOCK).len(), 64 + 9);
                if fault == 2 {
                    // Written and renamed, but the batch naming it never
                    // came: what a crash right there leaves.
                    assert_eq!(segment_files(dir.path()), ["0.seg"]);
                }
            }
            let store = SledStore::open(dir.path()).unwrap();
            assert!(segment_files(dir.path()).is_empty(), "fault {fault}");
            assert_eq!(answers(&store, &refs), expected, "fault {fault}");
            assert!(store.tidy_index().unwrap());
            assert!(store.tidy_index().unwrap());
            assert!(!store.tidy_index().unwrap());
            assert_eq!(segment_files(dir.path()), ["0.seg", "10.seg"]);
            assert!(keys(&store, INDEX_BLOCK).is_empty());
            assert_eq!(answers(&store, &refs), expected, "fault {fault}");
        }
    }

    #[test]
    fn a_damaged_torn_or_missing_segment_is_named_never_read_as_no_match() {
        let all = buckets(64);
        let refs: Vec<&[u8]> = all.iter().map(|b| &b[..]).collect();
        type Damage = fn(&Path);
        let cases: [(&str, Damage); 4] = [
            ("a flipped block byte", |p| flip(p, -6)),
            ("a flipped directory byte", |p| {
                // A byte of the slot where the first bucket's lookup starts.
                let bits = std::fs::read(p).unwrap()[18];
                let slot = home(&buckets(1)[0], bits);
                flip(p, (HEADER + slot * (3 + SLOT_TAIL) + 1) as isize)
            }),
            ("a torn file", |p| {
                let bytes = std::fs::read(p).unwrap();
                std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
            }),
            ("a missing file", |p| std::fs::remove_file(p).unwrap()),
        ];
        fn flip(p: &Path, at: isize) {
            let mut bytes = std::fs::read(p).unwrap();
            let at = if at < 0 {
                bytes.len() - at.unsigned_abs()
            } else {
                at as usize
            };
            bytes[at] ^= 1;
            std::fs::write(p, bytes).unwrap();
        }
        for (what, damage) in cases {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = SledStore::open(dir.path()).unwrap();
                flush(&store, 0, &refs, 10).unwrap();
            }
            damage(&dir.path().join(DIR).join("0.seg"));
            let store = SledStore::open(dir.path()).unwrap();
            let found = store.check_index_segments();
            assert!(
                found.len() == 1 && found[0].contains("index/0.seg"),
                "{what}: {found:?}"
            );
            // Some bucket's read fails, naming the file; none reads as
            // absent where it was written.
            let mut failed = 0;
            for b in &refs {
                match store.index_blocks(b, u64::MAX, 1) {
                    Ok(found) => assert_eq!(found, vec![value(b, 0)], "{what}"),
                    Err(StoreError::Corrupt(m)) => {
                        assert!(m.contains("index/0.seg"), "{what}: {m}");
                        failed += 1;
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
            assert!(failed > 0, "{what}");
        }
    }

    #[test]
    fn a_directory_keeps_every_bucket_within_its_probe_window() {
        for n in [1, 3, 100, 1024, 3000, 11 * 1024] {
            let all = buckets(n);
            let blocks: Vec<(&[u8], &[u8])> = all.iter().map(|b| (&b[..], &b[..])).collect();
            let (shape, bytes) = encode_segment(7, &blocks).unwrap();
            assert_eq!(bytes.len() as u64, shape.len);
            assert!(
                shape.slots() < 4 * n as usize + 16 + PROBES,
                "{n}: {}",
                shape.slots()
            );
            check_segment(7, shape, &bytes).unwrap();
        }
    }
}
