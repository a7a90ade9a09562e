//! The fleet's `[http]` table: where the HTTP face listens and how much one
//! request may hold. Off unless the table is there; a listen address off
//! this host's loopback is refused, since the face has no TLS of its own
//! (put a TLS proxy in front of a loopback listener).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::error::Problem;
use super::layers::HttpLayer;

/// The default listen address.
pub(super) const LISTEN: &str = "127.0.0.1:7700";
/// The default largest request body.
pub(super) const MAX_BODY: u64 = 1024 * 1024;
/// The default most connections open at once.
pub(super) const MAX_CONNECTIONS: usize = 256;
/// The default longest time one request may take (streams excepted).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP face's settings in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpSettings {
    /// Where it listens (`:0` takes a free port; the one taken is written
    /// to `http.url` in the runtime dir).
    pub listen: SocketAddr,
    /// Largest request body, in bytes; more is answered 413.
    pub max_body: u64,
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Longest time one request may take, streamed answers excepted; more
    /// is answered 504.
    pub request_timeout: Duration,
}

/// The `[http]` table resolved, with every problem found (a value that
/// cannot work is replaced by its default, so the rest is still checked).
pub(super) fn settings(
    raw: Option<HttpLayer>,
    file: &Path,
) -> (Option<HttpSettings>, Vec<Problem>) {
    let Some(raw) = raw else {
        return (None, Vec::new());
    };
    let mut problems = Vec::new();
    let mut refuse = |key: &str, message: String| {
        problems.push(Problem {
            file: file.display().to_string(),
            key: format!("http.{key}"),
            message,
        });
    };
    let default: SocketAddr = LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7700)));
    let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
        None => default,
        Some(Ok(addr)) if addr.ip().is_loopback() => addr,
        Some(Ok(addr)) => {
            refuse(
                "listen",
                format!(
                    "{addr} is reachable from other hosts, and the HTTP face has no TLS of its own: \
                     listen on 127.0.0.1 or [::1] and put a TLS proxy in front"
                ),
            );
            default
        }
        Some(Err(e)) => {
            refuse(
                "listen",
                format!("not an address and port ({e}); for example \"{LISTEN}\""),
            );
            default
        }
    };
    let max_body = raw.max_body.map_or(MAX_BODY, |s| s.0);
    if max_body == 0 {
        refuse("max_body", "must be above zero".into());
    }
    let max_connections = raw.max_connections.unwrap_or(MAX_CONNECTIONS);
    if max_connections == 0 {
        refuse("max_connections", "must be at least 1".into());
    }
    let request_timeout = raw.request_timeout.map_or(REQUEST_TIMEOUT, |d| d.0);
    if request_timeout.is_zero() {
        refuse("request_timeout", "must be longer than zero".into());
    }
    let settings = HttpSettings {
        listen,
        max_body: max_body.max(1),
        max_connections: max_connections.max(1),
        request_timeout: if request_timeout.is_zero() {
            REQUEST_TIMEOUT
        } else {
            request_timeout
        },
    };
    (Some(settings), problems)
}
