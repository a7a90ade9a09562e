//! The running supervisor fixture: a [`Fleet`] runs the real `corral up` on
//! a config in its own temp dir, reads it through its typed [`Control`]
//! client, and keeps the real CLI at hand ([`Fleet::corral`]) for tests of
//! what the CLI prints and exits with. Waiting on it is [`crate::wait`]'s.
//!
//! Every fleet is torn down on drop (SIGTERM, then SIGKILL of the
//! supervisor, whose plugins die with it) and its temp dir removed, so a
//! failing test leaves no process, socket or directory behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use corral_proto::{ErrorReply, PluginInfo, PluginState, PluginStatus};
use serde_json::Value;

use crate::control::Control;
use crate::paths::{bin, tempdir};
use crate::wait::{poll_until, wait_until};

/// A running `corral up` in a temp dir of its own.
pub struct Fleet {
    dir: tempfile::TempDir,
    config: PathBuf,
    supervisor: Child,
    envs: Vec<(String, String)>,
    control: Control,
}

impl Fleet {
    /// Writes `toml` as the fleet config and starts the supervisor on it.
    pub fn start(toml: &str) -> Self {
        Self::start_with_env(toml, &[])
    }

    /// Like [`Fleet::start`], with extra environment for the supervisor.
    pub fn start_with_env(toml: &str, envs: &[(&str, &str)]) -> Self {
        Self::start_up(toml, &[], envs)
    }

    /// Like [`Fleet::start_with_env`], with extra arguments to `corral up`
    /// (such as `--log-file PATH`).
    pub fn start_up(toml: &str, up_args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let config = dir.path().join("corral.toml");
        std::fs::write(&config, toml).expect("write config");
        let envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch_with(dir, config, envs, up_args)
    }

    /// Starts the supervisor on an existing config file, with a private
    /// runtime dir and extra `CORRAL_` overrides.
    pub fn start_file(config: &Path, overrides: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let mut envs: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        envs.push((
            "CORRAL_SUPERVISOR__RUNTIME_DIR".into(),
            dir.path().join("rt").display().to_string(),
        ));
        envs.push((
            "CORRAL_SUPERVISOR__LOG_DIR".into(),
            dir.path().join("logs").display().to_string(),
        ));
        Self::launch_with(dir, config.to_path_buf(), envs, &[])
    }

    fn launch_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        envs: Vec<(String, String)>,
        up_args: &[&str],
    ) -> Self {
        let log = std::fs::File::create(dir.path().join("supervisor.log")).expect("log file");
        let supervisor = without_colour_env(&mut Command::new(bin("corral")))
            .arg("up")
            .arg("-c")
            .arg(&config)
            .args(up_args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .env("CORRAL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn corral up");
        let socket = socket_in(dir.path(), &envs);
        let fleet = Self {
            dir,
            config,
            supervisor,
            envs,
            control: Control::new(socket),
        };
        wait_until(
            Duration::from_secs(10),
            "the control socket to answer",
            || fleet.control.try_ps().ok().map(drop),
        );
        fleet
    }

    /// Starts another `corral up` on this fleet's config and waits for it to exit.
    pub fn second_up(&self) -> Output {
        Command::new(bin("corral"))
            .arg("up")
            .arg("-c")
            .arg(&self.config)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run corral up")
    }

    /// Sends `signal` to the supervisor (closing the control connection
    /// first, so a supervisor told to stop does not wait for it).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.control.disconnect();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.supervisor.id() as i32),
            signal,
        )
        .expect("signal supervisor");
    }

    /// Rewrites the fleet config.
    pub fn rewrite_config(&self, toml: &str) {
        std::fs::write(&self.config, toml).expect("rewrite config");
    }

    /// The fleet's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.control.socket().to_path_buf()
    }

    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> u32 {
        self.supervisor.id()
    }

    /// The typed client of this fleet's control socket.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Runs a `corral` client command against this fleet.
    pub fn corral(&self, args: &[&str]) -> Output {
        self.client(args)
            .stdin(Stdio::null())
            .output()
            .expect("run corral")
    }

    /// Starts a `corral` client command without waiting for it.
    pub fn corral_spawn(&self, args: &[&str]) -> Child {
        self.spawn_client(args, Stdio::null())
    }

    /// Like [`Fleet::corral_spawn`], with a pipe to the command's stdin.
    pub fn corral_spawn_stdin(&self, args: &[&str]) -> Child {
        self.spawn_client(args, Stdio::piped())
    }

    fn spawn_client(&self, args: &[&str], stdin: Stdio) -> Child {
        self.client(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corral")
    }

    /// A `corral` client command aimed at this fleet's control socket,
    /// with no colour variable from the environment the tests run in.
    pub fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("corral"));
        without_colour_env(&mut cmd)
            .args(args)
            .arg("--socket")
            .arg(self.socket());
        cmd
    }

    /// Every plugin's status row, in config order.
    pub fn ps(&self) -> Vec<PluginStatus> {
        self.control.ps()
    }

    /// One plugin's row of `corral ps --json`, as the CLI prints it.
    pub fn ps_json_row(&self, name: &str) -> Value {
        let out = self.corral(&["ps", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).expect("ps --json");
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no row of {name} in {rows}"))
    }

    /// One plugin's status row.
    pub fn row(&self, name: &str) -> PluginStatus {
        self.control.status(name)
    }

    /// Calls `ACTION` on plugin `NAME` with `payload` (JSON text; `null` when
    /// absent): its reply, or the error answered.
    pub fn call(
        &self,
        name: &str,
        action: &str,
        payload: Option<&str>,
    ) -> Result<Value, ErrorReply> {
        let payload = payload.map_or(Value::Null, |p| {
            serde_json::from_str(p).unwrap_or_else(|e| panic!("payload {p} is not JSON: {e}"))
        });
        self.control.call(name, action, &payload)
    }

    /// The echo plugin's `received` answer (up to 100,000 events).
    pub fn received(&self, name: &str) -> Value {
        self.call(name, "received", Some(r#"{"limit": 100000}"#))
            .unwrap_or_else(|e| panic!("{name} received: {e}"))
    }

    /// Status, settings in force and history of one plugin.
    pub fn inspect(&self, name: &str) -> PluginInfo {
        self.control.inspect(name)
    }

    /// The settings in force for one plugin, as a JSON object.
    pub fn settings(&self, name: &str) -> Value {
        self.inspect(name)
            .settings
            .to_json()
            .expect("settings are JSON")
    }

    /// Times (ms since the epoch) at which the plugin entered `state`, oldest first.
    pub fn entered(&self, name: &str, state: PluginState) -> Vec<u64> {
        self.inspect(name)
            .history
            .iter()
            .filter(|t| t.to == state)
            .map(|t| t.at_unix_ms)
            .collect()
    }

    /// What `corral logs NAME` prints.
    pub fn logs(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.corral(&["logs", name]).stdout).into_owned()
    }

    /// Stops the fleet over the control socket, then waits for the
    /// supervisor to exit.
    pub fn down(&mut self) -> ExitStatus {
        self.control.down();
        self.wait_exit(Duration::from_secs(20))
    }

    /// Waits for the supervisor to exit (closing the control connection
    /// first, so it does not wait for it).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.control.disconnect();
        wait_until(timeout, "the supervisor to exit", || {
            self.supervisor.try_wait().expect("try_wait")
        })
    }

    /// The supervisor's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisor.log")).unwrap_or_default()
    }

    /// The fleet config's path.
    pub fn config(&self) -> &Path {
        &self.config
    }
}

/// `cmd` without the variables that turn colour on or off, so what corral
/// prints does not depend on the environment the tests run in.
pub fn without_colour_env(cmd: &mut Command) -> &mut Command {
    for var in ["NO_COLOR", "CLICOLOR_FORCE", "CLICOLOR"] {
        cmd.env_remove(var);
    }
    cmd
}

/// The control socket of a fleet in `dir` with these `CORRAL_` overrides.
fn socket_in(dir: &Path, envs: &[(String, String)]) -> PathBuf {
    match envs
        .iter()
        .find(|(k, _)| k == "CORRAL_SUPERVISOR__RUNTIME_DIR")
    {
        Some((_, rt)) => Path::new(rt).join("control.sock"),
        None => dir.join(".corral/control.sock"),
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.control.disconnect();
        if self.supervisor.try_wait().ok().flatten().is_none() {
            // A graceful stop first, so the supervisor removes what it made
            // (sockets, cgroups); SIGKILL if it does not finish in time.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.supervisor.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = poll_until(Duration::from_secs(10), || {
                self.supervisor.try_wait().ok().flatten()
            });
            let _ = self.supervisor.kill();
            let _ = self.supervisor.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- supervisor log ---\n{}", self.log());
        }
    }
}
