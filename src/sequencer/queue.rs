//! The queue budget: how much submitted work may wait for the sequencer.
//!
//! A submission reserves its events and bytes before it is queued and gives
//! them back when it is answered (or never queued), so memory held by
//! accepted but unanswered submissions stays bounded whatever the request
//! sizes. A full budget is pushback (HTTP 503), never unbounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How much submitted work may wait for the sequencer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events at most.
    pub max_events: usize,
    /// Bytes at most, counted as [`super::PreparedEvent::queued_bytes`].
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_events: 262_144,
            max_bytes: 256 << 20,
        }
    }
}

/// The events and bytes currently admitted, shared by every handle.
#[derive(Debug)]
pub(super) struct QueueBudget {
    limits: QueueLimits,
    /// Shared with the background jobs, which yield while it is not 0.
    events: Arc<AtomicUsize>,
    bytes: AtomicUsize,
}

/// Work admitted into the queue; given back when dropped (the submission
/// was answered, or never queued).
#[derive(Debug)]
pub(super) struct Reservation {
    budget: Arc<QueueBudget>,
    events: usize,
    bytes: usize,
}

impl QueueBudget {
    /// An empty budget with `limits`.
    pub(super) fn new(limits: QueueLimits) -> Arc<QueueBudget> {
        QueueBudget::counting_into(limits, Arc::default())
    }

    /// An empty budget with `limits` that counts its events into `events`
    /// (the vault's [`crate::vault::background::Writers`]).
    pub(super) fn counting_into(limits: QueueLimits, events: Arc<AtomicUsize>) -> Arc<QueueBudget> {
        Arc::new(QueueBudget {
            limits,
            events,
            bytes: AtomicUsize::new(0),
        })
    }

    /// Admits `events` and `bytes` if both stay within the limits, or if
    /// nothing else is admitted (so that one submission larger than the
    /// budget cannot wait forever).
    pub(super) fn try_reserve(
        self: &Arc<Self>,
        events: usize,
        bytes: usize,
    ) -> Option<Reservation> {
        let admit = |counter: &AtomicUsize, add: usize, max: usize| {
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    let next = cur.checked_add(add)?;
                    (cur == 0 || next <= max).then_some(next)
                })
                .is_ok()
        };
        if !admit(&self.events, events, self.limits.max_events) {
            return None;
        }
        if !admit(&self.bytes, bytes, self.limits.max_bytes) {
            self.events.fetch_sub(events, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!("veritrail_queue_events").increment(events as f64);
        metrics::gauge!("veritrail_queue_bytes").increment(bytes as f64);
        Some(Reservation {
            budget: self.clone(),
            events,
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.events.fetch_sub(self.events, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        metrics::gauge!("veritrail_queue_events").decrement(self.events as f64);
        metrics::gauge!("veritrail_queue_bytes").decrement(self.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Arc<QueueBudget> {
        QueueBudget::new(QueueLimits {
            max_events: 10,
            max_bytes: 1000,
        })
    }

    #[test]
    fn the_budget_refuses_beyond_either_limit_and_frees_on_drop() {
        let budget = budget();
        let a = budget.try_reserve(6, 100).unwrap();
        assert!(budget.try_reserve(5, 100).is_none(), "11 events > 10");
        let b = budget.try_reserve(4, 100).unwrap();
        assert!(budget.try_reserve(1, 1).is_none(), "events exhausted");
        drop(a);
        assert!(
            budget.try_reserve(1, 901).is_none(),
            "bytes: 100 + 901 > 1000"
        );
        let c = budget.try_reserve(1, 800).unwrap();
        drop((b, c));
        assert_eq!(budget.events.load(Ordering::Acquire), 0);
        assert_eq!(budget.bytes.load(Ordering::Acquire), 0);
    }

    #[test]
    fn one_submission_larger_than_the_budget_is_admitted_alone() {
        let budget = budget();
        let big = budget.try_reserve(50, 5000).unwrap();
        assert!(budget.try_reserve(1, 1).is_none());
        drop(big);
        assert!(budget.try_reserve(1, 1).is_some());
    }
}
