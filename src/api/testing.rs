//! For the API's unit tests: a log assembled in this process the way
//! `server.rs` assembles one (memory store, vault, signer, running
//! sequencer, `AppState`), with the memory store returned so a test can
//! make its writes fail.

use std::sync::Arc;
use std::time::Duration;

use super::{ApiLimits, AppState};
use crate::auth::ApiKeys;
use crate::crypto::MasterKey;
use crate::note::keys::LogKeys;
use crate::sequencer::{
    CheckpointSigner, Clock, LogView, RightEdge, Sealing, Sequencer, SequencerConfig,
};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::vault::Vault;

/// The store (to make fail), the state, and the sequencer (to shut down).
pub(super) fn log(
    alerts: Option<Arc<crate::alerts::Alerts>>,
) -> (Arc<MemoryStore>, AppState, Sequencer) {
    let inner = Arc::new(MemoryStore::new());
    let vault = Arc::new(Vault::new(inner.clone(), &MasterKey::from_bytes([9; 32])).unwrap());
    let store: Arc<dyn Store> = vault.store().clone();
    let keys = LogKeys::generate().unwrap();
    let signer = Arc::new(CheckpointSigner::from_keys(&keys, "example.com/log").unwrap());
    let view = Arc::new(LogView::new(
        signer.sign(0, crate::merkle::empty_root(), 0).unwrap(),
        0,
        Clock::system(),
    ));
    let seq = Sequencer::start(
        store.clone(),
        Sealing::Vault(vault.clone()),
        signer,
        SequencerConfig::default(),
        view.clone(),
        RightEdge::empty(),
    )
    .unwrap();
    let state = AppState {
        origin: "example.com/log".into(),
        verifier_keys: Arc::new(keys.verifier_keys("example.com/log").unwrap()),
        keys: ApiKeys::new(store.clone()),
        store,
        view,
        sequencer: seq.handle(),
        limits: Arc::new(ApiLimits::default()),
        metrics: None,
        checkpoint_interval: Duration::from_secs(1),
        witnessed: None,
        alerts,
        vault,
    };
    (inner, state, seq)
}
