//! [`Context`]: what a plugin knows about where it runs (its name, its stop
//! signal), and its way onto the event bus: publishes are checked here (the
//! topic grammar and the `corral.>` reservation, both proto's), buffered and
//! sent in batches over a [`Link`], whichever one it was given. Where the link leads (the
//! supervisor, or a test's recorder) is not this module's concern.

use std::sync::Arc;

use corral_proto::event::{check_topic, reserved};
use corral_proto::{Denied, Payload, PluginEntry, PluginStatus, Publish, PublishReceipt, codes};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::calls::Call;
use crate::link::Link;
use crate::{PluginError, Stop};

/// Publishes buffered in the SDK before `publish` waits (backpressure).
const PUBLISH_BUFFER: usize = 65_536;
/// Events sent to the supervisor in one batch at most.
const PUBLISH_BATCH: usize = 4096;
/// Bytes of events in one batch at most, besides a single larger event:
/// small enough that no connection buffer grows to a whole frame for a run
/// of large events, large enough that small ones still go 4,096 at a time.
const BATCH_BYTES: usize = 1 << 20;
/// Room kept in a frame for the request around a batch's events.
const ENVELOPE_BYTES: usize = 1024;

/// Handed to every hook: the plugin's identity under this supervisor and
/// its handle on the event bus.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    bus: Option<Bus>,
    stopping: Stop,
}

#[derive(Debug)]
struct Bus {
    link: Arc<dyn Link>,
    publishes: mpsc::Sender<Item>,
    /// Bytes a batch of publishes may take in a frame.
    budget: usize,
}

enum Item {
    Publish(Publish),
    /// Answers with the first refusal since the last flush.
    Flush(oneshot::Sender<Result<(), PluginError>>),
    /// Answers once everything before it was handled; refusals stay.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Sync(oneshot::Sender<()>),
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Item")
    }
}

impl Context {
    /// A context for `name`; `max_frame` bounds what one batch of
    /// publishes may take on the wire.
    pub(crate) fn new(name: String, link: Option<Arc<dyn Link>>, max_frame: usize) -> Self {
        let budget = max_frame.saturating_sub(ENVELOPE_BYTES);
        let bus = link.map(|link| {
            let (publishes, rx) = mpsc::channel(PUBLISH_BUFFER);
            tokio::spawn(flusher(Arc::clone(&link), rx, budget.min(BATCH_BYTES)));
            Bus {
                link,
                publishes,
                budget,
            }
        });
        Self {
            inner: Arc::new(Inner {
                name,
                bus,
                stopping: Stop::default(),
            }),
        }
    }

    /// The name this plugin runs under in the fleet config.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The signal raised when the plugin unloads (a stop request, or the
    /// connection to the supervisor closing): the one
    /// [`Plugin::background`](crate::Plugin::background) is handed, for
    /// work started elsewhere.
    pub fn stopping(&self) -> &Stop {
        &self.inner.stopping
    }

    fn bus(&self) -> Result<&Bus, PluginError> {
        self.inner.bus.as_ref().ok_or_else(|| {
            PluginError::new(
                codes::DISCONNECTED,
                "this plugin has no connection to the event bus",
            )
        })
    }

    /// Publishes `payload` on `topic`. Events are sent in batches behind
    /// the caller's back, in order; this waits only when the SDK's buffer
    /// is full (the bus applies backpressure). A topic outside the plugin's
    /// `publish` allow-list is refused by the supervisor:
    /// [`flush`](Context::flush) reports it. A malformed topic, or one under
    /// `corral.>`, is refused here at once.
    pub async fn publish(&self, topic: &str, payload: &Value) -> Result<(), PluginError> {
        self.send(topic, payload, false).await
    }

    /// Like [`publish`](Context::publish), and the bus keeps the event as the
    /// topic's last value for subscribers that come later.
    pub async fn publish_retained(&self, topic: &str, payload: &Value) -> Result<(), PluginError> {
        self.send(topic, payload, true).await
    }

    async fn send(&self, topic: &str, payload: &Value, retain: bool) -> Result<(), PluginError> {
        let payload = Payload::from_json(payload)
            .map_err(|e| PluginError::bad_payload(format!("payload does not encode: {e}")))?;
        self.publish_payload(topic, payload, retain).await
    }

    /// Publishes an already encoded payload as it is (for example one taken
    /// from another event), like [`publish`](Context::publish) or, with
    /// `retain`, [`publish_retained`](Context::publish_retained). The bus
    /// refuses a payload that is not one JSON text (`bad_payload`).
    pub async fn publish_payload(
        &self,
        topic: &str,
        payload: Payload,
        retain: bool,
    ) -> Result<(), PluginError> {
        check_topic(topic).map_err(|e| PluginError::new(codes::BAD_TOPIC, e))?;
        reserved(topic)?;
        let bus = self.bus()?;
        let publish = Publish {
            topic: topic.to_string(),
            payload,
            retain,
        };
        if publish_size(&publish) > bus.budget {
            return Err(PluginError::bad_payload(format!(
                "an event of {} bytes does not fit in a frame",
                publish_size(&publish)
            )));
        }
        bus.publishes
            .send(Item::Publish(publish))
            .await
            .map_err(|_| PluginError::new(codes::DISCONNECTED, "the event bus connection closed"))
    }

    /// Waits until every event published so far has been accepted by the
    /// bus; returns the first refusal since the last flush, if any.
    pub async fn flush(&self) -> Result<(), PluginError> {
        let (tx, rx) = oneshot::channel();
        self.bus()?
            .publishes
            .send(Item::Flush(tx))
            .await
            .map_err(|_| {
                PluginError::new(codes::DISCONNECTED, "the event bus connection closed")
            })?;
        rx.await.unwrap_or_else(|_| {
            Err(PluginError::new(
                codes::DISCONNECTED,
                "the event bus connection closed",
            ))
        })
    }

    /// A call to another plugin's `action` (within this plugin's `calls`
    /// permissions): await it for the reply, or
    /// [`stream`](crate::Call::stream) it; [`timeout`](crate::Call::timeout)
    /// and [`wait`](crate::Call::wait) set it up first.
    pub fn call(&self, plugin: &str, action: &str, payload: &Value) -> Call {
        let link = self.bus().map(|b| (Arc::clone(&b.link), b.budget));
        Call::new(link, plugin, action, payload)
    }

    /// The fleet's plugins: names, states and the actions each declares.
    pub async fn plugins(&self) -> Result<Vec<PluginEntry>, PluginError> {
        self.bus()?.link.plugins().await
    }

    /// Puts events that came from elsewhere on the bus, in order, each
    /// showing `origin` (`scheme:name`, such as `nats:berlin`) as its
    /// source: for a bridge (`bridge = true` in the fleet file; refused as
    /// `denied` otherwise), within its `publish` allow-list. Sent at once in
    /// as many batches as the frame needs, apart from
    /// [`publish`](Context::publish)'s buffer (so not ordered with it);
    /// the receipt says which were refused, by their index in `events`.
    pub async fn relay(
        &self,
        origin: &str,
        events: Vec<Publish>,
    ) -> Result<PublishReceipt, PluginError> {
        let bus = self.bus()?;
        let budget = bus.budget.min(BATCH_BYTES);
        let mut receipt = PublishReceipt::default();
        let mut events = events.into_iter().peekable();
        let mut offset = 0u64;
        while events.peek().is_some() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(next) = events.peek() {
                let size = publish_size(next);
                if !batch.is_empty() && (bytes + size > budget || batch.len() >= PUBLISH_BATCH) {
                    break;
                }
                bytes += size;
                batch.extend(events.next());
            }
            let sent = batch.len() as u64;
            let part = bus.link.relay(origin.to_string(), batch).await?;
            receipt.accepted += part.accepted;
            receipt
                .denied
                .extend(part.denied.into_iter().map(|d| Denied {
                    index: d.index + offset,
                    error: d.error,
                }));
            offset += sent;
        }
        Ok(receipt)
    }

    /// Every plugin's status row, the fields of `corral ps --json`: for a
    /// bridge (`bridge = true`; `denied` otherwise).
    pub async fn fleet(&self) -> Result<Vec<PluginStatus>, PluginError> {
        self.bus()?.link.fleet().await
    }

    /// Subscribes to more patterns (within the plugin's `subscribe`
    /// allow-list); retained events that match arrive first.
    pub async fn subscribe(&self, patterns: &[&str]) -> Result<(), PluginError> {
        let patterns = patterns.iter().map(|p| p.to_string()).collect();
        self.bus()?.link.subscribe(patterns).await
    }

    /// Drops subscriptions.
    pub async fn unsubscribe(&self, patterns: &[&str]) -> Result<(), PluginError> {
        let patterns = patterns.iter().map(|p| p.to_string()).collect();
        self.bus()?.link.unsubscribe(patterns).await
    }

    /// Waits until every publish so far has reached the bus, leaving any
    /// refusal for [`flush`](Context::flush).
    #[cfg(feature = "testing")]
    pub(crate) async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if let Ok(bus) = self.bus()
            && bus.publishes.send(Item::Sync(tx)).await.is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// Sends buffered publishes in batches, one batch in flight, and answers
/// flushes once every publish before them is acknowledged.
async fn flusher(link: Arc<dyn Link>, mut rx: mpsc::Receiver<Item>, budget: usize) {
    let mut refused: Option<PluginError> = None;
    let mut carried: Option<Item> = None;
    loop {
        let first = match carried.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        // A run of publishes, up to a batch and within a frame, ended by a
        // flush or sync at most: a flush answers for what was published
        // before it, never for what came after.
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut ack = None;
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Item::Publish(p) => {
                    let size = publish_size(&p);
                    if !batch.is_empty() && bytes + size > budget {
                        carried = Some(Item::Publish(p));
                        break;
                    }
                    bytes += size;
                    batch.push(p);
                }
                other => {
                    ack = Some(other);
                    break;
                }
            }
            next = if batch.len() < PUBLISH_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            match link.publish(batch).await {
                Ok(receipt) => {
                    for denied in &receipt.denied {
                        eprintln!("corral plugin: publish refused: {}", denied.error);
                    }
                    if let Some(denied) = receipt.denied.into_iter().next() {
                        refused.get_or_insert(denied.error);
                    }
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        match ack {
            Some(Item::Flush(reply)) => {
                let _ = reply.send(refused.take().map_or(Ok(()), Err));
            }
            Some(Item::Sync(reply)) => {
                let _ = reply.send(());
            }
            Some(Item::Publish(_)) | None => {}
        }
    }
}

/// About what one publish takes in a frame.
fn publish_size(p: &Publish) -> usize {
    p.topic.len() + p.payload.as_bytes().len() + 64
}
