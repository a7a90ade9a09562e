//! A plugin's running figures for `/metrics`: its exits by reason, the
//! calls into it by outcome, how long they took, its heartbeats' round
//! trips and its health probes' results. Its actor and the tasks that call
//! it count into one [`Meter`] (atomics, no lock, nothing awaited); a scrape
//! reads it whole as a [`Reading`]. Every label set is fixed here, so no
//! plugin can grow the metrics' cardinality: an error code the table does
//! not know counts as `other`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_proto::{ExitReason, codes};

/// Upper bounds of the latency buckets, in seconds (the last, `+Inf`, is
/// implied).
pub const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The exit reasons, by [`ExitReason::name`].
pub const EXIT_REASONS: [&str; 9] = [
    "exit",
    "signal",
    "hang",
    "memory_cap",
    "handshake",
    "spawn",
    "protocol",
    "requested",
    "health",
];

/// The outcomes a call into a plugin is counted under: `ok`, the codes
/// corral itself answers with, and `other` for a plugin's own codes.
pub const CALL_OUTCOMES: [&str; 17] = [
    "ok",
    codes::UNKNOWN_ACTION,
    codes::BAD_PAYLOAD,
    codes::INTERNAL,
    codes::TIMEOUT,
    codes::UNKNOWN_PLUGIN,
    codes::NOT_RUNNING,
    codes::DISCONNECTED,
    codes::BAD_REQUEST,
    codes::SHUTTING_DOWN,
    codes::RATE_LIMITED,
    codes::DENIED,
    codes::TOO_LARGE,
    codes::LIMIT,
    codes::NOT_SUPPORTED,
    codes::STREAMED,
    "other",
];

/// A histogram of durations over [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound, and over the last.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let at = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Its figures now.
    pub fn read(&self) -> HistogramReading {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HistogramReading {
            counts,
            sum: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)).as_secs_f64(),
        }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramReading {
    /// Observations per bucket of [`BUCKETS`] (not cumulative), then over
    /// the last bound.
    pub counts: Vec<u64>,
    /// The sum of every observation, in seconds.
    pub sum: f64,
}

impl HistogramReading {
    /// How many observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (bound, observations in that bucket alone) for each of [`BUCKETS`]
    /// and `+Inf`: the encoder adds them up into Prometheus' `le` counts.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = BUCKETS.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().copied()).collect()
    }
}

/// The figures of one plugin, counted as they happen.
#[derive(Debug, Default)]
pub struct Meter {
    /// Calls handed to it (past its rate limit), over every spawn.
    handed: AtomicU64,
    exits: [AtomicU64; EXIT_REASONS.len()],
    calls: [AtomicU64; CALL_OUTCOMES.len()],
    call_seconds: Histogram,
    heartbeat_seconds: Histogram,
    probes_passed: AtomicU64,
    probes_failed: AtomicU64,
    /// Stop steps past the plugin's own ending: a signal after it did not end
    /// on request within `stop_timeout`, SIGKILL after it outlived its stop
    /// signal by `kill_timeout`.
    forced_stops: AtomicU64,
}

impl Meter {
    /// A stop had to signal the plugin's processes.
    pub fn forced_stop(&self) {
        self.forced_stops.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops so far that had to signal it.
    pub fn forced_stops(&self) -> u64 {
        self.forced_stops.load(Ordering::Relaxed)
    }

    /// A call was handed to it.
    pub fn hand(&self) {
        self.handed.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls handed to it so far.
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    /// A process of it ended (or could not start) for `reason`.
    pub fn exited(&self, reason: &ExitReason) {
        let at = EXIT_REASONS
            .iter()
            .position(|r| *r == reason.name())
            .unwrap_or(0);
        self.exits[at].fetch_add(1, Ordering::Relaxed);
    }

    /// A call into it ended with `code` (`None`: answered) after `took`.
    pub fn called(&self, code: Option<&str>, took: Duration) {
        self.calls[outcome(code)].fetch_add(1, Ordering::Relaxed);
        self.call_seconds.observe(took);
    }

    /// A heartbeat came back after `took`.
    pub fn heartbeat(&self, took: Duration) {
        self.heartbeat_seconds.observe(took);
    }

    /// A health probe passed or failed.
    pub fn probed(&self, passed: bool) {
        let counter = if passed {
            &self.probes_passed
        } else {
            &self.probes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Its figures now.
    pub fn read(&self) -> Reading {
        let load = |a: &[AtomicU64]| a.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        Reading {
            exits: load(&self.exits),
            calls: load(&self.calls),
            call_seconds: self.call_seconds.read(),
            heartbeat_seconds: self.heartbeat_seconds.read(),
            probes: [
                self.probes_passed.load(Ordering::Relaxed),
                self.probes_failed.load(Ordering::Relaxed),
            ],
        }
    }
}

/// The index in [`CALL_OUTCOMES`] a call's code counts under.
fn outcome(code: Option<&str>) -> usize {
    match code {
        None => 0,
        Some(code) => CALL_OUTCOMES[1..CALL_OUTCOMES.len() - 1]
            .iter()
            .position(|c| *c == code)
            .map_or(CALL_OUTCOMES.len() - 1, |i| i + 1),
    }
}

/// A [`Meter`] read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Exits per [`EXIT_REASONS`].
    pub exits: Vec<u64>,
    /// Calls per [`CALL_OUTCOMES`].
    pub calls: Vec<u64>,
    /// How long calls into it took.
    pub call_seconds: HistogramReading,
    /// Heartbeat round trips.
    pub heartbeat_seconds: HistogramReading,
    /// Health probes passed, failed.
    pub probes: [u64; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_into_its_bucket_and_sums() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let r = h.read();
        assert_eq!(r.count(), 3);
        let buckets = r.buckets();
        assert_eq!(buckets[0], (0.000_25, 1));
        assert_eq!(buckets[4], (0.005, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 3);
        assert!((r.sum - 60.0031).abs() < 1e-6, "{}", r.sum);
    }

    #[test]
    fn codes_a_plugin_makes_up_count_as_other() {
        let m = Meter::default();
        m.called(None, Duration::ZERO);
        m.called(Some(codes::TIMEOUT), Duration::ZERO);
        m.called(Some("no_such_user"), Duration::ZERO);
        m.called(Some("other"), Duration::ZERO);
        let r = m.read();
        let at = |name: &str| CALL_OUTCOMES.iter().position(|c| *c == name).unwrap();
        assert_eq!(r.calls[at("ok")], 1);
        assert_eq!(r.calls[at(codes::TIMEOUT)], 1);
        assert_eq!(r.calls[at("other")], 2);
        assert_eq!(r.call_seconds.count(), 4);
    }

    #[test]
    fn every_exit_reason_has_its_own_count() {
        let m = Meter::default();
        m.exited(&ExitReason::MemoryCap);
        m.exited(&ExitReason::Exit { code: 1 });
        let r = m.read();
        assert_eq!(r.exits[3], 1);
        assert_eq!(r.exits[0], 1);
        assert_eq!(r.exits.iter().sum::<u64>(), 2);
    }
}
