//! The sequencer's side of a lease: whether this process may sequence right
//! now. Who holds the lease and how it is renewed is the frontend's
//! business (`crate::leadership`); the sequencer only asks [`Lease::held`]
//! before every batch and checkpoint, and says [`Lease::lose`] when it
//! finds it cannot go on.
//!
//! The lease is valid until a local deadline that is never later than the
//! stored expiry: it is measured from the moment the acquiring or renewing
//! statement was *sent*, so the database's expiry (its `now()` when the
//! statement ran, plus the same time to live) always falls after it.
//!
//! Invariant: once the deadline passed or the lease was lost, `held` is
//! false for good; a new lease is a new [`Lease`].

use std::sync::Mutex;
use std::time::Instant;

/// A lease this process holds, as the sequencer sees it.
#[derive(Debug)]
pub struct Lease {
    token: i64,
    /// `None` once lost.
    valid_until: Mutex<Option<Instant>>,
}

impl Lease {
    /// A lease under fencing `token`, valid until `valid_until`.
    pub fn new(token: i64, valid_until: Instant) -> Lease {
        Lease {
            token,
            valid_until: Mutex::new(Some(valid_until)),
        }
    }

    /// Its fencing token.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Extends the deadline to `valid_until` (a renewal succeeded), unless
    /// the lease was lost or already expired.
    pub fn renewed(&self, valid_until: Instant) -> bool {
        let mut g = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        match *g {
            Some(until) if Instant::now() < until => {
                *g = Some(until.max(valid_until));
                true
            }
            _ => {
                *g = None;
                false
            }
        }
    }

    /// True while this process may sequence.
    pub fn held(&self) -> bool {
        let mut g = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        match *g {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *g = None;
                false
            }
            None => false,
        }
    }

    /// Gives the lease up for good (its deadline passed, a renewal was
    /// refused, or a commit was fenced).
    pub fn lose(&self, why: &str) {
        let mut g = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        if g.take().is_some() {
            tracing::warn!(
                token = self.token,
                reason = why,
                "the sequencer lease is lost; this frontend stops sequencing"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lease_ends_at_its_deadline_and_stays_ended() {
        let lease = Lease::new(7, Instant::now() + Duration::from_millis(30));
        assert!(lease.held());
        assert!(lease.renewed(Instant::now() + Duration::from_millis(60)));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!lease.held());
        // A late renewal does not bring it back.
        assert!(!lease.renewed(Instant::now() + Duration::from_secs(5)));
        assert!(!lease.held());
    }

    #[test]
    fn a_lost_lease_is_not_renewed() {
        let lease = Lease::new(1, Instant::now() + Duration::from_secs(5));
        lease.lose("test");
        assert!(!lease.held());
        assert!(!lease.renewed(Instant::now() + Duration::from_secs(5)));
    }
}
