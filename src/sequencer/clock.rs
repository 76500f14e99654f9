//! The wall clock the log reads: receive times of leaves, checkpoint
//! timestamps, key and erasure records, health ages.
//!
//! One [`Clock`] is made where the process starts (the system clock) or a
//! test starts (a [`ManualClock`]) and is passed to whatever needs the
//! time; nothing reads the system time behind its back. A clone reads the
//! same source. Intervals (batch delays, checkpoint intervals) are measured
//! with `Instant`, which is monotonic, not with this clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time in Unix milliseconds; cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The operating system's wall clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
            }
            Source::Manual(ms) => ms.load(Ordering::Acquire),
        }
    }

    /// The current time as RFC 3339 UTC with milliseconds.
    pub fn now_rfc3339(&self) -> String {
        crate::event::format_rfc3339_ms(self.now_ms())
    }
}

/// A clock that stands still until told otherwise, for tests.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `ms` (Unix milliseconds).
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    /// The [`Clock`] that reads this one.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// Sets the time to `ms`.
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::Release);
    }

    /// Moves the time by `ms` (backwards when negative).
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let manual = ManualClock::at(1_000);
        let clock = manual.clock();
        let copy = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        manual.advance_ms(250);
        assert_eq!(copy.now_ms(), 1_250);
        manual.set_ms(1_795_000_000_000);
        assert_eq!(clock.now_rfc3339(), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn the_system_clock_reads_the_present() {
        // 2026-01-01: any later reading is plausible, an earlier one is a bug.
        assert!(Clock::system().now_ms() > 1_767_225_600_000);
    }
}
