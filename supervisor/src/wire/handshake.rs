//! Local sockets and who may use them.
//!
//! Sockets are created 0600 inside the 0700 runtime directory. Every
//! connection is checked before a byte of it is trusted: the peer's uid (from
//! the kernel, `SO_PEERCRED`) must be this user's, and on a plugin socket the
//! peer must also belong to the plugin's process group and present the
//! per-spawn secret in its [`Hello`]. A stranger on a plugin socket is refused
//! and ignored (it cannot get the real plugin killed); the plugin itself
//! failing the handshake is a [`HandshakeError`]. Who is let in is decided
//! here; the reply frames themselves are proto's
//! [`welcome`](corral_proto::handshake::welcome) and
//! [`refuse`](corral_proto::handshake::refuse), written once.
//!
//! After the handshake nothing a plugin sends is trusted either. On the
//! plugin connection, [`PluginTransport`] checks each answer against the
//! request it answers before tarpc's client sees it (tarpc's generated client
//! panics on an answer of another method): a mismatch ends the connection
//! with an error that [`violation`] names, as an oversized or malformed frame
//! does. On the bus connection, served by the supervisor, [`BusTransport`]
//! reports such a frame, so the plugin is killed for it as on its plugin
//! connection.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use corral_proto::codec::{self, Codec, FrameError, Framed};
use corral_proto::handshake::{refuse, welcome};
use corral_proto::{
    BusApiRequest, BusApiResponse, Hello, PluginApiRequest, PluginApiResponse, Role, check_version,
};
use futures::{Sink, Stream};
use interprocess::local_socket::tokio::{Listener, Stream as Socket, prelude::*};
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use nix::unistd::{Pid, Uid};
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// Binds a socket at `path` that only this user can connect to.
pub fn bind(path: &Path) -> io::Result<Listener> {
    ListenerOptions::new()
        .name(path.to_fs_name::<GenericFilePath>()?)
        .mode(0o600)
        .try_overwrite(true)
        .create_tokio()
}

/// What the plugin process must prove about itself.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The plugin's name.
    pub name: &'a str,
    /// This spawn's secret.
    pub secret: &'a str,
    /// The plugin's process group (its leader's pid).
    pub pgid: u32,
    /// The codec it speaks.
    pub codec: Codec,
    /// Largest frame accepted from it.
    pub max_frame: usize,
}

/// Which of a plugin's two connections is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The first: the plugin serves `PluginApi` on it.
    Plugin,
    /// The second: the plugin calls `BusApi` on it.
    Bus,
}

/// Why the plugin's own handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeError(pub String);

/// Accepts connections until the plugin itself connects and passes the
/// handshake, or fails it. Strangers are refused and skipped. The caller
/// bounds the wait with the handshake timeout.
pub async fn accept_plugin(
    listener: &Listener,
    expected: &Expected<'_>,
    role: Want,
) -> Result<Framed<Socket>, HandshakeError> {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(plugin = expected.name, "accept failed: {e}");
                continue;
            }
        };
        if let Err(why) = check_peer_is_plugin(&stream, expected.pgid) {
            tracing::warn!(
                plugin = expected.name,
                "refused a connection to its socket: {why}"
            );
            let mut framed = codec::framed(stream, expected.max_frame);
            let _ = refuse(&mut framed, expected.codec, &why).await;
            continue;
        }
        let mut framed = codec::framed(stream, expected.max_frame);
        let hello: Hello = match codec::recv(&mut framed, expected.codec).await {
            Ok(h) => h,
            Err(FrameError::Closed) => {
                return Err(HandshakeError(
                    "closed the connection before its hello".into(),
                ));
            }
            Err(e) => {
                let why = format!("bad hello frame ({} codec): {e}", expected.codec);
                let _ = refuse(&mut framed, expected.codec, &why).await;
                return Err(HandshakeError(why));
            }
        };
        let verdict = check_version("the plugin", hello.protocol_version).and_then(|()| {
            let (name, secret) = match (&hello.role, role) {
                (Role::Plugin { name, secret }, Want::Plugin)
                | (Role::Bus { name, secret }, Want::Bus) => (name, secret),
                (Role::Control, _) => {
                    return Err("a control client on a plugin socket".to_string());
                }
                (_, want) => return Err(format!("expected a {want:?} hello")),
            };
            if name != expected.name {
                Err(format!(
                    "introduced itself as `{name}`, expected `{}`",
                    expected.name
                ))
            } else if !same_secret(secret, expected.secret) {
                Err("wrong secret".to_string())
            } else {
                Ok(())
            }
        });
        return match verdict {
            Ok(()) => {
                welcome(&mut framed, expected.codec)
                    .await
                    .map_err(|e| HandshakeError(format!("could not answer its hello: {e}")))?;
                Ok(framed)
            }
            Err(why) => {
                let _ = refuse(&mut framed, expected.codec, &why).await;
                Err(HandshakeError(why))
            }
        };
    }
}

/// Checks a control client: this user (or root) only, then its hello.
pub async fn accept_control(stream: Socket, max_frame: usize) -> Result<Framed<Socket>, String> {
    let creds = stream
        .peer_creds()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = creds.euid().ok_or("the peer's uid is unknown")?;
    let mut framed = codec::framed(stream, max_frame);
    if uid != Uid::effective().as_raw() && uid != 0 {
        let why = format!("uid {uid} may not control this supervisor");
        let _ = refuse(&mut framed, Codec::Json, &why).await;
        return Err(why);
    }
    let hello: Hello = codec::recv(&mut framed, Codec::Json)
        .await
        .map_err(|e| format!("bad hello: {e}"))?;
    let verdict =
        check_version("the client", hello.protocol_version).and_then(|()| match hello.role {
            Role::Control => Ok(()),
            Role::Plugin { .. } | Role::Bus { .. } => {
                Err("a plugin hello on the control socket".to_string())
            }
        });
    match verdict {
        Ok(()) => {
            welcome(&mut framed, Codec::Json)
                .await
                .map_err(|e| e.to_string())?;
            Ok(framed)
        }
        Err(why) => {
            let _ = refuse(&mut framed, Codec::Json, &why).await;
            Err(why)
        }
    }
}

fn check_peer_is_plugin(stream: &Socket, pgid: u32) -> Result<(), String> {
    let creds = stream
        .peer_creds()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = creds.euid().ok_or("the peer's uid is unknown")?;
    if uid != Uid::effective().as_raw() {
        return Err(format!("peer runs as uid {uid}, not as this user"));
    }
    let pid = creds.pid().ok_or("the peer's pid is unknown")?;
    let group = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
        .map_err(|e| format!("peer pid {pid}: {e}"))?;
    if group.as_raw() as u32 != pgid {
        return Err(format!(
            "peer pid {pid} is in process group {group}, not the plugin's ({pgid})"
        ));
    }
    Ok(())
}

/// A rule of the protocol that a plugin broke, in words for its exit reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn violated(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Violation(detail))
}

/// What a failed read on a plugin's connection says about the plugin:
/// `Some(detail)` if it broke the protocol, `None` if it simply went away.
pub fn violation(err: &io::Error, max_frame: usize) -> Option<String> {
    if let Some(Violation(detail)) = err.get_ref().and_then(|e| e.downcast_ref()) {
        Some(detail.clone())
    } else if codec::is_frame_too_big(err) {
        Some(format!(
            "sent a frame larger than the {max_frame} byte maximum"
        ))
    } else if codec::is_malformed(err) {
        Some(format!("sent a malformed frame: {err}"))
    } else {
        None
    }
}

/// The `PluginApi` method a request calls.
fn asked_for(request: &PluginApiRequest) -> &'static str {
    match request {
        PluginApiRequest::Load { .. } => "load",
        PluginApiRequest::Ping { .. } => "ping",
        PluginApiRequest::Handle { .. } => "handle",
        PluginApiRequest::Shutdown { .. } => "shutdown",
        PluginApiRequest::Reload { .. } => "reload",
        PluginApiRequest::Deliver { .. } => "deliver",
    }
}

/// The `PluginApi` method a response answers.
fn answers(response: &PluginApiResponse) -> &'static str {
    match response {
        PluginApiResponse::Load(_) => "load",
        PluginApiResponse::Ping(_) => "ping",
        PluginApiResponse::Handle(_) => "handle",
        PluginApiResponse::Shutdown(_) => "shutdown",
        PluginApiResponse::Reload(_) => "reload",
        PluginApiResponse::Deliver(_) => "deliver",
    }
}

/// Requests remembered before the first sweep of expired ones.
const SWEEP_FROM: usize = 1024;

/// The plugin connection, as the supervisor's `PluginApi` client uses it.
///
/// It remembers the method and deadline of each request in flight. An
/// answer of another method ends the connection with a [`Violation`]; an
/// answer to a request nobody waits for (never sent, answered already,
/// cancelled, or past its deadline) is dropped, as tarpc would drop it.
pub struct PluginTransport<S> {
    inner: codec::Transport<S, Response<PluginApiResponse>, ClientMessage<PluginApiRequest>>,
    asked: HashMap<u64, (&'static str, Instant)>,
    sweep_at: usize,
    broken: bool,
}

impl<S> PluginTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Speaks `codec` on a connection that has passed its handshake.
    pub fn new(framed: Framed<S>, codec: Codec) -> Self {
        Self {
            inner: codec::into_transport(framed, codec),
            asked: HashMap::new(),
            sweep_at: SWEEP_FROM,
            broken: false,
        }
    }

    fn remember(&mut self, id: u64, method: &'static str, deadline: Instant) {
        if self.asked.len() >= self.sweep_at {
            // tarpc gives up on a request at its deadline, without telling
            // the plugin: forget those, so unanswered requests cannot pile up.
            let now = Instant::now();
            self.asked.retain(|_, (_, deadline)| *deadline > now);
            self.sweep_at = SWEEP_FROM.max(self.asked.len() * 2);
        }
        self.asked.insert(id, (method, deadline));
    }
}

impl<S> Stream for PluginTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = io::Result<Response<PluginApiResponse>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.broken {
                return Poll::Ready(None);
            }
            let response = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(response))) => response,
                Poll::Ready(Some(Err(e))) => {
                    this.broken = true;
                    return Poll::Ready(Some(Err(e)));
                }
                other => return other,
            };
            let Some((method, _)) = this.asked.remove(&response.request_id) else {
                continue;
            };
            if let Ok(answer) = &response.message
                && answers(answer) != method
            {
                this.broken = true;
                return Poll::Ready(Some(Err(violated(format!(
                    "answered request {} (`{method}`) with a `{}` response",
                    response.request_id,
                    answers(answer)
                )))));
            }
            return Poll::Ready(Some(Ok(response)));
        }
    }
}

impl<S> Sink<ClientMessage<PluginApiRequest>> for PluginTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: ClientMessage<PluginApiRequest>) -> io::Result<()> {
        let this = self.get_mut();
        match &item {
            ClientMessage::Request(request) => {
                this.remember(
                    request.id,
                    asked_for(&request.message),
                    request.context.deadline,
                );
            }
            ClientMessage::Cancel { request_id, .. } => {
                this.asked.remove(request_id);
            }
            _ => {}
        }
        Pin::new(&mut this.inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// A plugin's bus connection, as the supervisor's `BusApi` server uses it.
///
/// A frame that is too large, does not decode, or breaks its decoder ends
/// the connection, and what was wrong is sent once on `broken`, for the
/// plugin's actor to kill it with reason `protocol`.
pub struct BusTransport<S> {
    inner: codec::Transport<S, ClientMessage<BusApiRequest>, Response<BusApiResponse>>,
    max_frame: usize,
    broken: Option<oneshot::Sender<String>>,
    ended: bool,
}

impl<S> BusTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Speaks `codec` on a bus connection that has passed its handshake.
    pub fn new(framed: Framed<S>, codec: Codec, broken: oneshot::Sender<String>) -> Self {
        let max_frame = framed.codec().max_frame_length();
        Self {
            inner: codec::into_transport(framed, codec),
            max_frame,
            broken: Some(broken),
            ended: false,
        }
    }
}

impl<S> Stream for BusTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = io::Result<ClientMessage<BusApiRequest>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            this.ended = true;
            if let (Some(detail), Some(broken)) = (violation(e, this.max_frame), this.broken.take())
            {
                let _ = broken.send(detail);
            }
        }
        polled
    }
}

impl<S> Sink<Response<BusApiResponse>> for BusTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Response<BusApiResponse>) -> io::Result<()> {
        Pin::new(&mut self.get_mut().inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_by_content() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abc", "abd"));
        assert!(!super::same_secret("abc", "abcd"));
    }
}
