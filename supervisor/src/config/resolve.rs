//! From layers to settings in force: the `[supervisor]` table to
//! [`SupervisorSettings`], each plugin's layers (fleet entry over manifest
//! over `[defaults]`) to a [`PluginSpec`], one function per group of keys,
//! each filling in [`defaults`] and checking its values (the fleet's start
//! order is `order`'s).
//!
//! Every problem of a plugin is reported, in a fixed order: its name, its
//! manifest, then the groups in the order `spec` resolves them. A value
//! that cannot work is reported and replaced by its default, so the groups
//! after it are still checked; a key already refused while the layers were
//! read (unknown, or of the wrong type) is not reported again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_proto::{Codec, Protocol};

use super::at::At;
use super::bus_keys::{bus, bus_memory};
use super::defaults;
use super::error::Problem;
use super::layers::{
    BackoffLayer, FleetEntry, HeartbeatLayer, HttpLayer, Manifest, PluginLayer, RateLimitLayer,
    RestartLimitLayer, SupervisorLayer,
};
use super::limits::{Weights, logs, memory, process_limits};
use super::schema::{self, PluginConfig, SchemaEntry};
use super::spec::{Heartbeat, PluginSpec, SupervisorSettings};
use crate::units::HumanDuration;

use crate::rate::RateLimit;
use crate::restart::{Backoff, RestartLimit, RestartPolicy};

/// The longest socket path the OS accepts (sun_path, less the terminator).
const MAX_SOCKET_PATH: usize = 107;
/// The longest plugin name.
const MAX_NAME: usize = 64;

/// The `[supervisor]` table, with the control socket's path checked: the
/// settings (a value that cannot work replaced by its default, so the
/// plugins can still be checked) and every problem found.
pub(super) fn supervisor_settings(
    (raw, http): (SupervisorLayer, Option<HttpLayer>),
    dir: &Path,
    file: &Path,
) -> (SupervisorSettings, Vec<Problem>) {
    let (http, mut problems) = super::http::settings(http, (file, dir));
    let runtime_dir = dir.join(
        raw.runtime_dir
            .unwrap_or_else(|| defaults::RUNTIME_DIR.into()),
    );
    let log_dir = raw
        .log_dir
        .map(|d| dir.join(d))
        .unwrap_or_else(|| runtime_dir.join(defaults::LOG_DIR_IN_RUNTIME_DIR));
    let mut settings = SupervisorSettings {
        runtime_dir,
        log_dir,
        strategy: raw.strategy.unwrap_or(defaults::STRATEGY),
        control_connections: raw
            .control_connections
            .unwrap_or(defaults::CONTROL_CONNECTIONS),
        control_idle_timeout: raw
            .control_idle_timeout
            .map_or(defaults::CONTROL_IDLE_TIMEOUT, |d| d.0),
        http,
    };
    let mut refuse = |key: &str, message: String| {
        problems.push(Problem {
            file: file.display().to_string(),
            key: key.into(),
            message,
        });
    };
    if settings.control_connections == 0 {
        refuse(
            "supervisor.control_connections",
            "must be at least 1 (the CLI needs a connection)".into(),
        );
        settings.control_connections = defaults::CONTROL_CONNECTIONS;
    }
    if settings.control_idle_timeout.is_zero() {
        refuse(
            "supervisor.control_idle_timeout",
            "must be longer than zero".into(),
        );
        settings.control_idle_timeout = defaults::CONTROL_IDLE_TIMEOUT;
    }
    // The longest socket name is checked per plugin; the control socket here.
    let control = settings.control_socket();
    if control.as_os_str().len() > MAX_SOCKET_PATH {
        refuse(
            "supervisor.runtime_dir",
            format!(
                "`{}` is too long for a socket path (the OS allows {MAX_SOCKET_PATH} bytes); choose a shorter runtime_dir",
                control.display()
            ),
        );
    }
    (settings, problems)
}

/// One plugin's layers merged, with what its manifest (if any) brought.
struct Layered {
    layer: PluginLayer,
    schema: BTreeMap<String, SchemaEntry>,
    manifest: Option<PathBuf>,
    /// The fleet file's folder.
    fleet_dir: PathBuf,
    /// The manifest's free-form `[metadata]`.
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The actions the manifest declares.
    actions: Vec<super::ActionDecl>,
    /// Its folder: the manifest's, or the fleet file's.
    home: PathBuf,
}

/// Resolves `[plugins.NAME]` over its manifest and the fleet's
/// `[defaults]` (already anchored at `dir`, the fleet file's folder): its
/// spec, with every problem found. With problems, the spec is only good for
/// checking the fleet's `requires`; it is `None` when not even that is
/// known (its manifest cannot be read). `refused` are its keys (under
/// `plugins.NAME.`, or of `[defaults]`) already refused as the fleet file
/// was read.
pub(super) fn plugin(
    (name, entry): (&str, FleetEntry),
    fleet_defaults: &PluginLayer,
    (dir, file): (&Path, &str),
    supervisor: &SupervisorSettings,
    refused: Vec<String>,
) -> (Option<PluginSpec>, Vec<Problem>) {
    let mut at = At {
        file,
        name,
        problems: Vec::new(),
        refused,
    };
    check_name(&mut at, supervisor);
    let spec = layered(&mut at, entry, fleet_defaults, dir).map(|l| spec(&mut at, l));
    (spec, at.problems)
}

/// Every group of keys resolved, each problem noted in `at`.
fn spec(at: &mut At<'_>, layered: Layered) -> PluginSpec {
    #[rustfmt::skip]
    let Layered { layer, schema, manifest, fleet_dir, metadata, actions, home } = layered;
    // Every key taken apart: a key added to the grammar and not resolved does not compile.
    #[rustfmt::skip]
    let PluginLayer {
        cmd, env, env_file, cwd, port, instances, enabled, protocol, codec,
        config, heartbeat, health, ready, notify, watchdog, sandbox, execution_mode, user, group,
        http, handshake_timeout, stop_timeout, kill_timeout, stop_signal, call_timeout,
        restart, success_codes, backoff, restart_limit,
        requires, calls, callers, permissions, bridge,
        rate_limit,
        memory_max, memory_high, memory_check_interval,
        subscribe, publish, queue, overflow, durable, max_subscriptions,
        queue_bytes, retained_max, retained_bytes,
        pids_max, cpu_max, cpu_weight, io_weight, nofile, limits,
        log_max_size, log_keep,
    } = layer;
    #[rustfmt::skip]
    let Process { cmd, env, cwd, enabled, codec } =
        process(at, cmd, env, cwd, enabled, codec, home.clone());
    let env = with_env_files(at, env_file.as_ref(), env);
    #[rustfmt::skip]
    let has = crate::vars::Has { port: port.is_some(), instance: instances.is_some() };
    for (key, why) in super::variables::problems(&cmd, &env, &cwd, has) {
        at.refuse(&key, why);
    }
    let (health, ready, problems) = super::health::of(health, ready, has);
    let (notify, watchdog, more) = super::health::notify_of(notify, watchdog);
    #[rustfmt::skip]
    problems.into_iter().chain(more).for_each(|(k, why)| at.refuse(k, why));
    let (calls, grants, actions) = access(at, (calls, callers, permissions, bridge), actions);
    let (identity, problems) = super::identity::of(user, group);
    problems.into_iter().for_each(|(k, why)| at.refuse(k, why));
    let reached = (health.as_ref(), port.is_some());
    let sandbox = confined(at, (sandbox, execution_mode), &grants.words, has, reached);
    let config = config_table(at, &schema, manifest.as_deref(), config);
    let heartbeat = heartbeats(at, heartbeat);
    #[rustfmt::skip]
    let (handshake_timeout, stop_timeout, kill_timeout, call_timeout) =
        timeouts(at, handshake_timeout, stop_timeout, kill_timeout, call_timeout);
    let (restart, success_codes, backoff, restart_limit) =
        restarts(at, restart, success_codes, backoff, restart_limit);
    let requires = requirements(at, requires);
    let rate_limit = call_rate(at, rate_limit);
    let (memory_max, memory_high, memory_check_interval) =
        memory(at, memory_max, memory_high, memory_check_interval);
    let mut bus = bus(
        at,
        (subscribe, publish, max_subscriptions),
        (queue, overflow, durable),
    );
    (bus.queue_bytes, bus.retained) = bus_memory(at, queue_bytes, retained_max, retained_bytes);
    bus.publish.extend(grants.topics.publish);
    bus.subscribe.extend(grants.topics.subscribe);
    let weights = Weights {
        cpu: cpu_weight,
        io: io_weight,
    };
    #[rustfmt::skip]
    let (pids_max, nofile, limits) = process_limits(at, (pids_max, cpu_max, weights), nofile, limits);
    let (log_max_size, log_keep) = logs(at, log_max_size, log_keep);
    #[rustfmt::skip]
    let spec = PluginSpec {
        name: at.name.to_string(), cmd, env, cwd, port, enabled,
        instances: super::instances::count(instances, port).unwrap_or_else(|(key, why)| {
            at.refuse(key, why);
            None
        }),
        instance: None,
        env_file: env_file.map(|f| f.0).unwrap_or_default(),
        protocol: protocol.unwrap_or_default(), codec, config,
        handshake_timeout, heartbeat, health, ready, notify, watchdog, sandbox, identity,
        stop_timeout, kill_timeout,
        stop_signal: stop_signal.unwrap_or_default(), call_timeout,
        memory_max, memory_high, memory_check_interval, pids_max, nofile, rate_limit, limits,
        cpu_max: cpu_max.map(|p| p.0), cpu_weight, io_weight,
        bus, restart, success_codes, backoff, restart_limit, requires, calls, actions,
        log_max_size, log_keep, manifest, metadata, plugin_dir: home, fleet_dir,
        routes: routes(at, http, has.port, protocol),
    };
    spec
}

/// Its routes behind the HTTP gateway, each problem noted in `at`.
fn routes(
    at: &mut At<'_>,
    http: Option<super::layers::RoutesLayer>,
    has_port: bool,
    protocol: Option<Protocol>,
) -> Option<super::Routes> {
    let plain = protocol == Some(Protocol::None);
    let (routes, problems) = super::routes::of(http, at.name, (has_port, plain));
    problems.into_iter().for_each(|(k, why)| at.refuse(k, why));
    routes
}

/// The sandbox, from `sandbox`, `execution_mode` and the `permissions`
/// words, refused where the supervisor must reach it over the network
/// (`reached`: its health probe, and whether it has a port).
fn confined(
    at: &mut At<'_>,
    (layer, mode): (
        Option<super::layers::SandboxLayer>,
        Option<crate::units::ExecutionMode>,
    ),
    words: &[String],
    has: crate::vars::Has,
    (health, port): (Option<&super::Health>, bool),
) -> Option<super::SandboxSpec> {
    let mode = mode.unwrap_or_default();
    let (sandbox, mut problems) = super::sandbox::of(layer, (mode, words), has);
    problems.extend(super::sandbox::unreachable(sandbox.as_ref(), health, port));
    problems.into_iter().for_each(|(k, why)| at.refuse(&k, why));
    sandbox
}

/// `calls`, `callers`, `permissions` and `bridge` as written.
type CallKeys = (
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<super::PermissionEntry>>,
    Option<bool>,
);

/// Call permissions, what else the `permissions` grant (topics, sandbox
/// words), and the declared actions.
fn access(
    at: &mut At<'_>,
    (calls, callers, permissions, bridge): CallKeys,
    actions: Vec<super::ActionDecl>,
) -> (
    super::CallsSpec,
    super::access::Grants,
    Vec<corral_proto::ActionInfo>,
) {
    let (mut calls, grants, problems) = super::access::of(calls, callers, permissions);
    calls.bridge = bridge.unwrap_or(false);
    problems.into_iter().for_each(|(k, why)| at.refuse(&k, why));
    let (actions, problems) = super::access::actions(actions);
    problems.into_iter().for_each(|(k, why)| at.refuse(&k, why));
    (calls, grants, actions)
}

/// `env` layered over its `env_file`s, or nothing (refused) when one
/// cannot be read.
fn with_env_files(
    at: &mut At<'_>,
    files: Option<&super::env_file::EnvFiles>,
    env: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = match files {
        Some(files) => super::env_file::layered(files, env).unwrap_or_else(|why| {
            at.refuse("env_file", why);
            BTreeMap::new()
        }),
        None => env,
    };
    // The shim's own variables are corral's to set, no layer's.
    let reserved: Vec<String> = env
        .keys()
        .filter(|k| crate::os::spawn::reserved(k))
        .cloned()
        .collect();
    for name in reserved {
        env.remove(&name);
        at.refuse(
            &format!("env.{name}"),
            "is corral's own: `CORRAL_SHIM_*` and `CORRAL_EXEC_*` are set by corral alone",
        );
    }
    env
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The plugin's name, and the socket path it makes.
fn check_name(at: &mut At<'_>, supervisor: &SupervisorSettings) {
    let key = format!("plugins.{}", at.name);
    let mut refuse = |message: String| {
        at.problems.push(Problem {
            file: at.file.to_string(),
            key: key.clone(),
            message,
        });
    };
    if !valid_name(at.name) {
        refuse(format!(
            "a plugin name is 1 to {MAX_NAME} characters of a-z, 0-9, '-' and '_'"
        ));
        return;
    }
    let socket = supervisor.plugin_socket(at.name);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        refuse(format!(
            "socket path `{}` is too long (the OS allows {MAX_SOCKET_PATH} bytes); shorten the name or supervisor.runtime_dir",
            socket.display()
        ));
    }
}

/// The fleet entry over the manifest it points at (if any) over
/// `fleet_defaults`, each anchored at its own folder. `None` when the
/// manifest cannot be read at all (what it would have set is unknown).
fn layered(
    at: &mut At<'_>,
    entry: FleetEntry,
    fleet_defaults: &PluginLayer,
    dir: &Path,
) -> Option<Layered> {
    let layer = entry.layer().anchored_at(dir);
    let Some(path) = &entry.path else {
        super::protocol::refused(&layer, fleet_defaults).for_each(|(k, m)| at.refuse(k, m));
        return Some(Layered {
            layer: layer.over(fleet_defaults.clone()),
            schema: BTreeMap::new(),
            manifest: None,
            fleet_dir: dir.to_path_buf(),
            metadata: None,
            actions: Vec::new(),
            home: dir.to_path_buf(),
        });
    };
    let folder = dir.join(path);
    let manifest_file = folder.join("plugin.toml");
    if !manifest_file.is_file() {
        at.refuse("path", format!("`{}` has no plugin.toml", folder.display()));
        return None;
    }
    let read = match Manifest::read(&manifest_file) {
        Ok(read) => read,
        Err(e) => {
            at.problems.extend(e.problems);
            return None;
        }
    };
    at.problems.extend(read.problems);
    at.refused.extend(read.refused);
    let mut manifest = read.value;
    let file = manifest_file.display().to_string();
    refuse_own_grants(at, &mut manifest, &file);
    // Nor may it have the supervisor read files of the host for it.
    let outside = manifest
        .env_file
        .as_ref()
        .map(|f| f.outside_its_folder().join(", "));
    if let Some(outside) = outside.filter(|o| !o.is_empty()) {
        manifest.env_file = None;
        at.problems.push(Problem {
            file,
            key: "env_file".into(),
            message: format!("`{outside}` is not in the plugin's folder: a manifest's env_file names its own files (the fleet file may name any)"),
        });
    }
    let folder = std::path::absolute(&folder).unwrap_or(folder);
    let layer = layer.over(manifest.layer().anchored_at(&folder));
    super::protocol::refused(&layer, fleet_defaults).for_each(|(k, m)| at.refuse(k, m));
    Some(Layered {
        layer: layer.over(fleet_defaults.clone()),
        metadata: manifest.metadata,
        actions: manifest.actions.unwrap_or_default(),
        fleet_dir: dir.to_path_buf(),
        schema: manifest.config_schema,
        manifest: Some(manifest_file),
        home: folder,
    })
}

/// What confines a plugin, what it may call and whom it runs as is the
/// operator's to say, not its author's: a manifest that says it is
/// refused (and what it says dropped). It may narrow its execution mode,
/// never widen it.
fn refuse_own_grants(at: &mut At<'_>, manifest: &mut Manifest, file: &str) {
    let trusted = manifest.execution_mode == Some(crate::units::ExecutionMode::Trusted);
    if trusted {
        manifest.execution_mode = None;
    }
    let own = [
        (
            "sandbox",
            "set its own sandbox",
            manifest.sandbox.take().is_some(),
        ),
        (
            "calls",
            "grant itself calls",
            manifest.calls.take().is_some(),
        ),
        (
            "permissions",
            "grant itself permissions",
            manifest.permissions.take().is_some(),
        ),
        (
            "bridge",
            "make itself a bridge",
            manifest.bridge.take().is_some(),
        ),
        (
            "user",
            "choose its own user",
            manifest.user.take().is_some(),
        ),
        (
            "group",
            "choose its own group",
            manifest.group.take().is_some(),
        ),
        (
            "execution_mode",
            "trust itself (only `execution_mode = \"sandboxed\"`)",
            trusted,
        ),
    ];
    for (key, what, _) in own.into_iter().filter(|(_, _, set)| *set) {
        at.problems.push(Problem {
            file: file.to_string(),
            key: key.into(),
            message: format!("a plugin's manifest may not {what}: set `{key}` in the fleet file, under [plugins.NAME] or [defaults]"),
        });
    }
}

/// The process keys, resolved.
struct Process {
    cmd: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    enabled: bool,
    codec: Codec,
}

/// `cmd` (there must be one, with a program), `env`, `cwd` (by default
/// `home`, the plugin's folder), `enabled` and `codec`.
fn process(
    at: &mut At<'_>,
    cmd: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<PathBuf>,
    enabled: Option<bool>,
    codec: Option<Codec>,
    home: PathBuf,
) -> Process {
    let cmd = match cmd {
        Some(cmd) if !cmd.is_empty() && !cmd[0].is_empty() => cmd,
        Some(_) => {
            at.refuse("cmd", "`cmd` is empty; it needs at least the program");
            Vec::new()
        }
        None => {
            at.refuse(
                "cmd",
                "no command: set `cmd = [\"program\", \"arg\", …]` here, or `path` to a folder whose plugin.toml has one",
            );
            Vec::new()
        }
    };
    Process {
        cmd,
        env: env.unwrap_or_default(),
        cwd: cwd.unwrap_or(home),
        enabled: enabled.unwrap_or(defaults::ENABLED),
        codec: codec.unwrap_or(defaults::CODEC),
    }
}

/// `config`, checked against the manifest's schema and its defaults filled
/// in. A bad key is reported in the fleet file, naming where the schema is.
fn config_table(
    at: &mut At<'_>,
    schema: &BTreeMap<String, SchemaEntry>,
    manifest: Option<&Path>,
    config: Option<serde_json::Value>,
) -> PluginConfig {
    let (config, problems) = schema::apply(schema, config.unwrap_or(serde_json::Value::Null));
    for (k, message) in problems {
        let file = if k.is_empty() {
            at.file.to_string()
        } else {
            let source = manifest.map_or_else(|| at.file.to_string(), |p| p.display().to_string());
            format!("{} (schema in {source})", at.file)
        };
        let key = if k.is_empty() {
            at.key("config")
        } else {
            at.key(&format!("config.{k}"))
        };
        at.problems.push(Problem { file, key, message });
    }
    config
}

/// A duration that must be more than zero; the problem naming `key` if not.
fn above_zero(at: &mut At<'_>, key: &str, d: Duration, example: &str) -> Duration {
    if d.is_zero() {
        at.refuse(
            key,
            format!("must be more than zero, or it can never be met; write a duration such as \"{example}\""),
        );
    }
    d
}

/// `heartbeat`: every part above zero.
fn heartbeats(at: &mut At<'_>, hb: Option<HeartbeatLayer>) -> Heartbeat {
    let hb = hb.unwrap_or_default();
    let heartbeat = Heartbeat {
        interval: hb.interval.map_or(defaults::HEARTBEAT_INTERVAL, |d| d.0),
        timeout: hb.timeout.map_or(defaults::HEARTBEAT_TIMEOUT, |d| d.0),
        misses: hb.misses.unwrap_or(defaults::HEARTBEAT_MISSES),
    };
    above_zero(at, "heartbeat.interval", heartbeat.interval, "1s");
    above_zero(at, "heartbeat.timeout", heartbeat.timeout, "1s");
    if heartbeat.misses == 0 {
        at.refuse(
            "heartbeat.misses",
            "must be at least 1 (the misses in a row that make a plugin unhealthy)",
        );
    }
    heartbeat
}

/// `handshake_timeout` and `call_timeout` (above zero), `stop_timeout` and
/// `kill_timeout` (zero skips that step of a stop).
fn timeouts(
    at: &mut At<'_>,
    handshake: Option<HumanDuration>,
    stop: Option<HumanDuration>,
    kill: Option<HumanDuration>,
    call: Option<HumanDuration>,
) -> (Duration, Duration, Duration, Duration) {
    let or = |d: Option<HumanDuration>, default| d.map_or(default, |d| d.0);
    let handshake = or(handshake, defaults::HANDSHAKE_TIMEOUT);
    let call = or(call, defaults::CALL_TIMEOUT);
    (
        above_zero(at, "handshake_timeout", handshake, "5s"),
        or(stop, defaults::STOP_TIMEOUT),
        or(kill, defaults::KILL_TIMEOUT),
        above_zero(at, "call_timeout", call, "30s"),
    )
}

/// `restart`, `success_codes`, `backoff` and `restart_limit` (a count of
/// at least 1 within a window above zero).
fn restarts(
    at: &mut At<'_>,
    policy: Option<RestartPolicy>,
    success_codes: Option<Vec<i32>>,
    backoff: Option<BackoffLayer>,
    limit: Option<RestartLimitLayer>,
) -> (RestartPolicy, Vec<i32>, Backoff, RestartLimit) {
    let b = backoff.unwrap_or_default();
    let backoff = Backoff {
        initial: b.initial.map_or(defaults::BACKOFF_INITIAL, |d| d.0),
        max: b.max.map_or(defaults::BACKOFF_MAX, |d| d.0),
        reset_after: b.reset_after.map_or(defaults::BACKOFF_RESET_AFTER, |d| d.0),
    };
    let l = limit.unwrap_or_default();
    let limit = RestartLimit {
        count: l.count.unwrap_or(defaults::RESTART_LIMIT_COUNT),
        within: l.within.map_or(defaults::RESTART_LIMIT_WITHIN, |d| d.0),
    };
    if limit.count == 0 {
        at.refuse(
            "restart_limit.count",
            "must be at least 1; to never restart a plugin, write `restart = \"never\"`",
        );
    }
    above_zero(at, "restart_limit.within", limit.within, "60s");
    (
        policy.unwrap_or(defaults::RESTART),
        success_codes.unwrap_or_else(|| defaults::SUCCESS_CODES.to_vec()),
        backoff,
        limit,
    )
}

/// `requires`: not the plugin itself (the rest is checked fleet-wide, by
/// [`start_order`]).
fn requirements(at: &mut At<'_>, requires: Option<Vec<String>>) -> Vec<String> {
    let requires = requires.unwrap_or_default();
    if requires.iter().any(|r| r == at.name) {
        at.refuse("requires", "a plugin cannot require itself");
    }
    requires
}

/// `rate_limit`: at least one call, in a period above zero.
fn call_rate(at: &mut At<'_>, rate_limit: Option<RateLimitLayer>) -> Option<RateLimit> {
    match rate_limit {
        None => None,
        Some(RateLimitLayer {
            calls: Some(calls),
            per,
        }) if calls > 0 && per.is_none_or(|p| !p.0.is_zero()) => Some(RateLimit {
            calls,
            per: per.map_or(defaults::RATE_LIMIT_PER, |p| p.0),
        }),
        Some(_) => {
            at.refuse(
                "rate_limit",
                "write `rate_limit = { calls = N, per = \"1s\" }` with N at least 1 and a period above zero",
            );
            None
        }
    }
}
