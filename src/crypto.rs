//! Keys and authenticated encryption for event bodies at rest.
//!
//! One 256-bit master key, held outside the data directory, is the root of
//! every secret. From it, HMAC-SHA256 derives (RFC 5869 §2.3 HKDF-Expand,
//! one block, with the uniformly random master key as the PRK — §3.3 allows
//! skipping Extract for such keys) three independent keys:
//!
//! - the *wrap key*, which encrypts (wraps) each random data key before the
//!   data key is stored;
//! - the *index key*, under which subject, actor and the other searchable
//!   fields become opaque index terms (HMAC-SHA256), so the store never
//!   holds them in plaintext;
//! - the *check key*, whose hash is stored as a key-check value, so a wrong
//!   master key is recognised at startup instead of failing on every read.
//!
//! Data keys are random and encrypt event bodies and salts with
//! XChaCha20-Poly1305 (24-byte random nonces, so random nonces never
//! collide in practice). Destroying a data key makes everything sealed
//! under it unreadable: that is how erasure works (crypto-shredding).
//!
//! Pure apart from drawing random keys and nonces; no I/O. Invariant: no
//! function here returns or stores key material in plaintext except
//! [`MasterKey::to_hex`], which exists to write the master key file.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Length of every key here.
pub const KEY_LEN: usize = 32;
/// XChaCha20 nonce length.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Why a key could not be parsed or a ciphertext opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The master key text is not 32 bytes of hex or base64.
    #[error(
        "a master key is 32 bytes written as 64 hex digits or as base64 (e.g. from `openssl rand -hex 32`)"
    )]
    BadMasterKey,
    /// The ciphertext was altered, or it was sealed under another key or for another place.
    #[error("decryption failed: wrong key or altered data")]
    Open,
    /// The ciphertext is too short to hold a nonce and a tag.
    #[error("ciphertext is truncated")]
    Truncated,
    /// The operating system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// `n` random nonces from one draw of the operating system's generator.
pub fn random_nonces(n: usize) -> Result<Vec<[u8; NONCE_LEN]>, CryptoError> {
    let mut buf = vec![0u8; n * NONCE_LEN];
    getrandom::fill(&mut buf).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(buf
        .chunks_exact(NONCE_LEN)
        .map(|c| {
            let mut a = [0u8; NONCE_LEN];
            a.copy_from_slice(c);
            a
        })
        .collect())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(out)
}

fn hmac(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
    let mut mac = match <HmacSha256 as hmac::KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The root secret. Never stored in the data directory.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        Ok(MasterKey(random_bytes()?))
    }

    /// From raw bytes (tests).
    pub fn from_bytes(b: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(b)
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or
    /// not) of exactly 32 bytes; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            let unpadded = t.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(unpadded)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
                .map_err(|_| CryptoError::BadMasterKey)?
        };
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(MasterKey(arr))
    }

    /// Hex text, for the master key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// HKDF-Expand with one output block: HMAC(master, label || 0x01).
    fn derive(&self, label: &str) -> [u8; KEY_LEN] {
        hmac(&self.0, &[label.as_bytes(), &[1]])
    }

    /// The key that wraps data keys.
    pub fn wrap_key(&self) -> DataKey {
        DataKey(self.derive("veritrail/wrap/v1"))
    }

    /// The key of the keyed hashes that index terms are.
    pub fn index_key(&self) -> IndexKey {
        let key = self.derive("veritrail/index/v1");
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        match <HmacSha256 as hmac::KeyInit>::new_from_slice(&key) {
            Ok(mac) => IndexKey(mac),
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// The key that seals the alert rules' checkpointed windows.
    pub fn alerts_state_key(&self) -> DataKey {
        DataKey(self.derive("veritrail/alerts-state/v1"))
    }

    /// The key-check value: SHA-256 of a derived key. Reveals nothing about
    /// the master key, and differs for every other master key.
    pub fn check_value(&self) -> [u8; 32] {
        Sha256::digest(self.derive("veritrail/key-check/v1")).into()
    }
}

/// A 256-bit XChaCha20-Poly1305 key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new random data key.
    pub fn generate() -> Result<DataKey, CryptoError> {
        Ok(DataKey(random_bytes()?))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        <XChaCha20Poly1305 as chacha20poly1305::KeyInit>::new(&self.0.into())
    }

    /// Encrypts `plaintext`, binding it to `aad` (where it belongs): the
    /// result is `nonce(24) || ciphertext || tag(16)`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(random_bytes()?, aad, plaintext)
    }

    /// [`DataKey::seal`] with a nonce the caller drew at random (e.g. many
    /// at once); a nonce must never be used twice with one key.
    pub fn seal_with_nonce(
        &self,
        nonce_bytes: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = XNonce::from(nonce_bytes);
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`DataKey::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce_bytes: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Truncated)?;
        self.cipher()
            .decrypt(&XNonce::from(nonce_bytes), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Open)
    }

    /// A key from 32 secret bytes: the vault's key tree keeps its keys as
    /// bytes inside encrypted blocks (see `vault::keytree`).
    pub(crate) fn from_secret(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(bytes)
    }

    /// The key's bytes, for the vault's key tree only, which stores them
    /// inside blocks sealed under other keys.
    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A key derived from this one for `parts` (HMAC-SHA256, as
    /// [`MasterKey`]'s derivations): one-way, so destroying this key
    /// destroys every key derived from it.
    pub(crate) fn derive(&self, parts: &[&[u8]]) -> DataKey {
        DataKey(hmac(&self.0, parts))
    }

    /// Wraps `key` under this (wrap) key, bound to the key's id.
    pub fn wrap(&self, key_id: &[u8], key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        self.seal(&[b"veritrail/data-key/v1\0", key_id].concat(), &key.0)
    }

    /// Unwraps what [`DataKey::wrap`] produced for `key_id`.
    pub fn unwrap_key(&self, key_id: &[u8], wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let raw = self.open(&[b"veritrail/data-key/v1\0", key_id].concat(), wrapped)?;
        let arr: [u8; KEY_LEN] = raw.try_into().map_err(|_| CryptoError::Open)?;
        Ok(DataKey(arr))
    }
}

/// The key of index terms, held as the keyed HMAC state, which each term
/// continues from (half the hashing of keying HMAC anew).
#[derive(Clone)]
pub struct IndexKey(HmacSha256);

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

/// A searchable field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The data subject.
    Subject,
    /// `actor.id`.
    Actor,
    /// `action`.
    Action,
    /// `resource.id`.
    Resource,
    /// The writer's app id.
    App,
    /// `outcome`.
    Outcome,
    /// `purpose`.
    Purpose,
    /// The day `occurred_at` falls on, in UTC (`YYYY-MM-DD`).
    OccurredDay,
    /// The month of `occurred_at`, in UTC (`YYYY-MM`).
    OccurredMonth,
    /// The year of `occurred_at`, in UTC (`YYYY`).
    OccurredYear,
    /// Whether `occurred_at` is in 2200 or later (one value): the far
    /// future, in one term rather than a term per year.
    OccurredFar,
}

impl Field {
    /// The one-byte tag of the field in index keys.
    pub fn tag(self) -> u8 {
        match self {
            Field::Subject => b's',
            Field::Actor => b'a',
            Field::Action => b'c',
            Field::Resource => b'r',
            Field::App => b'p',
            Field::Outcome => b'o',
            Field::Purpose => b'u',
            Field::OccurredDay => b'd',
            Field::OccurredMonth => b'm',
            Field::OccurredYear => b'y',
            Field::OccurredFar => b'f',
        }
    }

    fn label(self) -> &'static [u8] {
        match self {
            Field::Subject => b"subject",
            Field::Actor => b"actor",
            Field::Action => b"action",
            Field::Resource => b"resource",
            Field::App => b"app",
            Field::Outcome => b"outcome",
            Field::Purpose => b"purpose",
            Field::OccurredDay => b"occurred-day",
            Field::OccurredMonth => b"occurred-month",
            Field::OccurredYear => b"occurred-year",
            Field::OccurredFar => b"occurred-far",
        }
    }
}

/// An index term: `tag || HMAC-SHA256(index key, field || 0x00 || value)`.
/// Equal values give equal terms; the value cannot be read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term(pub [u8; 33]);

impl IndexKey {
    /// The term of `value` in `field`.
    pub fn term(&self, field: Field, value: &str) -> Term {
        let mut mac = self.0.clone();
        hmac::Mac::update(&mut mac, field.label());
        hmac::Mac::update(&mut mac, &[0]);
        hmac::Mac::update(&mut mac, value.as_bytes());
        let mac: [u8; 32] = hmac::Mac::finalize(mac).into_bytes().into();
        let mut t = [0u8; 33];
        t[0] = field.tag();
        t[1..].copy_from_slice(&mac);
        Term(t)
    }

    /// A pseudonym for a data subject, safe to show and to store in the
    /// clear (e.g. in an erasure record): hex of the subject's term.
    pub fn subject_pseudonym(&self, subject: &str) -> String {
        hex::encode(&self.term(Field::Subject, subject).0[1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_place() {
        let k = DataKey::generate().unwrap();
        let sealed = k.seal(b"place-1", b"secret marker").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 13 + TAG_LEN);
        assert!(
            !sealed
                .windows(b"secret marker".len())
                .any(|w| w == b"secret marker")
        );
        assert_eq!(k.open(b"place-1", &sealed).unwrap(), b"secret marker");
        assert_eq!(k.open(b"place-2", &sealed), Err(CryptoError::Open));
        let other = DataKey::generate().unwrap();
        assert_eq!(other.open(b"place-1", &sealed), Err(CryptoError::Open));
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN + 2] ^= 1;
        assert_eq!(k.open(b"place-1", &flipped), Err(CryptoError::Open));
        assert_eq!(
            k.open(b"place-1", &sealed[..30]),
            Err(CryptoError::Truncated)
        );
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let k = DataKey::generate().unwrap();
        assert_ne!(k.seal(b"", b"x").unwrap(), k.seal(b"", b"x").unwrap());
    }

    #[test]
    fn wrapped_keys_unwrap_only_for_their_id_and_master() {
        let m = MasterKey::generate().unwrap();
        let dk = DataKey::generate().unwrap();
        let wrapped = m.wrap_key().wrap(b"subj/1", &dk).unwrap();
        assert_eq!(m.wrap_key().unwrap_key(b"subj/1", &wrapped).unwrap(), dk);
        assert!(m.wrap_key().unwrap_key(b"subj/2", &wrapped).is_err());
        let other = MasterKey::generate().unwrap();
        assert!(other.wrap_key().unwrap_key(b"subj/1", &wrapped).is_err());
    }

    #[test]
    fn master_keys_parse_from_hex_and_base64_only_at_32_bytes() {
        let m = MasterKey::generate().unwrap();
        let hex_text = m.to_hex();
        assert_eq!(
            MasterKey::parse(&format!(" {hex_text}\n"))
                .unwrap()
                .check_value(),
            m.check_value()
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(m.0);
        assert_eq!(
            MasterKey::parse(&b64).unwrap().check_value(),
            m.check_value()
        );
        assert!(MasterKey::parse("abcd").is_err());
        assert!(MasterKey::parse(&hex_text[..62]).is_err());
        assert!(MasterKey::parse("not a key at all!").is_err());
    }

    #[test]
    fn derived_keys_are_independent_and_deterministic() {
        let m = MasterKey::from_bytes([7; 32]);
        let again = MasterKey::from_bytes([7; 32]);
        assert_eq!(m.check_value(), again.check_value());
        assert_ne!(
            m.check_value(),
            MasterKey::from_bytes([8; 32]).check_value()
        );
        let t1 = m.index_key().term(Field::Subject, "alice");
        assert_eq!(t1, again.index_key().term(Field::Subject, "alice"));
        assert_ne!(t1, m.index_key().term(Field::Actor, "alice"));
        assert_ne!(t1, m.index_key().term(Field::Subject, "alice2"));
        assert_eq!(t1.0[0], b's');
        // A term is HMAC-SHA256 under the derived index key of the field's
        // label, a zero byte and the value: the same as when stored.
        let index_key = m.derive("veritrail/index/v1");
        let mac = hmac(&index_key, &[Field::Subject.label(), &[0], b"alice"]);
        assert_eq!(t1.0[1..], mac);
        assert_ne!(m.wrap_key().0, index_key);
    }
}
