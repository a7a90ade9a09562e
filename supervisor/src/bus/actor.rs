//! The bus actor: one task that owns every subscription, every retained
//! event and every CLI tap (a stream), takes [`Msg`]s in order, and fans
//! each accepted event out to the queues whose patterns match it (found
//! through the [`Index`]). What it decides, it asks [`rules`] about;
//! retained events are kept in a [`Retained`] store that charges each to
//! its publisher.
//!
//! It never waits on a subscriber: an event for a full `block` queue is
//! queued past its bound, and the queue goes back with the publisher's
//! answer, whose request waits for room (see [`Queue::offer`]). So only
//! the publishers of events a stuck subscriber has not taken wait, and the
//! bus goes on for everyone else, corral's own events included.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral_proto::{BusStats, Denied, ErrorReply, Event, Payload, Publish, codes};
use tokio::sync::{mpsc, watch};

use super::delivery::{self, DeliveryFigures};
use super::index::Index;
use super::messages::{Accepted, Attached, Attachment, Msg, Traffic, Waits};
use super::queue::{Overflow, Queue};
use super::retained::{RetainBound, Retained};
use super::rules::{self, BusRules};

/// A CLI stream not read for this long is closed.
const STREAM_IDLE: Duration = Duration::from_secs(10);
/// Most CLI and HTTP event streams open at once (each may hold
/// `STREAM_BYTES`).
const MAX_STREAMS: usize = 64;
/// Queue size of a CLI stream, in events.
const STREAM_QUEUE: usize = 65_536;
/// Queue size of a CLI stream, in bytes: a reader that falls behind
/// loses its oldest events, and is told how many.
pub(super) const STREAM_BYTES: usize = 16 * 1024 * 1024;
/// What the CLI (`corral publish --retain`) may keep retained.
pub(super) const CLI_RETAINED: RetainBound = RetainBound {
    max: 1024,
    bytes: 4 * 1024 * 1024,
};

struct Subscriber {
    rules: BusRules,
    patterns: Vec<String>,
    queue: Arc<Queue>,
    attached: watch::Sender<Attached>,
    /// Whether its queue outlives its process, as its delivery task reads it.
    durable: watch::Sender<bool>,
    /// Whether its process runs (events are queued only then, unless durable).
    running: bool,
    /// Whether it has run before (a durable subscriber's retained replay is
    /// on its first start only).
    ever_attached: bool,
    published: u64,
    denied_publishes: u64,
    denied_subscriptions: u64,
    refused_payloads: u64,
    dropped_reported: u64,
    evicted_reported: u64,
    delivery: Arc<DeliveryFigures>,
}

impl Subscriber {
    /// A subscriber that has not run yet, with its delivery task started.
    fn start(name: Arc<str>, rules: BusRules) -> Self {
        let queue = Arc::new(Queue::bounded(
            rules.queue,
            rules.queue_bytes,
            rules.overflow,
        ));
        let (attached, watch_rx) = watch::channel(None);
        let delivery = Arc::new(DeliveryFigures::default());
        let (durable, durable_rx) = watch::channel(rules.durable);
        tokio::spawn(delivery::deliver(
            name,
            Arc::clone(&queue),
            watch_rx,
            durable_rx,
            Arc::clone(&delivery),
        ));
        Self {
            patterns: rules.subscribe.clone(),
            rules,
            queue,
            attached,
            durable,
            running: false,
            ever_attached: false,
            published: 0,
            denied_publishes: 0,
            denied_subscriptions: 0,
            refused_payloads: 0,
            dropped_reported: 0,
            evicted_reported: 0,
            delivery,
        }
    }

    fn stats(&self, name: &str, retained: &Retained) -> BusStats {
        let q = self.queue.figures();
        let r = retained.figures(name);
        BusStats {
            subscriptions: self.patterns.clone(),
            queued: q.queued,
            delivered: q.delivered,
            dropped: q.dropped,
            published: self.published,
            denied_publishes: self.denied_publishes,
            denied_subscriptions: self.denied_subscriptions,
            queued_bytes: q.queued_bytes,
            refused_payloads: self.refused_payloads,
            delivery_failures: self.delivery.failures.load(Ordering::Relaxed),
            undeliverable: self.delivery.undeliverable.load(Ordering::Relaxed),
            retained: r.count,
            retained_bytes: r.bytes,
            retained_evicted: r.evicted,
        }
    }
}

struct Stream {
    patterns: Vec<String>,
    queue: Arc<Queue>,
    last_read: Instant,
}

pub(super) struct Bus {
    mailbox: mpsc::UnboundedReceiver<Msg>,
    subscribers: HashMap<Arc<str>, Subscriber>,
    /// Every subscriber's patterns, for matching.
    index: Index,
    /// The subscribers an event matched, kept to spare an allocation per
    /// event, and reused by the next events of a batch on the same topic
    /// ([`FanOut`]).
    matched: Vec<Arc<str>>,
    streams: HashMap<u64, Stream>,
    next_stream: u64,
    retained: Retained,
    seq: u64,
}

impl Bus {
    pub(super) fn new(mailbox: mpsc::UnboundedReceiver<Msg>) -> Self {
        Self {
            mailbox,
            subscribers: HashMap::new(),
            index: Index::default(),
            matched: Vec::new(),
            streams: HashMap::new(),
            next_stream: 1,
            retained: Retained::default(),
            seq: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.mailbox.recv() => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Publish {
                source,
                origin,
                events,
                reply,
            } => {
                let shown = origin.unwrap_or_else(|| Arc::clone(&source));
                let accepted = self.publish_batch(&source, &shown, events);
                let _ = reply.send(accepted);
            }
            Msg::Cli { event, reply } => {
                let verdict = rules::publishable(&event.topic)
                    .and_then(|()| rules::deliverable("cli", &event))
                    .map(|()| self.fan_out("cli", event));
                let _ = reply.send(verdict);
            }
            Msg::System { topic, payload } => {
                let event = Publish {
                    topic,
                    payload,
                    retain: false,
                };
                // corral's own events never wait.
                let _ = self.fan_out("corral", event);
            }
            other => self.on_control(other),
        }
    }

    /// Handles a message that publishes nothing.
    fn on_control(&mut self, msg: Msg) {
        match msg {
            Msg::Publish { .. } | Msg::Cli { .. } | Msg::System { .. } => self.on_msg(msg),
            Msg::Register { name, rules } => self.register(name, rules),
            Msg::Unregister { name } => self.unregister(&name),
            Msg::Attach { name, attachment } => self.attach(&name, attachment),
            Msg::Detach { name } => self.detach(&name),
            Msg::Subscribe {
                name,
                patterns,
                add,
                reply,
            } => {
                let _ = reply.send(self.subscribe(&name, patterns, add));
            }
            Msg::Stats { name, reply } => {
                let stats = self
                    .subscribers
                    .get(name.as_str())
                    .map(|s| s.stats(&name, &self.retained));
                let _ = reply.send(stats.unwrap_or_default());
            }
            Msg::Traffic { reply } => {
                let traffic = self
                    .subscribers
                    .iter()
                    .map(|(name, sub)| Traffic {
                        name: Arc::clone(name),
                        delivered: sub.queue.figures().delivered,
                        published: sub.published,
                    })
                    .collect();
                let _ = reply.send(traffic);
            }
            Msg::OpenStream { patterns, reply } => {
                let _ = reply.send(self.open_stream(patterns));
            }
            Msg::Stream { id, reply } => {
                let _ = reply.send(self.stream(id));
            }
            Msg::CloseStream { id } => {
                self.streams.remove(&id);
            }
        }
    }

    /// Declares a plugin, or takes its new rules in place: a new `queue`
    /// or `overflow` applies to the queue it has, at once.
    fn register(&mut self, name: Arc<str>, rules: BusRules) {
        let Some((name, sub)) = self
            .key(&name)
            .and_then(|k| self.subscribers.get_mut(&k).map(|sub| (k, sub)))
        else {
            let sub = Subscriber::start(Arc::clone(&name), rules);
            self.index.replace(&name, &[], &sub.patterns);
            self.subscribers.insert(name, sub);
            return;
        };
        if sub.rules.queue != rules.queue || sub.rules.overflow != rules.overflow {
            sub.queue
                .resize(rules.queue, rules.queue_bytes, rules.overflow);
            tracing::info!(plugin = %name, queue = rules.queue, overflow = ?rules.overflow, "queue settings applied");
        }
        if sub.rules.durable != rules.durable {
            sub.durable.send_replace(rules.durable);
        }
        if sub.rules.subscribe != rules.subscribe {
            self.index.replace(&name, &sub.patterns, &rules.subscribe);
            sub.patterns = rules.subscribe.clone();
        }
        sub.rules = rules;
    }

    fn unregister(&mut self, name: &str) {
        if let Some(sub) = self.subscribers.remove(name) {
            for p in &sub.patterns {
                self.index.remove(name, p);
            }
            sub.queue.close();
        }
    }

    fn attach(&mut self, name: &str, attachment: Attachment) {
        let Some(sub) = self.subscribers.get_mut(name) else {
            return;
        };
        let replay = if rules::replays_on_attach(sub.rules.durable, sub.ever_attached) {
            rules::replay(self.retained.values(), &sub.patterns, &[])
        } else {
            Vec::new()
        };
        sub.queue.open();
        sub.queue.hold(true);
        // Replayed past a full `block` queue's bound rather than lost: no
        // publisher waits on it, and the retained store bounds it.
        for event in replay {
            sub.queue.offer(event);
        }
        sub.running = true;
        sub.ever_attached = true;
        sub.attached.send_replace(Some(attachment));
    }

    /// Its process is gone or going: its queue holds no publisher back any
    /// more, and goes with the process unless it is durable.
    fn detach(&mut self, name: &str) {
        let Some(name) = self.key(name) else {
            return;
        };
        if let Some(sub) = self.subscribers.get_mut(&name) {
            sub.running = false;
            sub.attached.send_replace(None);
            sub.queue.hold(false);
            if !sub.rules.durable {
                sub.queue.close();
                self.index
                    .replace(&name, &sub.patterns, &sub.rules.subscribe);
                sub.patterns = sub.rules.subscribe.clone();
            }
        }
    }

    fn subscribe(
        &mut self,
        name: &str,
        patterns: Vec<String>,
        add: bool,
    ) -> Result<(), ErrorReply> {
        let Some((name, sub)) = self
            .key(name)
            .and_then(|k| self.subscribers.get_mut(&k).map(|sub| (k, sub)))
        else {
            return Err(ErrorReply::new(codes::UNKNOWN_PLUGIN, "not on the bus"));
        };
        if let Err(malformed) = rules::check_patterns(&patterns) {
            // A malformed subscribe is a refused one, counted as the others.
            if add {
                sub.denied_subscriptions += 1;
            }
            return Err(malformed);
        }
        if !add {
            for p in rules::remove(&mut sub.patterns, &patterns) {
                self.index.remove(&name, &p);
            }
            return Ok(());
        }
        if let Err(denied) = rules::may_subscribe(&name, &sub.rules.subscribe, &patterns) {
            sub.denied_subscriptions += 1;
            return Err(denied);
        }
        let new = rules::added(&sub.patterns, patterns);
        if let Err(refused) = rules::within_limit(
            &name,
            sub.rules.max_subscriptions,
            sub.patterns.len(),
            new.len(),
        ) {
            sub.denied_subscriptions += 1;
            tracing::warn!(plugin = %name, "{}", refused.message);
            return Err(refused);
        }
        for p in &new {
            self.index.insert(&name, p);
        }
        let replay =
            if rules::replay_waits_for_attach(sub.running, sub.rules.durable, sub.ever_attached) {
                Vec::new()
            } else {
                rules::replay(self.retained.values(), &new, &sub.patterns)
            };
        sub.patterns.extend(new);
        // Replayed past a full `block` queue's bound rather than lost: no
        // publisher waits on it, and the retained store bounds it.
        for event in replay {
            sub.queue.offer(event);
        }
        Ok(())
    }

    /// The name a subscriber is keyed by, shared with the index.
    fn key(&self, name: &str) -> Option<Arc<str>> {
        self.subscribers
            .get_key_value(name)
            .map(|(k, _)| Arc::clone(k))
    }

    fn open_stream(&mut self, patterns: Vec<String>) -> Result<u64, ErrorReply> {
        rules::check_patterns(&patterns)?;
        if self.streams.len() >= MAX_STREAMS {
            return Err(ErrorReply::new(
                codes::LIMIT,
                format!(
                    "{MAX_STREAMS} event streams are open already; close one (a reader that goes away closes its own)"
                ),
            ));
        }
        let id = self.next_stream;
        self.next_stream += 1;
        let queue = Arc::new(Queue::bounded(
            STREAM_QUEUE,
            STREAM_BYTES,
            Overflow::DropOldest,
        ));
        for event in rules::replay(self.retained.values(), &patterns, &[]) {
            let _ = queue.try_push(event);
        }
        let stream = Stream {
            patterns,
            queue,
            last_read: Instant::now(),
        };
        self.streams.insert(id, stream);
        Ok(id)
    }

    /// A CLI stream's queue, if it is open; reading it keeps it open.
    fn stream(&mut self, id: u64) -> Option<Arc<Queue>> {
        self.streams.get_mut(&id).map(|s| {
            s.last_read = Instant::now();
            Arc::clone(&s.queue)
        })
    }

    /// Fans out what `source` may publish of `events`; what it may not is
    /// in the receipt. The answer also names the full `block` queues its
    /// request must wait on before it answers.
    fn publish_batch(&mut self, source: &Arc<str>, shown: &str, events: Vec<Publish>) -> Accepted {
        let mut accepted = Accepted::default();
        let mut batch = FanOut::new();
        for (index, event) in events.into_iter().enumerate() {
            let Some(sub) = self.subscribers.get_mut(source) else {
                continue;
            };
            if let Err(error) = rules::deliverable(source, &event) {
                sub.refused_payloads += 1;
                tracing::warn!(plugin = %source, "publish refused: {error}");
                accepted.receipt.denied.push(Denied {
                    index: index as u64,
                    error,
                });
                continue;
            }
            match rules::may_publish(source, &sub.rules.publish, &event.topic) {
                Ok(()) => {
                    sub.published += 1;
                    accepted.receipt.accepted += 1;
                    let waits = self.fan_out_quietly(source, shown, event, &mut batch);
                    accepted.add_waits(waits);
                }
                Err(error) => {
                    sub.denied_publishes += 1;
                    accepted.receipt.denied.push(Denied {
                        index: index as u64,
                        error,
                    });
                }
            }
        }
        wake(batch.filled);
        accepted
    }

    /// Stamps an accepted event and queues it for every matching subscriber
    /// and stream, without waiting: the answer is the full `block` queues
    /// it went into past their bound, which its publisher waits on.
    fn fan_out(&mut self, source: &str, publish: Publish) -> Waits {
        self.fan_out_as(source, source, publish)
    }

    /// [`fan_out`](Self::fan_out) of an event `source` published, showing
    /// `shown` as its source (a relayed event's origin).
    fn fan_out_as(&mut self, source: &str, shown: &str, publish: Publish) -> Waits {
        let mut batch = FanOut::new();
        let waits = self.fan_out_quietly(source, shown, publish, &mut batch);
        wake(batch.filled);
        waits
    }

    /// [`fan_out_as`](Self::fan_out_as) as one event of `batch`, leaving
    /// the subscribers' delivery tasks asleep: each queue it is the first
    /// to fill since its reader was woken is added to the batch's
    /// `filled`, for the caller to wake once the whole batch is in.
    fn fan_out_quietly(
        &mut self,
        source: &str,
        shown: &str,
        publish: Publish,
        batch: &mut FanOut,
    ) -> Waits {
        self.seq += 1;
        let event = Arc::new(Event {
            topic: publish.topic,
            payload: publish.payload,
            source: shown.to_string(),
            seq: self.seq,
            at_unix_us: batch.at_unix_us,
            retained: false,
        });
        if publish.retain {
            let bound = self
                .subscribers
                .get(source)
                .map_or(CLI_RETAINED, |s| s.rules.retained);
            self.retained.keep(Arc::clone(&event), bound);
        }
        let mut waits = Waits::new();
        let mut matched = std::mem::take(&mut self.matched);
        if batch.matched_for.as_ref().map(|e| &e.topic) != Some(&event.topic) {
            self.index.matching_into(&event.topic, &mut matched);
            batch.matched_for = Some(Arc::clone(&event));
        }
        for name in &matched {
            let Some(sub) = self.subscribers.get(name) else {
                continue;
            };
            if !rules::queues_for(sub.running, sub.rules.durable) {
                continue;
            }
            let offered = sub.queue.offer_quietly(Arc::clone(&event));
            if offered.first {
                batch.filled.push(Arc::clone(&sub.queue));
            }
            if offered.wait {
                waits.push(Arc::clone(&sub.queue));
            }
        }
        self.matched = matched;
        for stream in self.streams.values() {
            if rules::matches_any(&stream.patterns, &event.topic) {
                let _ = stream.queue.try_push(Arc::clone(&event));
            }
        }
        waits
    }

    /// Once a second: closes idle CLI streams, logs retained evictions
    /// and reports on `corral.bus.dropped` what each subscriber dropped
    /// since the last report.
    fn on_tick(&mut self) {
        self.streams
            .retain(|_, s| s.last_read.elapsed() < STREAM_IDLE);
        let mut reports = Vec::new();
        for (name, sub) in &mut self.subscribers {
            let evicted = self.retained.figures(name).evicted;
            if evicted > sub.evicted_reported {
                tracing::warn!(
                    plugin = %name,
                    "{} retained events evicted (over its retained_max or retained_bytes), {evicted} in all",
                    evicted - sub.evicted_reported
                );
                sub.evicted_reported = evicted;
            }
            let dropped = sub.queue.figures().dropped;
            if dropped > sub.dropped_reported {
                reports.push(serde_json::json!({
                    "subscriber": &**name,
                    "dropped": dropped - sub.dropped_reported,
                    "total": dropped,
                }));
                sub.dropped_reported = dropped;
            }
        }
        for report in reports {
            if let Ok(payload) = Payload::from_json(&report) {
                let event = Publish {
                    topic: rules::DROPPED_TOPIC.into(),
                    payload,
                    retain: false,
                };
                let _ = self.fan_out("corral", event);
            }
        }
    }
}

/// What the fan-outs of one batch share: the moment the bus accepted it
/// (every event of a batch carries it), the queues they filled quietly,
/// and the event whose topic the actor's `matched` names are the
/// subscribers of (a batch's events mostly share a topic, and nothing
/// changes the index while one is fanned out, so the names are reused
/// until the topic changes).
struct FanOut {
    at_unix_us: u64,
    filled: Waits,
    matched_for: Option<Arc<Event>>,
}

impl FanOut {
    fn new() -> Self {
        Self {
            at_unix_us: unix_us(),
            filled: Waits::new(),
            matched_for: None,
        }
    }
}

/// Wakes the delivery tasks of the queues a fan-out filled quietly.
fn wake(filled: Waits) {
    for queue in filled {
        queue.wake();
    }
}

/// Now, in microseconds since the Unix epoch.
pub(super) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
