//! Short notes sealed to a data subject: personal data kept outside the
//! log's events (the subject as an admin typed it into a legal hold) that
//! must go when the subject is erased, wherever a copy of it lies.
//!
//! A note is encrypted under a key derived from the subject's slot key in
//! the key store, the key every event of that subject is derived from. A
//! subject without a slot yet (a hold placed before any of its events)
//! gets one here, durably, as the write path would give it. Erasing the
//! subject destroys the slot key, so every copy of the note (in the store,
//! in a backup, in a stale page) stops opening, as its events do. The key
//! store is never in a backup, so a backup alone opens no note either.
//!
//! Invariant: a note opens only with its subject's live slot key and its
//! own `purpose`; once the subject is erased, [`Vault::open_subject_note`]
//! answers `None`, never the plaintext.

use super::Vault;
use crate::crypto::Field;
use crate::store::{RecordBatch, StoreError};

/// Length of the slot number in front of a sealed note.
const SLOT_LEN: usize = 8;

fn note_aad(purpose: &[u8]) -> Vec<u8> {
    [b"veritrail/subject-note/v1\0".as_slice(), purpose].concat()
}

fn note_key(slot_key: &crate::crypto::DataKey, purpose: &[u8]) -> crate::crypto::DataKey {
    slot_key.derive(&[b"veritrail/subject-note-key/v1", purpose])
}

impl Vault {
    /// Seals `plain` to `subject` for `purpose` (what and where the note
    /// is, bound into the ciphertext): `slot (u64 BE) || sealed`.
    pub fn seal_subject_note(
        &self,
        subject: &str,
        purpose: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let term = self.term(Field::Subject, subject);
        let store = self.inner.as_ref();
        let mut records = Vec::new();
        let (mut st, alloc) = self.prepare_keys(self.lock()?, &[], &[term], &mut records)?;
        let slot = match st.slot_for(store, &alloc, &term)? {
            Some(s) => s,
            None => {
                st.skip_slots(alloc.next_slot);
                return Err(StoreError::Backend(
                    "a subject has no key slot (internal error)".into(),
                ));
            }
        };
        if !records.is_empty() {
            let next = alloc.next_slot;
            if let Err(e) = store.commit_records(&RecordBatch {
                put: records,
                ..RecordBatch::default()
            }) {
                // Its outcome is unknown: the slot is never handed out again.
                st.skip_slots(next);
                return Err(e);
            }
        }
        st.allocated(alloc);
        let key = st.slot_key(slot)?.ok_or_else(|| {
            StoreError::Backend("a new subject slot has no key (internal error)".into())
        })?;
        drop(st);
        let sealed = note_key(&key, purpose)
            .seal(&note_aad(purpose), plain)
            .map_err(|e| StoreError::Backend(format!("sealing a subject note: {e}")))?;
        Ok([slot.to_be_bytes().as_slice(), &sealed].concat())
    }

    /// Opens a note [`Vault::seal_subject_note`] sealed for `purpose`;
    /// `None` once its subject was erased (its slot key destroyed).
    pub fn open_subject_note(
        &self,
        note: &[u8],
        purpose: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (slot, sealed) = note
            .split_first_chunk::<SLOT_LEN>()
            .ok_or_else(|| StoreError::Corrupt("a subject note is truncated".into()))?;
        let Some(key) = self.lock()?.slot_key(u64::from_be_bytes(*slot))? else {
            return Ok(None);
        };
        note_key(&key, purpose)
            .open(&note_aad(purpose), sealed)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("a subject note does not open: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::crypto::MasterKey;
    use crate::store::memory::MemoryStore;
    use crate::vault::{Tombstone, Vault};

    /// What `note` opens to for `purpose` (`None`: its subject is erased).
    fn opened(vault: &Vault, note: &[u8], purpose: &[u8]) -> Option<Vec<u8>> {
        vault.open_subject_note(note, purpose).unwrap()
    }

    #[test]
    fn a_note_opens_for_its_purpose_until_its_subject_is_erased() {
        let vault = Vault::new(
            Arc::new(MemoryStore::new()),
            &MasterKey::from_bytes([5; 32]),
        )
        .unwrap();
        // A subject with no event yet gets a slot of its own.
        let note = vault.seal_subject_note("Ann", b"hold/h1", b"Ann").unwrap();
        let other = vault.seal_subject_note("Bob", b"hold/h2", b"Bob").unwrap();
        assert_ne!(note[..8], other[..8], "two subjects share a slot");
        assert_eq!(opened(&vault, &note, b"hold/h1"), Some(b"Ann".to_vec()));
        assert!(vault.open_subject_note(&note, b"hold/h2").is_err());
        assert!(vault.open_subject_note(&note[..5], b"hold/h1").is_err());
        // The same subject again: the same slot.
        let again = vault.seal_subject_note("Ann", b"hold/h3", b"Ann").unwrap();
        assert_eq!(note[..8], again[..8]);
        let tomb = Tombstone {
            erased_at: "t".into(),
            reason: "r".into(),
            cause: "erasure".into(),
            by: "admin".into(),
        };
        vault.erase(Some("Ann"), &[], &tomb).unwrap();
        assert_eq!(opened(&vault, &note, b"hold/h1"), None);
        assert_eq!(opened(&vault, &other, b"hold/h2"), Some(b"Bob".to_vec()));
        // Seen again after its erasure, the subject gets a new slot.
        let after = vault.seal_subject_note("Ann", b"hold/h4", b"Ann").unwrap();
        assert_ne!(note[..8], after[..8]);
    }

    #[test]
    fn a_failed_write_leaves_no_note_and_no_slot_shared_by_two_subjects() {
        let store = Arc::new(MemoryStore::new());
        let master = MasterKey::from_bytes([5; 32]);
        let vault = Vault::new(store.clone(), &master).unwrap();
        store.fail_writes(true);
        assert!(vault.seal_subject_note("Ann", b"p", b"Ann").is_err());
        store.fail_writes(false);
        // A vault that latched on the failure refuses until it reopens.
        let vault = match vault.seal_subject_note("Bob", b"p", b"Bob") {
            Ok(_) => vault,
            Err(_) => {
                drop(vault);
                Vault::new(store.clone(), &master).unwrap()
            }
        };
        let bob = vault.seal_subject_note("Bob", b"p", b"Bob").unwrap();
        let ann = vault.seal_subject_note("Ann", b"p", b"Ann").unwrap();
        assert_ne!(ann[..8], bob[..8], "two subjects share a slot");
        assert_eq!(opened(&vault, &ann, b"p"), Some(b"Ann".to_vec()));
        assert_eq!(opened(&vault, &bob, b"p"), Some(b"Bob".to_vec()));
    }
}
