//! The plugin actor: one tokio task per plugin that owns its child process,
//! its connection and its state machine. Everything else reaches it through
//! a [`PluginHandle`].
//!
//! Life of a spawn: bind the plugin's socket, spawn the process with a fresh
//! secret, wait (at most `handshake_timeout`) for it to connect, authenticate
//! and answer `load`; then `running`, pinged every `heartbeat.interval`.
//! `heartbeat.misses` late or lost answers in a row make it `unhealthy` and
//! it is killed (`hang`). Going over `memory_max` kills it (`memory_cap`); so
//! does breaking the wire protocol (`protocol`). A stop asks it to shut down,
//! then sends SIGTERM to its process group after `stop_timeout`, then SIGKILL
//! after `kill_timeout`. Whoever decides to end a process records the verdict
//! first, so the exit is reported with the real reason, not a bare signal.
//!
//! Calls do not pass through the actor's loop: a caller asks for the live
//! connection and calls the plugin itself, so a slow action never delays
//! heartbeats or status.
//!
//! Restart policies are not decided here yet: an ended process leaves the
//! plugin `exited` (or `failed` when it could not be spawned).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::codec::{self, MAX_FRAME_BYTES};
use corral_proto::{
    ErrorReply, ExitReason, Payload, PluginApiClient, PluginState, PluginStatus, codes,
};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use interprocess::local_socket::tokio::Listener;
use nix::sys::signal::Signal;
use tarpc::client::RpcError;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::Instrument;

use crate::config::{PluginSpec, SupervisorSettings};
use crate::listener::{self, Expected, HandshakeError};
use crate::logs::{LogSink, Stream};
use crate::memory::MemoryProbe;
use crate::spawn;

/// How often RSS is compared with `memory_max`.
const MEMORY_CHECK: Duration = Duration::from_millis(250);
/// How long a plugin may keep running after closing its connection.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Messages a [`PluginHandle`] sends to its actor.
enum Msg {
    Status(oneshot::Sender<PluginStatus>),
    Target(oneshot::Sender<Result<CallTarget, ErrorReply>>),
    Start(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// A live connection to call a plugin through.
#[derive(Clone)]
struct CallTarget {
    client: PluginApiClient,
    call_timeout: Duration,
}

/// The way to reach one plugin's actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PluginHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Msg>,
}

impl PluginHandle {
    /// Starts the plugin's actor; it spawns the process at once if the
    /// plugin is enabled.
    pub fn spawn(spec: PluginSpec, settings: Arc<SupervisorSettings>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(64);
        let name: Arc<str> = spec.name.as_str().into();
        let span = tracing::info_span!("plugin", name = %name);
        let actor = Actor::new(spec, settings, rx);
        let task = tokio::spawn(actor.run().instrument(span));
        (Self { name, tx }, task)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(msg(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The plugin's status row; `None` once the actor has ended.
    pub async fn status(&self) -> Option<PluginStatus> {
        self.ask(Msg::Status).await
    }

    /// Calls one of the plugin's actions, within its `call_timeout`.
    pub async fn call(&self, action: String, payload: Payload) -> Result<Payload, ErrorReply> {
        let target = self.ask(Msg::Target).await.ok_or_else(|| {
            ErrorReply::new(
                codes::SHUTTING_DOWN,
                format!("plugin `{}` is shutting down", self.name),
            )
        })??;
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + target.call_timeout;
        match target.client.handle(ctx, action.clone(), payload).await {
            Ok(reply) => reply,
            Err(RpcError::DeadlineExceeded) => Err(ErrorReply::new(
                codes::TIMEOUT,
                format!(
                    "`{}` did not answer `{action}` within {}",
                    self.name,
                    humantime::format_duration(target.call_timeout)
                ),
            )),
            Err(e) => Err(ErrorReply::new(
                codes::DISCONNECTED,
                format!("lost `{}` before it answered `{action}`: {e}", self.name),
            )),
        }
    }

    /// Starts the plugin if it has no process. Returns once it has been spawned.
    pub async fn start(&self) {
        self.ask(Msg::Start).await;
    }

    /// Stops the plugin gracefully; returns once its process is reaped.
    pub async fn stop(&self) {
        self.ask(Msg::Stop).await;
    }
}

/// The result of the connect task: a plugin that shook hands and loaded.
struct Connected {
    client: PluginApiClient,
    /// Resolves when the connection ends: `Some(detail)` if the plugin broke
    /// the protocol, `None` if it simply closed.
    closed: oneshot::Receiver<Option<String>>,
}

/// The next step of an escalating stop or a pending kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Term,
    Kill,
    DisconnectGrace,
}

struct Actor {
    spec: PluginSpec,
    settings: Arc<SupervisorSettings>,
    mailbox: mpsc::Receiver<Msg>,
    mailbox_open: bool,
    logs: Option<LogSink>,
    probe: MemoryProbe,

    state: PluginState,
    restarts: u32,
    spawns: u32,
    last_exit: Option<ExitReason>,
    running_since: Option<Instant>,
    stop_waiters: Vec<oneshot::Sender<()>>,

    // The current process, when there is one.
    child: Option<Child>,
    pid: Option<u32>,
    verdict: Option<ExitReason>,
    connecting: Option<JoinHandle<Result<Connected, HandshakeError>>>,
    client: Option<PluginApiClient>,
    closed: Option<oneshot::Receiver<Option<String>>>,
    pings: FuturesUnordered<BoxFuture<'static, bool>>,
    ping_seq: u64,
    misses: u32,
    deadline: Option<(tokio::time::Instant, Step)>,
    heartbeat: Interval,
    memory_tick: Option<Interval>,
}

impl Actor {
    fn new(
        spec: PluginSpec,
        settings: Arc<SupervisorSettings>,
        mailbox: mpsc::Receiver<Msg>,
    ) -> Self {
        let mut heartbeat = tokio::time::interval(spec.heartbeat.interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let memory_tick = spec.memory_max.map(|_| {
            let mut t = tokio::time::interval(MEMORY_CHECK);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        Self {
            spec,
            settings,
            mailbox,
            mailbox_open: true,
            logs: None,
            probe: MemoryProbe::default(),
            state: PluginState::Stopped,
            restarts: 0,
            spawns: 0,
            last_exit: None,
            running_since: None,
            stop_waiters: Vec::new(),
            child: None,
            pid: None,
            verdict: None,
            connecting: None,
            client: None,
            closed: None,
            pings: FuturesUnordered::new(),
            ping_seq: 0,
            misses: 0,
            deadline: None,
            heartbeat,
            memory_tick,
        }
    }

    async fn run(mut self) {
        if self.spec.enabled {
            self.start_process();
        }
        loop {
            if !self.mailbox_open && self.child.is_none() {
                break;
            }
            tokio::select! {
                msg = self.mailbox.recv(), if self.mailbox_open => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => {
                        self.mailbox_open = false;
                        self.begin_stop();
                    }
                },
                status = wait_child(&mut self.child) => self.on_exit(status),
                joined = join(&mut self.connecting) => {
                    self.connecting = None;
                    let result = joined.unwrap_or_else(|e| Err(HandshakeError(format!("connect task failed: {e}"))));
                    self.on_connected(result);
                }
                cause = closed(&mut self.closed) => {
                    self.closed = None;
                    self.on_disconnect(cause);
                }
                _ = self.heartbeat.tick() => self.send_ping(),
                Some(answered) = self.pings.next() => self.on_ping(answered),
                _ = tick(&mut self.memory_tick) => self.check_memory(),
                _ = until(self.deadline) => self.on_deadline(),
            }
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Status(reply) => {
                let status = self.status();
                let _ = reply.send(status);
            }
            Msg::Target(reply) => {
                let target = match (&self.client, self.state) {
                    (Some(client), PluginState::Running) => Ok(CallTarget {
                        client: client.clone(),
                        call_timeout: self.spec.call_timeout,
                    }),
                    _ => Err(ErrorReply::new(
                        codes::NOT_RUNNING,
                        format!("plugin `{}` is {}, not running", self.spec.name, self.state),
                    )),
                };
                let _ = reply.send(target);
            }
            Msg::Start(reply) => {
                if self.child.is_none() {
                    self.start_process();
                }
                let _ = reply.send(());
            }
            Msg::Stop(reply) => {
                if self.child.is_some() {
                    self.stop_waiters.push(reply);
                    self.begin_stop();
                } else {
                    self.set_state(PluginState::Stopped);
                    let _ = reply.send(());
                }
            }
        }
    }

    fn status(&mut self) -> PluginStatus {
        let rss_bytes = self.pid.map_or(0, |pid| self.probe.rss(pid));
        PluginStatus {
            name: self.spec.name.clone(),
            state: self.state,
            pid: self.pid,
            restarts: self.restarts,
            uptime_ms: self.running_since.map_or(0, |t| {
                u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
            }),
            rss_bytes,
            memory_max_bytes: self.spec.memory_max,
            last_exit: self.last_exit.clone(),
            waiting_for: None,
            codec: self.spec.codec.to_string(),
        }
    }

    fn set_state(&mut self, state: PluginState) {
        if self.state != state {
            tracing::debug!(from = %self.state, to = %state, "state");
            self.state = state;
        }
    }

    fn start_process(&mut self) {
        if self.spawns > 0 {
            self.restarts += 1;
        }
        self.spawns += 1;
        self.verdict = None;
        match self.try_spawn() {
            Ok(()) => self.set_state(PluginState::Starting),
            Err(reason) => {
                tracing::error!("cannot start: {reason}");
                self.last_exit = Some(reason);
                self.set_state(PluginState::Failed);
            }
        }
    }

    fn try_spawn(&mut self) -> Result<(), ExitReason> {
        let spawn_err = |error: String| ExitReason::Spawn { error };
        if self.logs.is_none() {
            let (sink, _) =
                LogSink::open(&self.settings.log_dir, &self.spec.name).map_err(|e| {
                    spawn_err(format!(
                        "cannot open its log file in {}: {e}",
                        self.settings.log_dir.display()
                    ))
                })?;
            self.logs = Some(sink);
        }
        let socket = self.settings.plugin_socket(&self.spec.name);
        let listener = listener::bind(&socket)
            .map_err(|e| spawn_err(format!("cannot bind {}: {e}", socket.display())))?;
        let secret = spawn::new_secret()
            .map_err(|e| spawn_err(format!("no randomness for its secret: {e}")))?;
        let mut child = spawn::spawn(&self.spec, &socket, &secret, MAX_FRAME_BYTES)
            .map_err(|e| spawn_err(format!("{}: {e}", self.spec.cmd[0])))?;
        let pid = child
            .id()
            .ok_or_else(|| spawn_err("exited before it could be tracked".into()))?;
        if let Some(logs) = &self.logs {
            if let Some(out) = child.stdout.take() {
                logs.capture(Stream::Stdout, out);
            }
            if let Some(err) = child.stderr.take() {
                logs.capture(Stream::Stderr, err);
            }
        }
        tracing::info!(pid, "spawned");
        self.connecting = Some(tokio::spawn(connect(
            listener,
            self.spec.clone(),
            secret,
            pid,
        )));
        self.child = Some(child);
        self.pid = Some(pid);
        self.deadline = None;
        Ok(())
    }

    fn on_connected(&mut self, result: Result<Connected, HandshakeError>) {
        if self.state != PluginState::Starting {
            return;
        }
        match result {
            Ok(conn) => {
                self.client = Some(conn.client);
                self.closed = Some(conn.closed);
                self.misses = 0;
                self.heartbeat.reset();
                self.running_since = Some(Instant::now());
                tracing::info!(pid = self.pid, "running");
                self.set_state(PluginState::Running);
            }
            Err(HandshakeError(detail)) => {
                tracing::warn!("handshake failed: {detail}");
                self.kill(ExitReason::Handshake { detail });
            }
        }
    }

    fn on_disconnect(&mut self, cause: Option<String>) {
        self.client = None;
        if self.state == PluginState::Stopping || self.child.is_none() {
            return;
        }
        match cause {
            Some(detail) => {
                tracing::warn!("broke the protocol: {detail}");
                self.kill(ExitReason::Protocol { detail });
            }
            None if self.deadline.is_none() => {
                self.deadline = Some((
                    tokio::time::Instant::now() + DISCONNECT_GRACE,
                    Step::DisconnectGrace,
                ));
            }
            None => {}
        }
    }

    fn send_ping(&mut self) {
        let (Some(client), PluginState::Running) = (&self.client, self.state) else {
            return;
        };
        self.ping_seq += 1;
        let (client, seq, timeout) = (client.clone(), self.ping_seq, self.spec.heartbeat.timeout);
        self.pings.push(
            async move {
                let mut ctx = tarpc::context::current();
                ctx.deadline = Instant::now() + timeout;
                matches!(tokio::time::timeout(timeout, client.ping(ctx, seq)).await, Ok(Ok(s)) if s == seq)
            }
            .boxed(),
        );
    }

    fn on_ping(&mut self, answered: bool) {
        if self.state != PluginState::Running {
            return;
        }
        if answered {
            self.misses = 0;
            return;
        }
        self.misses += 1;
        tracing::warn!(
            misses = self.misses,
            of = self.spec.heartbeat.misses,
            "missed a heartbeat"
        );
        if self.misses >= self.spec.heartbeat.misses {
            self.set_state(PluginState::Unhealthy);
            self.kill(ExitReason::Hang);
        }
    }

    fn check_memory(&mut self) {
        let (Some(max), Some(pid)) = (self.spec.memory_max, self.pid) else {
            return;
        };
        if self.verdict.is_some() {
            return;
        }
        let rss = self.probe.rss(pid);
        if rss > max {
            tracing::warn!(rss, max, "over its memory cap");
            self.kill(ExitReason::MemoryCap);
        }
    }

    fn on_deadline(&mut self) {
        let Some((_, step)) = self.deadline.take() else {
            return;
        };
        let Some(pgid) = self.pid else { return };
        match step {
            Step::Term => {
                tracing::warn!(
                    "did not stop within {:?}; sending SIGTERM",
                    self.spec.stop_timeout
                );
                spawn::signal_group(pgid, Signal::SIGTERM);
                self.deadline = Some((
                    tokio::time::Instant::now() + self.spec.kill_timeout,
                    Step::Kill,
                ));
            }
            Step::Kill => {
                tracing::warn!(
                    "still alive {:?} after SIGTERM; sending SIGKILL",
                    self.spec.kill_timeout
                );
                spawn::signal_group(pgid, Signal::SIGKILL);
            }
            Step::DisconnectGrace => self.kill(ExitReason::Protocol {
                detail: "closed its connection to the supervisor but kept running".into(),
            }),
        }
    }

    /// Ends the process now with SIGKILL to its group, reporting `reason`.
    fn kill(&mut self, reason: ExitReason) {
        self.verdict.get_or_insert(reason);
        self.client = None;
        self.pings = FuturesUnordered::new();
        if let Some(pgid) = self.pid {
            spawn::signal_group(pgid, Signal::SIGKILL);
        }
    }

    /// Asks the process to shut down, escalating to signals on deadlines.
    fn begin_stop(&mut self) {
        if self.child.is_none() || self.state == PluginState::Stopping {
            return;
        }
        self.set_state(PluginState::Stopping);
        self.verdict.get_or_insert(ExitReason::Requested);
        self.pings = FuturesUnordered::new();
        let now = tokio::time::Instant::now();
        match self.client.take() {
            Some(client) => {
                let timeout = self.spec.stop_timeout;
                tokio::spawn(async move {
                    let mut ctx = tarpc::context::current();
                    ctx.deadline = Instant::now() + timeout;
                    let _ = client.shutdown(ctx).await;
                    // Dropping the last client closes the connection, which
                    // tells the plugin to exit.
                });
                self.deadline = Some((now + self.spec.stop_timeout, Step::Term));
            }
            None => {
                if let Some(connecting) = self.connecting.take() {
                    connecting.abort();
                }
                if let Some(pgid) = self.pid {
                    spawn::signal_group(pgid, Signal::SIGTERM);
                }
                self.deadline = Some((now + self.spec.kill_timeout, Step::Kill));
            }
        }
    }

    fn on_exit(&mut self, status: std::io::Result<ExitStatus>) {
        self.child = None;
        let pid = self.pid.take();
        if let Some(pgid) = pid {
            // Children it left behind in its group go with it.
            spawn::signal_group(pgid, Signal::SIGKILL);
        }
        if let Some(connecting) = self.connecting.take() {
            connecting.abort();
        }
        self.client = None;
        self.closed = None;
        self.pings = FuturesUnordered::new();
        self.deadline = None;
        self.running_since = None;
        let reason = self.verdict.take().unwrap_or_else(|| match status {
            Ok(status) => exit_reason(status),
            Err(e) => ExitReason::Signal {
                signal: format!("unknown (wait failed: {e})"),
            },
        });
        tracing::info!(pid, reason = %reason, "exited");
        self.last_exit = Some(reason);
        if self.state == PluginState::Stopping {
            self.set_state(PluginState::Stopped);
        } else {
            self.set_state(PluginState::Exited);
        }
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

fn exit_reason(status: ExitStatus) -> ExitReason {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Exit { code },
        (None, Some(sig)) => ExitReason::Signal {
            signal: Signal::try_from(sig)
                .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string()),
        },
        (None, None) => ExitReason::Signal {
            signal: "unknown".into(),
        },
    }
}

/// Waits for the plugin to connect, authenticates it and calls `load`, all
/// within its handshake timeout.
async fn connect(
    listener: Listener,
    spec: PluginSpec,
    secret: String,
    pgid: u32,
) -> Result<Connected, HandshakeError> {
    let timeout = spec.handshake_timeout;
    let attempt = async {
        let expected = Expected {
            name: &spec.name,
            secret: &secret,
            pgid,
            codec: spec.codec,
            max_frame: MAX_FRAME_BYTES,
        };
        let framed = listener::accept_plugin(&listener, &expected).await?;
        drop(listener);
        let transport = codec::into_transport(framed, spec.codec);
        let tarpc::client::NewClient { client, dispatch } =
            PluginApiClient::new(tarpc::client::Config::default(), transport);
        let (tx, closed) = oneshot::channel();
        tokio::spawn(async move {
            let cause = dispatch.await.err().and_then(|e| protocol_violation(&e));
            let _ = tx.send(cause);
        });
        let config = Payload::from_json(&spec.config)
            .map_err(|e| HandshakeError(format!("config does not encode: {e}")))?;
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        client
            .load(ctx, config)
            .await
            .map_err(|e| HandshakeError(format!("no answer to load: {e}")))?
            .map_err(|e| HandshakeError(format!("on_load failed: {e}")))?;
        Ok(Connected { client, closed })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(HandshakeError(format!(
                "no completed handshake within {}",
                humantime::format_duration(timeout)
            )))
        })
}

/// Names a protocol violation in a broken connection, if it was one (as
/// opposed to the peer simply going away).
fn protocol_violation(err: &tarpc::ChannelError<std::io::Error>) -> Option<String> {
    let tarpc::ChannelError::Read(e) = err else {
        return None;
    };
    let e: &std::io::Error = e;
    if codec::is_frame_too_big(e) {
        Some(format!(
            "sent a frame larger than the {MAX_FRAME_BYTES} byte maximum"
        ))
    } else if codec::is_malformed(e) {
        Some(format!("sent a malformed frame: {e}"))
    } else {
        None
    }
}

async fn wait_child(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn join<T>(handle: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match handle {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn closed(rx: &mut Option<oneshot::Receiver<Option<String>>>) -> Option<String> {
    match rx {
        Some(rx) => rx.await.unwrap_or(None),
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn until(deadline: Option<(tokio::time::Instant, Step)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
