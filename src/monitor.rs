//! `veritrail monitor`: follows a log through its public tiles and raises an
//! alert on anything a rewritten or forked log would show.
//!
//! It is the shared [`Follower`] taking its consistency proofs from tiles:
//! every new checkpoint must carry a valid signature by every given log key
//! and a valid cosignature by the required witnesses, must extend the
//! previous one (the consistency proof is computed from the served tiles
//! and checked against both signed roots: the server's proof endpoint is
//! never trusted), and the served tiles must reproduce its root. With
//! `--full` every entry bundle is read, every leaf hash and every tile is
//! recomputed and compared byte for byte with the served one. A checkpoint
//! someone else saw (`--compare-checkpoint`) is checked the same way: a
//! different root at the same size, or no consistency with ours, is a fork.
//!
//! Invariant: the state file only ever advances to a checkpoint that passed
//! every check, and is replaced atomically (write, fsync, rename).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::follower::{Failure, Follower, FollowerState, Proofs, parse_log_keys};
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, CheckpointPolicy, NoteVerifier, Rejection};
use crate::tiles::{self, TILE_WIDTH, Tile, TileBuilder};

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

/// The alert or operational error a follower failure is, as `kind` when it
/// is about what the log served.
fn failed(kind: &'static str, f: Failure) -> MonitorError {
    match f {
        Failure::Unreachable(e) => op(e),
        Failure::BadTiles(why) => alert("bad_tiles", why),
        Failure::Inconsistent { why, .. } => alert(kind, why),
        other => alert(kind, other.to_string()),
    }
}

/// The monitor: options, the follower, and its state.
pub struct Monitor {
    opts: MonitorOptions,
    /// Follows the log; what `/checkpoint` must carry is its policy: every
    /// log key and the witness quorum. Consistency proofs come from tiles.
    follower: Follower,
    /// What the log's latest signed checkpoint must carry: every log key.
    signed: CheckpointPolicy<'static>,
    /// What makes another party's checkpoint this log's: one log key.
    theirs: CheckpointPolicy<'static>,
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
        let follower = Follower::new(
            &opts.url,
            &opts.log_vkeys,
            &opts.witness_vkeys,
            opts.witness_quorum,
            Proofs::FromTiles,
        )
        .map_err(op)?;
        let log_keys = || parse_log_keys(&opts.log_vkeys).map(|(_, verifiers)| verifiers);
        let signed = CheckpointPolicy::new(log_keys().map_err(op)?);
        let theirs = CheckpointPolicy::new(log_keys().map_err(op)?)
            .with_log_quorum(1)
            .map_err(op)?;
        let state = match &opts.state {
            Some(p) => FollowerState::load(p).map_err(op)?,
            None => None,
        };
        let full = state.as_ref().and_then(|s| s.full.clone());
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
            follower,
            signed,
            theirs,
            webhook,
            state,
            full,
        })
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

    /// The alert a checkpoint refused by a policy raises: the follower's
    /// (every log key and the witness quorum), or with `cosigned` false the
    /// one for the log's latest signed checkpoint (every log key).
    fn refused(&self, f: Failure, cosigned: bool) -> MonitorError {
        let Failure::Rejected { rejection, note } = f else {
            return failed("bad_signature", f);
        };
        let policy = if cosigned {
            self.follower.policy()
        } else {
            &self.signed
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
        MonitorError::Alert(Box::new(Alert {
            kind,
            message,
            checkpoint: note,
            previous: None,
        }))
    }

    /// One poll: fetch, verify, compare, advance the state.
    async fn check(&mut self) -> Result<(), MonitorError> {
        let fetched = self
            .follower
            .fetch_checkpoint()
            .await
            .map_err(|f| self.refused(f, true))?;
        let (text, new) = (fetched.note, fetched.accepted.checkpoint);
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
            let signed = match self.signed.check(signed_text.as_bytes(), None) {
                Ok(accepted) => accepted.checkpoint,
                Err(rejection) => {
                    let note = Some(signed_text);
                    return Err(self.refused(Failure::Rejected { rejection, note }, false));
                }
            };
            if signed.origin != new.origin || signed.size < new.size {
                return Err(with_cp(&signed_text)(alert(
                    "inconsistent",
                    format!(
                        "the log's latest signed checkpoint (size {}) is behind its served one (size {})",
                        signed.size, new.size
                    ),
                )));
            }
            self.follower
                .prove_consistency(&new, &signed)
                .await
                .map_err(|f| match f {
                    Failure::Unreachable(e) => op(e),
                    f => with_cp(&signed_text)(alert(
                        "fork",
                        format!(
                            "the log's latest signed checkpoint does not extend its served one: {f}"
                        ),
                    )),
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
        let state = FollowerState::new(&new, text, self.full.clone());
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
        let v = self
            .follower
            .client()
            .get_json("/v1/checkpoint")
            .await
            .ok()?;
        let signed = v["latest_signed"].as_str()?;
        (signed != served).then(|| signed.to_string())
    }

    /// Consistency with the last verified checkpoint, and the tiles' root.
    async fn check_checkpoint(&mut self, new: &Checkpoint) -> Result<(), MonitorError> {
        if let Some(prev) = &self.state {
            match self.follower.extends(prev, new).await {
                Ok(_) => {}
                Err(Failure::Rejected { rejection, .. }) => {
                    return Err(match rejection {
                        Rejection::OriginChanged { known, origin } => alert(
                            "origin_mismatch",
                            format!("origin changed from {known:?} to {origin:?}"),
                        ),
                        Rejection::SmallerThanKnown { known, size } => alert(
                            "rollback",
                            format!("the tree shrank from {known} to {size} entries"),
                        ),
                        r => alert(
                            "fork",
                            format!(
                                "two checkpoints of size {} with different roots ({r})",
                                new.size
                            ),
                        ),
                    });
                }
                Err(f) => return Err(failed("inconsistent", f)),
            }
        }
        if new.size > 0 {
            let root = self
                .follower
                .root_from_tiles(new.size)
                .await
                .map_err(|f| failed("bad_tiles", f))?;
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
        self.follower.prove_consistency(&theirs, ours).await.map_err(|e| match e {
            Failure::Unreachable(e) => op(e),
            e => fork(format!(
                "the log signed two views: the checkpoint in {} (size {}, root {}) is not consistent with the log's (size {}, root {}): {e}",
                path.display(),
                theirs.size,
                theirs.root,
                ours.size,
                ours.root
            )),
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
            let bytes = self
                .follower
                .tile_data(&path)
                .await
                .map_err(|f| failed("bad_tiles", f))?;
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
                    self.follower
                        .expect_tile(tile, &hashes)
                        .await
                        .map_err(|f| failed("bad_tiles", f))?;
                }
            }
            if let Some(b) = &bar {
                b.set_position(builder.size - start);
            }
            bundle_index += 1;
        }
        for (tile, hashes) in builder.partials() {
            self.follower
                .expect_tile(tile, hashes)
                .await
                .map_err(|f| failed("bad_tiles", f))?;
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
}
