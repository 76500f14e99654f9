//! An RFC 6962 hasher for the `rs_merkle` crate, used only as an independent
//! cross-check of roots and audit paths (never as the log's tree).

use super::hash::{Hash, leaf_hash, node_hash};

/// RFC 6962 hashing for `rs_merkle`: `hash` is the leaf hash and a lone left
/// node is promoted unchanged, which yields exactly RFC 6962's tree shape.
/// Leaves passed to `rs_merkle` must already be leaf hashes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rfc6962Hasher;

impl rs_merkle::Hasher for Rfc6962Hasher {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        leaf_hash(data).0
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}
