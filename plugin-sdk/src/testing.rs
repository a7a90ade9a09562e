//! Drive a plugin in a unit test, in-process, without a supervisor: call its
//! actions, feed it events, see what it published. Enabled by the `testing`
//! feature (add `corral-sdk = { …, features = ["testing"] }` under
//! `[dev-dependencies]`).
//!
//! The [`Harness`] gives the plugin the same [`Context`] it gets under
//! corral, with the bus replaced by a recorder that applies corral's
//! allow-lists: publishing defaults to `<name>.>`, and topics under
//! `corral.>` are refused.
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

use std::sync::{Arc, Mutex, MutexGuard};

use corral_proto::event::{check_pattern, check_topic, covers, matches};
use corral_proto::{Denied, Publish, PublishReceipt, codes};
use serde_json::Value;

use crate::context::Link;
use crate::{Context, Event, Plugin, PluginError};

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
#[derive(Debug)]
pub(crate) struct Recorder {
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

    pub(crate) fn publish(&self, batch: Vec<Publish>) -> PublishReceipt {
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

    pub(crate) fn subscribe(&self, patterns: Vec<String>) -> Result<(), PluginError> {
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

    pub(crate) fn unsubscribe(&self, patterns: &[String]) -> Result<(), PluginError> {
        for p in patterns {
            check_pattern(p).map_err(|e| PluginError::new(codes::BAD_TOPIC, e))?;
        }
        self.lock().subscriptions.retain(|s| !patterns.contains(s));
        Ok(())
    }
}

/// One plugin, in this process, as corral would run it. Needs a tokio
/// runtime (`#[tokio::test]`).
///
/// Calls run concurrently when the test polls them together; dropping a
/// call's future cancels its handler, as a caller's deadline does under
/// corral (wrap a call in `tokio::time::timeout` to test that).
pub struct Harness<P> {
    plugin: P,
    name: String,
    recorder: Arc<Recorder>,
    ctx: Option<Context>,
    seq: u64,
    /// Whether `publish` set the allow-list (so `name` keeps it).
    publish_set: bool,
}

impl<P: Plugin> Harness<P> {
    /// A harness for `plugin`, named `test` until [`name`](Harness::name)
    /// says otherwise, subscribed to nothing.
    pub fn new(plugin: P) -> Self {
        let harness = Self {
            plugin,
            name: String::new(),
            recorder: Arc::new(Recorder {
                state: Mutex::new(State::default()),
            }),
            ctx: None,
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

    /// The context the plugin's hooks get (created on first use).
    pub fn ctx(&mut self) -> &Context {
        let (name, recorder) = (&self.name, &self.recorder);
        self.ctx.get_or_insert_with(|| {
            Context::new(
                name.clone(),
                Some(Link::Local(Arc::clone(recorder))),
                corral_proto::MAX_FRAME_BYTES,
            )
        })
    }

    /// Runs `on_load` with `config`.
    pub async fn load(&mut self, config: Value) -> Result<(), PluginError> {
        let ctx = self.ctx().clone();
        self.plugin.on_load(&ctx, config).await
    }

    /// Runs `on_reload` with `config`.
    pub async fn reload(&mut self, config: Value) -> Result<(), PluginError> {
        let ctx = self.ctx().clone();
        self.plugin.on_reload(&ctx, config).await
    }

    /// Calls `action` with `payload`, as `corral call` would.
    pub async fn call(&mut self, action: &str, payload: Value) -> Result<Value, PluginError> {
        let ctx = self.ctx().clone();
        self.plugin.handle(&ctx, action, payload).await
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
        let event = Event {
            topic: topic.to_string(),
            payload,
            source: "test".to_string(),
            seq: self.seq,
            at_unix_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            retained: false,
        };
        let ctx = self.ctx().clone();
        self.plugin.on_event(&ctx, event).await;
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

    /// Runs `on_unload`.
    pub async fn unload(&mut self) {
        let ctx = self.ctx().clone();
        self.plugin.on_unload(&ctx).await;
    }
}
