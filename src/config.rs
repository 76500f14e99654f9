//! Configuration of `veritrail serve`: flags, then environment variables,
//! then a TOML file, then defaults — the first that sets a value wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiLimits;
use crate::sequencer::SequencerConfig;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./veritrail-data";
/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

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
    /// Largest `POST /v1/events` body, bytes.
    pub max_events_body: Option<usize>,
    /// Events per request at most.
    pub max_batch_events: Option<usize>,
    /// Request timeout in seconds.
    pub request_timeout_s: Option<u64>,
    /// File holding the master key [default: `<data>.master.key`, beside the data directory].
    pub master_key_file: Option<PathBuf>,
    /// Seconds between retention runs.
    pub retention_interval_s: Option<u64>,
}

impl FileConfig {
    /// Reads and parses a TOML file; unknown keys are errors.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("couldn't read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
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
            max_events_body: self.max_events_body.or(lower.max_events_body),
            max_batch_events: self.max_batch_events.or(lower.max_batch_events),
            request_timeout_s: self.request_timeout_s.or(lower.request_timeout_s),
            master_key_file: self.master_key_file.or(lower.master_key_file),
            retention_interval_s: self.retention_interval_s.or(lower.retention_interval_s),
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
    /// Master key file, when given (else the environment or the default file).
    pub master_key_file: Option<PathBuf>,
    /// How often the retention task runs.
    pub retention_interval: Duration,
}

impl ServeConfig {
    /// Merges flags/env (given as a `FileConfig`) over the file over the
    /// defaults, and validates once.
    pub fn resolve(flags: FileConfig, file: FileConfig) -> Result<ServeConfig, String> {
        let o = flags.or(file);
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
        let retention_interval = match o.retention_interval_s {
            Some(s) if !(1..=86_400 * 7).contains(&s) => {
                return Err("retention_interval_s must be between 1 and 604800".into());
            }
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(3600),
        };
        Ok(ServeConfig {
            data,
            listen,
            origin: o.origin,
            sequencer,
            limits,
            master_key_file: o.master_key_file,
            retention_interval,
        })
    }
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
}
