//! The control API itself: each [`ControlApi`] request turned into calls on
//! the root supervisor's handle, the bus's, or one plugin's.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::{
    ControlApi, ErrorReply, Payload, PluginInfo, PluginStatus, ReloadReport, StreamPart, codes,
};
use futures::future::join_all;

use corral_proto::selects;

use crate::calls::{CallRequest, Caller, Streams};
use crate::plugin::PluginHandle;
use crate::supervisor::SupervisorHandle;

/// Serves one connection's requests.
#[derive(Clone)]
pub(crate) struct Server {
    /// The fleet it answers for.
    pub(super) supervisor: SupervisorHandle,
    /// The streamed calls this connection has open.
    pub(super) streams: Arc<Streams>,
}

impl Server {
    /// A server for requests that come from elsewhere than the control
    /// socket (the HTTP face), with streams of its own.
    pub(crate) fn new(supervisor: SupervisorHandle) -> Self {
        Self {
            supervisor,
            streams: Arc::default(),
        }
    }

    /// A call from the operator: any action, within the target's own
    /// `call_timeout`.
    fn request(name: String, action: String, payload: Payload) -> CallRequest {
        CallRequest {
            caller: Caller::Cli,
            plugin: name,
            action,
            payload,
            deadline: None,
            wait: false,
        }
    }
}

impl Server {
    /// The handle of one named plugin; the name of a plugin with instances
    /// is refused, saying which to name.
    async fn resolve_one(&self, name: &str) -> Result<PluginHandle, ErrorReply> {
        let mut found = self.selection(name).await?;
        match found.as_slice() {
            [one] if one.name() == name => Ok(found.remove(0)),
            _ => Err(ErrorReply::new(
                codes::BAD_REQUEST,
                format!(
                    "`{name}` has {} instances ({}): name one",
                    found.len(),
                    names_of(&found)
                ),
            )),
        }
    }

    /// The plugins `name` selects: itself, or all of its instances.
    async fn selection(&self, name: &str) -> Result<Vec<PluginHandle>, ErrorReply> {
        Ok(self.selections(&[name.to_string()]).await?.remove(0))
    }

    /// What each of `names` selects (a plugin, or all its instances), or an
    /// error naming those that select nothing.
    async fn selections(&self, names: &[String]) -> Result<Vec<Vec<PluginHandle>>, ErrorReply> {
        let plugins = self.supervisor.plugins().await;
        let selected: Vec<Vec<PluginHandle>> = names
            .iter()
            .map(|n| {
                let of = plugins.iter().filter(|p| selects(n, p.name()));
                of.cloned().collect()
            })
            .collect();
        let unknown: Vec<&str> = names
            .iter()
            .zip(&selected)
            .filter(|(_, s)| s.is_empty())
            .map(|(n, _)| n.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(ErrorReply::new(
                codes::UNKNOWN_PLUGIN,
                format!(
                    "no plugin named `{}` (plugins: {})",
                    unknown.join("`, `"),
                    names_of(&plugins)
                ),
            ));
        }
        Ok(selected)
    }

    /// Every plugin the names select, each once, in the order named.
    async fn resolve(&self, names: &[String]) -> Result<Vec<PluginHandle>, ErrorReply> {
        let mut all: Vec<PluginHandle> = Vec::new();
        for p in self.selections(names).await?.into_iter().flatten() {
            if !all.iter().any(|q| q.name() == p.name()) {
                all.push(p);
            }
        }
        Ok(all)
    }
}

fn names_of(plugins: &[PluginHandle]) -> String {
    plugins
        .iter()
        .map(PluginHandle::name)
        .collect::<Vec<_>>()
        .join(", ")
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
        let call = Self::request(name, action, payload);
        self.supervisor.calls().call(call).await
    }

    async fn call_stream(
        self,
        _: tarpc::context::Context,
        name: String,
        action: String,
        payload: Payload,
    ) -> Result<u64, ErrorReply> {
        let call = Self::request(name, action, payload);
        self.supervisor
            .calls()
            .open_stream(&self.streams, call)
            .await
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
        // The instances of one plugin restart one at a time, each once
        // running again, however they were named (`web`, `--all`, `web.0
        // web.1`); the rest restart at once.
        let plugins = self.resolve(&names).await?;
        let groups = super::rolling::by_plugin(plugins);
        let results = join_all(groups.into_iter().map(|(name, plugins)| async move {
            match plugins.as_slice() {
                [one] => {
                    one.restart("restart requested").await;
                    Ok(())
                }
                _ => super::rolling::restart(&name, &plugins).await,
            }
        }))
        .await;
        results.into_iter().collect()
    }

    async fn inspect(
        self,
        _: tarpc::context::Context,
        name: String,
    ) -> Result<PluginInfo, ErrorReply> {
        let plugin = self.resolve_one(&name).await?;
        let mut info = plugin.info().await.ok_or_else(|| {
            ErrorReply::new(codes::SHUTTING_DOWN, "the supervisor is shutting down")
        })?;
        info.calls = plugin.call_stats();
        let terms = plugin.terms();
        let group = corral_proto::plugin_of(plugin.name());
        let keys: Vec<&str> = match terms.config.for_plugin() {
            serde_json::Value::Object(map) => map.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        info.config_sources = crate::config::overrides::sources(
            self.supervisor.fleet_file(),
            group,
            terms.manifest.as_deref(),
            keys,
        );
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
