//! C2SP signed notes, checkpoints and witness cosignatures, and the log's keys.
//!
//! Owns the byte formats of c2sp.org/signed-note (`signed`), c2sp.org/tlog-checkpoint
//! (`checkpoint`) and c2sp.org/tlog-cosignature (`cosignature`), the three signature
//! types Veritrail speaks (Ed25519 0x01, ECDSA P-256 0x02, Ed25519 cosignature 0x04) and
//! verifier-key strings. Everything here except `keys` is pure: bytes in, values out, no
//! I/O, no clock. `keys` is the one place that reads and writes key files.
//!
//! Invariants: a [`Note`] always holds valid signed-note text, and at most one signature
//! per (key name, key ID); a parsed note formats back to exactly its input bytes. A
//! verifier answers only for the (key name, key ID) it was built from, and a verifier
//! key is accepted only if its stated key ID is the one the spec derives from the key.

mod checkpoint;
mod cosignature;
mod ecdsa;
mod ed25519;
pub mod keys;
pub mod policy;
mod signed;

pub use checkpoint::Checkpoint;
pub use cosignature::{Clock, CosignatureSigner, CosignatureVerifier, cosignature_message};
pub use ecdsa::{EcdsaSigner, EcdsaVerifier};
pub use ed25519::{Ed25519Signer, Ed25519Verifier};
pub use policy::{Accepted, CheckpointPolicy, Known, PolicyError, Rejection};
pub use signed::{MAX_NOTE_SIZE, MAX_SIGNATURES, Note, NoteSignature};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Signature type bytes (c2sp.org/signed-note, "Signature types").
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// ECDSA as implemented by transparency-dev/witness; Veritrail uses P-256 only.
pub const SIG_TYPE_ECDSA: u8 = 0x02;
/// Timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature).
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// Everything that can be wrong with a note, a signature line, a key string or a
/// checkpoint. Each message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is {size} bytes, more than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("note is not valid UTF-8")]
    InvalidUtf8,
    #[error(
        "note contains control character U+{code:04X} at byte {offset}; only newline is allowed"
    )]
    ControlCharacter { code: u32, offset: usize },
    #[error("note text must end with a newline")]
    MissingFinalNewline,
    #[error("note has no signature block (a blank line followed by signature lines)")]
    MissingSignatures,
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error("note carries {count} signatures, more than the limit of {max}")]
    TooManySignatures { count: usize, max: usize },
    #[error("signature by {name} {key_id:08x} is empty")]
    EmptySignature { name: String, key_id: u32 },
    #[error("note carries two signatures for key {name} {key_id:08x}")]
    DuplicateSignature { name: String, key_id: u32 },
    #[error("invalid key name {0:?}: a key name is non-empty, without whitespace and without '+'")]
    InvalidKeyName(String),
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    #[error("verifier key says key ID {stated:08x} but the key's ID is {computed:08x}")]
    KeyIdMismatch { stated: u32, computed: u32 },
    #[error(
        "unsupported signature type 0x{0:02x} (known: 0x01 Ed25519, 0x02 ECDSA, 0x04 cosignature)"
    )]
    UnsupportedKeyType(u8),
    #[error("malformed signer key: {0}")]
    MalformedSignerKey(&'static str),
    #[error("signature by known key {name} {key_id:08x} does not verify; the note is rejected")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("no signature by a known key verifies")]
    NoVerifiedSignature,
    #[error("cosignature timestamp {0} is beyond 2^63-1")]
    TimestampOutOfRange(u64),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// Produces signatures of one key for signed notes. The signature returned by `sign`
/// excludes the 4-byte key ID; [`Note::sign`] prepends it.
pub trait NoteSigner: Send + Sync {
    /// Key name, written on the signature line.
    fn name(&self) -> &str;
    /// Key ID, big-endian first 4 bytes of the signature payload.
    fn key_id(&self) -> u32;
    /// Signs the note text (which ends in '\n').
    fn sign(&self, text: &[u8]) -> Result<Vec<u8>, NoteError>;
    /// The verifier key string `name+hex8+base64(type || key)` that checks these signatures.
    fn verifier_key(&self) -> String;
}

/// Checks signatures of one key, identified by (name, key ID).
pub trait NoteVerifier: Send + Sync {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    /// Whether `signature` (without the 4-byte key ID) is valid over `text`.
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool;
}

/// Parses a verifier key `name+hex8+base64(type || key material)` and returns the
/// verifier its type byte names (0x01 Ed25519, 0x02 ECDSA P-256, 0x04 cosignature).
/// The stated key ID must equal the one computed from the key (c2sp.org/signed-note §Verifier keys).
pub fn parse_verifier_key(vkey: &str) -> Result<Box<dyn NoteVerifier>, NoteError> {
    let parts = split_verifier_key(vkey)?;
    let verifier: Box<dyn NoteVerifier> = match parts.key_type {
        SIG_TYPE_ED25519 => Box::new(Ed25519Verifier::from_parts(&parts)?),
        SIG_TYPE_ECDSA => Box::new(EcdsaVerifier::from_parts(&parts)?),
        SIG_TYPE_COSIGNATURE_V1 => Box::new(CosignatureVerifier::from_parts(&parts)?),
        other => return Err(NoteError::UnsupportedKeyType(other)),
    };
    Ok(verifier)
}

/// A verifier key split into its fields; the key ID is not yet checked.
pub(crate) struct VerifierKeyParts<'a> {
    pub name: &'a str,
    pub stated_key_id: u32,
    pub key_type: u8,
    pub key: Vec<u8>,
}

impl VerifierKeyParts<'_> {
    /// The stated key ID must be the computed one: a wrong ID would make a verifier
    /// silently match nothing, or worse, another key's signatures.
    pub(crate) fn check_key_id(&self, computed: u32) -> Result<(), NoteError> {
        if self.stated_key_id != computed {
            return Err(NoteError::KeyIdMismatch {
                stated: self.stated_key_id,
                computed,
            });
        }
        Ok(())
    }
}

pub(crate) fn split_verifier_key(vkey: &str) -> Result<VerifierKeyParts<'_>, NoteError> {
    // The name has no '+', the key ID is hex, only the base64 part may contain '+'.
    let mut fields = vkey.splitn(3, '+');
    let (Some(name), Some(hex8), Some(b64)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(NoteError::MalformedVerifierKey(
            "expected name+keyid+base64key",
        ));
    };
    check_key_name(name)?;
    let stated_key_id = parse_hex8(hex8).ok_or(NoteError::MalformedVerifierKey(
        "key ID must be 8 lowercase hex digits",
    ))?;
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| NoteError::MalformedVerifierKey("key is not padded standard base64"))?;
    let Some((&key_type, key)) = raw.split_first() else {
        return Err(NoteError::MalformedVerifierKey("key is empty"));
    };
    Ok(VerifierKeyParts {
        name,
        stated_key_id,
        key_type,
        key: key.to_vec(),
    })
}

/// Exactly 8 lowercase hex digits (C2SP signed-note: fixed-length lowercase base 16).
fn parse_hex8(s: &str) -> Option<u32> {
    if s.len() != 8
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Formats a verifier key string.
pub(crate) fn format_verifier_key(name: &str, key_id: u32, key_type: u8, key: &[u8]) -> String {
    let mut material = Vec::with_capacity(1 + key.len());
    material.push(key_type);
    material.extend_from_slice(key);
    format!("{name}+{key_id:08x}+{}", STANDARD.encode(material))
}

/// Key name rules of c2sp.org/signed-note: non-empty, no Unicode whitespace, no '+'.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

pub(crate) fn check_key_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName(name.to_owned()))
    }
}

/// The recommended key ID: SHA-256(name || "\n" || type || key)[:4], big-endian
/// (c2sp.org/signed-note §Signatures; mandatory for types 0x01 and 0x04).
pub fn named_key_id(name: &str, key_type: u8, key: &[u8]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', key_type])
        .chain_update(key)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_the_spec() {
        assert!(is_valid_key_name("example.com/log"));
        assert!(is_valid_key_name("ünïcødé"));
        assert!(!is_valid_key_name(""));
        assert!(!is_valid_key_name("Bad Name"));
        assert!(!is_valid_key_name("tab\there"));
        assert!(!is_valid_key_name("nbsp\u{a0}here"));
        assert!(!is_valid_key_name("ideographic\u{3000}space"));
        assert!(!is_valid_key_name("a+b"));
    }

    #[test]
    fn hex8_is_exactly_eight_lowercase_digits() {
        assert_eq!(parse_hex8("c74f20a3"), Some(0xc74f20a3));
        assert_eq!(parse_hex8("00000000"), Some(0));
        assert_eq!(parse_hex8("C74F20A3"), None);
        assert_eq!(parse_hex8("c74f20a"), None);
        assert_eq!(parse_hex8("c74f20a30"), None);
        assert_eq!(parse_hex8("+74f20a3"), None);
        assert_eq!(parse_hex8("-74f20a3"), None);
    }

    #[test]
    fn verifier_key_splitting_rejects_bad_shapes() {
        for bad in [
            "",
            "name",
            "name+c74f20a3",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "name+c74f20a3+",
            "name+c74f20a3+not base64",
            "name+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(split_verifier_key(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_verifier_key("name+00000000+BwAA").err(),
            Some(NoteError::UnsupportedKeyType(7))
        );
    }
}
