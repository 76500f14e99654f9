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
    assert!(out.erased.is_empty(), "a subject's events are not read");
    assert!(out.cleanup_pending);
    assert_eq!(out.keys_destroyed, 1);
    assert_eq!(vault.event(0).unwrap(), None);
    assert_eq!(vault.tombstone(0).unwrap(), Some(tomb.clone()));
    assert!(inner.record(RecordSpace::Sealed, &be(0)).unwrap().is_some());
    run_cleanup(&vault);
    assert!(inner.record(RecordSpace::Sealed, &be(0)).unwrap().is_none());
    assert_eq!(vault.tombstone(0).unwrap(), Some(tomb.clone()));
    assert!(
        vault
            .scan(&vault.term(Field::Subject, "alice"), u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        live(
            &vault,
            vault
                .scan(&vault.term(Field::Actor, "MARKER-actor"), u64::MAX, 10)
                .unwrap()
        ),
        vec![2, 1]
    );
    // Even a copy of the sealed body kept elsewhere no longer opens:
    // its key is gone from the key store.
    assert!(stale_key(&vault, 0, &sealed_alice).is_none());
    assert!(vault.event(1).unwrap().is_some());
    // Erasing by index destroys that event's key only.
    let out = vault.erase(None, &[2, 0], &tomb).unwrap();
    assert_eq!(out.erased, vec![2], "already erased events are skipped");
    assert_eq!(vault.event(2).unwrap(), None);
    assert!(vault.event(1).unwrap().is_some());
}

#[test]
fn the_search_index_survives_a_crash_and_erasure_reaches_its_stored_blocks() {
    let inner = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([1; 32]);
    // Flushes only when the test asks: the flusher thread, woken by a
    // commit, would flush at a moment of its own and move the watermark
    // the crash below depends on.
    let open =
        || Vault::open_with_index_flush(inner.clone(), &master, KeyringHome::Store, 1_000).unwrap();
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
    assert_eq!(out.erased, vec![3]);
    run_cleanup(&vault);
    let check = |v: &Vault| {
        assert!(scan(v, Field::Subject, "alice").is_empty());
        assert_eq!(scan(v, Field::Subject, "carol"), vec![7]);
        assert_eq!(scan(v, Field::Subject, "bob"), vec![5, 1]);
        // The erased subject's other postings may stay; no event they
        // name opens.
        assert_eq!(
            live(v, scan(v, Field::Actor, "MARKER-actor")),
            vec![7, 5, 1]
        );
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
fn a_key_id_names_the_subject_slot_and_nothing_else() {
    let inner = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([1; 32])).unwrap();
    commit(
        &vault,
        &batch(&[
            (0, Some("alice")),
            (1, None),
            (2, Some("bob")),
            (3, Some("alice")),
        ]),
    );
    let ids: Vec<Vec<u8>> = (0..4).map(|i| key_id_of(inner.as_ref(), i)).collect();
    assert_eq!(ids[1], vec![keys::KEY_ID_V2]);
    assert_eq!(ids[0].len(), 9);
    assert_eq!(ids[0], ids[3], "one slot per subject");
    assert_ne!(ids[0], ids[2]);
    // No subject, no actor, no time in it.
    for id in &ids {
        assert!(!contains(id, b"alice") && !contains(id, b"2026"));
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

/// The key that would open `stale`, a copy of event `index`'s sealed body.
fn stale_key(vault: &Vault, index: u64, stale: &[u8]) -> Option<crate::crypto::DataKey> {
    let (key_id, sealed) = decode_sealed(stale).unwrap();
    let mut st = vault.lock().unwrap();
    let key = vault.key_of(&mut st, index, key_id).unwrap()?;
    assert!(open_sealed(&key, index, sealed).is_ok());
    Some(key)
}

/// Runs every pending erasure cleanup to its end, in small steps.
fn run_cleanup(vault: &Vault) {
    while vault.cleanup_step(2).unwrap() {}
    assert_eq!(vault.erasure_cleanups_pending().unwrap(), 0);
}

/// Those of `indexes` whose events open.
fn live(vault: &Vault, indexes: Vec<u64>) -> Vec<u64> {
    indexes
        .into_iter()
        .filter(|i| vault.event(*i).unwrap().is_some())
        .collect()
}

fn tomb() -> Tombstone {
    Tombstone {
        erased_at: "t".into(),
        reason: "r".into(),
        cause: "erasure".into(),
        by: "b".into(),
    }
}

/// Every sealed body as stored, by index.
fn sealed_bodies(store: &dyn Store) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .records(RecordSpace::Sealed)
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn erasing_events_reseals_nothing_and_keeps_every_other_event_readable() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([6; 32])).unwrap();
    let b = batch(&[(0, Some("alice")), (1, Some("alice")), (2, None), (3, None)]);
    commit(&vault, &b);
    let before = sealed_bodies(inner.as_ref());
    let out = vault.erase(None, &[0, 2], &tomb()).unwrap();
    assert_eq!(out.erased, vec![0, 2]);
    assert_eq!((out.keys_destroyed, out.keys_replaced), (2, 0));
    // The others read as before, from the very same stored bytes ...
    let after = sealed_bodies(inner.as_ref());
    for i in [1u64, 3] {
        assert_eq!(
            after.get(&be(i)),
            before.get(&be(i)),
            "event {i} was re-sealed"
        );
        assert_eq!(
            vault.event(i).unwrap(),
            Some(b.events[i as usize].1.clone())
        );
    }
    assert_eq!(after.len(), 2);
    // ... but a stale copy of an erased body no longer opens.
    for i in [0u64, 2] {
        assert!(stale_key(&vault, i, &before[&be(i)]).is_none(), "{i}");
    }
    let out = vault.erase(None, &[1, 3], &tomb()).unwrap();
    assert_eq!((out.keys_destroyed, out.keys_replaced), (2, 0));
}

#[test]
fn an_erasure_writes_the_same_few_key_blocks_whatever_the_log_size() {
    let master = MasterKey::from_bytes([4; 32]);
    let mut written = Vec::new();
    for size in [300u64, 3000] {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let home = KeyringHome::File(dir.path().join(KEYRING_FILE));
        let vault = Vault::open(inner.clone(), &master, home).unwrap();
        // Many bundles and subjects: many leaf blocks in the key store.
        let subjects: Vec<String> = (0..size).map(|i| format!("s-{}", i % 500)).collect();
        for start in (0..size).step_by(256) {
            let chunk: Vec<(u64, Option<&str>)> = (start..(start + 256).min(size))
                .map(|i| (i, Some(subjects[i as usize].as_str())))
                .collect();
            commit_at(&vault, &chunk);
        }
        let keys = dir.path().join(KEYS_DIR);
        let names = || -> std::collections::BTreeSet<String> {
            fs::read_dir(&keys)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        for (subject, index) in [(None, Some(size / 2)), (Some("s-7"), None)] {
            let before = names();
            let indexes: Vec<u64> = index.into_iter().collect();
            vault.erase(subject, &indexes, &tomb()).unwrap();
            let after = names();
            written.push(after.difference(&before).count());
            assert_eq!(after.len(), before.len(), "old versions are removed");
        }
        assert_eq!(vault.event(size / 2).unwrap(), None);
        assert!(vault.event(size / 2 + 1).unwrap().is_some());
        assert_eq!(vault.event(7).unwrap(), None);
    }
    // Each destruction: its leaf block and the three internal blocks above
    // it (the root file is replaced in place), whatever the log's size.
    assert_eq!(written, vec![4, 4, 4, 4], "{written:?}");
}

/// Commits the events `events` (consecutive indexes) as one batch of a log
/// whose bundles hold each 256 of them.
fn commit_at(vault: &Vault, events: &[(u64, Option<&str>)]) {
    let mut b = batch(events);
    b.bundles.clear();
    b.tree_size = events.last().map_or(0, |(i, _)| i + 1);
    commit(vault, &b);
}

#[test]
fn an_event_missing_from_the_search_index_is_erased_with_its_subject_and_only_then() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let vault = Vault::new(inner.clone(), &MasterKey::from_bytes([6; 32])).unwrap();
    let b = batch(&[
        (0, Some("alice")),
        (1, Some("alice")),
        (2, None),
        (3, None),
        (4, Some("bob")),
    ]);
    commit(&vault, &b);
    // Events 1 (alice's) and 3 (no subject) fall out of the search index.
    let lost: Vec<(Term, u64)> = [1u64, 3]
        .iter()
        .flat_map(|i| {
            let ev: AuditEvent = serde_json::from_slice(&b.events[*i as usize].1.event).unwrap();
            vault
                .terms_of("billing", &ev)
                .into_iter()
                .map(move |t| (t, *i))
        })
        .collect();
    let (removal, _) = vault.index.plan_removal(&lost).unwrap();
    removal.apply(&vault.index).unwrap();
    assert_eq!(
        vault
            .scan(&vault.term(Field::Subject, "alice"), u64::MAX, 10)
            .unwrap(),
        vec![0]
    );
    // Erasing another event of the same day leaves them readable.
    vault.erase(None, &[2], &tomb()).unwrap();
    assert_eq!(vault.event(3).unwrap(), Some(b.events[3].1.clone()));
    assert_eq!(vault.event(1).unwrap(), Some(b.events[1].1.clone()));
    assert_eq!(vault.tombstone(1).unwrap(), None);
    assert_eq!(vault.tombstone(3).unwrap(), None);
    // Erasing alice destroys the event the index does not list too, and it
    // reads as erased, with the erasure's record, not as damaged.
    let alice = Tombstone {
        reason: "alice asked".into(),
        ..tomb()
    };
    vault.erase(Some("alice"), &[], &alice).unwrap();
    run_cleanup(&vault);
    assert!(inner.record(RecordSpace::Sealed, &be(0)).unwrap().is_none());
    assert_eq!(vault.event(1).unwrap(), None);
    assert_eq!(vault.tombstone(1).unwrap(), Some(alice.clone()));
    assert_eq!(vault.tombstone(0).unwrap(), Some(alice.clone()));
    assert_eq!(vault.event(3).unwrap(), Some(b.events[3].1.clone()));
    assert_eq!(vault.tombstone(3).unwrap(), None);
    assert!(vault.event(4).unwrap().is_some());
    assert_eq!(vault.tombstone(4).unwrap(), None);
    // Erasing it again (or listing it) does not erase it twice.
    let again = vault.erase(Some("alice"), &[1], &tomb()).unwrap();
    assert!(again.erased.is_empty(), "{again:?}");
    assert_eq!(vault.tombstone(1).unwrap(), Some(alice));
    // A subject seen again after its erasure gets a new key.
    commit_at(&vault, &[(5, Some("alice"))]);
    assert!(vault.event(5).unwrap().is_some());
    assert_eq!(vault.tombstone(5).unwrap(), None);
    assert_ne!(key_id_of(inner.as_ref(), 5), key_id_of(inner.as_ref(), 1));
}

#[test]
fn destroying_a_key_replaces_the_key_store_root_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([4; 32]);
    let path = dir.path().join(KEYRING_FILE);
    let root = dir.path().join(KEYS_DIR).join("root");
    let open = || Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).unwrap();
    let vault = open();
    commit(&vault, &batch(&[(0, Some("alice")), (1, Some("bob"))]));
    let first = fs::read(&root).unwrap();
    let stale = inner.record(RecordSpace::Sealed, &be(0)).unwrap().unwrap();
    vault.erase(Some("alice"), &[], &tomb()).unwrap();
    assert_ne!(fs::read(&root).unwrap(), first, "the root was replaced");
    assert!(stale_key(&vault, 0, &stale).is_none());
    assert!(vault.event(1).unwrap().is_some());
    drop(vault);
    // A torn root of a write that never finished is dropped.
    fs::write(root.with_extension("new"), "veritrail-keys/v1\n00").unwrap();
    let again = open();
    assert!(!root.with_extension("new").exists());
    assert!(again.event(1).unwrap().is_some());
    assert_eq!(again.event(0).unwrap(), None);
    drop(again);
    // Without the root the log cannot be opened.
    fs::remove_file(&root).unwrap();
    assert!(Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).is_err());
}

#[test]
fn a_failed_sync_during_an_erasure_loses_no_key_and_reopening_finishes_it() {
    use crate::store::memory::WriteFault;
    // Every sync of the erasure's key store write, then the store's own
    // writes (applied, then failing: the first and the last), fails in turn.
    for fail_at in 0..=9u32 {
        let dir = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let inner: Arc<dyn Store> = mem.clone();
        let master = MasterKey::from_bytes([4; 32]);
        let path = dir.path().join(KEYRING_FILE);
        let open = || Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).unwrap();
        let vault = open();
        let b = batch(&[(0, Some("alice")), (1, Some("bob")), (2, None), (3, None)]);
        commit(&vault, &b);
        match fail_at {
            0 => mem.inject(WriteFault::AfterPersisting),
            // The removal of the pending record, after the key store's write.
            9 => mem.inject_after(1, WriteFault::AfterPersisting),
            _ => vault.fail_key_store_sync(fail_at).unwrap(),
        }
        let result = vault.erase(Some("alice"), &[2], &tomb());
        mem.inject(WriteFault::None);
        if result.is_err() {
            // Latched: nothing more is acknowledged until a reopen.
            assert!(vault.erase(None, &[3], &tomb()).is_err(), "{fail_at}");
            let mut w = batch(&[(4, None)]);
            w.bundles.clear();
            let events = std::mem::take(&mut w.events)
                .into_iter()
                .map(|(index, event)| EventToSeal {
                    index,
                    event,
                    terms: None,
                })
                .collect();
            assert!(vault.seal(w, events, RECEIVED_MS).is_err(), "{fail_at}");
        }
        drop(vault);
        let again = open();
        for i in [0u64, 2] {
            assert_eq!(again.event(i).unwrap(), None, "fail at {fail_at}: {i}");
        }
        for i in [1u64, 3] {
            assert_eq!(
                again.event(i).unwrap(),
                Some(b.events[i as usize].1.clone()),
                "fail at {fail_at}: {i}"
            );
        }
        assert!(!dir.path().join(KEYS_DIR).join("root.new").exists());
    }
}
#[test]
fn batches_commit_while_an_erasure_writes_the_key_store_and_one_that_writes_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let master = MasterKey::from_bytes([6; 32]);
    let path = dir.path().join(KEYRING_FILE);
    let open = || Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).unwrap();
    let vault = open();
    let first = batch(&[(0, Some("alice")), (1, Some("bob"))]);
    commit(&vault, &first);
    let faults = vault.lock().unwrap().key_store_faults();
    faults.writes.hold(true);
    // A bundle whose seed is in a key block not written yet.
    let far = 256 * 128;
    std::thread::scope(|s| {
        let erasing = s.spawn(|| vault.erase(Some("alice"), &[], &tomb()));
        while faults.writes.waiting() == 0 {
            std::thread::yield_now();
        }
        // The erasure's key store write is under way, without the key
        // lock: a batch whose keys exist commits, the erased subject's new
        // event under a new slot.
        commit_at(&vault, &[(2, Some("alice")), (3, Some("carol"))]);
        // One that needs a new key block waits for the erasure's write.
        let writing = s.spawn(|| commit_at(&vault, &[(far, Some("dave"))]));
        while vault.lock().unwrap().key_store_waits == 0 {
            std::thread::yield_now();
        }
        assert!(!writing.is_finished());
        faults.writes.hold(false);
        assert_eq!(erasing.join().unwrap().unwrap().keys_destroyed, 1);
        writing.join().unwrap();
    });
    let check = |v: &Vault| {
        assert_eq!(v.event(0).unwrap(), None);
        assert_eq!(v.tombstone(0).unwrap(), Some(tomb()));
        assert_eq!(v.event(1).unwrap(), Some(first.events[1].1.clone()));
        for i in [2, 3, far] {
            assert!(v.event(i).unwrap().is_some(), "{i}");
            assert!(v.tombstone(i).unwrap().is_none(), "{i}");
        }
    };
    check(&vault);
    run_cleanup(&vault);
    check(&vault);
    drop(vault);
    check(&open());
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

/// A log of the form before subject tombstones: subjects `p0` and `p129`
/// (slots in two different leaf blocks of the key store) erased, each with
/// an event the search index missed (130 and 131), without the tombstones
/// of their slots and without the upgrade's progress record.
fn log_erased_without_subject_tombstones() -> crate::sequencer::test_log::TestLog {
    use crate::sequencer::test_log::{TestLogBuilder, prepared};
    let log = TestLogBuilder::new("upgrade.example/log").start();
    let event = |subject: &str, doc: &str| {
        prepared(&serde_json::json!({
            "actor": {"id": "dr", "type": "user"}, "action": "record.read",
            "resource": {"type": "doc", "id": doc}, "subject": subject,
            "purpose": "care", "outcome": "success",
            "occurred_at": "2026-11-25T10:00:00.000Z",
        }))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let first = (0..130).map(|s| event(&format!("p{s}"), "a")).collect();
        log.submit("app-a", first).await;
        log.submit("app-a", vec![event("p0", "b"), event("p129", "b")])
            .await;
    });
    let vault = log.vault();
    for missed in [130, 131] {
        vault.forget_in_index(missed).unwrap();
    }
    for (subject, listed, missed) in [("p0", 0, 130), ("p129", 129, 131)] {
        assert!(
            vault
                .erase(Some(subject), &[], &tomb())
                .unwrap()
                .cleanup_pending
        );
        run_cleanup(&vault);
        // The index lists one event of the subject: the cleanup finds it.
        let own = |i: u64| log.store.record(RecordSpace::Erased, &be(i)).unwrap();
        assert!(own(listed).is_some(), "{subject}");
        assert!(own(missed).is_none(), "{subject}");
    }
    let earlier_form = RecordBatch {
        delete: log
            .store
            .records(RecordSpace::Erased)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.len() != 8)
            .map(|k| (RecordSpace::Erased, k))
            .chain([(RecordSpace::Meta, slot_tombstones::PROGRESS_RECORD.to_vec())])
            .collect(),
        ..RecordBatch::default()
    };
    assert_eq!(earlier_form.delete.len(), 3, "two subject tombstones");
    log.store.commit_records(&earlier_form).unwrap();
    assert_eq!(vault.tombstone(130).unwrap(), None, "the earlier form");
    log
}

fn reopen(log: &crate::sequencer::test_log::TestLog) -> Result<Vault, VaultError> {
    Vault::open(
        log.dyn_store(),
        &MasterKey::from_bytes([9; 32]),
        KeyringHome::Store,
    )
}

fn fsck_of(log: &crate::sequencer::test_log::TestLog, vault: &Vault) -> crate::fsck::Report {
    crate::fsck::check_store_unsealing(
        log.store.as_ref(),
        Some(vault),
        &log.keys,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap()
}

#[test]
fn opening_gives_subjects_erased_before_subject_tombstones_theirs() {
    let mut log = log_erased_without_subject_tombstones();
    log.shutdown();
    let before = fsck_of(&log, &log.vault());
    assert_eq!(
        before.findings.first().map(|f| f.to_string()),
        Some("sealed event 130: vanished while being read".into()),
        "{:?}",
        before.findings
    );
    let vault = reopen(&log).unwrap();
    for missed in [130, 131] {
        assert_eq!(vault.event(missed).unwrap(), None);
        // What makes a read answer 410 with the erasure's record.
        let t = vault
            .tombstone(missed)
            .unwrap()
            .expect("erased, not damaged");
        assert_eq!((t.cause.as_str(), t.by.as_str()), ("erasure", "upgrade"));
    }
    for live in [1, 128] {
        assert!(vault.event(live).unwrap().is_some());
        assert_eq!(vault.tombstone(live).unwrap(), None);
    }
    let after = fsck_of(&log, &vault);
    assert!(after.is_clean(), "{:?}", after.findings);
    assert_eq!(after.erased, 4, "two listed, two missed by the index");
    // Done: a further open writes nothing.
    let writes = log.store.writes();
    drop(reopen(&log).unwrap());
    assert_eq!(log.store.writes(), writes);
}

/// The upgrade commits per key store leaf block: a write that fails after
/// the first (as a crash would stop it) leaves a state the next open
/// completes, and one that never reached the store changes nothing.
#[test]
fn a_failed_write_midway_through_the_upgrade_is_completed_by_the_next_open() {
    use crate::store::memory::WriteFault;
    let mut log = log_erased_without_subject_tombstones();
    log.shutdown();
    let subject_tombstones = |store: &MemoryStore| {
        store
            .records(RecordSpace::Erased)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.len() != 8)
            .count()
    };
    log.store.inject(WriteFault::BeforePersisting);
    assert!(reopen(&log).is_err());
    log.store.inject(WriteFault::None);
    assert_eq!(subject_tombstones(&log.store), 0, "nothing written");
    assert_eq!(
        log.store
            .record(RecordSpace::Meta, slot_tombstones::PROGRESS_RECORD)
            .unwrap(),
        None
    );
    // The first leaf's write reaches the store, its acknowledgement fails:
    // the upgrade stops after one leaf of two.
    log.store.inject(WriteFault::AfterPersisting);
    assert!(reopen(&log).is_err());
    log.store.inject(WriteFault::None);
    assert_eq!(subject_tombstones(&log.store), 1, "the first leaf's");
    assert_eq!(
        log.store
            .record(RecordSpace::Meta, slot_tombstones::PROGRESS_RECORD)
            .unwrap(),
        Some(128u64.to_be_bytes().to_vec()),
        "the next slot to look at"
    );
    let vault = reopen(&log).unwrap();
    assert_eq!(subject_tombstones(&log.store), 2);
    for missed in [130, 131] {
        assert!(vault.tombstone(missed).unwrap().is_some());
    }
    assert!(fsck_of(&log, &vault).is_clean());
}

#[test]
fn a_subjects_cleanup_resumes_after_failed_writes_and_deletes_only_what_no_key_opens() {
    use crate::store::memory::WriteFault;
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemoryStore::new());
    let inner: Arc<dyn Store> = mem.clone();
    let master = MasterKey::from_bytes([5; 32]);
    let path = dir.path().join(KEYRING_FILE);
    let open = || Vault::open(inner.clone(), &master, KeyringHome::File(path.clone())).unwrap();
    let subjects = [
        Some("alice"),
        Some("bob"),
        Some("alice"),
        None,
        Some("alice"),
        Some("alice"),
        None,
        Some("alice"),
        Some("alice"),
    ];
    let all: Vec<(u64, Option<&str>)> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, *s))
        .collect();
    let whole = batch(&all);
    let leaves = tiles::decode_bundle(&whole.bundles[0].1).unwrap();
    let upto = |n: usize| BatchWrite {
        tree_size: n as u64,
        bundles: vec![(0, tiles::encode_bundle(&leaves[..n]).unwrap())],
        events: whole.events[..n].to_vec(),
        ..BatchWrite::default()
    };
    let vault = open();
    commit(&vault, &upto(8));
    let erased = [0u64, 2, 4, 5, 7];
    let out = vault.erase(Some("alice"), &[], &tomb()).unwrap();
    assert!(out.cleanup_pending);
    // A new event of the subject after its erasure, under a new key.
    let mut later = upto(9);
    later.events.drain(..8);
    commit(&vault, &later);
    assert_eq!(vault.erasure_cleanups_pending().unwrap(), 1);
    // Erased at once for reads and searches, before any cleanup.
    let read_now = |v: &Vault| {
        for i in erased {
            assert_eq!(v.event(i).unwrap(), None, "{i}");
            assert_eq!(v.tombstone(i).unwrap(), Some(tomb()), "{i}");
            assert!(crate::search::hit_at(v, i).unwrap().is_none(), "{i}");
        }
        for i in [1u64, 3, 6, 8] {
            assert_eq!(
                v.event(i).unwrap(),
                Some(whole.events[i as usize].1.clone()),
                "{i}"
            );
            assert!(v.tombstone(i).unwrap().is_none(), "{i}");
        }
    };
    read_now(&vault);
    assert!(vault.cleanup_step(2).unwrap());
    // A write that fails before reaching the store, then one that reaches
    // it and reports a failure: the job stays, and nothing is lost.
    for fault in [WriteFault::BeforePersisting, WriteFault::AfterPersisting] {
        mem.inject(fault);
        assert!(vault.cleanup_step(2).is_err());
        mem.inject(WriteFault::None);
        read_now(&vault);
    }
    drop(vault);
    let vault = open();
    read_now(&vault);
    assert_eq!(vault.erasure_cleanups_pending().unwrap(), 1);
    run_cleanup(&vault);
    read_now(&vault);
    for i in erased {
        assert!(
            mem.record(RecordSpace::Sealed, &be(i)).unwrap().is_none(),
            "{i}"
        );
        assert!(mem.event(i).unwrap().is_none(), "{i}");
    }
    // The subject's event since its erasure keeps its body and postings.
    assert_eq!(
        vault
            .scan(&vault.term(Field::Subject, "alice"), u64::MAX, 10)
            .unwrap(),
        vec![8]
    );
    drop(vault);
    let vault = open();
    read_now(&vault);
    assert_eq!(vault.erasure_cleanups_pending().unwrap(), 0);
}
