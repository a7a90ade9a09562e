//! The key grammar: what each config layer may say, as serde structs where
//! `None` means "not set here", and the reading of the fleet file (with its
//! `CORRAL_` environment overrides) and of manifests into them.
//!
//! The plugin keys are declared once, in `plugin_keys!`, which derives the
//! plugin part of every layer ([`PluginLayer`] for `[defaults]`,
//! [`FleetEntry`] for `[plugins.NAME]`, [`Manifest`] for `plugin.toml`), so a
//! key cannot be accepted in one place and forgotten in another. Nothing
//! here chooses a default or checks a value beyond its type; that is
//! [`super::resolve`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use corral_proto::Codec;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use super::error::ConfigError;
use super::schema::SchemaEntry;
use crate::bus::Overflow;
use crate::os::cgroup::LimitsMode;
use crate::restart::{RestartPolicy, Strategy};
use crate::units::{HumanDuration, Size};

/// Heartbeat settings as written in a config layer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatLayer {
    /// How often to ping.
    pub interval: Option<HumanDuration>,
    /// How long an answer may take before it counts as a miss.
    pub timeout: Option<HumanDuration>,
    /// Misses in a row that make the plugin unhealthy.
    pub misses: Option<u32>,
}

/// Backoff settings as written in a config layer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffLayer {
    /// Delay before the second restart in a row.
    pub initial: Option<HumanDuration>,
    /// Longest delay.
    pub max: Option<HumanDuration>,
    /// Running this long resets the delays.
    pub reset_after: Option<HumanDuration>,
}

/// Restart limit as written in a config layer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartLimitLayer {
    /// Restarts allowed within the window.
    pub count: Option<u32>,
    /// The window.
    pub within: Option<HumanDuration>,
}

/// A rate limit as written in a config layer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitLayer {
    /// Calls allowed per period.
    pub calls: Option<u32>,
    /// The period (default one second).
    pub per: Option<HumanDuration>,
}

/// Declares the plugin keys once and derives from them the structs of each
/// layer, so a key cannot be accepted in one place and forgotten in another.
macro_rules! plugin_keys {
    ($($(#[doc = $doc:literal])+ $field:ident : $ty:ty,)*) => {
        /// Plugin settings from one layer; `None` means "not set here".
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PluginLayer {
            $($(#[doc = $doc])+ pub $field: Option<$ty>,)*
        }

        impl PluginLayer {
            /// This layer on top of `base`: keys set here win.
            pub(super) fn over(self, base: PluginLayer) -> PluginLayer {
                PluginLayer { $($field: self.$field.or(base.$field),)* }
            }
        }

        /// A `[plugins.NAME]` entry of the fleet config.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FleetEntry {
            /// A folder holding the plugin's `plugin.toml`.
            pub path: Option<PathBuf>,
            $($(#[doc = $doc])+ pub $field: Option<$ty>,)*
        }

        impl FleetEntry {
            /// Its plugin keys, as a layer.
            pub(super) fn layer(&self) -> PluginLayer {
                PluginLayer { $($field: self.$field.clone(),)* }
            }
        }

        /// A plugin's own `plugin.toml`.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Manifest {
            /// The plugin's name.
            pub name: String,
            /// The plugin's version.
            pub version: Option<String>,
            /// One line on what it does.
            pub description: Option<String>,
            /// The keys its `config` table takes.
            #[serde(default)]
            pub config_schema: BTreeMap<String, SchemaEntry>,
            $($(#[doc = $doc])+ pub $field: Option<$ty>,)*
        }

        impl Manifest {
            /// Its plugin keys, as a layer.
            pub(super) fn layer(&self) -> PluginLayer {
                PluginLayer { $($field: self.$field.clone(),)* }
            }
        }
    };
}

plugin_keys! {
    /// The program and its arguments.
    cmd: Vec<String>,
    /// Extra environment variables for the process.
    env: BTreeMap<String, String>,
    /// Working directory of the process.
    cwd: PathBuf,
    /// Whether `corral up` starts it.
    enabled: bool,
    /// The codec on its socket.
    codec: Codec,
    /// The table handed to its `on_load` hook.
    config: serde_json::Value,
    /// How long it has to connect and shake hands.
    handshake_timeout: HumanDuration,
    /// Heartbeat settings.
    heartbeat: HeartbeatLayer,
    /// How long a stop request may take before SIGTERM.
    stop_timeout: HumanDuration,
    /// How long after SIGTERM before SIGKILL.
    kill_timeout: HumanDuration,
    /// Deadline of a call into the plugin.
    call_timeout: HumanDuration,
    /// Memory cap of its process tree.
    memory_max: Size,
    /// Soft memory mark: crossing it is logged and reported, once per crossing.
    memory_high: Size,
    /// How often its process tree's RSS is sampled.
    memory_check_interval: HumanDuration,
    /// Most processes (and threads) its cgroup may hold.
    pids_max: u32,
    /// Open-file limit (soft and hard) of its process.
    nofile: u64,
    /// Most calls into it per period; more are answered `rate_limited`.
    rate_limit: RateLimitLayer,
    /// `auto` (a cgroup where the machine allows, else sampling) or `sampling`.
    limits: LimitsMode,
    /// Bus patterns it subscribes to at start (and may subscribe to).
    subscribe: Vec<String>,
    /// Bus patterns it may publish under (default `<name>.>`).
    publish: Vec<String>,
    /// Size of its event queue.
    queue: u32,
    /// What its full event queue does: `drop-oldest` or `block`.
    overflow: Overflow,
    /// Bytes its event queue holds.
    queue_bytes: Size,
    /// Retained events it may keep; past it, its oldest are evicted.
    retained_max: u32,
    /// Bytes of retained events it may keep; past it, its oldest are evicted.
    retained_bytes: Size,
    /// Whether its event queue outlives its process.
    durable: bool,
    /// Most bus patterns it may hold at once.
    max_subscriptions: u32,
    /// When it is restarted after it ends.
    restart: RestartPolicy,
    /// Exit codes that count as success for `on-failure`.
    success_codes: Vec<i32>,
    /// Delays between restarts in a row.
    backoff: BackoffLayer,
    /// How many restarts in how long before it is `failed`.
    restart_limit: RestartLimitLayer,
    /// Plugins that must be running before it starts.
    requires: Vec<String>,
    /// Size at which its log file is rotated.
    log_max_size: Size,
    /// Rotated log files kept.
    log_keep: u32,
}

impl PluginLayer {
    /// Makes relative `cmd[0]` (when it names a path) and `cwd` relative to `base`.
    pub(super) fn anchored_at(mut self, base: &Path) -> Self {
        if let Some(program) = self.cmd.as_mut().and_then(|c| c.first_mut())
            && program.contains('/')
        {
            *program = base.join(&*program).to_string_lossy().into_owned();
        }
        if let Some(cwd) = self.cwd.as_mut() {
            *cwd = base.join(&*cwd);
        }
        self
    }
}

/// The `[supervisor]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SupervisorLayer {
    pub(super) runtime_dir: Option<PathBuf>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) strategy: Option<Strategy>,
    pub(super) control_connections: Option<usize>,
    pub(super) control_idle_timeout: Option<HumanDuration>,
}

/// The fleet file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetFile {
    #[serde(default)]
    pub(super) supervisor: SupervisorLayer,
    #[serde(default)]
    pub(super) defaults: PluginLayer,
    #[serde(default)]
    pub(super) plugins: BTreeMap<String, FleetEntry>,
}

impl FleetFile {
    /// Reads `file` with the `CORRAL_` environment variables over it.
    pub(super) fn read(file: &Path) -> Result<Self, ConfigError> {
        if !file.is_file() {
            return Err(ConfigError::one(
                file.display(),
                "",
                "no such file; pass the fleet config with `-c FILE` (default `corral.toml`)",
            ));
        }
        layered(file)
            .extract()
            .map_err(|e| ConfigError::from_figment(e, file, ""))
    }

    /// Reads `supervisor.runtime_dir` of `file` alone, whatever the rest of
    /// it holds; `None` when it is not set. `Err` when the file is not TOML
    /// or that key is not a string.
    pub(super) fn runtime_dir_only(file: &Path) -> Result<Option<String>, ConfigError> {
        let figment = layered(file);
        if !figment.contains("supervisor.runtime_dir") {
            // Still refuse a file that is not TOML at all.
            return figment
                .find_value("supervisor")
                .map(|_| None)
                .or_else(|e| match e.missing() {
                    true => Ok(None),
                    false => Err(ConfigError::from_figment(e, file, "")),
                });
        }
        figment
            .extract_inner::<String>("supervisor.runtime_dir")
            .map(Some)
            .map_err(|e| ConfigError::from_figment(e, file, "supervisor.runtime_dir"))
    }
}

/// `file` with the `CORRAL_` environment variables over it.
fn layered(file: &Path) -> Figment {
    Figment::from(Toml::file_exact(file))
        // Only keys of the fleet file: other CORRAL_ variables (CORRAL_SOCKET,
        // CORRAL_LOG) belong to the CLI.
        .merge(Env::prefixed("CORRAL_").split("__").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            ["supervisor.", "defaults.", "plugins."]
                .iter()
                .any(|p| key.starts_with(p))
        }))
}

impl Manifest {
    /// Reads a `plugin.toml`.
    pub(super) fn read(file: &Path) -> Result<Self, ConfigError> {
        Figment::from(Toml::file_exact(file))
            .extract()
            .map_err(|e| ConfigError::from_figment(e, file, ""))
    }
}
