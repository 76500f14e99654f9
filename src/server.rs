//! `veritrail serve`: loads (or creates) the log, starts the sequencer and
//! the HTTP server, and shuts both down gracefully on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::api::{self, AppParts, AppState};
use crate::auth::ApiKeys;
use crate::config::{ServeConfig, StoreBackend};
use crate::history::{self, LogVerifiers};
use crate::lifecycle;
use crate::listen;
use crate::sequencer::{Clock, LogView, Sealing, Sequencer, TileCache};
use crate::store::Store;
use crate::store::postgres::PgStore;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be opened.
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::LifecycleError),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(String),
}

/// Installs the Prometheus recorder once per process.
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .ok()?;
            builder.install_recorder().ok()
        })
        .clone()
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    // The one clock of the process: every time the log records is read from it.
    let clock = Clock::system();
    crate::store::sled::set_cache_capacity(config.store_cache_bytes);
    let data = config.data.clone();
    let origin = config.origin.clone();
    let creation_clock = clock.clone();
    let backend = config.backend.clone();
    let opened = tokio::task::spawn_blocking(move || match backend {
        StoreBackend::Sled => lifecycle::open_or_create(&data, origin.as_deref(), &creation_clock),
        StoreBackend::Remote { postgres, bucket } => {
            let store = PgStore::open(&postgres, &bucket)
                .map_err(|e| lifecycle::LifecycleError::Io(e.to_string()))?;
            lifecycle::open_or_create_on(&data, origin.as_deref(), &creation_clock, Arc::new(store))
        }
    })
    .await
    .map_err(|e| ServeError::Io(e.to_string()))??;
    if let Some(admin) = &opened.created_admin_key {
        println!(
            "veritrail: created a new log in {} with origin {}",
            config.data.display(),
            opened.origin
        );
        println!(
            "veritrail: admin API key written to {} (keep it secret)",
            admin.display()
        );
    } else {
        println!(
            "veritrail: loaded the log in {} (origin {}, {} entries)",
            config.data.display(),
            opened.origin,
            opened.edge.size()
        );
    }
    println!("veritrail: verifier keys");
    println!("  ecdsa   {}", opened.verifier_keys.ecdsa);
    println!("  ed25519 {}", opened.verifier_keys.ed25519);

    if !config.known_checkpoints.is_empty() {
        let verifiers = LogVerifiers::from_verifier_keys(&opened.origin, &opened.verifier_keys)
            .map_err(|e| ServeError::Lifecycle(lifecycle::LifecycleError::Config(e.to_string())))?;
        let seen = history::check_known_checkpoints(
            &config.known_checkpoints,
            config.peer_ca_pem.as_deref(),
            &verifiers,
            opened.store.as_ref(),
            opened.edge.size(),
        )
        .await
        .map_err(|e| ServeError::Lifecycle(lifecycle::LifecycleError::Tampered(e)))?;
        for (source, size) in seen {
            println!(
                "veritrail: the tree contains the published checkpoint of size {size} from {source}"
            );
        }
    }
    let store: Arc<dyn Store> = opened.store.clone();
    let env_key = std::env::var(crate::vault::MASTER_KEY_ENV).ok();
    let (master, key_origin) = crate::vault::open_master_key(
        &config.data,
        store.as_ref(),
        env_key.as_deref(),
        config.master_key_file.as_deref(),
    )
    .map_err(|e| ServeError::Io(e.to_string()))?;
    match &key_origin {
        crate::vault::MasterKeyOrigin::Created(p) => println!(
            "veritrail: created the master key {}: it encrypts every event at rest; keep it and back it up separately from the data directory (without it no event can be read)",
            p.display()
        ),
        crate::vault::MasterKeyOrigin::File(p) => {
            println!("veritrail: master key read from {}", p.display())
        }
        crate::vault::MasterKeyOrigin::Env => println!(
            "veritrail: master key read from {}",
            crate::vault::MASTER_KEY_ENV
        ),
    }
    // With the remote backend every frontend shares the keyring, so it is
    // kept in the database (docs/operations.md says what that means for
    // copies of old keys).
    let keyring = match &config.backend {
        StoreBackend::Sled => {
            crate::vault::KeyringHome::File(config.data.join(crate::vault::KEYRING_FILE))
        }
        StoreBackend::Remote { .. } => crate::vault::KeyringHome::Store,
    };
    // The vault seals event bodies on the write path and opens them for
    // reads, search and erasure; the store underneath is only storage.
    let vault = Arc::new(
        crate::vault::Vault::open(store.clone(), &master, keyring)
            .map_err(|e| ServeError::Io(e.to_string()))?,
    );
    let vault_for_shutdown = vault.clone();
    let view = Arc::new(LogView::new(
        opened.published,
        opened.edge.size(),
        clock.clone(),
    ));
    let sequencer = Sequencer::start(
        store.clone(),
        Sealing::Vault(vault.clone()),
        opened.signer,
        config.sequencer.clone(),
        view.clone(),
        opened.edge,
    )
    .map_err(ServeError::Io)?;
    let metrics = install_metrics();
    if let Some(h) = metrics.clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                h.run_upkeep();
            }
        });
    }
    let witnessed = match config.witnessing.clone() {
        Some(policy) => {
            println!(
                "veritrail: checkpoints are witnessed by {} of {} witnesses",
                policy.quorum,
                policy.witnesses.len()
            );
            Some(
                crate::cosign::start(policy, store.clone(), view.clone())
                    .map_err(ServeError::Io)?,
            )
        }
        None => None,
    };
    let alerts = match &config.alerts {
        Some(rules) => {
            let a = crate::alerts::Alerts::start(rules, &config.data, master.alerts_state_key())
                .map_err(ServeError::Io)?;
            println!(
                "veritrail: {} alert rules watch accepted events",
                rules.rules.len()
            );
            tokio::spawn(a.clone().checkpoint_loop(rules.checkpoint_interval));
            Some(a)
        }
        None => None,
    };
    let state = AppState::new(AppParts {
        origin: opened.origin.clone().into(),
        verifier_keys: Arc::new(opened.verifier_keys),
        store: store.clone(),
        tiles: Arc::new(TileCache::new(store.clone(), config.read_cache_bytes)),
        view,
        sequencer: sequencer.handle(),
        keys: ApiKeys::new(store)
            .with_rate_limit(config.limits.rate_limit)
            .with_clock(clock),
        vault,
        limits: Arc::new(config.limits.clone()),
        metrics,
        checkpoint_interval: config.sequencer.checkpoint_interval,
        witnessed,
        alerts: alerts.clone(),
    });
    // The first admin key was made with the log, before it could append:
    // the log records it before it answers anyone.
    api::record_first_keys(&state).await.map_err(|e| {
        ServeError::Io(format!(
            "couldn't record the first admin key in the log: {}",
            e.message()
        ))
    })?;
    tokio::spawn(api::retention_loop(
        state.clone(),
        config.retention_interval,
    ));
    let served = listen::serve(
        api::router(state),
        config.listen,
        config.tls.as_ref(),
        "veritrail",
        listen::shutdown_signal(),
        // The request timeout covers the head as well as the body.
        config.limits.request_timeout,
    )
    .await;
    // In-flight requests are done: checkpoint the alert windows, sequence
    // whatever is still queued, sign a final checkpoint, and stop.
    if let Some(a) = &alerts {
        a.shutdown().await;
    }
    let index = vault_for_shutdown;
    tokio::task::spawn_blocking(move || {
        sequencer.shutdown();
        // The next start then has nothing to re-index.
        if let Err(e) = index.flush_index() {
            tracing::error!(error = %e, "couldn't write the search index on shutdown; it is rebuilt from the events on the next start");
        }
    })
    .await
    .map_err(|e| ServeError::Io(e.to_string()))?;
    println!("veritrail: stopped");
    served.map_err(|e| ServeError::Io(format!("server error: {e}")))
}
