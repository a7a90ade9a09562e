//! Frame guards: after the handshake nothing a plugin sends is trusted
//! either. On the
//! plugin connection, [`PluginTransport`] checks each answer against the
//! request it answers before tarpc's client sees it (tarpc's generated client
//! panics on an answer of another method): a mismatch ends the connection
//! with an error that [`violation`] names, as an oversized or malformed frame
//! does. On the bus connection, served by the supervisor, [`BusTransport`]
//! reports such a frame, so the plugin is killed for it as on its plugin
//! connection.
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use corral_proto::codec::{self, Codec, Framed};
use corral_proto::{BusApiRequest, BusApiResponse, PluginApiRequest, PluginApiResponse};
use futures::{Sink, Stream};
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

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
        PluginApiRequest::Stream { .. } => "stream",
        PluginApiRequest::Pull { .. } => "pull",
        PluginApiRequest::Close { .. } => "close",
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
        PluginApiResponse::Stream(_) => "stream",
        PluginApiResponse::Pull(_) => "pull",
        PluginApiResponse::Close(_) => "close",
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
