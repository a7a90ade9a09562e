//! `corral up --detach`: starts the supervisor in the background and returns
//! once its fleet has settled.
//!
//! The command checks what it can first (the config, `CORRAL_LOG_FORMAT`,
//! that no supervisor holds the runtime dir yet, the log file), then runs
//! this same binary again as `corral up` without `--detach`, in a session
//! of its own (so a terminal's hang-up, which `corral up` takes as a
//! reload, never reaches it), with stdin, stdout and stderr on `/dev/null`
//! and its own log in a rotated file: `--log-file`, by default
//! `<log_dir>/corral.log`. It then polls the control socket until the
//! supervisor says the initial fleet has settled (the moment `READY=1` goes
//! to a service manager), and prints the supervisor's pid, control socket
//! and log file, with a warning for each plugin that failed on the way. If
//! the supervisor exits first, it fails with the log's last lines; past
//! `--timeout`, it fails naming the plugins still on their way up, and
//! leaves the supervisor running.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use corral_proto::{ControlApiClient, PluginState};

use super::args::{Detach, OwnLog};
use super::{client, fail};
use crate::config::Fleet;
use crate::os::runtime_dir::{RuntimeDir, prepare_log_dir};

/// The supervisor's log file when `--detach` is given no `--log-file`.
pub const DEFAULT_LOG_FILE: &str = "corral.log";

/// How many of the log's last lines a failure shows.
const LOG_TAIL: usize = 20;

/// How often the control socket is asked whether the fleet has settled.
const POLL: Duration = Duration::from_millis(50);

/// `corral up -c FILE --detach`: see the module's doc.
pub fn up(config: &Path, log: &OwnLog, detach: &Detach, color: clap::ColorChoice) -> ExitCode {
    let fleet = match crate::config::load(config) {
        Ok(f) => f,
        Err(e) => {
            for p in &e.problems {
                eprintln!("error: {p}");
            }
            return ExitCode::from(1);
        }
    };
    if let Err(e) = crate::cli::args::LogFormat::from_env() {
        return fail(&e);
    }
    // The runtime dir first (0700, and no supervisor holds it yet), then
    // the log dir, which may be inside it.
    if let Err(e) = RuntimeDir::acquire(&fleet.supervisor.runtime_dir) {
        return fail(&e.to_string());
    }
    let log_file = match log_file(&fleet, log) {
        Ok(path) => path,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let socket = fleet.supervisor.control_socket();
    let args = child_args(config, &log_file, log, color);
    let mut child = match spawn(&args) {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot start the supervisor: {e}")),
    };
    let deadline = Instant::now() + detach.timeout;
    let outcome = runtime.block_on(settle(&mut child, &socket, deadline));
    report(outcome, &child, config, &socket, &log_file, detach.timeout)
}

/// The supervisor's log file: `--log-file`, else `<log_dir>/corral.log` (the
/// log dir prepared 0700); checked by opening it as the supervisor will.
fn log_file(fleet: &Fleet, log: &OwnLog) -> Result<PathBuf, String> {
    let path = match &log.log_file {
        Some(path) => path.clone(),
        None => {
            if fleet.plugins.iter().any(|p| p.name == "corral") {
                return Err(format!(
                    "the plugin `corral` logs to {}, where the supervisor's own log would go; choose another with --log-file",
                    fleet.supervisor.log_dir.join(DEFAULT_LOG_FILE).display()
                ));
            }
            prepare_log_dir(&fleet.supervisor.log_dir).map_err(|e| e.to_string())?;
            fleet.supervisor.log_dir.join(DEFAULT_LOG_FILE)
        }
    };
    crate::os::log_file::Background::start(&path, log.log_max_size, log.log_keep)
        .map_err(|e| format!("cannot use --log-file {}: {e}", path.display()))?;
    Ok(path)
}

/// The arguments of the background `corral up`: this one's, without
/// `--detach`, with its log going to `log_file`.
pub fn child_args(
    config: &Path,
    log_file: &Path,
    log: &OwnLog,
    color: clap::ColorChoice,
) -> Vec<OsString> {
    let color = match color {
        clap::ColorChoice::Auto => "auto",
        clap::ColorChoice::Always => "always",
        clap::ColorChoice::Never => "never",
    };
    [
        "up".into(),
        "-c".into(),
        config.as_os_str().to_owned(),
        "--log-file".into(),
        log_file.as_os_str().to_owned(),
        "--log-max-size".into(),
        format!("{}B", log.log_max_size).into(),
        "--log-keep".into(),
        log.log_keep.to_string().into(),
        "--color".into(),
        color.into(),
    ]
    .into()
}

/// Starts this binary with `args` in a session of its own, detached from
/// the terminal.
fn spawn(args: &[OsString]) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the
    // parent; it is all the child does between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    command.spawn()
}

/// How the wait for the fleet ended.
#[derive(Debug)]
enum Outcome {
    /// The fleet settled; the plugins that failed on the way, described.
    Settled(Vec<String>),
    /// The supervisor exited first.
    Exited(ExitStatus),
    /// Past the deadline: the plugins still on their way up, as far as
    /// known.
    TimedOut(Vec<String>),
}

/// Waits until the supervisor says the fleet settled, it exits, or
/// `deadline` passes.
async fn settle(child: &mut Child, socket: &Path, deadline: Instant) -> Outcome {
    let mut control: Option<ControlApiClient> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Outcome::Exited(status);
        }
        if control.is_none() {
            control = client::connect(socket, "").await.ok();
        }
        if let Some(c) = &control {
            match c.ready(context()).await {
                Ok(true) => return Outcome::Settled(failed(c).await),
                Ok(false) => {}
                Err(_) => control = None,
            }
        }
        if Instant::now() >= deadline {
            return Outcome::TimedOut(match &control {
                Some(c) => unsettled(c).await,
                None => Vec::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn context() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(5);
    ctx
}

/// The plugins still `starting` or `waiting`.
async fn unsettled(control: &ControlApiClient) -> Vec<String> {
    let rows = control.ps(context()).await.unwrap_or_default();
    rows.into_iter()
        .filter(|r| matches!(r.state, PluginState::Starting | PluginState::Waiting))
        .map(|r| format!("{} ({})", r.name, r.state))
        .collect()
}

/// The plugins `failed`, each with its last exit reason.
async fn failed(control: &ControlApiClient) -> Vec<String> {
    let rows = control.ps(context()).await.unwrap_or_default();
    rows.into_iter()
        .filter(|r| r.state == PluginState::Failed)
        .map(|r| {
            let reason = r.last_exit.map_or("none".into(), |e| e.to_string());
            format!(
                "`{}` is failed (last exit: {reason}); see `corral logs {}`",
                r.name, r.name
            )
        })
        .collect()
}

/// Prints what the wait came to, and returns the exit code.
fn report(
    outcome: Outcome,
    child: &Child,
    config: &Path,
    socket: &Path,
    log_file: &Path,
    timeout: Duration,
) -> ExitCode {
    let pid = child.id();
    match outcome {
        Outcome::Settled(failed) => {
            for why in failed {
                eprintln!("corral: warning: {}", crate::os::logs::visible_line(&why));
            }
            println!(
                "corral is up: pid {pid}\ncontrol socket: {}\nlog file: {}",
                socket.display(),
                log_file.display()
            );
            ExitCode::SUCCESS
        }
        Outcome::Exited(status) => fail(&format!(
            "the supervisor (pid {pid}) exited ({status}) before the fleet settled; {}",
            log_tail(log_file)
        )),
        Outcome::TimedOut(waiting) => {
            let waiting = if waiting.is_empty() {
                String::new()
            } else {
                format!(" (still on their way up: {})", waiting.join(", "))
            };
            fail(&format!(
                "the fleet has not settled after {}{waiting}; the supervisor (pid {pid}) keeps running: \
                 `corral ps -c {config}` shows where it is, `corral down -c {config}` stops it; {}",
                humantime::format_duration(timeout),
                log_tail(log_file),
                config = config.display(),
            ))
        }
    }
}

/// The last lines of the supervisor's log, introduced.
fn log_tail(log_file: &Path) -> String {
    let lines = std::fs::File::open(log_file)
        .and_then(|mut f| super::tail::last_lines(&mut f, LOG_TAIL))
        .unwrap_or_default();
    if lines.is_empty() {
        return format!(
            "its log {} says nothing; run `corral up` without --detach to see why",
            log_file.display()
        );
    }
    format!(
        "the last lines of its log {}:\n{}",
        log_file.display(),
        lines
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_supervisor_gets_every_setting_but_detach() {
        let log = OwnLog {
            log_file: None,
            log_max_size: 2048,
            log_keep: 3,
        };
        let args = child_args(
            Path::new("fleet/corral.toml"),
            Path::new("/var/log/corral.log"),
            &log,
            clap::ColorChoice::Never,
        );
        let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            args,
            [
                "up",
                "-c",
                "fleet/corral.toml",
                "--log-file",
                "/var/log/corral.log",
                "--log-max-size",
                "2048B",
                "--log-keep",
                "3",
                "--color",
                "never"
            ]
        );
        let parsed = <crate::cli::Cli as clap::Parser>::try_parse_from(
            std::iter::once("corral").chain(args.iter().copied()),
        )
        .expect("the background command parses");
        let crate::cli::Command::Up { log, detach, .. } = parsed.command else {
            panic!("not up");
        };
        assert!(!detach.detach);
        assert_eq!((log.log_max_size, log.log_keep), (2048, 3));
    }
}
