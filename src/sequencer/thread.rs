//! The sequencer thread: the one writer of the log, and the handle
//! submitters use to reach it.
//!
//! Submissions queue in a bounded channel (see [`super::queue`]); the
//! thread takes them in batches, runs each batch through the write path
//! (see [`super::write_path`]) and, between batches, signs a checkpoint
//! when the interval passed and the tree grew. One thread owns the right
//! edge, so no lock guards the tree.
//!
//! With several frontends on one store, only the holder of the lease
//! sequences ([`Sequencer::start`]): before every batch and
//! checkpoint the thread asks the [`Lease`]; without it, submitters are
//! refused and nothing is written. The other frontends run
//! [`Sequencer::follow`]: a thread that sequences nothing and only brings
//! the published view up to the store's checkpoint, so their proofs verify
//! against checkpoints they serve.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::edge::RightEdge;
use super::lease::Lease;
use super::queue::{QueueBudget, QueueLimits, Reservation};
use super::signer::CheckpointSigner;
use super::view::{LogView, Published};
use super::write_path::{PreparedEvent, Receipt, Sealing, SubmitError};
use crate::store::Store;

/// Tunables of the sequencer. Every default is chosen for the targets in
/// the README (tens of thousands of events/s, receipts in milliseconds).
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// A batch is closed at this many entries. 4,096 leaves ≈ 700 KiB of
    /// leaf records and bodies: one flush of that costs about a millisecond.
    pub max_batch_entries: usize,
    /// After the first submission of a batch arrives, wait at most this long
    /// for more before sequencing. Zero means "take what is queued": while
    /// one batch is being flushed the next one fills up by itself.
    pub max_batch_delay: Duration,
    /// A checkpoint is signed at least this often while the tree grows.
    pub checkpoint_interval: Duration,
    /// Submissions (requests, not events) that may wait in the queue; beyond
    /// this, submitters get pushback (HTTP 503 with Retry-After).
    pub queue_capacity: usize,
    /// Events, and bytes of events, that may be queued or in the batch being
    /// committed; beyond either, pushback as above. Memory held by accepted
    /// but not yet answered submissions is bounded by these, whatever the
    /// request sizes.
    pub queue_budget: QueueLimits,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            max_batch_entries: 4096,
            max_batch_delay: Duration::from_millis(0),
            checkpoint_interval: Duration::from_secs(1),
            queue_capacity: 8192,
            queue_budget: QueueLimits::default(),
        }
    }
}

/// One submitter's events, waiting for the sequencer.
pub(super) struct Submission {
    pub(super) app: String,
    pub(super) events: Vec<PreparedEvent>,
    pub(super) wants_checkpoint: bool,
    reply: oneshot::Sender<Result<Receipt, SubmitError>>,
    /// Its share of the queue budget, given back just before the answer.
    reserved: Reservation,
}

impl Submission {
    /// Gives the budget back, then answers: a submitter that sends again as
    /// soon as it has its answer finds the budget free.
    pub(super) fn answer(self, result: Result<Receipt, SubmitError>) {
        let Submission {
            reply, reserved, ..
        } = self;
        drop(reserved);
        let _ = reply.send(result);
    }
}

enum Msg {
    Submit(Submission),
    Shutdown,
}

/// The handle submitters use; cheap to clone.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: SyncSender<Msg>,
    view: Arc<LogView>,
    budget: Arc<QueueBudget>,
}

impl SequencerHandle {
    /// Queues `events` of `app` and waits until they are durable (and, with
    /// `wants_checkpoint`, covered by a signed checkpoint).
    pub async fn submit(
        &self,
        app: String,
        events: Vec<PreparedEvent>,
        wants_checkpoint: bool,
    ) -> Result<Receipt, SubmitError> {
        if self.view.failed() {
            return Err(SubmitError::Unavailable(
                "the store failed; the operator must restart the log".into(),
            ));
        }
        let bytes = events.iter().map(PreparedEvent::queued_bytes).sum();
        let reserved = self
            .budget
            .try_reserve(events.len(), bytes)
            .ok_or(SubmitError::Busy)?;
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Submit(Submission {
            app,
            events,
            wants_checkpoint,
            reply,
            reserved,
        });
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(SubmitError::Paused("the log is shutting down".into()));
            }
        }
        rx.await
            .map_err(|_| SubmitError::Paused("the sequencer stopped".into()))?
    }

    /// The shared view of the log.
    pub fn view(&self) -> &Arc<LogView> {
        &self.view
    }
}

/// The running sequencer thread.
pub struct Sequencer {
    handle: SequencerHandle,
    thread: Option<JoinHandle<()>>,
}

/// The sequencer's state, owned by its thread.
pub(super) struct State {
    pub(super) store: Arc<dyn Store>,
    /// How the write path's stage 3 stores event bodies.
    pub(super) sealing: Sealing,
    pub(super) signer: Arc<CheckpointSigner>,
    pub(super) config: SequencerConfig,
    pub(super) view: Arc<LogView>,
    pub(super) edge: RightEdge,
    pub(super) last_received_ms: i64,
    pub(super) last_checkpoint_size: u64,
    pub(super) last_checkpoint_at: Instant,
    /// The checkpoint signed for the batch being committed, published once
    /// the commit returned.
    pub(super) pending_publish: Option<Published>,
    /// The lease this thread sequences under, when several frontends share
    /// the store (`None`: the only writer).
    pub(super) lease: Option<Arc<Lease>>,
    /// Set after a failed commit whose outcome could not be read back (the
    /// store was unreachable): the right edge in memory may be behind the
    /// store. Nothing is sequenced until a reload succeeds; the next try
    /// is due at this instant.
    pub(super) stale: Option<Backoff>,
}

/// When to retry reading the stored tree back, doubling up to a limit.
#[derive(Clone, Copy, Debug)]
pub(super) struct Backoff {
    pub(super) next_try: Instant,
    pub(super) delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    pub(super) fn start() -> Backoff {
        Backoff {
            next_try: Instant::now() + Backoff::FIRST,
            delay: Backoff::FIRST,
        }
    }

    pub(super) fn next(self) -> Backoff {
        let delay = (self.delay * 2).min(Backoff::MAX);
        Backoff {
            next_try: Instant::now() + delay,
            delay,
        }
    }
}

impl Sequencer {
    /// Starts the sequencer over a loaded log whose right edge is `edge`:
    /// it commits to `store`, seals event bodies as `sealing` says (with a
    /// vault over the same store), signs with `signer`, and publishes to
    /// `view`, whose clock gives the leaves' receive times. It sequences
    /// only while `lease` is held (`None`: always); with a lease, `edge`
    /// and `view` must have been read from the store after it was acquired.
    pub fn start(
        store: Arc<dyn Store>,
        sealing: Sealing,
        signer: Arc<CheckpointSigner>,
        config: SequencerConfig,
        view: Arc<LogView>,
        edge: RightEdge,
        lease: Option<Arc<Lease>>,
    ) -> Result<Sequencer, String> {
        let last_received_ms = edge.last_received_ms(store.as_ref())?;
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        // The vault's background jobs yield while this queue holds events.
        let budget = match &sealing {
            Sealing::Vault(v) => {
                QueueBudget::counting_into(config.queue_budget, v.writers().queued().clone())
            }
            Sealing::Plaintext => QueueBudget::new(config.queue_budget),
        };
        let last_checkpoint_size = view.checkpoint().checkpoint.size;
        // Leaves committed before a crash but not yet under a checkpoint
        // get one at once, not an interval later.
        let last_checkpoint_at = if edge.size() != last_checkpoint_size {
            Instant::now()
                .checked_sub(config.checkpoint_interval)
                .unwrap_or_else(Instant::now)
        } else {
            Instant::now()
        };
        let state = State {
            store,
            sealing,
            signer,
            config,
            view: view.clone(),
            edge,
            last_received_ms,
            last_checkpoint_size,
            last_checkpoint_at,
            pending_publish: None,
            lease,
            stale: None,
        };
        let thread = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || run(state, rx))
            .map_err(|e| format!("couldn't start the sequencer thread: {e}"))?;
        Ok(Sequencer {
            handle: SequencerHandle { tx, view, budget },
            thread: Some(thread),
        })
    }

    /// A thread that sequences nothing: every submission is refused (a
    /// follower forwards writes to the leader before they get here), and
    /// every `poll` the view is brought up to the store's checkpoint and
    /// tree size. Readers of a follower thus see only stored checkpoints,
    /// and never one whose tree the store lacks.
    pub fn follow(
        store: Arc<dyn Store>,
        view: Arc<LogView>,
        poll: Duration,
        queue_capacity: usize,
    ) -> Result<Sequencer, String> {
        let (tx, rx) = mpsc::sync_channel(queue_capacity.max(1));
        let budget = QueueBudget::new(QueueLimits::default());
        let thread_view = view.clone();
        let thread = std::thread::Builder::new()
            .name("follower".into())
            .spawn(move || follow(store.as_ref(), &thread_view, poll, rx))
            .map_err(|e| format!("couldn't start the follower thread: {e}"))?;
        Ok(Sequencer {
            handle: SequencerHandle { tx, view, budget },
            thread: Some(thread),
        })
    }

    /// A handle for submitters.
    pub fn handle(&self) -> SequencerHandle {
        self.handle.clone()
    }

    /// Sequences everything still queued, publishes a final checkpoint if
    /// the tree grew, and stops the thread.
    pub fn shutdown(mut self) {
        let _ = self.handle.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut st: State, rx: Receiver<Msg>) {
    loop {
        let timeout = st.checkpoint_due_in();
        match rx.recv_timeout(timeout) {
            Ok(Msg::Submit(first)) => {
                let (batch, shutdown) = collect_batch(&st.config, first, &rx);
                st.integrate(batch);
                if shutdown {
                    st.final_checkpoint();
                    return;
                }
            }
            Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                // Drain what was queued before the shutdown.
                while let Ok(Msg::Submit(s)) = rx.try_recv() {
                    st.integrate(vec![s]);
                }
                st.final_checkpoint();
                return;
            }
            Err(RecvTimeoutError::Timeout) => st.periodic_checkpoint(),
        }
    }
}

fn follow(store: &dyn Store, view: &LogView, poll: Duration, rx: Receiver<Msg>) {
    loop {
        match rx.recv_timeout(poll) {
            Ok(Msg::Submit(s)) => s.answer(Err(SubmitError::Paused(
                "this frontend is not the sequencer".into(),
            ))),
            Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = refresh_view(store, view) {
                    tracing::warn!(error = %e, "couldn't read the stored checkpoint; the view stays where it was");
                }
            }
        }
    }
}

/// Brings `view` up to the store: its tree size, and its checkpoint when
/// that is newer than the published one. Tree size first, so a reader
/// never finds a checkpoint larger than the tree it may prove against.
fn refresh_view(store: &dyn Store, view: &LogView) -> Result<(), String> {
    let size = store.tree_size().map_err(|e| e.to_string())?;
    if size > view.durable_size() {
        view.set_durable_size(size);
    }
    let Some(stored) = store.checkpoint().map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let published = Published::from_stored(&stored)?;
    if published.checkpoint.size > view.checkpoint().checkpoint.size {
        view.publish(Arc::new(published));
    }
    Ok(())
}

/// Takes `first` and whatever else is queued, up to the batch limits.
fn collect_batch(
    config: &SequencerConfig,
    first: Submission,
    rx: &Receiver<Msg>,
) -> (Vec<Submission>, bool) {
    let deadline = Instant::now() + config.max_batch_delay;
    let mut entries = first.events.len();
    let mut batch = vec![first];
    while entries < config.max_batch_entries {
        let next = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
        };
        match next {
            Msg::Submit(s) => {
                entries += s.events.len();
                batch.push(s);
            }
            Msg::Shutdown => return (batch, true),
        }
    }
    (batch, false)
}

impl State {
    fn checkpoint_due_in(&self) -> Duration {
        if let Some(b) = self.stale {
            return b.next_try.saturating_duration_since(Instant::now());
        }
        if self.edge.size() == self.last_checkpoint_size {
            return Duration::from_secs(3600);
        }
        self.config
            .checkpoint_interval
            .saturating_sub(self.last_checkpoint_at.elapsed())
    }

    pub(super) fn checkpoint_due(&self) -> bool {
        self.edge.size() != self.last_checkpoint_size
            && self.last_checkpoint_at.elapsed() >= self.config.checkpoint_interval
    }

    /// Signs and stores a checkpoint on its own when the interval passed and
    /// the tree grew since the last one.
    fn periodic_checkpoint(&mut self) {
        if self.stale.is_some() {
            self.retry_reload();
        }
        if self.checkpoint_due() {
            self.checkpoint_now();
        }
    }

    fn final_checkpoint(&mut self) {
        if self.edge.size() != self.last_checkpoint_size {
            self.checkpoint_now();
        }
    }
}
