//! Hostile clients against the real service on loopback: oversized and
//! trickling bodies, slowloris heads, a flood of 10,000 connections, garbage
//! bytes, invalid IPs and CIDRs. In every case the service answers (or
//! closes) within a bound and keeps answering its other clients correctly.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A well-behaved client's lookup: the right answer, within `bound`.
fn good_lookup_within(a: SocketAddr, bound: Duration) {
    let t0 = Instant::now();
    let r = get(a, "/v1/hosts/10.0.0.5");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["hostname"],
        "l-flightqma9.f.beta.cn0",
        "{}",
        r.body
    );
    assert!(
        t0.elapsed() < bound,
        "a good lookup took {:?}",
        t0.elapsed()
    );
}

fn metrics_text(a: SocketAddr) -> String {
    get(a, "/metrics").body
}

/// Registered (dynamic) records, from `/metrics`.
fn registrations(a: SocketAddr) -> f64 {
    metric(&metrics_text(a), "envid_registry_registrations").expect("the gauge")
}

/// True when the peer has closed `s` (EOF or reset) within `bound`.
fn closed_within(s: &mut TcpStream, bound: Duration) -> bool {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + bound;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // a response (e.g. 408) before the close: keep reading
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

/// A thread writing `byte` to every stream each 100 ms, as a slow client.
struct Drip {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Drip {
    fn start(streams: &[TcpStream], byte: &'static [u8]) -> Drip {
        let mut writers: Vec<TcpStream> = streams.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for w in &mut writers {
                    let _ = w.write_all(byte);
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        Drip { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

#[test]
fn bodies_over_the_limit_are_413_and_others_are_served() {
    let mut c = config(example_registry());
    c.max_body_bytes = 1024;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let ips: Vec<String> = (0..200).map(|i| format!("10.0.1.{i}")).collect();
    let big = serde_json::json!({ "ips": ips }).to_string();
    assert!(big.len() > 1024);
    for _ in 0..3 {
        let r = post_json(a, "/v1/hosts/lookup", &big);
        assert_eq!(r.status, 413, "{}", r.body);
        assert_eq!(r.error_code(), "body_too_large");
        good_lookup_within(a, Duration::from_secs(2));

        let body = format!(
            r#"{{"env": "prod", "idc": "cn0", "lease_seconds": 60, "labels": {{"pad": "{}"}}}}"#,
            "x".repeat(2000)
        );
        let r = request(
            a,
            "PUT",
            "/v1/hosts/10.9.9.9",
            &[OPERATOR_AUTH],
            body.as_bytes(),
        );
        assert_eq!(r.status, 413, "{}", r.body);
        assert_eq!(r.error_code(), "body_too_large");
        assert_eq!(registrations(a), 0.0, "a refused PUT registered");
    }
    // A body declared huge is refused from its Content-Length alone.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/hosts/lookup HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{{"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    good_lookup_within(a, Duration::from_secs(2));
}

#[test]
fn a_trickling_body_gets_408_within_the_request_timeout() {
    let mut c = config(example_registry());
    c.request_timeout = Duration::from_millis(500);
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(a).unwrap();
        write!(
            s,
            "POST /v1/hosts/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"ips\""
        )
        .unwrap();
        slow.push(s);
    }
    let t0 = Instant::now();
    let drip = Drip::start(&slow, b" ");
    // Others are served while the slow bodies hold their requests open.
    good_lookup_within(a, Duration::from_millis(400));
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
        assert!(text.contains("request_timeout"), "{text:?}");
    }
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    drip.stop();
    good_lookup_within(a, Duration::from_secs(2));
}

#[test]
fn slowloris_heads_are_closed_after_the_header_timeout() {
    let mut c = config(example_registry());
    c.header_read_timeout = Duration::from_millis(500);
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    const N: usize = 200;
    let mut slow: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /v1/hosts/10.0.0.5 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let drip = Drip::start(&slow, b"a");
    for _ in 0..5 {
        good_lookup_within(a, Duration::from_millis(400));
        thread::sleep(Duration::from_millis(50));
    }
    let mut closed = 0;
    for s in &mut slow {
        let left = (t0 + Duration::from_secs(3)).saturating_duration_since(Instant::now());
        if closed_within(s, left.max(Duration::from_millis(1))) {
            closed += 1;
        }
    }
    drip.stop();
    assert_eq!(closed, N, "slow heads still open after 3 s");
    let m = metrics_text(a);
    let timeouts = metric(
        &m,
        "envid_connections_closed_total{reason=\"header_timeout\"}",
    );
    assert!(timeouts.unwrap_or(0.0) >= N as f64, "{m}");
    good_lookup_within(a, Duration::from_secs(2));
}

#[test]
fn ten_thousand_connections_are_bounded_and_others_still_served() {
    let limit = raise_nofile_limit();
    // The flood's sockets and the service's share this process's descriptors.
    let attempts = 10_000usize.min(limit.saturating_sub(1_000) as usize);
    if attempts < 10_000 {
        println!("open-files limit {limit}: attempting {attempts} connections instead of 10,000");
    }
    const CAP: usize = 256;
    let mut c = config(example_registry());
    c.max_connections = CAP;
    c.header_read_timeout = Duration::from_secs(3);
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let flood: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..attempts {
            tasks.spawn(async move {
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(a))
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        }
        let mut open = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Some(s) = r.unwrap() {
                open.push(s);
            }
        }
        open
    });
    println!(
        "{} of {attempts} connections established in {:?} (service cap {CAP})",
        flood.len(),
        t0.elapsed()
    );
    // While the flood's sockets are held open, idle, others are served: each
    // new connection evicts the oldest idle one (~0.5 ms measured here).
    for _ in 0..10 {
        good_lookup_within(a, SYN_RETRANSMITS);
    }
    let m = metrics_text(a);
    let open = metric(&m, "envid_connections_open").unwrap();
    assert!(
        open <= (CAP + 1) as f64,
        "{open} connections open, cap {CAP}"
    );
    let evicted = metric(&m, "envid_connections_evicted_total").unwrap_or(0.0);
    println!("{open} open, {evicted} idle connections evicted so far");
    if flood.len() > CAP {
        assert!(evicted > 0.0, "a flood past the cap evicted nothing");
    }
    // Closing the flood completes the handshakes still half-open on the
    // service's side (a FIN carries the ACK): the rush that overflows the
    // listen queue (see `SYN_RETRANSMITS`).
    drop(flood);
    good_lookup_within(a, SYN_RETRANSMITS);
    // Closed by their peers, or (a connect that timed out on our side after
    // the kernel completed it) by the header timeout.
    wait_until(
        "the flood's connections to close",
        Duration::from_secs(8),
        || metric(&metrics_text(a), "envid_connections_open").unwrap_or(f64::MAX) <= 1.0,
    );
    // Once the flood has drained, nothing stands in a good client's way.
    good_lookup_within(a, Duration::from_secs(2));
}

/// A good client's bound while a flood can overflow the kernel's listen
/// queue: the bound is the kernel's, not the service's. Linux drops a SYN
/// while the queue is full and retransmits it 1 s and 3 s later, so a lookup
/// may wait that long, then for the service to accept what is ahead of it.
/// Measured just after the flood closes: 1.0 s in 2 of 3 release runs, and
/// 2.03 s once on a loaded 2-core CI machine. Time, not correctness, is what
/// a dropped SYN costs; a refused or wrong answer still fails at once.
const SYN_RETRANSMITS: Duration = Duration::from_secs(7);

#[test]
fn garbage_bytes_are_refused_and_the_service_keeps_serving() {
    let svc = serve_example();
    let a = svc.local_addr();
    let garbage: [&[u8]; 5] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
        b"\x00\x00\x00\x00\x00\x00\x00\x00\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /v1/hosts/10.0.0.5 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        &[0xff; 70_000],
    ];
    for g in garbage {
        let mut s = TcpStream::connect(a).unwrap();
        let _ = s.write_all(g);
        let mut text = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut text);
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{text:?}"
        );
        good_lookup_within(a, Duration::from_secs(2));
    }
}

#[test]
fn invalid_ips_and_cidrs_are_400_naming_them_between_good_requests() {
    let svc = serve_example();
    let a = svc.local_addr();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("GET", "/v1/hosts/not-an-ip", "", "not-an-ip"),
        ("GET", "/v1/hosts/999.1.1.1", "", "999.1.1.1"),
        ("GET", "/v1/hosts/10.0.0.0%2F33", "", "10.0.0.0/33"),
        ("GET", "/v1/hosts/10.0.0.0%2F8", "", "10.0.0.0/8"),
        ("GET", "/v1/hosts/2001:db8::zz", "", "2001:db8::zz"),
        ("GET", "/v1/hosts/1.2.3", "", "1.2.3"),
        (
            "POST",
            "/v1/hosts/lookup",
            r#"{"ips": ["10.0.0.5", "10.0.0.300", "10.0.0.6"]}"#,
            "10.0.0.300",
        ),
        (
            "POST",
            "/v1/hosts/lookup",
            r#"{"ips": ["10.1.0.0/16"]}"#,
            "10.1.0.0/16",
        ),
        (
            "PUT",
            "/v1/hosts/10.0.0.256",
            r#"{"env": "prod", "idc": "cn0", "lease_seconds": 60}"#,
            "10.0.0.256",
        ),
        (
            "PUT",
            "/v1/hosts/10.9.0.1",
            r#"{"cidr": "10.9.0.0/33", "env": "prod", "idc": "cn0", "lease_seconds": 60}"#,
            "ranges belong in the registry file",
        ),
        (
            "PUT",
            "/v1/hosts/10.9.0.1",
            r#"{"ip": "10.9.0.2", "env": "prod", "idc": "cn0", "lease_seconds": 60}"#,
            "10.9.0.2",
        ),
        ("POST", "/v1/hosts/fe80::zz/renew", "", "fe80::zz"),
        ("DELETE", "/v1/hosts/%00", "", "invalid"),
        ("GET", "/v1/registry?since=abc", "", "since"),
        ("GET", "/v1/registry?since=1&wait=-1", "", "wait"),
    ];
    for (method, path, body, named) in cases {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[OPERATOR_AUTH]
        } else {
            &[("Content-Type", "application/json"), OPERATOR_AUTH]
        };
        let r = request(a, method, path, headers, body.as_bytes());
        assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
        let message = r.error_message();
        assert!(
            message.contains(named),
            "{method} {path}: {message:?} does not name {named:?}"
        );
        good_lookup_within(a, Duration::from_secs(2));
    }
    assert_eq!(registrations(a), 0.0, "a refused PUT registered");
}
