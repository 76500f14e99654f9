//! Retention policies, legal holds, and planning what retention and
//! erasure may destroy.
//!
//! A policy keeps the events of an app and/or an action for N days after
//! the log received them; a retention run erases the bodies and salts of
//! older ones. A legal hold (on a data subject or an app) blocks both
//! retention and erasure of the events it covers, until it is released.
//! Subject holds store the subject's pseudonym (its index term), never the
//! subject.
//!
//! Erasing goes through [`Vault::erase`], which destroys each data key
//! whose events are all gone (a whole expired day of an app, a whole month
//! of a subject) and replaces the others, so no stale copy of an expired
//! body opens any more.
//!
//! Invariant: nothing held is ever planned for erasure; leaves, tiles and
//! checkpoints are never touched (erasure goes through [`Vault::erase`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::crypto::Field;
use crate::event::format_rfc3339_ms;
use crate::search::first_received_at_or_after;
use crate::store::{RecordBatch, RecordSpace, Store, StoreError};
use crate::vault::{Tombstone, Vault};

const DAY_MS: i64 = 86_400_000;
/// Most events one retention run erases; the next run continues.
pub const MAX_PER_RUN: usize = 100_000;

/// Keep events of `app` and/or `action` for `keep_days` days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    /// Random id.
    pub id: String,
    /// Only events of this app (else every app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only events with this action (else every action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Days after receipt an event is kept; 0 erases at the next run.
    pub keep_days: u32,
    /// RFC 3339.
    pub created_at: String,
    /// The admin key's name.
    pub created_by: String,
}

/// A legal hold on a data subject (by pseudonym) or an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    /// Random id.
    pub id: String,
    /// The held subject's pseudonym.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_pseudonym: Option<String>,
    /// The held app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Why (case number, ...).
    pub reason: String,
    /// RFC 3339.
    pub created_at: String,
    /// The admin key's name.
    pub created_by: String,
}

/// What a run or an erasure request would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Leaf indexes to erase.
    pub erase: Vec<u64>,
    /// Events kept because of a hold: (index, hold id).
    pub held: Vec<(u64, String)>,
}

fn policy_key(id: &str) -> Vec<u8> {
    format!("policy/{id}").into_bytes()
}

fn hold_key(id: &str) -> Vec<u8> {
    format!("hold/{id}").into_bytes()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A new random id.
pub fn new_id() -> Result<String, StoreError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| StoreError::Backend(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// Every policy.
pub fn policies(store: &dyn Store) -> Result<Vec<Policy>, StoreError> {
    store
        .records(RecordSpace::Governance)?
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"policy/"))
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| corrupt("retention policy", e)))
        .collect()
}

/// Every hold.
pub fn holds(store: &dyn Store) -> Result<Vec<Hold>, StoreError> {
    store
        .records(RecordSpace::Governance)?
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"hold/"))
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| corrupt("legal hold", e)))
        .collect()
}

/// Stores a policy.
pub fn put_policy(store: &dyn Store, p: &Policy) -> Result<(), StoreError> {
    let v = serde_json::to_vec(p).map_err(|e| corrupt("retention policy", e))?;
    store.put_record(RecordSpace::Governance, &policy_key(&p.id), &v)
}

/// Stores a hold.
pub fn put_hold(store: &dyn Store, h: &Hold) -> Result<(), StoreError> {
    let v = serde_json::to_vec(h).map_err(|e| corrupt("legal hold", e))?;
    store.put_record(RecordSpace::Governance, &hold_key(&h.id), &v)
}

/// Deletes a policy; false if there was none.
pub fn remove_policy(store: &dyn Store, id: &str) -> Result<bool, StoreError> {
    remove(store, policy_key(id))
}

/// Releases a hold; false if there was none.
pub fn remove_hold(store: &dyn Store, id: &str) -> Result<bool, StoreError> {
    remove(store, hold_key(id))
}

fn remove(store: &dyn Store, key: Vec<u8>) -> Result<bool, StoreError> {
    if store.record(RecordSpace::Governance, &key)?.is_none() {
        return Ok(false);
    }
    store.commit_records(&RecordBatch {
        delete: vec![(RecordSpace::Governance, key)],
        ..RecordBatch::default()
    })?;
    Ok(true)
}

/// The holds as lookup tables.
struct Held {
    subjects: BTreeMap<String, String>,
    apps: BTreeMap<String, String>,
}

impl Held {
    fn load(store: &dyn Store) -> Result<Held, StoreError> {
        let mut held = Held {
            subjects: BTreeMap::new(),
            apps: BTreeMap::new(),
        };
        for h in holds(store)? {
            if let Some(s) = h.subject_pseudonym {
                held.subjects.insert(s, h.id.clone());
            }
            if let Some(a) = h.app {
                held.apps.insert(a, h.id);
            }
        }
        Ok(held)
    }

    /// The hold covering event `index`, if any (`None` also when erased).
    fn hold_on(&self, vault: &Vault, index: u64) -> Result<Option<String>, StoreError> {
        if self.subjects.is_empty() && self.apps.is_empty() {
            return Ok(None);
        }
        let Some((stored, ev)) = vault.open_event(index)? else {
            return Ok(None);
        };
        if let Some(h) = self.apps.get(&stored.app) {
            return Ok(Some(h.clone()));
        }
        Ok(ev
            .subject
            .as_deref()
            .and_then(|s| self.subjects.get(&vault.subject_pseudonym(s)))
            .cloned())
    }
}

/// What erasing `subject` or `indexes` would destroy, and what holds block.
pub fn plan_erasure(
    vault: &Vault,
    size: u64,
    subject: Option<&str>,
    indexes: &[u64],
) -> Result<Plan, StoreError> {
    let held = Held::load(vault.store().as_ref())?;
    let mut all: BTreeSet<u64> = indexes.iter().copied().filter(|i| *i < size).collect();
    if let Some(s) = subject {
        all.extend(vault.scan(&vault.term(Field::Subject, s), size, usize::MAX)?);
        if let Some(h) = held.subjects.get(&vault.subject_pseudonym(s)) {
            let mut plan = Plan::default();
            plan.held.extend(all.iter().map(|i| (*i, h.clone())));
            return Ok(plan);
        }
    }
    let mut plan = Plan::default();
    for index in all {
        if vault.tombstone(index)?.is_some() {
            continue;
        }
        match held.hold_on(vault, index)? {
            Some(h) => plan.held.push((index, h)),
            None => plan.erase.push(index),
        }
    }
    Ok(plan)
}

/// What the policies expire at `now_ms` in a log of `size` leaves.
pub fn plan_retention(vault: &Vault, size: u64, now_ms: i64) -> Result<Plan, StoreError> {
    let held = Held::load(vault.store().as_ref())?;
    let mut erase = BTreeSet::new();
    let mut plan = Plan::default();
    for p in policies(vault.store().as_ref())? {
        let cutoff = now_ms.saturating_sub(i64::from(p.keep_days) * DAY_MS);
        let hi = first_received_at_or_after(vault.store().as_ref(), size, cutoff)?;
        if hi == 0 {
            continue;
        }
        let candidates: Vec<u64> = match (&p.app, &p.action) {
            (Some(app), _) => vault.scan(&vault.term(Field::App, app), hi, usize::MAX)?,
            (None, Some(action)) => {
                vault.scan(&vault.term(Field::Action, action), hi, usize::MAX)?
            }
            (None, None) => (0..hi).rev().collect(),
        };
        for index in candidates {
            if erase.len() >= MAX_PER_RUN {
                break;
            }
            if erase.contains(&index) || vault.tombstone(index)?.is_some() {
                continue;
            }
            let Some((_, ev)) = vault.open_event(index)? else {
                continue;
            };
            if p.action.as_deref().is_some_and(|a| a != ev.action) {
                continue;
            }
            match held.hold_on(vault, index)? {
                Some(h) => plan.held.push((index, h)),
                None => {
                    erase.insert(index);
                }
            }
        }
    }
    plan.erase = erase.into_iter().collect();
    Ok(plan)
}

/// Carries out a retention plan, in one erasure (one key rotation).
pub fn apply_retention(
    vault: &Vault,
    plan: &Plan,
    now_ms: i64,
) -> Result<crate::vault::ErasureOutcome, StoreError> {
    let tomb = Tombstone {
        erased_at: format_rfc3339_ms(now_ms),
        reason: "retention period expired".into(),
        cause: "retention".into(),
        by: "retention".into(),
    };
    vault.erase(None, &plan.erase, &tomb)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::event::LeafRecord;
    use crate::store::memory::MemoryStore;
    use crate::store::{BatchWrite, StoredEvent};

    const T0: i64 = 1_795_000_000_000; // 2026-11-18

    fn event(subject: Option<&str>, action: &str) -> Vec<u8> {
        let mut v = serde_json::json!({
            "actor": {"id": "a", "type": "user"}, "action": action,
            "resource": {"type": "doc", "id": "d"}, "purpose": "p",
            "outcome": "success", "occurred_at": "2026-11-18T10:00:00Z",
        });
        if let Some(s) = subject {
            v["subject"] = serde_json::json!(s);
        }
        crate::event::parse_event(&v, &crate::event::EventLimits::default())
            .unwrap()
            .canonical_bytes()
    }

    /// A log whose leaves were received at the given times.
    fn log(events: &[(&str, Option<&str>, &str, i64)]) -> Vault {
        let vault = Vault::new(
            Arc::new(MemoryStore::new()),
            &MasterKey::from_bytes([3; 32]),
        )
        .unwrap();
        // One batch per leaf, each sealed at its own receive time, as the
        // sequencer's write path seals and commits a batch.
        let mut leaves = Vec::new();
        for (i, (app, subject, action, received)) in events.iter().enumerate() {
            let salt = [i as u8; 32];
            let canonical = event(*subject, action);
            leaves.push(
                LeafRecord {
                    app: app.to_string(),
                    received_ms: *received,
                    commitment: crate::event::commitment(&salt, &canonical),
                }
                .to_bytes(),
            );
            let write = BatchWrite {
                tree_size: i as u64 + 1,
                bundles: vec![(0, crate::tiles::encode_bundle(&leaves).unwrap())],
                ..BatchWrite::default()
            };
            let event = crate::vault::EventToSeal {
                index: i as u64,
                event: StoredEvent {
                    app: app.to_string(),
                    salt,
                    event: canonical,
                },
                terms: None,
            };
            let sealed = vault.seal(write, vec![event], *received).unwrap();
            vault.store().commit(sealed.write()).unwrap();
            sealed.committed();
        }
        vault
    }

    #[test]
    fn wholly_expired_days_lose_their_key_and_held_days_keep_it() {
        let day = DAY_MS;
        let vault = log(&[
            ("clinic", None, "record.read", T0),             // 0: day 1
            ("clinic", None, "record.read", T0 + 1000),      // 1: day 1
            ("clinic", Some("held"), "record.read", T0 + 5), // 2: day 1, held subject
            ("lab", None, "result.write", T0),               // 3: day 1, no policy
            ("clinic", None, "record.read", T0 + 2 * day),   // 4: day 3, not expired
        ]);
        put_policy(
            vault.store().as_ref(),
            &Policy {
                id: "p1".into(),
                app: Some("clinic".into()),
                action: None,
                keep_days: 1,
                created_at: "t".into(),
                created_by: "admin".into(),
            },
        )
        .unwrap();
        put_hold(
            vault.store().as_ref(),
            &Hold {
                id: "h1".into(),
                subject_pseudonym: Some(vault.subject_pseudonym("held")),
                app: None,
                reason: "case".into(),
                created_at: "t".into(),
                created_by: "admin".into(),
            },
        )
        .unwrap();
        let now = T0 + 2 * day + 10;
        let plan = plan_retention(&vault, 5, now).unwrap();
        assert_eq!(plan.erase, vec![0, 1]);
        assert_eq!(plan.held, vec![(2, "h1".to_string())]);
        let out = apply_retention(&vault, &plan, now).unwrap();
        assert_eq!(out.erased, vec![0, 1]);
        // Each expired event's own key; nothing re-sealed.
        assert_eq!((out.keys_destroyed, out.keys_replaced), (2, 0));
        assert!(vault.event(2).unwrap().is_some(), "held");
        assert!(vault.event(3).unwrap().is_some(), "no policy");
        assert!(vault.event(4).unwrap().is_some(), "not expired");
        assert_eq!(vault.tombstone(0).unwrap().unwrap().cause, "retention");
        // A second run finds nothing new.
        let again = plan_retention(&vault, 5, now).unwrap();
        assert!(again.erase.is_empty());
        // An action policy only takes that action; a held app blocks erasure.
        put_policy(
            vault.store().as_ref(),
            &Policy {
                id: "p2".into(),
                app: None,
                action: Some("result.write".into()),
                keep_days: 0,
                created_at: "t".into(),
                created_by: "admin".into(),
            },
        )
        .unwrap();
        assert_eq!(plan_retention(&vault, 5, now).unwrap().erase, vec![3]);
        put_hold(
            vault.store().as_ref(),
            &Hold {
                id: "h2".into(),
                subject_pseudonym: None,
                app: Some("lab".into()),
                reason: "case".into(),
                created_at: "t".into(),
                created_by: "admin".into(),
            },
        )
        .unwrap();
        let plan = plan_retention(&vault, 5, now).unwrap();
        assert!(plan.erase.is_empty());
        let plan = plan_erasure(&vault, 5, None, &[3, 4]).unwrap();
        assert_eq!(plan.erase, vec![4]);
        assert_eq!(plan.held, vec![(3, "h2".to_string())]);
        let plan = plan_erasure(&vault, 5, Some("held"), &[]).unwrap();
        assert!(plan.erase.is_empty() && plan.held.len() == 1);
        assert!(remove_hold(vault.store().as_ref(), "h1").unwrap());
        assert!(!remove_hold(vault.store().as_ref(), "h1").unwrap());
        assert_eq!(
            plan_erasure(&vault, 5, Some("held"), &[]).unwrap().erase,
            vec![2]
        );
    }
}
