//! Proof *generation*: tree roots, inclusion proofs (RFC 9162 §2.1.3.1) and
//! consistency proofs (RFC 9162 §2.1.4.1) computed from the hashes of complete
//! subtrees, wherever those are kept.
//!
//! Every proof is built in three steps: list the leaf ranges whose MTH the
//! proof needs, turn them into the perfect aligned subtrees ([`NodeId`]s) that
//! make them up, fetch all of those in one [`SubtreeSource`] call, then fold.
//! Invariant: only complete subtrees are ever asked for, so a source backed by
//! immutable full tiles (plus the partial tiles of the published size) can
//! answer every request.

use super::hash::{Hash, empty_root, node_hash};

/// A perfect, aligned subtree: MTH(D[index << level .. (index + 1) << level]).
///
/// Level 0 nodes are leaf hashes; the node at level `l` covers `2^l` leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf hash). At most 63 for a real node.
    pub level: u8,
    /// Position among the nodes of that level, counted from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level` and `index`.
    pub const fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }

    /// The leaf hash of leaf `index`.
    pub const fn leaf(index: u64) -> NodeId {
        NodeId { level: 0, index }
    }

    /// The leaves `[start, end)` the node covers, or `None` when they do not fit
    /// in `u64` (no tree can contain such a node).
    pub fn leaf_range(&self) -> Option<std::ops::Range<u64>> {
        let width = 1u64.checked_shl(u32::from(self.level))?;
        let start = self.index.checked_mul(width)?;
        let end = start.checked_add(width)?;
        Some(start..end)
    }
}

/// Hands out hashes of complete subtrees (e.g. read from stored tiles).
///
/// Batch call: the proof code makes one call per proof, listing every node it
/// needs, and expects the hashes back in the order asked. It only asks for
/// nodes that are complete within the tree size it was given.
pub trait SubtreeSource {
    /// What a failed read reports.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The hashes of `nodes`, in the same order.
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;

    /// MTH(D[start:end]) of a range that is not one perfect subtree, if the
    /// source kept it from an earlier proof ([`SubtreeSource::keep_range`]).
    /// Such ranges end at a tree's right edge, and every proof of that size
    /// folds the same few of them. Keeps nothing by default.
    fn kept_range(&self, _start: u64, _end: u64) -> Option<Hash> {
        None
    }

    /// Offers MTH(D[start:end]), just folded from subtrees the source gave,
    /// for [`SubtreeSource::kept_range`]. A source that keeps it bounds what it keeps.
    fn keep_range(&self, _start: u64, _end: u64, _hash: Hash) {}
}

impl<S: SubtreeSource + ?Sized> SubtreeSource for &S {
    type Error = S::Error;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        (**self).subtree_hashes(nodes)
    }
    fn kept_range(&self, start: u64, end: u64) -> Option<Hash> {
        (**self).kept_range(start, end)
    }
    fn keep_range(&self, start: u64, end: u64, hash: Hash) {
        (**self).keep_range(start, end, hash)
    }
}

/// Why a root or proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProofError<E> {
    /// The sizes or index asked for describe no proof. For an inclusion proof
    /// `first` is the leaf index and `second` the tree size; for a consistency
    /// proof they are the two tree sizes.
    #[error("no such proof for ({first}, {second}): {reason}")]
    InvalidRange {
        /// The leaf index or the first (older) tree size.
        first: u64,
        /// The tree size or the second (newer) tree size.
        second: u64,
        /// What the arguments must satisfy.
        reason: &'static str,
    },
    /// The subtree source failed to read the hashes.
    #[error("reading subtree hashes failed")]
    Source(#[source] E),
    /// The subtree source broke its contract and returned the wrong number of
    /// hashes.
    #[error("subtree source returned {returned} hashes for {requested} nodes")]
    SourceMismatch {
        /// How many nodes were asked for.
        requested: usize,
        /// How many hashes came back.
        returned: usize,
    },
}

/// Largest power of two strictly below `n` (RFC 6962 §2.1 `k`); `n >= 2`.
pub(super) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The nodes a proof needs and how they group into proof elements.
#[derive(Default)]
struct Plan {
    nodes: Vec<NodeId>,
    /// Number of nodes folded into each output hash, in output order.
    groups: Vec<usize>,
    /// The leaf range of each output hash.
    ranges: Vec<(u64, u64)>,
}

impl Plan {
    /// Adds one output element, MTH(D[start:end]).
    ///
    /// The ranges the RFC recursion produces start at a multiple of a power of
    /// two at least as large as their length, so the RFC split of the range is
    /// a run of maximal aligned perfect subtrees, largest first (specs §4.5).
    fn push_range(&mut self, mut start: u64, end: u64) {
        debug_assert!(start < end);
        let before = self.nodes.len();
        loop {
            let len = end - start;
            let chunk = if len.is_power_of_two() {
                len
            } else {
                split_point(len)
            };
            debug_assert_eq!(start % chunk, 0, "range not aligned");
            let level = chunk.trailing_zeros();
            self.nodes.push(NodeId {
                // trailing_zeros of a u64 is at most 63.
                level: level as u8,
                index: start >> level,
            });
            if chunk == len {
                break;
            }
            start += chunk;
        }
        self.groups.push(self.nodes.len() - before);
        self.ranges.push((start_of(&self.nodes[before]), end));
    }

    /// Fetches every node in one call and folds each group from the right;
    /// a group of several nodes whose hash the source kept is not fetched.
    fn run<S: SubtreeSource + ?Sized>(self, src: &S) -> Result<Vec<Hash>, ProofError<S::Error>> {
        if self.nodes.is_empty() {
            return Ok(Vec::new());
        }
        let kept: Vec<Option<Hash>> = self
            .groups
            .iter()
            .zip(&self.ranges)
            .map(|(&n, &(start, end))| {
                if n > 1 {
                    src.kept_range(start, end)
                } else {
                    None
                }
            })
            .collect();
        let mut wanted = Vec::with_capacity(self.nodes.len());
        let mut rest = self.nodes.as_slice();
        for (&n, known) in self.groups.iter().zip(&kept) {
            let (group, tail) = rest.split_at(n);
            rest = tail;
            if known.is_none() {
                wanted.extend_from_slice(group);
            }
        }
        let hashes = if wanted.is_empty() {
            Vec::new()
        } else {
            src.subtree_hashes(&wanted).map_err(ProofError::Source)?
        };
        if hashes.len() != wanted.len() {
            return Err(ProofError::SourceMismatch {
                requested: wanted.len(),
                returned: hashes.len(),
            });
        }
        let mut out = Vec::with_capacity(self.groups.len());
        let mut rest = hashes.as_slice();
        for ((n, known), (start, end)) in self.groups.into_iter().zip(kept).zip(self.ranges) {
            if let Some(h) = known {
                out.push(h);
                continue;
            }
            let (group, tail) = rest.split_at(n);
            rest = tail;
            // specs §4.5: h = last; for p in reversed(rest): h = H(p, h).
            let mut it = group.iter().rev();
            if let Some(&last) = it.next() {
                let h = it.fold(last, |acc, left| node_hash(left, &acc));
                if n > 1 {
                    src.keep_range(start, end, h);
                }
                out.push(h);
            }
        }
        Ok(out)
    }
}

/// The first leaf a node covers (nodes a plan holds fit in `u64`).
fn start_of(node: &NodeId) -> u64 {
    node.index << node.level
}

/// The root of the tree of `size` leaves, `MTH(D[0:size])` (RFC 6962 §2.1);
/// [`empty_root`] for size 0, without asking the source.
pub fn tree_root<S: SubtreeSource + ?Sized>(
    size: u64,
    src: &S,
) -> Result<Hash, ProofError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    let mut plan = Plan::default();
    plan.push_range(0, size);
    plan.run(src)?.pop().ok_or(ProofError::SourceMismatch {
        requested: 1,
        returned: 0,
    })
}

/// The nodes [`tree_root`] asks for: one perfect subtree per set bit of
/// `size`, largest (leftmost) first.
pub fn tree_root_nodes(size: u64) -> Vec<NodeId> {
    let mut plan = Plan::default();
    if size > 0 {
        plan.push_range(0, size);
    }
    plan.nodes
}

/// The leaf ranges of PATH(index, D[0:size]), leaf sibling first
/// (RFC 9162 §2.1.3.1).
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let (mut lo, mut hi) = (0, size);
    let mut top_down = Vec::with_capacity(64);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            top_down.push((lo + k, hi));
            hi = lo + k;
        } else {
            top_down.push((lo, lo + k));
            lo += k;
        }
    }
    top_down.reverse();
    top_down
}

/// The leaf ranges of PROOF(first, D[0:second]) for `0 < first < second`
/// (RFC 9162 §2.1.4.1).
fn consistency_ranges(first: u64, second: u64) -> Vec<(u64, u64)> {
    let (mut lo, mut hi) = (0, second);
    // SUBPROOF's flag: still on the left spine, i.e. D[lo:hi] could be the
    // whole old tree, whose root the verifier already has.
    let mut on_left_spine = true;
    let mut top_down = Vec::with_capacity(65);
    while first != hi {
        let k = split_point(hi - lo);
        if first <= lo + k {
            top_down.push((lo + k, hi));
            hi = lo + k;
        } else {
            top_down.push((lo, lo + k));
            lo += k;
            on_left_spine = false;
        }
    }
    if !on_left_spine {
        top_down.push((lo, hi));
    }
    top_down.reverse();
    top_down
}

fn plan_for(ranges: &[(u64, u64)]) -> Plan {
    let mut plan = Plan::default();
    for &(a, b) in ranges {
        plan.push_range(a, b);
    }
    plan
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size`
/// leaves, leaf sibling first, root child last (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<S: SubtreeSource + ?Sized>(
    index: u64,
    size: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::InvalidRange {
            first: index,
            second: size,
            reason: "an inclusion proof needs a leaf index below the tree size",
        });
    }
    plan_for(&inclusion_ranges(index, size)).run(src)
}

/// The leaf hash of leaf `index` and its inclusion proof in the tree of
/// `size` leaves, fetched in the same single call to the source (a server
/// answers both; [`inclusion_proof`] alone is the audit path).
pub fn inclusion_proof_with_leaf<S: SubtreeSource + ?Sized>(
    index: u64,
    size: u64,
    src: &S,
) -> Result<(Hash, Vec<Hash>), ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::InvalidRange {
            first: index,
            second: size,
            reason: "an inclusion proof needs a leaf index below the tree size",
        });
    }
    let mut plan = plan_for(&inclusion_ranges(index, size));
    // The leaf itself is one more group of one node, folded to itself.
    plan.push_range(index, index + 1);
    let mut out = plan.run(src)?;
    let leaf = out.pop().ok_or(ProofError::SourceMismatch {
        requested: 1,
        returned: 0,
    })?;
    Ok((leaf, out))
}

/// The nodes [`inclusion_proof`] asks its source for, in the order asked.
/// Empty when `index >= size`.
pub fn inclusion_proof_nodes(index: u64, size: u64) -> Vec<NodeId> {
    if index >= size {
        return Vec::new();
    }
    plan_for(&inclusion_ranges(index, size)).nodes
}

/// The consistency proof that the tree of `first` leaves is a prefix of the
/// tree of `second` leaves (RFC 9162 §2.1.4.1).
///
/// Needs `0 < first <= second`; `first == second` gives `[]`.
pub fn consistency_proof<S: SubtreeSource + ?Sized>(
    first: u64,
    second: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if first == 0 || first > second {
        return Err(ProofError::InvalidRange {
            first,
            second,
            reason: "a consistency proof needs 0 < first size <= second size",
        });
    }
    if first == second {
        return Ok(Vec::new());
    }
    plan_for(&consistency_ranges(first, second)).run(src)
}

/// The nodes [`consistency_proof`] asks its source for, in the order asked.
/// Empty unless `0 < first < second`.
pub fn consistency_proof_nodes(first: u64, second: u64) -> Vec<NodeId> {
    if first == 0 || first >= second {
        return Vec::new();
    }
    plan_for(&consistency_ranges(first, second)).nodes
}

/// The leaf ranges of a batch inclusion proof of `leaves` (strictly
/// increasing, inside `[lo, hi)`): walking the RFC 6962 recursion from
/// `D[lo:hi]`, every subtree that holds none of the leaves while its parent
/// holds some, left to right. The verifier (`merkle::root_from_batch_proof`)
/// walks the same recursion.
fn batch_ranges(leaves: &[u64], lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    if leaves.is_empty() {
        out.push((lo, hi));
        return;
    }
    if hi - lo == 1 {
        return;
    }
    let mid = lo + split_point(hi - lo);
    let cut = leaves.partition_point(|&l| l < mid);
    batch_ranges(&leaves[..cut], lo, mid, out);
    batch_ranges(&leaves[cut..], mid, hi, out);
}

/// One proof that every leaf of `leaves` (strictly increasing, each below
/// `size`) is in the tree of `size` leaves: the hashes of the subtrees
/// [`batch_ranges`] lists, fetched in one call. For a run of `m`
/// consecutive leaves it holds at most about `2·log2(size)` hashes, where
/// `m` separate inclusion proofs hold `m·log2(size)`.
pub fn batch_inclusion_proof<S: SubtreeSource + ?Sized>(
    leaves: &[u64],
    size: u64,
    src: &S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let sorted = leaves.windows(2).all(|w| w[0] < w[1]);
    match leaves.last() {
        Some(&last) if sorted && last < size => {}
        _ => {
            return Err(ProofError::InvalidRange {
                first: leaves.first().copied().unwrap_or(0),
                second: size,
                reason: "a batch inclusion proof needs strictly increasing leaf indexes below the tree size",
            });
        }
    }
    let mut ranges = Vec::with_capacity(2 * 64);
    batch_ranges(leaves, 0, size, &mut ranges);
    plan_for(&ranges).run(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for n in 2..=4096u64 {
            let k = split_point(n);
            assert!(k.is_power_of_two() && k < n && n <= 2 * k, "n={n} k={k}");
        }
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point((1 << 63) + 1), 1 << 63);
        assert_eq!(split_point(1 << 63), 1 << 62);
    }

    #[test]
    fn right_edge_ranges_decompose_into_aligned_subtrees() {
        // PATH(0, 7) ends with MTH(D[4:7]) = H(node(1,2), node(0,6)).
        assert_eq!(
            inclusion_proof_nodes(0, 7),
            vec![
                NodeId::new(0, 1),
                NodeId::new(1, 1),
                NodeId::new(1, 2),
                NodeId::new(0, 6)
            ]
        );
        assert_eq!(
            tree_root_nodes(13),
            vec![NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]
        );
        assert_eq!(tree_root_nodes(u64::MAX).len(), 64);
        assert!(tree_root_nodes(0).is_empty());
    }

    #[test]
    fn the_leaf_comes_with_its_path_from_one_call() {
        struct Counting(std::cell::Cell<usize>);
        impl SubtreeSource for Counting {
            type Error = std::convert::Infallible;
            fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
                self.0.set(self.0.get() + 1);
                let tree: Vec<Hash> = (0..1000u64)
                    .map(|i| super::super::leaf_hash(&i.to_be_bytes()))
                    .collect();
                Ok(nodes
                    .iter()
                    .map(|n| {
                        let r = n.leaf_range().unwrap();
                        super::super::root_from_leaf_hashes(&tree[r.start as usize..r.end as usize])
                    })
                    .collect())
            }
        }
        let src = Counting(std::cell::Cell::new(0));
        for (index, size) in [(0, 1), (0, 7), (6, 7), (5, 13), (511, 1000), (999, 1000)] {
            let calls = src.0.get();
            let (leaf, path) = inclusion_proof_with_leaf(index, size, &src).unwrap();
            assert_eq!(src.0.get(), calls + 1);
            assert_eq!(leaf, super::super::leaf_hash(&index.to_be_bytes()));
            assert_eq!(path, inclusion_proof(index, size, &src).unwrap());
        }
        assert!(inclusion_proof_with_leaf(7, 7, &src).is_err());
    }

    #[test]
    fn kept_right_edge_ranges_give_the_same_proofs_with_fewer_nodes() {
        use std::cell::RefCell;
        use std::collections::HashMap;
        let leaves: Vec<Hash> = (0..1000u64)
            .map(|i| super::super::leaf_hash(&i.to_be_bytes()))
            .collect();
        let mth =
            |a: u64, b: u64| super::super::root_from_leaf_hashes(&leaves[a as usize..b as usize]);
        // Answers from the leaves, keeps every range it is offered, and
        // counts the nodes it is asked for.
        struct Keeping<'a> {
            mth: &'a dyn Fn(u64, u64) -> Hash,
            kept: RefCell<HashMap<(u64, u64), Hash>>,
            asked: RefCell<usize>,
        }
        impl SubtreeSource for Keeping<'_> {
            type Error = std::convert::Infallible;
            fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
                *self.asked.borrow_mut() += nodes.len();
                Ok(nodes
                    .iter()
                    .map(|n| {
                        let r = n.leaf_range().unwrap();
                        (self.mth)(r.start, r.end)
                    })
                    .collect())
            }
            fn kept_range(&self, start: u64, end: u64) -> Option<Hash> {
                self.kept.borrow().get(&(start, end)).copied()
            }
            fn keep_range(&self, start: u64, end: u64, hash: Hash) {
                self.kept.borrow_mut().insert((start, end), hash);
            }
        }
        let src = Keeping {
            mth: &mth,
            kept: RefCell::default(),
            asked: RefCell::new(0),
        };
        let mut tree = super::super::MemoryTree::new();
        for &leaf in &leaves {
            tree.push(leaf);
        }
        for size in [7u64, 13, 999, 1000] {
            for index in [0, size / 3, size - 1] {
                for _ in 0..2 {
                    let (leaf, path) = inclusion_proof_with_leaf(index, size, &src).unwrap();
                    assert_eq!(leaf, leaves[index as usize]);
                    assert_eq!(
                        path,
                        inclusion_proof(index, size, &tree).unwrap(),
                        "{index} {size}"
                    );
                }
            }
            for first in [1, size / 2, size - 1] {
                assert_eq!(
                    consistency_proof(first, size, &src).unwrap(),
                    consistency_proof(first, size, &tree).unwrap(),
                    "{first} {size}"
                );
            }
        }
        // Only ranges that are not one subtree were kept, each ending at a
        // tree size, each the MTH of its leaves.
        let kept = src.kept.borrow();
        assert!(!kept.is_empty());
        for (&(a, b), h) in kept.iter() {
            assert!(
                [7, 13, 999, 1000].contains(&b) && !(b - a).is_power_of_two(),
                "{a} {b}"
            );
            assert_eq!(*h, mth(a, b));
        }
        // A repeated proof of a size whose right edge is kept fetches fewer nodes.
        let asked = *src.asked.borrow();
        inclusion_proof(0, 999, &src).unwrap();
        assert!(*src.asked.borrow() - asked < inclusion_proof_nodes(0, 999).len());
    }

    #[test]
    fn leaf_range_checks_overflow() {
        assert_eq!(NodeId::new(3, 2).leaf_range(), Some(16..24));
        assert_eq!(NodeId::new(63, 1).leaf_range(), None);
        assert_eq!(NodeId::new(64, 0).leaf_range(), None);
        assert_eq!(NodeId::leaf(u64::MAX).leaf_range(), None);
    }
}
