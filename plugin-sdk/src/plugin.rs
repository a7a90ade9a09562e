//! The [`Plugin`] trait: the hooks a plugin author implements.

use std::future::Future;

use serde_json::Value;

use crate::{Context, Event, PluginError};

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

    /// Runs for each event matching the plugin's subscriptions, in order.
    /// The next batch of events is not delivered until this returns, so a
    /// slow handler slows only this plugin's queue.
    fn on_event(&self, ctx: &Context, event: Event) -> impl Future<Output = ()> + Send {
        let _ = (ctx, event);
        async {}
    }

    /// Runs once before the process exits: on a stop request, or when the
    /// connection to the supervisor closes.
    fn on_unload(&self, ctx: &Context) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }
}
