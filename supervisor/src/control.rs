//! The control actor: serves [`ControlApi`] on the control socket, for the
//! `corral` CLI and for scripts. Each connection is checked (this user or
//! root only; matching protocol version) before it is served, and requests
//! are forwarded to the root supervisor through its handle.
//!
//! The control socket speaks the JSON codec, so any language can drive a
//! fleet with the same frames the CLI sends.

use std::path::Path;
use std::time::Duration;

use corral_proto::codec::{self, Codec, MAX_FRAME_BYTES};
use corral_proto::{
    ControlApi, ErrorReply, Payload, PluginInfo, PluginStatus, ReloadReport, codes,
};
use futures::StreamExt;
use futures::future::join_all;
use interprocess::local_socket::tokio::prelude::*;
use tarpc::server::{BaseChannel, Channel};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::Error;
use crate::plugin::PluginHandle;
use crate::supervisor::SupervisorHandle;
use crate::wire::handshake;

/// The running control server; stop it with [`ControlServer::shutdown`].
#[derive(Debug)]
pub struct ControlServer {
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Binds the control socket (0600) and starts serving it.
    pub fn start(path: &Path, supervisor: SupervisorHandle) -> Result<Self, Error> {
        let listener =
            handshake::bind(path).map_err(Error::io(format!("cannot bind {}", path.display())))?;
        let (stop, mut stop_rx) = oneshot::channel::<Duration>();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let grace = loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(stream) => {
                            connections.spawn(serve_connection(stream, supervisor.clone()));
                        }
                        Err(e) => tracing::warn!("control socket accept failed: {e}"),
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    grace = &mut stop_rx => break grace.unwrap_or_default(),
                }
            };
            drop(listener);
            let drained = tokio::time::timeout(grace, async {
                while connections.join_next().await.is_some() {}
            });
            if drained.await.is_err() {
                connections.abort_all();
            }
        });
        Ok(Self { stop, task })
    }

    /// Stops accepting, then gives open connections up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(grace);
        let _ = self.task.await;
    }
}

/// How long a client has to send its hello before its connection is
/// dropped, so a stalled client cannot hold a connection open.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve_connection(
    stream: interprocess::local_socket::tokio::Stream,
    supervisor: SupervisorHandle,
) {
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        handshake::accept_control(stream, MAX_FRAME_BYTES),
    );
    let framed = match hello.await {
        Ok(Ok(f)) => f,
        Ok(Err(why)) => {
            tracing::warn!("refused a control connection: {why}");
            return;
        }
        Err(_) => {
            tracing::warn!("refused a control connection: no hello within {HELLO_TIMEOUT:?}");
            return;
        }
    };
    let transport = codec::into_transport(framed, Codec::Json);
    BaseChannel::with_defaults(transport)
        .execute(Server { supervisor }.serve())
        .for_each(|request| async {
            tokio::spawn(request);
        })
        .await;
}

#[derive(Clone)]
struct Server {
    supervisor: SupervisorHandle,
}

impl Server {
    /// The handle of one named plugin.
    async fn resolve_one(&self, name: &str) -> Result<PluginHandle, ErrorReply> {
        let mut found = self.resolve(&[name.to_string()]).await?;
        found.pop().ok_or_else(|| {
            ErrorReply::new(codes::UNKNOWN_PLUGIN, format!("no plugin named `{name}`"))
        })
    }

    /// The handles of the named plugins, or an error naming the unknown ones.
    async fn resolve(&self, names: &[String]) -> Result<Vec<PluginHandle>, ErrorReply> {
        let plugins = self.supervisor.plugins().await;
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !plugins.iter().any(|p| p.name() == n.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = plugins.iter().map(|p| p.name()).collect();
            return Err(ErrorReply::new(
                codes::UNKNOWN_PLUGIN,
                format!(
                    "no plugin named `{}` (plugins: {})",
                    unknown.join("`, `"),
                    known.join(", ")
                ),
            ));
        }
        Ok(names
            .iter()
            .filter_map(|n| plugins.iter().find(|p| p.name() == n.as_str()).cloned())
            .collect())
    }
}

impl ControlApi for Server {
    async fn ps(self, _: tarpc::context::Context) -> Vec<PluginStatus> {
        self.supervisor.ps().await
    }

    async fn call(
        self,
        _: tarpc::context::Context,
        name: String,
        action: String,
        payload: Payload,
    ) -> Result<Payload, ErrorReply> {
        self.resolve_one(&name).await?.call(action, payload).await
    }

    async fn down(self, _: tarpc::context::Context) {
        self.supervisor.shutdown().await;
    }

    async fn reload(self, _: tarpc::context::Context) -> Result<ReloadReport, ErrorReply> {
        self.supervisor.reload().await.map_err(|e| {
            ErrorReply::new(
                codes::BAD_REQUEST,
                format!("the config was refused and nothing changed:\n{e}"),
            )
        })
    }

    async fn start(self, _: tarpc::context::Context, names: Vec<String>) -> Result<(), ErrorReply> {
        for plugin in self.resolve(&names).await? {
            plugin.wait(true, "start requested").await;
        }
        Ok(())
    }

    async fn stop(self, _: tarpc::context::Context, names: Vec<String>) -> Result<(), ErrorReply> {
        let plugins = self.resolve(&names).await?;
        join_all(plugins.iter().map(PluginHandle::stop)).await;
        Ok(())
    }

    async fn restart(
        self,
        _: tarpc::context::Context,
        names: Vec<String>,
    ) -> Result<(), ErrorReply> {
        let plugins = self.resolve(&names).await?;
        join_all(plugins.iter().map(|p| p.restart("restart requested"))).await;
        Ok(())
    }

    async fn inspect(
        self,
        _: tarpc::context::Context,
        name: String,
    ) -> Result<PluginInfo, ErrorReply> {
        let mut info = self.resolve_one(&name).await?.info().await.ok_or_else(|| {
            ErrorReply::new(codes::SHUTTING_DOWN, "the supervisor is shutting down")
        })?;
        info.bus = self.supervisor.bus().stats(&name).await;
        Ok(info)
    }

    async fn publish(
        self,
        _: tarpc::context::Context,
        topic: String,
        payload: Payload,
        retain: bool,
    ) -> Result<(), ErrorReply> {
        self.supervisor
            .bus()
            .publish_cli(corral_proto::Publish {
                topic,
                payload,
                retain,
            })
            .await
    }

    async fn events_open(
        self,
        _: tarpc::context::Context,
        patterns: Vec<String>,
    ) -> Result<u64, ErrorReply> {
        self.supervisor.bus().open_stream(patterns).await
    }

    async fn events_next(
        self,
        _: tarpc::context::Context,
        id: u64,
    ) -> Result<Vec<corral_proto::Event>, ErrorReply> {
        self.supervisor
            .bus()
            .next_in_stream(id, Duration::from_secs(1))
            .await
    }
}
