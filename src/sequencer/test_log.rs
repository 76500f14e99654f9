//! One way for the crate's own unit tests to start a log in this process,
//! the way `lifecycle` creates one and `veritrail serve` starts it: an
//! origin record and a signed empty checkpoint in a fresh [`MemoryStore`],
//! a published view, and the sequencer, sealing through the vault (or, for
//! tests that inspect and damage what the store holds, storing plaintext).
//!
//! This is the one place in `src/` tests that knows how the engine is
//! started; `tests/common/in_process.rs` is its twin for integration tests.

use std::sync::Arc;

use super::{
    CheckpointSigner, Clock, LogView, PreparedEvent, Receipt, RightEdge, Sealing, Sequencer,
    SequencerConfig, SequencerHandle,
};
use crate::crypto::MasterKey;
use crate::lifecycle::ORIGIN_RECORD;
use crate::merkle;
use crate::note::keys::LogKeys;
use crate::store::memory::MemoryStore;
use crate::store::{RecordSpace, Store, StoredCheckpoint};
use crate::vault::Vault;

/// How to start a test log; [`TestLogBuilder::start`] starts it.
pub(crate) struct TestLogBuilder {
    origin: String,
    sealed: bool,
    master_key: [u8; 32],
    index_flush_events: usize,
}

impl TestLogBuilder {
    /// A new, empty log named `origin` whose events are sealed by the vault.
    pub(crate) fn new(origin: &str) -> TestLogBuilder {
        TestLogBuilder {
            origin: origin.to_string(),
            sealed: true,
            master_key: [9; 32],
            index_flush_events: crate::vault::DEFAULT_INDEX_FLUSH_EVENTS,
        }
    }

    /// Writes the vault's search index out every `n` events.
    pub(crate) fn index_flush_events(mut self, n: usize) -> TestLogBuilder {
        self.index_flush_events = n;
        self
    }

    /// Stores events as given, without the vault in front of the store.
    pub(crate) fn plaintext(mut self) -> TestLogBuilder {
        self.sealed = false;
        self
    }

    /// Creates the log and starts its sequencer.
    pub(crate) fn start(self) -> TestLog {
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
        // The vault keeps its keyring in the store: a plaintext log has none.
        let vault = self.sealed.then(|| {
            Arc::new(
                Vault::open_with_index_flush(
                    store.clone(),
                    &MasterKey::from_bytes(self.master_key),
                    crate::vault::KeyringHome::Store,
                    self.index_flush_events,
                )
                .unwrap(),
            )
        });
        let sealing = match &vault {
            Some(vault) => Sealing::Vault(vault.clone()),
            None => Sealing::Plaintext,
        };
        let sequencer = Sequencer::start(
            store.clone(),
            sealing,
            signer,
            SequencerConfig::default(),
            view.clone(),
            RightEdge::empty(),
            None,
        )
        .unwrap();
        TestLog {
            origin,
            store,
            vault,
            keys,
            view,
            sequencer: Some(sequencer),
        }
    }
}

/// A running test log.
pub(crate) struct TestLog {
    pub(crate) origin: String,
    /// The backing store, to inspect or damage.
    pub(crate) store: Arc<MemoryStore>,
    vault: Option<Arc<Vault>>,
    pub(crate) keys: LogKeys,
    pub(crate) view: Arc<LogView>,
    sequencer: Option<Sequencer>,
}

impl TestLog {
    /// The store, as the service layer holds it.
    pub(crate) fn dyn_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The vault over the same store (a sealed log's).
    pub(crate) fn vault(&self) -> Arc<Vault> {
        self.vault
            .clone()
            .expect("a plaintext test log has no vault")
    }

    /// The sequencer's handle, to submit to.
    pub(crate) fn handle(&self) -> SequencerHandle {
        self.sequencer
            .as_ref()
            .expect("the test log was shut down")
            .handle()
    }

    /// Submits one batch for `app` and waits until it is durable.
    pub(crate) async fn submit(&self, app: &str, events: Vec<PreparedEvent>) -> Receipt {
        self.handle()
            .submit(app.into(), events, false)
            .await
            .unwrap()
    }

    /// Sequences what is queued, signs a final checkpoint and stops; the
    /// store, the vault and the keys stay readable.
    pub(crate) fn shutdown(&mut self) {
        if let Some(s) = self.sequencer.take() {
            s.shutdown();
        }
    }

    /// [`TestLog::shutdown`] from async code, off the runtime's threads
    /// (stopping the sequencer blocks until its last checkpoint is signed).
    pub(crate) async fn shut_down(mut self) {
        tokio::task::spawn_blocking(move || self.shutdown())
            .await
            .unwrap();
    }
}

/// `raw` as a writer's event ready to submit (a fixed salt, no id).
pub(crate) fn prepared(raw: &serde_json::Value) -> PreparedEvent {
    let ev = crate::event::parse_event(raw, &crate::event::EventLimits::default())
        .expect("a valid test event");
    let canonical = ev.canonical_bytes();
    let salt = [1u8; 32];
    PreparedEvent {
        id: None,
        commitment: crate::event::commitment(&salt, &canonical),
        terms: None,
        canonical,
        salt,
    }
}
