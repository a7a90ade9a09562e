//! The keys that bound a plugin's resources: memory, processes, CPU and IO
//! shares, open files, and its log files.

use std::time::Duration;

use super::at::At;
use super::defaults;
use crate::os::cgroup::LimitsMode;
use crate::os::log_file::MAX_KEEP;
use crate::units::{HumanDuration, Percent, Size};

/// The shortest `memory_check_interval`.
const MIN_MEMORY_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// `cpu_weight` and `io_weight`, as written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Weights {
    /// `cpu_weight`.
    pub cpu: Option<u32>,
    /// `io_weight`.
    pub io: Option<u32>,
}

/// `memory_max`, `memory_high` (bytes) and `memory_check_interval`.
pub(super) fn memory(
    at: &mut At<'_>,
    max: Option<Size>,
    high: Option<Size>,
    check_interval: Option<HumanDuration>,
) -> (Option<u64>, Option<u64>, Duration) {
    let check_interval = check_interval.map_or(defaults::MEMORY_CHECK_INTERVAL, |d| d.0);
    if check_interval < MIN_MEMORY_CHECK_INTERVAL {
        at.refuse("memory_check_interval", "sample at most every 10ms");
    }
    (max.map(|s| s.0), high.map(|s| s.0), check_interval)
}

/// `pids_max` and `nofile` (at least 1 when set), and `limits` (a cgroup
/// allowed when `cpu_max`, which only a cgroup enforces, is set).
pub(super) fn process_limits(
    at: &mut At<'_>,
    (pids_max, cpu_max, weights): (Option<u32>, Option<Percent>, Weights),
    nofile: Option<u64>,
    limits: Option<LimitsMode>,
) -> (Option<u32>, Option<u64>, LimitsMode) {
    if pids_max == Some(0) {
        at.refuse("pids_max", "must be at least 1");
    }
    for (key, set) in [
        ("cpu_max", cpu_max.is_some()),
        ("cpu_weight", weights.cpu.is_some()),
        ("io_weight", weights.io.is_some()),
    ] {
        if set && limits == Some(LimitsMode::Sampling) {
            at.refuse(
                key,
                "only a cgroup enforces it, and limits = \"sampling\" allows none: remove one of the two",
            );
        }
    }
    for (key, weight) in [("cpu_weight", weights.cpu), ("io_weight", weights.io)] {
        if weight.is_some_and(|w| !(1..=10_000).contains(&w)) {
            at.refuse(
                key,
                "must be 1 to 10000 (100 is the share of a plugin without one)",
            );
        }
    }
    if nofile == Some(0) {
        at.refuse("nofile", "must be at least 1");
    }
    (pids_max, nofile, limits.unwrap_or(defaults::LIMITS))
}

/// `log_max_size` (bytes; a size is above zero) and `log_keep` (at most
/// [`MAX_KEEP`]: each rotation renames every kept file).
pub(super) fn logs(at: &mut At<'_>, max_size: Option<Size>, keep: Option<u32>) -> (u64, u32) {
    let keep = keep.unwrap_or(defaults::LOG_KEEP);
    if keep > MAX_KEEP {
        at.refuse(
            "log_keep",
            format!("{keep} is too many: keep at most {MAX_KEEP} rotated files (raise log_max_size to keep more)"),
        );
    }
    (max_size.map_or(defaults::LOG_MAX_SIZE, |s| s.0), keep)
}
