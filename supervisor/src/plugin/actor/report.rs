//! What the plugin actor reports of itself: its `ps` row and what
//! `corral inspect` shows, read from the state the actor owns.

use corral_proto::{Payload, PluginInfo, PluginState, PluginStatus};

use super::super::process::Spawn;
use super::Actor;

impl Actor {
    /// What `corral inspect` shows (the bus figures are the bus's to add).
    pub(super) fn info(&mut self) -> PluginInfo {
        let log_file = self
            .host
            .settings
            .log_dir
            .join(format!("{}.log", self.spec.name));
        let cgroups = self.spawn.as_ref().and_then(Spawn::cgroup_paths);
        let settings = self.spec.settings(&log_file, cgroups);
        PluginInfo {
            status: self.status(),
            settings: Payload::from_json(&settings).unwrap_or_default(),
            history: self.lifecycle.history(),
            bus: Default::default(),
            actions: self.spec.actions.clone(),
            calls: Default::default(),
            config_sources: Default::default(),
        }
    }

    /// Its `ps` row.
    pub(super) fn status(&mut self) -> PluginStatus {
        let pid = self.pid();
        let state = self.lifecycle.state();
        let backoff_ms = match (state, self.backoff) {
            (PluginState::Backoff, Some(at)) => Some(
                u64::try_from(
                    at.saturating_duration_since(tokio::time::Instant::now())
                        .as_millis(),
                )
                .unwrap_or(u64::MAX),
            ),
            _ => None,
        };
        PluginStatus {
            name: self.spec.name.clone(),
            state,
            pid,
            restarts: self.lifecycle.restarts(),
            uptime_ms: self
                .spawn
                .as_ref()
                .and_then(Spawn::uptime)
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            rss_bytes: self
                .spawn
                .as_mut()
                .map_or(0, |s| s.last_rss(&mut self.probe)),
            // Read after `last_rss`: the same walk measured it.
            cpu_ms: self.spawn.as_ref().map_or(0, Spawn::cpu_ms),
            calls: self.meter.handed(),
            bus_in: 0,
            bus_out: 0,
            protocol: self.spec.protocol,
            port: self.spawn.as_ref().and_then(|s| s.port),
            uid: self.spawn.as_ref().and_then(|s| s.uid),
            sandbox: match (
                self.spawn.as_ref().and_then(|s| s.sandbox.clone()),
                &self.spec.sandbox,
            ) {
                (Some(described), _) => described,
                (None, Some(_)) => "sandboxed, no process".into(),
                (None, None) => "none".into(),
            },
            status_text: self
                .spawn
                .as_ref()
                .and_then(|s| s.notify.as_ref()?.status().map(str::to_string)),
            memory_max_bytes: self.spec.memory_max,
            memory_high_bytes: self.spec.memory_high,
            limits: self.enforcement,
            last_exit: self.lifecycle.last_exit().cloned(),
            last_stderr: self.lifecycle.last_stderr().to_vec(),
            waiting_for: None,
            backoff_ms,
            codec: self.spec.codec.to_string(),
        }
    }
}
