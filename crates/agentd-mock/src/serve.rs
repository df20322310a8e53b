//! The mock's accept loop: every connection served as HTTP/1.1 by hyper until a stop is asked
//! for, then each connection finishes the request it is serving. Unlike the daemon's loop it
//! has no connection limit: benchmarks hold thousands of streams open against the mock.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `stop` is cancelled; returns once every connection is
/// closed. A connection that does not send a request's headers within `header_timeout` (of
/// being accepted, or of finishing its previous request) is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    header_timeout: Duration,
) {
    // Each connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let connection = serve_connection(tcp, router.clone(), stop.clone(), header_timeout);
        let open = open_rx.clone();
        tokio::spawn(async move {
            connection.await;
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// One connection: requests in order until the peer closes or `stop` asks it to finish.
async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    stop: CancellationToken,
    header_timeout: Duration,
) {
    // Small writes (SSE chunks) go out at once instead of waiting for the peer's delayed ACK.
    let _ = tcp.set_nodelay(true);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "mock connection ended with an error");
    }
}

/// Out of file descriptors (or a similar resource) is retried after a pause instead of
/// spinning; a connection reset before accept completed is simply skipped.
async fn pause_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "mock model: accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
