//! The remote backend against a real PostgreSQL and a real S3-compatible
//! server (s3s-fs), both started from `scripts/lib/`.

#[path = "../../../tests/common/services.rs"]
#[allow(dead_code)]
mod services;

use super::*;
use crate::store::conformance;
use crate::tiles;
use services::{ObjectServer, Postgres};
use std::time::Duration;

struct Services {
    pg: Postgres,
    s3: ObjectServer,
}

impl Services {
    fn start() -> Services {
        Services {
            pg: Postgres::start(),
            s3: ObjectServer::start(),
        }
    }

    fn open(&self) -> PgStore {
        PgStore::open(&self.pg.url(), &self.bucket()).unwrap()
    }

    fn bucket(&self) -> BucketConfig {
        BucketConfig {
            endpoint: Some(self.s3.endpoint()),
            credentials: Some((
                services::S3_ACCESS_KEY.to_string(),
                services::S3_SECRET_KEY.to_string(),
            )),
            ..BucketConfig::from_url("s3://log/audit").unwrap()
        }
    }

    /// The static copy of `tile_batch(5, 1, true)`: partial tile and
    /// bundle, and the checkpoint.
    fn has_static_copy_of_size_5(&self) {
        assert_eq!(self.object("tile/0/000.p/5"), Some(vec![1; 5 * 32]));
        assert!(self.object("tile/entries/000.p/5").is_some());
        assert_eq!(
            self.object("checkpoint"),
            Some(b"origin\n5\nroot\n\nsig\n".to_vec())
        );
    }

    /// The bucket object `name`, read from the server's directory.
    fn object(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.s3.bucket_dir().join("audit").join(name)).ok()
    }
}

#[test]
fn postgres_store_keeps_the_contract() {
    let s = Services::start();
    conformance::run(&s.open());
}

fn tile_batch(size: u64, fill: u8, checkpoint: bool) -> BatchWrite {
    // Level-0 tile 0 grows to `size` hashes of `fill`; at 256 it is full.
    let width = size.min(256) as usize;
    let entries: Vec<Vec<u8>> = (0..width).map(|i| vec![fill, i as u8]).collect();
    BatchWrite {
        tree_size: size,
        tiles: vec![(0, 0, vec![fill; width * 32])],
        bundles: vec![(0, tiles::encode_bundle(&entries).unwrap())],
        checkpoint: checkpoint.then(|| StoredCheckpoint {
            published_at_ms: 1,
            note: format!("origin\n{size}\nroot\n\nsig\n").into_bytes(),
        }),
        ..BatchWrite::default()
    }
}

/// Waits until the static copy of every committed checkpoint is written.
fn copied(store: &PgStore) {
    store
        .run(COMMIT_TIMEOUT, async |s| {
            s.static_copy.flushed().await;
            Ok(())
        })
        .unwrap();
}

#[test]
fn full_tiles_go_to_the_bucket_and_everything_survives_a_reopen() {
    let s = Services::start();
    let store = s.open();
    store.commit(&tile_batch(5, 1, true)).unwrap();
    copied(&store);
    s.has_static_copy_of_size_5();
    assert_eq!(s.object("tile/0/000"), None, "not full yet");
    store.commit(&tile_batch(256, 1, false)).unwrap();
    assert_eq!(s.object("tile/0/000"), Some(vec![1; 256 * 32]));
    assert!(s.object("tile/entries/000").is_some());
    drop(store);
    let store = s.open();
    assert_eq!(store.tree_size().unwrap(), 256);
    assert_eq!(store.tile(0, 0).unwrap(), Some(vec![1; 256 * 32]));
    assert_eq!(store.bundle(0).unwrap().map(|b| b.len()), Some(256 * 4));
}

/// Replaces a bucket object behind the store's back.
fn overwrite(store: &PgStore, name: &'static str, data: Vec<u8>) {
    store
        .run(READ_TIMEOUT, async move |s| {
            s.bucket.replace(name, &data).await
        })
        .unwrap();
}

#[test]
fn a_leftover_object_is_replaced_but_a_committed_one_never_is() {
    let s = Services::start();
    let store = s.open();
    store.commit(&tile_batch(200, 1, false)).unwrap();
    // A batch that never committed left a different full tile behind.
    overwrite(&store, "tile/0/000", vec![9; 256 * 32]);
    store.commit(&tile_batch(256, 1, false)).unwrap();
    assert_eq!(s.object("tile/0/000"), Some(vec![1; 256 * 32]));
    // Once committed, a different object under that name is damage.
    overwrite(&store, "tile/0/000", vec![9; 256 * 32]);
    let mut again = tile_batch(256, 1, false);
    again.tree_size = 256;
    match store.commit(&again) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("tile/0/000"), "{m}"),
        other => panic!("expected a corrupt-object error, got {other:?}"),
    }
}

#[test]
fn a_fenced_store_cannot_commit() {
    let s = Services::start();
    let store = s.open();
    store.commit(&tile_batch(3, 1, false)).unwrap();
    store.fence(Some(41));
    let err = store.commit(&tile_batch(4, 1, true)).unwrap_err();
    assert!(err.to_string().contains("fenced"), "{err}");
    assert_eq!(
        s.object("tile/0/000.p/4"),
        None,
        "nothing reached the bucket"
    );
    store.fence(None);
    assert_eq!(store.tree_size().unwrap(), 3);
    store.commit(&tile_batch(4, 1, true)).unwrap();
    assert_eq!(store.tree_size().unwrap(), 4);
}

#[test]
fn only_the_lease_holder_commits_and_a_taken_lease_fences_the_old_one() {
    let s = Services::start();
    let (one, two) = (s.open(), s.open());
    one.commit(&tile_batch(3, 1, false)).unwrap();
    let ttl = Duration::from_millis(600);
    let t1 = one
        .acquire_lease("one", "http://one", ttl)
        .unwrap()
        .expect("a free lease");
    assert_eq!(
        two.acquire_lease("two", "http://two", ttl).unwrap(),
        None,
        "held"
    );
    let holder = two.lease_holder().unwrap().expect("a holder");
    assert_eq!(
        (holder.holder.as_str(), holder.address.as_str()),
        ("one", "http://one")
    );
    one.fence(Some(t1));
    one.commit(&tile_batch(4, 1, true)).unwrap();
    assert!(one.renew_lease("one", "http://one/", t1, ttl).unwrap());
    std::thread::sleep(ttl + Duration::from_millis(200));
    // Expired, by the database's clock: nothing commits under it, even
    // before anyone else takes it.
    let err = one.commit(&tile_batch(5, 1, false)).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(two.lease_holder().unwrap(), None);
    assert!(
        !one.renew_lease("one", "http://one", t1, ttl).unwrap(),
        "too late"
    );
    let t2 = two
        .acquire_lease("two", "http://two", ttl)
        .unwrap()
        .expect("an expired lease is free");
    assert!(t2 > t1, "the token grows");
    two.fence(Some(t2));
    // The old holder's commit in flight finds the new token.
    let err = one.commit(&tile_batch(5, 1, true)).unwrap_err();
    assert!(err.to_string().contains("taken over"), "{err}");
    assert_eq!(
        s.object("tile/0/000.p/5"),
        None,
        "nothing of it reached the bucket"
    );
    assert_eq!(one.tree_size().unwrap(), 4);
    two.commit(&tile_batch(5, 1, true)).unwrap();
    assert_eq!(one.tree_size().unwrap(), 5);
    // Released on a clean stop: free at once.
    two.release_lease("two", t2).unwrap();
    assert_eq!(one.lease_holder().unwrap(), None);
    assert!(
        one.acquire_lease("one", "http://one", ttl)
            .unwrap()
            .is_some()
    );
}

#[test]
fn unreachable_services_fail_writes_without_changes_and_the_store_recovers() {
    let mut s = Services::start();
    let store = s.open();
    conformance::write_sample(&store);
    s.s3.stop();
    assert!(store.commit(&tile_batch(256, 1, false)).is_err());
    s.s3.resume();
    conformance::check_sample(&store);
    s.pg.stop();
    assert!(store.tree_size().is_err());
    assert!(store.put_record(RecordSpace::Meta, b"x", b"y").is_err());
    s.pg.resume();
    conformance::check_sample(&store);
    assert_eq!(store.record(RecordSpace::Meta, b"x").unwrap(), None);
}

/// The static copy is written after the commit: a batch that completes no
/// full tile commits while the bucket is down, and its partial objects and
/// checkpoint reach the bucket once it is back.
#[test]
fn the_static_copy_catches_up_after_a_bucket_outage() {
    let mut s = Services::start();
    let store = s.open();
    s.s3.stop();
    store.commit(&tile_batch(5, 1, true)).unwrap();
    assert_eq!(store.tree_size().unwrap(), 5);
    assert_eq!(s.object("checkpoint"), None);
    s.s3.resume();
    copied(&store);
    s.has_static_copy_of_size_5();
}

#[test]
fn alert_windows_are_checkpointed_in_postgres_and_survive_a_reopen() {
    use crate::alerts::{Alerts, AlertsConfig};
    let s = Services::start();
    let config = AlertsConfig::parse(
        "[alerts]\n[[alerts.rule]]\nname = \"logins\"\nkind = \"threshold\"\ngroup_by = \"actor\"\nmore_than = 2\nwindow = \"10m\"\n",
        "t",
    )
    .unwrap()
    .unwrap();
    let key = || crate::crypto::MasterKey::from_bytes([7; 32]).alerts_state_key();
    let data = tempfile::tempdir().unwrap();
    let login = |a: &Alerts, minute: u32, index: u64| {
        let ev = crate::event::parse_event(
            &serde_json::json!({
                "actor": {"id": "mallory", "type": "user"}, "action": "login",
                "resource": {"type": "session", "id": "s"}, "purpose": "auth",
                "outcome": "failure", "occurred_at": format!("2026-01-01T10:{minute:02}:00Z"),
            }),
            &crate::event::EventLimits::default(),
        )
        .unwrap();
        a.evaluate(&a.engine().observe("app", &ev).unwrap(), index)
    };
    let a = Alerts::start(&config, data.path(), Arc::new(s.open()), key()).unwrap();
    login(&a, 0, 0);
    login(&a, 1, 1);
    assert_eq!(a.checkpoint().unwrap().records, 2);
    drop(a);
    let b = Alerts::start(&config, data.path(), Arc::new(s.open()), key()).unwrap();
    assert_eq!(login(&b, 2, 2)[0].events, vec![0, 1, 2]);
}

#[test]
fn the_full_bundles_kept_are_bounded_and_the_oldest_read_goes_first() {
    let kept = FullBundles::default();
    for i in 0..=CACHED_BUNDLES as u64 {
        kept.keep(i, &i.to_be_bytes());
        // Kept twice, it is still one copy.
        kept.keep(i, &[0xff]);
    }
    assert_eq!(kept.get(0), None, "the oldest read is dropped");
    for i in 1..=CACHED_BUNDLES as u64 {
        assert_eq!(kept.get(i), Some(i.to_be_bytes().to_vec()), "{i}");
    }
    assert_eq!(
        kept.0.lock().unwrap().len(),
        CACHED_BUNDLES,
        "never more than the bound"
    );
}
