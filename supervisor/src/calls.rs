//! Calls between plugins. A plugin's bus connection and the control API
//! hand each call to the fleet's router through a [`Calls`] handle (a
//! [`Route`]); the fleet's router finds the target, checks both sides'
//! permissions ([`rules`]) and calls it on its live connection, never
//! through the bus's queues. A streamed reply is an [`Upstream`] its
//! consumer pulls, one piece at a time; the streams a connection holds are
//! its [`Streams`], bounded and dropped with it.

pub mod rules;
mod upstream;

use std::sync::Arc;
use std::time::Instant;

use corral_proto::{ErrorReply, Payload, PluginEntry, PluginStatus};
use futures::future::BoxFuture;

pub use rules::Access;
pub use upstream::{MAX_OPEN_STREAMS, Piece, STREAM_IDLE, Streams, Upstream};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An operator, through the control socket: every action is callable.
    Cli,
    /// A plugin, within its permissions.
    Plugin(Arc<str>),
}

/// One call, as its caller asked for it.
#[derive(Debug)]
pub struct CallRequest {
    /// Who asks.
    pub caller: Caller,
    /// The plugin called: a plugin's name (its running instances take turns)
    /// or an instance's.
    pub plugin: String,
    /// Its action.
    pub action: String,
    /// The payload.
    pub payload: Payload,
    /// The caller's deadline, which caps the target's `call_timeout`.
    pub deadline: Option<Instant>,
    /// Whether a target that is not running is waited for, until the deadline.
    pub wait: bool,
}

/// Where calls go: the fleet's router, behind a trait
/// so this module needs nothing of the plugins it reaches.
pub trait Route: Send + Sync + std::fmt::Debug {
    /// Makes one call.
    fn call(&self, call: CallRequest) -> BoxFuture<'static, Result<Payload, ErrorReply>>;
    /// Opens a streamed call.
    fn stream(&self, call: CallRequest) -> BoxFuture<'static, Result<Upstream, ErrorReply>>;
    /// The fleet's plugins, states and declared actions.
    fn plugins(&self) -> BoxFuture<'static, Vec<PluginEntry>>;
    /// Every plugin's status row.
    fn statuses(&self) -> BoxFuture<'static, Vec<PluginStatus>>;
}

/// The way to the fleet's router. Cheap to clone. A call runs in its
/// caller's task: dropping its future (the caller went away) stops it, and
/// cancels the call into the target.
#[derive(Debug, Clone)]
pub struct Calls {
    route: Arc<dyn Route>,
}

impl Calls {
    /// A handle on `route`.
    pub fn new(route: Arc<dyn Route>) -> Self {
        Self { route }
    }

    /// Makes one call.
    pub async fn call(&self, call: CallRequest) -> Result<Payload, ErrorReply> {
        self.route.call(call).await
    }

    /// Opens a streamed call.
    pub async fn stream(&self, call: CallRequest) -> Result<Upstream, ErrorReply> {
        self.route.stream(call).await
    }

    /// Opens a streamed call and keeps it among `streams`; returns its id.
    pub async fn open_stream(
        &self,
        streams: &Streams,
        call: CallRequest,
    ) -> Result<u64, ErrorReply> {
        streams.add(self.stream(call).await?)
    }

    /// The fleet's plugins, states and declared actions.
    pub async fn plugins(&self) -> Vec<PluginEntry> {
        self.route.plugins().await
    }

    /// Every plugin's status row, as `ps` shows them.
    pub async fn statuses(&self) -> Vec<PluginStatus> {
        self.route.statuses().await
    }
}
