//! The one way the vault's background jobs run (the erasure cleanup,
//! [`super::cleanup`], and the search index's build,
//! [`crate::search::rebuild`]): a thread per job that runs the job's steps
//! one after another, with one pacing rule for all of them.
//!
//! Each step takes the vault's lock for its own duration only. That lock is
//! not fair: a job that took it again as soon as it let go would keep the
//! sequencer's commits waiting behind the whole job (an ingest p99 of over
//! a second while erasures ran). So after every step that did work the
//! thread sleeps [`Pace::between_steps`] (the `background_step_pause_ms`
//! setting), with no reference to the vault. It sleeps [`IDLE`] when there
//! was nothing to do, and [`RETRY_AFTER`] after a failed step, which it
//! then tries again: a job's steps are resumable, so a failure costs time
//! only.
//!
//! Before each step the thread also yields to the log's writers: while
//! the sequencer's queue holds submitted events not yet answered
//! ([`Writers`], counted by the sequencer's queue budget), it waits,
//! looking again every [`YIELD_POLL`], for at most [`MAX_YIELD`]; then it
//! runs the step whatever the queue holds, telling it so
//! ([`Turn::crowded`]): a job then does a smaller step, since its write
//! delays the commits queued behind it. So a step starts in a gap between
//! the sequencer's commits when there is one, and a log that is never
//! idle still gets a step every [`MAX_YIELD`] plus the pause: at 32
//! events a crowded step, about 140 events of cleanup a second at least
//! (an erased event reads 410 from the erasure on; the cleanup deletes
//! what no key opens any more).
//!
//! Invariant: the thread holds the vault only while a step runs, and ends
//! once the vault is dropped or the job says it is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// Default [`Pace::between_steps`].
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(20);
/// Largest `background_step_pause_ms`.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);
/// Wait before looking again when a step found nothing to do.
pub const IDLE: Duration = Duration::from_millis(500);
/// Wait after a failed step before trying it again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Longest a step waits for the writers' queue to empty.
pub const MAX_YIELD: Duration = Duration::from_millis(200);
/// How often a waiting step looks at the writers' queue again.
pub const YIELD_POLL: Duration = Duration::from_millis(1);

/// The sequencer's queue as the background jobs see it: the events
/// submitted and not yet answered. The sequencer's queue budget counts
/// into it; the jobs only read it.
#[derive(Clone, Debug, Default)]
pub struct Writers(Arc<AtomicUsize>);

impl Writers {
    /// The counter the queue budget keeps.
    pub fn queued(&self) -> &Arc<AtomicUsize> {
        &self.0
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// Waits while the queue holds events, for at most [`MAX_YIELD`]:
    /// whether it still holds some.
    fn yield_to(&self) -> Turn {
        let until = Instant::now() + MAX_YIELD;
        while self.busy() && Instant::now() < until {
            std::thread::sleep(YIELD_POLL);
        }
        Turn {
            crowded: self.busy(),
        }
    }
}

/// What a step is told when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    /// The writers' queue did not empty within [`MAX_YIELD`]: the step
    /// should be small.
    pub crowded: bool,
}

/// How the background jobs are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Sleep after each step that did work.
    pub between_steps: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            between_steps: DEFAULT_PAUSE,
        }
    }
}

/// What a step did.
pub enum Step {
    /// It did some of the work; the next step follows after the pause.
    Worked,
    /// It found nothing to do; the job looks again later.
    Idle,
    /// The job is over; the thread ends.
    Done,
}

/// Starts the thread `name` that runs `step` on `target` until the target
/// is dropped or a step answers [`Step::Done`], each step yielding to
/// `writers` first (see the module comment).
pub fn spawn<T, F>(
    name: &str,
    target: Weak<T>,
    pace: Pace,
    writers: Writers,
    mut step: F,
) -> Result<(), StoreError>
where
    T: Send + Sync + 'static,
    F: FnMut(&T, Turn) -> Result<Step, StoreError> + Send + 'static,
{
    let job = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            loop {
                let turn = writers.yield_to();
                let Some(t) = target.upgrade() else { return };
                let outcome = step(&t, turn);
                drop(t);
                let wait = match outcome {
                    Ok(Step::Worked) => pace.between_steps,
                    Ok(Step::Idle) => IDLE,
                    Ok(Step::Done) => return,
                    Err(e) => {
                        tracing::error!(job, error = %e, "a background step failed; retrying");
                        RETRY_AFTER
                    }
                };
                std::thread::sleep(wait);
            }
        })
        .map_err(|e| StoreError::Backend(format!("couldn't start {name}: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Instant;

    fn pace(ms: u64) -> Pace {
        Pace {
            between_steps: Duration::from_millis(ms),
        }
    }

    #[test]
    fn steps_run_until_done_with_the_pause_between_them() {
        let steps = Arc::new(AtomicU32::new(0));
        let (done, finished) = std::sync::mpsc::channel();
        let started = Instant::now();
        spawn(
            "test-job",
            Arc::downgrade(&steps),
            pace(30),
            Writers::default(),
            move |n, _| {
                if n.fetch_add(1, Ordering::SeqCst) == 3 {
                    done.send(()).unwrap();
                    return Ok(Step::Done);
                }
                Ok(Step::Worked)
            },
        )
        .unwrap();
        finished.recv_timeout(Duration::from_secs(30)).unwrap();
        // Four steps, three pauses before the last one.
        assert!(started.elapsed() >= Duration::from_millis(90));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(steps.load(Ordering::SeqCst), 4, "no step after Done");
    }

    #[test]
    fn a_failed_step_is_tried_again_and_the_thread_ends_with_its_target() {
        let tries = Arc::new(AtomicU32::new(0));
        let (tried, again) = std::sync::mpsc::channel();
        spawn(
            "test-job",
            Arc::downgrade(&tries),
            pace(0),
            Writers::default(),
            move |n, _| {
                let k = n.fetch_add(1, Ordering::SeqCst);
                let _ = tried.send(k);
                if k == 0 {
                    Err(StoreError::Backend("injected".into()))
                } else {
                    Ok(Step::Idle)
                }
            },
        )
        .unwrap();
        assert_eq!(again.recv_timeout(Duration::from_secs(30)).unwrap(), 0);
        assert_eq!(again.recv_timeout(Duration::from_secs(30)).unwrap(), 1);
        drop(tries);
        // The step's sender goes with the thread, which ends at its next
        // look for the dropped target.
        loop {
            match again.recv_timeout(Duration::from_secs(30)) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("the thread outlived its target: {e}"),
            }
        }
    }

    #[test]
    fn a_step_waits_while_writers_queue_and_a_busy_queue_only_delays_it() {
        let writers = Writers::default();
        writers.queued().store(1, Ordering::Release);
        let started = Instant::now();
        let (ran, steps) = std::sync::mpsc::channel();
        let target = Arc::new(());
        spawn(
            "test-job",
            Arc::downgrade(&target),
            pace(0),
            writers.clone(),
            move |_, turn| {
                let _ = ran.send((started.elapsed(), turn));
                Ok(Step::Worked)
            },
        )
        .unwrap();
        // The queue never empties: the step still runs, after the bound,
        // told that writers wait.
        let (first, turn) = steps.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            first >= MAX_YIELD,
            "ran after {first:?} with writers queued"
        );
        assert!(turn.crowded);
        // Once the queue is empty, steps follow without waiting for it,
        // and are not told so.
        writers.queued().store(0, Ordering::Release);
        loop {
            let (at, turn) = steps.recv_timeout(Duration::from_secs(30)).unwrap();
            if at >= first + MAX_YIELD {
                assert!(!turn.crowded);
                break;
            }
        }
        drop(target);
    }
}
