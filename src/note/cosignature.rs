//! Timestamped Ed25519 witness cosignatures, type 0x04 (c2sp.org/tlog-cosignature v1,
//! `cosignature/v1`).
//!
//! The signed message is `"cosignature/v1\ntime <secs>\n" || checkpoint text`; the
//! signature-line payload is key ID (4) || timestamp (u64 BE, 8) || Ed25519 signature
//! (64). The key ID is SHA-256(name || "\n" || 0x04 || public key)[:4]. The time comes
//! from an injected [`Clock`] or an explicit argument, never from a global clock.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::ed25519::ed25519_public_key;
use super::{
    Note, NoteError, NoteSigner, NoteVerifier, SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519,
    VerifierKeyParts, check_key_name, format_verifier_key, named_key_id, split_verifier_key,
};

/// Timestamps must fit in an i64 (c2sp.org/tlog-cosignature: MUST NOT exceed 2^63-1).
const MAX_TIMESTAMP: u64 = i64::MAX as u64;
/// timestamp (8) || Ed25519 signature (64)
const COSIGNATURE_LEN: usize = 8 + 64;

/// The time a cosigner puts on its cosignatures, in POSIX seconds.
pub trait Clock: Send + Sync {
    fn unix_seconds(&self) -> u64;
}

impl<F: Fn() -> u64 + Send + Sync> Clock for F {
    fn unix_seconds(&self) -> u64 {
        self()
    }
}

/// The exact bytes a `cosignature/v1` signature covers (c2sp.org/tlog-cosignature §Signed message).
pub fn cosignature_message(timestamp: u64, text: &[u8]) -> Vec<u8> {
    let header = format!("cosignature/v1\ntime {timestamp}\n");
    let mut msg = Vec::with_capacity(header.len() + text.len());
    msg.extend_from_slice(header.as_bytes());
    msg.extend_from_slice(text);
    msg
}

/// Cosigns checkpoints with an Ed25519 key under the cosigner's name.
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
    clock: Box<dyn Clock>,
}

impl CosignatureSigner {
    /// `clock` supplies the timestamp when signing through [`NoteSigner::sign`].
    pub fn new(
        name: &str,
        key: SigningKey,
        clock: impl Clock + 'static,
    ) -> Result<CosignatureSigner, NoteError> {
        check_key_name(name)?;
        Ok(CosignatureSigner {
            name: name.to_owned(),
            key_id: named_key_id(
                name,
                SIG_TYPE_COSIGNATURE_V1,
                key.verifying_key().as_bytes(),
            ),
            key,
            clock: Box::new(clock),
        })
    }

    /// Cosignature of `text` at `timestamp`: timestamp (u64 BE) || Ed25519 signature, i.e.
    /// the signature-line payload without the key ID.
    pub fn sign_at(&self, text: &[u8], timestamp: u64) -> Result<Vec<u8>, NoteError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(NoteError::TimestampOutOfRange(timestamp));
        }
        let sig = self.key.sign(&cosignature_message(timestamp, text));
        let mut out = Vec::with_capacity(COSIGNATURE_LEN);
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
}

impl NoteSigner for CosignatureSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, text: &[u8]) -> Result<Vec<u8>, NoteError> {
        self.sign_at(text, self.clock.unix_seconds())
    }

    fn verifier_key(&self) -> String {
        self.verifier().verifier_key()
    }
}

/// Verifies `cosignature/v1` cosignatures of one (name, key ID) and reports their time.
#[derive(Clone, Debug)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses `name+hex8+base64(0x04 || 32-byte Ed25519 public key)`.
    pub fn from_verifier_key(vkey: &str) -> Result<CosignatureVerifier, NoteError> {
        Self::from_parts(&split_verifier_key(vkey)?)
    }

    pub(crate) fn from_parts(
        parts: &VerifierKeyParts<'_>,
    ) -> Result<CosignatureVerifier, NoteError> {
        if parts.key_type != SIG_TYPE_COSIGNATURE_V1 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let key = ed25519_public_key(&parts.key)?;
        parts.check_key_id(named_key_id(
            parts.name,
            SIG_TYPE_COSIGNATURE_V1,
            key.as_bytes(),
        ))?;
        Ok(CosignatureVerifier {
            name: parts.name.to_owned(),
            key_id: parts.stated_key_id,
            key,
        })
    }

    /// A witness's key as users configure it: a cosignature key (type 0x04), or a plain
    /// Ed25519 key (type 0x01) taken as the same witness's cosignature key, as the Go
    /// `NewVerifierForCosignatureV1` does. The 0x01 key's stated ID is checked against
    /// its 0x01 derivation; cosignatures are then matched by the 0x04 key ID.
    pub fn from_witness_key(vkey: &str) -> Result<CosignatureVerifier, NoteError> {
        let parts = split_verifier_key(vkey)?;
        if parts.key_type != SIG_TYPE_ED25519 {
            return Self::from_parts(&parts);
        }
        let key = ed25519_public_key(&parts.key)?;
        parts.check_key_id(named_key_id(parts.name, SIG_TYPE_ED25519, key.as_bytes()))?;
        Ok(CosignatureVerifier {
            name: parts.name.to_owned(),
            key_id: named_key_id(parts.name, SIG_TYPE_COSIGNATURE_V1, key.as_bytes()),
            key,
        })
    }

    pub fn verifier_key(&self) -> String {
        format_verifier_key(
            &self.name,
            self.key_id,
            SIG_TYPE_COSIGNATURE_V1,
            self.key.as_bytes(),
        )
    }

    /// Verifies a cosignature (payload without key ID) over `text` and returns its
    /// timestamp in POSIX seconds.
    pub fn verify_cosignature(&self, text: &[u8], signature: &[u8]) -> Result<u64, NoteError> {
        let invalid = || NoteError::InvalidSignature {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        if signature.len() != COSIGNATURE_LEN {
            return Err(invalid());
        }
        let (ts, sig) = signature.split_at(8);
        let timestamp = u64::from_be_bytes(ts.try_into().map_err(|_| invalid())?);
        if timestamp > MAX_TIMESTAMP {
            return Err(invalid());
        }
        let sig = Signature::from_slice(sig).map_err(|_| invalid())?;
        self.key
            .verify_strict(&cosignature_message(timestamp, text), &sig)
            .map_err(|_| invalid())?;
        Ok(timestamp)
    }

    /// Finds this cosigner's signature on `note`, verifies it and returns its timestamp.
    pub fn verified_timestamp(&self, note: &Note) -> Result<u64, NoteError> {
        let sig = note
            .signatures()
            .iter()
            .find(|s| s.name == self.name && s.key_id == self.key_id)
            .ok_or(NoteError::NoVerifiedSignature)?;
        self.verify_cosignature(note.text().as_bytes(), &sig.signature)
    }
}

impl NoteVerifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        self.verify_cosignature(text, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";

    fn signer(now: u64) -> CosignatureSigner {
        CosignatureSigner::new("w.example", SigningKey::from_bytes(&[3u8; 32]), move || now)
            .unwrap()
    }

    #[test]
    fn the_injected_clock_sets_the_timestamp() {
        let s = signer(1_700_000_000);
        let mut note = Note::new(std::str::from_utf8(TEXT).unwrap()).unwrap();
        note.sign(&s).unwrap();
        let v = s.verifier();
        assert_eq!(v.verified_timestamp(&note), Ok(1_700_000_000));
        assert_eq!(note.verify(&[&v]).unwrap().len(), 1);
    }

    #[test]
    fn timestamp_is_covered_by_the_signature() {
        let s = signer(0);
        let mut sig = s.sign_at(TEXT, 1000).unwrap();
        assert_eq!(sig.len(), COSIGNATURE_LEN);
        assert_eq!(s.verifier().verify_cosignature(TEXT, &sig), Ok(1000));
        sig[7] ^= 1;
        assert!(s.verifier().verify_cosignature(TEXT, &sig).is_err());
    }

    #[test]
    fn out_of_range_timestamps_are_refused() {
        let s = signer(0);
        assert_eq!(
            s.sign_at(TEXT, 1 << 63),
            Err(NoteError::TimestampOutOfRange(1 << 63))
        );
        assert!(s.sign_at(TEXT, (1 << 63) - 1).is_ok());
    }

    #[test]
    fn a_plain_ed25519_signature_is_not_a_cosignature() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let plain = key.sign(TEXT).to_bytes();
        let mut payload = 0u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&plain);
        assert!(!signer(0).verifier().verify(TEXT, &payload));
    }

    #[test]
    fn a_witness_may_be_configured_by_its_plain_ed25519_key() {
        let s = signer(1_700_000_000);
        let mut note = Note::new(std::str::from_utf8(TEXT).unwrap()).unwrap();
        note.sign(&s).unwrap();
        let ed = super::super::Ed25519Signer::new("w.example", SigningKey::from_bytes(&[3u8; 32]))
            .unwrap();
        let as_ed25519 = CosignatureVerifier::from_witness_key(&ed.verifier_key()).unwrap();
        assert_eq!(as_ed25519.key_id(), s.key_id());
        assert_eq!(as_ed25519.verified_timestamp(&note), Ok(1_700_000_000));
        let as_cosig = CosignatureVerifier::from_witness_key(&s.verifier_key()).unwrap();
        assert_eq!(as_cosig.verifier_key(), s.verifier_key());
        // A 0x01 key with a wrong stated ID is still refused.
        let mut bad = ed.verifier_key();
        let at = "w.example+".len();
        let flipped = if &bad[at..at + 1] == "0" { "1" } else { "0" };
        bad.replace_range(at..at + 1, flipped);
        assert!(matches!(
            CosignatureVerifier::from_witness_key(&bad),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        // Other key types are not witness keys.
        let ecdsa = super::super::EcdsaSigner::new(
            "w.example",
            p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap(),
        )
        .unwrap();
        assert!(CosignatureVerifier::from_witness_key(&ecdsa.verifier_key()).is_err());
    }

    #[test]
    fn key_ids_differ_from_the_ed25519_key_id_of_the_same_key() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let ed = super::super::Ed25519Signer::new("w.example", key).unwrap();
        assert_ne!(ed.key_id(), signer(0).key_id());
    }
}
