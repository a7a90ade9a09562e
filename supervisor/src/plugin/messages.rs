//! What crosses the plugin actor's edges: the messages its handle sends, the
//! live connection it publishes for callers, what it reports to the root
//! supervisor, and what it did with new settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::{ActionInfo, PluginApiClient, PluginInfo, PluginState, PluginStatus};
use tokio::sync::oneshot;

use crate::calls::Access;
use crate::config::PluginSpec;
use crate::rate::Limiter;

/// Messages a [`PluginHandle`](super::PluginHandle) sends to its actor.
pub(super) enum Msg {
    Info(oneshot::Sender<PluginInfo>),
    /// Sample its memory again if the last sample is stale (sent by a
    /// status read that found it so; nobody waits for it).
    Refresh,
    /// Spawn now (sent by the supervisor to a `waiting` plugin).
    Start(oneshot::Sender<()>),
    /// Go to `waiting` if down; `reset` clears the restart count. Answered
    /// once done, so the status read next shows it.
    Wait {
        reset: bool,
        note: String,
        reply: oneshot::Sender<()>,
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

/// What a plugin's config says of it to the rest of the fleet: what it
/// requires, whom it may call and who may call it, and the actions it
/// declares. Published by its actor, as it last took them from the config.
#[derive(Debug)]
pub struct Terms {
    /// The plugins it requires.
    pub requires: Arc<[String]>,
    /// Its call permissions.
    pub access: Access,
    /// The actions its manifest declares.
    pub actions: Vec<ActionInfo>,
    /// Its routes behind the HTTP face's gateway, if it has any.
    pub routes: Option<crate::config::Routes>,
    /// Whether the gateway proxies its routes to its port (else it calls
    /// them over RPC).
    pub proxied: bool,
    /// How long a call into it (or a proxied request) may take.
    pub call_timeout: Duration,
    /// Its `config` table, with the schema it was checked against.
    pub config: crate::config::PluginConfig,
    /// Its manifest, if it has one.
    pub manifest: Option<std::path::PathBuf>,
}

impl Terms {
    /// The terms `spec` sets.
    pub fn of(spec: &PluginSpec) -> Self {
        let calls = &spec.calls;
        Self {
            requires: spec.requires.clone().into(),
            access: Access::new(&calls.allow, &calls.deny, calls.callers.as_deref()),
            actions: spec.actions.clone(),
            routes: spec.routes.clone(),
            proxied: spec.port.is_some(),
            call_timeout: spec.call_timeout,
            config: spec.config.clone(),
            manifest: spec.manifest.clone(),
        }
    }
}

/// What a plugin actor publishes for its handles to read without asking it.
pub(super) struct Outlets {
    /// Its state and live connection.
    pub(super) target: tokio::sync::watch::Sender<Presence>,
    /// Its `ps` row.
    pub(super) row: tokio::sync::watch::Sender<Option<Row>>,
    /// Its call figures.
    pub(super) meter: Arc<super::meter::Meter>,
    /// What its config says to the fleet.
    pub(super) terms: tokio::sync::watch::Sender<Arc<Terms>>,
    /// Whether a handle asked for a new memory sample not yet taken (so
    /// readers ask once, however often they read).
    pub(super) refresh_asked: Arc<std::sync::atomic::AtomicBool>,
}

/// A plugin's `ps` row as its actor last left it, published at every
/// change (a transition, a memory sample, a notify status, new settings)
/// before the actor answers whoever caused it, so status is read without a
/// round trip through the actor and never waits behind a start. What
/// changes with time alone is completed when read ([`Row::now`]).
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) status: PluginStatus,
    /// Since when its process has run connected, for `uptime_ms`.
    pub(super) running_since: Option<Instant>,
    /// When its backoff ends, while in `backoff`, for `backoff_ms`.
    pub(super) backoff_until: Option<tokio::time::Instant>,
    /// When its memory was last sampled, while it has a process.
    pub(super) sampled_at: Option<Instant>,
}

impl Row {
    /// Whether its process's last memory sample is too old for `ps` (one
    /// is taken as it starts).
    pub(super) fn stale(&self) -> bool {
        self.sampled_at.is_some_and(super::health::sample_stale)
    }

    /// The row as of now, with `calls` handed to it so far.
    pub(super) fn now(&self, calls: u64) -> PluginStatus {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut status = self.status.clone();
        status.uptime_ms = self.running_since.map_or(0, |t| ms(t.elapsed()));
        status.backoff_ms = match (status.state, self.backoff_until) {
            (PluginState::Backoff, Some(at)) => {
                Some(ms(at.saturating_duration_since(tokio::time::Instant::now())))
            }
            _ => None,
        };
        status.calls = calls;
        status
    }
}

/// What callers see of a plugin now, published by its actor at every
/// change: its state, its process's port, and the connection to call it
/// through (`Some` exactly while it is `running` and may be called).
#[derive(Clone, Debug)]
pub(super) struct Presence {
    pub(super) state: PluginState,
    pub(super) port: Option<u16>,
    /// The secret the gateway's proxied requests to its port carry.
    pub(super) gateway_secret: Option<Arc<str>>,
    pub(super) call: Option<CallTarget>,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            state: PluginState::Waiting,
            port: None,
            gateway_secret: None,
            call: None,
        }
    }
}

/// A live connection to call a plugin through; published by the actor
/// exactly while the plugin is `running`.
#[derive(Clone, Debug)]
pub(super) struct CallTarget {
    pub(super) client: PluginApiClient,
    /// The process it reaches.
    pub(super) pid: u32,
    pub(super) call_timeout: Duration,
    pub(super) limiter: Option<Arc<Limiter>>,
    /// Whether it serves streamed replies (it named the `streams` feature).
    pub(super) streams: bool,
}

/// What a plugin actor did with new settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing changed.
    Unchanged,
    /// Settings that need no restart were applied in place.
    Updated,
    /// Only `config` changed and the plugin runs: hand it over with
    /// [`PluginHandle::reconfigure`](super::PluginHandle::reconfigure).
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
