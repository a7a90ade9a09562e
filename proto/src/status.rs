//! What `corral ps` and lifecycle events report about a plugin: its state,
//! why it last left the running states, and the figures around it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every state a plugin can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Not started yet: waiting for a plugin it requires to be running.
    Waiting,
    /// Process spawned, waiting for its handshake.
    Starting,
    /// Handshake done, answering heartbeats.
    Running,
    /// Missed heartbeats; about to be killed.
    Unhealthy,
    /// Being stopped on request.
    Stopping,
    /// Stopped on request; stays down until started.
    Stopped,
    /// The process ended and its restart policy leaves it down.
    Exited,
    /// Waiting out the restart delay.
    Backoff,
    /// Given up on: it could not be spawned or hit its restart limit.
    Failed,
}

impl PluginState {
    /// The snake_case name used in `ps`, events and the JSON codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Unhealthy => "unhealthy",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Exited => "exited",
            Self::Backoff => "backoff",
            Self::Failed => "failed",
        }
    }

    /// True while a process exists for the plugin.
    pub fn has_process(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Running | Self::Unhealthy | Self::Stopping
        )
    }
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a plugin's process left (or never reached) the running states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ExitReason {
    /// The process exited by itself with this code.
    Exit {
        /// The exit status.
        code: i32,
    },
    /// The process was ended by a signal nobody in corral sent on purpose.
    Signal {
        /// The signal's name, such as `SIGSEGV`.
        signal: String,
    },
    /// It stopped answering heartbeats and was killed.
    Hang,
    /// It went over its memory cap and was killed.
    MemoryCap,
    /// It did not complete its handshake in time, or the handshake was refused.
    Handshake {
        /// What went wrong.
        detail: String,
    },
    /// Its command could not be started.
    Spawn {
        /// The operating system's error.
        error: String,
    },
    /// It broke the wire protocol (malformed or oversized frame) and was killed.
    Protocol {
        /// What it sent.
        detail: String,
    },
    /// It was stopped on request (`corral stop`, `corral down`, a signal to the supervisor).
    Requested,
    /// Its health probe failed `misses` times in a row and it was killed.
    Health {
        /// Which probe and its last failure, such as `http 503` or
        /// `tcp: connection refused`.
        detail: String,
    },
}

impl ExitReason {
    /// The reason's snake_case name, as in `{"reason": …}`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Exit { .. } => "exit",
            Self::Signal { .. } => "signal",
            Self::Hang => "hang",
            Self::MemoryCap => "memory_cap",
            Self::Handshake { .. } => "handshake",
            Self::Spawn { .. } => "spawn",
            Self::Protocol { .. } => "protocol",
            Self::Requested => "requested",
            Self::Health { .. } => "health",
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exit { code } => write!(f, "exit({code})"),
            Self::Signal { signal } => write!(f, "signal({signal})"),
            Self::Handshake { detail } => write!(f, "handshake: {detail}"),
            Self::Spawn { error } => write!(f, "spawn: {error}"),
            Self::Protocol { detail } => write!(f, "protocol: {detail}"),
            Self::Health { detail } => write!(f, "health: {detail}"),
            other => f.write_str(other.name()),
        }
    }
}

/// How a plugin's resource limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// A cgroup v2 of its own (`memory.max`, `memory.high`, `pids.max`) plus sampling.
    Cgroup2,
    /// cgroup v1 controllers of its own (`memory.limit_in_bytes`, `pids.max`) plus sampling.
    Cgroup1,
    /// Its process tree's RSS, sampled every `memory_check_interval`, only.
    #[default]
    Sampling,
}

impl Enforcement {
    /// The name `corral ps` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cgroup2 => "cgroup2",
            Self::Cgroup1 => "cgroup1",
            Self::Sampling => "sampling",
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `corral ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// The plugin's name in the fleet config.
    pub name: String,
    /// Its current state.
    pub state: PluginState,
    /// The process id while a process exists.
    pub pid: Option<u32>,
    /// How many times it has been restarted since the supervisor started.
    pub restarts: u32,
    /// Milliseconds since it last became `running`; 0 when it is not running.
    pub uptime_ms: u64,
    /// Resident memory of its process tree, in bytes; 0 when it has none.
    pub rss_bytes: u64,
    /// Its memory cap, if one is configured.
    pub memory_max_bytes: Option<u64>,
    /// Its soft memory mark, if one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high_bytes: Option<u64>,
    /// How its limits are enforced.
    pub limits: Enforcement,
    /// Why its last process ended, if one has.
    pub last_exit: Option<ExitReason>,
    /// The last lines (at most three, oldest first) its last process wrote
    /// to stderr before it ended: a crash loop's likely cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_stderr: Vec<String>,
    /// The plugin it waits for, while `waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Milliseconds until the next start, while in `backoff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// The codec its connection uses (`bincode` or `json`).
    pub codec: String,
    /// CPU time (user and system) used by its current process tree, in
    /// milliseconds: its live processes and the children they reaped. It
    /// starts again from 0 with each spawn; 0 when it has no process.
    #[serde(default)]
    pub cpu_ms: u64,
    /// Calls handed to it since the supervisor started, over every spawn.
    #[serde(default)]
    pub calls: u64,
    /// Events the bus delivered to it since the supervisor started.
    #[serde(default)]
    pub bus_in: u64,
    /// Events it published that the bus accepted since the supervisor started.
    #[serde(default)]
    pub bus_out: u64,
    /// How it talks to the supervisor (left out for `corral`, the default).
    #[serde(default, skip_serializing_if = "Protocol::is_corral")]
    pub protocol: Protocol,
    /// The TCP port its current process was given (`port`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The last `STATUS=` its current process sent on its notify socket
    /// (`notify = true`), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// How its current process is sandboxed, such as `landlock v7 (files,
    /// signals), netns`; `none` without a sandbox.
    #[serde(default = "no_sandbox")]
    pub sandbox: String,
    /// The uid its current process runs as, when its `user` is not the
    /// supervisor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

fn no_sandbox() -> String {
    "none".into()
}

/// How a plugin talks to the supervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// corral's protocol: handshake, heartbeats, calls, the bus.
    #[default]
    Corral,
    /// None: any program. corral spawns, watches, limits, logs, stops and
    /// restarts it; calls, heartbeats and the bus do not apply.
    None,
}

impl Protocol {
    /// Whether it is [`Protocol::Corral`].
    pub fn is_corral(&self) -> bool {
        *self == Self::Corral
    }

    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Corral => "corral",
            Self::None => "none",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of a plugin's state, as kept in its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The state it left.
    pub from: PluginState,
    /// The state it entered.
    pub to: PluginState,
    /// Why its process ended, on transitions out of a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ExitReason>,
    /// Its process id, where one is involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// More context in words (a backoff delay, a restart limit, who asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Transition {
    /// Now, on the clock `at_unix_ms` is read on (milliseconds since the
    /// Unix epoch).
    pub fn now_unix_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What `corral inspect` shows: status, the settings in force, and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The status row.
    pub status: PluginStatus,
    /// Every setting in force, as a JSON object.
    pub settings: crate::Payload,
    /// The last transitions, oldest first.
    pub history: Vec<Transition>,
    /// Its standing on the event bus.
    #[serde(default)]
    pub bus: crate::BusStats,
    /// The actions its manifest declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<crate::ActionInfo>,
    /// Its calls to other plugins.
    #[serde(default, skip_serializing_if = "crate::CallStats::is_none")]
    pub calls: crate::CallStats,
    /// Where each of its config values came from: the environment, the
    /// overrides file, its fleet entry, `[defaults]`, its manifest, or its
    /// schema's default.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub config_sources: std::collections::BTreeMap<String, String>,
}

/// What a reload changed, plugin by plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// New plugins, started.
    pub added: Vec<String>,
    /// Plugins no longer in the config, stopped and dropped.
    pub removed: Vec<String>,
    /// Plugins whose process settings (cmd, env, cwd, codec) changed, restarted.
    pub restarted: Vec<String>,
    /// Plugins whose `config` alone changed, handed it without a restart.
    pub reconfigured: Vec<String>,
    /// Plugins whose other settings changed, applied in place.
    pub updated: Vec<String>,
    /// Plugins left exactly as they were.
    pub unchanged: Vec<String>,
    /// Settings that only take effect when `corral up` starts again.
    pub needs_restart: Vec<String>,
    /// Plugins whose reload hook failed (or did not answer): each was
    /// restarted instead, so the new config applies through its load hook,
    /// and is listed under `restarted` too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_hooks: Vec<HookFailure>,
}

/// A plugin whose reload hook failed during `corral reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookFailure {
    /// The plugin.
    pub plugin: String,
    /// What the hook answered, or why it did not.
    pub error: String,
}
