use std::fs;

use super::*;
use crate::event::LeafRecord;
use crate::store::BatchWrite;
use crate::store::memory::MemoryStore;
use crate::tiles;

fn event_json(subject: Option<&str>, actor: &str) -> Vec<u8> {
    let mut v = serde_json::json!({
        "actor": {"id": actor, "type": "user"},
        "action": "record.read",
        "resource": {"type": "doc", "id": "d-1"},
        "purpose": "care",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00.000Z",
        "context": {"note": "MARKER-context"},
    });
    if let Some(s) = subject {
        v["subject"] = serde_json::json!(s);
    }
    let ev = crate::event::parse_event(&v, &crate::event::EventLimits::default()).unwrap();
    ev.canonical_bytes()
}

/// A first batch of the log: events at indexes 0.., with their leaves.
fn batch(events: &[(u64, Option<&str>)]) -> BatchWrite {
    let events: Vec<(u64, StoredEvent)> = events
        .iter()
        .map(|(i, s)| {
            (
                *i,
                StoredEvent {
                    app: "billing".into(),
                    salt: [*i as u8; 32],
                    event: event_json(*s, "MARKER-actor"),
                },
            )
        })
        .collect();
    let leaves: Vec<Vec<u8>> = events
        .iter()
        .map(|(_, e)| {
            LeafRecord {
                app: e.app.clone(),
                received_ms: RECEIVED_MS,
                commitment: crate::event::commitment(&e.salt, &e.event),
            }
            .to_bytes()
        })
        .collect();
    BatchWrite {
        tree_size: events.last().map_or(0, |(i, _)| i + 1),
        bundles: vec![(0, tiles::encode_bundle(&leaves).unwrap())],
        events,
        ..BatchWrite::default()
    }
}

/// The receive time of every leaf [`batch`] makes.
const RECEIVED_MS: i64 = 1_795_000_000_000;

/// Seals and commits `b` as the sequencer's write path does, each event
/// with the search terms of `terms` (`None`: derived by the vault).
fn commit_with_terms(vault: &Vault, b: &BatchWrite, terms: Vec<Option<Vec<Term>>>) {
    let mut write = b.clone();
    let mut terms = terms.into_iter();
    let events = std::mem::take(&mut write.events)
        .into_iter()
        .map(|(index, event)| EventToSeal {
            index,
            event,
            terms: terms.next().flatten(),
        })
        .collect();
    let sealed = vault.seal(write, events, RECEIVED_MS).unwrap();
    vault.store().commit(sealed.write()).unwrap();
    sealed.committed();
}

/// Seals and commits `b`, the vault deriving the search terms.
fn commit(vault: &Vault, b: &BatchWrite) {
    commit_with_terms(vault, b, Vec::new());
}

fn dump(store: &MemoryStore) -> Vec<u8> {
    let mut all = Vec::new();
    for space in [
        RecordSpace::Sealed,
        RecordSpace::DataKey,
        RecordSpace::Erased,
    ] {
        for (k, v) in store.records(space).unwrap() {
            all.extend(k);
            all.extend(v);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn events_are_stored_sealed_and_read_back_in_plaintext() {
    let inner = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
    let b = batch(&[(0, Some("MARKER-subject")), (1, None)]);
    commit(&vault, &b);
    assert_eq!(inner.event(0).unwrap(), None, "no plaintext event stored");
    let raw = dump(&inner);
    for marker in ["MARKER-subject", "MARKER-actor", "MARKER-context"] {
        assert!(!contains(&raw, marker.as_bytes()), "{marker} in plaintext");
    }
    assert_eq!(vault.event(0).unwrap(), Some(b.events[0].1.clone()));
    assert_eq!(vault.event(1).unwrap(), Some(b.events[1].1.clone()));
    // A fresh vault (new process) unwraps the stored keys.
    let again = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
    assert_eq!(again.event(0).unwrap(), Some(b.events[0].1.clone()));
    assert!(Vault::new(inner, &MasterKey::from_bytes([2; 32])).is_err());
}

#[test]
fn index_terms_find_events_without_plaintext() {
    let inner = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner, &MasterKey::from_bytes([1; 32])).unwrap();
    commit(
        &vault,
        &batch(&[(0, Some("alice")), (1, Some("bob")), (2, Some("alice"))]),
    );
    let alice = vault.term(Field::Subject, "alice");
    assert_eq!(vault.scan(&alice, u64::MAX, 10).unwrap(), vec![2, 0]);
    let actor = vault.term(Field::Actor, "MARKER-actor");
    assert_eq!(vault.scan(&actor, u64::MAX, 10).unwrap(), vec![2, 1, 0]);
}

#[test]
fn erasing_a_subject_destroys_its_key_bodies_and_index_entries() {
    let inner = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
    commit(
        &vault,
        &batch(&[(0, Some("alice")), (1, Some("bob")), (2, None)]),
    );
    let sealed_alice = inner.record(RecordSpace::Sealed, &be(0)).unwrap().unwrap();
    let tomb = Tombstone {
        erased_at: "2026-11-25T10:00:00.000Z".into(),
        reason: "GDPR art. 17 request".into(),
        cause: "erasure".into(),
        by: "ops".into(),
    };
    let out = vault.erase(Some("alice"), &[], &tomb).unwrap();
    assert_eq!(out.erased, vec![0]);
    assert_eq!(out.keys_destroyed, 1);
    assert_eq!(vault.event(0).unwrap(), None);
    assert_eq!(vault.tombstone(0).unwrap(), Some(tomb.clone()));
    assert!(
        vault
            .scan(&vault.term(Field::Subject, "alice"), u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        vault
            .scan(&vault.term(Field::Actor, "MARKER-actor"), u64::MAX, 10)
            .unwrap(),
        vec![2, 1]
    );
    // Even a copy of the sealed body kept elsewhere no longer opens:
    // its key is gone from the store.
    let (key_id, _) = decode_sealed(&sealed_alice).unwrap();
    assert_eq!(inner.record(RecordSpace::DataKey, key_id).unwrap(), None);
    assert!(vault.event(1).unwrap().is_some());
    // Erasing by index leaves the shared day key but destroys the body.
    let out = vault.erase(None, &[2, 0], &tomb).unwrap();
    assert_eq!(out.erased, vec![2], "already erased events are skipped");
    assert_eq!(vault.event(2).unwrap(), None);
    assert!(vault.event(1).unwrap().is_some());
}

#[test]
fn the_search_index_survives_a_crash_and_erasure_reaches_its_stored_blocks() {
    let inner = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([1; 32]);
    let open =
        || Vault::open_with_index_flush(inner.clone(), &master, KeyringHome::Store, 3).unwrap();
    let subjects = [
        "alice", "bob", "alice", "carol", "alice", "bob", "alice", "carol", "alice",
    ];
    // One batch per event, each growing the bundle by one leaf.
    let all: Vec<(u64, Option<&str>)> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, Some(*s)))
        .collect();
    let whole = batch(&all);
    let leaves = tiles::decode_bundle(&whole.bundles[0].1).unwrap();
    let one = |i: usize| BatchWrite {
        tree_size: i as u64 + 1,
        bundles: vec![(0, tiles::encode_bundle(&leaves[..=i]).unwrap())],
        events: vec![whole.events[i].clone()],
        ..BatchWrite::default()
    };
    let vault = open();
    for i in 0..7 {
        commit(&vault, &one(i));
    }
    vault.flush_index().unwrap();
    assert_eq!(vault.index_watermark().unwrap(), 7);
    for i in 7..9 {
        commit(&vault, &one(i));
    }
    let scan = |v: &Vault, field, value| v.scan(&v.term(field, value), u64::MAX, 100).unwrap();
    assert_eq!(scan(&vault, Field::Subject, "alice"), vec![8, 6, 4, 2, 0]);
    // A crash: the two newest events were never written to the index.
    drop(vault);
    assert_eq!(inner.index_watermark().unwrap(), Some(7));
    let vault = open();
    assert_eq!(scan(&vault, Field::Subject, "alice"), vec![8, 6, 4, 2, 0]);
    assert_eq!(scan(&vault, Field::Subject, "carol"), vec![7, 3]);
    assert_eq!(
        vault
            .scan(&vault.term(Field::Subject, "alice"), 5, 2)
            .unwrap(),
        vec![4, 2]
    );
    let tomb = Tombstone {
        erased_at: "2026-11-25T10:00:00.000Z".into(),
        reason: "GDPR art. 17 request".into(),
        cause: "erasure".into(),
        by: "ops".into(),
    };
    let out = vault.erase(Some("alice"), &[3], &tomb).unwrap();
    assert_eq!(out.erased, vec![0, 2, 3, 4, 6, 8]);
    let check = |v: &Vault| {
        assert!(scan(v, Field::Subject, "alice").is_empty());
        assert_eq!(scan(v, Field::Subject, "carol"), vec![7]);
        assert_eq!(scan(v, Field::Subject, "bob"), vec![5, 1]);
        assert_eq!(scan(v, Field::Actor, "MARKER-actor"), vec![7, 5, 1]);
    };
    check(&vault);
    // Erased postings stay out of the stored blocks and of the index
    // re-derived on the next start.
    drop(vault);
    let vault = open();
    check(&vault);
    vault.flush_index().unwrap();
    drop(vault);
    check(&open());
}

#[test]
fn a_store_without_a_search_index_is_indexed_on_open() {
    let inner = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([1; 32]);
    {
        let vault = Vault::new(inner.clone(), &master).unwrap();
        commit(&vault, &batch(&[(0, Some("alice")), (1, Some("bob"))]));
        vault.flush_index().unwrap();
    }
    // As after a restore, which carries no index.
    inner.clear_index().unwrap();
    let vault = Vault::new(inner.clone(), &master).unwrap();
    let alice = vault.term(Field::Subject, "alice");
    assert_eq!(vault.scan(&alice, u64::MAX, 10).unwrap(), vec![0]);
    assert_eq!(inner.index_watermark().unwrap(), Some(0));
    vault.flush_index().unwrap();
    assert_eq!(inner.index_watermark().unwrap(), Some(2));
}

#[test]
fn a_data_key_id_names_the_subject_pseudonym_and_the_receive_period() {
    let vault = Vault::new(
        Arc::new(MemoryStore::new()),
        &MasterKey::from_bytes([1; 32]),
    )
    .unwrap();
    for subject in [None, Some("al\"ice \u{e9}\\"), Some("plain")] {
        let mut v = serde_json::json!({
            "actor": {"id": "st\"aff", "type": "user"},
            "action": "record.read",
            "resource": {"type": "doc", "id": "d\\1/\u{2603}"},
            "purpose": "care",
            "outcome": "success",
            "occurred_at": "2026-11-25T10:00:00.000Z",
            "context": {"subject": "not this one", "nested": {"actor": {"id": "nor this"}}},
        });
        if let Some(s) = subject {
            v["subject"] = serde_json::json!(s);
        }
        let ev = crate::event::parse_event(&v, &crate::event::EventLimits::default()).unwrap();
        let canonical = ev.canonical_bytes();
        let parsed: AuditEvent = serde_json::from_slice(&canonical).unwrap();
        let terms = vault.terms_of("app", &parsed);
        let subject_term = terms.iter().find(|t| t.0[0] == Field::Subject.tag());
        let received = crate::event::format_rfc3339_ms(1_795_000_000_000);
        let key = vault.key_id_for("app", subject_term, &received);
        let expected = match subject {
            Some(s) => format!("s/{}/2026-11", vault.subject_pseudonym(s)),
            None => "d/app/2026-11-18".to_string(),
        };
        assert_eq!(String::from_utf8(key).unwrap(), expected);
    }
}

#[test]
fn terms_and_receive_time_given_by_the_writer_seal_and_index_as_derived_ones() {
    let master = MasterKey::from_bytes([1; 32]);
    let plain = batch(&[(0, Some("alice")), (1, None), (2, Some("bob"))]);
    let derived = Arc::new(MemoryStore::new());
    commit(&Vault::new(derived.clone(), &master).unwrap(), &plain);
    let given = Arc::new(MemoryStore::new());
    let vault = Vault::new(given.clone(), &master).unwrap();
    // The receive time is the batch's, always given by the sequencer.
    let terms = plain
        .events
        .iter()
        .map(|(_, e)| {
            let ev: AuditEvent = serde_json::from_slice(&e.event).unwrap();
            Some(vault.terms_of(&e.app, &ev))
        })
        .collect();
    commit_with_terms(&vault, &plain, terms);
    for i in 0..3 {
        assert_eq!(key_id_of(given.as_ref(), i), key_id_of(derived.as_ref(), i));
        assert_eq!(
            vault.event(i).unwrap(),
            Some(plain.events[i as usize].1.clone())
        );
    }
    let again = Vault::new(derived, &master).unwrap();
    for (field, value) in [
        (Field::Subject, "alice"),
        (Field::Subject, "bob"),
        (Field::Actor, "MARKER-actor"),
        (Field::App, "billing"),
    ] {
        let scan = |v: &Vault| v.scan(&v.term(field, value), u64::MAX, 10).unwrap();
        assert_eq!(scan(&vault), scan(&again), "{value}");
    }
}

fn key_id_of(store: &dyn Store, index: u64) -> Vec<u8> {
    let record = store
        .record(RecordSpace::Sealed, &be(index))
        .unwrap()
        .unwrap();
    decode_sealed(&record).unwrap().0.to_vec()
}

#[test]
fn erasing_some_events_of_a_key_reseals_the_rest_under_a_new_key() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([6; 32])).unwrap();
    let b = batch(&[(0, Some("alice")), (1, Some("alice")), (2, None), (3, None)]);
    commit(&vault, &b);
    let stale_0 = inner.record(RecordSpace::Sealed, &be(0)).unwrap().unwrap();
    let stale_2 = inner.record(RecordSpace::Sealed, &be(2)).unwrap().unwrap();
    let tomb = Tombstone {
        erased_at: "t".into(),
        reason: "r".into(),
        cause: "erasure".into(),
        by: "b".into(),
    };
    let out = vault.erase(None, &[0, 2], &tomb).unwrap();
    assert_eq!(out.erased, vec![0, 2]);
    assert_eq!((out.keys_destroyed, out.keys_replaced), (0, 2));
    // The others read as before ...
    assert_eq!(vault.event(1).unwrap(), Some(b.events[1].1.clone()));
    assert_eq!(vault.event(3).unwrap(), Some(b.events[3].1.clone()));
    // ... but a stale copy of an erased body no longer opens.
    for (index, stale) in [(0u64, stale_0), (2, stale_2)] {
        let (key_id, sealed) = decode_sealed(&stale).unwrap();
        let mut st = vault.lock().unwrap();
        let key = vault.load_key(&mut st, key_id).unwrap().unwrap();
        assert!(open_sealed(&key, index, sealed).is_err());
    }
    // Erasing the last events of a key destroys it.
    let out = vault.erase(None, &[1, 3], &tomb).unwrap();
    assert_eq!((out.keys_destroyed, out.keys_replaced), (2, 0));
    assert!(inner.records(RecordSpace::DataKey).unwrap().is_empty());
}

#[test]
fn destroying_a_key_rotates_the_keyring_file_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([4; 32]);
    let path = dir.path().join(KEYRING_FILE);
    let open = || Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).unwrap();
    let vault = open();
    commit(&vault, &batch(&[(0, Some("alice")), (1, Some("bob"))]));
    let first = fs::read(&path).unwrap();
    let alice_id = key_id_of(inner.as_ref(), 0);
    let bob_id = key_id_of(inner.as_ref(), 1);
    let alice_key = inner
        .record(RecordSpace::DataKey, &alice_id)
        .unwrap()
        .unwrap();
    let bob_key_before = inner
        .record(RecordSpace::DataKey, &bob_id)
        .unwrap()
        .unwrap();
    let tomb = Tombstone {
        erased_at: "t".into(),
        reason: "r".into(),
        cause: "erasure".into(),
        by: "b".into(),
    };
    vault.erase(Some("alice"), &[], &tomb).unwrap();
    assert_ne!(
        fs::read(&path).unwrap(),
        first,
        "the keyring file was replaced"
    );
    assert!(!path.with_extension("new").exists());
    // Old copies of both keys no longer open; bob's current one does.
    assert!(vault.can_open_data_key(&alice_id, &alice_key).is_err());
    assert!(vault.can_open_data_key(&bob_id, &bob_key_before).is_err());
    assert!(vault.event(1).unwrap().is_some());
    drop(vault);
    // A leftover pending file of a rotation whose batch never landed is undone.
    fs::write(path.with_extension("new"), "veritrail-keyring/v1 00 00\n").unwrap();
    let again = open();
    assert!(!path.with_extension("new").exists());
    assert!(again.event(1).unwrap().is_some());
    assert_eq!(again.event(0).unwrap(), None);
    // Without the keyring file the log cannot be opened.
    fs::remove_file(&path).unwrap();
    assert!(Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).is_err());
}

#[test]
fn a_log_refuses_a_missing_or_wrong_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = MemoryStore::new();
    let (key, origin) = open_master_key(&data, &store, None, None).unwrap();
    let path = dir.path().join("data.master.key");
    assert_eq!(origin, MasterKeyOrigin::Created(path.clone()));
    let (again, origin) = open_master_key(&data, &store, None, None).unwrap();
    assert_eq!(origin, MasterKeyOrigin::File(path.clone()));
    assert_eq!(again.check_value(), key.check_value());
    let other = MasterKey::generate().unwrap().to_hex();
    let err = open_master_key(&data, &store, Some(&other), None).unwrap_err();
    assert!(err.to_string().contains("not this log's"), "{err}");
    assert!(open_master_key(&data, &store, Some(&key.to_hex()), None).is_ok());
    fs::remove_file(&path).unwrap();
    let err = open_master_key(&data, &store, None, None).unwrap_err();
    assert!(err.to_string().contains("was not found"), "{err}");
    assert!(!path.exists(), "no new key is made for an existing log");
}
