//! The accept loop: at most `max_connections` served at once and
//! `max_connections_per_client` from one address, a deadline on every
//! request head and a bound on its size, eviction under pressure, and a
//! graceful drain on shutdown.
//!
//! `axum::serve` has neither a connection cap nor a header timeout, so one
//! client opening thousands of idle sockets, or trickling a request head a
//! byte at a time (slowloris), could hold the service's file descriptors and
//! memory for as long as it liked. Here each connection is a hyper HTTP/1.1
//! connection (the protocol's clients are HTTP/1.1: ureq, curl) with
//! `header_read_timeout`, which hyper arms whenever it waits for a request
//! head and does not push back as bytes arrive, so it closes slow senders
//! and idle keep-alive connections alike; and with `max_header_bytes` as
//! hyper's buffer, so a head that never ends costs that much, not hyper's
//! default of ~400 KiB a connection.
//!
//! At the global cap, a new connection evicts the oldest connection that
//! has no request in flight (an idle keep-alive, or a head still trickling
//! in); failing that, it ends the oldest waiting long poll early (answered
//! as if its wait had run out, and closed). Long polls never hold more than
//! seven eighths of the connections (`http::limits`), so the loop waits for
//! a connection to finish only while every one is running a short request.
//! One address past its own cap evicts its own oldest idle connection, or
//! has the new one closed at once: it never makes anyone else wait.
//!
//! Every request carries its connection's peer address
//! (`axum::extract::ConnectInfo<SocketAddr>`): registration checks that an
//! instance registers only its own IP. With TLS, the handshake runs in the
//! connection's task, bounded by `header_read_timeout` like a request head.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
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
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The connection limits (from `Config`).
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    /// Peers not limited per address (their clients are, per request).
    pub(crate) trusted_proxies: Arc<[ipnet::IpNet]>,
    pub(crate) max_header_bytes: usize,
    pub(crate) header_read_timeout: Duration,
    /// TLS on every connection when set.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What the accept loop and the requests of one connection share. Every
/// request carries it as an extension, so a long poll can say it is one
/// and hear that it must end.
#[derive(Default)]
pub(crate) struct Shared {
    /// Requests being handled on it (0: idle or still reading a head).
    busy: AtomicUsize,
    /// Of those, long polls waiting for a change.
    long_polls: AtomicUsize,
    /// Wakes the connection's task to drop it.
    evict: Notify,
    /// Tells its waiting long poll to answer now.
    preempt: Notify,
}

/// A request's handle on its connection (an extension of every request).
#[derive(Clone)]
pub(crate) struct Connection(Arc<Shared>);

impl Connection {
    /// Marks the connection as waiting in a long poll while the guard lives:
    /// at the cap it may then be ended early (see [`Connection::preempted`]).
    pub(crate) fn long_poll(&self) -> LongPoll {
        self.0.long_polls.fetch_add(1, Ordering::AcqRel);
        LongPoll(self.0.clone())
    }

    /// Resolves when the accept loop needs this connection's slot: the long
    /// poll answers now and the connection closes.
    pub(crate) async fn preempted(&self) {
        self.0.preempt.notified().await
    }
}

/// See [`Connection::long_poll`].
pub(crate) struct LongPoll(Arc<Shared>);

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.long_polls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection, as the accept loop sees it.
struct Open {
    client: IpAddr,
    shared: Arc<Shared>,
    /// Its place under `max_connections`, given back the moment it is
    /// evicted rather than when its task gets to run: a burst of evictions
    /// must not leave the cap full of connections that are only closing.
    _permit: OwnedSemaphorePermit,
}

/// How many of something each client address holds; an address is
/// forgotten at zero, so the map holds active addresses only. The accept
/// loop counts connections with it, `http::limits` requests and long polls.
#[derive(Debug, Default)]
pub(crate) struct AddressCounts(HashMap<IpAddr, usize>);

impl AddressCounts {
    pub(crate) fn get(&self, client: IpAddr) -> usize {
        self.0.get(&client).copied().unwrap_or(0)
    }

    pub(crate) fn add(&mut self, client: IpAddr) {
        *self.0.entry(client).or_default() += 1;
    }

    pub(crate) fn remove(&mut self, client: IpAddr) {
        if let Some(n) = self.0.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&client);
            }
        }
    }

    /// The address holding the most.
    fn largest(&self) -> Option<IpAddr> {
        self.0.iter().max_by_key(|(_, &n)| n).map(|(&ip, _)| ip)
    }
}

/// Open connections by accept order (oldest first), and how many each
/// client address has among them.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Open>,
    per_client: AddressCounts,
}

impl Table {
    fn insert(&mut self, client: IpAddr, shared: Arc<Shared>, permit: OwnedSemaphorePermit) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Open {
                client,
                shared,
                _permit: permit,
            },
        );
        self.per_client.add(client);
        id
    }

    /// Forgets connection `id` (evicted, or closed); `None` when it was
    /// forgotten before.
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        self.per_client.remove(open.client);
        Some(open)
    }

    fn count(&self, client: IpAddr) -> usize {
        self.per_client.get(client)
    }

    /// The client address holding the most connections.
    fn largest_client(&self) -> Option<IpAddr> {
        self.per_client.largest()
    }

    /// Makes room at the global cap: the oldest idle connection of the
    /// address holding the most (a flood pays for itself before anyone
    /// else does), else the oldest idle one of anyone, else the oldest
    /// waiting long poll; false when every connection runs a short request.
    fn make_room(&mut self) -> bool {
        let largest = self.largest_client();
        (largest.is_some() && self.evict_oldest_idle(largest))
            || self.evict_oldest_idle(None)
            || self.preempt_oldest_long_poll()
    }

    /// Asks the oldest connection with no request in flight (of `client`
    /// only, when given) to close; false when there is none.
    fn evict_oldest_idle(&mut self, client: Option<IpAddr>) -> bool {
        let idle = self
            .open
            .iter()
            .filter(|(_, c)| client.is_none_or(|ip| c.client == ip))
            .find(|(_, c)| c.shared.busy.load(Ordering::Acquire) == 0)
            .map(|(&id, _)| id);
        match idle.and_then(|id| self.remove(id)) {
            Some(c) => {
                c.shared.evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// Asks the oldest connection whose only request is a waiting long poll
    /// to answer it now and close; false when there is none.
    fn preempt_oldest_long_poll(&mut self) -> bool {
        let polling = self
            .open
            .iter()
            .find(|(_, c)| {
                let polls = c.shared.long_polls.load(Ordering::Acquire);
                polls > 0 && c.shared.busy.load(Ordering::Acquire) == polls
            })
            .map(|(&id, _)| id);
        match polling.and_then(|id| self.remove(id)) {
            Some(c) => {
                c.shared.preempt.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight on its connection for as long as it lives.
struct Busy(Arc<Shared>);

impl Busy {
    fn enter(shared: &Arc<Shared>) -> Busy {
        shared.busy.fetch_add(1, Ordering::AcqRel);
        Busy(shared.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The kernel's queue of connections not yet accepted: as deep as the
/// system allows (`net.core.somaxconn` caps it; 4,096 by default on current
/// kernels). The standard library's 128 overflows under a burst of
/// connections (a fleet of replicas after a restart, or a flood) while the
/// loop is busy, and a dropped SYN costs a good client a 1 s retransmit.
const LISTEN_BACKLOG: i32 = 65_535;

/// Binds `addr`, non-blocking, with [`LISTEN_BACKLOG`].
pub(crate) fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // What std's bind does too: a restarted service rebinds at once.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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
    // hyper's read buffer holds the head being read; it must not grow past
    // the largest head accepted (hyper's minimum is 8 KiB).
    let head_bytes = limits.max_header_bytes.max(8 * 1024);
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(head_bytes)
        .max_buf_size(head_bytes)
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
        let client = peer.ip().to_canonical();
        let limited = !limits.trusted_proxies.iter().any(|n| n.contains(&client));
        if limited {
            let mut t = lock(&table);
            if t.count(client) >= limits.max_connections_per_client.max(1) {
                if !t.evict_oldest_idle(Some(client)) {
                    // Every one of its connections is busy: this address
                    // waits, nobody else does.
                    drop(t);
                    drop(stream);
                    metrics.connection_opened();
                    metrics.connection_closed("client_limit");
                    continue;
                }
                metrics.evicted();
            }
        }
        if slots.available_permits() == 0 && lock(&table).make_room() {
            metrics.evicted();
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::new(Shared::default());
        let id = lock(&table).insert(client, shared.clone(), permit);
        let inner = TowerToHyperService::new(app.clone());
        let conn = Connection(shared.clone());
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(conn.clone());
            let guard = Busy::enter(&conn.0);
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
        let end = move |reason| {
            lock(&table).remove(id);
            metrics.connection_closed(reason);
        };
        // A task each: a plain connection's future (allocated once per
        // connection, so counted per waiting replica) does not carry room
        // for a TLS handshake's state. 3.8 KiB with it.
        match tls {
            None => {
                tokio::spawn(async move {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let reason = tokio::select! {
                        r = watcher.watch(conn) => outcome(r),
                        () = shared.evict.notified() => "evicted",
                    };
                    end(reason);
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let run = async move {
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = builder.serve_connection(TokioIo::new(tls), service);
                                outcome(watcher.watch(conn).await)
                            }
                            Ok(Err(_)) => "tls_error",
                            Err(_) => "header_timeout",
                        }
                    };
                    let reason = tokio::select! {
                        r = run => r,
                        () = shared.evict.notified() => "evicted",
                    };
                    end(reason);
                });
            }
        }
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
