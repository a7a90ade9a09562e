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
//! crossing. Where a [cgroup](crate::os::cgroup) can be made, the kernel enforces
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
//! heartbeats or status. The handles count the calls they hand over, in a
//! counter the actor reads for `ps`.
//!
//! When a process ends, the plugin's [restart policy](crate::restart)
//! decides: stay `exited`, go to `backoff` for the computed delay, or give up
//! (`failed`). A plugin about to (re)start goes to `waiting`; the root
//! supervisor starts it once every plugin it requires is running. Every
//! transition is kept (the last [`HISTORY`]) and reported to the supervisor
//! as an [`Event`].
//!
//! The handle lives here; the rest is split by what it owns:
//! `messages` (what crosses the actor's edges), `actor` (the loop),
//! `lifecycle` (state machine and history, pure), `process` (one spawn's
//! life: the value that exists only while a process runs), `connect` (the
//! handshake task), `health` (heartbeat and memory verdicts, pure), `stop`
//! (the escalation schedule, pure), and `reload` (what new settings
//! change, pure).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_proto::{
    CallStats, ErrorReply, ExitReason, Payload, PluginInfo, PluginStatus, Protocol, codes,
};
use tarpc::client::RpcError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::bus::BusHandle;
use crate::calls::{Calls, Upstream};
use crate::config::{PluginSpec, SupervisorSettings};
use crate::os::cgroup::Cgroups;

mod actor;
mod connect;
mod health;
mod lifecycle;
mod messages;
pub mod meter;
mod notify;
mod output;
mod probe;
mod process;
mod program;
mod reload;
mod sandbox;
mod start;
mod stop;

pub use probe::client as probe_client;

use actor::Actor;
use lifecycle::round_ms;
use messages::{CallTarget, Msg, Outlets, Presence, Row};
use meter::Meter;

pub use messages::Terms;

/// Calls a plugin made to others: routed, and refused.
#[derive(Debug, Default)]
struct CallCounts {
    made: AtomicU64,
    denied: AtomicU64,
}

pub use lifecycle::HISTORY;

/// How long a caller whose call died waits to learn the plugin's exit reason.
const EXIT_REASON_WAIT: Duration = Duration::from_secs(2);
pub use messages::{Applied, Event};

/// What every plugin actor gets from the supervisor that runs it.
#[derive(Clone, Debug)]
pub struct Host {
    /// The supervisor's settings.
    pub settings: Arc<SupervisorSettings>,
    /// The cgroup tree plugins are capped in, if any.
    pub cgroups: Arc<Cgroups>,
    /// The event bus.
    pub bus: BusHandle,
    /// The HTTP client every plugin's `http` health probe shares.
    pub http: reqwest::Client,
    /// The fleet's call router, for calls a plugin makes.
    pub calls: Calls,
}

/// The deadline of a call into a plugin whose `call_timeout` is `timeout`,
/// for a caller whose own deadline is `theirs`; and that limit in words.
fn capped(theirs: Option<Instant>, timeout: Duration) -> (Instant, String) {
    let own = Instant::now() + timeout;
    match theirs {
        Some(theirs) if theirs < own => (
            theirs,
            format!(
                "the caller's deadline ({} left)",
                humantime::format_duration(round_ms(
                    theirs.saturating_duration_since(Instant::now())
                ))
            ),
        ),
        _ => (own, humantime::format_duration(timeout).to_string()),
    }
}

/// The way to reach one plugin's actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PluginHandle {
    name: Arc<str>,
    /// What it requires and whom it may call, as its actor last took from
    /// the config.
    terms: watch::Receiver<Arc<Terms>>,
    /// Its calls to other plugins, made and denied.
    made: Arc<CallCounts>,
    tx: mpsc::Sender<Msg>,
    target: watch::Receiver<Presence>,
    /// Its `ps` row, as its actor last published it.
    row: watch::Receiver<Option<Row>>,
    /// Whether a memory sample was asked for and not yet taken.
    refresh_asked: Arc<std::sync::atomic::AtomicBool>,
    /// Its figures, shared by every clone and its actor.
    meter: Arc<Meter>,
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
        let (terms_tx, terms) = watch::channel(Arc::new(Terms::of(&spec)));
        let span = tracing::info_span!("plugin", plugin = %name);
        let (target_tx, target) = watch::channel(Presence::default());
        let (row_tx, row) = watch::channel(None);
        let meter = Arc::new(Meter::default());
        let refresh_asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outlets = Outlets {
            target: target_tx,
            row: row_tx,
            meter: Arc::clone(&meter),
            terms: terms_tx,
            refresh_asked: Arc::clone(&refresh_asked),
        };
        let actor = Actor::new(spec, host, rx, events, outlets);
        let task = tokio::spawn(actor.run().instrument(span));
        (
            Self {
                name,
                terms,
                made: Arc::default(),
                tx,
                target,
                row,
                refresh_asked,
                meter,
            },
            task,
        )
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it takes calls now (it is running, with its connection).
    pub fn callable(&self) -> bool {
        self.target.borrow().call.is_some()
    }

    /// Its state now and the port its process was given, without asking
    /// its actor (for the HTTP gateway, on every request).
    pub fn presence(&self) -> (corral_proto::PluginState, Option<u16>) {
        let presence = self.target.borrow();
        (presence.state, presence.port)
    }

    /// The secret the gateway's proxied requests to its current process
    /// carry, if the gateway proxies to it.
    pub fn gateway_secret(&self) -> Option<Arc<str>> {
        self.target.borrow().gateway_secret.clone()
    }

    /// Stops so far that had to signal it (it did not end on request).
    pub fn forced_stops(&self) -> u64 {
        self.meter.forced_stops()
    }

    /// Calls handed to it so far, over every spawn.
    pub fn calls(&self) -> u64 {
        self.meter.handed()
    }

    /// The plugins it requires, as the last reload left them.
    pub fn requires(&self) -> Arc<[String]> {
        Arc::clone(&self.terms.borrow().requires)
    }

    /// What its config says to the fleet, as the last reload left it.
    pub fn terms(&self) -> Arc<Terms> {
        Arc::clone(&self.terms.borrow())
    }

    /// Counts a call it made to another plugin: routed, or `denied`.
    pub fn count_call(&self, denied: bool) {
        let counter = if denied {
            &self.made.denied
        } else {
            &self.made.made
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Its calls to other plugins so far, made and denied.
    pub fn call_stats(&self) -> CallStats {
        CallStats {
            made: self.made.made.load(Ordering::Relaxed),
            denied: self.made.denied.load(Ordering::Relaxed),
        }
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

    /// The plugin's status row, as its actor last published it (never
    /// waiting on the actor); `None` once the actor has ended.
    pub async fn status(&self) -> Option<PluginStatus> {
        if self.row.has_changed().is_err() {
            return None;
        }
        let calls = self.meter.handed();
        if let Some(row) = self.row.borrow().as_ref() {
            // Fresh figures for the next read (asked once); this one does
            // not wait.
            if row.stale()
                && !self.refresh_asked.swap(true, Ordering::Relaxed)
                && self.tx.try_send(Msg::Refresh).is_err()
            {
                self.refresh_asked.store(false, Ordering::Relaxed);
            }
            return Some(row.now(calls));
        }
        // Its actor has not begun yet: its first row comes as it does.
        let mut first = self.row.clone();
        let row = first.wait_for(Option::is_some).await.ok()?;
        row.as_ref().map(|row| row.now(calls))
    }

    /// The live connection to call it through, within its rate limit;
    /// or why there is none now.
    async fn target(&self) -> Result<CallTarget, ErrorReply> {
        // The actor publishes its live connection; calls take it from there
        // without a round trip through the actor's mailbox.
        let target = self.target.borrow().call.clone();
        let Some(target) = target else {
            let status = self.status().await;
            if status
                .as_ref()
                .is_some_and(|s| s.protocol == Protocol::None)
            {
                return Err(ErrorReply::new(
                    codes::NOT_SUPPORTED,
                    format!(
                        "plugin `{}` runs with protocol = \"none\": it takes no calls",
                        self.name
                    ),
                ));
            }
            let state = status.map_or("shutting down".into(), |s| s.state.to_string());
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
        self.meter.hand();
        Ok(target)
    }

    /// Resolves once it takes calls (at once if it does now).
    pub async fn callable_soon(&self) {
        let mut target = self.target.clone();
        let _ = target.wait_for(|p| p.call.is_some()).await;
    }

    /// Calls one of the plugin's actions, within its `call_timeout` and,
    /// when the caller has one, the caller's `deadline`.
    pub async fn call(
        &self,
        action: String,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<Payload, ErrorReply> {
        let began = Instant::now();
        let answer = self.call_target(action, payload, deadline).await;
        let code = answer.as_ref().err().map(|e| e.code.as_str());
        self.meter.called(code, began.elapsed());
        answer
    }

    /// Its figures now, for `/metrics`.
    pub fn meter(&self) -> meter::Reading {
        self.meter.read()
    }

    async fn call_target(
        &self,
        action: String,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<Payload, ErrorReply> {
        let target = self.target().await?;
        let (deadline, within) = capped(deadline, target.call_timeout);
        let mut ctx = tarpc::context::current();
        ctx.deadline = deadline;
        match target.client.handle(ctx, action.clone(), payload).await {
            // A bincode plugin's reply is raw bytes: forwarded only if JSON.
            Ok(Ok(reply)) => reply.check_json().map(|()| reply).map_err(|e| {
                ErrorReply::bad_payload(format!("`{}` answered `{action}` with {e}", self.name))
            }),
            Ok(reply) => reply,
            Err(RpcError::DeadlineExceeded) => Err(ErrorReply::new(
                codes::TIMEOUT,
                format!("`{}` did not answer `{action}` within {within}", self.name),
            )),
            Err(e) => {
                // Tell the caller why, once the actor knows the exit reason.
                let why = match self.exit_of(target.pid).await {
                    Some(reason) => format!("it ended ({reason})"),
                    None => e.to_string(),
                };
                Err(ErrorReply::new(
                    codes::DISCONNECTED,
                    format!("lost `{}` before it answered `{action}`: {why}", self.name),
                ))
            }
        }
    }

    /// Starts one of its actions with a streamed reply, ending by its
    /// `call_timeout` or the caller's `deadline`, whichever comes first.
    pub async fn stream(
        &self,
        action: String,
        payload: Payload,
        deadline: Option<Instant>,
    ) -> Result<Upstream, ErrorReply> {
        let target = self.target().await?;
        if !target.streams {
            return Err(ErrorReply::new(
                codes::NOT_SUPPORTED,
                format!(
                    "`{}` speaks no streamed replies (its SDK predates them)",
                    self.name
                ),
            ));
        }
        let (deadline, _) = capped(deadline, target.call_timeout);
        Upstream::open(target.client, &self.name, action, payload, deadline).await
    }

    /// Why the process `pid` ended, once its actor has reaped it (waited
    /// for up to [`EXIT_REASON_WAIT`]); `None` if it still runs.
    async fn exit_of(&self, pid: u32) -> Option<ExitReason> {
        let deadline = Instant::now() + EXIT_REASON_WAIT;
        while Instant::now() < deadline {
            let status = self.status().await?;
            if status.pid != Some(pid) {
                return status.last_exit;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Its status rows as its actor publishes them, to wait on changes
    /// without polling.
    pub fn watch_status(&self) -> StatusWatch {
        StatusWatch {
            row: self.row.clone(),
            meter: Arc::clone(&self.meter),
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
        let note = note.into();
        self.ask(|reply| Msg::Wait { reset, note, reply }).await;
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
    /// that fails, restarts it so the config applies through `on_load`, and
    /// returns what the hook said.
    pub async fn reconfigure(&self, config: serde_json::Value) -> Result<(), String> {
        let target = self.target.borrow().call.clone();
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
        if let Err(why) = &outcome {
            tracing::warn!(plugin = %self.name, "on_reload failed ({why}); restarting it instead");
            self.restart(format!("on_reload failed: {why}")).await;
        }
        outcome
    }

    /// Stops the plugin, then puts it in `waiting`; returns once stopped.
    pub async fn restart(&self, note: impl Into<String>) {
        let note = note.into();
        self.ask(|reply| Msg::Restart { note, reply }).await;
    }
}

/// A plugin's status rows as its actor publishes them
/// ([`PluginHandle::watch_status`]).
#[derive(Debug)]
pub struct StatusWatch {
    row: watch::Receiver<Option<Row>>,
    meter: Arc<Meter>,
}

impl StatusWatch {
    /// The row now, marked seen; `None` before its actor began.
    pub fn now(&mut self) -> Option<PluginStatus> {
        let calls = self.meter.handed();
        self.row.borrow_and_update().as_ref().map(|r| r.now(calls))
    }

    /// Resolves once a row newer than the last seen is published; `false`
    /// once its actor has ended.
    pub async fn changed(&mut self) -> bool {
        self.row.changed().await.is_ok()
    }
}
