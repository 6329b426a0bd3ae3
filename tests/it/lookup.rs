//! The lookup client against the real reference service on 127.0.0.1, and
//! against a misbehaving HTTP peer for the faults a real service cannot be
//! made to produce on demand (slow, 500, garbage, oversized, cut bodies).
//! Every server listens on an ephemeral loopback port and is shut down by
//! the test; every wait is bounded. Speed is measured in benches/lookup.rs,
//! never asserted here: bounds below are an order of magnitude above the
//! figures, so a loaded machine cannot fail them.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use envid::client::{ClientError, ServiceConfig, ServiceConfigBuilder};
use envid::lookup::{LookupClient, LookupClientBuilder};
use envid::Secret;

const REGISTRY: &str = include_str!("../../testdata/registry-loopback.toml");

struct Service {
    dir: tempfile::TempDir,
    handle: Option<envid_server::ServerHandle>,
    token: Option<String>,
}

impl Service {
    fn start(token: Option<&str>) -> Service {
        Self::start_on(
            "127.0.0.1:0".parse().unwrap(),
            token,
            tempfile::tempdir().unwrap(),
        )
    }

    fn start_on(addr: SocketAddr, token: Option<&str>, dir: tempfile::TempDir) -> Service {
        let path = dir.path().join("registry.toml");
        if !path.exists() {
            std::fs::write(&path, REGISTRY).unwrap();
        }
        let mut config = envid_server::Config::new(&path);
        config.listen = addr;
        config.token = token.map(str::to_string);
        config.reload_interval = Duration::from_millis(50);
        let handle = envid_server::spawn(config).expect("service starts");
        Service {
            dir,
            handle: Some(handle),
            token: token.map(str::to_string),
        }
    }

    fn url(&self) -> String {
        self.handle.as_ref().unwrap().base_url()
    }

    fn addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().local_addr()
    }

    /// Stops the service, keeping its registry directory for a restart.
    fn stop(mut self) -> tempfile::TempDir {
        self.handle.take().unwrap().shutdown();
        self.dir
    }

    /// `envid_ips_looked_up_total`: IPs the service answered (single and batch).
    fn ips_looked_up(&self) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("envid_ips_looked_up_total "))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    /// `envid_http_requests_total{endpoint=…}` summed over statuses, from /metrics.
    fn requests(&self, endpoint: &str) -> u64 {
        let needle = format!("endpoint=\"{endpoint}\"");
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("envid_http_requests_total") && l.contains(&needle))
            .map(|l| l.rsplit(' ').next().unwrap().trim().parse::<f64>().unwrap() as u64)
            .sum()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(url: &str) -> ServiceConfigBuilder {
    ServiceConfig::builder()
        .endpoint(url)
        .connect_timeout(Duration::from_millis(300))
        .per_phase_timeout(Duration::from_millis(800))
}

fn client_with(config: ServiceConfigBuilder) -> LookupClientBuilder {
    LookupClient::builder(config.build().unwrap()).backoff(Duration::from_millis(10))
}

fn client(url: &str) -> LookupClientBuilder {
    client_with(config(url))
}

#[test]
fn single_batch_cidr_unknown_and_ipv6() {
    let svc = Service::start(None);
    let c = client(&svc.url()).build().unwrap();
    let r = c.lookup(ip("10.0.0.5")).unwrap().unwrap();
    assert_eq!(
        (r.app.as_deref(), r.env.as_str(), r.idc.as_str()),
        (Some("flightqma"), "beta", "cn0")
    );
    // Most specific CIDR wins.
    assert_eq!(
        c.lookup(ip("10.20.30.7")).unwrap().unwrap().app.as_deref(),
        Some("hotel")
    );
    assert_eq!(
        c.lookup(ip("10.20.99.7")).unwrap().unwrap().app.as_deref(),
        Some("flight_order")
    );
    assert_eq!(c.lookup(ip("2001:db8:42::9")).unwrap().unwrap().env, "dev");
    assert!(c.lookup(ip("192.0.2.1")).unwrap().is_none(), "unknown IP");
    // IPv4-mapped IPv6 is the IPv4 address.
    assert_eq!(
        c.lookup(ip("::ffff:10.0.0.5"))
            .unwrap()
            .unwrap()
            .app
            .as_deref(),
        Some("flightqma")
    );

    let ips = [
        ip("10.0.0.5"),
        ip("10.20.1.1"),
        ip("198.51.100.1"),
        ip("2001:db8:42::1"),
        ip("10.20.1.1"),
    ];
    let c2 = client(&svc.url()).build().unwrap();
    let out = c2.lookup_many(&ips);
    assert_eq!(out.len(), 5);
    assert_eq!(
        out[0].as_ref().unwrap().as_ref().unwrap().app.as_deref(),
        Some("flightqma")
    );
    assert_eq!(
        out[1].as_ref().unwrap().as_ref().unwrap().app.as_deref(),
        Some("flight_order")
    );
    assert!(out[2].as_ref().unwrap().is_none());
    assert_eq!(out[3].as_ref().unwrap().as_ref().unwrap().idc, "cn2");
    assert_eq!(out[4], out[1]);
    assert_eq!(
        c2.stats().requests,
        1,
        "one batch request for four distinct IPs"
    );
    // Now all cached: no request.
    c2.lookup_many(&ips);
    assert_eq!(c2.stats().requests, 1);
    assert!(c2.stats().hits >= 4);
    svc.stop();
}

#[test]
fn batches_and_single_lookups_of_the_same_ips_share_requests() {
    let svc = Service::start(None);
    let c = Arc::new(client(&svc.url()).build().unwrap());
    let ips: Arc<Vec<IpAddr>> = Arc::new(
        (0..500u32)
            .map(|i| IpAddr::from([10, 20, 7 + (i / 256) as u8, (i % 256) as u8]))
            .collect(),
    );
    let start = Arc::new(Barrier::new(6));
    let mut threads = Vec::new();
    // Two batches in opposite orders (they must not wait on each other) and
    // four threads looking up one IP at a time.
    for reversed in [false, true] {
        let (c, ips, start) = (c.clone(), ips.clone(), start.clone());
        threads.push(thread::spawn(move || {
            let mut order = (*ips).clone();
            if reversed {
                order.reverse();
            }
            start.wait();
            let out = c.lookup_many(&order);
            assert!(out.iter().all(|r| r.as_ref().unwrap().is_some()));
        }));
    }
    for t in 0..4usize {
        let (c, ips, start) = (c.clone(), ips.clone(), start.clone());
        threads.push(thread::spawn(move || {
            start.wait();
            for ip in ips.iter().skip(t * 50) {
                assert!(c.lookup(*ip).unwrap().is_some());
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for t in threads {
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "lookups deadlocked");
            thread::sleep(Duration::from_millis(5));
        }
        t.join().unwrap();
    }
    // Each IP reached the service exactly once, whoever asked first.
    assert_eq!(svc.ips_looked_up(), 500);
    svc.stop();
}

#[test]
fn batches_are_split_at_1000() {
    let svc = Service::start(None);
    let c = client(&svc.url()).build().unwrap();
    let ips: Vec<IpAddr> = (0..2500u32)
        .map(|i| IpAddr::from([10, 20, (i / 256) as u8, (i % 256) as u8]))
        .collect();
    let out = c.lookup_many(&ips);
    assert!(out.iter().all(|r| r.as_ref().unwrap().is_some()));
    assert_eq!(c.stats().requests, 3);
    assert_eq!(svc.requests("lookup"), 3);
    svc.stop();
}

#[test]
fn token_required_accepted_refused() {
    let svc = Service::start(Some("s3cret-token"));
    let none = client(&svc.url()).build().unwrap();
    let err = none.lookup(ip("10.0.0.5")).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Unauthorized {
                status: 401,
                token_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("needs a token"), "{err}");
    let wrong = client_with(config(&svc.url()).token(Secret::new("nope")))
        .build()
        .unwrap();
    let err = wrong.lookup(ip("10.0.0.5")).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Unauthorized {
                token_sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("refused the token"), "{err}");
    assert!(!err.to_string().contains("nope"));
    let right = client_with(config(&svc.url()).token(Secret::new("s3cret-token")))
        .build()
        .unwrap();
    assert!(right.lookup(ip("10.0.0.5")).unwrap().is_some());
    // The token never shows in Debug or errors.
    assert!(!format!("{right:?}{err}{err:?}").contains("s3cret"));
    let b = config(&svc.url()).token(Secret::new("s3cret-token"));
    assert!(!format!("{b:?}").contains("s3cret"));
    assert!(!format!("{:?}", client_with(b)).contains("s3cret"));
    svc.stop();
}

#[test]
fn sixty_four_threads_one_request() {
    let svc = Service::start(None);
    let c = Arc::new(client(&svc.url()).build().unwrap());
    let before = svc.requests("get_host");
    let barrier = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (c, barrier) = (c.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                c.lookup(ip("10.20.30.40")).unwrap().unwrap().app.clone()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().as_deref(), Some("hotel"));
    }
    assert_eq!(
        svc.requests("get_host") - before,
        1,
        "coalesced into one request"
    );
    assert_eq!(c.stats().requests, 1);
    svc.stop();
}

#[test]
fn changed_registry_is_served_after_reload_and_expiry() {
    let svc = Service::start(None);
    let c = client(&svc.url())
        .ttl(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(c.lookup(ip("10.0.0.5")).unwrap().unwrap().env, "beta");
    let path = svc.dir.path().join("registry.toml");
    std::fs::write(
        &path,
        REGISTRY.replacen("env = \"beta\"", "env = \"prod\"", 1),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        thread::sleep(Duration::from_millis(60));
        if c.lookup(ip("10.0.0.5")).unwrap().unwrap().env == "prod" {
            break;
        }
        assert!(Instant::now() < deadline, "reload not seen");
    }
    // A broken file: the old registry keeps answering.
    std::fs::write(&path, "schema = 1\n[[records]]\nip = \"not-an-ip\"\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    c.clear_cache();
    assert_eq!(c.lookup(ip("10.0.0.5")).unwrap().unwrap().env, "prod");
    svc.stop();
}

#[test]
fn outage_serves_stale_fails_fast_and_recovers() {
    let svc = Service::start(None);
    let addr = svc.addr();
    let c = client(&svc.url())
        .ttl(Duration::from_millis(50))
        .negative_ttl(Duration::from_millis(50))
        .error_ttl(Duration::from_millis(10))
        .breaker_threshold(3)
        .breaker_cool_down(Duration::from_millis(500))
        .build()
        .unwrap();
    let warm = [ip("10.0.0.5"), ip("10.20.1.1"), ip("198.51.100.7")];
    for w in warm {
        c.lookup(w).unwrap();
    }
    let dir = svc.stop();
    thread::sleep(Duration::from_millis(60)); // entries expire

    // Warm IPs: answered stale, no error (the unknown one stays unknown).
    assert_eq!(
        c.lookup(warm[0]).unwrap().unwrap().app.as_deref(),
        Some("flightqma")
    );
    assert_eq!(
        c.lookup(warm[1]).unwrap().unwrap().app.as_deref(),
        Some("flight_order")
    );
    assert!(c.lookup(warm[2]).unwrap().is_none());
    assert!(c.stats().stale >= 3);

    // Cold IPs: errors until the breaker opens, then instant CircuitOpen.
    let mut saw_open = false;
    for i in 0..10u8 {
        match c.lookup(IpAddr::from([10, 99, 0, i])) {
            Err(ClientError::CircuitOpen { .. }) => {
                saw_open = true;
                break;
            }
            Err(e) => assert!(matches!(e, ClientError::Connect { .. }), "{e:?}"),
            Ok(v) => panic!("answer from a dead service: {v:?}"),
        }
    }
    assert!(saw_open, "breaker never opened");
    let before = c.stats().requests;
    let t0 = Instant::now();
    let err = c.lookup(ip("10.99.1.1")).unwrap_err();
    assert!(matches!(err, ClientError::CircuitOpen { .. }), "{err:?}");
    // Failing fast is sending nothing; how fast is benches/lookup.rs's
    // `circuit_open` (about a microsecond).
    assert_eq!(c.stats().requests, before, "no request while open");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "fail fast took {:?}",
        t0.elapsed()
    );

    // Restart on the same port: after the cool-down the probe succeeds.
    let svc = Service::start_on(addr, None, dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        thread::sleep(Duration::from_millis(100));
        if let Ok(Some(r)) = c.lookup(ip("10.20.30.1")) {
            assert_eq!(r.app.as_deref(), Some("hotel"));
            break;
        }
        assert!(Instant::now() < deadline, "client did not recover");
    }
    svc.stop();
}

#[test]
fn failover_to_the_second_endpoint() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // closed again: connection refused
    let svc = Service::start(None);
    let config = ServiceConfig::builder()
        .endpoint(format!("http://{dead}"))
        .endpoint(svc.url())
        .build()
        .unwrap();
    let c = LookupClient::builder(config)
        .max_retries(1)
        .backoff(Duration::from_millis(5))
        .build()
        .unwrap();
    assert_eq!(c.lookup(ip("10.0.0.5")).unwrap().unwrap().env, "beta");
    assert_eq!(c.stats().requests, 2);
    svc.stop();
}

// ----- a misbehaving peer -----------------------------------------------

/// What the fault peer does with each request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Slow,
    Status500,
    Garbage,
    Huge,
    CutMidBody,
    RateLimited,
}

struct Peer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Peer {
    fn start(fault: Fault) -> Peer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            for conn in l.incoming().take(50) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                thread::spawn(move || serve_fault(conn, fault));
            }
        });
        Peer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_fault(mut conn: TcpStream, fault: Fault) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    // Read the batch body too: closing a socket with unread input sends a
    // reset, which the client would rightly report as I/O, not the fault.
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let body_len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if std::io::copy(&mut (&conn).take(body_len), &mut std::io::sink()).ok() != Some(body_len) {
        return;
    }
    let reply: Vec<u8> = match fault {
        Fault::Slow => {
            thread::sleep(Duration::from_millis(1500));
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()
        }
        Fault::Status500 => {
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
        Fault::Garbage => b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nnot json!!!".to_vec(),
        Fault::Huge => {
            let body = format!("{{\"env\":\"{}\",\"idc\":\"cn0\"}}", "x".repeat(200_000));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Fault::CutMidBody => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"env\":\"be".to_vec()
        }
        Fault::RateLimited => {
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n"
                .to_vec()
        }
    };
    // The peer closes after one reply, so it says so: otherwise the client
    // may reuse the pooled connection before the close reaches it.
    let status_line_end = reply.windows(2).position(|w| w == b"\r\n").unwrap();
    let reply = [
        &reply[..status_line_end],
        b"\r\nConnection: close",
        &reply[status_line_end..],
    ]
    .concat();
    let _ = conn.write_all(&reply);
    let _ = conn.flush();
    // Dropping the connection here cuts a body that promised more.
}

fn fault_client(peer: &Peer) -> LookupClient {
    let config = config(&peer.url())
        .per_phase_timeout(Duration::from_millis(300))
        .max_response_bytes(64 * 1024);
    client_with(config).max_retries(0).build().unwrap()
}

type ErrorCheck = fn(&ClientError) -> bool;

#[test]
fn faults_are_typed_errors_never_panics() {
    let cases: [(Fault, ErrorCheck); 5] = [
        (Fault::Slow, |e| matches!(e, ClientError::Timeout { .. })),
        (Fault::Status500, |e| {
            matches!(e, ClientError::Status { status: 500, .. })
        }),
        (Fault::Garbage, |e| matches!(e, ClientError::Decode { .. })),
        (Fault::Huge, |e| {
            matches!(e, ClientError::TooLarge { limit: 65536, .. })
        }),
        (Fault::CutMidBody, |e| matches!(e, ClientError::Io { .. })),
    ];
    for (fault, want) in cases {
        let peer = Peer::start(fault);
        let c = fault_client(&peer);
        let t0 = Instant::now();
        let err = c.lookup(ip("10.0.0.1")).unwrap_err();
        assert!(want(&err), "unexpected {err:?}");
        assert!(
            err.to_string().contains(&peer.addr.to_string()),
            "endpoint named: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "bounded by the timeout"
        );
        // The batch path reports the same kind of error per IP.
        let out = c.lookup_many(&[ip("10.0.0.2"), ip("10.0.0.3")]);
        assert!(
            out.iter().all(|r| r.as_ref().is_err_and(want)),
            "{fault:?}: {out:?}"
        );
    }
}

#[test]
fn retry_after_is_honoured() {
    let peer = Peer::start(Fault::RateLimited);
    let c = client(&peer.url()).max_retries(3).build().unwrap();
    let err = c.lookup(ip("10.0.0.1")).unwrap_err();
    match err {
        ClientError::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("{other:?}"),
    }
    // The breaker holds the endpoint for the Retry-After: no further request.
    let sent = c.stats().requests;
    assert_eq!(
        sent, 1,
        "a 429 with Retry-After is not retried against the same endpoint"
    );
    assert!(matches!(
        c.lookup(ip("10.0.0.2")),
        Err(ClientError::CircuitOpen { .. })
    ));
    assert_eq!(c.stats().requests, sent);
}

#[test]
fn bad_configuration_is_refused() {
    assert!(matches!(
        ServiceConfig::builder().build(),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        ServiceConfig::builder().endpoint("ftp://x").build(),
        Err(ClientError::InvalidEndpoint { .. })
    ));
}
