//! The search index: which leaves carry a search term, kept so that an
//! append costs the store next to nothing.
//!
//! Layout. Each term (an HMAC of a field value, see [`crate::crypto`])
//! falls in one of 1,024 buckets of its field. The postings of the newest
//! leaves are kept in memory, in the tail. Once the tail holds
//! `flush_events` events, a background thread writes it out as one block
//! per bucket it touched, keyed `(bucket, at)` where `at` is the first leaf
//! the flush covers, together with the new watermark (the first leaf not
//! in any block), in one atomic write marked as a flush (a backend may
//! keep a flush's blocks together: the sled backend's segment files). A
//! block lists, for each of its terms, that term's leaves in ascending
//! order. A flush of 32,768 events
//! writes a few thousand keys where indexing each event on its own would
//! write five per event; small keys at random places are what the store
//! spends most on, so this keeps ingest with indexes close to ingest
//! without them.
//!
//! Durability. The index is derived data: each sealed body is written
//! with its leaf. On start the vault re-derives the tail from the events
//! at and above the watermark, so an acknowledged event is searchable
//! before and after a crash, and a missing or cleared index is rebuilt
//! from the events.
//!
//! Building. When that is more than a flush's worth of events (a missing
//! index or one of another format, in a large log), a server does it in
//! the background ([`super::rebuild`]) instead of before it serves, so a
//! start indexes a bounded number of events: while the index is
//! building, the write path's appends are dropped (the builder reads
//! those events from the store), and the builder appends the events from
//! the index's right end up to the tree's size, a step at a time. The
//! step that reaches the tree's size ends the building, under the vault's
//! key lock, so no committed batch falls between the two. Its progress is
//! the watermark the flushes store: a restart resumes there. Searches are
//! refused while it builds (an index that lacks the older events would
//! answer "no match" where there is one).
//!
//! Reads. Postings at or above the tail's start come from the tail, older
//! ones from the blocks, newest block first. Blocks from different
//! flushes cover disjoint ranges of leaves, so a scan from the newest
//! block down yields each leaf once, in descending order. A term's
//! leaves in a block, as a cursor found them, are kept in a cache bounded
//! by [`BLOCK_CACHE_BYTES`] ([`BlockCache`]): a rare term has a block in
//! nearly every flush of a large log, each read a random read of the
//! store, and the same terms are searched again (the pages of one query,
//! an auditor coming back to a subject). A cached answer never goes
//! stale: a flush only adds blocks above every watermark a cursor reads
//! below, and a removal drops the answers of the terms it removes
//! postings of after its commit (the other terms' postings in a block it
//! rewrites are as they were).
//!
//! Format. A marker block (bucket [`MARKER_BUCKET`]) names the format the
//! blocks are in; an index without the current marker reads as no index
//! ([`stored_watermark`]), so the vault clears it and rebuilds it from the
//! events when it opens.
//!
//! Removal (erasure, retention) rewrites the blocks that hold the removed
//! postings, in the same atomic change that destroys the bodies, and then
//! drops them from the tail. Flushes and removals are serialised, so a
//! flush never writes back a posting a removal took out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::crypto::Term;
use crate::fifo_cache::FifoCache;
use crate::store::{IndexBlock, RecordBatch, Store, StoreError};
use crate::vault::Vault;
use crate::vault::background::{self, Pace, Step};

/// Events kept in the tail before a flush is started.
pub const DEFAULT_FLUSH_EVENTS: usize = 32_768;
/// With this many flushes' worth of events in the tail (the flusher fell
/// behind), the appending thread flushes itself: the tail's memory is
/// bounded.
const BACKLOG_FLUSHES: usize = 4;
/// Blocks read per store call while scanning.
const BLOCKS_PER_READ: usize = 16;
/// Bytes the cache of a term's leaves per block may hold (an empty
/// answer, the common one for a rare term, costs about 100).
pub const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// Length of a term: field tag and HMAC.
const TERM_LEN: usize = 33;
/// The bucket of the format marker: no field has tag 0.
const MARKER_BUCKET: [u8; 3] = [0, 0, 0];
/// The format of the blocks: which terms each event has (see
/// [`crate::vault::Vault::terms_of`]). A change of the terms is a change
/// of format, and the index is rebuilt.
const FORMAT: &[u8] = b"veritrail search index v2: app actor action resource outcome purpose subject occurred-day/month/year/far";

/// The marker block of the current format, to commit with a new index's
/// watermark.
pub(crate) fn format_marker() -> IndexBlock {
    IndexBlock {
        bucket: MARKER_BUCKET.to_vec(),
        at: 0,
        value: Some(FORMAT.to_vec()),
    }
}

/// The stored watermark, or `None` when there is no index or it is of
/// another format: either way the vault rebuilds it from the events.
pub(crate) fn stored_watermark(store: &dyn Store) -> Result<Option<u64>, StoreError> {
    let Some(w) = store.index_watermark()? else {
        return Ok(None);
    };
    let marker = store.index_blocks(&MARKER_BUCKET, 1, 1)?.pop();
    if marker.as_ref().map(|(_, v)| v.as_slice()) != Some(FORMAT) {
        tracing::warn!("the search index is of an earlier format; it is rebuilt from the events");
        return Ok(None);
    }
    Ok(Some(w))
}

/// The bucket of `term`: its field tag and the top 10 bits of its HMAC.
pub(crate) fn bucket(term: &Term) -> [u8; 3] {
    [term.0[0], term.0[1], term.0[2] & 0xC0]
}

/// The postings of one block, by term.
type Groups = BTreeMap<Term, Vec<u64>>;

/// `(term(33) || u32 BE count || count x u64 BE leaf index)*`, terms in
/// ascending order, each term's leaves ascending.
fn encode_block(groups: &Groups) -> Vec<u8> {
    let size: usize = groups.values().map(|l| TERM_LEN + 4 + 8 * l.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (term, leaves) in groups {
        out.extend_from_slice(&term.0);
        out.extend_from_slice(&(leaves.len() as u32).to_be_bytes());
        for i in leaves {
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
    out
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("search index block {what}"))
}

/// A group of a block as stored: its term, the bytes of its leaf list,
/// and what follows it.
type RawGroup<'a> = (&'a [u8; TERM_LEN], &'a [u8], &'a [u8]);

/// The first group of `rest` (which is not empty).
fn split_group(rest: &[u8]) -> Result<RawGroup<'_>, StoreError> {
    let (term, after) = rest
        .split_first_chunk::<TERM_LEN>()
        .ok_or_else(|| corrupt("is truncated in a term"))?;
    let (count, after) = after
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("is truncated in a count"))?;
    let bytes = (u32::from_be_bytes(*count) as usize)
        .checked_mul(8)
        .filter(|n| *n <= after.len())
        .ok_or_else(|| corrupt("is truncated in a leaf list"))?;
    Ok((term, &after[..bytes], &after[bytes..]))
}

/// A group's leaf list: not empty, ascending.
fn decode_leaves(bytes: &[u8]) -> Result<Vec<u64>, StoreError> {
    let leaves: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    if leaves.is_empty() || leaves.windows(2).any(|w| w[0] >= w[1]) {
        return Err(corrupt("has a leaf list that is empty or out of order"));
    }
    Ok(leaves)
}

/// The groups of a stored block, in order: each term with its leaves.
/// Fails on a block that is not in the shape `encode_block` writes.
fn block_groups(value: &[u8]) -> impl Iterator<Item = Result<(Term, Vec<u64>), StoreError>> + '_ {
    let mut rest = value;
    let mut previous: Option<Term> = None;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let group = (|| {
            let (term, leaves, after) = split_group(rest)?;
            let leaves = decode_leaves(leaves)?;
            let term = Term(*term);
            if previous.is_some_and(|p| p >= term) {
                return Err(corrupt("has its terms out of order"));
            }
            previous = Some(term);
            rest = after;
            Ok((term, leaves))
        })();
        if group.is_err() {
            // Stop after reporting the damage.
            rest = &[];
        }
        Some(group)
    })
}

fn decode_block(value: &[u8]) -> Result<Groups, StoreError> {
    block_groups(value).collect()
}

/// The leaves of `term` in a stored block, ascending. Skips the other
/// terms' leaf lists without reading them: a block may hold tens of
/// thousands of postings of other terms.
pub(crate) fn leaves_in_block(value: &[u8], term: &Term) -> Result<Vec<u64>, StoreError> {
    let mut rest = value;
    while !rest.is_empty() {
        let (t, leaves, after) = split_group(rest)?;
        match t.as_slice().cmp(term.0.as_slice()) {
            // Terms are in ascending order: it is not in this block.
            std::cmp::Ordering::Greater => return Ok(Vec::new()),
            std::cmp::Ordering::Less => rest = after,
            std::cmp::Ordering::Equal => return decode_leaves(leaves),
        }
    }
    Ok(Vec::new())
}

/// The postings of the newest leaves, in memory.
#[derive(Default)]
struct Tail {
    /// The first leaf of the tail: the store's watermark.
    from: u64,
    /// The first leaf after the tail.
    to: u64,
    /// Events in `postings`.
    events: usize,
    /// Leaves by term, ascending; all above those in `flushing`.
    postings: Postings,
    /// While a flush writes them: the postings it writes (the leaves from
    /// `from` on), searchable here until the write is done.
    flushing: Option<Arc<Postings>>,
}

type Postings = HashMap<Term, Vec<u64>>;

/// The search index of a vault (see the module comment).
pub(crate) struct SearchIndex {
    store: Arc<dyn Store>,
    tail: RwLock<Tail>,
    /// Serialises flushes and removals.
    writing: Mutex<()>,
    flush_events: usize,
    /// Wakes the background flusher, once started.
    wake: Mutex<Option<SyncSender<()>>>,
    /// While true, the index is being built up to the tree's size and the
    /// write path's appends are dropped (see the module comment).
    building: AtomicBool,
    /// While building: the tree's size the last step saw.
    building_target: AtomicU64,
    /// What cursors read of the blocks.
    blocks: Mutex<BlockCache>,
}

/// How far a building index has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildProgress {
    /// Leaves indexed (every leaf below this one).
    pub indexed: u64,
    /// The tree's size when last looked at.
    pub target: u64,
}

fn poisoned() -> StoreError {
    StoreError::Backend("search index lock poisoned".into())
}

/// A planned removal: holds off flushes until it is applied or dropped.
pub(crate) struct Removal<'a> {
    _writing: MutexGuard<'a, ()>,
    /// Postings to drop from the tail once the blocks are committed.
    tail: Vec<(Term, u64)>,
    /// The terms whose postings it removes: their cached blocks go.
    terms: BTreeSet<Term>,
}

impl SearchIndex {
    /// An index whose blocks in `store` cover the leaves below `from`,
    /// with an empty tail.
    pub(crate) fn new(store: Arc<dyn Store>, from: u64, flush_events: usize) -> SearchIndex {
        SearchIndex {
            store,
            tail: RwLock::new(Tail {
                from,
                to: from,
                ..Tail::default()
            }),
            writing: Mutex::new(()),
            flush_events: flush_events.max(1),
            wake: Mutex::new(None),
            building: AtomicBool::new(false),
            building_target: AtomicU64::new(from),
            blocks: Mutex::new(BlockCache::new(BLOCK_CACHE_BYTES, answer_cost)),
        }
    }

    /// Marks the index as building up to a tree of `target` leaves: the
    /// write path's appends are dropped until [`SearchIndex::built`].
    pub(crate) fn start_building(&self, target: u64) {
        self.building_target.store(target, Ordering::Relaxed);
        self.building.store(true, Ordering::Release);
    }

    /// The index holds every committed leaf: the write path appends again.
    /// Called under the vault's key lock, so no batch commits meanwhile.
    pub(crate) fn built(&self) {
        self.building.store(false, Ordering::Release);
    }

    /// Where building has got, while it builds.
    pub(crate) fn building(&self) -> Result<Option<BuildProgress>, StoreError> {
        if !self.building.load(Ordering::Acquire) {
            return Ok(None);
        }
        Ok(Some(BuildProgress {
            indexed: self.indexed_to()?,
            target: self.building_target.load(Ordering::Relaxed),
        }))
    }

    /// The first leaf the index holds nothing of, nor will: every leaf
    /// below it is in the blocks or the tail.
    pub(crate) fn indexed_to(&self) -> Result<u64, StoreError> {
        Ok(self.tail.read().map_err(|_| poisoned())?.to)
    }

    /// Starts the background flusher. It holds the index weakly and stops
    /// once the index is dropped.
    pub(crate) fn start_flusher(self: &Arc<Self>) -> Result<(), StoreError> {
        let (tx, rx) = sync_channel::<()>(1);
        let index = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let Some(index) = index.upgrade() else { break };
                    if let Err(e) = index.flush() {
                        tracing::error!(error = %e, "writing the search index failed; it is retried at the next flush and rebuilt from the events on restart");
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("couldn't start the index flusher: {e}")))?;
        *self.wake.lock().map_err(|_| poisoned())? = Some(tx);
        Ok(())
    }

    /// Starts the background job that keeps the store's blocks tidy
    /// ([`Store::tidy_index`]: an older log's blocks into segment files,
    /// removals folded into the segments they change), a step at a time
    /// under the `writing` lock, so no flush or removal runs meanwhile,
    /// paced as every background job is. Searches go on throughout. When
    /// a step finds no work it looks again after a pause; it ends with the
    /// index.
    pub(crate) fn start_tidying(
        self: &Arc<Self>,
        pace: Pace,
        writers: background::Writers,
    ) -> Result<(), StoreError> {
        let (mut steps, mut running) = (0u64, 0u64);
        background::spawn(
            "search-index-tidy",
            Arc::downgrade(self),
            pace,
            writers,
            move |index: &SearchIndex, _| {
                let worked = {
                    let _writing = index.writing.lock().map_err(|_| poisoned())?;
                    index.store.tidy_index()?
                };
                if !worked {
                    if running > 0 {
                        tracing::info!(steps = running, "the search index's blocks are tidy");
                        running = 0;
                    }
                    return Ok(Step::Idle);
                }
                if running == 0 {
                    tracing::info!(
                        "tidying the search index's blocks (older ones into segment files, removals into their segments), a flush's at a time"
                    );
                }
                running += 1;
                steps += 1;
                metrics::gauge!("veritrail_search_index_tidied_flushes").set(steps as f64);
                Ok(Step::Worked)
            },
        )
    }

    /// The first leaf not held in the store's blocks.
    pub(crate) fn watermark(&self) -> Result<u64, StoreError> {
        Ok(self.tail.read().map_err(|_| poisoned())?.from)
    }

    /// Events in the tail.
    #[cfg(test)]
    pub(crate) fn tail_events(&self) -> Result<usize, StoreError> {
        Ok(self.tail.read().map_err(|_| poisoned())?.events)
    }

    /// Adds the postings of `events` committed events, which end the log at
    /// leaf `to`. Called by the write path once the events are durable;
    /// dropped while the index is building (the builder reads them).
    pub(crate) fn append(
        &self,
        to: u64,
        events: usize,
        postings: Vec<(Term, u64)>,
    ) -> Result<(), StoreError> {
        if self.building.load(Ordering::Acquire) {
            return Ok(());
        }
        self.append_indexed(to, events, postings)
    }

    /// Adds the postings of `events` events that end at leaf `to`: the
    /// write path's, or a building step's. Starts a flush when the tail is
    /// full, and flushes on the calling thread when the flusher fell far
    /// behind, so the tail's memory is bounded.
    pub(crate) fn append_indexed(
        &self,
        to: u64,
        events: usize,
        postings: Vec<(Term, u64)>,
    ) -> Result<(), StoreError> {
        let held = {
            let mut tail = self.tail.write().map_err(|_| poisoned())?;
            for (term, index) in postings {
                let leaves = tail.postings.entry(term).or_default();
                if leaves.last().is_none_or(|last| *last < index) {
                    leaves.push(index);
                }
            }
            tail.to = tail.to.max(to);
            tail.events += events;
            tail.events
        };
        if held >= self.flush_events * BACKLOG_FLUSHES {
            return self.flush();
        }
        if held >= self.flush_events {
            let wake = self.wake.lock().map_err(|_| poisoned())?;
            match wake.as_ref().map(|tx| tx.try_send(())) {
                // No flusher (a check, or a rebuild before it starts).
                None | Some(Err(TrySendError::Disconnected(_))) => {
                    drop(wake);
                    return self.flush();
                }
                // Sent, or a wake-up is already pending.
                Some(Ok(())) | Some(Err(TrySendError::Full(_))) => {}
            }
        }
        Ok(())
    }

    /// Writes the tail out as blocks and moves the watermark past it.
    /// Appends and searches go on meanwhile: the postings being written
    /// move aside (still searchable), and new ones start afresh.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().map_err(|_| poisoned())?;
        let (from, to, events, postings) = {
            let mut tail = self.tail.write().map_err(|_| poisoned())?;
            if tail.to == tail.from {
                return Ok(());
            }
            let postings = Arc::new(std::mem::take(&mut tail.postings));
            let events = std::mem::take(&mut tail.events);
            tail.flushing = Some(postings.clone());
            (tail.from, tail.to, events, postings)
        };
        let written = self.write_blocks(from, to, &postings);
        let mut tail = self.tail.write().map_err(|_| poisoned())?;
        tail.flushing = None;
        if let Err(e) = written {
            // Back under the newer postings, for the next flush.
            let newer = std::mem::take(&mut tail.postings);
            tail.postings = Arc::unwrap_or_clone(postings);
            for (term, leaves) in newer {
                tail.postings.entry(term).or_default().extend(leaves);
            }
            tail.events += events;
            return Err(e);
        }
        tail.from = to;
        Ok(())
    }

    /// One block per bucket of `postings` at `from`, and the watermark `to`,
    /// in one atomic write.
    fn write_blocks(&self, from: u64, to: u64, postings: &Postings) -> Result<(), StoreError> {
        let mut sorted: Vec<(&Term, &Vec<u64>)> = postings.iter().collect();
        sorted.sort_unstable_by_key(|(term, _)| **term);
        let mut blocks = Vec::new();
        let mut groups = Groups::new();
        for (term, leaves) in sorted {
            if groups
                .first_key_value()
                .is_some_and(|(t, _)| bucket(t) != bucket(term))
            {
                blocks.push(std::mem::take(&mut groups));
            }
            groups.insert(*term, leaves.clone());
        }
        blocks.push(groups);
        let blocks = blocks
            .into_iter()
            .filter_map(|groups| {
                let (first, _) = groups.first_key_value()?;
                Some(IndexBlock {
                    bucket: bucket(first).to_vec(),
                    at: from,
                    value: Some(encode_block(&groups)),
                })
            })
            .collect();
        self.store.commit_records(&RecordBatch {
            index_blocks: blocks,
            index_flush: true,
            index_watermark: Some(to),
            ..RecordBatch::default()
        })
    }

    /// The leaves under `term` below `below`, newest first, at most `limit`.
    pub(crate) fn scan(
        &self,
        term: &Term,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let (mut out, from) = {
            let tail = self.tail.read().map_err(|_| poisoned())?;
            let mut newest = Vec::new();
            let flushing = tail.flushing.as_deref();
            for postings in std::iter::once(&tail.postings).chain(flushing) {
                if let Some(leaves) = postings.get(term) {
                    let end = leaves.partition_point(|i| *i < below);
                    let room = limit.saturating_sub(newest.len());
                    newest.extend(leaves[..end].iter().rev().take(room));
                }
            }
            (newest, tail.from)
        };
        // Blocks written after the tail was read start at or above `from`
        // and are left out: their postings were in the tail.
        let mut below = below.min(from);
        // One block first (a block may be large, and often one is enough),
        // then more per read.
        let mut per_read = 1;
        while out.len() < limit && below > 0 {
            let blocks = self.blocks_below(term, below, per_read)?;
            per_read = (per_read * 2).min(BLOCKS_PER_READ);
            if blocks.is_empty() {
                break;
            }
            for (at, leaves) in blocks {
                for i in leaves.iter().rev().filter(|i| **i < below) {
                    out.push(*i);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                below = at;
            }
        }
        Ok(out)
    }

    /// Plans taking `postings` out of the index: the rewritten blocks,
    /// to commit with the caller's change, and the tail postings, which
    /// [`Removal::apply`] drops after the commit. No flush runs until the
    /// removal is applied or dropped.
    pub(crate) fn plan_removal(
        &self,
        postings: &[(Term, u64)],
    ) -> Result<(Removal<'_>, Vec<IndexBlock>), StoreError> {
        let writing = self.writing.lock().map_err(|_| poisoned())?;
        let from = self.watermark()?;
        let mut tail = Vec::new();
        let mut changed: BTreeMap<([u8; 3], u64), Groups> = BTreeMap::new();
        for (term, index) in postings {
            if *index >= from {
                tail.push((*term, *index));
                continue;
            }
            let b = bucket(term);
            let Some((at, value)) = self.store.index_blocks(&b, index + 1, 1)?.pop() else {
                continue;
            };
            let groups = match changed.entry((b, at)) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(decode_block(&value)?),
            };
            if let Some(leaves) = groups.get_mut(term) {
                leaves.retain(|i| i != index);
                if leaves.is_empty() {
                    groups.remove(term);
                }
            }
        }
        let blocks = changed
            .into_iter()
            .map(|((b, at), groups)| IndexBlock {
                bucket: b.to_vec(),
                at,
                value: (!groups.is_empty()).then(|| encode_block(&groups)),
            })
            .collect();
        Ok((
            Removal {
                _writing: writing,
                tail,
                terms: postings.iter().map(|(t, _)| *t).collect(),
            },
            blocks,
        ))
    }
}

/// A term's leaves in one block, ascending.
pub(crate) type Leaves = Arc<[u64]>;

/// The answers of [`SearchIndex::blocks_below`]: for `(term, below)`, the
/// largest `at < below` of a block of the term's bucket and the term's
/// leaves in it (often none), or `None` when no block is below. First in,
/// first out, within [`BLOCK_CACHE_BYTES`]; a removal drops its terms'
/// answers.
type BlockCache = FifoCache<(Term, u64), Option<(u64, Leaves)>>;

/// What an answer costs the block cache: its key, its slot and its leaves.
fn answer_cost(answer: &Option<(u64, Leaves)>) -> usize {
    96 + answer.as_ref().map_or(0, |(_, l)| 8 * l.len())
}

impl SearchIndex {
    /// The stored blocks of `term`'s bucket with `at` below `below` (at
    /// most the watermark), largest `at` first, at most `n` of them, each
    /// with the term's leaves in it, ascending; fewer when no more are
    /// below. From the cache as far as cursors asked the same before; the
    /// rest in one read of the store.
    pub(crate) fn blocks_below(
        &self,
        term: &Term,
        mut below: u64,
        n: usize,
    ) -> Result<Vec<(u64, Leaves)>, StoreError> {
        let mut out = Vec::new();
        let generation = {
            let cache = self.blocks.lock().map_err(|_| poisoned())?;
            while out.len() < n {
                match cache.get(&(*term, below)) {
                    None => break,
                    Some(None) => return Ok(out),
                    Some(Some((at, leaves))) => {
                        out.push((*at, leaves.clone()));
                        below = *at;
                    }
                }
            }
            cache.generation()
        };
        if out.len() == n || below == 0 {
            return Ok(out);
        }
        let want = n - out.len();
        let read = self.store.index_blocks(&bucket(term), below, want)?;
        let mut answers = Vec::with_capacity(read.len() + 1);
        for (at, value) in &read {
            let leaves = Leaves::from(leaves_in_block(value, term)?);
            answers.push(((*term, below), Some((*at, leaves))));
            below = *at;
        }
        if read.len() < want {
            answers.push(((*term, below), None));
        }
        let mut cache = self.blocks.lock().map_err(|_| poisoned())?;
        for (key, answer) in answers {
            if let Some((at, leaves)) = &answer {
                out.push((*at, leaves.clone()));
            }
            cache.insert_if(generation, key, answer);
        }
        Ok(out)
    }

    /// [`SearchIndex::blocks_below`] of one block: `None` when there is
    /// none below.
    pub(crate) fn block_below(
        &self,
        term: &Term,
        below: u64,
    ) -> Result<Option<(u64, Leaves)>, StoreError> {
        Ok(self.blocks_below(term, below, 1)?.pop())
    }
}

/// Postings taken from a scan at a time, in the part of the index that
/// is in memory.
const SCAN_CHUNK: usize = 256;

/// A block's postings beyond each multiple of this many count as one more
/// index read (see [`PostingCursor::reads`]), so that a page's and a
/// count's bounds on work also bound the time spent reading the large
/// blocks of common terms (an outcome, a month most events fall in).
const LEAVES_PER_READ: u64 = 1024;

/// A term's postings, read newest first with skips: the largest posting
/// at or below a leaf ([`PostingCursor::seek`]), for intersecting several
/// terms without reading what lies between the matches. It keeps the
/// block it read last, so seeks that stay within a flush's leaves cost a
/// binary search.
pub(crate) struct PostingCursor {
    term: Term,
    /// The index's watermark when the cursor was made: the stored blocks
    /// hold every posting below it, for good (a flush only raises it).
    from: u64,
    /// The last scan's answer, descending: every posting in
    /// `[chunk.last(), chunk_top]`, and every posting below
    /// `chunk_top` when `chunk_complete`.
    chunk: Vec<u64>,
    chunk_top: u64,
    chunk_complete: bool,
    /// The last block read, `(at, leaves ascending)`: every posting in
    /// `[at, x]` for the seek that read it.
    block: Option<(u64, Leaves)>,
    done: bool,
    /// Index reads made (scans and block reads, a large block counting
    /// as several: [`LEAVES_PER_READ`]).
    pub(crate) reads: u64,
}

impl PostingCursor {
    /// A cursor over the postings of `term` in `vault`'s index.
    pub(crate) fn new(vault: &Vault, term: Term) -> Result<PostingCursor, StoreError> {
        Ok(PostingCursor {
            term,
            from: vault.index_watermark()?,
            chunk: Vec::new(),
            chunk_top: 0,
            chunk_complete: false,
            block: None,
            done: false,
            reads: 0,
        })
    }

    /// Whether no posting is left below the last seek.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The largest posting at or below `x`. Successive calls must not
    /// raise `x`.
    pub(crate) fn seek(&mut self, vault: &Vault, mut x: u64) -> Result<Option<u64>, StoreError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if !self.chunk.is_empty() && x <= self.chunk_top {
                let i = self.chunk.partition_point(|p| *p > x);
                if let Some(p) = self.chunk.get(i) {
                    return Ok(Some(*p));
                }
                if self.chunk_complete {
                    self.done = true;
                    return Ok(None);
                }
            }
            if let Some((at, leaves)) = &self.block
                && x >= *at
            {
                let i = leaves.partition_point(|l| *l <= x);
                if i > 0 {
                    return Ok(Some(leaves[i - 1]));
                }
                if *at == 0 {
                    self.done = true;
                    return Ok(None);
                }
                x = at - 1;
                continue;
            }
            self.reads += 1;
            if x >= self.from {
                // The newest leaves: from memory (and blocks below it).
                self.chunk = vault.scan(&self.term, x.saturating_add(1), SCAN_CHUNK)?;
                self.chunk_top = x;
                self.chunk_complete = self.chunk.len() < SCAN_CHUNK;
                if self.chunk.is_empty() {
                    self.done = true;
                }
                continue;
            }
            match vault.block_below(&self.term, x + 1)? {
                Some(block) => {
                    // A block of a term most events carry holds a whole
                    // flush's worth of postings: its read and decoding cost
                    // as much as many small blocks' reads.
                    self.reads += block.1.len() as u64 / LEAVES_PER_READ;
                    self.block = Some(block);
                }
                None => self.done = true,
            }
        }
    }
}

impl Removal<'_> {
    /// Drops the removed postings from the tail of `index`, once the
    /// rewritten blocks are committed, and the removed terms' answers from
    /// its block cache (a rewritten block holds the other terms' postings
    /// as they were; a cursor reading one of them meanwhile does not keep
    /// its answer, see [`FifoCache`]).
    pub(crate) fn apply(self, index: &SearchIndex) -> Result<(), StoreError> {
        index
            .blocks
            .lock()
            .map_err(|_| poisoned())?
            .retain(|(term, _)| !self.terms.contains(term));
        let mut tail = index.tail.write().map_err(|_| poisoned())?;
        for (term, i) in &self.tail {
            if let Some(leaves) = tail.postings.get_mut(term) {
                leaves.retain(|l| l != i);
                if leaves.is_empty() {
                    tail.postings.remove(term);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn term(tag: u8, n: u8) -> Term {
        let mut t = [n; TERM_LEN];
        t[0] = tag;
        Term(t)
    }

    #[test]
    fn a_block_round_trips_and_a_damaged_one_is_refused() {
        let mut groups = Groups::new();
        groups.insert(term(b's', 1), vec![3, 9, 200]);
        groups.insert(term(b's', 2), vec![4]);
        let bytes = encode_block(&groups);
        assert_eq!(decode_block(&bytes).unwrap(), groups);
        assert!(decode_block(&bytes[..bytes.len() - 1]).is_err());
        let mut unordered = bytes.clone();
        // The second leaf of the first term (9) becomes 2, below 3.
        unordered[TERM_LEN + 4 + 15] = 2;
        assert!(decode_block(&unordered).is_err());
    }

    #[test]
    fn scans_merge_the_tail_with_the_blocks_newest_first() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let index = SearchIndex::new(store.clone(), 0, 4);
        let (a, b) = (term(b's', 1), term(b's', 2));
        // Three flushes' worth and a tail: a on even leaves, b on odd ones.
        for i in 0..14u64 {
            let t = if i % 2 == 0 { a } else { b };
            index.append(i + 1, 1, vec![(t, i)]).unwrap();
        }
        assert_eq!(index.watermark().unwrap(), 12);
        assert_eq!(store.index_watermark().unwrap(), Some(12));
        assert_eq!(index.tail_events().unwrap(), 2);
        assert_eq!(
            index.scan(&a, u64::MAX, 100).unwrap(),
            vec![12, 10, 8, 6, 4, 2, 0]
        );
        assert_eq!(index.scan(&b, 12, 100).unwrap(), vec![11, 9, 7, 5, 3, 1]);
        assert_eq!(index.scan(&a, 9, 2).unwrap(), vec![8, 6]);
        assert_eq!(index.scan(&a, 1, 100).unwrap(), vec![0]);
        assert!(
            index
                .scan(&term(b's', 3), u64::MAX, 100)
                .unwrap()
                .is_empty()
        );
        // Reopened from the store alone, the blocks still answer below
        // the watermark.
        let reopened = SearchIndex::new(store, 12, 4);
        assert_eq!(
            reopened.scan(&a, u64::MAX, 100).unwrap(),
            vec![10, 8, 6, 4, 2, 0]
        );
    }

    #[test]
    fn removal_rewrites_blocks_and_the_tail_and_deletes_empty_blocks() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let index = SearchIndex::new(store.clone(), 0, 3);
        let (a, b) = (term(b'a', 1), term(b'a', 7));
        for i in 0..5u64 {
            let postings = if i < 3 {
                vec![(a, i), (b, i)]
            } else {
                vec![(a, i)]
            };
            index.append(i + 1, 1, postings).unwrap();
        }
        assert_eq!(index.watermark().unwrap(), 3);
        // b lives only in the first block; remove all of it, one of a's
        // block postings and one of a's tail postings.
        let (removal, blocks) = index
            .plan_removal(&[(b, 0), (b, 1), (b, 2), (a, 1), (a, 4)])
            .unwrap();
        store
            .commit_records(&RecordBatch {
                index_blocks: blocks,
                ..RecordBatch::default()
            })
            .unwrap();
        removal.apply(&index).unwrap();
        assert!(index.scan(&b, u64::MAX, 10).unwrap().is_empty());
        assert_eq!(index.scan(&a, u64::MAX, 10).unwrap(), vec![3, 2, 0]);
        // b's bucket differs from a's: its block is gone.
        assert_ne!(bucket(&a), bucket(&b));
        assert!(
            store
                .index_blocks(&bucket(&b), u64::MAX, 10)
                .unwrap()
                .is_empty()
        );
        index.flush().unwrap();
        assert_eq!(index.scan(&a, u64::MAX, 10).unwrap(), vec![3, 2, 0]);
    }

    /// The leaves of `term` in the block below `below`, as a cursor sees it.
    fn block(index: &SearchIndex, term: &Term, below: u64) -> Option<(u64, Vec<u64>)> {
        index
            .block_below(term, below)
            .unwrap()
            .map(|(at, leaves)| (at, leaves.to_vec()))
    }

    #[test]
    fn cached_block_reads_answer_as_the_store_and_a_removal_drops_its_terms_only() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let index = SearchIndex::new(store.clone(), 0, 2);
        // Three terms of one bucket.
        let a = term(b'a', 1);
        let (mut b, mut c) = (a, a);
        b.0[TERM_LEN - 1] = 2;
        c.0[TERM_LEN - 1] = 3;
        assert_eq!(bucket(&a), bucket(&b));
        assert_eq!(bucket(&a), bucket(&c));
        // Blocks at 0, 2 and 4; b only in the first one, c in the others.
        for i in 0..6u64 {
            let postings = match i {
                1 => vec![(a, i), (b, i)],
                3 | 5 => vec![(a, i), (c, i)],
                _ => vec![(a, i)],
            };
            index.append(i + 1, 1, postings).unwrap();
        }
        assert_eq!(index.watermark().unwrap(), 6);
        for _ in 0..2 {
            // Read from the store, then from the cache: the same answers.
            assert_eq!(block(&index, &a, 6), Some((4, vec![4, 5])));
            assert_eq!(block(&index, &b, 6), Some((4, vec![])));
            assert_eq!(block(&index, &b, 2), Some((0, vec![1])));
            assert_eq!(block(&index, &b, 0), None);
            assert_eq!(block(&index, &c, 6), Some((4, vec![5])));
            assert_eq!(block(&index, &c, 4), Some((2, vec![3])));
        }
        // Nothing is below 0: that one needs no read and is not kept.
        assert_eq!(index.blocks.lock().unwrap().len(), 5);
        let (removal, blocks) = index.plan_removal(&[(b, 1), (a, 5)]).unwrap();
        store
            .commit_records(&RecordBatch {
                index_blocks: blocks,
                ..RecordBatch::default()
            })
            .unwrap();
        // Until the removal is applied, the cache answers as before the
        // commit; after, as the store does now.
        assert_eq!(block(&index, &b, 2), Some((0, vec![1])));
        removal.apply(&index).unwrap();
        // c's answers stay cached: the rewritten block at 4 holds its
        // postings as they were.
        assert_eq!(index.blocks.lock().unwrap().len(), 2);
        assert_eq!(block(&index, &c, 6), Some((4, vec![5])));
        assert_eq!(block(&index, &c, 4), Some((2, vec![3])));
        assert_eq!(index.blocks.lock().unwrap().len(), 2, "from the cache");
        let (at, stored) = store
            .index_blocks(&bucket(&c), 6, 1)
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!((at, leaves_in_block(&stored, &c).unwrap()), (4, vec![5]));
        assert_eq!(block(&index, &b, 2), Some((0, vec![])));
        assert_eq!(block(&index, &a, 6), Some((4, vec![4])));
        assert_eq!(index.scan(&b, u64::MAX, 10).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn the_block_cache_stays_within_its_budget() {
        let mut cache = BlockCache::new(BLOCK_CACHE_BYTES, answer_cost);
        let answer = Some((0, Leaves::from(vec![1u64; 1000])));
        let per = answer_cost(&answer);
        let fits = BLOCK_CACHE_BYTES / per;
        for n in 0..(fits as u64 + 10) {
            cache.insert_if(cache.generation(), (term(b'a', 1), n), answer.clone());
            assert!(cache.bytes() <= BLOCK_CACHE_BYTES);
        }
        assert_eq!(cache.len(), fits);
        // The oldest went first.
        assert!(cache.get(&(term(b'a', 1), 0)).is_none());
        assert!(cache.get(&(term(b'a', 1), fits as u64 + 9)).is_some());
        assert_eq!(cache.order_len(), cache.len());
    }

    #[test]
    fn a_flush_whose_segment_file_fails_keeps_every_posting_and_is_retried() {
        for fault in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let sled = Arc::new(crate::store::sled::SledStore::open(dir.path()).unwrap());
            let store: Arc<dyn Store> = sled.clone();
            let index = SearchIndex::new(store.clone(), 0, 4);
            let a = term(b's', 1);
            for i in 0..4u64 {
                index.append(i + 1, 1, vec![(a, i)]).unwrap();
            }
            sled.fail_next_index_segment(fault);
            for i in 4..8u64 {
                // The flush at the fourth event fails; the append reports
                // nothing, as the flusher would log it.
                let _ = index.append(i + 1, 1, vec![(a, i)]);
            }
            assert_eq!(index.watermark().unwrap(), 4, "fault {fault}");
            assert_eq!(store.index_watermark().unwrap(), Some(4));
            assert_eq!(
                index.scan(&a, u64::MAX, 100).unwrap(),
                vec![7, 6, 5, 4, 3, 2, 1, 0],
                "fault {fault}: the tail keeps what the flush could not write"
            );
            index.flush().unwrap();
            assert_eq!(store.index_watermark().unwrap(), Some(8));
            let reopened = SearchIndex::new(store, 8, 4);
            assert_eq!(
                reopened.scan(&a, u64::MAX, 100).unwrap(),
                vec![7, 6, 5, 4, 3, 2, 1, 0]
            );
        }
    }

    #[test]
    fn the_tidying_job_moves_blocks_written_before_segments_and_scans_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sled::SledStore::open(dir.path()).unwrap());
        let a = term(b's', 1);
        // Three flushes as the index wrote them before segments: sled keys.
        for (at, to) in [(0, 4), (4, 8), (8, 12)] {
            let groups = Groups::from([(a, (at..to).collect())]);
            store
                .commit_records(&RecordBatch {
                    index_blocks: vec![IndexBlock {
                        bucket: bucket(&a).to_vec(),
                        at,
                        value: Some(encode_block(&groups)),
                    }],
                    index_watermark: Some(to),
                    ..RecordBatch::default()
                })
                .unwrap();
        }
        // A new index per scan: its cache would hide the store's answers.
        let scan = || SearchIndex::new(store.clone(), 12, 4).scan(&a, u64::MAX, 100);
        let expected: Vec<u64> = (0..12).rev().collect();
        assert_eq!(scan().unwrap(), expected);
        let index = Arc::new(SearchIndex::new(store.clone(), 12, 4));
        let pace = Pace {
            between_steps: std::time::Duration::ZERO,
        };
        index
            .start_tidying(pace, background::Writers::default())
            .unwrap();
        let segments = || std::fs::read_dir(dir.path().join("index")).map_or(0, |d| d.count());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while segments() < 3 {
            assert_eq!(scan().unwrap(), expected, "while tidying");
            assert!(std::time::Instant::now() < deadline, "tidying never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Once the job lets go of the lock, nothing is left to move.
        let _writing = index.writing.lock().unwrap();
        assert!(!store.tidy_index().unwrap());
        assert_eq!(scan().unwrap(), expected);
    }
}
