//! Per-API-key rate limits: a token bucket per key, refilled continuously.
//!
//! A key may spend `burst` requests at once and `per_second` on average.
//! Buckets live in memory only (a restart forgives everyone), and the map is
//! bounded: keys are few (operator-created), and idle full buckets are
//! dropped when the map grows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits for one key; `per_second == 0` disables limiting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Average requests per second allowed.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: f64,
}

impl Default for RateLimit {
    /// 2,000 requests/s with bursts of 4,000 per key: far above what one
    /// well-behaved writer needs (a request carries up to 1,000 events), low
    /// enough that one runaway client cannot monopolise the sequencer.
    fn default() -> Self {
        RateLimit {
            per_second: 2000.0,
            burst: 4000.0,
        }
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by key id.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The key must wait this long before its next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Time until one request is allowed again.
    pub retry_after: Duration,
}

const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// A limiter applying `limit` to every key.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `key`, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Throttled> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Throttled> {
        let RateLimit { per_second, burst } = self.limit;
        if per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // Forget buckets that have refilled completely: they carry no state.
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Throttled {
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let rl = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at("k", t0).is_ok());
        }
        let throttled = rl.check_at("k", t0).unwrap_err();
        assert!(throttled.retry_after <= Duration::from_millis(100));
        assert!(
            rl.check_at("other", t0).is_ok(),
            "keys are limited separately"
        );
        assert!(
            rl.check_at("k", t0 + Duration::from_millis(100)).is_ok(),
            "a token refills after 1/rate"
        );
        assert!(rl.check_at("k", t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn zero_disables_limiting() {
        let rl = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 0.0,
        });
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(rl.check_at("k", t0).is_ok());
        }
    }
}
