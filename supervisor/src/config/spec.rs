//! The resolved config, what the rest of corral runs on: [`PluginSpec`] (one
//! plugin's settings in force), [`Heartbeat`], [`SupervisorSettings`] and the
//! whole [`Fleet`]; and the settings view `corral inspect` shows
//! ([`PluginSpec::settings`]), derived from the spec through serde so a new
//! field shows up there without anyone remembering to add it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_proto::{Codec, Protocol};
use serde::Serialize;

use super::health::Health;
use super::sandbox::SandboxSpec;
use super::schema::PluginConfig;
use crate::bus::{BusRules, Overflow};
use crate::deps::Graph;
use crate::os::cgroup::LimitsMode;
use crate::rate::RateLimit;
use crate::restart::{Backoff, RestartLimit, RestartPolicy, Strategy};
use crate::units::{PortSetting, ReadyOn, StopSignal, serialize_duration};

/// Settings of the supervisor process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorSettings {
    /// Where sockets live (created 0700).
    pub runtime_dir: PathBuf,
    /// Where per-plugin log files live.
    pub log_dir: PathBuf,
    /// What else restarts with a restarted plugin.
    pub strategy: Strategy,
    /// Most control connections open at once (at least 1).
    pub control_connections: usize,
    /// A control connection with no request for this long is closed.
    pub control_idle_timeout: Duration,
    /// The HTTP face, when `[http]` is set.
    pub http: Option<super::HttpSettings>,
}

impl SupervisorSettings {
    /// Path of the control socket.
    pub fn control_socket(&self) -> PathBuf {
        Self::control_socket_in(&self.runtime_dir)
    }

    /// Path of the control socket in `runtime_dir`.
    pub fn control_socket_in(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join("control.sock")
    }

    /// The file holding the HTTP face's token (0600), while it serves.
    pub fn http_token_file(&self) -> PathBuf {
        self.runtime_dir.join("http.token")
    }

    /// The folder where `corral dashboard` leaves one-time login codes for
    /// the HTTP face (a file per code, named by it).
    pub fn http_login_dir(&self) -> PathBuf {
        self.runtime_dir.join("http.logins")
    }

    /// The file holding the HTTP face's URL, while it serves.
    pub fn http_url_file(&self) -> PathBuf {
        self.runtime_dir.join("http.url")
    }

    /// Path of a plugin's socket.
    pub fn plugin_socket(&self, name: &str) -> PathBuf {
        self.runtime_dir.join(format!("plugin-{name}.sock"))
    }
}

/// `cpu_max` as written: `"50%"`.
fn serialize_percent<S: serde::Serializer>(p: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.collect_str(&format_args!("{p}%")),
        None => s.serialize_none(),
    }
}

/// Heartbeat settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// How often to ping.
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// How long an answer may take.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Misses in a row that make the plugin unhealthy.
    pub misses: u32,
}

/// Everything needed to run one plugin, resolved from all layers.
///
/// It serializes as the settings `corral inspect` shows (see
/// [`settings`](Self::settings)): durations as text to the millisecond,
/// sizes in bytes, unset limits as `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginSpec {
    /// Its name in the fleet (`inspect` shows it beside the settings).
    #[serde(skip)]
    pub name: String,
    /// Program (resolved when it is a path) then arguments.
    pub cmd: Vec<String>,
    /// Extra environment for the process (its `env_file`s' variables
    /// included, under its `env` table).
    pub env: BTreeMap<String, String>,
    /// The environment files it read (a leading `-`: optional).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Its TCP port, if it has one.
    pub port: Option<PortSetting>,
    /// How many processes of it run (`instances`), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Which of them this is (`NAME.i`), once the fleet is expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// Whether `corral up` starts it.
    pub enabled: bool,
    /// How it talks to corral.
    pub protocol: Protocol,
    /// Codec on its socket.
    pub codec: Codec,
    /// The config handed to `on_load` (schema defaults filled in); shown
    /// with its secret values masked.
    pub config: PluginConfig,
    /// Time allowed from spawn to completed handshake.
    #[serde(serialize_with = "serialize_duration")]
    pub handshake_timeout: Duration,
    /// Heartbeats.
    pub heartbeat: Heartbeat,
    /// Its health probe, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Its routes behind the HTTP face's gateway, if it has any (shown as
    /// the `http` key it is written as).
    #[serde(rename = "http", skip_serializing_if = "Option::is_none")]
    pub routes: Option<super::routes::Routes>,
    /// When it counts as running.
    pub ready: ReadyOn,
    /// Whether it gets a `NOTIFY_SOCKET` and counts as ready on `READY=1`.
    pub notify: bool,
    /// How often it must send `WATCHDOG=1`, if it has a watchdog.
    #[serde(
        serialize_with = "crate::units::serialize_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub watchdog: Option<Duration>,
    /// Its kernel-enforced sandbox, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSpec>,
    /// The user (and group) it runs as; the supervisor's when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<super::Identity>,
    /// Time allowed for a graceful stop before SIGTERM.
    #[serde(serialize_with = "serialize_duration")]
    pub stop_timeout: Duration,
    /// Time allowed after SIGTERM before SIGKILL.
    #[serde(serialize_with = "serialize_duration")]
    pub kill_timeout: Duration,
    /// The signal a stop sends first (before SIGKILL).
    pub stop_signal: StopSignal,
    /// Deadline of a call into the plugin.
    #[serde(serialize_with = "serialize_duration")]
    pub call_timeout: Duration,
    /// Memory cap in bytes, over the whole process tree.
    pub memory_max: Option<u64>,
    /// Soft memory mark in bytes.
    pub memory_high: Option<u64>,
    /// How often the process tree's RSS is sampled.
    #[serde(serialize_with = "serialize_duration")]
    pub memory_check_interval: Duration,
    /// Most processes its cgroup may hold.
    pub pids_max: Option<u32>,
    /// Most CPU time, in percent of one core, in its cgroup.
    #[serde(
        serialize_with = "serialize_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_max: Option<u32>,
    /// Its CPU share when the CPU is busy (1 to 10,000; 100 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
    /// Its IO share when a disk is busy (1 to 10,000; 100 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<u32>,
    /// Open-file limit of its process.
    pub nofile: Option<u64>,
    /// Most calls into it per period.
    pub rate_limit: Option<RateLimit>,
    /// Whether a cgroup may be used.
    pub limits: LimitsMode,
    /// Its place on the event bus (`inspect` shows it under the keys that
    /// set it: `subscribe`, `queue`, …).
    #[serde(skip)]
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
    /// Whom it may call, and who may call it.
    #[serde(flatten)]
    pub calls: super::CallsSpec,
    /// The actions its manifest declares (`inspect` shows them apart).
    #[serde(skip)]
    pub actions: Vec<corral_proto::ActionInfo>,
    /// Size at which its log file is rotated.
    pub log_max_size: u64,
    /// Rotated log files kept beside the current one.
    pub log_keep: u32,
    /// The manifest, when the plugin has one.
    pub manifest: Option<PathBuf>,
    /// The manifest's free-form `[metadata]` (author, license, tags, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `${plugin_dir}`: its manifest's folder, or the fleet file's.
    #[serde(skip)]
    pub plugin_dir: PathBuf,
    /// `${fleet_dir}`: the fleet file's folder.
    #[serde(skip)]
    pub fleet_dir: PathBuf,
}

/// What `corral inspect` shows as a plugin's settings: the spec, its bus
/// settings, where its log goes and the cgroups it is in (if any).
#[derive(Serialize)]
struct Settings<'a> {
    #[serde(flatten)]
    spec: &'a PluginSpec,
    #[serde(flatten)]
    bus: BusSettings<'a>,
    log_file: &'a Path,
    cgroups: Option<&'a [PathBuf]>,
}

/// A plugin's bus settings, under the keys that set them.
#[derive(Serialize)]
struct BusSettings<'a> {
    subscribe: &'a [String],
    publish: &'a [String],
    queue: usize,
    queue_bytes: usize,
    overflow: Overflow,
    durable: bool,
    max_subscriptions: usize,
    retained_max: usize,
    retained_bytes: usize,
}

impl<'a> From<&'a BusRules> for BusSettings<'a> {
    fn from(b: &'a BusRules) -> Self {
        Self {
            subscribe: &b.subscribe,
            publish: &b.publish,
            queue: b.queue,
            queue_bytes: b.queue_bytes,
            overflow: b.overflow,
            durable: b.durable,
            max_subscriptions: b.max_subscriptions,
            retained_max: b.retained.max,
            retained_bytes: b.retained.bytes,
        }
    }
}

impl PluginSpec {
    /// The settings in force, for `corral inspect`: every serialized field
    /// of the spec (secret config values masked), its bus settings, plus
    /// `log_file` and `cgroups`. `null` if a path in them is not UTF-8 and
    /// so cannot be written as JSON.
    pub fn settings(&self, log_file: &Path, cgroups: Option<&[PathBuf]>) -> serde_json::Value {
        serde_json::to_value(Settings {
            spec: self,
            bus: (&self.bus).into(),
            log_file,
            cgroups,
        })
        .unwrap_or(serde_json::Value::Null)
    }
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
    /// The `requires` graph of its plugins, in start order.
    pub fn graph(&self) -> Graph<'_> {
        Graph::new(
            self.plugins
                .iter()
                .map(|p| (p.name.as_str(), p.requires.as_slice())),
        )
    }

    /// Plugins that require `name`, directly or through others, in start order.
    pub fn dependents_of(&self, name: &str) -> Vec<String> {
        self.graph()
            .dependents(name)
            .into_iter()
            .map(String::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::RetainBound;

    fn sample() -> PluginSpec {
        let ms = Duration::from_millis;
        PluginSpec {
            name: "echo".into(),
            cmd: vec!["/srv/echo/run".into(), "--fast".into()],
            env: BTreeMap::from([("LEVEL".into(), "2".into())]),
            env_file: Vec::new(),
            cwd: "/srv/echo".into(),
            port: None,
            instances: None,
            instance: None,
            enabled: true,
            protocol: Protocol::Corral,
            codec: Codec::Json,
            config: serde_json::json!({"greeting": "hello", "level": 2}).into(),
            handshake_timeout: Duration::from_secs(5),
            heartbeat: Heartbeat {
                interval: ms(1500),
                timeout: Duration::from_micros(250_900),
                misses: 3,
            },
            health: None,
            routes: None,
            ready: ReadyOn::Started,
            notify: false,
            watchdog: None,
            sandbox: None,
            identity: None,
            stop_timeout: Duration::from_secs(90),
            kill_timeout: Duration::from_secs(2),
            stop_signal: StopSignal::default(),
            call_timeout: Duration::from_secs(3600),
            memory_max: Some(64 * 1024 * 1024),
            memory_high: None,
            memory_check_interval: ms(250),
            pids_max: Some(32),
            cpu_max: None,
            cpu_weight: None,
            io_weight: None,
            nofile: None,
            rate_limit: Some(RateLimit {
                calls: 100,
                per: Duration::from_secs(1),
            }),
            limits: LimitsMode::Sampling,
            bus: BusRules {
                subscribe: vec!["orders.>".into()],
                publish: vec!["echo.>".into()],
                queue: 16,
                overflow: Overflow::Block,
                durable: true,
                queue_bytes: 1024 * 1024,
                retained: RetainBound {
                    max: 10,
                    bytes: 65_536,
                },
                max_subscriptions: 1024,
            },
            restart: RestartPolicy::OnFailure,
            success_codes: vec![0, 3],
            backoff: Backoff {
                initial: ms(100),
                max: Duration::from_secs(30),
                reset_after: Duration::from_secs(10),
            },
            restart_limit: RestartLimit {
                count: 5,
                within: Duration::from_secs(60),
            },
            requires: vec!["db".into()],
            calls: crate::config::CallsSpec::default(),
            actions: Vec::new(),
            log_max_size: 10 * 1024 * 1024,
            log_keep: 5,
            manifest: Some("/srv/echo/plugin.toml".into()),
            metadata: None,
            plugin_dir: "/srv/echo".into(),
            fleet_dir: "/srv".into(),
        }
    }

    #[test]
    fn settings_pin_what_inspect_shows() {
        let cgroups = [PathBuf::from("/sys/fs/cgroup/corral/echo")];
        let got = sample().settings(Path::new("/run/logs/echo.log"), Some(&cgroups));
        let want = serde_json::json!({
            "cmd": ["/srv/echo/run", "--fast"],
            "env": {"LEVEL": "2"},
            "cwd": "/srv/echo",
            "port": null,
            "enabled": true,
            "protocol": "corral",
            "codec": "json",
            "config": {"greeting": "hello", "level": 2},
            "handshake_timeout": "5s",
            "heartbeat": {"interval": "1s 500ms", "timeout": "250ms", "misses": 3},
            "ready": "started",
            "notify": false,
            "stop_timeout": "1m 30s",
            "kill_timeout": "2s",
            "stop_signal": "SIGTERM",
            "call_timeout": "1h",
            "memory_max": 67_108_864,
            "memory_high": null,
            "memory_check_interval": "250ms",
            "pids_max": 32,
            "nofile": null,
            "rate_limit": {"calls": 100, "per": "1s"},
            "limits": "sampling",
            "cgroups": ["/sys/fs/cgroup/corral/echo"],
            "restart": "on-failure",
            "success_codes": [0, 3],
            "backoff": {"initial": "100ms", "max": "30s", "reset_after": "10s"},
            "restart_limit": {"count": 5, "within": "1m"},
            "requires": ["db"],
            "log_max_size": 10_485_760,
            "log_keep": 5,
            "log_file": "/run/logs/echo.log",
            "manifest": "/srv/echo/plugin.toml",
            "subscribe": ["orders.>"],
            "publish": ["echo.>"],
            "queue": 16,
            "queue_bytes": 1_048_576,
            "overflow": "block",
            "durable": true,
            "max_subscriptions": 1024,
            "retained_max": 10,
            "retained_bytes": 65_536,
        });
        assert_eq!(got, want);
    }

    #[test]
    fn unset_parts_of_the_settings_are_null() {
        let spec = PluginSpec {
            rate_limit: None,
            manifest: None,
            metadata: None,
            ..sample()
        };
        let got = spec.settings(Path::new("/run/logs/echo.log"), None);
        assert_eq!(got["rate_limit"], serde_json::Value::Null);
        assert_eq!(got["manifest"], serde_json::Value::Null);
        assert_eq!(got["cgroups"], serde_json::Value::Null);
        assert!(got.get("name").is_none() && got.get("bus").is_none());
    }

    #[test]
    fn secret_config_values_are_masked_wherever_the_spec_is_shown() {
        let secrets = std::collections::BTreeSet::from(["token".to_string()]);
        let config = serde_json::json!({"token": "hunter2", "greeting": "hi"});
        let spec = PluginSpec {
            config: PluginConfig::new(config, secrets),
            ..sample()
        };
        let got = spec.settings(Path::new("/run/logs/echo.log"), None);
        let masked = serde_json::json!({"token": super::super::schema::MASK, "greeting": "hi"});
        assert_eq!(got["config"], masked);
        assert!(!got.to_string().contains("hunter2"));
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert_eq!(spec.config.for_plugin()["token"], "hunter2");
    }
}
