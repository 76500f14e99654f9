//! The checkpoint signer: the log's origin and keys, turning a tree size
//! and root into a signed C2SP checkpoint (tlog-checkpoint in a signed
//! note, one signature per log key).

use super::Published;
use crate::merkle::Hash;
use crate::note::keys::LogKeys;
use crate::note::{Checkpoint, Note, NoteSigner};

/// Signs checkpoints with the log's keys.
pub struct CheckpointSigner {
    /// The log's origin (and key name).
    origin: String,
    /// Log keys, in the order their signatures appear.
    signers: Vec<Box<dyn NoteSigner>>,
}

impl CheckpointSigner {
    /// A signer for `origin` with `signers`, whose signatures appear in
    /// that order.
    pub fn new(origin: impl Into<String>, signers: Vec<Box<dyn NoteSigner>>) -> CheckpointSigner {
        CheckpointSigner {
            origin: origin.into(),
            signers,
        }
    }

    /// A signer for `origin` with both log keys: the ECDSA P-256 signature
    /// first, then the Ed25519 one (the order every checkpoint of the log
    /// has).
    pub fn from_keys(keys: &LogKeys, origin: &str) -> Result<CheckpointSigner, String> {
        let s = keys
            .signers(origin)
            .map_err(|e| format!("origin {origin:?}: {e}"))?;
        Ok(CheckpointSigner::new(
            origin,
            vec![Box::new(s.ecdsa), Box::new(s.ed25519)],
        ))
    }

    /// Signs a checkpoint for `size` and `root`.
    pub fn sign(&self, size: u64, root: Hash, now_ms: i64) -> Result<Published, String> {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        let mut note = Note::new(&checkpoint.to_text())
            .map_err(|e| format!("checkpoint text rejected: {e}"))?;
        for signer in &self.signers {
            note.sign(signer.as_ref())
                .map_err(|e| format!("signing the checkpoint failed: {e}"))?;
        }
        let note = String::from_utf8(note.to_bytes())
            .map_err(|_| "signed note is not UTF-8".to_string())?;
        Ok(Published {
            checkpoint,
            note,
            published_at_ms: now_ms,
        })
    }
}
