//! [`Link`]: where a [`Context`](crate::Context)'s bus traffic goes, as a
//! trait, and its wire implementation on the supervisor's [`BusApiClient`].
//!
//! The context batches publishes and answers flushes; a link only carries
//! one batch, subscribe or unsubscribe to the bus and brings back its answer.
//! Other implementations (the recorder in `testing`) live with what needs
//! them: this module knows only the wire.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use corral_proto::{
    BusApiClient, Payload, PluginEntry, PluginStatus, Publish, PublishReceipt, StreamPart, codes,
};
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
    /// Calls another plugin's action, by `deadline`.
    fn call(&self, call: Outgoing) -> BoxFuture<'_, Result<Payload, PluginError>>;
    /// Opens a streamed call to another plugin's action; answers its id.
    fn call_stream(&self, call: Outgoing) -> BoxFuture<'_, Result<u64, PluginError>>;
    /// The next piece of a stream this plugin opened.
    fn stream_next(
        &self,
        id: u64,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<StreamPart, PluginError>>;
    /// Abandons a stream this plugin opened.
    fn stream_close(&self, id: u64) -> BoxFuture<'_, ()>;
    /// The fleet's plugins.
    fn plugins(&self) -> BoxFuture<'_, Result<Vec<PluginEntry>, PluginError>>;
    /// Publishes a batch relayed from `origin` (a bridge's).
    fn relay(
        &self,
        origin: String,
        batch: Vec<Publish>,
    ) -> BoxFuture<'_, Result<PublishReceipt, PluginError>>;
    /// Every plugin's status row (a bridge's).
    fn fleet(&self) -> BoxFuture<'_, Result<Vec<PluginStatus>, PluginError>>;
}

/// A call to another plugin, as the link carries it.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) plugin: String,
    pub(crate) action: String,
    pub(crate) payload: Payload,
    pub(crate) wait: bool,
    pub(crate) deadline: Instant,
}

/// The supervisor's `BusApi` on the plugin's bus connection, with the
/// features the supervisor agreed to: a method it may not know is never
/// sent to it.
#[derive(Debug)]
pub(crate) struct BusLink {
    client: BusApiClient,
    calls: bool,
    streams: bool,
    bridge: bool,
}

impl BusLink {
    pub(crate) fn new(client: BusApiClient, features: &[String]) -> Self {
        let has = |f: &str| features.iter().any(|x| x == f);
        Self {
            client,
            calls: has("calls"),
            streams: has("calls") && has("streams"),
            bridge: has("bridge"),
        }
    }

    fn needs_bridge(&self) -> Result<&BusApiClient, PluginError> {
        if self.bridge {
            Ok(&self.client)
        } else {
            Err(PluginError::new(
                codes::NOT_SUPPORTED,
                "this supervisor predates bridges (relayed events, the fleet's status)",
            ))
        }
    }

    fn needs(&self, streams: bool) -> Result<&BusApiClient, PluginError> {
        if self.calls && (self.streams || !streams) {
            Ok(&self.client)
        } else {
            Err(PluginError::new(
                codes::NOT_SUPPORTED,
                "this supervisor predates calls between plugins and streamed replies",
            ))
        }
    }
}

impl Link for BusLink {
    fn publish(&self, batch: Vec<Publish>) -> BoxFuture<'_, Result<PublishReceipt, PluginError>> {
        Box::pin(async move {
            BusApiClient::publish(&self.client, far_deadline(), batch)
                .await
                .map_err(rpc_error)
        })
    }

    fn subscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move {
            BusApiClient::subscribe(&self.client, far_deadline(), patterns)
                .await
                .map_err(rpc_error)?
        })
    }

    fn unsubscribe(&self, patterns: Vec<String>) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move {
            BusApiClient::unsubscribe(&self.client, far_deadline(), patterns)
                .await
                .map_err(rpc_error)?
        })
    }

    fn call(&self, call: Outgoing) -> BoxFuture<'_, Result<Payload, PluginError>> {
        Box::pin(async move {
            let Outgoing {
                plugin,
                action,
                payload,
                wait,
                deadline,
            } = call;
            let what = format!("{plugin}:{action}");
            BusApiClient::call(
                self.needs(false)?,
                by(deadline),
                plugin,
                action,
                payload,
                wait,
            )
            .await
            .map_err(|e| call_error(&e, &what))?
        })
    }

    fn call_stream(&self, call: Outgoing) -> BoxFuture<'_, Result<u64, PluginError>> {
        Box::pin(async move {
            let what = format!("{}:{}", call.plugin, call.action);
            BusApiClient::call_stream(
                self.needs(true)?,
                by(call.deadline),
                call.plugin,
                call.action,
                call.payload,
            )
            .await
            .map_err(|e| call_error(&e, &what))?
        })
    }

    fn stream_next(
        &self,
        id: u64,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<StreamPart, PluginError>> {
        Box::pin(async move {
            BusApiClient::stream_next(self.needs(true)?, by(deadline), id)
                .await
                .map_err(|e| call_error(&e, "the stream"))?
        })
    }

    fn stream_close(&self, id: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Ok(client) = self.needs(true) else {
                return;
            };
            let _ =
                BusApiClient::stream_close(client, by(Instant::now() + Duration::from_secs(5)), id)
                    .await;
        })
    }

    fn plugins(&self) -> BoxFuture<'_, Result<Vec<PluginEntry>, PluginError>> {
        Box::pin(async move {
            BusApiClient::plugins(
                self.needs(false)?,
                by(Instant::now() + Duration::from_secs(10)),
            )
            .await
            .map_err(rpc_error)
        })
    }

    fn relay(
        &self,
        origin: String,
        batch: Vec<Publish>,
    ) -> BoxFuture<'_, Result<PublishReceipt, PluginError>> {
        Box::pin(async move {
            BusApiClient::relay(self.needs_bridge()?, far_deadline(), origin, batch)
                .await
                .map_err(rpc_error)
        })
    }

    fn fleet(&self) -> BoxFuture<'_, Result<Vec<PluginStatus>, PluginError>> {
        Box::pin(async move {
            let rows = BusApiClient::fleet(
                self.needs_bridge()?,
                by(Instant::now() + Duration::from_secs(10)),
            )
            .await
            .map_err(rpc_error)??;
            rows.to_json()
                .map_err(|e| PluginError::new(codes::INTERNAL, format!("the fleet's rows: {e}")))
        })
    }
}

/// A call context with `deadline`.
fn by(deadline: Instant) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = deadline;
    ctx
}

/// A call that failed on the way: its deadline passed, or the bus
/// connection broke or refused it.
fn call_error(e: &tarpc::client::RpcError, what: &str) -> PluginError {
    match e {
        tarpc::client::RpcError::DeadlineExceeded => PluginError::new(
            codes::TIMEOUT,
            format!("{what}: no answer before the deadline"),
        ),
        tarpc::client::RpcError::Server(e) => PluginError::new(
            codes::LIMIT,
            format!("{what}: the supervisor refused it: {}", e.detail),
        ),
        e => PluginError::new(codes::DISCONNECTED, format!("{what}: {e}")),
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
