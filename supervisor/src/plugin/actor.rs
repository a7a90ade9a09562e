//! The plugin actor's loop: one `select!` over its mailbox, its spawn (if a
//! process exists), its timers and its backoff, each wake-up handed to a
//! small method that asks the pure parts ([`lifecycle`](super::lifecycle),
//! [`health`](super::health), [`stop`](super::stop),
//! [`reload`](super::reload)) what to do and carries it out; its answers to
//! heartbeats, probes, failed deliveries and memory samples are in
//! `checks`, its `ps` row and `inspect` in `report`. It owns the
//! plugin's state; the [`PluginHandle`](super::PluginHandle) is the only way in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use corral_proto::{Enforcement, ExitReason, Payload, PluginState, Protocol, Transition};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Interval;

use super::Host;
use super::connect::Connected;
use super::health;
use super::lifecycle::{AfterExit, Ended, ExitPlan, Lifecycle};
use super::messages::{Applied, CallTarget, Event, Msg, Outlets, Presence, Row, Terms};
use super::meter::Meter;
use super::process::{Reaped, Spawn, SpawnEvent, SpawnFailure};
use super::reload::{self, Plan};
use super::start::{self, has_cgroup_limit};
use crate::config::{PluginSpec, ReadyOn};
use crate::os::logs::LogSink;
use crate::os::memory::MemoryProbe;
use crate::rate::Limiter;
use crate::restart::Rules;
use crate::wire::handshake::HandshakeError;

mod checks;
mod report;

/// A transition to announce: its state, and its event for the bus.
type Announcement = (PluginState, Option<(String, Payload)>);

pub(super) struct Actor {
    name: Arc<str>,
    spec: PluginSpec,
    host: Host,
    mailbox: mpsc::Receiver<Msg>,
    mailbox_open: bool,
    events: mpsc::UnboundedSender<Event>,
    /// The connection callers use; `Some` exactly while `running`.
    target: watch::Sender<Presence>,
    /// Its `ps` row, for the handles to read.
    row: watch::Sender<Option<Row>>,
    /// Whether the row changed since it was last published.
    row_dirty: bool,
    /// This step's transitions, announced once the row is out: each state
    /// and its lifecycle event.
    announce: Vec<Announcement>,
    /// Set by the handle that asked for a new memory sample.
    refresh_asked: Arc<AtomicBool>,
    /// Calls its handles handed to the plugin, for `ps`.
    meter: Arc<Meter>,
    /// What it requires and whom it may call, for the handle's readers.
    terms: watch::Sender<Arc<Terms>>,
    lifecycle: Lifecycle,
    /// The process, while one exists.
    spawn: Option<Spawn>,
    /// When the backoff delay ends, while in `backoff`.
    backoff: Option<tokio::time::Instant>,
    logs: Option<LogSink>,
    probe: MemoryProbe,
    /// The rate limiter callers share, when `rate_limit` is set.
    limiter: Option<Arc<Limiter>>,
    /// How the current (or last) spawn's limits are enforced.
    enforcement: Enforcement,
    heartbeat: Interval,
    /// Walks the spawn's processes and judges their memory.
    sample_tick: Interval,
}

impl Actor {
    pub(super) fn new(
        spec: PluginSpec,
        host: Host,
        mailbox: mpsc::Receiver<Msg>,
        events: mpsc::UnboundedSender<Event>,
        outlets: Outlets,
    ) -> Self {
        let Outlets {
            target,
            row,
            meter,
            terms,
            refresh_asked,
        } = outlets;
        let enforcement = if has_cgroup_limit(&spec) {
            host.cgroups.enforcement(spec.limits)
        } else {
            Enforcement::Sampling
        };
        Self {
            name: spec.name.as_str().into(),
            heartbeat: crate::grid::every(spec.heartbeat.interval),
            sample_tick: crate::grid::every(sample_every(&spec)),
            limiter: spec.rate_limit.map(|l| Arc::new(Limiter::new(l))),
            spec,
            host,
            mailbox,
            mailbox_open: true,
            events,
            target,
            meter,
            terms,
            lifecycle: Lifecycle::new(),
            spawn: None,
            backoff: None,
            logs: None,
            probe: MemoryProbe::default(),
            enforcement,
            row,
            row_dirty: false,
            announce: Vec::new(),
            refresh_asked,
        }
    }

    pub(super) async fn run(mut self) {
        self.host
            .bus
            .register(Arc::clone(&self.name), self.spec.bus.clone());
        if self.spec.enabled {
            self.transition(PluginState::Waiting, None, None);
        } else {
            self.transition(PluginState::Stopped, None, Some("not enabled".into()));
        }
        self.publish_row();
        while self.mailbox_open || self.spawn.is_some() {
            // Whether the `ps` row may have changed other than by a
            // transition (which marks it dirty).
            let changed = tokio::select! {
                msg = self.mailbox.recv(), if self.mailbox_open => {
                    match msg {
                        Some(msg) => self.on_msg(msg),
                        None => {
                            self.mailbox_open = false;
                            self.begin_stop();
                        }
                    }
                    true
                }
                event = next_event(&mut self.spawn) => {
                    let answer = matches!(event, SpawnEvent::Pinged(_) | SpawnEvent::Probed(_));
                    self.on_spawn_event(event);
                    !answer
                }
                _ = self.heartbeat.tick() => {
                    self.send_ping();
                    false
                }
                _ = self.sample_tick.tick() => {
                    self.check_memory();
                    self.spawn.is_some()
                }
                _ = until(self.backoff) => {
                    self.backoff = None;
                    self.transition(PluginState::Waiting, None, Some("backoff over".into()));
                    false
                }
            };
            if changed || self.row_dirty {
                self.publish_row();
            }
        }
        self.host.bus.unregister(Arc::clone(&self.name));
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Refresh => {
                if let Some(spawn) = &mut self.spawn {
                    spawn.refresh(&mut self.probe);
                }
                self.refresh_asked.store(false, Ordering::Relaxed);
            }
            Msg::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Msg::Start(reply) => {
                if self.spawn.is_none() && self.lifecycle.state() == PluginState::Waiting {
                    self.start_process();
                }
                self.publish_row();
                let _ = reply.send(());
            }
            Msg::Wait { reset, note, reply } => {
                if reset {
                    self.lifecycle.reset_restarts();
                }
                if self.spawn.is_none() {
                    self.backoff = None;
                    self.transition(PluginState::Waiting, None, Some(note));
                }
                self.publish_row();
                let _ = reply.send(());
            }
            Msg::Stop(reply) => self.stop_then(PluginState::Stopped, None, reply),
            Msg::Restart { note, reply } => self.stop_then(PluginState::Waiting, Some(note), reply),
            Msg::Update { spec, reply } => {
                let applied = self.update(*spec);
                self.host
                    .bus
                    .register(Arc::clone(&self.name), self.spec.bus.clone());
                self.publish_row();
                let _ = reply.send(applied);
            }
        }
    }

    /// Stops the process (if any), replying once it is reaped, and enters
    /// `then`: `stopped`, or `waiting` with `restart` as the note.
    fn stop_then(
        &mut self,
        then: PluginState,
        restart: Option<String>,
        reply: oneshot::Sender<()>,
    ) {
        match &mut self.spawn {
            Some(spawn) => {
                spawn.restart_after_stop(restart);
                spawn.wait_for_end(reply);
                self.begin_stop();
            }
            None => {
                self.backoff = None;
                let note = restart.unwrap_or_else(|| "stop requested".into());
                self.transition(then, None, Some(note));
                self.publish_row();
                let _ = reply.send(());
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        self.spawn.as_ref().map(Spawn::pid)
    }

    fn set_state(&mut self, state: PluginState) {
        self.transition(state, None, None);
    }

    /// Enters `to`, recording why in the history, publishing or withdrawing
    /// the call target, attaching or detaching the bus, and telling the
    /// supervisor and the bus.
    fn transition(&mut self, to: PluginState, reason: Option<ExitReason>, note: Option<String>) {
        let from = self.lifecycle.state();
        tracing::debug!(%from, %to, note = note.as_deref().unwrap_or(""), "state");
        let Some(t) = self
            .lifecycle
            .enter(to, reason, note, self.pid(), Transition::now_unix_ms())
        else {
            return;
        };
        let client = self.spawn.as_ref().and_then(Spawn::client).cloned();
        let target = match (client, to) {
            (Some(client), PluginState::Running) => Some(CallTarget {
                client,
                pid: self.pid().unwrap_or(0),
                call_timeout: self.spec.call_timeout,
                limiter: self.limiter.clone(),
                streams: self.spawn.as_ref().is_some_and(Spawn::streams),
            }),
            _ => None,
        };
        match (&target, from == PluginState::Running) {
            (Some(t), _) => {
                let (failures, failed) = mpsc::unbounded_channel();
                if let Some(spawn) = &mut self.spawn {
                    spawn.watch_deliveries(failed);
                }
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
        if to == PluginState::Starting
            && let Some(spawn) = &mut self.spawn
        {
            // Memory figures for `ps` from the spawn on, without waiting
            // for the sampler's next tick (once per spawn: every spawn
            // starts here).
            spawn.sample(&mut self.probe);
        }
        self.target.send_replace(Presence {
            state: to,
            port: self.spawn.as_ref().and_then(|s| s.port),
            gateway_secret: self.spawn.as_ref().and_then(|s| s.gateway_secret.clone()),
            call: target,
        });
        // The row is published once this step is over (or before a
        // reply), so readers never see a state passed through within one
        // step; the transition is announced after it, so whoever hears of
        // it reads a row that shows it.
        self.row_dirty = true;
        let lifecycle = self.lifecycle_event(&t);
        self.announce.push((to, lifecycle));
    }

    /// Tells the supervisor and the bus of the transitions of this step,
    /// in order (once the row that shows them is out).
    pub(super) fn announce(&mut self) {
        for (state, lifecycle) in std::mem::take(&mut self.announce) {
            if let Some((topic, payload)) = lifecycle {
                self.host.bus.system(topic, payload);
            }
            let _ = self.events.send(Event::State {
                name: Arc::clone(&self.name),
                state,
            });
        }
    }

    /// The transition's event on `corral.plugin.<name>.<state>`, as of now.
    fn lifecycle_event(&self, t: &Transition) -> Option<(String, Payload)> {
        let payload = serde_json::json!({
            "name": &*self.name,
            "state": t.to,
            "from": t.from,
            "pid": self.pid().or(self.lifecycle.exited_pid()),
            "reason": t.reason,
            "restarts": self.lifecycle.restarts(),
        });
        let payload = Payload::from_json(&payload).ok()?;
        Some((format!("corral.plugin.{}.{}", self.name, t.to), payload))
    }

    fn start_process(&mut self) {
        self.lifecycle.spawning();
        let started = start::start(
            &self.spec,
            &self.host,
            &mut self.logs,
            self.lifecycle.spawns(),
        );
        match started {
            Ok((mut spawn, enforcement)) => {
                self.enforcement = enforcement;
                self.lifecycle.spawned();
                self.backoff = None;
                if self.spec.protocol == Protocol::None {
                    // Nothing to shake hands with: it runs once spawned
                    // (and ready, if it waits for its probe).
                    spawn.running_without_connection();
                    self.spawn = Some(spawn);
                    self.set_state(PluginState::Starting);
                    self.running_once_ready();
                } else {
                    self.spawn = Some(spawn);
                    self.set_state(PluginState::Starting);
                }
            }
            Err(SpawnFailure { reason, transient }) if transient => {
                // Out of fds, memory or processes for now: the restart
                // policy tries again, as after any other end.
                tracing::warn!("cannot start for now, the restart policy decides: {reason}");
                let plan =
                    self.plan_after_end(reason.clone(), None, Duration::ZERO, None, Vec::new());
                self.follow(plan, reason);
            }
            Err(SpawnFailure { reason, .. }) => {
                tracing::error!("cannot start: {reason}");
                self.lifecycle.spawn_failed(reason.clone());
                self.transition(PluginState::Failed, Some(reason), None);
            }
        }
    }

    fn on_spawn_event(&mut self, event: SpawnEvent) {
        match event {
            SpawnEvent::Exited(status) => self.on_exit(status),
            SpawnEvent::Handshake(result) => self.on_connected(result),
            SpawnEvent::Closed(cause) => self.on_disconnect(cause),
            SpawnEvent::BusBroken(detail) => self.on_bus_broken(detail),
            SpawnEvent::DeliveryFailed(failure) => self.on_delivery_failed(failure),
            SpawnEvent::Pinged(answered) => self.on_ping(answered),
            SpawnEvent::Probed(outcome) => self.on_probe(outcome),
            SpawnEvent::Notified(event) => self.on_notified(event),
            SpawnEvent::Escalate(step) => {
                if step != super::stop::Step::DisconnectGrace {
                    self.meter.forced_stop();
                }
                let (stop, kill) = (self.spec.stop_timeout, self.spec.kill_timeout);
                let signal = self.spec.stop_signal.0;
                let kill_for = self
                    .spawn
                    .as_mut()
                    .and_then(|s| s.escalate(step, stop, kill, signal));
                if let Some(reason) = kill_for {
                    self.kill(reason);
                }
            }
        }
    }

    fn on_connected(&mut self, result: Result<Connected, HandshakeError>) {
        if self.lifecycle.state() != PluginState::Starting {
            return;
        }
        match result {
            Ok(conn) => {
                if let Some(spawn) = &mut self.spawn {
                    spawn.connected(conn);
                }
                // The first ping comes at the fleet grid's next beat, one
                // interval from now at most.
                self.heartbeat
                    .reset_at(crate::grid::next(self.spec.heartbeat.interval));
                self.running_once_ready();
            }
            Err(HandshakeError { detail, .. }) => {
                tracing::warn!("handshake failed: {detail}");
                self.kill(ExitReason::Handshake { detail });
            }
        }
    }

    /// Enters `running` from `starting` once started (spawned, or shaken
    /// hands), with `notify` once it said `READY=1`, and with `ready =
    /// "health"` once its probe passed.
    pub(super) fn running_once_ready(&mut self) {
        let Some(spawn) = &self.spawn else { return };
        let started = self.spec.protocol == Protocol::None || spawn.client().is_some();
        // A spawn being killed is never ready, whatever it says after.
        if self.lifecycle.state() != PluginState::Starting || !started || spawn.doomed() {
            return;
        }
        let waits_for = if !spawn.notified_ready() {
            Some("READY=1 on its NOTIFY_SOCKET")
        } else if self.spec.ready == ReadyOn::Health && !spawn.probe_passed() {
            Some("its health probe to pass")
        } else {
            None
        };
        match waits_for {
            None => {
                tracing::info!(pid = self.pid(), "running");
                self.set_state(PluginState::Running);
            }
            Some(what) => tracing::info!(pid = self.pid(), "started; waiting for {what}"),
        }
    }

    /// Whether the process is going away anyway (stopping, or gone).
    fn ending(&self) -> bool {
        self.lifecycle.state() == PluginState::Stopping || self.spawn.is_none()
    }

    fn on_disconnect(&mut self, cause: Option<String>) {
        self.drop_client();
        if self.ending() {
            return;
        }
        match cause {
            Some(detail) => {
                tracing::warn!("broke the protocol: {detail}");
                self.kill(ExitReason::Protocol { detail });
            }
            None => {
                if let Some(spawn) = &mut self.spawn {
                    spawn.grace_after_disconnect();
                }
            }
        }
    }

    /// The plugin broke the protocol on its bus connection, which is closed.
    fn on_bus_broken(&mut self, detail: String) {
        if self.ending() {
            return;
        }
        let detail = format!("bus connection: {detail}");
        tracing::warn!("broke the protocol: {detail}");
        self.kill(ExitReason::Protocol { detail });
    }

    /// Takes new settings from a reload.
    fn update(&mut self, new: PluginSpec) -> Applied {
        let Some(diff) = reload::diff(&self.spec, &new) else {
            return Applied::Unchanged;
        };
        self.spec = new;
        self.terms.send_replace(Arc::new(Terms::of(&self.spec)));
        if diff.heartbeat_interval {
            self.heartbeat = crate::grid::every(self.spec.heartbeat.interval);
        }
        self.sample_tick = crate::grid::every(sample_every(&self.spec));
        // New limits hold from now, not from the grid's next tick.
        self.check_memory();
        if diff.rate_limit {
            self.limiter = self.spec.rate_limit.map(|l| Arc::new(Limiter::new(l)));
            let limiter = self.limiter.clone();
            self.target.send_modify(|p| {
                if let Some(t) = &mut p.call {
                    t.limiter = limiter;
                }
            });
        }
        if diff.call_timeout {
            let timeout = self.spec.call_timeout;
            self.target.send_modify(|p| {
                if let Some(t) = &mut p.call {
                    t.call_timeout = timeout;
                }
            });
        }
        let plan = reload::plan(&diff, self.spawn.is_some());
        match (plan, &mut self.spawn) {
            (Plan::Disable, Some(_)) => self.begin_stop(),
            (Plan::Disable, None) => {
                self.backoff = None;
                let note = "disabled by reload".to_string();
                self.transition(PluginState::Stopped, None, Some(note));
            }
            (Plan::Enable, _) => {
                let note = "enabled by reload".to_string();
                self.transition(PluginState::Waiting, None, Some(note));
            }
            (Plan::Restart, Some(spawn)) => {
                spawn.restart_after_stop(Some("process settings changed by reload".into()));
                self.begin_stop();
            }
            (Plan::Restart, None) | (Plan::InPlace, _) => {}
        }
        reload::applied(&diff, plan, self.lifecycle.state() == PluginState::Running)
    }

    /// Forgets the connection, so no new call can start on it.
    fn drop_client(&mut self) {
        if let Some(spawn) = &mut self.spawn {
            spawn.drop_client();
        }
        self.target.send_modify(|p| p.call = None);
    }

    /// Ends the process now with SIGKILL to its group, reporting `reason`.
    fn kill(&mut self, reason: ExitReason) {
        self.target.send_modify(|p| p.call = None);
        if let Some(spawn) = &mut self.spawn {
            spawn.kill(reason);
        }
    }

    /// Asks the process to shut down, escalating to signals on deadlines.
    fn begin_stop(&mut self) {
        if self.ending() {
            return;
        }
        self.set_state(PluginState::Stopping);
        self.target.send_modify(|p| p.call = None);
        let (stop, kill) = (self.spec.stop_timeout, self.spec.kill_timeout);
        let signal = self.spec.stop_signal.0;
        if let Some(spawn) = &mut self.spawn {
            spawn.begin_stop(stop, kill, signal);
        }
    }

    fn on_exit(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        let Some(spawn) = self.spawn.take() else {
            return;
        };
        let Reaped {
            pid,
            reason,
            ran,
            waiters,
            restart_note,
            last_stderr,
        } = spawn.reap(status);
        self.target.send_modify(|p| p.call = None);
        tracing::info!(pid, reason = %reason, "exited");
        let plan = self.plan_after_end(reason.clone(), Some(pid), ran, restart_note, last_stderr);
        self.follow(plan, reason);
        self.publish_row();
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// Tells the lifecycle a process ended (or could not start) and returns
    /// what its restart policy says follows.
    fn plan_after_end(
        &mut self,
        reason: ExitReason,
        pid: Option<u32>,
        ran: Duration,
        restart_note: Option<String>,
        last_stderr: Vec<String>,
    ) -> ExitPlan {
        self.meter.exited(&reason);
        let spec = &self.spec;
        self.lifecycle.exited(Ended {
            reason,
            pid,
            ran,
            last_stderr,
            restart_note,
            rules: Rules {
                policy: spec.restart,
                success_codes: &spec.success_codes,
                backoff: &spec.backoff,
                limit: &spec.restart_limit,
            },
            name: &spec.name,
            now: Instant::now(),
            random: fastrand::f64(),
        })
    }

    /// Enters the states an exit's plan names.
    fn follow(&mut self, plan: ExitPlan, reason: ExitReason) {
        let after = match plan {
            ExitPlan::Requested { to, note } => {
                return self.transition(to, Some(reason), note);
            }
            ExitPlan::OnItsOwn(after) => after,
        };
        self.transition(PluginState::Exited, Some(reason.clone()), None);
        match after {
            AfterExit::Stay => {}
            AfterExit::GiveUp { note } => {
                tracing::error!("{note}");
                self.transition(PluginState::Failed, Some(reason), Some(note));
            }
            AfterExit::RestartNow | AfterExit::Backoff { .. } => {
                let _ = self.events.send(Event::Restarting {
                    name: Arc::clone(&self.name),
                });
                if let AfterExit::Backoff { delay, note } = after {
                    self.backoff = Some(tokio::time::Instant::now() + delay);
                    self.transition(PluginState::Backoff, None, Some(note));
                } else {
                    self.transition(PluginState::Waiting, None, Some("restarting".into()));
                }
            }
        }
    }
}

async fn next_event(spawn: &mut Option<Spawn>) -> SpawnEvent {
    match spawn {
        Some(spawn) => spawn.next().await,
        None => std::future::pending().await,
    }
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How often the plugin's processes are walked and judged.
fn sample_every(spec: &PluginSpec) -> std::time::Duration {
    let limited = spec.memory_max.is_some() || spec.memory_high.is_some();
    health::sample_every(limited, spec.memory_check_interval)
}
