//! Stage 3 of the write path: sealing a sequenced batch.
//!
//! [`Vault::seal`] turns the sequenced events into what is stored: each
//! event's salt and canonical body sealed under its data key (new data
//! keys are made and stored wrapped in the same write). It holds the key
//! lock until the caller has committed the write and called
//! [`SealedBatch::committed`] (or dropped it after a failed commit), so an
//! erasure never destroys or replaces a key between the sealing under it
//! and the commit. Nothing here writes to the store: the sequencer commits.

use std::collections::HashMap;
use std::sync::MutexGuard;

use super::{KeyState, Vault, be, encode_sealed, event_aad};
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
    keys: MutexGuard<'v, KeyState>,
    write: BatchWrite,
    new_keys: HashMap<Vec<u8>, DataKey>,
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
        received_ms: i64,
    ) -> Result<SealedBatch<'_>, StoreError> {
        // Key ids and terms need no lock: work them out first.
        let received = crate::event::format_rfc3339_ms(received_ms);
        let prepared: Vec<(Vec<u8>, Vec<Term>)> = events
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
                let subject = terms.iter().find(|t| t.0[0] == Field::Subject.tag());
                (self.key_id_for(&ev.event.app, subject, &received), terms)
            })
            .collect();
        let mut st = self.lock()?;
        let mut new_keys: HashMap<Vec<u8>, DataKey> = HashMap::new();
        let mut keys = Vec::with_capacity(events.len());
        for (key_id, _) in &prepared {
            let key = match new_keys.get(key_id) {
                Some(k) => k.clone(),
                None => match self.load_key(&mut st, key_id)? {
                    Some(k) => k,
                    None => {
                        let k =
                            DataKey::generate().map_err(|e| StoreError::Backend(e.to_string()))?;
                        let wrapped = st.keyring.wrap(key_id, &k)?;
                        write
                            .records
                            .push((RecordSpace::DataKey, key_id.clone(), wrapped));
                        new_keys.insert(key_id.clone(), k.clone());
                        k
                    }
                },
            };
            keys.push(key);
        }
        let nonces = crate::crypto::random_nonces(events.len())
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let work: Vec<_> = events
            .iter()
            .zip(&prepared)
            .zip(keys.iter().zip(nonces))
            .collect();
        let bodies = par_map(&work, |((ev, (key_id, _)), (key, nonce))| {
            key.seal_with_nonce(*nonce, &event_aad(ev.index), &ev.event.encode())
                .map(|body| {
                    (
                        RecordSpace::Sealed,
                        be(ev.index),
                        encode_sealed(key_id, &body),
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
            new_keys,
            postings,
            events: events.len(),
        })
    }
}

impl SealedBatch<'_> {
    /// What to commit: the batch's write with the sealed bodies and new
    /// data keys in it, and no plaintext event.
    pub fn write(&self) -> &BatchWrite {
        &self.write
    }

    /// Call once [`SealedBatch::write`] is durable: its new data keys enter
    /// the cache, and its events the search index, before the key lock is
    /// released (so an erasure that follows finds them).
    pub fn committed(mut self) {
        // Only keys that are durable enter the cache.
        let new_keys = std::mem::take(&mut self.new_keys);
        self.keys.cache.extend(new_keys);
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
