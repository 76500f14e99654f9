//! The vault: event bodies and salts encrypted at rest, their secondary
//! indexes, and erasure by destroying keys (crypto-shredding).
//!
//! The vault sits beside the store, not in front of it. On the write path
//! the sequencer calls [`Vault::seal`] by name: it makes sure every key
//! the batch needs is durable in the key store, seals each event (salt and
//! canonical body) under its own key and adds the sealed bodies to the
//! batch's write, which the sequencer then commits in one atomic write, so
//! an event is never stored without the key that opens it. Once that
//! write is durable, [`SealedBatch::committed`] adds the events to the
//! search index. Reads ([`Vault::event`], search, erasure) decrypt.
//!
//! Keys ([`keys`], [`keytree`]): each event has its own key, derived from
//! its entry bundle's seed and, if it has a subject, from the subject's
//! key, all kept in the key store (`keys/` in the data directory, apart
//! from the database of events, so a backup of the events carries no key).
//! Erasing an event or a subject destroys those keys only: no other event
//! is re-sealed, and the cost is a few small blocks whatever the log's
//! size. The search index ([`index`]) maps terms to leaves, where a term
//! is an HMAC-SHA256 of the field value (see [`crate::crypto`]): the store
//! never holds a subject, actor or any other event field in plaintext.
//!
//! Invariant: once [`Vault::erase`] returned, no key that exists opens the
//! erased events' sealed bodies (nor any event of an erased subject), and
//! a tombstone says when and why. The bodies and index entries of events
//! named by index are deleted; those of an erased subject's events are
//! deleted in the background ([`cleanup`]), which search does not wait
//! for (it never returns an event no key opens). No event is made unreadable unless it was erased. Leaves,
//! tiles, bundles and checkpoints are never touched.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, DataKey, Field, IndexKey, MasterKey, Term};
use crate::event::AuditEvent;
use crate::store::{RecordBatch, RecordSpace, Store, StoreError, StoredEvent};

pub mod background;
mod cleanup;
mod erase;
mod keyring;
mod keys;
mod keytree;
mod master_key;
mod seal;
mod slot_tombstones;
mod subject_note;

pub use crate::search::index::DEFAULT_FLUSH_EVENTS as DEFAULT_INDEX_FLUSH_EVENTS;

use crate::search::index::SearchIndex;

pub use cleanup::{STEP_EVENTS as CLEANUP_STEP_EVENTS, start as start_erasure_cleanup};
pub use keyring::{KEYRING_FILE, KeyringHome, rotation_pending as keyring_rotation_pending};
use keys::Keys;
pub use keytree::KEYS_DIR;

/// Copies the current state of the key store `from` (a live log's
/// `keys/`, which may change meanwhile) into the new directory `to`, every
/// file synced, proving that `master` opens it. Returns the blocks copied.
pub fn copy_key_store(
    from: &std::path::Path,
    to: &std::path::Path,
    master: &MasterKey,
) -> Result<u64, VaultError> {
    keytree::copy_current(from, to, &master.wrap_key())
}

/// As [`copy_key_store`], into `store`'s records, where a vault opened
/// with [`KeyringHome::Store`] finds it (the remote backend's key store).
pub fn copy_key_store_to_store(
    from: &std::path::Path,
    store: Arc<dyn Store>,
    master: &MasterKey,
) -> Result<u64, VaultError> {
    keytree::copy_current_to_store(from, store, &master.wrap_key())
}
pub use master_key::{
    MASTER_KEY_ENV, MasterKeyOrigin, check_master_key, default_master_key_path, open_master_key,
    read_master_key,
};
pub use seal::{EventToSeal, SealedBatch};

/// Why the vault could not do something.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key is missing, malformed or not this log's.
    #[error("{0}")]
    MasterKey(String),
    /// A stored sealed body or key does not open.
    #[error("stored event {index} cannot be decrypted: {source}")]
    Decrypt {
        /// Leaf index.
        index: u64,
        /// Why.
        source: CryptoError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness or a similar local failure.
    #[error("{0}")]
    Local(String),
}

impl From<VaultError> for StoreError {
    fn from(e: VaultError) -> StoreError {
        match e {
            VaultError::Store(s) => s,
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// When and why an event's body was erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tombstone {
    /// RFC 3339 time of the erasure.
    pub erased_at: String,
    /// The reason given.
    pub reason: String,
    /// `erasure` (on request) or `retention` (expired by policy).
    pub cause: String,
    /// Who asked: the API key's name, or `retention`.
    pub by: String,
}

/// What an erasure destroyed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// Leaf indexes whose bodies and salts are gone (newly erased).
    pub erased: Vec<u64>,
    /// Keys destroyed: subject keys, and single events' keys.
    pub keys_destroyed: usize,
    /// Keys of the earlier format replaced (the live events under them
    /// were re-sealed with keys of their own); always 0 for events sealed
    /// by this version.
    pub keys_replaced: usize,
    /// An erased subject's events are being deleted in the background
    /// (they read as erased already).
    pub cleanup_pending: bool,
}

/// The encrypting, indexing store.
pub struct Vault {
    inner: Arc<dyn Store>,
    index_key: IndexKey,
    /// The keys. The mutex also serialises sealing with erasures, so a
    /// key is never used while it is being destroyed.
    keys: Mutex<Keys>,
    /// Signalled when an erasure's key store write, done without `keys`'s
    /// lock, is finished (see [`erase`]).
    key_store_written: Condvar,
    /// Serialises erasures and the steps of their cleanup, which do their
    /// durable writes without `keys`'s lock. Lock order: this before `keys`.
    erasing: Mutex<()>,
    /// The search index. Lock order: `keys` before the index's own locks.
    index: Arc<SearchIndex>,
    /// The sequencer's queue, which the background jobs yield to.
    writers: background::Writers,
}

fn be(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn event_aad(index: u64) -> Vec<u8> {
    let mut aad = b"veritrail/sealed-event/v1\0".to_vec();
    aad.extend_from_slice(&index.to_be_bytes());
    aad
}

/// `u8 len || key id || nonce || ciphertext`.
fn encode_sealed(key_id: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key_id.len() + sealed.len());
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id);
    out.extend_from_slice(sealed);
    out
}

fn decode_sealed(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let len = usize::from(
        *bytes
            .first()
            .ok_or_else(|| StoreError::Corrupt("empty sealed event".into()))?,
    );
    if bytes.len() < 1 + len {
        return Err(StoreError::Corrupt("sealed event is truncated".into()));
    }
    Ok((&bytes[1..1 + len], &bytes[1 + len..]))
}

fn open_sealed(key: &DataKey, index: u64, sealed: &[u8]) -> Result<StoredEvent, StoreError> {
    let plain = key
        .open(&event_aad(index), sealed)
        .map_err(|e| StoreError::from(VaultError::Decrypt { index, source: e }))?;
    StoredEvent::decode(&plain)
}

impl Vault {
    /// A vault over `inner` with keys derived from `master`, whose keyring
    /// lives at `home` (created if the store has none yet).
    pub fn open(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
    ) -> Result<Vault, VaultError> {
        Vault::open_with_index_flush(inner, master, home, DEFAULT_INDEX_FLUSH_EVENTS)
    }

    /// As [`Vault::open`], writing the search index out every
    /// `flush_events` events. Opening brings the search index up to the
    /// tree: a store without one (new, restored, or of an earlier format)
    /// is indexed from its first event; otherwise the events above the
    /// index's watermark are read back into memory.
    pub fn open_with_index_flush(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
        flush_events: usize,
    ) -> Result<Vault, VaultError> {
        let vault = Vault::open_building_index(inner, master, home, flush_events)?;
        // Indexes what it left to the background.
        vault.index_to_tree()?;
        Ok(vault)
    }

    /// As [`Vault::open_with_index_flush`], but a search index more than
    /// `flush_events` events behind the tree (missing, damaged or of
    /// another format, in a large log) is left to be brought up to it by
    /// [`crate::search::rebuild::start`], in the background: until it is,
    /// [`Vault::index_building`] says how far it got. A smaller gap (what
    /// a crash leaves unflushed, or a small log) is indexed now, before
    /// serving: a start indexes a bounded number of events.
    pub fn open_building_index(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
        flush_events: usize,
    ) -> Result<Vault, VaultError> {
        // The index as stored, cleared if it is missing, damaged or of
        // another format.
        let watermark = match crate::search::index::stored_watermark(inner.as_ref()) {
            Err(StoreError::Corrupt(e)) => {
                // The index is derived from the events: rebuild it.
                tracing::warn!(error = %e, "the search index is damaged; rebuilding it");
                None
            }
            other => other?,
        };
        let from = match watermark {
            Some(w) => w,
            None => {
                inner.clear_index()?;
                inner.commit_records(&RecordBatch {
                    index_watermark: Some(0),
                    index_blocks: vec![crate::search::index::format_marker()],
                    ..RecordBatch::default()
                })?;
                0
            }
        };
        let vault = Vault::assemble(inner, master, home, from, flush_events)?;
        vault.index.start_flusher()?;
        let (from, size) = vault.index_and_tree()?;
        if size - from > flush_events as u64 {
            vault.index.start_building(size);
        } else {
            vault.index_to_tree()?;
        }
        Ok(vault)
    }

    /// Brings the search index up to the tree now, in steps of
    /// [`crate::search::rebuild::START_STEP_EVENTS`] events.
    fn index_to_tree(&self) -> Result<(), VaultError> {
        while !self.index_step(crate::search::rebuild::START_STEP_EVENTS)? {}
        Ok(())
    }

    /// A vault for offline checks: it writes nothing, and its search index
    /// answers from the stored blocks alone, that is for the leaves below
    /// [`Vault::index_watermark`].
    pub fn open_for_check(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
    ) -> Result<Vault, VaultError> {
        let from = match crate::search::index::stored_watermark(inner.as_ref()) {
            Ok(w) => w.unwrap_or(0),
            // Reported by the check itself; nothing is looked up in it.
            Err(StoreError::Corrupt(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        Vault::assemble_with(inner, master, home, from, usize::MAX, true)
    }

    fn assemble(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
        from: u64,
        flush_events: usize,
    ) -> Result<Vault, VaultError> {
        Vault::assemble_with(inner, master, home, from, flush_events, false)
    }

    fn assemble_with(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
        from: u64,
        flush_events: usize,
        check: bool,
    ) -> Result<Vault, VaultError> {
        let keys = Keys::open(&home, master, &inner, check)?;
        Ok(Vault {
            index: Arc::new(SearchIndex::new(inner.clone(), from, flush_events)),
            inner,
            index_key: master.index_key(),
            keys: Mutex::new(keys),
            key_store_written: Condvar::new(),
            erasing: Mutex::new(()),
            writers: background::Writers::default(),
        })
    }

    /// The sequencer's queue as the background jobs see it: the sequencer
    /// that seals with this vault counts its queued events into it.
    pub fn writers(&self) -> &background::Writers {
        &self.writers
    }

    /// Indexes up to `max` events from the search index's right end, and
    /// says whether the index now holds every committed event. It holds
    /// the key lock throughout, so no erasure and no commit falls between
    /// reading those events and indexing them, and the step that reaches
    /// the tree's size ends the building before any batch commits above
    /// it (see [`crate::search::index`]).
    pub(crate) fn index_step(&self, max: u64) -> Result<bool, VaultError> {
        let mut st = self.lock()?;
        let (from, size) = self.index_and_tree()?;
        let to = size.min(from.saturating_add(max));
        let mut postings = Vec::new();
        let mut jobs = None;
        for index in from..to {
            match self.open_event_locked(&mut st, index) {
                Ok(Some((stored, ev))) => {
                    postings.extend(
                        self.terms_of(&stored.app, &ev)
                            .into_iter()
                            .map(|t| (t, index)),
                    );
                }
                // Erased; listed under its subject while a cleanup has its
                // body to delete.
                Ok(None) => postings.extend(
                    self.cleanup_posting(&st, &mut jobs, index)?
                        .map(|t| (t, index)),
                ),
                Err(StoreError::Backend(e)) => return Err(StoreError::Backend(e).into()),
                // A damaged event is not searchable; fsck names it.
                Err(e) => tracing::warn!(index, error = %e, "event left out of the search index"),
            }
        }
        if to > from {
            self.index
                .append_indexed(to, (to - from) as usize, postings)?;
        }
        if to == size {
            self.index.built();
            return Ok(true);
        }
        self.index.start_building(size);
        Ok(false)
    }

    /// The search index's right end and the tree's size; an index beyond
    /// the tree is damage.
    fn index_and_tree(&self) -> Result<(u64, u64), VaultError> {
        let (from, size) = (self.index.indexed_to()?, self.inner.tree_size()?);
        if from > size {
            return Err(StoreError::Corrupt(format!(
                "the search index covers {from} leaves, the tree has {size}; run fsck"
            ))
            .into());
        }
        Ok((from, size))
    }

    /// While the search index is being built: how far it got.
    pub fn index_building(&self) -> Result<Option<crate::search::BuildProgress>, StoreError> {
        self.index.building()
    }

    /// Starts moving the search index's blocks into the store's current
    /// layout in the background ([`SearchIndex::start_tidying`]).
    pub fn start_index_tidying(&self, pace: background::Pace) -> Result<(), StoreError> {
        self.index.start_tidying(pace, self.writers.clone())
    }

    /// The first leaf whose postings are not yet in the stored index blocks
    /// (they are in memory, and re-derived from the events on start).
    pub fn index_watermark(&self) -> Result<u64, StoreError> {
        self.index.watermark()
    }

    /// Writes the in-memory part of the search index to the store, so the
    /// next start need not re-derive it. Called on shutdown.
    pub fn flush_index(&self) -> Result<(), StoreError> {
        self.index.flush()
    }

    /// A vault keeping its keyring in the store itself: for stores that
    /// keep no stale copies of overwritten values (tests, in memory).
    pub fn new(inner: Arc<dyn Store>, master: &MasterKey) -> Result<Vault, VaultError> {
        Vault::open(inner, master, KeyringHome::Store)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Keys>, StoreError> {
        self.keys
            .lock()
            .map_err(|_| StoreError::Backend("vault key cache lock poisoned".into()))
    }

    /// [`Keys::prepare`], waiting without the key lock while an erasure
    /// writes the key store (see [`erase`]) if it must write it too.
    fn prepare_keys<'a>(
        &self,
        mut st: MutexGuard<'a, Keys>,
        indexes: &[u64],
        subjects: &[Term],
        records: &mut Vec<(RecordSpace, Vec<u8>, Vec<u8>)>,
    ) -> Result<(MutexGuard<'a, Keys>, keys::Allocation), StoreError> {
        loop {
            if let Some(alloc) = st.prepare(self.inner.as_ref(), indexes, subjects, records)? {
                return Ok((st, alloc));
            }
            #[cfg(test)]
            {
                st.key_store_waits += 1;
            }
            while st.key_store_writing() {
                st = self
                    .key_store_written
                    .wait(st)
                    .map_err(|_| StoreError::Backend("vault key cache lock poisoned".into()))?;
            }
        }
    }

    /// Serialises erasures and their cleanup (see [`Vault::erasing`]).
    fn erasing(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        self.erasing
            .lock()
            .map_err(|_| StoreError::Backend("vault erasure lock poisoned".into()))
    }

    /// The index term of `value` in `field`.
    pub fn term(&self, field: Field, value: &str) -> Term {
        self.index_key.term(field, value)
    }

    /// A stable pseudonym of a data subject, safe to store and show.
    pub fn subject_pseudonym(&self, subject: &str) -> String {
        self.index_key.subject_pseudonym(subject)
    }

    /// Every index term of an event of `app`: its fields, and the UTC day,
    /// month and year it occurred in (see [`crate::search`] for how a time
    /// range becomes these terms).
    pub fn terms_of(&self, app: &str, ev: &AuditEvent) -> Vec<Term> {
        let mut terms = Vec::with_capacity(11);
        terms.extend([
            self.term(Field::App, app),
            self.term(Field::Actor, &ev.actor.id),
            self.term(Field::Action, &ev.action),
            self.term(Field::Resource, &ev.resource.id),
            self.term(Field::Outcome, ev.outcome.as_str()),
            self.term(Field::Purpose, &ev.purpose),
        ]);
        terms.extend(ev.subject.as_deref().map(|s| self.term(Field::Subject, s)));
        terms.extend(
            crate::search::occurred_terms(&ev.occurred_at)
                .into_iter()
                .map(|(field, value)| self.term(field, &value)),
        );
        terms
    }

    /// The tombstone of an erased event: its own, or else, for an event of
    /// an erased subject whose body the cleanup did not delete yet (or
    /// that the search index did not list), its subject's, found through
    /// the subject slot its key id names.
    pub fn tombstone(&self, index: u64) -> Result<Option<Tombstone>, StoreError> {
        self.tombstone_with(None, index)
    }

    /// [`Vault::tombstone`], with the keys when the caller holds their lock.
    fn tombstone_with(
        &self,
        st: Option<&Keys>,
        index: u64,
    ) -> Result<Option<Tombstone>, StoreError> {
        let own = self.inner.record(RecordSpace::Erased, &be(index))?;
        let found = match own {
            Some(v) => Some(v),
            None => match self.inner.record(RecordSpace::Sealed, &be(index))? {
                Some(record) => {
                    let key_id = decode_sealed(&record)?.0;
                    let slot = match keys::parse_key_id(key_id) {
                        Some(slot) => slot,
                        // A key of the earlier format, per subject and month.
                        None => match st {
                            Some(st) => st.legacy_slot(key_id),
                            None => self.lock()?.legacy_slot(key_id),
                        },
                    };
                    match slot {
                        Some(slot) => self
                            .inner
                            .record(RecordSpace::Erased, &erase::subject_tombstone_key(slot))?,
                        None => None,
                    }
                }
                None => None,
            },
        };
        found
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("tombstone {index}: {e}")))
            })
            .transpose()
    }

    /// The decrypted event and its parsed form.
    pub fn open_event(&self, index: u64) -> Result<Option<(StoredEvent, AuditEvent)>, StoreError> {
        let Some(stored) = self.event(index)? else {
            return Ok(None);
        };
        let parsed: AuditEvent = serde_json::from_slice(&stored.event).map_err(|e| {
            StoreError::Corrupt(format!("stored event {index} is not an event: {e}"))
        })?;
        Ok(Some((stored, parsed)))
    }

    /// The search index's block of `term` below `below` (see
    /// [`SearchIndex::block_below`]).
    pub(crate) fn block_below(
        &self,
        term: &Term,
        below: u64,
    ) -> Result<Option<(u64, crate::search::index::Leaves)>, StoreError> {
        self.index.block_below(term, below)
    }

    /// The leaf indexes under `term` below `below`, newest first.
    pub fn scan(&self, term: &Term, below: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.index.scan(term, below, limit)
    }

    fn open_event_locked(
        &self,
        st: &mut Keys,
        index: u64,
    ) -> Result<Option<(StoredEvent, AuditEvent)>, StoreError> {
        let Some(stored) = self.read_event(st, index)? else {
            return Ok(None);
        };
        let parsed: AuditEvent = serde_json::from_slice(&stored.event).map_err(|e| {
            StoreError::Corrupt(format!("stored event {index} is not an event: {e}"))
        })?;
        Ok(Some((stored, parsed)))
    }

    fn read_event(&self, st: &mut Keys, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? else {
            // Written before encryption at rest existed, or erased.
            return self.inner.event(index);
        };
        let (key_id, sealed) = decode_sealed(&record)?;
        match self.key_of(st, index, key_id)? {
            Some(key) => open_sealed(&key, index, sealed).map(Some),
            None => Ok(None),
        }
    }

    /// The key that opens event `index`, sealed under `key_id`; `None`
    /// once erased.
    fn key_of(
        &self,
        st: &mut Keys,
        index: u64,
        key_id: &[u8],
    ) -> Result<Option<DataKey>, StoreError> {
        match keys::parse_key_id(key_id) {
            Some(slot) => st.event_key(index, slot),
            None => st.legacy_key(self.inner.as_ref(), key_id),
        }
    }

    /// The stored event body of leaf `index`, decrypted; `None` once erased.
    pub fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        // The lock is held only to find the key, so reads do not queue
        // behind each other's decryption.
        let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? else {
            return self.inner.event(index);
        };
        let (key_id, sealed) = decode_sealed(&record)?;
        let key = {
            let mut st = self.lock()?;
            self.key_of(&mut st, index, key_id)?
        };
        match key {
            Some(key) => open_sealed(&key, index, sealed).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `record`, a copy of event `index`'s sealed body as once
    /// stored (kept anywhere), opens with a key that exists now.
    pub fn can_open_sealed(&self, index: u64, record: &[u8]) -> Result<bool, StoreError> {
        let (key_id, sealed) = decode_sealed(record)?;
        let key = {
            let mut st = self.lock()?;
            self.key_of(&mut st, index, key_id)?
        };
        Ok(key.is_some_and(|k| open_sealed(&k, index, sealed).is_ok()))
    }

    /// Makes the `nth` sync of the key store from now fail after its data
    /// was written, as an fsync error would (fault-injection tests).
    #[doc(hidden)]
    pub fn fail_key_store_sync(&self, nth: u32) -> Result<(), StoreError> {
        self.lock()?.fail_key_store_sync(nth);
        Ok(())
    }

    /// Drops event `index` from the in-memory search index, as a lost
    /// index entry would (tests of what reads and checks make of it).
    #[cfg(test)]
    pub(crate) fn forget_in_index(&self, index: u64) -> Result<(), StoreError> {
        let Some((stored, ev)) = self.open_event(index)? else {
            return Ok(());
        };
        let postings: Vec<(Term, u64)> = self
            .terms_of(&stored.app, &ev)
            .into_iter()
            .map(|t| (t, index))
            .collect();
        let (removal, _) = self.index.plan_removal(&postings)?;
        removal.apply(&self.index)
    }

    /// The store the vault reads and writes its records in: the log's
    /// store, for reads of what is not sealed (leaves, tiles, records).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

#[cfg(test)]
mod tests;
