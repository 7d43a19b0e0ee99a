//! Serving a router on a TCP listener with limits a hostile client cannot
//! outwait.
//!
//! `axum::serve` sets no timer, so a client that opens a connection and
//! never finishes its request head (slowloris) holds a task and a file
//! descriptor for as long as it likes. [`serve_router`] serves HTTP/1.1
//! with hyper's header read timeout: a request head must arrive whole
//! within the timeout, counted from the connection's first read or from
//! the end of the previous response on a kept-alive connection (so idle
//! keep-alive connections close after it too). And it holds at most
//! [`Limits::max_connections`] connections open: beyond that it stops
//! accepting (the kernel's backlog queues the next ones) until one closes,
//! so no client — a runner opening connections to its own API address
//! included — can use up the server's file descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;

/// What one listener allows a client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a request head may take to arrive (and a kept-alive
    /// connection may idle).
    pub header_timeout: Duration,
    /// Connections open at once; at least 1.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then waits
/// for the connections in flight to finish their requests (callers bound
/// that wait). Each request carries `ConnectInfo<SocketAddr>` (the peer).
/// A connection whose request head is not complete
/// [`Limits::header_timeout`] after the server starts reading it is
/// closed; at most [`Limits::max_connections`] are open at once.
///
/// Errors: none once listening; a failed `accept` (too many open files) is
/// logged and retried after a second.
pub(crate) async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(Body::new)).await;
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
