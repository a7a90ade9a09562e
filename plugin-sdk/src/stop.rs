//! [`Stop`]: the signal that tells a plugin's background work to finish,
//! raised when the plugin unloads (a stop request, or its connection to the
//! supervisor closing), and the ways to wait on it: a flag, a future, a
//! sleep that ends early, and [`Stop::every`] for periodic jobs. When the
//! signal is raised and how long the SDK then waits is the `background`
//! module's business.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use corral_sdk::Stop;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let stop = Stop::default();
//! // A poller: read, then sleep until the next read or the stop signal.
//! let mut reads = 0;
//! while !stop.is_stopped() && reads < 3 {
//!     reads += 1;
//!     if !stop.sleep(Duration::from_millis(1)).await {
//!         break;
//!     }
//! }
//! assert_eq!(reads, 3);
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::outcome::{Outcome, caught};

/// The stop signal of a plugin's background work: cheap to clone, and every
/// clone sees the same signal. [`Plugin::background`](crate::Plugin::background)
/// is handed one; [`Context::stopping`](crate::Context::stopping) is the same
/// signal, for code elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
}

impl Stop {
    /// Whether the plugin is unloading: finish what you are doing and return.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the plugin is unloading (at once if it is already);
    /// made for `tokio::select!` against other work.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + '_ {
        self.token.cancelled()
    }

    /// Sleeps for `duration`, or less if the plugin starts unloading
    /// meanwhile. True when it slept the whole time, false when stopped:
    /// `while stop.sleep(period).await { … }` polls until unload.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = self.token.cancelled() => false,
            () = tokio::time::sleep(duration) => true,
        }
    }

    /// Runs `job` every `period` until the plugin unloads, then returns.
    ///
    /// The first run is one period from now; a run that overruns its period
    /// skips the ticks it missed rather than run again at once. A run that
    /// returns an error or panics is logged to stderr and the schedule goes
    /// on. A run in progress is not interrupted by the stop signal: the SDK
    /// waits for it, within its bound on the whole background work.
    pub async fn every<F, Fut>(&self, period: Duration, mut job: F)
    where
        F: FnMut() -> Fut,
        Fut: Future,
        Fut::Output: Outcome,
    {
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = self.token.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(why) = caught(job()).await {
                eprintln!("corral plugin: a job run every {period:?} failed: {why}");
            }
        }
    }

    /// The cancellation token behind this signal, for libraries that take
    /// one (or a [`child_token`](CancellationToken::child_token) of it).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Raises the signal.
    pub(crate) fn raise(&self) {
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn sleep_ends_early_when_stopped() {
        let stop = Stop::default();
        assert!(stop.sleep(Duration::from_millis(1)).await);
        let clone = stop.clone();
        clone.raise();
        assert!(stop.is_stopped());
        let started = std::time::Instant::now();
        assert!(!stop.sleep(Duration::from_secs(3600)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        stop.stopped().await;
    }

    #[tokio::test]
    async fn a_job_that_fails_or_panics_keeps_its_schedule_until_stopped() {
        let stop = Stop::default();
        let runs = AtomicU32::new(0);
        let job = || async {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            match n {
                1 => Err("the sensor is asleep"),
                2 => panic!("the sensor fell off"),
                5 => {
                    stop.raise();
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        tokio::time::timeout(
            Duration::from_secs(10),
            stop.every(Duration::from_millis(2), job),
        )
        .await
        .expect("every returns once stopped");
        assert_eq!(runs.load(Ordering::SeqCst), 5);
    }
}
