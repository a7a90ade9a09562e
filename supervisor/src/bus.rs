//! The event bus: one actor that owns every subscription, every retained
//! event and every permission check, reached through a [`BusHandle`].
//!
//! Publishers (plugins on their bus connection, the CLI, corral itself) hand
//! it batches; it checks each event against the publisher's allow-list
//! (`publish`, default `<name>.>`; `corral.>` is corral's alone), stamps it
//! with a sequence number and time, keeps it if retained, and appends it to
//! the [`Queue`] of every subscriber with a matching pattern. A delivery task
//! per subscribing plugin drains its queue in batches through the plugin's
//! `deliver` call, one batch in flight, so each subscriber sees each
//! publisher's events in order. A `deliver` that is not answered within the
//! plugin's `call_timeout`, or is answered with an error, is reported to the
//! plugin's actor as a [`DeliveryFailure`] (it kills the plugin), and
//! deliveries wait for the plugin's next start.
//!
//! A queue holds at most `queue` events. Under `overflow = "drop-oldest"` a
//! full queue drops its oldest event (counted, shown by `inspect`, reported
//! on `corral.bus.dropped` at most once a second) and a slow subscriber
//! slows no one. Under `"block"`, while the subscriber runs, an event for
//! its full queue is still queued and the publisher's request waits for
//! room before it answers: that publisher goes at the subscriber's pace and
//! nothing is lost, while the bus, other publishers and corral's own events
//! go on. Once the subscriber's process is gone (killed for a `deliver` not
//! answered within `call_timeout` or for missed heartbeats, stopped, failed)
//! its queue holds no one back: a durable one keeps its newest `queue`
//! events, counting drops, until the subscriber runs again. A `durable`
//! subscriber's queue (and subscriptions) outlive its process; other
//! subscribers start afresh on each spawn. Matching goes through an index
//! of patterns, and a plugin holds at most `max_subscriptions` of them.
//!
//! Its rooms, bottom up (each uses only those before it in this list):
//! `queue` (the bounded queue and its [`Overflow`] policies), `index` (the
//! trie of every subscriber's patterns, for matching), `rules`
//! (permissions, the `corral.>` reservation, subscriber matching and
//! retained replay, as pure functions), `messages` (what crosses the
//! actor's edge), `delivery` (a subscriber's delivery task), `actor` (the
//! loop), then the [`BusHandle`] here, the only way in, and `serve` (the
//! [`BusApi`](corral_proto::BusApi) served on a plugin's bus connection).

mod actor;
mod delivery;
mod index;
mod messages;
mod queue;
mod retained;
mod rules;
mod serve;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use corral_proto::{
    BusStats, ErrorReply, Event, Payload, PluginApiClient, Publish, PublishReceipt, codes,
};
use tokio::sync::{mpsc, oneshot};

use actor::Bus;
use delivery::DELIVERY_BATCH;
use messages::{Attachment, Msg};

// The bus's whole outside, besides the handle: what the rest of corral
// names as `crate::bus::…`.
pub use messages::{DeliveryFailure, Traffic};
pub use queue::{Overflow, Queue};
pub use retained::RetainBound;
pub use rules::BusRules;
pub use serve::serve_plugin;

/// The way to reach the bus actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BusHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl BusHandle {
    /// Starts the bus actor.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Bus::new(rx).run());
        Self { tx }
    }

    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(msg(tx)).ok()?;
        rx.await.ok()
    }

    /// Publishes a plugin's batch, checked against its allow-list. The
    /// receipt comes once every full `block` queue the batch went into is
    /// back within its bound (or holds no one back any more): the wait is
    /// this request's, never the bus's.
    pub async fn publish(&self, source: Arc<str>, events: Vec<Publish>) -> PublishReceipt {
        self.publish_from(source, None, events).await
    }

    /// Publishes a batch `source` relays from elsewhere, each event's
    /// source `origin` (checked by the caller); like [`publish`](Self::publish)
    /// in every other way: `source`'s rules, queue and counters.
    pub async fn relay(
        &self,
        source: Arc<str>,
        origin: Arc<str>,
        events: Vec<Publish>,
    ) -> PublishReceipt {
        self.publish_from(source, Some(origin), events).await
    }

    async fn publish_from(
        &self,
        source: Arc<str>,
        origin: Option<Arc<str>>,
        events: Vec<Publish>,
    ) -> PublishReceipt {
        let Some(accepted) = self
            .ask(|reply| Msg::Publish {
                source,
                origin,
                events,
                reply,
            })
            .await
        else {
            return PublishReceipt::default();
        };
        wait_for_room(&accepted.waits).await;
        accepted.receipt
    }

    /// Publishes one event from the CLI; like a plugin's, its answer waits
    /// for room in the full `block` queues it went into.
    pub async fn publish_cli(&self, event: Publish) -> Result<(), ErrorReply> {
        let waits = self
            .ask(|reply| Msg::Cli { event, reply })
            .await
            .unwrap_or_else(|| Err(shutting_down()))?;
        wait_for_room(&waits).await;
        Ok(())
    }

    /// Publishes an event of corral's own (`corral.>`); never waits.
    pub fn system(&self, topic: String, payload: Payload) {
        let _ = self.tx.send(Msg::System { topic, payload });
    }

    /// Declares (or updates) a plugin's rules.
    pub fn register(&self, name: Arc<str>, rules: BusRules) {
        let _ = self.tx.send(Msg::Register { name, rules });
    }

    /// Forgets a plugin (removed from the fleet).
    pub fn unregister(&self, name: Arc<str>) {
        let _ = self.tx.send(Msg::Unregister { name });
    }

    /// The plugin runs: deliver to it through `client`, each call within
    /// `timeout`; a call that fails for the plugin's fault is reported on
    /// `failures`.
    pub fn attach(
        &self,
        name: Arc<str>,
        client: PluginApiClient,
        timeout: Duration,
        failures: mpsc::UnboundedSender<DeliveryFailure>,
    ) {
        let _ = self.tx.send(Msg::Attach {
            name,
            attachment: Attachment {
                client,
                timeout,
                failures,
            },
        });
    }

    /// The plugin's process is gone or going.
    pub fn detach(&self, name: Arc<str>) {
        let _ = self.tx.send(Msg::Detach { name });
    }

    /// Adds (`add`) or removes subscriptions of a plugin.
    pub async fn subscribe(
        &self,
        name: Arc<str>,
        patterns: Vec<String>,
        add: bool,
    ) -> Result<(), ErrorReply> {
        self.ask(|reply| Msg::Subscribe {
            name,
            patterns,
            add,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(shutting_down()))
    }

    /// A plugin's figures.
    pub async fn stats(&self, name: &str) -> BusStats {
        let name = name.to_string();
        self.ask(|reply| Msg::Stats { name, reply })
            .await
            .unwrap_or_default()
    }

    /// Every plugin's delivered and published counts, in one request.
    pub async fn traffic(&self) -> Vec<Traffic> {
        self.ask(|reply| Msg::Traffic { reply })
            .await
            .unwrap_or_default()
    }

    /// Opens a CLI stream of the events matching `patterns`.
    pub async fn open_stream(&self, patterns: Vec<String>) -> Result<u64, ErrorReply> {
        self.ask(|reply| Msg::OpenStream { patterns, reply })
            .await
            .unwrap_or_else(|| Err(shutting_down()))
    }

    /// Closes a CLI stream whose reader went away (an unread one is closed
    /// anyway after a while).
    pub fn close_stream(&self, id: u64) {
        let _ = self.tx.send(Msg::CloseStream { id });
    }

    /// The next events of a CLI stream (waits up to `wait` for one).
    pub async fn next_in_stream(&self, id: u64, wait: Duration) -> Result<Vec<Event>, ErrorReply> {
        let queue = self
            .ask(|reply| Msg::Stream { id, reply })
            .await
            .flatten()
            .ok_or_else(|| {
                ErrorReply::new(codes::BAD_REQUEST, format!("no open event stream {id}"))
            })?;
        let _ = tokio::time::timeout(wait, queue.readable()).await;
        let mut events = Vec::new();
        // What the reader lost since it last read comes first, where the loss is.
        let (dropped, total) = queue.unreported_drops();
        if dropped > 0 {
            events.push(rules::dropped_marker(id, dropped, total, actor::unix_us()));
        }
        let batch = queue.take_within(DELIVERY_BATCH, rules::BATCH_BYTES);
        events.extend(batch.into_iter().map(|e| (*e).clone()));
        Ok(events)
    }
}

/// Waits until each of `queues` lets its publishers go on.
async fn wait_for_room(queues: &[Arc<Queue>]) {
    for queue in queues {
        queue.room().await;
    }
}

fn shutting_down() -> ErrorReply {
    ErrorReply::new(codes::SHUTTING_DOWN, "the bus is shutting down")
}
