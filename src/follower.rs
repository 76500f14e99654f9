//! The one log follower behind `veritrail verify` and `veritrail monitor`:
//! it fetches a log's checkpoint, checks it with the trust policy
//! ([`CheckpointPolicy`]), proves that it extends the checkpoint accepted
//! before (the [`FollowerState`]), and saves the new state.
//!
//! The consistency proof comes from one of two places ([`Proofs`]): the
//! log's proof endpoint (`verify`, which reports the proof it checked), or
//! the log's tiles (`monitor`, which computes the proof itself and never
//! trusts the proof endpoint). Either way the proof is verified against both
//! signed roots (RFC 9162 §2.1.4.2). What a failure is called, and what the
//! command does about it, is left to the command: failures carry the policy's
//! own [`Rejection`].
//!
//! Invariant: the state only ever moves to a checkpoint that verified and
//! extends the previous state, and is replaced atomically (temporary file,
//! fsync, rename), so a fork or a rollback never overwrites the evidence of
//! what was seen before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError};
use crate::merkle::{self, Hash, NodeId, SubtreeSource};
use crate::note::policy;
use crate::note::{
    Checkpoint, CheckpointPolicy, CosignatureVerifier, Known, NoteError, NoteVerifier, Rejection,
    SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ECDSA, SIG_TYPE_ED25519, parse_verifier_key,
    split_verifier_key,
};
use crate::tiles::{self, Tile, TileBuilder};

/// The last checkpoint a follower accepted, kept between runs as JSON: one
/// format for `veritrail verify --state` and `veritrail monitor --state`.
/// [`FollowerState::load`] also reads the monitor's earlier format
/// (`{"note", "full"}`), so state files written before still load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerState {
    /// The log's origin.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash (base64).
    pub root: Hash,
    /// The signed note, as evidence of what the log showed.
    pub note: String,
    /// With `monitor --full`: the tiles recomputed from the entries so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<TileBuilder>,
}

/// The monitor's earlier state file: the note only, and the tiles.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EarlierMonitorState {
    note: Option<String>,
    #[serde(default)]
    full: Option<TileBuilder>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state file {}: {why}", path.display())]
pub struct StateError {
    /// The state file.
    pub path: PathBuf,
    /// What went wrong.
    pub why: String,
}

impl FollowerState {
    /// The state after accepting `checkpoint`, shown as `note`.
    pub fn new(checkpoint: &Checkpoint, note: String, full: Option<TileBuilder>) -> FollowerState {
        FollowerState {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: checkpoint.root,
            note,
            full,
        }
    }

    /// The checkpoint this state holds.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            origin: self.origin.clone(),
            size: self.size,
            root: self.root,
            extensions: Vec::new(),
        }
    }

    /// Reads a state file's bytes: this format, or the monitor's earlier
    /// one (whose checkpoint verified when it was saved, so it is only
    /// parsed here). `None` for an earlier state without a checkpoint.
    pub fn from_json(bytes: &[u8]) -> Result<Option<FollowerState>, String> {
        let current = match serde_json::from_slice::<FollowerState>(bytes) {
            Ok(s) => return Ok(Some(s)),
            Err(e) => e,
        };
        // The earlier format always wrote its `note` field, null or not.
        let earlier = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .filter(|v| v.get("note").is_some())
            .and_then(|v| serde_json::from_value::<EarlierMonitorState>(v).ok());
        let Some(earlier) = earlier else {
            return Err(format!("not a state file: {current}"));
        };
        let Some(note) = earlier.note else {
            return Ok(None);
        };
        let cp = crate::note::Note::parse(note.as_bytes())
            .and_then(|n| Checkpoint::from_note(&n))
            .map_err(|e| format!("not a state file: its checkpoint: {e}"))?;
        Ok(Some(FollowerState::new(&cp, note, earlier.full)))
    }

    /// Reads the state file; `None` when it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<FollowerState>, StateError> {
        let state_err = |why: String| StateError {
            path: path.to_path_buf(),
            why,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_err(e.to_string())),
        };
        FollowerState::from_json(&bytes).map_err(state_err)
    }

    /// Replaces the state file atomically: a crash leaves the old state or
    /// the new one, never a mix.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let state_err = |why: String| StateError {
            path: path.to_path_buf(),
            why,
        };
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| state_err(e.to_string()))?;
        json.push(b'\n');
        crate::durable::replace(path, &json, crate::durable::Secrecy::Public)
            .map_err(|e| state_err(e.to_string()))
    }
}

/// One log key the follower trusts, as its user gave it.
pub struct TrustedLogKey {
    /// The verifier key as given.
    pub vkey: String,
    /// `ecdsa` or `ed25519`.
    pub algorithm: &'static str,
}

/// The parsed log keys, in the order given, as the policy takes them.
pub type LogVerifiers = Vec<Box<dyn NoteVerifier>>;

/// Parses the log keys a follower is given: Ed25519 or ECDSA verifier keys
/// named by the log's origin, at least one. A witness key given as a log key
/// is refused with a hint. Errors say which key and why.
pub fn parse_log_keys(log_vkeys: &[String]) -> Result<(Vec<TrustedLogKey>, LogVerifiers), String> {
    if log_vkeys.is_empty() {
        return Err("give at least one log key (--vkey)".into());
    }
    let mut keys = Vec::with_capacity(log_vkeys.len());
    let mut verifiers = Vec::with_capacity(log_vkeys.len());
    for vkey in log_vkeys {
        let bad = |e: NoteError| format!("log key {vkey}: {e}");
        let algorithm = match split_verifier_key(vkey).map_err(bad)?.key_type {
            SIG_TYPE_ED25519 => "ed25519",
            SIG_TYPE_ECDSA => "ecdsa",
            SIG_TYPE_COSIGNATURE_V1 => {
                return Err(format!(
                    "log key {vkey} is a witness cosignature key; pass it as --witness-vkey"
                ));
            }
            other => return Err(bad(NoteError::UnsupportedKeyType(other))),
        };
        verifiers.push(parse_verifier_key(vkey).map_err(bad)?);
        keys.push(TrustedLogKey {
            vkey: vkey.clone(),
            algorithm,
        });
    }
    Ok((keys, verifiers))
}

/// Parses witness keys: cosignature keys, or Ed25519 keys taken as the same
/// witness's cosignature keys.
pub fn parse_witness_keys(witness_vkeys: &[String]) -> Result<Vec<CosignatureVerifier>, String> {
    witness_vkeys
        .iter()
        .map(|vkey| {
            CosignatureVerifier::from_witness_key(vkey)
                .map_err(|e| format!("witness key {vkey}: {e}"))
        })
        .collect()
}

/// Where the follower takes its consistency proofs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proofs {
    /// The log's `/v1/proof/consistency` endpoint.
    FromServer,
    /// Computed here from the log's hash tiles (c2sp.org/tlog-tiles).
    FromTiles,
}

/// What the follower could not verify or could not do.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The log could not be reached, or refused a request.
    #[error(transparent)]
    Unreachable(ClientError),
    /// The checkpoint policy refused a checkpoint.
    #[error("{rejection}")]
    Rejected {
        /// The rule it broke.
        rejection: Rejection,
        /// The signed note, when it was the one fetched.
        note: Option<String>,
    },
    /// The log has not shown that a checkpoint extends an earlier one.
    #[error("{why}")]
    Inconsistent {
        /// The earlier size.
        old_size: u64,
        /// The later size.
        new_size: u64,
        /// Why not.
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
    /// A tile the checkpoint requires is not served, or is malformed.
    #[error("{0}")]
    BadTiles(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            // An answer that does not parse is something the log served.
            ClientError::Malformed { url, why } => Failure::MalformedAnswer { what: url, why },
            other => Failure::Unreachable(other),
        }
    }
}

/// How a checkpoint relates to the state seen before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    /// No state yet: this checkpoint is the first one seen (trust on first use).
    FirstSeen,
    /// The state was the empty tree, which every tree extends.
    FromEmpty {
        /// The new size.
        new_size: u64,
    },
    /// Same size, same root.
    Unchanged {
        /// The size.
        size: u64,
    },
    /// A verified consistency proof.
    Extends {
        /// Size seen before.
        old_size: u64,
        /// Size now.
        new_size: u64,
        /// Hashes in the proof.
        proof_len: usize,
    },
}

/// A checkpoint the policy accepted, with the note as served.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The signed note as served.
    pub note: String,
    /// What the policy found.
    pub accepted: policy::Accepted,
}

/// Follows one log: its checkpoints, their consistency, its tiles.
pub struct Follower {
    client: Client,
    policy: CheckpointPolicy<'static>,
    log_keys: Vec<TrustedLogKey>,
    witness_vkeys: Vec<String>,
    proofs: Proofs,
    /// Tiles and entry bundles fetched so far: they never change once served.
    cache: HashMap<String, Vec<u8>>,
}

impl Follower {
    /// A follower of the log at `url` that requires a signature by every one
    /// of `log_vkeys` and a cosignature by `witness_quorum` (default: all)
    /// of `witness_vkeys`. The error is a usage message naming the key.
    pub fn new(
        url: &str,
        log_vkeys: &[String],
        witness_vkeys: &[String],
        witness_quorum: Option<usize>,
        proofs: Proofs,
    ) -> Result<Follower, String> {
        let (log_keys, verifiers) = parse_log_keys(log_vkeys)?;
        let witnesses = parse_witness_keys(witness_vkeys)?;
        let quorum = witness_quorum.unwrap_or(witnesses.len());
        let policy = CheckpointPolicy::new(verifiers)
            .with_witnesses(witnesses, quorum)
            .map_err(|e| e.to_string())?;
        let client = Client::new(url, None).map_err(|e| e.to_string())?;
        Ok(Follower {
            client,
            policy,
            log_keys,
            witness_vkeys: witness_vkeys.to_vec(),
            proofs,
            cache: HashMap::new(),
        })
    }

    /// The client for the log.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The policy every fetched checkpoint must pass.
    pub fn policy(&self) -> &CheckpointPolicy<'static> {
        &self.policy
    }

    /// The log keys, as given and in the policy's order.
    pub fn log_keys(&self) -> &[TrustedLogKey] {
        &self.log_keys
    }

    /// The witness keys, as given and in the policy's order.
    pub fn witness_vkeys(&self) -> &[String] {
        &self.witness_vkeys
    }

    /// Fetches `/checkpoint` and checks it with the policy.
    pub async fn fetch_checkpoint(&self) -> Result<Fetched, Failure> {
        let bytes = self.client.get_bytes("/checkpoint").await?;
        let note = String::from_utf8_lossy(&bytes).into_owned();
        match self.policy.check(&bytes, None) {
            Ok(accepted) => Ok(Fetched { note, accepted }),
            Err(rejection) => Err(Failure::Rejected {
                rejection,
                note: Some(note),
            }),
        }
    }

    /// Checks that `new` extends the checkpoint of `old`: the policy's rules
    /// for a known checkpoint (same origin, not smaller, the same root at the
    /// same size), then a verified consistency proof.
    pub async fn extends(
        &mut self,
        old: &FollowerState,
        new: &Checkpoint,
    ) -> Result<Extension, Failure> {
        let old = old.checkpoint();
        policy::check_against_known(new, &Known::from(&old)).map_err(|rejection| {
            Failure::Rejected {
                rejection,
                note: None,
            }
        })?;
        let proof_len = self.prove_consistency(&old, new).await?;
        Ok(if new.size == old.size {
            Extension::Unchanged { size: new.size }
        } else if old.size == 0 {
            Extension::FromEmpty { new_size: new.size }
        } else {
            Extension::Extends {
                old_size: old.size,
                new_size: new.size,
                proof_len,
            }
        })
    }

    /// Proves that the tree of `old` is a prefix of the tree of `new` (RFC
    /// 9162 §2.1.4.2) with a proof from [`Proofs`]; returns its length.
    pub async fn prove_consistency(
        &mut self,
        old: &Checkpoint,
        new: &Checkpoint,
    ) -> Result<usize, Failure> {
        let inconsistent = |why: String| Failure::Inconsistent {
            old_size: old.size,
            new_size: new.size,
            why,
        };
        if old.size == 0 {
            return if old.root == merkle::empty_root() {
                Ok(0)
            } else {
                Err(inconsistent(
                    "a size-0 checkpoint with a root other than the empty tree's".into(),
                ))
            };
        }
        if old.size == new.size {
            return if old.root == new.root {
                Ok(0)
            } else {
                Err(inconsistent(format!(
                    "two checkpoints of size {} with different roots ({} and {})",
                    new.size, old.root, new.root
                )))
            };
        }
        let proof = match self.proofs {
            Proofs::FromServer => self.server_proof(old.size, new.size).await?,
            Proofs::FromTiles => {
                let nodes = merkle::consistency_proof_nodes(old.size, new.size);
                let tiles = self.tiles_for(&nodes, new.size).await?;
                merkle::consistency_proof(old.size, new.size, &tiles)
                    .map_err(|e| inconsistent(e.to_string()))?
            }
        };
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
            .map_err(|e| inconsistent(e.to_string()))?;
        Ok(proof.len())
    }

    /// The log's consistency proof from `first` to `second`, which must
    /// answer that very question.
    async fn server_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, Failure> {
        let path = format!("/v1/proof/consistency?first={first}&second={second}");
        let answer: crate::verify::ConsistencyAnswer = self.get_typed(&path).await?;
        if answer.first != first || answer.second != second {
            return Err(Failure::MalformedAnswer {
                what: path,
                why: format!(
                    "a proof from {first} to {second} was asked, one from {} to {} came",
                    answer.first, answer.second
                ),
            });
        }
        Ok(answer.consistency)
    }

    /// A JSON answer of the log, parsed as `T`.
    pub async fn get_typed<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, Failure> {
        let bytes = self.client.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| Failure::MalformedAnswer {
            what: path.to_string(),
            why: e.to_string(),
        })
    }
}

/// Hash tiles of one tree size, by (level, index), as a subtree source.
#[derive(Default)]
struct Tiles(HashMap<(u8, u64), Vec<Hash>>);

#[derive(Debug, thiserror::Error)]
#[error("tile {0}/{1} was not fetched or is too short")]
struct MissingTile(u8, u64);

impl SubtreeSource for Tiles {
    type Error = MissingTile;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, MissingTile> {
        nodes
            .iter()
            .map(|n| {
                let (level, index, offset, count) = tiles::node_location(*n);
                self.0
                    .get(&(level, index))
                    .and_then(|h| h.get(offset..offset + count))
                    .map(merkle::root_from_leaf_hashes)
                    .ok_or(MissingTile(level, index))
            })
            .collect()
    }
}

/// Tiles and entry bundles, each fetched at most once.
impl Follower {
    /// The resource at `path` (a tile or entry bundle path). One the log
    /// does not serve is [`Failure::BadTiles`]: its checkpoint requires it.
    pub async fn tile_data(&mut self, path: &str) -> Result<Vec<u8>, Failure> {
        if let Some(b) = self.cache.get(path) {
            return Ok(b.clone());
        }
        let bytes = self
            .client
            .get_bytes(&format!("/{path}"))
            .await
            .map_err(|e| match e {
                ClientError::Status { status: 404, .. } => Failure::BadTiles(format!(
                    "the log does not serve {path}, which its checkpoint requires"
                )),
                other => Failure::Unreachable(other),
            })?;
        // Only immutable resources are cached; keep memory bounded.
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        self.cache.insert(path.to_string(), bytes.clone());
        Ok(bytes)
    }

    /// The hashes of `tile`, which must be exactly as long as it says.
    pub async fn hash_tile(&mut self, tile: Tile) -> Result<Vec<Hash>, Failure> {
        let path = tile.hash_path();
        let bytes = self.tile_data(&path).await?;
        if bytes.len() != tile.hash_data_len() {
            return Err(Failure::BadTiles(format!(
                "{path} is {} bytes, not {}",
                bytes.len(),
                tile.hash_data_len()
            )));
        }
        Ok(bytes
            .chunks_exact(32)
            .filter_map(|c| Hash::from_slice(c).ok())
            .collect())
    }

    /// Fetches `tile` and fails unless it holds exactly `recomputed`.
    pub async fn expect_tile(&mut self, tile: Tile, recomputed: &[Hash]) -> Result<(), Failure> {
        if self.hash_tile(tile).await? != recomputed {
            return Err(Failure::BadTiles(format!(
                "{} differs from the tile recomputed from the entries",
                tile.hash_path()
            )));
        }
        Ok(())
    }

    /// The tiles holding `nodes` in the tree of `size`.
    async fn tiles_for(&mut self, nodes: &[NodeId], size: u64) -> Result<Tiles, Failure> {
        let mut out = Tiles::default();
        for n in nodes {
            let Some((tile, _, _)) = tiles::tile_for_node(*n, size) else {
                return Err(Failure::BadTiles(format!(
                    "node {n:?} is not in a tree of {size}"
                )));
            };
            if let std::collections::hash_map::Entry::Vacant(e) =
                out.0.entry((tile.level, tile.index))
            {
                e.insert(self.hash_tile(tile).await?);
            }
        }
        Ok(out)
    }

    /// The root of the tree of `size` as the served tiles say.
    pub async fn root_from_tiles(&mut self, size: u64) -> Result<Hash, Failure> {
        let tiles = self.tiles_for(&merkle::tree_root_nodes(size), size).await?;
        merkle::tree_root(size, &tiles).map_err(|e| Failure::BadTiles(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "test.example/log";

    #[test]
    fn state_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(FollowerState::load(&path).unwrap(), None);
        let st = FollowerState {
            origin: ORIGIN.into(),
            size: 3,
            root: merkle::leaf_hash(b"x"),
            note: "n\n".into(),
            full: None,
        };
        st.save(&path).unwrap();
        assert_eq!(FollowerState::load(&path).unwrap(), Some(st.clone()));
        let mut b = TileBuilder::default();
        b.append(merkle::leaf_hash(b"a"));
        let grown = FollowerState {
            size: 4,
            full: Some(b),
            ..st
        };
        grown.save(&path).unwrap();
        assert_eq!(FollowerState::load(&path).unwrap(), Some(grown));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        for bad in [&b"{}"[..], b"{"] {
            std::fs::write(&path, bad).unwrap();
            assert!(FollowerState::load(&path).is_err());
        }
    }

    #[test]
    fn state_files_of_earlier_verify_and_monitor_runs_load() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state");
        let load = |name: &str| FollowerState::load(&fixtures.join(name)).unwrap().unwrap();
        // Written by `verify --state`, and by `monitor --state` without and with --full.
        let verify = load("verify.json");
        let monitor = load("monitor.json");
        let full = load("monitor-full.json");
        assert_eq!(verify.size, 300);
        assert_eq!(verify.origin, "example.com/veritrail");
        assert_eq!(verify.full, None);
        assert_eq!(monitor, verify);
        assert_eq!(full.full.as_ref().map(|b| b.size), Some(300));
        assert_eq!(
            FollowerState {
                full: None,
                ..full.clone()
            },
            verify
        );
        // The one format is the verify format, plus the tiles with --full.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        verify.save(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(fixtures.join("verify.json")).unwrap()
        );
        full.save(&path).unwrap();
        assert_eq!(FollowerState::load(&path).unwrap(), Some(full));
        // A monitor state from before its first checkpoint holds none.
        std::fs::write(&path, br#"{"note":null,"full":null}"#).unwrap();
        assert_eq!(FollowerState::load(&path).unwrap(), None);
    }

    #[test]
    fn log_and_witness_keys_are_parsed_once_for_both_commands() {
        let keys = crate::note::keys::LogKeys::from_secret_bytes(&[5u8; 32], &[6u8; 32]).unwrap();
        let v = keys.verifier_keys(ORIGIN).unwrap();
        let (parsed, _) = parse_log_keys(&[v.ecdsa.clone(), v.ed25519.clone()]).unwrap();
        let algorithms: Vec<_> = parsed.iter().map(|k| k.algorithm).collect();
        assert_eq!(algorithms, ["ecdsa", "ed25519"]);
        assert!(parse_log_keys(&[]).err().unwrap().contains("--vkey"));
        assert!(
            parse_log_keys(&["not-a-key".into()])
                .err()
                .unwrap()
                .contains("log key not-a-key")
        );
        let w = crate::note::CosignatureSigner::new(
            "w.example",
            ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
            || 0,
        )
        .unwrap();
        let wkey = crate::note::NoteSigner::verifier_key(&w);
        assert!(
            parse_log_keys(std::slice::from_ref(&wkey))
                .err()
                .unwrap()
                .contains("--witness-vkey")
        );
        assert_eq!(parse_witness_keys(&[wkey]).unwrap().len(), 1);
        assert!(parse_witness_keys(std::slice::from_ref(&v.ecdsa)).is_err());
        // A quorum larger than the witnesses given is a usage error.
        assert!(
            Follower::new(
                "http://127.0.0.1:9",
                &[v.ed25519],
                &[],
                Some(1),
                Proofs::FromTiles
            )
            .is_err()
        );
    }
}
