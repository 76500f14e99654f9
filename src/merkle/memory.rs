//! An in-memory tree that keeps every perfect-subtree hash: a
//! [`SubtreeSource`] for tests, benchmarks and small trees.
//!
//! Invariant: `levels[l]` holds the hash of every complete level-`l` node, in
//! order, so `levels[l].len() == len >> l`.

use super::compact::CompactRange;
use super::hash::{Hash, node_hash};
use super::proof::{NodeId, SubtreeSource};

/// In-memory [`SubtreeSource`] over all leaf hashes (tests, small trees).
/// Keeps about two hashes per leaf; every node lookup is O(1).
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    edge: CompactRange,
}

/// A node asked of a [`MemoryTree`] that is not complete in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node:?} is not a complete subtree of this tree of {size} leaves")]
pub struct MissingNode {
    /// The node asked for.
    pub node: NodeId,
    /// The tree's size when asked.
    pub size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.edge.append(leaf);
        let mut h = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(h);
            let n = row.len();
            if n % 2 == 1 {
                break;
            }
            h = node_hash(&row[n - 2], &row[n - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.edge.size()
    }

    /// True when no leaf was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// MTH of all leaves.
    pub fn root(&self) -> Hash {
        self.edge.root()
    }

    /// The hash of a complete node, if this tree has it.
    pub fn node(&self, node: NodeId) -> Option<Hash> {
        let row = self.levels.get(usize::from(node.level))?;
        row.get(usize::try_from(node.index).ok()?).copied()
    }
}

impl FromIterator<Hash> for MemoryTree {
    fn from_iter<I: IntoIterator<Item = Hash>>(iter: I) -> Self {
        let mut t = MemoryTree::new();
        t.extend(iter);
        t
    }
}

impl Extend<Hash> for MemoryTree {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, iter: I) {
        for h in iter {
            self.push(h);
        }
    }
}

impl SubtreeSource for MemoryTree {
    type Error = MissingNode;

    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, MissingNode> {
        nodes
            .iter()
            .map(|&node| {
                self.node(node).ok_or(MissingNode {
                    node,
                    size: self.len(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{inclusion_proof, leaf_hash, root_from_leaf_hashes, tree_root};

    #[test]
    fn levels_hold_every_complete_node() {
        let tree: MemoryTree = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        assert_eq!(tree.len(), 37);
        for (level, row) in tree.levels.iter().enumerate() {
            assert_eq!(row.len() as u64, 37 >> level);
            for (i, h) in row.iter().enumerate() {
                let start = i << level;
                let leaves = &tree.leaves()[start..start + (1 << level)];
                assert_eq!(*h, root_from_leaf_hashes(leaves));
            }
        }
        for size in 0..=37 {
            assert_eq!(
                tree_root(size, &tree).unwrap(),
                root_from_leaf_hashes(&tree.leaves()[..size as usize])
            );
        }
        assert_eq!(tree.root(), root_from_leaf_hashes(tree.leaves()));
    }

    #[test]
    fn incomplete_nodes_are_an_error() {
        let tree: MemoryTree = (0u32..5).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let err = tree.subtree_hashes(&[NodeId::new(1, 2)]).unwrap_err();
        assert_eq!(
            err,
            MissingNode {
                node: NodeId::new(1, 2),
                size: 5
            }
        );
        // Asking for a proof in a larger tree than the source holds fails
        // cleanly instead of panicking.
        assert!(inclusion_proof(0, 9, &tree).is_err());
    }
}
