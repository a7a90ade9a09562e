//! The HTTP face: a REST API over the control API, Prometheus metrics and
//! a dashboard, served by axum on a loopback address when the fleet file
//! has an `[http]` table.
//!
//! Every path but `/login` needs this start's token, generated at start and
//! kept 0600 in the runtime dir (`corral http-token` prints it): as a
//! bearer header, or as the session cookie `/login?token=…` sets. Wrong
//! tokens are answered 401, and past a few a second 429. Requests are
//! bounded: bodies by `max_body` (413), open connections by
//! `max_connections` (more wait to be accepted), time by `request_timeout`
//! (streams excepted).
//!
//! The rooms: `auth` (the token and the gate), `api` (the REST routes),
//! `failure` (error codes to HTTP statuses), `metrics` (`/metrics`),
//! `dashboard` (the page and its files), `streams` (the Server-Sent Events
//! streams), `listener` (the bounded accept).

mod api;
mod auth;
mod dashboard;
mod failure;
mod listener;
mod metrics;
mod streams;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
}

/// The running HTTP face; stop it with [`HttpServer::shutdown`].
#[derive(Debug)]
pub struct HttpServer {
    url: String,
    files: Vec<PathBuf>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `http.listen`, writes the token and URL files, and serves.
    pub async fn start(
        settings: Arc<SupervisorSettings>,
        http: &HttpSettings,
        supervisor: SupervisorHandle,
    ) -> Result<Self, Error> {
        let bound = tokio::net::TcpListener::bind(http.listen)
            .await
            .map_err(Error::io(format!("http: cannot listen on {}", http.listen)))?;
        let addr = bound
            .local_addr()
            .map_err(Error::io("http: the listener has no address"))?;
        let url = format!("http://{addr}/");
        let gate = auth::Gate::generate().map_err(Error::io("http: cannot make a token"))?;
        let files = vec![settings.http_token_file(), settings.http_url_file()];
        write_private(&files[0], gate.token())?;
        write_private(&files[1], &url)?;
        let face = Face {
            supervisor,
            settings,
            gate,
            started: std::time::Instant::now(),
        };
        let app = router(face, http);
        let listener = listener::Bounded::new(bound, http.max_connections);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("http: the server stopped: {e}");
            }
        });
        tracing::info!(%url, "http: serving the dashboard, /api and /metrics");
        Ok(Self {
            url,
            files,
            stop,
            task,
        })
    }

    /// Where it serves, as `http://ADDR:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting, gives open requests `grace` to end (streams are
    /// cut), and removes the token and URL files.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
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

/// Writes `text` to `path`, readable by this user alone (the file is
/// replaced, never followed if it is a link).
fn write_private(path: &std::path::Path, text: &str) -> Result<(), Error> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("cannot write {}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(Error::io(format!("cannot write {}", path.display())))
}
