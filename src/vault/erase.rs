//! Erasure by crypto-shredding: an erased event's body and salt are
//! deleted, and every data key that sealed one is destroyed or replaced,
//! with a keyring rotation, in one atomic, durable change.

use std::collections::{BTreeSet, HashMap};

use super::{
    ErasureOutcome, KeyState, Tombstone, Vault, be, decode_sealed, encode_sealed, event_aad,
    open_sealed,
};
use crate::crypto::{DataKey, Field, Term};
use crate::store::{RecordBatch, RecordSpace, StoreError};

/// Unix ms of the first instant of the month after `month` (`YYYY-MM`).
fn next_month_ms(month: &str) -> Option<i64> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let (y, m) = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
    crate::event::parse_rfc3339_ms(&format!("{y:04}-{m:02}-01T00:00:00Z")).ok()
}

impl Vault {
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
}
