//! merkle — placeholder holding only the `Hash` type that `note` needs, shaped
//! as the module contract describes. The full RFC 6962 module replaces this
//! file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A SHA-256 output: a Merkle tree node, leaf hash or root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

/// Why bytes or text are not a 32-byte hash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("a hash is 32 bytes, got {0}")]
    Length(usize),
    #[error("hash is not padded standard base64")]
    Base64,
}

impl Hash {
    pub const fn from_bytes(b: [u8; 32]) -> Hash {
        Hash(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Result<Hash, HashError> {
        <[u8; 32]>::try_from(b)
            .map(Hash)
            .map_err(|_| HashError::Length(b.len()))
    }

    pub fn from_base64(s: &str) -> Result<Hash, HashError> {
        let raw = STANDARD.decode(s).map_err(|_| HashError::Base64)?;
        Hash::from_slice(&raw)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}
