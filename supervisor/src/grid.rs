//! The fleet's timer grid: periodic timers of one period (every plugin's
//! heartbeats, its memory sampler, the reaper's sweep) tick at the same
//! instants, so an idle fleet wakes the supervisor once per period instead
//! of once per timer. The grid starts at its first use.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// A timer of `period` on the grid. Its first tick is the grid's next one
/// (within `period`); a late tick is skipped rather than bunched.
pub fn every(period: Duration) -> Interval {
    let mut t = tokio::time::interval_at(next(period), period);
    t.set_missed_tick_behavior(MissedTickBehavior::Skip);
    t
}

/// The grid's next instant of `period` after now.
pub fn next(period: Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    let now = tokio::time::Instant::now();
    match now.checked_duration_since(epoch) {
        Some(since) => epoch + next_after(since, period),
        // A clock paused before the grid began (tests): no grid to keep.
        None => now + period,
    }
}

/// The first multiple of `period` after `since` (both from the grid's
/// start).
fn next_after(since: Duration, period: Duration) -> Duration {
    let period_ns = period.as_nanos().max(1);
    let steps = since.as_nanos() / period_ns + 1;
    Duration::from_nanos(u64::try_from(steps * period_ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_of_one_period_share_the_grids_instants() {
        let s = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(next_after(Duration::ZERO, s), s);
        assert_eq!(next_after(ms(1), s), s);
        assert_eq!(next_after(ms(999), s), s);
        assert_eq!(next_after(s, s), 2 * s, "strictly after now");
        assert_eq!(next_after(ms(2500), ms(250)), ms(2750));
        assert_eq!(
            next_after(ms(5), Duration::ZERO),
            ms(5) + Duration::from_nanos(1)
        );
    }
}
