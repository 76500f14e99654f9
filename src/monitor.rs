//! `veritrail monitor`: follows a log through its public tiles and raises an
//! alert on anything a rewritten or forked log would show.
//!
//! Every new checkpoint must carry a valid signature by every given log key
//! and a valid cosignature by the required witnesses, must extend the
//! previous one (the consistency proof is computed here from the served
//! tiles and checked against both signed roots: the server's proof endpoint
//! is never trusted), and the served tiles must reproduce its root. With
//! `--full` every entry bundle is read, every leaf hash and every tile is
//! recomputed and compared byte for byte with the served one. A checkpoint
//! someone else saw (`--compare-checkpoint`) is checked the same way: a
//! different root at the same size, or no consistency with ours, is a fork.
//!
//! Invariant: the state file only ever advances to a checkpoint that passed
//! every check, and is replaced atomically (write, fsync, rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::client::{Client, ClientError};
use crate::merkle::{self, Hash, NodeId, SubtreeSource};
use crate::note::policy;
use crate::note::{
    Checkpoint, CheckpointPolicy, CosignatureVerifier, Known, NoteVerifier, Rejection,
};
use crate::tiles::{self, TILE_WIDTH, Tile, TileBuilder};
use crate::verify::FollowerState;

/// What the monitor is told.
#[derive(Clone, Debug)]
pub struct MonitorOptions {
    /// The log's base URL.
    pub url: String,
    /// The log's verifier keys: each must have signed every checkpoint.
    pub log_vkeys: Vec<String>,
    /// Witness cosignature keys.
    pub witness_vkeys: Vec<String>,
    /// How many of the witnesses must have cosigned [default: all].
    pub witness_quorum: Option<usize>,
    /// Where alerts are POSTed as JSON.
    pub webhook: Option<String>,
    /// State file [default: none, start from scratch every run].
    pub state: Option<PathBuf>,
    /// Recompute every leaf hash and tile from the entry bundles.
    pub full: bool,
    /// Check once and exit.
    pub once: bool,
    /// Time between polls.
    pub interval: Duration,
    /// Checkpoints other parties saw, to check for a fork.
    pub compare: Vec<PathBuf>,
    /// Show a progress bar while catching up.
    pub progress: bool,
}

/// Something that must never happen to an honest log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `bad_signature`, `missing_cosignature`, `inconsistent`, `rollback`,
    /// `fork`, `bad_tiles`, `origin_mismatch`.
    pub kind: &'static str,
    /// What was seen.
    pub message: String,
    /// The checkpoint that triggered it, verbatim.
    pub checkpoint: Option<String>,
    /// The last good checkpoint, or the other party's.
    pub previous: Option<String>,
}

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// An alert (already posted to the webhook).
    #[error("ALERT {}: {}", .0.kind, .0.message)]
    Alert(Box<Alert>),
    /// The monitor could not do its job (bad options, log unreachable with --once, I/O).
    #[error("{0}")]
    Operational(String),
}

fn alert(kind: &'static str, message: impl Into<String>) -> MonitorError {
    MonitorError::Alert(Box::new(Alert {
        kind,
        message: message.into(),
        checkpoint: None,
        previous: None,
    }))
}

fn op(e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Operational(e.to_string())
}

/// Computes the root of the tree the builder holds.
fn builder_root(b: &TileBuilder) -> Result<Hash, String> {
    merkle::tree_root(b.size, b).map_err(|e| e.to_string())
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

fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| Hash::from_slice(c).ok())
        .collect()
}

/// Fetches tiles and bundles over HTTP, each path at most once per run.
struct Fetcher {
    client: Client,
    cache: HashMap<String, Vec<u8>>,
}

impl Fetcher {
    async fn get(&mut self, path: &str) -> Result<Vec<u8>, MonitorError> {
        if let Some(b) = self.cache.get(path) {
            return Ok(b.clone());
        }
        let bytes = self
            .client
            .get_bytes(&format!("/{path}"))
            .await
            .map_err(|e| match e {
                ClientError::Status { status: 404, .. } => alert(
                    "bad_tiles",
                    format!("the log does not serve {path}, which its checkpoint requires"),
                ),
                other => op(other),
            })?;
        // Only immutable resources are cached; keep memory bounded.
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        self.cache.insert(path.to_string(), bytes.clone());
        Ok(bytes)
    }

    /// Fetches `tile` and alerts unless it holds exactly `recomputed`.
    async fn expect_tile(&mut self, tile: Tile, recomputed: &[Hash]) -> Result<(), MonitorError> {
        if self.hash_tile(tile).await? != recomputed {
            return Err(alert(
                "bad_tiles",
                format!(
                    "{} differs from the tile recomputed from the entries",
                    tile.hash_path()
                ),
            ));
        }
        Ok(())
    }

    async fn hash_tile(&mut self, tile: Tile) -> Result<Vec<Hash>, MonitorError> {
        let path = tile.hash_path();
        let bytes = self.get(&path).await?;
        if bytes.len() != tile.hash_data_len() {
            return Err(alert(
                "bad_tiles",
                format!(
                    "{path} is {} bytes, not {}",
                    bytes.len(),
                    tile.hash_data_len()
                ),
            ));
        }
        Ok(hashes_of(&bytes))
    }

    /// The tiles holding `nodes` in the tree of `size`.
    async fn tiles_for(&mut self, nodes: &[NodeId], size: u64) -> Result<Tiles, MonitorError> {
        let mut out = Tiles::default();
        for n in nodes {
            let Some((tile, _, _)) = tiles::tile_for_node(*n, size) else {
                return Err(op(format!("node {n:?} is not in a tree of {size}")));
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
    async fn root_from_tiles(&mut self, size: u64) -> Result<Hash, MonitorError> {
        let tiles = self.tiles_for(&merkle::tree_root_nodes(size), size).await?;
        merkle::tree_root(size, &tiles).map_err(op)
    }

    /// Checks that the tree `old` is a prefix of the tree `new` with a
    /// consistency proof computed from the served tiles (RFC 9162 §2.1.4.2).
    async fn check_consistency(
        &mut self,
        old: &Checkpoint,
        new: &Checkpoint,
    ) -> Result<(), String> {
        if old.size == 0 {
            return if old.root == merkle::empty_root() {
                Ok(())
            } else {
                Err("a size-0 checkpoint with a root other than the empty tree's".into())
            };
        }
        if old.size == new.size {
            return if old.root == new.root {
                Ok(())
            } else {
                Err(format!(
                    "two checkpoints of size {} with different roots ({} and {})",
                    new.size, old.root, new.root
                ))
            };
        }
        let nodes = merkle::consistency_proof_nodes(old.size, new.size);
        let tiles = self
            .tiles_for(&nodes, new.size)
            .await
            .map_err(|e| e.to_string())?;
        let proof =
            merkle::consistency_proof(old.size, new.size, &tiles).map_err(|e| e.to_string())?;
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(|e| {
            format!(
                "tree {} is not a prefix of tree {}: {e}",
                old.size, new.size
            )
        })
    }
}

/// The monitor: options, parsed keys, and its state.
pub struct Monitor {
    opts: MonitorOptions,
    /// What `/checkpoint` must carry: every log key and the witness quorum.
    served: CheckpointPolicy<'static>,
    /// What the log's latest signed checkpoint must carry: every log key.
    signed: CheckpointPolicy<'static>,
    /// What makes another party's checkpoint this log's: one log key.
    theirs: CheckpointPolicy<'static>,
    fetcher: Fetcher,
    webhook: Option<reqwest::Client>,
    /// The last verified checkpoint and, with `--full`, the tiles recomputed
    /// so far: what the state file holds between runs.
    state: Option<FollowerState>,
    /// With `--full`: the tiles recomputed so far.
    full: Option<TileBuilder>,
}

impl Monitor {
    /// Parses the keys and loads the state.
    pub fn new(opts: MonitorOptions) -> Result<Monitor, MonitorError> {
        if opts.log_vkeys.is_empty() {
            return Err(op("give the log's verifier key with --vkey"));
        }
        let log_keys = || {
            opts.log_vkeys
                .iter()
                .map(|k| {
                    crate::note::parse_verifier_key(k).map_err(|e| op(format!("--vkey {k}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let witnesses = opts
            .witness_vkeys
            .iter()
            .map(|k| {
                CosignatureVerifier::from_verifier_key(k)
                    .map_err(|e| op(format!("--witness-vkey {k}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = opts.witness_quorum.unwrap_or(witnesses.len());
        let served = CheckpointPolicy::new(log_keys()?)
            .with_witnesses(witnesses, quorum)
            .map_err(|_| op("--witness-quorum exceeds the number of --witness-vkey"))?;
        let signed = CheckpointPolicy::new(log_keys()?);
        let theirs = CheckpointPolicy::new(log_keys()?)
            .with_log_quorum(1)
            .map_err(op)?;
        let state = match &opts.state {
            Some(p) => FollowerState::load(p).map_err(op)?,
            None => None,
        };
        let full = state.as_ref().and_then(|s| s.full.clone());
        let client = Client::new(&opts.url, None).map_err(op)?;
        let webhook = match &opts.webhook {
            Some(_) => Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(op)?,
            ),
            None => None,
        };
        Ok(Monitor {
            opts,
            served,
            signed,
            theirs,
            fetcher: Fetcher {
                client,
                cache: HashMap::new(),
            },
            webhook,
            state,
            full,
        })
    }

    /// The last verified checkpoint.
    pub fn state(&self) -> Option<&FollowerState> {
        self.state.as_ref()
    }

    /// Runs until an alert (posted to the webhook, then returned), or after
    /// one check with `--once`.
    pub async fn run(&mut self) -> Result<(), MonitorError> {
        loop {
            match self.check().await {
                Ok(()) => {}
                Err(MonitorError::Alert(a)) => {
                    let a = self.with_context(*a);
                    self.post_alert(&a).await;
                    return Err(MonitorError::Alert(Box::new(a)));
                }
                Err(MonitorError::Operational(e)) if !self.opts.once => {
                    eprintln!("veritrail monitor: {e}; retrying");
                }
                Err(e) => return Err(e),
            }
            if self.opts.once {
                return Ok(());
            }
            tokio::time::sleep(self.opts.interval).await;
        }
    }

    fn with_context(&self, mut a: Alert) -> Alert {
        if a.previous.is_none() {
            a.previous = self.state.as_ref().map(|s| s.note.clone());
        }
        a
    }

    async fn post_alert(&self, a: &Alert) {
        let (Some(url), Some(http)) = (&self.opts.webhook, &self.webhook) else {
            return;
        };
        let body = json!({
            "alert": a.kind,
            "message": a.message,
            "log": self.opts.url,
            "checkpoint": a.checkpoint,
            "previous": a.previous,
            "at": crate::sequencer::Clock::system().now_rfc3339(),
        });
        match http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!("veritrail monitor: the webhook answered {}", r.status()),
            Err(e) => eprintln!("veritrail monitor: couldn't reach the webhook: {e}"),
        }
    }

    /// Verifies the log's signatures (every given key) and, if
    /// `cosigned`, the witnesses' cosignatures (the quorum) on a note.
    fn verify_note(&self, text: &str, cosigned: bool) -> Result<Checkpoint, MonitorError> {
        let policy = if cosigned { &self.served } else { &self.signed };
        let rejection = match policy.check(text.as_bytes(), None) {
            Ok(accepted) => return Ok(accepted.checkpoint),
            Err(r) => r,
        };
        let (kind, message) = match &rejection {
            Rejection::TooFewCosignatures {
                cosigned,
                required,
                missing,
            } => (
                "missing_cosignature",
                format!(
                    "{cosigned} of the required {required} witness cosignatures; missing: {}",
                    missing
                        .iter()
                        .map(|&w| policy.witnesses()[w].name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Rejection::BadCosignature { witness } => (
                "bad_signature",
                format!(
                    "cosignature by {}: {rejection}",
                    policy.witnesses()[*witness].name()
                ),
            ),
            Rejection::MissingLogSignature { signed, .. } => (
                "bad_signature",
                format!(
                    "only {signed} of the log's {} signatures are on the checkpoint",
                    policy.log_keys().len()
                ),
            ),
            other => ("bad_signature", format!("log signature: {other}")),
        };
        Err(MonitorError::Alert(Box::new(Alert {
            kind,
            message,
            checkpoint: Some(text.to_string()),
            previous: None,
        })))
    }

    /// One poll: fetch, verify, compare, advance the state.
    pub async fn check(&mut self) -> Result<(), MonitorError> {
        let text = self
            .fetcher
            .client
            .get_bytes("/checkpoint")
            .await
            .map_err(op)?;
        let text = String::from_utf8(text)
            .map_err(|_| alert("bad_signature", "the checkpoint is not UTF-8"))?;
        let new = self.verify_note(&text, true)?;
        let with_cp = |text: &str| {
            let text = text.to_string();
            move |e: MonitorError| match e {
                MonitorError::Alert(mut a) => {
                    a.checkpoint.get_or_insert(text);
                    MonitorError::Alert(a)
                }
                other => other,
            }
        };
        self.check_checkpoint(&new).await.map_err(with_cp(&text))?;
        // The newest checkpoint the log signed may be ahead of the served
        // (witnessed) one: the log must stand by it too.
        let mut newest = new.clone();
        if let Some(signed_text) = self.latest_signed(&text).await {
            let signed = self.verify_note(&signed_text, false)?;
            if signed.origin != new.origin || signed.size < new.size {
                return Err(with_cp(&signed_text)(alert(
                    "inconsistent",
                    format!(
                        "the log's latest signed checkpoint (size {}) is behind its served one (size {})",
                        signed.size, new.size
                    ),
                )));
            }
            self.fetcher
                .check_consistency(&new, &signed)
                .await
                .map_err(|e| {
                    with_cp(&signed_text)(alert(
                        "fork",
                        format!(
                            "the log's latest signed checkpoint does not extend its served one: {e}"
                        ),
                    ))
                })?;
            newest = signed;
        }
        for path in self.opts.compare.clone() {
            self.compare(&path, &newest).await?;
        }
        if self.opts.full {
            self.check_full(&new).await.map_err(with_cp(&text))?;
        }
        let advanced = self.state.as_ref().map(|s| s.note.as_str()) != Some(text.as_str());
        let state = FollowerState {
            origin: new.origin.clone(),
            size: new.size,
            root: new.root,
            note: text,
            full: self.full.clone(),
        };
        if let Some(p) = &self.opts.state {
            state.save(p).map_err(op)?;
        }
        self.state = Some(state);
        if advanced {
            println!(
                "veritrail monitor: {} size {} root {} verified",
                new.origin, new.size, new.root
            );
        }
        Ok(())
    }

    /// The log's latest signed checkpoint from `GET /v1/checkpoint`
    /// (Veritrail's JSON view), when it differs from the served one. Other
    /// logs do not have it; then there is nothing more to check.
    async fn latest_signed(&self, served: &str) -> Option<String> {
        let v = self.fetcher.client.get_json("/v1/checkpoint").await.ok()?;
        let signed = v["latest_signed"].as_str()?;
        (signed != served).then(|| signed.to_string())
    }

    /// Consistency with the last verified checkpoint, and the tiles' root.
    async fn check_checkpoint(&mut self, new: &Checkpoint) -> Result<(), MonitorError> {
        if let Some(prev) = self.state.as_ref().map(FollowerState::checkpoint) {
            match policy::check_against_known(new, &Known::from(&prev)) {
                Ok(()) => {}
                Err(Rejection::OriginChanged { known, origin }) => {
                    return Err(alert(
                        "origin_mismatch",
                        format!("origin changed from {known:?} to {origin:?}"),
                    ));
                }
                Err(Rejection::SmallerThanKnown { known, size }) => {
                    return Err(alert(
                        "rollback",
                        format!("the tree shrank from {known} to {size} entries"),
                    ));
                }
                Err(r) => {
                    return Err(alert(
                        "fork",
                        format!(
                            "two checkpoints of size {} with different roots ({r})",
                            new.size
                        ),
                    ));
                }
            }
            self.fetcher
                .check_consistency(&prev, new)
                .await
                .map_err(|e| alert("inconsistent", e))?;
        }
        if new.size > 0 {
            let root = self.fetcher.root_from_tiles(new.size).await?;
            if root != new.root {
                return Err(alert(
                    "bad_tiles",
                    format!(
                        "the served tiles give root {root} for size {}, the checkpoint says {}",
                        new.size, new.root
                    ),
                ));
            }
        } else if new.root != merkle::empty_root() {
            return Err(alert(
                "bad_tiles",
                "a size-0 checkpoint with a non-empty root",
            ));
        }
        Ok(())
    }

    /// Checks a checkpoint another party saw against ours.
    async fn compare(&mut self, path: &Path, ours: &Checkpoint) -> Result<(), MonitorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| op(format!("couldn't read {}: {e}", path.display())))?;
        let theirs = match self.theirs.check(text.as_bytes(), None) {
            Ok(accepted) => accepted.checkpoint,
            Err(e @ (Rejection::MalformedNote(_) | Rejection::MalformedCheckpoint(_))) => {
                return Err(op(format!("{}: {e}", path.display())));
            }
            Err(e) => {
                return Err(op(format!(
                    "{} is not signed by this log's keys ({e}); it proves nothing about this log",
                    path.display()
                )));
            }
        };
        let fork = |msg: String| {
            MonitorError::Alert(Box::new(Alert {
                kind: "fork",
                message: msg,
                checkpoint: Some(text.clone()),
                previous: self.state.as_ref().map(|s| s.note.clone()),
            }))
        };
        if theirs.origin != ours.origin {
            return Err(op(format!(
                "{} is for origin {:?}",
                path.display(),
                theirs.origin
            )));
        }
        if theirs.size > ours.size {
            eprintln!(
                "veritrail monitor: {} (size {}) is ahead of the log's {}; it can be compared once the log reaches that size",
                path.display(),
                theirs.size,
                ours.size
            );
            return Ok(());
        }
        self.fetcher.check_consistency(&theirs, ours).await.map_err(|e| {
            fork(format!(
                "the log signed two views: the checkpoint in {} (size {}, root {}) is not consistent with the log's (size {}, root {}): {e}",
                path.display(),
                theirs.size,
                theirs.root,
                ours.size,
                ours.root
            ))
        })?;
        println!(
            "veritrail monitor: {} (size {}) is consistent with the log",
            path.display(),
            theirs.size
        );
        Ok(())
    }

    /// `--full`: reads every new entry bundle and recomputes every leaf hash
    /// and tile up to the new checkpoint, comparing each with the served one.
    async fn check_full(&mut self, new: &Checkpoint) -> Result<(), MonitorError> {
        let mut builder = self.full.clone().unwrap_or_default();
        if builder.size > new.size {
            return Err(alert(
                "rollback",
                format!(
                    "the tree shrank below the {} entries already verified",
                    builder.size
                ),
            ));
        }
        let start = builder.size;
        let bar = (self.opts.progress && new.size - start > TILE_WIDTH).then(|| {
            let b = indicatif::ProgressBar::new(new.size - start);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} verifying entries {pos}/{len} [{bar:40}] {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let mut bundle_index = start / TILE_WIDTH;
        while builder.size < new.size {
            let first = bundle_index * TILE_WIDTH;
            let width = (new.size - first).min(TILE_WIDTH) as u16;
            let bundle = Tile {
                level: 0,
                index: bundle_index,
                width,
            };
            let path = bundle.entries_path();
            let bytes = self.fetcher.get(&path).await?;
            let entries = tiles::decode_bundle(&bytes)
                .map_err(|e| alert("bad_tiles", format!("{path}: {e}")))?;
            if entries.len() != usize::from(width) {
                return Err(alert(
                    "bad_tiles",
                    format!("{path} has {} entries, not {width}", entries.len()),
                ));
            }
            for (k, entry) in entries.iter().enumerate() {
                let index = first + k as u64;
                let leaf = merkle::leaf_hash(entry);
                if index < builder.size {
                    // Entries verified on an earlier run: still the same?
                    let offset = (index % TILE_WIDTH) as usize;
                    if builder.levels.first().and_then(|l| l.get(offset)) != Some(&leaf) {
                        return Err(alert(
                            "inconsistent",
                            format!("entry {index} changed since it was verified"),
                        ));
                    }
                    continue;
                }
                for (tile, hashes) in builder.append(leaf) {
                    self.fetcher.expect_tile(tile, &hashes).await?;
                }
            }
            if let Some(b) = &bar {
                b.set_position(builder.size - start);
            }
            bundle_index += 1;
        }
        for (tile, hashes) in builder.partials() {
            self.fetcher.expect_tile(tile, hashes).await?;
        }
        let root = builder_root(&builder).map_err(op)?;
        if root != new.root {
            return Err(alert(
                "inconsistent",
                format!(
                    "the entries give root {root} for size {}, the checkpoint says {}",
                    new.size, new.root
                ),
            ));
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        self.full = Some(builder);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;

    #[test]
    fn the_tile_builder_reproduces_roots_and_tiles() {
        let mut b = TileBuilder::default();
        let mut t = MemoryTree::new();
        let mut full = Vec::new();
        for i in 0..70_000u64 {
            let leaf = merkle::leaf_hash(&i.to_be_bytes());
            t.push(leaf);
            full.extend(b.append(leaf));
            if [1, 255, 256, 257, 65_535, 65_536, 69_999].contains(&(i + 1)) {
                assert_eq!(builder_root(&b).unwrap(), t.root(), "size {}", i + 1);
            }
        }
        // 273 full level-0 tiles and one full level-1 tile.
        assert_eq!(full.len(), 274);
        assert_eq!(full[0].0.hash_path(), "tile/0/000");
        assert_eq!(full[0].1, t.leaves()[..256].to_vec());
        let partials: Vec<String> = b.partials().iter().map(|(t, _)| t.hash_path()).collect();
        assert_eq!(
            partials,
            ["tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1"]
        );
    }

    #[test]
    fn the_state_file_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert!(FollowerState::load(&p).unwrap().is_none());
        let mut b = TileBuilder::default();
        b.append(merkle::leaf_hash(b"a"));
        let s = FollowerState {
            origin: "o".into(),
            size: 1,
            root: merkle::leaf_hash(b"a"),
            note: "n".into(),
            full: Some(b),
        };
        s.save(&p).unwrap();
        let back = FollowerState::load(&p).unwrap().unwrap();
        assert_eq!(back.note, "n");
        assert_eq!(back.full.unwrap().size, 1);
        std::fs::write(&p, b"{").unwrap();
        assert!(FollowerState::load(&p).is_err());
    }
}
