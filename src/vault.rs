//! The vault: event bodies and salts encrypted at rest, their secondary
//! indexes, and erasure by destroying keys (crypto-shredding).
//!
//! [`Vault`] is a [`Store`] that wraps the real backend. The sequencer hands
//! it batches with plaintext events, exactly as it would any store; the vault
//! seals each event (salt and canonical body) under a data key, adds the
//! sealed bodies, any new wrapped data keys and the event's index entries to
//! the same batch, and hands that to the backend: one atomic write, so an
//! index entry never points to a missing event and an event is never
//! stored without the key that opens it. Reads decrypt.
//!
//! Data keys: one per data subject (`s/<pseudonym>`), so erasing a subject
//! is deleting one key; events without a subject share one key per app and
//! receive day (`d/<app>/<YYYY-MM-DD>`). Data keys are stored wrapped by the
//! wrap key derived from the master key, which never enters the data
//! directory. The search index ([`index`]) maps terms to leaves, where a
//! term is an HMAC-SHA256 of the field value (see [`crate::crypto`]): the
//! store never holds a subject, actor or any other event field in
//! plaintext.
//!
//! Invariant: once [`Vault::erase`] returned, no stored key opens the
//! erased events' sealed bodies, the bodies and their index entries are
//! deleted, and a tombstone says when and why. Leaves, tiles, bundles and
//! checkpoints are never touched.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, DataKey, Field, IndexKey, MasterKey, Term};
use crate::event::{AuditEvent, LeafRecord};
use crate::merkle::Hash;
use crate::store::{
    BatchWrite, Record, RecordBatch, RecordSpace, Store, StoreError, StoredCheckpoint, StoredEvent,
};
use crate::tiles;

mod index;
mod keyring;

pub use index::DEFAULT_FLUSH_EVENTS as DEFAULT_INDEX_FLUSH_EVENTS;
use index::SearchIndex;

use keyring::Keyring;
pub use keyring::{KEYRING_FILE, KeyringHome, rotation_pending as keyring_rotation_pending};

/// Unwrapped data keys kept in memory at most (about 100 bytes each).
const MAX_CACHED_KEYS: usize = 100_000;
/// Meta record holding the master key's check value.
const KEY_CHECK_RECORD: &[u8] = b"master_key_check";
/// Environment variable holding the master key itself (hex or base64).
pub const MASTER_KEY_ENV: &str = "VERITRAIL_MASTER_KEY";

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
    /// Data keys destroyed (no live event was left under them).
    pub keys_destroyed: usize,
    /// Data keys replaced (their live events were re-sealed under a new key).
    pub keys_replaced: usize,
}

/// The encrypting, indexing store.
pub struct Vault {
    inner: Arc<dyn Store>,
    index_key: IndexKey,
    /// The keyring and the unwrapped data keys. The mutex also serialises
    /// commits with erasures, so a key is never re-created while it is
    /// being destroyed, and with key rotations.
    keys: Mutex<KeyState>,
    /// The search index. Lock order: `keys` before the index's own locks.
    index: Arc<SearchIndex>,
}

struct KeyState {
    keyring: Keyring,
    cache: HashMap<Vec<u8>, DataKey>,
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

/// `f` over `items`, in order, on up to four threads for large inputs.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    /// Below this many items a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 128;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let others: Vec<_> = items
            .chunks(chunk)
            .skip(1)
            .map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = items[..chunk].iter().map(f).collect();
        for handle in others {
            match handle.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// Unix ms of the first instant of the month after `month` (`YYYY-MM`).
fn next_month_ms(month: &str) -> Option<i64> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let (y, m) = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
    crate::event::parse_rfc3339_ms(&format!("{y:04}-{m:02}-01T00:00:00Z")).ok()
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
        let watermark = match inner.index_watermark() {
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
                    ..RecordBatch::default()
                })?;
                0
            }
        };
        let vault = Vault::assemble(inner, master, home, from, flush_events)?;
        vault.rebuild_index()?;
        vault.index.start_flusher()?;
        Ok(vault)
    }

    /// A vault for offline checks: it writes nothing, and its search index
    /// answers from the stored blocks alone, that is for the leaves below
    /// [`Vault::index_watermark`].
    pub fn open_for_check(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
    ) -> Result<Vault, VaultError> {
        let from = match inner.index_watermark() {
            Ok(w) => w.unwrap_or(0),
            // Reported by the check itself; nothing is looked up in it.
            Err(StoreError::Corrupt(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        Vault::assemble(inner, master, home, from, usize::MAX)
    }

    fn assemble(
        inner: Arc<dyn Store>,
        master: &MasterKey,
        home: KeyringHome,
        from: u64,
        flush_events: usize,
    ) -> Result<Vault, VaultError> {
        let keyring = Keyring::open(home, master.wrap_key(), inner.as_ref())?;
        Ok(Vault {
            index: Arc::new(SearchIndex::new(inner.clone(), from, flush_events)),
            inner,
            index_key: master.index_key(),
            keys: Mutex::new(KeyState {
                keyring,
                cache: HashMap::new(),
            }),
        })
    }

    /// Reads the events above the index's watermark back into the index.
    fn rebuild_index(&self) -> Result<(), VaultError> {
        let from = self.index.watermark()?;
        let size = self.inner.tree_size()?;
        if from > size {
            return Err(StoreError::Corrupt(format!(
                "the search index covers {from} leaves, the tree has {size}; run fsck"
            ))
            .into());
        }
        if size - from > DEFAULT_INDEX_FLUSH_EVENTS as u64 {
            tracing::info!(from, size, "indexing events for search");
        }
        let mut st = self.lock()?;
        let mut postings = Vec::new();
        let mut events = 0;
        for index in from..size {
            match self.open_event_locked(&mut st, index) {
                Ok(Some((stored, ev))) => {
                    postings.extend(
                        self.terms_of(&stored.app, &ev)
                            .into_iter()
                            .map(|t| (t, index)),
                    );
                }
                // Erased.
                Ok(None) => {}
                Err(StoreError::Backend(e)) => return Err(StoreError::Backend(e).into()),
                // A damaged event is not searchable; fsck names it.
                Err(e) => tracing::warn!(index, error = %e, "event left out of the search index"),
            }
            events += 1;
            if events == 4096 || index + 1 == size {
                self.index
                    .append(index + 1, events, std::mem::take(&mut postings))?;
                events = 0;
            }
        }
        Ok(())
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

    fn lock(&self) -> Result<MutexGuard<'_, KeyState>, StoreError> {
        self.keys
            .lock()
            .map_err(|_| StoreError::Backend("vault key cache lock poisoned".into()))
    }

    /// The index term of `value` in `field`.
    pub fn term(&self, field: Field, value: &str) -> Term {
        self.index_key.term(field, value)
    }

    /// A stable pseudonym of a data subject, safe to store and show.
    pub fn subject_pseudonym(&self, subject: &str) -> String {
        self.index_key.subject_pseudonym(subject)
    }

    /// Every index term of an event of `app`.
    pub fn terms_of(&self, app: &str, ev: &AuditEvent) -> Vec<Term> {
        let mut terms = Vec::with_capacity(5);
        terms.extend([
            self.term(Field::App, app),
            self.term(Field::Actor, &ev.actor.id),
            self.term(Field::Action, &ev.action),
            self.term(Field::Resource, &ev.resource.id),
        ]);
        terms.extend(ev.subject.as_deref().map(|s| self.term(Field::Subject, s)));
        terms
    }

    /// The data key of an event (given its subject's term): per subject and
    /// receive month, or (no subject) per app and receive day. Small key
    /// scopes keep the cost of replacing a key (when some of its events
    /// are erased) bounded.
    /// `received` is the receive time in RFC 3339.
    fn key_id_for(&self, app: &str, subject: Option<&Term>, received: &str) -> Vec<u8> {
        let mut id = Vec::with_capacity(80);
        match subject {
            Some(t) => {
                // The pseudonym is the hex of the subject's term.
                let mut pseudonym = [0u8; 64];
                if hex::encode_to_slice(&t.0[1..], &mut pseudonym).is_err() {
                    unreachable!("32 bytes are 64 hex digits");
                }
                id.extend_from_slice(b"s/");
                id.extend_from_slice(&pseudonym);
                id.push(b'/');
                id.extend_from_slice(&received.as_bytes()[..7]);
            }
            None => {
                id.extend_from_slice(b"d/");
                id.extend_from_slice(app.as_bytes());
                id.push(b'/');
                id.extend_from_slice(&received.as_bytes()[..10]);
            }
        }
        id
    }

    /// The data key `id`, from the cache or the store; `None` once destroyed.
    fn load_key(&self, st: &mut KeyState, id: &[u8]) -> Result<Option<DataKey>, StoreError> {
        if let Some(k) = st.cache.get(id) {
            return Ok(Some(k.clone()));
        }
        let Some(wrapped) = self.inner.record(RecordSpace::DataKey, id)? else {
            return Ok(None);
        };
        let key = st.keyring.unwrap(id, &wrapped).map_err(|e| {
            StoreError::Corrupt(format!("data key {}: {e}", String::from_utf8_lossy(id)))
        })?;
        if st.cache.len() >= MAX_CACHED_KEYS {
            // Bounded memory: start over rather than track recency.
            st.cache.clear();
        }
        st.cache.insert(id.to_vec(), key.clone());
        Ok(Some(key))
    }

    /// Commits `batch`, which destroys the data keys `destroyed`, together
    /// with a key rotation, so that no stale copy of those keys anywhere in
    /// the data directory opens any more (see `keyring`).
    fn commit_destroying(
        &self,
        st: &mut KeyState,
        mut batch: RecordBatch,
        destroyed: &BTreeSet<Vec<u8>>,
        replaced: HashMap<Vec<u8>, DataKey>,
    ) -> Result<(), StoreError> {
        for id in destroyed.iter().chain(replaced.keys()) {
            st.cache.remove(id);
        }
        if destroyed.is_empty() && replaced.is_empty() {
            return self.inner.commit_records(&batch);
        }
        let next =
            st.keyring
                .prepare_rotation(self.inner.as_ref(), &mut batch, destroyed, &replaced)?;
        if let Err(e) = self.inner.commit_records(&batch) {
            st.keyring.abort();
            return Err(e);
        }
        st.keyring.finish(next)?;
        st.cache.extend(replaced);
        Ok(())
    }

    /// Whether `stored` (a data key record's value, e.g. a copy found on
    /// disk) opens with the current keyring.
    pub fn can_open_data_key(&self, key_id: &[u8], stored: &[u8]) -> Result<(), VaultError> {
        let st = self.lock()?;
        st.keyring.unwrap(key_id, stored).map(|_| ())
    }

    /// The tombstone of an erased event.
    pub fn tombstone(&self, index: u64) -> Result<Option<Tombstone>, StoreError> {
        self.inner
            .record(RecordSpace::Erased, &be(index))?
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

    /// The leaf indexes under `term` below `below`, newest first.
    pub fn scan(&self, term: &Term, below: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.index.scan(term, below, limit)
    }

    /// Destroys the bodies and salts of `indexes` and of every event of
    /// `subject`, and their index entries; writes a tombstone for each.
    /// Events already erased are skipped. Then every data key that sealed
    /// an erased event is either destroyed (no live event is left under
    /// it) or replaced (the live events under it are re-sealed with a new
    /// key), and the keyring rotates, so that no copy of an erased body
    /// left anywhere in the data directory opens any more. One atomic,
    /// durable change.
    pub fn erase(
        &self,
        subject: Option<&str>,
        indexes: &[u64],
        tombstone: &Tombstone,
    ) -> Result<ErasureOutcome, StoreError> {
        let mut st = self.lock()?;
        let mut batch = RecordBatch::default();
        let mut all: BTreeSet<u64> = indexes.iter().copied().collect();
        if let Some(s) = subject {
            let term = self.term(Field::Subject, s);
            all.extend(self.scan(&term, u64::MAX, usize::MAX)?);
        }
        let value = serde_json::to_vec(tombstone)
            .map_err(|e| StoreError::Corrupt(format!("tombstone: {e}")))?;
        let mut outcome = ErasureOutcome::default();
        let mut affected: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut postings = Vec::new();
        for &index in &all {
            if self.tombstone(index)?.is_some() {
                continue;
            }
            if let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? {
                affected.insert(decode_sealed(&record)?.0.to_vec());
            }
            if let Some((stored, ev)) = self.open_event_locked(&mut st, index)? {
                postings.extend(
                    self.terms_of(&stored.app, &ev)
                        .into_iter()
                        .map(|t| (t, index)),
                );
            }
            batch.delete.push((RecordSpace::Sealed, be(index)));
            batch.delete_events.push(index);
            batch
                .put
                .push((RecordSpace::Erased, be(index), value.clone()));
            outcome.erased.push(index);
        }
        let erased: BTreeSet<u64> = outcome.erased.iter().copied().collect();
        let mut destroyed = BTreeSet::new();
        let mut replaced = HashMap::new();
        for key_id in affected {
            let Some(old) = self.load_key(&mut st, &key_id)? else {
                continue;
            };
            let live = self.live_events_under(&key_id, &erased)?;
            if live.is_empty() {
                batch.delete.push((RecordSpace::DataKey, key_id.clone()));
                destroyed.insert(key_id);
                outcome.keys_destroyed += 1;
                continue;
            }
            let new = DataKey::generate().map_err(|e| StoreError::Backend(e.to_string()))?;
            for (index, sealed) in live {
                let plain = open_sealed(&old, index, &sealed)?;
                let body = new
                    .seal(&event_aad(index), &plain.encode())
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                batch.put.push((
                    RecordSpace::Sealed,
                    be(index),
                    encode_sealed(&key_id, &body),
                ));
            }
            outcome.keys_replaced += 1;
            replaced.insert(key_id, new);
        }
        let (removal, blocks) = self.index.plan_removal(&postings)?;
        batch.index_blocks = blocks;
        self.commit_destroying(&mut st, batch, &destroyed, replaced)?;
        // Durable now; the stored blocks no longer list the erased events,
        // and neither does the index rebuilt on the next start.
        if let Err(e) = removal.apply(&self.index) {
            tracing::error!(error = %e, "erased events stay in the in-memory search index until restart; their bodies are gone");
        }
        Ok(outcome)
    }

    /// The events still sealed under `key_id` (not in `erasing`), with
    /// their sealed bodies. A key seals one subject's events of one month,
    /// or one app's subject-less events of one day, so this reads at most
    /// that many.
    fn live_events_under(
        &self,
        key_id: &[u8],
        erasing: &BTreeSet<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let text = String::from_utf8_lossy(key_id).into_owned();
        let parts: Vec<&str> = text.split('/').collect();
        let (term, period_start, period_end) = match parts.as_slice() {
            ["s", pseudonym, month] => {
                let mut t = [0u8; 33];
                t[0] = Field::Subject.tag();
                let raw = hex::decode(pseudonym)
                    .map_err(|_| StoreError::Corrupt(format!("data key id {text}")))?;
                if raw.len() != 32 {
                    return Err(StoreError::Corrupt(format!("data key id {text}")));
                }
                t[1..].copy_from_slice(&raw);
                let start = crate::event::parse_rfc3339_ms(&format!("{month}-01T00:00:00Z"))
                    .map_err(|e| StoreError::Corrupt(format!("data key id {text}: {e}")))?;
                let end = next_month_ms(month)
                    .ok_or_else(|| StoreError::Corrupt(format!("data key id {text}")))?;
                (Term(t), start, end)
            }
            ["d", app, day] => {
                let start = crate::event::parse_rfc3339_ms(&format!("{day}T00:00:00Z"))
                    .map_err(|e| StoreError::Corrupt(format!("data key id {text}: {e}")))?;
                (self.term(Field::App, app), start, start + 86_400_000)
            }
            _ => return Err(StoreError::Corrupt(format!("unknown data key id {text}"))),
        };
        let size = self.inner.tree_size()?;
        let inner = self.inner.as_ref();
        let lo = crate::search::first_received_at_or_after(inner, size, period_start)?;
        let hi = crate::search::first_received_at_or_after(inner, size, period_end)?;
        let mut live = Vec::new();
        for index in self.scan(&term, hi, usize::MAX)? {
            if index < lo {
                break;
            }
            if erasing.contains(&index) {
                continue;
            }
            if let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))?
                && decode_sealed(&record)?.0 == key_id
            {
                let sealed = decode_sealed(&record)?.1.to_vec();
                live.push((index, sealed));
            }
        }
        Ok(live)
    }

    fn open_event_locked(
        &self,
        st: &mut KeyState,
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

    fn read_event(&self, st: &mut KeyState, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? else {
            // Written before encryption at rest existed, or erased.
            return self.inner.event(index);
        };
        let (key_id, sealed) = decode_sealed(&record)?;
        let Some(key) = self.load_key(st, key_id)? else {
            return Ok(None);
        };
        open_sealed(&key, index, sealed).map(Some)
    }

    /// The receive times of the batch's leaves, from the bundles it writes.
    fn received_times(batch: &BatchWrite) -> HashMap<u64, i64> {
        let mut out = HashMap::new();
        for (bundle_index, data) in &batch.bundles {
            if let Ok(entries) = tiles::decode_bundle(data) {
                for (i, e) in entries.iter().enumerate() {
                    if let Ok(leaf) = LeafRecord::parse(e) {
                        out.insert(bundle_index * 256 + i as u64, leaf.received_ms);
                    }
                }
            }
        }
        out
    }
}

impl Store for Vault {
    fn commit(&self, batch: &BatchWrite) -> Result<(), StoreError> {
        if batch.events.is_empty() {
            return self.inner.commit(batch);
        }
        let received = match batch.received_ms {
            Some(_) => HashMap::new(),
            None => Vault::received_times(batch),
        };
        // One receive time for the whole batch, as a rule: format it once.
        let batch_received = batch.received_ms.map(crate::event::format_rfc3339_ms);
        let prepared: Vec<(Vec<u8>, Vec<Term>)> = batch
            .events
            .iter()
            .enumerate()
            .map(|(i, (index, ev))| {
                // Computed by the submitter (see `PreparedEvent::terms`), or
                // derived here; an event that does not parse has none.
                let terms = match batch.event_terms.get(i).and_then(Option::as_ref) {
                    Some(terms) => terms.clone(),
                    None => serde_json::from_slice::<AuditEvent>(&ev.event)
                        .map(|p| self.terms_of(&ev.app, &p))
                        .unwrap_or_default(),
                };
                let subject = terms.iter().find(|t| t.0[0] == Field::Subject.tag());
                let key_id = match &batch_received {
                    Some(r) => self.key_id_for(&ev.app, subject, r),
                    None => {
                        let ms = received
                            .get(index)
                            .copied()
                            .unwrap_or_else(crate::sequencer::now_ms);
                        let r = crate::event::format_rfc3339_ms(ms);
                        self.key_id_for(&ev.app, subject, &r)
                    }
                };
                (key_id, terms)
            })
            .collect();
        let mut st = self.lock()?;
        let mut sealed = BatchWrite {
            tree_size: batch.tree_size,
            tiles: batch.tiles.clone(),
            bundles: batch.bundles.clone(),
            events: Vec::new(),
            event_terms: Vec::new(),
            received_ms: batch.received_ms,
            dedupe: batch.dedupe.clone(),
            leaf_index: batch.leaf_index.clone(),
            checkpoint: batch.checkpoint.clone(),
            records: batch.records.clone(),
            index_blocks: batch.index_blocks.clone(),
            index_watermark: batch.index_watermark,
        };
        let mut new_keys: HashMap<Vec<u8>, DataKey> = HashMap::new();
        let mut keys = Vec::with_capacity(batch.events.len());
        for (key_id, _) in &prepared {
            let key = match new_keys.get(key_id) {
                Some(k) => k.clone(),
                None => match self.load_key(&mut st, key_id)? {
                    Some(k) => k,
                    None => {
                        let k =
                            DataKey::generate().map_err(|e| StoreError::Backend(e.to_string()))?;
                        let wrapped = st.keyring.wrap(key_id, &k)?;
                        sealed
                            .records
                            .push((RecordSpace::DataKey, key_id.clone(), wrapped));
                        new_keys.insert(key_id.clone(), k.clone());
                        k
                    }
                },
            };
            keys.push(key);
        }
        let nonces = crate::crypto::random_nonces(batch.events.len())
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let work: Vec<_> = batch
            .events
            .iter()
            .zip(&prepared)
            .zip(keys.iter().zip(nonces))
            .collect();
        let bodies = par_map(&work, |(((index, ev), (key_id, _)), (key, nonce))| {
            key.seal_with_nonce(*nonce, &event_aad(*index), &ev.encode())
                .map(|body| {
                    (
                        RecordSpace::Sealed,
                        be(*index),
                        encode_sealed(key_id, &body),
                    )
                })
                .map_err(|e| StoreError::Backend(e.to_string()))
        });
        for body in bodies {
            sealed.records.push(body?);
        }
        let postings: Vec<(Term, u64)> = batch
            .events
            .iter()
            .zip(prepared)
            .flat_map(|((index, _), (_, terms))| terms.into_iter().map(move |t| (t, *index)))
            .collect();
        self.inner.commit(&sealed)?;
        // Only keys that are durable enter the cache.
        st.cache.extend(new_keys);
        // The postings are searchable before the events are acknowledged;
        // the index writes them out later (see `index`). The batch is
        // durable now, so a failure here must not fail it: the index is
        // derived from the events and is rebuilt from them on restart.
        if let Err(e) = self
            .index
            .append(batch.tree_size, batch.events.len(), postings)
        {
            tracing::error!(error = %e, "the search index could not take a committed batch; restart the server to rebuild it");
        }
        Ok(())
    }

    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(checkpoint)
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        self.inner.tree_size()
    }

    // Scans read the stored objects as they are: sealed bodies stay sealed
    // (backups carry ciphertext; fsck checks what is not encrypted).
    fn scan_events(
        &self,
        cursor: &crate::store::ScanCursor,
        limit: usize,
    ) -> Result<crate::store::ScanPage<(u64, StoredEvent)>, StoreError> {
        self.inner.scan_events(cursor, limit)
    }

    fn scan_dedupe(
        &self,
        cursor: &crate::store::ScanCursor,
        limit: usize,
    ) -> Result<crate::store::ScanPage<(String, String, u64)>, StoreError> {
        self.inner.scan_dedupe(cursor, limit)
    }

    fn scan_leaf_index(
        &self,
        cursor: &crate::store::ScanCursor,
        limit: usize,
    ) -> Result<crate::store::ScanPage<(crate::merkle::Hash, u64)>, StoreError> {
        self.inner.scan_leaf_index(cursor, limit)
    }

    fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.checkpoint()
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.tile(level, index)
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.bundle(index)
    }

    fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        // The lock is held only to find the key, so reads do not queue
        // behind each other's decryption.
        let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? else {
            return self.inner.event(index);
        };
        let (key_id, sealed) = decode_sealed(&record)?;
        let key = {
            let mut st = self.lock()?;
            self.load_key(&mut st, key_id)?
        };
        match key {
            Some(key) => open_sealed(&key, index, sealed).map(Some),
            None => Ok(None),
        }
    }

    fn dedupe(&self, app: &str, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.dedupe(app, id)
    }

    fn leaf_index(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.inner.leaf_index(leaf_hash)
    }

    fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put_record(space, key, value)
    }

    fn record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.record(space, key)
    }

    fn records(&self, space: RecordSpace) -> Result<Vec<Record>, StoreError> {
        self.inner.records(space)
    }

    fn commit_records(&self, batch: &RecordBatch) -> Result<(), StoreError> {
        self.inner.commit_records(batch)
    }

    fn index_blocks(
        &self,
        bucket: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.index_blocks(bucket, below, limit)
    }

    fn index_watermark(&self) -> Result<Option<u64>, StoreError> {
        self.inner.index_watermark()
    }

    fn clear_index(&self) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "the search index of an open vault is cleared only by reopening".into(),
        ))
    }
}

// ---------------------------------------------------------------------------
// The master key: where it comes from, and the check that it is this log's.

/// Where the master key came from, for the startup message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeyOrigin {
    /// The environment variable.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// A key file created now.
    Created(PathBuf),
}

/// The default master key file of a data directory: `<data>.master.key`,
/// beside the directory, never inside it.
pub fn default_master_key_path(data: &Path) -> PathBuf {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "veritrail-data".into());
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    parent.join(format!("{name}.master.key"))
}

fn read_key_file(path: &Path) -> Result<MasterKey, VaultError> {
    let text = fs::read_to_string(path).map_err(|e| {
        VaultError::MasterKey(format!(
            "couldn't read the master key {}: {e}",
            path.display()
        ))
    })?;
    MasterKey::parse(&text)
        .map_err(|e| VaultError::MasterKey(format!("master key file {}: {e}", path.display())))
}

fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), VaultError> {
    let fail = |what: &str, e: std::io::Error| {
        VaultError::MasterKey(format!(
            "couldn't {what} the master key file {}: {e}",
            path.display()
        ))
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail("create", e))?;
    f.write_all(format!("{}\n", key.to_hex()).as_bytes())
        .map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("sync", e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Checks, without writing, that `key` is the master key of the log in
/// `store` (its key-check value); a log that stored none accepts any key.
pub fn check_master_key(store: &dyn Store, key: &MasterKey) -> Result<(), VaultError> {
    match store.record(RecordSpace::Meta, KEY_CHECK_RECORD)? {
        Some(check) if check.as_slice() != key.check_value().as_slice() => {
            Err(VaultError::MasterKey(
                "the master key given is not this log's (its key-check value differs)".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// Reads a master key: `env_value` (the `VERITRAIL_MASTER_KEY` text), else
/// the file `file`, else the default file beside `data`. Never creates one.
pub fn read_master_key(
    data: &Path,
    env_value: Option<&str>,
    file: Option<&Path>,
) -> Result<MasterKey, VaultError> {
    if let Some(text) = env_value {
        return MasterKey::parse(text)
            .map_err(|e| VaultError::MasterKey(format!("{MASTER_KEY_ENV}: {e}")));
    }
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_master_key_path(data));
    read_key_file(&path)
}

/// Finds this log's master key: `env_value` (the `VERITRAIL_MASTER_KEY`
/// text), else `file`, else the default file beside `data`. A log that has
/// never stored a key-check value gets one now, and, when no key was given
/// and the default file does not exist, a new key in the default file. A log
/// with a key-check value refuses any other key and never creates one.
pub fn open_master_key(
    data: &Path,
    store: &dyn Store,
    env_value: Option<&str>,
    file: Option<&Path>,
) -> Result<(MasterKey, MasterKeyOrigin), VaultError> {
    let stored_check = store.record(RecordSpace::Meta, KEY_CHECK_RECORD)?;
    let default_path = default_master_key_path(data);
    let path = file.map(Path::to_path_buf).unwrap_or(default_path);
    let (key, origin) = if env_value.is_some() || path.exists() {
        let key = read_master_key(data, env_value, Some(&path))?;
        let origin = match env_value {
            Some(_) => MasterKeyOrigin::Env,
            None => MasterKeyOrigin::File(path),
        };
        (key, origin)
    } else if stored_check.is_none() {
        let key = MasterKey::generate().map_err(|e| VaultError::Local(e.to_string()))?;
        write_key_file(&path, &key)?;
        (key, MasterKeyOrigin::Created(path))
    } else {
        return Err(VaultError::MasterKey(format!(
            "refusing to start: this log's events are encrypted, and its master key was not found at {}; \
             give it with --master-key-file FILE or {MASTER_KEY_ENV} (a new key would not open them)",
            path.display()
        )));
    };
    match stored_check {
        Some(check) if check.as_slice() != key.check_value().as_slice() => {
            return Err(VaultError::MasterKey(
                "refusing to start: the master key given is not this log's (its key-check value differs); \
                 give the key the log was created with"
                    .into(),
            ));
        }
        Some(_) => {}
        None => store.put_record(RecordSpace::Meta, KEY_CHECK_RECORD, &key.check_value())?,
    }
    Ok((key, origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn event_json(subject: Option<&str>, actor: &str) -> Vec<u8> {
        let mut v = serde_json::json!({
            "actor": {"id": actor, "type": "user"},
            "action": "record.read",
            "resource": {"type": "doc", "id": "d-1"},
            "purpose": "care",
            "outcome": "success",
            "occurred_at": "2026-11-25T10:00:00.000Z",
            "context": {"note": "MARKER-context"},
        });
        if let Some(s) = subject {
            v["subject"] = serde_json::json!(s);
        }
        let ev = crate::event::parse_event(&v, &crate::event::EventLimits::default()).unwrap();
        ev.canonical_bytes()
    }

    /// A first batch of the log: events at indexes 0.., with their leaves.
    fn batch(events: &[(u64, Option<&str>)]) -> BatchWrite {
        let events: Vec<(u64, StoredEvent)> = events
            .iter()
            .map(|(i, s)| {
                (
                    *i,
                    StoredEvent {
                        app: "billing".into(),
                        salt: [*i as u8; 32],
                        event: event_json(*s, "MARKER-actor"),
                    },
                )
            })
            .collect();
        let leaves: Vec<Vec<u8>> = events
            .iter()
            .map(|(_, e)| {
                LeafRecord {
                    app: e.app.clone(),
                    received_ms: 1_795_000_000_000,
                    commitment: crate::event::commitment(&e.salt, &e.event),
                }
                .to_bytes()
            })
            .collect();
        BatchWrite {
            tree_size: events.last().map_or(0, |(i, _)| i + 1),
            bundles: vec![(0, tiles::encode_bundle(&leaves).unwrap())],
            events,
            ..BatchWrite::default()
        }
    }

    fn dump(store: &MemoryStore) -> Vec<u8> {
        let mut all = Vec::new();
        for space in [
            RecordSpace::Sealed,
            RecordSpace::DataKey,
            RecordSpace::Erased,
        ] {
            for (k, v) in store.records(space).unwrap() {
                all.extend(k);
                all.extend(v);
            }
        }
        all
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn events_are_stored_sealed_and_read_back_in_plaintext() {
        let inner = Arc::new(MemoryStore::new());
        let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
        let b = batch(&[(0, Some("MARKER-subject")), (1, None)]);
        vault.commit(&b).unwrap();
        assert_eq!(inner.event(0).unwrap(), None, "no plaintext event stored");
        let raw = dump(&inner);
        for marker in ["MARKER-subject", "MARKER-actor", "MARKER-context"] {
            assert!(!contains(&raw, marker.as_bytes()), "{marker} in plaintext");
        }
        assert_eq!(vault.event(0).unwrap(), Some(b.events[0].1.clone()));
        assert_eq!(vault.event(1).unwrap(), Some(b.events[1].1.clone()));
        // A fresh vault (new process) unwraps the stored keys.
        let again = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
        assert_eq!(again.event(0).unwrap(), Some(b.events[0].1.clone()));
        assert!(Vault::new(inner, &MasterKey::from_bytes([2; 32])).is_err());
    }

    #[test]
    fn index_terms_find_events_without_plaintext() {
        let inner = Arc::new(MemoryStore::new());
        let vault = Vault::new(inner, &MasterKey::from_bytes([1; 32])).unwrap();
        vault
            .commit(&batch(&[
                (0, Some("alice")),
                (1, Some("bob")),
                (2, Some("alice")),
            ]))
            .unwrap();
        let alice = vault.term(Field::Subject, "alice");
        assert_eq!(vault.scan(&alice, u64::MAX, 10).unwrap(), vec![2, 0]);
        let actor = vault.term(Field::Actor, "MARKER-actor");
        assert_eq!(vault.scan(&actor, u64::MAX, 10).unwrap(), vec![2, 1, 0]);
    }

    #[test]
    fn erasing_a_subject_destroys_its_key_bodies_and_index_entries() {
        let inner = Arc::new(MemoryStore::new());
        let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
        vault
            .commit(&batch(&[(0, Some("alice")), (1, Some("bob")), (2, None)]))
            .unwrap();
        let sealed_alice = inner.record(RecordSpace::Sealed, &be(0)).unwrap().unwrap();
        let tomb = Tombstone {
            erased_at: "2026-11-25T10:00:00.000Z".into(),
            reason: "GDPR art. 17 request".into(),
            cause: "erasure".into(),
            by: "ops".into(),
        };
        let out = vault.erase(Some("alice"), &[], &tomb).unwrap();
        assert_eq!(out.erased, vec![0]);
        assert_eq!(out.keys_destroyed, 1);
        assert_eq!(vault.event(0).unwrap(), None);
        assert_eq!(vault.tombstone(0).unwrap(), Some(tomb.clone()));
        assert!(
            vault
                .scan(&vault.term(Field::Subject, "alice"), u64::MAX, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            vault
                .scan(&vault.term(Field::Actor, "MARKER-actor"), u64::MAX, 10)
                .unwrap(),
            vec![2, 1]
        );
        // Even a copy of the sealed body kept elsewhere no longer opens:
        // its key is gone from the store.
        let (key_id, _) = decode_sealed(&sealed_alice).unwrap();
        assert_eq!(inner.record(RecordSpace::DataKey, key_id).unwrap(), None);
        assert!(vault.event(1).unwrap().is_some());
        // Erasing by index leaves the shared day key but destroys the body.
        let out = vault.erase(None, &[2, 0], &tomb).unwrap();
        assert_eq!(out.erased, vec![2], "already erased events are skipped");
        assert_eq!(vault.event(2).unwrap(), None);
        assert!(vault.event(1).unwrap().is_some());
    }

    #[test]
    fn the_search_index_survives_a_crash_and_erasure_reaches_its_stored_blocks() {
        let inner = Arc::new(MemoryStore::new());
        let master = MasterKey::from_bytes([1; 32]);
        let open =
            || Vault::open_with_index_flush(inner.clone(), &master, KeyringHome::Store, 3).unwrap();
        let subjects = [
            "alice", "bob", "alice", "carol", "alice", "bob", "alice", "carol", "alice",
        ];
        // One batch per event, each growing the bundle by one leaf.
        let all: Vec<(u64, Option<&str>)> = subjects
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64, Some(*s)))
            .collect();
        let whole = batch(&all);
        let leaves = tiles::decode_bundle(&whole.bundles[0].1).unwrap();
        let one = |i: usize| BatchWrite {
            tree_size: i as u64 + 1,
            bundles: vec![(0, tiles::encode_bundle(&leaves[..=i]).unwrap())],
            events: vec![whole.events[i].clone()],
            ..BatchWrite::default()
        };
        let vault = open();
        for i in 0..7 {
            vault.commit(&one(i)).unwrap();
        }
        vault.flush_index().unwrap();
        assert_eq!(vault.index_watermark().unwrap(), 7);
        for i in 7..9 {
            vault.commit(&one(i)).unwrap();
        }
        let scan = |v: &Vault, field, value| v.scan(&v.term(field, value), u64::MAX, 100).unwrap();
        assert_eq!(scan(&vault, Field::Subject, "alice"), vec![8, 6, 4, 2, 0]);
        // A crash: the two newest events were never written to the index.
        drop(vault);
        assert_eq!(inner.index_watermark().unwrap(), Some(7));
        let vault = open();
        assert_eq!(scan(&vault, Field::Subject, "alice"), vec![8, 6, 4, 2, 0]);
        assert_eq!(scan(&vault, Field::Subject, "carol"), vec![7, 3]);
        assert_eq!(
            vault
                .scan(&vault.term(Field::Subject, "alice"), 5, 2)
                .unwrap(),
            vec![4, 2]
        );
        let tomb = Tombstone {
            erased_at: "2026-11-25T10:00:00.000Z".into(),
            reason: "GDPR art. 17 request".into(),
            cause: "erasure".into(),
            by: "ops".into(),
        };
        let out = vault.erase(Some("alice"), &[3], &tomb).unwrap();
        assert_eq!(out.erased, vec![0, 2, 3, 4, 6, 8]);
        let check = |v: &Vault| {
            assert!(scan(v, Field::Subject, "alice").is_empty());
            assert_eq!(scan(v, Field::Subject, "carol"), vec![7]);
            assert_eq!(scan(v, Field::Subject, "bob"), vec![5, 1]);
            assert_eq!(scan(v, Field::Actor, "MARKER-actor"), vec![7, 5, 1]);
        };
        check(&vault);
        // Erased postings stay out of the stored blocks and of the index
        // re-derived on the next start.
        drop(vault);
        let vault = open();
        check(&vault);
        vault.flush_index().unwrap();
        drop(vault);
        check(&open());
    }

    #[test]
    fn a_store_without_a_search_index_is_indexed_on_open() {
        let inner = Arc::new(MemoryStore::new());
        let master = MasterKey::from_bytes([1; 32]);
        {
            let vault = Vault::new(inner.clone(), &master).unwrap();
            vault
                .commit(&batch(&[(0, Some("alice")), (1, Some("bob"))]))
                .unwrap();
            vault.flush_index().unwrap();
        }
        // As after a restore, which carries no index.
        inner.clear_index().unwrap();
        let vault = Vault::new(inner.clone(), &master).unwrap();
        let alice = vault.term(Field::Subject, "alice");
        assert_eq!(vault.scan(&alice, u64::MAX, 10).unwrap(), vec![0]);
        assert_eq!(inner.index_watermark().unwrap(), Some(0));
        vault.flush_index().unwrap();
        assert_eq!(inner.index_watermark().unwrap(), Some(2));
    }

    #[test]
    fn a_data_key_id_names_the_subject_pseudonym_and_the_receive_period() {
        let vault = Vault::new(
            Arc::new(MemoryStore::new()),
            &MasterKey::from_bytes([1; 32]),
        )
        .unwrap();
        for subject in [None, Some("al\"ice \u{e9}\\"), Some("plain")] {
            let mut v = serde_json::json!({
                "actor": {"id": "st\"aff", "type": "user"},
                "action": "record.read",
                "resource": {"type": "doc", "id": "d\\1/\u{2603}"},
                "purpose": "care",
                "outcome": "success",
                "occurred_at": "2026-11-25T10:00:00.000Z",
                "context": {"subject": "not this one", "nested": {"actor": {"id": "nor this"}}},
            });
            if let Some(s) = subject {
                v["subject"] = serde_json::json!(s);
            }
            let ev = crate::event::parse_event(&v, &crate::event::EventLimits::default()).unwrap();
            let canonical = ev.canonical_bytes();
            let parsed: AuditEvent = serde_json::from_slice(&canonical).unwrap();
            let terms = vault.terms_of("app", &parsed);
            let subject_term = terms.iter().find(|t| t.0[0] == Field::Subject.tag());
            let received = crate::event::format_rfc3339_ms(1_795_000_000_000);
            let key = vault.key_id_for("app", subject_term, &received);
            let expected = match subject {
                Some(s) => format!("s/{}/2026-11", vault.subject_pseudonym(s)),
                None => "d/app/2026-11-18".to_string(),
            };
            assert_eq!(String::from_utf8(key).unwrap(), expected);
        }
    }

    #[test]
    fn terms_and_receive_time_given_by_the_writer_seal_and_index_as_derived_ones() {
        let master = MasterKey::from_bytes([1; 32]);
        let plain = batch(&[(0, Some("alice")), (1, None), (2, Some("bob"))]);
        let derived = Arc::new(MemoryStore::new());
        Vault::new(derived.clone(), &master)
            .unwrap()
            .commit(&plain)
            .unwrap();
        let given = Arc::new(MemoryStore::new());
        let vault = Vault::new(given.clone(), &master).unwrap();
        let mut hinted = plain.clone();
        hinted.event_terms = plain
            .events
            .iter()
            .map(|(_, e)| {
                let ev: AuditEvent = serde_json::from_slice(&e.event).unwrap();
                Some(vault.terms_of(&e.app, &ev))
            })
            .collect();
        hinted.received_ms = Some(1_795_000_000_000);
        vault.commit(&hinted).unwrap();
        for i in 0..3 {
            assert_eq!(key_id_of(given.as_ref(), i), key_id_of(derived.as_ref(), i));
            assert_eq!(
                vault.event(i).unwrap(),
                Some(plain.events[i as usize].1.clone())
            );
        }
        let again = Vault::new(derived, &master).unwrap();
        for (field, value) in [
            (Field::Subject, "alice"),
            (Field::Subject, "bob"),
            (Field::Actor, "MARKER-actor"),
            (Field::App, "billing"),
        ] {
            let scan = |v: &Vault| v.scan(&v.term(field, value), u64::MAX, 10).unwrap();
            assert_eq!(scan(&vault), scan(&again), "{value}");
        }
    }

    fn key_id_of(store: &dyn Store, index: u64) -> Vec<u8> {
        let record = store
            .record(RecordSpace::Sealed, &be(index))
            .unwrap()
            .unwrap();
        decode_sealed(&record).unwrap().0.to_vec()
    }

    #[test]
    fn erasing_some_events_of_a_key_reseals_the_rest_under_a_new_key() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([6; 32])).unwrap();
        let b = batch(&[(0, Some("alice")), (1, Some("alice")), (2, None), (3, None)]);
        vault.commit(&b).unwrap();
        let stale_0 = inner.record(RecordSpace::Sealed, &be(0)).unwrap().unwrap();
        let stale_2 = inner.record(RecordSpace::Sealed, &be(2)).unwrap().unwrap();
        let tomb = Tombstone {
            erased_at: "t".into(),
            reason: "r".into(),
            cause: "erasure".into(),
            by: "b".into(),
        };
        let out = vault.erase(None, &[0, 2], &tomb).unwrap();
        assert_eq!(out.erased, vec![0, 2]);
        assert_eq!((out.keys_destroyed, out.keys_replaced), (0, 2));
        // The others read as before ...
        assert_eq!(vault.event(1).unwrap(), Some(b.events[1].1.clone()));
        assert_eq!(vault.event(3).unwrap(), Some(b.events[3].1.clone()));
        // ... but a stale copy of an erased body no longer opens.
        for (index, stale) in [(0u64, stale_0), (2, stale_2)] {
            let (key_id, sealed) = decode_sealed(&stale).unwrap();
            let mut st = vault.lock().unwrap();
            let key = vault.load_key(&mut st, key_id).unwrap().unwrap();
            assert!(open_sealed(&key, index, sealed).is_err());
        }
        // Erasing the last events of a key destroys it.
        let out = vault.erase(None, &[1, 3], &tomb).unwrap();
        assert_eq!((out.keys_destroyed, out.keys_replaced), (2, 0));
        assert!(inner.records(RecordSpace::DataKey).unwrap().is_empty());
    }

    #[test]
    fn destroying_a_key_rotates_the_keyring_file_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let master = MasterKey::from_bytes([4; 32]);
        let path = dir.path().join(KEYRING_FILE);
        let open = || Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).unwrap();
        let vault = open();
        vault
            .commit(&batch(&[(0, Some("alice")), (1, Some("bob"))]))
            .unwrap();
        let first = fs::read(&path).unwrap();
        let alice_id = key_id_of(inner.as_ref(), 0);
        let bob_id = key_id_of(inner.as_ref(), 1);
        let alice_key = inner
            .record(RecordSpace::DataKey, &alice_id)
            .unwrap()
            .unwrap();
        let bob_key_before = inner
            .record(RecordSpace::DataKey, &bob_id)
            .unwrap()
            .unwrap();
        let tomb = Tombstone {
            erased_at: "t".into(),
            reason: "r".into(),
            cause: "erasure".into(),
            by: "b".into(),
        };
        vault.erase(Some("alice"), &[], &tomb).unwrap();
        assert_ne!(
            fs::read(&path).unwrap(),
            first,
            "the keyring file was replaced"
        );
        assert!(!path.with_extension("new").exists());
        // Old copies of both keys no longer open; bob's current one does.
        assert!(vault.can_open_data_key(&alice_id, &alice_key).is_err());
        assert!(vault.can_open_data_key(&bob_id, &bob_key_before).is_err());
        assert!(vault.event(1).unwrap().is_some());
        drop(vault);
        // A leftover pending file of a rotation whose batch never landed is undone.
        fs::write(path.with_extension("new"), "veritrail-keyring/v1 00 00\n").unwrap();
        let again = open();
        assert!(!path.with_extension("new").exists());
        assert!(again.event(1).unwrap().is_some());
        assert_eq!(again.event(0).unwrap(), None);
        // Without the keyring file the log cannot be opened.
        fs::remove_file(&path).unwrap();
        assert!(Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).is_err());
    }

    #[test]
    fn a_log_refuses_a_missing_or_wrong_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = MemoryStore::new();
        let (key, origin) = open_master_key(&data, &store, None, None).unwrap();
        let path = dir.path().join("data.master.key");
        assert_eq!(origin, MasterKeyOrigin::Created(path.clone()));
        let (again, origin) = open_master_key(&data, &store, None, None).unwrap();
        assert_eq!(origin, MasterKeyOrigin::File(path.clone()));
        assert_eq!(again.check_value(), key.check_value());
        let other = MasterKey::generate().unwrap().to_hex();
        let err = open_master_key(&data, &store, Some(&other), None).unwrap_err();
        assert!(err.to_string().contains("not this log's"), "{err}");
        assert!(open_master_key(&data, &store, Some(&key.to_hex()), None).is_ok());
        fs::remove_file(&path).unwrap();
        let err = open_master_key(&data, &store, None, None).unwrap_err();
        assert!(err.to_string().contains("was not found"), "{err}");
        assert!(!path.exists(), "no new key is made for an existing log");
    }
}
