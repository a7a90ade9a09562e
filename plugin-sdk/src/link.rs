//! [`Link`]: where a [`Context`](crate::Context)'s bus traffic goes, as a
//! trait, and its wire implementation on the supervisor's [`BusApiClient`].
//!
//! The context batches publishes and answers flushes; a link only carries
//! one batch, subscribe or unsubscribe to the bus and brings back its answer.
//! Other implementations (the recorder in `testing`) live with what needs
//! them: this module knows only the wire.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use corral_proto::{BusApiClient, Publish, PublishReceipt, codes};
use futures::future::BoxFuture;

use crate::PluginError;

/// The bus as a plugin's context sees it.
pub(crate) trait Link: Debug + Send + Sync + 'static {
    /// Publishes a batch, in order; the receipt says which were refused.
    fn publish(&self, batch: Vec<Publish>) -> BoxFuture<'_, Result<PublishReceipt, PluginError>>;
    /// Adds subscriptions (all or none).
    fn subscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>>;
    /// Drops subscriptions.
    fn unsubscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>>;
}

/// The supervisor's `BusApi`, on the plugin's bus connection.
impl Link for BusApiClient {
    fn publish(&self, batch: Vec<Publish>) -> BoxFuture<'_, Result<PublishReceipt, PluginError>> {
        Box::pin(async move {
            BusApiClient::publish(self, far_deadline(), batch)
                .await
                .map_err(rpc_error)
        })
    }

    fn subscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move {
            BusApiClient::subscribe(self, far_deadline(), patterns)
                .await
                .map_err(rpc_error)?
        })
    }

    fn unsubscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move {
            BusApiClient::unsubscribe(self, far_deadline(), patterns)
                .await
                .map_err(rpc_error)?
        })
    }
}

/// A call context whose deadline is a day away: under an
/// `overflow = "block"` subscriber a publish waits for room as long as that
/// takes.
fn far_deadline() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(24 * 3600);
    ctx
}

fn rpc_error(e: tarpc::client::RpcError) -> PluginError {
    PluginError::new(codes::DISCONNECTED, format!("event bus: {e}"))
}
