//! The root supervisor actor: owns the fleet (one [`PluginHandle`] per
//! plugin), starts `waiting` plugins once what they require is running,
//! applies the restart strategy when a plugin's policy restarts it, and runs
//! the fleet-wide stop (dependents first). It keeps only each plugin's last
//! reported state; each plugin actor owns the rest of its own.
//!
//! `corral up`, which assembles this actor with the control server, signals
//! and the runtime directory, lives in `daemon`.

use std::sync::Arc;

use std::collections::{HashMap, HashSet};

use corral_proto::{HookFailure, PluginState, PluginStatus, ReloadReport};
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use std::path::PathBuf;

use crate::bus::BusHandle;
use crate::calls::Calls;
use crate::config::{ConfigError, Fleet, PluginSpec};
use crate::deps::{Graph, Links};
use crate::os::cgroup::Cgroups;
use crate::pacing::Pacing;
use crate::plugin::{Applied, Event, Host, PluginHandle};
use crate::restart::Strategy;

enum Msg {
    Plugins(oneshot::Sender<Vec<PluginHandle>>),
    Shutdown(oneshot::Sender<()>),
    Reload(oneshot::Sender<Result<Reloaded, ConfigError>>),
}

/// What the root actor applied of a reload, and the reload hooks left to
/// run: those run in the caller's task, so a slow hook holds up only the
/// reload that asked for it, never the fleet.
struct Reloaded {
    report: ReloadReport,
    /// Running plugins whose `config` alone changed, with the new config.
    hooks: Vec<(PluginHandle, serde_json::Value)>,
}

/// The way to reach the root supervisor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SupervisorHandle {
    tx: mpsc::Sender<Msg>,
    ready: watch::Receiver<bool>,
    bus: BusHandle,
    calls: Calls,
    fleet: crate::router::Fleet,
    file: Arc<std::path::Path>,
    /// The fleet's forced stop steps so far when its shutdown began.
    forced_at_shutdown: watch::Receiver<Option<u64>>,
}

impl SupervisorHandle {
    /// Whether the fleet's shutdown (once there was one) stopped every
    /// plugin on request, without a signal past its `stop_timeout` or a
    /// SIGKILL; `None` before any shutdown began.
    pub fn stopped_cleanly(&self) -> Option<bool> {
        let before = (*self.forced_at_shutdown.borrow())?;
        Some(forced_stops(&self.fleet_now()) == before)
    }

    /// The fleet file.
    pub fn fleet_file(&self) -> &std::path::Path {
        &self.file
    }

    /// Every plugin's handle now, without asking the root actor (as the
    /// last start or reload left the fleet).
    pub fn fleet_now(&self) -> Arc<[PluginHandle]> {
        Arc::clone(&self.fleet.borrow())
    }

    /// The fleet's event bus.
    pub fn bus(&self) -> &BusHandle {
        &self.bus
    }

    /// The fleet's call router.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Resolves once the initial fleet has settled: no plugin is still
    /// starting, and none waits for a plugin that may yet run.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Whether the initial fleet has settled (see [`ready`](Self::ready)).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Every plugin's handle, in start order.
    pub async fn plugins(&self) -> Vec<PluginHandle> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Plugins(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// One plugin's handle.
    pub async fn plugin(&self, name: &str) -> Option<PluginHandle> {
        self.plugins().await.into_iter().find(|p| p.name() == name)
    }

    /// Every plugin's status row, as each actor last published it (so a
    /// start or restart in progress never holds it up); a `waiting` plugin
    /// names the first plugin it requires that is not running. Bus figures
    /// come from the bus in one request for the whole fleet.
    pub async fn ps(&self) -> Vec<PluginStatus> {
        let fleet = self.fleet_now();
        let (mut rows, mut plugins) = (Vec::new(), Vec::new());
        for plugin in fleet.iter() {
            if let Some(row) = plugin.status().await {
                rows.push(row);
                plugins.push(plugin);
            }
        }
        let running: HashSet<String> = rows
            .iter()
            .filter(|r| r.state == PluginState::Running)
            .map(|r| r.name.clone())
            .collect();
        let requires: Vec<_> = plugins.iter().map(|p| p.requires()).collect();
        let graph = Graph::new(
            plugins
                .iter()
                .zip(&requires)
                .map(|(p, r)| (p.name(), &r[..])),
        );
        for (row, plugin) in rows.iter_mut().zip(&plugins) {
            if row.state == PluginState::Waiting {
                row.waiting_for = graph
                    .unmet(plugin.name(), |r| running.contains(r))
                    .map(String::from);
            }
        }
        let traffic: HashMap<Arc<str>, _> = self
            .bus
            .traffic()
            .await
            .into_iter()
            .map(|t| (Arc::clone(&t.name), t))
            .collect();
        for row in &mut rows {
            if let Some(t) = traffic.get(row.name.as_str()) {
                row.bus_in = t.delivered;
                row.bus_out = t.published;
            }
        }
        rows
    }

    /// Re-reads the fleet config and applies only the difference. A config
    /// that does not validate changes nothing. Returns once every reload
    /// hook has answered: a plugin is reported `reconfigured` only once its
    /// hook accepted the new config; one whose hook failed was restarted,
    /// and is reported so.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ConfigError {
            problems: vec![crate::config::Problem {
                file: String::new(),
                key: String::new(),
                message: "the supervisor is shutting down".into(),
            }],
        };
        self.tx.send(Msg::Reload(tx)).await.map_err(|_| gone())?;
        let Reloaded { mut report, hooks } = rx.await.map_err(|_| gone())??;
        let outcomes = join_all(
            hooks
                .iter()
                .map(|(handle, config)| handle.reconfigure(config.clone())),
        )
        .await;
        for ((handle, _), outcome) in hooks.iter().zip(outcomes) {
            let name = handle.name().to_string();
            match outcome {
                Ok(()) => report.reconfigured.push(name),
                Err(error) => {
                    report.restarted.push(name.clone());
                    report.failed_hooks.push(HookFailure {
                        plugin: name,
                        error,
                    });
                }
            }
        }
        Ok(report)
    }

    /// Stops every plugin, dependents before what they require; returns once
    /// all are reaped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the root actor and one actor per plugin, which start in
/// dependency order. The watch turns true once a shutdown has completed.
pub fn start(fleet: &Fleet, cgroups: Arc<Cgroups>) -> (SupervisorHandle, watch::Receiver<bool>) {
    let (tx, mailbox) = mpsc::channel(64);
    let (done, done_rx) = watch::channel(false);
    let (forced_at_shutdown, forced_rx) = watch::channel(None);
    // A fleet of no plugin has settled from the start.
    let (ready, ready_rx) = watch::channel(fleet.plugins.is_empty());
    let (events_tx, events) = mpsc::unbounded_channel();
    let settings = Arc::new(fleet.supervisor.clone());
    let bus = BusHandle::spawn();
    let (handles, fleet_rx) = watch::channel::<Arc<[PluginHandle]>>(Arc::from([]));
    let calls = crate::router::Router::calls(fleet_rx.clone());
    let host = Host {
        settings: Arc::clone(&settings),
        cgroups,
        bus: bus.clone(),
        http: crate::plugin::probe_client(),
        calls: calls.clone(),
    };
    let links = links_of(fleet);
    let plugins: Vec<_> = fleet
        .plugins
        .iter()
        .map(|spec| PluginHandle::spawn(spec.clone(), host.clone(), events_tx.clone()))
        .collect();
    handles.send_replace(handles_of(&plugins));
    let actor = Supervisor {
        file: fleet.file.clone(),
        host,
        specs: fleet
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect(),
        events_tx,
        states: vec![None; plugins.len()],
        unsettled: plugins.len(),
        plugins,
        links,
        strategy: fleet.supervisor.strategy,
        fleet: handles,
        mailbox,
        events,
        done,
        ready,
        shutting_down: false,
        forced_at_shutdown,
        pacing: Pacing::for_this_machine(),
        deferred: false,
    };
    tokio::spawn(actor.run());
    (
        SupervisorHandle {
            tx,
            ready: ready_rx,
            bus,
            calls,
            fleet: fleet_rx,
            file: fleet.file.as_path().into(),
            forced_at_shutdown: forced_rx,
        },
        done_rx,
    )
}

/// Stop steps that had to signal a plugin, over the fleet.
fn forced_stops(fleet: &[PluginHandle]) -> u64 {
    fleet.iter().map(PluginHandle::forced_stops).sum()
}

/// The handles of `plugins`, for the call router.
fn handles_of(plugins: &[(PluginHandle, JoinHandle<()>)]) -> Arc<[PluginHandle]> {
    plugins.iter().map(|(h, _)| h.clone()).collect()
}

struct Supervisor {
    /// Every plugin's handle, for the call router.
    fleet: watch::Sender<Arc<[PluginHandle]>>,
    /// The fleet file, re-read on reload.
    file: PathBuf,
    /// What plugin actors get: settings in force, cgroups.
    host: Host,
    /// Each plugin's settings in force.
    specs: HashMap<String, PluginSpec>,
    events_tx: mpsc::UnboundedSender<Event>,
    /// In start order.
    plugins: Vec<(PluginHandle, JoinHandle<()>)>,
    /// Each plugin's last reported state, by its place in `plugins`.
    states: Vec<Option<PluginState>>,
    /// How many plugins have not reported or are `starting`: the fleet
    /// cannot have settled while any is.
    unsettled: usize,
    /// The `requires` graph of `plugins`, by place.
    links: Links,
    strategy: Strategy,
    mailbox: mpsc::Receiver<Msg>,
    events: mpsc::UnboundedReceiver<Event>,
    done: watch::Sender<bool>,
    /// The fleet's forced stop steps when the shutdown began, for
    /// [`SupervisorHandle::stopped_cleanly`].
    forced_at_shutdown: watch::Sender<Option<u64>>,
    ready: watch::Sender<bool>,
    shutting_down: bool,
    /// How many start at once.
    pacing: Pacing,
    /// Whether a plugin ready to start waits for a slot.
    deferred: bool,
}

impl Supervisor {
    async fn run(mut self) {
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut stopping: Option<JoinHandle<()>> = None;
        loop {
            let next_slot = if self.deferred {
                self.pacing.next_free()
            } else {
                None
            };
            tokio::select! {
                () = at(next_slot) => self.start_deferred(),
                msg = self.mailbox.recv() => match msg {
                    Some(Msg::Plugins(reply)) => {
                        let _ = reply.send(self.plugins.iter().map(|(h, _)| h.clone()).collect());
                    }
                    Some(Msg::Shutdown(reply)) => {
                        waiters.push(reply);
                        if *self.done.borrow() {
                            waiters.drain(..).for_each(|w| { let _ = w.send(()); });
                        } else if stopping.is_none() {
                            self.shutting_down = true;
                            let fleet = handles_of(&self.plugins);
                            self.forced_at_shutdown.send_replace(Some(forced_stops(&fleet)));
                            stopping = Some(tokio::spawn(stop_in_order(self.stop_levels())));
                        }
                    }
                    Some(Msg::Reload(reply)) => {
                        let report = if self.shutting_down {
                            Ok(Reloaded { report: ReloadReport::default(), hooks: Vec::new() })
                        } else {
                            self.reload().await
                        };
                        let _ = reply.send(report);
                    }
                    None => break,
                },
                Some(event) = self.events.recv() => self.on_event(event),
                _ = async { match stopping.as_mut() { Some(h) => { let _ = h.await; } None => std::future::pending().await } } => {
                    stopping = None;
                    tracing::info!("every plugin is stopped");
                    let _ = self.done.send(true);
                    waiters.drain(..).for_each(|w| { let _ = w.send(()); });
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::State { name, state } => {
                let Some(i) = self.links.position(&name) else {
                    return; // removed by a reload, still winding down
                };
                self.set_state(i, state);
                if state != PluginState::Starting {
                    self.pacing.release(i);
                }
                if !self.shutting_down {
                    self.start_ready(&self.links.touched_by(i));
                    if self.deferred {
                        self.start_deferred();
                    }
                }
                if !*self.ready.borrow() && self.unsettled == 0 && self.settled() {
                    tracing::info!("the fleet is up");
                    let _ = self.ready.send(true);
                }
            }
            Event::Restarting { name } if !self.shutting_down => self.apply_strategy(&name),
            Event::Restarting { .. } => {}
        }
    }

    /// Applies a re-read config: starts added plugins, stops removed ones,
    /// and hands each kept plugin its new settings.
    async fn reload(&mut self) -> Result<Reloaded, ConfigError> {
        let fleet = crate::config::load(&self.file)?;
        let mut report = ReloadReport::default();
        let mut hooks = Vec::new();
        if fleet.supervisor.runtime_dir != self.host.settings.runtime_dir {
            report.needs_restart.push("supervisor.runtime_dir".into());
        }
        if fleet.supervisor.log_dir != self.host.settings.log_dir {
            report.needs_restart.push("supervisor.log_dir".into());
        }
        self.strategy = fleet.supervisor.strategy;
        let old_states: HashMap<String, Option<PluginState>> = self
            .plugins
            .iter()
            .zip(&self.states)
            .map(|((h, _), s)| (h.name().to_string(), *s))
            .collect();
        let mut old: HashMap<String, (PluginHandle, JoinHandle<()>)> = self
            .plugins
            .drain(..)
            .map(|(h, t)| (h.name().to_string(), (h, t)))
            .collect();
        for spec in &fleet.plugins {
            let name = spec.name.clone();
            match old.remove(&name) {
                Some((handle, task)) => {
                    match handle.update(spec.clone()).await {
                        Applied::Unchanged => report.unchanged.push(name.clone()),
                        Applied::Updated | Applied::Stopped => report.updated.push(name.clone()),
                        Applied::Started => report.added.push(name.clone()),
                        Applied::Restarted => report.restarted.push(name.clone()),
                        Applied::Reconfigure => {
                            hooks.push((handle.clone(), spec.config.for_plugin().clone()));
                        }
                    }
                    self.plugins.push((handle, task));
                }
                None => {
                    report.added.push(name.clone());
                    let (handle, task) = PluginHandle::spawn(
                        spec.clone(),
                        self.host.clone(),
                        self.events_tx.clone(),
                    );
                    self.plugins.push((handle, task));
                }
            }
            self.specs.insert(name, spec.clone());
        }
        for (name, (handle, _task)) in old {
            report.removed.push(name.clone());
            self.specs.remove(&name);
            // The actor ends once stopped and its last handle is gone.
            tokio::spawn(async move { handle.stop().await });
        }
        self.links = links_of(&fleet);
        // Slots are held by place, and the places may have moved: a
        // reload frees them all (each was held 10 ms at most anyway).
        self.pacing = Pacing::for_this_machine();
        self.fleet.send_replace(handles_of(&self.plugins));
        self.states = self
            .plugins
            .iter()
            .map(|(h, _)| old_states.get(h.name()).copied().flatten())
            .collect();
        self.unsettled = self.states.iter().filter(|s| unsettled(**s)).count();
        tracing::info!(?report, "reloaded {}", self.file.display());
        self.start_ready(&(0..self.plugins.len()).collect::<Vec<_>>());
        Ok(Reloaded { report, hooks })
    }

    /// Records plugin `i`'s state, keeping the count of unsettled plugins.
    fn set_state(&mut self, i: usize, state: PluginState) {
        let before = unsettled(self.states[i]);
        self.states[i] = Some(state);
        match (before, unsettled(Some(state))) {
            (true, false) => self.unsettled -= 1,
            (false, true) => self.unsettled += 1,
            _ => {}
        }
    }

    /// True when every plugin has reported, none is starting, and none waits
    /// for a plugin that may still come up.
    fn settled(&self) -> bool {
        let may_run = |j: usize| {
            matches!(
                self.states[j],
                None | Some(
                    PluginState::Waiting
                        | PluginState::Starting
                        | PluginState::Running
                        | PluginState::Backoff
                )
            )
        };
        (0..self.plugins.len()).all(|i| match self.states[i] {
            None | Some(PluginState::Starting) => false,
            Some(PluginState::Waiting) => self.links.unmet(i, |j| !may_run(j)).is_some(),
            Some(_) => true,
        })
    }

    /// Starts every `waiting` plugin among `candidates` whose requirements
    /// are all running. Each is marked `starting` at once, so the events that
    /// follow do not send it again; its own events then report where it
    /// really is. Only the candidates are looked at: a state change can only
    /// make the plugin itself or those that require it ready.
    fn start_ready(&mut self, candidates: &[usize]) {
        let is = |i: usize, state| self.states[i] == Some(state);
        let ready = self.links.ready(
            candidates,
            |i| is(i, PluginState::Waiting),
            |i| is(i, PluginState::Running),
        );
        let now = tokio::time::Instant::now();
        let room = self.pacing.room(now);
        if ready.len() > room {
            self.deferred = true;
        }
        for i in ready.into_iter().take(room) {
            self.pacing.take(i, now);
            self.set_state(i, PluginState::Starting);
            let plugin = self.plugins[i].0.clone();
            tokio::spawn(async move { plugin.start().await });
        }
    }

    /// Starts what was ready but found no slot, as far as slots allow.
    fn start_deferred(&mut self) {
        self.deferred = false;
        if self.shutting_down {
            return;
        }
        let every: Vec<usize> = (0..self.plugins.len()).collect();
        self.start_ready(&every);
    }

    /// Restarts what the strategy says goes with `name`.
    fn apply_strategy(&self, name: &str) {
        let Some(i) = self.links.position(name) else {
            return;
        };
        let (others, strategy): (Vec<usize>, _) = match self.strategy {
            Strategy::OneForOne => return,
            Strategy::RestForOne => (self.links.dependents(i), "rest_for_one"),
            Strategy::OneForAll => (
                (0..self.plugins.len()).filter(|&j| j != i).collect(),
                "one_for_all",
            ),
        };
        for j in others {
            let up = self.states[j].is_some_and(|s| s.has_process() || s == PluginState::Backoff);
            if up {
                let plugin = self.plugins[j].0.clone();
                let note = format!("restarted with `{name}` ({strategy})");
                tokio::spawn(async move { plugin.restart(note).await });
            }
        }
    }

    /// Plugins grouped for stopping: dependents before what they require.
    fn stop_levels(&self) -> Vec<Vec<PluginHandle>> {
        self.graph()
            .stop_levels()
            .iter()
            .map(|level| self.handles(level))
            .collect()
    }

    /// The `requires` graph of the plugins in force, in start order.
    fn graph(&self) -> Graph<'_> {
        Graph::new(self.plugins.iter().map(|(p, _)| {
            let requires = self
                .specs
                .get(p.name())
                .map_or(&[][..], |s| &s.requires[..]);
            (p.name(), requires)
        }))
    }

    /// The handles of the plugins named, in that order.
    fn handles(&self, names: &[&str]) -> Vec<PluginHandle> {
        names
            .iter()
            .filter_map(|n| self.links.position(n))
            .map(|i| self.plugins[i].0.clone())
            .collect()
    }
}

/// Whether a plugin in `state` keeps the fleet from having settled.
fn unsettled(state: Option<PluginState>) -> bool {
    matches!(state, None | Some(PluginState::Starting))
}

/// The `requires` links of a fleet's plugins, in start order (the order of
/// the root actor's `plugins`).
fn links_of(fleet: &Fleet) -> Links {
    Links::new(
        fleet
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.requires.as_slice())),
    )
}

async fn stop_in_order(levels: Vec<Vec<PluginHandle>>) {
    for level in levels {
        join_all(level.iter().map(PluginHandle::stop)).await;
    }
}

/// Resolves at `t`; never without one.
async fn at(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
