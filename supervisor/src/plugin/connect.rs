//! The handshake task of one spawn: wait for the plugin to connect on its
//! socket, authenticate it (through [`wire::handshake`](crate::wire::handshake)),
//! open the RPC client, accept its bus connection if it opens one (and serve
//! the bus on it at once, so `on_load` may publish and subscribe), and call
//! `load` with its config, all within `handshake_timeout`. The actor gets a
//! [`Connected`] or the reason the handshake failed; a failed handshake
//! closes every connection it opened.

use std::time::Instant;

use corral_proto::codec::{Codec, Framed, MAX_FRAME_BYTES};
use corral_proto::{Payload, PluginApiClient};
use futures::FutureExt;
use interprocess::local_socket::tokio::{Listener, Stream as Socket};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::bus::BusHandle;
use crate::calls::Calls;
use crate::config::PluginSpec;
use crate::wire::handshake::{self, Expected, HandshakeError, Want};
use crate::wire::{BusTransport, PluginTransport, violation};

/// The result of the connect task: a plugin that shook hands and loaded.
pub(super) struct Connected {
    pub(super) client: PluginApiClient,
    /// Whether it serves streamed replies.
    pub(super) streams: bool,
    /// Resolves when the connection ends: `Some(detail)` if the plugin broke
    /// the protocol, `None` if it simply closed.
    pub(super) closed: oneshot::Receiver<Option<String>>,
    /// Resolves with what was wrong if the plugin breaks the protocol on its
    /// bus connection (when it opened one).
    pub(super) bus_broken: Option<oneshot::Receiver<String>>,
    /// The tasks that hold its connections open: aborting them closes both.
    pub(super) tasks: Vec<AbortHandle>,
}

/// How a handshake error that the plugin's own `on_load` answered begins.
const LOAD_FAILED: &str = "on_load failed";

/// Waits for the plugin to connect, authenticates it and calls `load`, all
/// within its handshake timeout.
pub(super) async fn connect(
    listener: Listener,
    spec: PluginSpec,
    secret: String,
    (pgid, uid): (u32, u32),
    bus: BusHandle,
    calls: Calls,
) -> Result<Connected, HandshakeError> {
    let timeout = spec.handshake_timeout;
    let attempt = handshake_and_load(listener, &spec, &secret, (pgid, uid), (bus, calls));
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(HandshakeError::lost(format!(
                "no completed handshake within {}",
                humantime::format_duration(timeout)
            )))
        })
}

async fn handshake_and_load(
    listener: Listener,
    spec: &PluginSpec,
    secret: &str,
    (pgid, uid): (u32, u32),
    bus: (BusHandle, Calls),
) -> Result<Connected, HandshakeError> {
    let expected = Expected {
        name: &spec.name,
        secret,
        pgid,
        uid,
        codec: spec.codec,
        max_frame: MAX_FRAME_BYTES,
    };
    let (framed, features) = handshake::accept_plugin(&listener, &expected, Want::Plugin).await?;
    let (client, closed, dispatch) = open_client(framed, spec.codec);
    // Whatever fails from here closes the connections opened so far.
    let mut tasks = Tasks(vec![dispatch]);
    let config = Payload::from_json(spec.config.for_plugin())
        .map_err(|e| HandshakeError::lost(format!("config does not encode: {e}")))?;
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + spec.handshake_timeout;
    // The plugin may open its bus connection before it answers `load`, and
    // use it from `on_load`: it is served as soon as it is accepted.
    let mut bus_broken = None;
    let loaded = {
        let load = client.load(ctx, config);
        let accept_bus = handshake::accept_plugin(&listener, &expected, Want::Bus);
        tokio::pin!(load, accept_bus);
        let mut accepted = false;
        let loaded = loop {
            tokio::select! {
                loaded = &mut load => break loaded,
                conn = &mut accept_bus, if !accepted => {
                    accepted = true;
                    bus_broken = Some(open_bus(conn, spec, &bus, &mut tasks)?);
                }
            }
        };
        if !accepted && let Some(conn) = accept_bus.now_or_never() {
            bus_broken = Some(open_bus(conn, spec, &bus, &mut tasks)?);
        }
        loaded
    };
    drop(listener);
    loaded
        .map_err(|e| HandshakeError::lost(format!("no answer to load: {e}")))?
        .map_err(|e| HandshakeError::refused(format!("{LOAD_FAILED}: {e}")))?;
    Ok(Connected {
        client,
        streams: features.iter().any(|f| f == "streams"),
        closed,
        bus_broken,
        tasks: tasks.keep(),
    })
}

/// The tasks holding a spawn's connections while its handshake runs:
/// aborted (closing the connections) unless the handshake completes.
struct Tasks(Vec<AbortHandle>);

impl Tasks {
    /// The handshake completed: the tasks live on, for the actor to own.
    fn keep(mut self) -> Vec<AbortHandle> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Serves the bus on an accepted bus connection at once (so `on_load` may
/// publish and subscribe), or fails the handshake with why it was refused.
fn open_bus(
    conn: Result<(Framed<Socket>, Vec<String>), HandshakeError>,
    spec: &PluginSpec,
    bus: &(BusHandle, Calls),
    tasks: &mut Tasks,
) -> Result<oneshot::Receiver<String>, HandshakeError> {
    let (framed, _) = conn.map_err(|e| HandshakeError {
        detail: format!("bus connection refused: {}", e.detail),
        ..e
    })?;
    let (broken, serving) = serve_bus(framed, spec, bus.clone());
    tasks.0.push(serving);
    Ok(broken)
}

/// The RPC client on the plugin connection, what resolves when that
/// connection ends, and the task that holds it. Answers are checked against
/// their requests before the client sees them.
fn open_client(
    framed: Framed<Socket>,
    codec: Codec,
) -> (
    PluginApiClient,
    oneshot::Receiver<Option<String>>,
    AbortHandle,
) {
    let transport = PluginTransport::new(framed, codec);
    let tarpc::client::NewClient { client, dispatch } =
        PluginApiClient::new(tarpc::client::Config::default(), transport);
    let (tx, closed) = oneshot::channel();
    let task = tokio::spawn(async move {
        let cause = dispatch.await.err().and_then(|e| protocol_violation(&e));
        let _ = tx.send(cause);
    });
    (client, closed, task.abort_handle())
}

/// Serves the bus on the plugin's bus connection; the receiver resolves if
/// the plugin breaks the protocol there, and the handle closes it.
fn serve_bus(
    framed: Framed<Socket>,
    spec: &PluginSpec,
    (bus, calls): (BusHandle, Calls),
) -> (oneshot::Receiver<String>, AbortHandle) {
    let (broken, bus_broken) = oneshot::channel();
    let transport = BusTransport::new(framed, spec.codec, broken);
    let who = (spec.name.as_str().into(), spec.calls.bridge);
    let serving = crate::bus::serve_plugin(who, bus, calls, transport);
    (bus_broken, serving)
}

/// Names a protocol violation in a broken connection, if it was one (as
/// opposed to the peer simply going away).
fn protocol_violation(err: &tarpc::ChannelError<std::io::Error>) -> Option<String> {
    let tarpc::ChannelError::Read(e) = err else {
        return None;
    };
    violation(e, MAX_FRAME_BYTES)
}
