//! The settings in force, as `corral inspect` shows them.

use std::time::Duration;

use super::lifecycle::round_ms;
use crate::config::PluginSpec;

/// The settings in force, for `corral inspect`.
pub(super) fn settings_json(
    spec: &PluginSpec,
    log_file: &std::path::Path,
    cgroups: Option<&[std::path::PathBuf]>,
) -> serde_json::Value {
    let d = |d: Duration| humantime::format_duration(round_ms(d)).to_string();
    serde_json::json!({
        "cmd": spec.cmd,
        "env": spec.env,
        "cwd": spec.cwd,
        "enabled": spec.enabled,
        "codec": spec.codec,
        "config": spec.config,
        "handshake_timeout": d(spec.handshake_timeout),
        "heartbeat": {
            "interval": d(spec.heartbeat.interval),
            "timeout": d(spec.heartbeat.timeout),
            "misses": spec.heartbeat.misses,
        },
        "stop_timeout": d(spec.stop_timeout),
        "kill_timeout": d(spec.kill_timeout),
        "call_timeout": d(spec.call_timeout),
        "memory_max": spec.memory_max,
        "memory_high": spec.memory_high,
        "memory_check_interval": d(spec.memory_check_interval),
        "pids_max": spec.pids_max,
        "nofile": spec.nofile,
        "rate_limit": spec.rate_limit.map(|r| serde_json::json!({"calls": r.calls, "per": d(r.per)})),
        "limits": spec.limits,
        "cgroups": cgroups,
        "restart": spec.restart,
        "success_codes": spec.success_codes,
        "backoff": {
            "initial": d(spec.backoff.initial),
            "max": d(spec.backoff.max),
            "reset_after": d(spec.backoff.reset_after),
        },
        "restart_limit": {
            "count": spec.restart_limit.count,
            "within": d(spec.restart_limit.within),
        },
        "requires": spec.requires,
        "log_max_size": spec.log_max_size,
        "log_keep": spec.log_keep,
        "log_file": log_file,
        "manifest": spec.manifest,
    })
}
