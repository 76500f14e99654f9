//! Generation and verification against a naive recursive reference (MTH,
//! PATH and PROOF written straight from RFC 6962 §2.1 / RFC 9162 §2.1), for
//! every index and size up to 300, random pairs up to 5,000 leaves, and random
//! sizes up to 2^40 (and a few near 2^64) through a synthetic subtree source.
//! Tampered proofs must fail.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::OnceLock;

use proptest::prelude::*;
use veritrail::merkle::{
    Hash, MemoryTree, NodeId, ProofError, SubtreeSource, consistency_proof, consistency_proof_len,
    empty_root, inclusion_proof, inclusion_proof_len, leaf_hash, node_hash, tree_root,
    verify_consistency, verify_inclusion,
};

// ---------------------------------------------------------------------------
// The reference, straight from the RFC. `mth(lo, hi)` is MTH(D[lo:hi]).

/// k: the largest power of two smaller than n (n > 1).
fn rfc_k(n: u64) -> u64 {
    let mut k: u64 = 1;
    while k.checked_mul(2).is_some_and(|d| d < n) {
        k *= 2;
    }
    k
}

/// MTH(D[lo:hi]) over real leaf hashes, memoised (the leaves never change).
struct RealMth<'a> {
    leaves: &'a [Hash],
    memo: RefCell<HashMap<(u64, u64), Hash>>,
}

impl<'a> RealMth<'a> {
    fn new(leaves: &'a [Hash]) -> Self {
        RealMth {
            leaves,
            memo: RefCell::new(HashMap::new()),
        }
    }

    fn mth(&self, lo: u64, hi: u64) -> Hash {
        if let Some(h) = self.memo.borrow().get(&(lo, hi)) {
            return *h;
        }
        let h = match hi - lo {
            0 => empty_root(),
            1 => self.leaves[lo as usize],
            n => {
                let k = rfc_k(n);
                node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
            }
        };
        self.memo.borrow_mut().insert((lo, hi), h);
        h
    }
}

/// PATH(m, D[lo:hi]), m counted from lo (RFC 9162 §2.1.3.1).
fn ref_path(m: u64, lo: u64, hi: u64, mth: &dyn Fn(u64, u64) -> Hash) -> Vec<Hash> {
    let n = hi - lo;
    if n == 1 {
        return vec![];
    }
    let k = rfc_k(n);
    if m < k {
        let mut p = ref_path(m, lo, lo + k, mth);
        p.push(mth(lo + k, hi));
        p
    } else {
        let mut p = ref_path(m - k, lo + k, hi, mth);
        p.push(mth(lo, lo + k));
        p
    }
}

/// SUBPROOF(m, D[lo:hi], b), m counted from lo (RFC 9162 §2.1.4.1).
fn ref_subproof(m: u64, lo: u64, hi: u64, b: bool, mth: &dyn Fn(u64, u64) -> Hash) -> Vec<Hash> {
    let n = hi - lo;
    if m == n {
        return if b { vec![] } else { vec![mth(lo, hi)] };
    }
    let k = rfc_k(n);
    if m <= k {
        let mut p = ref_subproof(m, lo, lo + k, b, mth);
        p.push(mth(lo + k, hi));
        p
    } else {
        let mut p = ref_subproof(m - k, lo + k, hi, false, mth);
        p.push(mth(lo, lo + k));
        p
    }
}

/// PROOF(m, D[0:n]) for 0 < m <= n.
fn ref_proof(m: u64, n: u64, mth: &dyn Fn(u64, u64) -> Hash) -> Vec<Hash> {
    ref_subproof(m, 0, n, true, mth)
}

// ---------------------------------------------------------------------------
// Tampering: every variant of a valid proof must be rejected.

fn flip_bit(h: &Hash, bit: usize) -> Hash {
    let mut b = h.0;
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    Hash(b)
}

/// Proofs that differ from `proof`: each element with a bit flipped, one hash
/// added at either end, one removed at either end, two swapped.
fn tampered(proof: &[Hash], salt: usize) -> Vec<Vec<Hash>> {
    let extra = leaf_hash(b"extra");
    let mut out = Vec::new();
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i] = flip_bit(&p[i], (i * 37).wrapping_add(salt));
        out.push(p);
    }
    let mut p = proof.to_vec();
    p.push(extra);
    out.push(p);
    let mut p = vec![proof.first().copied().unwrap_or(extra)];
    p.extend_from_slice(proof);
    out.push(p);
    if !proof.is_empty() {
        out.push(proof[1..].to_vec());
        out.push(proof[..proof.len() - 1].to_vec());
    }
    if proof.len() >= 2 && proof[0] != proof[1] {
        let mut p = proof.to_vec();
        p.swap(0, 1);
        out.push(p);
    }
    out
}

/// `root(size)` gives the root of the tree of that size, `leaf(i)` leaf i.
fn check_inclusion_tampering(
    index: u64,
    size: u64,
    proof: &[Hash],
    leaf: &dyn Fn(u64) -> Hash,
    root: &dyn Fn(u64) -> Hash,
) {
    let (l, r) = (leaf(index), root(size));
    verify_inclusion(index, size, &l, proof, &r).unwrap();
    for p in tampered(proof, index as usize) {
        assert!(
            verify_inclusion(index, size, &l, &p, &r).is_err(),
            "tampered inclusion proof accepted: index {index} size {size}"
        );
    }
    assert!(verify_inclusion(index, size, &flip_bit(&l, 3), proof, &r).is_err());
    assert!(verify_inclusion(index, size, &l, proof, &flip_bit(&r, 200)).is_err());
    // The proof does not prove another leaf (with that leaf's hash) ...
    for other in [index.wrapping_sub(1), index.wrapping_add(1), index ^ 2] {
        if other < size && other != index {
            assert!(
                verify_inclusion(other, size, &leaf(other), proof, &r).is_err(),
                "index {index} proof accepted for leaf {other} of {size}"
            );
            assert!(verify_inclusion(other, size, &l, proof, &r).is_err());
        }
    }
    // ... nor the leaf in a tree of another size (with that tree's root).
    for other in [size - 1, size.saturating_add(1), size.saturating_mul(2)] {
        if other > index && other != size {
            assert!(
                verify_inclusion(index, other, &l, proof, &root(other)).is_err(),
                "proof for ({index}, {size}) accepted for size {other}"
            );
        }
    }
}

fn check_consistency_tampering(
    first: u64,
    second: u64,
    proof: &[Hash],
    root: &dyn Fn(u64) -> Hash,
) {
    let (r1, r2) = (root(first), root(second));
    verify_consistency(first, second, &r1, &r2, proof).unwrap();
    for p in tampered(proof, first as usize) {
        assert!(
            verify_consistency(first, second, &r1, &r2, &p).is_err(),
            "tampered consistency proof accepted: {first} -> {second}"
        );
    }
    assert!(verify_consistency(first, second, &flip_bit(&r1, 9), &r2, proof).is_err());
    assert!(verify_consistency(first, second, &r1, &flip_bit(&r2, 100), proof).is_err());
    if first != second {
        assert!(verify_consistency(first, second, &r2, &r1, proof).is_err());
        assert!(verify_consistency(second, first, &r2, &r1, proof).is_err());
    }
    for other in [first - 1, first.saturating_add(1)] {
        if other > 0 && other <= second && other != first {
            assert!(
                verify_consistency(other, second, &root(other), &r2, proof).is_err(),
                "proof {first} -> {second} accepted from {other}"
            );
        }
    }
    for other in [second - 1, second.saturating_add(1)] {
        if other >= first && other != second {
            assert!(
                verify_consistency(first, other, &r1, &root(other), proof).is_err(),
                "proof {first} -> {second} accepted to {other}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Exhaustive: every pair up to 300 leaves.

fn test_leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Counts source calls, to check every proof is one batch.
struct Counting<'a> {
    inner: &'a MemoryTree,
    calls: Cell<usize>,
}

impl SubtreeSource for Counting<'_> {
    type Error = <MemoryTree as SubtreeSource>::Error;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        self.calls.set(self.calls.get() + 1);
        self.inner.subtree_hashes(nodes)
    }
}

#[test]
fn every_pair_up_to_300_matches_the_reference() {
    const MAX: u64 = 300;
    let leaves = test_leaves(MAX);
    let tree: MemoryTree = leaves.iter().copied().collect();
    let reference = RealMth::new(&leaves);
    let mth = |lo, hi| reference.mth(lo, hi);
    let src = Counting {
        inner: &tree,
        calls: Cell::new(0),
    };
    let root = |n: u64| reference.mth(0, n);

    for n in 1..=MAX {
        assert_eq!(tree_root(n, &src).unwrap(), root(n), "root of {n}");
        for m in 0..n {
            src.calls.set(0);
            let got = inclusion_proof(m, n, &src).unwrap();
            assert_eq!(got, ref_path(m, 0, n, &mth), "PATH({m}, {n})");
            assert_eq!(src.calls.get(), usize::from(n > 1), "one batch per proof");
            assert_eq!(Some(got.len()), inclusion_proof_len(m, n));
            verify_inclusion(m, n, &leaves[m as usize], &got, &root(n)).unwrap();
            if n <= 100 {
                check_inclusion_tampering(m, n, &got, &|i| leaves[i as usize], &root);
            }
        }
        for m in 1..=n {
            src.calls.set(0);
            let got = consistency_proof(m, n, &src).unwrap();
            assert_eq!(got, ref_proof(m, n, &mth), "PROOF({m}, {n})");
            assert_eq!(src.calls.get(), usize::from(m < n), "one batch per proof");
            assert_eq!(Some(got.len()), consistency_proof_len(m, n));
            verify_consistency(m, n, &root(m), &root(n), &got).unwrap();
            if n <= 100 {
                check_consistency_tampering(m, n, &got, &root);
            }
        }
    }
}

#[test]
fn invalid_ranges_are_errors() {
    let tree: MemoryTree = test_leaves(10).into_iter().collect();
    assert!(matches!(
        inclusion_proof(10, 10, &tree),
        Err(ProofError::InvalidRange {
            first: 10,
            second: 10,
            ..
        })
    ));
    assert!(matches!(
        inclusion_proof(0, 0, &tree),
        Err(ProofError::InvalidRange { .. })
    ));
    assert!(matches!(
        consistency_proof(0, 5, &tree),
        Err(ProofError::InvalidRange { .. })
    ));
    assert!(matches!(
        consistency_proof(6, 5, &tree),
        Err(ProofError::InvalidRange { .. })
    ));
    assert_eq!(consistency_proof(5, 5, &tree).unwrap(), vec![]);
    assert_eq!(tree_root(0, &tree).unwrap(), empty_root());
    // A source that lacks the nodes reports it instead of panicking.
    assert!(matches!(
        inclusion_proof(3, 11, &tree),
        Err(ProofError::Source(_))
    ));
    let msg = inclusion_proof(10, 10, &tree).unwrap_err().to_string();
    assert!(msg.contains("below the tree size"), "{msg}");
}

/// A source that returns the wrong number of hashes is caught.
struct Short;
impl SubtreeSource for Short {
    type Error = Infallible;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Infallible> {
        Ok(vec![empty_root(); nodes.len() - 1])
    }
}

#[test]
fn misbehaving_source_is_an_error() {
    assert!(matches!(
        tree_root(3, &Short),
        Err(ProofError::SourceMismatch {
            requested: 2,
            returned: 1
        })
    ));
    assert!(matches!(
        inclusion_proof(0, 4, &Short),
        Err(ProofError::SourceMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------
// Random pairs up to 5,000 leaves.

const BIG: u64 = 5_000;

/// Twice BIG leaves, so the roots of the doubled sizes tampering tries exist.
fn big_tree() -> &'static (Vec<Hash>, MemoryTree) {
    static TREE: OnceLock<(Vec<Hash>, MemoryTree)> = OnceLock::new();
    TREE.get_or_init(|| {
        let leaves = test_leaves(2 * BIG);
        let tree = leaves.iter().copied().collect();
        (leaves, tree)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_pairs_up_to_5000(n in 1..=BIG, a in any::<u64>(), b in any::<u64>()) {
        let (leaves, tree) = big_tree();
        let reference = RealMth::new(&leaves[..n as usize]);
        let mth = |lo, hi| reference.mth(lo, hi);
        let root = |s: u64| {
            if s <= n {
                reference.mth(0, s)
            } else {
                tree_root(s, tree).unwrap()
            }
        };
        let m = a % n;
        let got = inclusion_proof(m, n, tree).unwrap();
        prop_assert_eq!(&got, &ref_path(m, 0, n, &mth));
        check_inclusion_tampering(m, n, &got, &|i| leaves[i as usize], &root);

        let first = 1 + b % n;
        let got = consistency_proof(first, n, tree).unwrap();
        prop_assert_eq!(&got, &ref_proof(first, n, &mth));
        check_consistency_tampering(first, n, &got, &root);
    }
}

// ---------------------------------------------------------------------------
// Huge trees through a synthetic source.
//
// Leaf i hashes to H(i). A perfect subtree that holds one of the "special"
// leaves has its true hash, computed from its children (a path of O(level)
// nodes per special leaf, memoised); every other perfect subtree gets an
// opaque, distinct hash derived from (level, index). The verifier only ever
// recomputes ancestors of the leaf it checks (inclusion) or of the last leaf
// of the old tree (consistency), so making those leaves special keeps every
// hash the verifier recomputes consistent with the source, while the rest of
// a 2^40-leaf tree costs nothing. The reference below takes perfect subtrees
// from the same source as its base case and applies the RFC recursion on top.

struct Synthetic {
    size: u64,
    special: Vec<u64>,
    memo: RefCell<HashMap<NodeId, Hash>>,
    calls: Cell<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("node {0:?} is not complete in the tree")]
struct Incomplete(NodeId);

impl Synthetic {
    fn new(size: u64, special: &[u64]) -> Self {
        Synthetic {
            size,
            special: special.to_vec(),
            memo: RefCell::new(HashMap::new()),
            calls: Cell::new(0),
        }
    }

    fn node(&self, n: NodeId) -> Hash {
        if n.level == 0 {
            return leaf_hash(&n.index.to_be_bytes());
        }
        let holds_special = self
            .special
            .iter()
            .any(|&s| s.checked_shr(u32::from(n.level)).unwrap_or(0) == n.index);
        if !holds_special {
            let mut tag = b"opaque".to_vec();
            tag.push(n.level);
            tag.extend_from_slice(&n.index.to_be_bytes());
            return leaf_hash(&tag);
        }
        if let Some(h) = self.memo.borrow().get(&n) {
            return *h;
        }
        let h = node_hash(
            &self.node(NodeId::new(n.level - 1, 2 * n.index)),
            &self.node(NodeId::new(n.level - 1, 2 * n.index + 1)),
        );
        self.memo.borrow_mut().insert(n, h);
        h
    }

    /// Reference MTH(D[lo:hi]): the RFC recursion, with perfect aligned
    /// subtrees taken from the source as the base case.
    fn mth(&self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.node(NodeId::new(n.trailing_zeros() as u8, lo / n));
        }
        let k = rfc_k(n);
        node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
    }
}

impl SubtreeSource for Synthetic {
    type Error = Incomplete;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Incomplete> {
        self.calls.set(self.calls.get() + 1);
        nodes
            .iter()
            .map(|&n| match n.leaf_range() {
                Some(r) if r.end <= self.size => Ok(self.node(n)),
                _ => Err(Incomplete(n)),
            })
            .collect()
    }
}

fn check_huge(size: u64, index: u64, first: u64) {
    let src = Synthetic::new(size, &[index, first - 1, size - 1]);
    let mth = |lo, hi| src.mth(lo, hi);
    let root = src.mth(0, size);
    assert_eq!(tree_root(size, &src).unwrap(), root, "root of {size}");

    src.calls.set(0);
    let path = inclusion_proof(index, size, &src).unwrap();
    assert_eq!(src.calls.get(), usize::from(size > 1));
    assert_eq!(
        path,
        ref_path(index, 0, size, &mth),
        "PATH({index}, {size})"
    );
    let leaf = |i: u64| leaf_hash(&i.to_be_bytes());
    // Only the roots of `size` and `first` are consistent with the special
    // leaves, so tampering checks other sizes with roots from their own
    // sources.
    let root_of = |s: u64| {
        let other = Synthetic::new(s, &[index, first - 1, s - 1]);
        tree_root(s, &other).unwrap()
    };
    check_inclusion_tampering(index, size, &path, &leaf, &root_of);

    let proof = consistency_proof(first, size, &src).unwrap();
    assert_eq!(
        proof,
        ref_proof(first, size, &mth),
        "PROOF({first}, {size})"
    );
    let first_root = tree_root(first, &src).unwrap();
    assert_eq!(first_root, src.mth(0, first));
    verify_consistency(first, size, &first_root, &root, &proof).unwrap();
    let root_of = |s: u64| {
        if s == first || s == size {
            tree_root(s, &src).unwrap()
        } else {
            let other = Synthetic::new(s.max(size), &[s - 1, size - 1]);
            tree_root(s, &other).unwrap()
        }
    };
    check_consistency_tampering(first, size, &proof, &root_of);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_huge_trees(size in 2..=(1u64 << 40), a in any::<u64>(), b in any::<u64>()) {
        check_huge(size, a % size, 1 + b % size);
    }
}

#[test]
fn huge_edge_sizes() {
    let sizes = [
        1u64 << 40,
        (1 << 40) - 1,
        (1 << 40) + 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    for size in sizes {
        for index in [0, 1, size / 2, size - 2, size - 1] {
            for first in [1, 2, size / 2, size - 1, size] {
                check_huge(size, index, first.max(1));
            }
        }
    }
}
