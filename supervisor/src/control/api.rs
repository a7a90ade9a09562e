//! The control API itself: each [`ControlApi`] request turned into calls on
//! the root supervisor's handle, the bus's, or one plugin's.

use std::time::Duration;

use corral_proto::{
    ControlApi, ErrorReply, Payload, PluginInfo, PluginStatus, ReloadReport, codes,
};
use futures::future::join_all;

use crate::plugin::PluginHandle;
use crate::supervisor::SupervisorHandle;

/// Serves one connection's requests.
#[derive(Clone)]
pub(super) struct Server {
    /// The fleet it answers for.
    pub(super) supervisor: SupervisorHandle,
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
        info.status.bus_in = info.bus.delivered;
        info.status.bus_out = info.bus.published;
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

    async fn ready(self, _: tarpc::context::Context) -> bool {
        self.supervisor.is_ready()
    }
}
