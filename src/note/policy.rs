//! The checkpoint-acceptance policy: when a signed checkpoint is trusted.
//!
//! One rule set for everyone who accepts a checkpoint (`veritrail verify`,
//! `veritrail monitor`, evidence bundles, the log's published history, the
//! log's own cosignature collection); the web console mirrors it in
//! `web/js/checkpoint-policy.js`, and both are tested on the same vectors
//! (`tests/vectors/checkpoint-policy.json`). The rules, in the order they
//! are checked:
//!
//! 1. `malformed`: the note is a signed note and its text a checkpoint;
//! 2. `origin_mismatch`: every log key is named after the checkpoint's origin
//!    (c2sp.org/tlog-checkpoint);
//! 3. `bad_log_signature`: a signature by a log key verifies (a bad signature
//!    by a known key rejects the note, c2sp.org/signed-note §Verification);
//! 4. `missing_log_signature`: at least `log_quorum` of the log keys signed
//!    (all of them unless the caller says otherwise);
//! 5. `bad_cosignature`: a cosignature by a configured witness verifies;
//! 6. `too_few_cosignatures`: at least `witness_quorum` of the witnesses
//!    cosigned (k of n). Cosignatures by unknown keys are ignored;
//! 7. with a known checkpoint: `origin_changed`, `smaller_than_known` (a
//!    checkpoint never goes back) and `root_differs_at_known_size` (two
//!    trees of the same size). That a larger tree extends the known one is
//!    the caller's consistency proof.
//!
//! Pure: no I/O and no clock. No caller has a cosignature freshness rule,
//! so there is none here.
//!
//! Invariant: a checkpoint is [`Accepted`] only if every rule passed; a
//! [`Rejection`] names exactly the rule that failed and the key it concerns.

use super::{Checkpoint, CosignatureVerifier, Note, NoteError, NoteVerifier};
use crate::merkle::Hash;

/// Which keys must have signed a checkpoint, and how many of them.
pub struct CheckpointPolicy<'k> {
    log_keys: Vec<Box<dyn NoteVerifier + 'k>>,
    log_quorum: usize,
    witnesses: Vec<CosignatureVerifier>,
    witness_quorum: usize,
}

/// A policy that cannot be met as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// More log signatures required than there are log keys.
    #[error("{quorum} log signatures required, but only {keys} log keys given")]
    LogQuorum {
        /// Required.
        quorum: usize,
        /// Given.
        keys: usize,
    },
    /// More cosignatures required than there are witnesses.
    #[error("{quorum} witness cosignatures required, but only {witnesses} witnesses given")]
    WitnessQuorum {
        /// Required.
        quorum: usize,
        /// Given.
        witnesses: usize,
    },
}

/// What a checkpoint is compared with: the last one accepted before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Its origin.
    pub origin: String,
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

impl From<&Checkpoint> for Known {
    fn from(cp: &Checkpoint) -> Known {
        Known {
            origin: cp.origin.clone(),
            size: cp.size,
            root: cp.root,
        }
    }
}

/// A checkpoint that passed every rule.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The note as parsed.
    pub note: Note,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
    /// Indexes (in the policy's order) of the log keys whose signature verified.
    pub log_signatures: Vec<usize>,
    /// Indexes of the witnesses whose cosignature verified, with its timestamp
    /// (POSIX seconds).
    pub cosignatures: Vec<(usize, u64)>,
}

/// The rule a checkpoint broke. Keys and witnesses are named by their index
/// in the policy, so each caller can name them as its user gave them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a signed note.
    #[error("the checkpoint is not a signed note: {0}")]
    MalformedNote(NoteError),
    /// A signed note whose text is not a checkpoint.
    #[error("the checkpoint text is malformed: {0}")]
    MalformedCheckpoint(NoteError),
    /// A log key is named after another origin.
    #[error("the checkpoint's origin is {origin:?}, but log key {key} is for {key_name:?}")]
    OriginMismatch {
        /// Index of the log key.
        key: usize,
        /// The key's name.
        key_name: String,
        /// The checkpoint's origin.
        origin: String,
    },
    /// A log key's signature is on the note but does not verify.
    #[error("the signature by log key {key} does not verify")]
    BadLogSignature {
        /// Index of the log key.
        key: usize,
    },
    /// Fewer log keys signed than required; `key` is the first that did not.
    #[error("{signed} of the required {required} log signatures; none by log key {key}")]
    MissingLogSignature {
        /// Index of the first log key that did not sign.
        key: usize,
        /// Log keys that signed.
        signed: usize,
        /// Log signatures required.
        required: usize,
    },
    /// A witness's cosignature is on the note but does not verify.
    #[error("the cosignature by witness {witness} does not verify")]
    BadCosignature {
        /// Index of the witness.
        witness: usize,
    },
    /// Fewer witnesses cosigned than required.
    #[error("{cosigned} of the required {required} witness cosignatures")]
    TooFewCosignatures {
        /// Witnesses that cosigned.
        cosigned: usize,
        /// Cosignatures required.
        required: usize,
        /// Indexes of the witnesses that did not cosign.
        missing: Vec<usize>,
    },
    /// The checkpoint is of another log than the known one.
    #[error("the known checkpoint is for {known:?}, this one for {origin:?}")]
    OriginChanged {
        /// The known origin.
        known: String,
        /// The checkpoint's origin.
        origin: String,
    },
    /// The tree is smaller than the known one.
    #[error("size {size} is smaller than the known size {known}")]
    SmallerThanKnown {
        /// The known size.
        known: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The same size as the known checkpoint with another root.
    #[error("size {size} has root {root}, but the known checkpoint of that size has {known}")]
    RootDiffersAtKnownSize {
        /// The common size.
        size: u64,
        /// The known root.
        known: Hash,
        /// The checkpoint's root.
        root: Hash,
    },
}

impl Rejection {
    /// The rule's name, as in the module's list and the test vectors.
    pub fn rule(&self) -> &'static str {
        match self {
            Rejection::MalformedNote(_) | Rejection::MalformedCheckpoint(_) => "malformed",
            Rejection::OriginMismatch { .. } => "origin_mismatch",
            Rejection::BadLogSignature { .. } => "bad_log_signature",
            Rejection::MissingLogSignature { .. } => "missing_log_signature",
            Rejection::BadCosignature { .. } => "bad_cosignature",
            Rejection::TooFewCosignatures { .. } => "too_few_cosignatures",
            Rejection::OriginChanged { .. } => "origin_changed",
            Rejection::SmallerThanKnown { .. } => "smaller_than_known",
            Rejection::RootDiffersAtKnownSize { .. } => "root_differs_at_known_size",
        }
    }
}

impl<'k> CheckpointPolicy<'k> {
    /// Every one of `log_keys` must sign; no witness is required. With no
    /// log keys, only the witness rules apply (the log checking
    /// cosignatures on checkpoints it signed itself).
    pub fn new(log_keys: Vec<Box<dyn NoteVerifier + 'k>>) -> CheckpointPolicy<'k> {
        CheckpointPolicy {
            log_quorum: log_keys.len(),
            log_keys,
            witnesses: Vec::new(),
            witness_quorum: 0,
        }
    }

    /// Requires only `quorum` of the log keys' signatures.
    pub fn with_log_quorum(mut self, quorum: usize) -> Result<CheckpointPolicy<'k>, PolicyError> {
        if quorum > self.log_keys.len() {
            return Err(PolicyError::LogQuorum {
                quorum,
                keys: self.log_keys.len(),
            });
        }
        self.log_quorum = quorum;
        Ok(self)
    }

    /// Requires cosignatures by `quorum` of `witnesses` (k of n).
    pub fn with_witnesses(
        mut self,
        witnesses: Vec<CosignatureVerifier>,
        quorum: usize,
    ) -> Result<CheckpointPolicy<'k>, PolicyError> {
        if quorum > witnesses.len() {
            return Err(PolicyError::WitnessQuorum {
                quorum,
                witnesses: witnesses.len(),
            });
        }
        self.witnesses = witnesses;
        self.witness_quorum = quorum;
        Ok(self)
    }

    /// The log keys, in order.
    pub fn log_keys(&self) -> &[Box<dyn NoteVerifier + 'k>] {
        &self.log_keys
    }

    /// The witnesses, in order.
    pub fn witnesses(&self) -> &[CosignatureVerifier] {
        &self.witnesses
    }

    /// How many cosignatures are required.
    pub fn witness_quorum(&self) -> usize {
        self.witness_quorum
    }

    /// Checks the signed checkpoint `note` against every rule; `known` is
    /// the checkpoint accepted before, if any.
    pub fn check(&self, note: &[u8], known: Option<&Known>) -> Result<Accepted, Rejection> {
        let note = Note::parse(note).map_err(Rejection::MalformedNote)?;
        self.check_note(note, known)
    }

    /// [`CheckpointPolicy::check`] of a parsed note.
    pub fn check_note(&self, note: Note, known: Option<&Known>) -> Result<Accepted, Rejection> {
        let checkpoint = Checkpoint::from_note(&note).map_err(Rejection::MalformedCheckpoint)?;
        let log_signatures = self.log_signatures(&note, &checkpoint)?;
        let cosignatures = self.cosignatures(&note)?;
        if let Some(known) = known {
            check_against_known(&checkpoint, known)?;
        }
        Ok(Accepted {
            note,
            checkpoint,
            log_signatures,
            cosignatures,
        })
    }

    fn log_signatures(&self, note: &Note, cp: &Checkpoint) -> Result<Vec<usize>, Rejection> {
        // c2sp.org/tlog-checkpoint: the log's key name is the origin.
        if let Some((key, v)) = self
            .log_keys
            .iter()
            .enumerate()
            .find(|(_, v)| v.name() != cp.origin)
        {
            return Err(Rejection::OriginMismatch {
                key,
                key_name: v.name().to_string(),
                origin: cp.origin.clone(),
            });
        }
        let mut signed = Vec::new();
        let mut first_missing = None;
        for (key, v) in self.log_keys.iter().enumerate() {
            match signature(note, v.name(), v.key_id()) {
                None => {
                    first_missing.get_or_insert(key);
                }
                Some(sig) if v.verify(note.text().as_bytes(), sig) => signed.push(key),
                Some(_) => return Err(Rejection::BadLogSignature { key }),
            }
        }
        if signed.len() < self.log_quorum {
            return Err(Rejection::MissingLogSignature {
                key: first_missing.unwrap_or_default(),
                signed: signed.len(),
                required: self.log_quorum,
            });
        }
        Ok(signed)
    }

    fn cosignatures(&self, note: &Note) -> Result<Vec<(usize, u64)>, Rejection> {
        let mut cosigned = Vec::new();
        let mut missing = Vec::new();
        for (witness, w) in self.witnesses.iter().enumerate() {
            match signature(note, w.name(), w.key_id()) {
                None => missing.push(witness),
                // c2sp.org/tlog-cosignature: the timestamp is part of the signed message.
                Some(sig) => match w.verify_cosignature(note.text().as_bytes(), sig) {
                    Ok(timestamp) => cosigned.push((witness, timestamp)),
                    Err(_) => return Err(Rejection::BadCosignature { witness }),
                },
            }
        }
        if cosigned.len() < self.witness_quorum {
            return Err(Rejection::TooFewCosignatures {
                cosigned: cosigned.len(),
                required: self.witness_quorum,
                missing,
            });
        }
        Ok(cosigned)
    }
}

/// The rules between a checkpoint and the one known before it: the same
/// log, not smaller, and not another root at the same size.
pub fn check_against_known(cp: &Checkpoint, known: &Known) -> Result<(), Rejection> {
    if cp.origin != known.origin {
        return Err(Rejection::OriginChanged {
            known: known.origin.clone(),
            origin: cp.origin.clone(),
        });
    }
    if cp.size < known.size {
        return Err(Rejection::SmallerThanKnown {
            known: known.size,
            size: cp.size,
        });
    }
    if cp.size == known.size && cp.root != known.root {
        return Err(Rejection::RootDiffersAtKnownSize {
            size: cp.size,
            known: known.root,
            root: cp.root,
        });
    }
    Ok(())
}

/// Lets a policy borrow the verifiers a caller already holds.
impl<V: NoteVerifier + ?Sized> NoteVerifier for &V {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn key_id(&self) -> u32 {
        (**self).key_id()
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        (**self).verify(text, signature)
    }
}

/// The signature by (name, key ID) on `note`; a note holds at most one.
fn signature<'a>(note: &'a Note, name: &str, key_id: u32) -> Option<&'a [u8]> {
    note.signatures()
        .iter()
        .find(|s| s.name == name && s.key_id == key_id)
        .map(|s| s.signature.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;
    use crate::note::keys::LogKeys;
    use crate::note::{CosignatureSigner, NoteSigner};

    const ORIGIN: &str = "example.com/log";

    fn witness(seed: u8, name: &str, at: u64) -> CosignatureSigner {
        CosignatureSigner::new(
            name,
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            move || at,
        )
        .unwrap()
    }

    fn note(origin: &str, size: u64, signers: &[&dyn NoteSigner]) -> Vec<u8> {
        let cp = Checkpoint {
            origin: origin.into(),
            size,
            root: merkle::leaf_hash(&size.to_be_bytes()),
            extensions: vec![],
        };
        let mut n = cp.to_note().unwrap();
        for s in signers {
            n.sign(*s).unwrap();
        }
        n.to_bytes()
    }

    fn log_policy() -> (CheckpointPolicy<'static>, crate::note::keys::LogSigners) {
        let keys = LogKeys::from_secret_bytes(&[1u8; 32], &[2u8; 32]).unwrap();
        let s = keys.signers(ORIGIN).unwrap();
        let policy = CheckpointPolicy::new(vec![
            Box::new(s.ecdsa.verifier()),
            Box::new(s.ed25519.verifier()),
        ]);
        (policy, s)
    }

    #[test]
    fn every_log_key_must_sign_unless_a_quorum_is_given() {
        let (p, s) = log_policy();
        let both = note(ORIGIN, 3, &[&s.ecdsa, &s.ed25519]);
        let one = note(ORIGIN, 3, &[&s.ed25519]);
        let ok = p.check(&both, None).unwrap();
        assert_eq!(ok.log_signatures, [0, 1]);
        assert_eq!(ok.checkpoint.size, 3);
        assert_eq!(
            p.check(&one, None).unwrap_err(),
            Rejection::MissingLogSignature {
                key: 0,
                signed: 1,
                required: 2
            }
        );
        let p = p.with_log_quorum(1).unwrap();
        assert_eq!(p.check(&one, None).unwrap().log_signatures, [1]);
        assert!(p.with_log_quorum(3).is_err());
    }

    #[test]
    fn a_bad_signature_or_a_foreign_key_name_is_named() {
        let (p, s) = log_policy();
        let mut bad = note(ORIGIN, 3, &[&s.ecdsa, &s.ed25519]);
        let at = bad.len() - 3;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(p.check(&bad, None).unwrap_err().rule(), "bad_log_signature");
        let other = LogKeys::from_secret_bytes(&[1u8; 32], &[2u8; 32])
            .unwrap()
            .signers("other.example/log")
            .unwrap();
        let foreign = note("other.example/log", 3, &[&other.ecdsa, &other.ed25519]);
        assert_eq!(
            p.check(&foreign, None).unwrap_err().rule(),
            "origin_mismatch"
        );
        assert_eq!(
            p.check(b"not a note", None).unwrap_err().rule(),
            "malformed"
        );
    }

    #[test]
    fn k_of_n_witnesses_must_cosign_and_unknown_ones_do_not_count() {
        let (p, s) = log_policy();
        let (a, b, c) = (
            witness(7, "a.example", 10),
            witness(8, "b.example", 20),
            witness(9, "c.example", 30),
        );
        let p = p
            .with_witnesses(vec![a.verifier(), b.verifier()], 2)
            .unwrap();
        let ab = note(ORIGIN, 3, &[&s.ecdsa, &s.ed25519, &a, &b]);
        assert_eq!(p.check(&ab, None).unwrap().cosignatures, [(0, 10), (1, 20)]);
        let ac = note(ORIGIN, 3, &[&s.ecdsa, &s.ed25519, &a, &c]);
        assert_eq!(
            p.check(&ac, None).unwrap_err(),
            Rejection::TooFewCosignatures {
                cosigned: 1,
                required: 2,
                missing: vec![1]
            }
        );
        let mut bad = ab.clone();
        let at = bad.len() - 3;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            p.check(&bad, None).unwrap_err(),
            Rejection::BadCosignature { witness: 1 }
        );
        let (p2, _) = log_policy();
        assert!(p2.with_witnesses(vec![a.verifier()], 2).is_err());
    }

    #[test]
    fn a_checkpoint_never_goes_back_from_a_known_one() {
        let (p, s) = log_policy();
        let five = note(ORIGIN, 5, &[&s.ecdsa, &s.ed25519]);
        let cp = p.check(&five, None).unwrap().checkpoint;
        let known = |size, root| Known {
            origin: ORIGIN.into(),
            size,
            root,
        };
        assert!(p.check(&five, Some(&known(5, cp.root))).is_ok());
        assert!(p.check(&five, Some(&known(4, cp.root))).is_ok());
        let rule = |k: Known| p.check(&five, Some(&k)).unwrap_err().rule();
        assert_eq!(rule(known(6, cp.root)), "smaller_than_known");
        assert_eq!(
            rule(known(5, merkle::empty_root())),
            "root_differs_at_known_size"
        );
        assert_eq!(
            rule(Known {
                origin: "other".into(),
                ..known(5, cp.root)
            }),
            "origin_changed"
        );
    }
}
