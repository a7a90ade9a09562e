//! How the plugin actor answers what says whether its plugin is well:
//! heartbeat answers, health probe outcomes, its notify channel, failed
//! deliveries and memory samples. Each asks [`health`](super::super::health) for the verdict and
//! carries it out (a kill with its reason, a note in the history).

use corral_proto::{ExitReason, PluginState, Transition};

use super::super::health::{self, CapKill, MemoryVerdict, PingVerdict, ProbeVerdict};
use super::super::notify::NotifyEvent;
use super::Actor;
use crate::bus::DeliveryFailure;

impl Actor {
    /// News from its notify channel: `READY=1` may make it ready, a missed
    /// watchdog is a hang, no `READY=1` in time a failed start.
    pub(super) fn on_notified(&mut self, event: NotifyEvent) {
        let doomed = self.spawn.as_ref().is_none_or(|s| s.doomed());
        if doomed
            || !matches!(
                self.lifecycle.state(),
                PluginState::Starting | PluginState::Running
            )
        {
            return;
        }
        match event {
            // The step's end publishes the row that shows it.
            NotifyEvent::Status => {}
            NotifyEvent::Ready => self.running_once_ready(),
            NotifyEvent::Stopping | NotifyEvent::MainPid(_) => {
                let note = match event {
                    NotifyEvent::MainPid(main) => format!("it said MAINPID={main}"),
                    _ => "it said STOPPING=1".into(),
                };
                let pid = self.spawn.as_ref().map(|s| s.pid());
                self.lifecycle.note(note, pid, Transition::now_unix_ms());
            }
            NotifyEvent::Hung(note) => {
                tracing::warn!("{note}; killing it");
                self.transition(PluginState::Unhealthy, None, Some(note));
                self.kill(ExitReason::Hang);
            }
            NotifyEvent::NotReady(within) => {
                let detail = format!(
                    "no READY=1 within {} (handshake_timeout)",
                    humantime::format_duration(within)
                );
                tracing::warn!("{detail}");
                self.kill(ExitReason::Handshake { detail });
            }
        }
    }

    /// A health probe ended: the first pass may make it ready, `misses`
    /// failures in a row make it unhealthy, killed for `health`.
    pub(super) fn on_probe(&mut self, outcome: Result<(), String>) {
        let doomed = self.spawn.as_ref().is_none_or(|s| s.doomed());
        if doomed
            || !matches!(
                self.lifecycle.state(),
                PluginState::Starting | PluginState::Running
            )
        {
            return;
        }
        let allowed = self.spec.health.as_ref().map_or(1, |h| h.misses);
        self.meter.probed(outcome.is_ok());
        let Some(verdict) = self.spawn.as_mut().and_then(|s| s.probed(outcome.is_ok())) else {
            return;
        };
        let failure = outcome.err().unwrap_or_default();
        match verdict {
            ProbeVerdict::Passed { first: true } => {
                tracing::info!("health probe passed");
                self.running_once_ready();
            }
            ProbeVerdict::Passed { first: false } => {}
            ProbeVerdict::Grace => {
                tracing::debug!("health probe failed within its start period: {failure}");
            }
            ProbeVerdict::Missed(misses) => {
                tracing::warn!(misses, of = allowed, "health probe failed: {failure}");
            }
            ProbeVerdict::Unhealthy(misses) => {
                tracing::warn!(misses, of = allowed, "health probe failed: {failure}");
                self.set_state(PluginState::Unhealthy);
                self.kill(ExitReason::Health { detail: failure });
            }
        }
    }

    pub(super) fn send_ping(&mut self) {
        if self.lifecycle.state() != PluginState::Running {
            return;
        }
        let timeout = self.spec.heartbeat.timeout;
        if let Some(spawn) = &mut self.spawn {
            spawn.ping(timeout);
        }
    }

    pub(super) fn on_ping(&mut self, answered: Option<std::time::Duration>) {
        if let Some(took) = answered {
            self.meter.heartbeat(took);
        }
        let answered = answered.is_some();
        if self.lifecycle.state() != PluginState::Running {
            return;
        }
        let allowed = self.spec.heartbeat.misses;
        let Some(spawn) = &mut self.spawn else { return };
        match spawn.pinged(answered, allowed) {
            PingVerdict::Fine => {}
            PingVerdict::Missed(misses) => {
                tracing::warn!(misses, of = allowed, "missed a heartbeat");
            }
            PingVerdict::Hang(misses) => {
                tracing::warn!(misses, of = allowed, "missed a heartbeat");
                self.set_state(PluginState::Unhealthy);
                self.kill(ExitReason::Hang);
            }
        }
    }

    /// A `deliver` call failed for the plugin's fault: it is killed, so its
    /// deliveries do not stall unseen, and restarted by its policy.
    pub(super) fn on_delivery_failed(&mut self, failure: DeliveryFailure) {
        if self.lifecycle.state() != PluginState::Running {
            return;
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match failure {
            DeliveryFailure::Timeout { events, within } => {
                let note = format!(
                    "did not answer a deliver of {events} event{} within {} (call_timeout)",
                    plural(events),
                    humantime::format_duration(within)
                );
                tracing::warn!("{note}; killing it");
                self.transition(PluginState::Unhealthy, None, Some(note));
                self.kill(ExitReason::Hang);
            }
            DeliveryFailure::Refused { events, error } => {
                let detail = format!(
                    "answered a deliver of {events} event{} with an error: {error}",
                    plural(events),
                );
                tracing::warn!("broke the protocol: {detail}");
                self.kill(ExitReason::Protocol { detail });
            }
        }
    }

    /// Samples the spawn's processes, for as long as any exist (stopping
    /// and already killed included): over `memory_max` is a SIGKILL now.
    pub(super) fn check_memory(&mut self) {
        let Some(spawn) = &mut self.spawn else { return };
        let rss = spawn.sample(&mut self.probe);
        let pid = spawn.pid();
        let (max, high) = (self.spec.memory_max, self.spec.memory_high);
        let was_above = spawn.above_high();
        match health::memory_verdict(rss, max, high, was_above) {
            MemoryVerdict::OverCap => match health::cap_kill(spawn.stopping(), spawn.doomed()) {
                CapKill::Now => {
                    tracing::warn!(rss, max, "over its memory cap; killing it");
                    self.kill(ExitReason::MemoryCap);
                }
                CapKill::WhileStopping => {
                    tracing::warn!(rss, max, "over its memory cap while stopping; killing it");
                    self.kill(ExitReason::MemoryCap);
                }
                CapKill::Again => spawn.kill(ExitReason::MemoryCap),
            },
            MemoryVerdict::CrossedHigh => {
                let note = format!(
                    "memory above memory_high: {} > {}",
                    bytesize::ByteSize(rss).display().iec(),
                    bytesize::ByteSize(high.unwrap_or(0)).display().iec()
                );
                tracing::warn!("{note}");
                self.lifecycle
                    .note(note, Some(pid), Transition::now_unix_ms());
                self.set_above_high(true);
            }
            MemoryVerdict::Fine { above_high } => self.set_above_high(above_high),
        }
    }

    pub(super) fn set_above_high(&mut self, above: bool) {
        if let Some(spawn) = &mut self.spawn {
            spawn.set_above_high(above);
        }
    }
}
