//! The write path, stage by stage, in the order an event goes through it:
//!
//! 1. **accept** ([`accept`], on the submitter's thread): the events were
//!    validated where they were parsed (an [`AuditEvent`] is valid by
//!    construction); here each is canonicalised (RFC 8785), gets a fresh
//!    salt and its commitment, and its search terms. Then it is queued
//!    (see [`super::SequencerHandle::submit`]).
//! 2. **sequence** (`State::sequence`, on the sequencer thread): repeated
//!    ids are answered with their first index, the others get the next
//!    indices, their leaf records go onto the right edge, and the tiles and
//!    bundles the batch touched are collected; a checkpoint is signed when
//!    one is due or asked for.
//! 3. **seal** ([`Vault::seal`]): the vault encrypts every body and salt
//!    under its data key and adds the sealed bodies and any new wrapped
//!    data keys to the batch's write.
//! 4. **commit** ([`Store::commit`]): the whole batch is one atomic,
//!    durable write.
//! 5. **publish** (`State::publish_batch`): the durable size and the
//!    checkpoint become visible, and every submitter gets its answer.
//!
//! Invariants: nothing is acknowledged or published before the store said
//! it is durable; a checkpoint is only signed for the root of the right
//! edge being committed with it, so no two checkpoints are inconsistent;
//! the `received` time of leaves never goes backwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::edge::{Completed, RightEdge};
use super::reader::read_entry;
use super::thread::{Backoff, State, Submission};
use super::view::Published;
use crate::crypto::Term;
use crate::event::{self, AuditEvent, LeafRecord};
use crate::merkle::{self, Hash};
use crate::store::{BatchWrite, DedupeKey, Store, StoreError, StoredCheckpoint, StoredEvent};
use crate::tiles::TILE_WIDTH;
use crate::vault::{EventToSeal, SealedBatch, Vault};

// ---------------------------------------------------------------------------
// Stage 1: accept.

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
    /// The event's search terms ([`Vault::terms_of`] under the submitting
    /// app), when the submitter computed them: that work then happens on
    /// the request's thread instead of the sequencer's. `None` leaves it
    /// to the seal stage.
    pub terms: Option<Vec<Term>>,
}

impl PreparedEvent {
    /// What this event counts against the queue's byte budget: its bytes
    /// and a fixed allowance for the structures around them.
    pub fn queued_bytes(&self) -> usize {
        const OVERHEAD: usize = 256;
        self.canonical.len() + self.id.as_ref().map_or(0, String::len) + OVERHEAD
    }
}

/// Why events could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The operating system gave no randomness for the salts.
    #[error("no randomness available for the events' salts: {0}")]
    NoRandomness(String),
}

/// Stage 1: turns `app`'s validated events into what the sequencer
/// appends: canonical bytes, a fresh 32-byte salt (drawn from the OS in one
/// call for the whole batch), the commitment, and the search terms. Every
/// entry point that appends events (`POST /v1/events`, other receivers)
/// calls this, then [`super::SequencerHandle::submit`].
pub fn accept(
    vault: &Vault,
    app: &str,
    events: Vec<AuditEvent>,
) -> Result<Vec<PreparedEvent>, AcceptError> {
    accept_with_terms(events, |ev| Some(vault.terms_of(app, ev)))
}

/// As [`accept`], with each event's search terms from `terms` (`None`
/// leaves them to the seal stage).
pub fn accept_with_terms(
    events: Vec<AuditEvent>,
    terms: impl Fn(&AuditEvent) -> Option<Vec<Term>>,
) -> Result<Vec<PreparedEvent>, AcceptError> {
    let mut salts = vec![[0u8; 32]; events.len()];
    getrandom::fill(salts.as_flattened_mut())
        .map_err(|e| AcceptError::NoRandomness(e.to_string()))?;
    Ok(events
        .into_iter()
        .zip(salts)
        .map(|(ev, salt)| {
            let canonical = ev.canonical_bytes();
            PreparedEvent {
                commitment: event::commitment(&salt, &canonical),
                terms: terms(&ev),
                id: ev.id,
                canonical,
                salt,
            }
        })
        .collect())
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
    /// This frontend cannot sequence for a moment (its lease ended, or the
    /// store is unreachable since a failed commit): retry in a second.
    #[error("the log is not accepting events right now: {0}")]
    Paused(String),
    /// The store failed to commit the batch; nothing of it was acknowledged.
    #[error("the batch could not be made durable: {0}")]
    Store(#[from] StoreError),
}

// ---------------------------------------------------------------------------
// Stages 2 to 5, on the sequencer thread.

/// What the seal stage does with event bodies.
#[derive(Clone)]
pub enum Sealing {
    /// The vault seals them (every log `serve` runs).
    Vault(Arc<Vault>),
    /// Stored as given, as logs from before encryption at rest stored
    /// them: for tests over a bare store and for measuring what sealing
    /// costs (`bench pipeline`). `serve` has no way to choose it.
    Plaintext,
}

/// A batch's write ready to commit: sealed by the vault, or in plaintext.
enum ToCommit<'v> {
    Sealed(SealedBatch<'v>),
    Plain(BatchWrite),
}

impl ToCommit<'_> {
    fn write(&self) -> &BatchWrite {
        match self {
            ToCommit::Sealed(s) => s.write(),
            ToCommit::Plain(w) => w,
        }
    }

    /// The write is durable: let the vault index it.
    fn committed(self) {
        if let ToCommit::Sealed(s) = self {
            s.committed();
        }
    }
}

/// Stage 3: turns a sequenced batch into what is stored.
fn seal(
    sealing: &Sealing,
    mut write: BatchWrite,
    events: Vec<EventToSeal>,
    received_ms: i64,
) -> Result<ToCommit<'_>, StoreError> {
    match sealing {
        Sealing::Vault(vault) => vault.seal(write, events, received_ms).map(ToCommit::Sealed),
        Sealing::Plaintext => {
            write.events = events.into_iter().map(|e| (e.index, e.event)).collect();
            Ok(ToCommit::Plain(write))
        }
    }
}

/// A sequenced batch: the write of everything but the event bodies, the
/// bodies still in plaintext, and each submitter's receipts.
pub(super) struct Sequenced {
    write: BatchWrite,
    events: Vec<EventToSeal>,
    received_ms: i64,
    receipts: Vec<Vec<EntryReceipt>>,
}

impl State {
    /// Takes one batch through sequence, seal, commit and publish, and
    /// answers its submitters. A failure at any stage fails every
    /// submitter of the batch and acknowledges nothing.
    pub(super) fn integrate(&mut self, mut batch: Vec<Submission>) {
        if let Some(why) = self.cannot_sequence() {
            return refuse_all(batch, &why);
        }
        let started = Instant::now();
        let before = self.edge.clone();
        // kill -9 during sequence or seal: only memory changed (the right
        // edge, a signed but unpublished checkpoint); the store still holds
        // the previous batch and nothing of this one was acknowledged.
        let sequenced = match self.sequence(&mut batch) {
            Ok(s) => s,
            Err(e) => {
                self.edge = before;
                self.pending_publish = None;
                tracing::error!(error = %e, "couldn't sequence a batch");
                return fail_all(batch, &e);
            }
        };
        let Sequenced {
            write,
            events,
            received_ms,
            receipts,
        } = sequenced;
        let appended = events.len();
        // The seal holds the vault's key lock until the batch is committed
        // (or not), so an erasure never destroys a key this batch uses.
        let sealing = self.sealing.clone();
        let sealed = match seal(&sealing, write, events, received_ms) {
            Ok(sealed) => sealed,
            Err(e) => {
                // Nothing was written: the store still holds the previous
                // batch, which is what `before` describes.
                self.edge = before;
                self.pending_publish = None;
                metrics::counter!("veritrail_batch_failures_total").increment(1);
                tracing::error!(error = %e, "couldn't seal a batch; its submitters get an error");
                return fail_all(batch, &e);
            }
        };
        // kill -9 before or during this commit: nothing of the batch was
        // acknowledged, and the store applies a batch all or nothing, so a
        // restart finds the previous batch's tree and checkpoint and
        // continues from there. Submitters retry with their ids.
        if let Err(e) = self.store.commit(sealed.write()) {
            drop(sealed);
            self.recover_from_failed_commit(&before, &e);
            return fail_all(batch, &e);
        }
        // kill -9 from here on: the batch is durable (bodies, keys, leaves,
        // tiles, checkpoint), though maybe not yet answered; submitters that
        // saw no answer retry with their ids and get the same indices. The
        // in-memory search postings are derived and rebuilt on restart.
        sealed.committed();
        // kill -9 while publishing: as above; a restart serves the stored
        // checkpoint, which covers the committed tree or a prefix of it.
        metrics::histogram!("veritrail_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("veritrail_batch_entries").record(appended as f64);
        metrics::counter!("veritrail_appends_total").increment(appended as u64);
        self.publish_batch(batch, receipts);
    }

    /// Stage 2: assigns indices, builds leaf records and appends them to
    /// the right edge, and collects the batch's write (without bodies)
    /// and, when due or asked for, a checkpoint signed for the new root. On
    /// success the right edge has advanced; the checkpoint is published
    /// only after the commit (see `integrate`). The events' canonical bytes
    /// move out of `batch`.
    fn sequence(&mut self, batch: &mut [Submission]) -> Result<Sequenced, StoreError> {
        let start_size = self.edge.size();
        let received_ms = self.view.clock().now_ms().max(self.last_received_ms);
        let mut write = BatchWrite::default();
        let mut events = Vec::new();
        let mut done = Completed::default();
        let mut seen: HashMap<DedupeKey, EntryReceipt> = HashMap::new();
        let mut receipts = Vec::with_capacity(batch.len());
        let stored = stored_ids(self.store.as_ref(), batch)?;
        for sub in batch.iter_mut() {
            let mut entries = Vec::with_capacity(sub.events.len());
            for ev in &mut sub.events {
                // One key per id, for this batch and for the store.
                let key = ev.id.as_deref().map(|id| DedupeKey::of(&sub.app, id));
                if let Some(key) = &key {
                    if let Some(r) = seen.get(key) {
                        entries.push(EntryReceipt {
                            duplicate: true,
                            ..r.clone()
                        });
                        continue;
                    }
                    if let Some(index) = stored.get(key).copied() {
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
                events.push(EventToSeal {
                    index,
                    event: StoredEvent {
                        app: sub.app.clone(),
                        salt: ev.salt,
                        event: std::mem::take(&mut ev.canonical),
                    },
                    terms: ev.terms.take(),
                });
                write.leaf_index.push((leaf_hash, index));
                let receipt = EntryReceipt {
                    index,
                    leaf_hash,
                    commitment: ev.commitment,
                    duplicate: false,
                };
                if let Some(key) = key {
                    write.dedupe.push((key, index));
                    seen.insert(key, receipt.clone());
                }
                entries.push(receipt);
            }
            receipts.push(entries);
        }
        write.tree_size = self.edge.size();
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
        Ok(Sequenced {
            write,
            events,
            received_ms,
            receipts,
        })
    }

    /// Stage 5, once the batch is durable: the durable size and the
    /// checkpoint committed with the batch become visible, then every
    /// submitter is answered. A waiting submitter whose events were all
    /// duplicates gets the latest checkpoint, which already covers them.
    fn publish_batch(&mut self, batch: Vec<Submission>, receipts: Vec<Vec<EntryReceipt>>) {
        self.view.set_durable_size(self.edge.size());
        metrics::gauge!("veritrail_tree_size").set(self.edge.size() as f64);
        let published = match self.pending_publish.take() {
            Some(p) => self.publish(p),
            None => self.view.checkpoint(),
        };
        for (sub, entries) in batch.into_iter().zip(receipts) {
            let checkpoint = sub.wants_checkpoint.then(|| published.clone());
            sub.answer(Ok(Receipt {
                entries,
                checkpoint,
            }));
        }
    }

    /// Makes a committed checkpoint visible to readers.
    fn publish(&mut self, p: Published) -> Arc<Published> {
        self.last_checkpoint_size = p.checkpoint.size;
        self.last_checkpoint_at = Instant::now();
        let p = Arc::new(p);
        self.view.publish(p.clone());
        p
    }

    /// Why no batch may be sequenced now, if so: the lease is not held, or
    /// the stored tree could not be read back since a failed commit (one
    /// more try is made when it is due).
    fn cannot_sequence(&mut self) -> Option<String> {
        if let Some(lease) = &self.lease
            && !lease.held()
        {
            return Some("this frontend no longer sequences (its lease ended); retry".into());
        }
        if self.stale.is_some() {
            self.retry_reload();
        }
        self.stale
            .is_some()
            .then(|| "the store is unreachable; retry shortly".into())
    }

    /// After a failed commit the store's state is unknown to us (the write
    /// may have been applied but not flushed, or the transaction committed
    /// but its answer was lost): reload the right edge from what the store
    /// says before sequencing anything else. While the store cannot be
    /// read, retry with backoff (submitters get 503 meanwhile).
    fn recover_from_failed_commit(&mut self, before: &RightEdge, err: &StoreError) {
        self.pending_publish = None;
        metrics::counter!("veritrail_batch_failures_total").increment(1);
        tracing::error!(error = %err, "couldn't commit a batch; its submitters get an error");
        self.edge = before.clone();
        if self.store.latched() {
            // Nothing it says can be trusted until it is reopened.
            self.fail(format!("a write could not be made durable: {err}"));
            return;
        }
        self.stale = Some(Backoff::start());
        self.reload_now();
    }

    /// Retries reading the stored tree back, when the backoff allows.
    pub(super) fn retry_reload(&mut self) {
        if self.stale.is_some_and(|b| Instant::now() >= b.next_try) {
            self.reload_now();
        }
    }

    fn reload_now(&mut self) {
        match self.reload() {
            Ok(true) => {
                if self
                    .stale
                    .take()
                    .is_some_and(|b| b.delay > Backoff::start().delay)
                {
                    tracing::info!(
                        size = self.edge.size(),
                        "the store is back; sequencing again"
                    );
                }
            }
            Ok(false) => {
                self.stale = None;
                self.fail(
                    "the store's tree after a failed commit does not extend the committed tree"
                        .into(),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "couldn't read the stored tree back; retrying");
                self.stale = self.stale.map(Backoff::next).or(Some(Backoff::start()));
            }
        }
    }

    /// Reads the stored tree and its last leaf's time afresh (a
    /// checkpoint that landed with a failed batch is not published: the
    /// next one covers the same tree). `Ok(false)` when the stored tree does not extend the tree in
    /// memory (then nothing changes): either nothing of the failed batch
    /// landed (the same tree) or all of it did, maybe followed by more
    /// (a larger tree whose prefix is the tree we had).
    fn reload(&mut self) -> Result<bool, String> {
        let store = self.store.as_ref();
        let size = store.tree_size().map_err(|e| e.to_string())?;
        let edge = RightEdge::load(store, size).map_err(|e| e.to_string())?;
        let prefix = if size > self.edge.size() {
            RightEdge::load(store, self.edge.size())
                .map_err(|e| e.to_string())?
                .root()
        } else {
            edge.root()
        };
        if edge.size() < self.edge.size() || prefix != self.edge.root() {
            return Ok(false);
        }
        self.last_received_ms = self.last_received_ms.max(edge.last_received_ms(store)?);
        self.edge = edge;
        self.view.set_durable_size(self.edge.size());
        Ok(true)
    }

    /// Stops accepting events for good (until a restart).
    pub(super) fn fail(&mut self, why: String) {
        tracing::error!(reason = %why, "the sequencer stops; restart the log once the store is healthy");
        self.view.set_failed();
    }

    /// Signs a checkpoint for the committed tree, stores it on its own and
    /// publishes it: stages 2, 4 and 5 for a checkpoint without events.
    pub(super) fn checkpoint_now(&mut self) {
        if self.view.failed() || self.stale.is_some() {
            return;
        }
        if let Some(lease) = &self.lease
            && !lease.held()
        {
            return;
        }
        let published = match self.signer.sign(
            self.edge.size(),
            self.edge.root(),
            self.view.clock().now_ms(),
        ) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        let stored = StoredCheckpoint {
            published_at_ms: published.published_at_ms,
            note: published.note.clone().into_bytes(),
        };
        // kill -9 before this write lands: the previous checkpoint stays the
        // latest, and the tree it covers is a prefix of the committed one.
        match self.store.put_checkpoint(&stored) {
            // kill -9 from here: the checkpoint is durable and covers only
            // committed leaves; a restart serves it.
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

    /// The receipt of an event appended by an earlier batch.
    fn receipt_of_stored(&self, index: u64) -> Result<EntryReceipt, StoreError> {
        let entry = read_entry(self.store.as_ref(), index)?;
        let record = LeafRecord::parse(&entry)
            .map_err(|e| StoreError::Corrupt(format!("leaf {index} is not a leaf record: {e}")))?;
        Ok(EntryReceipt {
            index,
            leaf_hash: merkle::leaf_hash(&entry),
            commitment: record.commitment,
            duplicate: true,
        })
    }
}

/// The stored first index of every event id in `batch` that has one, in
/// one store request (a remote store answers it in one round trip).
fn stored_ids(
    store: &dyn Store,
    batch: &[Submission],
) -> Result<HashMap<DedupeKey, u64>, StoreError> {
    let keys: Vec<DedupeKey> = batch
        .iter()
        .flat_map(|sub| {
            sub.events
                .iter()
                .filter_map(|ev| ev.id.as_deref().map(|id| DedupeKey::of(&sub.app, id)))
        })
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let found = store.dedupe_many(&keys)?;
    Ok(keys
        .into_iter()
        .zip(found)
        .filter_map(|(k, i)| i.map(|i| (k, i)))
        .collect())
}

/// Refuses every submitter of `batch` for now: nothing of it was written.
fn refuse_all(batch: Vec<Submission>, why: &str) {
    for sub in batch {
        sub.answer(Err(SubmitError::Paused(why.to_string())));
    }
}

/// Answers every submitter of `batch` with the store error `err`.
fn fail_all(batch: Vec<Submission>, err: &StoreError) {
    for sub in batch {
        sub.answer(Err(SubmitError::Store(StoreError::Backend(
            err.to_string(),
        ))));
    }
}
