//! Alerts on suspicious activity: rules from the configuration file
//! ([`rules`]), evaluated in this process on the plaintext of accepted
//! events ([`eval`]), delivered to a signed webhook ([`webhook`]). The
//! alert itself is appended to the log by the API (`api/alerts.rs`), as an
//! audit event of the log's own app, so it has an inclusion proof.
//!
//! Windows survive a restart by checkpoint: every `checkpoint_interval`
//! (when something changed) and at shutdown, the rules' state is written
//! whole to `alerts.state` in the data directory, sealed under a key
//! derived from the master key (it holds the groups' values: actor ids,
//! subjects). On start the state of every unchanged rule is restored. A
//! crash loses what was counted since the last checkpoint.
//!
//! Invariant: evaluation costs memory bounded by the rules' caps and time
//! per event bounded by the number of rules, never by the log's size.

pub mod eval;
pub mod rules;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

pub use eval::{Alert, Engine, Observed};
pub use rules::{AlertsConfig, Rule};
pub use webhook::{SIGNATURE_HEADER, Webhook, signature};

use crate::crypto::DataKey;
use crate::durable::{self, Secrecy};

/// The checkpoint of the rules' windows, in the data directory.
pub const STATE_FILE: &str = "alerts.state";
/// Undeliverable alerts, one JSON line each, in the data directory by default.
pub const DEAD_LETTER_FILE: &str = "alerts-dead-letter.jsonl";
/// The action of an alert's audit event.
pub const ALERT_ACTION: &str = "alert.raised";
/// The actor id of an alert's audit event.
pub const ALERT_ACTOR: &str = "veritrail-alerts";
const STATE_AAD: &[u8] = b"veritrail/alerts-state/v1";

#[derive(Serialize, Deserialize)]
struct StateFile<R> {
    version: u32,
    /// Each rule's name, fingerprint and state.
    rules: R,
}

/// The state file as read.
type ReadStateFile = StateFile<Vec<(String, String, eval::RuleState)>>;

/// The running alert service: the engine, its checkpoint and the webhook.
pub struct Alerts {
    engine: Engine,
    state_path: PathBuf,
    state_key: DataKey,
    dirty: AtomicBool,
    webhook: Option<Webhook>,
}

impl Alerts {
    /// Builds the engine, restores the checkpointed windows from `data`,
    /// starts the webhook. A state file that cannot be read or opened is
    /// an error (the operator decides: restore the master key, or remove
    /// the file and start with empty windows).
    pub fn start(
        config: &AlertsConfig,
        data: &Path,
        state_key: DataKey,
    ) -> Result<Arc<Alerts>, String> {
        let engine = Engine::new(config.rules.clone(), config.max_entries_per_rule);
        let state_path = data.join(STATE_FILE);
        match std::fs::read(&state_path) {
            Ok(sealed) => {
                let plain = state_key.open(STATE_AAD, &sealed).map_err(|e| {
                    format!(
                        "couldn't open the alert state {}: {e} (was it written under another master key? remove it to start with empty windows)",
                        state_path.display()
                    )
                })?;
                let file: ReadStateFile = serde_json::from_slice(&plain).map_err(|e| {
                    format!("the alert state {} is damaged: {e}", state_path.display())
                })?;
                let n = engine.restore(file.rules);
                tracing::info!(
                    restored = n,
                    "alert rule windows restored from the checkpoint"
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "couldn't read the alert state {}: {e}",
                    state_path.display()
                ));
            }
        }
        let webhook = match &config.webhook {
            Some(w) => {
                let dead = w
                    .dead_letter
                    .clone()
                    .unwrap_or_else(|| data.join(DEAD_LETTER_FILE));
                Some(Webhook::start(w.clone(), dead)?)
            }
            None => None,
        };
        Ok(Arc::new(Alerts {
            engine,
            state_path,
            state_key,
            dirty: AtomicBool::new(false),
            webhook,
        }))
    }

    /// The rules and their windows.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Counts one accepted event; the alerts it raised.
    pub fn evaluate(&self, ob: &Observed, index: u64) -> Vec<Alert> {
        self.evaluate_batch(std::slice::from_ref(&(ob, index)))
    }

    /// Counts a batch of accepted events with their leaf indexes, in
    /// order; the alerts they raised (see [`Engine::evaluate_batch`]).
    pub fn evaluate_batch(&self, batch: &[(&Observed, u64)]) -> Vec<Alert> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.dirty.store(true, Ordering::Relaxed);
        self.engine.evaluate_batch(batch)
    }

    /// Hands an alert, recorded at leaf `index` (if it could be), to the webhook.
    pub fn deliver(&self, alert: &Alert, index: Option<u64>, raised_at: &str) {
        metrics::counter!("veritrail_alerts_total", "rule" => alert.rule.clone()).increment(1);
        if let Some(w) = &self.webhook {
            let body =
                serde_json::json!({ "alert": alert, "index": index, "raised_at": raised_at });
            w.send(serde_json::to_vec(&body).unwrap_or_default());
        }
    }

    /// Writes the windows to the state file if they changed since the last time.
    pub fn checkpoint(&self) -> Result<(), String> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let written = self.write_state();
        if written.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
            metrics::counter!("veritrail_alerts_checkpoint_failures_total").increment(1);
        }
        written
    }

    fn write_state(&self) -> Result<(), String> {
        let file = StateFile {
            version: 1,
            rules: self.engine.snapshot_view(),
        };
        let plain = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        let sealed = self
            .state_key
            .seal(STATE_AAD, &plain)
            .map_err(|e| e.to_string())?;
        durable::replace(&self.state_path, &sealed, Secrecy::Secret).map_err(|e| {
            format!(
                "couldn't write the alert state {}: {e}",
                self.state_path.display()
            )
        })
    }

    /// Checkpoints every `interval` until the process ends.
    pub async fn checkpoint_loop(self: Arc<Self>, interval: std::time::Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.checkpoint()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "couldn't checkpoint the alert windows; retrying")
                }
                Err(e) => tracing::error!(error = %e, "the alert checkpoint task failed"),
            }
        }
    }

    /// At shutdown: a last checkpoint, and undelivered alerts to the dead-letter file.
    pub async fn shutdown(&self) {
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "couldn't checkpoint the alert windows at shutdown; the next start begins from the previous checkpoint");
        }
        if let Some(w) = &self.webhook {
            w.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    const RULES: &str = "[alerts]\n[[alerts.rule]]\nname = \"logins\"\nkind = \"threshold\"\nmatch = { action = \"login\" }\ngroup_by = \"actor\"\nmore_than = 1\nwindow = \"10m\"\n";

    fn login(at: &str) -> crate::event::AuditEvent {
        crate::event::parse_event(
            &serde_json::json!({
                "actor": {"id": "m", "type": "user"}, "action": "login",
                "resource": {"type": "session", "id": "s"}, "purpose": "auth",
                "outcome": "failure", "occurred_at": at,
            }),
            &crate::event::EventLimits::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn windows_survive_a_checkpoint_sealed_under_the_master_key() {
        let config = AlertsConfig::parse(RULES, "t").unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = || MasterKey::from_bytes([3; 32]).alerts_state_key();
        let a = Alerts::start(&config, dir.path(), key()).unwrap();
        let ob = a
            .engine()
            .observe("app", &login("2026-01-01T10:00:00Z"))
            .unwrap();
        assert!(a.evaluate(&ob, 0).is_empty());
        a.shutdown().await;
        let sealed = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"\"logins"),
            "the state is sealed"
        );
        let b = Alerts::start(&config, dir.path(), key()).unwrap();
        let ob = b
            .engine()
            .observe("app", &login("2026-01-01T10:01:00Z"))
            .unwrap();
        assert_eq!(b.evaluate(&ob, 1).len(), 1);
        // Another master key cannot open it: refused, not silently emptied.
        let other = MasterKey::from_bytes([4; 32]).alerts_state_key();
        assert!(Alerts::start(&config, dir.path(), other).is_err());
    }

    #[tokio::test]
    async fn a_failed_checkpoint_is_reported_and_retried() {
        let config = AlertsConfig::parse(RULES, "t").unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let a = Alerts::start(
            &config,
            dir.path(),
            MasterKey::from_bytes([3; 32]).alerts_state_key(),
        )
        .unwrap();
        let ob = a
            .engine()
            .observe("app", &login("2026-01-01T10:00:00Z"))
            .unwrap();
        a.evaluate(&ob, 0);
        // A directory where the state file goes: the write fails.
        std::fs::create_dir(dir.path().join(STATE_FILE)).unwrap();
        assert!(a.checkpoint().is_err());
        std::fs::remove_dir(dir.path().join(STATE_FILE)).unwrap();
        // Still dirty, so the next checkpoint writes it.
        a.checkpoint().unwrap();
        assert!(dir.path().join(STATE_FILE).is_file());
    }
}
