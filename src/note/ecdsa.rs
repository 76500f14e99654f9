//! ECDSA P-256 note signatures, type 0x02, as transparency-dev/witness defines them
//! (c2sp.org/signed-note §Signature types; the byte format is set by that code).
//!
//! The signature is ASN.1 DER `SEQUENCE { r, s }` over SHA-256 of the note text; the key
//! ID is SHA-256(DER SubjectPublicKeyInfo)[:4] (no name, no type byte); the verifier key
//! is `name+hex8+base64(0x02 || DER SPKI)`. We sign with RFC 6979 deterministic nonces
//! and always emit low-S signatures; verification accepts high-S too, as Go's
//! `ecdsa.VerifyASN1` does, so signatures from other implementations verify.

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

use super::{
    NoteError, NoteSigner, NoteVerifier, SIG_TYPE_ECDSA, VerifierKeyParts, check_key_name,
    format_verifier_key, split_verifier_key,
};

/// Signs notes with an ECDSA P-256 key under a key name.
pub struct EcdsaSigner {
    name: String,
    key: SigningKey,
    verifier: EcdsaVerifier,
}

impl EcdsaSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<EcdsaSigner, NoteError> {
        check_key_name(name)?;
        let verifier = EcdsaVerifier::from_key(name, *key.verifying_key())?;
        Ok(EcdsaSigner {
            name: name.to_owned(),
            key,
            verifier,
        })
    }

    pub fn verifier(&self) -> EcdsaVerifier {
        self.verifier.clone()
    }
}

impl NoteSigner for EcdsaSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.verifier.key_id
    }

    fn sign(&self, text: &[u8]) -> Result<Vec<u8>, NoteError> {
        // RFC 6979 nonce, SHA-256 digest of the text.
        let sig: Signature = self
            .key
            .try_sign(text)
            .map_err(|e| NoteError::Signing(e.to_string()))?;
        // Low-S: the same signature every time for the same text and key, and no second,
        // malleated encoding of it from us.
        Ok(sig.normalize_s().to_der().as_bytes().to_vec())
    }

    fn verifier_key(&self) -> String {
        self.verifier.verifier_key()
    }
}

/// Verifies ECDSA P-256 note signatures of one (name, key ID).
#[derive(Clone, Debug)]
pub struct EcdsaVerifier {
    name: String,
    key_id: u32,
    /// The DER SubjectPublicKeyInfo the key ID is computed from.
    spki: Vec<u8>,
    key: VerifyingKey,
}

impl EcdsaVerifier {
    /// Parses `name+hex8+base64(0x02 || DER SPKI)` of a P-256 key.
    pub fn from_verifier_key(vkey: &str) -> Result<EcdsaVerifier, NoteError> {
        Self::from_parts(&split_verifier_key(vkey)?)
    }

    pub(crate) fn from_parts(parts: &VerifierKeyParts<'_>) -> Result<EcdsaVerifier, NoteError> {
        if parts.key_type != SIG_TYPE_ECDSA {
            return Err(NoteError::UnsupportedKeyType(parts.key_type));
        }
        let key = VerifyingKey::from_public_key_der(&parts.key).map_err(|_| {
            NoteError::MalformedVerifierKey("not a DER SubjectPublicKeyInfo of a P-256 key")
        })?;
        let verifier = EcdsaVerifier::from_key(parts.name, key)?;
        // The key ID hashes the SPKI bytes as given; insist they are the one canonical
        // (uncompressed point) encoding so one key has one ID.
        if verifier.spki != parts.key {
            return Err(NoteError::MalformedVerifierKey(
                "SubjectPublicKeyInfo is not in canonical uncompressed DER form",
            ));
        }
        parts.check_key_id(verifier.key_id)?;
        Ok(verifier)
    }

    fn from_key(name: &str, key: VerifyingKey) -> Result<EcdsaVerifier, NoteError> {
        check_key_name(name)?;
        let spki = key
            .to_public_key_der()
            .map_err(|e| NoteError::Signing(format!("encoding the public key: {e}")))?
            .as_bytes()
            .to_vec();
        Ok(EcdsaVerifier {
            name: name.to_owned(),
            key_id: spki_key_id(&spki),
            spki,
            key,
        })
    }

    pub fn verifier_key(&self) -> String {
        format_verifier_key(&self.name, self.key_id, SIG_TYPE_ECDSA, &self.spki)
    }
}

impl NoteVerifier for EcdsaVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        // Strict DER: minimal integers, no trailing bytes.
        let Ok(sig) = DerSignature::try_from(signature) else {
            return false;
        };
        self.key.verify(text, &sig).is_ok()
    }
}

/// Key ID of a type-0x02 key: SHA-256(DER SPKI)[:4], big-endian.
fn spki_key_id(spki: &[u8]) -> u32 {
    let digest = Sha256::digest(spki);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Note;

    fn signer() -> EcdsaSigner {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        EcdsaSigner::new("example.com/log", key).unwrap()
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let s = signer();
        let mut note =
            Note::new("example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
                .unwrap();
        note.sign(&s).unwrap();
        let v = EcdsaVerifier::from_verifier_key(&s.verifier_key()).unwrap();
        assert_eq!(v.key_id(), s.key_id());
        assert_eq!(note.verify(&[&v]).unwrap().len(), 1);
        let sig = &note.signatures()[0].signature;
        assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        assert!(!v.verify(b"example.com/log\n1\n", sig));
        let mut trailing = sig.clone();
        trailing.push(0);
        assert!(!v.verify(note.text().as_bytes(), &trailing));
    }

    #[test]
    fn signing_is_deterministic_and_low_s() {
        let s = signer();
        for text in [&b"a\n"[..], b"b\n", b"c\n", b"d\n", b"e\n", b"f\n"] {
            let der = s.sign(text).unwrap();
            assert_eq!(der, s.sign(text).unwrap());
            let sig = Signature::from_der(&der).unwrap();
            assert_eq!(sig.normalize_s(), sig, "high-S signature emitted");
        }
    }

    #[test]
    fn high_s_signatures_verify() {
        let s = signer();
        let text = b"some text\n";
        let low = Signature::from_der(&s.sign(text).unwrap()).unwrap();
        let (r, s_scalar) = low.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s_scalar).to_bytes()).unwrap();
        assert_ne!(high, low);
        assert!(s.verifier().verify(text, high.to_der().as_bytes()));
    }

    #[test]
    fn fixed_size_signatures_are_not_accepted() {
        let s = signer();
        let der = s.sign(b"x\n").unwrap();
        let raw = Signature::from_der(&der).unwrap().to_bytes();
        assert!(!s.verifier().verify(b"x\n", &raw));
    }
}
