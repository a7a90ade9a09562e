//! Drive a plugin in a unit test, in-process, without a supervisor: call its
//! actions, feed it events, see what it published. Enabled by the `testing`
//! feature (add `corral-sdk = { …, features = ["testing"] }` under
//! `[dev-dependencies]`).
//!
//! The [`Harness`] serves the plugin with the SDK's real serve loop, the one
//! that serves it over its socket under corral, on an in-memory connection
//! with the same framing and codec: every call goes through request
//! dispatch, deadlines, cancellation and reply encoding as in production.
//! The plugin gets the same [`Context`] it gets under corral, with the bus
//! replaced by a recorder that applies corral's allow-lists: publishing
//! defaults to `<name>.>`, and topics under `corral.>` are refused. The
//! plugin's [`background`](Plugin::background) work starts after the first
//! successful [`load`](Harness::load) and stops on [`unload`](Harness::unload)
//! (signal, bounded wait, then `on_unload`), as under corral.
//!
//! This module depends on the runtime (the serve loop, the context, the
//! `Link` trait it implements for its recorder); nothing in the runtime
//! depends on it.
//!
//! ```
//! use corral_sdk::testing::Harness;
//! use corral_sdk::{Context, Event, Plugin, PluginError, Value};
//! use serde_json::json;
//!
//! struct Greeter;
//!
//! impl Plugin for Greeter {
//!     async fn handle(&self, _: &Context, action: &str, payload: Value) -> Result<Value, PluginError> {
//!         match action {
//!             "greet" => Ok(json!({ "hello": payload })),
//!             other => Err(PluginError::unknown_action(other)),
//!         }
//!     }
//!     async fn on_event(&self, ctx: &Context, event: Event) {
//!         let _ = ctx.publish("greeter.ticked", &event.payload).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In a test: #[tokio::test] async fn greets() { … }
//! let mut h = Harness::new(Greeter).name("greeter").subscribe(&["clock.>"]);
//! h.load(json!(null)).await.unwrap();
//! assert_eq!(h.call("greet", json!("ann")).await.unwrap(), json!({ "hello": "ann" }));
//! assert!(h.deliver("clock.tick", json!(1)).await);
//! let published = h.published().await;
//! assert_eq!((published[0].topic.as_str(), &published[0].payload), ("greeter.ticked", &json!(1)));
//! # }
//! ```

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_proto::codec::{self, Codec, MAX_FRAME_BYTES};
use corral_proto::event::{check_pattern, check_topic, covers, matches};
use corral_proto::{Denied, Payload, PluginApiClient, Publish, PublishReceipt, codes};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::background::STOP_GRACE;
use crate::link::{Link, Outgoing};
use crate::serve::serve_connection;
use crate::{Context, Event, Plugin, PluginError, Stop};

/// corral's default `call_timeout`, the deadline of every harness call
/// unless [`Harness::call_timeout`] says otherwise.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One event the plugin published and the recorder accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Value,
    /// Whether it was published retained.
    pub retain: bool,
}

/// Stands in for the event bus: keeps what was published and the plugin's
/// subscriptions, and applies the allow-lists.
#[derive(Debug, Default)]
struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    allow_publish: Vec<String>,
    allow_subscribe: Vec<String>,
    subscriptions: Vec<String>,
    published: Vec<Published>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_publish(&self, batch: Vec<Publish>) -> PublishReceipt {
        let mut state = self.lock();
        let mut receipt = PublishReceipt::default();
        for (index, p) in batch.into_iter().enumerate() {
            let refusal = if let Err(e) = check_topic(&p.topic) {
                Some(PluginError::new(codes::BAD_TOPIC, e))
            } else if !state.allow_publish.iter().any(|a| matches(a, &p.topic)) {
                Some(PluginError::new(
                    codes::DENIED,
                    format!("`{}` is outside this plugin's publish allow-list", p.topic),
                ))
            } else {
                None
            };
            match refusal {
                Some(error) => receipt.denied.push(Denied {
                    index: index as u64,
                    error,
                }),
                None => {
                    receipt.accepted += 1;
                    state.published.push(Published {
                        payload: p.payload.to_json().unwrap_or(Value::Null),
                        topic: p.topic,
                        retain: p.retain,
                    });
                }
            }
        }
        receipt
    }

    fn record_subscribe(&self, patterns: Vec<String>) -> Result<(), PluginError> {
        let mut state = self.lock();
        for p in &patterns {
            check_pattern(p).map_err(|e| PluginError::new(codes::BAD_TOPIC, e))?;
            if !state.allow_subscribe.iter().any(|a| covers(a, p)) {
                return Err(PluginError::new(
                    codes::DENIED,
                    format!("`{p}` is outside this plugin's subscribe allow-list"),
                ));
            }
        }
        for p in patterns {
            if !state.subscriptions.contains(&p) {
                state.subscriptions.push(p);
            }
        }
        Ok(())
    }

    fn record_unsubscribe(&self, patterns: &[String]) -> Result<(), PluginError> {
        for p in patterns {
            check_pattern(p).map_err(|e| PluginError::new(codes::BAD_TOPIC, e))?;
        }
        self.lock().subscriptions.retain(|s| !patterns.contains(s));
        Ok(())
    }
}

impl Link for Recorder {
    fn publish(&self, batch: Vec<Publish>) -> BoxFuture<'_, Result<PublishReceipt, PluginError>> {
        Box::pin(std::future::ready(Ok(self.record_publish(batch))))
    }

    fn subscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(std::future::ready(self.record_subscribe(patterns)))
    }

    fn unsubscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(std::future::ready(self.record_unsubscribe(&patterns)))
    }

    fn call(&self, call: Outgoing) -> BoxFuture<'_, Result<Payload, PluginError>> {
        Box::pin(std::future::ready(Err(alone(&call.plugin))))
    }

    fn call_stream(&self, call: Outgoing) -> BoxFuture<'_, Result<u64, PluginError>> {
        Box::pin(std::future::ready(Err(alone(&call.plugin))))
    }

    fn stream_next(
        &self,
        _: u64,
        _: std::time::Instant,
    ) -> BoxFuture<'_, Result<corral_proto::StreamPart, PluginError>> {
        Box::pin(std::future::ready(Err(alone("the stream"))))
    }

    fn stream_close(&self, _: u64) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn plugins(&self) -> BoxFuture<'_, Result<Vec<corral_proto::PluginEntry>, PluginError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// A harness records relayed events as it records publishes.
    fn relay(
        &self,
        _origin: String,
        batch: Vec<Publish>,
    ) -> BoxFuture<'_, Result<PublishReceipt, PluginError>> {
        Box::pin(std::future::ready(Ok(self.record_publish(batch))))
    }

    fn fleet(&self) -> BoxFuture<'_, Result<Vec<corral_proto::PluginStatus>, PluginError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// A harness runs one plugin: there is no other to call.
fn alone(plugin: &str) -> PluginError {
    PluginError::new(
        corral_proto::codes::UNKNOWN_PLUGIN,
        format!("no plugin named `{plugin}`: a test harness runs this plugin alone"),
    )
}

/// A hook's panic, carried from the serve loop's task to the test.
type Panic = Box<dyn Any + Send>;

/// The plugin as the harness serves it: every hook as the plugin's own,
/// except that a panic is handed to the harness (which resumes it in the
/// test) instead of dying unseen in a request's task.
struct Guarded<P> {
    plugin: P,
    panics: mpsc::UnboundedSender<Panic>,
}

impl<P: Plugin> Guarded<P> {
    async fn run<T>(&self, hook: impl std::future::Future<Output = T>) -> T {
        match std::panic::AssertUnwindSafe(hook).catch_unwind().await {
            Ok(value) => value,
            Err(panic) => {
                let _ = self.panics.send(panic);
                // Nobody is answered: the harness resumes the panic.
                std::future::pending().await
            }
        }
    }
}

impl<P: Plugin> Plugin for Guarded<P> {
    async fn on_load(&self, ctx: &Context, config: Value) -> Result<(), PluginError> {
        self.run(self.plugin.on_load(ctx, config)).await
    }

    async fn handle(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
    ) -> Result<Value, PluginError> {
        self.run(self.plugin.handle(ctx, action, payload)).await
    }

    async fn stream(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
        out: crate::Chunks,
    ) -> Result<Value, PluginError> {
        self.run(self.plugin.stream(ctx, action, payload, out))
            .await
    }

    async fn on_reload(&self, ctx: &Context, config: Value) -> Result<(), PluginError> {
        self.run(self.plugin.on_reload(ctx, config)).await
    }

    async fn on_event(&self, ctx: &Context, event: Event) {
        self.run(self.plugin.on_event(ctx, event)).await;
    }

    async fn on_unload(&self, ctx: &Context) {
        self.run(self.plugin.on_unload(ctx)).await;
    }

    /// As under corral: a panic is logged and the plugin goes on, so the
    /// test sees what the plugin's users would.
    async fn background(&self, ctx: &Context, stop: Stop) -> Result<(), PluginError> {
        self.plugin.background(ctx, stop).await
    }
}

/// The serve loop once started: the context its hooks get, and the
/// client end of its connection.
struct Running {
    ctx: Context,
    client: PluginApiClient,
    panics: mpsc::UnboundedReceiver<Panic>,
}

/// One plugin, in this process, as corral would run it. Needs a tokio
/// runtime (`#[tokio::test]`).
///
/// The serve loop starts on first use (the first call, or
/// [`ctx`](Harness::ctx)). Dropping a call's future cancels its handler, as a
/// caller going away does under corral (wrap a call in
/// `tokio::time::timeout` to test that); a call past its deadline
/// ([`call_timeout`](Harness::call_timeout), corral's 30 s by default) is
/// cancelled and answered `timeout`. A hook that panics panics the test,
/// except the background work, whose panic is logged as under corral.
pub struct Harness<P> {
    plugin: Option<P>,
    name: String,
    recorder: Arc<Recorder>,
    running: Option<Running>,
    call_timeout: Duration,
    stop_timeout: Duration,
    seq: u64,
    /// Whether `publish` set the allow-list (so `name` keeps it).
    publish_set: bool,
}

impl<P: Plugin> Harness<P> {
    /// A harness for `plugin`, named `test` until [`name`](Harness::name)
    /// says otherwise, subscribed to nothing.
    pub fn new(plugin: P) -> Self {
        let harness = Self {
            plugin: Some(plugin),
            name: String::new(),
            recorder: Arc::new(Recorder::default()),
            running: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            stop_timeout: STOP_GRACE,
            seq: 0,
            publish_set: false,
        };
        harness.name("test")
    }

    /// Sets the plugin's name, and with it the default publish allow-list
    /// (`<name>.>`) unless [`publish`](Harness::publish) set one.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        if !self.publish_set {
            self.recorder.lock().allow_publish = vec![format!("{name}.>")];
        }
        self
    }

    /// Sets the publish allow-list (the fleet config's `publish`).
    pub fn publish(mut self, patterns: &[&str]) -> Self {
        self.recorder.lock().allow_publish = patterns.iter().map(|p| p.to_string()).collect();
        self.publish_set = true;
        self
    }

    /// Sets the start subscriptions, which are also the subscribe
    /// allow-list (the fleet config's `subscribe`).
    pub fn subscribe(self, patterns: &[&str]) -> Self {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        {
            let mut state = self.recorder.lock();
            state.allow_subscribe.clone_from(&patterns);
            state.subscriptions = patterns;
        }
        self
    }

    /// Sets the deadline of every call (the fleet config's `call_timeout`).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets how long [`unload`](Harness::unload) waits for the background
    /// work to stop before it drops it (the SDK's 2 s by default).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The serve loop, started on first use.
    fn running(&mut self) -> &mut Running {
        let (name, recorder, plugin) = (&self.name, &self.recorder, &mut self.plugin);
        let grace = self.stop_timeout;
        self.running.get_or_insert_with(|| {
            let plugin = plugin.take().expect("the plugin is served once");
            start(plugin, name, recorder, grace)
        })
    }

    /// The context the plugin's hooks get (the serve loop starts on first use).
    pub fn ctx(&mut self) -> &Context {
        &self.running().ctx
    }

    /// Runs `on_load` with `config`; the first time it succeeds, the
    /// plugin's background work starts.
    pub async fn load(&mut self, config: Value) -> Result<(), PluginError> {
        let config = encode(&config)?;
        let ctx = self.deadline();
        let client = self.running().client.clone();
        self.answer(client.load(ctx, config)).await?
    }

    /// Runs `on_reload` with `config` (the background work goes on as it
    /// was: a reload never starts it again).
    pub async fn reload(&mut self, config: Value) -> Result<(), PluginError> {
        let config = encode(&config)?;
        let ctx = self.deadline();
        let client = self.running().client.clone();
        self.answer(client.reload(ctx, config)).await?
    }

    /// Calls `action` with `payload`, as `corral call` would.
    pub async fn call(&mut self, action: &str, payload: Value) -> Result<Value, PluginError> {
        let payload = encode(&payload)?;
        let ctx = self.deadline();
        let client = self.running().client.clone();
        let reply = self
            .answer(client.handle(ctx, action.to_string(), payload))
            .await??;
        reply
            .to_json()
            .map_err(|e| PluginError::internal(format!("the reply is not JSON: {e}")))
    }

    /// Delivers an event from source `test`, if the plugin's subscriptions
    /// match its topic, and returns once `on_event` ran. Returns whether it
    /// was delivered.
    pub async fn deliver(&mut self, topic: &str, payload: Value) -> bool {
        let subscribed = {
            let state = self.recorder.lock();
            state.subscriptions.iter().any(|p| matches(p, topic))
        };
        if !subscribed {
            return false;
        }
        self.seq += 1;
        let event = corral_proto::Event {
            topic: topic.to_string(),
            payload: encode(&payload).unwrap_or_else(|_| Payload::null()),
            source: "test".to_string(),
            seq: self.seq,
            at_unix_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            retained: false,
        };
        let ctx = self.deadline();
        let client = self.running().client.clone();
        let _ = self.answer(client.deliver(ctx, vec![event].into())).await;
        true
    }

    /// Every publish the bus accepted so far, in order (waits for the
    /// plugin's buffered publishes to be sent first).
    pub async fn published(&mut self) -> Vec<Published> {
        self.ctx().clone().sync().await;
        self.recorder.lock().published.clone()
    }

    /// The plugin's subscriptions now.
    pub fn subscriptions(&self) -> Vec<String> {
        self.recorder.lock().subscriptions.clone()
    }

    /// Stops the background work, then runs `on_unload` (once, as a
    /// `shutdown` request does under corral): raises the stop signal, waits
    /// up to [`stop_timeout`](Harness::stop_timeout) for the work to
    /// return, and drops it if it has not.
    pub async fn unload(&mut self) {
        let ctx = self.deadline();
        let client = self.running().client.clone();
        let _ = self.answer(client.shutdown(ctx)).await;
    }

    /// A call context with this harness's deadline.
    fn deadline(&self) -> tarpc::context::Context {
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + self.call_timeout;
        ctx
    }

    /// Waits for an answer from the serve loop; a hook's panic meanwhile is
    /// resumed here, in the test.
    async fn answer<T>(
        &mut self,
        call: impl std::future::Future<Output = Result<T, tarpc::client::RpcError>>,
    ) -> Result<T, PluginError> {
        let timeout = self.call_timeout;
        let panics = &mut self.running().panics;
        tokio::select! {
            answer = call => answer.map_err(|e| rpc_error(e, timeout)),
            Some(panic) = panics.recv() => std::panic::resume_unwind(panic),
        }
    }
}

/// Starts the real serve loop on one end of an in-memory connection framed
/// as a socket is, and connects a client to the other.
fn start<P: Plugin>(plugin: P, name: &str, recorder: &Arc<Recorder>, grace: Duration) -> Running {
    // Rust plugins speak bincode unless their manifest says otherwise.
    let codec = Codec::Bincode;
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let link: Arc<dyn Link> = Arc::clone(recorder) as Arc<dyn Link>;
    let ctx = Context::new(name.to_string(), Some(link), MAX_FRAME_BYTES);
    let (tx, panics) = mpsc::unbounded_channel();
    let plugin = Arc::new(Guarded { plugin, panics: tx });
    tokio::spawn(serve_connection(
        plugin,
        ctx.clone(),
        codec::framed(theirs, MAX_FRAME_BYTES),
        codec,
        grace,
    ));
    let transport = codec::into_transport(codec::framed(ours, MAX_FRAME_BYTES), codec);
    let client = PluginApiClient::new(tarpc::client::Config::default(), transport).spawn();
    Running {
        ctx,
        client,
        panics,
    }
}

fn encode(value: &Value) -> Result<Payload, PluginError> {
    Payload::from_json(value)
        .map_err(|e| PluginError::bad_payload(format!("payload does not encode: {e}")))
}

/// What a caller under corral would see for a failed call.
fn rpc_error(e: tarpc::client::RpcError, timeout: Duration) -> PluginError {
    match e {
        tarpc::client::RpcError::DeadlineExceeded => PluginError::new(
            codes::TIMEOUT,
            format!("the plugin did not answer within {timeout:?}"),
        ),
        other => PluginError::new(
            codes::DISCONNECTED,
            format!("lost the plugin before it answered: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests;
