//! The control actor: serves [`ControlApi`](corral_proto::ControlApi) on the
//! control socket, for the `corral` CLI and for scripts. Each connection is
//! checked before it is served (this user or root only, never a plugin nor
//! anything a plugin started, matching protocol version; see
//! [`handshake`](crate::wire::handshake)), and requests are forwarded to the
//! root supervisor through its handle.
//!
//! The socket is bounded, so no client (a plugin's stray child, a script
//! gone wrong) can starve the CLI or the supervisor:
//!
//! - at most `control_connections` connections are open; when all are taken
//!   a newcomer takes the slot of the one idle longest, and is refused only
//!   when every connection is serving a request;
//! - a connection must say hello within 5 s, and is closed after
//!   `control_idle_timeout` without a request; each serves at most
//!   [`MAX_REQUESTS`] requests at once;
//! - unfinished frames pin a bounded amount of memory across all
//!   connections ([`metered`]);
//! - accept errors (out of fds) pause the accept loop, doubling to 1 s, and
//!   every repeated warning is logged at most once a second, with the count
//!   of the ones left out.
//!
//! The control socket speaks the JSON codec, so any language can drive a
//! fleet with the same frames the CLI sends (docs/protocol.md, "The control
//! API"). A request for a method it does not have is answered with an
//! error naming the methods it has. The parts: `api` (the requests),
//! `connection` (one connection's life and the slot table), `transport`
//! (frames to requests, and the answer to one that does not decode),
//! `metered` (the frame budget), `limits` (the pure decisions).

mod api;
mod connection;
mod limits;
mod metered;
mod rolling;
mod transport;

/// The control API's requests, for faces other than the control socket.
pub(crate) use api::Server as Operator;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use interprocess::local_socket::tokio::{Listener, prelude::*};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::Error;
use crate::config::SupervisorSettings;
use crate::supervisor::SupervisorHandle;
use crate::wire::handshake;

use connection::{Admission, Shared, Warnings};
use limits::accept_pause;
use metered::{FRAME_BUDGET, FrameBudget};

/// Requests one control connection may have in flight; more are answered
/// with an error at once.
pub const MAX_REQUESTS: usize = 16;

/// The running control server; stop it with [`ControlServer::shutdown`].
#[derive(Debug)]
pub struct ControlServer {
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Binds the control socket (0600) and starts serving it with the
    /// bounds `settings` give.
    pub fn start(
        settings: &SupervisorSettings,
        supervisor: SupervisorHandle,
    ) -> Result<Self, Error> {
        let path = settings.control_socket();
        let listener =
            handshake::bind(&path).map_err(Error::io(format!("cannot bind {}", path.display())))?;
        let shared = Arc::new(Shared {
            supervisor,
            slots: Mutex::new(connection::Slots::new(settings.control_connections)),
            budget: FrameBudget::new(FRAME_BUDGET),
            idle_timeout: settings.control_idle_timeout,
            warnings: Mutex::new(Warnings::default()),
        });
        let (stop, stop_rx) = oneshot::channel::<Duration>();
        let task = tokio::spawn(serve(listener, shared, stop_rx));
        Ok(Self { stop, task })
    }

    /// Stops accepting, then gives open connections up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(grace);
        let _ = self.task.await;
    }
}

/// The accept loop, then the drain once stopped.
async fn serve(listener: Listener, shared: Arc<Shared>, mut stop_rx: oneshot::Receiver<Duration>) {
    let mut connections = JoinSet::new();
    // After an accept error: the pause in force and when accepting resumes.
    let mut pause: Option<Duration> = None;
    let mut resume = None;
    let grace = loop {
        tokio::select! {
            accepted = listener.accept(), if resume.is_none() => match accepted {
                Ok(stream) => {
                    pause = None;
                    match shared.admit() {
                        Admission::Admitted(slot) => {
                            connections.spawn(connection::serve(stream, Arc::clone(&shared), slot));
                        }
                        Admission::Full(capacity) => connection::refuse_full(stream, capacity, &shared).await,
                    }
                }
                Err(e) => {
                    let p = accept_pause(pause);
                    pause = Some(p);
                    resume = Some(tokio::time::Instant::now() + p);
                    if let Some(note) = shared.throttled(|w| &mut w.accept) {
                        tracing::warn!("control socket accept failed, pausing {p:?}: {e}{note}");
                    }
                }
            },
            () = until(resume), if resume.is_some() => resume = None,
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
}

/// Sleeps until `at` (forever when `None`; the branch is disabled then).
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
