//! HTTP requests and WebSocket messages carried over RPC to a plugin's
//! routes: the HTTP face's gateway calls the plugin's action
//! [`HTTP_ACTION`] with an [`HttpRequest`] and reads an [`HttpReply`] back
//! (or, from a route that streams, body chunks), and calls [`WS_ACTION`]
//! with a [`WsMessage`] for each message a WebSocket client sends. The
//! SDKs' route decorators and router types are the other side of this
//! contract, and match paths with [`match_route`].

use serde::{Deserialize, Serialize};

/// The header every request the gateway proxies to a plugin's port
/// carries, holding the spawn's [`GATEWAY_SECRET`](crate::env::GATEWAY_SECRET)
/// (a client's own is dropped).
pub const GATEWAY_HEADER: &str = "x-corral-gateway";

/// The action the gateway calls with an [`HttpRequest`].
pub const HTTP_ACTION: &str = "corral.http";
/// The action the gateway calls with a [`WsMessage`].
pub const WS_ACTION: &str = "corral.ws";

/// An HTTP request for one of a plugin's routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path as the plugin sees it: its `prefix` and what follows.
    pub path: String,
    /// The query string, without its `?` (empty when there is none).
    pub query: String,
    /// The request's headers, in order (the face's own credentials taken
    /// out), names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as text (the gateway carries only UTF-8 bodies; a plugin
    /// that takes binary bodies serves its own port).
    pub body: String,
}

/// A route's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpReply {
    /// The status code.
    #[serde(default = "ok")]
    pub status: u16,
    /// Headers to send, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body: a string is sent as it is (`text/plain` unless a
    /// `content-type` header says otherwise), any other value as JSON.
    #[serde(default)]
    pub body: serde_json::Value,
}

fn ok() -> u16 {
    200
}

/// One message from a WebSocket client, for the plugin's handler of
/// `path`. The handler's reply (unless `null`), or each chunk of a
/// streamed reply, is sent back to the client as a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    /// The path the socket was opened on, as the plugin sees it.
    pub path: String,
    /// Which socket, for a plugin that keeps per-socket state (unique for
    /// the supervisor's lifetime).
    pub socket: u64,
    /// The message: JSON as sent, or a string for text that is not JSON.
    pub message: serde_json::Value,
}

/// Whether `path` matches the route `pattern` (`/items/{id}`, with
/// `{*rest}` for the rest of the path), and the values its `{names}`
/// took. Segments compare exactly; a trailing `/` counts as a segment.
pub fn match_route(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix("{*").and_then(|r| r.strip_suffix('}')) {
                    let rest: Vec<&str> = std::iter::once(g).chain(given).collect();
                    params.push((name.to_string(), rest.join("/")));
                    return Some(params);
                }
                match w.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                    Some(name) if !g.is_empty() => params.push((name.to_string(), g.to_string())),
                    Some(_) => return None,
                    None if w == g => {}
                    None => return None,
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_segment_and_capture_names() {
        let p = |pairs: &[(&str, &str)]| -> Option<Vec<(String, String)>> {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(match_route("/items", "/items"), p(&[]));
        assert_eq!(match_route("/items/{id}", "/items/7"), p(&[("id", "7")]));
        assert_eq!(match_route("/items/{id}", "/items/"), None);
        assert_eq!(match_route("/items/{id}", "/items/7/x"), None);
        assert_eq!(match_route("/items", "/itemsx"), None);
        assert_eq!(
            match_route("/files/{*rest}", "/files/a/b"),
            p(&[("rest", "a/b")])
        );
        assert_eq!(
            match_route("/{a}/x/{b}", "/1/x/2"),
            p(&[("a", "1"), ("b", "2")])
        );
    }

    #[test]
    fn a_reply_defaults_to_200_with_no_headers() {
        let reply: HttpReply = serde_json::from_str(r#"{"body": {"a": 1}}"#).expect("a reply");
        assert_eq!(reply.status, 200);
        assert!(reply.headers.is_empty());
        assert_eq!(reply.body, serde_json::json!({"a": 1}));
    }
}
