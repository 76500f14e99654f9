//! `veritrail verify`: checks a log from the outside, through its public
//! HTTP API only, with the crate's own Merkle and signed-note code.
//!
//! A [`LogFollower`] is the shared [`Follower`] taking its consistency
//! proofs from the log's proof endpoint: it accepts a checkpoint only when
//! every trusted log key and every configured witness signed it; checks that
//! it extends the checkpoint accepted before (the [`FollowerState`]) by a
//! consistency proof; and proves one leaf into it, reading the leaf itself
//! from its entry bundle. Each check is reported as a [`Step`] as it passes,
//! and each failure is named by the key or proof that failed.
//!
//! Invariant: the state file is written only after every check passed.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::client::ClientError;
use crate::event::{LeafRecord, check_unix_ms, format_rfc3339_ms};
use crate::follower::{Failure, Follower, Proofs, StateError};
use crate::merkle::{self, Hash, VerifyError};
use crate::note::{Checkpoint, NoteError, NoteVerifier, Rejection};
use crate::tiles;

pub use crate::follower::Extension;
use crate::follower::FollowerState;

/// Why a check could not be completed or did not pass.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// A key, argument or request is unusable as given.
    #[error("{0}")]
    Usage(String),
    /// The log could not be reached, or refused a request.
    #[error(transparent)]
    Network(ClientError),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// What the log served does not verify: tampering, a fork or a rollback.
    #[error(transparent)]
    Verification(#[from] VerificationFailure),
}

impl FollowError {
    /// Whether the log served something that does not verify (as opposed to
    /// the check not being possible at all).
    pub fn is_verification_failure(&self) -> bool {
        matches!(self, FollowError::Verification(_))
    }
}

impl From<ClientError> for FollowError {
    fn from(e: ClientError) -> FollowError {
        match e {
            // An answer that does not parse is something the log served.
            ClientError::Malformed { url, why } => {
                VerificationFailure::MalformedAnswer { what: url, why }.into()
            }
            other => FollowError::Network(other),
        }
    }
}

/// A log answer that does not verify. Each message names what failed.
#[derive(Debug, thiserror::Error)]
pub enum VerificationFailure {
    /// `/checkpoint` is not a signed checkpoint.
    #[error("the checkpoint is malformed: {0}")]
    MalformedCheckpoint(NoteError),
    /// A trusted log key belongs to another log.
    #[error("the checkpoint's origin is {origin:?}, but log key {key} is for {key_name:?}")]
    OriginMismatch {
        /// The checkpoint's origin.
        origin: String,
        /// The key's name.
        key_name: String,
        /// The key.
        key: String,
    },
    /// A trusted log key did not sign.
    #[error("the checkpoint carries no signature by log key {key}")]
    MissingLogSignature {
        /// The key.
        key: String,
    },
    /// A trusted log key's signature is invalid.
    #[error("the checkpoint's signature by log key {key} does not verify")]
    BadLogSignature {
        /// The key.
        key: String,
    },
    /// A configured witness did not cosign.
    #[error("the checkpoint carries no cosignature by witness {key}")]
    MissingCosignature {
        /// The witness key.
        key: String,
    },
    /// A configured witness's cosignature is invalid.
    #[error("the checkpoint's cosignature by witness {key} does not verify")]
    BadCosignature {
        /// The witness key.
        key: String,
    },
    /// The state file follows another log.
    #[error("ORIGIN CHANGED: the state file follows {old:?}, but the log now serves {new:?}")]
    OriginChanged {
        /// Origin in the state file.
        old: String,
        /// Origin of the checkpoint.
        new: String,
    },
    /// The log is smaller than it was.
    #[error(
        "ROLLBACK/FORK: the log's checkpoint has size {new_size}, smaller than the size {old_size} seen before"
    )]
    Rollback {
        /// Size seen before.
        old_size: u64,
        /// Size now.
        new_size: u64,
    },
    /// Two different trees of the same size.
    #[error(
        "FORK: the checkpoint of size {size} has root {new_root}, but the checkpoint of that size seen before has root {old_root}"
    )]
    SameSizeFork {
        /// The common size.
        size: u64,
        /// Root seen before.
        old_root: Hash,
        /// Root now.
        new_root: Hash,
    },
    /// The log could not prove that its tree extends the one seen before.
    #[error(
        "FORK: the consistency proof from size {old_size} to {new_size} does not verify ({why}); the log has not shown that its checkpoint extends the one seen before"
    )]
    Inconsistent {
        /// Size seen before.
        old_size: u64,
        /// Size now.
        new_size: u64,
        /// Why the proof failed.
        why: String,
    },
    /// The leaf is not in the checkpoint's tree as proved.
    #[error(
        "the inclusion proof of leaf {index} in the tree of size {size} does not verify: {why}"
    )]
    InclusionProof {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
        /// Why the proof failed.
        why: VerifyError,
    },
    /// The entry bundle holds another leaf than the one proved.
    #[error(
        "leaf {index} in entry bundle {path} hashes to {bundle_hash}, but the inclusion proof is for leaf hash {proof_hash}"
    )]
    LeafMismatch {
        /// Leaf index.
        index: u64,
        /// The bundle's path.
        path: String,
        /// Hash of the leaf in the bundle.
        bundle_hash: Hash,
        /// Leaf hash the proof is for.
        proof_hash: Hash,
    },
    /// An entry bundle that is not one.
    #[error("entry bundle {path} is malformed: {why}")]
    MalformedBundle {
        /// The bundle's path.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A leaf that is not a Veritrail leaf record.
    #[error("leaf {index} is not a Veritrail leaf record: {why}")]
    MalformedLeaf {
        /// Leaf index.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// An answer that does not parse or answers another question.
    #[error("{what}: malformed answer: {why}")]
    MalformedAnswer {
        /// What was asked.
        what: String,
        /// What is wrong.
        why: String,
    },
}

/// A verified log signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSignature {
    /// `ecdsa` or `ed25519`.
    pub algorithm: &'static str,
    /// The key name (the origin).
    pub key_name: String,
    /// The key ID.
    pub key_id: u32,
}

/// A verified witness cosignature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub witness: String,
    /// The cosignature key ID.
    pub key_id: u32,
    /// When the witness cosigned, POSIX seconds.
    pub timestamp: u64,
}

/// A checkpoint every trusted key and witness signed.
#[derive(Clone, Debug)]
pub struct VerifiedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The signed note as served.
    pub note: String,
    /// One per trusted log key.
    pub log_signatures: Vec<LogSignature>,
    /// One per configured witness.
    pub cosignatures: Vec<Cosignature>,
}

/// A leaf proved into a checkpoint and read from its entry bundle.
#[derive(Clone, Debug)]
pub struct ProvenLeaf {
    /// Leaf index.
    pub index: u64,
    /// Size of the tree it was proved into.
    pub tree_size: u64,
    /// `SHA-256(0x00 || leaf)`.
    pub leaf_hash: Hash,
    /// Hashes in the audit path.
    pub proof_len: usize,
    /// Path of the entry bundle it was read from.
    pub bundle_path: String,
    /// The leaf bytes (canonical JSON).
    pub leaf: Vec<u8>,
    /// The parsed leaf.
    pub record: LeafRecord,
}

/// What `veritrail verify` reports, one line per check as it passes.
#[derive(Clone, Debug)]
pub enum Step {
    /// The checkpoint was fetched and parsed.
    Checkpoint(Checkpoint),
    /// A log signature verified.
    LogSignature(LogSignature),
    /// A witness cosignature verified.
    Cosignature(Cosignature),
    /// The checkpoint relates to the state as shown.
    Consistency(Extension),
    /// A leaf was proved and read.
    Inclusion(Box<ProvenLeaf>),
    /// The state file now holds the checkpoint.
    StateSaved {
        /// The state file.
        path: PathBuf,
        /// The size saved.
        size: u64,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Checkpoint(c) => write!(
                f,
                "checkpoint      {}: size {}, root {}",
                c.origin, c.size, c.root
            ),
            Step::LogSignature(s) => write!(
                f,
                "log signature   ok: {} key {} {:08x}",
                s.algorithm, s.key_name, s.key_id
            ),
            Step::Cosignature(c) => write!(
                f,
                "cosignature     ok: witness {} {:08x} at {}",
                c.witness,
                c.key_id,
                seconds_text(c.timestamp)
            ),
            Step::Consistency(Extension::FirstSeen) => write!(
                f,
                "consistency     no earlier checkpoint in the state file: trusting this one as the first seen"
            ),
            Step::Consistency(Extension::FromEmpty { new_size }) => write!(
                f,
                "consistency     ok: size 0 -> {new_size} (every tree extends the empty tree)"
            ),
            Step::Consistency(Extension::Unchanged { size }) => write!(
                f,
                "consistency     ok: same size {size} and root as the checkpoint seen before"
            ),
            Step::Consistency(Extension::Extends {
                old_size,
                new_size,
                proof_len,
            }) => write!(
                f,
                "consistency     ok: size {old_size} -> {new_size} extends the checkpoint seen before ({proof_len}-hash proof)"
            ),
            Step::Inclusion(l) => write!(
                f,
                "inclusion       ok: leaf {} in the tree of size {} ({}-hash proof), leaf hash {}\n\
                 entry bundle    ok: {} holds leaf {} with that hash\n\
                 leaf            {}",
                l.index,
                l.tree_size,
                l.proof_len,
                l.leaf_hash,
                l.bundle_path,
                l.index,
                String::from_utf8_lossy(&l.leaf)
            ),
            Step::StateSaved { path, size } => write!(
                f,
                "state           saved checkpoint of size {size} to {}",
                path.display()
            ),
        }
    }
}

fn seconds_text(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .filter(|&ms| check_unix_ms(ms).is_ok())
        .map(format_rfc3339_ms)
        .unwrap_or_else(|| format!("{secs} s"))
}

/// The answer of `GET /v1/proof/inclusion`, as a client reads it.
#[derive(Debug, Deserialize)]
pub struct InclusionAnswer {
    /// The leaf the proof is for.
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The leaf's hash, as the log claims it.
    pub leaf_hash: Hash,
    /// The RFC 9162 inclusion path, leaf to root.
    pub audit_path: Vec<Hash>,
}

/// The answer of `GET /v1/proof/consistency`, as a client reads it.
#[derive(Debug, Deserialize)]
pub struct ConsistencyAnswer {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// The RFC 9162 consistency proof.
    pub consistency: Vec<Hash>,
}

/// Follows one log for `veritrail verify`: the shared [`Follower`], with
/// its consistency proofs from the log's proof endpoint, and its failures
/// named by the keys as the user gave them.
pub struct LogFollower {
    follower: Follower,
}

impl LogFollower {
    /// A follower of the log at `url` that trusts `log_vkeys` (at least one;
    /// Ed25519 or ECDSA keys named by the origin) and requires a cosignature
    /// by each of `witness_vkeys` (cosignature keys, or Ed25519 keys taken
    /// as cosignature keys).
    pub fn new(
        url: &str,
        log_vkeys: &[String],
        witness_vkeys: &[String],
    ) -> Result<LogFollower, FollowError> {
        let follower = Follower::new(url, log_vkeys, witness_vkeys, None, Proofs::FromServer)
            .map_err(FollowError::Usage)?;
        Ok(LogFollower { follower })
    }

    /// Fetches `/checkpoint` and verifies it.
    async fn latest_checkpoint(&self) -> Result<VerifiedCheckpoint, FollowError> {
        let fetched = self
            .follower
            .fetch_checkpoint()
            .await
            .map_err(|f| self.error(f))?;
        Ok(self.verified(fetched.note, fetched.accepted))
    }

    /// Verifies a signed checkpoint: its origin is every trusted log key's
    /// name, each trusted log key signed it, each witness cosigned it (the
    /// check `latest_checkpoint` makes, on given bytes).
    #[cfg(test)]
    fn verify_checkpoint(&self, bytes: &[u8]) -> Result<VerifiedCheckpoint, VerificationFailure> {
        let accepted = self
            .follower
            .policy()
            .check(bytes, None)
            .map_err(|r| self.failure(r))?;
        Ok(self.verified(String::from_utf8_lossy(bytes).into_owned(), accepted))
    }

    /// What the policy accepted, with its signers named.
    fn verified(
        &self,
        note: String,
        accepted: crate::note::policy::Accepted,
    ) -> VerifiedCheckpoint {
        let policy = self.follower.policy();
        let log_signatures = accepted
            .log_signatures
            .iter()
            .map(|&i| {
                let v = &policy.log_keys()[i];
                LogSignature {
                    algorithm: self.follower.log_keys()[i].algorithm,
                    key_name: v.name().to_string(),
                    key_id: v.key_id(),
                }
            })
            .collect();
        let cosignatures = accepted
            .cosignatures
            .iter()
            .map(|&(i, timestamp)| {
                let w = &policy.witnesses()[i];
                Cosignature {
                    witness: w.name().to_string(),
                    key_id: w.key_id(),
                    timestamp,
                }
            })
            .collect();
        VerifiedCheckpoint {
            checkpoint: accepted.checkpoint,
            note,
            log_signatures,
            cosignatures,
        }
    }

    /// The error a follower failure is reported as.
    fn error(&self, f: Failure) -> FollowError {
        match f {
            Failure::Unreachable(e) => FollowError::Network(e),
            Failure::Rejected { rejection, .. } => self.failure(rejection).into(),
            Failure::Inconsistent {
                old_size,
                new_size,
                why,
            } => VerificationFailure::Inconsistent {
                old_size,
                new_size,
                why,
            }
            .into(),
            Failure::MalformedAnswer { what, why } => {
                VerificationFailure::MalformedAnswer { what, why }.into()
            }
            Failure::BadTiles(why) => VerificationFailure::MalformedAnswer {
                what: "the log's tiles".into(),
                why,
            }
            .into(),
        }
    }

    /// The failure a policy rejection is reported as, naming keys as given.
    fn failure(&self, r: Rejection) -> VerificationFailure {
        let log_key = |i: usize| self.follower.log_keys()[i].vkey.clone();
        let witness = |i: usize| self.follower.witness_vkeys()[i].clone();
        match r {
            Rejection::MalformedNote(e) | Rejection::MalformedCheckpoint(e) => {
                VerificationFailure::MalformedCheckpoint(e)
            }
            Rejection::OriginMismatch {
                key,
                key_name,
                origin,
            } => VerificationFailure::OriginMismatch {
                origin,
                key_name,
                key: log_key(key),
            },
            Rejection::BadLogSignature { key } => {
                VerificationFailure::BadLogSignature { key: log_key(key) }
            }
            Rejection::MissingLogSignature { key, .. } => {
                VerificationFailure::MissingLogSignature { key: log_key(key) }
            }
            Rejection::BadCosignature { witness: w } => {
                VerificationFailure::BadCosignature { key: witness(w) }
            }
            Rejection::TooFewCosignatures { missing, .. } => {
                VerificationFailure::MissingCosignature {
                    key: missing.first().map(|&w| witness(w)).unwrap_or_default(),
                }
            }
            Rejection::OriginChanged { known, origin } => VerificationFailure::OriginChanged {
                old: known,
                new: origin,
            },
            Rejection::SmallerThanKnown { known, size } => VerificationFailure::Rollback {
                old_size: known,
                new_size: size,
            },
            Rejection::RootDiffersAtKnownSize { size, known, root } => {
                VerificationFailure::SameSizeFork {
                    size,
                    old_root: known,
                    new_root: root,
                }
            }
        }
    }

    /// Checks that `new` extends `old`: same origin, not smaller, the same
    /// root at the same size, else a verified consistency proof (RFC 9162 §2.1.4.2).
    async fn check_extends(
        &mut self,
        old: &FollowerState,
        new: &VerifiedCheckpoint,
    ) -> Result<Extension, FollowError> {
        match self.follower.extends(old, &new.checkpoint).await {
            Ok(extension) => Ok(extension),
            Err(f) => Err(self.error(f)),
        }
    }

    /// Proves leaf `index` into `cp` (RFC 9162 §2.1.3.2) and reads the leaf
    /// from its entry bundle (c2sp.org/tlog-tiles), which must hold exactly
    /// the leaf the proof is for.
    async fn prove_leaf(
        &self,
        cp: &VerifiedCheckpoint,
        index: u64,
    ) -> Result<ProvenLeaf, FollowError> {
        let size = cp.checkpoint.size;
        let Some((bundle, position)) = tiles::entry_bundle_for(index, size) else {
            return Err(FollowError::Usage(format!(
                "leaf {index} is not in the checkpoint's tree of size {size}"
            )));
        };
        let path = format!("/v1/proof/inclusion?index={index}&tree_size={size}");
        let answer: InclusionAnswer = self
            .follower
            .get_typed(&path)
            .await
            .map_err(|f| self.error(f))?;
        if answer.leaf_index != index || answer.tree_size != size {
            return Err(VerificationFailure::MalformedAnswer {
                what: path,
                why: format!(
                    "a proof of leaf {index} in size {size} was asked, one of leaf {} in size {} came",
                    answer.leaf_index, answer.tree_size
                ),
            }
            .into());
        }
        merkle::verify_inclusion(
            index,
            size,
            &answer.leaf_hash,
            &answer.audit_path,
            &cp.checkpoint.root,
        )
        .map_err(|why| VerificationFailure::InclusionProof { index, size, why })?;

        let bundle_path = bundle.entries_path();
        let data = self
            .follower
            .client()
            .get_bytes(&format!("/{bundle_path}"))
            .await?;
        let malformed = |why: String| VerificationFailure::MalformedBundle {
            path: bundle_path.clone(),
            why,
        };
        let entries = tiles::decode_bundle(&data).map_err(|e| malformed(e.to_string()))?;
        if entries.len() != usize::from(bundle.width) {
            return Err(malformed(format!(
                "it holds {} entries; at tree size {size} it holds {}",
                entries.len(),
                bundle.width
            ))
            .into());
        }
        let leaf = entries
            .into_iter()
            .nth(position)
            .ok_or_else(|| malformed(format!("no entry at position {position}")))?;
        let bundle_hash = merkle::leaf_hash(&leaf);
        if bundle_hash != answer.leaf_hash {
            return Err(VerificationFailure::LeafMismatch {
                index,
                path: bundle_path,
                bundle_hash,
                proof_hash: answer.leaf_hash,
            }
            .into());
        }
        let record = LeafRecord::parse(&leaf).map_err(|e| VerificationFailure::MalformedLeaf {
            index,
            why: e.to_string(),
        })?;
        Ok(ProvenLeaf {
            index,
            tree_size: size,
            leaf_hash: bundle_hash,
            proof_len: answer.audit_path.len(),
            bundle_path,
            leaf,
            record,
        })
    }
}

/// What one `verify_log` run checks besides the checkpoint itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Prove this leaf into the checkpoint.
    pub index: Option<u64>,
    /// Check consistency with the checkpoint in this file, and save the new
    /// one there when everything verified.
    pub state: Option<PathBuf>,
}

/// Fetches and verifies the latest checkpoint, checks that it extends the
/// state, optionally proves a leaf, and only then saves the new state.
/// Reports each check as it passes.
pub async fn verify_log(
    follower: &mut LogFollower,
    options: &VerifyOptions,
    on_step: &mut (dyn FnMut(&Step) + Send),
) -> Result<VerifiedCheckpoint, FollowError> {
    let old = match &options.state {
        Some(path) => FollowerState::load(path)?,
        None => None,
    };
    let cp = follower.latest_checkpoint().await?;
    on_step(&Step::Checkpoint(cp.checkpoint.clone()));
    for s in &cp.log_signatures {
        on_step(&Step::LogSignature(s.clone()));
    }
    for c in &cp.cosignatures {
        on_step(&Step::Cosignature(c.clone()));
    }
    if options.state.is_some() {
        let extension = match &old {
            Some(old) => follower.check_extends(old, &cp).await?,
            None => Extension::FirstSeen,
        };
        on_step(&Step::Consistency(extension));
    }
    if let Some(index) = options.index {
        let leaf = follower.prove_leaf(&cp, index).await?;
        on_step(&Step::Inclusion(Box::new(leaf)));
    }
    if let Some(path) = &options.state {
        FollowerState::new(&cp.checkpoint, cp.note.clone(), None).save(path)?;
        on_step(&Step::StateSaved {
            path: path.clone(),
            size: cp.checkpoint.size,
        });
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::keys::LogKeys;
    use crate::note::{CosignatureSigner, NoteSigner};

    const ORIGIN: &str = "test.example/log";

    fn keys() -> LogKeys {
        LogKeys::from_secret_bytes(&[5u8; 32], &[6u8; 32]).unwrap()
    }

    fn signed(size: u64, root: Hash, signers: &[&dyn NoteSigner]) -> Vec<u8> {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
            extensions: vec![],
        };
        let mut note = cp.to_note().unwrap();
        for s in signers {
            note.sign(*s).unwrap();
        }
        note.to_bytes()
    }

    fn follower(log: &[String], witnesses: &[String]) -> LogFollower {
        LogFollower::new("http://127.0.0.1:9", log, witnesses).unwrap()
    }

    #[test]
    fn every_trusted_key_and_witness_must_sign() {
        let k = keys();
        let s = k.signers(ORIGIN).unwrap();
        let v = k.verifier_keys(ORIGIN).unwrap();
        let w = CosignatureSigner::new(
            "w.example",
            ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
            || 1_700_000_000,
        )
        .unwrap();
        let root = merkle::empty_root();
        let both = signed(0, root, &[&s.ecdsa, &s.ed25519]);
        let only_ed = signed(0, root, &[&s.ed25519]);
        let cosigned = signed(0, root, &[&s.ecdsa, &s.ed25519, &w]);
        let f = follower(&[v.ecdsa.clone(), v.ed25519.clone()], &[]);
        let ok = f.verify_checkpoint(&both).unwrap();
        assert_eq!(ok.log_signatures.len(), 2);
        assert!(matches!(
            f.verify_checkpoint(&only_ed),
            Err(VerificationFailure::MissingLogSignature { .. })
        ));
        let fw = follower(std::slice::from_ref(&v.ed25519), &[w.verifier_key()]);
        assert!(matches!(
            fw.verify_checkpoint(&both),
            Err(VerificationFailure::MissingCosignature { .. })
        ));
        let ok = fw.verify_checkpoint(&cosigned).unwrap();
        assert_eq!(ok.cosignatures[0].timestamp, 1_700_000_000);
        // A tampered signature byte is named as such.
        let mut bad = both.clone();
        let text = String::from_utf8(bad.clone()).unwrap();
        let at = text.rfind('\n').unwrap() - 3;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            f.verify_checkpoint(&bad),
            Err(VerificationFailure::BadLogSignature { .. })
        ));
    }

    #[test]
    fn keys_of_another_log_or_kind_are_refused() {
        let other = keys().verifier_keys("other.example/log").unwrap();
        let s = keys().signers(ORIGIN).unwrap();
        let f = follower(&[other.ed25519], &[]);
        assert!(matches!(
            f.verify_checkpoint(&signed(0, merkle::empty_root(), &[&s.ed25519])),
            Err(VerificationFailure::OriginMismatch { .. })
        ));
        let w = CosignatureSigner::new(
            "w.example",
            ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
            || 0,
        )
        .unwrap();
        assert!(matches!(
            LogFollower::new("http://127.0.0.1:9", &[w.verifier_key()], &[]),
            Err(FollowError::Usage(_))
        ));
        assert!(matches!(
            LogFollower::new("http://127.0.0.1:9", &[], &[]),
            Err(FollowError::Usage(_))
        ));
        let ecdsa = keys().verifier_keys(ORIGIN).unwrap().ecdsa;
        assert!(matches!(
            LogFollower::new(
                "http://127.0.0.1:9",
                std::slice::from_ref(&ecdsa),
                std::slice::from_ref(&ecdsa)
            ),
            Err(FollowError::Usage(_))
        ));
    }
}
