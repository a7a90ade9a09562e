//! Starting a plugin process: its command line, environment and working
//! directory as plain values (a [`Launch`]; this module knows nothing of the
//! config types), in a session and process group of its own, stdin from `/dev/null`, stdout and stderr piped for [`logs`](crate::os::logs), and (on Linux)
//! a parent-death signal so it never outlives the supervisor.
//!
//! The parent-death signal must be set inside the new process, before the
//! plugin's program runs. Doing that in a `pre_exec` hook forces a full
//! `fork` of the supervisor, whose cost grows with the supervisor's memory
//! (every page is marked copy-on-write). So a plugin without a sandbox or a
//! user of its own is started [directly](super::vfork): a `vfork`-style
//! clone that does the work itself and execs the plugin. One that has them
//! is started with a cheap `posix_spawn` of the `corral-exec` shim (when it
//! sits next to the binary), which does the same work, becomes the user,
//! enters the sandbox (code that may not run in a clone sharing the
//! supervisor's memory) and execs the plugin. Without the shim, the
//! `pre_exec` path does the shim's work for a plugin without either.
//!
//! Signals to the whole group live here too, so a plugin's children go with it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use corral_proto::env;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use super::child::Child;

use crate::os::cgroup::{self, PluginCgroup};
use corral_proto::codec::Codec;

/// The soft and hard open-file limits the supervisor started with, restored
/// in plugins.
static ORIGINAL_NOFILE: OnceLock<(u64, u64)> = OnceLock::new();
/// The `corral-exec` shim, when one is found or configured.
static EXEC_SHIM: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The shim's file name.
pub const EXEC_SHIM_NAME: &str = "corral-exec";

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

/// The environment of a process the shim starts: the plugin's variables
/// first (less the shim's own), its loader's (`LD_*`) under [`LOADER_ENV`]
/// (the shim sets them only for the program, after it drops to the
/// plugin's user), then the shim's settings, which no plugin variable may
/// change.
pub fn shim_env(
    cmd: &mut Command,
    env: &BTreeMap<String, String>,
    sandbox: Option<&super::sandbox::Sandbox>,
    user: Option<(u32, u32)>,
) {
    let (loader, plain): (Vec<_>, Vec<_>) = env
        .iter()
        .filter(|(k, _)| !reserved(k))
        .partition(|(k, _)| k.starts_with("LD_"));
    cmd.envs(plain);
    if !loader.is_empty() {
        let loader: BTreeMap<_, _> = loader.into_iter().collect();
        cmd.env(
            LOADER_ENV,
            serde_json::to_string(&loader).unwrap_or_default(),
        );
    }
    if let Some(sandbox) = sandbox {
        cmd.env(super::sandbox::SANDBOX_ENV, sandbox.to_env());
    }
    if let Some((uid, gid)) = user {
        cmd.env(super::identity::USER_ENV, format!("{uid}:{gid}"));
    }
}

/// Whether `name` is one of the shim's own variables, which no plugin's
/// environment may set (`check` refuses them; a spawn drops them).
pub fn reserved(name: &str) -> bool {
    name.starts_with("CORRAL_SHIM_") || name.starts_with("CORRAL_EXEC_")
}

/// The plugin's `LD_*` variables, as JSON, for the shim to set only for
/// the program it execs (the loader would read them in the shim itself).
pub const LOADER_ENV: &str = "CORRAL_SHIM_LOADER";

/// Uses `shim` to start plugins (or the `pre_exec` path with `None`). By
/// default corral looks for `corral-exec` next to its own executable; call
/// this before the first spawn to choose otherwise.
pub fn set_exec_shim(shim: Option<PathBuf>) {
    let _ = EXEC_SHIM.set(shim);
}

/// The `corral-exec` shim in use, if any.
pub fn exec_shim() -> Option<&'static Path> {
    EXEC_SHIM
        .get_or_init(|| installed_beside(EXEC_SHIM_NAME))
        .as_deref()
}

/// The program `name` in the folder of the running executable, if it is
/// a file there: corral's binaries are installed side by side.
pub fn installed_beside(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let program = exe.parent()?.join(name);
    program.is_file().then_some(program)
}

/// A fresh random secret for one spawn, as 64 hex digits.
pub fn new_secret() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Finds the program a plugin's `cmd` names, as `exec` would: a name with a
/// `/` relative to `cwd`, any other through `PATH`. The error is the OS's.
pub fn resolve_program(program: &str, cwd: &Path) -> io::Result<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = cwd.join(program);
        let meta = std::fs::metadata(&path)?;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(path);
        }
        return Err(io::Error::from_raw_os_error(nix::libc::EACCES));
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| io::Error::from_raw_os_error(nix::libc::ENOENT))
}

/// One process to start: what to run, and how it reaches the supervisor.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The plugin's name, passed in its environment.
    pub name: &'a str,
    /// Program, then arguments.
    pub cmd: &'a [String],
    /// Extra environment.
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Open-file limit; `None` restores the supervisor's original one.
    pub nofile: Option<u64>,
    /// The codec it speaks on its socket.
    pub codec: Codec,
    /// The socket it connects to and this spawn's secret; `None` for a
    /// program that does not speak corral's protocol (it gets neither, and
    /// only its name of the protocol's variables).
    pub socket: Option<(&'a Path, &'a str)>,
    /// The largest frame either side may send.
    pub max_frame: usize,
    /// The sandbox the shim enters before the program runs, if any.
    pub sandbox: Option<&'a super::sandbox::Sandbox>,
    /// The user (`uid`, `gid`) the shim becomes before it, if not the
    /// supervisor's.
    pub user: Option<(u32, u32)>,
}

/// Spawns the plugin's process, inside `cgroup` when there is one. The
/// error is the OS's, for `spawn` exit reasons.
pub fn spawn(spec: &Launch<'_>, cgroup: Option<&PluginCgroup>) -> io::Result<Child> {
    let (soft, hard) = match spec.nofile {
        Some(n) => (n, n),
        None => ORIGINAL_NOFILE.get().copied().unwrap_or((0, 0)),
    };
    let cgroups = cgroup.map(PluginCgroup::procs_files).unwrap_or_default();
    if starts_directly(spec) {
        return spawn_direct(spec, (soft, hard), &cgroups);
    }
    let mut cmd = match exec_shim() {
        Some(shim) if cfg!(target_os = "linux") => {
            let program = resolve_program(&spec.cmd[0], spec.cwd)?;
            let mut cmd = Command::new(shim);
            shim_env(&mut cmd, spec.env, spec.sandbox, spec.user);
            cmd.arg(std::process::id().to_string())
                .arg(soft.to_string())
                .arg(hard.to_string())
                .arg(&program)
                .args(&spec.cmd[1..]);
            if !cgroups.is_empty() {
                let list: Vec<String> = cgroups
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                cmd.env(cgroup::SHIM_CGROUP_ENV, list.join("\n"));
            }
            cmd
        }
        _ if spec.sandbox.is_some() || spec.user.is_some() => {
            return Err(io::Error::other(format!(
                "a sandbox or a user is entered by the {EXEC_SHIM_NAME} shim, and there is none beside corral"
            )));
        }
        _ => {
            let mut cmd = Command::new(&spec.cmd[0]);
            cmd.args(&spec.cmd[1..]).envs(spec.env);
            pre_exec_hook(&mut cmd, (soft, hard), &cgroups)?;
            cmd
        }
    };
    cmd.envs(protocol_env(spec))
        .env_remove("CORRAL_SOCKET")
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Registered as tokio's before the reaper can see it.
    super::reaper::spawning(|| {
        let child = cmd.spawn()?;
        let pid = child.id();
        Ok((Child::Tokio(child), pid))
    })
}

/// Whether a plugin without a sandbox or a user of its own is started
/// directly ([`vfork`](super::vfork)) rather than through the shim.
static DIRECT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Starts every plugin through the shim (`false`), as a sandboxed one is,
/// or those that need none of its work directly (`true`, the default): for
/// measuring one against the other.
pub fn set_direct_spawn(direct: bool) {
    DIRECT.store(direct, std::sync::atomic::Ordering::Relaxed);
}

/// The whole environment of a directly started plugin: the supervisor's,
/// less `CORRAL_SOCKET` and the shim's own variables, with the plugin's
/// and then the protocol's on top (what the shim's path gives it too).
fn direct_env(spec: &Launch<'_>) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut vars: BTreeMap<std::ffi::OsString, std::ffi::OsString> = std::env::vars_os().collect();
    for (k, v) in spec.env {
        vars.insert(k.into(), v.into());
    }
    for (k, v) in protocol_env(spec) {
        vars.insert(k.into(), v);
    }
    vars.retain(|k, _| k != "CORRAL_SOCKET" && !k.to_str().is_some_and(reserved));
    vars.into_iter().collect()
}

/// The variables corral's protocol gives a plugin: its name, and for one
/// that speaks the protocol its socket, secret, codec, version and frame
/// limit. Set last, over the plugin's own, on either path.
fn protocol_env(spec: &Launch<'_>) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut vars = vec![(env::PLUGIN_NAME, spec.name.into())];
    if let Some((socket, secret)) = spec.socket {
        vars.extend([
            (env::PLUGIN_SOCKET, socket.into()),
            (env::PLUGIN_SECRET, secret.into()),
            (env::PLUGIN_CODEC, spec.codec.as_str().into()),
            (
                env::PROTOCOL_VERSION,
                corral_proto::PROTOCOL_VERSION.to_string().into(),
            ),
            (env::MAX_FRAME, spec.max_frame.to_string().into()),
        ]);
    }
    vars
}

/// A path as a C string.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("{} holds a NUL byte", path.display())))
}

/// Whether `spec` is started directly ([`vfork`](super::vfork)): on Linux,
/// with neither a sandbox nor a user of its own (the shim's to enter), in a
/// runtime and on a kernel with pidfds to await it.
fn starts_directly(spec: &Launch<'_>) -> bool {
    cfg!(target_os = "linux")
        && spec.sandbox.is_none()
        && spec.user.is_none()
        && DIRECT.load(std::sync::atomic::Ordering::Relaxed)
        && tokio::runtime::Handle::try_current().is_ok()
        && super::child::pidfds_work()
}

/// Starts `spec` with one exec, doing the shim's work in the clone.
fn spawn_direct(spec: &Launch<'_>, nofile: (u64, u64), cgroups: &[PathBuf]) -> io::Result<Child> {
    // Absolute: it is exec'd after the chdir into `cwd`.
    let program = std::path::absolute(resolve_program(&spec.cmd[0], spec.cwd)?)?;
    let plan = super::vfork::Plan {
        program: c_path(&program)?,
        args: spec
            .cmd
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| io::Error::other("an argument holds a NUL byte"))?,
        env: direct_env(spec),
        cwd: c_path(spec.cwd)?,
        nofile,
        cgroups: c_paths(cgroups)?,
    };
    super::vfork::spawn(&plan).map(Child::Direct)
}

/// The in-process equivalent of the shim, for when there is none.
fn pre_exec_hook(cmd: &mut Command, nofile: (u64, u64), cgroups: &[PathBuf]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        let cgroups = c_paths(cgroups)?;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (prctl, getppid, setrlimit,
        // open, write, close) on memory prepared before the fork; it takes
        // no lock, and allocates only to report a failure.
        unsafe {
            cmd.pre_exec(move || shim_prepare(parent, nofile, &cgroups));
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (nofile, cgroups);
        cmd.process_group(0);
    }
    Ok(())
}

/// Paths as C strings, made before a fork.
pub fn c_paths(paths: &[PathBuf]) -> io::Result<Vec<CString>> {
    paths.iter().map(|p| c_path(p)).collect()
}

/// What the shim does in the new process before it becomes the plugin: a
/// new session (and so a process group of its own), parent-death signal, a check that the parent is still `supervisor`, the
/// open-file limit (soft, hard; a hard limit of 0 leaves it), and joining
/// each cgroup by writing to its `cgroup.procs`. Returns only on error.
pub fn shim_prepare(supervisor: u32, nofile: (u64, u64), cgroups: &[CString]) -> io::Result<()> {
    // A session of its own, whose process group is the plugin's pid: no
    // process outside it can join the group (setpgid works only within a
    // session), so the socket's process-group check admits the plugin alone.
    nix::unistd::setsid()
        .map_err(|e| io::Error::other(format!("cannot start a session of its own: {e}")))?;
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
    if nix::unistd::getppid().as_raw() as u32 != supervisor {
        return Err(io::Error::other("the supervisor exited during spawn"));
    }
    let (soft, hard) = nofile;
    if hard > 0 {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
            .map_err(|e| io::Error::other(format!("cannot set nofile to {soft}: {e}")))?;
    }
    for procs in cgroups {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        let fd = open(
            procs.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("cannot join cgroup {procs:?}: {e}")))?;
        // "0" is the writing process itself.
        nix::unistd::write(&fd, b"0")
            .map_err(|e| io::Error::other(format!("cannot join cgroup {procs:?}: {e}")))?;
    }
    Ok(())
}

/// Whether `name` is the shim (for a binary that may be invoked as either).
pub fn is_shim(name: &OsStr) -> bool {
    Path::new(name).file_name() == Some(OsStr::new(EXEC_SHIM_NAME))
}

/// Sends `signal` to every process in the plugin's group. A group that is
/// already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, "cannot send {signal} to process group: {e}"),
    }
}

/// Sends `signal` to the plugin's process alone: until it has called
/// `setsid()` (in the shim, or in the clone before its exec), no group of its pid exists, and [`signal_group`] reaches
/// nothing. Only for a process not yet reaped (its pid is still its own).
pub fn signal_process(pid: u32, signal: Signal) {
    match nix::sys::signal::kill(Pid::from_raw(pid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, "cannot send {signal} to the plugin's process: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_like_exec() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(resolve_program("sh", tmp.path()).unwrap().ends_with("sh"));
        let err = resolve_program("./missing", tmp.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::write(tmp.path().join("data"), b"").unwrap();
        let err = resolve_program("./data", tmp.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            resolve_program("no-such-program-anywhere", tmp.path())
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
