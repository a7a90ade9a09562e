//! Reverse-proxying a request to a plugin's own server on
//! `127.0.0.1:PORT`: over a pool of kept-alive connections, within the
//! plugin's `call_timeout` for the answer's head (its body then streams
//! as it comes), hop-by-hop headers dropped, `X-Forwarded-*` added. A
//! WebSocket upgrade gets a connection of its own: the plugin's `101` is
//! passed on, and the two upgraded sockets are joined byte for byte until
//! either closes (or the face shuts down).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Face, Target, bad_gateway, gateway_timeout};

/// The pool of connections to plugins' servers, shared by every request.
#[derive(Clone, Debug)]
pub(in crate::http) struct Upstreams {
    client: Client<HttpConnector, Body>,
    /// WebSockets open through the gateway, each holding one.
    pub(super) sockets: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Upstreams {
    pub(in crate::http) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            client,
            sockets: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SOCKETS)),
        }
    }
}

/// WebSockets open through the gateway at once (proxied and over RPC).
pub(super) const MAX_SOCKETS: usize = 256;
/// How long a WebSocket may carry nothing either way before it is closed.
pub(super) const SOCKET_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Headers that belong to one hop, never passed on (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Drops the hop-by-hop headers, and those the `Connection` header names.
pub(super) fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Passes `request` to `target`'s port and its answer back.
pub(super) async fn forward(face: &Face, target: &Target, mut request: Request) -> Response {
    let Some(port) = target.instance.presence().1 else {
        return bad_gateway(&target.plugin, "has no port to proxy to");
    };
    let Ok(uri) = format!("http://127.0.0.1:{port}{}", target.inner).parse::<Uri>() else {
        return bad_gateway(&target.plugin, "was asked for a path that is no URI");
    };
    let host = request.headers().get(header::HOST).cloned();
    // A WebSocket's `Upgrade` is hop-by-hop, and passed on all the same.
    let upgrade = super::wants_websocket(request.headers())
        .then(|| request.headers().get(header::UPGRADE).cloned())
        .flatten();
    let headers = request.headers_mut();
    drop_hop_by_hop(headers);
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(Ok(secret)) = target
        .instance
        .gateway_secret()
        .map(|s| HeaderValue::from_str(&s))
    {
        headers.insert(corral_proto::route::GATEWAY_HEADER, secret);
    }
    if let Some(Ok(prefix)) = forwarded_prefix(target).map(|p| HeaderValue::from_str(&p)) {
        headers.insert("x-forwarded-prefix", prefix);
    }
    if let Ok(host) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        headers.insert(header::HOST, host);
    }
    if let Some(upgrade) = upgrade {
        let headers = request.headers_mut();
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        // On a connection of its own, the request names only its path.
        if let Ok(path) = target.inner.parse::<Uri>() {
            *request.uri_mut() = path;
        }
        return websocket(face, target, port, request).await;
    }
    *request.uri_mut() = uri;
    let sent = face.upstreams.client.request(request);
    match tokio::time::timeout(target.call_timeout, sent).await {
        Err(_) => gateway_timeout(&target.plugin, target.call_timeout),
        Ok(Err(e)) => bad_gateway(
            &target.plugin,
            format!("did not answer on its port {port}: {}", source_of(&e)),
        ),
        Ok(Ok(answer)) => {
            let (mut parts, body) = answer.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, idle_bounded(body, target.call_timeout))
        }
    }
}

/// A plugin's body as it comes, cut when no part of it comes within
/// `idle` (a trickling or stalled upstream cannot hold a face connection).
fn idle_bounded(body: hyper::body::Incoming, idle: std::time::Duration) -> Body {
    use futures::StreamExt;
    let frames = http_body_util::BodyStream::new(body);
    let parts = futures::stream::unfold(Some(frames), move |frames| async move {
        let mut frames = frames?;
        match tokio::time::timeout(idle, frames.next()).await {
            Ok(Some(Ok(frame))) => Some((Ok(frame), Some(frames))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the plugin's body stalled past its call_timeout",
                )),
                None,
            )),
        }
    });
    Body::new(http_body_util::StreamBody::new(parts.boxed()))
}

/// The part of the face's path the plugin does not see (its mount less its
/// prefix), for a plugin that builds links.
fn forwarded_prefix(target: &Target) -> Option<String> {
    let prefix = target.routes.prefix.trim_end_matches('/');
    let mount = target.routes.mount.trim_end_matches('/');
    mount.strip_suffix(prefix).map(str::to_string)
}

/// The innermost cause of a client error, which says what went wrong.
fn source_of(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        cause = inner.to_string();
        next = inner.source();
    }
    cause
}

/// A WebSocket upgrade, on a connection of its own to the plugin.
async fn websocket(face: &Face, target: &Target, port: u16, mut request: Request) -> Response {
    let Ok(slot) = std::sync::Arc::clone(&face.upstreams.sockets).try_acquire_owned() else {
        return super::too_many_sockets();
    };
    let downstream = hyper::upgrade::on(&mut request);
    let handshake = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = stream.set_nodelay(true);
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)
    };
    let (mut sender, connection) = match tokio::time::timeout(target.call_timeout, handshake).await
    {
        Err(_) => return gateway_timeout(&target.plugin, target.call_timeout),
        Ok(Err(e)) => {
            return bad_gateway(
                &target.plugin,
                format!("did not take a connection on its port {port}: {e}"),
            );
        }
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(connection.with_upgrades());
    let mut answer =
        match tokio::time::timeout(target.call_timeout, sender.send_request(request)).await {
            Err(_) => return gateway_timeout(&target.plugin, target.call_timeout),
            Ok(Err(e)) => return bad_gateway(&target.plugin, format!("refused the upgrade: {e}")),
            Ok(Ok(answer)) => answer,
        };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = answer.into_parts();
        drop_hop_by_hop(&mut parts.headers);
        return Response::from_parts(parts, Body::new(body));
    }
    let upstream = hyper::upgrade::on(&mut answer);
    let (mut parts, _) = answer.into_parts();
    let closing = face.closing.clone();
    tokio::spawn(async move {
        let (Ok(down), Ok(up)) = (downstream.await, upstream.await) else {
            return;
        };
        let (down, up) = (TokioIo::new(down), TokioIo::new(up));
        tokio::select! {
            () = tunnel(down, up) => {}
            () = closing.cancelled() => {}
        }
        drop(slot);
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::empty()).into_response()
}

/// Joins two sockets byte for byte until either closes or nothing moves
/// either way for [`SOCKET_IDLE`].
async fn tunnel(
    down: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    up: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut down_read, mut down_write) = tokio::io::split(down);
    let (mut up_read, mut up_write) = tokio::io::split(up);
    let (mut a, mut b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let moved = tokio::time::timeout(SOCKET_IDLE, async {
            tokio::select! {
                n = down_read.read(&mut a) => match n {
                    Ok(n) if n > 0 => up_write.write_all(&a[..n]).await.is_ok(),
                    _ => false,
                },
                n = up_read.read(&mut b) => match n {
                    Ok(n) if n > 0 => down_write.write_all(&b[..n]).await.is_ok(),
                    _ => false,
                },
            }
        })
        .await;
        if moved != Ok(true) {
            let _ = up_write.shutdown().await;
            let _ = down_write.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-end", HeaderValue::from_static("2"));
        drop_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-end"]);
    }
}
