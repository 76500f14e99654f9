//! Alerts on suspicious activity: rules from the configuration file
//! ([`rules`]), evaluated in this process on the plaintext of accepted
//! events ([`eval`]), delivered to a signed webhook ([`webhook`]). The
//! alert itself is appended to the log by the API (`api/alerts.rs`), as an
//! audit event of the log's own app, so it has an inclusion proof.
//!
//! Windows survive a restart by checkpoint ([`state`]): every
//! `checkpoint_interval` and at shutdown, the part of the rules' state that
//! changed since the last checkpoint is written to the store, sealed under
//! a key derived from the master key (it holds the groups' values: actor
//! ids, subjects). On start the state of every unchanged rule is restored.
//! A crash loses what was counted since the last checkpoint. A state file
//! of an earlier version (`alerts.state`) is moved into the store on start.
//!
//! Invariant: evaluation costs memory bounded by the rules' caps and time
//! per event bounded by the number of rules, never by the log's size.

pub mod eval;
pub mod rules;
pub mod state;
pub mod webhook;

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

pub use eval::{Alert, Engine, Observed};
pub use rules::{AlertsConfig, Rule};
pub use webhook::{SIGNATURE_HEADER, Webhook, signature};

use crate::crypto::DataKey;
use crate::store::Store;

/// The checkpoint of the rules' windows as earlier versions wrote it, in
/// the data directory: moved into the store on start.
pub const STATE_FILE: &str = "alerts.state";
/// Undeliverable alerts, one JSON line each, in the data directory by default.
pub const DEAD_LETTER_FILE: &str = "alerts-dead-letter.jsonl";
/// The action of an alert's audit event.
pub const ALERT_ACTION: &str = "alert.raised";
/// The actor id of an alert's audit event.
pub const ALERT_ACTOR: &str = "veritrail-alerts";
const STATE_FILE_AAD: &[u8] = b"veritrail/alerts-state/v1";

/// The state file of earlier versions.
#[derive(Deserialize)]
struct StateFile {
    /// Each rule's name, fingerprint and state.
    rules: Vec<(String, String, eval::RuleState)>,
}

/// The running alert service: the engine, its checkpoint and the webhook.
pub struct Alerts {
    engine: Engine,
    store: Arc<dyn Store>,
    state_key: DataKey,
    /// Held by a checkpoint, so two never interleave.
    checkpointing: Mutex<()>,
    webhook: Option<Webhook>,
}

impl Alerts {
    /// Builds the engine, restores the checkpointed windows from `store`
    /// (and from a state file of an earlier version in `data`, which is
    /// then written to the store and removed), starts the webhook. A
    /// checkpoint that cannot be read or opened is an error (the operator
    /// decides: restore the master key, or change the rule to start it
    /// with empty windows).
    pub fn start(
        config: &AlertsConfig,
        data: &Path,
        store: Arc<dyn Store>,
        state_key: DataKey,
    ) -> Result<Arc<Alerts>, String> {
        let engine = Engine::new(config.rules.clone(), config.max_entries_per_rule);
        let loaded = state::load(&engine, store.as_ref(), &state_key)?;
        tracing::info!(
            restored = loaded.rules,
            stale = loaded.stale,
            "alert rule windows restored from the checkpoint"
        );
        let state_path = data.join(STATE_FILE);
        let earlier = match std::fs::read(&state_path) {
            Ok(sealed) => Some(read_state_file(&state_path, &sealed, &state_key)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(format!(
                    "couldn't read the alert state {}: {e}",
                    state_path.display()
                ));
            }
        };
        if let Some(file) = earlier {
            // What the store holds is newer than the file, if both have a rule.
            let stored: Vec<String> = engine
                .snapshot()
                .into_iter()
                .filter(|(_, _, st)| !st.groups.is_empty() || st.newest_ms != 0)
                .map(|(name, _, _)| name)
                .collect();
            let rules = file
                .rules
                .into_iter()
                .filter(|(name, _, _)| !stored.contains(name))
                .collect();
            engine.restore(rules);
            // The file goes only once the store holds what it held.
            state::write(&engine, store.as_ref(), &state_key)?;
            std::fs::remove_file(&state_path)
                .and_then(|()| crate::durable::sync_dir(data))
                .map_err(|e| format!("couldn't remove {}: {e}", state_path.display()))?;
            tracing::info!("the alert state file was moved into the store");
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
            store,
            state_key,
            checkpointing: Mutex::new(()),
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

    /// Writes what changed in the windows since the last checkpoint (see
    /// [`state`]); what it wrote.
    pub fn checkpoint(&self) -> Result<state::Written, String> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let written = state::write(&self.engine, self.store.as_ref(), &self.state_key);
        match &written {
            Ok(w) => {
                metrics::counter!("veritrail_alerts_checkpoint_records_total")
                    .increment(w.records as u64);
                metrics::counter!("veritrail_alerts_checkpoints_total").increment(1);
            }
            Err(_) => metrics::counter!("veritrail_alerts_checkpoint_failures_total").increment(1),
        }
        written
    }

    /// Replaces the windows with what the store holds, for a frontend that
    /// takes over sequencing from another: while it followed, its writes
    /// went to the leader, which counted them and checkpointed its windows;
    /// what this process counted before (when it last led) is older, and
    /// its next checkpoint would otherwise write it over the leader's.
    pub fn reload(&self) -> Result<(), String> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        for (_, lock) in self.engine.states() {
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = eval::RuleState::default();
        }
        let loaded = state::load(&self.engine, self.store.as_ref(), &self.state_key)?;
        tracing::info!(
            restored = loaded.rules,
            "alert rule windows reloaded from the checkpoint on taking over"
        );
        Ok(())
    }

    /// Checkpoints every `interval` until the process ends.
    pub async fn checkpoint_loop(self: Arc<Self>, interval: std::time::Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.checkpoint()).await {
                Ok(Ok(w)) => tracing::debug!(
                    rules = w.rules,
                    records = w.records,
                    bytes = w.bytes,
                    "alert windows checkpointed"
                ),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "couldn't checkpoint the alert windows; retrying")
                }
                Err(e) => tracing::error!(error = %e, "the alert checkpoint task failed"),
            }
        }
    }

    /// At shutdown: a last checkpoint, and undelivered alerts to the dead-letter file.
    pub async fn shutdown(self: &Arc<Self>) {
        let me = self.clone();
        let written = tokio::task::spawn_blocking(move || me.checkpoint())
            .await
            .unwrap_or_else(|e| Err(format!("the checkpoint task failed: {e}")));
        if let Err(e) = written {
            tracing::error!(error = %e, "couldn't checkpoint the alert windows at shutdown; the next start begins from the previous checkpoint");
        }
        if let Some(w) = &self.webhook {
            w.shutdown().await;
        }
    }
}

/// Opens and reads a state file of an earlier version.
fn read_state_file(path: &Path, sealed: &[u8], key: &DataKey) -> Result<StateFile, String> {
    let plain = key.open(STATE_FILE_AAD, sealed).map_err(|e| {
        format!(
            "couldn't open the alert state {}: {e} (was it written under another master key? remove it to start with empty windows)",
            path.display()
        )
    })?;
    serde_json::from_slice(&plain)
        .map_err(|e| format!("the alert state {} is damaged: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::memory::{MemoryStore, WriteFault};
    use crate::store::sled::SledStore;
    use crate::store::{RecordSpace, ScanCursor};

    const RULES: &str = "[alerts]\n[[alerts.rule]]\nname = \"logins\"\nkind = \"threshold\"\nmatch = { action = \"login\" }\ngroup_by = \"actor\"\nmore_than = 2\nwindow = \"10m\"\n";

    fn config() -> AlertsConfig {
        AlertsConfig::parse(RULES, "t").unwrap().unwrap()
    }

    fn key() -> DataKey {
        MasterKey::from_bytes([3; 32]).alerts_state_key()
    }

    fn login(actor: &str, at: &str) -> crate::event::AuditEvent {
        crate::event::parse_event(
            &serde_json::json!({
                "actor": {"id": actor, "type": "user"}, "action": "login",
                "resource": {"type": "session", "id": "s"}, "purpose": "auth",
                "outcome": "failure", "occurred_at": at,
            }),
            &crate::event::EventLimits::default(),
        )
        .unwrap()
    }

    /// Counts a login of `actor` at minute `m` past 10:00 as leaf `index`.
    fn feed(a: &Alerts, actor: &str, m: u32, index: u64) -> Vec<Alert> {
        let ob = a
            .engine()
            .observe("app", &login(actor, &format!("2026-01-01T10:{m:02}:00Z")))
            .unwrap();
        a.evaluate(&ob, index)
    }

    fn stored(store: &dyn Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        let page = store
            .scan_records(RecordSpace::AlertState, &ScanCursor::start(), 10_000)
            .unwrap();
        page.items.into_iter().map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn windows_survive_a_restart_sealed_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || -> Arc<dyn Store> { Arc::new(SledStore::open(&dir.path().join("db")).unwrap()) };
        let store = open();
        let a = Alerts::start(&config(), dir.path(), store.clone(), key()).unwrap();
        assert!(feed(&a, "mallory", 0, 0).is_empty());
        assert!(feed(&a, "mallory", 1, 1).is_empty());
        a.shutdown().await;
        let records = stored(store.as_ref());
        assert_eq!(records.len(), 2, "a header and one shard");
        assert!(
            records
                .iter()
                .all(|(_, v)| !v.windows(7).any(|w| w == b"mallory")),
            "the state is sealed"
        );
        drop((a, store));
        let store = open();
        let b = Alerts::start(&config(), dir.path(), store.clone(), key()).unwrap();
        let fired = feed(&b, "mallory", 2, 2);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].events, vec![0, 1, 2]);
        // Another master key cannot open it: refused, not silently emptied.
        let other = MasterKey::from_bytes([4; 32]).alerts_state_key();
        let refused = Alerts::start(&config(), dir.path(), store.clone(), other).err();
        assert!(refused.unwrap().contains("alert rule logins"));
    }

    #[test]
    fn a_frontend_taking_over_counts_on_from_the_leaders_checkpoint() {
        let store = Arc::new(MemoryStore::new());
        let start = || Alerts::start(&config(), Path::new("/nonexistent"), store.clone(), key());
        let (leader, follower, not_reloaded) =
            (start().unwrap(), start().unwrap(), start().unwrap());
        // What the follower counted when it led before, long ago.
        assert!(feed(&follower, "mallory", 0, 0).is_empty());
        assert!(feed(&leader, "mallory", 0, 1).is_empty());
        assert!(feed(&leader, "mallory", 1, 2).is_empty());
        leader.checkpoint().unwrap();
        follower.reload().unwrap();
        assert_eq!(feed(&follower, "mallory", 2, 3)[0].events, vec![1, 2, 3]);
        // Without the reload, the leader's count is missed.
        assert!(feed(&not_reloaded, "mallory", 2, 3).is_empty());
        // And the follower's next checkpoint stores what it counted on from
        // the leader's: the alert's quiet period, which its own old count
        // alone never reached.
        follower.checkpoint().unwrap();
        let quiet = |a: &Alerts| -> Vec<i64> {
            let rules = a.engine().snapshot();
            rules[0].2.groups.values().map(|g| g.quiet_until).collect()
        };
        assert_ne!(quiet(&follower), vec![0]);
        assert_eq!(quiet(&start().unwrap()), quiet(&follower));
    }

    #[test]
    fn a_checkpoint_writes_only_the_shards_that_changed() {
        let store = Arc::new(MemoryStore::new());
        let a = Alerts::start(&config(), Path::new("/nonexistent"), store.clone(), key()).unwrap();
        for i in 0..500u64 {
            feed(&a, &format!("user{i}"), 0, i);
        }
        let all = a.checkpoint().unwrap();
        assert_eq!((all.rules, all.records), (1, 1 + state::SHARDS as usize));
        assert_eq!(a.checkpoint().unwrap(), state::Written::default());
        feed(&a, "user7", 1, 500);
        let one = a.checkpoint().unwrap();
        assert_eq!((one.rules, one.records), (1, 2));
        assert!(one.bytes * 20 < all.bytes, "{one:?} {all:?}");
        // A restart (a kill after that checkpoint) counts on from it.
        let b = Alerts::start(&config(), Path::new("/nonexistent"), store.clone(), key()).unwrap();
        assert_eq!(feed(&b, "user7", 2, 501)[0].events, vec![7, 500, 501]);
        assert!(feed(&b, "user8", 2, 502).is_empty());
        assert_eq!(
            a.engine().snapshot()[0].2.groups.len(),
            b.engine().snapshot()[0].2.groups.len()
        );
    }

    #[test]
    fn a_checkpoint_that_fails_before_the_store_restores_the_previous_one() {
        let store = Arc::new(MemoryStore::new());
        let start = || Alerts::start(&config(), Path::new("/nonexistent"), store.clone(), key());
        let a = start().unwrap();
        feed(&a, "m", 0, 0);
        a.checkpoint().unwrap();
        feed(&a, "m", 1, 1);
        store.inject(WriteFault::BeforePersisting);
        assert!(a.checkpoint().is_err());
        store.inject(WriteFault::None);
        // A crash now restarts from the first checkpoint: one login.
        let crashed = start().unwrap();
        assert!(feed(&crashed, "m", 2, 2).is_empty());
        assert_eq!(feed(&crashed, "m", 3, 3)[0].events, vec![0, 2, 3]);
        // The failed shard is still marked: the retry writes both logins.
        assert_eq!(a.checkpoint().unwrap().records, 2);
        let retried = start().unwrap();
        assert_eq!(feed(&retried, "m", 2, 2)[0].events, vec![0, 1, 2]);
    }

    #[test]
    fn a_checkpoint_that_landed_but_failed_restores_once_counted() {
        let store = Arc::new(MemoryStore::new());
        let start = || Alerts::start(&config(), Path::new("/nonexistent"), store.clone(), key());
        let a = start().unwrap();
        feed(&a, "m", 0, 0);
        feed(&a, "m", 1, 1);
        store.inject(WriteFault::AfterPersisting);
        assert!(a.checkpoint().is_err());
        store.inject(WriteFault::None);
        // What landed is whole: two logins, the third fires with three.
        let crashed = start().unwrap();
        assert_eq!(feed(&crashed, "m", 2, 2)[0].events, vec![0, 1, 2]);
        // The retry writes the same shard again: still counted once.
        assert_eq!(a.checkpoint().unwrap().records, 2);
        let retried = start().unwrap();
        let fired = feed(&retried, "m", 2, 2);
        assert_eq!(
            (fired[0].count, fired[0].events.clone()),
            (3, vec![0, 1, 2])
        );
    }

    #[test]
    fn a_changed_rule_starts_empty_and_its_old_records_go() {
        let store = Arc::new(MemoryStore::new());
        let a = Alerts::start(&config(), Path::new("/nonexistent"), store.clone(), key()).unwrap();
        feed(&a, "m", 0, 0);
        feed(&a, "m", 1, 1);
        a.checkpoint().unwrap();
        let changed = AlertsConfig::parse(&RULES.replace("10m", "20m"), "t")
            .unwrap()
            .unwrap();
        let b = Alerts::start(&changed, Path::new("/nonexistent"), store.clone(), key()).unwrap();
        assert!(stored(store.as_ref()).is_empty());
        assert!(feed(&b, "m", 2, 2).is_empty());
        // A damaged record stops the start, naming its rule.
        feed(&b, "m", 3, 3);
        b.checkpoint().unwrap();
        let (k, mut v) = stored(store.as_ref()).pop().unwrap();
        v[30] ^= 1;
        store.put_record(RecordSpace::AlertState, &k, &v).unwrap();
        let refused = Alerts::start(&changed, Path::new("/nonexistent"), store.clone(), key());
        assert!(refused.err().unwrap().contains("alert rule logins"));
    }

    #[test]
    fn a_state_file_of_an_earlier_version_moves_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let old = Engine::new(config().rules, 1000);
        for (m, i) in [(0, 0), (1, 1)] {
            let ob = old
                .observe("app", &login("m", &format!("2026-01-01T10:{m:02}:00Z")))
                .unwrap();
            old.evaluate(&ob, i);
        }
        let file = serde_json::json!({ "version": 1, "rules": old.snapshot() });
        let sealed = key()
            .seal(STATE_FILE_AAD, &serde_json::to_vec(&file).unwrap())
            .unwrap();
        std::fs::write(dir.path().join(STATE_FILE), sealed).unwrap();
        let store = Arc::new(MemoryStore::new());
        let a = Alerts::start(&config(), dir.path(), store.clone(), key()).unwrap();
        assert!(!dir.path().join(STATE_FILE).exists());
        assert_eq!(stored(store.as_ref()).len(), 2);
        drop(a);
        let b = Alerts::start(&config(), dir.path(), store.clone(), key()).unwrap();
        assert_eq!(feed(&b, "m", 2, 2)[0].events, vec![0, 1, 2]);
    }
}
