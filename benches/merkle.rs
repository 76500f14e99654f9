//! Merkle throughput: leaf appends per second, and inclusion / consistency
//! proofs per second at 2^20 leaves, each beside the same work done by
//! `tlog_tiles` (Go sumdb/tlog's stored-hash model) and `rs_merkle` (with our
//! RFC 6962 hasher) on the same leaves, in the same run.
//!
//! `cargo bench --bench merkle` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rs_merkle::MerkleTree;
use veritrail::merkle::{
    CompactRange, Hash, MemoryTree, Rfc6962Hasher, consistency_proof, inclusion_proof, leaf_hash,
    tree_root, verify_inclusion,
};

#[path = "../tests/common/spec.rs"]
mod support;
use support::Stored;

/// Tree size for the proof benchmarks.
const PROOF_TREE: u64 = 1 << 20;
/// Leaves appended per iteration of the append benchmarks.
const APPEND_BATCH: u64 = 1 << 16;
/// Proofs per iteration of the proof benchmarks.
const PROOF_BATCH: u64 = 1024;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Deterministic pseudo-random values in `lo..hi` (splitmix64).
fn spread(count: u64, lo: u64, hi: u64) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            lo + (z ^ (z >> 31)) % (hi - lo)
        })
        .collect()
}

fn tlog_append(leaves: &[Hash]) -> Stored {
    let mut stored = Stored(Vec::with_capacity(leaves.len() * 2));
    for (i, l) in leaves.iter().enumerate() {
        let new =
            tlog_tiles::stored_hashes_for_record_hash(i as u64, tlog_tiles::Hash(l.0), &stored)
                .expect("in-memory reads cannot fail");
        stored.0.extend(new);
    }
    stored
}

fn append(c: &mut Criterion) {
    let leaves = leaves(APPEND_BATCH);
    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    let mut group = c.benchmark_group("append_2^16_leaves");
    group.throughput(Throughput::Elements(APPEND_BATCH));
    group.bench_function("veritrail_compact_range", |b| {
        b.iter(|| {
            let mut range = CompactRange::new();
            for &l in &leaves {
                range.append(l);
            }
            black_box(range.root())
        })
    });
    group.bench_function("veritrail_memory_tree", |b| {
        b.iter(|| black_box(leaves.iter().copied().collect::<MemoryTree>().root()))
    });
    group.bench_function("tlog_tiles_stored_hashes", |b| {
        b.iter(|| {
            let stored = tlog_append(&leaves);
            black_box(tlog_tiles::tree_hash(APPEND_BATCH, &stored).expect("in memory"))
        })
    });
    group.bench_function("rs_merkle_from_leaves", |b| {
        b.iter(|| black_box(MerkleTree::<Rfc6962Hasher>::from_leaves(&raw).root()))
    });
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let leaves = leaves(PROOF_TREE);
    let tree: MemoryTree = leaves.iter().copied().collect();
    let stored = tlog_append(&leaves);
    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    let rs_tree = MerkleTree::<Rfc6962Hasher>::from_leaves(&raw);
    let root = tree_root(PROOF_TREE, &tree).expect("complete tree");
    assert_eq!(
        rs_tree.root(),
        Some(root.0),
        "baselines must build the same tree"
    );

    let indices = spread(PROOF_BATCH, 0, PROOF_TREE);
    let old_sizes = spread(PROOF_BATCH, 1, PROOF_TREE);

    let mut group = c.benchmark_group("inclusion_proof_2^20");
    group.throughput(Throughput::Elements(PROOF_BATCH));
    group.bench_function("veritrail_memory_tree", |b| {
        b.iter(|| {
            for &i in &indices {
                black_box(inclusion_proof(i, PROOF_TREE, &tree).expect("in range"));
            }
        })
    });
    group.bench_function("tlog_tiles_prove_record", |b| {
        b.iter(|| {
            for &i in &indices {
                black_box(tlog_tiles::prove_record(PROOF_TREE, i, &stored).expect("in range"));
            }
        })
    });
    group.bench_function("rs_merkle_proof", |b| {
        b.iter(|| {
            for &i in &indices {
                black_box(rs_tree.proof(&[i as usize]));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("consistency_proof_2^20");
    group.throughput(Throughput::Elements(PROOF_BATCH));
    group.bench_function("veritrail_memory_tree", |b| {
        b.iter(|| {
            for &m in &old_sizes {
                black_box(consistency_proof(m, PROOF_TREE, &tree).expect("in range"));
            }
        })
    });
    group.bench_function("tlog_tiles_prove_tree", |b| {
        b.iter(|| {
            for &m in &old_sizes {
                black_box(tlog_tiles::prove_tree(PROOF_TREE, m, &stored).expect("in range"));
            }
        })
    });
    // rs_merkle has no consistency proofs.
    group.finish();

    let proofs: Vec<Vec<Hash>> = indices
        .iter()
        .map(|&i| inclusion_proof(i, PROOF_TREE, &tree).expect("in range"))
        .collect();
    let mut group = c.benchmark_group("verify_inclusion_2^20");
    group.throughput(Throughput::Elements(PROOF_BATCH));
    group.bench_function("veritrail", |b| {
        b.iter(|| {
            for (&i, p) in indices.iter().zip(&proofs) {
                verify_inclusion(i, PROOF_TREE, &leaves[i as usize], p, &root).expect("valid");
            }
        })
    });
    group.bench_function("tlog_tiles_check_record", |b| {
        let th = tlog_tiles::Hash(root.0);
        let theirs: Vec<Vec<tlog_tiles::Hash>> = proofs
            .iter()
            .map(|p| p.iter().map(|h| tlog_tiles::Hash(h.0)).collect())
            .collect();
        b.iter(|| {
            for (&i, p) in indices.iter().zip(&theirs) {
                let leaf = tlog_tiles::Hash(leaves[i as usize].0);
                tlog_tiles::check_record(p, PROOF_TREE, th, i, leaf).expect("valid");
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = merkle;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append, proofs
}
criterion_main!(merkle);
