//! One process's life. A [`Spawn`] holds everything that exists only while a
//! plugin's process runs: the child and its pid, its cgroup, the handshake
//! task, the connection and its watchers, heartbeats in flight, the stop
//! escalation's deadline, the verdict on why it is being ended, and who
//! waits for it to be reaped. The actor keeps it in an `Option`: ending a
//! spawn is one `take()`, and [`Spawn::reap`] turns what is left into the
//! exit's report.
//!
//! A spawn is every process the plugin's process leads, not that process
//! alone: its [`ProcessTree`] follows descendants that left its group or its
//! tree (a `setsid()` daemon the supervisor adopted as subreaper), memory is
//! sampled over all of them for as long as the spawn exists, signals reach
//! all of them, and when the spawn ends all of them are killed and its
//! connections (plugin and bus) closed, so nothing it left can act as it.
//!
//! A spawn knows nothing of states or policy; it answers "what happened next
//! to this process" ([`Spawn::next`]) and carries out kills and stops.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use corral_proto::{ExitReason, PluginApiClient};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use interprocess::local_socket::tokio::Listener;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use super::connect::{Connected, connect};
use super::health::sample_stale;
use super::health::{self, Heartbeats, PingVerdict, ProbeVerdict};
use super::notify::{Notify, NotifyEvent};
use super::output::Output;
use super::probe::Prober;
use super::stop::{self, Escalation, Step};
use crate::bus::DeliveryFailure;
use crate::config::PluginSpec;
use crate::os::cgroup::PluginCgroup;
use crate::os::child::Child;
use crate::os::logs::LogSink;
use crate::os::memory::MemoryProbe;
use crate::os::tree::ProcessTree;
use crate::os::{reaper, spawn};
use crate::wire::handshake::HandshakeError;

/// A plugin's process while it exists.
pub(super) struct Spawn {
    child: Child,
    pid: u32,
    cgroup: Option<PluginCgroup>,
    /// Every process of the spawn seen so far.
    tree: ProcessTree,
    /// The tasks holding its connections open, aborted when it ends.
    connections: Vec<AbortHandle>,
    /// Why it is being ended, decided before the kill so the exit reports it.
    verdict: Option<ExitReason>,
    connecting: Option<JoinHandle<Result<Connected, HandshakeError>>>,
    client: Option<PluginApiClient>,
    /// Whether its connection serves streamed replies.
    streams: bool,
    closed: Option<oneshot::Receiver<Option<String>>>,
    bus_broken: Option<oneshot::Receiver<String>>,
    /// Failed `deliver` calls, reported by the bus while it is attached.
    delivery_failures: Option<mpsc::UnboundedReceiver<DeliveryFailure>>,
    pings: FuturesUnordered<BoxFuture<'static, Option<Duration>>>,
    heartbeats: Heartbeats,
    escalation: Option<(tokio::time::Instant, Step)>,
    pub(super) running_since: Option<Instant>,
    /// Whether the last memory sample was above `memory_high`.
    above_high: bool,
    /// The last sample's resident bytes and its time, for `ps` between
    /// samples.
    last_rss: (u64, Option<Instant>),
    /// Who waits for this process to be reaped.
    waiters: Vec<oneshot::Sender<()>>,
    /// When the stop in progress is half of a restart: the note for `waiting`.
    restart_note: Option<String>,
    /// The readers of its stdout and stderr.
    output: Output,
    /// When its exit was seen.
    ended_at: Option<tokio::time::Instant>,
    /// The TCP port it was given, if any.
    pub(super) port: Option<u16>,
    /// The secret the gateway's requests to its port carry, if proxied.
    pub(super) gateway_secret: Option<std::sync::Arc<str>>,
    /// The uid it runs as, when its `user` is not the supervisor's.
    pub(super) uid: Option<u32>,
    /// Its health probe, until it is being ended.
    pub(super) prober: Option<Prober>,
    /// Its notify channel, with `notify`.
    pub(super) notify: Option<Notify>,
    /// How its sandbox is enforced, if it has one.
    pub(super) sandbox: Option<String>,
}

/// How long after an exit the handshake task is given to report a refusal.
const REFUSAL_GRACE: Duration = Duration::from_millis(100);

/// What happened next to a spawn.
pub(super) enum SpawnEvent {
    /// The process ended.
    Exited(std::io::Result<ExitStatus>),
    /// The handshake task finished.
    Handshake(Result<Connected, HandshakeError>),
    /// The plugin connection closed: `Some(detail)` for a protocol violation.
    Closed(Option<String>),
    /// The plugin broke the protocol on its bus connection.
    BusBroken(String),
    /// A `deliver` to it failed.
    DeliveryFailed(DeliveryFailure),
    /// A heartbeat was answered in time (with its round trip) or not.
    Pinged(Option<Duration>),
    /// A health probe ended: `Err` says what failed.
    Probed(Result<(), String>),
    /// Its notify channel has news.
    Notified(NotifyEvent),
    /// A step of the stop escalation is due.
    Escalate(Step),
}

/// What is left of a spawn once its process is reaped.
pub(super) struct Reaped {
    /// Its pid.
    pub(super) pid: u32,
    /// Why it ended.
    pub(super) reason: ExitReason,
    /// How long it ran connected.
    pub(super) ran: Duration,
    /// Who waited for it.
    pub(super) waiters: Vec<oneshot::Sender<()>>,
    /// The restart the stop was half of.
    pub(super) restart_note: Option<String>,
    /// The last lines it wrote to stderr.
    pub(super) last_stderr: Vec<String>,
}

impl Spawn {
    /// Spawns the plugin's process with its socket bound and its secret made,
    /// captures its output into `logs`, and starts the handshake task (for a
    /// plugin of corral's protocol: `listener` is `Some`).
    pub(super) fn launch(
        spec: &PluginSpec,
        listener: Option<Listener>,
        launch: &spawn::Launch<'_>,
        cgroup: Option<PluginCgroup>,
        logs: &LogSink,
        host: &super::Host,
    ) -> Result<Self, SpawnFailure> {
        let mut child = match spawn::spawn(launch, cgroup.as_ref()) {
            Ok(child) => child,
            Err(e) => {
                if let Some(cgroup) = cgroup {
                    tokio::spawn(cgroup.remove());
                }
                return Err(SpawnFailure::os(&spec.cmd[0], &e));
            }
        };
        let Some(pid) = child.id() else {
            if let Some(cgroup) = cgroup {
                tokio::spawn(cgroup.remove());
            }
            return Err(SpawnFailure::lasting("exited before it could be tracked"));
        };
        let output = Output::capture(&mut child, logs);
        tracing::info!(pid, "spawned");
        let connecting = listener.zip(launch.socket).map(|(listener, (_, secret))| {
            let secret = secret.to_string();
            let (bus, calls) = (host.bus.clone(), host.calls.clone());
            let uid = launch
                .user
                .map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _)| uid);
            tokio::spawn(connect(
                listener,
                spec.clone(),
                secret,
                (pid, uid),
                bus,
                calls,
            ))
        });
        Ok(Self {
            child,
            pid,
            cgroup,
            tree: ProcessTree::new(pid),
            connections: Vec::new(),
            verdict: None,
            connecting,
            client: None,
            streams: false,
            uid: None,
            closed: None,
            bus_broken: None,
            delivery_failures: None,
            pings: FuturesUnordered::new(),
            heartbeats: Heartbeats::default(),
            escalation: None,
            running_since: None,
            above_high: false,
            last_rss: (0, None),
            waiters: Vec::new(),
            restart_note: None,
            output,
            ended_at: None,
            port: None,
            gateway_secret: None,
            prober: None,
            notify: None,
            sandbox: None,
        })
    }

    /// Its pid (and process group).
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// The live connection, once connected and until it is dropped.
    pub(super) fn client(&self) -> Option<&PluginApiClient> {
        self.client.as_ref()
    }

    /// Whether its connection serves streamed replies.
    pub(super) fn streams(&self) -> bool {
        self.streams
    }

    /// Its cgroup's directories, for `corral inspect`.
    pub(super) fn cgroup_paths(&self) -> Option<&[std::path::PathBuf]> {
        self.cgroup.as_ref().map(PluginCgroup::paths)
    }

    /// Whether it is already being ended.
    pub(super) fn doomed(&self) -> bool {
        self.verdict.is_some()
    }

    /// Waits for the next thing that happens to it.
    pub(super) async fn next(&mut self) -> SpawnEvent {
        loop {
            tokio::select! {
                status = self.child.wait() => {
                    // The waits below are measured from the exit, so a wait
                    // cut short by the actor's other work resumes, not restarts.
                    let ended = *self.ended_at.get_or_insert_with(tokio::time::Instant::now);
                    self.refusal_before_exit(ended).await;
                    self.output.drain(ended).await;
                    return SpawnEvent::Exited(status);
                }
                joined = join(&mut self.connecting) => {
                    self.connecting = None;
                    return SpawnEvent::Handshake(joined.unwrap_or_else(|e| {
                        Err(HandshakeError::lost(format!("connect task failed: {e}")))
                    }));
                }
                cause = closed(&mut self.closed) => {
                    self.closed = None;
                    return SpawnEvent::Closed(cause);
                }
                broken = bus_broken(&mut self.bus_broken) => {
                    self.bus_broken = None;
                    if let Some(detail) = broken {
                        return SpawnEvent::BusBroken(detail);
                    }
                }
                failure = next_failure(&mut self.delivery_failures) => match failure {
                    Some(failure) => return SpawnEvent::DeliveryFailed(failure),
                    None => self.delivery_failures = None,
                },
                Some(answered) = self.pings.next() => return SpawnEvent::Pinged(answered),
                outcome = probe(&mut self.prober) => return SpawnEvent::Probed(outcome),
                event = notified(&mut self.notify) => return SpawnEvent::Notified(event),
                step = until(self.escalation) => {
                    self.escalation = None;
                    return SpawnEvent::Escalate(step);
                }
            }
        }
    }

    /// A plugin refused at its handshake (its hello or secret refused, or
    /// its `on_load` failed) may exit before the handshake task reports it;
    /// the exit is then reported as that refusal, not as a bare exit code. The task gets a moment after the exit (`ended`)
    /// to finish.
    async fn refusal_before_exit(&mut self, ended: tokio::time::Instant) {
        let Some(connecting) = self.connecting.as_mut() else {
            return;
        };
        let Ok(finished) = tokio::time::timeout_at(ended + REFUSAL_GRACE, connecting).await else {
            return;
        };
        self.connecting = None;
        if let Ok(Err(HandshakeError {
            detail,
            refused: true,
        })) = finished
        {
            tracing::warn!("handshake failed: {detail}");
            self.verdict.get_or_insert(ExitReason::Handshake { detail });
        }
    }

    /// The handshake succeeded: keep the connection and its watchers.
    pub(super) fn connected(&mut self, conn: Connected) {
        self.client = Some(conn.client);
        self.streams = conn.streams;
        self.closed = Some(conn.closed);
        self.bus_broken = conn.bus_broken;
        self.connections.extend(conn.tasks);
        self.heartbeats = Heartbeats::default();
        self.running_since = Some(Instant::now());
    }

    /// A program without corral's protocol runs once spawned: its uptime
    /// counts from now.
    pub(super) fn running_without_connection(&mut self) {
        self.running_since = Some(Instant::now());
    }

    /// Watches the bus's reports of failed deliveries to it.
    pub(super) fn watch_deliveries(&mut self, failures: mpsc::UnboundedReceiver<DeliveryFailure>) {
        self.delivery_failures = Some(failures);
    }

    /// Sends a heartbeat, if connected.
    pub(super) fn ping(&mut self, timeout: Duration) {
        if let Some(client) = &self.client {
            let seq = self.heartbeats.next_seq();
            self.pings.push(health::ping(client.clone(), seq, timeout));
        }
    }

    /// Takes a heartbeat's outcome; `allowed` is `heartbeat.misses`.
    pub(super) fn pinged(&mut self, answered: bool, allowed: u32) -> PingVerdict {
        self.heartbeats.answered(answered, allowed)
    }

    /// Takes a health probe's outcome.
    pub(super) fn probed(&mut self, passed: bool) -> Option<ProbeVerdict> {
        self.prober.as_mut().map(|p| p.judged(passed))
    }

    /// Whether its health probe has passed (`true` without a probe).
    pub(super) fn probe_passed(&self) -> bool {
        self.prober.as_ref().is_none_or(Prober::passed)
    }

    /// Whether it said `READY=1` (`true` without `notify`).
    pub(super) fn notified_ready(&self) -> bool {
        self.notify.as_ref().is_none_or(Notify::ready)
    }

    /// Whether the last memory sample was above `memory_high`.
    pub(super) fn above_high(&self) -> bool {
        self.above_high
    }

    /// Records where the last memory sample stood against `memory_high`.
    pub(super) fn set_above_high(&mut self, above: bool) {
        self.above_high = above;
    }

    /// Forgets the connection, so no new call or ping starts on it.
    pub(super) fn drop_client(&mut self) {
        self.client = None;
    }

    /// Ends the process now with SIGKILL to every process of the spawn,
    /// reporting `reason` (unless a kill verdict was already reached: a kill
    /// during a requested stop reports the kill's reason).
    pub(super) fn kill(&mut self, reason: ExitReason) {
        match &self.verdict {
            None | Some(ExitReason::Requested) => self.verdict = Some(reason),
            Some(_) => {}
        }
        self.client = None;
        self.pings = FuturesUnordered::new();
        self.prober = None;
        if let Some(notify) = &mut self.notify {
            notify.disarm();
        }
        self.signal_all(Signal::SIGKILL);
    }

    /// Whether a stop was requested and no kill has overtaken it.
    pub(super) fn stopping(&self) -> bool {
        self.verdict == Some(ExitReason::Requested)
    }

    /// Sends `signal` to the plugin's process (by pid while it is not reaped,
    /// since its group exists only once its shim called `setsid()`), to its
    /// group, and to every other process of the spawn.
    fn signal_all(&self, signal: Signal) {
        if self.child.id().is_some() {
            spawn::signal_process(self.pid, signal);
        }
        spawn::signal_group(self.pid, signal);
        self.tree.signal(signal);
    }

    /// Walks the spawn's tree from its leader, its cgroup's members and the
    /// orphans adopted from its session: the pids it holds now.
    fn walk(&mut self) -> Vec<u32> {
        let mut members = self
            .cgroup
            .as_ref()
            .map(PluginCgroup::members)
            .unwrap_or_default();
        members.extend(reaper::adopted(self.pid));
        self.tree.walk(&members)
    }

    /// CPU time its processes used, as of the last [`sample`](Self::sample),
    /// in milliseconds.
    pub(super) fn cpu_ms(&self) -> u64 {
        self.tree.cpu_ms()
    }

    /// Resident bytes as of the last [`sample`](Self::sample) (the memory
    /// check's, one as it starts, one when `ps` found the last too
    /// old: `ps` never waits for a walk), and when that sample was taken.
    pub(super) fn last_sample(&self) -> (u64, Option<Instant>) {
        self.last_rss
    }

    /// Walks the spawn's processes (its cgroup's members and the orphans
    /// adopted from its session included), tells the reaper which they are,
    /// and returns their resident bytes (from the `stat` files the walk
    /// reads; sysinfo's where there is no `/proc`).
    pub(super) fn sample(&mut self, probe: &mut MemoryProbe) -> u64 {
        let pids = self.walk();
        reaper::attribute(self.pid, self.tree.known());
        let rss = if pids.is_empty() && !cfg!(target_os = "linux") {
            probe.tree_rss(self.pid)
        } else {
            self.tree.rss_bytes()
        };
        self.last_rss = (rss, Some(Instant::now()));
        rss
    }

    /// Samples again if the last sample is too old for `ps`.
    pub(super) fn refresh(&mut self, probe: &mut MemoryProbe) {
        if self.last_rss.1.is_none_or(sample_stale) {
            self.sample(probe);
        }
    }

    /// Asks the process to shut down, escalating to signals on deadlines.
    pub(super) fn begin_stop(
        &mut self,
        stop_timeout: Duration,
        kill_timeout: Duration,
        stop_signal: Signal,
    ) {
        self.verdict.get_or_insert(ExitReason::Requested);
        self.pings = FuturesUnordered::new();
        self.prober = None;
        if let Some(notify) = &mut self.notify {
            notify.disarm();
        }
        let client = self.client.take();
        let (signal, step, wait) =
            stop::begin(client.is_some(), stop_timeout, kill_timeout, stop_signal);
        match client {
            Some(client) => {
                tokio::spawn(async move {
                    let mut ctx = tarpc::context::current();
                    ctx.deadline = Instant::now() + stop_timeout;
                    let _ = client.shutdown(ctx).await;
                    // Dropping the last client closes the connection, which
                    // tells the plugin to exit.
                });
            }
            None => {
                if let Some(connecting) = self.connecting.take() {
                    connecting.abort();
                }
            }
        }
        if let Some(signal) = signal {
            self.signal_all(signal);
        }
        self.escalation = Some((tokio::time::Instant::now() + wait, step));
    }

    /// Carries out a due escalation step; `Some(reason)` when the step
    /// means killing it for that reason.
    pub(super) fn escalate(
        &mut self,
        step: Step,
        stop_timeout: Duration,
        kill_timeout: Duration,
        stop_signal: Signal,
    ) -> Option<ExitReason> {
        match stop::escalate(step, kill_timeout, stop_signal) {
            Escalation::Signal { signal, next } => {
                if signal == Signal::SIGKILL {
                    tracing::warn!(
                        "still alive {kill_timeout:?} after {stop_signal}; sending SIGKILL"
                    );
                } else {
                    tracing::warn!("did not stop within {stop_timeout:?}; sending {signal}");
                }
                self.signal_all(signal);
                self.escalation =
                    next.map(|(step, wait)| (tokio::time::Instant::now() + wait, step));
                None
            }
            Escalation::KillDisconnected => Some(ExitReason::Protocol {
                detail: "closed its connection to the supervisor but kept running".into(),
            }),
        }
    }

    /// The plugin closed its connection without breaking the protocol: it
    /// gets a short grace to exit, unless a stop is already under way.
    pub(super) fn grace_after_disconnect(&mut self) {
        if self.escalation.is_none() {
            self.escalation = Some((
                tokio::time::Instant::now() + stop::DISCONNECT_GRACE,
                Step::DisconnectGrace,
            ));
        }
    }

    /// Adds someone who waits for the process to be reaped.
    pub(super) fn wait_for_end(&mut self, waiter: oneshot::Sender<()>) {
        self.waiters.push(waiter);
    }

    /// Closes its connections (plugin and bus) and ends its handshake.
    fn close_connections(&mut self) {
        if let Some(connecting) = self.connecting.take() {
            connecting.abort();
        }
        self.client = None;
        for task in self.connections.drain(..) {
            task.abort();
        }
    }

    /// Sets (or clears) the restart this stop is half of.
    pub(super) fn restart_after_stop(&mut self, note: Option<String>) {
        self.restart_note = note;
    }

    /// The process was reaped with `status`: kills every process the spawn
    /// left (in its group, in its tree, in its cgroup), closes its
    /// connections, and says why it ended.
    pub(super) fn reap(mut self, status: std::io::Result<ExitStatus>) -> Reaped {
        // What it left behind goes with it: its group, and every descendant
        // seen, found again from those still alive.
        spawn::signal_group(self.pid, Signal::SIGKILL);
        self.walk();
        self.tree.signal(Signal::SIGKILL);
        // Nothing it left can speak for it: a daemon holding its sockets
        // finds them closed.
        self.close_connections();
        reaper::release(self.pid);
        // The kernel's OOM killer in the plugin's cgroup is a memory cap too.
        let oom_killed = self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        if let Some(cgroup) = self.cgroup.take() {
            tokio::spawn(cgroup.remove());
        }
        // Over the cap while stopping is a memory cap too, whoever killed it.
        if oom_killed && self.stopping() {
            self.verdict = Some(ExitReason::MemoryCap);
        }
        let reason = self.verdict.take().unwrap_or_else(|| match status {
            _ if oom_killed => ExitReason::MemoryCap,
            Ok(status) => exit_reason(status),
            Err(e) => ExitReason::Signal {
                signal: format!("unknown (wait failed: {e})"),
            },
        });
        Reaped {
            pid: self.pid,
            reason,
            ran: self.running_since.map_or(Duration::ZERO, |t| t.elapsed()),
            waiters: std::mem::take(&mut self.waiters),
            restart_note: self.restart_note.take(),
            last_stderr: self.output.take_last_stderr(),
        }
    }
}

/// Why a spawn could not start: the exit reason (`spawn`) and whether
/// trying again later may succeed.
#[derive(Debug, Clone)]
pub(super) struct SpawnFailure {
    /// The exit reason to report.
    pub(super) reason: ExitReason,
    /// The OS ran out of something for a moment (fds, memory, processes):
    /// the restart policy retries it instead of `failed`.
    pub(super) transient: bool,
}

impl SpawnFailure {
    /// A failure of an OS call, classified by its error number.
    pub(super) fn os(context: &str, e: &std::io::Error) -> Self {
        Self {
            reason: ExitReason::Spawn {
                error: format!("{context}: {e}"),
            },
            transient: crate::restart::spawn_error_is_transient(e.raw_os_error()),
        }
    }

    /// A failure that trying again would repeat.
    pub(super) fn lasting(error: &str) -> Self {
        Self {
            reason: ExitReason::Spawn {
                error: error.to_string(),
            },
            transient: false,
        }
    }
}

impl Drop for Spawn {
    fn drop(&mut self) {
        self.close_connections();
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

async fn probe(prober: &mut Option<Prober>) -> Result<(), String> {
    match prober {
        Some(prober) => prober.next().await,
        None => std::future::pending().await,
    }
}

async fn notified(notify: &mut Option<Notify>) -> NotifyEvent {
    match notify {
        Some(notify) => notify.next().await,
        None => std::future::pending().await,
    }
}

async fn until(deadline: Option<(tokio::time::Instant, Step)>) -> Step {
    match deadline {
        Some((at, step)) => {
            tokio::time::sleep_until(at).await;
            step
        }
        None => std::future::pending().await,
    }
}
