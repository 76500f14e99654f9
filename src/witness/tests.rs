//! Every status path of the witness core, against an in-memory store.

use std::sync::Arc;

use super::core::{AddError, Witness, WitnessedLog, origin_hash};
use super::request::{AddCheckpoint, MAX_REQUEST_BODY};
use super::store::{MemoryWitnessStore, WitnessStore};
use crate::merkle::{self, Hash, MemoryTree};
use crate::note::keys::LogKeys;
use crate::note::{
    Checkpoint, CosignatureSigner, CosignatureVerifier, Note, NoteSigner, NoteVerifier,
    parse_verifier_key,
};

const ORIGIN: &str = "example.com/log";

struct Fixture {
    keys: LogKeys,
    witness: Witness,
    store: Arc<MemoryWitnessStore>,
    cosigner: CosignatureVerifier,
}

fn fixture() -> Fixture {
    let keys = LogKeys::from_secret_bytes(&[7; 32], &[8; 32]).unwrap();
    let v = keys.verifier_keys(ORIGIN).unwrap();
    let store = Arc::new(MemoryWitnessStore::new());
    let signer = CosignatureSigner::new(
        "w.example/1",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        || 1_700_000_000u64,
    )
    .unwrap();
    let cosigner = signer.verifier();
    let witness = Witness::new(
        vec![WitnessedLog {
            origin: ORIGIN.into(),
            verifiers: vec![
                parse_verifier_key(&v.ecdsa).unwrap(),
                parse_verifier_key(&v.ed25519).unwrap(),
            ],
        }],
        signer,
        store.clone() as Arc<dyn WitnessStore>,
    );
    Fixture {
        keys,
        witness,
        store,
        cosigner,
    }
}

/// A tree of `n` leaves; `branch` changes every leaf from `fork_at` on.
fn tree(n: u64, branch: u8, fork_at: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        let b = if i >= fork_at { branch } else { 0 };
        t.push(merkle::leaf_hash(&[&i.to_be_bytes()[..], &[b]].concat()));
    }
    t
}

fn signed(keys: &LogKeys, origin: &str, size: u64, root: Hash, which: &str) -> Vec<u8> {
    let cp = Checkpoint {
        origin: origin.into(),
        size,
        root,
        extensions: vec![],
    };
    let mut note = cp.to_note().unwrap();
    let s = keys.signers(origin).unwrap();
    if which.contains("ecdsa") {
        note.sign(&s.ecdsa as &dyn NoteSigner).unwrap();
    }
    if which.contains("ed25519") {
        note.sign(&s.ed25519 as &dyn NoteSigner).unwrap();
    }
    note.to_bytes()
}

fn body(f: &Fixture, old: u64, t: &MemoryTree, proof: Option<Vec<Hash>>) -> Vec<u8> {
    let size = t.len();
    let proof = proof.unwrap_or_else(|| {
        if old == 0 || old == size {
            vec![]
        } else {
            merkle::consistency_proof(old, size, t).unwrap()
        }
    });
    let note = signed(&f.keys, ORIGIN, size, t.root(), "ecdsa ed25519");
    AddCheckpoint::format(old, &proof, &note)
}

fn status(r: Result<impl Sized, AddError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

#[test]
fn first_checkpoint_is_cosigned_and_the_state_is_stored() {
    let f = fixture();
    let t = tree(5, 0, 0);
    let lines = f.witness.add_checkpoint(&body(&f, 0, &t, None)).unwrap();
    assert_eq!(lines.len(), 1);
    // The cosignature verifies over the checkpoint text.
    let mut note = Note::parse(&signed(&f.keys, ORIGIN, 5, t.root(), "ecdsa ed25519")).unwrap();
    note.add_signature(lines[0].clone());
    assert_eq!(f.cosigner.verified_timestamp(&note), Ok(1_700_000_000));
    let state = f.witness.state(ORIGIN).unwrap().unwrap();
    assert_eq!((state.size, state.root), (5, t.root()));
    // The stored note carries the log's signatures and the cosignature.
    let stored = Note::parse(state.note.as_bytes()).unwrap();
    assert_eq!(stored.signatures().len(), 3);
    assert_eq!(
        f.witness
            .latest_by_origin_hash(&origin_hash(ORIGIN))
            .unwrap()
            .unwrap(),
        state
    );
    assert_eq!(
        f.witness.latest_by_origin_hash(&origin_hash("x")).unwrap(),
        None
    );
}

#[test]
fn consistent_growth_is_cosigned_and_same_size_is_recosigned() {
    let f = fixture();
    f.witness
        .add_checkpoint(&body(&f, 0, &tree(5, 0, 0), None))
        .unwrap();
    for size in [6, 8, 13, 13, 300] {
        let known = f.witness.state(ORIGIN).unwrap().unwrap().size;
        let t = tree(size, 0, 0);
        assert_eq!(
            status(f.witness.add_checkpoint(&body(&f, known, &t, None))),
            200,
            "{known} -> {size}"
        );
        assert_eq!(f.witness.state(ORIGIN).unwrap().unwrap().size, size);
    }
}

#[test]
fn either_log_key_alone_is_enough() {
    for which in ["ecdsa", "ed25519"] {
        let f = fixture();
        let t = tree(3, 0, 0);
        let note = signed(&f.keys, ORIGIN, 3, t.root(), which);
        let r = f
            .witness
            .add_checkpoint(&AddCheckpoint::format(0, &[], &note));
        assert_eq!(status(r), 200, "{which}");
    }
}

#[test]
fn malformed_bodies_are_400_and_oversized_413() {
    let f = fixture();
    assert_eq!(status(f.witness.add_checkpoint(b"old 01\n\n")), 400);
    assert_eq!(status(f.witness.add_checkpoint(b"garbage")), 400);
    let big = vec![b'x'; MAX_REQUEST_BODY + 1];
    assert_eq!(status(f.witness.add_checkpoint(&big)), 413);
    assert_eq!(f.witness.state(ORIGIN).unwrap(), None);
}

#[test]
fn unknown_origin_is_404() {
    let f = fixture();
    let t = tree(3, 0, 0);
    let note = signed(&f.keys, "other.example/log", 3, t.root(), "ecdsa ed25519");
    let r = f
        .witness
        .add_checkpoint(&AddCheckpoint::format(0, &[], &note));
    assert!(matches!(r, Err(AddError::UnknownLog(_))));
    assert_eq!(status(r), 404);
}

#[test]
fn untrusted_or_bad_signatures_are_403() {
    let f = fixture();
    let t = tree(3, 0, 0);
    // Signed by another key under the log's name: an unknown key, so no
    // trusted signature verifies.
    let other = LogKeys::from_secret_bytes(&[1; 32], &[2; 32]).unwrap();
    let note = signed(&other, ORIGIN, 3, t.root(), "ecdsa ed25519");
    let r = f
        .witness
        .add_checkpoint(&AddCheckpoint::format(0, &[], &note));
    assert_eq!(status(r), 403);
    // A trusted key's signature that does not verify (other text) rejects
    // the note even though the other trusted signature is fine.
    let good = Note::parse(&signed(&f.keys, ORIGIN, 3, t.root(), "ecdsa ed25519")).unwrap();
    let forged_text = Checkpoint {
        origin: ORIGIN.into(),
        size: 4,
        root: t.root(),
        extensions: vec![],
    };
    let mut forged = forged_text.to_note().unwrap();
    let s = f.keys.signers(ORIGIN).unwrap();
    forged.sign(&s.ed25519 as &dyn NoteSigner).unwrap();
    let ecdsa_sig = good
        .signatures()
        .iter()
        .find(|g| g.key_id == s.ecdsa.key_id())
        .unwrap()
        .clone();
    forged.add_signature(ecdsa_sig);
    let r = f
        .witness
        .add_checkpoint(&AddCheckpoint::format(0, &[], &forged.to_bytes()));
    assert!(matches!(r, Err(AddError::BadSignature(_))));
    assert_eq!(f.witness.state(ORIGIN).unwrap(), None);
}

#[test]
fn old_size_beyond_the_checkpoint_is_400() {
    let f = fixture();
    let t = tree(3, 0, 0);
    let r = f.witness.add_checkpoint(&body(&f, 4, &t, Some(vec![])));
    assert!(matches!(
        r,
        Err(AddError::OldBeyondCheckpoint { old: 4, size: 3 })
    ));
    assert_eq!(status(r), 400);
}

#[test]
fn a_stale_old_size_is_409_with_the_known_size() {
    let f = fixture();
    // No state: anything but 0 is stale, and the witness says 0.
    let t = tree(8, 0, 0);
    let r = f.witness.add_checkpoint(&body(&f, 5, &t, None));
    assert!(matches!(r, Err(AddError::StaleOldSize { known: 0 })));
    f.witness
        .add_checkpoint(&body(&f, 0, &tree(5, 0, 0), None))
        .unwrap();
    // A client that knows nothing sends old 0 and learns 5.
    let r = f.witness.add_checkpoint(&body(&f, 0, &t, None));
    assert!(matches!(r, Err(AddError::StaleOldSize { known: 5 })));
    assert_eq!(status(r), 409);
    let r = f.witness.add_checkpoint(&body(&f, 3, &t, None));
    assert!(matches!(r, Err(AddError::StaleOldSize { known: 5 })));
    // Retrying from the learnt size works.
    assert_eq!(
        status(f.witness.add_checkpoint(&body(&f, 5, &t, None))),
        200
    );
}

#[test]
fn a_proof_from_the_empty_tree_is_422() {
    let f = fixture();
    let t = tree(8, 0, 0);
    let bogus = merkle::consistency_proof(4, 8, &t).unwrap();
    let r = f.witness.add_checkpoint(&body(&f, 0, &t, Some(bogus)));
    assert!(matches!(r, Err(AddError::ProofFromEmptyTree)));
    assert_eq!(status(r), 422);
}

#[test]
fn a_size_zero_checkpoint_needs_the_empty_root() {
    let f = fixture();
    let note = signed(&f.keys, ORIGIN, 0, merkle::leaf_hash(b"x"), "ecdsa ed25519");
    let r = f
        .witness
        .add_checkpoint(&AddCheckpoint::format(0, &[], &note));
    assert!(matches!(r, Err(AddError::BadEmptyRoot)));
    assert_eq!(status(r), 422);
    let note = signed(&f.keys, ORIGIN, 0, merkle::empty_root(), "ecdsa ed25519");
    assert_eq!(
        status(
            f.witness
                .add_checkpoint(&AddCheckpoint::format(0, &[], &note))
        ),
        200
    );
}

#[test]
fn a_bad_consistency_proof_is_422_and_changes_nothing() {
    let f = fixture();
    f.witness
        .add_checkpoint(&body(&f, 0, &tree(5, 0, 0), None))
        .unwrap();
    let t = tree(9, 0, 0);
    let mut proof = merkle::consistency_proof(5, 9, &t).unwrap();
    proof[0].0[0] ^= 1;
    let r = f.witness.add_checkpoint(&body(&f, 5, &t, Some(proof)));
    assert!(matches!(
        r,
        Err(AddError::BadProof {
            old: 5,
            size: 9,
            ..
        })
    ));
    assert_eq!(status(r), 422);
    // Missing or extra proof lines.
    let proof = merkle::consistency_proof(5, 9, &t).unwrap();
    let short = proof[..proof.len() - 1].to_vec();
    assert_eq!(
        status(f.witness.add_checkpoint(&body(&f, 5, &t, Some(short)))),
        422
    );
    let mut long = proof.clone();
    long.push(proof[0]);
    assert_eq!(
        status(f.witness.add_checkpoint(&body(&f, 5, &t, Some(long)))),
        422
    );
    assert_eq!(f.witness.state(ORIGIN).unwrap().unwrap().size, 5);
}

#[test]
fn a_fork_is_refused_whichever_way_it_comes() {
    let f = fixture();
    // Branch 1 is cosigned at 6; branch 2 shares the first 4 leaves.
    let a = tree(6, 1, 4);
    f.witness.add_checkpoint(&body(&f, 0, &a, None)).unwrap();
    // Same size, other root: 422 (HEAD), not 409.
    let b = tree(6, 2, 4);
    let r = f.witness.add_checkpoint(&body(&f, 6, &b, None));
    assert!(matches!(r, Err(AddError::RootMismatch { size: 6 })));
    assert_eq!(status(r), 422);
    // A larger tree of branch 2, with a proof that is right for branch 2.
    let b = tree(9, 2, 4);
    let r = f.witness.add_checkpoint(&body(&f, 6, &b, None));
    assert_eq!(status(r), 422);
    // A non-empty proof between equal sizes.
    let r = f
        .witness
        .add_checkpoint(&body(&f, 6, &a, Some(vec![merkle::empty_root()])));
    assert_eq!(status(r), 422);
    let state = f.witness.state(ORIGIN).unwrap().unwrap();
    assert_eq!((state.size, state.root), (6, a.root()));
}

#[test]
fn a_failed_write_cosigns_nothing() {
    let f = fixture();
    f.store.fail_writes(true);
    let r = f.witness.add_checkpoint(&body(&f, 0, &tree(5, 0, 0), None));
    assert!(matches!(r, Err(AddError::Store(_))));
    assert_eq!(status(r), 500);
    f.store.fail_writes(false);
    assert_eq!(f.witness.state(ORIGIN).unwrap(), None);
}

#[test]
fn a_state_changed_behind_the_witness_loses_the_compare_and_swap() {
    let f = fixture();
    f.witness
        .add_checkpoint(&body(&f, 0, &tree(5, 0, 0), None))
        .unwrap();
    // Another writer moves the state on between our read and our write:
    // emulate by a store whose record differs from what the witness read.
    struct Racing {
        inner: Arc<MemoryWitnessStore>,
        sneak: Vec<u8>,
    }
    impl WitnessStore for Racing {
        fn get(&self, o: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            self.inner.get(o)
        }
        fn compare_and_swap(
            &self,
            o: &str,
            expected: Option<&[u8]>,
            new: &[u8],
        ) -> Result<Result<(), Option<Vec<u8>>>, crate::store::StoreError> {
            self.inner.force(o, &self.sneak);
            self.inner.compare_and_swap(o, expected, new)
        }
    }
    let t7 = tree(7, 0, 0);
    let sneak = serde_json::to_vec(&super::CosignedState {
        size: 7,
        root: t7.root(),
        note: String::new(),
    })
    .unwrap();
    let keys = LogKeys::from_secret_bytes(&[7; 32], &[8; 32]).unwrap();
    let v = keys.verifier_keys(ORIGIN).unwrap();
    let racing = Arc::new(Racing {
        inner: f.store.clone(),
        sneak,
    });
    let w = Witness::new(
        vec![WitnessedLog {
            origin: ORIGIN.into(),
            verifiers: vec![parse_verifier_key(&v.ed25519).unwrap()],
        }],
        CosignatureSigner::new(
            "w.example/1",
            ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            || 1u64,
        )
        .unwrap(),
        racing,
    );
    let r = w.add_checkpoint(&body(&f, 5, &tree(9, 0, 0), None));
    assert!(matches!(r, Err(AddError::StaleOldSize { known: 7 })));
}

#[test]
fn concurrent_requests_from_the_same_state_cosign_once() {
    let f = Arc::new(fixture());
    f.witness
        .add_checkpoint(&body(&f, 0, &tree(5, 0, 0), None))
        .unwrap();
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || {
                // Eight different extensions of size 5, all claiming old 5.
                let t = tree(6 + i, 0, 0);
                status(f.witness.add_checkpoint(&body(&f, 5, &t, None)))
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 409).count(), 7, "{codes:?}");
}

#[test]
fn the_cosigner_key_verifies_its_lines() {
    let f = fixture();
    let vkey = f.witness.verifier_key();
    let v: Box<dyn NoteVerifier> = parse_verifier_key(&vkey).unwrap();
    let t = tree(2, 0, 0);
    let lines = f.witness.add_checkpoint(&body(&f, 0, &t, None)).unwrap();
    let mut note = Note::parse(&signed(&f.keys, ORIGIN, 2, t.root(), "ed25519")).unwrap();
    note.add_signature(lines[0].clone());
    let verified = note.verify(&[v.as_ref()]).unwrap();
    assert_eq!(verified.len(), 1);
}
