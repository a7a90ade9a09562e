//! [`BusApi`](corral_proto::BusApi) served on a plugin's bus connection:
//! [`serve_plugin`] answers each request on behalf of that plugin. Bus
//! requests (publish, subscribe) go through the [`BusHandle`] one after
//! the other, so a plugin's batches are fanned out in the order it sent
//! them; calls to other plugins go to the fleet's router through
//! [`Calls`], each in a task of its own, so a slow call holds up neither
//! the plugin's publishes nor its other calls.

use std::sync::Arc;
use std::time::Instant;

use corral_proto::{
    BusApiRequest, Denied, ErrorReply, Payload, PluginEntry, PluginStatus, Publish, PublishReceipt,
    StreamPart, codes,
};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc};

use super::BusHandle;
use crate::calls::{CallRequest, Caller, Calls, STREAM_IDLE, Streams};

/// Requests in flight on one bus connection at most (calls included);
/// more are answered with an error.
const MAX_IN_FLIGHT: usize = 128;
/// Publishes and subscriptions queued behind the one being handled (past
/// it, reading this connection waits: a plugin holds up only itself).
const ORDERED_QUEUE: usize = 64;
/// How long a closed connection's queued publishes may take to finish.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves [`BusApi`](corral_proto::BusApi) to one plugin on its bus
/// connection until it closes, or until the handle returned aborts it (which
/// closes the connection, and every stream it opened). Everything it does is
/// on behalf of `name`; `bridge` is whether it may relay events from
/// elsewhere and read the fleet's status (`bridge = true`).
pub fn serve_plugin<S>(
    (name, bridge): (Arc<str>, bool),
    bus: BusHandle,
    calls: Calls,
    transport: S,
) -> tokio::task::AbortHandle
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
    let server = PluginBus {
        name,
        bridge,
        bus,
        calls,
        streams: Arc::default(),
        listing: Arc::new(Semaphore::new(1)),
    };
    let requests = BaseChannel::with_defaults(transport)
        .max_concurrent_requests(MAX_IN_FLIGHT)
        .requests();
    let streams = Arc::clone(&server.streams);
    tokio::spawn(async move {
        // Publishes and subscriptions run one after the other in a task of
        // their own, so one waiting for room (under `overflow = "block"`)
        // holds up neither the answers to calls nor the reading of requests.
        let (ordered, mut in_order) = mpsc::channel::<BoxFuture<'static, ()>>(ORDERED_QUEUE);
        let mut worker = Worker(tokio::spawn(async move {
            while let Some(request) = in_order.recv().await {
                request.await;
            }
        }));
        let mut requests = std::pin::pin!(requests);
        let mut sweep = tokio::time::interval(STREAM_IDLE / 2);
        loop {
            let request = tokio::select! {
                request = requests.next() => request,
                _ = sweep.tick() => {
                    streams.sweep();
                    continue;
                }
            };
            let request = match request {
                Some(Ok(request)) => request,
                Some(Err(e)) => {
                    tracing::debug!("bus connection ended: {e}");
                    break;
                }
                None => break,
            };
            let is_ordered = matches!(
                request.get().message,
                BusApiRequest::Publish { .. }
                    | BusApiRequest::Relay { .. }
                    | BusApiRequest::Subscribe { .. }
                    | BusApiRequest::Unsubscribe { .. }
            );
            let answer = request.execute(server.clone().serve());
            if is_ordered {
                if ordered.send(Box::pin(answer)).await.is_err() {
                    break;
                }
            } else {
                tokio::spawn(answer);
            }
        }
        // What was read is handled, for a while: a plugin that published
        // and exited loses nothing, and a publish held for a dead
        // subscriber's room does not hold this task for good.
        drop(ordered);
        let _ = tokio::time::timeout(DRAIN, &mut worker.0).await;
    })
    .abort_handle()
}

/// The task that runs a connection's publishes in order: aborted with the
/// connection's task, however that ends.
struct Worker(tokio::task::JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The server behind one plugin's bus connection.
#[derive(Clone)]
struct PluginBus {
    name: Arc<str>,
    /// Whether it may relay and read the fleet's status.
    bridge: bool,
    bus: BusHandle,
    calls: Calls,
    /// The streamed calls it has open.
    streams: Arc<Streams>,
    /// One `plugins` request at a time: each one asks every plugin's actor.
    listing: Arc<Semaphore>,
}

impl PluginBus {
    fn request(
        &self,
        ctx: tarpc::context::Context,
        plugin: String,
        action: String,
        payload: Payload,
        wait: bool,
    ) -> CallRequest {
        CallRequest {
            caller: Caller::Plugin(Arc::clone(&self.name)),
            plugin,
            action,
            payload,
            deadline: Some(ctx.deadline.max(Instant::now())),
            wait,
        }
    }

    /// Refuses what only a bridge may do, naming the key that allows it.
    fn needs_bridge(&self, what: &str) -> Result<(), ErrorReply> {
        if self.bridge {
            Ok(())
        } else {
            Err(ErrorReply::new(
                codes::DENIED,
                format!(
                    "{what} is for bridges: `{}` needs `bridge = true` in the fleet file",
                    self.name
                ),
            ))
        }
    }
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

    async fn call(
        self,
        ctx: tarpc::context::Context,
        plugin: String,
        action: String,
        payload: Payload,
        wait: bool,
    ) -> Result<Payload, ErrorReply> {
        let call = self.request(ctx, plugin, action, payload, wait);
        self.calls.call(call).await
    }

    async fn call_stream(
        self,
        ctx: tarpc::context::Context,
        plugin: String,
        action: String,
        payload: Payload,
    ) -> Result<u64, ErrorReply> {
        let call = self.request(ctx, plugin, action, payload, false);
        self.calls.open_stream(&self.streams, call).await
    }

    async fn stream_next(
        self,
        _: tarpc::context::Context,
        id: u64,
    ) -> Result<StreamPart, ErrorReply> {
        self.streams.next(id).await
    }

    async fn stream_close(self, _: tarpc::context::Context, id: u64) {
        self.streams.close(id);
    }

    async fn plugins(self, _: tarpc::context::Context) -> Vec<PluginEntry> {
        let Ok(_turn) = self.listing.acquire().await else {
            return Vec::new();
        };
        self.calls.plugins().await
    }

    async fn relay(
        self,
        _: tarpc::context::Context,
        origin: String,
        events: Vec<Publish>,
    ) -> PublishReceipt {
        let refusal = self.needs_bridge("relaying events").and_then(|()| {
            corral_proto::event::check_origin(&origin)
                .map_err(|why| ErrorReply::new(codes::BAD_TOPIC, why))
        });
        if let Err(error) = refusal {
            return PublishReceipt {
                accepted: 0,
                denied: (0..events.len() as u64)
                    .map(|index| Denied {
                        index,
                        error: error.clone(),
                    })
                    .collect(),
            };
        }
        self.bus.relay(self.name, origin.into(), events).await
    }

    async fn fleet(self, _: tarpc::context::Context) -> Result<Payload, ErrorReply> {
        self.needs_bridge("the fleet's status")?;
        let rows: Vec<PluginStatus> = match self.listing.acquire().await {
            Ok(_turn) => self.calls.statuses().await,
            Err(_) => Vec::new(),
        };
        Payload::from_json(&rows).map_err(|e| ErrorReply::new(codes::INTERNAL, e.to_string()))
    }
}
