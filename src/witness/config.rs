//! Configuration of `veritrail witness` (`--config FILE`, TOML):
//!
//! ```toml
//! # The cosignature key name: a schema-less URL naming this witness.
//! name = "witness.example.com/w1"
//!
//! [[log]]
//! origin = "log.example.com/audit"
//! # The log's verifier keys: Ed25519 (type 0x01) and/or ECDSA P-256 (0x02).
//! vkeys = ["log.example.com/audit+1234abcd+AjBZ…", "log.example.com/audit+5678ef01+AR…"]
//! ```

use std::path::Path;

use serde::Deserialize;

use super::core::WitnessedLog;
use crate::note::{self, SIG_TYPE_ECDSA, SIG_TYPE_ED25519};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessFileConfig {
    /// Cosignature key name.
    pub name: String,
    /// The logs witnessed.
    #[serde(default, rename = "log")]
    pub logs: Vec<LogEntry>,
}

/// One `[[log]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The log's origin.
    pub origin: String,
    /// Its verifier keys.
    pub vkeys: Vec<String>,
}

/// The validated configuration.
pub struct WitnessConfig {
    /// Cosignature key name.
    pub name: String,
    /// The logs witnessed, with parsed verifiers.
    pub logs: Vec<WitnessedLog>,
}

impl WitnessConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<WitnessConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("couldn't read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and validates TOML text: a valid key name, at least one log,
    /// no origin twice, and every log key Ed25519 or ECDSA.
    pub fn parse(text: &str) -> Result<WitnessConfig, String> {
        let file: WitnessFileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if !note::is_valid_key_name(&file.name) {
            return Err(format!(
                "name {:?} is not a valid key name (non-empty, no spaces, no '+')",
                file.name
            ));
        }
        if file.logs.is_empty() {
            return Err("no [[log]] configured: a witness needs at least one log".into());
        }
        let mut logs: Vec<WitnessedLog> = Vec::new();
        for entry in file.logs {
            if entry.origin.is_empty() || entry.origin.contains('\n') {
                return Err(format!("log origin {:?} is invalid", entry.origin));
            }
            if logs.iter().any(|l| l.origin == entry.origin) {
                return Err(format!("log {:?} is configured twice", entry.origin));
            }
            if entry.vkeys.is_empty() {
                return Err(format!("log {:?} has no vkeys", entry.origin));
            }
            let mut verifiers = Vec::new();
            for vkey in &entry.vkeys {
                let kind = key_type(vkey)
                    .ok_or_else(|| format!("log {:?}: malformed vkey {vkey:?}", entry.origin))?;
                if kind != SIG_TYPE_ED25519 && kind != SIG_TYPE_ECDSA {
                    return Err(format!(
                        "log {:?}: vkey {vkey:?} has type 0x{kind:02x}; a log key is Ed25519 (0x01) or ECDSA (0x02)",
                        entry.origin
                    ));
                }
                let v = note::parse_verifier_key(vkey)
                    .map_err(|e| format!("log {:?}: vkey {vkey:?}: {e}", entry.origin))?;
                verifiers.push(v);
            }
            logs.push(WitnessedLog {
                origin: entry.origin,
                verifiers,
            });
        }
        Ok(WitnessConfig {
            name: file.name,
            logs,
        })
    }
}

/// The type byte of a verifier key, without checking the rest.
fn key_type(vkey: &str) -> Option<u8> {
    use base64::Engine as _;
    let b64 = vkey.splitn(3, '+').nth(2)?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()?
        .first()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::keys::LogKeys;

    #[test]
    fn a_config_with_both_key_types_loads() {
        let keys = LogKeys::from_secret_bytes(&[7; 32], &[8; 32]).unwrap();
        let v = keys.verifier_keys("example.com/log").unwrap();
        let text = format!(
            "name = \"w.example/1\"\n[[log]]\norigin = \"example.com/log\"\nvkeys = [\"{}\", \"{}\"]\n",
            v.ecdsa, v.ed25519
        );
        let c = WitnessConfig::parse(&text).unwrap();
        assert_eq!(c.name, "w.example/1");
        assert_eq!(c.logs[0].verifiers.len(), 2);
    }

    #[test]
    fn bad_configs_are_refused() {
        let keys = LogKeys::from_secret_bytes(&[7; 32], &[8; 32]).unwrap();
        let v = keys.verifier_keys("example.com/log").unwrap();
        let log = format!(
            "[[log]]\norigin = \"example.com/log\"\nvkeys = [\"{}\"]\n",
            v.ed25519
        );
        for bad in [
            format!("name = \"bad name\"\n{log}"),
            "name = \"w\"\n".to_string(),
            format!("name = \"w\"\n{log}{log}"),
            "name = \"w\"\n[[log]]\norigin = \"o\"\nvkeys = []\n".to_string(),
            "name = \"w\"\n[[log]]\norigin = \"o\"\nvkeys = [\"garbage\"]\n".to_string(),
            // A cosignature key is not a log key.
            "name = \"w\"\n[[log]]\norigin = \"o\"\nvkeys = [\"remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2\"]\n".to_string(),
            format!("name = \"w\"\nlisten = \"x\"\n{log}"),
        ] {
            assert!(WitnessConfig::parse(&bad).is_err(), "{bad}");
        }
    }
}
