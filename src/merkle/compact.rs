//! The right edge of a growing tree ("compact range"): what an appender keeps
//! to add leaves and compute roots in O(log n) memory (RFC 9162 §2.1.2).
//!
//! Invariant: `hashes` holds one perfect-subtree root per set bit of `size`,
//! largest (leftmost) subtree first, so `hashes.len() == size.count_ones()`.

use super::hash::{Hash, empty_root, node_hash};
use super::proof::NodeId;

/// The right edge of a tree: one perfect-subtree root per set bit of `size`,
/// largest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

/// Why a compact range could not be built or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactRangeError {
    /// `from_parts` got a number of hashes other than the number of set bits
    /// of the size.
    #[error("a tree of size {size} has {expected} right-edge hashes, got {got}")]
    WrongHashCount {
        /// The size given.
        size: u64,
        /// `size.count_ones()`.
        expected: usize,
        /// How many hashes were given.
        got: usize,
    },
    /// The range already covers `u64::MAX` leaves.
    #[error("the tree is full: it already holds u64::MAX leaves")]
    Full,
}

impl CompactRange {
    /// The right edge of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a right edge from its size and hashes (as stored), largest
    /// subtree first. The hashes are taken on trust: check [`root`](Self::root)
    /// against a signed checkpoint before appending to it.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(CompactRangeError::WrongHashCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(CompactRange { size, hashes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The node each hash of [`hashes`](Self::hashes) is the root of, in the
    /// same order.
    pub fn nodes(&self) -> Vec<NodeId> {
        super::proof::tree_root_nodes(self.size)
    }

    /// Appends one leaf hash.
    ///
    /// # Panics
    ///
    /// If the range already holds `u64::MAX` leaves; use
    /// [`try_append`](Self::try_append) where the size comes from storage.
    pub fn append(&mut self, leaf: Hash) {
        if self.try_append(leaf).is_err() {
            panic!("CompactRange::append: the tree already holds u64::MAX leaves");
        }
    }

    /// Appends one leaf hash, failing when the range already holds `u64::MAX`
    /// leaves (the range is then unchanged).
    pub fn try_append(&mut self, leaf: Hash) -> Result<(), CompactRangeError> {
        let new_size = self.size.checked_add(1).ok_or(CompactRangeError::Full)?;
        // RFC 9162 §2.1.2: each trailing 1 bit of the old size is a subtree of
        // the same height as the one being built; merge them.
        let mut h = leaf;
        for _ in 0..self.size.trailing_ones() {
            match self.hashes.pop() {
                Some(left) => h = node_hash(&left, &h),
                // Unreachable while the invariant holds.
                None => break,
            }
        }
        self.hashes.push(h);
        self.size = new_size;
        Ok(())
    }

    /// MTH of all appended leaves; [`empty_root`] for size 0.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(&last) => it.fold(last, |acc, left| node_hash(left, &acc)),
        }
    }
}

impl Extend<Hash> for CompactRange {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, iter: I) {
        for h in iter {
            self.append(h);
        }
    }
}

/// MTH of a complete list of leaf hashes (RFC 9162 §2.1.2, stack algorithm);
/// [`empty_root`] for no leaves.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for &l in leaves {
        range.append(l);
    }
    range.root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    /// MTH straight from RFC 6962 §2.1.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn appends_match_recursive_mth() {
        let leaves: Vec<Hash> = (0u32..130).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        assert_eq!(range.root(), empty_root());
        for (i, &l) in leaves.iter().enumerate() {
            range.append(l);
            let n = i + 1;
            assert_eq!(range.size(), n as u64);
            assert_eq!(range.hashes().len(), n.count_ones() as usize);
            assert_eq!(range.root(), mth(&leaves[..n]), "size {n}");
            assert_eq!(root_from_leaf_hashes(&leaves[..n]), range.root());
            let again = CompactRange::from_parts(range.size(), range.hashes().to_vec()).unwrap();
            assert_eq!(again, range);
        }
    }

    #[test]
    fn from_parts_checks_hash_count() {
        let h = leaf_hash(b"");
        assert_eq!(
            CompactRange::from_parts(3, vec![h]),
            Err(CompactRangeError::WrongHashCount {
                size: 3,
                expected: 2,
                got: 1
            })
        );
        assert!(CompactRange::from_parts(0, vec![]).is_ok());
    }

    #[test]
    fn full_range_refuses_to_grow() {
        let h = leaf_hash(b"");
        let mut r = CompactRange::from_parts(u64::MAX - 1, vec![h; 63]).unwrap();
        assert_eq!(r.try_append(h), Ok(()));
        assert_eq!(r.hashes().len(), 64);
        assert_eq!(r.try_append(h), Err(CompactRangeError::Full));
        assert_eq!(r.size(), u64::MAX);
    }
}
