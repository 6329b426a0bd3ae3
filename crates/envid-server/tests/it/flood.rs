//! Floods from one client address that need no credential of their own
//! (issue 26, findings 2, 3 and 7): long polls held open (pipelined too),
//! request bodies that never arrive, request heads that never end. While
//! each runs, `/healthz` and an authorised lookup from another address are
//! answered within 1 s, every time; a legitimate registration goes through.
//! Loopback only; every flood is bounded in size and stops by itself.

use crate::common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The fleet's read token (every replica has it, so a flood may too).
const READ_TOKEN: &str = "fleet-read-token-5e1d";
const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const PROBER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
const REGISTRAR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4));
/// What a good client must always get its answer within.
const BOUND: Duration = Duration::from_secs(1);

/// A good client on another address: `/healthz` and an authorised lookup
/// every 100 ms until stopped; what took longest and what went wrong.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(Duration, Vec<String>, usize)>,
}

impl Prober {
    fn start(a: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let (mut worst, mut wrong, mut rounds) = (Duration::ZERO, Vec::new(), 0);
            let auth = format!("Bearer {READ_TOKEN}");
            while !flag.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = request_from(Some(PROBER), a, "GET", "/healthz", &[], b"");
                worst = worst.max(t0.elapsed());
                if r.status != 200 {
                    wrong.push(format!("/healthz: {} {}", r.status, r.body));
                }
                let t0 = Instant::now();
                let r = request_from(
                    Some(PROBER),
                    a,
                    "GET",
                    "/v1/hosts/10.0.0.5",
                    &[("Authorization", &auth)],
                    b"",
                );
                worst = worst.max(t0.elapsed());
                if r.status != 200 {
                    wrong.push(format!("lookup: {} {}", r.status, r.body));
                }
                rounds += 1;
                thread::sleep(Duration::from_millis(100));
            }
            (worst, wrong, rounds)
        });
        Prober { stop, thread }
    }

    /// Stops it and asserts every answer was right and within [`BOUND`].
    fn check(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let (worst, wrong, rounds) = self.thread.join().unwrap();
        println!("{what}: {rounds} probe rounds, slowest answer {worst:?}");
        assert!(wrong.is_empty(), "{what}: wrong answers: {wrong:?}");
        assert!(rounds >= 5, "{what}: only {rounds} probe rounds");
        assert!(worst < BOUND, "{what}: a good request took {worst:?}");
    }
}

/// Connects `n` sockets from `from` (at most 2 s each) and sends each `head`.
fn open_flood(a: SocketAddr, from: IpAddr, n: usize, head: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.bind(&SocketAddr::new(from, 0).into()).ok()?;
            s.connect_timeout(&a.into(), Duration::from_secs(2)).ok()?;
            let mut s: TcpStream = s.into();
            s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
            let _ = s.write_all(head);
            Some(s)
        })
        .collect()
}

/// The served version (`/healthz` shows it to the read token only).
fn version(a: SocketAddr) -> u64 {
    let auth = format!("Bearer {READ_TOKEN}");
    let r = request(a, "GET", "/healthz", &[("Authorization", &auth)], b"");
    r.json()["version"].as_u64().unwrap()
}

#[test]
fn a_long_poll_flood_from_one_address_leaves_room_for_health_and_lookups() {
    raise_nofile_limit();
    // The finding's settings, scaled down: as many long polls allowed as
    // connections (it was 4,096 of each).
    let mut c = config(example_registry());
    c.token = Some(READ_TOKEN.into());
    c.max_connections = 512;
    c.max_long_polls = 512;
    c.max_connections_per_client = 256;
    c.max_long_polls_per_client = 128;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let v = version(a);
    // Three pipelined 10 s polls on every connection, more connections than
    // the cap.
    let poll = format!(
        "GET /v1/registry?since={v}&wait=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ_TOKEN}\r\n\r\n"
    );
    let head = poll.repeat(3);
    let prober = Prober::start(a);
    let t0 = Instant::now();
    let flood = open_flood(a, ATTACKER, 600, head.as_bytes());
    println!("{} flood connections in {:?}", flood.len(), t0.elapsed());
    // A replica elsewhere still gets its long poll.
    let auth = format!("Bearer {READ_TOKEN}");
    let r = request_from(
        Some(REGISTRAR),
        a,
        "GET",
        &format!("/v1/registry?since={v}&wait=1"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "a replica's long poll: {}", r.body);
    while t0.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(100));
    }
    prober.check("long-poll flood");
    let m = get_auth(a, "/metrics", READ_TOKEN).body;
    let open = metric(&m, "envid_connections_open").unwrap();
    assert!(open <= 513.0, "{open} connections open, cap 512");
    drop(flood);
}

#[test]
fn bodies_that_never_come_without_a_token_hold_no_slot() {
    raise_nofile_limit();
    let mut c = config(example_registry());
    c.token = Some(READ_TOKEN.into());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let prober = Prober::start(a);
    let t0 = Instant::now();
    // The finding: 520 registrations declaring a body and sending none.
    let head = format!(
        "PUT /v1/hosts/{ATTACKER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut flood = open_flood(a, ATTACKER, 520, head.as_bytes());
    println!("{} flood connections in {:?}", flood.len(), t0.elapsed());
    // Each is refused on its (missing) token alone, its body unread.
    let mut refused = 0;
    for s in flood.iter_mut().take(20) {
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() && (&head == b"HTTP/1.1 401" || &head == b"HTTP/1.1 429")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 20, "the flood's requests were not refused at once");
    // A legitimate registration from elsewhere goes through meanwhile.
    let body = r#"{"app": "payment", "env": "prod", "idc": "cn5", "lease_seconds": 60}"#;
    let t1 = Instant::now();
    let r = request_from(
        Some(REGISTRAR),
        a,
        "PUT",
        &format!("/v1/hosts/{REGISTRAR}"),
        &[("Authorization", &format!("Bearer {PAYMENT}"))],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t1.elapsed() < BOUND,
        "the registration took {:?}",
        t1.elapsed()
    );
    while t0.elapsed() < Duration::from_secs(4) {
        thread::sleep(Duration::from_millis(100));
    }
    prober.check("slow bodies without a token");
    drop(flood);
}

#[test]
fn a_body_late_past_the_body_deadline_is_408_and_frees_its_slot() {
    raise_nofile_limit();
    let mut c = config(example_registry());
    c.token = Some(READ_TOKEN.into());
    c.body_read_timeout = Duration::from_millis(500);
    c.register_limit = 0;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let prober = Prober::start(a);
    let t0 = Instant::now();
    // An operator's token (so authenticated), a body that never comes, more
    // of them than `max_in_flight`.
    let head = format!(
        "PUT /v1/hosts/10.7.0.1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut flood = open_flood(a, ATTACKER, 600, head.as_bytes());
    println!("{} flood connections in {:?}", flood.len(), t0.elapsed());
    let body = r#"{"app": "payment", "env": "prod", "idc": "cn5", "lease_seconds": 60}"#;
    let r = request_from(
        Some(REGISTRAR),
        a,
        "PUT",
        &format!("/v1/hosts/{REGISTRAR}"),
        &[("Authorization", &format!("Bearer {PAYMENT}"))],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Past the deadline, each is answered 408 and closed.
    let late = Arc::new(Mutex::new(Vec::new()));
    for s in flood.iter_mut().take(20) {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if !text.starts_with("HTTP/1.1 408") && !text.starts_with("HTTP/1.1 429") {
            late.lock().unwrap().push(text);
        }
    }
    assert!(
        late.lock().unwrap().is_empty(),
        "{:?}",
        late.lock().unwrap()
    );
    while t0.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(100));
    }
    prober.check("slow bodies with a token");
    drop(flood);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn unfinished_heads_do_not_grow_the_service_by_their_size() {
    raise_nofile_limit();
    // A service process of its own, so its memory is its alone.
    let svc = common::etcd::Service::spawn(&["--registry", example_registry().to_str().unwrap()]);
    let a = svc.addr;
    let pid = svc.child.id();
    let before = rss_kib(pid);
    // The finding: 400 connections, ~392 KB of headers each, never ended.
    const N: usize = 400;
    let line = format!("X-Pad: {}\r\n", "a".repeat(4_000));
    let mut head = String::from("GET /v1/hosts/10.0.0.5 HTTP/1.1\r\nHost: x\r\n");
    while head.len() < 392_000 {
        head.push_str(&line);
    }
    let head = Arc::new(head);
    let flood: Vec<TcpStream> = thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let head = head.clone();
                scope.spawn(move || open_flood(a, ATTACKER, N / 8, head.as_bytes()))
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    let per = after.saturating_sub(before) as f64 / N as f64;
    println!(
        "{} connections: service RSS {before} KiB -> {after} KiB, {per:.1} KiB a connection",
        flood.len()
    );
    assert!(per <= 32.0, "{per:.1} KiB of service memory a connection");
    // It still answers.
    let r = get(a, "/healthz");
    assert_eq!(r.status, 200, "{}", r.body);
    drop(flood);
}
