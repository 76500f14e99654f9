//! A store that cannot write (a full disk, an I/O error) fails the batch's
//! requests with 503 and changes nothing; once writes succeed again the log
//! continues where it was, consistent with what it published before.
//!
//! In process: the real router and sequencer over a `MemoryStore` with
//! `fail_writes(true)`, driven with `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use veritrail::api::{self, ApiLimits, AppState};
use veritrail::auth::{ApiKeys, Role};
use veritrail::fsck;
use veritrail::history::{LogVerifiers, Signatures, check_tree_against};
use veritrail::lifecycle::ORIGIN_RECORD;
use veritrail::merkle;
use veritrail::note::keys::LogKeys;
use veritrail::sequencer::{
    CheckpointSigner, Clock, LogView, RightEdge, Sealing, Sequencer, SequencerConfig, TileSource,
};
use veritrail::store::memory::MemoryStore;
use veritrail::store::{RecordSpace, Store, StoredCheckpoint};

const ORIGIN: &str = "faults.example/log";

struct Log {
    store: Arc<MemoryStore>,
    keys: LogKeys,
    app: Router,
    writer: String,
    view: Arc<LogView>,
    sequencer: Option<Sequencer>,
}

fn start_log() -> Log {
    let keys = LogKeys::generate().unwrap();
    let store = Arc::new(MemoryStore::new());
    store
        .put_record(RecordSpace::Meta, ORIGIN_RECORD, ORIGIN.as_bytes())
        .unwrap();
    let signer = Arc::new(CheckpointSigner::from_keys(&keys, ORIGIN).unwrap());
    let empty = signer.sign(0, merkle::empty_root(), 1).unwrap();
    store
        .put_checkpoint(&StoredCheckpoint {
            published_at_ms: 1,
            note: empty.note.clone().into_bytes(),
        })
        .unwrap();
    let view = Arc::new(LogView::new(empty, 0, Clock::system()));
    let config = SequencerConfig {
        checkpoint_interval: Duration::from_millis(20),
        ..SequencerConfig::default()
    };
    let sequencer = Sequencer::start(
        store.clone(),
        Sealing::Plaintext,
        signer,
        config.clone(),
        view.clone(),
        RightEdge::empty(),
    )
    .unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    let api_keys = ApiKeys::new(dyn_store.clone());
    let dyn_store_for_vault = dyn_store.clone();
    let (_, writer) = api_keys.create("app-a", Role::Writer, None).unwrap();
    let state = AppState {
        origin: ORIGIN.into(),
        verifier_keys: Arc::new(keys.verifier_keys(ORIGIN).unwrap()),
        store: dyn_store,
        view: view.clone(),
        sequencer: sequencer.handle(),
        keys: api_keys,
        limits: Arc::new(ApiLimits::default()),
        metrics: None,
        checkpoint_interval: config.checkpoint_interval,
        witnessed: None,
        vault: Arc::new(
            veritrail::vault::Vault::new(
                dyn_store_for_vault,
                &veritrail::crypto::MasterKey::from_bytes([9; 32]),
            )
            .unwrap(),
        ),
    };
    Log {
        store,
        keys,
        app: api::router(state),
        writer,
        view,
        sequencer: Some(sequencer),
    }
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
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let retry_after = resp.headers().contains_key(header::RETRY_AFTER);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap(), retry_after)
    }

    async fn checkpoint(&self) -> Value {
        let req = Request::get("/v1/checkpoint").body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The oracle: the stored checkpoint verifies, the stored tree
    /// reproduces its root, and fsck finds nothing wrong.
    fn check_log(&self) -> veritrail::note::Checkpoint {
        let stored = self.store.checkpoint().unwrap().unwrap();
        let verifiers = LogVerifiers::from_keys(&self.keys, ORIGIN).unwrap();
        let cp = verifiers.verify(&stored.note, Signatures::Both).unwrap();
        let size = self.store.tree_size().unwrap();
        check_tree_against(self.store.as_ref(), size, &cp).unwrap();
        let report = fsck::check_store(
            self.store.as_ref(),
            &self.keys,
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        cp
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_fails_the_batch_with_503_and_changes_nothing() {
    let mut log = start_log();
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

    if let Some(s) = log.sequencer.take() {
        tokio::task::spawn_blocking(move || s.shutdown())
            .await
            .unwrap();
    }
}
