//! Which key opens which event: the vault's view of the key store
//! ([`keytree`](super::keytree)), the subject slots, the keys of the
//! earlier format, and destruction.
//!
//! An event's key is derived from two keys of the key store: its entry
//! bundle's seed, down to its offset (so one event can be erased alone),
//! and, for an event with a subject, the subject's slot key (so erasing a
//! subject destroys one key, and every event of that subject, listed in
//! the search index or not, stops opening). The map from a subject's
//! pseudonym to its slot is not secret: it is a record of the store,
//! committed with the batch that first uses the slot. A slot is never
//! reused: a subject erased and seen again gets a new one.
//!
//! Keys of the earlier format (one per subject and month, one per app and
//! day, wrapped in `RecordSpace::DataKey` under the `keyring` file's
//! generation key) are converted on the first open: each becomes a slot
//! of its own, the list of their ids and slots goes to the key store's
//! `legacy` file, and the wrapped copies and the keyring are deleted.
//!
//! Invariant: a key is in the key store, durably, before any write that
//! seals under it is committed; destroying keys writes only the key
//! store's blocks on their paths (no event is re-sealed), and is recorded
//! first as a pending erasure in the store, which every open finishes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::VaultError;
use super::keyring::{self, Keyring, KeyringHome};
use super::keytree::{self, Entry, KeyHome, KeyStore, LEAF_ENTRIES, PreparedWrite};
use crate::crypto::{DataKey, MasterKey, Term};
use crate::store::{RecordBatch, RecordSpace, Store, StoreError};

/// Meta record: the next subject slot to hand out.
const NEXT_SLOT_RECORD: &[u8] = b"subject_slot_next";
/// Meta record: key destructions committed but perhaps not yet done.
const PENDING_RECORD: &[u8] = b"erasure_pending";
/// Prefix of the pseudonym → slot records in `RecordSpace::DataKey`.
const SLOT_PREFIX: &[u8] = b"slot/";
/// The key store's file listing converted keys of the earlier format.
pub(super) const LEGACY_FILE: &str = "legacy";
/// Subject slots kept in memory at most.
const MAX_CACHED_SLOTS: usize = 100_000;
/// First byte of a key id of this format (earlier ids start `s/` or `d/`).
pub(super) const KEY_ID_V2: u8 = 2;

/// The key store number of bundle `b`'s seed.
fn bundle_number(b: u64) -> u64 {
    2 * b
}

/// The key store number of subject slot `s`.
fn slot_number(s: u64) -> u64 {
    2 * s + 1
}

/// A bundle's offset keys, expanded from its seed (`None`: punctured).
pub(super) type Bundle = Arc<Vec<Option<DataKey>>>;

/// The key of event `index` from its offset key and its subject's key
/// (HMAC over both).
fn event_key(index: u64, offset: &DataKey, subject: Option<&DataKey>) -> DataKey {
    let base = offset.derive(&[b"veritrail/event-key/v2", &index.to_be_bytes()]);
    match subject {
        Some(s) => base.derive(&[b"subject", s.secret()]),
        None => base,
    }
}

/// The key of event `index` of `bundle`; `None` once it was punctured.
pub(super) fn derive_event_key(
    index: u64,
    bundle: &Bundle,
    subject: Option<&DataKey>,
) -> Option<DataKey> {
    let offset = bundle.get((index % 256) as usize)?.as_ref()?;
    Some(event_key(index, offset, subject))
}

/// The key id of an event of this format: `2 || slot (u64 BE)?`.
pub(super) fn key_id(slot: Option<u64>) -> Vec<u8> {
    let mut id = vec![KEY_ID_V2];
    if let Some(s) = slot {
        id.extend_from_slice(&s.to_be_bytes());
    }
    id
}

/// The subject slot a key id of this format names; `None` for an id of
/// the earlier format.
pub(super) fn parse_key_id(id: &[u8]) -> Option<Option<u64>> {
    match id {
        [KEY_ID_V2] => Some(None),
        [KEY_ID_V2, rest @ ..] => Some(Some(u64::from_be_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

pub(super) fn slot_record(pseudonym: &Term) -> Vec<u8> {
    slot_record_of(&pseudonym.0[1..])
}

/// The slot record's key of a subject's raw pseudonym.
fn slot_record_of(raw: &[u8]) -> Vec<u8> {
    [SLOT_PREFIX, raw].concat()
}

fn u64_of(v: &[u8], what: &str) -> Result<u64, StoreError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is malformed")))
}

/// Keys of the earlier format.
enum Legacy {
    /// Converted: key id → slot.
    Converted(BTreeMap<Vec<u8>, u64>),
    /// Not converted (a check that writes nothing): wrapped in the store.
    Wrapped(Keyring),
}

/// What is destroyed: whole subject slots, single events' offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Destruction {
    pub slots: BTreeSet<u64>,
    pub events: BTreeSet<u64>,
}

impl Destruction {
    fn encode(&self) -> Vec<u8> {
        let mut out = (self.slots.len() as u64).to_be_bytes().to_vec();
        for v in self.slots.iter().chain(&self.events) {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Result<Destruction, StoreError> {
        let bad = || StoreError::Corrupt("the pending erasure record is malformed".into());
        if b.len() < 8 || !b.len().is_multiple_of(8) {
            return Err(bad());
        }
        let n = usize::try_from(u64_of(&b[..8], "pending erasure")?).map_err(|_| bad())?;
        let values: Vec<u64> = b[8..]
            .chunks_exact(8)
            .map(|c| u64_of(c, "pending erasure"))
            .collect::<Result<_, _>>()?;
        if n > values.len() {
            return Err(bad());
        }
        Ok(Destruction {
            slots: values[..n].iter().copied().collect(),
            events: values[n..].iter().copied().collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.events.is_empty()
    }

    /// Adds to `batch` the record that makes this destruction survive a
    /// crash or a failed sync before it is done.
    pub fn record_pending(&self, batch: &mut RecordBatch) {
        batch
            .put
            .push((RecordSpace::Meta, PENDING_RECORD.to_vec(), self.encode()));
    }
}

/// The vault's keys.
pub(super) struct Keys {
    tree: KeyStore,
    home: KeyHome,
    legacy: Legacy,
    slots: HashMap<[u8; 32], u64>,
    next_slot: u64,
    /// The expanded offset keys of the bundle sealed into last: the write
    /// path seals batch after batch into one bundle. Dropped on every
    /// write to the key store.
    hot: Option<(u64, Bundle)>,
    /// Why nothing more may be sealed or erased until the log restarts: a
    /// write whose outcome is unknown.
    unsynced: Option<String>,
    /// Times a batch waited for a destruction's key store write (tests).
    #[cfg(test)]
    pub key_store_waits: usize,
}

/// New subject slots of a batch, and the key store writes they need.
#[derive(Default)]
pub(super) struct Allocation {
    /// pseudonym → slot, of subjects new to the log (or seen again after
    /// their erasure).
    pub new_slots: Vec<([u8; 32], u64)>,
    pub next_slot: u64,
}

impl Keys {
    /// Opens the keys of the log in `store`: the key store beside the
    /// keyring file of `home`, converting keys of the earlier format and
    /// finishing a pending erasure, unless `check` (which writes nothing).
    pub fn open(
        home: &KeyringHome,
        master: &MasterKey,
        shared: &std::sync::Arc<dyn Store>,
        check: bool,
    ) -> Result<Keys, VaultError> {
        let store = shared.as_ref();
        let key_home = match home {
            KeyringHome::File(path) => KeyHome::Dir(
                path.parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(keytree::KEYS_DIR),
            ),
            KeyringHome::Store => KeyHome::Store(shared.clone()),
        };
        let tree = if check {
            KeyStore::open_read_only(key_home.clone(), master.wrap_key())?
        } else {
            KeyStore::open(key_home.clone(), master.wrap_key())?
        };
        let next_slot = match store.record(RecordSpace::Meta, NEXT_SLOT_RECORD)? {
            Some(v) => u64_of(&v, "the next subject slot")?,
            None => 0,
        };
        let mut keys = Keys {
            tree,
            legacy: Legacy::Converted(read_legacy(&key_home)?),
            home: key_home,
            slots: HashMap::new(),
            next_slot,
            hot: None,
            unsynced: None,
            #[cfg(test)]
            key_store_waits: 0,
        };
        if keyring::generation_named(store)? {
            let ring = Keyring::open(home.clone(), master.wrap_key(), store)?;
            if check {
                keys.legacy = Legacy::Wrapped(ring);
            } else {
                keys.convert_legacy(store, &ring, home)?;
            }
        } else if !check {
            keyring::remove_files(home);
        }
        if !check && let Some(v) = store.record(RecordSpace::Meta, PENDING_RECORD)? {
            let pending = Destruction::decode(&v)?;
            tracing::info!("finishing an erasure that was interrupted");
            keys.destroy(store, &pending)?;
        }
        if !check {
            super::slot_tombstones::upgrade(&mut keys, store, u64::MAX)?;
        }
        Ok(keys)
    }

    /// Moves every wrapped data key of the earlier format into the key
    /// store (each its own slot), then deletes the wrapped copies, the
    /// keyring's generation record and the keyring file. Redone from the
    /// start if interrupted.
    fn convert_legacy(
        &mut self,
        store: &dyn Store,
        ring: &Keyring,
        home: &KeyringHome,
    ) -> Result<(), VaultError> {
        let mut map = BTreeMap::new();
        let mut leaves: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        let mut batch = RecordBatch::default();
        let mut next = self.next_slot;
        for (id, wrapped) in store.records(RecordSpace::DataKey)? {
            if id.starts_with(SLOT_PREFIX) {
                continue;
            }
            let key = ring.unwrap(&id, &wrapped)?;
            let n = slot_number(next);
            let leaf = self.leaf_for_update(&mut leaves, n / LEAF_ENTRIES)?;
            leaf[(n % LEAF_ENTRIES) as usize] = keytree::entry_of(key);
            map.insert(id.clone(), next);
            batch.delete.push((RecordSpace::DataKey, id));
            next += 1;
        }
        tracing::info!(keys = map.len(), "moving data keys into the key store");
        self.tree.write(leaves, false)?;
        let text: String = map
            .iter()
            .map(|(id, s)| format!("{} {s}\n", hex::encode(id)))
            .collect();
        self.home.replace_file(LEGACY_FILE, text.as_bytes())?;
        batch.put.push((
            RecordSpace::Meta,
            NEXT_SLOT_RECORD.to_vec(),
            next.to_be_bytes().to_vec(),
        ));
        keyring::forget_generation(&mut batch);
        store.commit_records(&batch)?;
        keyring::remove_files(home);
        self.next_slot = next;
        self.legacy = Legacy::Converted(map);
        Ok(())
    }

    /// The entries of leaf `pos` as `leaves` has them, else as stored,
    /// else new (all fresh keys).
    fn leaf_for_update<'a>(
        &mut self,
        leaves: &'a mut BTreeMap<u64, Vec<Entry>>,
        pos: u64,
    ) -> Result<&'a mut Vec<Entry>, VaultError> {
        if let std::collections::btree_map::Entry::Vacant(slot) = leaves.entry(pos) {
            slot.insert(match self.tree.leaf(pos)? {
                Some(l) => (*l).clone(),
                None => keytree::new_leaf()?,
            });
        }
        leaves
            .get_mut(&pos)
            .ok_or_else(|| VaultError::Local("leaf vanished".into()))
    }

    /// Refuses once a write's outcome is unknown.
    pub fn check_synced(&self) -> Result<(), StoreError> {
        match &self.unsynced {
            Some(why) => Err(StoreError::Backend(format!(
                "the vault refuses writes until the log restarts (a write's outcome is unknown: {why})"
            ))),
            None => Ok(()),
        }
    }

    /// Latches the vault after a write whose outcome is unknown.
    pub fn latch(&mut self, why: &str) {
        self.unsynced.get_or_insert_with(|| why.to_string());
    }

    /// The slot of `pseudonym` (a subject term), if it has one.
    pub fn slot_of(
        &mut self,
        store: &dyn Store,
        pseudonym: &Term,
    ) -> Result<Option<u64>, StoreError> {
        let raw: [u8; 32] = pseudonym.0[1..].try_into().unwrap_or([0; 32]);
        if let Some(s) = self.slots.get(&raw) {
            return Ok(Some(*s));
        }
        let Some(v) = store.record(RecordSpace::DataKey, &slot_record(pseudonym))? else {
            return Ok(None);
        };
        let s = u64_of(&v, "a subject slot")?;
        if self.slots.len() >= MAX_CACHED_SLOTS {
            self.slots.clear();
        }
        self.slots.insert(raw, s);
        Ok(Some(s))
    }

    /// The stored slots of those of `subjects` not cached yet, read in one
    /// request (one round trip per batch on a remote store, not one per
    /// new subject) and cached; `None` for a subject without one.
    fn stored_slots(
        &mut self,
        store: &dyn Store,
        subjects: &[Term],
    ) -> Result<HashMap<[u8; 32], Option<u64>>, StoreError> {
        let mut wanted: Vec<[u8; 32]> = subjects
            .iter()
            .map(|t| t.0[1..].try_into().unwrap_or([0; 32]))
            .filter(|raw| !self.slots.contains_key(raw))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let keys: Vec<Vec<u8>> = wanted.iter().map(|raw| slot_record_of(raw)).collect();
        let values = store.records_many(RecordSpace::DataKey, &keys)?;
        let mut out = HashMap::with_capacity(wanted.len());
        for (raw, v) in wanted.into_iter().zip(values) {
            let slot = v.map(|v| u64_of(&v, "a subject slot")).transpose()?;
            if let Some(s) = slot {
                if self.slots.len() >= MAX_CACHED_SLOTS {
                    self.slots.clear();
                }
                self.slots.insert(raw, s);
            }
            out.insert(raw, slot);
        }
        Ok(out)
    }

    /// The next subject slot to hand out: every slot below it was given out.
    pub fn next_slot(&self) -> u64 {
        self.next_slot
    }

    /// Whether slot `s`'s key was destroyed (its entry cleared by an
    /// erasure); a slot whose leaf block was never written was not.
    pub fn slot_destroyed(&mut self, s: u64) -> Result<bool, VaultError> {
        Ok(self
            .tree
            .entry(slot_number(s))?
            .is_some_and(|e| e.is_empty()))
    }

    fn slot_alive(&mut self, s: u64) -> Result<bool, VaultError> {
        Ok(self
            .tree
            .entry(slot_number(s))?
            .is_some_and(|e| keytree::whole_key(&e).is_some()))
    }

    /// Makes sure every key that events `indexes` (with the subjects
    /// `subjects`) need exists, durably, in the key store: new subjects get
    /// slots, new bundles seeds (a leaf block of fresh keys at a time, so
    /// the key store is written about once per 128 bundles or subjects).
    /// The new slots' records go into `records`; call [`Keys::allocated`]
    /// once they are committed. `None` (and nothing added to `records`)
    /// when it must write the key store while a destruction's write is
    /// under way: wait for that one to finish, then call it again.
    pub fn prepare(
        &mut self,
        store: &dyn Store,
        indexes: &[u64],
        subjects: &[Term],
        out: &mut Vec<(RecordSpace, Vec<u8>, Vec<u8>)>,
    ) -> Result<Option<Allocation>, StoreError> {
        self.check_synced()?;
        let mut records = Vec::new();
        let mut alloc = Allocation {
            next_slot: self.next_slot,
            ..Allocation::default()
        };
        let mut leaves: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        let stored = self.stored_slots(store, subjects)?;
        let mut seen = BTreeSet::new();
        for t in subjects {
            if !seen.insert(t.0) {
                continue;
            }
            let raw: [u8; 32] = t.0[1..].try_into().unwrap_or([0; 32]);
            let slot = match self.slots.get(&raw) {
                Some(s) => Some(*s),
                None => stored.get(&raw).copied().flatten(),
            };
            if let Some(s) = slot
                && self.slot_alive(s)?
            {
                continue;
            }
            // A new slot: one whose key is whole (a restored log's key
            // store may hold slots destroyed by the log it came from).
            let s = loop {
                let s = alloc.next_slot;
                alloc.next_slot += 1;
                let n = slot_number(s);
                let entry = match leaves.get(&(n / LEAF_ENTRIES)) {
                    Some(leaf) => Some(leaf[(n % LEAF_ENTRIES) as usize].clone()),
                    None => self.tree.entry(n)?,
                };
                match entry {
                    // A leaf of fresh keys, written below.
                    None => {
                        self.leaf_for_update(&mut leaves, n / LEAF_ENTRIES)?;
                        break s;
                    }
                    Some(e) if keytree::whole_key(&e).is_some() => break s,
                    Some(_) => {}
                }
            };
            alloc.new_slots.push((raw, s));
            records.push((
                RecordSpace::DataKey,
                slot_record(t),
                s.to_be_bytes().to_vec(),
            ));
        }
        if alloc.next_slot != self.next_slot {
            records.push((
                RecordSpace::Meta,
                NEXT_SLOT_RECORD.to_vec(),
                alloc.next_slot.to_be_bytes().to_vec(),
            ));
        }
        let bundles: BTreeSet<u64> = indexes.iter().map(|i| i / 256).collect();
        for b in bundles {
            let n = bundle_number(b);
            let pos = n / LEAF_ENTRIES;
            let has_leaf = leaves.contains_key(&pos) || self.tree.leaf(pos)?.is_some();
            if !has_leaf {
                self.leaf_for_update(&mut leaves, pos)?;
                continue;
            }
            let entry = match leaves.get(&pos) {
                Some(l) => l[(n % LEAF_ENTRIES) as usize].clone(),
                None => self.tree.entry(n)?.unwrap_or_default(),
            };
            // An offset without a key (punctured in the key store a
            // restored log took over, for an event it never had) gets one.
            let missing: Vec<u8> = indexes
                .iter()
                .filter(|i| *i / 256 == b)
                .map(|i| (i % 256) as u8)
                .filter(|o| keytree::offset_key(&entry, *o).is_none())
                .collect();
            if !missing.is_empty() {
                let leaf = self.leaf_for_update(&mut leaves, pos)?;
                for o in missing {
                    keytree::add_offset(&mut leaf[(n % LEAF_ENTRIES) as usize], o)?;
                }
            }
        }
        if !leaves.is_empty() {
            if self.tree.writing() {
                return Ok(None);
            }
            self.hot = None;
            self.tree.write(leaves, false)?;
        }
        out.append(&mut records);
        Ok(Some(alloc))
    }

    /// The batch that used `alloc` is committed: its slots are current.
    pub fn allocated(&mut self, alloc: Allocation) {
        self.next_slot = alloc.next_slot;
        for (raw, s) in alloc.new_slots {
            if self.slots.len() >= MAX_CACHED_SLOTS {
                self.slots.clear();
            }
            self.slots.insert(raw, s);
        }
    }

    /// A batch that allocated slots below `next` was not committed, or its
    /// outcome is unknown: those slots are never handed out again.
    pub fn skip_slots(&mut self, next: u64) {
        self.next_slot = self.next_slot.max(next);
    }

    /// The slot a batch being sealed uses for `pseudonym`.
    pub fn slot_for(
        &mut self,
        store: &dyn Store,
        alloc: &Allocation,
        pseudonym: &Term,
    ) -> Result<Option<u64>, StoreError> {
        let raw: [u8; 32] = pseudonym.0[1..].try_into().unwrap_or([0; 32]);
        if let Some((_, s)) = alloc.new_slots.iter().find(|(r, _)| *r == raw) {
            return Ok(Some(*s));
        }
        self.slot_of(store, pseudonym)
    }

    /// The offset keys of bundle `b`.
    pub fn bundle(&mut self, b: u64) -> Result<Bundle, StoreError> {
        if let Some((hot, keys)) = &self.hot
            && *hot == b
        {
            return Ok(keys.clone());
        }
        let entry = self.tree.entry(bundle_number(b))?.unwrap_or_default();
        let keys: Bundle = Arc::new(keytree::expand(&entry));
        self.hot = Some((b, keys.clone()));
        Ok(keys)
    }

    /// The key of slot `s`; `None` once destroyed.
    pub fn slot_key(&mut self, s: u64) -> Result<Option<DataKey>, StoreError> {
        Ok(self
            .tree
            .entry(slot_number(s))?
            .and_then(|e| keytree::whole_key(&e)))
    }

    /// The key of event `index` sealed under key id `id` (this format);
    /// `None` once erased.
    pub fn event_key(
        &mut self,
        index: u64,
        slot: Option<u64>,
    ) -> Result<Option<DataKey>, StoreError> {
        let subject = match slot {
            Some(s) => match self.slot_key(s)? {
                Some(k) => Some(k),
                None => return Ok(None),
            },
            None => None,
        };
        let entry = self
            .tree
            .entry(bundle_number(index / 256))?
            .unwrap_or_default();
        Ok(keytree::offset_key(&entry, (index % 256) as u8)
            .map(|o| event_key(index, &o, subject.as_ref())))
    }

    /// The key of a data key id of the earlier format; `None` once destroyed.
    pub fn legacy_key(
        &mut self,
        store: &dyn Store,
        id: &[u8],
    ) -> Result<Option<DataKey>, StoreError> {
        match &self.legacy {
            Legacy::Converted(map) => match map.get(id).copied() {
                Some(s) => self.slot_key(s),
                None => Ok(None),
            },
            Legacy::Wrapped(ring) => match store.record(RecordSpace::DataKey, id)? {
                Some(w) => Ok(Some(ring.unwrap(id, &w).map_err(|e| {
                    StoreError::Corrupt(format!("data key {}: {e}", String::from_utf8_lossy(id)))
                })?)),
                None => Ok(None),
            },
        }
    }

    /// The slot of a converted key of the earlier format.
    pub fn legacy_slot(&self, id: &[u8]) -> Option<u64> {
        match &self.legacy {
            Legacy::Converted(map) => map.get(id).copied(),
            Legacy::Wrapped(_) => None,
        }
    }

    /// The slots of the earlier format's keys of subject `pseudonym`
    /// (`s/<pseudonym hex>/<month>`).
    pub fn legacy_subject_slots(&self, pseudonym_hex: &str) -> Vec<u64> {
        let Legacy::Converted(map) = &self.legacy else {
            return Vec::new();
        };
        let prefix = format!("s/{pseudonym_hex}/").into_bytes();
        map.range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, s)| *s)
            .collect()
    }

    /// Destroys `what` in the key store (new keys on every path, new root),
    /// then removes the pending record. Already destroyed keys are skipped,
    /// so it may be redone. A failure latches the vault: the pending record
    /// stays, and the next open finishes the destruction.
    pub fn destroy(&mut self, store: &dyn Store, what: &Destruction) -> Result<(), StoreError> {
        let prepared = self.begin_destruction(what)?;
        let persisted = prepared.as_ref().map(|p| p.persist());
        self.finish_destruction(prepared, persisted)?;
        forget_pending(store).inspect_err(|e| self.latch(&e.to_string()))
    }

    /// The part of [`Keys::destroy`] done under the vault's lock before
    /// the key store is written: `what`'s slots are forgotten (so no batch
    /// seals under them meanwhile) and the key store's write is prepared
    /// (`None`: nothing left to destroy). Persist it, without the lock if
    /// need be, call [`Keys::finish_destruction`] with the outcome, then
    /// [`forget_pending`].
    pub fn begin_destruction(
        &mut self,
        what: &Destruction,
    ) -> Result<Option<PreparedWrite>, StoreError> {
        self.slots.retain(|_, s| !what.slots.contains(s));
        let mut leaves: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        let numbers = what.slots.iter().map(|s| (slot_number(*s), None)).chain(
            what.events
                .iter()
                .map(|i| (bundle_number(i / 256), Some((i % 256) as u8))),
        );
        let result = (|| -> Result<Option<PreparedWrite>, VaultError> {
            for (n, offset) in numbers {
                let pos = n / LEAF_ENTRIES;
                if let std::collections::btree_map::Entry::Vacant(slot) = leaves.entry(pos) {
                    let Some(leaf) = self.tree.leaf(pos)? else {
                        continue;
                    };
                    slot.insert((*leaf).clone());
                }
                if let Some(leaf) = leaves.get_mut(&pos) {
                    let entry = &mut leaf[(n % LEAF_ENTRIES) as usize];
                    match offset {
                        Some(o) => {
                            keytree::puncture(entry, o);
                        }
                        None => entry.clear(),
                    }
                }
            }
            if leaves.is_empty() {
                return Ok(None);
            }
            self.tree.prepare_write(leaves, true).map(Some)
        })();
        result.map_err(|e| {
            let e = StoreError::from(e);
            self.latch(&e.to_string());
            e
        })
    }

    /// Takes the outcome of a destruction's key store write: the keys are
    /// gone from memory once they are gone from the disk.
    pub fn finish_destruction(
        &mut self,
        prepared: Option<PreparedWrite>,
        persisted: Option<Result<(), VaultError>>,
    ) -> Result<(), StoreError> {
        self.hot = None;
        let result = match (prepared, persisted) {
            (Some(p), Some(outcome)) => self.tree.finish_write(p, outcome).map_err(Into::into),
            (None, _) => Ok(()),
            (Some(_), None) => Err(StoreError::Backend(
                "a key destruction was finished without being written (internal error)".into(),
            )),
        };
        if let Err(e) = &result {
            self.latch(&e.to_string());
        }
        result
    }

    /// Whether a destruction's key store write is under way (between
    /// [`Keys::begin_destruction`] and [`Keys::finish_destruction`]).
    pub fn key_store_writing(&self) -> bool {
        self.tree.writing()
    }

    /// The fault switch of the key store (tests).
    pub fn fail_key_store_sync(&self, nth: u32) {
        self.tree.faults().fail_at(nth);
    }

    /// The key store's fault switches (tests).
    #[cfg(test)]
    pub fn key_store_faults(&self) -> Arc<keytree::Faults> {
        self.tree.faults()
    }
}

/// Removes the record of a pending destruction, once it is done.
pub(super) fn forget_pending(store: &dyn Store) -> Result<(), StoreError> {
    store.commit_records(&RecordBatch {
        delete: vec![(RecordSpace::Meta, PENDING_RECORD.to_vec())],
        ..RecordBatch::default()
    })
}

fn read_legacy(home: &KeyHome) -> Result<BTreeMap<Vec<u8>, u64>, VaultError> {
    let Some(bytes) = home.read(LEGACY_FILE)? else {
        return Ok(BTreeMap::new());
    };
    let bad = || VaultError::MasterKey("the key store's legacy file is malformed".into());
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.lines()
        .map(|l| {
            let (id, s) = l.split_once(' ').ok_or_else(bad)?;
            Ok((
                hex::decode(id).map_err(|_| bad())?,
                s.parse().map_err(|_| bad())?,
            ))
        })
        .collect()
}
