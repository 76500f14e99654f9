//! Ed25519 note signatures, type 0x01 (c2sp.org/signed-note §Signature types, RFC 8032).
//!
//! The key ID is SHA-256(name || "\n" || 0x01 || public key)[:4]; the signature is the
//! 64-byte Ed25519 signature of the note text. Verification is strict (no small-order
//! keys, canonical encodings).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::{
    NoteError, NoteSigner, NoteVerifier, SIG_TYPE_ED25519, VerifierKeyParts, check_key_name,
    format_verifier_key, named_key_id, split_verifier_key,
};

/// Signs notes with an Ed25519 key under a key name.
pub struct Ed25519Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl Ed25519Signer {
    pub fn new(name: &str, key: SigningKey) -> Result<Ed25519Signer, NoteError> {
        check_key_name(name)?;
        Ok(Ed25519Signer {
            name: name.to_owned(),
            key_id: named_key_id(name, SIG_TYPE_ED25519, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses the signer-key format of golang.org/x/mod/sumdb/note (not part of C2SP):
    /// `PRIVATE+KEY+<name>+<hex8>+base64(0x01 || 32-byte seed)`, where hex8 is the ID of
    /// the public key.
    pub fn from_signer_key(skey: &str) -> Result<Ed25519Signer, NoteError> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedSignerKey(
                "does not start with PRIVATE+KEY+",
            ))?;
        let parts = split_verifier_key(rest)
            .map_err(|_| NoteError::MalformedSignerKey("expected PRIVATE+KEY+name+keyid+key"))?;
        if parts.key_type != SIG_TYPE_ED25519 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let seed: [u8; 32] = parts
            .key
            .as_slice()
            .try_into()
            .map_err(|_| NoteError::MalformedSignerKey("Ed25519 seed must be 32 bytes"))?;
        let signer = Ed25519Signer::new(parts.name, SigningKey::from_bytes(&seed))?;
        parts.check_key_id(signer.key_id)?;
        Ok(signer)
    }

    pub fn verifier(&self) -> Ed25519Verifier {
        Ed25519Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
}

impl NoteSigner for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, text: &[u8]) -> Result<Vec<u8>, NoteError> {
        Ok(self.key.sign(text).to_bytes().to_vec())
    }

    fn verifier_key(&self) -> String {
        self.verifier().verifier_key()
    }
}

/// Verifies Ed25519 note signatures of one (name, key ID).
#[derive(Clone, Debug)]
pub struct Ed25519Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Ed25519Verifier {
    /// Parses `name+hex8+base64(0x01 || 32-byte public key)`.
    pub fn from_verifier_key(vkey: &str) -> Result<Ed25519Verifier, NoteError> {
        Self::from_parts(&split_verifier_key(vkey)?)
    }

    pub(crate) fn from_parts(parts: &VerifierKeyParts<'_>) -> Result<Ed25519Verifier, NoteError> {
        if parts.key_type != SIG_TYPE_ED25519 {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let key = ed25519_public_key(&parts.key)?;
        parts.check_key_id(named_key_id(parts.name, SIG_TYPE_ED25519, key.as_bytes()))?;
        Ok(Ed25519Verifier {
            name: parts.name.to_owned(),
            key_id: parts.stated_key_id,
            key,
        })
    }

    pub fn verifier_key(&self) -> String {
        format_verifier_key(
            &self.name,
            self.key_id,
            SIG_TYPE_ED25519,
            self.key.as_bytes(),
        )
    }
}

impl NoteVerifier for Ed25519Verifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text, &sig).is_ok()
    }
}

/// A 32-byte compressed Edwards point that decodes.
pub(crate) fn ed25519_public_key(bytes: &[u8]) -> Result<VerifyingKey, NoteError> {
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| NoteError::MalformedVerifierKey("Ed25519 public key must be 32 bytes"))?;
    VerifyingKey::from_bytes(&raw)
        .map_err(|_| NoteError::MalformedVerifierKey("not an Ed25519 public key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Note, parse_verifier_key};

    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn signer_key_matches_its_verifier_key() {
        let signer = Ed25519Signer::from_signer_key(SKEY).unwrap();
        assert_eq!(signer.verifier_key(), VKEY);
        assert_eq!(signer.key_id(), 0xc74f20a3);
        let parsed = parse_verifier_key(VKEY).unwrap();
        assert_eq!(
            (parsed.name(), parsed.key_id()),
            ("PeterNeumann", 0xc74f20a3)
        );
    }

    #[test]
    fn bad_signer_keys_are_rejected() {
        // Wrong key ID.
        let wrong_id = SKEY.replace("c74f20a3", "c74f20a4");
        assert!(matches!(
            Ed25519Signer::from_signer_key(&wrong_id),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        assert!(Ed25519Signer::from_signer_key(VKEY).is_err());
        assert!(
            Ed25519Signer::from_signer_key("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALV").is_err()
        );
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let signer = Ed25519Signer::from_signer_key(SKEY).unwrap();
        let mut note = Note::new("hello\n").unwrap();
        note.sign(&signer).unwrap();
        let v = signer.verifier();
        assert_eq!(note.verify(&[&v]).unwrap().len(), 1);
        let sig = &note.signatures()[0].signature;
        assert_eq!(sig.len(), 64);
        assert!(!v.verify(b"hellp\n", sig));
        assert!(!v.verify(b"hello\n", &sig[..63]));
    }

    #[test]
    fn vkey_with_wrong_type_or_length_is_rejected() {
        // A 0x01 vkey with 31 bytes of key.
        let short = format_verifier_key("n", 0, SIG_TYPE_ED25519, &[1u8; 31]);
        assert!(Ed25519Verifier::from_verifier_key(&short).is_err());
        let ecdsa_typed = format_verifier_key("n", 0, 0x02, &[1u8; 32]);
        assert_eq!(
            Ed25519Verifier::from_verifier_key(&ecdsa_typed).err(),
            Some(NoteError::UnsupportedKeyType(0x02))
        );
    }
}
