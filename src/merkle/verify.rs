//! Proof *verification* (RFC 9162 §2.1.3.2 and §2.1.4.2), with the edge cases
//! of the transparency-dev/merkle reference verifier.
//!
//! Invariant: a proof is accepted only if it has exactly the length the RFC
//! proof for those sizes has and leads to the given root(s); the length is
//! checked first so the error says what was wrong.

use super::hash::{Hash, node_hash};
use super::proof::split_point;

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Inclusion: the leaf index is not inside the tree (this includes every
    /// index for the empty tree).
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index given.
        index: u64,
        /// The tree size given.
        size: u64,
    },
    /// The proof does not have the number of hashes the RFC proof for these
    /// sizes has.
    #[error("the proof has {got} hashes; a proof for these sizes has exactly {expected}")]
    WrongProofLength {
        /// The length an honest proof has.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// Inclusion: the leaf hash and path lead to a different root.
    #[error("the inclusion proof leads to root {computed}, not the expected root {expected}")]
    RootMismatch {
        /// The root the proof leads to.
        computed: Hash,
        /// The root given.
        expected: Hash,
    },
    /// Consistency: the first size is larger than the second.
    #[error("first tree size {first} is larger than second tree size {second}")]
    SizesOutOfOrder {
        /// The first (older) size given.
        first: u64,
        /// The second (newer) size given.
        second: u64,
    },
    /// Consistency: a proof from the empty tree proves nothing; callers
    /// handle size 0 themselves (every tree extends the empty tree).
    #[error("a consistency proof from the empty tree is meaningless; check size 0 before asking")]
    EmptyFirstTree,
    /// Consistency: two trees of the same size have different roots.
    #[error("two trees of size {size} have different roots")]
    SameSizeRootsDiffer {
        /// The common size.
        size: u64,
    },
    /// Consistency: the proof does not lead to the first tree's root.
    #[error("the consistency proof leads to first root {computed}, not {expected}")]
    FirstRootMismatch {
        /// The first root the proof leads to.
        computed: Hash,
        /// The first root given.
        expected: Hash,
    },
    /// Consistency: the proof does not lead to the second tree's root.
    #[error("the consistency proof leads to second root {computed}, not {expected}")]
    SecondRootMismatch {
        /// The second root the proof leads to.
        computed: Hash,
        /// The second root given.
        expected: Hash,
    },
    /// Batch inclusion: the leaves are not strictly increasing indexes
    /// below the tree size (or there are none).
    #[error(
        "a batch proof needs one or more strictly increasing leaf indexes below tree size {size}"
    )]
    BatchLeavesOutOfOrder {
        /// The tree size given.
        size: u64,
    },
}

/// Number of hashes in the inclusion proof of leaf `index` in a tree of
/// `size` leaves; `None` when `index >= size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    let (inner, border) = inner_and_border(index, size);
    Some(inner as usize + border as usize)
}

/// Number of hashes in the consistency proof from `first` to `second`
/// leaves; `None` unless `0 < first <= second`.
pub fn consistency_proof_len(first: u64, second: u64) -> Option<usize> {
    if first == 0 || first > second {
        return None;
    }
    if first == second {
        return Some(0);
    }
    // The proof is the tail of the inclusion path of leaf first-1, above the
    // largest perfect subtree that ends at `first` (its root is the seed), plus
    // that seed unless it is the whole first tree.
    let (inner, border) = inner_and_border(first - 1, second);
    let shift = first.trailing_zeros();
    let seed_in_proof = usize::from(!first.is_power_of_two());
    Some(seed_in_proof + (inner - shift) as usize + border as usize)
}

/// Splits an inclusion path into the levels below the point where the
/// leaf's path leaves the tree's right edge (`inner`) and the left siblings
/// above it (`border`).
fn inner_and_border(index: u64, size: u64) -> (u32, u32) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1–4),
/// after checking the index and the proof length.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, VerifyError> {
    // Step 1.
    let expected =
        inclusion_proof_len(index, size).ok_or(VerifyError::IndexOutOfRange { index, size })?;
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    // Steps 2 and 3.
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5, first half (the length check above makes this hold).
    if s_n != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root
/// is `root` (RFC 9162 §2.1.3.2). A tree of size 1 needs an empty proof and
/// `root == leaf`; size 0 always fails.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    let computed = root_from_inclusion_proof(index, size, leaf, proof)?;
    // Step 5, second half.
    if computed != *root {
        return Err(VerifyError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Number of hashes in the batch inclusion proof of `leaves` (strictly
/// increasing, below `size`) in the tree of `size` leaves; `None` when the
/// leaves are not that.
pub fn batch_proof_len(leaves: &[u64], size: u64) -> Option<usize> {
    fn count(leaves: &[u64], lo: u64, hi: u64) -> usize {
        if leaves.is_empty() {
            return 1;
        }
        if hi - lo == 1 {
            return 0;
        }
        let mid = lo + split_point(hi - lo);
        let cut = leaves.partition_point(|&l| l < mid);
        count(&leaves[..cut], lo, mid) + count(&leaves[cut..], mid, hi)
    }
    let sorted = leaves.windows(2).all(|w| w[0] < w[1]);
    (sorted && leaves.last().is_some_and(|&l| l < size)).then(|| count(leaves, 0, size))
}

/// The root a batch inclusion proof (`merkle::batch_inclusion_proof`) of
/// `leaves` — `(index, leaf hash)`, indexes strictly increasing and below
/// `size` — leads to, after checking the proof's length. The RFC 6962
/// recursion is walked once for the whole batch: each inner node on the
/// leaves' paths is hashed once, however many leaves share it.
pub fn root_from_batch_proof(
    size: u64,
    leaves: &[(u64, Hash)],
    proof: &[Hash],
) -> Result<Hash, VerifyError> {
    fn fold(
        leaves: &[(u64, Hash)],
        lo: u64,
        hi: u64,
        proof: &mut std::slice::Iter<'_, Hash>,
    ) -> Option<Hash> {
        if leaves.is_empty() {
            return proof.next().copied();
        }
        if hi - lo == 1 {
            return Some(leaves[0].1);
        }
        let mid = lo + split_point(hi - lo);
        let cut = leaves.partition_point(|l| l.0 < mid);
        let left = fold(&leaves[..cut], lo, mid, proof)?;
        let right = fold(&leaves[cut..], mid, hi, proof)?;
        Some(node_hash(&left, &right))
    }
    let indexes: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    let expected =
        batch_proof_len(&indexes, size).ok_or(VerifyError::BatchLeavesOutOfOrder { size })?;
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    fold(leaves, 0, size, &mut proof.iter()).ok_or(wrong_length)
}

/// Checks that each `(index, leaf hash)` of `leaves` (indexes strictly
/// increasing) is in the tree of `size` leaves whose root is `root`, with
/// one batch proof.
pub fn verify_batch_inclusion(
    size: u64,
    leaves: &[(u64, Hash)],
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    let computed = root_from_batch_proof(size, leaves, proof)?;
    if computed != *root {
        return Err(VerifyError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Checks that the tree of `first` leaves with root `first_root` is a prefix
/// of the tree of `second` leaves with root `second_root`
/// (RFC 9162 §2.1.4.2).
///
/// Edge cases as in transparency-dev/merkle: `first > second` fails;
/// `first == 0` fails (even 0 → 0); `first == second` needs an empty proof
/// and equal roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if first > second {
        return Err(VerifyError::SizesOutOfOrder { first, second });
    }
    if first == 0 {
        return Err(VerifyError::EmptyFirstTree);
    }
    let expected = consistency_proof_len(first, second).ok_or(VerifyError::EmptyFirstTree)?;
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if first == second {
        if first_root != second_root {
            return Err(VerifyError::SameSizeRootsDiffer { size: first });
        }
        return Ok(());
    }
    // Step 1: the proof is not empty (expected >= 1 when first < second).
    // Step 2: a power-of-two first tree is itself the seed node.
    let (seed, rest) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        match proof.split_first() {
            Some((seed, rest)) => (seed, rest),
            None => return Err(wrong_length),
        }
    };
    // Steps 3 and 4.
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let (mut f_r, mut s_r) = (*seed, *seed);
    // Step 6.
    for c in rest {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    if s_n != 0 {
        return Err(wrong_length);
    }
    if f_r != *first_root {
        return Err(VerifyError::FirstRootMismatch {
            computed: f_r,
            expected: *first_root,
        });
    }
    if s_r != *second_root {
        return Err(VerifyError::SecondRootMismatch {
            computed: s_r,
            expected: *second_root,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn proof_lengths_match_the_rfc_examples() {
        // RFC 9162 §2.1.5, 7 leaves.
        assert_eq!(inclusion_proof_len(0, 7), Some(3));
        assert_eq!(inclusion_proof_len(3, 7), Some(3));
        assert_eq!(inclusion_proof_len(4, 7), Some(3));
        assert_eq!(inclusion_proof_len(6, 7), Some(2));
        assert_eq!(inclusion_proof_len(0, 1), Some(0));
        assert_eq!(inclusion_proof_len(1, 1), None);
        assert_eq!(inclusion_proof_len(0, 0), None);
        assert_eq!(consistency_proof_len(3, 7), Some(4));
        assert_eq!(consistency_proof_len(4, 7), Some(1));
        assert_eq!(consistency_proof_len(6, 7), Some(3));
        assert_eq!(consistency_proof_len(7, 7), Some(0));
        assert_eq!(consistency_proof_len(0, 7), None);
        assert_eq!(consistency_proof_len(8, 7), None);
        assert_eq!(inclusion_proof_len(0, u64::MAX), Some(64));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Some(63));
        // The whole old tree is the new tree's left child: one hash.
        assert_eq!(consistency_proof_len(1 << 63, u64::MAX), Some(1));
        assert_eq!(consistency_proof_len(u64::MAX - 1, u64::MAX), Some(64));
    }

    /// Every subset shape of small trees, and runs in a larger one: the
    /// batch proof of any set of leaves leads to the root, is exactly as
    /// long as `batch_proof_len` says, holds a single leaf's inclusion
    /// proof when the batch is one leaf, and fails when anything is changed.
    #[test]
    fn batch_proofs_verify_and_every_change_is_rejected() {
        use crate::merkle::{MemoryTree, batch_inclusion_proof, inclusion_proof};
        let mut tree = MemoryTree::new();
        let mut sets: Vec<(u64, Vec<u64>)> = Vec::new();
        for size in 1..=9u64 {
            for mask in 1u32..(1 << size) {
                sets.push((size, (0..size).filter(|i| mask & (1 << i) != 0).collect()));
            }
        }
        sets.push((1000, (500..1000).collect()));
        sets.push((1000, vec![0, 1, 2, 700, 999]));
        sets.push((1337, (1200..1300).chain([1336]).collect()));
        for (size, leaves) in sets {
            while tree.len() < size {
                tree.push(leaf_hash(&tree.len().to_be_bytes()));
            }
            let mut prefix = MemoryTree::new();
            for l in &tree.leaves()[..size as usize] {
                prefix.push(*l);
            }
            let root = prefix.root();
            let with_hashes: Vec<(u64, Hash)> = leaves
                .iter()
                .map(|&i| (i, prefix.leaves()[i as usize]))
                .collect();
            let proof = batch_inclusion_proof(&leaves, size, &prefix).unwrap();
            assert_eq!(batch_proof_len(&leaves, size), Some(proof.len()));
            assert_eq!(
                verify_batch_inclusion(size, &with_hashes, &proof, &root),
                Ok(())
            );
            if let [one] = leaves[..] {
                // The same sibling subtrees as the RFC path, in tree order
                // (left to right) rather than leaf to root.
                let (mut ours, mut rfc) =
                    (proof.clone(), inclusion_proof(one, size, &prefix).unwrap());
                ours.sort();
                rfc.sort();
                assert_eq!(ours, rfc);
            }
            // A changed proof hash, a changed leaf hash, a moved leaf, a
            // missing or an extra hash: each is refused.
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = leaf_hash(b"forged");
                assert!(verify_batch_inclusion(size, &with_hashes, &bad, &root).is_err());
            }
            let mut bad_leaf = with_hashes.clone();
            bad_leaf[0].1 = leaf_hash(b"forged");
            assert!(verify_batch_inclusion(size, &bad_leaf, &proof, &root).is_err());
            if let Some(free) = (0..size).find(|i| !leaves.contains(i)) {
                let mut moved = with_hashes.clone();
                moved[0].0 = free;
                moved.sort_by_key(|l| l.0);
                assert!(verify_batch_inclusion(size, &moved, &proof, &root).is_err());
            }
            if !proof.is_empty() {
                assert!(matches!(
                    verify_batch_inclusion(size, &with_hashes, &proof[1..], &root),
                    Err(VerifyError::WrongProofLength { .. })
                ));
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert!(matches!(
                verify_batch_inclusion(size, &with_hashes, &longer, &root),
                Err(VerifyError::WrongProofLength { .. })
            ));
        }
        // Out of order, repeated, beyond the tree, or no leaves at all.
        let l = leaf_hash(b"a");
        for leaves in [
            vec![(1, l), (0, l)],
            vec![(0, l), (0, l)],
            vec![(4, l)],
            vec![],
        ] {
            assert_eq!(
                root_from_batch_proof(4, &leaves, &[]),
                Err(VerifyError::BatchLeavesOutOfOrder { size: 4 })
            );
        }
        // A run of 500 leaves in a tree of 1000 needs a handful of hashes.
        assert!(batch_proof_len(&(500..1000).collect::<Vec<_>>(), 1000).unwrap() <= 2 * 10);
    }

    #[test]
    fn single_leaf_tree() {
        let l = leaf_hash(b"a");
        assert_eq!(verify_inclusion(0, 1, &l, &[], &l), Ok(()));
        assert!(matches!(
            verify_inclusion(0, 1, &l, &[l], &l),
            Err(VerifyError::WrongProofLength {
                expected: 0,
                got: 1
            })
        ));
        assert_eq!(
            verify_inclusion(0, 0, &l, &[], &l),
            Err(VerifyError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(verify_consistency(1, 1, &l, &l, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 0, &l, &l, &[]),
            Err(VerifyError::EmptyFirstTree)
        );
        assert_eq!(
            verify_consistency(2, 1, &l, &l, &[]),
            Err(VerifyError::SizesOutOfOrder {
                first: 2,
                second: 1
            })
        );
    }
}
