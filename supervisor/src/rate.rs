//! Call rate limits: `rate_limit = { calls = N, per = "1s" }` on calls into a
//! plugin. A call past the limit is answered `rate_limited` by the supervisor
//! and never reaches the plugin. The limiter is a GCRA (a leaky bucket that
//! holds up to `calls` at once and refills one call every `per / calls`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter, clock::DefaultClock, state::InMemoryState, state::NotKeyed};
use serde::Serialize;

use crate::units::serialize_duration;

/// A configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Calls allowed per period (at least 1).
    pub calls: u32,
    /// The period (above zero).
    #[serde(serialize_with = "serialize_duration")]
    pub per: Duration,
}

/// The live limiter of one plugin, shared by everyone calling it.
pub struct Limiter {
    limit: RateLimit,
    inner: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .finish()
    }
}

impl Limiter {
    /// A full bucket for `limit`.
    pub fn new(limit: RateLimit) -> Self {
        let calls = NonZeroU32::new(limit.calls).unwrap_or(NonZeroU32::MIN);
        let refill = (limit.per / calls.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(refill)
            .unwrap_or_else(|| Quota::per_second(calls))
            .allow_burst(calls);
        Self {
            limit,
            inner: RateLimiter::direct(quota),
        }
    }

    /// The limit it enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one call from the bucket; `Err` with the wait until the next
    /// one is allowed when it is empty.
    pub fn check(&self) -> Result<(), Duration> {
        self.inner.check().map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_limit_is_refused_with_the_wait() {
        let limiter = Limiter::new(RateLimit {
            calls: 3,
            per: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert!(limiter.check().is_ok());
        }
        let wait = limiter.check().unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }
}
