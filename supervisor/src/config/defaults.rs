//! Every built-in default: the value a key takes when no layer sets it (the
//! bottom layer under `[defaults]`, the manifest and the fleet entry). The
//! `Default` impls of the config's enums and of [`Backoff`] and
//! [`RestartLimit`] live here too, built from these constants, so a default
//! is written once whichever way it is asked for.
//!
//! Two defaults are rules rather than values: a plugin's `cwd` is its
//! manifest's folder (or the fleet file's when it has no manifest), and its
//! `publish` is [`publish`] of its name.

use std::time::Duration;

use corral_proto::Codec;

use crate::bus::Overflow;
use crate::os::cgroup::LimitsMode;
use crate::restart::{Backoff, RestartLimit, RestartPolicy, Strategy};

// ---- [supervisor]

/// `supervisor.runtime_dir`, relative to the fleet file's folder.
pub const RUNTIME_DIR: &str = ".corral";
/// `supervisor.log_dir`, relative to the runtime directory.
pub const LOG_DIR_IN_RUNTIME_DIR: &str = "logs";
/// `supervisor.strategy`.
pub const STRATEGY: Strategy = Strategy::OneForOne;
/// `supervisor.control_connections`: control connections open at once.
pub const CONTROL_CONNECTIONS: usize = 64;
/// `supervisor.control_idle_timeout`: a control connection with no request
/// for this long is closed.
pub const CONTROL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

// ---- process

/// `enabled`: `corral up` starts the plugin.
pub const ENABLED: bool = true;
/// `codec`.
pub const CODEC: Codec = Codec::Bincode;

// ---- timeouts

/// `handshake_timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// `stop_timeout`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// `kill_timeout`.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// `call_timeout`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

// ---- heartbeat

/// `heartbeat.interval`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// `heartbeat.timeout`.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// `heartbeat.misses`.
pub const HEARTBEAT_MISSES: u32 = 3;
/// `health.interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `health.timeout`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// `health.misses`.
pub const HEALTH_MISSES: u32 = 3;
/// `health.start_period`.
pub const HEALTH_START_PERIOD: Duration = Duration::ZERO;

// ---- limits

/// `memory_check_interval`.
pub const MEMORY_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// `rate_limit.per`.
pub const RATE_LIMIT_PER: Duration = Duration::from_secs(1);
/// `limits`.
pub const LIMITS: LimitsMode = LimitsMode::Auto;

// ---- bus

/// `queue`: events a plugin's queue holds.
pub const QUEUE: usize = 65_536;
/// `queue_bytes`: bytes a plugin's queue holds.
pub const QUEUE_BYTES: u64 = 16 * 1024 * 1024;
/// `retained_max`: retained events a plugin may keep.
pub const RETAINED_MAX: u32 = 1024;
/// `retained_bytes`: bytes of retained events a plugin may keep.
pub const RETAINED_BYTES: u64 = 4 * 1024 * 1024;
/// `overflow`.
pub const OVERFLOW: Overflow = Overflow::DropOldest;
/// `durable`.
pub const DURABLE: bool = false;
/// `max_subscriptions`: patterns a plugin may hold at once.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// `publish`: a plugin may publish under its own name.
pub fn publish(name: &str) -> Vec<String> {
    vec![format!("{name}.>")]
}

// ---- restart

/// `restart`.
pub const RESTART: RestartPolicy = RestartPolicy::OnFailure;
/// `success_codes`.
pub const SUCCESS_CODES: &[i32] = &[0];
/// `backoff.initial`.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// `backoff.max`.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// `backoff.reset_after`.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// `restart_limit.count`.
pub const RESTART_LIMIT_COUNT: u32 = 5;
/// `restart_limit.within`.
pub const RESTART_LIMIT_WITHIN: Duration = Duration::from_secs(60);

// ---- logs

/// `log_max_size`, in bytes.
pub const LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// `log_keep`.
pub const LOG_KEEP: u32 = 5;

impl Default for Strategy {
    fn default() -> Self {
        STRATEGY
    }
}

impl Default for LimitsMode {
    fn default() -> Self {
        LIMITS
    }
}

impl Default for Overflow {
    fn default() -> Self {
        OVERFLOW
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RESTART
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: BACKOFF_INITIAL,
            max: BACKOFF_MAX,
            reset_after: BACKOFF_RESET_AFTER,
        }
    }
}

impl Default for RestartLimit {
    fn default() -> Self {
        Self {
            count: RESTART_LIMIT_COUNT,
            within: RESTART_LIMIT_WITHIN,
        }
    }
}
