//! Restore writes a snapshot in a few large batches, never a durable write
//! (an fsync) per record: counted through the in-memory store.

use serde_json::json;

use super::{SnapshotPoint, replay, write_snapshot};
use crate::sequencer::test_log::{TestLogBuilder, prepared};
use crate::store::memory::MemoryStore;
use crate::store::{RecordSpace, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_commits_a_few_batches_not_one_per_record() {
    let mut log = TestLogBuilder::new("example.com/log").start();
    // Events of many subjects: a sealed body and a data key each.
    for batch in 0..4 {
        let events = (0..100)
            .map(|i| {
                prepared(&json!({
                    "actor": {"id": "dr", "type": "user"}, "action": "record.read",
                    "resource": {"type": "doc", "id": format!("d-{batch}-{i}")},
                    "subject": format!("patient-{batch}-{i}"),
                    "purpose": "care", "outcome": "success",
                    "occurred_at": "2026-11-25T10:00:00Z",
                }))
            })
            .collect();
        log.submit("clinic", events).await;
    }
    let point = SnapshotPoint {
        tree_size: log.view.durable_size(),
        checkpoint: log.view.checkpoint(),
    };
    let vkeys = log.keys.verifier_keys(&log.origin).unwrap();
    let mut snapshot = Vec::new();
    write_snapshot(
        log.store.as_ref(),
        &log.origin,
        &vkeys,
        &point,
        &mut |piece| {
            snapshot.extend(piece);
            Ok(())
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot");
    std::fs::write(&file, &snapshot).unwrap();
    let restored = MemoryStore::new();
    replay(&file, &restored, &log.keys).unwrap();
    let records: usize = [RecordSpace::Sealed, RecordSpace::DataKey]
        .into_iter()
        .map(|space| restored.records(space).unwrap().len())
        .sum();
    assert!(records >= 400, "{records} records restored");
    // One batch (well under the batch size) and the checkpoint.
    assert!(
        restored.writes() <= 3,
        "{} durable writes for {records} records",
        restored.writes()
    );
    assert_eq!(restored.tree_size().unwrap(), 400);
    log.shutdown();
}
