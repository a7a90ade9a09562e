//! Is the plugin well? Heartbeat answers, health probe outcomes and memory
//! samples in, verdicts out: pure, so every rule is unit-tested. The actor
//! sends the pings, the spawn's [`Prober`](super::probe::Prober) runs the
//! probes, the sampler reads memory; the actor acts on what these say.

use std::time::{Duration, Instant};

use corral_proto::PluginApiClient;
use futures::FutureExt;
use futures::future::BoxFuture;

/// Heartbeats of one spawn: the sequence number of the last ping and the
/// misses in a row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Heartbeats {
    seq: u64,
    misses: u32,
}

/// What one heartbeat answer (or its absence) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PingVerdict {
    /// Answered in time.
    Fine,
    /// Late or lost: this many in a row, fewer than allowed.
    Missed(u32),
    /// Too many misses in a row: the plugin hangs.
    Hang(u32),
}

impl Heartbeats {
    /// The sequence number of the next ping.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Takes one ping's outcome; `allowed` is `heartbeat.misses`.
    pub(super) fn answered(&mut self, answered: bool, allowed: u32) -> PingVerdict {
        if answered {
            self.misses = 0;
            return PingVerdict::Fine;
        }
        self.misses += 1;
        if self.misses >= allowed {
            PingVerdict::Hang(self.misses)
        } else {
            PingVerdict::Missed(self.misses)
        }
    }
}

/// One ping: resolves to whether the plugin echoed `seq` within `timeout`.
pub(super) fn ping(
    client: PluginApiClient,
    seq: u64,
    timeout: Duration,
) -> BoxFuture<'static, Option<Duration>> {
    async move {
        let sent = Instant::now();
        // The deadline is kept here too, not only by the client: a plugin
        // that stops reading while a large `deliver` fills its socket stalls
        // the connection's writer, and its pings must still count as missed.
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        let answer = tokio::time::timeout(timeout, client.ping(ctx, seq)).await;
        matches!(answer, Ok(Ok(s)) if s == seq).then(|| sent.elapsed())
    }
    .boxed()
}

/// Health probes of one spawn: failures in a row, and whether one passed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Probes {
    misses: u32,
    passed: bool,
}

/// What one probe's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeVerdict {
    /// It passed; `first` for the spawn's first pass (it is ready).
    Passed {
        /// Whether no probe of this spawn passed before.
        first: bool,
    },
    /// It failed within `start_period`, before any pass: not counted.
    Grace,
    /// It failed: this many in a row, fewer than allowed.
    Missed(u32),
    /// It failed `misses` times in a row: the plugin is unhealthy.
    Unhealthy(u32),
}

impl Probes {
    /// Takes one probe's outcome; `in_start_period` is whether the spawn is
    /// younger than `start_period`, `allowed` is `health.misses`. As with
    /// Docker, a pass ends the grace early: from then on every failure
    /// counts.
    pub(super) fn judged(
        &mut self,
        passed: bool,
        in_start_period: bool,
        allowed: u32,
    ) -> ProbeVerdict {
        if passed {
            let first = !self.passed;
            self.passed = true;
            self.misses = 0;
            return ProbeVerdict::Passed { first };
        }
        if in_start_period && !self.passed {
            return ProbeVerdict::Grace;
        }
        self.misses += 1;
        if self.misses >= allowed {
            ProbeVerdict::Unhealthy(self.misses)
        } else {
            ProbeVerdict::Missed(self.misses)
        }
    }

    /// Whether a probe of this spawn has passed.
    pub(super) fn passed(&self) -> bool {
        self.passed
    }
}

/// What one memory sample means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemoryVerdict {
    /// Over `memory_max`: kill it.
    OverCap,
    /// Just crossed `memory_high` upwards: note it once.
    CrossedHigh,
    /// Nothing to do; `above_high` says where it stands against `memory_high`.
    Fine {
        /// Whether it is above `memory_high`.
        above_high: bool,
    },
}

/// Judges a sample of `rss` bytes against the caps; `was_above` is whether
/// the last sample was above `memory_high`.
pub(super) fn memory_verdict(
    rss: u64,
    max: Option<u64>,
    high: Option<u64>,
    was_above: bool,
) -> MemoryVerdict {
    if max.is_some_and(|max| rss > max) {
        return MemoryVerdict::OverCap;
    }
    let above_high = high.is_some_and(|high| rss > high);
    if above_high && !was_above {
        MemoryVerdict::CrossedHigh
    } else {
        MemoryVerdict::Fine { above_high }
    }
}

/// What to do about a sample over `memory_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CapKill {
    /// Kill it now for `memory_cap`.
    Now,
    /// A stop is under way: kill it now for `memory_cap` anyway, without
    /// waiting for the stop's deadlines.
    WhileStopping,
    /// Already being killed for another reason: send SIGKILL again (to
    /// whatever of it is still alive), keeping that reason.
    Again,
}

/// Over the cap: `stopping` when a stop was requested and nothing else has
/// overtaken it, `killed` when a kill verdict was already reached.
pub(super) fn cap_kill(stopping: bool, killed: bool) -> CapKill {
    match (stopping, killed) {
        (true, _) => CapKill::WhileStopping,
        (false, true) => CapKill::Again,
        (false, false) => CapKill::Now,
    }
}

/// How often a plugin without a memory limit has its processes walked: only
/// to keep its descendants attributed to it, which a slower walk does as
/// well for a daemon that lives, at a quarter of the idle cost.
pub(super) const ATTRIBUTION_INTERVAL: Duration = Duration::from_secs(1);

/// How old a memory sample may be for `ps`: older, and `ps` asks for a
/// new one (the sampler's own is once a second by default, with some room
/// for a late tick).
const SAMPLE_FRESH_FOR: Duration = Duration::from_millis(1500);

/// Whether a memory sample taken `at` is too old for `ps` (older than
/// [`SAMPLE_FRESH_FOR`]).
pub(super) fn sample_stale(at: Instant) -> bool {
    at.elapsed() >= SAMPLE_FRESH_FOR
}

/// How often the sampler runs: `memory_check_interval` for a plugin with a
/// memory limit, and no faster than [`ATTRIBUTION_INTERVAL`] for one
/// without.
pub(super) fn sample_every(limited: bool, memory_check_interval: Duration) -> Duration {
    if limited {
        memory_check_interval
    } else {
        memory_check_interval.max(ATTRIBUTION_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plugin_with_a_memory_limit_is_sampled_faster_than_once_a_second() {
        let fast = Duration::from_millis(250);
        assert_eq!(sample_every(true, fast), fast);
        assert_eq!(sample_every(false, fast), ATTRIBUTION_INTERVAL);
        let slow = Duration::from_secs(5);
        assert_eq!(sample_every(false, slow), slow);
    }

    #[test]
    fn misses_in_a_row_up_to_the_allowed_count_are_a_hang() {
        let mut h = Heartbeats::default();
        assert_eq!(h.answered(false, 3), PingVerdict::Missed(1));
        assert_eq!(h.answered(false, 3), PingVerdict::Missed(2));
        assert_eq!(h.answered(false, 3), PingVerdict::Hang(3));
    }

    #[test]
    fn an_answer_clears_the_misses() {
        let mut h = Heartbeats::default();
        h.answered(false, 3);
        h.answered(false, 3);
        assert_eq!(h.answered(true, 3), PingVerdict::Fine);
        assert_eq!(h.answered(false, 3), PingVerdict::Missed(1));
    }

    #[test]
    fn one_allowed_miss_is_a_hang_at_once() {
        assert_eq!(
            Heartbeats::default().answered(false, 1),
            PingVerdict::Hang(1)
        );
    }

    #[test]
    fn probe_failures_in_the_start_period_do_not_count_until_one_passes() {
        let mut p = Probes::default();
        assert_eq!(p.judged(false, true, 2), ProbeVerdict::Grace);
        assert_eq!(p.judged(false, true, 2), ProbeVerdict::Grace);
        assert!(!p.passed());
        assert_eq!(
            p.judged(true, true, 2),
            ProbeVerdict::Passed { first: true }
        );
        assert_eq!(p.judged(false, true, 2), ProbeVerdict::Missed(1));
        assert_eq!(
            p.judged(true, false, 2),
            ProbeVerdict::Passed { first: false }
        );
        assert_eq!(p.judged(false, false, 2), ProbeVerdict::Missed(1));
        assert_eq!(p.judged(false, false, 2), ProbeVerdict::Unhealthy(2));
    }

    #[test]
    fn probe_failures_past_the_start_period_count_before_any_pass() {
        let mut p = Probes::default();
        assert_eq!(p.judged(false, false, 1), ProbeVerdict::Unhealthy(1));
    }

    #[test]
    fn ping_numbers_count_up() {
        let mut h = Heartbeats::default();
        assert_eq!((h.next_seq(), h.next_seq()), (1, 2));
    }

    #[test]
    fn over_the_cap_is_a_kill_even_when_above_high() {
        assert_eq!(
            memory_verdict(101, Some(100), Some(50), true),
            MemoryVerdict::OverCap
        );
        assert_eq!(
            memory_verdict(100, Some(100), None, false),
            MemoryVerdict::Fine { above_high: false }
        );
    }

    #[test]
    fn crossing_high_is_noted_once_per_crossing() {
        assert_eq!(
            memory_verdict(60, None, Some(50), false),
            MemoryVerdict::CrossedHigh
        );
        assert_eq!(
            memory_verdict(70, None, Some(50), true),
            MemoryVerdict::Fine { above_high: true }
        );
        assert_eq!(
            memory_verdict(40, None, Some(50), true),
            MemoryVerdict::Fine { above_high: false }
        );
        assert_eq!(
            memory_verdict(60, None, Some(50), false),
            MemoryVerdict::CrossedHigh
        );
    }

    #[test]
    fn over_the_cap_while_stopping_is_a_kill_now_and_a_kill_is_repeated() {
        assert_eq!(cap_kill(false, false), CapKill::Now);
        assert_eq!(cap_kill(true, false), CapKill::WhileStopping);
        assert_eq!(cap_kill(false, true), CapKill::Again);
    }

    #[test]
    fn no_caps_no_verdict() {
        assert_eq!(
            memory_verdict(u64::MAX, None, None, false),
            MemoryVerdict::Fine { above_high: false }
        );
    }
}
