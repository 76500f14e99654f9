//! fsck over a log the real sequencer wrote to a [`MemoryStore`], then
//! damaged one object at a time.

use std::sync::Arc;

use super::*;
use crate::merkle::Hash;
use crate::note::keys::LogKeys;
use crate::sequencer::PreparedEvent;
use crate::sequencer::test_log::{TestLog, TestLogBuilder};
use crate::store::memory::MemoryStore;
use crate::store::{BatchWrite, DedupeKey};

const ORIGIN: &str = "fsck.example/log";
/// Two full level-0 tiles, a partial one, and a partial level-1 tile.
const SIZE: usize = 600;

fn build_log() -> (Arc<MemoryStore>, LogKeys) {
    let mut log = TestLogBuilder::new(ORIGIN).plaintext().start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for chunk in (0..SIZE).collect::<Vec<_>>().chunks(100) {
            let events = chunk
                .iter()
                .map(|&i| {
                    let id = i.is_multiple_of(2).then(|| format!("id-{i}"));
                    let canonical = match &id {
                        Some(id) => format!(r#"{{"id":"{id}","n":{i}}}"#),
                        None => format!(r#"{{"n":{i}}}"#),
                    }
                    .into_bytes();
                    let mut salt = [0u8; 32];
                    salt[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    PreparedEvent {
                        id,
                        commitment: crate::event::commitment(&salt, &canonical),
                        terms: None,
                        canonical,
                        salt,
                    }
                })
                .collect();
            log.submit("app-a", events).await;
        }
    });
    log.shutdown();
    let TestLog { store, keys, .. } = log;
    assert_eq!(store.tree_size().unwrap(), SIZE as u64);
    (store, keys)
}

fn fsck(store: &MemoryStore, keys: &LogKeys) -> Report {
    check_store(store, keys, &ProgressBar::hidden()).unwrap()
}

/// Writes one changed object over the store (the tree size stays).
fn overwrite(store: &MemoryStore, change: impl FnOnce(&mut BatchWrite)) {
    let mut b = BatchWrite {
        tree_size: store.tree_size().unwrap(),
        ..BatchWrite::default()
    };
    change(&mut b);
    store.commit(&b).unwrap();
}

fn first(report: &Report) -> String {
    assert!(!report.is_clean(), "the damage went unnoticed");
    report.findings[0].to_string()
}

#[test]
fn a_log_written_by_the_sequencer_is_clean() {
    let (store, keys) = build_log();
    let r = fsck(&store, &keys);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.tree_size, SIZE as u64);
    assert_eq!(r.checkpoint_size, Some(SIZE as u64));
    assert_eq!(r.bundles, 3);
    // Three level-0 tiles and the partial level-1 tile.
    assert_eq!(r.tiles, 4);
    assert_eq!(r.events, SIZE as u64);
    assert_eq!(r.leaf_index_entries, SIZE as u64);
    assert_eq!(r.dedupe_entries, SIZE as u64 / 2);
}

#[test]
fn names_the_tile_and_hash_that_the_entries_contradict() {
    let (store, keys) = build_log();
    let mut tile = store.tile(0, 1).unwrap().unwrap();
    tile[17 * 32 + 5] ^= 0x40;
    overwrite(&store, |b| b.tiles.push((0, 1, tile)));
    let r = fsck(&store, &keys);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    let f = first(&r);
    assert!(f.starts_with("tile 0/001: hash 17 is "), "{f}");
    assert!(f.contains("entries give"), "{f}");
}

#[test]
fn an_altered_entry_is_blamed_on_its_bundle_not_the_tile() {
    let (store, keys) = build_log();
    let mut entries = crate::tiles::decode_bundle(&store.bundle(2).unwrap().unwrap()).unwrap();
    entries[3][10] ^= 0x01;
    let bundle = crate::tiles::encode_bundle(&entries).unwrap();
    overwrite(&store, |b| b.bundles.push((2, bundle)));
    let r = fsck(&store, &keys);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    let f = first(&r);
    assert!(
        f.starts_with("entry bundle 002.p/88: leaf 515 hashes to "),
        "{f}"
    );
    assert!(
        f.contains("tile 0/002.p/88 and the leaf-hash index say"),
        "{f}"
    );
}

#[test]
fn a_malformed_bundle_is_one_finding() {
    let (store, keys) = build_log();
    let mut bundle = store.bundle(0).unwrap().unwrap();
    bundle.truncate(bundle.len() - 1);
    overwrite(&store, |b| b.bundles.push((0, bundle)));
    let r = fsck(&store, &keys);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert!(
        first(&r).starts_with("entry bundle 000: is malformed"),
        "{}",
        first(&r)
    );
}

#[test]
fn checks_the_partial_tiles_of_the_upper_levels() {
    let (store, keys) = build_log();
    let mut tile = store.tile(1, 0).unwrap().unwrap();
    assert_eq!(tile.len(), 64, "two full level-0 tiles below");
    tile[40] ^= 1;
    overwrite(&store, |b| b.tiles.push((1, 0, tile)));
    let f = first(&fsck(&store, &keys));
    assert!(f.starts_with("tile 1/000.p/2: hash 1 is "), "{f}");
}

#[test]
fn an_altered_salt_breaks_the_commitment() {
    let (store, keys) = build_log();
    let mut ev = store.event(300).unwrap().unwrap();
    ev.salt[31] ^= 1;
    overwrite(&store, |b| b.events.push((300, ev)));
    let f = first(&fsck(&store, &keys));
    assert!(
        f.starts_with("event 300: commitment(salt, event) is "),
        "{f}"
    );
}

#[test]
fn index_entries_must_point_at_their_leaf() {
    let (store, keys) = build_log();
    overwrite(&store, |b| b.leaf_index.push((Hash([0xab; 32]), 6)));
    let f = first(&fsck(&store, &keys));
    assert!(f.contains("has 601 entries for 600 leaves"), "{f}");
    let r = fsck(&store, &keys);
    assert!(
        r.findings.iter().any(
            |f| f.object == format!("leaf-hash index entry {}", "ab".repeat(16))
                && f.problem
                    .contains("points at leaf 6, whose hash is different")
        ),
        "{:?}",
        r.findings
    );

    let (store, keys) = build_log();
    let stray = DedupeKey::of("app-a", "an id no event has");
    overwrite(&store, |b| b.dedupe.push((stray, 5)));
    let r = fsck(&store, &keys);
    assert!(
        r.findings.iter().any(|f| f.object
            == format!("idempotency entry {}", hex::encode(stray.0))
            && f.problem
                .contains("whose app and event id have another key")),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_tree_size_the_objects_do_not_support_is_found() {
    let (store, keys) = build_log();
    overwrite(&store, |b| b.tree_size = SIZE as u64 - 1);
    let r = fsck(&store, &keys);
    assert!(!r.is_clean());
    assert!(
        r.findings
            .iter()
            .any(|f| f.object == "tree size" && f.problem.contains("covers 600")),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_wild_tree_size_stops_after_max_findings() {
    let (store, keys) = build_log();
    overwrite(&store, |b| b.tree_size = 1 << 50);
    let r = fsck(&store, &keys);
    assert_eq!(r.findings.len(), MAX_FINDINGS);
    assert!(r.stopped_early);
}

#[test]
fn a_checkpoint_signed_with_other_keys_is_rejected() {
    let (store, _) = build_log();
    let other = LogKeys::generate().unwrap();
    let f = first(&fsck(&store, &other));
    assert!(f.starts_with("checkpoint: "), "{f}");
}

/// An erased subject's event that the search index did not list keeps its
/// sealed body, which no key opens: fsck finds it erased under its
/// subject's tombstone, not vanished.
#[test]
fn an_erased_subjects_event_the_index_missed_is_erased_not_vanished() {
    let mut log = TestLogBuilder::new(ORIGIN).start();
    // Distinct events: the same body and salt would make the same leaf.
    let prepared = |subject: &str, doc: &str| {
        crate::sequencer::test_log::prepared(&serde_json::json!({
            "actor": {"id": "dr", "type": "user"}, "action": "record.read",
            "resource": {"type": "doc", "id": doc}, "subject": subject,
            "purpose": "care", "outcome": "success",
            "occurred_at": "2026-11-25T10:00:00.000Z",
        }))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(log.submit(
        "app-a",
        vec![
            prepared("alice", "d0"),
            prepared("alice", "d1"),
            prepared("bob", "d2"),
        ],
    ));
    log.shutdown();
    let vault = log.vault();
    let check = || {
        check_store_unsealing(
            log.store.as_ref(),
            Some(&vault),
            &log.keys,
            &ProgressBar::hidden(),
        )
        .unwrap()
    };
    let r = check();
    assert!(r.is_clean(), "{:?}", r.findings);
    vault.forget_in_index(1).unwrap();
    let tomb = crate::vault::Tombstone {
        erased_at: "2026-11-26T00:00:00Z".into(),
        reason: "asked".into(),
        cause: "erasure".into(),
        by: "admin".into(),
    };
    let out = vault.erase(Some("alice"), &[], &tomb).unwrap();
    assert!(out.cleanup_pending);
    // Mid-cleanup: both of alice's bodies are stored, under her tombstone.
    let r = check();
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.sealed_checked, 1, "bob's event only");
    while vault.cleanup_step(1000).unwrap() {}
    let r = check();
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.sealed_checked, 1, "bob's event only");
    assert_eq!(r.erased, 2, "{r:?}");
    // The index lists event 0 only: the cleanup deletes its body alone.
    let body = |i: u64| {
        log.store
            .record(RecordSpace::Sealed, &i.to_be_bytes())
            .unwrap()
    };
    assert!(body(0).is_none() && body(1).is_some());
    // Without its subject's tombstone the same event would be a finding.
    let subject_tombstones: Vec<Vec<u8>> = log
        .store
        .records(RecordSpace::Erased)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.len() != 8)
        .collect();
    assert_eq!(subject_tombstones.len(), 1);
    log.store
        .commit_records(&crate::store::RecordBatch {
            delete: vec![(RecordSpace::Erased, subject_tombstones[0].clone())],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first(&check()), "sealed event 1: vanished while being read");
}
