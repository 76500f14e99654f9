//! The 32-byte SHA-256 value every Merkle node carries, and RFC 6962 leaf and
//! node hashing.
//!
//! Invariant: a [`Hash`] is always exactly 32 bytes; every textual or byte
//! form is checked for that length where it enters.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// Number of bytes in a [`Hash`](struct@Hash).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
///
/// `Debug` prints lowercase hex, `Display` prints padded standard base64 (the
/// form checkpoints and proofs use), and serde uses that base64 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

/// Why bytes or text could not be read as a [`Hash`](struct@Hash).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HashError {
    /// The decoded value is not 32 bytes long.
    #[error("a hash is 32 bytes, got {got} bytes")]
    WrongLength {
        /// How many bytes were given (after decoding text).
        got: usize,
    },
    /// The text is not padded standard base64 (RFC 4648 §4).
    #[error("hash is not padded standard base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The text is not hexadecimal.
    #[error("hash is not hexadecimal: {0}")]
    Hex(#[from] hex::FromHexError),
}

impl Hash {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(b: [u8; HASH_SIZE]) -> Hash {
        Hash(b)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    /// Reads a hash from a byte slice that must be exactly 32 bytes long.
    pub fn from_slice(b: &[u8]) -> Result<Hash, HashError> {
        <[u8; HASH_SIZE]>::try_from(b)
            .map(Hash)
            .map_err(|_| HashError::WrongLength { got: b.len() })
    }

    /// Parses padded standard base64 (RFC 4648 §4) that decodes to exactly 32
    /// bytes.
    pub fn from_base64(s: &str) -> Result<Hash, HashError> {
        // 32 bytes encode to 44 characters; refuse to decode anything much
        // longer so hostile input costs nothing.
        if s.len() > 4 * HASH_SIZE {
            return Err(HashError::WrongLength {
                got: s.len() / 4 * 3,
            });
        }
        Hash::from_slice(&STANDARD.decode(s)?)
    }

    /// Padded standard base64 of the 32 bytes (44 characters).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(s: &str) -> Result<Hash, HashError> {
        if s.len() > 4 * HASH_SIZE {
            return Err(HashError::WrongLength { got: s.len() / 2 });
        }
        Hash::from_slice(&hex::decode(s)?)
    }

    /// Lowercase hexadecimal (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<[u8; HASH_SIZE]> for Hash {
    fn from(b: [u8; HASH_SIZE]) -> Hash {
        Hash(b)
    }
}

impl From<Hash> for [u8; HASH_SIZE] {
    fn from(h: Hash) -> [u8; HASH_SIZE] {
        h.0
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Encoded on the stack: proofs serialize dozens of hashes each.
        let mut buf = [0u8; 44];
        let n = STANDARD
            .encode_slice(self.0, &mut buf)
            .map_err(serde::ser::Error::custom)?;
        let text = std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?;
        s.serialize_str(text)
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-byte hash as padded standard base64")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hash, E> {
                Hash::from_base64(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Domain-separation prefix of a leaf hash (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// The leaf hash of one log entry: `SHA-256(0x00 || entry)` (RFC 6962 §2.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`
/// (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_SIZE];
    buf[0] = NODE_PREFIX;
    buf[1..1 + HASH_SIZE].copy_from_slice(&left.0);
    buf[1 + HASH_SIZE..].copy_from_slice(&right.0);
    Hash(Sha256::digest(buf).into())
}

/// The root of the empty tree: `SHA-256()` of no bytes (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_rfc6962() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            empty_root().to_base64(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // MTH of the two leaves "" and 00 (specs §6.2, D[0:2]).
        assert_eq!(
            node_hash(&leaf_hash(b""), &leaf_hash(&[0])).to_hex(),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
    }

    #[test]
    fn text_forms_round_trip_and_reject_wrong_lengths() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Ok(h));
        assert_eq!(Hash::from_slice(h.as_bytes()), Ok(h));
        assert_eq!(format!("{h}"), h.to_base64());
        assert_eq!(format!("{h:?}"), h.to_hex());

        assert_eq!(
            Hash::from_slice(&[0; 31]),
            Err(HashError::WrongLength { got: 31 })
        );
        assert_eq!(
            Hash::from_base64("ZG9uJ3QgY2FyZSAy"),
            Err(HashError::WrongLength { got: 12 })
        );
        // Unpadded and URL-safe forms are not the standard alphabet.
        let unpadded = h.to_base64().trim_end_matches('=').to_string();
        assert!(matches!(
            Hash::from_base64(&unpadded),
            Err(HashError::Base64(_))
        ));
        let all_ones = Hash([0xff; 32]);
        let url_safe = all_ones.to_base64().replace('/', "_");
        assert!(Hash::from_base64(&url_safe).is_err());
        assert!(Hash::from_base64(&"A".repeat(10_000)).is_err());
        assert!(Hash::from_hex(&"0".repeat(62)).is_err());
        assert!(Hash::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn serde_uses_padded_base64() {
        let h = empty_root();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"");
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hash>("\"ZG9uJ3QgY2FyZSAy\"").is_err());
        assert!(serde_json::from_str::<Hash>("[1,2]").is_err());
    }
}
