//! A spawn's health probe at work: it runs the plugin's probe (`http`,
//! `tcp` or `exec`) once at the start and then `interval` after each one
//! ends, one at a time, each within `timeout`, as a future the spawn polls
//! beside its other events: a probe that hangs holds up nothing but itself,
//! and dropping the spawn drops it (an `exec` probe's processes are killed).
//! Every HTTP probe shares the host's one client. What the outcomes mean
//! is [`health`](super::health)'s; the actor acts on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::health::{ProbeVerdict, Probes};
use crate::config::{Health, Probe};
use crate::os::reaper;

/// How much of an HTTP answer's body is read to look for `body`.
const BODY_LIMIT: usize = 64 * 1024;
/// How much of an `exec` probe's stderr a failure reports.
const DETAIL_LIMIT: usize = 200;

/// The HTTP client the probes of every plugin share: no proxy (probes are
/// of local servers), no redirects followed (a 3xx is not up), and
/// connections kept between probes.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "corral/",
            env!("CARGO_PKG_VERSION"),
            " health probe"
        ))
        .build()
        .unwrap_or_default()
}

/// Where an `exec` probe runs: the spawn's environment and directory.
#[derive(Debug, Clone)]
pub(super) struct ExecContext {
    /// The spawn's environment, its port included.
    pub(super) env: BTreeMap<String, String>,
    /// The spawn's working directory.
    pub(super) cwd: PathBuf,
    /// The spawn's sandbox, which its `exec` probes enter too.
    pub(super) sandbox: Option<crate::os::sandbox::Sandbox>,
    /// The spawn's user (`uid`, `gid`), which its `exec` probes run as too.
    pub(super) user: Option<(u32, u32)>,
}

/// One spawn's probe: what it runs, when the next is due, the one in flight.
pub(super) struct Prober {
    probe: Probe,
    http: reqwest::Client,
    exec: ExecContext,
    interval: Duration,
    timeout: Duration,
    misses: u32,
    start_period: Duration,
    started: Instant,
    next_at: tokio::time::Instant,
    running: Option<BoxFuture<'static, Result<(), String>>>,
    tally: Probes,
}

impl Prober {
    /// The prober of a spawn started now, running `probe` (expanded for
    /// this spawn) on `health`'s timing.
    pub(super) fn new(
        health: &Health,
        probe: Probe,
        http: reqwest::Client,
        exec: ExecContext,
    ) -> Self {
        Self {
            probe,
            http,
            exec,
            interval: health.interval,
            timeout: health.timeout,
            misses: health.misses,
            start_period: health.start_period,
            started: Instant::now(),
            next_at: tokio::time::Instant::now(),
            running: None,
            tally: Probes::default(),
        }
    }

    /// The next probe's outcome: `Err` says what failed, such as `http 503`.
    /// Cancel-safe: a probe in flight is kept for the next call.
    pub(super) async fn next(&mut self) -> Result<(), String> {
        if self.running.is_none() {
            tokio::time::sleep_until(self.next_at).await;
            let (probe, http, exec) = (self.probe.clone(), self.http.clone(), self.exec.clone());
            self.running = Some(run(probe, http, exec, self.timeout).boxed());
        }
        let outcome = match &mut self.running {
            Some(run) => run.await,
            None => unreachable!("a probe was just started"),
        };
        self.running = None;
        self.next_at = tokio::time::Instant::now() + self.interval;
        outcome
    }

    /// Takes one outcome into the tally.
    pub(super) fn judged(&mut self, passed: bool) -> ProbeVerdict {
        let in_start_period = self.started.elapsed() < self.start_period;
        self.tally.judged(passed, in_start_period, self.misses)
    }

    /// Whether a probe of this spawn has passed.
    pub(super) fn passed(&self) -> bool {
        self.tally.passed()
    }
}

/// Runs `probe` once within `timeout`.
async fn run(
    probe: Probe,
    http: reqwest::Client,
    exec: ExecContext,
    timeout: Duration,
) -> Result<(), String> {
    let kind = probe.kind();
    let attempt = async {
        match probe {
            Probe::Http { url, status, body } => get(&http, &url, status, body.as_deref()).await,
            Probe::Tcp { addr } => connect(&addr).await,
            Probe::Exec { cmd } => exec_probe(&cmd, &exec).await,
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "{kind}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// An HTTP GET: up on a 2xx (or exactly `status`), with `body` in the first
/// [`BODY_LIMIT`] bytes of the answer when one is asked for.
async fn get(
    http: &reqwest::Client,
    url: &str,
    status: Option<u16>,
    body: Option<&str>,
) -> Result<(), String> {
    let mut answer = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("http: {}", innermost(&e)))?;
    let code = answer.status();
    let up = status.map_or(code.is_success(), |want| code.as_u16() == want);
    if !up {
        return Err(format!("http {}", code.as_u16()));
    }
    let Some(want) = body else { return Ok(()) };
    let mut read = Vec::new();
    while read.len() < BODY_LIMIT {
        match answer.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(format!("http: {}", innermost(&e))),
        }
    }
    if String::from_utf8_lossy(&read).contains(want) {
        Ok(())
    } else {
        Err(format!("http {}: the body lacks {want:?}", code.as_u16()))
    }
}

/// A TCP connection to `addr`: up once it is accepted.
async fn connect(addr: &str) -> Result<(), String> {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("tcp {addr}: {}", io_error(&e))),
    }
}

/// The command of an `exec` probe: in the plugin's sandbox and as its
/// user, entered by the shim (which also gives it a session, and so a
/// process group, of its own), or as it is, in a process group of its own.
fn probe_command(
    program: &str,
    args: &[String],
    ctx: &ExecContext,
) -> Result<tokio::process::Command, String> {
    if ctx.sandbox.is_none() && ctx.user.is_none() {
        let mut c = tokio::process::Command::new(program);
        let plain = ctx
            .env
            .iter()
            .filter(|(k, _)| !crate::os::spawn::reserved(k));
        c.args(args).process_group(0).envs(plain);
        return Ok(c);
    }
    let shim = crate::os::spawn::exec_shim()
        .ok_or("exec: a probe in a sandbox or as a user needs the corral-exec shim")?;
    let mut c = tokio::process::Command::new(shim);
    crate::os::spawn::shim_env(&mut c, &ctx.env, ctx.sandbox.as_ref(), ctx.user);
    c.arg(std::process::id().to_string())
        .args(["0", "0", program])
        .args(args);
    Ok(c)
}

/// Runs `cmd` in the spawn's environment and directory, in a process group
/// of its own: up on exit code 0. Dropped before it ends (at its timeout,
/// or with the spawn), its whole group is killed.
async fn exec_probe(cmd: &[String], ctx: &ExecContext) -> Result<(), String> {
    let (program, args) = cmd.split_first().ok_or("exec: no program")?;
    let mut command = probe_command(program, args, ctx)?;
    command
        .current_dir(&ctx.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = reaper::spawning(|| {
        let child = command.spawn()?;
        let pid = child.id();
        Ok((child, pid))
    })
    .map_err(|e| format!("exec {program}: {}", io_error(&e)))?;
    let mut stderr = child.stderr.take();
    let mut group = Group {
        pid: child.id().unwrap_or(0),
        child: Some(child),
        reaped: false,
    };
    let mut said = Vec::new();
    if let Some(err) = stderr.as_mut() {
        // Read it all (a full pipe would block the probe) and keep the start.
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = err.read(&mut buf).await {
            let room = DETAIL_LIMIT.saturating_sub(said.len());
            said.extend_from_slice(&buf[..n.min(room)]);
        }
    }
    let status = group
        .wait()
        .await
        .map_err(|e| format!("exec {program}: {}", io_error(&e)))?;
    if status.success() {
        return Ok(());
    }
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exit({code})"),
        (None, Some(sig)) => format!(
            "signal({})",
            Signal::try_from(sig).map_or("?", Signal::as_str)
        ),
        (None, None) => "ended".into(),
    };
    let said = String::from_utf8_lossy(&said);
    let said = said.lines().next().unwrap_or("").trim();
    if said.is_empty() {
        Err(format!("exec {program}: {how}"))
    } else {
        Err(format!("exec {program}: {how}: {said}"))
    }
}

/// An `exec` probe's process group: killed when the probe is done with it,
/// however it ends, and forgotten by the reaper's register only once its
/// leader is reaped (a pid still in the register is tokio's to reap).
struct Group {
    pid: u32,
    child: Option<tokio::process::Child>,
    reaped: bool,
}

impl Group {
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no child"))?;
        let status = child.wait().await;
        self.reaped = status.is_ok();
        status
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 0
        {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let pid = self.pid;
        match (self.reaped, self.child.take()) {
            (false, Some(mut child)) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        let _ = child.wait().await;
                        reaper::release(pid);
                    });
                }
                Err(_) => reaper::release(pid),
            },
            _ => reaper::release(pid),
        }
    }
}

/// An I/O error as people say it: `connection refused`, without the
/// `(os error 111)`.
fn io_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// The innermost cause of an HTTP client error, which names what happened
/// (`connection refused`) where the outer ones name the request.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) => io_error(io),
        None => cause.to_string(),
    }
}
