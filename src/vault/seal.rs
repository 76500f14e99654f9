//! Stage 3 of the write path: sealing a sequenced batch.
//!
//! [`Vault::seal`] turns the sequenced events into what is stored: each
//! event's salt and canonical body sealed under its own key (see `keys`).
//! Keys the batch needs that do not exist yet (a new bundle's seed, a new
//! subject's slot) are written to the key store, durably, before it
//! returns; the slots' records join the write. It holds the key lock until
//! the caller has committed the write and called [`SealedBatch::committed`]
//! (or dropped it after a failed commit), so an erasure never destroys a
//! key between the sealing under it and the commit. Nothing here writes to
//! the store: the sequencer commits.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::MutexGuard;

use super::keys::{self, Allocation, Keys};
use super::{Vault, be, encode_sealed, event_aad};
use crate::crypto::{DataKey, Field, Term};
use crate::event::AuditEvent;
use crate::store::{BatchWrite, RecordSpace, StoreError, StoredEvent};

/// An event as the sequencer placed it, before sealing.
#[derive(Clone, Debug)]
pub struct EventToSeal {
    /// Its leaf index.
    pub index: u64,
    /// Its app, salt and canonical bytes, in plaintext.
    pub event: StoredEvent,
    /// Its search terms, when the submitter computed them; otherwise they
    /// are derived from the event here.
    pub terms: Option<Vec<Term>>,
}

/// A batch's write with its events sealed into it, waiting for its commit.
/// Holds the vault's key lock until it is committed or dropped.
pub struct SealedBatch<'v> {
    vault: &'v Vault,
    keys: MutexGuard<'v, Keys>,
    write: BatchWrite,
    /// The batch's new subject slots, taken by `committed`.
    alloc: Option<Allocation>,
    postings: Vec<(Term, u64)>,
    events: usize,
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

impl Vault {
    /// Seals `events` (received at `received_ms`, one time for the whole
    /// batch) into `write`: a sealed body per event, and a wrapped data key
    /// record per key the batch creates. The sealing runs on up to four
    /// threads for large batches. Commit [`SealedBatch::write`], then call
    /// [`SealedBatch::committed`].
    pub fn seal(
        &self,
        mut write: BatchWrite,
        events: Vec<EventToSeal>,
        _received_ms: i64,
    ) -> Result<SealedBatch<'_>, StoreError> {
        // Terms need no lock: work them out first.
        let prepared: Vec<(Option<Term>, Vec<Term>)> = events
            .iter()
            .map(|ev| {
                // Computed by the submitter (see `PreparedEvent::terms`), or
                // derived here; an event that does not parse has none.
                let terms = match &ev.terms {
                    Some(terms) => terms.clone(),
                    None => serde_json::from_slice::<AuditEvent>(&ev.event.event)
                        .map(|p| self.terms_of(&ev.event.app, &p))
                        .unwrap_or_default(),
                };
                let subject = terms
                    .iter()
                    .find(|t| t.0[0] == Field::Subject.tag())
                    .cloned();
                (subject, terms)
            })
            .collect();
        let store = self.inner.as_ref();
        let indexes: Vec<u64> = events.iter().map(|e| e.index).collect();
        let subjects: Vec<Term> = prepared.iter().filter_map(|(s, _)| *s).collect();
        let (mut st, alloc) =
            self.prepare_keys(self.lock()?, &indexes, &subjects, &mut write.records)?;
        // What each event's key is derived from, gathered under the lock.
        let mut bundles: HashMap<u64, keys::Bundle> = HashMap::new();
        let mut subject_keys: HashMap<u64, DataKey> = HashMap::new();
        let mut inputs = Vec::with_capacity(events.len());
        for (ev, (subject, _)) in events.iter().zip(&prepared) {
            let b = ev.index / 256;
            if let Entry::Vacant(slot) = bundles.entry(b) {
                slot.insert(st.bundle(b)?);
            }
            let slot = match subject {
                Some(t) => {
                    let s = st.slot_for(store, &alloc, t)?.ok_or_else(|| {
                        StoreError::Backend("a subject has no key slot (internal error)".into())
                    })?;
                    if let Entry::Vacant(slot) = subject_keys.entry(s) {
                        slot.insert(st.slot_key(s)?.ok_or_else(|| {
                            StoreError::Backend(
                                "a subject's new key slot is destroyed (internal error)".into(),
                            )
                        })?);
                    }
                    Some(s)
                }
                None => None,
            };
            inputs.push((b, slot));
        }
        let nonces = crate::crypto::random_nonces(events.len())
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let work: Vec<_> = events.iter().zip(inputs).zip(nonces).collect();
        let bodies = par_map(&work, |((ev, (b, slot)), nonce)| {
            let key = bundles
                .get(b)
                .and_then(|bundle| {
                    keys::derive_event_key(
                        ev.index,
                        bundle,
                        slot.and_then(|s| subject_keys.get(&s)),
                    )
                })
                .ok_or_else(|| {
                    StoreError::Backend(format!("event {} has no key (internal error)", ev.index))
                })?;
            key.seal_with_nonce(*nonce, &event_aad(ev.index), &ev.event.encode())
                .map(|body| {
                    (
                        RecordSpace::Sealed,
                        be(ev.index),
                        encode_sealed(&keys::key_id(*slot), &body),
                    )
                })
                .map_err(|e| StoreError::Backend(e.to_string()))
        });
        for body in bodies {
            write.records.push(body?);
        }
        let postings: Vec<(Term, u64)> = events
            .iter()
            .zip(prepared)
            .flat_map(|(ev, (_, terms))| terms.into_iter().map(move |t| (t, ev.index)))
            .collect();
        Ok(SealedBatch {
            vault: self,
            keys: st,
            write,
            alloc: Some(alloc),
            postings,
            events: events.len(),
        })
    }
}

impl SealedBatch<'_> {
    /// What to commit: the batch's write with the sealed bodies and new
    /// slots' records in it, and no plaintext event or key.
    pub fn write(&self) -> &BatchWrite {
        &self.write
    }

    /// Call once [`SealedBatch::write`] is durable: its new subject slots
    /// become current, and its events enter the search index, before the
    /// key lock is released (so an erasure that follows finds them).
    pub fn committed(mut self) {
        if let Some(alloc) = self.alloc.take() {
            self.keys.allocated(alloc);
        }
        if self.events == 0 {
            return;
        }
        // The postings are searchable before the events are acknowledged;
        // the index writes them out later (see `index`). The batch is
        // durable now, so a failure here must not fail it: the index is
        // derived from the events and is rebuilt from them on restart.
        let postings = std::mem::take(&mut self.postings);
        if let Err(e) = self
            .vault
            .index
            .append(self.write.tree_size, self.events, postings)
        {
            tracing::error!(error = %e, "the search index could not take a committed batch; restart the server to rebuild it");
        }
    }
}

impl Drop for SealedBatch<'_> {
    fn drop(&mut self) {
        // Not committed, or its outcome unknown: its slots are never handed
        // out again (two subjects must never share one), and the records
        // naming them are read back from the store if they were written.
        if let Some(alloc) = self.alloc.take() {
            self.keys.skip_slots(alloc.next_slot);
        }
    }
}
