//! Calls between plugins. A plugin's bus connection and the control API
//! hand each call to the fleet's router through a [`Calls`] handle; the
//! router (`crate::router`) finds the target, checks both sides'
//! permissions ([`rules`]) and calls it on its live connection, never
//! through the bus's queues. A streamed reply is an [`Upstream`] its
//! consumer pulls, one piece at a time; the streams a connection holds are
//! its [`Streams`], bounded and dropped with it.

pub mod rules;
mod upstream;

use std::sync::Arc;
use std::time::Instant;

use corral_proto::{ErrorReply, Payload, PluginEntry, codes};
use tokio::sync::{mpsc, oneshot};

pub use rules::Access;
pub use upstream::{MAX_OPEN_STREAMS, STREAM_IDLE, Streams, Upstream};

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

/// What the router is asked.
#[derive(Debug)]
pub enum Request {
    /// One call, answered with its reply.
    Call {
        /// The call.
        call: CallRequest,
        /// Its reply.
        reply: oneshot::Sender<Result<Payload, ErrorReply>>,
    },
    /// A streamed call, answered with the stream to pull.
    Stream {
        /// The call.
        call: CallRequest,
        /// The stream, or why there is none.
        reply: oneshot::Sender<Result<Upstream, ErrorReply>>,
    },
    /// The fleet's plugins.
    Plugins(oneshot::Sender<Vec<PluginEntry>>),
}

/// The way to the fleet's router. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Calls {
    tx: mpsc::Sender<Request>,
}

fn gone() -> ErrorReply {
    ErrorReply::new(codes::SHUTTING_DOWN, "the supervisor is shutting down")
}

impl Calls {
    /// A handle, and the requests it sends, for the router to serve.
    pub fn channel() -> (Self, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(256);
        (Self { tx }, rx)
    }

    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(request(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Makes one call.
    pub async fn call(&self, call: CallRequest) -> Result<Payload, ErrorReply> {
        self.ask(|reply| Request::Call { call, reply })
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// Opens a streamed call.
    pub async fn stream(&self, call: CallRequest) -> Result<Upstream, ErrorReply> {
        self.ask(|reply| Request::Stream { call, reply })
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// The fleet's plugins, states and declared actions.
    pub async fn plugins(&self) -> Vec<PluginEntry> {
        self.ask(Request::Plugins).await.unwrap_or_default()
    }
}
