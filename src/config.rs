//! Configuration of `veritrail serve`: flags, then environment variables,
//! then a TOML file, then defaults — the first that sets a value wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::alerts::AlertsConfig;
use crate::api::ApiLimits;
use crate::cosign::{WitnessEndpoint, WitnessPolicy};
use crate::leadership::LeaseTimings;
use crate::listen::TlsFiles;
use crate::sequencer::SequencerConfig;
use crate::store::postgres::BucketConfig;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./veritrail-data";
/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Smallest `search_index_flush_events`: a background build step.
pub const SEARCH_INDEX_FLUSH_EVENTS_MIN: usize = crate::search::rebuild::STEP_EVENTS as usize;
/// Largest `search_index_flush_events`: the index's memory holds up to a
/// few flushes' worth of events' postings.
pub const SEARCH_INDEX_FLUSH_EVENTS_MAX: usize = 131_072;

/// The configuration file (`--config FILE`); every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Listen address, `host:port`.
    pub listen: Option<String>,
    /// Origin of a new log.
    pub origin: Option<String>,
    /// Entries per batch at most.
    pub batch_max_entries: Option<usize>,
    /// Milliseconds a batch waits for more submissions.
    pub batch_max_delay_ms: Option<u64>,
    /// Milliseconds between checkpoints while the tree grows.
    pub checkpoint_interval_ms: Option<u64>,
    /// Queued submissions before pushback.
    pub queue_capacity: Option<usize>,
    /// Queued (or committing) events before pushback.
    pub queue_max_events: Option<usize>,
    /// Queued (or committing) bytes of events before pushback.
    pub queue_max_bytes: Option<usize>,
    /// Largest `POST /v1/events` body, bytes.
    pub max_events_body: Option<usize>,
    /// Events per request at most.
    pub max_batch_events: Option<usize>,
    /// Request timeout in seconds.
    pub request_timeout_s: Option<u64>,
    /// Seconds a streamed answer (export, backup) may wait for its client
    /// to read before it is cut [default: 60].
    pub stream_stall_timeout_s: Option<u64>,
    /// File holding the master key [default: `<data>.master.key`, beside the data directory].
    pub master_key_file: Option<PathBuf>,
    /// Seconds between retention runs.
    pub retention_interval_s: Option<u64>,
    /// MiB of memory the embedded database may cache [default: 64].
    pub store_cache_mb: Option<u64>,
    /// TLS certificate chain (PEM); with `tls_key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Checkpoints this log published (files, or URLs of witnesses, mirrors
    /// or the log itself); the server refuses to start if its tree is older
    /// than or forks from any of them.
    pub known_checkpoints: Option<Vec<String>>,
    /// Witnesses asked to cosign checkpoints (`[[witness]]` tables).
    #[serde(rename = "witness")]
    pub witnesses: Option<Vec<WitnessEntry>>,
    /// Cosignatures that make a checkpoint witnessed [default: every witness].
    pub witness_quorum: Option<usize>,
    /// Timeout of one request to a witness, milliseconds [default: 5000].
    pub witness_timeout_ms: Option<u64>,
    /// CA certificates (PEM) trusted, besides the system's web roots, for
    /// the log's own HTTPS requests: witnesses and known-checkpoint URLs
    /// (e.g. a witness with a private CA or a self-signed certificate).
    pub peer_ca_cert: Option<PathBuf>,
    /// Requests per second each API key may make on average; 0 disables
    /// the limit [default: 2000].
    pub rate_limit_per_second: Option<f64>,
    /// Requests each API key may make in a burst [default: 4000].
    pub rate_limit_burst: Option<f64>,
    /// Memory for the read cache of hash tiles (with their inner subtree
    /// hashes) and entry bundles, bytes; 0 caches nothing [default: 67108864].
    pub read_cache_bytes: Option<usize>,
    /// Memory for the proof tier of the read cache: the upper subtree
    /// hashes of full level-0 tiles, about 1 KiB per 256 events, bytes;
    /// 0 keeps none [default: 67108864].
    pub proof_cache_bytes: Option<usize>,
    /// Events the search index keeps in memory before writing them out; a
    /// start that finds the index further behind the tree than this builds
    /// it in the background [default: 32768].
    pub search_index_flush_events: Option<usize>,
    /// Milliseconds each background job (the erasure cleanup, the search
    /// index's build) sleeps after each step, 0 to 10000, so that the
    /// sequencer's commits are not kept waiting behind it [default: 20].
    pub background_step_pause_ms: Option<u64>,
    /// The `[alerts]` table, as written; [`FileConfig::load`] parses it
    /// into `alert_rules` (see docs/alerts.md).
    pub alerts: Option<serde::de::IgnoredAny>,
    /// The alert rules and their delivery, from the file only.
    #[serde(skip)]
    pub alert_rules: Option<Arc<AlertsConfig>>,
    /// PostgreSQL URL of the remote backend (`postgres://user@host/db`);
    /// the password from `PGPASSWORD` or this file [default: the embedded
    /// sled database in the data directory].
    pub store: Option<String>,
    /// The bucket of the remote backend, `s3://bucket/prefix`.
    pub objects: Option<String>,
    /// The S3 endpoint URL [default: AWS's, from the region].
    pub objects_endpoint: Option<String>,
    /// The bucket's region [default: us-east-1].
    pub objects_region: Option<String>,
    /// The bucket's access key id (file only) [default: `AWS_ACCESS_KEY_ID`].
    pub objects_access_key_id: Option<String>,
    /// The bucket's secret key (file only) [default: `AWS_SECRET_ACCESS_KEY`].
    pub objects_secret_access_key: Option<String>,
    /// With the remote backend: the base URL other frontends forward
    /// writes to while this one sequences [default: the listen address,
    /// 127.0.0.1 for an unspecified one].
    pub advertise: Option<String>,
    /// With the remote backend: the sequencer lease's time to live,
    /// milliseconds [default: 3000]; a dead leader is replaced after about
    /// this long.
    pub lease_ttl_ms: Option<u64>,
    /// How often the leader renews its lease, milliseconds, under half of
    /// `lease_ttl_ms` [default: 1000].
    pub lease_renew_ms: Option<u64>,
}

/// One `[[witness]]` table: where a witness listens and its cosignature key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// Base URL (`<url>/add-checkpoint`).
    pub url: String,
    /// Cosignature verifier key (type 0x04).
    pub vkey: String,
}

impl FileConfig {
    /// Reads and parses a TOML file; unknown keys are errors.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("couldn't read {}: {e}", path.display()))?;
        let mut config: FileConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.alert_rules = AlertsConfig::parse(&text, &path.display().to_string())?.map(Arc::new);
        Ok(config)
    }

    /// Every field set here, else the one set in `lower`.
    pub fn or(self, lower: FileConfig) -> FileConfig {
        FileConfig {
            data: self.data.or(lower.data),
            listen: self.listen.or(lower.listen),
            origin: self.origin.or(lower.origin),
            batch_max_entries: self.batch_max_entries.or(lower.batch_max_entries),
            batch_max_delay_ms: self.batch_max_delay_ms.or(lower.batch_max_delay_ms),
            checkpoint_interval_ms: self.checkpoint_interval_ms.or(lower.checkpoint_interval_ms),
            queue_capacity: self.queue_capacity.or(lower.queue_capacity),
            queue_max_events: self.queue_max_events.or(lower.queue_max_events),
            queue_max_bytes: self.queue_max_bytes.or(lower.queue_max_bytes),
            max_events_body: self.max_events_body.or(lower.max_events_body),
            max_batch_events: self.max_batch_events.or(lower.max_batch_events),
            request_timeout_s: self.request_timeout_s.or(lower.request_timeout_s),
            stream_stall_timeout_s: self.stream_stall_timeout_s.or(lower.stream_stall_timeout_s),
            witnesses: self.witnesses.or(lower.witnesses),
            witness_quorum: self.witness_quorum.or(lower.witness_quorum),
            witness_timeout_ms: self.witness_timeout_ms.or(lower.witness_timeout_ms),
            peer_ca_cert: self.peer_ca_cert.or(lower.peer_ca_cert),
            rate_limit_per_second: self.rate_limit_per_second.or(lower.rate_limit_per_second),
            rate_limit_burst: self.rate_limit_burst.or(lower.rate_limit_burst),
            read_cache_bytes: self.read_cache_bytes.or(lower.read_cache_bytes),
            proof_cache_bytes: self.proof_cache_bytes.or(lower.proof_cache_bytes),
            search_index_flush_events: self
                .search_index_flush_events
                .or(lower.search_index_flush_events),
            background_step_pause_ms: self
                .background_step_pause_ms
                .or(lower.background_step_pause_ms),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            known_checkpoints: self.known_checkpoints.or(lower.known_checkpoints),
            master_key_file: self.master_key_file.or(lower.master_key_file),
            retention_interval_s: self.retention_interval_s.or(lower.retention_interval_s),
            store_cache_mb: self.store_cache_mb.or(lower.store_cache_mb),
            alerts: self.alerts.or(lower.alerts),
            alert_rules: self.alert_rules.or(lower.alert_rules),
            store: self.store.or(lower.store),
            objects: self.objects.or(lower.objects),
            objects_endpoint: self.objects_endpoint.or(lower.objects_endpoint),
            objects_region: self.objects_region.or(lower.objects_region),
            objects_access_key_id: self.objects_access_key_id.or(lower.objects_access_key_id),
            objects_secret_access_key: self
                .objects_secret_access_key
                .or(lower.objects_secret_access_key),
            advertise: self.advertise.or(lower.advertise),
            lease_ttl_ms: self.lease_ttl_ms.or(lower.lease_ttl_ms),
            lease_renew_ms: self.lease_renew_ms.or(lower.lease_renew_ms),
        }
    }
}

/// The resolved configuration of the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory.
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Origin for a new log (an existing log keeps its own; a different one is an error).
    pub origin: Option<String>,
    /// Sequencer tunables.
    pub sequencer: SequencerConfig,
    /// Request limits.
    pub limits: ApiLimits,
    /// Witnesses and quorum, when checkpoints are to be witnessed.
    pub witnessing: Option<WitnessPolicy>,
    /// Certificate and key when serving HTTPS.
    pub tls: Option<TlsFiles>,
    /// Where to read checkpoints this log published, checked at startup.
    pub known_checkpoints: Vec<String>,
    /// Extra CA certificates (PEM bundle) for the log's outgoing HTTPS.
    pub peer_ca_pem: Option<Vec<u8>>,
    /// Master key file, when given (else the environment or the default file).
    pub master_key_file: Option<PathBuf>,
    /// How often the retention task runs.
    pub retention_interval: Duration,
    /// Bytes of memory the embedded database may cache.
    pub store_cache_bytes: u64,
    /// Byte budget of the read cache (tiles, bundles, proofs' subtree hashes).
    pub read_cache_bytes: usize,
    /// Byte budget of the read cache's proof tier (upper subtree hashes of
    /// full level-0 tiles).
    pub proof_cache_bytes: usize,
    /// Events the search index holds in memory before a flush, and the gap
    /// beyond which a start builds it in the background.
    pub search_index_flush_events: usize,
    /// How the background jobs are paced.
    pub background: crate::vault::background::Pace,
    /// Alert rules and their delivery, when the file has an `[alerts]` table.
    pub alerts: Option<Arc<AlertsConfig>>,
    /// Where the log's data lives.
    pub backend: StoreBackend,
    /// The base URL other frontends forward to while this one sequences
    /// (remote backend; `None`: derived from the bound listen address).
    pub advertise: Option<String>,
    /// The sequencer lease's timings (with the remote backend).
    pub lease: LeaseTimings,
}

/// Where the log's data lives.
#[derive(Clone, Default)]
pub enum StoreBackend {
    /// The embedded sled database in the data directory.
    #[default]
    Sled,
    /// PostgreSQL and an S3-compatible bucket (`store::postgres`).
    Remote {
        /// The PostgreSQL URL (may hold a password: never printed).
        postgres: String,
        /// The bucket.
        bucket: BucketConfig,
    },
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreBackend::Sled => f.write_str("Sled"),
            StoreBackend::Remote { bucket, .. } => f
                .debug_struct("Remote")
                .field("bucket", bucket)
                .finish_non_exhaustive(),
        }
    }
}

/// The remote backend, when `store` is set (then `objects` must be too).
fn resolve_backend(o: &FileConfig) -> Result<StoreBackend, String> {
    let (postgres, objects) = match (&o.store, &o.objects) {
        (None, None) => return Ok(StoreBackend::Sled),
        (Some(p), Some(b)) => (p, b),
        (Some(_), None) => return Err("store needs objects (s3://bucket/prefix) too".into()),
        (None, Some(_)) => return Err("objects needs store (postgres://...) too".into()),
    };
    if !(postgres.starts_with("postgres://") || postgres.starts_with("postgresql://")) {
        return Err("store must be a postgres:// URL".into());
    }
    let mut bucket = BucketConfig::from_url(objects)?;
    bucket.endpoint = o.objects_endpoint.clone();
    bucket.region = o.objects_region.clone();
    bucket.credentials = match (&o.objects_access_key_id, &o.objects_secret_access_key) {
        (Some(k), Some(s)) => Some((k.clone(), s.clone())),
        (None, None) => None,
        _ => {
            return Err("objects_access_key_id and objects_secret_access_key go together".into());
        }
    };
    Ok(StoreBackend::Remote {
        postgres: postgres.clone(),
        bucket,
    })
}

impl ServeConfig {
    /// Merges flags/env (given as a `FileConfig`) over the file over the
    /// defaults, and validates once.
    pub fn resolve(flags: FileConfig, file: FileConfig) -> Result<ServeConfig, String> {
        let o = flags.or(file);
        let backend = resolve_backend(&o)?;
        let data = o
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = o
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            format!("listen address {listen_text:?} is not host:port (e.g. 127.0.0.1:8080)")
        })?;
        let mut sequencer = SequencerConfig::default();
        if let Some(n) = o.batch_max_entries {
            if n == 0 || n > 1_000_000 {
                return Err("batch_max_entries must be between 1 and 1000000".into());
            }
            sequencer.max_batch_entries = n;
        }
        if let Some(ms) = o.batch_max_delay_ms {
            if ms > 10_000 {
                return Err("batch_max_delay_ms must be at most 10000".into());
            }
            sequencer.max_batch_delay = Duration::from_millis(ms);
        }
        if let Some(ms) = o.checkpoint_interval_ms {
            if !(10..=3_600_000).contains(&ms) {
                return Err("checkpoint_interval_ms must be between 10 and 3600000".into());
            }
            sequencer.checkpoint_interval = Duration::from_millis(ms);
        }
        if let Some(n) = o.queue_capacity {
            if n == 0 || n > 1_000_000 {
                return Err("queue_capacity must be between 1 and 1000000".into());
            }
            sequencer.queue_capacity = n;
        }
        if let Some(n) = o.queue_max_events {
            if n == 0 || n > 100_000_000 {
                return Err("queue_max_events must be between 1 and 100000000".into());
            }
            sequencer.queue_budget.max_events = n;
        }
        if let Some(n) = o.queue_max_bytes {
            if !(1024..=(64usize << 30)).contains(&n) {
                return Err("queue_max_bytes must be between 1024 and 68719476736".into());
            }
            sequencer.queue_budget.max_bytes = n;
        }
        let mut limits = ApiLimits::default();
        if let Some(n) = o.max_events_body {
            limits.max_events_body = n;
        }
        if let Some(n) = o.max_batch_events {
            limits.events.max_batch_events = n;
        }
        if let Some(s) = o.request_timeout_s {
            limits.request_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(s) = o.stream_stall_timeout_s {
            limits.stream_stall_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(r) = o.rate_limit_per_second {
            if !(0.0..=1e9).contains(&r) {
                return Err("rate_limit_per_second must be between 0 (off) and 1e9".into());
            }
            limits.rate_limit.per_second = r;
        }
        if let Some(b) = o.rate_limit_burst {
            if !(1.0..=1e9).contains(&b) {
                return Err("rate_limit_burst must be between 1 and 1e9".into());
            }
            limits.rate_limit.burst = b;
        }
        let peer_ca_pem = match &o.peer_ca_cert {
            Some(path) => Some(read_ca_bundle(path)?),
            None => None,
        };
        let mut witnessing = resolve_witnessing(&o)?;
        if let Some(policy) = &mut witnessing {
            policy.ca_pem = peer_ca_pem.clone();
        }
        let tls = TlsFiles::from_flags(o.tls_cert, o.tls_key)?;
        let retention_interval = match o.retention_interval_s {
            Some(s) if !(1..=86_400 * 7).contains(&s) => {
                return Err("retention_interval_s must be between 1 and 604800".into());
            }
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(3600),
        };
        let store_cache_bytes = match o.store_cache_mb {
            Some(mb) if !(16..=65_536).contains(&mb) => {
                return Err("store_cache_mb must be between 16 and 65536".into());
            }
            Some(mb) => mb << 20,
            None => crate::store::sled::DEFAULT_CACHE_BYTES,
        };
        let read_cache_bytes = match o.read_cache_bytes {
            Some(n) if n > (64usize << 30) => {
                return Err("read_cache_bytes must be at most 68719476736".into());
            }
            Some(n) => n,
            None => crate::sequencer::DEFAULT_READ_CACHE_BYTES,
        };
        let proof_cache_bytes = match o.proof_cache_bytes {
            Some(n) if n > (64usize << 30) => {
                return Err("proof_cache_bytes must be at most 68719476736".into());
            }
            Some(n) => n,
            None => crate::sequencer::DEFAULT_PROOF_CACHE_BYTES,
        };
        let search_index_flush_events = match o.search_index_flush_events {
            Some(n)
                if !(SEARCH_INDEX_FLUSH_EVENTS_MIN..=SEARCH_INDEX_FLUSH_EVENTS_MAX)
                    .contains(&n) =>
            {
                return Err(format!(
                    "search_index_flush_events must be between {SEARCH_INDEX_FLUSH_EVENTS_MIN} and {SEARCH_INDEX_FLUSH_EVENTS_MAX}"
                ));
            }
            Some(n) => n,
            None => crate::vault::DEFAULT_INDEX_FLUSH_EVENTS,
        };
        let background = match o.background_step_pause_ms.map(Duration::from_millis) {
            Some(d) if d > crate::vault::background::MAX_PAUSE => {
                return Err(format!(
                    "background_step_pause_ms must be at most {}",
                    crate::vault::background::MAX_PAUSE.as_millis()
                ));
            }
            Some(between_steps) => crate::vault::background::Pace { between_steps },
            None => crate::vault::background::Pace::default(),
        };
        Ok(ServeConfig {
            data,
            listen,
            origin: o.origin,
            sequencer,
            limits,
            witnessing,
            tls,
            known_checkpoints: o.known_checkpoints.unwrap_or_default(),
            peer_ca_pem,
            master_key_file: o.master_key_file,
            retention_interval,
            store_cache_bytes,
            read_cache_bytes,
            proof_cache_bytes,
            search_index_flush_events,
            background,
            backend,
            alerts: o.alert_rules,
            lease: LeaseTimings::configured(o.lease_ttl_ms, o.lease_renew_ms)?,
            advertise: match o.advertise {
                Some(a) if !(a.starts_with("http://") || a.starts_with("https://")) => {
                    return Err(format!(
                        "advertise must be an http:// or https:// base URL, not {a:?}"
                    ));
                }
                other => other,
            },
        })
    }
}

/// Reads a PEM bundle of CA certificates, refusing one that holds none.
fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("couldn't read the peer CA file {}: {e}", path.display()))?;
    if !reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) {
        return Err(format!(
            "the peer CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(pem)
}

/// The witness policy: witnesses from the flags or the file, a quorum
/// between 1 and their number (default: all), a request timeout.
fn resolve_witnessing(o: &FileConfig) -> Result<Option<WitnessPolicy>, String> {
    let entries = o.witnesses.clone().unwrap_or_default();
    if entries.is_empty() {
        if o.witness_quorum.is_some_and(|q| q > 0) {
            return Err("witness_quorum is set but no witness is configured".into());
        }
        return Ok(None);
    }
    let mut witnesses: Vec<WitnessEndpoint> = Vec::new();
    for e in &entries {
        let w = WitnessEndpoint::new(&e.url, &e.vkey)?;
        if witnesses
            .iter()
            .any(|x| x.verifier.verifier_key() == w.verifier.verifier_key())
        {
            return Err(format!("witness key {} is configured twice", e.vkey));
        }
        witnesses.push(w);
    }
    let quorum = o.witness_quorum.unwrap_or(witnesses.len());
    if quorum == 0 || quorum > witnesses.len() {
        return Err(format!(
            "witness_quorum must be between 1 and the number of witnesses ({})",
            witnesses.len()
        ));
    }
    let timeout_ms = o.witness_timeout_ms.unwrap_or(5000);
    if !(100..=600_000).contains(&timeout_ms) {
        return Err("witness_timeout_ms must be between 100 and 600000".into());
    }
    Ok(Some(WitnessPolicy {
        witnesses,
        quorum,
        timeout: Duration::from_millis(timeout_ms),
        ca_pem: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:9000\"\ncheckpoint_interval_ms = 500\norigin = \"file.example/log\"").unwrap();
        let o = FileConfig {
            origin: Some("flag.example/log".into()),
            ..FileConfig::default()
        };
        let c = ServeConfig::resolve(o, file).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.sequencer.checkpoint_interval, Duration::from_millis(500));
        assert_eq!(c.origin.as_deref(), Some("flag.example/log"));
        assert_eq!(c.data, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn tls_files_and_known_checkpoints_come_from_the_file() {
        let file: FileConfig = toml::from_str(
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nknown_checkpoints = [\"https://w.example\", \"cp.txt\"]",
        )
        .unwrap();
        let c = ServeConfig::resolve(FileConfig::default(), file).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: PathBuf::from("c.pem"),
                key: PathBuf::from("k.pem")
            })
        );
        assert_eq!(c.known_checkpoints, vec!["https://w.example", "cp.txt"]);
        let half: FileConfig = toml::from_str("tls_cert = \"c.pem\"").unwrap();
        assert!(ServeConfig::resolve(FileConfig::default(), half).is_err());
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        let bad = FileConfig {
            listen: Some("localhost".into()),
            ..FileConfig::default()
        };
        assert!(ServeConfig::resolve(bad, FileConfig::default()).is_err());
        let bad = FileConfig {
            checkpoint_interval_ms: Some(0),
            ..FileConfig::default()
        };
        assert!(ServeConfig::resolve(bad, FileConfig::default()).is_err());
    }

    #[test]
    fn the_search_index_flush_is_bounded() {
        let with = |n: usize| FileConfig {
            search_index_flush_events: Some(n),
            ..FileConfig::default()
        };
        let resolve = |o| ServeConfig::resolve(o, FileConfig::default());
        assert_eq!(
            resolve(FileConfig::default())
                .unwrap()
                .search_index_flush_events,
            crate::vault::DEFAULT_INDEX_FLUSH_EVENTS
        );
        for ok in [
            SEARCH_INDEX_FLUSH_EVENTS_MIN,
            1024,
            SEARCH_INDEX_FLUSH_EVENTS_MAX,
        ] {
            assert_eq!(resolve(with(ok)).unwrap().search_index_flush_events, ok);
        }
        for bad in [
            0,
            SEARCH_INDEX_FLUSH_EVENTS_MIN - 1,
            SEARCH_INDEX_FLUSH_EVENTS_MAX + 1,
        ] {
            let e = resolve(with(bad)).unwrap_err();
            assert!(
                e.contains("search_index_flush_events must be between"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_background_pause_is_bounded() {
        let with = |ms: u64| FileConfig {
            background_step_pause_ms: Some(ms),
            ..FileConfig::default()
        };
        let resolve = |o| ServeConfig::resolve(o, FileConfig::default());
        assert_eq!(
            resolve(FileConfig::default()).unwrap().background,
            crate::vault::background::Pace::default()
        );
        for ok in [0, 20, 10_000] {
            let pace = resolve(with(ok)).unwrap().background;
            assert_eq!(pace.between_steps, Duration::from_millis(ok));
        }
        let e = resolve(with(10_001)).unwrap_err();
        assert!(
            e.contains("background_step_pause_ms must be at most 10000"),
            "{e}"
        );
    }

    #[test]
    fn witnesses_and_quorum_resolve() {
        let signer = |seed: u8| {
            crate::note::CosignatureSigner::new(
                &format!("w{seed}.example"),
                ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
                || 1u64,
            )
            .unwrap()
        };
        let (a, b) = (
            crate::note::NoteSigner::verifier_key(&signer(1)),
            crate::note::NoteSigner::verifier_key(&signer(2)),
        );
        let file: FileConfig = toml::from_str(&format!(
            "witness_quorum = 1\n[[witness]]\nurl = \"http://127.0.0.1:1\"\nvkey = \"{a}\"\n[[witness]]\nurl = \"http://127.0.0.1:2\"\nvkey = \"{b}\"\n"
        ))
        .unwrap();
        let c = ServeConfig::resolve(FileConfig::default(), file.clone()).unwrap();
        let w = c.witnessing.unwrap();
        assert_eq!((w.witnesses.len(), w.quorum), (2, 1));
        // Default quorum: every witness.
        let all = FileConfig {
            witness_quorum: None,
            ..file.clone()
        };
        let c = ServeConfig::resolve(FileConfig::default(), all).unwrap();
        assert_eq!(c.witnessing.unwrap().quorum, 2);
        for bad in [
            FileConfig {
                witness_quorum: Some(3),
                ..file.clone()
            },
            FileConfig {
                witness_quorum: Some(0),
                ..file.clone()
            },
            FileConfig {
                witness_timeout_ms: Some(1),
                ..file.clone()
            },
            FileConfig {
                witness_quorum: Some(1),
                ..FileConfig::default()
            },
        ] {
            assert!(ServeConfig::resolve(FileConfig::default(), bad).is_err());
        }
        let twice: FileConfig = toml::from_str(&format!(
            "[[witness]]\nurl = \"http://127.0.0.1:1\"\nvkey = \"{a}\"\n[[witness]]\nurl = \"http://127.0.0.1:2\"\nvkey = \"{a}\"\n"
        ))
        .unwrap();
        assert!(ServeConfig::resolve(FileConfig::default(), twice).is_err());
        assert!(
            ServeConfig::resolve(FileConfig::default(), FileConfig::default())
                .unwrap()
                .witnessing
                .is_none()
        );
    }
}
