//! Starting a plugin process: its command line, environment and working
//! directory from the [`PluginSpec`], in a process group of its own, stdin
//! closed, stdout and stderr piped for [`logs`](crate::logs), and (on Linux)
//! a parent-death signal so it never outlives the supervisor.
//!
//! Signals to the whole group live here too, so a plugin's children go with it.

use std::io;
use std::path::Path;
use std::process::Stdio;

use corral_proto::env;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::config::PluginSpec;

/// The soft open-file limit the supervisor started with, restored in plugins.
static ORIGINAL_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises the supervisor's soft open-file limit to its hard limit (a fleet of
/// hundreds of plugins needs a few descriptors each). Plugins still start
/// with the limit the supervisor was given.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = ORIGINAL_NOFILE.set((soft, hard));
        if soft < hard
            && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        {
            tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
        }
    }
}

/// A fresh random secret for one spawn, as 64 hex digits.
pub fn new_secret() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Spawns the plugin's process. The error is the OS's, for `spawn` exit reasons.
pub fn spawn(
    spec: &PluginSpec,
    socket: &Path,
    secret: &str,
    max_frame: usize,
) -> io::Result<Child> {
    let mut cmd = Command::new(&spec.cmd[0]);
    cmd.args(&spec.cmd[1..])
        .envs(&spec.env)
        .env(env::PLUGIN_NAME, &spec.name)
        .env(env::PLUGIN_SOCKET, socket)
        .env(env::PLUGIN_SECRET, secret)
        .env(env::PLUGIN_CODEC, spec.codec.as_str())
        .env(
            env::PROTOCOL_VERSION,
            corral_proto::PROTOCOL_VERSION.to_string(),
        )
        .env(env::MAX_FRAME, max_frame.to_string())
        .env_remove("CORRAL_SOCKET")
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        let nofile = ORIGINAL_NOFILE.get().copied();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (prctl, setrlimit, getppid);
        // it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                if let Some((soft, hard)) = nofile {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        soft,
                        hard,
                    )
                    .map_err(io::Error::from)?;
                }
                // The supervisor may have died between fork and prctl.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    return Err(io::Error::other("the supervisor exited during spawn"));
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// Sends `signal` to every process in the plugin's group. A group that is
/// already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, "cannot send {signal} to process group: {e}"),
    }
}
