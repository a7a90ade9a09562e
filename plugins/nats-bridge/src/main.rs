//! `nats-bridge`: joins corral fleets on several hosts through NATS.
//!
//! Bus events under `export` go out as `PREFIX.NODE.TOPIC` (source,
//! sequence and time in headers); subjects under `import` come in as bus
//! events with source `nats:NODE`, never echoed back; requests on
//! `PREFIX.NODE.call.PLUGIN.ACTION` are served by calls within the
//! bridge's `calls`; `PREFIX.NODE.ps` and `PREFIX.ps` answer this node's
//! plugins. While NATS is unreachable the bridge keeps running and holds
//! what it exports in a bounded outbox (drops counted); with `jetstream`
//! events go through a stream and a restarted node resumes where it
//! stopped. Its `status` action and its `ps` line say where it stands.
//!
//! The modules: `settings` (its config, checked), `subject` (the subjects
//! and headers), `connection` (NATS and its state), `outbox` (what waits
//! to go out), `seen` (repeats told apart), `bridge` (what the tasks
//! share), `export`, `import`, `stream` (the JetStream stream) and
//! `serve` (remote calls and status).

mod bridge;
mod connection;
mod export;
mod import;
mod outbox;
mod seen;
mod serve;
mod settings;
mod stream;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corral_proto::event::matches;
use corral_proto::nats as subject;
use corral_sdk::{Context, Event, Plugin, PluginError, Stop, Value, codes};

use crate::bridge::Bridge;
use crate::connection::Nats;
use crate::outbox::Outgoing;
use crate::settings::Settings;

/// How often the `ps` line is brought up to date.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// The plugin: its bridge once loaded, and the config it was loaded with.
#[derive(Default)]
struct NatsBridge {
    running: OnceLock<(Value, Arc<Bridge>)>,
}

impl NatsBridge {
    fn bridge(&self) -> Result<&Arc<Bridge>, PluginError> {
        self.running
            .get()
            .map(|(_, b)| b)
            .ok_or_else(|| PluginError::new(codes::NOT_RUNNING, "the bridge is not loaded"))
    }
}

impl Plugin for NatsBridge {
    async fn on_load(&self, ctx: &Context, config: Value) -> Result<(), PluginError> {
        if let Some((loaded, _)) = self.running.get() {
            // A reload with other settings restarts the bridge.
            return if *loaded == config {
                Ok(())
            } else {
                Err(PluginError::new(
                    codes::NOT_SUPPORTED,
                    "the bridge's settings change with a restart",
                ))
            };
        }
        let hostname = nix_hostname();
        let settings = Settings::from_config(config.clone(), &hostname)
            .map_err(|why| PluginError::new(codes::BAD_PAYLOAD, why))?;
        if !settings.export.is_empty() {
            let patterns: Vec<&str> = settings.export.iter().map(String::as_str).collect();
            ctx.subscribe(&patterns).await.map_err(|e| {
                PluginError::new(
                    e.code.clone(),
                    format!(
                        "export: {} (the bridge's `subscribe` must allow them)",
                        e.message
                    ),
                )
            })?;
        }
        let nats = Nats::connect(&settings)
            .await
            .map_err(|why| PluginError::new(codes::BAD_PAYLOAD, why))?;
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let _ = self
            .running
            .set((config, Arc::new(Bridge::new(settings, nats, boot))));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        Ok(())
    }

    async fn handle(&self, _: &Context, action: &str, _: Value) -> Result<Value, PluginError> {
        match action {
            "status" => Ok(self.bridge()?.status()),
            other => Err(PluginError::unknown_action(other)),
        }
    }

    async fn background(&self, ctx: &Context, stop: Stop) -> Result<(), PluginError> {
        let bridge = Arc::clone(self.bridge()?);
        tokio::join!(
            export::run(&bridge, &stop),
            import::run(&bridge, ctx, &stop),
            serve::run(Arc::clone(&bridge), ctx, &stop),
            summarize(&bridge, &stop),
        );
        Ok(())
    }

    async fn on_event(&self, ctx: &Context, event: Event) {
        let Ok(bridge) = self.bridge() else {
            return;
        };
        let s = &bridge.settings;
        // Events from elsewhere (`nats:NODE`) never go back out, nor do
        // retained ones replayed to the bridge's subscription.
        if event.source.contains(':')
            || event.retained
            || !s.export.iter().any(|p| matches(p, &event.topic))
        {
            return;
        }
        // Forwarded as it came: never parsed here.
        let payload = Bytes::copy_from_slice(event.payload.text());
        bridge
            .push(
                Outgoing {
                    subject: subject::event(&s.prefix, &s.node, &event.topic),
                    seq: event.seq,
                    source: event.source,
                    at_unix_us: event.at_unix_us,
                    payload,
                },
                ctx.stopping(),
            )
            .await;
    }
}

/// Keeps the line `ps` shows under its table (`STATUS=`) current.
async fn summarize(bridge: &Bridge, stop: &Stop) {
    let mut last = String::new();
    loop {
        let line = bridge.summary();
        if line != last {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
            last = line;
        }
        if !stop.sleep(SUMMARY_EVERY).await {
            return;
        }
    }
}

/// This host's name, for the default `node`.
fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn main() {
    corral_sdk::run(NatsBridge::default())
}
