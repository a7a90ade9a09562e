//! The [`Plugin`] trait: the hooks a plugin author implements.

use std::future::Future;

use serde_json::Value;

use crate::{Chunks, Context, Event, PluginError, Stop};

/// A corral plugin. Only [`handle`](Plugin::handle) is required.
///
/// Hooks run on the plugin's async runtime: `.await` freely, but move
/// CPU-heavy or blocking work to `tokio::task::spawn_blocking`, or heartbeats
/// will go unanswered and corral will consider the plugin hung.
pub trait Plugin: Send + Sync + 'static {
    /// Runs once after the handshake with the plugin's `config` table (JSON
    /// `null` when it has none). An error fails the start.
    fn on_load(
        &self,
        ctx: &Context,
        config: Value,
    ) -> impl Future<Output = Result<(), PluginError>> + Send {
        let _ = (ctx, config);
        async { Ok(()) }
    }

    /// Runs one action. Return a JSON reply, or an error with a code
    /// ([`PluginError::unknown_action`] for actions you do not know).
    fn handle(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send;

    /// Runs `action` for a streamed reply: sends its chunks into `out`, in
    /// order, and returns the stream's final value (or an error, which
    /// ends it). `out.send` waits while the caller is behind and fails once
    /// the caller has gone; the future is dropped when the caller closes
    /// the stream or its deadline passes. The default answers with
    /// [`handle`](Plugin::handle)'s one value, so any action can be
    /// streamed; an action that only streams answers `handle` with
    /// [`PluginError::streamed`].
    fn stream(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
        out: Chunks,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send {
        let _ = out;
        self.handle(ctx, action, payload)
    }

    /// Runs when the fleet config's `config` table for this plugin changed
    /// and corral reloaded it, without a restart. By default it runs
    /// [`on_load`](Plugin::on_load) with the new config, as the Python SDK
    /// does, so a plugin that keeps its config from `on_load` never goes on
    /// with the old one. An error makes corral restart the plugin so the new
    /// config applies through `on_load`; `corral reload` reports it.
    fn on_reload(
        &self,
        ctx: &Context,
        config: Value,
    ) -> impl Future<Output = Result<(), PluginError>> + Send {
        self.on_load(ctx, config)
    }

    /// The plugin's background work: pollers, timers, sensors. Runs once
    /// per process, in a task of its own, after the first `on_load`
    /// succeeded; a reload never starts it again. It runs until it returns
    /// or `stop` is raised, when the plugin unloads (a stop request, or the
    /// connection to the supervisor closing): then the SDK waits up to 2 s
    /// for it to return, drops it at its next `.await` if it has not
    /// (saying so on stderr), and only then runs
    /// [`on_unload`](Plugin::on_unload). An error or a panic is logged to
    /// stderr, and the plugin goes on serving.
    ///
    /// Run several jobs at once with `tokio::join!`, and periodic ones with
    /// [`Stop::every`]; like every hook it shares the plugin's thread, so
    /// blocking work belongs in `tokio::task::spawn_blocking`.
    ///
    /// ```
    /// # use std::sync::atomic::{AtomicU64, Ordering};
    /// # use std::time::Duration;
    /// # use corral_sdk::{Context, Plugin, PluginError, Stop, Value};
    /// #[derive(Default)]
    /// struct Meter {
    ///     readings: AtomicU64,
    /// }
    ///
    /// impl Plugin for Meter {
    ///     # async fn handle(&self, _: &Context, a: &str, _: Value) -> Result<Value, PluginError> {
    ///     #     Err(PluginError::unknown_action(a))
    ///     # }
    ///     async fn background(&self, ctx: &Context, stop: Stop) -> Result<(), PluginError> {
    ///         stop.every(Duration::from_secs(1), || async {
    ///             let n = self.readings.fetch_add(1, Ordering::Relaxed);
    ///             ctx.publish("meter.reading", &serde_json::json!({"n": n})).await
    ///         })
    ///         .await;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn background(
        &self,
        ctx: &Context,
        stop: Stop,
    ) -> impl Future<Output = Result<(), PluginError>> + Send {
        let _ = (ctx, stop);
        async { Ok(()) }
    }

    /// Runs for each event matching the plugin's subscriptions, in order.
    /// An event that matches several of them arrives once, and does not say
    /// which matched: a [`Router`](crate::Router) runs every handler whose
    /// pattern matches it, by priority. The next batch of events is not
    /// delivered until this returns, so a slow handler slows only this
    /// plugin's queue.
    fn on_event(&self, ctx: &Context, event: Event) -> impl Future<Output = ()> + Send {
        let _ = (ctx, event);
        async {}
    }

    /// Runs once before the process exits: on a stop request, or when the
    /// connection to the supervisor closes; after the
    /// [`background`](Plugin::background) work stopped.
    fn on_unload(&self, ctx: &Context) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }
}
