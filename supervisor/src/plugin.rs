//! The plugin actor: one tokio task per plugin that owns its child process,
//! its connection and its state machine. Everything else reaches it through
//! a [`PluginHandle`].
//!
//! Life of a spawn: bind the plugin's socket, spawn the process with a fresh
//! secret, wait (at most `handshake_timeout`) for it to connect, authenticate
//! and answer `load`; then `running`, pinged every `heartbeat.interval`.
//! `heartbeat.misses` late or lost answers in a row make it `unhealthy` and
//! it is killed (`hang`). Its process tree's RSS is sampled every
//! `memory_check_interval`: over `memory_max` it is killed (`memory_cap`),
//! and crossing `memory_high` is logged and noted in its history once per
//! crossing. Where a [cgroup](crate::cgroup) can be made, the kernel enforces
//! the same caps (an OOM kill in it is reported as `memory_cap` too) and
//! `pids_max`. Breaking the wire protocol, on either of its connections,
//! kills it too (`protocol`), and so
//! does answering a `deliver` with an error; a `deliver` not answered within
//! `call_timeout` makes it `unhealthy` and it is killed (`hang`), so a
//! subscriber's deliveries never stall silently. A stop asks it to shut down,
//! then sends SIGTERM to its process group after `stop_timeout`, then SIGKILL
//! after `kill_timeout`. Whoever decides to end a process records the verdict
//! first, so the exit is reported with the real reason, not a bare signal.
//!
//! Calls do not pass through the actor's loop: a caller asks for the live
//! connection and calls the plugin itself, so a slow action never delays
//! heartbeats or status.
//!
//! When a process ends, the plugin's [restart policy](crate::restart)
//! decides: stay `exited`, go to `backoff` for the computed delay, or give up
//! (`failed`). A plugin about to (re)start goes to `waiting`; the root
//! supervisor starts it once every plugin it requires is running. Every
//! transition is kept (the last [`HISTORY`]) and reported to the supervisor
//! as an [`Event`].

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::codec::MAX_FRAME_BYTES;
use corral_proto::{
    Enforcement, ErrorReply, ExitReason, Payload, PluginApiClient, PluginInfo, PluginState,
    PluginStatus, Transition, codes,
};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use interprocess::local_socket::tokio::Listener;
use nix::sys::signal::Signal;
use tarpc::client::RpcError;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::Instrument;

use crate::bus::{BusHandle, DeliveryFailure};
use crate::cgroup::{CgroupLimits, Cgroups, LimitsMode, PluginCgroup};
use crate::config::{PluginSpec, SupervisorSettings};
use crate::listener::{self, Expected, HandshakeError, Want};
use crate::logs::{LogSink, Stream};
use crate::memory::MemoryProbe;
use crate::rate::Limiter;
use crate::restart::{Decision, RestartTracker, Rules};
use crate::spawn;

/// Transitions kept per plugin for `corral inspect`.
pub const HISTORY: usize = 100;
/// How long a plugin may keep running after closing its connection.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Messages a [`PluginHandle`] sends to its actor.
enum Msg {
    Status(oneshot::Sender<PluginStatus>),
    Info(oneshot::Sender<PluginInfo>),
    /// Spawn now (sent by the supervisor to a `waiting` plugin).
    Start(oneshot::Sender<()>),
    /// Go to `waiting` if down; `reset` clears the restart count.
    Wait {
        reset: bool,
        note: String,
    },
    Stop(oneshot::Sender<()>),
    /// Stop, then go to `waiting`.
    Restart {
        note: String,
        reply: oneshot::Sender<()>,
    },
    /// Take new settings (reload).
    Update {
        spec: Box<PluginSpec>,
        reply: oneshot::Sender<Applied>,
    },
}

/// What a plugin actor did with new settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing changed.
    Unchanged,
    /// Settings that need no restart were applied in place.
    Updated,
    /// Only `config` changed and the plugin runs: hand it over with
    /// [`PluginHandle::reconfigure`].
    Reconfigure,
    /// Process settings changed: the process is being restarted.
    Restarted,
    /// Disabled: stopped.
    Stopped,
    /// Enabled: now waiting to start.
    Started,
}

/// What a plugin actor tells the root supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// It entered a state.
    State {
        /// The plugin.
        name: Arc<str>,
        /// The new state.
        state: PluginState,
    },
    /// Its process ended and its policy restarts it (strategies act on this).
    Restarting {
        /// The plugin.
        name: Arc<str>,
    },
}

/// A live connection to call a plugin through.
#[derive(Clone, Debug)]
struct CallTarget {
    client: PluginApiClient,
    call_timeout: Duration,
    limiter: Option<Arc<Limiter>>,
}

/// What every plugin actor gets from the supervisor that runs it.
#[derive(Clone, Debug)]
pub struct Host {
    /// The supervisor's settings.
    pub settings: Arc<SupervisorSettings>,
    /// The cgroup tree plugins are capped in, if any.
    pub cgroups: Arc<Cgroups>,
    /// The event bus.
    pub bus: BusHandle,
}

/// The way to reach one plugin's actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PluginHandle {
    name: Arc<str>,
    requires: Arc<[String]>,
    tx: mpsc::Sender<Msg>,
    target: watch::Receiver<Option<CallTarget>>,
}

impl PluginHandle {
    /// Starts the plugin's actor, in `waiting` if the plugin is enabled
    /// (the supervisor starts it) or `stopped` if not. State changes are
    /// reported on `events`.
    pub fn spawn(
        spec: PluginSpec,
        host: Host,
        events: mpsc::UnboundedSender<Event>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(64);
        let name: Arc<str> = spec.name.as_str().into();
        let requires: Arc<[String]> = spec.requires.clone().into();
        let span = tracing::info_span!("plugin", name = %name);
        let (target_tx, target) = watch::channel(None);
        let actor = Actor::new(spec, host, rx, events, Arc::clone(&name), target_tx);
        let task = tokio::spawn(actor.run().instrument(span));
        (
            Self {
                name,
                requires,
                tx,
                target,
            },
            task,
        )
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugins it requires.
    pub fn requires(&self) -> &[String] {
        &self.requires
    }

    /// Status, settings and history.
    pub async fn info(&self) -> Option<PluginInfo> {
        self.ask(Msg::Info).await
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
        // The actor publishes its live connection; calls take it from there
        // without a round trip through the actor's mailbox.
        let target = self.target.borrow().clone();
        let Some(target) = target else {
            let state = self
                .status()
                .await
                .map_or("shutting down".into(), |s| s.state.to_string());
            return Err(ErrorReply::new(
                codes::NOT_RUNNING,
                format!("plugin `{}` is {state}, not running", self.name),
            ));
        };
        if let Some(limiter) = &target.limiter
            && let Err(wait) = limiter.check()
        {
            let limit = limiter.limit();
            return Err(ErrorReply::new(
                codes::RATE_LIMITED,
                format!(
                    "`{}` takes at most {} calls per {}; try again in {}",
                    self.name,
                    limit.calls,
                    humantime::format_duration(limit.per),
                    humantime::format_duration(round_ms(wait).max(Duration::from_millis(1)))
                ),
            ));
        }
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

    /// Spawns the plugin now if it is `waiting` (the supervisor's call, once
    /// what it requires runs). Returns once it has been spawned.
    pub async fn start(&self) {
        self.ask(Msg::Start).await;
    }

    /// Puts a plugin that is down into `waiting`, so the supervisor starts it;
    /// `reset` clears its restart count (as `corral start` does).
    pub async fn wait(&self, reset: bool, note: impl Into<String>) {
        let _ = self
            .tx
            .send(Msg::Wait {
                reset,
                note: note.into(),
            })
            .await;
    }

    /// Stops the plugin gracefully; returns once its process is reaped.
    pub async fn stop(&self) {
        self.ask(Msg::Stop).await;
    }

    /// Hands the actor new settings and says what it did with them.
    pub async fn update(&self, spec: PluginSpec) -> Applied {
        self.ask(|reply| Msg::Update {
            spec: Box::new(spec),
            reply,
        })
        .await
        .unwrap_or(Applied::Unchanged)
    }

    /// Gives a running plugin a new `config` through its `on_reload` hook; if
    /// that fails, restarts it so the config applies through `on_load`.
    pub async fn reconfigure(&self, config: serde_json::Value) {
        let target = self.target.borrow().clone();
        let outcome = match (target, Payload::from_json(&config)) {
            (Some(target), Ok(payload)) => {
                let mut ctx = tarpc::context::current();
                ctx.deadline = Instant::now() + target.call_timeout;
                match target.client.reload(ctx, payload).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            (None, _) => Ok(()), // not running: it loads the new config when it starts
            (_, Err(e)) => Err(e.to_string()),
        };
        if let Err(why) = outcome {
            tracing::warn!(plugin = %self.name, "on_reload failed ({why}); restarting it instead");
            self.restart(format!("on_reload failed: {why}")).await;
        }
    }

    /// Stops the plugin, then puts it in `waiting`; returns once stopped.
    pub async fn restart(&self, note: impl Into<String>) {
        let note = note.into();
        self.ask(|reply| Msg::Restart { note, reply }).await;
    }
}

/// The result of the connect task: a plugin that shook hands and loaded.
struct Connected {
    client: PluginApiClient,
    /// Resolves when the connection ends: `Some(detail)` if the plugin broke
    /// the protocol, `None` if it simply closed.
    closed: oneshot::Receiver<Option<String>>,
    /// Resolves with what was wrong if the plugin breaks the protocol on its
    /// bus connection (when it opened one).
    bus_broken: Option<oneshot::Receiver<String>>,
}

/// The next step of an escalating stop or a pending kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Term,
    Kill,
    DisconnectGrace,
    /// The backoff delay is over.
    Restart,
}

struct Actor {
    name: Arc<str>,
    /// The connection callers use; `Some` exactly while `running`.
    target: watch::Sender<Option<CallTarget>>,
    events: mpsc::UnboundedSender<Event>,
    tracker: RestartTracker,
    history: VecDeque<Transition>,
    restart_requested: Option<String>,
    spec: PluginSpec,
    host: Host,
    mailbox: mpsc::Receiver<Msg>,
    mailbox_open: bool,
    logs: Option<LogSink>,
    probe: MemoryProbe,
    /// The rate limiter callers share, when `rate_limit` is set.
    limiter: Option<Arc<Limiter>>,
    /// How the current (or last) spawn's limits are enforced.
    enforcement: Enforcement,
    /// The current spawn's cgroup.
    cgroup: Option<PluginCgroup>,
    /// Whether the last sample was above `memory_high`.
    above_high: bool,

    state: PluginState,
    restarts: u32,
    spawns: u32,
    last_exit: Option<ExitReason>,
    running_since: Option<Instant>,
    stop_waiters: Vec<oneshot::Sender<()>>,

    // The current process, when there is one.
    child: Option<Child>,
    pid: Option<u32>,
    /// The pid of the process that just ended, for the events that report it.
    exited_pid: Option<u32>,
    verdict: Option<ExitReason>,
    connecting: Option<JoinHandle<Result<Connected, HandshakeError>>>,
    client: Option<PluginApiClient>,
    closed: Option<oneshot::Receiver<Option<String>>>,
    bus_broken: Option<oneshot::Receiver<String>>,
    /// Failed `deliver` calls of the current spawn, reported by the bus.
    delivery_failures: Option<mpsc::UnboundedReceiver<DeliveryFailure>>,
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
        host: Host,
        mailbox: mpsc::Receiver<Msg>,
        events: mpsc::UnboundedSender<Event>,
        name: Arc<str>,
        target: watch::Sender<Option<CallTarget>>,
    ) -> Self {
        let mut heartbeat = tokio::time::interval(spec.heartbeat.interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let memory_tick = memory_tick(&spec);
        let limiter = spec.rate_limit.map(|l| Arc::new(Limiter::new(l)));
        let enforcement = if has_cgroup_limit(&spec) {
            host.cgroups.enforcement(spec.limits)
        } else {
            Enforcement::Sampling
        };
        Self {
            name,
            target,
            events,
            tracker: RestartTracker::default(),
            history: VecDeque::new(),
            restart_requested: None,
            spec,
            host,
            mailbox,
            mailbox_open: true,
            logs: None,
            probe: MemoryProbe::default(),
            limiter,
            enforcement,
            cgroup: None,
            above_high: false,
            state: PluginState::Stopped,
            restarts: 0,
            spawns: 0,
            last_exit: None,
            running_since: None,
            stop_waiters: Vec::new(),
            child: None,
            pid: None,
            exited_pid: None,
            verdict: None,
            connecting: None,
            client: None,
            closed: None,
            bus_broken: None,
            delivery_failures: None,
            pings: FuturesUnordered::new(),
            ping_seq: 0,
            misses: 0,
            deadline: None,
            heartbeat,
            memory_tick,
        }
    }

    async fn run(mut self) {
        self.host
            .bus
            .register(Arc::clone(&self.name), self.spec.bus.clone());
        if self.spec.enabled {
            self.transition(PluginState::Waiting, None, None);
        } else {
            self.transition(PluginState::Stopped, None, Some("not enabled".into()));
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
                broken = bus_broken(&mut self.bus_broken) => {
                    self.bus_broken = None;
                    if let Some(detail) = broken {
                        self.on_bus_broken(detail);
                    }
                }
                failure = next_failure(&mut self.delivery_failures) => match failure {
                    Some(failure) => self.on_delivery_failed(failure),
                    None => self.delivery_failures = None,
                },
                _ = self.heartbeat.tick() => self.send_ping(),
                Some(answered) = self.pings.next() => self.on_ping(answered),
                _ = tick(&mut self.memory_tick) => self.check_memory(),
                _ = until(self.deadline) => self.on_deadline(),
            }
        }
        self.host.bus.unregister(Arc::clone(&self.name));
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Status(reply) => {
                let status = self.status();
                let _ = reply.send(status);
            }
            Msg::Info(reply) => {
                let info = PluginInfo {
                    status: self.status(),
                    settings: Payload::from_json(&settings_json(
                        &self.spec,
                        &self
                            .host
                            .settings
                            .log_dir
                            .join(format!("{}.log", self.spec.name)),
                        self.cgroup.as_ref().map(PluginCgroup::paths),
                    ))
                    .unwrap_or_default(),
                    history: self.history.iter().cloned().collect(),
                    bus: Default::default(),
                };
                let _ = reply.send(info);
            }
            Msg::Start(reply) => {
                if self.child.is_none() && self.state == PluginState::Waiting {
                    self.start_process();
                }
                let _ = reply.send(());
            }
            Msg::Wait { reset, note } => {
                if reset {
                    self.tracker.reset();
                }
                if self.child.is_none() {
                    self.deadline = None;
                    self.transition(PluginState::Waiting, None, Some(note));
                }
            }
            Msg::Stop(reply) => {
                self.restart_requested = None;
                if self.child.is_some() {
                    self.stop_waiters.push(reply);
                    self.begin_stop();
                } else {
                    self.deadline = None;
                    self.transition(PluginState::Stopped, None, Some("stop requested".into()));
                    let _ = reply.send(());
                }
            }
            Msg::Update { spec, reply } => {
                let applied = self.update(*spec);
                self.host
                    .bus
                    .register(Arc::clone(&self.name), self.spec.bus.clone());
                let _ = reply.send(applied);
            }
            Msg::Restart { note, reply } => {
                if self.child.is_some() {
                    self.restart_requested = Some(note);
                    self.stop_waiters.push(reply);
                    self.begin_stop();
                } else {
                    self.deadline = None;
                    self.transition(PluginState::Waiting, None, Some(note));
                    let _ = reply.send(());
                }
            }
        }
    }

    fn status(&mut self) -> PluginStatus {
        let rss_bytes = self.pid.map_or(0, |pid| self.probe.tree_rss(pid));
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
            memory_high_bytes: self.spec.memory_high,
            limits: self.enforcement,
            last_exit: self.last_exit.clone(),
            waiting_for: None,
            backoff_ms: match (self.state, self.deadline) {
                (PluginState::Backoff, Some((at, Step::Restart))) => Some(
                    u64::try_from(
                        at.saturating_duration_since(tokio::time::Instant::now())
                            .as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                ),
                _ => None,
            },
            codec: self.spec.codec.to_string(),
        }
    }

    fn set_state(&mut self, state: PluginState) {
        self.transition(state, None, None);
    }

    /// Enters `to`, recording why in the history and telling the supervisor.
    fn transition(&mut self, to: PluginState, reason: Option<ExitReason>, note: Option<String>) {
        let from = self.state;
        if from == to && reason.is_none() && note.is_none() {
            return;
        }
        tracing::debug!(%from, %to, note = note.as_deref().unwrap_or(""), "state");
        self.state = to;
        let target = match (&self.client, to) {
            (Some(client), PluginState::Running) => Some(CallTarget {
                client: client.clone(),
                call_timeout: self.spec.call_timeout,
                limiter: self.limiter.clone(),
            }),
            _ => None,
        };
        match (&target, from == PluginState::Running) {
            (Some(t), _) => {
                let (failures, failed) = mpsc::unbounded_channel();
                self.delivery_failures = Some(failed);
                self.host.bus.attach(
                    Arc::clone(&self.name),
                    t.client.clone(),
                    t.call_timeout,
                    failures,
                );
            }
            (None, true) => self.host.bus.detach(Arc::clone(&self.name)),
            (None, false) => {}
        }
        self.target.send_replace(target);
        self.publish_lifecycle(from, to, reason.as_ref());
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition {
            at_unix_ms: unix_ms(),
            from,
            to,
            // An exit is about the process that just ended.
            pid: self.pid.or(match reason {
                Some(ExitReason::Spawn { .. }) | None => None,
                Some(_) => self.exited_pid,
            }),
            reason,
            note,
        });
        let _ = self.events.send(Event::State {
            name: Arc::clone(&self.name),
            state: to,
        });
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
                self.last_exit = Some(reason.clone());
                self.transition(PluginState::Failed, Some(reason), None);
            }
        }
    }

    fn try_spawn(&mut self) -> Result<(), ExitReason> {
        let spawn_err = |error: String| ExitReason::Spawn { error };
        if self.logs.is_none() {
            let (sink, _) = LogSink::open(
                &self.host.settings.log_dir,
                &self.spec.name,
                self.spec.log_max_size,
                self.spec.log_keep,
            )
            .map_err(|e| {
                spawn_err(format!(
                    "cannot open its log file in {}: {e}",
                    self.host.settings.log_dir.display()
                ))
            })?;
            self.logs = Some(sink);
        }
        let socket = self.host.settings.plugin_socket(&self.spec.name);
        let listener = listener::bind(&socket)
            .map_err(|e| spawn_err(format!("cannot bind {}: {e}", socket.display())))?;
        let secret = spawn::new_secret()
            .map_err(|e| spawn_err(format!("no randomness for its secret: {e}")))?;
        self.cgroup = self.make_cgroup();
        let spawned = spawn::spawn(
            &self.spec,
            &socket,
            &secret,
            MAX_FRAME_BYTES,
            self.cgroup.as_ref(),
        );
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                self.release_cgroup();
                return Err(spawn_err(format!("{}: {e}", self.spec.cmd[0])));
            }
        };
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
            self.host.bus.clone(),
        )));
        self.child = Some(child);
        self.pid = Some(pid);
        self.exited_pid = None;
        self.deadline = None;
        Ok(())
    }

    /// The cgroup of the spawn about to start: only when the plugin has a
    /// limit for it to hold and `limits` is not `sampling`. A cgroup that
    /// cannot be made leaves this spawn to sampling, with a warning.
    fn make_cgroup(&mut self) -> Option<PluginCgroup> {
        let spec = &self.spec;
        self.enforcement = Enforcement::Sampling;
        if !has_cgroup_limit(spec) || spec.limits == LimitsMode::Sampling {
            return None;
        }
        if spec.pids_max.is_some() && !self.host.cgroups.has_pids() {
            tracing::warn!("pids_max is not enforced: no writable pids cgroup controller");
        }
        let limits = CgroupLimits {
            memory_max: spec.memory_max,
            memory_high: spec.memory_high,
            pids_max: spec.pids_max,
        };
        match self.host.cgroups.create(&spec.name, self.spawns, &limits) {
            Ok(cgroup) => {
                if let Some(c) = &cgroup {
                    self.enforcement = c.enforcement();
                }
                cgroup
            }
            Err(e) => {
                tracing::warn!("no cgroup for this spawn, sampling only: {e}");
                None
            }
        }
    }

    /// Removes the spawn's cgroup in the background (its processes are dead
    /// or being killed).
    fn release_cgroup(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            tokio::spawn(cgroup.remove());
        }
    }

    fn on_connected(&mut self, result: Result<Connected, HandshakeError>) {
        if self.state != PluginState::Starting {
            return;
        }
        match result {
            Ok(conn) => {
                self.client = Some(conn.client);
                self.closed = Some(conn.closed);
                self.bus_broken = conn.bus_broken;
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
        self.drop_client();
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

    /// The plugin broke the protocol on its bus connection, which is closed.
    fn on_bus_broken(&mut self, detail: String) {
        if self.state == PluginState::Stopping || self.child.is_none() {
            return;
        }
        let detail = format!("bus connection: {detail}");
        tracing::warn!("broke the protocol: {detail}");
        self.kill(ExitReason::Protocol { detail });
    }

    fn send_ping(&mut self) {
        let (Some(client), PluginState::Running) = (&self.client, self.state) else {
            return;
        };
        self.ping_seq += 1;
        let (client, seq, timeout) = (client.clone(), self.ping_seq, self.spec.heartbeat.timeout);
        self.pings.push(
            async move {
                // The client enforces the deadline itself (DeadlineExceeded).
                let mut ctx = tarpc::context::current();
                ctx.deadline = Instant::now() + timeout;
                matches!(client.ping(ctx, seq).await, Ok(s) if s == seq)
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

    /// A `deliver` call failed for the plugin's fault: it is killed, so its
    /// deliveries do not stall unseen, and restarted by its policy.
    fn on_delivery_failed(&mut self, failure: DeliveryFailure) {
        if self.state != PluginState::Running {
            return;
        }
        match failure {
            DeliveryFailure::Timeout { events, within } => {
                let note = format!(
                    "did not answer a deliver of {events} event{} within {} (call_timeout)",
                    if events == 1 { "" } else { "s" },
                    humantime::format_duration(within)
                );
                tracing::warn!("{note}; killing it");
                self.transition(PluginState::Unhealthy, None, Some(note));
                self.kill(ExitReason::Hang);
            }
            DeliveryFailure::Refused { events, error } => {
                let detail = format!(
                    "answered a deliver of {events} event{} with an error: {error}",
                    if events == 1 { "" } else { "s" },
                );
                tracing::warn!("broke the protocol: {detail}");
                self.kill(ExitReason::Protocol { detail });
            }
        }
    }

    fn check_memory(&mut self) {
        let Some(pid) = self.pid else { return };
        if self.verdict.is_some() {
            return;
        }
        let rss = self.probe.tree_rss(pid);
        if let Some(max) = self.spec.memory_max
            && rss > max
        {
            tracing::warn!(rss, max, "over its memory cap; killing it");
            self.kill(ExitReason::MemoryCap);
            return;
        }
        let Some(high) = self.spec.memory_high else {
            return;
        };
        let above = rss > high;
        if above && !self.above_high {
            let note = format!(
                "memory above memory_high: {} > {}",
                bytesize::ByteSize(rss).display().iec(),
                bytesize::ByteSize(high).display().iec()
            );
            tracing::warn!("{note}");
            self.note(note);
        }
        self.above_high = above;
    }

    /// Publishes the transition on `corral.plugin.<name>.<state>`.
    fn publish_lifecycle(&self, from: PluginState, to: PluginState, reason: Option<&ExitReason>) {
        let payload = serde_json::json!({
            "name": &*self.name,
            "state": to,
            "from": from,
            "pid": self.pid.or(self.exited_pid),
            "reason": reason,
            "restarts": self.restarts,
        });
        if let Ok(payload) = Payload::from_json(&payload) {
            self.host
                .bus
                .system(format!("corral.plugin.{}.{to}", self.name), payload);
        }
    }

    /// Records something that happened without a change of state.
    fn note(&mut self, note: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition {
            at_unix_ms: unix_ms(),
            from: self.state,
            to: self.state,
            reason: None,
            pid: self.pid,
            note: Some(note),
        });
    }

    fn on_deadline(&mut self) {
        let Some((_, step)) = self.deadline.take() else {
            return;
        };
        if step == Step::Restart {
            self.transition(PluginState::Waiting, None, Some("backoff over".into()));
            return;
        }
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
            Step::Restart => {}
        }
    }

    /// Takes new settings from a reload.
    fn update(&mut self, new: PluginSpec) -> Applied {
        if new == self.spec {
            return Applied::Unchanged;
        }
        let old = std::mem::replace(&mut self.spec, new);
        let spec = &self.spec;
        if old.heartbeat.interval != spec.heartbeat.interval {
            self.heartbeat = tokio::time::interval(spec.heartbeat.interval);
            self.heartbeat
                .set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        self.memory_tick = memory_tick(spec);
        if old.rate_limit != spec.rate_limit {
            self.limiter = spec.rate_limit.map(|l| Arc::new(Limiter::new(l)));
            let limiter = self.limiter.clone();
            self.target.send_modify(|t| {
                if let Some(t) = t {
                    t.limiter = limiter;
                }
            });
        }
        if old.call_timeout != spec.call_timeout {
            let timeout = spec.call_timeout;
            self.target.send_modify(|t| {
                if let Some(t) = t {
                    t.call_timeout = timeout;
                }
            });
        }
        let process_changed = old.cmd != spec.cmd
            || old.env != spec.env
            || old.cwd != spec.cwd
            || old.codec != spec.codec;
        let config_changed = old.config != spec.config;
        if !spec.enabled {
            if self.child.is_some() {
                self.begin_stop();
            } else {
                self.deadline = None;
                self.transition(
                    PluginState::Stopped,
                    None,
                    Some("disabled by reload".into()),
                );
            }
            return Applied::Stopped;
        }
        if !old.enabled && self.child.is_none() {
            self.transition(PluginState::Waiting, None, Some("enabled by reload".into()));
            return Applied::Started;
        }
        if process_changed {
            if self.child.is_some() {
                self.restart_requested = Some("process settings changed by reload".into());
                self.begin_stop();
            }
            return Applied::Restarted;
        }
        if config_changed && self.state == PluginState::Running {
            return Applied::Reconfigure;
        }
        Applied::Updated
    }

    /// Forgets the connection, so no new call can start on it.
    fn drop_client(&mut self) {
        self.client = None;
        self.target.send_replace(None);
    }

    /// Ends the process now with SIGKILL to its group, reporting `reason`.
    fn kill(&mut self, reason: ExitReason) {
        self.verdict.get_or_insert(reason);
        self.drop_client();
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
        self.target.send_replace(None);
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
        self.exited_pid = pid;
        if let Some(pgid) = pid {
            // Children it left behind in its group go with it.
            spawn::signal_group(pgid, Signal::SIGKILL);
        }
        if let Some(connecting) = self.connecting.take() {
            connecting.abort();
        }
        self.drop_client();
        self.closed = None;
        self.bus_broken = None;
        self.delivery_failures = None;
        self.pings = FuturesUnordered::new();
        self.deadline = None;
        let ran = self
            .running_since
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        // The kernel's OOM killer in the plugin's cgroup is a memory cap too.
        let oom_killed = self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        self.release_cgroup();
        self.above_high = false;
        let reason = self.verdict.take().unwrap_or_else(|| match status {
            _ if oom_killed => ExitReason::MemoryCap,
            Ok(status) => exit_reason(status),
            Err(e) => ExitReason::Signal {
                signal: format!("unknown (wait failed: {e})"),
            },
        });
        tracing::info!(pid, reason = %reason, "exited");
        self.last_exit = Some(reason.clone());
        if self.state == PluginState::Stopping {
            match self.restart_requested.take() {
                Some(note) => self.transition(PluginState::Waiting, Some(reason), Some(note)),
                None => self.transition(PluginState::Stopped, Some(reason), None),
            }
        } else {
            self.transition(PluginState::Exited, Some(reason.clone()), None);
            self.after_exit(&reason, ran);
        }
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Applies the restart policy to a process that ended on its own.
    fn after_exit(&mut self, reason: &ExitReason, ran: Duration) {
        let spec = &self.spec;
        let rules = Rules {
            policy: spec.restart,
            success_codes: &spec.success_codes,
            backoff: &spec.backoff,
            limit: &spec.restart_limit,
        };
        let decision = self
            .tracker
            .decide(&rules, reason, ran, Instant::now(), fastrand::f64());
        match decision {
            Decision::Stay => {}
            Decision::GiveUp { restarts, within } => {
                let note = format!(
                    "restart limit reached: {restarts} restarts within {}; `corral start {}` tries again",
                    humantime::format_duration(within),
                    self.spec.name
                );
                tracing::error!("{note}");
                self.transition(PluginState::Failed, Some(reason.clone()), Some(note));
            }
            Decision::Restart(delay) => {
                let _ = self.events.send(Event::Restarting {
                    name: Arc::clone(&self.name),
                });
                if delay.is_zero() {
                    self.transition(PluginState::Waiting, None, Some("restarting".into()));
                } else {
                    self.deadline = Some((tokio::time::Instant::now() + delay, Step::Restart));
                    let note = format!(
                        "restarting in {}",
                        humantime::format_duration(round_ms(delay))
                    );
                    self.transition(PluginState::Backoff, None, Some(note));
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether the plugin has a limit a cgroup would hold.
fn has_cgroup_limit(spec: &PluginSpec) -> bool {
    spec.memory_max.is_some() || spec.memory_high.is_some() || spec.pids_max.is_some()
}

/// The memory sampler's timer, when the plugin has a memory limit.
fn memory_tick(spec: &PluginSpec) -> Option<Interval> {
    (spec.memory_max.is_some() || spec.memory_high.is_some()).then(|| {
        let mut t = tokio::time::interval(spec.memory_check_interval);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    })
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The settings in force, for `corral inspect`.
fn settings_json(
    spec: &PluginSpec,
    log_file: &std::path::Path,
    cgroups: Option<&[std::path::PathBuf]>,
) -> serde_json::Value {
    spec.settings(log_file, cgroups)
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
    bus: BusHandle,
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
        let framed = listener::accept_plugin(&listener, &expected, Want::Plugin).await?;
        // Answers are checked against their requests before the client sees them.
        let transport = listener::PluginTransport::new(framed, spec.codec);
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
        // The plugin may open its bus connection before it answers `load`.
        let (loaded, bus_conn) = {
            let load = client.load(ctx, config);
            let accept_bus = listener::accept_plugin(&listener, &expected, Want::Bus);
            tokio::pin!(load, accept_bus);
            let mut bus_conn = None;
            let loaded = loop {
                tokio::select! {
                    loaded = &mut load => break loaded,
                    conn = &mut accept_bus, if bus_conn.is_none() => bus_conn = Some(conn),
                }
            };
            if bus_conn.is_none() {
                bus_conn = accept_bus.now_or_never();
            }
            (loaded, bus_conn)
        };
        drop(listener);
        loaded
            .map_err(|e| HandshakeError(format!("no answer to load: {e}")))?
            .map_err(|e| HandshakeError(format!("on_load failed: {e}")))?;
        let bus_broken = match bus_conn {
            Some(Ok(framed)) => {
                let (broken, bus_broken) = oneshot::channel();
                let transport = listener::BusTransport::new(framed, spec.codec, broken);
                crate::bus::serve_plugin(spec.name.as_str().into(), bus, transport);
                Some(bus_broken)
            }
            Some(Err(HandshakeError(why))) => {
                return Err(HandshakeError(format!("bus connection refused: {why}")));
            }
            None => None,
        };
        Ok(Connected {
            client,
            closed,
            bus_broken,
        })
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
    listener::violation(e, MAX_FRAME_BYTES)
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

async fn bus_broken(rx: &mut Option<oneshot::Receiver<String>>) -> Option<String> {
    match rx {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_failure(
    rx: &mut Option<mpsc::UnboundedReceiver<DeliveryFailure>>,
) -> Option<DeliveryFailure> {
    match rx {
        Some(rx) => rx.recv().await,
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
