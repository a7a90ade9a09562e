//! Accepting and serving HTTP connections, bounded: at most
//! `max_connections` open (the accept loop waits for a free slot; the
//! kernel's backlog holds the rest), each closed when its client takes
//! longer than [`HEADER_READ_TIMEOUT`] to send a request's headers (a
//! silent or trickling socket, or an idle keep-alive one, cannot hold a
//! slot for long). Accept errors (out of fds) pause the loop instead of
//! spinning it. At shutdown the loop stops accepting and open connections
//! end their requests; those still open when the caller gives up are
//! dropped with the loop. With TLS, each connection's handshake is made in
//! its own task, within 5 s.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Longest wait for a request's headers, the first or the next on a
/// kept-alive connection.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `closing` is cancelled, then until the
/// open connections end (the caller bounds that wait by dropping this
/// future, which drops them).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    (max_connections, tls): (usize, Option<TlsAcceptor>),
    closing: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    let mut pause = Duration::from_millis(10);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = closing.cancelled() => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let (stream, slot) = match accepted {
            Ok(accepted) => {
                pause = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                tracing::warn!("http: cannot accept a connection: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (builder, closing, tls) = (builder.clone(), closing.clone(), tls.clone());
        connections.spawn(async move {
            let ended = match tls {
                None => one(&builder, stream, service, &closing).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => one(&builder, stream, service, &closing).await,
                        Ok(Err(e)) => Err(format!("a TLS handshake failed: {e}")),
                        Err(_) => Err("a TLS handshake took too long".into()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!("http: a connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it ends; at shutdown it ends after the
/// request in progress.
async fn one<I>(
    builder: &http1::Builder,
    io: I,
    service: TowerToHyperService<Router>,
    closing: &CancellationToken,
) -> Result<(), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let ended = tokio::select! {
        ended = &mut connection => ended,
        () = closing.cancelled() => {
            std::pin::Pin::new(&mut connection).graceful_shutdown();
            connection.await
        }
    };
    ended.map_err(|e| e.to_string())
}

/// The next connection, once a slot is free for it.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("the connection slots are closed"))?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, slot))
}
