//! The public side of an event: the salted commitment and the leaf record
//! that enters the Merkle tree.
//!
//! A leaf carries no personal data: only the writer's app id, the time the
//! log received the event and the commitment. Invariant: the only leaf bytes
//! [`LeafRecord::parse`] accepts are the exact bytes [`LeafRecord::to_bytes`]
//! produces, so every leaf has one encoding and one leaf hash.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::timestamp::{check_unix_ms, format_rfc3339_ms, parse_rfc3339_ms};
use super::{EventError, jcs};
use crate::merkle::Hash;

/// Domain separator of event commitments, followed by a 0x00 byte.
pub const COMMITMENT_DOMAIN: &[u8] = b"veritrail/event/v1";

/// The `v` member of every leaf this version writes and reads.
pub const LEAF_VERSION: u64 = 1;

/// Longest app id.
pub const MAX_APP_ID_BYTES: usize = 64;

/// Longest leaf accepted by [`LeafRecord::parse`]. A valid leaf is at most
/// 198 bytes (46 of structure, a 64-byte app id, 24 of time, 64 of hex).
pub const MAX_LEAF_BYTES: usize = 256;

const LEAF_FIELDS: &[&str] = &["app", "commitment", "received", "v"];

/// `SHA-256("veritrail/event/v1" || 0x00 || salt || canonical_event)`.
///
/// The salt (32 random bytes, kept private with the event) stops anyone from
/// confirming a guessed event against a public leaf; destroying event and salt
/// leaves the commitment unopenable while the tree stays valid.
pub fn commitment(salt: &[u8; 32], canonical_event: &[u8]) -> Hash {
    let digest = Sha256::new()
        .chain_update(COMMITMENT_DOMAIN)
        .chain_update([0u8])
        .chain_update(salt)
        .chain_update(canonical_event)
        .finalize();
    Hash::from_bytes(digest.into())
}

/// Checks an app id: 1 to 64 bytes of `[a-z0-9._-]`, starting with `[a-z0-9]`
/// (`[a-z0-9][a-z0-9._-]{0,63}`). App ids name writers in public leaves, so
/// they are plain ASCII with a single spelling.
pub fn validate_app_id(app: &str) -> Result<(), EventError> {
    let b = app.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|&c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = b
        .iter()
        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if first_ok && rest_ok && b.len() <= MAX_APP_ID_BYTES {
        Ok(())
    } else {
        Err(EventError::new(
            "app",
            "must be 1 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        ))
    }
}

/// The public record of one event: leaf `i` of the tree is
/// `LeafRecord::to_bytes()`, and its leaf hash is `SHA-256(0x00 || bytes)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRecord {
    /// The writer's app id (from its API key), see [`validate_app_id`].
    pub app: String,
    /// When the log received the event, Unix milliseconds.
    pub received_ms: i64,
    /// [`commitment`] to the salted canonical event.
    pub commitment: Hash,
}

/// Wire shape of a leaf; RFC 8785 orders the members as
/// `app, commitment, received, v`.
#[derive(Serialize)]
struct LeafJson<'a> {
    v: u64,
    app: &'a str,
    received: String,
    commitment: String,
}

impl LeafRecord {
    /// A leaf record, checking the app id and that `received_ms` lies in
    /// 1970..=9999 (the range RFC 3339 text can carry).
    pub fn new(
        app: impl Into<String>,
        received_ms: i64,
        commitment: Hash,
    ) -> Result<LeafRecord, EventError> {
        let app = app.into();
        validate_app_id(&app)?;
        check_unix_ms(received_ms).map_err(|e| EventError::new("received", e.to_string()))?;
        Ok(LeafRecord {
            app,
            received_ms,
            commitment,
        })
    }

    /// The leaf bytes: RFC 8785 JSON
    /// `{"app":"..","commitment":"<64 hex>","received":"<RFC 3339 UTC ms>","v":1}`.
    ///
    /// For a record from [`LeafRecord::new`] or [`LeafRecord::parse`],
    /// `parse(to_bytes())` gives the record back. (A `received_ms` outside
    /// 1970..=9999 set directly on the public field is clamped into range.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let received = format_rfc3339_ms(self.received_ms);
        if validate_app_id(&self.app).is_err() {
            return self.to_bytes_via_jcs(received);
        }
        // Every member is now ASCII that RFC 8785 writes as is (no escapes),
        // and the sequencer writes one leaf per event: write the canonical
        // form directly, members in RFC 8785 order.
        let mut out = Vec::with_capacity(46 + self.app.len() + 64 + received.len());
        out.extend_from_slice(br#"{"app":""#);
        out.extend_from_slice(self.app.as_bytes());
        out.extend_from_slice(br#"","commitment":""#);
        let mut hex_digits = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(self.commitment.as_bytes(), &mut hex_digits);
        out.extend_from_slice(&hex_digits);
        out.extend_from_slice(br#"","received":""#);
        out.extend_from_slice(received.as_bytes());
        out.extend_from_slice(br#"","v":"#);
        out.extend_from_slice(LEAF_VERSION.to_string().as_bytes());
        out.push(b'}');
        out
    }

    /// The general RFC 8785 serialisation, for app ids outside the alphabet
    /// (only possible by setting the public field directly).
    fn to_bytes_via_jcs(&self, received: String) -> Vec<u8> {
        jcs(&LeafJson {
            v: LEAF_VERSION,
            app: &self.app,
            received,
            commitment: self.commitment.to_hex(),
        })
    }

    /// The `received` member as text.
    pub fn received(&self) -> String {
        format_rfc3339_ms(self.received_ms)
    }

    /// Strict parse of leaf bytes: exactly the four members, `v` = 1, a valid
    /// app id, a canonical timestamp, 64 lowercase hex digits, and the bytes
    /// must be the canonical encoding (no whitespace, sorted keys, no escapes
    /// that RFC 8785 would not write).
    pub fn parse(b: &[u8]) -> Result<LeafRecord, EventError> {
        if b.len() > MAX_LEAF_BYTES {
            return Err(EventError::new(
                "leaf",
                format!("longer than {MAX_LEAF_BYTES} bytes"),
            ));
        }
        let value: Value = serde_json::from_slice(b)
            .map_err(|_| EventError::new("leaf", "not a JSON document"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| EventError::new("leaf", "expected an object"))?;
        if let Some(k) = obj.keys().find(|k| !LEAF_FIELDS.contains(&k.as_str())) {
            let shown = if k.len() <= 32 && k.bytes().all(|c| c.is_ascii_alphanumeric()) {
                format!("leaf.{k}")
            } else {
                "leaf".to_owned()
            };
            return Err(EventError::new(
                shown,
                "unknown field (allowed: app, commitment, received, v)",
            ));
        }
        let member = |name: &str| {
            obj.get(name)
                .ok_or_else(|| EventError::new(format!("leaf.{name}"), "is required"))
        };
        let text = |name: &str| {
            member(name)?
                .as_str()
                .ok_or_else(|| EventError::new(format!("leaf.{name}"), "expected a string"))
        };

        if member("v")?.as_u64() != Some(LEAF_VERSION) {
            return Err(EventError::new(
                "leaf.v",
                "unsupported leaf version (expected 1)",
            ));
        }
        let app = text("app")?;
        validate_app_id(app).map_err(|e| EventError::new("leaf.app", e.message))?;
        let received_ms = parse_rfc3339_ms(text("received")?)
            .map_err(|e| EventError::new("leaf.received", e.to_string()))?;
        let commitment = parse_lower_hex_hash(text("commitment")?).ok_or_else(|| {
            EventError::new("leaf.commitment", "expected 64 lowercase hex digits")
        })?;

        let record = LeafRecord {
            app: app.to_owned(),
            received_ms,
            commitment,
        };
        if record.to_bytes() != b {
            return Err(EventError::new(
                "leaf",
                "not in canonical form (RFC 8785 JSON, UTC millisecond time)",
            ));
        }
        Ok(record)
    }
}

fn parse_lower_hex_hash(s: &str) -> Option<Hash> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(Hash::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_encoding_is_the_rfc_8785_encoding() {
        let apps = ["a", "billing", "app.prod-1_x", &"z".repeat(64)];
        let times = [
            0,
            1,
            999,
            1_795_000_000_123,
            -5,
            i64::MAX,
            crate::event::MAX_UNIX_MS,
        ];
        for (i, app) in apps.iter().enumerate() {
            for (j, ms) in times.iter().enumerate() {
                let record = LeafRecord {
                    app: app.to_string(),
                    received_ms: *ms,
                    commitment: Hash::from_bytes([(i * 7 + j) as u8; 32]),
                };
                let direct = record.to_bytes();
                let general = record.to_bytes_via_jcs(format_rfc3339_ms(*ms));
                assert_eq!(
                    String::from_utf8(direct).unwrap(),
                    String::from_utf8(general).unwrap()
                );
            }
        }
        // App ids outside the alphabet take the general path and are escaped.
        let odd = LeafRecord {
            app: "Quote\"Me".into(),
            received_ms: 0,
            commitment: Hash::from_bytes([0; 32]),
        };
        assert!(
            String::from_utf8(odd.to_bytes())
                .unwrap()
                .contains(r#""app":"Quote\"Me""#)
        );
    }
}
