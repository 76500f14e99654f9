//! Independent implementations agree with ours for every tree size up to 300:
//! `tlog_tiles` (a port of Go sumdb/tlog) for roots, inclusion and
//! consistency proofs; `rs_merkle` (with our RFC 6962 hasher) for roots and
//! audit paths; `ct-merkle` for roots and for verifying our proofs.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use rs_merkle::{MerkleProof, MerkleTree};
use sha2::Sha256;
use veritrail::merkle::{
    Hash, MemoryTree, Rfc6962Hasher, consistency_proof, inclusion_proof, leaf_hash, tree_root,
    verify_consistency, verify_inclusion,
};

mod common;
use common::Stored;

const MAX: u64 = 300;

fn leaf_data(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

fn ours(h: &[tlog_tiles::Hash]) -> Vec<Hash> {
    h.iter().map(|h| Hash(h.0)).collect()
}

#[test]
fn tlog_tiles_agrees_on_roots_and_proofs() {
    let mut stored = Stored(Vec::new());
    let mut tree = MemoryTree::new();
    for i in 0..MAX {
        let data = leaf_data(i);
        let new = tlog_tiles::stored_hashes(i, &data, &stored).unwrap();
        stored.0.extend(new);
        tree.push(leaf_hash(&data));
    }
    let (mut inclusion, mut consistency) = (0, 0);
    for n in 1..=MAX {
        let root = tree_root(n, &tree).unwrap();
        assert_eq!(
            Hash(tlog_tiles::tree_hash(n, &stored).unwrap().0),
            root,
            "root {n}"
        );
        for m in 0..n {
            let theirs = tlog_tiles::prove_record(n, m, &stored).unwrap();
            let mine = inclusion_proof(m, n, &tree).unwrap();
            assert_eq!(mine, ours(&theirs), "inclusion ({m}, {n})");
            tlog_tiles::check_record(
                &theirs,
                n,
                tlog_tiles::Hash(root.0),
                m,
                tlog_tiles::Hash(tree.leaves()[m as usize].0),
            )
            .unwrap();
            inclusion += 1;
        }
        for m in 1..=n {
            let theirs = tlog_tiles::prove_tree(n, m, &stored).unwrap();
            let mine = consistency_proof(m, n, &tree).unwrap();
            assert_eq!(mine, ours(&theirs), "consistency ({m}, {n})");
            let old = tree_root(m, &tree).unwrap();
            tlog_tiles::check_tree(
                &theirs,
                n,
                tlog_tiles::Hash(root.0),
                m,
                tlog_tiles::Hash(old.0),
            )
            .unwrap();
            consistency += 1;
        }
    }
    assert_eq!(inclusion, MAX * (MAX + 1) / 2);
    assert_eq!(consistency, MAX * (MAX + 1) / 2);
}

#[test]
fn rs_merkle_agrees_on_roots_and_audit_paths() {
    let leaves: Vec<[u8; 32]> = (0..MAX).map(|i| leaf_hash(&leaf_data(i)).0).collect();
    let tree: MemoryTree = leaves.iter().map(|&l| Hash(l)).collect();
    for n in 1..=MAX as usize {
        let theirs = MerkleTree::<Rfc6962Hasher>::from_leaves(&leaves[..n]);
        let root = tree_root(n as u64, &tree).unwrap();
        assert_eq!(theirs.root(), Some(root.0), "root {n}");
        for (m, leaf) in leaves.iter().enumerate().take(n) {
            let their_proof = theirs.proof(&[m]);
            let mine = inclusion_proof(m as u64, n as u64, &tree).unwrap();
            let mine_raw: Vec<[u8; 32]> = mine.iter().map(|h| h.0).collect();
            assert_eq!(their_proof.proof_hashes(), &mine_raw[..], "path ({m}, {n})");
            // Each verifier accepts the other's proof.
            let from_ours = MerkleProof::<Rfc6962Hasher>::new(mine_raw);
            assert!(from_ours.verify(root.0, &[m], &[*leaf], n));
            let their_hashes: Vec<Hash> = their_proof
                .proof_hashes()
                .iter()
                .map(|&h| Hash(h))
                .collect();
            verify_inclusion(m as u64, n as u64, &Hash(*leaf), &their_hashes, &root).unwrap();
        }
    }
}

fn proof_bytes(p: &[Hash]) -> Vec<u8> {
    p.iter().flat_map(|h| h.0).collect()
}

#[test]
fn ct_merkle_agrees_on_roots_and_accepts_our_proofs() {
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut tree = MemoryTree::new();
    let mut roots = Vec::new();
    for i in 0..MAX {
        let data = leaf_data(i);
        tree.push(leaf_hash(&data));
        theirs.push(data);
        let their_root = theirs.root();
        let root = tree.root();
        assert_eq!(
            their_root.as_bytes().as_slice(),
            root.as_bytes(),
            "root {}",
            i + 1
        );
        roots.push(their_root);
    }
    for n in 1..=MAX {
        let root = &roots[n as usize - 1];
        for m in 0..n {
            let proof = InclusionProof::<Sha256>::from_bytes(proof_bytes(
                &inclusion_proof(m, n, &tree).unwrap(),
            ));
            root.verify_inclusion(&leaf_data(m), m, &proof)
                .unwrap_or_else(|e| panic!("inclusion ({m}, {n}): {e}"));
        }
        for m in 1..n {
            let proof = ConsistencyProof::<Sha256>::try_from_bytes(proof_bytes(
                &consistency_proof(m, n, &tree).unwrap(),
            ))
            .unwrap();
            root.verify_consistency(&roots[m as usize - 1], &proof)
                .unwrap_or_else(|e| panic!("consistency ({m}, {n}): {e}"));
        }
    }
    // And a ct-merkle consistency proof passes our verifier.
    let old: RootHash<Sha256> = roots[99].clone();
    let proof = theirs.prove_consistency(MAX as usize - 100);
    let hashes: Vec<Hash> = proof
        .as_bytes()
        .chunks(32)
        .map(|c| Hash::from_slice(c).unwrap())
        .collect();
    verify_consistency(
        100,
        MAX,
        &Hash::from_slice(old.as_bytes()).unwrap(),
        &tree.root(),
        &hashes,
    )
    .unwrap();
}
