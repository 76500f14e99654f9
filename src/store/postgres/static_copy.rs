//! The bucket's static tlog-tiles copy beyond the write-once objects: with
//! each committed checkpoint, the partial tiles and entry bundle of its size
//! and the `checkpoint` object, written by one background task per store,
//! off the commit path (an acknowledgment never waits for them).
//!
//! Invariants (what a reader of the bucket alone may rely on):
//! - full tiles and full entry bundles are not written here: the commit
//!   writes (and confirms) them before the transaction that moves the tree
//!   past them commits (`mod.rs`), so every checkpoint, in PostgreSQL or in
//!   the bucket, names a tree whose full objects are already in the bucket;
//! - the partial tiles and bundle of a checkpoint's size are written and
//!   confirmed before that checkpoint is copied to `checkpoint`, so the
//!   static checkpoint always has every object its proofs need;
//! - only committed checkpoints are queued, after their commit; the task
//!   takes the newest one queued (skipping those it fell behind on), so
//!   within one process the static checkpoint never moves back. A failed
//!   copy is retried every [`RETRY`] with the newest checkpoint; until one
//!   succeeds the static copy stays at the previous checkpoint, which is
//!   complete. A leader paused past its lease may, once resumed, copy an
//!   older checkpoint over its successor's: still complete and consistent,
//!   and replaced by the successor's next one.
//!
//! A partial object depends only on the committed tree and its size (its
//! name holds its width), so one that is already there with other bytes was
//! left by a batch that never committed and is replaced. Hashes not in the
//! queued batch are read from the store: a partial tile only grows and a
//! full one never changes, so its first `width` hashes read later are the
//! same.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use super::{
    Blob, CHECKPOINT_OBJECT, COMMIT_TIMEOUT, Inner, Prepared, StoreError, WIDTH, pg, to_i64,
};
use crate::tiles::{self, Tile};

/// How long the task waits before retrying a failed copy.
const RETRY: Duration = Duration::from_secs(1);

/// A committed checkpoint waiting to be copied, with the partial tiles and
/// bundles its batch wrote (read from the store when missing).
pub(super) struct Pending {
    seq: u64,
    size: u64,
    note: Vec<u8>,
    tiles: Vec<(u8, u64, Vec<u8>)>,
    bundles: Vec<(u64, Vec<u8>)>,
}

/// The newest copy made: its queue number and tree size.
#[derive(Clone, Copy, Default)]
struct Done {
    seq: u64,
    size: u64,
}

/// The queue between the commits and the task.
pub(super) struct StaticCopy {
    pending: watch::Sender<Option<Arc<Pending>>>,
    done: watch::Sender<Done>,
}

impl StaticCopy {
    pub(super) fn new() -> StaticCopy {
        StaticCopy {
            pending: watch::Sender::new(None),
            done: watch::Sender::new(Done::default()),
        }
    }

    /// The task's end of the queue: take it before anything is queued.
    pub(super) fn subscribe(&self) -> watch::Receiver<Option<Arc<Pending>>> {
        self.pending.subscribe()
    }

    /// Queues committed checkpoint `note` of a tree of `size`, with the
    /// partial tiles and bundles its batch wrote; returns its number. One
    /// of a smaller tree than the one queued is dropped.
    pub(super) fn queue(
        &self,
        size: u64,
        note: Vec<u8>,
        tiles: Vec<(u8, u64, Vec<u8>)>,
        bundles: Vec<(u64, Vec<u8>)>,
    ) -> u64 {
        let mut seq = 0;
        self.pending.send_if_modified(|p| {
            let last = p.as_ref().map_or((0, 0), |p| (p.seq, p.size));
            seq = last.0 + 1;
            if size < last.1 {
                return false;
            }
            *p = Some(Arc::new(Pending {
                seq,
                size,
                note,
                tiles,
                bundles,
            }));
            true
        });
        seq
    }

    /// Waits until checkpoint number `seq` (of a tree of `size`), or one of
    /// a larger tree, is copied.
    pub(super) async fn copied(&self, seq: u64, size: u64) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| d.seq >= seq || d.size > size).await;
    }

    /// Waits until everything queued so far is copied.
    pub(super) async fn flushed(&self) {
        let queued = self.pending.borrow().as_ref().map(|p| (p.seq, p.size));
        if let Some((seq, size)) = queued {
            self.copied(seq, size).await;
        }
    }
}

/// The task: copies the newest checkpoint `pending` (see
/// [`StaticCopy::subscribe`]) holds, until the store is gone.
pub(super) async fn run(inner: Weak<Inner>, mut pending: watch::Receiver<Option<Arc<Pending>>>) {
    while pending.changed().await.is_ok() {
        loop {
            let Some(p) = pending.borrow_and_update().clone() else {
                break;
            };
            let Some(s) = inner.upgrade() else {
                return;
            };
            let copied = tokio::time::timeout(COMMIT_TIMEOUT, s.copy_checkpoint(&p)).await;
            match copied {
                Ok(Ok(())) => {
                    s.static_copy.done.send_replace(Done {
                        seq: p.seq,
                        size: p.size,
                    });
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, size = p.size, "couldn't copy a checkpoint to the bucket; retrying");
                }
                Err(_) => {
                    tracing::warn!(
                        size = p.size,
                        "copying a checkpoint to the bucket timed out; retrying"
                    );
                }
            }
            drop(s);
            tokio::time::sleep(RETRY).await;
        }
    }
}

impl Inner {
    /// The partial objects of `p`'s size, then `checkpoint`.
    async fn copy_checkpoint(&self, p: &Pending) -> Result<(), StoreError> {
        let conn = self.db.reader().await?;
        let c = conn.prepared();
        let blobs = self.static_partials(&c, p).await?;
        self.put_blobs(&blobs).await?;
        self.bucket.replace(CHECKPOINT_OBJECT, &p.note).await
    }

    /// The partial tiles and bundle of a tree of `p.size`, cut to their
    /// width: from `p` where it has them, else read (all levels at once:
    /// the connection pipelines the reads).
    async fn static_partials(
        &self,
        c: &Prepared<'_, Client>,
        p: &Pending,
    ) -> Result<Vec<Blob>, StoreError> {
        let size = p.size;
        let levels = (0u8..8).filter(|l| size.checked_shr(8 * u32::from(*l)).unwrap_or(0) > 0);
        let (tiles, bundle) = futures_util::future::try_join(
            futures_util::future::try_join_all(levels.map(|level| self.static_tile(c, p, level))),
            self.static_bundle(c, p),
        )
        .await?;
        Ok(tiles.into_iter().flatten().chain(bundle).collect())
    }

    /// The partial tile at `level` of a tree of `p.size`, if it has one.
    async fn static_tile(
        &self,
        c: &Prepared<'_, Client>,
        p: &Pending,
        level: u8,
    ) -> Result<Option<Blob>, StoreError> {
        let width = tiles::partial_width(level, p.size);
        if width == 0 {
            return Ok(None);
        }
        let index = (p.size >> (8 * u32::from(level))) / WIDTH;
        let tile = Tile {
            level,
            index,
            width,
        };
        let queued = p.tiles.iter().find(|(l, i, _)| (*l, *i) == (level, index));
        let data = match queued {
            Some((_, _, d)) => d.clone(),
            None => self.tile_now(c, level, index).await?,
        };
        let data = data
            .get(..tile.hash_data_len())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "tile {} is shorter than its width",
                    tile.hash_path()
                ))
            })?
            .to_vec();
        Ok(Some(Blob {
            name: tile.hash_path(),
            data,
            committed: false,
        }))
    }

    /// The partial entry bundle of a tree of `p.size`, if it has one.
    async fn static_bundle(
        &self,
        c: &Prepared<'_, Client>,
        p: &Pending,
    ) -> Result<Option<Blob>, StoreError> {
        let width = p.size % WIDTH;
        if width == 0 {
            return Ok(None);
        }
        let index = p.size / WIDTH;
        let queued = p.bundles.iter().find(|(i, _)| *i == index);
        let data = match queued {
            Some((_, d)) => d.clone(),
            None => self.bundle_now(c, index).await?,
        };
        let ends = tiles::bundle_entry_ends(&data)
            .map_err(|e| StoreError::Corrupt(format!("entry bundle {index}: {e}")))?;
        let end = usize::try_from(width - 1)
            .ok()
            .and_then(|w| ends.get(w))
            .copied()
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "entry bundle {index} has fewer than {width} entries"
                ))
            })?;
        let tile = Tile {
            level: 0,
            index,
            width: width as u16,
        };
        Ok(Some(Blob {
            name: tile.entries_path(),
            data: data[..end].to_vec(),
            committed: false,
        }))
    }

    /// Tile `(level, index)` as stored now: its partial row, else the full
    /// tile in the bucket.
    async fn tile_now(
        &self,
        c: &Prepared<'_, Client>,
        level: u8,
        index: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let row = c
            .query_opt(
                "SELECT data FROM vt_partial_tile WHERE level = $1 AND idx = $2",
                &[&i16::from(level), &to_i64(index)?],
            )
            .await
            .map_err(pg)?;
        self.row_or_full(row, Tile::full(level, index).hash_path())
            .await
    }

    /// Entry bundle `index` as stored now: its partial row, else the full
    /// bundle in the bucket.
    async fn bundle_now(
        &self,
        c: &Prepared<'_, Client>,
        index: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let row = c
            .query_opt(
                "SELECT data FROM vt_partial_bundle WHERE idx = $1",
                &[&to_i64(index)?],
            )
            .await
            .map_err(pg)?;
        self.row_or_full(row, Tile::full(0, index).entries_path())
            .await
    }

    /// The data of a partial `row`, else the full object `name`.
    async fn row_or_full(
        &self,
        row: Option<tokio_postgres::Row>,
        name: String,
    ) -> Result<Vec<u8>, StoreError> {
        match row {
            Some(r) => Ok(r.get(0)),
            None => self
                .bucket
                .get(&name)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("bucket object {name} is missing"))),
        }
    }
}
