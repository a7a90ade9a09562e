//! The bus actor: one task that owns every subscription, every retained
//! event and every CLI tap (a stream), takes [`Msg`]s in order, and fans
//! each accepted event out to the queues whose patterns match it. What it
//! decides, it asks [`rules`] about; retained events are kept in a
//! [`Retained`] store that charges each to its publisher.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral_proto::{BusStats, Denied, ErrorReply, Event, Payload, Publish, PublishReceipt, codes};
use tokio::sync::{mpsc, watch};

use super::delivery::{self, DeliveryFigures};
use super::messages::{Attached, Attachment, Msg};
use super::queue::{Overflow, Queue};
use super::retained::{RetainBound, Retained};
use super::rules::{self, BusRules};

/// A CLI stream not read for this long is closed.
const STREAM_IDLE: Duration = Duration::from_secs(10);
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
        tokio::spawn(delivery::deliver(
            name,
            Arc::clone(&queue),
            watch_rx,
            rules.durable,
            Arc::clone(&delivery),
        ));
        Self {
            patterns: rules.subscribe.clone(),
            rules,
            queue,
            attached,
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
    /// Publishing messages that came while a publish waited for room.
    backlog: VecDeque<Msg>,
    subscribers: HashMap<Arc<str>, Subscriber>,
    streams: HashMap<u64, Stream>,
    next_stream: u64,
    retained: Retained,
    seq: u64,
}

impl Bus {
    pub(super) fn new(mailbox: mpsc::UnboundedReceiver<Msg>) -> Self {
        Self {
            mailbox,
            backlog: VecDeque::new(),
            subscribers: HashMap::new(),
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
            if let Some(msg) = self.backlog.pop_front() {
                self.on_msg(msg).await;
                continue;
            }
            tokio::select! {
                msg = self.mailbox.recv() => match msg {
                    Some(msg) => self.on_msg(msg).await,
                    None => break,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
    }

    async fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Publish {
                source,
                events,
                reply,
            } => {
                let receipt = self.publish_batch(&source, events).await;
                let _ = reply.send(receipt);
            }
            Msg::Cli { event, reply } => {
                let verdict = rules::publishable(&event.topic)
                    .and_then(|()| rules::deliverable("cli", &event));
                if verdict.is_ok() {
                    self.fan_out("cli", event).await;
                }
                let _ = reply.send(verdict);
            }
            Msg::System { topic, payload } => {
                let event = Publish {
                    topic,
                    payload,
                    retain: false,
                };
                self.fan_out("corral", event).await;
            }
            other => self.on_control(other),
        }
    }

    /// Handles a message that publishes nothing, and keeps publishing ones
    /// for later. This also runs while a publish waits for room in a `block`
    /// queue: the subscriber's detach (it died) or attach (it is back) is
    /// what makes room.
    fn on_control(&mut self, msg: Msg) {
        match msg {
            msg @ (Msg::Publish { .. } | Msg::Cli { .. } | Msg::System { .. }) => {
                self.backlog.push_back(msg);
            }
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
            Msg::OpenStream { patterns, reply } => {
                let _ = reply.send(self.open_stream(patterns));
            }
            Msg::Stream { id, reply } => {
                let _ = reply.send(self.stream(id));
            }
        }
    }

    fn register(&mut self, name: Arc<str>, rules: BusRules) {
        let Some(sub) = self.subscribers.get_mut(&name) else {
            let sub = Subscriber::start(Arc::clone(&name), rules);
            self.subscribers.insert(name, sub);
            return;
        };
        if sub.rules.queue != rules.queue || sub.rules.overflow != rules.overflow {
            tracing::info!(plugin = %name, "queue settings change at its next start");
        }
        if sub.rules.subscribe != rules.subscribe {
            sub.patterns = rules.subscribe.clone();
        }
        sub.rules = rules;
    }

    fn unregister(&mut self, name: &str) {
        if let Some(sub) = self.subscribers.remove(name) {
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
        for event in replay {
            let _ = sub.queue.try_push(event);
        }
        sub.running = true;
        sub.ever_attached = true;
        sub.attached.send_replace(Some(attachment));
    }

    fn detach(&mut self, name: &str) {
        if let Some(sub) = self.subscribers.get_mut(name) {
            sub.running = false;
            sub.attached.send_replace(None);
            if !sub.rules.durable {
                sub.queue.close();
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
        rules::check_patterns(&patterns)?;
        let Some(sub) = self.subscribers.get_mut(name) else {
            return Err(ErrorReply::new(codes::UNKNOWN_PLUGIN, "not on the bus"));
        };
        if !add {
            rules::remove(&mut sub.patterns, &patterns);
            return Ok(());
        }
        if let Err(denied) = rules::may_subscribe(name, &sub.rules.subscribe, &patterns) {
            sub.denied_subscriptions += 1;
            return Err(denied);
        }
        let new = rules::added(&sub.patterns, patterns);
        let replay =
            if rules::replay_waits_for_attach(sub.running, sub.rules.durable, sub.ever_attached) {
                Vec::new()
            } else {
                rules::replay(self.retained.values(), &new, &sub.patterns)
            };
        sub.patterns.extend(new);
        for event in replay {
            let _ = sub.queue.try_push(event);
        }
        Ok(())
    }

    fn open_stream(&mut self, patterns: Vec<String>) -> Result<u64, ErrorReply> {
        rules::check_patterns(&patterns)?;
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

    async fn publish_batch(&mut self, source: &Arc<str>, events: Vec<Publish>) -> PublishReceipt {
        let mut receipt = PublishReceipt::default();
        for (index, event) in events.into_iter().enumerate() {
            let Some(sub) = self.subscribers.get_mut(source) else {
                continue;
            };
            if let Err(error) = rules::deliverable(source, &event) {
                sub.refused_payloads += 1;
                tracing::warn!(plugin = %source, "publish refused: {error}");
                receipt.denied.push(Denied {
                    index: index as u64,
                    error,
                });
                continue;
            }
            match rules::may_publish(source, &sub.rules.publish, &event.topic) {
                Ok(()) => {
                    sub.published += 1;
                    receipt.accepted += 1;
                    self.fan_out(source, event).await;
                }
                Err(error) => {
                    sub.denied_publishes += 1;
                    receipt.denied.push(Denied {
                        index: index as u64,
                        error,
                    });
                }
            }
        }
        receipt
    }

    /// Stamps an accepted event and queues it for every matching subscriber.
    async fn fan_out(&mut self, source: &str, publish: Publish) {
        self.seq += 1;
        let event = Arc::new(Event {
            topic: publish.topic,
            payload: publish.payload,
            source: source.to_string(),
            seq: self.seq,
            at_unix_us: unix_us(),
            retained: false,
        });
        if publish.retain {
            let bound = self
                .subscribers
                .get(source)
                .map_or(CLI_RETAINED, |s| s.rules.retained);
            self.retained.keep(Arc::clone(&event), bound);
        }
        let mut blocked = Vec::new();
        for sub in self.subscribers.values() {
            if !rules::receives(sub.running, sub.rules.durable, &sub.patterns, &event.topic) {
                continue;
            }
            if let Err(back) = sub.queue.try_push(Arc::clone(&event)) {
                blocked.push((Arc::clone(&sub.queue), back));
            }
        }
        for stream in self.streams.values() {
            if rules::matches_any(&stream.patterns, &event.topic) {
                let _ = stream.queue.try_push(Arc::clone(&event));
            }
        }
        // `block` queues that are full: the publisher waits for room.
        for (queue, event) in blocked {
            self.wait_for_room(&queue, event).await;
        }
    }

    /// Pushes into a full `block` queue once it has room. Meanwhile other
    /// publishes wait their turn, but control messages are handled: room
    /// comes from the subscriber's deliveries, which need it attached, or
    /// from its detach (its process died), which closes a non-durable queue.
    async fn wait_for_room(&mut self, queue: &Queue, event: Arc<Event>) {
        let push = queue.push(event);
        tokio::pin!(push);
        loop {
            tokio::select! {
                () = &mut push => return,
                msg = self.mailbox.recv() => match msg {
                    Some(msg) => self.on_control(msg),
                    None => return,
                },
            }
        }
    }

    /// Once a second: closes idle CLI streams, logs retained evictions
    /// and reports on `corral.bus.dropped` what each subscriber dropped
    /// since the last report.
    async fn on_tick(&mut self) {
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
                self.fan_out("corral", event).await;
            }
        }
    }
}

/// Now, in microseconds since the Unix epoch.
pub(super) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
