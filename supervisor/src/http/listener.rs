//! Accepting and serving HTTP connections, bounded: at most
//! `max_connections` open (the accept loop waits for a free slot; the
//! kernel's backlog holds the rest), each closed when its client takes
//! longer than [`HEADER_READ_TIMEOUT`] to send a request's headers (a
//! silent or trickling socket, or an idle keep-alive one, cannot hold a
//! slot for long). Accept errors (out of fds) pause the loop instead of
//! spinning it. At shutdown the loop stops accepting and open connections
//! end their requests; those still open when the caller gives up are
//! dropped with the loop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest wait for a request's headers, the first or the next on a
/// kept-alive connection.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `closing` is cancelled, then until the
/// open connections end (the caller bounds that wait by dropping this
/// future, which drops them).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
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
        let mut connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let closing = closing.clone();
        connections.spawn(async move {
            let ended = tokio::select! {
                ended = &mut connection => ended,
                () = closing.cancelled() => {
                    // Ends after the request in progress, if any.
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                    connection.await
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
