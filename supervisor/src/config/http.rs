//! The fleet's `[http]` table: where the HTTP face listens, its TLS, and
//! how much one request may hold. Off unless the table is there; a listen
//! address off this host's loopback is refused without TLS (`tls_cert`
//! and `tls_key`) unless `insecure = true` says the token may cross the
//! network in the clear.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Its TLS certificate chain and private key (PEM files), if it speaks
    /// TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Whether it listens off loopback without TLS (by `insecure`).
    pub insecure: bool,
}

impl HttpSettings {
    /// Whether only this host can reach it (its address is loopback), so
    /// requests must name a loopback `Host`.
    pub fn loopback(&self) -> bool {
        self.listen.ip().is_loopback()
    }
}

/// A problem with a key of the table: the key, and why.
type Said = (&'static str, String);

/// `tls_cert` and `tls_key` (both or neither), under `dir`, and the
/// problems (key, why) found in them.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    dir: &Path,
) -> (Option<(PathBuf, PathBuf)>, Vec<Said>) {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (dir.join(cert), dir.join(key));
            let problems = [("tls_cert", &cert), ("tls_key", &key)]
                .into_iter()
                .filter(|(_, path)| !path.is_file())
                .map(|(k, path)| (k, format!("{} is not a readable file", path.display())))
                .collect();
            (Some((cert, key)), problems)
        }
        (Some(_), None) => (
            None,
            vec![("tls_key", "`tls_cert` needs its `tls_key`".into())],
        ),
        (None, Some(_)) => (
            None,
            vec![("tls_cert", "`tls_key` needs its `tls_cert`".into())],
        ),
        (None, None) => (None, Vec::new()),
    }
}

/// The `[http]` table resolved, with every problem found (a value that
/// cannot work is replaced by its default, so the rest is still checked).
pub(super) fn settings(
    raw: Option<HttpLayer>,
    (file, dir): (&Path, &Path),
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
    let (tls, said) = tls_files(raw.tls_cert, raw.tls_key, dir);
    for (key, why) in said {
        refuse(key, why);
    }
    let insecure = raw.insecure.unwrap_or(false);
    let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
        None => default,
        Some(Ok(addr)) if addr.ip().is_loopback() || tls.is_some() || insecure => addr,
        Some(Ok(addr)) => {
            refuse(
                "listen",
                format!(
                    "{addr} is reachable from other hosts, and the token would cross the network in the clear: \
                     give `tls_cert` and `tls_key`, or listen on 127.0.0.1 (or set `insecure = true`)"
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
        tls,
        insecure,
    };
    (Some(settings), problems)
}
