//! A log assembled in this process, the way `veritrail serve` assembles one
//! (store, signer, published view, sequencer, vault, API keys, router), for
//! tests that drive the real router with `oneshot` and reach into the store.
//!
//! This is the one place in tests/ that knows how the engine is started: a
//! change to how a `Sequencer` or an `AppState` is built changes only
//! `LogBuilder::start`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;
use veritrail::api::{self, ApiLimits, AppParts, AppState};
use veritrail::auth::{ApiKeys, Role};
use veritrail::crypto::MasterKey;
use veritrail::fsck;
use veritrail::history::{LogVerifiers, Signatures, check_tree_against};
use veritrail::lifecycle::ORIGIN_RECORD;
use veritrail::merkle;
use veritrail::note::Checkpoint;
use veritrail::note::keys::LogKeys;
use veritrail::sequencer::{
    CheckpointSigner, Clock, DEFAULT_PROOF_CACHE_BYTES, DEFAULT_READ_CACHE_BYTES, LogView,
    RightEdge, Sealing, Sequencer, SequencerConfig, TileCache,
};
use veritrail::store::memory::MemoryStore;
use veritrail::store::{RecordSpace, Store, StoredCheckpoint};
use veritrail::vault::Vault;

/// How to assemble an in-process log; `start` builds it.
pub struct LogBuilder {
    origin: String,
    checkpoint_interval: Duration,
    master_key: [u8; 32],
    sealed: bool,
}

impl LogBuilder {
    /// A new, empty log named `origin`, with the sequencer's default
    /// configuration.
    pub fn new(origin: &str) -> LogBuilder {
        LogBuilder {
            origin: origin.to_string(),
            checkpoint_interval: SequencerConfig::default().checkpoint_interval,
            master_key: [9; 32],
            sealed: false,
        }
    }

    /// Seals events with the vault and indexes them for search, as
    /// `serve` does (by default they are stored as given).
    pub fn sealed(mut self) -> LogBuilder {
        self.sealed = true;
        self
    }

    /// How often the sequencer signs a checkpoint.
    pub fn checkpoint_interval(mut self, interval: Duration) -> LogBuilder {
        self.checkpoint_interval = interval;
        self
    }

    /// Creates the log in a fresh `MemoryStore` (origin record and a signed
    /// empty checkpoint, as `lifecycle` creates them), starts its sequencer
    /// and builds its router.
    pub fn start(self) -> InProcessLog {
        let origin = self.origin;
        let keys = LogKeys::generate().unwrap();
        let store = Arc::new(MemoryStore::new());
        store
            .put_record(RecordSpace::Meta, ORIGIN_RECORD, origin.as_bytes())
            .unwrap();
        let signer = Arc::new(CheckpointSigner::from_keys(&keys, &origin).unwrap());
        let empty = signer.sign(0, merkle::empty_root(), 1).unwrap();
        store
            .put_checkpoint(&StoredCheckpoint {
                published_at_ms: 1,
                note: empty.note.clone().into_bytes(),
            })
            .unwrap();
        let view = Arc::new(LogView::new(empty, 0, Clock::system()));
        let config = SequencerConfig {
            checkpoint_interval: self.checkpoint_interval,
            ..SequencerConfig::default()
        };
        let dyn_store: Arc<dyn Store> = store.clone();
        let vault = Arc::new(
            Vault::new(dyn_store.clone(), &MasterKey::from_bytes(self.master_key)).unwrap(),
        );
        // Unless sealed, events are stored as given (no vault in front of
        // the store), as these tests have always run them: they inspect
        // and damage what the store holds.
        let sealing = if self.sealed {
            Sealing::Vault(vault.clone())
        } else {
            Sealing::Plaintext
        };
        let sequencer = Sequencer::start(
            store.clone(),
            sealing,
            signer,
            config.clone(),
            view.clone(),
            RightEdge::empty(),
            None,
        )
        .unwrap();
        let api_keys = ApiKeys::new(dyn_store.clone());
        let state = AppState::new(AppParts {
            origin: origin.as_str().into(),
            verifier_keys: Arc::new(keys.verifier_keys(&origin).unwrap()),
            tiles: Arc::new(TileCache::new(
                dyn_store.clone(),
                DEFAULT_READ_CACHE_BYTES,
                DEFAULT_PROOF_CACHE_BYTES,
            )),
            store: dyn_store,
            view: view.clone(),
            sequencer: sequencer.handle(),
            keys: api_keys.clone(),
            limits: Arc::new(ApiLimits::default()),
            metrics: None,
            checkpoint_interval: config.checkpoint_interval,
            witnessed: None,
            alerts: None,
            vault,
        });
        InProcessLog {
            origin,
            store,
            keys,
            api_keys,
            app: api::router(state),
            view,
            sequencer: Some(sequencer),
        }
    }
}

/// A running in-process log.
pub struct InProcessLog {
    pub origin: String,
    /// The backing store, to inspect or to make fail.
    pub store: Arc<MemoryStore>,
    pub keys: LogKeys,
    pub api_keys: ApiKeys,
    /// The whole application, as `veritrail serve` would serve it.
    pub app: Router,
    pub view: Arc<LogView>,
    sequencer: Option<Sequencer>,
}

impl InProcessLog {
    /// Creates an API key for `app` with `role` and returns its token.
    pub fn create_key(&self, app: &str, role: Role) -> String {
        self.api_keys.create(app, role, None).unwrap().1
    }

    /// Sends `req` through the router: status, headers and JSON answer.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    /// The oracle: the stored checkpoint verifies, the stored tree
    /// reproduces its root, and fsck finds nothing wrong.
    pub fn check_log(&self) -> Checkpoint {
        let stored = self.store.checkpoint().unwrap().unwrap();
        let verifiers = LogVerifiers::from_keys(&self.keys, &self.origin).unwrap();
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

    /// Sequences what is queued, signs a final checkpoint and stops.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.sequencer.take() {
            tokio::task::spawn_blocking(move || s.shutdown())
                .await
                .unwrap();
        }
    }
}
