//! The log's published history: recognising a checkpoint as the log's own
//! (its origin, its signatures) and checking a stored tree against it.
//!
//! Used wherever a tree must be shown to extend what was published: fsck,
//! restore, and `serve --known-checkpoint`, which refuses to start a log
//! (typically a restored backup) that is older than, or forks from, a
//! checkpoint the world has already seen.
//!
//! Reading a checkpoint from a file or URL is the one I/O this module does.
//!
//! Invariant: [`check_tree_against`] accepts a stored tree only if its root
//! at the checkpoint's size equals the signed root; a checkpoint larger than
//! the tree is never accepted, because a tree that grows from there would
//! fork the published history.

use crate::client::Client;
use crate::merkle::{self, Hash};
use crate::note::keys::{LogKeys, LogVerifierKeys};
use crate::note::{
    Checkpoint, CheckpointPolicy, MAX_NOTE_SIZE, NoteError, NoteVerifier, Rejection,
    parse_verifier_key,
};
use crate::sequencer::TileSource;
use crate::store::Store;

/// Why a checkpoint is not the log's, or the tree does not match it.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Not a signed checkpoint note.
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// A checkpoint of another log.
    #[error("the checkpoint is for origin {found:?}, this log is {ours:?}")]
    OtherLog {
        /// The checkpoint's origin.
        found: String,
        /// This log's origin.
        ours: String,
    },
    /// The log's signatures are missing or do not verify.
    #[error("the checkpoint's log signatures do not verify: {0}")]
    BadSignature(String),
    /// The tree is smaller than a published checkpoint.
    #[error(
        "a checkpoint of size {published} was published, but this tree has only {tree_size} entries"
    )]
    Behind {
        /// The published size.
        published: u64,
        /// The stored tree size.
        tree_size: u64,
    },
    /// The tree's root at the checkpoint's size differs from the signed root.
    #[error("at size {size} the published root is {published}, this tree's is {ours}")]
    Forked {
        /// The checkpoint's size.
        size: u64,
        /// The signed root.
        published: Hash,
        /// The stored tree's root at that size.
        ours: Hash,
    },
    /// The tree could not be read.
    #[error("couldn't compute this tree's root: {0}")]
    Unreadable(String),
}

/// Verifies checkpoints with the log's two keys (ECDSA P-256 and Ed25519,
/// both named after the origin).
pub struct LogVerifiers {
    origin: String,
    verifiers: Vec<Box<dyn NoteVerifier>>,
}

/// How many of the log's signatures a checkpoint must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    /// Both: what the log itself stores and serves.
    Both,
    /// At least one: enough to know the log published it (a mirror may
    /// pass on a note with only the signature its clients need).
    AtLeastOne,
}

impl LogVerifiers {
    /// Verifiers for `origin` from the log's private keys.
    pub fn from_keys(keys: &LogKeys, origin: &str) -> Result<LogVerifiers, NoteError> {
        let signers = keys.signers(origin)?;
        Ok(LogVerifiers {
            origin: origin.to_string(),
            verifiers: vec![
                Box::new(signers.ecdsa.verifier()),
                Box::new(signers.ed25519.verifier()),
            ],
        })
    }

    /// Verifiers for `origin` from the log's verifier keys (`name+hex+base64`).
    pub fn from_verifier_keys(
        origin: &str,
        vkeys: &LogVerifierKeys,
    ) -> Result<LogVerifiers, NoteError> {
        let verifiers = vec![
            parse_verifier_key(&vkeys.ecdsa)?,
            parse_verifier_key(&vkeys.ed25519)?,
        ];
        Ok(LogVerifiers {
            origin: origin.to_string(),
            verifiers,
        })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Parses a signed checkpoint note and checks that it is this log's:
    /// its origin, and `need` of the log's signatures (a present but bad
    /// signature of a log key is always an error; other keys' signatures,
    /// such as witness cosignatures, are ignored).
    pub fn verify(&self, note: &[u8], need: Signatures) -> Result<Checkpoint, HistoryError> {
        let keys = self
            .verifiers
            .iter()
            .map(|v| Box::new(v.as_ref()) as Box<dyn NoteVerifier + '_>)
            .collect();
        let quorum = match need {
            Signatures::Both => self.verifiers.len(),
            Signatures::AtLeastOne => 1,
        };
        let policy = CheckpointPolicy::new(keys)
            .with_log_quorum(quorum)
            .map_err(|e| HistoryError::BadSignature(e.to_string()))?;
        match policy.check(note, None) {
            Ok(accepted) => Ok(accepted.checkpoint),
            Err(Rejection::MalformedNote(e) | Rejection::MalformedCheckpoint(e)) => {
                Err(HistoryError::Malformed(e.to_string()))
            }
            Err(Rejection::OriginMismatch { origin, .. }) => Err(HistoryError::OtherLog {
                found: origin,
                ours: self.origin.clone(),
            }),
            Err(Rejection::BadLogSignature { key }) => {
                let v = &self.verifiers[key];
                Err(HistoryError::BadSignature(
                    NoteError::InvalidSignature {
                        name: v.name().to_string(),
                        key_id: v.key_id(),
                    }
                    .to_string(),
                ))
            }
            Err(Rejection::MissingLogSignature { signed: 0, .. }) => Err(
                HistoryError::BadSignature(NoteError::NoVerifiedSignature.to_string()),
            ),
            Err(Rejection::MissingLogSignature { .. }) => Err(HistoryError::BadSignature(
                "one of the log's two signatures is missing".into(),
            )),
            Err(other) => Err(HistoryError::BadSignature(other.to_string())),
        }
    }
}

/// Checks that the stored tree of `tree_size` entries contains the
/// checkpoint `cp`: not smaller, and the same root at its size, computed
/// from the stored tiles.
pub fn check_tree_against(
    store: &dyn Store,
    tree_size: u64,
    cp: &Checkpoint,
) -> Result<(), HistoryError> {
    if cp.size > tree_size {
        return Err(HistoryError::Behind {
            published: cp.size,
            tree_size,
        });
    }
    let ours = merkle::tree_root(cp.size, &TileSource::new(store))
        .map_err(|e| HistoryError::Unreadable(e.to_string()))?;
    if ours != cp.root {
        return Err(HistoryError::Forked {
            size: cp.size,
            published: cp.root,
            ours,
        });
    }
    Ok(())
}

/// Reads a checkpoint note from a file, or from a URL: a server's base URL
/// (`/checkpoint` is appended) or the full URL of a checkpoint. HTTPS trusts
/// the system's web roots, and the CA certificates in `ca_pem` if given.
pub async fn fetch_checkpoint(source: &str, ca_pem: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let bytes = if let Some(rest) = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
    {
        let path_given = rest
            .split_once('/')
            .is_some_and(|(_, path)| !path.trim_end_matches('/').is_empty());
        let (base, path) = if path_given {
            (source, "")
        } else {
            (source.trim_end_matches('/'), "/checkpoint")
        };
        let client = match ca_pem {
            Some(pem) => Client::with_ca(base, None, pem),
            None => Client::new(base, None),
        }
        .map_err(|e| e.to_string())?;
        client.get_bytes(path).await.map_err(|e| e.to_string())?
    } else {
        std::fs::read(source).map_err(|e| format!("couldn't read {source}: {e}"))?
    };
    if bytes.len() > MAX_NOTE_SIZE {
        return Err(format!("{source} is larger than any checkpoint note"));
    }
    Ok(bytes)
}

/// Refuses a tree that is older than, or forks from, any checkpoint of
/// this log published at `sources` (files or URLs, see
/// [`fetch_checkpoint`]). Fails closed: a source that cannot be read or
/// does not hold one of this log's checkpoints is an error too. Returns,
/// per source, the size of the checkpoint found there.
pub async fn check_known_checkpoints(
    sources: &[String],
    ca_pem: Option<&[u8]>,
    verifiers: &LogVerifiers,
    store: &dyn Store,
    tree_size: u64,
) -> Result<Vec<(String, u64)>, String> {
    let mut seen = Vec::new();
    for source in sources {
        let note = fetch_checkpoint(source, ca_pem).await.map_err(|e| {
            format!("couldn't read the known checkpoint {source}: {e} (remove it from the known checkpoints only if it is gone for good)")
        })?;
        let cp = verifiers
            .verify(&note, Signatures::AtLeastOne)
            .map_err(|e| format!("the known checkpoint {source} is not usable: {e}"))?;
        match check_tree_against(store, tree_size, &cp) {
            Ok(()) => seen.push((source.clone(), cp.size)),
            Err(HistoryError::Behind {
                published,
                tree_size,
            }) => {
                return Err(format!(
                    "this log published a checkpoint of size {published} ({source}), but this data directory holds only {tree_size} entries: it is older than the log's published history (a restored backup?). Serving it would fork the log: new events would take indices that published checkpoints already commit to other entries. Restore a newer backup, or recover the missing entries, before starting."
                ));
            }
            Err(e @ HistoryError::Forked { .. }) => {
                return Err(format!(
                    "this tree does not match the log's published checkpoint at {source}: {e}. It forks the published history; do not serve it."
                ));
            }
            Err(e) => return Err(format!("checking {source}: {e}")),
        }
    }
    Ok(seen)
}
