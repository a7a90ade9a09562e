//! What the plugin actor reports of itself: its `ps` row (published for
//! the handles at every change) and what `corral inspect` shows, read from
//! the state the actor owns.

use corral_proto::{Payload, PluginInfo, PluginStatus};

use super::super::messages::Row;
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

    /// Its `ps` row now.
    pub(super) fn status(&self) -> PluginStatus {
        self.row().now(self.meter.handed())
    }

    /// Publishes its `ps` row for the handles' readers.
    pub(super) fn publish_row(&mut self) {
        self.row_dirty = false;
        self.row.send_replace(Some(self.row()));
        self.announce();
    }

    /// Its `ps` row, less what changes with time alone.
    fn row(&self) -> Row {
        Row {
            status: self.status_fields(),
            running_since: self.spawn.as_ref().and_then(|s| s.running_since),
            backoff_until: self.backoff,
            sampled_at: self.spawn.as_ref().and_then(|s| s.last_sample().1),
        }
    }

    fn status_fields(&self) -> PluginStatus {
        PluginStatus {
            name: self.spec.name.clone(),
            state: self.lifecycle.state(),
            pid: self.pid(),
            restarts: self.lifecycle.restarts(),
            uptime_ms: 0,
            rss_bytes: self.spawn.as_ref().map_or(0, |s| s.last_sample().0),
            // The same walk as `rss` measured it.
            cpu_ms: self.spawn.as_ref().map_or(0, Spawn::cpu_ms),
            calls: 0,
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
            backoff_ms: None,
            codec: self.spec.codec.to_string(),
        }
    }
}
