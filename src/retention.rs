//! Retention policies, legal holds, and planning what retention and
//! erasure may destroy.
//!
//! A policy keeps the events of an app and/or an action for N days after
//! the log received them; a retention run erases the bodies and salts of
//! older ones. A legal hold (on a data subject or an app) blocks both
//! retention and erasure of the events it covers, until it is released.
//! Subject holds are matched by the subject's pseudonym (its index term).
//! The subject as the admin typed it is personal data: the hold keeps it
//! only sealed to the subject ([`Vault::seal_subject_note`]), under a key
//! derived from the subject's own key in the key store. A hold blocks the
//! erasure of its subject, so the subject can be erased only once the
//! hold (and its record) is gone; the erasure then destroys that key, so
//! any copy of the record left elsewhere (a backup, a stale page of the
//! database) no longer opens. Holds made before the subject was kept have
//! the pseudonym alone.
//!
//! A run is bounded: it examines at most [`MAX_EXAMINED_PER_RUN`]
//! candidates over all policies, read from the index term of the policy's
//! app or action (or, for a policy of every app and action, the leaf
//! range) with a limit, newest first. Each policy keeps its progress: every
//! candidate below a watermark was decided (erased, or held when it was
//! decided), and a sweep under way remembers where it stopped, so a run
//! never decides the same candidate again, and one that has more to do
//! continues at the next run. Releasing a hold starts the policies that
//! saw it over, as what it kept may now expire.
//!
//! Erasing goes through [`Vault::erase`], which destroys each data key
//! whose events are all gone (a whole expired day of an app, a whole month
//! of a subject) and replaces the others, so no stale copy of an expired
//! body opens any more.
//!
//! A plan is made without a lock and may be stale by the time it is
//! carried out, so [`destroy`] re-checks the holds for the exact final set
//! and erases in one critical section that storing a hold ([`put_hold`])
//! also takes: a hold stored before the destruction is honoured, one stored
//! after it finds the events already gone.
//!
//! Invariant: nothing held when it is destroyed is ever erased; leaves,
//! tiles and checkpoints are never touched (erasure goes through
//! [`Vault::erase`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::crypto::Field;
use crate::event::format_rfc3339_ms;
use crate::search::first_received_at_or_after;
use crate::store::{RecordBatch, RecordSpace, Store, StoreError};
use crate::vault::{ErasureOutcome, Tombstone, Vault};

const DAY_MS: i64 = 86_400_000;
/// Most candidates one retention run examines (and so erases); the next
/// run continues.
pub const MAX_EXAMINED_PER_RUN: usize = 100_000;

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

/// Most legal holds a log keeps at once.
pub const MAX_HOLDS: usize = 10_000;

/// A legal hold on a data subject (by pseudonym) or an app, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Random id.
    pub id: String,
    /// The held subject's pseudonym.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_pseudonym: Option<String>,
    /// The held subject as typed, sealed to it ([`seal_hold_subject`]),
    /// hex; absent in holds made before the subject was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_sealed: Option<String>,
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
    /// The hold on the subject a subject erasure names, if any: it blocks
    /// the erasure even when the subject has no events (the hold's own
    /// record of the subject is sealed under the subject's key).
    pub subject_held: Option<String>,
    /// The holds that existed when the plan was made.
    pub holds_seen: BTreeSet<String>,
    /// Candidates examined.
    pub examined: usize,
    /// Each policy's progress once this plan is carried out.
    progress: Vec<(String, Progress)>,
}

/// How far a policy's runs have got. Candidates are decided newest first,
/// in sweeps: a sweep starts at the expiry boundary of its first run and
/// walks down to `done_below`, which it then raises to where it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    /// Every candidate below this leaf index was decided.
    done_below: u64,
    /// The sweep under way: (where it started, where it stopped); every
    /// candidate in `stopped..started` was decided.
    sweep: Option<(u64, u64)>,
    /// The holds that existed while candidates were decided: when one of
    /// them is released, what it kept must be decided again.
    holds: BTreeSet<String>,
}

/// Storing a hold and destroying events exclude each other (see the
/// module comment). One per process: a process serves one log, and two
/// handles on one store must not race either.
static DESTRUCTION: Mutex<()> = Mutex::new(());

fn destruction_lock() -> MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic elsewhere leaves nothing half done.
    DESTRUCTION.lock().unwrap_or_else(|p| p.into_inner())
}

fn policy_key(id: &str) -> Vec<u8> {
    format!("policy/{id}").into_bytes()
}

fn hold_key(id: &str) -> Vec<u8> {
    format!("hold/{id}").into_bytes()
}

fn progress_key(policy: &str) -> Vec<u8> {
    format!("retention-progress/{policy}").into_bytes()
}

fn progress(store: &dyn Store, policy: &str) -> Result<Progress, StoreError> {
    match store.record(RecordSpace::Governance, &progress_key(policy))? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt("retention progress", e)),
        None => Ok(Progress::default()),
    }
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

fn hold_note_purpose(id: &str) -> Vec<u8> {
    format!("legal-hold/{id}").into_bytes()
}

/// `subject` sealed to itself for the hold `id`, as
/// [`Hold::subject_sealed`] keeps it.
pub fn seal_hold_subject(vault: &Vault, id: &str, subject: &str) -> Result<String, StoreError> {
    let sealed = vault.seal_subject_note(subject, &hold_note_purpose(id), subject.as_bytes())?;
    Ok(hex::encode(sealed))
}

/// How a hold's subject can be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeldSubject {
    /// The subject as the admin typed it.
    Typed(String),
    /// The hold was made before subjects were kept: its pseudonym alone.
    PseudonymOnly,
    /// The kept subject no longer opens: its key was destroyed (the
    /// subject was erased in the log this record came from).
    Unreadable,
}

/// The subject of subject hold `h` (`None` for an app hold).
pub fn held_subject(vault: &Vault, h: &Hold) -> Result<Option<HeldSubject>, StoreError> {
    if h.subject_pseudonym.is_none() {
        return Ok(None);
    }
    let Some(sealed) = &h.subject_sealed else {
        return Ok(Some(HeldSubject::PseudonymOnly));
    };
    let bytes = hex::decode(sealed).map_err(|e| corrupt("legal hold subject", e))?;
    Ok(Some(
        match vault.open_subject_note(&bytes, &hold_note_purpose(&h.id))? {
            Some(plain) => HeldSubject::Typed(
                String::from_utf8(plain).map_err(|e| corrupt("legal hold subject", e))?,
            ),
            None => HeldSubject::Unreadable,
        },
    ))
}

/// Stores a policy.
pub fn put_policy(store: &dyn Store, p: &Policy) -> Result<(), StoreError> {
    let v = serde_json::to_vec(p).map_err(|e| corrupt("retention policy", e))?;
    store.put_record(RecordSpace::Governance, &policy_key(&p.id), &v)
}

/// Stores a hold, never in the middle of a destruction.
pub fn put_hold(store: &dyn Store, h: &Hold) -> Result<(), StoreError> {
    let v = serde_json::to_vec(h).map_err(|e| corrupt("legal hold", e))?;
    let _no_destruction = destruction_lock();
    store.put_record(RecordSpace::Governance, &hold_key(&h.id), &v)
}

/// Deletes a policy (and its progress); false if there was none.
pub fn remove_policy(store: &dyn Store, id: &str) -> Result<bool, StoreError> {
    remove(store, policy_key(id), Some(progress_key(id)))
}

/// Releases a hold; false if there was none.
pub fn remove_hold(store: &dyn Store, id: &str) -> Result<bool, StoreError> {
    remove(store, hold_key(id), None)
}

fn remove(store: &dyn Store, key: Vec<u8>, also: Option<Vec<u8>>) -> Result<bool, StoreError> {
    if store.record(RecordSpace::Governance, &key)?.is_none() {
        return Ok(false);
    }
    let delete = std::iter::once(key)
        .chain(also)
        .map(|k| (RecordSpace::Governance, k))
        .collect();
    store.commit_records(&RecordBatch {
        delete,
        ..RecordBatch::default()
    })?;
    Ok(true)
}

/// The holds as lookup tables.
struct Held {
    subjects: BTreeMap<String, String>,
    apps: BTreeMap<String, String>,
    ids: BTreeSet<String>,
}

impl Held {
    fn load(store: &dyn Store) -> Result<Held, StoreError> {
        let mut held = Held {
            subjects: BTreeMap::new(),
            apps: BTreeMap::new(),
            ids: BTreeSet::new(),
        };
        for h in holds(store)? {
            held.ids.insert(h.id.clone());
            if let Some(s) = h.subject_pseudonym {
                held.subjects.insert(s, h.id.clone());
            }
            if let Some(a) = h.app {
                held.apps.insert(a, h.id);
            }
        }
        Ok(held)
    }

    /// The events of `subject` in an app under hold, with the hold: none,
    /// at no cost, while no app is held; else the subject's events are
    /// read through the search index.
    fn subject_events_in_held_apps(
        &self,
        vault: &Vault,
        subject: &str,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        if self.apps.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for index in vault.scan(&vault.term(Field::Subject, subject), u64::MAX, usize::MAX)? {
            let Some((stored, _)) = vault.open_event(index)? else {
                continue;
            };
            if let Some(h) = self.apps.get(&stored.app) {
                out.push((index, h.clone()));
            }
        }
        Ok(out)
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
    let all: BTreeSet<u64> = indexes.iter().copied().filter(|i| *i < size).collect();
    let mut plan = Plan {
        holds_seen: held.ids.clone(),
        ..Plan::default()
    };
    if let Some(s) = subject {
        if let Some(h) = held.subjects.get(&vault.subject_pseudonym(s)) {
            plan.subject_held = Some(h.clone());
            return Ok(plan);
        }
        // The subject's events are erased by destroying its key; only a
        // hold on an app can cover some of them.
        plan.held = held.subject_events_in_held_apps(vault, s)?;
    }
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

/// What the policies expire at `now_ms` in a log of `size` leaves, within
/// [`MAX_EXAMINED_PER_RUN`] candidates.
pub fn plan_retention(vault: &Vault, size: u64, now_ms: i64) -> Result<Plan, StoreError> {
    plan_retention_within(vault, size, now_ms, MAX_EXAMINED_PER_RUN)
}

/// [`plan_retention`], examining at most `budget` candidates.
pub fn plan_retention_within(
    vault: &Vault,
    size: u64,
    now_ms: i64,
    budget: usize,
) -> Result<Plan, StoreError> {
    let store = vault.store().as_ref();
    let held = Held::load(store)?;
    let mut erase = BTreeSet::new();
    let mut plan = Plan {
        holds_seen: held.ids.clone(),
        ..Plan::default()
    };
    for p in policies(store)? {
        let left = budget.saturating_sub(plan.examined);
        if left == 0 {
            break;
        }
        let mut progress = progress(store, &p.id)?;
        if !progress.holds.is_subset(&held.ids) {
            // A hold it saw was released: decide everything again.
            progress = Progress::default();
        }
        let cutoff = now_ms.saturating_sub(i64::from(p.keep_days) * DAY_MS);
        let hi = first_received_at_or_after(store, size, cutoff)?;
        let (started, stopped) = progress.sweep.unwrap_or((hi, hi));
        if started <= progress.done_below {
            continue;
        }
        let (candidates, finished) =
            candidates_below(vault, &p, progress.done_below, stopped, left)?;
        plan.examined += candidates.len();
        for &index in &candidates {
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
        progress.sweep = match candidates.last() {
            _ if finished => None,
            Some(&last) => Some((started, last)),
            None => Some((started, stopped)),
        };
        if finished {
            progress.done_below = started;
        }
        progress.holds = held.ids.clone();
        plan.progress.push((p.id.clone(), progress));
    }
    plan.erase = erase.into_iter().collect();
    Ok(plan)
}

/// Up to `limit` candidates of policy `p` in `lo..below`, newest first,
/// and whether they are all there are.
fn candidates_below(
    vault: &Vault,
    p: &Policy,
    lo: u64,
    below: u64,
    limit: usize,
) -> Result<(Vec<u64>, bool), StoreError> {
    let term = match (&p.app, &p.action) {
        (Some(app), _) => vault.term(Field::App, app),
        (None, Some(action)) => vault.term(Field::Action, action),
        (None, None) => {
            let out: Vec<u64> = (lo..below).rev().take(limit).collect();
            let finished = out.len() < limit || out.last() == Some(&lo);
            return Ok((out, finished));
        }
    };
    // One more than asked: whether the sweep is over is then known now.
    let mut out = vault.scan(&term, below, limit.saturating_add(1))?;
    let reached_lo = out.iter().any(|i| *i < lo);
    out.retain(|i| *i >= lo);
    let finished = reached_lo || out.len() <= limit;
    out.truncate(limit);
    Ok((out, finished))
}

/// What [`destroy`] did.
#[derive(Debug)]
pub struct Destroyed {
    /// The erasure, unless a hold stored since the plan refused all of it.
    pub outcome: Option<ErasureOutcome>,
    /// Planned events found under a hold stored since the plan: (index, hold id).
    pub held: Vec<(u64, String)>,
    /// A hold on the erased subject stored since the plan, which refused
    /// the whole erasure.
    pub subject_held: Option<String>,
}

/// Carries out `plan` (for `subject`, when it erases one) unless a hold
/// stored since covers it, in one critical section with [`put_hold`].
/// With `partial`, newly held events are left out and the rest erased;
/// without, any of them refuses the whole erasure.
pub fn destroy(
    vault: &Vault,
    plan: &Plan,
    subject: Option<&str>,
    tomb: &Tombstone,
    partial: bool,
) -> Result<Destroyed, StoreError> {
    let _no_new_hold = destruction_lock();
    let held = Held::load(vault.store().as_ref())?;
    let mut now_held = Vec::new();
    // Only a hold the plan did not see can cover what it chose.
    if !held.ids.is_subset(&plan.holds_seen) {
        let subject_hold = subject.and_then(|s| held.subjects.get(&vault.subject_pseudonym(s)));
        if let Some(h) = subject_hold {
            if !partial {
                // Held before its key is destroyed: nothing is erased.
                return Ok(Destroyed {
                    outcome: None,
                    held: plan.erase.iter().map(|i| (*i, h.clone())).collect(),
                    subject_held: Some(h.clone()),
                });
            }
            now_held.extend(plan.erase.iter().map(|i| (*i, h.clone())));
        } else {
            for &index in &plan.erase {
                if let Some(h) = held.hold_on(vault, index)? {
                    now_held.push((index, h));
                }
            }
            if let Some(s) = subject
                && !partial
            {
                now_held.extend(held.subject_events_in_held_apps(vault, s)?);
            }
        }
    }
    if !now_held.is_empty() && !partial {
        return Ok(Destroyed {
            outcome: None,
            held: now_held,
            subject_held: None,
        });
    }
    let kept: BTreeSet<u64> = now_held.iter().map(|(i, _)| *i).collect();
    let erase: Vec<u64> = plan
        .erase
        .iter()
        .copied()
        .filter(|i| !kept.contains(i))
        .collect();
    if erase.is_empty() && subject.is_none() {
        return Ok(Destroyed {
            outcome: Some(ErasureOutcome::default()),
            held: now_held,
            subject_held: None,
        });
    }
    let outcome = vault.erase(subject, &erase, tomb)?;
    Ok(Destroyed {
        outcome: Some(outcome),
        held: now_held,
        subject_held: None,
    })
}

/// Carries out a retention plan, in one erasure (one key rotation), leaving
/// out what a hold stored since the plan covers, then saves each policy's
/// progress (not before: a failed erasure is decided again next time).
pub fn apply_retention(vault: &Vault, plan: &Plan, now_ms: i64) -> Result<Destroyed, StoreError> {
    let tomb = Tombstone {
        erased_at: format_rfc3339_ms(now_ms),
        reason: "retention period expired".into(),
        cause: "retention".into(),
        by: "retention".into(),
    };
    let done = destroy(vault, plan, None, &tomb, true)?;
    let mut put = Vec::with_capacity(plan.progress.len());
    for (policy, progress) in &plan.progress {
        let mut progress = progress.clone();
        progress
            .holds
            .extend(done.held.iter().map(|(_, h)| h.clone()));
        let v = serde_json::to_vec(&progress).map_err(|e| corrupt("retention progress", e))?;
        put.push((RecordSpace::Governance, progress_key(policy), v));
    }
    if !put.is_empty() {
        vault.store().commit_records(&RecordBatch {
            put,
            ..RecordBatch::default()
        })?;
    }
    Ok(done)
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

    /// A legal hold on a subject (its pseudonym) or an app.
    fn hold(id: &str, subject: Option<String>, app: Option<&str>) -> Hold {
        Hold {
            id: id.into(),
            subject_pseudonym: subject,
            subject_sealed: None,
            app: app.map(str::to_string),
            reason: "case".into(),
            created_at: "t".into(),
            created_by: "admin".into(),
        }
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
            &hold("h1", Some(vault.subject_pseudonym("held")), None),
        )
        .unwrap();
        let now = T0 + 2 * day + 10;
        let plan = plan_retention(&vault, 5, now).unwrap();
        assert_eq!(plan.erase, vec![0, 1]);
        assert_eq!(plan.held, vec![(2, "h1".to_string())]);
        let out = apply_retention(&vault, &plan, now)
            .unwrap()
            .outcome
            .unwrap();
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
        put_hold(vault.store().as_ref(), &hold("h2", None, Some("lab"))).unwrap();
        let plan = plan_retention(&vault, 5, now).unwrap();
        assert!(plan.erase.is_empty());
        let plan = plan_erasure(&vault, 5, None, &[3, 4]).unwrap();
        assert_eq!(plan.erase, vec![4]);
        assert_eq!(plan.held, vec![(3, "h2".to_string())]);
        let plan = plan_erasure(&vault, 5, Some("held"), &[]).unwrap();
        assert!(plan.erase.is_empty() && plan.subject_held.as_deref() == Some("h1"));
        assert!(remove_hold(vault.store().as_ref(), "h1").unwrap());
        assert!(!remove_hold(vault.store().as_ref(), "h1").unwrap());
        let plan = plan_erasure(&vault, 5, Some("held"), &[]).unwrap();
        // Its events go with its key, not one by one.
        assert!(plan.erase.is_empty() && plan.held.is_empty() && plan.subject_held.is_none());
    }

    fn policy(id: &str, app: Option<&str>) -> Policy {
        Policy {
            id: id.into(),
            app: app.map(str::to_string),
            action: None,
            keep_days: 0,
            created_at: "t".into(),
            created_by: "admin".into(),
        }
    }

    /// Runs retention until a run finds nothing to examine; the erased
    /// count and examined count of each run.
    fn run_until_idle(vault: &Vault, size: u64, budget: usize) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        loop {
            let plan = plan_retention_within(vault, size, T0 + DAY_MS, budget).unwrap();
            assert!(plan.examined <= budget, "{} > {budget}", plan.examined);
            if plan.examined == 0 {
                return runs;
            }
            let done = apply_retention(vault, &plan, T0 + DAY_MS).unwrap();
            runs.push((done.outcome.unwrap().erased.len(), plan.examined));
            assert!(runs.len() < 100, "retention never finishes");
        }
    }

    #[test]
    fn a_policy_of_every_app_examines_a_bounded_range_per_run_and_the_next_run_continues() {
        let events: Vec<_> = (0..30).map(|i| ("clinic", None, "r", T0 + i)).collect();
        let vault = log(&events);
        put_policy(vault.store().as_ref(), &policy("all", None)).unwrap();
        let runs = run_until_idle(&vault, 30, 8);
        assert_eq!(runs, vec![(8, 8), (8, 8), (8, 8), (6, 6)]);
        assert!((0..30).all(|i| vault.tombstone(i).unwrap().is_some()));
    }

    #[test]
    fn an_app_or_action_policy_scans_its_term_with_a_limit_and_a_cursor() {
        let events: Vec<_> = (0..30)
            .map(|i| (if i % 2 == 0 { "clinic" } else { "lab" }, None, "r", T0 + i))
            .collect();
        let vault = log(&events);
        put_policy(vault.store().as_ref(), &policy("clinic", Some("clinic"))).unwrap();
        let runs = run_until_idle(&vault, 30, 4);
        assert_eq!(runs, vec![(4, 4), (4, 4), (4, 4), (3, 3)]);
        for i in 0..30 {
            assert_eq!(vault.tombstone(i).unwrap().is_some(), i % 2 == 0, "{i}");
        }
        // Every candidate was decided: nothing is examined again.
        let plan = plan_retention_within(&vault, 30, T0 + DAY_MS, 4).unwrap();
        assert_eq!(plan.examined, 0);

        // An action policy, the same way, through its action's term.
        let events: Vec<_> = (0..30)
            .map(|i| ("clinic", None, if i % 3 == 0 { "w" } else { "r" }, T0 + i))
            .collect();
        let vault = log(&events);
        let mut writes = policy("writes", None);
        writes.action = Some("w".into());
        put_policy(vault.store().as_ref(), &writes).unwrap();
        let runs = run_until_idle(&vault, 30, 4);
        assert_eq!(runs, vec![(4, 4), (4, 4), (2, 2)]);
        for i in 0..30 {
            assert_eq!(vault.tombstone(i).unwrap().is_some(), i % 3 == 0, "{i}");
        }
    }

    #[test]
    fn a_hold_stored_after_a_run_was_planned_keeps_what_it_covers() {
        // Events 0 and 1 are the subject's; every one of the six expired.
        let events: Vec<_> = (0..6)
            .map(|i| ("clinic", (i < 2).then_some("kept"), "r", T0 + i))
            .collect();
        let vault = log(&events);
        put_policy(vault.store().as_ref(), &policy("p", Some("clinic"))).unwrap();
        let plan = plan_retention(&vault, 6, T0 + DAY_MS).unwrap();
        assert_eq!(plan.erase, (0..6).collect::<Vec<u64>>());
        // The hold arrives between the plan and the destruction.
        let subject = Some(vault.subject_pseudonym("kept"));
        put_hold(vault.store().as_ref(), &hold("h", subject, None)).unwrap();
        let done = apply_retention(&vault, &plan, T0 + DAY_MS).unwrap();
        assert_eq!(done.held, vec![(0, "h".into()), (1, "h".into())]);
        assert_eq!(done.outcome.unwrap().erased, vec![2, 3, 4, 5]);
        for i in 0..6 {
            assert_eq!(vault.event(i).unwrap().is_some(), i < 2, "{i}");
        }
        // Released, the next runs erase what it kept.
        assert!(remove_hold(vault.store().as_ref(), "h").unwrap());
        assert_eq!(run_until_idle(&vault, 6, 100), vec![(2, 2)]);
        assert!((0..6).all(|i| vault.event(i).unwrap().is_none()));

        // A hold on the whole app, stored after the plan, keeps all of it.
        let vault = log(&events);
        put_policy(vault.store().as_ref(), &policy("p", Some("clinic"))).unwrap();
        let plan = plan_retention(&vault, 6, T0 + DAY_MS).unwrap();
        put_hold(vault.store().as_ref(), &hold("a", None, Some("clinic"))).unwrap();
        let done = apply_retention(&vault, &plan, T0 + DAY_MS).unwrap();
        assert_eq!(done.held.len(), 6);
        assert!(done.outcome.is_none_or(|o| o.erased.is_empty()));
        assert!((0..6).all(|i| vault.event(i).unwrap().is_some()));
    }

    #[test]
    fn held_candidates_are_decided_once_until_their_hold_is_released() {
        let events: Vec<_> = (0..10)
            .map(|i| ("clinic", Some("kept"), "r", T0 + i))
            .collect();
        let vault = log(&events);
        put_policy(vault.store().as_ref(), &policy("p", Some("clinic"))).unwrap();
        put_hold(
            vault.store().as_ref(),
            &hold("h", Some(vault.subject_pseudonym("kept")), None),
        )
        .unwrap();
        let first = plan_retention_within(&vault, 10, T0 + DAY_MS, 100).unwrap();
        assert_eq!((first.erase.len(), first.held.len()), (0, 10));
        apply_retention(&vault, &first, T0 + DAY_MS).unwrap();
        // The next runs open none of them again.
        let second = plan_retention_within(&vault, 10, T0 + DAY_MS, 100).unwrap();
        assert_eq!((second.examined, second.held.len()), (0, 0));
        assert!(remove_hold(vault.store().as_ref(), "h").unwrap());
        let runs = run_until_idle(&vault, 10, 100);
        assert_eq!(runs, vec![(10, 10)]);
    }
}
