//! Restart policy: whether an ended plugin comes back, after how long, and
//! when to give up on it.
//!
//! - [`RestartPolicy`]: `always`, `on-failure` (default; an exit with a code
//!   in `success_codes` is not a failure, every other end is) or `never`.
//! - [`Backoff`]: the first restart after a crash is immediate; each further
//!   one in a row waits `initial`, doubling up to `max`, ±10% jitter. A plugin
//!   that ran for `reset_after` starts the sequence over.
//! - [`RestartLimit`]: more than `count` restarts within `within` and the
//!   plugin is `failed` until `corral start` (which clears the count).
//! - [`Strategy`]: what else restarts with a plugin (Erlang/OTP's strategies
//!   for OS processes); applied by the root supervisor.
//! - [`spawn_error_is_transient`]: whether a spawn that failed (exit reason
//!   `spawn`) may succeed later (out of fds, memory or processes), so the
//!   policy retries it, or never will (no such program), so it is `failed`.
//!
//! This module decides; the plugin actor and the root supervisor act.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use corral_proto::ExitReason;
use serde::{Deserialize, Serialize};

use crate::units::serialize_duration;

/// When an ended plugin is started again. Its default is in
/// `config::defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After every end, clean or not.
    Always,
    /// After a failure: any end but an exit with a success code.
    OnFailure,
    /// Never: an ended plugin stays down.
    Never,
}

impl RestartPolicy {
    /// Whether a plugin that ended for `reason` should be restarted.
    pub fn restarts_after(self, reason: &ExitReason, success_codes: &[i32]) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::OnFailure => {
                !matches!(reason, ExitReason::Exit { code } if success_codes.contains(code))
            }
        }
    }
}

/// What else restarts when a plugin is restarted. Its default is in
/// `config::defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the plugin that ended.
    OneForOne,
    /// The plugin, then the plugins that require it (transitively), in order.
    RestForOne,
    /// Every plugin.
    OneForAll,
}

/// Delays between restarts in a row. Its default is in
/// `config::defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Backoff {
    /// The delay before the second restart in a row.
    #[serde(serialize_with = "serialize_duration")]
    pub initial: Duration,
    /// The longest delay.
    #[serde(serialize_with = "serialize_duration")]
    pub max: Duration,
    /// Running this long resets the sequence.
    #[serde(serialize_with = "serialize_duration")]
    pub reset_after: Duration,
}

impl Backoff {
    /// The delay before restart number `streak` in a row (0 = the first,
    /// which is immediate), before jitter.
    pub fn base_delay(&self, streak: u32) -> Duration {
        if streak == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.saturating_pow(streak - 1);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// [`base_delay`](Self::base_delay) with ±10% jitter from `random` (0..1).
    pub fn delay(&self, streak: u32, random: f64) -> Duration {
        self.base_delay(streak)
            .mul_f64(0.9 + 0.2 * random.clamp(0.0, 1.0))
    }
}

/// At most `count` restarts within `within`. Its default is in
/// `config::defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RestartLimit {
    /// Restarts allowed in the window.
    pub count: u32,
    /// The sliding window.
    #[serde(serialize_with = "serialize_duration")]
    pub within: Duration,
}

/// A plugin's restart settings, borrowed from its spec.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// When it restarts.
    pub policy: RestartPolicy,
    /// Exit codes that are not failures.
    pub success_codes: &'a [i32],
    /// Delays between restarts in a row.
    pub backoff: &'a Backoff,
    /// Restarts allowed in a window.
    pub limit: &'a RestartLimit,
}

/// One plugin's restart bookkeeping.
#[derive(Debug, Default)]
pub struct RestartTracker {
    recent: VecDeque<Instant>,
    streak: u32,
}

/// What to do after a plugin ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it down (`exited`).
    Stay,
    /// Restart after this delay.
    Restart(Duration),
    /// Give up: the limit was hit (`failed`).
    GiveUp {
        /// Restarts counted in the window.
        restarts: u32,
        /// The window.
        within: Duration,
    },
}

impl RestartTracker {
    /// Decides what follows an end for `reason` after running for `ran`.
    pub fn decide(
        &mut self,
        rules: &Rules<'_>,
        reason: &ExitReason,
        ran: Duration,
        now: Instant,
        random: f64,
    ) -> Decision {
        let (backoff, limit) = (rules.backoff, rules.limit);
        if !rules.policy.restarts_after(reason, rules.success_codes) {
            return Decision::Stay;
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > limit.within)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= limit.count {
            return Decision::GiveUp {
                restarts: self.recent.len() as u32,
                within: limit.within,
            };
        }
        if ran >= backoff.reset_after {
            self.streak = 0;
        }
        let delay = backoff.delay(self.streak, random);
        self.streak += 1;
        self.recent.push_back(now);
        Decision::Restart(delay)
    }

    /// Forgets every restart (`corral start` on a failed plugin).
    pub fn reset(&mut self) {
        self.recent.clear();
        self.streak = 0;
    }
}

/// Whether a spawn that failed with the OS error `errno` may succeed if
/// tried again later: the machine (or the supervisor) ran out of file
/// descriptors, memory, disk or processes for a moment. Such a failure is
/// retried by the restart policy like any other end; every other one (no
/// such program, not executable, a bad `cwd`, no OS error at all) would fail
/// the same way again, so the plugin is `failed` at once.
pub fn spawn_error_is_transient(errno: Option<i32>) -> bool {
    use nix::errno::Errno;
    errno.is_some_and(|raw| {
        matches!(
            Errno::from_raw(raw),
            Errno::EMFILE | Errno::ENFILE | Errno::ENOSPC | Errno::EAGAIN | Errno::ENOMEM
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_something_is_transient_and_a_missing_program_is_not() {
        use nix::errno::Errno;
        for transient in [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOSPC,
            Errno::EAGAIN,
            Errno::ENOMEM,
        ] {
            assert!(
                spawn_error_is_transient(Some(transient as i32)),
                "{transient}"
            );
        }
        for lasting in [
            Errno::ENOENT,
            Errno::EACCES,
            Errno::ENOEXEC,
            Errno::ENOTDIR,
            Errno::EPERM,
        ] {
            assert!(!spawn_error_is_transient(Some(lasting as i32)), "{lasting}");
        }
        assert!(
            !spawn_error_is_transient(None),
            "no OS error: not transient"
        );
    }

    fn crash() -> ExitReason {
        ExitReason::Signal {
            signal: "SIGABRT".into(),
        }
    }

    #[test]
    fn policies_decide_on_the_reason() {
        let ok = ExitReason::Exit { code: 0 };
        let three = ExitReason::Exit { code: 3 };
        assert!(!RestartPolicy::OnFailure.restarts_after(&ok, &[0]));
        assert!(RestartPolicy::OnFailure.restarts_after(&three, &[0]));
        assert!(!RestartPolicy::OnFailure.restarts_after(&three, &[0, 3]));
        assert!(RestartPolicy::OnFailure.restarts_after(&ExitReason::Hang, &[0]));
        assert!(RestartPolicy::Always.restarts_after(&ok, &[0]));
        assert!(!RestartPolicy::Never.restarts_after(&crash(), &[0]));
    }

    #[test]
    fn backoff_is_immediate_then_doubles_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            reset_after: Duration::from_secs(10),
        };
        let delays: Vec<u64> = (0..6).map(|s| b.base_delay(s).as_millis() as u64).collect();
        assert_eq!(delays, [0, 100, 200, 400, 500, 500]);
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(180));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(220));
        assert_eq!(b.base_delay(200), Duration::from_millis(500), "no overflow");
    }

    #[test]
    fn the_limit_gives_up_and_a_long_run_resets_the_streak() {
        let (b, limit) = (
            Backoff::default(),
            RestartLimit {
                count: 3,
                within: Duration::from_secs(60),
            },
        );
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let short = Duration::from_millis(5);
        let rules = Rules {
            policy: RestartPolicy::OnFailure,
            success_codes: &[0],
            backoff: &b,
            limit: &limit,
        };
        let decide = |t: &mut RestartTracker, ran, at| t.decide(&rules, &crash(), ran, at, 0.5);
        assert_eq!(
            decide(&mut t, short, now),
            Decision::Restart(Duration::ZERO)
        );
        assert_eq!(
            decide(&mut t, short, now),
            Decision::Restart(Duration::from_millis(100))
        );
        // Ran long enough: the streak starts over, but the restart still counts.
        assert_eq!(
            decide(&mut t, Duration::from_secs(11), now),
            Decision::Restart(Duration::ZERO)
        );
        assert!(matches!(
            decide(&mut t, short, now),
            Decision::GiveUp { restarts: 3, .. }
        ));
        // Outside the window, restarts no longer count.
        let later = now + Duration::from_secs(61);
        assert_eq!(
            decide(&mut t, short, later),
            Decision::Restart(Duration::from_millis(100))
        );
        t.reset();
        assert_eq!(
            decide(&mut t, short, later),
            Decision::Restart(Duration::ZERO)
        );
    }
}
