//! Restore writes a snapshot in a few large batches, never a durable write
//! (an fsync) per record, and a backup hands out its pieces as it reads the
//! store, never the whole store at once: both counted through the
//! in-memory store.

use serde_json::json;

use super::{PIECE, SnapshotPoint, replay, write_snapshot};
use crate::note::keys::LogVerifierKeys;
use crate::sequencer::test_log::{TestLog, TestLogBuilder, prepared};
use crate::store::memory::MemoryStore;
use crate::store::{RecordSpace, Store};

/// A log of `batches` batches of `size` events of many subjects: a sealed
/// body and a data key each.
async fn clinic_log(batches: usize, size: usize) -> TestLog {
    let log = TestLogBuilder::new("example.com/log").start();
    for batch in 0..batches {
        let events = (0..size)
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
    log
}

/// The log's durable size and checkpoint, and its verifier keys.
fn point_of(log: &TestLog) -> (SnapshotPoint, LogVerifierKeys) {
    let point = SnapshotPoint {
        tree_size: log.view.durable_size(),
        checkpoint: log.view.checkpoint(),
    };
    (point, log.keys.verifier_keys(&log.origin).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_commits_a_few_batches_not_one_per_record() {
    let mut log = clinic_log(4, 100).await;
    let (point, vkeys) = point_of(&log);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_hands_out_pieces_while_most_of_the_store_is_unread() {
    let mut log = clinic_log(16, 500).await;
    let (point, vkeys) = point_of(&log);
    let size = point.tree_size as usize;
    let store = log.store.clone();
    let before = store.items_listed();
    // What the backup had read of the store when each piece left it.
    let mut read_at_piece = Vec::new();
    let mut largest = 0;
    write_snapshot(store.as_ref(), &log.origin, &vkeys, &point, &mut |piece| {
        read_at_piece.push(store.items_listed() - before);
        largest = largest.max(piece.len());
        Ok(())
    })
    .unwrap();
    let read = store.items_listed() - before;
    assert!(read >= size, "{read} items read");
    // A piece leaves once it is full; the server holds a few in flight.
    assert!(read_at_piece.len() >= 8, "{} pieces", read_at_piece.len());
    assert!(largest <= 2 * PIECE, "a piece of {largest} bytes");
    // The first piece is full after a fixed number of items, not after a
    // share of the log's.
    assert!(
        read_at_piece[0] < size / 2,
        "the first piece left after {} items were read, of {read}; the log has {size} events",
        read_at_piece[0]
    );
    log.shutdown();
}

/// A restore into the sled store writes full tiles, bundles and body
/// chunks as its blob files, and a backup of that store reads them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_sled_writes_the_blob_files_and_a_backup_reads_them() {
    let mut log = clinic_log(3, 200).await;
    let (point, vkeys) = point_of(&log);
    let snapshot_of = |store: &dyn Store| {
        let mut out = Vec::new();
        write_snapshot(store, &log.origin, &vkeys, &point, &mut |piece| {
            out.extend(piece);
            Ok(())
        })
        .unwrap();
        out
    };
    let first = snapshot_of(log.store.as_ref());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot");
    std::fs::write(&file, &first).unwrap();
    let db = dir.path().join("db");
    let restored = crate::store::sled::SledStore::open(&db).unwrap();
    replay(&file, &restored, &log.keys).unwrap();
    for path in [
        "objects/tile/0/000",
        "objects/tile/0/001",
        "objects/entries/001",
        "objects/bodies/001",
    ] {
        assert!(db.join(path).is_file(), "{path}");
    }
    assert!(!db.join("objects/entries/002").exists(), "bundle 2 is open");
    // What a backup of the restored store reads (through the files) is
    // what the original holds.
    let original = log.store.as_ref();
    for i in 0..3 {
        assert_eq!(restored.tile(0, i).unwrap(), original.tile(0, i).unwrap());
        assert_eq!(restored.bundle(i).unwrap(), original.bundle(i).unwrap());
    }
    assert_eq!(
        restored.records(RecordSpace::Sealed).unwrap(),
        original.records(RecordSpace::Sealed).unwrap()
    );
    let again = snapshot_of(&restored);
    assert!(again.len() >= first.len() / 2, "{} bytes", again.len());
    log.shutdown();
}
