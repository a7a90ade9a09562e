//! The key grammar: what each config layer may say, as serde structs where
//! `None` means "not set here", and the reading of the fleet file (with its
//! `CORRAL_` environment overrides) and of manifests into them.
//!
//! The plugin keys are declared once, in `plugin_keys!`, which derives the
//! plugin part of every layer ([`PluginLayer`] for `[defaults]`,
//! [`FleetEntry`] for `[plugins.NAME]`, [`Manifest`] for `plugin.toml`), so a
//! key cannot be accepted in one place and forgotten in another. Each key
//! is declared with an example of its right form, and every table's
//! grammar (its keys and their shapes, for `check`, which reads a document
//! key by key) is derived from the same list as its struct. Nothing here
//! chooses a default or checks a value beyond its type; that is
//! [`super::resolve`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use corral_proto::{Codec, Protocol};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use super::access::{ActionDecl, PermissionEntry};
use super::check::{self, Grammar, Key, Keys, Read, Shape, Table, values};
use super::env_file::EnvFiles;
use super::error::ConfigError;
use super::schema::SchemaEntry;
use crate::bus::Overflow;
use crate::os::cgroup::LimitsMode;
use crate::restart::{RestartPolicy, Strategy};
use crate::units::{
    ExecutionMode, HumanDuration, NetworkMode, Percent, PortSetting, ReadyOn, SeccompMode,
    SignalsMode, Size, StopSignal, UserSetting,
};

/// Declares a table of keys that may each be left out: the struct (with
/// `None` for "not set here") and its grammar, from one list.
macro_rules! table {
    ($(#[doc = $sdoc:literal])+ $vis:vis struct $name:ident {
        $($(#[doc = $doc:literal])+ $field:ident : $ty:ty = $example:literal,)*
    }) => {
        $(#[doc = $sdoc])+
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        $vis struct $name {
            $($(#[doc = $doc])+ $vis $field: Option<$ty>,)*
        }

        impl Table for $name {
            const KEYS: Keys = &[&[
                $(Key::new(stringify!($field), <$ty as Grammar>::SHAPE, $example),)*
            ]];
        }

        impl Grammar for $name {
            const SHAPE: Shape = Shape::Table(<$name as Table>::KEYS);
        }
    };
}

values!(
    Vec<ActionDecl>,
    Vec<PermissionEntry>,
    ExecutionMode,
    UserSetting,
    String,
    bool,
    u32,
    u64,
    usize,
    PathBuf,
    Vec<String>,
    Vec<i32>,
    BTreeMap<String, String>,
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>,
    Codec,
    HumanDuration,
    Size,
    LimitsMode,
    Overflow,
    RestartPolicy,
    Strategy,
    Protocol,
    StopSignal,
    PortSetting,
    EnvFiles,
    ReadyOn,
    NetworkMode,
    SignalsMode,
    SeccompMode,
    Percent,
);

table! {
    /// A sandbox as written in a config layer.
    pub struct SandboxLayer {
        /// Paths it may read beneath, besides the defaults.
        fs_read: Vec<String> = "[\"/srv/data\"]",
        /// Paths it may read and write beneath, besides its temp dir.
        fs_write: Vec<String> = "[\"${plugin_dir}/state\"]",
        /// `any` (the host's), `none` (a network namespace of its own) or
        /// `loopback` (one with only its own `lo` up).
        network: NetworkMode = "\"none\"",
        /// `own` (only its descendants) or `any`.
        signals: SignalsMode = "\"own\"",
        /// Whether a kernel that cannot enforce it all refuses to start it.
        required: bool = "true",
        /// `default` (corral's deny list of system calls) or `none`.
        seccomp: SeccompMode = "\"none\"",
    }
}

table! {
    /// A health probe as written in a config layer: one of `http`, `tcp` or
    /// `exec`, and its timing.
    pub struct HealthLayer {
        /// GET this URL (plain `http://`); a 2xx answer (or `status`) is up.
        http: String = "\"http://127.0.0.1:${port}/health\"",
        /// Connect to this `host:port`; a connection is up.
        tcp: String = "\"127.0.0.1:${port}\"",
        /// Run this command; exit code 0 is up.
        exec: Vec<String> = "[\"pg_isready\", \"-q\"]",
        /// The HTTP status that is up (instead of any 2xx).
        status: u32 = "204",
        /// Text the HTTP answer's body must contain to be up.
        body: String = "\"ok\"",
        /// How often to probe.
        interval: HumanDuration = "\"5s\"",
        /// How long one probe may take.
        timeout: HumanDuration = "\"2s\"",
        /// Failures in a row that make the plugin unhealthy (it is killed).
        misses: u32 = "3",
        /// Grace after each start during which failures do not count.
        start_period: HumanDuration = "\"10s\"",
    }
}

table! {
    /// A plugin's routes behind the HTTP face's gateway, as written in a
    /// config layer.
    pub struct RoutesLayer {
        /// The path its routes start with (the plugin sees it), mounted at
        /// `/plugins/NAME` + it.
        prefix: String = "\"/items\"",
        /// Where they are mounted instead of `/plugins/NAME` + `prefix`.
        mount: String = "\"/shop\"",
    }
}

table! {
    /// Heartbeat settings as written in a config layer.
    pub struct HeartbeatLayer {
        /// How often to ping.
        interval: HumanDuration = "\"1s\"",
        /// How long an answer may take before it counts as a miss.
        timeout: HumanDuration = "\"1s\"",
        /// Misses in a row that make the plugin unhealthy.
        misses: u32 = "3",
    }
}

table! {
    /// Backoff settings as written in a config layer.
    pub struct BackoffLayer {
        /// Delay before the second restart in a row.
        initial: HumanDuration = "\"100ms\"",
        /// Longest delay.
        max: HumanDuration = "\"30s\"",
        /// Running this long resets the delays.
        reset_after: HumanDuration = "\"10s\"",
    }
}

table! {
    /// Restart limit as written in a config layer.
    pub struct RestartLimitLayer {
        /// Restarts allowed within the window.
        count: u32 = "5",
        /// The window.
        within: HumanDuration = "\"60s\"",
    }
}

table! {
    /// A rate limit as written in a config layer.
    pub struct RateLimitLayer {
        /// Calls allowed per period.
        calls: u32 = "100",
        /// The period (default one second).
        per: HumanDuration = "\"1s\"",
    }
}

/// Declares the plugin keys once and derives from them the structs of each
/// layer, so a key cannot be accepted in one place and forgotten in another.
macro_rules! plugin_keys {
    ($($(#[doc = $doc:literal])+ $field:ident : $ty:ty = $example:literal,)*) => {
        /// The plugin keys, allowed in every layer.
        const PLUGIN_KEYS: &[Key] = &[
            $(Key::new(stringify!($field), <$ty as Grammar>::SHAPE, $example),)*
        ];

        /// Plugin settings from one layer; `None` means "not set here".
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PluginLayer {
            $($(#[doc = $doc])+ pub $field: Option<$ty>,)*
        }

        impl PluginLayer {
            /// This layer on top of `base`: keys set here win, except
            /// `env`, whose variables merge one by one (those set here win).
            pub(super) fn over(mut self, mut base: PluginLayer) -> PluginLayer {
                let env = merge_env(self.env.take(), base.env.take());
                let mut layered = PluginLayer { $($field: self.$field.or(base.$field),)* };
                layered.env = env;
                layered
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
            /// Free-form facts about the plugin (author, license, tags,
            /// homepage, anything): shown by `inspect`, never checked.
            #[serde(default)]
            pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
            /// The actions it serves, with what each does.
            #[serde(default)]
            pub actions: Option<Vec<ActionDecl>>,
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

/// `env` of a layer over the `env` of the layer below: variable by variable,
/// those of the upper layer winning, so a fleet that sets one variable keeps
/// the others its manifest sets (a manifest's `PYTHONPATH`, say).
fn merge_env(
    upper: Option<BTreeMap<String, String>>,
    lower: Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    match (upper, lower) {
        (Some(upper), Some(mut lower)) => {
            lower.extend(upper);
            Some(lower)
        }
        (upper, lower) => upper.or(lower),
    }
}

impl Table for PluginLayer {
    const KEYS: Keys = &[PLUGIN_KEYS];
}

impl Grammar for PluginLayer {
    const SHAPE: Shape = Shape::Table(Self::KEYS);
}

impl Table for FleetEntry {
    const KEYS: Keys = &[
        &[Key::new(
            "path",
            <PathBuf as Grammar>::SHAPE,
            "\"plugins/echo\"",
        )],
        PLUGIN_KEYS,
    ];
}

impl Grammar for BTreeMap<String, FleetEntry> {
    const SHAPE: Shape = Shape::Named(FleetEntry::KEYS);
}

impl Table for Manifest {
    const KEYS: Keys = &[
        &[
            Key::new("name", <String as Grammar>::SHAPE, "\"echo\"").required(),
            Key::new("version", <String as Grammar>::SHAPE, "\"0.1.0\""),
            Key::new(
                "description",
                <String as Grammar>::SHAPE,
                "\"what it does\"",
            ),
            Key::new(
                "config_schema",
                <BTreeMap<String, SchemaEntry> as Grammar>::SHAPE,
                "{ greeting = { type = \"string\" } }",
            ),
            Key::new(
                "metadata",
                <serde_json::Map<String, serde_json::Value> as Grammar>::SHAPE,
                "{ author = \"Ann\", license = \"MIT\", tags = [\"sensors\"] }",
            ),
            Key::new(
                "actions",
                <Vec<ActionDecl> as Grammar>::SHAPE,
                "[\"get\", { name = \"set\", description = \"writes a key\" }]",
            ),
        ],
        PLUGIN_KEYS,
    ];
}

plugin_keys! {
    /// The program and its arguments.
    cmd: Vec<String> = "[\"bin/plugin\", \"--flag\"]",
    /// Extra environment variables for the process.
    env: BTreeMap<String, String> = "{ LEVEL = \"2\" }",
    /// Environment files (systemd `EnvironmentFile=` lines), under `env`.
    env_file: EnvFiles = "[\"app.env\", \"-local.env\"]",
    /// Working directory of the process.
    cwd: PathBuf = "\"data\"",
    /// A TCP port for it: `"auto"` (a free one at each spawn) or a number.
    port: PortSetting = "\"auto\"",
    /// Whether `corral up` starts it.
    enabled: bool = "true",
    /// How many processes of it run, named `NAME.0` … `NAME.N-1`.
    instances: u32 = "3",
    /// How it talks to corral: `corral` (its protocol) or `none` (any program).
    protocol: Protocol = "\"none\"",
    /// The codec on its socket.
    codec: Codec = "\"json\"",
    /// The table handed to its `on_load` hook.
    config: serde_json::Value = "{ greeting = \"hello\" }",
    /// How long it has to connect and shake hands.
    handshake_timeout: HumanDuration = "\"5s\"",
    /// Its HTTP routes behind the fleet's `[http]` gateway: proxied to its
    /// `port`, or served over RPC by its SDK's routes.
    http: RoutesLayer = "{ prefix = \"/items\" }",
    /// A health probe, for any plugin.
    health: HealthLayer = "{ http = \"http://127.0.0.1:${port}/health\", interval = \"5s\" }",
    /// When it counts as running: `started` (spawned, or shaken hands) or
    /// `health` (its first passing probe as well).
    ready: ReadyOn = "\"health\"",
    /// A kernel-enforced sandbox: files, network, signals.
    sandbox: SandboxLayer = "{ fs_read = [\"/srv/data\"], network = \"none\" }",
    /// `trusted` or `sandboxed` (a sandbox that `permissions` words widen).
    execution_mode: ExecutionMode = "\"sandboxed\"",
    /// The user it runs as (the supervisor running as root), or `dynamic`:
    /// a uid of its own.
    user: UserSetting = "\"dynamic\"",
    /// The group it runs as (with `user`; by default the user's own).
    group: String = "\"nogroup\"",
    /// Whether it gets a `NOTIFY_SOCKET` and is ready on `READY=1`
    /// (systemd's notify protocol).
    notify: bool = "true",
    /// How often it must send `WATCHDOG=1` (needs `notify`); past it, it is
    /// killed for `hang`.
    watchdog: HumanDuration = "\"5s\"",
    /// Heartbeat settings.
    heartbeat: HeartbeatLayer = "{ interval = \"1s\", timeout = \"1s\", misses = 3 }",
    /// How long a stop request may take before SIGTERM.
    stop_timeout: HumanDuration = "\"5s\"",
    /// How long after SIGTERM before SIGKILL.
    kill_timeout: HumanDuration = "\"2s\"",
    /// The signal a stop sends its process group first (then SIGKILL).
    stop_signal: StopSignal = "\"SIGINT\"",
    /// Deadline of a call into the plugin.
    call_timeout: HumanDuration = "\"30s\"",
    /// Memory cap of its process tree.
    memory_max: Size = "\"256MiB\"",
    /// Soft memory mark: crossing it is logged and reported, once per crossing.
    memory_high: Size = "\"192MiB\"",
    /// How often its process tree's RSS is sampled.
    memory_check_interval: HumanDuration = "\"250ms\"",
    /// Most processes (and threads) its cgroup may hold.
    pids_max: u32 = "64",
    /// Most CPU time, as a share of one core (`"50%"`; `"200%"` is two).
    cpu_max: Percent = "\"50%\"",
    /// Its share of CPU time against other plugins' when the CPU is busy
    /// (1 to 10,000; 100 is every plugin's without it).
    cpu_weight: u32 = "200",
    /// Its share of disk time against other plugins' when a disk is busy
    /// (1 to 10,000; 100 is every plugin's without it).
    io_weight: u32 = "200",
    /// Open-file limit (soft and hard) of its process.
    nofile: u64 = "1024",
    /// Most calls into it per period; more are answered `rate_limited`.
    rate_limit: RateLimitLayer = "{ calls = 100, per = \"1s\" }",
    /// `auto` (a cgroup where the machine allows, else sampling) or `sampling`.
    limits: LimitsMode = "\"sampling\"",
    /// Bus patterns it subscribes to at start (and may subscribe to).
    subscribe: Vec<String> = "[\"sensor.*\"]",
    /// Bus patterns it may publish under (default `<name>.>`).
    publish: Vec<String> = "[\"sensor.kitchen.>\"]",
    /// Size of its event queue.
    queue: u32 = "65536",
    /// What its full event queue does: `drop-oldest` or `block`.
    overflow: Overflow = "\"drop-oldest\"",
    /// Bytes its event queue holds.
    queue_bytes: Size = "\"16MiB\"",
    /// Retained events it may keep; past it, its oldest are evicted.
    retained_max: u32 = "1024",
    /// Bytes of retained events it may keep; past it, its oldest are evicted.
    retained_bytes: Size = "\"4MiB\"",
    /// Whether its event queue outlives its process.
    durable: bool = "true",
    /// Most bus patterns it may hold at once.
    max_subscriptions: u32 = "1024",
    /// When it is restarted after it ends.
    restart: RestartPolicy = "\"on-failure\"",
    /// Exit codes that count as success for `on-failure`.
    success_codes: Vec<i32> = "[0, 3]",
    /// Delays between restarts in a row.
    backoff: BackoffLayer = "{ initial = \"100ms\", max = \"30s\", reset_after = \"10s\" }",
    /// How many restarts in how long before it is `failed`.
    restart_limit: RestartLimitLayer = "{ count = 5, within = \"60s\" }",
    /// Plugins that must be running before it starts.
    requires: Vec<String> = "[\"db\"]",
    /// Other plugins' actions it may call, as `plugin:action` globs.
    calls: Vec<String> = "[\"db:*\", \"cache:get\"]",
    /// The plugins that may call it, as globs (any, when unset).
    callers: Vec<String> = "[\"web\", \"worker.*\"]",
    /// Allow and deny rules on plugins' actions and on topics.
    permissions: Vec<PermissionEntry> = "[\"network_access\", { resource = \"db\", actions = [\"get\"], effect = \"allow\" }]",
    /// Whether it joins this fleet to others (a bridge such as `nats-bridge`):
    /// it may put events from elsewhere on the bus under a source of their
    /// own (`nats:NODE`) and read every plugin's status rows.
    bridge: bool = "true",
    /// Size at which its log file is rotated.
    log_max_size: Size = "\"10MiB\"",
    /// Rotated log files kept.
    log_keep: u32 = "5",
}

impl PluginLayer {
    /// Makes relative `cmd[0]` (when it names a path) and `cwd` relative to `base`.
    /// One that starts with a variable (`${plugin_dir}/bin/x`) is left for
    /// the spawn to expand.
    pub(super) fn anchored_at(mut self, base: &Path) -> Self {
        if let Some(program) = self.cmd.as_mut().and_then(|c| c.first_mut())
            && program.contains('/')
            && !program.starts_with("${")
        {
            *program = base.join(&*program).to_string_lossy().into_owned();
        }
        if let Some(cwd) = self.cwd.as_mut()
            && !cwd.starts_with("${")
        {
            *cwd = base.join(&*cwd);
        }
        self.env_file = self.env_file.map(|f| f.anchored_at(base));
        self
    }
}

table! {
    /// The `[supervisor]` table as written.
    pub(super) struct SupervisorLayer {
        /// Where sockets live.
        runtime_dir: PathBuf = "\".corral\"",
        /// Where plugin log files live.
        log_dir: PathBuf = "\".corral/logs\"",
        /// What else restarts with a restarted plugin.
        strategy: Strategy = "\"one_for_one\"",
        /// Control connections open at once.
        control_connections: usize = "64",
        /// An idle control connection is closed after this long.
        control_idle_timeout: HumanDuration = "\"60s\"",
    }
}

table! {
    /// The `[http]` table as written.
    pub(super) struct HttpLayer {
        /// Address and port it listens on (off loopback: with TLS, or `insecure`).
        listen: String = "\"127.0.0.1:7700\"",
        /// Its TLS certificate chain (PEM), with `tls_key`.
        tls_cert: PathBuf = "\"/etc/corral/tls/cert.pem\"",
        /// Its TLS private key (PEM), with `tls_cert`.
        tls_key: PathBuf = "\"/etc/corral/tls/key.pem\"",
        /// Allows a listen address off loopback without TLS (the token then
        /// crosses the network in the clear).
        insecure: bool = "true",
        /// Largest request body.
        max_body: Size = "\"1MiB\"",
        /// Most connections open at once.
        max_connections: usize = "256",
        /// Longest time one request may take (streams excepted).
        request_timeout: HumanDuration = "\"30s\"",
    }
}

/// The fleet file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetFile {
    #[serde(default)]
    pub(super) supervisor: SupervisorLayer,
    #[serde(default)]
    pub(super) http: Option<HttpLayer>,
    #[serde(default)]
    pub(super) defaults: PluginLayer,
    #[serde(default)]
    pub(super) plugins: BTreeMap<String, FleetEntry>,
}

impl Table for FleetFile {
    const KEYS: Keys = &[&[
        Key::new(
            "supervisor",
            SupervisorLayer::SHAPE,
            "{ runtime_dir = \".corral\" }",
        ),
        Key::new("http", HttpLayer::SHAPE, "{ listen = \"127.0.0.1:7700\" }"),
        Key::new("defaults", PluginLayer::SHAPE, "{ stop_timeout = \"3s\" }"),
        Key::new(
            "plugins",
            <BTreeMap<String, FleetEntry> as Grammar>::SHAPE,
            "{ echo = { cmd = [\"bin/echo\"] } }",
        ),
    ]];
}

impl FleetFile {
    /// Reads `file` with the `CORRAL_` environment variables over it, key
    /// by key: what passed, with every problem of what did not.
    pub(super) fn read(file: &Path) -> Result<Read<Self>, ConfigError> {
        if !file.is_file() {
            return Err(ConfigError::one(
                file.display(),
                "",
                "no such file; pass the fleet config with `-c FILE` (default `corral.toml`)",
            ));
        }
        check::read(&layered(file), file, Self::KEYS)
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

/// `file` with the `CORRAL_` environment variables over it (the overrides
/// file is applied to each plugin's resolved `config`, key by key, by
/// `overrides::apply`).
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
    /// Reads a `plugin.toml` key by key: what passed, with every problem of
    /// what did not.
    pub(super) fn read(file: &Path) -> Result<Read<Self>, ConfigError> {
        check::read(&Figment::from(Toml::file_exact(file)), file, Self::KEYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn env_merges_variable_by_variable_the_upper_layer_winning() {
        let fleet = PluginLayer {
            env: env(&[("LEVEL", "2"), ("MODE", "fleet")]),
            ..PluginLayer::default()
        };
        let manifest = PluginLayer {
            env: env(&[("PYTHONPATH", "lib"), ("MODE", "manifest")]),
            cwd: Some("data".into()),
            ..PluginLayer::default()
        };
        let layered = fleet.over(manifest);
        assert_eq!(
            layered.env,
            env(&[("LEVEL", "2"), ("MODE", "fleet"), ("PYTHONPATH", "lib")])
        );
        assert_eq!(layered.cwd, Some("data".into()));
        assert_eq!(
            PluginLayer::default().over(PluginLayer::default()).env,
            None
        );
    }
}
