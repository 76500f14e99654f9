//! A store that cannot write (a full disk, an I/O error) fails the batch's
//! requests with 503 and changes nothing; once writes succeed again the log
//! continues where it was, consistent with what it published before.
//!
//! In process: the real router and sequencer over a `MemoryStore` with
//! `fail_writes(true)`, driven with `oneshot`.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{InProcessLog, LogBuilder};
use serde_json::{Value, json};
use veritrail::auth::Role;
use veritrail::merkle;
use veritrail::sequencer::TileSource;
use veritrail::store::Store;

const ORIGIN: &str = "faults.example/log";

struct Log {
    log: InProcessLog,
    writer: String,
}

/// The test reaches the log's store and view directly.
impl std::ops::Deref for Log {
    type Target = InProcessLog;
    fn deref(&self) -> &InProcessLog {
        &self.log
    }
}

fn start_log() -> Log {
    let log = LogBuilder::new(ORIGIN)
        .checkpoint_interval(Duration::from_millis(20))
        .start();
    let writer = log.create_key("app-a", Role::Writer);
    Log { log, writer }
}

fn event(i: usize) -> Value {
    json!({
        "actor": { "id": "u1", "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": format!("rec-{i}") },
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "id": format!("ev-{i}"),
    })
}

impl Log {
    async fn post_events(&self, from: usize, n: usize, wait: bool) -> (StatusCode, Value, bool) {
        let events: Vec<Value> = (from..from + n).map(event).collect();
        let uri = if wait {
            "/v1/events?wait=checkpoint"
        } else {
            "/v1/events"
        };
        let req = Request::post(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.writer))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "events": events }).to_string()))
            .unwrap();
        let (status, headers, body) = self.log.send(req).await;
        (status, body, headers.contains_key(header::RETRY_AFTER))
    }

    async fn checkpoint(&self) -> Value {
        let req = Request::get("/v1/checkpoint").body(Body::empty()).unwrap();
        let (status, _, body) = self.log.send(req).await;
        assert_eq!(status, StatusCode::OK);
        body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_fails_the_batch_with_503_and_changes_nothing() {
    let log = start_log();
    let (status, body, _) = log.post_events(0, 3, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = log.check_log();
    assert_eq!(before.size, 3);
    let published_before = log.checkpoint().await;

    log.store.fail_writes(true);
    for wait in [false, true] {
        let (status, body, retry_after) = log.post_events(3, 2, wait).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(retry_after, "a 503 says when to retry");
    }
    // Let periodic checkpoints come due while writes still fail.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(log.store.tree_size().unwrap(), 3, "nothing was stored");
    assert_eq!(log.view.durable_size(), 3);
    assert!(!log.view.failed(), "a failed batch does not stop the log");
    assert_eq!(
        log.checkpoint().await,
        published_before,
        "nothing was published"
    );
    assert_eq!(log.check_log(), before);

    // The disk has room again: the same events (same ids) are appended
    // right after the last acknowledged one, not as duplicates.
    log.store.fail_writes(false);
    let (status, body, _) = log.post_events(3, 2, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let indexes: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["duplicate"], false);
            e["index"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(indexes, vec![3, 4]);
    let after = log.check_log();
    assert_eq!(after.size, 5);
    let proof = merkle::consistency_proof(3, 5, &TileSource::new(log.store.as_ref())).unwrap();
    merkle::verify_consistency(3, 5, &before.root, &after.root, &proof).unwrap();

    log.log.shutdown().await;
}

/// A search whose own audit record cannot be stored sends none of the
/// events it found (its page is made meanwhile, and dropped), and stores
/// nothing; once writes succeed again the same search answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_whose_audit_record_fails_sends_no_event() {
    let log = LogBuilder::new(ORIGIN).sealed().start();
    let writer = log.create_key("app-a", Role::Writer);
    let log = Log { log, writer };
    let (status, body, _) = log.post_events(0, 3, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let auditor = log.create_key("auditor", Role::Auditor);
    let search = || {
        Request::get("/v1/events?actor=u1")
            .header(header::AUTHORIZATION, format!("Bearer {auditor}"))
            .body(Body::empty())
            .unwrap()
    };
    let size = log.store.tree_size().unwrap();
    let (status, _, body) = log.log.send(search()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 3, "{body}");
    let size = size + 1;

    log.store.fail_writes(true);
    let (status, headers, body) = log.log.send(search()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body.get("events").is_none(), "{body}");
    assert!(
        !body.to_string().contains("rec-"),
        "no event content: {body}"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(log.store.tree_size().unwrap(), size, "nothing was stored");

    log.store.fail_writes(false);
    let (status, _, body) = log.log.send(search()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(log.store.tree_size().unwrap(), size + 1, "its audit record");

    log.log.shutdown().await;
}
