//! The sequencer over the in-memory store: batches commit and publish in
//! order, repeated ids are answered with their first index, the queue
//! budget pushes back and frees, and a failed commit (before or after the
//! store persisted it) is recovered from. After every step, `check_log`
//! checks what a reader would: the published checkpoint's signatures, its
//! root against the stored tiles, and its consistency with the checkpoint
//! published before.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::crypto::MasterKey;
use crate::merkle;
use crate::note::keys::LogKeys;
use crate::note::{Note, NoteVerifier};
use crate::store::memory::{MemoryStore, WriteFault};
use crate::store::{Store, StoredCheckpoint};
use crate::vault::Vault;

const ORIGIN: &str = "sequencer.example/log";
/// The time of the manual clock when a log starts.
const T0: i64 = 1_795_000_000_000;

struct Log {
    store: Arc<MemoryStore>,
    vault: Arc<Vault>,
    keys: LogKeys,
    clock: ManualClock,
    view: Arc<LogView>,
    sequencer: Option<Sequencer>,
    rt: tokio::runtime::Runtime,
    /// The last checkpoint `check_log` saw.
    seen: Published,
}

fn start(config: SequencerConfig) -> Log {
    let keys = LogKeys::generate().unwrap();
    let store = Arc::new(MemoryStore::new());
    let vault = Arc::new(Vault::new(store.clone(), &MasterKey::from_bytes([2; 32])).unwrap());
    let signer = Arc::new(CheckpointSigner::from_keys(&keys, ORIGIN).unwrap());
    let clock = ManualClock::at(T0);
    let empty = signer.sign(0, merkle::empty_root(), T0).unwrap();
    store
        .put_checkpoint(&StoredCheckpoint {
            published_at_ms: T0,
            note: empty.note.clone().into_bytes(),
        })
        .unwrap();
    let view = Arc::new(LogView::new(empty.clone(), 0, clock.clock()));
    let sequencer = Sequencer::start(
        store.clone(),
        Sealing::Vault(vault.clone()),
        signer,
        config,
        view.clone(),
        RightEdge::empty(),
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    Log {
        store,
        vault,
        keys,
        clock,
        view,
        sequencer: Some(sequencer),
        rt,
        seen: empty,
    }
}

/// A submission of events numbered `ids` (each with id `ev-<n>`, or none
/// for a negative number), accepted as `POST /v1/events` accepts them.
fn events(vault: &Vault, app: &str, ids: &[i64]) -> Vec<PreparedEvent> {
    let parsed = ids
        .iter()
        .map(|&n| {
            let mut v = serde_json::json!({
                "actor": {"id": "u1", "type": "user"},
                "action": "record.read",
                "resource": {"type": "doc", "id": format!("doc-{n}")},
                "subject": format!("subject-{}", n.rem_euclid(3)),
                "purpose": "care",
                "outcome": "success",
                "occurred_at": "2026-11-25T10:00:00Z",
            });
            if n >= 0 {
                v["id"] = serde_json::json!(format!("ev-{n}"));
            }
            crate::event::parse_event(&v, &crate::event::EventLimits::default()).unwrap()
        })
        .collect();
    accept(vault, app, parsed).unwrap()
}

impl Log {
    fn handle(&self) -> SequencerHandle {
        self.sequencer.as_ref().unwrap().handle()
    }

    fn submit(&self, app: &str, ids: &[i64], wait: bool) -> Result<Receipt, SubmitError> {
        let prepared = events(&self.vault, app, ids);
        self.rt
            .block_on(self.handle().submit(app.into(), prepared, wait))
    }

    fn indices(receipt: &Receipt) -> Vec<u64> {
        receipt.entries.iter().map(|e| e.index).collect()
    }

    /// The oracle: the published checkpoint is signed by both log keys, its
    /// root is the root of the stored tiles at its size, the store holds at
    /// least that many leaves, and it is consistent with the checkpoint
    /// seen before.
    fn check_log(&mut self) {
        let published = self.view.checkpoint();
        let s = self.keys.signers(ORIGIN).unwrap();
        let (ecdsa, ed25519) = (s.ecdsa.verifier(), s.ed25519.verifier());
        let verifiers: [&dyn NoteVerifier; 2] = [&ecdsa, &ed25519];
        let note = Note::parse(published.note.as_bytes()).unwrap();
        assert_eq!(note.verify(&verifiers).unwrap().len(), 2);
        let cp = &published.checkpoint;
        let store: &dyn Store = self.store.as_ref();
        assert!(store.tree_size().unwrap() >= cp.size);
        assert!(self.view.durable_size() >= cp.size);
        let source = TileSource::new(store);
        assert_eq!(merkle::tree_root(cp.size, &source).unwrap(), cp.root);
        let before = &self.seen.checkpoint;
        assert!(cp.size >= before.size, "checkpoints never shrink");
        if before.size > 0 {
            let proof = merkle::consistency_proof(before.size, cp.size, &source).unwrap();
            merkle::verify_consistency(before.size, cp.size, &before.root, &cp.root, &proof)
                .unwrap();
        }
        self.seen = (*published).clone();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.sequencer.take() {
            s.shutdown();
        }
    }
}

#[test]
fn batches_commit_and_publish_in_order() {
    let mut log = start(SequencerConfig::default());
    let mut next = 0;
    for size in [1, 3, 255, 2, 300] {
        let ids: Vec<i64> = (next..next + size).collect();
        let receipt = log.submit("app", &ids, true).unwrap();
        let expected: Vec<u64> = (next as u64..(next + size) as u64).collect();
        assert_eq!(Log::indices(&receipt), expected);
        assert!(receipt.entries.iter().all(|e| !e.duplicate));
        let cp = receipt.checkpoint.expect("a checkpoint was asked for");
        assert_eq!(cp.checkpoint.size, (next + size) as u64);
        assert_eq!(log.view.checkpoint().checkpoint.size, cp.checkpoint.size);
        log.check_log();
        next += size;
        log.clock.advance_ms(1000);
    }
    // The events were sealed on the way: the store holds no plaintext
    // body, and the vault opens each one.
    assert_eq!(log.store.event(0).unwrap(), None);
    let (stored, event) = log.vault.open_event(560).unwrap().unwrap();
    assert_eq!(stored.app, "app");
    assert_eq!(event.id.as_deref(), Some("ev-560"));
    // Leaves carry the clock's time of their batch.
    let (_, leaf) = crate::search::leaf_at(log.store.as_ref(), 0).unwrap();
    assert_eq!(leaf.received_ms, T0);
    log.shutdown();
    assert_eq!(log.store.tree_size().unwrap(), next as u64);
}

#[test]
fn a_leaf_is_never_received_before_the_one_before_it() {
    let log = start(SequencerConfig::default());
    log.submit("app", &[1], false).unwrap();
    log.clock.advance_ms(-60_000);
    log.submit("app", &[2], false).unwrap();
    let received = |i| {
        crate::search::leaf_at(log.store.as_ref(), i)
            .unwrap()
            .1
            .received_ms
    };
    assert_eq!(received(0), T0);
    assert_eq!(received(1), T0, "the clock went back; the leaf did not");
}

#[test]
fn a_repeated_id_gets_its_first_index_within_a_batch_and_across_batches() {
    let mut log = start(SequencerConfig::default());
    let first = log.submit("app", &[1, 2, 1, -1], true).unwrap();
    assert_eq!(Log::indices(&first), vec![0, 1, 0, 2]);
    assert_eq!(
        first
            .entries
            .iter()
            .map(|e| e.duplicate)
            .collect::<Vec<_>>(),
        vec![false, false, true, false]
    );
    assert_eq!(first.entries[2].leaf_hash, first.entries[0].leaf_hash);
    let again = log.submit("app", &[2, 3, -1], true).unwrap();
    assert_eq!(
        Log::indices(&again),
        vec![1, 3, 4],
        "an event without id is new"
    );
    assert!(again.entries[0].duplicate);
    assert_eq!(again.entries[0].leaf_hash, first.entries[1].leaf_hash);
    assert_eq!(again.entries[0].commitment, first.entries[1].commitment);
    // Ids are per app.
    let other = log.submit("other-app", &[1], false).unwrap();
    assert_eq!(Log::indices(&other), vec![5]);
    assert!(!other.entries[0].duplicate);
    // A batch of duplicates only appends nothing and still gets a checkpoint
    // that covers it.
    let dup = log.submit("app", &[3], true).unwrap();
    assert_eq!(Log::indices(&dup), vec![3]);
    assert_eq!(dup.checkpoint.unwrap().checkpoint.size, 6);
    log.check_log();
    assert_eq!(log.store.tree_size().unwrap(), 6);
}

#[test]
fn the_queue_budget_refuses_while_full_and_frees_once_answered() {
    let config = SequencerConfig {
        queue_budget: QueueLimits {
            max_events: 4,
            max_bytes: 1 << 20,
        },
        ..SequencerConfig::default()
    };
    let mut log = start(config);
    log.store.hold_commits(true);
    let handle = log.handle();
    let prepared = events(&log.vault, "app", &[1, 2, 3]);
    let waiting = log
        .rt
        .spawn(async move { handle.submit("app".into(), prepared, false).await });
    // The three events hold their share of the budget until answered.
    while log.store.held_commits() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(
        log.submit("app", &[4, 5], false),
        Err(SubmitError::Busy)
    ));
    log.store.hold_commits(false);
    let first = log.rt.block_on(waiting).unwrap().unwrap();
    assert_eq!(Log::indices(&first), vec![0, 1, 2]);
    let second = log.submit("app", &[4, 5], true).unwrap();
    assert_eq!(Log::indices(&second), vec![3, 4]);
    log.check_log();
}

/// A log of two events whose next batch (ids 3 and 4) failed to commit
/// as `fault` says; the store works again afterwards.
fn after_a_failed_commit(fault: WriteFault) -> Log {
    let mut log = start(SequencerConfig::default());
    log.submit("app", &[1, 2], true).unwrap();
    log.check_log();
    log.store.inject(fault);
    let failed = log.submit("app", &[3, 4], true);
    assert!(matches!(failed, Err(SubmitError::Store(_))), "{failed:?}");
    assert!(!log.view.failed(), "the sequencer goes on");
    log.check_log();
    log.store.inject(WriteFault::None);
    log
}

#[test]
fn a_commit_that_fails_before_persisting_fails_its_batch_and_the_next_one_takes_its_place() {
    let mut log = after_a_failed_commit(WriteFault::BeforePersisting);
    // Nothing of it is durable or published.
    assert_eq!(log.store.tree_size().unwrap(), 2);
    assert_eq!(log.view.durable_size(), 2);
    assert_eq!(log.view.checkpoint().checkpoint.size, 2);
    // The retried events get the indices the failed batch would have had.
    let retried = log.submit("app", &[3, 4], true).unwrap();
    assert_eq!(Log::indices(&retried), vec![2, 3]);
    assert!(retried.entries.iter().all(|e| !e.duplicate));
    assert_eq!(retried.checkpoint.unwrap().checkpoint.size, 4);
    log.check_log();
    assert!(log.vault.event(3).unwrap().is_some());
}

#[test]
fn a_commit_that_fails_after_persisting_is_taken_up_from_the_store() {
    let mut log = after_a_failed_commit(WriteFault::AfterPersisting);
    // The batch landed: the sequencer reloaded the larger tree from the
    // store, but publishes no checkpoint it never heard was durable.
    assert_eq!(log.store.tree_size().unwrap(), 4);
    assert_eq!(log.view.durable_size(), 4);
    assert_eq!(log.view.checkpoint().checkpoint.size, 2);
    // A retry of the failed events finds them where they landed, and new
    // events follow them.
    let retried = log.submit("app", &[3, 4, 5], true).unwrap();
    assert_eq!(Log::indices(&retried), vec![2, 3, 4]);
    assert_eq!(
        retried
            .entries
            .iter()
            .map(|e| e.duplicate)
            .collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_eq!(retried.checkpoint.unwrap().checkpoint.size, 5);
    log.check_log();
    // The bodies that landed with the failed batch open: their data keys
    // landed with them.
    for index in 2..5 {
        assert!(log.vault.event(index).unwrap().is_some(), "{index}");
    }
}

#[test]
fn a_failed_commit_never_adopts_a_stored_tree_that_does_not_extend_ours() {
    let mut log = start(SequencerConfig::default());
    log.submit("app", &[1, 2], true).unwrap();
    log.check_log();
    // Another log's larger tree lands in the store behind the sequencer's
    // back (a wrong restore, a second writer), then the next commit fails.
    let mut other = start(SequencerConfig::default());
    other.submit("app", &[7, 8, 9, 10], true).unwrap();
    let forged = crate::store::BatchWrite {
        tree_size: 4,
        tiles: vec![(0, 0, other.store.tile(0, 0).unwrap().unwrap())],
        bundles: vec![(0, other.store.bundle(0).unwrap().unwrap())],
        ..crate::store::BatchWrite::default()
    };
    log.store.commit(&forged).unwrap();
    log.store.inject(WriteFault::BeforePersisting);
    let failed = log.submit("app", &[3], true);
    assert!(matches!(failed, Err(SubmitError::Store(_))), "{failed:?}");
    assert!(
        log.view.failed(),
        "a tree that does not extend the committed one is never adopted"
    );
    assert_eq!(log.view.durable_size(), 2);
    other.shutdown();
    log.shutdown();
}

#[test]
fn shutdown_signs_a_final_checkpoint_for_what_it_committed() {
    let config = SequencerConfig {
        checkpoint_interval: Duration::from_secs(3600),
        ..SequencerConfig::default()
    };
    let mut log = start(config);
    log.submit("app", &[1, 2, 3], false).unwrap();
    assert_eq!(log.view.checkpoint().checkpoint.size, 0, "not yet due");
    log.clock.set_ms(T0 + 5000);
    log.shutdown();
    let cp = log.view.checkpoint();
    assert_eq!(cp.checkpoint.size, 3);
    assert_eq!(cp.published_at_ms, T0 + 5000);
    let stored = Published::from_stored(&log.store.checkpoint().unwrap().unwrap()).unwrap();
    assert_eq!(stored.note, cp.note);
    log.check_log();
}
