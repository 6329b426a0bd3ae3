//! The accept loop: at most `max_connections` served at once, a deadline on
//! every request head, eviction of idle connections under pressure, and a
//! graceful drain on shutdown.
//!
//! `axum::serve` has neither a connection cap nor a header timeout, so one
//! client opening thousands of idle sockets, or trickling a request head a
//! byte at a time (slowloris), could hold the service's file descriptors and
//! memory for as long as it liked. Here each connection is a hyper HTTP/1.1
//! connection (the protocol's clients are HTTP/1.1: ureq, curl) with
//! `header_read_timeout`, which hyper arms whenever it waits for a request
//! head, so it closes slow senders and idle keep-alive connections alike.
//!
//! At the cap, a new connection evicts the oldest connection that has no
//! request in flight (an idle keep-alive, or a head still trickling in): a
//! flood of idle sockets then costs the service one slot turnover each, and
//! a client that sends its request at once is served instead of queueing
//! behind the flood in the kernel's backlog. Only when every connection has a
//! request in flight does the loop stop accepting until one finishes.
//!
//! Every request carries its connection's peer address
//! (`axum::extract::ConnectInfo<SocketAddr>`): registration checks that an
//! instance registers only its own IP. With TLS, the handshake runs in the
//! connection's task, bounded by `header_read_timeout` like a request head.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::metrics::Metrics;

/// The connection limits (from `Config`).
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    /// TLS on every connection when set.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// One open connection, as the accept loop sees it.
struct Open {
    /// Requests being handled on it (0: idle or still reading a head).
    busy: Arc<AtomicUsize>,
    /// Wakes the connection's task to drop it.
    evict: Arc<Notify>,
}

/// Open connections by accept order (oldest first).
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Open>,
}

impl Table {
    /// Asks the oldest connection with no request in flight to close;
    /// false when every connection is busy.
    fn evict_oldest_idle(&mut self) -> bool {
        let idle = self
            .open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(&id, _)| id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight on its connection for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
    let table = Arc::new(Mutex::new(Table::default()));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // connections being served keep going.
                    tracing::warn!(error = %e, "accept failed; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if slots.available_permits() == 0 {
            let evicted = lock(&table).evict_oldest_idle();
            if evicted {
                metrics.evicted();
            }
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let busy = Arc::new(AtomicUsize::new(0));
        let evict = Arc::new(Notify::new());
        let id = {
            let mut t = lock(&table);
            let id = t.next_id;
            t.next_id += 1;
            t.open.insert(
                id,
                Open {
                    busy: busy.clone(),
                    evict: evict.clone(),
                },
            );
            id
        };
        let inner = TowerToHyperService::new(app.clone());
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = Busy::enter(&busy);
            let response = inner.call(req);
            async move {
                let _guard = guard;
                response.await
            }
        });
        let watcher = graceful.watcher();
        let (builder, tls) = (builder.clone(), limits.tls.clone());
        let timeout = limits.header_read_timeout;
        metrics.connection_opened();
        let (metrics, table) = (metrics.clone(), table.clone());
        tokio::spawn(async move {
            let run = async move {
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        outcome(watcher.watch(conn).await)
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = builder.serve_connection(TokioIo::new(tls), service);
                                outcome(watcher.watch(conn).await)
                            }
                            Ok(Err(_)) => "tls_error",
                            Err(_) => "header_timeout",
                        }
                    }
                }
            };
            let reason = tokio::select! {
                r = run => r,
                () = evict.notified() => "evicted",
            };
            lock(&table).open.remove(&id);
            metrics.connection_closed(reason);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "in-flight requests still running after the drain timeout; stopping anyway"
        );
    }
}

/// The close reason of a served connection.
fn outcome(r: Result<(), hyper::Error>) -> &'static str {
    match r {
        Ok(()) => "done",
        Err(e) if e.is_timeout() => "header_timeout",
        Err(_) => "error",
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    // The table holds no invariant a panic could break half-way.
    table.lock().unwrap_or_else(|e| e.into_inner())
}
