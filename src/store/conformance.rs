//! One conformance suite that every backend runs.

use super::{
    BatchWrite, DedupeKey, IndexBlock, RecordBatch, RecordSpace, ScanCursor, ScanPage, Store,
    StoredCheckpoint, StoredEvent,
};

fn block(bucket: &[u8], at: u64, value: Option<&[u8]>) -> IndexBlock {
    IndexBlock {
        bucket: bucket.to_vec(),
        at,
        value: value.map(<[u8]>::to_vec),
    }
}
use crate::merkle::Hash;

fn sample_event(i: u8) -> StoredEvent {
    StoredEvent {
        app: format!("app-{i}"),
        salt: [i; 32],
        event: format!("{{\"n\":{i}}}").into_bytes(),
    }
}

/// Writes a known two-batch history.
pub(crate) fn write_sample(store: &dyn Store) {
    let first = BatchWrite {
        tree_size: 2,
        tiles: vec![(0, 0, vec![1u8; 64])],
        bundles: vec![(0, vec![0, 1, b'a', 0, 1, b'b'])],
        events: vec![(0, sample_event(0)), (1, sample_event(1))],
        dedupe: vec![(DedupeKey::of("app-0", "id-0"), 0)],
        // Leaf 1's hash, as in the level-0 tile.
        leaf_index: vec![(Hash([1; 32]), 1)],
        checkpoint: None,
        records: vec![(
            RecordSpace::Sealed,
            1u64.to_be_bytes().to_vec(),
            b"sealed-1".to_vec(),
        )],
        index_blocks: vec![
            block(b"bka", 0, Some(b"a-from-0")),
            block(b"bkb", 0, Some(b"b-from-0")),
        ],
        index_watermark: Some(2),
    };
    store.commit(&first).unwrap();
    let second = BatchWrite {
        tree_size: 3,
        tiles: vec![(0, 0, vec![1u8; 96])],
        bundles: vec![(0, vec![0, 1, b'a', 0, 1, b'b', 0, 1, b'c'])],
        events: vec![(2, sample_event(2))],
        dedupe: vec![],
        leaf_index: vec![],
        checkpoint: Some(StoredCheckpoint {
            published_at_ms: 1234,
            note: b"note".to_vec(),
        }),
        records: vec![],
        index_blocks: vec![block(b"bka", 2, Some(b"a-from-2"))],
        index_watermark: None,
    };
    store.commit(&second).unwrap();
    store
        .put_record(RecordSpace::ApiKey, b"k2", b"second")
        .unwrap();
    store
        .put_record(RecordSpace::ApiKey, b"k1", b"first")
        .unwrap();
    store
        .put_record(RecordSpace::Meta, b"origin", b"example.com/log")
        .unwrap();
}

/// Checks what [`write_sample`] wrote.
pub(crate) fn check_sample(store: &dyn Store) {
    assert_eq!(store.tree_size().unwrap(), 3);
    assert_eq!(
        store.tile(0, 0).unwrap(),
        Some(vec![1u8; 96]),
        "a partial tile is replaced by its grown version"
    );
    assert_eq!(store.tile(0, 1).unwrap(), None);
    assert_eq!(store.tile(1, 0).unwrap(), None);
    assert_eq!(store.bundle(0).unwrap().map(|b| b.len()), Some(9));
    for i in 0..3u8 {
        assert_eq!(store.event(u64::from(i)).unwrap(), Some(sample_event(i)));
    }
    assert_eq!(store.event(3).unwrap(), None);
    assert_eq!(
        store.dedupe(&DedupeKey::of("app-0", "id-0")).unwrap(),
        Some(0)
    );
    assert_eq!(
        store.dedupe(&DedupeKey::of("app-1", "id-0")).unwrap(),
        None,
        "idempotency keys are per app"
    );
    assert_eq!(store.dedupe(&DedupeKey::of("app-0", "id-")).unwrap(), None);
    assert_eq!(
        store
            .dedupe_many(&[
                DedupeKey::of("app-1", "id-0"),
                DedupeKey::of("app-0", "id-0"),
                DedupeKey::of("app-0", "id-0"),
            ])
            .unwrap(),
        vec![None, Some(0), Some(0)],
        "one answer per key asked, in the order asked"
    );
    assert_eq!(store.dedupe_many(&[]).unwrap(), vec![]);
    assert_eq!(store.leaf_index(&Hash([1; 32])).unwrap(), Some(1));
    assert_eq!(store.leaf_index(&Hash([8; 32])).unwrap(), None);
    let cp = store.checkpoint().unwrap().unwrap();
    assert_eq!(
        (cp.published_at_ms, cp.note.as_slice()),
        (1234, &b"note"[..])
    );
    let keys = store.records(RecordSpace::ApiKey).unwrap();
    assert_eq!(
        keys,
        vec![
            (b"k1".to_vec(), b"first".to_vec()),
            (b"k2".to_vec(), b"second".to_vec())
        ]
    );
    assert_eq!(
        store.record(RecordSpace::Meta, b"origin").unwrap(),
        Some(b"example.com/log".to_vec())
    );
    assert_eq!(
        store.record(RecordSpace::ApiKey, b"origin").unwrap(),
        None,
        "spaces are separate"
    );
    assert_eq!(
        store
            .records_many(
                RecordSpace::ApiKey,
                &[
                    b"k2".to_vec(),
                    b"origin".to_vec(),
                    b"k1".to_vec(),
                    b"k2".to_vec()
                ]
            )
            .unwrap(),
        vec![
            Some(b"second".to_vec()),
            None,
            Some(b"first".to_vec()),
            Some(b"second".to_vec())
        ],
        "one answer per key asked, in the order asked, in that space only"
    );
    assert_eq!(
        store.records_many(RecordSpace::Meta, &[]).unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );
    assert_eq!(
        store
            .record(RecordSpace::Sealed, &1u64.to_be_bytes())
            .unwrap(),
        Some(b"sealed-1".to_vec()),
        "records travel with the batch"
    );
    let blocks = |bucket: &[u8], below, limit| store.index_blocks(bucket, below, limit).unwrap();
    assert_eq!(
        blocks(b"bka", 99, 10),
        vec![(2, b"a-from-2".to_vec()), (0, b"a-from-0".to_vec())],
        "newest first"
    );
    assert_eq!(blocks(b"bka", 2, 10), vec![(0, b"a-from-0".to_vec())]);
    assert_eq!(blocks(b"bka", 3, 1), vec![(2, b"a-from-2".to_vec())]);
    assert_eq!(blocks(b"bkb", 99, 10), vec![(0, b"b-from-0".to_vec())]);
    assert!(blocks(b"bkc", 99, 10).is_empty());
    assert!(blocks(b"bka", 0, 10).is_empty());
    assert_eq!(
        store.index_watermark().unwrap(),
        Some(2),
        "a batch without a watermark keeps the last one"
    );
    assert_eq!(
        store.records(RecordSpace::Meta).unwrap(),
        vec![(b"origin".to_vec(), b"example.com/log".to_vec())],
        "the tree size and checkpoint are not records"
    );
}

/// Collects a whole scan page by page, `limit` items at a time.
fn scan_all<T: std::fmt::Debug>(
    limit: usize,
    mut page: impl FnMut(&ScanCursor, usize) -> ScanPage<T>,
) -> Vec<T> {
    let mut cursor = ScanCursor::start();
    let mut out = Vec::new();
    loop {
        let p = page(&cursor, limit);
        assert!(p.items.len() <= limit);
        out.extend(p.items.into_iter().map(|r| r.unwrap()));
        match p.next {
            Some(next) => cursor = next,
            None => return out,
        }
    }
}

/// Scans see every event, idempotency entry and leaf-hash entry of the
/// sample once, in key order, whatever the page size.
pub(crate) fn check_scans(store: &dyn Store) {
    for limit in [1, 2, 3, 100] {
        let events = scan_all(limit, |c, l| store.scan_events(c, l).unwrap());
        let expected: Vec<_> = (0..3u8).map(|i| (u64::from(i), sample_event(i))).collect();
        assert_eq!(events, expected, "events, page size {limit}");
        let dedupe = scan_all(limit, |c, l| store.scan_dedupe(c, l).unwrap());
        assert_eq!(dedupe, vec![(DedupeKey::of("app-0", "id-0"), 0)]);
        let leaves = scan_all(limit, |c, l| store.scan_leaf_index(c, l).unwrap());
        assert_eq!(leaves, vec![([1; 16], 1)]);
    }
}

/// The whole suite, on an empty store.
pub(crate) fn run(store: &dyn Store) {
    assert_eq!(store.tree_size().unwrap(), 0);
    assert_eq!(store.checkpoint().unwrap(), None);
    assert!(store.records(RecordSpace::ApiKey).unwrap().is_empty());
    assert!(
        store
            .scan_events(&ScanCursor::start(), 10)
            .unwrap()
            .items
            .is_empty()
    );
    write_sample(store);
    check_sample(store);
    check_scans(store);
    store
        .put_checkpoint(&StoredCheckpoint {
            published_at_ms: 5,
            note: b"newer".to_vec(),
        })
        .unwrap();
    assert_eq!(store.checkpoint().unwrap().unwrap().note, b"newer");
    store
        .put_record(RecordSpace::ApiKey, b"k1", b"replaced")
        .unwrap();
    assert_eq!(
        store.record(RecordSpace::ApiKey, b"k1").unwrap(),
        Some(b"replaced".to_vec())
    );
    store
        .commit_records(&RecordBatch {
            put: vec![(RecordSpace::Erased, vec![0, 1], b"gone".to_vec())],
            delete: vec![(RecordSpace::Sealed, 1u64.to_be_bytes().to_vec())],
            index_blocks: vec![
                block(b"bka", 0, None),
                block(b"bkb", 0, Some(b"b-rewritten")),
            ],
            index_flush: false,
            index_watermark: Some(3),
            delete_events: vec![1],
        })
        .unwrap();
    assert_eq!(
        store
            .record(RecordSpace::Sealed, &1u64.to_be_bytes())
            .unwrap(),
        None
    );
    assert_eq!(
        store.record(RecordSpace::Erased, &[0, 1]).unwrap(),
        Some(b"gone".to_vec())
    );
    assert_eq!(
        store.index_blocks(b"bka", 99, 10).unwrap(),
        vec![(2, b"a-from-2".to_vec())]
    );
    assert_eq!(
        store.index_blocks(b"bkb", 99, 10).unwrap(),
        vec![(0, b"b-rewritten".to_vec())]
    );
    assert_eq!(store.index_watermark().unwrap(), Some(3));
    assert_eq!(store.event(1).unwrap(), None);
    assert_eq!(store.event(0).unwrap(), Some(sample_event(0)));
    check_index_flushes(store);
    check_index_tidying(store);
    store.clear_index().unwrap();
    assert_eq!(store.index_watermark().unwrap(), None);
    assert!(store.index_blocks(b"bka", 99, 10).unwrap().is_empty());
    assert!(store.index_blocks(b"bkc", 99, 10).unwrap().is_empty());
    assert!(store.index_blocks(b"bkb", 99, 10).unwrap().is_empty());
    assert_eq!(
        store.record(RecordSpace::Erased, &[0, 1]).unwrap(),
        Some(b"gone".to_vec()),
        "clearing the index touches nothing else"
    );
    check_full_tile_hashes(store);
}

/// Tidying steps, taken until one finds no work, change no answer.
fn check_index_tidying(store: &dyn Store) {
    let read = || [b"bka", b"bkb", b"bkc"].map(|b| store.index_blocks(b, 99, 10).unwrap());
    let before = read();
    let mut steps = 0;
    while store.tidy_index().unwrap() {
        steps += 1;
        assert!(steps < 100, "tidying never ends");
        assert_eq!(read(), before, "after step {steps}");
    }
    assert_eq!(read(), before);
    assert!(!store.tidy_index().unwrap());
}

/// A flush's blocks read back as any block's, and later writes of them
/// (a rewrite, a deletion) replace them, as they do the others.
fn check_index_flushes(store: &dyn Store) {
    let flush = |at: u64, to: u64| RecordBatch {
        index_blocks: vec![
            block(b"bka", at, Some(format!("a-flushed-{at}").as_bytes())),
            block(b"bkc", at, Some(format!("c-flushed-{at}").as_bytes())),
        ],
        index_flush: true,
        index_watermark: Some(to),
        ..RecordBatch::default()
    };
    store.commit_records(&flush(3, 5)).unwrap();
    store.commit_records(&flush(5, 9)).unwrap();
    assert_eq!(store.index_watermark().unwrap(), Some(9));
    assert_eq!(
        store.index_blocks(b"bka", 99, 10).unwrap(),
        vec![
            (5, b"a-flushed-5".to_vec()),
            (3, b"a-flushed-3".to_vec()),
            (2, b"a-from-2".to_vec())
        ]
    );
    store
        .commit_records(&RecordBatch {
            index_blocks: vec![
                block(b"bka", 3, None),
                block(b"bkc", 5, Some(b"c-rewritten")),
            ],
            ..RecordBatch::default()
        })
        .unwrap();
    assert_eq!(
        store.index_blocks(b"bka", 99, 2).unwrap(),
        vec![(5, b"a-flushed-5".to_vec()), (2, b"a-from-2".to_vec())],
        "a deleted block of a flush is gone"
    );
    assert_eq!(
        store.index_blocks(b"bkc", 99, 10).unwrap(),
        vec![(5, b"c-rewritten".to_vec()), (3, b"c-flushed-3".to_vec())]
    );
    assert_eq!(
        store.index_blocks(b"bkc", 5, 10).unwrap(),
        vec![(3, b"c-flushed-3".to_vec())]
    );
}

/// Completes tile 0/0 (tree size 256) and reads parts of it: each is
/// exactly those bytes of the whole tile, and a part past its end is an
/// error, never a short answer.
fn check_full_tile_hashes(store: &dyn Store) {
    let full: Vec<u8> = (0..256u32)
        .flat_map(|i| crate::merkle::leaf_hash(&i.to_be_bytes()).0)
        .collect();
    let bundle: Vec<u8> = (0..=255u8).flat_map(|i| [0, 1, i]).collect();
    store
        .commit(&BatchWrite {
            tree_size: 256,
            tiles: vec![(0, 0, full.clone())],
            bundles: vec![(0, bundle)],
            ..BatchWrite::default()
        })
        .unwrap();
    assert_eq!(store.tile(0, 0).unwrap(), Some(full.clone()));
    for (start, count) in [(0, 16), (16, 16), (240, 16), (255, 1), (0, 256)] {
        assert_eq!(
            store.tile_hashes(0, 0, start, count).unwrap().as_deref(),
            Some(&full[start * 32..(start + count) * 32]),
            "{start}+{count}"
        );
    }
    assert!(store.tile_hashes(0, 0, 250, 16).is_err());
}
