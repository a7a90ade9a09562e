//! The HTTP face: a REST API over the control API, Prometheus metrics and
//! a dashboard, served by axum on a loopback address when the fleet file
//! has an `[http]` table.
//!
//! Every path but `/login` needs this start's token, generated at start and
//! kept 0600 in the runtime dir (`corral http-token` prints it): as a
//! bearer header, or (browsers) as the session cookie `/login?code=…`
//! sets for a one-time code `corral dashboard` gets. Wrong secrets are
//! answered 401, and past a few a second 429. Requests are
//! bounded: bodies by `max_body` (413), open connections by
//! `max_connections` (more wait to be accepted), time by `request_timeout`
//! (streams excepted) and by the header read timeout (silent sockets).
//!
//! The rooms: `auth` (the token and the gate), `api` (the REST routes),
//! `failure` (error codes to HTTP statuses), `metrics` (`/metrics`),
//! `dashboard` (the page and its files), `streams` (the Server-Sent Events
//! streams), `listener` (the bounded accept and serve), `tls` (its certificate), `gateway` (plugins' routes),
//! `config_form` (plugins' config, read and changed).

mod api;
mod auth;
mod config_form;
mod dashboard;
mod failure;
mod gateway;
mod listener;
mod metrics;
mod streams;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::{HttpSettings, SupervisorSettings};
use crate::supervisor::SupervisorHandle;

/// What every handler is given.
#[derive(Clone)]
struct Face {
    /// The fleet it answers for.
    supervisor: SupervisorHandle,
    /// The fleet's settings (log dir, for log routes).
    settings: Arc<SupervisorSettings>,
    /// Who may come in.
    gate: auth::Gate,
    /// When it started, for the uptime metric.
    started: std::time::Instant,
    /// Cancelled when the face shuts down: every stream ends with it.
    closing: CancellationToken,
    /// The fleet's rows, read once for every watcher.
    fleet: tokio::sync::watch::Receiver<Option<Arc<str>>>,
    /// The connections to plugins' own servers, for the gateway.
    upstreams: gateway::Upstreams,
    /// The fleet file, beside which config changes are kept.
    fleet_file: Arc<std::path::Path>,
    /// One config change at a time (its write, reload and taking back).
    config_changes: Arc<tokio::sync::Semaphore>,
}

/// The HTTP face's address, bound before the fleet starts (so a port
/// already taken stops `corral up` before any plugin runs).
#[derive(Debug)]
pub struct HttpListener {
    bound: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
}

impl HttpListener {
    /// Binds `http.listen`.
    pub async fn bind(http: &HttpSettings) -> Result<Self, Error> {
        let bound = tokio::net::TcpListener::bind(http.listen)
            .await
            .map_err(Error::io(format!("http: cannot listen on {}", http.listen)))?;
        let addr = bound
            .local_addr()
            .map_err(Error::io("http: the listener has no address"))?;
        Ok(Self { bound, addr })
    }
}

/// The running HTTP face; stop it with [`HttpServer::shutdown`].
#[derive(Debug)]
pub struct HttpServer {
    url: String,
    files: Vec<PathBuf>,
    logins: PathBuf,
    closing: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Writes the token and URL files, and serves on `listener`.
    pub fn start(
        listener: HttpListener,
        (settings, fleet_file): (Arc<SupervisorSettings>, &std::path::Path),
        http: &HttpSettings,
        supervisor: SupervisorHandle,
    ) -> Result<Self, Error> {
        let tls = match &http.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/", listener.addr);
        let logins = settings.http_login_dir();
        make_private_dir(&logins)?;
        let gate = auth::Gate::generate(
            listener.addr.port(),
            (http.loopback(), tls.is_some()),
            &logins,
        )
        .map_err(Error::io("http: cannot make a token"))?;
        let files = vec![settings.http_token_file(), settings.http_url_file()];
        for (file, text) in files.iter().zip([gate.token(), url.as_str()]) {
            crate::os::runtime_dir::write_private(file, text.as_bytes())
                .map_err(Error::io(format!("cannot write {}", file.display())))?;
        }
        let closing = CancellationToken::new();
        let fleet = streams::fleet_feed(supervisor.clone(), closing.clone());
        let face = Face {
            supervisor,
            settings,
            gate,
            started: std::time::Instant::now(),
            closing: closing.clone(),
            fleet,
            upstreams: gateway::Upstreams::new(),
            fleet_file: fleet_file.into(),
            config_changes: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let app = router(face, http);
        let bounds = (http.max_connections, tls);
        let serve = listener::serve(listener.bound, app, bounds, closing.clone());
        let task = tokio::spawn(serve);
        tracing::info!(%url, "http: serving the dashboard, /api and /metrics");
        Ok(Self {
            url,
            files,
            logins,
            closing,
            task,
        })
    }

    /// Where it serves, as `http://ADDR:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting, ends every stream, gives open requests `grace` to
    /// end (then drops them), and removes the token and URL files and the
    /// login codes left.
    pub async fn shutdown(self, grace: Duration) {
        self.closing.cancel();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_dir_all(&self.logins);
    }
}

/// Every route, with the gate in front of all but `/login` and the bounds
/// around them all.
fn router(face: Face, http: &HttpSettings) -> Router {
    use axum::extract::DefaultBodyLimit;
    use axum::middleware::from_fn_with_state;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;

    let body = usize::try_from(http.max_body).unwrap_or(usize::MAX);
    let guarded = Router::new()
        .merge(api::routes())
        .merge(metrics::routes())
        .merge(dashboard::routes())
        .merge(auth::code_routes())
        .merge(config_form::routes())
        .fallback(gateway::handle)
        .layer(from_fn_with_state(face.clone(), auth::require));
    Router::new()
        .merge(auth::routes())
        .merge(guarded)
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            http.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(body))
        .layer(RequestBodyLimitLayer::new(body))
        .with_state(face)
}

/// Makes `dir` (a fresh one, this user's alone).
fn make_private_dir(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("cannot make {}", dir.display())))
}
