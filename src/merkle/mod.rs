//! merkle (in progress)
//!
//! Placeholder so the `event` module compiles on its own branch: only the
//! `Hash` type, with the subset of the agreed API that `event` uses. The real
//! RFC 6962 module replaces this file.

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Wraps 32 digest bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Hash {
        Hash(b)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}
