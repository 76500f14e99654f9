//! `veritrail serve`: loads (or creates) the log, starts the sequencer and
//! the HTTP server, and shuts both down gracefully on SIGINT/SIGTERM. On
//! the remote backend several frontends share the log: each starts as a
//! follower and sequences only while it holds the lease (`leadership.rs`);
//! here are the engines of both roles, each built afresh from the store.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::api::{self, AppParts, AppState};
use crate::auth::ApiKeys;
use crate::config::{ServeConfig, StoreBackend};
use crate::history::{self, LogVerifiers};
use crate::leadership::{Engine, Engines, Leadership, LeaseTimings};
use crate::lifecycle;
use crate::listen;
use crate::sequencer::{Clock, Lease, LogView, Sealing, Sequencer, TileCache};
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
    // Before the log opens: its store keeps descriptors by this limit.
    let descriptors = crate::store::sled::raise_descriptor_limit();
    tracing::info!(?descriptors, "open files limit");
    let data = config.data.clone();
    let origin = config.origin.clone();
    let creation_clock = clock.clone();
    let backend = config.backend.clone();
    let (opened, remote) = tokio::task::spawn_blocking(move || match backend {
        StoreBackend::Sled => Ok((
            lifecycle::open_or_create(&data, origin.as_deref(), &creation_clock)?,
            None,
        )),
        StoreBackend::Remote { postgres, bucket } => {
            let store = Arc::new(
                PgStore::open(&postgres, &bucket)
                    .map_err(|e| lifecycle::LifecycleError::Io(e.to_string()))?,
            );
            let log = lifecycle::open_or_create_on(
                &data,
                origin.as_deref(),
                &creation_clock,
                store.clone(),
            )?;
            Ok::<_, lifecycle::LifecycleError>((log, Some(store)))
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
    if let Some(policy) = &config.witnessing {
        println!(
            "veritrail: checkpoints are witnessed by {} of {} witnesses",
            policy.quorum,
            policy.witnesses.len()
        );
    }
    let alerts = match &config.alerts {
        Some(rules) => {
            let a = crate::alerts::Alerts::start(
                rules,
                &config.data,
                store.clone(),
                master.alerts_state_key(),
            )
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
    let parts = Arc::new(Parts {
        config: config.clone(),
        store: store.clone(),
        keys: ApiKeys::new(store.clone())
            .with_rate_limit(config.limits.rate_limit)
            .with_clock(clock.clone()),
        master,
        keyring,
        origin: opened.origin.clone(),
        verifier_keys: Arc::new(opened.verifier_keys.clone()),
        signer: opened.signer.clone(),
        clock,
        metrics,
        alerts: alerts.clone(),
    });
    let served = match remote {
        None => {
            let engine = parts
                .leader_engine(opened.edge, opened.published, None)
                .map_err(ServeError::Io)?;
            // The first admin key was made with the log, before it could
            // append: the log records it before it answers anyone.
            if let Some(st) = &engine.state {
                api::record_first_keys(st).await.map_err(|e| {
                    ServeError::Io(format!(
                        "couldn't record the first admin key in the log: {}",
                        e.message()
                    ))
                })?;
            }
            let served = listen::serve(
                engine.router.clone(),
                config.listen,
                config.tls.as_ref(),
                "veritrail",
                listen::shutdown_signal(),
                // The request timeout covers the head as well as the body.
                config.limits.request_timeout,
                |_| {},
            )
            .await;
            // In-flight requests are done: checkpoint the alert windows,
            // sequence whatever is still queued, sign a final checkpoint,
            // and stop.
            if let Some(a) = &alerts {
                a.shutdown().await;
            }
            tokio::task::spawn_blocking(move || (engine.stop)(true))
                .await
                .map_err(|e| ServeError::Io(e.to_string()))?;
            served
        }
        Some(pg) => {
            drop(opened);
            let follower = {
                let p = parts.clone();
                tokio::task::spawn_blocking(move || p.follower())
                    .await
                    .map_err(|e| ServeError::Io(e.to_string()))?
                    .map_err(ServeError::Io)?
            };
            let leadership = Leadership::new(
                pg,
                holder_name(),
                config.lease,
                follower.router.clone(),
                config
                    .limits
                    .max_events_body
                    .max(config.limits.max_other_body),
                config.peer_ca_pem.as_deref(),
            )
            .map_err(ServeError::Io)?;
            let advertise = config.advertise.clone();
            let scheme = listen::scheme(config.tls.as_ref());
            let reporter = leadership.clone();
            let running = leadership.start(parts.clone(), follower).await;
            let served = listen::serve(
                leadership.router(),
                config.listen,
                config.tls.as_ref(),
                "veritrail",
                listen::shutdown_signal(),
                config.limits.request_timeout,
                move |bound| {
                    let url = advertise.unwrap_or_else(|| {
                        let mut at = bound;
                        if at.ip().is_unspecified() {
                            at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                        }
                        format!("{scheme}://{at}")
                    });
                    println!("veritrail: a follower until it holds the sequencer lease; other frontends forward writes to {url} while it does");
                    reporter.advertise(url);
                },
            )
            .await;
            if let Some(a) = &alerts {
                a.shutdown().await;
            }
            running.shutdown().await;
            served
        }
    };
    println!("veritrail: stopped");
    served.map_err(|e| ServeError::Io(format!("server error: {e}")))
}

/// This process's name in the lease row: host, process id and a random
/// part, so a restarted frontend is a new holder.
fn holder_name() -> String {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!(
        "{}/{}/{}",
        lifecycle::default_origin().trim_end_matches("/veritrail"),
        std::process::id(),
        hex::encode(r)
    )
}

/// What every engine of this process is built from.
struct Parts {
    config: ServeConfig,
    store: Arc<dyn Store>,
    /// One key registry for every engine of the process, so a revocation
    /// through any of them drops the key from the one cache of verified keys.
    keys: ApiKeys,
    master: crate::crypto::MasterKey,
    keyring: crate::vault::KeyringHome,
    origin: String,
    verifier_keys: Arc<crate::note::keys::LogVerifierKeys>,
    signer: Arc<crate::sequencer::CheckpointSigner>,
    clock: Clock,
    metrics: Option<PrometheusHandle>,
    alerts: Option<Arc<crate::alerts::Alerts>>,
}

impl Parts {
    fn state(
        &self,
        view: Arc<LogView>,
        sequencer: crate::sequencer::SequencerHandle,
        vault: Arc<crate::vault::Vault>,
        witnessed: Option<Arc<crate::cosign::WitnessedView>>,
        alerts: Option<Arc<crate::alerts::Alerts>>,
    ) -> AppState {
        let store = self.store.clone();
        AppState::new(AppParts {
            origin: self.origin.clone().into(),
            verifier_keys: self.verifier_keys.clone(),
            store: store.clone(),
            tiles: Arc::new(TileCache::new(
                store.clone(),
                self.config.read_cache_bytes,
                self.config.proof_cache_bytes,
            )),
            view,
            sequencer,
            keys: self.keys.clone(),
            vault,
            limits: Arc::new(self.config.limits.clone()),
            metrics: self.metrics.clone(),
            checkpoint_interval: self.config.sequencer.checkpoint_interval,
            witnessed,
            alerts,
        })
    }

    /// The engine that sequences (blocking): a vault opened afresh over
    /// the store, the sequencer over `edge` from `published` (under `lease`
    /// when several frontends share the store), witnessing, retention.
    fn leader_engine(
        &self,
        edge: crate::sequencer::RightEdge,
        published: crate::sequencer::Published,
        lease: Option<Arc<Lease>>,
    ) -> Result<Engine, String> {
        let store = self.store.clone();
        // The vault seals event bodies on the write path and opens them for
        // reads, search and erasure; the store underneath is only storage.
        // The search index is brought up to the tree in the background.
        let vault = Arc::new(
            crate::vault::Vault::open_building_index(
                store.clone(),
                &self.master,
                self.keyring.clone(),
                self.config.search_index_flush_events,
            )
            .map_err(|e| e.to_string())?,
        );
        let pace = self.config.background;
        crate::search::rebuild::start(&vault, pace).map_err(|e| e.to_string())?;
        vault.start_index_tidying(pace).map_err(|e| e.to_string())?;
        // Several frontends: the alert windows are the last leader's.
        if let (Some(alerts), Some(_)) = (&self.alerts, &lease) {
            alerts.reload()?;
        }
        crate::vault::start_erasure_cleanup(&vault, pace).map_err(|e| e.to_string())?;
        let view = Arc::new(LogView::new(published, edge.size(), self.clock.clone()));
        let sequencer = Sequencer::start(
            store.clone(),
            Sealing::Vault(vault.clone()),
            self.signer.clone(),
            self.config.sequencer.clone(),
            view.clone(),
            edge,
            lease,
        )?;
        let witnessed = match self.config.witnessing.clone() {
            Some(policy) => Some(crate::cosign::start(policy, store, view.clone())?),
            None => None,
        };
        let state = self.state(
            view,
            sequencer.handle(),
            vault.clone(),
            witnessed,
            self.alerts.clone(),
        );
        let retention = tokio::spawn(api::retention_loop(
            state.clone(),
            self.config.retention_interval,
        ));
        Ok(Engine {
            state: Some(state.clone()),
            router: api::router(state),
            stop: Box::new(move |clean| {
                retention.abort();
                sequencer.shutdown();
                // The next start then has nothing to re-index. After a lost
                // lease the next leader re-derives it instead.
                if clean && let Err(e) = vault.flush_index() {
                    tracing::error!(error = %e, "couldn't write the search index on shutdown; it is rebuilt from the events on the next start");
                }
            }),
        })
    }
}

impl Engines for Parts {
    fn leader(&self, lease: Arc<Lease>) -> Result<Engine, String> {
        // Everything afresh from the store, under the lease just taken.
        let log = lifecycle::load_from(&self.config.data, Some(&self.origin), self.store.clone())
            .map_err(|e| e.to_string())?;
        self.leader_engine(log.edge, log.published, Some(lease))
    }

    fn follower(&self) -> Result<Engine, String> {
        let log = lifecycle::load_from(&self.config.data, Some(&self.origin), self.store.clone())
            .map_err(|e| e.to_string())?;
        // Writes nothing: event reads and search are forwarded to the leader.
        let vault = Arc::new(
            crate::vault::Vault::open_for_check(
                self.store.clone(),
                &self.master,
                self.keyring.clone(),
            )
            .map_err(|e| e.to_string())?,
        );
        let view = Arc::new(LogView::new(
            log.published,
            log.edge.size(),
            self.clock.clone(),
        ));
        let sequencer = Sequencer::follow(
            self.store.clone(),
            view.clone(),
            LeaseTimings::default().refresh,
            self.config.sequencer.queue_capacity,
        )?;
        let state = self.state(view, sequencer.handle(), vault, None, None);
        Ok(Engine {
            state: None,
            router: api::router(state),
            stop: Box::new(move |_| sequencer.shutdown()),
        })
    }
}
