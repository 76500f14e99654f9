//! Reads served from the read cache stay right while the log grows: proofs
//! for old and new tree sizes verify against the store's own roots, and a
//! partial tile or bundle is never answered beyond (or short of) the width
//! asked, even after the cache held a narrower one and the tile filled up.
//!
//! In process: the real router and sequencer over a `MemoryStore`, driven
//! with `oneshot`; the reference is the uncached `TileSource` over the same
//! store.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{InProcessLog, LogBuilder, hashes};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use veritrail::auth::Role;
use veritrail::merkle::{self, Hash};
use veritrail::sequencer::TileSource;
use veritrail::store::Store;
use veritrail::tiles::{self, Tile};

async fn get(log: &InProcessLog, uri: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    let resp = log.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, body.to_vec())
}

async fn get_json(log: &InProcessLog, uri: &str) -> Value {
    let (status, body) = get(log, uri).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

async fn append(log: &InProcessLog, writer: &str, from: usize, n: usize) {
    let events: Vec<Value> = (from..from + n)
        .map(|i| common::event(i, Some(format!("ev-{i}"))))
        .collect();
    let req = Request::post("/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {writer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "events": events }).to_string()))
        .unwrap();
    let (status, _, body) = log.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Every proof and tile the log serves at tree size `size` (and at the
/// older sizes in `seen`) against the store read without the cache.
async fn check_reads(log: &InProcessLog, size: u64, seen: &[u64]) {
    let store: &dyn Store = log.store.as_ref();
    let source = TileSource::new(store);
    let root = merkle::tree_root(size, &source).unwrap();
    let probes = [0, 1, size / 3, size / 2, size.saturating_sub(2), size - 1];
    for &index in probes.iter().filter(|&&i| i < size) {
        let p = get_json(
            log,
            &format!("/v1/proof/inclusion?index={index}&tree_size={size}"),
        )
        .await;
        let leaf = Hash::from_base64(p["leaf_hash"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(index, size, &leaf, &hashes(&p["audit_path"]), &root)
            .unwrap_or_else(|e| panic!("inclusion of {index} in {size}: {e}"));
    }
    for &old in seen.iter().filter(|&&s| s > 0 && s < size) {
        let old_root = merkle::tree_root(old, &source).unwrap();
        let p = get_json(
            log,
            &format!("/v1/proof/consistency?first={old}&second={size}"),
        )
        .await;
        merkle::verify_consistency(old, size, &old_root, &root, &hashes(&p["consistency"]))
            .unwrap_or_else(|e| panic!("consistency {old} → {size}: {e}"));
        // An old size's proof needs narrower partial tiles than the cache holds.
        let p = get_json(
            log,
            &format!("/v1/proof/inclusion?index={}&tree_size={old}", old - 1),
        )
        .await;
        let leaf = Hash::from_base64(p["leaf_hash"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(old - 1, old, &leaf, &hashes(&p["audit_path"]), &old_root)
            .unwrap_or_else(|e| panic!("inclusion of {} in {old}: {e}", old - 1));
    }
    // Every tile of this size and of the older ones: exactly the stored prefix.
    for s in seen.iter().copied().chain([size]).filter(|&s| s > 0) {
        for t in tiles::new_tiles(0, s) {
            check_tile(log, store, &t).await;
        }
    }
}

async fn check_tile(log: &InProcessLog, store: &dyn Store, t: &Tile) {
    let width = usize::from(t.width);
    let (status, body) = get(log, &format!("/{}", t.hash_path())).await;
    assert_eq!(status, StatusCode::OK, "{}", t.hash_path());
    let stored = store.tile(t.level, t.index).unwrap().unwrap();
    assert_eq!(body, stored[..width * 32], "{}", t.hash_path());
    if t.level == 0 {
        let (status, body) = get(log, &format!("/{}", t.entries_path())).await;
        assert_eq!(status, StatusCode::OK, "{}", t.entries_path());
        let stored = tiles::decode_bundle(&store.bundle(t.index).unwrap().unwrap()).unwrap();
        assert_eq!(
            tiles::decode_bundle(&body).unwrap(),
            stored[..width],
            "{}",
            t.entries_path()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_stay_right_while_partial_tiles_fill_up() {
    let log = LogBuilder::new("read-cache.example/log")
        .checkpoint_interval(Duration::from_millis(20))
        .start();
    let writer = log.create_key("app-a", Role::Writer);
    let mut seen: Vec<u64> = Vec::new();
    let mut next = 0;
    // Batches that end inside tiles, exactly on a tile's end, and across
    // one, so cached partial tiles are asked for again after they grew
    // and after they became full (level 0 up to tile 2, level 1 partial).
    for n in [1, 2, 37, 216, 1, 255, 100, 1, 300] {
        append(&log, &writer, next, n).await;
        next += n;
        let size = log.view.durable_size();
        assert_eq!(size, next as u64);
        check_reads(&log, size, &seen).await;
        // A width beyond the committed size is not served from a cached prefix.
        let beyond = Tile {
            level: 0,
            index: size / 256,
            width: (size % 256 + 1) as u16,
        };
        let (status, _) = get(&log, &format!("/{}", beyond.hash_path())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}", beyond.hash_path());
        seen.push(size);
    }
    log.check_log();
    log.shutdown().await;
}
