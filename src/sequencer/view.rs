//! The published view: what readers share with the sequencer. The latest
//! signed checkpoint, the durable tree size, whether the sequencer stopped,
//! and the clock the log's times are read from.
//!
//! Invariant: only the sequencer publishes, and only a checkpoint that is
//! already durable in the store; readers never see a checkpoint a restart
//! could lose.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::Clock;
use crate::note::{Checkpoint, Note};
use crate::store::StoredCheckpoint;

/// A signed checkpoint as published.
#[derive(Clone, Debug)]
pub struct Published {
    /// The parsed checkpoint body.
    pub checkpoint: Checkpoint,
    /// The whole signed note.
    pub note: String,
    /// When it was signed (Unix milliseconds).
    pub published_at_ms: i64,
}

impl Published {
    /// Parses a stored checkpoint.
    pub fn from_stored(stored: &StoredCheckpoint) -> Result<Published, String> {
        let note_text = String::from_utf8(stored.note.clone())
            .map_err(|_| "stored checkpoint is not UTF-8".to_string())?;
        let note = Note::parse(note_text.as_bytes())
            .map_err(|e| format!("stored checkpoint is not a signed note: {e}"))?;
        let checkpoint = Checkpoint::parse(note.text())
            .map_err(|e| format!("stored checkpoint body is malformed: {e}"))?;
        Ok(Published {
            checkpoint,
            note: note_text,
            published_at_ms: stored.published_at_ms,
        })
    }
}

/// What readers share with the sequencer: the latest published checkpoint,
/// the durable tree size, and the log's clock.
pub struct LogView {
    published: RwLock<Arc<Published>>,
    clock: Clock,
    durable_size: AtomicU64,
    failed: AtomicBool,
    updates: watch::Sender<Arc<Published>>,
}

impl LogView {
    /// A view starting at `published`, with `durable_size` committed
    /// entries, whose times are read from `clock`.
    pub fn new(published: Published, durable_size: u64, clock: Clock) -> LogView {
        let published = Arc::new(published);
        let (updates, _) = watch::channel(published.clone());
        LogView {
            published: RwLock::new(published),
            clock,
            durable_size: AtomicU64::new(durable_size),
            failed: AtomicBool::new(false),
            updates,
        }
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> Arc<Published> {
        match self.published.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The clock the log's times are read from: leaves' receive times,
    /// checkpoint timestamps, and everything measured against them.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The number of entries durably committed (may exceed the checkpoint's size).
    pub fn durable_size(&self) -> u64 {
        self.durable_size.load(Ordering::Acquire)
    }

    /// True once the sequencer stopped after a store failure it could not recover from.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Notified on every new checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.updates.subscribe()
    }

    pub(super) fn set_durable_size(&self, size: u64) {
        self.durable_size.store(size, Ordering::Release);
    }

    pub(super) fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub(super) fn publish(&self, p: Arc<Published>) {
        match self.published.write() {
            Ok(mut g) => *g = p.clone(),
            Err(poisoned) => *poisoned.into_inner() = p.clone(),
        }
        self.updates.send_replace(p);
    }
}
