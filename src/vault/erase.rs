//! Erasure by crypto-shredding: an erased event's body and salt are
//! deleted, and its keys destroyed in the key store: its own (a punctured
//! offset of its bundle's seed) or, for a subject, the subject's key, which
//! every event of that subject needs, whether the search index lists it or
//! not. No other event is touched: nothing is re-sealed, and the cost is
//! the key store's blocks on the paths of the destroyed keys.
//!
//! Each erased event gets a tombstone; so does an erased subject's slot,
//! which is the tombstone of all its events ([`Vault::tombstone`] finds it
//! through the event's key id), so they read as erased at once, never as
//! damaged. A subject's erasure costs the same whatever the number of its
//! events: it reads none of them. Their sealed bodies, salts and subject
//! postings, which no key opens any more, are deleted afterwards in
//! bounded steps by [`super::cleanup`], from a durable job record written
//! with the tombstone.
//!
//! Order, for crashes and failed syncs: (1) one atomic write of the
//! tombstones, the deleted bodies and index entries of the events named,
//! the cleanup job of the subject, and a pending record of the keys to
//! destroy; (2) the destruction in the key store; (3) the pending record
//! removed. A failure after (1) latches the vault; every open finishes a
//! pending destruction before the log serves anything. The vault's key
//! lock is held for (1) and for preparing and publishing (2), not while
//! (2)'s blocks and root are written and synced, nor for (3): the
//! sequencer's commits, which take that lock, do not wait for those
//! syncs. The subject's slot is forgotten under the lock in (1), so a
//! batch sealed meanwhile gives the subject a new one, and erasures and
//! cleanup steps run one at a time.
//! Events sealed under keys of the earlier format (per subject and month,
//! per app and day) fall back to that format's method once: the other
//! live events under the key (as the search index lists them) are
//! re-sealed under keys of their own, and the old key is destroyed.

use std::collections::BTreeSet;

use super::keys::{self, Destruction, Keys};
use super::{
    ErasureOutcome, Tombstone, Vault, be, cleanup, decode_sealed, encode_sealed, event_aad,
    open_sealed,
};
use crate::crypto::{Field, Term};
use crate::store::{RecordBatch, RecordSpace, StoreError};

/// Unix ms of the first instant of the month after `month` (`YYYY-MM`).
fn next_month_ms(month: &str) -> Option<i64> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let (y, m) = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
    crate::event::parse_rfc3339_ms(&format!("{y:04}-{m:02}-01T00:00:00Z")).ok()
}

/// The key, in `RecordSpace::Erased`, of the tombstone of the erased
/// subject whose key was `slot`; apart from the events' keys (8 bytes).
pub(super) fn subject_tombstone_key(slot: u64) -> Vec<u8> {
    [b"subject/".as_slice(), &slot.to_be_bytes()].concat()
}

impl Vault {
    /// Destroys the bodies and salts of `indexes` and their index entries,
    /// and writes a tombstone for each event found; events already erased
    /// are skipped. The keys that open them are destroyed in the key
    /// store: `subject`'s key and the own key of each other event. A
    /// subject's events are not read: its tombstone makes them read as
    /// erased, and a cleanup job (see [`super::cleanup`]) deletes their
    /// bodies, salts and subject postings in the background. One durable
    /// change, finished on the next open if a crash or a failed sync
    /// interrupts it.
    pub fn erase(
        &self,
        subject: Option<&str>,
        indexes: &[u64],
        tombstone: &Tombstone,
    ) -> Result<ErasureOutcome, StoreError> {
        // No cleanup step looks at the keys while they are being destroyed,
        // and no other erasure writes the key store meanwhile.
        let _erasing = self.erasing()?;
        let mut st = self.lock()?;
        st.check_synced()?;
        let store = self.inner.as_ref();
        let mut batch = RecordBatch::default();
        let all: BTreeSet<u64> = indexes.iter().copied().collect();
        let mut destroy = Destruction::default();
        let value = serde_json::to_vec(tombstone)
            .map_err(|e| StoreError::Corrupt(format!("tombstone: {e}")))?;
        let mut outcome = ErasureOutcome::default();
        if let Some(s) = subject {
            let term = self.term(Field::Subject, s);
            let mut slots: BTreeSet<u64> = st.slot_of(store, &term)?.into_iter().collect();
            slots.extend(st.legacy_subject_slots(&hex::encode(&term.0[1..])));
            // The tombstone of every event sealed under these keys.
            for &slot in &slots {
                batch.put.push((
                    RecordSpace::Erased,
                    subject_tombstone_key(slot),
                    value.clone(),
                ));
            }
            if !slots.is_empty() {
                cleanup::record_job(&term, &slots, tombstone, &mut batch)?;
                outcome.cleanup_pending = true;
            }
            destroy.slots.extend(slots);
            batch
                .delete
                .push((RecordSpace::DataKey, keys::slot_record(&term)));
        }
        let mut legacy: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut postings = Vec::new();
        for &index in &all {
            if self.tombstone_with(Some(&*st), index)?.is_some() {
                continue;
            }
            if let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? {
                let key_id = decode_sealed(&record)?.0;
                match keys::parse_key_id(key_id) {
                    Some(Some(slot)) if destroy.slots.contains(&slot) => {}
                    Some(_) => {
                        destroy.events.insert(index);
                    }
                    None => match st.legacy_slot(key_id) {
                        Some(slot) if destroy.slots.contains(&slot) => {}
                        Some(_) => {
                            legacy.insert(key_id.to_vec());
                        }
                        // Destroyed already.
                        None => {}
                    },
                }
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
        for key_id in legacy {
            self.replace_legacy_key(&mut st, &key_id, &erased, &mut batch)?;
            if let Some(slot) = st.legacy_slot(&key_id) {
                destroy.slots.insert(slot);
            }
            outcome.keys_replaced += 1;
        }
        outcome.keys_destroyed =
            (destroy.slots.len() + destroy.events.len()).saturating_sub(outcome.keys_replaced);
        let (removal, blocks) = self.index.plan_removal(&postings)?;
        batch.index_blocks = blocks;
        if !destroy.is_empty() {
            destroy.record_pending(&mut batch);
        }
        if let Err(e) = self.inner.commit_records(&batch) {
            // Its outcome is unknown: if the write is durable, the next
            // open finishes the destruction it names.
            st.latch(&e.to_string());
            return Err(e);
        }
        // Durable now; the stored blocks no longer list the erased events,
        // and neither does the index rebuilt on the next start.
        if let Err(e) = removal.apply(&self.index) {
            tracing::error!(error = %e, "erased events stay in the in-memory search index until restart; their bodies are gone");
        }
        if destroy.is_empty() {
            return Ok(outcome);
        }
        // (2) The key store's write, prepared under the lock and made
        // durable without it: batches commit meanwhile (under keys the
        // destruction leaves alone; a batch that must write the key store
        // waits), and reads still open what is being erased, as they did
        // before the erasure began. The keys are gone from memory once
        // they are gone from the disk, before this returns.
        let prepared = st.begin_destruction(&destroy)?;
        drop(st);
        let persisted = prepared.as_ref().map(|p| p.persist());
        let finished = self.lock()?.finish_destruction(prepared, persisted);
        self.key_store_written.notify_all();
        finished?;
        // (3) A failure leaves the record for the next open, which destroys
        // again what is destroyed already.
        if let Err(e) = keys::forget_pending(store) {
            self.lock()?.latch(&e.to_string());
            return Err(e);
        }
        Ok(outcome)
    }

    /// Re-seals the live events under `key_id`, a key of the earlier
    /// format (not in `erasing`), under keys of their own, into `batch`.
    fn replace_legacy_key(
        &self,
        st: &mut Keys,
        key_id: &[u8],
        erasing: &BTreeSet<u64>,
        batch: &mut RecordBatch,
    ) -> Result<(), StoreError> {
        let Some(old) = st.legacy_key(self.inner.as_ref(), key_id)? else {
            return Ok(());
        };
        let live = self.live_events_under(key_id, erasing)?;
        let indexes: Vec<u64> = live.iter().map(|(i, _)| *i).collect();
        st.prepare(self.inner.as_ref(), &indexes, &[], &mut batch.put)?
            .ok_or_else(|| {
                StoreError::Backend(
                    "the key store was being written during an erasure (internal error)".into(),
                )
            })?;
        for (index, sealed) in live {
            let plain = open_sealed(&old, index, &sealed)?;
            let bundle = st.bundle(index / 256)?;
            let key = keys::derive_event_key(index, &bundle, None).ok_or_else(|| {
                StoreError::Backend(format!("event {index} has no key (internal error)"))
            })?;
            let body = key
                .seal(&event_aad(index), &plain.encode())
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            batch.put.push((
                RecordSpace::Sealed,
                be(index),
                encode_sealed(&keys::key_id(None), &body),
            ));
        }
        Ok(())
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
}
