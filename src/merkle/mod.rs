//! RFC 6962 / RFC 9162 Merkle tree: hashing, roots, inclusion and consistency
//! proof generation over any [`SubtreeSource`], proof verification, and the
//! right edge ([`CompactRange`]) an appender keeps.
//!
//! Pure: no I/O. Proof generation asks a [`SubtreeSource`] for the hashes of
//! complete subtrees in one batch, so the same code serves proofs from memory
//! ([`MemoryTree`]) and from stored tiles. Invariant: a hash is only ever
//! computed as SHA-256(0x00 || entry) for leaves or SHA-256(0x01 || l || r) for
//! nodes (RFC 6962 §2.1); nothing else enters a tree.

mod compact;
mod hash;
mod memory;
mod proof;
mod rs_merkle_hasher;
mod verify;

pub use compact::{CompactRange, CompactRangeError, root_from_leaf_hashes};
pub use hash::{HASH_SIZE, Hash, HashError, empty_root, leaf_hash, node_hash};
pub use memory::{MemoryTree, MissingNode};
pub use proof::{
    NodeId, ProofError, SubtreeSource, batch_inclusion_proof, consistency_proof,
    consistency_proof_nodes, inclusion_proof, inclusion_proof_nodes, inclusion_proof_with_leaf,
    tree_root, tree_root_nodes,
};
pub use rs_merkle_hasher::Rfc6962Hasher;
pub use verify::{
    VerifyError, batch_proof_len, consistency_proof_len, inclusion_proof_len,
    root_from_batch_proof, root_from_inclusion_proof, verify_batch_inclusion, verify_consistency,
    verify_inclusion,
};
