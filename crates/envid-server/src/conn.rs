//! The accept loop: at most `max_connections` served at once, a deadline on
//! every request head, and a graceful drain on shutdown.
//!
//! `axum::serve` has neither a connection cap nor a header timeout, so one
//! client opening thousands of idle sockets, or trickling a request head a
//! byte at a time (slowloris), could hold the service's file descriptors and
//! memory for as long as it liked. Here each connection is a hyper HTTP/1.1
//! connection (the protocol's clients are HTTP/1.1: ureq, curl) with
//! `header_read_timeout`, which hyper arms whenever it waits for a request
//! head, so it also closes idle keep-alive connections. At the cap the loop
//! stops accepting: new connections wait in the kernel's backlog (and are
//! served as soon as a slot frees) rather than being accepted and dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::Metrics;

/// The connection limits (from `Config`).
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits at most
/// `drain_timeout` for the connections in flight (idle ones close at once).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // connections being served keep going.
                    eprintln!("envid-server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_open.inc();
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let reason = match conn.await {
                Ok(()) => "done",
                Err(e) if e.is_timeout() => "header_timeout",
                Err(_) => "error",
            };
            metrics.connection_closed(reason);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "envid-server: in-flight requests still running after {drain_timeout:?}; stopping anyway"
        );
    }
}
