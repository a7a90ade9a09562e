//! Test support for corral's end-to-end tests: a [`Fleet`] runs the real
//! `corral up` on a config in its own temp dir and talks to it through the
//! real CLI; [`wait_until`] polls a condition against a deadline.
//!
//! Every fleet is torn down on drop (SIGKILL of the supervisor, whose
//! plugins die with it), so a failing test leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory cargo put the workspace's binaries in.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary, checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf()
}

/// A test fixture file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// Polls `probe` every 20 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True once `pid` no longer runs (gone, or a zombie awaiting its reaper).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Children of `pid` that are zombies (exited, not reaped).
pub fn zombie_children(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| {
                let mut f = rest.split_whitespace();
                f.next() == Some("Z") && f.next() == Some(pid.to_string().as_str())
            })
        })
        .count()
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The echo plugin's binary, as a TOML string literal.
pub fn echo_cmd() -> String {
    format!("[{:?}]", bin("echo-plugin").display().to_string())
}

/// The Python echo plugin's folder, as a TOML string literal (for `path`).
pub fn echo_py_path() -> String {
    format!(
        "{:?}",
        repo_root().join("examples/echo-py").display().to_string()
    )
}

/// A running `corral up` in a temp dir of its own.
pub struct Fleet {
    dir: tempfile::TempDir,
    config: PathBuf,
    supervisor: Child,
    envs: Vec<(String, String)>,
}

impl Fleet {
    /// Writes `toml` as the fleet config and starts the supervisor on it.
    pub fn start(toml: &str) -> Self {
        Self::start_with_env(toml, &[])
    }

    /// Like [`Fleet::start`], with extra environment for the supervisor.
    pub fn start_with_env(toml: &str, envs: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let config = dir.path().join("corral.toml");
        std::fs::write(&config, toml).expect("write config");
        let envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch(dir, config, envs)
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

    /// Sends `signal` to the supervisor.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
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
        Self::launch(dir, config.to_path_buf(), envs)
    }

    fn launch(dir: tempfile::TempDir, config: PathBuf, envs: Vec<(String, String)>) -> Self {
        let log = std::fs::File::create(dir.path().join("supervisor.log")).expect("log file");
        let supervisor = Command::new(bin("corral"))
            .arg("up")
            .arg("-c")
            .arg(&config)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .env("CORRAL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn corral up");
        let fleet = Self {
            dir,
            config,
            supervisor,
            envs,
        };
        wait_until(
            Duration::from_secs(10),
            "the control socket to answer",
            || {
                fleet
                    .corral(&["ps", "--json"])
                    .status
                    .success()
                    .then_some(())
            },
        );
        fleet
    }

    /// The fleet's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        match self
            .envs
            .iter()
            .find(|(k, _)| k == "CORRAL_SUPERVISOR__RUNTIME_DIR")
        {
            Some((_, rt)) => Path::new(rt).join("control.sock"),
            None => self.dir.path().join(".corral/control.sock"),
        }
    }

    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> u32 {
        self.supervisor.id()
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

    /// A `corral` client command aimed at this fleet's control socket.
    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("corral"));
        cmd.args(args).arg("--socket").arg(self.socket());
        cmd
    }

    /// `corral ps --json`, parsed.
    pub fn ps(&self) -> Vec<Value> {
        let out = self.corral(&["ps", "--json"]);
        assert!(
            out.status.success(),
            "ps failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ps --json is JSON")
    }

    /// One plugin's `ps` row.
    pub fn row(&self, name: &str) -> Value {
        self.ps()
            .into_iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no plugin {name} in ps"))
    }

    /// Waits until the plugin's row satisfies `pred`, returning that row.
    pub fn wait_row(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(timeout, &format!("{name}: {what}"), || {
            let row = self.row(name);
            pred(&row).then_some(row)
        })
    }

    /// Waits until the plugin is running, returning its pid.
    pub fn wait_running(&self, name: &str) -> u32 {
        let row = self.wait_row(name, Duration::from_secs(10), "running", |r| {
            r["state"] == "running"
        });
        row["pid"].as_u64().expect("running plugin has a pid") as u32
    }

    /// `corral call NAME ACTION [PAYLOAD]`: Ok(reply) or Err(stderr).
    pub fn call(&self, name: &str, action: &str, payload: Option<&str>) -> Result<Value, String> {
        let mut args = vec!["call", name, action];
        args.extend(payload);
        let out = self.corral(&args);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).expect("reply is JSON"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `corral inspect NAME --json`, parsed.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.corral(&["inspect", name, "--json"]);
        assert!(
            out.status.success(),
            "inspect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("inspect --json is JSON")
    }

    /// Times (ms since the epoch) at which the plugin entered `state`, oldest first.
    pub fn entered(&self, name: &str, state: &str) -> Vec<u64> {
        self.inspect(name)["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|t| t["to"] == state)
            .map(|t| t["at_unix_ms"].as_u64().expect("time"))
            .collect()
    }

    /// `corral down`, then waits for the supervisor to exit.
    pub fn down(&mut self) -> ExitStatus {
        let out = self.corral(&["down"]);
        assert!(
            out.status.success(),
            "down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_exit(Duration::from_secs(20))
    }

    /// Waits for the supervisor to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
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

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.supervisor.try_wait().ok().flatten().is_none() {
            // A graceful stop first, so the supervisor removes what it made
            // (sockets, cgroups); SIGKILL if it does not finish in time.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.supervisor.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.supervisor.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.supervisor.kill();
            let _ = self.supervisor.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- supervisor log ---\n{}", self.log());
        }
    }
}

/// A temp dir with a short path, so socket paths stay under the OS limit.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("corral-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}
