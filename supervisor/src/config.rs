//! The fleet config (`corral.toml`) and plugin manifests (`plugin.toml`):
//! loading with figment, layering, validation, and the resolved [`Fleet`].
//!
//! A plugin's settings come from four layers, later ones winning key by key:
//! built-in defaults, the fleet's `[defaults]`, the plugin's manifest (when the
//! entry has `path`), and the fleet's `[plugins.NAME]` entry. `CORRAL_`
//! environment variables override the fleet file (`CORRAL_PLUGINS__ECHO__CMD`,
//! `CORRAL_SUPERVISOR__RUNTIME_DIR`, …). Unknown keys are errors, and every
//! error names the file, the key and the problem.
//!
//! This module only reads and checks; it starts nothing.

mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_proto::Codec;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

pub use schema::{SchemaEntry, SchemaType};

use crate::bus::{BusRules, Overflow};
use crate::os::cgroup::LimitsMode;
use crate::rate::RateLimit;
use crate::restart::{Backoff, RestartLimit, RestartPolicy, Strategy};
use crate::units::{HumanDuration, Size};

/// The longest socket path the OS accepts (sun_path, less the terminator).
const MAX_SOCKET_PATH: usize = 107;

/// One thing wrong with a config: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or environment variable) the bad value came from.
    pub file: String,
    /// The dotted key, such as `plugins.echo.cmd`.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: key `{}`: {}", self.file, self.key, self.message)
        }
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// What is wrong, one entry per problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(file: impl fmt::Display, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                file: file.to_string(),
                key: key.into(),
                message: message.into(),
            }],
        }
    }

    fn from_figment(err: figment::Error, fallback_file: &Path, prefix: &str) -> Self {
        let problems = err
            .into_iter()
            .map(|e| {
                let file = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                    Some(figment::Source::File(p)) => p.display().to_string(),
                    Some(other) => other.to_string(),
                    None => match &e.metadata {
                        Some(m) if m.name.contains("environment") => {
                            format!(
                                "environment variable {}{}",
                                "CORRAL_",
                                e.path.join("__").to_uppercase()
                            )
                        }
                        _ => fallback_file.display().to_string(),
                    },
                };
                let mut key: Vec<&str> = Vec::new();
                if !prefix.is_empty() {
                    key.push(prefix);
                }
                key.extend(e.path.iter().map(String::as_str));
                let mut message = e.kind.to_string();
                if let figment::error::Kind::UnknownField(_, _) = e.kind {
                    message.push_str(" (a typo? unknown keys are refused)");
                }
                Problem {
                    file,
                    key: key.join("."),
                    message,
                }
            })
            .collect();
        Self { problems }
    }
}

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
            fn over(self, base: PluginLayer) -> PluginLayer {
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
            fn layer(&self) -> PluginLayer {
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
            fn layer(&self) -> PluginLayer {
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
    /// Whether its event queue outlives its process.
    durable: bool,
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
    fn anchored_at(mut self, base: &Path) -> Self {
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
struct SupervisorLayer {
    runtime_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    strategy: Option<Strategy>,
}

/// The fleet file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    supervisor: SupervisorLayer,
    #[serde(default)]
    defaults: PluginLayer,
    #[serde(default)]
    plugins: BTreeMap<String, FleetEntry>,
}

/// Settings of the supervisor process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorSettings {
    /// Where sockets live (created 0700).
    pub runtime_dir: PathBuf,
    /// Where per-plugin log files live.
    pub log_dir: PathBuf,
    /// What else restarts with a restarted plugin.
    pub strategy: Strategy,
}

impl SupervisorSettings {
    /// Path of the control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.runtime_dir.join("control.sock")
    }

    /// Path of a plugin's socket.
    pub fn plugin_socket(&self, name: &str) -> PathBuf {
        self.runtime_dir.join(format!("plugin-{name}.sock"))
    }
}

/// Heartbeat settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often to ping.
    pub interval: Duration,
    /// How long an answer may take.
    pub timeout: Duration,
    /// Misses in a row that make the plugin unhealthy.
    pub misses: u32,
}

/// Everything needed to run one plugin, resolved from all layers.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// Its name in the fleet.
    pub name: String,
    /// Program (resolved when it is a path) then arguments.
    pub cmd: Vec<String>,
    /// Extra environment for the process.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Whether `corral up` starts it.
    pub enabled: bool,
    /// Codec on its socket.
    pub codec: Codec,
    /// The config handed to `on_load` (schema defaults filled in).
    pub config: serde_json::Value,
    /// Time allowed from spawn to completed handshake.
    pub handshake_timeout: Duration,
    /// Heartbeats.
    pub heartbeat: Heartbeat,
    /// Time allowed for a graceful stop before SIGTERM.
    pub stop_timeout: Duration,
    /// Time allowed after SIGTERM before SIGKILL.
    pub kill_timeout: Duration,
    /// Deadline of a call into the plugin.
    pub call_timeout: Duration,
    /// Memory cap in bytes, over the whole process tree.
    pub memory_max: Option<u64>,
    /// Soft memory mark in bytes.
    pub memory_high: Option<u64>,
    /// How often the process tree's RSS is sampled.
    pub memory_check_interval: Duration,
    /// Most processes its cgroup may hold.
    pub pids_max: Option<u32>,
    /// Open-file limit of its process.
    pub nofile: Option<u64>,
    /// Most calls into it per period.
    pub rate_limit: Option<RateLimit>,
    /// Whether a cgroup may be used.
    pub limits: LimitsMode,
    /// Its place on the event bus.
    pub bus: BusRules,
    /// When it is restarted.
    pub restart: RestartPolicy,
    /// Exit codes that are not failures.
    pub success_codes: Vec<i32>,
    /// Delays between restarts in a row.
    pub backoff: Backoff,
    /// Restarts allowed before it is `failed`.
    pub restart_limit: RestartLimit,
    /// Plugins that must be running before it starts.
    pub requires: Vec<String>,
    /// Size at which its log file is rotated.
    pub log_max_size: u64,
    /// Rotated log files kept beside the current one.
    pub log_keep: u32,
    /// The manifest, when the plugin has one.
    pub manifest: Option<PathBuf>,
}

/// A whole fleet, resolved and checked.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The fleet file it came from.
    pub file: PathBuf,
    /// Supervisor settings.
    pub supervisor: SupervisorSettings,
    /// Plugins in start order: every plugin after those it requires, ties by name.
    pub plugins: Vec<PluginSpec>,
}

impl Fleet {
    /// Plugins that require `name`, directly or through others, in start order.
    pub fn dependents_of(&self, name: &str) -> Vec<String> {
        let mut found: Vec<String> = vec![name.to_string()];
        for p in &self.plugins {
            if p.requires.iter().any(|r| found.contains(r)) && !found.contains(&p.name) {
                found.push(p.name.clone());
            }
        }
        found.remove(0);
        found
    }
}

/// Reads only the supervisor settings of a fleet file (for client commands,
/// which need the control socket's path and nothing else).
pub fn load_supervisor_settings(file: &Path) -> Result<SupervisorSettings, ConfigError> {
    let (raw, dir) = read_fleet_file(file)?;
    supervisor_settings(raw.supervisor, &dir, file)
}

/// Loads, layers and checks a fleet file and the manifests it points at.
pub fn load(file: &Path) -> Result<Fleet, ConfigError> {
    let (raw, dir) = read_fleet_file(file)?;
    let supervisor = supervisor_settings(raw.supervisor, &dir, file)?;
    let defaults = raw.defaults.anchored_at(&dir);
    let file_name = file.display().to_string();

    let mut problems = Vec::new();
    let mut plugins = Vec::new();
    for (name, entry) in raw.plugins {
        match resolve_plugin(&name, entry, &defaults, &dir, &file_name, &supervisor) {
            Ok(spec) => plugins.push(spec),
            Err(e) => problems.extend(e.problems),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let plugins = start_order(plugins, &file_name)?;
    Ok(Fleet {
        file: file.to_path_buf(),
        supervisor,
        plugins,
    })
}

fn read_fleet_file(file: &Path) -> Result<(FleetFile, PathBuf), ConfigError> {
    if !file.is_file() {
        return Err(ConfigError::one(
            file.display(),
            "",
            "no such file; pass the fleet config with `-c FILE` (default `corral.toml`)",
        ));
    }
    let dir = base_dir(file);
    let raw: FleetFile = Figment::from(Toml::file_exact(file))
        // Only keys of the fleet file: other CORRAL_ variables (CORRAL_SOCKET,
        // CORRAL_LOG) belong to the CLI.
        .merge(Env::prefixed("CORRAL_").split("__").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            ["supervisor.", "defaults.", "plugins."]
                .iter()
                .any(|p| key.starts_with(p))
        }))
        .extract()
        .map_err(|e| ConfigError::from_figment(e, file, ""))?;
    Ok((raw, dir))
}

fn base_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn supervisor_settings(
    raw: SupervisorLayer,
    dir: &Path,
    file: &Path,
) -> Result<SupervisorSettings, ConfigError> {
    let runtime_dir = dir.join(raw.runtime_dir.unwrap_or_else(|| ".corral".into()));
    let log_dir = raw
        .log_dir
        .map(|d| dir.join(d))
        .unwrap_or_else(|| runtime_dir.join("logs"));
    let settings = SupervisorSettings {
        runtime_dir,
        log_dir,
        strategy: raw.strategy.unwrap_or_default(),
    };
    // The longest socket name is checked per plugin; the control socket here.
    let control = settings.control_socket();
    if control.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(ConfigError::one(
            file.display(),
            "supervisor.runtime_dir",
            format!(
                "`{}` is too long for a socket path (the OS allows {MAX_SOCKET_PATH} bytes); choose a shorter runtime_dir",
                control.display()
            ),
        ));
    }
    Ok(settings)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn resolve_plugin(
    name: &str,
    entry: FleetEntry,
    defaults: &PluginLayer,
    dir: &Path,
    file: &str,
    supervisor: &SupervisorSettings,
) -> Result<PluginSpec, ConfigError> {
    let key = |k: &str| format!("plugins.{name}.{k}");
    if !valid_name(name) {
        return Err(ConfigError::one(
            file,
            format!("plugins.{name}"),
            "a plugin name is 1 to 64 characters of a-z, 0-9, '-' and '_'",
        ));
    }
    let socket = supervisor.plugin_socket(name);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(ConfigError::one(
            file,
            format!("plugins.{name}"),
            format!(
                "socket path `{}` is too long (the OS allows {MAX_SOCKET_PATH} bytes); shorten the name or supervisor.runtime_dir",
                socket.display()
            ),
        ));
    }

    let mut layer = entry.layer().anchored_at(dir);
    let mut schema = BTreeMap::new();
    let mut manifest_path = None;
    let mut home = dir.to_path_buf();
    if let Some(path) = &entry.path {
        let folder = dir.join(path);
        let manifest_file = folder.join("plugin.toml");
        if !manifest_file.is_file() {
            return Err(ConfigError::one(
                file,
                key("path"),
                format!("`{}` has no plugin.toml", folder.display()),
            ));
        }
        let manifest: Manifest = Figment::from(Toml::file_exact(&manifest_file))
            .extract()
            .map_err(|e| ConfigError::from_figment(e, &manifest_file, ""))?;
        let folder = std::path::absolute(&folder).unwrap_or(folder);
        layer = layer.over(manifest.layer().anchored_at(&folder));
        schema = manifest.config_schema;
        manifest_path = Some(manifest_file);
        home = folder;
    }
    let layer = layer.over(defaults.clone());

    let cmd = match layer.cmd {
        Some(cmd) if !cmd.is_empty() && !cmd[0].is_empty() => cmd,
        Some(_) => {
            return Err(ConfigError::one(
                file,
                key("cmd"),
                "`cmd` is empty; it needs at least the program",
            ));
        }
        None => {
            return Err(ConfigError::one(
                file,
                key("cmd"),
                "no command: set `cmd = [\"program\", \"arg\", …]` here, or `path` to a folder whose plugin.toml has one",
            ));
        }
    };
    let config_source = manifest_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| file.to_string());
    let config = schema::apply(&schema, layer.config.unwrap_or(serde_json::Value::Null)).map_err(
        |(k, message)| {
            ConfigError::one(
                if k.is_empty() {
                    file.to_string()
                } else {
                    format!("{file} (schema in {config_source})")
                },
                format!(
                    "plugins.{name}.config{}{k}",
                    if k.is_empty() { "" } else { "." }
                ),
                message,
            )
        },
    )?;
    let hb = layer.heartbeat.unwrap_or_default();
    let heartbeat = Heartbeat {
        interval: hb.interval.map_or(Duration::from_secs(1), |d| d.0),
        timeout: hb.timeout.map_or(Duration::from_secs(1), |d| d.0),
        misses: hb.misses.unwrap_or(3),
    };
    if heartbeat.misses == 0 || heartbeat.interval.is_zero() || heartbeat.timeout.is_zero() {
        return Err(ConfigError::one(
            file,
            key("heartbeat"),
            "interval and timeout must be more than zero and misses at least 1",
        ));
    }
    let b = layer.backoff.unwrap_or_default();
    let default_backoff = Backoff::default();
    let backoff = Backoff {
        initial: b.initial.map_or(default_backoff.initial, |d| d.0),
        max: b.max.map_or(default_backoff.max, |d| d.0),
        reset_after: b.reset_after.map_or(default_backoff.reset_after, |d| d.0),
    };
    let l = layer.restart_limit.unwrap_or_default();
    let restart_limit = RestartLimit {
        count: l.count.unwrap_or(RestartLimit::default().count),
        within: l.within.map_or(RestartLimit::default().within, |d| d.0),
    };
    let requires = layer.requires.unwrap_or_default();
    if requires.iter().any(|r| r == name) {
        return Err(ConfigError::one(
            file,
            key("requires"),
            "a plugin cannot require itself",
        ));
    }
    let dur =
        |d: Option<HumanDuration>, default: u64| d.map_or(Duration::from_millis(default), |d| d.0);
    let rate_limit = match layer.rate_limit {
        None => None,
        Some(RateLimitLayer {
            calls: Some(calls),
            per,
        }) if calls > 0 && per.is_none_or(|p| !p.0.is_zero()) => Some(RateLimit {
            calls,
            per: per.map_or(Duration::from_secs(1), |p| p.0),
        }),
        Some(_) => {
            return Err(ConfigError::one(
                file,
                key("rate_limit"),
                "write `rate_limit = { calls = N, per = \"1s\" }` with N at least 1 and a period above zero",
            ));
        }
    };
    let memory_check_interval = dur(layer.memory_check_interval, 250);
    if memory_check_interval < Duration::from_millis(10) {
        return Err(ConfigError::one(
            file,
            key("memory_check_interval"),
            "sample at most every 10ms",
        ));
    }
    for (k, patterns) in [("subscribe", &layer.subscribe), ("publish", &layer.publish)] {
        for p in patterns.iter().flatten() {
            corral_proto::event::check_pattern(p).map_err(|e| ConfigError::one(file, key(k), e))?;
        }
    }
    if layer.queue == Some(0) {
        return Err(ConfigError::one(file, key("queue"), "must be at least 1"));
    }
    let bus = BusRules {
        subscribe: layer.subscribe.unwrap_or_default(),
        publish: layer.publish.unwrap_or_else(|| vec![format!("{name}.>")]),
        queue: layer.queue.map_or(65_536, |q| q as usize),
        overflow: layer.overflow.unwrap_or_default(),
        durable: layer.durable.unwrap_or(false),
    };
    if layer.pids_max == Some(0) || layer.nofile == Some(0) {
        let k = if layer.pids_max == Some(0) {
            "pids_max"
        } else {
            "nofile"
        };
        return Err(ConfigError::one(file, key(k), "must be at least 1"));
    }
    Ok(PluginSpec {
        name: name.to_string(),
        cmd,
        env: layer.env.unwrap_or_default(),
        cwd: layer.cwd.unwrap_or(home),
        enabled: layer.enabled.unwrap_or(true),
        codec: layer.codec.unwrap_or_default(),
        config,
        handshake_timeout: dur(layer.handshake_timeout, 5_000),
        heartbeat,
        stop_timeout: dur(layer.stop_timeout, 5_000),
        kill_timeout: dur(layer.kill_timeout, 2_000),
        call_timeout: dur(layer.call_timeout, 30_000),
        memory_max: layer.memory_max.map(|s| s.0),
        memory_high: layer.memory_high.map(|s| s.0),
        memory_check_interval,
        pids_max: layer.pids_max,
        nofile: layer.nofile,
        rate_limit,
        limits: layer.limits.unwrap_or_default(),
        bus,
        restart: layer.restart.unwrap_or_default(),
        success_codes: layer.success_codes.unwrap_or_else(|| vec![0]),
        backoff,
        restart_limit,
        requires,
        log_max_size: layer.log_max_size.map_or(10 * 1024 * 1024, |s| s.0),
        log_keep: layer.log_keep.unwrap_or(5),
        manifest: manifest_path,
    })
}

/// Orders plugins so each comes after those it requires (ties by name), or
/// names the unknown plugin or the cycle that makes it impossible.
fn start_order(mut plugins: Vec<PluginSpec>, file: &str) -> Result<Vec<PluginSpec>, ConfigError> {
    let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
    let mut problems = Vec::new();
    for p in &plugins {
        for r in &p.requires {
            if !names.contains(r) {
                problems.push(Problem {
                    file: file.to_string(),
                    key: format!("plugins.{}.requires", p.name),
                    message: format!(
                        "requires `{r}`, which is not a plugin of this fleet (plugins: {})",
                        names.join(", ")
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ordered: Vec<PluginSpec> = Vec::with_capacity(plugins.len());
    while !plugins.is_empty() {
        let ready = plugins.iter().position(|p| {
            p.requires
                .iter()
                .all(|r| ordered.iter().any(|o| &o.name == r))
        });
        match ready {
            Some(i) => ordered.push(plugins.remove(i)),
            None => {
                let cycle = find_cycle(&plugins);
                return Err(ConfigError::one(
                    file,
                    format!("plugins.{}.requires", cycle[0]),
                    format!("dependency cycle: {}", cycle.join(" -> ")),
                ));
            }
        }
    }
    Ok(ordered)
}

/// Follows `requires` among plugins that all wait on each other until a name
/// repeats; returns the cycle with its first name repeated at the end.
fn find_cycle(stuck: &[PluginSpec]) -> Vec<String> {
    let mut path: Vec<String> = vec![stuck[0].name.clone()];
    loop {
        let current = path
            .last()
            .and_then(|n| stuck.iter().find(|p| &p.name == n));
        let next = current.and_then(|p| {
            p.requires
                .iter()
                .find(|r| stuck.iter().any(|s| &s.name == *r))
        });
        match next {
            Some(n) if path.contains(n) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path.split_off(start);
                cycle.push(n.clone());
                return cycle;
            }
            Some(n) => path.push(n.clone()),
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests;
