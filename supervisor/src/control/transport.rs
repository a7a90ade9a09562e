//! The control socket's transport: frames in, tarpc messages out, and the
//! one answer tarpc's server cannot give.
//!
//! tarpc drops a connection whose frame does not decode. A script that
//! misspells a method or its arguments deserves an answer instead, so a
//! frame that is not a request of [`ControlApi`](corral_proto::ControlApi)
//! but is a JSON request envelope with an `id` (`{"Request":{"id":N,…}}`)
//! is answered on that id with a tarpc framework error ([`ServerError`] of
//! kind `InvalidInput`) naming the method and the known ones
//! ([`answer_undecodable`]), and the connection serves on. A frame that is
//! not JSON, or names no request id, still ends the connection: there is no
//! request to answer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use corral_proto::codec::{Codec, Framed};
use corral_proto::{CONTROL_METHODS, ControlApiRequest, ControlApiResponse};
use futures::{Sink, Stream};
use serde_json::Value;
use tarpc::{ClientMessage, Response, ServerError};
use tokio::io::{AsyncRead, AsyncWrite};

/// The longest error detail sent back, in bytes: the method name and the
/// decoder's message come from the client, and its answer must fit a frame.
const MAX_DETAIL: usize = 1024;

/// A control connection after its handshake, as the tarpc server uses it:
/// JSON requests in, JSON responses out, and an error answer to each
/// request that does not decode but has an id.
pub(super) struct ControlTransport<S> {
    framed: Framed<S>,
    /// The answer to an undecodable request, not yet handed to the framing.
    pending: Option<Bytes>,
    /// Whether an answer of ours sits in the framing, not yet flushed.
    unflushed: bool,
}

impl<S> ControlTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Speaks JSON on a connection that has passed its handshake.
    pub(super) fn new(framed: Framed<S>) -> Self {
        Self {
            framed,
            pending: None,
            unflushed: false,
        }
    }

    /// Hands our pending answer to the framing and flushes it: the next
    /// frame is read once the client has been sent the answer (so an answer
    /// is not lost to a client that writes, then closes its side).
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(answer) = self.pending.take() {
            if Sink::<Bytes>::poll_ready(Pin::new(&mut self.framed), cx)?.is_pending() {
                self.pending = Some(answer);
                return Poll::Pending;
            }
            Sink::<Bytes>::start_send(Pin::new(&mut self.framed), answer)?;
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Sink::<Bytes>::poll_flush(Pin::new(&mut self.framed), cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> Stream for ControlTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = io::Result<ClientMessage<ControlApiRequest>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Err(e) = ready!(this.poll_answer(cx)) {
                return Poll::Ready(Some(Err(e)));
            }
            let frame = match ready!(Pin::new(&mut this.framed).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => frame,
            };
            let error = match Codec::Json.decode(&frame) {
                Ok(message) => return Poll::Ready(Some(Ok(message))),
                Err(error) => error,
            };
            let Some(answer) = answer_undecodable(&frame, &error) else {
                return Poll::Ready(Some(Err(error)));
            };
            tracing::debug!(
                "answered an undecodable control request {}: {error}",
                answer.request_id
            );
            match Codec::Json.encode(&answer) {
                Ok(bytes) => this.pending = Some(bytes),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

impl<S> Sink<Response<ControlApiResponse>> for ControlTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<Bytes>::poll_ready(Pin::new(&mut self.get_mut().framed), cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Response<ControlApiResponse>) -> io::Result<()> {
        let bytes = Codec::Json.encode(&item)?;
        Sink::<Bytes>::start_send(Pin::new(&mut self.get_mut().framed), bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Sink::<Bytes>::poll_flush(Pin::new(&mut this.framed), cx))?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<Bytes>::poll_close(Pin::new(&mut self.get_mut().framed), cx)
    }
}

/// The answer to `frame`, which did not decode as a control request
/// (`error` says why): a framework error on its request id, naming what is
/// wrong. `None` when there is no request to answer: the frame is not JSON,
/// or has no `Request.id`.
pub(super) fn answer_undecodable(
    frame: &[u8],
    error: &io::Error,
) -> Option<Response<ControlApiResponse>> {
    let value: Value = serde_json::from_slice(frame).ok()?;
    let request = value.get("Request")?;
    let id = request.get("id")?.as_u64()?;
    let methods = CONTROL_METHODS.join(", ");
    let method = match request.get("message") {
        Some(Value::Object(message)) if message.len() == 1 => message.keys().next().cloned(),
        Some(Value::String(name)) if !CONTROL_METHODS.contains(&name.as_str()) => {
            Some(name.clone())
        }
        _ => None,
    };
    let detail = match method {
        Some(method) if !CONTROL_METHODS.contains(&method.as_str()) => format!(
            "the control API has no method `{}`; its methods are {methods}",
            cut(&method, 64)
        ),
        Some(method) => format!("request {id} (`{method}`) does not decode: {error}"),
        None => format!(
            "request {id} names no method: its `message` must be an object with one key, \
             the method, such as {{\"Ps\":{{}}}}; the methods are {methods}"
        ),
    };
    Some(Response {
        request_id: id,
        message: Err(ServerError::new(
            io::ErrorKind::InvalidInput,
            cut(&detail, MAX_DETAIL),
        )),
    })
}

/// `text` cut to at most `max` bytes, on a character boundary, marked `…`
/// where it was cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};

    fn decode_error(frame: &str) -> io::Error {
        Codec::Json
            .decode::<ClientMessage<ControlApiRequest>>(&bytes::BytesMut::from(frame.as_bytes()))
            .expect_err("does not decode")
    }

    fn answer(frame: &str) -> Option<(u64, io::ErrorKind, String)> {
        answer_undecodable(frame.as_bytes(), &decode_error(frame)).map(|r| {
            let err = r.message.expect_err("an error");
            (r.request_id, err.kind, err.detail)
        })
    }

    const CONTEXT: &str = r#"{"deadline":{"secs":10,"nanos":0},"trace_context":{"trace_id":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"span_id":0,"sampling_decision":"Unsampled"}}"#;

    fn request(id: u64, message: &str) -> String {
        format!(r#"{{"Request":{{"context":{CONTEXT},"id":{id},"message":{message}}}}}"#)
    }

    #[test]
    fn an_unknown_method_is_answered_on_its_id_with_the_known_ones() {
        let (id, kind, detail) = answer(&request(7, r#"{"Frobnicate":{}}"#)).expect("answered");
        assert_eq!((id, kind), (7, io::ErrorKind::InvalidInput));
        assert!(detail.contains("no method `Frobnicate`"), "{detail}");
        assert!(
            detail.ends_with("Ps, Call, Down, Start, Stop, Restart, Inspect, Reload, Publish, EventsOpen, EventsNext, Ready, CallStream, StreamNext, StreamClose"),
            "{detail}"
        );
        let (_, _, detail) = answer(&request(8, r#""Frobnicate""#)).expect("answered");
        assert!(detail.contains("no method `Frobnicate`"), "{detail}");
    }

    #[test]
    fn a_known_method_with_bad_arguments_says_what_does_not_decode() {
        let (id, _, detail) = answer(&request(3, r#"{"Call":{"name":"a"}}"#)).expect("answered");
        assert_eq!(id, 3);
        assert!(
            detail.starts_with("request 3 (`Call`) does not decode: ") && detail.contains("action"),
            "{detail}"
        );
        // The context is the client's too.
        let no_trace = r#"{"Request":{"context":{"deadline":{"secs":1,"nanos":0}},"id":4,"message":{"Ps":{}}}}"#;
        let (_, _, detail) = answer(no_trace).expect("answered");
        assert!(detail.contains("trace_context"), "{detail}");
        let (_, _, detail) = answer(&request(5, r#"{"Ps":{},"Down":{}}"#)).expect("answered");
        assert!(detail.contains("names no method"), "{detail}");
    }

    #[test]
    fn a_frame_that_names_no_request_gets_no_answer() {
        for frame in [
            "not json",
            "{}",
            r#"{"Request":{"message":{"Ps":{}}}}"#,
            r#"{"Request":{"id":-1}}"#,
            "[1]",
        ] {
            assert!(answer(frame).is_none(), "{frame}");
        }
    }

    #[test]
    fn what_the_client_sent_is_cut_to_fit_a_frame() {
        let long = "x".repeat(100_000);
        let (_, _, detail) =
            answer(&request(1, &format!(r#"{{"{long}":{{}}}}"#))).expect("answered");
        assert!(detail.len() < 300, "{}", detail.len());
        let (_, _, detail) = answer(&request(
            1,
            &format!(r#"{{"Call":{{"name":"{long}","action":1,"payload":null}}}}"#),
        ))
        .expect("answered");
        assert!(detail.len() <= MAX_DETAIL + "…".len(), "{}", detail.len());
        assert_eq!(cut("héllo", 2), "h…");
    }

    #[tokio::test]
    async fn the_connection_serves_on_after_an_answer_and_ends_on_a_frame_that_is_not_json() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut server = ControlTransport::new(corral_proto::codec::framed(server, 1 << 16));
        let mut client = corral_proto::codec::framed(client, 1 << 16);
        for frame in [
            request(1, r#"{"Frobnicate":{}}"#),
            request(2, r#"{"Ps":{}}"#),
        ] {
            client.send(Bytes::from(frame)).await.unwrap();
        }
        client.send(Bytes::from_static(b"garbage")).await.unwrap();
        let first = server.next().await.expect("a request").expect("decoded");
        let ClientMessage::Request(first) = first else {
            panic!("not a request: {first:?}")
        };
        assert_eq!(first.id, 2, "the unknown method never reaches the server");
        let answer = client.next().await.expect("an answer").unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["request_id"], 1, "{answer}");
        assert_eq!(answer["message"]["Err"]["kind"], 11, "{answer}");
        assert!(
            server.next().await.expect("an item").is_err(),
            "garbage ends it"
        );
    }
}
