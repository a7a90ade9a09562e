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
//! slows no one. Under `"block"` the bus waits for room, so publishers wait
//! and nothing is lost. A `durable` subscriber's queue (and subscriptions)
//! outlive its process; other subscribers start afresh on each spawn.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_proto::event::{check_pattern, check_topic, covers, matches};
use corral_proto::{
    BusStats, Denied, ErrorReply, Event, Payload, PluginApiClient, Publish, PublishReceipt, codes,
};
use serde::{Deserialize, Serialize};
use tarpc::client::RpcError;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// Events in one `deliver` call at most.
const DELIVERY_BATCH: usize = 1024;
/// A CLI stream not read for this long is closed.
const STREAM_IDLE: Duration = Duration::from_secs(10);
/// Queue size of a CLI stream.
const STREAM_QUEUE: usize = 65_536;

/// What a full queue does. Its default is in [`crate::config::defaults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overflow {
    /// Drop the oldest queued event (counted and reported).
    #[serde(rename = "drop-oldest")]
    DropOldest,
    /// Make publishers wait for room.
    #[serde(rename = "block")]
    Block,
}

/// A plugin's place on the bus, from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusRules {
    /// Patterns it subscribes to at start; also what it may subscribe to.
    pub subscribe: Vec<String>,
    /// Patterns it may publish under.
    pub publish: Vec<String>,
    /// Its queue's size.
    pub queue: usize,
    /// What its full queue does.
    pub overflow: Overflow,
    /// Whether its queue outlives its process.
    pub durable: bool,
}

/// A bounded event queue with one reader.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<QueueState>,
    readable: Notify,
    writable: Notify,
    cap: usize,
    overflow: Overflow,
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<Arc<Event>>,
    dropped: u64,
    delivered: u64,
    /// Its subscriber is gone (detached and not durable, or removed): what
    /// is pushed is discarded, so a publisher waiting for room stops waiting.
    closed: bool,
}

impl Queue {
    fn new(cap: usize, overflow: Overflow) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            readable: Notify::new(),
            writable: Notify::new(),
            cap: cap.max(1),
            overflow,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends, dropping the oldest when full under `drop-oldest`; under
    /// `block` a full queue hands the event back.
    fn try_push(&self, event: Arc<Event>) -> Result<(), Arc<Event>> {
        let mut state = self.lock();
        if state.closed {
            return Ok(());
        }
        if state.events.len() >= self.cap {
            match self.overflow {
                Overflow::Block => return Err(event),
                Overflow::DropOldest => {
                    state.events.pop_front();
                    state.dropped += 1;
                }
            }
        }
        state.events.push_back(event);
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    /// Appends, waiting for room under `block`.
    async fn push(&self, mut event: Arc<Event>) {
        loop {
            match self.try_push(event) {
                Ok(()) => return,
                Err(back) => event = back,
            }
            self.writable.notified().await;
        }
    }

    /// Takes up to `max` events from the front.
    pub fn take(&self, max: usize) -> Vec<Arc<Event>> {
        let mut state = self.lock();
        let n = state.events.len().min(max);
        let batch: Vec<_> = state.events.drain(..n).collect();
        drop(state);
        if !batch.is_empty() {
            self.writable.notify_one();
        }
        batch
    }

    /// Puts a batch that could not be delivered back at the front.
    fn requeue(&self, batch: Vec<Arc<Event>>) {
        let mut state = self.lock();
        for event in batch.into_iter().rev() {
            state.events.push_front(event);
        }
    }

    fn delivered(&self, n: usize) {
        self.lock().delivered += n as u64;
    }

    /// Empties the queue and discards what is pushed until it is opened.
    fn close(&self) {
        let mut state = self.lock();
        state.events.clear();
        state.closed = true;
        drop(state);
        self.writable.notify_one();
    }

    fn open(&self) {
        self.lock().closed = false;
    }

    /// Waits until the queue has an event.
    pub async fn readable(&self) {
        loop {
            if !self.lock().events.is_empty() {
                return;
            }
            self.readable.notified().await;
        }
    }
}

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
struct Attachment {
    client: PluginApiClient,
    timeout: Duration,
    failures: mpsc::UnboundedSender<DeliveryFailure>,
}

type Attached = Option<Attachment>;

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
    dropped_reported: u64,
}

struct Stream {
    patterns: Vec<String>,
    queue: Arc<Queue>,
    last_read: Instant,
}

enum Msg {
    Publish {
        source: Arc<str>,
        events: Vec<Publish>,
        reply: oneshot::Sender<PublishReceipt>,
    },
    Cli {
        event: Publish,
        reply: oneshot::Sender<Result<(), ErrorReply>>,
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
    OpenStream {
        patterns: Vec<String>,
        reply: oneshot::Sender<Result<u64, ErrorReply>>,
    },
    Stream {
        id: u64,
        reply: oneshot::Sender<Option<Arc<Queue>>>,
    },
}

/// The way to reach the bus actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BusHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bus::Msg")
    }
}

impl BusHandle {
    /// Starts the bus actor.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Bus {
            mailbox: rx,
            backlog: VecDeque::new(),
            subscribers: HashMap::new(),
            streams: HashMap::new(),
            next_stream: 1,
            retained: HashMap::new(),
            seq: 0,
        };
        tokio::spawn(actor.run());
        Self { tx }
    }

    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(msg(tx)).ok()?;
        rx.await.ok()
    }

    /// Publishes a plugin's batch, checked against its allow-list.
    pub async fn publish(&self, source: Arc<str>, events: Vec<Publish>) -> PublishReceipt {
        self.ask(|reply| Msg::Publish {
            source,
            events,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// Publishes one event from the CLI.
    pub async fn publish_cli(&self, event: Publish) -> Result<(), ErrorReply> {
        self.ask(|reply| Msg::Cli { event, reply })
            .await
            .unwrap_or_else(|| Err(shutting_down()))
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

    /// Opens a CLI stream of the events matching `patterns`.
    pub async fn open_stream(&self, patterns: Vec<String>) -> Result<u64, ErrorReply> {
        self.ask(|reply| Msg::OpenStream { patterns, reply })
            .await
            .unwrap_or_else(|| Err(shutting_down()))
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
        Ok(queue
            .take(DELIVERY_BATCH)
            .into_iter()
            .map(|e| (*e).clone())
            .collect())
    }
}

fn shutting_down() -> ErrorReply {
    ErrorReply::new(codes::SHUTTING_DOWN, "the bus is shutting down")
}

struct Bus {
    mailbox: mpsc::UnboundedReceiver<Msg>,
    /// Publishing messages that came while a publish waited for room.
    backlog: VecDeque<Msg>,
    subscribers: HashMap<Arc<str>, Subscriber>,
    streams: HashMap<u64, Stream>,
    next_stream: u64,
    retained: HashMap<String, Arc<Event>>,
    seq: u64,
}

impl Bus {
    async fn run(mut self) {
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
                let verdict = check_topic(&event.topic)
                    .map_err(|e| ErrorReply::new(codes::BAD_TOPIC, e))
                    .and_then(|()| reserved(&event.topic));
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
            Msg::Unregister { name } => {
                if let Some(sub) = self.subscribers.remove(&name) {
                    sub.queue.close();
                }
            }
            Msg::Attach { name, attachment } => self.attach(&name, attachment),
            Msg::Detach { name } => {
                if let Some(sub) = self.subscribers.get_mut(&name) {
                    sub.running = false;
                    sub.attached.send_replace(None);
                    if !sub.rules.durable {
                        sub.queue.close();
                        sub.patterns = sub.rules.subscribe.clone();
                    }
                }
            }
            Msg::Subscribe {
                name,
                patterns,
                add,
                reply,
            } => {
                let result = self.subscribe(&name, patterns, add);
                let _ = reply.send(result);
            }
            Msg::Stats { name, reply } => {
                let stats = self
                    .subscribers
                    .get(name.as_str())
                    .map(|s| {
                        let q = s.queue.lock();
                        BusStats {
                            subscriptions: s.patterns.clone(),
                            queued: q.events.len() as u64,
                            delivered: q.delivered,
                            dropped: q.dropped,
                            published: s.published,
                            denied_publishes: s.denied_publishes,
                            denied_subscriptions: s.denied_subscriptions,
                        }
                    })
                    .unwrap_or_default();
                let _ = reply.send(stats);
            }
            Msg::OpenStream { patterns, reply } => {
                let result = patterns
                    .iter()
                    .try_for_each(|p| check_pattern(p))
                    .map_err(|e| ErrorReply::new(codes::BAD_TOPIC, e))
                    .map(|()| {
                        let id = self.next_stream;
                        self.next_stream += 1;
                        let queue = Arc::new(Queue::new(STREAM_QUEUE, Overflow::DropOldest));
                        for event in self.retained_matching(&patterns, &[]) {
                            let _ = queue.try_push(event);
                        }
                        self.streams.insert(
                            id,
                            Stream {
                                patterns,
                                queue,
                                last_read: Instant::now(),
                            },
                        );
                        id
                    });
                let _ = reply.send(result);
            }
            Msg::Stream { id, reply } => {
                let queue = self.streams.get_mut(&id).map(|s| {
                    s.last_read = Instant::now();
                    Arc::clone(&s.queue)
                });
                let _ = reply.send(queue);
            }
        }
    }

    fn register(&mut self, name: Arc<str>, rules: BusRules) {
        if let Some(sub) = self.subscribers.get_mut(&name) {
            if sub.rules.queue != rules.queue || sub.rules.overflow != rules.overflow {
                tracing::info!(plugin = %name, "queue settings change at its next start");
            }
            if sub.rules.subscribe != rules.subscribe {
                sub.patterns = rules.subscribe.clone();
            }
            sub.rules = rules;
            return;
        }
        let queue = Arc::new(Queue::new(rules.queue, rules.overflow));
        let (attached, watch_rx) = watch::channel(None);
        tokio::spawn(deliver(
            Arc::clone(&name),
            Arc::clone(&queue),
            watch_rx,
            rules.durable,
        ));
        self.subscribers.insert(
            name,
            Subscriber {
                patterns: rules.subscribe.clone(),
                rules,
                queue,
                attached,
                running: false,
                ever_attached: false,
                published: 0,
                denied_publishes: 0,
                denied_subscriptions: 0,
                dropped_reported: 0,
            },
        );
    }

    fn attach(&mut self, name: &str, attachment: Attachment) {
        let Some(sub) = self.subscribers.get(name) else {
            return;
        };
        let replay = if !sub.rules.durable || !sub.ever_attached {
            self.retained_matching(&sub.patterns, &[])
        } else {
            Vec::new()
        };
        let Some(sub) = self.subscribers.get_mut(name) else {
            return;
        };
        sub.queue.open();
        for event in replay {
            let _ = sub.queue.try_push(event);
        }
        sub.running = true;
        sub.ever_attached = true;
        sub.attached.send_replace(Some(attachment));
    }

    /// The retained events matching one of `patterns` and none of `held`
    /// (those were replayed when `held` was subscribed), oldest first.
    fn retained_matching(&self, patterns: &[String], held: &[String]) -> Vec<Arc<Event>> {
        let mut found: Vec<Arc<Event>> = self
            .retained
            .values()
            .filter(|e| {
                patterns.iter().any(|p| matches(p, &e.topic))
                    && !held.iter().any(|p| matches(p, &e.topic))
            })
            .map(|e| {
                let mut e = (**e).clone();
                e.retained = true;
                Arc::new(e)
            })
            .collect();
        found.sort_by_key(|e| e.seq);
        found
    }

    fn subscribe(
        &mut self,
        name: &str,
        patterns: Vec<String>,
        add: bool,
    ) -> Result<(), ErrorReply> {
        for p in &patterns {
            check_pattern(p).map_err(|e| ErrorReply::new(codes::BAD_TOPIC, e))?;
        }
        let Some(sub) = self.subscribers.get_mut(name) else {
            return Err(ErrorReply::new(codes::UNKNOWN_PLUGIN, "not on the bus"));
        };
        if !add {
            sub.patterns.retain(|p| !patterns.contains(p));
            return Ok(());
        }
        if let Some(p) = patterns
            .iter()
            .find(|p| !sub.rules.subscribe.iter().any(|a| covers(a, p)))
        {
            sub.denied_subscriptions += 1;
            return Err(ErrorReply::new(
                codes::DENIED,
                format!(
                    "`{name}` may not subscribe to `{p}`: its `subscribe` list allows {:?}",
                    sub.rules.subscribe
                ),
            ));
        }
        let held = sub.patterns.clone();
        let new: Vec<String> = patterns.into_iter().filter(|p| !held.contains(p)).collect();
        sub.patterns.extend(new.iter().cloned());
        // A retained event already matched by a held pattern was replayed
        // then. And if the plugin is between its load and its first
        // delivery, the attach that follows replays for every pattern.
        let attach_replays = !sub.running && (!sub.rules.durable || !sub.ever_attached);
        if attach_replays {
            return Ok(());
        }
        let replay = self.retained_matching(&new, &held);
        if let Some(sub) = self.subscribers.get(name) {
            for event in replay {
                let _ = sub.queue.try_push(event);
            }
        }
        Ok(())
    }

    async fn publish_batch(&mut self, source: &Arc<str>, events: Vec<Publish>) -> PublishReceipt {
        let mut receipt = PublishReceipt::default();
        for (index, event) in events.into_iter().enumerate() {
            let verdict = self.may_publish(source, &event.topic);
            let Some(sub) = self.subscribers.get_mut(source) else {
                continue;
            };
            match verdict {
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

    fn may_publish(&self, source: &str, topic: &str) -> Result<(), ErrorReply> {
        check_topic(topic).map_err(|e| ErrorReply::new(codes::BAD_TOPIC, e))?;
        reserved(topic)?;
        let allowed = self
            .subscribers
            .get(source)
            .is_some_and(|s| s.rules.publish.iter().any(|p| matches(p, topic)));
        if allowed {
            Ok(())
        } else {
            Err(ErrorReply::new(
                codes::DENIED,
                format!("`{source}` may not publish on `{topic}` (see its `publish` list)"),
            ))
        }
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
            self.retained
                .insert(event.topic.clone(), Arc::clone(&event));
        }
        let mut blocked = Vec::new();
        for sub in self.subscribers.values() {
            if !(sub.running || sub.rules.durable)
                || !sub.patterns.iter().any(|p| matches(p, &event.topic))
            {
                continue;
            }
            if let Err(back) = sub.queue.try_push(Arc::clone(&event)) {
                blocked.push((Arc::clone(&sub.queue), back));
            }
        }
        for stream in self.streams.values() {
            if stream.patterns.iter().any(|p| matches(p, &event.topic)) {
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

    async fn on_tick(&mut self) {
        self.streams
            .retain(|_, s| s.last_read.elapsed() < STREAM_IDLE);
        let mut reports = Vec::new();
        for (name, sub) in &mut self.subscribers {
            let dropped = sub.queue.lock().dropped;
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
                    topic: "corral.bus.dropped".into(),
                    payload,
                    retain: false,
                };
                self.fan_out("corral", event).await;
            }
        }
    }
}

fn reserved(topic: &str) -> Result<(), ErrorReply> {
    if topic == "corral" || topic.starts_with("corral.") {
        Err(ErrorReply::new(
            codes::DENIED,
            format!("`{topic}` is under `corral.>`, which only corral publishes"),
        ))
    } else {
        Ok(())
    }
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Drains one plugin's queue into its `deliver` call while it runs. A call
/// the plugin fails (no answer in time, or an error) is reported, and the
/// next batch waits for the plugin's next connection.
async fn deliver(
    name: Arc<str>,
    queue: Arc<Queue>,
    mut attached: watch::Receiver<Attached>,
    durable: bool,
) {
    loop {
        let current = attached.borrow_and_update().clone();
        let Some(Attachment {
            client,
            timeout,
            failures,
        }) = current
        else {
            if attached.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            _ = queue.readable() => {}
            changed = attached.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let batch = queue.take(DELIVERY_BATCH);
        if batch.is_empty() {
            continue;
        }
        let events: Vec<Event> = batch.iter().map(|e| (**e).clone()).collect();
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        match client.deliver(ctx, events).await {
            Ok(()) => queue.delivered(batch.len()),
            Err(e) => {
                let events = batch.len();
                if durable {
                    queue.requeue(batch);
                }
                let failure = match e {
                    RpcError::DeadlineExceeded => Some(DeliveryFailure::Timeout {
                        events,
                        within: timeout,
                    }),
                    RpcError::Server(e) => Some(DeliveryFailure::Refused {
                        events,
                        error: e.to_string(),
                    }),
                    // The connection ended: the plugin's actor sees that itself.
                    e => {
                        tracing::debug!(plugin = %name, "delivery failed: {e}");
                        None
                    }
                };
                if let Some(failure) = failure {
                    tracing::warn!(plugin = %name, "delivery failed: {failure:?}");
                    let _ = failures.send(failure);
                }
                // Wait for the plugin's next connection.
                if attached.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            topic: "t".into(),
            payload: Payload::null(),
            source: "s".into(),
            seq,
            at_unix_us: 0,
            retained: false,
        })
    }

    #[test]
    fn a_full_drop_oldest_queue_drops_and_counts() {
        let q = Queue::new(2, Overflow::DropOldest);
        for seq in 1..=5 {
            q.try_push(event(seq)).unwrap();
        }
        let kept: Vec<u64> = q.take(10).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [4, 5]);
        assert_eq!(q.lock().dropped, 3);
    }

    #[tokio::test]
    async fn closing_a_full_block_queue_releases_a_waiting_publisher() {
        let q = Arc::new(Queue::new(1, Overflow::Block));
        q.try_push(event(1)).unwrap();
        let waiting = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.push(event(2)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // The subscriber died: what it will never read is discarded.
        q.close();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the publisher is released")
            .unwrap();
        assert!(q.take(10).is_empty());
        // Back: it queues again.
        q.open();
        q.try_push(event(3)).unwrap();
        assert_eq!(q.take(10)[0].seq, 3);
    }

    #[test]
    fn a_full_block_queue_hands_the_event_back() {
        let q = Queue::new(1, Overflow::Block);
        q.try_push(event(1)).unwrap();
        assert_eq!(q.try_push(event(2)).unwrap_err().seq, 2);
        assert_eq!(q.take(1)[0].seq, 1);
        q.try_push(event(2)).unwrap();
    }
}

/// Serves [`BusApi`](corral_proto::BusApi) to one plugin on its bus
/// connection until it closes. Everything it does is on behalf of `name`.
pub fn serve_plugin<S>(name: Arc<str>, bus: BusHandle, transport: S)
where
    S: tarpc::Transport<
            tarpc::Response<corral_proto::BusApiResponse>,
            tarpc::ClientMessage<corral_proto::BusApiRequest>,
        > + Send
        + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    use corral_proto::BusApi;
    use futures::StreamExt;
    use tarpc::server::{BaseChannel, Channel};
    let server = PluginBus { name, bus };
    tokio::spawn(
        BaseChannel::with_defaults(transport)
            .execute(server.serve())
            // In order: a plugin's batches are fanned out as they came.
            .for_each(|request| request),
    );
}

#[derive(Clone)]
struct PluginBus {
    name: Arc<str>,
    bus: BusHandle,
}

impl corral_proto::BusApi for PluginBus {
    async fn publish(self, _: tarpc::context::Context, events: Vec<Publish>) -> PublishReceipt {
        self.bus.publish(self.name, events).await
    }

    async fn subscribe(
        self,
        _: tarpc::context::Context,
        patterns: Vec<String>,
    ) -> Result<(), ErrorReply> {
        self.bus.subscribe(self.name, patterns, true).await
    }

    async fn unsubscribe(
        self,
        _: tarpc::context::Context,
        patterns: Vec<String>,
    ) -> Result<(), ErrorReply> {
        self.bus.subscribe(self.name, patterns, false).await
    }
}
