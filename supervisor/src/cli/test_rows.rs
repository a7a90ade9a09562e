//! Status rows for the CLI's unit tests: one running plugin's, which each
//! test changes only where it differs.

use corral_proto::{Enforcement, PluginState, PluginStatus, Protocol};

/// A running plugin's row: up a second, 5 MiB of a 64 MiB cap.
pub(crate) fn running(name: &str, pid: u32) -> PluginStatus {
    PluginStatus {
        name: name.into(),
        state: PluginState::Running,
        pid: Some(pid),
        restarts: 0,
        uptime_ms: 1_000,
        rss_bytes: 5 << 20,
        memory_max_bytes: Some(64 << 20),
        memory_high_bytes: None,
        limits: Enforcement::Sampling,
        last_exit: None,
        waiting_for: None,
        backoff_ms: None,
        codec: "bincode".into(),
        last_stderr: Vec::new(),
        cpu_ms: 0,
        calls: 0,
        bus_in: 0,
        bus_out: 0,
        protocol: Protocol::Corral,
        port: None,
        status_text: None,
        sandbox: "none".into(),
        uid: None,
    }
}
