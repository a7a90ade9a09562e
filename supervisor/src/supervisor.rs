//! The root supervisor actor: owns the fleet (one [`PluginHandle`] per
//! plugin), answers which plugins exist, and runs the fleet-wide stop. It
//! holds no plugin state itself; each plugin actor owns its own.
//!
//! [`run`] is `corral up`: take the runtime directory, start the actors and
//! the control server, and stop everything gracefully on SIGTERM, SIGINT or
//! `corral down`, exiting once every plugin process is reaped.

use std::sync::Arc;
use std::time::Duration;

use corral_proto::PluginStatus;
use futures::future::join_all;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::Error;
use crate::config::{Fleet, PluginSpec, SupervisorSettings};
use crate::control::ControlServer;
use crate::plugin::PluginHandle;
use crate::runtime_dir::{RuntimeDir, create_private_dir};

/// How long `corral up` waits, after the fleet stopped, for control clients
/// to read their last answers.
const CONTROL_GRACE: Duration = Duration::from_secs(2);

enum Msg {
    Plugins(oneshot::Sender<Vec<PluginHandle>>),
    Shutdown(oneshot::Sender<()>),
}

/// The way to reach the root supervisor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SupervisorHandle {
    tx: mpsc::Sender<Msg>,
}

impl SupervisorHandle {
    /// Every plugin's handle, sorted by name.
    pub async fn plugins(&self) -> Vec<PluginHandle> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Plugins(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// One plugin's handle.
    pub async fn plugin(&self, name: &str) -> Option<PluginHandle> {
        self.plugins().await.into_iter().find(|p| p.name() == name)
    }

    /// Every plugin's status row, gathered concurrently.
    pub async fn ps(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins().await;
        join_all(plugins.iter().map(PluginHandle::status))
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Stops every plugin; returns once all are reaped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Supervisor {
    plugins: Vec<(PluginHandle, JoinHandle<()>)>,
    mailbox: mpsc::Receiver<Msg>,
    done: watch::Sender<bool>,
}

impl Supervisor {
    /// Starts the root actor and one actor per plugin. The watch turns true
    /// once a shutdown has completed.
    fn start(
        specs: Vec<PluginSpec>,
        settings: Arc<SupervisorSettings>,
    ) -> (SupervisorHandle, watch::Receiver<bool>) {
        let (tx, mailbox) = mpsc::channel(64);
        let (done, done_rx) = watch::channel(false);
        let plugins = specs
            .into_iter()
            .map(|spec| PluginHandle::spawn(spec, Arc::clone(&settings)))
            .collect();
        let actor = Supervisor {
            plugins,
            mailbox,
            done,
        };
        tokio::spawn(actor.run());
        (SupervisorHandle { tx }, done_rx)
    }

    async fn run(mut self) {
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut stopping: Option<JoinHandle<()>> = None;
        loop {
            tokio::select! {
                msg = self.mailbox.recv() => match msg {
                    Some(Msg::Plugins(reply)) => {
                        let _ = reply.send(self.plugins.iter().map(|(h, _)| h.clone()).collect());
                    }
                    Some(Msg::Shutdown(reply)) => {
                        waiters.push(reply);
                        if stopping.is_none() && !*self.done.borrow() {
                            let handles: Vec<PluginHandle> = self.plugins.iter().map(|(h, _)| h.clone()).collect();
                            stopping = Some(tokio::spawn(async move {
                                join_all(handles.iter().map(PluginHandle::stop)).await;
                            }));
                        } else if *self.done.borrow() {
                            for w in waiters.drain(..) {
                                let _ = w.send(());
                            }
                        }
                    }
                    None => break,
                },
                _ = async { match stopping.as_mut() { Some(h) => { let _ = h.await; } None => std::future::pending().await } } => {
                    stopping = None;
                    tracing::info!("every plugin is stopped");
                    let _ = self.done.send(true);
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
        }
    }
}

/// Runs a fleet in the foreground until SIGTERM, SIGINT or `corral down`.
pub async fn run(fleet: Fleet) -> Result<(), Error> {
    let runtime_dir = RuntimeDir::acquire(&fleet.supervisor.runtime_dir)?;
    create_private_dir(&fleet.supervisor.log_dir)?;
    let settings = Arc::new(fleet.supervisor.clone());
    let mut term = signal(SignalKind::terminate()).map_err(Error::io("cannot watch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::io("cannot watch SIGINT"))?;

    let (handle, mut done) = Supervisor::start(fleet.plugins.clone(), Arc::clone(&settings));
    let control = ControlServer::start(&settings.control_socket(), handle.clone())?;
    tracing::info!(
        plugins = fleet.plugins.len(),
        control = %settings.control_socket().display(),
        runtime_dir = %runtime_dir.path().display(),
        "corral is up"
    );

    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM: stopping every plugin");
            handle.shutdown().await;
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: stopping every plugin");
            handle.shutdown().await;
        }
        _ = done.wait_for(|d| *d) => {}
    }
    control.shutdown(CONTROL_GRACE).await;
    tracing::info!("corral is down");
    Ok(())
}
