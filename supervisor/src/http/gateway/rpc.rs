//! A request for a protocol plugin's routes, as a call of its
//! `corral.http` action: the request goes in as an [`HttpRequest`], an
//! [`HttpReply`] comes back. A route that streams answers the plain call
//! `streamed` (before it runs), and is then called for a stream, whose
//! chunks become Server-Sent Events (for a client that accepts
//! `text/event-stream`) or a chunked body of one JSON value a line.
//! Anything else a plugin answers is a 502 naming it.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_proto::{ErrorReply, HTTP_ACTION, HttpReply, HttpRequest, Payload, codes};
use futures::StreamExt;

use super::{Face, Target, bad_gateway, gateway_timeout};
use crate::calls::{Piece, Upstream};

/// Calls `target`'s route with `request`.
pub(super) async fn route(face: &Face, target: &Target, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(face.settings.http.as_ref().map_or(1 << 20, |h| h.max_body))
        .unwrap_or(usize::MAX);
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than max_body\n",
        )
            .into_response();
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "`{}` is served over RPC, which carries text bodies only; a plugin that takes binary bodies serves its own `port`\n",
                target.plugin
            ),
        )
            .into_response();
    };
    let (path, query) = match target.inner.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (target.inner.clone(), String::new()),
    };
    let sse = accepts_events(&parts.headers);
    let request = HttpRequest {
        method: parts.method.to_string(),
        path,
        query,
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
    };
    let Ok(payload) = serde_json::to_value(&request)
        .map_err(|e| e.to_string())
        .and_then(|v| Payload::from_json(&v).map_err(|e| e.to_string()))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "the request does not encode as JSON\n",
        )
            .into_response();
    };
    let deadline = Some(Instant::now() + target.call_timeout);
    let called = target
        .instance
        .call(HTTP_ACTION.to_string(), payload.clone(), deadline)
        .await;
    match called {
        Ok(reply) => answer(&target.plugin, &reply),
        Err(e) if e.code == codes::STREAMED => {
            match target
                .instance
                .stream(HTTP_ACTION.to_string(), payload, deadline)
                .await
            {
                Ok(upstream) if sse => super::super::streams::call(face, upstream).into_response(),
                Ok(upstream) => chunked(upstream),
                Err(e) => failed(target, &e),
            }
        }
        Err(e) => failed(target, &e),
    }
}

/// Whether the client asked for Server-Sent Events.
fn accepts_events(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The answer a call's error is: 503 when the plugin went down, 504 past
/// its time, 502 for anything else (a plugin with no routes included).
fn failed(target: &Target, e: &ErrorReply) -> Response {
    match e.code.as_str() {
        codes::TIMEOUT => gateway_timeout(&target.plugin, target.call_timeout),
        codes::NOT_RUNNING | codes::SHUTTING_DOWN | codes::DISCONNECTED => {
            super::down(&target.plugin, target.instance.presence().0)
        }
        codes::UNKNOWN_ACTION => bad_gateway(
            &target.plugin,
            "serves no routes over RPC: register them with its SDK's route decorators, or give it a `port`",
        ),
        _ => bad_gateway(
            &target.plugin,
            format!("failed its route: {} ({})", e.message, e.code),
        ),
    }
}

/// The HTTP answer a route's reply is; a reply that is no [`HttpReply`]
/// is a 502 naming the plugin.
fn answer(plugin: &str, reply: &Payload) -> Response {
    let reply: HttpReply = match reply.to_json() {
        Ok(reply) => reply,
        Err(e) => {
            return bad_gateway(
                plugin,
                format!("answered with something that is not an HTTP reply: {e}"),
            );
        }
    };
    let status = StatusCode::from_u16(reply.status)
        .ok()
        .filter(|s| !s.is_informational());
    let Some(status) = status else {
        return bad_gateway(
            plugin,
            format!("answered with the status {}, which is none", reply.status),
        );
    };
    let (body, kind) = match reply.body {
        serde_json::Value::String(text) => (text, "text/plain; charset=utf-8"),
        serde_json::Value::Null if reply.status == 204 => (String::new(), "text/plain"),
        value => (value.to_string(), "application/json"),
    };
    let mut answer = Response::new(Body::from(body));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    for (name, value) in reply.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return bad_gateway(
                plugin,
                format!("answered with a header that is none: {name}"),
            );
        };
        if name == header::CONTENT_TYPE {
            answer.headers_mut().insert(name, value);
        } else if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            answer.headers_mut().append(name, value);
        }
    }
    answer
}

/// A streamed reply as a chunked body: each chunk a line (a string as it
/// is, any other value as JSON); an error ends the body with a last line
/// `{"error": …}`.
fn chunked(upstream: Upstream) -> Response {
    let lines = upstream.pieces().filter_map(|piece| async move {
        let line = match piece {
            Piece::Chunk(chunk) => match chunk.to_json::<serde_json::Value>() {
                Ok(serde_json::Value::String(text)) => text,
                Ok(value) => value.to_string(),
                Err(_) => "null".into(),
            },
            Piece::End(_) => return None,
            Piece::Failed(e) => serde_json::json!({"error": e}).to_string(),
        };
        Some(Ok::<_, std::convert::Infallible>(line + "\n"))
    });
    let mut answer = Response::new(Body::from_stream(lines));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    answer
}
