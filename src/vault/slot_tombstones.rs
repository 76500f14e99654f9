//! The upgrade that gives every subject erased before subject tombstones
//! existed its tombstone, so that its events the search index did not list
//! read as erased (410), never as damaged.
//!
//! Such an erasure destroyed the subject's slot key and deleted the
//! pseudonym → slot record with it, and recorded the subject only by its
//! pseudonym (`admin.erasure`): nothing names the slot but the key store,
//! where the slot's entry is cleared. So the upgrade walks the slots ever
//! handed out, one key store leaf block (128 slots) at a time, and writes
//! the missing tombstone of every destroyed slot. Its cost is one block
//! read per 128 subjects the log has seen, once, at the first open after
//! the upgrade, and nothing for a log that never erased anything (it has
//! no tombstone at all); it never reads an event.
//!
//! Invariant: resumable, idempotent, crash-safe. Each leaf's tombstones
//! are committed in one write with the progress record (the next slot to
//! look at); a crash or failed write leaves a state from which the next
//! open goes on, and a tombstone that exists is never rewritten. Once
//! done, the progress record says so, and an open reads only that record.
//! Slots handed out later get their tombstone from the erasure itself.

use super::erase::subject_tombstone_key;
use super::keys::Keys;
use super::keytree::LEAF_ENTRIES;
use super::{Tombstone, VaultError};
use crate::store::{RecordBatch, RecordSpace, ScanCursor, Store, StoreError};

/// Meta record: the next slot the upgrade looks at, or [`DONE`].
pub(super) const PROGRESS_RECORD: &[u8] = b"subject_tombstones_upgrade";
/// The progress record's value once every slot was looked at.
const DONE: u64 = u64::MAX;
/// Subject slots in one leaf block of the key store (slots have the odd
/// key numbers).
const SLOTS_PER_LEAF: u64 = LEAF_ENTRIES / 2;

fn progress(value: u64) -> (RecordSpace, Vec<u8>, Vec<u8>) {
    (
        RecordSpace::Meta,
        PROGRESS_RECORD.to_vec(),
        value.to_be_bytes().to_vec(),
    )
}

/// The tombstone the upgrade writes: the erasure's own record (when, why,
/// who) is the log's `admin.erasure` event of the subject's pseudonym.
fn tombstone() -> Result<Vec<u8>, StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    serde_json::to_vec(&Tombstone {
        erased_at: crate::event::format_rfc3339_ms(now),
        reason: "the subject was erased at or before this time, by a version that kept no \
                 record per erased subject; the log's admin.erasure event of its pseudonym \
                 says when, why and by whom"
            .into(),
        cause: "erasure".into(),
        by: "upgrade".into(),
    })
    .map_err(|e| StoreError::Corrupt(format!("tombstone: {e}")))
}

/// Runs the upgrade for at most `max_leaves` leaf blocks; returns whether
/// it is done. Called by every open that may write, before the log serves.
pub(super) fn upgrade(
    keys: &mut Keys,
    store: &dyn Store,
    max_leaves: u64,
) -> Result<bool, VaultError> {
    let mut next = match store.record(RecordSpace::Meta, PROGRESS_RECORD)? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt("the subject tombstone upgrade's progress is malformed".into())
        })?),
        None => 0,
    };
    if next == DONE {
        return Ok(true);
    }
    let end = keys.next_slot();
    let nothing_erased = store
        .scan_records(RecordSpace::Erased, &ScanCursor::start(), 1)?
        .items
        .is_empty();
    if end == 0 || nothing_erased {
        store.commit_records(&RecordBatch {
            put: vec![progress(DONE)],
            ..RecordBatch::default()
        })?;
        return Ok(true);
    }
    if next == 0 {
        tracing::info!(
            slots = end,
            "writing the tombstones of subjects erased by an earlier version"
        );
    }
    let value = tombstone()?;
    let mut leaves = 0;
    while next < end {
        if leaves >= max_leaves {
            return Ok(false);
        }
        let hi = ((next / SLOTS_PER_LEAF + 1) * SLOTS_PER_LEAF).min(end);
        let mut batch = RecordBatch::default();
        for slot in next..hi {
            let key = subject_tombstone_key(slot);
            if keys.slot_destroyed(slot)? && store.record(RecordSpace::Erased, &key)?.is_none() {
                batch.put.push((RecordSpace::Erased, key, value.clone()));
            }
        }
        batch.put.push(progress(if hi >= end { DONE } else { hi }));
        store.commit_records(&batch)?;
        next = hi;
        leaves += 1;
    }
    Ok(true)
}
