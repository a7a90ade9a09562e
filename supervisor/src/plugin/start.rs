//! Launching a spawn: opening the plugin's log file (once), taking its port,
//! expanding its program for this spawn, binding its socket and making its
//! secret (for corral's protocol), its notify socket (with `notify`),
//! making its cgroup, spawning it, and giving it its health probe.

use corral_proto::codec::MAX_FRAME_BYTES;
use corral_proto::{Enforcement, Protocol};

use super::Host;
use super::notify::Notify;
use super::probe::{ExecContext, Prober};
use super::process::{Spawn, SpawnFailure};
use crate::config::PluginSpec;
use std::os::unix::fs::PermissionsExt;

use crate::os::cgroup::{CgroupLimits, Cgroups, LimitsMode, PluginCgroup};
use crate::os::identity;
use crate::os::logs::LogSink;
use crate::os::notify::NotifySocket;
use crate::os::spawn;
use crate::wire::handshake;

/// Starts spawn number `spawns` of the plugin: opens its log file (once,
/// into `logs`), binds its socket, makes its secret and its cgroup, and
/// launches it. Returns the spawn and how its limits are enforced.
pub(super) fn start(
    spec: &PluginSpec,
    host: &Host,
    logs: &mut Option<LogSink>,
    spawns: u32,
) -> Result<(Spawn, Enforcement), SpawnFailure> {
    if logs.is_none() {
        let log_dir = &host.settings.log_dir;
        let (sink, _) = LogSink::open(log_dir, &spec.name, spec.log_max_size, spec.log_keep)
            .map_err(|e| {
                let context = format!("cannot open its log file in {}", log_dir.display());
                SpawnFailure::os(&context, &e)
            })?;
        *logs = Some(sink);
    }
    let (mut program, port, gateway_secret) = program(spec, host)?;
    let socket = host.settings.plugin_socket(&spec.name);
    let user = user_of(spec, host, &socket)?;
    let notify_socket = notify_socket(spec, host, &mut program, user)?;
    let sandbox = match program.sandbox_paths.take() {
        Some(paths) => Some(super::sandbox::of(spec, &mut program, paths, (host, user))?),
        None => None,
    };
    let (listener, secret) = match spec.protocol {
        Protocol::Corral => {
            let listener = handshake::bind(&socket)
                .map_err(|e| SpawnFailure::os(&format!("cannot bind {}", socket.display()), &e))?;
            if let Some(user) = user {
                identity::give(&socket, user).map_err(|e| {
                    SpawnFailure::os(&format!("cannot give {} to its user", socket.display()), &e)
                })?;
            }
            let secret = spawn::new_secret()
                .map_err(|e| SpawnFailure::os("no randomness for its secret", &e))?;
            (Some(listener), secret)
        }
        Protocol::None => (None, String::new()),
    };
    let cgroup = make_cgroup(spec, &host.cgroups, spawns);
    let enforcement = cgroup
        .as_ref()
        .map_or(Enforcement::Sampling, PluginCgroup::enforcement);
    let launch = spawn::Launch {
        name: &spec.name,
        cmd: &program.cmd,
        env: &program.env,
        cwd: &program.cwd,
        nofile: spec.nofile,
        codec: spec.codec,
        socket: listener
            .as_ref()
            .map(|_| (socket.as_path(), secret.as_str())),
        max_frame: MAX_FRAME_BYTES,
        sandbox: sandbox.as_ref().map(|(s, _)| s),
        user,
    };
    let logs = logs
        .as_ref()
        .ok_or_else(|| SpawnFailure::lasting("no log file"))?;
    let mut spawn = Spawn::launch(spec, listener, &launch, cgroup, logs, host)?;
    spawn.port = port;
    spawn.gateway_secret = gateway_secret;
    spawn.uid = user.map(|(uid, _)| uid);
    spawn.sandbox = sandbox.as_ref().map(|(_, described)| described.clone());
    if let Some(socket) = notify_socket {
        let (leader, ready_within) = (spawn.pid(), spec.handshake_timeout);
        spawn.notify = Some(Notify::new(socket, leader, spec.watchdog, ready_within));
    }
    if let (Some(health), Some(probe)) = (&spec.health, program.probe) {
        // The plugin's environment, less what speaks for the plugin alone.
        let mut env = program.env;
        env.retain(|k, _| k != "NOTIFY_SOCKET" && k != "WATCHDOG_USEC");
        env.insert(corral_proto::env::PLUGIN_NAME.into(), spec.name.clone());
        let exec = ExecContext {
            env,
            cwd: program.cwd,
            sandbox: sandbox.as_ref().map(|(s, _)| s.clone()),
            user,
        };
        spawn.prober = Some(Prober::new(health, probe, host.http.clone(), exec));
    }
    Ok((spawn, enforcement))
}

/// With `user`: the uid and gid it runs as, once its socket can be
/// reached by them (the runtime dir opened to passing through, `o+x`; its
/// files stay closed).
fn user_of(
    spec: &PluginSpec,
    host: &Host,
    socket: &std::path::Path,
) -> Result<Option<(u32, u32)>, SpawnFailure> {
    let Some(id) = &spec.identity else {
        return Ok(None);
    };
    let user = identity::resolve(&spec.name, &id.user, id.group.as_deref())
        .map_err(|e| SpawnFailure::lasting(&e.to_string()))?;
    let runtime = &host.settings.runtime_dir;
    std::fs::set_permissions(runtime, std::fs::Permissions::from_mode(0o711)).map_err(|e| {
        SpawnFailure::os(
            &format!("cannot open {} to its user", runtime.display()),
            &e,
        )
    })?;
    if let Some(why) = identity::unreachable_by(socket, user.0) {
        return Err(SpawnFailure::lasting(&why));
    }
    Ok(Some(user))
}

/// With `notify`: the spawn's notify socket, named to the program in
/// `NOTIFY_SOCKET` (and its watchdog in `WATCHDOG_USEC`).
fn notify_socket(
    spec: &PluginSpec,
    host: &Host,
    program: &mut super::program::Program,
    user: Option<(u32, u32)>,
) -> Result<Option<NotifySocket>, SpawnFailure> {
    if !spec.notify {
        return Ok(None);
    }
    let path = host
        .settings
        .runtime_dir
        .join(format!("notify-{}.sock", spec.name));
    let socket = NotifySocket::bind(&path)
        .map_err(|e| SpawnFailure::os(&format!("cannot bind {}", path.display()), &e))?;
    if let Some(user) = user {
        identity::give(&path, user).map_err(|e| {
            SpawnFailure::os(&format!("cannot give {} to its user", path.display()), &e)
        })?;
    }
    program
        .env
        .insert("NOTIFY_SOCKET".into(), path.display().to_string());
    if let Some(watchdog) = spec.watchdog {
        program
            .env
            .insert("WATCHDOG_USEC".into(), watchdog.as_micros().to_string());
    }
    Ok(Some(socket))
}

/// Whether the plugin has a limit a cgroup would hold.
pub(super) fn has_cgroup_limit(spec: &PluginSpec) -> bool {
    spec.memory_max.is_some()
        || spec.memory_high.is_some()
        || spec.pids_max.is_some()
        || spec.cpu_max.is_some()
        || spec.cpu_weight.is_some()
        || spec.io_weight.is_some()
}

/// The cgroup of the spawn about to start: only when the plugin has a limit
/// for it to hold and `limits` is not `sampling`. A cgroup that cannot be
/// made leaves this spawn to sampling, with a warning.
fn make_cgroup(spec: &PluginSpec, cgroups: &Cgroups, spawns: u32) -> Option<PluginCgroup> {
    if !has_cgroup_limit(spec) || spec.limits == LimitsMode::Sampling {
        return None;
    }
    if spec.pids_max.is_some() && !cgroups.has_pids() {
        tracing::warn!("pids_max is not enforced: no writable pids cgroup controller");
    }
    if (spec.cpu_max.is_some() || spec.cpu_weight.is_some()) && !cgroups.has_cpu() {
        tracing::warn!(
            "cpu_max and cpu_weight are not enforced: no writable cpu cgroup controller"
        );
    }
    if spec.io_weight.is_some()
        && let Some(why) = cgroups.io_weight_gap()
    {
        tracing::warn!("io_weight is not enforced: {why}");
    }
    let limits = CgroupLimits {
        memory_max: spec.memory_max,
        memory_high: spec.memory_high,
        pids_max: spec.pids_max,
        cpu_max: spec.cpu_max,
        cpu_weight: spec.cpu_weight,
        io_weight: spec.io_weight,
    };
    cgroups
        .create(&spec.name, spawns, &limits)
        .unwrap_or_else(|e| {
            tracing::warn!("no cgroup for this spawn, sampling only: {e}");
            None
        })
}

/// A spawn's program (its variables expanded), the port it was given, and
/// its gateway secret.
type Launched = (
    super::program::Program,
    Option<u16>,
    Option<std::sync::Arc<str>>,
);

/// The spawn's program (its variables expanded), the port it was given,
/// and its gateway secret.
fn program(spec: &PluginSpec, host: &Host) -> Result<Launched, SpawnFailure> {
    let port = spec
        .port
        .map(crate::os::port::take)
        .transpose()
        .map_err(|e| SpawnFailure::lasting(&e))?;
    let mut program = super::program::Program::of(spec, &host.settings.runtime_dir, port)
        .map_err(|e| SpawnFailure::lasting(&e))?;
    let secret = gateway_secret(spec, port, &mut program)?;
    Ok((program, port, secret))
}

/// A fresh secret for a plugin whose routes the gateway proxies to its
/// port, given to it in its environment.
fn gateway_secret(
    spec: &PluginSpec,
    port: Option<u16>,
    program: &mut super::program::Program,
) -> Result<Option<std::sync::Arc<str>>, SpawnFailure> {
    if spec.routes.is_none() || port.is_none() {
        return Ok(None);
    }
    let secret = spawn::new_secret()
        .map_err(|e| SpawnFailure::os("no randomness for its gateway secret", &e))?;
    program.env.insert(
        corral_proto::env::GATEWAY_SECRET.to_string(),
        secret.clone(),
    );
    Ok(Some(secret.into()))
}
