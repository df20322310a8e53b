//! The accept loop: every connection is served as HTTP/1.1 by hyper, at most
//! `max_connections` at once, and all of them are closed gracefully on shutdown.
//!
//! agentd speaks HTTP/1.1 only (the Julep SDK, curl and every OpenAI-style client use it).
//! Serving it with hyper's HTTP/1 connection directly, instead of a server that first sniffs
//! each connection for an HTTP/2 preface, saves a buffer and a wrapper per connection, which
//! is most of what a held-open stream costs on the client side.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `stop` is cancelled, then lets every connection finish
/// the request it is serving and returns once all of them are closed. A connection that does
/// not send a request's headers within `header_timeout` (of being accepted, or of finishing
/// its previous request) is closed: a slow or idle client cannot hold a socket forever. At
/// most `max_connections` are served at once: past that nothing is accepted until one
/// closes, so further clients wait in the kernel's listen backlog instead of costing a task,
/// buffers and a file descriptor each.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    header_timeout: Duration,
    max_connections: usize,
) {
    let connections = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(
        max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut full = false;
    loop {
        let slot = tokio::select! {
            slot = connection_slot(&slots, max_connections, &mut full) => match slot {
                Some(slot) => slot,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(error) => {
                    backoff_after_accept_error(error).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let connection = connections.watch(http1_connection(tcp, router.clone(), header_timeout));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A peer that hangs up mid-request is routine; it is not an operator's problem.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Each connection finishes the request it is serving, then closes.
    connections.shutdown().await;
}

/// A free connection slot, waiting for one when all are taken. The operator hears of it once
/// each time the daemon becomes full, not once per waiting client.
async fn connection_slot(
    slots: &Arc<Semaphore>,
    max_connections: usize,
    full: &mut bool,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
        *full = false;
        return Some(slot);
    }
    if !*full {
        *full = true;
        tracing::warn!(
            max_connections,
            "connection limit reached (limits.max_connections); new connections wait until one closes"
        );
    }
    // `None` only if the semaphore were closed, which `serve` never does.
    Arc::clone(slots).acquire_owned().await.ok()
}

/// One connection: requests in order until the peer closes (or, once watched by a
/// [`GracefulShutdown`], until a shutdown lets it finish its request).
fn http1_connection(
    tcp: TcpStream,
    router: Router,
    header_timeout: Duration,
) -> hyper::server::conn::http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>> {
    // Small writes (SSE chunks, short JSON answers) go out at once instead of waiting for
    // the peer's delayed ACK (Nagle), which otherwise adds ~40 ms to a stream's first byte.
    let _ = tcp.set_nodelay(true);
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router))
}

/// Out of file descriptors (or a similar resource) is retried after a pause instead of
/// spinning; a connection reset before accept completed is simply skipped.
async fn backoff_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "done"
    }

    /// Serves a `/slow` route on a fresh port; the address, the stop token, the server task.
    async fn start(
        header_timeout: Duration,
    ) -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        start_capped(header_timeout, 1024).await
    }

    async fn start_capped(
        header_timeout: Duration,
        max_connections: usize,
    ) -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(super::serve(
            listener,
            Router::new().route("/slow", get(slow)),
            stop.clone(),
            header_timeout,
            max_connections,
        ));
        (addr, stop, server)
    }

    #[tokio::test]
    async fn stopping_finishes_the_request_in_flight_then_refuses_connections() {
        let (addr, stop, server) = start(Duration::from_secs(60)).await;
        crate::daemon::install_crypto_provider();
        let client = reqwest::Client::new();
        let in_flight = tokio::spawn(client.get(format!("http://{addr}/slow")).send());
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();

        let response = in_flight
            .await
            .unwrap()
            .expect("the request in flight is answered");
        assert_eq!(response.text().await.unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once its connections are closed")
            .unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_complete_headers_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (addr, stop, _server) = start(Duration::from_millis(200)).await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "the server closes a connection whose headers never finish"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn past_the_connection_limit_a_client_waits_until_a_connection_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (addr, stop, _server) = start_capped(Duration::from_secs(60), 1).await;
        let first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(800), second.read_to_end(&mut answer)).await;
        assert!(
            early.is_err(),
            "the second connection is not served while the first holds the only slot: {:?}",
            String::from_utf8_lossy(&answer)
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut answer))
            .await
            .expect("served once the first connection closed")
            .unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"done"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        stop.cancel();
    }
}
