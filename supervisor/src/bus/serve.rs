//! [`BusApi`](corral_proto::BusApi) served on a plugin's bus connection:
//! [`serve_plugin`] answers each call through the [`BusHandle`], on behalf
//! of that plugin.

use std::sync::Arc;

use corral_proto::{ErrorReply, Publish, PublishReceipt};

use super::BusHandle;

/// Serves [`BusApi`](corral_proto::BusApi) to one plugin on its bus
/// connection until it closes, or until the handle returned aborts it (which
/// closes the connection). Everything it does is on behalf of `name`.
pub fn serve_plugin<S>(name: Arc<str>, bus: BusHandle, transport: S) -> tokio::task::AbortHandle
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
    )
    .abort_handle()
}

/// The server behind one plugin's bus connection.
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
