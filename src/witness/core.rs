//! The witness's decision: whether to cosign a checkpoint, and the state it
//! keeps per log (c2sp.org/tlog-witness, `add-checkpoint`).
//!
//! For each log it witnesses, the witness remembers the latest checkpoint it
//! cosigned. A new checkpoint is cosigned only if a trusted log key signed
//! it and it is consistent with that remembered one; the new state is
//! durable before the cosignature is handed out.
//!
//! Invariants:
//! - the remembered checkpoint of a log only ever moves to a larger or equal
//!   tree consistent with it: the check and the update are one atomic step
//!   (a per-origin lock, and a compare-and-swap in the store), so two
//!   concurrent requests can never both build on the same old state;
//! - nothing is cosigned before the state that justifies it is durable.
//!
//! Same size, different root: this witness answers 422, as C2SP
//! tlog-witness HEAD does (v1.0.0 said 409 without a size body). A 409 then
//! always carries `text/x.tlog.size` and always means "your old size is
//! stale", so a client may retry it, while 422 always means "this checkpoint
//! contradicts what I saw" and must raise an alarm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::request::{AddCheckpoint, RequestError};
use super::store::WitnessStore;
use crate::merkle::{self, Hash};
use crate::note::{CosignatureSigner, Note, NoteError, NoteSignature, NoteSigner, NoteVerifier};
use crate::store::StoreError;

/// A log this witness cosigns for: its origin and the keys that sign its
/// checkpoints (Ed25519 0x01 or ECDSA 0x02 verifier keys).
pub struct WitnessedLog {
    /// The log's origin, as on the first line of its checkpoints.
    pub origin: String,
    /// Verifiers of the log's signatures.
    pub verifiers: Vec<Box<dyn NoteVerifier>>,
}

/// The latest checkpoint cosigned for one log, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignedState {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The checkpoint note with the log's signatures and this witness's cosignature.
    pub note: String,
}

impl CosignedState {
    fn encode(&self) -> Vec<u8> {
        // A struct of a number and two strings always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<CosignedState, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("witness state record: {e}")))
    }
}

/// Why a checkpoint was not cosigned, with the HTTP status of each case
/// (c2sp.org/tlog-witness §add-checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// 400: the body does not parse.
    #[error("malformed request: {0}")]
    Malformed(#[from] RequestError),
    /// 404: this witness does not witness the origin.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 403: no trusted log key signed the checkpoint, or a signature by a
    /// trusted key does not verify.
    #[error("checkpoint signature: {0}")]
    BadSignature(NoteError),
    /// 400: the old size is beyond the checkpoint's size.
    #[error("old size {old} is larger than the checkpoint's size {size}")]
    OldBeyondCheckpoint {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// 409 with `text/x.tlog.size`: the old size is not the size this
    /// witness last cosigned.
    #[error("old size does not match the latest cosigned size {known}")]
    StaleOldSize {
        /// The size of the latest checkpoint cosigned for the log (0 if none).
        known: u64,
    },
    /// 422: a consistency proof came with old size 0.
    #[error("a request with old size 0 must carry an empty proof")]
    ProofFromEmptyTree,
    /// 422: a size-0 checkpoint whose root is not SHA-256("").
    #[error("a checkpoint of size 0 must have the empty tree's root")]
    BadEmptyRoot,
    /// 422: same size as the cosigned checkpoint, different root.
    #[error("the checkpoint has the size {size} of the latest cosigned one but another root")]
    RootMismatch {
        /// The shared size.
        size: u64,
    },
    /// 422: the consistency proof does not verify.
    #[error("consistency proof from {old} to {size} does not verify: {why}")]
    BadProof {
        /// Old size.
        old: u64,
        /// New size.
        size: u64,
        /// What failed.
        why: String,
    },
    /// 500: the state could not be read or made durable.
    #[error("witness state: {0}")]
    Store(#[from] StoreError),
    /// 500: cosigning failed.
    #[error("cosigning failed: {0}")]
    Sign(NoteError),
}

impl AddError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AddError::Malformed(RequestError::TooLarge(_)) => 413,
            AddError::Malformed(_) | AddError::OldBeyondCheckpoint { .. } => 400,
            AddError::UnknownLog(_) => 404,
            AddError::BadSignature(_) => 403,
            AddError::StaleOldSize { .. } => 409,
            AddError::ProofFromEmptyTree
            | AddError::BadEmptyRoot
            | AddError::RootMismatch { .. }
            | AddError::BadProof { .. } => 422,
            AddError::Store(_) | AddError::Sign(_) => 500,
        }
    }
}

/// Lowercase hex SHA-256 of an origin: the path segment of the monitoring
/// endpoint `GET /<hex>/checkpoint` (c2sp.org/tlog-witness HEAD).
pub fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

/// The witness: configured logs, its cosigning key, and its state.
pub struct Witness {
    logs: HashMap<String, WitnessedLog>,
    by_hash: HashMap<String, String>,
    signer: CosignatureSigner,
    store: Arc<dyn WitnessStore>,
    locks: HashMap<String, Mutex<()>>,
}

impl Witness {
    /// A witness of `logs` that cosigns with `signer` and keeps its state in `store`.
    pub fn new(
        logs: Vec<WitnessedLog>,
        signer: CosignatureSigner,
        store: Arc<dyn WitnessStore>,
    ) -> Witness {
        let mut map = HashMap::new();
        let mut by_hash = HashMap::new();
        let mut locks = HashMap::new();
        for log in logs {
            by_hash.insert(origin_hash(&log.origin), log.origin.clone());
            locks.insert(log.origin.clone(), Mutex::new(()));
            map.insert(log.origin.clone(), log);
        }
        Witness {
            logs: map,
            by_hash,
            signer,
            store,
            locks,
        }
    }

    /// The cosigner's verifier key (`name+hex8+base64(0x04 || key)`).
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The origins witnessed.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// The latest cosigned state of `origin`.
    pub fn state(&self, origin: &str) -> Result<Option<CosignedState>, StoreError> {
        self.store
            .get(origin)?
            .map(|b| CosignedState::decode(&b))
            .transpose()
    }

    /// The latest cosigned checkpoint of the log whose origin hashes to
    /// `hex` (see [`origin_hash`]), if any.
    pub fn latest_by_origin_hash(&self, hex: &str) -> Result<Option<CosignedState>, StoreError> {
        match self.by_hash.get(hex) {
            Some(origin) => self.state(origin),
            None => Ok(None),
        }
    }

    /// Handles one `add-checkpoint` body. On success the new state is
    /// durable and the witness's cosignature line(s) are returned. Blocking
    /// (the store syncs to disk).
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<NoteSignature>, AddError> {
        let req = AddCheckpoint::parse(body)?;
        let cp = &req.checkpoint;
        let log = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| AddError::UnknownLog(cp.origin.clone()))?;
        let verifiers: Vec<&dyn NoteVerifier> = log.verifiers.iter().map(|v| v.as_ref()).collect();
        // Unknown signatures are ignored; a failing trusted one rejects the
        // note; none verified rejects it (c2sp.org/signed-note §Verification).
        req.note
            .verify(&verifiers)
            .map_err(AddError::BadSignature)?;
        if req.old_size > cp.size {
            return Err(AddError::OldBeyondCheckpoint {
                old: req.old_size,
                size: cp.size,
            });
        }
        // One request per origin at a time: the check below and the update
        // after it must not interleave with another request's.
        let lock = self
            .locks
            .get(&cp.origin)
            .ok_or_else(|| AddError::UnknownLog(cp.origin.clone()))?;
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.store.get(&cp.origin)?;
        let state = stored.as_deref().map(CosignedState::decode).transpose()?;
        let known = state.as_ref().map_or(0, |s| s.size);
        if req.old_size != known {
            return Err(AddError::StaleOldSize { known });
        }
        check_consistency(state.as_ref(), &req)?;
        let cosignature = self.cosign(&req.note)?;
        let mut cosigned = req.note.clone();
        cosigned.add_signature(cosignature.clone());
        let new_state = CosignedState {
            size: cp.size,
            root: cp.root,
            note: String::from_utf8(cosigned.to_bytes())
                .map_err(|_| AddError::Sign(NoteError::InvalidUtf8))?,
        };
        // The compare-and-swap keeps the update atomic even if another
        // writer of the store slipped in; the loser learns the new size.
        match self
            .store
            .compare_and_swap(&cp.origin, stored.as_deref(), &new_state.encode())?
        {
            Ok(()) => Ok(vec![cosignature]),
            Err(current) => {
                let known = current
                    .as_deref()
                    .map(CosignedState::decode)
                    .transpose()?
                    .map_or(0, |s| s.size);
                Err(AddError::StaleOldSize { known })
            }
        }
    }

    fn cosign(&self, note: &Note) -> Result<NoteSignature, AddError> {
        let signature = self
            .signer
            .sign(note.text().as_bytes())
            .map_err(AddError::Sign)?;
        Ok(NoteSignature {
            name: self.signer.name().to_owned(),
            key_id: self.signer.key_id(),
            signature,
        })
    }
}

/// The checks between the stored state and a request whose old size is the
/// stored size.
fn check_consistency(state: Option<&CosignedState>, req: &AddCheckpoint) -> Result<(), AddError> {
    let cp = &req.checkpoint;
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(AddError::BadEmptyRoot);
    }
    let old = req.old_size;
    if old == 0 {
        // Nothing to be consistent with: the empty tree is a prefix of every
        // tree, and the proof MUST be empty.
        if !req.proof.is_empty() {
            return Err(AddError::ProofFromEmptyTree);
        }
        return Ok(());
    }
    // old == stored size > 0, so there is a stored state.
    let Some(state) = state else {
        return Err(AddError::StaleOldSize { known: 0 });
    };
    if old == cp.size {
        if cp.root != state.root {
            return Err(AddError::RootMismatch { size: cp.size });
        }
        if !req.proof.is_empty() {
            return Err(AddError::BadProof {
                old,
                size: cp.size,
                why: "a proof between equal sizes must be empty".into(),
            });
        }
        return Ok(());
    }
    // RFC 9162 §2.1.4.2.
    merkle::verify_consistency(old, cp.size, &state.root, &cp.root, &req.proof).map_err(|e| {
        AddError::BadProof {
            old,
            size: cp.size,
            why: e.to_string(),
        }
    })
}
