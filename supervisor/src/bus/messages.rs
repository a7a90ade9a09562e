//! What crosses the bus actor's edge: the [`Msg`]s the handle sends it, each
//! with the channel its answer comes back on, the [`Attachment`] a running
//! subscriber's deliveries go through, the [`DeliveryFailure`]s that come
//! back from those, and the [`Traffic`] figures `ps` asks for.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::{BusStats, ErrorReply, Payload, PluginApiClient, Publish, PublishReceipt};
use tokio::sync::{mpsc, oneshot};

use super::queue::Queue;
use super::rules::BusRules;

/// Why a plugin's `deliver` call failed, reported to its actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// No answer within the deadline (the plugin's `call_timeout`).
    Timeout {
        /// Events in the batch.
        events: usize,
        /// The deadline it missed.
        within: Duration,
    },
    /// Answered with a framework error instead of `null`.
    Refused {
        /// Events in the batch.
        events: usize,
        /// The error it answered.
        error: String,
    },
}

/// The connection a subscriber's deliveries go through while it runs, and
/// where its failures are reported.
#[derive(Debug, Clone)]
pub(super) struct Attachment {
    pub(super) client: PluginApiClient,
    pub(super) timeout: Duration,
    pub(super) failures: mpsc::UnboundedSender<DeliveryFailure>,
}

/// A subscriber's attachment, if its process runs.
pub(super) type Attached = Option<Attachment>;

/// The full `block` queues a publisher's request waits on (for
/// [`Queue::room`]) before it answers: those its events went into past
/// their bound.
pub(super) type Waits = Vec<Arc<Queue>>;

/// The bus's answer to a plugin's publish.
#[derive(Debug, Default)]
pub(super) struct Accepted {
    /// What was accepted and what was denied.
    pub(super) receipt: PublishReceipt,
    /// The queues to wait on before the receipt goes back, each once.
    pub(super) waits: Waits,
}

impl Accepted {
    /// Adds the queues one event must wait on.
    pub(super) fn add_waits(&mut self, waits: Waits) {
        for q in waits {
            if !self.waits.iter().any(|w| Arc::ptr_eq(w, &q)) {
                self.waits.push(q);
            }
        }
    }
}

/// One plugin's events through the bus since the supervisor started, for
/// `ps`: fewer figures than [`BusStats`], all plugins in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// The plugin.
    pub name: Arc<str>,
    /// Events delivered to it.
    pub delivered: u64,
    /// Events it published that the bus accepted.
    pub published: u64,
}

/// A request to the bus actor. Those with a `reply` are answered on it.
pub(super) enum Msg {
    Publish {
        source: Arc<str>,
        /// The source its events show, when it relays them from elsewhere.
        origin: Option<Arc<str>>,
        events: Vec<Publish>,
        reply: oneshot::Sender<Accepted>,
    },
    Cli {
        event: Publish,
        reply: oneshot::Sender<Result<Waits, ErrorReply>>,
    },
    System {
        topic: String,
        payload: Payload,
    },
    Register {
        name: Arc<str>,
        rules: BusRules,
    },
    Unregister {
        name: Arc<str>,
    },
    Attach {
        name: Arc<str>,
        attachment: Attachment,
    },
    Detach {
        name: Arc<str>,
    },
    Subscribe {
        name: Arc<str>,
        patterns: Vec<String>,
        add: bool,
        reply: oneshot::Sender<Result<(), ErrorReply>>,
    },
    Stats {
        name: String,
        reply: oneshot::Sender<BusStats>,
    },
    Traffic {
        reply: oneshot::Sender<Vec<Traffic>>,
    },
    OpenStream {
        patterns: Vec<String>,
        reply: oneshot::Sender<Result<u64, ErrorReply>>,
    },
    /// The CLI or HTTP stream's reader went away.
    CloseStream {
        id: u64,
    },
    Stream {
        id: u64,
        reply: oneshot::Sender<Option<Arc<Queue>>>,
    },
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bus::Msg")
    }
}
