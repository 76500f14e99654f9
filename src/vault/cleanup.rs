//! The cleanup after a subject's erasure: deleting, in the background, the
//! sealed bodies, salts and subject postings of the erased subject's
//! events, which no key opens any more.
//!
//! [`Vault::erase`] destroys the subject's key and writes, in the same
//! atomic write as the subject's tombstone, a job record naming the
//! subject's index term, the destroyed slots and the tombstone. Reads
//! answer 410 from that moment (the slot's tombstone), and searches leave
//! the events out (an event no key opens is never a hit). The job then
//! walks the subject's postings newest first, [`STEP_EVENTS`] at a time
//! ([`CROWDED_STEP_EVENTS`] while writers wait, see [`super::background`]):
//! each step is one atomic write of the events' deletions, their own
//! tombstones (the subject's is found through the sealed body, which goes)
//! and the removal of their subject postings, together with the job's
//! progress (the leaf below which it goes on). The vault's key lock is
//! held only to see which of the step's events no key opens (a destroyed
//! key never comes back), not for the reads nor the write, so the
//! sequencer's commits do not wait for a step; steps and erasures run one
//! at a time.
//!
//! The index's tail, re-derived from the events on open, cannot read an
//! erased event's terms: it lists such an event under the subject of the
//! pending job that names its key's slot, so the cleanup still finds it.
//!
//! Only the subject term's postings are removed: they are known without
//! opening the events. The postings of the events' other terms stay in the
//! index, pointing at erased events, until the index is rebuilt; searches
//! skip them as they skip any erased event (see [`crate::search`]).
//!
//! Invariant: a body is deleted only if the job names its key's slot and
//! that key no longer exists, so nothing is made unreadable that the
//! erasure did not make unreadable already; a failed or interrupted step
//! leaves either the state before it or after it, and the job resumes
//! there, in this process or at the next start. Each step reads at most
//! [`STEP_EVENTS`] events' records.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::background::{self, Pace, Step};
use super::{Tombstone, Vault, be, decode_sealed};
use crate::crypto::Term;
use crate::store::{RecordBatch, RecordSpace, ScanCursor, StoreError};

/// Events one step looks at (and deletes at most).
pub const STEP_EVENTS: usize = 256;
/// Events a step looks at while writers wait ([`background::Turn`]).
pub const CROWDED_STEP_EVENTS: usize = 32;
/// Prefix of the job records in `RecordSpace::Meta`; the subject's index
/// term follows.
const JOB_PREFIX: &[u8] = b"erasure-cleanup/";
/// Jobs [`Vault::erasure_cleanups_pending`] counts at most.
pub const MAX_COUNTED_JOBS: usize = 1000;

/// A subject's cleanup job, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    /// Every posting of the subject below this leaf is still to be looked at.
    below: u64,
    /// The subject's destroyed slots: only events sealed under them go.
    slots: BTreeSet<u64>,
    /// Written for each event deleted.
    tombstone: Tombstone,
}

fn job_key(term: &Term) -> Vec<u8> {
    [JOB_PREFIX, term.0.as_slice()].concat()
}

fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(job).map_err(|e| StoreError::Corrupt(format!("erasure cleanup job: {e}")))
}

/// Adds to `batch` the job that cleans up after the erasure of the
/// subject of `term`, whose keys were `slots`.
pub(super) fn record_job(
    term: &Term,
    slots: &BTreeSet<u64>,
    tombstone: &Tombstone,
    batch: &mut RecordBatch,
) -> Result<(), StoreError> {
    let job = Job {
        below: u64::MAX,
        slots: slots.clone(),
        tombstone: tombstone.clone(),
    };
    batch
        .put
        .push((RecordSpace::Meta, job_key(term), encode(&job)?));
    Ok(())
}

impl Vault {
    /// Up to `limit` pending cleanup jobs: (subject term, job).
    fn cleanup_jobs(&self, limit: usize) -> Result<Vec<(Term, Job)>, StoreError> {
        let page = self.inner.scan_records(
            RecordSpace::Meta,
            &ScanCursor::after(JOB_PREFIX.to_vec()),
            limit,
        )?;
        let mut out = Vec::new();
        for item in page.items {
            let (key, value) = item?;
            let Some(raw) = key.strip_prefix(JOB_PREFIX) else {
                break;
            };
            let term = Term(raw.try_into().map_err(|_| {
                StoreError::Corrupt("an erasure cleanup job's key is malformed".into())
            })?);
            let job: Job = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("erasure cleanup job: {e}")))?;
            out.push((term, job));
        }
        Ok(out)
    }

    /// The subject term under which the cleanup must find event `index`,
    /// erased, whose body is still stored: when a pending job names the
    /// slot of its key. The index re-derives its tail from the events on
    /// open, and an erased event does not open. `jobs` caches the pending
    /// jobs' slots for the caller's loop.
    pub(super) fn cleanup_posting(
        &self,
        st: &super::keys::Keys,
        jobs: &mut Option<Vec<(Term, BTreeSet<u64>)>>,
        index: u64,
    ) -> Result<Option<Term>, StoreError> {
        let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? else {
            return Ok(None);
        };
        let key_id = decode_sealed(&record)?.0;
        let Some(slot) =
            super::keys::parse_key_id(key_id).unwrap_or_else(|| st.legacy_slot(key_id))
        else {
            return Ok(None);
        };
        if jobs.is_none() {
            *jobs = Some(
                self.cleanup_jobs(MAX_COUNTED_JOBS)?
                    .into_iter()
                    .map(|(t, j)| (t, j.slots))
                    .collect(),
            );
        }
        Ok(jobs
            .iter()
            .flatten()
            .find(|(_, slots)| slots.contains(&slot))
            .map(|(t, _)| *t))
    }

    /// How many subjects' erasures are still being cleaned up (at most
    /// [`MAX_COUNTED_JOBS`]).
    pub fn erasure_cleanups_pending(&self) -> Result<usize, StoreError> {
        Ok(self.cleanup_jobs(MAX_COUNTED_JOBS)?.len())
    }

    /// One step of the oldest pending cleanup job (see the module
    /// comment), looking at up to `max` events; false once no job is left.
    pub fn cleanup_step(&self, max: usize) -> Result<bool, StoreError> {
        // No erasure destroys keys meanwhile, nor writes this job's record.
        let _erasing = self.erasing()?;
        self.lock()?.check_synced()?;
        let Some((term, mut job)) = self.cleanup_jobs(1)?.pop() else {
            return Ok(false);
        };
        let max = max.max(1);
        let found = self.scan(&term, job.below, max)?;
        let value = serde_json::to_vec(&job.tombstone)
            .map_err(|e| StoreError::Corrupt(format!("tombstone: {e}")))?;
        let mut batch = RecordBatch::default();
        let mut postings = Vec::new();
        // The events' key ids, read without the key lock.
        let mut sealed = Vec::with_capacity(found.len());
        for &index in &found {
            let Some(record) = self.inner.record(RecordSpace::Sealed, &be(index))? else {
                // Deleted by an earlier step whose removal of the posting
                // is not in memory; or erased on its own.
                if self
                    .inner
                    .record(RecordSpace::Erased, &be(index))?
                    .is_some()
                {
                    postings.push((term, index));
                }
                continue;
            };
            sealed.push((index, decode_sealed(&record)?.0.to_vec()));
        }
        // Which of them no key opens, under the key lock. A destroyed key
        // never comes back, so that stays true once the lock is let go:
        // the step's write below needs no lock the sequencer takes.
        let gone = {
            let mut st = self.lock()?;
            let mut gone = Vec::new();
            for (index, key_id) in &sealed {
                let slot =
                    super::keys::parse_key_id(key_id).unwrap_or_else(|| st.legacy_slot(key_id));
                // Sealed under another key (the subject's events since its
                // erasure): not this job's.
                if slot.is_some_and(|s| job.slots.contains(&s))
                    && self.key_of(&mut st, *index, key_id)?.is_none()
                {
                    gone.push(*index);
                }
            }
            gone
        };
        for index in gone {
            batch.delete.push((RecordSpace::Sealed, be(index)));
            batch.delete_events.push(index);
            batch
                .put
                .push((RecordSpace::Erased, be(index), value.clone()));
            postings.push((term, index));
        }
        let done = found.len() < max;
        if done {
            batch.delete.push((RecordSpace::Meta, job_key(&term)));
        } else {
            job.below = *found.last().unwrap_or(&0);
            batch
                .put
                .push((RecordSpace::Meta, job_key(&term), encode(&job)?));
        }
        let (removal, blocks) = self.index.plan_removal(&postings)?;
        batch.index_blocks = blocks;
        // Both outcomes of a failed write are sound: the bodies deleted no
        // key opens, and the job resumes from the progress stored with them.
        self.inner.commit_records(&batch)?;
        if let Err(e) = removal.apply(&self.index) {
            tracing::warn!(error = %e, "erased events stay in the in-memory search index until restart; searches skip them");
        }
        Ok(true)
    }
}

/// Starts the thread that runs the pending cleanup jobs of `vault`, now and
/// after each erasure, until the vault is dropped (paced as every
/// background job is, see [`super::background`]).
pub fn start(vault: &Arc<Vault>, pace: Pace) -> Result<(), StoreError> {
    let writers = vault.writers().clone();
    background::spawn(
        "erasure-cleanup",
        Arc::downgrade(vault),
        pace,
        writers,
        |v, turn| {
            let max = match turn.crowded {
                true => CROWDED_STEP_EVENTS,
                false => STEP_EVENTS,
            };
            Ok(match v.cleanup_step(max)? {
                true => Step::Worked,
                false => Step::Idle,
            })
        },
    )
}
