//! The sequencer: the one thread that owns the tree's right edge and is the
//! only writer of the log.
//!
//! Life cycle, top to bottom: submissions are *accepted* into a bounded
//! queue (a full queue is pushback, never unbounded memory); the sequencer
//! *sequences* a batch of them (assigns indices, builds leaf records,
//! appends them to the right edge), *commits* the batch to the store in one
//! atomic, durable write, and only then *publishes*: answers every submitter
//! and, when due, makes the checkpoint signed for the batch visible.
//!
//! Invariants:
//! - nothing is acknowledged or published before the store said it is durable;
//! - a checkpoint is only ever signed for a root computed from the right edge
//!   that was just committed, so no two checkpoints can be inconsistent;
//! - the `received` time of leaves never goes backwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::event::LeafRecord;
use crate::merkle::{self, Hash, NodeId, SubtreeSource};
use crate::note::{Checkpoint, Note, NoteSigner};
use crate::store::{BatchWrite, Store, StoreError, StoredCheckpoint, StoredEvent};
use crate::tiles::{self, TILE_WIDTH, TileBuilder};

/// Tunables of the sequencer. Every default is chosen for the targets in
/// the README (tens of thousands of events/s, receipts in milliseconds).
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// A batch is closed at this many entries. 4,096 leaves ≈ 700 KiB of
    /// leaf records and bodies: one flush of that costs about a millisecond.
    pub max_batch_entries: usize,
    /// After the first submission of a batch arrives, wait at most this long
    /// for more before sequencing. Zero means "take what is queued": while
    /// one batch is being flushed the next one fills up by itself.
    pub max_batch_delay: Duration,
    /// A checkpoint is signed at least this often while the tree grows.
    pub checkpoint_interval: Duration,
    /// Submissions (requests, not events) that may wait in the queue; beyond
    /// this, submitters get pushback (HTTP 503 with Retry-After).
    pub queue_capacity: usize,
    /// Events, and bytes of events, that may be queued or in the batch being
    /// committed; beyond either, pushback as above. Memory held by accepted
    /// but not yet answered submissions is bounded by these, whatever the
    /// request sizes.
    pub queue_budget: QueueLimits,
}

/// How much submitted work may wait for the sequencer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events at most.
    pub max_events: usize,
    /// Bytes at most, counted as [`PreparedEvent::queued_bytes`].
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_events: 262_144,
            max_bytes: 256 << 20,
        }
    }
}

/// The events and bytes currently admitted, shared by every handle.
#[derive(Debug)]
struct QueueBudget {
    limits: QueueLimits,
    events: AtomicUsize,
    bytes: AtomicUsize,
}

/// Work admitted into the queue; given back when dropped (the submission
/// was answered, or never queued).
#[derive(Debug)]
struct Reservation {
    budget: Arc<QueueBudget>,
    events: usize,
    bytes: usize,
}

impl QueueBudget {
    /// Admits `events` and `bytes` if both stay within the limits, or if
    /// nothing else is admitted (so that one submission larger than the
    /// budget cannot wait forever).
    fn try_reserve(self: &Arc<Self>, events: usize, bytes: usize) -> Option<Reservation> {
        let admit = |counter: &AtomicUsize, add: usize, max: usize| {
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    let next = cur.checked_add(add)?;
                    (cur == 0 || next <= max).then_some(next)
                })
                .is_ok()
        };
        if !admit(&self.events, events, self.limits.max_events) {
            return None;
        }
        if !admit(&self.bytes, bytes, self.limits.max_bytes) {
            self.events.fetch_sub(events, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!("veritrail_queue_events").increment(events as f64);
        metrics::gauge!("veritrail_queue_bytes").increment(bytes as f64);
        Some(Reservation {
            budget: self.clone(),
            events,
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.events.fetch_sub(self.events, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        metrics::gauge!("veritrail_queue_events").decrement(self.events as f64);
        metrics::gauge!("veritrail_queue_bytes").decrement(self.bytes as f64);
    }
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            max_batch_entries: 4096,
            max_batch_delay: Duration::from_millis(0),
            checkpoint_interval: Duration::from_secs(1),
            queue_capacity: 8192,
            queue_budget: QueueLimits::default(),
        }
    }
}

/// A validated event, ready to be appended.
#[derive(Clone, Debug)]
pub struct PreparedEvent {
    /// The writer's idempotency key, if any.
    pub id: Option<String>,
    /// Canonical event bytes.
    pub canonical: Vec<u8>,
    /// Salt of the commitment.
    pub salt: [u8; 32],
    /// `commitment(salt, canonical)`.
    pub commitment: Hash,
    /// The event's search terms ([`crate::vault::Vault::terms_of`] under the
    /// submitting app), when the submitter computed them: that work then
    /// happens on the request's thread instead of the sequencer's.
    pub terms: Option<Vec<crate::crypto::Term>>,
}

impl PreparedEvent {
    /// What this event counts against the queue's byte budget: its bytes
    /// and a fixed allowance for the structures around them.
    pub fn queued_bytes(&self) -> usize {
        const OVERHEAD: usize = 256;
        self.canonical.len() + self.id.as_ref().map_or(0, String::len) + OVERHEAD
    }
}

/// What one submitter gets back once its events are durable.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// One entry per submitted event, in order.
    pub entries: Vec<EntryReceipt>,
    /// The checkpoint committed with the batch, when the submitter asked for one.
    pub checkpoint: Option<Arc<Published>>,
}

/// The sequencing result of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryReceipt {
    /// Leaf index.
    pub index: u64,
    /// RFC 6962 leaf hash of the leaf record.
    pub leaf_hash: Hash,
    /// The event commitment in the leaf.
    pub commitment: Hash,
    /// True when the event id was seen before: nothing was appended and
    /// `index` is the first occurrence's.
    pub duplicate: bool,
}

/// Why a submission was not sequenced.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: retry after a short while.
    #[error("the log is busy; retry shortly")]
    Busy,
    /// The sequencer stopped (shutdown or a fatal store error).
    #[error("the log is not accepting events: {0}")]
    Unavailable(String),
    /// The store failed to commit the batch; nothing of it was acknowledged.
    #[error("the batch could not be made durable: {0}")]
    Store(#[from] StoreError),
}

/// A signed checkpoint as published.
#[derive(Clone, Debug)]
pub struct Published {
    /// The parsed checkpoint body.
    pub checkpoint: Checkpoint,
    /// The whole signed note.
    pub note: String,
    /// When it was signed (Unix milliseconds).
    pub published_at_ms: i64,
}

impl Published {
    /// Parses a stored checkpoint.
    pub fn from_stored(stored: &StoredCheckpoint) -> Result<Published, String> {
        let note_text = String::from_utf8(stored.note.clone())
            .map_err(|_| "stored checkpoint is not UTF-8".to_string())?;
        let note = Note::parse(note_text.as_bytes())
            .map_err(|e| format!("stored checkpoint is not a signed note: {e}"))?;
        let checkpoint = Checkpoint::parse(note.text())
            .map_err(|e| format!("stored checkpoint body is malformed: {e}"))?;
        Ok(Published {
            checkpoint,
            note: note_text,
            published_at_ms: stored.published_at_ms,
        })
    }
}

/// What readers share with the sequencer: the latest published checkpoint
/// and the durable tree size.
pub struct LogView {
    published: RwLock<Arc<Published>>,
    durable_size: AtomicU64,
    failed: AtomicBool,
    updates: watch::Sender<Arc<Published>>,
}

impl LogView {
    /// A view starting at `published`, with `durable_size` committed entries.
    pub fn new(published: Published, durable_size: u64) -> LogView {
        let published = Arc::new(published);
        let (updates, _) = watch::channel(published.clone());
        LogView {
            published: RwLock::new(published),
            durable_size: AtomicU64::new(durable_size),
            failed: AtomicBool::new(false),
            updates,
        }
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> Arc<Published> {
        match self.published.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The number of entries durably committed (may exceed the checkpoint's size).
    pub fn durable_size(&self) -> u64 {
        self.durable_size.load(Ordering::Acquire)
    }

    /// True once the sequencer stopped after a store failure it could not recover from.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Notified on every new checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.updates.subscribe()
    }

    fn publish(&self, p: Arc<Published>) {
        match self.published.write() {
            Ok(mut g) => *g = p.clone(),
            Err(poisoned) => *poisoned.into_inner() = p.clone(),
        }
        self.updates.send_replace(p);
    }
}

// ---------------------------------------------------------------------------
// The right edge.

/// The open end of the tree: the partial tile of every level and the partial
/// entry bundle. This is all the sequencer holds in memory: at most 255
/// hashes per level and 255 entries.
#[derive(Clone, Debug, Default)]
pub struct RightEdge {
    /// The partial hash tile of every level.
    hashes: TileBuilder,
    /// The partial entry bundle, encoded.
    bundle: Vec<u8>,
}

/// Objects that became full while appending.
#[derive(Default)]
struct Completed {
    tiles: Vec<(u8, u64, Vec<u8>)>,
    bundles: Vec<(u64, Vec<u8>)>,
}

/// Why the stored right edge could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A read failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A tile or bundle the tree size requires is missing or too short.
    #[error("{0}")]
    Missing(String),
}

fn hashes_to_bytes(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * 32);
    for h in hashes {
        out.extend_from_slice(h.as_bytes());
    }
    out
}

fn bytes_to_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect()
}

impl RightEdge {
    /// The right edge of the empty tree.
    pub fn empty() -> RightEdge {
        RightEdge::default()
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.hashes.size
    }

    /// Loads the right edge of a stored tree of `size` entries: one partial
    /// tile per level and the partial bundle. O(log n) reads, no rebuild.
    pub fn load(store: &dyn Store, size: u64) -> Result<RightEdge, EdgeError> {
        let mut levels = Vec::new();
        for level in 0..8u8 {
            let width = usize::from(tiles::partial_width(level, size));
            let shift = 8 * (u32::from(level) + 1);
            if width == 0 {
                levels.push(Vec::new());
                if size.checked_shr(shift).unwrap_or(0) == 0 {
                    break;
                }
                continue;
            }
            let index = size >> shift;
            let tile = store.tile(level, index)?.ok_or_else(|| {
                EdgeError::Missing(format!("hash tile {level}/{index} is missing"))
            })?;
            if tile.len() < width * 32 {
                return Err(EdgeError::Missing(format!(
                    "hash tile {level}/{index} has {} hashes, the tree needs {width}",
                    tile.len() / 32
                )));
            }
            levels.push(bytes_to_hashes(&tile[..width * 32]));
        }
        let mut bundle = Vec::new();
        let width = usize::from(tiles::partial_width(0, size));
        if width > 0 {
            let index = size >> 8;
            let stored = store
                .bundle(index)?
                .ok_or_else(|| EdgeError::Missing(format!("entry bundle {index} is missing")))?;
            let entries = tiles::decode_bundle(&stored).map_err(|e| {
                EdgeError::Missing(format!("entry bundle {index} is malformed: {e}"))
            })?;
            if entries.len() < width {
                return Err(EdgeError::Missing(format!(
                    "entry bundle {index} has {} entries, the tree needs {width}",
                    entries.len()
                )));
            }
            bundle = tiles::encode_bundle(&entries[..width])
                .map_err(|e| EdgeError::Missing(format!("entry bundle {index}: {e}")))?;
        }
        Ok(RightEdge {
            hashes: TileBuilder { size, levels },
            bundle,
        })
    }

    /// Appends one entry whose leaf hash is `leaf`; tiles and bundles that
    /// become full are added to `done`.
    fn append(
        &mut self,
        entry: &[u8],
        leaf: Hash,
        done: &mut Completed,
    ) -> Result<(), tiles::BundleError> {
        let one = tiles::encode_bundle(&[entry])?;
        self.bundle.extend_from_slice(&one);
        let index = self.hashes.size;
        if (index + 1).is_multiple_of(TILE_WIDTH) {
            done.bundles
                .push((index >> 8, std::mem::take(&mut self.bundle)));
        }
        for (tile, full) in self.hashes.append(leaf) {
            done.tiles
                .push((tile.level, tile.index, hashes_to_bytes(&full)));
        }
        Ok(())
    }

    /// The tiles whose partial version changed since the tree had `since`
    /// entries, with their current content.
    fn partial_tiles_since(&self, since: u64) -> Vec<(u8, u64, Vec<u8>)> {
        let size = self.hashes.size;
        self.hashes
            .partials()
            .into_iter()
            .filter(|(tile, _)| {
                let shift = 8 * u32::from(tile.level);
                since.checked_shr(shift) != size.checked_shr(shift)
            })
            .map(|(tile, hashes)| (tile.level, tile.index, hashes_to_bytes(hashes)))
            .collect()
    }

    /// The root hash of the tree.
    pub fn root(&self) -> Hash {
        // The perfect subtrees of the size's decomposition all lie in the
        // partial tiles, so this never reads the store.
        match merkle::tree_root(self.hashes.size, &self.hashes) {
            Ok(h) => h,
            Err(e) => panic!("internal error: right edge cannot produce its own root: {e}"),
        }
    }

    /// The last entry, if any entry is in the partial bundle.
    fn last_partial_entry(&self) -> Option<Vec<u8>> {
        tiles::decode_bundle(&self.bundle)
            .ok()
            .and_then(|mut v| v.pop())
    }
}

/// Reads subtree hashes from the stored tiles, for proofs at any tree size
/// up to the committed one.
pub struct TileSource<'a> {
    store: &'a dyn Store,
}

impl<'a> TileSource<'a> {
    /// A source over `store`'s tiles.
    pub fn new(store: &'a dyn Store) -> TileSource<'a> {
        TileSource { store }
    }
}

impl SubtreeSource for TileSource<'_> {
    type Error = StoreError;

    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        let mut cache: HashMap<(u8, u64), Vec<u8>> = HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (level, index, offset, count) = tiles::node_location(*node);
            if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry((level, index)) {
                let tile = self.store.tile(level, index)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("hash tile {level}/{index} is missing"))
                })?;
                slot.insert(tile);
            }
            let tile = &cache[&(level, index)];
            let bytes = tile
                .get(offset * 32..(offset + count) * 32)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "hash tile {level}/{index} is too short for node {node:?}"
                    ))
                })?;
            out.push(merkle::root_from_leaf_hashes(&bytes_to_hashes(bytes)));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// The sequencer thread.

struct Submission {
    app: String,
    events: Vec<PreparedEvent>,
    wants_checkpoint: bool,
    reply: oneshot::Sender<Result<Receipt, SubmitError>>,
    /// Its share of the queue budget, given back just before the answer.
    reserved: Reservation,
}

impl Submission {
    /// Gives the budget back, then answers: a submitter that sends again as
    /// soon as it has its answer finds the budget free.
    fn answer(self, result: Result<Receipt, SubmitError>) {
        let Submission {
            reply, reserved, ..
        } = self;
        drop(reserved);
        let _ = reply.send(result);
    }
}

enum Msg {
    Submit(Submission),
    Shutdown,
}

/// Signs checkpoints with the log's keys.
pub struct CheckpointSigner {
    /// The log's origin (and key name).
    pub origin: String,
    /// Log keys, in the order their signatures appear.
    pub signers: Vec<Box<dyn NoteSigner>>,
}

impl CheckpointSigner {
    /// Signs a checkpoint for `size` and `root`.
    pub fn sign(&self, size: u64, root: Hash, now_ms: i64) -> Result<Published, String> {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        let mut note = Note::new(&checkpoint.to_text())
            .map_err(|e| format!("checkpoint text rejected: {e}"))?;
        for signer in &self.signers {
            note.sign(signer.as_ref())
                .map_err(|e| format!("signing the checkpoint failed: {e}"))?;
        }
        let note = String::from_utf8(note.to_bytes())
            .map_err(|_| "signed note is not UTF-8".to_string())?;
        Ok(Published {
            checkpoint,
            note,
            published_at_ms: now_ms,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// The handle submitters use; cheap to clone.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: SyncSender<Msg>,
    view: Arc<LogView>,
    budget: Arc<QueueBudget>,
}

impl SequencerHandle {
    /// Queues `events` of `app` and waits until they are durable (and, with
    /// `wants_checkpoint`, covered by a signed checkpoint).
    pub async fn submit(
        &self,
        app: String,
        events: Vec<PreparedEvent>,
        wants_checkpoint: bool,
    ) -> Result<Receipt, SubmitError> {
        if self.view.failed() {
            return Err(SubmitError::Unavailable(
                "the store failed; the operator must restart the log".into(),
            ));
        }
        let bytes = events.iter().map(PreparedEvent::queued_bytes).sum();
        let reserved = self
            .budget
            .try_reserve(events.len(), bytes)
            .ok_or(SubmitError::Busy)?;
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Submit(Submission {
            app,
            events,
            wants_checkpoint,
            reply,
            reserved,
        });
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(SubmitError::Unavailable("the log is shutting down".into()));
            }
        }
        rx.await
            .map_err(|_| SubmitError::Unavailable("the sequencer stopped".into()))?
    }

    /// The shared view of the log.
    pub fn view(&self) -> &Arc<LogView> {
        &self.view
    }
}

/// The running sequencer thread.
pub struct Sequencer {
    handle: SequencerHandle,
    thread: Option<JoinHandle<()>>,
}

struct State {
    store: Arc<dyn Store>,
    signer: Arc<CheckpointSigner>,
    config: SequencerConfig,
    view: Arc<LogView>,
    edge: RightEdge,
    last_received_ms: i64,
    last_checkpoint_size: u64,
    last_checkpoint_at: Instant,
    /// The checkpoint signed for the batch being committed, published once
    /// the commit returned.
    pending_publish: Option<Published>,
}

impl Sequencer {
    /// Starts the sequencer over a loaded log whose right edge is `edge`.
    pub fn start(
        store: Arc<dyn Store>,
        signer: Arc<CheckpointSigner>,
        config: SequencerConfig,
        view: Arc<LogView>,
        edge: RightEdge,
    ) -> Result<Sequencer, String> {
        let last_received_ms = last_received_ms(store.as_ref(), &edge)?;
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let budget = Arc::new(QueueBudget {
            limits: config.queue_budget,
            events: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        });
        let last_checkpoint_size = view.checkpoint().checkpoint.size;
        let state = State {
            store,
            signer,
            config,
            view: view.clone(),
            edge,
            last_received_ms,
            last_checkpoint_size,
            last_checkpoint_at: Instant::now(),
            pending_publish: None,
        };
        let thread = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || run(state, rx))
            .map_err(|e| format!("couldn't start the sequencer thread: {e}"))?;
        Ok(Sequencer {
            handle: SequencerHandle { tx, view, budget },
            thread: Some(thread),
        })
    }

    /// A handle for submitters.
    pub fn handle(&self) -> SequencerHandle {
        self.handle.clone()
    }

    /// Sequences everything still queued, publishes a final checkpoint if
    /// the tree grew, and stops the thread.
    pub fn shutdown(mut self) {
        let _ = self.handle.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn last_received_ms(store: &dyn Store, edge: &RightEdge) -> Result<i64, String> {
    if edge.size() == 0 {
        return Ok(0);
    }
    let entry = match edge.last_partial_entry() {
        Some(e) => e,
        None => {
            let index = (edge.size() - 1) >> 8;
            let bundle = store
                .bundle(index)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("entry bundle {index} is missing"))?;
            tiles::decode_bundle(&bundle)
                .map_err(|e| e.to_string())?
                .pop()
                .ok_or_else(|| format!("entry bundle {index} is empty"))?
        }
    };
    LeafRecord::parse(&entry)
        .map(|r| r.received_ms)
        .map_err(|e| format!("last leaf is malformed: {e}"))
}

fn run(mut st: State, rx: Receiver<Msg>) {
    loop {
        let timeout = st.checkpoint_due_in();
        match rx.recv_timeout(timeout) {
            Ok(Msg::Submit(first)) => {
                let (batch, shutdown) = collect_batch(&st.config, first, &rx);
                st.integrate(batch);
                if shutdown {
                    st.final_checkpoint();
                    return;
                }
            }
            Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                // Drain what was queued before the shutdown.
                while let Ok(Msg::Submit(s)) = rx.try_recv() {
                    st.integrate(vec![s]);
                }
                st.final_checkpoint();
                return;
            }
            Err(RecvTimeoutError::Timeout) => st.periodic_checkpoint(),
        }
    }
}

/// Takes `first` and whatever else is queued, up to the batch limits.
fn collect_batch(
    config: &SequencerConfig,
    first: Submission,
    rx: &Receiver<Msg>,
) -> (Vec<Submission>, bool) {
    let deadline = Instant::now() + config.max_batch_delay;
    let mut entries = first.events.len();
    let mut batch = vec![first];
    while entries < config.max_batch_entries {
        let next = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
        };
        match next {
            Msg::Submit(s) => {
                entries += s.events.len();
                batch.push(s);
            }
            Msg::Shutdown => return (batch, true),
        }
    }
    (batch, false)
}

impl State {
    fn checkpoint_due_in(&self) -> Duration {
        if self.edge.size() == self.last_checkpoint_size {
            return Duration::from_secs(3600);
        }
        self.config
            .checkpoint_interval
            .saturating_sub(self.last_checkpoint_at.elapsed())
    }

    fn checkpoint_due(&self) -> bool {
        self.edge.size() != self.last_checkpoint_size
            && self.last_checkpoint_at.elapsed() >= self.config.checkpoint_interval
    }

    /// Sequences and commits one batch, then answers its submitters.
    fn integrate(&mut self, mut batch: Vec<Submission>) {
        let started = Instant::now();
        let before = self.edge.clone();
        match self.sequence(&mut batch) {
            Ok((write, receipts)) => {
                // Crash before or during this commit: nothing was
                // acknowledged and the store still holds the previous batch,
                // so a restart continues from there.
                if let Err(e) = self.store.commit(&write) {
                    self.recover_from_failed_commit(before, &e);
                    fail_all(batch, || {
                        SubmitError::Store(StoreError::Backend(e.to_string()))
                    });
                    return;
                }
                // Crash from here on: the batch is durable; submitters that
                // saw no answer retry with their idempotency keys.
                metrics::histogram!("veritrail_batch_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("veritrail_batch_entries").record(write.events.len() as f64);
                metrics::counter!("veritrail_appends_total").increment(write.events.len() as u64);
                self.view
                    .durable_size
                    .store(self.edge.size(), Ordering::Release);
                metrics::gauge!("veritrail_tree_size").set(self.edge.size() as f64);
                // Publish only now that the checkpoint is durable. A waiting
                // submitter whose events were all duplicates gets the latest
                // checkpoint, which already covers them.
                let published = match self.pending_publish.take() {
                    Some(p) => Some(self.publish(p)),
                    None => Some(self.view.checkpoint()),
                };
                for (sub, entries) in batch.into_iter().zip(receipts) {
                    let checkpoint = if sub.wants_checkpoint {
                        published.clone()
                    } else {
                        None
                    };
                    sub.answer(Ok(Receipt {
                        entries,
                        checkpoint,
                    }));
                }
            }
            Err(e) => {
                self.edge = before;
                self.pending_publish = None;
                tracing::error!(error = %e, "couldn't sequence a batch");
                fail_all(batch, || {
                    SubmitError::Store(StoreError::Backend(e.to_string()))
                });
            }
        }
    }

    /// Assigns indices and builds the batch's write. On success the right
    /// edge has advanced, the new checkpoint (if any) is already visible in
    /// the view only after `commit` — see `integrate`.
    /// The events' canonical bytes move into the write.
    fn sequence(
        &mut self,
        batch: &mut [Submission],
    ) -> Result<(BatchWrite, Vec<Vec<EntryReceipt>>), StoreError> {
        let start_size = self.edge.size();
        let received_ms = now_ms().max(self.last_received_ms);
        let mut write = BatchWrite::default();
        let mut done = Completed::default();
        let mut seen: HashMap<(&str, &str), EntryReceipt> = HashMap::new();
        let mut receipts = Vec::with_capacity(batch.len());
        for sub in batch.iter_mut() {
            let mut entries = Vec::with_capacity(sub.events.len());
            for ev in &mut sub.events {
                if let Some(id) = ev.id.as_deref() {
                    if let Some(r) = seen.get(&(sub.app.as_str(), id)) {
                        entries.push(EntryReceipt {
                            duplicate: true,
                            ..r.clone()
                        });
                        continue;
                    }
                    if let Some(index) = self.store.dedupe(&sub.app, id)? {
                        entries.push(self.receipt_of_stored(index)?);
                        continue;
                    }
                }
                let index = self.edge.size();
                let leaf = LeafRecord {
                    app: sub.app.clone(),
                    received_ms,
                    commitment: ev.commitment,
                }
                .to_bytes();
                let leaf_hash = merkle::leaf_hash(&leaf);
                self.edge.append(&leaf, leaf_hash, &mut done).map_err(|e| {
                    StoreError::Corrupt(format!("leaf record cannot be bundled: {e}"))
                })?;
                write.events.push((
                    index,
                    StoredEvent {
                        app: sub.app.clone(),
                        salt: ev.salt,
                        event: std::mem::take(&mut ev.canonical),
                    },
                ));
                write.event_terms.push(ev.terms.take());
                write.leaf_index.push((leaf_hash, index));
                let receipt = EntryReceipt {
                    index,
                    leaf_hash,
                    commitment: ev.commitment,
                    duplicate: false,
                };
                if let Some(id) = ev.id.as_deref() {
                    write.dedupe.push((sub.app.clone(), id.to_string(), index));
                    seen.insert((sub.app.as_str(), id), receipt.clone());
                }
                entries.push(receipt);
            }
            receipts.push(entries);
        }
        write.tree_size = self.edge.size();
        write.received_ms = Some(received_ms);
        write.tiles = done.tiles;
        write
            .tiles
            .extend(self.edge.partial_tiles_since(start_size));
        write.bundles = done.bundles;
        if !self.edge.size().is_multiple_of(TILE_WIDTH) && self.edge.size() != start_size {
            write
                .bundles
                .push((self.edge.size() >> 8, self.edge.bundle.clone()));
        }
        let wanted = batch.iter().any(|s| s.wants_checkpoint);
        if self.edge.size() != self.last_checkpoint_size && (wanted || self.checkpoint_due()) {
            let published = self
                .signer
                .sign(self.edge.size(), self.edge.root(), received_ms)
                .map_err(StoreError::Corrupt)?;
            write.checkpoint = Some(StoredCheckpoint {
                published_at_ms: published.published_at_ms,
                note: published.note.clone().into_bytes(),
            });
            self.pending_publish = Some(published);
        }
        self.last_received_ms = received_ms;
        Ok((write, receipts))
    }

    /// Makes a committed checkpoint visible to readers.
    fn publish(&mut self, p: Published) -> Arc<Published> {
        self.last_checkpoint_size = p.checkpoint.size;
        self.last_checkpoint_at = Instant::now();
        let p = Arc::new(p);
        self.view.publish(p.clone());
        p
    }

    /// After a failed commit the store's state is unknown to us (the write
    /// may have been applied but not flushed): reload the right edge from
    /// what the store says. If even that fails, stop accepting events.
    fn recover_from_failed_commit(&mut self, before: RightEdge, err: &StoreError) {
        self.pending_publish = None;
        metrics::counter!("veritrail_batch_failures_total").increment(1);
        tracing::error!(error = %err, "couldn't commit a batch; its submitters get an error");
        let reloaded = self
            .store
            .tree_size()
            .map_err(|e| e.to_string())
            .and_then(|size| RightEdge::load(self.store.as_ref(), size).map_err(|e| e.to_string()));
        match reloaded {
            // Either nothing of the batch landed (same tree), or all of it did
            // (a larger tree the batch built on top of ours).
            Ok(edge) if edge.size() > before.size() || edge.root() == before.root() => {
                self.edge = edge;
                self.view
                    .durable_size
                    .store(self.edge.size(), Ordering::Release);
            }
            Ok(_) => self.fail(
                "the store's tree after a failed commit does not extend the committed tree".into(),
            ),
            Err(e) => self.fail(format!(
                "couldn't reload the tree after a failed commit: {e}"
            )),
        }
    }

    fn fail(&mut self, why: String) {
        tracing::error!(reason = %why, "the sequencer stops; restart the log once the store is healthy");
        self.view.failed.store(true, Ordering::Release);
    }

    /// Signs and stores a checkpoint on its own when the interval passed and
    /// the tree grew since the last one.
    fn periodic_checkpoint(&mut self) {
        if self.checkpoint_due() {
            self.checkpoint_now();
        }
    }

    fn final_checkpoint(&mut self) {
        if self.edge.size() != self.last_checkpoint_size {
            self.checkpoint_now();
        }
    }

    fn checkpoint_now(&mut self) {
        if self.view.failed() {
            return;
        }
        let published = match self
            .signer
            .sign(self.edge.size(), self.edge.root(), now_ms())
        {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        let stored = StoredCheckpoint {
            published_at_ms: published.published_at_ms,
            note: published.note.clone().into_bytes(),
        };
        match self.store.put_checkpoint(&stored) {
            Ok(()) => {
                self.publish(published);
            }
            Err(e) => {
                // Not fatal: the tree is intact; the next attempt retries.
                tracing::error!(error = %e, "couldn't store a checkpoint; will retry");
                self.last_checkpoint_at = Instant::now();
            }
        }
    }

    fn receipt_of_stored(&self, index: u64) -> Result<EntryReceipt, StoreError> {
        let entry = self.leaf_entry(index)?;
        let record = LeafRecord::parse(&entry)
            .map_err(|e| StoreError::Corrupt(format!("leaf {index} is not a leaf record: {e}")))?;
        Ok(EntryReceipt {
            index,
            leaf_hash: merkle::leaf_hash(&entry),
            commitment: record.commitment,
            duplicate: true,
        })
    }

    fn leaf_entry(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        read_entry(self.store.as_ref(), index)
    }
}

/// Reads leaf `index` from the stored entry bundles.
pub fn read_entry(store: &dyn Store, index: u64) -> Result<Vec<u8>, StoreError> {
    let bundle = store
        .bundle(index >> 8)?
        .ok_or_else(|| StoreError::Corrupt(format!("entry bundle {} is missing", index >> 8)))?;
    let mut entries = tiles::decode_bundle(&bundle).map_err(|e| {
        StoreError::Corrupt(format!("entry bundle {} is malformed: {e}", index >> 8))
    })?;
    let offset = (index % TILE_WIDTH) as usize;
    if offset >= entries.len() {
        return Err(StoreError::Corrupt(format!(
            "leaf {index} is missing from its bundle"
        )));
    }
    Ok(entries.swap_remove(offset))
}

fn fail_all(batch: Vec<Submission>, err: impl Fn() -> SubmitError) {
    for sub in batch {
        sub.answer(Err(err()));
    }
}
