//! [`Background`]: a plugin's background work over the life of its process.
//! The serve loop starts it once, after the first `on_load` succeeded (a
//! reload never starts it again), and stops it before `on_unload`: it raises
//! the [`Stop`] signal, waits a bounded time for the work to finish, and
//! drops it, saying so on stderr, if it has not. A failure (an `Err` or a
//! panic) is logged and leaves the plugin serving. What the work is, is the
//! plugin's [`background`](crate::Plugin::background) hook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::outcome::caught;
use crate::{Context, Plugin, Stop};

/// How long the SDK waits for background work to finish once the stop
/// signal is raised, before it drops it and runs `on_unload`: well inside
/// the supervisor's `stop_timeout` (5 s by default).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where the background work is in its one life.
#[derive(Debug, Default)]
enum Phase {
    /// Not started: the plugin has not loaded yet.
    #[default]
    Idle,
    /// Running as this task.
    Running(JoinHandle<()>),
    /// Stopped, or the plugin unloaded before it could start: it never
    /// starts again in this process.
    Over,
}

/// The plugin's background work: started once, stopped once.
#[derive(Debug, Default)]
pub(crate) struct Background {
    phase: Mutex<Phase>,
}

impl Background {
    /// Starts the plugin's background work in a task of its own, unless it
    /// started before or the plugin is unloading.
    pub(crate) fn start<P: Plugin>(&self, plugin: &Arc<P>, ctx: &Context) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*phase, Phase::Idle) {
            return;
        }
        let (plugin, ctx) = (Arc::clone(plugin), ctx.clone());
        *phase = Phase::Running(tokio::spawn(async move {
            let stop = ctx.stopping().clone();
            if let Err(why) = caught(plugin.background(&ctx, stop)).await {
                eprintln!("corral plugin: background work failed: {why}");
            }
        }));
    }

    /// Raises `stop`, then waits up to `grace` for the work to finish; past
    /// that it is dropped at its next `.await`. Work that never started
    /// never will.
    pub(crate) async fn stop(&self, stop: &Stop, grace: Duration) {
        stop.raise();
        let phase = std::mem::replace(
            &mut *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            Phase::Over,
        );
        let Phase::Running(mut task) = phase else {
            return;
        };
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            eprintln!(
                "corral plugin: background work did not stop within {grace:?} of the stop signal; dropping it"
            );
            task.abort();
        }
    }
}
