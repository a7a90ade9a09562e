//! Write corral plugins in Rust.
//!
//! Implement [`Plugin`] and make [`run`] the whole of `main`. The SDK reads
//! the socket path and the per-spawn secret corral put in the environment,
//! connects, shakes hands, and serves the plugin's actions. Every request is
//! served concurrently, so heartbeats are answered while a long handler runs
//! (as long as handlers `.await` rather than block the thread: move blocking
//! work to [`tokio::task::spawn_blocking`]). The process exits when the
//! supervisor asks it to stop (after [`Plugin::on_unload`]) or when its
//! connection to the supervisor closes, so a plugin never outlives corral.
//!
//! Payloads are JSON values in this API and bytes on the wire.
//!
//! With the `testing` feature, [`testing::Harness`] runs a plugin in a unit
//! test without a supervisor, through the same serve loop as [`run`].
//!
//! Background work (pollers, timers, sensors) is the
//! [`Plugin::background`] hook: started once per process after the first
//! `on_load`, stopped through its [`Stop`] signal before `on_unload`. Event
//! handlers on patterns, by priority, are a [`Router`] called from
//! [`Plugin::on_event`].
//!
//! The modules: `serve` (the environment, the connections, the serve loop),
//! `context` ([`Context`]: a plugin's identity and its publishes), `link` (the
//! bus behind a context, as a trait with the wire implementation),
//! `background` (the background work's one life) and `stop` ([`Stop`], its
//! signal), `router` ([`Router`]: event handlers by pattern and priority),
//! `outcome` ([`Outcome`]: how a job or handler fails), `plugin`, `event`
//! and `error` (the types a plugin author sees), and `testing`, which
//! depends on the runtime and never the other way round.
//!
//! # Examples
//!
//! ```no_run
//! use corral_sdk::{Context, Plugin, PluginError, Value};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     async fn handle(&self, _ctx: &Context, action: &str, payload: Value) -> Result<Value, PluginError> {
//!         match action {
//!             "greet" => Ok(serde_json::json!({"hello": payload})),
//!             other => Err(PluginError::unknown_action(other)),
//!         }
//!     }
//! }
//!
//! fn main() {
//!     corral_sdk::run(Hello)
//! }
//! ```
#![deny(missing_docs)]

mod background;
mod calls;
mod context;
mod error;
mod event;
mod link;
mod outcome;
mod plugin;
mod router;
mod routes;
mod serve;
mod stop;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;

pub use calls::{Call, DEFAULT_CALL_TIMEOUT, Piece, Replies};
pub use context::Context;
pub use corral_proto::{
    ActionInfo, Payload, PluginEntry, PluginState, PluginStatus, Publish, PublishReceipt,
};
pub use corral_proto::{ErrorReply as PluginError, codes};
pub use corral_proto::{HTTP_ACTION, HttpReply, WS_ACTION};
pub use error::RunError;
pub use event::{Event, EventPayload};
pub use outcome::Outcome;
pub use plugin::Plugin;
pub use router::{EventHandler, Router};
pub use routes::{Request, RouteHandler, Routes, SocketHandler, StreamHandler};
pub use serde_json::Value;
pub use serve::{run, try_run};
pub use stop::Stop;
pub use stream::Chunks;
pub use tokio_util::sync::CancellationToken;
